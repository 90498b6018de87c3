/* gguf_write.c: see gguf_write.h. Layout written (GGUF v3): "GGUF", u32 version,
 * u64 n_tensors, u64 n_kv, the KVs, the tensor infos, zero padding to the
 * alignment, then the data section with every tensor at an aligned offset. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/gguf_write.h"
#include "gguf/quant.h"

#define GGUF_VERSION 3
#define DEFAULT_ALIGNMENT 32
#define MAX_NAME 63              /* ggml's GGML_MAX_NAME (64) less the NUL */
#define CHUNK_BYTES (1u << 20)   /* fill-callback chunk size */

struct wtensor {
    char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t row_bytes; /* bytes of one row of ne[0] elements */
    uint64_t n_rows;    /* ne[1]*ne[2]*ne[3] */
    uint64_t size;      /* row_bytes * n_rows */
    uint64_t offset;    /* in the data section, set at finish */
    const void *data;
    cs_gguf_fill_fn fill;
    void *user;
};

struct cs_gguf_writer {
    char *path;
    uint64_t alignment;
    /* serialized KVs */
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys; /* n_kv owned copies, for the duplicate check */
    size_t keys_cap;
    struct wtensor *t;
    uint64_t n_t;
    size_t t_cap;
    bool failed; /* an allocation failed half-way: refuse to finish */
};

int cs_gguf_writer_new(const char *path, struct cs_gguf_writer **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", path);
    }
    w->alignment = DEFAULT_ALIGNMENT;
    *out = w;
    return CLSPEC_OK;
}

void cs_gguf_writer_free(struct cs_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w->path);
    free(w);
}

/* ---- serialization into the KV buffer ---- */

static int put(struct cs_gguf_writer *w, const void *p, size_t n, char *err, size_t errlen)
{
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) {
            w->failed = true;
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory for metadata", w->path);
        }
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return CLSPEC_OK;
}

static int put_u32(struct cs_gguf_writer *w, uint32_t v, char *err, size_t errlen)
{
    return put(w, &v, 4, err, errlen);
}

static int put_u64(struct cs_gguf_writer *w, uint64_t v, char *err, size_t errlen)
{
    return put(w, &v, 8, err, errlen);
}

static int put_str(struct cs_gguf_writer *w, const char *s, uint64_t len, char *err, size_t errlen)
{
    int rc = put_u64(w, len, err, errlen);
    return rc ? rc : put(w, s, (size_t)len, err, errlen);
}

static size_t scalar_size(enum cs_gguf_type t)
{
    switch (t) {
    case CS_GGUF_U8: case CS_GGUF_I8: case CS_GGUF_BOOL: return 1;
    case CS_GGUF_U16: case CS_GGUF_I16: return 2;
    case CS_GGUF_U32: case CS_GGUF_I32: case CS_GGUF_F32: return 4;
    case CS_GGUF_U64: case CS_GGUF_I64: case CS_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Starts a KV: checks the key, writes key and type. On error the buffer is
 * rolled back by the caller through mark. */
static int begin_kv(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type type,
                    char *err, size_t errlen)
{
    if (w->failed)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: an earlier allocation failed", w->path);
    if (!key || !*key)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: empty metadata key", w->path);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: duplicate metadata key %s", w->path, key);
    int rc = put_str(w, key, strlen(key), err, errlen);
    return rc ? rc : put_u32(w, (uint32_t)type, err, errlen);
}

/* Commits a KV whose bytes were appended since mark; rolls back on rc != OK. */
static int end_kv(struct cs_gguf_writer *w, const char *key, size_t mark, int rc, char *err,
                  size_t errlen)
{
    if (rc == CLSPEC_OK && w->n_kv == w->keys_cap) {
        size_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **k = realloc(w->keys, cap * sizeof *k);
        if (!k)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", w->path);
        else {
            w->keys = k;
            w->keys_cap = cap;
        }
    }
    char *copy = NULL;
    if (rc == CLSPEC_OK && !(copy = strdup(key)))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", w->path);
    if (rc != CLSPEC_OK) {
        w->kv_len = mark;
        return rc;
    }
    w->keys[w->n_kv++] = copy;
    return CLSPEC_OK;
}

/* general.alignment: must be a u32 power of two. */
static int check_alignment(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type type,
                           uint64_t v, char *err, size_t errlen)
{
    if (strcmp(key, "general.alignment") != 0)
        return CLSPEC_OK;
    if (type != CS_GGUF_U32)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: general.alignment must be u32, not %s",
                      w->path, cs_gguf_type_name(type));
    if (v == 0 || (v & (v - 1)) != 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "%s: general.alignment %llu is not a power of two", w->path,
                      (unsigned long long)v);
    w->alignment = v;
    return CLSPEC_OK;
}

