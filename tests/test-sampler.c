/* test-sampler.c: greedy, top-k/top-p/min-p candidate sets, llama.cpp-style
 * penalties, seeded reproducibility, a chi-square test of temperature
 * sampling against softmax(logits / T), clone/restore rewinding, and the
 * logit bias. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clspec/clspec.h"
#include "engine/sampler.h"
#include "testutil.h"

static struct cs_sampler *mk(struct cs_sampler_params p, int32_t n_vocab)
{
    char err[256];
    struct cs_sampler *s = NULL;
    int rc = cs_sampler_new(&p, n_vocab, &s, err, sizeof err);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static struct cs_sampler_params plain(void)
{
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 42;
    return p;
}

static void random_logits(float *x, int n, uint64_t seed)
{
    struct tu_rng r;
    tu_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        x[i] = 3.0f * tu_rng_normal(&r);
}

static int32_t argmin_ref(const float *x, int n)
{
    int32_t k = 0;
    for (int i = 1; i < n; i++)
        if (x[i] < x[k])
            k = i;
    return k;
}

static void test_greedy_is_argmax(void **state)
{
    (void)state;
    enum { V = 1000 };
    float x[V];
    struct cs_sampler_params p = plain();
    p.temp = 0.0f;
    struct cs_sampler *s = mk(p, V);
    for (int trial = 0; trial < 20; trial++) {
        random_logits(x, V, 100 + trial);
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[best])
                best = i;
        assert_int_equal(cs_sampler_sample(s, x), best);
    }
    cs_sampler_free(s);
}

/* cs_sampler_is_argmax: true exactly when nothing moves the greedy pick */
static void test_is_argmax_query(void **state)
{
    (void)state;
    enum { V = 64 };
    char err[256];
    struct cs_sampler_params p = plain();
    p.temp = 0.0f;
    struct cs_sampler *g = mk(p, V);
    assert_true(cs_sampler_is_argmax(g));
    int32_t id = 3;
    float b = 1.0f;
    assert_int_equal(cs_sampler_set_bias(g, &id, &b, 1, err, sizeof err), 0);
    assert_false(cs_sampler_is_argmax(g)); /* a bias moves the pick */
    assert_int_equal(cs_sampler_set_bias(g, NULL, NULL, 0, err, sizeof err), 0);
    assert_true(cs_sampler_is_argmax(g));
    cs_sampler_free(g);
    p.repeat_penalty = 1.1f;
    p.penalty_last_n = 64;
    g = mk(p, V);
    assert_false(cs_sampler_is_argmax(g)); /* penalties move it */
    cs_sampler_free(g);
    p = plain(); /* temperature 1 */
    g = mk(p, V);
    assert_false(cs_sampler_is_argmax(g));
    cs_sampler_free(g);
    assert_false(clspec_sampler_is_argmax(NULL));
}

static void test_topk1_equals_greedy(void **state)
{
    (void)state;
    enum { V = 500 };
    float x[V];
    struct cs_sampler_params p = plain();
    p.top_k = 1;
    p.temp = 1.5f;
    struct cs_sampler *s = mk(p, V);
    for (int trial = 0; trial < 50; trial++) {
        random_logits(x, V, 7 + trial);
        assert_int_equal(cs_sampler_sample(s, x), cs_argmax(x, V));
    }
    cs_sampler_free(s);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    enum { V = 64, N = 200 };
    float x[V];
    random_logits(x, V, 3);
    for (int i = 0; i < V; i++)
        x[i] *= 0.3f; /* flat enough that draws vary */
    struct cs_sampler_params p = plain();
    struct cs_sampler *a = mk(p, V), *b = mk(p, V);
    p.seed = 43;
    struct cs_sampler *c = mk(p, V);
    int differ = 0, distinct_tokens = 0;
    int seen[V] = {0};
    for (int i = 0; i < N; i++) {
        int32_t ta = cs_sampler_sample(a, x), tb = cs_sampler_sample(b, x), tc = cs_sampler_sample(c, x);
        assert_int_equal(ta, tb);
        differ += ta != tc;
        if (!seen[ta]++)
            distinct_tokens++;
    }
    assert_true(differ > N / 4);       /* another seed gives another sequence */
    assert_true(distinct_tokens > 10); /* and it is not degenerate */
    cs_sampler_free(a);
    cs_sampler_free(b);
    cs_sampler_free(c);
}

