/* jinja_eval.c: the evaluator (AST -> text) and the module's entry points
 * (compile, render, free). Scopes follow Jinja: a for loop body and a macro
 * call get their own frame ("set" inside them does not leak out, which is
 * why templates use namespace()), if blocks do not. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/jinja_impl.h"

#define JX_ARENA_LIMIT ((size_t)256 << 20)
#define JX_OUTPUT_LIMIT ((size_t)64 << 20)
#define JX_MAX_CAPS (2 * JX_MAX_DEPTH + 8)

/* the render state plus the capture buffers of set blocks and macro calls
 * (kept here so that a failure frees them all) */
struct jx_run {
    struct jx_render R;
    struct cs_strbuf main;
    struct cs_strbuf caps[JX_MAX_CAPS];
    int ncaps;
};

static struct jx_run *run_of(struct jx_render *R) { return (struct jx_run *)R; }

static void capture_begin(struct jx_render *R, int line)
{
    struct jx_run *X = run_of(R);
    if (X->ncaps == JX_MAX_CAPS)
        jx_fail(R, line, "blocks and macro calls nested deeper than %d", JX_MAX_CAPS);
    memset(&X->caps[X->ncaps], 0, sizeof X->caps[0]);
    R->out = &X->caps[X->ncaps++];
}

static jx_val capture_end(struct jx_render *R)
{
    struct jx_run *X = run_of(R);
    struct cs_strbuf *b = &X->caps[--X->ncaps];
    R->out = X->ncaps ? &X->caps[X->ncaps - 1] : &X->main;
    if (b->oom) {
        cs_strbuf_free(b);
        jx_fail(R, 0, "out of memory");
    }
    jx_val s = jx_str_n(R, b->p ? b->p : "", b->len);
    cs_strbuf_free(b);
    return s;
}

static void out_put(struct jx_render *R, int line, const char *s, size_t n)
{
    cs_strbuf_put_n(R->out, s, n);
    if (R->out->oom || R->out->len > JX_OUTPUT_LIMIT)
        jx_fail(R, line, "output larger than %zu MiB", JX_OUTPUT_LIMIT >> 20);
}

/* ---- scopes ---- */
static void push_frame(struct jx_render *R, struct jx_frame *parent)
{
    struct jx_frame *f = jx_ralloc(R, sizeof *f);
    f->vars = jx_new_dict(R).u.d;
    f->parent = parent;
    R->scope = f;
}

jx_val jx_lookup(struct jx_render *R, const char *name)
{
    jx_val v;
    for (struct jx_frame *f = R->scope; f; f = f->parent)
        if (jx_dict_get_s(f->vars, name, &v))
            return v;
    return jx_undef(name);
}

static void set_var(struct jx_render *R, const char *name, jx_val v)
{
    jx_dict_set_s(R, R->scope->vars, name, v);
}

/* ---- access ---- */
jx_val jx_getattr(struct jx_render *R, int line, jx_val obj, const char *name)
{
    static const char *dict_methods[] = {"items", "keys", "values", "get", "update", "pop", "copy", "setdefault"};
    jx_val v;
    switch (obj.t) {
    case JX_UNDEF:
        jx_fail(R, line, "'%s' is undefined (reading its attribute '%s')",
                obj.u.undef_name ? obj.u.undef_name : "value", name);
    case JX_DICT:
        if (!obj.u.d->is_ns)
            for (size_t i = 0; i < CS_ARRAY_LEN(dict_methods); i++)
                if (!strcmp(name, dict_methods[i]))
                    return jx_method(R, line, obj, name);
        return jx_dict_get_s(obj.u.d, name, &v) ? v : jx_undef(name);
    case JX_STR:
    case JX_LIST: return jx_method(R, line, obj, name);
    default: return jx_undef(name);
    }
}

static bool index_of(jx_val key, size_t n, size_t *out)
{
    if (key.t != JX_INT && key.t != JX_BOOL)
        return false;
    int64_t i = key.t == JX_INT ? key.u.i : key.u.b;
    if (i < 0)
        i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n)
        return false;
    *out = (size_t)i;
    return true;
}

