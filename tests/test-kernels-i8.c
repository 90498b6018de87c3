/* test-kernels-i8.c: the rows-in-lanes integer path (CS_WLAYOUT_I8,
 * cl/matmul_i8.cl via src/ops/matmul_i8.c, taken by cs_op_matmul for q8_0 and
 * q6_K / q5_K weights on the CPU family):
 *   - every matmul (mat-vec, mat-mat, 1..64 columns, row counts not a
 *     multiple of 16, odd block counts, weights split in parts) equals the C
 *     reference of the same reduction order (src/ref/i8_ref.c) bit for bit,
 *     and the exact float product within the activation-rounding bound of
 *     tests/test-kernels-q8.c (2e-2 of max |y|);
 *   - batch invariance: a column gives the same bits alone or at any
 *     position of a batch;
 *   - VNNI and plain-int builds (CLSPEC_Q8_VNNI=0) give the same bits;
 *   - the gather (get_rows) on the layout equals the GGUF gather bit for bit;
 *   - qkv / swiglu on the layout equal plain matmuls;
 *   - without d->int_layouts (CLSPEC_INTDOT=0, llamacpp numerics), on the GPU
 *     family and for other types weights keep their layouts.
 * A timing line compares the integer and float paths (informational). */
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
#include "ops/matmul_i4.h"
#include "ops/matmul_i8.h"
#include "ops/matmul_q8.h"
#include "ops/ops.h"
#include "ref/i8_ref.h"
#include "ref/matmul_ref.h"
#include "ref/q8act_ref.h"
#include "kernutil.h"
#include "testutil.h"

#define ROUND_BOUND 2e-2

static struct cs_cl_dev *devs[2]; /* indexed by enum cs_kfamily */

/* every column count against the reference (bits) and the exact product (bound) */
static void check_type(uint32_t type)
{
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t q8_shapes[][2] = {{32, 7}, {96, 33}, {160, 50}, {256, 64}, {2048, 17}};
    const uint32_t k_shapes[][2] = {{256, 7}, {512, 33}, {768, 50}, {2048, 17}};
    const bool k = type != CS_TYPE_Q8_0;
    const size_t n_shapes = k ? CS_ARRAY_LEN(k_shapes) : CS_ARRAY_LEN(q8_shapes);
    const uint32_t ncs[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 64};
    char err[512];
    for (size_t i = 0; i < n_shapes; i++) {
        const uint32_t n_in = k ? k_shapes[i][0] : q8_shapes[i][0], n_out = k ? k_shapes[i][1] : q8_shapes[i][1];
        const uint32_t nb = n_in / 32;
        unsigned char *wh = ku_random_weight(type, n_in, n_out, 100 + i, true);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, true, &w, err, sizeof err), CLSPEC_OK);
        assert_int_equal(w.layout, CS_WLAYOUT_I8);
        float *x = ku_random_x(n_in, 64, 7 + i, false);
        int8_t *q = malloc((size_t)n_in * 64);
        float *dq = malloc((size_t)nb * 64 * sizeof *dq), *ref = malloc((size_t)n_out * 64 * sizeof *ref);
        float *exact = malloc((size_t)n_out * 64 * sizeof *exact);
        assert_true(q && dq && ref && exact);
        cs_ref_quant_q8(x, n_in, 64, q, dq);
        assert_int_equal(cs_ref_matmul_i8(type, wh, n_in, n_out, q, dq, 64, ref, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_ref_matmul(type, wh, n_in, n_out, x, 64, exact, err, sizeof err), CLSPEC_OK);
        const double e = ku_norm_err(ref, exact, (size_t)n_out * 64);
        printf("# %s %ux%u: activation rounding %.2e of max |y|\n", cs_type_name(type), n_in, n_out, e);
        if (e > ROUND_BOUND)
            fail_msg("%s %ux%u: activation rounding error %.3g > %g", cs_type_name(type), n_in, n_out, e,
                     ROUND_BOUND);
        for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
            float *y = ku_run_matmul(d, &w, x, ncs[c]);
            if (memcmp(y, ref, (size_t)ncs[c] * n_out * sizeof *y)) {
                for (size_t j = 0; j < (size_t)ncs[c] * n_out; j++)
                    if (y[j] != ref[j])
                        fail_msg("matmul_i8 %s %ux%u n_cols=%u: y[col %zu][row %zu] = %.9g, reference %.9g",
                                 cs_type_name(type), n_in, n_out, ncs[c], j / n_out, j % n_out, y[j], ref[j]);
            }
            free(y);
        }
        /* parts of 16 rows (and 32): the same bits */
        for (uint64_t pr = 16; pr <= 32; pr += 16) {
            struct cs_weight ws;
            assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, pr * w.row_bytes, true, &ws, err,
                                                    sizeof err), CLSPEC_OK);
            assert_int_equal(ws.layout, CS_WLAYOUT_I8);
            assert_int_equal(ws.n_parts, (n_out + pr - 1) / pr);
            for (uint32_t nc = 1; nc <= 9; nc += 8) {
                float *y = ku_run_matmul(d, &ws, x, nc);
                assert_memory_equal(y, ref, (size_t)nc * n_out * sizeof *y);
                free(y);
            }
            cs_weight_free(&ws);
        }
        cs_weight_free(&w);
        free(wh);
        free(x);
        free(q);
        free(dq);
        free(ref);
        free(exact);
    }
}

