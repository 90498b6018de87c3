/* common.cl: prelude of every clspec program (the host prepends it, then
 * cl/blocks.cl, then the op's own file). The host passes the device's feature
 * flags as -D options (see cs_cl_dev_open): CS_FAMILY_CPU / CS_FAMILY_GPU,
 * CS_HAS_FP16, CS_HAS_SUBGROUPS, CS_HAS_INT_DOT; each is 1 when present and
 * defined to 0 here when absent, so kernels test them with #if. */
#ifndef CS_FAMILY_CPU
#define CS_FAMILY_CPU 0
#endif
#ifndef CS_FAMILY_GPU
#define CS_FAMILY_GPU 0
#endif
#ifndef CS_HAS_FP16
#define CS_HAS_FP16 0
#endif
#ifndef CS_HAS_SUBGROUPS
#define CS_HAS_SUBGROUPS 0
#endif
#ifndef CS_HAS_INT_DOT
#define CS_HAS_INT_DOT 0
#endif

#if CS_HAS_FP16
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#endif
#if CS_HAS_SUBGROUPS && defined(cl_khr_subgroups)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif

/* Software prefetch, the one definition for every program: CS_PREFETCH(p)
 * hints that the cache line at p (any address space) will be read soon; a
 * hint only, it never faults and changes no result. Clang-based compilers
 * (PoCL, Intel's CPU runtime) have the builtin; elsewhere, or with
 * -DCS_NO_PREFETCH, it is empty. CS_PF_LINES(p, step): every cache line of
 * [p, p + step). Where and how far ahead each kernel prefetches, and what it
 * measured, is said at its use (cl/matmul.cl, matmul_q8.cl, matmul_i4.cl,
 * attention.cl, bandwidth.cl). */
#if defined(__has_builtin) && !defined(CS_NO_PREFETCH)
#if __has_builtin(__builtin_prefetch)
#define CS_PREFETCH(p) __builtin_prefetch(p)
#endif
#endif
#ifndef CS_PREFETCH
#define CS_PREFETCH(p) ((void)0)
#endif
#define CS_PF_LINES(p, step) \
    for (uint o_ = 0; o_ < (step); o_ += 64) \
        CS_PREFETCH((p) + o_)

/* IEEE half bits -> float without needing cl_khr_fp16 (vload_half is core
 * OpenCL 1.2 and reads half data from any address space). */
inline float cs_h2f(const __global ushort *p)
{
    return vload_half(0, (const __global half *)p);
}

/* Work-group reductions (any local size): scratch holds get_local_size(0)
 * floats; every work-item of the group must call them and all get the result.
 * The group is folded onto the largest power of two p <= size, then halved. */
#define CS_WG_REDUCE(NAME, COMBINE)                                    \
    inline float NAME(float v, __local float *scratch)                 \
    {                                                                  \
        const uint lid = get_local_id(0), n = get_local_size(0);       \
        uint p = 1;                                                    \
        while (p * 2 <= n)                                             \
            p *= 2;                                                    \
        scratch[lid] = v;                                              \
        barrier(CLK_LOCAL_MEM_FENCE);                                  \
        if (lid >= p)                                                  \
            scratch[lid - p] = COMBINE(scratch[lid - p], scratch[lid]); \
        barrier(CLK_LOCAL_MEM_FENCE);                                  \
        for (uint s = p / 2; s > 0; s >>= 1) {                         \
            if (lid < s)                                               \
                scratch[lid] = COMBINE(scratch[lid], scratch[lid + s]); \
            barrier(CLK_LOCAL_MEM_FENCE);                              \
        }                                                              \
        const float r = scratch[0];                                    \
        barrier(CLK_LOCAL_MEM_FENCE);                                  \
        return r;                                                      \
    }
#define CS_WG_ADD(a, b) ((a) + (b))
CS_WG_REDUCE(cs_wg_sum, CS_WG_ADD) /* sum of v over the work-group */
CS_WG_REDUCE(cs_wg_max, fmax)      /* maximum of v over the work-group */
