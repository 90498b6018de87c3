/* dflash.c: the DFlash speculator (block-diffusion drafter, arch "dflash",
 * ../shared/docs/FORMATS.md). The drafter keeps, per slot, the injected
 * features of every token the target has committed (prefill and accepted
 * verify rows, from the host's target taps); a draft is one block
 * [last, MASK x n] at the slot's true next positions, decoded with
 * non-causal attention; rows 1..n give the draft. The blocks of all slots
 * that need one are decoded in one batched decode (draft_batch; with
 * per-slot draft() calls the first of a step computes every waiting slot's
 * block and the others are served from it).
 * The drafter itself (dflash_model.c) runs on the host's device compute
 * service (ABI >= 1.4: dev_open .. block_kv, with the engine's block builder
 * for its layers) on the device of the target's output, borrowing the
 * target's token_embd and output matrix; taps come from tap_request /
 * tap_get (1.3). The core knows nothing of DFlash.
 * Per-slot state is reset on every slot_begin / slot_end. Drafting is
 * deterministic: the probabilities reported are one-hot.
 * Uses nothing but <clspec/speculator.h>. The plugin owns its state, the
 * drafter model and context (freed at fini).
 *
 * Configuration ([speculator] section / --spec-opt):
 *   model = PATH      the dflash GGUF (required)
 *   device = N|NAME   host device index or name substring (default and only choice: the target's output device)
 *   type_k = T        drafter KV type: f32, f16, bf16, q8_0, q4_0 (default: the target's)
 *   type_v = T
 *   n_max = N         block drafts (default: the host's n_max); at most block_size - 1 (clamped, logged) */
#define _POSIX_C_SOURCE 200809L
#include <clspec/speculator.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/plugin_util.h"
#include "dflash_model.h"

struct dfslot {
    int active;       /* between slot_begin and slot_end */
    int32_t n_inj;    /* positions 0..n_inj-1 injected; the next block starts at n_inj */
    int32_t last;     /* the token at position n_inj + n_pend (the block's row 0) */
    int32_t n_pend;   /* committed positions n_inj..n_inj+n_pend-1 not injected yet: accept only counts
                       * them (their tap rows wait in the host's taps), the next draft injects them in one
                       * call, so a slot the host decodes without drafts costs no drafter work */
    int cached;       /* drafts[0..n_cached) are this state's block */
    int32_t n_cached;
    int32_t *drafts;  /* (block_size - 1) */
    char broken[160]; /* non-empty: why this slot cannot draft (draft() reports it) */
    int32_t blk_p0, blk_n; /* draft_batch_dev: the block's cells still placed (dropped at accept), n 0: none */
    int32_t dev_row;  /* draft_batch_dev: the block's row 1 in the drafter's amax, -1: no block there */
    int detached;     /* 1.8: the host keeps the slot plain (slot_detach): no block is decoded for it */
};

struct dflash {
    const struct clspec_host *h;
    struct dfm_model *m;      /* the drafter (dflash_model.h) */
    struct dfm_ctx *c;        /* its KV cache and buffers: one sequence per slot */
    uint32_t n_vocab, n_embd;
    int32_t n_slots;
    int32_t block_size, mask, n_block, n_block_cfg; /* n_block: drafts per block in use (<= block_size - 1) */
    int32_t n_taps;
    int32_t taps[16];
    int clamp_logged;
    struct dfslot *slots;
    int32_t *tok, *pos, *seq; /* (n_slots * block_size) decode staging */
    int32_t *amax;            /* (n_slots * block_size) each row's argmax */
    int32_t *owner;           /* (n_slots) slot of each block in the last decode */
    /* counters (logged at fini) */
    long long n_decodes, n_blocks, n_inj_rows;
    double dec_s;
};

