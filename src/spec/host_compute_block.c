/* host_compute_block.c: the compute service's block builder entries
 * (layer_new, layer_free, block_layer, block_kv of struct clspec_host):
 * the engine's one transformer block (src/model/block.h) over a plugin's handles.
 * A clspec_layer keeps the shape and the handles of its tensors (borrowed);
 * each call re-checks that they are still live, checks the KV cache and
 * every activation buffer against the rows and the shape, then builds the
 * block's views (struct cs_fwd_layer, struct cs_blk_act) and calls
 * cs_blk_layer / cs_blk_kv with the standard kernel family of the dev. A
 * layer belongs to its dev's list and is freed with it. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "base/common.h"
#include "model/forward.h"
#include "ops/family.h"
#include "spec/host_compute_impl.h"

struct clspec_layer {
    struct cs_hc_obj o;
    struct clspec_layer_desc t; /* the tensors' handles (borrowed), size = sizeof */
    struct cs_blk_shape s;      /* the engine's form of the shape */
};

static const char *const wt_name[7] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};
static const char *const vec_name[7] = {"attn_norm", "ffn_norm", "bq", "bk", "bv", "q_norm", "k_norm"};

/* The weights and vectors of t in the order of wt_name / vec_name. */
static void tensors(const struct clspec_layer_desc *t, clspec_weight *w[7], const clspec_buf *v[7])
{
    w[0] = t->wq, w[1] = t->wk, w[2] = t->wv, w[3] = t->wo, w[4] = t->w_gate, w[5] = t->w_up, w[6] = t->w_down;
    v[0] = t->attn_norm, v[1] = t->ffn_norm, v[2] = t->bq, v[3] = t->bk, v[4] = t->bv, v[5] = t->q_norm,
    v[6] = t->k_norm;
}

/* Each tensor of t live on *d (and, with s, of s's shape); vectors 2.. may be NULL. */
static int chk_tensors(const struct clspec_layer_desc *t, const struct cs_blk_shape *s, clspec_dev **d, const char *op,
                       char *err, size_t errlen)
{
    clspec_weight *w[7];
    const clspec_buf *v[7];
    tensors(t, w, v);
    if (!s) {
        for (int i = 0; i < 7; i++)
            CS_TRY(cs_hc_chk_wt(w[i], d, op, wt_name[i], err, errlen));
        for (int i = 0; i < 7; i++)
            if (i < 2 || v[i])
                CS_TRY(cs_hc_chk_buf(v[i], d, CLSPEC_BUF_F32, 0, v[i] ? v[i]->n : 0, false, op, vec_name[i], err,
                                     errlen));
        return CLSPEC_OK;
    }
    const uint32_t E = (uint32_t)s->n_embd, D = (uint32_t)s->head_dim, Q = (uint32_t)s->n_head * D,
                   KV = (uint32_t)s->n_head_kv * D, F = (uint32_t)s->n_ff;
    const uint32_t want_in[7] = {E, E, E, Q, E, E, F}, want_out[7] = {Q, KV, KV, E, F, F, E};
    static const char *const dims[7] = {"Q x E", "KV x E", "KV x E", "E x Q", "F x E", "F x E", "E x F"};
    for (int i = 0; i < 7; i++) {
        CS_TRY(cs_hc_chk_wt(w[i], d, op, wt_name[i], err, errlen));
        const struct cs_weight *cw = w[i]->w;
        if (cw->n_in != want_in[i] || cw->n_out != want_out[i])
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "%s: %s: %u rows of %u, the shape wants %u rows of %u (%s)", op, wt_name[i], cw->n_out,
                          cw->n_in, want_out[i], want_in[i], dims[i]);
    }
    const uint32_t want_n[7] = {E, E, Q, KV, KV, D, D};
    for (int i = 0; i < 7; i++) {
        if (i >= 2 && !v[i])
            continue;
        CS_TRY(cs_hc_chk_buf(v[i], d, CLSPEC_BUF_F32, 0, want_n[i], false, op, vec_name[i], err, errlen));
        if (v[i]->n != want_n[i])
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %s: %zu elements, the shape wants %u", op, vec_name[i],
                          v[i]->n, want_n[i]);
    }
    return CLSPEC_OK;
}

