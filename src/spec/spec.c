/* spec.c: see spec.h. The only place where speculative rollback happens
 * (rollback() below). Invariant per active slot: the KV cache holds the
 * positions 0..n_hist-2 of its history, hist[n_hist-1] is the next input. */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "cl/runtime.h"
#include "engine/api.h"
#include "spec/host_compute.h"
#include "spec/spec.h"
#include "spec/taps.h"

uint32_t cs_spec_kv_cells(const clspec_engine *e, int32_t seq)
{
    uint32_t n = 0;
    char err[CLSPEC_ERRLEN];
    return clspec_seq_n_cells(e, seq, &n, err, sizeof err) == CLSPEC_OK ? n : 0;
}

/* ---- the rows of one forward ---- */

static void rows_free(struct cs_spec_rows *b)
{
    free(b->token);
    free(b->pos);
    free(b->seq);
    free(b->logits);
    free(b->greedy);
    free(b->tok_src);
    free(b->tok_got);
    free(b->embd);
    memset(b, 0, sizeof *b);
}

/* Room for cap rows (the rows in use are dropped). */
static int rows_reserve(struct cs_spec_rows *b, int32_t cap, char *err, size_t errlen)
{
    if (cap <= b->cap)
        return CLSPEC_OK;
    rows_free(b); /* the image rows' buffer too: it grows again when one comes */
    b->token = malloc((size_t)cap * sizeof *b->token);
    b->pos = malloc((size_t)cap * sizeof *b->pos);
    b->seq = malloc((size_t)cap * sizeof *b->seq);
    b->logits = malloc((size_t)cap);
    b->greedy = malloc((size_t)cap);
    b->tok_src = malloc((size_t)cap * sizeof *b->tok_src);
    b->tok_got = malloc((size_t)cap * sizeof *b->tok_got);
    if (!b->token || !b->pos || !b->seq || !b->logits || !b->greedy || !b->tok_src || !b->tok_got) {
        rows_free(b);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "spec: out of memory (%d rows)", cap);
    }
    b->cap = cap;
    return CLSPEC_OK;
}

static int rows_add(struct cs_spec_rows *b, int32_t token, int32_t pos, int32_t seq, bool logits, char *err,
                    size_t errlen)
{
    if (b->n >= b->cap)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "spec: batch full (%d rows)", b->cap);
    b->token[b->n] = token;
    b->pos[b->n] = pos;
    b->seq[b->n] = seq;
    b->logits[b->n] = logits;
    b->greedy[b->n] = 0;
    b->tok_src[b->n] = -1;
    b->n++;
    return CLSPEC_OK;
}

/* An image row (negative token) with its input vec (n_embd floats). */
static int rows_add_embd(struct cs_spec *sp, int32_t token, int32_t pos, int32_t seq, bool logits, const float *vec,
                         char *err, size_t errlen)
{
    struct cs_spec_rows *b = &sp->b;
    if (b->embd_cap < b->cap) {
        float *g = realloc(b->embd, (size_t)b->cap * (size_t)sp->n_embd * sizeof *g);
        if (!g)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "spec: out of memory (%d image rows)", b->cap);
        b->embd = g;
        b->embd_cap = b->cap;
    }
    CS_TRY(rows_add(b, token, pos, seq, logits, err, errlen));
    memcpy(b->embd + (size_t)(b->n - 1) * sp->n_embd, vec, (size_t)sp->n_embd * sizeof *vec);
    return CLSPEC_OK;
}

/* One forward of sp->b through the door (taps as the plugin asked). The
 * taps of every placed sequence go to the plugin (keep NULL: prefill), or
 * only those of the speculating slots in keep[] (rows of other sequences
 * are nobody's to read). */
static int decode(struct cs_spec *sp, int *seq_rc, const bool *keep, char *err, size_t errlen)
{
    CS_TRY(cs_taps_prepare(sp->pl, sp->e, err, errlen));
    const float *embd = NULL; /* image rows' inputs, when the batch has any */
    for (int32_t i = 0; i < sp->b.n && !embd; i++)
        embd = sp->b.token[i] < 0 ? sp->b.embd : NULL;
    const uint8_t *greedy = NULL; /* rows verified on the device, when the batch has any */
    for (int32_t i = 0; i < sp->b.n && !greedy; i++)
        greedy = sp->b.greedy[i] ? sp->b.greedy : NULL;
    struct clspec_batch cb = {sizeof cb, sp->b.n, sp->b.token, sp->b.pos, sp->b.seq, sp->b.logits, embd, greedy};
    bool dev = false; /* rows whose token a device draft left on the device */
    for (int32_t i = 0; i < sp->b.n && !dev; i++)
        dev = sp->b.tok_src[i] >= 0;
    const struct cs_fwd_dtok dt = {sp->dt_buf, sp->dt_n, sp->dt_dev, sp->b.tok_src, sp->b.tok_got};
    int rc = cs_api_decode_dev(sp->e, &cb, dev ? &dt : NULL, seq_rc, err, errlen); /* NULL: clspec_decode */
    bool ran = false; /* a row was placed: the forward waited for its queues at the end */
    for (int32_t i = 0; rc == CLSPEC_OK && i < sp->b.n && !ran; i++)
        ran = seq_rc[sp->b.seq[i]] == CLSPEC_OK;
    if (ran && sp->pl && sp->tok_dev) /* that queue is empty: what the plugin staged on it is free */
        cs_host_compute_waited(sp->pl, sp->tok_dev);
    for (int32_t s = 0; dev && rc == CLSPEC_OK && s < sp->n_slots; s++) { /* the drafts, for the verdict */
        struct cs_spec_slot *sl = &sp->slots[s];
        if (sl->dev_draft && sl->n_draft > 0 && seq_rc[s] == CLSPEC_OK)
            memcpy(sl->draft, sp->b.tok_got + sl->row + 1, (size_t)sl->n_draft * sizeof *sl->draft);
    }
    for (int32_t i = 0; rc == CLSPEC_OK && greedy && i < sp->b.n; i++)
        sp->total.n_greedy_rows += greedy[i] && seq_rc[sp->b.seq[i]] == CLSPEC_OK;
    if (rc < 0 || !sp->pl)
        return rc;
    int kept[CLSPEC_MAX_SEQ];
    for (int32_t q = 0; q < CLSPEC_MAX_SEQ; q++)
        kept[q] = !keep || (q < sp->n_slots && keep[q] && (sp->slots[q].on || !sp->slots[q].active)) ? seq_rc[q]
                                                                                                   : CLSPEC_E_INVAL;
    cs_taps_capture(sp->pl, sp->e, sp->b.seq, sp->b.pos, sp->b.n, kept);
    return rc;
}

