/* test-ctl.c: the cost-aware draft-length controller (src/spec/ctl.c) on
 * made-up costs, no device: the expected-tokens formula, the cost tables
 * (median per index, the line through the medians, flat with one index, a
 * preempted sample that does not move the median), the acceptance estimate
 * and its prior, the choice of lengths against a brute-force search of the
 * same model, plain decoding when drafting cannot pay, re-probing with a
 * doubling interval (later for a costly draft: probes stay within their
 * budget) that the next request inherits, drafting back after a slow first
 * sample, a plain step now and then while
 * drafting, and one draft call for all slots priced once (draft_batch). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "spec/ctl.h"

static void test_expected(void **state)
{
    (void)state;
    assert_true(fabs(cs_ctl_expected(0.5, 0) - 1.0) < 1e-12);
    assert_true(fabs(cs_ctl_expected(0.5, 3) - 1.875) < 1e-12); /* 1 + .5 + .25 + .125 */
    assert_true(fabs(cs_ctl_expected(0.9, 1) - 1.9) < 1e-12);
    /* more drafts never expect fewer tokens, and never more than k + 1 */
    for (int k = 1; k < 16; k++) {
        assert_true(cs_ctl_expected(0.7, k) > cs_ctl_expected(0.7, k - 1));
        assert_true(cs_ctl_expected(0.99, k) <= k + 1.0);
    }
}

static void test_table(void **state)
{
    (void)state;
    struct cs_ctl c;
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    /* nothing measured: unknown; the draft table's 0 costs nothing */
    assert_true(cs_ctl_estimate(&c.verify, 4) < 0.0);
    assert_true(cs_ctl_estimate(&c.draft, 0) == 0.0);
    assert_true(cs_ctl_estimate(&c.draft, 3) < 0.0);
    /* one index: flat */
    cs_ctl_sample(&c.verify, 4, 2e-3);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 1) - 2e-3) < 1e-9);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 40) - 2e-3) < 1e-9);
    /* two indices on t = 1 ms + 0.25 ms * R: the line prices every R */
    cs_ctl_sample(&c.verify, 4, 2e-3);
    for (int i = 0; i < 3; i++)
        cs_ctl_sample(&c.verify, 12, 4e-3);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 8) - 3e-3) < 1e-9);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 20) - 6e-3) < 1e-9);
    /* a preempted step (100x) does not move the median of three */
    cs_ctl_sample(&c.verify, 12, 4e-1);
    cs_ctl_sample(&c.verify, 12, 4e-3);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 12) - 4e-3) < 1e-6);
    /* costs that fall with rows are read as flat (b >= 0) */
    struct cs_ctl d;
    assert_int_equal(cs_ctl_init(&d, 8, 64, false), CLSPEC_OK);
    cs_ctl_sample(&d.verify, 2, 3e-3);
    cs_ctl_sample(&d.verify, 10, 1e-3);
    assert_true(fabs(cs_ctl_estimate(&d.verify, 2) - cs_ctl_estimate(&d.verify, 10)) < 1e-12);
    /* out of range and nonsense samples are ignored */
    cs_ctl_sample(&d.verify, 65, 1.0);
    cs_ctl_sample(&d.verify, -1, 1.0);
    cs_ctl_sample(&d.verify, 3, NAN);
    cs_ctl_sample(&d.draft, 0, 1.0);
    assert_true(fabs(cs_ctl_estimate(&d.verify, 6) - 2e-3) < 1e-9);
    assert_true(cs_ctl_estimate(&d.draft, 2) < 0.0);
    cs_ctl_free(&d);
    cs_ctl_free(&c);
}

/* A cost that jumps (4 rows: one mat-vec path; 8 and more: the mat-mat one)
 * is priced by the measured medians, not by a line through all of them,
 * which would make the 4-row plain step dearer and the 8-row verification
 * cheaper than measured; medians that fall with rows are pooled. */
