/* dflash_fwd.c: see dflash_fwd.h. Every pass ends with the queue finished,
 * so the KV cell metadata (host memory the syncs upload from) can change
 * right after a call returns. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dflash_fwd.h"
#include "block.h"
#include "quant.h"

/* ---- hyper-parameters ---- */

static int get_u32(const struct cs_gguf *g, const char *key, uint32_t *out, uint32_t dflt, bool required, char *err,
                   size_t errlen)
{
    if (!cs_gguf_find(g, key)) {
        if (required)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: missing key %s", g->path, key);
        *out = dflt;
        return CLSPEC_OK;
    }
    return cs_gguf_get_u32(g, key, out, err, errlen);
}

int cs_dflash_hparams_read(const struct cs_gguf *g, struct cs_dflash_hparams *hp, char *err, size_t errlen)
{
    memset(hp, 0, sizeof *hp);
    char arch[32];
    CS_TRY(cs_gguf_get_str(g, "general.architecture", arch, sizeof arch, err, errlen));
    if (strcmp(arch, "dflash") != 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: general.architecture is '%s', not 'dflash'", g->path, arch);
    CS_TRY(get_u32(g, "dflash.block_count", &hp->n_layer, 0, true, err, errlen));
    CS_TRY(get_u32(g, "dflash.embedding_length", &hp->n_embd, 0, true, err, errlen));
    CS_TRY(get_u32(g, "dflash.feed_forward_length", &hp->n_ff, 0, true, err, errlen));
    CS_TRY(get_u32(g, "dflash.attention.head_count", &hp->n_head, 0, true, err, errlen));
    CS_TRY(get_u32(g, "dflash.attention.head_count_kv", &hp->n_head_kv, hp->n_head, false, err, errlen));
    CS_TRY(get_u32(g, "dflash.attention.key_length", &hp->head_dim, hp->n_head ? hp->n_embd / hp->n_head : 0, false,
                   err, errlen));
    CS_TRY(get_u32(g, "dflash.context_length", &hp->n_ctx_train, 0, false, err, errlen));
    CS_TRY(get_u32(g, "dflash.block_size", &hp->block_size, 16, false, err, errlen));
    hp->rms_eps = 1e-6f;
    if (cs_gguf_find(g, "dflash.attention.layer_norm_rms_epsilon"))
        CS_TRY(cs_gguf_get_f32(g, "dflash.attention.layer_norm_rms_epsilon", &hp->rms_eps, err, errlen));
    hp->rope_base = 10000.0f;
    if (cs_gguf_find(g, "dflash.rope.freq_base"))
        CS_TRY(cs_gguf_get_f32(g, "dflash.rope.freq_base", &hp->rope_base, err, errlen));
    hp->causal = false;
    if (cs_gguf_find(g, "dflash.attention.causal"))
        CS_TRY(cs_gguf_get_bool(g, "dflash.attention.causal", &hp->causal, err, errlen));
    uint32_t mask = 0;
    CS_TRY(get_u32(g, "tokenizer.ggml.mask_token_id", &mask, 0, false, err, errlen));
    hp->mask_id = (int32_t)mask;
    const struct cs_gguf_kv *kv = cs_gguf_find(g, "dflash.target_layers");
    if (!kv || kv->type != CS_GGUF_ARRAY)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: missing array key dflash.target_layers", g->path);
    if (kv->arr_type == CS_GGUF_STRING || kv->arr_type == CS_GGUF_F32 || kv->arr_type == CS_GGUF_F64 ||
        kv->arr_n == 0 || kv->arr_n > CS_DFLASH_MAX_TAPS)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: dflash.target_layers: want 1..%d integers", g->path,
                      CS_DFLASH_MAX_TAPS);
    hp->n_taps = (uint32_t)kv->arr_n;
    for (uint32_t i = 0; i < hp->n_taps; i++)
        hp->taps[i] = (int32_t)cs_gguf_arr_int(kv, i);
    if (hp->n_layer == 0 || hp->n_embd == 0 || hp->n_ff == 0 || hp->n_head == 0 || hp->n_head_kv == 0 ||
        hp->n_head % hp->n_head_kv || hp->head_dim == 0 || hp->head_dim % 2 || hp->block_size < 2 ||
        hp->block_size > 256)
        return cs_err(err, errlen, CLSPEC_E_FORMAT,
                      "%s: bad dflash shape (layers %u, embd %u, ff %u, heads %u/%u, head_dim %u, block_size %u)",
                      g->path, hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv, hp->head_dim,
                      hp->block_size);
    return CLSPEC_OK;
}

