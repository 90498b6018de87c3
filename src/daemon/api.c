/* api.c: see api.h: parsing the requests (the answers' JSON is api_json.c). */
#include "config.h"

#include "daemon/api.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"
#include "base/rng.h"
#include "base/strbuf.h"
#include "engine/json_schema.h"
#include "text/reasoning.h"

/* ---------------------------------------------------------------- parsing */

#define FAIL(p, ...)                                                                                             \
    do {                                                                                                         \
        *param = (p);                                                                                            \
        return cs_err(err, errlen, CLSPEC_E_INVAL, __VA_ARGS__);                                                 \
    } while (0)

/* A field that is absent or JSON null. */
static json_t *field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_null(v) ? NULL : v;
}

/* A number field within [lo, hi]; lo_open / hi_open exclude that bound (the
 * sampler needs top_p > 0 and min_p < 1). The message states the range as
 * docs/api.md does. */
static int get_num(json_t *o, const char *k, double lo, bool lo_open, double hi, bool hi_open, float *out,
                   const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, k);
    if (!v)
        return CLSPEC_OK;
    if (!json_is_number(v))
        FAIL(k, "'%s' must be a number", k);
    double x = json_number_value(v);
    float f = (float)x;
    bool ok = (lo_open ? x > lo && f > (float)lo : x >= lo) && (hi_open ? x < hi && f < (float)hi : x <= hi);
    if (!ok)
        FAIL(k, "'%s' is %g; it must be %s %g and %s %g", k, x, lo_open ? "greater than" : "at least", lo,
             hi_open ? "less than" : "at most", hi);
    *out = f;
    return CLSPEC_OK;
}

static int get_int(json_t *o, const char *k, long long lo, long long hi, long long *out, bool *set,
                   const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, k);
    if (!v)
        return CLSPEC_OK;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        FAIL(k, "'%s' must be an integer", k);
    }
    if (x < lo || x > hi) {
        if (hi == lo)
            FAIL(k, "'%s' is %lld; only %lld is supported", k, x, lo);
        FAIL(k, "'%s' is %lld; it must be between %lld and %lld", k, x, lo, hi);
    }
    *out = x;
    if (set)
        *set = true;
    return CLSPEC_OK;
}

static int get_bool(json_t *o, const char *k, bool *out, const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, k);
    if (!v)
        return CLSPEC_OK;
    if (!json_is_boolean(v))
        FAIL(k, "'%s' must be true or false", k);
    *out = json_is_true(v);
    return CLSPEC_OK;
}

/* n_vocab 0: not known here (the scheduler checks the upper bound). */
/* {"prompt_string": "... <__media__> ...", "multimodal_data": ["<base64>", ...]} */
static int parse_prompt_object(json_t *v, struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *ps = json_object_get(v, "prompt_string"), *md = json_object_get(v, "multimodal_data");
    if (!json_is_string(ps))
        FAIL("prompt", "a prompt object needs \"prompt_string\" (a string)");
    r->prompt = json_string_value(ps);
    r->prompt_len = json_string_length(ps);
    if (!md)
        return CLSPEC_OK;
    if (!json_is_array(md) || json_array_size(md) > CS_MEDIA_MAX)
        FAIL("prompt", "prompt.multimodal_data must be an array of at most %d base64 strings", CS_MEDIA_MAX);
    size_t k;
    json_t *x;
    json_array_foreach(md, k, x)
    {
        if (!json_is_string(x))
            FAIL("prompt", "prompt.multimodal_data[%zu] must be a base64 string", k);
        r->media[r->n_media++] = (struct cs_media_ref){json_string_value(x), json_string_length(x), false};
    }
    return CLSPEC_OK;
}

/* An image_url content part: its URL recorded, the marker in the text. */
static int add_image_part(json_t *part, size_t i, size_t k, struct cs_api_request *r, struct cs_strbuf *b,
                          const char **param, char *err, size_t errlen)
{
    json_t *u = json_object_get(part, "image_url");
    if (json_is_object(u))
        u = json_object_get(u, "url");
    if (!json_is_string(u))
        FAIL("messages", "messages[%zu].content[%zu]: an image_url part needs image_url.url (a string)", i, k);
    if (r->n_media >= CS_MEDIA_MAX)
        FAIL("messages", "more than %d images in one request", CS_MEDIA_MAX);
    r->media[r->n_media++] = (struct cs_media_ref){json_string_value(u), json_string_length(u), true};
    cs_strbuf_put(b, CS_MEDIA_MARKER);
    return CLSPEC_OK;
}

