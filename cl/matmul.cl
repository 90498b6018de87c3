/* matmul.cl: y(n_cols, n_out) = x(n_cols, n_in) . W^T for every weight type
 * (decoders in blocks.cl). One launch covers one row part of a weight (rows
 * [r0, r0 + n_rows) of W live at w; the host adds r0 to y_off).
 *   mv_T: n_cols = 1 (decode); CPU: two rows per work-item.
 *   mm_T: a tile of up to CS_MM_TCC (CPU, 8) or CS_MM_TC (GPU, 16) columns per
 *         work-item (CPU) or work-group (GPU), dimension 1 of the NDRange
 *         walks the column tiles; every decoded weight sub-block is applied
 *         to all columns of the tile, so a tile reads the weights once.
 *   mm2_T: (CPU) two rows and up to CS_MM2_TCC (4) columns per work-item,
 *         for large n_in (the host's choice; see the kernel).
 * CPU family: one row per work-item, float16 math, no local memory.
 * GPU family: one row per work-group of CS_MM_WG, local-memory reduction.
 * Arguments: w (bytes of this part), row_bytes, n_in, n_rows (of this part),
 * x + x_off (floats, column c at x_off + c n_in), n_cols, y + y_off (floats,
 * column c at y_off + c y_stride). */

/* The sizes CS_MM_WG, CS_MM_TC, CS_MM_TCC, CS_MM2_TCC, CS_MV_ROWS (rows per
 * work-item of the CPU mat-vecs and mm2_T) and CS_PF_AHEAD come as -D from
 * src/cl/kconst.h, their one definition, which src/ops/matmul.c sizes its
 * launches with. */
#if !defined(CS_MM_WG) || !defined(CS_MM_TC) || !defined(CS_MM_TCC) || !defined(CS_MM2_TCC) || \
    !defined(CS_MV_ROWS) || !defined(CS_PF_AHEAD)
#error "matmul.cl: CS_MM_* constants missing (the -D constants of src/cl/kconst.h)"
#endif
#if CS_MV_ROWS != 2
#error "matmul.cl: the CPU mat-vecs and mm2_T compute rows r and r + 1 per work-item"
#endif

/* ---- the one reduction order (batch invariance) ----
 * Every path (mat-vec, small mat-mat, tiled mat-mat; any n_cols, any column
 * tile position) computes element (c, r) of y in exactly this order, so a
 * column is bitwise identical whatever else is in the batch (speculative
 * verification relies on it). Only explicit fma() is used where a product
 * feeds a sum (-cl-mad-enable would otherwise let the compiler fuse in one
 * kernel and not in another).
 * CPU family: two float16 chains per (row, column): lo halves (elements
 *   [32 s, 32 s + 16)) and hi halves of every 32-element sub-block s, in
 *   increasing s; then hsum16(lo + hi); then the float-type tail k >= 32 nsb
 *   in increasing k.
 * GPU family: work-item l of CS_MM_WG sums sub-blocks s = l, l + WG, ... as
 *   acc = (acc + dot16(lo)) + dot16(hi); the tail likewise by element; then
 *   the fixed power-of-two tree of cs_wg_sum.
 *
 * The contract for any other path (a tiled prefill mat-mat must match it to
 * keep verification rows equal to plain decode), CPU family, element (c, r)
 * with W row r, x column c, nsb = n_in / 32:
 *   1. weights: w_k as cs_dq32_T decodes it (cl/blocks.cl; exact for the
 *      float types: f32 as is, f16 exact half -> float, bf16 bits << 16;
 *      block types: the float expression documented at each decoder, e.g.
 *      q8_0 d*q, q4_0 d*(q - 8), q4_K fma(d*sc, q, -(dmin*m)), q6_K
 *      (d*sc)*(q - 32); the repacked layouts q8_0f, q4_Kr, q5_Kr, q6_Kr give
 *      the same values bit for bit);
 *   2. 32 float lanes: lane i (0..15) of alo accumulates k = 32 s + i, lane i
 *      of ahi k = 32 s + 16 + i, for s = 0, 1, ..., nsb - 1 in that order,
 *      each step one fma(w_k, x_k, lane) (no other contraction, no
 *      reassociation), all lanes starting at +0.0f;
 *   3. v = alo + ahi (16 lane-wise adds), then hsum16(v): a = v[0..7] +
 *      v[8..15], b = a[0..3] + a[4..7], (b0 + b1) + (b2 + b3);
 *   4. float types only: the tail k = 32 nsb .. n_in - 1, sum = fma(w_k,
 *      x_k, sum) in increasing k.
 * x is used as given (f32; no activation quantization: there is no int8 path
 * yet). Neither the column count, the column's position in its tile, the
 * row's position in its work-item nor the weight's split into parts changes
 * any of it (tests/test-kernels.c checks mat-vec against 2..512 columns). */

