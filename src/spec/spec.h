/* spec.h: the speculative decoding step over N slots of one engine: ask each
 * slot's speculator for a draft, verify [last, d1..dk] of all slots (and
 * rows of other sequences the caller adds: the daemon's prompt chunks) in
 * one batched forward, accept per slot (greedy match, rejection sampling, or
 * sample-and-match) and roll back everything beyond the accepted prefix (KV
 * cells, sampler state, the plugin) in one function. A slot without a
 * speculator, or with speculation switched off, decodes one token per step
 * through the same path, so "no speculation" is the same code.
 * It reaches the engine only through the engine door (clspec.h).
 * The caller owns struct cs_spec (cs_spec_new / cs_spec_free); the engine,
 * the plugin and each slot's sampler are borrowed. */
#ifndef CS_SPEC_SPEC_H
#define CS_SPEC_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "clspec/clspec.h"
#include "spec/ctl.h"
#include "spec/loader.h"

/* How each slot's draft length is chosen (struct cs_spec_params.ctl). */
enum cs_spec_ctl {
    CS_SPEC_CTL_ACCEPT = 0, /* from acceptance alone (n_cur below): deterministic, the tests' choice */
    CS_SPEC_CTL_COST = 1,   /* the cost-aware controller of src/spec/ctl.h: measured draft and verify
                             * times and acceptance; plain decoding when no length beats it */
};

struct cs_spec_params {
    int32_t n_max;   /* most draft tokens per step (>= 1) */
    int32_t n_min;   /* a draft shorter than this is not verified (>= 0); the adaptive length never goes below */
    float p_min;     /* drafts with probabilities are cut before the first token with q(d) < p_min */
    bool log;        /* one line per slot_begin on stderr: whether speculation is on */
    int ctl;         /* enum cs_spec_ctl (default CS_SPEC_CTL_ACCEPT) */
};

/* n_max 8, n_min 1, p_min 0, no log. */
struct cs_spec_params cs_spec_defaults(void);

struct cs_spec_stats {
    uint64_t n_steps;        /* verification steps */
    uint64_t n_draft_steps;  /* steps with a draft of >= 1 token */
    uint64_t n_drafted;      /* draft tokens verified */
    uint64_t n_accepted;     /* of them accepted */
    uint64_t n_emitted;      /* tokens appended to the history by steps */
    uint64_t n_asked;        /* draft tokens asked of the plugin (the chosen lengths, summed) */
    uint64_t n_ctl_plain;    /* steps the cost-aware controller ran without a draft that one was allowed */
    uint64_t n_kv_shrunk;    /* steps whose draft was cut short (or left out) for want of free KV cells */
    /* struct cs_spec.total only: */
    uint64_t n_calls;        /* cs_spec_step(_extra) calls that ran a forward (steps of all slots at once) */
    uint64_t n_syncs;        /* blocking host syncs in them (cs_cl_sync_count), drafting included */
    uint64_t n_syncs_draft;  /* of them in the plugin's draft calls */
    uint64_t n_greedy_rows;  /* target rows verified on the device (only their argmax came back) */
    uint64_t n_detached;     /* steps a slot decoded detached from the plugin (ABI 1.8: no accept call) */
    uint64_t n_attach;       /* slot_attach calls (re-probes, lengths that pay again, catch-ups) */
};

struct cs_spec_slot {
    bool active;             /* a request is running (slot_begin .. slot_end) */
    bool on;                 /* speculation on for this request */
    int32_t *hist;           /* (cap) prompt + generated tokens; hist[n_hist-1] = last, not yet in the KV */
    int32_t n_hist, cap;
    int32_t n_cur;           /* adaptive draft length: n_max at slot_begin; after a draft accepted whole
                              * + 2 (up to n_max), after a rejection accepted + 1 (at least max(n_min, 1)) */
    clspec_sampler *smp;     /* borrowed */
    clspec_sampler_state *snap; /* the sampler state before the current verification */
    bool stochastic;         /* smp's temperature > 0 (drafts with probabilities go through rejection sampling) */
    int32_t *draft;          /* (n_max) this step's draft */
    float *probs;            /* (n_max, n_vocab) its probabilities, or NULL (plugin without them) */
    int32_t n_draft;
    /* results of the last step */
    int32_t *out;            /* (n_max + 1) tokens appended this step */
    int32_t n_out;
    int32_t n_accepted;      /* drafts accepted this step */
    int rc;                  /* CLSPEC_OK, or CLSPEC_E_KV_FULL (no room even for one token) */
    bool eog;                /* the last token out is an end-of-generation token */
    struct cs_spec_stats st; /* since slot_begin */
    char off_why[256];       /* why speculation went off for this request ("" while on or never asked) */
    int32_t n_max_req;       /* the request's own cap on the draft length (0 = p.n_max; set after slot_begin) */
    struct cs_ctl_slot ctl;  /* CS_SPEC_CTL_COST: acceptance, the chosen length, off steps and probes */
    bool host_logits;        /* the caller reads cs_spec_out_logits (logprobs): every row's logits come back.
                              * slot_begin takes it from the request's sampler (cs_api_sampler_keeps_logits);
                              * without it greedy steps verify on the device (dev_greedy) */
    bool dev_greedy;         /* this step: greedy verification on the device (clspec_batch.greedy) */
    int32_t row;             /* this step: the slot's first row in the last forward */
    bool taps_kept;          /* free slot: its sequence's prompt rows so far were all extra rows with
                              * cs_spec_extra.taps, from position 0 (the next slot_begin keeps the taps) */
    bool dev_draft;          /* this step: the draft's tokens are on the device (draft_batch_dev, ABI 1.7);
                              * draft[] gets them with the verdict, in the step's one sync */
    size_t dt_off, dt_stride; /* where: element dt_off + i * dt_stride of sp->dt_buf */
    bool detached;           /* ABI 1.8: the controller keeps the slot plain and the plugin was told (slot_detach):
                              * no accept calls until slot_attach hands it hist[n_hist_det..n_hist-1] */
    int32_t n_hist_det;      /* n_hist when the plugin last heard of the slot's history */
};

