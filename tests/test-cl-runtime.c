/* test-cl-runtime.c: the OpenCL host layer on whatever devices are present
 * (PoCL here): listing, selection, open/close, embedded sources and their
 * #include expansion, the kernel constants of cl/kconst.h in every build's
 * options, builds and their binary cache, launches, buffers, error names. The binary cache and
 * PoCL's own cache go to $CLSPEC_BUILDDIR/.cache/test-cl-runtime. */
#include "config.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>

#include "cl/bandwidth.h"
#include "cl/kconst.h"
#include "cl/runtime.h"
#include "base/common.h"
#include "testutil.h"

static char cache_dir[1024]; /* $XDG_CACHE_HOME/clspec for this test */

/* Number of *.bin files in cache_dir; with remove, deletes them. */
static int cache_files(bool remove_them, char *first, size_t firstlen)
{
    DIR *dir = opendir(cache_dir);
    if (!dir)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".bin"))
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", cache_dir, e->d_name);
        if (first && n == 0)
            snprintf(first, firstlen, "%s", path);
        if (remove_them)
            remove(path);
        n++;
    }
    closedir(dir);
    return n;
}

static struct cs_cl_devinfo *devs;
static size_t ndev;
static double first_build_ms; /* test_open_run's build of cl/bandwidth.cl */