/* CPU family: sub-block s of row wr folded into the row's two chains (alo,
 * ahi), x's halves xl, xh of that sub-block loaded by the caller (shared
 * by the rows of a work-item) */
#define CS_STEP(T, wr, s, xl, xh, alo, ahi) \
    do { \
        float16 lo_, hi_; \
        cs_dq32_##T((wr), (s), &lo_, &hi_); \
        (alo) = fma(lo_, (xl), (alo)); \
        (ahi) = fma(hi_, (xh), (ahi)); \
    } while (0)

#if CS_FAMILY_CPU

/* CS_MM_TCC, columns per work-item in mm_T: 2 float16 accumulators each (8 -> 16 zmm) */

/* Software prefetch. PoCL runs the work-items of a group one after another,
 * so the weight bytes a work-item streams through continue in the next
 * work-item's rows: a prefetch CS_PF_AHEAD bytes ahead of the current position
 * of each stream keeps enough cache-line reads in flight (the hardware
 * prefetcher alone restarts at every 4 KiB page). On PoCL 3.1 (Skylake, 2
 * cores) it took the decode mat-vec sequence of a 110M Q8_0 model from about
 * 11 to 15 GB/s. Not in mm_T: a tile reuses each weight row over its
 * columns (compute-bound), and there it cost prefill a third of its speed.
 * CS_PREFETCH and CS_PF_LINES: cl/common.cl. CS_PF_AHEAD: bytes; 4-16 KiB
 * measured alike, 1.7 KiB slower. */

/* cs_mv2_T: rows r and r + 1 (when < n_rows) of y = W x (4 independent FMA
 * chains hide the FMA latency; x is loaded once for both rows). mv_T: two
 * rows per work-item; mv3_T: the same over the Q, K and V weights of a layer
 * in one launch, dimension 1 of the NDRange walking the columns of x (a
 * few rows of a verification: column c at x_off + c n_in, its outputs at
 * q_off + c nq, ...; each column exactly as a mat-vec of it alone). */