jx_val jx_getitem(struct jx_render *R, int line, jx_val obj, jx_val key)
{
    jx_val v;
    size_t i;
    switch (obj.t) {
    case JX_UNDEF:
        jx_fail(R, line, "'%s' is undefined (reading an item of it)", obj.u.undef_name ? obj.u.undef_name : "value");
    case JX_DICT:
        if (jx_dict_get(obj.u.d, key, &v))
            return v;
        break;
    case JX_LIST:
        if (index_of(key, obj.u.l->n, &i))
            return obj.u.l->v[i];
        break;
    case JX_STR: {
        struct jx_list *cps = jx_iterable(R, line, obj);
        if (index_of(key, cps->n, &i))
            return cps->v[i];
        break;
    }
    default: break;
    }
    if (key.t == JX_STR && obj.t != JX_DICT)
        return jx_getattr(R, line, obj, key.u.s->s);
    return jx_undef(NULL);
}

static int64_t slice_arg(struct jx_render *R, const struct jx_node *n, int64_t dflt, bool *given)
{
    *given = false;
    if (!n)
        return dflt;
    jx_val v = jx_eval(R, n);
    if (v.t == JX_NONE)
        return dflt;
    if (v.t != JX_INT)
        jx_fail(R, n->line, "slice indices must be integers, not %s", jx_type_name(v));
    *given = true;
    return v.u.i;
}

static jx_val eval_slice(struct jx_render *R, const struct jx_node *n)
{
    jx_val obj = jx_eval(R, n->d);
    if (obj.t != JX_LIST && obj.t != JX_STR)
        jx_fail(R, n->line, "cannot slice a %s", jx_type_name(obj));
    struct jx_list *src = jx_iterable(R, n->line, obj);
    int64_t len = (int64_t)src->n;
    bool g;
    int64_t step = slice_arg(R, n->c, 1, &g);
    if (step == 0)
        jx_fail(R, n->line, "slice step cannot be zero");
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? len : len - 1;
    int64_t start = slice_arg(R, n->a, step > 0 ? 0 : len - 1, &g);
    if (g) {
        start = start < 0 ? start + len : start;
        start = start < lo ? lo : start > hi ? hi : start;
    }
    int64_t stop = slice_arg(R, n->b, step > 0 ? len : -1, &g);
    if (g) {
        stop = stop < 0 ? stop + len : stop;
        stop = stop < lo ? lo : stop > hi ? hi : stop;
    }
    jx_val res = jx_new_list(R);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
        jx_list_push(R, res.u.l, src->v[i]);
    if (obj.t == JX_LIST)
        return res;
    struct cs_strbuf b = {0};
    for (size_t i = 0; i < res.u.l->n; i++)
        jx_to_str(&b, res.u.l->v[i]);
    jx_val s = jx_str_n(R, b.p ? b.p : "", b.len);
    cs_strbuf_free(&b);
    return s;
}

/* ---- operators ---- */
static bool numeric(jx_val v) { return v.t == JX_INT || v.t == JX_FLOAT || v.t == JX_BOOL; }
/* the number of a numeric value (numeric()); 0 for any other */
static double as_f(jx_val v)
{
    return v.t == JX_FLOAT ? v.u.f : v.t == JX_INT ? (double)v.u.i : v.t == JX_BOOL ? v.u.b : 0.0;
}
static int64_t as_i(jx_val v) { return v.t == JX_INT ? v.u.i : v.t == JX_BOOL ? v.u.b : 0; }

static jx_val concat(struct jx_render *R, jx_val a, jx_val b)
{
    struct cs_strbuf s = {0};
    jx_to_str(&s, a);
    jx_to_str(&s, b);
    jx_val r = jx_str_n(R, s.p ? s.p : "", s.len);
    cs_strbuf_free(&s);
    return r;
}

static bool contains(struct jx_render *R, int line, jx_val hay, jx_val x)
{
    switch (hay.t) {
    case JX_STR:
        if (x.t != JX_STR)
            jx_fail(R, line, "'in <string>' requires a string on the left, not %s", jx_type_name(x));
        if (x.u.s->len == 0)
            return true;
        for (size_t i = 0; i + x.u.s->len <= hay.u.s->len; i++)
            if (!memcmp(hay.u.s->s + i, x.u.s->s, x.u.s->len))
                return true;
        return false;
    case JX_LIST:
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jx_equal(hay.u.l->v[i], x))
                return true;
        return false;
    case JX_DICT: {
        jx_val v;
        return jx_dict_get(hay.u.d, x, &v);
    }
    case JX_UNDEF: return false;
    default: jx_fail(R, line, "argument of type %s is not iterable", jx_type_name(hay));
    }
}

