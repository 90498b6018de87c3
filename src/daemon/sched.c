/* sched.c: see sched.h.
 *
 * Threading: one scheduler thread runs loop(). `mu` guards the queue, the
 * slots' job pointers, the flags, the stats and the published slot info;
 * the scheduler thread is the only one that touches the engine (forward,
 * KV cells, samplers, textouts), and it runs forwards and callbacks without
 * holding `mu`. Callbacks run under `cb_mu` and only while the job's
 * `cancelled` flag is clear; cs_sched_cancel sets the flag under `mu`, waits
 * until the scheduler thread has freed the slot (and its KV cells), then
 * takes and drops `cb_mu`: no callback for that id runs after it returns.
 *
 * Batching (one forward per step, slot i = sequence i; the core adds one
 * only to retry a drafted slot the cache refused): every decoding slot advances through the
 * speculative core (sched_spec.c; a slot that may not speculate has no
 * draft), and the prompt chunks of slots still in prefill ride in the
 * core's forward as extra rows (cs_spec_step_extra):
 * oldest admission first, at most prefill_max tokens in all while any slot
 * decodes (so streams keep flowing), up to n_batch when none does. Only the
 * last prompt row of a slot asks for logits. A sequence the KV cache
 * refuses (CLSPEC_E_KV_FULL) ends with CS_EV_ERROR; when several are
 * refused in one step only the youngest ends and the others retry
 * (kv_full_victim, the one place of that policy).
 * Prefix reuse (slot_assign, sched_cache.c): a new request shares the cells of the longest
 * prompt start another running sequence holds and prefills only the rest. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "daemon/log.h"
#include "daemon/sched.h"
#include "daemon/textout.h"
#include "spec/spec.h"
#include "base/strbuf.h"

#include "engine/api.h"
#include "daemon/sched_impl.h"

/* ---------------------------------------------------------------- jobs */

void cs_sched_job_free(struct job *j)
{
    if (!j)
        return;
    free(j->prompt);
    free(j->img_rows);
    free(j->img_at);
    free(j->resume);
    for (int i = 0; i < CS_MAX_STOP; i++)
        free(j->stop_copy[i]);
    clspec_sampler_free(j->smp);
    cs_sampler_free(j->shadow);
    free(j->pp);
    cs_textout_free(j->to);
    free(j);
}

static void deliver(struct cs_sched *s, struct job *j, const struct cs_req_event *ev)
{
    pthread_mutex_lock(&s->cb_mu);
    if (!atomic_load(&j->cancelled))
        j->cb(j->user, ev);
    pthread_mutex_unlock(&s->cb_mu);
}

static void fill_usage(const struct job *j, const struct slot *sl, double t_end, struct cs_req_usage *u)
{
    memset(u, 0, sizeof *u);
    u->prompt_tokens = j->n_prompt;
    u->completion_tokens = sl ? sl->n_gen : 0;
    u->cached_tokens = j->n_cached;
    u->id_slot = -1;
    u->ctx_full = j->ctx_full;
    u->n_shifted = j->n_shifted;
    double ts = j->t_start > 0 ? j->t_start : t_end;
    u->queue_ms = (ts - j->t_submit) * 1e3;
    if (j->t_first > 0) {
        u->prefill_ms = (j->t_first - ts) * 1e3;
        u->decode_ms = (t_end - j->t_first) * 1e3;
    } else if (j->t_start > 0) {
        u->prefill_ms = (t_end - ts) * 1e3;
    }
}

/* Under mu, scheduler thread: frees slot i (its KV cells too, unless keep and they become its
 * cache: sched_cache.c) and its job. */
/* Under mu: slot i's cells go (or stay as its cache: keep and [slots]
 * keep_cache), before its request hears it ended, so a client that has the
 * answer sees the cells freed. */
static void slot_drop_cells(struct cs_sched *s, int i, bool keep)
{
    if (!keep || !cs_sched_cache_keep(s, i)) {
        cs_spec_slot_end(s->sp, i); /* the plugin's slot state and the history go too (no-op when idle) */
        clspec_seq_rm(s->e, i, 0, -1, NULL, 0);
        s->cache[i].n = 0;
    }
}

/* Under mu: slot i is free again (its cells dropped first unless cells_done). */
static void slot_release_cells(struct cs_sched *s, int i, bool keep, bool cells_done)
{
    struct slot *sl = &s->slots[i];
    if (!cells_done)
        slot_drop_cells(s, i, keep);
    cs_sched_job_free(sl->job);
    memset(sl, 0, sizeof *sl);
    sl->logit_row = -1;
    s->busy--;
    pthread_cond_broadcast(&s->cv_done);
}

