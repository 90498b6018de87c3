/* lcpp.cl: the llamacpp_numerics kernels: llama.cpp's CPU-backend arithmetic
 * (x86-64, AVX-512) reproduced operation for operation, so that greedy text
 * equals the reference on near-ties. The specification is src/ref/lcpp_ref.c
 * (its header says which llama.cpp kernel each piece models); every kernel
 * here is tested bit for bit against it (tests/test-lcpp.c). These kernels
 * are for tests and comparisons, not speed: one output per work-item, plain
 * loops. Sums that llama.cpp keeps in double use double where the device has
 * cl_khr_fp64 (PoCL has); without it they fall back to float (approximate).
 * No contraction: every fma below is written out, every a*b+c is two roundings. */
#pragma OPENCL FP_CONTRACT OFF
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double lc_acc;
#else
typedef float lc_acc;
#endif

/* float -> f16 (round to nearest even) -> float */
inline float lc_rf16(float v)
{
    ushort h;
    vstore_half_rte(v, 0, (__private half *)&h);
    return vload_half(0, (__private const half *)&h);
}

/* _mm512_reduce_add_ps */
inline float lc_reduce16(const float *a)
{
    float t[8], u[4];
    for (int i = 0; i < 8; i++)
        t[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++)
        u[i] = t[i] + t[i + 4];
    return (u[0] + u[2]) + (u[1] + u[3]);
}

