/* test-kernels-q8.c: the integer-dot path (cl/quant.cl, cl/matmul_q8.cl via
 * src/ops/matmul_q8.c, taken by cs_op_matmul when d->int8_act):
 *   - quant_q8 equals the C reference (src/ref/q8act_ref.c) bit for bit;
 *   - every q4_0 / q8_0 matmul (mat-vec, mat-mat, any column count, tails,
 *     odd block counts, weights split in parts) equals the reference of the
 *     same reduction order bit for bit, and the exact float product within
 *     the activation-rounding bound below;
 *   - batch invariance: a column gives the same bits alone or in a batch;
 *   - the fused entry points (qkv, swiglu; one launch for a mat-vec) equal
 *     plain matmuls (and cs_op_swiglu) bit for bit;
 *   - the GPU family and other types ignore int8_act (float path).
 * Activation rounding: each x block is rounded to 8 bits of its maximum, an
 * error of at most amax / 254 per element, random in sign, so a dot product
 * of n terms moves by about sqrt(n) |w| amax / 254 / sqrt(3); relative to
 * max |y| (~ sqrt(n) |w| |x|) that is ~ 1e-2 of amax / |x| ~ 2.5 for normal
 * x: a few 1e-3. The bound 2e-2 holds with margin while a wrong block,
 * scale or sign gives O(1e-1..1). A timing line compares the int8 and float
 * mat-vecs (informational only). */
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
#include "ops/matmul_q8.h"
#include "ops/ops.h"
#include "ref/matmul_ref.h"
#include "ref/q8act_ref.h"
#include "kernutil.h"
#include "testutil.h"

#define ROUND_BOUND 2e-2

static struct cs_cl_dev *devs[2]; /* indexed by enum cs_kfamily */

static void test_quant(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t shapes[][2] = {{32, 1}, {96, 3}, {2048, 2}, {5632, 1}};
    char err[512];
    for (size_t i = 0; i < CS_ARRAY_LEN(shapes); i++) {
        const uint32_t n_in = shapes[i][0], nc = shapes[i][1], nb = n_in / 32;
        float *x = ku_random_x(n_in, nc, 11 + i, true);
        int8_t *q = malloc((size_t)n_in * nc);
        float *dr = malloc((size_t)nb * nc * sizeof *dr);
        assert_non_null(q);
        assert_non_null(dr);
        cs_ref_quant_q8(x, n_in, nc, q, dr);
        size_t d_off;
        const size_t bytes = cs_q8_bytes(n_in, nc, &d_off);
        cl_mem xb = ku_buf(d, (size_t)n_in * nc * sizeof(float) + 8, NULL), ob = ku_buf(d, bytes, NULL);
        assert_int_equal(cs_cl_write(d, xb, 2 * sizeof(float), (size_t)n_in * nc * sizeof(float), x, err,
                                     sizeof err), CLSPEC_OK);
        assert_int_equal(cs_op_quant_q8(d, xb, 2, n_in, nc, ob, err, sizeof err), CLSPEC_OK);
        unsigned char *o = ku_read(d, ob, 0, bytes);
        if (memcmp(o, q, (size_t)n_in * nc) || memcmp(o + d_off, dr, (size_t)nb * nc * sizeof(float)))
            fail_msg("quant_q8 %ux%u differs from the reference", n_in, nc);
        for (uint32_t c = 0; c < nc; c++) /* the rounding itself: |x - d q| <= d / 2 */
            for (uint32_t k = 0; k < n_in; k++) {
                const float db = dr[c * nb + k / 32], xv = x[(size_t)c * n_in + k];
                assert_true(fabsf(xv - db * q[(size_t)c * n_in + cs_q8_pos(nb, k / 32, k % 32)]) <= 0.5001f * db + 1e-30f);
            }
        free(o);
        free(x);
        free(q);
        free(dr);
        clReleaseMemObject(xb);
        clReleaseMemObject(ob);
    }
    assert_int_equal(cs_op_quant_q8(d, NULL, 0, 48, 1, NULL, err, sizeof err), CLSPEC_E_INVAL);
}

