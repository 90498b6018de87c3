/* forward.c: the OpenCL forward pass (see forward.h). cs_forward_batch
 * places the rows in the KV cache (cs_kv_place: a sequence that does not fit
 * is dropped), syncs the cell metadata, then runs passes of n_ubatch rows.
 * Per layer, on that layer's device, the block of block.c: RMSNorm -> Q/K/V
 * matmuls (+bias) -> (q/k norm) -> RoPE -> KV store -> attention -> Wo ->
 * residual + RMSNorm -> gate/up -> SwiGLU -> down -> residual (+ the next
 * layer's RMSNorm when it runs on the same device), on the device's kernel
 * family (act->ops, chosen at cs_fwd_ctx_new); at a device boundary the
 * residual stream goes through the host; then the requested rows on the last
 * device: final RMSNorm -> output matmul -> non-blocking reads of the rows
 * wanted (or their argmaxes: cs_forward_batch_greedy) and one finish. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "model/forward.h"
#include "model/block.h"
#include "kv/batch.h"
#include "gguf/quant.h"

/* ---- weights ---- */

int cs_fwd_upload_vec(struct cs_cl_dev *d, const struct cs_gguf_tensor *t, cl_mem *out, uint64_t *bytes, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (!t)
        return CLSPEC_OK;
    float *tmp = malloc(t->n_elems * sizeof(float));
    if (!tmp)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "tensor %s: out of memory", t->name);
    if (cs_dequantize_row(t->type, t->data, tmp, (int64_t)t->n_elems) != 0) {
        free(tmp);
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "tensor %s: type %s", t->name, cs_type_name(t->type));
    }
    int rc = cs_cl_alloc(d, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, t->n_elems * sizeof(float), tmp, out, err,
                         errlen);
    free(tmp);
    if (rc < 0)
        return cs_err_prefix(err, errlen, rc, "tensor %s", t->name);
    if (bytes)
        *bytes += t->n_elems * sizeof(float);
    return CLSPEC_OK;
}

int cs_fwd_upload_mat(struct cs_cl_dev *d, const struct cs_gguf_tensor *t, struct cs_weight *w, uint64_t *bytes,
                      char *err, size_t errlen)
{
    if (!t)
        return CLSPEC_OK;
    int rc = cs_weight_upload(d, t->type, (uint32_t)t->ne[0], (uint32_t)t->ne[1], t->data, w, err, errlen);
    if (rc < 0)
        return cs_err_prefix(err, errlen, rc, "tensor %s", t->name);
    if (bytes)
        *bytes += t->size;
    return CLSPEC_OK;
}


void cs_fwd_model_free(struct cs_fwd_model *fm)
{
    if (!fm)
        return;
    if (fm->layers) {
        for (uint32_t i = 0; i < fm->model->hp.n_layer; i++) {
            struct cs_fwd_layer *L = &fm->layers[i];
            cs_weight_free(&L->wq);
            cs_weight_free(&L->wk);
            cs_weight_free(&L->wv);
            cs_weight_free(&L->wo);
            cs_weight_free(&L->w_gate);
            cs_weight_free(&L->w_up);
            cs_weight_free(&L->w_down);
            cs_weight_free(&L->wqkv);
            cs_weight_free(&L->wz);
            cs_weight_free(&L->w_beta);
            cs_weight_free(&L->w_alpha);
            cs_weight_free(&L->ssm_out);
            cl_mem *v[] = {&L->attn_norm, &L->ffn_norm, &L->bq,      &L->bk,    &L->bv,      &L->q_norm,
                           &L->k_norm,    &L->conv1d,   &L->dt_bias, &L->ssm_a, &L->ssm_norm};
            for (size_t j = 0; j < CS_ARRAY_LEN(v); j++)
                cs_cl_release(v[j]);
        }
        free(fm->layers);
    }
    cs_weight_free(&fm->tok_embd);
    if (!fm->output_is_embd)
        cs_weight_free(&fm->output);
    cs_cl_release(&fm->output_norm);
    free(fm->devs);
    free(fm->layer_dev);
    free(fm->dev_bytes);
    free(fm);
}

