/* api_llama.c: see api_llama.h. */
#include "config.h"

#include "daemon/api_llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"

#define FAIL(p, ...)                                                                                             \
    do {                                                                                                         \
        *param = (p);                                                                                            \
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, __VA_ARGS__);                                                   \
        goto out;                                                                                                \
    } while (0)

/* A field that is absent or JSON null. */
static json_t *field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_null(v) ? NULL : v;
}

static char *dump(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    return s;
}

static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

/* ---------------------------------------------------------------- /completion request */

/* Samplers clspec does not have, with the value that means "off". */
static const struct {
    const char *key;
    double off;
} OFF_ONLY[] = {{"mirostat", 0}, {"typical_p", 1}, {"dynatemp_range", 0}, {"xtc_probability", 0},
                {"dry_multiplier", 0}, {"top_n_sigma", -1}};

/* [ids and strings] with at least one of each: one prompt (llama-server's "mixed" prompt). */
static bool is_mixed(json_t *v)
{
    bool s = false, n = false;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (json_is_string(e))
            s = true;
        else if (json_is_integer(e))
            n = true;
        else
            return false;
    }
    return s && n;
}

/* The llama-server fields of o checked and rewritten in place onto the OpenAI names cs_api_parse reads. */
static int translate(json_t *o, struct cs_llama_request *lr, const char **param, char *err, size_t errlen)
{
    int rc = CLSPEC_OK;
    json_t *v;
    for (size_t i = 0; i < CS_ARRAY_LEN(OFF_ONLY); i++)
        if ((v = field(o, OFF_ONLY[i].key)) &&
            (!json_is_number(v) || (OFF_ONLY[i].off < 0 ? json_number_value(v) > 0
                                                        : json_number_value(v) != OFF_ONLY[i].off)))
            FAIL(OFF_ONLY[i].key, "'%s' is not supported by clspec (leave it out or at %g)", OFF_ONLY[i].key,
                 OFF_ONLY[i].off);
    if ((v = field(o, "post_sampling_probs")) && !json_is_boolean(v))
        FAIL("post_sampling_probs", "'post_sampling_probs' must be true or false");
    lr->post_sampling = json_is_true(v);
    json_object_del(o, "post_sampling_probs");
    if ((v = field(o, "n_predict"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) == 0 ||
            json_integer_value(v) > INT32_MAX)
            FAIL("n_predict", "'n_predict' must be -1 (no limit) or a whole number >= 1");
        lr->n_predict = (int)json_integer_value(v);
        if (lr->n_predict > 0)
            json_object_set_new(o, "max_tokens", json_integer(lr->n_predict));
        else
            json_object_del(o, "max_tokens");
        json_object_del(o, "n_predict");
    } else if ((v = field(o, "max_tokens")) && json_is_integer(v) && json_integer_value(v) == -1) {
        json_object_del(o, "max_tokens");
    }
    json_object_del(o, "logprobs");
    if ((v = field(o, "n_probs"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > CS_MAX_TOP_LOGPROBS)
            FAIL("n_probs", "'n_probs' must be a whole number 0..%d", CS_MAX_TOP_LOGPROBS);
        lr->n_probs = (int)json_integer_value(v);
        if (lr->n_probs > 0)
            json_object_set_new(o, "logprobs", json_integer(lr->n_probs));
        json_object_del(o, "n_probs");
    }
    /* seed -1 (and llama.cpp's default 0xFFFFFFFF): a fresh one */
    if ((v = field(o, "seed")) && json_is_integer(v) &&
        (json_integer_value(v) == -1 || json_integer_value(v) == 0xFFFFFFFFll))
        json_object_del(o, "seed");
    if ((v = field(o, "logit_bias")) && json_is_array(v) && json_array_size(v) == 0)
        json_object_del(o, "logit_bias");
    if ((v = field(o, "repeat_last_n"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > (1 << 20))
            FAIL("repeat_last_n", "'repeat_last_n' must be -1 (the whole context), 0 (off) or up to %d", 1 << 20);
        lr->repeat_last_n = (int)json_integer_value(v);
    }
    bool b;
    const char *bools[] = {"return_tokens", "cache_prompt"};
    bool *dst[] = {&lr->return_tokens, &lr->cache_prompt};
    for (size_t i = 0; i < CS_ARRAY_LEN(bools); i++)
        if ((v = field(o, bools[i]))) {
            if (!json_is_boolean(v))
                FAIL(bools[i], "'%s' must be true or false", bools[i]);
            b = json_is_true(v);
            *dst[i] = b;
        }
    if ((v = field(o, "id_slot"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > 63)
            FAIL("id_slot", "'id_slot' must be -1 (any) or a slot id 0..63");
        lr->id_slot = (int)json_integer_value(v);
    }
    if ((v = field(o, "n_keep"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > (1 << 24))
            FAIL("n_keep", "'n_keep' must be -1 (the whole prompt) or a token count");
        lr->n_keep = (int)json_integer_value(v);
    }
    if ((v = field(o, "n_discard"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24))
            FAIL("n_discard", "'n_discard' must be a token count (0: half of what follows n_keep)");
        lr->n_discard = (int)json_integer_value(v);
    }
    v = field(o, "prompt");
    /* {"prompt_string": text}; with "multimodal_data" the object goes to cs_api_parse as it is (images,
     * src/daemon/media.h) */
    if (json_is_object(v) && !field(v, "multimodal_data")) {
        json_t *ps = json_object_get(v, "prompt_string");
        if (!json_is_string(ps))
            FAIL("prompt", "'prompt' as an object needs 'prompt_string' (a string)");
        json_object_set(o, "prompt", ps);
        v = ps;
    }
    if ((v = field(o, "response_fields"))) {
        if (!json_is_array(v))
            FAIL("response_fields", "'response_fields' must be an array of field names");
        lr->response_fields = json_incref(v);
    }
    v = field(o, "prompt");
    if (json_is_array(v) && is_mixed(v)) {
        lr->mixed = json_incref(v);
        json_object_set_new(o, "prompt", json_string(""));
    } else if (json_is_array(v) && json_array_size(v) > 1 && !json_is_integer(json_array_get(v, 0))) {
        FAIL("prompt", "'prompt' holds several prompts: answered one after the other when not streamed (up to 64); "
             "a streamed request takes one prompt");
    }
out:
    return rc;
}

json_t *cs_llama_prompts(const char *body, size_t len, json_t **root)
{
    *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, NULL);
    json_t *v = json_is_object(*root) ? field(*root, "prompt") : NULL, *s = field(*root, "stream");
    bool many = json_is_array(v) && json_array_size(v) >= 2 && json_array_size(v) <= 64 && !is_mixed(v) &&
                !json_is_integer(json_array_get(v, 0)) && !json_is_true(s);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) /* each a prompt of its own */
    {
        if (!json_is_string(e) && !json_is_array(e) && !json_is_object(e))
            many = false;
    }
    if (!many) {
        json_decref(*root);
        *root = NULL;
        return NULL;
    }
    return json_incref(v);
}

int cs_llama_parse_completion(const char *body, size_t len, const struct cs_api_defaults *d,
                              struct cs_llama_request *lr, const char **param, char *err, size_t errlen)
{
    const char *dummy;
    if (!param)
        param = &dummy;
    *param = NULL;
    memset(lr, 0, sizeof *lr);
    lr->n_predict = -1;
    lr->cache_prompt = true;
    lr->id_slot = -1;
    lr->repeat_last_n = d->sp.penalty_last_n;
    json_error_t je;
    json_t *o = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        /* the common parser words the error (and handles seeds beyond int64) */
        return cs_api_parse(CS_API_COMPLETION, body, len, d, &lr->r, param, err, errlen);
    }
    int rc = translate(o, lr, param, err, errlen);
    char *copy = rc == CLSPEC_OK ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (rc != CLSPEC_OK) {
        cs_llama_request_free(lr);
        return rc;
    }
    if (!copy) {
        cs_llama_request_free(lr);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    rc = cs_api_parse(CS_API_COMPLETION, copy, strlen(copy), d, &lr->r, param, err, errlen);
    free(copy);
    if (rc != CLSPEC_OK) {
        json_decref(lr->mixed);
        json_decref(lr->response_fields);
        lr->mixed = lr->response_fields = NULL;
    }
    return rc;
}

void cs_llama_request_free(struct cs_llama_request *lr)
{
    cs_api_request_free(&lr->r);
    json_decref(lr->mixed);
    json_decref(lr->response_fields);
    lr->mixed = lr->response_fields = NULL;
}

/* ---------------------------------------------------------------- /completion answers */

struct cs_llama_acc {
    struct cs_llama_acc_params p;
    char *model;
    json_t *settings;            /* generation_settings */
    struct cs_strbuf text;       /* whole: the content so far */
    struct cs_strbuf raw;        /* every sampled token's bytes (to name the stop word) */
    json_t *tokens;              /* whole + return_tokens: the ids */
    json_t *probs;               /* whole + n_probs: completion_probabilities */
    int n_tok;                   /* tokens sampled */
    int32_t last_token;          /* of the last TOKEN event (-1: text released at the end) */
    json_t *prompt;              /* the prompt's text */
    json_t *fields;              /* response_fields or NULL */
    char *stop[CS_MAX_STOP];
    int n_stop;
};

static json_t *settings_json(const struct cs_llama_acc_params *p)
{
    const struct cs_api_request *r = p->r;
    json_t *stop = json_array();
    for (int i = 0; i < r->n_stop; i++)
        json_array_append_new(stop, json_string(r->stop[i]));
    json_t *s = json_pack("{s:i,s:I,s:o,s:i,s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:i,s:b,s:b,s:b,s:s,s:i}", "n_predict",
                          p->n_predict, "seed", (json_int_t)r->sp.seed, "temperature", num(r->sp.temp), "top_k",
                          (int)r->sp.top_k, "top_p", num(r->sp.top_p), "min_p", num(r->sp.min_p), "repeat_penalty",
                          num(r->sp.repeat_penalty), "repeat_last_n", p->repeat_last_n, "presence_penalty",
                          num(r->sp.presence_penalty), "frequency_penalty", num(r->sp.freq_penalty), "stop", stop,
                          "n_probs", p->n_probs, "ignore_eos", r->ignore_eos, "stream", p->stream, "speculative",
                          r->speculative, "model", p->model, "n_ctx", p->n_ctx_slot);
    json_t *lb = json_array(); /* llama-server's shape: [{"bias": b or null for -inf, "token": id}] */
    for (int i = 0; i < r->n_bias; i++)
        json_array_append_new(lb, json_pack("{s:o,s:i}", "bias", isinf(r->bias[i]) ? json_null() : num(r->bias[i]),
                                            "token", (int)r->bias_id[i]));
    json_object_set_new(s, "logit_bias", lb);
    return s;
}

int cs_llama_acc_new(const struct cs_llama_acc_params *p, struct cs_llama_acc **out)
{
    struct cs_llama_acc *a = calloc(1, sizeof *a);
    *out = NULL;
    if (!a)
        return CLSPEC_E_NOMEM;
    a->p = *p;
    a->model = strdup(p->model ? p->model : "model");
    a->p.model = a->model;
    a->settings = a->model ? settings_json(&a->p) : NULL;
    a->tokens = json_array();
    a->probs = json_array();
    a->last_token = -1;
    a->prompt = cs_api_str_lossy(p->prompt_text ? p->prompt_text : "", p->prompt_text ? p->prompt_len : 0);
    a->fields = json_array_size(p->response_fields) > 0 ? json_incref(p->response_fields) : NULL;
    a->p.prompt_text = NULL;
    a->p.response_fields = NULL;
    bool ok = a->model && a->settings && a->tokens && a->probs && a->prompt;
    for (int i = 0; ok && i < p->r->n_stop; i++) {
        a->stop[i] = strdup(p->r->stop[i]);
        ok = a->stop[i] != NULL;
        a->n_stop += ok;
    }
    a->p.r = NULL; /* not read after creation */
    if (!ok) {
        cs_llama_acc_free(a);
        return CLSPEC_E_NOMEM;
    }
    *out = a;
    return CLSPEC_OK;
}

void cs_llama_acc_free(struct cs_llama_acc *a)
{
    if (!a)
        return;
    free(a->model);
    json_decref(a->settings);
    json_decref(a->tokens);
    json_decref(a->probs);
    json_decref(a->prompt);
    json_decref(a->fields);
    cs_strbuf_free(&a->text);
    cs_strbuf_free(&a->raw);
    for (int i = 0; i < a->n_stop; i++)
        free(a->stop[i]);
    free(a);
}

/* One completion_probabilities entry: {id, token, bytes, logprob, top_logprobs: [{id, token, bytes, logprob}]};
 * post-sampling: "prob" and "top_probs" (the event's log-probabilities exponentiated). */
static json_t *prob_entry(const struct cs_req_event *ev, const char *piece, size_t len, bool post)
{
    const char *k = post ? "prob" : "logprob";
    json_t *top = json_array();
    for (int i = 0; top && i < ev->n_top; i++) {
        const struct cs_top_logprob *t = &ev->top[i];
        json_array_append_new(top, json_pack("{s:i,s:o,s:o,s:o}", "id", (int)t->token, "token",
                                             cs_api_str_lossy(t->text, t->len), "bytes",
                                             cs_api_bytes_array(t->text, t->len), k,
                                             num(post ? exp(t->logprob) : t->logprob)));
    }
    return json_pack("{s:i,s:o,s:o,s:o,s:o}", "id", (int)ev->token, "token", cs_api_str_lossy(piece, len), "bytes",
                     cs_api_bytes_array(piece, len), k, num(post ? exp(ev->logprob) : ev->logprob),
                     post ? "top_probs" : "top_logprobs", top);
}

char *cs_llama_acc_token(struct cs_llama_acc *a, const struct cs_req_event *ev, const char *piece, size_t piece_len,
                         bool *oom)
{
    *oom = false;
    a->last_token = ev->token;
    json_t *entry = NULL;
    if (ev->token >= 0) {
        a->n_tok++;
        cs_strbuf_put_n(&a->raw, piece ? piece : "", piece ? piece_len : 0);
        if (a->p.n_probs > 0 && !(entry = prob_entry(ev, piece ? piece : "", piece ? piece_len : 0, a->p.post_sampling)))
            *oom = true;
    } else if (ev->len == 0) {
        return NULL;
    }
    if (!a->p.stream) {
        cs_strbuf_put_n(&a->text, ev->text, ev->len);
        if (ev->token >= 0 && a->p.return_tokens)
            json_array_append_new(a->tokens, json_integer(ev->token));
        if (entry)
            json_array_append_new(a->probs, entry);
        *oom = *oom || a->text.oom || a->raw.oom;
        return NULL;
    }
    json_t *o = json_pack("{s:i,s:o,s:[],s:b,s:i,s:i,s:i}", "index", 0, "content",
                          cs_api_str_lossy(ev->text, ev->len), "tokens", "stop", false, "id_slot", -1,
                          "tokens_predicted", a->n_tok, "tokens_evaluated", a->p.n_prompt);
    if (o && ev->token >= 0)
        json_array_append_new(json_object_get(o, "tokens"), json_integer(ev->token));
    if (o && entry)
        json_object_set_new(o, "completion_probabilities", json_pack("[o]", entry));
    else
        json_decref(entry);
    char *s = dump(o);
    *oom = *oom || !s || a->raw.oom;
    return s;
}

json_t *cs_llama_timings(const struct cs_req_usage *u)
{
    int prompt_n = u->prompt_tokens - u->cached_tokens, n_dec = u->completion_tokens > 1 ? u->completion_tokens - 1 : 0;
    json_t *t = json_pack("{s:i,s:i,s:o,s:o,s:o,s:i,s:o,s:o,s:o}", "cache_n", u->cached_tokens, "prompt_n", prompt_n,
                          "prompt_ms", num(u->prefill_ms), "prompt_per_token_ms",
                          num(prompt_n > 0 ? u->prefill_ms / prompt_n : 0), "prompt_per_second",
                          num(u->prefill_ms > 0 ? prompt_n * 1e3 / u->prefill_ms : 0), "predicted_n",
                          u->completion_tokens, "predicted_ms", num(u->decode_ms), "predicted_per_token_ms",
                          num(n_dec > 0 ? u->decode_ms / n_dec : 0), "predicted_per_second",
                          num(u->decode_ms > 0 ? n_dec * 1e3 / u->decode_ms : 0));
    if (t && u->draft_n > 0) {
        json_object_set_new(t, "draft_n", json_integer(u->draft_n));
        json_object_set_new(t, "draft_n_accepted", json_integer(u->draft_accepted));
    }
    return t;
}

/* stop_type and stopping_word of an ended request. */
static const char *stop_type(const struct cs_llama_acc *a, const char *finish_reason, const char **word)
{
    *word = "";
    if (!finish_reason || strcmp(finish_reason, "length") == 0)
        return "limit";
    if (a->last_token < 0) /* the end-of-generation token ends without a TOKEN event of its own */
        return "eos";
    size_t best = SIZE_MAX;
    for (int i = 0; i < a->n_stop; i++) {
        const char *hit = a->raw.p ? strstr(a->raw.p, a->stop[i]) : NULL;
        if (hit && (size_t)(hit - a->raw.p) < best) {
            best = (size_t)(hit - a->raw.p);
            *word = a->stop[i];
        }
    }
    return "word";
}

/* The answer cut down to the named fields (response_fields): each name a
 * path "a/b" into o, kept under that name; names not found are left out.
 * Takes o over. */
static json_t *pick_fields(json_t *o, json_t *names)
{
    json_t *out = json_object();
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        if (!json_is_string(n) || !out)
            continue;
        char path[256];
        snprintf(path, sizeof path, "%s", json_string_value(n));
        json_t *v = o;
        for (char *save = NULL, *k = strtok_r(path, "/", &save); v && k; k = strtok_r(NULL, "/", &save))
            v = json_is_object(v) ? json_object_get(v, k) : NULL;
        if (v)
            json_object_set(out, json_string_value(n), v);
    }
    json_decref(o);
    return out;
}

char *cs_llama_acc_final(struct cs_llama_acc *a, const char *finish_reason, const struct cs_req_usage *u)
{
    const char *word;
    const char *st = stop_type(a, finish_reason, &word);
    const char *text = a->p.stream ? "" : (a->text.p ? a->text.p : "");
    size_t len = a->p.stream ? 0 : a->text.len;
    json_t *o = json_pack("{s:i,s:o,s:O,s:i,s:b,s:s,s:i,s:i,s:O,s:b,s:b,s:s,s:s,s:i,s:o}", "index", 0, "content",
                          cs_api_str_lossy(text, len), "tokens", a->p.stream ? json_array() : a->tokens, "id_slot",
                          u->id_slot, "stop", true, "model", a->model, "tokens_predicted", u->completion_tokens,
                          "tokens_evaluated", u->prompt_tokens, "generation_settings", a->settings, "has_new_line",
                          memchr(text, '\n', len) != NULL, "truncated", u->prompt_tokens < a->p.n_prompt || u->ctx_full, "stop_type", st, "stopping_word",
                          word, "tokens_cached", u->cached_tokens, "timings", cs_llama_timings(u));
    if (o && a->p.stream) /* s:O took a reference of the fresh array: drop ours */
        json_decref(json_object_get(o, "tokens"));
    if (o && !a->p.stream && a->p.n_probs > 0)
        json_object_set(o, "completion_probabilities", a->probs);
    if (o)
        json_object_set(o, "prompt", a->prompt);
    if (o && a->fields && !a->p.stream)
        return dump(pick_fields(o, a->fields));
    return dump(o);
}

char *cs_llama_slots_json(const struct cs_slot_info *slots, int n, int n_ctx_slot)
{
    char *s = cs_api_slots_json(slots, n);
    json_t *a = s ? json_loads(s, 0, NULL) : NULL;
    free(s);
    for (int i = 0; a && i < n && i < (int)json_array_size(a); i++) {
        json_t *o = json_array_get(a, (size_t)i);
        json_object_set_new(o, "id_task", json_integer(slots[i].busy ? slots[i].id : -1));
        json_object_set_new(o, "n_ctx", json_integer(n_ctx_slot));
        json_object_set_new(o, "is_processing", json_boolean(slots[i].busy));
    }
    return dump(a);
}

/* ---------------------------------------------------------------- errors, /props, /apply-template */

char *cs_llama_error_json(int http_status, const char *message)
{
    const char *type = "invalid_request_error";
    switch (http_status) {
    case 401: type = "authentication_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 501: type = "not_supported_error"; break;
    case 503: type = "unavailable_error"; break;
    default:
        if (http_status >= 500)
            type = "server_error";
    }
    json_t *m = cs_api_str_lossy(message ? message : "", message ? strlen(message) : 0);
    return dump(json_pack("{s:{s:i,s:o,s:s}}", "error", "code", http_status, "message", m, "type", type));
}

char *cs_llama_props_json(const struct cs_llama_props *p)
{
    const struct cs_sampler_params *sp = &p->d->sp;
    json_t *params = json_pack("{s:i,s:o,s:i,s:o,s:o,s:o,s:i,s:o,s:o}", "n_predict",
                               p->d->max_tokens > 0 ? p->d->max_tokens : -1, "temperature", num(sp->temp), "top_k",
                               (int)sp->top_k, "top_p", num(sp->top_p), "min_p", num(sp->min_p), "repeat_penalty",
                               num(sp->repeat_penalty), "repeat_last_n", (int)sp->penalty_last_n,
                               "presence_penalty", num(sp->presence_penalty), "frequency_penalty",
                               num(sp->freq_penalty));
    if (params)
        json_object_set_new(params, "seed", sp->seed ? json_integer((json_int_t)sp->seed) : json_integer(-1));
    json_t *o = json_pack("{s:{s:i,s:o},s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:b,s:b},s:b,s:o}",
                          "default_generation_settings", "n_ctx", p->n_ctx_slot, "params", params, "total_slots",
                          p->total_slots, "model_alias", p->model_name, "model_path",
                          p->model_path ? p->model_path : "", "chat_template",
                          p->chat_template ? p->chat_template : "", "bos_token", p->bos_text ? p->bos_text : "",
                          "eos_token", p->eos_text ? p->eos_text : "", "build_info", "clspec " PACKAGE_VERSION,
                          "modalities", "vision", false, "audio", false, "is_sleeping", false, "speculator",
                          p->speculator ? json_string(p->speculator) : json_null());
    return dump(o);
}

int cs_llama_parse_apply_template(const char *body, size_t len, const struct cs_api_defaults *dflt,
                                  struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    struct cs_api_defaults d;
    memset(&d, 0, sizeof d);
    d.thinking_off = dflt && dflt->thinking_off;
    d.sp = cs_sampler_defaults();
    d.sp.seed = 1; /* no fresh seed drawn for a request that samples nothing */
    return cs_api_parse(CS_API_CHAT, body, len, &d, r, param, err, errlen);
}

char *cs_llama_prompt_json(const char *text, size_t len)
{
    json_t *t = cs_api_str_lossy(text, len);
    return t ? dump(json_pack("{s:o}", "prompt", t)) : NULL;
}

/* ---------------------------------------------------------------- embeddings */

int cs_llama_parse_embeddings(const char *body, size_t len, int32_t n_vocab, json_t **items, const char **param,
                              char *err, size_t errlen)
{
    int rc = CLSPEC_OK;
    *items = NULL;
    json_error_t je;
    json_t *o = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je), *out = NULL;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        *param = NULL;
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "the body must be a JSON object");
    }
    json_t *v = field(o, "input"), *f = field(o, "encoding_format");
    const char *name = "input";
    if (!v) {
        v = field(o, "content");
        name = "content";
    }
    if (f && !(json_is_string(f) && strcmp(json_string_value(f), "float") == 0))
        FAIL("encoding_format", "'encoding_format' must be \"float\"");
    if (!v)
        FAIL("input", "'input' is required (a string, strings, or token ids)");
    out = json_array();
    if (json_is_string(v) || (json_is_array(v) && json_is_integer(json_array_get(v, 0))))
        json_array_append(out, v);
    else if (json_is_array(v) && json_array_size(v) <= 64)
        json_array_extend(out, v);
    else
        FAIL(name, "'%s' must be a string, up to 64 strings, token ids or up to 64 lists of token ids", name);
    size_t i, k;
    json_t *e, *t;
    json_array_foreach(out, i, e)
    {
        if (json_is_string(e) ? json_string_length(e) == 0 : !json_is_array(e) || json_array_size(e) == 0)
            FAIL(name, "%s[%zu] must be a non-empty string or a non-empty list of token ids", name, i);
        if (json_is_array(e))
            json_array_foreach(e, k, t)
            {
                if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab)
                    FAIL(name, "%s[%zu][%zu]: token ids are 0..%d", name, i, k, (int)n_vocab - 1);
            }
    }
