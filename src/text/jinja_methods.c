/* jinja_methods.c: the Python methods templates call on strings, lists and
 * dicts (strip, split, startswith, items, get, append, ...), the globals
 * (range, namespace, dict, raise_exception, strftime_now) and the argument
 * helpers the filters share. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "text/jinja_builtins.h"

jx_val jx_arg(const jx_val *args, size_t n, const char *const *kwn, const jx_val *kwv, size_t nkw, size_t idx,
              const char *name, jx_val dflt)
{
    if (idx < n)
        return args[idx];
    for (size_t i = 0; name && i < nkw; i++)
        if (!strcmp(kwn[i], name))
            return kwv[i];
    return dflt;
}

const char *jx_want_str(struct jx_render *R, int line, jx_val v, const char *what)
{
    if (v.t != JX_STR)
        jx_fail(R, line, "%s must be a string, not %s", what, jx_type_name(v));
    return v.u.s->s;
}

int64_t jx_want_int(struct jx_render *R, int line, jx_val v, const char *what)
{
    if (v.t == JX_INT)
        return v.u.i;
    if (v.t == JX_BOOL)
        return v.u.b;
    jx_fail(R, line, "%s must be an integer, not %s", what, jx_type_name(v));
}

jx_val jx_buf_str(struct jx_render *R, struct cs_strbuf *b)
{
    if (b->oom) {
        cs_strbuf_free(b);
        jx_fail(R, 0, "out of memory");
    }
    jx_val s = jx_str_n(R, b->p ? b->p : "", b->len);
    cs_strbuf_free(b);
    return s;
}

bool jx_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* strips the characters of chars (NULL: whitespace) from the ends of s */
jx_val jx_strip(struct jx_render *R, jx_val s, const char *chars, bool left, bool right)
{
    const char *p = s.u.s->s;
    size_t a = 0, b = s.u.s->len;
#define STRIPPABLE(c) (chars ? strchr(chars, (c)) != NULL && (c) != 0 : jx_is_space(c))
    while (left && a < b && STRIPPABLE(p[a]))
        a++;
    while (right && b > a && STRIPPABLE(p[b - 1]))
        b--;
#undef STRIPPABLE
    return jx_str_n(R, p + a, b - a);
}

