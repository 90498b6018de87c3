/* api_json.c: see api.h: the JSON of answers, errors and streamed chunks
 * (the parsing of requests is api.c). */
#include "config.h"

#include "daemon/api.h"
#include "daemon/api_llama.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"

/* ---------------------------------------------------------------- errors */

int cs_api_http_status(int status)
{
    switch (status) {
    case CLSPEC_OK:
        return 200;
    case CLSPEC_E_FORMAT:
    case CLSPEC_E_INVAL:
    case CLSPEC_E_RANGE:
    case CLSPEC_E_CONTEXT:
        return 400;
    case CLSPEC_E_BUSY:
        return 429;
    case CLSPEC_E_SHUTDOWN:
        return 503;
    default:
        return 500;
    }
}

static char *dump(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    return s;
}

char *cs_api_error_json(int http_status, const char *message, const char *param)
{
    const char *type = "invalid_request_error", *code = NULL;
    switch (http_status) {
    case 401: type = "authentication_error"; code = "invalid_api_key"; break;
    case 404: type = "not_found_error"; code = "not_found"; break;
    case 405: code = "method_not_allowed"; break;
    case 413: code = "request_too_large"; break;
    case 429: type = "rate_limit_error"; code = "queue_full"; break;
    case 503: type = "unavailable_error"; code = "unavailable"; break;
    default:
        if (http_status >= 500) {
            type = "server_error";
            code = "internal_error";
        }
    }
    json_t *e = json_object();
    json_t *m = json_string(message ? message : "");
    if (!m) /* not UTF-8 */
        m = json_string("(message not valid UTF-8)");
    json_object_set_new(e, "message", m);
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "param", param ? json_string(param) : json_null());
    json_object_set_new(e, "code", code ? json_string(code) : json_null());
    return dump(json_pack("{s:o}", "error", e));
}

/* ---------------------------------------------------------------- responses */

/* A JSON string of any bytes: invalid UTF-8 bytes become U+FFFD. */
static json_t *str_lossy(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    struct cs_strbuf b = {0};
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 1 && c != 0) {
            cs_strbuf_put_n(&b, s + i, 1);
            i++;
            continue;
        }
        if (n > 1 && i + n <= len) {
            json_t *t = json_stringn(s + i, n);
            if (t) {
                json_decref(t);
                cs_strbuf_put_n(&b, s + i, n);
                i += n;
                continue;
            }
        }
        cs_strbuf_put(&b, "\xEF\xBF\xBD");
        i++;
    }
    char *p;
    size_t n;
    if (cs_strbuf_take(&b, &p, &n))
        return NULL;
    j = json_stringn(p, n);
    free(p);
    return j;
}

static json_t *bytes_array(const char *s, size_t len)
{
    json_t *a = json_array();
    for (size_t i = 0; i < len; i++)
        json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *cs_api_logprobs_new(enum cs_api_kind kind)
{
    if (kind == CS_API_CHAT)
        return json_pack("{s:[]}", "content");
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

int cs_api_logprobs_add(json_t *lp, enum cs_api_kind kind, const char *piece, size_t len, float logprob,
                        const struct cs_top_logprob *top, int n_top, size_t text_offset)
{
    if (!lp)
        return CLSPEC_E_INVAL;
    if (kind == CS_API_CHAT) {
        json_t *alts = json_array();
        for (int i = 0; i < n_top; i++)
            json_array_append_new(alts, json_pack("{s:o,s:o,s:o}", "token", str_lossy(top[i].text, top[i].len),
                                                  "logprob", num(top[i].logprob), "bytes",
                                                  bytes_array(top[i].text, top[i].len)));
        json_t *e = json_pack("{s:o,s:o,s:o,s:o}", "token", str_lossy(piece, len), "logprob", num(logprob), "bytes",
                              bytes_array(piece, len), "top_logprobs", alts);
        return e && !json_array_append_new(json_object_get(lp, "content"), e) ? CLSPEC_OK : CLSPEC_E_NOMEM;
    }
    json_t *alts = json_object();
    for (int i = 0; i < n_top; i++) {
        json_t *k = str_lossy(top[i].text, top[i].len);
        if (k && !json_object_get(alts, json_string_value(k)))
            json_object_set_new(alts, json_string_value(k), num(top[i].logprob));
        json_decref(k);
    }
    int bad = json_array_append_new(json_object_get(lp, "tokens"), str_lossy(piece, len));
    bad |= json_array_append_new(json_object_get(lp, "token_logprobs"), num(logprob));
    bad |= json_array_append_new(json_object_get(lp, "top_logprobs"), alts);
    bad |= json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)text_offset));
    return bad ? CLSPEC_E_NOMEM : CLSPEC_OK;
}

json_t *cs_api_usage(const struct cs_req_usage *u)
{
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", u->prompt_tokens, "completion_tokens",
                     u->completion_tokens, "total_tokens", u->prompt_tokens + u->completion_tokens,
                     "prompt_tokens_details", "cached_tokens", u->cached_tokens);
}

