/* api.c: the engine door (include/clspec/clspec.h) over the internals:
 * cs_engine (model, devices, weights, context), cs_forward_batch, the KV
 * cache's sequence operations, the tokenizer and the sampler. It adds no
 * behaviour of its own beyond argument checks with clear messages and the
 * bookkeeping the door needs (which batch row's logits/taps sit where).
 * A clspec_engine owns its cs_engine (or, vocab_only, its cs_model and
 * cs_tokenizer) and the logits/taps buffers of the last decode; a
 * clspec_sampler owns its cs_sampler; a clspec_sampler_state owns a clone.
 * src/engine/api.h: the few conversions internal callers (the CLI) share with it. */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/api.h"
#include "kv/batch.h"
#include "kv/kv_rec.h"
#include "clspec/clspec.h"
#include "base/common.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "gguf/quant.h"
#include "engine/sampler.h"

#define MAX_TAPS 64

/* Sizes of the first version of each sized struct: a caller may not pass less. */
#define ENGINE_PARAMS_V1 (offsetof(struct clspec_engine_params, vocab_only) + sizeof(int32_t))
#define BATCH_V1 (offsetof(struct clspec_batch, logits) + sizeof(const uint8_t *))

struct clspec_engine {
    struct cs_engine *e;              /* the full engine; NULL when vocab_only */
    bool borrowed;                    /* e belongs to the caller of cs_api_wrap (not freed here) */
    struct cs_model *vm;              /* vocab_only: the GGUF metadata (owned), else NULL */
    struct cs_tokenizer *vtok;        /* vocab_only: the tokenizer (owned), else NULL */
    const struct cs_model *model;     /* e->model or vm; NULL for a door over a tokenizer (cs_api_wrap_vocab) */
    const struct cs_tokenizer *tok;   /* e->tok or vtok, or cs_api_wrap_vocab's */
    const struct cs_gguf *gguf;       /* model->gguf, or cs_api_wrap_vocab's (may be NULL) */
    int32_t n_vocab, n_embd;
    bool strips_space;                /* cs_tokenizer_strips_space(tok), computed once */
    struct cs_batch b;                /* reused input of cs_forward_batch */
    /* the last decode */
    int32_t n_rows;                   /* rows of the last successful decode (0: none) */
    int32_t rows_cap;                 /* rows allocated in row_out / row_ok */
    int32_t *row_out;                 /* (rows_cap) index of the row's logits in logits, -1 = not kept */
    uint8_t *row_ok;                  /* (rows_cap) 1 = the row's sequence ran */
    float *logits;                    /* (logits_cap, n_vocab) kept rows in row order */
    int32_t logits_cap;               /* rows allocated in logits */
    uint8_t *row_greedy;              /* (rows_cap) 1 = a greedy row (clspec_batch.greedy) */
    int32_t *greedy_res;              /* (logits_cap, 2) kept greedy rows: matches, next token */
    /* taps */
    int32_t n_taps;                   /* layers requested for the next decodes (0: off) */
    int32_t n_taps_last;              /* layers tapped by the last decode (rows of taps) */
    int32_t tap_layers[MAX_TAPS];     /* (n_taps) */
    float *taps;                      /* (n_taps_last, n_rows, n_embd) of the last decode */
    size_t taps_cap;                  /* floats allocated in taps */
    char *chat_tmpl;                  /* clspec_set_chat_template's text (owned), NULL: the GGUF's */
    size_t chat_tmpl_len;
};

/* ---- small helpers ---- */

static int need_engine(const clspec_engine *e, const char *op, bool device, char *err, size_t errlen)
{
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: engine is NULL", op);
    if (device && !e->e)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: the engine was opened vocab_only (no device, no KV cache)",
                      op);
    return CLSPEC_OK;
}

static int need_seq(const clspec_engine *e, const char *op, int32_t seq, bool allow_all, char *err, size_t errlen)
{
    uint32_t n = e->e->p.n_seq_max;
    if ((allow_all && seq == -1) || (seq >= 0 && (uint32_t)seq < n))
        return CLSPEC_OK;
    return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: sequence %d outside 0..%u%s", op, (int)seq, n - 1,
                  allow_all ? " (or -1 for all)" : "");
}

static bool kv_type_ok(uint32_t t)
{
    return t == CLSPEC_KV_F32 || t == CLSPEC_KV_F16 || t == CLSPEC_KV_BF16 || t == CLSPEC_KV_Q8_0 ||
           t == CLSPEC_KV_Q4_0;
}