static void test_table_curve(void **state)
{
    (void)state;
    struct cs_ctl c;
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    for (int i = 0; i < 3; i++) {
        cs_ctl_sample(&c.verify, 4, 0.6e-3);
        cs_ctl_sample(&c.verify, 8, 1.4e-3);
        cs_ctl_sample(&c.verify, 16, 1.6e-3);
        cs_ctl_sample(&c.verify, 20, 1.5e-3); /* noise below 16's: pooled with it */
    }
    assert_true(fabs(cs_ctl_estimate(&c.verify, 4) - 0.6e-3) < 1e-9);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 8) - 1.4e-3) < 1e-9);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 6) - 1.0e-3) < 1e-9); /* between: linear */
    assert_true(fabs(cs_ctl_estimate(&c.verify, 16) - 1.55e-3) < 1e-9);
    double e20 = cs_ctl_estimate(&c.verify, 20), e24 = cs_ctl_estimate(&c.verify, 24);
    assert_true(e20 >= 1.55e-3 - 1e-12 && e24 >= e20); /* never cheaper with more rows */
    for (int r = 2; r < 64; r++)
        assert_true(cs_ctl_estimate(&c.verify, r) >= cs_ctl_estimate(&c.verify, r - 1) - 1e-12);
    /* an index with fewer samples does not price itself: a single slow 5-row step leaves 4's price */
    cs_ctl_sample(&c.verify, 5, 9e-3);
    assert_true(fabs(cs_ctl_estimate(&c.verify, 4) - 0.6e-3) < 1e-9);
    assert_true(cs_ctl_estimate(&c.verify, 5) < 1.4e-3);
    cs_ctl_free(&c);
}

static void test_alpha(void **state)
{
    (void)state;
    struct cs_ctl c;
    struct cs_ctl_slot s;
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    cs_ctl_slot_reset(&c, &s);
    assert_true(fabs(cs_ctl_alpha(&s) - 0.5) < 1e-12); /* no data: even odds */
    for (int i = 0; i < 40; i++)
        cs_ctl_observe(&c, &s, 4, 4); /* every draft accepted */
    assert_true(cs_ctl_alpha(&s) > 0.95);
    for (int i = 0; i < 40; i++)
        cs_ctl_observe(&c, &s, 4, 0); /* every draft rejected at once: the slot follows */
    assert_true(cs_ctl_alpha(&s) < 0.1);
    cs_ctl_observe(&c, &s, 0, 0); /* no draft: nothing learnt */
    assert_true(cs_ctl_alpha(&s) < 0.1);
    /* a new request starts from the speculator-wide rate (here about 1/2) */
    struct cs_ctl_slot t;
    cs_ctl_slot_reset(&c, &t);
    assert_true(cs_ctl_alpha(&t) > 0.3 && cs_ctl_alpha(&t) < 0.9);
    cs_ctl_free(&c);
}

/* Verify 1 ms + v ms per row, draft d0 + d1 k ms per call (per slot unless
 * batched); samples at every index. */
static void fill(struct cs_ctl *c, double v, double d0, double d1)
{
    for (int m = 0; m < CS_CTL_MED_MIN; m++) { /* each index priced by its median */
        for (int r = 1; r < c->verify.len; r++)
            cs_ctl_sample(&c->verify, r, 1e-3 + v * 1e-3 * r);
        for (int k = 1; k < c->draft.len; k++)
            cs_ctl_sample(&c->draft, k, (d0 + d1 * k) * 1e-3);
    }
}

static double rate_of(const struct cs_ctl *c, const double *alpha, const int32_t *k, int n)
{
    double tok = 0, draft = 0;
    int rows = 0, km = 0;
    for (int i = 0; i < n; i++) {
        tok += cs_ctl_expected(alpha[i], k[i]);
        rows += k[i] + 1;
        km = CS_MAX(km, k[i]);
        if (!c->batched && k[i] > 0)
            draft += cs_ctl_estimate(&c->draft, k[i]);
    }
    if (c->batched && km > 0)
        draft = cs_ctl_estimate(&c->draft, km);
    return tok / (cs_ctl_estimate(&c->verify, rows) + draft);
}

static void test_choose_one(void **state)
{
    (void)state;
    struct cs_ctl c;
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    struct cs_ctl_slot s;
    struct cs_ctl_slot *sl[1] = {&s};
    int32_t kmax[1] = {8}, k[1] = {-1};
    cs_ctl_slot_reset(&c, &s);
    /* plain decoding not measured yet: plain */
    cs_ctl_choose(&c, sl, kmax, 1, 0, k);
    assert_int_equal(k[0], 0);
    /* cheap draft, cheap rows, high acceptance: the brute-force best length */
    fill(&c, 0.1, 0.05, 0.05);
    for (int i = 0; i < 30; i++)
        cs_ctl_observe(&c, &s, 4, i % 5 ? 4 : 2);
    double alpha = cs_ctl_alpha(&s), best = 0;
    int32_t kb = 0;
    for (int32_t kk = 0; kk <= 8; kk++) {
        int32_t t[1] = {kk};
        double r = rate_of(&c, &alpha, t, 1);
        if (r > best) {
            best = r;
            kb = kk;
        }
    }
    assert_true(kb > 2);
    cs_ctl_choose(&c, sl, kmax, 1, 0, k);
    assert_int_equal(k[0], kb);
    assert_int_equal(s.k, kb);
    /* the cap is the caller's */
    kmax[0] = 2;
    cs_ctl_choose(&c, sl, kmax, 1, 0, k);
    assert_int_equal(k[0], 2);
    cs_ctl_free(&c);
}

