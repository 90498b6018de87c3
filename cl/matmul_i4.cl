/* matmul_i4.cl: y = x . W^T for 4-bit weights with integer dot products,
 * rows in vector lanes (CPU family; host: src/ops/matmul_i4.c, C reference:
 * src/ref/i4_ref.c). x comes quantized by quant_q8 (cl/quant.cl): per
 * column, char q[n_in] in the pair order of cl/matmul_q8.cl and float
 * dx[n_in / 32].
 *
 * Weight layouts (made at upload, src/ops/matmul_i4.c; a part's rows in
 * groups of 16, the last group padded with zero rows). Within a group, a
 * 32-element block is 256 nibble bytes: byte 4 j + i of vector v (v = 0..3,
 * 64 bytes each) holds row j's element 4 v + i (low nibble) and element
 * 16 + 4 v + i (high nibble); so one 64-byte vector is 4 consecutive k of
 * 16 rows, one 32-bit lane per row.
 *   q4_0i (CS_WLAYOUT_Q4_0_I16): per group and block b, 288 bytes: half
 *     d[16] (row j's scale), then the 256 nibble bytes (w = nibble - 8).
 *     18 bytes per row per 32 elements, as GGUF.
 *   q4_Ki (CS_WLAYOUT_Q4_K_I16): per group and super-block of 256, 2368
 *     bytes: half d[16], dmin[16]; uchar sc[8][16], mn[8][16] (sub-block u,
 *     row j: the 6-bit scale and min, unpacked); then 8 x 256 nibble bytes
 *     (sub-block u as one block above). w = d sc_u q - dmin mn_u. 148 bytes
 *     per row per 256 (GGUF: 144).
 *   q6_Ki (CS_WLAYOUT_Q6_K_I16): per group and super-block of 256, 3392
 *     bytes: float d[16]; char sc[16][16] (scale t of 16 elements, row j);
 *     then per sub-block u 384 bytes: its 256 nibble bytes (low 4 bits of
 *     q) and two vectors of the high 2 bits (byte 4 j + i: element 4 v + i,
 *     resp. 16 + 4 v + i, at bits (4 + 2 v) mod 8, so v = 0 is in place).
 *     w = d sc (q - 32). 212 bytes per row
 *     per 256 (GGUF: 210). Its order: CS_I4_TILE_Q6_K below.
 * Halves become floats exactly (vload_half16), so d_r below is the GGUF
 * scale as a float.
 *
 * The one reduction order (every kernel here, any n_cols, any column
 * position, any tile): element (c, r), blocks b = 0, 1, ... of 32 in order,
 * acc starting at +0.0f:
 *   I = sum over the block's 32 k of w_k q_k (exact 32-bit integers; q4_0:
 *       computed as sum of nibble q minus 8 sum q); xs = sum of the q_k;
 *   q4_0: acc = fma((float)I, d_r * dx_b, acc);
 *   q4_K: acc = fma((float)I, (d_r * (float)sc) * dx_b, acc);
 *         acc = fma(dmin_r * (float)mn, -(dx_b * (float)xs), acc);
 *   y = acc (no horizontal sum: one lane per row).
 * The integer sums come from vpdpbusd (AVX512-VNNI, -DCS_CPU_VNNI=1 from
 * the host), vpmaddubsw + vpmaddwd (AVX-512BW) or plain int arithmetic:
 * the same integers, so the same bits. A work-item computes one group of 16
 * rows for 1, 2, 4 or 8 columns (mvi, mmi2, mmi4, mmi8); a column's result does not
 * depend on which tile it sits in (speculative verification stays
 * lossless). The one-column tile (decode: mvi, mvi3, mviswiglu) prefetches
 * the weight stream CS_PF_AHEAD bytes ahead, as the float mat-vecs do: a
 * group's blocks continue in the next work-item's group, and the hardware
 * prefetcher alone restarts at every 4 KiB page (1.1B decode stream of
 * test-kernels-i4 CLSPEC_I4_BENCH=stream, PoCL 3.1, 2 cores, load 3:
 * 13.5-14.1 GB/s without, 15.1-15.6 with). */

#if CS_FAMILY_CPU

#if defined(__AVX512BW__) && defined(__has_builtin) && !defined(CS_I4_PLAIN)
#if __has_builtin(__builtin_ia32_pmaddubsw512) && __has_builtin(__builtin_ia32_pmaddwd512)
#define CS_I4_AVX512 1
#endif
#endif