static int parse_prompt(json_t *o, int32_t n_vocab, struct cs_api_request *r, const char **param, char *err,
                        size_t errlen)
{
    json_t *v = field(o, "prompt");
    if (!v)
        FAIL("prompt", "'prompt' is required");
    if (json_is_object(v)) /* llama-server's multimodal prompt object */
        return parse_prompt_object(v, r, param, err, errlen);
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
        v = json_array_get(v, 0);
    if (json_is_string(v)) {
        r->prompt = json_string_value(v);
        r->prompt_len = json_string_length(v);
        return CLSPEC_OK;
    }
    if (!json_is_array(v))
        FAIL("prompt", "'prompt' must be a string or an array of token ids");
    size_t n = json_array_size(v);
    if (n == 0)
        FAIL("prompt", "'prompt' is empty");
    if (!json_is_integer(json_array_get(v, 0)))
        FAIL("prompt", "'prompt' must be one string or an array of token ids (one prompt per request)");
    if (n > (1u << 24))
        FAIL("prompt", "'prompt' has too many tokens");
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i);
        long long id = json_is_integer(t) ? (long long)json_integer_value(t) : -1;
        if (!json_is_integer(t) || id < 0 || id > INT32_MAX || (n_vocab > 0 && id >= n_vocab)) {
            char range[48];
            if (n_vocab > 0)
                snprintf(range, sizeof range, "0..%d (n_vocab %d)", (int)n_vocab - 1, (int)n_vocab);
            else
                snprintf(range, sizeof range, "0..n_vocab-1");
            if (!json_is_integer(t))
                FAIL("prompt", "prompt[%zu] is not an integer: token ids are %s", i, range);
            FAIL("prompt", "prompt[%zu] = %lld: token ids are %s", i, id, range);
        }
        r->prompt_ids[i] = (int32_t)json_integer_value(t);
    }
    r->n_prompt_ids = (int)n;
    return CLSPEC_OK;
}

static int parse_messages(json_t *o, struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, "messages");
    if (!v)
        FAIL("messages", "'messages' is required");
    if (!json_is_array(v) || json_array_size(v) == 0)
        FAIL("messages", "'messages' must be a non-empty array of {role, content}");
    size_t n = json_array_size(v);
    r->msgs = calloc(n, sizeof *r->msgs);
    r->msg_text = calloc(n, sizeof *r->msg_text);
    if (!r->msgs || !r->msg_text)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    r->n_msgs = n;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m))
            FAIL("messages", "messages[%zu] must be an object {role, content}", i);
        json_t *role = field(m, "role");
        if (!json_is_string(role))
            FAIL("messages", "messages[%zu].role must be a string", i);
        const char *rs = json_string_value(role);
        if (strcmp(rs, "developer") == 0)
            rs = "system"; /* OpenAI's newer name for the system role */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
            FAIL("messages", "messages[%zu].role '%s' is not system, user, assistant or tool", i, rs);
        r->msgs[i].role = rs;
        json_t *c = field(m, "content"); /* null: "" (an assistant turn with tool_calls) */
        if (!c) {
            r->msgs[i].content = "";
        } else if (json_is_string(c)) {
            r->msgs[i].content = json_string_value(c);
            if (strlen(r->msgs[i].content) != json_string_length(c))
                FAIL("messages", "messages[%zu].content holds a NUL character", i);
        } else if (json_is_array(c)) {
            struct cs_strbuf b = {0};
            size_t k;
            json_t *part;
            bool after_text = false; /* the part before was text: a new text part starts a line */
            json_array_foreach(c, k, part)
            {
                json_t *t = json_object_get(part, "type"), *tx = json_object_get(part, "text");
                if (json_is_string(t) && strcmp(json_string_value(t), "image_url") == 0) {
                    int rc = add_image_part(part, i, k, r, &b, param, err, errlen);
                    if (rc < 0) {
                        cs_strbuf_free(&b);
                        return rc;
                    }
                    after_text = false; /* no line break beside an image's marker */
                    continue;
                }
                if (!json_is_string(t) || strcmp(json_string_value(t), "text") || !json_is_string(tx)) {
                    cs_strbuf_free(&b);
                    FAIL("messages", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} and "
                         "{\"type\": \"image_url\", \"image_url\": {\"url\": ...}} parts are supported", i, k);
                }
                /* text parts joined as llama-server joins them: a line break between two (a blank line in
                 * the assistant message that is continued, chat.h) */
                if (after_text)
                    cs_strbuf_put(&b, cs_chat_part_sep(i + 1 == n && !strcmp(rs, "assistant")));
                cs_strbuf_put(&b, json_string_value(tx));
                after_text = true;
            }
            if (cs_strbuf_take(&b, &r->msg_text[i], NULL))
                return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
            r->msgs[i].content = r->msg_text[i];
        } else {
            FAIL("messages", "messages[%zu].content must be a string or an array of text parts", i);
        }
    }
    return CLSPEC_OK;
}

