/* draft.c: the draft-model speculator: a separate (small) GGUF with the
 * target's vocabulary, on one of the target's devices, with its own context
 * and typed KV cache; one sequence per slot. Each draft first brings the
 * slot's draft KV in step with the slot's history (what was cached beyond
 * the common prefix, e.g. rejected drafts, is removed; what is missing is
 * decoded), then drafts greedily; the slots of one draft_batch call share
 * every decode (one row per drafting slot per draft token). Drafting is
 * deterministic, so the probabilities it reports are one-hot (q(d) = 1):
 * rejection sampling then accepts d with probability p(d), exactly. It stops
 * early where the draft model's own probability of its token is below p_min.
 * Without a probability cut (p_min 0) on a host of ABI >= 1.6, a call whose
 * missing history fits one decode runs as one ctx_decode_chain: the history
 * rows and every draft depth queued on the device, each depth's token the
 * previous one's argmax, one host sync; else one decode per draft depth.
 * Uses nothing but <clspec/speculator.h> (host ABI >= 1.1).
 *
 * Configuration ([speculator] section / --spec-opt):
 *   model = PATH      the draft GGUF (required)
 *   device = N|NAME   host device index or name substring (default: the target's last device)
 *   n_ctx = N         draft KV cells for all slots (default: the target's n_ctx)
 *   type_k = f16      draft KV type: f32, f16, bf16, q8_0, q4_0 (empty: f16)
 *   type_v = f16
 * and from the host's request: p_min (the [speculator] p_min): drafting stops
 * at a token the draft model gives less than p_min. */
#define _POSIX_C_SOURCE 200809L /* plugin_util.h: clock_gettime */
#include <clspec/speculator.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/plugin_util.h"

struct dslot {
    int32_t *cached; /* tokens whose K/V are in the draft context at positions 0..n_cached-1 */
    int32_t n_cached, cap;
};

struct draft {
    const struct clspec_host *h;
    clspec_model *m;
    clspec_ctx *c;
    uint32_t n_vocab, n_batch;
    int32_t n_slots;
    struct dslot *slots;
    int32_t *tok, *pos, *seq; /* (n_batch) decode staging */
    uint8_t *keep;
    int no_chain;             /* the host cannot chain this model on the device (ctx_decode_chain) */
};

static void draft_fini(void *state)
{
    struct draft *d = state;
    if (!d)
        return;
    if (d->c)
        d->h->ctx_free(d->c);
    if (d->m)
        d->h->model_free(d->m);
    for (int32_t s = 0; d->slots && s < d->n_slots; s++)
        free(d->slots[s].cached);
    free(d->slots);
    free(d->tok);
    free(d->pos);
    free(d->seq);
    free(d->keep);
    free(d);
}

/* The draft's vocabulary must be the target's: same size, same token texts. */
static int check_vocab(struct draft *d, const struct clspec_target_info *ti, const char *path, char *err,
                       size_t errlen)
{
    struct clspec_model_info mi;
    memset(&mi, 0, sizeof mi);
    mi.size = sizeof mi;
    d->h->model_info(d->m, &mi);
    if (mi.n_vocab != ti->model.n_vocab) {
        snprintf(err, errlen, "draft: %s has %u tokens, the target %u: the vocabularies must be the same", path,
                 mi.n_vocab, ti->model.n_vocab);
        return -1;
    }
    for (uint32_t i = 0; i < mi.n_vocab; i++) {
        const char *a = d->h->model_token_text(d->m, (int32_t)i), *b = d->h->token_text(d->h, (int32_t)i);
        if (!a || !b || strcmp(a, b) != 0) {
            snprintf(err, errlen, "draft: %s: token %u is '%.40s', the target's is '%.40s': the vocabularies must "
                                  "be the same",
                     path, i, a ? a : "?", b ? b : "?");
            return -1;
        }
    }
    d->n_vocab = mi.n_vocab;
    return 0;
}

