/* mtp.c: the MTP ("nextn") speculator. Drafts with a multi-token-prediction
 * head (DeepSeek-V3 / GLM-4.5 style) that runs on the host's device compute
 * service (ABI 1.4; the forward is mtp_head.c, its layer the engine's block
 * builder): the target's own GGUF when it holds nextn blocks, or a sidecar
 * head file (`model`). Builds against the installed headers only. It takes the target's pre-final-norm hidden state through the
 * host's taps and keeps, per slot, the head's own KV cache (one sequence per
 * slot) with exactly one entry per committed position p >= 1, built from
 * (x_p, h_{p-1}) with the target's hidden state h. A draft of k tokens at
 * the pending position n chains the head: step 1 is (x_n, h_{n-1}), step
 * j > 1 is (d_{j-1}, h'_{n+j-2}) with h' the head's own output before its
 * norm (kept on the device, per slot, between the chained steps). After verification the head's KV is cut to positions 1..n (the
 * step-1 entry used the target's hidden state, so it stays) and the
 * accepted positions are recomputed from the target's hidden states of the
 * verify rows. Semantics: shared/reference/README-mtp.md.
 *
 * [speculator] keys: model (GGUF with the head; default the target's own
 * file), device (index or name substring; default the target's last
 * layer's device), type_k / type_v (the head's KV: f32, f16, bf16, q8_0,
 * q4_0; default the target's), n_ctx (head KV cells; default the target's
 * n_ctx + 65 per slot), n_batch (rows per head decode, default 64). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <clspec/speculator.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/plugin_util.h"
#include "mtp_head.h"

struct mslot {
    bool active;
    int32_t *hist;    /* (cap) the slot's tokens: prompt + appended; hist[n_hist-1] is pending */
    int32_t n_hist, cap;
    int32_t n_valid;  /* the head's KV holds exactly positions 1..n_valid built from target hidden states */
    float *stage;     /* (n_batch, n_embd) the hidden g of the staged entries n_valid+1..n_valid+n_stage:
                       * decoded with the next draft's first step, in one decode */
    int32_t n_stage;  /* < n_batch */
    /* drafts are made for every ready slot at once (one head decode per draft depth for all slots) at the
     * first draft call of a step; the other slots' calls take theirs from here */
    int32_t cache[64], n_cache;
    int32_t cache_n;  /* n_hist the cache was made for, -1 = none */
    bool cache_stop;  /* the chain stopped at p_min */
    int32_t want;     /* draft length the slot asked for last time */
    int32_t k_req;    /* draft_batch: this step's length (0 = not in the batch) */
    float *h_last;    /* (n_embd) the target's hidden state at position h_pos */
    int32_t h_pos;    /* -1: none */
    char broken[512]; /* set when an accept failed: the next draft reports it */
    int32_t dev_i, dev_k; /* draft_batch_dev: the slot's chain in hd->amax (-1: none) and its length */
    bool detached;    /* 1.8: the host keeps the slot plain (slot_detach): no drafts, no accept calls */
};

struct mtp {
    const struct clspec_host *h;
    struct mtp_head *hd;      /* the head, its KV cache (sequence = slot) and h' per slot on the device */
    uint32_t n_embd, n_vocab, n_batch;
    int32_t tap_layer; /* the target's n_layer: the state before its final norm */
    int32_t n_slots;
    struct mslot *slots;
    int32_t *tok, *pos, *seq; /* (n_batch) decode staging */
    uint8_t *keep, *save;
    int32_t *gseq;            /* (n_batch) row takes the h' saved for this slot (-1: embd's row) */
    int32_t *amax;            /* (n_batch) argmax of the kept rows */
    float *embd;              /* (n_batch, n_embd) */
    float *logits;            /* (n_batch, n_vocab) the kept rows' logits, read only when p_min > 0 */
    long long n_drafts, n_draft_tokens;
    int32_t k_hi;             /* the longest draft asked for so far: what other slots' chains get */
    double t_draft, t_accept; /* seconds spent in draft / accept (logged at fini, debug level) */
    /* draft_batch_dev (1.7): the chain's argmaxes stay in hd->amax (one chain per call: dev_used);
     * drafts made on the host go to dtok (64 per slot) */
    bool dev_mode, dev_used;
    int32_t dev_n;            /* chains in hd->amax */
    clspec_buf *dtok;         /* int32 (n_slots, 64) */
};

static void mtp_fini(void *state)
{
    struct mtp *p = state;
    if (!p)
        return;
    if (p->h && p->hd) {
        p->h->log(p->h, CLSPEC_LOG_INFO, "%lld drafts, %lld tokens drafted", p->n_drafts, p->n_draft_tokens);
        p->h->log(p->h, CLSPEC_LOG_DEBUG, "%.1f ms drafting, %.1f ms in accept", 1e3 * p->t_draft,
                  1e3 * p->t_accept);
    }
    for (int32_t s = 0; p->slots && s < p->n_slots; s++) {
        free(p->slots[s].hist);
        free(p->slots[s].h_last);
        free(p->slots[s].stage);
    }
    free(p->slots);
    mtp_head_free(p->hd);
    free(p->tok);
    free(p->pos);
    free(p->seq);
    free(p->keep);
    free(p->save);
    free(p->gseq);
    free(p->amax);
    free(p->embd);
    free(p->logits);
    free(p);
}