bool cs_dflash_is_dflash_file(const char *path)
{
    struct cs_gguf *g = NULL;
    char err[256], arch[32] = "";
    if (cs_gguf_open(path, &g, err, sizeof err) < 0)
        return false;
    bool yes = cs_gguf_get_str(g, "general.architecture", arch, sizeof arch, err, sizeof err) == CLSPEC_OK &&
               strcmp(arch, "dflash") == 0;
    cs_gguf_close(g);
    return yes;
}

/* ---- weights ---- */

static const struct cs_gguf_tensor *tensor(const struct cs_gguf *g, const char *name, uint64_t ne0, uint64_t ne1,
                                           char *err, size_t errlen)
{
    const struct cs_gguf_tensor *t = cs_gguf_find_tensor(g, name);
    if (!t) {
        cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: missing tensor %s", g->path, name);
        return NULL;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s has shape [%llu, %llu], want [%llu, %llu]", g->path, name,
               (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)ne0,
               (unsigned long long)ne1);
        return NULL;
    }
    return t;
}

static int up_vec(struct cs_dflash_model *m, const char *name, uint64_t n, cl_mem *out, char *err, size_t errlen)
{
    const struct cs_gguf_tensor *t = tensor(m->gguf, name, n, 1, err, errlen);
    return t ? cs_fwd_upload_vec(m->dev, t, out, NULL, err, errlen) : CLSPEC_E_FORMAT;
}

static int up_mat(struct cs_dflash_model *m, const char *name, uint32_t n_in, uint32_t n_out, struct cs_weight *w,
                  char *err, size_t errlen)
{
    const struct cs_gguf_tensor *t = tensor(m->gguf, name, n_in, n_out, err, errlen);
    return t ? cs_fwd_upload_mat(m->dev, t, w, NULL, err, errlen) : CLSPEC_E_FORMAT;
}

void cs_dflash_model_free(struct cs_dflash_model *m)
{
    if (!m)
        return;
    if (m->layers)
        for (uint32_t i = 0; i < m->hp.n_layer; i++) {
            struct cs_fwd_layer *L = &m->layers[i];
            struct cs_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t j = 0; j < CS_ARRAY_LEN(w); j++)
                cs_weight_free(w[j]);
            cl_mem *v[] = {&L->attn_norm, &L->ffn_norm, &L->q_norm, &L->k_norm};
            for (size_t j = 0; j < CS_ARRAY_LEN(v); j++)
                cs_cl_release(v[j]);
        }
    free(m->layers);
    cs_weight_free(&m->fc);
    cs_weight_free(&m->own_embd);
    cs_cl_release(&m->enc_norm);
    cs_cl_release(&m->out_norm);
    cs_gguf_close(m->gguf);
    free(m);
}

