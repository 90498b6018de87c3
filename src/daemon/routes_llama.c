/* routes_llama.c: see routes_llama.h. */
#include "config.h"

#include "daemon/routes_llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "daemon/api_llama.h"
#include "daemon/embed.h"

/* A token's text as a NUL-terminated copy in buf ("" when id < 0). */
static const char *token_text(clspec_engine *e, int32_t id, char *buf, size_t cap)
{
    size_t n = 0;
    const char *t = id >= 0 ? clspec_token_text(e, id, &n) : NULL;
    snprintf(buf, cap, "%.*s", (int)CS_MIN(n, cap - 1), t ? t : "");
    return buf;
}

int cs_llama_route_props(const struct cs_llama_ctx *x, char **body)
{
    struct clspec_engine_info info = {.size = sizeof info};
    char err[256], bos[64], eos[64];
    if (clspec_engine_get_info(x->e, &info, err, sizeof err) != CLSPEC_OK) {
        *body = cs_llama_error_json(500, err);
        return 500;
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(x->s, &st);
    size_t tl = 0;
    const char *tmpl = clspec_chat_template(x->e, &tl);
    char *tcopy = tmpl ? strndup(tmpl, tl) : NULL;
    struct cs_llama_props p = {
        .model_name = x->model_name,
        .model_path = x->model_path,
        .chat_template = tcopy ? tcopy : cs_chat_family_name(x->chat),
        .bos_text = token_text(x->e, info.bos, bos, sizeof bos),
        .eos_text = token_text(x->e, info.eos, eos, sizeof eos),
        .total_slots = st.n_slots,
        .n_ctx_slot = x->n_ctx_slot,
        .d = x->d,
        .speculator = st.spec_name,
    };
    *body = cs_llama_props_json(&p);
    free(tcopy);
    return 200;
}

/* A chat body rendered as a chat request renders it (tools and chat_template_kwargs with a Jinja
 * template; add_generation_prompt, default true): *text and its token count *n_tok; on an error
 * the HTTP status with *body set. */
static int render_chat(const struct cs_llama_ctx *x, const char *req, size_t len, char **text, size_t *n_tok,
                       char **body)
{
    char err[512];
    const char *param = NULL;
    struct cs_api_request r;
    *text = NULL;
    int rc = cs_llama_parse_apply_template(req, len, x->d, &r, &param, err, sizeof err);
    if (rc == CLSPEC_OK) {
        int32_t *ids = NULL;
        bool gen = !json_is_false(json_object_get(r.root, "add_generation_prompt"));
        rc = x->chat == CS_CHAT_JINJA ? cs_chat_tokenize_json(x->e, x->chat, r.messages, r.tools, r.template_kwargs,
                                                              gen, &ids, n_tok, text, err, sizeof err)
                                      : cs_chat_tokenize(x->e, x->chat, r.msgs, r.n_msgs, gen, &ids, n_tok, text, err,
                                                         sizeof err);
        cs_api_request_free(&r);
        free(ids);
    }
    if (rc != CLSPEC_OK) {
        int code = cs_api_http_status(rc);
        *body = cs_llama_error_json(code, err);
        free(*text);
        *text = NULL;
        return code;
    }
    return 200;
}

int cs_llama_route_apply_template(const struct cs_llama_ctx *x, const char *req, size_t len, char **body)
{
    char *text = NULL;
    size_t n = 0;
    int code = render_chat(x, req, len, &text, &n, body);
    if (code != 200)
        return code;
    *body = cs_llama_prompt_json(text, strlen(text));
    free(text);
    return 200;
}

int cs_llama_route_input_tokens(const struct cs_llama_ctx *x, const char *req, size_t len, char **body)
{
    char *text = NULL;
    size_t n = 0;
    int code = render_chat(x, req, len, &text, &n, body);
    if (code != 200)
        return code;
    free(text);
    json_t *o = json_pack("{s:I}", "input_tokens", (json_int_t)n);
    *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return 200;
}

/* The ids of one embeddings input (a string: tokenized with BOS as the vocabulary asks). */
static int input_ids(clspec_engine *e, json_t *item, int32_t **ids, int *n, char *err, size_t errlen)
{
    if (json_is_array(item)) {
        size_t k = json_array_size(item);
        *ids = malloc(k * sizeof **ids);
        if (!*ids)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        for (size_t i = 0; i < k; i++)
            (*ids)[i] = (int32_t)json_integer_value(json_array_get(item, i));
        *n = (int)k;
        return CLSPEC_OK;
    }
    size_t len = json_string_length(item), cap = len + 8, got = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    int rc = clspec_tokenize(e, json_string_value(item), len, 1, 1, *ids, cap, &got, err, errlen);
    if (rc != CLSPEC_OK) {
        free(*ids);
        *ids = NULL;
        return rc;
    }
    *n = (int)got;
    return CLSPEC_OK;
}

int cs_llama_route_embeddings(const struct cs_llama_ctx *x, struct cs_embedder *m, const char *req, size_t len,
                              char **body)
{
    if (!m) {
        *body = cs_llama_error_json(501, "embeddings are off: set [server] embeddings = true");
        return 501;
    }
    char err[512];
    const char *param = NULL;
    struct clspec_engine_info info = {.size = sizeof info};
    clspec_engine *e = cs_embedder_engine(m);
    json_t *items = NULL;
    int rc = clspec_engine_get_info(e, &info, err, sizeof err);
    if (rc == CLSPEC_OK)
        rc = cs_llama_parse_embeddings(req, len, info.n_vocab, &items, &param, err, sizeof err);
    int32_t dim = cs_embedder_dim(m);
    size_t n = items ? json_array_size(items) : 0;
    float *vecs = rc == CLSPEC_OK ? malloc(CS_MAX(n, 1) * (size_t)dim * sizeof *vecs) : NULL;
    if (rc == CLSPEC_OK && !vecs)
        rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
    int tokens = 0;
    for (size_t i = 0; rc == CLSPEC_OK && i < n; i++) {
        int32_t *ids = NULL;
        int k = 0;
        rc = input_ids(e, json_array_get(items, i), &ids, &k, err, sizeof err);
        if (rc == CLSPEC_OK)
            rc = cs_embed(m, ids, k, vecs + i * (size_t)dim, err, sizeof err);
        tokens += k;
        free(ids);
    }
    json_decref(items);
    if (rc != CLSPEC_OK) {
        free(vecs);
        int code = cs_api_http_status(rc);
        *body = cs_llama_error_json(code, err);
        return code;
    }
    *body = cs_llama_embeddings_json(x->model_name, vecs, (int)n, dim, tokens);
    free(vecs);
    return 200;
}

int cs_llama_tokenize_mixed(clspec_engine *e, json_t *mixed, int32_t n_vocab, int32_t **ids, int *n_ids, char *err,
                            size_t errlen)
{
    struct cs_strbuf b = {0}; /* the ids as bytes */
    size_t i;
    json_t *v;
    int rc = CLSPEC_OK;
    json_array_foreach(mixed, i, v)
    {
        if (json_is_integer(v)) {
            json_int_t id = json_integer_value(v);
            if (id < 0 || id >= n_vocab) {
                rc = cs_err(err, errlen, CLSPEC_E_INVAL, "prompt[%zu] = %lld: token ids are 0..%d", i, (long long)id,
                            (int)n_vocab - 1);
                break;
            }
            int32_t t = (int32_t)id;
            cs_strbuf_put_n(&b, (const char *)&t, sizeof t);
            continue;
        }
        size_t len = json_string_length(v), cap = len + 8, got = 0;
        int32_t *part = malloc(cap * sizeof *part);
        rc = part ? clspec_tokenize(e, json_string_value(v), len, i == 0, 1, part, cap, &got, err, errlen)
                  : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        if (rc == CLSPEC_OK)
            cs_strbuf_put_n(&b, (const char *)part, got * sizeof *part);
        free(part);
        if (rc != CLSPEC_OK)
            break;
    }
    if (rc == CLSPEC_OK && (b.oom || b.len == 0 || b.len / sizeof(int32_t) > INT32_MAX))
        rc = cs_err(err, errlen, b.oom ? CLSPEC_E_NOMEM : CLSPEC_E_INVAL, b.oom ? "out of memory" : "prompt: no tokens");
    if (rc != CLSPEC_OK) {
        cs_strbuf_free(&b);
        return rc;
    }
    *n_ids = (int)(b.len / sizeof(int32_t));
    *ids = malloc(b.len);
    if (*ids)
        memcpy(*ids, b.p, b.len);
    cs_strbuf_free(&b);
    return *ids ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
}

int cs_llama_acc_for(clspec_engine *e, const struct cs_llama_request *lr, const struct cs_api_request *ar,
                     const int32_t *ids, int n_ids, const char *model, int n_ctx_slot, struct cs_llama_acc **out)
{
    struct cs_strbuf pt = {0};
    for (int i = 0; i < n_ids; i++) {
        char piece[256];
        size_t pn = 0;
        if (clspec_token_piece(e, ids[i], 1, piece, sizeof piece, &pn, NULL, 0) == CLSPEC_OK)
            cs_strbuf_put_n(&pt, piece, CS_MIN(pn, sizeof piece));
    }
    struct cs_llama_acc_params p = {.model = model, .stream = ar->stream, .return_tokens = lr->return_tokens,
                                    .n_probs = lr->n_probs, .post_sampling = lr->post_sampling,
                                    .n_prompt = n_ids, .n_predict = lr->n_predict,
                                    .n_ctx_slot = n_ctx_slot, .r = ar, .repeat_last_n = lr->repeat_last_n,
                                    .prompt_text = pt.oom ? NULL : pt.p, .prompt_len = pt.len,
                                    .response_fields = lr->response_fields};
    int rc = cs_llama_acc_new(&p, out);
    cs_strbuf_free(&pt);
    return rc;
}

/* appends (id, bias) to r's resolved lists (cap grows by doubling) */
static int bias_push(struct cs_api_request *r, int *cap, int32_t id, float b)
{
    if (r->n_bias == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        int32_t *ni = realloc(r->bias_id, (size_t)nc * sizeof *ni);
        if (ni)
            r->bias_id = ni;
        float *nb = ni ? realloc(r->bias, (size_t)nc * sizeof *nb) : NULL;
        if (!nb)
            return CLSPEC_E_NOMEM;
        r->bias = nb;
        *cap = nc;
    }
    r->bias_id[r->n_bias] = id;
    r->bias[r->n_bias++] = b;
    return CLSPEC_OK;
}

/* One logit_bias entry: key a token id (a JSON integer, or a string that is a whole number) or a text
 * whose every token gets the bias (tokenized without BOS or special tokens, as llama-server does). */
static int bias_entry(clspec_engine *e, int32_t n_vocab, json_t *key, json_t *val, struct cs_api_request *r, int *cap,
                      char *err, size_t errlen)
{
    float b = json_is_false(val) ? -INFINITY : (float)json_number_value(val);
    const char *k = json_is_string(key) ? json_string_value(key) : NULL;
    char *end = NULL;
    long long id = k ? (k[0] >= '0' && k[0] <= '9' ? strtoll(k, &end, 10) : -1) : json_integer_value(key);
    if (!k || (end && *end == '\0')) {
        if (id < 0 || id >= n_vocab)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "logit_bias: token %lld is outside the vocabulary (0..%d)", id,
                          n_vocab - 1);
        return bias_push(r, cap, (int32_t)id, b) == CLSPEC_OK ? CLSPEC_OK
                                                             : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    size_t len = json_string_length(key), got = 0;
    int32_t *ids = malloc((len + 8) * sizeof *ids);
    if (!ids)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    int rc = clspec_tokenize(e, k, len, 0, 0, ids, len + 8, &got, err, errlen);
    for (size_t i = 0; rc == CLSPEC_OK && i < got; i++)
        if (bias_push(r, cap, ids[i], b) != CLSPEC_OK)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    free(ids);
    return rc;
}

int cs_llama_logit_bias(clspec_engine *e, struct cs_api_request *r, char *err, size_t errlen)
{
    struct clspec_engine_info info = {.size = sizeof info};
    CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    int32_t n_vocab = (int32_t)info.n_vocab;
    int cap = 0, rc = CLSPEC_OK;
    json_t *v = r->logit_bias, *k, *b;
    if (json_is_object(v)) {
        const char *key;
        json_object_foreach(v, key, b)
        {
            k = json_string(key);
            rc = k ? bias_entry(e, n_vocab, k, b, r, &cap, err, errlen)
                   : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
            json_decref(k);
            if (rc != CLSPEC_OK)
                return rc;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *en;
        json_array_foreach(v, i, en)
            CS_TRY(bias_entry(e, n_vocab, json_array_get(en, 0), json_array_get(en, 1), r, &cap, err, errlen));
    }
    for (int32_t t = 0; r->ignore_eos && t < n_vocab && rc == CLSPEC_OK; t++)
        if (clspec_token_is_eog(e, t) == 1 && bias_push(r, &cap, t, -INFINITY) != CLSPEC_OK)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    return rc;
}
