/* test-kernels-i6.c: q6_K on the 4-bit path's rows-in-lanes layout with its
 * 6 bits packed as 4 + 2 (CS_WLAYOUT_Q6_K_I16, cl/matmul_i4.cl's q6_Ki,
 * taken by cs_op_matmul for q6_K weights uploaded to the CPU family where
 * the 4-bit path is on):
 *   - every matmul (mat-vec, mat-mat, 1..64 columns, rows not a multiple of
 *     16, odd super-block counts, weights split in parts) equals the C
 *     reference of the 8-bit path's q6_K order (src/ref/i8_ref.c, from the
 *     GGUF blocks: the repack is checked too) bit for bit, and the exact
 *     float product within the activation-rounding bound (2e-2 of max |y|);
 *   - the same bits with vpdpbusd, vpmaddubsw + vpmaddwd and plain ints, and
 *     the same bits as the 8-bit path's layout (CLSPEC_Q6K=i8);
 *   - batch invariance: a column gives the same bits alone or anywhere in a
 *     batch;
 *   - the embedding gather, swiglu, and qkv with q4_K Q, K and q6_K V (one
 *     quantized x, one launch for one column) equal the plain matmuls;
 *   - CLSPEC_Q6K=i8, CLSPEC_INTDOT=0 and the GPU family keep the other
 *     layouts;
 *   - with CLSPEC_I6_BENCH=1, a microbenchmark line per shape against the
 *     8-bit layout (informational). */
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
#include "gguf/quant.h"
#include "ops/matmul.h"
#include "ops/matmul_i4.h"
#include "ops/matmul_i8.h"
#include "ops/ops.h"
#include "ref/i8_ref.h"
#include "ref/matmul_ref.h"
#include "ref/q8act_ref.h"
#include "kernutil.h"
#include "testutil.h"

#define ROUND_BOUND 2e-2

static struct cs_cl_dev *devs[2]; /* indexed by enum cs_kfamily */

/* the CPU device where the layout is on, else skip */
static struct cs_cl_dev *cpu_dev(void)
{
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    uint64_t rb;
    if (!d || cs_i4_layout(d, CS_TYPE_Q6_K, 256, &rb) != CS_WLAYOUT_Q6_K_I16)
        skip();
    return d;
}

/* y (n_cols x n_out) == ref bit for bit, or a message naming the first difference */
static void check_bits(const float *y, const float *ref, uint32_t n_cols, uint32_t n_out, const char *what)
{
    for (size_t j = 0; j < (size_t)n_cols * n_out; j++)
        if (memcmp(&y[j], &ref[j], sizeof *y))
            fail_msg("%s n_cols=%u: y[col %zu][row %zu] = %.9g, reference %.9g", what, n_cols, j / n_out,
                     j % n_out, y[j], ref[j]);
}