jx_val jx_case(struct jx_render *R, jx_val s, int mode)
{
    jx_val r = jx_str_n(R, s.u.s->s, s.u.s->len);
    char *p = r.u.s->s;
    bool word_start = true;
    for (size_t i = 0; i < r.u.s->len; i++) {
        char c = p[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool up = mode == 1 || ((mode == 2 || mode == 3) && word_start);
        if (mode == 3 && i > 0)
            up = false;
        if (alpha)
            p[i] = up ? (char)(c >= 'a' && c <= 'z' ? c - 32 : c) : (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        word_start = mode == 2 ? !(alpha || (unsigned char)c >= 0x80 || (c >= '0' && c <= '9') || c == '\'') : false;
    }
    return r;
}

jx_val jx_replace(struct jx_render *R, jx_val s, jx_val old, jx_val new, int64_t count)
{
    struct cs_strbuf b = {0};
    const char *p = s.u.s->s;
    size_t n = s.u.s->len, on = old.u.s->len, i = 0;
    int64_t done = 0;
    while (i <= n) {
        if ((count < 0 || done < count) && i + on <= n && memcmp(p + i, old.u.s->s, on) == 0) {
            cs_strbuf_put_n(&b, new.u.s->s, new.u.s->len);
            if (on == 0) {
                if (i < n)
                    cs_strbuf_put_n(&b, p + i, 1);
                i++;
            } else {
                i += on;
            }
            done++;
        } else {
            if (i < n)
                cs_strbuf_put_n(&b, p + i, 1);
            i++;
        }
    }
    return jx_buf_str(R, &b);
}

static jx_val split(struct jx_render *R, int line, jx_val s, jx_val sepv, int64_t maxsplit)
{
    jx_val out = jx_new_list(R);
    const char *p = s.u.s->s;
    size_t n = s.u.s->len;
    if (sepv.t == JX_NONE || sepv.t == JX_UNDEF) {
        size_t i = 0;
        while (i < n) {
            while (i < n && jx_is_space(p[i]))
                i++;
            if (i >= n)
                break;
            size_t j = i;
            if (maxsplit >= 0 && (int64_t)out.u.l->n >= maxsplit) {
                size_t e = n;
                while (e > i && jx_is_space(p[e - 1]))
                    e--;
                jx_list_push(R, out.u.l, jx_str_n(R, p + i, e - i));
                break;
            }
            while (j < n && !jx_is_space(p[j]))
                j++;
            jx_list_push(R, out.u.l, jx_str_n(R, p + i, j - i));
            i = j;
        }
        return out;
    }
    const char *sep = jx_want_str(R, line, sepv, "split's separator");
    size_t sn = sepv.u.s->len, st = 0;
    if (sn == 0)
        jx_fail(R, line, "split: empty separator");
    for (size_t i = 0; i + sn <= n;) {
        if ((maxsplit < 0 || (int64_t)out.u.l->n < maxsplit) && memcmp(p + i, sep, sn) == 0) {
            jx_list_push(R, out.u.l, jx_str_n(R, p + st, i - st));
            i += sn;
            st = i;
        } else {
            i++;
        }
    }
    jx_list_push(R, out.u.l, jx_str_n(R, p + st, n - st));
    return out;
}

static bool affix(jx_val s, jx_val a, bool end)
{
    if (a.t != JX_STR || a.u.s->len > s.u.s->len)
        return false;
    size_t off = end ? s.u.s->len - a.u.s->len : 0;
    return memcmp(s.u.s->s + off, a.u.s->s, a.u.s->len) == 0;
}

static jx_val str_method(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                         const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    jx_val s = f->self, a0 = jx_arg(args, n, kwn, kwv, nkw, 0, NULL, jx_none());
    const char *m = f->name;
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        const char *chars = a0.t == JX_NONE ? NULL : jx_want_str(R, line, a0, "strip's argument");
        return jx_strip(R, s, chars, m[0] != 'r', m[0] != 'l');
    }
    if (!strcmp(m, "upper"))
        return jx_case(R, s, 1);
    if (!strcmp(m, "lower"))
        return jx_case(R, s, 0);
    if (!strcmp(m, "title"))
        return jx_case(R, s, 2);
    if (!strcmp(m, "capitalize"))
        return jx_case(R, s, 3);
    if (!strcmp(m, "split")) {
        jx_val sep = jx_arg(args, n, kwn, kwv, nkw, 0, "sep", jx_none());
        jx_val mx = jx_arg(args, n, kwn, kwv, nkw, 1, "maxsplit", jx_int(-1));
        return split(R, line, s, sep, jx_want_int(R, line, mx, "maxsplit"));
    }
    if (!strcmp(m, "splitlines")) {
        jx_val out = jx_new_list(R);
        const char *p = s.u.s->s;
        size_t len = s.u.s->len, st = 0;
        for (size_t i = 0; i < len; i++)
            if (p[i] == '\n' || p[i] == '\r') {
                jx_list_push(R, out.u.l, jx_str_n(R, p + st, i - st));
                if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
                    i++;
                st = i + 1;
            }
        if (st < len)
            jx_list_push(R, out.u.l, jx_str_n(R, p + st, len - st));
        return out;
    }
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        bool end = m[0] == 'e';
        if (a0.t == JX_LIST) {
            for (size_t i = 0; i < a0.u.l->n; i++)
                if (affix(s, a0.u.l->v[i], end))
                    return jx_bool(true);
            return jx_bool(false);
        }
        jx_want_str(R, line, a0, m);
        return jx_bool(affix(s, a0, end));
    }
    if (!strcmp(m, "replace")) {
        jx_val b = jx_arg(args, n, kwn, kwv, nkw, 1, NULL, jx_none());
        jx_val c = jx_arg(args, n, kwn, kwv, nkw, 2, NULL, jx_int(-1));
        jx_want_str(R, line, a0, "replace's first argument");
        jx_want_str(R, line, b, "replace's second argument");
        return jx_replace(R, s, a0, b, jx_want_int(R, line, c, "replace's count"));
    }
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "count") || !strcmp(m, "index")) {
        jx_want_str(R, line, a0, m);
        const char *p = s.u.s->s;
        size_t len = s.u.s->len, an = a0.u.s->len;
        int64_t found = -1, cnt = 0;
        for (size_t i = 0; i + an <= len; i++)
            if (memcmp(p + i, a0.u.s->s, an) == 0) {
                if (found < 0 || m[0] == 'r')
                    found = (int64_t)jx_utf8_len(p, i);
                cnt++;
                if (an && m[0] == 'c')
                    i += an - 1;
            }
        if (m[0] == 'c')
            return jx_int(cnt);
        if (m[0] == 'i' && found < 0)
            jx_fail(R, line, "substring not found");
        return jx_int(found);
    }
    if (!strcmp(m, "join")) {
        struct jx_list *l = jx_iterable(R, line, a0);
        struct cs_strbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                cs_strbuf_put_n(&b, s.u.s->s, s.u.s->len);
            jx_to_str(&b, l->v[i]);
        }
        return jx_buf_str(R, &b);
    }
    if (!strcmp(m, "format")) { /* "{}" and "{0}" placeholders */
        struct cs_strbuf b = {0};
        const char *p = s.u.s->s;
        size_t next = 0;
        for (size_t i = 0; i < s.u.s->len; i++) {
            if (p[i] == '{' && p[i + 1] == '{') {
                cs_strbuf_put(&b, "{");
                i++;
            } else if (p[i] == '}' && p[i + 1] == '}') {
                cs_strbuf_put(&b, "}");
                i++;
            } else if (p[i] == '{') {
                const char *e = strchr(p + i, '}');
                if (!e)
                    jx_fail(R, line, "format: unmatched '{'");
                size_t idx = e == p + i + 1 ? next++ : (size_t)strtoul(p + i + 1, NULL, 10);
                jx_val v = jx_undef(NULL);
                if (idx < n)
                    v = args[idx];
                else
                    jx_fail(R, line, "format: no argument %zu", idx);
                jx_to_str(&b, v);
                i = (size_t)(e - p);
            } else {
                cs_strbuf_put_n(&b, p + i, 1);
            }
        }
        return jx_buf_str(R, &b);
    }
    if (!strcmp(m, "isdigit") || !strcmp(m, "isspace") || !strcmp(m, "isalpha")) {
        if (s.u.s->len == 0)
            return jx_bool(false);
        for (size_t i = 0; i < s.u.s->len; i++) {
            char c = s.u.s->s[i];
            bool ok = m[2] == 'd' ? (c >= '0' && c <= '9') : m[2] == 's' ? jx_is_space(c)
                                                                      : ((c | 32) >= 'a' && (c | 32) <= 'z');
            if (!ok)
                return jx_bool(false);
        }
        return jx_bool(true);
    }
    jx_fail(R, line, "string has no method '%s'", m);
}

