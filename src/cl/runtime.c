/* runtime.c: the OpenCL host layer: device list/select/open, programs from the
 * embedded cl/<name>.cl sources with a binary cache on disk, kernels cached per
 * device, launch helpers, CL error names (buffers and transfers: buffers.c). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl/kconst.h"
#include "cl/kprof.h"
#include "cl/runtime.h"
#include "base/common.h"
#include "base/strbuf.h"

/* ---- error names ---- */

const char *cs_cl_errstr(cl_int e)
{
    switch (e) {
#define E(x) case x: return #x;
    E(CL_SUCCESS)
    E(CL_DEVICE_NOT_FOUND)
    E(CL_DEVICE_NOT_AVAILABLE)
    E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    E(CL_OUT_OF_RESOURCES)
    E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE)
    E(CL_MEM_COPY_OVERLAP)
    E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    E(CL_BUILD_PROGRAM_FAILURE)
    E(CL_MAP_FAILURE)
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    E(CL_COMPILE_PROGRAM_FAILURE)
    E(CL_LINKER_NOT_AVAILABLE)
    E(CL_LINK_PROGRAM_FAILURE)
    E(CL_DEVICE_PARTITION_FAILED)
    E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    E(CL_INVALID_VALUE)
    E(CL_INVALID_DEVICE_TYPE)
    E(CL_INVALID_PLATFORM)
    E(CL_INVALID_DEVICE)
    E(CL_INVALID_CONTEXT)
    E(CL_INVALID_QUEUE_PROPERTIES)
    E(CL_INVALID_COMMAND_QUEUE)
    E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT)
    E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    E(CL_INVALID_IMAGE_SIZE)
    E(CL_INVALID_SAMPLER)
    E(CL_INVALID_BINARY)
    E(CL_INVALID_BUILD_OPTIONS)
    E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE)
    E(CL_INVALID_KERNEL_NAME)
    E(CL_INVALID_KERNEL_DEFINITION)
    E(CL_INVALID_KERNEL)
    E(CL_INVALID_ARG_INDEX)
    E(CL_INVALID_ARG_VALUE)
    E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS)
    E(CL_INVALID_WORK_DIMENSION)
    E(CL_INVALID_WORK_GROUP_SIZE)
    E(CL_INVALID_WORK_ITEM_SIZE)
    E(CL_INVALID_GLOBAL_OFFSET)
    E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT)
    E(CL_INVALID_OPERATION)
    E(CL_INVALID_GL_OBJECT)
    E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_MIP_LEVEL)
    E(CL_INVALID_GLOBAL_WORK_SIZE)
    E(CL_INVALID_PROPERTY)
    E(CL_INVALID_IMAGE_DESCRIPTOR)
    E(CL_INVALID_COMPILER_OPTIONS)
    E(CL_INVALID_LINKER_OPTIONS)
    E(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR"; /* from the ICD loader */
    default: return "unknown OpenCL error";
    }
}

int cs_cl_check(cl_int rc, const char *what, char *err, size_t errlen)
{
    if (rc == CL_SUCCESS)
        return CLSPEC_OK;
    return cs_err(err, errlen, CLSPEC_E_CL, "%s: %s (%d)", what, cs_cl_errstr(rc), (int)rc);
}

/* ---- enumeration ---- */

/* True when ext (space-separated list) contains the token name. */
static bool has_token(const char *ext, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = ext; (p = strstr(p, name)) != NULL; p += n)
        if ((p == ext || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static void dev_str(cl_device_id id, cl_device_info what, char *buf, size_t len)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(id, what, len, buf, NULL) != CL_SUCCESS)
        buf[0] = '\0';
    buf[len - 1] = '\0';
}

