/* fuzz-gguf.c: libFuzzer target for the GGUF reader. Opens the input with
 * cs_gguf_open_mem; when it opens, walks every kv (array elements and string
 * bytes included), runs the typed getters, and dequantizes the first row of
 * every tensor whose type has a dequantizer, so that every pointer the
 * reader hands out is touched under ASan. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "clspec/clspec.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink; /* keeps the reads from being optimised away */

static void touch_str(const struct cs_gguf_str *s)
{
    uint64_t h = 0;
    for (uint64_t i = 0; i < s->len; i++)
        h = h * 31 + (unsigned char)s->ptr[i];
    sink += h;
}

static void walk_kv(const struct cs_gguf *g, const struct cs_gguf_kv *kv)
{
    char err[CLSPEC_ERRLEN], buf[64];
    uint32_t u;
    int64_t i;
    float f;
    bool b;
    const struct cs_gguf_kv *arr;
    /* every getter on every key: each either converts or refuses */
    (void)cs_gguf_get_u32(g, kv->key, &u, err, sizeof err);
    (void)cs_gguf_get_i64(g, kv->key, &i, err, sizeof err);
    (void)cs_gguf_get_f32(g, kv->key, &f, err, sizeof err);
    (void)cs_gguf_get_bool(g, kv->key, &b, err, sizeof err);
    (void)cs_gguf_get_str(g, kv->key, buf, sizeof buf, err, sizeof err);
    if (kv->type == CS_GGUF_STRING)
        touch_str(&kv->v.s);
    if (kv->type != CS_GGUF_ARRAY)
        return;
    if (cs_gguf_get_arr(g, kv->key, kv->arr_type, &arr, err, sizeof err) != CLSPEC_OK)
        abort(); /* the element type it reports must be accepted */
    for (uint64_t k = 0; k < kv->arr_n; k++) {
        if (kv->arr_type == CS_GGUF_STRING)
            touch_str(&kv->arr_str[k]);
        else
            sink += (uint64_t)cs_gguf_arr_int(kv, k) + (uint64_t)(cs_gguf_arr_float(kv, k) != 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cs_gguf *g;
    char err[CLSPEC_ERRLEN];
    if (cs_gguf_open_mem(data, size, "fuzz.gguf", &g, err, sizeof err) != CLSPEC_OK)
        return 0;
    for (uint64_t k = 0; k < g->n_kv; k++)
        walk_kv(g, &g->kv[k]);
    for (uint64_t k = 0; k < g->n_tensors; k++) {
        const struct cs_gguf_tensor *t = &g->tensors[k];
        const struct cs_type_info *ti = cs_type_get(t->type);
        uint64_t rb;
        if (!ti || !cs_row_bytes(t->type, t->ne[0], &rb) || rb > t->size)
            abort(); /* the reader promised a known type and a whole row inside the tensor */
        if (cs_gguf_find_tensor(g, t->name) != t)
            abort(); /* names are unique */
        if (!ti->dequant)
            continue;
        float *row = malloc(t->ne[0] * sizeof *row); /* ne[0] <= elements the file can hold */
        if (!row)
            continue;
        if (cs_dequantize_row(t->type, t->data, row, (int64_t)t->ne[0]) != 0)
            abort();
        for (uint64_t j = 0; j < t->ne[0]; j++)
            sink += row[j] != 0;
        free(row);
    }
    cs_gguf_close(g);
    return 0;
}
