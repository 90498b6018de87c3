/* chat_jinja.c: chat templates run as Jinja (CS_CHAT_JINJA) and the
 * OpenAI-message entry point for every family (cs_chat_render_json).
 * Compiled templates are kept in a small process-wide cache keyed by their
 * text (a model's template compiles once, not per request); compiled
 * templates are read-only while rendering, so threads share them. */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/chat_jinja.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "text/jinja.h"

int cs_chat_jinja_check(const char *tmpl, size_t len, char *err, size_t errlen)
{
    char buf[256];
    if (!tmpl)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template jinja: the model has no chat template");
    struct cs_jinja *t = NULL;
    int rc = cs_jinja_compile(tmpl, len, &t, err ? err : buf, err ? errlen : sizeof buf);
    cs_jinja_free(t);
    if (rc != CLSPEC_OK && err)
        cs_err_prefix(err, errlen, rc, "chat template jinja");
    return rc;
}

/* ---- the cache: up to JCACHE_N templates, kept for the process's life
 * (never evicted, so a template handed out stays valid; beyond that many
 * distinct texts each render compiles its own) ---- */
#define JCACHE_N 16
static struct jcache_entry {
    uint64_t hash;
    size_t len;
    char *src;
    struct cs_jinja *t;
} g_jcache[JCACHE_N];
static int g_jcache_n;
static pthread_mutex_t g_jcache_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

static struct cs_jinja *jcache_find(uint64_t h, const char *src, size_t len)
{
    for (int i = 0; i < g_jcache_n; i++)
        if (g_jcache[i].hash == h && g_jcache[i].len == len && !memcmp(g_jcache[i].src, src, len))
            return g_jcache[i].t;
    return NULL;
}

/* The compiled template of src[0..len): *t from the cache, or compiled now;
 * *owned is set when the caller must free it (the cache was full). */
static int jinja_get(const char *src, size_t len, const struct cs_jinja **t, struct cs_jinja **owned, char *err,
                     size_t errlen)
{
    *owned = NULL;
    uint64_t h = fnv1a(src, len);
    pthread_mutex_lock(&g_jcache_mu);
    *t = jcache_find(h, src, len);
    pthread_mutex_unlock(&g_jcache_mu);
    if (*t)
        return CLSPEC_OK;
    struct cs_jinja *c = NULL; /* compiled outside the lock: another thread may add the same text meanwhile */
    CS_TRY(cs_jinja_compile(src, len, &c, err, errlen));
    char *copy = malloc(len + 1);
    pthread_mutex_lock(&g_jcache_mu);
    struct cs_jinja *again = jcache_find(h, src, len);
    if (!again && copy && g_jcache_n < JCACHE_N) {
        memcpy(copy, src, len);
        copy[len] = 0;
        g_jcache[g_jcache_n++] = (struct jcache_entry){h, len, copy, c};
        copy = NULL;
        *t = c;
        c = NULL;
    } else if (again) {
        *t = again;
    }
    pthread_mutex_unlock(&g_jcache_mu);
    free(copy);
    if (*t) {
        cs_jinja_free(c); /* NULL when it went into the cache */
    } else {
        *t = c; /* the cache is full (or no memory for the copy): this render's own */
        *owned = c;
    }
    return CLSPEC_OK;
}

/* whether the template filters tool-call arguments with tojson or items
 * ("arguments|tojson", "['arguments'] | items", ...): it wants objects */
static bool args_filtered(const char *s, size_t n)
{
    for (size_t i = 0; i + 9 <= n; i++) {
        if (memcmp(s + i, "arguments", 9) != 0)
            continue;
        size_t j = i + 9;
        while (j < n && strchr("'\"] ", s[j]))
            j++;
        if (j >= n || s[j] != '|')
            continue;
        for (j++; j < n && s[j] == ' '; j++)
            ;
        if ((j + 6 <= n && !memcmp(s + j, "tojson", 6)) || (j + 5 <= n && !memcmp(s + j, "items", 5)))
            return true;
    }
    return false;
}

/* Tool-call arguments in the form the template expects: OpenAI clients send
 * them as JSON text; templates that print them with tojson or walk them
 * with items (Llama 3.x, Qwen 2.5, Qwen3-Coder, Hermes 2 Pro, Mistral,
 * Command R7B) want the object, templates that
 * concatenate them (DeepSeek) want the text. simplify: a null content
 * becomes "" and an array of text parts their joined text. Returns a new
 * copy (NULL when out of memory). */