/* every column count against the reference (bits) and the exact product (bound) */
static void check_matmuls(void)
{
    struct cs_cl_dev *d = cpu_dev();
    const uint32_t shapes[][2] = {{256, 7}, {512, 33}, {768, 50}, {2048, 17}, {1280, 16}};
    const uint32_t ncs[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 64};
    char err[512], what[64];
    for (size_t i = 0; i < CS_ARRAY_LEN(shapes); i++) {
        const uint32_t n_in = shapes[i][0], n_out = shapes[i][1], nb = n_in / 32;
        unsigned char *wh = ku_random_weight(CS_TYPE_Q6_K, n_in, n_out, 200 + i, true);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload_parts(d, CS_TYPE_Q6_K, n_in, n_out, wh, 0, true, &w, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(w.layout, CS_WLAYOUT_Q6_K_I16);
        assert_int_equal(w.row_bytes, n_in / 256 * 212);
        float *x = ku_random_x(n_in, 64, 17 + i, i == 1);
        int8_t *q = malloc((size_t)n_in * 64);
        float *dq = malloc((size_t)nb * 64 * sizeof *dq), *ref = malloc((size_t)n_out * 64 * sizeof *ref);
        float *exact = malloc((size_t)n_out * 64 * sizeof *exact);
        assert_true(q && dq && ref && exact);
        cs_ref_quant_q8(x, n_in, 64, q, dq);
        assert_int_equal(cs_ref_matmul_i8(CS_TYPE_Q6_K, wh, n_in, n_out, q, dq, 64, ref, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(cs_ref_matmul(CS_TYPE_Q6_K, wh, n_in, n_out, x, 64, exact, err, sizeof err), CLSPEC_OK);
        const double e = ku_norm_err(ref, exact, (size_t)n_out * 64);
        if (e > ROUND_BOUND)
            fail_msg("q6_K %ux%u: activation rounding error %.3g > %g", n_in, n_out, e, ROUND_BOUND);
        snprintf(what, sizeof what, "q6_Ki %ux%u", n_in, n_out);
        for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
            float *y = ku_run_matmul(d, &w, x, ncs[c]);
            check_bits(y, ref, ncs[c], n_out, what);
            free(y);
        }
        /* parts of 16 and 32 rows: the same bits */
        for (uint64_t pr = 16; pr <= 32; pr += 16) {
            struct cs_weight ws;
            assert_int_equal(cs_weight_upload_parts(d, CS_TYPE_Q6_K, n_in, n_out, wh, pr * w.row_bytes, true, &ws,
                                                    err, sizeof err), CLSPEC_OK);
            assert_int_equal(ws.layout, CS_WLAYOUT_Q6_K_I16);
            assert_int_equal(ws.n_parts, (n_out + pr - 1) / pr);
            for (uint32_t nc = 1; nc <= 9; nc += 8) {
                float *y = ku_run_matmul(d, &ws, x, nc);
                check_bits(y, ref, nc, n_out, what);
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

static void test_matmul(void **s)
{
    (void)s;
    check_matmuls();
}

/* vpmaddubsw + vpmaddwd (CLSPEC_Q8_VNNI=0) and plain ints: the same bits */
static void test_other_forms(void **s)
{
    (void)s;
    const char *forms[] = {"0", "plain"};
    for (size_t f = 0; f < CS_ARRAY_LEN(forms); f++) {
        setenv("CLSPEC_Q8_VNNI", forms[f], 1);
        check_matmuls();
    }
    unsetenv("CLSPEC_Q8_VNNI");
}

/* the 8-bit path's layout (CLSPEC_Q6K=i8) gives the same bits (one order) */
static void test_same_as_i8(void **s)
{
    (void)s;
    struct cs_cl_dev *d = cpu_dev();
    const uint32_t n_in = 1024, n_out = 45;
    char err[512];
    unsigned char *wh = ku_random_weight(CS_TYPE_Q6_K, n_in, n_out, 8, true);
    struct cs_weight w6, w8;
    assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, n_in, n_out, wh, &w6, err, sizeof err), CLSPEC_OK);
    setenv("CLSPEC_Q6K", "i8", 1);
    assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, n_in, n_out, wh, &w8, err, sizeof err), CLSPEC_OK);
    unsetenv("CLSPEC_Q6K");
    assert_int_equal(w6.layout, CS_WLAYOUT_Q6_K_I16);
    assert_int_equal(w8.layout, CS_WLAYOUT_I8);
    assert_true(w6.bytes < w8.bytes);
    float *x = ku_random_x(n_in, 9, 4, true);
    for (uint32_t nc = 1; nc <= 9; nc += 4) {
        float *y6 = ku_run_matmul(d, &w6, x, nc), *y8 = ku_run_matmul(d, &w8, x, nc);
        check_bits(y6, y8, nc, n_out, "q6_Ki against the 8-bit layout");
        free(y6);
        free(y8);
    }
    free(x);
    free(wh);
    cs_weight_free(&w6);
    cs_weight_free(&w8);
}

/* a column alone == the same column at every position of batches of 2..64 */
static void test_invariance(void **s)
{
    (void)s;
    struct cs_cl_dev *d = cpu_dev();
    const uint32_t nbs[] = {2, 3, 4, 5, 8, 16, 17, 64}, n_in = 512, n_out = 40;
    char err[512];
    unsigned char *wh = ku_random_weight(CS_TYPE_Q6_K, n_in, n_out, 5, true);
    struct cs_weight w;
    assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, n_in, n_out, wh, &w, err, sizeof err), CLSPEC_OK);
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
                fail_msg("q6_Ki: column %u of a batch of %u differs from the column alone", pos, nb);
            free(y);
        }
        free(xb);
    }
    free(alone);
    free(x);
    free(wh);
    cs_weight_free(&w);
}

/* the gather on the layout == the GGUF gather (reference) bit for bit, ids
 * out of range give zeros, parts of 16 rows too */