static jx_val repeat(struct jx_render *R, int line, jx_val seq, int64_t n)
{
    if (n < 0)
        n = 0;
    if (seq.t == JX_STR) {
        if (n && seq.u.s->len * (uint64_t)n > JX_OUTPUT_LIMIT)
            jx_fail(R, line, "string repetition too large");
        struct cs_strbuf b = {0};
        for (int64_t i = 0; i < n; i++)
            cs_strbuf_put_n(&b, seq.u.s->s, seq.u.s->len);
        jx_val r = jx_str_n(R, b.p ? b.p : "", b.len);
        cs_strbuf_free(&b);
        return r;
    }
    if (n && seq.u.l->n * (uint64_t)n > 1000000)
        jx_fail(R, line, "list repetition too large");
    jx_val r = jx_new_list(R);
    for (int64_t i = 0; i < n; i++)
        for (size_t j = 0; j < seq.u.l->n; j++)
            jx_list_push(R, r.u.l, seq.u.l->v[j]);
    return r;
}

static jx_val arith(struct jx_render *R, int line, const char *op, jx_val a, jx_val b)
{
    if (numeric(a) && numeric(b)) {
        bool ints = a.t != JX_FLOAT && b.t != JX_FLOAT;
        int64_t x = as_i(a), y = as_i(b), r;
        double fx = as_f(a), fy = as_f(b);
        switch (op[0]) {
        case '+':
            if (ints && !__builtin_add_overflow(x, y, &r))
                return jx_int(r);
            return jx_float(fx + fy);
        case '-':
            if (ints && !__builtin_sub_overflow(x, y, &r))
                return jx_int(r);
            return jx_float(fx - fy);
        case '*':
            if (op[1] == '*') {
                if (ints && y >= 0) {
                    double p = pow(fx, fy);
                    if (fabs(p) < 9.0e18) {
                        int64_t acc = 1;
                        for (int64_t i = 0; i < y; i++)
                            acc *= x;
                        return jx_int(acc);
                    }
                }
                return jx_float(pow(fx, fy));
            }
            if (ints && !__builtin_mul_overflow(x, y, &r))
                return jx_int(r);
            return jx_float(fx * fy);
        case '/':
            if (fy == 0)
                jx_fail(R, line, "division by zero");
            if (op[1] == '/') {
                if (ints) {
                    int64_t q = x / y;
                    if ((x % y != 0) && ((x < 0) != (y < 0)))
                        q--;
                    return jx_int(q);
                }
                return jx_float(floor(fx / fy));
            }
            return jx_float(fx / fy);
        case '%':
            if (fy == 0)
                jx_fail(R, line, "modulo by zero");
            if (ints) {
                int64_t m = x % y;
                if (m != 0 && ((m < 0) != (y < 0)))
                    m += y;
                return jx_int(m);
            }
            {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0)))
                    m += fy;
                return jx_float(m);
            }
        default: break;
        }
    }
    if (op[0] == '+' && a.t == JX_STR && b.t == JX_STR)
        return concat(R, a, b);
    if (op[0] == '+' && ((a.t == JX_STR && b.t == JX_UNDEF) || (b.t == JX_STR && a.t == JX_UNDEF)))
        return a.t == JX_STR ? a : b; /* llama.cpp's leniency (jinja.h) */
    if (op[0] == '+' && a.t == JX_LIST && b.t == JX_LIST) {
        jx_val r = jx_new_list(R);
        for (size_t i = 0; i < a.u.l->n; i++)
            jx_list_push(R, r.u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            jx_list_push(R, r.u.l, b.u.l->v[i]);
        return r;
    }
    if (!strcmp(op, "*") && (a.t == JX_STR || a.t == JX_LIST) && (b.t == JX_INT || b.t == JX_BOOL))
        return repeat(R, line, a, as_i(b));
    if (!strcmp(op, "*") && (b.t == JX_STR || b.t == JX_LIST) && (a.t == JX_INT || a.t == JX_BOOL))
        return repeat(R, line, b, as_i(a));
    jx_fail(R, line, "unsupported operand types for %s: %s and %s", op, jx_type_name(a), jx_type_name(b));
}