static int parse_stop(json_t *o, struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, "stop");
    if (!v)
        return CLSPEC_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            FAIL("stop", "'stop' must not be empty");
        r->stop[r->n_stop++] = json_string_value(v);
        return CLSPEC_OK;
    }
    if (!json_is_array(v))
        FAIL("stop", "'stop' must be a string or an array of strings");
    if (json_array_size(v) > CS_MAX_STOP)
        FAIL("stop", "'stop' has %zu strings; at most %d", json_array_size(v), CS_MAX_STOP);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            strlen(json_string_value(s)) != json_string_length(s))
            FAIL("stop", "stop[%zu] must be a non-empty string", i);
        r->stop[r->n_stop++] = json_string_value(s);
    }
    return CLSPEC_OK;
}

/* logit_bias: {"token id or text": bias, ...} (OpenAI's form; llama-server
 * reads a key that is a whole number as a token id) or llama-server's
 * [[id or text, bias], ...]; a bias is a number or false (never). Checked
 * here, kept in r->logit_bias; cs_llama_logit_bias turns it into ids. */
static int check_logit_bias(json_t *o, struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, "logit_bias"), *b;
    if (!v)
        return CLSPEC_OK;
    if (json_is_object(v)) {
        const char *k;
        json_object_foreach(v, k, b)
        {
            if (!json_is_number(b) && !json_is_false(b))
                FAIL("logit_bias", "logit_bias[\"%s\"] must be a number or false (never)", k);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            json_t *k = json_array_get(e, 0);
            b = json_array_get(e, 1);
            if (!json_is_array(e) || json_array_size(e) != 2 || !(json_is_integer(k) || json_is_string(k)) ||
                !(json_is_number(b) || json_is_false(b)))
                FAIL("logit_bias", "logit_bias[%zu] must be [token id or text, bias] with a number or false as bias",
                     i);
        }
    } else {
        FAIL("logit_bias", "'logit_bias' must be an object {\"token id or text\": bias} or a list [[token, bias], ...]");
    }
    r->logit_bias = v;
    return CLSPEC_OK;
}

/* tools, tool_choice, parallel_tool_calls, chat_template_kwargs, reasoning_format (chat) */
static int parse_tools(json_t *o, struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *v;
    r->parallel_tool_calls = true;
    r->reasoning_format = -1;
    if ((v = field(o, "tools"))) {
        if (!json_is_array(v))
            FAIL("tools", "'tools' must be an array of {\"type\": \"function\", \"function\": {\"name\", ...}}");
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t) {
            json_t *ty = json_object_get(t, "type"), *fn = json_object_get(t, "function");
            if (!json_is_string(ty) || strcmp(json_string_value(ty), "function") ||
                !json_is_string(json_object_get(fn, "name")))
                FAIL("tools", "tools[%zu] must be {\"type\": \"function\", \"function\": {\"name\": ..., "
                     "\"parameters\": ...}}", i);
        }
        if (json_array_size(v))
            r->tools = v;
    }
    if ((v = field(o, "tool_choice"))) { /* "required" and a named function: the daemon builds the grammar */
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        json_t *fn = json_is_object(v) ? json_object_get(v, "function") : NULL;
        const char *ty = json_string_value(json_object_get(v, "type"));
        if (s && !strcmp(s, "none"))
            r->tools = NULL; /* the model is not offered any */
        else if (s && !strcmp(s, "required"))
            r->tool_forced = true;
        else if (fn && ty && !strcmp(ty, "function") && json_is_string(json_object_get(fn, "name")))
            r->tool_only = json_string_value(json_object_get(fn, "name"));
        else if (!(s && !strcmp(s, "auto")))
            FAIL("tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", "
                 "\"function\": {\"name\": ...}}");
        r->tool_forced |= r->tool_only != NULL;
        if (r->tool_forced && !r->tools)
            FAIL("tool_choice", "'tool_choice' %s needs a non-empty 'tools'", s ? "\"required\"" : "naming a function");
        if (r->tool_forced && r->grammar)
            FAIL("tool_choice", "'tool_choice' %s forces the call through a grammar of its own; leave out 'grammar', "
                 "'json_schema' and 'response_format'", s ? "\"required\"" : "naming a function");
        size_t i;
        json_t *t;
        bool found = !r->tool_only;
        json_array_foreach(r->tools, i, t) {
            const char *name = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
            found |= r->tool_only && !strcmp(r->tool_only, name);
        }
        if (!found)
            FAIL("tool_choice", "'tool_choice' names the function \"%s\", which is not among 'tools'", r->tool_only);
    }
    if ((v = field(o, "parallel_tool_calls"))) {
        if (!json_is_boolean(v))
            FAIL("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
        r->parallel_tool_calls = json_is_true(v);
    }
    if ((v = field(o, "chat_template_kwargs"))) {
        if (!json_is_object(v))
            FAIL("chat_template_kwargs", "'chat_template_kwargs' must be an object (e.g. {\"enable_thinking\": false})");
        r->template_kwargs = v;
    }
    if ((v = field(o, "reasoning_format"))) {
        enum cs_reasoning_format f;
        if (!json_is_string(v) || cs_reasoning_format_parse(json_string_value(v), &f, err, errlen) != CLSPEC_OK)
            FAIL("reasoning_format", "'reasoning_format' must be \"none\", \"deepseek\", \"deepseek-legacy\" or \"auto\"");
        r->reasoning_format = (int)f;
    }
    return CLSPEC_OK;
}

