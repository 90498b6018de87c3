/* test-kernels.c: the weight-matrix kernels (cl/matmul.cl, cl/getrows.cl via
 * src/ops/matmul.c) against the plain-C references (src/ref/matmul_ref.c),
 * in the spirit of ggml's test-backend-ops: every weight type x both kernel
 * families (the first device is opened twice, once per family, so PoCL runs
 * the CPU and the GPU kernels) x n_cols in {1, 2, 4, 8, 16, 17, 64} x a few
 * shapes. Error measure: max |y - y_ref| / (max |y_ref| + 1e-20) <= 1e-4.
 * The reference sums exactly-dequantized weights times x in double; the
 * kernels sum in f32 in another order (and may fuse a*b+c), so the expected
 * error is a few f32 ulps times sqrt(n_in): ~1e-6 here. 1e-4 leaves margin
 * while any wrong element, block or scale gives O(1e-2..1). get_rows must
 * match within 1e-6 of the row maximum (only dequant rounding may differ).
 * Timing lines ("# matmul q8_0 cpu 512x96 n=1: ...") are informational.
 * The fused ops (SwiGLU, RoPE of Q and K, Q/K/V, add + RMSNorm):
 * tests/test-kernels-fused.c. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "base/common.h"
#include "ops/matmul.h"
#include "ops/ops.h"
#include "gguf/quant.h"
#include "ref/matmul_ref.h"
#include "ref/ops_ref.h"
#include "kernutil.h"
#include "testutil.h"

static const uint32_t all_types[] = {
    CS_TYPE_F32,  CS_TYPE_F16,  CS_TYPE_BF16, CS_TYPE_Q8_0, CS_TYPE_Q4_0, CS_TYPE_Q4_1, CS_TYPE_Q5_0,
    CS_TYPE_Q5_1, CS_TYPE_Q2_K, CS_TYPE_Q3_K, CS_TYPE_Q4_K, CS_TYPE_Q5_K, CS_TYPE_Q6_K,
};
static const uint32_t col_counts[] = {1, 2, 4, 8, 16, 17, 64};

/* one opened device per family (NULL if no OpenCL device) */
static struct cs_cl_dev *devs[2];

static double now_ms(void)
{
    return cs_now() * 1e3;
}