#if defined(CS_I4_AVX512) && defined(CS_CPU_VNNI)
#define CS_I4_VNNI 1
/* on the per-work-item helpers only (the kernels keep PoCL's features:
 * the feature on a kernel breaks its work-group function) */
#define CS_I4_TARGET __attribute__((target("avx512vnni")))
#else
#define CS_I4_TARGET
#endif

typedef uint cs_i4u __attribute__((vector_size(64))); /* lane j: 4 bytes of row j */
typedef uint cs_i4uu __attribute__((vector_size(64), aligned(2))); /* the same, as loaded (2-aligned) */
typedef int cs_i4i __attribute__((vector_size(64)));
typedef char cs_i4c __attribute__((vector_size(64)));
typedef short cs_i4s __attribute__((vector_size(64)));

#define CS_I4_SPLAT(v) ((cs_i4i){v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v})
#define CS_I4_TOI16(v) __builtin_shufflevector((v), (v), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

/* acc + lane j: sum over i < 4 of byte i of u (0..15) times byte i of x
 * (signed) */
#if defined(CS_I4_VNNI)
#define CS_I4_DP(acc, u, x) __builtin_ia32_vpdpbusd512((acc), (cs_i4i)(u), CS_I4_SPLAT(x))
#elif defined(CS_I4_AVX512)
#define CS_I4_DP(acc, u, x) \
    ((acc) + __builtin_ia32_pmaddwd512(__builtin_ia32_pmaddubsw512((cs_i4c)(u), (cs_i4c)CS_I4_SPLAT(x)), \
                                       (cs_i4s)CS_I4_SPLAT(0x00010001)))
#else
#define CS_I4_DP(acc, u, x) \
    ((acc) + (cs_i4i)((u) & 255) * (int)(char)(x) + (cs_i4i)(((u) >> 8) & 255) * (int)(char)((x) >> 8) + \
     (cs_i4i)(((u) >> 16) & 255) * (int)(char)((x) >> 16) + (cs_i4i)((u) >> 24) * (int)(char)((x) >> 24))
#endif

/* Byte offset of block b's elements [0, 16) in a column's q (pair order);
 * *h: how far its elements [16, 32) sit after them. */
inline uint cs_i4_xat(uint nb, uint b, uint *h)
{
    const bool lone = (nb & 1) && b == nb - 1;
    *h = lone ? 16 : 32;
    return lone ? 32 * b : 64 * (b / 2) + 16 * (b & 1);
}

/* sum of the 32 q of a block (xa: its elements [0, 16), h as above) */
inline int cs_i4_xsum(__global const char *xa, uint h)
{
    const short16 s = convert_short16(vload16(0, xa)) + convert_short16(vload16(0, xa + h));
    const short8 s8 = s.lo + s.hi;
    const short4 s4 = s8.lo + s8.hi;
    return (int)s4.x + (int)s4.y + (int)s4.z + (int)s4.w;
}

/* I of one block for 16 rows: init + the 8 lane dot products (lo, hi: the
 * block's 4 nibble vectors, low and high nibbles; xa: x elements [0, 16)) */
#define CS_I4_BLOCK(I, lo, hi, xa, h) \
    do { \
        __global const int *x0_ = (__global const int *)(xa), *x1_ = (__global const int *)((xa) + (h)); \
        _Pragma("unroll") for (int v_ = 0; v_ < 4; v_++) { \
            I = CS_I4_DP(I, lo[v_], x0_[v_]); \
            I = CS_I4_DP(I, hi[v_], x1_[v_]); \
        } \
    } while (0)

/* the block's nibble vectors at p (256 bytes) */
#define CS_I4_LOAD(lo, hi, p) \
    do { \
        _Pragma("unroll") for (int v_ = 0; v_ < 4; v_++) { \
            const cs_i4u w_ = *(__global const cs_i4uu *)((p) + 64 * v_); \
            lo[v_] = w_ & 0x0F0F0F0Fu; \
            hi[v_] = (w_ >> 4) & 0x0F0F0F0Fu; \
        } \
    } while (0)