const char *clspec_kv_type_name(uint32_t type)
{
    return kv_type_ok(type) ? cs_type_name(type) : NULL;
}

int clspec_kv_type_from_name(const char *name)
{
    int t = name ? cs_type_from_name(name) : -1;
    return t >= 0 && kv_type_ok((uint32_t)t) ? t : CLSPEC_E_INVAL;
}

/* ---- open / free / info ---- */

void clspec_engine_default_params(struct clspec_engine_params *p, size_t size)
{
    if (!p || size < sizeof p->size)
        return;
    struct cs_engine_params d = cs_engine_defaults();
    struct clspec_engine_params q;
    memset(&q, 0, sizeof q);
    q.size = (uint32_t)CS_MIN(size, sizeof q);
    q.n_ctx = 0; /* min(training context, 2048), decided at open */
    q.n_batch = d.n_batch;
    q.n_ubatch = d.n_ubatch;
    q.type_k = d.type_k;
    q.type_v = d.type_v;
    q.n_seq = d.n_seq_max;
    q.kv_partitioned = !d.kv_unified;
    memcpy(p, &q, q.size);
}

void clspec_engine_free(clspec_engine *e)
{
    if (!e)
        return;
    if (!e->borrowed)
        cs_engine_free(e->e);
    cs_tokenizer_free(e->vtok);
    cs_model_free(e->vm);
    cs_batch_free(&e->b);
    free(e->row_out);
    free(e->row_ok);
    free(e->logits);
    free(e->row_greedy);
    free(e->greedy_res);
    free(e->taps);
    free(e->chat_tmpl);
    free(e);
}

/* The caller's params (size bytes of them) over the defaults, checked. */
static int take_params(const struct clspec_engine_params *in, struct clspec_engine_params *p, char *err,
                       size_t errlen)
{
    if (!in)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine open: params is NULL");
    if (in->size < ENGINE_PARAMS_V1)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "engine open: params size %u is smaller than version 1's %zu (call "
                      "clspec_engine_default_params first)",
                      in->size, (size_t)ENGINE_PARAMS_V1);
    clspec_engine_default_params(p, sizeof *p);
    memcpy(p, in, CS_MIN((size_t)in->size, sizeof *p));
    if (!p->model_path || !*p->model_path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine open: no model path");
    if (!kv_type_ok(p->type_k) || !kv_type_ok(p->type_v))
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "engine open: KV types %u/%u: each must be f32 (0), f16 (1), q4_0 (2), q8_0 (8) or bf16 (30)",
                      p->type_k, p->type_v);
    if (p->n_seq > CLSPEC_MAX_SEQ)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine open: n_seq %u outside 1..%d", p->n_seq, CLSPEC_MAX_SEQ);
    if (p->n_draft_max > 1024)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine open: n_draft_max %u outside 0..1024", p->n_draft_max);
    return CLSPEC_OK;
}

int clspec_engine_open(const struct clspec_engine_params *in, clspec_engine **out, char *err, size_t errlen)
{
    if (!out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine open: out is NULL");
    *out = NULL;
    struct clspec_engine_params p;
    CS_TRY(take_params(in, &p, err, errlen));
    clspec_engine *e = calloc(1, sizeof *e);
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "engine open: out of memory");
    int rc;
    if (p.vocab_only) {
        if ((rc = cs_model_load(p.model_path, &e->vm, err, errlen)) < 0 ||
            (rc = cs_tokenizer_load(e->vm->gguf, &e->vtok, err, errlen)) < 0)
            goto fail;
        e->model = e->vm;
        e->tok = e->vtok;
    } else {
        struct cs_engine_params ep = cs_engine_defaults();
        ep.model_path = p.model_path;
        ep.devices = p.devices;
        ep.split_mode = p.split_by_memory ? CS_SPLIT_MEMORY : CS_SPLIT_LAYERS;
        memcpy(ep.split, p.split, sizeof ep.split);
        ep.n_ctx = p.n_ctx;
        ep.n_batch = p.n_batch;
        ep.n_ubatch = p.n_ubatch;
        ep.type_k = p.type_k;
        ep.type_v = p.type_v;
        ep.n_seq_max = p.n_seq;
        ep.kv_unified = !p.kv_partitioned;
        ep.progress = p.progress != 0;
        ep.llamacpp_numerics = p.llamacpp_numerics != 0;
        ep.n_draft_max = p.n_draft_max;
        if ((rc = cs_engine_open(&ep, &e->e, err, errlen)) < 0)
            goto fail;
        e->model = e->e->model;
        e->tok = e->e->tok;
    }
    e->n_vocab = (int32_t)e->model->hp.n_vocab;
    e->n_embd = (int32_t)e->model->hp.n_embd;
    e->gguf = e->model->gguf;
    e->strips_space = cs_tokenizer_strips_space(e->tok);
    *out = e;
    return CLSPEC_OK;
fail:
    clspec_engine_free(e);
    return rc;
}