/* ggml_v_expf (AVX-512), one lane */
inline float lc_expf(float x)
{
    const float r = 0x1.8p23f;
    const float z = fma(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fma(-n, 0x1.7f7d1cp-20f, fma(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fma(fma(fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                        fma(0x1.ffffecp-1f, b, 1.0f));
    if (isnan(n) || fabs(n) > 192.0f)
        return (isnan(n) || n <= 0.0f) ? 0.0f : INFINITY;
    return ldexp(j, (int)n);
}

/* The C library's expf for the scalar tails: glibc's algorithm (x*32/ln2 = k + r,
 * 2^(k/32) from a 32-entry table, a cubic in r, all in double, rounded once),
 * which equals glibc 2.36's expf on 2e7 random inputs where rounding
 * exp((double)x) differs on 0.06% of them. Without fp64: the device's exp. */
#ifdef cl_khr_fp64
__constant ulong lc_exp2f_tab[32] = {
    0x3ff0000000000000UL, 0x3fefd9b0d3158574UL, 0x3fefb5586cf9890fUL, 0x3fef9301d0125b51UL,
    0x3fef72b83c7d517bUL, 0x3fef54873168b9aaUL, 0x3fef387a6e756238UL, 0x3fef1e9df51fdee1UL,
    0x3fef06fe0a31b715UL, 0x3feef1a7373aa9cbUL, 0x3feedea64c123422UL, 0x3feece086061892dUL,
    0x3feebfdad5362a27UL, 0x3feeb42b569d4f82UL, 0x3feeab07dd485429UL, 0x3feea47eb03a5585UL,
    0x3feea09e667f3bcdUL, 0x3fee9f75e8ec5f74UL, 0x3feea11473eb0187UL, 0x3feea589994cce13UL,
    0x3feeace5422aa0dbUL, 0x3feeb737b0cdc5e5UL, 0x3feec49182a3f090UL, 0x3feed503b23e255dUL,
    0x3feee89f995ad3adUL, 0x3feeff76f2fb5e47UL, 0x3fef199bdd85529cUL, 0x3fef3720dcef9069UL,
    0x3fef5818dcfba487UL, 0x3fef7c97337b9b5fUL, 0x3fefa4afa2a490daUL, 0x3fefd0765b6e4540UL,
};
#endif

inline float lc_libm_expf(float x)
{
#ifdef cl_khr_fp64
    if (isnan(x))
        return x;
    if (x > 0x1.62e42ep6f)
        return INFINITY;
    if (x < -0x1.9fe368p6f)
        return 0.0f;
    const double N = 32.0, shift = 0x1.8p+52, inv_ln2_n = 0x1.71547652b82fep+0 * 32.0;
    const double c0 = 0x1.c6af84b912394p-5 / N / N / N, c1 = 0x1.ebfce50fac4f3p-3 / N / N,
                 c2 = 0x1.62e42ff0c52d6p-1 / N;
    const double z = inv_ln2_n * (double)x;
    double kd = z + shift;
    const ulong ki = as_ulong(kd);
    kd -= shift;
    const double r = z - kd;
    const double s = as_double(lc_exp2f_tab[ki % 32] + (ki << 47));
    const double zz = fma(c0, r, c1), r2 = r * r;
    const double y = fma(zz, r2, fma(c2, r, 1.0));
    return (float)(y * s);
#else
    return exp(x);
#endif
}

/* Element i of a weight/cache row: f16 bits -> float */
#define LC_H(p, i) vload_half((i), (__global const half *)(p))

/* ---- dot products (see lcpp_ref.c) over float operands that already hold
 * the rounded values (f16 data is exact in float) ---- */

/* tinyBLAS<16>: 16 lanes of fma over chunks of 16, then the reduce tree.
 * W_AT(i) / X_AT(i) name element i of each side. */
#define LC_DOT16(RES, N, W_AT, X_AT)                                  \
    {                                                                 \
        float acc_[16];                                               \
        for (int l_ = 0; l_ < 16; l_++)                               \
            acc_[l_] = 0.0f;                                          \
        for (int c_ = 0; c_ < (N); c_ += 16)                          \
            for (int l_ = 0; l_ < 16; l_++)                           \
                acc_[l_] = fma(W_AT(c_ + l_), X_AT(c_ + l_), acc_[l_]); \
        RES = lc_reduce16(acc_);                                      \
    }

/* ggml_vec_dot_f16 / ggml_vec_dot_f32's vector part: 4 x 16 lanes per 64
 * elements, folded (0+2, 1+3, then 0+1), reduced; returns np = n & ~63. */
#define LC_DOT64(RES, N, W_AT, X_AT)                                          \
    {                                                                         \
        float s_[4][16];                                                      \
        for (int j_ = 0; j_ < 4; j_++)                                        \
            for (int l_ = 0; l_ < 16; l_++)                                   \
                s_[j_][l_] = 0.0f;                                            \
        for (int i_ = 0; i_ < ((N) & ~63); i_ += 64)                          \
            for (int j_ = 0; j_ < 4; j_++)                                    \
                for (int l_ = 0; l_ < 16; l_++)                               \
                    s_[j_][l_] = fma(W_AT(i_ + 16 * j_ + l_), X_AT(i_ + 16 * j_ + l_), s_[j_][l_]); \
        for (int l_ = 0; l_ < 16; l_++) {                                     \
            s_[0][l_] = s_[0][l_] + s_[2][l_];                                \
            s_[1][l_] = s_[1][l_] + s_[3][l_];                                \
        }                                                                     \
        for (int l_ = 0; l_ < 16; l_++)                                       \
            s_[0][l_] = s_[0][l_] + s_[1][l_];                                \
        RES = lc_reduce16(s_[0]);                                             \
    }

/* ggml_vec_dot_f16: the vector part (LC_DOT64), then the tail in double. */
#define LC_VEC_DOT_F16(RES, N, W_AT, X_AT)                                   \
    {                                                                        \
        float v_;                                                            \
        LC_DOT64(v_, N, W_AT, X_AT);                                         \
        lc_acc a_ = ((N) & ~63) ? (lc_acc)v_ : (lc_acc)0;                    \
        for (int t_ = (N) & ~63; t_ < (N); t_++)                             \
            a_ += (lc_acc)(W_AT(t_) * X_AT(t_));                             \
        RES = (float)a_;                                                     \
    }

/* ---- matmul: y (n, n_out) = x (n, n_in) . W^T ---- */

/* One q8_0 block per work-item: x (n rows of n_in) -> xq (int8) and xd (the
 * f16 scale's value), quantize_row_q8_0 (AVX2): d = amax/127, q = rte(x * 127/amax). */
__kernel void lcpp_quant_q8_0(__global const float *x, __global char *xq, __global float *xd, int n_blocks)
{
    const int b = get_global_id(0);
    if (b >= n_blocks)
        return;
    __global const float *v = x + (size_t)b * 32;
    float amax = 0.0f;
    for (int i = 0; i < 32; i++)
        amax = fmax(amax, fabs(v[i]));
    xd[b] = lc_rf16(amax / 127.f);
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int i = 0; i < 32; i++)
        xq[(size_t)b * 32 + i] = (char)convert_int_rte(v[i] * id);
}

/* q8_0 / q4_0 weights x the q8_0 activation. W: blocks of blk_bytes (36: q8_0
 * {float d; qs[32]}, 34: q8_0 {half d; qs[32]}, 18: q4_0 {half d; nibbles},
 * value = nibble - 8, low nibbles first). whole_blocks == 0: ggml_vec_dot_*_q8_0
 * / tinyBLAS_Q0_AVX: 8 lanes of exact 4-element integer sums, lane = fma(dw*dx,
 * sum, lane) over blocks, hsum_float_8; whole_blocks == 1: ggml's AVX2 q4_0_8x8
 * repack (rows % 8 == 0): acc = fma(whole-block integer dot, dw*dx, acc). */
inline float lc_wblock(__global const uchar *blk, int blk_bytes, int *q)
{
    if (blk_bytes == 18) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int)(blk[2 + j] & 0xf) - 8;
            q[j + 16] = (int)(blk[2 + j] >> 4) - 8;
        }
        return LC_H(blk, 0);
    }
    __global const char *wq = (__global const char *)(blk + blk_bytes - 32);
    for (int j = 0; j < 32; j++)
        q[j] = wq[j];
    return blk_bytes == 36 ? *(__global const float *)blk : LC_H(blk, 0);
}

