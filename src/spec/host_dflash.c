/* host_dflash.c: see host_dflash.h. DFlash handles are told apart from the
 * wrapped entries' handles by a registry of the handles made here (the
 * wrapped ones are opaque to this file). */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dflash_fwd.h"
#include "engine.h"
#include "spec/host_dflash.h"
#include "spec/host_model.h"
#include "spec/loader.h"
#include "tokenizer.h"

struct df_model {
    struct cs_dflash_model *dm;   /* owned */
    const struct cs_engine *e;    /* borrowed: the target */
    int32_t device;               /* engine device index */
};

struct df_ctx {
    struct df_model *model;       /* borrowed */
    struct cs_dflash_ctx *c;      /* owned */
    bool causal;
    float *logits;                /* (n_batch, n_vocab) rows kept by the last decode */
    int32_t n_logits;
};

/* the wrapped (ordinary) entries: the same static functions for every host */
static struct clspec_host base;

/* ---- registry ---- */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static const void **reg;
static size_t reg_n, reg_cap;

static bool reg_has(const void *p)
{
    bool yes = false;
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n && !yes; i++)
        yes = reg[i] == p;
    pthread_mutex_unlock(&reg_mu);
    return yes;
}

static bool reg_add(const void *p)
{
    bool ok = true;
    pthread_mutex_lock(&reg_mu);
    if (reg_n == reg_cap) {
        size_t cap = reg_cap ? 2 * reg_cap : 16;
        const void **r = realloc(reg, cap * sizeof *r);
        if (r) {
            reg = r;
            reg_cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok)
        reg[reg_n++] = p;
    pthread_mutex_unlock(&reg_mu);
    return ok;
}

static void reg_del(const void *p)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_n; i++)
        if (reg[i] == p) {
            reg[i] = reg[--reg_n];
            break;
        }
    if (reg_n == 0) {
        free(reg);
        reg = NULL;
        reg_cap = 0;
    }
    pthread_mutex_unlock(&reg_mu);
}

#define DFM(m) ((struct df_model *)(void *)(m))
#define DFC(c) ((struct df_ctx *)(void *)(c))

/* ---- models ---- */

static int model_load(const struct clspec_host *h, const char *path, int32_t device, uint32_t flags,
                      clspec_model **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!path || !cs_dflash_is_dflash_file(path))
        return base.model_load(h, path, device, flags, out, err, errlen);
    const struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "model_load: no target engine");
    if (device < 0) /* the device of the target's output (and, on one device, of its token_embd) */
        for (int32_t i = 0; i < e->n_dev; i++)
            if (e->dev[i] == e->fm->devs[e->fm->out_dev])
                device = i;
    if (device >= e->n_dev)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: device %d does not exist (the target has devices 0..%d)",
                      path, device, e->n_dev - 1);
    struct cs_cl_dev *outd = e->fm->devs[e->fm->out_dev];
    if (e->dev[device] != outd) {
        int32_t oi = 0;
        for (int32_t i = 0; i < e->n_dev; i++)
            if (e->dev[i] == outd)
                oi = i;
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "%s: a dflash drafter borrows the target's output matrix, which is on device %d (%s); it "
                      "cannot run on device %d (%s): set the speculator's `device` to %d or leave it unset",
                      path, oi, outd->info.name, device, e->dev[device]->info.name, oi);
    }
    struct df_model *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "model_load: out of memory");
    m->e = e;
    m->device = device;
    int rc = cs_dflash_model_load(path, e->fm, e->dev[device], &m->dm, err, errlen);
    if (rc == CLSPEC_OK && !reg_add(m))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "model_load: out of memory");
    if (rc < 0) {
        cs_dflash_model_free(m->dm);
        free(m);
        return rc;
    }
    *out = (clspec_model *)(void *)m;
    return CLSPEC_OK;
}

static void model_free(clspec_model *mm)
{
    if (!mm)
        return;
    if (!reg_has(mm)) {
        base.model_free(mm);
        return;
    }
    struct df_model *m = DFM(mm);
    reg_del(m);
    cs_dflash_model_free(m->dm);
    free(m);
}