/* Fills everything but index/platform fields from the device. */
static int fill_info(struct cs_cl_devinfo *di, char *err, size_t errlen)
{
    cl_device_id id = di->id;
    dev_str(id, CL_DEVICE_NAME, di->name, sizeof di->name);
    dev_str(id, CL_DEVICE_VENDOR, di->vendor, sizeof di->vendor);
    dev_str(id, CL_DRIVER_VERSION, di->driver, sizeof di->driver);
    dev_str(id, CL_DEVICE_VERSION, di->version, sizeof di->version);
    dev_str(id, CL_DEVICE_OPENCL_C_VERSION, di->c_version, sizeof di->c_version);
    struct {
        cl_device_info what;
        void *dst;
        size_t size;
    } q[] = {
        {CL_DEVICE_TYPE, &di->type, sizeof di->type},
        {CL_DEVICE_MAX_COMPUTE_UNITS, &di->compute_units, sizeof di->compute_units},
        {CL_DEVICE_GLOBAL_MEM_SIZE, &di->global_mem, sizeof di->global_mem},
        {CL_DEVICE_MAX_MEM_ALLOC_SIZE, &di->max_alloc, sizeof di->max_alloc},
        {CL_DEVICE_LOCAL_MEM_SIZE, &di->local_mem, sizeof di->local_mem},
        {CL_DEVICE_MAX_WORK_GROUP_SIZE, &di->max_wg, sizeof di->max_wg},
        {CL_DEVICE_MEM_BASE_ADDR_ALIGN, &di->mem_align, sizeof di->mem_align},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(q); i++) {
        cl_int rc = clGetDeviceInfo(id, q[i].what, q[i].size, q[i].dst, NULL);
        if (rc != CL_SUCCESS)
            return cs_err(err, errlen, CLSPEC_E_CL, "clGetDeviceInfo(%s, 0x%x): %s (%d)",
                          di->name, (unsigned)q[i].what, cs_cl_errstr(rc), (int)rc);
    }
    di->mem_align /= 8; /* CL reports bits */

    size_t elen = 0;
    cl_int rc = clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, 0, NULL, &elen);
    char *ext = malloc(elen + 1);
    if (!ext)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", di->name);
    ext[0] = '\0';
    if (rc == CL_SUCCESS && clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, elen, ext, NULL) == CL_SUCCESS)
        ext[elen] = '\0';
    else
        ext[0] = '\0';
    di->has_fp16 = has_token(ext, "cl_khr_fp16");
    di->has_subgroups = has_token(ext, "cl_khr_subgroups") || has_token(ext, "cl_intel_subgroups");
    di->has_int_dot = has_token(ext, "cl_khr_integer_dot_product");
    free(ext);

    di->family = (di->type & CL_DEVICE_TYPE_CPU) ? CS_KFAMILY_CPU : CS_KFAMILY_GPU;
    const char *force = getenv("CLSPEC_KFAMILY");
    if (force && !strcmp(force, "cpu"))
        di->family = CS_KFAMILY_CPU;
    else if (force && !strcmp(force, "gpu"))
        di->family = CS_KFAMILY_GPU;
    return CLSPEC_OK;
}

int cs_cl_list(struct cs_cl_devinfo **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    const char *force = getenv("CLSPEC_KFAMILY");
    if (force && *force && strcmp(force, "cpu") && strcmp(force, "gpu"))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "CLSPEC_KFAMILY=%s: expected cpu or gpu", force);

    cl_uint np = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &np);
    if (rc == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: no ICD installed */ || (rc == CL_SUCCESS && np == 0))
        return CLSPEC_OK;
    if (rc != CL_SUCCESS)
        return cs_cl_check(rc, "clGetPlatformIDs", err, errlen);
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "OpenCL platforms: out of memory");
    int ret = CLSPEC_OK;
    struct cs_cl_devinfo *list = NULL;
    size_t count = 0;
    if ((rc = clGetPlatformIDs(np, plats, NULL)) != CL_SUCCESS) {
        ret = cs_cl_check(rc, "clGetPlatformIDs", err, errlen);
        goto done;
    }
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        rc = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
        if (rc == CL_DEVICE_NOT_FOUND || nd == 0)
            continue;
        if (rc != CL_SUCCESS) {
            ret = cs_cl_check(rc, "clGetDeviceIDs", err, errlen);
            goto done;
        }
        cl_device_id *ids = calloc(nd, sizeof *ids);
        struct cs_cl_devinfo *grown = realloc(list, (count + nd) * sizeof *list);
        if (!ids || !grown) {
            free(ids);
            if (grown)
                list = grown;
            ret = cs_err(err, errlen, CLSPEC_E_NOMEM, "OpenCL devices: out of memory");
            goto done;
        }
        list = grown;
        if ((rc = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL)) != CL_SUCCESS) {
            free(ids);
            ret = cs_cl_check(rc, "clGetDeviceIDs", err, errlen);
            goto done;
        }
        char pname[128] = "";
        if (clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL) != CL_SUCCESS)
            pname[0] = '\0';
        pname[sizeof pname - 1] = '\0';
        for (cl_uint i = 0; i < nd; i++) {
            struct cs_cl_devinfo *di = &list[count];
            memset(di, 0, sizeof *di);
            di->index = (unsigned)count;
            di->platform_index = p;
            di->platform = plats[p];
            di->id = ids[i];
            memcpy(di->platform_name, pname, sizeof di->platform_name);
            if ((ret = fill_info(di, err, errlen)) != CLSPEC_OK) {
                free(ids);
                goto done;
            }
            count++;
        }
        free(ids);
    }
