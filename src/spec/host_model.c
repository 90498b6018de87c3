/* host_model.c: the host services for draft models (struct clspec_host,
 * provided since ABI 1.1): a GGUF loaded onto one of the engine's devices,
 * contexts with their own typed KV cache, batched decode and logits; since
 * 1.2 target_embed and target_head, and ctx_hidden (no plain model keeps
 * hidden states: always none). Models that borrow the target's tensors or
 * take embeddings (the 1.2 CLSPEC_MODEL_TARGET_TENSORS / CLSPEC_MODEL_NEXTN
 * flags) are not provided here since 1.4: a plugin runs its own network on
 * the device compute service (host_compute.c); old plugins still load and
 * get a clear error from model_load. The opaque
 * clspec_model / clspec_ctx handles are defined here. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "engine/engine.h"
#include "kv/kv_rec.h"
#include "kv/batch.h"
#include "model/forward.h"
#include "spec/host_model.h"

struct clspec_model {
    struct cs_model *m;         /* owned */
    struct cs_tokenizer *tok;   /* owned */
    struct cs_fwd_model *fm;    /* owned */
    int32_t device;             /* engine device index */
    uint32_t rec_keep;          /* hybrid drafters: recurrent states kept per sequence (0: the default) */
};

/* target_head's buffers on the target's output device (struct cs_plugin.hpriv). */
struct cs_host_priv {
    cl_mem x, logits;           /* (cap, n_embd), (cap, n_vocab) */
    int32_t cap;
};

void cs_host_model_priv_free(struct cs_plugin *pl)
{
    struct cs_host_priv *hp = pl->hpriv;
    if (!hp)
        return;
    if (hp->x)
        clReleaseMemObject(hp->x);
    if (hp->logits)
        clReleaseMemObject(hp->logits);
    free(hp);
    pl->hpriv = NULL;
}

struct clspec_ctx {
    struct clspec_model *model; /* borrowed */
    struct cs_fwd_ctx *c;       /* owned */
    uint32_t n_batch;
    float *logits;              /* (n_batch, n_vocab) rows kept by the last decode */
    int32_t n_logits;
    int32_t *rows;              /* (n_batch) */
    struct cs_batch chain;      /* ctx_decode_chain's rows, kept (grown) across calls */
};

static int model_load(const struct clspec_host *h, const char *path, int32_t device, uint32_t flags,
                      clspec_model **out, char *err, size_t errlen)
{
    *out = NULL;
    const uint32_t known = CLSPEC_MODEL_TARGET_TENSORS | CLSPEC_MODEL_NEXTN;
    if (flags & ~known)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "model_load: flags 0x%x unknown to this host (ABI %u.%u)",
                      flags & ~known, CLSPEC_SPEC_ABI_MAJOR, CLSPEC_SPEC_ABI_MINOR);
    const struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "model_load: no target engine");
    if (flags & CLSPEC_MODEL_NEXTN)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "model_load: CLSPEC_MODEL_NEXTN is not provided by this host (ABI %u.%u); use the compute "
                      "service (1.4)",
                      CLSPEC_SPEC_ABI_MAJOR, CLSPEC_SPEC_ABI_MINOR);
    if (!path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "model_load: no path");
    if (device < 0)
        device = e->n_dev - 1;
    if (device >= e->n_dev)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: device %d does not exist (the target has devices 0..%d)",
                      path, device, e->n_dev - 1);
    clspec_model *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "model_load: out of memory");
    m->device = device;
    /* a hybrid drafter rolls back up to its n_max drafted tokens: keep that many states and one more */
    for (int i = 0; i < pl->n_kv; i++)
        if (!strcmp(pl->kv[i].key, "n_max")) {
            long v = strtol(pl->kv[i].value, NULL, 10);
            m->rec_keep = v >= CS_KV_REC_KEEP_DEFAULT && v <= 1024 ? (uint32_t)v + 1 : 0;
        }
    struct cs_gguf *g = NULL;
    int rc = cs_gguf_open(path, &g, err, errlen);
    if (rc == 0 && (flags & CLSPEC_MODEL_TARGET_TENSORS)) {
        cs_gguf_close(g);
        free(m);
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "%s: the target's tensors (CLSPEC_MODEL_TARGET_TENSORS) are not lent to loaded models by "
                      "this host (ABI %u.%u); a drafter that borrows them runs on the compute service (1.4: "
                      "target_weight)",
                      path, CLSPEC_SPEC_ABI_MAJOR, CLSPEC_SPEC_ABI_MINOR);
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
    cs_fwd_model_free(m->fm);
    cs_tokenizer_free(m->tok);
    cs_model_free(m->m);
    free(m);
}