/* Under mu: the published copy of the slots and the KV use. */
static void publish(struct cs_sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        struct cs_slot_info *in = &s->info[i];
        in->id = i;
        in->busy = sl->job != NULL;
        if (sl->job)
            snprintf(in->req_id, sizeof in->req_id, "%s", sl->job->r.id);
        else
            in->req_id[0] = '\0';
        in->n_prompt = sl->job ? sl->job->n_prompt : 0;
        in->n_generated = sl->n_gen;
        in->n_past = sl->job ? cs_sched_n_past(s, i) : s->cache[i].n; /* idle: its cached cells (keep_cache) */
        in->speculative = sl->job && s->sp->slots[i].active && s->sp->slots[i].on;
    }
    uint32_t used = 0;
    clspec_kv_usage(s->e, &used, NULL, NULL, 0);
    s->st.kv_cells_used = used; /* cells shared by prefix reuse count once */
    s->st.spec_kv_shrinks = s->sp->total.n_kv_shrunk; /* the core's, written by this thread */
    s->st.spec_forwards = s->sp->total.n_calls;
    s->st.spec_syncs = s->sp->total.n_syncs;
    s->st.spec_syncs_draft = s->sp->total.n_syncs_draft;
}

/* Scheduler thread, mu not held: a request ends (ok: DONE with reason, else
 * ERROR with status/message), then its slot is freed. */
void cs_sched_finish(struct cs_sched *s, int i, const char *reason, int status, const char *message)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    double now = cs_now();
    struct cs_req_event ev;
    memset(&ev, 0, sizeof ev);
    fill_usage(j, sl, now, &ev.usage);
    ev.usage.id_slot = i;
    const bool spec = s->sp->slots[i].active && !cs_sched_spec_off_reason(s, j); /* decoded asking for drafts */
    if (spec) {
        const struct cs_spec_slot *ss = &s->sp->slots[i];
        ev.usage.speculative = ss->on || ss->st.n_drafted > 0; /* false when the plugin refused the slot */
        ev.usage.spec_steps = (int)ss->st.n_steps;
        ev.usage.draft_n = (int)ss->st.n_drafted;
        ev.usage.draft_accepted = (int)ss->st.n_accepted;
        ev.usage.spec_emitted = (int)ss->st.n_emitted;
        ev.usage.spec_controller = s->sp->p.ctl == CS_SPEC_CTL_COST ? "cost" : "acceptance";
        ev.usage.draft_asked = (int)ss->st.n_asked;
        ev.usage.spec_steps_plain = (int)ss->st.n_ctl_plain;
    }
    const uint64_t calls = s->sp->total.n_calls - j->calls0; /* the scheduler's steps while it decoded */
    if (j->t_first > 0 && calls > 0)
        ev.usage.syncs_per_step = (double)(s->sp->total.n_syncs - j->syncs0) / (double)calls;
    if (reason) {
        ev.type = CS_EV_DONE;
        ev.finish_reason = reason;
    } else {
        ev.type = CS_EV_ERROR;
        ev.status = status;
        ev.message = message;
    }
    ev.token = -1;
    ev.text = "";
    /* the counters first: a client that has the DONE event sees them counted */
    pthread_mutex_lock(&s->mu);
    j->finishing = true; /* slot actions wait for the release that follows (sched_cache.c) */
    if (atomic_load(&j->cancelled))
        s->st.requests_cancelled++;
    else if (reason)
        s->st.requests_ok++;
    else
        s->st.requests_failed++;
    s->st.prompt_tokens_total += (uint64_t)j->n_prompt;
    s->st.cached_tokens_total += (uint64_t)j->n_cached;
    s->st.completion_tokens_total += (uint64_t)sl->n_gen;
    s->st.prefill_seconds_total += ev.usage.prefill_ms / 1e3;
    s->st.decode_seconds_total += ev.usage.decode_ms / 1e3;
    if (spec) {
        s->st.spec_requests++;
        s->st.spec_steps += (uint64_t)ev.usage.spec_steps;
        s->st.spec_drafted += (uint64_t)ev.usage.draft_n;
        s->st.spec_accepted += (uint64_t)ev.usage.draft_accepted;
        s->st.spec_emitted += (uint64_t)ev.usage.spec_emitted;
        s->st.spec_asked += (uint64_t)ev.usage.draft_asked;
        s->st.spec_steps_plain += (uint64_t)ev.usage.spec_steps_plain;
    }
    if (reason) {
        if (ev.usage.prefill_ms > 0)
            s->st.prefill_tps_last = j->n_prompt / (ev.usage.prefill_ms / 1e3);
        if (ev.usage.decode_ms > 0 && sl->n_gen > 1)
            s->st.decode_tps_last = (sl->n_gen - 1) / (ev.usage.decode_ms / 1e3);
    }
    slot_drop_cells(s, i, reason != NULL);
    publish(s);
    pthread_mutex_unlock(&s->mu);
    deliver(s, j, &ev);
    pthread_mutex_lock(&s->mu);
    slot_release_cells(s, i, reason != NULL, true);
    publish(s);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- sampling */