/* ---- acceptance ---- */

/* Verifies slot s's draft against its logits rows L ((n_draft + 1) rows) and
 * appends what is accepted to out: greedy / sample-and-match (the sampler
 * picks each token and drafts are kept while they agree), or rejection
 * sampling when the draft came with probabilities and T > 0. Stops after an
 * end-of-generation token or when n_left tokens are out. */
static void verify(struct cs_spec *sp, struct cs_spec_slot *sl, const float *L, int32_t n_left)
{
    const size_t V = (size_t)sp->n_vocab;
    const bool rs = sl->probs && sl->n_draft > 0 && sl->stochastic;
    int32_t n_match = 0, next = 0; /* dev_greedy: the device's verdict on the slot's rows */
    if (sl->dev_greedy && clspec_greedy(sp->e, sl->row, &n_match, &next) < 0)
        n_match = -1; /* cannot happen for a placed slot: no tokens (the caller reports it) */
    sl->n_out = 0;
    sl->n_accepted = 0;
    sl->eog = false;
    for (int32_t i = 0; i <= sl->n_draft && n_match >= 0; i++) {
        const float *row = L ? L + (size_t)i * V : NULL;
        int32_t t;
        bool acc = false;
        if (sl->dev_greedy) { /* the sampler's greedy pick is the row's argmax, taken on the device */
            t = i < n_match ? sl->draft[i] : next;
            acc = i < sl->n_draft && t == sl->draft[i];
        } else if (rs && i < sl->n_draft) {
            clspec_sampler_probs(sl->smp, row, sp->pt);
            double u = clspec_sampler_uniform(sl->smp), u2 = clspec_sampler_uniform(sl->smp);
            t = cs_spec_rs_token(sp->pt, sl->probs + (size_t)i * V, (int32_t)V, sl->draft[i], u, u2, sp->resid,
                                 &acc);
        } else {
            t = clspec_sampler_sample(sl->smp, row);
            acc = i < sl->n_draft && t == sl->draft[i];
        }
        clspec_sampler_accept(sl->smp, t);
        sl->out[sl->n_out++] = t;
        sl->n_accepted += acc;
        sl->eog = clspec_token_is_eog(sp->e, t) == 1;
        if (sl->eog || sl->n_out >= n_left || !acc)
            break;
    }
}

/* ---- rollback: everything beyond the accepted prefix, for every consumer ----
 * ok = false: the step failed for this slot; nothing of it is kept (the
 * sampler goes back to its snapshot, the KV to the slot's history). */
static int rollback(struct cs_spec *sp, int32_t s, bool ok, char *err, size_t errlen)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    if (!ok) {
        sl->n_out = 0;
        sl->n_accepted = 0;
        sl->eog = false;
        clspec_sampler_restore(sl->smp, sl->snap, err, errlen);
    }
    /* history */
    for (int32_t i = 0; i < sl->n_out; i++)
        sl->hist[sl->n_hist++] = sl->out[i];
    /* KV: keep positions 0..n_hist-2 (the new last token is the next input); the step placed
     * n_draft + 1 rows, so with every one of them kept (plain decoding) there is nothing to drop */
    int rc = !ok || sl->n_out < sl->n_draft + 1 ? clspec_seq_rm(sp->e, s, sl->n_hist - 1, -1, err, errlen)
                                                 : CLSPEC_OK;
    /* the plugin (a detached one hears of these tokens at slot_attach) */
    if (sl->on && !sl->detached && sp->pl && sp->pl->vt.accept && (sl->n_draft > 0 || sl->n_out > 0))
        sp->pl->vt.accept(sp->pl->state, s, sl->n_draft, sl->n_accepted, sl->out, sl->n_out);
    if (!sl->detached)
        sl->n_hist_det = sl->n_hist;
    /* draft length: the cost-aware controller learns the acceptance, or the adaptive length follows it */
    if (ok && sp->p.ctl == CS_SPEC_CTL_COST)
        cs_ctl_observe(&sp->ctl, &sl->ctl, sl->n_draft, sl->n_accepted);
    else if (ok && sl->n_draft > 0) {
        int32_t lo = CS_MAX(sp->p.n_min, 1);
        if (sl->n_accepted == sl->n_draft)
            sl->n_cur = CS_MIN(sp->p.n_max, CS_MAX(sl->n_cur, sl->n_draft) + 2);
        else
            sl->n_cur = CS_MAX(lo, sl->n_accepted + 1);
    }
    if (ok) {
        sl->st.n_detached += sl->detached;
        sp->total.n_detached += sl->detached;
        sl->st.n_steps++;
        sl->st.n_draft_steps += sl->n_draft > 0;
        sl->st.n_drafted += (uint64_t)sl->n_draft;
        sl->st.n_accepted += (uint64_t)sl->n_accepted;
        sl->st.n_emitted += (uint64_t)sl->n_out;
        sp->total.n_steps++;
        sp->total.n_draft_steps += sl->n_draft > 0;
        sp->total.n_drafted += (uint64_t)sl->n_draft;
        sp->total.n_accepted += (uint64_t)sl->n_accepted;
        sp->total.n_emitted += (uint64_t)sl->n_out;
    }
    sl->n_draft = 0;
    return rc;
}

/* ---- slots ---- */

struct cs_spec_params cs_spec_defaults(void)
{
    return (struct cs_spec_params){.n_max = 8, .n_min = 1, .p_min = 0.0f, .log = false};
}

void cs_spec_slot_disable(struct cs_spec *sp, int32_t s, const char *why)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    if (sl->on && sp->pl && sp->pl->vt.slot_end)
        sp->pl->vt.slot_end(sp->pl->state, s);
    if (sl->on && sp->p.log)
        fprintf(stderr, "slot %d: speculation off%s%s\n", s, why ? ": " : "", why ? why : "");
    if (sl->on)
        snprintf(sl->off_why, sizeof sl->off_why, "%s", why ? why : "switched off");
    sl->on = false;
    sl->detached = false;
    sl->n_draft = 0;
    sl->n_cur = CS_MAX(sp->p.n_min, 1);
    if (sl->probs)
        memset(sl->probs, 0, (size_t)sp->p.n_max * (size_t)sp->n_vocab * sizeof *sl->probs);
}

