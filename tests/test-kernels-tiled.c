/* test-kernels-tiled.c: the tiled mat-mat of the float weight types
 * (cl/matmul_tiled.cl via src/ops/matmul_tiled.c), both kernel families on
 * the first device (opened once per family, so PoCL runs the GPU kernels
 * too):
 *  - against the plain-C reference (src/ref/matmul_ref.c) within 1e-4 of
 *    the largest output (as tests/test-kernels.c; a wrong element, tail or
 *    tile edge gives O(1e-2..1));
 *  - bitwise against the other paths (speculative verification needs it):
 *    each column of a batch of 1, 5, 16, 64 or 300 through the tiled
 *    kernels is memcmp'd with the same column computed alone by the
 *    mat-vec, and the whole batch with cl/matmul.cl's small mat-mat
 *    (CLSPEC_MM_TILED=0), for shapes with a tail (n_in % 32 != 0), a row
 *    count that is no multiple of the tile, an n_in wide enough for mm2_T,
 *    and a weight split into row parts;
 *  - the refusals: a quantized weight, n_cols 0;
 *  - the prefill attention tiles (cl/attention.cl's attn_cpu_t and
 *    attn_gpu_t) over a long causal prompt in a cache visited in position
 *    order (cell_order, the causal early stop): tokens of the batch memcmp'd
 *    with the same token alone (attn_cpu, attn_gpu), all within 1e-4 of the
 *    C reference (f32 K/V). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ops/matmul.h"
#include "ops/matmul_tiled.h"
#include "ops/ops.h"
#include "ref/matmul_ref.h"
#include "ref/ops_ref.h"
#include "kernutil.h"
#include "testutil.h"

static struct cs_cl_dev *devs[2]; /* indexed by enum cs_kfamily; NULL: no device */
static const char *fam_name[2] = {"gpu", "cpu"};

static const uint32_t ftypes[] = {CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_F32};
static const uint32_t batches[] = {1, 5, 16, 64, 300};

/* n_out rows of n_in random elements of a float type (GGUF layout) */
static unsigned char *random_weight(uint32_t type, uint32_t n_in, uint32_t n_out, uint64_t seed)
{
    uint64_t rb;
    assert_true(cs_row_bytes(type, n_in, &rb));
    unsigned char *w = malloc(rb * n_out);
    assert_non_null(w);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (uint64_t i = 0; i < (uint64_t)n_in * n_out; i++) {
        const float v = tu_rng_normal(&rng) * 0.1f;
        if (type == CS_TYPE_F32) {
            memcpy(w + 4 * i, &v, 4);
        } else if (type == CS_TYPE_F16) {
            tu_put_f16(w + 2 * i, v);
        } else { /* bf16: the top half of the f32 bits (truncation is fine for test data) */
            uint32_t b;
            memcpy(&b, &v, 4);
            const uint16_t h = (uint16_t)(b >> 16);
            memcpy(w + 2 * i, &h, 2);
        }
    }
    return w;
}

static float *random_floats(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = tu_rng_normal(&rng);
    return x;
}

/* y (n_cols * n_out) of x . W^T through the tiled kernels (tiled) or
 * cs_op_matmul with the tiled path switched off (mat-vec for one column,
 * else mm_T / mm2_T), with offsets in x and y */
static float *run(struct cs_cl_dev *d, const struct cs_weight *w, const float *x, uint32_t n_cols, bool tiled)
{
    char err[512];
    const size_t x_off = 3, y_off = 5;
    const size_t xn = x_off + (size_t)n_cols * w->n_in, yn = y_off + (size_t)n_cols * w->n_out;
    float *xh = calloc(xn, sizeof *xh);
    assert_non_null(xh);
    memcpy(xh + x_off, x, (size_t)n_cols * w->n_in * sizeof *x);
    cl_mem xb, yb;
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, xn * 4, xh, &xb, err, sizeof err),
                     CLSPEC_OK);
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, yn * 4, NULL, &yb, err, sizeof err), CLSPEC_OK);
    free(xh);
    int rc;
    if (tiled) {
        rc = cs_op_matmul_tiled_force(d, w, xb, x_off, yb, y_off, n_cols, err, sizeof err);
    } else {
        setenv("CLSPEC_MM_TILED", "0", 1);
        rc = cs_op_matmul(d, w, xb, x_off, yb, y_off, n_cols, err, sizeof err);
        unsetenv("CLSPEC_MM_TILED");
    }
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    float *y = malloc((size_t)n_cols * w->n_out * sizeof *y);
    assert_non_null(y);
    assert_int_equal(cs_cl_read(d, yb, y_off * 4, (size_t)n_cols * w->n_out * 4, y, err, sizeof err), CLSPEC_OK);
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    return y;
}