static int chk_shape(const struct clspec_block_shape *sh, struct cs_blk_shape *s, char *err, size_t errlen)
{
    const char *op = "layer_new";
    if (!sh)
        return cs_hc_bad(err, errlen, op, "shape", "NULL");
    if (sh->size < sizeof *sh)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: shape: size %u, want %zu (sizeof)", op, sh->size,
                      sizeof *sh);
    const int32_t v[5] = {sh->n_embd, sh->n_head, sh->n_head_kv, sh->head_dim, sh->n_ff};
    static const char *const nm[5] = {"n_embd", "n_head", "n_head_kv", "head_dim", "n_ff"};
    for (int i = 0; i < 5; i++)
        if (v[i] <= 0 || v[i] > (1 << 20))
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: shape: %s = %d (want 1..%d)", op, nm[i], v[i], 1 << 20);
    if (sh->n_head % sh->n_head_kv)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: shape: n_head %d is not a multiple of n_head_kv %d", op,
                      sh->n_head, sh->n_head_kv);
    if (sh->n_rot <= 0 || sh->n_rot % 2 || sh->n_rot > sh->head_dim)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: shape: n_rot %d (want even, 2..head_dim %d)", op, sh->n_rot,
                      sh->head_dim);
    if (!(sh->eps > 0.0f) || !(sh->freq_base > 0.0f) || !(sh->freq_scale > 0.0f))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: shape: eps %g, freq_base %g, freq_scale %g (want > 0)", op,
                      (double)sh->eps, (double)sh->freq_base, (double)sh->freq_scale);
    *s = (struct cs_blk_shape){.n_embd = sh->n_embd, .n_head = sh->n_head, .n_head_kv = sh->n_head_kv,
                               .head_dim = sh->head_dim, .n_ff = sh->n_ff, .eps = sh->eps,
                               .rope = {.n_rot = sh->n_rot, .neox = sh->neox != 0, .freq_base = sh->freq_base,
                                        .freq_scale = sh->freq_scale}};
    return CLSPEC_OK;
}

static int layer_new(clspec_dev *d, const struct clspec_layer_desc *desc, const struct clspec_block_shape *shape,
                     clspec_layer **out, char *err, size_t errlen)
{
    const char *op = "layer_new";
    if (!out)
        return cs_hc_bad(err, errlen, op, "out", "NULL");
    *out = NULL;
    if (!d || d->magic != MAGIC_DEV)
        return cs_hc_bad(err, errlen, op, "dev", d ? "not a device handle" : "NULL device");
    if (!desc)
        return cs_hc_bad(err, errlen, op, "desc", "NULL");
    if (desc->size < sizeof *desc)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: desc: size %u, want %zu (sizeof)", op, desc->size,
                      sizeof *desc);
    struct cs_blk_shape s;
    CS_TRY(chk_shape(shape, &s, err, errlen));
    clspec_dev *dd = d;
    CS_TRY(chk_tensors(desc, &s, &dd, op, err, errlen));
    clspec_layer *l = calloc(1, sizeof *l);
    if (!l)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", op);
    l->t = *desc;
    l->t.size = sizeof l->t;
    l->s = s;
    cs_hc_obj_link(d, &l->o, MAGIC_LAYER);
    *out = l;
    return CLSPEC_OK;
}

void cs_hc_layer_free(clspec_layer *l)
{
    if (!l || l->o.magic != MAGIC_LAYER)
        return;
    cs_hc_obj_unlink(&l->o);
    free(l);
}

/* The live layer l, its tensors still live on its dev, and kv's layer
 * kv_layer of l's KV heads on that dev; fills the engine's views. */
