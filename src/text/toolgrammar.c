/* toolgrammar.c: GBNF that forces a tool call (see toolgrammar.h). Each
 * allowed tool's parameters schema becomes a grammar of its own through
 * json_schema.c; its rules are renamed with a per-tool prefix ("s3-root")
 * so that several live in one grammar beside the format's wrapper rules. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "text/toolgrammar.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "engine/json_schema.h"
#include "text/unicode.h"

#define DS_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"

/* whether the template (may be NULL) contains needle */
static bool tmpl_has(const struct cs_tool_grammar_params *p, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; p->tmpl && i + k <= p->tmpl_len; i++)
        if (!memcmp(p->tmpl + i, needle, k))
            return true;
    return false;
}

/* A GBNF string literal of the NUL-terminated s, spaced from its neighbours. */
static void put_lit(struct cs_strbuf *b, const char *s)
{
    cs_strbuf_put(b, " ");
    cs_gbnf_put_literal(b, s, strlen(s));
    cs_strbuf_put(b, " ");
}

/* The JSON text of the string s, as a GBNF literal. */
static int put_json_str(struct cs_strbuf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!t)
        return CLSPEC_E_NOMEM;
    put_lit(b, t);
    free(t);
    return CLSPEC_OK;
}

static bool is_rule_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Appends the GBNF g with every rule name prefixed by pfx (literals,
 * character classes, repetition counts and comments left as they are). */
static void put_prefixed(struct cs_strbuf *b, const char *g, const char *pfx)
{
    for (const char *p = g; *p;) {
        const char *q = p;
        if (*p == '"' || *p == '[') {
            char close = *p == '"' ? '"' : ']';
            for (q = p + 1; *q && *q != close; q++)
                if (*q == '\\' && q[1])
                    q++;
            q += *q ? 1 : 0;
        } else if (*p == '{') {
            q = strchr(p, '}');
            q = q ? q + 1 : p + strlen(p);
        } else if (*p == '#') {
            q = strchr(p, '\n');
            q = q ? q : p + strlen(p);
        } else if (is_rule_char(*p)) {
            cs_strbuf_put(b, pfx);
            while (is_rule_char(*q))
                q++;
        } else {
            q = p + 1;
        }
        cs_strbuf_put_n(b, p, (size_t)(q - p));
        p = q;
    }
}

/* Names written raw (not as JSON strings) must not contain a format's delimiters. */
static bool plain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (; *s; s++)
        if (!is_rule_char(*s) && *s != '.')
            return false;
    return true;
}

struct tg {
    const struct cs_tool_grammar_params *p;
    struct cs_strbuf out;
    int n; /* tools taken */
    char *err;
    size_t errlen;
};

/* schema's grammar appended under the prefix pfx ("<pfx>root" its start) */
static int put_schema(struct tg *T, json_t *schema, const char *pfx, const char *what)
{
    char *g = NULL;
    size_t gl = 0;
    char e[400];
    int rc = cs_json_schema_gbnf(schema, &g, &gl, e, sizeof e);
    if (rc < 0)
        return cs_err(T->err, T->errlen, rc == CLSPEC_E_NOMEM ? rc : CLSPEC_E_INVAL, "%s: %s", what, e);
    put_prefixed(&T->out, g, pfx);
    free(g);
    return CLSPEC_OK;
}

