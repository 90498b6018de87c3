/* quant.c: the ggml type table, f16/bf16 conversions, and the plain-C
 * dequantizers/quantizers declared in quant.h. Block layouts follow ggml
 * exactly (all multi-byte fields little-endian; QK_K = 256). */
#include "config.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "gguf/quant.h"

#define QK 32   /* elements per block of the legacy types */
#define QK_K 256 /* elements per super-block of the K-quants */

/* Indexed by type id. Sizes are ggml's block sizes; entries without a name are
 * ids that ggml retired or never used. */
static const struct cs_type_info types[CS_TYPE_COUNT] = {
    [CS_TYPE_F32] = {"f32", 1, 4, true, true},
    [CS_TYPE_F16] = {"f16", 1, 2, true, true},
    [CS_TYPE_Q4_0] = {"q4_0", QK, 18, true, true},
    [CS_TYPE_Q4_1] = {"q4_1", QK, 20, true, false},
    [CS_TYPE_Q5_0] = {"q5_0", QK, 22, true, false},
    [CS_TYPE_Q5_1] = {"q5_1", QK, 24, true, false},
    [CS_TYPE_Q8_0] = {"q8_0", QK, 34, true, true},
    [CS_TYPE_Q8_1] = {"q8_1", QK, 36, false, false},
    [CS_TYPE_Q2_K] = {"q2_K", QK_K, 84, true, false},
    [CS_TYPE_Q3_K] = {"q3_K", QK_K, 110, true, false},
    [CS_TYPE_Q4_K] = {"q4_K", QK_K, 144, true, true},
    [CS_TYPE_Q5_K] = {"q5_K", QK_K, 176, true, true},
    [CS_TYPE_Q6_K] = {"q6_K", QK_K, 210, true, true},
    [CS_TYPE_Q8_K] = {"q8_K", QK_K, 292, false, false},
    [16] = {"iq2_xxs", QK_K, 66, false, false},
    [17] = {"iq2_xs", QK_K, 74, false, false},
    [18] = {"iq3_xxs", QK_K, 98, false, false},
    [19] = {"iq1_s", QK_K, 50, false, false},
    [20] = {"iq4_nl", QK, 18, false, false},
    [21] = {"iq3_s", QK_K, 110, false, false},
    [22] = {"iq2_s", QK_K, 82, false, false},
    [23] = {"iq4_xs", QK_K, 136, false, false},
    [24] = {"i8", 1, 1, false, false},
    [25] = {"i16", 1, 2, false, false},
    [26] = {"i32", 1, 4, false, false},
    [27] = {"i64", 1, 8, false, false},
    [28] = {"f64", 1, 8, false, false},
    [29] = {"iq1_m", QK_K, 56, false, false},
    [CS_TYPE_BF16] = {"bf16", 1, 2, true, true},
    [34] = {"tq1_0", QK_K, 54, false, false},
    [35] = {"tq2_0", QK_K, 66, false, false},
    [39] = {"mxfp4", QK, 17, false, false},
};

const struct cs_type_info *cs_type_get(uint32_t type)
{
    if (type >= CS_TYPE_COUNT || !types[type].name)
        return NULL;
    return &types[type];
}

const char *cs_type_name(uint32_t type)
{
    const struct cs_type_info *t = cs_type_get(type);
    return t ? t->name : "unknown";
}

int cs_type_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < CS_TYPE_COUNT; i++)
        if (types[i].name && !strcasecmp(types[i].name, name))
            return i;
    return -1;
}

bool cs_row_bytes(uint32_t type, uint64_t n, uint64_t *out)
{
    const struct cs_type_info *t = cs_type_get(type);
    if (!t || n % t->block_elems)
        return false;
    uint64_t blocks = n / t->block_elems;
    if (blocks > UINT64_MAX / t->block_bytes)
        return false;
    *out = blocks * t->block_bytes;
    return true;
}

/* ---- f16 / bf16 ---- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float cs_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* inf / NaN (payload kept) */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero / subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t cs_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) { /* inf / NaN */
        if (x == 0x7f800000u)
            return sign | 0x7c00;
        uint16_t man = (uint16_t)((x >> 13) & 0x3ff);
        return sign | 0x7c00 | (man ? man : 0x200);
    }
    if (x >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return sign | 0x7c00;
    if (x < 0x38800000u) { /* below 2^-14: a subnormal half (or zero) */
        if (x <= 0x33000000u) /* <= 2^-25 rounds (ties to even) to zero */
            return sign;
        uint32_t e = x >> 23, m = (x & 0x7fffff) | 0x800000;
        unsigned shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return sign | (uint16_t)r;
    }
    uint32_t v = x - 0x38000000u; /* rebias the exponent from 127 to 15 */
    uint32_t h = v >> 13, rem = v & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* a carry into the exponent is correct rounding */
    return sign | (uint16_t)h;
}