/* runs y = x W^T on d with the given offsets and returns y (n_cols * n_out floats, malloc'd) */
static float *run_matmul(struct cs_cl_dev *d, const struct cs_weight *w, const float *x, uint32_t n_cols,
                         double *ms)
{
    char err[512];
    const size_t x_off = 3, y_off = 5; /* exercise the offsets */
    const size_t xn = x_off + (size_t)n_cols * w->n_in, yn = y_off + (size_t)n_cols * w->n_out;
    float *xh = calloc(xn, sizeof *xh);
    assert_non_null(xh);
    memcpy(xh + x_off, x, (size_t)n_cols * w->n_in * sizeof *x);
    cl_mem xb = ku_buf(d, xn * sizeof(float), xh), yb = ku_buf(d, yn * sizeof(float), NULL);
    free(xh);
    int rc = cs_op_matmul(d, w, xb, x_off, yb, y_off, n_cols, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
    if (ms) { /* best of a few runs after the warm-up above (the machine is shared) */
        *ms = INFINITY;
        for (int i = 0; i < 10; i++) {
            double t0 = now_ms();
            assert_int_equal(cs_op_matmul(d, w, xb, x_off, yb, y_off, n_cols, err, sizeof err), CLSPEC_OK);
            assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
            *ms = fmin(*ms, now_ms() - t0);
        }
    }
    float *y = malloc((size_t)n_cols * w->n_out * sizeof *y);
    assert_non_null(y);
    ku_read_to(d, yb, y_off * sizeof(float), (size_t)n_cols * w->n_out * sizeof(float), y);
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    return y;
}

/* ---- matmul: every type x family x n_cols x shape ---- */

struct shape {
    uint32_t n_in, n_out;
};

static void check_type(uint32_t type, enum cs_kfamily fam, bool repack)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const bool flt = type == CS_TYPE_F32 || type == CS_TYPE_F16 || type == CS_TYPE_BF16;
    /* 37 and 101 rows: not a multiple of the CPU local size; 100 columns: a float-type tail;
     * n_in 2048 (2052): the CPU family's two-row tile (mm2_T), an odd row count */
    const struct shape shapes[] = {{256, 64}, {512, 96}, {256, 37}, {flt ? 100u : 512u, 101},
                                   {flt ? 2052u : 2048u, 37}};
    for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++) {
        const struct shape sh = shapes[si];
        uint64_t wbytes;
        unsigned char *wh = ku_random_blocks(type, sh.n_in, sh.n_out, 1000 + type * 17 + si, &wbytes);
        struct cs_weight w;
        if (cs_weight_upload_parts(d, type, sh.n_in, sh.n_out, wh, 0, repack, &w, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        const int want_layout = !repack ? CS_WLAYOUT_GGUF
                                : type == CS_TYPE_Q8_0 ? CS_WLAYOUT_Q8_0_F32D
                                : type == CS_TYPE_Q4_K ? CS_WLAYOUT_Q4_K_R
                                : type == CS_TYPE_Q6_K ? CS_WLAYOUT_Q6_K_R
                                : type == CS_TYPE_Q5_K ? CS_WLAYOUT_Q5_K_R : CS_WLAYOUT_GGUF;
        assert_int_equal(w.layout, want_layout);
        float *x = ku_random_floats((size_t)64 * sh.n_in, 77 + si);
        float *ref = malloc((size_t)64 * sh.n_out * sizeof *ref);
        assert_non_null(ref);
        assert_int_equal(cs_ref_matmul(type, wh, sh.n_in, sh.n_out, x, 64, ref, err, sizeof err), CLSPEC_OK);
        for (size_t ci = 0; ci < CS_ARRAY_LEN(col_counts); ci++) {
            const uint32_t nc = col_counts[ci];
            const bool timed = si == 1 && (nc == 1 || nc == 16 || nc == 64);
            double ms = 0;
            float *y = run_matmul(d, &w, x, nc, timed ? &ms : NULL);
            /* the reference of the first nc columns is the first nc columns of ref */
            const double e = ku_norm_err(y, ref, (size_t)nc * sh.n_out);
            if (e > 1e-4)
                fail_msg("matmul %s %s %ux%u n_cols=%u: normalized error %.3g > 1e-4", cs_type_name(type),
                         ku_fam_name[fam], sh.n_in, sh.n_out, nc, e);
            if (timed)
                printf("# matmul %s%s %s %ux%u n=%u: %.3f ms, %.2f GB/s weights, %.2f GFLOP/s (err %.1e)\n",
                       cs_type_name(type), w.layout == CS_WLAYOUT_Q8_0_F32D ? " (f32 d)" : "", ku_fam_name[fam],
                       sh.n_in, sh.n_out, nc, ms, w.bytes / (ms * 1e6), 2.0 * nc * sh.n_in * sh.n_out / (ms * 1e6), e);
            free(y);
        }
        free(ref);
        free(x);
        free(wh);
        cs_weight_free(&w);
    }
}

#define TYPE_TESTS(T, NAME) \
    static void test_matmul_##NAME##_cpu(void **s) \
    { \
        (void)s; \
        check_type(T, CS_KFAMILY_CPU, true); \
    } \
    static void test_matmul_##NAME##_gpu(void **s) \
    { \
        (void)s; \
        check_type(T, CS_KFAMILY_GPU, true); \
    }
TYPE_TESTS(CS_TYPE_F32, f32)
TYPE_TESTS(CS_TYPE_F16, f16)
TYPE_TESTS(CS_TYPE_BF16, bf16)
TYPE_TESTS(CS_TYPE_Q8_0, q8_0)
TYPE_TESTS(CS_TYPE_Q4_0, q4_0)
TYPE_TESTS(CS_TYPE_Q4_1, q4_1)
TYPE_TESTS(CS_TYPE_Q5_0, q5_0)
TYPE_TESTS(CS_TYPE_Q5_1, q5_1)
TYPE_TESTS(CS_TYPE_Q2_K, q2_K)
TYPE_TESTS(CS_TYPE_Q3_K, q3_K)
TYPE_TESTS(CS_TYPE_Q4_K, q4_K)
TYPE_TESTS(CS_TYPE_Q5_K, q5_K)
TYPE_TESTS(CS_TYPE_Q6_K, q6_K)

/* q8_0 in its GGUF layout (cs_weight_upload repacks it) */
static void test_matmul_q8_0_gguf_cpu(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q8_0, CS_KFAMILY_CPU, false);
}

static void test_matmul_q8_0_gguf_gpu(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q8_0, CS_KFAMILY_GPU, false);
}

/* q4_K, q5_K and q6_K in their GGUF layout (cs_weight_upload repacks them), and
 * the repacked layouts bitwise equal to the GGUF ones for every column count
 * (the repack changes no value: golden results stay as they were) */