/* qwen3-coder: one "<parameter=P>\nV\n</parameter>\n" per declared property, in order */
static int put_xml_params(struct tg *T, json_t *params, int k, const char *fname)
{
    json_t *props = json_object_get(params, "properties"), *req = json_object_get(params, "required");
    struct cs_strbuf rule = {0};
    cs_strbuf_printf(&rule, "x%d ::= \"\"", k);
    const char *pn;
    json_t *ps;
    int j = 0, rc = CLSPEC_OK;
    json_object_foreach(props, pn, ps) {
        if (!plain_name(pn)) {
            rc = cs_err(T->err, T->errlen, CLSPEC_E_INVAL,
                        "tools: %s: parameter name \"%s\" cannot be written in the qwen3-coder format", fname, pn);
            break;
        }
        json_t *sub = json_is_object(ps) ? json_copy(ps) : json_incref(ps); /* refs to the parameters' $defs resolve */
        const char *defs[] = {"$defs", "definitions"};
        for (int d = 0; d < 2 && json_is_object(sub); d++)
            if (json_object_get(params, defs[d]) && !json_object_get(sub, defs[d]))
                json_object_set(sub, defs[d], json_object_get(params, defs[d]));
        char pfx[32], what[300];
        snprintf(pfx, sizeof pfx, "p%d-%d-", k, j);
        snprintf(what, sizeof what, "tools: %s: parameter %s", fname, pn);
        rc = put_schema(T, sub, pfx, what);
        json_decref(sub);
        if (rc < 0)
            break;
        bool required = false;
        size_t i;
        json_t *r;
        json_array_foreach(req, i, r)
            required |= json_is_string(r) && !strcmp(json_string_value(r), pn);
        cs_strbuf_put(&rule, " (");
        struct cs_strbuf open = {0};
        cs_strbuf_printf(&open, "<parameter=%s>\n", pn);
        put_lit(&rule, open.p ? open.p : "");
        cs_strbuf_free(&open);
        cs_strbuf_printf(&rule, "p%d-%d-root", k, j);
        put_lit(&rule, "\n</parameter>\n");
        cs_strbuf_put(&rule, required ? ")" : ")?");
        j++;
    }
    if (rc == CLSPEC_OK)
        cs_strbuf_printf(&T->out, "%s\n", rule.p);
    cs_strbuf_free(&rule);
    return rc;
}

/* the rule "c<k>": one call of function fname (its parameters schema params) */
static int put_call(struct tg *T, int k, const char *fname, json_t *params)
{
    const struct cs_tool_grammar_params *p = T->p;
    enum cs_tool_format f = p->format;
    bool json_name = f == CS_TOOL_HERMES || f == CS_TOOL_LLAMA3 || f == CS_TOOL_COMMAND_R7B ||
                     (f == CS_TOOL_MISTRAL && !tmpl_has(p, "[ARGS]"));
    if (!json_name && !plain_name(fname))
        return cs_err(T->err, T->errlen, CLSPEC_E_INVAL,
                      "tools: function name \"%s\" cannot be written in the %s format (letters, digits, _ - . only)",
                      fname, cs_tool_format_name(f));
    char pfx[32], what[300];
    snprintf(pfx, sizeof pfx, "s%d-", k);
    snprintf(what, sizeof what, "tools: %s: parameters", fname);
    if (f == CS_TOOL_QWEN3_CODER) {
        CS_TRY(put_xml_params(T, params, k, fname));
    } else {
        /* no parameters, or an object schema declaring none ({"type": "object", "properties": {}}, as
         * clients send for functions without arguments): the arguments are {} */
        json_t *pr = json_object_get(params, "properties");
        bool none = !params || (json_object_size(params) <= 2 && json_is_object(pr) && json_object_size(pr) == 0 &&
                                (json_object_size(params) == 1 || json_object_get(params, "type")));
        json_t *empty = none ? json_pack("{s:s,s:b}", "type", "object", "additionalProperties", 0) : NULL;
        int rc = put_schema(T, empty ? empty : params, pfx, what);
        json_decref(empty);
        CS_TRY(rc);
    }
    struct cs_strbuf *b = &T->out;
    cs_strbuf_printf(b, "c%d ::=", k);
    int rc = CLSPEC_OK;
    switch (f) {
    case CS_TOOL_HERMES:
    case CS_TOOL_LLAMA3:
    case CS_TOOL_MISTRAL:
    case CS_TOOL_COMMAND_R7B:
        if (!json_name) { /* mistral [TOOL_CALLS]N[ARGS]{...} */
            put_lit(b, fname);
            put_lit(b, "[ARGS]");
            break;
        }
        put_lit(b, f == CS_TOOL_COMMAND_R7B ? "{\"tool_call_id\": \"" : "{\"name\": ");
        if (f == CS_TOOL_COMMAND_R7B) {
            cs_strbuf_put(b, "[0-9]{1,2}"); /* the call's number */
            put_lit(b, "\", \"tool_name\": ");
        }
        rc = put_json_str(b, fname);
        put_lit(b, f == CS_TOOL_HERMES || f == CS_TOOL_MISTRAL ? ", \"arguments\": " : ", \"parameters\": ");
        break;
    case CS_TOOL_QWEN3_CODER: {
        struct cs_strbuf o = {0};
        cs_strbuf_printf(&o, "<function=%s>\n", fname);
        put_lit(b, o.p ? o.p : "");
        cs_strbuf_free(&o);
        cs_strbuf_printf(b, "x%d", k);
        put_lit(b, "</function>\n");
        cs_strbuf_put(b, "\n");
        return CLSPEC_OK;
    }
    case CS_TOOL_DEEPSEEK:
        if (tmpl_has(p, "```json")) { /* R1/V3 */
            put_lit(b, DS_CALL_BEGIN "function" DS_SEP);
            put_lit(b, fname);
            put_lit(b, "\n```json\n");
            cs_strbuf_printf(b, "s%d-root", k);
            put_lit(b, "\n```" DS_CALL_END);
        } else { /* V3.1 */
            put_lit(b, DS_CALL_BEGIN);
            put_lit(b, fname);
            put_lit(b, DS_SEP);
            cs_strbuf_printf(b, "s%d-root", k);
            put_lit(b, DS_CALL_END);
        }
        cs_strbuf_put(b, "\n");
        return CLSPEC_OK;
    case CS_TOOL_FUNCTIONARY:
        put_lit(b, fname);
        put_lit(b, "\n");
        break;
    case CS_TOOL_FUNCTIONARY_V31:
        put_lit(b, "<function=");
        put_lit(b, fname);
        put_lit(b, ">");
        cs_strbuf_printf(b, "s%d-root", k);
        put_lit(b, "</function>");
        cs_strbuf_put(b, "\n");
        return CLSPEC_OK;
    default:
        return cs_err(T->err, T->errlen, CLSPEC_E_INVAL, "tool-call format %s has no grammar", cs_tool_format_name(f));
    }
    cs_strbuf_printf(b, "s%d-root", k);
    if (json_name)
        put_lit(b, "}");
    cs_strbuf_put(b, "\n");
    return rc;
}