static jx_val list_method(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                          const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    struct jx_list *l = f->self.u.l;
    const char *m = f->name;
    jx_val a0 = jx_arg(args, n, kwn, kwv, nkw, 0, NULL, jx_undef(NULL));
    if (!strcmp(m, "append")) {
        jx_list_push(R, l, a0);
        return jx_none();
    }
    if (!strcmp(m, "extend")) {
        struct jx_list *o = jx_iterable(R, line, a0);
        for (size_t i = 0; i < o->n; i++)
            jx_list_push(R, l, o->v[i]);
        return jx_none();
    }
    if (!strcmp(m, "insert")) {
        int64_t at = jx_want_int(R, line, a0, "insert's index");
        jx_val v = jx_arg(args, n, kwn, kwv, nkw, 1, NULL, jx_none());
        if (at < 0)
            at += (int64_t)l->n;
        at = at < 0 ? 0 : at > (int64_t)l->n ? (int64_t)l->n : at;
        jx_list_push(R, l, v);
        memmove(l->v + at + 1, l->v + at, (l->n - 1 - (size_t)at) * sizeof *l->v);
        l->v[at] = v;
        return jx_none();
    }
    if (!strcmp(m, "pop")) {
        if (l->n == 0)
            jx_fail(R, line, "pop from an empty list");
        int64_t at = a0.t == JX_UNDEF ? (int64_t)l->n - 1 : jx_want_int(R, line, a0, "pop's index");
        if (at < 0)
            at += (int64_t)l->n;
        if (at < 0 || at >= (int64_t)l->n)
            jx_fail(R, line, "pop index out of range");
        jx_val v = l->v[at];
        memmove(l->v + at, l->v + at + 1, (l->n - 1 - (size_t)at) * sizeof *l->v);
        l->n--;
        return v;
    }
    if (!strcmp(m, "index") || !strcmp(m, "count")) {
        int64_t cnt = 0;
        for (size_t i = 0; i < l->n; i++)
            if (jx_equal(l->v[i], a0)) {
                if (m[0] == 'i')
                    return jx_int((int64_t)i);
                cnt++;
            }
        if (m[0] == 'i')
            jx_fail(R, line, "value is not in the list");
        return jx_int(cnt);
    }
    if (!strcmp(m, "reverse")) {
        for (size_t i = 0; i < l->n / 2; i++) {
            jx_val t = l->v[i];
            l->v[i] = l->v[l->n - 1 - i];
            l->v[l->n - 1 - i] = t;
        }
        return jx_none();
    }
    jx_fail(R, line, "list has no method '%s'", m);
}