static int add_scalar(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type type,
                      const void *v, uint64_t as_u, char *err, size_t errlen)
{
    size_t mark = w->kv_len;
    uint64_t old_align = w->alignment;
    int rc = begin_kv(w, key, type, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_alignment(w, key, type, as_u, err, errlen);
    if (rc == CLSPEC_OK)
        rc = put(w, v, scalar_size(type), err, errlen);
    if (rc != CLSPEC_OK)
        w->alignment = old_align;
    return end_kv(w, key, mark, rc, err, errlen);
}

int cs_gguf_add_u8(struct cs_gguf_writer *w, const char *key, uint8_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_U8, &v, v, err, errlen);
}
int cs_gguf_add_i8(struct cs_gguf_writer *w, const char *key, int8_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_I8, &v, 0, err, errlen);
}
int cs_gguf_add_u16(struct cs_gguf_writer *w, const char *key, uint16_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_U16, &v, v, err, errlen);
}
int cs_gguf_add_i16(struct cs_gguf_writer *w, const char *key, int16_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_I16, &v, 0, err, errlen);
}
int cs_gguf_add_u32(struct cs_gguf_writer *w, const char *key, uint32_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_U32, &v, v, err, errlen);
}
int cs_gguf_add_i32(struct cs_gguf_writer *w, const char *key, int32_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_I32, &v, 0, err, errlen);
}
int cs_gguf_add_u64(struct cs_gguf_writer *w, const char *key, uint64_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_U64, &v, v, err, errlen);
}
int cs_gguf_add_i64(struct cs_gguf_writer *w, const char *key, int64_t v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_I64, &v, 0, err, errlen);
}
int cs_gguf_add_f32(struct cs_gguf_writer *w, const char *key, float v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_F32, &v, 0, err, errlen);
}
int cs_gguf_add_f64(struct cs_gguf_writer *w, const char *key, double v, char *err, size_t errlen)
{
    return add_scalar(w, key, CS_GGUF_F64, &v, 0, err, errlen);
}
int cs_gguf_add_bool(struct cs_gguf_writer *w, const char *key, bool v, char *err, size_t errlen)
{
    uint8_t b = v ? 1 : 0;
    return add_scalar(w, key, CS_GGUF_BOOL, &b, 0, err, errlen);
}

int cs_gguf_add_strn(struct cs_gguf_writer *w, const char *key, const char *s, uint64_t len,
                     char *err, size_t errlen)
{
    size_t mark = w->kv_len;
    int rc = begin_kv(w, key, CS_GGUF_STRING, err, errlen);
    if (rc == CLSPEC_OK && !strcmp(key, "general.alignment"))
        rc = check_alignment(w, key, CS_GGUF_STRING, 0, err, errlen);
    if (rc == CLSPEC_OK)
        rc = put_str(w, s, len, err, errlen);
    return end_kv(w, key, mark, rc, err, errlen);
}

int cs_gguf_add_str(struct cs_gguf_writer *w, const char *key, const char *s, char *err, size_t errlen)
{
    return cs_gguf_add_strn(w, key, s, strlen(s), err, errlen);
}