static int model_info(const clspec_model *m, struct clspec_model_info *out)
{
    struct clspec_model_info i = {
        .size = sizeof i, .arch = m->m->hp.arch_name, .n_vocab = m->m->hp.n_vocab, .n_embd = m->m->hp.n_embd,
        .n_layer = m->m->hp.n_layer, .n_ctx_train = m->m->hp.n_ctx_train, .bos = cs_tokenizer_bos(m->tok),
        .eos = cs_tokenizer_eos(m->tok), .device = m->device,
    };
    cs_host_fill(out, &i, sizeof i);
    return CLSPEC_OK;
}

static const char *model_token_text(const clspec_model *m, int32_t id)
{
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
    free(c->logits);
    free(c->rows);
    cs_batch_free(&c->chain);
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
    c->logits = malloc((size_t)c->n_batch * m->m->hp.n_vocab * sizeof *c->logits);
    c->rows = malloc((size_t)c->n_batch * sizeof *c->rows);
    struct cs_fwd_ctx_params fp = {.n_ctx = p->n_ctx, .n_batch = c->n_batch, .type_k = p->type_k,
                                    .type_v = p->type_v, .n_seq_max = p->n_seq ? p->n_seq : 1,
                                    .n_rec_keep = m->rec_keep};
    int rc = !c->logits || !c->rows ? cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_new: out of memory")
                                    : cs_fwd_ctx_new(m->fm, &fp, &c->c, err, errlen);
    if (rc == CLSPEC_OK) /* the drafter's kernels too are ready before the first request */
        rc = cs_engine_prepare_ctx(c->c, false, false, err, errlen);
    if (rc < 0) {
        ctx_free(c);
        return rc;
    }
    *out = c;
    return CLSPEC_OK;
}

static int ctx_seq_rm(clspec_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    return cs_kv_seq_rm(c->c->kv, seq, p0, p1, err, errlen);
}

static int ctx_decode(clspec_ctx *c, const struct clspec_decode *d, char *err, size_t errlen)
{
    c->n_logits = 0;
    if (d->n <= 0 || (uint32_t)d->n > c->n_batch)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "ctx_decode: %d rows (want 1..n_batch %u)", d->n, c->n_batch);
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

/* 1.6: d's rows, then depth - 1 rows per kept row, tokens chained on the device (cs_forward_chain). */
static int ctx_decode_chain(clspec_ctx *c, const struct clspec_decode *d, int32_t depth, int32_t *amax, char *err,
                            size_t errlen)
{
    c->n_logits = 0;
    if (!d || d->n <= 0 || (uint32_t)d->n > c->n_batch || !d->tokens || d->embd || !d->pos || !d->seq || !amax ||
        depth < 1 || depth > 64)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "ctx_decode_chain: %d rows (want 1..n_batch %u, tokens, "
                      "positions, sequences), depth %d (1..64), amax", d ? d->n : 0, c->n_batch, depth);
    int32_t head[64], n_chain = 0;
    for (int32_t i = 0; i < d->n; i++)
        if (d->logits ? d->logits[i] != 0 : i == d->n - 1) {
            if (n_chain == 64)
                return cs_err(err, errlen, CLSPEC_E_RANGE, "ctx_decode_chain: more than 64 chains");
            head[n_chain++] = i;
        }
    struct cs_batch *b = &c->chain;
    const int need = d->n + (depth - 1) * n_chain;
    if (b->cap < need) {
        cs_batch_free(b);
        CS_TRY(cs_batch_init(b, need, err, errlen));
    }
    cs_batch_clear(b);
    int rc = CLSPEC_OK;
    for (int32_t i = 0; i < d->n && rc == CLSPEC_OK; i++)
        rc = cs_batch_add(b, d->tokens[i], d->pos[i], d->seq[i], d->logits ? d->logits[i] != 0 : i == d->n - 1,
                          err, errlen);
    for (int32_t k = 1; k < depth; k++) /* tokens: placeholders, the device puts the argmaxes there */
        for (int32_t j = 0; j < n_chain && rc == CLSPEC_OK; j++)
            rc = cs_batch_add(b, 0, d->pos[head[j]] + k, d->seq[head[j]], true, err, errlen);
    return rc == CLSPEC_OK ? cs_forward_chain(c->c, b, d->n, n_chain, amax, err, errlen) : rc;
}

