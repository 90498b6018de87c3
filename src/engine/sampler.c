/* sampler.c: logit bias -> penalties -> top-k -> top-p -> min-p -> temperature -> draw, in
 * the order of llama.cpp's default sampler chain; xoshiro256** RNG seeded
 * through splitmix64. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/rng.h"
#include "engine/sampler.h"

struct cs_sampler_params cs_sampler_defaults(void)
{
    struct cs_sampler_params p = {
        .temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.0f,
        .freq_penalty = 0.0f, .presence_penalty = 0.0f, .penalty_last_n = 64, .seed = 0,
    };
    return p;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double cs_sampler_uniform(struct cs_sampler *s)
{
    return (double)(xoshiro_next(s->st.rng) >> 11) * 0x1.0p-53;
}

int32_t cs_argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) /* as cs_ref_argmax and cl/argmax.cl */
            best = i;
    return best;
}

void cs_sampler_reset(struct cs_sampler *s)
{
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->st.rng[i] = cs_splitmix64(&x);
    s->st.hist_n = 0;
    s->st.hist_head = 0;
    if (s->gram) {
        char err[CLSPEC_ERRLEN];
        cs_grammar_state_init(s->gram, &s->gst, err, sizeof err); /* on failure the state is empty (dead) */
        s->gforced = false;
    }
}

void cs_sampler_free(struct cs_sampler *s)
{
    if (!s)
        return;
    free(s->st.hist);
    free(s->work);
    free(s->idx);
    free(s->prob);
    free(s->count);
    free(s->cand);
    cs_grammar_unref(s->gram);
    cs_grammar_vocab_unref(s->gvocab);
    cs_grammar_state_free(&s->gst);
    cs_grammar_scratch_free(s->gsc);
    free(s->gmask);
    free(s->bias_id);
    free(s->bias);
    free(s);
}

int cs_sampler_new(const struct cs_sampler_params *p, int32_t n_vocab, struct cs_sampler **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (n_vocab <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler: n_vocab %d must be > 0", n_vocab);
    if (!(p->top_p > 0.0f) || !(p->min_p < 1.0f) || !(p->repeat_penalty > 0.0f) || p->penalty_last_n < 0 ||
        isnan(p->temp) || isnan(p->freq_penalty) || isnan(p->presence_penalty))
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "sampler: invalid parameters (top_p %g must be > 0, min_p %g < 1, repeat_penalty %g > 0, "
                      "penalty_last_n %d >= 0)",
                      p->top_p, p->min_p, p->repeat_penalty, p->penalty_last_n);
    struct cs_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->st.hist_cap = CS_MAX(p->penalty_last_n, 1);
    s->st.hist = calloc((size_t)s->st.hist_cap, sizeof(int32_t));
    s->work = malloc((size_t)n_vocab * sizeof(float));
    s->idx = malloc((size_t)n_vocab * sizeof(int32_t));
    s->prob = malloc((size_t)n_vocab * sizeof(float));
    s->count = calloc((size_t)n_vocab, sizeof(int32_t));
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->st.hist || !s->work || !s->idx || !s->prob || !s->count || !s->cand) {
        cs_sampler_free(s);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler: out of memory");
    }
    cs_sampler_reset(s);
    *out = s;
    return CLSPEC_OK;
}

