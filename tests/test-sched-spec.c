/* test-sched-spec.c: the daemon's scheduler over stories260K with a
 * speculator: lossless output, cancellation and limits, speculating and
 * non-speculating requests sharing one decode path and one KV-full policy,
 * and the taps of a tap-reading speculator's prompts (spec_core_prefill).
 * Without one: tests/test-sched.c; the helpers: tests/schedutil.h. */
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

/* ---------------------------------------------------------------- speculation (specd) */

/* A speculator over e for n_slots slots: type "ngram" or "draft" (the
 * distilled stories260K drafter); NULL: none. n_max as in the daemon. */
struct specrig {
    struct cs_plugin *pl;
    struct cs_spec *sp;
    char *draft_path;
};

static void specrig_open(struct cs_engine *e, const char *type, int n_slots, int n_max, struct specrig *r)
{
    memset(r, 0, sizeof *r);
    char err[CLSPEC_ERRLEN];
    r->draft_path = tu_shared_path("models/derived/stories260K-draft-distilled.gguf");
    struct cs_plugin_kv kv[] = {{"model", r->draft_path}, {"type_k", "f16"}, {"type_v", "f16"}};
    struct cs_plugin_params pp = {.type = type, .kv = kv, .n_kv = 3, .engine = e, .n_slots = (uint32_t)n_slots};
    if (type && cs_plugin_load(&pp, &r->pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("plugin %s: %s", type, err);
    struct cs_spec_params p = cs_spec_defaults();
    p.n_max = n_max;
    p.n_min = 0;
    p.p_min = 0.0f;
    if (cs_spec_new(su_door_of(e), r->pl, &p, n_slots, &r->sp, err, sizeof err) != CLSPEC_OK)
        fail_msg("spec: %s", err);
}

static void specrig_close(struct specrig *r)
{
    cs_spec_free(r->sp);
    cs_plugin_free(r->pl);
    free(r->draft_path);
    memset(r, 0, sizeof *r);
}

static struct cs_sched *sched_spec_new(struct cs_engine *e, int n_slots, struct cs_spec *sp, bool core_prefill)
{
    struct cs_sched_params p = {
        .n_slots = n_slots, .queue_max = 16, .spec = sp, .spec_core_prefill = core_prefill};
    struct cs_sched *s = NULL;
    char err[CLSPEC_ERRLEN];
    if (cs_sched_new(su_door_of(e), &p, &s, err, sizeof err) != CLSPEC_OK)
        fail_msg("sched: %s", err);
    return s;
}

/* No cell held by any slot's sequence, none used in the cache, no spec slot active. */
static void assert_no_cells(struct cs_sched *s, struct cs_engine *e, const struct cs_spec *sp, int n_slots)
{
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.kv_cells_used, 0);
    for (int i = 0; i < n_slots; i++) {
        assert_int_equal(cs_spec_kv_cells(su_door_of(e), i), 0);
        if (sp)
            assert_false(sp->slots[i].active);
    }
}

/* Greedy output with speculation (ngram, draft) at parallel 1 and 4 is
 * byte-identical to the scheduler without it, for every prompt of the
 * reference, all prompts submitted at once; speculative = false on a server
 * with a speculator gives the same text and no drafts. Also with
 * spec_core_prefill (for tap-reading speculators: no prefix reuse, the
 * chunks keep the taps). */
static void test_spec_lossless(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    enum { NMAX = 8, MAXT = 64 };
    int nc = g->n_cases < NMAX ? g->n_cases : NMAX;
    struct cs_engine *e = su_engine_open(1024, 4, true);
    /* reference: no speculator, one request at a time */
    struct su_col *ref = calloc(NMAX, sizeof *ref);
    struct cs_sched *s = su_sched_new(e, 1, 16, false);
    for (int i = 0; i < nc; i++) {
        su_col_init(&ref[i]);
        struct cs_req r = su_req_make(g->cases[i].prompt, g->cases[i].n_prompt, MAXT);
        su_submit_ok(s, &r, &ref[i]);
        assert_true(su_col_wait(&ref[i], 60));
        assert_int_equal(ref[i].type, CS_EV_DONE);
        assert_false(ref[i].usage.speculative);
    }
    cs_sched_free(s);
    static const char *const types[] = {"ngram", "draft"};
    static const int pars[] = {1, 4, 4};
    for (int ti = 0; ti < 2; ti++)
        for (int pi = 0; pi < 3; pi++) {
            bool core = pi == 2; /* the third round: parallel 4 with spec_core_prefill */
            struct specrig rig;
            specrig_open(e, types[ti], pars[pi], 8, &rig);
            s = sched_spec_new(e, pars[pi], rig.sp, core);
            struct su_col *c = calloc(NMAX + 1, sizeof *c);
            for (int i = 0; i <= nc; i++) {
                su_col_init(&c[i]);
                int k = i < nc ? i : 0; /* the extra one: prompt 0 with speculative = false */
                struct cs_req r = su_req_make(g->cases[k].prompt, g->cases[k].n_prompt, MAXT);
                r.speculative = i < nc;
                su_submit_ok(s, &r, &c[i]);
            }
            long drafted = 0, accepted = 0;
            for (int i = 0; i <= nc; i++) {
                int k = i < nc ? i : 0;
                assert_true(su_col_wait(&c[i], 120));
                if (c[i].type != CS_EV_DONE)
                    fail_msg("%s parallel %d prompt %d: %s", types[ti], pars[pi], k, c[i].msg);
                if (c[i].n_tok != ref[k].n_tok || memcmp(c[i].tok, ref[k].tok, (size_t)ref[k].n_tok * 4) ||
                    strcmp(c[i].text, ref[k].text))
                    fail_msg("%s parallel %d prompt %d: output differs from plain decoding\n  plain: %s\n  spec:  %s",
                             types[ti], pars[pi], k, ref[k].text, c[i].text);
                assert_string_equal(c[i].reason, ref[k].reason);
                assert_int_equal(c[i].usage.completion_tokens, ref[k].usage.completion_tokens);
                if (i < nc) {
                    assert_true(c[i].usage.speculative);
                    assert_true(c[i].usage.spec_steps >= 1);
                    assert_true(c[i].usage.draft_accepted <= c[i].usage.draft_n);
                    /* every token after the first comes from a step (the first one from the last prompt
                     * chunk's logits, also for spec_core_prefill: its chunks keep the taps instead) */
                    assert_int_equal(c[i].usage.spec_emitted, c[i].usage.completion_tokens - 1);
                    drafted += c[i].usage.draft_n;
                    accepted += c[i].usage.draft_accepted;
                } else {
                    assert_false(c[i].usage.speculative);
                    assert_int_equal(c[i].usage.draft_n, 0);
                }
                su_col_destroy(&c[i]);
            }
            print_message("# %s parallel %d%s: %ld drafted, %ld accepted (%.0f%%)\n", types[ti], pars[pi], core ? " (spec_core_prefill)" : "",
                          drafted, accepted, drafted ? 100.0 * (double)accepted / (double)drafted : 0.0);
            if (ti == 1)
                assert_true(drafted > 0 && accepted > 0); /* the distilled drafter drafts and is right at times */
            struct cs_sched_stats st;
            cs_sched_get_stats(s, &st);
            assert_string_equal(st.spec_name, types[ti]);
            assert_int_equal(st.spec_requests, nc);
            assert_int_equal(st.spec_drafted, drafted);
            assert_int_equal(st.spec_accepted, accepted);
            assert_no_cells(s, e, rig.sp, pars[pi]);
            cs_sched_free(s);
            specrig_close(&rig);
            free(c);
        }
    for (int i = 0; i < nc; i++)
        su_col_destroy(&ref[i]);
    free(ref);
    su_engine_close(e);
    golden_free(g);
}

/* Cancelling a request mid-speculation frees its cells (counted) and its
 * speculator slot; max_tokens and stop strings end a request inside a
 * multi-token step exactly where plain decoding ends it; slots report
 * whether speculation is on. */
static void test_spec_cancel_and_limits(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(512, 2, true);
    const struct golden_case *gc = &g->cases[0];
    struct specrig rig;
    specrig_open(e, "draft", 2, 8, &rig);
    struct cs_sched *s = sched_spec_new(e, 2, rig.sp, false);
    struct su_col a, b;
    su_col_init(&a);
    su_col_init(&b);
    a.sleep_us = 2000;
    struct cs_req r = su_req_make(gc->prompt, gc->n_prompt, 0); /* until the context is full */
    r.ignore_eos = true;
    uint64_t ia = su_submit_ok(s, &r, &a);
    struct cs_req r2 = su_req_make(g->cases[1].prompt, g->cases[1].n_prompt, 40);
    r2.speculative = false;
    su_submit_ok(s, &r2, &b);
    double t0 = cs_now();
    while (su_col_ntok(&a) < 12 && cs_now() - t0 < 30)
        usleep(1000);
    assert_true(su_col_ntok(&a) >= 12);
    struct cs_slot_info info[2];
    cs_sched_get_slots(s, info, 2);
    int on = 0, busy = 0;
    for (int i = 0; i < 2; i++) {
        busy += info[i].busy;
        on += info[i].busy && info[i].speculative;
    }
    assert_int_equal(on, 1); /* a speculates, b (speculative = false) does not */
    assert_true(busy >= 1);
    cs_sched_cancel(s, ia);
    assert_true(su_col_wait(&b, 30));
    assert_false(a.done);
    assert_int_equal(b.n_tok, 40);
    assert_false(b.usage.speculative);
    assert_no_cells(s, e, rig.sp, 2);
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_cancelled, 1);

    /* limits inside a step: plain decoding of the same request is the reference */
    struct su_col p0, p1, q0, q1;
    su_col_init(&p0);
    su_col_init(&p1);
    su_col_init(&q0);
    su_col_init(&q1);
    struct cs_req lim = su_req_make(gc->prompt, gc->n_prompt, 13);
    lim.speculative = false;
    su_submit_ok(s, &lim, &p0);
    assert_true(su_col_wait(&p0, 30));
    lim.speculative = true;
    su_submit_ok(s, &lim, &q0);
    assert_true(su_col_wait(&q0, 30));
    assert_int_equal(q0.n_tok, 13);
    assert_string_equal(q0.reason, "length");
    assert_string_equal(q0.text, p0.text);
    assert_true(q0.usage.speculative);
    /* a stop string: the plain text's 6th..9th characters */
    char stop[8];
    assert_true(strlen(p0.text) > 12);
    snprintf(stop, sizeof stop, "%.4s", p0.text + 6);
    struct cs_req st_r = su_req_make(gc->prompt, gc->n_prompt, 40);
    st_r.stop[0] = stop;
    st_r.n_stop = 1;
    st_r.speculative = false;
    su_submit_ok(s, &st_r, &p1);
    assert_true(su_col_wait(&p1, 30));
    st_r.speculative = true;
    su_submit_ok(s, &st_r, &q1);
    assert_true(su_col_wait(&q1, 30));
    assert_string_equal(p1.reason, "stop");
    assert_string_equal(q1.reason, "stop");
    assert_string_equal(q1.text, p1.text);
    assert_no_cells(s, e, rig.sp, 2);
    cs_sched_free(s);
    specrig_close(&rig);
    su_col_destroy(&a);
    su_col_destroy(&b);
    su_col_destroy(&p0);
    su_col_destroy(&p1);
    su_col_destroy(&q0);
    su_col_destroy(&q1);
    su_engine_close(e);
    golden_free(g);
}

