/* chatout.c: reasoning split, then tool calls, as OpenAI deltas or one
 * message (see chatout.h). */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/chatout.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "text/toolgrammar.h"

struct cs_chatout {
    struct cs_chatout_params p;
    struct cs_reasoning_stream *rs;
    struct cs_toolcall_stream *ts;
    int n_calls; /* calls kept */
};

/* 9 letters and digits from a per-process xorshift seeded with the clock */
static void new_call_id(char out[16])
{
    static atomic_uint_fast64_t state;
    uint64_t x = atomic_fetch_add(&state, 0x9E3779B97F4A7C15ull) ^ (uint64_t)(cs_wall_now() * 1e6);
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    memcpy(out, "call_", 5);
    for (int i = 0; i < 9; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[5 + i] = al[x % (sizeof al - 1)];
    }
    out[14] = 0;
}

int cs_chatout_new(const struct cs_chatout_params *p, struct cs_chatout **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_chatout *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    c->p = *p;
    if (!c->p.markers.open)
        c->p.markers = cs_reasoning_markers_detect(NULL, 0);
    int rc = cs_reasoning_stream_new(p->reasoning, c->p.markers, p->starts_open, &c->rs, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_toolcall_stream_new(p->tools, &c->ts, err, errlen);
    if (rc != CLSPEC_OK) {
        cs_chatout_free(c);
        return rc;
    }
    *out = c;
    return CLSPEC_OK;
}

void cs_chatout_free(struct cs_chatout *c)
{
    if (!c)
        return;
    cs_reasoning_stream_free(c->rs);
    cs_toolcall_stream_free(c->ts);
    free(c);
}

int cs_chatout_n_calls(const struct cs_chatout *c) { return c ? c->n_calls : 0; }

static void add_tool_delta(struct cs_chatout *c, json_t *arr, const struct cs_tool_delta *d)
{
    if (!c->p.parallel && d->index > 0)
        return; /* only the first call */
    json_t *fn, *tc;
    if (d->kind == CS_TD_CALL_START) {
        char id[16];
        new_call_id(id);
        fn = json_pack("{s:s,s:s}", "name", d->text, "arguments", "");
        tc = json_pack("{s:i,s:s,s:s,s:o}", "index", d->index, "id", id, "type", "function", "function", fn);
        c->n_calls++;
    } else {
        fn = json_pack("{s:s}", "arguments", d->text);
        tc = json_pack("{s:i,s:o}", "index", d->index, "function", fn);
    }
    json_array_append_new(arr, json_pack("{s:[o]}", "tool_calls", tc));
}

int cs_chatout_feed(struct cs_chatout *c, const char *text, size_t n, bool final, json_t **deltas, char *err,
                    size_t errlen)
{
    *deltas = NULL;
    json_t *arr = json_array();
    if (!arr)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    struct cs_reasoning_delta *rd = NULL;
    size_t nrd = 0;
    int rc = cs_reasoning_stream_feed(c->rs, text, n, final, &rd, &nrd, err, errlen);
    for (size_t i = 0; rc == CLSPEC_OK && i <= nrd; i++) {
        bool last = i == nrd;
        if (!last && rd[i].kind == CS_RD_REASONING) {
            json_array_append_new(arr, json_pack("{s:s}", "reasoning_content", rd[i].text));
            continue;
        }
        struct cs_tool_delta *td = NULL;
        size_t ntd = 0;
        /* the content goes through the tool-call parser; the last round flushes it */
        rc = cs_toolcall_stream_feed(c->ts, last ? "" : rd[i].text, last ? 0 : strlen(rd[i].text), last && final,
                                     &td, &ntd, err, errlen);
        for (size_t k = 0; rc == CLSPEC_OK && k < ntd; k++) {
            if (td[k].kind == CS_TD_CONTENT)
                json_array_append_new(arr, json_pack("{s:s}", "content", td[k].text));
            else
                add_tool_delta(c, arr, &td[k]);
        }
        cs_tool_deltas_free(td, ntd);
    }
    cs_reasoning_deltas_free(rd, nrd);
    if (rc != CLSPEC_OK) {
        json_decref(arr);
        return rc;
    }
    *deltas = arr;
    return CLSPEC_OK;
}

int cs_chatout_message(const struct cs_chatout_params *p, const char *text, size_t n, json_t **message, int *n_calls,
                       char *err, size_t errlen)
{
    *message = NULL;
    struct cs_chatout *c = NULL;
    CS_TRY(cs_chatout_new(p, &c, err, errlen));
    json_t *deltas = NULL;
    int rc = cs_chatout_feed(c, text, n, true, &deltas, err, errlen);
    if (rc != CLSPEC_OK) {
        cs_chatout_free(c);
        return rc;
    }
    struct cs_strbuf content = {0}, reasoning = {0};
    json_t *calls = json_array();
    bool thought = false;
    size_t i;
    json_t *d;
    json_array_foreach(deltas, i, d) {
        json_t *v;
        if ((v = json_object_get(d, "content"))) {
            cs_strbuf_put(&content, json_string_value(v));
        } else if ((v = json_object_get(d, "reasoning_content"))) {
            cs_strbuf_put(&reasoning, json_string_value(v));
            thought = true;
        } else if ((v = json_array_get(json_object_get(d, "tool_calls"), 0))) {
            json_t *fn = json_object_get(v, "function");
            if (json_object_get(v, "id")) {
                json_t *call = json_deep_copy(v);
                json_object_del(call, "index");
                json_array_append_new(calls, call);
            } else {
                json_t *call = json_array_get(calls, json_array_size(calls) - 1);
                json_t *cf = json_object_get(call, "function");
                const char *old = json_string_value(json_object_get(cf, "arguments"));
                struct cs_strbuf a = {0};
                cs_strbuf_put(&a, old ? old : "");
                cs_strbuf_put(&a, json_string_value(json_object_get(fn, "arguments")));
                json_object_set_new(cf, "arguments", json_string(a.p ? a.p : ""));
                cs_strbuf_free(&a);
            }
        }
    }
    size_t nc = json_array_size(calls);
    json_t *m = json_pack("{s:s}", "role", "assistant");
    if (m) {
        /* with calls, content that is only the line breaks between them is none */
        bool blank = content.len == 0 || strspn(content.p, " \t\r\n") == content.len;
        json_object_set_new(m, "content", nc && blank ? json_null()
                                                      : json_stringn(content.p ? content.p : "", content.len));
        if (thought)
            json_object_set_new(m, "reasoning_content", json_stringn(reasoning.p ? reasoning.p : "", reasoning.len));
        if (nc)
            json_object_set(m, "tool_calls", calls);
    }
    if (n_calls)
        *n_calls = (int)nc;
    json_decref(calls);
    json_decref(deltas);
    bool oom = content.oom || reasoning.oom || !m;
    cs_strbuf_free(&content);
    cs_strbuf_free(&reasoning);
    cs_chatout_free(c);
    if (oom) {
        json_decref(m);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    *message = m;
    return CLSPEC_OK;
}

int cs_chatout_force_grammar(const char *tmpl, size_t tl, const json_t *tools, const char *only, bool parallel,
                             const char *think_close, char **grammar, char *err, size_t errlen)
{
    struct cs_tool_grammar_params p = {
        .format = cs_tool_format_detect(tmpl, tl), .tools = tools, .only = only, .parallel = parallel,
        .tmpl = tmpl, .tmpl_len = tl, .think_close = think_close,
    };
    size_t len = 0;
    return cs_tool_grammar(&p, grammar, &len, err, errlen);
}
