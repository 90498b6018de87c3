/* json_schema.c: JSON Schema -> GBNF (see json_schema.h). Every schema node
 * becomes one rule "sN ::= ..." (a $ref target "refN"); the primitive rules
 * (value, object, array, string, number, integer, boolean, null, ws, char)
 * are appended once at the end. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "engine/json_schema.h"

#define MAX_DEPTH 64      /* nesting of schemas (refs resolved lazily do not count) */
#define MAX_LEN 10000     /* largest minLength / maxLength / minItems / maxItems */
#define MAX_RANGE 1000    /* integer ranges enumerated exactly */

/* The primitive rules every schema grammar ends with. */
#define LIBRARY \
    "ws ::= [ ]? | \"\\n\" [ \\t]{0,20}\n" \
    "value ::= object | array | string | number | boolean | null\n" \
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\"\n" \
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n" \
    "string ::= \"\\\"\" char* \"\\\"\"\n" \
    "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n" \
    "number ::= integer ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n" \
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n" \
    "boolean ::= \"true\" | \"false\"\n" \
    "null ::= \"null\"\n"

const char *cs_json_object_gbnf(void) { return "root ::= object\n" LIBRARY; }

struct ref {
    char *ptr;     /* "#/$defs/x" */
    char name[32]; /* its rule */
};

struct conv {
    json_t *root;
    struct cs_strbuf out; /* the rules made so far */
    int n;                /* rules made (names) */
    struct ref *refs;
    int n_refs, cap_refs;
    char *err;
    size_t errlen;
    int depth;
};

static int cerr(struct conv *C, const char *path, const char *what, const char *key)
{
    if (key)
        return cs_err(C->err, C->errlen, CLSPEC_E_INVAL, "json_schema: %s: '%s' %s", *path ? path : "/", key, what);
    return cs_err(C->err, C->errlen, CLSPEC_E_INVAL, "json_schema: %s: %s", *path ? path : "/", what);
}

void cs_gbnf_put_literal(struct cs_strbuf *b, const char *s, size_t n)
{
    cs_strbuf_put(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            cs_strbuf_printf(b, "\\%c", c);
        else if (c == '\n')
            cs_strbuf_put(b, "\\n");
        else if (c < 0x20 || c == 0x7F)
            cs_strbuf_printf(b, "\\x%02X", c);
        else
            cs_strbuf_put_n(b, (const char *)&c, 1);
    }
    cs_strbuf_put(b, "\"");
}

/* The JSON text of v as a GBNF literal. */
static int put_json_lit(struct conv *C, struct cs_strbuf *b, json_t *v, const char *path)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t)
        return cerr(C, path, "value cannot be encoded", NULL);
    cs_gbnf_put_literal(b, t, strlen(t));
    free(t);
    return CLSPEC_OK;
}

/* Adds "name ::= body" to the rules (body consumed). */
static int emit(struct conv *C, const char *name, struct cs_strbuf *body)
{
    if (body->oom) {
        cs_strbuf_free(body);
        return cs_err(C->err, C->errlen, CLSPEC_E_NOMEM, "json_schema: out of memory");
    }
    cs_strbuf_printf(&C->out, "%s ::= %s\n", name, body->p ? body->p : "");
    cs_strbuf_free(body);
    return CLSPEC_OK;
}

static void subpath(char *dst, size_t cap, const char *path, const char *a, const char *b)
{
    if (b)
        snprintf(dst, cap, "%s/%s/%s", path, a, b);
    else
        snprintf(dst, cap, "%s/%s", path, a);
}

static int visit(struct conv *C, json_t *s, const char *path, char name[32]);

/* ---- $ref ---- */

static json_t *resolve(json_t *root, const char *ptr)
{
    if (strcmp(ptr, "#") == 0)
        return root;
    if (strncmp(ptr, "#/", 2) != 0)
        return NULL;
    json_t *cur = root;
    const char *p = ptr + 2;
    char tok[256];
    while (cur && *p) {
        size_t k = 0;
        while (*p && *p != '/' && k + 1 < sizeof tok) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                tok[k++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                tok[k++] = *p++;
            }
        }
        tok[k] = '\0';
        if (*p == '/')
            p++;
        if (json_is_object(cur))
            cur = json_object_get(cur, tok);
        else if (json_is_array(cur))
            cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        else
            cur = NULL;
    }
    return cur;
}