done:
    free(plats);
    if (ret != CLSPEC_OK) {
        free(list);
        return ret;
    }
    *out = list;
    *n = count;
    return CLSPEC_OK;
}

/* Appends " 0: NAME (PLATFORM), 1: ..." to err after its current text. */
static void append_available(const struct cs_cl_devinfo *list, size_t n, char *err, size_t errlen)
{
    if (!err || !errlen)
        return;
    for (size_t i = 0; i < n; i++) {
        size_t used = strnlen(err, errlen);
        if (used + 1 >= errlen)
            return;
        snprintf(err + used, errlen - used, "%s%zu: %s (%s)", i ? ", " : " ", i, list[i].name,
                 list[i].platform_name);
    }
}

int cs_cl_select(const struct cs_cl_devinfo *list, size_t n, const char *sel, size_t *index,
                 char *err, size_t errlen)
{
    if (n == 0)
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND,
                      "no OpenCL device found (is an OpenCL driver/ICD installed? try clinfo)");
    if (!sel || !*sel) {
        *index = 0;
        return CLSPEC_OK;
    }
    bool digits = true;
    for (const char *p = sel; *p; p++)
        if (!isdigit((unsigned char)*p))
            digits = false;
    if (digits) {
        errno = 0;
        unsigned long long v = strtoull(sel, NULL, 10);
        if (errno == 0 && v < n) {
            *index = (size_t)v;
            return CLSPEC_OK;
        }
        cs_err(err, errlen, CLSPEC_E_NOTFOUND, "OpenCL device index %s out of range; available:", sel);
        append_available(list, n, err, errlen);
        return CLSPEC_E_NOTFOUND;
    }
    for (size_t i = 0; i < n; i++)
        if (cs_contains_nocase(list[i].name, sel)) {
            *index = i;
            return CLSPEC_OK;
        }
    cs_err(err, errlen, CLSPEC_E_NOTFOUND, "no OpenCL device name contains '%s'; available:", sel);
    append_available(list, n, err, errlen);
    return CLSPEC_E_NOTFOUND;
}

/* ---- open / close ---- */

struct cs_cl_kernel_entry {
    struct cs_cl_kernel_entry *next;
    char *name;
    cl_kernel k;
};

struct cs_cl_prog_entry {
    struct cs_cl_prog_entry *next;
    char *name;   /* embedded source name */
    char *extra;  /* extra options ("" when none) */
    cl_program prog;
    struct cs_cl_kernel_entry *kernels;
};

/* Build options, each on purpose:
 *   -cl-std=CL1.2      the language level every kernel is written against;
 *   -cl-mad-enable     lets a*b+c fuse (one rounding instead of two: at
 *                      least as accurate, and faster on most devices). We do
 *                      NOT pass -cl-fast-relaxed-math / -cl-finite-math-only:
 *                      softmax and masking rely on -INFINITY and exp(-inf)=0;
 *   -DCS_FAMILY_CPU=1 or -DCS_FAMILY_GPU=1   kernel variant family;
 *   -DCS_HAS_FP16=1    cl_khr_fp16 present (common.cl enables the pragma);
 *   -DCS_HAS_SUBGROUPS=1  cl_khr_subgroups or cl_intel_subgroups present;
 *   -DCS_HAS_INT_DOT=1 cl_khr_integer_dot_product present;
 *   -DNORM_WG=256 ...  the kernel constants of cl/kconst.h, all of them. */