static void dflash_fini(void *state)
{
    struct dflash *d = state;
    if (!d)
        return;
    if (d->n_decodes > 0 || d->n_inj_rows > 0)
        d->h->log(d->h, CLSPEC_LOG_INFO,
                  "%lld blocks in %lld decodes (%.3f ms/decode, the queued injection included); %lld rows injected",
                  d->n_blocks, d->n_decodes, d->n_decodes ? 1e3 * d->dec_s / (double)d->n_decodes : 0.0,
                  d->n_inj_rows);
    dfm_ctx_free(d->c);
    dfm_free(d->m);
    for (int32_t s = 0; d->slots && s < d->n_slots; s++)
        free(d->slots[s].drafts);
    free(d->slots);
    free(d->tok);
    free(d->pos);
    free(d->seq);
    free(d->amax);
    free(d->owner);
    free(d);
}

#define HAS(h, entry) (offsetof(struct clspec_host, entry) < (h)->size && (h)->entry)

static int dflash_init(const struct clspec_host *h, void **state, char *err, size_t errlen)
{
    if (h->abi_minor < 4 || !HAS(h, tap_request) || !HAS(h, tap_get) || !HAS(h, dev_open) || !HAS(h, block_kv)) {
        char v[32];
        snprintf(v, sizeof v, "%u.%u", h->abi_major, h->abi_minor);
        return pu_fail(err, errlen, "dflash: ",
                       "this clspec (ABI %s) lacks the device compute service with the block builder (dev_open .. "
                       "block_kv: ABI 1.4) or target taps%s",
                       v, NULL);
    }
    const char *path = h->config_get(h, "model");
    if (!path || !*path)
        return pu_fail(err, errlen, "dflash: ", "set model = PATH of the dflash GGUF (--spec-opt model=PATH)%s%s", NULL,
                       NULL);
    struct clspec_target_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    if (h->target_info(h, &ti) < 0)
        return pu_fail(err, errlen, "dflash: ", "no target model%s%s", NULL, NULL);
    int32_t device = -1;
    const char *dv = h->config_get(h, "device");
    if (dv && *dv && (device = pu_find_device(h, dv)) < 0) /* "" = unset (an INI default) */
        return pu_fail(err, errlen, "dflash: ", "device '%s': no such device%s", dv, NULL);
    uint32_t tk, tv;
    if (pu_parse_type(h->config_get(h, "type_k"), ti.type_k, &tk) < 0 ||
        pu_parse_type(h->config_get(h, "type_v"), ti.type_v, &tv) < 0)
        return pu_fail(err, errlen, "dflash: ", "type_k / type_v: want f32, f16, bf16, q8_0 or q4_0%s%s", NULL, NULL);
    struct dflash *d = calloc(1, sizeof *d);
    if (!d)
        return pu_fail(err, errlen, "dflash: ", "out of memory%s%s", NULL, NULL);
    d->h = h;
    d->n_slots = (int32_t)ti.n_slots;
    char e2[512] = "";
    if (dfm_load(h, path, device, &d->m, e2, sizeof e2) < 0) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "%s", e2, NULL);
    }
    const struct dfm_hparams *hp = &d->m->hp;
    d->n_vocab = d->m->n_vocab;
    d->n_embd = hp->n_embd;
    if (hp->mask_id < 0 || (uint32_t)hp->mask_id >= d->n_vocab) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "%s: bad dflash.block_size or mask token%s", path, NULL);
    }
    const int32_t nt = (int32_t)hp->n_taps;
    d->n_taps = nt;
    for (int32_t i = 0; i < nt; i++)
        d->taps[i] = hp->taps[i];
    d->block_size = (int32_t)hp->block_size;
    d->mask = hp->mask_id;
    const char *nm = h->config_get(h, "n_max");
    d->n_block_cfg = nm && *nm ? atoi(nm) : 0;
    if (d->n_block_cfg < 0)
        d->n_block_cfg = 0;
    if (d->n_block_cfg > d->block_size - 1) {
        h->log(h, CLSPEC_LOG_WARN, "n_max %d clamped to block_size - 1 = %d", d->n_block_cfg, d->block_size - 1);
        d->n_block_cfg = d->block_size - 1;
    }
    d->n_block = d->n_block_cfg > 0 ? d->n_block_cfg : 1;
    if (h->tap_request(h, d->taps, nt, e2, sizeof e2) < 0) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "tap_request: %s", e2, NULL);
    }
    const int32_t B = d->block_size, NS = d->n_slots;
    const uint32_t n_batch = (uint32_t)(NS * B > 64 ? NS * B : 64);
    if (dfm_ctx_new(d->m, ti.n_ctx + (uint32_t)(NS * B), n_batch, tk, tv, (uint32_t)NS, &d->c, e2, sizeof e2) < 0) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "drafter context: %s", e2, NULL);
    }
    d->slots = calloc((size_t)NS, sizeof *d->slots);
    d->tok = malloc((size_t)NS * (size_t)B * sizeof *d->tok);
    d->pos = malloc((size_t)NS * (size_t)B * sizeof *d->pos);
    d->seq = malloc((size_t)NS * (size_t)B * sizeof *d->seq);
    d->amax = malloc((size_t)NS * (size_t)B * sizeof *d->amax);
    d->owner = malloc((size_t)NS * sizeof *d->owner);
    int ok = d->slots && d->tok && d->pos && d->seq && d->amax && d->owner;
    for (int32_t s = 0; ok && s < NS; s++)
        ok = (d->slots[s].drafts = calloc((size_t)B, sizeof(int32_t))) != NULL;
    if (!ok) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "out of memory%s%s", NULL, NULL);
    }
    h->log(h, CLSPEC_LOG_INFO, "%s: %d taps, block_size %d, mask %d, %s attention, KV %s/%s, %d slots", path, nt, B,
           d->mask, hp->causal ? "causal" : "non-causal", pu_type_name(tk), pu_type_name(tv), NS);
    *state = d;
    return 0;
}

