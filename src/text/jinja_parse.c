/* jinja_parse.c: tokens -> AST, recursive descent with Jinja's precedence
 * (lowest first): a if b else c; or; and; not; comparisons and (not) in;
 * + -; ~; * / // %; **; unary - +; postfix (.attr [item] [a:b:c] (call)),
 * then filters (|f(args)) and tests (is [not] t args).
 * Statements: if/elif/else, for (targets, "if" filter, else), set (name,
 * ns.attr, block set), macro, call blocks, break/continue, do, generation.
 * Syntax errors longjmp to jx_parse with "template line N: ...". */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "text/jinja_impl.h"

struct parser {
    struct cs_jinja *t;
    const struct jx_token *k;
    size_t n, pos;
    jmp_buf fail;
    char *err;
    size_t errlen;
    int rc;
};

_Noreturn static void perr(struct parser *P, const char *fmt, ...) CS_PRINTF(2, 3);
_Noreturn static void perr(struct parser *P, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    P->rc = cs_err(P->err, P->errlen, CLSPEC_E_INVAL, "template line %d: %s", P->k[P->pos].line, msg);
    longjmp(P->fail, 1);
}

static void *palloc(struct parser *P, size_t n)
{
    void *p = jx_alloc(&P->t->arena, n);
    if (!p) {
        P->rc = cs_err(P->err, P->errlen, CLSPEC_E_NOMEM, "template: out of memory");
        longjmp(P->fail, 1);
    }
    return p;
}

static const char *pstr(struct parser *P, const char *s, size_t n)
{
    char *c = palloc(P, n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

static jx_val lit_str(struct parser *P, const char *s, size_t n)
{
    struct jx_str *p = palloc(P, sizeof *p + n + 1);
    p->len = n;
    memcpy(p->s, s, n);
    p->s[n] = 0;
    return (jx_val){.t = JX_STR, .u.s = p};
}

static struct jx_node *node(struct parser *P, enum jx_kind k)
{
    struct jx_node *n = palloc(P, sizeof *n);
    n->k = k;
    n->line = P->k[P->pos].line;
    return n;
}

/* growable node arrays in the arena */
struct nvec {
    struct jx_node **v;
    const char **names;
    size_t n, cap;
};
static void nvec_push(struct parser *P, struct nvec *a, struct jx_node *x, const char *name)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct jx_node **nv = palloc(P, cap * sizeof *nv);
        const char **nn = palloc(P, cap * sizeof *nn);
        if (a->n) {
            memcpy(nv, a->v, a->n * sizeof *nv);
            memcpy(nn, a->names, a->n * sizeof *nn);
        }
        a->v = nv;
        a->names = nn;
        a->cap = cap;
    }
    a->v[a->n] = x;
    a->names[a->n++] = name;
}

static const struct jx_token *cur(struct parser *P) { return &P->k[P->pos]; }
static bool is_op(struct parser *P, const char *op)
{
    return cur(P)->t == JT_OP && strcmp(cur(P)->text, op) == 0;
}
static bool is_name(struct parser *P, const char *name)
{
    return cur(P)->t == JT_NAME && strcmp(cur(P)->text, name) == 0;
}
static bool is_name_at(struct parser *P, size_t at, const char *name)
{
    return P->pos + at < P->n && P->k[P->pos + at].t == JT_NAME && strcmp(P->k[P->pos + at].text, name) == 0;
}
static void advance(struct parser *P)
{
    if (P->pos + 1 < P->n)
        P->pos++;
}
static const char *tok_desc(const struct jx_token *k)
{
    switch (k->t) {
    case JT_NAME:
    case JT_OP: return k->text;
    case JT_STRING: return "a string";
    case JT_INT:
    case JT_FLOAT: return "a number";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_END: return "'%}'";
    case JT_EOF: return "the end of the template";
    default: return "text";
    }
}
static void expect_op(struct parser *P, const char *op)
{
    if (!is_op(P, op))
        perr(P, "expected '%s', found %s", op, tok_desc(cur(P)));
    advance(P);
}
static const char *expect_name(struct parser *P)
{
    if (cur(P)->t != JT_NAME)
        perr(P, "expected a name, found %s", tok_desc(cur(P)));
    const char *s = pstr(P, cur(P)->text, cur(P)->len);
    advance(P);
    return s;
}
static void expect_block_end(struct parser *P)
{
    if (cur(P)->t != JT_BLOCK_END)
        perr(P, "expected '%%}', found %s", tok_desc(cur(P)));
    advance(P);
}

