/* gguf.c: the validating GGUF reader declared in gguf.h.
 * Parsing is a single forward pass over the mapping with a bounds-checked
 * cursor; every count is checked against the bytes left before anything is
 * allocated for it, and tensor extents are checked after the header. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"

#define GGUF_DEFAULT_ALIGNMENT 32
/* Smallest possible encodings, used to bound counts by the bytes left. */
#define MIN_KV_BYTES 13     /* key length (8) + type (4) + one-byte value */
#define MIN_TENSOR_BYTES 32 /* name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */

/* A bounds-checked cursor over the file. */
struct rd {
    const uint8_t *b; /* the file */
    uint64_t size;    /* bytes */
    uint64_t pos;     /* next byte to read */
    const char *path;
    char *err;
    size_t errlen;
    char ctx[160]; /* what is being read, for messages: "kv 3 'general.name'" */
};

static uint64_t left(const struct rd *r)
{
    return r->size - r->pos;
}

static int truncated(struct rd *r, uint64_t need, const char *what)
{
    return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                  "%s: %s: truncated reading %s at offset %" PRIu64 " (need %" PRIu64 " bytes, %" PRIu64 " left)",
                  r->path, r->ctx, what, r->pos, need, left(r));
}

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int rd_uint(struct rd *r, unsigned n, uint64_t *out, const char *what)
{
    *out = 0;
    if (left(r) < n)
        return truncated(r, n, what);
    *out = le(r->b + r->pos, n);
    r->pos += n;
    return CLSPEC_OK;
}

static int rd_u32(struct rd *r, uint32_t *out, const char *what)
{
    uint64_t v = 0;
    int rc = rd_uint(r, 4, &v, what);
    if (rc == CLSPEC_OK)
        *out = (uint32_t)v;
    return rc;
}

static int rd_str(struct rd *r, struct cs_gguf_str *s, const char *what)
{
    uint64_t len = 0;
    s->ptr = NULL;
    s->len = 0;
    int rc = rd_uint(r, 8, &len, what);
    if (rc != CLSPEC_OK)
        return rc;
    if (len > left(r))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                      "%s: %s: %s length %" PRIu64 " exceeds the %" PRIu64 " bytes left in the file",
                      r->path, r->ctx, what, len, left(r));
    s->ptr = (const char *)r->b + r->pos;
    s->len = len;
    r->pos += len;
    return CLSPEC_OK;
}

/* A NUL-terminated owned copy of a name; names with NUL bytes are refused. */
static int dup_name(struct rd *r, const struct cs_gguf_str *s, char **out, const char *what)
{
    if (memchr(s->ptr, 0, s->len))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: %s contains a NUL byte", r->path, r->ctx,
                      what);
    char *p = malloc(s->len + 1);
    if (!p)
        return cs_err(r->err, r->errlen, CLSPEC_E_NOMEM, "%s: %s: out of memory", r->path, r->ctx);
    memcpy(p, s->ptr, s->len);
    p[s->len] = '\0';
    *out = p;
    return CLSPEC_OK;
}

/* Bytes of a scalar value type; 0 for STRING, ARRAY and unknown types. */
static unsigned scalar_size(uint32_t t)
{
    switch (t) {
    case CS_GGUF_U8: case CS_GGUF_I8: case CS_GGUF_BOOL: return 1;
    case CS_GGUF_U16: case CS_GGUF_I16: return 2;
    case CS_GGUF_U32: case CS_GGUF_I32: case CS_GGUF_F32: return 4;
    case CS_GGUF_U64: case CS_GGUF_I64: case CS_GGUF_F64: return 8;
    }
    return 0;
}

static bool is_signed(uint32_t t)
{
    return t == CS_GGUF_I8 || t == CS_GGUF_I16 || t == CS_GGUF_I32 || t == CS_GGUF_I64;
}

static bool is_unsigned(uint32_t t)
{
    return t == CS_GGUF_U8 || t == CS_GGUF_U16 || t == CS_GGUF_U32 || t == CS_GGUF_U64;
}