static void slot_reset(struct dflash *d, int32_t s)
{
    struct dfslot *sl = &d->slots[s];
    char e[256];
    dfm_seq_rm(d->c, s, 0, -1, e, sizeof e);
    sl->active = 0;
    sl->n_inj = 0;
    sl->n_pend = 0;
    sl->last = -1;
    sl->cached = 0;
    sl->n_cached = 0;
    sl->broken[0] = 0;
    sl->blk_n = 0;
    sl->dev_row = -1;
    sl->detached = 0;
}

/* A device block's cells, placed since the last draft, go (the host's step has waited for them). */
static void drop_block(struct dflash *d, int32_t s)
{
    struct dfslot *sl = &d->slots[s];
    char e[256];
    if (sl->blk_n > 0)
        dfm_seq_rm(d->c, s, sl->blk_p0, sl->blk_p0 + sl->blk_n, e, sizeof e);
    sl->blk_n = 0;
    sl->dev_row = -1;
}

static void set_broken(struct dflash *d, int32_t s, const char *why, const char *detail)
{
    struct dfslot *sl = &d->slots[s];
    snprintf(sl->broken, sizeof sl->broken, "dflash: slot %d: %s%s%s", (int)s, why, detail ? ": " : "",
             detail ? detail : "");
    sl->cached = 0;
}

/* Injects the first n rows of slot s's taps from the last target forward
 * at position sl->n_inj. */
static int inject(struct dflash *d, int32_t s, int32_t n)
{
    struct dfslot *sl = &d->slots[s];
    int32_t rows = 0, first = -1;
    const float *t = d->h->tap_get(d->h, s, &rows, &first);
    if (!t || first != sl->n_inj || rows < n) {
        char m[96];
        snprintf(m, sizeof m, "%d rows at %d, want %d at %d", (int)rows, (int)first, (int)n, (int)sl->n_inj);
        set_broken(d, s, "the target's taps are out of step", m);
        return -1;
    }
    char e[400] = "";
    if (dfm_inject(d->c, s, sl->n_inj, n, t, rows, e, sizeof e) < 0) {
        set_broken(d, s, "injection failed", e);
        return -1;
    }
    d->n_inj_rows += n;
    sl->n_inj += n;
    return 0;
}