static int model_info(const clspec_model *mm, struct clspec_model_info *out)
{
    if (!reg_has(mm))
        return base.model_info(mm, out);
    const struct df_model *m = DFM(mm);
    const struct cs_dflash_hparams *hp = &m->dm->hp;
    struct clspec_model_info i = {
        .size = sizeof i, .arch = "dflash", .n_vocab = m->dm->khp.n_vocab, .n_embd = hp->n_embd,
        .n_layer = hp->n_layer, .n_ctx_train = hp->n_ctx_train, .bos = cs_tokenizer_bos(m->e->tok),
        .eos = cs_tokenizer_eos(m->e->tok), .device = m->device,
    };
    cs_host_fill(out, &i, sizeof i);
    return CLSPEC_OK;
}

/* A drafter has the target's vocabulary (upstream copies the tokenizer). */
static const char *model_token_text(const clspec_model *mm, int32_t id)
{
    if (!reg_has(mm))
        return base.model_token_text(mm, id);
    const struct df_model *m = DFM(mm);
    if (id < 0 || id >= cs_tokenizer_n_vocab(m->e->tok))
        return NULL;
    size_t len = 0;
    return cs_tokenizer_text(m->e->tok, id, &len);
}

static int32_t model_key_ints(const clspec_model *mm, const char *key, int64_t *out, int32_t cap)
{
    if (!mm || !key || !reg_has(mm))
        return -1;
    const struct cs_gguf_kv *kv = cs_gguf_find(DFM(mm)->dm->gguf, key);
    if (!kv)
        return -1;
    enum cs_gguf_type t = kv->type == CS_GGUF_ARRAY ? kv->arr_type : kv->type;
    if (t == CS_GGUF_F32 || t == CS_GGUF_F64 || t == CS_GGUF_STRING || t == CS_GGUF_ARRAY)
        return -1;
    if (kv->type != CS_GGUF_ARRAY) {
        if (cap > 0 && out)
            out[0] = (t == CS_GGUF_I8 || t == CS_GGUF_I16 || t == CS_GGUF_I32 || t == CS_GGUF_I64) ? kv->v.i
                                                                                                 : (int64_t)kv->v.u;
        return 1;
    }
    for (uint64_t i = 0; i < kv->arr_n && (int64_t)i < cap && out; i++)
        out[i] = cs_gguf_arr_int(kv, i);
    return kv->arr_n > INT32_MAX ? INT32_MAX : (int32_t)kv->arr_n;
}

/* ---- contexts ---- */

static void ctx_free(clspec_ctx *cc)
{
    if (!cc)
        return;
    if (!reg_has(cc)) {
        base.ctx_free(cc);
        return;
    }
    struct df_ctx *c = DFC(cc);
    reg_del(c);
    cs_dflash_ctx_free(c->c);
    free(c->logits);
    free(c);
}

static int ctx_new(clspec_model *mm, const struct clspec_ctx_params *p, clspec_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!reg_has(mm))
        return base.ctx_new(mm, p, out, err, errlen);
    struct df_model *m = DFM(mm);
    struct df_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_new: out of memory");
    c->model = m;
    c->causal = !p->non_causal && m->dm->hp.causal;
    struct cs_dflash_ctx_params dp = {.n_ctx = p->n_ctx, .n_batch = p->n_batch ? p->n_batch : 64,
                                      .type_k = p->type_k, .type_v = p->type_v, .n_seq = p->n_seq ? p->n_seq : 1};
    c->logits = malloc((size_t)dp.n_batch * m->dm->khp.n_vocab * sizeof *c->logits);
    int rc = c->logits ? cs_dflash_ctx_new(m->dm, &dp, &c->c, err, errlen)
                       : cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_new: out of memory");
    if (rc == CLSPEC_OK && !reg_add(c))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_new: out of memory");
    if (rc < 0) {
        cs_dflash_ctx_free(c->c);
        free(c->logits);
        free(c);
        return rc;
    }
    *out = (clspec_ctx *)(void *)c;
    return CLSPEC_OK;
}

static int ctx_seq_rm(clspec_ctx *cc, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    if (!reg_has(cc))
        return base.ctx_seq_rm(cc, seq, p0, p1, err, errlen);
    return cs_dflash_seq_rm(DFC(cc)->c, seq, p0, p1, err, errlen);
}