static int chk_layer(const clspec_layer *l, const clspec_kv *kv, int32_t kv_layer, int32_t n_rows, const char *op,
                     struct cs_fwd_layer *L, struct cs_kv_view *view, char *err, size_t errlen)
{
    if (!l || l->o.magic != MAGIC_LAYER)
        return cs_hc_bad(err, errlen, op, "layer", l ? "not a layer handle" : "NULL layer");
    clspec_dev *d = l->o.dev;
    CS_TRY(chk_tensors(&l->t, NULL, &d, op, err, errlen)); /* shapes checked by layer_new; still live? */
    CS_TRY(cs_hc_chk_kv(kv, kv_layer, op, err, errlen));
    CS_TRY(cs_hc_kv_ready(kv, err, errlen));
    if (kv->o.dev != l->o.dev)
        return cs_hc_bad(err, errlen, op, "kv", "a KV cache of another device queue");
    if (kv->kv->n_kv_head != (uint32_t)l->s.n_head_kv || kv->kv->head_dim != (uint32_t)l->s.head_dim)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: kv: %u heads of %u, the layer has %d of %d", op,
                      kv->kv->n_kv_head, kv->kv->head_dim, l->s.n_head_kv, l->s.head_dim);
    CS_TRY(cs_hc_chk_rows(n_rows, op, err, errlen));
    const struct clspec_layer_desc *t = &l->t;
    *L = (struct cs_fwd_layer){.wq = *t->wq->w, .wk = *t->wk->w, .wv = *t->wv->w, .wo = *t->wo->w,
                               .w_gate = *t->w_gate->w, .w_up = *t->w_up->w, .w_down = *t->w_down->w,
                               .attn_norm = t->attn_norm->m, .ffn_norm = t->ffn_norm->m,
                               .bq = t->bq ? t->bq->m : NULL, .bk = t->bk ? t->bk->m : NULL,
                               .bv = t->bv ? t->bv->m : NULL, .q_norm = t->q_norm ? t->q_norm->m : NULL,
                               .k_norm = t->k_norm ? t->k_norm->m : NULL};
    *view = cs_kv_layer_view(kv->kv, (uint32_t)kv_layer);
    return CLSPEC_OK;
}

/* act's buffers against n rows of s: live, on l's dev, of their type and
 * length (xb: max(E, Q), E for kv_only), the f32 ones written by the block pairwise distinct; kv_only:
 * just what cs_blk_kv uses (xb, kc, vc, pos, cell). Fills a. */
static int chk_act(const clspec_layer *l, const struct clspec_block_act *act, int32_t n_rows, bool kv_only,
                   const char *op, struct cs_blk_act *a, char *err, size_t errlen)
{
    if (!act)
        return cs_hc_bad(err, errlen, op, "act", "NULL");
    if (act->size < sizeof *act)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: act: size %u, want %zu (sizeof)", op, act->size,
                      sizeof *act);
    const struct cs_blk_shape *s = &l->s;
    const size_t n = (size_t)n_rows, E = (size_t)s->n_embd, Q = (size_t)s->n_head * s->head_dim,
                 KV = (size_t)s->n_head_kv * s->head_dim, F = (size_t)s->n_ff;
    const clspec_buf *b[11] = {act->x,  act->xb,  act->q,   act->att, act->kc,  act->vc,
                               act->hb, act->hb2, act->pos, act->seq, act->cell};
    static const char *const nm[11] = {"x", "xb", "q", "att", "kc", "vc", "hb", "hb2", "pos", "seq", "cell"};
    const size_t len[11] = {E, kv_only || E > Q ? E : Q, Q, Q, KV, KV, F, F, 1, 1, 1};
    static const bool used_kv[11] = {false, true, false, false, true, true, false, false, true, false, true};
    clspec_dev *d = l->o.dev;
    for (int i = 0; i < 11; i++) {
        if (kv_only && !used_kv[i])
            continue;
        const bool f32 = i < 8;
        CS_TRY(cs_hc_chk_buf(b[i], &d, f32 ? CLSPEC_BUF_F32 : CLSPEC_BUF_I32, 0, n * len[i], f32, op, nm[i], err,
                             errlen));
        for (int j = 0; f32 && j < i; j++)
            if (b[j] == b[i] && !(kv_only && !used_kv[j]))
                return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: act: %s and %s are the same buffer", op, nm[j],
                              nm[i]);
    }
    struct cs_blk_act z = {0};
    z.xb = act->xb->m, z.kc = act->kc->m, z.vc = act->vc->m, z.pos = act->pos->m, z.cell = act->cell->m;
    if (!kv_only)
        z.x = act->x->m, z.q = act->q->m, z.att = act->att->m, z.hb = act->hb->m, z.hb2 = act->hb2->m,
        z.seq = act->seq->m;
    *a = z;
    return CLSPEC_OK;
}