static void check_repack_same(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t types[] = {CS_TYPE_Q4_K, CS_TYPE_Q5_K, CS_TYPE_Q6_K, CS_TYPE_Q8_0};
    const uint32_t ncs[] = {1, 2, 3, 7, 16, 17};
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++) {
        const uint32_t type = types[ti], n_in = 2048, n_out = 37;
        uint64_t wbytes;
        unsigned char *wh = ku_random_blocks(type, n_in, n_out, 8100 + type, &wbytes);
        struct cs_weight wr, wg;
        if (cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, true, &wr, err, sizeof err) != CLSPEC_OK ||
            cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, false, &wg, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        assert_int_not_equal(wr.layout, CS_WLAYOUT_GGUF);
        float *x = ku_random_floats((size_t)17 * n_in, 8200 + ti);
        for (size_t ci = 0; ci < CS_ARRAY_LEN(ncs); ci++) {
            float *a = run_matmul(d, &wr, x, ncs[ci], NULL), *b = run_matmul(d, &wg, x, ncs[ci], NULL);
            if (memcmp(a, b, (size_t)ncs[ci] * n_out * sizeof *a) != 0)
                fail_msg("matmul %s %s n_cols=%u: repacked layout differs from GGUF layout", cs_type_name(type),
                         ku_fam_name[fam], ncs[ci]);
            free(a);
            free(b);
        }
        free(x);
        free(wh);
        cs_weight_free(&wr);
        cs_weight_free(&wg);
    }
}

static void test_matmul_k_gguf_cpu(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q4_K, CS_KFAMILY_CPU, false);
    check_type(CS_TYPE_Q5_K, CS_KFAMILY_CPU, false);
    check_type(CS_TYPE_Q6_K, CS_KFAMILY_CPU, false);
    check_repack_same(CS_KFAMILY_CPU);
}

static void test_matmul_k_gguf_gpu(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q4_K, CS_KFAMILY_GPU, false);
    check_type(CS_TYPE_Q5_K, CS_KFAMILY_GPU, false);
    check_type(CS_TYPE_Q6_K, CS_KFAMILY_GPU, false);
    check_repack_same(CS_KFAMILY_GPU);
}

/* ---- batch invariance: a column's result does not depend on the batch ----
 * Speculative verification computes a sequence's logits inside batches of
 * other columns: they must be bitwise identical to decoding it alone. For
 * every type and family, column x0 computed alone (mat-vec) is compared with
 * memcmp to the same column at the first, a middle and the last position of
 * batches of 2, 3, 5, 7, 16, 17, 64, 512 columns whose other columns are random (small mat-mat and
 * tiled mat-mat, every column-tile position). */

static void check_invariance(uint32_t type, enum cs_kfamily fam, bool wide)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const bool flt = type == CS_TYPE_F32 || type == CS_TYPE_F16 || type == CS_TYPE_BF16;
    /* float types: a 4-element tail; wide: the CPU family's two-row tile (mm2_T) */
    const uint32_t n_in = wide ? (flt ? 2052 : 2048) : (flt ? 100 : 512), n_out = 37;
    uint64_t wbytes;
    unsigned char *wh = ku_random_blocks(type, n_in, n_out, 7100 + type, &wbytes);
    struct cs_weight w;
    if (cs_weight_upload(d, type, n_in, n_out, wh, &w, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    float *x0 = ku_random_floats(n_in, 99);
    float *alone = run_matmul(d, &w, x0, 1, NULL);
    const uint32_t batches[] = {2, 3, 5, 7, 16, 17, 64, 512};
    for (size_t bi = 0; bi < CS_ARRAY_LEN(batches); bi++) {
        const uint32_t nb = batches[bi];
        float *x = ku_random_floats((size_t)nb * n_in, 300 + bi);
        const uint32_t at[] = {0, nb / 2 + (nb > 2 ? 1 : 0), nb - 1};
        for (size_t ai = 0; ai < CS_ARRAY_LEN(at); ai++)
            memcpy(x + (size_t)at[ai] * n_in, x0, n_in * sizeof *x);
        float *y = run_matmul(d, &w, x, nb, NULL);
        for (size_t ai = 0; ai < CS_ARRAY_LEN(at); ai++)
            if (memcmp(y + (size_t)at[ai] * n_out, alone, n_out * sizeof *alone) != 0) {
                uint32_t r = 0;
                while (r < n_out && y[(size_t)at[ai] * n_out + r] == alone[r])
                    r++;
                fail_msg("matmul %s %s: column %u of a batch of %u differs from the column alone "
                         "(row %u: %.9g vs %.9g)", cs_type_name(type), ku_fam_name[fam], at[ai], nb, r,
                         r < n_out ? y[(size_t)at[ai] * n_out + r] : 0.0, r < n_out ? alone[r] : 0.0);
            }
        free(y);
        free(x);
    }
    free(alone);
    free(x0);
    free(wh);
    cs_weight_free(&w);
}

static void invariance_family(enum cs_kfamily fam)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(all_types); i++) {
        check_invariance(all_types[i], fam, false);
        check_invariance(all_types[i], fam, true);
    }
}