/* Stores column c's 16 lanes (rows r0 .. r0 + nr - 1 of y's column) */
inline void cs_i4_store(float16 acc, __global float *yc, uint nr)
{
    if (nr == 16) {
        vstore16(acc, 0, yc);
        return;
    }
    float a[16];
    vstore16(acc, 0, a);
    for (uint j = 0; j < nr; j++)
        yc[j] = a[j];
}

/* xs of block b of column col: quant_q8's sums, or for one column (mvi: one
 * launch fewer per decode input) summed here: the same integer */
#define CS_I4_XS(C, xsq, col, nb, b, xa, h) ((C) == 1 ? cs_i4_xsum(xa, h) : xsq[(size_t)(col) * (nb) + (b)])

/* Arguments of the tile helpers: wg (the group's bytes), nb (blocks of 32
 * per row), xq (quant_q8's buffer), dxq (its dx), xsq (quant_q8's sums),
 * n_in, c0 (first column), n_cols; res: the C columns' 16 lanes. Columns
 * past n_cols repeat the last one (the caller does not store them). */
#define CS_I4_TILE_Q4_0(NAME, C) \
    CS_I4_TARGET void NAME(__global const uchar *wg, uint nb, __global const char *xq, __global const float *dxq, \
                           __global const int *xsq, uint n_in, uint c0, uint n_cols, float16 *res) \
    { \
        float16 acc[C]; \
        uint col[C]; \
        _Pragma("unroll") for (int c = 0; c < C; c++) { \
            acc[c] = (float16)0.0f; \
            col[c] = min(c0 + c, n_cols - 1); \
        } \
        for (uint b = 0; b < nb; b++) { \
            __global const uchar *p = wg + (size_t)b * 288; \
            if (C == 1) /* decode: the stream's lines CS_PF_AHEAD bytes on (cl/matmul.cl) */ \
                CS_PF_LINES(p + CS_PF_AHEAD, 288); \
            const float16 dw = vload_half16(0, (__global const half *)p); \
            cs_i4u lo[4], hi[4]; \
            CS_I4_LOAD(lo, hi, p + 32); \
            uint h; \
            const uint at = cs_i4_xat(nb, b, &h); \
            _Pragma("unroll") for (int c = 0; c < C; c++) { \
                __global const char *xa = xq + (size_t)col[c] * n_in + at; \
                cs_i4i I = CS_I4_SPLAT(-8 * CS_I4_XS(C, xsq, col[c], nb, b, xa, h)); \
                CS_I4_BLOCK(I, lo, hi, xa, h); \
                const int16 Iv = CS_I4_TOI16(I); \
                acc[c] = fma(convert_float16(Iv), dw * dxq[(size_t)col[c] * nb + b], acc[c]); \
            } \
        } \
        _Pragma("unroll") for (int c = 0; c < C; c++) \
            res[c] = acc[c]; \
    }

/* The K-quant tiles read the block sums that quant_q8 wrote after the dx
 * (cs_op_quant_i4_scratch): at xsq, or where xsq is NULL (the fused
 * one-column kernels) right after dxq's n_cols nb floats. */
#define CS_I4_KSUMS(xsq, dxq, nb, n_cols) \
    ((xsq) ? (xsq) : (__global const int *)((dxq) + (size_t)(nb) * (n_cols)))

#define CS_I4_TILE_Q4_K(NAME, C) \
    CS_I4_TARGET void NAME(__global const uchar *wg, uint nb, __global const char *xq, __global const float *dxq, \
                           __global const int *xsq, uint n_in, uint c0, uint n_cols, float16 *res) \
    { \
        __global const int *xs_ = CS_I4_KSUMS(xsq, dxq, nb, n_cols); \
        float16 acc[C]; \
        uint col[C]; \
        _Pragma("unroll") for (int c = 0; c < C; c++) { \
            acc[c] = (float16)0.0f; \
            col[c] = min(c0 + c, n_cols - 1); \
        } \
        for (uint sb = 0; sb < nb / 8; sb++) { \
            __global const uchar *p = wg + (size_t)sb * 2368; \
            const float16 d = vload_half16(0, (__global const half *)p); \
            const float16 dmin = vload_half16(1, (__global const half *)p); \
            for (uint u = 0; u < 8; u++) { \
                const float16 ds = d * convert_float16(vload16(0, p + 64 + 16 * u)); \
                const float16 dm = dmin * convert_float16(vload16(0, p + 192 + 16 * u)); \
                cs_i4u lo[4], hi[4]; \
                CS_I4_LOAD(lo, hi, p + 320 + 256 * u); \
                const uint b = 8 * sb + u; \
                uint h; \
                const uint at = cs_i4_xat(nb, b, &h); \
                _Pragma("unroll") for (int c = 0; c < C; c++) { \
                    __global const char *xa = xq + (size_t)col[c] * n_in + at; \
                    const float dx = dxq[(size_t)col[c] * nb + b]; \
                    cs_i4i I = CS_I4_SPLAT(0); \
                    CS_I4_BLOCK(I, lo, hi, xa, h); \
                    const int16 Iv = CS_I4_TOI16(I); \
                    acc[c] = fma(convert_float16(Iv), ds * dx, acc[c]); \
                    acc[c] = fma(dm, (float16)(-(dx * (float)xs_[(size_t)col[c] * nb + b])), acc[c]); \
                } \
            } \
        } \
        _Pragma("unroll") for (int c = 0; c < C; c++) \
            res[c] = acc[c]; \
    }

