/* dflash.c: the DFlash speculator (block-diffusion drafter, arch "dflash",
 * ../shared/docs/FORMATS.md). The drafter keeps, per slot, the injected
 * features of every token the target has committed (prefill and accepted
 * verify rows, from the host's target taps); a draft is one block
 * [last, MASK x n] at the slot's true next positions, decoded with
 * non-causal attention; rows 1..n give the draft. The blocks of all slots
 * that need one are decoded in one batched decode (draft_batch; with
 * per-slot draft() calls the first of a step computes every waiting slot's
 * block and the others are served from it).
 * Per-slot state is reset on every slot_begin / slot_end. Drafting is
 * deterministic: the probabilities reported are one-hot.
 * Uses nothing but <clspec/speculator.h> (host ABI >= 1.3: taps,
 * model_key_ints, ctx_inject_taps).
 *
 * Configuration ([speculator] section / --spec-opt):
 *   model = PATH      the dflash GGUF (required)
 *   device = N|NAME   host device index or name substring (default: the target's output device)
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

struct dfslot {
    int active;       /* between slot_begin and slot_end */
    int32_t n_inj;    /* positions 0..n_inj-1 injected; the next block starts at n_inj */
    int32_t last;     /* the token at position n_inj (the block's row 0) */
    int cached;       /* drafts[0..n_cached) are this state's block */
    int32_t n_cached;
    int32_t *drafts;  /* (block_size - 1) */
    char broken[160]; /* non-empty: why this slot cannot draft (draft() reports it) */
};

struct dflash {
    const struct clspec_host *h;
    clspec_model *m;
    clspec_ctx *c;
    uint32_t n_vocab, n_embd;
    int32_t n_slots;
    int32_t block_size, mask, n_block, n_block_cfg; /* n_block: drafts per block in use (<= block_size - 1) */
    int32_t n_taps;
    int32_t taps[16];
    int clamp_logged;
    struct dfslot *slots;
    int32_t *tok, *pos, *seq; /* (n_slots * block_size) decode staging */
    uint8_t *keep;
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
    if (d->c)
        d->h->ctx_free(d->c);
    if (d->m)
        d->h->model_free(d->m);
    for (int32_t s = 0; d->slots && s < d->n_slots; s++)
        free(d->slots[s].drafts);
    free(d->slots);
    free(d->tok);
    free(d->pos);
    free(d->seq);
    free(d->keep);
    free(d->owner);
    free(d);
}

#define HAS(h, entry) (offsetof(struct clspec_host, entry) < (h)->size && (h)->entry)

static int key_int(struct dflash *d, const char *key, int64_t dflt, int64_t *out)
{
    int64_t v[1];
    int32_t n = d->h->model_key_ints(d->m, key, v, 1);
    *out = n >= 1 ? v[0] : dflt;
    return n;
}

static int dflash_init(const struct clspec_host *h, void **state, char *err, size_t errlen)
{
    if (!HAS(h, model_load) || !HAS(h, ctx_new) || !HAS(h, ctx_decode) || !HAS(h, ctx_logits) ||
        !HAS(h, ctx_seq_rm) || !HAS(h, tap_request) || !HAS(h, tap_get) || !HAS(h, model_key_ints) ||
        !HAS(h, ctx_inject_taps)) {
        char v[32];
        snprintf(v, sizeof v, "%u.%u", h->abi_major, h->abi_minor);
        return pu_fail(err, errlen, "dflash: ",
                       "this clspec (ABI %s) lacks the dflash host services (taps, model_key_ints, "
                       "ctx_inject_taps: ABI 1.3)%s",
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
    if (h->model_load(h, path, device, CLSPEC_MODEL_TARGET_TENSORS, &d->m, e2, sizeof e2) < 0) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "%s", e2, NULL);
    }
    struct clspec_model_info mi;
    memset(&mi, 0, sizeof mi);
    mi.size = sizeof mi;
    h->model_info(d->m, &mi);
    if (!mi.arch || strcmp(mi.arch, "dflash") != 0) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "%s is not a dflash drafter (general.architecture = %s)", path,
                       mi.arch);
    }
    d->n_vocab = mi.n_vocab;
    d->n_embd = mi.n_embd;
    int64_t taps[16], bs, mask, causal;
    int32_t nt = h->model_key_ints(d->m, "dflash.target_layers", taps, 16);
    if (nt < 1 || nt > 16) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "%s: dflash.target_layers missing or longer than 16%s", path, NULL);
    }
    key_int(d, "dflash.block_size", 16, &bs);
    key_int(d, "tokenizer.ggml.mask_token_id", 0, &mask);
    key_int(d, "dflash.attention.causal", 0, &causal);
    if (bs < 2 || bs > 256 || mask < 0 || mask >= (int64_t)d->n_vocab) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "%s: bad dflash.block_size or mask token%s", path, NULL);
    }
    d->n_taps = nt;
    for (int32_t i = 0; i < nt; i++)
        d->taps[i] = (int32_t)taps[i];
    d->block_size = (int32_t)bs;
    d->mask = (int32_t)mask;
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
    struct clspec_ctx_params cp;
    memset(&cp, 0, sizeof cp);
    cp.size = sizeof cp;
    cp.n_ctx = ti.n_ctx + (uint32_t)(NS * B);
    cp.n_batch = (uint32_t)(NS * B > 64 ? NS * B : 64);
    cp.n_seq = (uint32_t)NS;
    cp.type_k = tk;
    cp.type_v = tv;
    cp.non_causal = causal ? 0 : 1;
    if (h->ctx_new(d->m, &cp, &d->c, e2, sizeof e2) < 0) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "drafter context: %s", e2, NULL);
    }
    d->slots = calloc((size_t)NS, sizeof *d->slots);
    d->tok = malloc((size_t)NS * (size_t)B * sizeof *d->tok);
    d->pos = malloc((size_t)NS * (size_t)B * sizeof *d->pos);
    d->seq = malloc((size_t)NS * (size_t)B * sizeof *d->seq);
    d->keep = malloc((size_t)NS * (size_t)B);
    d->owner = malloc((size_t)NS * sizeof *d->owner);
    int ok = d->slots && d->tok && d->pos && d->seq && d->keep && d->owner;
    for (int32_t s = 0; ok && s < NS; s++)
        ok = (d->slots[s].drafts = calloc((size_t)B, sizeof(int32_t))) != NULL;
    if (!ok) {
        dflash_fini(d);
        return pu_fail(err, errlen, "dflash: ", "out of memory%s%s", NULL, NULL);
    }
    h->log(h, CLSPEC_LOG_INFO, "%s: %d taps, block_size %d, mask %d, %s attention, KV %s/%s, %d slots", path, nt, B,
           d->mask, causal ? "causal" : "non-causal", pu_type_name(tk), pu_type_name(tv), NS);
    *state = d;
    return 0;
}