static struct jx_node *parse_expr(struct parser *P, bool with_cond);
static struct jx_node *parse_unary(struct parser *P, bool with_filter);

/* (args) after the '(' was seen: positional then keyword arguments */
static void parse_args(struct parser *P, struct jx_node *n)
{
    struct nvec pos = {0}, kw = {0};
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (pos.n + kw.n)
            expect_op(P, ",");
        if (is_op(P, ")"))
            break;
        if (cur(P)->t == JT_NAME && P->pos + 1 < P->n && P->k[P->pos + 1].t == JT_OP &&
            strcmp(P->k[P->pos + 1].text, "=") == 0) {
            const char *name = expect_name(P);
            advance(P);
            nvec_push(P, &kw, parse_expr(P, true), name);
        } else {
            if (kw.n)
                perr(P, "positional argument after a keyword argument");
            nvec_push(P, &pos, parse_expr(P, true), NULL);
        }
    }
    advance(P);
    n->kids = pos.v;
    n->n_kids = pos.n;
    n->kw_names = kw.names;
    n->kw_vals = kw.v;
    n->n_kw = kw.n;
}

static struct jx_node *parse_seq(struct parser *P, enum jx_kind k, const char *close)
{
    struct jx_node *n = node(P, k);
    struct nvec items = {0};
    advance(P);
    while (!is_op(P, close)) {
        if (items.n)
            expect_op(P, ",");
        if (is_op(P, close))
            break;
        nvec_push(P, &items, parse_expr(P, true), NULL);
        if (k == JN_DICT) {
            expect_op(P, ":");
            nvec_push(P, &items, parse_expr(P, true), NULL);
        }
    }
    advance(P);
    n->kids = items.v;
    n->n_kids = items.n;
    return n;
}

static struct jx_node *parse_primary(struct parser *P)
{
    const struct jx_token *k = cur(P);
    struct jx_node *n;
    switch (k->t) {
    case JT_NAME:
        n = node(P, JN_LIT);
        if (!strcmp(k->text, "true") || !strcmp(k->text, "True"))
            n->lit = jx_bool(true);
        else if (!strcmp(k->text, "false") || !strcmp(k->text, "False"))
            n->lit = jx_bool(false);
        else if (!strcmp(k->text, "none") || !strcmp(k->text, "None"))
            n->lit = jx_none();
        else {
            n->k = JN_NAME;
            n->name = pstr(P, k->text, k->len);
        }
        advance(P);
        return n;
    case JT_STRING: {
        n = node(P, JN_LIT);
        struct cs_strbuf b = {0};
        while (cur(P)->t == JT_STRING) { /* adjacent literals concatenate */
            cs_strbuf_put_n(&b, cur(P)->text, cur(P)->len);
            advance(P);
        }
        if (b.oom) {
            cs_strbuf_free(&b);
            perr(P, "out of memory");
        }
        n->lit = lit_str(P, b.p ? b.p : "", b.len);
        cs_strbuf_free(&b);
        return n;
    }
    case JT_INT:
        n = node(P, JN_LIT);
        n->lit = jx_int(k->i);
        advance(P);
        return n;
    case JT_FLOAT:
        n = node(P, JN_LIT);
        n->lit = jx_float(k->f);
        advance(P);
        return n;
    case JT_OP:
        if (is_op(P, "(")) {
            advance(P);
            if (is_op(P, ")")) {
                advance(P);
                return node(P, JN_TUPLE);
            }
            struct jx_node *e = parse_expr(P, true);
            if (is_op(P, ",")) {
                struct nvec items = {0};
                nvec_push(P, &items, e, NULL);
                while (is_op(P, ",")) {
                    advance(P);
                    if (is_op(P, ")"))
                        break;
                    nvec_push(P, &items, parse_expr(P, true), NULL);
                }
                e = node(P, JN_TUPLE);
                e->kids = items.v;
                e->n_kids = items.n;
            }
            expect_op(P, ")");
            return e;
        }
        if (is_op(P, "["))
            return parse_seq(P, JN_LIST, "]");
        if (is_op(P, "{"))
            return parse_seq(P, JN_DICT, "}");
        break;
    default: break;
    }
    perr(P, "unexpected %s", tok_desc(k));
}