/* The n best (id, logprob) of a row with log-sum-exp lse, by descending logit. */
static int top_alternatives(struct cs_sched *s, const float *L, float lse, int n)
{
    int k = 0;
    for (int32_t id = 0; id < s->n_vocab; id++) {
        float v = L[id];
        if (k == n && v <= s->top[k - 1].logprob)
            continue;
        int at = k < n ? k++ : n - 1;
        while (at > 0 && s->top[at - 1].logprob < v) {
            s->top[at] = s->top[at - 1];
            at--;
        }
        s->top[at].token = id;
        s->top[at].logprob = v; /* the logit while selecting */
    }
    /* pieces, one buffer (pointers set after it stops moving) */
    size_t off[CS_MAX_TOP_LOGPROBS], used = 0;
    for (int i = 0; i < k; i++) {
        s->top[i].logprob -= lse;
        size_t len = 0;
        for (;;) {
            char *dst = s->top_txt + used;
            int rc = clspec_token_piece(s->e, s->top[i].token, 0, dst, s->top_cap - used, &len, NULL, 0);
            if (rc == CLSPEC_OK)
                break;
            if (rc != CLSPEC_E_RANGE)
                return rc;
            size_t nc = s->top_cap * 2 + len + 1;
            char *p = realloc(s->top_txt, nc);
            if (!p)
                return CLSPEC_E_NOMEM;
            s->top_txt = p;
            s->top_cap = nc;
        }
        off[i] = used;
        s->top[i].len = len;
        used += len + 1;
    }
    for (int i = 0; i < k; i++)
        s->top[i].text = s->top_txt + off[i];
    return k;
}

/* Slot i got token tok (already given to its sampler); L its logits row, or
 * NULL (tokens of a speculative step: such requests ask for no logprobs).
 * Streams it, maybe finishes the request. Returns true while it runs on. */
bool cs_sched_emit(struct cs_sched *s, int i, int32_t tok, const float *L)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    struct cs_req_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = CS_EV_TOKEN;
    float lse = 0.0f;
    if (L && j->shadow) { /* the sampler's distribution before this draw, as log-probabilities (-inf: never) */
        cs_sampler_probs(j->shadow, L, j->pp);
        for (int32_t v = 0; v < s->n_vocab; v++)
            j->pp[v] = j->pp[v] > 0.0f ? logf(j->pp[v]) : -INFINITY;
        L = j->pp;
    }
    if (j->shadow)
        cs_sampler_accept(j->shadow, tok);
    if (L && !j->shadow && (j->r.logprobs || j->r.top_logprobs > 0)) { /* the model's distribution (temperature 1) */
        float m = L[0];
        for (int32_t v = 1; v < s->n_vocab; v++)
            m = L[v] > m ? L[v] : m;
        double sum = 0.0;
        for (int32_t v = 0; v < s->n_vocab; v++)
            sum += exp((double)(L[v] - m));
        lse = m + (float)log(sum);
    }
    double now = cs_now();
    if (sl->n_gen == 0) {
        j->t_first = now;
        j->calls0 = s->sp->total.n_calls;
        j->syncs0 = s->sp->total.n_syncs;
    }
    j->t_last = now;
    sl->n_gen++;
    ev.token = tok;
    if (L && j->r.logprobs)
        ev.logprob = L[tok] - lse;
    if (L && j->r.top_logprobs > 0) {
        int k = top_alternatives(s, L, lse, j->r.top_logprobs);
        while (k > 0 && s->top[k - 1].logprob == -INFINITY) /* post-sampling: probability 0 is no alternative */
            k--;
        if (k < 0) {
            cs_sched_finish(s, i, NULL, k, "out of memory formatting top logprobs");
            return false;
        }
        ev.top = s->top;
        ev.n_top = k;
    }
    const char *reason = NULL, *d;
    size_t dn;
    s->txt.len = 0;
    if (s->txt.p)
        s->txt.p[0] = '\0';
    char err[CLSPEC_ERRLEN];
    bool eog = !j->r.ignore_eos && clspec_token_is_eog(s->e, tok) == 1;
    if (eog) {
        reason = "stop";
        /* no event for the end-of-generation token itself; held text is released with token -1 */
        ev.token = -1;
        ev.logprob = 0.0f;
        ev.top = NULL;
        ev.n_top = 0;
    } else {
        int rc = cs_textout_push(j->to, tok, &d, &dn, err, sizeof err);
        if (rc < 0) {
            cs_sched_finish(s, i, NULL, rc, err);
            return false;
        }
        cs_strbuf_put_n(&s->txt, d, dn);
        if (rc == 1)
            reason = "stop";
        else if (j->max_tokens > 0 && sl->n_gen >= j->max_tokens)
            reason = "length";
        else if (j->n_prompt + sl->n_gen - j->n_shifted >= s->slot_ctx) { /* the history is prompt + tokens */
            j->ctx_full = true; /* as llama-server: prompt + output fill the slot's context, no more */
            if (s->p.ctx_shift)
                j->shift_pending = true; /* after this step (cs_sched_ctx_shift) */
            else
                reason = "length";
        }
    }
    if (reason && cs_textout_stop_index(j->to) < 0) {
        if (cs_textout_flush(j->to, &d, &dn) == CLSPEC_OK)
            cs_strbuf_put_n(&s->txt, d, dn);
        else
            s->txt.oom = true;
    }
    if (s->txt.oom) {
        s->txt.oom = false;
        cs_sched_finish(s, i, NULL, CLSPEC_E_NOMEM, "out of memory assembling the text");
        return false;
    }
    if (!eog || s->txt.len > 0) {
        ev.text = s->txt.p ? s->txt.p : "";
        ev.len = s->txt.len;
        deliver(s, j, &ev);
    }
    if (reason) {
        cs_sched_finish(s, i, reason, CLSPEC_OK, NULL);
        return false;
    }
    return true;
}

/* Slot i's prompt is in and L is its last row's logits: sample and stream
 * the first token, then hand the slot to the core (unless it ended). */