static void progress_line(bool on, uint32_t done, uint32_t total, uint64_t bytes)
{
    if (!on)
        return;
    fprintf(stderr, "\rloading weights: %u/%u layers, %.1f MiB", done, total, (double)bytes / (1024.0 * 1024.0));
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

int cs_fwd_model_load_split(const struct cs_model *m, struct cs_cl_dev *const *devs, int n_dev,
                            const uint32_t *layer_counts, bool progress, struct cs_fwd_model **out, char *err,
                            size_t errlen)
{
    *out = NULL;
    const struct cs_hparams *hp = &m->hp;
    if (n_dev < 1 || !devs)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: no device to load onto", m->gguf->path);
    if (hp->n_layer == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: model has no layers", m->gguf->path);
    if (layer_counts) {
        uint64_t sum = 0;
        for (int i = 0; i < n_dev; i++)
            sum += layer_counts[i];
        if (sum != hp->n_layer)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: layer split sums to %llu, the model has %u layers",
                          m->gguf->path, (unsigned long long)sum, hp->n_layer);
    }
    struct cs_fwd_model *fm = calloc(1, sizeof *fm);
    if (!fm)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    fm->model = m;
    fm->n_dev = n_dev;
    fm->devs = calloc((size_t)n_dev, sizeof *fm->devs);
    fm->dev_bytes = calloc((size_t)n_dev, sizeof *fm->dev_bytes);
    fm->layer_dev = calloc(hp->n_layer, sizeof *fm->layer_dev);
    fm->layers = calloc(hp->n_layer, sizeof *fm->layers);
    progress = progress && isatty(2);
    int rc;
    struct cs_cl_dev *d = devs[0];
    if (!fm->devs || !fm->dev_bytes || !fm->layer_dev || !fm->layers) {
        free(fm->devs);
        fm->devs = NULL;
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_dev; i++)
        fm->devs[i] = devs[i];
    fm->dev = devs[0];
    for (uint32_t l = 0, i = 0, used = 0; l < hp->n_layer; l++) {
        while (layer_counts && used >= layer_counts[i]) {
            i++;
            used = 0;
        }
        fm->layer_dev[l] = (int)i;
        used++;
    }
    fm->emb_dev = fm->layer_dev[0];
    fm->out_dev = fm->layer_dev[hp->n_layer - 1];
    fm->output_is_embd = hp->tied_output && fm->emb_dev == fm->out_dev;
    d = devs[fm->emb_dev];
    if ((rc = cs_fwd_upload_mat(d, m->tok_embd, &fm->tok_embd, &fm->dev_bytes[fm->emb_dev], err, errlen)) < 0)
        goto fail;
    d = devs[fm->out_dev];
    if ((rc = cs_fwd_upload_vec(d, m->output_norm, &fm->output_norm, &fm->dev_bytes[fm->out_dev], err, errlen)) < 0)
        goto fail;
    if (!fm->output_is_embd &&
        (rc = cs_fwd_upload_mat(d, hp->tied_output ? m->tok_embd : m->output, &fm->output, &fm->dev_bytes[fm->out_dev],
                         err, errlen)) < 0)
        goto fail;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        const struct cs_layer *S = &m->layers[i];
        struct cs_fwd_layer *L = &fm->layers[i];
        uint64_t *by = &fm->dev_bytes[fm->layer_dev[i]];
        d = devs[fm->layer_dev[i]];
        uint64_t total = 0;
        for (int j = 0; j < n_dev; j++)
            total += fm->dev_bytes[j];
        progress_line(progress, i, hp->n_layer, total);
        if ((rc = cs_fwd_upload_vec(d, S->attn_norm, &L->attn_norm, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->ffn_norm, &L->ffn_norm, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->bq, &L->bq, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->bk, &L->bk, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->bv, &L->bv, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->q_norm, &L->q_norm, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->k_norm, &L->k_norm, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->wq, &L->wq, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->wk, &L->wk, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->wv, &L->wv, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->wo, &L->wo, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->w_gate, &L->w_gate, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->w_up, &L->w_up, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->w_down, &L->w_down, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->wqkv, &L->wqkv, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->wz, &L->wz, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->w_beta, &L->w_beta, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->w_alpha, &L->w_alpha, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_mat(d, S->ssm_out, &L->ssm_out, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->conv1d, &L->conv1d, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->dt_bias, &L->dt_bias, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->ssm_a, &L->ssm_a, by, err, errlen)) < 0 ||
            (rc = cs_fwd_upload_vec(d, S->ssm_norm, &L->ssm_norm, by, err, errlen)) < 0)
            goto fail;
    }
    for (int j = 0; j < n_dev; j++)
        fm->bytes += fm->dev_bytes[j];
    progress_line(progress, hp->n_layer, hp->n_layer, fm->bytes);
    *out = fm;
    return CLSPEC_OK;
fail:
    if (progress)
        fputc('\n', stderr);
    cs_err_prefix(err, errlen, rc, "%s: uploading weights to %s", m->gguf->path, d->info.name);
    cs_fwd_model_free(fm);
    return rc;
}

int cs_fwd_model_load(const struct cs_model *m, struct cs_cl_dev *d, bool progress, struct cs_fwd_model **out,
                      char *err, size_t errlen)
{
    return cs_fwd_model_load_split(m, &d, 1, NULL, progress, out, err, errlen);
}

/* ---- context ---- */

static void act_free(struct cs_fwd_act *a)
{
    cl_mem *b[] = {&a->x,   &a->xb,  &a->q,   &a->att, &a->kc,   &a->vc,     &a->hb, &a->hb2, &a->tok,
                   &a->pos, &a->seq, &a->cell, &a->logits, &a->xo, &a->qg, &a->gz, &a->bt, &a->al, &a->dno,
                   &a->rd,  &a->wr};
    for (size_t i = 0; i < CS_ARRAY_LEN(b); i++)
        cs_cl_release(b[i]);
    cs_ops_free(&a->ops);
}

void cs_fwd_ctx_free(struct cs_fwd_ctx *c)
{
    if (!c)
        return;
    if (c->act)
        for (int i = 0; i < c->fm->n_dev; i++)
            act_free(&c->act[i]);
    free(c->act);
    cs_kv_free(c->kv);
    free(c->h_x);
    free(c->scratch);
    cs_cl_release(&c->g_am);
    cs_cl_release(&c->g_nxt);
    cs_cl_release(&c->g_res);
    free(c->g_nxt_h);
    free(c->g_res_h);
    cs_cl_release(&c->t_all);
    free(c->t_all_h);
    free(c->chain_all);
    free(c);
}

/* Does device i run any layer (or hold the output)? */
static bool dev_used(const struct cs_fwd_model *fm, int i)
{
    if (i == fm->out_dev || i == fm->emb_dev)
        return true;
    for (uint32_t l = 0; l < fm->model->hp.n_layer; l++)
        if (fm->layer_dev[l] == i)
            return true;
    return false;
}

int cs_fwd_ctx_new(struct cs_fwd_model *fm, const struct cs_fwd_ctx_params *p, struct cs_fwd_ctx **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    const struct cs_hparams *hp = &fm->model->hp;
    struct cs_fwd_ctx_params cp = *p;
    if (!cp.n_ubatch)
        cp.n_ubatch = cp.n_batch;
    if (!cp.n_batch)
        cp.n_batch = cp.n_ubatch;
    if (!cp.n_seq_max && !cp.kv_partitioned)
        cp.n_seq_max = CS_MAX_SEQ;
    if (cp.n_ctx == 0 || cp.n_ubatch == 0 || cp.n_ctx > (1u << 24) || cp.n_ubatch > (1u << 16))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "context: n_ctx %u / n_ubatch %u out of range", cp.n_ctx,
                      cp.n_ubatch);
    if (cp.n_seq_max < 1 || cp.n_seq_max > CS_MAX_SEQ)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "context: n_seq_max %u out of range 1..%d", cp.n_seq_max,
                      CS_MAX_SEQ);
    struct cs_fwd_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "context: out of memory");
    c->fm = fm;
    c->dev = fm->devs[0];
    c->p = cp;
    int rc;
    size_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff, V = hp->n_vocab,
           B = cp.n_ubatch;
    struct cs_cl_dev **ldev = malloc(hp->n_layer * sizeof *ldev);
    c->act = calloc((size_t)fm->n_dev, sizeof *c->act);
    c->h_x = malloc(B * E * sizeof *c->h_x);
    if (!ldev || !c->act || !c->h_x) {
        free(ldev);
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "context: out of memory");
        goto fail;
    }
    for (uint32_t l = 0; l < hp->n_layer; l++)
        ldev[l] = fm->devs[fm->layer_dev[l]];
    bool *no_kv = calloc(hp->n_layer, sizeof *no_kv); /* a hybrid model's recurrent layers hold no K/V */
    for (uint32_t l = 0; no_kv && l < hp->n_layer; l++)
        no_kv[l] = fm->model->layers[l].recurrent;
    struct cs_kv_params kp = {.n_ctx = cp.n_ctx, .type_k = cp.type_k, .type_v = cp.type_v,
                              .n_seq_max = cp.n_seq_max, .unified = !cp.kv_partitioned};
    rc = no_kv ? cs_kv_new_layers(hp, &kp, ldev, no_kv, &c->kv, err, errlen)
               : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    free(no_kv);
    if (rc == CLSPEC_OK && hp->n_recurrent)
        rc = cs_kv_rec_new(hp, fm->model->layers, cp.n_seq_max, cp.n_rec_keep, ldev, &c->kv->rec, err, errlen);
    free(ldev);
    if (rc < 0)
        goto fail;
    /* the kernel family of every device, chosen here once */
    const size_t DI = hp->ssm_d_inner; /* qwen35: ssm_out's input (0 otherwise) */
    const struct cs_ops_lcpp_params lp = {.n_rows = (int)B, .max_in = (int)CS_MAX(CS_MAX(CS_MAX(E, Q), F), DI),
                                          .n_head = (int)hp->n_head, .n_ctx = (int)cp.n_ctx, .rope = c->kv->rope};
    for (int i = 0; i < fm->n_dev; i++) {
        struct cs_fwd_act *a = &c->act[i];
        a->dev = fm->devs[i];
        a->ops = cs_ops_std(a->dev);
        if (!dev_used(fm, i))
            continue;
        if (cp.llamacpp_numerics && (rc = cs_ops_lcpp_new(a->dev, &lp, &a->ops, err, errlen)) < 0) {
            cs_err_prefix(err, errlen, rc, "device %s", a->dev->info.name);
            goto fail;
        }
        bool outd = i == fm->out_dev, hyb = hp->arch == CS_ARCH_QWEN35;
        const size_t DC = cs_hp_dn_conv_dim(hp), HV = hp->ssm_dt_rank;
        struct {
            cl_mem *m;
            size_t bytes;
        } bufs[] = {
            {&a->x, B * E * 4},   {&a->xb, B * CS_MAX(E, Q) * 4}, {&a->q, B * Q * 4},    {&a->att, B * Q * 4},
            {&a->kc, B * KV * 4}, {&a->vc, B * KV * 4},           {&a->hb, B * F * 4},   {&a->hb2, B * F * 4},
            {&a->tok, B * 4},     {&a->pos, B * 4},               {&a->seq, B * 4},      {&a->cell, B * 4},
            {outd ? &a->logits : NULL, B * V * 4},                {outd ? &a->xo : NULL, B * E * 4},
            {hyb ? &a->qg : NULL, B * CS_MAX(2 * Q, DC) * 4},     {hyb ? &a->gz : NULL, B * CS_MAX(Q, DI) * 4},
            {hyb ? &a->bt : NULL, B * HV * 4},                    {hyb ? &a->al : NULL, B * HV * 4},
            {hyb ? &a->dno : NULL, B * DI * 4},                   {hyb ? &a->rd : NULL, B * 4},
            {hyb ? &a->wr : NULL, B * 4},
        };
        for (size_t j = 0; j < CS_ARRAY_LEN(bufs); j++)
            if (bufs[j].m &&
                (rc = cs_cl_alloc(a->dev, CL_MEM_READ_WRITE, bufs[j].bytes, NULL, bufs[j].m, err, errlen)) < 0) {
                cs_err_prefix(err, errlen, rc, "device %s", a->dev->info.name);
                goto fail;
            }
    }
    *out = c;
    return CLSPEC_OK;