void cs_api_engine_params(const struct cs_engine_params *in, struct clspec_engine_params *out)
{
    clspec_engine_default_params(out, sizeof *out);
    out->model_path = in->model_path;
    out->devices = in->devices;
    out->split_by_memory = in->split_mode == CS_SPLIT_MEMORY;
    memcpy(out->split, in->split, sizeof out->split);
    out->n_ctx = in->n_ctx;
    out->n_batch = in->n_batch;
    out->n_ubatch = in->n_ubatch;
    out->type_k = in->type_k; /* enum cs_type and enum clspec_kv_type are both GGUF type ids */
    out->type_v = in->type_v;
    out->n_seq = in->n_seq_max;
    out->kv_partitioned = !in->kv_unified;
    out->progress = in->progress;
    out->llamacpp_numerics = in->llamacpp_numerics;
    out->n_draft_max = in->n_draft_max;
}

/* A borrowed door over tok (and gguf, may be NULL); the caller fills the rest. */
static int wrap_new(const struct cs_tokenizer *tok, const struct cs_gguf *g, const char *what, clspec_engine **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (!tok)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s wrap: %s is NULL", what,
                      strcmp(what, "engine") ? "tokenizer" : "engine");
    clspec_engine *e = calloc(1, sizeof *e);
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s wrap: out of memory", what);
    e->borrowed = true;
    e->tok = tok;
    e->gguf = g;
    e->n_vocab = cs_tokenizer_n_vocab(tok);
    e->strips_space = cs_tokenizer_strips_space(tok);
    *out = e;
    return CLSPEC_OK;
}

int cs_api_wrap(struct cs_engine *ce, clspec_engine **out, char *err, size_t errlen)
{
    CS_TRY(wrap_new(ce ? ce->tok : NULL, ce ? ce->model->gguf : NULL, "engine", out, err, errlen));
    (*out)->e = ce;
    (*out)->model = ce->model;
    (*out)->n_vocab = (int32_t)ce->model->hp.n_vocab;
    (*out)->n_embd = (int32_t)ce->model->hp.n_embd;
    return CLSPEC_OK;
}

int cs_api_wrap_vocab(const struct cs_tokenizer *tok, const struct cs_gguf *g, clspec_engine **out, char *err,
                      size_t errlen)
{
    return wrap_new(tok, g, "vocabulary", out, err, errlen);
}

struct cs_engine *cs_api_engine(clspec_engine *e)
{
    return e ? e->e : NULL;
}

