/* forward.c: the OpenCL forward pass (see forward.h). Per layer: RMSNorm ->
 * Q/K/V matmuls (+bias) -> (q/k norm) -> RoPE -> KV store -> attention -> Wo
 * -> residual -> RMSNorm -> gate/up -> SwiGLU -> down -> residual; then the
 * requested rows: final RMSNorm -> output matmul -> one blocking read. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "forward.h"
#include "batch.h"
#include "quant.h"

/* ---- weights ---- */

static int upload_vec(struct cs_cl_dev *d, const struct cs_gguf_tensor *t, cl_mem *out, uint64_t *bytes, char *err,
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
    *bytes += t->n_elems * sizeof(float);
    return CLSPEC_OK;
}

static int upload_mat(struct cs_cl_dev *d, const struct cs_gguf_tensor *t, struct cs_weight *w, uint64_t *bytes,
                      char *err, size_t errlen)
{
    int rc = cs_weight_upload(d, t->type, (uint32_t)t->ne[0], (uint32_t)t->ne[1], t->data, w, err, errlen);
    if (rc < 0)
        return cs_err_prefix(err, errlen, rc, "tensor %s", t->name);
    *bytes += t->size;
    return CLSPEC_OK;
}

static void release(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
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
            cl_mem *v[] = {&L->attn_norm, &L->ffn_norm, &L->bq, &L->bk, &L->bv, &L->q_norm, &L->k_norm};
            for (size_t j = 0; j < CS_ARRAY_LEN(v); j++)
                release(v[j]);
        }
        free(fm->layers);
    }
    cs_weight_free(&fm->tok_embd);
    if (!fm->model->hp.tied_output)
        cs_weight_free(&fm->output);
    release(&fm->output_norm);
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

