/* matmul_i4.c: the i4 layouts at upload and the host side of
 * cl/matmul_i4.cl (see ops/matmul_i4.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ops/matmul_i4.h"
#include "ops/matmul_q8.h"
#include "ops/ops.h"
#include "ref/i8_ref.h"

#define I4_LOCAL 4 /* work-items (groups of 16 rows) per work-group */

int cs_i4_layout(const struct cs_cl_dev *d, uint32_t type, uint32_t n_in, uint64_t *row_bytes)
{
    if (!d || d->info.family != CS_KFAMILY_CPU || !(d->int_layouts & CS_INTL_I4)) /* cs_cl_int_layouts */
        return -1;
    if (type == CS_TYPE_Q4_0 && n_in % 32 == 0) {
        *row_bytes = (uint64_t)n_in / 32 * 18;
        return CS_WLAYOUT_Q4_0_I16;
    }
    if (type == CS_TYPE_Q4_K && n_in % 256 == 0) {
        *row_bytes = (uint64_t)n_in / 256 * 148;
        return CS_WLAYOUT_Q4_K_I16;
    }
    const char *q6 = getenv("CLSPEC_Q6K");
    if (type == CS_TYPE_Q6_K && n_in % 256 == 0 && !(q6 && strcmp(q6, "i8") == 0)) {
        *row_bytes = (uint64_t)n_in / 256 * 212;
        return CS_WLAYOUT_Q6_K_I16;
    }
    return -1;
}

bool cs_i4_layout_is(int layout)
{
    return layout == CS_WLAYOUT_Q4_0_I16 || layout == CS_WLAYOUT_Q4_K_I16 || layout == CS_WLAYOUT_Q6_K_I16;
}

uint64_t cs_i4_part_bytes(uint32_t n_rows, uint64_t row_bytes)
{
    return ((uint64_t)n_rows + 15) / 16 * 16 * row_bytes;
}

/* one group (up to 16 GGUF rows of nb blocks of 18 bytes) -> q4_0i */
static void repack_q4_0_group(const unsigned char *src, uint32_t rows, uint32_t nb, unsigned char *dst)
{
    for (uint32_t b = 0; b < nb; b++, dst += 288)
        for (uint32_t j = 0; j < rows; j++) {
            const unsigned char *blk = src + ((size_t)j * nb + b) * 18;
            memcpy(dst + 2 * j, blk, 2); /* half d */
            for (int v = 0; v < 4; v++) /* byte 4v+i of q: element 4v+i low, 16+4v+i high: as it is */
                memcpy(dst + 32 + 64 * v + 4 * j, blk + 2 + 4 * v, 4);
        }
}

/* one group (up to 16 GGUF rows of nsb super-blocks of 144 bytes) -> q4_Ki */
static void repack_q4_K_group(const unsigned char *src, uint32_t rows, uint32_t nsb, unsigned char *dst)
{
    for (uint32_t s = 0; s < nsb; s++, dst += 2368)
        for (uint32_t j = 0; j < rows; j++) {
            const unsigned char *blk = src + ((size_t)j * nsb + s) * 144;
            memcpy(dst + 2 * j, blk, 2);          /* half d */
            memcpy(dst + 32 + 2 * j, blk + 2, 2); /* half dmin */
            for (int u = 0; u < 8; u++) {
                cs_k4_scale_min(u, blk + 4, dst + 64 + 16 * u + j, dst + 192 + 16 * u + j);
                const unsigned char *q = blk + 16 + 32 * (u / 2); /* nibble u % 2 of q[l]: element l */
                const int sh = 4 * (u % 2);
                unsigned char *o = dst + 320 + 256 * u + 4 * j;
                for (int v = 0; v < 4; v++)
                    for (int i = 0; i < 4; i++) {
                        const int l = 4 * v + i;
                        o[64 * v + i] = (unsigned char)(((q[l] >> sh) & 15) | (((q[l + 16] >> sh) & 15) << 4));
                    }
            }
        }
}

/* one group (up to 16 GGUF rows of nsb super-blocks of 210 bytes) -> q6_Ki
 * (dst zeroed: the high bits are or-ed in) */