int cs_dflash_model_load(const char *path, const struct cs_fwd_model *target, struct cs_cl_dev *dev,
                         struct cs_dflash_model **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct cs_hparams *thp = &target->model->hp;
    struct cs_cl_dev *emb = target->devs[target->emb_dev], *outd = target->devs[target->out_dev];
    if (outd != dev)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "%s: a dflash drafter borrows the target's output matrix, which is on %s, and must run there, "
                      "not on %s (set the speculator's device to the target's last device, or leave it unset)",
                      path, outd->info.name, dev->info.name);
    struct cs_dflash_model *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", path);
    m->target = target;
    m->dev = dev;
    m->out = target->output_is_embd ? &target->tok_embd : &target->output;
    int rc = CLSPEC_OK;
    if (emb == dev) {
        m->embd = &target->tok_embd;
    } else if (thp->tied_output) { /* the output device holds a copy of token_embd as the output */
        m->embd = &target->output;
    } else { /* token_embd is on another device: a copy here */
        const struct cs_gguf_tensor *t = target->model->tok_embd;
        rc = cs_weight_upload(dev, t->type, (uint32_t)t->ne[0], (uint32_t)t->ne[1], t->data, &m->own_embd, err,
                              errlen);
        m->embd = &m->own_embd;
        if (rc < 0) {
            cs_err_prefix(err, errlen, rc, "%s: the target's token_embd copied to %s", path, dev->info.name);
            goto fail;
        }
    }
    rc = cs_gguf_open(path, &m->gguf, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_dflash_hparams_read(m->gguf, &m->hp, err, errlen);
    if (rc < 0)
        goto fail;
    const struct cs_dflash_hparams *hp = &m->hp;
    if (hp->n_embd != thp->n_embd) {
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "%s: dflash.embedding_length %u != the target's n_embd %u", path,
                    hp->n_embd, thp->n_embd);
        goto fail;
    }
    for (uint32_t i = 0; i < hp->n_taps; i++)
        if (hp->taps[i] < 0 || hp->taps[i] > (int32_t)thp->n_layer) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "%s: dflash.target_layers[%u] = %d outside 0..%u (the target's "
                        "n_layer)", path, i, hp->taps[i], thp->n_layer);
            goto fail;
        }
    if (cs_gguf_find_tensor(m->gguf, "token_embd.weight") || cs_gguf_find_tensor(m->gguf, "output.weight"))
        fprintf(stderr, "%s: has its own token_embd/output; the target's are used (as upstream)\n", path);
    struct cs_hparams *k = &m->khp;
    snprintf(k->arch_name, sizeof k->arch_name, "dflash");
    k->n_vocab = thp->n_vocab;
    k->n_embd = hp->n_embd;
    k->n_layer = k->n_layer_total = hp->n_layer;
    k->n_head = hp->n_head;
    k->n_head_kv = hp->n_head_kv;
    k->head_dim = hp->head_dim;
    k->n_ff = hp->n_ff;
    k->n_rot = hp->head_dim;
    k->rms_eps = hp->rms_eps;
    k->rope_freq_base = hp->rope_base;
    k->rope_freq_scale = 1.0f;
    k->rope_style = CS_ROPE_NEOX;
    k->n_ctx_train = hp->n_ctx_train;
    const uint32_t E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    if ((rc = up_mat(m, "fc.weight", hp->n_taps * E, E, &m->fc, err, errlen)) < 0 ||
        (rc = up_vec(m, "enc.output_norm.weight", E, &m->enc_norm, err, errlen)) < 0 ||
        (rc = up_vec(m, "output_norm.weight", E, &m->out_norm, err, errlen)) < 0)
        goto fail;
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        struct cs_fwd_layer *L = &m->layers[l];
        char n[14][64];
        static const char *const sfx[] = {"attn_norm", "ffn_norm", "attn_q_norm", "attn_k_norm", "attn_q",
                                          "attn_k",    "attn_v",   "attn_output", "ffn_gate",    "ffn_up",
                                          "ffn_down"};
        for (size_t j = 0; j < CS_ARRAY_LEN(sfx); j++)
            snprintf(n[j], sizeof n[j], "blk.%u.%s.weight", l, sfx[j]);
        if ((rc = up_vec(m, n[0], E, &L->attn_norm, err, errlen)) < 0 ||
            (rc = up_vec(m, n[1], E, &L->ffn_norm, err, errlen)) < 0 ||
            (rc = up_vec(m, n[2], hp->head_dim, &L->q_norm, err, errlen)) < 0 ||
            (rc = up_vec(m, n[3], hp->head_dim, &L->k_norm, err, errlen)) < 0 ||
            (rc = up_mat(m, n[4], E, Q, &L->wq, err, errlen)) < 0 ||
            (rc = up_mat(m, n[5], E, KV, &L->wk, err, errlen)) < 0 ||
            (rc = up_mat(m, n[6], E, KV, &L->wv, err, errlen)) < 0 ||
            (rc = up_mat(m, n[7], Q, E, &L->wo, err, errlen)) < 0 ||
            (rc = up_mat(m, n[8], E, F, &L->w_gate, err, errlen)) < 0 ||
            (rc = up_mat(m, n[9], E, F, &L->w_up, err, errlen)) < 0 ||
            (rc = up_mat(m, n[10], F, E, &L->w_down, err, errlen)) < 0)
            goto fail;
    }
    *out = m;
    return CLSPEC_OK;
