/* host_model.c: the host services for draft models (struct clspec_host,
 * provided since ABI 1.1): a GGUF loaded onto one of the engine's devices,
 * contexts with their own typed KV cache, batched decode and logits; since
 * 1.2 MTP heads (a file with {arch}.nextn_predict_layers > 0 loads as its
 * nextn block, src/mtp_fwd.h: decode rows take a token and an embedding),
 * ctx_hidden, ctx_decode_shared and the target's tensors. The opaque
 * clspec_model / clspec_ctx / clspec_tensor handles are defined here. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "engine.h"
#include "forward.h"
#include "mtp_fwd.h"
#include "spec/host_model.h"

struct clspec_model {
    struct cs_model *m;         /* owned */
    struct cs_tokenizer *tok;   /* owned */
    struct cs_fwd_model *fm;    /* owned */
    int32_t device;             /* engine device index */
    struct cs_mtp_model *mtp;   /* owned; an MTP head (m, tok, fm are then NULL) */
    const struct cs_engine *e;  /* borrowed: the target (an MTP head's tokenizer) */
};

struct clspec_tensor {
    const struct cs_weight *w;  /* a matrix of the target's weights, or NULL */
    cl_mem vec;                 /* an f32 vector (output_norm), or NULL */
    uint32_t type;              /* enum cs_type */
    int64_t rows, row_len;
    int32_t device;             /* engine device index */
};

struct clspec_ctx {
    struct clspec_model *model; /* borrowed */
    struct cs_fwd_ctx *c;       /* owned */
    uint32_t n_batch;
    float *logits;              /* (n_batch, n_vocab) rows kept by the last decode */
    int32_t n_logits;
    int32_t *rows;              /* (n_batch) */
    struct cs_mtp_ctx *mc;      /* owned: the context of an MTP head (c is then NULL) */
};

/* Engine device index of d, -1 when not one of the engine's. */
static int32_t dev_index(const struct cs_engine *e, const struct cs_cl_dev *d)
{
    for (int i = 0; i < e->n_dev; i++)
        if (e->dev[i] == d)
            return i;
    return -1;
}

static int model_load(const struct clspec_host *h, const char *path, int32_t device, clspec_model **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    const struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "model_load: no target engine");
    if (device < 0)
        device = e->n_dev - 1;
    if (device >= e->n_dev)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: device %d does not exist (the target has devices 0..%d)",
                      path, device, e->n_dev - 1);
    clspec_model *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "model_load: out of memory");
    m->device = device;
    m->e = e;
    /* a file with nextn blocks is an MTP head */
    struct cs_gguf *g = NULL;
    struct cs_hparams hp;
    int rc = cs_gguf_open(path, &g, err, errlen);
    if (rc == 0 && (rc = cs_hparams_read(g, &hp, err, errlen)) == 0 && hp.n_layer_total > hp.n_layer) {
        cs_gguf_close(g);
        rc = cs_mtp_model_load(path, e->dev[device], e->model, e->fm, &m->mtp, err, errlen);
        if (rc < 0) {
            free(m);
            return rc;
        }
        *out = m;
        return CLSPEC_OK;
    }
    if (rc == 0)
        rc = cs_model_from_gguf(g, &m->m, err, errlen);
    else
        cs_gguf_close(g);
    if (rc == 0)
        rc = cs_tokenizer_load(m->m->gguf, &m->tok, err, errlen);
    if (rc == 0)
        rc = cs_fwd_model_load(m->m, e->dev[device], false, &m->fm, err, errlen);
    if (rc < 0) {
        cs_fwd_model_free(m->fm);
        cs_tokenizer_free(m->tok);
        cs_model_free(m->m);
        free(m);
        return rc;
    }
    *out = m;
    return CLSPEC_OK;
}

static void model_free(clspec_model *m)
{
    if (!m)
        return;
    cs_mtp_model_free(m->mtp);
    cs_fwd_model_free(m->fm);
    cs_tokenizer_free(m->tok);
    cs_model_free(m->m);
    free(m);
}