static void repack_q6_K_group(const unsigned char *src, uint32_t rows, uint32_t nsb, unsigned char *dst)
{
    for (uint32_t s = 0; s < nsb; s++, dst += 3392)
        for (uint32_t j = 0; j < rows; j++) {
            const unsigned char *row = src + (size_t)j * nsb * 210;
            for (uint32_t u = 0; u < 8; u++) {
                struct cs_i8_blk k; /* w = q - 32 */
                cs_i8_block(CS_TYPE_Q6_K, row, 8 * s + u, &k);
                if (u == 0)
                    memcpy(dst + 4 * j, &k.d, 4);
                dst[64 + 16 * (2 * u) + j] = (unsigned char)k.sc[0];
                dst[64 + 16 * (2 * u + 1) + j] = (unsigned char)k.sc[1];
                unsigned char *o = dst + 320 + 384 * u + 4 * j;
                for (int v = 0; v < 4; v++)
                    for (int i = 0; i < 4; i++) {
                        const int l = 4 * v + i, a = k.w[l] + 32, b = k.w[16 + l] + 32;
                        o[64 * v + i] = (unsigned char)((a & 15) | ((b & 15) << 4));
                        o[256 + i] |= (unsigned char)((a >> 4) << ((4 + 2 * v) % 8));
                        o[320 + i] |= (unsigned char)((b >> 4) << ((4 + 2 * v) % 8));
                    }
            }
        }
}

/* GGUF and layout bytes per row of n_in of an i4 layout */
static void i4_row_bytes(int layout, uint32_t n_in, uint64_t *gguf, uint64_t *dev)
{
    const uint64_t nsb = n_in / 256;
    if (layout == CS_WLAYOUT_Q4_K_I16) {
        *gguf = nsb * 144;
        *dev = nsb * 148;
    } else if (layout == CS_WLAYOUT_Q6_K_I16) {
        *gguf = nsb * 210;
        *dev = nsb * 212;
    } else {
        *gguf = *dev = (uint64_t)n_in / 32 * 18;
    }
}

void cs_i4_repack(int layout, const unsigned char *src, uint32_t n_rows, uint32_t n_in, unsigned char *dst)
{
    const bool k = layout == CS_WLAYOUT_Q4_K_I16;
    uint64_t rb, gb;
    i4_row_bytes(layout, n_in, &rb, &gb);
    gb *= 16;
    memset(dst, 0, cs_i4_part_bytes(n_rows, gb / 16));
    for (uint32_t g = 0; 16 * g < n_rows; g++) {
        const uint32_t rows = CS_MIN(16u, n_rows - 16 * g);
        if (layout == CS_WLAYOUT_Q6_K_I16)
            repack_q6_K_group(src + 16 * g * rb, rows, n_in / 256, dst + g * gb);
        else if (k)
            repack_q4_K_group(src + 16 * g * rb, rows, n_in / 256, dst + g * gb);
        else
            repack_q4_0_group(src + 16 * g * rb, rows, n_in / 32, dst + g * gb);
    }
}

bool cs_op_i4_takes(const struct cs_cl_dev *d, const struct cs_weight *w)
{
    return d->info.family == CS_KFAMILY_CPU && w && w->n_parts && cs_i4_layout_is(w->layout);
}

/* the extra build option; for the tests of the other integer forms,
 * CLSPEC_Q8_VNNI=0: not vpdpbusd (as src/ops/matmul_q8.c), =plain: plain
 * int arithmetic, not AVX-512 either */
static const char *i4_extra(const struct cs_cl_dev *d)
{
    const char *e = getenv("CLSPEC_Q8_VNNI");
    if (e && strcmp(e, "plain") == 0)
        return "-DCS_I4_PLAIN=1";
    if (e && strcmp(e, "0") == 0)
        return NULL;
    return cs_cl_host_vnni(&d->info) ? "-DCS_CPU_VNNI=1" : NULL;
}

int cs_op_i4_prepare(struct cs_cl_dev *d, char *err, size_t errlen)
{
    uint64_t rb;
    if (cs_i4_layout(d, CS_TYPE_Q4_0, 32, &rb) < 0)
        return CLSPEC_OK; /* the path is off on d */
    cl_program p;
    CS_TRY(cs_cl_program(d, "quant", NULL, &p, err, errlen));
    return cs_cl_program(d, "matmul_i4", i4_extra(d), &p, err, errlen);
}

/* bytes of the quantized columns then their block sums (ints at *s_off:
 * the blocks', then their first halves', cl/quant.cl) */
static size_t i4_bytes(uint32_t n_in, uint32_t n_cols, size_t *d_off, size_t *s_off)
{
    const size_t q8 = cs_q8_bytes(n_in, n_cols, d_off);
    *s_off = q8;
    return q8 + 2 * (size_t)(n_in / 32) * n_cols * sizeof(int32_t);
}

