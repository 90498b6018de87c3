/* opsutil: see opsutil.h. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gguf/quant.h"
#include "opsutil.h"

struct cs_cl_dev *ou_dev;
char ou_err[CLSPEC_ERRLEN];

const enum cs_kfamily ou_fams[2] = {CS_KFAMILY_CPU, CS_KFAMILY_GPU};

const char *ou_fam_name(enum cs_kfamily f)
{
    return f == CS_KFAMILY_CPU ? "cpu" : "gpu";
}

/* The families to run: both, or the one named by CLSPEC_KFAMILY. */
bool ou_fam_enabled(enum cs_kfamily f)
{
    const char *e = getenv("CLSPEC_KFAMILY");
    if (!e || !*e)
        return true;
    return strcmp(e, ou_fam_name(f)) == 0;
}

double ou_now_ms(void)
{
    return cs_now() * 1e3;
}

cl_mem ou_buf(size_t bytes, const void *host)
{
    cl_int e;
    cl_mem m = clCreateBuffer(ou_dev->ctx, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                              bytes ? bytes : 4, (void *)host, &e);
    assert_int_equal(e, CL_SUCCESS);
    return m;
}

void ou_read(cl_mem m, size_t bytes, void *host)
{
    assert_int_equal(clEnqueueReadBuffer(ou_dev->q, m, CL_TRUE, 0, bytes, host, 0, NULL, NULL),
                     CL_SUCCESS);
}

void ou_write(cl_mem m, size_t bytes, const void *host)
{
    assert_int_equal(clEnqueueWriteBuffer(ou_dev->q, m, CL_TRUE, 0, bytes, host, 0, NULL, NULL),
                     CL_SUCCESS);
}

void ou_finish(void)
{
    assert_int_equal(clFinish(ou_dev->q), CL_SUCCESS);
}

float *ou_rand_vec(struct tu_rng *r, size_t n, float scale)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = tu_rng_normal(r) * scale;
    return v;
}

/* max |a - b| / max(|ref|, floor): the normalized error every bound uses. */
double ou_norm_err(const float *got, const float *ref, size_t n, double floor)
{
    double e = 0.0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= e)) /* also catches NaN */
            e = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > m)
            m = fabs(ref[i]);
    }
    return e / m;
}

int ou_setup(void **state)
{
    (void)state;
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, idx;
    if (cs_cl_list(&list, &n, ou_err, sizeof ou_err) != CLSPEC_OK || n == 0) {
        free(list);
        return 0; /* no device: every test skips */
    }
    if (cs_cl_select(list, n, getenv("CLSPEC_DEVICE"), &idx, ou_err, sizeof ou_err) != CLSPEC_OK ||
        cs_cl_dev_open(&list[idx], &ou_dev, ou_err, sizeof ou_err) != CLSPEC_OK) {
        fprintf(stderr, "# %s\n", ou_err);
        ou_dev = NULL;
    } else {
        printf("# device: %s (%s)\n", ou_dev->info.name, ou_dev->info.platform_name);
    }
    free(list);
    return 0;
}

int ou_teardown(void **state)
{
    (void)state;
    if (ou_dev)
        cs_cl_dev_close(ou_dev);
    return 0;
}

const uint32_t ou_kv_types[5] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0,
                                      CS_TYPE_Q4_0};

/* Bytes of a KV cache row of n elements (quantized: padded to whole blocks). */
size_t ou_kv_row_bytes(uint32_t type, size_t n)
{
    uint64_t b = 0;
    assert_true(cs_kv_row_bytes(type, n, &b));
    return (size_t)b;
}

/* Asserts that the padding of a quantized row of n elements (rb bytes) at p
 * reads back as 0. */
void ou_assert_pad_zero(uint32_t type, const unsigned char *p, size_t rb, int n)
{
    if (type != CS_TYPE_Q8_0 && type != CS_TYPE_Q4_0)
        return;
    int padded = (int)(rb / (type == CS_TYPE_Q8_0 ? 34 : 18)) * 32;
    float *x = malloc((size_t)padded * sizeof *x);
    assert_non_null(x);
    assert_int_equal(cs_dequantize_row(type, p, x, padded), 0);
    for (int i = n; i < padded; i++)
        assert_true(x[i] == 0.0f);
    free(x);
}

void ou_kv_fill(struct ou_kv_fixture *fx, uint32_t type, uint32_t type_v, int n_cells,
                    int n_kv_head, int head_dim, const float *k, const float *v,
                    const int32_t *cell_pos, const uint64_t *cell_seq)
{
    int row = n_kv_head * head_dim;
    size_t rb = ou_kv_row_bytes(type, (size_t)row), bytes = rb * (size_t)(n_cells ? n_cells : 1);
    size_t rbv = ou_kv_row_bytes(type_v, (size_t)row), bytes_v = rbv * (size_t)(n_cells ? n_cells : 1);
    struct cs_kv_view *kv = &fx->kv;
    memset(kv, 0, sizeof *kv);
    kv->type_k = type;
    kv->type_v = type_v;
    kv->n_cells = n_cells;
    kv->n_kv_head = n_kv_head;
    kv->head_dim = head_dim;
    unsigned char *zero = calloc(1, CS_MAX(bytes, bytes_v));
    assert_non_null(zero);
    kv->k = ou_buf(bytes, zero);
    kv->v = ou_buf(bytes_v, zero);
    kv->cell_pos = ou_buf((size_t)n_cells * 4, cell_pos);
    kv->cell_seq = ou_buf((size_t)n_cells * 8, cell_seq);
    int32_t *idx = malloc((size_t)(n_cells ? n_cells : 1) * sizeof *idx);
    assert_non_null(idx);
    for (int c = 0; c < n_cells; c++)
        idx[c] = c;
    /* v sits at element offset 3 of its buffer */
    float *vpad = calloc((size_t)n_cells * row + 3, sizeof *vpad);
    assert_non_null(vpad);
    memcpy(vpad + 3, v, (size_t)n_cells * row * sizeof *v);
    cl_mem bk = ou_buf((size_t)n_cells * row * 4, k);
    cl_mem bv = ou_buf(((size_t)n_cells * row + 3) * 4, vpad);
    free(vpad);
    cl_mem bi = ou_buf((size_t)n_cells * 4, idx);
    OP_OK(cs_op_kv_store(ou_dev, kv, bk, 0, bv, 3, bi, n_cells, ou_err, sizeof ou_err));
    fx->kdq = malloc((size_t)(n_cells ? n_cells : 1) * row * sizeof(float));
    fx->vdq = malloc((size_t)(n_cells ? n_cells : 1) * row * sizeof(float));
    assert_non_null(fx->kdq);
    assert_non_null(fx->vdq);
    ou_read(kv->k, bytes, zero);
    for (int c = 0; c < n_cells; c++)
        assert_int_equal(cs_kv_dequantize_row(type, zero + rb * c, fx->kdq + (size_t)c * row, row), 0);
    ou_read(kv->v, bytes_v, zero);
    for (int c = 0; c < n_cells; c++)
        assert_int_equal(cs_kv_dequantize_row(type_v, zero + rbv * c, fx->vdq + (size_t)c * row, row),
                         0);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
    clReleaseMemObject(bi);
    free(idx);
    free(zero);
}

void ou_kv_free(struct ou_kv_fixture *fx)
{
    clReleaseMemObject(fx->kv.k);
    clReleaseMemObject(fx->kv.v);
    clReleaseMemObject(fx->kv.cell_pos);
    clReleaseMemObject(fx->kv.cell_seq);
    free(fx->kdq);
    free(fx->vdq);
}

