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

void ku_read_to(struct cs_cl_dev *d, cl_mem m, size_t off, size_t bytes, void *dst)
{
    char err[512];
    if (cs_cl_read(d, m, off, bytes, dst, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
}

void *ku_read(struct cs_cl_dev *d, cl_mem m, size_t off, size_t bytes)
{
    char err[512];
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    if (cs_cl_finish(d, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    ku_read_to(d, m, off, bytes, p);
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

float *ku_random_floats(size_t n, uint64_t seed)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = tu_rng_normal(&rng);
    return x;
}

float *ku_random_x(uint32_t n_in, uint32_t n_cols, uint64_t seed, bool outlier)
{
    float *x = ku_random_floats((size_t)n_in * n_cols, seed);
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

/* fails naming what and the first element whose bits differ */
static void same_bits(const float *y, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&y[i], &want[i], sizeof *y) != 0)
            fail_msg("%s: element %zu is %.9g, want %.9g", what, i, (double)y[i], (double)want[i]);
}

void ku_check_fused(struct cs_cl_dev *d, const struct cs_weight *w, bool swiglu, const char *what)
{
    char err[512];
    const uint32_t n_in = w[0].n_in, no[3] = {w[0].n_out, w[1].n_out, w[2].n_out};
    for (uint32_t nc = 1; nc <= 5; nc += 4) {
        float *x = ku_random_x(n_in, nc, 3, false), *y[3];
        for (int i = 0; i < 3; i++)
            y[i] = ku_run_matmul(d, &w[i], x, nc);
        cl_mem xb = ku_buf(d, (size_t)nc * n_in * sizeof(float), x), o[3];
        for (int i = 0; i < 3; i++)
            o[i] = ku_buf(d, (size_t)nc * no[i] * sizeof(float), NULL);
        if (cs_op_matmul_qkv(d, &w[0], &w[1], &w[2], xb, 0, o[0], 0, o[1], 0, o[2], 0, nc, err, sizeof err) !=
            CLSPEC_OK)
            fail_msg("%s: %s", what, err);
        for (int i = 0; i < 3; i++) {
            float *z = ku_read(d, o[i], 0, (size_t)nc * no[i] * sizeof(float));
            same_bits(z, y[i], (size_t)nc * no[i], what);
            free(z);
        }
        if (swiglu) {
            const size_t n = (size_t)nc * no[1];
            cl_mem tmp = ku_buf(d, n * sizeof(float), NULL), gb = ku_buf(d, n * sizeof(float), y[1]),
                   ub = ku_buf(d, n * sizeof(float), y[2]);
            if (cs_op_matmul_swiglu(d, &w[1], &w[2], xb, 0, tmp, o[0], 0, nc, err, sizeof err) != CLSPEC_OK ||
                cs_op_swiglu(d, gb, 0, ub, 0, gb, 0, n, err, sizeof err) != CLSPEC_OK)
                fail_msg("%s: %s", what, err);
            float *z = ku_read(d, o[0], 0, n * sizeof(float)), *want = ku_read(d, gb, 0, n * sizeof(float));
            same_bits(z, want, n, what);
            free(want);
            free(z);
            clReleaseMemObject(gb);
            clReleaseMemObject(ub);
            clReleaseMemObject(tmp);
        }
        for (int i = 0; i < 3; i++) {
            clReleaseMemObject(o[i]);
            free(y[i]);
        }
        clReleaseMemObject(xb);
        free(x);
    }
}

/* positions of the f16 scale fields (d, and dmin/m or -1) in a block */
static void scale_fields(uint32_t type, int *d_at, int *m_at)
{
    *m_at = -1;
    switch (type) {
    case CS_TYPE_Q4_1: *d_at = 0; *m_at = 2; break;
    case CS_TYPE_Q5_0: *d_at = 0; break;
    case CS_TYPE_Q5_1: *d_at = 0; *m_at = 2; break;
    case CS_TYPE_Q2_K: *d_at = 80; *m_at = 82; break;
    case CS_TYPE_Q3_K: *d_at = 108; break;
    case CS_TYPE_Q4_K: *d_at = 0; *m_at = 2; break;
    case CS_TYPE_Q5_K: *d_at = 0; *m_at = 2; break;
    case CS_TYPE_Q6_K: *d_at = 208; break;
    default: *d_at = -1; break;
    }
}

unsigned char *ku_random_blocks(uint32_t type, uint32_t n_in, uint32_t n_out, uint64_t seed, uint64_t *bytes_out)
{
    uint64_t rb;
    assert_true(cs_row_bytes(type, n_in, &rb));
    *bytes_out = rb * n_out;
    const struct cs_type_info *ti = cs_type_get(type);
    if (ti->quant)
        return ku_random_weight(type, n_in, n_out, seed, false);
    unsigned char *w = malloc(rb * n_out);
    assert_non_null(w);
    struct tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (uint64_t i = 0; i < rb * n_out; i++)
        w[i] = (unsigned char)(tu_rng_u64(&rng) >> 56);
    int d_at, m_at;
    scale_fields(type, &d_at, &m_at);
    assert_true(d_at >= 0);
    const uint64_t nb = rb * n_out / ti->block_bytes;
    for (uint64_t b = 0; b < nb; b++) {
        unsigned char *blk = w + b * ti->block_bytes;
        tu_put_f16(blk + d_at, 0.01f + 0.09f * tu_rng_uniform(&rng));
        if (m_at >= 0)
            tu_put_f16(blk + m_at, 0.2f * tu_rng_uniform(&rng) - 0.1f);
    }
    return w;
}
