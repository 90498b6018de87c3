/* blocks.cl: decoders for every ggml weight block type, shared by all kernels
 * (the host prepends this file after common.cl to every program; it defines no
 * kernels). Weights are byte buffers in the GGUF layout (blocks of 18, 20, 22,
 * 34, 84, 110, 144, 176, 210 bytes: not 4-aligned), so every load is a vloadN
 * of uchar/char (byte-aligned) or vload_half (2-aligned: every half field sits
 * at an even offset of an even-sized block, and rows start at even offsets).
 *
 * cs_dq32_T(row, s, &lo, &hi): elements [32 s, 32 s + 16) -> lo and
 * [32 s + 16, 32 s + 32) -> hi of a row of type T (K-quants: block s / 8,
 * sub-block s % 8). cs_dq1_T(row, k): element k, only for the float types
 * (f32, f16, bf16), whose rows need not be a multiple of 32; defined as 0 for
 * the block types, whose rows always are. */

inline float cs_hsum16(float16 v)
{
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    return (b.x + b.y) + (b.z + b.w);
}

inline float cs_dot16(float16 a, float16 b)
{
    return cs_hsum16(a * b);
}

/* IEEE half bits -> float, exact for every value (zero, subnormal, normal,
 * inf, NaN), branch-free: cheaper on CPUs than a scalar vload_half call. */
inline float cs_h2f_bits(uint h)
{
    const uint a = (h & 0x7fffu) << 13;
    float f = as_float(a) * 0x1p112f; /* rebias the exponent; subnormals normalise */
    f = (h & 0x7c00u) == 0x7c00u ? as_float(a | 0x7f800000u) : f; /* inf, NaN */
    return as_float(as_uint(f) | ((h & 0x8000u) << 16));
}

inline float cs_ldh(__global const uchar *p) /* half at any address */
{
    return cs_h2f_bits((uint)p[0] | ((uint)p[1] << 8));
}

inline uint cs_ldu32(__global const uchar *p) /* any address */
{
    return as_uint(vload4(0, p));
}

/* 16 bytes at p + 16 i widened to uint lanes: shifts and masks then work on
 * 32-bit lanes (CPUs have no byte-lane shifts; LLVM may scalarize those) */
inline uint16 cs_ldq16(__global const uchar *p, uint i)
{
    return convert_uint16(vload16(i, p));
}

/* 16 bits of a packed mask as 0/1 floats: bit (first + i) of m -> lane i */
inline float16 cs_bits16(uint m, uint first)
{
    const uint16 sh = (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) + first;
    return convert_float16(((uint16)m >> sh) & 1u);
}

/* ---- float types ---- */

inline void cs_dq32_f32(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const float *p = (__global const float *)row;
    *lo = vload16(2 * s, p);
    *hi = vload16(2 * s + 1, p);
}
inline float cs_dq1_f32(__global const uchar *row, uint k)
{
    return ((__global const float *)row)[k];
}

inline void cs_dq32_f16(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const half *p = (__global const half *)row;
    *lo = vload_half16(2 * s, p);
    *hi = vload_half16(2 * s + 1, p);
}
inline float cs_dq1_f16(__global const uchar *row, uint k)
{
    return vload_half(k, (__global const half *)row);
}

inline void cs_dq32_bf16(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const ushort *p = (__global const ushort *)row;
    *lo = as_float16(convert_uint16(vload16(2 * s, p)) << 16);
    *hi = as_float16(convert_uint16(vload16(2 * s + 1, p)) << 16);
}
inline float cs_dq1_bf16(__global const uchar *row, uint k)
{
    return as_float(((uint)((__global const ushort *)row)[k]) << 16);
}

/* ---- 32-element blocks ---- */

/* q8_0 (34 bytes): half d; char qs[32]. x = d * q */
inline void cs_dq32_q8_0(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)s * 34;
    const float d = cs_ldh(b);
    __global const char *q = (__global const char *)(b + 2);
    *lo = d * convert_float16(vload16(0, q));
    *hi = d * convert_float16(vload16(1, q));
}

/* q8_0 repacked on upload (CS_WLAYOUT_Q8_0_F32D, 36 bytes): float d; char
 * qs[32]. 4-aligned, and the scale needs no half decode. */
inline void cs_dq32_q8_0f(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)s * 36;
    const float d = *(__global const float *)b;
    __global const char *q = (__global const char *)(b + 4);
    *lo = d * convert_float16(vload16(0, q));
    *hi = d * convert_float16(vload16(1, q));
}

/* q4_0 (18 bytes): half d; uchar qs[16]. x[j] = d * ((qs[j] & 15) - 8),
 * x[j + 16] = d * ((qs[j] >> 4) - 8) */
