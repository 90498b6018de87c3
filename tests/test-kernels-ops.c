/* test-kernels-ops.c: the non-matmul ops (src/ops/ops.h) but attention
 * (tests/test-kernels-attn.c) in both kernel families (CPU and GPU, forced
 * per device so both run on PoCL; env CLSPEC_KFAMILY=cpu|gpu restricts to one)
 * on random inputs against the plain-C references (src/ref/ops_ref.h):
 * rmsnorm, softmax, rope, elementwise, KV store and shift, argmax,
 * greedy_accept, bad arguments. Error bounds are normalized by the largest
 * reference magnitude; each bound is documented at its use. Per-op timings are
 * printed as TAP comments, never asserted. The harness: tests/opsutil.h. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "base/common.h"
#include "ops/ops.h"
#include "gguf/quant.h"
#include "ref/ops_ref.h"
#include "clspec/clspec.h"
#include "opsutil.h"
#include "testutil.h"

/* ---- rmsnorm ---- */

FAM_TEST(test_rmsnorm)
{
    static const int shapes[][2] = {{1, 1}, {3, 5}, {7, 64}, {33, 4099}, {16, 4096}};
    struct tu_rng r;
    tu_rng_seed(&r, 11);
    for (size_t s = 0; s < CS_ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        size_t n = (size_t)nr * nc, off = 3; /* a non-zero element offset */
        float *x = ou_rand_vec(&r, n + off, 2.0f), *w = ou_rand_vec(&r, (size_t)nc, 1.0f);
        float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        assert_non_null(ref);
        assert_non_null(got);
        cl_mem bx = ou_buf((n + off) * 4, x), bw = ou_buf((size_t)nc * 4, w);
        cl_mem by = ou_buf(n * 4, NULL);
        for (int with_w = 0; with_w < 2; with_w++) {
            double t0, t1;
            TIMED(t0, t1, (void)0,
                  cs_op_rmsnorm(ou_dev, bx, off, with_w ? bw : NULL, by, 0, nr, nc, 1e-5f, ou_err,
                                sizeof ou_err));
            ou_read(by, n * 4, got);
            cs_ref_rmsnorm(x + off, with_w ? w : NULL, ref, nr, nc, 1e-5f);
            /* f32 reduction order + sqrt/div ulps: 1e-5 of the largest output */
            double e = ou_norm_err(got, ref, n, 1e-6);
            printf("# rmsnorm %s %dx%d w=%d: %.3f ms (err %.2e)\n", ou_fam_name(f), nr, nc, with_w,
                   t1 - t0, e);
            assert_true(e <= 1e-5);
        }
        clReleaseMemObject(bx);
        clReleaseMemObject(bw);
        clReleaseMemObject(by);
        free(x);
        free(w);
        free(ref);
        free(got);
    }
}

/* ---- softmax ---- */

FAM_TEST(test_softmax)
{
    static const int shapes[][2] = {{1, 1}, {3, 17}, {5, 1000}, {2, 32000}};
    struct tu_rng r;
    tu_rng_seed(&r, 12);
    for (size_t s = 0; s < CS_ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        size_t n = (size_t)nr * nc;
        float *x = ou_rand_vec(&r, n, 5.0f), *got = malloc(n * sizeof *got);
        assert_non_null(got);
        cl_mem bx = ou_buf(n * 4, x);
        double t0, t1;
        TIMED(t0, t1, ou_write(bx, n * 4, x),
              cs_op_softmax(ou_dev, bx, 0, nr, nc, ou_err, sizeof ou_err));
        ou_read(bx, n * 4, got);
        cs_ref_softmax(x, nr, nc);
        /* exp ulps and f32 sums: 1e-5 of the largest probability */
        double e = ou_norm_err(got, x, n, 1e-6);
        printf("# softmax %s %dx%d: %.3f ms (err %.2e)\n", ou_fam_name(f), nr, nc, t1 - t0, e);
        assert_true(e <= 1e-5);
        clReleaseMemObject(bx);
        free(x);
        free(got);
    }
}

/* ---- rope ---- */

