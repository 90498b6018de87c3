/* sched_ops.c: the scheduler's doors for the other threads that do not
 * queue work: cancel a request, drain, and read the counters and slots
 * (sched.h declares them; the state is sched_impl.h's). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/common.h"
#include "daemon/sched.h"
#include "daemon/sched_impl.h"

void cs_sched_cancel(struct cs_sched *s, uint64_t id)
{
    if (!s || id == 0)
        return;
    pthread_mutex_lock(&s->mu);
    for (struct job **pp = &s->q_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        struct job *j = *pp;
        if (j->id != id)
            continue;
        *pp = j->next; /* still queued: no callback was ever made */
        if (s->q_tail == j)
            s->q_tail = prev;
        s->q_n--;
        s->st.requests_cancelled++;
        pthread_mutex_unlock(&s->mu);
        cs_sched_job_free(j);
        return;
    }
    bool found = false;
    for (struct job *j = s->aborting; j; j = j->next)
        if (j->id == id) {
            atomic_store(&j->cancelled, true);
            found = true;
        }
    for (int i = 0; i < s->p.n_slots; i++) {
        struct job *j = s->slots[i].job;
        if (j && j->id == id) {
            atomic_store(&j->cancelled, true);
            found = true;
            pthread_cond_broadcast(&s->cv_work);
            /* wait until the scheduler thread freed the slot and its cells */
            for (;;) {
                bool held = false;
                for (int k = 0; k < s->p.n_slots; k++)
                    held |= s->slots[k].job && s->slots[k].job->id == id;
                if (!held || s->quit)
                    break;
                pthread_cond_wait(&s->cv_done, &s->mu);
            }
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (found) { /* a callback that checked the flag before it was set has returned */
        pthread_mutex_lock(&s->cb_mu);
        pthread_mutex_unlock(&s->cb_mu);
    }
}

int cs_sched_drain(struct cs_sched *s, double timeout_s)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_s > 0) {
        double sec = floor(timeout_s);
        dl.tv_sec += (time_t)sec;
        dl.tv_nsec += (long)((timeout_s - sec) * 1e9);
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    while ((s->q_n > 0 || s->busy > 0) && timeout_s > 0) {
        if (pthread_cond_timedwait(&s->cv_done, &s->mu, &dl) == ETIMEDOUT)
            break;
    }
    int n = s->q_n + s->busy;
    if (n > 0) {
        s->abort_all = true;
        pthread_cond_broadcast(&s->cv_work);
        while (s->abort_all)
            pthread_cond_wait(&s->cv_done, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void cs_sched_get_stats(struct cs_sched *s, struct cs_sched_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->queue_depth = s->q_n;
    st->slots_busy = s->busy;
    st->n_slots = s->p.n_slots;
    pthread_mutex_unlock(&s->mu);
}

int cs_sched_get_slots(struct cs_sched *s, struct cs_slot_info *out, int cap)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->p.n_slots && i < cap; i++)
        out[i] = s->info[i];
    pthread_mutex_unlock(&s->mu);
    return s->p.n_slots;
}