int cs_sampler_restore(struct cs_sampler *dst, const struct cs_sampler *src, char *err, size_t errlen)
{
    if (dst->st.hist_cap != src->st.hist_cap || dst->n_vocab != src->n_vocab)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler restore: samplers differ in history size or vocabulary");
    memcpy(dst->st.rng, src->st.rng, sizeof dst->st.rng);
    memcpy(dst->st.hist, src->st.hist, (size_t)src->st.hist_cap * sizeof(int32_t));
    dst->st.hist_n = src->st.hist_n;
    dst->st.hist_head = src->st.hist_head;
    if (dst->gram != src->gram || dst->gvocab != src->gvocab) {
        int rc = cs_sampler_set_grammar(dst, src->gram, src->gvocab, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (src->gram && cs_grammar_state_copy(&dst->gst, &src->gst) < 0)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler restore: out of memory (grammar state)");
    dst->gforced = src->gforced;
    return CLSPEC_OK;
}

int cs_sampler_clone(const struct cs_sampler *s, struct cs_sampler **out, char *err, size_t errlen)
{
    int rc = cs_sampler_new(&s->p, s->n_vocab, out, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_sampler_set_bias(*out, s->bias_id, s->bias, s->n_bias, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_sampler_restore(*out, s, err, errlen);
    if (rc < 0) {
        cs_sampler_free(*out);
        *out = NULL;
    }
    return rc;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int cs_sampler_set_bias(struct cs_sampler *s, const int32_t *ids, const float *bias, int32_t n, char *err,
                        size_t errlen)
{
    if (n < 0 || (n > 0 && (!ids || !bias)))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler logit bias: %d entries without ids or biases", n);
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "sampler logit bias: token %d is outside the vocabulary (0..%d)",
                          ids[i], s->n_vocab - 1);
        if (isnan(bias[i]) || bias[i] == INFINITY)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler logit bias: token %d's bias is %g (a number or -inf)",
                          ids[i], bias[i]);
    }
    int32_t *id = n ? malloc((size_t)n * sizeof *id) : NULL;
    float *b = n ? malloc((size_t)n * sizeof *b) : NULL;
    if (n && (!id || !b)) {
        free(id);
        free(b);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler logit bias: out of memory");
    }
    if (n)
        memcpy(id, ids, (size_t)n * sizeof *id);
    if (n)
        qsort(id, (size_t)n, sizeof *id, cmp_i32);
    int32_t m = 0; /* distinct ids; each one's biases summed */
    for (int32_t i = 0; i < n; i++)
        if (m == 0 || id[m - 1] != id[i])
            id[m++] = id[i];
    for (int32_t k = 0; k < m; k++)
        b[k] = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        int32_t *at = bsearch(&ids[i], id, (size_t)m, sizeof *id, cmp_i32);
        b[at - id] += bias[i];
    }
    free(s->bias_id);
    free(s->bias);
    s->bias_id = id;
    s->bias = b;
    s->n_bias = m;
    return CLSPEC_OK;
}

/* logits into s->work with the logit bias added */
static void biased(struct cs_sampler *s, const float *logits)
{
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof(float));
    for (int32_t i = 0; i < s->n_bias; i++)
        s->work[s->bias_id[i]] += s->bias[i];
}

int cs_sampler_accept(struct cs_sampler *s, int32_t token)
{
    if (s->p.penalty_last_n > 0) {
        s->st.hist[s->st.hist_head] = token;
        s->st.hist_head = (s->st.hist_head + 1) % s->st.hist_cap;
        if (s->st.hist_n < s->st.hist_cap)
            s->st.hist_n++;
    }
    if (!s->gram || (s->gforced && token == s->gvocab->first_eog))
        return CLSPEC_OK;
    int rc = cs_grammar_accept_token(s->gram, &s->gst, s->gvocab, token, s->gsc);
    return rc == 1 ? CLSPEC_OK : rc < 0 ? CLSPEC_E_NOMEM : CLSPEC_E_INVAL;
}

int cs_sampler_set_grammar(struct cs_sampler *s, struct cs_grammar *g, struct cs_grammar_vocab *v, char *err,
                           size_t errlen)
{
    if (g && (!v || v->n_vocab != s->n_vocab))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler grammar: vocabulary of %d tokens, sampler has %d",
                      v ? v->n_vocab : 0, s->n_vocab);
    if (g && !s->gsc && !(s->gsc = cs_grammar_scratch_new()))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler grammar: out of memory");
    if (g && !s->gmask && !(s->gmask = malloc((size_t)s->n_vocab)))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler grammar: out of memory");
    if (g)
        CS_TRY(cs_grammar_state_init(g, &s->gst, err, errlen));
    cs_grammar_ref(g);
    cs_grammar_vocab_ref(g ? v : NULL);
    cs_grammar_unref(s->gram);
    cs_grammar_vocab_unref(s->gvocab);
    s->gram = g;
    s->gvocab = g ? v : NULL;
    s->gforced = false;
    return CLSPEC_OK;
}