static int begin_arr(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type elem, uint64_t n,
                     char *err, size_t errlen)
{
    int rc = begin_kv(w, key, CS_GGUF_ARRAY, err, errlen);
    if (rc == CLSPEC_OK && !strcmp(key, "general.alignment"))
        rc = check_alignment(w, key, CS_GGUF_ARRAY, 0, err, errlen);
    if (rc == CLSPEC_OK)
        rc = put_u32(w, (uint32_t)elem, err, errlen);
    return rc ? rc : put_u64(w, n, err, errlen);
}

static int add_arr_scalar(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type elem,
                          const void *data, uint64_t n, char *err, size_t errlen)
{
    size_t esz = scalar_size(elem);
    if (esz == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %s: array element type %s is not a scalar",
                      w->path, key, cs_gguf_type_name(elem));
    uint64_t bytes;
    if (!cs_mul_ok(n, esz, &bytes) || bytes > SIZE_MAX || (n && !data))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %s: bad array of %llu elements", w->path,
                      key, (unsigned long long)n);
    size_t mark = w->kv_len;
    int rc = begin_arr(w, key, elem, n, err, errlen);
    if (rc == CLSPEC_OK && bytes)
        rc = put(w, data, (size_t)bytes, err, errlen);
    return end_kv(w, key, mark, rc, err, errlen);
}

int cs_gguf_add_arr(struct cs_gguf_writer *w, const char *key, enum cs_gguf_type elem,
                    const void *data, uint64_t n, char *err, size_t errlen)
{
    return add_arr_scalar(w, key, elem, data, n, err, errlen);
}

int cs_gguf_add_arr_str(struct cs_gguf_writer *w, const char *key, const char *const *strs,
                        uint64_t n, char *err, size_t errlen)
{
    size_t mark = w->kv_len;
    int rc = begin_arr(w, key, CS_GGUF_STRING, n, err, errlen);
    for (uint64_t i = 0; rc == CLSPEC_OK && i < n; i++)
        rc = put_str(w, strs[i], strlen(strs[i]), err, errlen);
    return end_kv(w, key, mark, rc, err, errlen);
}

int cs_gguf_add_kv(struct cs_gguf_writer *w, const struct cs_gguf_kv *kv, char *err, size_t errlen)
{
    switch (kv->type) {
    case CS_GGUF_U8: return cs_gguf_add_u8(w, kv->key, (uint8_t)kv->v.u, err, errlen);
    case CS_GGUF_I8: return cs_gguf_add_i8(w, kv->key, (int8_t)kv->v.i, err, errlen);
    case CS_GGUF_U16: return cs_gguf_add_u16(w, kv->key, (uint16_t)kv->v.u, err, errlen);
    case CS_GGUF_I16: return cs_gguf_add_i16(w, kv->key, (int16_t)kv->v.i, err, errlen);
    case CS_GGUF_U32: return cs_gguf_add_u32(w, kv->key, (uint32_t)kv->v.u, err, errlen);
    case CS_GGUF_I32: return cs_gguf_add_i32(w, kv->key, (int32_t)kv->v.i, err, errlen);
    case CS_GGUF_U64: return cs_gguf_add_u64(w, kv->key, kv->v.u, err, errlen);
    case CS_GGUF_I64: return cs_gguf_add_i64(w, kv->key, kv->v.i, err, errlen);
    case CS_GGUF_F32: return cs_gguf_add_f32(w, kv->key, (float)kv->v.f, err, errlen);
    case CS_GGUF_F64: return cs_gguf_add_f64(w, kv->key, kv->v.f, err, errlen);
    case CS_GGUF_BOOL: return cs_gguf_add_bool(w, kv->key, kv->v.u != 0, err, errlen);
    case CS_GGUF_STRING: return cs_gguf_add_strn(w, kv->key, kv->v.s.ptr, kv->v.s.len, err, errlen);
    case CS_GGUF_ARRAY:
        if (kv->arr_type == CS_GGUF_STRING) {
            size_t mark = w->kv_len;
            int rc = begin_arr(w, kv->key, CS_GGUF_STRING, kv->arr_n, err, errlen);
            for (uint64_t i = 0; rc == CLSPEC_OK && i < kv->arr_n; i++)
                rc = put_str(w, kv->arr_str[i].ptr, kv->arr_str[i].len, err, errlen);
            return end_kv(w, kv->key, mark, rc, err, errlen);
        }
        return add_arr_scalar(w, kv->key, kv->arr_type, kv->arr_data, kv->arr_n, err, errlen);
    }
    return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %s: unknown metadata type %d", w->path,
                  kv->key, (int)kv->type);
}