void cs_spec_slot_end(struct cs_spec *sp, int32_t s)
{
    if (s < 0 || s >= sp->n_slots || !sp->slots[s].active)
        return;
    struct cs_spec_slot *sl = &sp->slots[s];
    cs_spec_slot_disable(sp, s, NULL);
    char err[CLSPEC_ERRLEN];
    clspec_seq_rm(sp->e, s, 0, -1, err, sizeof err);
    sl->active = false;
    sl->n_hist = 0;
    sl->smp = NULL;
}

static int grow_hist(struct cs_spec_slot *sl, int32_t need, char *err, size_t errlen)
{
    if (need <= sl->cap)
        return CLSPEC_OK;
    int32_t cap = CS_MAX(need, 2 * sl->cap);
    int32_t *h = realloc(sl->hist, (size_t)cap * sizeof *h);
    if (!h)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "spec: out of memory");
    sl->hist = h;
    sl->cap = cap;
    return CLSPEC_OK;
}

int cs_spec_slot_begin(struct cs_spec *sp, int32_t s, const int32_t *prompt, int32_t n_prompt,
                       clspec_sampler *smp, bool speculate, char *err, size_t errlen)
{
    return cs_spec_slot_begin_cached(sp, s, prompt, n_prompt, 0, smp, speculate, err, errlen);
}

int cs_spec_slot_begin_cached(struct cs_spec *sp, int32_t s, const int32_t *prompt, int32_t n_prompt,
                              int32_t n_cached, clspec_sampler *smp, bool speculate, char *err, size_t errlen)
{
    return cs_spec_slot_begin_rows(sp, s, prompt, n_prompt, n_cached, NULL, smp, speculate, err, errlen);
}

int cs_spec_slot_begin_rows(struct cs_spec *sp, int32_t s, const int32_t *prompt, int32_t n_prompt,
                            int32_t n_cached, const float *img_rows, clspec_sampler *smp, bool speculate, char *err,
                            size_t errlen)
{
    if (s < 0 || s >= sp->n_slots)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "spec: slot %d out of range 0..%d", s, sp->n_slots - 1);
    if (n_prompt <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "spec: slot %d: empty prompt", s);
    if (n_cached < 0 || n_cached > n_prompt - 1)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "spec: slot %d: %d cached tokens of a %d-token prompt", s,
                      n_cached, n_prompt);
    if (sp->slots[s].active) /* a request still running here: its cells go first */
        cs_spec_slot_end(sp, s);
    if (n_cached == 0) { /* cells of the slot's sequence not from this request */
        char e2[CLSPEC_ERRLEN];
        clspec_seq_rm(sp->e, s, 0, -1, e2, sizeof e2);
    } else if (cs_spec_kv_cells(sp->e, s) != (uint32_t)n_cached) {
        return cs_err(err, errlen, CLSPEC_E_INVAL, "spec: slot %d: the KV holds %u cells, the caller says %d", s,
                      cs_spec_kv_cells(sp->e, s), n_cached);
    }
    struct cs_spec_slot *sl = &sp->slots[s];
    int rc = grow_hist(sl, n_prompt + 1024, err, errlen);
    if (rc < 0)
        return rc;
    struct clspec_sampler_params smp_p = {.size = sizeof smp_p};
    int32_t smp_v = 0;
    CS_TRY(clspec_sampler_get_params(smp, &smp_p, &smp_v, err, errlen));
    if (smp_v != sp->n_vocab)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "spec: sampler vocabulary %d != model %d", smp_v, sp->n_vocab);
    char e2[CLSPEC_ERRLEN];
    if (sl->snap && clspec_sampler_save_into(smp, sl->snap, e2, sizeof e2) < 0) { /* another sampler's parameters */
        clspec_sampler_state_free(sl->snap);
        sl->snap = NULL;
    }
    if (!sl->snap && (rc = clspec_sampler_save(smp, &sl->snap, err, errlen)) < 0)
        return rc;
    if (!(sl->taps_kept && n_cached > 0)) /* else the caller's prompt chunks captured them (cs_spec_extra.taps) */
        cs_taps_slot_clear(sp->pl, s);
    sl->taps_kept = false;
    /* image rows: their inputs in prompt order (k_img: the next one's index) */
    int32_t n_img = 0, k_img = 0;
    for (int32_t i = 0; i < n_prompt; i++) {
        n_img += prompt[i] < 0;
        k_img += prompt[i] < 0 && i < n_cached;
    }
    if (n_img > 0 && !img_rows && n_cached < n_prompt - 1)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "spec: slot %d: the prompt has %d image rows but no inputs", s,
                      n_img);
    /* prefill all but the last prompt token, in chunks of n_batch */
    const int32_t B = CS_MAX(1, CS_MIN(sp->n_batch, sp->b.cap));
    for (int32_t p0 = n_cached; p0 < n_prompt - 1; p0 += B) {
        int32_t n = CS_MIN(B, n_prompt - 1 - p0);
        sp->b.n = 0;
        for (int32_t i = 0; i < n; i++)
            if (prompt[p0 + i] < 0)
                rows_add_embd(sp, prompt[p0 + i], p0 + i, s, i == n - 1,
                              img_rows + (size_t)(k_img++) * sp->n_embd, err, errlen);
            else
                rows_add(&sp->b, prompt[p0 + i], p0 + i, s, i == n - 1, err, errlen);
        int seq_rc[CLSPEC_MAX_SEQ];
        rc = decode(sp, seq_rc, NULL, err, errlen);
        if (rc == CLSPEC_OK && seq_rc[s] < 0)
            rc = cs_err(err, errlen, seq_rc[s], "spec: slot %d: the prompt (%d tokens) does not fit the KV cache", s,
                        n_prompt);
        if (rc < 0) {
            clspec_seq_rm(sp->e, s, 0, -1, e2, sizeof e2);
            return rc;
        }
    }
    for (int32_t i = 0; i < n_prompt; i++) /* what plugins see: image rows as CLSPEC_TOKEN_EMBD */
        sl->hist[i] = prompt[i] < 0 ? CLSPEC_TOKEN_EMBD : prompt[i];
    sl->n_hist = n_prompt;
    sl->smp = smp;
    sl->stochastic = smp_p.temp > 0.0f;
    sl->active = true;
    sl->on = false;
    sl->detached = false;
    sl->n_hist_det = n_prompt;
    sl->n_draft = 0;
    sl->n_cur = sp->p.n_max;
    sl->n_max_req = 0;
    sl->host_logits = cs_api_sampler_keeps_logits(smp); /* the request's: logprobs */
    sl->dev_greedy = false;
    cs_ctl_slot_reset(&sp->ctl, &sl->ctl);
    memset(&sl->st, 0, sizeof sl->st);
    sl->off_why[0] = 0;
    if (speculate && sp->pl) {
        sl->on = true;
        char perr[512] = "";
        if (n_img > 0 && !(sp->pl->vt.caps & CLSPEC_SPEC_CAP_EMBD_ROWS)) {
            sl->on = false; /* never begun in the plugin: nothing to end there */
            snprintf(sl->off_why, sizeof sl->off_why, "the prompt has image rows and the speculator %s does not "
                     "take them (it sits out this request)", sp->pl->vt.name);
        } else if (sp->pl->vt.slot_begin &&
                   sp->pl->vt.slot_begin(sp->pl->state, s, sl->hist, n_prompt, perr, sizeof perr) < 0) {
            cs_spec_slot_disable(sp, s, perr[0] ? perr : "the plugin's slot_begin failed");
        }
    }
    if (sp->p.log)
        fprintf(stderr, "slot %d: speculation %s%s%s\n", s, sl->on ? "on (" : "off",
                sl->on ? sp->pl->vt.name : "", sl->on ? ")" : "");
    return CLSPEC_OK;
}