/* chi-square goodness of fit of 20000 draws against softmax(logits / T) */
static void chi_square_at(float temp)
{
    enum { V = 8, N = 20000 };
    const float x[V] = {1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.8f};
    struct cs_sampler_params p = plain();
    p.temp = temp;
    p.seed = 1234;
    struct cs_sampler *s = mk(p, V);
    double pr[V], sum = 0.0;
    for (int i = 0; i < V; i++)
        sum += pr[i] = exp(x[i] / temp);
    long cnt[V] = {0};
    for (int i = 0; i < N; i++) {
        int32_t t = cs_sampler_sample(s, x);
        assert_true(t >= 0 && t < V);
        cnt[t]++;
    }
    double chi = 0.0;
    for (int i = 0; i < V; i++) {
        double e = N * pr[i] / sum;
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    /* 7 degrees of freedom: P(chi2 > 24.32) = 0.001 */
    assert_true(chi < 24.32);
    /* and a wrong temperature is rejected by the same statistic */
    double chi_wrong = 0.0, sw = 0.0;
    for (int i = 0; i < V; i++)
        sw += exp(x[i] / (temp * 2.0));
    for (int i = 0; i < V; i++) {
        double e = N * exp(x[i] / (temp * 2.0)) / sw;
        chi_wrong += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    assert_true(chi_wrong > 24.32);
    cs_sampler_free(s);
}

static void test_temperature_chi_square(void **state)
{
    (void)state;
    chi_square_at(1.0f);
    chi_square_at(0.7f);
    chi_square_at(1.6f);
}

static void test_top_p_set(void **state)
{
    (void)state;
    enum { V = 6 };
    /* probabilities 0.4, 0.3, 0.15, 0.1, 0.04, 0.01 (as logits = log p) */
    const double pr[V] = {0.15, 0.4, 0.01, 0.3, 0.1, 0.04};
    float x[V];
    for (int i = 0; i < V; i++)
        x[i] = (float)log(pr[i]);
    int32_t ids[V];
    struct cs_sampler_params p = plain();
    p.top_p = 0.8f; /* 0.4 + 0.3 = 0.7 < 0.8 -> needs 0.15 too */
    struct cs_sampler *s = mk(p, V);
    int32_t n = cs_sampler_candidates(s, x, ids);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 0);
    cs_sampler_free(s);
    p.top_p = 0.5f;
    s = mk(p, V);
    assert_int_equal(cs_sampler_candidates(s, x, ids), 2);
    cs_sampler_free(s);
    p.top_p = 0.1f; /* at least one token is kept */
    s = mk(p, V);
    assert_int_equal(cs_sampler_candidates(s, x, ids), 1);
    /* sampling never leaves the set */
    for (int i = 0; i < 200; i++)
        assert_int_equal(cs_sampler_sample(s, x), 1);
    cs_sampler_free(s);
}

static void test_min_p_set(void **state)
{
    (void)state;
    enum { V = 6 };
    const double pr[V] = {0.15, 0.4, 0.01, 0.3, 0.1, 0.04};
    float x[V];
    for (int i = 0; i < V; i++)
        x[i] = (float)log(pr[i]);
    int32_t ids[V];
    struct cs_sampler_params p = plain();
    p.min_p = 0.3f; /* keeps p >= 0.12: 0.4, 0.3, 0.15 */
    struct cs_sampler *s = mk(p, V);
    int32_t n = cs_sampler_candidates(s, x, ids);
    assert_int_equal(n, 3);
    int in[V] = {0};
    for (int i = 0; i < n; i++)
        in[ids[i]] = 1;
    assert_true(in[1] && in[3] && in[0]);
    for (int i = 0; i < 500; i++) {
        int32_t t = cs_sampler_sample(s, x);
        assert_true(t == 0 || t == 1 || t == 3);
    }
    cs_sampler_free(s);
    p.min_p = 0.2f; /* keeps p >= 0.08: adds 0.1 */
    s = mk(p, V);
    assert_int_equal(cs_sampler_candidates(s, x, ids), 4);
    cs_sampler_free(s);
    /* top-k then min-p combine */
    p.top_k = 2;
    s = mk(p, V);
    assert_int_equal(cs_sampler_candidates(s, x, ids), 2);
    cs_sampler_free(s);
}

static void test_penalties_llama_cpp(void **state)
{
    (void)state;
    enum { V = 6 };
    struct cs_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    p.freq_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = 4;
    struct cs_sampler *s = mk(p, V);
    /* history 0 0 1 3 1 4 with a window of 4 -> the window holds 1 3 1 4 */
    const int32_t h[] = {0, 0, 1, 3, 1, 4};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++)
        cs_sampler_accept(s, h[i]);
    float x[V] = {1.0f, 2.0f, -1.0f, -2.0f, 0.0f, 3.0f};
    cs_sampler_apply_penalties(s, x);
    assert_float_equal(x[0], 1.0f, 1e-6);                       /* left the window */
    assert_float_equal(x[1], 2.0f / 2.0f - 2 * 0.5f - 0.25f, 1e-6); /* count 2, positive: divided */
    assert_float_equal(x[2], -1.0f, 1e-6);                      /* not seen */
    assert_float_equal(x[3], -2.0f * 2.0f - 0.5f - 0.25f, 1e-6);  /* count 1, negative: multiplied */
    assert_float_equal(x[4], 0.0f * 2.0f - 0.5f - 0.25f, 1e-6);   /* zero counts as <= 0 */
    assert_float_equal(x[5], 3.0f, 1e-6);
    /* greedy follows the penalised logits: 5 is best anyway; penalise it away */
    cs_sampler_free(s);
    p.temp = 0.0f;
    p.repeat_penalty = 10.0f;
    p.freq_penalty = p.presence_penalty = 0.0f;
    s = mk(p, V);
    float y[V] = {1.0f, 2.0f, -1.0f, -2.0f, 0.0f, 3.0f};
    assert_int_equal(cs_sampler_sample(s, y), 5);
    cs_sampler_accept(s, 5);
    assert_int_equal(cs_sampler_sample(s, y), 1);
    assert_float_equal(y[5], 3.0f, 0.0); /* caller's logits untouched */
    cs_sampler_free(s);
}

