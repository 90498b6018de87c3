/* ctl.c: see ctl.h. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "spec/ctl.h"

#define CTL_DECAY_SLOT 0.9    /* per observation: a slot's acceptance follows its text */
#define CTL_DECAY_ALL 0.98    /* per observation: the speculator-wide prior */
#define CTL_EMA_MIN 0.125     /* the weight of a new cost sample once 8 are in */
#define CTL_PRIOR_SUCC_MAX 20.0

static int table_init(struct cs_ctl_table *t, int32_t len, int32_t first)
{
    t->len = len;
    t->first = first;
    t->ring = calloc((size_t)len * CS_CTL_RING, sizeof *t->ring);
    t->med = calloc((size_t)len, sizeof *t->med);
    t->n = calloc((size_t)len, sizeof *t->n);
    t->est = calloc((size_t)len, sizeof *t->est);
    t->px = calloc((size_t)len, sizeof *t->px);
    t->pv = calloc((size_t)len, sizeof *t->pv);
    t->pw = calloc((size_t)len, sizeof *t->pw);
    return t->ring && t->med && t->n && t->est && t->px && t->pv && t->pw ? CLSPEC_OK : CLSPEC_E_NOMEM;
}

static void table_free(struct cs_ctl_table *t)
{
    free(t->ring);
    free(t->med);
    free(t->n);
    free(t->est);
    free(t->px);
    free(t->pv);
    free(t->pw);
}

int cs_ctl_init(struct cs_ctl *c, int32_t n_max, int32_t max_rows, bool batched)
{
    memset(c, 0, sizeof *c);
    c->n_max = n_max;
    c->batched = batched;
    c->probe = CS_CTL_PROBE_MIN;
    if (table_init(&c->verify, max_rows + 1, 1) < 0 || table_init(&c->draft, n_max + 1, 1) < 0) {
        cs_ctl_free(c);
        return CLSPEC_E_NOMEM;
    }
    return CLSPEC_OK;
}

void cs_ctl_free(struct cs_ctl *c)
{
    table_free(&c->verify);
    table_free(&c->draft);
    memset(c, 0, sizeof *c);
}

void cs_ctl_slot_reset(const struct cs_ctl *c, struct cs_ctl_slot *s)
{
    memset(s, 0, sizeof *s);
    s->probe = CS_MAX(c->probe, CS_CTL_PROBE_MIN);
    double n = c->g_succ + c->g_fail;
    if (n > 0.0 && c->g_fail > 0.0) { /* one pseudo rejection and the successes the global rate gives it */
        double a = c->g_succ / n;
        s->succ = a < 1.0 ? CS_MIN(a / (1.0 - a), CTL_PRIOR_SUCC_MAX) : CTL_PRIOR_SUCC_MAX;
        s->fail = 1.0;
    } else if (n > 0.0) { /* never rejected so far */
        s->succ = CTL_PRIOR_SUCC_MAX;
        s->fail = 1.0;
    } else {
        s->succ = s->fail = 1.0;
    }
}

double cs_ctl_alpha(const struct cs_ctl_slot *s)
{
    double a = (s->succ + 0.5) / (s->succ + s->fail + 1.0);
    return CS_MIN(CS_MAX(a, 0.01), 0.99);
}

double cs_ctl_expected(double alpha, int32_t k)
{
    if (k <= 0)
        return 1.0;
    return (1.0 - pow(alpha, (double)k + 1.0)) / (1.0 - alpha);
}

double cs_ctl_estimate(const struct cs_ctl_table *t, int32_t i)
{
    if (i < t->first)
        return 0.0;
    if (!t->fitted)
        return -1.0;
    if (t->curve && i < t->len)
        return t->est[i];
    return CS_MAX(t->a + t->b * (double)i, 1e-7);
}

/* est from the medians of the indices with CS_CTL_MED_MIN samples or more:
 * pooled adjacent violators (weights: samples, up to CS_CTL_RING) make them
 * non-decreasing, then linear between them, with the line's slope before
 * the first and after the last. */