int clspec_engine_get_info(const clspec_engine *e, struct clspec_engine_info *info, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "engine info", false, err, errlen));
    if (!info || info->size < sizeof info->size)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine info: info is NULL or its size is not set");
    static const struct cs_hparams no_hp; /* a door over a tokenizer has no model */
    const struct cs_hparams *hp = e->model ? &e->model->hp : &no_hp;
    struct clspec_engine_info r;
    memset(&r, 0, sizeof r);
    r.size = (uint32_t)CS_MIN((size_t)info->size, sizeof r);
    r.arch = hp->arch_name;
    r.n_vocab = e->n_vocab;
    r.n_embd = e->n_embd;
    r.n_layer = (int32_t)hp->n_layer;
    r.n_head = (int32_t)hp->n_head;
    r.n_head_kv = (int32_t)hp->n_head_kv;
    r.n_ctx_train = hp->n_ctx_train;
    r.bos = cs_tokenizer_bos(e->tok);
    r.eos = cs_tokenizer_eos(e->tok);
    r.add_bos = cs_tokenizer_add_bos(e->tok);
    r.has_chat_template = e->gguf && cs_gguf_find(e->gguf, "tokenizer.chat_template") != NULL;
    r.n_params = e->model ? e->model->n_params : 0;
    r.model_bytes = e->model ? e->model->n_bytes : 0;
    r.kv_dim = cs_hp_kv_dim(hp);
    r.strips_space = e->strips_space;
    if (e->e) {
        const struct cs_engine *E = e->e;
        r.n_ctx = E->p.n_ctx;
        r.n_batch = E->p.n_batch;
        r.n_ubatch = E->p.n_ubatch;
        r.n_seq = E->p.n_seq_max;
        r.type_k = E->p.type_k;
        r.type_v = E->p.type_v;
        r.weight_bytes = E->fm->bytes;
        r.kv_bytes_per_token = cs_kv_bytes_per_token(E->ctx->kv);
        r.load_s = E->load_s;
        r.kv_partitioned = !E->p.kv_unified;
        r.n_draft_max = E->ctx->kv->rec ? E->ctx->kv->rec->keep - 1 : 0;
        r.weight_type = cs_type_name(E->model->layers[0].w_gate->type); /* every arch's layers have an FFN */
        r.n_devices = CS_MIN(E->n_dev, CLSPEC_MAX_DEVICES);
        for (int i = 0; i < r.n_devices; i++) {
            r.device_name[i] = E->dev[i]->info.name;
            r.device_layers[i] = E->layer_counts[i];
        }
    }
    memcpy(info, &r, r.size);
    return CLSPEC_OK;
}

/* ---- tokenizer ---- */

int clspec_tokenize(const clspec_engine *e, const char *text, size_t len, int add_special, int parse_special,
                    int32_t *out, size_t cap, size_t *n_out, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "tokenize", false, err, errlen));
    if ((!text && len) || (!out && cap) || !n_out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "tokenize: NULL text, out or n_out");
    return cs_tokenize(e->tok, text ? text : "", len, add_special != 0, parse_special != 0, out, cap, n_out, err,
                       errlen);
}

int clspec_detokenize(const clspec_engine *e, const int32_t *ids, size_t n, int remove_special,
                      int unparse_special, char *buf, size_t cap, size_t *n_out, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "detokenize", false, err, errlen));
    if ((!ids && n) || (!buf && cap) || !n_out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "detokenize: NULL ids, buf or n_out");
    return cs_detokenize(e->tok, ids, n, remove_special != 0, unparse_special != 0, buf, cap, n_out, err, errlen);
}

int clspec_token_piece(const clspec_engine *e, int32_t id, int special, char *buf, size_t cap, size_t *n_out,
                       char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "token piece", false, err, errlen));
    if ((!buf && cap) || !n_out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "token piece: NULL buf or n_out");
    return cs_token_to_piece(e->tok, id, special != 0, buf, cap, n_out, err, errlen);
}

int clspec_token_is_eog(const clspec_engine *e, int32_t id)
{
    return e && id >= 0 && id < e->n_vocab && cs_tokenizer_is_eog(e->tok, id);
}

_Static_assert(CLSPEC_TOKEN_NORMAL == (int)CS_TT_NORMAL && CLSPEC_TOKEN_CONTROL == (int)CS_TT_CONTROL &&
                   CLSPEC_TOKEN_UNUSED == (int)CS_TT_UNUSED && CLSPEC_TOKEN_BYTE == (int)CS_TT_BYTE,
               "enum clspec_token_type and enum cs_tok_type are both the GGUF's token_type values");

int clspec_token_type(const clspec_engine *e, int32_t id)
{
    if (!e)
        return CLSPEC_E_INVAL;
    if (id < 0 || id >= e->n_vocab)
        return CLSPEC_E_RANGE;
    return (int)cs_tokenizer_type(e->tok, id);
}

const char *clspec_token_text(const clspec_engine *e, int32_t id, size_t *len)
{
    const char *s = e && id >= 0 && id < e->n_vocab ? cs_tokenizer_text(e->tok, id, len) : NULL;
    if (!s && len)
        *len = 0;
    return s;
}

const char *clspec_chat_template(const clspec_engine *e, size_t *len)
{
    if (e && e->chat_tmpl) {
        if (len)
            *len = e->chat_tmpl_len;
        return e->chat_tmpl;
    }
    const struct cs_gguf_kv *kv = e && e->gguf ? cs_gguf_find(e->gguf, "tokenizer.chat_template") : NULL;
    bool ok = kv && kv->type == CS_GGUF_STRING;
    if (len)
        *len = ok ? (size_t)kv->v.s.len : 0;
    return ok ? kv->v.s.ptr : NULL;
}

