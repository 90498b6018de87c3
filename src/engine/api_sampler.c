/* api_sampler.c: the engine door's sampling part (include/clspec/clspec.h):
 * samplers and their saved states, grammars over an engine's vocabulary,
 * JSON Schema to GBNF, logit bias; over src/engine/sampler.c, grammar.c
 * and json_schema.c. */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/api.h"
#include "clspec/clspec.h"
#include "base/common.h"
#include "engine/grammar.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"

/* the size of the first clspec_sampler_params: a caller may not pass less */
#define SAMPLER_PARAMS_V1 (offsetof(struct clspec_sampler_params, seed) + sizeof(uint64_t))

/* ---- sampling ---- */

void clspec_sampler_default_params(struct clspec_sampler_params *p, size_t size)
{
    if (!p || size < sizeof p->size)
        return;
    struct cs_sampler_params d = cs_sampler_defaults();
    struct clspec_sampler_params q;
    memset(&q, 0, sizeof q);
    q.size = (uint32_t)CS_MIN(size, sizeof q);
    q.temp = d.temp;
    q.top_k = d.top_k;
    q.top_p = d.top_p;
    q.min_p = d.min_p;
    q.repeat_penalty = d.repeat_penalty;
    q.freq_penalty = d.freq_penalty;
    q.presence_penalty = d.presence_penalty;
    q.penalty_last_n = d.penalty_last_n;
    q.seed = d.seed;
    memcpy(p, &q, q.size);
}

void cs_api_sampler_params(const struct clspec_sampler_params *in, struct cs_sampler_params *out)
{
    *out = cs_sampler_defaults();
    out->temp = in->temp;
    out->top_k = in->top_k;
    out->top_p = in->top_p;
    out->min_p = in->min_p;
    out->repeat_penalty = in->repeat_penalty;
    out->freq_penalty = in->freq_penalty;
    out->presence_penalty = in->presence_penalty;
    out->penalty_last_n = in->penalty_last_n;
    out->seed = in->seed;
}

int clspec_sampler_new(const struct clspec_sampler_params *in, int32_t n_vocab, clspec_sampler **out, char *err,
                       size_t errlen)
{
    if (!out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler: out is NULL");
    *out = NULL;
    if (!in || in->size < SAMPLER_PARAMS_V1)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "sampler: params NULL or size smaller than version 1's %zu (call "
                      "clspec_sampler_default_params first)",
                      (size_t)SAMPLER_PARAMS_V1);
    struct clspec_sampler_params p;
    clspec_sampler_default_params(&p, sizeof p);
    memcpy(&p, in, CS_MIN((size_t)in->size, sizeof p));
    struct cs_sampler_params sp;
    cs_api_sampler_params(&p, &sp);
    return cs_api_sampler_new(&sp, n_vocab, out, err, errlen);
}

void clspec_sampler_free(clspec_sampler *s)
{
    if (!s)
        return;
    cs_sampler_free(s->s);
    free(s);
}

int32_t clspec_sampler_sample(clspec_sampler *s, const float *logits)
{
    if (!s || !logits)
        return CLSPEC_E_INVAL;
    return cs_sampler_sample(s->s, logits);
}

int clspec_sampler_accept(clspec_sampler *s, int32_t token)
{
    if (!s)
        return CLSPEC_E_INVAL;
    if (token < 0 || token >= s->s->n_vocab)
        return CLSPEC_E_RANGE;
    return cs_sampler_accept(s->s, token);
}

void clspec_sampler_reset(clspec_sampler *s)
{
    if (s)
        cs_sampler_reset(s->s);
}

