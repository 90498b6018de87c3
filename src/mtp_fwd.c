/* mtp_fwd.c: see mtp_fwd.h. One decode: inputs -> embedding gather (E) ->
 * the two RMSNorms -> the concat (a rectangular buffer copy puts each half
 * into its columns) -> eh_proj -> the llama block (block.c; per-head q_norm /
 * k_norm when the file has them) on the head's own KV -> h' read back -> shared_head_norm and the output matmul on the
 * rows asked for -> one blocking read. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "mtp_fwd.h"
#include "block.h"
#include "quant.h"

/* Finds name with n_dims 1 (ne0) or 2 (ne0, ne1). required = false: absent -> NULL. */
static int find(const struct cs_gguf *g, const char *name, uint64_t ne0, uint64_t ne1, bool required,
                const struct cs_gguf_tensor **out, char *err, size_t errlen)
{
    const struct cs_gguf_tensor *t = cs_gguf_find_tensor(g, name);
    *out = t;
    if (!t)
        return required ? cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s is missing (an MTP head needs it)",
                                 g->path, name)
                        : CLSPEC_OK;
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s has shape [%llu, %llu], expected [%llu, %llu]",
                      g->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                      (unsigned long long)ne0, (unsigned long long)ne1);
    if (!cs_weight_type_ok(t->type) && ne1 > 1)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: tensor %s: type %s", g->path, name,
                      cs_type_name(t->type));
    return CLSPEC_OK;
}

void cs_mtp_model_free(struct cs_mtp_model *mm)
{
    if (!mm)
        return;
    struct cs_fwd_layer *L = &mm->blk;
    struct cs_weight *w[] = {&L->wq,    &L->wk,        &L->wv,         &L->wo,        &L->w_gate,   &L->w_up,
                             &L->w_down, &mm->eh_proj, &mm->own_embd, &mm->own_out, &mm->copy_embd, &mm->copy_out};
    for (size_t i = 0; i < CS_ARRAY_LEN(w); i++)
        cs_weight_free(w[i]);
    cl_mem *v[] = {&L->attn_norm, &L->ffn_norm, &L->bq,     &L->bk,    &L->bv,
                   &L->q_norm,    &L->k_norm,   &mm->enorm, &mm->hnorm, &mm->head_norm};
    for (size_t i = 0; i < CS_ARRAY_LEN(v); i++)
        cs_cl_release(v[i]);
    cs_gguf_close(mm->g);
    free(mm);
}

/* The device of the target's layer-0 (which = 0) or output (1) weights, or NULL. */
static struct cs_cl_dev *target_dev(const struct cs_fwd_model *tfm, int which)
{
    if (!tfm)
        return NULL;
    return tfm->devs[which == 0 ? tfm->emb_dev : tfm->out_dev];
}