/* The rows of one forward (the arrays of a struct clspec_batch). */
struct cs_spec_rows {
    int32_t n, cap;          /* rows in use, allocated */
    int32_t *token, *pos, *seq; /* (cap) */
    uint8_t *logits;         /* (cap) 1 = keep the row's logits */
    uint8_t *greedy;         /* (cap) 1 = only the row's argmax comes back (clspec_batch.greedy) */
    int32_t *tok_src;        /* (cap) >= 0: the row's token is element tok_src[i] of sp->dt_buf (on the device) */
    int32_t *tok_got;        /* (cap) those rows' tokens, back from the forward */
    float *embd;             /* (embd_cap, n_embd) inputs of image rows (negative tokens), grown when one comes */
    int32_t embd_cap;
};

struct cs_spec {
    clspec_engine *e;        /* borrowed: the engine door */
    struct cs_plugin *pl;    /* borrowed; NULL = no speculation */
    struct cs_spec_params p;
    int32_t n_vocab;
    int32_t n_embd;          /* image rows' width */
    int32_t n_batch;         /* the engine's n_batch (prefill chunks) */
    int32_t n_slots;         /* slot s uses KV sequence s */
    struct cs_spec_slot *slots;
    struct cs_spec_rows b;   /* (>= n_slots * (n_max + 1)) rows; grows for extra rows */
    float *logits;           /* (logits_rows, n_vocab): the first forward's rows kept across a retry forward */
    int32_t logits_rows;     /* grows as needed */
    float *pt, *resid;       /* (n_vocab) scratch: target probabilities, residual */
    const float **row0;      /* (n_slots) logits of each slot's first row in this step (its rows follow
                              * contiguously: the door's or sp->logits), NULL = none */
    struct cs_spec_stats total;
    struct cs_ctl ctl;       /* the cost-aware controller's measurements (kept for the engine's lifetime) */
    double t_draft;          /* seconds the current step spent in the plugin's draft calls */
    /* device drafts (draft_batch_dev): the step's token buffer; dev_off once the engine or the plugin
     * cannot take them (then draft_batch / draft as before 1.7) */
    cl_mem dt_buf;
    size_t dt_n;
    const struct cs_cl_dev *dt_dev;
    bool dev_off;
    const struct cs_cl_dev *tok_dev; /* the queue of the target's input and output when it takes device tokens
                              * (cs_fwd_tok_dev), else NULL */
    bool dt_warm;            /* a step with device drafts ran (the first is no cost sample) */
};

int cs_spec_new(clspec_engine *e, struct cs_plugin *pl, const struct cs_spec_params *p, int32_t n_slots,
                struct cs_spec **out, char *err, size_t errlen);
void cs_spec_free(struct cs_spec *sp);

/* Starts a request on slot: prefills prompt[0..n_prompt-1) (the last prompt
 * token is the first step's input), remembers smp (the caller has already
 * given it the prompt tokens it wants in the penalty history) and tells the
 * plugin. speculate = false (or no plugin) decodes without drafts. Ends a
 * request still running on the slot first. */
int cs_spec_slot_begin(struct cs_spec *sp, int32_t slot, const int32_t *prompt, int32_t n_prompt,
                       clspec_sampler *smp, bool speculate, char *err, size_t errlen);
/* As cs_spec_slot_begin when the slot's KV sequence already holds
 * prompt[0..n_cached) at positions 0..n_cached-1 (the caller prefilled it,
 * e.g. the daemon's scheduler with its chunked prefill and prefix reuse):
 * only prompt[n_cached..n_prompt-1) is prefilled. n_cached <= n_prompt - 1;
 * the sequence must hold exactly n_cached cells (else CLSPEC_E_INVAL). */