/* Constrained output: "grammar" (GBNF text), "json_schema" (a schema), or
 * "response_format" {"type": "text" | "json_object" | "json_schema"} with
 * the schema in "json_schema": {"schema": ...} or (llama-server) "schema";
 * json_object may carry a "schema" too. At most one of the three. The
 * grammar is compiled here so that a bad one is a 400 naming line:column
 * (GBNF) or the JSON pointer (schema). */
static int parse_grammar(json_t *o, struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *g = field(o, "grammar"), *js = field(o, "json_schema"), *rf = field(o, "response_format"), *schema = NULL;
    const char *who = g ? "grammar" : js ? "json_schema" : "response_format";
    if (rf) {
        json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        const char *tn = json_is_string(t) ? json_string_value(t) : "";
        if (strcmp(tn, "text") == 0) {
            rf = NULL;
        } else if (strcmp(tn, "json_object") == 0) {
            schema = json_object_get(rf, "schema");
        } else if (strcmp(tn, "json_schema") == 0) {
            json_t *w = json_object_get(rf, "json_schema");
            schema = json_is_object(w) && json_object_get(w, "schema") ? json_object_get(w, "schema")
                                                                         : json_object_get(rf, "schema");
            if (!schema)
                FAIL("response_format", "response_format json_schema needs \"json_schema\": {\"schema\": {...}}");
        } else {
            FAIL("response_format", "response_format.type must be \"text\", \"json_object\" or \"json_schema\"");
        }
    }
    if ((g != NULL) + (js != NULL) + (rf != NULL) > 1)
        FAIL(who, "give only one of 'grammar', 'json_schema' and 'response_format'");
    if (js)
        schema = js;
    int rc = CLSPEC_OK;
    if (g) {
        if (!json_is_string(g) || strlen(json_string_value(g)) != json_string_length(g))
            FAIL("grammar", "'grammar' must be a string of GBNF rules (no NUL)");
        if (json_string_length(g) == 0)
            return CLSPEC_OK;
        if (!(r->grammar = strdup(json_string_value(g))))
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    } else if (schema) {
        size_t n = 0;
        rc = cs_json_schema_gbnf(schema, &r->grammar, &n, err, errlen);
    } else if (rf) {
        if (!(r->grammar = strdup(cs_json_object_gbnf())))
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    if (rc == CLSPEC_OK && r->grammar)
        rc = clspec_grammar_check(r->grammar, NULL, err, errlen);
    if (rc < 0) {
        *param = who;
        return rc == CLSPEC_E_NOMEM ? rc : CLSPEC_E_INVAL;
    }
    return CLSPEC_OK;
}

/* A number too large for jansson's int64 as the value of "seed" is replaced
 * in (a copy of) the body by this string, padded with spaces to the
 * number's length so that line/column of later errors stay right, and kept
 * aside; parse_seed takes the kept value when the top-level "seed" is this
 * string. Without a replacement the string is refused like any string. */
#define BIG_SEED_MARK "\"\\u0001seed\""

/* The seed: the request's (0..2^64-1), the server's [sampling] seed when it
 * is not 0, otherwise a fresh one (cs_api_fresh_seed). */
static int parse_seed(json_t *o, const uint64_t *big_seed, const struct cs_api_defaults *d,
                      struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    json_t *v = field(o, "seed");
    if (!v) {
        r->sp.seed = d->sp.seed ? d->sp.seed : cs_api_fresh_seed();
        return CLSPEC_OK;
    }
    if (big_seed && json_is_string(v) && json_string_length(v) == 5 &&
        memcmp(json_string_value(v), "\001seed", 5) == 0) {
        r->sp.seed = *big_seed;
    } else if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            FAIL("seed", "'seed' is %lld; it must be between 0 and %llu", (long long)json_integer_value(v),
                 (unsigned long long)UINT64_MAX);
        r->sp.seed = (uint64_t)json_integer_value(v);
    } else {
        FAIL("seed", "'seed' must be an integer (0..%llu)", (unsigned long long)UINT64_MAX);
    }
    r->seed_given = true;
    return CLSPEC_OK;
}

