/* jinja_filters.c: Jinja's filters (x|name(args)) and tests (x is name args)
 * as chat templates use them; tojson is transformers' (json.dumps with
 * ensure_ascii=False), not Jinja's HTML-escaping one. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja_builtins.h"

#define ARG(i, name, dflt) jx_arg(args, n, kwn, kwv, nkw, (i), (name), (dflt))

/* obj.a.b (attribute path of map/selectattr/sort/...) */
static jx_val attr_path(struct jx_render *R, int line, jx_val obj, const char *path)
{
    char part[128];
    while (*path) {
        size_t k = strcspn(path, ".");
        if (k >= sizeof part)
            jx_fail(R, line, "attribute name too long");
        memcpy(part, path, k);
        part[k] = 0;
        bool digits = k > 0 && strspn(part, "0123456789") == k;
        if (obj.t == JX_UNDEF)
            return obj;
        obj = digits ? jx_getitem(R, line, obj, jx_int(strtoll(part, NULL, 10))) : jx_getattr(R, line, obj, part);
        path += k + (path[k] == '.');
    }
    return obj;
}

static jx_val to_list(struct jx_render *R, int line, jx_val v)
{
    struct jx_list *src = jx_iterable(R, line, v);
    jx_val out = jx_new_list(R);
    for (size_t i = 0; i < src->n; i++)
        jx_list_push(R, out.u.l, src->v[i]);
    return out;
}

static int64_t length(struct jx_render *R, int line, jx_val v)
{
    switch (v.t) {
    case JX_STR: return (int64_t)jx_utf8_len(v.u.s->s, v.u.s->len);
    case JX_LIST: return (int64_t)v.u.l->n;
    case JX_DICT: return (int64_t)v.u.d->n;
    case JX_UNDEF: return 0;
    default: jx_fail(R, line, "object of type %s has no length", jx_type_name(v));
    }
}

/* lower-cased copy of strings for case-insensitive comparisons */
static jx_val fold(struct jx_render *R, jx_val v, bool case_sensitive)
{
    return !case_sensitive && v.t == JX_STR ? jx_case(R, v, 0) : v;
}

/* stable insertion sort of l by key (attribute path or none) */
static void sort_list(struct jx_render *R, int line, struct jx_list *l, const char *attr, bool cs, bool rev,
                      int by_value_of_pair)
{
    for (size_t i = 1; i < l->n; i++)
        for (size_t j = i; j > 0; j--) {
            jx_val a = l->v[j - 1], b = l->v[j];
            if (by_value_of_pair >= 0) {
                a = a.u.l->v[by_value_of_pair];
                b = b.u.l->v[by_value_of_pair];
            } else if (attr) {
                a = attr_path(R, line, a, attr);
                b = attr_path(R, line, b, attr);
            }
            int c = jx_compare(R, line, fold(R, a, cs), fold(R, b, cs));
            if (rev ? c >= 0 : c <= 0)
                break;
            jx_val t = l->v[j];
            l->v[j] = l->v[j - 1];
            l->v[j - 1] = t;
        }
}

static jx_val f_tojson(struct jx_render *R, int line, jx_val v, const jx_val *args, size_t n,
                       const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    jx_val ind = ARG(0, "indent", jx_none()), seps = ARG(99, "separators", jx_none());
    jx_val sk = ARG(99, "sort_keys", jx_bool(false));
    int indent = -1;
    if (ind.t != JX_NONE)
        indent = (int)jx_want_int(R, line, ind, "tojson's indent");
    if (indent > 64)
        jx_fail(R, line, "tojson: indent larger than 64");
    const char *is = indent >= 0 ? "," : ", ", *ks = ": ";
    if (seps.t == JX_LIST) {
        if (seps.u.l->n != 2)
            jx_fail(R, line, "tojson: separators must be a pair of strings");
        is = jx_want_str(R, line, seps.u.l->v[0], "tojson's item separator");
        ks = jx_want_str(R, line, seps.u.l->v[1], "tojson's key separator");
    }
    struct cs_strbuf b = {0};
    jx_to_json(R, line, &b, v, indent, is, ks, jx_truthy(sk));
    return jx_buf_str(R, &b);
}

static jx_val f_join(struct jx_render *R, int line, jx_val v, const jx_val *args, size_t n, const char *const *kwn,
                     const jx_val *kwv, size_t nkw)
{
    jx_val sep = ARG(0, "d", jx_str(R, "")), attr = ARG(1, "attribute", jx_none());
    struct jx_list *l = jx_iterable(R, line, v);
    struct cs_strbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            jx_to_str(&b, sep);
        jx_to_str(&b, attr.t == JX_STR ? attr_path(R, line, l->v[i], attr.u.s->s) : l->v[i]);
    }
    return jx_buf_str(R, &b);
}