#define CS_MV2(T) \
    inline void cs_mv2_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, uint r, \
                           __global const float *xc, __global float *y) \
    { \
        const uint r1 = min(r + 1, n_rows - 1); /* the last odd row: computed twice, stored once */ \
        __global const uchar *wr = w + (size_t)r * row_bytes, *wr1 = w + (size_t)r1 * row_bytes; \
        const uint nsb = n_in / 32; \
        /* rows r, r + 1 are one stream (the next work-item goes on after them) */ \
        const uint pstep = nsb ? 2 * row_bytes / nsb : 0; \
        __global const uchar *pf = wr + CS_PF_AHEAD; \
        float16 alo = 0.0f, ahi = 0.0f, blo = 0.0f, bhi = 0.0f; \
        for (uint s = 0; s < nsb; s++) { \
            CS_PF_LINES(pf, pstep); \
            pf += pstep; \
            const float16 xl = vload16(2 * s, xc), xh = vload16(2 * s + 1, xc); \
            CS_STEP(T, wr, s, xl, xh, alo, ahi); \
            CS_STEP(T, wr1, s, xl, xh, blo, bhi); \
        } \
        float sum = cs_hsum16(alo + ahi), sum1 = cs_hsum16(blo + bhi); \
        for (uint k = nsb * 32; k < n_in; k++) { \
            sum = fma(cs_dq1_##T(wr, k), xc[k], sum); \
            sum1 = fma(cs_dq1_##T(wr1, k), xc[k], sum1); \
        } \
        y[r] = sum; \
        if (r + 1 < n_rows) \
            y[r + 1] = sum1; \
    }
CS_FOR_EACH_WTYPE(CS_MV2)

#define CS_MV3(T) \
    __kernel void mv3_##T(__global const uchar *wq, __global const uchar *wk, __global const uchar *wv, \
                          uint row_bytes, uint n_in, uint nq, uint nk, uint nv, __global const float *x, \
                          uint x_off, __global float *q, uint q_off, __global float *k, uint k_off, \
                          __global float *v, uint v_off) \
    { \
        uint g = get_global_id(0); \
        const uint c = get_global_id(1); \
        x_off += c * n_in; \
        q_off += c * nq; \
        k_off += c * nk; \
        v_off += c * nv; \
        const uint pq = (nq + CS_MV_ROWS - 1) / CS_MV_ROWS, pk = (nk + CS_MV_ROWS - 1) / CS_MV_ROWS; \
        const uint pv = (nv + CS_MV_ROWS - 1) / CS_MV_ROWS; \
        if (g < pq) \
            cs_mv2_##T(wq, row_bytes, n_in, nq, CS_MV_ROWS * g, x + x_off, q + q_off); \
        else if ((g -= pq) < pk) \
            cs_mv2_##T(wk, row_bytes, n_in, nk, CS_MV_ROWS * g, x + x_off, k + k_off); \
        else if ((g -= pk) < pv) \
            cs_mv2_##T(wv, row_bytes, n_in, nv, CS_MV_ROWS * g, x + x_off, v + v_off); \
    }
CS_FOR_EACH_WTYPE(CS_MV3)

/* cs_mm_tile_T (CPU): one weight row wr against a tile of nc <= CS_MM_TCC
 * columns of x (xt: the first column, n_in floats each) into sum[c], each
 * dot in the one order (mm_T; the fused mm3_T and mmswiglu_T). */
#define CS_MM_TILE(T) \
    inline void cs_mm_tile_##T(__global const uchar *wr, uint n_in, __global const float *xt, uint nc, \
                               float *sum) \
    { \
        const uint nsb = n_in / 32; \
        float16 alo[CS_MM_TCC], ahi[CS_MM_TCC]; \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) alo[c] = ahi[c] = 0.0f; \
        if (nc == CS_MM_TCC) { \
            for (uint s = 0; s < nsb; s++) { \
                float16 lo, hi; \
                cs_dq32_##T(wr, s, &lo, &hi); \
                _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) { \
                    __global const float *xc = xt + (size_t)c * n_in; \
                    alo[c] = fma(lo, vload16(2 * s, xc), alo[c]); \
                    ahi[c] = fma(hi, vload16(2 * s + 1, xc), ahi[c]); \
                } \
            } \
        } else { \
            for (uint s = 0; s < nsb; s++) { \
                float16 lo, hi; \
                cs_dq32_##T(wr, s, &lo, &hi); \
                _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) { \
                    __global const float *xc = xt + (size_t)c * n_in; \
                    alo[c] = fma(lo, vload16(2 * s, xc), alo[c]); \
                    ahi[c] = fma(hi, vload16(2 * s + 1, xc), ahi[c]); \
                } \
            } \
        } \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) { \
            float v = cs_hsum16(alo[c] + ahi[c]); \
            __global const float *xc = xt + (size_t)c * n_in; \
            for (uint k = nsb * 32; k < n_in; k++) \
                v = fma(cs_dq1_##T(wr, k), xc[k], v); \
            sum[c] = v; \
        } \
    }
CS_FOR_EACH_WTYPE(CS_MM_TILE)

/* mm3_T, mmswiglu_T (CPU): mv3_T and mvswiglu_T for more columns, in mm_T's
 * tiles (one weight row, up to CS_MM_TCC columns per work-item; each
 * (row, column) in the one order, so the bits of the unfused mat-mats and,
 * for mmswiglu_T, of cl/eltwise.cl's swiglu). mm3_T: dimension 0 walks the
 * rows of Q, then K, then V; mmswiglu_T: out[c][r] = silu(gate) * up. */
#define CS_MM3(T) \
    __kernel void mm3_##T(__global const uchar *wq, __global const uchar *wk, __global const uchar *wv, \
                          uint row_bytes, uint n_in, uint nq, uint nk, uint nv, __global const float *x, \
                          uint x_off, uint n_cols, __global float *q, uint q_off, __global float *k, \
                          uint k_off, __global float *v, uint v_off) \
    { \
        uint r = get_global_id(0); \
        const uint c0 = get_global_id(1) * CS_MM_TCC; \
        if (r >= nq + nk + nv || c0 >= n_cols) \
            return; \
        __global const uchar *w = r < nq ? wq : r < nq + nk ? wk : wv; \
        __global float *y = r < nq ? q : r < nq + nk ? k : v; \
        const uint n = r < nq ? nq : r < nq + nk ? nk : nv, y_off = r < nq ? q_off : r < nq + nk ? k_off : v_off; \
        r -= r < nq ? 0 : r < nq + nk ? nq : nq + nk; \
        const uint nc = min((uint)CS_MM_TCC, n_cols - c0); \
        float sum[CS_MM_TCC]; \
        cs_mm_tile_##T(w + (size_t)r * row_bytes, n_in, x + x_off + (size_t)c0 * n_in, nc, sum); \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) \
            y[y_off + (size_t)(c0 + c) * n + r] = sum[c]; \
    }