static void test_get_rows(void **s)
{
    (void)s;
    struct cs_cl_dev *d = cpu_dev();
    const uint32_t n_in = 512, n_out = 37;
    const int32_t ids[] = {0, 36, 17, -1, 37, 5, 16, 15};
    const uint32_t n = CS_ARRAY_LEN(ids);
    char err[512];
    unsigned char *wh = ku_random_weight(CS_TYPE_Q6_K, n_in, n_out, 3, true);
    float *want = malloc((size_t)n * n_in * sizeof *want);
    assert_non_null(want);
    assert_int_equal(cs_ref_get_rows(CS_TYPE_Q6_K, wh, n_in, n_out, ids, n, want, err, sizeof err), CLSPEC_OK);
    for (int parts = 0; parts < 2; parts++) {
        struct cs_weight w;
        assert_int_equal(cs_weight_upload_parts(d, CS_TYPE_Q6_K, n_in, n_out, wh, parts ? 16 * 424 : 0, true, &w,
                                                err, sizeof err), CLSPEC_OK);
        assert_int_equal(w.layout, CS_WLAYOUT_Q6_K_I16);
        assert_int_equal(w.n_parts, parts ? 3u : 1u);
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

/* qkv with all three q6_K, with q4_K Q, K and q6_K V (Q4_K_M's odd layers:
 * one launch), and with q5_K Q, K (the 8-bit path) and q6_K V (Q5_K_M: one
 * quantized x for both paths); swiglu on q6_K: each == its plain matmuls
 * (and their swiglu) */
static void test_fused(void **s)
{
    (void)s;
    struct cs_cl_dev *d = cpu_dev();
    const uint32_t n_in = 512, no[3] = {64, 33, 33};
    char err[512];
    for (int mixed = 0; mixed < 3; mixed++) {
        struct cs_weight w[3];
        unsigned char *wh[3];
        for (int i = 0; i < 3; i++) {
            const uint32_t type = !mixed || i == 2 ? CS_TYPE_Q6_K : mixed == 1 ? CS_TYPE_Q4_K : CS_TYPE_Q5_K;
            wh[i] = ku_random_weight(type, n_in, no[i], 30 + i, true);
            assert_int_equal(cs_weight_upload(d, type, n_in, no[i], wh[i], &w[i], err, sizeof err), CLSPEC_OK);
        }
        assert_int_equal(cs_op_i4_qkv_fits(d, &w[0], &w[1], &w[2]), mixed < 2);
        if (mixed == 2)
            assert_int_equal(w[0].layout, CS_WLAYOUT_I8);
        ku_check_fused(d, w, !mixed, mixed == 2 ? "qkv q5_K/q5_K/q6_K" : mixed ? "qkv q4_K/q4_K/q6_K" : "qkv, swiglu q6_K");
        for (int i = 0; i < 3; i++) {
            cs_weight_free(&w[i]);
            free(wh[i]);
        }
    }
}

/* the layout only where it applies; elsewhere the other layouts, exact or
 * rounded as their paths are */
static void test_layout_choice(void **s)
{
    (void)s;
    char err[512];
    uint64_t rb;
    for (int f = 0; f < 2; f++) {
        struct cs_cl_dev *d = devs[f];
        if (!d)
            continue;
        const bool on = cs_i4_layout(d, CS_TYPE_Q6_K, 256, &rb) == CS_WLAYOUT_Q6_K_I16;
        assert_true(f == CS_KFAMILY_CPU || !on);
        for (int env = 0; env < 3; env++) {
            const unsigned keep = d->int_layouts;
            if (env == 1)
                setenv("CLSPEC_Q6K", "i8", 1);
            if (env == 2) /* as CLSPEC_INTDOT=0 at device open, or an engine for llamacpp numerics */
                d->int_layouts = 0;
            unsigned char *wh = ku_random_weight(CS_TYPE_Q6_K, 256, 8, 1, true);
            struct cs_weight w;
            assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, 256, 8, wh, &w, err, sizeof err), CLSPEC_OK);
            assert_int_equal(w.layout == CS_WLAYOUT_Q6_K_I16, on && env == 0);
            if (env == 1 && f == CS_KFAMILY_CPU)
                assert_int_equal(w.layout, CS_WLAYOUT_I8);
            float *x = ku_random_x(256, 2, 4, false), exact[16];
            assert_int_equal(cs_ref_matmul(CS_TYPE_Q6_K, wh, 256, 8, x, 2, exact, err, sizeof err), CLSPEC_OK);
            float *y = ku_run_matmul(d, &w, x, 2);
            const bool rounded = w.layout == CS_WLAYOUT_Q6_K_I16 || w.layout == CS_WLAYOUT_I8;
            assert_true(ku_norm_err(y, exact, 16) < (rounded ? ROUND_BOUND : 1e-4));
            free(y);
            free(x);
            free(wh);
            cs_weight_free(&w);
            unsetenv("CLSPEC_Q6K");
            d->int_layouts = keep;
        }
    }
    /* rows not a multiple of 256: no layout of this path */
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (d)
        assert_int_equal(cs_i4_layout(d, CS_TYPE_Q6_K, 96, &rb), -1);
}