__kernel void lcpp_mm_q0(__global const uchar *W, int blk_bytes, int whole_blocks, __global const char *xq,
                         __global const float *xd, __global float *y, int n_in, int n_out, int n)
{
    const int gid = get_global_id(0);
    if (gid >= n * n_out)
        return;
    const int t = gid / n_out, r = gid % n_out, nb = n_in / 32;
    __global const uchar *w = W + (size_t)r * nb * blk_bytes;
    __global const char *q = xq + (size_t)t * n_in;
    __global const float *qd = xd + (size_t)t * nb;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int wq[32];
    for (int b = 0; b < nb; b++) {
        const float d = lc_wblock(w + (size_t)b * blk_bytes, blk_bytes, wq) * qd[b];
        if (whole_blocks) {
            int s = 0;
            for (int k = 0; k < 32; k++)
                s += wq[k] * (int)q[b * 32 + k];
            acc[0] = fma((float)s, d, acc[0]);
            continue;
        }
        for (int l = 0; l < 8; l++) {
            int s = 0;
            for (int k = 0; k < 4; k++)
                s += wq[4 * l + k] * (int)q[b * 32 + 4 * l + k];
            acc[l] = fma(d, (float)s, acc[l]);
        }
    }
    if (whole_blocks) {
        y[(size_t)t * n_out + r] = acc[0];
        return;
    }
    float r4[4];
    for (int i = 0; i < 4; i++)
        r4[i] = acc[i + 4] + acc[i];
    y[(size_t)t * n_out + r] = (r4[0] + r4[2]) + (r4[1] + r4[3]);
}

/* f32 weights: tiny (a batch, n_in % 16 == 0): tinyBLAS<16>; else ggml_vec_dot_f32
 * (vector part, then a float tail without fma). */
