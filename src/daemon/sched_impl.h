/* sched_impl.h: the scheduler's internals shared by sched.c (queue, slots,
 * prompt chunks, the loop) and sched_spec.c (the decoding half: every
 * decoding slot lives in the speculative core, which owns its history).
 * Not a public interface: see sched.h. */
#ifndef CS_DAEMON_SCHED_IMPL_H
#define CS_DAEMON_SCHED_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/sched.h"
#include "daemon/textout.h"
#include "spec/spec.h"
#include "base/strbuf.h"

struct job {
    uint64_t id;
    struct cs_req r;              /* copy: prompt/stop point into the owned copies below */
    int32_t *prompt;              /* (n_prompt) after truncation */
    int n_prompt;
    float *img_rows;              /* (n_image_rows, n_embd) owned copy of r.image_rows, or NULL */
    int32_t *img_at;              /* (n_prompt) the image row of each prompt row, -1 for a token; NULL: none */
    char *stop_copy[CS_MAX_STOP];
    int max_tokens;               /* effective; <= 0: until EOS or the slot's context */
    cs_req_cb cb;
    void *user;
    clspec_sampler *smp;
    struct cs_sampler *shadow;    /* r.post_sampling: smp's twin one token behind (its probabilities before
                                   * each draw), else NULL */
    float *pp;                    /* (n_vocab) r.post_sampling: scratch for those probabilities */
    struct cs_textout *to;
    atomic_bool cancelled;
    uint64_t admit_no;            /* admission order (prefill priority) */
    int n_cached;                 /* prompt tokens whose cells were shared from another sequence */
    double t_submit, t_start, t_first, t_last; /* cs_now() seconds */
    uint64_t calls0, syncs0;      /* the core's forwards and blocking syncs (cs_spec.total) at t_first */
    struct job *next;             /* queue link */
    /* preemption (admit.c): a preempted job waits at the queue's head with its history */
    int32_t *resume;              /* (n_resume) prompt + emitted tokens; the last is the next input; NULL: none */
    int n_resume;
    int n_gen_saved;              /* tokens emitted before the preemption */
    int n_preempted;              /* times preempted */
    /* context shift (sched_cache.c) */
    bool ctx_full;                /* the generation reached the slot's context */
    bool shift_pending;           /* ctx_shift: drop tokens after this step */
    int n_shifted;                /* tokens dropped so far (the history is n_prompt + emitted - n_shifted) */
    bool finishing;               /* its last event is (being) delivered; the slot is freed right after (under mu) */
};

/* The tokens a job's slot prefills: its prompt, or after a preemption its
 * history but the last token (the next input). */
static inline const int32_t *cs_job_feed(const struct job *j)
{
    return j->resume ? j->resume : j->prompt;
}
static inline int cs_job_n_feed(const struct job *j)
{
    return j->resume ? j->n_resume - 1 : j->n_prompt;
}

/* A slot's own state: the request and its prompt progress. Once the prompt
 * is in, the slot decodes in the speculative core (s->sp->slots[i] active),
 * which owns its history, last token and KV cell count; nothing of that is
 * kept here (see cs_sched_n_past). */
struct slot {
    struct job *job;              /* NULL when idle; written under mu by the scheduler thread only */
    int n_fed;                    /* prompt tokens the sequence holds (prefill; prefix reuse counts) */
    int n_gen;                    /* tokens emitted */
    /* this step */
    int n_rows;                   /* prompt rows in the step's extra batch */
    int logit_row;                /* index among the extra batch's logits rows, -1 none */
    bool taps;                    /* spec_core_prefill: this request's chunks (from position 0) keep the
                                   * speculator's taps of the target (cs_spec_extra.taps) */
};

/* keep_cache: what an idle slot's sequence holds (sched_cache.c). Written
 * under mu by the scheduler thread (erase: any thread, under mu, sets drop). */
struct slot_cache {
    int32_t *tok;                 /* (cap) the tokens of cells 0..n-1 */
    int n, cap;
    double t_used;                /* cs_now() when its request ended (0: never used): the oldest goes first */
    bool drop;                    /* erased: the loop removes the cells before it assigns the slot */
};

struct cs_sched {
    clspec_engine *e;             /* borrowed: the engine door */
    int32_t bos;                  /* the vocabulary's BOS, -1 none */
    int n_batch;                  /* the engine's n_batch: a step's rows when no slot decodes */
    struct cs_sched_params p;
    struct cs_spec *sp;           /* p.spec (borrowed), or own_sp: every decoding slot advances in it */
    bool own_sp;                  /* sp made by cs_sched_new (no speculator: p.spec NULL), freed with it */
    int slot_ctx;                 /* cells one slot may hold */
    int n_vocab;
    int prefill_max;
    bool lstrip;                  /* the tokenizer drops the first token's leading space */
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu, cb_mu;
    pthread_cond_t cv_work;       /* to the scheduler: work, cancel, drain, quit */
    pthread_cond_t cv_done;       /* from the scheduler: a slot was freed / abort done (CLOCK_MONOTONIC) */
    struct job *q_head, *q_tail;
    int q_n;
    struct slot *slots;           /* (n_slots) */
    int busy;
    struct cs_slot_info *info;    /* (n_slots) published copy, under mu */
    bool quit, draining, abort_all;
    struct job *aborting;         /* jobs being failed by a drain timeout (cancel finds them here) */
    uint64_t next_id, admit_no;
    struct cs_sched_stats st;
    /* scheduler-thread scratch */
    /* this step's prompt chunks (the extra rows of the core's forward): b's arrays, b_cap rows */
    struct clspec_batch b;
    int n_embd;                   /* the model's width (image rows) */
    float *b_embd;                /* (b_cap, n_embd) image rows of the chunk batch; NULL until one comes */
    int32_t *b_token, *b_pos, *b_seq;
    uint8_t *b_logits;
    int32_t b_cap;
    struct cs_strbuf txt;         /* event text assembly */
    struct cs_top_logprob top[CS_MAX_TOP_LOGPROBS];
    char *top_txt;                /* pieces of the alternatives */
    size_t top_cap;
    clspec_grammar_vocab *gvocab; /* the vocabulary's texts for grammar requests (built by cs_sched_new) */
    struct slot_cache *cache;     /* (n_slots) keep_cache: the idle slots' cached tokens */
    bool keep_cache;              /* p.keep_cache, off for hybrid targets */
};