static int do_ref(struct conv *C, const char *ptr, const char *path, char name[32])
{
    for (int i = 0; i < C->n_refs; i++)
        if (strcmp(C->refs[i].ptr, ptr) == 0) {
            snprintf(name, 32, "%s", C->refs[i].name);
            return CLSPEC_OK;
        }
    json_t *t = resolve(C->root, ptr);
    if (!t)
        return cs_err(C->err, C->errlen, CLSPEC_E_INVAL,
                      "json_schema: %s: $ref '%.200s' does not resolve (only local refs: \"#/$defs/name\")",
                      *path ? path : "/", ptr);
    if (C->n_refs == C->cap_refs) {
        int cap = C->cap_refs ? 2 * C->cap_refs : 8;
        struct ref *r = realloc(C->refs, (size_t)cap * sizeof *r);
        if (!r)
            return cs_err(C->err, C->errlen, CLSPEC_E_NOMEM, "json_schema: out of memory");
        C->refs = r;
        C->cap_refs = cap;
    }
    struct ref *r = &C->refs[C->n_refs];
    if (!(r->ptr = strdup(ptr)))
        return cs_err(C->err, C->errlen, CLSPEC_E_NOMEM, "json_schema: out of memory");
    snprintf(r->name, sizeof r->name, "ref%d", C->n++);
    C->n_refs++;
    snprintf(name, 32, "%s", r->name);
    /* the target's own rule, then the ref rule naming it (recursion finds the ref rule by name) */
    char inner[32], p2[512];
    snprintf(p2, sizeof p2, "%s", ptr + 1);
    CS_TRY(visit(C, t, p2, inner));
    struct cs_strbuf b = {0};
    cs_strbuf_put(&b, inner);
    return emit(C, name, &b);
}

/* ---- pattern: a regular expression -> a GBNF expression for the string's content ---- */

struct re {
    const char *start, *p, *end;
    struct cs_strbuf *b;
    struct conv *C;
    const char *path;
};

static int re_alt(struct re *R, int depth);

static int re_bad(struct re *R, const char *what)
{
    char m[160];
    snprintf(m, sizeof m, "pattern: %s at offset %d", what, (int)(R->p - R->start));
    return cerr(R->C, R->path, m, NULL);
}

/* A class escape (\d \w \s) as ranges inside [...], or 0 when c is none. */
static const char *class_escape(char c)
{
    switch (c) {
    case 'd': return "0-9";
    case 'w': return "a-zA-Z0-9_";
    case 's': return " ";
    default: return NULL;
    }
}

/* One literal code unit of the pattern as the JSON text that encodes it. */
static void re_lit_char(struct re *R, char c)
{
    if (c == '"')
        cs_gbnf_put_literal(R->b, "\\\"", 2);
    else if (c == '\\')
        cs_gbnf_put_literal(R->b, "\\\\", 2);
    else
        cs_gbnf_put_literal(R->b, &c, 1);
}

static int re_class(struct re *R)
{
    R->p++; /* '[' */
    bool neg = R->p < R->end && *R->p == '^';
    R->p += neg;
    cs_strbuf_put(R->b, neg ? "[^\"\\\\\\x00-\\x1F" : "[");
    bool first = true;
    while (R->p < R->end && (*R->p != ']' || first)) {
        first = false;
        char c = *R->p++;
        if (c == '\\') {
            if (R->p >= R->end)
                return re_bad(R, "unfinished escape");
            char e = *R->p++;
            const char *ce = class_escape(e);
            if (ce)
                cs_strbuf_put(R->b, ce);
            else if (e == 'D' || e == 'W' || e == 'S' || (e >= '0' && e <= '9') || e == 'b')
                return re_bad(R, "this class escape is not supported");
            else if (e == 'n' || e == 't' || e == 'r' || e == '"' || e == '\\')
                return re_bad(R, "control characters, quotes and backslashes in a class are not supported");
            else
                cs_strbuf_printf(R->b, "\\%c", e);
        } else if (c == '"' || (unsigned char)c < 0x20) {
            return re_bad(R, "quotes or control characters in a class are not supported");
        } else if (c == '[' || c == ']') {
            cs_strbuf_printf(R->b, "\\%c", c);
        } else {
            cs_strbuf_put_n(R->b, &c, 1);
        }
    }
    if (R->p >= R->end)
        return re_bad(R, "unterminated class");
    R->p++;
    cs_strbuf_put(R->b, "]");
    return CLSPEC_OK;
}