static int dflash_slot_begin(void *state, int32_t slot, const int32_t *prompt, int32_t n_prompt, char *err,
                             size_t errlen)
{
    struct dflash *d = state;
    if (slot < 0 || slot >= d->n_slots || n_prompt < 1)
        return pu_fail(err, errlen, "dflash: ", "slot_begin: bad slot or empty prompt%s%s", NULL, NULL);
    slot_reset(d, slot);
    struct dfslot *sl = &d->slots[slot];
    sl->active = 1;
    sl->last = prompt[n_prompt - 1];
    if (n_prompt > 1 && inject(d, slot, n_prompt - 1) < 0) {
        snprintf(err, errlen, "%s", sl->broken);
        slot_reset(d, slot);
        return -1;
    }
    return 0;
}

static void dflash_slot_end(void *state, int32_t slot)
{
    struct dflash *d = state;
    if (slot >= 0 && slot < d->n_slots)
        slot_reset(d, slot);
}

/* One batched decode of the blocks of every slot that can draft and has no
 * current block (slot `need` among them); dev (draft_batch_dev): only the
 * slots with dev[s] set, their drafts left in the drafter's amax. */
static int run_blocks(struct dflash *d, int32_t need, const uint8_t *dev, char *err, size_t errlen)
{
    const int32_t nb = d->n_block;
    int32_t n = 0, nblk = 0;
    for (int32_t s = 0; s < d->n_slots; s++) {
        struct dfslot *sl = &d->slots[s];
        if (!sl->active || sl->broken[0] || sl->detached || (sl->cached && sl->n_cached >= nb && s != need) ||
            (dev && !dev[s]))
            continue;
        d->owner[nblk++] = s;
        for (int32_t i = 0; i <= nb; i++) {
            d->tok[n] = i == 0 ? sl->last : d->mask;
            d->pos[n] = sl->n_inj + i;
            d->seq[n] = s;
            n++;
        }
    }
    char e[400] = "";
    double t0 = pu_now_s();
    if (n == 0)
        return 0;
    if ((dev ? dfm_decode_dev(d->c, d->tok, d->pos, d->seq, n, d->m->hp.causal, e, sizeof e)
             : dfm_decode(d->c, d->tok, d->pos, d->seq, n, d->m->hp.causal, NULL, d->amax, e, sizeof e)) < 0)
        return pu_fail(err, errlen, "dflash: ", "block decode: %s%s", e, NULL);
    d->dec_s += pu_now_s() - t0;
    d->n_decodes++;
    d->n_blocks += nblk;
    for (int32_t b = 0; dev && b < nblk; b++) { /* the block's cells and drafts stay on the device */
        struct dfslot *sl = &d->slots[d->owner[b]];
        sl->blk_p0 = sl->n_inj;
        sl->blk_n = nb + 1;
        sl->dev_row = b * (nb + 1) + 1;
        sl->cached = 0;
    }
    for (int32_t b = 0; !dev && b < nblk; b++) { /* rows 1..nb of each block */
        struct dfslot *sl = &d->slots[d->owner[b]];
        memcpy(sl->drafts, d->amax + (size_t)b * (size_t)(nb + 1) + 1, (size_t)nb * sizeof *sl->drafts);
        sl->n_cached = nb;
        sl->cached = 1;
    }
    return 0;
}

/* Brings slot req->slot in step with the host and sizes the block; 0 =
 * ready, 1 = no draft (slot inactive), < 0 = error. */
