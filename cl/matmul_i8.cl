/* matmul_i8.cl: y = x . W^T with integer dot products on the rows-in-lanes
 * layout CS_WLAYOUT_I8 (CPU family; host: src/ops/matmul_i8.c, which also
 * makes the layout at upload; C reference: src/ref/i8_ref.c). x comes
 * quantized by quant_q8 (cl/quant.cl): per column, char q[n_in] in the pair
 * order of cl/matmul_q8.cl and float dx[n_in / 32].
 *
 * Layout (per group of 16 rows g = r / 16, at g * 16 * row_bytes of a part;
 * a part's last group padded with zero rows): the weights as unsigned bytes
 * u in the same positions as the x bytes, "steps" of 4 consecutive
 * positions: step s of a pair record is one 64-byte vector holding bytes
 * [4s, 4s + 4) of the pair's x positions for the 16 rows (row l at bytes
 * 4l .. 4l + 3). A full pair (blocks 2t, 2t + 1) has 16 steps, chunks of 4
 * steps: chunk 0, 2 = block a = 2t, chunk 1, 3 = block b; a lone last block
 * 8 steps (chunks 0, 1 = block a).
 *   q8_0 (u = w + 128), per pair: float d[2][16] (block a, b), then the
 *     steps (a lone block: float d[16], 8 steps);           row_bytes 36 nb
 *   q6_K (u = q, w = q - 32), per super-block of 256 (4 pairs): float d[16],
 *     char sc[16 chunks][16 rows] (the sub-block scale of each chunk, in
 *     chunk order 4 p + j), then 4 x 16 steps;              row_bytes 276 nsb
 *   q5_K (u = q, 0..31), per super-block: float d[16], dmin[16], uchar
 *     sc[8 blocks][16 rows], m[8][16] (6-bit scales and mins), then 4 x 16
 *     steps;                                                row_bytes 280 nsb
 *
 * The one reduction order of this path (any n_cols, any column position):
 * element (c, r), acc starting at +0.0f, the x blocks b = 0, 1, ... in
 * order, each:
 *   I_j = sum of u_e q_e over the 16 positions of chunk j (exact integers,
 *     VNNI vpdpbusd / plain int; S_j the sum of the chunk's q_e);
 *   q8_0: I = sum over the block's chunks of (I_j - 128 S_j);
 *         acc = fma((float)I, d_r,b * dx_b, acc);
 *   q6_K: J = sum over the block's two chunks of sc_j (I_j - 32 S_j);
 *         acc = fma((float)J, d_r * dx_b, acc);
 *   q5_K: J = sc_r,b * sum of the block's I_j, M = m_r,b * sum of its S_j;
 *         acc = fma((float)J, d_r * dx_b, acc);
 *         acc = fma((float)M, -(dmin_r * dx_b), acc);
 *   y = acc.
 * All integers are exact (|J| < 2^24, so (float) is exact too), so every
 * variant gives the same bits, and a column's result does not depend on the
 * others (speculative verification rows equal plain decode rows). */

#if CS_FAMILY_CPU

#ifndef CS_I8_TC
#error "matmul_i8.cl: CS_I8_TC missing (-D from src/ops/matmul_i8.c)"
#endif

typedef int cs_i8_v16i __attribute__((vector_size(64)));

#if defined(CS_CPU_VNNI)
#define CS_I8_VNNI 1
/* the feature only on the helpers (LLVM will not inline them into the
 * kernels, which lack it, and PoCL's compiler breaks with it on a kernel):
 * each helper does a whole work-item's dot products, so one call per item */
#define CS_I8_TARGET __attribute__((target("avx512vnni")))
#else
#define CS_I8_TARGET
#endif

/* acc + per lane: the four u8 (in w) x s8 (in x) products of the lane */
#ifdef CS_I8_VNNI
#define CS_I8_DP(acc, w, x) \
    as_int16(__builtin_ia32_vpdpbusd512((cs_i8_v16i)(acc), (cs_i8_v16i)(w), (cs_i8_v16i)(x)))
