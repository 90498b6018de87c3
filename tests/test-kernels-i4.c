/* test-kernels-i4.c: the 4-bit integer path (cl/matmul_i4.cl via
 * src/ops/matmul_i4.c, taken by cs_op_matmul for q4_0 / q4_K weights
 * uploaded to the CPU family):
 *   - every matmul (mat-vec, mat-mat, 1..64 columns, rows not a multiple of
 *     16, odd block counts, weights split in parts) equals the C reference
 *     (src/ref/i4_ref.c, from the GGUF blocks: the repack is checked too) bit
 *     for bit, and the exact float product within the activation-rounding
 *     bound (as tests/test-kernels-q8.c: 2e-2 of max |y|);
 *   - the same bits with vpdpbusd, vpmaddubsw + vpmaddwd and plain ints;
 *   - batch invariance: a column gives the same bits alone or anywhere in a
 *     batch;
 *   - qkv, swiglu and the embedding gather from the repacked layouts;
 *   - the device's one integer-path decision (cs_cl_int_layouts: CPU family,
 *     CLSPEC_INTDOT, AVX-512BW): without CS_INTL_I4 (as CLSPEC_INTDOT=0 at
 *     open) and on the GPU family the float path;
 *   - with CLSPEC_I4_BENCH=1, a microbenchmark line per shape (mat-vec
 *     GB/s, mat-mat GFLOP/s, against the float path; informational). */
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
#include "ops/matmul_q8.h"
#include "ops/ops.h"
#include "ref/i4_ref.h"
#include "ref/matmul_ref.h"
#include "ref/q8act_ref.h"
#include "kernutil.h"
#include "testutil.h"

#define ROUND_BOUND 2e-2

static struct cs_cl_dev *devs[2]; /* indexed by enum cs_kfamily */
static bool forced; /* CS_INTL_I4 set by setup: not the default on this host */

static int i4_layout(uint32_t type)
{
    return type == CS_TYPE_Q4_K ? CS_WLAYOUT_Q4_K_I16 : CS_WLAYOUT_Q4_0_I16;
}

/* every column count against the reference of the same order (bits) and
 * the exact product (bound); parts of 16 rows: the same bits */
static void check_type(uint32_t type)
{
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const bool k = type == CS_TYPE_Q4_K;
    /* rows: 16 k, not multiples of 16, fewer than 16; blocks: odd counts (q4_0) */
    const uint32_t shapes[][2] = {{k ? 256 : 32, 7}, {k ? 768 : 96, 33}, {k ? 512 : 160, 48}, {2048, 17},
                                  {k ? 1280 : 288, 50}};
    const uint32_t ncs[] = {1, 2, 3, 4, 5, 7, 8, 9, 17, 63, 64};
    char err[512];
    for (size_t i = 0; i < CS_ARRAY_LEN(shapes); i++) {
        const uint32_t n_in = shapes[i][0], n_out = shapes[i][1], nb = n_in / 32;
        unsigned char *wh = ku_random_weight(type, n_in, n_out, 100 + i, true);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 0, true, &w, err, sizeof err), CLSPEC_OK);
        assert_int_equal(w.layout, i4_layout(type));
        assert_true(cs_op_i4_takes(d, &w));
        float *x = ku_random_x(n_in, 64, 7 + i, false);
        int8_t *q = malloc((size_t)n_in * 64);
        float *dq = malloc((size_t)nb * 64 * sizeof *dq), *ref = malloc((size_t)n_out * 64 * sizeof *ref);
        float *exact = malloc((size_t)n_out * 64 * sizeof *exact);
        assert_true(q && dq && ref && exact);
        cs_ref_quant_q8(x, n_in, 64, q, dq);
        assert_int_equal(cs_ref_matmul_i4(type, wh, n_in, n_out, q, dq, 64, ref, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_ref_matmul(type, wh, n_in, n_out, x, 64, exact, err, sizeof err), CLSPEC_OK);
        const double e = ku_norm_err(ref, exact, (size_t)n_out * 64);
        printf("# %s %ux%u: activation rounding %.2e of max |y|\n", cs_type_name(type), n_in, n_out, e);
        if (e > ROUND_BOUND)
            fail_msg("%s %ux%u: activation rounding error %.3g > %g", cs_type_name(type), n_in, n_out, e,
                     ROUND_BOUND);
        for (size_t c = 0; c < CS_ARRAY_LEN(ncs); c++) {
            float *y = ku_run_matmul(d, &w, x, ncs[c]);
            if (memcmp(y, ref, (size_t)ncs[c] * n_out * sizeof *y))
                fail_msg("matmul_i4 %s %ux%u n_cols=%u differs from the reference", cs_type_name(type), n_in,
                         n_out, ncs[c]);
            free(y);
        }
        /* parts of 16 rows (a limit of 20 rows' bytes): the same bits */
        struct cs_weight ws;
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 20 * w.row_bytes, true, &ws, err,
                                                sizeof err), CLSPEC_OK);
        assert_int_equal(ws.layout, i4_layout(type));
        assert_int_equal(ws.n_parts, n_out <= 20 ? 1 : (n_out + 15) / 16);
        for (uint32_t nc = 1; nc <= 9; nc += 8) {
            float *y = ku_run_matmul(d, &ws, x, nc);
            assert_memory_equal(y, ref, (size_t)nc * n_out * sizeof *y);
            free(y);
        }
        cs_weight_free(&ws);
        /* a limit under 16 rows: the float-path layout instead */
        assert_int_equal(cs_weight_upload_parts(d, type, n_in, n_out, wh, 15 * w.row_bytes, true, &ws, err,
                                                sizeof err), CLSPEC_OK);
        assert_false(cs_op_i4_takes(d, &ws));
        cs_weight_free(&ws);
        cs_weight_free(&w);
        free(wh);
        free(x);
        free(q);
        free(dq);
        free(ref);
        free(exact);
    }
}