int32_t cs_sampler_grammar_prefix(struct cs_sampler *s, const int32_t *tokens, int32_t n)
{
    if (!s->gram || n <= 0)
        return CS_MAX(n, 0);
    struct cs_grammar_state tmp = {0};
    int32_t k = 0;
    if (cs_grammar_state_copy(&tmp, &s->gst) == 0)
        for (; k < n; k++) {
            if (cs_grammar_accept_token(s->gram, &tmp, s->gvocab, tokens[k], s->gsc) != 1)
                break;
            if (s->gvocab->eog[tokens[k]]) {
                k++;
                break;
            }
        }
    cs_grammar_state_free(&tmp);
    return k;
}

int cs_sampler_grammar_state(const struct cs_sampler *s)
{
    if (!s->gram)
        return 0;
    if (s->gforced || cs_grammar_dead(&s->gst))
        return 3;
    return cs_grammar_complete(s->gram, &s->gst) ? 2 : 1;
}

/* Sets the logits of the tokens the grammar forbids to -inf in w; returns
 * how many are allowed. */
static int32_t grammar_mask(struct cs_sampler *s, float *w)
{
    int32_t n = cs_grammar_mask(s->gram, &s->gst, s->gvocab, s->gmask, s->gsc);
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (!s->gmask[i])
            w[i] = -INFINITY;
    return n;
}

void cs_sampler_apply_penalties(struct cs_sampler *s, float *logits)
{
    const struct cs_sampler_params *p = &s->p;
    if (p->penalty_last_n <= 0 || s->st.hist_n == 0 ||
        (p->repeat_penalty == 1.0f && p->freq_penalty == 0.0f && p->presence_penalty == 0.0f))
        return;
    for (int32_t i = 0; i < s->st.hist_n; i++) {
        int32_t t = s->st.hist[i];
        if (t >= 0 && t < s->n_vocab)
            s->count[t]++;
    }
    for (int32_t i = 0; i < s->st.hist_n; i++) {
        int32_t t = s->st.hist[i];
        if (t < 0 || t >= s->n_vocab || s->count[t] == 0)
            continue; /* out of range, or already handled */
        int32_t c = s->count[t];
        float l = logits[t];
        l = l <= 0.0f ? l * p->repeat_penalty : l / p->repeat_penalty;
        l -= (float)c * p->freq_penalty + (c > 0 ? p->presence_penalty : 0.0f);
        logits[t] = l;
        s->count[t] = 0;
    }
}

/* The token sampled when a grammar allows none: an end-of-generation token. */
static int32_t forced_token(const struct cs_sampler *s)
{
    return s->gvocab->first_eog >= 0 ? s->gvocab->first_eog : 0;
}

