/* matmul_q8.c: host side of cl/quant.cl and cl/matmul_q8.cl (see
 * ops/matmul_q8.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "cl/kconst.h"
#include "ops/matmul_q8.h"
#include "ops/ops.h"

#define CPU_LOCAL 16 /* work-items per group (as src/ops/matmul.c) */

static const char *q8_kname(const struct cs_weight *w)
{
    if (w->type == CS_TYPE_Q4_0 && w->layout == CS_WLAYOUT_GGUF)
        return "q4_0";
    if (w->type == CS_TYPE_Q8_0 && w->layout == CS_WLAYOUT_Q8_0_F32D)
        return "q8_0f";
    return NULL;
}

/* the extra build option of cl/matmul_q8.cl on d (CLSPEC_Q8_VNNI=0: not
 * vpdpbusd, for tests of the other integer path) */
static const char *q8_extra(const struct cs_cl_dev *d)
{
    const char *e = getenv("CLSPEC_Q8_VNNI");
    if (e && strcmp(e, "0") == 0)
        return NULL;
    return cs_cl_host_vnni(&d->info) ? "-DCS_CPU_VNNI=1" : NULL;
}

bool cs_op_q8_takes(const struct cs_cl_dev *d, const struct cs_weight *w)
{
    return d->int8_act && d->info.family == CS_KFAMILY_CPU && w && q8_kname(w) && w->n_in % 32 == 0;
}

size_t cs_q8_bytes(uint32_t n_in, uint32_t n_cols, size_t *d_off)
{
    const size_t q = (size_t)n_in * n_cols;
    if (d_off)
        *d_off = q;
    return q + (size_t)(n_in / 32) * n_cols * sizeof(float);
}

int cs_op_quant_q8(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols, cl_mem out,
                   char *err, size_t errlen)
{
    return cs_op_quant_q8_sums(d, x, x_off, n_in, n_cols, out, 0, err, errlen);
}

int cs_op_quant_q8_sums(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols, cl_mem out,
                        size_t s_off, char *err, size_t errlen)
{
    if (n_in == 0 || n_in % 32 || n_cols == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "quant_q8: n_in %u must be a positive multiple of 32, "
                      "n_cols %u positive", n_in, n_cols);
    size_t d_off;
    const size_t bytes = cs_q8_bytes(n_in, n_cols, &d_off);
    if (bytes > UINT32_MAX || x_off + (size_t)n_in * n_cols > UINT32_MAX || s_off > UINT32_MAX || s_off % 4)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "quant_q8 %ux%u: offsets exceed 32 bits", n_in, n_cols);
    const cl_uint xo = (cl_uint)x_off, ni = n_in, nc = n_cols, dof = (cl_uint)d_off, so = (cl_uint)s_off;
    const struct cs_karg a[] = {CS_KA(x), CS_KA(xo), CS_KA(ni), CS_KA(nc), CS_KA(out), CS_KA(dof), CS_KA(so)};
    const size_t nb = n_in / 32, g[2] = {nb, n_cols}, l[2] = {CS_MIN(nb, (size_t)CPU_LOCAL), 1};
    return cs_op_launch_nd(d, "quant", NULL, "quant_q8", a, CS_ARRAY_LEN(a), 2, g, l, err, errlen);
}

int cs_op_quant_q8_scratch(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols,
                           char *err, size_t errlen)
{
    const size_t bytes = cs_q8_bytes(n_in, n_cols, NULL);
    if (bytes > d->q8_bytes) {
        /* in-order queue: kernels already enqueued keep the old buffer alive */
        size_t want = d->q8_bytes ? d->q8_bytes : 4096;
        while (want < bytes)
            want *= 2;
        if (d->q8_buf)
            clReleaseMemObject(d->q8_buf);
        d->q8_buf = NULL;
        d->q8_bytes = 0;
        CS_TRY(cs_cl_alloc(d, CL_MEM_READ_WRITE, want, NULL, &d->q8_buf, err, errlen));
        d->q8_bytes = want;
    }
    return cs_op_quant_q8(d, x, x_off, n_in, n_cols, d->q8_buf, err, errlen);
}

