/* sched_spec.c: the scheduler's slots that decode through the speculative
 * core (see sched.c for the queue, batching and the loop).
 *
 * Speculative decoding (params.spec): a request that may speculate (its
 * `speculative` flag, no logprobs, a speculator configured) is prefilled
 * and gets its first token exactly as above; then its slot is handed to the
 * core (cs_spec_slot_begin_cached: the prompt is already in the KV) and
 * from there on decodes through cs_spec_step, which verifies the drafts of
 * all such slots in one forward, before the plain batch of the other slots
 * (decode rows and prompt chunks). Tokens a spec step emits go through the
 * same emit path (stop strings, max_tokens, context end) one by one; a
 * request that ends inside them ends its spec slot (cs_spec_slot_end frees
 * its cells and tells the plugin). Every slot logs whether speculation is
 * on, and why not. */
#include <config.h> /* the build's; "config.h" here would be src/daemon/config.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "daemon/log.h"
#include "daemon/sched_impl.h"

/* Why job j decodes without speculation, NULL when it may speculate. */
const char *cs_sched_spec_off_reason(const struct cs_sched *s, const struct job *j)
{
    if (!s->sp || !s->sp->pl)
        return "no speculator configured ([speculator] type = none)";
    if (!j->r.speculative)
        return "the request says \"speculative\": false";
    if (j->r.logprobs || j->r.top_logprobs > 0)
        return "the request asks for logprobs";
    return NULL;
}

static void spec_log_on(struct cs_sched *s, int i)
{
    const struct job *j = s->slots[i].job;
    if (s->sp->slots[i].on)
        cs_log(CS_LOG_INFO, j->r.id, "slot %d: speculation on (%s, n_max %d)", i, s->sp->pl->vt.name,
               (int)s->sp->p.n_max);
    else
        cs_log(CS_LOG_WARN, j->r.id, "slot %d: speculation off (the speculator's slot_begin failed: %s)", i,
               s->sp->slots[i].off_why[0] ? s->sp->slots[i].off_why : "no reason given");
}

/* spec_core_prefill: slot i's request (just assigned; the cells prefix
 * reuse shared are in) is prefilled by the core, whose step then gives its
 * first token. Returns false when the request ended (KV full, ...). */
bool cs_sched_spec_begin(struct cs_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    char err[CLSPEC_ERRLEN];
    if (sl->n_past > 0) { /* taps are captured by the core's forwards only: no shared prefix, all of it */
        cs_kv_seq_rm(s->e->ctx->kv, i, 0, -1, NULL, 0);
        sl->n_past = 0;
        sl->n_fed = 0;
        j->n_cached = 0;
    }
    int rc = cs_spec_slot_begin_cached(s->sp, i, j->prompt, j->n_prompt, 0, j->smp, true, err, sizeof err);
    if (rc < 0) {
        cs_spec_slot_end(s->sp, i);
        char msg[CLSPEC_ERRLEN + 48];
        snprintf(msg, sizeof msg, "prefill failed: %s", err);
        cs_sched_finish(s, i, NULL, rc, msg);
        return false;
    }
    sl->n_past = j->n_prompt - 1; /* the last prompt token is the first step's input */
    sl->n_fed = j->n_prompt;
    sl->decoding = true;
    sl->spec = true;
    spec_log_on(s, i);
    return true;
}

void cs_sched_spec_attach(struct cs_sched *s, int i, int32_t tok)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    const char *off = cs_sched_spec_off_reason(s, j);
    if (off) {
        cs_log(CS_LOG_INFO, j->r.id, "slot %d: speculation off (%s)", i, off);
        return;
    }
    char err[CLSPEC_ERRLEN];
    int32_t *hist = malloc(((size_t)j->n_prompt + 1) * sizeof *hist);
    int rc = CLSPEC_E_NOMEM;
    if (hist) { /* the KV holds the prompt (n_past cells); tok is the next input */
        memcpy(hist, j->prompt, (size_t)j->n_prompt * sizeof *hist);
        hist[j->n_prompt] = tok;
        rc = cs_spec_slot_begin_cached(s->sp, i, hist, j->n_prompt + 1, sl->n_past, j->smp, true, err,
                                       sizeof err);
        free(hist);
    } else {
        snprintf(err, sizeof err, "out of memory");
    }
    if (rc < 0) { /* the core refused the slot: it decodes without drafts, nothing half set up */
        cs_spec_slot_end(s->sp, i);
        cs_log(CS_LOG_WARN, j->r.id, "slot %d: speculation off (the speculative core refused the slot: %s)", i, err);
        return;
    }
    sl->spec = true;
    spec_log_on(s, i);
}

/* One speculative step for the slots decoding through the core. */
void cs_sched_spec_step(struct cs_sched *s)
{
    int32_t n_left[CS_MAX_SEQ] = {0};
    bool in[CS_MAX_SEQ] = {false}, was_on[CS_MAX_SEQ] = {false};
    int n_in = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->job || !sl->spec || atomic_load(&sl->job->cancelled))
            continue;
        int left = s->slot_ctx - sl->n_past; /* each token emitted needs the cell of the one before it */
        if (sl->job->max_tokens > 0)
            left = CS_MIN(left, sl->job->max_tokens - sl->n_gen);
        n_left[i] = CS_MAX(left, 0);
        in[i] = n_left[i] > 0;
        was_on[i] = s->sp->slots[i].on;
        n_in += in[i];
    }
    if (n_in == 0)
        return;
    char err[CLSPEC_ERRLEN];
    int rc = cs_spec_step(s->sp, n_left, err, sizeof err);
    int victim = -1; /* as in step(): of the slots with no room at all, only the youngest fails */
    for (int i = 0; rc == CLSPEC_OK && i < s->p.n_slots; i++)
        if (in[i] && s->sp->slots[i].rc == CLSPEC_E_KV_FULL &&
            (victim < 0 || s->slots[i].job->admit_no > s->slots[victim].job->admit_no))
            victim = i;
    for (int i = 0; i < s->p.n_slots; i++) {
        if (!in[i])
            continue;
        struct slot *sl = &s->slots[i];
        const struct cs_spec_slot *ss = &s->sp->slots[i];
        if (rc < 0) {
            char msg[CLSPEC_ERRLEN + 48];
            snprintf(msg, sizeof msg, "speculative step failed: %s", err);
            cs_sched_finish(s, i, NULL, rc, msg);
            continue;
        }
        if (ss->rc == CLSPEC_E_KV_FULL) {
            if (i != victim)
                continue; /* retried next step */
            char msg[256];
            snprintf(msg, sizeof msg,
                     "KV cache full: slot %d could not store 1 more token at position %d (n_ctx %u shared by %d "
                     "slots); retry later or use a shorter request",
                     i, sl->n_past, s->e->p.n_ctx, s->p.n_slots);
            cs_sched_finish(s, i, NULL, CLSPEC_E_KV_FULL, msg);
            continue;
        }
        if (ss->rc < 0) {
            cs_sched_finish(s, i, NULL, ss->rc, "the speculative step refused the sequence");
            continue;
        }
        if (was_on[i] && !ss->on)
            cs_log(CS_LOG_WARN, sl->job->r.id, "slot %d: speculation off (the speculator failed; decoding goes on "
                                               "without drafts)", i);
        int n_out = ss->n_out;
        for (int t = 0; t < n_out; t++) {
            sl->n_past++; /* the cell of the token before this one */
            if (!cs_sched_emit(s, i, ss->out[t], NULL))
                break; /* finished: the slot and its spec state are gone */
        }
    }
}