static jx_val dict_method(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                          const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    struct jx_dict *d = f->self.u.d;
    const char *m = f->name;
    jx_val a0 = jx_arg(args, n, kwn, kwv, nkw, 0, NULL, jx_undef(NULL));
    jx_val a1 = jx_arg(args, n, kwn, kwv, nkw, 1, NULL, jx_none());
    jx_val v;
    if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
        jx_val out = jx_new_list(R);
        for (size_t i = 0; i < d->n; i++) {
            if (m[0] == 'k') {
                jx_list_push(R, out.u.l, d->k[i]);
            } else if (m[0] == 'v') {
                jx_list_push(R, out.u.l, d->v[i]);
            } else {
                jx_val pair = jx_new_list(R);
                pair.u.l->is_tuple = true;
                jx_list_push(R, pair.u.l, d->k[i]);
                jx_list_push(R, pair.u.l, d->v[i]);
                jx_list_push(R, out.u.l, pair);
            }
        }
        return out;
    }
    if (!strcmp(m, "get"))
        return jx_dict_get(d, a0, &v) ? v : a1;
    if (!strcmp(m, "setdefault")) {
        if (jx_dict_get(d, a0, &v))
            return v;
        jx_dict_set(R, d, a0, a1);
        return a1;
    }
    if (!strcmp(m, "pop")) {
        for (size_t i = 0; i < d->n; i++)
            if (jx_equal(d->k[i], a0)) {
                v = d->v[i];
                memmove(d->k + i, d->k + i + 1, (d->n - 1 - i) * sizeof *d->k);
                memmove(d->v + i, d->v + i + 1, (d->n - 1 - i) * sizeof *d->v);
                d->n--;
                return v;
            }
        if (n < 2)
            jx_fail(R, line, "pop: key not in the dict");
        return a1;
    }
    if (!strcmp(m, "copy")) {
        jx_val c = jx_new_dict(R);
        for (size_t i = 0; i < d->n; i++)
            jx_dict_set(R, c.u.d, d->k[i], d->v[i]);
        return c;
    }
    if (!strcmp(m, "update")) {
        if (a0.t == JX_DICT)
            for (size_t i = 0; i < a0.u.d->n; i++)
                jx_dict_set(R, d, a0.u.d->k[i], a0.u.d->v[i]);
        for (size_t i = 0; i < nkw; i++)
            jx_dict_set_s(R, d, kwn[i], kwv[i]);
        return jx_none();
    }
    jx_fail(R, line, "dict has no method '%s'", m);
}

