/* matmul_i8.c: CS_WLAYOUT_I8 (the repack at upload) and the host side of
 * cl/matmul_i8.cl (see ops/matmul_i8.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "ops/matmul_i8.h"
#include "ops/matmul_q8.h"
#include "ops/ops.h"
#include "ref/i8_ref.h"

/* columns per work-item of mmi_T (the one definition: -DCS_I8_TC) */
#define I8_TC 8
#define I8_STR_(v) #v
#define I8_STR(v) I8_STR_(v)

bool cs_i8_wants(const struct cs_cl_dev *d, uint32_t type, uint32_t n_in)
{
    /* CLSPEC_INTDOT=1 (d->int8_act) keeps q8_0 on the older pair-order path
     * (src/ops/matmul_q8.h), for comparison */
    return d && (d->int_layouts & CS_INTL_I8) && d->info.family == CS_KFAMILY_CPU && cs_i8_type_ok(type, n_in) &&
           !(d->int8_act && type == CS_TYPE_Q8_0);
}

uint64_t cs_i8_row_bytes(uint32_t type, uint32_t n_in)
{
    /* per 16 rows: q8_0 a float d and 32 bytes per block; q6_K a float d,
     * 16 scale bytes and 256 bytes per super-block */
    if (type == CS_TYPE_Q5_K) /* a float d, dmin, 8 scale and 8 min bytes, 256 bytes per super-block */
        return (uint64_t)n_in / 256 * 280;
    return type == CS_TYPE_Q6_K ? (uint64_t)n_in / 256 * 276 : (uint64_t)n_in / 32 * 36;
}

/* the 16 rows of group (GGUF rows at rows, n of them, rb bytes each) ->
 * one group of the layout at o (see cl/matmul_i8.cl) */
static void repack_group(uint32_t type, uint32_t n_in, const uint8_t *rows, uint32_t n, uint64_t rb, uint8_t *o)
{
    const uint32_t nb = n_in / 32;
    struct cs_i8_blk k;
    for (uint32_t l = 0; l < n; l++) {
        const uint8_t *row = rows + l * rb;
        for (uint32_t b = 0; b < nb; b++) {
            cs_i8_block(type, row, b, &k);
            uint8_t *rec, *steps;
            uint32_t half = b & 1, off[32];
            if (type == CS_TYPE_Q8_0) {
                const bool lone = (nb & 1) && b == nb - 1;
                rec = o + (size_t)(b / 2) * 1152;
                memcpy(rec + 4 * (lone ? l : 16 * half + l), &k.d, 4);
                steps = rec + (lone ? 64 : 128);
                for (uint32_t e = 0; e < 32; e++)
                    off[e] = lone ? e : 32 * (e / 16) + 16 * half + e % 16;
            } else if (type == CS_TYPE_Q5_K) {
                rec = o + (size_t)(b / 8) * 4480;
                const uint32_t bl = b % 8, pp = bl / 2;
                memcpy(rec + 4 * l, &k.d, 4);
                memcpy(rec + 64 + 4 * l, &k.dmin, 4);
                rec[128 + 16 * bl + l] = (uint8_t)k.sc[0];
                rec[256 + 16 * bl + l] = k.m;
                steps = rec + 384 + 1024 * pp;
                for (uint32_t e = 0; e < 32; e++)
                    off[e] = 32 * (e / 16) + 16 * (bl & 1) + e % 16;
            } else {
                rec = o + (size_t)(b / 8) * 4416;
                const uint32_t bl = b % 8, pp = bl / 2;
                memcpy(rec + 4 * l, &k.d, 4);
                for (uint32_t j = 0; j < 2; j++) /* the chunks 2 j + half of pair pp */
                    rec[64 + 16 * (4 * pp + 2 * j + (bl & 1)) + l] = (uint8_t)k.sc[j];
                steps = rec + 320 + 1024 * pp;
                for (uint32_t e = 0; e < 32; e++)
                    off[e] = 32 * (e / 16) + 16 * (bl & 1) + e % 16;
            }
            const int bias = type == CS_TYPE_Q8_0 ? 128 : type == CS_TYPE_Q6_K ? 32 : 0;
            for (uint32_t e = 0; e < 32; e++)
                steps[64 * (off[e] / 4) + 4 * l + off[e] % 4] = (uint8_t)(k.w[e] + bias);
        }
    }
}

void cs_i8_repack(uint32_t type, uint32_t n_in, uint32_t n_rows, const void *src, void *dst)
{
    uint64_t rb = 0;
    cs_row_bytes(type, n_in, &rb);
    const uint64_t gb = 16 * cs_i8_row_bytes(type, n_in);
    const uint32_t ng = (n_rows + 15) / 16;
    memset(dst, 0, ng * gb);
    for (uint32_t g = 0; g < ng; g++)
        repack_group(type, n_in, (const uint8_t *)src + (size_t)g * 16 * rb, CS_MIN(16u, n_rows - 16 * g), rb,
                     (uint8_t *)dst + g * gb);
}