static bool is_float(uint32_t t)
{
    return t == CS_GGUF_F32 || t == CS_GGUF_F64;
}

static int64_t sign_extend(uint64_t v, unsigned bytes)
{
    if (bytes == 8)
        return (int64_t)v;
    uint64_t m = 1ull << (8 * bytes - 1);
    return (int64_t)((v ^ m) - m);
}

static double to_double(uint64_t bits, unsigned bytes)
{
    if (bytes == 4) {
        uint32_t b32 = (uint32_t)bits;
        float f;
        memcpy(&f, &b32, 4);
        return f;
    }
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

const char *cs_gguf_type_name(enum cs_gguf_type t)
{
    static const char *const names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    if ((unsigned)t < CS_ARRAY_LEN(names))
        return names[t];
    return "unknown";
}

static int read_value(struct rd *r, struct cs_gguf_kv *kv)
{
    uint32_t t = 0;
    int rc = rd_u32(r, &t, "value type");
    if (rc != CLSPEC_OK)
        return rc;
    if (t > CS_GGUF_F64)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: unknown value type %" PRIu32, r->path,
                      r->ctx, t);
    kv->type = (enum cs_gguf_type)t;
    if (t == CS_GGUF_STRING)
        return rd_str(r, &kv->v.s, "string value");
    if (t != CS_GGUF_ARRAY) {
        unsigned n = scalar_size(t);
        uint64_t v = 0;
        if ((rc = rd_uint(r, n, &v, "value")) != CLSPEC_OK)
            return rc;
        if (t == CS_GGUF_BOOL && v > 1)
            return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: bad bool value %" PRIu64, r->path,
                          r->ctx, v);
        if (is_signed(t))
            kv->v.i = sign_extend(v, n);
        else if (is_float(t))
            kv->v.f = to_double(v, n);
        else
            kv->v.u = v;
        return CLSPEC_OK;
    }
    /* array: element type, count, elements */
    uint32_t et = 0;
    uint64_t n = 0;
    if ((rc = rd_u32(r, &et, "array element type")) != CLSPEC_OK)
        return rc;
    if (et == CS_GGUF_ARRAY)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: nested arrays are not supported", r->path,
                      r->ctx);
    if (et > CS_GGUF_F64)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: unknown array element type %" PRIu32,
                      r->path, r->ctx, et);
    if ((rc = rd_uint(r, 8, &n, "array length")) != CLSPEC_OK)
        return rc;
    kv->arr_type = (enum cs_gguf_type)et;
    unsigned es = et == CS_GGUF_STRING ? 8 : scalar_size(et); /* minimum bytes per element */
    if (n > left(r) / es)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                      "%s: %s: array of %" PRIu64 " %s elements does not fit in the %" PRIu64 " bytes left",
                      r->path, r->ctx, n, cs_gguf_type_name(kv->arr_type), left(r));
    kv->arr_n = n;
    if (et != CS_GGUF_STRING) {
        kv->arr_data = r->b + r->pos;
        r->pos += n * es;
        if (et == CS_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (((const uint8_t *)kv->arr_data)[i] > 1)
                    return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                                  "%s: %s: bad bool value %u at array index %" PRIu64, r->path, r->ctx,
                                  ((const uint8_t *)kv->arr_data)[i], i);
        return CLSPEC_OK;
    }
    kv->arr_str = calloc(n ? n : 1, sizeof *kv->arr_str);
    if (!kv->arr_str)
        return cs_err(r->err, r->errlen, CLSPEC_E_NOMEM, "%s: %s: out of memory for %" PRIu64 " strings",
                      r->path, r->ctx, n);
    for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_str(r, &kv->arr_str[i], "array string")) != CLSPEC_OK)
            return rc;
    return CLSPEC_OK;
}

static int read_kv(struct rd *r, uint64_t idx, struct cs_gguf_kv *kv)
{
    struct cs_gguf_str key;
    snprintf(r->ctx, sizeof r->ctx, "kv %" PRIu64, idx);
    int rc = rd_str(r, &key, "key");
    if (rc != CLSPEC_OK)
        return rc;
    if ((rc = dup_name(r, &key, &kv->key, "key")) != CLSPEC_OK)
        return rc;
    snprintf(r->ctx, sizeof r->ctx, "key '%.100s'", kv->key);
    return read_value(r, kv);
}

