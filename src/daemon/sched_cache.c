/* sched_cache.c: the scheduler's slot caches, slot pinning and context
 * shift (see sched_impl.h; llama-server's slots, as its README describes
 * them).
 *
 * Slot cache (keep_cache): when a request ends well, its slot's sequence
 * keeps its cells: the prompt and the emitted tokens but the last one (never
 * fed), with their tokens in the slot's list. The next request on that slot
 * keeps the cells of the longest start it shares with them and prefills the
 * rest (at least its last prompt token: its logits give the first token).
 * Idle caches are not shared into other slots (as llama-server: a request
 * finds only its own slot's cache; running sequences' prefixes are shared as
 * before). Without a pin a request takes the free slot whose cache shares
 * the longest start with it, else the one idle longest. Cells of idle slots
 * are given up, oldest first, when a request would not be admitted or a step
 * finds the cache full. Hybrid targets keep nothing (their recurrent state
 * cannot go back to an arbitrary start).
 *
 * Context shift (ctx_shift): a generation that fills its slot's context
 * drops n_discard tokens after the first n_keep (default: the BOS, then half
 * of the rest) and goes on. The engine cannot move cached keys to new
 * positions (RoPE is applied before they are stored; re-rotating them would
 * be a new KV operation on every cache type), so the cells after n_keep are
 * removed and the kept tail is computed again at its new positions, as a
 * preempted request resumes (admit.c): one prefill of about half a context
 * per shift. The output is then exactly what a fresh run over the shortened
 * history gives. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/log.h"
#include "daemon/sched_impl.h"

/* Tokens a and b share from the start (image rows, negative ids, never match). */
static int common_start(const int32_t *a, int na, const int32_t *b, int nb)
{
    int k = 0;
    while (k < na && k < nb && a[k] >= 0 && a[k] == b[k])
        k++;
    return k;
}

/* A free slot for job j, -1 none. */
static int pick_slot(struct cs_sched *s, const struct job *j)
{
    if (j->r.pin_slot > 0)
        return s->slots[j->r.pin_slot - 1].job ? -1 : j->r.pin_slot - 1;
    int best = -1, best_k = 0, lru = -1;
    for (int i = 0; i < s->p.n_slots; i++) {
        if (s->slots[i].job)
            continue;
        const struct slot_cache *c = &s->cache[i];
        int k = c->n > 0 ? common_start(c->tok, c->n, cs_job_feed(j), cs_job_n_feed(j)) : 0;
        if (k > best_k) {
            best_k = k;
            best = i;
        }
        if (lru < 0 || c->t_used < s->cache[lru].t_used)
            lru = i;
    }
    return best >= 0 ? best : lru;
}

int cs_sched_next_job(struct cs_sched *s, struct job ***at)
{
    for (struct job **pp = &s->q_head; *pp; pp = &(*pp)->next) {
        int i = pick_slot(s, *pp);
        if (i >= 0) {
            *at = pp;
            return i;
        }
        if ((*pp)->r.pin_slot <= 0)
            return -1; /* no free slot at all */
    }
    return -1;
}

static void cache_clear(struct cs_sched *s, int i)
{
    clspec_seq_rm(s->e, i, 0, -1, NULL, 0);
    s->cache[i].n = 0;
    s->cache[i].drop = false;
}

bool cs_sched_cache_evict(struct cs_sched *s, int keep)
{
    bool any = false;
    for (;;) {
        int old = -1;
        for (int i = 0; i < s->p.n_slots; i++)
            if (i != keep && !s->slots[i].job && s->cache[i].n > 0 &&
                (old < 0 || s->cache[i].t_used < s->cache[old].t_used))
                old = i;
        if (old < 0)
            return any;
        cs_log(CS_LOG_DEBUG, NULL, "slot %d: its %d cached tokens give their cells up", old, s->cache[old].n);
        cache_clear(s, old);
        any = true;
    }
}

void cs_sched_cache_drops(struct cs_sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->cache[i].drop && !s->slots[i].job)
            cache_clear(s, i);
}

int cs_sched_cache_take(struct cs_sched *s, int i, const int32_t *feed, int n_feed)
{
    struct slot_cache *c = &s->cache[i];
    int k = c->n > 0 ? common_start(c->tok, c->n, feed, n_feed) : 0;
    k = CS_MIN(k, n_feed - 1);
    k = CS_MAX(k, 0);
    clspec_seq_rm(s->e, i, k, -1, NULL, 0);
    c->n = 0; /* busy: the job's history is the truth now */
    c->drop = false;
    return k;
}

