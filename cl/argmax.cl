/* argmax.cl: the index of the largest element of each row of an f32 matrix
 * x (n_rows, n_cols) into out (int32, n_rows) (a drafter's greedy token).
 * Ties go to the smallest index (the first maximum, as a left-to-right scan
 * with >); NaN never wins over a number. Both families give the same index
 * (cs_op_argmax in src/ops/ops.c; C twin cs_ref_argmax). Offsets are in
 * elements. */

/* the better of two (value, index) candidates: larger value, then smaller index */
inline bool cs_amax_better(float v, int i, float bv, int bi)
{
    return v > bv || (v == bv && i < bi) || (isnan(bv) && !isnan(v));
}

/* CPU family: one row per work-item, a scan. */
__kernel void argmax_cpu(__global const float *x, uint x_off, __global int *out, uint out_off, int n_rows,
                         int n_cols)
{
    int r = get_global_id(0);
    if (r >= n_rows)
        return;
    __global const float *xr = x + x_off + (size_t)r * n_cols;
    float bv = xr[0];
    int bi = 0;
    for (int i = 1; i < n_cols; i++)
        if (cs_amax_better(xr[i], i, bv, bi)) {
            bv = xr[i];
            bi = i;
        }
    out[out_off + r] = bi;
}

/* GPU family: one work-group per row; each lane scans a strided part, then a
 * tree over the lanes' (value, index) in local memory. */
#define AMAX_WG 256 /* largest local size; the host passes a power of two <= this */
__kernel void argmax_gpu(__global const float *x, uint x_off, __global int *out, uint out_off, int n_rows,
                         int n_cols)
{
    __local float lv[AMAX_WG];
    __local int li[AMAX_WG];
    int r = get_group_id(0), lid = get_local_id(0), ls = get_local_size(0);
    __global const float *xr = x + x_off + (size_t)r * n_cols;
    float bv = NAN;
    int bi = n_cols;
    for (int i = lid; i < n_cols; i += ls)
        if (bi == n_cols || cs_amax_better(xr[i], i, bv, bi)) {
            bv = xr[i];
            bi = i;
        }
    lv[lid] = bv;
    li[lid] = bi;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ls / 2; s > 0; s /= 2) {
        if (lid < s && li[lid + s] < n_cols &&
            (li[lid] == n_cols || cs_amax_better(lv[lid + s], li[lid + s], lv[lid], li[lid]))) {
            lv[lid] = lv[lid + s];
            li[lid] = li[lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0 && r < n_rows)
        out[out_off + r] = li[0];
}

/* Greedy verification of runs of rows (both families; one work-item per
 * row, a short scan). am (n): each row's argmax; nxt (n): the token the
 * next row of the same run carries (the draft token to check against this
 * row's argmax), -1 where the run ends. For row i: res[2i] = how many rows
 * j = i, i+1, ... match (am[j] == nxt[j]) before the first that does not
 * or ends the run, res[2i+1] = am of that row (the token greedy decoding
 * takes there); nxt and res from element offsets nxt_off, res_off. C twin
 * cs_ref_greedy_accept. */
__kernel void greedy_accept(__global const int *am, __global const int *nxt, __global int *res, int n,
                            uint nxt_off, uint res_off)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    nxt += nxt_off; /* nxt and res may lie in one buffer (the step's tokens, then these) */
    res += res_off;
    int j = i;
    while (j < n - 1 && nxt[j] >= 0 && am[j] == nxt[j])
        j++;
    res[2 * i] = j - i;
    res[2 * i + 1] = am[j];
}
