/* admit.c: the scheduler's KV admission and preemption (see sched_impl.h).
 *
 * Admission: with a shared cache (unified KV, where the slots' contexts add
 * up to more than the cache), a queued request takes a free slot only when
 * the free cells hold its prompt (or a preempted request's history), what
 * the requests admitted before it still have to prefill, and a reserve for
 * every running request: one cell for each step its prefill
 * takes (prefill_max tokens a step while others decode) and one more, the
 * token each running request emits per step meanwhile. Drafts need no
 * reserve: the speculative core cuts them to the free cells (down to none)
 * before any request is refused a cell. The queue's head is never
 * overtaken. Alone, a request is always admitted (it fits a slot's context:
 * cs_sched_submit refuses what never could).
 *
 * Preemption: when the cache refuses a sequence in a step (after the
 * speculative core has already retried drafted slots without their
 * drafts), the youngest running request is preempted: its KV cells and its
 * core slot are freed, its history (prompt + emitted tokens) kept, and it
 * goes back to the head of the queue. Admitted again, it prefills that
 * history (prefix reuse applies), then decodes on from its last token: no
 * token is sampled anew, so its stream continues where it stopped (greedy
 * output is identical to an unpreempted run; the sampler's state stays with
 * the job). The others retry in the next step. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/log.h"
#include "daemon/sched_impl.h"

bool cs_sched_admit_ok(struct cs_sched *s, const struct job *j)
{
    if (s->busy == 0)
        return true;
    uint64_t total = s->st.kv_cells_total;
    if ((uint64_t)s->slot_ctx * (uint64_t)s->p.n_slots <= total)
        return true; /* every slot's context fits at once: nothing to share */
    uint32_t used = 0;
    if (clspec_kv_usage(s->e, &used, NULL, NULL, 0) != CLSPEC_OK)
        return true;
    uint64_t n_feed = (uint64_t)cs_job_n_feed(j);
    uint64_t per_step = (uint64_t)CS_MAX(s->prefill_max, 1);
    uint64_t reserve = (n_feed + per_step - 1) / per_step + 1; /* cells per running request */
    uint64_t pending = 0; /* cells the requests admitted but not yet prefilled will take */
    for (int i = 0; i < s->p.n_slots; i++) {
        const struct slot *sl = &s->slots[i];
        if (sl->job && !s->sp->slots[i].active)
            pending += (uint64_t)CS_MAX(cs_job_n_feed(sl->job) - sl->n_fed, 0) + 1;
    }
    uint64_t need = n_feed + 1 + pending + reserve * (uint64_t)s->busy;
    return (uint64_t)used + need <= total;
}

/* Under mu: the youngest running request's slot, -1 none. */
static int youngest(const struct cs_sched *s, int *n_running)
{
    int v = -1;
    *n_running = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        const struct job *j = s->slots[i].job;
        if (!j || atomic_load(&j->cancelled))
            continue;
        (*n_running)++;
        if (v < 0 || j->admit_no > s->slots[v].job->admit_no)
            v = i;
    }
    return v;
}

/* Slot i's history to keep (prompt + emitted tokens, the last not yet in
 * the KV): the core's while it decodes; none while it still prefills (it
 * restarts from its prompt). Returns false without memory. */
static bool keep_history(struct cs_sched *s, int i, struct job *j)
{
    const struct cs_spec_slot *ss = &s->sp->slots[i];
    free(j->resume);
    j->resume = NULL;
    j->n_resume = 0;
    if (!ss->active)
        return true;
    j->resume = malloc((size_t)ss->n_hist * sizeof *j->resume);
    if (!j->resume)
        return false;
    memcpy(j->resume, ss->hist, (size_t)ss->n_hist * sizeof *j->resume);
    j->n_resume = ss->n_hist;
    j->n_gen_saved = s->slots[i].n_gen;
    return true;
}

bool cs_sched_preempt_youngest(struct cs_sched *s)
{
    pthread_mutex_lock(&s->mu);
    int n_running = 0;
    int v = youngest(s, &n_running);
    if (v < 0 || n_running < 2) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    struct slot *sl = &s->slots[v];
    struct job *j = sl->job;
    struct job *prior = j->resume ? j : NULL; /* a resumed job still prefilling keeps its history */
    if (!prior && !keep_history(s, v, j)) {
        pthread_mutex_unlock(&s->mu);
        return false; /* no memory for its history: the refused request fails instead */
    }
    cs_spec_slot_end(s->sp, v);
    clspec_seq_rm(s->e, v, 0, -1, NULL, 0);
    int n_gen = sl->n_gen;
    memset(sl, 0, sizeof *sl);
    sl->logit_row = -1;
    s->busy--;
    j->n_cached = 0;
    j->n_preempted++;
    j->next = s->q_head; /* first in line */
    s->q_head = j;
    if (!s->q_tail)
        s->q_tail = j;
    s->q_n++;
    s->st.preemptions++;
    pthread_mutex_unlock(&s->mu);
    cs_log(CS_LOG_INFO, j->r.id,
           "preempted (KV cache full): slot %d freed after %d token(s); it resumes by recomputing %d token(s)", v,
           n_gen, j->resume ? j->n_resume - 1 : j->n_prompt);
    return true;
}

bool cs_sched_resume_attach(struct cs_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    const char *off = cs_sched_spec_off_reason(s, j);
    /* a speculator that reads the target's states of the prompt sees them when the chunks kept its taps */
    bool speculate = !off && (!s->p.spec_core_prefill || sl->taps);
    char err[CLSPEC_ERRLEN];
    int rc = cs_spec_slot_begin_cached(s->sp, i, j->resume, j->n_resume, sl->n_fed, j->smp, speculate, err,
                                       sizeof err);
    if (rc < 0) {
        cs_spec_slot_end(s->sp, i);
        char msg[CLSPEC_ERRLEN + 48];
        snprintf(msg, sizeof msg, "decoding could not resume: %s", err);
        cs_sched_finish(s, i, NULL, rc, msg);
        return false;
    }
    sl->n_gen = j->n_gen_saved;
    s->sp->slots[i].n_max_req = j->r.spec_n_max;
    free(j->resume);
    j->resume = NULL;
    j->n_resume = 0;
    cs_log(CS_LOG_INFO, j->r.id, "resumed on slot %d at position %d, speculation %s", i, sl->n_fed,
           s->sp->slots[i].on ? "on" : "off");
    return true;
}