static void first_token(struct cs_sched *s, int i, const float *L)
{
    struct job *j = s->slots[i].job;
    int32_t tok = clspec_sampler_sample(j->smp, L);
    clspec_sampler_accept(j->smp, tok);
    if (cs_sched_emit(s, i, tok, L))
        cs_sched_spec_attach(s, i, tok);
}

/* ---------------------------------------------------------------- the loop */

/* The prompt chunks of this step into s->b (the core's extra rows): oldest
 * admission first, budget tokens in all. */
static void plan_prefill(struct cs_sched *s, int budget)
{
    int32_t n = 0;
    budget = CS_MIN(budget, s->b_cap);
    int n_logits = 0;
    for (;;) {
        int best = -1;
        for (int i = 0; i < s->p.n_slots; i++) {
            struct slot *sl = &s->slots[i];
            if (sl->job && !s->sp->slots[i].active && sl->n_rows == 0 && !atomic_load(&sl->job->cancelled) &&
                (best < 0 || sl->job->admit_no < s->slots[best].job->admit_no))
                best = i;
        }
        if (best < 0 || budget <= 0)
            break;
        struct slot *sl = &s->slots[best];
        const int32_t *feed = cs_job_feed(sl->job); /* the prompt, or a preempted request's history */
        int n_feed = cs_job_n_feed(sl->job);
        int k = CS_MIN(n_feed - sl->n_fed, budget);
        for (int t = 0; t < k; t++) {
            bool last = sl->n_fed + t + 1 == n_feed;
            s->b_token[n] = feed[sl->n_fed + t];
            if (s->b_token[n] < 0) /* an image row of the prompt: its input (the batch's embd is b_embd) */
                memcpy(s->b_embd + (size_t)n * s->n_embd,
                       sl->job->img_rows + (size_t)sl->job->img_at[sl->n_fed + t] * s->n_embd,
                       (size_t)s->n_embd * sizeof(float));
            s->b_pos[n] = sl->n_fed + t;
            s->b_seq[n] = best;
            s->b_logits[n++] = last;
            if (last)
                sl->logit_row = n_logits++;
        }
        sl->n_rows = k;
        budget -= k;
    }
    s->b.n_rows = n;
}

/* return_progress: the prompt computed so far (CS_EV_PROGRESS) */
static void progress(struct cs_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    struct cs_req_event ev = {.type = CS_EV_PROGRESS};
    ev.progress.total = sl->job->n_prompt;
    ev.progress.cache = sl->job->n_cached;
    ev.progress.processed = sl->n_fed;
    ev.progress.time_ms = (cs_now() - sl->job->t_start) * 1e3;
    sl->job->cb(sl->job->user, &ev);
}

/* The KV-full policy: of the slots in[] the cache refused (rc[i] ==
 * CLSPEC_E_KV_FULL; they were left unchanged) only the youngest fails, the
 * others retry next step, when its cells are free (else two requests
 * growing in step would both fail at once). Returns that slot, -1 none. */
static int kv_full_victim(const struct cs_sched *s, const bool *in, const int *rc)
{
    int victim = -1;
    for (int i = 0; i < s->p.n_slots; i++)
        if (in[i] && rc[i] == CLSPEC_E_KV_FULL &&
            (victim < 0 || s->slots[i].job->admit_no > s->slots[victim].job->admit_no))
            victim = i;
    return victim;
}