static struct jx_node *parse_subscript(struct parser *P, struct jx_node *obj)
{
    advance(P); /* [ */
    struct jx_node *parts[3] = {NULL, NULL, NULL};
    int colons = 0;
    while (!is_op(P, "]")) {
        if (is_op(P, ":")) {
            if (++colons > 2)
                perr(P, "too many ':' in a slice");
            advance(P);
            continue;
        }
        if (parts[colons])
            perr(P, "expected ']' or ':', found %s", tok_desc(cur(P)));
        parts[colons] = parse_expr(P, true);
    }
    advance(P);
    struct jx_node *n = node(P, colons ? JN_SLICE : JN_ITEM);
    n->d = obj;
    if (!colons && !parts[0])
        perr(P, "empty subscript");
    n->a = parts[0];
    n->b = parts[1];
    n->c = parts[2];
    return n;
}

static struct jx_node *parse_postfix(struct parser *P, struct jx_node *e)
{
    for (;;) {
        if (is_op(P, ".")) {
            advance(P);
            struct jx_node *n;
            if (cur(P)->t == JT_INT) {
                n = node(P, JN_ITEM);
                struct jx_node *ix = node(P, JN_LIT);
                ix->lit = jx_int(cur(P)->i);
                advance(P);
                n->d = e;
                n->a = ix;
            } else {
                n = node(P, JN_ATTR);
                n->d = e;
                n->name = expect_name(P);
            }
            e = n;
        } else if (is_op(P, "[")) {
            e = parse_subscript(P, e);
        } else if (is_op(P, "(")) {
            struct jx_node *n = node(P, JN_CALL);
            n->d = e;
            parse_args(P, n);
            e = n;
        } else {
            return e;
        }
    }
}

static bool test_arg_follows(struct parser *P)
{
    const struct jx_token *k = cur(P);
    if (k->t == JT_STRING || k->t == JT_INT || k->t == JT_FLOAT)
        return true;
    if (k->t == JT_OP)
        return is_op(P, "[") || is_op(P, "{");
    if (k->t == JT_NAME)
        return !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and") && !is_name(P, "if") &&
               !is_name(P, "is") && !is_name(P, "in") && !is_name(P, "not");
    return false;
}

static struct jx_node *parse_filters(struct parser *P, struct jx_node *e)
{
    for (;;) {
        if (is_op(P, "|")) {
            advance(P);
            struct jx_node *n = node(P, JN_FILTER);
            n->d = e;
            n->name = expect_name(P);
            if (is_op(P, "("))
                parse_args(P, n);
            e = n;
        } else if (is_name(P, "is")) {
            advance(P);
            struct jx_node *n = node(P, JN_TEST);
            n->d = e;
            if (is_name(P, "not")) {
                n->negated = true;
                advance(P);
            }
            if (is_name(P, "none") || is_name(P, "true") || is_name(P, "false")) {
                n->name = pstr(P, cur(P)->text, cur(P)->len);
                advance(P);
            } else {
                n->name = expect_name(P);
            }
            if (is_op(P, "(")) {
                parse_args(P, n);
            } else if (test_arg_follows(P)) {
                struct nvec a = {0};
                nvec_push(P, &a, parse_postfix(P, parse_primary(P)), NULL);
                n->kids = a.v;
                n->n_kids = 1;
            }
            e = n;
        } else if (is_op(P, "(")) {
            struct jx_node *n = node(P, JN_CALL);
            n->d = e;
            parse_args(P, n);
            e = n;
        } else {
            return e;
        }
    }
}

static struct jx_node *parse_unary(struct parser *P, bool with_filter)
{
    struct jx_node *e;
    if (is_op(P, "-") || is_op(P, "+")) {
        e = node(P, is_op(P, "-") ? JN_NEG : JN_POS);
        advance(P);
        e->a = parse_unary(P, false);
    } else {
        e = parse_primary(P);
    }
    e = parse_postfix(P, e);
    return with_filter ? parse_filters(P, e) : e;
}