static void test_matmul_q4_0(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q4_0);
}

static void test_matmul_q4_K(void **s)
{
    (void)s;
    check_type(CS_TYPE_Q4_K);
}

/* without vpdpbusd (AVX-512BW), and plain ints: the same bits */
static void test_other_forms(void **s)
{
    (void)s;
    const char *forms[] = {"0", "plain"};
    for (size_t f = 0; f < CS_ARRAY_LEN(forms); f++) {
        setenv("CLSPEC_Q8_VNNI", forms[f], 1);
        check_type(CS_TYPE_Q4_0);
        check_type(CS_TYPE_Q4_K);
    }
    unsetenv("CLSPEC_Q8_VNNI");
}

/* a column alone == the same column at every position of batches of 2..64 */
static void test_invariance(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t types[] = {CS_TYPE_Q4_0, CS_TYPE_Q4_K}, nbs[] = {2, 3, 4, 5, 8, 16, 17, 64};
    const uint32_t n_in = 512, n_out = 40;
    char err[512];
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
        unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 5, true);
        struct cs_weight w;
        assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w, err, sizeof err), CLSPEC_OK);
        assert_true(cs_op_i4_takes(d, &w));
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
}

/* qkv and swiglu == plain matmuls (and the swiglu of them) */
static void test_fused(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t n_in = 256, no[3] = {64, 24, 24};
    char err[512];
    for (int t = 0; t < 2; t++) {
        const uint32_t type = t ? CS_TYPE_Q4_K : CS_TYPE_Q4_0;
        struct cs_weight w[3];
        unsigned char *wh[3];
        for (int i = 0; i < 3; i++) {
            wh[i] = ku_random_weight(type, n_in, no[i], 30 + i, true);
            assert_int_equal(cs_weight_upload(d, type, n_in, no[i], wh[i], &w[i], err, sizeof err), CLSPEC_OK);
        }
        ku_check_fused(d, w, true, t ? "fused q4_K" : "fused q4_0");
        for (int i = 0; i < 3; i++) {
            cs_weight_free(&w[i]);
            free(wh[i]);
        }
    }
}

/* the gather from the i4 layouts == from the GGUF layout (ids outside the
 * range give zeros; parts) */