static void step(struct cs_sched *s)
{
    for (int i = 0; s->sp->pl && s->p.spec_core_prefill && i < s->p.n_slots; i++)
        cs_sched_spec_taps(s, i); /* before its first chunk: from position 0, with taps */
    int32_t n_left[CS_MAX_SEQ];
    bool dec[CS_MAX_SEQ], was_on[CS_MAX_SEQ], in[CS_MAX_SEQ];
    for (int i = 0; i < s->p.n_slots; i++) {
        s->slots[i].n_rows = 0;
        s->slots[i].logit_row = -1;
    }
    int n_dec = cs_sched_spec_plan(s, n_left, dec, was_on);
    plan_prefill(s, n_dec ? s->prefill_max : s->n_batch);
    if (n_dec == 0 && s->b.n_rows == 0)
        return;
    struct cs_spec_extra x = {.b = &s->b};
    for (int i = 0; i < s->p.n_slots; i++)
        x.taps[i] = s->slots[i].taps && s->slots[i].n_rows > 0;
    char err[CLSPEC_ERRLEN];
    int rc = cs_spec_step_extra(s->sp, n_left, &x, err, sizeof err);
    int res[CS_MAX_SEQ]; /* per slot in the step: its sequence's outcome */
    for (int i = 0; i < s->p.n_slots; i++) {
        in[i] = dec[i] || s->slots[i].n_rows > 0;
        res[i] = rc < 0 ? rc : dec[i] ? s->sp->slots[i].rc : x.seq_rc[i];
    }
    int victim = kv_full_victim(s, in, res);
    /* a refusal while others run: every refused slot retries, and once this step's tokens are out the
     * youngest running request is preempted (admit.c); a request refused alone fails. Idle slots'
     * cached cells go first: then every refused slot retries */
    bool refused = victim >= 0;
    if (refused) {
        pthread_mutex_lock(&s->mu);
        if (cs_sched_cache_evict(s, -1))
            refused = false, victim = -1;
        pthread_mutex_unlock(&s->mu);
    }
    if (refused && s->busy > 1)
        victim = -1;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!in[i] || !sl->job)
            continue;
        if (rc < 0) {
            char msg[CLSPEC_ERRLEN + 32];
            snprintf(msg, sizeof msg, "forward failed: %s", err);
            cs_sched_finish(s, i, NULL, rc, msg);
            continue;
        }
        if (res[i] == CLSPEC_E_KV_FULL && i != victim)
            continue; /* retried next step */
        if (res[i] == CLSPEC_E_KV_FULL) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "KV cache full: slot %d could not store %d more token(s) at position %d (n_ctx %u shared "
                     "by %d slots); retry later or use a shorter request",
                     i, dec[i] ? 1 : sl->n_rows, cs_sched_n_past(s, i), (unsigned)s->st.kv_cells_total, s->p.n_slots);
            cs_sched_finish(s, i, NULL, CLSPEC_E_KV_FULL, msg);
            continue;
        }
        if (res[i] != CLSPEC_OK) {
            cs_sched_finish(s, i, NULL, res[i], "forward refused the sequence");
            continue;
        }
        if (dec[i]) {
            cs_sched_spec_emit(s, i, was_on[i]);
            continue;
        }
        if (sl->job->r.return_progress && !sl->job->resume && sl->n_fed == sl->job->n_cached)
            progress(s, i); /* the start: what the cache held */
        sl->n_fed += sl->n_rows;
        if (sl->job->r.return_progress && !sl->job->resume)
            progress(s, i);
        if (sl->logit_row >= 0 && !atomic_load(&sl->job->cancelled)) {
            if (sl->job->resume)
                cs_sched_resume_attach(s, i); /* a preempted request's history is back in: decode on */
            else if (sl->job->r.prefill_only)
                cs_sched_finish(s, i, "stop", CLSPEC_OK, NULL); /* a slot restore: its cells are in */
            else
                first_token(s, i, x.logits + (size_t)sl->logit_row * (size_t)s->n_vocab);
        }
    }
    if (refused && victim < 0)
        cs_sched_preempt_youngest(s); /* false: the others ended this step; the refused ones retry */
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].job && s->slots[i].job->shift_pending && !atomic_load(&s->slots[i].job->cancelled))
            cs_sched_ctx_shift(s, i);
}

static void *loop(void *arg)
{
    struct cs_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (int i = 0; i < s->p.n_slots; i++) { /* cancelled while running */
            struct job *j = s->slots[i].job;
            if (j && atomic_load(&j->cancelled)) {
                s->st.requests_cancelled++;
                slot_release_cells(s, i, false, false);
            }
        }
        if (s->quit)
            break;
        if (s->abort_all) { /* drain timed out: everything still here ends with SHUTDOWN */
            struct job *list = s->q_head;
            s->q_head = s->q_tail = NULL;
            s->q_n = 0;
            for (int i = 0; i < s->p.n_slots; i++) {
                struct job *j = s->slots[i].job;
                if (!j)
                    continue;
                s->slots[i].job = NULL; /* the job outlives the slot until its event is out */
                cs_spec_slot_end(s->sp, i);
                clspec_seq_rm(s->e, i, 0, -1, NULL, 0);
                memset(&s->slots[i], 0, sizeof s->slots[i]);
                s->busy--;
                j->next = list;
                list = j;
            }
            s->aborting = list;
            publish(s);
            pthread_mutex_unlock(&s->mu);
            for (struct job *j = list; j; j = j->next) {
                struct cs_req_event ev;
                memset(&ev, 0, sizeof ev);
                ev.type = CS_EV_ERROR;
                ev.status = CLSPEC_E_SHUTDOWN;
                ev.message = "server shutting down: request cancelled by drain";
                ev.token = -1;
                ev.text = "";
                fill_usage(j, NULL, cs_now(), &ev.usage);
                deliver(s, j, &ev);
            }
            pthread_mutex_lock(&s->mu);
            s->aborting = NULL;
            while (list) {
                struct job *n = list->next;
                s->st.requests_cancelled++;
                cs_sched_job_free(list);
                list = n;
            }
            s->abort_all = false;
            pthread_cond_broadcast(&s->cv_done);
            continue;
        }
        cs_sched_assign_queued(s); /* erased slots first, then the queue onto free slots */
        if (s->busy == 0) {
            publish(s);
            pthread_cond_wait(&s->cv_work, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        step(s);
        pthread_mutex_lock(&s->mu);
        publish(s);
    }
    /* quit: everything still here goes, without callbacks */
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].job)
            slot_release_cells(s, i, false, false);
    while (s->q_head) {
        struct job *n = s->q_head->next;
        cs_sched_job_free(s->q_head);
        s->q_head = n;
    }
    s->q_tail = NULL;
    s->q_n = 0;
    publish(s);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------- API */