#else
inline int16 cs_i8_dp_plain(int16 acc, int16 w, int16 x)
{
    const uint16 u = as_uint16(w);
    return acc + convert_int16(u & 255u) * ((x << 24) >> 24) + convert_int16((u >> 8) & 255u) * ((x << 16) >> 24) +
           convert_int16((u >> 16) & 255u) * ((x << 8) >> 24) + convert_int16(u >> 24) * (x >> 24);
}
#define CS_I8_DP(acc, w, x) cs_i8_dp_plain((acc), (w), (x))
#endif

/* the sums of x's chunks (16 bytes each) of the 64 bytes xv: (S_0, .., S_3) */
CS_I8_TARGET inline int4 cs_i8_xsum(int16 xv)
{
    const int16 s = CS_I8_DP((int16)0, (int16)0x01010101, xv);
    return (int4)(s.s0, s.s4, s.s8, s.sc) + (int4)(s.s1, s.s5, s.s9, s.sd) + (int4)(s.s2, s.s6, s.sa, s.se) +
           (int4)(s.s3, s.s7, s.sb, s.sf);
}

/* x pair t of column c: the 64 bytes as 16 ints (a lone block: 32, zeros) */
inline int16 cs_i8_xpair(__global const int *xi, bool lone)
{
    return lone ? (int16)(vload8(0, xi), (int8)0) : vload16(0, xi);
}

/* One work-item: rows 16 g .. 16 g + 15 (wg: the group) x columns c0 ..
 * c0 + nc - 1 (nc <= C) into acc[c]. NB: number of x blocks. */
#define CS_I8_BODY_Q8_0(N, C) \
    CS_I8_TARGET void cs_i8_run_q8_0_##N(__global const uchar *wg, __global const char *xq, \
                                         __global const float *dc, uint n_in, uint c0, uint nc, float16 *acc) \
    { \
        const uint nb = n_in / 32, np = nb / 2; \
        __global const uchar *rec = wg; \
        _Pragma("unroll") for (uint c = 0; c < C; c++) acc[c] = 0.0f; \
        for (uint t = 0; t <= np; t++) { \
            const bool lone = t == np; \
            if (lone && !(nb & 1)) \
                break; \
            const uint nsd = lone ? 1 : 2; \
            __global const float *dw = (__global const float *)rec; \
            __global const int16 *wv = (__global const int16 *)(rec + 64 * nsd); \
            int16 ia[C], ib[C]; \
            _Pragma("unroll") for (uint c = 0; c < C; c++) ia[c] = ib[c] = 0; \
            if (!lone) { \
                _Pragma("unroll") for (uint s = 0; s < 16; s++) { \
                    const int16 w = wv[s]; \
                    _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                        const int xs = ((__global const int *)(xq + (size_t)(c0 + c) * n_in + 64 * t))[s]; \
                        if ((s / 4) & 1) \
                            ib[c] = CS_I8_DP(ib[c], w, (int16)xs); \
                        else \
                            ia[c] = CS_I8_DP(ia[c], w, (int16)xs); \
                    } \
                } \
            } else { \
                _Pragma("unroll") for (uint s = 0; s < 8; s++) { \
                    const int16 w = wv[s]; \
                    _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                        const int xs = ((__global const int *)(xq + (size_t)(c0 + c) * n_in + 64 * t))[s]; \
                        ia[c] = CS_I8_DP(ia[c], w, (int16)xs); \
                    } \
                } \
            } \
            const float16 da = vload16(0, dw), db = lone ? (float16)0.0f : vload16(1, dw); \
            _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                const size_t cc = c0 + c; \
                const int4 S = cs_i8_xsum(cs_i8_xpair((__global const int *)(xq + cc * n_in + 64 * t), lone)); \
                const float dxa = dc[cc * nb + 2 * t]; \
                acc[c] = fma(convert_float16(ia[c] - 128 * (lone ? S.x + S.y : S.x + S.z)), da * dxa, acc[c]); \
                if (!lone) { \
                    const float dxb = dc[cc * nb + 2 * t + 1]; \
                    acc[c] = fma(convert_float16(ib[c] - 128 * (S.y + S.w)), db * dxb, acc[c]); \
                } \
            } \
            rec += lone ? 64 + 512 : 128 + 1024; \
        } \
    }

