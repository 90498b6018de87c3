/* kprof.h: the per-kernel profile of CLSPEC_KPROF=1 (a measuring aid for
 * benchmarks, off otherwise). The runtime gives every launch a profiling
 * event; device time (start to end) and the gap before each kernel (its start
 * minus the previous kernel's end: launch overhead and host work the device
 * waited for) are summed per (kernel, global size) and printed to stderr,
 * biggest first, when the device closes. */
#ifndef CS_CL_KPROF_H
#define CS_CL_KPROF_H

#include <stddef.h>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

struct cs_cl_kprof;

/* A profile when CLSPEC_KPROF is set (and not "0"), else NULL. */
struct cs_cl_kprof *cs_cl_kprof_new(void);
/* Takes ev (a launch of kernel name over global size g, dims dims). */
void cs_cl_kprof_add(struct cs_cl_kprof *kp, const char *name, const size_t *g, cl_uint dims, cl_event ev);
/* Prints the table for device dev_name and frees kp (NULL: nothing). */
void cs_cl_kprof_dump(struct cs_cl_kprof *kp, const char *dev_name);

#endif