static void test_matmul_q8_0(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q8_0);
}

static void test_matmul_q6_K(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q6_K);
}

static void test_matmul_q5_K(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q5_K);
}

/* the build without VNNI (plain ints) gives the same bits (on a host without
 * VNNI: the default build again) */
static void test_no_vnni(void **s)
{
    (void)s;
    setenv("CLSPEC_Q8_VNNI", "0", 1);
    check_type(CS_TYPE_Q8_0);
    check_type(CS_TYPE_Q6_K);
    check_type(CS_TYPE_Q5_K);
    unsetenv("CLSPEC_Q8_VNNI");
}

/* a column alone == the same column at every position of batches of 2..64 */
static void test_invariance(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_Q6_K, CS_TYPE_Q5_K}, nbs[] = {2, 3, 4, 5, 8, 16, 17, 64};
    const uint32_t n_in = 512, n_out = 40;
    char err[512];
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
        unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 5, true);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w, err, sizeof err), CLSPEC_OK);
        assert_int_equal(w.layout, CS_WLAYOUT_I8);
        float *x = ku_random_x(n_in, 64, 9, false);
        float *alone = ku_run_matmul(d, &w, x, 1);
        for (size_t b = 0; b < CS_ARRAY_LEN(nbs); b++) {
            const uint32_t nb = nbs[b];
            float *xb = malloc((size_t)nb * n_in * sizeof *xb);
            assert_non_null(xb);
            for (uint32_t pos = 0; pos < nb; pos += (nb > 8 ? 7 : 1)) {
                for (uint32_t c = 0; c < nb; c++)
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
}

/* the gather on the layout == the GGUF gather (reference) bit for bit,
 * ids out of range give zeros, parts of 16 rows too */
static void test_get_rows(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_Q6_K, CS_TYPE_Q5_K}, n_out = 37;
    const int32_t ids[] = {0, 36, 17, -1, 37, 5, 16, 15};
    const uint32_t n = CS_ARRAY_LEN(ids);
    char err[512];
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
        const uint32_t n_in = types[t] == CS_TYPE_Q8_0 ? 96 : 512;
        unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 3, true);
        float *want = malloc((size_t)n * n_in * sizeof *want);
        assert_non_null(want);
        assert_int_equal(cs_ref_get_rows(types[t], wh, n_in, n_out, ids, n, want, err, sizeof err), CLSPEC_OK);
        for (int parts = 0; parts < 2; parts++) {
            struct cs_weight w;
            assert_int_equal(cs_weight_upload_parts(d, types[t], n_in, n_out, wh,
                                                    parts ? 16 * cs_i8_row_bytes(types[t], n_in) : 0, true, &w, err,
                                                    sizeof err), CLSPEC_OK);
            assert_int_equal(w.layout, CS_WLAYOUT_I8);
            cl_mem ib = ku_buf(d, sizeof ids, ids), ob = ku_buf(d, (size_t)n * n_in * sizeof(float), NULL);
            assert_int_equal(cs_op_get_rows(d, &w, ib, 0, n, ob, 0, err, sizeof err), CLSPEC_OK);
            float *got = ku_read(d, ob, 0, (size_t)n * n_in * sizeof(float));
            assert_memory_equal(got, want, (size_t)n * n_in * sizeof(float));
            free(got);
            clReleaseMemObject(ib);
            clReleaseMemObject(ob);
            cs_weight_free(&w);
        }
        free(want);
        free(wh);
    }
}