out:
    json_decref(o);
    if (rc == CLSPEC_OK)
        *items = out;
    else
        json_decref(out);
    return rc;
}

char *cs_llama_embeddings_json(const char *model, const float *vecs, int n, int32_t dim, int prompt_tokens)
{
    json_t *data = json_array();
    for (int i = 0; data && i < n; i++) {
        json_t *v = json_array();
        for (int32_t j = 0; v && j < dim; j++)
            json_array_append_new(v, num(vecs[(size_t)i * (size_t)dim + (size_t)j]));
        json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", v));
    }
    return dump(json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model", model, "usage",
                          "prompt_tokens", prompt_tokens, "total_tokens", prompt_tokens));
}

/* obj (a JSON object's compact text, freed here) with "key": val (stolen) added at its end, spliced as
 * text: the answers hold uint64 seeds that a parse and dump would not keep. NULL: out of memory, or
 * obj is not an object's text. */
static char *splice_field(char *obj, const char *key, json_t *val)
{
    char *v = val ? json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(val);
    size_t n = obj ? strlen(obj) : 0;
    char *out = NULL;
    if (v && n >= 2 && obj[0] == '{' && obj[n - 1] == '}') {
        struct cs_strbuf b = {0};
        cs_strbuf_put_n(&b, obj, n - 1);
        cs_strbuf_printf(&b, "%s\"%s\":%s}", n > 2 ? "," : "", key, v);
        if (cs_strbuf_take(&b, &out, NULL) != CLSPEC_OK)
            out = NULL;
    }
    free(v);
    free(obj);
    return out;
}

