/* buffers.c: device buffers (on CPU devices, large ones on huge pages of our
 * own memory), blocking and non-blocking transfers, clFinish, and the count
 * of blocking syncs that benchmarks report. Part of the OpenCL host layer
 * whose header is runtime.h. */
#include "config.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cl/runtime.h"
#include "base/common.h"

/* Large buffers of a device on the host CPU come from memory of our own,
 * 2 MiB aligned, its whole 2 MiB pages marked for transparent huge pages,
 * handed to the runtime with CL_MEM_USE_HOST_PTR (a CPU runtime uses the
 * memory in place) and freed by the buffer's destructor callback. A decode
 * streams every weight once per token: with 4 KiB pages that is a TLB miss
 * every 4 KiB (test-kernels-i4 CLSPEC_I4_BENCH=stream, 1.1B q4_0 decode
 * mat-vecs, PoCL 3.1, 2 cores at load 7-13, alternated: 54-57 ms of CPU
 * time per pass with, 65-86 without; the host pointer without the huge
 * pages: as without). Not for other devices, buffers under 2 MiB, host
 * pointers the caller owns, where madvise fails, or with
 * CLSPEC_NO_HUGEPAGES=1: then the runtime allocates. The tail past the last
 * whole 2 MiB page keeps 4 KiB pages (no memory beyond the buffer). */
#define CS_HUGE_PAGE ((size_t)2 << 20)
static atomic_uint huge_live; /* buffers on such memory not yet freed */

static void CL_CALLBACK huge_free(cl_mem m, void *p)
{
    (void)m;
    free(p);
    atomic_fetch_sub(&huge_live, 1);
}

unsigned cs_cl_huge_buffers(void)
{
    return atomic_load(&huge_live);
}

static cl_mem huge_buffer(struct cs_cl_dev *d, cl_mem_flags flags, size_t bytes, void *host_ptr, cl_int *rc)
{
#if defined(MADV_HUGEPAGE)
    const char *off = getenv("CLSPEC_NO_HUGEPAGES");
    if (!(d->info.type & CL_DEVICE_TYPE_CPU) || bytes < CS_HUGE_PAGE || (off && strcmp(off, "0") != 0) ||
        (flags & (CL_MEM_USE_HOST_PTR | CL_MEM_ALLOC_HOST_PTR)))
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, CS_HUGE_PAGE, bytes) != 0)
        return NULL;
    if (madvise(p, bytes / CS_HUGE_PAGE * CS_HUGE_PAGE, MADV_HUGEPAGE) != 0) {
        free(p);
        return NULL;
    }
    if ((flags & CL_MEM_COPY_HOST_PTR) && host_ptr)
        memcpy(p, host_ptr, bytes);
    const cl_mem_flags f = (flags & ~(cl_mem_flags)CL_MEM_COPY_HOST_PTR) | CL_MEM_USE_HOST_PTR;
    cl_mem m = clCreateBuffer(d->ctx, f, bytes, p, rc);
    if (*rc != CL_SUCCESS) {
        free(p);
        return NULL;
    }
    if (clSetMemObjectDestructorCallback(m, huge_free, p) != CL_SUCCESS) {
        clReleaseMemObject(m); /* nothing was enqueued on it: p is ours again */
        free(p);
        return NULL;
    }
    atomic_fetch_add(&huge_live, 1);
    return m;
#else
    (void)d, (void)flags, (void)bytes, (void)host_ptr, (void)rc;
    return NULL;
#endif
}

int cs_cl_alloc(struct cs_cl_dev *d, cl_mem_flags flags, size_t bytes, void *host_ptr, cl_mem *out,
                char *err, size_t errlen)
{
    *out = NULL;
    if (bytes == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: zero-sized buffer", d->info.name);
    if (bytes > d->info.max_alloc)
        return cs_err(err, errlen, CLSPEC_E_RANGE,
                      "%s: buffer of %zu bytes (%.1f MiB) exceeds the device's maximum allocation of "
                      "%llu bytes (%.1f MiB)",
                      d->info.name, bytes, bytes / 1048576.0, (unsigned long long)d->info.max_alloc,
                      d->info.max_alloc / 1048576.0);
    cl_int rc = CL_SUCCESS;
    cl_mem m = huge_buffer(d, flags, bytes, host_ptr, &rc);
    if (!m)
        m = clCreateBuffer(d->ctx, flags, bytes, host_ptr, &rc);
    if (rc != CL_SUCCESS)
        return cs_err(err, errlen, CLSPEC_E_CL, "%s: clCreateBuffer(%zu bytes): %s (%d)", d->info.name,
                      bytes, cs_cl_errstr(rc), (int)rc);
    *out = m;
    return CLSPEC_OK;
}

void cs_cl_release(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
}

static atomic_uint_fast64_t n_syncs; /* cs_cl_sync_count */

uint64_t cs_cl_sync_count(void)
{
    return (uint64_t)atomic_load_explicit(&n_syncs, memory_order_relaxed);
}

void cs_cl_sync_note(void)
{
    atomic_fetch_add_explicit(&n_syncs, 1, memory_order_relaxed);
}

static int write_buf(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, const void *src, cl_bool block,
                     char *err, size_t errlen)
{
    if (block)
        cs_cl_sync_note();
    cl_int rc = clEnqueueWriteBuffer(d->q, buf, block, offset, bytes, src, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        return cs_err(err, errlen, CLSPEC_E_CL, "clEnqueueWriteBuffer(%zu bytes at %zu): %s (%d)", bytes,
                      offset, cs_cl_errstr(rc), (int)rc);
    return CLSPEC_OK;
}

int cs_cl_write(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, const void *src,
                char *err, size_t errlen)
{
    return write_buf(d, buf, offset, bytes, src, CL_TRUE, err, errlen);
}

int cs_cl_write_async(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, const void *src,
                      char *err, size_t errlen)
{
    return write_buf(d, buf, offset, bytes, src, CL_FALSE, err, errlen);
}

static int read_buf(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, void *dst, cl_bool block,
                    char *err, size_t errlen)
{
    if (block)
        cs_cl_sync_note();
    cl_int rc = clEnqueueReadBuffer(d->q, buf, block, offset, bytes, dst, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        return cs_err(err, errlen, CLSPEC_E_CL, "clEnqueueReadBuffer(%zu bytes at %zu): %s (%d)", bytes,
                      offset, cs_cl_errstr(rc), (int)rc);
    return CLSPEC_OK;
}

int cs_cl_read(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, void *dst, char *err, size_t errlen)
{
    return read_buf(d, buf, offset, bytes, dst, CL_TRUE, err, errlen);
}

int cs_cl_read_async(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, void *dst, char *err,
                     size_t errlen)
{
    return read_buf(d, buf, offset, bytes, dst, CL_FALSE, err, errlen);
}

int cs_cl_finish(struct cs_cl_dev *d, char *err, size_t errlen)
{
    cs_cl_sync_note();
    return cs_cl_check(clFinish(d->q), "clFinish", err, errlen);
}
