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