static int read_tensor_info(struct rd *r, uint64_t idx, struct cs_gguf_tensor *t)
{
    struct cs_gguf_str name;
    snprintf(r->ctx, sizeof r->ctx, "tensor %" PRIu64, idx);
    int rc = rd_str(r, &name, "tensor name");
    if (rc != CLSPEC_OK)
        return rc;
    if ((rc = dup_name(r, &name, &t->name, "tensor name")) != CLSPEC_OK)
        return rc;
    snprintf(r->ctx, sizeof r->ctx, "tensor '%.100s'", t->name);
    if ((rc = rd_u32(r, &t->n_dims, "n_dims")) != CLSPEC_OK)
        return rc;
    if (t->n_dims < 1 || t->n_dims > 4)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: n_dims %" PRIu32 " not in 1..4", r->path,
                      r->ctx, t->n_dims);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < 4; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && (rc = rd_uint(r, 8, &t->ne[d], "dimension")) != CLSPEC_OK)
            return rc;
        if (t->ne[d] == 0)
            return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: dimension %" PRIu32 " is zero", r->path,
                          r->ctx, d);
        if (!cs_mul_ok(n_elems, t->ne[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: element count overflows", r->path,
                          r->ctx);
    }
    t->n_elems = n_elems;
    if ((rc = rd_u32(r, &t->type, "tensor type")) != CLSPEC_OK)
        return rc;
    if (!cs_type_get(t->type))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: unknown tensor type %" PRIu32, r->path,
                      r->ctx, t->type);
    uint64_t row;
    if (!cs_row_bytes(t->type, t->ne[0], &row))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                      "%s: %s: row of %" PRIu64 " elements is not a multiple of the %s block size (%" PRIu32 ")",
                      r->path, r->ctx, t->ne[0], cs_type_name(t->type), cs_type_get(t->type)->block_elems);
    if (!cs_mul_ok(row, n_elems / t->ne[0], &t->size))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: %s: data size overflows", r->path, r->ctx);
    return rd_uint(r, 8, &t->offset, "tensor offset");
}

/* Sorting helpers for duplicate and overlap checks. */
static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct cs_gguf_tensor *x = *(const struct cs_gguf_tensor *const *)a;
    const struct cs_gguf_tensor *y = *(const struct cs_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Duplicate names among n entries whose name pointer is at names[i * stride]. */
static int check_dups(struct rd *r, char **first, size_t stride, uint64_t n, const char *what)
{
    if (n < 2)
        return CLSPEC_OK;
    char ***v = malloc(n * sizeof *v);
    if (!v)
        return cs_err(r->err, r->errlen, CLSPEC_E_NOMEM, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < n; i++)
        v[i] = (char **)((char *)first + i * stride);
    qsort(v, n, sizeof *v, cmp_str_ptr);
    int rc = CLSPEC_OK;
    for (uint64_t i = 1; i < n && rc == CLSPEC_OK; i++)
        if (!strcmp(*v[i - 1], *v[i]))
            rc = cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: duplicate %s '%.100s'", r->path, what, *v[i]);
    free(v);
    return rc;
}

static int check_alignment(struct rd *r, struct cs_gguf *g)
{
    const struct cs_gguf_kv *kv = cs_gguf_find(g, "general.alignment");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv)
        return CLSPEC_OK;
    uint64_t a;
    if (is_unsigned(kv->type))
        a = kv->v.u;
    else if (is_signed(kv->type) && kv->v.i > 0)
        a = (uint64_t)kv->v.i;
    else
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: general.alignment: expected an integer, got %s",
                      r->path, cs_gguf_type_name(kv->type));
    if (a == 0 || (a & (a - 1)) || a > (1u << 30))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                      "%s: general.alignment %" PRIu64 " is not a power of two in 1..2^30", r->path, a);
    g->alignment = a;
    return CLSPEC_OK;
}