int32_t clspec_argmax(const float *x, int32_t n)
{
    return x && n > 0 ? cs_argmax(x, n) : -1;
}

/* ---- decode and taps ---- */

/* Grows the per-row bookkeeping, the logits rows and the taps for a batch of
 * n rows with n_keep kept logits rows. */
static int reserve(clspec_engine *e, int32_t n, int32_t n_keep, char *err, size_t errlen)
{
    if (n > e->b.cap) {
        cs_batch_free(&e->b);
        CS_TRY(cs_batch_init(&e->b, n, err, errlen));
    }
    if (n > e->rows_cap) {
        int32_t *ro = realloc(e->row_out, (size_t)n * sizeof *ro);
        if (ro)
            e->row_out = ro;
        uint8_t *ok = ro ? realloc(e->row_ok, (size_t)n) : NULL;
        if (!ok)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "decode: out of memory (%d rows)", (int)n);
        e->row_ok = ok;
        uint8_t *g = realloc(e->row_greedy, (size_t)n);
        if (!g)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "decode: out of memory (%d rows)", (int)n);
        e->row_greedy = g;
        e->rows_cap = n;
    }
    if (n_keep > e->logits_cap) {
        float *l = realloc(e->logits, (size_t)n_keep * (size_t)e->n_vocab * sizeof *l);
        if (l)
            e->logits = l;
        int32_t *gr = l ? realloc(e->greedy_res, (size_t)n_keep * 2 * sizeof *gr) : NULL;
        if (!gr)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "decode: out of memory (%d logits rows)", (int)n_keep);
        e->greedy_res = gr;
        e->logits_cap = n_keep;
    }
    size_t nt = (size_t)e->n_taps * (size_t)n * (size_t)e->n_embd;
    if (nt > e->taps_cap) {
        float *t = realloc(e->taps, nt * sizeof *t);
        if (!t)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "decode: out of memory (taps of %d rows)", (int)n);
        e->taps = t;
        e->taps_cap = nt;
    }
    return CLSPEC_OK;
}

static int check_batch(const struct clspec_batch *b, char *err, size_t errlen)
{
    if (!b)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "decode: batch is NULL");
    if (b->size < BATCH_V1)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "decode: batch size %u is smaller than version 1's %zu",
                      b->size, (size_t)BATCH_V1);
    if (b->n_rows < 1)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "decode: %d rows (need at least 1)", (int)b->n_rows);
    if (!b->token || !b->pos)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "decode: batch token or pos is NULL");
    return CLSPEC_OK;
}

int clspec_decode(clspec_engine *e, const struct clspec_batch *b, int *seq_status, char *err, size_t errlen)
{
    return cs_api_decode_dev(e, b, NULL, seq_status, err, errlen);
}