static void test_get_rows(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const uint32_t types[] = {CS_TYPE_Q4_0, CS_TYPE_Q4_K}, n_out = 37;
    const int ids[] = {0, 36, 17, -1, 5, 37, 16, 15};
    const uint32_t n = CS_ARRAY_LEN(ids);
    char err[512];
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
        const uint32_t n_in = types[t] == CS_TYPE_Q4_K ? 512 : 96;
        unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 44, true);
        struct cs_weight wg, wi, wp;
        assert_int_equal(cs_weight_upload_parts(d, types[t], n_in, n_out, wh, 0, false, &wg, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(cs_weight_upload_parts(d, types[t], n_in, n_out, wh, 0, true, &wi, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(cs_weight_upload_parts(d, types[t], n_in, n_out, wh, 16 * wi.row_bytes, true, &wp, err,
                                                sizeof err), CLSPEC_OK);
        assert_true(cs_op_i4_takes(d, &wi) && cs_op_i4_takes(d, &wp) && !cs_op_i4_takes(d, &wg));
        assert_true(wp.n_parts == 3);
        cl_mem ib = ku_buf(d, sizeof ids, ids);
        float *got[3];
        const struct cs_weight *ws[3] = {&wg, &wi, &wp};
        for (int i = 0; i < 3; i++) {
            cl_mem ob = ku_buf(d, (size_t)n * n_in * sizeof(float), NULL);
            assert_int_equal(cs_op_get_rows(d, ws[i], ib, 0, n, ob, 0, err, sizeof err), CLSPEC_OK);
            got[i] = ku_read(d, ob, 0, (size_t)n * n_in * sizeof(float));
            clReleaseMemObject(ob);
        }
        float *row = malloc(n_in * sizeof *row);
        assert_non_null(row);
        uint64_t rb;
        assert_true(cs_row_bytes(types[t], n_in, &rb));
        assert_int_equal(cs_dequantize_row(types[t], wh + 36 * rb, row, n_in), 0);
        for (uint32_t k = 0; k < n_in; k++) /* not all zero: a real row */
            assert_true(fabsf(got[1][n_in + k] - row[k]) <= 1e-6f * (1.0f + fabsf(row[k])));
        assert_memory_equal(got[1], got[0], (size_t)n * n_in * sizeof(float));
        assert_memory_equal(got[2], got[0], (size_t)n * n_in * sizeof(float));
        for (uint32_t k = 0; k < n_in; k++)
            assert_true(got[1][3 * n_in + k] == 0.0f && got[1][5 * n_in + k] == 0.0f);
        free(row);
        for (int i = 0; i < 3; i++)
            free(got[i]);
        clReleaseMemObject(ib);
        cs_weight_free(&wg);
        cs_weight_free(&wi);
        cs_weight_free(&wp);
        free(wh);
    }
}

/* the decision: CLSPEC_INTDOT (read once, at open) and the device */
static void test_decision(void **s)
{
    (void)s;
    struct cs_cl_devinfo info = {.family = CS_KFAMILY_CPU, .type = CL_DEVICE_TYPE_CPU};
    assert_int_equal(cs_cl_int_layouts(&info, "0"), 0);
    assert_int_equal(cs_cl_int_layouts(&info, "1"), CS_INTL_I8 | CS_INTL_I4);
    const unsigned def = cs_cl_int_layouts(&info, NULL);
    assert_true(def & CS_INTL_I8);
#if defined(__x86_64__) && defined(__GNUC__)
    assert_int_equal(!!(def & CS_INTL_I4), !!__builtin_cpu_supports("avx512bw"));
#endif
    assert_int_equal(cs_cl_int_layouts(&info, "yes"), def); /* not 0 or 1: the default */
    info.type = CL_DEVICE_TYPE_GPU; /* the CPU family on another device: no i4 by default */
    assert_int_equal(cs_cl_int_layouts(&info, NULL), CS_INTL_I8);
    info.family = CS_KFAMILY_GPU;
    assert_int_equal(cs_cl_int_layouts(&info, NULL), 0);
    assert_int_equal(cs_cl_int_layouts(&info, "1"), 0);
    /* the opened devices took the same decision */
    const char *e = getenv("CLSPEC_INTDOT");
    if (devs[CS_KFAMILY_GPU])
        assert_int_equal(devs[CS_KFAMILY_GPU]->int_layouts, 0);
    if (devs[CS_KFAMILY_CPU] && !forced)
        assert_int_equal(devs[CS_KFAMILY_CPU]->int_layouts, cs_cl_int_layouts(&devs[CS_KFAMILY_CPU]->info, e));
}

/* without CS_INTL_I4 (CLSPEC_INTDOT=0 at open, or an engine for llama.cpp
 * numerics: int_layouts 0), the GPU family, other types: the float-path
 * layouts */
static void test_fallback(void **s)
{
    (void)s;
    char err[512];
    for (int f = 0; f < 2; f++) {
        struct cs_cl_dev *d = devs[f];
        if (!d)
            continue;
        const unsigned keep = d->int_layouts;
        for (int off = 0; off < 3; off++) { /* 1: i4 off; 2: every integer layout off */
            d->int_layouts = off == 0 ? keep : off == 1 ? keep & ~CS_INTL_I4 : 0;
            const uint32_t types[] = {CS_TYPE_Q4_0, CS_TYPE_Q4_K, CS_TYPE_Q8_0, CS_TYPE_F16};
            for (size_t t = 0; t < CS_ARRAY_LEN(types); t++) {
                unsigned char *wh = ku_random_weight(types[t], 256, 8, 1, true);
                struct cs_weight w;
                assert_int_equal(cs_weight_upload(d, types[t], 256, 8, wh, &w, err, sizeof err), CLSPEC_OK);
                const bool want = f == CS_KFAMILY_CPU && !off && (types[t] == CS_TYPE_Q4_0 || types[t] == CS_TYPE_Q4_K);
                assert_int_equal(cs_op_i4_takes(d, &w), want);
                assert_int_equal(cs_i4_layout_is(w.layout), want);
                float *x = ku_random_x(256, 2, 4, false), exact[16];
                assert_int_equal(cs_ref_matmul(types[t], wh, 256, 8, x, 2, exact, err, sizeof err), CLSPEC_OK);
                float *y = ku_run_matmul(d, &w, x, 2);
                /* q8_0 goes to the 8-bit integer path (tests/test-kernels-i8.c) where it is on: rounded too */
                const bool rounded = want || w.layout == CS_WLAYOUT_I8;
                assert_false(off == 2 && w.layout == CS_WLAYOUT_I8);
                assert_true(ku_norm_err(y, exact, 16) < (rounded ? ROUND_BOUND : 1e-4));
                free(y);
                free(x);
                free(wh);
                cs_weight_free(&w);
            }
        }
        d->int_layouts = keep;
    }
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        return;
    struct cs_weight none = {0};
    assert_int_equal(cs_op_matmul_i4_q(d, &none, 1, NULL, 0, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_ref_matmul_i4(CS_TYPE_Q4_K, NULL, 32, 1, NULL, NULL, 1, NULL, err, sizeof err),
                     CLSPEC_E_UNSUPPORTED);
}

/* best of reps of one call (ms): wall clock, and process CPU time (all of
 * PoCL's threads; less sensitive to a loaded machine) */
static void time_mm(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem xb, cl_mem yb, uint32_t nc, int reps,
                    double *wall, double *cpu)
{
    char err[512];
    for (int r = 0; r < reps; r++) {
        const double t0 = cs_now();
        const clock_t c0 = clock();
        assert_int_equal(cs_op_matmul(d, w, xb, 0, yb, 0, nc, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
        *cpu = fmin(*cpu, (double)(clock() - c0) * 1e3 / CLOCKS_PER_SEC);
        *wall = fmin(*wall, (cs_now() - t0) * 1e3);
    }
}

/* informational (CLSPEC_I4_BENCH=1): the i4 path against the float path */
static void test_bench(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    char err[512];
    /* 1.1B shapes (weights that may stay in L3), and one of 38 MB (q4_0) streamed from memory */
    const uint32_t types[] = {CS_TYPE_Q4_0, CS_TYPE_Q4_K};
    const uint32_t shapes[][2] = {{2048, 2048}, {2048, 5632}, {5632, 2048}, {8192, 8192}};
    const uint32_t nmm = 128;
    for (size_t t = 0; t < CS_ARRAY_LEN(types); t++)
        for (size_t i = 0; i < CS_ARRAY_LEN(shapes); i++) {
            const uint32_t n_in = shapes[i][0], n_out = shapes[i][1];
            unsigned char *wh = ku_random_weight(types[t], n_in, n_out, 2, true);
            struct cs_weight w[2];
            assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w[1], err, sizeof err), CLSPEC_OK);
            const unsigned keep = d->int_layouts;
            d->int_layouts &= ~CS_INTL_I4;
            assert_int_equal(cs_weight_upload(d, types[t], n_in, n_out, wh, &w[0], err, sizeof err), CLSPEC_OK);
            d->int_layouts = keep;
            float *x = ku_random_x(n_in, nmm, 1, false);
            cl_mem xb = ku_buf(d, (size_t)nmm * n_in * sizeof(float), x);
            cl_mem yb = ku_buf(d, (size_t)nmm * n_out * sizeof(float), NULL);
            double mv[2] = {INFINITY, INFINITY}, mm[2] = {INFINITY, INFINITY};
            double cv[2] = {INFINITY, INFINITY}, cm[2] = {INFINITY, INFINITY};
            for (int rep = 0; rep < 5; rep++) /* alternated (the machine is shared) */
                for (int m = 0; m < 2; m++) {
                    time_mm(d, &w[m], xb, yb, 1, 10, &mv[m], &cv[m]);
                    time_mm(d, &w[m], xb, yb, nmm, 2, &mm[m], &cm[m]);
                }
            const double gb = (double)w[0].bytes / 1e6, gi = (double)w[1].bytes / 1e6,
                         gf = 2.0 * n_in * n_out * nmm / 1e6;
            printf("# %s %ux%u mat-vec: float %.3f ms %.1f GB/s, i4 %.3f ms %.1f GB/s (x%.2f; CPU time x%.2f); "
                   "mat-mat %u: float %.1f GFLOP/s, i4 %.1f GFLOP/s (x%.2f; CPU time x%.2f)\n",
                   cs_type_name(types[t]), n_in, n_out, mv[0], gb / mv[0], mv[1], gi / mv[1], mv[0] / mv[1],
                   cv[0] / cv[1], nmm, gf / mm[0], gf / mm[1], mm[0] / mm[1], cm[0] / cm[1]);
            clReleaseMemObject(xb);
            clReleaseMemObject(yb);
            free(x);
            free(wh);
            cs_weight_free(&w[0]);
            cs_weight_free(&w[1]);
        }
}

/* informational (CLSPEC_I4_BENCH=stream, or stream:TYPE, e.g. stream:q8_0;
 * default q4_0): a 1.1B model's decode mat-vecs (per layer: Q, K and V, O,
 * gate and up with SiLU, down; 22 layers, 545 MB in q4_0, past the L3)
 * through the forward pass's ops; the best of 24 passes (the machine is
 * shared): wall time, GB/s, and process CPU time (all of PoCL's threads;
 * what a loaded machine changes least) */
static void test_bench_stream(void **s)
{
    (void)s;
    struct cs_cl_dev *d = devs[CS_KFAMILY_CPU];
    if (!d)
        skip();
    const char *tn = strchr(getenv("CLSPEC_I4_BENCH"), ':');
    const int type = tn ? cs_type_from_name(tn + 1) : CS_TYPE_Q4_0;
    assert_true(type >= 0);
    enum { L = 22, NW = 7 };
    const uint32_t shapes[NW][2] = {{2048, 2048}, {2048, 256}, {2048, 256}, {2048, 2048},
                                    {2048, 5632}, {2048, 5632}, {5632, 2048}};
    char err[512];
    struct cs_weight *w = calloc(L * NW, sizeof *w);
    assert_non_null(w);
    double bytes = 0;
    for (int i = 0; i < NW; i++) {
        unsigned char *wh = ku_random_weight((uint32_t)type, shapes[i][0], shapes[i][1], 3 + i, true);
        for (int l = 0; l < L; l++) {
            assert_int_equal(cs_weight_upload(d, (uint32_t)type, shapes[i][0], shapes[i][1], wh, &w[l * NW + i],
                                              err, sizeof err), CLSPEC_OK);
            bytes += (double)w[l * NW + i].bytes;
        }
        free(wh);
    }
    float *x = ku_random_x(5632, 1, 1, false);
    cl_mem xb = ku_buf(d, 5632 * sizeof(float), x), yb = ku_buf(d, 4 * 5632 * sizeof(float), NULL);
    cl_mem tb = ku_buf(d, 2 * 5632 * sizeof(float), NULL);
    double best = INFINITY, cbest = INFINITY;
    for (int rep = 0; rep < 25; rep++) {
        const double t0 = cs_now();
        const clock_t c0 = clock();
        for (int l = 0; l < L; l++) {
            const struct cs_weight *lw = &w[l * NW];
            assert_int_equal(cs_op_matmul_qkv(d, &lw[0], &lw[1], &lw[2], xb, 0, yb, 0, yb, 2048, yb, 2304, 1, err,
                                              sizeof err), CLSPEC_OK);
            assert_int_equal(cs_op_matmul(d, &lw[3], xb, 0, yb, 0, 1, err, sizeof err), CLSPEC_OK);
            assert_int_equal(cs_op_matmul_swiglu(d, &lw[4], &lw[5], xb, 0, tb, yb, 0, 1, err, sizeof err), CLSPEC_OK);
            assert_int_equal(cs_op_matmul(d, &lw[6], xb, 0, yb, 0, 1, err, sizeof err), CLSPEC_OK);
        }
        assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
        if (rep) { /* the first pass warms the kernels */
            best = fmin(best, cs_now() - t0);
            cbest = fmin(cbest, (double)(clock() - c0) / CLOCKS_PER_SEC);
        }
    }
    printf("# %s decode mat-vecs, 22 layers of 1.1B (%.0f MB): best %.2f ms, %.1f GB/s; CPU time %.2f ms\n",
           cs_type_name((uint32_t)type), bytes / 1e6, best * 1e3, bytes / best / 1e9, cbest * 1e3);
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    clReleaseMemObject(tb);
    free(x);
    for (int i = 0; i < L * NW; i++)
        cs_weight_free(&w[i]);
    free(w);
}

static int setup(void **state)
{
    (void)state;
    if (ku_open_families(devs, false, "4-bit integer kernel tests") < 0)
        return -1;
    uint64_t rb;
    if (devs[CS_KFAMILY_CPU] && cs_i4_layout(devs[CS_KFAMILY_CPU], CS_TYPE_Q4_0, 32, &rb) < 0) {
        printf("# the 4-bit integer path is not the default here (no AVX-512BW): on, as CLSPEC_INTDOT=1\n");
        devs[CS_KFAMILY_CPU]->int_layouts |= CS_INTL_I4;
        forced = true;
    }
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
    /* on where it is the default (AVX-512BW hosts); elsewhere forced on, so the plain-int form is tested too */
    unsetenv("CLSPEC_INTDOT");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_q4_0), cmocka_unit_test(test_matmul_q4_K), cmocka_unit_test(test_other_forms),
        cmocka_unit_test(test_invariance),  cmocka_unit_test(test_fused),       cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_decision),    cmocka_unit_test(test_fallback),    cmocka_unit_test(test_bench),
        cmocka_unit_test(test_bench_stream),
    };
    if (getenv("CLSPEC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    /* the microbenchmarks (last) only with CLSPEC_I4_BENCH=1 (shapes) or =stream (the decode stream; TAP
     * counts a cmocka skip as a failure) */
    const char *bench = getenv("CLSPEC_I4_BENCH");
    const size_t n = CS_ARRAY_LEN(tests) - 2;
    if (bench && strncmp(bench, "stream", 6) == 0)
        return _cmocka_run_group_tests("kernels-i4", tests + n + 1, 1, setup, teardown);
    return _cmocka_run_group_tests("kernels-i4", tests, bench ? n + 1 : n, setup, teardown);
}