static int draft_init(const struct clspec_host *h, void **state, char *err, size_t errlen)
{
    if (h->abi_minor < 1 || !h->model_load || !h->ctx_new || !h->ctx_decode || !h->ctx_logits || !h->ctx_seq_rm ||
        !h->model_token_text || !h->token_text)
        return pu_fail(err, errlen, "draft: ", "this host does not provide draft models (needs ABI >= 1.1)%s", NULL,
                       NULL);
    const char *path = h->config_get(h, "model");
    if (!path || !*path)
        return pu_fail(err, errlen,
                       "draft: ", "no model: set model = /path/to/draft.gguf in the [speculator] section%s", NULL,
                       NULL);
    struct clspec_target_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    if (h->target_info(h, &ti) != 0)
        return pu_fail(err, errlen, "draft: ", "no target model%s", NULL, NULL);
    struct clspec_ctx_params cp;
    memset(&cp, 0, sizeof cp);
    cp.size = sizeof cp;
    const char *v;
    cp.n_ctx = (v = h->config_get(h, "n_ctx")) ? (uint32_t)strtoul(v, NULL, 10) : ti.n_ctx;
    if (cp.n_ctx == 0)
        return pu_fail(err, errlen, "draft: ", "bad n_ctx: %s", v, NULL);
    if (pu_parse_type(h->config_get(h, "type_k"), CLSPEC_TYPE_F16, &cp.type_k) < 0)
        return pu_fail(err, errlen, "draft: ", "type_k must be f32, f16, bf16, q8_0 or q4_0, not %s",
                       h->config_get(h, "type_k"), NULL);
    if (pu_parse_type(h->config_get(h, "type_v"), CLSPEC_TYPE_F16, &cp.type_v) < 0)
        return pu_fail(err, errlen, "draft: ", "type_v must be f32, f16, bf16, q8_0 or q4_0, not %s",
                       h->config_get(h, "type_v"), NULL);
    int32_t device = -1;
    if ((v = h->config_get(h, "device")) && *v && (device = pu_find_device(h, v)) < 0)
        return pu_fail(err, errlen, "draft: ", "no device matches device = %s", v, NULL);
    struct draft *d = calloc(1, sizeof *d);
    if (!d)
        return pu_fail(err, errlen, "draft: ", "out of memory%s", NULL, NULL);
    d->h = h;
    d->n_slots = (int32_t)(ti.n_slots ? ti.n_slots : 1);
    d->n_batch = 64;
    cp.n_batch = d->n_batch;
    cp.n_seq = (uint32_t)d->n_slots;
    char e2[512];
    if (h->model_load(h, path, device, 0, &d->m, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "draft: %s", e2);
        draft_fini(d);
        return -1;
    }
    if (check_vocab(d, &ti, path, err, errlen) < 0) {
        draft_fini(d);
        return -1;
    }
    if (h->ctx_new(d->m, &cp, &d->c, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "draft: %s", e2);
        draft_fini(d);
        return -1;
    }
    d->slots = calloc((size_t)d->n_slots, sizeof *d->slots);
    d->tok = malloc(d->n_batch * sizeof *d->tok);
    d->pos = malloc(d->n_batch * sizeof *d->pos);
    d->seq = malloc(d->n_batch * sizeof *d->seq);
    d->keep = malloc(d->n_batch);
    if (!d->slots || !d->tok || !d->pos || !d->seq || !d->keep) {
        draft_fini(d);
        return pu_fail(err, errlen, "draft: ", "out of memory%s", NULL, NULL);
    }
    h->log(h, CLSPEC_LOG_INFO, "%s: %u cells of %s/%s KV for %d slots", path, cp.n_ctx, pu_type_name(cp.type_k),
           pu_type_name(cp.type_v), (int)d->n_slots);
    *state = d;
    return 0;
}