/* ---- tensors ---- */

int cs_gguf_add_tensor(struct cs_gguf_writer *w, const char *name, uint32_t n_dims,
                       const uint64_t *ne, uint32_t type, const void *data,
                       cs_gguf_fill_fn fill, void *user, char *err, size_t errlen)
{
    if (!name || !*name || strlen(name) > MAX_NAME)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: tensor name '%s' is empty or longer than %d bytes",
                      w->path, name ? name : "", MAX_NAME);
    if (n_dims < 1 || n_dims > 4)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: tensor %s: %u dimensions (1..4 allowed)",
                      w->path, name, n_dims);
    if ((data == NULL) == (fill == NULL))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: tensor %s: give either data or a fill callback",
                      w->path, name);
    if (!cs_type_get(type))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: tensor %s: unknown type %u", w->path, name, type);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: duplicate tensor %s", w->path, name);
    struct wtensor t = {.n_dims = n_dims, .type = type, .data = data, .fill = fill, .user = user};
    t.n_rows = 1;
    for (uint32_t d = 0; d < 4; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || t.ne[d] > INT64_MAX)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: tensor %s: bad extent ne[%u] = %llu",
                          w->path, name, d, (unsigned long long)t.ne[d]);
        if (d > 0 && !cs_mul_ok(t.n_rows, t.ne[d], &t.n_rows))
            return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: tensor %s: too large", w->path, name);
    }
    if (!cs_row_bytes(type, t.ne[0], &t.row_bytes))
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "%s: tensor %s: row of %llu elements is not a multiple of %s's block of %u",
                      w->path, name, (unsigned long long)t.ne[0], cs_type_name(type),
                      cs_type_get(type)->block_elems);
    if (!cs_mul_ok(t.row_bytes, t.n_rows, &t.size) || t.size > (UINT64_MAX >> 2))
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: tensor %s: too large", w->path, name);
    if (w->n_t == w->t_cap) {
        size_t cap = w->t_cap ? w->t_cap * 2 : 64;
        struct wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", w->path);
        w->t = p;
        w->t_cap = cap;
    }
    if (!(t.name = strdup(name)))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", w->path);
    w->t[w->n_t++] = t;
    return CLSPEC_OK;
}

/* ---- output ---- */

struct out {
    FILE *f;
    const char *path;
    uint64_t pos;
};

static int out_write(struct out *o, const void *p, size_t n, char *err, size_t errlen)
{
    if (n && fwrite(p, 1, n, o->f) != n)
        return cs_err(err, errlen, CLSPEC_E_IO, "%s: write failed at byte %llu: %s", o->path,
                      (unsigned long long)o->pos, strerror(errno));
    o->pos += n;
    return CLSPEC_OK;
}