fail:
    cs_err_prefix(err, errlen, rc, "context (n_ctx %u, n_ubatch %u)", cp.n_ctx, cp.n_ubatch);
    cs_fwd_ctx_free(c);
    return rc;
}

/* ---- the pass ---- */

/* The rows of one pass (all arrays have n entries, compacted: only rows of
 * sequences that were placed). */
struct pass_rows {
    int n;
    const int32_t *tok, *pos, *seq, *cell;
    const int32_t *orig;     /* row index in the caller's batch (hidden rows) */
    const int32_t *lrow;     /* index among the batch's logits rows, -1: no logits */
    const struct cs_batch *b; /* the caller's batch (embedding rows) */
    int32_t *rd, *wr;        /* hybrid models: the recurrent state slot plan (filled by pass) */
    const uint8_t *greedy;   /* (b->n) or NULL: 1 = only the argmax of the row (cs_forward_batch_greedy) */
    int pk0;                 /* placed kept rows before this pass (its argmaxes' offset in c->g_am) */
    int tok_from;            /* >= 0: the tokens are c->g_am[tok_from..+n) (a draft chain), not tok */
    int t_off;               /* >= 0: the tokens are c->t_all[t_off..+n) (device tokens), not tok */
};

/* Rows of the pass whose input is an embedding (a negative token with
 * b->embd set) get their row of b->embd in place of the token-embedding
 * gather. */
static int embd_rows(struct cs_fwd_act *a, const struct pass_rows *r, size_t E, char *err, size_t errlen)
{
    if (!r->b->embd)
        return CLSPEC_OK;
    for (int t = 0; t < r->n; t++)
        if (r->b->token[r->orig[t]] < 0)
            CS_TRY(cs_cl_write_async(a->dev, a->x, (size_t)t * E * 4, E * 4, r->b->embd + (size_t)r->orig[t] * E,
                                     err, errlen));
    return CLSPEC_OK;
}

