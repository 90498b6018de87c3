/* matmul_tiled.c: the host side of cl/matmul_tiled.cl (tile sizes and their
 * meaning in src/ops/matmul_tiled.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/kconst.h" /* CS_MM_WG, CS_MM_TC */
#include "base/common.h"
#include "ops/matmul_tiled.h"
#include "ops/ops.h"

/* kernel name suffix of the float types the tiled kernels cover, else NULL */
static const char *tname(const struct cs_weight *w)
{
    if (w->layout != CS_WLAYOUT_GGUF)
        return NULL;
    switch (w->type) {
    case CS_TYPE_F32: return "f32";
    case CS_TYPE_F16: return "f16";
    case CS_TYPE_BF16: return "bf16";
    default: return NULL;
    }
}

void cs_op_matmul_tiled_extra(char *buf, size_t len)
{
    snprintf(buf, len, "-DCS_MT_R=%d -DCS_MT_C=%d -DCS_MT_GR=%d -DCS_MT_GC=%d -DCS_MT_GPU_R=%d", CS_MT_R, CS_MT_C,
             CS_MT_GR, CS_MT_GC, CS_MT_GPU_R);
}

int cs_op_matmul_tiled_prepare(struct cs_cl_dev *d, char *err, size_t errlen)
{
    char extra[128];
    cs_op_matmul_tiled_extra(extra, sizeof extra);
    cl_program p;
    return cs_cl_program(d, "matmul_tiled", extra, &p, err, errlen);
}

static bool switched_off(void)
{
    const char *e = getenv("CLSPEC_MM_TILED");
    return e && !strcmp(e, "0");
}

bool cs_op_matmul_tiled_applies(const struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols)
{
    (void)d;
    return w && tname(w) && n_cols >= CS_MT_MIN_COLS && !switched_off();
}

int cs_op_matmul_tiled_force(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                             size_t y_off, uint32_t n_cols, char *err, size_t errlen)
{
    if (!w || !w->n_parts || !tname(w))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "tiled matmul: weight %s (layout %d) not covered "
                      "(f32, f16, bf16 in the GGUF layout)", w ? cs_type_name(w->type) : "(none)",
                      w ? w->layout : -1);
    if (n_cols == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "tiled matmul: n_cols must be >= 1");
    uint64_t xe, ye;
    if (!cs_mul_ok(n_cols, w->n_in, &xe) || !cs_mul_ok(n_cols, w->n_out, &ye) || x_off + xe > UINT32_MAX ||
        y_off + ye > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "tiled matmul %s %ux%u n_cols=%u: offsets exceed 32 bits",
                      cs_type_name(w->type), w->n_in, w->n_out, n_cols);
    const bool cpu = d->info.family == CS_KFAMILY_CPU;
    if (!cpu && d->info.max_wg < CS_MM_WG)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: work-groups of %d needed, device allows %zu",
                      d->info.name, CS_MM_WG, d->info.max_wg);
    char name[32], extra[128];
    snprintf(name, sizeof name, "%s_%s", cpu ? "mt" : "mtg", tname(w));
    cs_op_matmul_tiled_extra(extra, sizeof extra);
    const cl_uint rb = (cl_uint)w->row_bytes, n_in = w->n_in, xo = (cl_uint)x_off, nc = n_cols,
                  ystride = w->n_out;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        const struct cs_weight_part *p = &w->parts[i];
        const cl_uint nr = p->n_rows, yo = (cl_uint)(y_off + p->r0);
        const struct cs_karg a[] = {CS_KA(p->buf), CS_KA(rb), CS_KA(n_in), CS_KA(nr), CS_KA(x),
                                    CS_KA(xo),     CS_KA(nc), CS_KA(y),    CS_KA(yo), CS_KA(ystride)};
        if (cpu) { /* groups of CS_MT_GR x CS_MT_GC tiles, one dimension */
            const size_t n_rt = (nr + CS_MT_R - 1) / CS_MT_R, n_ct = (n_cols + CS_MT_C - 1) / CS_MT_C;
            const size_t groups = ((n_rt + CS_MT_GR - 1) / CS_MT_GR) * ((n_ct + CS_MT_GC - 1) / CS_MT_GC);
            const size_t local = (size_t)CS_MT_GR * CS_MT_GC;
            CS_TRY(cs_op_launch(d, "matmul_tiled", extra, name, a, CS_ARRAY_LEN(a), groups * local, local, err,
                                errlen));
        } else {
            const size_t g[2] = {(size_t)(nr + CS_MT_GPU_R - 1) / CS_MT_GPU_R * CS_MM_WG,
                                 (n_cols + CS_MM_TC - 1) / CS_MM_TC};
            const size_t l[2] = {CS_MM_WG, 1};
            CS_TRY(cs_op_launch_nd(d, "matmul_tiled", extra, name, a, CS_ARRAY_LEN(a), 2, g, l, err, errlen));
        }
    }
    return CLSPEC_OK;
}

int cs_op_matmul_tiled(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                       size_t y_off, uint32_t n_cols, bool *done, char *err, size_t errlen)
{
    *done = cs_op_matmul_tiled_applies(d, w, n_cols);
    return *done ? cs_op_matmul_tiled_force(d, w, x, x_off, y, y_off, n_cols, err, errlen) : CLSPEC_OK;
}