/* Steps until 3 probes (or max_steps) of a slot that the controller keeps
 * plain; returns how many probes, their steps in probes[]. */
static int probe_steps(struct cs_ctl *c, struct cs_ctl_slot *s, int max_steps, int32_t *probes)
{
    struct cs_ctl_slot *sl[1] = {s};
    int32_t kmax[1] = {8}, k[1];
    int n_probe = 0;
    for (int step = 1; step <= max_steps && n_probe < 3; step++) {
        cs_ctl_choose(c, sl, kmax, 1, 0, k);
        if (k[0] > 0)
            probes[n_probe++] = step;
    }
    return n_probe;
}

/* A noisy start: one slow sample of a draft (a first launch, a hiccup) and
 * nothing else measured. The slot is kept plain, but its probes keep their
 * doubling interval (16, 32, 64 off steps): the budget rule, which would
 * push the next probe past any run, waits for medians. */
static void test_probe_after_noisy_start(void **state)
{
    (void)state;
    struct cs_ctl c;
    struct cs_ctl_slot s;
    int32_t probes[3];
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    cs_ctl_sample(&c.verify, 1, 0.5e-3); /* plain 0.5 ms */
    cs_ctl_sample(&c.verify, 4, 1.0e-3);
    cs_ctl_sample(&c.draft, 3, 20e-3);   /* one slow draft: 40 plain steps */
    cs_ctl_slot_reset(&c, &s);
    for (int i = 0; i < 10; i++)
        cs_ctl_observe(&c, &s, 3, 1);
    assert_int_equal(probe_steps(&c, &s, 200, probes), 3);
    assert_int_equal(probes[0], CS_CTL_PROBE_MIN);
    assert_int_equal(probes[1] - probes[0], 2 * CS_CTL_PROBE_MIN);
    assert_int_equal(probes[2] - probes[1], 4 * CS_CTL_PROBE_MIN);
    /* the same costs, priced by medians: now the budget spaces the probes */
    for (int m = 1; m < CS_CTL_MED_MIN; m++) {
        cs_ctl_sample(&c.verify, 1, 0.5e-3);
        cs_ctl_sample(&c.verify, 4, 1.0e-3);
        cs_ctl_sample(&c.draft, 3, 20e-3);
    }
    cs_ctl_slot_reset(&c, &s);
    assert_int_equal(probe_steps(&c, &s, 20000, probes), 3);
    assert_true(probes[1] - probes[0] > 4 * CS_CTL_PROBE_MIN);
    cs_ctl_free(&c);
}

/* A noisy start, then the truth: one slow first draft (a first launch), then
 * cheap drafts that are all accepted. The probes add cheap samples until the
 * medians price the draft, and drafting resumes and stays on (but for the
 * refresh steps) well within a 128-token run. */
static void test_resume_after_noisy_start(void **state)
{
    (void)state;
    struct cs_ctl c;
    struct cs_ctl_slot s;
    struct cs_ctl_slot *sl[1] = {&s};
    int32_t kmax[1] = {8}, k[1];
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    cs_ctl_sample(&c.verify, 1, 0.5e-3);
    cs_ctl_sample(&c.verify, 4, 1.0e-3);
    cs_ctl_sample(&c.draft, 3, 20e-3); /* the slow first draft */
    cs_ctl_slot_reset(&c, &s);
    cs_ctl_observe(&c, &s, 3, 3);
    int first_on = -1, n_on = 0;
    for (int step = 0; step < 128; step++) {
        cs_ctl_choose(&c, sl, kmax, 1, 0, k);
        if (k[0] > 0) {
            cs_ctl_sample(&c.draft, k[0], 0.05e-3 * k[0]);
            cs_ctl_sample(&c.verify, 1 + k[0], 0.5e-3 + 0.02e-3 * k[0]);
            cs_ctl_observe(&c, &s, k[0], k[0]);
            if (first_on < 0 && step > 3 * CS_CTL_PROBE_MIN) /* the first draft after the second probe */
                first_on = step;
            n_on += step > 64;
        } else {
            cs_ctl_sample(&c.verify, 1, 0.5e-3);
        }
    }
    /* two probes (16, then 32 steps later) give the median; drafting follows them */
    assert_true(first_on >= 0 && first_on <= 3 * CS_CTL_PROBE_MIN + 2);
    assert_true(n_on >= 63 - 63 / CS_CTL_REFRESH - 1);
    cs_ctl_free(&c);
}