CS_FOR_EACH_WTYPE(CS_MM3)

#define CS_MMSWIGLU(T) \
    __kernel void mmswiglu_##T(__global const uchar *wg, __global const uchar *wu, uint row_bytes, uint n_in, \
                               uint n_rows, __global const float *x, uint x_off, uint n_cols, \
                               __global float *y, uint y_off) \
    { \
        const uint r = get_global_id(0), c0 = get_global_id(1) * CS_MM_TCC; \
        if (r >= n_rows || c0 >= n_cols) \
            return; \
        const uint nc = min((uint)CS_MM_TCC, n_cols - c0); \
        __global const float *xt = x + x_off + (size_t)c0 * n_in; \
        float g[CS_MM_TCC], u[CS_MM_TCC]; \
        cs_mm_tile_##T(wg + (size_t)r * row_bytes, n_in, xt, nc, g); \
        cs_mm_tile_##T(wu + (size_t)r * row_bytes, n_in, xt, nc, u); \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) \
            y[y_off + (size_t)(c0 + c) * n_rows + r] = g[c] / (1.0f + exp(-g[c])) * u[c]; \
    }
CS_FOR_EACH_WTYPE(CS_MMSWIGLU)

#define CS_MATMUL(T) \
    __kernel void mv_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                         __global const float *x, uint x_off, __global float *y, uint y_off) \
    { \
        const uint r = CS_MV_ROWS * get_global_id(0); \
        if (r < n_rows) \
            cs_mv2_##T(w, row_bytes, n_in, n_rows, r, x + x_off, y + y_off); \
    } \
    __kernel void mm_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                         __global const float *x, uint x_off, uint n_cols, __global float *y, \
                         uint y_off, uint y_stride) \
    { \
        const uint r = get_global_id(0), c0 = get_global_id(1) * CS_MM_TCC; \
        if (r >= n_rows || c0 >= n_cols) \
            return; \
        const uint nc = min((uint)CS_MM_TCC, n_cols - c0); \
        float sum[CS_MM_TCC]; \
        cs_mm_tile_##T(w + (size_t)r * row_bytes, n_in, x + x_off + (size_t)c0 * n_in, nc, sum); \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TCC; c++) if (c < nc) \
            y[y_off + (size_t)(c0 + c) * y_stride + r] = sum[c]; \
    }

/* mm2_T (CPU): rows r, r + 1 and a tile of up to CS_MM2_TCC columns per
 * work-item (16 accumulators, x loaded once for both rows). mm_T's x tile
 * (CS_MM_TCC columns of n_in floats) is re-read by every work-item of a group;
 * once it no longer fits the L1 data cache (n_in above ~1536 with 48 KiB) it
 * streams from L2 and mm_T slows down by 10-20%. This tile is half as wide.
 * The host picks it for such n_in; each (row, column) in the one order. */
#define CS_MM2_STEP(T, c) \
    do { \
        __global const float *xc = xt + (size_t)(c) * n_in; \
        const float16 xl = vload16(2 * s, xc), xh = vload16(2 * s + 1, xc); \
        alo[c] = fma(lo, xl, alo[c]); \
        ahi[c] = fma(hi, xh, ahi[c]); \
        blo[c] = fma(lo1, xl, blo[c]); \
        bhi[c] = fma(hi1, xh, bhi[c]); \
    } while (0)