static void test_invariance_cpu(void **s)
{
    (void)s;
    invariance_family(CS_KFAMILY_CPU);
}

static void test_invariance_gpu(void **s)
{
    (void)s;
    invariance_family(CS_KFAMILY_GPU);
}

/* ---- llama.cpp rounding of matmul inputs (cs_op_round_rows) ----
 * Bitwise equal to cs_ref_round_rows for every weight type (the rounding is
 * exact integer/IEEE arithmetic: nothing may differ), on random rows of mixed
 * magnitudes plus a row of exact ties (x * 127 / amax = k + 0.5, which
 * round-half-even and round-half-away disagree on), a zero block, and values
 * that overflow f16 / are f16 subnormals. Rounding twice changes nothing for
 * the 32-block and float modes. */

static void round_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const int n_rows = 5, n_cols = 512;
    const size_t n = (size_t)n_rows * n_cols, off = 11;
    float *x = ku_random_floats(n, 4321);
    for (int i = 0; i < n_cols; i++) /* row 1: scaled by 10^(i % 7 - 3) */
        x[n_cols + i] *= powf(10.0f, (float)(i % 7 - 3));
    for (int i = 0; i < 32; i++) /* row 2: block 0 ties (amax 127: id = 1), block 1 zeros */
        x[2 * n_cols + i] = i == 0 ? 127.0f : (float)(i % 9) - 4.0f + 0.5f;
    memset(x + 2 * n_cols + 32, 0, 32 * sizeof *x);
    x[3 * n_cols + 5] = 70000.0f;  /* f16 overflow */
    x[3 * n_cols + 6] = 3e-6f;     /* f16 subnormal */
    x[3 * n_cols + 7] = -1e-9f;    /* f16 underflow */
    const uint32_t types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0, CS_TYPE_Q4_0, CS_TYPE_Q4_1,
                              CS_TYPE_Q5_1, CS_TYPE_Q4_K, CS_TYPE_Q6_K};
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got), *buf = calloc(n + off, sizeof *buf);
    assert_non_null(ref);
    assert_non_null(got);
    assert_non_null(buf);
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++) {
        const uint32_t type = types[ti];
        memcpy(ref, x, n * sizeof *x);
        cs_ref_round_rows(type, ref, n_rows, n_cols);
        memcpy(buf + off, x, n * sizeof *x);
        cl_mem b = ku_buf(d, (n + off) * sizeof(float), buf);
        for (int pass = 0; pass < 2; pass++) {
            if (cs_op_round_rows(d, type, b, off, n_rows, n_cols, err, sizeof err) != CLSPEC_OK)
                fail_msg("%s", err);
            ku_read_to(d, b, off * sizeof(float), n * sizeof(float), got);
            if (pass == 1 && (type == CS_TYPE_Q4_K || type == CS_TYPE_Q6_K))
                break; /* q8_K: a second rounding may move values by 1 ulp */
            for (size_t i = 0; i < n; i++)
                if (memcmp(&got[i], &ref[i], sizeof(float)) != 0)
                    fail_msg("round_rows %s %s pass %d: element %zu (row %zu): %.9g vs reference %.9g (input %.9g)",
                             cs_type_name(type), ku_fam_name[fam], pass, i, i / n_cols, got[i], ref[i], x[i]);
        }
        if (type != CS_TYPE_F32) { /* it did round something */
            size_t changed = 0;
            for (size_t i = 0; i < n; i++)
                changed += ref[i] != x[i];
            assert_true(changed > n / 4);
        }
        clReleaseMemObject(b);
    }
    /* the ties row: half-even, as llama.cpp's x86 _mm256_round_ps (0.5 -> 0, 1.5 -> 2, -2.5 -> -2) */
    memcpy(ref, x, n * sizeof *x);
    cs_ref_round_rows(CS_TYPE_Q8_0, ref, n_rows, n_cols);
    const float d127 = cs_f16_to_f32(cs_f32_to_f16(1.0f));
    for (int i = 1; i < 32; i++) {
        const float v = x[2 * n_cols + i];
        assert_true(ref[2 * n_cols + i] == d127 * nearbyintf(v));
    }
    for (int i = 32; i < 64; i++)
        assert_true(ref[2 * n_cols + i] == 0.0f);
    free(ref);
    free(got);
    free(buf);
    free(x);
}

static void test_round_rows_cpu(void **s)
{
    (void)s;
    round_family(CS_KFAMILY_CPU);
}

static void test_round_rows_gpu(void **s)
{
    (void)s;
    round_family(CS_KFAMILY_GPU);
}