static void test_plain_and_probe(void **state)
{
    (void)state;
    struct cs_ctl c;
    struct cs_ctl_slot s;
    int32_t probes[3];
    /* a cheap draft that rarely hits: plain, probes after 16 off steps, then 32, 64 (doubling) */
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    fill(&c, 0.01, 0.1, 0.01);
    cs_ctl_slot_reset(&c, &s);
    for (int i = 0; i < 10; i++)
        cs_ctl_observe(&c, &s, 4, 0);
    assert_int_equal(probe_steps(&c, &s, 200, probes), 3);
    assert_int_equal(probes[0], CS_CTL_PROBE_MIN);
    assert_int_equal(probes[1] - probes[0], 2 * CS_CTL_PROBE_MIN);
    assert_int_equal(probes[2] - probes[1], 4 * CS_CTL_PROBE_MIN);
    assert_int_equal(s.n_steps_off, (uint64_t)(probes[2] - 3));
    /* the next request inherits the interval */
    cs_ctl_slot_reset(&c, &s);
    assert_int_equal(s.probe, 8 * CS_CTL_PROBE_MIN);
    cs_ctl_free(&c);
    /* a draft that costs several plain steps: probes late enough to cost at most the budget */
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    fill(&c, 0.1, 5.0, 1.0); /* plain 1.1 ms; a probe (3 drafted, 4 rows) 1.4 + 8 ms */
    cs_ctl_slot_reset(&c, &s);
    for (int i = 0; i < 10; i++)
        cs_ctl_observe(&c, &s, 4, 3);
    assert_int_equal(probe_steps(&c, &s, 3000, probes), 3);
    const double excess = 9.4 / 1.1 - 1.0;
    assert_int_equal(probes[0], CS_CTL_PROBE_MIN);
    assert_true(excess / (probes[1] - probes[0]) <= CS_CTL_PROBE_BUDGET * 1.01);
    assert_true(excess / (probes[1] - probes[0]) > CS_CTL_PROBE_BUDGET * 0.9); /* not later than needed */
    assert_true(probes[2] - probes[1] <= CS_CTL_PROBE_MAX);
    assert_true(probes[2] - probes[1] >= probes[1] - probes[0]);
    /* a slot that may not draft (kmax 0) is plain and never probed */
    struct cs_ctl_slot *sl[1] = {&s};
    int32_t kmax[1] = {0}, k[1];
    for (int i = 0; i < 2000; i++) {
        cs_ctl_choose(&c, sl, kmax, 1, 0, k);
        assert_int_equal(k[0], 0);
    }
    /* when drafting gets cheap the controller turns it back on, and the interval resets */
    cs_ctl_free(&c);
    assert_int_equal(cs_ctl_init(&c, 8, 64, false), CLSPEC_OK);
    fill(&c, 0.1, 0.01, 0.01);
    kmax[0] = 8;
    cs_ctl_choose(&c, sl, kmax, 1, 0, k);
    assert_true(k[0] > 0);
    assert_int_equal(s.probe, CS_CTL_PROBE_MIN);
    /* while drafting, every CS_CTL_REFRESH-th step is plain */
    int n_plain = 0;
    for (int i = 1; i < 10 * CS_CTL_REFRESH; i++) {
        cs_ctl_choose(&c, sl, kmax, 1, 0, k);
        n_plain += k[0] == 0;
    }
    assert_int_equal(n_plain, 10);
    cs_ctl_free(&c);
}