fail:
    cs_dflash_model_free(m);
    return rc;
}

/* ---- context ---- */

void cs_dflash_ctx_free(struct cs_dflash_ctx *c)
{
    if (!c)
        return;
    cl_mem *b[] = {&c->x,   &c->xb,  &c->q,   &c->att,  &c->kc,   &c->vc,     &c->hb,  &c->hb2,
                   &c->tok, &c->pos, &c->seq, &c->cell, &c->ipos, &c->icell, &c->logits};
    for (size_t i = 0; i < CS_ARRAY_LEN(b); i++)
        cs_cl_release(b[i]);
    cs_kv_free(c->kv);
    cs_batch_free(&c->b);
    free(c->h_feat);
    free(c->cells);
    free(c->idx);
    free(c->q_seq);
    free(c->q_pos);
    free(c);
}

int cs_dflash_ctx_new(struct cs_dflash_model *m, const struct cs_dflash_ctx_params *p, struct cs_dflash_ctx **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    const struct cs_dflash_hparams *hp = &m->hp;
    if (p->n_ctx == 0 || p->n_batch == 0 || p->n_batch > 65536 || p->n_seq == 0 || p->n_seq > CS_MAX_SEQ)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "dflash context: n_ctx %u, n_batch %u, n_seq %u out of range",
                      p->n_ctx, p->n_batch, p->n_seq);
    struct cs_dflash_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "dflash context: out of memory");
    c->m = m;
    c->p = *p;
    const size_t B = p->n_batch, E = hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim,
                 KV = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = m->khp.n_vocab,
                 XB = CS_MAX(CS_MAX(E, Q), (size_t)hp->n_taps * E);
    struct cs_cl_dev **ldev = malloc(hp->n_layer * sizeof *ldev);
    int rc = ldev ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "dflash context: out of memory");
    for (uint32_t l = 0; ldev && l < hp->n_layer; l++)
        ldev[l] = m->dev;
    struct cs_kv_params kp = {.n_ctx = p->n_ctx, .type_k = p->type_k, .type_v = p->type_v, .n_seq_max = p->n_seq,
                              .unified = true};
    if (rc == CLSPEC_OK)
        rc = cs_kv_new(&m->khp, &kp, ldev, &c->kv, err, errlen);
    free(ldev);
    if (rc == CLSPEC_OK)
        rc = cs_batch_init(&c->b, (int)(2 * B), err, errlen);
    c->h_feat = malloc(B * (size_t)hp->n_taps * E * sizeof *c->h_feat);
    c->cells = malloc(2 * B * sizeof *c->cells);
    c->idx = malloc(B * sizeof *c->idx);
    c->q_seq = malloc(B * sizeof *c->q_seq);
    c->q_pos = malloc(B * sizeof *c->q_pos);
    if (rc == CLSPEC_OK && (!c->h_feat || !c->cells || !c->idx || !c->q_seq || !c->q_pos))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "dflash context: out of memory");
    struct {
        cl_mem *m;
        size_t bytes;
    } bufs[] = {
        {&c->x, B * E * 4},  {&c->xb, B * XB * 4}, {&c->q, B * Q * 4},   {&c->att, B * Q * 4},
        {&c->kc, B * KV * 4}, {&c->vc, B * KV * 4}, {&c->hb, B * F * 4},  {&c->hb2, B * F * 4},
        {&c->tok, B * 4},     {&c->pos, B * 4},     {&c->seq, B * 4},     {&c->cell, B * 4},
        {&c->ipos, B * 4},    {&c->icell, B * 4},   {&c->logits, B * V * 4},
    };
    for (size_t j = 0; rc == CLSPEC_OK && j < CS_ARRAY_LEN(bufs); j++)
        rc = cs_cl_alloc(m->dev, CL_MEM_READ_WRITE, bufs[j].bytes, NULL, bufs[j].m, err, errlen);
    if (rc < 0) {
        cs_err_prefix(err, errlen, rc, "dflash context (n_ctx %u, n_batch %u)", p->n_ctx, p->n_batch);
        cs_dflash_ctx_free(c);
        return rc;
    }
    *out = c;
    return CLSPEC_OK;
}