CS_I4_TILE_Q4_0(cs_i4_tile1_q4_0i, 1)
CS_I4_TILE_Q4_0(cs_i4_tile2_q4_0i, 2)
CS_I4_TILE_Q4_0(cs_i4_tile4_q4_0i, 4)
CS_I4_TILE_Q4_0(cs_i4_tile8_q4_0i, 8)
CS_I4_TILE_Q4_K(cs_i4_tile1_q4_Ki, 1)
CS_I4_TILE_Q4_K(cs_i4_tile2_q4_Ki, 2)
CS_I4_TILE_Q4_K(cs_i4_tile4_q4_Ki, 4)
CS_I4_TILE_Q4_K(cs_i4_tile8_q4_Ki, 8)

/* q6_Ki: q = nibble | 2 high bits << 4 (0..63) as the unsigned operand;
 * per block, I_lo / I_hi = sum over elements [0, 16) / [16, 32) of (q - 32)
 * x (the -32 as -32 times the half's x sum), J = sc_lo I_lo + sc_hi I_hi
 * (exact: |J| < 2^24), acc = fma((float)J, d_r * dx_b, acc): the order of
 * cl/matmul_i8.cl's q6_K, so the same bits as that path */
#define CS_I4_TILE_Q6_K(NAME, C) \
    CS_I4_TARGET void NAME(__global const uchar *wg, uint nb, __global const char *xq, __global const float *dxq, \
                           __global const int *xsq, uint n_in, uint c0, uint n_cols, float16 *res) \
    { \
        __global const int *xs_ = CS_I4_KSUMS(xsq, dxq, nb, n_cols); \
        float16 acc[C]; \
        uint col[C]; \
        _Pragma("unroll") for (int c = 0; c < C; c++) { \
            acc[c] = (float16)0.0f; \
            col[c] = min(c0 + c, n_cols - 1); \
        } \
        for (uint sb = 0; sb < nb / 8; sb++) { \
            __global const uchar *p = wg + (size_t)sb * 3392; \
            const float16 d = vload16(0, (__global const float *)p); \
            for (uint u = 0; u < 8; u++) { \
                const int16 sl = convert_int16(vload16(0, (__global const char *)p + 64 + 32 * u)); \
                const int16 sh = convert_int16(vload16(0, (__global const char *)p + 80 + 32 * u)); \
                __global const uchar *qp = p + 320 + 384 * u; \
                cs_i4u lo[4], hi[4]; \
                CS_I4_LOAD(lo, hi, qp); \
                const cs_i4u h0 = *(__global const cs_i4uu *)(qp + 256), h1 = *(__global const cs_i4uu *)(qp + 320); \
                lo[0] |= h0 & 0x30303030u; /* the bits of v at 4 + 2 v mod 8: one shift and mask each */ \
                lo[1] |= (h0 >> 2) & 0x30303030u; \
                lo[2] |= (h0 << 4) & 0x30303030u; \
                lo[3] |= (h0 << 2) & 0x30303030u; \
                hi[0] |= h1 & 0x30303030u; \
                hi[1] |= (h1 >> 2) & 0x30303030u; \
                hi[2] |= (h1 << 4) & 0x30303030u; \
                hi[3] |= (h1 << 2) & 0x30303030u; \
                const uint b = 8 * sb + u; \
                uint h; \
                const uint at = cs_i4_xat(nb, b, &h); \
                _Pragma("unroll") for (int c = 0; c < C; c++) { \
                    __global const char *xa = xq + (size_t)col[c] * n_in + at; \
                    __global const int *x0 = (__global const int *)xa, *x1 = (__global const int *)(xa + h); \
                    const int sl_ = xs_[(size_t)(n_cols + col[c]) * nb + b]; \
                    const int sh_ = xs_[(size_t)col[c] * nb + b] - sl_; \
                    cs_i4i il = CS_I4_SPLAT(-32 * sl_), ih = CS_I4_SPLAT(-32 * sh_); \
                    _Pragma("unroll") for (int v = 0; v < 4; v++) { \
                        il = CS_I4_DP(il, lo[v], x0[v]); \
                        ih = CS_I4_DP(ih, hi[v], x1[v]); \
                    } \
                    const int16 J = sl * CS_I4_TOI16(il) + sh * CS_I4_TOI16(ih); \
                    acc[c] = fma(convert_float16(J), d * dxq[(size_t)col[c] * nb + b], acc[c]); \
                } \
            } \
        } \
        _Pragma("unroll") for (int c = 0; c < C; c++) \
            res[c] = acc[c]; \
    }

