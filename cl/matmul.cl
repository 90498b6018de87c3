/* matmul.cl: y(n_cols, n_out) = x(n_cols, n_in) . W^T for every weight type
 * (decoders in blocks.cl). One launch covers one row part of a weight (rows
 * [r0, r0 + n_rows) of W live at w; the host adds r0 to y_off).
 *   mv_T: n_cols = 1 (decode).
 *   mm_T: a tile of up to CS_MM_TC columns per work-item (CPU) or work-group
 *         (GPU), dimension 1 of the NDRange walks the column tiles; every
 *         decoded weight sub-block is applied to all columns of the tile, so
 *         n_cols <= 16 reads the weights once, prefill once per 16 columns.
 * CPU family: one row per work-item, float16 math, no local memory.
 * GPU family: one row per work-group of CS_MM_WG, local-memory reduction.
 * Arguments: w (bytes of this part), row_bytes, n_in, n_rows (of this part),
 * x + x_off (floats, column c at x_off + c n_in), n_cols, y + y_off (floats,
 * column c at y_off + c y_stride). */

#define CS_MM_TC 16
#ifndef CS_MM_WG
#define CS_MM_WG 64
#endif

/* sum over the float-type tail [k0, n_in) of one row (0 for block types) */
#define CS_TAIL(T, wr, k0, n_in, xc, out) \
    do { \
        for (uint k_ = (k0); k_ < (n_in); k_++) \
            (out) = mad(cs_dq1_##T((wr), k_), (xc)[k_], (out)); \
    } while (0)

/* sub-blocks per unrolled step of the CPU mat-vec (even) */
#define CS_UNROLL_f32 2
#define CS_UNROLL_f16 2
#define CS_UNROLL_bf16 2
#define CS_UNROLL_q8_0 2
#define CS_UNROLL_q8_0f 2
#define CS_UNROLL_q4_0 2
#define CS_UNROLL_q4_1 2
#define CS_UNROLL_q5_0 2
#define CS_UNROLL_q5_1 2
#define CS_UNROLL_q2_K 8
#define CS_UNROLL_q3_K 8
#define CS_UNROLL_q4_K 8
#define CS_UNROLL_q5_K 8
#define CS_UNROLL_q6_K 8

#if CS_FAMILY_CPU

#define CS_MATMUL(T) \
    __kernel void mv_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                         __global const float *x, uint x_off, __global float *y, uint y_off) \
    { \
        const uint r = get_global_id(0); \
        if (r >= n_rows) \
            return; \
        __global const uchar *wr = w + (size_t)r * row_bytes; \
        __global const float *xc = x + x_off; \
        const uint nsb = n_in / 32; \
        /* independent accumulator chains hide the FMA latency; K-quants \
         * unroll a whole super-block so its scales are decoded once */ \
        float16 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f; \
        uint s = 0; \
        for (; s + CS_UNROLL_##T <= nsb; s += CS_UNROLL_##T) { \
            _Pragma("unroll") for (uint u = 0; u < CS_UNROLL_##T; u += 2) { \
                float16 lo, hi, lo2, hi2; \
                cs_dq32_##T(wr, s + u, &lo, &hi); \
                cs_dq32_##T(wr, s + u + 1, &lo2, &hi2); \
                a0 = mad(lo, vload16(2 * (s + u), xc), a0); \
                a1 = mad(hi, vload16(2 * (s + u) + 1, xc), a1); \
                a2 = mad(lo2, vload16(2 * (s + u) + 2, xc), a2); \
                a3 = mad(hi2, vload16(2 * (s + u) + 3, xc), a3); \
            } \
        } \
        for (; s < nsb; s++) { \
            float16 lo, hi; \
            cs_dq32_##T(wr, s, &lo, &hi); \
            a0 = mad(lo, vload16(2 * s, xc), a0); \
            a1 = mad(hi, vload16(2 * s + 1, xc), a1); \
        } \
        float sum = cs_hsum16((a0 + a1) + (a2 + a3)); \
        CS_TAIL(T, wr, nsb * 32, n_in, xc, sum); \
        y[y_off + r] = sum; \
    } \
    __kernel void mm_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                         __global const float *x, uint x_off, uint n_cols, __global float *y, \
                         uint y_off, uint y_stride) \
    { \
        const uint r = get_global_id(0), c0 = get_global_id(1) * CS_MM_TC; \
        if (r >= n_rows || c0 >= n_cols) \
            return; \
        const uint nc = min((uint)CS_MM_TC, n_cols - c0); \
        __global const uchar *wr = w + (size_t)r * row_bytes; \
        __global const float *xt = x + x_off + (size_t)c0 * n_in; \
        const uint nsb = n_in / 32; \
        float16 acc[CS_MM_TC]; \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) acc[c] = 0.0f; \
        for (uint s = 0; s < nsb; s++) { \
            float16 lo, hi; \
            cs_dq32_##T(wr, s, &lo, &hi); \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) { \
                __global const float *xc = xt + (size_t)c * n_in; \
                acc[c] = mad(hi, vload16(2 * s + 1, xc), mad(lo, vload16(2 * s, xc), acc[c])); \
            } \
        } \
        _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) { \
            float sum = cs_hsum16(acc[c]); \
            __global const float *xc = xt + (size_t)c * n_in; \
            CS_TAIL(T, wr, nsb * 32, n_in, xc, sum); \
            y[y_off + (size_t)(c0 + c) * y_stride + r] = sum; \
        } \
    }

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
            acc += cs_dot16(lo, vload16(2 * s, xc)) + cs_dot16(hi, vload16(2 * s + 1, xc)); \
        } \
        for (uint k = nsb * 32 + lid; k < n_in; k += CS_MM_WG) \
            acc = mad(cs_dq1_##T(wr, k), xc[k], acc); \
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
                acc[c] += cs_dot16(lo, vload16(2 * s, xc)) + cs_dot16(hi, vload16(2 * s + 1, xc)); \
            } \
        } \
        for (uint k = nsb * 32 + lid; k < n_in; k += CS_MM_WG) { \
            const float wk = cs_dq1_##T(wr, k); \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) \
                acc[c] = mad(wk, xt[(size_t)c * n_in + k], acc[c]); \
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