static int model_info(const clspec_model *m, struct clspec_model_info *out)
{
    if (m->mtp) {
        const struct cs_hparams *hp = &m->mtp->hp;
        struct clspec_model_info i = {
            .size = sizeof i, .arch = hp->arch_name, .n_vocab = hp->n_vocab, .n_embd = hp->n_embd, .n_layer = 1,
            .n_ctx_train = hp->n_ctx_train, .bos = m->e->tok ? cs_tokenizer_bos(m->e->tok) : -1,
            .eos = m->e->tok ? cs_tokenizer_eos(m->e->tok) : -1, .device = m->device,
            .n_nextn = hp->n_layer_total - hp->n_layer, .path = m->mtp->g->path,
        };
        cs_host_fill(out, &i, sizeof i);
        return CLSPEC_OK;
    }
    struct clspec_model_info i = {
        .size = sizeof i, .arch = m->m->hp.arch_name, .n_vocab = m->m->hp.n_vocab, .n_embd = m->m->hp.n_embd,
        .n_layer = m->m->hp.n_layer, .n_ctx_train = m->m->hp.n_ctx_train, .bos = cs_tokenizer_bos(m->tok),
        .eos = cs_tokenizer_eos(m->tok), .device = m->device, .n_nextn = 0, .path = m->m->gguf->path,
    };
    cs_host_fill(out, &i, sizeof i);
    return CLSPEC_OK;
}

static const char *model_token_text(const clspec_model *m, int32_t id)
{
    if (m->mtp) { /* a head speaks the target's vocabulary (n_vocab checked at load) */
        if (!m->e->tok || id < 0 || id >= cs_tokenizer_n_vocab(m->e->tok))
            return NULL;
        size_t len = 0;
        return cs_tokenizer_text(m->e->tok, id, &len);
    }
    if (id < 0 || id >= cs_tokenizer_n_vocab(m->tok))
        return NULL;
    size_t len = 0;
    return cs_tokenizer_text(m->tok, id, &len);
}

static void ctx_free(clspec_ctx *c)
{
    if (!c)
        return;
    cs_fwd_ctx_free(c->c);
    cs_mtp_ctx_free(c->mc);
    free(c->logits);
    free(c->rows);
    free(c);
}

static int ctx_new(clspec_model *m, const struct clspec_ctx_params *p, clspec_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    if (p->non_causal)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "ctx_new: non-causal contexts are not provided yet");
    if (p->n_seq > 64)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "ctx_new: %u sequences (at most 64)", p->n_seq);
    clspec_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_new: out of memory");
    c->model = m;
    c->n_batch = p->n_batch ? p->n_batch : 64;
    if (m->mtp) {
        int rc = cs_mtp_ctx_new(m->mtp, p->n_ctx, c->n_batch, p->n_seq ? p->n_seq : 1, p->type_k, p->type_v, &c->mc,
                                err, errlen);
        if (rc < 0) {
            free(c);
            return rc;
        }
        *out = c;
        return CLSPEC_OK;
    }
    c->logits = malloc((size_t)c->n_batch * m->m->hp.n_vocab * sizeof *c->logits);
    c->rows = malloc((size_t)c->n_batch * sizeof *c->rows);
    struct cs_fwd_ctx_params fp = {.n_ctx = p->n_ctx, .n_batch = c->n_batch, .type_k = p->type_k,
                                    .type_v = p->type_v, .n_seq_max = p->n_seq ? p->n_seq : 1};
    int rc = !c->logits || !c->rows ? cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_new: out of memory")
                                    : cs_fwd_ctx_new(m->fm, &fp, &c->c, err, errlen);
    if (rc < 0) {
        ctx_free(c);
        return rc;
    }
    *out = c;
    return CLSPEC_OK;
}

static int ctx_seq_rm(clspec_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    if (c->mc)
        return cs_kv_seq_rm(c->mc->kv, seq, p0, p1, err, errlen);
    return cs_fwd_kv_seq_rm(c->c, seq, p0, p1, err, errlen);
}

static int ctx_decode(clspec_ctx *c, const struct clspec_decode *d, char *err, size_t errlen)
{
    c->n_logits = 0;
    if (d->n <= 0 || (uint32_t)d->n > c->n_batch)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "ctx_decode: %d rows (want 1..n_batch %u)", d->n, c->n_batch);
    if (c->mc) {
        if (!d->tokens || !d->embd)
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "ctx_decode: an MTP head takes per row a token and an embedding (the hidden state)");
        return cs_mtp_decode(c->mc, d->n, d->tokens, d->embd, d->pos, d->seq, d->logits, NULL, err, errlen);
    }
    if (!d->tokens || d->embd)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "ctx_decode: embedding inputs are not provided yet");
    int32_t n_rows = 0;
    for (int32_t i = 0; i < d->n; i++)
        if (d->logits ? d->logits[i] != 0 : i == d->n - 1)
            c->rows[n_rows++] = i;
    int rc = cs_forward(c->c, d->tokens, d->n, d->pos, d->seq, c->rows, n_rows, n_rows ? c->logits : NULL, NULL,
                        err, errlen);
    if (rc == 0)
        c->n_logits = n_rows;
    return rc;
}