CS_I4_TILE_Q6_K(cs_i4_tile1_q6_Ki, 1)
CS_I4_TILE_Q6_K(cs_i4_tile2_q6_Ki, 2)
CS_I4_TILE_Q6_K(cs_i4_tile4_q6_Ki, 4)
CS_I4_TILE_Q6_K(cs_i4_tile8_q6_Ki, 8)

/* group bytes per block of 32: q4_0i 288, q4_Ki 2368 / 8 */
#define CS_I4_GB_q4_0i 288
#define CS_I4_GB_q4_Ki 296
#define CS_I4_GB_q6_Ki 424 /* 3392 / 8 */

/* Kernels: w (this part), nb (blocks of 32 per row), n_rows (of this part),
 * xq, d_off (bytes: its dx), s_off (bytes: quant_q8's sums), n_cols, y,
 * y_off (the part's first row of column 0), ystride (floats between columns
 * of y). mvi_T: one column per work-item, NDRange (groups of 16 rows,
 * columns). mmiC_T: C columns per work-item, NDRange (column tiles, groups):
 * work-groups in a row share one group's weights while they are in cache. */
#define CS_I4_KERNEL(NAME, TILE, T, C, G, CT) \
    __kernel void NAME(__global const uchar *w, uint nb, uint n_rows, __global const char *xq, uint d_off, \
                       uint s_off, uint n_cols, __global float *y, uint y_off, uint ystride) \
    { \
        const uint g = get_global_id(G); \
        if (16 * g >= n_rows) \
            return; \
        const uint c0 = (C) * get_global_id(CT), nr = min(16u, n_rows - 16 * g); \
        float16 res[C]; \
        TILE(w + (size_t)g * nb * CS_I4_GB_##T, nb, xq, (__global const float *)(xq + d_off), \
             (__global const int *)(xq + s_off), 32 * nb, c0, n_cols, res); \
        for (uint c = 0; c < (C) && c0 + c < n_cols; c++) \
            cs_i4_store(res[c], y + y_off + 16 * g + (size_t)(c0 + c) * ystride, nr); \
    }
/* mviswiglu_T: one column, gate and up rows of the same group, out =
 * silu(g) * u per row as cl/eltwise.cl's swiglu (the same bits as mvi_T
 * twice then swiglu) */
#define CS_I4_SWIGLU(T) \
    __kernel void mviswiglu_##T(__global const uchar *wg, __global const uchar *wu, uint nb, uint n_rows, \
                                __global const char *xq, uint d_off, __global float *y, uint y_off) \
    { \
        const uint g = get_global_id(0); \
        if (16 * g >= n_rows) \
            return; \
        float16 gr[1], ur[1]; \
        __global const float *dx = (__global const float *)(xq + d_off); \
        cs_i4_tile1_##T(wg + (size_t)g * nb * CS_I4_GB_##T, nb, xq, dx, NULL, 32 * nb, 0, 1, gr); \
        cs_i4_tile1_##T(wu + (size_t)g * nb * CS_I4_GB_##T, nb, xq, dx, NULL, 32 * nb, 0, 1, ur); \
        float ga[16], ua[16]; \
        vstore16(gr[0], 0, ga); \
        vstore16(ur[0], 0, ua); \
        const uint nr = min(16u, n_rows - 16 * g); \
        for (uint j = 0; j < nr; j++) { \
            const float gv = ga[j]; \
            y[y_off + 16 * g + j] = gv / (1.0f + exp(-gv)) * ua[j]; \
        } \
    }