static jx_val eval_bin(struct jx_render *R, const struct jx_node *n)
{
    jx_val a = jx_eval(R, n->a), b = jx_eval(R, n->b);
    const char *op = n->name;
    if (!strcmp(op, "~"))
        return concat(R, a, b);
    if (!strcmp(op, "=="))
        return jx_bool(jx_equal(a, b));
    if (!strcmp(op, "!="))
        return jx_bool(!jx_equal(a, b));
    if (!strcmp(op, "in"))
        return jx_bool(contains(R, n->line, b, a));
    if (!strcmp(op, "notin"))
        return jx_bool(!contains(R, n->line, b, a));
    if (op[0] == '<' || op[0] == '>') {
        int c = jx_compare(R, n->line, a, b);
        if (!strcmp(op, "<"))
            return jx_bool(c < 0);
        if (!strcmp(op, "<="))
            return jx_bool(c <= 0);
        if (!strcmp(op, ">"))
            return jx_bool(c > 0);
        return jx_bool(c >= 0);
    }
    return arith(R, n->line, op, a, b);
}

/* evaluates the arguments of a call, filter or test node */
struct argv {
    jx_val *pos;
    size_t n;
    const char **kwn;
    jx_val *kwv;
    size_t nkw;
};
static struct argv eval_args(struct jx_render *R, const struct jx_node *n, size_t extra_kw)
{
    struct argv a = {0};
    a.n = n->n_kids;
    a.pos = jx_ralloc(R, (a.n + 1) * sizeof *a.pos);
    for (size_t i = 0; i < a.n; i++)
        a.pos[i] = jx_eval(R, n->kids[i]);
    a.nkw = n->n_kw;
    a.kwn = jx_ralloc(R, (a.nkw + extra_kw + 1) * sizeof *a.kwn);
    a.kwv = jx_ralloc(R, (a.nkw + extra_kw + 1) * sizeof *a.kwv);
    for (size_t i = 0; i < a.nkw; i++) {
        a.kwn[i] = n->kw_names[i];
        a.kwv[i] = jx_eval(R, n->kw_vals[i]);
    }
    return a;
}

jx_val jx_eval(struct jx_render *R, const struct jx_node *n)
{
    switch (n->k) {
    case JN_LIT: return n->lit;
    case JN_NAME: return jx_lookup(R, n->name);
    case JN_ATTR: return jx_getattr(R, n->line, jx_eval(R, n->d), n->name);
    case JN_ITEM: {
        jx_val obj = jx_eval(R, n->d);
        return jx_getitem(R, n->line, obj, jx_eval(R, n->a));
    }
    case JN_SLICE: return eval_slice(R, n);
    case JN_CALL: {
        jx_val fn = jx_eval(R, n->d);
        struct argv a = eval_args(R, n, 0);
        return jx_call(R, n->line, fn, a.pos, a.n, a.kwn, a.kwv, a.nkw);
    }
    case JN_FILTER: {
        jx_val v = jx_eval(R, n->d);
        struct argv a = eval_args(R, n, 0);
        return jx_apply_filter(R, n->line, n->name, v, a.pos, a.n, a.kwn, a.kwv, a.nkw);
    }
    case JN_TEST: {
        jx_val v = jx_eval(R, n->d);
        struct argv a = eval_args(R, n, 0);
        bool r = jx_apply_test(R, n->line, n->name, v, a.pos, a.n);
        return jx_bool(n->negated ? !r : r);
    }
    case JN_NOT: return jx_bool(!jx_truthy(jx_eval(R, n->a)));
    case JN_NEG:
    case JN_POS: {
        jx_val v = jx_eval(R, n->a);
        if (!numeric(v))
            jx_fail(R, n->line, "bad operand type for unary %c: %s", n->k == JN_NEG ? '-' : '+', jx_type_name(v));
        if (n->k == JN_POS)
            return v.t == JX_BOOL ? jx_int(v.u.b) : v;
        return v.t == JX_FLOAT ? jx_float(-v.u.f) : jx_int(-as_i(v));
    }
    case JN_BIN: return eval_bin(R, n);
    case JN_AND: {
        jx_val a = jx_eval(R, n->a);
        return jx_truthy(a) ? jx_eval(R, n->b) : a;
    }
    case JN_OR: {
        jx_val a = jx_eval(R, n->a);
        return jx_truthy(a) ? a : jx_eval(R, n->b);
    }
    case JN_COND:
        if (jx_truthy(jx_eval(R, n->a)))
            return jx_eval(R, n->b);
        return n->c ? jx_eval(R, n->c) : jx_undef(NULL);
    case JN_LIST:
    case JN_TUPLE: {
        jx_val l = jx_new_list(R);
        l.u.l->is_tuple = n->k == JN_TUPLE;
        for (size_t i = 0; i < n->n_kids; i++)
            jx_list_push(R, l.u.l, jx_eval(R, n->kids[i]));
        return l;
    }
    case JN_DICT: {
        jx_val d = jx_new_dict(R);
        for (size_t i = 0; i + 1 < n->n_kids; i += 2) {
            jx_val k = jx_eval(R, n->kids[i]);
            jx_dict_set(R, d.u.d, k, jx_eval(R, n->kids[i + 1]));
        }
        return d;
    }
    default: jx_fail(R, n->line, "internal: statement evaluated as an expression");
    }
}