/* Copies hidden rows (x of device a, n rows) to the caller's buffer. */
static int capture_hidden(struct cs_fwd_ctx *c, struct cs_fwd_act *a, const struct pass_rows *r, float *dst_base,
                          int n_all, char *err, size_t errlen)
{
    const size_t E = c->fm->model->hp.n_embd;
    (void)n_all;
    if (r->orig[r->n - 1] - r->orig[0] == r->n - 1) { /* contiguous: straight into place */
        cl_int e = clEnqueueReadBuffer(a->dev->q, a->x, CL_FALSE, 0, (size_t)r->n * E * 4,
                                       dst_base + (size_t)r->orig[0] * E, 0, NULL, NULL);
        return cs_cl_check(e, "clEnqueueReadBuffer(hidden)", err, errlen);
    }
    CS_TRY(cs_cl_read(a->dev, a->x, 0, (size_t)r->n * E * 4, c->h_x, err, errlen));
    for (int t = 0; t < r->n; t++)
        memcpy(dst_base + (size_t)r->orig[t] * E, c->h_x + (size_t)t * E, E * 4);
    return CLSPEC_OK;
}

struct cs_blk_shape cs_fwd_blk_shape(const struct cs_hparams *hp, const struct cs_rope_params *rope)
{
    struct cs_blk_shape s = {.n_embd = (int)hp->n_embd, .n_head = (int)hp->n_head,
                             .n_head_kv = (int)hp->n_head_kv, .head_dim = (int)hp->head_dim,
                             .n_ff = (int)hp->n_ff, .eps = hp->rms_eps, .rope = *rope};
    if (hp->arch == CS_ARCH_QWEN35) {
        s.attn_gated = true;
        s.dn = (struct cs_dn_shape){.C = (int)cs_hp_dn_conv_dim(hp), .K = (int)hp->ssm_d_conv,
                                    .Hk = (int)hp->ssm_n_group, .Dk = (int)hp->ssm_d_state,
                                    .Hv = (int)hp->ssm_dt_rank, .Dv = (int)cs_hp_dn_dv(hp), .eps = hp->rms_eps};
    }
    return s;
}

static struct cs_blk_act blk_act(const struct cs_fwd_act *a)
{
    return (struct cs_blk_act){.x = a->x, .xb = a->xb, .q = a->q, .att = a->att, .kc = a->kc, .vc = a->vc,
                               .hb = a->hb, .hb2 = a->hb2, .pos = a->pos, .seq = a->seq, .cell = a->cell,
                               .qg = a->qg, .gz = a->gz, .bt = a->bt, .al = a->al, .dno = a->dno, .rd = a->rd,
                               .wr = a->wr};
}

static int pass(struct cs_fwd_ctx *c, const struct pass_rows *r, float *logits_out, const struct cs_fwd_hidden *hidden,
                int n_all, char *err, size_t errlen)
{
    const struct cs_fwd_model *fm = c->fm;
    const struct cs_hparams *hp = &fm->model->hp;
    const int n = r->n, E = (int)hp->n_embd, V = (int)hp->n_vocab, NL = (int)hp->n_layer;
    const float eps = hp->rms_eps;
    /* RoPE: the model's, as the cache keeps them */
    const struct cs_blk_shape shape = cs_fwd_blk_shape(hp, &c->kv->rope);

    if (c->kv->rec)
        cs_kv_rec_plan(c->kv->rec, r->seq, r->pos, n, r->rd, r->wr);
    int n_lrows = 0; /* rows that want logits: the last layer's FFN and the output are theirs (ffn_rows) */
    for (int t = 0; t < n; t++)
        n_lrows += r->lrow[t] >= 0;
    /* inputs, to every device that runs layers */
    for (int i = 0; i < fm->n_dev; i++) {
        struct cs_fwd_act *a = &c->act[i];
        if (!a->x)
            continue;
        /* non-blocking: r's arrays (c->scratch) stay put until cs_forward_batch's final finish */
        if (i == fm->emb_dev && r->tok_from >= 0) { /* the previous depth's argmaxes (same device) */
            cl_int e = clEnqueueCopyBuffer(a->dev->q, c->g_am, a->tok, (size_t)r->tok_from * 4, 0, (size_t)n * 4, 0,
                                           NULL, NULL);
            CS_TRY(cs_cl_check(e, "clEnqueueCopyBuffer(chain tokens)", err, errlen));
        } else if (i == fm->emb_dev && r->t_off < 0) {
            CS_TRY(cs_cl_write_async(a->dev, a->tok, 0, (size_t)n * 4, r->tok, err, errlen));
        }
        CS_TRY(cs_cl_write_async(a->dev, a->pos, 0, (size_t)n * 4, r->pos, err, errlen));
        CS_TRY(cs_cl_write_async(a->dev, a->seq, 0, (size_t)n * 4, r->seq, err, errlen));
        CS_TRY(cs_cl_write_async(a->dev, a->cell, 0, (size_t)n * 4, r->cell, err, errlen));
        if (c->kv->rec) {
            CS_TRY(cs_cl_write_async(a->dev, a->rd, 0, (size_t)n * 4, r->rd, err, errlen));
            CS_TRY(cs_cl_write_async(a->dev, a->wr, 0, (size_t)n * 4, r->wr, err, errlen));
        }
        CS_TRY(cs_ops_begin(&a->ops, r->pos, n, err, errlen));
    }
    struct cs_fwd_act *a = &c->act[fm->emb_dev];
    CS_TRY(cs_op_get_rows(a->dev, &fm->tok_embd, r->t_off >= 0 ? c->t_all : a->tok,
                          r->t_off >= 0 ? (size_t)r->t_off : 0, (uint32_t)n, a->x, 0, err, errlen));
    CS_TRY(embd_rows(a, r, (size_t)E, err, errlen));
    bool normed = false; /* xb already holds layer l's attention-norm output (fused into the residual add) */
    for (int l = 0; l <= NL; l++) {
        int di = l < NL ? fm->layer_dev[l] : fm->out_dev;
        if (&c->act[di] != a) { /* device boundary: the residual stream through the host */
            CS_TRY(cs_cl_read(a->dev, a->x, 0, (size_t)n * E * 4, c->h_x, err, errlen));
            a = &c->act[di];
            CS_TRY(cs_cl_write(a->dev, a->x, 0, (size_t)n * E * 4, c->h_x, err, errlen));
        }
        if (hidden)
            for (int i = 0; i < hidden->n_layers; i++)
                if (hidden->layers[i] == l)
                    CS_TRY(capture_hidden(c, a, r, hidden->out + (size_t)i * n_all * E, n_all, err, errlen));
        if (l == NL)
            break;
        const struct cs_fwd_layer *L = &fm->layers[l];
        const struct cs_kv_view kv = cs_kv_layer_view(c->kv, (uint32_t)l);
        /* the residual add after the FFN also norms for the next layer when it runs here */
        const bool fuse = l + 1 < NL && fm->layer_dev[l + 1] == di;
        const struct cs_blk_opt opt = {.normed = normed, .causal = true, .n_cells_used = (int)c->kv->hi,
                                       .next_norm = fuse ? fm->layers[l + 1].attn_norm : NULL,
                                       .ffn_rows = l == NL - 1 ? n_lrows : n};
        const struct cs_blk_act ba = blk_act(a);
        const struct cs_kv_rec_view rv = cs_kv_rec_layer(c->kv->rec, (uint32_t)l);
        CS_TRY(cs_blk_layer_rec(&a->ops, &shape, L, &kv, &rv, &ba, n, &opt, err, errlen));
        normed = fuse;
    }
    /* the requested rows: gather, final norm and output projection on them only */
    /* every row of the pass: the final norm reads the residual rows in place; else each run of
     * consecutive ones is copied once */
    int n_rows = 0;
    for (int t = 0, t0 = -1; t <= n; t++) {
        const bool want = t < n && r->lrow[t] >= 0;
        if (want && t0 < 0)
            t0 = t;
        if (want || t0 < 0)
            continue;
        if (t - t0 < n) {
            cl_int e = clEnqueueCopyBuffer(a->dev->q, a->x, a->xo, (size_t)t0 * E * 4, (size_t)n_rows * E * 4,
                                           (size_t)(t - t0) * E * 4, 0, NULL, NULL);
            CS_TRY(cs_cl_check(e, "clEnqueueCopyBuffer(logit rows)", err, errlen));
        }
        n_rows += t - t0;
        t0 = -1;
    }
    if (n_rows == 0)
        return CLSPEC_OK;
    struct cs_cl_dev *d = a->dev;
    const struct cs_weight *out_w = fm->output_is_embd ? &fm->tok_embd : &fm->output;
    CS_TRY(a->ops.f->rmsnorm(&a->ops, n_rows == n ? a->x : a->xo, fm->output_norm, a->xo, n_rows, E, eps, err,
                             errlen));
    CS_TRY(a->ops.f->matmul(&a->ops, out_w, a->xo, a->logits, n_rows, n_rows, err, errlen));
    if (r->greedy)
        CS_TRY(cs_op_argmax(d, a->logits, 0, c->g_am, (size_t)r->pk0, n_rows, V, err, errlen));
    /* the logits rows that come back: each run of consecutive ones in one non-blocking read
     * straight into place (cs_forward_batch's finish waits for them) */
    for (int t = 0, k = 0, k0 = 0, l0 = -1; t <= n; t++) {
        bool back = t < n && r->lrow[t] >= 0 && !(r->greedy && r->greedy[r->orig[t]]);
        if (l0 >= 0 && (!back || r->lrow[t] != l0 + (k - k0))) {
            CS_TRY(cs_cl_read_async(d, a->logits, (size_t)k0 * V * 4, (size_t)(k - k0) * V * 4,
                                    logits_out + (size_t)l0 * V, err, errlen));
            l0 = -1;
        }
        if (back && l0 < 0) {
            k0 = k;
            l0 = r->lrow[t];
        }
        k += t < n && r->lrow[t] >= 0;
    }
    return CLSPEC_OK;
}