int cs_dflash_seq_rm(struct cs_dflash_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    const size_t F = (size_t)c->m->hp.n_taps * c->m->hp.n_embd;
    int32_t k = 0;
    for (int32_t i = 0; i < c->n_q; i++) {
        if (c->q_seq[i] == seq && c->q_pos[i] >= p0 && (p1 < 0 || c->q_pos[i] < p1))
            continue;
        if (k != i) {
            c->q_seq[k] = c->q_seq[i];
            c->q_pos[k] = c->q_pos[i];
            memmove(c->h_feat + (size_t)k * F, c->h_feat + (size_t)i * F, F * sizeof(float));
        }
        k++;
    }
    c->n_q = k;
    return cs_kv_seq_rm(c->kv, seq, p0, p1, err, errlen);
}

static struct cs_rope_params rope_of(const struct cs_dflash_model *m)
{
    return (struct cs_rope_params){.n_rot = (int)m->hp.head_dim, .neox = true, .freq_base = m->hp.rope_base,
                                   .freq_scale = 1.0f};
}

/* Places c->b's rows (all must fit: else KV_FULL and nothing placed) and
 * syncs the cell metadata. */
static int place(struct cs_dflash_ctx *c, char *err, size_t errlen)
{
    int seq_rc[CS_MAX_SEQ];
    CS_TRY(cs_kv_place(c->kv, &c->b, c->cells, seq_rc, err, errlen));
    for (int s = 0; s < CS_MAX_SEQ; s++)
        if (seq_rc[s] != CLSPEC_OK) {
            char e2[CLSPEC_ERRLEN];
            for (int i = 0; i < c->b.n; i++) /* undo the sequences that were placed */
                if (c->cells[i] >= 0)
                    cs_kv_seq_rm(c->kv, c->b.seq[i], c->b.pos[i], c->b.pos[i] + 1, e2, sizeof e2);
            return cs_err(err, errlen, CLSPEC_E_KV_FULL, "dflash: KV cache full for sequence %d (%u cells, %u free)",
                          s, c->p.n_ctx, cs_kv_n_free(c->kv, s));
        }
    return cs_kv_sync(c->kv, true, err, errlen);
}

/* Adds the queued injection rows to c->b (first). */
static int batch_queued(struct cs_dflash_ctx *c, char *err, size_t errlen)
{
    for (int32_t i = 0; i < c->n_q; i++)
        CS_TRY(cs_batch_add(&c->b, c->m->hp.mask_id, c->q_pos[i], c->q_seq[i], false, err, errlen));
    return CLSPEC_OK;
}

/* The block builder's shape of a draft layer. */
static struct cs_blk_shape shape_of(const struct cs_dflash_model *m)
{
    const struct cs_dflash_hparams *hp = &m->hp;
    return (struct cs_blk_shape){.n_embd = (int)hp->n_embd, .n_head = (int)hp->n_head,
                                 .n_head_kv = (int)hp->n_head_kv, .head_dim = (int)hp->head_dim,
                                 .n_ff = (int)hp->n_ff, .eps = hp->rms_eps, .rope = rope_of(m)};
}

/* The activations of a pass; pos / cell: the block's or the injection's rows. */
static struct cs_blk_act act_of(const struct cs_dflash_ctx *c, cl_mem pos, cl_mem cell)
{
    return (struct cs_blk_act){.x = c->x, .xb = c->xb, .q = c->q, .att = c->att, .kc = c->kc, .vc = c->vc,
                               .hb = c->hb, .hb2 = c->hb2, .pos = pos, .seq = c->seq, .cell = cell};
}