/* ---- calls ---- */
static jx_val call_macro(struct jx_render *R, int line, const struct jx_node *m, const jx_val *args, size_t n,
                         const char *const *kwn, const jx_val *kwv, size_t nkw)
{
    if (R->depth >= JX_MAX_DEPTH)
        jx_fail(R, line, "macro calls nested deeper than %d", JX_MAX_DEPTH);
    bool is_caller = m->k == JN_CALL_BLOCK;
    if (!is_caller && n > m->n_kw)
        jx_fail(R, line, "macro '%s' takes %zu arguments, %zu given", m->name, m->n_kw, n);
    struct jx_frame *saved = R->scope;
    int saved_ctl = R->loop_ctl;
    push_frame(R, R->globals);
    for (size_t i = 0; i < nkw; i++) {
        bool known = !strcmp(kwn[i], "caller");
        for (size_t p = 0; p < m->n_kw && !known; p++)
            known = !strcmp(kwn[i], m->kw_names[p]);
        if (!known && !is_caller)
            jx_fail(R, line, "macro '%s' has no parameter '%s'", m->name, kwn[i]);
        set_var(R, kwn[i], kwv[i]);
    }
    for (size_t p = 0; !is_caller && p < m->n_kw; p++) {
        jx_val v;
        if (p < n)
            set_var(R, m->kw_names[p], args[p]);
        else if (!jx_dict_get_s(R->scope->vars, m->kw_names[p], &v))
            set_var(R, m->kw_names[p], m->kw_vals[p] ? jx_eval(R, m->kw_vals[p]) : jx_undef(m->kw_names[p]));
    }
    R->depth++;
    capture_begin(R, line);
    jx_exec(R, m->b);
    jx_val out = capture_end(R);
    R->depth--;
    R->scope = saved;
    R->loop_ctl = saved_ctl;
    return out;
}

jx_val jx_call(struct jx_render *R, int line, jx_val fn, const jx_val *args, size_t n, const char *const *kwn,
               const jx_val *kwv, size_t nkw)
{
    if (fn.t == JX_UNDEF)
        jx_fail(R, line, "'%s' is undefined (called as a function)", fn.u.undef_name ? fn.u.undef_name : "value");
    if (fn.t != JX_FUNC)
        jx_fail(R, line, "'%s' object is not callable", jx_type_name(fn));
    const struct jx_func *f = fn.u.fn;
    if (f->kind == JX_FN_MACRO)
        return call_macro(R, line, f->macro, args, n, kwn, kwv, nkw);
    return f->fn(R, line, f, args, n, kwn, kwv, nkw);
}

/* ---- statements ---- */
static void bind_targets(struct jx_render *R, int line, const char *const *t, size_t nt, jx_val item)
{
    if (nt == 1) {
        set_var(R, t[0], item);
        return;
    }
    struct jx_list *l = jx_iterable(R, line, item);
    if (l->n != nt)
        jx_fail(R, line, "cannot unpack %zu values into %zu names", l->n, nt);
    for (size_t i = 0; i < nt; i++)
        set_var(R, t[i], l->v[i]);
}

