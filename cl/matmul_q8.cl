/* matmul_q8.cl: y = x . W^T with integer dot products (CPU family only; the
 * host, src/ops/matmul_q8.c, takes this path when the device was opened with
 * CLSPEC_INTDOT=1; cl/matmul.cl elsewhere). x comes quantized by quant_q8
 * (cl/quant.cl): per column, char q[n_in] in pair order (below) and float
 * dx[n_in / 32]. Weight types: q4_0 (GGUF layout, 18-byte blocks) and q8_0f
 * (36-byte blocks, CS_WLAYOUT_Q8_0_F32D).
 *
 * Pair order: the blocks of a row are taken in pairs (a, b) = (2t, 2t + 1);
 * the 64 elements of a pair are arranged as four chunks of 16: a[0..16),
 * b[0..16), a[16..32), b[16..32) (a q4_0 pair's low nibbles, then its high
 * nibbles). An odd last block is a pair alone: chunks a[0..16), 0, a[16..32),
 * 0 (its x stored as 32 bytes a[0..32)).
 *
 * The one reduction order of this path (every kernel here, any n_cols, any
 * column position, rows alone or in pairs): element (c, r):
 *   1. signed integer weights w_e (q4_0: nibble - 8; q8_0: the int8), x
 *      integers q_e, both in pair order;
 *   2. I (16 int lanes): lane j = sum of w_e q_e over positions
 *      4j .. 4j + 3 of the 64 of the pair (exact: |I| < 2^17);
 *   3. S (16 float lanes): lanes 0..3 and 8..11 = dw_a * dx_a, lanes 4..7
 *      and 12..15 = dw_b * dx_b (0 for a lone block; one float multiply
 *      each; dw: the weight block's scale as float, dx: the x block's);
 *   4. acc = fma(convert_float16(I), S, acc) for pairs t = 0, 1, ... in
 *      order, acc starting at +0.0f;
 *   5. y = cs_hsum16(acc) (cl/blocks.cl).
 * With AVX-512BW (PoCL defines __AVX512BW__ for such CPUs) step 2 is
 * vpmaddubsw (64 unsigned x signed byte products, adjacent pairs summed in
 * 16 bits: at most 2 * 128 * 127 < 2^15, never saturating) then vpmaddwd by
 * ones, or with AVX512-VNNI (-DCS_CPU_VNNI=1 from the host, see
 * src/cl/runtime.c) one vpdpbusd; unsigned weights: |w| with w's sign moved
 * onto x, or (q4_0 mat-vec) the nibbles as they are minus 8 * the sums of
 * x; elsewhere plain int arithmetic. All give the same integers, so the
 * same bits. */

#if CS_FAMILY_CPU

#if !defined(CS_MM_TCC) || !defined(CS_MV_ROWS) || !defined(CS_PF_AHEAD)
#error "matmul_q8.cl: CS_MM_* constants missing (the -D constants of src/cl/kconst.h)"
#endif

#if defined(__AVX512BW__) && defined(__has_builtin)
#if __has_builtin(__builtin_ia32_pmaddubsw512) && __has_builtin(__builtin_ia32_pmaddwd512)
#define CS_Q8_AVX512 1
#endif
#endif

/* cs_q8p: the 64 bytes of one pair of a row or a column in pair order.
 * With AVX-512BW one 64-byte vector (every operation below on all 64 lanes
 * at once); elsewhere four char16 chunks. */
#ifdef CS_Q8_AVX512
typedef char cs_q8p __attribute__((vector_size(64)));
typedef char cs_q8pu __attribute__((vector_size(64), aligned(1)));
typedef char cs_v32c __attribute__((vector_size(32)));
typedef short cs_v32s __attribute__((vector_size(64)));
typedef int cs_v16i __attribute__((vector_size(64)));
#define CS_Q8_CAT16(a, b) \
    __builtin_shufflevector((a), (b), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, \
                            22, 23, 24, 25, 26, 27, 28, 29, 30, 31)
#define CS_Q8_CAT32(a, b) \
    __builtin_shufflevector((a), (b), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, \
                            22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, \
                            44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63)
