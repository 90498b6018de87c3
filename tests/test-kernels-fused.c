/* test-kernels-fused.c: the fused weight-matrix ops (src/ops/matmul.c)
 * against the plain-C references and against their unfused sequences, in
 * both kernel families (the first device is opened twice, once per family):
 * gate/up/SwiGLU, RoPE of Q and K, Q/K/V in one launch, add + RMSNorm. The
 * plain matmul kernels: tests/test-kernels.c; the harness: tests/kernutil.h. */
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
#include "ops/matmul.h"
#include "ops/ops.h"
#include "gguf/quant.h"
#include "ref/matmul_ref.h"
#include "ref/ops_ref.h"
#include "kernutil.h"
#include "testutil.h"

/* one opened device per family (NULL if no OpenCL device) */
static struct cs_cl_dev *devs[2];

/* ---- fused ops: gate/up/SwiGLU and RoPE of Q and K ----
 * cs_op_matmul_swiglu matches the reference (matmuls then silu * up) and is
 * bitwise the same fused (mat-vec, single-part weights, CPU family) and
 * unfused (weights split into parts, or a column inside a batch);
 * cs_op_rope_qk is bitwise the same as cs_op_rope on Q then on K. */

static float *run_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu,
                         const float *x, uint32_t n_cols)
{
    char err[512];
    const size_t n_out = wg->n_out, x_off = 2, o_off = 3;
    float *xh = calloc(x_off + (size_t)n_cols * wg->n_in, sizeof *xh);
    assert_non_null(xh);
    memcpy(xh + x_off, x, (size_t)n_cols * wg->n_in * sizeof *x);
    cl_mem xb = ku_buf(d, (x_off + (size_t)n_cols * wg->n_in) * 4, xh);
    cl_mem tb = ku_buf(d, (size_t)n_cols * n_out * 4, NULL), ob = ku_buf(d, (o_off + n_cols * n_out) * 4, NULL);
    free(xh);
    if (cs_op_matmul_swiglu(d, wg, wu, xb, x_off, tb, ob, o_off, n_cols, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    float *y = malloc((size_t)n_cols * n_out * sizeof *y);
    assert_non_null(y);
    ku_read_to(d, ob, o_off * 4, (size_t)n_cols * n_out * 4, y);
    clReleaseMemObject(xb);
    clReleaseMemObject(tb);
    clReleaseMemObject(ob);
    return y;
}

static void swiglu_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0, CS_TYPE_Q4_0, CS_TYPE_Q4_K,
                              CS_TYPE_Q6_K};
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++) {
        const uint32_t type = types[ti];
        const bool flt = type == CS_TYPE_F32 || type == CS_TYPE_F16 || type == CS_TYPE_BF16;
        const uint32_t n_in = flt ? 100 : 256, n_out = 45, nb = 16;
        uint64_t wb;
        unsigned char *gh = ku_random_blocks(type, n_in, n_out, 8100 + type, &wb);
        unsigned char *uh = ku_random_blocks(type, n_in, n_out, 8200 + type, &wb);
        struct cs_weight wg, wu, wgs, wus;
        assert_int_equal(cs_weight_upload(d, type, n_in, n_out, gh, &wg, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_weight_upload(d, type, n_in, n_out, uh, &wu, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, gh, 10 * wg.row_bytes, true, &wgs, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, uh, 10 * wu.row_bytes, true, &wus, err, sizeof err),
                         CLSPEC_OK);
        assert_true(wgs.n_parts > 1);
        float *x = ku_random_floats((size_t)nb * n_in, 8300 + type);
        float *g = malloc((size_t)nb * n_out * sizeof *g), *u = malloc((size_t)nb * n_out * sizeof *u);
        assert_non_null(g);
        assert_non_null(u);
        assert_int_equal(cs_ref_matmul(type, gh, n_in, n_out, x, nb, g, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_ref_matmul(type, uh, n_in, n_out, x, nb, u, err, sizeof err), CLSPEC_OK);
        cs_ref_swiglu(g, u, g, (size_t)nb * n_out);
        float *one = run_swiglu(d, &wg, &wu, x, 1), *split = run_swiglu(d, &wgs, &wus, x, 1);
        float *batch = run_swiglu(d, &wg, &wu, x, nb), *bsplit = run_swiglu(d, &wgs, &wus, x, nb);
        float *b4 = run_swiglu(d, &wg, &wu, x, 4), *b4s = run_swiglu(d, &wgs, &wus, x, 4);
        const double e = ku_norm_err(batch, g, (size_t)nb * n_out);
        if (e > 1e-4)
            fail_msg("matmul_swiglu %s %s: normalized error %.3g > 1e-4", cs_type_name(type), ku_fam_name[fam], e);
        assert_memory_equal(one, split, n_out * sizeof *one);
        assert_memory_equal(one, batch, n_out * sizeof *one);
        /* 4 columns fused (CPU: small weights) and unfused (parts: two mat-mats and the SwiGLU); 16 */
        assert_memory_equal(b4, b4s, (size_t)4 * n_out * sizeof *b4);
        assert_memory_equal(b4, batch, (size_t)4 * n_out * sizeof *b4);
        assert_memory_equal(batch, bsplit, (size_t)nb * n_out * sizeof *batch);
        free(bsplit);
        free(b4);
        free(b4s);
        free(one);
        free(split);
        free(batch);
        free(g);
        free(u);
        free(x);
        free(gh);
        free(uh);
        cs_weight_free(&wg);
        cs_weight_free(&wu);
        cs_weight_free(&wgs);
        cs_weight_free(&wus);
    }
}

static void test_matmul_swiglu_cpu(void **s)
{
    (void)s;
    swiglu_family(CS_KFAMILY_CPU);
}

static void test_matmul_swiglu_gpu(void **s)
{
    (void)s;
    swiglu_family(CS_KFAMILY_GPU);
}

static void rope_qk_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const int nt = 7, nh = 8, nkv = 2, hd = 64;
    const size_t nq = (size_t)nt * nh * hd, nk = (size_t)nt * nkv * hd, qo = 5, ko = 9;
    float *q = ku_random_floats(qo + nq, 61), *k = ku_random_floats(ko + nk, 62);
    int32_t pos[7] = {0, 1, 2, 50, 511, 4000, 70000};
    cl_mem pb = ku_buf(d, sizeof pos, pos);
    for (int neox = 0; neox <= 1; neox++) {
        const struct cs_rope_params p = {.n_rot = neox ? 32 : 64, .neox = neox != 0, .freq_base = 10000.0f,
                                         .freq_scale = neox ? 0.5f : 1.0f};
        cl_mem q1 = ku_buf(d, (qo + nq) * 4, q), k1 = ku_buf(d, (ko + nk) * 4, k);
        cl_mem q2 = ku_buf(d, (qo + nq) * 4, q), k2 = ku_buf(d, (ko + nk) * 4, k);
        assert_int_equal(cs_op_rope(d, q1, qo, pb, nt, nh, hd, &p, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_op_rope(d, k1, ko, pb, nt, nkv, hd, &p, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_op_rope_qk(d, q2, qo, k2, ko, pb, nt, nh, nkv, hd, &p, err, sizeof err), CLSPEC_OK);
        float *a = malloc((qo + nq + ko + nk) * 4), *b = malloc((qo + nq + ko + nk) * 4);
        assert_non_null(a);
        assert_non_null(b);
        ku_read_to(d, q1, 0, (qo + nq) * 4, a);
        ku_read_to(d, k1, 0, (ko + nk) * 4, a + qo + nq);
        ku_read_to(d, q2, 0, (qo + nq) * 4, b);
        ku_read_to(d, k2, 0, (ko + nk) * 4, b + qo + nq);
        assert_memory_equal(a, b, (qo + nq + ko + nk) * 4);
        /* it rotated: K of the last token changed, its padding did not */
        assert_true(memcmp(a + qo + nq + ko + nk - hd, k + ko + nk - hd, 16) != 0);
        assert_memory_equal(a + qo + nq, k, ko * 4);
        free(a);
        free(b);
        clReleaseMemObject(q1);
        clReleaseMemObject(k1);
        clReleaseMemObject(q2);
        clReleaseMemObject(k2);
    }
    clReleaseMemObject(pb);
    free(q);
    free(k);
}

static void test_rope_qk_cpu(void **s)
{
    (void)s;
    rope_qk_family(CS_KFAMILY_CPU);
}

static void test_rope_qk_gpu(void **s)
{
    (void)s;
    rope_qk_family(CS_KFAMILY_GPU);
}

/* cs_op_matmul_qkv == three cs_op_matmul, bitwise (fused on the CPU family
 * for a mat-vec and, with small weights, for up to 8 columns; odd row
 * counts exercise the two-rows-per-item tail) */
static void qkv_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_Q8_0, CS_TYPE_Q4_1, CS_TYPE_Q5_K};
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++) {
        const uint32_t type = types[ti];
        const bool flt = type == CS_TYPE_F32 || type == CS_TYPE_F16;
        const uint32_t n_in = flt ? 100 : 256, no[3] = {96, 37, 37};
        struct cs_weight w[3];
        unsigned char *wh[3];
        for (int i = 0; i < 3; i++) {
            uint64_t wb;
            wh[i] = ku_random_blocks(type, n_in, no[i], 8500 + 10 * type + i, &wb);
            assert_int_equal(cs_weight_upload(d, type, n_in, no[i], wh[i], &w[i], err, sizeof err), CLSPEC_OK);
        }
        for (uint32_t nc = 1; nc <= 9; nc += 4) { /* 1, 5: fused on the CPU family; 9: not */
            float *x = ku_random_floats((size_t)nc * n_in, 8600 + type);
            cl_mem xb = ku_buf(d, (size_t)nc * n_in * 4, x);
            const size_t off[3] = {1, 2, 3};
            cl_mem o1[3], o2[3];
            for (int i = 0; i < 3; i++) {
                o1[i] = ku_buf(d, (off[i] + (size_t)nc * no[i]) * 4, NULL);
                o2[i] = ku_buf(d, (off[i] + (size_t)nc * no[i]) * 4, NULL);
                assert_int_equal(cs_op_matmul(d, &w[i], xb, 0, o1[i], off[i], nc, err, sizeof err), CLSPEC_OK);
            }
            assert_int_equal(cs_op_matmul_qkv(d, &w[0], &w[1], &w[2], xb, 0, o2[0], off[0], o2[1], off[1], o2[2],
                                              off[2], nc, err, sizeof err), CLSPEC_OK);
            for (int i = 0; i < 3; i++) {
                const size_t n = (size_t)nc * no[i];
                float *a = malloc(n * 4), *b = malloc(n * 4), *ref = malloc(n * 4);
                assert_non_null(a);
                assert_non_null(b);
                assert_non_null(ref);
                ku_read_to(d, o1[i], off[i] * 4, n * 4, a);
                ku_read_to(d, o2[i], off[i] * 4, n * 4, b);
                assert_memory_equal(a, b, n * 4);
                assert_int_equal(cs_ref_matmul(type, wh[i], n_in, no[i], x, nc, ref, err, sizeof err), CLSPEC_OK);
                assert_true(ku_norm_err(b, ref, n) <= 1e-4);
                free(a);
                free(b);
                free(ref);
                clReleaseMemObject(o1[i]);
                clReleaseMemObject(o2[i]);
            }
            clReleaseMemObject(xb);
            free(x);
        }
        for (int i = 0; i < 3; i++) {
            cs_weight_free(&w[i]);
            free(wh[i]);
        }
    }
}