FAM_TEST(test_rope)
{
    /* n_tokens, n_head, head_dim, n_rot, neox, base, scale */
    static const struct {
        int nt, nh, hd, nrot, neox;
        float base, fs;
    } cases[] = {
        {5, 4, 64, 64, 0, 10000.0f, 1.0f},    {5, 4, 64, 64, 1, 10000.0f, 1.0f},
        {3, 2, 128, 32, 0, 1000000.0f, 0.5f}, {3, 2, 128, 32, 1, 1000000.0f, 0.25f},
        {17, 8, 16, 16, 1, 10000.0f, 1.0f},   {1, 1, 8, 4, 0, 500.0f, 1.0f},
    };
    struct tu_rng r;
    tu_rng_seed(&r, 13);
    for (size_t c = 0; c < CS_ARRAY_LEN(cases); c++) {
        int nt = cases[c].nt, nh = cases[c].nh, hd = cases[c].hd;
        size_t n = (size_t)nt * nh * hd;
        float *x = ou_rand_vec(&r, n, 1.0f), *got = malloc(n * sizeof *got);
        int32_t *pos = malloc((size_t)nt * sizeof *pos);
        assert_non_null(got);
        assert_non_null(pos);
        for (int t = 0; t < nt; t++)
            pos[t] = (int32_t)(tu_rng_u64(&r) % 512);
        pos[0] = 0;
        cl_mem bx = ou_buf(n * 4, x), bp = ou_buf((size_t)nt * 4, pos);
        struct cs_rope_params p = {cases[c].nrot, cases[c].neox != 0, cases[c].base, cases[c].fs};
        double t0, t1;
        TIMED(t0, t1, ou_write(bx, n * 4, x),
              cs_op_rope(ou_dev, bx, 0, bp, nt, nh, hd, &p, ou_err, sizeof ou_err));
        ou_read(bx, n * 4, got);
        float *orig = malloc(n * sizeof *orig);
        assert_non_null(orig);
        memcpy(orig, x, n * sizeof *x);
        cs_ref_rope(x, pos, nt, nh, hd, p.n_rot, p.neox, p.freq_base, p.freq_scale);
        /* theta up to 511 rad: a 1-ulp difference of pow() moves the phase by
         * ~3e-5, hence 1e-4 of the largest value */
        double e = ou_norm_err(got, x, n, 1e-6);
        printf("# rope %s %s %dx%dx%d rot %d: %.3f ms (err %.2e)\n", ou_fam_name(f),
               p.neox ? "neox" : "normal", nt, nh, hd, p.n_rot, t1 - t0, e);
        assert_true(e <= 1e-4);
        /* dims beyond n_rot untouched, bit for bit */
        for (size_t th = 0; th < (size_t)nt * nh; th++)
            assert_memory_equal(got + th * hd + p.n_rot, orig + th * hd + p.n_rot,
                                (size_t)(hd - p.n_rot) * sizeof(float));
        /* position 0 is the identity */
        assert_true(ou_norm_err(got, orig, (size_t)nh * hd, 1e-6) <= 1e-6);
        clReleaseMemObject(bx);
        clReleaseMemObject(bp);
        free(x);
        free(orig);
        free(got);
        free(pos);
    }
}

/* ---- elementwise ---- */

