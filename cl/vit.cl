/* vit.cl: the vision encoder's own row ops: LayerNorm (mean and population
 * variance, optional weight and bias) in the two families, as norm.cl's
 * RMSNorm (*_cpu: one row per work-item; *_gpu: one work-group per row,
 * local size <= NORM_WG), and the GELU activations in place (element-wise,
 * family-independent). */

#ifndef NORM_WG
#error "vit.cl: NORM_WG missing (the -D constants of src/cl/kconst.h)"
#endif

/* element i of a normed row: (x - mean) * s (* w[i]) (+ b[i]) */
inline float cs_ln_out(float x, float mean, float s, __global const float *w, __global const float *b, int has_w,
                       int has_b, int i)
{
    float v = (x - mean) * s;
    if (has_w)
        v *= w[i];
    if (has_b)
        v += b[i];
    return v;
}

/* ---- CPU family ---- */

__kernel void layernorm_cpu(__global const float *x, uint x_off, __global const float *w, __global const float *b,
                            int has_w, int has_b, __global float *y, uint y_off, int n_rows, int n_cols, float eps)
{
    int r = get_global_id(0);
    if (r >= n_rows)
        return;
    __global const float *xr = x + x_off + (size_t)r * n_cols;
    __global float *yr = y + y_off + (size_t)r * n_cols;
    float sum = 0.0f;
    for (int i = 0; i < n_cols; i++)
        sum += xr[i];
    const float mean = sum / (float)n_cols;
    float var = 0.0f;
    for (int i = 0; i < n_cols; i++) {
        const float d = xr[i] - mean;
        var = fma(d, d, var);
    }
    const float s = 1.0f / sqrt(var / (float)n_cols + eps);
    for (int i = 0; i < n_cols; i++)
        yr[i] = cs_ln_out(xr[i], mean, s, w, b, has_w, has_b, i);
}

/* ---- GPU family ---- */

__kernel void layernorm_gpu(__global const float *x, uint x_off, __global const float *w, __global const float *b,
                            int has_w, int has_b, __global float *y, uint y_off, int n_rows, int n_cols, float eps)
{
    __local float red[NORM_WG];
    int r = get_group_id(0), lid = get_local_id(0), ls = get_local_size(0);
    __global const float *xr = x + x_off + (size_t)r * n_cols;
    __global float *yr = y + y_off + (size_t)r * n_cols;
    float acc = 0.0f;
    for (int i = lid; i < n_cols; i += ls)
        acc += xr[i];
    const float mean = cs_wg_sum(acc, red) / (float)n_cols;
    acc = 0.0f;
    for (int i = lid; i < n_cols; i += ls) {
        const float d = xr[i] - mean;
        acc = fma(d, d, acc);
    }
    const float s = 1.0f / sqrt(cs_wg_sum(acc, red) / (float)n_cols + eps);
    for (int i = lid; i < n_cols; i += ls)
        yr[i] = cs_ln_out(xr[i], mean, s, w, b, has_w, has_b, i);
}

/* ---- both families ---- */

/* x[i] = act(x[i]), i < n; mode 0: GELU (tanh form), 1: quick-GELU x * sigmoid(1.702 x) */
__kernel void gelu(__global float *x, uint x_off, uint n, int mode)
{
    uint i = get_global_id(0);
    if (i >= n)
        return;
    const float v = x[x_off + i];
    if (mode == 0)
        x[x_off + i] = 0.5f * v * (1.0f + tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    else
        x[x_off + i] = v / (1.0f + exp(-1.702f * v));
}
