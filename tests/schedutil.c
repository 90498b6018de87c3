/* schedutil: see schedutil.h. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/common.h"
#include "fwdutil.h"
#include "schedutil.h"
#include "testutil.h"

void su_col_init(struct su_col *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    atomic_init(&c->in_cb, 0);
    atomic_init(&c->calls, 0);
}

void su_col_destroy(struct su_col *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

void su_col_cb(void *user, const struct cs_req_event *ev)
{
    struct su_col *c = user;
    atomic_fetch_add(&c->in_cb, 1);
    atomic_fetch_add(&c->calls, 1);
    pthread_mutex_lock(&c->mu);
    if (c->done)
        c->status = 9999; /* an event after the last one: flagged */
    if (ev->type == CS_EV_TOKEN) {
        c->n_events++;
        if (ev->token < 0) {
            c->n_release++;
        } else if (c->n_tok < MAXTOK) {
            if (c->n_tok == 0) {
                c->n_top0 = ev->n_top;
                for (int i = 0; i < ev->n_top; i++) {
                    c->top0[i] = ev->top[i];
                    snprintf(c->top0_txt[i], sizeof c->top0_txt[i], "%.*s", (int)ev->top[i].len, ev->top[i].text);
                }
            }
            c->lp[c->n_tok] = ev->logprob;
            c->tok[c->n_tok++] = ev->token;
        }
        if (c->n_text + ev->len < sizeof c->text) {
            memcpy(c->text + c->n_text, ev->text, ev->len);
            c->n_text += ev->len;
            c->text[c->n_text] = '\0';
        }
    } else {
        c->done = true;
        c->type = ev->type;
        c->usage = ev->usage;
        if (ev->type == CS_EV_DONE)
            snprintf(c->reason, sizeof c->reason, "%s", ev->finish_reason);
        else {
            c->status = ev->status;
            snprintf(c->msg, sizeof c->msg, "%s", ev->message ? ev->message : "");
        }
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (c->sleep_us)
        usleep((useconds_t)c->sleep_us);
    atomic_fetch_sub(&c->in_cb, 1);
}

bool su_col_wait(struct su_col *c, double timeout_s)
{
    double t_end = cs_now() + timeout_s;
    pthread_mutex_lock(&c->mu);
    while (!c->done && cs_now() < t_end) {
        pthread_mutex_unlock(&c->mu);
        usleep(2000);
        pthread_mutex_lock(&c->mu);
    }
    bool d = c->done;
    pthread_mutex_unlock(&c->mu);
    return d;
}

int su_col_ntok(struct su_col *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->n_tok;
    pthread_mutex_unlock(&c->mu);
    return n;
}

struct cs_engine *su_engine_open(uint32_t n_ctx, uint32_t n_seq, bool unified)
{
    struct cs_engine_params p = cs_engine_defaults();
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.kv_unified = unified;
    p.n_batch = 128;
    p.n_ubatch = 128;
    return fu_engine_open("models/stories260K.gguf", &p);
}

/* The engine door of each open engine (the scheduler and the speculative
 * core share it), made on first use; engine_close frees both. */
static struct {
    struct cs_engine *e;
    clspec_engine *d;
} g_doors[8];

clspec_engine *su_door_of(struct cs_engine *e)
{
    int free_at = -1;
    for (int i = 0; i < 8; i++) {
        if (g_doors[i].e == e)
            return g_doors[i].d;
        if (!g_doors[i].e && free_at < 0)
            free_at = i;
    }
    assert_true(free_at >= 0);
    g_doors[free_at].e = e;
    g_doors[free_at].d = fu_door(e);
    return g_doors[free_at].d;
}

void su_engine_close(struct cs_engine *e)
{
    for (int i = 0; i < 8; i++)
        if (g_doors[i].e == e) {
            clspec_engine_free(g_doors[i].d);
            g_doors[i].e = NULL;
            g_doors[i].d = NULL;
        }
    cs_engine_free(e);
}

struct cs_sched *su_sched_new(struct cs_engine *e, int n_slots, int queue_max, bool truncate)
{
    struct cs_sched_params sp = {
        .n_slots = n_slots, .queue_max = queue_max, .truncate_prompt = truncate};
    struct cs_sched *s = NULL;
    char err[CLSPEC_ERRLEN];
    if (cs_sched_new(su_door_of(e), &sp, &s, err, sizeof err) != CLSPEC_OK)
        fail_msg("sched: %s", err);
    return s;
}

struct cs_req su_req_make(const int32_t *prompt, int n, int max_tokens)
{
    struct cs_req r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.n_prompt = n;
    r.max_tokens = max_tokens;
    r.sp = cs_sampler_defaults();
    r.sp.temp = 0.0f;
    r.speculative = true;
    snprintf(r.id, sizeof r.id, "req-test");
    return r;
}

uint64_t su_submit_ok(struct cs_sched *s, const struct cs_req *r, struct su_col *c)
{
    char err[CLSPEC_ERRLEN];
    uint64_t id = 0;
    if (cs_sched_submit(s, r, su_col_cb, c, &id, err, sizeof err) != CLSPEC_OK)
        fail_msg("submit: %s", err);
    assert_true(id > 0);
    return id;
}

struct golden *su_gold(void)
{
    char *jp = tu_shared_path("reference/greedy-stories260K.json");
    struct golden *g = golden_load(jp);
    free(jp);
    assert_non_null(g);
    assert_true(g->n_cases >= 2);
    return g;
}