/* Room for n greedy rows in c->g_* (on device d). */
static int greedy_reserve(struct cs_fwd_ctx *c, struct cs_cl_dev *d, int n, char *err, size_t errlen)
{
    if (n <= c->g_cap)
        return CLSPEC_OK;
    cs_cl_release(&c->g_am);
    cs_cl_release(&c->g_nxt);
    cs_cl_release(&c->g_res);
    free(c->g_nxt_h);
    free(c->g_res_h);
    c->g_cap = 0;
    c->g_nxt_h = malloc((size_t)n * sizeof *c->g_nxt_h);
    c->g_res_h = malloc((size_t)n * 2 * sizeof *c->g_res_h);
    if (!c->g_nxt_h || !c->g_res_h)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory (%d greedy rows)", n);
    CS_TRY(cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)n * 4, NULL, &c->g_am, err, errlen));
    CS_TRY(cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)n * 4, NULL, &c->g_nxt, err, errlen));
    CS_TRY(cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)n * 8, NULL, &c->g_res, err, errlen));
    c->g_cap = n;
    return CLSPEC_OK;
}

/* Before the passes: the next-row token of each placed kept row (-1 where
 * no greedy run goes on), uploaded without a sync, or (device tokens) left
 * at c->t_all_h + n for dtok_begin's one upload. Sets *n_pk to how many. */
static int greedy_begin(struct cs_fwd_ctx *c, const struct cs_batch *b, const struct cs_fwd_greedy *g,
                        const int32_t *orig, const int32_t *lrow, int n, int *n_pk, char *err, size_t errlen)
{
    struct cs_cl_dev *d = c->act[c->fm->out_dev].dev;
    int k = 0;
    for (int t = 0; t < n; t++)
        k += lrow[t] >= 0;
    *n_pk = k;
    if (k == 0)
        return CLSPEC_OK;
    CS_TRY(greedy_reserve(c, d, k, err, errlen));
    if (g->chain > 0) /* no runs to verify: only the argmaxes */
        return CLSPEC_OK;
    int32_t *nxt = g->dt ? c->t_all_h + n : c->g_nxt_h;
    k = 0;
    for (int t = 0; t < n; t++) {
        if (lrow[t] < 0)
            continue;
        int i = orig[t];
        bool run = g->rows[i] && i + 1 < b->n && g->rows[i + 1] && b->logits[i + 1] && b->seq[i + 1] == b->seq[i];
        nxt[k++] = run ? b->token[i + 1] : -1;
    }
    return g->dt ? CLSPEC_OK : cs_cl_write_async(d, c->g_nxt, 0, (size_t)k * 4, c->g_nxt_h, err, errlen);
}