bool cs_sched_cache_keep(struct cs_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    const struct cs_spec_slot *ss = &s->sp->slots[i];
    if (!s->keep_cache || !j || j->img_rows || atomic_load(&j->cancelled))
        return false;
    const int32_t *tok = ss->active ? ss->hist : cs_job_feed(j);
    int n = ss->active ? ss->n_hist - 1 : sl->n_fed;
    struct slot_cache *c = &s->cache[i];
    if (n > c->cap) {
        int32_t *p = realloc(c->tok, (size_t)n * sizeof *p);
        if (!p)
            return false;
        c->tok = p;
        c->cap = n;
    }
    if (n > 0)
        memcpy(c->tok, tok, (size_t)n * sizeof *tok);
    c->n = CS_MAX(n, 0);
    c->t_used = cs_now();
    c->drop = false;
    cs_spec_slot_end_keep(s->sp, i);
    clspec_seq_rm(s->e, i, c->n, -1, NULL, 0); /* nothing past the history (no-op normally) */
    return true;
}

void cs_sched_ctx_shift(struct cs_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    struct job *j = sl->job;
    struct cs_spec_slot *ss = &s->sp->slots[i];
    j->shift_pending = false;
    int n_hist = ss->active ? ss->n_hist : 0;
    int n_cells = n_hist - 1;
    int n_keep = j->r.n_keep < 0 ? j->n_prompt : j->r.n_keep;
    n_keep += j->n_prompt > 0 && j->prompt[0] == s->bos; /* the BOS always stays */
    n_keep = CS_MIN(n_keep, CS_MIN(s->slot_ctx - 4, n_cells));
    n_keep = CS_MAX(n_keep, 0);
    int n_left = n_cells - n_keep;
    int n_discard = j->r.n_discard > 0 ? j->r.n_discard : n_left / 2;
    n_discard = CS_MIN(n_discard, n_left - 1); /* at least one token is recomputed (its logits go on) */
    int32_t *h = n_discard > 0 ? malloc((size_t)(n_hist - n_discard) * sizeof *h) : NULL;
    if (!h) {
        cs_sched_finish(s, i, n_discard > 0 ? NULL : "length", n_discard > 0 ? CLSPEC_E_NOMEM : CLSPEC_OK,
                        "context shift: out of memory");
        return;
    }
    memcpy(h, ss->hist, (size_t)n_keep * sizeof *h);
    memcpy(h + n_keep, ss->hist + n_keep + n_discard, (size_t)(n_hist - n_keep - n_discard) * sizeof *h);
    pthread_mutex_lock(&s->mu);
    free(j->resume);
    j->resume = h;
    j->n_resume = n_hist - n_discard;
    j->n_gen_saved = sl->n_gen;
    j->n_shifted += n_discard;
    cs_spec_slot_end_keep(s->sp, i);
    clspec_seq_rm(s->e, i, n_keep, -1, NULL, 0);
    sl->n_fed = n_keep;
    sl->taps = false; /* a speculator reading taps gets them afresh: the chunks feed all of it again */
    pthread_mutex_unlock(&s->mu);
    cs_log(CS_LOG_INFO, j->r.id,
           "slot %d: context full (%d of %d cells): context shift drops %d token(s) after the first %d and "
           "recomputes %d", i, n_cells, s->slot_ctx, n_discard, n_keep, j->n_resume - 1 - n_keep);
}

/* Under mu: gives slot i to job j. Prefix reuse: the longest start of the
 * prompt that another sequence holds (same tokens at positions 0..k-1) is
 * shared into sequence i (clspec_seq_cp) and not prefilled again; at least
 * the last prompt token is always computed (its logits give the first
 * token). The shared cells were computed from the same tokens at the same
 * positions, so the output equals a cold run's. */