int cs_fwd_model_load(const struct cs_model *m, struct cs_cl_dev *d, bool progress, struct cs_fwd_model **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    struct cs_fwd_model *fm = calloc(1, sizeof *fm);
    if (!fm)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    fm->model = m;
    fm->dev = d;
    progress = progress && isatty(2);
    const struct cs_hparams *hp = &m->hp;
    int rc;
    fm->layers = calloc(hp->n_layer, sizeof *fm->layers);
    if (!fm->layers) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = upload_mat(d, m->tok_embd, &fm->tok_embd, &fm->bytes, err, errlen)) < 0 ||
        (rc = upload_vec(d, m->output_norm, &fm->output_norm, &fm->bytes, err, errlen)) < 0)
        goto fail;
    if (!hp->tied_output && (rc = upload_mat(d, m->output, &fm->output, &fm->bytes, err, errlen)) < 0)
        goto fail;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        const struct cs_layer *S = &m->layers[i];
        struct cs_fwd_layer *L = &fm->layers[i];
        progress_line(progress, i, hp->n_layer, fm->bytes);
        if ((rc = upload_vec(d, S->attn_norm, &L->attn_norm, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_vec(d, S->ffn_norm, &L->ffn_norm, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_vec(d, S->bq, &L->bq, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_vec(d, S->bk, &L->bk, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_vec(d, S->bv, &L->bv, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_vec(d, S->q_norm, &L->q_norm, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_vec(d, S->k_norm, &L->k_norm, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->wq, &L->wq, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->wk, &L->wk, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->wv, &L->wv, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->wo, &L->wo, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->w_gate, &L->w_gate, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->w_up, &L->w_up, &fm->bytes, err, errlen)) < 0 ||
            (rc = upload_mat(d, S->w_down, &L->w_down, &fm->bytes, err, errlen)) < 0)
            goto fail;
    }
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

/* ---- context ---- */

void cs_fwd_ctx_free(struct cs_fwd_ctx *c)
{
    if (!c)
        return;
    if (c->k)
        for (uint32_t l = 0; l < c->fm->model->hp.n_layer; l++) {
            release(&c->k[l]);
            release(&c->v[l]);
        }
    free(c->k);
    free(c->v);
    cl_mem *b[] = {&c->cell_pos, &c->cell_seq, &c->x, &c->xb, &c->q, &c->att, &c->kc, &c->vc, &c->hb, &c->hb2,
                   &c->logits, &c->xo, &c->tok, &c->pos, &c->seq, &c->cell};
    for (size_t i = 0; i < CS_ARRAY_LEN(b); i++)
        release(b[i]);
    free(c->h_cell_pos);
    free(c->h_cell_seq);
    free(c->h_cell);
    free(c);
}

void cs_fwd_kv_clear(struct cs_fwd_ctx *c)
{
    for (uint32_t i = 0; i < c->p.n_ctx; i++) {
        c->h_cell_pos[i] = -1;
        c->h_cell_seq[i] = 0;
    }
    c->n_used = 0;
}

int cs_fwd_kv_seq_rm(struct cs_fwd_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    if (seq < 0 || seq > 63)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "kv: sequence %d out of range 0..63", seq);
    for (int32_t i = 0; i < c->n_used; i++) {
        int32_t p = c->h_cell_pos[i];
        if (p < 0 || !((c->h_cell_seq[i] >> seq) & 1) || p < p0 || (p1 >= 0 && p >= p1))
            continue;
        c->h_cell_seq[i] &= ~(1ull << seq);
        if (!c->h_cell_seq[i])
            c->h_cell_pos[i] = -1;
    }
    while (c->n_used > 0 && c->h_cell_pos[c->n_used - 1] < 0)
        c->n_used--;
    return CLSPEC_OK;
}

int cs_fwd_ctx_new(struct cs_fwd_model *fm, const struct cs_fwd_ctx_params *p, struct cs_fwd_ctx **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    const struct cs_hparams *hp = &fm->model->hp;
    if (p->n_ctx == 0 || p->n_batch == 0 || p->n_ctx > (1u << 24) || p->n_batch > (1u << 16))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "context: n_ctx %u / n_batch %u out of range", p->n_ctx,
                      p->n_batch);
    if (p->kv_type != CS_TYPE_F32 && p->kv_type != CS_TYPE_F16)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "context: KV cache type %s (f32 or f16)",
                      cs_type_name(p->kv_type));
    int rc = cs_kv_type_check(p->kv_type, (int)hp->head_dim, err, errlen);
    if (rc < 0)
        return rc;
    struct cs_fwd_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "context: out of memory");
    c->fm = fm;
    c->dev = fm->dev;
    c->p = *p;
    struct cs_cl_dev *d = fm->dev;
    size_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff, V = hp->n_vocab,
           B = p->n_batch;
    uint64_t row_bytes = 0;
    cs_row_bytes(p->kv_type, KV, &row_bytes);
    c->k = calloc(hp->n_layer, sizeof *c->k);
    c->v = calloc(hp->n_layer, sizeof *c->v);
    c->h_cell_pos = malloc(p->n_ctx * sizeof *c->h_cell_pos);
    c->h_cell_seq = malloc(p->n_ctx * sizeof *c->h_cell_seq);
    c->h_cell = malloc(B * sizeof *c->h_cell);
    if (!c->k || !c->v || !c->h_cell_pos || !c->h_cell_seq || !c->h_cell) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "context: out of memory");
        goto fail;
    }
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if ((rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, row_bytes * p->n_ctx, NULL, &c->k[l], err, errlen)) < 0 ||
            (rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, row_bytes * p->n_ctx, NULL, &c->v[l], err, errlen)) < 0)
            goto fail;
    struct {
        cl_mem *m;
        size_t bytes;
    } bufs[] = {
        {&c->cell_pos, p->n_ctx * sizeof(int32_t)}, {&c->cell_seq, p->n_ctx * sizeof(uint64_t)},
        {&c->x, B * E * 4}, {&c->xb, B * CS_MAX(E, Q) * 4}, {&c->q, B * Q * 4}, {&c->att, B * Q * 4},
        {&c->kc, B * KV * 4}, {&c->vc, B * KV * 4}, {&c->hb, B * F * 4}, {&c->hb2, B * F * 4},
        {&c->logits, B * V * 4}, {&c->xo, B * E * 4}, {&c->tok, B * 4}, {&c->pos, B * 4}, {&c->seq, B * 4},
        {&c->cell, B * 4},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bufs); i++)
        if ((rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, bufs[i].bytes, NULL, bufs[i].m, err, errlen)) < 0)
            goto fail;
    cs_fwd_kv_clear(c);
    rc = cs_cl_write(d, c->cell_pos, 0, p->n_ctx * sizeof(int32_t), c->h_cell_pos, err, errlen);
    if (rc == 0)
        rc = cs_cl_write(d, c->cell_seq, 0, p->n_ctx * sizeof(uint64_t), c->h_cell_seq, err, errlen);
    if (rc < 0)
        goto fail;
    *out = c;
    return CLSPEC_OK;