FAM_TEST(test_eltwise)
{
    struct tu_rng r;
    tu_rng_seed(&r, 14);
    const int nr = 7, nc = 1003;
    const size_t n = (size_t)nr * nc, off = 5;
    float *a = ou_rand_vec(&r, n + off, 3.0f), *b = ou_rand_vec(&r, n + off, 1.0f);
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    assert_non_null(ref);
    assert_non_null(got);
    cl_mem ba = ou_buf((n + off) * 4, a), bb = ou_buf((n + off) * 4, b);
    cl_mem bo = ou_buf(n * 4, NULL);
    double t0, t1, e;

    TIMED(t0, t1, (void)0, cs_op_swiglu(ou_dev, ba, off, bb, off, bo, 0, n, ou_err, sizeof ou_err));
    ou_read(bo, n * 4, got);
    cs_ref_swiglu(a + off, b + off, ref, n);
    e = ou_norm_err(got, ref, n, 1e-6); /* exp ulps: 1e-5 */
    printf("# swiglu %s %zu: %.3f ms (err %.2e)\n", ou_fam_name(f), n, t1 - t0, e);
    assert_true(e <= 1e-5);

    TIMED(t0, t1, (void)0, cs_op_add(ou_dev, ba, off, bb, 0, bo, 0, n, ou_err, sizeof ou_err));
    ou_read(bo, n * 4, got);
    cs_ref_add(a + off, b, ref, n);
    e = ou_norm_err(got, ref, n, 1e-6); /* one rounding, same as the reference: exact */
    printf("# add %s %zu: %.3f ms (err %.2e)\n", ou_fam_name(f), n, t1 - t0, e);
    assert_true(e == 0.0);

    /* in place: bo += bias (first nc values of b) per row */
    memcpy(ref, got, n * sizeof *ref);
    TIMED(t0, t1, ou_write(bo, n * 4, ref),
          cs_op_add_bias(ou_dev, bo, 0, bb, nr, nc, ou_err, sizeof ou_err));
    ou_read(bo, n * 4, got);
    cs_ref_add_bias(ref, b, nr, nc);
    e = ou_norm_err(got, ref, n, 1e-6);
    printf("# add_bias %s %dx%d: %.3f ms (err %.2e)\n", ou_fam_name(f), nr, nc, t1 - t0, e);
    assert_true(e == 0.0);

    TIMED(t0, t1, ou_write(bo, n * 4, got),
          cs_op_scale(ou_dev, bo, 0, n, 0.125f, ou_err, sizeof ou_err));
    ou_read(bo, n * 4, got);
    cs_ref_scale(ref, n, 0.125f);
    e = ou_norm_err(got, ref, n, 1e-6);
    printf("# scale %s %zu: %.3f ms (err %.2e)\n", ou_fam_name(f), n, t1 - t0, e);
    assert_true(e == 0.0);

    /* bad shapes are reported, not crashed on */
    assert_int_equal(cs_op_add_bias(ou_dev, bo, 0, bb, 1, 0, ou_err, sizeof ou_err), CLSPEC_E_INVAL);
    clReleaseMemObject(ba);
    clReleaseMemObject(bb);
    clReleaseMemObject(bo);
    free(a);
    free(b);
    free(ref);
    free(got);
}

/* ---- KV cache ---- */