/* Fresh seeds: getrandom(2), or (when it fails) a process-wide counter mixed
 * with the clock and the process id through splitmix64. Below 2^53 so that
 * clients that read JSON numbers as doubles (JavaScript) can send it back
 * unchanged. */
uint64_t cs_api_fresh_seed(void)
{
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        static _Atomic uint64_t counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = atomic_fetch_add(&counter, 1) + ((uint64_t)ts.tv_sec << 30) + (uint64_t)ts.tv_nsec +
            ((uint64_t)getpid() << 48);
        x = cs_splitmix64(&x);
    }
    return x & ((1ull << 53) - 1);
}

static int parse_fields(enum cs_api_kind kind, json_t *o, const uint64_t *big_seed, const struct cs_api_defaults *d,
                        struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    int rc;
#define TRY(x)                                                                                                   \
    do {                                                                                                         \
        if ((rc = (x)) != CLSPEC_OK)                                                                             \
            return rc;                                                                                           \
    } while (0)
    if (kind == CS_API_COMPLETION) {
        TRY(parse_prompt(o, d->n_vocab, r, param, err, errlen));
        bool echo = false;
        TRY(get_bool(o, "echo", &echo, param, err, errlen));
        if (echo)
            FAIL("echo", "'echo' is not supported");
        json_t *sfx = field(o, "suffix");
        if (sfx && (!json_is_string(sfx) || json_string_length(sfx) > 0))
            FAIL("suffix", "'suffix' is not supported");
    } else {
        TRY(parse_messages(o, r, param, err, errlen));
    }
    TRY(check_logit_bias(o, r, param, err, errlen));
    TRY(parse_grammar(o, r, param, err, errlen));
    if (kind == CS_API_CHAT) {
        TRY(parse_tools(o, r, param, err, errlen));
        r->messages = field(o, "messages");
        size_t nm = json_array_size(r->messages);
        const char *r1 = nm >= 2 ? json_string_value(json_object_get(json_array_get(r->messages, nm - 1), "role")) : NULL;
        const char *r2 = nm >= 2 ? json_string_value(json_object_get(json_array_get(r->messages, nm - 2), "role")) : NULL;
        if (r1 && r2 && !strcmp(r1, "assistant") && !strcmp(r2, "assistant")) /* as llama-server */
            FAIL("messages", "cannot have 2 or more assistant messages at the end of the list");
        json_t *cfm = field(o, "continue_final_message"), *agp = field(o, "add_generation_prompt");
        if (cfm && !json_is_boolean(cfm))
            FAIL("continue_final_message", "'continue_final_message' must be true or false");
        if (json_is_true(cfm) && !json_is_false(agp))
            FAIL("continue_final_message", "'continue_final_message' and 'add_generation_prompt' cannot both be true");
        const char *rl = nm ? json_string_value(json_object_get(json_array_get(r->messages, nm - 1), "role")) : NULL;
        if (json_is_true(cfm) && !(rl && !strcmp(rl, "assistant"))) /* a final assistant message is continued */
            FAIL("continue_final_message", "'continue_final_message' needs a final assistant message to continue");
        if (d->thinking_off && !(r->template_kwargs && json_object_get(r->template_kwargs, "enable_thinking"))) {
            json_t *kw = r->template_kwargs ? r->template_kwargs : json_object(); /* [model] reasoning = off */
            if (!kw || json_object_set_new(kw, "enable_thinking", json_false()) ||
                (!r->template_kwargs && json_object_set_new(o, "chat_template_kwargs", kw)))
                return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
            r->template_kwargs = kw;
        }
    }
    json_t *model = field(o, "model");
    if (model && !json_is_string(model))
        FAIL("model", "'model' must be a string");
    long long x = 0;
    bool set = false;
    /* the upper bound is the server's max_tokens_limit, which the scheduler checks and states */
    TRY(get_int(o, "max_tokens", 1, INT32_MAX, &x, &set, param, err, errlen));
    if (kind == CS_API_CHAT)
        TRY(get_int(o, "max_completion_tokens", 1, INT32_MAX, &x, &set, param, err, errlen));
    if (set)
        r->max_tokens = (int)x;
    x = 1;
    TRY(get_int(o, "n", 1, 1, &x, NULL, param, err, errlen)); /* 2..16 unstreamed: http.c runs n choices side by side */
    /* the ranges docs/api.md states: keep both in step */
    TRY(get_num(o, "temperature", 0, false, 100, false, &r->sp.temp, param, err, errlen));
    TRY(get_num(o, "top_p", 0, true, 1, false, &r->sp.top_p, param, err, errlen));
    TRY(get_num(o, "min_p", 0, false, 1, true, &r->sp.min_p, param, err, errlen));
    TRY(get_num(o, "presence_penalty", -2, false, 2, false, &r->sp.presence_penalty, param, err, errlen));
    TRY(get_num(o, "frequency_penalty", -2, false, 2, false, &r->sp.freq_penalty, param, err, errlen));
    TRY(get_num(o, "repeat_penalty", 0.01, false, 10, false, &r->sp.repeat_penalty, param, err, errlen));
    x = r->sp.top_k;
    TRY(get_int(o, "top_k", 0, 1 << 30, &x, NULL, param, err, errlen));
    r->sp.top_k = (int32_t)x;
    TRY(parse_seed(o, big_seed, d, r, param, err, errlen));
    TRY(parse_stop(o, r, param, err, errlen));
    json_t *lp = field(o, "logprobs");
    if (kind == CS_API_COMPLETION) {
        if (lp) {
            if (!json_is_integer(lp))
                FAIL("logprobs", "'logprobs' must be an integer (alternatives per token, 0..%d)",
                     CS_MAX_TOP_LOGPROBS);
            x = 0;
            TRY(get_int(o, "logprobs", 0, CS_MAX_TOP_LOGPROBS, &x, NULL, param, err, errlen));
            r->logprobs = true;
            r->top_logprobs = (int)x;
        }
    } else {
        TRY(get_bool(o, "logprobs", &r->logprobs, param, err, errlen));
        x = 0;
        set = false;
        TRY(get_int(o, "top_logprobs", 0, CS_MAX_TOP_LOGPROBS, &x, &set, param, err, errlen));
        if (set && !r->logprobs && x > 0)
            FAIL("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        r->top_logprobs = (int)x;
    }
    TRY(get_bool(o, "stream", &r->stream, param, err, errlen));
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so))
            FAIL("stream_options", "'stream_options' must be an object");
        TRY(get_bool(so, "include_usage", &r->include_usage, param, err, errlen));
    }
    TRY(get_bool(o, "speculative", &r->speculative, param, err, errlen));
    x = 0; /* llama-server's name: this request's cap on the draft length (0 = the server's n_max) */
    set = false;
    TRY(get_int(o, "speculative.n_max", 0, 64, &x, &set, param, err, errlen));
    r->spec_n_max = (int)x;
    TRY(get_bool(o, "ignore_eos", &r->ignore_eos, param, err, errlen));
    TRY(get_bool(o, "return_progress", &r->return_progress, param, err, errlen));
