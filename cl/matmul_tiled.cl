/* matmul_tiled.cl: the tiled mat-mat of the float weight types (f32, f16,
 * bf16) for prefill-sized batches: y(n_cols, n_out) = x(n_cols, n_in) . W^T,
 * the arguments of matmul.cl's mm_T (w: bytes of one row part, row_bytes,
 * n_in, n_rows of the part, x + x_off with column c at x_off + c n_in,
 * n_cols, y + y_off with column c at y_off + c y_stride).
 *
 * Batch invariance: every element (c, r) is computed with exactly the
 * operations of matmul.cl's "one reduction order" (its mv_T, mm_T and mm2_T),
 * so a column is bitwise the same whether it goes through a mat-vec, the
 * small mat-mat or these kernels (tests/test-kernels-tiled.c compares them
 * with memcmp):
 *   CPU: chains lo (elements [32 s, 32 s + 16) of sub-block s) and hi
 *     ([32 s + 16, 32 s + 32)) of float16 fma in increasing s, then
 *     cs_hsum16(lo + hi), then the tail k >= 32 nsb by element, increasing k.
 *     The lo and hi chains of a lane never meet before cs_hsum16, so mt_T
 *     runs them as two passes over the tile (lo chains, then hi chains): one
 *     float16 accumulator per (row, column) and pass instead of two, which
 *     leaves the registers for a CS_MT_R x CS_MT_C tile.
 *   GPU: work-item l sums sub-blocks s = l, l + CS_MM_WG, ... as
 *     acc = (acc + cs_dot16(lo, xl)) + cs_dot16(hi, xh), the tail by element,
 *     then the power-of-two tree over the work-group in local memory.
 *
 * CPU family (mt_T): one work-item per tile of CS_MT_R rows x CS_MT_C
 * columns (register tile: each decoded weight half-sub-block is applied to
 * CS_MT_C columns, each x half-sub-block to CS_MT_R rows); a work-group of
 * CS_MT_GR x CS_MT_GC tiles, column tiles fastest, so the group's weight
 * rows stay in L1 across CS_MT_GC work-items while its x block (CS_MT_GC
 * CS_MT_C columns) stays in L2 across its CS_MT_GR row tiles.
 * Rows and columns past the end are clamped (computed again, not stored).
 * GPU family (mtg_T): one work-group of CS_MM_WG per CS_MT_GPU_R rows x
 * CS_MM_TC columns; each x sub-block a work-item loads serves the tile's
 * rows (mm_T: one row per group, so x is read n_rows times; here n_rows /
 * CS_MT_GPU_R), the partial sums of the whole tile reduced in local memory.
 * The fixed order (work-item l owns sub-blocks s = l mod CS_MM_WG of every
 * element) leaves nothing in x or W that two work-items share, so local
 * memory serves the reductions, not staged operands.
 * The sizes come as -D from src/ops/matmul_tiled.h (CS_MT_*, their one
 * definition) and src/cl/kconst.h (CS_MM_WG, CS_MM_TC). */
#if !defined(CS_MT_R) || !defined(CS_MT_C) || !defined(CS_MT_GR) || !defined(CS_MT_GC) || \
    !defined(CS_MT_GPU_R) || !defined(CS_MM_WG) || !defined(CS_MM_TC)
#error "matmul_tiled.cl: CS_MT_* / CS_MM_* constants missing (src/ops/matmul_tiled.h, src/cl/kconst.h)"
#endif

/* half h (0: lo, 1: hi) of sub-block s of a row: the 16 floats that
 * cs_dq32_T(row, s, ...) puts in *lo or *hi (the same loads) */
inline float16 cs_mt_half_f32(__global const uchar *row, uint i)
{
    return vload16(i, (__global const float *)row);
}
inline float16 cs_mt_half_f16(__global const uchar *row, uint i)
{
    return vload_half16(i, (__global const half *)row);
}
inline float16 cs_mt_half_bf16(__global const uchar *row, uint i)
{
    return as_float16(convert_uint16(vload16(i, (__global const ushort *)row)) << 16);
}

#define CS_MT_FOR_EACH_FTYPE(X) X(f32) X(f16) X(bf16)

#if CS_FAMILY_CPU

/* one pass (h = 0: lo chains, 1: hi chains) of the tile over every sub-block */
#define CS_MT_PASS(T, h, acc) \
    for (uint s = 0; s < nsb; s++) { \
        float16 wv[CS_MT_R]; \
        _Pragma("unroll") for (uint r = 0; r < CS_MT_R; r++) wv[r] = cs_mt_half_##T(wr[r], 2 * s + (h)); \
        _Pragma("unroll") for (uint c = 0; c < CS_MT_C; c++) { \
            const float16 xv = vload16(2 * s + (h), xc[c]); \
            _Pragma("unroll") for (uint r = 0; r < CS_MT_R; r++) acc[r][c] = fma(wv[r], xv, acc[r][c]); \
        } \
    }