static void slot_reset(struct dflash *d, int32_t s)
{
    struct dfslot *sl = &d->slots[s];
    char e[256];
    d->h->ctx_seq_rm(d->c, s, 0, -1, e, sizeof e);
    sl->active = 0;
    sl->n_inj = 0;
    sl->last = -1;
    sl->cached = 0;
    sl->n_cached = 0;
    sl->broken[0] = 0;
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
    if (d->h->ctx_inject_taps(d->c, s, sl->n_inj, n, t, rows, e, sizeof e) < 0) {
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

static int32_t argmax(const float *x, uint32_t n)
{
    uint32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return (int32_t)b;
}

/* One batched decode of the blocks of every slot that can draft and has no
 * current block (slot `need` among them). */
static int run_blocks(struct dflash *d, int32_t need, char *err, size_t errlen)
{
    const int32_t nb = d->n_block;
    int32_t n = 0, nblk = 0;
    for (int32_t s = 0; s < d->n_slots; s++) {
        struct dfslot *sl = &d->slots[s];
        if (!sl->active || sl->broken[0] || (sl->cached && sl->n_cached >= nb && s != need))
            continue;
        d->owner[nblk++] = s;
        for (int32_t i = 0; i <= nb; i++) {
            d->tok[n] = i == 0 ? sl->last : d->mask;
            d->pos[n] = sl->n_inj + i;
            d->seq[n] = s;
            d->keep[n] = i > 0;
            n++;
        }
    }
    struct clspec_decode dec;
    memset(&dec, 0, sizeof dec);
    dec.size = sizeof dec;
    dec.n = n;
    dec.tokens = d->tok;
    dec.pos = d->pos;
    dec.seq = d->seq;
    dec.logits = d->keep;
    char e[400] = "";
    double t0 = pu_now_s();
    if (d->h->ctx_decode(d->c, &dec, e, sizeof e) < 0)
        return pu_fail(err, errlen, "dflash: ", "block decode: %s%s", e, NULL);
    d->dec_s += pu_now_s() - t0;
    d->n_decodes++;
    d->n_blocks += nblk;
    for (int32_t b = 0; b < nblk; b++) {
        struct dfslot *sl = &d->slots[d->owner[b]];
        for (int32_t i = 0; i < nb; i++) {
            const float *row = d->h->ctx_logits(d->c, b * nb + i);
            if (!row)
                return pu_fail(err, errlen, "dflash: ", "block decode: missing logits%s%s", NULL, NULL);
            sl->drafts[i] = argmax(row, d->n_vocab);
        }
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
    /* in step with the host: the block continues hist[n_hist-1] at pos_last */
    const int32_t last = req->hist[req->n_hist - 1];
    if (req->pos_last != sl->n_inj || last != sl->last) {
        if (req->pos_last <= sl->n_inj) { /* the host went back: drop what is beyond */
            char e[256];
            d->h->ctx_seq_rm(d->c, s, req->pos_last, -1, e, sizeof e);
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
    if (!sl->cached && run_blocks(d, req->slot, err, errlen) < 0)
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

static void dflash_accept(void *state, int32_t slot, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                          int32_t n_tokens)
{
    (void)n_drafted;
    (void)n_accepted;
    struct dflash *d = state;
    if (slot < 0 || slot >= d->n_slots)
        return;
    struct dfslot *sl = &d->slots[slot];
    sl->cached = 0;
    if (!sl->active || sl->broken[0] || n_tokens <= 0)
        return;
    /* the committed verify rows: [last, d_1..d_acc] = n_tokens rows from n_inj */
    if (inject(d, slot, n_tokens) == 0)
        sl->last = tokens[n_tokens - 1];
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
    .caps = CLSPEC_SPEC_CAP_TARGET_TAPS | CLSPEC_SPEC_CAP_DEVICE_MEMORY | CLSPEC_SPEC_CAP_DRAFT_PROBS,
    .init = dflash_init,
    .fini = dflash_fini,
    .slot_begin = dflash_slot_begin,
    .draft = dflash_draft,
    .accept = dflash_accept,
    .slot_end = dflash_slot_end,
    .draft_batch = dflash_draft_batch,
    .config_check = dflash_config_check,
};

__attribute__((visibility("default"))) const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &dflash_vtable;
}