static json_t *normalize_args(const struct cs_chat_params *p, const json_t *messages, bool simplify)
{
    bool want_object = args_filtered(p->jinja, p->jinja_len);
    json_t *copy = json_deep_copy(messages);
    if (!copy)
        return NULL;
    size_t i;
    json_t *m;
    json_array_foreach(copy, i, m) {
        json_t *c = json_object_get(m, "content"), *role = json_object_get(m, "role");
        if (json_is_string(role) && !strcmp(json_string_value(role), "developer"))
            json_object_set_new(m, "role", json_string("system")); /* OpenAI's newer name for it */
        if (simplify && c && json_is_null(c))
            json_object_set_new(m, "content", json_string(""));
        if (simplify && json_is_array(c)) {
            struct cs_strbuf b = {0};
            if (cs_chat_join_text_parts(c, false, &b, NULL) && !b.oom)
                json_object_set_new(m, "content", json_stringn(b.p ? b.p : "", b.len));
            cs_strbuf_free(&b);
        }
        json_t *calls = json_object_get(m, "tool_calls"), *tc;
        size_t k;
        json_array_foreach(calls, k, tc) {
            json_t *fn = json_object_get(tc, "function"), *args = json_object_get(fn, "arguments");
            if (want_object && json_is_string(args)) {
                json_t *obj = json_loads(json_string_value(args), JSON_DECODE_ANY, NULL);
                if (obj && json_is_object(obj))
                    json_object_set_new(fn, "arguments", obj);
                else
                    json_decref(obj);
            } else if (!want_object && json_is_object(args)) {
                char *text = json_dumps(args, JSON_PRESERVE_ORDER);
                if (text)
                    json_object_set_new(fn, "arguments", json_string(text));
                free(text);
            }
        }
    }
    return copy;
}

/* a null content, or content as an array of parts */
static bool content_not_string(const json_t *messages)
{
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        json_t *c = json_object_get(m, "content");
        if (c && (json_is_null(c) || json_is_array(c)))
            return true;
    }
    return false;
}

static int render_jinja_once(const struct cs_chat_params *p, const json_t *messages, char **out, size_t *out_len,
                             bool *starts_with_bos, char *err, size_t errlen);

/* Renders with the arguments normalized; a template that fails on a null
 * content or on content parts (most read content as a string) gets "" and
 * the parts' joined text instead, as llama.cpp does. */
static int render_jinja(const struct cs_chat_params *p, const json_t *messages, char **out, size_t *out_len,
                        bool *starts_with_bos, char *err, size_t errlen)
{
    if (!p->jinja)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template jinja: no template text given");
    json_t *norm = normalize_args(p, messages, false);
    if (!norm)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template jinja: out of memory");
    int rc = render_jinja_once(p, norm, out, out_len, starts_with_bos, err, errlen);
    if (rc == CLSPEC_E_INVAL && content_not_string(messages)) {
        json_t *retry = normalize_args(p, messages, true);
        if (retry && render_jinja_once(p, retry, out, out_len, starts_with_bos, NULL, 0) == CLSPEC_OK)
            rc = CLSPEC_OK;
        json_decref(retry);
    }
    json_decref(norm);
    return rc;
}

/* The variables llama-server hands every template unless the kwargs set them: enable_thinking true,
 * date_string ("07 Dec 2026") and datetime ("Dec 07 2026") of now (UTC; 0: the clock). */
static int default_vars(json_t *vars, int64_t now)
{
    time_t t = now ? (time_t)now : time(NULL);
    struct tm tm;
    char ds[64], dt[64];
    gmtime_r(&t, &tm);
    strftime(ds, sizeof ds, "%d %b %Y", &tm);
    strftime(dt, sizeof dt, "%b %d %Y", &tm);
    if ((!json_object_get(vars, "enable_thinking") && json_object_set_new(vars, "enable_thinking", json_true())) ||
        (!json_object_get(vars, "date_string") && json_object_set_new(vars, "date_string", json_string(ds))) ||
        (!json_object_get(vars, "datetime") && json_object_set_new(vars, "datetime", json_string(dt))))
        return CLSPEC_E_NOMEM;
    return CLSPEC_OK;
}