char *cs_llama_progress_chunk(char *chunk, const struct cs_req_event *ev)
{
    if (!chunk)
        chunk = dump(json_pack("{s:s,s:[],s:b}", "content", "", "tokens", "stop", 0));
    json_t *pp = json_pack("{s:i,s:i,s:i,s:f}", "total", ev->progress.total, "cache", ev->progress.cache,
                           "processed", ev->progress.processed, "time_ms", ev->progress.time_ms);
    return splice_field(chunk, "prompt_progress", pp);
}

char *cs_llama_prompt_text(const clspec_engine *e, const int32_t *ids, int n, size_t *len)
{
    struct cs_strbuf b = {0};
    cs_strbuf_put(&b, ""); /* "" for an empty prompt */
    for (int i = 0; i < n; i++) {
        char piece[256];
        size_t pn = 0;
        if (clspec_token_piece(e, ids[i], 1, piece, sizeof piece, &pn, NULL, 0) == CLSPEC_OK)
            cs_strbuf_put_n(&b, piece, CS_MIN(pn, sizeof piece));
    }
    char *out = NULL;
    if (cs_strbuf_take(&b, &out, len) != CLSPEC_OK)
        return NULL;
    return out;
}

char *cs_llama_add_verbose(char *body, const char *prompt)
{
    if (!body || !prompt)
        return body;
    json_t *v = cs_api_str_lossy(prompt, strlen(prompt));
    return splice_field(body, "__verbose", v ? json_pack("{s:o}", "prompt", v) : NULL);
}