static void test_matmul_qkv_cpu(void **s)
{
    (void)s;
    qkv_family(CS_KFAMILY_CPU);
}

static void test_matmul_qkv_gpu(void **s)
{
    (void)s;
    qkv_family(CS_KFAMILY_GPU);
}

/* cs_op_add_rmsnorm == cs_op_add then cs_op_rmsnorm, bitwise (x and y) */
static void add_rmsnorm_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const int shapes[][2] = {{1, 768}, {3, 77}, {5, 2048}};
    for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++) {
        const int nr = shapes[si][0], nc = shapes[si][1];
        const size_t n = (size_t)nr * nc, xo = 3, bo = 6, yo = 1;
        float *x = ku_random_floats(xo + n, 71 + si), *b = ku_random_floats(bo + n, 81 + si), *w = ku_random_floats(nc, 91);
        cl_mem x1 = ku_buf(d, (xo + n) * 4, x), x2 = ku_buf(d, (xo + n) * 4, x), bb = ku_buf(d, (bo + n) * 4, b);
        cl_mem wb = ku_buf(d, (size_t)nc * 4, w), y1 = ku_buf(d, (yo + n) * 4, NULL), y2 = ku_buf(d, (yo + n) * 4, NULL);
        for (int has_w = 0; has_w <= 1; has_w++) {
            assert_int_equal(cs_op_add(d, x1, xo, bb, bo, x1, xo, n, err, sizeof err), CLSPEC_OK);
            assert_int_equal(cs_op_rmsnorm(d, x1, xo, has_w ? wb : NULL, y1, yo, nr, nc, 1e-5f, err, sizeof err),
                             CLSPEC_OK);
            assert_int_equal(cs_op_add_rmsnorm(d, x2, xo, bb, bo, has_w ? wb : NULL, y2, yo, nr, nc, 1e-5f, err,
                                               sizeof err), CLSPEC_OK);
            float *a1 = malloc(2 * n * 4), *a2 = malloc(2 * n * 4);
            assert_non_null(a1);
            assert_non_null(a2);
            ku_read_to(d, x1, xo * 4, n * 4, a1);
            ku_read_to(d, y1, yo * 4, n * 4, a1 + n);
            ku_read_to(d, x2, xo * 4, n * 4, a2);
            ku_read_to(d, y2, yo * 4, n * 4, a2 + n);
            assert_memory_equal(a1, a2, 2 * n * 4);
            assert_true(a1[0] == x[xo] + b[bo] || has_w); /* the first pass added b */
            free(a1);
            free(a2);
        }
        clReleaseMemObject(x1);
        clReleaseMemObject(x2);
        clReleaseMemObject(bb);
        clReleaseMemObject(wb);
        clReleaseMemObject(y1);
        clReleaseMemObject(y2);
        free(x);
        free(b);
        free(w);
    }
}