static int render_jinja_once(const struct cs_chat_params *p, const json_t *messages, char **out, size_t *out_len,
                             bool *starts_with_bos, char *err, size_t errlen)
{
    if (!p->jinja)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template jinja: no template text given");
    if (p->kwargs && !json_is_object(p->kwargs))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template kwargs must be a JSON object");
    const struct cs_jinja *t = NULL;
    struct cs_jinja *owned = NULL;
    int rc = jinja_get(p->jinja, p->jinja_len, &t, &owned, err, errlen);
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "chat template jinja");
    json_t *vars = p->kwargs ? json_deep_copy(p->kwargs) : json_object();
    const char *bos = p->bos ? p->bos : "", *eos = p->eos ? p->eos : "";
    if (!vars || json_object_set(vars, "messages", (json_t *)messages) ||
        json_object_set_new(vars, "add_generation_prompt", json_boolean(p->add_generation_prompt)) ||
        json_object_set_new(vars, "bos_token", json_string(bos)) ||
        json_object_set_new(vars, "eos_token", json_string(eos)) ||
        (p->tools && json_array_size(p->tools) > 0 && json_object_set(vars, "tools", (json_t *)p->tools))) {
        json_decref(vars);
        cs_jinja_free(owned);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template jinja: out of memory");
    }
    if (!p->tools || json_array_size(p->tools) == 0)
        json_object_del(vars, "tools");
    if (default_vars(vars, p->now) != CLSPEC_OK) {
        json_decref(vars);
        cs_jinja_free(owned);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template jinja: out of memory");
    }
    char *text = NULL;
    size_t len = 0;
    rc = cs_jinja_render(t, vars, p->now, &text, &len, err, errlen);
    json_decref(vars);
    cs_jinja_free(owned);
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "chat template jinja");
    size_t bl = strlen(bos);
    bool starts = bl > 0 && len >= bl && memcmp(text, bos, bl) == 0;
    if (starts && p->skip_leading_bos) {
        memmove(text, text + bl, len - bl + 1);
        len -= bl;
        starts = false;
    }
    *out = text;
    if (out_len)
        *out_len = len;
    if (starts_with_bos)
        *starts_with_bos = starts;
    return CLSPEC_OK;
}

const char *cs_chat_part_sep(bool continued)
{
    return continued ? "\n\n" : "\n";
}

bool cs_chat_join_text_parts(const json_t *content, bool continued, struct cs_strbuf *b, size_t *bad)
{
    for (size_t k = 0; k < json_array_size(content); k++) {
        const json_t *part = json_array_get(content, k), *type = json_object_get(part, "type");
        const json_t *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            if (bad)
                *bad = k;
            return false;
        }
        if (k > 0)
            cs_strbuf_put(b, cs_chat_part_sep(continued));
        cs_strbuf_put(b, json_string_value(text));
    }
    return true;
}

/* The text of a message's content for the marker families: a string, null
 * (""), or the text parts of an array joined; *owned is set when malloc'd. */
static int content_text(const json_t *c, size_t i, const char **out, char **owned, char *err, size_t errlen)
{
    *owned = NULL;
    if (!c || json_is_null(c)) {
        *out = "";
        return CLSPEC_OK;
    }
    if (json_is_string(c)) {
        *out = json_string_value(c);
        return CLSPEC_OK;
    }
    if (!json_is_array(c))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "message %zu: content must be a string, null or an array of parts", i);
    struct cs_strbuf b = {0};
    size_t k;
    if (!cs_chat_join_text_parts(c, false, &b, &k)) {
        cs_strbuf_free(&b);
        return cs_err(err, errlen, CLSPEC_E_INVAL, "message %zu: content part %zu is not {\"type\": \"text\", \"text\": ...}", i, k);
    }
    size_t len;
    if (cs_strbuf_take(&b, owned, &len) != CLSPEC_OK)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    *out = *owned;
    return CLSPEC_OK;
}