#define HAS(h, e) (offsetof(struct clspec_host, e) < (h)->size && (h)->e)

static int mtp_init(const struct clspec_host *h, void **state, char *err, size_t errlen)
{
    *state = NULL;
    if (h->abi_minor < 4 || !HAS(h, block_kv) || !HAS(h, tap_request) || !HAS(h, tap_get))
        return pu_fail(err, errlen, "mtp: ",
                       "this clspec lacks the device compute service and the taps (ABI 1.4; this host is %s)%s",
                       h->abi_minor < 4 ? "older" : "incomplete", NULL);
    struct clspec_target_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    ti.model.size = sizeof ti.model;
    if (h->target_info(h, &ti) != 0)
        return pu_fail(err, errlen, "mtp: ", "no target%s%s", NULL, NULL);
    const char *model = h->config_get(h, "model");
    if (model && !*model)
        model = NULL; /* the target's own nextn blocks */
    int32_t device = -1;
    const char *dv = h->config_get(h, "device");
    if (dv && *dv && (device = pu_find_device(h, dv)) < 0) {
        char tgt[300];
        snprintf(tgt, sizeof tgt, "%d (%s)", (int)ti.model.device, pu_dev_name(h, ti.model.device));
        return pu_fail(err, errlen, "mtp: ",
                       "[speculator] device = %s: not one of the target's devices; the head can go to the target's "
                       "last-layer device %s (the default) or another device the target uses",
                       dv, tgt);
    }
    uint32_t tk = ti.type_k, tv = ti.type_v;
    const char *v;
    if ((v = h->config_get(h, "type_k")) && (!*v || pu_parse_type(v, tk, &tk) < 0))
        return pu_fail(err, errlen, "mtp: ", "type_k = %s (want f32, f16, bf16, q8_0 or q4_0)%s", v, NULL);
    if ((v = h->config_get(h, "type_v")) && (!*v || pu_parse_type(v, tv, &tv) < 0))
        return pu_fail(err, errlen, "mtp: ", "type_v = %s (want f32, f16, bf16, q8_0 or q4_0)%s", v, NULL);
    struct mtp *p = calloc(1, sizeof *p);
    if (!p)
        return pu_fail(err, errlen, "mtp: ", "out of memory%s%s", NULL, NULL);
    p->h = h;
    p->n_embd = ti.model.n_embd;
    p->n_vocab = ti.model.n_vocab;
    p->n_slots = (int32_t)(ti.n_slots ? ti.n_slots : 1);
    p->tap_layer = (int32_t)ti.model.n_layer;
    long nb = (v = h->config_get(h, "n_batch")) ? strtol(v, NULL, 10) : 64;
    long nctx = (v = h->config_get(h, "n_ctx")) ? strtol(v, NULL, 10) : (long)ti.n_ctx + 65L * p->n_slots;
    if (nb < 1 || nb > 4096 || nctx < 2) {
        mtp_fini(p);
        return pu_fail(err, errlen, "mtp: ", "n_batch must be 1..4096 and n_ctx >= 2%s%s", NULL, NULL);
    }
    p->n_batch = (uint32_t)nb;
    char e2[768] = "";
    const int32_t head_dev = device >= 0 ? device : ti.model.device;
    if (mtp_head_load(h, model, head_dev, p->n_embd, p->n_vocab, &p->hd, e2, sizeof e2) != 0 ||
        mtp_head_ctx(p->hd, (int32_t)nctx, (int32_t)p->n_batch, p->n_slots, tk, tv, e2, sizeof e2) != 0) {
        mtp_fini(p);
        return pu_fail(err, errlen, "mtp: ", "%s%s", e2, model ? "" : " (set model = PATH to an MTP head file)");
    }
    if (model && p->hd->blk != (int32_t)ti.model.n_layer) { /* a head follows the last layer of its own trunk */
        char msg[600];
        snprintf(msg, sizeof msg, "%s: the MTP head was made for a %d-layer trunk (its nextn block is blk.%d); the "
                 "target (%s) has %u layers: this head belongs to another model", model, (int)p->hd->blk,
                 (int)p->hd->blk, ti.model.arch ? ti.model.arch : "?", ti.model.n_layer);
        mtp_fini(p);
        return pu_fail(err, errlen, "mtp: ", "%s%s", msg, NULL);
    }
    if (!model)
        model = "the target's nextn blocks";
    /* placement: where the head runs and where the target's output is (its last layer's device) */
    const int32_t out_dev = ti.model.device;
    char where[400];
    snprintf(where, sizeof where, "device %d (%s)", (int)head_dev, pu_dev_name(h, head_dev));
    if (out_dev >= 0 && out_dev != head_dev)
        h->log(h, CLSPEC_LOG_INFO,
               "head on %s, the target's output on device %d (%s): the shared tensors were copied to the head's "
               "device and the hidden states cross through the host",
               where, (int)out_dev, pu_dev_name(h, out_dev));
    int32_t layer = p->tap_layer;
    if (h->tap_request(h, &layer, 1, e2, sizeof e2) != 0) {
        mtp_fini(p);
        return pu_fail(err, errlen, "mtp: ", "%s%s", e2, NULL);
    }
    p->slots = calloc((size_t)p->n_slots, sizeof *p->slots);
    p->tok = malloc(p->n_batch * sizeof *p->tok);
    p->pos = malloc(p->n_batch * sizeof *p->pos);
    p->seq = malloc(p->n_batch * sizeof *p->seq);
    p->keep = malloc(p->n_batch);
    p->save = malloc(p->n_batch);
    p->gseq = malloc(p->n_batch * sizeof *p->gseq);
    p->amax = malloc(p->n_batch * sizeof *p->amax);
    p->embd = malloc((size_t)p->n_batch * p->n_embd * sizeof *p->embd);
    bool ok = p->slots && p->tok && p->pos && p->seq && p->keep && p->save && p->gseq && p->amax && p->embd;
    for (int32_t s = 0; ok && s < p->n_slots; s++)
        ok = (p->slots[s].h_last = malloc(p->n_embd * sizeof(float))) != NULL &&
             (p->slots[s].stage = malloc((size_t)p->n_batch * p->n_embd * sizeof(float))) != NULL;
    if (!ok) {
        mtp_fini(p);
        return pu_fail(err, errlen, "mtp: ", "out of memory%s%s", NULL, NULL);
    }
    if (h->buf_new(p->hd->d, CLSPEC_BUF_I32, (size_t)p->n_slots * 64, &p->dtok, e2, sizeof e2) < 0) {
        mtp_fini(p);
        return pu_fail(err, errlen, "mtp: ", "%s%s", e2, NULL);
    }
    h->log(h, CLSPEC_LOG_INFO, "head %s on %s, KV %u cells", model, where, (unsigned)nctx);
    *state = p;
    return 0;
}