static int prepare(struct dflash *d, const struct clspec_draft_req *req, char *err, size_t errlen)
{
    const int32_t s = req->slot;
    if (s < 0 || s >= d->n_slots)
        return pu_fail(err, errlen, "dflash: ", "draft: bad slot%s%s", NULL, NULL);
    struct dfslot *sl = &d->slots[s];
    drop_block(d, s);
    if (!sl->active)
        return 1;
    if (sl->broken[0]) {
        snprintf(err, errlen, "%s", sl->broken);
        return -1;
    }
    /* the block length: the largest n_max asked for, at most block_size - 1 */
    if (d->n_block_cfg == 0 && req->n_max > d->n_block) {
        int32_t want = req->n_max;
        if (want > d->block_size - 1) {
            if (!d->clamp_logged)
                d->h->log(d->h, CLSPEC_LOG_WARN, "n_max %d clamped to block_size - 1 = %d", (int)want,
                          (int)(d->block_size - 1));
            d->clamp_logged = 1;
            want = d->block_size - 1;
        }
        if (want > d->n_block) {
            d->n_block = want;
            for (int32_t t = 0; t < d->n_slots; t++)
                d->slots[t].cached = 0;
        }
    }
    /* the positions accepted since the last draft, in one injection */
    if (sl->n_pend > 0) {
        int32_t n = sl->n_pend;
        sl->n_pend = 0;
        if (inject(d, s, n) < 0) {
            snprintf(err, errlen, "%s", sl->broken);
            return -1;
        }
    }
    /* in step with the host: the block continues hist[n_hist-1] at pos_last */
    const int32_t last = req->hist[req->n_hist - 1];
    if (req->pos_last != sl->n_inj || last != sl->last) {
        if (req->pos_last <= sl->n_inj) { /* the host went back: drop what is beyond */
            char e[256];
            dfm_seq_rm(d->c, s, req->pos_last, -1, e, sizeof e);
            sl->n_inj = req->pos_last;
            sl->last = last;
            sl->cached = 0;
        } else {
            char m[96];
            snprintf(m, sizeof m, "the host is at %d, the drafter at %d", (int)req->pos_last, (int)sl->n_inj);
            set_broken(d, s, "out of step", m);
            snprintf(err, errlen, "%s", sl->broken);
            return -1;
        }
    }
    return 0;
}

/* The slot's draft from its current block (decoding the blocks of every
 * slot that needs one first, in one decode). */
static int serve(struct dflash *d, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                 size_t errlen)
{
    struct dfslot *sl = &d->slots[req->slot];
    if (!sl->cached && run_blocks(d, req->slot, NULL, err, errlen) < 0)
        return -1;
    int32_t k = req->n_max < sl->n_cached ? req->n_max : sl->n_cached;
    memcpy(out, sl->drafts, (size_t)k * sizeof *out);
    if (probs)
        for (int32_t i = 0; i < k; i++) {
            memset(probs + (size_t)i * req->n_vocab, 0, (size_t)req->n_vocab * sizeof *probs);
            probs[(size_t)i * req->n_vocab + (size_t)out[i]] = 1.0f;
        }
    return k;
}

static int dflash_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                        size_t errlen)
{
    struct dflash *d = state;
    int rc = prepare(d, req, err, errlen);
    return rc != 0 ? (rc > 0 ? 0 : rc) : serve(d, req, out, probs, err, errlen);
}

/* Every requested slot in step first, then one decode for all their blocks. */
static int dflash_draft_batch(void *state, const struct clspec_draft_req *reqs, int32_t n, int32_t *const *out,
                              float *const *probs, int32_t *n_out, char *err, size_t errlen)
{
    struct dflash *d = state;
    int rc = 0;
    for (int32_t i = 0; i < n; i++) {
        n_out[i] = 0;
        int r = prepare(d, &reqs[i], err, errlen);
        if (r < 0)
            rc = r;
    }
    if (rc < 0)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        if (!d->slots[reqs[i].slot].active)
            continue;
        int k = serve(d, &reqs[i], out[i], probs ? probs[i] : NULL, err, errlen);
        if (k < 0)
            return k;
        n_out[i] = k;
    }
    return 0;
}

/* 1.7: every requested slot in step, then one block decode for all of
 * them whose drafts stay in the drafter's amax (rows 1..n of each block),
 * its cells placed until the slot's accept. Nothing waits. */