static int check_tensors(struct rd *r, struct cs_gguf *g)
{
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct cs_gguf_tensor *t = &g->tensors[i];
        uint64_t start, end;
        if (t->offset % g->alignment)
            return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                          "%s: tensor '%.100s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                          r->path, t->name, t->offset, g->alignment);
        if (!cs_add_ok(g->data_offset, t->offset, &start) || !cs_add_ok(start, t->size, &end) || end > g->size)
            return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                          "%s: tensor '%.100s': offset %" PRIu64 " + %" PRIu64
                          " bytes beyond end of file (data section at %" PRIu64 ", size %" PRIu64 ")",
                          r->path, t->name, t->offset, t->size, g->data_offset, g->size);
        t->data = g->base + start;
    }
    if (g->n_tensors < 2)
        return CLSPEC_OK;
    struct cs_gguf_tensor **v = malloc(g->n_tensors * sizeof *v);
    if (!v)
        return cs_err(r->err, r->errlen, CLSPEC_E_NOMEM, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        v[i] = &g->tensors[i];
    qsort(v, g->n_tensors, sizeof *v, cmp_tensor_offset);
    int rc = CLSPEC_OK;
    for (uint64_t i = 1; i < g->n_tensors && rc == CLSPEC_OK; i++)
        if (v[i - 1]->offset + v[i - 1]->size > v[i]->offset) /* no overflow: both checked above */
            rc = cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                        "%s: tensor '%.100s': data at offset %" PRIu64 " overlaps tensor '%.100s' (offset %" PRIu64
                        ", %" PRIu64 " bytes)",
                        r->path, v[i]->name, v[i]->offset, v[i - 1]->name, v[i - 1]->offset, v[i - 1]->size);
    free(v);
    return rc;
}

static int parse(struct rd *r, struct cs_gguf *g)
{
    int rc;
    uint64_t magic;
    snprintf(r->ctx, sizeof r->ctx, "header");
    if (r->size == 0)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: empty file (0 bytes), not a GGUF file", r->path);
    if ((rc = rd_uint(r, 4, &magic, "magic")) != CLSPEC_OK)
        return rc;
    if (memcmp(r->b, "GGUF", 4))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: bad magic (not a GGUF file)", r->path);
    if ((rc = rd_u32(r, &g->version, "version")) != CLSPEC_OK)
        return rc;
    if (g->version != 2 && g->version != 3)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: unsupported GGUF version %" PRIu32 " (need 2 or 3)",
                      r->path, g->version);
    uint64_t n_tensors = 0, n_kv = 0;
    if ((rc = rd_uint(r, 8, &n_tensors, "tensor count")) != CLSPEC_OK ||
        (rc = rd_uint(r, 8, &n_kv, "kv count")) != CLSPEC_OK)
        return rc;
    if (n_kv > left(r) / MIN_KV_BYTES || n_tensors > left(r) / MIN_TENSOR_BYTES ||
        n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_BYTES > left(r))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                      "%s: header: %" PRIu64 " kv pairs and %" PRIu64 " tensors cannot fit in %" PRIu64 " bytes",
                      r->path, n_kv, n_tensors, left(r));
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return cs_err(r->err, r->errlen, CLSPEC_E_NOMEM, "%s: out of memory", r->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1; /* so that close frees what was read */
        if ((rc = read_kv(r, i, &g->kv[i])) != CLSPEC_OK)
            return rc;
    }
    if ((rc = check_dups(r, &g->kv[0].key, sizeof g->kv[0], g->n_kv, "key")) != CLSPEC_OK)
        return rc;
    if ((rc = check_alignment(r, g)) != CLSPEC_OK)
        return rc;
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if ((rc = read_tensor_info(r, i, &g->tensors[i])) != CLSPEC_OK)
            return rc;
    }
    if ((rc = check_dups(r, &g->tensors[0].name, sizeof g->tensors[0], g->n_tensors, "tensor name")) !=
        CLSPEC_OK)
        return rc;
    /* the data section starts at the next multiple of the alignment */
    uint64_t pad = (g->alignment - r->pos % g->alignment) % g->alignment;
    if (!cs_add_ok(r->pos, pad, &g->data_offset))
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT, "%s: data offset overflows", r->path);
    if (n_tensors > 0 && g->data_offset > g->size)
        return cs_err(r->err, r->errlen, CLSPEC_E_FORMAT,
                      "%s: data section at offset %" PRIu64 " beyond end of file (size %" PRIu64 ")", r->path,
                      g->data_offset, g->size);
    return check_tensors(r, g);
}