static void exec_for(struct jx_render *R, const struct jx_node *n)
{
    jx_val seq = jx_eval(R, n->a);
    struct jx_list *items = jx_iterable(R, n->line, seq);
    struct jx_frame *saved = R->scope;
    if (n->d) { /* the loop filter sees the targets, not loop.* */
        struct jx_list *kept = jx_new_list(R).u.l;
        push_frame(R, saved);
        for (size_t i = 0; i < items->n; i++) {
            bind_targets(R, n->line, n->targets, n->n_targets, items->v[i]);
            if (jx_truthy(jx_eval(R, n->d)))
                jx_list_push(R, kept, items->v[i]);
        }
        R->scope = saved;
        items = kept;
    }
    if (items->n == 0) {
        if (n->c)
            jx_exec(R, n->c);
        return;
    }
    for (size_t i = 0; i < items->n; i++) {
        push_frame(R, saved);
        jx_val loop = jx_new_dict(R);
        struct jx_dict *L = loop.u.d;
        size_t len = items->n;
        jx_dict_set_s(R, L, "index", jx_int((int64_t)i + 1));
        jx_dict_set_s(R, L, "index0", jx_int((int64_t)i));
        jx_dict_set_s(R, L, "revindex", jx_int((int64_t)(len - i)));
        jx_dict_set_s(R, L, "revindex0", jx_int((int64_t)(len - i - 1)));
        jx_dict_set_s(R, L, "first", jx_bool(i == 0));
        jx_dict_set_s(R, L, "last", jx_bool(i + 1 == len));
        jx_dict_set_s(R, L, "length", jx_int((int64_t)len));
        jx_dict_set_s(R, L, "depth", jx_int(1));
        jx_dict_set_s(R, L, "depth0", jx_int(0));
        jx_dict_set_s(R, L, "previtem", i ? items->v[i - 1] : jx_undef("previtem"));
        jx_dict_set_s(R, L, "nextitem", i + 1 < len ? items->v[i + 1] : jx_undef("nextitem"));
        set_var(R, "loop", loop);
        bind_targets(R, n->line, n->targets, n->n_targets, items->v[i]);
        jx_exec(R, n->b);
        R->scope = saved;
        if (R->loop_ctl == 1) {
            R->loop_ctl = 0;
            break;
        }
        R->loop_ctl = 0;
    }
}

/* The filters of a filter block applied to v, innermost (d == NULL) first. */
static jx_val filter_chain(struct jx_render *R, const struct jx_node *f, jx_val v)
{
    if (f->d)
        v = filter_chain(R, f->d, v);
    struct argv a = eval_args(R, f, 0);
    return jx_apply_filter(R, f->line, f->name, v, a.pos, a.n, a.kwn, a.kwv, a.nkw);
}

static void exec_set(struct jx_render *R, const struct jx_node *n)
{
    jx_val v = jx_eval(R, n->a);
    if (n->attr) {
        jx_val ns = jx_lookup(R, n->name);
        if (ns.t != JX_DICT || !ns.u.d->is_ns)
            jx_fail(R, n->line, "cannot assign attribute '%s' on '%s' (a %s, not a namespace)", n->attr, n->name,
                    jx_type_name(ns));
        jx_dict_set_s(R, ns.u.d, n->attr, v);
    } else if (n->n_targets) {
        bind_targets(R, n->line, n->targets, n->n_targets, v);
    } else {
        set_var(R, n->name, v);
    }
}