static int re_atom(struct re *R, int depth)
{
    char c = *R->p;
    if (c == '(') {
        R->p++;
        if (R->p < R->end && *R->p == '?') {
            if (R->end - R->p >= 2 && R->p[1] == ':')
                R->p += 2;
            else
                return re_bad(R, "lookaround and named groups are not supported");
        }
        cs_strbuf_put(R->b, "(");
        CS_TRY(re_alt(R, depth + 1));
        if (R->p >= R->end || *R->p != ')')
            return re_bad(R, "'(' is not closed");
        R->p++;
        cs_strbuf_put(R->b, ")");
    } else if (c == '[') {
        CS_TRY(re_class(R));
    } else if (c == '.') {
        R->p++;
        cs_strbuf_put(R->b, "[^\"\\\\\\x00-\\x1F]");
    } else if (c == '\\') {
        R->p++;
        if (R->p >= R->end)
            return re_bad(R, "unfinished escape");
        char e = *R->p++;
        const char *ce = class_escape(e);
        if (ce)
            cs_strbuf_printf(R->b, "[%s]", ce);
        else if (e == 'D')
            cs_strbuf_put(R->b, "[^0-9\"\\\\\\x00-\\x1F]");
        else if (e == 'W')
            cs_strbuf_put(R->b, "[^a-zA-Z0-9_\"\\\\\\x00-\\x1F]");
        else if (e == 'S')
            cs_strbuf_put(R->b, "[^ \"\\\\\\x00-\\x1F]");
        else if ((e >= '0' && e <= '9') || e == 'b' || e == 'B' || e == 'k' || e == 'p' || e == 'P')
            return re_bad(R, "back-references, word boundaries and \\p classes are not supported");
        else if (e == 'n' || e == 't' || e == 'r')
            cs_gbnf_put_literal(R->b, e == 'n' ? "\\n" : e == 't' ? "\\t" : "\\r", 2); /* as JSON escapes */
        else
            re_lit_char(R, e);
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        return re_bad(R, "a quantifier with nothing to repeat");
    } else if (c == '^' || c == '$') {
        return re_bad(R, "anchors are supported only at the start and the end");
    } else {
        /* a UTF-8 code point: copy its bytes as a literal */
        const char *q = R->p + 1;
        while (q < R->end && ((unsigned char)*q & 0xC0) == 0x80)
            q++;
        if (q - R->p == 1)
            re_lit_char(R, c);
        else
            cs_gbnf_put_literal(R->b, R->p, (size_t)(q - R->p));
        R->p = q;
    }
    /* quantifier: GBNF has the same syntax; a lazy / possessive mark after it is dropped */
    if (R->p < R->end && (*R->p == '*' || *R->p == '+' || *R->p == '?')) {
        cs_strbuf_put_n(R->b, R->p++, 1);
    } else if (R->p < R->end && *R->p == '{') {
        const char *q = R->p;
        while (q < R->end && *q != '}')
            q++;
        if (q >= R->end)
            return re_bad(R, "unterminated {m,n}");
        cs_strbuf_put_n(R->b, R->p, (size_t)(q - R->p + 1));
        R->p = q + 1;
    } else {
        return CLSPEC_OK;
    }
    if (R->p < R->end && (*R->p == '?' || *R->p == '+'))
        R->p++;
    return CLSPEC_OK;
}

static int re_alt(struct re *R, int depth)
{
    if (depth > MAX_DEPTH)
        return re_bad(R, "groups nested too deep");
    for (;;) {
        bool any = false;
        while (R->p < R->end && *R->p != '|' && *R->p != ')') {
            if (*R->p == '$' && R->p + 1 == R->end) {
                R->p++;
                break;
            }
            cs_strbuf_put(R->b, " ");
            CS_TRY(re_atom(R, depth));
            any = true;
        }
        if (!any)
            cs_strbuf_put(R->b, " \"\"");
        if (R->p < R->end && *R->p == '|') {
            R->p++;
            cs_strbuf_put(R->b, " |");
            continue;
        }
        return CLSPEC_OK;
    }
}

static int do_pattern(struct conv *C, const char *pat, const char *path, struct cs_strbuf *b)
{
    size_t n = strlen(pat);
    if (n && pat[0] == '^')
        pat++, n--;
    struct re R = {pat, pat, pat + n, b, C, path};
    cs_strbuf_put(b, "\"\\\"\" (");
    CS_TRY(re_alt(&R, 0));
    if (R.p < R.end)
        return re_bad(&R, "unmatched ')'");
    cs_strbuf_put(b, " ) \"\\\"\"");
    return CLSPEC_OK;
}

/* ---- the types ---- */