static struct jx_node *binary(struct parser *P, const char *op, struct jx_node *a, struct jx_node *b)
{
    struct jx_node *n = node(P, JN_BIN);
    n->name = op;
    n->a = a;
    n->b = b;
    n->line = a->line;
    return n;
}

static struct jx_node *parse_pow(struct parser *P)
{
    struct jx_node *e = parse_unary(P, true);
    while (is_op(P, "**")) {
        advance(P);
        e = binary(P, "**", e, parse_unary(P, true));
    }
    return e;
}

static struct jx_node *parse_math2(struct parser *P)
{
    struct jx_node *e = parse_pow(P);
    while (is_op(P, "*") || is_op(P, "/") || is_op(P, "//") || is_op(P, "%")) {
        const char *op = pstr(P, cur(P)->text, cur(P)->len);
        advance(P);
        e = binary(P, op, e, parse_pow(P));
    }
    return e;
}

static struct jx_node *parse_concat(struct parser *P)
{
    struct jx_node *e = parse_math2(P);
    while (is_op(P, "~")) {
        advance(P);
        e = binary(P, "~", e, parse_math2(P));
    }
    return e;
}

static struct jx_node *parse_math1(struct parser *P)
{
    struct jx_node *e = parse_concat(P);
    while (is_op(P, "+") || is_op(P, "-")) {
        const char *op = is_op(P, "+") ? "+" : "-";
        advance(P);
        e = binary(P, op, e, parse_concat(P));
    }
    return e;
}

static struct jx_node *parse_compare(struct parser *P)
{
    static const char *ops[] = {"==", "!=", "<", ">", "<=", ">="};
    struct jx_node *e = parse_math1(P);
    for (;;) {
        const char *op = NULL;
        for (size_t i = 0; i < CS_ARRAY_LEN(ops) && !op; i++)
            if (is_op(P, ops[i]))
                op = ops[i];
        if (op) {
            advance(P);
        } else if (is_name(P, "in")) {
            op = "in";
            advance(P);
        } else if (is_name(P, "not") && is_name_at(P, 1, "in")) {
            op = "notin";
            advance(P);
            advance(P);
        } else {
            return e;
        }
        e = binary(P, op, e, parse_math1(P));
    }
}

static struct jx_node *parse_not(struct parser *P)
{
    if (is_name(P, "not")) {
        struct jx_node *n = node(P, JN_NOT);
        advance(P);
        n->a = parse_not(P);
        return n;
    }
    return parse_compare(P);
}

static struct jx_node *parse_and(struct parser *P)
{
    struct jx_node *e = parse_not(P);
    while (is_name(P, "and")) {
        advance(P);
        struct jx_node *n = node(P, JN_AND);
        n->a = e;
        n->b = parse_not(P);
        e = n;
    }
    return e;
}

static struct jx_node *parse_or(struct parser *P)
{
    struct jx_node *e = parse_and(P);
    while (is_name(P, "or")) {
        advance(P);
        struct jx_node *n = node(P, JN_OR);
        n->a = e;
        n->b = parse_and(P);
        e = n;
    }
    return e;
}

static struct jx_node *parse_expr(struct parser *P, bool with_cond)
{
    struct jx_node *e = parse_or(P);
    while (with_cond && is_name(P, "if")) {
        advance(P);
        struct jx_node *n = node(P, JN_COND);
        n->a = parse_or(P);
        n->b = e;
        if (is_name(P, "else")) {
            advance(P);
            n->c = parse_expr(P, true);
        }
        e = n;
    }
    return e;
}

/* ---- statements ---- */
static struct jx_node *parse_body(struct parser *P, const char *const *ends, const char **which);

static struct jx_node *parse_if(struct parser *P)
{
    struct jx_node *n = node(P, JN_IF);
    n->a = parse_expr(P, true);
    expect_block_end(P);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *w;
    n->b = parse_body(P, ends, &w);
    if (!strcmp(w, "elif")) {
        n->c = parse_if(P);
        return n;
    }
    if (!strcmp(w, "else")) {
        expect_block_end(P);
        static const char *const end[] = {"endif", NULL};
        n->c = parse_body(P, end, &w);
    }
    expect_block_end(P);
    return n;
}