static void make_build_opts(const struct cs_cl_devinfo *di, char *buf, size_t len)
{
    int n = snprintf(buf, len, "-cl-std=CL1.2 -cl-mad-enable %s%s%s%s",
                     di->family == CS_KFAMILY_CPU ? "-DCS_FAMILY_CPU=1" : "-DCS_FAMILY_GPU=1",
                     di->has_fp16 ? " -DCS_HAS_FP16=1" : "", di->has_subgroups ? " -DCS_HAS_SUBGROUPS=1" : "",
                     di->has_int_dot ? " -DCS_HAS_INT_DOT=1" : "");
#define CS_KCONST_OPT_(name, value) \
    if (n >= 0 && (size_t)n < len)  \
        n += snprintf(buf + n, len - (size_t)n, " -D%s=%d", #name, (int)(value));
    CS_KCONSTS(CS_KCONST_OPT_)
#undef CS_KCONST_OPT_
}

int cs_cl_dev_open(const struct cs_cl_devinfo *info, struct cs_cl_dev **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_cl_dev *d = calloc(1, sizeof *d);
    if (!d)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", info->name);
    d->info = *info;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)info->platform, 0};
    cl_int rc = CL_SUCCESS;
    d->ctx = clCreateContext(props, 1, &info->id, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        free(d);
        return cs_err(err, errlen, CLSPEC_E_CL, "%s: clCreateContext: %s (%d)", info->name,
                      cs_cl_errstr(rc), (int)rc);
    }
    d->kprof = cs_cl_kprof_new();
    d->q = clCreateCommandQueue(d->ctx, info->id, d->kprof ? CL_QUEUE_PROFILING_ENABLE : 0, &rc);
    if (rc != CL_SUCCESS) {
        clReleaseContext(d->ctx);
        free(d);
        return cs_err(err, errlen, CLSPEC_E_CL, "%s: clCreateCommandQueue: %s (%d)", info->name,
                      cs_cl_errstr(rc), (int)rc);
    }
    make_build_opts(info, d->build_opts, sizeof d->build_opts);
    const char *idot = getenv("CLSPEC_INTDOT");
    d->int8_act = info->family == CS_KFAMILY_CPU && idot && strcmp(idot, "1") == 0;
    d->int_layouts = cs_cl_int_layouts(info, idot);
    *out = d;
    return CLSPEC_OK;
}

unsigned cs_cl_int_layouts(const struct cs_cl_devinfo *info, const char *intdot)
{
    if (info->family != CS_KFAMILY_CPU || (intdot && strcmp(intdot, "0") == 0))
        return 0;
    if (intdot && strcmp(intdot, "1") == 0)
        return CS_INTL_I8 | CS_INTL_I4;
#if defined(__x86_64__) && defined(__GNUC__)
    if ((info->type & CL_DEVICE_TYPE_CPU) && __builtin_cpu_supports("avx512bw"))
        return CS_INTL_I8 | CS_INTL_I4;
#endif
    return CS_INTL_I8;
}

bool cs_cl_host_vnni(const struct cs_cl_devinfo *di)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return (di->type & CL_DEVICE_TYPE_CPU) && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512bw");
#else
    (void)di;
    return false;
#endif
}

void cs_cl_dev_close(struct cs_cl_dev *d)
{
    if (!d)
        return;
    if (d->q)
        clFinish(d->q);
    cs_cl_kprof_dump(d->kprof, d->info.name);
    d->kprof = NULL;
    for (struct cs_cl_prog_entry *p = d->progs, *pn; p; p = pn) {
        pn = p->next;
        for (struct cs_cl_kernel_entry *k = p->kernels, *kn; k; k = kn) {
            kn = k->next;
            clReleaseKernel(k->k);
            free(k->name);
            free(k);
        }
        clReleaseProgram(p->prog);
        free(p->name);
        free(p->extra);
        free(p);
    }
    if (d->q8_buf)
        clReleaseMemObject(d->q8_buf);
    if (d->q)
        clReleaseCommandQueue(d->q);
    if (d->ctx)
        clReleaseContext(d->ctx);
    free(d);
}