static int dflash_draft_batch_dev(void *state, const struct clspec_draft_req *reqs, int32_t n,
                                  struct clspec_draft_dev *out, char *err, size_t errlen)
{
    struct dflash *d = state;
    uint8_t want[64] = {0};
    int rc = 0;
    for (int32_t i = 0; i < n; i++) {
        out[i].buf = d->c->amax;
        out[i].off = 0;
        out[i].stride = 1;
        out[i].n = 0;
        int r = prepare(d, &reqs[i], err, errlen);
        if (r < 0)
            rc = r;
        else if (r == 0 && reqs[i].slot < 64)
            want[reqs[i].slot] = 1;
    }
    if (rc < 0 || (rc = run_blocks(d, -1, want, err, errlen)) < 0)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        const struct dfslot *sl = &d->slots[reqs[i].slot];
        if (sl->dev_row < 0)
            continue;
        out[i].off = (size_t)sl->dev_row;
        out[i].n = reqs[i].n_max < d->n_block ? reqs[i].n_max : d->n_block;
    }
    return 0;
}

static void dflash_accept(void *state, int32_t slot, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                          int32_t n_tokens)
{
    (void)n_drafted;
    (void)n_accepted;
    struct dflash *d = state;
    if (slot < 0 || slot >= d->n_slots)
        return;
    drop_block(d, slot);
    struct dfslot *sl = &d->slots[slot];
    sl->cached = 0;
    if (!sl->active || sl->broken[0] || n_tokens <= 0)
        return;
    /* the committed verify rows: [last, d_1..d_acc] = n_tokens rows from n_inj + n_pend, injected by
     * the next draft (prepare) */
    sl->n_pend += n_tokens;
    sl->last = tokens[n_tokens - 1];
}

/* 1.8: the host keeps slot s plain. Injection is already deferred to the next draft (n_pend), so
 * only the cached block goes, and no other slot's draft call decodes one for it. */
static void dflash_slot_detach(void *state, int32_t slot)
{
    struct dflash *d = state;
    if (slot < 0 || slot >= d->n_slots)
        return;
    drop_block(d, slot);
    d->slots[slot].cached = 0;
    d->slots[slot].detached = 1;
}

/* 1.8: the plain steps' tokens, as one accept, their taps injected in one call. */
static int dflash_slot_attach(void *state, int32_t slot, const int32_t *tokens, int32_t n_tokens, char *err,
                              size_t errlen)
{
    struct dflash *d = state;
    if (slot < 0 || slot >= d->n_slots || !d->slots[slot].active)
        return pu_fail(err, errlen, "dflash: ", "slot_attach: a slot that did not begin%s%s", NULL, NULL);
    struct dfslot *sl = &d->slots[slot];
    sl->detached = 0;
    if (n_tokens > 0)
        dflash_accept(state, slot, 0, 0, tokens, n_tokens);
    if (!sl->broken[0] && sl->n_pend > 0) { /* now, so that the host's taps of those rows are read */
        int32_t n = sl->n_pend;
        sl->n_pend = 0;
        inject(d, slot, n);
    }
    if (sl->broken[0]) {
        snprintf(err, errlen, "%s", d->slots[slot].broken);
        return -1;
    }
    return 0;
}

/* 1.4: checked when the host reads its configuration, before any init. */
static int dflash_config_check(const struct clspec_config_view *v, const char **key, char *err, size_t errlen)
{
    return pu_need_model(v, key, err, errlen, "dflash", "a GGUF with general.architecture = dflash");
}

static const struct clspec_speculator dflash_vtable = {
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
    .size = sizeof(struct clspec_speculator),
    .name = "dflash",
    /* EMBD_ROWS: the context enters as the target's taps (image rows have them too); only the last,
     * pending token is read as a token, and it is always text */
    .caps = CLSPEC_SPEC_CAP_TARGET_TAPS | CLSPEC_SPEC_CAP_DEVICE_MEMORY | CLSPEC_SPEC_CAP_DRAFT_PROBS |
            CLSPEC_SPEC_CAP_EMBD_ROWS,
    .init = dflash_init,
    .fini = dflash_fini,
    .slot_begin = dflash_slot_begin,
    .draft = dflash_draft,
    .accept = dflash_accept,
    .slot_end = dflash_slot_end,
    .draft_batch = dflash_draft_batch,
    .config_check = dflash_config_check,
    .draft_batch_dev = dflash_draft_batch_dev,
    .slot_detach = dflash_slot_detach,
    .slot_attach = dflash_slot_attach,
};

__attribute__((visibility("default"))) const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &dflash_vtable;
}