static struct jx_node *parse_for(struct parser *P)
{
    struct jx_node *n = node(P, JN_FOR);
    struct nvec t = {0};
    bool paren = is_op(P, "(");
    if (paren)
        advance(P);
    do {
        if (t.n)
            advance(P);
        nvec_push(P, &t, NULL, expect_name(P));
    } while (is_op(P, ","));
    if (paren)
        expect_op(P, ")");
    n->targets = t.names;
    n->n_targets = t.n;
    if (!is_name(P, "in"))
        perr(P, "expected 'in' in a for loop, found %s", tok_desc(cur(P)));
    advance(P);
    n->a = parse_expr(P, false);
    if (is_name(P, "if")) {
        advance(P);
        n->d = parse_expr(P, false);
    }
    if (is_name(P, "recursive"))
        perr(P, "recursive for loops are not supported");
    expect_block_end(P);
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *w;
    n->b = parse_body(P, ends, &w);
    if (!strcmp(w, "else")) {
        expect_block_end(P);
        static const char *const end[] = {"endfor", NULL};
        n->c = parse_body(P, end, &w);
    }
    expect_block_end(P);
    return n;
}

static struct jx_node *parse_set(struct parser *P)
{
    struct jx_node *n = node(P, JN_SET);
    n->name = expect_name(P);
    if (is_op(P, ".")) {
        advance(P);
        n->attr = expect_name(P);
    } else if (is_op(P, ",")) {
        struct nvec t = {0};
        nvec_push(P, &t, NULL, n->name);
        while (is_op(P, ",")) {
            advance(P);
            nvec_push(P, &t, NULL, expect_name(P));
        }
        n->targets = t.names;
        n->n_targets = t.n;
    }
    if (is_op(P, "=")) {
        advance(P);
        n->a = parse_expr(P, true);
        if (is_op(P, ",")) { /* a tuple */
            struct nvec items = {0};
            nvec_push(P, &items, n->a, NULL);
            while (is_op(P, ",")) {
                advance(P);
                nvec_push(P, &items, parse_expr(P, true), NULL);
            }
            n->a = node(P, JN_TUPLE);
            n->a->kids = items.v;
            n->a->n_kids = items.n;
        }
        expect_block_end(P);
        return n;
    }
    if (n->n_targets)
        perr(P, "a block set takes one name");
    n->k = JN_SET_BLOCK;
    expect_block_end(P);
    static const char *const end[] = {"endset", NULL};
    const char *w;
    n->b = parse_body(P, end, &w);
    expect_block_end(P);
    return n;
}

static struct jx_node *parse_macro(struct parser *P)
{
    struct jx_node *n = node(P, JN_MACRO);
    n->name = expect_name(P);
    struct nvec params = {0};
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (params.n)
            expect_op(P, ",");
        const char *p = expect_name(P);
        struct jx_node *def = NULL;
        if (is_op(P, "=")) {
            advance(P);
            def = parse_expr(P, true);
        }
        nvec_push(P, &params, def, p);
    }
    advance(P);
    n->kw_names = params.names;
    n->kw_vals = params.v;
    n->n_kw = params.n;
    expect_block_end(P);
    static const char *const end[] = {"endmacro", NULL};
    const char *w;
    n->b = parse_body(P, end, &w);
    expect_block_end(P);
    return n;
}

/* {% filter NAME[(args)] [| NAME[(args)]]... %} body {% endfilter %} */
static struct jx_node *parse_filter_block(struct parser *P)
{
    struct jx_node *n = node(P, JN_FILTER_BLOCK);
    struct jx_node *chain = NULL;
    do {
        if (chain)
            advance(P); /* the '|' */
        struct jx_node *f = node(P, JN_FILTER);
        f->d = chain;
        f->name = expect_name(P);
        if (is_op(P, "("))
            parse_args(P, f);
        chain = f;
    } while (is_op(P, "|"));
    n->a = chain;
    expect_block_end(P);
    static const char *const end[] = {"endfilter", NULL};
    const char *w;
    n->b = parse_body(P, end, &w);
    expect_block_end(P);
    return n;
}