/* ---- the step ---- */

/* Keeps the valid prefix of the n tokens slot s's plugin proposed (ids in
 * range, q(d) >= p_min when it gave probabilities, allowed one after another
 * by the slot's grammar); shorter than n_min: none. */
static void take_draft(struct cs_spec *sp, int32_t s, int32_t n, int32_t kmax)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    n = CS_MIN(n, kmax);
    int32_t k = 0;
    while (k < n && sl->draft[k] >= 0 && sl->draft[k] < sp->n_vocab &&
           !(sl->probs && sl->probs[(size_t)k * (size_t)sp->n_vocab + (size_t)sl->draft[k]] < sp->p.p_min))
        k++;
    k = clspec_sampler_grammar_prefix(sl->smp, sl->draft, k); /* a token the grammar forbids ends the draft */
    sl->n_draft = k >= sp->p.n_min ? k : 0;
}

/* Asks the plugin for the drafts of the n slots ids[] (kmax[] tokens at
 * most each): one draft_batch call when it has one, else draft per slot. */
static void ask_drafts(struct cs_spec *sp, const int32_t *ids, const int32_t *kmax, int32_t n)
{
    struct clspec_draft_req req[CLSPEC_MAX_SEQ];
    int32_t *outs[CLSPEC_MAX_SEQ], n_out[CLSPEC_MAX_SEQ];
    float *probs[CLSPEC_MAX_SEQ];
    for (int32_t i = 0; i < n; i++) {
        struct cs_spec_slot *sl = &sp->slots[ids[i]];
        req[i] = (struct clspec_draft_req){
            .size = sizeof req[i], .slot = ids[i], .hist = sl->hist, .n_hist = sl->n_hist,
            .pos_last = sl->n_hist - 1, .n_max = kmax[i], .p_min = sp->p.p_min, .n_vocab = (uint32_t)sp->n_vocab,
        };
        outs[i] = sl->draft;
        probs[i] = sl->probs;
        n_out[i] = 0;
    }
    char perr[512] = "";
    if (sp->pl->vt.draft_batch) {
        int32_t kk = 0;
        for (int32_t i = 0; i < n; i++)
            kk = CS_MAX(kk, kmax[i]);
        double t0 = cs_now();
        int rc = sp->pl->vt.draft_batch(sp->pl->state, req, n, outs, probs, n_out, perr, sizeof perr);
        double dt = cs_now() - t0;
        sp->t_draft += dt;
        cs_ctl_sample(&sp->ctl.draft, kk, dt);
        if (rc < 0) {
            for (int32_t i = 0; i < n; i++)
                cs_spec_slot_disable(sp, ids[i], perr[0] ? perr : "the plugin's draft_batch failed");
            return;
        }
        for (int32_t i = 0; i < n; i++)
            take_draft(sp, ids[i], n_out[i], kmax[i]);
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        double t0 = cs_now();
        int k = sp->pl->vt.draft(sp->pl->state, &req[i], outs[i], probs[i], perr, sizeof perr);
        double dt = cs_now() - t0;
        sp->t_draft += dt;
        cs_ctl_sample(&sp->ctl.draft, kmax[i], dt);
        if (k < 0)
            cs_spec_slot_disable(sp, ids[i], perr[0] ? perr : "the plugin's draft failed");
        else
            take_draft(sp, ids[i], k, kmax[i]);
    }
}

/* Slot s's device draft of n tokens (kmax at most) at out: kept on the
 * device when its buffer is the step's (or the first) on the engine's
 * queue, else read back here (one wait) and checked as a host draft. */
static void take_dev_draft(struct cs_spec *sp, int32_t s, const struct clspec_draft_dev *out, int32_t kmax,
                           const struct cs_cl_dev *edev)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    const int32_t k = CS_MIN(out->n, kmax);
    cl_mem m = NULL;
    size_t n_el = 0;
    const struct cs_cl_dev *d = NULL;
    char e2[CLSPEC_ERRLEN];
    if (k < CS_MAX(sp->p.n_min, 1))
        return;
    if (cs_host_buf_tokens(sp->pl, out->buf, out->off, out->stride, k, &m, &n_el, &d, e2, sizeof e2) < 0) {
        cs_spec_slot_disable(sp, s, e2);
        return;
    }
    if (d == edev && (!sp->dt_buf || sp->dt_buf == m)) {
        sp->dt_buf = m;
        sp->dt_n = n_el;
        sp->dt_dev = d;
        sl->dev_draft = true;
        sl->dt_off = out->off;
        sl->dt_stride = out->stride;
        sl->n_draft = k;
        return;
    }
    for (int32_t i = 0; i < k; i++) /* another queue or buffer: the tokens come to the host now */
        if (cs_cl_read((struct cs_cl_dev *)d, m, (out->off + (size_t)i * out->stride) * 4, 4, &sl->draft[i], e2,
                       sizeof e2) < 0) {
            cs_spec_slot_disable(sp, s, e2);
            return;
        }
    take_draft(sp, s, k, kmax);
}