static int ctx_decode(clspec_ctx *cc, const struct clspec_decode *d, char *err, size_t errlen)
{
    if (!reg_has(cc))
        return base.ctx_decode(cc, d, err, errlen);
    struct df_ctx *c = DFC(cc);
    c->n_logits = 0;
    if (!d->tokens || d->embd)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "ctx_decode: a dflash block takes token ids");
    if (d->n <= 0 || (uint32_t)d->n > c->c->p.n_batch)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "ctx_decode: %d rows (want 1..n_batch %u)", d->n,
                      c->c->p.n_batch);
    int32_t n_keep = 0;
    uint8_t last_only[1] = {1};
    for (int32_t i = 0; i < d->n; i++)
        n_keep += d->logits ? d->logits[i] != 0 : i == d->n - 1;
    const uint8_t *want = d->logits;
    if (!want && d->n == 1)
        want = last_only;
    uint8_t *tmp = NULL;
    if (!want) {
        tmp = calloc((size_t)d->n, 1);
        if (!tmp)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "ctx_decode: out of memory");
        tmp[d->n - 1] = 1;
        want = tmp;
    }
    int rc = cs_dflash_decode(c->c, d->tokens, d->pos, d->seq, d->n, c->causal, want, n_keep ? c->logits : NULL, err,
                              errlen);
    free(tmp);
    if (rc == CLSPEC_OK)
        c->n_logits = n_keep;
    return rc;
}

static const float *ctx_logits(clspec_ctx *cc, int32_t i)
{
    if (!reg_has(cc))
        return base.ctx_logits(cc, i);
    struct df_ctx *c = DFC(cc);
    if (i < 0 || i >= c->n_logits)
        return NULL;
    return c->logits + (size_t)i * c->model->dm->khp.n_vocab;
}

static int ctx_inject_taps(clspec_ctx *cc, int32_t seq, int32_t pos, int32_t n, const float *taps, int32_t ld,
                           char *err, size_t errlen)
{
    if (!cc || !reg_has(cc))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "ctx_inject_taps: not a context of a dflash model");
    return cs_dflash_inject(DFC(cc)->c, seq, pos, n, taps, ld, err, errlen);
}

/* Entries of other services that take a context: a dflash context is refused
 * there (ctx_kv_inject: it takes ctx_inject_taps; ctx_hidden: none kept). */
static int ctx_kv_inject(clspec_ctx *cc, int32_t layer, int32_t seq, const int32_t *pos, int32_t n, const float *k,
                         const float *v, char *err, size_t errlen)
{
    if (reg_has(cc))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "ctx_kv_inject: a dflash context takes ctx_inject_taps");
    return base.ctx_kv_inject(cc, layer, seq, pos, n, k, v, err, errlen);
}

static const float *ctx_hidden(clspec_ctx *cc, int32_t *n_rows)
{
    if (reg_has(cc)) {
        if (n_rows)
            *n_rows = 0;
        return NULL;
    }
    return base.ctx_hidden(cc, n_rows);
}

void cs_host_dflash_entries(struct clspec_host *h)
{
    if (!base.model_load) { /* the wrapped entries are the same static functions for every table */
        base.model_load = h->model_load;
        base.model_free = h->model_free;
        base.model_info = h->model_info;
        base.model_token_text = h->model_token_text;
        base.ctx_new = h->ctx_new;
        base.ctx_free = h->ctx_free;
        base.ctx_seq_rm = h->ctx_seq_rm;
        base.ctx_decode = h->ctx_decode;
        base.ctx_logits = h->ctx_logits;
        base.ctx_kv_inject = h->ctx_kv_inject;
        base.ctx_hidden = h->ctx_hidden;
    }
    h->model_load = model_load;
    h->model_free = model_free;
    h->model_info = model_info;
    h->model_token_text = model_token_text;
    h->ctx_new = ctx_new;
    h->ctx_free = ctx_free;
    h->ctx_seq_rm = ctx_seq_rm;
    h->ctx_decode = ctx_decode;
    h->ctx_logits = ctx_logits;
    if (base.ctx_kv_inject)
        h->ctx_kv_inject = ctx_kv_inject;
    if (base.ctx_hidden)
        h->ctx_hidden = ctx_hidden;
    h->model_key_ints = model_key_ints;
    h->ctx_inject_taps = ctx_inject_taps;
}
