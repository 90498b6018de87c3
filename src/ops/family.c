/* family.c: the standard kernel family (see family.h): each entry is the
 * cs_op_* host op of the same name at offset 0, which picks the CPU or GPU
 * kernels by device. Owns nothing. */
#include "config.h"

#include "ops/family.h"

#include "base/common.h"

static int std_rmsnorm(const struct cs_ops *o, cl_mem x, cl_mem w, cl_mem y, int n_rows, int n_cols, float eps,
                       char *err, size_t errlen)
{
    return cs_op_rmsnorm(o->dev, x, 0, w, y, 0, n_rows, n_cols, eps, err, errlen);
}

static int std_add_rmsnorm(const struct cs_ops *o, cl_mem x, cl_mem b, cl_mem w, cl_mem y, int n_rows, int n_cols,
                           float eps, char *err, size_t errlen)
{
    return cs_op_add_rmsnorm(o->dev, x, 0, b, 0, w, y, 0, n_rows, n_cols, eps, err, errlen);
}

static int std_matmul(const struct cs_ops *o, const struct cs_weight *w, cl_mem x, cl_mem y, int n, int n_logical,
                      char *err, size_t errlen)
{
    (void)n_logical;
    return cs_op_matmul(o->dev, w, x, 0, y, 0, (uint32_t)n, err, errlen);
}

static int std_matmul_qkv(const struct cs_ops *o, const struct cs_weight *wq, const struct cs_weight *wk,
                          const struct cs_weight *wv, cl_mem x, cl_mem q, cl_mem k, cl_mem v, int n, int n_logical,
                          char *err, size_t errlen)
{
    (void)n_logical;
    if (wq)
        return cs_op_matmul_qkv(o->dev, wq, wk, wv, x, 0, q, 0, k, 0, v, 0, (uint32_t)n, err, errlen);
    return cs_op_matmul_kv(o->dev, wk, wv, x, 0, k, 0, v, 0, (uint32_t)n, err, errlen);
}

static int std_matmul_swiglu(const struct cs_ops *o, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem x,
                             cl_mem tmp, cl_mem out, int n, int n_logical, char *err, size_t errlen)
{
    (void)n_logical;
    return cs_op_matmul_swiglu(o->dev, wg, wu, x, 0, tmp, out, 0, (uint32_t)n, err, errlen);
}

static int std_rope_qk(const struct cs_ops *o, cl_mem q, cl_mem k, cl_mem pos, int n, int n_head, int n_head_kv,
                       int head_dim, const struct cs_rope_params *p, char *err, size_t errlen)
{
    if (q)
        return cs_op_rope_qk(o->dev, q, 0, k, 0, pos, n, n_head, n_head_kv, head_dim, p, err, errlen);
    return cs_op_rope(o->dev, k, 0, pos, n, n_head_kv, head_dim, p, err, errlen);
}

static int std_attention(const struct cs_ops *o, const struct cs_kv_view *kv, int n_cells_used, cl_mem q, cl_mem out,
                         cl_mem pos, cl_mem seq, int n, int n_head, bool causal, float scale, char *err,
                         size_t errlen)
{
    return cs_op_attention(o->dev, kv, n_cells_used, q, 0, out, 0, pos, seq, n, n_head, causal, scale, err, errlen);
}

static const struct cs_op_family std_family = {
    .name = "std",
    .begin = NULL,
    .rmsnorm = std_rmsnorm,
    .add_rmsnorm = std_add_rmsnorm,
    .matmul = std_matmul,
    .matmul_qkv = std_matmul_qkv,
    .matmul_swiglu = std_matmul_swiglu,
    .rope_qk = std_rope_qk,
    .attention = std_attention,
    .free = NULL,
};

struct cs_ops cs_ops_std(struct cs_cl_dev *d)
{
    return (struct cs_ops){.f = &std_family, .dev = d, .st = NULL};
}

int cs_ops_begin(const struct cs_ops *o, const int32_t *pos, int n, char *err, size_t errlen)
{
    return o->f->begin ? o->f->begin(o, pos, n, err, errlen) : CLSPEC_OK;
}

void cs_ops_free(struct cs_ops *o)
{
    if (o->f && o->f->free)
        o->f->free(o);
    o->st = NULL;
}