static void table_curve(struct cs_ctl_table *t)
{
    int32_t m = 0;
    for (int32_t i = t->first; i < t->len; i++) {
        if (t->n[i] < CS_CTL_MED_MIN)
            continue;
        t->px[m] = i;
        t->pv[m] = t->med[i];
        t->pw[m] = (double)CS_MIN(t->n[i], (uint32_t)CS_CTL_RING);
        m++;
        while (m >= 2 && t->pv[m - 2] > t->pv[m - 1]) { /* pool the last two: their weighted mean */
            double w = t->pw[m - 2] + t->pw[m - 1];
            t->pv[m - 2] = (t->pv[m - 2] * t->pw[m - 2] + t->pv[m - 1] * t->pw[m - 1]) / w;
            t->pw[m - 2] = w;
            m--; /* the pool keeps the earlier index; the later ones are interpolated */
        }
    }
    t->curve = m > 0;
    if (!t->curve)
        return;
    int32_t j = 0;
    for (int32_t i = 0; i < t->len; i++) {
        while (j + 1 < m && t->px[j + 1] <= i)
            j++;
        double v;
        if (i <= t->px[0])
            v = t->pv[0] - t->b * (double)(t->px[0] - i);
        else if (j + 1 < m)
            v = t->pv[j] + (t->pv[j + 1] - t->pv[j]) * (double)(i - t->px[j]) / (double)(t->px[j + 1] - t->px[j]);
        else
            v = t->pv[m - 1] + t->b * (double)(i - t->px[m - 1]);
        t->est[i] = CS_MAX(v, 1e-7);
    }
}

/* The line through the medians (weights: samples, up to CS_CTL_RING). */
static void table_fit(struct cs_ctl_table *t)
{
    double W = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    int32_t n_idx = 0;
    for (int32_t i = t->first; i < t->len; i++) {
        if (!t->n[i])
            continue;
        double w = (double)CS_MIN(t->n[i], (uint32_t)CS_CTL_RING), x = (double)i, y = t->med[i];
        W += w;
        sx += w * x;
        sy += w * y;
        sxx += w * x * x;
        sxy += w * x * y;
        n_idx++;
    }
    if (W <= 0.0)
        return;
    double den = W * sxx - sx * sx;
    t->b = n_idx >= 2 && den > 0.0 ? (W * sxy - sx * sy) / den : 0.0;
    t->b = CS_MAX(t->b, 0.0); /* more rows (a longer draft) never cost less */
    t->a = (sy - t->b * sx) / W;
    t->fitted = true;
    table_curve(t);
}

void cs_ctl_sample(struct cs_ctl_table *t, int32_t i, double secs)
{
    if (i < t->first || i >= t->len || !(secs >= 0.0) || secs > 60.0)
        return;
    float *r = t->ring + (size_t)i * CS_CTL_RING;
    r[t->n[i] % CS_CTL_RING] = (float)secs;
    if (t->n[i] < UINT32_MAX)
        t->n[i]++;
    uint32_t m = CS_MIN(t->n[i], (uint32_t)CS_CTL_RING);
    float v[CS_CTL_RING];
    memcpy(v, r, m * sizeof *v);
    for (uint32_t a = 1; a < m; a++) /* insertion sort of <= 8 */
        for (uint32_t b = a; b > 0 && v[b - 1] > v[b]; b--) {
            float x = v[b];
            v[b] = v[b - 1];
            v[b - 1] = x;
        }
    t->med[i] = m % 2 ? v[m / 2] : 0.5 * ((double)v[m / 2 - 1] + (double)v[m / 2]);
    table_fit(t);
}

void cs_ctl_observe(struct cs_ctl *c, struct cs_ctl_slot *s, int32_t n_draft, int32_t n_acc)
{
    if (n_draft <= 0)
        return;
    double f = n_acc < n_draft ? 1.0 : 0.0;
    s->succ = s->succ * CTL_DECAY_SLOT + (double)n_acc;
    s->fail = s->fail * CTL_DECAY_SLOT + f;
    c->g_succ = c->g_succ * CTL_DECAY_ALL + (double)n_acc;
    c->g_fail = c->g_fail * CTL_DECAY_ALL + f;
}