/* the first differing row of column c, or n_out */
static uint32_t first_diff(const float *a, const float *b, uint32_t n_out)
{
    uint32_t r = 0;
    while (r < n_out && memcmp(&a[r], &b[r], sizeof *a) == 0)
        r++;
    return r;
}

static void check_shape(enum cs_kfamily fam, uint32_t type, uint32_t n_in, uint32_t n_out, uint64_t part_bytes)
{
    struct cs_cl_dev *d = devs[fam];
    char err[512];
    unsigned char *wh = random_weight(type, n_in, n_out, 100 + type + n_in);
    struct cs_weight w;
    if (cs_weight_upload_parts(d, type, n_in, n_out, wh, part_bytes, true, &w, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    for (size_t bi = 0; bi < CS_ARRAY_LEN(batches); bi++) {
        const uint32_t nb = batches[bi];
        float *x = random_floats((size_t)nb * n_in, 7 * nb + n_in);
        float *yt = run(d, &w, x, nb, true), *ym = run(d, &w, x, nb, false);
        float *ref = malloc((size_t)nb * n_out * sizeof *ref);
        assert_non_null(ref);
        assert_int_equal(cs_ref_matmul(type, wh, n_in, n_out, x, nb, ref, err, sizeof err), CLSPEC_OK);
        const double e = ku_norm_err(yt, ref, (size_t)nb * n_out);
        if (!(e <= 1e-4))
            fail_msg("tiled %s %s %ux%u n=%u: error %.3g vs the C reference", cs_type_name(type), fam_name[fam],
                     n_in, n_out, nb, e);
        for (uint32_t c = 0; c < nb; c++) {
            const float *col = yt + (size_t)c * n_out;
            uint32_t r = first_diff(col, ym + (size_t)c * n_out, n_out);
            if (r < n_out)
                fail_msg("tiled %s %s %ux%u n=%u: column %u row %u differs from the small mat-mat (%.9g vs %.9g)",
                         cs_type_name(type), fam_name[fam], n_in, n_out, nb, c, r, col[r], ym[(size_t)c * n_out + r]);
            /* the mat-vec of this column alone: every column for small batches, a few for large */
            if (nb <= 16 || c == 0 || c == nb / 2 || c == nb - 1 || c % 37 == 5) {
                float *alone = run(d, &w, x + (size_t)c * n_in, 1, false);
                r = first_diff(col, alone, n_out);
                if (r < n_out)
                    fail_msg("tiled %s %s %ux%u n=%u: column %u row %u differs from the mat-vec (%.9g vs %.9g)",
                             cs_type_name(type), fam_name[fam], n_in, n_out, nb, c, r, col[r], alone[r]);
                free(alone);
            }
        }
        free(ref);
        free(ym);
        free(yt);
        free(x);
    }
    cs_weight_free(&w);
    free(wh);
}

static void family(enum cs_kfamily fam)
{
    if (!devs[fam])
        skip();
    for (size_t i = 0; i < CS_ARRAY_LEN(ftypes); i++) {
        const uint32_t t = ftypes[i];
        uint64_t rb;
        check_shape(fam, t, 100, 37, 0);  /* a 4-element tail, rows not a multiple of the tile */
        check_shape(fam, t, 256, 64, 0);  /* whole tiles */
        check_shape(fam, t, 2052, 19, 0); /* mm2_T's width on the CPU family, a tail */
        assert_true(cs_row_bytes(t, 96, &rb));
        check_shape(fam, t, 96, 45, 11 * rb); /* row parts of 11 rows */
    }
}

static void test_tiled_cpu(void **s)
{
    (void)s;
    family(CS_KFAMILY_CPU);
}

static void test_tiled_gpu(void **s)
{
    (void)s;
    family(CS_KFAMILY_GPU);
}

/* the dispatch: which batches take the tiled kernels, and the refusals */
static void test_tiled_dispatch(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    char err[512];
    const uint32_t n_in = 64, n_out = 8;
    unsigned char *wh = random_weight(CS_TYPE_F16, n_in, n_out, 5);
    struct cs_weight wf;
    assert_int_equal(cs_weight_upload(d, CS_TYPE_F16, n_in, n_out, wh, &wf, err, sizeof err), CLSPEC_OK);
    assert_false(cs_op_matmul_tiled_applies(d, &wf, CS_MT_MIN_COLS - 1));
    assert_true(cs_op_matmul_tiled_applies(d, &wf, CS_MT_MIN_COLS));
    setenv("CLSPEC_MM_TILED", "0", 1);
    assert_false(cs_op_matmul_tiled_applies(d, &wf, 512));
    unsetenv("CLSPEC_MM_TILED");
    cl_mem xb, yb;
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, 4096, NULL, &xb, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, 4096, NULL, &yb, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_op_matmul_tiled_force(d, &wf, xb, 0, yb, 0, 0, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "n_cols"));
    /* a quantized weight: not taken, and refused when forced */
    uint64_t rb;
    assert_true(cs_row_bytes(CS_TYPE_Q8_0, n_in, &rb));
    unsigned char *q = calloc(rb, n_out);
    assert_non_null(q);
    struct cs_weight wq;
    assert_int_equal(cs_weight_upload(d, CS_TYPE_Q8_0, n_in, n_out, q, &wq, err, sizeof err), CLSPEC_OK);
    assert_false(cs_op_matmul_tiled_applies(d, &wq, 512));
    bool done = true;
    assert_int_equal(cs_op_matmul_tiled(d, &wq, xb, 0, yb, 0, 32, &done, err, sizeof err), CLSPEC_OK);
    assert_false(done);
    assert_int_equal(cs_op_matmul_tiled_force(d, &wq, xb, 0, yb, 0, 32, err, sizeof err), CLSPEC_E_UNSUPPORTED);
    assert_non_null(strstr(err, "q8_0"));
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    cs_weight_free(&wq);
    cs_weight_free(&wf);
    free(q);
    free(wh);
}

/* ---- prefill attention: a long causal prompt, cells in position order ---- */

static cl_mem dbuf(struct cs_cl_dev *d, size_t bytes, const void *init)
{
    char err[512];
    cl_mem m;
    if (cs_cl_alloc(d, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes, (void *)init, &m, err,
                    sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    return m;
}

/* attention of nt tokens (positions tpos, sequence 0) over kv; out (nt, nh, hd) */
static void att_run(struct cs_cl_dev *d, const struct cs_kv_view *kv, const float *q, const int32_t *tpos, int nt,
                    int nh, float *out)
{
    char err[512];
    const size_t qn = (size_t)nt * nh * kv->head_dim;
    int32_t *ts = calloc((size_t)nt, sizeof *ts);
    assert_non_null(ts);
    cl_mem bq = dbuf(d, qn * 4, q), bo = dbuf(d, qn * 4, NULL), bp = dbuf(d, (size_t)nt * 4, tpos),
           bs = dbuf(d, (size_t)nt * 4, ts);
    if (cs_op_attention(d, kv, kv->n_cells, bq, 0, bo, 0, bp, bs, nt, nh, true, 0.125f, err, sizeof err) !=
        CLSPEC_OK)
        fail_msg("%s", err);
    assert_int_equal(cs_cl_read(d, bo, 0, qn * 4, out, err, sizeof err), CLSPEC_OK);
    clReleaseMemObject(bq);
    clReleaseMemObject(bo);
    clReleaseMemObject(bp);
    clReleaseMemObject(bs);
    free(ts);
}

static void attention_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    /* 300 prompt tokens at positions 0..299 in cells placed in reverse
     * (cell c holds position NC - 1 - c) plus 20 free cells (position -1),
     * so cell_order is not the identity and its tail is unoccupied */
    enum { NT = 300, NC = 320, NH = 4, NKV = 2, HD = 64 };
    const size_t rowe = (size_t)NKV * HD, xr = (size_t)NH * HD;
    float *k = random_floats(NC * rowe, 41), *v = random_floats(NC * rowe, 42), *q = random_floats(NT * xr, 43);
    int32_t cpos[NC], order[NC], tpos[NT];
    uint64_t cseq[NC];
    for (int c = 0; c < NC; c++) {
        cpos[c] = c < NT ? NT - 1 - c : -1;
        cseq[c] = c < NT ? 1 : 0;
        order[c] = c < NT ? NT - 1 - c : c; /* by position, free cells last */
    }
    for (int t = 0; t < NT; t++)
        tpos[t] = t;
    struct cs_kv_view kv = {.type_k = CS_TYPE_F32, .type_v = CS_TYPE_F32, .n_cells = NC, .n_kv_head = NKV,
                            .head_dim = HD};
    kv.k = dbuf(d, NC * rowe * 4, k);
    kv.v = dbuf(d, NC * rowe * 4, v);
    kv.cell_pos = dbuf(d, sizeof cpos, cpos);
    kv.cell_seq = dbuf(d, sizeof cseq, cseq);
    kv.cell_order = dbuf(d, sizeof order, order);
    float *out = malloc(NT * xr * 4), *ref = malloc(NT * xr * 4), *alone = malloc(xr * 4);
    assert_true(out && ref && alone);
    att_run(d, &kv, q, tpos, NT, NH, out);
    cs_ref_attention(q, k, v, cpos, cseq, NC, tpos, (int32_t[NT]){0}, NT, NH, NKV, HD, true, 0.125f, ref);
    const double e = ku_norm_err(out, ref, NT * xr);
    if (!(e <= 1e-4))
        fail_msg("attention %s prefill of %d tokens: error %.3g vs the C reference", fam_name[fam], NT, e);
    static const int probe[] = {0, 7, 8, 150, 255, 299};
    for (size_t i = 0; i < CS_ARRAY_LEN(probe); i++) {
        const int t = probe[i];
        att_run(d, &kv, q + (size_t)t * xr, &tpos[t], 1, NH, alone);
        if (memcmp(alone, out + (size_t)t * xr, xr * 4) != 0)
            fail_msg("attention %s: token %d of a prefill of %d differs from the token alone", fam_name[fam], t, NT);
    }
    clReleaseMemObject(kv.k);
    clReleaseMemObject(kv.v);
    clReleaseMemObject(kv.cell_pos);
    clReleaseMemObject(kv.cell_seq);
    clReleaseMemObject(kv.cell_order);
    free(out);
    free(ref);
    free(alone);
    free(k);
    free(v);
    free(q);
}

static void test_attention_prefill_cpu(void **s)
{
    (void)s;
    attention_family(CS_KFAMILY_CPU);
}

static void test_attention_prefill_gpu(void **s)
{
    (void)s;
    attention_family(CS_KFAMILY_GPU);
}

/* CLSPEC_KBENCH=1 only (informational, asserts nothing about time): the
 * 110M model's prefill shapes, n = 512, tiled against cl/matmul.cl's mat-mat
 * (CLSPEC_MM_TILED=0), alternated, best of 5 each; prints the ratio. */
static void bench_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t T = 512, shapes[][2] = {{768, 768}, {768, 2048}, {2048, 768}};
    const uint32_t types[] = {CS_TYPE_F16, CS_TYPE_BF16};
    cl_mem x, y;
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)T * 2048 * 4, NULL, &x, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)T * 2048 * 4, NULL, &y, err, sizeof err), CLSPEC_OK);
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++)
        for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++) {
            const uint32_t n_in = shapes[si][0], n_out = shapes[si][1];
            unsigned char *wh = random_weight(types[ti], n_in, n_out, 3);
            struct cs_weight w;
            assert_int_equal(cs_weight_upload(d, types[ti], n_in, n_out, wh, &w, err, sizeof err), CLSPEC_OK);
            double best[2] = {INFINITY, INFINITY};
            for (int rep = 0; rep < 5; rep++)
                for (int tiled = 0; tiled < 2; tiled++) {
                    if (!tiled)
                        setenv("CLSPEC_MM_TILED", "0", 1);
                    const double t0 = cs_now();
                    assert_int_equal(cs_op_matmul(d, &w, x, 0, y, 0, T, err, sizeof err), CLSPEC_OK);
                    assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
                    best[tiled] = fmin(best[tiled], cs_now() - t0);
                    unsetenv("CLSPEC_MM_TILED");
                }
            const double gf = 2.0 * n_in * n_out * T / 1e9;
            printf("# kbench %s %s %ux%u n=%u: mm %.1f ms (%.1f GFLOP/s), tiled %.1f ms (%.1f GFLOP/s): %.2fx\n",
                   fam_name[fam], cs_type_name(types[ti]), n_in, n_out, T, best[0] * 1e3, gf / best[0],
                   best[1] * 1e3, gf / best[1], best[0] / best[1]);
            cs_weight_free(&w);
            free(wh);
        }
    clReleaseMemObject(x);
    clReleaseMemObject(y);
}

