/* runtime.h: the OpenCL host layer: platform/device enumeration and selection,
 * one context + in-order queue per opened device, programs built from the
 * embedded cl/<name>.cl sources with per-device -D flags and cached as binaries on
 * disk, kernels cached per device, and CL error names in every message.
 * The caller owns what cs_cl_list returns (free()) and each opened cs_cl_dev. */
#ifndef CS_CL_RUNTIME_H
#define CS_CL_RUNTIME_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdbool.h>
#include <stddef.h>

/* Kernel family chosen per device: GPU-style (work-groups, local memory
 * reductions) or CPU-style (wide vectors, one row per work-item). */
enum cs_kfamily {
    CS_KFAMILY_GPU = 0,
    CS_KFAMILY_CPU = 1,
};

struct cs_cl_devinfo {
    unsigned index;            /* position in the flattened list (all platforms) */
    unsigned platform_index;
    cl_platform_id platform;
    cl_device_id id;
    char platform_name[128];
    char name[256];
    char vendor[128];
    char driver[64];           /* CL_DRIVER_VERSION */
    char version[128];         /* CL_DEVICE_VERSION */
    char c_version[64];        /* CL_DEVICE_OPENCL_C_VERSION */
    cl_device_type type;
    cl_uint compute_units;
    cl_ulong global_mem;       /* bytes */
    cl_ulong max_alloc;        /* bytes, CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    cl_ulong local_mem;        /* bytes */
    size_t max_wg;             /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    cl_uint mem_align;         /* bytes, CL_DEVICE_MEM_BASE_ADDR_ALIGN / 8 */
    bool has_fp16;             /* cl_khr_fp16 */
    bool has_subgroups;        /* cl_khr_subgroups or cl_intel_subgroups */
    bool has_int_dot;          /* cl_khr_integer_dot_product */
    enum cs_kfamily family;    /* CPU for CL_DEVICE_TYPE_CPU, else GPU;
                                * env CLSPEC_KFAMILY=cpu|gpu forces it */
};

/* Lists every device of every platform. *out is malloc'd (free() it); zero
 * devices (or no ICD at all) is not an error (n = 0). A CLSPEC_KFAMILY other
 * than cpu or gpu is CLSPEC_E_INVAL. */
int cs_cl_list(struct cs_cl_devinfo **out, size_t *n, char *err, size_t errlen);

/* Picks a device by index ("1") or case-insensitive name substring ("pthread",
 * "nvidia"); NULL/"" selects index 0. Error names what exists. */
int cs_cl_select(const struct cs_cl_devinfo *list, size_t n, const char *sel, size_t *index,
                 char *err, size_t errlen);

struct cs_cl_prog_entry;
struct cs_cl_kprof;

/* Counters of what cs_cl_program did on one device (tests and --verbose). */
struct cs_cl_stats {
    unsigned source_builds;    /* programs compiled from source */
    unsigned cache_loads;      /* programs created from a cached binary */
    unsigned cache_writes;     /* binaries written to the disk cache */
    unsigned cache_rejects;    /* cache files ignored: corrupt, stale or refused by the driver */
    double last_build_ms;      /* wall time of the last cs_cl_program that built or loaded */
};

/* An opened device: context, queue and the per-device program/kernel caches. */
struct cs_cl_dev {
    struct cs_cl_devinfo info;
    cl_context ctx;
    cl_command_queue q;        /* in-order */
    char build_opts[512];      /* "-cl-std=CL1.2 -cl-mad-enable -DCS_FAMILY_CPU=1|-DCS_FAMILY_GPU=1"
                                * plus -DCS_HAS_FP16=1, -DCS_HAS_SUBGROUPS=1, -DCS_HAS_INT_DOT=1
                                * where present, then -DNAME=value for every kernel constant
                                * of cl/kconst.h (why each: make_build_opts in runtime.c) */
    struct cs_cl_prog_entry *progs; /* private cache */
    struct cs_cl_stats stats;
    struct cs_cl_kprof *kprof; /* per-kernel times when CLSPEC_KPROF=1, else NULL */
    bool int8_act;             /* CPU family and CLSPEC_INTDOT=1: q4_0 / q8_0 matmuls on 8-bit
                                * activations (src/ops/matmul_q8.h) */
    unsigned int_layouts;      /* CS_INTL_* bits: the integer layouts that uploads to this device take,
                                * decided once at open (cs_cl_int_layouts); cleared before an upload
                                * for llamacpp_numerics, which needs the float layouts */
    cl_mem q8_buf;             /* their scratch (quantized columns), grown on demand */
    size_t q8_bytes;           /* its size */
};

