/* sched.h: the daemon's scheduler: `parallel` slots decoded together over one
 * engine (continuous batching: a new request joins the running batch), a
 * bounded FIFO of waiting requests, cancellation, drain. One thread runs the
 * loop; request callbacks run on it. It reaches the engine only through the
 * engine door (clspec.h). The caller owns struct cs_sched (cs_sched_new /
 * cs_sched_free) and keeps the engine alive until freed. */
#ifndef CS_DAEMON_SCHED_H
#define CS_DAEMON_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"
#include "engine/sampler.h"

struct cs_sched;
struct cs_spec;

struct cs_sched_params {
    int n_slots;             /* `parallel`: sequences decoded together (1..64, <= engine n_seq_max) */
    int queue_max;           /* requests that may wait for a slot; beyond: CLSPEC_E_BUSY (HTTP 429) */
    bool truncate_prompt;    /* a prompt longer than a slot's context keeps its end instead of being refused */
    int max_tokens_default;  /* a request's max_tokens when it gives none (<= 0: until EOS or context) */
    int max_tokens_limit;    /* cap on max_tokens (0 = none) */
    int prefill_max;         /* prompt tokens fed per step, all slots together, while some slot is
                              * generating (0: the engine's n_ubatch); with none generating a step
                              * takes up to the engine's n_batch */
    /* decoding: every slot decodes through a speculative core (one decode path) */
    struct cs_spec *spec;    /* borrowed, over the same engine with n_slots slots (slot i = sequence i);
                              * requests with speculative = true and no logprobs get drafts from its
                              * speculator once their prompt is in, the others decode without drafts.
                              * NULL: the scheduler makes (and frees) a core without a speculator */
    bool spec_core_prefill;  /* such requests' chunks run from position 0 (no prefix reuse) and keep the
                              * target's taps for the speculator (cs_spec_extra.taps), for speculators
                              * that read the target's hidden states of the prompt (taps, KV injection) */
    bool images;             /* prompts may hold image rows (a vision projector is loaded): the prompt
                              * batch keeps room for their inputs (n_batch rows of n_embd floats) */
    /* appended for llama-server's slots (sched_cache.c) */
    bool keep_cache;         /* an idle slot keeps its cells and their tokens (prompt + output but the last
                              * token); the next request on that slot reuses the longest common start
                              * (llama-server's prompt cache). Idle slots' cells are given up, oldest first,
                              * when a request needs them. Ignored for hybrid (recurrent) targets.
                              * false: a slot's cells go with its request */
    bool ctx_shift;          /* a generation that fills its slot's context goes on after dropping tokens
                              * (cs_req n_keep / n_discard) and recomputing the kept tail at its new
                              * positions; refused by cs_sched_new for hybrid (recurrent) targets */
};

/* A slot's context (cells its sequence may hold): the engine's n_ctx with a
 * unified KV cache (shared: the slots compete for cells, and a sequence that
 * finds none ends with CS_EV_ERROR CLSPEC_E_KV_FULL), n_ctx / n_seq_max when
 * the cache is partitioned. A prompt must leave one cell free (n_prompt <
 * slot context); truncate_prompt keeps its first token when it is BOS and its
 * last (slot context / 2) - 1 tokens. Generation ends with "length" when the
 * slot's context is full. When several sequences find the cache full in one
 * step, only the most recently admitted request fails; the others retry.
 * Text: token pieces as detokenization gives them; when the prompt holds only
 * control tokens (BOS alone) the first piece's SentencePiece leading space is
 * dropped. */

#define CS_MAX_STOP 8
#define CS_MAX_TOP_LOGPROBS 20

