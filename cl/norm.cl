/* norm.cl: row reductions of the forward pass: RMSNorm (with an optional
 * weight row) and softmax over rows, in two families:
 *   *_cpu: one row per work-item, float4 loads, no local memory;
 *   *_gpu: one work-group per row, local-memory reductions (cs_wg_sum /
 *          cs_wg_max of cl/common.cl; local size <= NORM_WG, chosen by
 *          src/ops/ops.c).
 * NORM_WG comes as -D from src/cl/kconst.h (every program build has it). */

#ifndef NORM_WG
#error "norm.cl: NORM_WG missing (the -D constants of src/cl/kconst.h)"
#endif

/* ---- CPU family ---- */

/* the sum of squares of a row in its one order (rmsnorm_cpu and
 * add_rmsnorm_cpu give bitwise the same norm) */
inline float cs_sumsq_cpu(__global const float *xr, int n_cols)
{
    int n4 = n_cols / 4;
    float4 acc4 = (float4)(0.0f);
    for (int i = 0; i < n4; i++) {
        float4 v = vload4(i, xr);
        acc4 = fma(v, v, acc4);
    }
    float acc = (acc4.x + acc4.y) + (acc4.z + acc4.w);
    for (int i = n4 * 4; i < n_cols; i++)
        acc = fma(xr[i], xr[i], acc);
    return acc;
}

inline void cs_scale_row_cpu(__global const float *xr, __global const float *w, int has_w, __global float *yr,
                             int n_cols, float eps, float acc)
{
    int n4 = n_cols / 4;
    float s = 1.0f / sqrt(acc / (float)n_cols + eps);
    for (int i = 0; i < n4; i++) {
        float4 v = vload4(i, xr) * s;
        if (has_w)
            v *= vload4(i, w);
        vstore4(v, i, yr);
    }
    for (int i = n4 * 4; i < n_cols; i++)
        yr[i] = has_w ? xr[i] * s * w[i] : xr[i] * s;
}

__kernel void rmsnorm_cpu(__global const float *x, uint x_off, __global const float *w, int has_w,
                          __global float *y, uint y_off, int n_rows, int n_cols, float eps)
{
    int r = get_global_id(0);
    if (r >= n_rows)
        return;
    __global const float *xr = x + x_off + (size_t)r * n_cols;
    cs_scale_row_cpu(xr, w, has_w, y + y_off + (size_t)r * n_cols, n_cols, eps, cs_sumsq_cpu(xr, n_cols));
}

/* x += b (the residual), then y = rmsnorm(x) (* w): rows as rmsnorm_cpu */
__kernel void add_rmsnorm_cpu(__global float *x, uint x_off, __global const float *b, uint b_off,
                              __global const float *w, int has_w, __global float *y, uint y_off, int n_rows,
                              int n_cols, float eps)
{
    int r = get_global_id(0);
    if (r >= n_rows)
        return;
    __global float *xr = x + x_off + (size_t)r * n_cols;
    __global const float *br = b + b_off + (size_t)r * n_cols;
    for (int i = 0; i < n_cols; i++)
        xr[i] = xr[i] + br[i];
    cs_scale_row_cpu(xr, w, has_w, y + y_off + (size_t)r * n_cols, n_cols, eps, cs_sumsq_cpu(xr, n_cols));
}

__kernel void softmax_cpu(__global float *x, uint x_off, int n_rows, int n_cols)
{
    int r = get_global_id(0);
    if (r >= n_rows)
        return;
    __global float *xr = x + x_off + (size_t)r * n_cols;
    int n4 = n_cols / 4;
    float4 m4 = (float4)(-INFINITY);
    for (int i = 0; i < n4; i++)
        m4 = fmax(m4, vload4(i, xr));
    float m = fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w));
    for (int i = n4 * 4; i < n_cols; i++)
        m = fmax(m, xr[i]);
    /* long rows: compensated (Kahan) float4 sums keep the error ~1 ulp */
    float4 s4 = (float4)(0.0f), c4 = (float4)(0.0f);
    for (int i = 0; i < n4; i++) {
        float4 e = exp(vload4(i, xr) - m);
        vstore4(e, i, xr);
        float4 y = e - c4, t = s4 + y;
        c4 = (t - s4) - y;
        s4 = t;
    }
    float sum = (s4.x + s4.y) + (s4.z + s4.w);
    for (int i = n4 * 4; i < n_cols; i++) {
        float e = exp(xr[i] - m);
        xr[i] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n4; i++)
        vstore4(vload4(i, xr) * inv, i, xr);
    for (int i = n4 * 4; i < n_cols; i++)
        xr[i] *= inv;
}

/* ---- GPU family ---- */

__kernel void rmsnorm_gpu(__global const float *x, uint x_off, __global const float *w, int has_w,
                          __global float *y, uint y_off, int n_rows, int n_cols, float eps)
{
    __local float red[NORM_WG];
    int r = get_group_id(0), lid = get_local_id(0), ls = get_local_size(0);
    __global const float *xr = x + x_off + (size_t)r * n_cols;
    __global float *yr = y + y_off + (size_t)r * n_cols;
    float acc = 0.0f;
    for (int i = lid; i < n_cols; i += ls)
        acc = fma(xr[i], xr[i], acc);
    acc = cs_wg_sum(acc, red);
    float s = 1.0f / sqrt(acc / (float)n_cols + eps);
    for (int i = lid; i < n_cols; i += ls)
        yr[i] = has_w ? xr[i] * s * w[i] : xr[i] * s;
}

/* x += b, then y = rmsnorm(x) (* w): rows as rmsnorm_gpu (each work-item
 * reads back only the elements it wrote) */
__kernel void add_rmsnorm_gpu(__global float *x, uint x_off, __global const float *b, uint b_off,
                              __global const float *w, int has_w, __global float *y, uint y_off, int n_rows,
                              int n_cols, float eps)
{
    __local float red[NORM_WG];
    int r = get_group_id(0), lid = get_local_id(0), ls = get_local_size(0);
    __global float *xr = x + x_off + (size_t)r * n_cols;
    __global const float *br = b + b_off + (size_t)r * n_cols;
    __global float *yr = y + y_off + (size_t)r * n_cols;
    float acc = 0.0f;
    for (int i = lid; i < n_cols; i += ls) {
        const float v = xr[i] + br[i];
        xr[i] = v;
        acc = fma(v, v, acc);
    }
    acc = cs_wg_sum(acc, red);
    float s = 1.0f / sqrt(acc / (float)n_cols + eps);
    for (int i = lid; i < n_cols; i += ls)
        yr[i] = has_w ? xr[i] * s * w[i] : xr[i] * s;
}

__kernel void softmax_gpu(__global float *x, uint x_off, int n_rows, int n_cols)
{
    __local float red[NORM_WG];
    int r = get_group_id(0), lid = get_local_id(0), ls = get_local_size(0);
    __global float *xr = x + x_off + (size_t)r * n_cols;
    float m = -INFINITY;
    for (int i = lid; i < n_cols; i += ls)
        m = fmax(m, xr[i]);
    m = cs_wg_max(m, red);
    float sum = 0.0f;
    for (int i = lid; i < n_cols; i += ls) {
        float e = exp(xr[i] - m);
        xr[i] = e;
        sum += e;
    }
    sum = cs_wg_sum(sum, red);
    float inv = 1.0f / sum;
    for (int i = lid; i < n_cols; i += ls)
        xr[i] *= inv;
}