#undef TRY
    return CLSPEC_OK;
}

/* Names of the fields whose numbers an overflow message can blame (param
 * must outlive the body). */
static const char *const NUM_FIELDS[] = {"max_tokens", "max_completion_tokens", "n", "temperature", "top_p",
                                         "min_p", "top_k", "presence_penalty", "frequency_penalty",
                                         "repeat_penalty", "seed", "logprobs", "top_logprobs", "prompt", "tokens"};

/* jansson refused a number that does not fit an int64 or a double; it ends
 * at body[je->position). A whole number 2^63..2^64-1 as the value of "seed"
 * is replaced in body (same length, see BIG_SEED_MARK) and kept in
 * *big_seed: returns 1 (parse again). Otherwise a message that names the
 * field (the key before the number, or the array's key for an element), the
 * number and where it is: CLSPEC_E_INVAL. */
static int number_overflow(char *body, size_t len, const json_error_t *je, uint64_t *big_seed, const char **param,
                           char *err, size_t errlen)
{
#define NUMBER_CHAR(c) ((c) != '\0' && strchr("0123456789+-.eE", (c)) != NULL)
    size_t end = je->position >= 0 && (size_t)je->position <= len ? (size_t)je->position : len, start = end;
    while (start > 0 && NUMBER_CHAR(body[start - 1]))
        start--;
    /* the key: "name" : NUMBER, or "name" : [ ..., NUMBER (an array of numbers: depth 1) */
    size_t k = start;
    int depth = 0;
    while (k > 0 && (isspace((unsigned char)body[k - 1]) ||
                     (depth == 0 && (body[k - 1] == ',' || body[k - 1] == '[' || NUMBER_CHAR(body[k - 1]))))) {
        if (body[k - 1] == '[')
            depth = 1;
        k--;
    }
#undef NUMBER_CHAR
    char key[32] = "";
    if (k > 0 && body[k - 1] == ':') {
        k--;
        while (k > 0 && isspace((unsigned char)body[k - 1]))
            k--;
        if (k > 1 && body[k - 1] == '"') {
            size_t q = k - 1;
            while (q > 0 && body[q - 1] != '"' && k - q < sizeof key)
                q--;
            if (q > 0 && body[q - 1] == '"' && k - 1 - q < sizeof key)
                snprintf(key, sizeof key, "%.*s", (int)(k - 1 - q), body + q);
        }
    }
    const char *name = NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(NUM_FIELDS); i++)
        if (strcmp(key, NUM_FIELDS[i]) == 0)
            name = NUM_FIELDS[i];
    int n = (int)(end - start);
    if (name && strcmp(name, "seed") == 0 && depth == 0 && n >= (int)strlen(BIG_SEED_MARK) && body[start] != '-') {
        char num[32];
        snprintf(num, sizeof num, "%.*s", n, body + start);
        char *e;
        errno = 0;
        unsigned long long x = strtoull(num, &e, 10);
        if (errno == 0 && *e == '\0' && n < (int)sizeof num) {
            *big_seed = x;
            memset(body + start, ' ', (size_t)n);
            memcpy(body + start, BIG_SEED_MARK, strlen(BIG_SEED_MARK));
            return 1;
        }
    }
    *param = name;
    if (key[0])
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "'%s'%s %.*s%s: the number is out of range%s (line %d, column %d)", key,
                      depth ? " holds" : " is", CS_MIN(n, 40), body + start, n > 40 ? "..." : "",
                      strcmp(key, "seed") == 0 ? " (seeds are 0..18446744073709551615)" : "", je->line, je->column);
    return cs_err(err, errlen, CLSPEC_E_INVAL, "the number %.*s%s at line %d, column %d is out of range",
                  CS_MIN(n, 40), body + start, n > 40 ? "..." : "", je->line, je->column);
}