/* The injection pass over the first ni rows of c->b (the queue), placed in
 * c->cells[0..ni): features -> fc -> enc.output_norm -> K/V of every layer. */
static int inject_pass(struct cs_dflash_ctx *c, int ni, char *err, size_t errlen)
{
    const struct cs_dflash_model *m = c->m;
    const size_t E = m->hp.n_embd, NT = m->hp.n_taps;
    struct cs_cl_dev *d = m->dev;
    CS_TRY(cs_cl_write(d, c->ipos, 0, (size_t)ni * 4, c->q_pos, err, errlen));
    CS_TRY(cs_cl_write(d, c->icell, 0, (size_t)ni * 4, c->cells, err, errlen));
    CS_TRY(cs_cl_write(d, c->xb, 0, (size_t)ni * NT * E * 4, c->h_feat, err, errlen));
    CS_TRY(cs_op_matmul(d, &m->fc, c->xb, 0, c->x, 0, (uint32_t)ni, err, errlen));
    CS_TRY(cs_op_rmsnorm(d, c->x, 0, m->enc_norm, c->xb, 0, ni, (int)E, m->hp.rms_eps, err, errlen));
    /* K = rope(k_norm(W_k g)), V = W_v g of every layer (block.c) */
    const struct cs_ops ops = cs_ops_std(d);
    const struct cs_blk_shape shape = shape_of(m);
    const struct cs_blk_act ba = act_of(c, c->ipos, c->icell);
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const struct cs_kv_view kv = cs_kv_layer_view(c->kv, l);
        CS_TRY(cs_blk_kv(&ops, &shape, &m->layers[l], &kv, &ba, ni, err, errlen));
    }
    c->n_injected += (uint64_t)ni;
    return CLSPEC_OK;
}

int cs_dflash_flush(struct cs_dflash_ctx *c, char *err, size_t errlen)
{
    if (c->n_q == 0)
        return CLSPEC_OK;
    const int ni = c->n_q;
    cs_batch_clear(&c->b);
    int rc = batch_queued(c, err, errlen);
    c->n_q = 0; /* dropped on failure too: the caller's drafter state is then invalid anyway */
    if (rc == CLSPEC_OK)
        rc = place(c, err, errlen);
    if (rc == CLSPEC_OK)
        rc = inject_pass(c, ni, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_finish(c->m->dev, err, errlen);
    return rc;
}

int cs_dflash_inject(struct cs_dflash_ctx *c, int32_t seq, int32_t pos0, int32_t n, const float *taps, int32_t ld,
                     char *err, size_t errlen)
{
    const struct cs_dflash_model *m = c->m;
    const size_t E = m->hp.n_embd, NT = m->hp.n_taps;
    if (n < 0 || ld < n || pos0 < 0 || seq < 0 || (uint32_t)seq >= c->p.n_seq || (n > 0 && !taps))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "dflash inject: seq %d, pos %d, n %d, ld %d", seq, pos0, n, ld);
    for (int32_t r = 0; r < n; r++) {
        if (c->n_q == (int32_t)c->p.n_batch)
            CS_TRY(cs_dflash_flush(c, err, errlen));
        const int32_t q = c->n_q++;
        c->q_seq[q] = seq;
        c->q_pos[q] = pos0 + r;
        for (size_t t = 0; t < NT; t++)
            memcpy(c->h_feat + ((size_t)q * NT + t) * E, taps + (t * (size_t)ld + (size_t)r) * E, E * sizeof(float));
    }
    return CLSPEC_OK;
}

/* The block decode's layers (block.c), each residual add fused with the next
 * norm (the last with output_norm), then the target's output matrix. */