void jx_exec(struct jx_render *R, const struct jx_node *n)
{
    switch (n->k) {
    case JN_BODY:
        for (size_t i = 0; i < n->n_kids && !R->loop_ctl; i++)
            jx_exec(R, n->kids[i]);
        return;
    case JN_TEXT: out_put(R, n->line, n->lit.u.s->s, n->lit.u.s->len); return;
    case JN_OUTPUT: {
        jx_val v = jx_eval(R, n->a);
        if (v.t == JX_STR) {
            out_put(R, n->line, v.u.s->s, v.u.s->len);
        } else {
            jx_val s = jx_stringify(R, v);
            out_put(R, n->line, s.u.s->s, s.u.s->len);
        }
        return;
    }
    case JN_IF:
        if (jx_truthy(jx_eval(R, n->a)))
            jx_exec(R, n->b);
        else if (n->c)
            jx_exec(R, n->c);
        return;
    case JN_FOR: exec_for(R, n); return;
    case JN_SET: exec_set(R, n); return;
    case JN_SET_BLOCK:
        capture_begin(R, n->line);
        jx_exec(R, n->b);
        set_var(R, n->name, capture_end(R));
        return;
    case JN_MACRO: set_var(R, n->name, jx_new_func(R, JX_FN_MACRO, n->name, NULL, jx_none(), n)); return;
    case JN_BREAK: R->loop_ctl = 1; return;
    case JN_CONTINUE: R->loop_ctl = 2; return;
    case JN_DO: (void)jx_eval(R, n->a); return;
    case JN_FILTER_BLOCK: {
        capture_begin(R, n->line);
        jx_exec(R, n->b);
        jx_val str = jx_stringify(R, filter_chain(R, n->a, capture_end(R)));
        out_put(R, n->line, str.u.s->s, str.u.s->len);
        return;
    }
    case JN_CALL_BLOCK: {
        const struct jx_node *c = n->a;
        jx_val fn = jx_eval(R, c->d);
        struct argv a = eval_args(R, c, 1);
        a.kwn[a.nkw] = "caller";
        a.kwv[a.nkw++] = jx_new_func(R, JX_FN_MACRO, "caller", NULL, jx_none(), n);
        jx_val s = jx_call(R, n->line, fn, a.pos, a.n, a.kwn, a.kwv, a.nkw);
        jx_val str = jx_stringify(R, s);
        out_put(R, n->line, str.u.s->s, str.u.s->len);
        return;
    }
    default: {
        jx_val s = jx_stringify(R, jx_eval(R, n));
        out_put(R, n->line, s.u.s->s, s.u.s->len);
    }
    }
}

/* ---- entry points ---- */
int cs_jinja_compile(const char *src, size_t len, struct cs_jinja **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!src)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "template: no text");
    struct jx_token *toks = NULL;
    size_t n = 0;
    CS_TRY(jx_lex(src, len, &toks, &n, err, errlen));
    struct cs_jinja *t = calloc(1, sizeof *t);
    if (!t) {
        jx_tokens_free(toks, n);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "template: out of memory");
    }
    int rc = jx_parse(t, toks, n, err, errlen);
    jx_tokens_free(toks, n);
    if (rc) {
        cs_jinja_free(t);
        return rc;
    }
    *out = t;
    return CLSPEC_OK;
}

void cs_jinja_free(struct cs_jinja *t)
{
    if (!t)
        return;
    jx_arena_free(&t->arena);
    free(t);
}

int cs_jinja_render(const struct cs_jinja *t, const json_t *vars, int64_t now, char **out, size_t *out_len,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (vars && !json_is_object(vars))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "template variables must be a JSON object");
    struct jx_run *X = calloc(1, sizeof *X);
    if (!X)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "template: out of memory");
    struct jx_render *R = &X->R;
    R->arena.limit = JX_ARENA_LIMIT;
    R->err = err;
    R->errlen = errlen;
    R->out = &X->main;
    R->now = now ? now : (int64_t)time(NULL);
    int rc = CLSPEC_OK;
    if (setjmp(R->fail)) {
        rc = CLSPEC_E_INVAL;
    } else {
        push_frame(R, NULL);
        jx_install_globals(R, R->scope->vars);
        push_frame(R, R->scope);
        R->globals = R->scope;
        if (vars) {
            jx_val v = jx_from_json(R, vars);
            for (size_t i = 0; i < v.u.d->n; i++)
                jx_dict_set(R, R->scope->vars, v.u.d->k[i], v.u.d->v[i]);
        }
        jx_exec(R, t->root);
        if (X->main.oom)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "template: out of memory");
    }
    for (int i = 0; i < X->ncaps; i++)
        cs_strbuf_free(&X->caps[i]);
    if (rc == CLSPEC_OK)
        rc = cs_strbuf_take(&X->main, out, out_len);
    cs_strbuf_free(&X->main);
    jx_arena_free(&R->arena);
    free(X);
    return rc;
}