inline void cs_dq32_q4_0(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)s * 18;
    const float d = cs_ldh(b);
    const uchar16 q = vload16(0, b + 2);
    *lo = d * (convert_float16(q & (uchar)15) - 8.0f);
    *hi = d * (convert_float16(q >> (uchar)4) - 8.0f);
}

/* q4_1 (20 bytes): half d, m; uchar qs[16]. x = d * q + m */
inline void cs_dq32_q4_1(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)s * 20;
    const float d = cs_ldh(b), m = cs_ldh(b + 2);
    const uchar16 q = vload16(0, b + 4);
    *lo = fma(d, convert_float16(q & (uchar)15), m);
    *hi = fma(d, convert_float16(q >> (uchar)4), m);
}

/* q5_0 (22 bytes): half d; uint qh (bit j = 5th bit of x[j]); uchar qs[16].
 * x = d * ((nibble | hbit << 4) - 16) */
inline void cs_dq32_q5_0(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)s * 22;
    const float d = cs_ldh(b);
    const uint qh = cs_ldu32(b + 2);
    const uchar16 q = vload16(0, b + 6);
    *lo = d * (mad(cs_bits16(qh, 0), 16.0f, convert_float16(q & (uchar)15)) - 16.0f);
    *hi = d * (mad(cs_bits16(qh, 16), 16.0f, convert_float16(q >> (uchar)4)) - 16.0f);
}

/* q5_1 (24 bytes): half d, m; uint qh; uchar qs[16]. x = d * q5 + m */
inline void cs_dq32_q5_1(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)s * 24;
    const float d = cs_ldh(b), m = cs_ldh(b + 2);
    const uint qh = cs_ldu32(b + 4);
    const uchar16 q = vload16(0, b + 8);
    *lo = fma(d, mad(cs_bits16(qh, 0), 16.0f, convert_float16(q & (uchar)15)), m);
    *hi = fma(d, mad(cs_bits16(qh, 16), 16.0f, convert_float16(q >> (uchar)4)), m);
}

/* ---- K-quants: 256-element super-blocks of 8 sub-blocks of 32 ---- */

/* q2_K (84 bytes): uchar scales[16] (low nibble scale, high nibble min, one
 * per 16 elements); uchar qs[64] (2-bit); half d; half dmin. Sub-block u:
 * qs[32 (u / 4) + l] >> 2 (u % 4), scales[2u] (l < 16) / scales[2u + 1]. */
inline void cs_dq32_q2_K(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 84;
    const uint u = s & 7;
    const float d = cs_ldh(b + 80), dmin = cs_ldh(b + 82);
    const uchar sc0 = b[2 * u], sc1 = b[2 * u + 1];
    __global const uchar *q = b + 16 + 32 * (u >> 2);
    const uint sh = 2 * (u & 3);
    const uint16 q0 = (cs_ldq16(q, 0) >> sh) & 3u, q1 = (cs_ldq16(q, 1) >> sh) & 3u;
    *lo = fma(d * (sc0 & 15), convert_float16(q0), -(dmin * (sc0 >> 4)));
    *hi = fma(d * (sc1 & 15), convert_float16(q1), -(dmin * (sc1 >> 4)));
}

/* q3_K scale i (0..15) of the 12 packed bytes: 6 bits, minus 32 */
inline float cs_q3k_scale(__global const uchar *sc, uint i)
{
    const uint low = (sc[i & 7] >> (4 * (i >> 3))) & 15u;
    const uint high = (sc[8 + (i & 3)] >> (2 * (i >> 2))) & 3u;
    return (float)((int)(low | (high << 4)) - 32);
}

/* q3_K (110 bytes): uchar hmask[32]; uchar qs[64] (low 2 bits); uchar
 * scales[12]; half d. Sub-block u: 2 bits qs[32 (u / 4) + l] >> 2 (u % 4),
 * minus 4 unless bit u of hmask[l] is set. */
inline void cs_dq32_q3_K(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 110;
    const uint u = s & 7;
    const float d = cs_ldh(b + 108);
    const float d0 = d * cs_q3k_scale(b + 96, 2 * u), d1 = d * cs_q3k_scale(b + 96, 2 * u + 1);
    __global const uchar *q = b + 32 + 32 * (u >> 2);
    const uint sh = 2 * (u & 3), hb = u;
    const uint16 q0 = (cs_ldq16(q, 0) >> sh) & 3u, q1 = (cs_ldq16(q, 1) >> sh) & 3u;
    const uchar hm = (uchar)(1u << hb); /* mask test: no shift of byte lanes */
    const uint16 h0 = convert_uint16(as_uchar16((vload16(0, b) & hm) != (uchar)0) & (uchar)1);
    const uint16 h1 = convert_uint16(as_uchar16((vload16(1, b) & hm) != (uchar)0) & (uchar)1);
    *lo = d0 * (convert_float16(q0) + 4.0f * convert_float16(h0) - 4.0f);
    *hi = d1 * (convert_float16(q1) + 4.0f * convert_float16(h1) - 4.0f);
}