static void slot_reset(struct mtp *p, int32_t s)
{
    struct mslot *ms = &p->slots[s];
    char e[256];
    mtp_head_seq_rm(p->hd, s, 0, -1, e, sizeof e);
    ms->active = false;
    ms->n_hist = 0;
    ms->n_valid = 0;
    ms->n_stage = 0;
    ms->h_pos = -1;
    ms->n_cache = 0;
    ms->cache_n = -1;
    ms->want = 0;
    ms->broken[0] = 0;
    ms->detached = false;
}

static int append(struct mslot *ms, const int32_t *t, int32_t n)
{
    if (ms->n_hist + n > ms->cap) {
        int32_t cap = ms->cap * 2 > ms->n_hist + n ? ms->cap * 2 : ms->n_hist + n + 256;
        int32_t *x = realloc(ms->hist, (size_t)cap * sizeof *x);
        if (!x)
            return -1;
        ms->hist = x;
        ms->cap = cap;
    }
    memcpy(ms->hist + ms->n_hist, t, (size_t)n * sizeof *t);
    ms->n_hist += n;
    return 0;
}

/* The target's hidden state at position q: h_last or a tap row. */
static const float *target_h(const struct mtp *p, const struct mslot *ms, const float *rows, int32_t nr, int32_t fp,
                             int32_t q)
{
    if (rows && q >= fp && q < fp + nr)
        return rows + (size_t)(q - fp) * p->n_embd;
    if (q == ms->h_pos)
        return ms->h_last;
    return NULL;
}

/* Decodes the first n staged entries of slot s (no logits) into the head's KV. */
static int flush(struct mtp *p, int32_t s, int32_t n, char *err, size_t errlen)
{
    struct mslot *ms = &p->slots[s];
    const size_t E = p->n_embd;
    int32_t m = 0; /* entries decoded: those of image rows are left out (a hole in the head's KV) */
    for (int32_t i = 0; i < n; i++) {
        const int32_t q = ms->n_valid + 1 + i;
        if (ms->hist[q] < 0)
            continue;
        p->pos[m] = q;
        p->tok[m] = ms->hist[q];
        p->seq[m] = s;
        p->keep[m] = 0;
        memcpy(p->embd + (size_t)m * E, ms->stage + (size_t)i * E, E * sizeof(float));
        m++;
    }
    char e2[500];
    if (m > 0 && mtp_head_decode(p->hd, m, p->tok, p->pos, p->seq, p->embd, NULL, NULL, p->keep, p->amax, NULL, e2,
                                 sizeof e2) < 0)
        return pu_fail(err, errlen, "mtp: ", "%s%s", e2, NULL);
    memmove(ms->stage, ms->stage + (size_t)n * E, (size_t)(ms->n_stage - n) * E * sizeof(float));
    ms->n_stage -= n;
    ms->n_valid += n;
    return 0;
}