int cs_cl_open(const char *sel, struct cs_cl_dev **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, idx = 0;
    int rc = cs_cl_list(&list, &n, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_select(list, n, sel, &idx, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_dev_open(&list[idx], out, err, errlen);
    free(list);
    return rc;
}

/* ---- embedded sources ---- */

const char *cs_cl_source_get(const char *name)
{
    for (size_t i = 0; i < cs_cl_n_sources; i++)
        if (!strcmp(cs_cl_sources[i].name, name))
            return cs_cl_sources[i].text;
    return NULL;
}

int cs_cl_expand_includes(const char *name, const char *src, char **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_strbuf b = {0};
    unsigned line = 1;
    for (const char *p = src; *p; line++) {
        const char *eol = strchr(p, '\n');
        const size_t n = eol ? (size_t)(eol - p) + 1 : strlen(p);
        char inc[64];
        int end = 0;
        if (sscanf(p, "#include \"%63[A-Za-z0-9_].cl\"%n", inc, &end) == 1 && end > 0) {
            const char *text = cs_cl_source_get(inc);
            if (!text) {
                cs_strbuf_free(&b);
                return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "cl/%s.cl:%u: no embedded kernel source cl/%s.cl",
                              name, line, inc);
            }
            cs_strbuf_printf(&b, "#line 1 \"%s.cl\"\n", inc);
            cs_strbuf_put(&b, text);
            cs_strbuf_printf(&b, "\n#line %u \"%s.cl\"\n", line + 1, name);
        } else {
            cs_strbuf_put_n(&b, p, n);
        }
        p += n;
    }
    if (cs_strbuf_take(&b, out, NULL) != CLSPEC_OK)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "cl/%s.cl: out of memory", name);
    return CLSPEC_OK;
}

/* ---- building ---- */

/* Puts "label: clBuildProgram: CL_BUILD_PROGRAM_FAILURE (-11)\n<log>" into err. */
static int build_failed(struct cs_cl_dev *d, cl_program prog, const char *label, cl_int rc,
                        char *err, size_t errlen)
{
    cs_err(err, errlen, CLSPEC_E_CL, "%s: clBuildProgram on %s: %s (%d)", label, d->info.name,
           cs_cl_errstr(rc), (int)rc);
    size_t loglen = 0;
    if (!err || !errlen ||
        clGetProgramBuildInfo(prog, d->info.id, CL_PROGRAM_BUILD_LOG, 0, NULL, &loglen) != CL_SUCCESS ||
        loglen <= 1)
        return CLSPEC_E_CL;
    char *log = malloc(loglen + 1);
    if (!log)
        return CLSPEC_E_CL;
    if (clGetProgramBuildInfo(prog, d->info.id, CL_PROGRAM_BUILD_LOG, loglen, log, NULL) == CL_SUCCESS) {
        log[loglen] = '\0';
        size_t used = strnlen(err, errlen);
        if (used + 2 < errlen)
            snprintf(err + used, errlen - used, "\n%s", log);
    }
    free(log);
    return CLSPEC_E_CL;
}

/* Joins the parts into one malloc'd string ("" for NULL parts). */
static char *concat(const char *const *parts, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += parts[i] ? strlen(parts[i]) : 0;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (parts[i]) {
            size_t l = strlen(parts[i]);
            memcpy(p, parts[i], l);
            p += l;
        }
    *p = '\0';
    return s;
}

static int build_from_text(struct cs_cl_dev *d, const char *label, const char *text, const char *opts,
                           cl_program *out, char *err, size_t errlen)
{
    cl_int rc = CL_SUCCESS;
    cl_program prog = clCreateProgramWithSource(d->ctx, 1, &text, NULL, &rc);
    if (rc != CL_SUCCESS)
        return cs_err(err, errlen, CLSPEC_E_CL, "%s: clCreateProgramWithSource: %s (%d)", label,
                      cs_cl_errstr(rc), (int)rc);
    rc = clBuildProgram(prog, 1, &d->info.id, opts, NULL, NULL);
    if (rc != CL_SUCCESS) {
        build_failed(d, prog, label, rc, err, errlen);
        clReleaseProgram(prog);
        return CLSPEC_E_CL;
    }
    *out = prog;
    d->stats.source_builds++;
    return CLSPEC_OK;
}