jx_val jx_method(struct jx_render *R, int line, jx_val obj, const char *name)
{
    (void)line;
    jx_builtin_fn fn = obj.t == JX_STR ? str_method : obj.t == JX_LIST ? list_method : dict_method;
    static const char *str_names[] = {"strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize",
                                      "split", "splitlines", "startswith", "endswith", "replace", "find", "rfind",
                                      "count", "index", "join", "format", "isdigit", "isspace", "isalpha"};
    static const char *list_names[] = {"append", "extend", "insert", "pop", "index", "count", "reverse"};
    static const char *dict_names[] = {"items", "keys", "values", "get", "update", "pop", "copy", "setdefault"};
    const char **names = obj.t == JX_STR ? str_names : obj.t == JX_LIST ? list_names : dict_names;
    size_t nn = obj.t == JX_STR ? CS_ARRAY_LEN(str_names) : obj.t == JX_LIST ? CS_ARRAY_LEN(list_names)
                                                                             : CS_ARRAY_LEN(dict_names);
    for (size_t i = 0; i < nn; i++)
        if (!strcmp(names[i], name))
            return jx_new_func(R, JX_FN_METHOD, names[i], fn, obj, NULL);
    return jx_undef(name);
}

/* ---- globals ---- */
static jx_val g_range(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                      const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    (void)f, (void)kwn, (void)kwv, (void)nkw;
    if (n < 1 || n > 3)
        jx_fail(R, line, "range takes 1 to 3 arguments, %zu given", n);
    int64_t a = 0, b, s = 1;
    if (n == 1) {
        b = jx_want_int(R, line, args[0], "range's argument");
    } else {
        a = jx_want_int(R, line, args[0], "range's start");
        b = jx_want_int(R, line, args[1], "range's stop");
        if (n == 3)
            s = jx_want_int(R, line, args[2], "range's step");
    }
    if (s == 0)
        jx_fail(R, line, "range's step must not be zero");
    jx_val out = jx_new_list(R);
    for (int64_t i = a; s > 0 ? i < b : i > b; i += s) {
        if (out.u.l->n >= 1000000)
            jx_fail(R, line, "range larger than 1000000 items");
        jx_list_push(R, out.u.l, jx_int(i));
    }
    return out;
}

static jx_val g_dict(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                     const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    jx_val d = jx_new_dict(R);
    d.u.d->is_ns = !strcmp(f->name, "namespace");
    if (n > 1)
        jx_fail(R, line, "%s takes at most one positional argument", f->name);
    if (n == 1 && args[0].t == JX_DICT)
        for (size_t i = 0; i < args[0].u.d->n; i++)
            jx_dict_set(R, d.u.d, args[0].u.d->k[i], args[0].u.d->v[i]);
    else if (n == 1)
        jx_fail(R, line, "%s's argument must be a dict, not %s", f->name, jx_type_name(args[0]));
    for (size_t i = 0; i < nkw; i++)
        jx_dict_set_s(R, d.u.d, kwn[i], kwv[i]);
    return d;
}

static jx_val g_raise(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                      const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    (void)f;
    jx_val msg = jx_stringify(R, jx_arg(args, n, kwn, kwv, nkw, 0, "message", jx_str(R, "error")));
    jx_fail(R, line, "raise_exception: %s", msg.u.s->s);
}

static jx_val g_strftime(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args, size_t n,
                         const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    (void)f;
    const char *fmt = jx_want_str(R, line, jx_arg(args, n, kwn, kwv, nkw, 0, "format", jx_none()),
                                  "strftime_now's format");
    time_t t = (time_t)R->now;
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[256];
    size_t len = strftime(buf, sizeof buf, fmt, &tm);
    return jx_str_n(R, buf, len);
}

void jx_install_globals(struct jx_render *R, struct jx_dict *g)
{
    jx_dict_set_s(R, g, "range", jx_new_func(R, JX_FN_BUILTIN, "range", g_range, jx_none(), NULL));
    jx_dict_set_s(R, g, "dict", jx_new_func(R, JX_FN_BUILTIN, "dict", g_dict, jx_none(), NULL));
    jx_dict_set_s(R, g, "namespace", jx_new_func(R, JX_FN_BUILTIN, "namespace", g_dict, jx_none(), NULL));
    jx_dict_set_s(R, g, "raise_exception", jx_new_func(R, JX_FN_BUILTIN, "raise_exception", g_raise, jx_none(), NULL));
    jx_dict_set_s(R, g, "strftime_now", jx_new_func(R, JX_FN_BUILTIN, "strftime_now", g_strftime, jx_none(), NULL));
}