fail:
    cs_err_prefix(err, errlen, rc, "context (n_ctx %u, n_batch %u)", p->n_ctx, p->n_batch);
    cs_fwd_ctx_free(c);
    return rc;
}

/* ---- the pass ---- */

#define TRY(x)                 \
    do {                       \
        int rc_ = (x);         \
        if (rc_ < 0)           \
            return rc_;        \
    } while (0)

/* Assigns a cell to each token (the first free cell; a token whose
 * (seq, pos) is already cached reuses that cell) and uploads the metadata of
 * the touched cells. */
static int assign_cells(struct cs_fwd_ctx *c, const int32_t *pos, const int32_t *seq, int n, char *err,
                        size_t errlen)
{
    int32_t lo = INT32_MAX, hi = -1, next = 0;
    for (int t = 0; t < n; t++) {
        int32_t s = seq ? seq[t] : 0, cell = -1;
        for (int32_t i = 0; i < c->n_used; i++)
            if (c->h_cell_pos[i] == pos[t] && ((c->h_cell_seq[i] >> s) & 1)) {
                cell = i; /* overwrite: same sequence, same position */
                break;
            }
        while (cell < 0 && next < (int32_t)c->p.n_ctx) {
            if (c->h_cell_pos[next] < 0)
                cell = next;
            next++;
        }
        if (cell < 0)
            return cs_err(err, errlen, CLSPEC_E_KV_FULL, "kv cache full (%u cells)", c->p.n_ctx);
        c->h_cell_pos[cell] = pos[t];
        c->h_cell_seq[cell] = 1ull << s;
        c->h_cell[t] = cell;
        lo = CS_MIN(lo, cell);
        hi = CS_MAX(hi, cell);
        if (cell + 1 > c->n_used)
            c->n_used = cell + 1;
    }
    size_t cnt = (size_t)(hi - lo + 1);
    TRY(cs_cl_write(c->dev, c->cell, 0, (size_t)n * 4, c->h_cell, err, errlen));
    TRY(cs_cl_write(c->dev, c->cell_pos, (size_t)lo * 4, cnt * 4, c->h_cell_pos + lo, err, errlen));
    TRY(cs_cl_write(c->dev, c->cell_seq, (size_t)lo * 8, cnt * 8, c->h_cell_seq + lo, err, errlen));
    return CLSPEC_OK;
}

/* y = x . W^T for n rows. With llamacpp_numerics the activations are first
 * rounded the way llama.cpp's CPU backend rounds them for W's type. */
static int mm(struct cs_fwd_ctx *c, const struct cs_weight *w, cl_mem x, cl_mem y, int n, char *err, size_t errlen)
{
    if (c->p.llamacpp_numerics)
        TRY(cs_op_round_rows(c->dev, w->type, x, 0, n, (int)w->n_in, err, errlen));
    return cs_op_matmul(c->dev, w, x, 0, y, 0, (uint32_t)n, err, errlen);
}