/* The drafts of the n slots ids[] left on the device (draft_batch_dev,
 * ABI 1.7) when every one of them verifies greedily on the device without
 * a probability cut and the engine takes device tokens. Returns false when
 * not asked that way (the caller asks draft_batch / draft). */
static bool ask_drafts_dev(struct cs_spec *sp, const int32_t *ids, const int32_t *kmax, int32_t n)
{
    const struct cs_cl_dev *edev = sp->dev_off ? NULL : sp->tok_dev;
    if (!sp->pl->vt.draft_batch_dev || !edev || sp->p.p_min > 0.0f) {
        sp->dev_off = true;
        return false;
    }
    struct clspec_draft_req req[CLSPEC_MAX_SEQ];
    struct clspec_draft_dev out[CLSPEC_MAX_SEQ];
    int32_t kk = 0;
    for (int32_t i = 0; i < n; i++) {
        struct cs_spec_slot *sl = &sp->slots[ids[i]];
        if (!sl->dev_greedy)
            return false;
        req[i] = (struct clspec_draft_req){
            .size = sizeof req[i], .slot = ids[i], .hist = sl->hist, .n_hist = sl->n_hist,
            .pos_last = sl->n_hist - 1, .n_max = kmax[i], .p_min = 0.0f, .n_vocab = (uint32_t)sp->n_vocab,
        };
        out[i] = (struct clspec_draft_dev){.size = sizeof out[i]};
        kk = CS_MAX(kk, kmax[i]);
    }
    char perr[512] = "";
    double t0 = cs_now();
    int rc = sp->pl->vt.draft_batch_dev(sp->pl->state, req, n, out, perr, sizeof perr);
    double dt = cs_now() - t0; /* the queuing only: the drafts' device time falls in the verification's */
    sp->t_draft += dt;
    cs_ctl_sample(&sp->ctl.draft, kk, dt);
    if (rc == CLSPEC_E_UNSUPPORTED) {
        sp->dev_off = true;
        return false;
    }
    for (int32_t i = 0; i < n; i++)
        if (rc < 0)
            cs_spec_slot_disable(sp, ids[i], perr[0] ? perr : "the plugin's draft_batch_dev failed");
        else
            take_dev_draft(sp, ids[i], &out[i], kmax[i], edev);
    return true;
}

/* Adds slot s's rows [last, d1..dk] to the batch (each keeps its logits). */
static int add_rows(struct cs_spec *sp, int32_t s, bool with_draft, char *err, size_t errlen)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    int32_t k = with_draft ? sl->n_draft : 0;
    sl->row = sp->b.n;
    int rc = rows_add(&sp->b, sl->hist[sl->n_hist - 1], sl->n_hist - 1, s, true, err, errlen);
    for (int32_t i = 0; rc == CLSPEC_OK && i < k; i++) {
        rc = rows_add(&sp->b, sl->dev_draft ? 0 : sl->draft[i], sl->n_hist + i, s, true, err, errlen);
        if (rc == CLSPEC_OK && sl->dev_draft)
            sp->b.tok_src[sp->b.n - 1] = (int32_t)(sl->dt_off + (size_t)i * sl->dt_stride);
    }
    for (int32_t i = sl->row; rc == CLSPEC_OK && sl->dev_greedy && i < sp->b.n; i++)
        sp->b.greedy[i] = 1;
    return rc;
}

/* A failed forward: the slots in it keep nothing of this step. Returns rc. */
static int undo(struct cs_spec *sp, const bool *which, int rc)
{
    char e2[CLSPEC_ERRLEN];
    for (int32_t s = 0; s < sp->n_slots; s++)
        if (which[s]) {
            clspec_sampler_save_into(sp->slots[s].smp, sp->slots[s].snap, e2, sizeof e2);
            rollback(sp, s, false, e2, sizeof e2);
        }
    return rc;
}

/* Room for n_lrows logits rows in sp->logits. */
static int reserve_logits(struct cs_spec *sp, int32_t n_lrows, char *err, size_t errlen)
{
    if (n_lrows > sp->logits_rows) {
        float *l = realloc(sp->logits, (size_t)n_lrows * (size_t)sp->n_vocab * sizeof *l);
        if (!l)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "spec: out of memory (%d logits rows)", n_lrows);
        sp->logits = l;
        sp->logits_rows = n_lrows;
    }
    return CLSPEC_OK;
}

/* Which slots may draft this step and how much (ids/kmaxs, returns how
 * many): every wanted slot and every extra row needs its own cell first
 * (n_reserved of them); drafts share what is left of the cache. */
