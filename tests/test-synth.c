/* test-synth.c: the GGUF writer (round trip through the reader, errors) and
 * synthetic models (every arch x type, keys, shapes, tokenizer copy, seeds,
 * shape errors, the clspec synth command). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/common.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "gguf/quant.h"
#include "model/synth.h"
#include "testutil.h"

#define VOCAB "models/stories260K.gguf" /* 512-token SPM vocabulary */

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* ---- writer round trip ---- */

struct seq_fill {
    uint32_t type;
    uint64_t ne0, row_bytes;
    uint64_t next_row; /* checks the in-order contract */
    uint64_t calls;
};

/* Row r of a test tensor: element i = (r * 7 + i) % 13 - 6, quantized. */
static void seq_row(uint64_t r, uint64_t ne0, float *row)
{
    for (uint64_t i = 0; i < ne0; i++)
        row[i] = (float)((r * 7 + i) % 13) - 6.0f;
}

static int seq_fill_fn(void *user, uint64_t row0, uint64_t n_rows, void *dst, char *err, size_t errlen)
{
    struct seq_fill *s = user;
    if (row0 != s->next_row)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "rows out of order");
    float row[256];
    for (uint64_t r = 0; r < n_rows; r++) {
        seq_row(row0 + r, s->ne0, row);
        cs_quantize_row(s->type, row, (uint8_t *)dst + r * s->row_bytes, (int64_t)s->ne0);
    }
    s->next_row += n_rows;
    s->calls++;
    return CLSPEC_OK;
}

static int failing_fill(void *user, uint64_t row0, uint64_t n_rows, void *dst, char *err, size_t errlen)
{
    (void)user, (void)row0, (void)n_rows, (void)dst;
    return cs_err(err, errlen, CLSPEC_E_IO, "generator broke");
}