/* Copies m int32 elements src[s0 + j * stride] to dst[d0 + j] (one command). */
static int copy_strided(struct cs_cl_dev *d, cl_mem src, size_t s0, size_t stride, cl_mem dst, size_t d0, size_t m,
                        char *err, size_t errlen)
{
    cl_int e;
    if (m == 1 || stride == 1) {
        e = clEnqueueCopyBuffer(d->q, src, dst, s0 * 4, d0 * 4, m * 4, 0, NULL, NULL);
    } else {
        const size_t so[3] = {s0 * 4, 0, 0}, dor[3] = {d0 * 4, 0, 0}, reg[3] = {4, m, 1};
        e = clEnqueueCopyBufferRect(d->q, src, dst, so, dor, reg, stride * 4, 0, 4, 0, 0, NULL, NULL);
    }
    return cs_cl_check(e, "clEnqueueCopyBufferRect(device tokens)", err, errlen);
}

/* Device tokens: room in c->t_all for n rows' tokens, their next-row
 * tokens and verdicts ([tok n | nxt k | res 2k], k <= n: 4n elements). */
static int dtok_reserve(struct cs_fwd_ctx *c, int n, char *err, size_t errlen)
{
    if (4 * n <= c->t_cap)
        return CLSPEC_OK;
    cs_cl_release(&c->t_all);
    free(c->t_all_h);
    c->t_cap = 0;
    if (!(c->t_all_h = malloc((size_t)n * 4 * sizeof *c->t_all_h)))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory (%d device tokens)", n);
    CS_TRY(cs_cl_alloc(c->act[c->fm->emb_dev].dev, CL_MEM_READ_WRITE, (size_t)n * 16, NULL, &c->t_all, err, errlen));
    c->t_cap = 4 * n;
    return CLSPEC_OK;
}

/* Device tokens: every placed row's token into c->t_all (the host's, with
 * the n_nxt next-row tokens greedy_begin left behind them, in one upload;
 * then the device rows' from g->dt->buf, in runs of one stride),
 * non-blocking. */
static int dtok_begin(struct cs_fwd_ctx *c, const struct cs_fwd_greedy *g, const int32_t *tok, const int32_t *orig,
                      int n, int n_nxt, char *err, size_t errlen)
{
    struct cs_cl_dev *d = c->act[c->fm->emb_dev].dev;
    memcpy(c->t_all_h, tok, (size_t)n * sizeof *tok);
    CS_TRY(cs_cl_write_async(d, c->t_all, 0, (size_t)(n + n_nxt) * 4, c->t_all_h, err, errlen));
    for (int t = 0; t < n;) {
        const int32_t s0 = g->dt->src[orig[t]];
        if (s0 < 0) {
            t++;
            continue;
        }
        int m = 1;
        int32_t st = t + 1 < n ? g->dt->src[orig[t + 1]] - s0 : 1;
        while (t + m < n && st > 0 && g->dt->src[orig[t + m]] == s0 + m * st)
            m++;
        CS_TRY(copy_strided(d, g->dt->buf, (size_t)s0, (size_t)(st > 0 ? st : 1), c->t_all, (size_t)t, (size_t)m,
                            err, errlen));
        t += m;
    }
    return CLSPEC_OK;
}

const struct cs_cl_dev *cs_fwd_tok_dev(const struct cs_fwd_ctx *c)
{
    return c->kv->rec || c->fm->emb_dev != c->fm->out_dev ? NULL : c->act[c->fm->emb_dev].dev;
}

/* Before anything is placed: device tokens are possible here and in range. */
static int dtok_check(const struct cs_fwd_ctx *c, const struct cs_batch *b, const struct cs_fwd_greedy *g, char *err,
                      size_t errlen)
{
    if (g->chain > 0 || !g->dt->buf || !g->dt->got || !g->rows)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forward: device tokens without a buffer or greedy rows");
    if (!cs_fwd_tok_dev(c) || cs_fwd_tok_dev(c) != g->dt->dev)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "forward: device tokens need a plain model with its input and output on the drafter's device");
    for (int i = 0; i < b->n; i++)
        if (g->dt->src[i] >= 0 && ((size_t)g->dt->src[i] >= g->dt->n || !b->logits[i] || !g->rows[i]))
            return cs_err(err, errlen, CLSPEC_E_RANGE,
                          "forward: device token %d of row %d (a buffer of %zu; the row must be a greedy row)",
                          g->dt->src[i], i, g->dt->n);
    return CLSPEC_OK;
}

/* Device tokens: a greedy run's next-row token where that row's token is on
 * the device (after dtok_begin's upload of the others), into c->t_all + n. */
static int dtok_next(struct cs_fwd_ctx *c, const struct cs_batch *b, const struct cs_fwd_greedy *g,
                     const int32_t *orig, const int32_t *lrow, int n, char *err, size_t errlen)
{
    struct cs_cl_dev *d = c->act[c->fm->out_dev].dev;
    for (int t = 1, k = 0, t0 = -1, k0 = 0; t <= n; t++) { /* k: kept index of row t - 1 */
        bool dev = false;
        if (t < n) {
            const int i = orig[t - 1], j = orig[t];
            dev = lrow[t - 1] >= 0 && g->dt->src[j] >= 0 && j == i + 1 && g->rows[i] && g->rows[j] &&
                  b->logits[j] && b->seq[j] == b->seq[i];
        }
        if (t0 >= 0 && (!dev || k != k0 + (t - t0))) {
            cl_int e = clEnqueueCopyBuffer(d->q, c->t_all, c->t_all, (size_t)t0 * 4, (size_t)(n + k0) * 4,
                                           (size_t)(t - t0) * 4, 0, NULL, NULL);
            CS_TRY(cs_cl_check(e, "clEnqueueCopyBuffer(device next tokens)", err, errlen));
            t0 = -1;
        }
        if (dev && t0 < 0) {
            t0 = t;
            k0 = k;
        }
        k += t <= n && lrow[t - 1] >= 0;
    }
    return CLSPEC_OK;
}

int cs_forward_batch(struct cs_fwd_ctx *c, const struct cs_batch *b, float *logits_out,
                     const struct cs_fwd_hidden *hidden, int *seq_rc, char *err, size_t errlen)
{
    return cs_forward_batch_greedy(c, b, logits_out, hidden, NULL, seq_rc, err, errlen);
}