static void test_tiled_bench_cpu(void **s)
{
    (void)s;
    bench_family(CS_KFAMILY_CPU);
}

static void test_tiled_bench_gpu(void **s)
{
    (void)s;
    bench_family(CS_KFAMILY_GPU);
}

/* LeakSanitizer's tracer and PoCL's worker threads: see tests/test-kernels.c */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

static int setup(void **state)
{
    (void)state;
    return ku_open_families(devs, true, "tiled kernel tests") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ku_close_families(devs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiled_cpu),
        cmocka_unit_test(test_tiled_gpu),
        cmocka_unit_test(test_tiled_dispatch),
        cmocka_unit_test(test_attention_prefill_cpu),
        cmocka_unit_test(test_attention_prefill_gpu),
        cmocka_unit_test(test_tiled_bench_cpu),
        cmocka_unit_test(test_tiled_bench_gpu),
    };
    if (getenv("CLSPEC_TEST_FILTER")) /* a cmocka glob, e.g. "test_tiled_bench_cpu" */
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    /* the timings (the last two) only when asked for (a skipped cmocka test
     * reads as a failure to automake's TAP driver) */
    const char *kb = getenv("CLSPEC_KBENCH");
    const size_t n = CS_ARRAY_LEN(tests) - (kb && !strcmp(kb, "1") ? 0 : 2);
    return _cmocka_run_group_tests("kernels-tiled", tests, n, setup, teardown);
}
