/* jinja_value.c: the arena, Jinja values, their Python semantics (truth,
 * equality, ordering, str/repr), and JSON in (jansson) and out (tojson). */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_impl.h"

/* ---- arena ---- */
struct jx_chunk {
    struct jx_chunk *next;
    size_t used, cap;
    max_align_t data[];
};
#define JX_CHUNK 65536

void *jx_alloc(struct jx_arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0)
        n = sizeof(max_align_t);
    struct jx_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > JX_CHUNK ? n : JX_CHUNK;
        if (a->limit && a->total + cap > a->limit)
            return NULL;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void jx_arena_free(struct jx_arena *a)
{
    struct jx_chunk *c = a->head;
    while (c) {
        struct jx_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->total = 0;
}

_Noreturn void jx_fail(struct jx_render *R, int line, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (R->err && R->errlen)
        snprintf(R->err, R->errlen, "template line %d: %s", line, msg);
    longjmp(R->fail, 1);
}

void *jx_ralloc(struct jx_render *R, size_t n)
{
    void *p = jx_alloc(&R->arena, n);
    if (!p)
        jx_fail(R, 0, "out of memory (the render is limited to %zu MiB)", R->arena.limit >> 20);
    return p;
}

/* ---- constructors ---- */
jx_val jx_undef(const char *name) { return (jx_val){.t = JX_UNDEF, .u.undef_name = name}; }
jx_val jx_none(void) { return (jx_val){.t = JX_NONE}; }
jx_val jx_bool(bool b) { return (jx_val){.t = JX_BOOL, .u.b = b}; }
jx_val jx_int(int64_t i) { return (jx_val){.t = JX_INT, .u.i = i}; }
jx_val jx_float(double f) { return (jx_val){.t = JX_FLOAT, .u.f = f}; }

jx_val jx_str_n(struct jx_render *R, const char *s, size_t n)
{
    struct jx_str *p = jx_ralloc(R, sizeof *p + n + 1);
    p->len = n;
    if (n)
        memcpy(p->s, s, n);
    p->s[n] = 0;
    return (jx_val){.t = JX_STR, .u.s = p};
}

jx_val jx_str(struct jx_render *R, const char *s) { return jx_str_n(R, s, strlen(s)); }

jx_val jx_new_list(struct jx_render *R)
{
    return (jx_val){.t = JX_LIST, .u.l = jx_ralloc(R, sizeof(struct jx_list))};
}

jx_val jx_new_dict(struct jx_render *R)
{
    return (jx_val){.t = JX_DICT, .u.d = jx_ralloc(R, sizeof(struct jx_dict))};
}

jx_val jx_new_func(struct jx_render *R, enum jx_func_kind k, const char *name, jx_builtin_fn fn, jx_val self,
                   const struct jx_node *macro)
{
    struct jx_func *f = jx_ralloc(R, sizeof *f);
    f->kind = k;
    f->name = name;
    f->fn = fn;
    f->self = self;
    f->macro = macro;
    return (jx_val){.t = JX_FUNC, .u.fn = f};
}

void jx_list_push(struct jx_render *R, struct jx_list *l, jx_val v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jx_val *nv = jx_ralloc(R, cap * sizeof *nv);
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

static size_t dict_find(const struct jx_dict *d, jx_val k)
{
    for (size_t i = 0; i < d->n; i++)
        if (jx_equal(d->k[i], k))
            return i;
    return SIZE_MAX;
}

bool jx_dict_get(const struct jx_dict *d, jx_val k, jx_val *v)
{
    size_t i = dict_find(d, k);
    if (i == SIZE_MAX)
        return false;
    *v = d->v[i];
    return true;
}

bool jx_dict_get_s(const struct jx_dict *d, const char *k, jx_val *v)
{
    size_t n = strlen(k);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JX_STR && d->k[i].u.s->len == n && memcmp(d->k[i].u.s->s, k, n) == 0) {
            *v = d->v[i];
            return true;
        }
    return false;
}

void jx_dict_set(struct jx_render *R, struct jx_dict *d, jx_val k, jx_val v)
{
    size_t i = dict_find(d, k);
    if (i != SIZE_MAX) {
        d->v[i] = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jx_val *nk = jx_ralloc(R, cap * sizeof *nk), *nv = jx_ralloc(R, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

void jx_dict_set_s(struct jx_render *R, struct jx_dict *d, const char *k, jx_val v)
{
    jx_dict_set(R, d, jx_str(R, k), v);
}

/* ---- semantics ---- */
bool jx_truthy(jx_val v)
{
    switch (v.t) {
    case JX_UNDEF:
    case JX_NONE: return false;
    case JX_BOOL: return v.u.b;
    case JX_INT: return v.u.i != 0;
    case JX_FLOAT: return v.u.f != 0.0;
    case JX_STR: return v.u.s->len != 0;
    case JX_LIST: return v.u.l->n != 0;
    case JX_DICT: return v.u.d->n != 0;
    case JX_FUNC: return true;
    }
    return false;
}

static bool is_num(jx_val v) { return v.t == JX_INT || v.t == JX_FLOAT || v.t == JX_BOOL; }
static double num(jx_val v) { return v.t == JX_FLOAT ? v.u.f : v.t == JX_INT ? (double)v.u.i : v.u.b; }

bool jx_equal(jx_val a, jx_val b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t != JX_FLOAT && b.t != JX_FLOAT)
            return (a.t == JX_INT ? a.u.i : a.u.b) == (b.t == JX_INT ? b.u.i : b.u.b);
        return num(a) == num(b);
    }
    if (a.t != b.t)
        return false;
    switch (a.t) {
    case JX_UNDEF:
    case JX_NONE: return true;
    case JX_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->s, b.u.s->s, a.u.s->len) == 0;
    case JX_LIST:
        if (a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jx_equal(a.u.l->v[i], b.u.l->v[i]))
                return false;
        return true;
    case JX_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jx_val o;
            if (!jx_dict_get(b.u.d, a.u.d->k[i], &o) || !jx_equal(a.u.d->v[i], o))
                return false;
        }
        return true;
    case JX_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

int jx_compare(struct jx_render *R, int line, jx_val a, jx_val b)
{
    if (is_num(a) && is_num(b)) {
        if (a.t == JX_INT && b.t == JX_INT)
            return (a.u.i > b.u.i) - (a.u.i < b.u.i);
        double x = num(a), y = num(b);
        return (x > y) - (x < y);
    }
    if (a.t == JX_STR && b.t == JX_STR) {
        size_t n = CS_MIN(a.u.s->len, b.u.s->len);
        int c = memcmp(a.u.s->s, b.u.s->s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
    }
    if (a.t == JX_LIST && b.t == JX_LIST) {
        size_t n = CS_MIN(a.u.l->n, b.u.l->n);
        for (size_t i = 0; i < n; i++) {
            int c = jx_compare(R, line, a.u.l->v[i], b.u.l->v[i]);
            if (c)
                return c;
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    jx_fail(R, line, "cannot compare %s with %s", jx_type_name(a), jx_type_name(b));
}

const char *jx_type_name(jx_val v)
{
    static const char *names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict",
                                  "callable"};
    if (v.t == JX_DICT && v.u.d->is_ns)
        return "namespace";
    return names[v.t];
}

size_t jx_utf8_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

/* Python's repr of a float: the shortest digits that read back the same,
 * positional for exponents -4..15, else d.ddde+XX; always with a '.' or 'e'. */
void jx_float_repr(struct cs_strbuf *b, double f)
{
    if (isnan(f)) {
        cs_strbuf_put(b, "nan");
        return;
    }
    if (isinf(f)) {
        cs_strbuf_put(b, f < 0 ? "-inf" : "inf");
        return;
    }
    char buf[64];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    /* buf: [-]d[.ddd]e[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *q = buf;
    bool neg = *q == '-';
    if (neg)
        q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.')
            digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (neg)
        cs_strbuf_put(b, "-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            cs_strbuf_put(b, "0.");
            for (int i = 0; i < -exp - 1; i++)
                cs_strbuf_put(b, "0");
            cs_strbuf_put_n(b, digits, nd);
        } else {
            for (int i = 0; i <= exp; i++)
                cs_strbuf_put_n(b, i < (int)nd ? &digits[i] : "0", 1);
            cs_strbuf_put(b, ".");
            if ((int)nd > exp + 1)
                cs_strbuf_put_n(b, digits + exp + 1, nd - (size_t)exp - 1);
            else
                cs_strbuf_put(b, "0");
        }
    } else {
        cs_strbuf_put_n(b, digits, 1);
        if (nd > 1) {
            cs_strbuf_put(b, ".");
            cs_strbuf_put_n(b, digits + 1, nd - 1);
        }
        cs_strbuf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void repr_str(struct cs_strbuf *b, const struct jx_str *s)
{
    bool sq = memchr(s->s, '\'', s->len) != NULL, dq = memchr(s->s, '"', s->len) != NULL;
    char quote = sq && !dq ? '"' : '\'';
    cs_strbuf_put_n(b, &quote, 1);
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->s[i];
        if (c == '\\')
            cs_strbuf_put(b, "\\\\");
        else if (c == (unsigned char)quote)
            cs_strbuf_printf(b, "\\%c", quote);
        else if (c == '\n')
            cs_strbuf_put(b, "\\n");
        else if (c == '\r')
            cs_strbuf_put(b, "\\r");
        else if (c == '\t')
            cs_strbuf_put(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            cs_strbuf_printf(b, "\\x%02x", c);
        else
            cs_strbuf_put_n(b, (const char *)&c, 1);
    }
    cs_strbuf_put_n(b, &quote, 1);
}

static void put_scalar(struct cs_strbuf *b, jx_val v)
{
    switch (v.t) {
    case JX_UNDEF: break;
    case JX_NONE: cs_strbuf_put(b, "None"); break;
    case JX_BOOL: cs_strbuf_put(b, v.u.b ? "True" : "False"); break;
    case JX_INT: cs_strbuf_printf(b, "%lld", (long long)v.u.i); break;
    case JX_FLOAT: jx_float_repr(b, v.u.f); break;
    case JX_FUNC: cs_strbuf_printf(b, "<function %s>", v.u.fn->name ? v.u.fn->name : "?"); break;
    default: break;
    }
}

void jx_repr(struct cs_strbuf *b, jx_val v)
{
    switch (v.t) {
    case JX_STR: repr_str(b, v.u.s); break;
    case JX_LIST:
        cs_strbuf_put(b, v.u.l->is_tuple ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                cs_strbuf_put(b, ", ");
            jx_repr(b, v.u.l->v[i]);
        }
        cs_strbuf_put(b, v.u.l->is_tuple ? (v.u.l->n == 1 ? ",)" : ")") : "]");
        break;
    case JX_DICT:
        if (v.u.d->is_ns) {
            cs_strbuf_put(b, "<Namespace>");
            break;
        }
        cs_strbuf_put(b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                cs_strbuf_put(b, ", ");
            jx_repr(b, v.u.d->k[i]);
            cs_strbuf_put(b, ": ");
            jx_repr(b, v.u.d->v[i]);
        }
        cs_strbuf_put(b, "}");
        break;
    case JX_UNDEF: cs_strbuf_put(b, "Undefined"); break;
    default: put_scalar(b, v); break;
    }
}

void jx_to_str(struct cs_strbuf *b, jx_val v)
{
    if (v.t == JX_STR)
        cs_strbuf_put_n(b, v.u.s->s, v.u.s->len);
    else if (v.t == JX_LIST || v.t == JX_DICT)
        jx_repr(b, v);
    else
        put_scalar(b, v);
}

jx_val jx_stringify(struct jx_render *R, jx_val v)
{
    if (v.t == JX_STR)
        return v;
    struct cs_strbuf b = {0};
    jx_to_str(&b, v);
    if (b.oom) {
        cs_strbuf_free(&b);
        jx_fail(R, 0, "out of memory");
    }
    jx_val s = jx_str_n(R, b.p ? b.p : "", b.len);
    cs_strbuf_free(&b);
    return s;
}

/* ---- JSON ---- */
jx_val jx_from_json(struct jx_render *R, const json_t *j)
{
    switch (j ? json_typeof(j) : JSON_NULL) {
    case JSON_OBJECT: {
        jx_val d = jx_new_dict(R);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) jx_dict_set_s(R, d.u.d, k, jx_from_json(R, v));
        return d;
    }
    case JSON_ARRAY: {
        jx_val l = jx_new_list(R);
        for (size_t i = 0; i < json_array_size(j); i++)
            jx_list_push(R, l.u.l, jx_from_json(R, json_array_get(j, i)));
        return l;
    }
    case JSON_STRING: return jx_str_n(R, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jx_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jx_float(json_real_value(j));
    case JSON_TRUE: return jx_bool(true);
    case JSON_FALSE: return jx_bool(false);
    default: return jx_none();
    }
}

static void json_str(struct cs_strbuf *b, const char *s, size_t n)
{
    cs_strbuf_put(b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c == '\b')
            esc = "\\b";
        else if (c == '\f')
            esc = "\\f";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (esc) {
            cs_strbuf_put_n(b, s + i - run, run);
            run = 0;
            cs_strbuf_put(b, esc);
        } else {
            run++;
        }
    }
    cs_strbuf_put_n(b, s + n - run, run);
    cs_strbuf_put(b, "\"");
}

static void json_nl(struct cs_strbuf *b, int indent, int level)
{
    cs_strbuf_put(b, "\n");
    for (int i = 0; i < indent * level; i++)
        cs_strbuf_put(b, " ");
}

static void to_json_rec(struct jx_render *R, int line, struct cs_strbuf *b, jx_val v, int indent, const char *is,
                        const char *ks, bool sort, int level)
{
    if (level > 100)
        jx_fail(R, line, "tojson: nesting deeper than 100");
    switch (v.t) {
    case JX_NONE: cs_strbuf_put(b, "null"); return;
    case JX_BOOL: cs_strbuf_put(b, v.u.b ? "true" : "false"); return;
    case JX_INT: cs_strbuf_printf(b, "%lld", (long long)v.u.i); return;
    case JX_FLOAT:
        if (isnan(v.u.f))
            cs_strbuf_put(b, "NaN");
        else if (isinf(v.u.f))
            cs_strbuf_put(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else
            jx_float_repr(b, v.u.f);
        return;
    case JX_STR: json_str(b, v.u.s->s, v.u.s->len); return;
    case JX_LIST:
        if (v.u.l->n == 0) {
            cs_strbuf_put(b, "[]");
            return;
        }
        cs_strbuf_put(b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                cs_strbuf_put(b, is);
            if (indent >= 0)
                json_nl(b, indent, level + 1);
            to_json_rec(R, line, b, v.u.l->v[i], indent, is, ks, sort, level + 1);
        }
        if (indent >= 0)
            json_nl(b, indent, level);
        cs_strbuf_put(b, "]");
        return;
    case JX_DICT: {
        const struct jx_dict *d = v.u.d;
        if (d->n == 0) {
            cs_strbuf_put(b, "{}");
            return;
        }
        size_t *ord = jx_ralloc(R, d->n * sizeof *ord);
        for (size_t i = 0; i < d->n; i++)
            ord[i] = i;
        for (size_t i = 1; sort && i < d->n; i++) /* insertion sort: dicts are small */
            for (size_t j = i; j > 0 && jx_compare(R, line, d->k[ord[j - 1]], d->k[ord[j]]) > 0; j--) {
                size_t t = ord[j];
                ord[j] = ord[j - 1];
                ord[j - 1] = t;
            }
        cs_strbuf_put(b, "{");
        for (size_t i = 0; i < d->n; i++) {
            jx_val k = d->k[ord[i]];
            if (i)
                cs_strbuf_put(b, is);
            if (indent >= 0)
                json_nl(b, indent, level + 1);
            if (k.t == JX_STR) {
                json_str(b, k.u.s->s, k.u.s->len);
            } else if (k.t == JX_INT || k.t == JX_FLOAT || k.t == JX_BOOL || k.t == JX_NONE) {
                cs_strbuf_put(b, "\"");
                to_json_rec(R, line, b, k, -1, is, ks, sort, level + 1);
                cs_strbuf_put(b, "\"");
            } else {
                jx_fail(R, line, "tojson: keys must be str, int, float, bool or None, not %s", jx_type_name(k));
            }
            cs_strbuf_put(b, ks);
            to_json_rec(R, line, b, d->v[ord[i]], indent, is, ks, sort, level + 1);
        }
        if (indent >= 0)
            json_nl(b, indent, level);
        cs_strbuf_put(b, "}");
        return;
    }
    default: jx_fail(R, line, "tojson: object of type %s is not JSON serializable", jx_type_name(v));
    }
}

void jx_to_json(struct jx_render *R, int line, struct cs_strbuf *b, jx_val v, int indent, const char *item_sep,
                const char *key_sep, bool sort_keys)
{
    to_json_rec(R, line, b, v, indent, item_sep, key_sep, sort_keys, 0);
}

struct jx_list *jx_iterable(struct jx_render *R, int line, jx_val v)
{
    struct jx_list *l;
    switch (v.t) {
    case JX_UNDEF: return jx_new_list(R).u.l;
    case JX_LIST: return v.u.l;
    case JX_DICT:
        l = jx_new_list(R).u.l;
        for (size_t i = 0; i < v.u.d->n; i++)
            jx_list_push(R, l, v.u.d->k[i]);
        return l;
    case JX_STR: {
        l = jx_new_list(R).u.l;
        const char *s = v.u.s->s;
        size_t n = v.u.s->len;
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80)
                j++;
            jx_list_push(R, l, jx_str_n(R, s + i, j - i));
            i = j;
        }
        return l;
    }
    default: jx_fail(R, line, "'%s' object is not iterable", jx_type_name(v));
    }
}