/* qkv and swiglu on the layout == plain matmuls (and the swiglu of them) */
static void test_fused(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t n_in = 256, no[3] = {64, 33, 33};
    char err[512];
    struct cs_weight w[3];
    unsigned char *wh[3];
    for (int i = 0; i < 3; i++) {
        wh[i] = ku_random_weight(CS_TYPE_Q6_K, n_in, no[i], 30 + i, true);
        assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, n_in, no[i], wh[i], &w[i], err, sizeof err), CLSPEC_OK);
    }
    ku_check_fused(d, w, true, "fused q6_K");
    for (int i = 0; i < 3; i++) {
        cs_weight_free(&w[i]);
        free(wh[i]);
    }
}

/* the layout only where it applies: CPU family, q8_0 / q6_K, CLSPEC_INTDOT
 * not 0, no repack refused; matmuls on the others stay exact */
static void test_layout_choice(void **s)
{
    (void)s;
    char err[512];
    for (int f = 0; f < 2; f++) {
        struct cs_cl_dev *d = devs[f];
        if (!d)
            continue;
        const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_Q6_K, CS_TYPE_Q5_K, CS_TYPE_Q4_K, CS_TYPE_F16};
        for (size_t t = 0; t < CS_ARRAY_LEN(types); t++)
            for (int env = 0; env < 2; env++) {
                const unsigned keep = d->int_layouts;
                if (env) /* as CLSPEC_INTDOT=0 at device open, or an engine for llamacpp numerics */
                    d->int_layouts = 0;
                unsigned char *wh = ku_random_weight(types[t], 256, 8, 1, true);
                struct cs_weight w;
                assert_int_equal(cs_weight_upload(d, types[t], 256, 8, wh, &w, err, sizeof err), CLSPEC_OK);
                const bool want = f == CS_KFAMILY_CPU && !env && types[t] != CS_TYPE_Q4_K && types[t] != CS_TYPE_F16;
                assert_int_equal(w.layout == CS_WLAYOUT_I8, want);
                float *x = ku_random_x(256, 2, 4, false), exact[16];
                assert_int_equal(cs_ref_matmul(types[t], wh, 256, 8, x, 2, exact, err, sizeof err), CLSPEC_OK);
                float *y = ku_run_matmul(d, &w, x, 2);
                /* q4_K goes to the 4-bit integer path (tests/test-kernels-i4.c) where it is on: rounded too */
                const bool rounded = want || cs_i4_layout_is(w.layout);
                assert_true(ku_norm_err(y, exact, 16) < (rounded ? ROUND_BOUND : 1e-4));
                free(y);
                free(x);
                free(wh);
                cs_weight_free(&w);
                d->int_layouts = keep;
            }
        /* repack off: the GGUF layout */
        if (f == CS_KFAMILY_CPU) {
            unsigned char *wh = ku_random_weight(CS_TYPE_Q8_0, 64, 4, 1, true);
            struct cs_weight w;
            assert_int_equal(cs_weight_upload_parts(d, CS_TYPE_Q8_0, 64, 4, wh, 0, false, &w, err, sizeof err),
                             CLSPEC_OK);
            assert_int_equal(w.layout, CS_WLAYOUT_GGUF);
            cs_weight_free(&w);
            free(wh);
        }
    }
}

