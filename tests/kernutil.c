/* kernutil: see kernutil.h. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "kernutil.h"
#include "ops/matmul.h"
#include "ops/ops.h"
#include "gguf/quant.h"
#include "testutil.h"

const char *const ku_fam_name[2] = {"gpu", "cpu"};

int ku_open_families(struct cs_cl_dev *devs[2], bool prepare, const char *label)
{
    char err[1024];
    setenv("CLSPEC_NO_BINARY_CACHE", "1", 0);
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, idx = 0;
    if (cs_cl_list(&list, &n, err, sizeof err) != CLSPEC_OK || n == 0) {
        fprintf(stderr, "no OpenCL device: %s skipped (%s)\n", label, n ? err : "none listed");
        free(list);
        return 0;
    }
    if (cs_cl_select(list, n, getenv("CLSPEC_TEST_DEVICE"), &idx, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "%s\n", err);
        free(list);
        return -1;
    }
    for (int f = 0; f < 2; f++) {
        struct cs_cl_devinfo info = list[idx];
        info.family = (enum cs_kfamily)f;
        const double t0 = cs_now();
        if (cs_cl_dev_open(&info, &devs[f], err, sizeof err) != CLSPEC_OK ||
            (prepare && cs_op_matmul_prepare(devs[f], err, sizeof err) != CLSPEC_OK)) {
            fprintf(stderr, "%s\n", err);
            free(list);
            return -1;
        }
        if (prepare)
            printf("# %s family on %s: programs ready in %.0f ms\n", ku_fam_name[f], info.name,
                   (cs_now() - t0) * 1e3);
    }
    free(list);
    return 1;
}

void ku_close_families(struct cs_cl_dev *devs[2])
{
    for (int f = 0; f < 2; f++)
        if (devs[f]) {
            cs_cl_dev_close(devs[f]);
            devs[f] = NULL;
        }
}

cl_mem ku_buf(struct cs_cl_dev *d, size_t bytes, const void *init)
{
    char err[512];
    cl_mem m;
    if (cs_cl_alloc(d, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes, (void *)init, &m, err,
                    sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    return m;
}

void *ku_read(struct cs_cl_dev *d, cl_mem m, size_t off, size_t bytes)
{
    char err[512];
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    if (cs_cl_finish(d, err, sizeof err) != CLSPEC_OK || cs_cl_read(d, m, off, bytes, p, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    return p;
}

double ku_norm_err(const float *y, const float *ref, size_t n)
{
    double maxd = 0.0, maxr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            return INFINITY;
        maxd = fmax(maxd, fabs((double)y[i] - ref[i]));
        maxr = fmax(maxr, fabs((double)ref[i]));
    }
    return maxd / (maxr + 1e-20);
}

unsigned char *ku_random_weight(uint32_t type, uint32_t n_in, uint32_t n_out, uint64_t seed, bool uneven)
{
    uint64_t rb;
    assert_true(cs_row_bytes(type, n_in, &rb));
    unsigned char *w = malloc(rb * n_out);
    float *row = malloc(n_in * sizeof *row);
    assert_non_null(w);
    assert_non_null(row);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (uint32_t r = 0; r < n_out; r++) {
        for (uint32_t k = 0; k < n_in; k++)
            row[k] = tu_rng_normal(&rng) * (uneven ? 1.0f + (float)(k % 7) : 1.0f);
        assert_int_equal(cs_quantize_row(type, row, w + r * rb, n_in), 0);
    }
    free(row);
    return w;
}

float *ku_random_x(uint32_t n_in, uint32_t n_cols, uint64_t seed, bool outlier)
{
    float *x = malloc((size_t)n_in * n_cols * sizeof *x);
    assert_non_null(x);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (size_t i = 0; i < (size_t)n_in * n_cols; i++)
        x[i] = tu_rng_normal(&rng);
    if (n_in >= 64)
        memset(x + 32, 0, 32 * sizeof *x);
    if (outlier)
        x[n_in / 2] = 40.0f;
    return x;
}

float *ku_run_matmul(struct cs_cl_dev *d, const struct cs_weight *w, const float *x, uint32_t n_cols)
{
    char err[512];
    const size_t xo = 3, yo = 5, xn = xo + (size_t)n_cols * w->n_in, yn = yo + (size_t)n_cols * w->n_out;
    float *xh = calloc(xn, sizeof *xh);
    assert_non_null(xh);
    memcpy(xh + xo, x, (size_t)n_cols * w->n_in * sizeof *x);
    cl_mem xb = ku_buf(d, xn * sizeof(float), xh), yb = ku_buf(d, yn * sizeof(float), NULL);
    free(xh);
    if (cs_op_matmul(d, w, xb, xo, yb, yo, n_cols, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    float *y = ku_read(d, yb, yo * sizeof(float), (size_t)n_cols * w->n_out * sizeof(float));
    clReleaseMemObject(xb);
    clReleaseMemObject(yb);
    return y;
}