#define MAX_MARKER 64 /* code points of a reasoning close marker */

/* KMP: code points of m matched after j matched and x seen */
static int marker_next(const uint32_t *m, int k, int j, uint32_t x)
{
    uint32_t s[MAX_MARKER + 1];
    memcpy(s, m, (size_t)j * sizeof *s);
    s[j] = x;
    for (int l = CS_MIN(j + 1, k); l > 0; l--)
        if (!memcmp(s + j + 1 - l, m, (size_t)l * sizeof *s))
            return l;
    return 0;
}

/* "r0": any text that does not contain the marker m (rule rJ: J code points of it matched) */
static int put_think(struct tg *T, const char *m)
{
    uint32_t cp[MAX_MARKER];
    int k = 0;
    for (size_t i = 0, n = strlen(m), l = 0; i < n; i += l) {
        if (k == MAX_MARKER)
            return cs_err(T->err, T->errlen, CLSPEC_E_INVAL, "reasoning marker \"%s\" too long", m);
        cp[k] = cs_utf8_decode((const uint8_t *)m + i, n - i, &l);
        if (cp[k++] >= CS_UTF8_INVALID_BASE)
            return cs_err(T->err, T->errlen, CLSPEC_E_INVAL, "reasoning marker \"%s\" is not UTF-8", m);
    }
    if (k == 0)
        return cs_err(T->err, T->errlen, CLSPEC_E_INVAL, "empty reasoning marker");
    struct cs_strbuf *b = &T->out;
    for (int j = 0; j < k; j++) {
        cs_strbuf_printf(b, "r%d ::= \"\" | [^", j);
        for (int i = 0; i < k; i++)
            cs_strbuf_printf(b, "\\U%08X", (unsigned)cp[i]);
        cs_strbuf_put(b, "] r0");
        for (int i = 0; i < k; i++) {
            bool seen = false;
            for (int h = 0; h < i; h++)
                seen |= cp[h] == cp[i];
            int nx = seen ? k : marker_next(cp, k, j, cp[i]);
            if (nx < k) /* nx == k: the marker itself (or a repeated code point) */
                cs_strbuf_printf(b, " | [\\U%08X] r%d", (unsigned)cp[i], nx);
        }
        cs_strbuf_put(b, "\n");
    }
    return CLSPEC_OK;
}