/* Stages the head's entries up to position upto ((x_p, h_{p-1}) with the
 * target's hidden states: the tap rows of the slot's last target forward,
 * or h_last) and keeps the target's hidden state at upto (the next step-1
 * input). Full batches are decoded at once; the rest waits for the next
 * draft's first step. */
static int fill(struct mtp *p, int32_t s, int32_t upto, char *err, size_t errlen)
{
    struct mslot *ms = &p->slots[s];
    int32_t nr = 0, fp = -1;
    const float *rows = p->h->tap_get(p->h, s, &nr, &fp);
    const size_t E = p->n_embd;
    for (int32_t q = ms->n_valid + ms->n_stage + 1; q <= upto; q++) {
        const float *hq = target_h(p, ms, rows, nr, fp, q - 1);
        if (!hq)
            return pu_fail(err, errlen, "mtp: ", "the target's hidden state %s is missing (no taps for the slot)%s",
                           "h_{p-1}", NULL);
        if (ms->n_stage + 1 >= (int32_t)p->n_batch && flush(p, s, ms->n_stage, err, errlen) < 0)
            return -1;
        memcpy(ms->stage + (size_t)ms->n_stage * E, hq, E * sizeof(float));
        ms->n_stage++;
    }
    const float *hu = target_h(p, ms, rows, nr, fp, upto);
    if (hu) {
        if (hu != ms->h_last)
            memcpy(ms->h_last, hu, E * sizeof(float));
        ms->h_pos = upto;
    }
    return 0;
}

static int mtp_slot_begin(void *state, int32_t s, const int32_t *prompt, int32_t n_prompt, char *err,
                          size_t errlen)
{
    struct mtp *p = state;
    if (s < 0 || s >= p->n_slots)
        return pu_fail(err, errlen, "mtp: ", "slot out of range%s%s", NULL, NULL);
    slot_reset(p, s);
    struct mslot *ms = &p->slots[s];
    if (append(ms, prompt, n_prompt) < 0)
        return pu_fail(err, errlen, "mtp: ", "out of memory%s%s", NULL, NULL);
    ms->active = true;
    /* the prompt's rows 0..n_prompt-2 were prefilled: entries 1..n_prompt-2 */
    return n_prompt >= 2 ? fill(p, s, n_prompt - 2, err, errlen) : 0;
}

/* The probability the logits x (n) give their argmax b. */
static float p_top(const float *x, uint32_t n, int32_t b)
{
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += exp((double)x[i] - (double)x[b]);
    return (float)(1.0 / sum);
}

/* One head decode of n rows staged in p->tok/pos/seq/keep: the hidden g from
 * p->embd (dev = 0) or the h' saved for each row's slot (dev = 1); every
 * kept row's h' is saved for its slot. The kept rows' argmax to p->amax and,
 * when p_min > 0, their logits to p->logits. Returns the kept rows or -1. */
static int head_step(struct mtp *p, int32_t n, int dev, float p_min, char *err, size_t errlen)
{
    for (int32_t r = 0; r < n; r++) {
        p->save[r] = p->keep[r];
        p->gseq[r] = p->seq[r];
    }
    if (p_min > 0 && !p->logits && !(p->logits = malloc((size_t)p->n_batch * p->n_vocab * sizeof(float))))
        return pu_fail(err, errlen, "mtp: ", "out of memory%s%s", NULL, NULL);
    char e2[500];
    int k = mtp_head_decode(p->hd, n, p->tok, p->pos, p->seq, dev ? NULL : p->embd, dev ? p->gseq : NULL, p->save,
                            p->keep, p->amax, p_min > 0 ? p->logits : NULL, e2, sizeof e2);
    return k < 0 ? pu_fail(err, errlen, "mtp: ", "%s%s", e2, NULL) : k;
}

/* Whether slot s can draft now: the target's hidden state at n-2 known and
 * the head's entries 1..n-2 in the KV or staged. */
static bool ready(struct mslot *ms)
{
    const int32_t N = ms->n_hist;
    if (!ms->active || ms->broken[0] || ms->detached || N < 2)
        return false;
    if (ms->n_stage == 0 && ms->n_valid > N - 2)
        ms->n_valid = N - 2; /* a step-1 entry of a draft that was not verified (full cache): redone */
    return ms->h_pos == N - 2 && ms->n_valid + ms->n_stage == N - 2;
}

/* Drafts for every ready slot (slot s0 with k0 tokens, the others with the
 * length they asked for last time) into their caches: one head decode for
 * all first steps (with each slot's staged entries), then one per depth;
 * without a probability cut (p_min 0) the whole chain is queued on the
 * device (mtp_head_chain: each depth's tokens and g taken from the previous
 * depth there, the cells of every depth placed up front) and read once. */
