/* bandwidth.h: measures a device's global-memory read bandwidth with the
 * kernels of cl/bandwidth.cl (float4 and float16 grid-stride reads, and
 * float16 reads of one contiguous run per work-item).
 * The caller owns the opened device; nothing is kept after the call. */
#ifndef CS_CL_BANDWIDTH_H
#define CS_CL_BANDWIDTH_H

#include "cl/runtime.h"

struct cs_cl_bw {
    size_t bytes;          /* buffer size read per run, bytes */
    size_t local, global;  /* work-group and total work-items used */
    double gbps_f4;        /* best of runs, 1e9 bytes/s, float4 kernel */
    double gbps_f16;       /* best of runs, 1e9 bytes/s, float16 kernel */
    double gbps_chunk;     /* best of runs, 1e9 bytes/s, float16, contiguous run per work-item */
    double best_gbps;      /* max of the three */
};

/* The default probe size: 256 MiB, or max_alloc/2 when smaller. */
size_t cs_cl_bw_default_bytes(const struct cs_cl_devinfo *info);

/* Fills a bytes-sized buffer (rounded down to 64 bytes, >= 64) with 1.0f,
 * runs each kernel once to warm up and then runs times (>= 1), keeping the
 * fastest; checks the per-group sums add up to the number of floats, so a
 * wrong or skipped read is an error (CLSPEC_E_CL), never a fast number. */
int cs_cl_bandwidth(struct cs_cl_dev *d, size_t bytes, int runs, struct cs_cl_bw *out,
                    char *err, size_t errlen);

#endif
