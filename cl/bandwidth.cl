/* bandwidth.cl: global-memory read bandwidth probes for `clspec devices
 * --bandwidth` (and the runtime self-test). Work-item i of G reads elements
 * i, i+G, i+2G, ... (coalesced across a work-group on GPUs), sums them, and
 * the group writes one float to out[group] so the reads cannot be dropped.
 * n counts vector elements (float4 or float16), not bytes. */

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

/* CPU-style: work-item i reads its own contiguous run of `chunk` float16s
 * (what hardware prefetchers want; PoCL runs a work-item's loop to the end
 * before starting the next work-item, so the strided kernels above jump
 * through memory there). */
__kernel void bw_read_chunk_f16(__global const float16 *src, const uint n, __global float *out,
                                __local float *scratch, const uint chunk)
{
    const uint lo = get_global_id(0) * chunk;
    const uint hi = min(lo + chunk, n);
    float16 acc = (float16)(0.0f);
    for (uint i = lo; i < hi; i++)
        acc += src[i];
    const float8 a8 = acc.lo + acc.hi;
    const float4 a4 = a8.lo + a8.hi;
    const float s = cs_wg_sum(a4.s0 + a4.s1 + a4.s2 + a4.s3, scratch);
    if (get_local_id(0) == 0)
        out[get_group_id(0)] = s;
}