int cs_mtp_model_load(const char *path, struct cs_cl_dev *dev, const struct cs_model *target,
                      const struct cs_fwd_model *tfm, bool own_file, bool target_tensors, struct cs_mtp_model **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    struct cs_mtp_model *mm = calloc(1, sizeof *mm);
    if (!mm)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", path);
    mm->dev = dev;
    int rc = cs_gguf_open(path, &mm->g, err, errlen);
    if (rc == 0)
        rc = cs_hparams_read(mm->g, &mm->hp, err, errlen);
    if (rc < 0)
        goto fail;
    const struct cs_hparams *hp = &mm->hp, *th = &target->hp;
    const struct cs_gguf *g = mm->g;
    uint32_t nextn = hp->n_layer_total - hp->n_layer;
    if (nextn != 1) {
        rc = cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                    "%s: %s.nextn_predict_layers = %u: an MTP head needs exactly one nextn block", path,
                    hp->arch_name, nextn);
        goto fail;
    }
    if (hp->n_embd != th->n_embd || hp->n_vocab != th->n_vocab) {
        rc = cs_err(err, errlen, CLSPEC_E_INVAL,
                    "%s: the MTP head (n_embd %u, n_vocab %u) does not fit the target %s (n_embd %u, n_vocab %u)",
                    path, hp->n_embd, hp->n_vocab, target->gguf->path, th->n_embd, th->n_vocab);
        goto fail;
    }
    mm->hpb = *hp;
    mm->hpb.n_layer = 1;
    mm->hpb.n_layer_total = 1;
    const uint64_t E = hp->n_embd, V = hp->n_vocab, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff;
    const uint32_t b = hp->n_layer;
    const struct cs_gguf_tensor *t[14] = {NULL}, *te = NULL, *to = NULL;
    static const char *const names[14] = {"attn_norm", "attn_q",    "attn_k",   "attn_v",          "attn_output",
                                          "ffn_norm",  "ffn_gate",  "ffn_up",   "ffn_down",        "nextn.eh_proj",
                                          "nextn.enorm", "nextn.hnorm", "nextn.shared_head_norm", "attn_q.bias"};
    const uint64_t sh[14][2] = {{E, 1}, {E, Q}, {E, KV}, {E, KV}, {Q, E}, {E, 1}, {E, F},
                                {E, F}, {F, E}, {2 * E, E}, {E, 1}, {E, 1}, {E, 1}, {Q, 1}};
    char n[128];
    for (int i = 0; i < 14; i++) {
        snprintf(n, sizeof n, "blk.%u.%s%s", b, names[i], i == 13 ? "" : ".weight");
        if ((rc = find(g, n, sh[i][0], sh[i][1], i != 13, &t[i], err, errlen)) < 0)
            goto fail;
    }
    snprintf(n, sizeof n, "blk.%u.nextn.embed_tokens.weight", b);
    if ((rc = find(g, n, E, V, false, &te, err, errlen)) < 0)
        goto fail;
    snprintf(n, sizeof n, "blk.%u.nextn.shared_head_head.weight", b);
    if ((rc = find(g, n, E, V, false, &to, err, errlen)) < 0)
        goto fail;
    struct cs_fwd_layer *L = &mm->blk;
    const struct cs_gguf_tensor *bk = NULL, *bv = NULL;
    snprintf(n, sizeof n, "blk.%u.attn_k.bias", b);
    if ((rc = find(g, n, KV, 1, false, &bk, err, errlen)) < 0)
        goto fail;
    snprintf(n, sizeof n, "blk.%u.attn_v.bias", b);
    if ((rc = find(g, n, KV, 1, false, &bv, err, errlen)) < 0)
        goto fail;
    const struct cs_gguf_tensor *qn = NULL, *kn = NULL; /* per-head q_norm / k_norm (qwen3-style), optional */
    snprintf(n, sizeof n, "blk.%u.attn_q_norm.weight", b);
    if ((rc = find(g, n, hp->head_dim, 1, false, &qn, err, errlen)) < 0)
        goto fail;
    snprintf(n, sizeof n, "blk.%u.attn_k_norm.weight", b);
    if ((rc = find(g, n, hp->head_dim, 1, false, &kn, err, errlen)) < 0)
        goto fail;
    if ((rc = cs_fwd_upload_vec(dev, t[0], &L->attn_norm, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[1], &L->wq, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[2], &L->wk, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[3], &L->wv, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[4], &L->wo, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, t[5], &L->ffn_norm, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[6], &L->w_gate, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[7], &L->w_up, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[8], &L->w_down, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_mat(dev, t[9], &mm->eh_proj, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, t[10], &mm->enorm, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, t[11], &mm->hnorm, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, t[12], &mm->head_norm, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, t[13], &L->bq, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, bk, &L->bk, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, bv, &L->bv, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, qn, &L->q_norm, NULL, err, errlen)) < 0 ||
        (rc = cs_fwd_upload_vec(dev, kn, &L->k_norm, NULL, err, errlen)) < 0)
        goto fail;
    /* embedding and output: the head's own; for the target's own file the target's (borrowed on this
     * device, else copied); else the file's (output tied to token_embd); else the target's when allowed */
    const struct cs_gguf_tensor *fe = cs_gguf_find_tensor(g, "token_embd.weight"), *fo = NULL;
    if ((rc = find(g, "output.weight", E, V, false, &fo, err, errlen)) < 0)
        goto fail;
    if (fe && (rc = find(g, "token_embd.weight", E, V, true, &fe, err, errlen)) < 0)
        goto fail;
    if (te) {
        if ((rc = cs_fwd_upload_mat(dev, te, &mm->own_embd, NULL, err, errlen)) < 0)
            goto fail;
        mm->embd = &mm->own_embd;
    } else if (own_file || (!fe && target_tensors)) {
        if (target_dev(tfm, 0) == dev) {
            mm->embd = &tfm->tok_embd;
            mm->embd_shared = true;
        } else {
            if ((rc = cs_fwd_upload_mat(dev, target->tok_embd, &mm->copy_embd, NULL, err, errlen)) < 0)
                goto fail;
            mm->embd = &mm->copy_embd;
        }
    } else if (fe) {
        if ((rc = cs_fwd_upload_mat(dev, fe, &mm->own_embd, NULL, err, errlen)) < 0)
            goto fail;
        mm->embd = &mm->own_embd;
    } else {
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT,
                    "%s: no token embedding (nextn.embed_tokens or token_embd); load it with the target's tensors",
                    path);
        goto fail;
    }
    if (!to && !own_file && fo)
        to = fo;
    if (!to && !own_file && !target_tensors && fe) /* tied */
        to = fe;
    if (to && to == fe && mm->embd == &mm->own_embd && !te) {
        mm->out = &mm->own_embd; /* tied to the file's own embedding: one upload */
    } else if (to) {
        if ((rc = cs_fwd_upload_mat(dev, to, &mm->own_out, NULL, err, errlen)) < 0)
            goto fail;
        mm->out = &mm->own_out;
    } else if (own_file || target_tensors) {
        if (target_dev(tfm, 1) == dev) {
            mm->out = tfm->output_is_embd ? &tfm->tok_embd : &tfm->output;
            mm->out_shared = true;
        } else {
            if ((rc = cs_fwd_upload_mat(dev, target->output, &mm->copy_out, NULL, err, errlen)) < 0)
                goto fail;
            mm->out = &mm->copy_out;
        }
    } else {
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT,
                    "%s: no output matrix (nextn.shared_head_head, output or token_embd); load it with the target's "
                    "tensors",
                    path);
        goto fail;
    }
    *out = mm;
    return CLSPEC_OK;