/* chunks c0, c1, c2, c3 (char16 each) as one pair */
inline cs_q8p cs_q8_make(char16 c0, char16 c1, char16 c2, char16 c3)
{
    return (cs_q8p)CS_Q8_CAT32((cs_v32c)CS_Q8_CAT16(c0, c1), (cs_v32c)CS_Q8_CAT16(c2, c3));
}
#else
typedef struct {
    char16 v[4];
} cs_q8p;
inline cs_q8p cs_q8_make(char16 c0, char16 c1, char16 c2, char16 c3)
{
    const cs_q8p p = {{c0, c1, c2, c3}};
    return p;
}
#endif

/* (clang's __has_builtin does not report vpdpbusd for a target without the
 * feature, which the target attribute below adds: CS_CPU_VNNI decides) */
#if defined(CS_Q8_AVX512) && defined(CS_CPU_VNNI)
#define CS_Q8_VNNI 1
/* only on this helper: LLVM does not inline it into the kernels (which
 * lack the feature), and the feature on the kernels breaks PoCL's
 * work-group functions */
#define CS_Q8_TARGET __attribute__((target("avx512vnni")))
#else
#define CS_Q8_TARGET
#endif
#ifdef CS_Q8_VNNI
/* acc + I: vpdpbusd adds the four u8 x s8 products of each lane to it in
 * 32 bits (exact), the same integers as vpmaddubsw + vpmaddwd */
CS_Q8_TARGET inline cs_v16i cs_q8_vnni(cs_v16i acc, cs_q8p u, cs_q8p x)
{
    return __builtin_ia32_vpdpbusd512(acc, (cs_v16i)u, (cs_v16i)x);
}
#endif

inline int16 cs_q8_dotu(cs_q8p u, cs_q8p x);

/* I of step 2 for unsigned weights u (bytes 0..255) and signed x, plus acc
 * (exact integers) */