/* "root": the format's wrapper around "call" (one or, parallel, several) */
static void put_root(struct tg *T)
{
    const struct cs_tool_grammar_params *p = T->p;
    bool many = p->parallel && p->format != CS_TOOL_LLAMA3;
    const char *open = "", *sep = "", *close = "", *one_open = "", *one_close = "";
    switch (p->format) {
    case CS_TOOL_HERMES: one_open = "<tool_call>\n", one_close = "\n</tool_call>", sep = "\n"; break;
    case CS_TOOL_QWEN3_CODER: one_open = "<tool_call>\n", one_close = "</tool_call>", sep = "\n"; break;
    case CS_TOOL_MISTRAL:
        if (tmpl_has(p, "[ARGS]"))
            one_open = "[TOOL_CALLS]";
        else
            open = "[TOOL_CALLS][", sep = ", ", close = "]";
        break;
    case CS_TOOL_DEEPSEEK: open = DS_CALLS_BEGIN, close = DS_CALLS_END; break;
    case CS_TOOL_FUNCTIONARY: sep = ">>>"; break;
    case CS_TOOL_COMMAND_R7B: open = "<|START_ACTION|>[\n    ", sep = ",\n    ", close = "\n]<|END_ACTION|>"; break;
    default: break;
    }
    struct cs_strbuf *b = &T->out;
    cs_strbuf_put(b, "one ::=");
    put_lit(b, one_open);
    cs_strbuf_put(b, "call");
    put_lit(b, one_close);
    cs_strbuf_put(b, "\ncalls ::=");
    put_lit(b, open);
    cs_strbuf_put(b, "one");
    if (many) {
        cs_strbuf_put(b, "(");
        put_lit(b, sep);
        cs_strbuf_put(b, "one)*");
    }
    put_lit(b, close);
    cs_strbuf_put(b, "\nroot ::=");
    if (p->think_close) { /* the rest of the opened reasoning, its end, then the calls */
        cs_strbuf_put(b, " r0");
        put_lit(b, p->think_close);
        if (p->format != CS_TOOL_FUNCTIONARY) /* there the text starts with the name */
            cs_strbuf_put(b, "[ \\t\\n]{0,4}");
    }
    cs_strbuf_put(b, " calls\ncall ::=");
    for (int k = 0; k < T->n; k++)
        cs_strbuf_printf(b, "%s c%d", k ? " |" : "", k);
    cs_strbuf_put(b, "\n");
}

int cs_tool_grammar(const struct cs_tool_grammar_params *p, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    if (p->format == CS_TOOL_NONE || (int)p->format < 0 || p->format >= CS_TOOL_N_FORMATS)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "the chat template shows no tool-call format clspec knows (hermes, llama3, mistral, qwen3-coder, "
                      "deepseek, functionary, functionary-v3.1, command-r7b), so a call cannot be forced");
    if (!json_is_array(p->tools) || json_array_size(p->tools) == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "forcing a tool call needs a non-empty 'tools'");
    struct tg T = {.p = p, .err = err, .errlen = errlen};
    size_t i;
    json_t *t;
    int rc = CLSPEC_OK;
    json_array_foreach((json_t *)p->tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || (p->only && strcmp(name, p->only)))
            continue;
        json_t *params = json_object_get(fn, "parameters");
        if ((rc = put_call(&T, T.n, name, params)) < 0)
            break;
        T.n++;
    }
    if (rc == CLSPEC_OK && T.n == 0)
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "tool_choice names the function \"%s\", which is not among 'tools'",
                    p->only ? p->only : "?");
    if (rc == CLSPEC_OK && p->think_close)
        rc = put_think(&T, p->think_close);
    if (rc == CLSPEC_OK) {
        put_root(&T);
        rc = cs_strbuf_take(&T.out, out, len);
        if (rc < 0)
            cs_err(err, errlen, rc, "tool grammar: out of memory");
    }
    cs_strbuf_free(&T.out);
    return rc;
}