static int32_t plan_drafts(struct cs_spec *sp, const bool *want, const int32_t *n_left, int32_t n_reserved,
                           int32_t n_extra, int32_t *ids, int32_t *kmaxs)
{
    const bool cost = sp->p.ctl == CS_SPEC_CTL_COST;
    struct cs_ctl_slot *cslots[CLSPEC_MAX_SEQ];
    int32_t callow[CLSPEC_MAX_SEQ], cslot_id[CLSPEC_MAX_SEQ], n_c = 0;
    char e2[CLSPEC_ERRLEN];
    uint32_t n_free = 0, seq_free = 0;
    clspec_kv_usage(sp->e, NULL, &n_free, e2, sizeof e2);
    int64_t spare = (int64_t)n_free - n_reserved;
    int32_t n_ask = 0;
    for (int32_t s = 0; s < sp->n_slots; s++) {
        struct cs_spec_slot *sl = &sp->slots[s];
        sl->n_draft = 0;
        const bool long_det = want[s] && sl->detached && sl->n_hist - sl->n_hist_det >= CS_SPEC_DETACH_MAX;
        if (long_det && cs_spec_attach_slot(sp, s))
            cs_spec_detach_slot(sp, s); /* the plugin catches up now and then (the kept taps stay bounded) */
        if (cost && want[s]) { /* every decoding slot is in the controller's step, drafting or not */
            cslots[n_c] = &sl->ctl;
            cslot_id[n_c] = s;
            callow[n_c++] = 0;
        }
        if (!want[s] || !sl->on || !sp->pl)
            continue;
        int32_t cap = sl->n_max_req > 0 ? CS_MIN(sl->n_max_req, sp->p.n_max) : sp->p.n_max;
        int64_t kmax = CS_MIN((int64_t)(cost ? cap : CS_MIN(sl->n_cur, cap)), (int64_t)n_left[s] - 1);
        const int64_t k_room = kmax; /* before the cache's free cells cap it */
        kmax = CS_MIN(kmax, spare);
        seq_free = 0;
        clspec_seq_n_free(sp->e, s, &seq_free, e2, sizeof e2);
        kmax = CS_MIN(kmax, (int64_t)seq_free - 1);
        if (kmax < k_room && k_room >= CS_MAX(sp->p.n_min, 1)) { /* KV pressure: the draft shrinks (to 0 at worst) */
            sl->st.n_kv_shrunk++;
            sp->total.n_kv_shrunk++;
        }
        if (kmax < CS_MAX(sp->p.n_min, 1))
            continue; /* no room or no need: this step goes without a draft */
        if (cost)
            callow[n_c - 1] = (int32_t)kmax;
        ids[n_ask] = s;
        kmaxs[n_ask++] = (int32_t)kmax;
        spare -= kmax; /* reserved before drafting (drafts of all slots may be made at once) */
    }
    if (!cost || n_c == 0) {
        for (int32_t i = 0; i < n_ask; i++) {
            sp->slots[ids[i]].st.n_asked += (uint64_t)kmaxs[i];
            sp->total.n_asked += (uint64_t)kmaxs[i];
        }
        return n_ask;
    }
    /* the controller picks each length within what is allowed (0: this step without a draft) */
    int32_t k[CLSPEC_MAX_SEQ];
    cs_ctl_choose(&sp->ctl, cslots, callow, n_c, n_extra, k);
    n_ask = 0;
    for (int32_t i = 0; i < n_c; i++) {
        struct cs_spec_slot *sl = &sp->slots[cslot_id[i]];
        sl->n_cur = k[i];
        if (k[i] >= CS_MAX(sp->p.n_min, 1) && !cs_spec_attach_slot(sp, cslot_id[i]))
            continue; /* the plugin could not catch up: the slot decodes plainly from now on */
        if (k[i] >= CS_MAX(sp->p.n_min, 1)) {
            ids[n_ask] = cslot_id[i];
            kmaxs[n_ask++] = k[i];
            sl->st.n_asked += (uint64_t)k[i];
            sp->total.n_asked += (uint64_t)k[i];
        } else if (callow[i] > 0) {
            sl->st.n_ctl_plain++;
            sp->total.n_ctl_plain++;
            cs_spec_detach_slot(sp, cslot_id[i]); /* kept plain: the plugin idles until the slot drafts again */
        }
    }
    return n_ask;
}

/* Verifies and rolls back each slot of which[] the forward placed; a slot
 * the cache refused retries without its draft (retry[], when not NULL) or,
 * without one, gets rc = the refusal. Returns how many retry. */
static int32_t settle(struct cs_spec *sp, const bool *which, const int *seq_rc, const int32_t *n_left, bool *retry,
                      int *rc, char *err, size_t errlen)
{
    int32_t n_retry = 0;
    for (int32_t s = 0; s < sp->n_slots; s++) {
        struct cs_spec_slot *sl = &sp->slots[s];
        if (!which[s])
            continue;
        if (seq_rc[s] != CLSPEC_OK) {
            if (retry && sl->n_draft > 0) {
                retry[s] = true;
                n_retry++;
            } else {
                sl->rc = seq_rc[s];
            }
            continue;
        }
        clspec_sampler_save_into(sl->smp, sl->snap, err, errlen);
        verify(sp, sl, sp->row0[s], n_left[s]);
        if (sl->n_out == 0) { /* a placed slot always gets a token: its verdict was not readable */
            sl->rc = cs_err(err, errlen, CLSPEC_E_INVAL, "spec: slot %d: no verification result", s);
            rollback(sp, s, false, err, errlen);
            continue;
        }
        int r = rollback(sp, s, true, err, errlen);
        if (*rc == CLSPEC_OK)
            *rc = r;
    }
    return n_retry;
}

int cs_spec_step(struct cs_spec *sp, const int32_t *n_left, char *err, size_t errlen)
{
    return cs_spec_step_extra(sp, n_left, NULL, err, errlen);
}

/* Where the last decode's kept logits rows start: the k-th kept row of
 * sp->b is at the result + k * n_vocab (clspec_logits: kept rows lie in one
 * array in row order). NULL when no kept row was placed. */
static const float *kept_base(const struct cs_spec *sp)
{
    for (int32_t i = 0, k = 0; i < sp->b.n; i++) {
        if (!sp->b.logits[i])
            continue;
        const float *L = clspec_logits(sp->e, i);
        if (L)
            return L - (size_t)k * (size_t)sp->n_vocab;
        k++;
    }
    return NULL;
}

/* Before a retry forward: the first forward's n kept rows (from base) move
 * to sp->logits, where the settled slots and the caller still read them. */
static int keep_first(struct cs_spec *sp, const float *base, int32_t n, struct cs_spec_extra *x, char *err,
                      size_t errlen)
{
    const size_t V = (size_t)sp->n_vocab;
    if (!base) /* every kept row was a greedy one: no logits to keep */
        return CLSPEC_OK;
    CS_TRY(reserve_logits(sp, n, err, errlen));
    memcpy(sp->logits, base, (size_t)n * V * sizeof *sp->logits);
    for (int32_t s = 0; s < sp->n_slots; s++)
        if (sp->row0[s])
            sp->row0[s] = sp->logits + (sp->row0[s] - base);
    if (x && x->logits)
        x->logits = sp->logits + (x->logits - base);
    return CLSPEC_OK;
}

/* Whether slot s's step verifies on the device: the caller reads no logits
 * and its sampler's pick is the plain argmax (clspec_sampler_is_argmax), so
 * the argmax per row and the match count are all it needs. */
static bool greedy_on_device(const struct cs_spec_slot *sl)
{
    return !sl->host_logits && clspec_sampler_is_argmax(sl->smp);
}

static int step_extra(struct cs_spec *sp, const int32_t *n_left, struct cs_spec_extra *x, char *err, size_t errlen);