static int get_count(struct conv *C, json_t *s, const char *key, const char *path, long *out)
{
    json_t *v = json_object_get(s, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_LEN)
        return cerr(C, path, "must be a whole number 0..10000", key);
    *out = (long)json_integer_value(v);
    return 1;
}

static int do_string(struct conv *C, json_t *s, const char *path, struct cs_strbuf *b)
{
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if (pat) {
        if (!json_is_string(pat))
            return cerr(C, path, "must be a string", "pattern");
        return do_pattern(C, json_string_value(pat), path, b);
    }
    const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
    static const char *date = "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )";
    static const char *tim = "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? "
                             "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )?";
    if (strcmp(f, "date") == 0)
        cs_strbuf_printf(b, "\"\\\"\" %s \"\\\"\"", date);
    else if (strcmp(f, "time") == 0)
        cs_strbuf_printf(b, "\"\\\"\" %s \"\\\"\"", tim);
    else if (strcmp(f, "date-time") == 0)
        cs_strbuf_printf(b, "\"\\\"\" %s \"T\" %s \"\\\"\"", date, tim);
    else if (strcmp(f, "uuid") == 0)
        cs_strbuf_put(b, "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} "
                         "\"-\" [0-9a-fA-F]{12} \"\\\"\"");
    else {
        long lo = 0, hi = -1;
        int a = get_count(C, s, "minLength", path, &lo), z = get_count(C, s, "maxLength", path, &hi);
        CS_TRY(a);
        CS_TRY(z);
        if (z && hi < lo)
            return cerr(C, path, "maxLength is below minLength", NULL);
        if (!a && !z)
            cs_strbuf_put(b, "string");
        else if (z)
            cs_strbuf_printf(b, "\"\\\"\" char{%ld,%ld} \"\\\"\"", lo, hi);
        else
            cs_strbuf_printf(b, "\"\\\"\" char{%ld,} \"\\\"\"", lo);
    }
    return CLSPEC_OK;
}