/* whether index i of t is priced by its median (CS_CTL_MED_MIN samples) */
static bool priced(const struct cs_ctl_table *t, int32_t i)
{
    return i >= 0 && i < t->len && t->n[i] >= CS_CTL_MED_MIN;
}

/* Estimated seconds of the step with lengths k[] (n slots, n_base rows
 * that are not the slots' own): its draft calls and the rest. */
static double step_secs(const struct cs_ctl *c, const int32_t *k, int32_t n, int32_t n_base)
{
    double draft = 0.0;
    int32_t rows = n_base, kmax = 0;
    for (int32_t i = 0; i < n; i++) {
        rows += k[i] + 1;
        kmax = CS_MAX(kmax, k[i]);
        if (!c->batched && k[i] > 0)
            draft += CS_MAX(cs_ctl_estimate(&c->draft, k[i]), 0.0);
    }
    if (c->batched && kmax > 0)
        draft = CS_MAX(cs_ctl_estimate(&c->draft, kmax), 0.0);
    return cs_ctl_estimate(&c->verify, rows) + draft;
}

/* Expected tokens per second of the step with lengths k[]. */
static double rate(const struct cs_ctl *c, const double *alpha, const int32_t *k, int32_t n, int32_t n_base)
{
    double tok = 0.0;
    for (int32_t i = 0; i < n; i++)
        tok += cs_ctl_expected(alpha[i], k[i]);
    double t = step_secs(c, k, n, n_base);
    return t > 0.0 ? tok / t : tok * 1e12;
}

void cs_ctl_choose(struct cs_ctl *c, struct cs_ctl_slot *const *slots, const int32_t *kmax, int32_t n,
                   int32_t n_base, int32_t *k)
{
    double alpha[64];
    n = CS_MIN(n, 64);
    for (int32_t i = 0; i < n; i++) {
        k[i] = 0;
        alpha[i] = cs_ctl_alpha(slots[i]);
    }
    /* plain decoding measured first (at these rows or fewer): the yardstick */
    bool plain_known = false;
    for (int32_t r = CS_MIN(n + n_base, c->verify.len - 1); r >= 0 && !plain_known; r--)
        plain_known = c->verify.n[r] > 0;
    if (!plain_known) {
        for (int32_t i = 0; i < n; i++)
            slots[i]->k = 0;
        return;
    }
    /* the best common length first (one draft call serves all slots: alone, no slot's draft may pay
     * for it), then coordinate ascent: each slot's best length given the others' */
    double best = rate(c, alpha, k, n, n_base);
    int32_t kk_max = 0, t[64];
    for (int32_t i = 0; i < n; i++)
        kk_max = CS_MAX(kk_max, kmax[i]);
    for (int32_t kk = 1; kk <= kk_max; kk++) {
        for (int32_t i = 0; i < n; i++)
            t[i] = CS_MIN(kk, kmax[i]);
        double r = rate(c, alpha, t, n, n_base);
        if (r > best * (1.0 + 1e-9)) {
            best = r;
            memcpy(k, t, (size_t)n * sizeof *k);
        }
    }
    for (int pass = 0; pass < 8; pass++) {
        bool moved = false;
        for (int32_t i = 0; i < n; i++) {
            int32_t keep = k[i];
            for (int32_t kk = 0; kk <= kmax[i]; kk++) {
                k[i] = kk;
                double r = rate(c, alpha, k, n, n_base);
                if (r > best * (1.0 + 1e-9)) {
                    best = r;
                    keep = kk;
                    moved = true;
                }
            }
            k[i] = keep;
        }
        if (!moved)
            break;
    }
    /* a plain step now and then while drafting, so that plain decoding is measured under the load
     * the drafts are (the tables keep the latest samples of each index) */
    bool any = false;
    for (int32_t i = 0; i < n; i++)
        any |= k[i] > 0;
    c->n_on = any ? c->n_on + 1 : 0;
    if (any && c->n_on >= CS_CTL_REFRESH) {
        c->n_on = 0;
        for (int32_t i = 0; i < n; i++)
            slots[i]->k = k[i] = 0;
        return;
    }
    /* slots left plain: re-probe now and then */
    for (int32_t i = 0; i < n; i++) {
        struct cs_ctl_slot *s = slots[i];
        s->k = 0;
        if (kmax[i] <= 0)
            continue;
        if (k[i] > 0) {
            s->n_off = 0;
            s->probe = c->probe = CS_CTL_PROBE_MIN;
        } else if (++s->n_off >= s->probe) {
            k[i] = CS_MIN(kmax[i], 3);
            s->n_off = 0;
            /* the next probe: twice as late, and late enough that probes cost at most
             * CS_CTL_PROBE_BUDGET of the plain steps between them */
            int32_t pk[64] = {0};
            double plain = step_secs(c, pk, n, n_base);
            pk[i] = k[i];
            double excess = plain > 0.0 ? step_secs(c, pk, n, n_base) / plain - 1.0 : 0.0;
            int32_t need = excess > 0.0 ? (int32_t)CS_MIN(excess / CS_CTL_PROBE_BUDGET, 1e6) : 0;
            if (!priced(&c->draft, k[i]) || !priced(&c->verify, n_base + n + k[i]))
                need = 0; /* one slow sample (a first launch, a hiccup) must not put the next probe past the run */
            s->probe = c->probe = CS_MIN(CS_MAX(2 * s->probe, need), CS_CTL_PROBE_MAX);
        } else {
            s->n_steps_off++;
        }
        s->k = k[i];
    }
}