static int cache_push(struct dslot *sl, int32_t t)
{
    if (sl->n_cached == sl->cap) {
        int32_t cap = sl->cap ? 2 * sl->cap : 256;
        int32_t *p = realloc(sl->cached, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        sl->cached = p;
        sl->cap = cap;
    }
    sl->cached[sl->n_cached++] = t;
    return 0;
}

/* The draft model's token for a logits row (argmax) and its probability. */
static int32_t pick(const float *l, uint32_t n_vocab, float *conf)
{
    uint32_t best = 0;
    for (uint32_t v = 1; v < n_vocab; v++)
        if (l[v] > l[best])
            best = v;
    double sum = 0;
    for (uint32_t v = 0; v < n_vocab; v++)
        sum += exp((double)l[v] - (double)l[best]);
    *conf = (float)(1.0 / sum);
    return (int32_t)best;
}

/* Per slot of one draft_batch call. */
struct pend {
    int32_t slot;
    const int32_t *toks; /* still to decode (sync), then none */
    int32_t n_toks;
    int32_t next;        /* the draft model's next token, -1 = none yet */
    float conf;
    int32_t k;           /* drafted so far */
    int done;
};

/* Decodes the staged rows (n) and gives each row with keep[i] its pick. */
static int run(struct draft *d, int32_t n, struct pend **owner, char *err, size_t errlen)
{
    struct clspec_decode dc = {.size = sizeof dc, .n = n, .tokens = d->tok, .pos = d->pos, .seq = d->seq,
                               .logits = d->keep};
    if (d->h->ctx_decode(d->c, &dc, err, errlen) != 0)
        return -1;
    for (int32_t i = 0, li = 0; i < n; i++) {
        if (!d->keep[i])
            continue;
        const float *l = d->h->ctx_logits(d->c, li++);
        if (!l)
            return pu_fail(err, errlen, "draft: ", "no logits%s", NULL, NULL);
        owner[i]->next = pick(l, d->n_vocab, &owner[i]->conf);
    }
    return 0;
}

/* Stages one row of slot p at its next cached position. */
static int stage(struct draft *d, int32_t *n, struct pend *p, struct pend **owner, int32_t tok, int keep)
{
    struct dslot *sl = &d->slots[p->slot];
    d->tok[*n] = tok;
    d->pos[*n] = sl->n_cached;
    d->seq[*n] = p->slot;
    d->keep[*n] = (uint8_t)keep;
    owner[*n] = p;
    (*n)++;
    return cache_push(sl, tok);
}

/* Greedy drafting on the device (host 1.6 ctx_decode_chain): the missing
 * history of every slot in p[] (each slot's last row the head of its
 * chain) and the deepest draft asked, in one call. Returns 1 when it
 * drafted, 0 when it cannot (nothing changed: the caller decodes depth by
 * depth), -1 on an error. */
static int chain_draft(struct draft *d, const struct clspec_draft_req *reqs, int32_t n, struct pend *p,
                       int32_t *const *out, float *const *probs, int32_t *n_out, char *err, size_t errlen)
{
    const struct clspec_host *h = d->h;
    if (d->no_chain || offsetof(struct clspec_host, ctx_decode_chain) >= h->size || !h->ctx_decode_chain)
        return 0;
    int32_t rows = 0, depth = 0, n0[64];
    for (int32_t i = 0; i < n; i++) {
        if (reqs[i].p_min > 0.0f)
            return 0; /* a probability cut needs the draft model's logits */
        rows += p[i].n_toks;
        depth = reqs[i].n_max > depth ? reqs[i].n_max : depth;
    }
    if (rows > (int32_t)d->n_batch || rows > 64 || depth > 64) /* owner[] below: 64 rows */
        return 0;
    int32_t m = 0, amax[64 * 64];
    struct pend *owner[64];
    for (int32_t i = 0; i < n; i++) {
        n0[i] = d->slots[p[i].slot].n_cached;
        for (int32_t j = 0; j < p[i].n_toks; j++)
            if (stage(d, &m, &p[i], owner, p[i].toks[j], j == p[i].n_toks - 1) < 0)
                return pu_fail(err, errlen, "draft: ", "out of memory%s", NULL, NULL);
    }
    struct clspec_decode dc = {.size = sizeof dc, .n = m, .tokens = d->tok, .pos = d->pos, .seq = d->seq,
                               .logits = d->keep};
    char e2[512];
    int rc = h->ctx_decode_chain(d->c, &dc, depth, amax, e2, sizeof e2);
    if (rc < 0) { /* nothing placed: back to the history as it was, depth by depth */
        for (int32_t i = 0; i < n; i++)
            d->slots[p[i].slot].n_cached = n0[i];
        d->no_chain = rc == -5 /* CLSPEC_E_UNSUPPORTED */;
        return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t k = reqs[i].n_max;
        for (int32_t j = 0; j < k; j++) {
            out[i][j] = amax[j * n + i];
            if (probs && probs[i]) { /* greedy drafting: q is one-hot */
                float *row = probs[i] + (size_t)j * reqs[i].n_vocab;
                memset(row, 0, reqs[i].n_vocab * sizeof *row);
                row[out[i][j]] = 1.0f;
            }
        }
        n_out[i] = k;
        for (int32_t j = 0; j + 1 < depth; j++) /* the draft rows the chain placed (positions after the head) */
            if (cache_push(&d->slots[p[i].slot], amax[j * n + i]) < 0)
                return pu_fail(err, errlen, "draft: ", "out of memory%s", NULL, NULL);
    }
    return 1;
}

static int draft_batch(void *state, const struct clspec_draft_req *reqs, int32_t n, int32_t *const *out,
                       float *const *probs, int32_t *n_out, char *err, size_t errlen)
{
    struct draft *d = state;
    struct pend p[64], *owner[64];
    if (n > 64 || n > (int32_t)d->n_batch)
        return pu_fail(err, errlen, "draft: ", "more than 64 slots in one call%s", NULL, NULL);
    /* in step with each history: keep the common prefix, but decode at least the last token */
    for (int32_t i = 0; i < n; i++) {
        int32_t s = reqs[i].slot;
        if (s < 0 || s >= d->n_slots)
            return pu_fail(err, errlen, "draft: ", "slot out of range%s", NULL, NULL);
        struct dslot *sl = &d->slots[s];
        int32_t cp = 0, lim = reqs[i].n_hist - 1;
        while (cp < sl->n_cached && cp < lim && sl->cached[cp] == reqs[i].hist[cp])
            cp++;
        if (cp < sl->n_cached) {
            if (d->h->ctx_seq_rm(d->c, s, cp, -1, err, errlen) != 0)
                return -1;
            sl->n_cached = cp;
        }
        p[i] = (struct pend){.slot = s, .toks = reqs[i].hist + cp, .n_toks = reqs[i].n_hist - cp, .next = -1};
        n_out[i] = 0;
    }
    int ch = chain_draft(d, reqs, n, p, out, probs, n_out, err, errlen);
    if (ch != 0)
        return ch < 0 ? -1 : 0;
    /* the missing history of all slots, n_batch rows per decode */
    for (;;) {
        int32_t m = 0;
        for (int32_t i = 0; i < n && m < (int32_t)d->n_batch; i++)
            while (p[i].n_toks > 0 && m < (int32_t)d->n_batch) {
                if (stage(d, &m, &p[i], owner, p[i].toks[0], p[i].n_toks == 1) < 0)
                    return pu_fail(err, errlen, "draft: ", "out of memory%s", NULL, NULL);
                p[i].toks++;
                p[i].n_toks--;
            }
        if (m == 0)
            break;
        if (run(d, m, owner, err, errlen) < 0)
            return -1;
    }
    /* then one row per still-drafting slot per decode */
    for (;;) {
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++) {
            struct pend *q = &p[i];
            if (q->done)
                continue;
            if (q->next < 0 || q->conf < reqs[i].p_min) { /* the draft model is not sure enough */
                q->done = 1;
                continue;
            }
            out[i][q->k] = q->next;
            if (probs && probs[i]) { /* greedy drafting: q is one-hot */
                float *row = probs[i] + (size_t)q->k * reqs[i].n_vocab;
                memset(row, 0, reqs[i].n_vocab * sizeof *row);
                row[q->next] = 1.0f;
            }
            n_out[i] = ++q->k;
            if (q->k >= reqs[i].n_max) {
                q->done = 1;
                continue;
            }
            if (stage(d, &m, q, owner, q->next, 1) < 0)
                return pu_fail(err, errlen, "draft: ", "out of memory%s", NULL, NULL);
        }
        if (m == 0)
            break;
        if (run(d, m, owner, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int draft_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                       size_t errlen)
{
    int32_t n_out = 0;
    if (draft_batch(state, req, 1, &out, &probs, &n_out, err, errlen) < 0)
        return -1;
    return n_out;
}

static void draft_slot_end(void *state, int32_t slot)
{
    struct draft *d = state;
    if (slot < 0 || slot >= d->n_slots)
        return;
    char err[256];
    d->h->ctx_seq_rm(d->c, slot, 0, -1, err, sizeof err);
    d->slots[slot].n_cached = 0;
}

/* 1.4: checked when the host reads its configuration, before any init. */
static int draft_config_check(const struct clspec_config_view *v, const char **key, char *err, size_t errlen)
{
    return pu_need_model(v, key, err, errlen, "draft", "a small GGUF with the target's vocabulary");
}

static const struct clspec_speculator vtable = {
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
    .size = sizeof(struct clspec_speculator),
    .name = "draft",
    .caps = CLSPEC_SPEC_CAP_DEVICE_MEMORY | CLSPEC_SPEC_CAP_DRAFT_PROBS,
    .init = draft_init,
    .fini = draft_fini,
    .draft = draft_draft,
    .slot_end = draft_slot_end,
    /* slot_begin / accept: not needed, drafting re-synchronises with the history */
    .draft_batch = draft_batch,
    .config_check = draft_config_check,
};

__attribute__((visibility("default"))) const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &vtable;
}