/* A bound of key (minimum / maximum / exclusive*), as a double; 0 = none. */
static int get_bound(struct conv *C, json_t *s, const char *key, const char *path, double *out)
{
    json_t *v = json_object_get(s, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return cerr(C, path, "must be a number", key);
    *out = json_number_value(v);
    return 1;
}

static int do_number(struct conv *C, json_t *s, bool integer, const char *path, struct cs_strbuf *b)
{
    double lo = -INFINITY, hi = INFINITY, x = 0.0;
    int k;
    CS_TRY(k = get_bound(C, s, "minimum", path, &x));
    if (k)
        lo = x;
    CS_TRY(k = get_bound(C, s, "exclusiveMinimum", path, &x));
    if (k)
        lo = fmax(lo, integer ? floor(x) + 1 : x);
    CS_TRY(k = get_bound(C, s, "maximum", path, &x));
    if (k)
        hi = x;
    CS_TRY(k = get_bound(C, s, "exclusiveMaximum", path, &x));
    if (k)
        hi = fmin(hi, integer ? ceil(x) - 1 : x);
    if (integer) {
        lo = ceil(lo);
        hi = floor(hi);
    }
    if (lo > hi)
        return cerr(C, path, "no number lies between its minimum and maximum", NULL);
    if (integer && isfinite(lo) && isfinite(hi) && hi - lo < MAX_RANGE) {
        for (double v = lo; v <= hi; v++)
            cs_strbuf_printf(b, "%s\"%.0f\"", v == lo ? "" : " | ", v);
        return CLSPEC_OK;
    }
    const char *mag = "( \"0\" | [1-9] [0-9]{0,15} )", *frac = " ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?";
    if (lo >= 0) /* best effort: only the sign follows the bounds */
        cs_strbuf_printf(b, "%s%s", mag, integer ? "" : frac);
    else if (hi < 0)
        cs_strbuf_printf(b, "\"-\" [1-9] [0-9]{0,15}%s", integer ? "" : frac);
    else
        cs_strbuf_put(b, integer ? "integer" : "number");
    return CLSPEC_OK;
}

/* A tuple: the schemas of tup (prefixItems, or items as an array) in order,
 * then further items of schema more (NULL or false: none) within
 * minItems/maxItems. */
static int do_tuple(struct conv *C, json_t *s, json_t *tup, const char *key, json_t *more, const char *more_key,
                    const char *path, struct cs_strbuf *b)
{
    size_t k = json_array_size(tup);
    long lo = 0, hi = -1;
    int a = get_count(C, s, "minItems", path, &lo), z = get_count(C, s, "maxItems", path, &hi);
    CS_TRY(a);
    CS_TRY(z);
    if (z && hi < lo)
        return cerr(C, path, "maxItems is below minItems", NULL);
    if (z && (size_t)hi < k)
        return cerr(C, path, "maxItems is below the number of tuple items", NULL);
    bool extra = more && !json_is_false(more);
    if (!extra && (size_t)lo > k)
        return cerr(C, path, "minItems is above the number of tuple items (no further items allowed)", NULL);
    char p2[512], idx[24], e[32] = "value";
    cs_strbuf_put(b, "\"[\" ws");
    for (size_t i = 0; i < k; i++) {
        char sub[32];
        snprintf(idx, sizeof idx, "%zu", i);
        subpath(p2, sizeof p2, path, key, idx);
        CS_TRY(visit(C, json_array_get(tup, i), p2, sub));
        cs_strbuf_printf(b, "%s %s ws", i ? " \",\" ws" : "", sub);
    }
    if (extra && (!z || (size_t)hi > k)) {
        subpath(p2, sizeof p2, path, more_key, NULL);
        if (!json_is_true(more))
            CS_TRY(visit(C, more, p2, e));
        long rlo = (size_t)lo > k ? lo - (long)k : 0;
        char rep[48];
        if (z)
            snprintf(rep, sizeof rep, "{%ld,%ld}", rlo, hi - (long)k);
        else
            snprintf(rep, sizeof rep, "{%ld,}", rlo);
        cs_strbuf_printf(b, " ( \",\" ws %s ws )%s", e, rep); /* k > 0 here (do_array) */
    }
    cs_strbuf_put(b, " \"]\"");
    return CLSPEC_OK;
}

static int do_array(struct conv *C, json_t *s, const char *path, struct cs_strbuf *b)
{
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    json_t *tup = prefix, *more = items; /* 2020-12: prefixItems, then items for the rest */
    const char *tkey = "prefixItems", *mkey = "items";
    if (prefix && !json_is_array(prefix))
        return cerr(C, path, "must be an array of schemas", "prefixItems");
    if (!prefix && json_is_array(items)) { /* drafts 4 to 2019-09: items as an array, then additionalItems */
        tup = items;
        more = json_object_get(s, "additionalItems");
        tkey = "items";
        mkey = "additionalItems";
    }
    if (tup && (json_array_size(tup) > 0 || !more || json_is_false(more)))
        return do_tuple(C, s, tup, tkey, more, mkey, path, b);
    if (tup) /* an empty tuple and a schema for the rest: a plain array of it */
        items = json_is_true(more) ? NULL : more;
    long lo = 0, hi = -1;
    int a = get_count(C, s, "minItems", path, &lo), z = get_count(C, s, "maxItems", path, &hi);
    CS_TRY(a);
    CS_TRY(z);
    if (z && hi < lo)
        return cerr(C, path, "maxItems is below minItems", NULL);
    char e[32] = "value", p2[512];
    subpath(p2, sizeof p2, path, "items", NULL);
    if (items)
        CS_TRY(visit(C, items, p2, e));
    if (z && hi == 0) {
        cs_strbuf_put(b, "\"[\" ws \"]\"");
        return CLSPEC_OK;
    }
    char rep[48];
    long rlo = lo > 0 ? lo - 1 : 0;
    if (z)
        snprintf(rep, sizeof rep, "{%ld,%ld}", rlo, hi - 1);
    else
        snprintf(rep, sizeof rep, "{%ld,}", rlo);
    cs_strbuf_printf(b, "\"[\" ws %s%s ws ( \",\" ws %s ws )%s %s\"]\"", lo == 0 ? "( " : "", e, e, rep,
                     lo == 0 ? ")? " : "");
    return CLSPEC_OK;
}

/* Object: members k..n with A_k (nothing before) and B_k (something before)
 * rules; extra members (additionalProperties) at the end. */
static int do_object(struct conv *C, json_t *s, const char *path, struct cs_strbuf *b)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
           *add = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return cerr(C, path, "must be an object", "properties");
    if (req && !json_is_array(req))
        return cerr(C, path, "must be an array of names", "required");
    if (add && !json_is_boolean(add) && !json_is_object(add))
        return cerr(C, path, "must be true, false or a schema", "additionalProperties");
    if ((!props || json_object_size(props) == 0) && (!req || json_array_size(req) == 0) &&
        (!add || json_is_true(add))) {
        cs_strbuf_put(b, "object");
        return CLSPEC_OK;
    }
    /* members: declared properties, then required names not declared */
    size_t n = (props ? json_object_size(props) : 0) + (req ? json_array_size(req) : 0);
    const char **key = calloc(n + 1, sizeof *key);
    char(*val)[32] = calloc(n + 1, sizeof *val);
    bool *must = calloc(n + 1, sizeof *must);
    int rc = key && val && must ? CLSPEC_OK : cs_err(C->err, C->errlen, CLSPEC_E_NOMEM, "json_schema: out of memory");
    size_t m = 0;
    const char *k;
    json_t *v;
    char p2[512];
    if (props && rc == CLSPEC_OK)
        json_object_foreach(props, k, v) {
            subpath(p2, sizeof p2, path, "properties", k);
            if ((rc = visit(C, v, p2, val[m])) < 0)
                break;
            key[m++] = k;
        }
    for (size_t i = 0; rc == CLSPEC_OK && req && i < json_array_size(req); i++) {
        json_t *r = json_array_get(req, i);
        if (!json_is_string(r)) {
            rc = cerr(C, path, "must list property names (strings)", "required");
            break;
        }
        size_t j = 0;
        while (j < m && strcmp(key[j], json_string_value(r)) != 0)
            j++;
        if (j == m) {
            key[m] = json_string_value(r);
            snprintf(val[m++], 32, "value");
        }
        must[j] = true;
    }
    char extra[32] = "";
    if (rc == CLSPEC_OK && add && !json_is_false(add)) {
        snprintf(extra, sizeof extra, "value");
        subpath(p2, sizeof p2, path, "additionalProperties", NULL);
        if (json_is_object(add))
            rc = visit(C, add, p2, extra);
    }
    int base = C->n;
    C->n += 2 * (int)(m + 1);
    for (size_t i = m + 1; rc == CLSPEC_OK && i-- > 0;) { /* A_i = s<base+2i>, B_i = s<base+2i+1> */
        struct cs_strbuf A = {0}, B = {0};
        char an[32], bn[32], kv[600];
        snprintf(an, sizeof an, "s%d", base + 2 * (int)i);
        snprintf(bn, sizeof bn, "s%d", base + 2 * (int)i + 1);
        if (i == m) {
            if (*extra) {
                cs_strbuf_printf(&A, "( string ws \":\" ws %s ws ( \",\" ws string ws \":\" ws %s ws )* )?", extra,
                                 extra);
                cs_strbuf_printf(&B, "( \",\" ws string ws \":\" ws %s ws )*", extra);
            } else {
                cs_strbuf_put(&A, "\"\"");
                cs_strbuf_put(&B, "\"\"");
            }
        } else {
            json_t *ks = json_string(key[i]);
            char *kj = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
            json_decref(ks);
            struct cs_strbuf kl = {0};
            if (kj)
                cs_gbnf_put_literal(&kl, kj, strlen(kj));
            snprintf(kv, sizeof kv, "%s ws \":\" ws %s ws", kl.p ? kl.p : "\"\"", val[i]);
            cs_strbuf_free(&kl);
            free(kj);
            if (must[i]) {
                cs_strbuf_printf(&A, "%s s%d", kv, base + 2 * (int)i + 3);
                cs_strbuf_printf(&B, "\",\" ws %s s%d", kv, base + 2 * (int)i + 3);
            } else {
                cs_strbuf_printf(&A, "%s s%d | s%d", kv, base + 2 * (int)i + 3, base + 2 * (int)i + 2);
                cs_strbuf_printf(&B, "( \",\" ws %s )? s%d", kv, base + 2 * (int)i + 3);
            }
        }
        rc = emit(C, an, &A);
        if (rc == CLSPEC_OK)
            rc = emit(C, bn, &B);
        else
            cs_strbuf_free(&B);
    }
    if (rc == CLSPEC_OK)
        cs_strbuf_printf(b, "\"{\" ws s%d \"}\"", base);
    free(key);
    free(val);
    free(must);
    return rc;
}