static void test_choose_slots(void **state)
{
    (void)state;
    /* four slots; one draft call for all (batched) vs per slot */
    for (int batched = 0; batched < 2; batched++) {
        struct cs_ctl c;
        assert_int_equal(cs_ctl_init(&c, 4, 64, batched), CLSPEC_OK);
        fill(&c, 0.05, 0.3, 0.1);
        struct cs_ctl_slot s[4];
        struct cs_ctl_slot *sl[4];
        double alpha[4];
        int32_t kmax[4] = {4, 4, 4, 0}, k[4];
        const int32_t acc[4] = {4, 1, 0, 0}; /* of 4 drafted: high, low, none, (plain) */
        for (int i = 0; i < 4; i++) {
            sl[i] = &s[i];
            cs_ctl_slot_reset(&c, &s[i]);
            for (int j = 0; j < 20 && i < 3; j++)
                cs_ctl_observe(&c, &s[i], 4, acc[i]);
            alpha[i] = cs_ctl_alpha(&s[i]);
        }
        cs_ctl_choose(&c, sl, kmax, 4, 0, k);
        assert_true(k[0] >= k[1]); /* more acceptance, no shorter draft */
        assert_int_equal(k[3], 0);
        /* no single change of one slot's length does better (a coordinate optimum) */
        double r0 = rate_of(&c, alpha, k, 4);
        for (int i = 0; i < 4; i++)
            for (int32_t kk = 0; kk <= kmax[i]; kk++) {
                int32_t t[4];
                memcpy(t, k, sizeof t);
                t[i] = kk;
                assert_true(rate_of(&c, alpha, t, 4) <= r0 * (1 + 1e-9));
            }
        struct cs_strbuf b = {0};
        cs_ctl_report(&c, 4, &b);
        assert_non_null(b.p);
        assert_non_null(strstr(b.p, "theoretical speedup"));
        cs_strbuf_free(&b);
        cs_ctl_free(&c);
    }
}

/* One draft call for four slots (draft_batch) that no single slot's draft
 * pays for alone, all of them together do: the common length is found. */
static void test_choose_common(void **state)
{
    (void)state;
    struct cs_ctl c;
    assert_int_equal(cs_ctl_init(&c, 7, 64, true), CLSPEC_OK);
    fill(&c, 0.0, 1.5, 0.0); /* rows free, 1 ms + 0 per row; a draft call 1.5 ms whatever its length */
    struct cs_ctl_slot s[4];
    struct cs_ctl_slot *sl[4];
    int32_t kmax[4] = {7, 7, 7, 7}, k[4];
    for (int i = 0; i < 4; i++) {
        sl[i] = &s[i];
        cs_ctl_slot_reset(&c, &s[i]);
        for (int j = 0; j < 20; j++)
            cs_ctl_observe(&c, &s[i], 4, 3);
    }
    cs_ctl_choose(&c, sl, kmax, 4, 0, k);
    for (int i = 0; i < 4; i++)
        assert_true(k[i] > 0);
    /* ... although no slot drafting alone beats plain decoding (a coordinate search would stay there) */
    double alpha[4];
    int32_t plain[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        alpha[i] = cs_ctl_alpha(&s[i]);
    for (int32_t kk = 1; kk <= 7; kk++) {
        int32_t one[4] = {kk, 0, 0, 0};
        assert_true(rate_of(&c, alpha, one, 4) < rate_of(&c, alpha, plain, 4));
    }
    assert_true(rate_of(&c, alpha, k, 4) > rate_of(&c, alpha, plain, 4));
    cs_ctl_free(&c);
}

static void test_theory(void **state)
{
    (void)state;
    struct cs_ctl c;
    assert_int_equal(cs_ctl_init(&c, 4, 64, true), CLSPEC_OK);
    int32_t kb = -1;
    assert_true(cs_ctl_theory(&c, 1, &kb) == 1.0); /* nothing measured */
    assert_int_equal(kb, 0);
    /* rows free, drafts free, alpha 3/4: k = 4 gives E = (1 - .75^5) / .25 */
    for (int r = 1; r < 64; r++)
        cs_ctl_sample(&c.verify, r, 1e-3);
    for (int k = 1; k <= 4; k++)
        cs_ctl_sample(&c.draft, k, 0.0);
    struct cs_ctl_slot s;
    cs_ctl_slot_reset(&c, &s);
    for (int i = 0; i < 200; i++)
        cs_ctl_observe(&c, &s, 4, i % 4 == 3 ? 0 : 4); /* 600 accepted, 50 rejections */
    double a = c.g_succ / (c.g_succ + c.g_fail);
    assert_true(fabs(cs_ctl_theory(&c, 1, &kb) / cs_ctl_expected(a, 4) - 1.0) < 1e-3);
    assert_int_equal(kb, 4);
    cs_ctl_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expected),   cmocka_unit_test(test_table),          cmocka_unit_test(test_alpha),
        cmocka_unit_test(test_table_curve),
        cmocka_unit_test(test_choose_one), cmocka_unit_test(test_plain_and_probe),
        cmocka_unit_test(test_probe_after_noisy_start),
        cmocka_unit_test(test_resume_after_noisy_start), cmocka_unit_test(test_choose_slots),
        cmocka_unit_test(test_theory),     cmocka_unit_test(test_choose_common),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