__kernel void lcpp_mm_f32(__global const float *W, __global const float *x, __global float *y, int n_in, int n_out,
                          int n, int tiny)
{
    const int gid = get_global_id(0);
    if (gid >= n * n_out)
        return;
    const int t = gid / n_out, r = gid % n_out;
    __global const float *w = W + (size_t)r * n_in;
    __global const float *xv = x + (size_t)t * n_in;
#define WF(i) w[i]
#define XF(i) xv[i]
    float res;
    if (tiny) {
        LC_DOT16(res, n_in, WF, XF);
    } else {
        LC_DOT64(res, n_in, WF, XF);
        for (int i = n_in & ~63; i < n_in; i++)
            res = res + w[i] * xv[i];
    }
#undef WF
#undef XF
    y[(size_t)t * n_out + r] = res;
}

/* f16 weights: the activation rounded to f16; tiny: tinyBLAS<16> (f16 x f16),
 * else ggml_vec_dot_f16 (vector part, then a double tail). */
__kernel void lcpp_mm_f16(__global const ushort *W, __global const float *x, __global float *y, int n_in, int n_out,
                          int n, int tiny)
{
    const int gid = get_global_id(0);
    if (gid >= n * n_out)
        return;
    const int t = gid / n_out, r = gid % n_out;
    __global const ushort *w = W + (size_t)r * n_in;
    __global const float *xv = x + (size_t)t * n_in;
#define WH(i) LC_H(w, i)
#define XH(i) lc_rf16(xv[i])
    float res;
    if (tiny) {
        LC_DOT16(res, n_in, WH, XH);
    } else {
        LC_VEC_DOT_F16(res, n_in, WH, XH);
    }
#undef WH
#undef XH
    y[(size_t)t * n_out + r] = res;
}

/* ---- row ops ---- */

/* y = (x * 1/sqrtf(mean(x^2) + eps)) * w, the sum of float squares in double; one row per work-item */
__kernel void lcpp_rmsnorm(__global const float *x, __global const float *w, __global float *y, int n_rows, int n,
                           float eps)
{
    const int row = get_global_id(0);
    if (row >= n_rows)
        return;
    __global const float *xr = x + (size_t)row * n;
    __global float *yr = y + (size_t)row * n;
    lc_acc sum = 0;
    for (int i = 0; i < n; i++)
        sum += (lc_acc)(xr[i] * xr[i]);
    const float mean = (float)(sum / (lc_acc)n);
    const float scale = 1.0f / sqrt(mean + eps);
    for (int i = 0; i < n; i++)
        yr[i] = (xr[i] * scale) * w[i];
}

/* RoPE with a host table cs[t * n_rot/2 + i] = (cos, sin) of token t's pair i
 * (the C library's cosf/sinf of ggml's theta); the rotation as GCC compiles it:
 * fma(x0, c, -(x1*s)), fma(x0, s, x1*c). One (token, head) per work-item. */
__kernel void lcpp_rope(__global float *x, uint x_off, __global const float2 *cs, int n_tokens, int n_head,
                        int head_dim, int n_rot, int neox)
{
    const int gid = get_global_id(0);
    if (gid >= n_tokens * n_head)
        return;
    const int t = gid / n_head, h = gid % n_head, half_rot = n_rot / 2;
    __global float *v = x + x_off + ((size_t)t * n_head + h) * head_dim;
    for (int i = 0; i < half_rot; i++) {
        const float2 c = cs[(size_t)t * half_rot + i];
        const int a = neox ? i : 2 * i, b = neox ? i + half_rot : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = fma(x0, c.x, -(x1 * c.y));
        v[b] = fma(x0, c.y, x1 * c.x);
    }
}

/* g = silu(g) * u: ggml_v_silu on the 16-wide part of each row, x/(1+expf(-x)) on the tail */
__kernel void lcpp_swiglu(__global float *g, __global const float *u, int n_rows, int F)
{
    const int gid = get_global_id(0);
    if (gid >= n_rows * F)
        return;
    const int i = gid % F;
    const float v = g[gid];
    const float s = i < (F & ~15) ? v / (1.0f + lc_expf(0.0f - v)) : v / (1.0f + lc_libm_expf(-v));
    g[gid] = s * u[gid];
}