static void test_kv_store(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 15);
    /* (kv heads, head_dim): model-sized heads, and the small heads of
     * stories260K (4 x 8: one block per row, shared by 4 heads) and
     * TinyStories-656K (4 x 16: 2 blocks, 2 heads each), and rows that are
     * not whole blocks, padded: 2 x 8 = 16 (the distilled drafter), 1 x 48
     * and 3 x 16 = 48 */
    static const int shapes[][2] = {{2, 64}, {4, 8}, {4, 16}, {2, 8}, {1, 48}, {3, 16}};
    const int n_cells = 40, nt = 6;
    const int32_t cells[6] = {3, 17, 0, 39, -1, 8}; /* -1: skipped */
    for (size_t si = 0; si < CS_ARRAY_LEN(shapes); si++)
    for (size_t ti = 0; ti < CS_ARRAY_LEN(ou_kv_types); ti++) {
        const int nkv = shapes[si][0], hd = shapes[si][1], row = nkv * hd;
        uint32_t type = ou_kv_types[ti];
        size_t rb = ou_kv_row_bytes(type, (size_t)row);
        float *k = ou_rand_vec(&r, (size_t)nt * row, 2.0f), *v = ou_rand_vec(&r, (size_t)nt * row, 1.0f);
        /* conversion edge cases in both the scalar and the 16-wide store paths:
         * f16 subnormals, a tie to even at 1, the largest finite, overflow, underflow */
        static const float edge[] = {1e-6f, -3e-7f, 1.00048828125f, 65519.0f, 65520.0f, -2.98023224e-8f,
                                     6.1e-5f, -1e5f};
        for (size_t i = 0; i < CS_ARRAY_LEN(edge) && (int)i < row; i++) {
            k[i] = edge[i];
            v[(size_t)row - 1 - i] = edge[i];
        }
        unsigned char *got = malloc(rb * n_cells), *want = malloc(rb * n_cells);
        assert_non_null(got);
        assert_non_null(want);
        memset(want, 0xA5, rb * n_cells);
        struct cs_kv_view kv = {
            type, type, n_cells, nkv, hd, ou_buf(rb * n_cells, want), ou_buf(rb * n_cells, want),
            NULL, NULL, NULL};
        cl_mem bk = ou_buf((size_t)nt * row * 4, k), bv = ou_buf((size_t)nt * row * 4, v);
        cl_mem bi = ou_buf(sizeof cells, cells);
        double t0, t1;
        TIMED(t0, t1, (void)0,
              cs_op_kv_store(ou_dev, &kv, bk, 0, bv, 0, bi, nt, ou_err, sizeof ou_err));
        for (int pass = 0; pass < 2; pass++) {
            const float *src = pass ? v : k;
            memset(want, 0xA5, rb * n_cells);
            for (int t = 0; t < nt; t++)
                if (cells[t] >= 0)
                    assert_int_equal(
                        cs_kv_quantize_row(type, src + (size_t)t * row, want + rb * cells[t], row), 0);
            ou_read(pass ? kv.v : kv.k, rb * n_cells, got);
            if (type == CS_TYPE_F32 || type == CS_TYPE_F16 || type == CS_TYPE_BF16) {
                /* the same rounding as cs_quantize_row: bit for bit */
                assert_memory_equal(got, want, rb * n_cells);
            } else {
                /* q8_0 / q4_0: the kernel's 1/d may differ from the host's by an
                 * ulp, which can move a value across a rounding boundary: allow
                 * one quantization step per element, and untouched cells exact */
                float *a = malloc((size_t)row * sizeof *a), *b = malloc((size_t)row * sizeof *b);
                assert_non_null(a);
                assert_non_null(b);
                for (int c = 0; c < n_cells; c++) {
                    bool used = false;
                    for (int t = 0; t < nt; t++)
                        used = used || cells[t] == c;
                    if (!used) {
                        assert_memory_equal(got + rb * c, want + rb * c, rb);
                        continue;
                    }
                    cs_kv_dequantize_row(type, got + rb * c, a, row);
                    cs_kv_dequantize_row(type, want + rb * c, b, row);
                    ou_assert_pad_zero(type, got + rb * c, rb, row);
                    for (int j = 0; j < row; j += 32) {
                        int je = j + 32 < row ? j + 32 : row;
                        float amax = 0.0f;
                        for (int i = j; i < je; i++)
                            amax = fmaxf(amax, fabsf(b[i]));
                        float step = amax / (type == CS_TYPE_Q8_0 ? 127.0f : 7.0f);
                        for (int i = j; i < je; i++)
                            assert_true(fabsf(a[i] - b[i]) <= step * 1.01f + 1e-6f);
                    }
                }
                free(a);
                free(b);
            }
        }
        printf("# kv_store %s %d rows of %d x %d: %.3f ms\n", cs_type_name(type), nt, nkv, hd, t1 - t0);
        clReleaseMemObject(kv.k);
        clReleaseMemObject(kv.v);
        clReleaseMemObject(bk);
        clReleaseMemObject(bv);
        clReleaseMemObject(bi);
        free(k);
        free(v);
        free(got);
        free(want);
    }
}

/* Plain-C reference of cs_op_kv_shift on one cache row of type t (n_kv_head
 * heads of head_dim): dequantize, RoPE by delta (cs_ref_rope), requantize. */
static void ref_kv_shift(uint32_t t, unsigned char *row, int n_kv_head, int head_dim, int32_t delta,
                         const struct cs_rope_params *p)
{
    int n = n_kv_head * head_dim;
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    assert_int_equal(cs_kv_dequantize_row(t, row, x, n), 0);
    cs_ref_rope(x, &delta, 1, n_kv_head, head_dim, p->n_rot, p->neox, p->freq_base, p->freq_scale);
    assert_int_equal(cs_kv_quantize_row(t, x, row, n), 0);
    free(x);
}

/* cs_op_kv_shift for every K type against the reference: listed cells
 * within one rounding (f16/bf16: one unit in the last place; q8_0/q4_0: one
 * quantization step), the rest of the cache and V untouched. */