int clspec_sampler_save(const clspec_sampler *s, clspec_sampler_state **out, char *err, size_t errlen)
{
    if (!s || !out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler save: sampler or out is NULL");
    *out = NULL;
    clspec_sampler_state *st = calloc(1, sizeof *st);
    if (!st)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler save: out of memory");
    int rc = cs_sampler_clone(s->s, &st->copy, err, errlen);
    if (rc < 0) {
        clspec_sampler_state_free(st);
        return rc;
    }
    *out = st;
    return CLSPEC_OK;
}

int clspec_sampler_restore(clspec_sampler *s, const clspec_sampler_state *st, char *err, size_t errlen)
{
    if (!s || !st)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler restore: sampler or state is NULL");
    if (memcmp(&s->s->p, &st->copy->p, sizeof s->s->p) != 0 || s->s->n_vocab != st->copy->n_vocab)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "sampler restore: the state was saved from a sampler with other parameters or vocabulary");
    return cs_sampler_restore(s->s, st->copy, err, errlen);
}

int clspec_sampler_save_into(const clspec_sampler *s, clspec_sampler_state *st, char *err, size_t errlen)
{
    if (!s || !st)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler save: sampler or state is NULL");
    if (memcmp(&s->s->p, &st->copy->p, sizeof s->s->p) != 0 || s->s->n_vocab != st->copy->n_vocab)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "sampler save: the state was saved from a sampler with other parameters or vocabulary");
    return cs_sampler_restore(st->copy, s->s, err, errlen);
}

int clspec_sampler_get_params(const clspec_sampler *s, struct clspec_sampler_params *p, int32_t *n_vocab, char *err,
                              size_t errlen)
{
    if (!s || !p || p->size < sizeof p->size)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler params: sampler or params NULL, or params size unset");
    const struct cs_sampler_params *c = &s->s->p;
    struct clspec_sampler_params q = {
        .size = (uint32_t)CS_MIN((size_t)p->size, sizeof q), .temp = c->temp, .top_k = c->top_k,
        .top_p = c->top_p, .min_p = c->min_p, .repeat_penalty = c->repeat_penalty,
        .freq_penalty = c->freq_penalty, .presence_penalty = c->presence_penalty,
        .penalty_last_n = c->penalty_last_n, .seed = c->seed,
    };
    memcpy(p, &q, q.size);
    if (n_vocab)
        *n_vocab = s->s->n_vocab;
    return CLSPEC_OK;
}

int clspec_sampler_probs(clspec_sampler *s, const float *logits, float *p)
{
    if (!s || !logits || !p)
        return CLSPEC_E_INVAL;
    cs_sampler_probs(s->s, logits, p);
    return CLSPEC_OK;
}

double clspec_sampler_uniform(clspec_sampler *s)
{
    return s ? cs_sampler_uniform(s->s) : -1.0;
}

int cs_api_sampler_new(const struct cs_sampler_params *p, int32_t n_vocab, clspec_sampler **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    clspec_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "sampler: out of memory");
    int rc = cs_sampler_new(p, n_vocab, &s->s, err, errlen);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return CLSPEC_OK;
}

void cs_api_sampler_keep_logits(clspec_sampler *s, bool on)
{
    if (s)
        s->keep_logits = on;
}

bool cs_api_sampler_keeps_logits(const clspec_sampler *s)
{
    return s && s->keep_logits;
}

struct cs_sampler *cs_api_sampler(clspec_sampler *s)
{
    return s ? s->s : NULL;
}

void clspec_sampler_state_free(clspec_sampler_state *st)
{
    if (!st)
        return;
    cs_sampler_free(st->copy);
    free(st);
}

/* ---- grammar-constrained sampling ---- */

struct clspec_grammar_vocab {
    struct cs_grammar_vocab *v; /* one reference */
};

struct piece_ctx {
    const clspec_engine *e;
    char buf[256];
};

static int vocab_piece(void *ctx, int32_t id, const uint8_t **s, size_t *n, int *eog)
{
    struct piece_ctx *c = ctx;
    char err[CLSPEC_ERRLEN];
    size_t len = 0;
    int rc = clspec_token_piece(c->e, id, 0, c->buf, sizeof c->buf, &len, err, sizeof err);
    if (rc == CLSPEC_E_RANGE) { /* a piece over 255 bytes: no grammar text matches it */
        len = 0;
        rc = CLSPEC_OK;
    }
    if (rc < 0)
        return rc;
    *s = (const uint8_t *)c->buf;
    *n = len;
    *eog = clspec_token_is_eog(c->e, id) == 1;
    return CLSPEC_OK;
}