/* q4_K / q5_K 6-bit scale and min j (0..7) of the 12 packed bytes
 * (branch-free: j < 4 takes the low 6 bits of bytes j and j + 4; j >= 4
 * combines nibbles of byte j + 4 with the top 2 bits of bytes j - 4 and j) */
inline float2 cs_k4_scale_min(__global const uchar *sc, uint j)
{
    const uint j4 = j & 3u;
    const uint a = sc[j4], b = sc[j4 + 4], c = sc[j4 + 8];
    const uint lo = j < 4 ? 0xffffffffu : 0u;
    const uint d = (lo & (a & 63u)) | (~lo & ((c & 15u) | ((a >> 6) << 4)));
    const uint m = (lo & (b & 63u)) | (~lo & ((c >> 4) | ((b >> 6) << 4)));
    return (float2)((float)d, (float)m);
}

/* q4_K (144 bytes): half d, dmin; uchar scales[12]; uchar qs[128]. Sub-block
 * u: nibble (u % 2) of qs[32 (u / 2) + l]; x = d sc_u q - dmin m_u. */
inline void cs_dq32_q4_K(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 144;
    const uint u = s & 7;
    const float2 sm = cs_k4_scale_min(b + 4, u);
    const float d = cs_ldh(b) * sm.x, m = cs_ldh(b + 2) * sm.y;
    __global const uchar *q = b + 16 + 32 * (u >> 1);
    const uint sh = 4 * (u & 1);
    *lo = fma(d, convert_float16((cs_ldq16(q, 0) >> sh) & 15u), -m);
    *hi = fma(d, convert_float16((cs_ldq16(q, 1) >> sh) & 15u), -m);
}

/* q5_K (176 bytes): half d, dmin; uchar scales[12]; uchar qh[32] (bit u =
 * 5th bit of sub-block u); uchar qs[128]. */
inline void cs_dq32_q5_K(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 176;
    const uint u = s & 7;
    const float2 sm = cs_k4_scale_min(b + 4, u);
    const float d = cs_ldh(b) * sm.x, m = cs_ldh(b + 2) * sm.y;
    __global const uchar *q = b + 48 + 32 * (u >> 1);
    const uint sh = 4 * (u & 1), hb = u;
    const uchar hm = (uchar)(1u << hb); /* mask test: no shift of byte lanes */
    const uint16 q0 = ((cs_ldq16(q, 0) >> sh) & 15u) |
                      convert_uint16(as_uchar16((vload16(0, b + 16) & hm) != (uchar)0) & (uchar)16);
    const uint16 q1 = ((cs_ldq16(q, 1) >> sh) & 15u) |
                      convert_uint16(as_uchar16((vload16(1, b + 16) & hm) != (uchar)0) & (uchar)16);
    *lo = fma(d, convert_float16(q0), -m);
    *hi = fma(d, convert_float16(q1), -m);
}

/* q6_K (210 bytes): uchar ql[128] (low 4 bits); uchar qh[64] (high 2 bits);
 * char scales[16]; half d. Sub-block u = 4 h + k: ql[64 h + 32 (k % 2) + l]
 * nibble k / 2, qh[32 h + l] >> 2 k, scales[8 h + 2 k] (l < 16) / [+1]. */
inline void cs_dq32_q6_K(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 210;
    const uint u = s & 7, h = u >> 2, k = u & 3;
    const float d = cs_ldh(b + 208);
    __global const char *sc = (__global const char *)(b + 192 + 8 * h + 2 * k);
    __global const uchar *ql = b + 64 * h + 32 * (k & 1), *qh = b + 128 + 32 * h;
    const uint sl = 4 * (k >> 1), shh = 2 * k;
    const uint16 q0 = ((cs_ldq16(ql, 0) >> sl) & 15u) | (((cs_ldq16(qh, 0) >> shh) & 3u) << 4);
    const uint16 q1 = ((cs_ldq16(ql, 1) >> sl) & 15u) | (((cs_ldq16(qh, 1) >> shh) & 3u) << 4);
    *lo = (d * (float)sc[0]) * (convert_float16(q0) - 32.0f);
    *hi = (d * (float)sc[1]) * (convert_float16(q1) - 32.0f);
}