/* every column count against the reference of the same order (bits) and the exact product (bound) */
static void check_type(uint32_t type)
{
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t shapes[][2] = {{32, 7}, {96, 33}, {256, 64}, {2048, 17}};
    const uint32_t ncs[] = {1, 2, 7, 8, 9, 17, 64};
    char err[512];
    d->int8_act = true;
    for (size_t i = 0; i < CS_ARRAY_LEN(shapes); i++) {
        const uint32_t n_in = shapes[i][0], n_out = shapes[i][1], nb = n_in / 32;
        unsigned char *wh = ku_random_weight(type, n_in, n_out, 100 + i, false);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, true, &w, err, sizeof err), CLSPEC_OK);
        assert_true(cs_op_q8_takes(d, &w));
        float *x = ku_random_x(n_in, 64, 7 + i, false);
        int8_t *q = malloc((size_t)n_in * 64);
        float *dq = malloc((size_t)nb * 64 * sizeof *dq), *ref = malloc((size_t)n_out * 64 * sizeof *ref);
        float *exact = malloc((size_t)n_out * 64 * sizeof *exact);
        assert_true(q && dq && ref && exact);
        cs_ref_quant_q8(x, n_in, 64, q, dq);
        assert_int_equal(cs_ref_matmul_q8(type, wh, n_in, n_out, q, dq, 64, ref, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_ref_matmul(type, wh, n_in, n_out, x, 64, exact, err, sizeof err), CLSPEC_OK);
        const double e = ku_norm_err(ref, exact, (size_t)n_out * 64);
        printf("# %s %ux%u: activation rounding %.2e of max |y|\n", cs_type_name(type), n_in, n_out, e);
        if (e > ROUND_BOUND)
            fail_msg("%s %ux%u: activation rounding error %.3g > %g", cs_type_name(type), n_in, n_out, e,
                     ROUND_BOUND);
        for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
            float *y = ku_run_matmul(d, &w, x, ncs[c]);
            if (memcmp(y, ref, (size_t)ncs[c] * n_out * sizeof *y))
                fail_msg("matmul_q8 %s %ux%u n_cols=%u differs from the reference", cs_type_name(type), n_in,
                         n_out, ncs[c]);
            free(y);
        }
        /* split into parts of 5 rows: the same bits */
        struct cs_weight ws;
        uint64_t rb;
        assert_true(cs_row_bytes(type, n_in, &rb));
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 5 * w.row_bytes, true, &ws, err,
                                                sizeof err), CLSPEC_OK);
        assert_true(ws.n_parts > 1);
        for (uint32_t nc = 1; nc <= 9; nc += 8) {
            float *y = ku_run_matmul(d, &ws, x, nc);
            assert_memory_equal(y, ref, (size_t)nc * n_out * sizeof *y);
            free(y);
        }
        cs_weight_free(&ws);
        cs_weight_free(&w);
        free(wh);
        free(x);
        free(q);
        free(dq);
        free(ref);
        free(exact);
    }
    d->int8_act = false;
}

static void test_matmul_q4_0(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q4_0);
}

static void test_matmul_q8_0(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q8_0);
}

/* the path without VNNI (CLSPEC_Q8_VNNI=0: AVX-512BW or plain ints) gives
 * the same bits (on a host without VNNI: the default path again) */
static void test_no_vnni(void **s)
{
    (void)s;
    setenv("CLSPEC_Q8_VNNI", "0", 1);
    check_type(CS_TYPE_Q4_0);
    check_type(CS_TYPE_Q8_0);
    unsetenv("CLSPEC_Q8_VNNI");
}

/* a column alone == the same column at every position of batches of 2..64 */
static void test_invariance(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t types[] = {CS_TYPE_Q4_0, CS_TYPE_Q8_0}, nbs[] = {2, 3, 5, 8, 16, 17, 64};
    const uint32_t n_in = 512, n_out = 48;
    char err[512];
    d->int8_act = true;
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
        unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 5, false);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w, err, sizeof err), CLSPEC_OK);
        float *x = ku_random_x(n_in, 64, 9, false);
        float *alone = ku_run_matmul(d, &w, x, 1);
        for (size_t b = 0; b < CS_ARRAY_LEN(nbs); b++) {
            const uint32_t nb = nbs[b];
            float *xb = malloc((size_t)nb * n_in * sizeof *xb);
            assert_non_null(xb);
            for (uint32_t pos = 0; pos < nb; pos += (nb > 8 ? 7 : 1)) {
                for (uint32_t c = 0; c < nb; c++) /* other columns: x's columns 1, 2, ... */
                    memcpy(xb + (size_t)c * n_in, x + (size_t)(1 + c % 63) * n_in, n_in * sizeof *x);
                memcpy(xb + (size_t)pos * n_in, x, n_in * sizeof *x);
                float *y = ku_run_matmul(d, &w, xb, nb);
                if (memcmp(y + (size_t)pos * n_out, alone, n_out * sizeof *y))
                    fail_msg("%s: column %u of a batch of %u differs from the column alone",
                             cs_type_name(types[t]), pos, nb);
                free(y);
            }
            free(xb);
        }
        free(alone);
        free(x);
        free(wh);
        cs_weight_free(&w);
    }
    d->int8_act = false;
}

/* qkv and swiglu on the integer path == plain matmuls (and the swiglu of them) */
static void test_fused(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t n_in = 256, no[3] = {64, 32, 32};
    char err[512];
    d->int8_act = true;
    for (int t = 0; t < 2; t++) {
        const uint32_t type = t ? CS_TYPE_Q8_0 : CS_TYPE_Q4_0;
        struct cs_weight w[3];
        unsigned char *wh[3];
        for (int i = 0; i < 3; i++) {
            wh[i] = ku_random_weight(type, n_in, no[i], 30 + i, false);
            assert_int_equal(cs_weight_upload(d, type, n_in, no[i], wh[i], &w[i], err, sizeof err), CLSPEC_OK);
        }
        ku_check_fused(d, w, true, t ? "fused q8_0" : "fused q4_0");
        for (int i = 0; i < 3; i++) {
            cs_weight_free(&w[i]);
            free(wh[i]);
        }
    }
    d->int8_act = false;
}