/* Cells slot i's sequence holds: its prompt fed so far while prefilling,
 * the core's history but its last token (the next input) once decoding. */
static inline int cs_sched_n_past(const struct cs_sched *s, int i)
{
    const struct cs_spec_slot *ss = &s->sp->slots[i];
    return ss->active ? ss->n_hist - 1 : s->slots[i].n_fed;
}

/* sched.c, for sched_spec.c (scheduler thread only): */
/* Ends slot i's request: reason "stop"/"length" (status CLSPEC_OK) or an error (status < 0, message). */
void cs_sched_finish(struct cs_sched *s, int i, const char *reason, int status, const char *message);
/* Slot i got token tok (already given to its sampler); L its logits row or NULL. Streams it, maybe
 * finishes the request. Returns true while the request runs on. */
bool cs_sched_emit(struct cs_sched *s, int i, int32_t tok, const float *L);

/* admit.c (scheduler thread): */
/* Under mu: whether queued job j may take a slot now (its prompt or history,
 * and some growth for every running request, fit the free cells). */
bool cs_sched_admit_ok(struct cs_sched *s, const struct job *j);
/* After a step in which the cache refused a slot: preempts the youngest
 * running request (its cells freed, its history kept; it resumes first)
 * when another one runs; returns false when the refused slot runs alone
 * (nothing to free: it fails). */
bool cs_sched_preempt_youngest(struct cs_sched *s);
/* Slot i's resumed history is in the KV: it decodes in the core again
 * (no token is sampled: the last one of the history is the next input). */
bool cs_sched_resume_attach(struct cs_sched *s, int i);

/* sched_cache.c (scheduler thread; under mu unless said): */
/* The next queued job that may start and its slot (*at: the link to it in the queue), -1 none: jobs
 * pinned to a busy slot wait and are overtaken; any other job without a free slot stops the search. */
int cs_sched_next_job(struct cs_sched *s, struct job ***at);
/* Frees idle slots' cached cells, oldest first, all but slot keep (-1: all); true when any went. */
bool cs_sched_cache_evict(struct cs_sched *s, int keep);
/* Erased slots: their cells go (before any assignment). */
void cs_sched_cache_drops(struct cs_sched *s);
/* Erased slots' cells go, then queued jobs take free slots (their pin, their cache, admission:
 * admit.c, idle caches given up when a job would not be admitted otherwise). */
void cs_sched_assign_queued(struct cs_sched *s);
/* Slot i (just assigned to a job feeding `feed`): the longest start of feed its cache holds, at most
 * n_feed - 1; the cells past it are removed (all of them when 0). */
int cs_sched_cache_take(struct cs_sched *s, int i, const int32_t *feed, int n_feed);
/* Slot i's request ended well: its tokens become the slot's cache and its cells stay (its core
 * slot ends without removing them). False when they cannot be kept (the caller frees them). */
bool cs_sched_cache_keep(struct cs_sched *s, int i);
/* mu not held: slot i's generation filled its context (shift_pending): drop tokens after n_keep and
 * recompute the rest at their new positions (the prefill chunks feed them, then decoding resumes). */
void cs_sched_ctx_shift(struct cs_sched *s, int i);

/* sched_spec.c: */
/* Why job j decodes without speculation, NULL when it may speculate. */
const char *cs_sched_spec_off_reason(const struct cs_sched *s, const struct job *j);
/* spec_core_prefill: slot i's request, which may speculate and whose chunks do not keep taps yet,
 * is fed from position 0 with them (cells shared by prefix reuse, a cache or a context shift go). */
void cs_sched_spec_taps(struct cs_sched *s, int i);
/* Slot i's prompt is in and its first token tok was emitted: it decodes in the core from here on
 * (with drafts when it may speculate). False when the request ended (the core refused the slot). */
bool cs_sched_spec_attach(struct cs_sched *s, int i, int32_t tok);
/* Before the step: n_left[i] (tokens slot i may still emit) for the decoding slots, in[i] whether
 * slot i decodes this step, was_on[i] its speculation state. Returns how many decode. */
int cs_sched_spec_plan(struct cs_sched *s, int32_t *n_left, bool *in, bool *was_on);
/* After the step: slot i (in the step, not refused) streams the tokens the core emitted for it. */
void cs_sched_spec_emit(struct cs_sched *s, int i, bool was_on);

/* Frees a job that no slot or queue holds any more (its copies, sampler, text state). */
void cs_sched_job_free(struct job *j);

#endif