/* informational (CLSPEC_I8_TIMING=1): integer and float paths on 2048 x 2048 and 5632 x 2048 */
static void test_timing(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d || !getenv("CLSPEC_I8_TIMING")) { /* a minute under load: only when asked (a skip reads as a failure in TAP) */
        printf("# timing: set CLSPEC_I8_TIMING=1 to run it\n");
        return;
    }
    char err[512];
    const uint32_t types[] = {CS_TYPE_Q8_0, CS_TYPE_Q6_K, CS_TYPE_Q5_K}, shapes[][2] = {{2048, 2048}, {2048, 5632}};
    const uint32_t ncs[] = {1, 128};
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++)
        for (size_t sh = 0; sh < 2; sh++) {
            const uint32_t n_in = shapes[sh][0], n_out = shapes[sh][1];
            unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 2, true);
            struct cs_weight w[2];
            assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w[1], err, sizeof err), CLSPEC_OK);
            d->int_layouts &= ~CS_INTL_I8;
            assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w[0], err, sizeof err), CLSPEC_OK);
            d->int_layouts |= CS_INTL_I8;
            assert_int_equal(w[1].layout, CS_WLAYOUT_I8);
            float *x = ku_random_x(n_in, 128, 1, false);
            cl_mem xb = ku_buf(d, (size_t)128 * n_in * sizeof(float), x);
            cl_mem yb = ku_buf(d, (size_t)128 * n_out * sizeof(float), NULL);
            for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
                const uint32_t nc = ncs[c];
                double best[2] = {INFINITY, INFINITY};
                const int reps = nc == 1 ? 15 : 4;
                for (int rep = 0; rep < reps; rep++) /* best of N, alternated (the machine is shared) */
                    for (int m = 0; m < 2; m++) {
                        const double t0 = cs_now();
                        for (int k = 0; k < 3; k++)
                            assert_int_equal(cs_op_matmul(d, &w[m], xb, 0, yb, 0, nc, err, sizeof err), CLSPEC_OK);
                        assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
                        best[m] = fmin(best[m], (cs_now() - t0) / 3);
                    }
                const double flop = 2.0 * n_in * n_out * nc;
                printf("# %s %ux%u n_cols=%u: float %.3f ms (%.1f GB/s, %.1f GFLOP/s), int %.3f ms (%.1f GB/s, "
                       "%.1f GFLOP/s): x%.2f\n",
                       cs_type_name(types[t]), n_out, n_in, nc, best[0] * 1e3, w[0].bytes / best[0] * 1e-9,
                       flop / best[0] * 1e-9, best[1] * 1e3, w[1].bytes / best[1] * 1e-9, flop / best[1] * 1e-9,
                       best[0] / best[1]);
            }
            clReleaseMemObject(xb);
            clReleaseMemObject(yb);
            free(x);
            free(wh);
            cs_weight_free(&w[0]);
            cs_weight_free(&w[1]);
        }
}

static int setup(void **state)
{
    (void)state;
    unsetenv("CLSPEC_INTDOT");
    /* q6_K on this path, not the 4-bit path's q6_Ki (tests/test-kernels-i6.c), where both are on */
    setenv("CLSPEC_Q6K", "i8", 1);
    if (ku_open_families(devs, false, "rows-in-lanes integer kernel tests") < 0)
        return -1;
    if (devs[CS_KFAMILY_CPU])
        printf("# %s: integer dots by %s\n", devs[CS_KFAMILY_CPU]->info.name,
               cs_cl_host_vnni(&devs[CS_KFAMILY_CPU]->info) ? "vpdpbusd (AVX512-VNNI)" : "plain ints");
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_q8_0), cmocka_unit_test(test_matmul_q6_K),   cmocka_unit_test(test_matmul_q5_K),
        cmocka_unit_test(test_no_vnni),
        cmocka_unit_test(test_invariance),  cmocka_unit_test(test_get_rows),      cmocka_unit_test(test_fused),
        cmocka_unit_test(test_layout_choice), cmocka_unit_test(test_timing),
    };
    if (getenv("CLSPEC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    return _cmocka_run_group_tests("kernels-i8", tests, CS_ARRAY_LEN(tests), setup, teardown);
}