static jx_val f_indent(struct jx_render *R, int line, jx_val v, const jx_val *args, size_t n,
                       const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    jx_val w = ARG(0, "width", jx_int(4));
    bool first = jx_truthy(ARG(1, "first", jx_bool(false))), blank = jx_truthy(ARG(2, "blank", jx_bool(false)));
    struct cs_strbuf pad = {0};
    if (w.t == JX_STR)
        cs_strbuf_put(&pad, w.u.s->s);
    else
        for (int64_t i = jx_want_int(R, line, w, "indent's width"); i > 0 && i < 4096; i--)
            cs_strbuf_put(&pad, " ");
    const char *ind = pad.p ? pad.p : "";
    v = jx_stringify(R, v);
    struct cs_strbuf b = {0};
    if (first)
        cs_strbuf_put(&b, ind);
    /* Python: lines = (s + "\n").splitlines(), which is s.split("\n") */
    const char *p = v.u.s->s;
    size_t len = v.u.s->len, st = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != '\n')
            continue;
        if (st > 0) {
            cs_strbuf_put(&b, "\n");
            if (i > st || blank)
                cs_strbuf_put(&b, ind);
        }
        cs_strbuf_put_n(&b, p + st, i - st);
        st = i + 1;
    }
    cs_strbuf_free(&pad);
    return jx_buf_str(R, &b);
}

static jx_val f_round(struct jx_render *R, int line, jx_val v, const jx_val *args, size_t n,
                      const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    int64_t prec = jx_want_int(R, line, ARG(0, "precision", jx_int(0)), "round's precision");
    const char *method = jx_want_str(R, line, ARG(1, "method", jx_str(R, "common")), "round's method");
    if (v.t != JX_INT && v.t != JX_FLOAT && v.t != JX_BOOL)
        jx_fail(R, line, "round needs a number, not %s", jx_type_name(v));
    double x = v.t == JX_FLOAT ? v.u.f : v.t == JX_INT ? (double)v.u.i : v.u.b, m = pow(10, (double)prec);
    if (!strcmp(method, "ceil"))
        return jx_float(ceil(x * m) / m);
    if (!strcmp(method, "floor"))
        return jx_float(floor(x * m) / m);
    if (strcmp(method, "common"))
        jx_fail(R, line, "round: method must be common, ceil or floor");
    return jx_float(nearbyint(x * m) / m); /* Python's round: halves to even */
}

/* select/reject/selectattr/rejectattr: keep items whose test (or truth) is want */
static jx_val f_select(struct jx_render *R, int line, jx_val v, const jx_val *args, size_t n, bool by_attr,
                       bool want)
{
    struct jx_list *l = jx_iterable(R, line, v);
    size_t t0 = by_attr ? 1 : 0;
    const char *attr = by_attr ? jx_want_str(R, line, n ? args[0] : jx_none(), "the attribute name") : NULL;
    const char *test = n > t0 ? jx_want_str(R, line, args[t0], "the test name") : NULL;
    jx_val out = jx_new_list(R);
    for (size_t i = 0; i < l->n; i++) {
        jx_val x = attr ? attr_path(R, line, l->v[i], attr) : l->v[i];
        bool r = test ? jx_apply_test(R, line, test, x, args + t0 + 1, n - t0 - 1) : jx_truthy(x);
        if (r == want)
            jx_list_push(R, out.u.l, l->v[i]);
    }
    return out;
}

static jx_val f_map(struct jx_render *R, int line, jx_val v, const jx_val *args, size_t n, const char *const *kwn,
                    const jx_val *kwv, size_t nkw)
{
    struct jx_list *l = jx_iterable(R, line, v);
    jx_val attr = ARG(99, "attribute", jx_none()), dflt = ARG(99, "default", jx_undef(NULL));
    jx_val out = jx_new_list(R);
    for (size_t i = 0; i < l->n; i++) {
        jx_val x;
        if (attr.t == JX_STR) {
            x = attr_path(R, line, l->v[i], attr.u.s->s);
            if (x.t == JX_UNDEF && dflt.t != JX_UNDEF)
                x = dflt;
        } else {
            if (!n)
                jx_fail(R, line, "map needs a filter name or attribute=");
            x = jx_apply_filter(R, line, jx_want_str(R, line, args[0], "map's filter name"), l->v[i], args + 1,
                                n - 1, NULL, NULL, 0);
        }
        jx_list_push(R, out.u.l, x);
    }
    return out;
}