struct cs_req {
    const int32_t *prompt;   /* prompt tokens (BOS included when wanted), copied by submit; negative ids are
                              * image rows (src/daemon/media.h placeholders) */
    int n_prompt;
    const float *image_rows; /* (n_image_rows, n_embd) the inputs of the prompt's negative-id rows, in prompt
                              * order; copied by submit. NULL when the prompt has no image */
    int n_image_rows;
    int max_tokens;          /* 0: params' default; > limit: refused */
    struct cs_sampler_params sp;
    const char *stop[CS_MAX_STOP]; /* stop strings (copied), n_stop used */
    int n_stop;
    bool logprobs;           /* report each token's log-probability: log-softmax of the model's logits
                              * (temperature 1, before penalties and filters), whatever sp says */
    int top_logprobs;        /* and that many alternatives (0..CS_MAX_TOP_LOGPROBS) */
    bool post_sampling;      /* logprobs and alternatives from the distribution the sampler draws from (its
                              * chain applied: bias, penalties, filters, temperature) instead of the model's;
                              * alternatives with probability 0 are left out */
    bool ignore_eos;
    bool speculative;        /* speculate when the server has a speculator (default true); false: this
                              * request decodes without drafts (its slot logs why) */
    int spec_n_max;          /* this request's cap on the draft length (0 = the server's n_max) */
    char id[40];             /* request id for logs ("req-12") */
    const char *grammar;     /* GBNF the output follows (compiled by submit, not kept), NULL: none */
    const int32_t *bias_id;  /* (n_bias) logit bias: token ids and their biases (-INFINITY: never), */
    const float *bias;       /* copied into the request's sampler by submit */
    int n_bias;
    /* appended for llama-server's slots and context shift */
    int pin_slot;            /* 0: any slot; k > 0: runs on slot k - 1 only (waits for it; 1..n_slots) */
    bool prefill_only;       /* computes the prompt into the slot's cells and ends ("stop", no token): with
                              * keep_cache, a slot restore; the cells stay as the slot's cache */
    int n_keep;              /* ctx_shift: prompt tokens never dropped (after a BOS; -1: the whole prompt) */
    int n_discard;           /* ctx_shift: tokens dropped per shift (0: half of those after n_keep) */
    bool return_progress;    /* CS_EV_PROGRESS events while the prompt is computed */
};

struct cs_top_logprob {
    int32_t token;
    float logprob;
    const char *text;        /* token piece (valid during the callback) */
    size_t len;
};

struct cs_req_usage {
    int prompt_tokens;
    int completion_tokens;
    int cached_tokens;       /* prompt tokens reused from the KV cache (prefix reuse) */
    double queue_ms;         /* submit -> slot assigned */
    double prefill_ms;       /* slot assigned -> first token sampled */
    double decode_ms;        /* first token -> last token */
    /* speculative decoding (all 0 when the request did not speculate) */
    bool speculative;        /* the request decoded with a speculator on (at its start) */
    int spec_steps;          /* verification steps */
    int draft_n;             /* draft tokens verified */
    int draft_accepted;      /* of them accepted */
    int spec_emitted;        /* tokens the steps emitted (accepted drafts + the target's own) */
    const char *spec_controller; /* "cost" | "acceptance": how draft lengths were chosen (NULL: no speculation) */
    int draft_asked;         /* draft tokens asked of the speculator (the chosen lengths, summed) */
    int spec_steps_plain;    /* steps the cost-aware controller chose to decode without a draft */
    int id_slot;             /* the slot the request ran on (-1: none) */
    bool ctx_full;           /* the generation reached its slot's context: it ended there ("length") or,
                              * with ctx_shift, dropped tokens to go on (n_shifted) */
    int n_shifted;           /* tokens dropped by context shifts */
    double syncs_per_step;   /* blocking host syncs per scheduler step (drafting included) while it decoded:
                              * of the whole step, which every decoding slot shares (0: no step) */
};

enum cs_ev_type {
    CS_EV_TOKEN = 0,         /* new text (may be empty while a stop string or UTF-8 char is pending) */
    CS_EV_DONE = 1,          /* last event of a request that ended normally */
    CS_EV_ERROR = 2,         /* last event of a request that failed (e.g. KV cache full) */
    CS_EV_PROGRESS = 3,      /* return_progress: the prompt computed so far (progress below), once when its
                              * slot starts and after each chunk of it */
};

struct cs_req_event {
    enum cs_ev_type type;
    /* CS_EV_TOKEN: text is complete UTF-8, with anything that could still
     * become a stop string held back (released later or dropped at a stop). */
    const char *text;
    size_t len;
    int32_t token;           /* the sampled token; -1: no new token, text held back so far is released
                              * because the request ends (EOS/EOG, which itself gets no TOKEN event) */
    float logprob;           /* its log-probability (when logprobs) */
    const struct cs_top_logprob *top; /* n_top alternatives (when top_logprobs > 0) */
    int n_top;
    /* CS_EV_DONE */
    const char *finish_reason; /* "stop" (EOS or stop string) or "length" */
    struct cs_req_usage usage;
    /* CS_EV_ERROR */
    int status;              /* enum clspec_status */
    const char *message;
    /* CS_EV_PROGRESS (llama-server's prompt_progress): prompt tokens in all, reused from the cache,
     * computed so far (cached ones included); ms since the slot started */
    struct { int total, cache, processed; double time_ms; } progress;
};

