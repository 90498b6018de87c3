/* test-kernels-step.c: the kernels of one speculative step in the layout the
 * step uses (src/model/forward.c, device tokens): a forward's row tokens, the
 * greedy runs' next-row tokens and their verdicts in one int32 buffer
 * ([tok n | nxt k | res 2k]), so they go up in one write and come back in
 * one read.
 *   - cs_op_greedy_accept_at with nxt and res at offsets of the buffer that
 *     holds the tokens equals the C twin cs_ref_greedy_accept, and leaves the
 *     tokens in front untouched, in both kernel families;
 *   - at offsets 0 of separate buffers it equals cs_op_greedy_accept;
 *   - offsets past 32 bits and NULL buffers are refused with an error;
 * and the verification's fused mat-mats (a step of 4 slots verifies up to 16
 * rows): cs_op_matmul_qkv, cs_op_matmul_kv (K and V only) and
 * cs_op_matmul_swiglu at 1..16 columns of small
 * weights (mm3_T, mmswiglu_T on the CPU family past the fused mat-vecs'
 * columns) equal the unfused mat-mats (three matmuls; weights in parts:
 * gate, up and the SwiGLU) bit for bit, and the C reference within 1e-4,
 * with an input length that is not a multiple of 32 and odd row counts
 * (float and, with CLSPEC_INTDOT=0, q8_0 / q4_0 weights). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ops/matmul.h"
#include "ops/ops.h"
#include "ref/matmul_ref.h"
#include "ref/ops_ref.h"
#include "kernutil.h"
#include "testutil.h"

static struct cs_cl_dev *devs[2];

/* One step's buffer: n random tokens, then k next tokens over a 3-token
 * alphabet (many matches, -1 at run ends), then 2k zeros; am (k) argmaxes. */
static void step_case(struct tu_rng *r, int n, int k, int32_t *buf, int32_t *am)
{
    for (int i = 0; i < n; i++)
        buf[i] = 1000 + (int32_t)(tu_rng_u64(r) % 500);
    for (int i = 0; i < k; i++) {
        am[i] = (int32_t)(tu_rng_u64(r) % 3);
        uint32_t u = (uint32_t)(tu_rng_u64(r) % 10);
        buf[n + i] = i == k - 1 || u == 0 ? -1 : u < 8 ? am[i] : (am[i] + 1) % 3;
    }
    memset(buf + n + k, 0, (size_t)k * 2 * sizeof *buf);
}