int cs_gguf_open_mem(const void *buf, size_t len, const char *name, struct cs_gguf **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!buf && len)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: NULL buffer", name);
    struct cs_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(name))) {
        free(g);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", name);
    }
    g->base = buf;
    g->size = len;
    struct rd r = {.b = buf, .size = len, .path = name, .err = err, .errlen = errlen};
    int rc = parse(&r, g);
    if (rc != CLSPEC_OK) {
        cs_gguf_close(g);
        return rc;
    }
    *out = g;
    return CLSPEC_OK;
}

int cs_gguf_open(const char *path, struct cs_gguf **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cs_err(err, errlen, errno == ENOENT ? CLSPEC_E_NOTFOUND : CLSPEC_E_IO, "%s: cannot open: %s", path,
                      strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_IO, "%s: not a regular file%s", path,
                      S_ISDIR(st.st_mode) ? " (a directory)" : "");
    }
    if (st.st_size == 0) {
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: empty file (0 bytes), not a GGUF file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: file too large to map", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return cs_err(err, errlen, CLSPEC_E_IO, "%s: cannot map: %s", path, strerror(e));
    int rc = cs_gguf_open_mem(map, len, path, out, err, errlen);
    if (rc != CLSPEC_OK) {
        munmap(map, len);
        return rc;
    }
    (*out)->map_ = map;
    (*out)->map_len_ = len;
    return CLSPEC_OK;
}

void cs_gguf_close(struct cs_gguf *g)
{
    if (!g)
        return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].arr_str);
        }
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->map_)
        munmap(g->map_, g->map_len_);
    free(g->path);
    free(g);
}