/* allOf: the subschemas' properties and required names merged into one
 * object schema (only object subschemas, after their $ref). */
static int do_allof(struct conv *C, json_t *s, json_t *all, const char *path, char name[32])
{
    json_t *m = json_object(), *props = json_object(), *req = json_array();
    int rc = m && props && req ? CLSPEC_OK : cs_err(C->err, C->errlen, CLSPEC_E_NOMEM, "json_schema: out of memory");
    json_t *parts[65];
    size_t np = 0;
    parts[np++] = s;
    for (size_t i = 0; rc == CLSPEC_OK && i < json_array_size(all) && np < 65; i++)
        parts[np++] = json_array_get(all, i);
    for (size_t i = 0; rc == CLSPEC_OK && i < np; i++) {
        json_t *x = parts[i], *r = json_object_get(x, "$ref");
        if (i > 0 && json_is_string(r) && !(x = resolve(C->root, json_string_value(r))))
            rc = cerr(C, path, "a $ref in allOf does not resolve", NULL);
        if (rc < 0)
            break;
        json_t *t = json_object_get(x, "type"), *pp = json_object_get(x, "properties"),
               *rr = json_object_get(x, "required"), *ap = json_object_get(x, "additionalProperties");
        if (!json_is_object(x) || (t && !(json_is_string(t) && strcmp(json_string_value(t), "object") == 0)))
            rc = cerr(C, path, "allOf is supported for object schemas only", NULL);
        else if (json_object_get(x, "anyOf") || json_object_get(x, "oneOf") || (i > 0 && json_object_get(x, "allOf")))
            rc = cerr(C, path, "allOf with anyOf / oneOf / nested allOf inside is not supported", NULL);
        if (rc < 0)
            break;
        if (json_is_object(pp))
            json_object_update(props, pp);
        if (json_is_array(rr))
            json_array_extend(req, rr);
        if (ap)
            json_object_set(m, "additionalProperties", ap);
    }
    if (rc == CLSPEC_OK) {
        json_object_set(m, "properties", props);
        json_object_set(m, "required", req);
        json_t *tmp = json_string("object");
        json_object_set_new(m, "type", tmp);
        rc = visit(C, m, path, name);
    }
    json_decref(m);
    json_decref(props);
    json_decref(req);
    return rc;
}