int cs_op_matmul_q8(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                    char *err, size_t errlen)
{
    const char *t = w ? q8_kname(w) : NULL;
    if (!t || !w->n_parts || !d->q8_buf)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_q8: weight of this type/layout or quantized "
                      "input missing");
    size_t d_off;
    if (cs_q8_bytes(w->n_in, n_cols, &d_off) > d->q8_bytes)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_q8: %u columns of %u not quantized", n_cols,
                      w->n_in);
    uint64_t ye;
    if (!cs_mul_ok(n_cols, w->n_out, &ye) || y_off + ye > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_q8 n_cols=%u: offsets exceed 32 bits", n_cols);
    char name[32];
    snprintf(name, sizeof name, "%s_%s", n_cols == 1 ? "mvq" : "mmq", t);
    const cl_uint rb = (cl_uint)w->row_bytes, n_in = w->n_in, dof = (cl_uint)d_off, nc = n_cols,
                  ystride = w->n_out;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint nr = p->n_rows, yo = (cl_uint)(y_off + p->r0);
        if (n_cols == 1) {
            const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb),  CS_KA(n_in), CS_KA(nr),
                                        CS_KA(d->q8_buf), CS_KA(dof), CS_KA(y),    CS_KA(yo)};
            const size_t g = (nr + CS_MV_ROWS - 1) / CS_MV_ROWS;
            CS_TRY(cs_op_launch(d, "matmul_q8", q8_extra(d), name, a, CS_ARRAY_LEN(a), g, CPU_LOCAL, err, errlen));
        } else {
            const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(nr), CS_KA(d->q8_buf),
                                        CS_KA(dof),    CS_KA(nc), CS_KA(y),    CS_KA(yo), CS_KA(ystride)};
            const size_t g[2] = {nr, (n_cols + CS_MM_TCC - 1) / CS_MM_TCC}, l[2] = {CPU_LOCAL, 1};
            CS_TRY(cs_op_launch_nd(d, "matmul_q8", q8_extra(d), name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen));
        }
    }
    return CLSPEC_OK;
}

int cs_op_matmul_q8_qkv(struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                        const struct cs_weight *wv, cl_mem q, size_t q_off, cl_mem k, size_t k_off, cl_mem v,
                        size_t v_off, char *err, size_t errlen)
{
    const char *t = q8_kname(wq);
    if (!t || wq->n_parts != 1 || wk->n_parts != 1 || wv->n_parts != 1 || !d->q8_buf)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_q8_qkv: weights or quantized input unfit");
    if (q_off + wq->n_out > UINT32_MAX || k_off + wk->n_out > UINT32_MAX || v_off + wv->n_out > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_q8_qkv: offsets exceed 32 bits");
    size_t d_off;
    cs_q8_bytes(wq->n_in, 1, &d_off);
    char name[32];
    snprintf(name, sizeof name, "mvq3_%s", t);
    const cl_uint rb = (cl_uint)wq->row_bytes, n_in = wq->n_in, nq = wq->n_out, nk = wk->n_out, nv = wv->n_out,
                  dof = (cl_uint)d_off, qo = (cl_uint)q_off, ko = (cl_uint)k_off, vo = (cl_uint)v_off;
    const struct cs_karg a[] = {CS_KA(wq->parts[0].buf), CS_KA(wk->parts[0].buf), CS_KA(wv->parts[0].buf),
                                CS_KA(rb), CS_KA(n_in), CS_KA(nq), CS_KA(nk), CS_KA(nv), CS_KA(d->q8_buf),
                                CS_KA(dof), CS_KA(q), CS_KA(qo), CS_KA(k), CS_KA(ko), CS_KA(v), CS_KA(vo)};
    const size_t items = (nq + 1) / 2 + (nk + 1) / 2 + (nv + 1) / 2; /* CS_MV_ROWS rows each */
    return cs_op_launch(d, "matmul_q8", q8_extra(d), name, a, CS_ARRAY_LEN(a), items, CPU_LOCAL, err, errlen);
}

int cs_op_matmul_q8_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem out,
                           size_t out_off, char *err, size_t errlen)
{
    const char *t = q8_kname(wg);
    if (!t || wg->n_parts != 1 || wu->n_parts != 1 || !d->q8_buf)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_q8_swiglu: weights or quantized input unfit");
    if (out_off + wg->n_out > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_q8_swiglu: offsets exceed 32 bits");
    size_t d_off;
    cs_q8_bytes(wg->n_in, 1, &d_off);
    char name[32];
    snprintf(name, sizeof name, "mvqswiglu_%s", t);
    const cl_uint rb = (cl_uint)wg->row_bytes, n_in = wg->n_in, nr = wg->n_out, dof = (cl_uint)d_off,
                  oo = (cl_uint)out_off;
    const struct cs_karg a[] = {CS_KA(wg->parts[0].buf), CS_KA(wu->parts[0].buf), CS_KA(rb), CS_KA(n_in),
                                CS_KA(nr), CS_KA(d->q8_buf), CS_KA(dof), CS_KA(out), CS_KA(oo)};
    return cs_op_launch(d, "matmul_q8", q8_extra(d), name, a, CS_ARRAY_LEN(a), (nr + CS_MV_ROWS - 1) / CS_MV_ROWS,
                        CPU_LOCAL, err, errlen);
}