int cs_cl_program_from_source(struct cs_cl_dev *d, const char *label, const char *source,
                              const char *extra, cl_program *out, char *err, size_t errlen)
{
    const char *parts[] = {d->build_opts, extra && *extra ? " " : "", extra};
    char *opts = concat(parts, 3);
    if (!opts)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", label);
    double t0 = cs_now();
    int rc = build_from_text(d, label, source, opts, out, err, errlen);
    d->stats.last_build_ms = (cs_now() - t0) * 1e3;
    free(opts);
    return rc;
}

/* ---- the binary cache ---- */

#define CACHE_MAGIC "CLSPECB1"
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hashes a string including its terminator, so ("ab","c") != ("a","bc"). */
static uint64_t fnv1a_str(uint64_t h, const char *s)
{
    return fnv1a(h, s, strlen(s) + 1);
}

int cs_cl_cache_dir(char *buf, size_t len, char *err, size_t errlen)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/')
        n = snprintf(buf, len, "%s/clspec", xdg);
    else if (home && *home)
        n = snprintf(buf, len, "%s/.cache/clspec", home);
    else
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "binary cache: neither XDG_CACHE_HOME nor HOME is set");
    if (n < 0 || (size_t)n >= len)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "binary cache: directory path too long");
    return CLSPEC_OK;
}

/* mkdir -p for the cache directory; false when it cannot be made. */
static bool make_dirs(const char *path)
{
    char tmp[1024];
    size_t n = strlen(path);
    if (n >= sizeof tmp)
        return false;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return false;
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* File layout: magic[8] key[8] payload_len[8] payload_fnv[8] payload. */
#define CACHE_HDR 32

/* Reads a cached binary for key; NULL (and *len 0) when absent or invalid.
 * *rejected is set when a file existed but was not usable. */
static unsigned char *cache_read(const char *path, uint64_t key, size_t *len, bool *rejected)
{
    *len = 0;
    *rejected = false;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char hdr[CACHE_HDR], *buf = NULL;
    *rejected = true;
    if (fread(hdr, 1, CACHE_HDR, f) != CACHE_HDR || memcmp(hdr, CACHE_MAGIC, 8) ||
        get_u64(hdr + 8) != key)
        goto out;
    uint64_t plen = get_u64(hdr + 16);
    if (plen == 0 || plen > (1ull << 30))
        goto out;
    buf = malloc((size_t)plen);
    if (!buf || fread(buf, 1, (size_t)plen, f) != plen || fgetc(f) != EOF ||
        fnv1a(FNV_OFFSET, buf, (size_t)plen) != get_u64(hdr + 24)) {
        free(buf);
        buf = NULL;
        goto out;
    }
    *len = (size_t)plen;
    *rejected = false;
out:
    fclose(f);
    return buf;
}

/* Writes the binary atomically (tmp + rename); false on any failure. */
static bool cache_write(const char *dir, const char *path, uint64_t key, const unsigned char *bin,
                        size_t len)
{
    if (!make_dirs(dir))
        return false;
    char tmp[1100];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return false;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return false;
    unsigned char hdr[CACHE_HDR];
    memcpy(hdr, CACHE_MAGIC, 8);
    put_u64(hdr + 8, key);
    put_u64(hdr + 16, len);
    put_u64(hdr + 24, fnv1a(FNV_OFFSET, bin, len));
    bool ok = fwrite(hdr, 1, CACHE_HDR, f) == CACHE_HDR && fwrite(bin, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) == 0)
        return true;
    remove(tmp);
    return false;
}

/* The program binary of a built single-device program; NULL on failure. */
static unsigned char *program_binary(cl_program prog, size_t *len)
{
    size_t sz = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof sz, &sz, NULL) != CL_SUCCESS || sz == 0)
        return NULL;
    unsigned char *bin = malloc(sz);
    if (!bin)
        return NULL;
    unsigned char *ptrs[1] = {bin};
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof ptrs, ptrs, NULL) != CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    *len = sz;
    return bin;
}