/* ---- get_rows ---- */

static void check_get_rows(struct cs_cl_dev *d, const struct cs_weight *w, const unsigned char *wh,
                           const int32_t *ids, uint32_t n, const char *what)
{
    char err[512];
    const size_t ids_off = 2, out_off = 7;
    int32_t idh[64];
    assert_true(n + ids_off <= CS_ARRAY_LEN(idh));
    memset(idh, 0, sizeof idh);
    memcpy(idh + ids_off, ids, n * sizeof *ids);
    cl_mem ib = ku_buf(d, sizeof idh, idh);
    const size_t on = out_off + (size_t)n * w->n_in;
    float *init = malloc(on * sizeof *init);
    assert_non_null(init);
    for (size_t i = 0; i < on; i++)
        init[i] = NAN; /* every output element must be written */
    cl_mem ob = ku_buf(d, on * sizeof(float), init);
    free(init);
    if (cs_op_get_rows(d, w, ib, ids_off, n, ob, out_off, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    float *out = malloc((size_t)n * w->n_in * sizeof *out), *ref = malloc((size_t)n * w->n_in * sizeof *ref);
    assert_non_null(out);
    assert_non_null(ref);
    ku_read_to(d, ob, out_off * sizeof(float), (size_t)n * w->n_in * sizeof(float), out);
    assert_int_equal(cs_ref_get_rows(w->type, wh, w->n_in, w->n_out, ids, n, ref, err, sizeof err), CLSPEC_OK);
    const double e = ku_norm_err(out, ref, (size_t)n * w->n_in);
    if (e > 1e-6)
        fail_msg("get_rows %s %s %ux%u: normalized error %.3g > 1e-6", what, cs_type_name(w->type), w->n_in,
                 w->n_out, e);
    free(out);
    free(ref);
    clReleaseMemObject(ib);
    clReleaseMemObject(ob);
}

static void get_rows_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    for (size_t i = 0; i < CS_ARRAY_LEN(all_types); i++) {
        const uint32_t type = all_types[i];
        const bool flt = type == CS_TYPE_F32 || type == CS_TYPE_F16 || type == CS_TYPE_BF16;
        const uint32_t n_in = flt ? 80 : 512, n_out = 45;
        uint64_t wbytes;
        unsigned char *wh = ku_random_blocks(type, n_in, n_out, 5000 + type, &wbytes);
        struct cs_weight w;
        /* repeated, first, last, and invalid ids (-> zero rows) */
        const int32_t ids[] = {3, 44, 0, 3, 17, -1, 45, 30, 1000};
        for (int repack = 1; repack >= (type == CS_TYPE_Q8_0 ? 0 : 1); repack--) {
            if (cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, repack, &w, err, sizeof err) != CLSPEC_OK)
                fail_msg("%s", err);
            check_get_rows(d, &w, wh, ids, CS_ARRAY_LEN(ids), ku_fam_name[fam]);
            cs_weight_free(&w);
        }
        free(wh);
    }
}

static void test_get_rows_cpu(void **s)
{
    (void)s;
    get_rows_family(CS_KFAMILY_CPU);
}

static void test_get_rows_gpu(void **s)
{
    (void)s;
    get_rows_family(CS_KFAMILY_GPU);
}

/* ---- weights split into row parts give identical results ---- */

static void split_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_Q4_K, CS_TYPE_F32};
    for (size_t i = 0; i < CS_ARRAY_LEN(types); i++) {
        const uint32_t type = types[i], n_in = type == CS_TYPE_F32 ? 100 : 256, n_out = 50;
        uint64_t wbytes, rb;
        unsigned char *wh = ku_random_blocks(type, n_in, n_out, 9000 + type, &wbytes);
        assert_true(cs_row_bytes(type, n_in, &rb));
        struct cs_weight whole, split;
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, true, &whole, err, sizeof err), CLSPEC_OK);
        assert_int_equal(whole.n_parts, 1);
        rb = whole.row_bytes; /* device row bytes (q8_0 is repacked) */
        /* 7 rows per part plus a few spare bytes: 8 parts, the last holds 1 row */
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 7 * rb + 5, true, &split, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(split.n_parts, 8);
        assert_int_equal(split.parts[7].r0, 49);
        assert_int_equal(split.parts[7].n_rows, 1);
        float *x = ku_random_floats((size_t)20 * n_in, 31);
        const uint32_t ncs[] = {1, 5, 20};
        for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
            float *a = run_matmul(d, &whole, x, ncs[c], NULL), *b = run_matmul(d, &split, x, ncs[c], NULL);
            assert_memory_equal(a, b, (size_t)ncs[c] * n_out * sizeof(float));
            free(a);
            free(b);
        }
        const int32_t ids[] = {0, 6, 7, 49, 48, 13, -5, 50};
        check_get_rows(d, &split, wh, ids, CS_ARRAY_LEN(ids), "split");
        free(x);
        free(wh);
        cs_weight_free(&whole);
        cs_weight_free(&split);
    }
}

