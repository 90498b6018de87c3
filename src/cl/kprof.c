/* kprof.c: see kprof.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/kprof.h"

/* Events are resolved in batches of CS_KPROF_PENDING (the queue keeps running
 * asynchronously meanwhile). */
#define CS_KPROF_MAX 256
#define CS_KPROF_PENDING 512
struct cs_cl_kprof {
    struct {
        char name[48];         /* the launch's name */
        size_t g0, g1;         /* global size, dims 0 and 1 */
        unsigned n;            /* launches */
        double dev_ms, gap_ms;
    } e[CS_KPROF_MAX];
    int n;
    cl_event pend[CS_KPROF_PENDING];
    int pend_e[CS_KPROF_PENDING]; /* entry index of each pending event */
    int n_pend;
    cl_ulong last_end;         /* ns, the previous kernel's end (0: none yet) */
};

struct cs_cl_kprof *cs_cl_kprof_new(void)
{
    const char *v = getenv("CLSPEC_KPROF");
    return v && *v && strcmp(v, "0") ? calloc(1, sizeof(struct cs_cl_kprof)) : NULL;
}

static void kprof_flush(struct cs_cl_kprof *kp)
{
    if (kp->n_pend)
        clWaitForEvents((cl_uint)kp->n_pend, kp->pend);
    for (int j = 0; j < kp->n_pend; j++) {
        cl_ulong t0 = 0, t1 = 0;
        clGetEventProfilingInfo(kp->pend[j], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
        clGetEventProfilingInfo(kp->pend[j], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        clReleaseEvent(kp->pend[j]);
        int i = kp->pend_e[j];
        kp->e[i].dev_ms += (double)(t1 - t0) * 1e-6;
        if (kp->last_end && t0 > kp->last_end && t0 - kp->last_end < 100000000u) /* < 0.1 s: not idle */
            kp->e[i].gap_ms += (double)(t0 - kp->last_end) * 1e-6;
        kp->last_end = t1;
    }
    kp->n_pend = 0;
}

void cs_cl_kprof_add(struct cs_cl_kprof *kp, const char *name, const size_t *g, cl_uint dims, cl_event ev)
{
    size_t g1 = dims > 1 ? g[1] : 1;
    int i = 0;
    while (i < kp->n && !(kp->e[i].g0 == g[0] && kp->e[i].g1 == g1 &&
                          !strncmp(kp->e[i].name, name, sizeof kp->e[i].name - 1)))
        i++;
    if (i == kp->n) {
        if (kp->n == CS_KPROF_MAX) {
            clReleaseEvent(ev);
            return;
        }
        kp->n++;
        snprintf(kp->e[i].name, sizeof kp->e[i].name, "%s", name);
        kp->e[i].g0 = g[0];
        kp->e[i].g1 = g1;
    }
    kp->e[i].n++;
    if (kp->n_pend == CS_KPROF_PENDING)
        kprof_flush(kp);
    kp->pend[kp->n_pend] = ev;
    kp->pend_e[kp->n_pend++] = i;
}

void cs_cl_kprof_dump(struct cs_cl_kprof *kp, const char *dev_name)
{
    if (!kp)
        return;
    kprof_flush(kp);
    double dev = 0, gap = 0;
    unsigned n = 0;
    for (int i = 0; i < kp->n; i++) {
        dev += kp->e[i].dev_ms;
        gap += kp->e[i].gap_ms;
        n += kp->e[i].n;
    }
    fprintf(stderr, "kprof %s: %u launches, device %.1f ms, gaps %.1f ms\n", dev_name, n, dev, gap);
    fprintf(stderr, "kprof %-24s %8s %6s %8s %10s %10s %9s %9s\n", "kernel", "global0", "g1", "launches", "dev ms",
            "gap ms", "dev us/l", "gap us/l");
    for (;;) {
        int b = -1;
        for (int i = 0; i < kp->n; i++)
            if (kp->e[i].n && (b < 0 || kp->e[i].dev_ms + kp->e[i].gap_ms > kp->e[b].dev_ms + kp->e[b].gap_ms))
                b = i;
        if (b < 0)
            break;
        fprintf(stderr, "kprof %-24s %8zu %6zu %8u %10.1f %10.1f %9.1f %9.1f\n", kp->e[b].name, kp->e[b].g0,
                kp->e[b].g1, kp->e[b].n, kp->e[b].dev_ms, kp->e[b].gap_ms, kp->e[b].dev_ms * 1e3 / kp->e[b].n,
                kp->e[b].gap_ms * 1e3 / kp->e[b].n);
        kp->e[b].n = 0;
    }
    free(kp);
}