static void test_clone_restore(void **state)
{
    (void)state;
    enum { V = 100, N = 40 };
    float x[V];
    random_logits(x, V, 11);
    for (int i = 0; i < V; i++)
        x[i] *= 0.3f;
    struct cs_sampler_params p = plain();
    p.repeat_penalty = 1.3f;
    p.presence_penalty = 0.5f;
    p.penalty_last_n = 16;
    struct cs_sampler *s = mk(p, V);
    for (int i = 0; i < 10; i++)
        cs_sampler_accept(s, cs_sampler_sample(s, x));
    char err[256];
    struct cs_sampler *snap = NULL;
    assert_int_equal(cs_sampler_clone(s, &snap, err, sizeof err), 0);
    int32_t first[N], second[N];
    for (int i = 0; i < N; i++)
        cs_sampler_accept(s, first[i] = cs_sampler_sample(s, x));
    assert_int_equal(cs_sampler_restore(s, snap, err, sizeof err), 0);
    for (int i = 0; i < N; i++)
        cs_sampler_accept(s, second[i] = cs_sampler_sample(s, x));
    assert_memory_equal(first, second, sizeof first);
    /* the clone itself continues identically too */
    for (int i = 0; i < N; i++) {
        int32_t t = cs_sampler_sample(snap, x);
        cs_sampler_accept(snap, t);
        assert_int_equal(t, first[i]);
    }
    cs_sampler_free(snap);
    cs_sampler_free(s);
}

/* logit bias: added before everything (repeats sum), -inf never drawn, the
 * distribution is softmax((x + b) / T) (plain-C reference), clones carry it,
 * bad ids and biases are refused with the old bias kept. */