#define CS_I8_BODY_Q6_K(N, C) \
    CS_I8_TARGET void cs_i8_run_q6_K_##N(__global const uchar *wg, __global const char *xq, \
                                         __global const float *dc, uint n_in, uint c0, uint nc, float16 *acc) \
    { \
        const uint nb = n_in / 32, nsb = n_in / 256; \
        __global const uchar *rec = wg; \
        _Pragma("unroll") for (uint c = 0; c < C; c++) acc[c] = 0.0f; \
        for (uint sb = 0; sb < nsb; sb++, rec += 64 + 256 + 4096) { \
            const float16 d = vload16(0, (__global const float *)rec); \
            for (uint p = 0; p < 4; p++) { \
                const uint t = 4 * sb + p; \
                __global const int16 *wv = (__global const int16 *)(rec + 320 + 1024 * p); \
                int16 ja[C], jb[C]; \
                int4 S[C]; \
                _Pragma("unroll") for (uint c = 0; c < C; c++) { \
                    ja[c] = jb[c] = 0; \
                    S[c] = c < nc ? cs_i8_xsum(vload16(0, (__global const int *)(xq + (size_t)(c0 + c) * n_in + 64 * t))) \
                                  : (int4)0; \
                } \
                _Pragma("unroll") for (uint j = 0; j < 4; j++) { \
                    const int16 sc = convert_int16(vload16(0, (__global const char *)(rec + 64 + 16 * (4 * p + j)))); \
                    int16 ic[C]; \
                    _Pragma("unroll") for (uint c = 0; c < C; c++) ic[c] = 0; \
                    _Pragma("unroll") for (uint s = 0; s < 4; s++) { \
                        const int16 w = wv[4 * j + s]; \
                        _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                            const int xs = \
                                ((__global const int *)(xq + (size_t)(c0 + c) * n_in + 64 * t))[4 * j + s]; \
                            ic[c] = CS_I8_DP(ic[c], w, (int16)xs); \
                        } \
                    } \
                    _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                        const int sj = j == 0 ? S[c].x : j == 1 ? S[c].y : j == 2 ? S[c].z : S[c].w; \
                        if (j & 1) \
                            jb[c] += sc * (ic[c] - 32 * sj); \
                        else \
                            ja[c] += sc * (ic[c] - 32 * sj); \
                    } \
                } \
                _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                    const size_t cc = c0 + c; \
                    acc[c] = fma(convert_float16(ja[c]), d * dc[cc * nb + 2 * t], acc[c]); \
                    acc[c] = fma(convert_float16(jb[c]), d * dc[cc * nb + 2 * t + 1], acc[c]); \
                } \
            } \
        } \
    }