int clspec_grammar_vocab_new(const clspec_engine *e, clspec_grammar_vocab **out, char *err, size_t errlen)
{
    if (!out || !e)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "grammar vocabulary: engine or out is NULL");
    *out = NULL;
    struct clspec_engine_info info = {.size = sizeof info};
    CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    clspec_grammar_vocab *gv = calloc(1, sizeof *gv);
    struct piece_ctx *c = malloc(sizeof *c);
    if (!gv || !c) {
        free(gv);
        free(c);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "grammar vocabulary: out of memory");
    }
    c->e = e;
    int rc = cs_grammar_vocab_new(info.n_vocab, vocab_piece, c, &gv->v, err, errlen);
    free(c);
    if (rc < 0) {
        free(gv);
        return rc;
    }
    *out = gv;
    return CLSPEC_OK;
}

void clspec_grammar_vocab_free(clspec_grammar_vocab *v)
{
    if (!v)
        return;
    cs_grammar_vocab_unref(v->v);
    free(v);
}

int clspec_sampler_set_grammar(clspec_sampler *s, const clspec_grammar_vocab *v, const char *gbnf, const char *root,
                               char *err, size_t errlen)
{
    if (!s || (gbnf && !v))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler grammar: sampler or vocabulary is NULL");
    if (!gbnf)
        return cs_sampler_set_grammar(s->s, NULL, NULL, err, errlen);
    struct cs_grammar *g = NULL;
    CS_TRY(cs_grammar_compile(gbnf, strlen(gbnf), root, &g, err, errlen));
    int rc = cs_sampler_set_grammar(s->s, g, v->v, err, errlen);
    cs_grammar_unref(g);
    return rc;
}

int clspec_grammar_check(const char *gbnf, const char *root, char *err, size_t errlen)
{
    if (!gbnf)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "grammar: no text");
    struct cs_grammar *g = NULL;
    CS_TRY(cs_grammar_compile(gbnf, strlen(gbnf), root, &g, err, errlen));
    cs_grammar_unref(g);
    return CLSPEC_OK;
}

int32_t clspec_sampler_grammar_prefix(clspec_sampler *s, const int32_t *tokens, int32_t n)
{
    if (!s || (!tokens && n > 0))
        return 0;
    return cs_sampler_grammar_prefix(s->s, tokens, n);
}

int clspec_sampler_grammar_status(const clspec_sampler *s)
{
    return s ? cs_sampler_grammar_state(s->s) : CLSPEC_GRAMMAR_NONE;
}

int clspec_json_schema_to_grammar(const char *schema, size_t len, char *buf, size_t cap, size_t *n_out, char *err,
                                  size_t errlen)
{
    if (!schema || !n_out || (!buf && cap > 0))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "json_schema: schema or n_out is NULL");
    char *g = NULL;
    size_t n = 0;
    CS_TRY(cs_json_schema_gbnf_text(schema, len, &g, &n, err, errlen));
    *n_out = n;
    int rc = CLSPEC_OK;
    if (n + 1 > cap)
        rc = cs_err(err, errlen, CLSPEC_E_RANGE, "json_schema: the grammar needs %zu bytes, buffer has %zu", n + 1,
                    cap);
    else
        memcpy(buf, g, n + 1);
    free(g);
    return rc;
}

int clspec_sampler_set_logit_bias(clspec_sampler *s, const int32_t *ids, const float *bias, int32_t n, char *err,
                                  size_t errlen)
{
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "sampler logit bias: sampler is NULL");
    return cs_sampler_set_bias(s->s, ids, bias, n, err, errlen);
}

int32_t clspec_sampler_n_logit_bias(const clspec_sampler *s)
{
    return s ? s->s->n_bias : 0;
}

int clspec_sampler_is_argmax(const clspec_sampler *s)
{
    return s && cs_sampler_is_argmax(s->s);
}