static void test_writer_roundtrip(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *path = tu_tmp_path(".gguf");
    char *vpath = tu_shared_path(VOCAB);
    struct cs_gguf *src;
    assert_int_equal(cs_gguf_open(vpath, &src, err, sizeof err), CLSPEC_OK);

    struct cs_gguf_writer *w;
    assert_int_equal(cs_gguf_writer_new(path, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u8(w, "t.u8", 200, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_i8(w, "t.i8", -100, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u16(w, "t.u16", 60000, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_i16(w, "t.i16", -30000, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u32(w, "t.u32", 4000000000u, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_i32(w, "t.i32", -2000000000, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u64(w, "t.u64", UINT64_MAX - 5, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_i64(w, "t.i64", INT64_MIN + 7, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_f32(w, "t.f32", 1.5e-5f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_f64(w, "t.f64", -3.25e100, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_bool(w, "t.bool", true, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_str(w, "t.str", "héllo", err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_strn(w, "t.strn", "a\0b", 3, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_str(w, "t.empty", "", err, sizeof err), CLSPEC_OK);
    const int16_t a16[] = {-1, 2, -3, 32767};
    const uint64_t a64[] = {1, UINT64_MAX};
    const double af64[] = {0.5, -1e300, 3};
    const uint8_t abool[] = {1, 0, 1};
    const char *astr[] = {"one", "", "three"};
    assert_int_equal(cs_gguf_add_arr(w, "a.i16", CS_GGUF_I16, a16, 4, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_arr(w, "a.u64", CS_GGUF_U64, a64, 2, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_arr(w, "a.f64", CS_GGUF_F64, af64, 3, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_arr(w, "a.bool", CS_GGUF_BOOL, abool, 3, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_arr(w, "a.empty", CS_GGUF_U32, NULL, 0, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_arr_str(w, "a.str", astr, 3, err, sizeof err), CLSPEC_OK);
    /* every KV of a real file, verbatim (string arrays, f32/i32 arrays, u32, ...) */
    for (uint64_t i = 0; i < src->n_kv; i++)
        assert_int_equal(cs_gguf_add_kv(w, &src->kv[i], err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u32(w, "general.alignment", 64, err, sizeof err), CLSPEC_OK);

    /* tensors: caller data (F32, 1-D odd length), fill callbacks (F16 3-D,
     * Q8_0 large enough to need several chunks, Q4_0 4-D) */
    float f32data[5] = {1, -2, 3.5f, 0, 1e-3f};
    const uint64_t ne_a[1] = {5}, ne_b[3] = {64, 3, 2}, ne_c[2] = {64, 20000}, ne_d[4] = {32, 2, 3, 2};
    struct seq_fill sb = {.type = CS_TYPE_F16, .ne0 = 64}, sc = {.type = CS_TYPE_Q8_0, .ne0 = 64},
                    sd = {.type = CS_TYPE_Q4_0, .ne0 = 32};
    cs_row_bytes(sb.type, sb.ne0, &sb.row_bytes);
    cs_row_bytes(sc.type, sc.ne0, &sc.row_bytes);
    cs_row_bytes(sd.type, sd.ne0, &sd.row_bytes);
    assert_int_equal(cs_gguf_add_tensor(w, "a", 1, ne_a, CS_TYPE_F32, f32data, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_tensor(w, "b.weight", 3, ne_b, CS_TYPE_F16, NULL, seq_fill_fn, &sb, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_tensor(w, "c", 2, ne_c, CS_TYPE_Q8_0, NULL, seq_fill_fn, &sc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_tensor(w, "d", 4, ne_d, CS_TYPE_Q4_0, NULL, seq_fill_fn, &sd, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_writer_finish(w, err, sizeof err), CLSPEC_OK);
    cs_gguf_writer_free(w);
    assert_int_equal(sc.next_row, 20000);
    assert_true(sc.calls > 1); /* 1.36 MB of Q8_0: streamed in chunks */

    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open(path, &g, err, sizeof err), CLSPEC_OK);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_int_equal(g->n_kv, 20 + src->n_kv + 1);
    const struct cs_gguf_kv *kv;
    assert_non_null(kv = cs_gguf_find(g, "t.u8"));
    assert_true(kv->type == CS_GGUF_U8 && kv->v.u == 200);
    assert_non_null(kv = cs_gguf_find(g, "t.i8"));
    assert_true(kv->type == CS_GGUF_I8 && kv->v.i == -100);
    assert_non_null(kv = cs_gguf_find(g, "t.u16"));
    assert_true(kv->type == CS_GGUF_U16 && kv->v.u == 60000);
    assert_non_null(kv = cs_gguf_find(g, "t.i16"));
    assert_true(kv->type == CS_GGUF_I16 && kv->v.i == -30000);
    assert_non_null(kv = cs_gguf_find(g, "t.u32"));
    assert_true(kv->type == CS_GGUF_U32 && kv->v.u == 4000000000u);
    assert_non_null(kv = cs_gguf_find(g, "t.i32"));
    assert_true(kv->type == CS_GGUF_I32 && kv->v.i == -2000000000);
    assert_non_null(kv = cs_gguf_find(g, "t.u64"));
    assert_true(kv->type == CS_GGUF_U64 && kv->v.u == UINT64_MAX - 5);
    assert_non_null(kv = cs_gguf_find(g, "t.i64"));
    assert_true(kv->type == CS_GGUF_I64 && kv->v.i == INT64_MIN + 7);
    assert_non_null(kv = cs_gguf_find(g, "t.f32"));
    assert_true(kv->type == CS_GGUF_F32 && (float)kv->v.f == 1.5e-5f);
    assert_non_null(kv = cs_gguf_find(g, "t.f64"));
    assert_true(kv->type == CS_GGUF_F64 && kv->v.f == -3.25e100);
    assert_non_null(kv = cs_gguf_find(g, "t.bool"));
    assert_true(kv->type == CS_GGUF_BOOL && kv->v.u == 1);
    assert_non_null(kv = cs_gguf_find(g, "t.str"));
    assert_true(kv->type == CS_GGUF_STRING && kv->v.s.len == 6);
    assert_memory_equal(kv->v.s.ptr, "héllo", 6);
    assert_non_null(kv = cs_gguf_find(g, "t.strn"));
    assert_true(kv->v.s.len == 3);
    assert_memory_equal(kv->v.s.ptr, "a\0b", 3);
    assert_non_null(kv = cs_gguf_find(g, "t.empty"));
    assert_true(kv->type == CS_GGUF_STRING && kv->v.s.len == 0);
    assert_int_equal(cs_gguf_get_arr(g, "a.i16", CS_GGUF_I16, &kv, err, sizeof err), CLSPEC_OK);
    assert_int_equal(kv->arr_n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(cs_gguf_arr_int(kv, (uint64_t)i), a16[i]);
    assert_int_equal(cs_gguf_get_arr(g, "a.u64", CS_GGUF_U64, &kv, err, sizeof err), CLSPEC_OK);
    assert_memory_equal(kv->arr_data, a64, sizeof a64);
    assert_int_equal(cs_gguf_get_arr(g, "a.f64", CS_GGUF_F64, &kv, err, sizeof err), CLSPEC_OK);
    for (int i = 0; i < 3; i++)
        assert_true(cs_gguf_arr_float(kv, (uint64_t)i) == af64[i]);
    assert_int_equal(cs_gguf_get_arr(g, "a.bool", CS_GGUF_BOOL, &kv, err, sizeof err), CLSPEC_OK);
    assert_memory_equal(kv->arr_data, abool, 3);
    assert_int_equal(cs_gguf_get_arr(g, "a.empty", CS_GGUF_U32, &kv, err, sizeof err), CLSPEC_OK);
    assert_int_equal(kv->arr_n, 0);
    assert_int_equal(cs_gguf_get_arr(g, "a.str", CS_GGUF_STRING, &kv, err, sizeof err), CLSPEC_OK);
    assert_int_equal(kv->arr_n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kv->arr_str[i].len, strlen(astr[i]));
        assert_memory_equal(kv->arr_str[i].ptr, astr[i], strlen(astr[i]));
    }
    /* the copied KVs: same order, type, value and elements */
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const struct cs_gguf_kv *a = &src->kv[i], *b = &g->kv[20 + i];
        assert_string_equal(a->key, b->key);
        assert_int_equal(a->type, b->type);
        if (a->type == CS_GGUF_STRING) {
            assert_int_equal(a->v.s.len, b->v.s.len);
            assert_memory_equal(a->v.s.ptr, b->v.s.ptr, a->v.s.len);
        } else if (a->type == CS_GGUF_ARRAY) {
            assert_int_equal(a->arr_type, b->arr_type);
            assert_int_equal(a->arr_n, b->arr_n);
            for (uint64_t j = 0; a->arr_type == CS_GGUF_STRING && j < a->arr_n; j++) {
                assert_int_equal(a->arr_str[j].len, b->arr_str[j].len);
                assert_memory_equal(a->arr_str[j].ptr, b->arr_str[j].ptr, a->arr_str[j].len);
            }
            for (uint64_t j = 0; a->arr_type != CS_GGUF_STRING && j < a->arr_n; j++)
                assert_true(cs_gguf_arr_float(a, j) == cs_gguf_arr_float(b, j));
        } else {
            assert_true(a->v.u == b->v.u);
        }
    }

    /* tensors: shapes, types, aligned offsets, exact data */
    assert_int_equal(g->n_tensors, 4);
    const struct cs_gguf_tensor *t;
    assert_non_null(t = cs_gguf_find_tensor(g, "a"));
    assert_true(t->n_dims == 1 && t->ne[0] == 5 && t->type == CS_TYPE_F32);
    assert_memory_equal(t->data, f32data, sizeof f32data);
    const struct {
        const char *name;
        const uint64_t *ne;
        uint32_t n_dims;
        struct seq_fill *s;
    } ft[] = {{"b.weight", ne_b, 3, &sb}, {"c", ne_c, 2, &sc}, {"d", ne_d, 4, &sd}};
    for (size_t k = 0; k < CS_ARRAY_LEN(ft); k++) {
        assert_non_null(t = cs_gguf_find_tensor(g, ft[k].name));
        assert_int_equal(t->n_dims, ft[k].n_dims);
        for (uint32_t d = 0; d < ft[k].n_dims; d++)
            assert_int_equal(t->ne[d], ft[k].ne[d]);
        assert_int_equal(t->type, ft[k].s->type);
        assert_int_equal(t->offset % 64, 0);
        uint64_t rows = t->n_elems / t->ne[0];
        assert_int_equal(t->size, rows * ft[k].s->row_bytes);
        float row[256];
        uint8_t q[512];
        for (uint64_t r = 0; r < rows; r++) {
            seq_row(r, t->ne[0], row);
            cs_quantize_row(t->type, row, q, (int64_t)t->ne[0]);
            assert_memory_equal((const uint8_t *)t->data + r * ft[k].s->row_bytes, q, ft[k].s->row_bytes);
        }
    }
    assert_int_equal(g->size % 64, 0);
    cs_gguf_close(g);
    cs_gguf_close(src);
    remove(path);
    free(path);
    free(vpath);
}

static void test_writer_errors(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *path = tu_tmp_path(".gguf");
    struct cs_gguf_writer *w;
    const uint64_t ne[2] = {33, 2};
    float data[66] = {0};
    assert_int_equal(cs_gguf_writer_new(path, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u32(w, "k", 1, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_str(w, "k", "x", err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "duplicate metadata key k"));
    assert_int_equal(cs_gguf_add_u32(w, "general.alignment", 48, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "power of two"));
    assert_int_equal(cs_gguf_add_u64(w, "general.alignment", 64, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "must be u32"));
    assert_int_equal(cs_gguf_add_tensor(w, "q", 2, ne, CS_TYPE_Q8_0, data, NULL, NULL, err, sizeof err),
                     CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "tensor q: row of 33 elements is not a multiple"));
    assert_int_equal(cs_gguf_add_tensor(w, "f", 2, ne, CS_TYPE_F32, data, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_tensor(w, "f", 2, ne, CS_TYPE_F32, data, NULL, NULL, err, sizeof err),
                     CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "duplicate tensor f"));
    assert_int_equal(cs_gguf_add_tensor(w, "g", 2, ne, CS_TYPE_F32, data, failing_fill, NULL, err, sizeof err),
                     CLSPEC_E_INVAL);
    assert_int_equal(cs_gguf_add_tensor(w, "g", 5, ne, CS_TYPE_F32, data, NULL, NULL, err, sizeof err),
                     CLSPEC_E_INVAL);
    /* a failing fill callback: error with path and tensor, no partial file */
    assert_int_equal(cs_gguf_add_tensor(w, "h", 2, ne, CS_TYPE_F32, NULL, failing_fill, NULL, err, sizeof err),
                     CLSPEC_OK);
    assert_int_equal(cs_gguf_writer_finish(w, err, sizeof err), CLSPEC_E_IO);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "tensor h: generator broke"));
    assert_false(file_exists(path));
    cs_gguf_writer_free(w);
    /* the rejected KVs left nothing behind: a file with one KV reads back */
    assert_int_equal(cs_gguf_writer_new(path, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u32(w, "k", 1, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_u32(w, "k", 2, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_gguf_add_u32(w, "general.alignment", 3, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_gguf_writer_finish(w, err, sizeof err), CLSPEC_OK);
    cs_gguf_writer_free(w);
    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open(path, &g, err, sizeof err), CLSPEC_OK);
    assert_int_equal(g->n_kv, 1);
    assert_int_equal(g->n_tensors, 0);
    assert_int_equal(g->alignment, 32);
    cs_gguf_close(g);
    remove(path);
    /* I/O error names the path */
    const char *bad = "/nonexistent-dir-clspec/x.gguf";
    assert_int_equal(cs_gguf_writer_new(bad, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_writer_finish(w, err, sizeof err), CLSPEC_E_IO);
    assert_non_null(strstr(err, bad));
    cs_gguf_writer_free(w);
    free(path);
}

/* ---- synthetic models ---- */

static void small_params(struct cs_synth_params *p, const char *arch, uint32_t type, const char *vocab)
{
    cs_synth_defaults(p);
    p->arch = arch;
    p->type = type;
    p->dim = 64;
    p->n_layer = 2;
    p->n_head = 4;
    p->n_kv_head = 2;
    p->ffn = 96;
    p->ctx = 256;
    p->vocab_path = vocab;
    p->seed = 42;
}

static void expect_u32(const struct cs_gguf *g, const char *arch, const char *key, uint32_t want)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    const struct cs_gguf_kv *kv = cs_gguf_find(g, k);
    if (!kv)
        fail_msg("missing key %s", k);
    assert_int_equal(kv->type, CS_GGUF_U32);
    assert_int_equal(kv->v.u, want);
}

static void expect_tensor(const struct cs_gguf *g, const char *name, uint32_t n_dims, uint64_t ne0,
                          uint64_t ne1, uint32_t type)
{
    const struct cs_gguf_tensor *t = cs_gguf_find_tensor(g, name);
    if (!t)
        fail_msg("missing tensor %s", name);
    assert_int_equal(t->n_dims, n_dims);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    if (t->type != type)
        fail_msg("%s: type %s, want %s", name, cs_type_name(t->type), cs_type_name(type));
}

/* Mean and standard deviation of a tensor's values. */
static void tensor_stats(const struct cs_gguf_tensor *t, double *mean, double *sd)
{
    float *v = malloc(t->n_elems * sizeof *v);
    assert_non_null(v);
    uint64_t rb;
    assert_true(cs_row_bytes(t->type, t->ne[0], &rb));
    for (uint64_t r = 0; r < t->n_elems / t->ne[0]; r++)
        assert_int_equal(cs_dequantize_row(t->type, (const uint8_t *)t->data + r * rb, v + r * t->ne[0],
                                           (int64_t)t->ne[0]), 0);
    double s = 0, s2 = 0;
    for (uint64_t i = 0; i < t->n_elems; i++)
        s += v[i], s2 += (double)v[i] * v[i];
    *mean = s / (double)t->n_elems;
    *sd = sqrt(s2 / (double)t->n_elems - *mean * *mean);
    free(v);
}

static void check_tokenizer_copied(const struct cs_gguf *src, const struct cs_gguf *g)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const struct cs_gguf_kv *a = &src->kv[i];
        if (strncmp(a->key, "tokenizer.", 10) != 0)
            continue;
        n++;
        const struct cs_gguf_kv *b = cs_gguf_find(g, a->key);
        if (!b)
            fail_msg("tokenizer key %s not copied", a->key);
        assert_int_equal(a->type, b->type);
        if (a->type != CS_GGUF_ARRAY) {
            assert_true(a->type == CS_GGUF_STRING ? a->v.s.len == b->v.s.len : a->v.u == b->v.u);
            continue;
        }
        assert_int_equal(a->arr_type, b->arr_type);
        assert_int_equal(a->arr_n, b->arr_n);
        for (uint64_t j = 0; j < a->arr_n; j++) {
            if (a->arr_type == CS_GGUF_STRING) {
                assert_int_equal(a->arr_str[j].len, b->arr_str[j].len);
                assert_memory_equal(a->arr_str[j].ptr, b->arr_str[j].ptr, a->arr_str[j].len);
            } else {
                assert_true(cs_gguf_arr_float(a, j) == cs_gguf_arr_float(b, j));
            }
        }
    }
    assert_true(n >= 3); /* model, tokens, scores, token_type, ids */
    uint64_t m = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        m += strncmp(g->kv[i].key, "tokenizer.", 10) == 0;
    assert_int_equal(m, n);
}

static void test_synth_arch_types(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *vpath = tu_shared_path(VOCAB);
    struct cs_gguf *src;
    assert_int_equal(cs_gguf_open(vpath, &src, err, sizeof err), CLSPEC_OK);
    const char *archs[] = {"llama", "qwen2", "qwen3"};
    const uint32_t types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_Q8_0, CS_TYPE_Q4_0};
    for (size_t a = 0; a < CS_ARRAY_LEN(archs); a++) {
        for (size_t ty = 0; ty < CS_ARRAY_LEN(types); ty++) {
            struct cs_synth_params p;
            small_params(&p, archs[a], types[ty], vpath);
            /* qwen3 with a decoupled head size (as in real Qwen3) */
            if (a == 2)
                p.head_dim = 32;
            p.tied = ty % 2 == 1;
            uint32_t hd = a == 2 ? 32 : 16;
            char *path = tu_tmp_path(".gguf");
            uint64_t n_params = 0;
            if (cs_synth_write(&p, path, &n_params, err, sizeof err))
                fail_msg("%s/%s: %s", archs[a], cs_type_name(types[ty]), err);
            struct cs_gguf *g;
            assert_int_equal(cs_gguf_open(path, &g, err, sizeof err), CLSPEC_OK);
            char s[64];
            assert_int_equal(cs_gguf_get_str(g, "general.architecture", s, sizeof s, err, sizeof err), CLSPEC_OK);
            assert_string_equal(s, archs[a]);
            uint32_t ft;
            assert_int_equal(cs_gguf_get_u32(g, "general.file_type", &ft, err, sizeof err), CLSPEC_OK);
            static const uint32_t want_ft[] = {0, 1, 7, 2};
            assert_int_equal(ft, want_ft[ty]);
            expect_u32(g, archs[a], "context_length", 256);
            expect_u32(g, archs[a], "embedding_length", 64);
            expect_u32(g, archs[a], "block_count", 2);
            expect_u32(g, archs[a], "feed_forward_length", 96);
            expect_u32(g, archs[a], "attention.head_count", 4);
            expect_u32(g, archs[a], "attention.head_count_kv", 2);
            expect_u32(g, archs[a], "rope.dimension_count", hd);
            expect_u32(g, archs[a], "vocab_size", 512);
            if (a == 2)
                expect_u32(g, archs[a], "attention.key_length", hd);
            float eps, base;
            snprintf(s, sizeof s, "%s.attention.layer_norm_rms_epsilon", archs[a]);
            assert_int_equal(cs_gguf_get_f32(g, s, &eps, err, sizeof err), CLSPEC_OK);
            assert_true(eps == (a == 0 ? 1e-5f : 1e-6f));
            snprintf(s, sizeof s, "%s.rope.freq_base", archs[a]);
            assert_int_equal(cs_gguf_get_f32(g, s, &base, err, sizeof err), CLSPEC_OK);
            assert_true(base == (a == 0 ? 10000.0f : 1e6f));
            check_tokenizer_copied(src, g);

            uint32_t t = types[ty];
            uint64_t q = 4 * hd, kv = 2 * hd;
            size_t per_layer = 9 + (a == 1 ? 3 : a == 2 ? 2 : 0);
            assert_int_equal(g->n_tensors, 2 + 2 * per_layer + (p.tied ? 0 : 1));
            expect_tensor(g, "token_embd.weight", 2, 64, 512, t);
            expect_tensor(g, "output_norm.weight", 1, 64, 1, CS_TYPE_F32);
            if (p.tied)
                assert_null(cs_gguf_find_tensor(g, "output.weight"));
            else
                expect_tensor(g, "output.weight", 2, 64, 512, t);
            for (int l = 0; l < 2; l++) {
                char nm[64];
#define T(s, nd, a0, a1, ty_) (snprintf(nm, sizeof nm, "blk.%d." s, l), expect_tensor(g, nm, nd, a0, a1, ty_))
                T("attn_norm.weight", 1, 64, 1, CS_TYPE_F32);
                T("attn_q.weight", 2, 64, q, t);
                T("attn_k.weight", 2, 64, kv, t);
                T("attn_v.weight", 2, 64, kv, t);
                T("attn_output.weight", 2, q, 64, t);
                T("ffn_norm.weight", 1, 64, 1, CS_TYPE_F32);
                T("ffn_gate.weight", 2, 64, 96, t);
                T("ffn_up.weight", 2, 64, 96, t);
                T("ffn_down.weight", 2, 96, 64, t);
                if (a == 1) {
                    T("attn_q.bias", 1, q, 1, CS_TYPE_F32);
                    T("attn_k.bias", 1, kv, 1, CS_TYPE_F32);
                    T("attn_v.bias", 1, kv, 1, CS_TYPE_F32);
                } else {
                    snprintf(nm, sizeof nm, "blk.%d.attn_q.bias", l);
                    assert_null(cs_gguf_find_tensor(g, nm));
                }
                if (a == 2) {
                    T("attn_q_norm.weight", 1, hd, 1, CS_TYPE_F32);
                    T("attn_k_norm.weight", 1, hd, 1, CS_TYPE_F32);
                }
#undef T
            }
            /* parameter count matches the file */
            uint64_t total = 0;
            for (uint64_t i = 0; i < g->n_tensors; i++)
                total += g->tensors[i].n_elems;
            assert_int_equal(total, n_params);
            /* weight statistics: matrices ~N(0, 1/fan_in), norms ~1 */
            double mean, sd;
            tensor_stats(cs_gguf_find_tensor(g, "blk.1.ffn_gate.weight"), &mean, &sd);
            assert_true(fabs(mean) < 0.02 && fabs(sd - 0.125) < 0.02);
            tensor_stats(cs_gguf_find_tensor(g, "blk.0.ffn_down.weight"), &mean, &sd);
            assert_true(fabs(sd - 1.0 / sqrt(96.0)) < 0.02);
            tensor_stats(cs_gguf_find_tensor(g, "token_embd.weight"), &mean, &sd);
            assert_true(fabs(mean) < 0.005 && fabs(sd - 0.02) < 0.005);
            tensor_stats(cs_gguf_find_tensor(g, "blk.0.attn_norm.weight"), &mean, &sd);
            assert_true(fabs(mean - 1.0) < 0.01 && sd > 0.005 && sd < 0.05);
            cs_gguf_close(g);
            remove(path);
            free(path);
        }
    }
    cs_gguf_close(src);
    free(vpath);
}

static void test_synth_output_type(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *vpath = tu_shared_path(VOCAB);
    struct cs_synth_params p;
    small_params(&p, "llama", CS_TYPE_Q4_0, vpath);
    p.output_type = CS_TYPE_Q8_0;
    char *path = tu_tmp_path(".gguf");
    assert_int_equal(cs_synth_write(&p, path, NULL, err, sizeof err), CLSPEC_OK);
    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open(path, &g, err, sizeof err), CLSPEC_OK);
    expect_tensor(g, "output.weight", 2, 64, 512, CS_TYPE_Q8_0);
    expect_tensor(g, "token_embd.weight", 2, 64, 512, CS_TYPE_Q4_0);
    expect_tensor(g, "blk.1.attn_q.weight", 2, 64, 64, CS_TYPE_Q4_0);
    cs_gguf_close(g);
    remove(path);
    free(path);
    free(vpath);
}

/* --type q4_K_M: Q4_K matrices, Q6_K for output.weight and for attn_v /
 * ffn_down of the first and last eighth of the layers and every third one
 * in between (8 layers: 0, 3, 6, 7); file type 15 */
static void test_synth_q4_k_m(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *vpath = tu_shared_path(VOCAB);
    struct cs_synth_params p;
    small_params(&p, "llama", CS_TYPE_Q4_K, vpath);
    p.dim = 256, p.ffn = 512, p.n_layer = 8, p.q4_k_m = true;
    char *path = tu_tmp_path(".gguf");
    assert_int_equal(cs_synth_write(&p, path, NULL, err, sizeof err), CLSPEC_OK);
    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open(path, &g, err, sizeof err), CLSPEC_OK);
    expect_tensor(g, "output.weight", 2, 256, 512, CS_TYPE_Q6_K);
    expect_tensor(g, "token_embd.weight", 2, 256, 512, CS_TYPE_Q4_K);
    for (uint32_t l = 0; l < 8; l++) {
        const uint32_t vt = l == 0 || l == 3 || l == 6 || l == 7 ? CS_TYPE_Q6_K : CS_TYPE_Q4_K;
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%u.attn_v.weight", l);
        expect_tensor(g, nm, 2, 256, 128, vt);
        snprintf(nm, sizeof nm, "blk.%u.ffn_down.weight", l);
        expect_tensor(g, nm, 2, 512, 256, vt);
        snprintf(nm, sizeof nm, "blk.%u.attn_q.weight", l);
        expect_tensor(g, nm, 2, 256, 256, CS_TYPE_Q4_K);
    }
    const struct cs_gguf_kv *kv = cs_gguf_find(g, "general.file_type");
    assert_non_null(kv);
    assert_int_equal(kv->v.u, 15);
    cs_gguf_close(g);
    /* the mix needs q4_K matrices; rows must be multiples of 256 */
    p.type = CS_TYPE_Q8_0;
    assert_int_not_equal(cs_synth_check(&p, 0, err, sizeof err), CLSPEC_OK);
    assert_non_null(strstr(err, "q4_K_M"));
    p.type = CS_TYPE_Q4_K, p.dim = 64, p.ffn = 96, p.q4_k_m = false;
    assert_int_not_equal(cs_synth_check(&p, 0, err, sizeof err), CLSPEC_OK);
    remove(path);
    free(path);
    free(vpath);
}

static void test_synth_seeds(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *vpath = tu_shared_path(VOCAB);
    char *p1 = tu_tmp_path(".gguf"), *p2 = tu_tmp_path(".gguf"), *p3 = tu_tmp_path(".gguf");
    struct cs_synth_params p;
    small_params(&p, "qwen2", CS_TYPE_Q8_0, vpath);
    assert_int_equal(cs_synth_write(&p, p1, NULL, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_synth_write(&p, p2, NULL, err, sizeof err), CLSPEC_OK);
    p.seed = 43;
    assert_int_equal(cs_synth_write(&p, p3, NULL, err, sizeof err), CLSPEC_OK);
    size_t n1, n2, n3;
    uint8_t *b1 = tu_read_file(p1, &n1), *b2 = tu_read_file(p2, &n2), *b3 = tu_read_file(p3, &n3);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_non_null(b3);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    assert_int_equal(n1, n3);
    assert_memory_not_equal(b1, b3, n1);
    /* every weight tensor differs between seeds, the metadata does not */
    struct cs_gguf *g1, *g3;
    assert_int_equal(cs_gguf_open(p1, &g1, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_open(p3, &g3, err, sizeof err), CLSPEC_OK);
    assert_memory_equal(b1, b3, g1->data_offset);
    for (uint64_t i = 0; i < g1->n_tensors; i++)
        assert_memory_not_equal(g1->tensors[i].data, g3->tensors[i].data, g1->tensors[i].size);
    /* no two tensors of one file share their values */
    assert_memory_not_equal(cs_gguf_find_tensor(g1, "blk.0.attn_q.weight")->data,
                            cs_gguf_find_tensor(g1, "blk.1.attn_q.weight")->data,
                            cs_gguf_find_tensor(g1, "blk.0.attn_q.weight")->size);
    cs_gguf_close(g1);
    cs_gguf_close(g3);
    free(b1), free(b2), free(b3);
    remove(p1), remove(p2), remove(p3);
    free(p1), free(p2), free(p3);
    free(vpath);
}

static void expect_refused(const struct cs_synth_params *p, const char *path, int status, const char *msg)
{
    char err[CLSPEC_ERRLEN] = "";
    int rc = cs_synth_write(p, path, NULL, err, sizeof err);
    if (rc != status || !strstr(err, msg))
        fail_msg("want %d '%s', got %d '%s'", status, msg, rc, err);
    assert_false(file_exists(path));
}

static void test_synth_bad_shapes(void **state)
{
    (void)state;
    char *vpath = tu_shared_path(VOCAB);
    char *path = tu_tmp_path(".gguf");
    struct cs_synth_params p;
    small_params(&p, "llama", CS_TYPE_F32, vpath);
    p.dim = 90;
    expect_refused(&p, path, CLSPEC_E_INVAL, "--dim 90 is not divisible by --heads 4");
    p.head_dim = 16; /* decoupled: fine for f32 */
    char err[CLSPEC_ERRLEN];
    assert_int_equal(cs_synth_check(&p, 512, err, sizeof err), CLSPEC_OK);
    p.type = CS_TYPE_Q8_0;
    expect_refused(&p, path, CLSPEC_E_INVAL,
                   "type q8_0 needs rows that are multiples of 32: token_embd.weight has rows of 90 (--dim)");
    small_params(&p, "llama", CS_TYPE_Q4_0, vpath);
    p.ffn = 172;
    expect_refused(&p, path, CLSPEC_E_INVAL, "blk.0.ffn_down.weight has rows of 172 (--ffn)");
    small_params(&p, "llama", CS_TYPE_F16, vpath);
    p.output_type = CS_TYPE_Q4_0;
    p.ffn = 172; /* f16 matrices are fine with it; the output type is checked too */
    assert_int_equal(cs_synth_check(&p, 512, err, sizeof err), CLSPEC_OK);
    p.dim = 48;
    p.n_head = 4;
    expect_refused(&p, path, CLSPEC_E_INVAL, "output.weight has rows of 48");
    small_params(&p, "llama", CS_TYPE_F32, vpath);
    p.n_kv_head = 3;
    expect_refused(&p, path, CLSPEC_E_INVAL, "--heads 4 is not a multiple of --kv-heads 3");
    small_params(&p, "llama", CS_TYPE_F32, vpath);
    p.n_layer = 0;
    expect_refused(&p, path, CLSPEC_E_INVAL, "--layers 0");
    small_params(&p, "gpt2", CS_TYPE_F32, vpath);
    expect_refused(&p, path, CLSPEC_E_INVAL, "--arch 'gpt2'");
    small_params(&p, "llama", CS_TYPE_Q2_K, vpath);
    expect_refused(&p, path, CLSPEC_E_INVAL, "--type q2_K: unsupported");
    small_params(&p, "llama", CS_TYPE_Q4_K, vpath); /* dim 64: not whole super-blocks */
    expect_refused(&p, path, CLSPEC_E_INVAL, "type q4_K needs rows that are multiples of 256");
    small_params(&p, "llama", CS_TYPE_F32, vpath);
    p.tied = true;
    p.output_type = CS_TYPE_F16;
    expect_refused(&p, path, CLSPEC_E_INVAL, "--output-type needs an untied output");
    small_params(&p, "llama", CS_TYPE_F32, "/nonexistent-clspec/vocab.gguf");
    expect_refused(&p, path, CLSPEC_E_NOTFOUND, "/nonexistent-clspec/vocab.gguf: cannot open");
    /* a GGUF without a vocabulary */
    char *novoc = tu_tmp_path(".gguf");
    struct cs_gguf_writer *w;
    assert_int_equal(cs_gguf_writer_new(novoc, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_add_str(w, "general.architecture", "llama", err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_gguf_writer_finish(w, err, sizeof err), CLSPEC_OK);
    cs_gguf_writer_free(w);
    small_params(&p, "llama", CS_TYPE_F32, novoc);
    expect_refused(&p, path, CLSPEC_E_NOTFOUND, "no tokenizer.ggml.tokens");
    remove(novoc);
    free(novoc);
    free(path);
    free(vpath);
}

/* Runs the clspec binary with args; returns its exit status, stderr in errbuf. */
static int run_cli(const char *args, char *errbuf, size_t errlen)
{
    const char *bd = getenv("CLSPEC_BUILDDIR");
    char *errf = tu_tmp_path(".err");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/clspec' synth %s >/dev/null 2>'%s'", bd, args, errf);
    int st = system(cmd);
    size_t n = 0;
    char *e = tu_read_file(errf, &n);
    snprintf(errbuf, errlen, "%s", e ? e : "");
    free(e);
    remove(errf);
    free(errf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    const char *bd = getenv("CLSPEC_BUILDDIR");
    if (!bd || !*bd)
        skip(); /* only under make check */
    char *vpath = tu_shared_path(VOCAB);
    char *path = tu_tmp_path(".gguf");
    char args[1024], e[1024];
    snprintf(args, sizeof args,
             "--arch qwen3 --dim 64 --layers 1 --heads 4 --kv-heads 2 --ffn 96 --type q8_0 --tied "
             "--seed 7 --vocab '%s' -o '%s'", vpath, path);
    assert_int_equal(run_cli(args, e, sizeof e), 0);
    char err[CLSPEC_ERRLEN];
    struct cs_gguf *g;
    assert_int_equal(cs_gguf_open(path, &g, err, sizeof err), CLSPEC_OK);
    assert_int_equal(g->n_tensors, 13);
    expect_tensor(g, "blk.0.attn_q_norm.weight", 1, 16, 1, CS_TYPE_F32);
    expect_tensor(g, "blk.0.ffn_up.weight", 2, 64, 96, CS_TYPE_Q8_0);
    cs_gguf_close(g);
    remove(path);
    snprintf(args, sizeof args, "--dim 100 --vocab '%s' -o '%s'", vpath, path);
    assert_int_equal(run_cli(args, e, sizeof e), 2);
    assert_non_null(strstr(e, "--dim 100 is not divisible by --heads 8"));
    assert_false(file_exists(path));
    snprintf(args, sizeof args, "--preset 7b -o '%s'", path);
    assert_int_equal(run_cli(args, e, sizeof e), 2);
    assert_non_null(strstr(e, "unknown preset '7b'"));
    assert_int_equal(run_cli("--dim 64", e, sizeof e), 2);
    assert_non_null(strstr(e, "no output file"));
    assert_int_equal(run_cli("--type q3_x -o x", e, sizeof e), 2);
    assert_non_null(strstr(e, "unknown type"));
    free(path);
    free(vpath);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_synth_arch_types),
        cmocka_unit_test(test_synth_output_type),
        cmocka_unit_test(test_synth_q4_k_m),
        cmocka_unit_test(test_synth_seeds),
        cmocka_unit_test(test_synth_bad_shapes),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests_name("synth", tests, NULL, NULL);
}