static jx_val f_num(struct jx_render *R, int line, jx_val v, bool to_int, jx_val dflt)
{
    (void)line;
    switch (v.t) {
    case JX_INT: return to_int ? v : jx_float((double)v.u.i);
    case JX_BOOL: return to_int ? jx_int(v.u.b) : jx_float(v.u.b);
    case JX_FLOAT: return to_int ? jx_int((int64_t)v.u.f) : v;
    case JX_STR: {
        char *end;
        const char *s = v.u.s->s;
        if (to_int) {
            long long i = strtoll(s, &end, 10);
            while (jx_is_space(*end))
                end++;
            if (end != s && !*end)
                return jx_int(i);
        }
        double f = strtod(s, &end);
        while (jx_is_space(*end))
            end++;
        if (end != s && !*end)
            return to_int ? jx_int((int64_t)f) : jx_float(f);
        return dflt;
    }
    default: return dflt;
    }
}

static jx_val f_minmax(struct jx_render *R, int line, jx_val v, bool want_max, const jx_val *args, size_t n,
                       const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    struct jx_list *l = jx_iterable(R, line, v);
    bool cs = jx_truthy(ARG(0, "case_sensitive", jx_bool(false)));
    jx_val attr = ARG(1, "attribute", jx_none());
    if (!l->n)
        return jx_undef(NULL);
    jx_val best = l->v[0];
    for (size_t i = 1; i < l->n; i++) {
        jx_val a = attr.t == JX_STR ? attr_path(R, line, l->v[i], attr.u.s->s) : l->v[i];
        jx_val b = attr.t == JX_STR ? attr_path(R, line, best, attr.u.s->s) : best;
        int c = jx_compare(R, line, fold(R, a, cs), fold(R, b, cs));
        if (want_max ? c > 0 : c < 0)
            best = l->v[i];
    }
    return best;
}

static jx_val f_escape(struct jx_render *R, jx_val v)
{
    v = jx_stringify(R, v);
    struct cs_strbuf b = {0};
    for (size_t i = 0; i < v.u.s->len; i++) {
        char c = v.u.s->s[i];
        const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;"
                      : c == '\'' ? "&#39;" : NULL;
        if (e)
            cs_strbuf_put(&b, e);
        else
            cs_strbuf_put_n(&b, &c, 1);
    }
    return jx_buf_str(R, &b);
}

static jx_val f_seq_end(struct jx_render *R, int line, jx_val v, bool last)
{
    struct jx_list *l = jx_iterable(R, line, v);
    return l->n ? l->v[last ? l->n - 1 : 0] : jx_undef(NULL);
}

static jx_val f_unique(struct jx_render *R, int line, jx_val v, bool cs, jx_val attr)
{
    struct jx_list *l = jx_iterable(R, line, v);
    jx_val out = jx_new_list(R), seen = jx_new_list(R);
    for (size_t i = 0; i < l->n; i++) {
        jx_val k = fold(R, attr.t == JX_STR ? attr_path(R, line, l->v[i], attr.u.s->s) : l->v[i], cs);
        bool dup = false;
        for (size_t j = 0; j < seen.u.l->n && !dup; j++)
            dup = jx_equal(seen.u.l->v[j], k);
        if (!dup) {
            jx_list_push(R, seen.u.l, k);
            jx_list_push(R, out.u.l, l->v[i]);
        }
    }
    return out;
}

static jx_val f_items(struct jx_render *R, int line, jx_val v)
{
    if (v.t == JX_UNDEF)
        return jx_new_list(R);
    if (v.t != JX_DICT)
        jx_fail(R, line, "items needs a mapping, not %s", jx_type_name(v));
    jx_val out = jx_new_list(R);
    for (size_t i = 0; i < v.u.d->n; i++) {
        jx_val p = jx_new_list(R);
        p.u.l->is_tuple = true;
        jx_list_push(R, p.u.l, v.u.d->k[i]);
        jx_list_push(R, p.u.l, v.u.d->v[i]);
        jx_list_push(R, out.u.l, p);
    }
    return out;
}

static jx_val f_wordcount(struct jx_render *R, jx_val v)
{
    v = jx_stringify(R, v);
    int64_t words = 0;
    bool in = false;
    for (size_t i = 0; i < v.u.s->len; i++) {
        unsigned char c = (unsigned char)v.u.s->s[i];
        bool w = c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z');
        if (w && !in)
            words++;
        in = w;
    }
    return jx_int(words);
}