static int draft_all(struct mtp *p, int32_t s0, int32_t k0, float p_min, char *err, size_t errlen)
{
    const size_t E = p->n_embd;
    int32_t sl[64], n_sl = 0, rows = 0;
    int32_t kk[64];
    char e2[500];
    /* s0 first: its staged entries may need a flush, which uses the staging arrays (rows is still 0) */
    for (int32_t it = -1; it < p->n_slots && n_sl < 64; it++) {
        int32_t s = it < 0 ? s0 : it;
        if (it >= 0 && s == s0)
            continue;
        if (s < 0)
            continue;
        struct mslot *ms = &p->slots[s];
        if (!ready(ms))
            continue;
        /* a slot of this draft_batch call: its length; another: the longest (the host's length grows back) */
        int32_t k = s == s0 ? k0 : ms->k_req > 0 ? ms->k_req : ms->want > 0 && !p->dev_mode ? p->k_hi : 0;
        if (k <= 0)
            continue;
        if (s != s0 && rows + ms->n_stage + 1 > (int32_t)p->n_batch)
            continue; /* no room in this decode: the slot drafts at its own call */
        if (rows + ms->n_stage + 1 > (int32_t)p->n_batch && flush(p, s, ms->n_stage, err, errlen) < 0)
            return -1;
        if (rows + ms->n_stage + 1 > (int32_t)p->n_batch)
            continue;
        if (mtp_head_seq_rm(p->hd, s, ms->n_hist - 1, -1, e2, sizeof e2) != 0)
            return pu_fail(err, errlen, "mtp: ", "%s%s", e2, NULL);
        kk[n_sl] = k < 64 ? k : 64;
        sl[n_sl++] = s;
        ms->n_cache = 0;
        ms->cache_n = ms->n_hist;
        ms->cache_stop = false;
        for (int32_t i = 0; i <= ms->n_stage; i++, rows++) {
            if (ms->hist[ms->n_valid + 1 + i] < 0) { /* an image row: no entry (the last row is text) */
                rows--;
                continue;
            }
            p->pos[rows] = ms->n_valid + 1 + i;
            p->tok[rows] = ms->hist[p->pos[rows]];
            p->seq[rows] = s;
            p->keep[rows] = i == ms->n_stage;
            memcpy(p->embd + (size_t)rows * E, i < ms->n_stage ? ms->stage + (size_t)i * E : ms->h_last,
                   E * sizeof(float));
        }
    }
    if (n_sl > 0 && p_min <= 0.0f && !(p->dev_mode && p->dev_used)) { /* the whole chain on the device */
        int32_t D = 1, pos1[64];
        for (int32_t i = 0; i < n_sl; i++) {
            D = kk[i] > D ? kk[i] : D;
            pos1[i] = p->slots[sl[i]].n_hist;
        }
        if (rows + (D - 1) * n_sl <= (int32_t)p->n_batch && D * n_sl <= (int32_t)p->n_batch) {
            if (mtp_head_chain(p->hd, rows, p->tok, p->pos, p->seq, p->embd, p->keep, n_sl, pos1, sl, D,
                               p->dev_mode ? NULL : p->amax, e2, sizeof e2) < 0)
                return pu_fail(err, errlen, "mtp: ", "%s%s", e2, NULL);
            p->dev_used = p->dev_mode;
            p->dev_n = n_sl;
            for (int32_t i = 0; i < n_sl; i++) {
                struct mslot *ms = &p->slots[sl[i]];
                ms->n_valid = ms->n_hist - 1; /* the step-1 entry used the target's hidden state: it stays */
                ms->n_stage = 0;
                if (p->dev_mode) { /* left on the device: nothing in the cache to serve */
                    ms->dev_i = i;
                    ms->dev_k = kk[i];
                    ms->cache_stop = true;
                    continue;
                }
                for (int32_t d = 0; d < kk[i]; d++)
                    ms->cache[ms->n_cache++] = p->amax[d * n_sl + i];
            }
            return 0;
        }
    }
    bool stop[64] = {false};
    for (int32_t depth = 0; rows > 0; depth++) {
        if (head_step(p, rows, depth > 0, p_min, err, errlen) < 0)
            return -1;
        /* read this depth's results (rows with logits, in slot order) */
        int32_t li = 0;
        for (int32_t r = 0; r < rows; r++) {
            if (!p->keep[r])
                continue;
            int32_t i = 0;
            while (sl[i] != p->seq[r])
                i++;
            struct mslot *ms = &p->slots[sl[i]];
            if (depth == 0) {
                ms->n_valid = ms->n_hist - 1; /* the step-1 entry used the target's hidden state: it stays */
                ms->n_stage = 0;
            }
            const int32_t t = p->amax[li];
            float ptop = p_min > 0 ? p_top(p->logits + (size_t)li * p->n_vocab, p->n_vocab, t) : 1.0f;
            li++;
            if (ptop < p_min) {
                stop[i] = ms->cache_stop = true;
                continue;
            }
            ms->cache[ms->n_cache++] = t;
        }
        /* the next depth: one row per slot still drafting, its g the slot's h' (on the device) */
        rows = 0;
        for (int32_t i = 0; i < n_sl; i++) {
            struct mslot *ms = &p->slots[sl[i]];
            if (stop[i] || ms->n_cache != depth + 1 || ms->n_cache >= kk[i])
                continue;
            p->tok[rows] = ms->cache[depth];
            p->pos[rows] = ms->n_hist - 1 + depth + 1;
            p->seq[rows] = sl[i];
            p->keep[rows] = 1;
            rows++;
        }
    }
    return 0;
}