json_t *cs_api_timings(const struct cs_req_usage *u)
{
    int n_prefill = u->prompt_tokens - u->cached_tokens;
    int n_decode = u->completion_tokens > 0 ? u->completion_tokens - 1 : 0;
    double ptps = u->prefill_ms > 0 ? n_prefill * 1000.0 / u->prefill_ms : 0;
    double dtps = u->decode_ms > 0 ? n_decode * 1000.0 / u->decode_ms : 0;
    json_t *t = json_pack("{s:o,s:o,s:i,s:o,s:o,s:i,s:o}", "queue_ms", num(u->queue_ms), "prefill_ms",
                          num(u->prefill_ms), "prefill_tokens", n_prefill, "prefill_tokens_per_second", num(ptps),
                          "decode_ms", num(u->decode_ms), "decode_tokens", n_decode, "decode_tokens_per_second",
                          num(dtps));
    /* speculative decoding (specd): always present, zeros when the request did not speculate */
    double rate = u->draft_n > 0 ? (double)u->draft_accepted / u->draft_n : 0;
    double mean = u->spec_steps > 0 ? (double)u->spec_emitted / u->spec_steps : 0;
    json_t *sp = json_pack("{s:b,s:i,s:i,s:i,s:o,s:o}", "speculative", u->speculative, "spec_steps", u->spec_steps,
                           "draft_n", u->draft_n, "draft_accepted", u->draft_accepted, "draft_acceptance_rate",
                           num(rate), "mean_accepted_length", num(mean));
    if (t && sp)
        json_object_update(t, sp);
    json_decref(sp);
    /* the draft-length controller's choices (specd): mean chosen length, steps it kept plain; the
     * blocking syncs per scheduler step while the request decoded */
    json_t *ctl = json_pack("{s:s,s:o,s:i,s:o}", "draft_controller", u->spec_controller ? u->spec_controller : "none",
                            "draft_length_mean", num(u->spec_steps > 0 ? (double)u->draft_asked / u->spec_steps : 0),
                            "draft_steps_plain", u->spec_steps_plain, "syncs_per_step", num(u->syncs_per_step));
    if (t && ctl)
        json_object_update(t, ctl);
    json_decref(ctl);
    if (t) /* llama-server's name of the same count */
        json_object_set_new(t, "draft_n_accepted", json_integer(u->draft_accepted));
    json_t *ll = cs_llama_timings(u); /* and llama-server's timings beside clspec's */
    if (t && ll)
        json_object_update_missing(t, ll);
    json_decref(ll);
    return t;
}

/* The object's JSON with "seed": rs->seed appended (written by hand: a
 * uint64 does not fit jansson's integers). */
static char *dump_seed(json_t *o, uint64_t seed)
{
    char *s = dump(o);
    size_t n = s ? strlen(s) : 0;
    if (n < 2 || s[n - 1] != '}')
        return s;
    char *t = malloc(n + 32);
    if (t)
        snprintf(t, n + 32, "%.*s,\"seed\":%llu}", (int)(n - 1), s, (unsigned long long)seed);
    free(s);
    return t;
}

static json_t *head(const struct cs_api_resp *rs, bool chunk)
{
    const char *obj = rs->kind == CS_API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                              : "text_completion";
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", rs->id, "object", obj, "created", (json_int_t)rs->created,
                     "model", rs->model, "system_fingerprint", "clspec-" PACKAGE_VERSION);
}

/* A whole answer: o (head()) with its one choice, usage and timings, dumped with the seed
 * (o and choice are taken; NULL when either is). */
static char *whole_answer(const struct cs_api_resp *rs, json_t *o, json_t *choice, const struct cs_req_usage *u)
{
    if (!o || !choice) {
        json_decref(o);
        json_decref(choice);
        return NULL;
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    json_object_set_new(o, "usage", cs_api_usage(u));
    json_object_set_new(o, "timings", cs_api_timings(u));
    return dump_seed(o, rs->seed);
}

char *cs_api_completion_json(const struct cs_api_resp *rs, const char *text, size_t len, const char *finish_reason,
                             json_t *logprobs, const struct cs_req_usage *u)
{
    json_t *o = head(rs, false);
    json_t *t = str_lossy(text ? text : "", len);
    json_t *choice;
    if (rs->kind == CS_API_CHAT)
        choice = json_pack("{s:i,s:{s:s,s:o},s:o,s:s?}", "index", 0, "message", "role", "assistant", "content", t,
                           "logprobs", logprobs ? logprobs : json_null(), "finish_reason", finish_reason);
    else
        choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", 0, "text", t, "logprobs",
                           logprobs ? logprobs : json_null(), "finish_reason", finish_reason);
    return whole_answer(rs, o, choice, u);
}