#define CS_I8_BODY_Q5_K(N, C) \
    CS_I8_TARGET void cs_i8_run_q5_K_##N(__global const uchar *wg, __global const char *xq, \
                                         __global const float *dc, uint n_in, uint c0, uint nc, float16 *acc) \
    { \
        const uint nb = n_in / 32, nsb = n_in / 256; \
        __global const uchar *rec = wg; \
        _Pragma("unroll") for (uint c = 0; c < C; c++) acc[c] = 0.0f; \
        for (uint sb = 0; sb < nsb; sb++, rec += 4480) { \
            const float16 d = vload16(0, (__global const float *)rec), dm = vload16(1, (__global const float *)rec); \
            for (uint p = 0; p < 4; p++) { \
                const uint t = 4 * sb + p; \
                __global const int16 *wv = (__global const int16 *)(rec + 384 + 1024 * p); \
                int16 ia[C], ib[C]; \
                _Pragma("unroll") for (uint c = 0; c < C; c++) ia[c] = ib[c] = 0; \
                _Pragma("unroll") for (uint s = 0; s < 16; s++) { \
                    const int16 w = wv[s]; \
                    _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                        const int xs = ((__global const int *)(xq + (size_t)(c0 + c) * n_in + 64 * t))[s]; \
                        if ((s / 4) & 1) \
                            ib[c] = CS_I8_DP(ib[c], w, (int16)xs); \
                        else \
                            ia[c] = CS_I8_DP(ia[c], w, (int16)xs); \
                    } \
                } \
                const int16 sca = convert_int16(vload16(0, rec + 128 + 32 * p)), \
                            scb = convert_int16(vload16(0, rec + 128 + 32 * p + 16)); \
                const int16 ma = convert_int16(vload16(0, rec + 256 + 32 * p)), \
                            mb = convert_int16(vload16(0, rec + 256 + 32 * p + 16)); \
                _Pragma("unroll") for (uint c = 0; c < C; c++) if (c < nc) { \
                    const size_t cc = c0 + c; \
                    const int4 S = cs_i8_xsum(vload16(0, (__global const int *)(xq + cc * n_in + 64 * t))); \
                    const float dxa = dc[cc * nb + 2 * t], dxb = dc[cc * nb + 2 * t + 1]; \
                    acc[c] = fma(convert_float16(sca * ia[c]), d * dxa, acc[c]); \
                    acc[c] = fma(convert_float16(ma * (S.x + S.z)), -(dm * dxa), acc[c]); \
                    acc[c] = fma(convert_float16(scb * ib[c]), d * dxb, acc[c]); \
                    acc[c] = fma(convert_float16(mb * (S.y + S.w)), -(dm * dxb), acc[c]); \
                } \
            } \
        } \
    }

CS_I8_BODY_Q8_0(1, 1)
CS_I8_BODY_Q8_0(tc, CS_I8_TC)
CS_I8_BODY_Q6_K(1, 1)
CS_I8_BODY_Q6_K(tc, CS_I8_TC)
CS_I8_BODY_Q5_K(1, 1)
CS_I8_BODY_Q5_K(tc, CS_I8_TC)

/* y rows 16 g .. of columns c0 .. (rows < n_rows only) */
inline void cs_i8_store(__global float *y, uint y_off, uint y_stride, uint n_rows, uint g, uint c0, uint nc,
                        const float16 *acc)
{
    const uint r0 = 16 * g;
    for (uint c = 0; c < nc; c++) {
        __global float *yc = y + y_off + (size_t)(c0 + c) * y_stride + r0;
        if (r0 + 16 <= n_rows) {
            vstore16(acc[c], 0, yc);
        } else {
            float a[16];
            vstore16(acc[c], 0, a);
            for (uint l = 0; r0 + l < n_rows; l++)
                yc[l] = a[l];
        }
    }
}

/* Arguments: w (this part), row_bytes, n_in, n_rows (of the part), xq
 * (quant_q8's buffer), d_off (bytes: its dx), n_cols, y, y_off (the part's
 * first row), y_stride. mvi_T: NDRange (groups); mmi_T: (groups, column
 * tiles of CS_I8_TC). */
#define CS_I8_KERNELS(T) \
    __kernel void mvi_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, __global const char *xq, \
                          uint d_off, uint n_cols, __global float *y, uint y_off, uint y_stride) \
    { \
        const uint g = get_global_id(0); \
        if (16 * g >= n_rows) \
            return; \
        float16 acc[1]; \
        cs_i8_run_##T##_1(w + (size_t)g * 16 * row_bytes, xq, (__global const float *)(xq + d_off), n_in, 0, 1, \
                          acc); \
        cs_i8_store(y, y_off, y_stride, n_rows, g, 0, 1, acc); \
    } \
    __kernel void mmi_##T(__global const uchar *w, uint row_bytes, uint n_in, uint n_rows, __global const char *xq, \
                          uint d_off, uint n_cols, __global float *y, uint y_off, uint y_stride) \
    { \
        const uint g = get_global_id(0), c0 = get_global_id(1) * CS_I8_TC; \
        if (16 * g >= n_rows || c0 >= n_cols) \
            return; \
        const uint nc = min((uint)CS_I8_TC, n_cols - c0); \
        float16 acc[CS_I8_TC]; \
        cs_i8_run_##T##_tc(w + (size_t)g * 16 * row_bytes, xq, (__global const float *)(xq + d_off), n_in, \
                                   c0, nc, acc); \
        cs_i8_store(y, y_off, y_stride, n_rows, g, c0, nc, acc); \
    }