static bool annotation(const char *k)
{
    static const char *const ann[] = {"title", "description", "examples", "default", "$schema", "$id", "$comment",
                                      "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "format"};
    for (size_t i = 0; i < CS_ARRAY_LEN(ann); i++)
        if (strcmp(k, ann[i]) == 0)
            return true;
    return false;
}

static bool known(const char *k)
{
    static const char *const kw[] = {"type", "properties", "required", "additionalProperties", "items", "minItems",
                                     "maxItems", "enum", "const", "minLength", "maxLength", "pattern", "minimum",
                                     "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf",
                                     "$ref", "uniqueItems", "prefixItems", "additionalItems"};
    for (size_t i = 0; i < CS_ARRAY_LEN(kw); i++)
        if (strcmp(k, kw[i]) == 0)
            return true;
    return annotation(k);
}

/* The body of a schema with one type t ("" when it has none). */
static int do_typed(struct conv *C, json_t *s, const char *t, const char *path, struct cs_strbuf *b)
{
    if (strcmp(t, "string") == 0)
        return do_string(C, s, path, b);
    if (strcmp(t, "integer") == 0 || strcmp(t, "number") == 0)
        return do_number(C, s, t[0] == 'i', path, b);
    if (strcmp(t, "boolean") == 0 || strcmp(t, "null") == 0) {
        cs_strbuf_put(b, t);
        return CLSPEC_OK;
    }
    if (strcmp(t, "array") == 0)
        return do_array(C, s, path, b);
    if (strcmp(t, "object") == 0)
        return do_object(C, s, path, b);
    if (*t)
        return cerr(C, path, "is not a JSON Schema type", t);
    /* no type: what its keywords imply */
    if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties") ||
        json_object_get(s, "required"))
        return do_object(C, s, path, b);
    if (json_object_get(s, "items") || json_object_get(s, "prefixItems") || json_object_get(s, "minItems") ||
        json_object_get(s, "maxItems"))
        return do_array(C, s, path, b);
    if (json_object_get(s, "pattern") || json_object_get(s, "minLength") || json_object_get(s, "maxLength"))
        return do_string(C, s, path, b);
    cs_strbuf_put(b, "value");
    return CLSPEC_OK;
}