int cs_api_parse(enum cs_api_kind kind, const char *body, size_t len, const struct cs_api_defaults *d,
                 struct cs_api_request *r, const char **param, char *err, size_t errlen)
{
    const char *dummy;
    if (!param)
        param = &dummy;
    *param = NULL;
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->sp = d->sp;
    r->speculative = true;
    json_error_t je;
    char *copy = NULL; /* the body with big seeds replaced */
    uint64_t big = 0;
    bool have_big = false;
    r->root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    for (int tries = 0; !r->root && json_error_code(&je) == json_error_numeric_overflow && tries < 8; tries++) {
        if (!copy && !(copy = malloc(len ? len : 1)))
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        if (tries == 0)
            memcpy(copy, body, len);
        int rc = number_overflow(copy, len, &je, &big, param, err, errlen);
        if (rc != 1) {
            free(copy);
            return rc;
        }
        have_big = true;
        r->root = json_loadb(copy, len, JSON_REJECT_DUPLICATES, &je);
    }
    free(copy);
    if (!r->root)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "the body is not valid JSON: %s (line %d, column %d)", je.text,
                      je.line, je.column);
    if (!json_is_object(r->root)) {
        cs_api_request_free(r);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "the body must be a JSON object");
    }
    int rc = parse_fields(kind, r->root, have_big ? &big : NULL, d, r, param, err, errlen);
    if (rc != CLSPEC_OK) {
        cs_api_request_free(r);
        r->kind = kind;
    }
    return rc;
}