inline int16 cs_q8_dotu_acc(int16 acc, cs_q8p u, cs_q8p x)
{
#ifdef CS_Q8_VNNI
    const cs_v16i a = __builtin_shufflevector(acc, acc, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const cs_v16i r = cs_q8_vnni(a, u, x);
    return __builtin_shufflevector(r, r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    return acc + cs_q8_dotu(u, x);
#endif
}

/* I of step 2 for unsigned weights u (bytes 0..255) and signed x */
inline int16 cs_q8_dotu(cs_q8p u, cs_q8p x)
{
#ifdef CS_Q8_VNNI
    const cs_v16i z = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const cs_v16i r = cs_q8_vnni(z, u, x);
    return __builtin_shufflevector(r, r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#elif defined(CS_Q8_AVX512)
    const cs_v32s ones = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const cs_v16i r = __builtin_ia32_pmaddwd512(__builtin_ia32_pmaddubsw512(u, x), ones);
    return __builtin_shufflevector(r, r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    int4 q[4];
    for (int i = 0; i < 4; i++) {
        const int16 p = convert_int16(as_uchar16(u.v[i])) * convert_int16(x.v[i]);
        q[i] = (p.s048c + p.s159d) + (p.s26ae + p.s37bf);
    }
    return (int16)(q[0], q[1], q[2], q[3]);
#endif
}

/* the sign mask of signed weights w (-1 where w < 0, else 0) and |w| (as
 * unsigned bytes) from w and that mask */
inline cs_q8p cs_q8_sgn(cs_q8p w)
{
#ifdef CS_Q8_AVX512
    return (cs_q8p)(w < cs_q8_make((char16)0, (char16)0, (char16)0, (char16)0));
#else
    cs_q8p m;
    for (int i = 0; i < 4; i++)
        m.v[i] = w.v[i] < (char)0 ? (char16)-1 : (char16)0;
    return m;
#endif
}
inline cs_q8p cs_q8_abs(cs_q8p w, cs_q8p m)
{
#ifdef CS_Q8_AVX512
    return (w ^ m) - m;
#else
    cs_q8p a;
    for (int i = 0; i < 4; i++)
        a.v[i] = (w.v[i] ^ m.v[i]) - m.v[i];
    return a;
#endif
}

/* I for weights given as (|w|, sign mask) against x */
inline int16 cs_q8_dots(cs_q8p a, cs_q8p m, cs_q8p x)
{
#ifdef CS_Q8_AVX512
    return cs_q8_dotu(a, (x ^ m) - m);
#else
    cs_q8p xs;
    for (int i = 0; i < 4; i++)
        xs.v[i] = (x.v[i] ^ m.v[i]) - m.v[i];
    return cs_q8_dotu(a, xs);
#endif
}

/* 8 * (the sums of x over each lane's 4 positions): q4_0's offset */
inline int16 cs_q8_x8(cs_q8p x)
{
    return cs_q8_dotu(cs_q8_make((char16)8, (char16)8, (char16)8, (char16)8), x);
}

inline float16 cs_q8_scale(float2 dw, float2 dx)
{
    const float2 s = dw * dx;
    return (float16)((float4)s.x, (float4)s.y, (float4)s.x, (float4)s.y);
}

/* the halves at p and q as floats (exact; F16C's vcvtph2ps where present) */
inline float2 cs_q8_ldh2(__global const uchar *p, __global const uchar *q)
{
#if defined(__F16C__) && defined(__has_builtin)
#if __has_builtin(__builtin_ia32_vcvtph2ps)
#define CS_Q8_F16C 1
#endif
#endif
#ifdef CS_Q8_F16C
    const short8 h = (short8)(as_short(vload2(0, p)), as_short(vload2(0, q)), 0, 0, 0, 0, 0, 0);
    typedef float cs_v4f __attribute__((vector_size(16)));
    const cs_v4f f = __builtin_ia32_vcvtph2ps(h);
    return (float2)(f[0], f[1]);
#else
    return (float2)(cs_ldh(p), cs_ldh(q));
#endif
}

/* Weight pair t of a row (one: the lone last block 2t) in pair order
 * (cs_q8w_T) and its two scales (cs_q8d_T). q4_0: the nibbles as they are
 * (0..15; w = u - 8); q8_0f: w. */
inline cs_q8p cs_q8w_q4_0(__global const uchar *row, uint t, bool one)
{
    __global const uchar *pa = row + (size_t)(2 * t) * 18, *pb = pa + 18;
    const uchar16 qa = vload16(0, pa + 2), qb = one ? (uchar16)0 : vload16(0, pb + 2);
    return cs_q8_make(as_char16(qa & (uchar)15), as_char16(qb & (uchar)15), as_char16(qa >> (uchar)4),
                      as_char16(qb >> (uchar)4));
}
inline float2 cs_q8d_q4_0(__global const uchar *row, uint t, bool one)
{
    __global const uchar *pa = row + (size_t)(2 * t) * 18;
    return one ? (float2)(cs_ldh(pa), 0.0f) : cs_q8_ldh2(pa, pa + 18);
}
inline cs_q8p cs_q8w_q8_0f(__global const uchar *row, uint t, bool one)
{
    __global const char *qa = (__global const char *)(row + (size_t)(2 * t) * 36 + 4), *qb = qa + 36;
    return cs_q8_make(vload16(0, qa), one ? (char16)0 : vload16(0, qb), vload16(1, qa),
                      one ? (char16)0 : vload16(1, qb));
}
inline float2 cs_q8d_q8_0f(__global const uchar *row, uint t, bool one)
{
    __global const float *pa = (__global const float *)(row + (size_t)(2 * t) * 36);
    return (float2)(pa[0], one ? 0.0f : pa[9]);
}

/* x pair t of a column (qc: its q in pair order, dc: its dx) */
inline cs_q8p cs_q8x(__global const char *qc, uint t, bool one)
{
    if (one)
        return cs_q8_make(vload16(4 * t, qc), (char16)0, vload16(4 * t + 1, qc), (char16)0);
#ifdef CS_Q8_AVX512
    return *(__global const cs_q8pu *)(qc + 64 * (size_t)t);
#else
    return cs_q8_make(vload16(4 * t, qc), vload16(4 * t + 1, qc), vload16(4 * t + 2, qc), vload16(4 * t + 3, qc));
#endif
}
inline float2 cs_q8dx(__global const float *dc, uint t, bool one)
{
    return (float2)(dc[2 * t], one ? 0.0f : dc[2 * t + 1]);
}

/* I of (row weights, x) per type: mat-vec (rows r, r1 share x) and mat-mat
 * forms; q4_0's mat-vec subtracts 8 * sum(x) (x8, computed once per x) */
#define CS_Q8_MV_q4_0(wr, wr1, t, one, x, dx, acc, acc1) \
    do { \
        const int16 nx8 = -cs_q8_x8(x); \
        acc = fma(convert_float16(cs_q8_dotu_acc(nx8, cs_q8w_q4_0(wr, t, one), x)), \
                  cs_q8_scale(cs_q8d_q4_0(wr, t, one), dx), acc); \
        acc1 = fma(convert_float16(cs_q8_dotu_acc(nx8, cs_q8w_q4_0(wr1, t, one), x)), \
                   cs_q8_scale(cs_q8d_q4_0(wr1, t, one), dx), acc1); \
    } while (0)
#define CS_Q8_MV_q8_0f(wr, wr1, t, one, x, dx, acc, acc1) \
    do { \
        const cs_q8p w_ = cs_q8w_q8_0f(wr, t, one), m_ = cs_q8_sgn(w_); \
        const cs_q8p w1_ = cs_q8w_q8_0f(wr1, t, one), m1_ = cs_q8_sgn(w1_); \
        acc = fma(convert_float16(cs_q8_dots(cs_q8_abs(w_, m_), m_, x)), \
                  cs_q8_scale(cs_q8d_q8_0f(wr, t, one), dx), acc); \
        acc1 = fma(convert_float16(cs_q8_dots(cs_q8_abs(w1_, m1_), m1_, x)), \
                   cs_q8_scale(cs_q8d_q8_0f(wr1, t, one), dx), acc1); \
    } while (0)

/* mat-mat: the row's signed weights once per pair (q4_0: u - 8; a lone
 * block's missing chunks stay 0) */
inline cs_q8p cs_q8ws_q4_0(__global const uchar *row, uint t, bool one)
{
    const char16 e = (char16)8, z = (char16)0;
    return cs_q8w_q4_0(row, t, one) - cs_q8_make(e, one ? z : e, e, one ? z : e);
}
inline cs_q8p cs_q8ws_q8_0f(__global const uchar *row, uint t, bool one)
{
    return cs_q8w_q8_0f(row, t, one);
}

#define CS_MVQ_STEP(T, one) \
    do { \
        const cs_q8p x = cs_q8x(xq, t, one); \
        const float2 dx = cs_q8dx(dc, t, one); \
        CS_Q8_MV_##T(wr, wr1, t, one, x, dx, acc, acc1); \
    } while (0)

#define CS_MMQ_STEP(T, one) \
    do { \
        const cs_q8p ws = cs_q8ws_##T(wr, t, one), m = cs_q8_sgn(ws), a = cs_q8_abs(ws, m); \
        const float2 dw = cs_q8d_##T(wr, t, one); \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) { \
            const size_t cc = c0 + c; \
            const cs_q8p x = cs_q8x(xq + cc * n_in, t, one); \
            const float2 dx = cs_q8dx(dc + cc * nb, t, one); \
            acc[c] = fma(convert_float16(cs_q8_dots(a, m, x)), cs_q8_scale(dw, dx), acc[c]); \
        } \
    } while (0)

/* Arguments of every kernel: w (bytes of this part), row_bytes, n_in, n_rows
 * (of this part), xq (quant_q8's buffer), d_off (bytes: its dx), then y. */
/* rows r and r + 1 (when < n_rows) of W . x: *y0, *y1 (the mat-vec kernels'
 * one body; pair t of both rows per step, x loaded once) */
#define CS_MVQ2(T) \
    inline void cs_mvq2_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, uint r, \
                            __global const char *xq, uint d_off, float *y0, float *y1) \
    { \
        const uint r1 = min(r + 1, n_rows - 1); /* the last odd row: computed twice */ \
        __global const uchar *wr = w + (size_t)r * row_bytes, *wr1 = w + (size_t)r1 * row_bytes; \
        __global const float *dc = (__global const float *)(xq + d_off); \
        const uint nb = n_in / 32, np = nb / 2; \
        const uint pstep = 4 * row_bytes / nb; \
        __global const uchar *pf = wr + CS_PF_AHEAD; \
        float16 acc = 0.0f, acc1 = 0.0f; \
        uint t = 0; \
        for (; t < np; t++) { \
            for (uint o = 0; o < pstep; o += 64) \
                CS_PREFETCH(pf + o); \
            pf += pstep; \
            CS_MVQ_STEP(T, false); \
        } \
        if (nb & 1) \
            CS_MVQ_STEP(T, true); \
        *y0 = cs_hsum16(acc); \
        *y1 = cs_hsum16(acc1); \
    }
CS_MVQ2(q4_0)
CS_MVQ2(q8_0f)

/* mvq3_T: the Q, K and V mat-vecs of a layer in one launch (as mv3_T);
 * mvqswiglu_T: gate and up rows r, r + 1 and silu(g) * u (as mvswiglu_T and
 * cl/eltwise.cl's swiglu). Each dot as cs_mvq2_T, so the same bits as
 * mvq_T (+ swiglu). */
#define CS_MVQ_FUSED(T) \
    __kernel void mvq3_##T(__global const uchar *wq, __global const uchar *wk, __global const uchar *wv, \
                           uint row_bytes, uint n_in, uint nq, uint nk, uint nv, __global const char *xq, \
                           uint d_off, __global float *q, uint q_off, __global float *k, uint k_off, \
                           __global float *v, uint v_off) \
    { \
        uint g = get_global_id(0); \
        const uint pq = (nq + CS_MV_ROWS - 1) / CS_MV_ROWS, pk = (nk + CS_MV_ROWS - 1) / CS_MV_ROWS; \
        const uint pv = (nv + CS_MV_ROWS - 1) / CS_MV_ROWS; \
        __global const uchar *w; \
        __global float *y; \
        uint n; \
        if (g < pq) { \
            w = wq, y = q + q_off, n = nq; \
        } else if ((g -= pq) < pk) { \
            w = wk, y = k + k_off, n = nk; \
        } else if ((g -= pk) < pv) { \
            w = wv, y = v + v_off, n = nv; \
        } else { \
            return; \
        } \
        const uint r = CS_MV_ROWS * g; \
        float y0, y1; \
        cs_mvq2_##T(w, row_bytes, n_in, n, r, xq, d_off, &y0, &y1); \
        y[r] = y0; \
        if (r + 1 < n) \
            y[r + 1] = y1; \
    } \
    __kernel void mvqswiglu_##T(__global const uchar *wg, __global const uchar *wu, uint row_bytes, uint n_in, \
                                uint n_rows, __global const char *xq, uint d_off, __global float *y, uint y_off) \
    { \
        const uint r = CS_MV_ROWS * get_global_id(0); \
        if (r >= n_rows) \
            return; \
        float g0, g1, u0, u1; \
        cs_mvq2_##T(wg, row_bytes, n_in, n_rows, r, xq, d_off, &g0, &g1); \
        cs_mvq2_##T(wu, row_bytes, n_in, n_rows, r, xq, d_off, &u0, &u1); \
        y[y_off + r] = g0 / (1.0f + exp(-g0)) * u0; \
        if (r + 1 < n_rows) \
            y[y_off + r + 1] = g1 / (1.0f + exp(-g1)) * u1; \
    }
CS_MVQ_FUSED(q4_0)
CS_MVQ_FUSED(q8_0f)

#define CS_MATMUL_Q8(T) \
    __kernel void mvq_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                          __global const char *xq, uint d_off, __global float *y, uint y_off) \
    { \
        const uint r = CS_MV_ROWS * get_global_id(0); \
        if (r >= n_rows) \
            return; \
        float y0, y1; \
        cs_mvq2_##T(w, row_bytes, n_in, n_rows, r, xq, d_off, &y0, &y1); \
        y[y_off + r] = y0; \
        if (r + 1 < n_rows) \
            y[y_off + r + 1] = y1; \
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