static void test_kv_shift(void **state)
{
    (void)state;
    NEED_DEV();
    struct shift_case {
        int nkv, hd;
        struct cs_rope_params p;
        int32_t delta;
    } cases[] = {
        {2, 64, {64, false, 10000.0f, 1.0f}, 7},
        {1, 128, {64, true, 1000000.0f, 0.5f}, -13}, /* partial rotary */
        {3, 32, {32, true, 10000.0f, 1.0f}, 1000},
        /* small heads: quantized blocks span 4 (2) heads, one work-item per block */
        {4, 8, {8, false, 10000.0f, 1.0f}, 5},
        {4, 16, {16, true, 10000.0f, 1.0f}, -9},
        {4, 16, {8, false, 10000.0f, 1.0f}, 300}, /* partial rotary */
        {2, 48, {48, true, 10000.0f, 1.0f}, 11},  /* lcm(48, 32) = 96: 2 heads, 3 blocks */
        /* rows padded to whole blocks: one short unit (2 x 8 = 16 of 32; 1 x
         * 48 of lcm 96), or a whole unit then a short one (3 x 16 = 48) */
        {2, 8, {8, true, 10000.0f, 1.0f}, 6},
        {1, 48, {32, false, 10000.0f, 1.0f}, -21},
        {3, 16, {16, false, 10000.0f, 1.0f}, 40},
    };
    const int n_cells = 20;
    const int32_t list[] = {3, 17, 0, -1, 9, 25}; /* -1, 25: skipped */
    struct tu_rng r;
    tu_rng_seed(&r, 29);
    for (size_t ti = 0; ti < CS_ARRAY_LEN(ou_kv_types); ti++) {
        uint32_t t = ou_kv_types[ti];
        double emax = 0.0;
        for (size_t ci = 0; ci < CS_ARRAY_LEN(cases); ci++) {
            const struct shift_case *sc = &cases[ci];
            int row = sc->nkv * sc->hd;
            size_t rb = ou_kv_row_bytes(t, (size_t)row);
            float *x = ou_rand_vec(&r, (size_t)n_cells * row, 2.0f);
            unsigned char *img = malloc(rb * n_cells), *want = malloc(rb * n_cells),
                          *got = malloc(rb * n_cells), *vimg = malloc(rb * n_cells);
            assert_true(img && want && got && vimg);
            for (int c = 0; c < n_cells; c++)
                assert_int_equal(cs_kv_quantize_row(t, x + (size_t)c * row, img + rb * c, row), 0);
            memset(vimg, 0x5A, rb * n_cells);
            struct cs_kv_view kv = {t,    CS_TYPE_F32, n_cells, sc->nkv, sc->hd, ou_buf(rb * n_cells, img),
                                    NULL, NULL,        NULL,    NULL};
            kv.type_v = t;
            kv.v = ou_buf(rb * n_cells, vimg);
            cl_mem bl = ou_buf(sizeof list, list);
            double t0, t1;
            t0 = ou_now_ms();
            OP_OK(cs_op_kv_shift(ou_dev, &kv, bl, (int)CS_ARRAY_LEN(list), sc->delta, &sc->p, ou_err,
                                 sizeof ou_err));
            ou_finish();
            t1 = ou_now_ms();
            ou_read(kv.k, rb * n_cells, got);
            memcpy(want, img, rb * n_cells);
            for (size_t i = 0; i < CS_ARRAY_LEN(list); i++)
                if (list[i] >= 0 && list[i] < n_cells)
                    ref_kv_shift(t, want + rb * list[i], sc->nkv, sc->hd, sc->delta, &sc->p);
            float *a = malloc((size_t)row * sizeof *a), *b = malloc((size_t)row * sizeof *b);
            assert_true(a && b);
            for (int c = 0; c < n_cells; c++) {
                bool listed = false;
                for (size_t i = 0; i < CS_ARRAY_LEN(list); i++)
                    listed = listed || list[i] == c;
                if (!listed) {
                    assert_memory_equal(got + rb * c, img + rb * c, rb);
                    continue;
                }
                assert_memory_not_equal(got + rb * c, img + rb * c, rb);
                cs_kv_dequantize_row(t, got + rb * c, a, row);
                cs_kv_dequantize_row(t, want + rb * c, b, row);
                ou_assert_pad_zero(t, got + rb * c, rb, row);
                float rmax = 0.0f;
                for (int j = 0; j < row; j++)
                    rmax = fmaxf(rmax, fabsf(b[j]));
                for (int j = 0; j < row; j++) {
                    float tol;
                    if (t == CS_TYPE_F32)
                        tol = 1e-5f * rmax;
                    else if (t == CS_TYPE_F16)
                        tol = fabsf(b[j]) * 0x1p-10f + 1e-5f * rmax;
                    else if (t == CS_TYPE_BF16)
                        tol = fabsf(b[j]) * 0x1p-7f + 1e-5f * rmax;
                    else {
                        int j0 = j / 32 * 32, j1 = j0 + 32 < row ? j0 + 32 : row;
                        float bmax = 0.0f;
                        for (int jj = j0; jj < j1; jj++)
                            bmax = fmaxf(bmax, fabsf(b[jj]));
                        tol = bmax / (t == CS_TYPE_Q8_0 ? 127.0f : 7.0f) * 1.01f + 1e-5f * rmax;
                    }
                    if (!(fabsf(a[j] - b[j]) <= tol))
                        fail_msg("kv_shift %s case %zu cell %d elem %d: %g vs %g", cs_type_name(t),
                                 ci, c, j, a[j], b[j]);
                    emax = fmax(emax, fabs(a[j] - b[j]) / rmax);
                }
            }
            ou_read(kv.v, rb * n_cells, got);
            assert_memory_equal(got, vimg, rb * n_cells);
            printf("# kv_shift %s %d x %d, n_rot %d%s, delta %d: %.3f ms\n", cs_type_name(t),
                   sc->nkv, sc->hd, sc->p.n_rot, sc->p.neox ? " neox" : "", sc->delta, t1 - t0);
            clReleaseMemObject(kv.k);
            clReleaseMemObject(kv.v);
            clReleaseMemObject(bl);
            free(a);
            free(b);
            free(x);
            free(img);
            free(want);
            free(got);
            free(vimg);
        }
        printf("# kv_shift %s: max err vs reference %.2e of the row maximum\n", cs_type_name(t), emax);
    }
}