fail:
    cs_err_prefix(err, errlen, rc, "MTP head");
    cs_mtp_model_free(mm);
    return rc;
}

/* ---- context ---- */

void cs_mtp_ctx_free(struct cs_mtp_ctx *c)
{
    if (!c)
        return;
    cl_mem *b[] = {&c->x,  &c->xe, &c->xg, &c->cat, &c->xb,     &c->q,   &c->att, &c->kc,  &c->vc,
                   &c->hb, &c->hb2, &c->xo, &c->logits, &c->tok, &c->pos, &c->seq, &c->cell};
    for (size_t i = 0; i < CS_ARRAY_LEN(b); i++)
        cs_cl_release(b[i]);
    cs_kv_free(c->kv);
    cs_batch_free(&c->b);
    free(c->cells);
    free(c->hidden);
    free(c->logits_h);
    free(c);
}

int cs_mtp_ctx_new(struct cs_mtp_model *mm, uint32_t n_ctx, uint32_t n_batch, uint32_t n_seq, uint32_t type_k,
                   uint32_t type_v, struct cs_mtp_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_batch == 0 || n_batch > 4096 || n_seq == 0 || n_seq > CS_MAX_SEQ)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "MTP context: n_batch %u (want 1..4096), n_seq %u (want 1..%d)",
                      n_batch, n_seq, CS_MAX_SEQ);
    struct cs_mtp_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "MTP context: out of memory");
    c->mm = mm;
    c->n_batch = n_batch;
    const struct cs_hparams *hp = &mm->hp;
    const size_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff, V = hp->n_vocab,
                 B = n_batch;
    struct cs_kv_params kp = {.n_ctx = n_ctx, .type_k = type_k, .type_v = type_v, .n_seq_max = n_seq, .unified = true};
    int rc = cs_kv_new(&mm->hpb, &kp, &mm->dev, &c->kv, err, errlen);
    if (rc == 0)
        rc = cs_batch_init(&c->b, (int)n_batch, err, errlen);
    c->cells = malloc(B * sizeof *c->cells);
    c->hidden = malloc(B * E * sizeof *c->hidden);
    c->logits_h = malloc(B * V * sizeof *c->logits_h);
    if (rc == 0 && (!c->cells || !c->hidden || !c->logits_h))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "MTP context: out of memory");
    struct {
        cl_mem *m;
        size_t bytes;
    } bufs[] = {
        {&c->x, B * E * 4},  {&c->xe, B * E * 4},  {&c->xg, B * E * 4},          {&c->cat, B * 2 * E * 4},
        {&c->xb, B * (E > Q ? E : Q) * 4},          {&c->q, B * Q * 4},           {&c->att, B * Q * 4},
        {&c->kc, B * KV * 4}, {&c->vc, B * KV * 4}, {&c->hb, B * F * 4},          {&c->hb2, B * F * 4},
        {&c->xo, B * E * 4},  {&c->logits, B * V * 4}, {&c->tok, B * 4},          {&c->pos, B * 4},
        {&c->seq, B * 4},     {&c->cell, B * 4},
    };
    for (size_t j = 0; rc == 0 && j < CS_ARRAY_LEN(bufs); j++)
        rc = cs_cl_alloc(mm->dev, CL_MEM_READ_WRITE, bufs[j].bytes, NULL, bufs[j].m, err, errlen);
    if (rc < 0) {
        cs_err_prefix(err, errlen, rc, "MTP context (n_ctx %u, n_batch %u) on %s", n_ctx, n_batch,
                      mm->dev->info.name);
        cs_mtp_ctx_free(c);
        return rc;
    }
    *out = c;
    return CLSPEC_OK;
}