/* the GPU family and the other types stay on the float path */
static void test_fallback(void **s)
{
    (void)s;
    char err[512];
    for (int f = 0; f < 2; f++) {
        struct cs_cl_dev *d = devs[f];
        if (!d)
            skip();
        d->int8_act = f == CS_KFAMILY_CPU;
        const uint32_t types[] = {CS_TYPE_Q4_0, CS_TYPE_Q4_K, CS_TYPE_F16};
        for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
            unsigned char *wh = ku_random_weight(types[t], 256, 8, 1, false);
            struct cs_weight w;
            assert_int_equal(cs_weight_upload(d, types[t], 256, 8, wh, &w, err, sizeof err), CLSPEC_OK);
            const bool want = f == CS_KFAMILY_CPU && types[t] == CS_TYPE_Q4_0;
            assert_int_equal(cs_op_q8_takes(d, &w), want);
            float *x = ku_random_x(256, 2, 4, false), exact[16];
            assert_int_equal(cs_ref_matmul(types[t], wh, 256, 8, x, 2, exact, err, sizeof err), CLSPEC_OK);
            float *y = ku_run_matmul(d, &w, x, 2);
            assert_true(ku_norm_err(y, exact, 16) < (want ? ROUND_BOUND : 1e-4));
            free(y);
            free(x);
            free(wh);
            cs_weight_free(&w);
        }
        d->int8_act = false;
    }
}

/* informational: int8 and float mat-vec times on a 2048 x 2048 weight */
static void test_timing(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    char err[512];
    const uint32_t n = 2048, types[] = {CS_TYPE_Q4_0, CS_TYPE_Q8_0};
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
        unsigned char *wh = ku_random_weight(types[t], n, n, 2, false);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload(d, types[t], n, n, wh, &w, err, sizeof err), CLSPEC_OK);
        float *x = ku_random_x(n, 16, 1, false);
        cl_mem xb = ku_buf(d, (size_t)16 * n * sizeof(float), x), yb = ku_buf(d, (size_t)16 * n * sizeof(float), NULL);
        for (uint32_t nc = 1; nc <= 16; nc += 15) {
            double best[2] = {INFINITY, INFINITY};
            for (int rep = 0; rep < 15; rep++) /* best of 15, alternated (the machine is shared) */
                for (int m = 0; m < 2; m++) {
                    d->int8_act = m == 1;
                    const double t0 = cs_now();
                    for (int k = 0; k < 4; k++)
                        assert_int_equal(cs_op_matmul(d, &w, xb, 0, yb, 0, nc, err, sizeof err), CLSPEC_OK);
                    assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
                    best[m] = fmin(best[m], (cs_now() - t0) / 4 * 1e3);
                }
            double bq = INFINITY; /* the quantization alone */
            for (int rep = 0; rep < 6; rep++) {
                const double t0 = cs_now();
                for (int k = 0; k < 4; k++)
                    assert_int_equal(cs_op_quant_q8_scratch(d, xb, 0, n, nc, err, sizeof err), CLSPEC_OK);
                assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
                bq = fmin(bq, (cs_now() - t0) / 4 * 1e3);
            }
            printf("# %s %ux%u n_cols=%u: float %.3f ms, int8 %.3f ms (x%.2f; quantization %.3f ms of it)\n",
                   cs_type_name(types[t]), n, n, nc, best[0], best[1], best[0] / best[1], bq);
        }
        d->int8_act = false;
        clReleaseMemObject(xb);
        clReleaseMemObject(yb);
        free(x);
        free(wh);
        cs_weight_free(&w);
    }
}

static int setup(void **state)
{
    (void)state;
    if (ku_open_families(devs, false, "integer-dot kernel tests") < 0)
        return -1;
    if (devs[CS_KFAMILY_CPU])
        printf("# %s: integer dots by %s\n", devs[CS_KFAMILY_CPU]->info.name,
               cs_cl_host_vnni(&devs[CS_KFAMILY_CPU]->info) ? "vpdpbusd (AVX512-VNNI)"
                                                              : "vpmaddubsw + vpmaddwd, or plain ints");
    return 0;
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
    /* the float-path (and q8) kernels of q4_0 / q4_K: uploads keep their layouts (the default 4-bit
     * integer path, src/ops/matmul_i4.h, has tests/test-kernels-i4.c) */
    setenv("CLSPEC_INTDOT", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quant),     cmocka_unit_test(test_matmul_q4_0), cmocka_unit_test(test_matmul_q8_0),
        cmocka_unit_test(test_no_vnni),
        cmocka_unit_test(test_invariance), cmocka_unit_test(test_fused),      cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_timing),
    };
    if (getenv("CLSPEC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    return _cmocka_run_group_tests("kernels-q8", tests, CS_ARRAY_LEN(tests), setup, teardown);
}