/* One pass of n <= n_batch tokens; hidden rows go to row offset t0 of n_all. */
static int pass(struct cs_fwd_ctx *c, const int32_t *tokens, int n, const int32_t *positions, const int32_t *seq_ids,
                const int32_t *rows, int n_rows, float *logits_out, const struct cs_fwd_hidden *hidden, int t0,
                int n_all, char *err, size_t errlen)
{
    struct cs_cl_dev *d = c->dev;
    const struct cs_fwd_model *fm = c->fm;
    const struct cs_hparams *hp = &fm->model->hp;
    const int E = (int)hp->n_embd, Q = (int)cs_hp_q_dim(hp), KV = (int)cs_hp_kv_dim(hp), F = (int)hp->n_ff,
              D = (int)hp->head_dim, V = (int)hp->n_vocab;
    const float eps = hp->rms_eps;
    const struct cs_rope_params rope = {
        .n_rot = (int)hp->n_rot, .neox = hp->rope_style == CS_ROPE_NEOX,
        .freq_base = hp->rope_freq_base, .freq_scale = hp->rope_freq_scale,
    };

    /* inputs */
    TRY(cs_cl_write(d, c->tok, 0, (size_t)n * 4, tokens, err, errlen));
    TRY(cs_cl_write(d, c->pos, 0, (size_t)n * 4, positions, err, errlen));
    if (seq_ids) {
        TRY(cs_cl_write(d, c->seq, 0, (size_t)n * 4, seq_ids, err, errlen));
    } else {
        int32_t zero = 0;
        cl_int e = clEnqueueFillBuffer(d->q, c->seq, &zero, 4, 0, (size_t)n * 4, 0, NULL, NULL);
        TRY(cs_cl_check(e, "clEnqueueFillBuffer(seq)", err, errlen));
    }
    TRY(assign_cells(c, positions, seq_ids, n, err, errlen));

    TRY(cs_op_get_rows(d, &fm->tok_embd, c->tok, 0, n, c->x, 0, err, errlen));
    for (int l = 0; l <= (int)hp->n_layer; l++) {
        if (hidden)
            for (int i = 0; i < hidden->n_layers; i++)
                if (hidden->layers[i] == l) {
                    float *dst = hidden->out + ((size_t)i * n_all + t0) * E;
                    cl_int e = clEnqueueReadBuffer(d->q, c->x, CL_FALSE, 0, (size_t)n * E * 4, dst, 0, NULL, NULL);
                    TRY(cs_cl_check(e, "clEnqueueReadBuffer(hidden)", err, errlen));
                }
        if (l == (int)hp->n_layer)
            break;
        const struct cs_fwd_layer *L = &fm->layers[l];
        const struct cs_kv_view kv = {
            .type_k = c->p.kv_type, .type_v = c->p.kv_type, .n_cells = (int)c->p.n_ctx, .n_kv_head = (int)hp->n_head_kv, .head_dim = D,
            .k = c->k[l], .v = c->v[l], .cell_pos = c->cell_pos, .cell_seq = c->cell_seq,
        };
        /* attention block */
        TRY(cs_op_rmsnorm(d, c->x, 0, L->attn_norm, c->xb, 0, n, E, eps, err, errlen));
        TRY(mm(c, &L->wq, c->xb, c->q, n, err, errlen));
        TRY(mm(c, &L->wk, c->xb, c->kc, n, err, errlen));
        TRY(mm(c, &L->wv, c->xb, c->vc, n, err, errlen));
        if (L->bq)
            TRY(cs_op_add_bias(d, c->q, 0, L->bq, n, Q, err, errlen));
        if (L->bk)
            TRY(cs_op_add_bias(d, c->kc, 0, L->bk, n, KV, err, errlen));
        if (L->bv)
            TRY(cs_op_add_bias(d, c->vc, 0, L->bv, n, KV, err, errlen));
        if (L->q_norm)
            TRY(cs_op_rmsnorm(d, c->q, 0, L->q_norm, c->q, 0, n * (int)hp->n_head, D, eps, err, errlen));
        if (L->k_norm)
            TRY(cs_op_rmsnorm(d, c->kc, 0, L->k_norm, c->kc, 0, n * (int)hp->n_head_kv, D, eps, err, errlen));
        TRY(cs_op_rope(d, c->q, 0, c->pos, n, (int)hp->n_head, D, &rope, err, errlen));
        TRY(cs_op_rope(d, c->kc, 0, c->pos, n, (int)hp->n_head_kv, D, &rope, err, errlen));
        TRY(cs_op_kv_store(d, &kv, c->kc, 0, c->vc, 0, c->cell, n, err, errlen));
        TRY(cs_op_attention(d, &kv, c->n_used, c->q, 0, c->att, 0, c->pos, c->seq, n, (int)hp->n_head, true,
                            1.0f / sqrtf((float)D), err, errlen));
        TRY(mm(c, &L->wo, c->att, c->xb, n, err, errlen));
        TRY(cs_op_add(d, c->x, 0, c->xb, 0, c->x, 0, (size_t)n * E, err, errlen));
        /* feed-forward block */
        TRY(cs_op_rmsnorm(d, c->x, 0, L->ffn_norm, c->xb, 0, n, E, eps, err, errlen));
        TRY(mm(c, &L->w_gate, c->xb, c->hb, n, err, errlen));
        TRY(mm(c, &L->w_up, c->xb, c->hb2, n, err, errlen));
        TRY(cs_op_swiglu(d, c->hb, 0, c->hb2, 0, c->hb, 0, (size_t)n * F, err, errlen));
        TRY(mm(c, &L->w_down, c->hb, c->xb, n, err, errlen));
        TRY(cs_op_add(d, c->x, 0, c->xb, 0, c->x, 0, (size_t)n * E, err, errlen));
    }
    if (n_rows == 0)
        return cs_cl_finish(d, err, errlen);
    /* gather the requested rows, then final norm and output projection on them only */
    for (int i = 0; i < n_rows; i++) {
        cl_int e = clEnqueueCopyBuffer(d->q, c->x, c->xo, (size_t)rows[i] * E * 4, (size_t)i * E * 4,
                                       (size_t)E * 4, 0, NULL, NULL);
        TRY(cs_cl_check(e, "clEnqueueCopyBuffer(logit rows)", err, errlen));
    }
    TRY(cs_op_rmsnorm(d, c->xo, 0, fm->output_norm, c->xo, 0, n_rows, E, eps, err, errlen));
    const struct cs_weight *out_w = hp->tied_output ? &fm->tok_embd : &fm->output;
    TRY(mm(c, out_w, c->xo, c->logits, n_rows, err, errlen));
    return cs_cl_read(d, c->logits, 0, (size_t)n_rows * V * 4, logits_out, err, errlen);
}

