/* block.c: the transformer block builder (see block.h). Composes the kernel
 * family's entries (src/ops/family.h) and the family-independent ops (bias,
 * KV store) into the attention sub-block, the FFN sub-block and the
 * K/V-only piece. Owns nothing. */
#include "config.h"

#include <math.h>

#include "model/block.h"

#include "base/common.h"
#include "model/forward.h"

/* The projections' shared tail: biases, per-head norms, RoPE, KV store. q
 * NULL: K and V only (wq, bq, q_norm unused). Assumes the projections into
 * a->kc / a->vc (and q) are enqueued. */
static int qkv_tail(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                    const struct cs_kv_view *kv, const struct cs_blk_act *a, cl_mem q, int n, char *err,
                    size_t errlen)
{
    struct cs_cl_dev *d = o->dev;
    const int D = s->head_dim, Q = s->n_head * D, KV = s->n_head_kv * D;
    if (q && L->bq)
        CS_TRY(cs_op_add_bias(d, q, 0, L->bq, n, Q, err, errlen));
    if (L->bk)
        CS_TRY(cs_op_add_bias(d, a->kc, 0, L->bk, n, KV, err, errlen));
    if (L->bv)
        CS_TRY(cs_op_add_bias(d, a->vc, 0, L->bv, n, KV, err, errlen));
    if (q && L->q_norm)
        CS_TRY(o->f->rmsnorm(o, q, L->q_norm, q, n * s->n_head, D, s->eps, err, errlen));
    if (L->k_norm)
        CS_TRY(o->f->rmsnorm(o, a->kc, L->k_norm, a->kc, n * s->n_head_kv, D, s->eps, err, errlen));
    if (s->rope.n_rot > 0)
        CS_TRY(o->f->rope_qk(o, q, a->kc, a->pos, n, s->n_head, s->n_head_kv, D, &s->rope, err, errlen));
    return cs_op_kv_store(d, kv, a->kc, 0, a->vc, 0, a->cell, n, err, errlen);
}

/* xb = the sub-block's norm of x: RMSNorm * w, or LayerNorm * w + b. */
static int norm(const struct cs_ops *o, const struct cs_blk_shape *s, cl_mem w, cl_mem b, const struct cs_blk_act *a,
                int n, char *err, size_t errlen)
{
    if (s->norm == CS_BLK_LAYERNORM)
        return cs_op_layernorm(o->dev, a->x, 0, w, b, a->xb, 0, n, s->n_embd, s->eps, err, errlen);
    return o->f->rmsnorm(o, a->x, w, a->xb, n, s->n_embd, s->eps, err, errlen);
}

/* x += xb (the sub-block's output), then xb = the next norm of x (w NULL: the add alone). */
static int add_norm(const struct cs_ops *o, const struct cs_blk_shape *s, cl_mem w, cl_mem b,
                    const struct cs_blk_act *a, int n, char *err, size_t errlen)
{
    if (!w || s->norm == CS_BLK_LAYERNORM) {
        CS_TRY(cs_op_add(o->dev, a->x, 0, a->xb, 0, a->x, 0, (size_t)n * s->n_embd, err, errlen));
        return w ? norm(o, s, w, b, a, n, err, errlen) : CLSPEC_OK;
    }
    return o->f->add_rmsnorm(o, a->x, a->xb, w, a->xb, n, s->n_embd, s->eps, err, errlen);
}

int cs_blk_kv(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
              const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, char *err, size_t errlen)
{
    CS_TRY(o->f->matmul_qkv(o, NULL, &L->wk, &L->wv, a->xb, NULL, a->kc, a->vc, n, n, err, errlen));
    return qkv_tail(o, s, L, kv, a, NULL, n, err, errlen);
}

int cs_blk_attn(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt,
                char *err, size_t errlen)
{
    if (!opt->normed)
        CS_TRY(norm(o, s, L->attn_norm, L->attn_norm_b, a, n, err, errlen));
    if (s->attn_gated) { /* [q | gate] per head, split */
        CS_TRY(o->f->matmul_qkv(o, &L->wq, &L->wk, &L->wv, a->xb, a->qg, a->kc, a->vc, n, n, err, errlen));
        CS_TRY(cs_op_dn_qgate_split(o->dev, a->qg, a->q, a->gz, n * s->n_head, s->head_dim, err, errlen));
    } else {
        CS_TRY(o->f->matmul_qkv(o, &L->wq, &L->wk, &L->wv, a->xb, a->q, a->kc, a->vc, n, n, err, errlen));
    }
    CS_TRY(qkv_tail(o, s, L, kv, a, a->q, n, err, errlen));
    CS_TRY(o->f->attention(o, kv, opt->n_cells_used, a->q, a->att, a->pos, a->seq, n, s->n_head, opt->causal,
                           1.0f / sqrtf((float)s->head_dim), err, errlen));
    if (s->attn_gated)
        CS_TRY(cs_op_dn_mul_sigmoid(o->dev, a->att, a->gz, (size_t)n * s->n_head * s->head_dim, err, errlen));
    CS_TRY(o->f->matmul(o, &L->wo, a->att, a->xb, n, n, err, errlen));
    if (L->bo)
        CS_TRY(cs_op_add_bias(o->dev, a->xb, 0, L->bo, n, s->n_embd, err, errlen));
    /* the residual add and the FFN's norm (one launch for RMSNorm, y = b) */
    return add_norm(o, s, L->ffn_norm, L->ffn_norm_b, a, n, err, errlen);
}

int cs_blk_ffn(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
               const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt, char *err, size_t errlen)
{
    const int nf = opt->ffn_rows;
    if (s->ffn == CS_BLK_SWIGLU) {
        CS_TRY(o->f->matmul_swiglu(o, &L->w_gate, &L->w_up, a->xb, a->hb2, a->hb, n, nf, err, errlen));
    } else {
        CS_TRY(o->f->matmul(o, &L->w_up, a->xb, a->hb, n, nf, err, errlen));
        if (L->b_up)
            CS_TRY(cs_op_add_bias(o->dev, a->hb, 0, L->b_up, n, s->n_ff, err, errlen));
        CS_TRY(cs_op_gelu(o->dev, a->hb, 0, (size_t)n * s->n_ff, s->ffn == CS_BLK_QUICK_GELU, err, errlen));
    }
    CS_TRY(o->f->matmul(o, &L->w_down, a->hb, a->xb, n, nf, err, errlen));
    if (L->b_down)
        CS_TRY(cs_op_add_bias(o->dev, a->xb, 0, L->b_down, n, s->n_embd, err, errlen));
    return add_norm(o, s, opt->next_norm, NULL, a, n, err, errlen);
}

int cs_blk_layer_rec(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                     const struct cs_kv_view *kv, const struct cs_kv_rec_view *rv, const struct cs_blk_act *a, int n,
                     const struct cs_blk_opt *opt, char *err, size_t errlen)
{
    if (L->conv1d)
        CS_TRY(cs_blk_deltanet(o, s, L, rv, a, n, opt, err, errlen));
    else
        CS_TRY(cs_blk_attn(o, s, L, kv, a, n, opt, err, errlen));
    return cs_blk_ffn(o, s, L, a, n, opt, err, errlen);
}

int cs_blk_layer(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                 const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt,
                 char *err, size_t errlen)
{
    return cs_blk_layer_rec(o, s, L, kv, NULL, a, n, opt, err, errlen);
}