int cs_spec_step_extra(struct cs_spec *sp, const int32_t *n_left, struct cs_spec_extra *x, char *err,
                       size_t errlen)
{
    const uint64_t s0 = cs_cl_sync_count(), c0 = sp->total.n_steps;
    int rc = step_extra(sp, n_left, x, err, errlen);
    if (sp->total.n_steps > c0 || x) {
        sp->total.n_calls++;
        sp->total.n_syncs += cs_cl_sync_count() - s0;
    }
    return rc;
}

static int step_extra(struct cs_spec *sp, const int32_t *n_left, struct cs_spec_extra *x, char *err, size_t errlen)
{
    const struct clspec_batch *xb = x ? x->b : NULL;
    const int32_t n_x = xb ? xb->n_rows : 0;
    const size_t V = (size_t)sp->n_vocab;
    bool want[CLSPEC_MAX_SEQ] = {false};
    int32_t n_want = 0, n_xl = 0; /* extra rows keeping logits */
    if (x) {
        for (int32_t q = 0; q < CLSPEC_MAX_SEQ; q++)
            x->seq_rc[q] = CLSPEC_OK;
        x->logits = NULL;
    }
    for (int32_t i = 0; i < n_x; i++) {
        int32_t q = xb->seq ? xb->seq[i] : 0;
        if (q >= 0 && q < sp->n_slots && sp->slots[q].active)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "spec: extra row %d is of slot %d, which decodes here", i, q);
        n_xl += xb->logits ? xb->logits[i] != 0 : i == n_x - 1;
    }
    for (int32_t s = 0; s < sp->n_slots; s++) {
        struct cs_spec_slot *sl = &sp->slots[s];
        sp->row0[s] = NULL;
        sl->n_out = 0;
        sl->n_accepted = 0;
        sl->rc = CLSPEC_OK;
        sl->eog = false;
        want[s] = sl->active && n_left[s] > 0;
        n_want += want[s];
        sl->dev_greedy = want[s] && greedy_on_device(sl);
        sl->dev_draft = false;
        if (want[s] && sl->n_hist + 1 + sp->p.n_max > sl->cap &&
            grow_hist(sl, sl->n_hist + 1 + sp->p.n_max, err, errlen) < 0)
            return CLSPEC_E_NOMEM;
    }
    if (n_want == 0 && n_x == 0)
        return CLSPEC_OK;
    int32_t ids[CLSPEC_MAX_SEQ], kmaxs[CLSPEC_MAX_SEQ];
    const double t_step = cs_now();
    sp->t_draft = 0.0;
    int32_t n_ask = plan_drafts(sp, want, n_left, n_want + n_x, n_x, ids, kmaxs);
    int32_t n_own = n_want; /* the slots' rows, at most */
    for (int32_t i = 0; i < n_ask; i++)
        n_own += kmaxs[i];
    int rc = rows_reserve(&sp->b, n_own + n_x, err, errlen);
    if (rc < 0)
        return rc;
    sp->dt_buf = NULL;
    if (n_ask > 0) {
        const uint64_t d0 = cs_cl_sync_count();
        if (!ask_drafts_dev(sp, ids, kmaxs, n_ask))
            ask_drafts(sp, ids, kmaxs, n_ask);
        sp->total.n_syncs_draft += cs_cl_sync_count() - d0;
    }
    /* one forward: every slot's [last, d1..dk], then the extra rows */
    sp->b.n = 0;
    int32_t first[CLSPEC_MAX_SEQ]; /* each slot's first row */
    for (int32_t s = 0; s < sp->n_slots; s++) {
        first[s] = sp->b.n;
        if (want[s] && add_rows(sp, s, true, err, errlen) < 0)
            return undo(sp, want, CLSPEC_E_RANGE);
    }
    const int32_t x_row = sp->b.n; /* the extra rows' first logits row (every slot row keeps its logits) */
    const bool x_embd = xb && xb->size >= offsetof(struct clspec_batch, embd) + sizeof xb->embd && xb->embd;
    for (int32_t i = 0; i < n_x; i++) {
        const bool lg = xb->logits ? xb->logits[i] != 0 : i == n_x - 1;
        const int32_t q = xb->seq ? xb->seq[i] : 0;
        rc = x_embd && xb->token[i] < 0
                 ? rows_add_embd(sp, xb->token[i], xb->pos[i], q, lg, xb->embd + (size_t)i * sp->n_embd, err, errlen)
                 : rows_add(&sp->b, xb->token[i], xb->pos[i], q, lg, err, errlen);
        if (rc < 0)
            return undo(sp, want, rc);
    }
    bool keep[CLSPEC_MAX_SEQ]; /* whose taps the plugin gets: the slots', and the extra rows' x asks for */
    memcpy(keep, want, sizeof keep);
    for (int32_t i = 0; i < n_x; i++) {
        const int32_t q = xb->seq ? xb->seq[i] : 0;
        if (q >= 0 && q < sp->n_slots) {
            keep[q] |= x->taps[q];
            sp->slots[q].taps_kept = x->taps[q] && (xb->pos[i] == 0 || sp->slots[q].taps_kept);
        }
    }
    int seq_rc[CLSPEC_MAX_SEQ];
    if ((rc = decode(sp, seq_rc, keep, err, errlen)) < 0)
        return undo(sp, want, rc);
    const float *base = kept_base(sp);
    for (int32_t s = 0; s < sp->n_slots && base; s++)
        if (want[s] && !sp->slots[s].dev_greedy)
            sp->row0[s] = base + (size_t)first[s] * V;
    if (x) {
        memcpy(x->seq_rc, seq_rc, sizeof x->seq_rc);
        x->logits = base && n_xl > 0 ? base + (size_t)x_row * V : NULL;
    }
    /* a slot refused with a draft retries without one; without a draft it is full */
    bool retry[CLSPEC_MAX_SEQ] = {false};
    const int32_t n_rows = sp->b.n;
    int32_t n_retry = settle(sp, want, seq_rc, n_left, retry, &rc, err, errlen);
    /* the step's cost without its draft call, by the rows it verified (device drafts: their device time
     * is in it); the first step with device drafts pays one-time costs (allocations, first copies) */
    if (rc == CLSPEC_OK && n_retry == 0 && !(sp->dt_buf && !sp->dt_warm))
        cs_ctl_sample(&sp->ctl.verify, n_rows, cs_now() - t_step - sp->t_draft);
    sp->dt_warm |= sp->dt_buf != NULL;
    if (rc < 0 || n_retry == 0)
        return rc;
    for (int32_t s = 0; s < sp->n_slots; s++)
        if (retry[s])
            sp->row0[s] = NULL;
    if ((rc = keep_first(sp, base, x_row + n_xl, x, err, errlen)) < 0)
        return undo(sp, retry, rc);
    sp->b.n = 0;
    for (int32_t s = 0; s < sp->n_slots; s++)
        if (retry[s]) {
            first[s] = sp->b.n;
            sp->slots[s].n_draft = 0; /* the plugin is told 0 drafted by the rollback below */
            add_rows(sp, s, false, err, errlen);
        }
    if ((rc = decode(sp, seq_rc, retry, err, errlen)) < 0)
        return undo(sp, retry, rc);
    base = kept_base(sp);
    for (int32_t s = 0; s < sp->n_slots && base; s++)
        if (retry[s] && !sp->slots[s].dev_greedy)
            sp->row0[s] = base + (size_t)first[s] * V;
    settle(sp, retry, seq_rc, n_left, NULL, &rc, err, errlen);
    return rc;
}