static const char *i8_kname(const struct cs_weight *w)
{
    if (w->layout != CS_WLAYOUT_I8)
        return NULL;
    switch (w->type) {
    case CS_TYPE_Q8_0: return "q8_0";
    case CS_TYPE_Q6_K: return "q6_K";
    case CS_TYPE_Q5_K: return "q5_K";
    default: return NULL;
    }
}

/* the build options of cl/matmul_i8.cl on d (CLSPEC_Q8_VNNI=0: plain int,
 * for tests of the other integer path) */
static const char *i8_opts(const struct cs_cl_dev *d)
{
    const char *e = getenv("CLSPEC_Q8_VNNI");
    const bool vnni = !(e && strcmp(e, "0") == 0) && cs_cl_host_vnni(&d->info);
    return vnni ? "-DCS_I8_TC=" I8_STR(I8_TC) " -DCS_CPU_VNNI=1" : "-DCS_I8_TC=" I8_STR(I8_TC);
}

int cs_op_matmul_i8_prepare(struct cs_cl_dev *d, char *err, size_t errlen)
{
    cl_program p;
    CS_TRY(cs_cl_program(d, "quant", NULL, &p, err, errlen));
    return cs_cl_program(d, "matmul_i8", i8_opts(d), &p, err, errlen);
}

int cs_op_matmul_i8(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                    char *err, size_t errlen)
{
    const char *t = w ? i8_kname(w) : NULL;
    if (!t || !w->n_parts || !d->q8_buf || n_cols == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i8: weight not in the integer layout, no columns "
                      "or no quantized input");
    size_t d_off;
    uint64_t ye;
    if (cs_q8_bytes(w->n_in, n_cols, &d_off) > d->q8_bytes)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "matmul_i8: %u columns of %u not quantized", n_cols, w->n_in);
    if (!cs_mul_ok(n_cols, w->n_out, &ye) || y_off + ye > UINT32_MAX || 16 * w->row_bytes > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "matmul_i8 n_cols=%u: offsets exceed 32 bits", n_cols);
    char name[32];
    snprintf(name, sizeof name, "%s_%s", n_cols == 1 ? "mvi" : "mmi", t);
    const cl_uint rb = (cl_uint)w->row_bytes, n_in = w->n_in, dof = (cl_uint)d_off, nc = n_cols,
                  ystride = w->n_out;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint nr = p->n_rows, yo = (cl_uint)(y_off + p->r0);
        const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(nr), CS_KA(d->q8_buf),
                                    CS_KA(dof),    CS_KA(nc), CS_KA(y),    CS_KA(yo), CS_KA(ystride)};
        const size_t g[2] = {(nr + 15) / 16, (n_cols + I8_TC - 1) / I8_TC}, l[2] = {1, 1};
        CS_TRY(cs_op_launch_nd(d, "matmul_i8", i8_opts(d), name, a, CS_ARRAY_LEN(a), n_cols == 1 ? 1 : 2, g, l,
                               err, errlen));
    }
    return CLSPEC_OK;
}

int cs_op_get_rows_i8(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem ids, size_t ids_off, uint32_t n,
                      cl_mem out, size_t out_off, char *err, size_t errlen)
{
    const char *t = w ? i8_kname(w) : NULL;
    if (!t || !w->n_parts)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "get_rows_i8: weight not in the integer layout");
    if (n == 0)
        return CLSPEC_OK;
    uint64_t oe;
    if (!cs_mul_ok(n, w->n_in, &oe) || out_off + oe > UINT32_MAX || ids_off + n > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "get_rows_i8 n=%u: offsets exceed 32 bits", n);
    char name[32];
    snprintf(name, sizeof name, "getrows_i8_%s", t);
    const cl_uint rb = (cl_uint)w->row_bytes, n_in = w->n_in, n_out = w->n_out, io = (cl_uint)ids_off, nn = n,
                  oo = (cl_uint)out_off;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint r0 = p->r0, nr = p->n_rows;
        const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(r0),  CS_KA(nr), CS_KA(n_out),
                                    CS_KA(ids),    CS_KA(io), CS_KA(nn),   CS_KA(out), CS_KA(oo)};
        const size_t g[2] = {w->n_in / 32, n}, l[2] = {CS_MIN((size_t)w->n_in / 32, (size_t)16), 1};
        CS_TRY(cs_op_launch_nd(d, "matmul_i8", i8_opts(d), name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen));
    }
    return CLSPEC_OK;
}