float cs_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t cs_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) { /* NaN: keep sign and payload, stay a NaN */
        uint16_t hi = (uint16_t)(x >> 16);
        return (hi & 0x7f) ? hi : (uint16_t)(hi | 0x40);
    }
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* ---- dequantization ---- */

static float rd_f16(const uint8_t *p)
{
    return cs_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static void wr_f16(uint8_t *p, float f)
{
    uint16_t h = cs_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* Q4_0: d (f16), qs[16]; x = (q - 8) * d, low nibbles first half. */
static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = ((qs[j] & 0xf) - 8) * d;
        y[j + QK / 2] = ((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: d, m (f16), qs[16]; x = q * d + m. */
static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (qs[j] & 0xf) * d + m;
        y[j + QK / 2] = (qs[j] >> 4) * d + m;
    }
}

/* Q5_0: d (f16), qh (u32, bit j = 5th bit of element j), qs[16]; x = (q - 16) * d. */
static void deq_q5_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((qs[j] & 0xf) | h0) - 16) * d;
        y[j + QK / 2] = (((qs[j] >> 4) | h1) - 16) * d;
    }
}

/* Q5_1: d, m (f16), qh (u32), qs[16]; x = q * d + m. */
static void deq_q5_1(const uint8_t *b, float *y)
{
    float d = rd_f16(b), m = rd_f16(b + 2);
    uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((qs[j] & 0xf) | h0) * d + m;
        y[j + QK / 2] = ((qs[j] >> 4) | h1) * d + m;
    }
}