static int body(struct conv *C, json_t *s, const char *path, struct cs_strbuf *b)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (!known(k))
            return cerr(C, path, "is not supported (supported: type, properties, required, additionalProperties, "
                                 "items, prefixItems, additionalItems, minItems, maxItems, enum, const, minLength, "
                                 "maxLength, pattern, format, minimum, maximum, anyOf, oneOf, allOf, $ref)",
                        k);
        if (strcmp(k, "uniqueItems") == 0 && json_is_true(v))
            return cerr(C, path, "true is not supported", k);
    }
    json_t *ref = json_object_get(s, "$ref"), *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum"),
           *any = json_object_get(s, "anyOf"), *one = json_object_get(s, "oneOf"), *all = json_object_get(s, "allOf"),
           *type = json_object_get(s, "type");
    char p2[512];
    if (ref) {
        if (!json_is_string(ref))
            return cerr(C, path, "must be a string", "$ref");
        char r[32];
        CS_TRY(do_ref(C, json_string_value(ref), path, r));
        cs_strbuf_put(b, r);
    } else if (cst) {
        CS_TRY(put_json_lit(C, b, cst, path));
    } else if (en) {
        if (!json_is_array(en) || json_array_size(en) == 0)
            return cerr(C, path, "must be a non-empty array", "enum");
        for (size_t i = 0; i < json_array_size(en); i++) {
            if (i)
                cs_strbuf_put(b, " | ");
            CS_TRY(put_json_lit(C, b, json_array_get(en, i), path));
        }
    } else if (any || one) {
        json_t *a = any ? any : one;
        if (!json_is_array(a) || json_array_size(a) == 0)
            return cerr(C, path, "must be a non-empty array of schemas", any ? "anyOf" : "oneOf");
        for (size_t i = 0; i < json_array_size(a); i++) {
            char sub[32], idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            subpath(p2, sizeof p2, path, any ? "anyOf" : "oneOf", idx);
            CS_TRY(visit(C, json_array_get(a, i), p2, sub));
            cs_strbuf_printf(b, "%s%s", i ? " | " : "", sub);
        }
    } else if (all) {
        if (!json_is_array(all))
            return cerr(C, path, "must be an array of schemas", "allOf");
        char sub[32];
        json_t *rest = json_deep_copy(s);
        if (!rest)
            return cs_err(C->err, C->errlen, CLSPEC_E_NOMEM, "json_schema: out of memory");
        json_object_del(rest, "allOf");
        int rc = do_allof(C, rest, all, path, sub);
        json_decref(rest);
        CS_TRY(rc);
        cs_strbuf_put(b, sub);
    } else if (json_is_array(type)) {
        for (size_t i = 0; i < json_array_size(type); i++) {
            json_t *t = json_array_get(type, i);
            if (!json_is_string(t))
                return cerr(C, path, "must list type names", "type");
            cs_strbuf_put(b, i ? " | ( " : "( ");
            CS_TRY(do_typed(C, s, json_string_value(t), path, b));
            cs_strbuf_put(b, " )");
        }
    } else if (type && !json_is_string(type)) {
        return cerr(C, path, "must be a type name or a list of them", "type");
    } else {
        CS_TRY(do_typed(C, s, type ? json_string_value(type) : "", path, b));
    }
    return CLSPEC_OK;
}

static int visit(struct conv *C, json_t *s, const char *path, char name[32])
{
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        snprintf(name, 32, "value");
        return CLSPEC_OK;
    }
    if (json_is_false(s))
        return cerr(C, path, "the schema false accepts nothing", NULL);
    if (!json_is_object(s))
        return cerr(C, path, "a schema must be an object or a boolean", NULL);
    if (C->depth >= MAX_DEPTH)
        return cerr(C, path, "schemas nested too deep", NULL);
    snprintf(name, 32, "s%d", C->n++);
    struct cs_strbuf b = {0};
    C->depth++;
    int rc = body(C, s, path, &b);
    C->depth--;
    if (rc < 0) {
        cs_strbuf_free(&b);
        return rc;
    }
    return emit(C, name, &b);
}

int cs_json_schema_gbnf(json_t *schema, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    struct conv C = {.root = schema, .err = err, .errlen = errlen};
    char top[32];
    int rc = visit(&C, schema, "", top);
    if (rc == CLSPEC_OK) {
        cs_strbuf_printf(&C.out, "root ::= %s\n%s", top, LIBRARY);
        rc = cs_strbuf_take(&C.out, out, len);
        if (rc < 0)
            cs_err(err, errlen, rc, "json_schema: out of memory");
    }
    cs_strbuf_free(&C.out);
    for (int i = 0; i < C.n_refs; i++)
        free(C.refs[i].ptr);
    free(C.refs);
    return rc;
}

int cs_json_schema_gbnf_text(const char *text, size_t n, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    json_error_t je;
    json_t *s = json_loadb(text, n, JSON_DECODE_ANY, &je);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "json_schema: %d:%d: %s", je.line, je.column, je.text);
    int rc = cs_json_schema_gbnf(s, out, len, err, errlen);
    json_decref(s);
    return rc;
}
