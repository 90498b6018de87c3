/* eltwise.cl: elementwise ops over f32 activations, one work-item per element
 * (the same kernels serve both families): SwiGLU, residual add, broadcast bias
 * add over rows, scale. Offsets are in elements. */

__kernel void swiglu(__global const float *g, uint g_off, __global const float *u, uint u_off,
                     __global float *o, uint o_off, uint n)
{
    uint i = get_global_id(0);
    if (i >= n)
        return;
    float gv = g[g_off + i];
    o[o_off + i] = gv / (1.0f + exp(-gv)) * u[u_off + i];
}

__kernel void add(__global const float *a, uint a_off, __global const float *b, uint b_off,
                  __global float *o, uint o_off, uint n)
{
    uint i = get_global_id(0);
    if (i >= n)
        return;
    o[o_off + i] = a[a_off + i] + b[b_off + i];
}

/* x (n_rows, n_cols) += bias (n_cols) broadcast over rows. */
__kernel void add_bias(__global float *x, uint x_off, __global const float *b, uint n_rows, uint n_cols)
{
    uint i = get_global_id(0);
    if (i >= n_rows * n_cols)
        return;
    x[x_off + i] += b[i % n_cols];
}

__kernel void scale(__global float *x, uint x_off, uint n, float s)
{
    uint i = get_global_id(0);
    if (i >= n)
        return;
    x[x_off + i] *= s;
}

/* ---- llama.cpp's CPU rounding of matmul inputs (cs_op_round_rows) ----
 * x (n_rows, n_cols) rounded in place the way llama.cpp's x86 CPU backend
 * converts activations to the weight type's vec_dot_type (mode, see
 * src/ops/ops.h): 1 = f16, 2 = bf16 (one work-item per element); 3 = q8_0 /
 * q8_1 blocks of 32 (one work-item per block): d = amax / 127, id = 127 /
 * amax, q = rint(x * id) (ties to even), x = f16(d) * q; 4 = q8_K blocks of
 * 256: iscale = -127 / (the element of largest |x|), q = min(127, rint(iscale
 * x)), x = (1 / iscale) * q. Plain-C twin: cs_ref_round_rows. */

/* float -> nearest-even half, back to float (every case: subnormals, overflow) */
inline float cs_round_f16(float f)
{
    uint x = as_uint(f);
    const uint sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    uint h;
    if (x >= 0x7f800000u)
        h = 0x7c00u | (x > 0x7f800000u ? (((x >> 13) & 0x3ffu) ? (x >> 13) & 0x3ffu : 0x200u) : 0u);
    else if (x >= 0x477ff000u)
        h = 0x7c00u;
    else if (x < 0x38800000u) {
        if (x <= 0x33000000u)
            h = 0u;
        else {
            const uint e = x >> 23, m = (x & 0x7fffffu) | 0x800000u, shift = 126u - e;
            const uint rem = m & ((1u << shift) - 1u), hf = 1u << (shift - 1u);
            h = m >> shift;
            if (rem > hf || (rem == hf && (h & 1u)))
                h++;
        }
    } else {
        const uint v = x - 0x38000000u, rem = v & 0x1fffu;
        h = v >> 13;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
    }
    return cs_h2f_bits(h | sign);
}

inline float cs_round_bf16(float f)
{
    const uint x = as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the payload, stay a NaN */
        return as_float((x & 0x007f0000u) ? x & 0xffff0000u : (x & 0xffff0000u) | 0x00400000u);
    return as_float(((x + 0x7fffu + ((x >> 16) & 1u)) >> 16) << 16);
}

__kernel void round_rows(__global float *x, uint x_off, uint n_rows, uint n_cols, int mode)
{
    const uint i = get_global_id(0);
    if (mode == 1 || mode == 2) {
        if (i >= n_rows * n_cols)
            return;
        const float v = x[x_off + i];
        x[x_off + i] = mode == 1 ? cs_round_f16(v) : cs_round_bf16(v);
        return;
    }
    const uint bs = mode == 3 ? 32u : 256u, nb = n_cols / bs;
    if (i >= n_rows * nb)
        return;
    __global float *b = x + x_off + (size_t)(i / nb) * n_cols + (size_t)(i % nb) * bs;
    float amax = 0.0f, mx = 0.0f;
    for (uint j = 0; j < bs; j++) {
        const float a = fabs(b[j]);
        if (a > amax) {
            amax = a;
            mx = b[j];
        }
    }
    if (mode == 3) {
        const float d = cs_round_f16(amax / 127.0f), id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (uint j = 0; j < bs; j++)
            b[j] = d * rint(b[j] * id);
    } else {
        if (amax == 0.0f)
            return;
        const float iscale = -127.0f / mx, d = 1.0f / iscale;
        for (uint j = 0; j < bs; j++)
            b[j] = d * fmin(rint(iscale * b[j]), 127.0f);
    }
}