const struct cs_gguf_kv *cs_gguf_find(const struct cs_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const struct cs_gguf_tensor *cs_gguf_find_tensor(const struct cs_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && !strcmp(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

/* ---- typed getters ---- */

static int lookup(const struct cs_gguf *g, const char *key, const struct cs_gguf_kv **kv)
{
    *kv = cs_gguf_find(g, key);
    return *kv ? CLSPEC_OK : CLSPEC_E_NOTFOUND;
}

static int mismatch(const struct cs_gguf *g, const struct cs_gguf_kv *kv, const char *want, char *err,
                    size_t errlen)
{
    return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key '%s': expected %s, found %s", g->path, kv->key, want,
                  cs_gguf_type_name(kv->type));
}

static int out_of_range(const struct cs_gguf *g, const struct cs_gguf_kv *kv, const char *want, char *err,
                        size_t errlen)
{
    return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key '%s': value does not fit in %s", g->path, kv->key, want);
}

int cs_gguf_get_u32(const struct cs_gguf *g, const char *key, uint32_t *out, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv;
    if (lookup(g, key, &kv) != CLSPEC_OK)
        return CLSPEC_E_NOTFOUND;
    if (is_unsigned(kv->type) && kv->v.u <= UINT32_MAX)
        *out = (uint32_t)kv->v.u;
    else if (is_signed(kv->type) && kv->v.i >= 0 && kv->v.i <= (int64_t)UINT32_MAX)
        *out = (uint32_t)kv->v.i;
    else if (is_unsigned(kv->type) || is_signed(kv->type))
        return out_of_range(g, kv, "u32", err, errlen);
    else
        return mismatch(g, kv, "an integer", err, errlen);
    return CLSPEC_OK;
}

int cs_gguf_get_i64(const struct cs_gguf *g, const char *key, int64_t *out, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv;
    if (lookup(g, key, &kv) != CLSPEC_OK)
        return CLSPEC_E_NOTFOUND;
    if (is_signed(kv->type))
        *out = kv->v.i;
    else if (is_unsigned(kv->type) && kv->v.u <= (uint64_t)INT64_MAX)
        *out = (int64_t)kv->v.u;
    else if (is_unsigned(kv->type))
        return out_of_range(g, kv, "i64", err, errlen);
    else
        return mismatch(g, kv, "an integer", err, errlen);
    return CLSPEC_OK;
}

int cs_gguf_get_f32(const struct cs_gguf *g, const char *key, float *out, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv;
    if (lookup(g, key, &kv) != CLSPEC_OK)
        return CLSPEC_E_NOTFOUND;
    if (is_float(kv->type))
        *out = (float)kv->v.f;
    else if (is_signed(kv->type))
        *out = (float)kv->v.i;
    else if (is_unsigned(kv->type))
        *out = (float)kv->v.u;
    else
        return mismatch(g, kv, "a number", err, errlen);
    return CLSPEC_OK;
}

int cs_gguf_get_bool(const struct cs_gguf *g, const char *key, bool *out, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv;
    if (lookup(g, key, &kv) != CLSPEC_OK)
        return CLSPEC_E_NOTFOUND;
    if (kv->type != CS_GGUF_BOOL)
        return mismatch(g, kv, "bool", err, errlen);
    *out = kv->v.u != 0;
    return CLSPEC_OK;
}

int cs_gguf_get_str(const struct cs_gguf *g, const char *key, char *buf, size_t buflen, char *err,
                    size_t errlen)
{
    const struct cs_gguf_kv *kv;
    if (lookup(g, key, &kv) != CLSPEC_OK)
        return CLSPEC_E_NOTFOUND;
    if (kv->type != CS_GGUF_STRING)
        return mismatch(g, kv, "string", err, errlen);
    if (kv->v.s.len >= buflen)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: key '%s': string of %" PRIu64 " bytes does not fit in %zu",
                      g->path, kv->key, kv->v.s.len, buflen);
    memcpy(buf, kv->v.s.ptr, kv->v.s.len);
    buf[kv->v.s.len] = '\0';
    return CLSPEC_OK;
}

int cs_gguf_get_arr(const struct cs_gguf *g, const char *key, enum cs_gguf_type elem,
                    const struct cs_gguf_kv **out, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv;
    if (lookup(g, key, &kv) != CLSPEC_OK)
        return CLSPEC_E_NOTFOUND;
    if (kv->type != CS_GGUF_ARRAY)
        return mismatch(g, kv, "array", err, errlen);
    if (kv->arr_type != elem)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key '%s': expected an array of %s, found an array of %s",
                      g->path, kv->key, cs_gguf_type_name(elem), cs_gguf_type_name(kv->arr_type));
    *out = kv;
    return CLSPEC_OK;
}

int64_t cs_gguf_arr_int(const struct cs_gguf_kv *kv, uint64_t i)
{
    unsigned n = scalar_size(kv->arr_type);
    if (!n || !kv->arr_data || i >= kv->arr_n)
        return 0;
    uint64_t v = le((const uint8_t *)kv->arr_data + i * n, n);
    if (is_signed(kv->arr_type))
        return sign_extend(v, n);
    if (is_float(kv->arr_type)) {
        double d = to_double(v, n);
        if (!(d > -9.2e18 && d < 9.2e18)) /* NaN or out of range */
            return d > 0 ? INT64_MAX : d < 0 ? INT64_MIN : 0;
        return (int64_t)d;
    }
    return (int64_t)v;
}

double cs_gguf_arr_float(const struct cs_gguf_kv *kv, uint64_t i)
{
    unsigned n = scalar_size(kv->arr_type);
    if (!n || !kv->arr_data || i >= kv->arr_n)
        return 0;
    uint64_t v = le((const uint8_t *)kv->arr_data + i * n, n);
    if (is_float(kv->arr_type))
        return to_double(v, n);
    if (is_signed(kv->arr_type))
        return (double)sign_extend(v, n);
    return (double)v;
}