static struct cs_cl_dev *open0(void)
{
    char err[1024];
    struct cs_cl_dev *d = NULL;
    int rc = cs_cl_dev_open(&devs[0], &d, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    return d;
}

static void test_errstr(void **state)
{
    (void)state;
    assert_string_equal(cs_cl_errstr(-5), "CL_OUT_OF_RESOURCES");
    assert_string_equal(cs_cl_errstr(0), "CL_SUCCESS");
    assert_string_equal(cs_cl_errstr(-11), "CL_BUILD_PROGRAM_FAILURE");
    assert_string_equal(cs_cl_errstr(-30), "CL_INVALID_VALUE");
    assert_string_equal(cs_cl_errstr(-54), "CL_INVALID_WORK_GROUP_SIZE");
    assert_string_equal(cs_cl_errstr(-68), "CL_INVALID_DEVICE_PARTITION_COUNT");
    assert_string_equal(cs_cl_errstr(-25), "unknown OpenCL error");
    assert_string_equal(cs_cl_errstr(12345), "unknown OpenCL error");
    /* every CL 1.2 code has a distinct CL_ name */
    for (int a = 0; a >= -68; a--) {
        if (a < -19 && a > -30)
            continue;
        assert_memory_equal(cs_cl_errstr(a), "CL_", 3);
        for (int b = a - 1; b >= -68; b--)
            assert_string_not_equal(cs_cl_errstr(a), cs_cl_errstr(b));
    }
    char err[128];
    assert_int_equal(cs_cl_check(CL_SUCCESS, "x", err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_check(-54, "clEnqueueNDRangeKernel(k)", err, sizeof err), CLSPEC_E_CL);
    assert_string_equal(err, "clEnqueueNDRangeKernel(k): CL_INVALID_WORK_GROUP_SIZE (-54)");
}

static void test_list(void **state)
{
    (void)state;
    assert_true(ndev >= 1);
    for (size_t i = 0; i < ndev; i++) {
        assert_int_equal(devs[i].index, i);
        assert_true(strlen(devs[i].name) > 0);
        assert_true(devs[i].max_alloc > 0 && devs[i].max_alloc <= devs[i].global_mem);
        assert_true(devs[i].compute_units >= 1 && devs[i].max_wg >= 1);
        assert_int_equal(devs[i].family,
                         (devs[i].type & CL_DEVICE_TYPE_CPU) ? CS_KFAMILY_CPU : CS_KFAMILY_GPU);
    }
}

static void test_kfamily_env(void **state)
{
    (void)state;
    char err[256];
    struct cs_cl_devinfo *l = NULL;
    size_t n = 0;
    setenv("CLSPEC_KFAMILY", "gpu", 1);
    assert_int_equal(cs_cl_list(&l, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, ndev);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(l[i].family, CS_KFAMILY_GPU);
    struct cs_cl_dev *d = NULL;
    assert_int_equal(cs_cl_dev_open(&l[0], &d, err, sizeof err), CLSPEC_OK);
    assert_non_null(strstr(d->build_opts, "-DCS_FAMILY_GPU=1"));
    assert_null(strstr(d->build_opts, "CS_FAMILY_CPU"));
    cs_cl_dev_close(d);
    free(l);

    setenv("CLSPEC_KFAMILY", "cpu", 1);
    assert_int_equal(cs_cl_list(&l, &n, err, sizeof err), CLSPEC_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(l[i].family, CS_KFAMILY_CPU);
    assert_int_equal(cs_cl_dev_open(&l[0], &d, err, sizeof err), CLSPEC_OK);
    assert_non_null(strstr(d->build_opts, "-DCS_FAMILY_CPU=1"));
    assert_non_null(strstr(d->build_opts, "-cl-std=CL1.2"));
    /* feature flags only where the device has them */
    assert_true(!strstr(d->build_opts, "CS_HAS_FP16") == !l[0].has_fp16);
    assert_true(!strstr(d->build_opts, "CS_HAS_SUBGROUPS") == !l[0].has_subgroups);
    /* every kernel constant, with the value the host sizes its launches by */
    char opt[64];
#define CHECK_KCONST(name, value)                                       \
    snprintf(opt, sizeof opt, " -D%s=%d", #name, (int)(name));          \
    assert_non_null(strstr(d->build_opts, opt));
    CS_KCONSTS(CHECK_KCONST)
#undef CHECK_KCONST
    assert_non_null(strstr(d->build_opts, " -DNORM_WG=256"));
    cs_cl_dev_close(d);
    free(l);

    setenv("CLSPEC_KFAMILY", "tpu", 1);
    assert_int_equal(cs_cl_list(&l, &n, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "CLSPEC_KFAMILY=tpu"));
    unsetenv("CLSPEC_KFAMILY");
}

static void test_select(void **state)
{
    (void)state;
    char err[1024];
    size_t idx = 99;
    assert_int_equal(cs_cl_select(devs, ndev, NULL, &idx, err, sizeof err), CLSPEC_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(cs_cl_select(devs, ndev, "0", &idx, err, sizeof err), CLSPEC_OK);
    assert_int_equal(idx, 0);
    /* a case-flipped piece of the real name */
    char sub[8] = {0};
    for (size_t i = 0; i < 5 && devs[0].name[i]; i++) {
        char c = devs[0].name[i];
        sub[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : (c >= 'A' && c <= 'Z' ? c + 32 : c));
    }
    idx = 99;
    assert_int_equal(cs_cl_select(devs, ndev, sub, &idx, err, sizeof err), CLSPEC_OK);
    assert_string_equal(devs[idx].name, devs[0].name);

    assert_int_equal(cs_cl_select(devs, ndev, "99", &idx, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_non_null(strstr(err, "99"));
    assert_non_null(strstr(err, devs[0].name));
    assert_int_equal(cs_cl_select(devs, ndev, "no-such-device", &idx, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_non_null(strstr(err, "no-such-device"));
    assert_non_null(strstr(err, devs[0].name));

    /* a made-up list: second entry by name, any case; index beyond */
    struct cs_cl_devinfo fake[2];
    memset(fake, 0, sizeof fake);
    snprintf(fake[0].name, sizeof fake[0].name, "Alpha CPU");
    snprintf(fake[1].name, sizeof fake[1].name, "NVIDIA GeForce");
    assert_int_equal(cs_cl_select(fake, 2, "nvidia", &idx, err, sizeof err), CLSPEC_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(cs_cl_select(fake, 2, "1", &idx, err, sizeof err), CLSPEC_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(cs_cl_select(fake, 2, "2", &idx, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_non_null(strstr(err, "0: Alpha CPU"));
    assert_non_null(strstr(err, "1: NVIDIA GeForce"));
    assert_int_equal(cs_cl_select(fake, 0, NULL, &idx, err, sizeof err), CLSPEC_E_NOTFOUND);

    /* list + select + open in one call */
    struct cs_cl_dev *d = NULL;
    assert_int_equal(cs_cl_open(sub, &d, err, sizeof err), CLSPEC_OK);
    assert_string_equal(d->info.name, devs[0].name);
    assert_non_null(d->ctx);
    assert_non_null(d->q);
    cs_cl_dev_close(d);
    assert_int_equal(cs_cl_open("no-such-device", &d, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_null(d);
}

static void test_sources(void **state)
{
    (void)state;
    assert_true(cs_cl_n_sources >= 2);
    const char *c = cs_cl_source_get("common");
    assert_non_null(c);
    assert_non_null(strstr(c, "cs_wg_sum"));
    assert_non_null(strstr(c, "#pragma OPENCL EXTENSION cl_khr_fp16 : enable"));
    assert_non_null(strstr(cs_cl_source_get("bandwidth"), "__kernel void bw_read_f16"));
    assert_null(cs_cl_source_get("no_such_source"));
    for (size_t i = 0; i < cs_cl_n_sources; i++)
        for (size_t j = i + 1; j < cs_cl_n_sources; j++)
            assert_string_not_equal(cs_cl_sources[i].name, cs_cl_sources[j].name);
}

/* #include "FILE.cl" lines: replaced by the embedded file between #line
 * markers; other text (here a mention in a comment) is kept. */
static void test_includes(void **state)
{
    (void)state;
    char err[256], *out = NULL;
    const char *src = "/* #include \"kvcodec.cl\" in a comment */\n#include \"kvcodec.cl\"\nint x;\n";
    assert_int_equal(cs_cl_expand_includes("t", src, &out, err, sizeof err), CLSPEC_OK);
    assert_non_null(out);
    assert_non_null(strstr(out, "/* #include \"kvcodec.cl\" in a comment */\n#line 1 \"kvcodec.cl\"\n"));
    assert_non_null(strstr(out, cs_cl_source_get("kvcodec")));
    assert_non_null(strstr(out, "\n#line 3 \"t.cl\"\nint x;\n"));
    assert_null(strstr(out, "\n#include"));
    free(out);
    /* the programs that read or write the KV cache share the one codec */
    const char *users[] = {"kv", "attention"};
    for (size_t i = 0; i < CS_ARRAY_LEN(users); i++) {
        assert_int_equal(cs_cl_expand_includes(users[i], cs_cl_source_get(users[i]), &out, err, sizeof err),
                         CLSPEC_OK);
        assert_non_null(strstr(out, "static void kv_put("));
        assert_non_null(strstr(out, "static float kv_load1("));
        free(out);
    }
    assert_null(strstr(cs_cl_source_get("attention"), "static float kv_load1("));
    out = (char *)src;
    assert_int_equal(cs_cl_expand_includes("t", "int a;\n#include \"no_such.cl\"\n", &out, err, sizeof err),
                     CLSPEC_E_NOTFOUND);
    assert_null(out);
    assert_string_equal(err, "cl/t.cl:2: no embedded kernel source cl/no_such.cl");
}

/* Runs bw_read_f4 over n float4 of small integers on d; checks each group's
 * sum against the host's and returns the total. */
static double run_sum(struct cs_cl_dev *d, size_t n, size_t global, size_t local)
{
    char err[2048];
    cl_kernel k;
    int rc = cs_cl_kernel(d, "bandwidth", NULL, "bw_read_f4", &k, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    float *h = malloc(n * 4 * sizeof(float));
    assert_non_null(h);
    struct tu_rng r;
    tu_rng_seed(&r, 42);
    for (size_t i = 0; i < n * 4; i++)
        h[i] = (float)(tu_rng_u64(&r) % 17);
    size_t groups = (global + local - 1) / local, g = groups * local;
    cl_mem src, out;
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_ONLY, n * 16, NULL, &src, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_alloc(d, CL_MEM_WRITE_ONLY, groups * 4, NULL, &out, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_write(d, src, 0, n * 16, h, err, sizeof err), CLSPEC_OK);
    cl_uint nn = (cl_uint)n;
    assert_int_equal(clSetKernelArg(k, 0, sizeof src, &src), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 1, sizeof nn, &nn), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 2, sizeof out, &out), CL_SUCCESS);
    assert_int_equal(clSetKernelArg(k, 3, local * sizeof(float), NULL), CL_SUCCESS);
    rc = cs_cl_run(d, k, "bw_read_f4", 1, &global, &local, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    float *sums = malloc(groups * sizeof(float));
    assert_non_null(sums);
    assert_int_equal(cs_cl_read(d, out, 0, groups * 4, sums, err, sizeof err), CLSPEC_OK);
    double total = 0;
    for (size_t grp = 0; grp < groups; grp++) {
        double want = 0; /* work-item i reads float4 i, i+g, i+2g, ... */
        for (size_t wi = grp * local; wi < (grp + 1) * local; wi++)
            for (size_t i = wi; i < n; i += g)
                want += h[4 * i] + h[4 * i + 1] + h[4 * i + 2] + h[4 * i + 3];
        assert_float_equal(sums[grp], want, 0);
        total += sums[grp];
    }
    clReleaseMemObject(src);
    clReleaseMemObject(out);
    free(sums);
    free(h);
    return total;
}

static void test_open_run(void **state)
{
    (void)state;
    struct cs_cl_dev *d = open0();
    /* 37 is rounded up to 40 work-items; 1000 float4 of values 0..16 */
    double total = run_sum(d, 1000, 37, 8);
    assert_true(total > 0);
    first_build_ms = d->stats.last_build_ms;
    unsigned built = d->stats.source_builds + d->stats.cache_loads;
    assert_int_equal(built, 1);
    cl_kernel k1, k2;
    char err[1024];
    assert_int_equal(cs_cl_kernel(d, "bandwidth", NULL, "bw_read_f4", &k1, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_kernel(d, "bandwidth", "", "bw_read_f4", &k2, err, sizeof err), CLSPEC_OK);
    assert_ptr_equal(k1, k2); /* cached, and NULL extra == "" */
    assert_int_equal(d->stats.source_builds + d->stats.cache_loads, built);

    size_t g = 64, huge = d->info.max_wg * 2;
    assert_int_equal(cs_cl_run(d, k1, "bw_read_f4", 1, &g, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_cl_run(d, k1, "bw_read_f4", 1, &g, &huge, err, sizeof err), CLSPEC_E_CL);
    assert_non_null(strstr(err, "clEnqueueNDRangeKernel(bw_read_f4): CL_INVALID_"));

    cl_uint v = 1;
    assert_int_equal(cs_cl_arg(k1, 1, sizeof v, &v, "bw_read_f4", err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_arg(k1, 9, sizeof v, &v, "bw_read_f4", err, sizeof err), CLSPEC_E_CL);
    assert_string_equal(err, "clSetKernelArg(bw_read_f4, 9): CL_INVALID_ARG_INDEX (-49)");

    assert_int_equal(cs_cl_kernel(d, "bandwidth", NULL, "no_such_kernel", &k1, err, sizeof err), CLSPEC_E_CL);
    assert_non_null(strstr(err, "CL_INVALID_KERNEL_NAME"));
    assert_non_null(strstr(err, "no_such_kernel"));
    cl_program p;
    assert_int_equal(cs_cl_program(d, "no_such_file", NULL, &p, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_non_null(strstr(err, "cl/no_such_file.cl"));

    /* the bandwidth probe checks its own sums */
    struct cs_cl_bw bw;
    int rc = cs_cl_bandwidth(d, 1 << 20, 1, &bw, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    assert_true(bw.gbps_f4 > 0 && bw.gbps_f16 > 0 && bw.gbps_rows > 0);
    assert_true(bw.bytes == 1 << 20 && bw.global % bw.local == 0 && bw.runs == 1);
    assert_true(bw.best_gbps == CS_MAX(CS_MAX(bw.gbps_f4, bw.gbps_f16), bw.gbps_rows));
    assert_non_null(bw.best);
    /* sizes are rounded down to whole groups of the rows kernel; less is refused */
    assert_int_equal(cs_cl_bandwidth(d, (1 << 20) + 4096, 1, &bw, err, sizeof err), CLSPEC_OK);
    assert_true(bw.bytes == 1 << 20);
    assert_int_equal(cs_cl_bandwidth(d, 4096, 1, &bw, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "bandwidth: need >="));
    cs_cl_dev_close(d);
}

static void test_alloc(void **state)
{
    (void)state;
    struct cs_cl_dev *d = open0();
    char err[512];
    cl_mem m = NULL;
    size_t too_big = (size_t)d->info.max_alloc + 1;
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, too_big, NULL, &m, err, sizeof err), CLSPEC_E_RANGE);
    assert_null(m);
    assert_non_null(strstr(err, "maximum allocation"));
    assert_non_null(strstr(err, d->info.name));
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, 0, NULL, &m, err, sizeof err), CLSPEC_E_INVAL);
    unsigned char in[4096], out[4096];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 7 + 3);
    assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, sizeof in, NULL, &m, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_cl_write(d, m, 0, sizeof in, in, err, sizeof err), CLSPEC_OK);
    memset(out, 0, sizeof out);
    assert_int_equal(cs_cl_read(d, m, 100, 1000, out, err, sizeof err), CLSPEC_OK);
    assert_memory_equal(out, in + 100, 1000);
    /* reading past the end is a CL error with the call named */
    assert_int_equal(cs_cl_read(d, m, 4000, 1000, out, err, sizeof err), CLSPEC_E_CL);
    assert_non_null(strstr(err, "clEnqueueReadBuffer"));
    clReleaseMemObject(m);
    /* 2 MiB and more on a CPU device: on huge-page memory of ours (where the kernel has it), with the same
     * contents through COPY_HOST_PTR and kernels, freed with the buffer; CLSPEC_NO_HUGEPAGES=1: the runtime's */
    const size_t big = (3u << 20) + 4096 + 12; /* one whole 2 MiB page and a tail */
    unsigned char *h = malloc(big), *back = malloc(big);
    assert_true(h && back);
    for (size_t i = 0; i < big; i++)
        h[i] = (unsigned char)(i * 13 + (i >> 12));
    for (int off = 0; off < 2; off++) {
        if (off)
            setenv("CLSPEC_NO_HUGEPAGES", "1", 1);
        const unsigned live = cs_cl_huge_buffers();
        assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, big, h, &m, err, sizeof err),
                         CLSPEC_OK);
        const bool huge = cs_cl_huge_buffers() == live + 1;
        if (off || !(d->info.type & CL_DEVICE_TYPE_CPU))
            assert_false(huge);
        else if (!huge)
            print_message("# no huge-page memory here (madvise refused): the runtime allocates\n");
        memset(back, 0, big);
        assert_int_equal(cs_cl_read(d, m, 0, big, back, err, sizeof err), CLSPEC_OK);
        assert_memory_equal(back, h, big);
        /* a read-write one written and read back at an offset (kernels on such buffers: every kernel test) */
        cl_mem sm;
        assert_int_equal(cs_cl_alloc(d, CL_MEM_READ_WRITE, 4u << 20, NULL, &sm, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_cl_write(d, sm, 12, big - 12, h + 12, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_cl_read(d, sm, 12, big - 12, back + 12, err, sizeof err), CLSPEC_OK);
        assert_memory_equal(back + 12, h + 12, big - 12);
        clReleaseMemObject(sm);
        clReleaseMemObject(m);
        assert_int_equal(cs_cl_finish(d, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_cl_huge_buffers(), live);
        unsetenv("CLSPEC_NO_HUGEPAGES");
    }
    free(h);
    free(back);
    cs_cl_dev_close(d);
}

static void test_build_error(void **state)
{
    (void)state;
    struct cs_cl_dev *d = open0();
    char err[8192];
    cl_program p = NULL;
    const char *src = "__kernel void f(__global int *p) { p[0] = undeclared_thing; }";
    int rc = cs_cl_program_from_source(d, "broken.cl", src, NULL, &p, err, sizeof err);
    assert_int_equal(rc, CLSPEC_E_CL);
    assert_null(p);
    assert_non_null(strstr(err, "broken.cl"));
    assert_non_null(strstr(err, "CL_BUILD_PROGRAM_FAILURE"));
    assert_non_null(strstr(err, "undeclared_thing")); /* the compiler's log */
    cs_cl_dev_close(d);
}

/* The kernel compiler sees every constant of cl/kconst.h with the host's
 * value: a source that #errors on any missing or different one builds. */
static void test_kconst_build(void **state)
{
    (void)state;
    struct cs_cl_dev *d = open0();
    char err[8192], src[4096];
    size_t n = 0;
#define KCONST_CHECK(name, value)                                                                  \
    n += (size_t)snprintf(src + n, sizeof src - n,                                              \
                          "#if !defined(%s) || %s != %d\n#error kconst %s differs\n#endif\n", #name, \
                          #name, (int)(name), #name);
    CS_KCONSTS(KCONST_CHECK)
#undef KCONST_CHECK
    assert_true(n < sizeof src);
    snprintf(src + n, sizeof src - n, "__kernel void f(__global int *p) { p[0] = NORM_WG; }\n");
    cl_program p = NULL;
    int rc = cs_cl_program_from_source(d, "kconst.cl", src, NULL, &p, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    clReleaseProgram(p);
    /* and a different value (a later -D wins) is caught */
    rc = cs_cl_program_from_source(d, "kconst.cl", src, "-DNORM_WG=255", &p, err, sizeof err);
    assert_int_equal(rc, CLSPEC_E_CL);
    assert_non_null(strstr(err, "kconst NORM_WG differs"));
    assert_null(strstr(err, "kconst ATT_WG differs"));
    cs_cl_dev_close(d);
}

/* Builds cl/bandwidth.cl on a fresh device; returns it (stats inspectable). */
static struct cs_cl_dev *build_fresh(double *total)
{
    struct cs_cl_dev *d = open0();
    char err[4096];
    cl_program p;
    int rc = cs_cl_program(d, "bandwidth", NULL, &p, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    *total = run_sum(d, 777, 64, 16);
    return d;
}

static void test_binary_cache(void **state)
{
    (void)state;
    unsetenv("CLSPEC_NO_BINARY_CACHE");
    cache_files(true, NULL, 0);
    double t_cold, t_cached;
    double s1, s2, s3, s4;

    struct cs_cl_dev *d = build_fresh(&s1);
    assert_int_equal(d->stats.source_builds, 1);
    assert_int_equal(d->stats.cache_loads, 0);
    assert_int_equal(d->stats.cache_writes, 1);
    t_cold = d->stats.last_build_ms;
    cs_cl_dev_close(d);
    char path[1400] = "";
    assert_int_equal(cache_files(false, path, sizeof path), 1);

    d = build_fresh(&s2); /* a second open loads the cached binary */
    assert_int_equal(d->stats.source_builds, 0);
    assert_int_equal(d->stats.cache_loads, 1);
    assert_int_equal(d->stats.cache_writes, 0);
    t_cached = d->stats.last_build_ms;
    cs_cl_dev_close(d);
    assert_true(s1 == s2);
    print_message("# cl/bandwidth.cl on %s: first build %.1f ms; from source again %.1f ms "
                  "(driver's own caches warm); from the binary cache %.1f ms\n",
                  devs[0].name, first_build_ms, t_cold, t_cached);

    /* corrupt one byte of the payload: ignored, rebuilt, rewritten */
    size_t len = 0;
    unsigned char *buf = tu_read_file(path, &len);
    assert_non_null(buf);
    assert_true(len > 64);
    buf[len / 2] ^= 0x5a;
    assert_int_equal(tu_write_file(path, buf, len), 0);
    d = build_fresh(&s3);
    assert_int_equal(d->stats.cache_rejects, 1);
    assert_int_equal(d->stats.source_builds, 1);
    assert_int_equal(d->stats.cache_writes, 1);
    cs_cl_dev_close(d);
    assert_true(s3 == s1);

    /* truncated to its header: also ignored (the rewrite above fixed it first) */
    size_t len2 = 0;
    unsigned char *fixed = tu_read_file(path, &len2);
    assert_non_null(fixed);
    assert_int_equal(len2, len);
    assert_memory_not_equal(fixed, buf, len); /* rewritten, not the corrupt copy */
    assert_int_equal(tu_write_file(path, fixed, 20), 0);
    free(buf);

    /* CLSPEC_NO_BINARY_CACHE=1: neither read nor written */
    setenv("CLSPEC_NO_BINARY_CACHE", "1", 1);
    d = build_fresh(&s4);
    assert_int_equal(d->stats.source_builds, 1);
    assert_int_equal(d->stats.cache_loads + d->stats.cache_writes + d->stats.cache_rejects, 0);
    cs_cl_dev_close(d);
    unsetenv("CLSPEC_NO_BINARY_CACHE");
    assert_true(s4 == s1);
    size_t len3 = 0;
    unsigned char *still = tu_read_file(path, &len3);
    assert_non_null(still);
    assert_int_equal(len3, 20);

    /* and with the cache back on, the truncated file is rebuilt and loads next time */
    d = build_fresh(&s4);
    assert_int_equal(d->stats.cache_rejects, 1);
    assert_int_equal(d->stats.cache_writes, 1);
    cs_cl_dev_close(d);
    d = build_fresh(&s4);
    assert_int_equal(d->stats.cache_loads, 1);
    cs_cl_dev_close(d);
    assert_true(s4 == s1);
    free(still);
    free(fixed);
}

static int group_setup(void **state)
{
    (void)state;
    char err[1024];
    if (cs_cl_list(&devs, &ndev, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "cs_cl_list: %s\n", err);
        return -1;
    }
    if (ndev == 0) {
        fprintf(stderr, "no OpenCL device (install pocl-opencl-icd)\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(devs);
    return 0;
}

int main(void)
{
    /* Before any CL call: keep our cache (and PoCL's) inside the build tree. */
    char base[700];
    tu_private_cache("test-cl-runtime", base, sizeof base);
    snprintf(cache_dir, sizeof cache_dir, "%s/clspec", base);
    unsetenv("CLSPEC_KFAMILY");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errstr),       cmocka_unit_test(test_list),
        cmocka_unit_test(test_kfamily_env),  cmocka_unit_test(test_select),
        cmocka_unit_test(test_sources),      cmocka_unit_test(test_includes),
        cmocka_unit_test(test_open_run),
        cmocka_unit_test(test_alloc),        cmocka_unit_test(test_build_error),
        cmocka_unit_test(test_kconst_build),
        cmocka_unit_test(test_binary_cache),
    };
    return cmocka_run_group_tests_name("cl-runtime", tests, group_setup, group_teardown);
}