/* Checks req against the slot's state; records its length. */
static int check_req(struct mtp *p, const struct clspec_draft_req *req, char *err, size_t errlen)
{
    const int32_t s = req->slot, N = req->n_hist;
    if (s < 0 || s >= p->n_slots || !p->slots[s].active)
        return pu_fail(err, errlen, "mtp: ", "draft for a slot that did not begin%s%s", NULL, NULL);
    struct mslot *ms = &p->slots[s];
    if (ms->broken[0])
        return pu_fail(err, errlen, "mtp: ", "%s%s", ms->broken, NULL);
    if (ms->n_hist != N || memcmp(ms->hist, req->hist, (size_t)N * sizeof *req->hist) != 0)
        return pu_fail(err, errlen, "mtp: ", "the slot's history differs from what the plugin was told%s%s", NULL,
                       NULL);
    ms->want = req->n_max < 64 ? req->n_max : 64;
    if (ms->want > p->k_hi)
        p->k_hi = ms->want;
    return 0;
}

/* The slot's draft from its cache into out (a chain made shorter at another
 * slot's call goes on alone); returns the count. */
static int serve(struct mtp *p, const struct clspec_draft_req *req, int32_t *out, char *err, size_t errlen)
{
    const int32_t s = req->slot, N = req->n_hist;
    struct mslot *ms = &p->slots[s];
    const int32_t n_max = ms->want;
    while (ms->cache_n == N && !ms->cache_stop && ms->n_cache > 0 && ms->n_cache < n_max) {
        p->tok[0] = ms->cache[ms->n_cache - 1];
        p->pos[0] = N - 1 + ms->n_cache;
        p->seq[0] = s;
        p->keep[0] = 1;
        if (head_step(p, 1, 1, req->p_min, err, errlen) < 0)
            return -1;
        const int32_t t = p->amax[0];
        float ptop = req->p_min > 0 ? p_top(p->logits, p->n_vocab, t) : 1.0f;
        if (ptop < req->p_min) {
            ms->cache_stop = true;
            break;
        }
        ms->cache[ms->n_cache++] = t;
    }
    int32_t k = ms->cache_n == N ? (ms->n_cache < n_max ? ms->n_cache : n_max) : 0;
    memcpy(out, ms->cache, (size_t)k * sizeof *out);
    p->n_drafts++;
    p->n_draft_tokens += k;
    return k;
}

static int mtp_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                     size_t errlen)
{
    (void)probs;
    struct mtp *p = state;
    if (check_req(p, req, err, errlen) < 0)
        return -1;
    struct mslot *ms = &p->slots[req->slot];
    double t0 = pu_now_s();
    if (ms->cache_n != req->n_hist && !ready(ms))
        return 0; /* no target hidden state for the pending position yet */
    if (ms->cache_n != req->n_hist && draft_all(p, req->slot, ms->want, req->p_min, err, errlen) < 0)
        return -1;
    int k = serve(p, req, out, err, errlen);
    p->t_draft += pu_now_s() - t0;
    return k;
}

/* All slots' drafts at once: their first steps in one head decode, then one
 * decode per depth (draft_all). */
static int mtp_draft_batch(void *state, const struct clspec_draft_req *reqs, int32_t n, int32_t *const *out,
                           float *const *probs, int32_t *n_out, char *err, size_t errlen)
{
    (void)probs;
    struct mtp *p = state;
    double t0 = pu_now_s();
    float p_min = 0;
    int32_t first = -1;
    for (int32_t i = 0; i < n; i++) {
        n_out[i] = 0;
        if (check_req(p, &reqs[i], err, errlen) < 0)
            return -1;
        struct mslot *ms = &p->slots[reqs[i].slot];
        ms->k_req = ms->want;
        if (reqs[i].p_min > p_min)
            p_min = reqs[i].p_min;
        if (first < 0 && ms->cache_n != reqs[i].n_hist && ready(ms))
            first = i;
    }
    int rc = first < 0 ? 0 : draft_all(p, reqs[first].slot, p->slots[reqs[first].slot].want, p_min, err, errlen);
    /* slots that did not fit that decode (n_batch rows): another round for each */
    for (int32_t i = first + 1; rc == 0 && first >= 0 && i < n; i++) {
        struct mslot *ms = &p->slots[reqs[i].slot];
        if (ms->cache_n != reqs[i].n_hist && ready(ms))
            rc = draft_all(p, reqs[i].slot, ms->want, p_min, err, errlen);
    }
    for (int32_t i = 0; i < n; i++)
        p->slots[reqs[i].slot].k_req = 0;
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        int k = serve(p, &reqs[i], out[i], err, errlen);
        if (k < 0)
            return -1;
        n_out[i] = k;
    }
    p->t_draft += pu_now_s() - t0;
    return rc;
}