void cs_api_request_free(struct cs_api_request *r)
{
    if (!r)
        return;
    free(r->prompt_ids);
    for (size_t i = 0; r->msg_text && i < r->n_msgs; i++)
        free(r->msg_text[i]);
    free(r->msg_text);
    free(r->msgs);
    free(r->grammar);
    free(r->bias_id);
    free(r->bias);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- tokenize, detokenize */

/* A JSON object body for the llama-server routes; a number jansson cannot
 * hold is named as in cs_api_parse. */
static int load_object(const char *body, size_t len, json_t **root, const char **param, char *err, size_t errlen)
{
    json_error_t je;
    *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!*root && json_error_code(&je) == json_error_numeric_overflow && len) {
        char *copy = malloc(len);
        if (!copy)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        memcpy(copy, body, len);
        uint64_t big = 0;
        int rc = number_overflow(copy, len, &je, &big, param, err, errlen);
        free(copy);
        if (rc != 1) /* 1: a big "seed", which these routes do not read */
            return rc;
    }
    if (!*root)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "the body is not valid JSON: %s (line %d, column %d)", je.text,
                      je.line, je.column);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "the body must be a JSON object");
    }
    return CLSPEC_OK;
}

int cs_api_parse_tokenize(const char *body, size_t len, struct cs_api_tokenize *t, const char **param, char *err,
                          size_t errlen)
{
    const char *dummy;
    if (!param)
        param = &dummy;
    *param = NULL;
    memset(t, 0, sizeof *t);
    t->parse_special = true;
    json_t *root;
    int rc = load_object(body, len, &root, param, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    json_t *c = field(root, "content");
    if (!c) {
        *param = "content";
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "'content' is required");
    } else if (!json_is_string(c)) {
        *param = "content";
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "'content' must be a string");
    }
    if (rc == CLSPEC_OK)
        rc = get_bool(root, "add_special", &t->add_special, param, err, errlen);
    if (rc == CLSPEC_OK)
        rc = get_bool(root, "parse_special", &t->parse_special, param, err, errlen);
    if (rc == CLSPEC_OK)
        rc = get_bool(root, "with_pieces", &t->with_pieces, param, err, errlen);
    if (rc != CLSPEC_OK) {
        json_decref(root);
        memset(t, 0, sizeof *t);
        return rc;
    }
    t->content = json_string_value(c);
    t->len = json_string_length(c);
    t->root = root;
    return CLSPEC_OK;
}

int cs_api_parse_detokenize(const char *body, size_t len, int32_t n_vocab, int32_t **ids, size_t *n,
                            const char **param, char *err, size_t errlen)
{
    const char *dummy;
    if (!param)
        param = &dummy;
    *param = NULL;
    *ids = NULL;
    *n = 0;
    json_t *root;
    int rc = load_object(body, len, &root, param, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    json_t *v = field(root, "tokens");
    size_t cnt = json_is_array(v) ? json_array_size(v) : 0;
    if (!v) {
        *param = "tokens";
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "'tokens' is required");
    } else if (!json_is_array(v)) {
        *param = "tokens";
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "'tokens' must be an array of token ids");
    } else if (cnt > (1u << 24)) {
        *param = "tokens";
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "'tokens' has too many ids");
    } else if (cnt && !(*ids = malloc(cnt * sizeof **ids))) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == CLSPEC_OK && i < cnt; i++) {
        json_t *t = json_array_get(v, i);
        long long id = json_is_integer(t) ? (long long)json_integer_value(t) : -1;
        if (json_is_integer(t) && id >= 0 && id < n_vocab) {
            (*ids)[i] = (int32_t)id;
            continue;
        }
        *param = "tokens";
        if (!json_is_integer(t))
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "tokens[%zu] is not an integer: token ids are 0..%d (n_vocab %d)",
                        i, (int)n_vocab - 1, (int)n_vocab);
        else
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "tokens[%zu] = %lld: token ids are 0..%d (n_vocab %d)", i, id,
                        (int)n_vocab - 1, (int)n_vocab);
    }
    json_decref(root);
    if (rc != CLSPEC_OK) {
        free(*ids);
        *ids = NULL;
        return rc;
    }
    *n = cnt;
    return CLSPEC_OK;
}