int cs_api_decode_dev(clspec_engine *e, const struct clspec_batch *b, const struct cs_fwd_dtok *dt,
                      int *seq_status, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "decode", true, err, errlen));
    e->n_rows = 0;
    CS_TRY(check_batch(b, err, errlen));
    const int32_t n = b->n_rows;
    int32_t n_keep = 0;
    for (int32_t i = 0; i < n; i++)
        n_keep += b->logits ? b->logits[i] != 0 : i == n - 1;
    CS_TRY(reserve(e, n, n_keep, err, errlen));
    cs_batch_clear(&e->b);
    e->b.embd = b->size >= offsetof(struct clspec_batch, embd) + sizeof b->embd ? b->embd : NULL;
    const uint8_t *greedy = b->size >= offsetof(struct clspec_batch, greedy) + sizeof b->greedy ? b->greedy : NULL;
    for (int32_t i = 0, k = 0; i < n; i++) {
        bool keep = b->logits ? b->logits[i] != 0 : i == n - 1;
        e->row_out[i] = keep ? k++ : -1;
        e->row_greedy[i] = keep && greedy && greedy[i];
        /* rows go in unchecked: cs_forward_batch checks tokens, positions and sequences */
        int32_t s = b->seq ? b->seq[i] : 0;
        e->b.token[i] = dt && dt->src[i] >= 0 ? 0 : b->token[i]; /* a device row's: placed as 0 */
        e->b.pos[i] = b->pos[i];
        e->b.seq[i] = s;
        e->b.logits[i] = keep;
        e->b.n = i + 1;
    }
    struct cs_fwd_hidden hid = {.n_layers = e->n_taps, .layers = e->tap_layers, .out = e->taps};
    int rc_seq[CS_MAX_SEQ];
    const struct cs_fwd_greedy g = {.rows = greedy ? e->row_greedy : NULL, .out = e->greedy_res, .dt = dt};
    int rc = cs_forward_batch_greedy(e->e->ctx, &e->b, e->logits, e->n_taps ? &hid : NULL, greedy || dt ? &g : NULL,
                                     rc_seq, err, errlen);
    if (rc < 0)
        return rc;
    for (int32_t i = 0; i < n; i++)
        e->row_ok[i] = rc_seq[e->b.seq[i]] == CLSPEC_OK;
    e->n_rows = n;
    e->n_taps_last = e->n_taps;
    if (seq_status) {
        memcpy(seq_status, rc_seq, sizeof rc_seq);
        return CLSPEC_OK;
    }
    for (int s = 0; s < CS_MAX_SEQ; s++)
        if (rc_seq[s] != CLSPEC_OK)
            return cs_err(err, errlen, rc_seq[s], "decode: kv cache full for sequence %d (%u cells, %u free)", s,
                          e->e->p.n_ctx, cs_kv_n_free(e->e->ctx->kv, s));
    return CLSPEC_OK;
}

const float *clspec_logits(const clspec_engine *e, int32_t row)
{
    if (!e || row < 0 || row >= e->n_rows || e->row_out[row] < 0 || !e->row_ok[row] || e->row_greedy[row])
        return NULL;
    return e->logits + (size_t)e->row_out[row] * (size_t)e->n_vocab;
}

int clspec_greedy(const clspec_engine *e, int32_t row, int32_t *n_match, int32_t *next)
{
    if (!e || !n_match || !next || row < 0 || row >= e->n_rows || e->row_out[row] < 0 || !e->row_ok[row] ||
        !e->row_greedy[row])
        return CLSPEC_E_INVAL;
    *n_match = e->greedy_res[(size_t)e->row_out[row] * 2];
    *next = e->greedy_res[(size_t)e->row_out[row] * 2 + 1];
    return CLSPEC_OK;
}

int clspec_taps_set(clspec_engine *e, const int32_t *layers, int32_t n_layers, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "taps", true, err, errlen));
    if (n_layers < 0 || n_layers > MAX_TAPS || (n_layers > 0 && !layers))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "taps: %d layers (0..%d, layers non-NULL)", (int)n_layers,
                      MAX_TAPS);
    int32_t n_layer = (int32_t)e->model->hp.n_layer;
    for (int32_t i = 0; i < n_layers; i++)
        if (layers[i] < 0 || layers[i] > n_layer)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "taps: layer %d outside 0..%d (n_layer = the final state)",
                          (int)layers[i], (int)n_layer);
    if (n_layers > 0)
        memcpy(e->tap_layers, layers, (size_t)n_layers * sizeof *layers);
    e->n_taps = n_layers; /* the last decode's taps stay readable (n_taps_last) */
    return CLSPEC_OK;
}

const float *clspec_tap(const clspec_engine *e, int32_t i, int32_t row)
{
    if (!e || i < 0 || i >= e->n_taps_last || row < 0 || row >= e->n_rows || !e->row_ok[row])
        return NULL;
    return e->taps + ((size_t)i * (size_t)e->n_rows + (size_t)row) * (size_t)e->n_embd;
}

/* ---- sequences ---- */

int clspec_seq_rm(clspec_engine *e, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "seq_rm", true, err, errlen));
    CS_TRY(need_seq(e, "seq_rm", seq, true, err, errlen));
    return cs_kv_seq_rm(e->e->ctx->kv, seq, p0, p1, err, errlen);
}

int clspec_seq_cp(clspec_engine *e, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "seq_cp", true, err, errlen));
    CS_TRY(need_seq(e, "seq_cp", src, false, err, errlen));
    CS_TRY(need_seq(e, "seq_cp", dst, false, err, errlen));
    return cs_kv_seq_cp(e->e->ctx->kv, src, dst, p0, p1, err, errlen);
}