/* The integer weight layouts (bits of cs_cl_dev.int_layouts): where a bit
 * is set, uploads of those types take the layout and every matmul of them
 * runs on integer dot products over 8-bit activations (docs/kernels.md). */
#define CS_INTL_I8 1u /* q8_0 / q6_K / q5_K in CS_WLAYOUT_I8 (src/ops/matmul_i8.h) */
#define CS_INTL_I4 2u /* q4_0 / q4_K in the i4 layouts (src/ops/matmul_i4.h) */

/* The device's integer layouts, the one decision (at open, from info and
 * intdot, the value of CLSPEC_INTDOT or NULL): none off the CPU family or
 * with "0"; with "1" both (the i4 layouts even where only plain int
 * arithmetic runs them); otherwise (unset, the default) CS_INTL_I8, and
 * CS_INTL_I4 where the device runs on a host CPU with AVX-512BW (the i4
 * kernels pay there: vpmaddubsw or vpdpbusd, mat-vec 3-4x and mat-mat 3-5x
 * the float path; the plain-int form is 1.6x and 0.85x). */
unsigned cs_cl_int_layouts(const struct cs_cl_devinfo *info, const char *intdot);

int cs_cl_dev_open(const struct cs_cl_devinfo *info, struct cs_cl_dev **out, char *err, size_t errlen);
void cs_cl_dev_close(struct cs_cl_dev *d);

/* Whether di is a CPU device (an OpenCL CPU runtime runs on the host CPU)
 * and the host has AVX512-VNNI and AVX512-BW: src/ops/matmul_q8.c then
 * builds cl/matmul_q8.cl with -DCS_CPU_VNNI=1 (vpdpbusd; PoCL 3.1's LLVM
 * targets some VNNI CPUs as skylake-avx512 and would not use it itself). */
bool cs_cl_host_vnni(const struct cs_cl_devinfo *di);

/* cs_cl_list + cs_cl_select(sel) + cs_cl_dev_open in one call. */
int cs_cl_open(const char *sel, struct cs_cl_dev **out, char *err, size_t errlen);

/* The program built from the embedded source cl/NAME.cl (prefixed by
 * cl/common.cl and, when present, cl/blocks.cl; its #include lines expanded
 * by cs_cl_expand_includes) with the device's build_opts plus extra (may be NULL).
 * Built once per (name, extra) per device; binaries cached under
 * $XDG_CACHE_HOME/clspec (or ~/.cache/clspec), keyed by a hash of source,
 * options, device name, platform and driver version; a corrupt or stale file
 * is ignored and rewritten. CLSPEC_NO_BINARY_CACHE=1 disables the disk cache.
 * Build logs go into err on failure (CLSPEC_E_CL). The device owns *out. */
int cs_cl_program(struct cs_cl_dev *d, const char *name, const char *extra, cl_program *out,
                  char *err, size_t errlen);

/* Told of every program cs_cl_program builds from source or loads from the
 * binary cache (not of those found in the device's own cache): from_cache,
 * and the wall time in ms. One hook for the process (the daemon's log),
 * set before any device is used; NULL removes it. */
typedef void (*cs_cl_build_hook)(void *ud, const struct cs_cl_dev *d, const char *name, const char *extra,
                                 bool from_cache, double ms);
void cs_cl_set_build_hook(cs_cl_build_hook fn, void *ud);

/* The embedded source src of cl/NAME.cl with every line that is exactly
 * `#include "FILE.cl"` (from its first column) replaced by the embedded
 * cl/FILE.cl between #line markers, so shared kernel code (cl/kvcodec.cl)
 * is written once; one level (an included file's own #include lines are
 * left as they are). *out is malloc'd (free() it). An unknown FILE is
 * CLSPEC_E_NOTFOUND with NAME and the line in err. */
int cs_cl_expand_includes(const char *name, const char *src, char **out, char *err, size_t errlen);

/* A kernel of such a program, created once and cached on the device (the
 * device owns *out: do not release it). Kernels are not thread-safe
 * (clSetKernelArg): one thread drives one device. */
int cs_cl_kernel(struct cs_cl_dev *d, const char *prog, const char *extra, const char *kernel,
                 cl_kernel *out, char *err, size_t errlen);

