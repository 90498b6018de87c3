/* gguf.h: a validating reader for GGUF files (versions 2 and 3).
 * The file is memory-mapped read-only; every count, length, offset and size is
 * checked against the file before use, and nothing is allocated that the file
 * size does not justify. cs_gguf owns the mapping and its tables; string and
 * tensor data pointers point into the mapping and live until cs_gguf_close. */
#ifndef CS_GGUF_H
#define CS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Metadata value types (values fixed by the format). */
enum cs_gguf_type {
    CS_GGUF_U8 = 0,
    CS_GGUF_I8 = 1,
    CS_GGUF_U16 = 2,
    CS_GGUF_I16 = 3,
    CS_GGUF_U32 = 4,
    CS_GGUF_I32 = 5,
    CS_GGUF_F32 = 6,
    CS_GGUF_BOOL = 7,
    CS_GGUF_STRING = 8,
    CS_GGUF_ARRAY = 9,
    CS_GGUF_U64 = 10,
    CS_GGUF_I64 = 11,
    CS_GGUF_F64 = 12,
};

/* A string inside the mapping: len bytes, not NUL-terminated. */
struct cs_gguf_str {
    const char *ptr;
    uint64_t len;
};

struct cs_gguf_kv {
    char *key;              /* owned copy, NUL-terminated */
    enum cs_gguf_type type; /* CS_GGUF_ARRAY for arrays */
    union {
        uint64_t u;           /* U8..U64, BOOL (0/1) */
        int64_t i;            /* I8..I64 */
        double f;             /* F32, F64 */
        struct cs_gguf_str s; /* STRING */
    } v;
    /* Arrays only: element type, count, and either the raw little-endian
     * elements in the mapping (scalar element types) or an owned table of
     * strings (STRING elements). Nested arrays are rejected as malformed. */
    enum cs_gguf_type arr_type;
    uint64_t arr_n;
    const void *arr_data;          /* scalar elements, arr_n * size */
    struct cs_gguf_str *arr_str;   /* owned, arr_n entries (STRING only) */
};

struct cs_gguf_tensor {
    char *name;        /* owned copy, NUL-terminated */
    uint32_t n_dims;   /* 1..4 */
    uint64_t ne[4];    /* ne[0] innermost (contiguous); unused dims are 1 */
    uint32_t type;     /* enum cs_type */
    uint64_t offset;   /* bytes, relative to the data section */
    uint64_t size;     /* bytes of data (from type and shape) */
    uint64_t n_elems;  /* ne[0]*ne[1]*ne[2]*ne[3] */
    const void *data;  /* into the mapping */
};

struct cs_gguf {
    char *path;            /* owned copy of the path (or the name given) */
    uint32_t version;      /* 2 or 3 */
    const uint8_t *base;   /* the whole file */
    uint64_t size;         /* bytes */
    uint64_t alignment;    /* general.alignment or 32 */
    uint64_t data_offset;  /* start of the data section, bytes from base */
    uint64_t n_kv;
    struct cs_gguf_kv *kv;         /* n_kv entries, file order */
    uint64_t n_tensors;
    struct cs_gguf_tensor *tensors; /* n_tensors entries, file order */
    /* private */
    void *map_;
    size_t map_len_;
};

/* Opens and validates path. On error returns a negative status and writes
 * "path: what: where" to err. */
int cs_gguf_open(const char *path, struct cs_gguf **out, char *err, size_t errlen);
/* Same over a caller-owned buffer that must outlive the result (fuzzing,
 * tests); name is used in messages. */
int cs_gguf_open_mem(const void *buf, size_t len, const char *name, struct cs_gguf **out,
                     char *err, size_t errlen);
void cs_gguf_close(struct cs_gguf *g);

/* Lookup; NULL when absent. */
const struct cs_gguf_kv *cs_gguf_find(const struct cs_gguf *g, const char *key);
const struct cs_gguf_tensor *cs_gguf_find_tensor(const struct cs_gguf *g, const char *name);

/* Typed getters: CLSPEC_OK, CLSPEC_E_NOTFOUND when absent (out untouched),
 * CLSPEC_E_FORMAT (with a message) when the stored type does not convert
 * (any integer type converts to u32/i32/u64 when the value fits). */
int cs_gguf_get_u32(const struct cs_gguf *g, const char *key, uint32_t *out, char *err, size_t errlen);
int cs_gguf_get_i64(const struct cs_gguf *g, const char *key, int64_t *out, char *err, size_t errlen);
int cs_gguf_get_f32(const struct cs_gguf *g, const char *key, float *out, char *err, size_t errlen);
int cs_gguf_get_bool(const struct cs_gguf *g, const char *key, bool *out, char *err, size_t errlen);
/* Copies a STRING value into buf (NUL-terminated; CLSPEC_E_RANGE if it does
 * not fit). */
int cs_gguf_get_str(const struct cs_gguf *g, const char *key, char *buf, size_t buflen, char *err, size_t errlen);
/* An ARRAY of the given element type: CLSPEC_E_FORMAT if the element type differs. */
int cs_gguf_get_arr(const struct cs_gguf *g, const char *key, enum cs_gguf_type elem,
                    const struct cs_gguf_kv **out, char *err, size_t errlen);

/* Element i of a scalar array as double / int64 (caller checks i < arr_n). */
int64_t cs_gguf_arr_int(const struct cs_gguf_kv *kv, uint64_t i);
double cs_gguf_arr_float(const struct cs_gguf_kv *kv, uint64_t i);

/* "u32", "string", "array", ... */
const char *cs_gguf_type_name(enum cs_gguf_type t);

#endif