/* mvi3_T: one column, Q, K and V (single parts, one layout and n_in) in
 * one launch: groups of wq, then wk, then wv (the same bits as mvi_T) */
#define CS_I4_QKV(T) \
    __kernel void mvi3_##T(__global const uchar *wq, __global const uchar *wk, __global const uchar *wv, uint nb, \
                           uint nq, uint nk, uint nv, __global const char *xq, uint d_off, __global float *q, \
                           uint q_off, __global float *k, uint k_off, __global float *v, uint v_off) \
    { \
        uint g = get_global_id(0); \
        const uint gq = (nq + 15) / 16, gk = (nk + 15) / 16, gv = (nv + 15) / 16; \
        __global const uchar *w = wq; \
        __global float *y = q + q_off; \
        uint n = nq; \
        if (g >= gq + gk) { \
            g -= gq + gk; \
            w = wv; \
            y = v + v_off; \
            n = nv; \
        } else if (g >= gq) { \
            g -= gq; \
            w = wk; \
            y = k + k_off; \
            n = nk; \
        } \
        if (16 * g >= n || get_global_id(0) >= gq + gk + gv) \
            return; \
        float16 res[1]; \
        cs_i4_tile1_##T(w + (size_t)g * nb * CS_I4_GB_##T, nb, xq, (__global const float *)(xq + d_off), NULL, \
                        32 * nb, 0, 1, res); \
        cs_i4_store(res[0], y + 16 * g, min(16u, n - 16 * g)); \
    }
