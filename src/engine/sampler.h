/* sampler.h: token sampling from a logits row: penalties over a window of
 * recent tokens, top-k / top-p / min-p filters, temperature, seeded RNG.
 * cs_sampler owns its RNG, history and scratch; the caller owns logits (never modified). */
#ifndef CS_SAMPLER_H
#define CS_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/grammar.h"

struct cs_sampler_params {
    float temp;             /* <= 0: greedy (argmax after penalties) */
    int32_t top_k;          /* <= 0 or >= n_vocab: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float repeat_penalty;   /* 1: off; logit > 0 divided, <= 0 multiplied (llama.cpp) */
    float freq_penalty;     /* 0: off; logit -= count * freq_penalty */
    float presence_penalty; /* 0: off; logit -= (count > 0) * presence_penalty */
    int32_t penalty_last_n; /* window of accepted tokens the penalties look at (0: off) */
    uint64_t seed;
};

/* The defaults llama.cpp uses: temp 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * penalties off, last_n 64, seed 0. */
struct cs_sampler_params cs_sampler_defaults(void);

/* Everything that evolves while generating: restoring it rewinds the sampler exactly. */
struct cs_sampler_state {
    uint64_t rng[4];     /* xoshiro256** state */
    int32_t *hist;       /* ring of the last penalty_last_n accepted tokens (cap entries) */
    int32_t hist_cap;    /* = max(penalty_last_n, 1) */
    int32_t hist_n;      /* valid entries */
    int32_t hist_head;   /* next write index */
};

struct cs_sampler_cand {
    float logit;
    int32_t id;
};

struct cs_sampler {
    struct cs_sampler_params p;
    int32_t n_vocab;
    struct cs_sampler_state st;
    /* scratch (n_vocab each), not state */
    float *work;         /* logits after penalties */
    int32_t *idx;        /* candidate ids */
    float *prob;         /* candidate probabilities */
    int32_t *count;      /* occurrence counts in the window */
    struct cs_sampler_cand *cand; /* sort buffer */
    /* grammar (gram NULL: none): compiled rules and the vocabulary's texts,
     * shared (reference counted) with clones; gst is state like st */
    struct cs_grammar *gram;
    struct cs_grammar_vocab *gvocab;
    struct cs_grammar_state gst;
    bool gforced;                   /* state: nothing was allowed, an EOG token was forced */
    struct cs_grammar_scratch *gsc; /* scratch */
    uint8_t *gmask;                 /* scratch (n_vocab): 1 = allowed */
    /* logit bias (configuration, like p; carried by clone): added to the
     * logits before everything else; -inf: never sampled */
    int32_t n_bias;
    int32_t *bias_id;               /* (n_bias) distinct token ids, ascending */
    float *bias;                    /* (n_bias) the sum of the biases given for that id */
};

int cs_sampler_new(const struct cs_sampler_params *p, int32_t n_vocab, struct cs_sampler **out, char *err,
                   size_t errlen);
void cs_sampler_free(struct cs_sampler *s);
/* A new sampler with the same parameters and the same complete state. */
int cs_sampler_clone(const struct cs_sampler *s, struct cs_sampler **out, char *err, size_t errlen);
/* Copies the complete state (RNG + history) of src into dst (same params/vocab). */
int cs_sampler_restore(struct cs_sampler *dst, const struct cs_sampler *src, char *err, size_t errlen);

/* Sets s's logit bias: bias[i] is added to the logit of ids[i] (repeated
 * ids add up; -INFINITY: never sampled) before penalties, grammar and
 * filters, in sample / candidates / probs alike. n = 0 clears it.
 * CLSPEC_E_RANGE for an id outside the vocabulary, CLSPEC_E_INVAL for a
 * NaN or +inf bias (s unchanged then). */
int cs_sampler_set_bias(struct cs_sampler *s, const int32_t *ids, const float *bias, int32_t n, char *err,
                        size_t errlen);

/* Picks a token from logits (n_vocab floats). Advances the RNG (when not
 * greedy) but does not record the token: call cs_sampler_accept for that. */
int32_t cs_sampler_sample(struct cs_sampler *s, const float *logits);
/* Records an accepted token in the penalty history (prompt tokens too, if
 * wanted) and advances the grammar over it. CLSPEC_E_INVAL (history
 * recorded, grammar unchanged) when the grammar forbids it. */
int cs_sampler_accept(struct cs_sampler *s, int32_t token);

/* Constrains s by grammar g over vocabulary v (both shared: references are
 * taken); g NULL removes the grammar. The grammar starts at its root. From
 * then on sample / probs / candidates see only the tokens the grammar
 * allows (end-of-generation tokens only where it is complete); when it
 * allows none, sample returns v's first EOG token (cs_sampler_grammar_state
 * then says so). Restore / clone carry the grammar and its state. */
int cs_sampler_set_grammar(struct cs_sampler *s, struct cs_grammar *g, struct cs_grammar_vocab *v, char *err,
                           size_t errlen);
/* How many of tokens[0..n) the grammar allows in sequence from the current
 * state (n without a grammar), up to and including an allowed EOG token. */
int32_t cs_sampler_grammar_prefix(struct cs_sampler *s, const int32_t *tokens, int32_t n);
/* 0: no grammar; 1: constrained, not complete; 2: complete (end allowed);
 * 3: nothing can follow (an EOG token was forced or the state is dead). */
int cs_sampler_grammar_state(const struct cs_sampler *s);
/* Clears the history and reseeds the RNG. */
void cs_sampler_reset(struct cs_sampler *s);

/* Applies the penalties of the current history to logits in place (exposed for tests). */
void cs_sampler_apply_penalties(struct cs_sampler *s, float *logits);
/* Whether cs_sampler_sample(s, logits) is cs_argmax(logits) for every logits
 * row: greedy, and no logit bias, penalty or grammar that would move the
 * pick. Whoever takes the argmax elsewhere (on the device) asks this. */
bool cs_sampler_is_argmax(const struct cs_sampler *s);
/* Candidate set after penalties and top-k/top-p/min-p (before temperature):
 * writes ids sorted by descending logit into ids (n_vocab capacity), returns
 * the count. Exposed for tests. */
int32_t cs_sampler_candidates(struct cs_sampler *s, const float *logits, int32_t *ids);

/* The distribution the sampler would draw from for this logits row
 * (penalties, top-k/top-p/min-p, temperature), written to p (n_vocab):
 * one-hot at the greedy pick when temp <= 0. Uses s's scratch only. */
void cs_sampler_probs(struct cs_sampler *s, const float *logits, float *p);

/* The sampler's RNG: uniform in [0, 1) (53 bits). */
double cs_sampler_uniform(struct cs_sampler *s);

/* Index of the largest value (first on ties). */
int32_t cs_argmax(const float *x, int32_t n);

#endif
