/* matmul_q8.cl: y = x . W^T with integer dot products (CPU family only; the
 * host, src/ops/matmul_q8.c, takes this path when CLSPEC_INTDOT=1 and falls
 * back to cl/matmul.cl elsewhere). x comes quantized by quant_q8
 * (cl/quant.cl): per column, char q[n_in] and float dx[n_in / 32].
 * Weight types: q4_0 (GGUF layout, 18-byte blocks) and q8_0f (36-byte
 * blocks, CS_WLAYOUT_Q8_0_F32D).
 *
 * The one reduction order of this path (every kernel here, any n_cols, any
 * column position, rows alone or in pairs): element (c, r), nb = n_in / 32
 * blocks, taken in pairs t = (2t, 2t + 1) in increasing t (an odd last block
 * pairs with an empty block: weights, x and scale 0):
 *   1. signed integer weights w_e (q4_0: nibble - 8; q8_0: the int8), x
 *      integers q_e;
 *   2. I (16 int lanes): lane j = sum of w_e q_e over the four elements
 *      e = 4j .. 4j + 3 of the 64 of the pair (exact: |I| < 2^17);
 *   3. S (16 float lanes): lanes 0..7 = dw_2t * dx_2t, 8..15 = dw_2t+1 *
 *      dx_2t+1 (one float multiply each; dw: the weight block's scale as
 *      float, dx: the quantized block's);
 *   4. acc = fma(convert_float16(I), S, acc), acc starting at +0.0f;
 *   5. y = cs_hsum16(acc) (cl/blocks.cl).
 * With AVX-512BW (PoCL defines __AVX512BW__ for such CPUs) step 2 is
 * vpmaddubsw on |w| and x with w's sign (64 byte products, pairs summed in
 * 16 bits: at most 2 * 128 * 127 < 2^15, never saturating) then vpmaddwd by
 * ones; elsewhere plain int arithmetic gives the same integers. */

#if CS_FAMILY_CPU

#if !defined(CS_MM_TCC) || !defined(CS_MV_ROWS) || !defined(CS_PF_AHEAD)
#error "matmul_q8.cl: CS_MM_* constants missing (the -D constants of src/cl/kconst.h)"
#endif

#if defined(__AVX512BW__) && defined(__has_builtin)
#if __has_builtin(__builtin_ia32_pmaddubsw512) && __has_builtin(__builtin_ia32_pmaddwd512)
#define CS_Q8_AVX512 1
#endif
#endif

#if defined(__has_builtin)
#if __has_builtin(__builtin_prefetch)
#define CS_Q8_PREFETCH(p) __builtin_prefetch(p)
#endif
#endif
#ifndef CS_Q8_PREFETCH
#define CS_Q8_PREFETCH(p) ((void)0)
#endif

#ifdef CS_Q8_AVX512
typedef char cs_v64c __attribute__((vector_size(64)));
typedef short cs_v32s __attribute__((vector_size(64)));
typedef int cs_v16i __attribute__((vector_size(64)));
#define CS_Q8_I64 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, \
    27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, \
    56, 57, 58, 59, 60, 61, 62, 63
#endif

#ifndef CS_Q8_AVX512
/* four lanes of I: sums of 4 consecutive products of |w| = a and x */
inline int4 cs_i8dot16(char16 a, char16 x)
{
    const int16 p = convert_int16(as_uchar16(a)) * convert_int16(x);
    return (p.s048c + p.s159d) + (p.s26ae + p.s37bf);
}
#endif