static void test_logit_bias(void **state)
{
    (void)state;
    enum { V = 50 };
    float x[V], ref[V], pr[V];
    random_logits(x, V, 21);
    char err[256] = "";
    struct cs_sampler_params p = plain();
    p.temp = 0.0f;
    struct cs_sampler *g = mk(p, V);
    int32_t best = cs_argmax(x, V), low = argmin_ref(x, V);
    int32_t ids[3] = {best, low, low};
    float b[3] = {-INFINITY, 0.5f * (x[best] - x[low]) + 1.0f, 0.5f * (x[best] - x[low]) + 1.0f};
    assert_int_equal(cs_sampler_set_bias(g, ids, b, 1, err, sizeof err), 0);
    int32_t second = -1;
    for (int i = 0; i < V; i++)
        if (i != best && (second < 0 || x[i] > x[second]))
            second = i;
    assert_int_equal(cs_sampler_sample(g, x), second);       /* -inf: never */
    assert_int_equal(cs_sampler_set_bias(g, ids, b, 3, err, sizeof err), 0);
    assert_int_equal(g->n_bias, 2);                           /* low's two entries add up */
    assert_int_equal(cs_sampler_sample(g, x), low);           /* pushed above everything */
    /* refused: the old bias stays */
    int32_t bad_id = V;
    float nan_b = NAN, one = 1.0f;
    assert_int_equal(cs_sampler_set_bias(g, &bad_id, &one, 1, err, sizeof err), CLSPEC_E_RANGE);
    assert_non_null(strstr(err, "vocabulary"));
    assert_int_equal(cs_sampler_set_bias(g, &best, &nan_b, 1, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_sampler_sample(g, x), low);
    /* sampled: the distribution against the reference; a clone draws the same */
    p = plain();
    p.temp = 0.7f;
    struct cs_sampler *s = mk(p, V);
    assert_int_equal(cs_sampler_set_bias(s, ids, b, 3, err, sizeof err), 0);
    double mx = -INFINITY, sum = 0.0;
    float xb[V];
    for (int i = 0; i < V; i++) {
        xb[i] = x[i] + (i == best ? -INFINITY : i == low ? 2.0f * b[1] : 0.0f);
        if (xb[i] > mx)
            mx = xb[i];
    }
    for (int i = 0; i < V; i++)
        sum += exp((xb[i] - mx) / p.temp);
    for (int i = 0; i < V; i++)
        ref[i] = (float)(exp((xb[i] - mx) / p.temp) / sum);
    cs_sampler_probs(s, x, pr);
    for (int i = 0; i < V; i++)
        assert_float_equal(pr[i], ref[i], 1e-6);
    assert_true(pr[best] == 0.0f);
    struct cs_sampler *c = NULL;
    assert_int_equal(cs_sampler_clone(s, &c, err, sizeof err), 0);
    for (int i = 0; i < 200; i++) {
        int32_t t = cs_sampler_sample(s, x);
        assert_int_not_equal(t, best);
        assert_int_equal(cs_sampler_sample(c, x), t);
    }
    /* through the public door, and cleared with n = 0 */
    clspec_sampler *ps = NULL;
    struct clspec_sampler_params pp;
    clspec_sampler_default_params(&pp, sizeof pp);
    pp.temp = 0.0f;
    assert_int_equal(clspec_sampler_new(&pp, V, &ps, err, sizeof err), 0);
    assert_int_equal(clspec_sampler_set_logit_bias(ps, ids, b, 1, err, sizeof err), 0);
    assert_int_equal(clspec_sampler_sample(ps, x), second);
    assert_int_equal(clspec_sampler_set_logit_bias(ps, NULL, NULL, 0, err, sizeof err), 0);
    assert_int_equal(clspec_sampler_sample(ps, x), best);
    assert_int_equal(clspec_sampler_set_logit_bias(NULL, ids, b, 1, err, sizeof err), CLSPEC_E_INVAL);
    clspec_sampler_free(ps);
    cs_sampler_free(c);
    cs_sampler_free(s);
    cs_sampler_free(g);
}

static void test_invalid_params(void **state)
{
    (void)state;
    char err[256] = "";
    struct cs_sampler *s = NULL;
    struct cs_sampler_params p = plain();
    p.top_p = 0.0f;
    assert_int_equal(cs_sampler_new(&p, 10, &s, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "top_p"));
    p = plain();
    assert_int_equal(cs_sampler_new(&p, 0, &s, err, sizeof err), CLSPEC_E_INVAL);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_is_argmax), cmocka_unit_test(test_is_argmax_query),   cmocka_unit_test(test_topk1_equals_greedy),
        cmocka_unit_test(test_seed_reproducible),  cmocka_unit_test(test_temperature_chi_square),
        cmocka_unit_test(test_top_p_set),          cmocka_unit_test(test_min_p_set),
        cmocka_unit_test(test_penalties_llama_cpp), cmocka_unit_test(test_clone_restore),
        cmocka_unit_test(test_invalid_params),     cmocka_unit_test(test_logit_bias),
    };
    return cmocka_run_group_tests_name("sampler", tests, NULL, NULL);
}
