/* test-sched.c: the daemon's scheduler over stories260K: greedy streams equal
 * plain cs_forward decoding and llama.cpp's reference, continuous batching
 * of more requests than slots (each output as when run alone), queue limit,
 * cancellation (slot and KV cells freed, no callback afterwards), prompt
 * length checks and truncation, a full KV cache failing one request only,
 * max_tokens / stop strings, drain, seeded sampling. With a speculator:
 * tests/test-sched-spec.c; the helpers: tests/schedutil.h. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/common.h"
#include "daemon/sched.h"
#include "engine/engine.h"
#include "fwdutil.h"
#include "golden.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "schedutil.h"
#include "testutil.h"

/* Plain greedy decoding with cs_forward on the engine's context (sequence 0;
 * only while no scheduler runs on it); logits0: the first step's row (or NULL). */
static void plain_greedy(struct cs_engine *e, const int32_t *prompt, int n, int n_gen, int32_t *out, float *logits0)
{
    char err[CLSPEC_ERRLEN];
    const int V = (int)e->model->hp.n_vocab;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *pos = malloc((size_t)(n + n_gen) * sizeof *pos);
    for (int i = 0; i < n + n_gen; i++)
        pos[i] = i;
    if (cs_forward(e->ctx, prompt, n, pos, NULL, NULL, 1, logits, NULL, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    if (logits0)
        memcpy(logits0, logits, (size_t)V * sizeof *logits);
    for (int s = 0; s < n_gen; s++) {
        out[s] = cs_argmax(logits, V);
        if (s + 1 < n_gen && cs_forward(e->ctx, &out[s], 1, &pos[n + s], NULL, NULL, 1, logits, NULL, err,
                                        sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
    }
    cs_kv_seq_rm(e->ctx->kv, 0, 0, -1, err, sizeof err);
    free(pos);
    free(logits);
}

/* The context's cells are all free: a request alone fills the cache
 * (n_ctx - 1 cells) and ends with "length" instead of KV_FULL. (A functional
 * check that does not depend on the context's layout, which moves to
 * src/kv/kv.h.) */
static void assert_cache_empty(struct cs_sched *s, const int32_t *prompt, int n, int n_ctx)
{
    struct su_col f;
    su_col_init(&f);
    struct cs_req r = su_req_make(prompt, n, 0);
    r.ignore_eos = true;
    su_submit_ok(s, &r, &f);
    assert_true(su_col_wait(&f, 30));
    if (f.type != CS_EV_DONE)
        fail_msg("cache not empty: %s", f.msg);
    assert_string_equal(f.reason, "length");
    /* prompt + output fill the context, as llama-server counts (and as max_tokens allows): n_ctx - 1
     * cells, the last token is never fed */
    assert_int_equal(f.usage.prompt_tokens + f.n_tok, n_ctx);
    assert_true(f.usage.ctx_full);
    su_col_destroy(&f);
}

static char *detok(const struct cs_engine *e, const int32_t *ids, int n)
{
    char err[CLSPEC_ERRLEN];
    size_t need = 0, cap = 8192;
    char *buf = malloc(cap);
    if (cs_detokenize(e->tok, ids, (size_t)n, false, false, buf, cap, &need, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    return buf;
}

/* ---------------------------------------------------------------- tests */

/* Temperature 0: the stream equals plain greedy decoding and llama.cpp's
 * reference; text equals the detokenized tokens; logprobs are the model's
 * log-softmax and the alternatives are the top logits. */
static void test_greedy_equals_forward(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(256, 2, true);
    const struct golden_case *gc = &g->cases[0];
    const int N = 32, V = (int)e->model->hp.n_vocab;
    assert_true(gc->n_steps >= N);
    int32_t ref[32];
    float *l0 = malloc((size_t)V * sizeof *l0);
    plain_greedy(e, gc->prompt, gc->n_prompt, N, ref, l0);
    for (int i = 0; i < N; i++)
        assert_int_equal(ref[i], gc->steps[i].token);

    struct cs_sched *s = su_sched_new(e, 2, 4, false);
    struct su_col c;
    su_col_init(&c);
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, N);
    r.logprobs = true;
    r.top_logprobs = 3;
    su_submit_ok(s, &r, &c);
    assert_true(su_col_wait(&c, 30));
    assert_int_equal(c.type, CS_EV_DONE);
    assert_string_equal(c.reason, "length");
    assert_int_equal(c.n_tok, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(c.tok[i], ref[i]);
    char *want = detok(e, c.tok, N);
    assert_string_equal(c.text, want);
    free(want);
    assert_int_equal(c.usage.prompt_tokens, gc->n_prompt);
    assert_int_equal(c.usage.completion_tokens, N);
    assert_true(c.usage.queue_ms >= 0 && c.usage.prefill_ms > 0 && c.usage.decode_ms > 0);
    /* logprob of the first token = log-softmax of the plain logits */
    double m = l0[0], sum = 0;
    for (int v = 1; v < V; v++)
        m = l0[v] > m ? l0[v] : m;
    for (int v = 0; v < V; v++)
        sum += exp(l0[v] - m);
    double lse = m + log(sum);
    assert_float_equal(c.lp[0], l0[ref[0]] - lse, 1e-3);
    assert_int_equal(c.n_top0, 3);
    assert_int_equal(c.top0[0].token, ref[0]); /* greedy = the best alternative */
    assert_float_equal(c.top0[0].logprob, c.lp[0], 1e-6);
    assert_true(c.top0[0].logprob >= c.top0[1].logprob && c.top0[1].logprob >= c.top0[2].logprob);
    for (int i = 0; i < 3; i++)
        assert_float_equal(c.top0[i].logprob, l0[c.top0[i].token] - lse, 1e-3);
    for (int v = 0; v < V; v++) /* nothing outside the top 3 beats the third */
        if (v != c.top0[0].token && v != c.top0[1].token && v != c.top0[2].token)
            assert_true(l0[v] <= l0[c.top0[2].token]);
    assert_true(strlen(c.top0_txt[0]) > 0);
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_total, 1);
    assert_int_equal(st.requests_ok, 1);
    assert_int_equal(st.completion_tokens_total, N);
    assert_int_equal(st.kv_cells_used, 0);
    assert_int_equal(st.kv_cells_total, 256);
    assert_true(st.decode_tps_last > 0);
    cs_sched_free(s);
    su_col_destroy(&c);
    free(l0);
    su_engine_close(e);
    golden_free(g);
}

/* 6 requests on 2 slots (one of them sampled with a seed): all complete and
 * each streams what it streams alone. Prints tokens/s with 1 and 4 slots. */
static void test_more_requests_than_slots(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(512, 4, true);
    enum { NR = 6 };
    int32_t prompts[NR][64];
    int np[NR], maxt[NR];
    for (int i = 0; i < NR; i++) {
        const struct golden_case *gc = &g->cases[i % g->n_cases];
        np[i] = gc->n_prompt - (i >= g->n_cases ? 1 : 0); /* variants: one token shorter */
        memcpy(prompts[i], gc->prompt, (size_t)np[i] * sizeof(int32_t));
        maxt[i] = 20 + 7 * i;
    }
    struct su_col *solo = calloc(NR, sizeof *solo), *conc = calloc(NR, sizeof *conc);
    struct cs_sched *s = su_sched_new(e, 2, 8, false);
    for (int i = 0; i < NR; i++) {
        struct cs_req r = su_req_make(prompts[i], np[i], maxt[i]);
        if (i == 3) {
            r.sp.temp = 0.9f;
            r.sp.seed = 1234;
        }
        su_col_init(&solo[i]);
        su_submit_ok(s, &r, &solo[i]);
        assert_true(su_col_wait(&solo[i], 30));
    }
    for (int i = 0; i < NR; i++) {
        struct cs_req r = su_req_make(prompts[i], np[i], maxt[i]);
        if (i == 3) {
            r.sp.temp = 0.9f;
            r.sp.seed = 1234;
        }
        su_col_init(&conc[i]);
        su_submit_ok(s, &r, &conc[i]);
    }
    for (int i = 0; i < NR; i++) {
        assert_true(su_col_wait(&conc[i], 60));
        assert_int_equal(conc[i].type, CS_EV_DONE);
        assert_int_equal(solo[i].type, CS_EV_DONE);
        assert_int_equal(conc[i].n_tok, solo[i].n_tok);
        assert_memory_equal(conc[i].tok, solo[i].tok, (size_t)solo[i].n_tok * sizeof(int32_t));
        assert_string_equal(conc[i].text, solo[i].text);
        assert_int_equal(conc[i].status, 0);
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_ok, 2 * NR);
    assert_int_equal(st.slots_busy, 0);
    assert_int_equal(st.queue_depth, 0);
    cs_sched_free(s);

    /* throughput: 4 requests of 64 tokens one after another vs together on 4 slots */
    double tps[2];
    for (int mode = 0; mode < 2; mode++) {
        s = su_sched_new(e, 4, 8, false);
        struct su_col cc[4];
        double t0 = cs_now();
        for (int i = 0; i < 4; i++) {
            struct cs_req r = su_req_make(prompts[i], np[i], 64);
            r.ignore_eos = true;
            su_col_init(&cc[i]);
            su_submit_ok(s, &r, &cc[i]);
            if (mode == 0)
                assert_true(su_col_wait(&cc[i], 30));
        }
        int n = 0;
        for (int i = 0; i < 4; i++) {
            assert_true(su_col_wait(&cc[i], 30));
            n += cc[i].n_tok;
            su_col_destroy(&cc[i]);
        }
        tps[mode] = n / (cs_now() - t0);
        cs_sched_free(s);
    }
    print_message("# stories260K: %.0f tokens/s one request at a time, %.0f tokens/s with 4 concurrent\n", tps[0],
                  tps[1]);
    for (int i = 0; i < NR; i++) {
        su_col_destroy(&solo[i]);
        su_col_destroy(&conc[i]);
    }
    free(solo);
    free(conc);
    su_engine_close(e);
    golden_free(g);
}

/* queue full -> BUSY; prompt too long -> CONTEXT; bad fields -> INVAL / RANGE;
 * truncation keeps BOS + the end and generates as that prompt does. */
static void test_refusals_and_truncation(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(128, 1, true);
    const struct golden_case *gc = &g->cases[0];
    char err[CLSPEC_ERRLEN];
    uint64_t id;
    struct cs_sched *s = su_sched_new(e, 1, 1, false);
    struct su_col c[3];
    for (int i = 0; i < 3; i++)
        su_col_init(&c[i]);
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 100);
    r.ignore_eos = true;
    uint64_t id0 = su_submit_ok(s, &r, &c[0]), id1 = su_submit_ok(s, &r, &c[1]);
    assert_int_equal(cs_sched_submit(s, &r, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_BUSY);
    assert_non_null(strstr(err, "queue_max"));
    cs_sched_cancel(s, id1); /* queued: removed without any callback */
    cs_sched_cancel(s, id0);
    assert_int_equal(atomic_load(&c[1].calls), 0);
    assert_false(c[2].done);

    int32_t longp[200];
    longp[0] = gc->prompt[0]; /* BOS */
    for (int i = 1; i < 200; i++)
        longp[i] = gc->prompt[1 + i % (gc->n_prompt - 1)];
    struct cs_req rl = su_req_make(longp, 200, 10);
    assert_int_equal(cs_sched_submit(s, &rl, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_CONTEXT);
    assert_non_null(strstr(err, "context"));
    struct cs_req rb = su_req_make(gc->prompt, 0, 10);
    assert_int_equal(cs_sched_submit(s, &rb, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_INVAL);
    rb = su_req_make(gc->prompt, gc->n_prompt, 10);
    rb.top_logprobs = CS_MAX_TOP_LOGPROBS + 1;
    assert_int_equal(cs_sched_submit(s, &rb, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_INVAL);
    rb.top_logprobs = 0;
    rb.n_stop = 1;
    rb.stop[0] = "";
    assert_int_equal(cs_sched_submit(s, &rb, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_INVAL);
    int32_t badtok = 100000;
    rb = su_req_make(&badtok, 1, 10);
    assert_int_equal(cs_sched_submit(s, &rb, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_INVAL);
    assert_false(c[2].done);
    assert_int_equal(atomic_load(&c[2].calls), 0);
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_rejected, 6);
    assert_int_equal(st.requests_cancelled, 2);
    cs_sched_free(s);

    /* truncation: BOS + the last 63 tokens, then as that prompt */
    s = su_sched_new(e, 1, 1, true);
    struct su_col t1, t2;
    su_col_init(&t1);
    su_col_init(&t2);
    rl.max_tokens = 20;
    su_submit_ok(s, &rl, &t1);
    assert_true(su_col_wait(&t1, 30));
    assert_int_equal(t1.type, CS_EV_DONE);
    assert_int_equal(t1.usage.prompt_tokens, 64);
    int32_t cut[64];
    cut[0] = longp[0];
    memcpy(cut + 1, longp + 200 - 63, 63 * sizeof(int32_t));
    struct cs_req rc = su_req_make(cut, 64, 20);
    su_submit_ok(s, &rc, &t2);
    assert_true(su_col_wait(&t2, 30));
    assert_int_equal(t2.n_tok, 20);
    assert_int_equal(t1.n_tok, 20);
    assert_memory_equal(t1.tok, t2.tok, 20 * sizeof(int32_t));
    cs_sched_free(s);

    /* max_tokens over the limit -> RANGE; the default applies when 0 */
    struct cs_sched_params sp = {
        .n_slots = 1, .queue_max = 1, .max_tokens_default = 7, .max_tokens_limit = 50};
    assert_int_equal(cs_sched_new(su_door_of(e), &sp, &s, err, sizeof err), CLSPEC_OK);
    rb = su_req_make(gc->prompt, gc->n_prompt, 51);
    assert_int_equal(cs_sched_submit(s, &rb, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_RANGE);
    struct su_col d;
    su_col_init(&d);
    rb = su_req_make(gc->prompt, gc->n_prompt, 0);
    rb.ignore_eos = true;
    su_submit_ok(s, &rb, &d);
    assert_true(su_col_wait(&d, 30));
    assert_int_equal(d.n_tok, 7);
    assert_string_equal(d.reason, "length");
    cs_sched_free(s);
    /* more slots than the engine's sequences */
    sp.n_slots = 2;
    assert_int_equal(cs_sched_new(su_door_of(e), &sp, &s, err, sizeof err), CLSPEC_E_INVAL);
    /* a partitioned cache: a slot's context is n_ctx / n_seq_max = 64 */
    struct cs_engine *ep = su_engine_open(128, 2, false);
    s = su_sched_new(ep, 2, 2, false);
    struct cs_req r64 = su_req_make(longp, 64, 1), r63 = su_req_make(longp, 63, 1);
    assert_int_equal(cs_sched_submit(s, &r64, su_col_cb, &c[2], &id, err, sizeof err), CLSPEC_E_CONTEXT);
    struct su_col p63;
    su_col_init(&p63);
    su_submit_ok(s, &r63, &p63);
    assert_true(su_col_wait(&p63, 30));
    assert_int_equal(p63.type, CS_EV_DONE);
    assert_int_equal(p63.n_tok, 1);
    cs_sched_free(s);
    su_engine_close(ep);
    su_col_destroy(&p63);

    for (int i = 0; i < 3; i++)
        su_col_destroy(&c[i]);
    su_col_destroy(&t1);
    su_col_destroy(&t2);
    su_col_destroy(&d);
    su_engine_close(e);
    golden_free(g);
}

/* Cancel while generating (slow callbacks): slot and cells freed when cancel
 * returns, no callback runs after it; the slot then serves a new request. */
static void test_cancel(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(256, 2, true);
    const struct golden_case *gc = &g->cases[1];
    struct cs_sched *s = su_sched_new(e, 2, 4, false);
    struct su_col a, b;
    su_col_init(&a);
    su_col_init(&b);
    a.sleep_us = 3000;
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 0); /* until the context is full */
    r.ignore_eos = true;
    uint64_t ia = su_submit_ok(s, &r, &a);
    struct cs_req r2 = su_req_make(g->cases[0].prompt, g->cases[0].n_prompt, 40);
    su_submit_ok(s, &r2, &b);
    double t0 = cs_now();
    while (su_col_ntok(&a) < 8 && cs_now() - t0 < 30)
        usleep(1000);
    assert_true(su_col_ntok(&a) >= 8);
    struct cs_slot_info info[4];
    assert_int_equal(cs_sched_get_slots(s, info, 4), 2);
    int busy = 0;
    for (int i = 0; i < 2; i++)
        busy += info[i].busy;
    assert_true(busy >= 1);
    cs_sched_cancel(s, ia);
    assert_int_equal(atomic_load(&a.in_cb), 0); /* none running ... */
    int calls = atomic_load(&a.calls);
    assert_true(su_col_wait(&b, 30)); /* ... and none after (b kept the loop going) */
    usleep(20000);
    assert_int_equal(atomic_load(&a.calls), calls);
    assert_false(a.done);
    assert_int_equal(b.type, CS_EV_DONE);
    assert_int_equal(b.n_tok, 40);
    cs_sched_get_slots(s, info, 4);
    for (int i = 0; i < 2; i++) {
        assert_false(info[i].busy);
        assert_int_equal(info[i].n_past, 0);
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_cancelled, 1);
    assert_int_equal(st.kv_cells_used, 0);
    cs_sched_cancel(s, ia); /* finished / unknown ids are ignored */
    cs_sched_cancel(s, 12345);
    assert_cache_empty(s, gc->prompt, gc->n_prompt, 256);
    /* the freed slot serves again */
    struct su_col c2;
    su_col_init(&c2);
    r.max_tokens = 10;
    su_submit_ok(s, &r, &c2);
    assert_true(su_col_wait(&c2, 30));
    assert_int_equal(c2.n_tok, 10);
    cs_sched_free(s);
    su_col_destroy(&a);
    su_col_destroy(&b);
    su_col_destroy(&c2);
    su_engine_close(e);
    golden_free(g);
}

/* A unified cache too small for two long requests: the younger is
 * preempted and resumed; both complete with the tokens of the solo run. */
static void test_kv_full(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(64, 2, true);
    const struct golden_case *gc = &g->cases[0];
    struct cs_sched *s = su_sched_new(e, 2, 4, false);
    struct su_col solo, a, b;
    su_col_init(&solo);
    su_col_init(&a);
    su_col_init(&b);
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 50);
    r.ignore_eos = true;
    su_submit_ok(s, &r, &solo);
    assert_true(su_col_wait(&solo, 30));
    assert_int_equal(solo.n_tok, 50);
    su_submit_ok(s, &r, &a);
    su_submit_ok(s, &r, &b);
    assert_true(su_col_wait(&a, 30));
    assert_true(su_col_wait(&b, 30));
    /* the cache cannot hold both: the younger is preempted and resumed; both complete, each with the
     * tokens of the solo run (a resumed stream continues exactly where it stopped) */
    assert_int_equal(a.type, CS_EV_DONE);
    assert_int_equal(b.type, CS_EV_DONE);
    assert_int_equal(a.n_tok, 50);
    assert_int_equal(b.n_tok, 50);
    assert_memory_equal(a.tok, solo.tok, 50 * sizeof(int32_t));
    assert_memory_equal(b.tok, solo.tok, 50 * sizeof(int32_t));
    assert_int_equal(a.usage.completion_tokens, 50);
    assert_int_equal(b.usage.completion_tokens, 50);
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_failed, 0);
    assert_true(st.preemptions >= 1);
    assert_int_equal(st.kv_cells_used, 0);
    assert_cache_empty(s, gc->prompt, gc->n_prompt, 64);
    cs_sched_free(s);
    su_col_destroy(&solo);
    su_col_destroy(&a);
    su_col_destroy(&b);
    su_engine_close(e);
    golden_free(g);
}

/* KV pressure: 8 long greedy requests on 4 slots sharing a cache that holds
 * about two of them: every request completes (none fails mid-stream) with
 * the tokens of its solo run, preemptions happen and are counted, no cell
 * is left behind. And a request that could never fit (prompt + max_tokens
 * over a slot's context) is refused at admission, naming the numbers. */
static void test_preempt_many(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    enum { N = 8, GEN = 60, CTX = 160 };
    struct cs_engine *e = su_engine_open(CTX, 4, true);
    int32_t *solo[N];
    for (int i = 0; i < N; i++) {
        const struct golden_case *gc = &g->cases[i % g->n_cases];
        solo[i] = malloc(GEN * sizeof(int32_t));
        assert_non_null(solo[i]);
        plain_greedy(e, gc->prompt, gc->n_prompt, GEN, solo[i], NULL);
    }
    struct cs_sched *s = su_sched_new(e, 4, 16, false);
    struct su_col c[N];
    for (int i = 0; i < N; i++) {
        const struct golden_case *gc = &g->cases[i % g->n_cases];
        su_col_init(&c[i]);
        struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, GEN);
        r.ignore_eos = true;
        su_submit_ok(s, &r, &c[i]);
    }
    for (int i = 0; i < N; i++) {
        assert_true(su_col_wait(&c[i], 120));
        if (c[i].type != CS_EV_DONE)
            fail_msg("request %d: %s", i, c[i].msg);
        assert_int_equal(c[i].n_tok, GEN);
        assert_int_equal(c[i].usage.completion_tokens, GEN);
        assert_memory_equal(c[i].tok, solo[i], GEN * sizeof(int32_t));
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_failed, 0);
    assert_int_equal(st.requests_ok, N);
    assert_true(st.preemptions >= 1);
    assert_int_equal(st.kv_cells_used, 0);
    /* never fits: prompt + max_tokens over a slot's context (CTX: one slot may use the whole cache) */
    const struct golden_case *gc = &g->cases[0];
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, CTX - gc->n_prompt + 1);
    char err[CLSPEC_ERRLEN], want[200];
    uint64_t id = 0;
    assert_int_equal(cs_sched_submit(s, &r, su_col_cb, &c[0], &id, err, sizeof err), CLSPEC_E_RANGE);
    snprintf(want, sizeof want, "prompt of %d tokens + 'max_tokens' %d = %d tokens; a slot holds at most %d "
             "(lower max_tokens to %d or less)", gc->n_prompt, CTX - gc->n_prompt + 1, CTX + 1, CTX,
             CTX - gc->n_prompt);
    if (!strstr(err, want))
        fail_msg("%s", err);
    /* exactly what fits is admitted */
    r.max_tokens = CTX - gc->n_prompt;
    su_col_destroy(&c[0]);
    su_col_init(&c[0]);
    r.ignore_eos = true;
    su_submit_ok(s, &r, &c[0]);
    assert_true(su_col_wait(&c[0], 60));
    assert_int_equal(c[0].type, CS_EV_DONE);
    cs_sched_free(s);
    for (int i = 0; i < N; i++) {
        su_col_destroy(&c[i]);
        free(solo[i]);
    }
    su_engine_close(e);
    golden_free(g);
}

/* Prefix reuse: a request whose prompt starts with tokens a running
 * request's sequence holds shares those cells (usage.cached_tokens) instead
 * of prefilling them, and its tokens equal a cold run's; a prompt held whole
 * reuses all but its last token. */
static void test_prefix_reuse(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(512, 2, true);
    const struct golden_case *ga = &g->cases[2], *gb = &g->cases[3];
    enum { NA = 150, NB = 24 };
    int32_t pb[64];
    int nb = ga->n_prompt + 4;
    memcpy(pb, ga->prompt, (size_t)ga->n_prompt * sizeof(int32_t));
    memcpy(pb + ga->n_prompt, gb->prompt + 1, 4 * sizeof(int32_t));
    int32_t *cold_a = malloc(NA * sizeof(int32_t)), cold_b[NB], cold_c[NB];
    plain_greedy(e, ga->prompt, ga->n_prompt, NA, cold_a, NULL);
    plain_greedy(e, pb, nb, NB, cold_b, NULL);
    plain_greedy(e, ga->prompt, ga->n_prompt, NB, cold_c, NULL);
    struct cs_sched *s = su_sched_new(e, 2, 4, false);
    for (int round = 0; round < 2; round++) {
        struct su_col a, b;
        su_col_init(&a);
        su_col_init(&b);
        struct cs_req ra = su_req_make(ga->prompt, ga->n_prompt, NA);
        ra.ignore_eos = true;
        su_submit_ok(s, &ra, &a);
        while (su_col_ntok(&a) < 2 && !a.done)
            usleep(1000);
        /* round 0: a longer prompt starting with a's; round 1: a's prompt itself */
        struct cs_req rb = round == 0 ? su_req_make(pb, nb, NB) : su_req_make(ga->prompt, ga->n_prompt, NB);
        rb.ignore_eos = true;
        su_submit_ok(s, &rb, &b);
        assert_true(su_col_wait(&b, 30));
        assert_true(su_col_wait(&a, 30));
        assert_int_equal(a.type, CS_EV_DONE);
        assert_int_equal(b.type, CS_EV_DONE);
        assert_int_equal(a.usage.cached_tokens, 0);
        if (round == 0)
            assert_true(b.usage.cached_tokens >= ga->n_prompt);
        else
            assert_int_equal(b.usage.cached_tokens, ga->n_prompt - 1);
        print_message("# prefix reuse round %d: %d of %d prompt tokens cached\n", round, b.usage.cached_tokens,
                      b.usage.prompt_tokens);
        assert_int_equal(a.n_tok, NA);
        assert_memory_equal(a.tok, cold_a, NA * sizeof(int32_t));
        assert_int_equal(b.n_tok, NB);
        assert_memory_equal(b.tok, round == 0 ? cold_b : cold_c, NB * sizeof(int32_t));
        su_col_destroy(&a);
        su_col_destroy(&b);
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_true(st.cached_tokens_total >= (uint64_t)(2 * ga->n_prompt - 1));
    assert_cache_empty(s, ga->prompt, ga->n_prompt, 512);
    cs_sched_free(s);
    free(cold_a);
    su_engine_close(e);
    golden_free(g);
}

/* max_tokens -> "length"; a stop string -> "stop" with the text before it. */
static void test_stop_and_length(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(256, 1, true);
    const struct golden_case *gc = &g->cases[0];
    struct cs_sched *s = su_sched_new(e, 1, 2, false);
    struct su_col full, st1, st2;
    su_col_init(&full);
    su_col_init(&st1);
    su_col_init(&st2);
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 48);
    su_submit_ok(s, &r, &full);
    assert_true(su_col_wait(&full, 30));
    assert_string_equal(full.reason, "length");
    const char *at = strstr(full.text, "Lily");
    assert_non_null(at);
    r.n_stop = 2;
    r.stop[0] = "Lily";
    r.stop[1] = "never appears";
    su_submit_ok(s, &r, &st1);
    assert_true(su_col_wait(&st1, 30));
    assert_string_equal(st1.reason, "stop");
    assert_int_equal(st1.n_text, (size_t)(at - full.text));
    assert_memory_equal(st1.text, full.text, st1.n_text);
    assert_true(st1.n_tok < 48);
    /* a stop string whose prefix shows up: held back, then released at the end */
    r.n_stop = 1;
    r.stop[0] = "Lily and";
    su_submit_ok(s, &r, &st2);
    assert_true(su_col_wait(&st2, 30));
    assert_string_equal(st2.text, full.text);
    assert_string_equal(st2.reason, "length");
    cs_sched_free(s);
    su_col_destroy(&full);
    su_col_destroy(&st1);
    su_col_destroy(&st2);
    su_engine_close(e);
    golden_free(g);
}

/* drain: running and queued requests finish, new ones are refused; with a
 * short timeout the rest end with CS_EV_ERROR SHUTDOWN. */
static void test_drain(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(512, 1, true);
    const struct golden_case *gc = &g->cases[0];
    struct cs_sched *s = su_sched_new(e, 1, 4, false);
    struct su_col a, b, c, d;
    su_col_init(&a);
    su_col_init(&b);
    su_col_init(&c);
    su_col_init(&d);
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 20);
    r.ignore_eos = true;
    su_submit_ok(s, &r, &a);
    su_submit_ok(s, &r, &b);
    assert_int_equal(cs_sched_drain(s, 30), 0);
    assert_true(a.done && b.done);
    assert_int_equal(a.type, CS_EV_DONE);
    assert_int_equal(b.type, CS_EV_DONE);
    assert_int_equal(b.n_tok, 20);
    char err[CLSPEC_ERRLEN];
    uint64_t id;
    assert_int_equal(cs_sched_submit(s, &r, su_col_cb, &c, &id, err, sizeof err), CLSPEC_E_SHUTDOWN);
    cs_sched_free(s);

    s = su_sched_new(e, 1, 4, false);
    r.max_tokens = 0; /* until the context (512) is full: longer than the timeout */
    su_submit_ok(s, &r, &c);
    su_submit_ok(s, &r, &d);
    while (su_col_ntok(&c) < 2)
        usleep(1000);
    assert_int_equal(cs_sched_drain(s, 0.05), 2);
    assert_true(c.done && d.done);
    assert_int_equal(c.type, CS_EV_ERROR);
    assert_int_equal(c.status, CLSPEC_E_SHUTDOWN);
    assert_int_equal(d.type, CS_EV_ERROR);
    assert_int_equal(d.status, CLSPEC_E_SHUTDOWN);
    assert_int_equal(atomic_load(&d.calls), 1);
    struct cs_slot_info info;
    cs_sched_get_slots(s, &info, 1);
    assert_false(info.busy);
    assert_int_equal(info.n_past, 0);
    cs_sched_free(s); /* draining refuses new work: a new scheduler on the same context */
    s = su_sched_new(e, 1, 4, false);
    assert_cache_empty(s, gc->prompt, gc->n_prompt, 512);
    cs_sched_free(s);
    su_col_destroy(&a);
    su_col_destroy(&b);
    su_col_destroy(&c);
    su_col_destroy(&d);
    su_engine_close(e);
    golden_free(g);
}

/* Sampling with a fixed seed: the same seed gives the same stream, another seed another. */
static void test_seeded_sampling(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(256, 2, true);
    const struct golden_case *gc = &g->cases[0];
    struct cs_sched *s = su_sched_new(e, 2, 4, false);
    struct su_col c[3];
    uint64_t seeds[3] = {7, 7, 8};
    for (int i = 0; i < 3; i++) {
        su_col_init(&c[i]);
        struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 40);
        r.sp.temp = 1.0f;
        r.sp.seed = seeds[i];
        r.ignore_eos = true;
        su_submit_ok(s, &r, &c[i]);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(su_col_wait(&c[i], 30));
        assert_int_equal(c[i].n_tok, 40);
    }
    assert_memory_equal(c[0].tok, c[1].tok, 40 * sizeof(int32_t));
    assert_memory_not_equal(c[0].tok, c[2].tok, 40 * sizeof(int32_t));
    cs_sched_free(s);
    for (int i = 0; i < 3; i++)
        su_col_destroy(&c[i]);
    su_engine_close(e);
    golden_free(g);
}

/* End of generation: at a nearly uniform temperature some seed samples EOS
 * (the model itself never ends a story with it); that request ends with
 * "stop" and no TOKEN event for EOS, and with ignore_eos the same seed
 * streams the same tokens, EOS included, and goes on. One slot: every run
 * sees the same batch shapes (the forward's rounding depends on them, which
 * a temperature of 1000 would notice). */
static void test_eos(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(256, 1, true);
    const struct golden_case *gc = &g->cases[0];
    const int32_t eos = cs_tokenizer_eos(e->tok);
    struct cs_sched *s = su_sched_new(e, 1, 64, false);
    enum { NS = 24, MT = 100 };
    struct su_col *c = calloc(NS, sizeof *c);
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, MT);
    r.sp.temp = 1000.0f; /* nearly uniform: the model itself never ends a story with EOS */
    r.sp.top_k = 0;
    r.sp.top_p = 1.0f;
    r.sp.min_p = 0.0f;
    for (int i = 0; i < NS; i++) {
        su_col_init(&c[i]);
        r.sp.seed = (uint64_t)i + 1;
        su_submit_ok(s, &r, &c[i]);
    }
    int hit = -1;
    for (int i = 0; i < NS; i++) {
        assert_true(su_col_wait(&c[i], 60));
        if (c[i].type != CS_EV_DONE)
            fail_msg("seed %d: %s", i + 1, c[i].msg);
        for (int k = 0; k < c[i].n_tok; k++)
            assert_int_not_equal(c[i].tok[k], eos);
        if (strcmp(c[i].reason, "stop") == 0) {
            assert_true(c[i].n_tok < MT);
            assert_int_equal(c[i].usage.completion_tokens, c[i].n_tok + 1);
            if (hit < 0)
                hit = i;
        } else {
            assert_int_equal(c[i].n_tok, MT);
        }
    }
    assert_true(hit >= 0);
    struct su_col ig;
    su_col_init(&ig);
    r.sp.seed = (uint64_t)hit + 1;
    r.ignore_eos = true;
    su_submit_ok(s, &r, &ig);
    assert_true(su_col_wait(&ig, 30));
    assert_int_equal(ig.n_tok, MT);
    assert_memory_equal(ig.tok, c[hit].tok, (size_t)c[hit].n_tok * sizeof(int32_t));
    assert_int_equal(ig.tok[c[hit].n_tok], eos);
    cs_sched_free(s);
    for (int i = 0; i < NS; i++)
        su_col_destroy(&c[i]);
    su_col_destroy(&ig);
    free(c);
    su_engine_close(e);
    golden_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_equals_forward),
        cmocka_unit_test(test_more_requests_than_slots),
        cmocka_unit_test(test_refusals_and_truncation),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_kv_full),
        cmocka_unit_test(test_preempt_many),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_stop_and_length),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_seeded_sampling),
        cmocka_unit_test(test_eos),
    };
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