int cs_op_quant_i4_scratch(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols, char *err,
                           size_t errlen)
{
    size_t d_off, s_off;
    const size_t bytes = i4_bytes(n_in, n_cols, &d_off, &s_off);
    if (bytes > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "quant_i4 %ux%u: offsets exceed 32 bits", n_in, n_cols);
    if (bytes > d->q8_bytes) { /* room for the sums too (cs_op_quant_q8_scratch keeps a larger buffer) */
        size_t want = d->q8_bytes ? d->q8_bytes : 4096;
        while (want < bytes)
            want *= 2;
        if (d->q8_buf)
            clReleaseMemObject(d->q8_buf); /* in-order queue: enqueued kernels keep it alive */
        d->q8_buf = NULL;
        d->q8_bytes = 0;
        CS_TRY(cs_cl_alloc(d, CL_MEM_READ_WRITE, want, NULL, &d->q8_buf, err, errlen));
        d->q8_bytes = want;
    }
    /* the sums in the same launch (q4_0's mvi sums its one column's blocks itself) */
    return cs_op_quant_q8_sums(d, x, x_off, n_in, n_cols, d->q8_buf, s_off, err, errlen);
}

static const char *i4_name(const struct cs_weight *w)
{
    return w->layout == CS_WLAYOUT_Q4_K_I16 ? "q4_Ki" : w->layout == CS_WLAYOUT_Q6_K_I16 ? "q6_Ki" : "q4_0i";
}

int cs_op_matmul_i4_q(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                      char *err, size_t errlen)
{
    if (!cs_op_i4_takes(d, w) || !d->q8_buf || n_cols == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i4: weight not in an i4 layout, no columns or "
                      "quantized input missing");
    size_t d_off, s_off;
    if (i4_bytes(w->n_in, n_cols, &d_off, &s_off) > d->q8_bytes)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i4: %u columns of %u not quantized", n_cols, w->n_in);
    uint64_t ye;
    if (!cs_mul_ok(n_cols, w->n_out, &ye) || y_off + ye > UINT32_MAX || d_off > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_i4 n_cols=%u: offsets exceed 32 bits", n_cols);
    /* columns per work-item: 1 (mvi, one column: each weight row is read once), else the smallest of 2, 4,
     * 8 that covers n_cols (a verification batch reads the weights once), 8 beyond */
    const uint32_t tc = n_cols == 1 ? 1 : n_cols <= 2 ? 2 : n_cols <= 4 ? 4 : 8;
    char name[32];
    if (tc == 1)
        snprintf(name, sizeof name, "mvi_%s", i4_name(w));
    else
        snprintf(name, sizeof name, "mmi%u_%s", tc, i4_name(w));
    const cl_uint nb = w->n_in / 32, dof = (cl_uint)d_off, sof = (cl_uint)s_off, nc = n_cols, ystride = w->n_out;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint nr = p->n_rows, yo = (cl_uint)(y_off + p->r0);
        const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(nb), CS_KA(nr), CS_KA(d->q8_buf), CS_KA(dof),
                                    CS_KA(sof),    CS_KA(nc), CS_KA(y),  CS_KA(yo),        CS_KA(ystride)};
        const size_t groups = (nr + 15) / 16, tiles = (n_cols + tc - 1) / tc;
        /* fixed local sizes: one work-group function per kernel */
        const size_t gv[2] = {groups, 1}, lv[2] = {I4_LOCAL, 1}, gm[2] = {tiles, groups}, lm[2] = {1, 1};
        CS_TRY(cs_op_launch_nd(d, "matmul_i4", i4_extra(d), name, a, CS_ARRAY_LEN(a), 2, tc == 1 ? gv : gm,
                               tc == 1 ? lv : lm, err, errlen));
    }
    return CLSPEC_OK;
}

int cs_op_matmul_i4(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                    size_t y_off, uint32_t n_cols, char *err, size_t errlen)
{
    if (!cs_op_i4_takes(d, w))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i4: weight not in an i4 layout");
    CS_TRY(cs_op_quant_i4_scratch(d, x, x_off, w->n_in, n_cols, err, errlen));
    return cs_op_matmul_i4_q(d, w, n_cols, y, y_off, err, errlen);
}