int cs_spec_slot_begin_cached(struct cs_spec *sp, int32_t slot, const int32_t *prompt, int32_t n_prompt,
                              int32_t n_cached, clspec_sampler *smp, bool speculate, char *err, size_t errlen);
/* Ends the request: frees its KV cells, tells the plugin. */
/* cs_spec_slot_begin_cached for a prompt with image rows (negative ids):
 * img_rows (n_image_rows, n_embd) are their inputs in prompt order (the
 * core's own prefill reads them). A speculator without
 * CLSPEC_SPEC_CAP_EMBD_ROWS sits out such a request (speculation off for
 * it, with the reason); one with it sees CLSPEC_TOKEN_EMBD at those rows. */
int cs_spec_slot_begin_rows(struct cs_spec *sp, int32_t slot, const int32_t *prompt, int32_t n_prompt,
                            int32_t n_cached, const float *img_rows, clspec_sampler *smp, bool speculate, char *err,
                            size_t errlen);
void cs_spec_slot_end(struct cs_spec *sp, int32_t slot);
/* cs_spec_slot_end, but the target's KV cells of the slot stay (the daemon
 * keeps them as the slot's prompt cache, or a context shift keeps a start). */
void cs_spec_slot_end_keep(struct cs_spec *sp, int32_t slot);
/* Switches speculation off for the slot's request and clears every piece of
 * speculator state it has (plugin slot_end, draft, probabilities, adaptive
 * length). The one way to turn it off. */
void cs_spec_slot_disable(struct cs_spec *sp, int32_t slot, const char *why);

/* One step for every active slot with n_left[slot] > 0 (tokens it may still
 * emit): results in slots[s].out/n_out/rc/eog. A slot whose KV is full even
 * for one token gets rc = CLSPEC_E_KV_FULL and no tokens (its state
 * unchanged); a full cache only shrinks or skips drafts otherwise. Returns
 * an error only for failures of the whole step (device); then no slot in
 * it keeps anything of the step. */
int cs_spec_step(struct cs_spec *sp, const int32_t *n_left, char *err, size_t errlen);

/* Rows of other sequences that ride in a step's first forward: the
 * daemon's prompt chunks, so that one scheduler iteration is one forward
 * (plain decoding is a slot without a draft, so every decoding slot is in
 * the step). The caller owns it; the core only reads b. */
struct cs_spec_extra {
    const struct clspec_batch *b; /* in: rows of sequences that are not active slots (prompt chunks); NULL: none */
    int seq_rc[CLSPEC_MAX_SEQ]; /* out: per sequence, as clspec_decode's (CLSPEC_E_KV_FULL: b's rows of it
                                 * were refused and left no cell) */
    const float *logits;        /* out: (rows of b asking for logits, n_vocab) in row order: valid until
                                 * the next step; NULL when no forward ran or b kept none */
    bool taps[CLSPEC_MAX_SEQ];  /* in: the plugin's target taps of these sequences' rows are kept (the
                                 * prompt chunks, from position 0, of a request that will speculate with a
                                 * speculator reading them): its slot_begin_cached then hands them on */
};
/* cs_spec_step with x's rows appended to its first forward (after every
 * slot's rows; drafts only take cells the extra rows leave). Runs the
 * forward also when no slot decodes. A row of an active slot is
 * CLSPEC_E_INVAL (nothing runs). */
int cs_spec_step_extra(struct cs_spec *sp, const int32_t *n_left, struct cs_spec_extra *x, char *err,
                       size_t errlen);
/* The logits row that gave slots[s].out[t] in the last step (the target's
 * distribution at that position), valid until the next step; NULL for t out
 * of range or a slot that was not in the step. */
const float *cs_spec_out_logits(const struct cs_spec *sp, int32_t s, int32_t t);

/* ABI 1.8 (detach.c): slot s, kept plain by the controller, is detached
 * from the plugin (nothing when the plugin lacks the entries, the slot
 * does not speculate or is detached already); attach hands the plugin the
 * tokens its history gained meanwhile (true: the slot speculates on;
 * false: the plugin failed and speculation is off for the request). */
#define CS_SPEC_DETACH_MAX 256 /* tokens a detached slot gathers before the plugin catches up on them */
void cs_spec_detach_slot(struct cs_spec *sp, int32_t s);
bool cs_spec_attach_slot(struct cs_spec *sp, int32_t s);

/* KV cells held by seq (tests: = the slot's n_hist - 1 after every step). */
uint32_t cs_spec_kv_cells(const clspec_engine *e, int32_t seq);

/* Rejection sampling for one draft token d ~ q: accepted when u < p(d)/q(d)
 * (returns d); otherwise returns a draw (with u2) from norm(max(p - q, 0))
 * (resid: n scratch). u, u2 uniform in [0, 1). Keeps the target distribution p. */
int32_t cs_spec_rs_token(const float *p, const float *q, int32_t n, int32_t d, double u, double u2, float *resid,
                         bool *accepted);

#endif