/* Element k (0..31) of x block b of row l (0..15) of a group, as the GGUF
 * gather decodes it: (d sc) * w (q8_0: sc = 1, so d * w); q5_K: fma(d sc,
 * q, -(dmin m)) as cs_dq32_q5_K */
inline float cs_i8_elem_q8_0(__global const uchar *grp, uint nb, uint l, uint b, uint k)
{
    const bool lone = (nb & 1) && b == nb - 1;
    __global const uchar *rec = grp + (size_t)(b / 2) * 1152;
    const uint hb = b & 1, p = lone ? k : 32 * (k / 16) + 16 * hb + k % 16; /* position in the pair */
    const float d = ((__global const float *)rec)[lone ? l : 16 * hb + l];
    const uchar u = rec[(lone ? 64 : 128) + 64 * (p / 4) + 4 * l + p % 4];
    return d * (float)((int)u - 128);
}
inline float cs_i8_elem_q6_K(__global const uchar *grp, uint nb, uint l, uint b, uint k)
{
    (void)nb;
    __global const uchar *rec = grp + (size_t)(b / 8) * 4416;
    const uint bl = b % 8, pp = bl / 2, p = 32 * (k / 16) + 16 * (bl & 1) + k % 16;
    const float d = ((__global const float *)rec)[l];
    const char sc = ((__global const char *)rec)[64 + 16 * (4 * pp + p / 16) + l];
    const uchar u = rec[320 + 1024 * pp + 64 * (p / 4) + 4 * l + p % 4];
    return (d * (float)sc) * (float)((int)u - 32);
}
inline float cs_i8_elem_q5_K(__global const uchar *grp, uint nb, uint l, uint b, uint k)
{
    (void)nb;
    __global const uchar *rec = grp + (size_t)(b / 8) * 4480;
    const uint bl = b % 8, pp = bl / 2, p = 32 * (k / 16) + 16 * (bl & 1) + k % 16;
    __global const float *f = (__global const float *)rec;
    const float d = f[l] * (float)rec[128 + 16 * bl + l], m = f[16 + l] * (float)rec[256 + 16 * bl + l];
    const uchar u = rec[384 + 1024 * pp + 64 * (p / 4) + 4 * l + p % 4];
    return fma(d, (float)u, -m); /* as cs_dq32_q5_K */
}

/* getrows_i8_T: the embedding gather of cl/getrows.cl (same arguments and
 * NDRange: (n_in / 32, n)) on this layout */
#define CS_I8_GETROWS(T) \
    __kernel void getrows_i8_##T(__global const uchar *w, uint row_bytes, uint n_in, uint r0, uint n_rows, \
                                 uint n_out, __global const int *ids, uint ids_off, uint n, __global float *out, \
                                 uint out_off) \
    { \
        const uint b = get_global_id(0), t = get_global_id(1), nb = n_in / 32; \
        if (t >= n || b >= nb) \
            return; \
        const int id = ids[ids_off + t]; \
        __global float *o = out + out_off + (size_t)t * n_in + 32 * b; \
        if (id < 0 || (uint)id >= n_out) { \
            if (r0 == 0) \
                for (uint k = 0; k < 32; k++) \
                    o[k] = 0.0f; \
            return; \
        } \
        if ((uint)id < r0 || (uint)id - r0 >= n_rows) \
            return; \
        const uint rr = (uint)id - r0; \
        __global const uchar *grp = w + (size_t)(rr / 16) * 16 * row_bytes; \
        for (uint k = 0; k < 32; k++) \
            o[k] = cs_i8_elem_##T(grp, nb, rr % 16, b, k); \
    }

CS_I8_KERNELS(q8_0)
CS_I8_KERNELS(q6_K)
CS_I8_KERNELS(q5_K)
CS_I8_GETROWS(q5_K)
CS_I8_GETROWS(q8_0)
CS_I8_GETROWS(q6_K)

#endif /* CS_FAMILY_CPU */