static void greedy_at_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    struct tu_rng r;
    tu_rng_seed(&r, 77);
    for (int n = 1; n <= 41; n += 8) {
        const int k = 1 + (int)(tu_rng_u64(&r) % (uint64_t)n); /* kept rows: 1..n */
        int32_t *buf = malloc((size_t)(n + 3 * k) * 4), *am = malloc((size_t)k * 4), *ref = malloc((size_t)k * 8);
        assert_true(buf && am && ref);
        step_case(&r, n, k, buf, am);
        cs_ref_greedy_accept(am, buf + n, k, ref);
        cl_mem bb = ku_buf(d, (size_t)(n + 3 * k) * 4, buf), ba = ku_buf(d, (size_t)k * 4, am);
        assert_int_equal(cs_op_greedy_accept_at(d, ba, bb, (size_t)n, bb, (size_t)(n + k), k, err, sizeof err),
                         CLSPEC_OK);
        int32_t *got = ku_read(d, bb, 0, (size_t)(n + 3 * k) * 4);
        assert_memory_equal(got, buf, (size_t)(n + k) * 4); /* tokens and next tokens as they went up */
        assert_memory_equal(got + n + k, ref, (size_t)k * 8);
        /* separate buffers at offset 0: the plain op's bits */
        cl_mem bn = ku_buf(d, (size_t)k * 4, buf + n), br = ku_buf(d, (size_t)k * 8, NULL);
        cl_mem br2 = ku_buf(d, (size_t)k * 8, NULL);
        assert_int_equal(cs_op_greedy_accept_at(d, ba, bn, 0, br, 0, k, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_op_greedy_accept(d, ba, bn, br2, k, err, sizeof err), CLSPEC_OK);
        int32_t *g1 = ku_read(d, br, 0, (size_t)k * 8), *g2 = ku_read(d, br2, 0, (size_t)k * 8);
        assert_memory_equal(g1, ref, (size_t)k * 8);
        assert_memory_equal(g2, ref, (size_t)k * 8);
        free(g1);
        free(g2);
        free(got);
        clReleaseMemObject(bb);
        clReleaseMemObject(ba);
        clReleaseMemObject(bn);
        clReleaseMemObject(br);
        clReleaseMemObject(br2);
        free(buf);
        free(am);
        free(ref);
    }
    cl_mem b = ku_buf(d, 64, NULL);
    assert_int_equal(cs_op_greedy_accept_at(d, b, b, (size_t)1 << 32, b, 0, 2, err, sizeof err), CLSPEC_E_RANGE);
    assert_int_equal(cs_op_greedy_accept_at(d, b, b, 0, b, UINT32_MAX, 2, err, sizeof err), CLSPEC_E_RANGE);
    assert_int_equal(cs_op_greedy_accept_at(d, NULL, b, 0, b, 4, 2, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_op_greedy_accept_at(d, b, b, 0, b, 4, 0, err, sizeof err), CLSPEC_E_INVAL);
    clReleaseMemObject(b);
}

static void test_greedy_accept_at_cpu(void **s)
{
    (void)s;
    greedy_at_family(CS_KFAMILY_CPU);
}

static void test_greedy_accept_at_gpu(void **s)
{
    (void)s;
    greedy_at_family(CS_KFAMILY_GPU);
}

/* y (nc, n_out) of three matmuls of x (nc, n_in) or one cs_op_matmul_qkv */
static void qkv_run(struct cs_cl_dev *d, const struct cs_weight *w, const float *x, uint32_t nc, bool fused,
                    float *out[3])
{
    char err[512];
    cl_mem xb = ku_buf(d, (size_t)nc * w[0].n_in * 4, x), o[3];
    for (int i = 0; i < 3; i++) {
        o[i] = ku_buf(d, (2 + (size_t)nc * w[i].n_out) * 4, NULL);
        if (!fused)
            assert_int_equal(cs_op_matmul(d, &w[i], xb, 0, o[i], 2, nc, err, sizeof err), CLSPEC_OK);
    }
    if (fused)
        assert_int_equal(cs_op_matmul_qkv(d, &w[0], &w[1], &w[2], xb, 0, o[0], 2, o[1], 2, o[2], 2, nc, err,
                                          sizeof err),
                         CLSPEC_OK);
    for (int i = 0; i < 3; i++) {
        out[i] = ku_read(d, o[i], 8, (size_t)nc * w[i].n_out * 4);
        clReleaseMemObject(o[i]);
    }
    clReleaseMemObject(xb);
}

/* cs_op_matmul_kv (w[1], w[2]) == two cs_op_matmul, bit for bit */
static void kv_check(struct cs_cl_dev *d, const struct cs_weight *w, const float *x, uint32_t nc)
{
    char err[512];
    cl_mem xb = ku_buf(d, (size_t)nc * w[1].n_in * 4, x), o[4];
    for (int i = 0; i < 4; i++)
        o[i] = ku_buf(d, (1 + (size_t)nc * w[1 + i % 2].n_out) * 4, NULL);
    assert_int_equal(cs_op_matmul(d, &w[1], xb, 0, o[0], 1, nc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_op_matmul(d, &w[2], xb, 0, o[1], 1, nc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_op_matmul_kv(d, &w[1], &w[2], xb, 0, o[2], 1, o[3], 1, nc, err, sizeof err), CLSPEC_OK);
    for (int i = 0; i < 2; i++) {
        const size_t n = (size_t)nc * w[1 + i].n_out * 4;
        float *a = ku_read(d, o[i], 4, n), *b = ku_read(d, o[2 + i], 4, n);
        assert_memory_equal(a, b, n);
        free(a);
        free(b);
    }
    for (int i = 0; i < 4; i++)
        clReleaseMemObject(o[i]);
    clReleaseMemObject(xb);
}

/* out (nc, n_out) = silu(gate . x) * (up . x) by cs_op_matmul_swiglu */
static float *swiglu_run(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, const float *x,
                         uint32_t nc)
{
    char err[512];
    cl_mem xb = ku_buf(d, (1 + (size_t)nc * wg->n_in) * 4, NULL);
    assert_int_equal(clEnqueueWriteBuffer(d->q, xb, CL_TRUE, 4, (size_t)nc * wg->n_in * 4, x, 0, NULL, NULL),
                     CL_SUCCESS);
    cl_mem tb = ku_buf(d, (size_t)nc * wg->n_out * 4, NULL), ob = ku_buf(d, (3 + (size_t)nc * wg->n_out) * 4, NULL);
    assert_int_equal(cs_op_matmul_swiglu(d, wg, wu, xb, 1, tb, ob, 3, nc, err, sizeof err), CLSPEC_OK);
    float *y = ku_read(d, ob, 12, (size_t)nc * wg->n_out * 4);
    clReleaseMemObject(xb);
    clReleaseMemObject(tb);
    clReleaseMemObject(ob);
    return y;
}

static void fused_mm_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    const uint32_t types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0, CS_TYPE_Q4_0};
    const uint32_t ncs[] = {1, 5, 9, 13, 16};
    for (size_t ti = 0; ti < CS_ARRAY_LEN(types); ti++) {
        const uint32_t type = types[ti], n_in = type == CS_TYPE_Q8_0 || type == CS_TYPE_Q4_0 ? 96 : 100, no[3] = {45, 37, 37};
        struct cs_weight w[3], ws[2];
        unsigned char *wh[3];
        for (int i = 0; i < 3; i++) {
            wh[i] = ku_random_weight(type, n_in, no[i], 9100 + 10 * type + (uint64_t)i, true);
            assert_int_equal(cs_weight_upload(d, type, n_in, no[i], wh[i], &w[i], err, sizeof err), CLSPEC_OK);
        }
        for (int i = 0; i < 2; i++) /* gate = w[1], up = w[2], in parts: the unfused path */
            assert_int_equal(cs_weight_upload_parts(d, type, n_in, no[1 + i], wh[1 + i], 10 * w[1 + i].row_bytes,
                                                    true, &ws[i], err, sizeof err),
                             CLSPEC_OK);
        assert_true(ws[0].n_parts > 1);
        for (size_t ci = 0; ci < CS_ARRAY_LEN(ncs); ci++) {
            const uint32_t nc = ncs[ci];
            float *x = ku_random_x(n_in, nc, 9300 + nc, false);
            float *a[3], *b[3];
            qkv_run(d, w, x, nc, false, a);
            qkv_run(d, w, x, nc, true, b);
            for (int i = 0; i < 3; i++) {
                const size_t n = (size_t)nc * no[i];
                float *ref = malloc(n * 4);
                assert_non_null(ref);
                assert_int_equal(cs_ref_matmul(type, wh[i], n_in, no[i], x, nc, ref, err, sizeof err), CLSPEC_OK);
                assert_memory_equal(a[i], b[i], n * 4);
                if (ku_norm_err(b[i], ref, n) > 1e-4)
                    fail_msg("qkv %s %u columns, output %d: error %.3g", cs_type_name(type), nc, i,
                             ku_norm_err(b[i], ref, n));
                free(ref);
                free(a[i]);
                free(b[i]);
            }
            kv_check(d, w, x, nc);
            const size_t n = (size_t)nc * no[1];
            float *f = swiglu_run(d, &w[1], &w[2], x, nc), *u = swiglu_run(d, &ws[0], &ws[1], x, nc);
            float *g = malloc(n * 4), *up = malloc(n * 4);
            assert_true(g && up);
            assert_int_equal(cs_ref_matmul(type, wh[1], n_in, no[1], x, nc, g, err, sizeof err), CLSPEC_OK);
            assert_int_equal(cs_ref_matmul(type, wh[2], n_in, no[2], x, nc, up, err, sizeof err), CLSPEC_OK);
            cs_ref_swiglu(g, up, g, n);
            assert_memory_equal(f, u, n * 4);
            if (ku_norm_err(f, g, n) > 1e-4)
                fail_msg("swiglu %s %u columns: error %.3g", cs_type_name(type), nc, ku_norm_err(f, g, n));
            free(f);
            free(u);
            free(g);
            free(up);
            free(x);
        }
        for (int i = 0; i < 3; i++) {
            cs_weight_free(&w[i]);
            free(wh[i]);
        }
        cs_weight_free(&ws[0]);
        cs_weight_free(&ws[1]);
    }
}

static void test_fused_mm_cpu(void **s)
{
    (void)s;
    fused_mm_family(CS_KFAMILY_CPU);
}

static void test_fused_mm_gpu(void **s)
{
    (void)s;
    fused_mm_family(CS_KFAMILY_GPU);
}

static int setup(void **state)
{
    (void)state;
    setenv("CLSPEC_INTDOT", "0", 1); /* q8_0 and q4_0 keep the float layouts, where the fused mat-mats run */
    return ku_open_families(devs, false, "speculative step kernel tests") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ku_close_families(devs);
    return 0;
}

const char *__asan_default_options(void); /* as tests/test-kernels.c: PoCL threads crash LSan's tracer */
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_accept_at_cpu),
        cmocka_unit_test(test_greedy_accept_at_gpu),
        cmocka_unit_test(test_fused_mm_cpu),
        cmocka_unit_test(test_fused_mm_gpu),
    };
    if (getenv("CLSPEC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    return _cmocka_run_group_tests("kernels-step", tests, CS_ARRAY_LEN(tests), setup, teardown);
}