static void test_split_cpu(void **s)
{
    (void)s;
    split_family(CS_KFAMILY_CPU);
}

static void test_split_gpu(void **s)
{
    (void)s;
    split_family(CS_KFAMILY_GPU);
}

/* ---- bad input is refused with a message ---- */

static void test_upload_errors(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    char err[512];
    unsigned char buf[4096] = {0};
    struct cs_weight w;
    assert_int_equal(cs_weight_upload(d, CS_TYPE_Q8_0, 100, 2, buf, &w, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "q8_0"));
    assert_int_equal(w.n_parts, 0);
    assert_int_equal(cs_weight_upload(d, CS_TYPE_Q8_K, 256, 1, buf, &w, err, sizeof err), CLSPEC_E_UNSUPPORTED);
    assert_int_equal(cs_weight_upload(d, 77, 32, 1, buf, &w, err, sizeof err), CLSPEC_E_UNSUPPORTED);
    /* one row larger than the part limit */
    assert_int_equal(cs_weight_upload_parts(d, CS_TYPE_F32, 64, 2, buf, 100, true, &w, err, sizeof err), CLSPEC_E_RANGE);
    assert_non_null(strstr(err, "part limit"));
    setenv("CLSPEC_MAX_PART_BYTES", "12x", 1);
    assert_int_equal(cs_weight_upload(d, CS_TYPE_F32, 4, 2, buf, &w, err, sizeof err), CLSPEC_E_INVAL);
    setenv("CLSPEC_MAX_PART_BYTES", "16", 1);
    assert_int_equal(cs_weight_upload(d, CS_TYPE_F32, 4, 3, buf, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(w.n_parts, 3);
    cs_weight_free(&w);
    unsetenv("CLSPEC_MAX_PART_BYTES");
    assert_int_equal(cs_weight_upload(d, CS_TYPE_F32, 4, 3, buf, &w, err, sizeof err), CLSPEC_OK);
    assert_int_equal(w.n_parts, 1);
    cl_mem m = ku_buf(d, 64, NULL);
    assert_int_equal(cs_op_matmul(d, &w, m, 0, m, 0, 0, err, sizeof err), CLSPEC_E_INVAL);
    cs_weight_free(&w);
    assert_int_equal(cs_op_matmul(d, &w, m, 0, m, 0, 1, err, sizeof err), CLSPEC_E_INVAL);
    clReleaseMemObject(m);
}

/* ---- decode-sized mat-vec bandwidth (reported, not asserted) ---- */

static void bench_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_F16, CS_TYPE_Q4_K};
    const struct shape shapes[] = {{768, 2048}, {2048, 768}, {768, 32768}};
    for (size_t i = 0; i < CS_ARRAY_LEN(types); i++)
        for (size_t j = 0; j < CS_ARRAY_LEN(shapes); j++) {
            const uint32_t type = types[i];
            const struct shape sh = shapes[j];
            uint64_t wbytes;
            unsigned char *wh = ku_random_blocks(type, sh.n_in, sh.n_out, 4242, &wbytes);
            struct cs_weight w;
            assert_int_equal(cs_weight_upload(d, type, sh.n_in, sh.n_out, wh, &w, err, sizeof err), CLSPEC_OK);
            float *x = ku_random_floats(sh.n_in, 5);
            double ms = 0;
            float *y = run_matmul(d, &w, x, 1, &ms);
            float *ref = malloc(sh.n_out * sizeof *ref);
            assert_non_null(ref);
            assert_int_equal(cs_ref_matmul(type, wh, sh.n_in, sh.n_out, x, 1, ref, err, sizeof err), CLSPEC_OK);
            const double e = ku_norm_err(y, ref, sh.n_out);
            assert_true(e <= 1e-4);
            printf("# matvec %s %s %ux%u: %.3f ms, %.2f GB/s (device weight bytes / time)\n", cs_type_name(type),
                   ku_fam_name[fam], sh.n_in, sh.n_out, ms, w.bytes / (ms * 1e6));
            free(ref);
            free(y);
            free(x);
            free(wh);
            cs_weight_free(&w);
        }
}

static void test_bench_cpu(void **s)
{
    (void)s;
    bench_family(CS_KFAMILY_CPU);
}

static void test_bench_gpu(void **s)
{
    (void)s;
    bench_family(CS_KFAMILY_GPU);
}