/* Called on the scheduler thread; must not call cs_sched_* and should be
 * quick (copy the text into the connection's queue). After CS_EV_DONE or
 * CS_EV_ERROR no further call is made for that request. */
typedef void (*cs_req_cb)(void *user, const struct cs_req_event *ev);

int cs_sched_new(clspec_engine *e, const struct cs_sched_params *p, struct cs_sched **out, char *err,
                 size_t errlen);
/* Stops the loop (cancelling what still runs, without callbacks) and frees. */
void cs_sched_free(struct cs_sched *s);

/* Queues a request. Errors (no callback is ever made then):
 * CLSPEC_E_BUSY queue full; CLSPEC_E_CONTEXT prompt longer than a slot's
 * context (when not truncating); CLSPEC_E_RANGE max_tokens over the limit;
 * CLSPEC_E_INVAL bad fields; CLSPEC_E_SHUTDOWN draining. *id_out identifies
 * the request for cs_sched_cancel. */
int cs_sched_submit(struct cs_sched *s, const struct cs_req *r, cs_req_cb cb, void *user, uint64_t *id_out,
                    char *err, size_t errlen);
/* Cancels a queued or running request (client gone): its slot is freed and
 * its KV cells removed. When cancel returns, no callback for id is running
 * and none will follow. Unknown or finished ids are ignored. */
void cs_sched_cancel(struct cs_sched *s, uint64_t id);

/* Drain: refuse new requests (CLSPEC_E_SHUTDOWN), wait up to timeout_s for
 * the running and queued ones, then cancel the rest (their callbacks get
 * CS_EV_ERROR with CLSPEC_E_SHUTDOWN). Returns the number cancelled. */
int cs_sched_drain(struct cs_sched *s, double timeout_s);

/* requests_total: accepted by submit; requests_rejected: refused by submit;
 * cancelled: cs_sched_cancel or drain; failed: ended with CS_EV_ERROR
 * otherwise. kv_cells_used: cells the slots' sequences hold. */
struct cs_sched_stats {
    uint64_t requests_total, requests_ok, requests_failed, requests_cancelled, requests_rejected;
    uint64_t prompt_tokens_total, completion_tokens_total, cached_tokens_total;
    double prefill_seconds_total, decode_seconds_total; /* summed over requests */
    double prefill_tps_last, decode_tps_last;           /* of the last finished request */
    int queue_depth, slots_busy, n_slots;
    uint64_t kv_cells_used, kv_cells_total;
    /* speculative decoding, summed over finished requests that speculated */
    const char *spec_name;   /* the speculator's name (its type), NULL: none configured */
    uint64_t spec_requests, spec_steps, spec_drafted, spec_accepted, spec_emitted;
    uint64_t spec_asked, spec_steps_plain; /* chosen draft lengths summed; steps the controller kept plain */
    uint64_t preemptions;    /* running requests preempted when the KV cache filled (resumed later) */
    uint64_t spec_kv_shrinks; /* decoding steps whose draft was shortened or left out for want of free KV cells */
    /* appended: the scheduler's forwards since start (all requests, speculating or not) */
    uint64_t spec_forwards;  /* scheduler steps that ran the target's forward (the core's step calls) */
    uint64_t spec_syncs;     /* blocking host syncs in them, drafting included (syncs per step = / spec_forwards) */
    uint64_t spec_syncs_draft; /* of them in the speculator's draft calls */
};
void cs_sched_get_stats(struct cs_sched *s, struct cs_sched_stats *st);

struct cs_slot_info {
    int id;
    bool busy;
    char req_id[40];
    int n_prompt, n_generated;
    int32_t n_past;          /* cells the slot's sequence holds */
    bool speculative;        /* speculation on for this slot's request now */
};
/* Fills up to cap entries, returns the slot count. */
int cs_sched_get_slots(struct cs_sched *s, struct cs_slot_info *out, int cap);

/* keep_cache: a copy of idle slot id's cached tokens (*tokens malloc'd, NULL when *n = 0).
 * CLSPEC_E_RANGE no such slot; CLSPEC_E_BUSY the slot runs a request; CLSPEC_E_INVAL no keep_cache. */
int cs_sched_slot_tokens(struct cs_sched *s, int id, int32_t **tokens, int *n, char *err, size_t errlen);
/* Drops idle slot id's cached cells (*n_erased: how many tokens they held). Errors as above. */
int cs_sched_slot_erase(struct cs_sched *s, int id, int *n_erased, char *err, size_t errlen);

#endif