/* I of step 2 for |w| = a0..a3 and x already carrying w's sign (x0..x3) */
inline int16 cs_i8dot64(char16 a0, char16 a1, char16 a2, char16 a3, char16 x0, char16 x1, char16 x2, char16 x3)
{
#ifdef CS_Q8_AVX512
    const cs_v64c a = (cs_v64c)__builtin_shufflevector(__builtin_shufflevector(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31), __builtin_shufflevector(a2, a3, 0,
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
        31), CS_Q8_I64);
    const cs_v64c x = (cs_v64c)__builtin_shufflevector(__builtin_shufflevector(x0, x1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31), __builtin_shufflevector(x2, x3, 0,
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
        31), CS_Q8_I64);
    const cs_v32s ones = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const cs_v16i r = __builtin_ia32_pmaddwd512(__builtin_ia32_pmaddubsw512(a, x), ones);
    return __builtin_shufflevector(r, r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    return (int16)(cs_i8dot16(a0, x0), cs_i8dot16(a1, x1), cs_i8dot16(a2, x2), cs_i8dot16(a3, x3));
#endif
}

/* -1 where v < 0, else 0; and |v| */
#define CS_Q8_SGN(v) ((v) < (char)0 ? (char16)-1 : (char16)0)
#define CS_Q8_ABS(v, m) (((v) ^ (m)) - (m))
#define CS_Q8_APPLY(x, m) (((x) ^ (m)) - (m))

/* weights of blocks b0, b1 of a row (v0..v3: signed, 16 each) and their scales */
#define CS_Q8W_q4_0(row, b0, b1, v0, v1, v2, v3, d0, d1) \
    do { \
        __global const uchar *p0_ = (row) + (size_t)(b0) * 18, *p1_ = (row) + (size_t)(b1) * 18; \
        const uchar16 q0_ = vload16(0, p0_ + 2), q1_ = vload16(0, p1_ + 2); \
        v0 = as_char16(q0_ & (uchar)15) - (char)8; \
        v1 = as_char16(q0_ >> (uchar)4) - (char)8; \
        v2 = as_char16(q1_ & (uchar)15) - (char)8; \
        v3 = as_char16(q1_ >> (uchar)4) - (char)8; \
        d0 = cs_ldh(p0_); \
        d1 = cs_ldh(p1_); \
    } while (0)
#define CS_Q8W_q8_0f(row, b0, b1, v0, v1, v2, v3, d0, d1) \
    do { \
        __global const uchar *p0_ = (row) + (size_t)(b0) * 36, *p1_ = (row) + (size_t)(b1) * 36; \
        v0 = vload16(0, (__global const char *)(p0_ + 4)); \
        v1 = vload16(1, (__global const char *)(p0_ + 4)); \
        v2 = vload16(0, (__global const char *)(p1_ + 4)); \
        v3 = vload16(1, (__global const char *)(p1_ + 4)); \
        d0 = *(__global const float *)p0_; \
        d1 = *(__global const float *)p1_; \
    } while (0)

/* one pair step of one (row, column): weights (signed v0..v3, scales dw0,
 * dw1; ONE: the second block is empty) against x (x0..x3, dx0, dx1) */
#define CS_Q8_STEP(ONE, v0, v1, v2, v3, dw0, dw1, x0, x1, x2, x3, dx0, dx1, acc) \
    do { \
        const char16 m0_ = CS_Q8_SGN(v0), m1_ = CS_Q8_SGN(v1), m2_ = CS_Q8_SGN(v2), m3_ = CS_Q8_SGN(v3); \
        const int16 i_ = cs_i8dot64(CS_Q8_ABS(v0, m0_), CS_Q8_ABS(v1, m1_), CS_Q8_ABS(v2, m2_), CS_Q8_ABS(v3, m3_), \
                                    CS_Q8_APPLY(x0, m0_), CS_Q8_APPLY(x1, m1_), CS_Q8_APPLY(x2, m2_), \
                                    CS_Q8_APPLY(x3, m3_)); \
        const float s0_ = (dw0) * (dx0), s1_ = (ONE) ? 0.0f : (dw1) * (dx1); \
        acc = fma(convert_float16(i_), (float16)((float8)s0_, (float8)s1_), acc); \
    } while (0)

/* x of blocks 2t, 2t + 1 of a column (qc: its q, dc: its dx); ONE: block 2t only */
#define CS_Q8X(ONE, qc, dc, t, x0, x1, x2, x3, dx0, dx1) \
    do { \
        x0 = vload16(4 * (t), qc); \
        x1 = vload16(4 * (t) + 1, qc); \
        x2 = (ONE) ? (char16)0 : vload16(4 * (t) + 2, qc); \
        x3 = (ONE) ? (char16)0 : vload16(4 * (t) + 3, qc); \
        dx0 = (dc)[2 * (t)]; \
        dx1 = (ONE) ? 0.0f : (dc)[2 * (t) + 1]; \
    } while (0)

/* mat-vec pair step t of rows wr, wr1 (ONE: the odd last block; its
 * weights read block 2t twice and are zeroed by x and the scale) */
#define CS_MVQ_STEP(T, ONE) \
    do { \
        char16 x0, x1, x2, x3, v0, v1, v2, v3; \
        float dx0, dx1, d0, d1; \
        CS_Q8X(ONE, xq, dc, t, x0, x1, x2, x3, dx0, dx1); \
        CS_Q8W_##T(wr, 2 * t, (ONE) ? 2 * t : 2 * t + 1, v0, v1, v2, v3, d0, d1); \
        CS_Q8_STEP(ONE, v0, v1, v2, v3, d0, d1, x0, x1, x2, x3, dx0, dx1, acc); \
        CS_Q8W_##T(wr1, 2 * t, (ONE) ? 2 * t : 2 * t + 1, v0, v1, v2, v3, d0, d1); \
        CS_Q8_STEP(ONE, v0, v1, v2, v3, d0, d1, x0, x1, x2, x3, dx0, dx1, acc1); \
    } while (0)

#define CS_MMQ_STEP(T, ONE) \
    do { \
        char16 v0, v1, v2, v3; \
        float d0, d1; \
        CS_Q8W_##T(wr, 2 * t, (ONE) ? 2 * t : 2 * t + 1, v0, v1, v2, v3, d0, d1); \
        const char16 m0 = CS_Q8_SGN(v0), m1 = CS_Q8_SGN(v1), m2 = CS_Q8_SGN(v2), m3 = CS_Q8_SGN(v3); \
        const char16 a0 = CS_Q8_ABS(v0, m0), a1 = CS_Q8_ABS(v1, m1), a2 = CS_Q8_ABS(v2, m2), \
                     a3 = CS_Q8_ABS(v3, m3); \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) { \
            char16 x0, x1, x2, x3; \
            float dx0, dx1; \
            const size_t cc = c0 + c; \
            CS_Q8X(ONE, xq + cc * n_in, dc + cc * nb, t, x0, x1, x2, x3, dx0, dx1); \
            const int16 i_ = cs_i8dot64(a0, a1, a2, a3, CS_Q8_APPLY(x0, m0), CS_Q8_APPLY(x1, m1), \
                                        CS_Q8_APPLY(x2, m2), CS_Q8_APPLY(x3, m3)); \
            const float s0_ = d0 * dx0, s1_ = (ONE) ? 0.0f : d1 * dx1; \
            acc[c] = fma(convert_float16(i_), (float16)((float8)s0_, (float8)s1_), acc[c]); \
        } \
    } while (0)

