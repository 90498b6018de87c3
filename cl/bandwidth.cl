/* bandwidth.cl: global-memory read bandwidth probes for `clspec devices
 * --bandwidth` (and the runtime self-test). Each kernel sums what it reads and
 * each group writes one float to out[group], so no read can be dropped.
 *   bw_read_f4, bw_read_f16 (GPU-style): work-item i of G reads elements i,
 *     i+G, i+2G, ... (coalesced across a work-group); n counts vector
 *     elements (float4 or float16), not bytes.
 *   bw_read_rows (CPU-style): one contiguous row per work-item with
 *     prefetch, the pattern of the CPU mat-vec. */

__kernel void bw_read_f4(__global const float4 *src, const uint n, __global float *out,
                         __local float *scratch)
{
    const uint g = get_global_size(0);
    float4 acc = (float4)(0.0f);
    for (uint i = get_global_id(0); i < n; i += g)
        acc += src[i];
    const float s = cs_wg_sum(acc.s0 + acc.s1 + acc.s2 + acc.s3, scratch);
    if (get_local_id(0) == 0)
        out[get_group_id(0)] = s;
}

__kernel void bw_read_f16(__global const float16 *src, const uint n, __global float *out,
                          __local float *scratch)
{
    const uint g = get_global_size(0);
    float16 acc = (float16)(0.0f);
    for (uint i = get_global_id(0); i < n; i += g)
        acc += src[i];
    const float8 a8 = acc.lo + acc.hi;
    const float4 a4 = a8.lo + a8.hi;
    const float s = cs_wg_sum(a4.s0 + a4.s1 + a4.s2 + a4.s3, scratch);
    if (get_local_id(0) == 0)
        out[get_group_id(0)] = s;
}

/* CPU family, the access pattern of the CPU mat-vec (cl/matmul.cl mv_T):
 * work-item i reads row i (row_n float16s, a multiple of 4: 256-byte steps)
 * with four independent accumulators and prefetches BW_PF_AHEAD bytes ahead
 * of its position. PoCL runs a group's work-items one after another, so a
 * group streams its rows as one run (the prefetch crosses into the next
 * work-item's row), and the host launches many groups so every core's
 * thread keeps taking work until the buffer is done. The prefetch is the
 * same hint as matmul.cl's (CS_PREFETCH of cl/common.cl). */
#define BW_PF_AHEAD CS_PF_AHEAD /* bytes, the mat-vec's distance (src/cl/kconst.h) */

__kernel void bw_read_rows(__global const float16 *src, const uint row_n, __global float *out,
                           __local float *scratch)
{
    __global const float16 *p = src + (size_t)get_global_id(0) * row_n;
    __global const uchar *pf = (__global const uchar *)p + BW_PF_AHEAD;
    float16 a0 = (float16)(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (uint i = 0; i < row_n; i += 4, pf += 256) {
        CS_PREFETCH(pf);
        CS_PREFETCH(pf + 64);
        CS_PREFETCH(pf + 128);
        CS_PREFETCH(pf + 192);
        a0 += p[i];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
    }
    const float16 acc = (a0 + a1) + (a2 + a3);
    const float8 a8 = acc.lo + acc.hi;
    const float4 a4 = a8.lo + a8.hi;
    const float s = cs_wg_sum(a4.s0 + a4.s1 + a4.s2 + a4.s3, scratch);
    if (get_local_id(0) == 0)
        out[get_group_id(0)] = s;
}