/* A unified cache too small for two long speculating requests: the younger
 * is preempted and resumed, both complete; no cell is left behind. */
static void test_spec_kv_full(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(128, 2, true);
    struct specrig rig;
    specrig_open(e, "ngram", 2, 8, &rig);
    struct cs_sched *s = sched_spec_new(e, 2, rig.sp, false);
    struct su_col a, b;
    su_col_init(&a);
    su_col_init(&b);
    struct cs_req r = su_req_make(g->cases[0].prompt, g->cases[0].n_prompt, 100);
    r.ignore_eos = true;
    su_submit_ok(s, &r, &a);
    struct cs_req r2 = su_req_make(g->cases[1].prompt, g->cases[1].n_prompt, 100);
    r2.ignore_eos = true;
    su_submit_ok(s, &r2, &b);
    assert_true(su_col_wait(&a, 60));
    assert_true(su_col_wait(&b, 60));
    /* the younger is preempted (speculation shrinks first: the core retries a drafted slot without drafts),
     * resumed later; both complete */
    assert_int_equal(a.type, CS_EV_DONE);
    assert_int_equal(b.type, CS_EV_DONE);
    assert_int_equal(a.n_tok, 100);
    assert_int_equal(b.n_tok, 100);
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_int_equal(st.requests_failed, 0);
    assert_true(st.preemptions >= 1);
    assert_no_cells(s, e, rig.sp, 2);
    cs_sched_free(s);
    specrig_close(&rig);
    su_col_destroy(&a);
    su_col_destroy(&b);
    su_engine_close(e);
    golden_free(g);
}