char *cs_api_chunk_json(const struct cs_api_resp *rs, const char *text, size_t len, bool role_first,
                        const char *finish_reason, json_t *logprobs, const struct cs_req_usage *u,
                        bool usage_only)
{
    json_t *o = head(rs, true);
    if (!o) {
        json_decref(logprobs);
        return NULL;
    }
    if (usage_only) {
        json_decref(logprobs);
        json_object_set_new(o, "choices", json_array());
    } else {
        json_t *choice;
        if (rs->kind == CS_API_CHAT) {
            json_t *delta = json_object();
            if (role_first)
                json_object_set_new(delta, "role", json_string("assistant"));
            if (len)
                json_object_set_new(delta, "content", str_lossy(text, len));
            else if (role_first) /* as llama-server's first chunk: the role, content null */
                json_object_set_new(delta, "content", json_null());
            choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", 0, "delta", delta, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason", finish_reason);
        } else {
            choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", 0, "text", str_lossy(text ? text : "", len),
                               "logprobs", logprobs ? logprobs : json_null(), "finish_reason", finish_reason);
        }
        json_object_set_new(o, "choices", json_pack("[o]", choice));
    }
    if (u) {
        json_object_set_new(o, "usage", cs_api_usage(u));
        json_object_set_new(o, "timings", cs_api_timings(u));
    } else {
        json_object_set_new(o, "usage", json_null());
    }
    return u && !usage_only ? dump_seed(o, rs->seed) : dump(o);
}

char *cs_api_tokens_json(const int32_t *ids, size_t n, const char *pieces, const size_t *off)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        if (!pieces) {
            json_array_append_new(a, json_integer(ids[i]));
            continue;
        }
        json_t *piece = json_stringn(pieces + off[i], off[i + 1] - off[i]);
        if (!piece) /* not valid UTF-8 (part of a character): its bytes */
            piece = bytes_array(pieces + off[i], off[i + 1] - off[i]);
        json_array_append_new(a, json_pack("{s:I,s:o}", "id", (json_int_t)ids[i], "piece", piece));
    }
    return a ? dump(json_pack("{s:o}", "tokens", a)) : NULL;
}

char *cs_api_content_json(const char *text, size_t len)
{
    json_t *c = str_lossy(text, len);
    return c ? dump(json_pack("{s:o}", "content", c)) : NULL;
}

/* Appends the comma-separated names of csv (trimmed, empty ones and repeats skipped) to a. */
static void csv_names(json_t *a, const char *csv)
{
    for (const char *p = csv; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *b = p, *e = p + n;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        bool seen = b == e;
        for (size_t i = 0; !seen && i < json_array_size(a); i++) {
            const char *v = json_string_value(json_array_get(a, i));
            seen = v && strlen(v) == (size_t)(e - b) && memcmp(v, b, (size_t)(e - b)) == 0;
        }
        if (!seen)
            json_array_append_new(a, str_lossy(b, (size_t)(e - b)));
        p = end ? end + 1 : p + n;
    }
}

char *cs_api_models_json(const char *model, const char *aliases, const char *tags, int64_t created, int n_ctx)
{
    json_t *al = json_array(), *tg = json_array();
    if (al)
        json_array_append_new(al, json_string(model));
    csv_names(al, aliases);
    csv_names(tg, tags);
    return dump(json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:o,s:o,s:{s:i}}]}", "object", "list", "data", "id", model,
                          "object", "model", "created", (json_int_t)created, "owned_by", "clspec", "aliases", al,
                          "tags", tg, "meta", "n_ctx_slot", n_ctx));
}

char *cs_api_slots_json(const struct cs_slot_info *slots, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        const struct cs_slot_info *s = &slots[i];
        json_array_append_new(a, json_pack("{s:i,s:b,s:o,s:i,s:i,s:i,s:b}", "id", s->id, "busy", s->busy,
                                           "request_id", s->busy ? str_lossy(s->req_id, strnlen(s->req_id, sizeof s->req_id)) : json_null(),
                                           "n_prompt", s->n_prompt, "n_generated", s->n_generated, "n_past",
                                           (int)s->n_past, "speculative", s->speculative));
    }
    return dump(a);
}

json_t *cs_api_str_lossy(const char *s, size_t len)
{
    return str_lossy(s, len);
}

json_t *cs_api_bytes_array(const char *s, size_t len)
{
    return bytes_array(s, len);
}

char *cs_api_chat_message_json(const struct cs_api_resp *rs, json_t *message, const char *finish_reason,
                               json_t *logprobs, const struct cs_req_usage *u)
{
    json_t *o = head(rs, false);
    json_t *choice = json_pack("{s:i,s:o,s:o,s:s?}", "index", 0, "message", message, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason", finish_reason);
    return whole_answer(rs, o, choice, u);
}

char *cs_api_chat_delta_json(const struct cs_api_resp *rs, json_t *delta, json_t *logprobs)
{
    json_t *o = head(rs, true);
    json_t *choice = json_pack("{s:i,s:o,s:o,s:n}", "index", 0, "delta", delta, "logprobs",
                               logprobs ? logprobs : json_null(), "finish_reason");
    if (!o || !choice) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    json_object_set_new(o, "usage", json_null());
    return dump(o);
}