#define CS_MT(T) \
    __kernel void mt_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, \
                         __global const float *x, uint x_off, uint n_cols, __global float *y, uint y_off, \
                         uint y_stride) \
    { \
        const uint n_ct = (n_cols + CS_MT_C - 1) / CS_MT_C, gc = (n_ct + CS_MT_GC - 1) / CS_MT_GC; \
        const uint g = get_group_id(0), l = get_local_id(0); \
        const uint r0 = ((g / gc) * CS_MT_GR + l / CS_MT_GC) * CS_MT_R; \
        const uint c0 = ((g % gc) * CS_MT_GC + l % CS_MT_GC) * CS_MT_C; \
        if (r0 >= n_rows || c0 >= n_cols) \
            return; \
        __global const uchar *wr[CS_MT_R]; \
        __global const float *xc[CS_MT_C]; \
        _Pragma("unroll") for (uint r = 0; r < CS_MT_R; r++) \
            wr[r] = w + (size_t)min(r0 + r, n_rows - 1) * row_bytes; \
        _Pragma("unroll") for (uint c = 0; c < CS_MT_C; c++) \
            xc[c] = x + x_off + (size_t)min(c0 + c, n_cols - 1) * n_in; \
        const uint nsb = n_in / 32; \
        float16 lo[CS_MT_R][CS_MT_C], hi[CS_MT_R][CS_MT_C]; \
        _Pragma("unroll") for (uint r = 0; r < CS_MT_R; r++) \
            _Pragma("unroll") for (uint c = 0; c < CS_MT_C; c++) lo[r][c] = hi[r][c] = 0.0f; \
        CS_MT_PASS(T, 0, lo); \
        CS_MT_PASS(T, 1, hi); \
        _Pragma("unroll") for (uint r = 0; r < CS_MT_R; r++) \
            _Pragma("unroll") for (uint c = 0; c < CS_MT_C; c++) if (r0 + r < n_rows && c0 + c < n_cols) { \
                float sum = cs_hsum16(lo[r][c] + hi[r][c]); \
                for (uint k = nsb * 32; k < n_in; k++) \
                    sum = fma(cs_dq1_##T(wr[r], k), xc[c][k], sum); \
                y[y_off + (size_t)(c0 + c) * y_stride + r0 + r] = sum; \
            } \
    }
CS_MT_FOR_EACH_FTYPE(CS_MT)

#else /* GPU family */

#define CS_MTG_N (CS_MT_GPU_R * CS_MM_TC) /* elements of a tile */

#define CS_MTG(T) \
    __kernel __attribute__((reqd_work_group_size(CS_MM_WG, 1, 1))) void mtg_##T( \
        __global const uchar *w, uint row_bytes, uint n_in, uint n_rows, __global const float *x, \
        uint x_off, uint n_cols, __global float *y, uint y_off, uint y_stride) \
    { \
        __local float red[CS_MTG_N * CS_MM_WG]; \
        const uint r0 = get_group_id(0) * CS_MT_GPU_R, c0 = get_group_id(1) * CS_MM_TC; \
        const uint lid = get_local_id(0); \
        if (r0 >= n_rows || c0 >= n_cols) \
            return; /* whole group */ \
        const uint nr = min((uint)CS_MT_GPU_R, n_rows - r0), nc = min((uint)CS_MM_TC, n_cols - c0); \
        __global const float *xt = x + x_off + (size_t)c0 * n_in; \
        const uint nsb = n_in / 32; \
        float acc[CS_MT_GPU_R][CS_MM_TC]; \
        _Pragma("unroll") for (uint r = 0; r < CS_MT_GPU_R; r++) \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) acc[r][c] = 0.0f; \
        for (uint s = lid; s < nsb; s += CS_MM_WG) { \
            float16 lo[CS_MT_GPU_R], hi[CS_MT_GPU_R]; \
            _Pragma("unroll") for (uint r = 0; r < CS_MT_GPU_R; r++) { \
                __global const uchar *wr = w + (size_t)(r0 + min(r, nr - 1)) * row_bytes; \
                lo[r] = cs_mt_half_##T(wr, 2 * s); \
                hi[r] = cs_mt_half_##T(wr, 2 * s + 1); \
            } \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) { \
                __global const float *xc = xt + (size_t)c * n_in; \
                const float16 xl = vload16(2 * s, xc), xh = vload16(2 * s + 1, xc); \
                _Pragma("unroll") for (uint r = 0; r < CS_MT_GPU_R; r++) \
                    acc[r][c] = (acc[r][c] + cs_dot16(lo[r], xl)) + cs_dot16(hi[r], xh); \
            } \
        } \
        for (uint k = nsb * 32 + lid; k < n_in; k += CS_MM_WG) \
            _Pragma("unroll") for (uint r = 0; r < CS_MT_GPU_R; r++) { \
                const float wk = cs_dq1_##T(w + (size_t)(r0 + min(r, nr - 1)) * row_bytes, k); \
                _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) if (c < nc) \
                    acc[r][c] = fma(wk, xt[(size_t)c * n_in + k], acc[r][c]); \
            } \
        _Pragma("unroll") for (uint r = 0; r < CS_MT_GPU_R; r++) \
            _Pragma("unroll") for (uint c = 0; c < CS_MM_TC; c++) \
                red[(r * CS_MM_TC + c) * CS_MM_WG + lid] = acc[r][c]; \
        barrier(CLK_LOCAL_MEM_FENCE); \
        for (uint st = CS_MM_WG / 2; st > 0; st >>= 1) { \
            if (lid < st) { \
                for (uint e = 0; e < CS_MTG_N; e++) \
                    red[e * CS_MM_WG + lid] += red[e * CS_MM_WG + lid + st]; \
            } \
            barrier(CLK_LOCAL_MEM_FENCE); \
        } \
        for (uint e = lid; e < CS_MTG_N; e += CS_MM_WG) { \
            const uint r = e / CS_MM_TC, c = e % CS_MM_TC; \
            if (r < nr && c < nc) \
                y[y_off + (size_t)(c0 + c) * y_stride + r0 + r] = red[e * CS_MM_WG]; \
        } \
    }
CS_MT_FOR_EACH_FTYPE(CS_MTG)

#endif