int cs_forward(struct cs_fwd_ctx *c, const int32_t *tokens, int n, const int32_t *positions, const int32_t *seq_ids,
               const int32_t *out_rows, int n_out, float *logits_out, const struct cs_fwd_hidden *hidden, char *err,
               size_t errlen)
{
    const struct cs_hparams *hp = &c->fm->model->hp;
    if (n <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forward: no tokens");
    int32_t last = n - 1;
    if (!out_rows) {
        out_rows = &last;
        n_out = 1;
    }
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: token %d (index %d) out of range [0, %u)",
                          tokens[t], t, hp->n_vocab);
        if (positions[t] < 0)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: negative position at index %d", t);
        if (seq_ids && (seq_ids[t] < 0 || seq_ids[t] > 63))
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: sequence id %d out of range 0..63", seq_ids[t]);
    }
    for (int i = 0; i < n_out; i++)
        if (out_rows[i] < 0 || out_rows[i] >= n || (i > 0 && out_rows[i] <= out_rows[i - 1]))
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: logits rows must be increasing indices < %d", n);
    if (hidden)
        for (int i = 0; i < hidden->n_layers; i++)
            if (hidden->layers[i] < 0 || hidden->layers[i] > (int32_t)hp->n_layer)
                return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: hidden layer %d out of range 0..%u",
                              hidden->layers[i], hp->n_layer);
    /* split into passes of n_batch tokens; each pass returns its own rows */
    const int B = (int)c->p.n_batch;
    int oi = 0;
    for (int t0 = 0; t0 < n; t0 += B) {
        int cnt = CS_MIN(B, n - t0);
        int nr = 0, first = oi;
        int32_t *rbuf = malloc((size_t)B * sizeof *rbuf);
        if (!rbuf)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory");
        while (oi < n_out && out_rows[oi] < t0 + cnt)
            rbuf[nr++] = out_rows[oi++] - t0;
        int rc = pass(c, tokens + t0, cnt, positions + t0, seq_ids ? seq_ids + t0 : NULL, rbuf, nr,
                      logits_out + (size_t)first * hp->n_vocab, hidden, t0, n, err, errlen);
        free(rbuf);
        if (rc < 0)
            return rc;
    }
    return CLSPEC_OK;
}