/* ---- argmax ---- */

/* Random rows plus planted ties (the first of two equal maxima must win),
 * a maximum in the last column and NaN entries; exact index equality with
 * cs_ref_argmax in both families. */
FAM_TEST(test_argmax)
{
    static const int shapes[][2] = {{1, 1}, {3, 7}, {5, 300}, {9, 4099}};
    struct tu_rng r;
    tu_rng_seed(&r, 21);
    for (size_t s = 0; s < CS_ARRAY_LEN(shapes); s++) {
        int nr = shapes[s][0], nc = shapes[s][1];
        size_t n = (size_t)nr * nc, off = 2;
        float *x = ou_rand_vec(&r, n + off, 1.0f);
        float *xr = x + off;
        if (nc > 4 && nr > 2) {
            xr[nc - 1] = 50.0f;                      /* row 0: the last column */
            xr[nc + 1] = xr[nc + 3] = 40.0f;         /* row 1: a tie, column 1 wins */
            xr[2 * nc] = NAN;                        /* row 2: NaN never wins */
            xr[2 * nc + 2] = NAN;
        }
        int32_t *ref = malloc((size_t)nr * sizeof *ref), *got = malloc((size_t)(nr + 1) * sizeof *got);
        assert_non_null(ref);
        assert_non_null(got);
        cs_ref_argmax(xr, nr, nc, ref);
        if (nc > 4 && nr > 2) {
            assert_int_equal(ref[0], nc - 1);
            assert_int_equal(ref[1], 1);
            assert_true(ref[2] != 0 && ref[2] != 2);
        }
        cl_mem bx = ou_buf((n + off) * 4, x), bo = ou_buf((size_t)(nr + 1) * 4, NULL);
        double t0, t1;
        TIMED(t0, t1, (void)0, cs_op_argmax(ou_dev, bx, off, bo, 1, nr, nc, ou_err, sizeof ou_err));
        ou_read(bo, (size_t)(nr + 1) * 4, got);
        printf("# argmax %s (%d, %d): %.3f ms\n", ou_fam_name(f), nr, nc, t1 - t0);
        for (int i = 0; i < nr; i++) {
            assert_int_equal(got[1 + i], ref[i]);
            /* the host sampler's greedy pick (row 2 starts with NaN) */
            assert_int_equal(clspec_argmax(xr + (size_t)i * nc, nc), ref[i]);
        }
        clReleaseMemObject(bx);
        clReleaseMemObject(bo);
        free(x);
        free(ref);
        free(got);
    }
}

/* ---- greedy_accept ---- */

/* A hand-checked case (two runs, single rows, a run cut by its last row),
 * then random runs over a 3-token alphabet (many matches) against
 * cs_ref_greedy_accept, in both families. */