static int decode_pass(struct cs_dflash_ctx *c, int n, bool causal, char *err, size_t errlen)
{
    const struct cs_dflash_model *m = c->m;
    const struct cs_dflash_hparams *hp = &m->hp;
    struct cs_cl_dev *d = m->dev;
    const struct cs_ops ops = cs_ops_std(d);
    const struct cs_blk_shape shape = shape_of(m);
    const struct cs_blk_act ba = act_of(c, c->pos, c->cell);
    CS_TRY(cs_op_get_rows(d, m->embd, c->tok, 0, (uint32_t)n, c->x, 0, err, errlen));
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const struct cs_kv_view kv = cs_kv_layer_view(c->kv, l);
        const struct cs_blk_opt opt = {.normed = l > 0, .causal = causal, .n_cells_used = (int)c->kv->hi,
                                       .next_norm = l + 1 < hp->n_layer ? m->layers[l + 1].attn_norm : m->out_norm,
                                       .ffn_rows = n};
        CS_TRY(cs_blk_layer(&ops, &shape, &m->layers[l], &kv, &ba, n, &opt, err, errlen));
    }
    return cs_op_matmul(d, m->out, c->xb, 0, c->logits, 0, (uint32_t)n, err, errlen); /* xb: rms(x) * out_norm */
}

int cs_dflash_decode(struct cs_dflash_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
                     bool causal, const uint8_t *want, float *logits, char *err, size_t errlen)
{
    const struct cs_dflash_model *m = c->m;
    const size_t V = m->khp.n_vocab;
    if (n <= 0 || (uint32_t)n > c->p.n_batch)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "dflash decode: %d rows (want 1..n_batch %u)", n, c->p.n_batch);
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= V)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "dflash decode: token %d (row %d) out of range [0, %zu)",
                          tokens[i], i, V);
        if (seq[i] < 0 || (uint32_t)seq[i] >= c->p.n_seq)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "dflash decode: sequence %d (row %d) out of range 0..%u",
                          seq[i], i, c->p.n_seq - 1);
    }
    /* the queued injection rows and the block, placed together */
    const int ni = c->n_q;
    cs_batch_clear(&c->b);
    CS_TRY(batch_queued(c, err, errlen));
    for (int32_t i = 0; i < n; i++)
        CS_TRY(cs_batch_add(&c->b, tokens[i], pos[i], seq[i], false, err, errlen));
    c->n_q = 0;
    CS_TRY(place(c, err, errlen));
    struct cs_cl_dev *d = m->dev;
    int rc = ni > 0 ? inject_pass(c, ni, err, errlen) : CLSPEC_OK;
    if (rc == CLSPEC_OK)
        rc = cs_cl_write(d, c->pos, 0, (size_t)n * 4, pos, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_write(d, c->seq, 0, (size_t)n * 4, seq, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_write(d, c->cell, 0, (size_t)n * 4, c->cells + ni, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_write(d, c->tok, 0, (size_t)n * 4, tokens, err, errlen);
    if (rc == CLSPEC_OK)
        rc = decode_pass(c, n, causal, err, errlen);
    /* read back: contiguous rows straight, else row by row */
    if (rc == CLSPEC_OK && logits) {
        int32_t nw = 0;
        for (int32_t i = 0; i < n; i++)
            if (!want || want[i])
                c->idx[nw++] = i;
        if (nw == n)
            rc = cs_cl_read(d, c->logits, 0, (size_t)n * V * 4, logits, err, errlen);
        else
            for (int32_t j = 0; j < nw && rc == CLSPEC_OK; j++)
                rc = cs_cl_read(d, c->logits, (size_t)c->idx[j] * V * 4, V * 4, logits + (size_t)j * V, err,
                                errlen);
    }
    char e2[CLSPEC_ERRLEN];
    int rc2 = cs_cl_finish(d, e2, sizeof e2);
    if (rc == CLSPEC_OK && rc2 < 0)
        rc = cs_err(err, errlen, rc2, "%s", e2);
    /* the block's K/V do not persist */
    for (int32_t i = 0; i < n; i++)
        cs_kv_seq_rm(c->kv, seq[i], pos[i], pos[i] + 1, e2, sizeof e2);
    c->n_decoded += (uint64_t)n;
    return rc;
}