/* Enqueues k over dims (1..3) dimensions. local is required (an explicit
 * work-group size keeps PoCL from recompiling per global size); each
 * global[i] is rounded up to a multiple of local[i], so kernels must bound-
 * check their ids. Errors name the kernel:
 * "clEnqueueNDRangeKernel(matvec_q8_0): CL_INVALID_WORK_GROUP_SIZE (-54)". */
int cs_cl_run(struct cs_cl_dev *d, cl_kernel k, const char *name, cl_uint dims,
              const size_t *global, const size_t *local, char *err, size_t errlen);

/* clSetKernelArg(k, i, size, value); errors name the kernel and argument:
 * "clSetKernelArg(matvec_q8_0, 3): CL_INVALID_ARG_SIZE (-51)". */
int cs_cl_arg(cl_kernel k, cl_uint i, size_t size, const void *value, const char *name,
              char *err, size_t errlen);

/* clCreateBuffer of bytes (> 0) with flags; refuses sizes above
 * info.max_alloc with CLSPEC_E_RANGE. The caller releases *out
 * (clReleaseMemObject). On a device of the host CPU, buffers of 2 MiB and
 * more sit on memory of ours marked for transparent huge pages (why, and
 * CLSPEC_NO_HUGEPAGES=1: runtime.c). */
int cs_cl_alloc(struct cs_cl_dev *d, cl_mem_flags flags, size_t bytes, void *host_ptr,
                cl_mem *out, char *err, size_t errlen);
/* Buffers of cs_cl_alloc on such memory not yet freed (all devices). */
unsigned cs_cl_huge_buffers(void);
/* Releases *m where set and sets it NULL (safe to call twice). */
void cs_cl_release(cl_mem *m);
/* Blocking transfers of bytes at offset (bytes) in buf. */
int cs_cl_write(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, const void *src,
                char *err, size_t errlen);
/* Non-blocking write: the queue copies src when the command runs, so src
 * must stay unchanged until the queue next syncs (a blocking read, finish). */
int cs_cl_write_async(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, const void *src,
                      char *err, size_t errlen);
int cs_cl_read(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, void *dst,
               char *err, size_t errlen);
/* clFinish on the device's queue. */
int cs_cl_finish(struct cs_cl_dev *d, char *err, size_t errlen);
/* Non-blocking read: dst is written when the command runs; read it only
 * after the queue next syncs (cs_cl_finish). */
int cs_cl_read_async(struct cs_cl_dev *d, cl_mem buf, size_t offset, size_t bytes, void *dst, char *err,
                     size_t errlen);

/* Blocking host syncs since the process started, over all devices: every
 * blocking read or write and every finish of this layer, plus the waits
 * counted with cs_cl_sync_note (a direct clFinish elsewhere). Relaxed
 * atomics: a count for timings and benchmarks (per speculative step). */
uint64_t cs_cl_sync_count(void);
void cs_cl_sync_note(void);

/* Builds a program from the given source text (not an embedded file) with
 * the device's build_opts plus extra, bypassing the caches; label names it in
 * errors. The caller releases *out. For tests and experiments. */
int cs_cl_program_from_source(struct cs_cl_dev *d, const char *label, const char *source,
                              const char *extra, cl_program *out, char *err, size_t errlen);

/* The directory of the binary cache ($XDG_CACHE_HOME/clspec or
 * $HOME/.cache/clspec) into buf; CLSPEC_E_NOTFOUND when neither is set. */
int cs_cl_cache_dir(char *buf, size_t len, char *err, size_t errlen);

/* "CL_OUT_OF_RESOURCES" for -5, ...; "CL_UNKNOWN_ERROR(n)" is never returned:
 * unknown codes give "unknown OpenCL error". */
const char *cs_cl_errstr(cl_int e);

/* If rc != CL_SUCCESS: formats "what: CL_NAME (rc)" into err and returns
 * CLSPEC_E_CL; else CLSPEC_OK. */
int cs_cl_check(cl_int rc, const char *what, char *err, size_t errlen);

/* The embedded kernel sources (generated at build time from cl/<name>.cl). */
struct cs_cl_source {
    const char *name; /* file name without .cl */
    const char *text;
};
extern const struct cs_cl_source cs_cl_sources[];
extern const size_t cs_cl_n_sources;
const char *cs_cl_source_get(const char *name); /* NULL when absent */

#endif
