/* bandwidth.c: global-memory read bandwidth probe (cl/bandwidth.cl). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cl/bandwidth.h"
#include "base/common.h"
#include "ops/ops.h" /* cs_op_launch: the one way kernels are dispatched */

size_t cs_cl_bw_default_bytes(const struct cs_cl_devinfo *info)
{
    cl_ulong b = 256ull << 20;
    if (info->max_alloc / 2 < b)
        b = info->max_alloc / 2;
    return (size_t)(b / 64 * 64);
}

/* One kernel: warm-up + runs; best GB/s into *gbps after checking the sum. */
static int probe(struct cs_cl_dev *d, const char *kname, size_t vec_bytes, cl_mem src, size_t bytes,
                 cl_mem out, float *host_out, size_t groups, size_t local, int runs, double *gbps,
                 char *err, size_t errlen)
{
    const cl_uint n = (cl_uint)(bytes / vec_bytes);
    const size_t global = groups * local;
    const cl_uint chunk = (cl_uint)((n + global - 1) / global); /* only the chunked kernel takes it */
    const struct cs_karg a[] = {CS_KA(src), CS_KA(n), CS_KA(out), {local * sizeof(float), NULL}, CS_KA(chunk)};
    const size_t na = strstr(kname, "chunk") ? 5 : 4;
    int rc;
    double best = 0;
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up (and PoCL's kernel compile) */
        double t0 = cs_now();
        if ((rc = cs_op_launch(d, "bandwidth", NULL, kname, a, na, global, local, err, errlen)) != CLSPEC_OK ||
            (rc = cs_cl_finish(d, err, errlen)) != CLSPEC_OK)
            return rc;
        double t = cs_now() - t0;
        if (r >= 0 && t > 0 && (best == 0 || t < best))
            best = t;
    }
    if ((rc = cs_cl_read(d, out, 0, groups * sizeof(float), host_out, err, errlen)) != CLSPEC_OK)
        return rc;
    double sum = 0;
    for (size_t i = 0; i < groups; i++)
        sum += host_out[i];
    double want = (double)(bytes / sizeof(float));
    /* exact while per-group sums stay below 2^24; the slack only covers
     * float rounding on huge groups, not a skipped or doubled read */
    if (sum < want * (1 - 1e-6) || sum > want * (1 + 1e-6))
        return cs_err(err, errlen, CLSPEC_E_CL, "%s on %s: group sums add up to %.0f, expected %.0f",
                      kname, d->info.name, sum, want);
    *gbps = bytes / best / 1e9;
    return CLSPEC_OK;
}

int cs_cl_bandwidth(struct cs_cl_dev *d, size_t bytes, int runs, struct cs_cl_bw *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    bytes = bytes / 64 * 64;
    if (bytes < 64 || runs < 1)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "bandwidth: need >= 64 bytes and >= 1 run");
    if (bytes / 16 > 0xffffffffu)
        bytes = (size_t)0xffffffffu * 16 / 64 * 64;
    /* GPUs: 256-wide groups, many per compute unit to hide latency. CPUs
     * (PoCL): one small group per core. On PoCL 3.1 (2 shared cores) the
     * group shape moved the strided kernels within noise (6-12 GB/s); the
     * contiguous-run kernel read 19-27 GB/s, as fast as a plain host loop. */
    size_t local = d->info.family == CS_KFAMILY_GPU ? 256 : 16;
    if (local > d->info.max_wg)
        local = d->info.max_wg;
    size_t per_cu = d->info.family == CS_KFAMILY_GPU ? 32 : 1;
    size_t groups = (size_t)(d->info.compute_units ? d->info.compute_units : 1) * per_cu;
    size_t max_groups = (bytes / 64 + local - 1) / local; /* >= 1 float16 per work-item */
    if (groups > max_groups)
        groups = max_groups;
    out->bytes = bytes;
    out->local = local;
    out->global = groups * local;

    cl_mem src = NULL, sums = NULL;
    float *host = malloc(groups * sizeof(float));
    if (!host)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "bandwidth: out of memory");
    int rc = cs_cl_alloc(d, CL_MEM_READ_ONLY, bytes, NULL, &src, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(d, CL_MEM_WRITE_ONLY, groups * sizeof(float), NULL, &sums, err, errlen);
    if (rc == CLSPEC_OK) {
        const float one = 1.0f;
        rc = cs_cl_check(clEnqueueFillBuffer(d->q, src, &one, sizeof one, 0, bytes, 0, NULL, NULL),
                         "bandwidth: clEnqueueFillBuffer", err, errlen);
    }
    if (rc == CLSPEC_OK)
        rc = probe(d, "bw_read_f4", 16, src, bytes, sums, host, groups, local, runs, &out->gbps_f4, err,
                   errlen);
    if (rc == CLSPEC_OK)
        rc = probe(d, "bw_read_f16", 64, src, bytes, sums, host, groups, local, runs, &out->gbps_f16, err,
                   errlen);
    if (rc == CLSPEC_OK)
        rc = probe(d, "bw_read_chunk_f16", 64, src, bytes, sums, host, groups, local, runs,
                   &out->gbps_chunk, err, errlen);
    out->best_gbps = CS_MAX(CS_MAX(out->gbps_f4, out->gbps_f16), out->gbps_chunk);
    if (sums)
        clReleaseMemObject(sums);
    if (src)
        clReleaseMemObject(src);
    free(host);
    return rc;
}