/* One decode path: a speculating request and a request with logprobs (no
 * drafts, same core) share one forward per step. Each alone, then both at
 * once on a unified cache too small for both: one is preempted and resumed
 * (one policy for decoding and prompt rows alike), and both complete with
 * the tokens (and logprobs) of their solo runs; no cell is left behind. */
static void test_spec_mixed_kv_full(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(128, 2, true);
    struct specrig rig;
    specrig_open(e, "ngram", 2, 8, &rig);
    struct cs_sched *s = sched_spec_new(e, 2, rig.sp, false);
    struct cs_req r[2] = {su_req_make(g->cases[0].prompt, g->cases[0].n_prompt, 100),
                          su_req_make(g->cases[1].prompt, g->cases[1].n_prompt, 100)};
    r[0].ignore_eos = r[1].ignore_eos = true;
    r[1].logprobs = true;
    struct su_col solo[2], c[2];
    for (int i = 0; i < 2; i++) {
        su_col_init(&solo[i]);
        su_col_init(&c[i]);
        su_submit_ok(s, &r[i], &solo[i]);
        assert_true(su_col_wait(&solo[i], 60));
        assert_int_equal(solo[i].type, CS_EV_DONE);
        assert_int_equal(solo[i].n_tok, 100);
        assert_int_equal(solo[i].usage.speculative, i == 0);
    }
    assert_true(solo[0].usage.draft_n > 0);
    assert_int_equal(solo[1].usage.draft_n, 0);
    for (int i = 0; i < 2; i++)
        su_submit_ok(s, &r[i], &c[i]);
    for (int i = 0; i < 2; i++)
        assert_true(su_col_wait(&c[i], 60));
    for (int i = 0; i < 2; i++) { /* one is preempted and resumed: both equal their solo runs */
        assert_int_equal(c[i].type, CS_EV_DONE);
        assert_int_equal(c[i].n_tok, 100);
        assert_memory_equal(c[i].tok, solo[i].tok, 100 * sizeof(int32_t));
        if (i == 1)
            for (int t = 0; t < 100; t++)
                assert_float_equal(c[i].lp[t], solo[i].lp[t], 1e-6);
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(s, &st);
    assert_true(st.preemptions >= 1);
    assert_no_cells(s, e, rig.sp, 2);
    cs_sched_free(s);
    specrig_close(&rig);
    for (int i = 0; i < 2; i++) {
        su_col_destroy(&solo[i]);
        su_col_destroy(&c[i]);
    }
    su_engine_close(e);
    golden_free(g);
}

/* Whether a slot's logits come back to the host follows from its request
 * (the daemon marks the request's sampler, cs_api_sampler_keep_logits; the
 * core reads it at slot_begin): a greedy request without logprobs verifies
 * on the device (only argmaxes come back, counted in n_greedy_rows), one
 * with logprobs gets every token's logits row and reports finite
 * log-probabilities, on the same server one after the other. */
static void test_spec_logits_follow_request(void **state)
{
    (void)state;
    struct golden *g = su_gold();
    struct cs_engine *e = su_engine_open(1024, 2, true);
    struct specrig rig;
    specrig_open(e, "ngram", 2, 4, &rig);
    struct cs_sched *s = sched_spec_new(e, 2, rig.sp, false);
    for (int round = 0; round < 3; round++) {
        const bool lp = round == 1; /* plain, logprobs, plain again */
        const uint64_t rows0 = rig.sp->total.n_greedy_rows;
        struct su_col c;
        su_col_init(&c);
        struct cs_req r = su_req_make(g->cases[0].prompt, g->cases[0].n_prompt, 32);
        r.logprobs = lp;
        su_submit_ok(s, &r, &c);
        assert_true(su_col_wait(&c, 60));
        if (c.type != CS_EV_DONE)
            fail_msg("round %d: %s", round, c.msg);
        const uint64_t rows = rig.sp->total.n_greedy_rows - rows0;
        int below = 0;
        for (int t = 0; t < c.n_tok; t++) {
            assert_true(isfinite(c.lp[t]) && c.lp[t] <= 0.0f);
            below += c.lp[t] < 0.0f;
        }
        print_message("# round %d (logprobs %s): %d tokens, %llu rows verified on the device\n", round,
                      lp ? "on" : "off", c.n_tok, (unsigned long long)rows);
        if (lp) {
            assert_int_equal(rows, 0);
            assert_true(below > 0);
        } else {
            assert_true(rows > 0);
            assert_int_equal(below, 0);
        }
        su_col_destroy(&c);
    }
    cs_sched_free(s);
    specrig_close(&rig);
    su_engine_close(e);
    golden_free(g);
}

/* ---------------------------------------------------------------- taps (spec_core_prefill) */

/* A tap-reading speculator, faked: the ngram plugin with the taps capability
 * and a tap request, whose slot_begin and accept entries are wrapped to read
 * the taps the core hands it (tap_get) and keep them for the test. */
#define TAP_NL 2      /* tapped layers: 1 and n_layer (before the final norm) */
#define TAP_MAXEV 64  /* slot_begin calls kept */

struct tap_begin {    /* what one slot_begin handed the plugin */
    int32_t slot;
    int32_t n_prompt; /* the prompt and its first token, as slot_begin got them */
    int32_t *prompt;  /* (n_prompt) */
    int32_t n_rows, first_pos;
    float *rows;      /* (TAP_NL, n_rows, E) as tap_get laid them out */
};

static struct {
    pthread_mutex_t mu;
    struct cs_plugin *pl;
    int (*slot_begin)(void *, int32_t, const int32_t *, int32_t, char *, size_t); /* the plugin's own */
    void (*accept)(void *, int32_t, int32_t, int32_t, const int32_t *, int32_t);
    size_t E;
    struct tap_begin ev[TAP_MAXEV];
    int n_ev;
    int32_t hist[CS_MAX_SEQ]; /* per slot: its history's length (prompt, first token, accepted tokens) */
    int n_accept, n_bad;      /* accept calls; of them with taps other than the verification's rows */
    char why[256];            /* the first bad one */
} g_tap = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int tap_slot_begin(void *state, int32_t slot, const int32_t *prompt, int32_t n_prompt, char *err,
                          size_t errlen)
{
    int32_t n_rows = 0, first = -1;
    const float *t = g_tap.pl->host.tap_get(&g_tap.pl->host, slot, &n_rows, &first);
    pthread_mutex_lock(&g_tap.mu);
    if (g_tap.n_ev < TAP_MAXEV) {
        struct tap_begin *b = &g_tap.ev[g_tap.n_ev++];
        b->slot = slot;
        b->n_prompt = n_prompt;
        b->prompt = malloc((size_t)n_prompt * sizeof *b->prompt);
        memcpy(b->prompt, prompt, (size_t)n_prompt * sizeof *b->prompt);
        b->n_rows = t ? n_rows : 0;
        b->first_pos = first;
        b->rows = NULL;
        if (t) {
            const size_t n = (size_t)TAP_NL * (size_t)n_rows * g_tap.E;
            b->rows = malloc(n * sizeof *b->rows);
            memcpy(b->rows, t, n * sizeof *b->rows);
        }
    }
    g_tap.hist[slot] = n_prompt;
    pthread_mutex_unlock(&g_tap.mu);
    return g_tap.slot_begin ? g_tap.slot_begin(state, slot, prompt, n_prompt, err, errlen) : 0;
}

/* At accept the taps are the verification's rows: [last, d1..dk] from the
 * position of the history's last token, n_drafted + 1 of them. */
static void tap_accept(void *state, int32_t slot, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                       int32_t n_tokens)
{
    int32_t n_rows = 0, first = -1;
    const float *t = g_tap.pl->host.tap_get(&g_tap.pl->host, slot, &n_rows, &first);
    pthread_mutex_lock(&g_tap.mu);
    g_tap.n_accept++;
    const int32_t want = g_tap.hist[slot] - 1;
    if (!t || first != want || n_rows != n_drafted + 1) {
        if (g_tap.n_bad++ == 0)
            snprintf(g_tap.why, sizeof g_tap.why, "slot %d: %d rows at %d, want %d at %d", (int)slot,
                     t ? (int)n_rows : 0, (int)first, (int)n_drafted + 1, (int)want);
    }
    g_tap.hist[slot] += n_tokens;
    pthread_mutex_unlock(&g_tap.mu);
    if (g_tap.accept)
        g_tap.accept(state, slot, n_drafted, n_accepted, tokens, n_tokens);
}

/* The taps of prompt[0..n) (TAP_NL, n, E) from one decode of the prompt
 * alone on the engine's door (sequence 0; the cache is cleared before and
 * after). */
static float *tap_reference(clspec_engine *d, const int32_t *layers, const int32_t *prompt, int n, size_t E)
{
    char err[CLSPEC_ERRLEN];
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    float *ref = malloc((size_t)TAP_NL * (size_t)n * E * sizeof *ref);
    assert_true(pos && ref);
    for (int i = 0; i < n; i++)
        pos[i] = i;
    struct clspec_batch b = {sizeof b, n, prompt, pos, NULL, NULL, NULL, NULL};
    if (clspec_kv_clear(d, err, sizeof err) != CLSPEC_OK || clspec_taps_set(d, layers, TAP_NL, err, sizeof err) ||
        clspec_decode(d, &b, NULL, err, sizeof err) != CLSPEC_OK)
        fail_msg("reference: %s", err);
    for (int l = 0; l < TAP_NL; l++)
        for (int i = 0; i < n; i++) {
            const float *t = clspec_tap(d, l, i);
            assert_non_null(t);
            memcpy(ref + ((size_t)l * n + i) * E, t, E * sizeof *ref);
        }
    assert_int_equal(clspec_kv_clear(d, err, sizeof err), CLSPEC_OK);
    free(pos);
    return ref;
}

/* max |got - ref| over rows[0..n) of E values, relative to the row's largest |ref|. */
static double tap_row_err(const float *got, const float *ref, size_t E)
{
    double m = 1e-20, e = 0.0;
    for (size_t k = 0; k < E; k++) {
        m = fmax(m, fabs((double)ref[k]));
        e = fmax(e, fabs((double)got[k] - ref[k]));
    }
    return e / m;
}

/* spec_core_prefill: the prompts of a tap-reading speculator ride in the
 * step's forward as chunks that keep its taps (cs_spec_extra.taps), and the
 * core hands them to the plugin at slot_begin. Four prompts of 2-3 chunks
 * each on 2 slots (chunks beside other slots' decode rows, a slot taken by
 * a second request, a prompt sharing a cached prefix, which gets no prefix
 * reuse): each request's slot_begin gets exactly once every row of its
 * prompt, from position 0, in position order, each row equal to the taps of
 * the prompt decoded alone; every accept then gets the verification's rows.
 * Lost, reordered or twice-handed rows fail here. */
static void test_spec_taps(void **state)
{
    (void)state;
    enum { NP = 4, MAXT = 24 };
    struct cs_engine *e = su_engine_open(2048, 2, true);
    clspec_engine *d = su_door_of(e);
    const int V = (int)e->model->hp.n_vocab;
    const int32_t layers[TAP_NL] = {1, (int32_t)e->model->hp.n_layer};
    g_tap.E = e->model->hp.n_embd;
    static const int lens[NP] = {150, 210, 270, 180};
    int32_t *prompts[NP];
    struct tu_rng rng;
    tu_rng_seed(&rng, 41);
    for (int k = 0; k < NP; k++) {
        prompts[k] = malloc((size_t)lens[k] * sizeof *prompts[k]);
        for (int i = 0; i < lens[k]; i++) /* the last: prompt 0's first 120 tokens, then its own */
            prompts[k][i] = k == NP - 1 && i < 120 ? prompts[0][i] : 3 + (int32_t)(tu_rng_u64(&rng) % (uint64_t)(V - 3));
    }
    struct specrig rig;
    specrig_open(e, "ngram", 2, 4, &rig);
    char err[CLSPEC_ERRLEN];
    rig.pl->vt.caps |= CLSPEC_SPEC_CAP_TARGET_TAPS;
    assert_true(cs_plugin_needs_core_prefill(rig.pl)); /* what clspecd's main passes as spec_core_prefill */
    if (rig.pl->host.tap_request(&rig.pl->host, layers, TAP_NL, err, sizeof err) != CLSPEC_OK)
        fail_msg("tap_request: %s", err);
    g_tap.pl = rig.pl;
    g_tap.slot_begin = rig.pl->vt.slot_begin;
    g_tap.accept = rig.pl->vt.accept;
    rig.pl->vt.slot_begin = tap_slot_begin;
    rig.pl->vt.accept = tap_accept;
    struct cs_sched *s = sched_spec_new(e, 2, rig.sp, true);
    struct su_col c[NP];
    for (int k = 0; k < NP; k++) {
        su_col_init(&c[k]);
        struct cs_req r = su_req_make(prompts[k], lens[k], MAXT);
        r.ignore_eos = true;
        su_submit_ok(s, &r, &c[k]);
    }
    for (int k = 0; k < NP; k++) {
        assert_true(su_col_wait(&c[k], 120));
        if (c[k].type != CS_EV_DONE)
            fail_msg("prompt %d: %s", k, c[k].msg);
        assert_true(c[k].usage.speculative);
        su_col_destroy(&c[k]);
    }
    cs_sched_free(s);
    /* every slot_begin, and each request's exactly once: its prompt's rows */
    assert_int_equal(g_tap.n_ev, NP);
    int seen[NP] = {0};
    for (int v = 0; v < g_tap.n_ev; v++) {
        const struct tap_begin *b = &g_tap.ev[v];
        int k = 0;
        while (k < NP && !(b->n_prompt == lens[k] + 1 && !memcmp(b->prompt, prompts[k], (size_t)lens[k] * 4)))
            k++;
        assert_true(k < NP);
        seen[k]++;
        if (b->first_pos != 0 || b->n_rows != lens[k])
            fail_msg("prompt %d on slot %d: slot_begin got %d tap rows from position %d, want %d from 0", k, b->slot,
                     b->n_rows, b->first_pos, lens[k]);
        float *ref = tap_reference(d, layers, prompts[k], lens[k], g_tap.E);
        double worst = 0.0;
        int closer = 0; /* rows nearer to their neighbour's reference than to their own: moved rows */
        for (int l = 0; l < TAP_NL; l++)
            for (int i = 0; i < lens[k]; i++) {
                const float *ri = ref + ((size_t)l * lens[k] + i) * g_tap.E;
                const float *gi = b->rows + ((size_t)l * lens[k] + i) * g_tap.E;
                const double self = tap_row_err(gi, ri, g_tap.E);
                worst = fmax(worst, self);
                closer += (i > 0 && tap_row_err(gi, ri - g_tap.E, g_tap.E) <= self) ||
                          (i + 1 < lens[k] && tap_row_err(gi, ri + g_tap.E, g_tap.E) <= self);
            }
        print_message("# prompt %d (%d rows) on slot %d: taps within %.2e of the prompt decoded alone\n", k, lens[k],
                      b->slot, worst);
        assert_int_equal(closer, 0);
        assert_true(worst <= 1e-4);
        free(ref);
    }
    for (int k = 0; k < NP; k++)
        assert_int_equal(seen[k], 1);
    print_message("# %d accepts, %d with other rows than the verification's%s%s\n", g_tap.n_accept, g_tap.n_bad,
                  g_tap.n_bad ? ": " : "", g_tap.why);
    assert_true(g_tap.n_accept >= NP);
    assert_int_equal(g_tap.n_bad, 0);
    for (int v = 0; v < g_tap.n_ev; v++) {
        free(g_tap.ev[v].prompt);
        free(g_tap.ev[v].rows);
    }
    specrig_close(&rig);
    for (int k = 0; k < NP; k++)
        free(prompts[k]);
    su_engine_close(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_lossless),
        cmocka_unit_test(test_spec_cancel_and_limits),
        cmocka_unit_test(test_spec_kv_full),
        cmocka_unit_test(test_spec_mixed_kv_full),
        cmocka_unit_test(test_spec_taps),
        cmocka_unit_test(test_spec_logits_follow_request),
    };
    return cmocka_run_group_tests_name("sched-spec", tests, NULL, NULL);
}