/* Q8_0: d (f16), qs[32] (int8); x = q * d. */
static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = rd_f16(b);
    for (int j = 0; j < QK; j++)
        y[j] = (int8_t)b[2 + j] * d;
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d, dmin (f16). */
static void deq_q2_k(const uint8_t *b, float *y)
{
    const uint8_t *sc = b, *q = b + 16;
    float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                uint8_t s = sc[is++];
                float dl = d * (s & 0xf), ml = dmin * (s >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

/* Q3_K: hmask[32], qs[64] (low 2 bits), scales[12] (16 6-bit scales), d (f16). */
static void deq_q3_k(const uint8_t *b, float *y)
{
    const uint8_t *hm = b, *q = b + 32, *s = b + 96;
    float d_all = rd_f16(b + 108);
    /* unpack 16 6-bit scales: low 4 bits from s[0..7], high 2 bits from s[8..11] */
    int8_t scales[16];
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s[i] & 0xf : s[i - 8] >> 4;
        int hi = (s[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        scales[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                float dl = d_all * scales[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * ((int)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
            m <<= 1;
        }
        q += 32;
    }
}

/* The 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block. */
void cs_k4_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Scales and mins of the sub-block pair (is, is + 1) of a Q4_K/Q5_K super-block. */
static void k4_pair(const uint8_t *sc, int is, float d, float dmin, float dm[4])
{
    uint8_t s, m;
    cs_k4_scale_min(is, sc, &s, &m);
    dm[0] = d * s;
    dm[1] = dmin * m;
    cs_k4_scale_min(is + 1, sc, &s, &m);
    dm[2] = d * s;
    dm[3] = dmin * m;
}

/* Q4_K: d, dmin (f16), scales[12], qs[128]; 8 sub-blocks of 32.
 * Q5_K: the same plus qh[32] (the fifth bit) before qs. qh NULL: Q4_K. */
static void deq_k4(const uint8_t *b, const uint8_t *qh, const uint8_t *q, float *y)
{
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *sc = b + 4;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2) {
        float dm[4];
        k4_pair(sc, is, d, dmin, dm);
        for (int l = 0; l < 32; l++)
            *y++ = dm[0] * ((q[l] & 0xf) + (qh && (qh[l] & u1) ? 16 : 0)) - dm[1];
        for (int l = 0; l < 32; l++)
            *y++ = dm[2] * ((q[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - dm[3];
        q += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
}

static void deq_q4_k(const uint8_t *b, float *y)
{
    deq_k4(b, NULL, b + 16, y);
}

static void deq_q5_k(const uint8_t *b, float *y)
{
    deq_k4(b, b + 16, b + 48, y);
}

/* Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d (f16). */
static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

int cs_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const struct cs_type_info *t = cs_type_get(type);
    if (!t || !t->dequant || n < 0 || n % t->block_elems)
        return -1;
    const uint8_t *p = src;
    int64_t nb = n / t->block_elems;
    void (*blk)(const uint8_t *, float *) = NULL;
    switch (type) {
    case CS_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case CS_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = rd_f16(p + 2 * i);
        return 0;
    case CS_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = cs_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return 0;
    case CS_TYPE_Q4_0: blk = deq_q4_0; break;
    case CS_TYPE_Q4_1: blk = deq_q4_1; break;
    case CS_TYPE_Q5_0: blk = deq_q5_0; break;
    case CS_TYPE_Q5_1: blk = deq_q5_1; break;
    case CS_TYPE_Q8_0: blk = deq_q8_0; break;
    case CS_TYPE_Q2_K: blk = deq_q2_k; break;
    case CS_TYPE_Q3_K: blk = deq_q3_k; break;
    case CS_TYPE_Q4_K: blk = deq_q4_k; break;
    case CS_TYPE_Q5_K: blk = deq_q5_k; break;
    case CS_TYPE_Q6_K: blk = deq_q6_k; break;
    default: return -1;
    }
    for (int64_t i = 0; i < nb; i++)
        blk(p + i * t->block_bytes, dst + i * t->block_elems);
    return 0;
}

/* ---- quantization (ggml's reference rounding) ---- */

/* Q8_0: d = amax / 127, q = round(x / d). */
static void quant_q8_0(const float *x, uint8_t *b)
{
    float amax = 0;
    for (int j = 0; j < QK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    for (int j = 0; j < QK; j++)
        b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* Q4_0: d = max / -8 where max is the value of largest magnitude,
 * q = min(15, (int)(x / d + 8.5)). */
static void quant_q4_0(const float *x, uint8_t *b)
{
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    wr_f16(b, d);
    for (int j = 0; j < QK / 2; j++) {
        int8_t q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + QK / 2] * id + 8.5f);
        q0 = q0 < 15 ? q0 : 15;
        q1 = q1 < 15 ? q1 : 15;
        b[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* ---- K-quant quantizers (written from the published block layouts; a
 * min-max fit per sub-block, then the sub-block scales quantized against a
 * super-block scale, then every value rounded against the final, decoded
 * scales so that rounding of the scales is accounted for) ---- */

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Q4_K/Q5_K (nmax 15 or 31): 8 sub-blocks of 32, x ~ d sc_j q - dmin m_j with
 * sc_j, m_j 6-bit, q in [0, nmax]. Writes d, dmin, scales[12] to b and the
 * integer levels (0..nmax) of the 256 values to L. */
static void quant_k4_levels(const float *x, int nmax, uint8_t *b, uint8_t *L)
{
    float scale[8], min[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float lo = x[32 * j], hi = x[32 * j];
        for (int l = 1; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        lo = fminf(lo, 0.0f); /* the min is subtracted: a non-negative m */
        scale[j] = (hi - lo) / nmax;
        min[j] = -lo;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, min[j]);
    }
    const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
    wr_f16(b, d);
    wr_f16(b + 2, dmin);
    const float dq = rd_f16(b), dmq = rd_f16(b + 2); /* as the decoder reads them */
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(dq > 0 ? clampi((int)lroundf(scale[j] / dq), 0, 63) : 0);
        mn[j] = (uint8_t)(dmq > 0 ? clampi((int)lroundf(min[j] / dmq), 0, 63) : 0);
    }
    uint8_t *s = b + 4;
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int j = 0; j < 8; j++) {
        const float ds = dq * sc[j], dm = dmq * mn[j];
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)(ds > 0 ? clampi((int)lroundf((x[32 * j + l] + dm) / ds), 0, nmax) : 0);
    }
}

/* Q4_K (144 bytes): d, dmin, scales[12], qs[128]: byte 32 p + l holds
 * sub-block 2p (low nibble) and 2p + 1 (high nibble), element l. */
static void quant_q4_k(const float *x, uint8_t *b)
{
    uint8_t L[QK_K];
    quant_k4_levels(x, 15, b, L);
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++)
            b[16 + 32 * p + l] = (uint8_t)(L[64 * p + l] | (L[64 * p + 32 + l] << 4));
}

/* Q5_K (176 bytes): as Q4_K with qh[32] before qs: bit j of qh[l] is the
 * fifth bit of element l of sub-block j. */
static void quant_q5_k(const float *x, uint8_t *b)
{
    uint8_t L[QK_K];
    quant_k4_levels(x, 31, b, L);
    memset(b + 16, 0, 32);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++)
            b[16 + l] |= (uint8_t)(((L[32 * j + l] >> 4) & 1) << j);
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++)
            b[48 + 32 * p + l] = (uint8_t)((L[64 * p + l] & 15) | ((L[64 * p + 32 + l] & 15) << 4));
}

/* Q6_K (210 bytes): ql[128], qh[64], int8 scales[16], d. 16 sub-blocks of
 * 16: x ~ d sc_i (q - 32), q in [0, 63]; sc_i = round(s_i / d) with s_i =
 * (value of largest magnitude) / -32 and d = max |s_i| / 127. Element e =
 * 128 h + 32 g + l: ql[64 h + 32 (g & 1) + l] nibble g >> 1, qh[32 h + l]
 * bits 2g..2g+1, scale e / 16. */
static void quant_q6_k(const float *x, uint8_t *b)
{
    float s[16], amax_s = 0;
    for (int i = 0; i < 16; i++) {
        float amax = 0, max = 0;
        for (int l = 0; l < 16; l++)
            if (fabsf(x[16 * i + l]) > amax) {
                amax = fabsf(x[16 * i + l]);
                max = x[16 * i + l];
            }
        s[i] = max / -32.0f;
        amax_s = fmaxf(amax_s, fabsf(s[i]));
    }
    wr_f16(b + 208, amax_s / 127.0f);
    const float d = rd_f16(b + 208);
    int8_t *sc = (int8_t *)(b + 192);
    for (int i = 0; i < 16; i++)
        sc[i] = (int8_t)(d > 0 ? clampi((int)lroundf(s[i] / d), -128, 127) : 0);
    memset(b, 0, 192);
    for (int e = 0; e < QK_K; e++) {
        const float ds = d * sc[e / 16];
        const int q = ds != 0 ? clampi((int)lroundf(x[e] / ds), -32, 31) + 32 : 32;
        const int h = e / 128, g = (e % 128) / 32, l = e % 32;
        b[64 * h + 32 * (g & 1) + l] |= (uint8_t)((q & 15) << (4 * (g >> 1)));
        b[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
    }
}

int cs_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    const struct cs_type_info *t = cs_type_get(type);
    if (!t || !t->quant || n < 0 || n % t->block_elems)
        return -1;
    uint8_t *p = dst;
    switch (type) {
    case CS_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case CS_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            wr_f16(p + 2 * i, src[i]);
        return 0;
    case CS_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = cs_f32_to_bf16(src[i]);
            p[2 * i] = (uint8_t)h;
            p[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case CS_TYPE_Q8_0:
        for (int64_t i = 0; i < n / QK; i++)
            quant_q8_0(src + i * QK, p + i * 34);
        return 0;
    case CS_TYPE_Q4_0:
        for (int64_t i = 0; i < n / QK; i++)
            quant_q4_0(src + i * QK, p + i * 18);
        return 0;
    case CS_TYPE_Q4_K:
    case CS_TYPE_Q5_K:
    case CS_TYPE_Q6_K: {
        void (*blk)(const float *, uint8_t *) =
            type == CS_TYPE_Q4_K ? quant_q4_k : type == CS_TYPE_Q5_K ? quant_q5_k : quant_q6_k;
        for (int64_t i = 0; i < n / QK_K; i++)
            blk(src + i * QK_K, p + i * t->block_bytes);
        return 0;
    }
    }
    return -1;
}

/* ---- KV cache rows: padded to whole blocks ---- */

bool cs_kv_row_bytes(uint32_t type, uint64_t n, uint64_t *out)
{
    const struct cs_type_info *t = cs_type_get(type);
    if (!t || n > UINT64_MAX - t->block_elems)
        return false;
    return cs_row_bytes(type, (n + t->block_elems - 1) / t->block_elems * t->block_elems, out);
}

/* What the KV row conversions share: checks that type converts in the
 * wanted direction (quant: to the type, else from it) and n, and splits the
 * row into whole blocks (*full elements, *fb bytes) and a partial tail.
 * NULL when the type or n cannot be converted. */
static const struct cs_type_info *kv_row_split(uint32_t type, bool quant, int64_t n, int64_t *full, uint64_t *fb)
{
    const struct cs_type_info *t = cs_type_get(type);
    if (!t || !(quant ? t->quant : t->dequant) || n < 0 || t->block_elems > QK_K)
        return NULL;
    *full = n / t->block_elems * t->block_elems;
    return cs_row_bytes(type, (uint64_t)*full, fb) ? t : NULL;
}

int cs_kv_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    int64_t full;
    uint64_t fb;
    const struct cs_type_info *t = kv_row_split(type, true, n, &full, &fb);
    if (!t || cs_quantize_row(type, src, dst, full) != 0)
        return -1;
    if (full == n)
        return 0;
    float tail[QK_K] = {0};
    memcpy(tail, src + full, (size_t)(n - full) * sizeof(float));
    return cs_quantize_row(type, tail, (uint8_t *)dst + fb, t->block_elems);
}

int cs_kv_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    int64_t full;
    uint64_t fb;
    const struct cs_type_info *t = kv_row_split(type, false, n, &full, &fb);
    if (!t || cs_dequantize_row(type, src, dst, full) != 0)
        return -1;
    if (full == n)
        return 0;
    float tail[QK_K];
    if (cs_dequantize_row(type, (const uint8_t *)src + fb, tail, t->block_elems) != 0)
        return -1;
    memcpy(dst + full, tail, (size_t)(n - full) * sizeof(float));
    return 0;
}