/* The prompt-chunk batch's arrays: cap rows. */
static int alloc_batch(struct cs_sched *s, int32_t cap, char *err, size_t errlen)
{
    s->b_token = malloc((size_t)cap * sizeof *s->b_token);
    s->b_pos = malloc((size_t)cap * sizeof *s->b_pos);
    s->b_seq = malloc((size_t)cap * sizeof *s->b_seq);
    s->b_logits = malloc((size_t)cap);
    if (!s->b_token || !s->b_pos || !s->b_seq || !s->b_logits)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "scheduler: out of memory (%d batch rows)", cap);
    s->b_cap = cap;
    if (s->p.images && !(s->b_embd = malloc((size_t)cap * (size_t)s->n_embd * sizeof *s->b_embd)))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "scheduler: out of memory (%d image rows)", cap);
    s->b = (struct clspec_batch){sizeof s->b, 0, s->b_token, s->b_pos, s->b_seq, s->b_logits, s->b_embd, NULL};
    return CLSPEC_OK;
}

static void free_batch(struct cs_sched *s)
{
    free(s->b_embd);
    free(s->b_token);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logits);
}

int cs_sched_new(clspec_engine *e, const struct cs_sched_params *p, struct cs_sched **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    if (!e || !p)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "scheduler: no engine or parameters");
    struct clspec_engine_info info = {.size = sizeof info};
    CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    uint32_t n_seq = info.n_seq ? info.n_seq : 1;
    if (p->n_slots < 1 || p->n_slots > CS_MAX_SEQ || (uint32_t)p->n_slots > n_seq)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "scheduler: parallel = %d slots; must be 1..%u (the engine's n_seq_max)", p->n_slots, n_seq);
    if (p->queue_max < 0 || p->max_tokens_limit < 0 || p->prefill_max < 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "scheduler: negative queue_max, max_tokens_limit or prefill_max");
    if (p->ctx_shift && info.n_draft_max > 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "context shift: the model keeps a recurrent state (hybrid), which cannot drop tokens from "
                      "the middle of a sequence; set [server] context_shift = false");
    struct cs_sched *s = calloc(1, sizeof *s);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "scheduler: out of memory");
    s->e = e;
    s->p = *p;
    s->sp = p->spec;
    if (s->sp && (s->sp->e != e || s->sp->n_slots < p->n_slots)) {
        free(s);
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "scheduler: the speculative core is over another engine or has fewer than %d slots", p->n_slots);
    }
    int rc;
    if (!s->sp) { /* no speculator: the same core, every slot without drafts */
        struct cs_spec_params cp = cs_spec_defaults();
        cp.n_max = 1;
        if ((rc = cs_spec_new(e, NULL, &cp, p->n_slots, &s->sp, err, errlen)) < 0) {
            free(s);
            return rc;
        }
        s->own_sp = true;
    }
    s->st.spec_name = s->sp->pl ? s->sp->pl->vt.name : NULL;
    s->n_vocab = info.n_vocab;
    s->n_embd = info.n_embd;
    s->bos = info.bos;
    s->slot_ctx = (int)(info.kv_partitioned ? info.n_ctx / n_seq : info.n_ctx);
    uint32_t nb = info.n_batch ? info.n_batch : 512, nub = info.n_ubatch ? info.n_ubatch : nb;
    s->n_batch = (int)info.n_batch;
    s->prefill_max = p->prefill_max > 0 ? p->prefill_max : (int)CS_MIN(nb, nub);
    s->lstrip = info.strips_space != 0;
    s->st.n_slots = p->n_slots;
    s->st.kv_cells_total = info.n_ctx;
    s->slots = calloc((size_t)p->n_slots, sizeof *s->slots);
    s->info = calloc((size_t)p->n_slots, sizeof *s->info);
    s->cache = calloc((size_t)p->n_slots, sizeof *s->cache);
    s->keep_cache = p->keep_cache && info.n_draft_max == 0; /* a recurrent state cannot go back to any start */
    s->top_cap = 1024;
    s->top_txt = malloc(s->top_cap);
    rc = s->slots && s->info && s->cache && s->top_txt ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "scheduler: out of memory");
    if (rc == CLSPEC_OK)
        rc = alloc_batch(s, (int32_t)CS_MAX(nb, (uint32_t)p->n_slots), err, errlen);
    if (rc == CLSPEC_OK)
        rc = clspec_grammar_vocab_new(e, &s->gvocab, err, errlen);
    if (rc < 0) {
        clspec_grammar_vocab_free(s->gvocab);
        free_batch(s);
        free(s->slots);
        free(s->info);
        free(s->cache);
        free(s->top_txt);
        if (s->own_sp)
            cs_spec_free(s->sp);
        free(s);
        return rc;
    }
    for (int i = 0; i < p->n_slots; i++)
        s->slots[i].logit_row = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cb_mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_done, &ca);
    pthread_condattr_destroy(&ca);
    publish(s);
    if (pthread_create(&s->th, NULL, loop, s) != 0) {
        cs_sched_free(s);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "scheduler: cannot start its thread");
    }
    s->th_started = true;
    *out = s;
    return CLSPEC_OK;
}