static cl_program load_binary(struct cs_cl_dev *d, const unsigned char *bin, size_t len, const char *opts)
{
    cl_int rc = CL_SUCCESS, status = CL_SUCCESS;
    cl_program prog = clCreateProgramWithBinary(d->ctx, 1, &d->info.id, &len, &bin, &status, &rc);
    if (rc != CL_SUCCESS || status != CL_SUCCESS) {
        if (prog)
            clReleaseProgram(prog);
        return NULL;
    }
    if (clBuildProgram(prog, 1, &d->info.id, opts, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return NULL;
    }
    return prog;
}

static bool cache_disabled(void)
{
    const char *v = getenv("CLSPEC_NO_BINARY_CACHE");
    return v && *v && strcmp(v, "0");
}

/* Builds text with opts, through the disk cache when enabled. */
static int build_cached(struct cs_cl_dev *d, const char *label, const char *text, const char *opts,
                        cl_program *out, char *err, size_t errlen)
{
    char dir[1024], path[1100];
    bool use_cache = !cache_disabled() && cs_cl_cache_dir(dir, sizeof dir, NULL, 0) == CLSPEC_OK;
    uint64_t key = FNV_OFFSET;
    if (use_cache) {
        char pver[128] = "";
        if (clGetPlatformInfo(d->info.platform, CL_PLATFORM_VERSION, sizeof pver, pver, NULL) != CL_SUCCESS)
            pver[0] = '\0';
        pver[sizeof pver - 1] = '\0';
        const char *fields[] = {CACHE_MAGIC, text,          opts,           d->info.name,
                                d->info.vendor, d->info.platform_name, pver, d->info.driver,
                                d->info.version};
        for (size_t i = 0; i < CS_ARRAY_LEN(fields); i++)
            key = fnv1a_str(key, fields[i]);
        snprintf(path, sizeof path, "%s/%016llx.bin", dir, (unsigned long long)key);
        size_t len = 0;
        bool rejected = false;
        unsigned char *bin = cache_read(path, key, &len, &rejected);
        if (bin) {
            cl_program prog = load_binary(d, bin, len, opts);
            free(bin);
            if (prog) {
                d->stats.cache_loads++;
                *out = prog;
                return CLSPEC_OK;
            }
            rejected = true;
        }
        if (rejected)
            d->stats.cache_rejects++;
    }
    int rc = build_from_text(d, label, text, opts, out, err, errlen);
    if (rc != CLSPEC_OK || !use_cache)
        return rc;
    size_t len = 0;
    unsigned char *bin = program_binary(*out, &len);
    if (bin && cache_write(dir, path, key, bin, len))
        d->stats.cache_writes++;
    free(bin);
    return CLSPEC_OK; /* a cache that cannot be written only costs time */
}

static cs_cl_build_hook build_hook;
static void *build_hook_ud;

void cs_cl_set_build_hook(cs_cl_build_hook fn, void *ud)
{
    build_hook = fn;
    build_hook_ud = ud;
}

int cs_cl_program(struct cs_cl_dev *d, const char *name, const char *extra, cl_program *out,
                  char *err, size_t errlen)
{
    if (!extra)
        extra = "";
    for (struct cs_cl_prog_entry *p = d->progs; p; p = p->next)
        if (!strcmp(p->name, name) && !strcmp(p->extra, extra)) {
            *out = p->prog;
            return CLSPEC_OK;
        }
    const char *src = cs_cl_source_get(name), *common = cs_cl_source_get("common");
    const char *blocks = strcmp(name, "blocks") ? cs_cl_source_get("blocks") : NULL;
    if (!src || !common)
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "no embedded kernel source cl/%s.cl",
                      src ? "common" : name);
    char line[300], *own = NULL;
    int rc = cs_cl_expand_includes(name, src, &own, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    snprintf(line, sizeof line, "#line 1 \"%s.cl\"\n", name);
    const char *parts[] = {"#line 1 \"common.cl\"\n", common, blocks ? "\n#line 1 \"blocks.cl\"\n" : "",
                           blocks, "\n", line, own};
    const char *oparts[] = {d->build_opts, *extra ? " " : "", extra};
    char *text = concat(parts, CS_ARRAY_LEN(parts)), *opts = concat(oparts, 3);
    free(own);
    struct cs_cl_prog_entry *e = calloc(1, sizeof *e);
    char *ename = strdup(name), *eextra = strdup(extra);
    if (!text || !opts || !e || !ename || !eextra) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "cl/%s.cl: out of memory", name);
        goto fail;
    }
    char label[300];
    snprintf(label, sizeof label, "cl/%s.cl", name);
    double t0 = cs_now();
    unsigned loads = d->stats.cache_loads;
    rc = build_cached(d, label, text, opts, &e->prog, err, errlen);
    d->stats.last_build_ms = (cs_now() - t0) * 1e3;
    if (rc != CLSPEC_OK)
        goto fail;
    if (build_hook)
        build_hook(build_hook_ud, d, name, extra, d->stats.cache_loads != loads, d->stats.last_build_ms);
    free(text);
    free(opts);
    e->name = ename;
    e->extra = eextra;
    e->next = d->progs;
    d->progs = e;
    *out = e->prog;
    return CLSPEC_OK;