int cs_op_matmul_i4_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem out,
                           size_t out_off, char *err, size_t errlen)
{
    if (!cs_op_i4_takes(d, wg) || !cs_op_i4_takes(d, wu) || wg->layout != wu->layout || wg->n_in != wu->n_in ||
        wg->n_out != wu->n_out || wg->n_parts != 1 || wu->n_parts != 1 || !d->q8_buf)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i4_swiglu: weights or quantized input unfit");
    size_t d_off, s_off;
    if (i4_bytes(wg->n_in, 1, &d_off, &s_off) > d->q8_bytes || out_off + wg->n_out > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_i4_swiglu: input not quantized or offsets exceed 32 bits");
    char name[32];
    snprintf(name, sizeof name, "mviswiglu_%s", i4_name(wg));
    const cl_uint nb = wg->n_in / 32, nr = wg->n_out, dof = (cl_uint)d_off, oo = (cl_uint)out_off;
    const struct cs_karg a[] = {CS_KA(wg->parts[0].buf), CS_KA(wu->parts[0].buf), CS_KA(nb), CS_KA(nr),
                                CS_KA(d->q8_buf), CS_KA(dof), CS_KA(out), CS_KA(oo)};
    return cs_op_launch(d, "matmul_i4", i4_extra(d), name, a, CS_ARRAY_LEN(a), (nr + 15) / 16, I4_LOCAL, err,
                        errlen);
}

bool cs_op_i4_qkv_fits(const struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                       const struct cs_weight *wv)
{
    if (!cs_op_i4_takes(d, wq) || !cs_op_i4_takes(d, wk) || !cs_op_i4_takes(d, wv) || wq->layout != wk->layout ||
        wq->n_in != wk->n_in || wq->n_in != wv->n_in || wq->n_parts != 1 || wk->n_parts != 1 || wv->n_parts != 1)
        return false;
    /* V of another layout: the pairs cl/matmul_i4.cl has a kernel for (Q4_K_M: q6_K V on half the layers) */
    return wv->layout == wq->layout || (wq->layout == CS_WLAYOUT_Q4_K_I16 && wv->layout == CS_WLAYOUT_Q6_K_I16);
}

int cs_op_matmul_i4_qkv(struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                        const struct cs_weight *wv, cl_mem q, size_t q_off, cl_mem k, size_t k_off, cl_mem v,
                        size_t v_off, char *err, size_t errlen)
{
    if (!cs_op_i4_qkv_fits(d, wq, wk, wv) || !d->q8_buf)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i4_qkv: weights or quantized input unfit");
    size_t d_off, s_off;
    if (i4_bytes(wq->n_in, 1, &d_off, &s_off) > d->q8_bytes || q_off + wq->n_out > UINT32_MAX ||
        k_off + wk->n_out > UINT32_MAX || v_off + wv->n_out > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_i4_qkv: input not quantized or offsets exceed 32 bits");
    char name[32];
    if (wv->layout == wq->layout)
        snprintf(name, sizeof name, "mvi3_%s", i4_name(wq));
    else
        snprintf(name, sizeof name, "mvi3_%s_%s", i4_name(wq), i4_name(wv));
    const cl_uint nb = wq->n_in / 32, nq = wq->n_out, nk = wk->n_out, nv = wv->n_out, dof = (cl_uint)d_off,
                  qo = (cl_uint)q_off, ko = (cl_uint)k_off, vo = (cl_uint)v_off;
    const struct cs_karg a[] = {CS_KA(wq->parts[0].buf), CS_KA(wk->parts[0].buf), CS_KA(wv->parts[0].buf),
                                CS_KA(nb), CS_KA(nq), CS_KA(nk), CS_KA(nv), CS_KA(d->q8_buf), CS_KA(dof),
                                CS_KA(q), CS_KA(qo), CS_KA(k), CS_KA(ko), CS_KA(v), CS_KA(vo)};
    const size_t groups = (nq + 15) / 16 + (nk + 15) / 16 + (nv + 15) / 16;
    return cs_op_launch(d, "matmul_i4", i4_extra(d), name, a, CS_ARRAY_LEN(a), groups, I4_LOCAL, err, errlen);
}

int cs_op_get_rows_i4(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem ids, size_t ids_off, uint32_t n,
                      cl_mem out, size_t out_off, char *err, size_t errlen)
{
    if (!cs_op_i4_takes(d, w))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "get_rows_i4: weight not in an i4 layout");
    uint64_t oe;
    if (!cs_mul_ok(n, w->n_in, &oe) || out_off + oe > UINT32_MAX || ids_off + n > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "get_rows_i4 n=%u: offsets exceed 32 bits", n);
    if (n == 0)
        return CLSPEC_OK;
    char name[32];
    snprintf(name, sizeof name, "getrows_%s", i4_name(w));
    const cl_uint n_in = w->n_in, n_out = w->n_out, io = (cl_uint)ids_off, nn = n, oo = (cl_uint)out_off;
    const size_t nb = w->n_in / 32;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint r0 = p->r0, nr = p->n_rows;
        const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(n_in), CS_KA(r0), CS_KA(nr),  CS_KA(n_out),
                                    CS_KA(ids),    CS_KA(io),   CS_KA(nn), CS_KA(out), CS_KA(oo)};
        const size_t g[2] = {nb, n}, l[2] = {CS_MIN(nb, (size_t)16), 1};
        CS_TRY(cs_op_launch_nd(d, "matmul_i4", i4_extra(d), name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen));
    }
    return CLSPEC_OK;
}