jx_val jx_apply_filter(struct jx_render *R, int line, const char *name, jx_val v, const jx_val *args, size_t n,
                       const char *const *kwn, const jx_val *kwv, size_t nkw)
{
#define IS(s) (strcmp(name, (s)) == 0)
    if (IS("default") || IS("d")) {
        bool boolean = jx_truthy(ARG(1, "boolean", jx_bool(false)));
        return (v.t == JX_UNDEF || (boolean && !jx_truthy(v))) ? ARG(0, "default_value", jx_str(R, "")) : v;
    }
    if (IS("tojson"))
        return f_tojson(R, line, v, args, n, kwn, kwv, nkw);
    if (IS("safe"))
        return v;
    if (IS("string"))
        return jx_stringify(R, v);
    if (IS("length") || IS("count"))
        return jx_int(length(R, line, v));
    if (IS("trim") || IS("upper") || IS("lower") || IS("capitalize") || IS("title") || IS("replace")) {
        v = jx_stringify(R, v);
        if (IS("trim")) {
            jx_val chars = ARG(0, "chars", jx_none());
            return jx_strip(R, v, chars.t == JX_STR ? chars.u.s->s : NULL, true, true);
        }
        if (IS("replace")) {
            jx_val a = jx_stringify(R, ARG(0, "old", jx_str(R, ""))), b = jx_stringify(R, ARG(1, "new", jx_str(R, "")));
            return jx_replace(R, v, a, b, jx_want_int(R, line, ARG(2, "count", jx_int(-1)), "replace's count"));
        }
        return jx_case(R, v, IS("lower") ? 0 : IS("upper") ? 1 : IS("title") ? 2 : 3);
    }
    if (IS("first") || IS("last"))
        return f_seq_end(R, line, v, IS("last"));
    if (IS("join"))
        return f_join(R, line, v, args, n, kwn, kwv, nkw);
    if (IS("int"))
        return f_num(R, line, v, true, ARG(0, "default", jx_int(0)));
    if (IS("float"))
        return f_num(R, line, v, false, ARG(0, "default", jx_float(0)));
    if (IS("abs")) {
        if (v.t == JX_INT)
            return jx_int(v.u.i < 0 ? -v.u.i : v.u.i);
        if (v.t == JX_FLOAT)
            return jx_float(fabs(v.u.f));
        jx_fail(R, line, "abs needs a number, not %s", jx_type_name(v));
    }
    if (IS("round"))
        return f_round(R, line, v, args, n, kwn, kwv, nkw);
    if (IS("list"))
        return to_list(R, line, v);
    if (IS("items"))
        return f_items(R, line, v);
    if (IS("map"))
        return f_map(R, line, v, args, n, kwn, kwv, nkw);
    if (IS("select") || IS("reject"))
        return f_select(R, line, v, args, n, false, IS("select"));
    if (IS("selectattr") || IS("rejectattr"))
        return f_select(R, line, v, args, n, true, IS("selectattr"));
    if (IS("unique"))
        return f_unique(R, line, v, jx_truthy(ARG(0, "case_sensitive", jx_bool(false))),
                        ARG(1, "attribute", jx_none()));
    if (IS("sort") || IS("dictsort")) {
        bool dict = IS("dictsort");
        jx_val l = dict ? f_items(R, line, v) : to_list(R, line, v);
        bool cs = jx_truthy(ARG(dict ? 0 : 1, "case_sensitive", jx_bool(false)));
        bool rev = jx_truthy(ARG(dict ? 2 : 0, "reverse", jx_bool(false)));
        jx_val attr = dict ? jx_none() : ARG(2, "attribute", jx_none());
        jx_val by = dict ? ARG(1, "by", jx_str(R, "key")) : jx_none();
        int pair = dict ? (by.t == JX_STR && !strcmp(by.u.s->s, "value") ? 1 : 0) : -1;
        sort_list(R, line, l.u.l, attr.t == JX_STR ? attr.u.s->s : NULL, cs, rev, pair);
        return l;
    }
    if (IS("reverse")) {
        if (v.t == JX_STR) {
            struct jx_list *cps = jx_iterable(R, line, v);
            struct cs_strbuf b = {0};
            for (size_t i = cps->n; i > 0; i--)
                jx_to_str(&b, cps->v[i - 1]);
            return jx_buf_str(R, &b);
        }
        jx_val l = to_list(R, line, v), out = jx_new_list(R);
        for (size_t i = l.u.l->n; i > 0; i--)
            jx_list_push(R, out.u.l, l.u.l->v[i - 1]);
        return out;
    }
    if (IS("sum")) {
        struct jx_list *l = jx_iterable(R, line, v);
        jx_val attr = ARG(0, "attribute", jx_none()), acc = ARG(1, "start", jx_int(0));
        for (size_t i = 0; i < l->n; i++) {
            jx_val x = attr.t == JX_STR ? attr_path(R, line, l->v[i], attr.u.s->s) : l->v[i];
            if ((acc.t != JX_INT && acc.t != JX_FLOAT) || (x.t != JX_INT && x.t != JX_FLOAT))
                jx_fail(R, line, "sum needs numbers, not %s", jx_type_name(x));
            acc = acc.t == JX_INT && x.t == JX_INT ? jx_int(acc.u.i + x.u.i)
                                                   : jx_float((acc.t == JX_INT ? (double)acc.u.i : acc.u.f) +
                                                              (x.t == JX_INT ? (double)x.u.i : x.u.f));
        }
        return acc;
    }
    if (IS("min") || IS("max"))
        return f_minmax(R, line, v, IS("max"), args, n, kwn, kwv, nkw);
    if (IS("indent"))
        return f_indent(R, line, v, args, n, kwn, kwv, nkw);
    if (IS("wordcount"))
        return f_wordcount(R, v);
    if (IS("escape") || IS("e"))
        return f_escape(R, v);
    jx_fail(R, line, "unknown filter '%s'", name);
#undef IS
}