static const float *ctx_logits(clspec_ctx *c, int32_t i)
{
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

/* ---- 1.2: hidden states, the target's embedding and head ---- */

/* No context of this host keeps hidden states (heads run on the compute service). */
static const float *ctx_hidden(clspec_ctx *c, int32_t *n_rows)
{
    (void)c;
    if (n_rows)
        *n_rows = 0;
    return NULL;
}

static int target_embed(const struct clspec_host *h, const int32_t *tokens, int32_t n, float *out, char *err,
                        size_t errlen)
{
    const struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "target_embed: no target engine");
    const struct cs_gguf_tensor *t = e->model->tok_embd;
    const uint32_t E = e->model->hp.n_embd, V = e->model->hp.n_vocab;
    uint64_t rb = 0;
    if (!cs_row_bytes(t->type, E, &rb))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "target_embed: token_embd type %s", cs_type_name(t->type));
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= V)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "target_embed: token %d out of range [0, %u)", tokens[i], V);
        if (cs_dequantize_row(t->type, (const uint8_t *)t->data + (uint64_t)tokens[i] * rb, out + (size_t)i * E,
                              E) != 0)
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "target_embed: token_embd type %s",
                          cs_type_name(t->type));
    }
    return CLSPEC_OK;
}

static int target_head(const struct clspec_host *h, const float *hidden, int32_t n, float *logits, char *err,
                       size_t errlen)
{
    struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "target_head: no target engine");
    const struct cs_fwd_model *fm = e->fm;
    struct cs_cl_dev *d = fm->devs[fm->out_dev];
    const size_t E = e->model->hp.n_embd, V = e->model->hp.n_vocab;
    struct cs_host_priv *hp = pl->hpriv;
    if (!hp) {
        if (!(hp = calloc(1, sizeof *hp)))
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "target_head: out of memory");
        pl->hpriv = hp;
        hp->cap = 64;
        int rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)hp->cap * E * 4, NULL, &hp->x, err, errlen);
        if (rc == 0)
            rc = cs_cl_alloc(d, CL_MEM_READ_WRITE, (size_t)hp->cap * V * 4, NULL, &hp->logits, err, errlen);
        if (rc < 0) {
            cs_host_model_priv_free(pl);
            return rc;
        }
    }
    const struct cs_weight *w = fm->output_is_embd ? &fm->tok_embd : &fm->output;
    for (int32_t r0 = 0; r0 < n; r0 += hp->cap) {
        int32_t m = n - r0 < hp->cap ? n - r0 : hp->cap;
        int rc = cs_cl_write(d, hp->x, 0, (size_t)m * E * 4, hidden + (size_t)r0 * E, err, errlen);
        if (rc == 0)
            rc = cs_op_rmsnorm(d, hp->x, 0, fm->output_norm, hp->x, 0, m, (int)E, e->model->hp.rms_eps, err, errlen);
        if (rc == 0)
            rc = cs_op_matmul(d, w, hp->x, 0, hp->logits, 0, (uint32_t)m, err, errlen);
        if (rc == 0)
            rc = cs_cl_read(d, hp->logits, 0, (size_t)m * V * 4, logits + (size_t)r0 * V, err, errlen);
        if (rc < 0)
            return cs_err_prefix(err, errlen, rc, "target_head");
    }
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
    h->target_embed = target_embed; /* 1.2 */
    h->target_head = target_head;
    h->ctx_hidden = ctx_hidden;
    h->ctx_decode_chain = ctx_decode_chain; /* 1.6 */
}