/* First version (lead): a wrapper over cs_forward with this context's own
 * cells; the fwd helper replaces it with the cs_kv-based pass. A sequence
 * whose new rows exceed the free cells left after the sequences before it
 * is refused with CLSPEC_E_KV_FULL. */
int cs_forward_batch(struct cs_fwd_ctx *c, const struct cs_batch *b, float *logits_out,
                     const struct cs_fwd_hidden *hidden, int *seq_rc, char *err, size_t errlen)
{
    int rc_local[CS_MAX_SEQ];
    if (!seq_rc)
        seq_rc = rc_local;
    for (int s = 0; s < CS_MAX_SEQ; s++)
        seq_rc[s] = CLSPEC_OK;
    if (b->n <= 0)
        return CLSPEC_OK;
    int need[CS_MAX_SEQ] = {0};
    for (int i = 0; i < b->n; i++) {
        if (b->seq[i] < 0 || b->seq[i] >= CS_MAX_SEQ)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "forward: sequence id %d out of range", b->seq[i]);
        need[b->seq[i]]++;
    }
    int32_t free_cells = 0;
    for (uint32_t i = 0; i < c->p.n_ctx; i++)
        free_cells += c->h_cell_pos[i] < 0;
    for (int s = 0; s < CS_MAX_SEQ; s++) {
        if (!need[s])
            continue;
        if (need[s] > free_cells)
            seq_rc[s] = CLSPEC_E_KV_FULL;
        else
            free_cells -= need[s];
    }
    int32_t *tok = malloc((size_t)b->n * 4 * 4);
    if (!tok)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory");
    int32_t *pos = tok + b->n, *seq = pos + b->n, *rows = seq + b->n;
    int n = 0, n_rows = 0, n_logit_rows = cs_batch_n_logits(b);
    int32_t *dst_row = malloc((size_t)(n_logit_rows ? n_logit_rows : 1) * sizeof *dst_row);
    if (!dst_row) {
        free(tok);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory");
    }
    for (int i = 0, li = 0; i < b->n; i++) {
        bool keep = seq_rc[b->seq[i]] == CLSPEC_OK;
        if (keep) {
            tok[n] = b->token[i];
            pos[n] = b->pos[i];
            seq[n] = b->seq[i];
            if (b->logits[i]) {
                rows[n_rows] = n;
                dst_row[n_rows++] = li;
            }
            n++;
        }
        li += b->logits[i] != 0;
    }
    int rc = CLSPEC_OK;
    if (n > 0) {
        const size_t V = c->fm->model->hp.n_vocab;
        float *tmp = n_rows ? malloc((size_t)n_rows * V * sizeof *tmp) : NULL;
        if (n_rows && !tmp)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "forward: out of memory");
        else if (n_rows == 0)
            rc = cs_forward(c, tok, n, pos, seq, rows, 0, NULL, hidden, err, errlen);
        else
            rc = cs_forward(c, tok, n, pos, seq, rows, n_rows, tmp, hidden, err, errlen);
        for (int r = 0; rc == CLSPEC_OK && r < n_rows; r++)
            memcpy(logits_out + (size_t)dst_row[r] * V, tmp + (size_t)r * V, V * sizeof *tmp);
        free(tmp);
    }
    free(dst_row);
    free(tok);
    return rc;
}