/* 1.7: the drafts of reqs stay on the device: one chain for every ready
 * slot (draft_all without a read), its argmaxes in hd->amax; a slot the
 * chain could not take drafts on the host and its tokens are queued into
 * dtok. Nothing waits. */
static int mtp_draft_batch_dev(void *state, const struct clspec_draft_req *reqs, int32_t n,
                               struct clspec_draft_dev *out, char *err, size_t errlen)
{
    struct mtp *p = state;
    double t0 = pu_now_s();
    int32_t first = -1, tok[64];
    for (int32_t i = 0; i < n; i++) {
        out[i].buf = NULL;
        out[i].off = 0;
        out[i].stride = 1;
        out[i].n = 0;
        if (check_req(p, &reqs[i], err, errlen) < 0)
            return -1;
        if (reqs[i].p_min > 0)
            return pu_fail(err, errlen, "mtp: ", "device drafts take no probability cut (p_min)%s%s", NULL, NULL);
        struct mslot *ms = &p->slots[reqs[i].slot];
        ms->k_req = ms->want;
        ms->dev_i = -1;
        if (first < 0 && ms->cache_n != reqs[i].n_hist && ready(ms))
            first = i;
    }
    p->dev_mode = true;
    p->dev_used = false;
    int rc = first < 0 ? 0 : draft_all(p, reqs[first].slot, p->slots[reqs[first].slot].want, 0, err, errlen);
    /* slots that did not fit that decode, unless a chain left its tokens in hd->amax (the next decode
     * would overwrite them before the target reads them): those go without a draft this step */
    for (int32_t i = first + 1; rc == 0 && first >= 0 && !p->dev_used && i < n; i++) {
        struct mslot *ms = &p->slots[reqs[i].slot];
        if (ms->cache_n != reqs[i].n_hist && ready(ms))
            rc = draft_all(p, reqs[i].slot, ms->want, 0, err, errlen);
    }
    p->dev_mode = false;
    for (int32_t i = 0; i < n; i++)
        p->slots[reqs[i].slot].k_req = 0;
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        const int32_t s = reqs[i].slot;
        struct mslot *ms = &p->slots[s];
        if (ms->dev_i >= 0 && ms->cache_n == reqs[i].n_hist) {
            out[i].buf = p->hd->amax;
            out[i].off = (size_t)ms->dev_i;
            out[i].stride = (size_t)p->dev_n;
            out[i].n = ms->dev_k < ms->want ? ms->dev_k : ms->want;
            p->n_drafts++;
            p->n_draft_tokens += out[i].n;
            continue;
        }
        int k = p->dev_used ? 0 : serve(p, &reqs[i], tok, err, errlen); /* (serve may decode: see above) */
        if (k < 0)
            return -1;
        if (k > 0 && p->h->buf_write(p->dtok, (size_t)s * 64, (size_t)k, tok, err, errlen) < 0)
            return -1;
        out[i].buf = p->dtok;
        out[i].off = (size_t)s * 64;
        out[i].n = k;
    }
    p->t_draft += pu_now_s() - t0;
    return rc;
}

static void mtp_accept(void *state, int32_t s, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                       int32_t n_tokens)
{
    (void)n_drafted;
    (void)n_accepted;
    struct mtp *p = state;
    if (s < 0 || s >= p->n_slots || !p->slots[s].active || p->slots[s].broken[0])
        return;
    struct mslot *ms = &p->slots[s];
    char e2[500];
    double t0 = pu_now_s();
    ms->n_cache = 0;
    ms->cache_n = -1;
    if (append(ms, tokens, n_tokens) < 0) {
        snprintf(ms->broken, sizeof ms->broken, "out of memory");
        return;
    }
    /* drop the draft entries beyond the valid prefix, recompute the accepted positions */
    if (mtp_head_seq_rm(p->hd, s, ms->n_valid + 1, -1, e2, sizeof e2) != 0 ||
        fill(p, s, ms->n_hist - 2, e2, sizeof e2) != 0)
        snprintf(ms->broken, sizeof ms->broken, "%s", e2);
    p->t_accept += pu_now_s() - t0;
}

/* 1.8: the host keeps slot s plain: nothing to do per token until slot_attach (no cached draft is
 * kept, and no other slot's draft call makes one for it). */
static void mtp_slot_detach(void *state, int32_t s)
{
    struct mtp *p = state;
    if (s < 0 || s >= p->n_slots)
        return;
    p->slots[s].detached = true;
    p->slots[s].n_cache = 0;
    p->slots[s].cache_n = -1;
}