static void slot_assign(struct cs_sched *s, int i, struct job *j)
{
    struct slot *sl = &s->slots[i];
    memset(sl, 0, sizeof *sl);
    sl->logit_row = -1;
    sl->job = j;
    j->t_start = cs_now();
    j->admit_no = ++s->admit_no;
    s->busy++;
    int32_t src = -1;
    int32_t k = 0;
    int n_feed = cs_job_n_feed(j); /* the prompt, or a preempted request's history */
    int k_own = cs_sched_cache_take(s, i, cs_job_feed(j), n_feed); /* the slot's own cache (keep_cache) */
    clspec_prefix_match(s->e, cs_job_feed(j), n_feed, i, &k, &src, NULL, 0);
    if (k > n_feed - 1)
        k = n_feed - 1;
    if (src >= 0 && src < s->p.n_slots && !s->slots[src].job)
        k = 0; /* an idle slot's cache is its own (as llama-server's) */
    if (k_own > 0 && k_own >= k) {
        sl->n_fed = k_own;
        if (!j->resume)
            j->n_cached = k_own;
    } else if (k > 0 && src >= 0 && src != i) {
        clspec_seq_rm(s->e, i, 0, -1, NULL, 0);
        if (clspec_seq_cp(s->e, src, i, 0, k, NULL, 0) == CLSPEC_OK) {
            sl->n_fed = k;
            if (!j->resume)
                j->n_cached = k;
        } else {
            clspec_seq_rm(s->e, i, 0, -1, NULL, 0); /* no room to copy (partitioned): prefill it all */
        }
    }
}

void cs_sched_assign_queued(struct cs_sched *s)
{
    cs_sched_cache_drops(s); /* erased slots */
    for (;;) {
        struct job **at = NULL, *prev = NULL;
        int i = cs_sched_next_job(s, &at); /* a free slot (its pin, its cache) for the first job that has one */
        if (i < 0)
            break;
        struct job *j = *at;
        if (!cs_sched_admit_ok(s, j) && !(cs_sched_cache_evict(s, i) && cs_sched_admit_ok(s, j)) &&
            !(cs_sched_cache_evict(s, -1) && cs_sched_admit_ok(s, j)))
            break; /* waits for cells (admit.c); no one overtakes it */
        for (struct job *q = s->q_head; q && q != j; q = q->next)
            prev = q;
        *at = j->next;
        if (s->q_tail == j)
            s->q_tail = prev;
        s->q_n--;
        j->next = NULL;
        slot_assign(s, i, j);
    }
}

/* Under mu: a slot whose request has delivered its last event is about to be freed (and its cache
 * kept): a client that has the answer may act on the slot at once, so wait for that. */
static void wait_finished(struct cs_sched *s, int id)
{
    while (s->slots[id].job && s->slots[id].job->finishing && !s->quit)
        pthread_cond_wait(&s->cv_done, &s->mu);
}

int cs_sched_slot_tokens(struct cs_sched *s, int id, int32_t **tokens, int *n, char *err, size_t errlen)
{
    *tokens = NULL;
    *n = 0;
    if (id < 0 || id >= s->p.n_slots)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "slot %d: there are slots 0..%d", id, s->p.n_slots - 1);
    if (!s->keep_cache)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "slots keep no cache (hybrid model, or keep_cache off)");
    int rc = CLSPEC_OK;
    pthread_mutex_lock(&s->mu);
    wait_finished(s, id);
    const struct slot_cache *c = &s->cache[id];
    if (s->slots[id].job)
        rc = cs_err(err, errlen, CLSPEC_E_BUSY, "slot %d is running a request; retry when it is idle", id);
    else if (c->n > 0 && !(*tokens = malloc((size_t)c->n * sizeof **tokens)))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    else if (c->n > 0) {
        memcpy(*tokens, c->tok, (size_t)c->n * sizeof **tokens);
        *n = c->n;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int cs_sched_slot_erase(struct cs_sched *s, int id, int *n_erased, char *err, size_t errlen)
{
    *n_erased = 0;
    if (id < 0 || id >= s->p.n_slots)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "slot %d: there are slots 0..%d", id, s->p.n_slots - 1);
    int rc = CLSPEC_OK;
    pthread_mutex_lock(&s->mu);
    wait_finished(s, id);
    if (s->slots[id].job) {
        rc = cs_err(err, errlen, CLSPEC_E_BUSY, "slot %d is running a request; retry when it is idle", id);
    } else {
        *n_erased = s->cache[id].n;
        s->cache[id].n = 0;
        s->cache[id].drop = true; /* the loop removes the cells before the slot takes a request */
        pthread_cond_signal(&s->cv_work);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