/* ---- per-kernel timings at the 110M model's shapes (CLSPEC_KBENCH=1) ----
 * Reported, not asserted; skipped unless CLSPEC_KBENCH=1. "queued": mean of
 * 50 launches enqueued back to back, then one finish (what the forward pass
 * sees); "waited": best single launch + finish (includes the wake-up). */

#define KB_N 50

#define KB_TIME(label, call) \
    do { \
        assert_int_equal((call), CLSPEC_OK); /* warm-up (kernel build) */ \
        assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK); \
        double t0_ = now_ms(); \
        for (int i_ = 0; i_ < KB_N; i_++) \
            assert_int_equal((call), CLSPEC_OK); \
        assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK); \
        const double q_ = (now_ms() - t0_) * 1e3 / KB_N; \
        double w_ = INFINITY; \
        for (int i_ = 0; i_ < 5; i_++) { \
            double t1_ = now_ms(); \
            assert_int_equal((call), CLSPEC_OK); \
            assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK); \
            w_ = fmin(w_, (now_ms() - t1_) * 1e3); \
        } \
        printf("# kbench %s %-34s queued %9.1f us  waited %9.1f us\n", ku_fam_name[fam], (label), q_, w_); \
    } while (0)

static void kbench_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    const char *env = getenv("CLSPEC_KBENCH");
    if (!d || !env || strcmp(env, "1") != 0)
        skip(); /* registered only with CLSPEC_KBENCH=1 (see main) */
    char err[512];
    const int E = 768, H = 12, D = 64, F = 2048, V = 32000, T = 512;
    cl_mem x = ku_buf(d, (size_t)T * F * 4, NULL), y = ku_buf(d, (size_t)T * V * 4 / 8, NULL);
    float *xh = ku_random_floats((size_t)T * F, 3);
    assert_int_equal(cs_cl_write(d, x, 0, (size_t)T * F * 4, xh, err, sizeof err), CLSPEC_OK);
    free(xh);
    cl_mem big = ku_buf(d, (size_t)V * 4, NULL);
    int32_t posh[512];
    for (int i = 0; i < T; i++)
        posh[i] = i + 100;
    cl_mem pos = ku_buf(d, sizeof posh, posh), wn = ku_buf(d, (size_t)F * 4, NULL);
    const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_F16};
    const struct shape shapes[] = {{768, 768}, {768, 2048}, {2048, 768}, {768, 32000}};
    char label[64];
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++)
        for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++) {
            const struct shape sh = shapes[si];
            uint64_t wb;
            unsigned char *wh = ku_random_blocks(types[ti], sh.n_in, sh.n_out, 11, &wb);
            struct cs_weight w;
            assert_int_equal(cs_weight_upload(d, types[ti], sh.n_in, sh.n_out, wh, &w, err, sizeof err), CLSPEC_OK);
            free(wh);
            cl_mem out = sh.n_out == (uint32_t)V ? big : y;
            snprintf(label, sizeof label, "mv %s %ux%u", cs_type_name(types[ti]), sh.n_in, sh.n_out);
            KB_TIME(label, cs_op_matmul(d, &w, x, 0, out, 0, 1, err, sizeof err));
            if (sh.n_out != (uint32_t)V) {
                snprintf(label, sizeof label, "mm %s %ux%u n=16", cs_type_name(types[ti]), sh.n_in, sh.n_out);
                KB_TIME(label, cs_op_matmul(d, &w, x, 0, y, 0, 16, err, sizeof err));
                if (sh.n_in == 768 && sh.n_out == 2048) {
                    cl_mem yy = ku_buf(d, (size_t)T * F * 4, NULL);
                    snprintf(label, sizeof label, "mm %s %ux%u n=512", cs_type_name(types[ti]), sh.n_in, sh.n_out);
                    KB_TIME(label, cs_op_matmul(d, &w, x, 0, yy, 0, 512, err, sizeof err));
                    clReleaseMemObject(yy);
                }
            }
            if (types[ti] == CS_TYPE_Q8_0 && sh.n_out == (uint32_t)V) { /* the GGUF layout (34-byte blocks) */
                struct cs_weight wg;
                unsigned char *wh2 = ku_random_blocks(types[ti], sh.n_in, sh.n_out, 11, &wb);
                assert_int_equal(cs_weight_upload_parts(d, types[ti], sh.n_in, sh.n_out, wh2, 0, false, &wg, err,
                                                        sizeof err), CLSPEC_OK);
                free(wh2);
                snprintf(label, sizeof label, "mv q8_0 (gguf layout) %ux%u", sh.n_in, sh.n_out);
                KB_TIME(label, cs_op_matmul(d, &wg, x, 0, out, 0, 1, err, sizeof err));
                cs_weight_free(&wg);
            }
            cs_weight_free(&w);
        }
    const struct cs_rope_params rp = {.n_rot = D, .neox = false, .freq_base = 10000.0f, .freq_scale = 1.0f};
    KB_TIME("rmsnorm 1x768", cs_op_rmsnorm(d, x, 0, wn, y, 0, 1, E, 1e-5f, err, sizeof err));
    KB_TIME("rmsnorm 512x768", cs_op_rmsnorm(d, x, 0, wn, y, 0, T, E, 1e-5f, err, sizeof err));
    KB_TIME("rope 1x12x64", cs_op_rope(d, y, 0, pos, 1, H, D, &rp, err, sizeof err));
    KB_TIME("rope 512x12x64", cs_op_rope(d, y, 0, pos, T, H, D, &rp, err, sizeof err));
    KB_TIME("swiglu 2048", cs_op_swiglu(d, x, 0, x, F, y, 0, (size_t)F, err, sizeof err));
    KB_TIME("add 768", cs_op_add(d, x, 0, x, E, y, 0, (size_t)E, err, sizeof err));
    KB_TIME("round_rows q8_0 1x768", cs_op_round_rows(d, CS_TYPE_Q8_0, y, 0, 1, E, err, sizeof err));
    KB_TIME("round_rows f16 1x768", cs_op_round_rows(d, CS_TYPE_F16, y, 0, 1, E, err, sizeof err));
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clReleaseMemObject(big);
    clReleaseMemObject(pos);
    clReleaseMemObject(wn);
}