static int render_family_json(const struct cs_chat_params *p, const json_t *messages, char **out, size_t *out_len,
                              bool *starts_with_bos, char *err, size_t errlen)
{
    size_t n = json_array_size(messages);
    struct cs_chat_msg *m = calloc(n ? n : 1, sizeof *m);
    char **owned = calloc(n ? n : 1, sizeof *owned);
    int rc = m && owned ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    for (size_t i = 0; rc == CLSPEC_OK && i < n; i++) {
        const json_t *msg = json_array_get(messages, i), *role = json_object_get(msg, "role");
        if (!json_is_object(msg) || !json_is_string(role)) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "message %zu: not an object with a string role", i);
            break;
        }
        if (json_object_get(msg, "tool_calls") && !json_is_null(json_object_get(msg, "tool_calls"))) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL,
                        "message %zu: tool_calls need the model's Jinja chat template (family %s cannot render them)",
                        i, cs_chat_family_name(p->family));
            break;
        }
        m[i].role = json_string_value(role);
        rc = content_text(json_object_get(msg, "content"), i, &m[i].content, &owned[i], err, errlen);
    }
    if (rc == CLSPEC_OK)
        rc = cs_chat_render(p, m, n, out, out_len, starts_with_bos, err, errlen);
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(m);
    return rc;
}

/* continue_final: messages[0..n-1) with the generation prompt, then the last one's content (a
 * string, null, or its text parts joined by a blank line, as llama-server joins them) */
static int render_continued_json(const struct cs_chat_params *p, const json_t *messages, char **out,
                                 size_t *out_len, bool *starts_with_bos, char *err, size_t errlen)
{
    size_t n = json_array_size(messages);
    const json_t *c = json_object_get(json_array_get(messages, n - 1), "content");
    struct cs_strbuf tail = {0};
    size_t bad;
    if (json_is_array(c) && !cs_chat_join_text_parts(c, true, &tail, &bad)) {
        cs_strbuf_free(&tail);
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "message %zu: content part %zu of the assistant message to continue is not a text part", n - 1,
                      bad);
    }
    if (json_is_string(c))
        cs_strbuf_put(&tail, json_string_value(c));
    else if (c && !json_is_null(c) && !json_is_array(c))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "message %zu: content must be a string, null or an array of parts",
                      n - 1);
    json_t *head = json_array();
    for (size_t i = 0; head && i + 1 < n; i++)
        if (json_array_append(head, json_array_get(messages, i)))
            break;
    struct cs_chat_params q = *p;
    q.continue_final = false;
    q.add_generation_prompt = true;
    char *h = NULL;
    size_t hl = 0;
    int rc = !head || json_array_size(head) + 1 != n || tail.oom
                 ? cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory")
                 : cs_chat_render_json(&q, head, &h, &hl, starts_with_bos, err, errlen);
    json_decref(head);
    if (rc == CLSPEC_OK) {
        struct cs_strbuf b = {0};
        cs_strbuf_put_n(&b, h, hl);
        cs_strbuf_put_n(&b, tail.p ? tail.p : "", tail.len);
        free(h);
        if (cs_strbuf_take(&b, out, out_len) != CLSPEC_OK)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    }
    cs_strbuf_free(&tail);
    return rc;
}

int cs_chat_render_json(const struct cs_chat_params *p, const json_t *messages, char **out, size_t *out_len,
                        bool *starts_with_bos, char *err, size_t errlen)
{
    if (!p || !out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: no parameters or output");
    *out = NULL;
    if (!json_is_array(messages))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "chat template: messages must be a JSON array");
    size_t n = json_array_size(messages);
    const json_t *last_role = n ? json_object_get(json_array_get(messages, n - 1), "role") : NULL;
    if (p->continue_final && json_is_string(last_role) && strcmp(json_string_value(last_role), "assistant") == 0)
        return render_continued_json(p, messages, out, out_len, starts_with_bos, err, errlen);
    if (p->family == CS_CHAT_JINJA)
        return render_jinja(p, messages, out, out_len, starts_with_bos, err, errlen);
    return render_family_json(p, messages, out, out_len, starts_with_bos, err, errlen);
}

int cs_chat_jinja_render_msgs(const struct cs_chat_params *p, const struct cs_chat_msg *msgs, size_t n,
                              char **out, size_t *out_len, bool *starts_with_bos, char *err, size_t errlen)
{
    json_t *arr = json_array();
    int rc = arr ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    for (size_t i = 0; rc == CLSPEC_OK && i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "message %zu: no role or content", i);
            break;
        }
        if (json_array_append_new(arr, json_pack("{s:s, s:s}", "role", msgs[i].role, "content", msgs[i].content)))
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "chat template: out of memory");
    }
    if (rc == CLSPEC_OK)
        rc = render_jinja(p, arr, out, out_len, starts_with_bos, err, errlen);
    json_decref(arr);
    return rc;
}