const float *cs_spec_out_logits(const struct cs_spec *sp, int32_t s, int32_t t)
{
    if (s < 0 || s >= sp->n_slots || !sp->row0[s] || t < 0 || t >= sp->slots[s].n_out)
        return NULL;
    return sp->row0[s] + (size_t)t * (size_t)sp->n_vocab;
}

/* ---- lifetime ---- */

void cs_spec_free(struct cs_spec *sp)
{
    if (!sp)
        return;
    for (int32_t s = 0; s < sp->n_slots && sp->slots; s++) {
        cs_spec_slot_end(sp, s);
        struct cs_spec_slot *sl = &sp->slots[s];
        free(sl->hist);
        free(sl->draft);
        free(sl->probs);
        free(sl->out);
        clspec_sampler_state_free(sl->snap);
    }
    free(sp->slots);
    rows_free(&sp->b);
    free(sp->logits);
    free(sp->pt);
    free(sp->resid);
    free(sp->row0);
    cs_ctl_free(&sp->ctl);
    free(sp);
}

int cs_spec_new(clspec_engine *e, struct cs_plugin *pl, const struct cs_spec_params *p, int32_t n_slots,
                struct cs_spec **out, char *err, size_t errlen)
{
    *out = NULL;
    struct clspec_engine_info info = {.size = sizeof info};
    CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    uint32_t n_seq = info.n_seq ? info.n_seq : CLSPEC_MAX_SEQ;
    if (n_slots < 1 || n_slots > CLSPEC_MAX_SEQ || (uint32_t)n_slots > n_seq)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "spec: %d slots (want 1..%u, the engine's sequences)", n_slots,
                      n_seq);
    if (p->n_max < 1 || p->n_max > 64 || p->n_min < 0 || p->n_min > p->n_max || !(p->p_min >= 0.0f) ||
        p->p_min > 1.0f || (p->ctl != CS_SPEC_CTL_ACCEPT && p->ctl != CS_SPEC_CTL_COST))
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "spec: n_max %d (want 1..64), n_min %d (want 0..n_max), p_min %g (want 0..1), ctl %d "
                      "(want 0 acceptance, 1 cost)", p->n_max, p->n_min, p->p_min, p->ctl);
    if (info.size >= offsetof(struct clspec_engine_info, n_draft_max) + sizeof info.n_draft_max &&
        info.n_draft_max > 0 && (uint32_t)p->n_max > info.n_draft_max) /* hybrid: rollback reaches so far */
        return cs_err(err, errlen, CLSPEC_E_RANGE,
                      "spec: n_max %d (clspecd: [speculator] n_max) exceeds the %u drafted tokens the hybrid "
                      "model's recurrent state can roll back; open the engine with n_draft_max >= %d, or lower "
                      "n_max to %u",
                      p->n_max, info.n_draft_max, p->n_max, info.n_draft_max);
    struct cs_spec *sp = calloc(1, sizeof *sp);
    if (!sp)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "spec: out of memory");
    sp->e = e;
    sp->pl = pl;
    sp->p = *p;
    sp->n_vocab = info.n_vocab;
    sp->n_embd = info.n_embd;
    sp->n_batch = (int32_t)CS_MIN(info.n_batch, 1u << 30);
    sp->n_slots = n_slots;
    const struct cs_engine *ie = cs_api_engine(e);
    sp->tok_dev = ie ? cs_fwd_tok_dev(ie->ctx) : NULL;
    const size_t V = (size_t)sp->n_vocab;
    const int32_t rows = n_slots * (p->n_max + 1);
    const int32_t cap = CS_MAX(rows, (int32_t)CS_MIN(info.n_batch, 4096u));
    bool probs = pl && (pl->vt.caps & CLSPEC_SPEC_CAP_DRAFT_PROBS);
    int rc = rows_reserve(&sp->b, cap, err, errlen);
    if (rc < 0) {
        free(sp);
        return rc;
    }
    sp->slots = calloc((size_t)n_slots, sizeof *sp->slots);
    sp->pt = malloc(V * sizeof *sp->pt);
    sp->resid = malloc(V * sizeof *sp->resid);
    sp->row0 = malloc((size_t)n_slots * sizeof *sp->row0);
    bool ok = sp->slots && sp->pt && sp->resid && sp->row0 &&
              cs_ctl_init(&sp->ctl, p->n_max, cap, pl && pl->vt.draft_batch) == CLSPEC_OK;
    for (int32_t s = 0; ok && s < n_slots; s++) {
        struct cs_spec_slot *sl = &sp->slots[s];
        sl->draft = calloc((size_t)p->n_max, sizeof *sl->draft);
        sl->out = calloc((size_t)p->n_max + 1, sizeof *sl->out);
        sl->probs = probs ? calloc((size_t)p->n_max * V, sizeof *sl->probs) : NULL;
        ok = sl->draft && sl->out && (!probs || sl->probs);
    }
    if (!ok) {
        cs_spec_free(sp);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "spec: out of memory");
    }
    *out = sp;
    return CLSPEC_OK;
}

void cs_spec_slot_end_keep(struct cs_spec *sp, int32_t s)
{
    if (s < 0 || s >= sp->n_slots || !sp->slots[s].active)
        return;
    struct cs_spec_slot *sl = &sp->slots[s];
    cs_spec_slot_disable(sp, s, NULL);
    sl->active = false;
    sl->n_hist = 0;
    sl->smp = NULL;
}