static void test_add_rmsnorm_cpu(void **s)
{
    (void)s;
    add_rmsnorm_family(CS_KFAMILY_CPU);
}

static void test_add_rmsnorm_gpu(void **s)
{
    (void)s;
    add_rmsnorm_family(CS_KFAMILY_GPU);
}

static int setup(void **state)
{
    (void)state;
    return ku_open_families(devs, true, "fused kernel tests") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ku_close_families(devs);
    return 0;
}

/* LeakSanitizer's thread tracer crashes on PoCL's many worker threads, as in
 * tests/test-kernels.c: leak checking is off for this program only. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

int main(void)
{
    setenv("CLSPEC_INTDOT", "0", 1); /* the float-path kernels of every layout (read at device open) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_swiglu_cpu), cmocka_unit_test(test_matmul_swiglu_gpu),
        cmocka_unit_test(test_rope_qk_cpu),       cmocka_unit_test(test_rope_qk_gpu),
        cmocka_unit_test(test_matmul_qkv_cpu),    cmocka_unit_test(test_matmul_qkv_gpu),
        cmocka_unit_test(test_add_rmsnorm_cpu),   cmocka_unit_test(test_add_rmsnorm_gpu),
    };
    if (getenv("CLSPEC_TEST_FILTER")) /* e.g. "test_rope*": run only the matching tests */
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    return cmocka_run_group_tests_name("kernels-fused", tests, setup, teardown);
}