bool jx_apply_test(struct jx_render *R, int line, const char *name, jx_val v, const jx_val *args, size_t n)
{
#define IS(s) (strcmp(name, (s)) == 0)
    jx_val a = n ? args[0] : jx_undef(NULL);
    if (IS("defined"))
        return v.t != JX_UNDEF;
    if (IS("undefined"))
        return v.t == JX_UNDEF;
    if (IS("none"))
        return v.t == JX_NONE;
    if (IS("string"))
        return v.t == JX_STR;
    if (IS("number"))
        return v.t == JX_INT || v.t == JX_FLOAT || v.t == JX_BOOL;
    if (IS("integer"))
        return v.t == JX_INT;
    if (IS("float"))
        return v.t == JX_FLOAT;
    if (IS("boolean"))
        return v.t == JX_BOOL;
    if (IS("true") || IS("false"))
        return v.t == JX_BOOL && v.u.b == IS("true");
    if (IS("mapping"))
        return v.t == JX_DICT;
    if (IS("iterable"))
        return v.t == JX_STR || v.t == JX_LIST || v.t == JX_DICT || v.t == JX_UNDEF;
    if (IS("sequence"))
        return v.t == JX_STR || v.t == JX_LIST || v.t == JX_DICT;
    if (IS("callable"))
        return v.t == JX_FUNC;
    if (IS("equalto") || IS("eq") || IS("==") || IS("sameas"))
        return jx_equal(v, a);
    if (IS("ne") || IS("!="))
        return !jx_equal(v, a);
    if (IS("lt") || IS("lessthan"))
        return jx_compare(R, line, v, a) < 0;
    if (IS("le"))
        return jx_compare(R, line, v, a) <= 0;
    if (IS("gt") || IS("greaterthan"))
        return jx_compare(R, line, v, a) > 0;
    if (IS("ge"))
        return jx_compare(R, line, v, a) >= 0;
    if (IS("in")) {
        if (a.t == JX_STR && v.t == JX_STR)
            return strstr(a.u.s->s, v.u.s->s) != NULL;
        struct jx_list *l = jx_iterable(R, line, a);
        for (size_t i = 0; i < l->n; i++)
            if (jx_equal(l->v[i], v))
                return true;
        return false;
    }
    if (IS("odd") || IS("even") || IS("divisibleby")) {
        int64_t x = jx_want_int(R, line, v, name);
        if (IS("divisibleby")) {
            int64_t d = jx_want_int(R, line, a, "divisibleby's argument");
            return d != 0 && x % d == 0;
        }
        return (x % 2 != 0) == IS("odd");
    }
    if (IS("lower") || IS("upper")) {
        if (v.t != JX_STR)
            return false;
        jx_val c = jx_case(R, v, IS("upper"));
        return jx_equal(c, v);
    }
    jx_fail(R, line, "unknown test '%s'", name);
#undef IS
}