static int block_layer(const clspec_layer *l, clspec_kv *kv, int32_t kv_layer, const struct clspec_block_act *act,
                       int32_t n_rows, const struct clspec_block_opt *opt, char *err, size_t errlen)
{
    const char *op = "block_layer";
    struct cs_fwd_layer L;
    struct cs_kv_view view;
    struct cs_blk_act a;
    CS_TRY(chk_layer(l, kv, kv_layer, n_rows, op, &L, &view, err, errlen));
    CS_TRY(chk_act(l, act, n_rows, false, op, &a, err, errlen));
    if (!opt)
        return cs_hc_bad(err, errlen, op, "opt", "NULL");
    if (opt->size < sizeof *opt)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: opt: size %u, want %zu (sizeof)", op, opt->size,
                      sizeof *opt);
    const uint32_t n_ctx = kv->kv->p.n_ctx;
    if (opt->n_cells_used > 0 && (uint32_t)opt->n_cells_used > n_ctx)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: opt: n_cells_used %d beyond the cache's %u cells", op,
                      opt->n_cells_used, n_ctx);
    cl_mem next = NULL;
    if (opt->next_norm) {
        clspec_dev *d = l->o.dev;
        CS_TRY(cs_hc_chk_buf(opt->next_norm, &d, CLSPEC_BUF_F32, 0, (size_t)l->s.n_embd, false, op, "next_norm",
                             err, errlen));
        next = opt->next_norm->m;
    }
    const struct cs_blk_opt o = {.normed = opt->normed != 0, .causal = opt->causal != 0,
                                 .n_cells_used = opt->n_cells_used > 0 ? opt->n_cells_used : (int)kv->kv->hi,
                                 .next_norm = next, .ffn_rows = n_rows};
    const struct cs_ops ops = cs_ops_std(l->o.dev->d);
    return cs_blk_layer(&ops, &l->s, &L, &view, &a, n_rows, &o, err, errlen);
}

static int block_kv(const clspec_layer *l, clspec_kv *kv, int32_t kv_layer, const struct clspec_block_act *act,
                    int32_t n_rows, char *err, size_t errlen)
{
    const char *op = "block_kv";
    struct cs_fwd_layer L;
    struct cs_kv_view view;
    struct cs_blk_act a;
    CS_TRY(chk_layer(l, kv, kv_layer, n_rows, op, &L, &view, err, errlen));
    CS_TRY(chk_act(l, act, n_rows, true, op, &a, err, errlen));
    const struct cs_ops ops = cs_ops_std(l->o.dev->d);
    return cs_blk_kv(&ops, &l->s, &L, &view, &a, n_rows, err, errlen);
}

void cs_hc_block_entries(struct clspec_host *h)
{
    h->layer_new = layer_new;
    h->layer_free = cs_hc_layer_free;
    h->block_layer = block_layer;
    h->block_kv = block_kv;
}