static const float *ctx_logits(clspec_ctx *c, int32_t i)
{
    if (c->mc)
        return i >= 0 && i < c->mc->n_logits ? c->mc->logits_h + (size_t)i * c->mc->mm->hp.n_vocab : NULL;
    if (i < 0 || i >= c->n_logits)
        return NULL;
    return c->logits + (size_t)i * c->model->m->hp.n_vocab;
}

void cs_host_fill(void *out, const void *full, size_t full_size)
{
    uint32_t want;
    memcpy(&want, out, sizeof want);
    size_t n = want && want < full_size ? want : full_size;
    memcpy(out, full, n);
    want = (uint32_t)n;
    memcpy(out, &want, sizeof want);
}

/* ---- 1.2: MTP heads' hidden states and shared output, the target's tensors ---- */

static const float *ctx_hidden(clspec_ctx *c, int32_t layer, int32_t *n_rows)
{
    if (n_rows)
        *n_rows = 0;
    if (!c->mc || layer != 1 || c->mc->n_rows == 0) /* a head: layer 1 = its block's output, before the norm */
        return NULL;
    if (n_rows)
        *n_rows = c->mc->n_rows;
    return c->mc->hidden;
}

static int ctx_decode_shared(clspec_ctx *c, const struct clspec_decode *d, const clspec_tensor *output, char *err,
                             size_t errlen)
{
    if (!c->mc)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "ctx_decode_shared: only MTP heads share the target's output");
    if (!output || !output->w)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "ctx_decode_shared: output must be a matrix of the target");
    const struct cs_engine *e = c->model->e;
    if (output->device != c->model->device)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "ctx_decode_shared: the target's tensor is on device %d (%s), the MTP head on device %d (%s); "
                      "use ctx_decode (the head holds a copy) or load the head on device %d",
                      output->device, e->dev[output->device]->info.name, c->model->device,
                      e->dev[c->model->device]->info.name, output->device);
    if (output->rows != (int64_t)c->mc->mm->hp.n_vocab || output->row_len != (int64_t)c->mc->mm->hp.n_embd)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "ctx_decode_shared: output is not (n_vocab, n_embd)");
    c->n_logits = 0;
    if (d->n <= 0 || (uint32_t)d->n > c->n_batch || !d->tokens || !d->embd)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "ctx_decode_shared: 1..%u rows, each a token and an embedding",
                      c->n_batch);
    return cs_mtp_decode(c->mc, d->n, d->tokens, d->embd, d->pos, d->seq, d->logits, output->w, err, errlen);
}

static const clspec_tensor *target_tensor(const struct clspec_host *h, int which)
{
    struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e || which < CLSPEC_TENSOR_TOKEN_EMBD || which > CLSPEC_TENSOR_OUTPUT_NORM)
        return NULL;
    if (!pl->tensors && !(pl->tensors = calloc(3, sizeof *pl->tensors)))
        return NULL;
    const struct cs_fwd_model *fm = e->fm;
    clspec_tensor *t = &pl->tensors[which];
    const struct cs_weight *w = which == CLSPEC_TENSOR_TOKEN_EMBD ? &fm->tok_embd
                                : which == CLSPEC_TENSOR_OUTPUT   ? (fm->output_is_embd ? &fm->tok_embd : &fm->output)
                                                                  : NULL;
    t->w = w;
    t->vec = w ? NULL : fm->output_norm;
    t->type = w ? w->type : CS_TYPE_F32;
    t->rows = w ? w->n_out : 1;
    t->row_len = w ? w->n_in : e->model->hp.n_embd;
    t->device = dev_index(e, fm->devs[which == CLSPEC_TENSOR_TOKEN_EMBD ? fm->emb_dev : fm->out_dev]);
    return t;
}

static int tensor_info(const clspec_tensor *t, uint32_t *type, int64_t *n_rows, int64_t *row_len, int32_t *device)
{
    if (!t)
        return CLSPEC_E_INVAL;
    if (type)
        *type = t->type;
    if (n_rows)
        *n_rows = t->rows;
    if (row_len)
        *row_len = t->row_len;
    if (device)
        *device = t->device;
    return CLSPEC_OK;
}

void cs_host_model_entries(struct clspec_host *h)
{
    h->model_load = model_load;
    h->model_free = model_free;
    h->model_info = model_info;
    h->model_token_text = model_token_text;
    h->ctx_new = ctx_new;
    h->ctx_free = ctx_free;
    h->ctx_seq_rm = ctx_seq_rm;
    h->ctx_decode = ctx_decode;
    h->ctx_logits = ctx_logits;
    h->target_tensor = target_tensor; /* 1.2 */
    h->tensor_info = tensor_info;
    h->ctx_decode_shared = ctx_decode_shared;
    h->ctx_hidden = ctx_hidden;
}
