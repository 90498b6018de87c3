/* lcpp_family.c: the llama.cpp-numerics kernel family (family.h): the block
 * builder's entries computed as llama.cpp's x86 CPU backend computes them,
 * bit for bit (cl/lcpp.cl via lcpp_ops.c; modelled by src/ref/lcpp_ref.c).
 * What differs from the standard family: Q, K and V as three matmuls; every
 * matmul input rounded the way llama.cpp converts activations for the
 * weight's type, and llama.cpp's kernel picked by its row count (n_logical
 * >= 2: tinyBLAS, else ggml_vec_dot_*); up before gate and a separate SwiGLU;
 * residual add and norm as two launches; RoPE from a host cos/sin table
 * (ggml_rope_cache_init, uploaded by begin); attention through lcpp_attn over
 * the used cells padded to 32 when the cache is f16/f16, else the engine's
 * attention on Q rounded to K's type. Tests only; slow on purpose.
 * Each cs_ops owns its state (struct lc_state): device scratch for the q8_0
 * activation, the attention scores and the RoPE table, and the host table. */
#include "config.h"

#include <stdlib.h>

#include "ops/family.h"
#include "ops/lcpp_ops.h"
#include "ops/matmul_i4.h" /* CS_WLAYOUT_Q6_K_I16 */

#include "base/common.h"
#include "gguf/quant.h"

struct lc_state {
    struct cs_ops_lcpp_params p;
    cl_mem xq;      /* int8 (n_rows, max_in): the q8_0 activation's quants */
    cl_mem xd;      /* f32 (n_rows, max_in / 32 + 1): its block scales */
    cl_mem sc;      /* f32 (n_rows, n_head, n_ctx padded to 32): attention scores */
    cl_mem rope;    /* float2 (n_rows, n_rot / 2 + 1): this pass's cos/sin table */
    float *h_rope;  /* host (n_rows, n_rot + 2): the table before upload */
};

static struct lc_state *st_of(const struct cs_ops *o)
{
    return (struct lc_state *)o->st;
}

static int lc_begin(const struct cs_ops *o, const int32_t *pos, int n, char *err, size_t errlen)
{
    struct lc_state *s = st_of(o);
    const int n_rot = s->p.rope.n_rot;
    if (n > s->p.n_rows)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "lcpp family: %d rows (at most %d)", n, s->p.n_rows);
    for (int t = 0; t < n; t++)
        cs_lcpp_rope_table((uint32_t)n_rot, s->p.rope.freq_base, s->p.rope.freq_scale, pos[t],
                           s->h_rope + (size_t)t * (n_rot / 2) * 2);
    /* blocking: h_rope is rewritten by the next pass */
    return cs_cl_write(o->dev, s->rope, 0, (size_t)n * (n_rot / 2) * 8, s->h_rope, err, errlen);
}

static int lc_rmsnorm(const struct cs_ops *o, cl_mem x, cl_mem w, cl_mem y, int n_rows, int n_cols, float eps,
                      char *err, size_t errlen)
{
    return cs_op_lcpp_rmsnorm(o->dev, x, w, y, n_rows, n_cols, eps, err, errlen);
}

static int lc_add_rmsnorm(const struct cs_ops *o, cl_mem x, cl_mem b, cl_mem w, cl_mem y, int n_rows, int n_cols,
                          float eps, char *err, size_t errlen)
{
    CS_TRY(cs_op_add(o->dev, b, 0, x, 0, x, 0, (size_t)n_rows * n_cols, err, errlen));
    return cs_op_lcpp_rmsnorm(o->dev, x, w, y, n_rows, n_cols, eps, err, errlen);
}

/* y = x . W^T as llama.cpp computes it: cl/lcpp.cl for the types it models,
 * else the engine's matmul on the input rounded for W's type. */
static int lc_matmul(const struct cs_ops *o, const struct cs_weight *w, cl_mem x, cl_mem y, int n, int n_logical,
                     char *err, size_t errlen)
{
    const struct lc_state *s = st_of(o);
    if (w->layout == CS_WLAYOUT_I8 || w->layout == CS_WLAYOUT_Q6_K_I16) /* quantizes x again: not llama.cpp's */
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "llamacpp numerics: a %s weight was uploaded in the "
                      "integer layout (load the model with CLSPEC_INTDOT=0 or through an engine opened for "
                      "llamacpp numerics)", cs_type_name(w->type));
    if (cs_op_lcpp_matmul_ok(w))
        return cs_op_lcpp_matmul(o->dev, w, x, y, n, n_logical >= 2, s->xq, s->xd, err, errlen);
    CS_TRY(cs_op_round_rows(o->dev, w->type, x, 0, n, (int)w->n_in, err, errlen));
    return cs_op_matmul(o->dev, w, x, 0, y, 0, (uint32_t)n, err, errlen);
}

static int lc_matmul_qkv(const struct cs_ops *o, const struct cs_weight *wq, const struct cs_weight *wk,
                         const struct cs_weight *wv, cl_mem x, cl_mem q, cl_mem k, cl_mem v, int n, int n_logical,
                         char *err, size_t errlen)
{
    if (wq)
        CS_TRY(lc_matmul(o, wq, x, q, n, n_logical, err, errlen));
    CS_TRY(lc_matmul(o, wk, x, k, n, n_logical, err, errlen));
    return lc_matmul(o, wv, x, v, n, n_logical, err, errlen);
}