int cs_forward_batch_greedy(struct cs_fwd_ctx *c, const struct cs_batch *b, float *logits_out,
                            const struct cs_fwd_hidden *hidden, const struct cs_fwd_greedy *g, int *seq_rc,
                            char *err, size_t errlen)
{
    const struct cs_hparams *hp = &c->fm->model->hp;
    int rc_local[CS_MAX_SEQ];
    if (!seq_rc)
        seq_rc = rc_local;
    for (int s = 0; s < CS_MAX_SEQ; s++)
        seq_rc[s] = CLSPEC_OK;
    if (b->n <= 0)
        return CLSPEC_OK;
    for (int i = 0; i < b->n; i++) {
        if (b->token[i] < 0 && b->embd)
            continue; /* an embedding row; its position and sequence are checked below */
        if (b->token[i] < 0 || (uint32_t)b->token[i] >= hp->n_vocab)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: token %d (row %d) out of range [0, %u)",
                          b->token[i], i, hp->n_vocab);
    }
    for (int i = 0; i < b->n; i++) {
        if (b->pos[i] < 0)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: negative position at row %d", i);
        if (b->seq[i] < 0 || (uint32_t)b->seq[i] >= c->p.n_seq_max)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: sequence id %d (row %d) out of range 0..%u",
                          b->seq[i], i, c->p.n_seq_max - 1);
    }
    if (hidden)
        for (int i = 0; i < hidden->n_layers; i++)
            if (hidden->layers[i] < 0 || hidden->layers[i] > (int32_t)hp->n_layer)
                return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: hidden layer %d out of range 0..%u",
                              hidden->layers[i], hp->n_layer);
    if (cs_batch_n_logits(b) > 0 && !logits_out && !(g && g->chain > 0)) /* a chain reads argmaxes only */
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forward: logits requested but no output buffer");
    if (b->n > c->scratch_cap) {
        int32_t *s = realloc(c->scratch, (size_t)b->n * 9 * sizeof *s);
        if (!s)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory (%d rows)", b->n);
        c->scratch = s;
        c->scratch_cap = b->n;
    }
    const int cap = c->scratch_cap;
    int32_t *cells = c->scratch, *tok = cells + cap, *pos = tok + cap, *seq = pos + cap, *cell = seq + cap,
            *orig = cell + cap, *lrow = orig + cap, *rd = lrow + cap, *wr = rd + cap;
    if (g && g->dt)
        CS_TRY(dtok_check(c, b, g, err, errlen));
    if (c->kv->rec) /* a hybrid model's rows must continue their sequences' recurrent state */
        CS_TRY(cs_kv_rec_check(c->kv->rec, b, err, errlen));
    CS_TRY(cs_kv_place(c->kv, b, cells, seq_rc, err, errlen));
    int n = 0;
    for (int i = 0, li = 0; i < b->n; i++) {
        int l = b->logits[i] ? li++ : -1;
        if (cells[i] < 0)
            continue;
        tok[n] = b->token[i] < 0 ? 0 : b->token[i]; /* embedding rows: gathered, then replaced */
        pos[n] = b->pos[i];
        seq[n] = b->seq[i];
        cell[n] = cells[i];
        orig[n] = i;
        lrow[n] = l;
        n++;
    }
    if (n == 0)
        return CLSPEC_OK;
    const int U = (int)c->p.n_ubatch;
    int rc = cs_kv_sync(c->kv, false, err, errlen); /* non-blocking: the finish below */
    int n_pk = 0; /* placed kept rows (greedy) */
    const bool dt = g && g->dt;
    if (rc == CLSPEC_OK && dt)
        rc = dtok_reserve(c, n, err, errlen);
    if (rc == CLSPEC_OK && g && g->rows)
        rc = greedy_begin(c, b, g, orig, lrow, n, &n_pk, err, errlen);
    if (rc == CLSPEC_OK && dt)
        rc = dtok_begin(c, g, tok, orig, n, n_pk, err, errlen);
    if (rc == CLSPEC_OK && dt && n_pk > 0)
        rc = dtok_next(c, b, g, orig, lrow, n, err, errlen);
    const int chain = g ? g->chain : 0; /* a draft chain: the first chain_n0 rows, then depths of chain rows */
    for (int t0 = 0, pk0 = 0, sz; t0 < n && rc == CLSPEC_OK; t0 += sz) {
        sz = chain > 0 ? (t0 == 0 ? g->chain_n0 : chain) : CS_MIN(U, n - t0);
        struct pass_rows r = {.n = sz, .tok = tok + t0, .pos = pos + t0, .seq = seq + t0,
                              .cell = cell + t0, .orig = orig + t0, .lrow = lrow + t0, .rd = rd + t0,
                              .wr = wr + t0, .b = b, .greedy = n_pk > 0 ? g->rows : NULL, .pk0 = pk0,
                              .tok_from = chain > 0 && t0 > 0 ? pk0 - chain : -1, .t_off = dt ? t0 : -1};
        rc = pass(c, &r, logits_out, hidden, b->n, err, errlen);
        for (int t = 0; t < r.n; t++)
            pk0 += r.lrow[t] >= 0;
    }
    struct cs_cl_dev *od = c->act[c->fm->out_dev].dev;
    /* device tokens: next tokens and verdicts lie behind the tokens in c->t_all, and all come back in one read */
    if (rc == CLSPEC_OK && n_pk > 0 && chain == 0)
        rc = dt ? cs_op_greedy_accept_at(od, c->g_am, c->t_all, (size_t)n, c->t_all, (size_t)(n + n_pk), n_pk, err,
                                         errlen)
                : cs_op_greedy_accept(od, c->g_am, c->g_nxt, c->g_res, n_pk, err, errlen);
    if (rc == CLSPEC_OK && n_pk > 0 && !dt)
        rc = chain > 0 ? cs_cl_read_async(od, c->g_am, 0, (size_t)n_pk * 4, c->g_res_h, err, errlen)
                       : cs_cl_read_async(od, c->g_res, 0, (size_t)n_pk * 8, c->g_res_h, err, errlen);
    if (rc == CLSPEC_OK && dt) /* the device rows' tokens come back in the same sync */
        rc = cs_cl_read_async(od, c->t_all, 0, (size_t)(n + 3 * n_pk) * 4, c->t_all_h, err, errlen);
    const int32_t *res_h = dt ? c->t_all_h + n + n_pk : c->g_res_h; /* the verdicts, read back */
    /* always (also after an error): the non-blocking input writes and hidden
     * reads are done, work finished before returning (cheap after the
     * blocking logits read) */
    for (int i = 0; i < c->fm->n_dev; i++)
        if (c->act[i].x) {
            int frc = cs_cl_finish(c->act[i].dev, rc == CLSPEC_OK ? err : NULL, rc == CLSPEC_OK ? errlen : 0);
            if (rc == CLSPEC_OK)
                rc = frc;
        }
    if (rc == CLSPEC_OK && c->debug_fail > 0 && --c->debug_fail == 0)
        rc = cs_err(err, errlen, CLSPEC_E_CL, "forward: injected failure (test-only cs_fwd_debug_fail)");
    for (int t = 0; rc == CLSPEC_OK && dt && t < n; t++)
        if (g->dt->src[orig[t]] >= 0) {
            g->dt->got[orig[t]] = c->t_all_h[t];
            c->kv->tok[cell[t]] = c->t_all_h[t]; /* the cell's token for prefix reuse (placed as 0) */
        }
    if (rc == CLSPEC_OK && chain > 0) /* every row was placed: kept-row order is the chain's */
        memcpy(g->out, res_h, (size_t)n_pk * sizeof *g->out);
    for (int t = 0, k = 0; rc == CLSPEC_OK && t < n && n_pk > 0 && chain == 0; t++) /* to the greedy kept rows */
        if (lrow[t] >= 0 && (k++, g->rows[orig[t]]))
            memcpy(g->out + (size_t)lrow[t] * 2, res_h + (size_t)(k - 1) * 2, 2 * sizeof *g->out);
    return rc;
}