/* Copies the n rows (n_embd floats) of src into columns [col, col + E) of cat (rows of 2E). */
static int to_cat(struct cs_mtp_ctx *c, cl_mem src, size_t col, int n, char *err, size_t errlen)
{
    const size_t E = c->mm->hp.n_embd;
    size_t so[3] = {0, 0, 0}, dor[3] = {col * 4, 0, 0}, reg[3] = {E * 4, (size_t)n, 1};
    cl_int e = clEnqueueCopyBufferRect(c->mm->dev->q, src, c->cat, so, dor, reg, E * 4, 0, 2 * E * 4, 0, 0, NULL,
                                       NULL);
    return cs_cl_check(e, "clEnqueueCopyBufferRect(MTP concat)", err, errlen);
}

static int decode(struct cs_mtp_ctx *c, int32_t n, const int32_t *tokens, const float *g, const int32_t *pos,
                  const int32_t *seq, const uint8_t *logits, const struct cs_weight *out_w, char *err, size_t errlen)
{
    const struct cs_mtp_model *mm = c->mm;
    const struct cs_hparams *hp = &mm->hp;
    struct cs_cl_dev *d = mm->dev;
    c->n_rows = c->n_logits = 0;
    if (n <= 0 || (uint32_t)n > c->n_batch)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "MTP decode: %d rows (want 1..%u)", n, c->n_batch);
    if (!tokens || !g || !pos || !seq)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "MTP decode: every row needs a token, a hidden g, a position "
                                                   "and a sequence");
    const int E = (int)hp->n_embd, V = (int)hp->n_vocab;
    const float eps = hp->rms_eps;
    cs_batch_clear(&c->b);
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "MTP decode: token %d (row %d) out of range", tokens[i], i);
        CS_TRY(cs_batch_add(&c->b, tokens[i], pos[i], seq[i], false, err, errlen));
    }
    int seq_rc[CS_MAX_SEQ];
    CS_TRY(cs_kv_place(c->kv, &c->b, c->cells, seq_rc, err, errlen));
    for (int s = 0; s < CS_MAX_SEQ; s++)
        if (seq_rc[s] != CLSPEC_OK) { /* undo the others' placement: all or nothing */
            for (int32_t i = 0; i < n; i++)
                if (c->cells[i] >= 0)
                    cs_kv_seq_rm(c->kv, seq[i], pos[i], pos[i] + 1, err, errlen);
            return cs_err(err, errlen, CLSPEC_E_KV_FULL, "MTP decode: the head's KV cache is full for sequence %d",
                          s);
        }
    CS_TRY(cs_kv_sync(c->kv, true, err, errlen));
    /* non-blocking writes: the sources stay valid until the blocking read at the end (in-order queue) */
    CS_TRY(cs_cl_write_async(d, c->tok, 0, (size_t)n * 4, tokens, err, errlen));
    CS_TRY(cs_cl_write_async(d, c->pos, 0, (size_t)n * 4, pos, err, errlen));
    CS_TRY(cs_cl_write_async(d, c->seq, 0, (size_t)n * 4, seq, err, errlen));
    CS_TRY(cs_cl_write_async(d, c->cell, 0, (size_t)n * 4, c->cells, err, errlen));
    CS_TRY(cs_cl_write_async(d, c->xg, 0, (size_t)n * E * 4, g, err, errlen));
    /* u = eh_proj . concat(rms(E[x]) * enorm, rms(g) * hnorm) */
    CS_TRY(cs_op_get_rows(d, mm->embd, c->tok, 0, (uint32_t)n, c->xe, 0, err, errlen));
    CS_TRY(cs_op_rmsnorm(d, c->xe, 0, mm->enorm, c->xe, 0, n, E, eps, err, errlen));
    CS_TRY(cs_op_rmsnorm(d, c->xg, 0, mm->hnorm, c->xg, 0, n, E, eps, err, errlen));
    CS_TRY(to_cat(c, c->xe, 0, n, err, errlen));
    CS_TRY(to_cat(c, c->xg, (size_t)E, n, err, errlen));
    CS_TRY(cs_op_matmul(d, &mm->eh_proj, c->cat, 0, c->x, 0, (uint32_t)n, err, errlen));
    /* the block, on the head's own KV (block.c) */
    const struct cs_kv_view kv = cs_kv_layer_view(c->kv, 0);
    const struct cs_blk_shape shape = cs_fwd_blk_shape(hp, &c->kv->rope);
    const struct cs_blk_act ba = {.x = c->x, .xb = c->xb, .q = c->q, .att = c->att, .kc = c->kc, .vc = c->vc,
                                  .hb = c->hb, .hb2 = c->hb2, .pos = c->pos, .seq = c->seq, .cell = c->cell};
    const struct cs_blk_opt opt = {.normed = false, .causal = true, .n_cells_used = (int)c->kv->hi,
                                   .next_norm = NULL, .ffn_rows = n};
    const struct cs_ops ops = cs_ops_std(d);
    CS_TRY(cs_blk_layer(&ops, &shape, &mm->blk, &kv, &ba, n, &opt, err, errlen));
    /* the kept rows: shared_head_norm and the output head */
    int n_keep = 0;
    for (int32_t i = 0; i < n; i++) {
        if (logits ? !logits[i] : i != n - 1)
            continue;
        cl_int e = clEnqueueCopyBuffer(d->q, c->x, c->xo, (size_t)i * E * 4, (size_t)n_keep * E * 4, (size_t)E * 4,
                                       0, NULL, NULL);
        CS_TRY(cs_cl_check(e, "clEnqueueCopyBuffer(MTP rows)", err, errlen));
        n_keep++;
    }
    if (n_keep > 0) {
        CS_TRY(cs_op_rmsnorm(d, c->xo, 0, mm->head_norm, c->xo, 0, n_keep, E, eps, err, errlen));
        CS_TRY(cs_op_matmul(d, out_w ? out_w : mm->out, c->xo, 0, c->logits, 0, (uint32_t)n_keep, err, errlen));
    }
    if (n_keep > 0) {
        cl_int e = clEnqueueReadBuffer(d->q, c->x, CL_FALSE, 0, (size_t)n * E * 4, c->hidden, 0, NULL, NULL);
        CS_TRY(cs_cl_check(e, "clEnqueueReadBuffer(MTP hidden)", err, errlen));
        CS_TRY(cs_cl_read(d, c->logits, 0, (size_t)n_keep * V * 4, c->logits_h, err, errlen));
    } else {
        CS_TRY(cs_cl_read(d, c->x, 0, (size_t)n * E * 4, c->hidden, err, errlen));
    }
    c->n_rows = n;
    c->n_logits = n_keep;
    return CLSPEC_OK;
}

int cs_mtp_decode(struct cs_mtp_ctx *c, int32_t n, const int32_t *tokens, const float *g, const int32_t *pos,
                  const int32_t *seq, const uint8_t *logits, const struct cs_weight *out_w, char *err, size_t errlen)
{
    int rc = decode(c, n, tokens, g, pos, seq, logits, out_w, err, errlen);
    if (rc < 0)
        clFinish(c->mm->dev->q); /* no queued write may read the caller's arrays after we return */
    return rc;
}