#define CS_MM2(T) \
    __kernel void mm2_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                          __global const float *x, uint x_off, uint n_cols, __global float *y, \
                          uint y_off, uint y_stride) \
    { \
        const uint r = CS_MV_ROWS * get_global_id(0), c0 = get_global_id(1) * CS_MM2_TCC; \
        if (r >= n_rows || c0 >= n_cols) \
            return; \
        const uint r1 = min(r + 1, n_rows - 1); /* the last odd row: computed twice, stored once */ \
        const uint nc = min((uint)CS_MM2_TCC, n_cols - c0); \
        __global const uchar *wr = w + (size_t)r * row_bytes, *wr1 = w + (size_t)r1 * row_bytes; \
        __global const float *xt = x + x_off + (size_t)c0 * n_in; \
        const uint nsb = n_in / 32; \
        float16 alo[CS_MM2_TCC], ahi[CS_MM2_TCC], blo[CS_MM2_TCC], bhi[CS_MM2_TCC]; \
        _Pragma("unroll") for (uint c = 0; c < CS_MM2_TCC; c++) alo[c] = ahi[c] = blo[c] = bhi[c] = 0.0f; \
        for (uint s = 0; s < nsb; s++) { \
            float16 lo, hi, lo1, hi1; \
            cs_dq32_##T(wr, s, &lo, &hi); \
            cs_dq32_##T(wr1, s, &lo1, &hi1); \
            if (nc == CS_MM2_TCC) { \
                _Pragma("unroll") for (uint c = 0; c < CS_MM2_TCC; c++) CS_MM2_STEP(T, c); \
            } else { \
                _Pragma("unroll") for (uint c = 0; c < CS_MM2_TCC; c++) if (c < nc) CS_MM2_STEP(T, c); \
            } \
        } \
        _Pragma("unroll") for (uint c = 0; c < CS_MM2_TCC; c++) if (c < nc) { \
            float sum = cs_hsum16(alo[c] + ahi[c]), sum1 = cs_hsum16(blo[c] + bhi[c]); \
            __global const float *xc = xt + (size_t)c * n_in; \
            for (uint k = nsb * 32; k < n_in; k++) { \
                sum = fma(cs_dq1_##T(wr, k), xc[k], sum); \
                sum1 = fma(cs_dq1_##T(wr1, k), xc[k], sum1); \
            } \
            y[y_off + (size_t)(c0 + c) * y_stride + r] = sum; \
            if (r + 1 < n_rows) \
                y[y_off + (size_t)(c0 + c) * y_stride + r + 1] = sum1; \
        } \
    }
CS_FOR_EACH_WTYPE(CS_MM2)

/* mvswiglu_T: out[r] = silu(g) * u, g = row r of wg . x, u = row r of wu . x
 * (gate and up projections of the FFN and the SwiGLU in one launch; each
 * dot in the one order above, the SwiGLU as cl/eltwise.cl's swiglu). Rows r
 * and r + 1 of both matrices per work-item: two streams (gate pair, up
 * pair), 8 independent FMA chains, x loaded once for the four rows.
 * Dimension 1 of the NDRange walks the columns as mv3_T's (column c at
 * x_off + c n_in, out at y_off + c n_rows). */
#define CS_MVSWIGLU(T) \
    __kernel void mvswiglu_##T(__global const uchar *wg, __global const uchar *wu, uint row_bytes, \
                               uint n_in, uint n_rows, __global const float *x, uint x_off, \
                               __global float *y, uint y_off) \
    { \
        const uint r = CS_MV_ROWS * get_global_id(0); \
        if (r >= n_rows) \
            return; \
        x_off += get_global_id(1) * n_in; \
        y_off += get_global_id(1) * n_rows; \
        const uint r1 = min(r + 1, n_rows - 1); /* the last odd row: computed twice, stored once */ \
        __global const uchar *g0 = wg + (size_t)r * row_bytes, *g1 = wg + (size_t)r1 * row_bytes; \
        __global const uchar *u0 = wu + (size_t)r * row_bytes, *u1 = wu + (size_t)r1 * row_bytes; \
        __global const float *xc = x + x_off; \
        const uint nsb = n_in / 32; \
        const uint pstep = nsb ? 2 * row_bytes / nsb : 0; \
        __global const uchar *pf = g0 + CS_PF_AHEAD / 2, *pf1 = u0 + CS_PF_AHEAD / 2; \
        float16 alo = 0.0f, ahi = 0.0f, blo = 0.0f, bhi = 0.0f; /* gate rows r, r1 */ \
        float16 clo = 0.0f, chi = 0.0f, dlo = 0.0f, dhi = 0.0f; /* up rows r, r1 */ \
        for (uint s = 0; s < nsb; s++) { \
            CS_PF_LINES(pf, pstep); \
            CS_PF_LINES(pf1, pstep); \
            pf += pstep; \
            pf1 += pstep; \
            const float16 xl = vload16(2 * s, xc), xh = vload16(2 * s + 1, xc); \
            CS_STEP(T, g0, s, xl, xh, alo, ahi); \
            CS_STEP(T, g1, s, xl, xh, blo, bhi); \
            CS_STEP(T, u0, s, xl, xh, clo, chi); \
            CS_STEP(T, u1, s, xl, xh, dlo, dhi); \
        } \
        float gv = cs_hsum16(alo + ahi), gv1 = cs_hsum16(blo + bhi); \
        float uv = cs_hsum16(clo + chi), uv1 = cs_hsum16(dlo + dhi); \
        for (uint k = nsb * 32; k < n_in; k++) { \
            gv = fma(cs_dq1_##T(g0, k), xc[k], gv); \
            gv1 = fma(cs_dq1_##T(g1, k), xc[k], gv1); \
            uv = fma(cs_dq1_##T(u0, k), xc[k], uv); \
            uv1 = fma(cs_dq1_##T(u1, k), xc[k], uv1); \
        } \
        y[y_off + r] = gv / (1.0f + exp(-gv)) * uv; \
        if (r + 1 < n_rows) \
            y[y_off + r + 1] = gv1 / (1.0f + exp(-gv1)) * uv1; \
    }
CS_FOR_EACH_WTYPE(CS_MVSWIGLU)

#else /* GPU family */

#define CS_MATMUL(T) \
    __kernel __attribute__((reqd_work_group_size(CS_MM_WG, 1, 1))) void mv_##T( \
        __global const uchar *w, uint row_bytes, uint n_in, uint n_rows, __global const float *x, \
        uint x_off, __global float *y, uint y_off) \
    { \
        __local float scratch[CS_MM_WG]; \
        const uint r = get_group_id(0), lid = get_local_id(0); \
        if (r >= n_rows) \
            return; /* whole group */ \
        __global const uchar *wr = w + (size_t)r * row_bytes; \
        __global const float *xc = x + x_off; \
        const uint nsb = n_in / 32; \
        float acc = 0.0f; \
        for (uint s = lid; s < nsb; s += CS_MM_WG) { \
            float16 lo, hi; \
            cs_dq32_##T(wr, s, &lo, &hi); \
            acc = (acc + cs_dot16(lo, vload16(2 * s, xc))) + cs_dot16(hi, vload16(2 * s + 1, xc)); \
        } \
        for (uint k = nsb * 32 + lid; k < n_in; k += CS_MM_WG) \
            acc = fma(cs_dq1_##T(wr, k), xc[k], acc); \
        const float sum = cs_wg_sum(acc, scratch); \
        if (lid == 0) \
            y[y_off + r] = sum; \
    } \
    __kernel __attribute__((reqd_work_group_size(CS_MM_WG, 1, 1))) void mm_##T( \
        __global const uchar *w, uint row_bytes, uint n_in, uint n_rows, __global const float *x, \
        uint x_off, uint n_cols, __global float *y, uint y_off, uint y_stride) \
    { \
        __local float red[CS_MM_TC * CS_MM_WG]; \
        const uint r = get_group_id(0), lid = get_local_id(0), c0 = get_group_id(1) * CS_MM_TC; \
        if (r >= n_rows || c0 >= n_cols) \
            return; /* whole group */ \
        const uint nc = min((uint)CS_MM_TC, n_cols - c0); \
        __global const uchar *wr = w + (size_t)r * row_bytes; \
        __global const float *xt = x + x_off + (size_t)c0 * n_in; \
        const uint nsb = n_in / 32; \
        float acc[CS_MM_TC]; \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) acc[c] = 0.0f; \
        for (uint s = lid; s < nsb; s += CS_MM_WG) { \
            float16 lo, hi; \
            cs_dq32_##T(wr, s, &lo, &hi); \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) { \
                __global const float *xc = xt + (size_t)c * n_in; \
                acc[c] = (acc[c] + cs_dot16(lo, vload16(2 * s, xc))) + cs_dot16(hi, vload16(2 * s + 1, xc)); \
            } \
        } \
        for (uint k = nsb * 32 + lid; k < n_in; k += CS_MM_WG) { \
            const float wk = cs_dq1_##T(wr, k); \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) \
                acc[c] = fma(wk, xt[(size_t)c * n_in + k], acc[c]); \
        } \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) red[c * CS_MM_WG + lid] = acc[c]; \
        barrier(CLK_LOCAL_MEM_FENCE); \
        for (uint st = CS_MM_WG / 2; st > 0; st >>= 1) { \
            if (lid < st) { \
                _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) \
                    red[c * CS_MM_WG + lid] += red[c * CS_MM_WG + lid + st]; \
            } \
            barrier(CLK_LOCAL_MEM_FENCE); \
        } \
        if (lid < nc) \
            y[y_off + (size_t)(c0 + lid) * y_stride + r] = red[lid * CS_MM_WG]; \
    }

#endif

CS_FOR_EACH_WTYPE(CS_MATMUL)