static void test_kbench_cpu(void **s)
{
    (void)s;
    kbench_family(CS_KFAMILY_CPU);
}

static void test_kbench_gpu(void **s)
{
    (void)s;
    kbench_family(CS_KFAMILY_GPU);
}

/* ---- setup: the first device (or $CLSPEC_TEST_DEVICE), once per family ---- */

static int setup(void **state)
{
    (void)state;
    return ku_open_families(devs, true, "kernel tests") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ku_close_families(devs);
    return 0;
}

#define TYPE_ENTRIES(NAME) cmocka_unit_test(test_matmul_##NAME##_cpu), cmocka_unit_test(test_matmul_##NAME##_gpu)

/* Under --enable-sanitizers, LeakSanitizer's thread tracer crashes (SIGSEGV in
 * the tracer, "LeakSanitizer has encountered a fatal error") while suspending
 * the many PoCL worker threads this program leaves behind; every test case
 * still passes. Leak checking stays on for every other test program. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

int main(void)
{
    /* the float-path kernels of every layout (read at device open; the integer layouts' harnesses:
     * tests/test-kernels-i4.c, tests/test-kernels-i8.c) */
    setenv("CLSPEC_INTDOT", "0", 1);
    const struct CMUnitTest tests[] = {
        TYPE_ENTRIES(f32),  TYPE_ENTRIES(f16),  TYPE_ENTRIES(bf16), TYPE_ENTRIES(q8_0), TYPE_ENTRIES(q4_0),
        TYPE_ENTRIES(q4_1), TYPE_ENTRIES(q5_0), TYPE_ENTRIES(q5_1), TYPE_ENTRIES(q2_K), TYPE_ENTRIES(q3_K),
        TYPE_ENTRIES(q4_K), TYPE_ENTRIES(q5_K), TYPE_ENTRIES(q6_K), TYPE_ENTRIES(q8_0_gguf), TYPE_ENTRIES(k_gguf),
        cmocka_unit_test(test_invariance_cpu),
        cmocka_unit_test(test_invariance_gpu),
        cmocka_unit_test(test_round_rows_cpu),
        cmocka_unit_test(test_round_rows_gpu),
        cmocka_unit_test(test_get_rows_cpu),
        cmocka_unit_test(test_get_rows_gpu),
        cmocka_unit_test(test_split_cpu),
        cmocka_unit_test(test_split_gpu),
        cmocka_unit_test(test_upload_errors),
        cmocka_unit_test(test_bench_cpu),
        cmocka_unit_test(test_bench_gpu),
        cmocka_unit_test(test_kbench_cpu),
        cmocka_unit_test(test_kbench_gpu),
    };
    if (getenv("CLSPEC_TEST_FILTER")) /* e.g. "test_round*": run only the matching tests */
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    /* the per-kernel timings (the last two) run only when asked for: a
     * skipped cmocka test reads as a failure to automake's TAP driver */
    const char *kb = getenv("CLSPEC_KBENCH");
    size_t n = sizeof tests / sizeof tests[0] - (kb && !strcmp(kb, "1") ? 0 : 2);
    return _cmocka_run_group_tests("kernels", tests, n, setup, teardown);
}
