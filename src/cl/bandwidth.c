/* bandwidth.c: global-memory read bandwidth probe (cl/bandwidth.cl). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cl/bandwidth.h"
#include "base/common.h"
#include "ops/ops.h" /* cs_op_launch: the one way kernels are dispatched */

#define BW_ROW_BYTES 4096 /* bw_read_rows: bytes per work-item (a 2048-wide F16 weight row) */
#define BW_ROW_LOCAL 16   /* bw_read_rows: work-items per group (src/ops/matmul.c's CPU_LOCAL) */

size_t cs_cl_bw_default_bytes(const struct cs_cl_devinfo *info)
{
    /* 1 GiB: well past a CPU's last-level cache (480 MiB reported on the
     * machine this was tuned on: a 256 MiB buffer partly stayed in it) */
    cl_ulong b = 1024ull << 20;
    if (info->max_alloc / 2 < b)
        b = info->max_alloc / 2;
    if (info->global_mem / 4 < b)
        b = info->global_mem / 4;
    return (size_t)(b / 64 * 64);
}

/* One launch shape of one kernel: n is its second argument (vector elements
 * for the strided kernels, float16s per row for bw_read_rows). */
struct bw_shape {
    const char *kname;
    cl_uint n;
    size_t groups, local;
};

/* Warm-up + runs of one kernel over the bytes of src; best GB/s into *gbps
 * after checking the group sums add up to the number of floats read. A
 * kernel whose run is slower than a quarter of lead_gbps (the best kernel's
 * figure so far; 0: none yet) cannot win: it stops there with that figure
 * (a strided read on a CPU takes seconds per run). */
static int probe(struct cs_cl_dev *d, const struct bw_shape *sh, cl_mem src, size_t bytes, cl_mem out,
                 float *host_out, int runs, double lead_gbps, double *gbps, char *err, size_t errlen)
{
    const struct cs_karg a[] = {CS_KA(src), CS_KA(sh->n), CS_KA(out), {sh->local * sizeof(float), NULL}};
    int rc;
    double best = 0;
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up (and PoCL's kernel compile) */
        double t0 = cs_now();
        if ((rc = cs_op_launch(d, "bandwidth", NULL, sh->kname, a, CS_ARRAY_LEN(a), sh->groups * sh->local,
                               sh->local, err, errlen)) != CLSPEC_OK ||
            (rc = cs_cl_finish(d, err, errlen)) != CLSPEC_OK)
            return rc;
        double t = cs_now() - t0;
        if (r >= 0 && t > 0 && (best == 0 || t < best))
            best = t;
        if (r >= 0 && lead_gbps > 0 && bytes / best / 1e9 < lead_gbps / 4)
            break;
    }
    if ((rc = cs_cl_read(d, out, 0, sh->groups * sizeof(float), host_out, err, errlen)) != CLSPEC_OK)
        return rc;
    double sum = 0;
    for (size_t i = 0; i < sh->groups; i++)
        sum += host_out[i];
    double want = (double)(bytes / sizeof(float));
    /* exact while per-group sums stay below 2^24; the slack only covers
     * float rounding on huge groups, not a skipped or doubled read */
    if (sum < want * (1 - 1e-6) || sum > want * (1 + 1e-6))
        return cs_err(err, errlen, CLSPEC_E_CL, "%s on %s: group sums add up to %.0f, expected %.0f",
                      sh->kname, d->info.name, sum, want);
    *gbps = bytes / best / 1e9;
    return CLSPEC_OK;
}

int cs_cl_bandwidth(struct cs_cl_dev *d, size_t bytes, int runs, struct cs_cl_bw *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (runs < 1)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "bandwidth: need >= 1 run");
    size_t rlocal = BW_ROW_LOCAL < d->info.max_wg ? BW_ROW_LOCAL : d->info.max_wg;
    const size_t unit = BW_ROW_BYTES * rlocal; /* bw_read_rows reads whole groups of rows */
    if (bytes > (size_t)0xffffffffu * 16)
        bytes = (size_t)0xffffffffu * 16;
    bytes = bytes / unit * unit;
    if (bytes == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "bandwidth: need >= %zu bytes", unit);
    /* GPU-style (strided): 256-wide groups, many per compute unit to hide
     * latency; on a CPU one small group per core (PoCL 3.1, 2 cores: the
     * group shape moved them within noise, 2-12 GB/s, far below a plain
     * host loop: PoCL runs a group's work-items one after another, so a
     * strided work-item jumps through memory). CPU-style (rows): many groups
     * of 16 contiguous rows, as the CPU mat-vec streams its weights. */
    size_t local = d->info.family == CS_KFAMILY_GPU ? 256 : 16;
    if (local > d->info.max_wg)
        local = d->info.max_wg;
    size_t per_cu = d->info.family == CS_KFAMILY_GPU ? 32 : 1;
    size_t groups = (size_t)(d->info.compute_units ? d->info.compute_units : 1) * per_cu;
    size_t max_groups = (bytes / 64 + local - 1) / local; /* >= 1 float16 per work-item */
    if (groups > max_groups)
        groups = max_groups;
    const struct bw_shape shapes[3] = {
        {"bw_read_f4", (cl_uint)(bytes / 16), groups, local},
        {"bw_read_f16", (cl_uint)(bytes / 64), groups, local},
        {"bw_read_rows", BW_ROW_BYTES / 64, bytes / unit, rlocal},
    };
    double *res[3] = {&out->gbps_f4, &out->gbps_f16, &out->gbps_rows};
    out->bytes = bytes;
    out->runs = runs;

    cl_mem src = NULL, sums = NULL;
    size_t max_out = CS_MAX(groups, bytes / unit);
    float *host = malloc(max_out * sizeof(float));
    if (!host)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "bandwidth: out of memory");
    int rc = cs_cl_alloc(d, CL_MEM_READ_ONLY, bytes, NULL, &src, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(d, CL_MEM_WRITE_ONLY, max_out * sizeof(float), NULL, &sums, err, errlen);
    if (rc == CLSPEC_OK) {
        const float one = 1.0f;
        rc = cs_cl_check(clEnqueueFillBuffer(d->q, src, &one, sizeof one, 0, bytes, 0, NULL, NULL),
                         "bandwidth: clEnqueueFillBuffer", err, errlen);
    }
    /* the family's own style first, so the other can stop early */
    static const int order_cpu[3] = {2, 1, 0}, order_gpu[3] = {0, 1, 2};
    const int *order = d->info.family == CS_KFAMILY_GPU ? order_gpu : order_cpu;
    for (int k = 0; k < 3 && rc == CLSPEC_OK; k++) {
        const int i = order[k];
        rc = probe(d, &shapes[i], src, bytes, sums, host, runs, out->best_gbps, res[i], err, errlen);
        if (rc == CLSPEC_OK && *res[i] > out->best_gbps) {
            out->best_gbps = *res[i];
            out->best = shapes[i].kname;
            out->local = shapes[i].local;
            out->global = shapes[i].groups * shapes[i].local;
        }
    }
    if (sums)
        clReleaseMemObject(sums);
    if (src)
        clReleaseMemObject(src);
    free(host);
    return rc;
}