void cs_fwd_debug_fail(struct cs_fwd_ctx *c, int32_t n)
{
    c->debug_fail = n > 0 ? n : 0;
}

int cs_forward(struct cs_fwd_ctx *c, const int32_t *tokens, int n, const int32_t *positions, const int32_t *seq_ids,
               const int32_t *out_rows, int n_out, float *logits_out, const struct cs_fwd_hidden *hidden, char *err,
               size_t errlen)
{
    if (n <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forward: no tokens");
    int32_t last = n - 1;
    if (!out_rows) {
        out_rows = &last;
        n_out = 1;
    }
    for (int i = 0; i < n_out; i++)
        if (out_rows[i] < 0 || out_rows[i] >= n || (i > 0 && out_rows[i] <= out_rows[i - 1]))
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: logits rows must be increasing indices < %d", n);
    struct cs_batch b;
    CS_TRY(cs_batch_init(&b, n, err, errlen));
    int rc = CLSPEC_OK;
    for (int t = 0, k = 0; t < n && rc == CLSPEC_OK; t++) {
        bool want = k < n_out && out_rows[k] == t;
        k += want;
        rc = cs_batch_add(&b, tokens[t], positions[t], seq_ids ? seq_ids[t] : 0, want, err, errlen);
    }
    int seq_rc[CS_MAX_SEQ];
    if (rc == CLSPEC_OK)
        rc = cs_forward_batch(c, &b, logits_out, hidden, seq_rc, err, errlen);
    for (int s = 0; rc == CLSPEC_OK && s < CS_MAX_SEQ; s++)
        if (seq_rc[s] != CLSPEC_OK)
            rc = cs_err(err, errlen, seq_rc[s], "forward: kv cache full for sequence %d (%u cells, %u free)", s,
                        c->p.n_ctx, cs_kv_n_free(c->kv, s));
    cs_batch_free(&b);
    return rc;
}

int cs_forward_chain(struct cs_fwd_ctx *c, const struct cs_batch *b, int n0, int n_chain, int32_t *amax, char *err,
                     size_t errlen)
{
    const struct cs_fwd_model *fm = c->fm;
    const int U = (int)c->p.n_ubatch;
    int depth = n_chain > 0 ? 1 + (b->n - n0) / n_chain : 0;
    if (n0 < 1 || n_chain < 1 || n0 > U || n_chain > U || b->n != n0 + (depth - 1) * n_chain)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forward chain: %d rows = %d + depths of %d (each <= %d)", b->n,
                      n0, n_chain, U);
    if (c->kv->rec || fm->emb_dev != fm->out_dev)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "forward chain: needs a plain (not hybrid) model on one device for its input and output");
    int n_keep0 = 0, need[CS_MAX_SEQ] = {0};
    for (int i = 0; i < b->n; i++) {
        if (b->seq[i] < 0 || b->seq[i] >= CS_MAX_SEQ || (i >= n0 && !b->logits[i]))
            return cs_err(err, errlen, CLSPEC_E_INVAL, "forward chain: row %d: sequence %d, chained rows keep logits",
                          i, b->seq[i]);
        need[b->seq[i]]++;
        n_keep0 += i < n0 && b->logits[i];
    }
    if (n_keep0 != n_chain)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forward chain: %d kept rows for %d chains", n_keep0, n_chain);
    for (int s = 0; s < CS_MAX_SEQ; s++) /* all or nothing: every row placed keeps the kept-row order */
        if (need[s] > 0 && cs_kv_n_free(c->kv, s) < (uint32_t)need[s])
            return cs_err(err, errlen, CLSPEC_E_KV_FULL, "forward chain: sequence %d needs %d cells", s, need[s]);
    if (b->n > c->chain_cap) { /* every row greedy: ones, kept across calls */
        uint8_t *all = realloc(c->chain_all, (size_t)b->n);
        if (!all)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward chain: out of memory");
        memset(all, 1, (size_t)b->n);
        c->chain_all = all;
        c->chain_cap = b->n;
    }
    const struct cs_fwd_greedy g = {.rows = c->chain_all, .out = amax, .chain = n_chain, .chain_n0 = n0};
    int seq_rc[CS_MAX_SEQ];
    int rc = cs_forward_batch_greedy(c, b, NULL, NULL, &g, seq_rc, err, errlen);
    for (int s = 0; rc == CLSPEC_OK && s < CS_MAX_SEQ; s++)
        if (seq_rc[s] != CLSPEC_OK)
            rc = cs_err(err, errlen, seq_rc[s], "forward chain: sequence %d did not fit", s);
    return rc;
}
