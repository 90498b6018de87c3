/* jinja_impl.h: the internals of the Jinja interpreter shared by its files:
 * jinja_value.c (arena, values, conversions, JSON), jinja_lex.c (text ->
 * tokens), jinja_parse.c (tokens -> AST), jinja_eval.c (AST -> text),
 * jinja_builtins.c (filters, tests, methods, globals).
 *
 * Memory: everything a render creates lives in one arena (struct jx_arena)
 * freed at its end, so values are plain pointers that may alias (as Python
 * objects do: a namespace changed in a loop is seen after it). Errors at run
 * time longjmp to cs_jinja_render (jx_fail), which frees the arena: no value
 * outlives a render, so nothing leaks on that path. */
#ifndef CS_JINJA_IMPL_H
#define CS_JINJA_IMPL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "text/jinja.h"

/* ---- arena ---- */
struct jx_chunk;
struct jx_arena {
    struct jx_chunk *head;
    size_t total; /* bytes allocated so far */
    size_t limit; /* bytes; 0 = none */
};

/* ---- values ---- */
enum jx_type { JX_UNDEF = 0, JX_NONE, JX_BOOL, JX_INT, JX_FLOAT, JX_STR, JX_LIST, JX_DICT, JX_FUNC };

struct jx_str {
    size_t len; /* bytes, without the NUL */
    char s[];   /* UTF-8, NUL-terminated */
};
struct jx_list;
struct jx_dict;
struct jx_func;

typedef struct jx_val {
    enum jx_type t;
    union {
        bool b;
        int64_t i;
        double f;
        struct jx_str *s;
        struct jx_list *l;
        struct jx_dict *d;
        struct jx_func *fn;
        const char *undef_name; /* JX_UNDEF: the name looked up, for messages (may be NULL) */
    } u;
} jx_val;

struct jx_list {
    size_t n, cap;
    jx_val *v;
    bool is_tuple; /* printed as (a, b) */
};
struct jx_dict {
    size_t n, cap;
    jx_val *k, *v; /* insertion order; keys compared with jx_equal */
    bool is_ns;    /* a namespace(): attributes are its items, no methods */
};

struct jx_render;
struct jx_node;
struct jx_func;
/* a builtin or bound method: f->self is the object of a method, f->name its name */
typedef jx_val (*jx_builtin_fn)(struct jx_render *R, int line, const struct jx_func *f, const jx_val *args,
                                size_t n, const char *const *kwn, const jx_val *kwv, size_t nkw);
enum jx_func_kind { JX_FN_BUILTIN, JX_FN_MACRO, JX_FN_METHOD };
struct jx_func {
    enum jx_func_kind kind;
    const char *name;
    jx_builtin_fn fn;             /* BUILTIN and METHOD */
    jx_val self;                  /* METHOD: the object */
    const struct jx_node *macro;  /* MACRO */
};

/* ---- tokens ---- */
enum jx_tok {
    JT_TEXT,     /* template text (already whitespace-processed) */
    JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP, /* OP: punctuation/operator in text */
    JT_EOF
};
struct jx_token {
    enum jx_tok t;
    int line;
    char *text; /* malloc'd (TEXT, NAME, STRING: the decoded string, OP: the operator) */
    size_t len;
    int64_t i;
    double f;
};

/* ---- AST ---- */
enum jx_kind {
    /* statements */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_MACRO, JN_BREAK, JN_CONTINUE, JN_BODY, JN_DO,
    JN_CALL_BLOCK,
    JN_FILTER_BLOCK, /* {% filter f | g(x) %}body{% endfilter %}: a = the chain (JN_FILTER nodes, the
                      * innermost with d == NULL: the body's text), b = the body */
    /* expressions */
    JN_LIT, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER, JN_TEST, JN_NOT, JN_NEG, JN_POS, JN_BIN,
    JN_AND, JN_OR, JN_COND, JN_LIST, JN_TUPLE, JN_DICT
};
struct jx_node {
    enum jx_kind k;
    int line;
    const char *name;            /* NAME, ATTR, FILTER, TEST, BIN (operator), SET target, MACRO */
    const char *attr;            /* SET: ns.attr target attribute */
    jx_val lit;                  /* LIT (strings live with the template) */
    struct jx_node *a, *b, *c;   /* operands; IF: cond, then, else; FOR: iter, body, else; SLICE: start, stop, step */
    struct jx_node *d;           /* FOR: filter; SLICE/ITEM: object; CALL/FILTER/TEST: the callee / subject */
    struct jx_node **kids;       /* BODY statements, LIST/TUPLE items, DICT keys+values interleaved, CALL args */
    size_t n_kids;
    const char **kw_names;       /* CALL/FILTER/TEST keyword args; MACRO parameter names */
    struct jx_node **kw_vals;    /* values; MACRO: defaults (NULL entries: none) */
    size_t n_kw;
    const char **targets;        /* FOR: loop variable names; SET: unpack names */
    size_t n_targets;
    bool negated;                /* TEST: "is not" */
};