static int lc_matmul_swiglu(const struct cs_ops *o, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem x,
                            cl_mem tmp, cl_mem out, int n, int n_logical, char *err, size_t errlen)
{
    CS_TRY(lc_matmul(o, wu, x, tmp, n, n_logical, err, errlen)); /* up first, as llama.cpp's graph */
    CS_TRY(lc_matmul(o, wg, x, out, n, n_logical, err, errlen));
    return cs_op_lcpp_swiglu(o->dev, out, tmp, n, (int)wg->n_out, err, errlen);
}

static int lc_rope_qk(const struct cs_ops *o, cl_mem q, cl_mem k, cl_mem pos, int n, int n_head, int n_head_kv,
                      int head_dim, const struct cs_rope_params *p, char *err, size_t errlen)
{
    (void)pos; /* the table uploaded by lc_begin holds the rows' positions */
    const struct lc_state *s = st_of(o);
    if (q)
        CS_TRY(cs_op_lcpp_rope(o->dev, q, 0, s->rope, n, n_head, head_dim, p->n_rot, p->neox, err, errlen));
    return cs_op_lcpp_rope(o->dev, k, 0, s->rope, n, n_head_kv, head_dim, p->n_rot, p->neox, err, errlen);
}

static int lc_attention(const struct cs_ops *o, const struct cs_kv_view *kv, int n_cells_used, cl_mem q, cl_mem out,
                        cl_mem pos, cl_mem seq, int n, int n_head, bool causal, float scale, char *err,
                        size_t errlen)
{
    const struct lc_state *s = st_of(o);
    if (causal && kv->type_k == CS_TYPE_F16 && kv->type_v == CS_TYPE_F16) {
        /* llama.cpp attends over its used cells padded to 32 (its cache is larger) */
        const int n_kv = (n_cells_used + 31) / 32 * 32;
        return cs_op_lcpp_attention(o->dev, kv, q, out, pos, seq, n, n_head, n_kv, n >= 2, scale, s->sc, err,
                                    errlen);
    }
    CS_TRY(cs_op_round_rows(o->dev, kv->type_k, q, 0, n, n_head * kv->head_dim, err, errlen));
    return cs_op_attention(o->dev, kv, n_cells_used, q, 0, out, 0, pos, seq, n, n_head, causal, scale, err, errlen);
}

static void lc_free(struct cs_ops *o)
{
    struct lc_state *s = st_of(o);
    if (!s)
        return;
    cl_mem *b[] = {&s->xq, &s->xd, &s->sc, &s->rope};
    for (size_t i = 0; i < CS_ARRAY_LEN(b); i++)
        cs_cl_release(b[i]);
    free(s->h_rope);
    free(s);
}

static const struct cs_op_family lcpp_family = {
    .name = "lcpp",
    .begin = lc_begin,
    .rmsnorm = lc_rmsnorm,
    .add_rmsnorm = lc_add_rmsnorm,
    .matmul = lc_matmul,
    .matmul_qkv = lc_matmul_qkv,
    .matmul_swiglu = lc_matmul_swiglu,
    .rope_qk = lc_rope_qk,
    .attention = lc_attention,
    .free = lc_free,
};

int cs_ops_lcpp_new(struct cs_cl_dev *d, const struct cs_ops_lcpp_params *p, struct cs_ops *out, char *err,
                    size_t errlen)
{
    *out = (struct cs_ops){.f = &lcpp_family, .dev = d, .st = NULL};
    if (p->n_rows <= 0 || p->max_in <= 0 || p->n_head <= 0 || p->n_ctx <= 0 || p->rope.n_rot <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "lcpp family: rows %d, max_in %d, heads %d, n_ctx %d, n_rot %d",
                      p->n_rows, p->max_in, p->n_head, p->n_ctx, p->rope.n_rot);
    struct lc_state *s = calloc(1, sizeof *s);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp family: out of memory");
    out->st = s;
    s->p = *p;
    const size_t B = (size_t)p->n_rows, MI = (size_t)p->max_in, R = (size_t)p->rope.n_rot;
    s->h_rope = malloc(B * (R + 2) * sizeof(float));
    int rc = s->h_rope ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp family: out of memory");
    struct {
        cl_mem *m;
        size_t bytes;
    } bufs[] = {
        {&s->xq, B * MI},
        {&s->xd, B * (MI / 32 + 1) * 4},
        {&s->sc, B * (size_t)p->n_head * (((size_t)p->n_ctx + 31) / 32 * 32) * 4},
        {&s->rope, B * (R / 2 + 1) * 8},
    };
    for (size_t j = 0; rc == CLSPEC_OK && j < CS_ARRAY_LEN(bufs); j++)
        rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, bufs[j].bytes, NULL, bufs[j].m, err, errlen);
    if (rc < 0)
        cs_ops_free(out);
    return rc;
}