#define CS_I4_KERNELS(T) \
    CS_I4_SWIGLU(T) \
    CS_I4_QKV(T) \
    CS_I4_KERNEL(mvi_##T, cs_i4_tile1_##T, T, 1, 0, 1) \
    CS_I4_KERNEL(mmi2_##T, cs_i4_tile2_##T, T, 2, 1, 0) \
    CS_I4_KERNEL(mmi4_##T, cs_i4_tile4_##T, T, 4, 1, 0) \
    CS_I4_KERNEL(mmi8_##T, cs_i4_tile8_##T, T, 8, 1, 0)

CS_I4_KERNELS(q4_0i)
CS_I4_KERNELS(q4_Ki)
CS_I4_KERNELS(q6_Ki)

/* mvi3_T_TV: mvi3_T with V of layout TV (Q4_K_M: q6_K V on half the
 * layers), the same bits as mvi_T, mvi_T, mvi_TV */
#define CS_I4_QKV_MIXED(T, TV) \
    __kernel void mvi3_##T##_##TV(__global const uchar *wq, __global const uchar *wk, __global const uchar *wv, \
                                  uint nb, uint nq, uint nk, uint nv, __global const char *xq, uint d_off, \
                                  __global float *q, uint q_off, __global float *k, uint k_off, __global float *v, \
                                  uint v_off) \
    { \
        uint g = get_global_id(0); \
        const uint gq = (nq + 15) / 16, gk = (nk + 15) / 16; \
        __global const float *dx = (__global const float *)(xq + d_off); \
        float16 res[1]; \
        if (g >= gq + gk) { \
            g -= gq + gk; \
            if (16 * g >= nv) \
                return; \
            cs_i4_tile1_##TV(wv + (size_t)g * nb * CS_I4_GB_##TV, nb, xq, dx, NULL, 32 * nb, 0, 1, res); \
            cs_i4_store(res[0], v + v_off + 16 * g, min(16u, nv - 16 * g)); \
            return; \
        } \
        __global const uchar *w = g >= gq ? wk : wq; \
        __global float *y = g >= gq ? k + k_off : q + q_off; \
        const uint n = g >= gq ? nk : nq; \
        g = g >= gq ? g - gq : g; \
        if (16 * g >= n) \
            return; \
        cs_i4_tile1_##T(w + (size_t)g * nb * CS_I4_GB_##T, nb, xq, dx, NULL, 32 * nb, 0, 1, res); \
        cs_i4_store(res[0], y + 16 * g, min(16u, n - 16 * g)); \
    }
CS_I4_QKV_MIXED(q4_Ki, q6_Ki)

/* Embedding gather from the i4 layouts (as cl/getrows.cl, the same float
 * values as the GGUF decoders of cl/blocks.cl): out row t = W row ids[ids_off
 * + t]; ids outside [0, n_out) give zeros (written by the part with r0 ==
 * 0). NDRange: (blocks of 32, n). */
inline void cs_i4_gr_q4_0i(__global const uchar *w, uint nb, uint g, uint j, uint s, __global float *o)
{
    __global const uchar *p = w + ((size_t)g * nb + s) * 288;
    const float d = vload_half(j, (__global const half *)p);
    for (uint v = 0; v < 4; v++)
        for (uint i = 0; i < 4; i++) {
            const uchar q = p[32 + 64 * v + 4 * j + i];
            o[4 * v + i] = d * ((float)(q & 15) - 8.0f);
            o[16 + 4 * v + i] = d * ((float)(q >> 4) - 8.0f);
        }
}
inline void cs_i4_gr_q4_Ki(__global const uchar *w, uint nb, uint g, uint j, uint s, __global float *o)
{
    __global const uchar *p = w + ((size_t)g * (nb / 8) + s / 8) * 2368;
    const uint u = s % 8;
    __global const half *f = (__global const half *)p;
    const float d = vload_half(j, f) * (float)p[64 + 16 * u + j];
    const float m = vload_half(16 + j, f) * (float)p[192 + 16 * u + j];
    for (uint v = 0; v < 4; v++)
        for (uint i = 0; i < 4; i++) {
            const uchar q = p[320 + 256 * u + 64 * v + 4 * j + i];
            o[4 * v + i] = fma(d, (float)(q & 15), -m);
            o[16 + 4 * v + i] = fma(d, (float)(q >> 4), -m);
        }
}

#define CS_I4_GETROWS(T) \
    __kernel void getrows_##T(__global const uchar *w, uint n_in, uint r0, uint n_rows, uint n_out, \
                              __global const int *ids, uint ids_off, uint n, __global float *out, uint out_off) \
    { \
        const uint s = get_global_id(0), t = get_global_id(1), nb = n_in / 32; \
        if (t >= n || s >= nb) \
            return; \
        const int id = ids[ids_off + t]; \
        __global float *o = out + out_off + (size_t)t * n_in + 32 * s; \
        if (id < 0 || (uint)id >= n_out) { \
            if (r0 == 0) \
                for (uint k = 0; k < 32; k++) \
                    o[k] = 0.0f; \
            return; \
        } \
        if ((uint)id < r0 || (uint)id - r0 >= n_rows) \
            return; \
        const uint r = (uint)id - r0; \
        cs_i4_gr_##T(w, nb, r / 16, r % 16, s, o); \
    }

CS_I4_GETROWS(q4_0i)
CS_I4_GETROWS(q4_Ki)

/* q6_Ki: (d sc) * (q - 32) as the GGUF decoder */
inline void cs_i4_gr_q6_Ki(__global const uchar *w, uint nb, uint g, uint j, uint s, __global float *o)
{
    __global const uchar *p = w + ((size_t)g * (nb / 8) + s / 8) * 3392;
    const uint u = s % 8;
    const float d = ((__global const float *)p)[j];
    const float dl = d * (float)((__global const char *)p)[64 + 32 * u + j];
    const float dh = d * (float)((__global const char *)p)[80 + 32 * u + j];
    __global const uchar *q = p + 320 + 384 * u + 4 * j;
    for (uint v = 0; v < 4; v++)
        for (uint i = 0; i < 4; i++) {
            const uchar n = q[64 * v + i];
            const uint sh = (4 + 2 * v) % 8;
            const int a = (n & 15) | (((q[256 + i] >> sh) & 3) << 4);
            const int b = (n >> 4) | (((q[320 + i] >> sh) & 3) << 4);
            o[4 * v + i] = dl * (float)(a - 32);
            o[16 + 4 * v + i] = dh * (float)(b - 32);
        }
}
CS_I4_GETROWS(q6_Ki)

#endif