struct cs_jinja {
    struct jx_arena arena; /* nodes and literal strings */
    struct jx_node *root;
};

/* ---- render state ---- */
#define JX_MAX_DEPTH 64
struct jx_frame {
    struct jx_dict *vars;
    struct jx_frame *parent;
};
struct jx_render {
    struct jx_arena arena;
    jmp_buf fail;
    char *err;
    size_t errlen;
    struct cs_strbuf *out; /* where output goes now (swapped for set blocks, macros) */
    struct jx_frame *scope;
    struct jx_frame *globals;
    int64_t now;
    int depth;
    int loop_ctl; /* 1: break, 2: continue pending */
};

/* arena.c-ish (jinja_value.c) */
void *jx_alloc(struct jx_arena *a, size_t n);             /* NULL when over the limit or out of memory */
void jx_arena_free(struct jx_arena *a);
void *jx_ralloc(struct jx_render *R, size_t n);           /* fails the render instead of NULL */
_Noreturn void jx_fail(struct jx_render *R, int line, const char *fmt, ...) CS_PRINTF(3, 4);

/* constructors */
jx_val jx_undef(const char *name);
jx_val jx_none(void);
jx_val jx_bool(bool b);
jx_val jx_int(int64_t i);
jx_val jx_float(double f);
jx_val jx_str_n(struct jx_render *R, const char *s, size_t n);
jx_val jx_str(struct jx_render *R, const char *s);
jx_val jx_new_list(struct jx_render *R);
jx_val jx_new_dict(struct jx_render *R);
jx_val jx_new_func(struct jx_render *R, enum jx_func_kind k, const char *name, jx_builtin_fn fn, jx_val self,
                   const struct jx_node *macro);
void jx_list_push(struct jx_render *R, struct jx_list *l, jx_val v);
void jx_dict_set(struct jx_render *R, struct jx_dict *d, jx_val k, jx_val v);
bool jx_dict_get(const struct jx_dict *d, jx_val k, jx_val *v);
bool jx_dict_get_s(const struct jx_dict *d, const char *k, jx_val *v);
void jx_dict_set_s(struct jx_render *R, struct jx_dict *d, const char *k, jx_val v);

/* semantics */
bool jx_truthy(jx_val v);
bool jx_equal(jx_val a, jx_val b);
int jx_compare(struct jx_render *R, int line, jx_val a, jx_val b); /* <0 0 >0; fails on incomparable */
const char *jx_type_name(jx_val v);
/* str(v) as Python prints it (None, True, 1.5, ['a', 1], {'k': 'v'}); undefined: "" */
void jx_to_str(struct cs_strbuf *b, jx_val v);
void jx_repr(struct cs_strbuf *b, jx_val v);
jx_val jx_stringify(struct jx_render *R, jx_val v); /* a JX_STR of jx_to_str */
void jx_float_repr(struct cs_strbuf *b, double f);
size_t jx_utf8_len(const char *s, size_t n);        /* code points */
jx_val jx_from_json(struct jx_render *R, const json_t *j);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: none), separators, sort_keys) */
void jx_to_json(struct jx_render *R, int line, struct cs_strbuf *b, jx_val v, int indent, const char *item_sep,
                const char *key_sep, bool sort_keys);
/* sequence view: list items, dict keys, string code points (as strings); undefined: empty */
struct jx_list *jx_iterable(struct jx_render *R, int line, jx_val v);

/* lexer / parser */
int jx_lex(const char *src, size_t len, struct jx_token **toks, size_t *n, char *err, size_t errlen);
void jx_tokens_free(struct jx_token *t, size_t n);
int jx_parse(struct cs_jinja *t, const struct jx_token *toks, size_t n, char *err, size_t errlen);

/* evaluator (jinja_eval.c) */
jx_val jx_eval(struct jx_render *R, const struct jx_node *n);
void jx_exec(struct jx_render *R, const struct jx_node *n);
jx_val jx_call(struct jx_render *R, int line, jx_val fn, const jx_val *args, size_t n, const char *const *kwn,
               const jx_val *kwv, size_t nkw);
jx_val jx_lookup(struct jx_render *R, const char *name);
jx_val jx_getattr(struct jx_render *R, int line, jx_val obj, const char *name);
jx_val jx_getitem(struct jx_render *R, int line, jx_val obj, jx_val key);

/* builtins (jinja_builtins.c) */
jx_val jx_apply_filter(struct jx_render *R, int line, const char *name, jx_val v, const jx_val *args, size_t n,
                       const char *const *kwn, const jx_val *kwv, size_t nkw);
bool jx_apply_test(struct jx_render *R, int line, const char *name, jx_val v, const jx_val *args, size_t n);
jx_val jx_method(struct jx_render *R, int line, jx_val obj, const char *name); /* undefined when none */
void jx_install_globals(struct jx_render *R, struct jx_dict *g);

#endif
