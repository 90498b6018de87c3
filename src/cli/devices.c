/* devices.c: `clspec devices`: lists every OpenCL device with the
 * capabilities clspec uses and the kernel family it would pick; with
 * --bandwidth also measures each device's global-memory read bandwidth. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/bandwidth.h"
#include "cl/runtime.h"
#include "cli/cli.h"
#include "base/common.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clspec devices [--bandwidth] [--device SEL] [--help]\n"
            "\n"
            "Lists every OpenCL device of every platform: index, platform, name, type,\n"
            "compute units, memory sizes, OpenCL C version, the extensions clspec uses\n"
            "and the kernel family it picks (CLSPEC_KFAMILY=cpu|gpu overrides).\n"
            "\n"
            "  --bandwidth   also measure global-memory streaming read bandwidth (GB/s,\n"
            "                1e9 bytes/s): the best of a GPU-style strided read and a\n"
            "                CPU-style one-row-per-work-item read with prefetch, each the\n"
            "                best of 7 runs over a 1 GiB buffer (or max allocation / 2;\n"
            "                a kernel under a quarter of the best so far stops after one)\n"
            "  --device SEL  only the device with this index or name substring\n"
            "  --help        this text\n");
}

static const char *type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (t & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR)
        return "accelerator";
    if (t & CL_DEVICE_TYPE_CUSTOM)
        return "custom";
    return "other";
}

static void print_device(const struct cs_cl_devinfo *di)
{
    printf("device %u: %s\n", di->index, di->name);
    printf("  platform        %u: %s\n", di->platform_index, di->platform_name);
    printf("  vendor          %s\n", di->vendor);
    printf("  type            %s\n", type_name(di->type));
    printf("  compute units   %u\n", (unsigned)di->compute_units);
    printf("  global memory   %.1f MiB\n", di->global_mem / 1048576.0);
    printf("  max allocation  %.1f MiB\n", di->max_alloc / 1048576.0);
    printf("  local memory    %.1f KiB\n", di->local_mem / 1024.0);
    printf("  max work-group  %zu\n", di->max_wg);
    printf("  device version  %s\n", di->version);
    printf("  OpenCL C        %s\n", di->c_version);
    printf("  driver          %s\n", di->driver);
    printf("  cl_khr_fp16     %s\n", di->has_fp16 ? "yes" : "no");
    printf("  subgroups       %s\n", di->has_subgroups ? "yes" : "no");
    printf("  integer dot     %s\n", di->has_int_dot ? "yes" : "no");
    printf("  kernel family   %s\n", di->family == CS_KFAMILY_CPU ? "cpu" : "gpu");
}

static int measure(const struct cs_cl_devinfo *di)
{
    char err[4096];
    struct cs_cl_dev *d = NULL;
    struct cs_cl_bw bw;
    int rc = cs_cl_dev_open(di, &d, err, sizeof err);
    if (rc == CLSPEC_OK)
        rc = cs_cl_bandwidth(d, cs_cl_bw_default_bytes(di), 7, &bw, err, sizeof err);
    cs_cl_dev_close(d);
    if (rc != CLSPEC_OK) {
        fprintf(stderr, "clspec devices: %s\n", err);
        return rc;
    }
    printf("  read bandwidth  %.1f GB/s (GPU-style strided float4 %.1f, float16 %.1f; CPU-style rows"
           " %.1f; best %s, %zu x %zu work-items; %.0f MiB, best of %d)\n",
           bw.best_gbps, bw.gbps_f4, bw.gbps_f16, bw.gbps_rows, bw.best, bw.global / bw.local, bw.local,
           bw.bytes / 1048576.0, bw.runs);
    return CLSPEC_OK;
}

int cs_cmd_devices(int argc, char **argv)
{
    bool bandwidth = false;
    const char *sel = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bandwidth"))
            bandwidth = true;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            sel = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "clspec devices: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[4096];
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, only = 0;
    if (cs_cl_list(&list, &n, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "clspec devices: %s\n", err);
        return 1;
    }
    if (n == 0) {
        printf("no OpenCL devices found (is an OpenCL driver/ICD installed? try clinfo)\n");
        free(list);
        return 1;
    }
    if (sel && cs_cl_select(list, n, sel, &only, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "clspec devices: %s\n", err);
        free(list);
        return 1;
    }
    int status = 0;
    for (size_t i = 0; i < n; i++) {
        if (sel && i != only)
            continue;
        print_device(&list[i]);
        if (bandwidth && measure(&list[i]) != CLSPEC_OK)
            status = 1;
    }
    free(list);
    return status;
}