FAM_TEST(test_greedy_accept)
{
    (void)f;
    static const int32_t am0[] = {5, 7, 7, 2, 9, 3, 3}, nxt0[] = {5, 7, 1, -1, -1, 3, -1};
    static const int32_t want0[] = {2, 7, 1, 7, 0, 7, 0, 2, 0, 9, 1, 3, 0, 3};
    int32_t ref[2 * 7];
    cs_ref_greedy_accept(am0, nxt0, 7, ref);
    assert_memory_equal(ref, want0, sizeof want0);
    struct tu_rng r;
    tu_rng_seed(&r, 23);
    for (int n = 1; n <= 40; n += 13) {
        int32_t *am = malloc((size_t)n * 4), *nxt = malloc((size_t)n * 4), *rf = malloc((size_t)n * 8),
                *got = malloc((size_t)n * 8);
        assert_true(am && nxt && rf && got);
        for (int i = 0; i < n; i++) {
            am[i] = (int32_t)(tu_rng_u64(&r) % 3);
            uint32_t u = (uint32_t)(tu_rng_u64(&r) % 10);
            nxt[i] = i == n - 1 || u == 0 ? -1 : u < 8 ? am[i] : (am[i] + 1) % 3;
        }
        cs_ref_greedy_accept(am, nxt, n, rf);
        cl_mem ba = ou_buf((size_t)n * 4, am), bn = ou_buf((size_t)n * 4, nxt), br = ou_buf((size_t)n * 8, NULL);
        assert_int_equal(cs_op_greedy_accept(ou_dev, ba, bn, br, n, ou_err, sizeof ou_err), CLSPEC_OK);
        ou_read(br, (size_t)n * 8, got);
        assert_memory_equal(got, rf, (size_t)n * 8);
        clReleaseMemObject(ba);
        clReleaseMemObject(bn);
        clReleaseMemObject(br);
        free(am);
        free(nxt);
        free(rf);
        free(got);
    }
    assert_int_equal(cs_op_greedy_accept(ou_dev, NULL, NULL, NULL, 0, ou_err, sizeof ou_err), CLSPEC_E_INVAL);
}

static void test_bad_args(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv_view kv = {CS_TYPE_Q8_0, CS_TYPE_Q8_0, 4, 1, 6, NULL, NULL, NULL, NULL, NULL}; /* head_dim 6 */
    /* quantized blocks of 32 run along the cell row, padded to whole blocks:
     * 1 x 16 and 2 x 8 (half a block) are accepted */
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 1, 16, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_0, 2, 8, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_F16, 2, 8, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 2, 6, ou_err, sizeof ou_err), CLSPEC_E_UNSUPPORTED);
    /* stories260K (4 x 8), TinyStories-656K (4 x 16), 3 x 32, 2 x 48: whole blocks per row */
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 4, 8, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_0, 4, 16, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_0, 3, 32, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q8_0, 2, 48, ou_err, sizeof ou_err), CLSPEC_OK);
    assert_int_equal(cs_kv_type_check(CS_TYPE_F32, 4, 6, ou_err, sizeof ou_err), CLSPEC_E_UNSUPPORTED);
    assert_int_equal(cs_kv_type_check(CS_TYPE_Q4_K, 1, 64, ou_err, sizeof ou_err), CLSPEC_E_UNSUPPORTED);
    assert_int_equal(cs_op_attention(ou_dev, &kv, 4, NULL, 0, NULL, 0, NULL, NULL, 1, 2, true, 1.0f,
                                     ou_err, sizeof ou_err),
                     CLSPEC_E_UNSUPPORTED);
    kv.type_k = kv.type_v = CS_TYPE_F32;
    kv.head_dim = 16;
    kv.n_kv_head = 3; /* 4 heads over 3 kv heads */
    assert_int_equal(cs_op_attention(ou_dev, &kv, 4, NULL, 0, NULL, 0, NULL, NULL, 1, 4, true, 1.0f,
                                     ou_err, sizeof ou_err),
                     CLSPEC_E_INVAL);
    struct cs_rope_params p = {65, false, 10000.0f, 1.0f};
    assert_int_equal(cs_op_rope(ou_dev, NULL, 0, NULL, 1, 1, 64, &p, ou_err, sizeof ou_err),
                     CLSPEC_E_INVAL);
    assert_int_equal(cs_op_argmax(ou_dev, NULL, 0, NULL, 0, 1, 0, ou_err, sizeof ou_err), CLSPEC_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_eltwise),
        cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_kv_shift),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_greedy_accept),
    };
    return cmocka_run_group_tests_name("kernels-ops", tests, ou_setup, ou_teardown);
}