static int cmp_desc(const void *a, const void *b)
{
    const struct cs_sampler_cand *x = a, *y = b;
    if (x->logit > y->logit)
        return -1;
    if (x->logit < y->logit)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Candidates from s->work (penalised logits), sorted descending (ties: lower
 * id first), filtered by top-k, top-p (softmax of the remaining logits, no
 * temperature), min-p (p >= min_p * p_max). */
static int32_t filter(struct cs_sampler *s, int32_t *ids)
{
    const struct cs_sampler_params *p = &s->p;
    const float *w = s->work;
    int32_t n = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) /* -inf (a grammar's mask): never a candidate, not sorted */
        if (w[i] != -INFINITY) {
            s->cand[n].logit = w[i];
            s->cand[n++].id = i;
        }
    if (n == 0) /* all -inf: every token stays a candidate */
        for (; n < s->n_vocab; n++) {
            s->cand[n].logit = w[n];
            s->cand[n].id = n;
        }
    qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_desc);
    for (int32_t i = 0; i < n; i++)
        ids[i] = s->cand[i].id;
    if (p->top_k > 0 && p->top_k < n)
        n = p->top_k;
    if (p->top_p < 1.0f && n > 1) {
        double sum = 0.0, mx = w[ids[0]];
        for (int32_t i = 0; i < n; i++)
            sum += exp((double)w[ids[i]] - mx);
        double cum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            cum += exp((double)w[ids[i]] - mx) / sum;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f && n > 1) {
        float thr = w[ids[0]] + logf(p->min_p);
        int32_t k = 1;
        while (k < n && w[ids[k]] >= thr)
            k++;
        n = k;
    }
    return n;
}

bool cs_sampler_is_argmax(const struct cs_sampler *s)
{
    const struct cs_sampler_params *p = &s->p;
    bool penalties = p->penalty_last_n > 0 &&
                     (p->repeat_penalty != 1.0f || p->freq_penalty != 0.0f || p->presence_penalty != 0.0f);
    /* every option that cs_sampler_sample applies before its argmax (biased, penalties, grammar) is off */
    return !(p->temp > 0.0f) && !penalties && !s->gram && s->n_bias == 0;
}

int32_t cs_sampler_candidates(struct cs_sampler *s, const float *logits, int32_t *ids)
{
    biased(s, logits);
    cs_sampler_apply_penalties(s, s->work);
    if (s->gram && grammar_mask(s, s->work) == 0)
        s->work[forced_token(s)] = 0.0f;
    return filter(s, ids);
}

int32_t cs_sampler_sample(struct cs_sampler *s, const float *logits)
{
    biased(s, logits);
    cs_sampler_apply_penalties(s, s->work);
    if (s->gram) {
        int32_t t = cs_argmax(s->work, s->n_vocab);
        /* greedy: the unconstrained pick stands when the grammar allows it (it is the masked argmax too) */
        if (!(s->p.temp > 0.0f) && cs_grammar_token_allowed(s->gram, &s->gst, s->gvocab, t, s->gsc))
            return t;
        if (grammar_mask(s, s->work) == 0) {
            s->gforced = true;
            return forced_token(s);
        }
    }
    if (!(s->p.temp > 0.0f))
        return cs_argmax(s->work, s->n_vocab);
    int32_t n = filter(s, s->idx);
    if (n == 1)
        return s->idx[0];
    double mx = s->work[s->idx[0]], sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->prob[i] = (float)exp(((double)s->work[s->idx[i]] - mx) / s->p.temp);
        sum += s->prob[i];
    }
    double u = cs_sampler_uniform(s) * sum, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += s->prob[i];
        if (u < cum)
            return s->idx[i];
    }
    return s->idx[n - 1];
}

void cs_sampler_probs(struct cs_sampler *smp, const float *logits, float *p)
{
    int32_t V = smp->n_vocab;
    memset(p, 0, (size_t)V * sizeof *p);
    int32_t n = cs_sampler_candidates(smp, logits, smp->idx); /* penalties into smp->work, filters */
    if (!(smp->p.temp > 0.0f) || n == 1) {
        p[n == 1 ? smp->idx[0] : cs_argmax(smp->work, V)] = 1.0f;
        return;
    }
    double mx = smp->work[smp->idx[0]], sum = 0.0;
    for (int32_t i = 0; i < n; i++)
        sum += exp(((double)smp->work[smp->idx[i]] - mx) / smp->p.temp);
    for (int32_t i = 0; i < n; i++)
        p[smp->idx[i]] = (float)(exp(((double)smp->work[smp->idx[i]] - mx) / smp->p.temp) / sum);
}