/* informational (CLSPEC_I6_BENCH=1): q6_Ki against the 8-bit layout on the
 * 1.1B model's q6_K shapes, best of N alternated (the machine is shared);
 * GB/s of each layout's own bytes and of GGUF's */
static void test_bench(void **s)
{
    (void)s;
    struct cs_cl_dev *d = cpu_dev();
    char err[512];
    const uint32_t shapes[][2] = {{2048, 32000}, {5632, 2048}, {2048, 256}}, ncs[] = {1, 8, 128};
    for (size_t sh = 0; sh < CS_ARRAY_LEN(shapes); sh++) {
        const uint32_t n_in = shapes[sh][0], n_out = shapes[sh][1];
        unsigned char *wh = ku_random_weight(CS_TYPE_Q6_K, n_in, n_out, 2, true);
        struct cs_weight w[2];
        assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, n_in, n_out, wh, &w[1], err, sizeof err), CLSPEC_OK);
        setenv("CLSPEC_Q6K", "i8", 1);
        assert_int_equal(cs_weight_upload(d, CS_TYPE_Q6_K, n_in, n_out, wh, &w[0], err, sizeof err), CLSPEC_OK);
        unsetenv("CLSPEC_Q6K");
        float *x = ku_random_x(n_in, 128, 1, false);
        cl_mem xb = ku_buf(d, (size_t)128 * n_in * sizeof(float), x);
        cl_mem yb = ku_buf(d, (size_t)128 * n_out * sizeof(float), NULL);
        for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
            const uint32_t nc = ncs[c];
            double best[2] = {INFINITY, INFINITY}, cpu[2] = {INFINITY, INFINITY};
            const int reps = nc == 1 ? 20 : 4, inner = n_out < 1024 ? 50 : 3;
            for (int rep = 0; rep < reps; rep++)
                for (int m = 0; m < 2; m++) {
                    const double t0 = cs_now();
                    const clock_t c0 = clock();
                    for (int k = 0; k < inner; k++)
                        assert_int_equal(cs_op_matmul(d, &w[m], xb, 0, yb, 0, nc, err, sizeof err), CLSPEC_OK);
                    assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
                    best[m] = fmin(best[m], (cs_now() - t0) / inner);
                    cpu[m] = fmin(cpu[m], (double)(clock() - c0) / CLOCKS_PER_SEC / inner);
                }
            const double gguf = (double)n_out * n_in / 256 * 210;
            printf("# q6_K %ux%u n_cols=%u: i8 layout %.3f ms (%.1f GB/s, GGUF bytes %.1f), q6_Ki %.3f ms (%.1f GB/s, "
                   "GGUF bytes %.1f): x%.2f; process CPU time %.3f / %.3f ms: x%.2f\n",
                   n_out, n_in, nc, best[0] * 1e3, w[0].bytes / best[0] * 1e-9, gguf / best[0] * 1e-9, best[1] * 1e3,
                   w[1].bytes / best[1] * 1e-9, gguf / best[1] * 1e-9, best[0] / best[1], cpu[0] * 1e3, cpu[1] * 1e3,
                   cpu[0] / cpu[1]);
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
    unsetenv("CLSPEC_Q6K");
    if (ku_open_families(devs, false, "q6_K integer kernel tests") < 0)
        return -1;
    uint64_t rb;
    if (devs[CS_KFAMILY_CPU] && cs_i4_layout(devs[CS_KFAMILY_CPU], CS_TYPE_Q6_K, 256, &rb) < 0) {
        printf("# the 4-bit integer path is not the default here (no AVX-512BW): CLSPEC_INTDOT=1\n");
        setenv("CLSPEC_INTDOT", "1", 1);
    }
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
        cmocka_unit_test(test_matmul),  cmocka_unit_test(test_other_forms), cmocka_unit_test(test_same_as_i8),
        cmocka_unit_test(test_invariance), cmocka_unit_test(test_get_rows), cmocka_unit_test(test_fused),
        cmocka_unit_test(test_layout_choice), cmocka_unit_test(test_bench),
    };
    if (getenv("CLSPEC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    /* the microbenchmark (last) only with CLSPEC_I6_BENCH=1 (TAP counts a cmocka skip as a failure) */
    const size_t n = getenv("CLSPEC_I6_BENCH") ? CS_ARRAY_LEN(tests) : CS_ARRAY_LEN(tests) - 1;
    return _cmocka_run_group_tests("kernels-i6", tests, n, setup, teardown);
}