/* ---- attention over an f16 cache, one (token, head) per work-item ----
 * Cells 0..n_kv-1 in index order (llama.cpp's cells; n_kv = used cells
 * padded to 32, which may run past our n_cells: those count as unused); cell
 * c is visible iff bit seq[t] of cell_seq[c] is set and 0 <= cell_pos[c] <=
 * pos[t]. Q rounded to f16; K.Q: batch && hd % 16 == 0: tinyBLAS<16>, else
 * ggml_vec_dot_f16; softmax: scale, mask, max, ggml_v_expf per 16 cells with
 * the chunk sums in double, times (float)(1/sum); P rounded to f16; V.P:
 * batch: tinyBLAS<16> over the cells, else ggml_vec_dot_f16 (a cell with
 * P == 0 adds V = 0, as llama.cpp's zero-filled unused cells do: ours may
 * hold anything). sc: (n_tokens * n_head * n_kv) scratch. */
__kernel void lcpp_attn(__global const float *q, __global float *out, __global const ushort *K,
                        __global const ushort *V,
                        __global const int *cell_pos, __global const ulong *cell_seq, __global const int *tok_pos,
                        __global const int *tok_seq, int n_tokens, int n_head, int n_kv_head, int hd, int n_kv,
                        int n_cells, int batch, float scale, __global float *sc)
{
    const int gid = get_global_id(0);
    if (gid >= n_tokens * n_head)
        return;
    const int t = gid / n_head, h = gid % n_head, g = h / (n_head / n_kv_head), kvd = n_kv_head * hd;
    __global const float *qv = q + (size_t)gid * hd;
    __global float *s = sc + (size_t)gid * n_kv;
    const int pos = tok_pos[t];
    const int ts = tok_seq[t];
    float mx = -INFINITY;
    for (int c = 0; c < n_kv; c++) {
        if (c >= n_cells) { /* padding beyond our cache: an unused cell */
            s[c] = -INFINITY;
            continue;
        }
        __global const ushort *kr = K + (size_t)c * kvd + (size_t)g * hd;
#define KH(i) LC_H(kr, i)
#define QH(i) lc_rf16(qv[i])
        float d;
        if (batch && hd % 16 == 0) {
            LC_DOT16(d, hd, KH, QH);
        } else {
            LC_VEC_DOT_F16(d, hd, KH, QH);
        }
#undef KH
#undef QH
        d = d * scale;
        const int cp = cell_pos[c];
        if (ts < 0 || ts >= 64 || !((cell_seq[c] >> ts) & 1UL) || cp < 0 || cp > pos)
            d = -INFINITY;
        s[c] = d;
        mx = fmax(mx, d);
    }
    lc_acc sum = 0;
    int c = 0;
    for (; c + 15 < n_kv; c += 16) {
        float e[16];
        for (int l = 0; l < 16; l++)
            s[c + l] = e[l] = lc_expf(s[c + l] - mx);
        sum += (lc_acc)lc_reduce16(e);
    }
    for (; c < n_kv; c++) {
        const float e = lc_libm_expf(s[c] - mx);
        s[c] = e;
        sum += (lc_acc)e;
    }
    const float inv = (float)((lc_acc)1 / sum);
    for (c = 0; c < n_kv; c++)
        s[c] = lc_rf16(s[c] * inv);
    for (int i = 0; i < hd; i++) {
        __global const ushort *vcol = V + (size_t)g * hd + i; /* cell c at vcol[c * kvd] */
#define VH(j) (s[j] == 0.0f ? 0.0f : LC_H(vcol, (size_t)(j) * kvd)) /* llama.cpp's unused cells hold zeros */
#define PH(j) s[j]
        float o;
        if (batch && n_kv % 16 == 0) {
            LC_DOT16(o, n_kv, VH, PH);
        } else {
            LC_VEC_DOT_F16(o, n_kv, VH, PH);
        }
#undef VH
#undef PH
        out[(size_t)gid * hd + i] = o;
    }
}
