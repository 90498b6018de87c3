/* sched_spec.c: the scheduler's decoding half (see sched.c for the queue,
 * the prompt chunks and the loop). Every decoding slot advances through the
 * speculative core (cs_spec_step_extra): a slot whose request may not
 * speculate (no speculator configured, its `speculative` flag, logprobs) is
 * a slot without drafts, so there is one decode path. The core owns each
 * decoding slot's history and KV cells; the scheduler keeps only the
 * request and its prompt progress (struct slot).
 *
 * A request is prefilled by the scheduler's chunks (with prefix reuse) and
 * its first token sampled from the last chunk's logits; then its slot is
 * handed to the core (cs_spec_slot_begin_cached: the prompt is already in
 * the KV). For speculators that read the target's states of the prompt
 * (spec_core_prefill) the chunks run from position 0 (no prefix reuse) and
 * keep the target's taps of their rows (cs_spec_extra.taps), which the
 * core hands to the speculator at slot_begin: their prompts ride in the
 * step's one forward like any other. Tokens a step emits go through the same
 * emit path (stop strings, max_tokens, context end) one by one, with their
 * logits rows; a request that ends inside them ends its core slot
 * (cs_spec_slot_end frees its cells and tells the plugin). Every slot logs
 * whether speculation is on, and why not. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/log.h"
#include "daemon/sched_impl.h"

/* Why job j decodes without speculation, NULL when it may speculate. */
const char *cs_sched_spec_off_reason(const struct cs_sched *s, const struct job *j)
{
    if (!s->sp->pl)
        return "no speculator configured ([speculator] type = none)";
    if (!j->r.speculative)
        return "the request says \"speculative\": false";
    if (j->r.prefill_only)
        return "a slot restore (prefill only)";
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
        cs_log(CS_LOG_WARN, j->r.id, "slot %d: speculation off (%s)", i,
               s->sp->slots[i].off_why[0] ? s->sp->slots[i].off_why : "no reason given");
}

void cs_sched_spec_taps(struct cs_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    if (!j || sl->taps || s->sp->slots[i].active || atomic_load(&j->cancelled) || cs_sched_spec_off_reason(s, j))
        return;
    if (sl->n_fed > 0) { /* the speculator never saw the taps of shared or cached cells */
        clspec_seq_rm(s->e, i, 0, -1, NULL, 0);
        sl->n_fed = 0;
        if (!j->resume)
            j->n_cached = 0;
    }
    sl->taps = true;
}

bool cs_sched_spec_attach(struct cs_sched *s, int i, int32_t tok)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    const char *off = cs_sched_spec_off_reason(s, j);
    if (off)
        cs_log(CS_LOG_INFO, j->r.id, "slot %d: speculation off (%s)", i, off);
    char err[CLSPEC_ERRLEN];
    int32_t *hist = malloc(((size_t)j->n_prompt + 1) * sizeof *hist);
    int rc = CLSPEC_E_NOMEM;
    if (hist) { /* the KV holds the prompt (n_fed cells); tok is the next input */
        memcpy(hist, j->prompt, (size_t)j->n_prompt * sizeof *hist);
        hist[j->n_prompt] = tok;
        rc = cs_spec_slot_begin_rows(s->sp, i, hist, j->n_prompt + 1, sl->n_fed, j->img_rows, j->smp, !off, err,
                                     sizeof err);
        free(hist);
    } else {
        snprintf(err, sizeof err, "out of memory");
    }
    if (rc < 0) { /* nothing half set up: the request ends here */
        cs_spec_slot_end(s->sp, i);
        char msg[CLSPEC_ERRLEN + 48];
        snprintf(msg, sizeof msg, "decoding could not start: %s", err);
        cs_sched_finish(s, i, NULL, rc, msg);
        return false;
    }
    s->sp->slots[i].n_max_req = j->r.spec_n_max;
    if (!off)
        spec_log_on(s, i);
    return true;
}

int cs_sched_spec_plan(struct cs_sched *s, int32_t *n_left, bool *in, bool *was_on)
{
    int n_in = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        n_left[i] = 0;
        in[i] = was_on[i] = false;
        if (!sl->job || !s->sp->slots[i].active || atomic_load(&sl->job->cancelled))
            continue;
        /* each token emitted needs the cell of the one before; prompt + output stop at the slot's
         * context (cs_sched_emit), so the history (n_past + 1 tokens) grows to slot_ctx at most */
        int left = s->slot_ctx - 1 - cs_sched_n_past(s, i);
        if (sl->job->max_tokens > 0)
            left = CS_MIN(left, sl->job->max_tokens - sl->n_gen);
        n_left[i] = CS_MAX(left, 0);
        in[i] = n_left[i] > 0;
        was_on[i] = s->sp->slots[i].on;
        n_in += in[i];
    }
    return n_in;
}

void cs_sched_spec_emit(struct cs_sched *s, int i, bool was_on)
{
    const struct cs_spec_slot *ss = &s->sp->slots[i];
    if (was_on && !ss->on)
        cs_log(CS_LOG_WARN, s->slots[i].job->r.id,
               "slot %d: speculation off (the speculator failed: %s; decoding goes on without drafts)", i,
               ss->off_why[0] ? ss->off_why : "no reason given");
    int n_out = ss->n_out;
    for (int t = 0; t < n_out; t++)
        if (!cs_sched_emit(s, i, ss->out[t], cs_spec_out_logits(s->sp, i, t)))
            break; /* finished: the slot and its core state are gone */
}