static int out_pad(struct out *o, uint64_t to, char *err, size_t errlen)
{
    static const uint8_t zeros[256];
    while (o->pos < to) {
        size_t n = (size_t)CS_MIN(to - o->pos, (uint64_t)sizeof zeros);
        int rc = out_write(o, zeros, n, err, errlen);
        if (rc)
            return rc;
    }
    return CLSPEC_OK;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static int write_tensor_data(struct out *o, const struct wtensor *t, uint8_t *chunk,
                             uint64_t chunk_rows, char *err, size_t errlen)
{
    if (t->data)
        return out_write(o, t->data, (size_t)t->size, err, errlen);
    for (uint64_t r = 0; r < t->n_rows; r += chunk_rows) {
        uint64_t n = CS_MIN(chunk_rows, t->n_rows - r);
        int rc = t->fill(t->user, r, n, chunk, err, errlen);
        if (rc)
            return cs_err_prefix(err, errlen, rc, "%s: tensor %s", o->path, t->name);
        rc = out_write(o, chunk, (size_t)(n * t->row_bytes), err, errlen);
        if (rc)
            return rc;
    }
    return CLSPEC_OK;
}

static int write_all(struct cs_gguf_writer *w, struct out *o, char *err, size_t errlen)
{
    uint32_t head[2] = {0, GGUF_VERSION};
    memcpy(&head[0], "GGUF", 4);
    uint64_t counts[2] = {w->n_t, w->n_kv};
    int rc = out_write(o, head, sizeof head, err, errlen);
    if (!rc)
        rc = out_write(o, counts, sizeof counts, err, errlen);
    if (!rc)
        rc = out_write(o, w->kv, w->kv_len, err, errlen);
    for (uint64_t i = 0; !rc && i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        rc = out_write(o, &len, 8, err, errlen);
        if (!rc)
            rc = out_write(o, t->name, (size_t)len, err, errlen);
        if (!rc)
            rc = out_write(o, &t->n_dims, 4, err, errlen);
        if (!rc)
            rc = out_write(o, t->ne, 8 * (size_t)t->n_dims, err, errlen);
        if (!rc)
            rc = out_write(o, &t->type, 4, err, errlen);
        if (!rc)
            rc = out_write(o, &t->offset, 8, err, errlen);
    }
    if (rc)
        return rc;
    uint64_t data_start = align_up(o->pos, w->alignment);
    /* chunk buffer for fill callbacks: whole rows, about CHUNK_BYTES */
    uint64_t max_chunk = 0;
    for (uint64_t i = 0; i < w->n_t; i++)
        if (w->t[i].fill) {
            uint64_t rows = CS_MAX((uint64_t)1, CHUNK_BYTES / w->t[i].row_bytes);
            max_chunk = CS_MAX(max_chunk, CS_MIN(rows, w->t[i].n_rows) * w->t[i].row_bytes);
        }
    uint8_t *chunk = NULL;
    if (max_chunk && (max_chunk > SIZE_MAX || !(chunk = malloc((size_t)max_chunk))))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory for a %llu-byte chunk",
                      o->path, (unsigned long long)max_chunk);
    for (uint64_t i = 0; !rc && i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        rc = out_pad(o, data_start + t->offset, err, errlen);
        if (!rc) {
            uint64_t rows = CS_MAX((uint64_t)1, CHUNK_BYTES / t->row_bytes);
            rc = write_tensor_data(o, t, chunk, rows, err, errlen);
        }
    }
    free(chunk);
    /* pad the file to the alignment, as ggml does */
    if (!rc && w->n_t)
        rc = out_pad(o, align_up(o->pos, w->alignment), err, errlen);
    return rc;
}

int cs_gguf_writer_finish(struct cs_gguf_writer *w, char *err, size_t errlen)
{
    if (w->failed)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: an earlier allocation failed", w->path);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        off = align_up(off, w->alignment);
        w->t[i].offset = off;
        if (!cs_add_ok(off, w->t[i].size, &off))
            return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: data section too large", w->path);
    }
    struct out o = {.path = w->path};
    o.f = fopen(w->path, "wb");
    if (!o.f)
        return cs_err(err, errlen, CLSPEC_E_IO, "%s: cannot create: %s", w->path, strerror(errno));
    setvbuf(o.f, NULL, _IOFBF, 1 << 20);
    int rc = write_all(w, &o, err, errlen);
    if (fflush(o.f) != 0 && rc == CLSPEC_OK)
        rc = cs_err(err, errlen, CLSPEC_E_IO, "%s: write failed: %s", w->path, strerror(errno));
    if (fclose(o.f) != 0 && rc == CLSPEC_OK)
        rc = cs_err(err, errlen, CLSPEC_E_IO, "%s: close failed: %s", w->path, strerror(errno));
    if (rc != CLSPEC_OK)
        remove(w->path);
    return rc;
}