void cs_sched_free(struct cs_sched *s)
{
    if (!s)
        return;
    if (s->th_started) {
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        pthread_cond_broadcast(&s->cv_work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    while (s->q_head) {
        struct job *n = s->q_head->next;
        cs_sched_job_free(s->q_head);
        s->q_head = n;
    }
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_done);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->cb_mu);
    free_batch(s);
    free(s->slots);
    free(s->info);
    for (int i = 0; s->cache && i < s->p.n_slots; i++)
        free(s->cache[i].tok);
    free(s->cache);
    if (s->own_sp)
        cs_spec_free(s->sp);
    cs_strbuf_free(&s->txt);
    free(s->top_txt);
    clspec_grammar_vocab_free(s->gvocab);
    free(s);
}

/* Counts a refused submit; returns rc (err already filled). */
static int rejected(struct cs_sched *s, int rc)
{
    pthread_mutex_lock(&s->mu);
    s->st.requests_rejected++;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int cs_sched_submit(struct cs_sched *s, const struct cs_req *r, cs_req_cb cb, void *user, uint64_t *id_out,
                    char *err, size_t errlen)
{
    if (id_out)
        *id_out = 0;
    if (!r || !cb)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "request: no request or callback"));
    char who[sizeof r->id + 1];
    snprintf(who, sizeof who, "%.*s", (int)strnlen(r->id, sizeof r->id), r->id);
    if (!who[0])
        snprintf(who, sizeof who, "request");
    if (!r->prompt || r->n_prompt <= 0)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: empty prompt", who));
    int n_neg = 0;
    for (int i = 0; i < r->n_prompt; i++) {
        n_neg += r->prompt[i] < 0;
        if (r->prompt[i] >= s->n_vocab || (r->prompt[i] < 0 && !r->image_rows))
            return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL,
                                      "%s: prompt[%d] = %d: token ids are 0..%d (n_vocab %d)", who, i,
                                      (int)r->prompt[i], s->n_vocab - 1, s->n_vocab));
    }
    if (n_neg > 0 && !s->b_embd)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: image rows, but the server takes no images",
                                  who));
    if (n_neg != (r->image_rows ? r->n_image_rows : 0))
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %d image rows in the prompt, %d given", who, n_neg,
                                  r->n_image_rows));
    if (r->n_stop < 0 || r->n_stop > CS_MAX_STOP)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %d stop strings (at most %d)", who, r->n_stop,
                                  CS_MAX_STOP));
    if (r->top_logprobs < 0 || r->top_logprobs > CS_MAX_TOP_LOGPROBS)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: top_logprobs %d outside 0..%d", who,
                                  r->top_logprobs, CS_MAX_TOP_LOGPROBS));
    if (r->max_tokens < 0)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: max_tokens %d is negative", who, r->max_tokens));
    if (s->p.max_tokens_limit > 0 && r->max_tokens > s->p.max_tokens_limit)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_RANGE, "%s: 'max_tokens' is %d; it must be at most %d ([server] max_tokens_limit)", who,
                                  r->max_tokens, s->p.max_tokens_limit));
    if (r->pin_slot < 0 || r->pin_slot > s->p.n_slots)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_INVAL, "%s: 'id_slot' %d: the server has slots 0..%d", who,
                                  r->pin_slot - 1, s->p.n_slots - 1));
    if (r->prefill_only && (r->n_prompt >= s->slot_ctx || n_neg > 0))
        return rejected(s, cs_err(err, errlen, CLSPEC_E_CONTEXT, "%s: %d tokens (with %d image rows) to restore; a "
                                  "slot holds at most %d tokens, no images", who, r->n_prompt, n_neg,
                                  s->slot_ctx - 1));
    int n_prompt = r->n_prompt;
    const int32_t *src = r->prompt;
    int keep_bos = 0;
    if (r->max_tokens > 0 && !s->p.ctx_shift && n_prompt < s->slot_ctx &&
        (int64_t)n_prompt + r->max_tokens > s->slot_ctx)
        return rejected(s, cs_err(err, errlen, CLSPEC_E_RANGE,
                                  "%s: prompt of %d tokens + 'max_tokens' %d = %lld tokens; a slot holds at most %d "
                                  "(lower max_tokens to %d or less)",
                                  who, n_prompt, r->max_tokens, (long long)n_prompt + r->max_tokens, s->slot_ctx,
                                  s->slot_ctx - n_prompt));
    if (n_prompt >= s->slot_ctx) {
        if (!s->p.truncate_prompt || n_neg > 0)
            return rejected(s, cs_err(err, errlen, CLSPEC_E_CONTEXT,
                                      "%s: prompt of %d tokens does not fit a slot's context of %d tokens "
                                      "(at least one cell must stay free to generate)",
                                      who, n_prompt, s->slot_ctx));
        /* keep the end: half the slot's context (and the BOS), the other half for generating */
        keep_bos = src[0] == s->bos;
        n_prompt = CS_MAX(s->slot_ctx / 2, 1 + keep_bos);
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j || !(j->prompt = malloc((size_t)n_prompt * sizeof *j->prompt))) {
        free(j);
        return rejected(s, cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", who));
    }
    j->r = *r;
    j->cb = cb;
    j->user = user;
    atomic_init(&j->cancelled, false);
    j->n_prompt = n_prompt;
    if (n_prompt < r->n_prompt) {
        if (keep_bos)
            j->prompt[0] = src[0];
        memcpy(j->prompt + keep_bos, src + r->n_prompt - (n_prompt - keep_bos),
               (size_t)(n_prompt - keep_bos) * sizeof *src);
    } else {
        memcpy(j->prompt, src, (size_t)n_prompt * sizeof *src);
    }
    j->r.prompt = j->prompt;
    j->r.n_prompt = n_prompt;
    j->r.image_rows = NULL;
    if (n_neg > 0) { /* not truncated (refused above): the rows as given */
        j->img_rows = malloc((size_t)n_neg * (size_t)s->n_embd * sizeof *j->img_rows);
        j->img_at = malloc((size_t)n_prompt * sizeof *j->img_at);
        if (!j->img_rows || !j->img_at) {
            cs_sched_job_free(j);
            return rejected(s, cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", who));
        }
        memcpy(j->img_rows, r->image_rows, (size_t)n_neg * (size_t)s->n_embd * sizeof *j->img_rows);
        for (int i = 0, k = 0; i < n_prompt; i++)
            j->img_at[i] = j->prompt[i] < 0 ? k++ : -1;
    }
    j->r.id[sizeof j->r.id - 1] = '\0';
    memset(j->r.stop, 0, sizeof j->r.stop); /* the caller's pointers are not kept */
    for (int i = 0; i < r->n_stop; i++) {
        if (r->stop[i] && !(j->stop_copy[i] = strdup(r->stop[i]))) {
            cs_sched_job_free(j);
            return rejected(s, cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", who));
        }
        j->r.stop[i] = j->stop_copy[i];
    }
    int mt = r->max_tokens > 0 ? r->max_tokens : s->p.max_tokens_default;
    if (s->p.max_tokens_limit > 0 && (mt <= 0 || mt > s->p.max_tokens_limit))
        mt = s->p.max_tokens_limit;
    if (r->max_tokens <= 0 && mt > s->slot_ctx - n_prompt) /* a default: what fits */
        mt = s->slot_ctx - n_prompt;
    if (s->p.ctx_shift && mt <= 0) /* context shift serves a limit beyond the context, never an endless one */
        mt = s->slot_ctx - n_prompt;
    j->max_tokens = mt;
    int rc = cs_api_sampler_new(&r->sp, s->n_vocab, &j->smp, err, errlen);
    cs_api_sampler_keep_logits(j->smp, r->logprobs || r->top_logprobs > 0); /* else greedy verifies on the device */
    if (rc == CLSPEC_OK)
        rc = cs_textout_new(s->e, (const char *const *)j->stop_copy, r->n_stop,
                            s->lstrip && cs_textout_textless(s->e, j->prompt, n_prompt), &j->to, err, errlen);
    if (rc < 0) {
        cs_sched_job_free(j);
        return rejected(s, cs_err_prefix(err, errlen, rc == CLSPEC_E_NOMEM ? rc : CLSPEC_E_INVAL, "%s", who));
    }
    for (int i = 0; i < n_prompt; i++) /* penalties look at the prompt too (as llama.cpp's server does) */
        if (j->prompt[i] >= 0)
            clspec_sampler_accept(j->smp, j->prompt[i]);
    /* the grammar starts after the prompt; its state lives in the sampler (restored with it on rollback) */
    if (r->n_bias > 0 && (rc = clspec_sampler_set_logit_bias(j->smp, r->bias_id, r->bias, r->n_bias, err, errlen)) < 0) {
        cs_sched_job_free(j);
        return rejected(s, cs_err_prefix(err, errlen, rc == CLSPEC_E_NOMEM ? rc : CLSPEC_E_INVAL, "%s", who));
    }
    if (r->grammar && (rc = clspec_sampler_set_grammar(j->smp, s->gvocab, r->grammar, NULL, err, errlen)) < 0) {
        cs_sched_job_free(j);
        return rejected(s, cs_err_prefix(err, errlen, rc == CLSPEC_E_NOMEM ? rc : CLSPEC_E_INVAL, "%s", who));
    }
    j->r.grammar = NULL;
    if (r->post_sampling && (r->logprobs || r->top_logprobs > 0)) { /* the twin starts where smp is now */
        rc = cs_sampler_clone(cs_api_sampler(j->smp), &j->shadow, err, errlen);
        if (rc == CLSPEC_OK && !(j->pp = malloc((size_t)s->n_vocab * sizeof *j->pp)))
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", who);
        if (rc < 0) {
            cs_sched_job_free(j);
            return rejected(s, rc);
        }
    }
    j->t_submit = cs_now();

    pthread_mutex_lock(&s->mu);
    rc = CLSPEC_OK;
    if (s->draining || s->quit)
        rc = cs_err(err, errlen, CLSPEC_E_SHUTDOWN, "%s: the server is shutting down", who);
    else if (s->q_n >= s->p.queue_max + (s->p.n_slots - s->busy))
        rc = cs_err(err, errlen, CLSPEC_E_BUSY, "%s: all %d slots busy and %d requests waiting (queue_max %d)", who,
                    s->p.n_slots, s->q_n, s->p.queue_max);
    if (rc < 0) {
        s->st.requests_rejected++;
        pthread_mutex_unlock(&s->mu);
        cs_sched_job_free(j);
        return rc;
    }
    j->id = ++s->next_id;
    if (s->q_tail)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    s->q_n++;
    s->st.requests_total++;
    if (id_out)
        *id_out = j->id;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return CLSPEC_OK;
}