fail:
    free(text);
    free(opts);
    free(e);
    free(ename);
    free(eextra);
    return rc;
}

int cs_cl_kernel(struct cs_cl_dev *d, const char *prog, const char *extra, const char *kernel,
                 cl_kernel *out, char *err, size_t errlen)
{
    cl_program p;
    int rc = cs_cl_program(d, prog, extra, &p, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    struct cs_cl_prog_entry *e = d->progs;
    while (e && e->prog != p)
        e = e->next;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_CL, "cl/%s.cl: program cache inconsistent", prog);
    for (struct cs_cl_kernel_entry *k = e->kernels; k; k = k->next)
        if (!strcmp(k->name, kernel)) {
            *out = k->k;
            return CLSPEC_OK;
        }
    struct cs_cl_kernel_entry *k = calloc(1, sizeof *k);
    char *kname = strdup(kernel);
    if (!k || !kname) {
        free(k);
        free(kname);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kernel %s: out of memory", kernel);
    }
    cl_int crc = CL_SUCCESS;
    k->k = clCreateKernel(p, kernel, &crc);
    if (crc != CL_SUCCESS) {
        free(k);
        free(kname);
        return cs_err(err, errlen, CLSPEC_E_CL, "cl/%s.cl: clCreateKernel(%s): %s (%d)", prog, kernel,
                      cs_cl_errstr(crc), (int)crc);
    }
    k->name = kname;
    k->next = e->kernels;
    e->kernels = k;
    *out = k->k;
    return CLSPEC_OK;
}

/* ---- launching and buffers ---- */

int cs_cl_run(struct cs_cl_dev *d, cl_kernel k, const char *name, cl_uint dims,
              const size_t *global, const size_t *local, char *err, size_t errlen)
{
    if (!name)
        name = "?";
    if (dims < 1 || dims > 3 || !global || !local)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "clEnqueueNDRangeKernel(%s): need 1..3 dims and explicit global and local sizes", name);
    size_t g[3];
    for (cl_uint i = 0; i < dims; i++) {
        if (local[i] == 0 || global[i] == 0)
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "clEnqueueNDRangeKernel(%s): zero size in dimension %u", name, (unsigned)i);
        uint64_t r;
        if (!cs_add_ok(global[i], local[i] - 1, &r) || r > SIZE_MAX)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "clEnqueueNDRangeKernel(%s): global size overflow",
                          name);
        g[i] = (global[i] + local[i] - 1) / local[i] * local[i];
    }
    cl_event ev = NULL;
    cl_int rc = clEnqueueNDRangeKernel(d->q, k, dims, NULL, g, local, 0, NULL, d->kprof ? &ev : NULL);
    if (rc != CL_SUCCESS)
        return cs_err(err, errlen, CLSPEC_E_CL, "clEnqueueNDRangeKernel(%s): %s (%d)", name,
                      cs_cl_errstr(rc), (int)rc);
    if (ev)
        cs_cl_kprof_add(d->kprof, name, g, dims, ev);
    return CLSPEC_OK;
}

int cs_cl_arg(cl_kernel k, cl_uint i, size_t size, const void *value, const char *name,
              char *err, size_t errlen)
{
    cl_int rc = clSetKernelArg(k, i, size, value);
    if (rc != CL_SUCCESS)
        return cs_err(err, errlen, CLSPEC_E_CL, "clSetKernelArg(%s, %u): %s (%d)", name ? name : "?",
                      (unsigned)i, cs_cl_errstr(rc), (int)rc);
    return CLSPEC_OK;
}
