/* bandwidth.h: measures a device's global-memory read bandwidth with the
 * kernels of cl/bandwidth.cl: GPU-style float4 and float16 grid-stride
 * reads, and CPU-style float16 reads of one contiguous row per work-item
 * with prefetch (the CPU mat-vec's pattern); the best of them is the
 * device's figure.
 * The caller owns the opened device; nothing is kept after the call. */
#ifndef CS_CL_BANDWIDTH_H
#define CS_CL_BANDWIDTH_H

#include "cl/runtime.h"

struct cs_cl_bw {
    size_t bytes;          /* buffer size read per run, bytes */
    int runs;              /* timed runs per kernel (after one warm-up) */
    size_t local, global;  /* work-group and total work-items of the best kernel */
    const char *best;      /* the best kernel's name (static string) */
    double gbps_f4;        /* best of runs, 1e9 bytes/s, strided float4 kernel */
    double gbps_f16;       /* best of runs, 1e9 bytes/s, strided float16 kernel */
    double gbps_rows;      /* best of runs, 1e9 bytes/s, float16, one prefetched row per work-item */
    double best_gbps;      /* max of the three */
};

/* The default probe size: 1 GiB (past a CPU's last-level cache), or
 * max_alloc/2 or global_mem/4 when smaller. */
size_t cs_cl_bw_default_bytes(const struct cs_cl_devinfo *info);

/* Fills a bytes-sized buffer (rounded down to whole groups of the rows
 * kernel: 64 KiB on a CPU; fewer is CLSPEC_E_INVAL) with 1.0f,
 * runs each kernel once to warm up and then runs times (>= 1), keeping the
 * fastest (a kernel under a quarter of the best figure so far stops after
 * one timed run: it cannot win); checks the per-group sums add up to the number of floats, so a
 * wrong or skipped read is an error (CLSPEC_E_CL), never a fast number. */
int cs_cl_bandwidth(struct cs_cl_dev *d, size_t bytes, int runs, struct cs_cl_bw *out,
                    char *err, size_t errlen);

#endif