static struct jx_node *parse_statement(struct parser *P)
{
    int line = cur(P)->line;
    const char *kw = expect_name(P);
    struct jx_node *n = NULL;
    if (!strcmp(kw, "if")) {
        n = parse_if(P);
    } else if (!strcmp(kw, "for")) {
        n = parse_for(P);
    } else if (!strcmp(kw, "set")) {
        n = parse_set(P);
    } else if (!strcmp(kw, "macro")) {
        n = parse_macro(P);
    } else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        n = node(P, kw[0] == 'b' ? JN_BREAK : JN_CONTINUE);
        expect_block_end(P);
    } else if (!strcmp(kw, "do")) {
        n = node(P, JN_DO);
        n->a = parse_expr(P, true);
        expect_block_end(P);
    } else if (!strcmp(kw, "generation")) {
        expect_block_end(P);
        static const char *const end[] = {"endgeneration", NULL};
        const char *w;
        n = parse_body(P, end, &w);
        expect_block_end(P);
    } else if (!strcmp(kw, "filter")) {
        n = parse_filter_block(P);
    } else if (!strcmp(kw, "call")) {
        n = node(P, JN_CALL_BLOCK);
        n->a = parse_expr(P, true);
        if (n->a->k != JN_CALL)
            perr(P, "a call block needs a macro call");
        expect_block_end(P);
        static const char *const end[] = {"endcall", NULL};
        const char *w;
        n->b = parse_body(P, end, &w);
        expect_block_end(P);
    } else {
        P->pos--;
        perr(P, "unknown tag '%s'", kw);
    }
    n->line = line;
    return n;
}

/* Statements up to a block whose first name is one of ends (NULL-terminated;
 * NULL ends = the end of the template). *which: the end name found; the
 * parser stands after it. */
static struct jx_node *parse_body(struct parser *P, const char *const *ends, const char **which)
{
    struct jx_node *body = node(P, JN_BODY);
    struct nvec st = {0};
    int open_line = P->pos ? P->k[P->pos - 1].line : 1;
    for (;;) {
        const struct jx_token *k = cur(P);
        if (k->t == JT_EOF) {
            if (ends) {
                const char *closer = ends[0];
                for (size_t i = 0; ends[i]; i++)
                    if (!strncmp(ends[i], "end", 3))
                        closer = ends[i];
                perr(P, "missing '%s' for the block opened on line %d", closer, open_line);
            }
            break;
        }
        if (k->t == JT_TEXT) {
            struct jx_node *n = node(P, JN_TEXT);
            n->lit = lit_str(P, k->text, k->len);
            advance(P);
            nvec_push(P, &st, n, NULL);
        } else if (k->t == JT_VAR_BEGIN) {
            advance(P);
            struct jx_node *n = node(P, JN_OUTPUT);
            n->a = parse_expr(P, true);
            if (cur(P)->t != JT_VAR_END)
                perr(P, "expected '}}', found %s", tok_desc(cur(P)));
            advance(P);
            nvec_push(P, &st, n, NULL);
        } else if (k->t == JT_BLOCK_BEGIN) {
            advance(P);
            for (size_t i = 0; ends && ends[i]; i++)
                if (is_name(P, ends[i])) {
                    *which = ends[i];
                    advance(P);
                    body->kids = st.v;
                    body->n_kids = st.n;
                    return body;
                }
            if (cur(P)->t == JT_NAME && (!strncmp(cur(P)->text, "end", 3) || !strcmp(cur(P)->text, "else") ||
                                        !strcmp(cur(P)->text, "elif")))
                perr(P, "unexpected '%s'%s", cur(P)->text, ends ? "" : " (no block is open)");
            nvec_push(P, &st, parse_statement(P), NULL);
        } else {
            perr(P, "unexpected %s", tok_desc(k));
        }
    }
    body->kids = st.v;
    body->n_kids = st.n;
    return body;
}

int jx_parse(struct cs_jinja *t, const struct jx_token *toks, size_t n, char *err, size_t errlen)
{
    struct parser P = {.t = t, .k = toks, .n = n, .err = err, .errlen = errlen};
    if (setjmp(P.fail))
        return P.rc;
    const char *w = NULL;
    t->root = parse_body(&P, NULL, &w);
    return CLSPEC_OK;
}