/* ---- K-quants repacked on upload (src/ops/matmul.c; bitwise the same
 * values as the GGUF decoders above: the same float products, in the same
 * order, of the same integers) ----
 * q4_Kr (152 bytes per 256, CS_WLAYOUT_Q4_K_R): float d, dmin; uchar sc[8],
 *   mn[8] (the 6-bit scales and mins, unpacked); uchar qs[8][16]: byte l of
 *   sub-block u = element l (low nibble) | element l + 16 (high nibble), as
 *   q4_0. x = fma(d sc_u, q, -(dmin mn_u)). */
inline void cs_dq32_q4_Kr(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 152;
    const uint u = s & 7;
    __global const float *f = (__global const float *)b;
    const float d = f[0] * (float)b[8 + u], m = f[1] * (float)b[16 + u];
    const uchar16 q = vload16(0, b + 24 + 16 * u);
    *lo = fma(d, convert_float16(q & (uchar)15), -m);
    *hi = fma(d, convert_float16(q >> (uchar)4), -m);
}

/* q5_Kr (184 bytes per 256, CS_WLAYOUT_Q5_K_R): float d, dmin; uchar sc[8],
 *   mn[8]; per sub-block u of 32: uint qh (bit l: the fifth bit of element
 *   l), uchar qs[16] (as q4_0). x = fma(d sc_u, q, -(dmin mn_u)). */
inline void cs_dq32_q5_Kr(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 184;
    const uint u = s & 7;
    __global const float *f = (__global const float *)b;
    const float d = f[0] * (float)b[8 + u], m = f[1] * (float)b[16 + u];
    __global const uchar *p = b + 24 + 20 * u;
    const uint qh = *(__global const uint *)p;
    const uchar16 q = vload16(0, p + 4);
    *lo = fma(d, mad(cs_bits16(qh, 0), 16.0f, convert_float16(q & (uchar)15)), -m);
    *hi = fma(d, mad(cs_bits16(qh, 16), 16.0f, convert_float16(q >> (uchar)4)), -m);
}

/* q6_Kr (212 bytes per 256, CS_WLAYOUT_Q6_K_R): float d; char sc[16]; then
 *   per sub-block u of 32: uchar ql[16] (element l low nibble, l + 16 high
 *   nibble: the low 4 bits) and uchar qh[8] (byte i: the high 2 bits of
 *   elements i, i + 8, i + 16, i + 24 at bits 0, 2, 4, 6).
 *   x = (d sc) (q - 32), sc[2u] for elements 0..15, sc[2u + 1] for 16..31. */
inline void cs_dq32_q6_Kr(__global const uchar *row, uint s, float16 *lo, float16 *hi)
{
    __global const uchar *b = row + (size_t)(s >> 3) * 212;
    const uint u = s & 7;
    const float d = *(__global const float *)b;
    __global const char *sc = (__global const char *)(b + 4 + 2 * u);
    __global const uchar *p = b + 20 + 24 * u;
    const uchar16 ql = vload16(0, p);
    const uchar8 qh = vload8(0, p + 16);
    const uchar16 h0 = (uchar16)(qh & (uchar)3, (qh >> (uchar)2) & (uchar)3);
    const uchar16 h1 = (uchar16)((qh >> (uchar)4) & (uchar)3, qh >> (uchar)6);
    const uchar16 q0 = (ql & (uchar)15) | (h0 << (uchar)4), q1 = (ql >> (uchar)4) | (h1 << (uchar)4);
    *lo = (d * (float)sc[0]) * (convert_float16(q0) - 32.0f);
    *hi = (d * (float)sc[1]) * (convert_float16(q1) - 32.0f);
}

/* the block types never have a partial 32-element tail */
#define CS_DQ1_NONE(T) \
    inline float cs_dq1_##T(__global const uchar *row, uint k) \
    { \
        (void)row; \
        (void)k; \
        return 0.0f; \
    }
CS_DQ1_NONE(q8_0)
CS_DQ1_NONE(q8_0f)
CS_DQ1_NONE(q4_0)
CS_DQ1_NONE(q4_1)
CS_DQ1_NONE(q5_0)
CS_DQ1_NONE(q5_1)
CS_DQ1_NONE(q2_K)
CS_DQ1_NONE(q3_K)
CS_DQ1_NONE(q4_K)
CS_DQ1_NONE(q5_K)
CS_DQ1_NONE(q6_K)
CS_DQ1_NONE(q4_Kr)
CS_DQ1_NONE(q5_Kr)
CS_DQ1_NONE(q6_Kr)

/* X(T) for every weight type (kernel names: mv_T, mm_T, getrows_T) */
#define CS_FOR_EACH_WTYPE(X) \
    X(f32) X(f16) X(bf16) X(q8_0) X(q8_0f) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K) \
        X(q4_Kr) X(q5_Kr) X(q6_Kr)
