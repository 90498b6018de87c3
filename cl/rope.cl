/* rope.cl: rotary position embedding applied in place to x (n_tokens, n_head,
 * head_dim). One work-item per (token, pair i < n_rot/2): it computes
 * theta_i = freq_scale * (pos[t] * theta_scale^i), theta_scale =
 * freq_base^(-2/n_rot) (computed by the host with powf; the power by i
 * repeated float products: ggml's rope cache, bit for bit), and its cos/sin once
 * and rotates pair i of every head of the token (the transcendentals are the
 * cost of this op: once per (token, pair), not per (token, head, pair)).
 * Normal mode rotates (2i, 2i+1), NeoX mode (i, i + n_rot/2); dims >= n_rot
 * are untouched. Same kernel for both families (elementwise).
 *
 * Where the device has doubles, cos/sin(theta) are evaluated in double and
 * rounded once to float (|theta| < 2^30): within an ulp of the C library's
 * cosf/sinf, and several times faster than PoCL's float sin/cos, which are
 * the whole cost of this op on CPUs. Elsewhere the float built-ins. */

#if defined(cl_khr_fp64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable

/* cos and sin of x (|x| < 2^30) in double: x = k pi/2 + r, |r| <= pi/4 (pi/2
 * in two parts: k < 2^30 keeps k * PIO2_1 exact), Taylor series to r^16 / r^17
 * (error < 1e-16 on |r| <= pi/4), quadrant k mod 4. */
inline float2 cs_cos_sin(float xf)
{
    const double x = xf;
    const double k = (x * 0x1.45f306dc9c883p-1 + 0x1.8p52) - 0x1.8p52; /* nearest integer */
    const double r = fma(-k, 0x1.921fb54400000p0, fma(-k, 0x1.0b4611a626331p-34, x));
    const double r2 = r * r;
    double s = 1.0 / 355687428096000.0; /* 1/17! ... */
    s = fma(s, r2, -1.0 / 1307674368000.0);
    s = fma(s, r2, 1.0 / 6227020800.0);
    s = fma(s, r2, -1.0 / 39916800.0);
    s = fma(s, r2, 1.0 / 362880.0);
    s = fma(s, r2, -1.0 / 5040.0);
    s = fma(s, r2, 1.0 / 120.0);
    s = fma(s, r2, -1.0 / 6.0);
    s = fma(s * r2, r, r);
    double c = 1.0 / 20922789888000.0; /* 1/16! ... */
    c = fma(c, r2, -1.0 / 87178291200.0);
    c = fma(c, r2, 1.0 / 479001600.0);
    c = fma(c, r2, -1.0 / 3628800.0);
    c = fma(c, r2, 1.0 / 40320.0);
    c = fma(c, r2, -1.0 / 720.0);
    c = fma(c, r2, 1.0 / 24.0);
    c = fma(c, r2, -0.5);
    c = fma(c, r2, 1.0);
    const int q = (int)(as_long(k + 0x1.8p52) & 3); /* k mod 4 from the low mantissa bits */
    const double co = q == 0 ? c : q == 1 ? -s : q == 2 ? -c : s;
    const double si = q == 0 ? s : q == 1 ? c : q == 2 ? -s : -c;
    return (float2)((float)co, (float)si);
}


#else

inline float2 cs_cos_sin(float x)
{
    return (float2)(cos(x), sin(x));
}


#endif

/* rotates pair (i0, i1) of n heads of one token by (c, s) */
inline void cs_rope_heads(__global float *row, int n, int head_dim, int i0, int i1, float c, float s)
{
    for (int h = 0; h < n; h++, row += head_dim) {
        float x0 = row[i0], x1 = row[i1];
        row[i0] = x0 * c - x1 * s;
        row[i1] = x0 * s + x1 * c;
    }
}

/* x: (n_tokens, n_head, head_dim) and, when n_head2 > 0, x2: (n_tokens,
 * n_head2, head_dim) at x2_off (Q and K of a layer in one launch: cos/sin
 * computed once for both) */
__kernel void rope(__global float *x, uint x_off, __global const int *pos, int n_tokens, int n_head,
                   int head_dim, int n_rot, int neox, float theta_scale, float freq_scale,
                   __global float *x2, uint x2_off, int n_head2)
{
    int gid = get_global_id(0);
    int half_rot = n_rot / 2;
    if (gid >= n_tokens * half_rot)
        return;
    int i = gid % half_rot;
    int t = gid / half_rot;
    float theta_e = (float)pos[t]; /* pos * theta_scale^i by repeated products, as ggml */
    for (int j = 0; j < i; j++)
        theta_e *= theta_scale;
    const float theta = freq_scale * theta_e;
    const float2 cs = cs_cos_sin(theta);
    int i0 = neox ? i : 2 * i;
    int i1 = neox ? i + half_rot : 2 * i + 1;
    cs_rope_heads(x + x_off + (size_t)t * n_head * head_dim, n_head, head_dim, i0, i1, cs.x, cs.y);
    if (n_head2 > 0)
        cs_rope_heads(x2 + x2_off + (size_t)t * n_head2 * head_dim, n_head2, head_dim, i0, i1, cs.x, cs.y);
}