/* 1.8: the tokens of the plain steps, caught up on as one accept (their entries are staged from the
 * taps the host kept, and decoded with the next draft's first step or in full batches now). */
static int mtp_slot_attach(void *state, int32_t s, const int32_t *tokens, int32_t n_tokens, char *err,
                           size_t errlen)
{
    struct mtp *p = state;
    if (s < 0 || s >= p->n_slots || !p->slots[s].active)
        return pu_fail(err, errlen, "mtp: ", "slot_attach: a slot that did not begin%s%s", NULL, NULL);
    struct mslot *ms = &p->slots[s];
    ms->detached = false;
    if (n_tokens > 0)
        mtp_accept(state, s, 0, 0, tokens, n_tokens);
    if (ms->broken[0])
        return pu_fail(err, errlen, "mtp: ", "slot_attach: %s%s", ms->broken, NULL);
    return 0;
}

static void mtp_slot_end(void *state, int32_t s)
{
    struct mtp *p = state;
    if (s >= 0 && s < p->n_slots)
        slot_reset(p, s);
}

/* 1.4: checked when the host reads its configuration, before any init:
 * model is optional (default: the target's own nextn blocks); the head's
 * n_batch and n_ctx, when set, are whole numbers in range. */
static int mtp_config_check(const struct clspec_config_view *v, const char **key, char *err, size_t errlen)
{
    static const struct {
        const char *key, *want;
        long lo, hi;
    } keys[] = {{"n_batch", "a whole number from 1 to 4096", 1, 4096},
                {"n_ctx", "a whole number of at least 2", 2, 1L << 30}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *s = v->get(v, keys[i].key);
        char *end = NULL;
        long x = s ? strtol(s, &end, 10) : keys[i].lo;
        if (s && (end == s || *end || x < keys[i].lo || x > keys[i].hi)) {
            *key = keys[i].key;
            return pu_fail(err, errlen, "", "mtp: '%s' is not %s", s, keys[i].want);
        }
    }
    return 0;
}

/* For tests/test-mtp.c (found with dlsym): one head decode on the plugin's
 * head, outside any slot's bookkeeping: chain = 0 takes g (n, n_embd) from
 * the host, chain = 1 each row's h' saved for its sequence by the previous
 * call; the kept rows (keep, NULL: the last) save their h' and give their
 * logits (n_keep, n_vocab) and argmax. Returns n_keep or < 0. */
int mtp_test_decode(void *state, int32_t n, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                    const float *g, int chain, const uint8_t *keep, float *logits, int32_t *amax, char *err,
                    size_t errlen);
__attribute__((visibility("default"))) int mtp_test_decode(void *state, int32_t n, const int32_t *tok,
                                                           const int32_t *pos, const int32_t *seq, const float *g,
                                                           int chain, const uint8_t *keep, float *logits,
                                                           int32_t *amax, char *err, size_t errlen)
{
    struct mtp *p = state;
    uint8_t save[64];
    if (n < 1 || n > 64)
        return pu_fail(err, errlen, "mtp_test_decode: ", "1..64 rows%s%s", NULL, NULL);
    for (int32_t i = 0; i < n; i++)
        save[i] = keep ? keep[i] : i == n - 1;
    return mtp_head_decode(p->hd, n, tok, pos, seq, chain ? NULL : g, chain ? seq : NULL, save, keep, amax, logits,
                           err, errlen);
}

/* For tests: removes the head's cache entries of seq with p0 <= pos < p1 (p1 < 0: to the end). */
int mtp_test_seq_rm(void *state, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);
__attribute__((visibility("default"))) int mtp_test_seq_rm(void *state, int32_t seq, int32_t p0, int32_t p1,
                                                           char *err, size_t errlen)
{
    struct mtp *p = state;
    return mtp_head_seq_rm(p->hd, seq, p0, p1, err, errlen);
}

static const struct clspec_speculator mtp_vtable = {
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
    .size = sizeof(struct clspec_speculator),
    .name = "mtp",
    /* EMBD_ROWS: an entry (x_p, h_{p-1}) whose x_p is an image row is left out of the head's KV */
    .caps = CLSPEC_SPEC_CAP_TARGET_TAPS | CLSPEC_SPEC_CAP_DEVICE_MEMORY | CLSPEC_SPEC_CAP_TARGET_TENSORS |
            CLSPEC_SPEC_CAP_EMBD_ROWS,
    .init = mtp_init,
    .fini = mtp_fini,
    .slot_begin = mtp_slot_begin,
    .draft = mtp_draft,
    .accept = mtp_accept,
    .slot_end = mtp_slot_end,
    .draft_batch = mtp_draft_batch,
    .config_check = mtp_config_check,
    .draft_batch_dev = mtp_draft_batch_dev,
    .slot_detach = mtp_slot_detach,
    .slot_attach = mtp_slot_attach,
};

__attribute__((visibility("default"))) const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &mtp_vtable;
}