/* Arguments of every kernel: w (bytes of this part), row_bytes, n_in, n_rows
 * (of this part), xq (quant_q8's buffer), d_off (bytes: its dx), then y. */
#define CS_MATMUL_Q8(T) \
    __kernel void mvq_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                          __global const char *xq, uint d_off, __global float *y, uint y_off) \
    { \
        const uint r = CS_MV_ROWS * get_global_id(0); \
        if (r >= n_rows) \
            return; \
        const uint r1 = min(r + 1, n_rows - 1); /* the last odd row: computed twice, stored once */ \
        __global const uchar *wr = w + (size_t)r * row_bytes, *wr1 = w + (size_t)r1 * row_bytes; \
        __global const float *dc = (__global const float *)(xq + d_off); \
        const uint nb = n_in / 32, np = nb / 2; \
        const uint pstep = 4 * row_bytes / nb; \
        __global const uchar *pf = wr + CS_PF_AHEAD; \
        float16 acc = 0.0f, acc1 = 0.0f; \
        uint t = 0; \
        for (; t < np; t++) { \
            for (uint o = 0; o < pstep; o += 64) \
                CS_Q8_PREFETCH(pf + o); \
            pf += pstep; \
            CS_MVQ_STEP(T, false); \
        } \
        if (nb & 1) \
            CS_MVQ_STEP(T, true); \
        y[y_off + r] = cs_hsum16(acc); \
        if (r + 1 < n_rows) \
            y[y_off + r + 1] = cs_hsum16(acc1); \
    } \
    __kernel void mmq_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                          __global const char *xq, uint d_off, uint n_cols, __global float *y, uint y_off, \
                          uint y_stride) \
    { \
        const uint r = get_global_id(0), c0 = get_global_id(1) * CS_MM_TCC; \
        if (r >= n_rows || c0 >= n_cols) \
            return; \
        const uint nc = min((uint)CS_MM_TCC, n_cols - c0); \
        __global const uchar *wr = w + (size_t)r * row_bytes; \
        __global const float *dc = (__global const float *)(xq + d_off); \
        const uint nb = n_in / 32, np = nb / 2; \
        float16 acc[CS_MM_TCC]; \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) acc[c] = 0.0f; \
        uint t = 0; \
        for (; t < np; t++) \
            CS_MMQ_STEP(T, false); \
        if (nb & 1) \
            CS_MMQ_STEP(T, true); \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) \
            y[y_off + (size_t)(c0 + c) * y_stride + r] = cs_hsum16(acc[c]); \
    }

CS_MATMUL_Q8(q4_0)
CS_MATMUL_Q8(q8_0f)

#endif /* CS_FAMILY_CPU */
