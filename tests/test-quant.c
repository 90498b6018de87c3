/* test-quant.c: the ggml type table, f16/bf16 conversions (exhaustive),
 * dequantization of every block type (per-element encoders and the synthetic
 * models against their F16 twin) and quantize/dequantize round trips. */
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
#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "testutil.h"

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- type table ---- */

static void test_type_table(void **state)
{
    (void)state;
    /* bytes / elements per block as documented in FORMATS.md */
    static const struct { uint32_t t; uint32_t bytes, elems; } want[] = {
        {CS_TYPE_F32, 4, 1},      {CS_TYPE_F16, 2, 1},      {CS_TYPE_BF16, 2, 1},     {CS_TYPE_Q4_0, 18, 32},
        {CS_TYPE_Q4_1, 20, 32},   {CS_TYPE_Q5_0, 22, 32},   {CS_TYPE_Q5_1, 24, 32},   {CS_TYPE_Q8_0, 34, 32},
        {CS_TYPE_Q2_K, 84, 256},  {CS_TYPE_Q3_K, 110, 256}, {CS_TYPE_Q4_K, 144, 256}, {CS_TYPE_Q5_K, 176, 256},
        {CS_TYPE_Q6_K, 210, 256},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(want); i++) {
        const struct cs_type_info *ti = cs_type_get(want[i].t);
        assert_non_null(ti);
        assert_int_equal(ti->block_bytes, want[i].bytes);
        assert_int_equal(ti->block_elems, want[i].elems);
        assert_true(ti->dequant);
    }
    assert_null(cs_type_get(4)); /* retired Q4_2 */
    assert_null(cs_type_get(CS_TYPE_COUNT));
    assert_null(cs_type_get(UINT32_MAX));
    assert_string_equal(cs_type_name(4), "unknown");
    assert_string_equal(cs_type_name(CS_TYPE_Q4_K), "q4_K");
}

static void test_row_bytes(void **state)
{
    (void)state;
    uint64_t b = 0;
    assert_true(cs_row_bytes(CS_TYPE_F32, 10, &b));
    assert_true(b == 40);
    assert_true(cs_row_bytes(CS_TYPE_Q4_0, 64, &b));
    assert_true(b == 36);
    assert_false(cs_row_bytes(CS_TYPE_Q4_0, 33, &b));
    assert_true(cs_row_bytes(CS_TYPE_Q4_K, 512, &b));
    assert_true(b == 288);
    assert_false(cs_row_bytes(CS_TYPE_Q6_K, 255, &b));
    assert_true(cs_row_bytes(CS_TYPE_Q8_0, 0, &b));
    assert_true(b == 0);
    assert_false(cs_row_bytes(4, 32, &b));
    assert_false(cs_row_bytes(CS_TYPE_F32, UINT64_MAX, &b)); /* 4 * n overflows */
    assert_false(cs_row_bytes(CS_TYPE_F16, UINT64_MAX / 2 + 1, &b));
    assert_true(cs_row_bytes(CS_TYPE_F16, UINT64_MAX / 2, &b));
}

static void test_type_from_name(void **state)
{
    (void)state;
    assert_int_equal(cs_type_from_name("f16"), CS_TYPE_F16);
    assert_int_equal(cs_type_from_name("Q8_0"), CS_TYPE_Q8_0);
    assert_int_equal(cs_type_from_name("q4_k"), CS_TYPE_Q4_K);
    assert_int_equal(cs_type_from_name("BF16"), CS_TYPE_BF16);
    assert_int_equal(cs_type_from_name("F32"), CS_TYPE_F32);
    assert_int_equal(cs_type_from_name("q4"), -1);
    assert_int_equal(cs_type_from_name("q8_0 "), -1);
    assert_int_equal(cs_type_from_name(""), -1);
    assert_int_equal(cs_type_from_name(NULL), -1);
    int known = 0;
    for (uint32_t t = 0; t < CS_TYPE_COUNT; t++)
        if (cs_type_get(t)) {
            assert_int_equal(cs_type_from_name(cs_type_name(t)), (int)t);
            known++;
        }
    assert_true(known >= 14);
}