int clspec_seq_keep(clspec_engine *e, int32_t seq, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "seq_keep", true, err, errlen));
    CS_TRY(need_seq(e, "seq_keep", seq, false, err, errlen));
    return cs_kv_seq_keep(e->e->ctx->kv, seq, err, errlen);
}

int clspec_kv_clear(clspec_engine *e, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "kv_clear", true, err, errlen));
    cs_kv_clear(e->e->ctx->kv);
    return CLSPEC_OK;
}

/* The checks of a query on sequence seq of a full engine writing to out. */
static int need_query(const clspec_engine *e, const char *op, int32_t seq, const void *out, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, op, true, err, errlen));
    CS_TRY(need_seq(e, op, seq, false, err, errlen));
    return out ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_INVAL, "%s: output pointer is NULL", op);
}

int clspec_seq_n_cells(const clspec_engine *e, int32_t seq, uint32_t *n_cells, char *err, size_t errlen)
{
    CS_TRY(need_query(e, "seq_n_cells", seq, n_cells, err, errlen));
    *n_cells = cs_kv_seq_n_cells(e->e->ctx->kv, seq);
    return CLSPEC_OK;
}

int clspec_seq_n_free(const clspec_engine *e, int32_t seq, uint32_t *n_free, char *err, size_t errlen)
{
    CS_TRY(need_query(e, "seq_n_free", seq, n_free, err, errlen));
    *n_free = cs_engine_seq_free(e->e, seq);
    return CLSPEC_OK;
}

int clspec_kv_usage(const clspec_engine *e, uint32_t *n_used, uint32_t *n_free, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "kv_usage", true, err, errlen));
    if (n_used)
        *n_used = cs_engine_kv_used(e->e);
    if (n_free)
        *n_free = cs_engine_kv_free(e->e);
    return CLSPEC_OK;
}

int clspec_seq_pos_max(const clspec_engine *e, int32_t seq, int32_t *pos_max, char *err, size_t errlen)
{
    CS_TRY(need_query(e, "seq_pos_max", seq, pos_max, err, errlen));
    *pos_max = cs_kv_seq_pos_max(e->e->ctx->kv, seq);
    return CLSPEC_OK;
}

int clspec_prefix_match(const clspec_engine *e, const int32_t *tokens, int32_t n, int32_t dst, int32_t *n_match,
                        int32_t *src, char *err, size_t errlen)
{
    CS_TRY(need_engine(e, "prefix_match", true, err, errlen));
    CS_TRY(need_seq(e, "prefix_match", dst, false, err, errlen));
    if (!n_match || !src || n < 0 || (n > 0 && !tokens))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "prefix_match: NULL tokens, n_match or src, or n < 0");
    *n_match = cs_kv_prefix_match(e->e->ctx->kv, tokens, n, dst, src);
    return CLSPEC_OK;
}

/* ---- the final norm ---- */

int clspec_final_norm(const clspec_engine *e, const float *x, float *out, char *err, size_t errlen)
{
    if (!e || !x || !out || !e->model || !e->model->output_norm)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "final_norm: NULL argument or an engine without weights");
    const struct cs_gguf_tensor *w = e->model->output_norm;
    int64_t n = e->n_embd;
    if ((int64_t)w->n_elems != n)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "final_norm: %s has %llu values, n_embd is %lld", w->name,
                      (unsigned long long)w->n_elems, (long long)n);
    float *wf = malloc((size_t)n * sizeof *wf);
    if (!wf)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "final_norm: out of memory");
    if (cs_dequantize_row(w->type, w->data, wf, n) != 0) {
        free(wf);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "final_norm: %s: type without a dequantizer", w->name);
    }
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)e->model->hp.rms_eps));
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale * wf[i];
    free(wf);
    return CLSPEC_OK;
}

int clspec_set_chat_template(clspec_engine *e, const char *tmpl, size_t len, char *err, size_t errlen)
{
    if (!e || (!tmpl && len))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: engine is NULL, or a length without text");
    char *t = NULL;
    if (tmpl) {
        if (memchr(tmpl, '\0', len))
            return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: the text holds a NUL byte");
        if (!(t = malloc(len + 1)))
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
        memcpy(t, tmpl, len);
        t[len] = '\0';
    }
    free(e->chat_tmpl);
    e->chat_tmpl = t;
    e->chat_tmpl_len = tmpl ? len : 0;
    return CLSPEC_OK;
}