double cs_ctl_theory(const struct cs_ctl *c, int32_t n, int32_t *k_best)
{
    double alpha = c->g_succ + c->g_fail > 0.0 ? c->g_succ / (c->g_succ + c->g_fail) : 0.0;
    alpha = CS_MIN(alpha, 0.99);
    double plain = cs_ctl_estimate(&c->verify, n), best = 1.0;
    *k_best = 0;
    if (!(plain > 0.0))
        return 1.0;
    for (int32_t k = 1; k <= c->n_max; k++) {
        double d = CS_MAX(cs_ctl_estimate(&c->draft, k), 0.0) * (c->batched ? 1.0 : (double)n);
        double t = cs_ctl_estimate(&c->verify, n * (k + 1)) + d;
        double r = t > 0.0 ? cs_ctl_expected(alpha, k) * plain / t : 0.0;
        if (r > best) {
            best = r;
            *k_best = k;
        }
    }
    return best;
}

void cs_ctl_report(const struct cs_ctl *c, int32_t n, struct cs_strbuf *b)
{
    double alpha = c->g_succ + c->g_fail > 0.0 ? c->g_succ / (c->g_succ + c->g_fail) : 0.0;
    double plain = cs_ctl_estimate(&c->verify, n);
    cs_strbuf_printf(b, "alpha %.3f; plain step (%d rows) %.3f ms; verify c(k) = t(%d(k+1) rows)/t(%d):", alpha, n,
                     plain * 1e3, n, n);
    for (int32_t k = 1; k <= c->n_max; k++) {
        int32_t r = n * (k + 1);
        double t = cs_ctl_estimate(&c->verify, r);
        cs_strbuf_printf(b, " %d:%.2f%s", k, plain > 0.0 ? t / plain : 0.0,
                         r < c->verify.len && c->verify.n[r] ? "" : "~");
    }
    cs_strbuf_printf(b, "; draft ms by k (%s):", c->batched ? "one call for all slots" : "per slot");
    for (int32_t k = 1; k <= c->n_max; k++)
        cs_strbuf_printf(b, " %d:%.3f%s", k, CS_MAX(cs_ctl_estimate(&c->draft, k), 0.0) * 1e3,
                         c->draft.n[k] ? "" : "~");
    int32_t kb = 0;
    double th = cs_ctl_theory(c, n, &kb);
    cs_strbuf_printf(b, "; theoretical speedup %.2fx at k = %d", th, kb);
}