/* ---- f16 / bf16 ---- */

static bool is_nan16(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cs_f16_to_f32((uint16_t)h);
        assert_int_equal(cs_f32_to_f16(f), h);
        if (is_nan16((uint16_t)h))
            assert_true(isnan(f));
        else if ((h & 0x7c00) != 0x7c00) {
            /* value from the definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024 */
            int e = (h >> 10) & 0x1f, m = h & 0x3ff;
            double v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
            assert_true((double)f == ((h & 0x8000) ? -v : v));
        } else
            assert_true(isinf(f));
    }
}

static void test_f16_rounding(void **state)
{
    (void)state;
    /* every midpoint between two adjacent finite halves rounds to the even one;
     * one ulp (of float) either side rounds to the nearer */
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t h = 0; h < 0x7bff; h++) {
            uint16_t a = (uint16_t)(h | s << 15), b = (uint16_t)((h + 1) | s << 15);
            float fa = cs_f16_to_f32(a), fb = cs_f16_to_f32(b);
            float mid = (fa + fb) / 2; /* exact in float */
            assert_int_equal(cs_f32_to_f16(mid), (a & 1) ? b : a);
            assert_int_equal(cs_f32_to_f16(nextafterf(mid, fa)), a);
            assert_int_equal(cs_f32_to_f16(nextafterf(mid, fb)), b);
        }
    assert_int_equal(cs_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(cs_f32_to_f16(65520.0f), 0x7c00); /* tie between 65504 and 2^16: even is inf */
    assert_int_equal(cs_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(cs_f32_to_f16(ldexpf(1, -25)), 0x0000); /* tie between 0 and 2^-24 */
    assert_int_equal(cs_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    assert_int_equal(cs_f32_to_f16(ldexpf(3, -25)), 0x0002); /* tie 1.5 * 2^-24 -> 2 */
    assert_int_equal(cs_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(cs_f32_to_f16(-0.0f), 0x8000);
    assert_true(is_nan16(cs_f32_to_f16(bitsf(0x7f800001)))); /* low payload stays a NaN */
    assert_true(is_nan16(cs_f32_to_f16(NAN)));
#if defined(__FLT16_MAX__)
    /* the compiler's own conversion as a second opinion on random floats */
    struct tu_rng r;
    tu_rng_seed(&r, 16);
    for (int i = 0; i < 200000; i++) {
        float f = bitsf((uint32_t)tu_rng_u64(&r));
        if (isnan(f))
            continue;
        _Float16 h = (_Float16)f;
        uint16_t hb;
        memcpy(&hb, &h, 2);
        assert_int_equal(cs_f32_to_f16(f), hb);
    }
#endif
}

static void test_bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cs_bf16_to_f32((uint16_t)h);
        assert_true(fbits(f) == h << 16);
        assert_int_equal(cs_f32_to_bf16(f), h);
        if ((h & 0x7f80) != 0x7f80 && h != 0x7f7f && h != 0xff7f) {
            /* ties to even between h and h+1 (same sign), and just off the tie */
            uint32_t mid = h << 16 | 0x8000;
            assert_int_equal(cs_f32_to_bf16(bitsf(mid)), (h & 1) ? h + 1 : h);
            assert_int_equal(cs_f32_to_bf16(bitsf(mid - 1)), h);
            assert_int_equal(cs_f32_to_bf16(bitsf(mid + 1)), h + 1);
        }
    }
    assert_int_equal(cs_f32_to_bf16(bitsf(0x7f7fffff)), 0x7f80); /* FLT_MAX rounds to inf */
    uint16_t n = cs_f32_to_bf16(bitsf(0x7f800001));
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    assert_true(isnan(cs_bf16_to_f32(cs_f32_to_bf16(-NAN))));
}

/* ---- per-element encoders: element i of a block from its fields ---- */

/* 6-bit scale j and min j of a Q4_K/Q5_K super-block into scales[12] */
static void put_k4(uint8_t *s, int j, int sc, int mn)
{
    if (j < 4) {
        s[j] |= (uint8_t)(sc & 63);
        s[j + 4] |= (uint8_t)(mn & 63);
    } else {
        s[j + 4] |= (uint8_t)((sc & 15) | (mn & 15) << 4);
        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
        s[j] |= (uint8_t)((mn >> 4) << 6);
    }
}

/* Builds one block of type t with random fields and writes the values it must
 * dequantize to into want[]. */
static void encode_random_block(uint32_t t, struct tu_rng *r, uint8_t *blk, float *want)
{
    const struct cs_type_info *ti = cs_type_get(t);
    memset(blk, 0, ti->block_bytes);
    float d = cs_f16_to_f32(cs_f32_to_f16(0.01f + tu_rng_uniform(r)));
    float m = cs_f16_to_f32(cs_f32_to_f16(tu_rng_uniform(r) - 0.5f));
    int sc[16], mn[16];
    for (int j = 0; j < 16; j++) {
        sc[j] = (int)(tu_rng_u64(r) % 64);
        mn[j] = (int)(tu_rng_u64(r) % 64);
    }
    for (uint32_t i = 0; i < ti->block_elems; i++) {
        int q = (int)(tu_rng_u64(r) % 256);
        switch (t) {
        case CS_TYPE_Q4_1:
        case CS_TYPE_Q4_0:
        case CS_TYPE_Q5_0:
        case CS_TYPE_Q5_1: {
            bool five = t == CS_TYPE_Q5_0 || t == CS_TYPE_Q5_1, off = t == CS_TYPE_Q4_0 || t == CS_TYPE_Q5_0;
            int hdr = (t == CS_TYPE_Q4_1 ? 4 : 2) + (t == CS_TYPE_Q5_0 ? 4 : 0) + (t == CS_TYPE_Q5_1 ? 6 : 0);
            q &= five ? 31 : 15;
            blk[hdr + i % 16] |= (uint8_t)((q & 15) << (i >= 16 ? 4 : 0));
            if (five)
                blk[hdr - 4 + i / 8] |= (uint8_t)((q >> 4) << (i % 8));
            want[i] = off ? (q - (five ? 16 : 8)) * d : q * d + m;
            break;
        }
        case CS_TYPE_Q8_0:
            blk[2 + i] = (uint8_t)q;
            want[i] = (int8_t)q * d;
            break;
        case CS_TYPE_Q2_K:
        case CS_TYPE_Q3_K: {
            int n = i / 128, rr = i % 128, j = rr / 32, half = (rr % 32) / 16, l = rr % 16;
            int is = 8 * n + 2 * j + half, qpos = (t == CS_TYPE_Q2_K ? 16 : 32) + 32 * n + 16 * half + l;
            blk[qpos] |= (uint8_t)((q & 3) << (2 * j));
            if (t == CS_TYPE_Q2_K) {
                blk[is] = (uint8_t)((sc[is] & 15) | (mn[is] & 15) << 4);
                want[i] = d * (sc[is] & 15) * (q & 3) - m * (mn[is] & 15);
            } else {
                int hbit = (q >> 2) & 1;
                blk[16 * half + l] |= (uint8_t)(hbit << (4 * n + j));
                blk[96 + is % 8] |= (uint8_t)((sc[is] & 15) << (is >= 8 ? 4 : 0));
                blk[104 + is % 4] |= (uint8_t)((sc[is] >> 4) << (2 * (is / 4)));
                want[i] = d * (sc[is] - 32) * ((q & 3) - (hbit ? 0 : 4));
            }
            break;
        }
        case CS_TYPE_Q4_K:
        case CS_TYPE_Q5_K: {
            int sb = i / 32, w = i % 32, five = t == CS_TYPE_Q5_K;
            int qs = five ? 48 : 16;
            blk[qs + 32 * (sb / 2) + w] |= (uint8_t)((q & 15) << (sb % 2 ? 4 : 0));
            int qq = q & 15;
            if (five) {
                blk[16 + w] |= (uint8_t)(((q >> 4) & 1) << sb);
                qq = q & 31;
            }
            if (w == 0)
                put_k4(blk + 4, sb, sc[sb], mn[sb]);
            want[i] = d * sc[sb] * qq - m * mn[sb];
            break;
        }
        case CS_TYPE_Q6_K: {
            int n = i / 128, rr = i % 128, qt = rr / 32, l = rr % 32;
            int q6 = q & 63, is = 8 * n + l / 16 + 2 * qt;
            blk[64 * n + l + (qt & 1 ? 32 : 0)] |= (uint8_t)((q6 & 15) << (qt >= 2 ? 4 : 0));
            blk[128 + 32 * n + l] |= (uint8_t)((q6 >> 4) << (2 * qt));
            int8_t s8 = (int8_t)(sc[is % 16] * 4 - 128);
            blk[192 + is] = (uint8_t)s8;
            want[i] = d * s8 * (q6 - 32);
            break;
        }
        }
    }
    /* the block's d (and dmin / m) fields */
    switch (t) {
    case CS_TYPE_Q4_0: case CS_TYPE_Q5_0: case CS_TYPE_Q8_0: tu_put_f16(blk, d); break;
    case CS_TYPE_Q4_1: case CS_TYPE_Q5_1: tu_put_f16(blk, d); tu_put_f16(blk + 2, m); break;
    case CS_TYPE_Q2_K: tu_put_f16(blk + 80, d); tu_put_f16(blk + 82, m); break;
    case CS_TYPE_Q3_K: tu_put_f16(blk + 108, d); break;
    case CS_TYPE_Q4_K: case CS_TYPE_Q5_K: tu_put_f16(blk, d); tu_put_f16(blk + 2, m); break;
    case CS_TYPE_Q6_K: tu_put_f16(blk + 208, d); break;
    }
}

static void test_dequant_block_layouts(void **state)
{
    (void)state;
    static const uint32_t ts[] = {CS_TYPE_Q4_0, CS_TYPE_Q4_1, CS_TYPE_Q5_0, CS_TYPE_Q5_1, CS_TYPE_Q8_0,
                                  CS_TYPE_Q2_K, CS_TYPE_Q3_K, CS_TYPE_Q4_K, CS_TYPE_Q5_K, CS_TYPE_Q6_K};
    struct tu_rng r;
    tu_rng_seed(&r, 7);
    uint8_t blk[3 * 256];
    float want[3 * 256], got[3 * 256];
    for (size_t k = 0; k < CS_ARRAY_LEN(ts); k++) {
        const struct cs_type_info *ti = cs_type_get(ts[k]);
        for (int rep = 0; rep < 20; rep++) {
            /* three consecutive blocks in one row */
            for (int b = 0; b < 3; b++)
                encode_random_block(ts[k], &r, blk + b * ti->block_bytes, want + b * ti->block_elems);
            assert_int_equal(cs_dequantize_row(ts[k], blk, got, 3 * ti->block_elems), 0);
            for (uint32_t i = 0; i < 3 * ti->block_elems; i++)
                if (fabsf(got[i] - want[i]) > 1e-5f * (1 + fabsf(want[i])))
                    fail_msg("%s element %u: got %g want %g", ti->name, i, got[i], want[i]);
        }
    }
    assert_int_equal(cs_dequantize_row(CS_TYPE_Q8_0, blk, got, 31), -1);
    assert_int_equal(cs_dequantize_row(CS_TYPE_Q8_K, blk, got, 256), -1);
    assert_int_equal(cs_dequantize_row(4, blk, got, 32), -1);
}

/* ---- quantize / dequantize round trips ---- */

static double rel_rms(const float *a, const float *ref, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        s += (double)ref[i] * ref[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

static void test_quant_known_answers(void **state)
{
    (void)state;
    float x[32];
    uint8_t b[34];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    /* Q4_0: max magnitude -16 -> d = 2, q = min(15, (int)(x/2 + 8.5)) */
    assert_int_equal(cs_quantize_row(CS_TYPE_Q4_0, x, b, 32), 0);
    assert_int_equal(b[0] | b[1] << 8, cs_f32_to_f16(2.0f));
    for (int j = 0; j < 16; j++) {
        int q0 = (int)(x[j] / 2 + 8.5f), q1 = (int)(x[j + 16] / 2 + 8.5f);
        q1 = q1 > 15 ? 15 : q1;
        assert_int_equal(b[2 + j], q0 | q1 << 4);
    }
    /* Q8_0: d = 16/127, q = round(x * 127/16) */
    assert_int_equal(cs_quantize_row(CS_TYPE_Q8_0, x, b, 32), 0);
    assert_int_equal(b[0] | b[1] << 8, cs_f32_to_f16(16.0f / 127));
    assert_int_equal((int8_t)b[2], -127);
    assert_int_equal((int8_t)b[2 + 16], 0);
    assert_int_equal((int8_t)b[2 + 17], 8);  /* 7.9375 */
    assert_int_equal((int8_t)b[2 + 18], 16); /* 15.875 */
    /* all zeros: d = 0 and every quant 0 (Q4_0 stores 8 = zero point) */
    memset(x, 0, sizeof x);
    assert_int_equal(cs_quantize_row(CS_TYPE_Q4_0, x, b, 32), 0);
    for (int j = 0; j < 16; j++)
        assert_int_equal(b[2 + j], 0x88);
    assert_int_equal(cs_quantize_row(CS_TYPE_Q4_1, x, b, 32), -1);
    assert_int_equal(cs_quantize_row(CS_TYPE_Q2_K, x, b, 256), -1);
    assert_int_equal(cs_quantize_row(CS_TYPE_Q8_0, x, b, 33), -1);
}

static void test_quant_roundtrip(void **state)
{
    (void)state;
    /* measured rel. RMS on N(0,1) with 1% outliers (x8), seed 3: f16 2.1e-4, bf16 1.8e-3,
     * q8_0 8.6e-3, q4_0 0.14, q4_K 0.096, q5_K 0.048, q6_K 0.027 (clspec's K-quantizers
     * against the tested dequantizers: a wrong layout would scramble values); bounds with margin */
    static const struct { uint32_t t; double bound; } cases[] = {
        {CS_TYPE_F32, 0.0}, {CS_TYPE_F16, 4e-4}, {CS_TYPE_BF16, 3e-3}, {CS_TYPE_Q8_0, 1.2e-2}, {CS_TYPE_Q4_0, 0.2},
        {CS_TYPE_Q4_K, 0.13}, {CS_TYPE_Q5_K, 0.065}, {CS_TYPE_Q6_K, 0.037},
    };
    enum { N = 1 << 14 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    uint8_t *q = malloc(N * 4);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    struct tu_rng r;
    tu_rng_seed(&r, 3);
    for (int i = 0; i < N; i++)
        x[i] = tu_rng_normal(&r) * (tu_rng_uniform(&r) < 0.01f ? 8.0f : 1.0f);
    for (size_t k = 0; k < CS_ARRAY_LEN(cases); k++) {
        uint64_t nb;
        assert_true(cs_row_bytes(cases[k].t, N, &nb));
        assert_int_equal(cs_quantize_row(cases[k].t, x, q, N), 0);
        assert_int_equal(cs_dequantize_row(cases[k].t, q, y, N), 0);
        double e = rel_rms(y, x, N);
        print_message("# round trip %-5s rel RMS %.3g (bound %.3g)\n", cs_type_name(cases[k].t), e,
                      cases[k].bound);
        assert_true(e <= cases[k].bound);
        if (cases[k].t == CS_TYPE_Q8_0) /* reference rounding: every error within half a step (+ f16 d) */
            for (int b = 0; b < N / 32; b++) {
                float d = cs_f16_to_f32((uint16_t)(q[34 * b] | q[34 * b + 1] << 8));
                for (int j = 0; j < 32; j++)
                    assert_true(fabsf(y[32 * b + j] - x[32 * b + j]) <= 0.5f * d + 127 * d * 1e-3f);
            }
    }
    free(x);
    free(y);
    free(q);
}

/* ---- synthetic models against their F16 twin ---- */

static float *dequant_tensor(const struct cs_gguf_tensor *t)
{
    float *out = malloc(t->n_elems * sizeof *out);
    assert_non_null(out);
    uint64_t rb;
    assert_true(cs_row_bytes(t->type, t->ne[0], &rb));
    uint64_t rows = t->n_elems / t->ne[0];
    for (uint64_t i = 0; i < rows; i++)
        assert_int_equal(cs_dequantize_row(t->type, (const uint8_t *)t->data + i * rb, out + i * t->ne[0],
                                           (int64_t)t->ne[0]),
                         0);
    return out;
}

static void test_synthetic_models(void **state)
{
    (void)state;
    /* bound on RMS(x - f16) / RMS(f16) per stored type; measured worst case over all
     * tensors of the six files: f32 0, bf16 1.7e-3, q8_0 5.4e-3, q6_K 1.8e-2,
     * q5_K 3.6e-2, q4_K 7.2e-2, q4_0 8.7e-2 (as expected for 8/6/5/4-bit steps on
     * Gaussian weights; a wrong bit layout gives errors of order 1) */
    static const struct { uint32_t t; double bound; } bounds[] = {
        {CS_TYPE_F32, 0.0},   {CS_TYPE_BF16, 3e-3}, {CS_TYPE_Q8_0, 8e-3}, {CS_TYPE_Q6_K, 2.5e-2},
        {CS_TYPE_Q5_K, 5e-2}, {CS_TYPE_Q4_K, 0.1}, {CS_TYPE_Q4_0, 0.12},
    };
    static const char *files[] = {"BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"};
    double worst[CS_TYPE_COUNT] = {0};
    int seen[CS_TYPE_COUNT] = {0};
    char err[CLSPEC_ERRLEN], rel[96];
    struct cs_gguf *ref;
    char *path = tu_shared_path("models/synthetic/synth-256-F16.gguf");
    assert_int_equal(cs_gguf_open(path, &ref, err, sizeof err), CLSPEC_OK);
    free(path);
    for (size_t f = 0; f < CS_ARRAY_LEN(files); f++) {
        snprintf(rel, sizeof rel, "models/synthetic/synth-256-%s.gguf", files[f]);
        path = tu_shared_path(rel);
        struct cs_gguf *g;
        if (cs_gguf_open(path, &g, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        free(path);
        assert_true(g->n_tensors == ref->n_tensors);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct cs_gguf_tensor *t = &g->tensors[i], *rt = cs_gguf_find_tensor(ref, t->name);
            assert_non_null(rt);
            assert_memory_equal(t->ne, rt->ne, sizeof t->ne);
            float *a = dequant_tensor(t), *b = dequant_tensor(rt);
            double e = rel_rms(a, b, t->n_elems);
            free(a);
            free(b);
            size_t k = 0;
            while (k < CS_ARRAY_LEN(bounds) && bounds[k].t != t->type)
                k++;
            if (k == CS_ARRAY_LEN(bounds))
                fail_msg("%s: tensor %s: unexpected type %s", files[f], t->name, cs_type_name(t->type));
            if (e > bounds[k].bound)
                fail_msg("%s: tensor %s (%s): rel RMS %.4g > %.4g", files[f], t->name, cs_type_name(t->type), e,
                         bounds[k].bound);
            seen[t->type]++;
            if (e > worst[t->type])
                worst[t->type] = e;
        }
        cs_gguf_close(g);
    }
    cs_gguf_close(ref);
    for (size_t k = 0; k < CS_ARRAY_LEN(bounds); k++) {
        print_message("# %-5s %3d tensors, worst rel RMS %.3g (bound %.3g)\n", cs_type_name(bounds[k].t),
                      seen[bounds[k].t], worst[bounds[k].t], bounds[k].bound);
        assert_true(seen[bounds[k].t] > 0); /* every type of the table exercised */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_row_bytes),
        cmocka_unit_test(test_type_from_name),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_dequant_block_layouts),
        cmocka_unit_test(test_quant_known_answers),
        cmocka_unit_test(test_quant_roundtrip),
        cmocka_unit_test(test_synthetic_models),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
