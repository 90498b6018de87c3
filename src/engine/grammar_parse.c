/* grammar_parse.c: GBNF text -> struct cs_grammar (see grammar.h).
 *
 * Syntax: `name ::= alternatives`; alternatives separated by `|`; a sequence
 * of "literals" (escapes \n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH), [classes]
 * ([^...] negated, a-z ranges), `.` (any character), rule names and
 * (groups), each optionally followed by `*`, `+`, `?`, `{m}`, `{m,}`,
 * `{m,n}` or `{,n}`; `#` starts a comment. A rule may continue over several
 * lines: a new definition starts where a line begins with `name ::=`.
 * Left-recursive rules are refused (the matcher would not terminate). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "engine/grammar_impl.h"

#define MAX_REPEAT 10000      /* largest m or n of {m,n} */
#define MAX_ELEMENTS 2000000  /* elements of the compiled grammar (helpers included) */

struct pel {
    int32_t type, v;
};

struct palt {
    struct pel *e;
    int32_t n, cap;
};

struct prule {
    char *name;
    struct palt *alts;
    int32_t n_alt, cap_alt;
    bool defined;
    bool helper;        /* made for a group or a repetition */
    const char *ref_at; /* first reference (for "undefined rule") */
    const char *def_at; /* definition */
};

struct parser {
    const char *s, *end, *p;
    struct prule *rules;
    int32_t n_rules, cap_rules;
    uint32_t *rng;      /* pairs */
    int32_t n_rng, cap_rng;
    int32_t *cls;       /* start pair of each class; cls[n_cls] = n_rng after finishing */
    int32_t n_cls, cap_cls;
    int64_t n_el;       /* running total, for the size limit */
    char *err;
    size_t errlen;
    int rc;
};

/* ---- errors with line:column ---- */

static int perr(struct parser *P, const char *at, const char *fmt, ...) CS_PRINTF(3, 4);
static int perr(struct parser *P, const char *at, const char *fmt, ...)
{
    if (P->rc < 0)
        return P->rc;
    int line = 1, col = 1;
    for (const char *q = P->s; q < at && q < P->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            col++;
        }
    }
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    P->rc = cs_err(P->err, P->errlen, CLSPEC_E_INVAL, "grammar: %d:%d: %s", line, col, msg);
    return P->rc;
}

static int oom(struct parser *P)
{
    if (P->rc < 0)
        return P->rc;
    P->rc = cs_err(P->err, P->errlen, CLSPEC_E_NOMEM, "grammar: out of memory");
    return P->rc;
}

static bool grow(void **p, int32_t *cap, int32_t need, size_t elsz)
{
    if (need <= *cap)
        return true;
    int32_t c = CS_MAX(need, CS_MAX(16, 2 * *cap));
    void *q = realloc(*p, (size_t)c * elsz);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

/* ---- rules, alternatives, classes ---- */

static int32_t rule_new(struct parser *P, const char *name, size_t n)
{
    if (!grow((void **)&P->rules, &P->cap_rules, P->n_rules + 1, sizeof *P->rules))
        return oom(P);
    struct prule *r = &P->rules[P->n_rules];
    memset(r, 0, sizeof *r);
    r->name = malloc(n + 1);
    if (!r->name)
        return oom(P);
    memcpy(r->name, name, n);
    r->name[n] = '\0';
    return P->n_rules++;
}

static int32_t rule_find(struct parser *P, const char *name, size_t n)
{
    for (int32_t i = 0; i < P->n_rules; i++)
        if (strlen(P->rules[i].name) == n && memcmp(P->rules[i].name, name, n) == 0)
            return i;
    return -1;
}

/* A helper rule named after its parent ("value-3"). */
static int32_t rule_helper(struct parser *P, int32_t parent)
{
    char nm[160];
    snprintf(nm, sizeof nm, "%.120s-%d", P->rules[parent].name, P->n_rules);
    int32_t r = rule_new(P, nm, strlen(nm));
    if (r >= 0) {
        P->rules[r].defined = true;
        P->rules[r].helper = true;
        P->rules[r].def_at = P->p; /* where the group or repetition is */
    }
    return r;
}

static struct palt *alt_new(struct parser *P, int32_t r)
{
    struct prule *R = &P->rules[r];
    if (!grow((void **)&R->alts, &R->cap_alt, R->n_alt + 1, sizeof *R->alts)) {
        oom(P);
        return NULL;
    }
    struct palt *a = &R->alts[R->n_alt++];
    memset(a, 0, sizeof *a);
    return a;
}

static int alt_push(struct parser *P, struct palt *a, int32_t type, int32_t v)
{
    if (++P->n_el > MAX_ELEMENTS)
        return perr(P, P->p, "grammar too large (over %d elements after expanding repetitions)", MAX_ELEMENTS);
    if (!grow((void **)&a->e, &a->cap, a->n + 1, sizeof *a->e))
        return oom(P);
    a->e[a->n].type = type;
    a->e[a->n].v = v;
    a->n++;
    return CLSPEC_OK;
}

static int cmp_rng(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Adds a class from pairs r[0..2n) (any order, overlaps allowed); negate:
 * its complement in 0..0x10FFFF. Returns the class index. */
static int32_t class_add(struct parser *P, uint32_t *r, int32_t n, bool negate)
{
    qsort(r, (size_t)n, 2 * sizeof *r, cmp_rng);
    int32_t m = 0; /* merge in place */
    for (int32_t i = 0; i < n; i++) {
        if (m > 0 && r[2 * i] <= r[2 * (m - 1) + 1] + 1) {
            if (r[2 * i + 1] > r[2 * (m - 1) + 1])
                r[2 * (m - 1) + 1] = r[2 * i + 1];
        } else {
            r[2 * m] = r[2 * i];
            r[2 * m + 1] = r[2 * i + 1];
            m++;
        }
    }
    if (!grow((void **)&P->rng, &P->cap_rng, P->n_rng + m + 1, 2 * sizeof *P->rng) ||
        !grow((void **)&P->cls, &P->cap_cls, P->n_cls + 2, sizeof *P->cls))
        return oom(P);
    P->cls[P->n_cls] = P->n_rng;
    uint32_t *o = P->rng + 2 * (size_t)P->n_rng;
    int32_t k = 0;
    if (!negate) {
        memcpy(o, r, (size_t)m * 2 * sizeof *r);
        k = m;
    } else {
        uint32_t next = 0;
        for (int32_t i = 0; i < m; i++) {
            if (r[2 * i] > next) {
                o[2 * k] = next;
                o[2 * k + 1] = r[2 * i] - 1;
                k++;
            }
            next = r[2 * i + 1] + 1;
        }
        if (next <= 0x10FFFF) {
            o[2 * k] = next;
            o[2 * k + 1] = 0x10FFFF;
            k++;
        }
    }
    P->n_rng += k;
    return P->n_cls++;
}

/* ---- lexing ---- */

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Skips blanks and comments; newlines too when nl. */
static void skip_space(struct parser *P, bool nl)
{
    while (P->p < P->end) {
        char c = *P->p;
        if (c == ' ' || c == '\t' || (nl && (c == '\n' || c == '\r'))) {
            P->p++;
        } else if (c == '#') {
            while (P->p < P->end && *P->p != '\n')
                P->p++;
        } else {
            break;
        }
    }
}

/* At q: `name ::=`? */
static bool at_definition(const struct parser *P, const char *q)
{
    const char *n0 = q;
    while (q < P->end && is_name_char(*q))
        q++;
    if (q == n0)
        return false;
    while (q < P->end && (*q == ' ' || *q == '\t'))
        q++;
    return P->end - q >= 3 && memcmp(q, "::=", 3) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One UTF-8 code point of the grammar text. */
static int decode_utf8(struct parser *P, uint32_t *cp)
{
    const unsigned char *q = (const unsigned char *)P->p;
    size_t left = (size_t)(P->end - P->p);
    unsigned c = q[0];
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || (size_t)n > left)
        return perr(P, P->p, "invalid UTF-8 in the grammar text");
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < n; i++) {
        if ((q[i] & 0xC0) != 0x80)
            return perr(P, P->p, "invalid UTF-8 in the grammar text");
        v = (v << 6) | (q[i] & 0x3F);
    }
    P->p += n;
    *cp = v;
    return CLSPEC_OK;
}

/* One character of a literal or class: an escape or a UTF-8 code point. */
static int parse_char(struct parser *P, uint32_t *cp)
{
    if (P->p >= P->end)
        return perr(P, P->p, "unexpected end of the grammar");
    if (*P->p != '\\')
        return decode_utf8(P, cp);
    const char *at = P->p;
    P->p++;
    if (P->p >= P->end)
        return perr(P, at, "unfinished escape");
    char c = *P->p++;
    int nhex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (nhex) {
        uint32_t v = 0;
        for (int i = 0; i < nhex; i++) {
            int h = P->p < P->end ? hexval(*P->p) : -1;
            if (h < 0)
                return perr(P, at, "\\%c needs %d hex digits", c, nhex);
            v = v * 16 + (uint32_t)h;
            P->p++;
        }
        if (v > 0x10FFFF)
            return perr(P, at, "code point U+%X is beyond U+10FFFF", (unsigned)v);
        *cp = v;
        return CLSPEC_OK;
    }
    switch (c) {
    case 'n': *cp = '\n'; return CLSPEC_OK;
    case 'r': *cp = '\r'; return CLSPEC_OK;
    case 't': *cp = '\t'; return CLSPEC_OK;
    case '0': *cp = 0; return CLSPEC_OK;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (unsigned char)c >= 0x80)
            return perr(P, at, "unknown escape '\\%c'", c);
        *cp = (unsigned char)c; /* \\ \" \[ \] \- \^ \/ ... stand for themselves */
        return CLSPEC_OK;
    }
}

/* ---- repetition: the unit alt->e[u0..n) repeated min..max (max -1: unbounded) ---- */

static int repeat(struct parser *P, int32_t rule, struct palt *a, int32_t *ai, int32_t u0, int32_t min, int32_t max)
{
    int32_t un = a->n - u0;
    struct pel *u = malloc((size_t)un * sizeof *u);
    if (!u)
        return oom(P);
    memcpy(u, a->e + u0, (size_t)un * sizeof *u);
    int rc = CLSPEC_OK;
    /* alternatives are reached through their index: creating rules may move them */
#define CUR (&P->rules[rule].alts[*ai])
    CUR->n = u0;
    for (int32_t k = 0; k < min && rc == CLSPEC_OK; k++)
        for (int32_t i = 0; i < un && rc == CLSPEC_OK; i++)
            rc = alt_push(P, CUR, u[i].type, u[i].v);
    if (rc == CLSPEC_OK && (max < 0 || max > min)) {
        /* max < 0: R ::= unit R | ; otherwise a chain opt_k ::= unit opt_{k-1} | (k = 1..max-min) */
        int32_t prev = -1, steps = max < 0 ? 1 : max - min;
        for (int32_t k = 0; k < steps && rc == CLSPEC_OK; k++) {
            int32_t r = rule_helper(P, rule);
            struct palt *x = r >= 0 ? alt_new(P, r) : NULL;
            if (!x) {
                rc = P->rc;
                break;
            }
            for (int32_t i = 0; i < un && rc == CLSPEC_OK; i++)
                rc = alt_push(P, x, u[i].type, u[i].v);
            if (rc == CLSPEC_OK && (max < 0 || prev >= 0))
                rc = alt_push(P, &P->rules[r].alts[0], CS_GEL_REF, max < 0 ? r : prev);
            if (rc == CLSPEC_OK && !alt_new(P, r)) /* the empty alternative */
                rc = P->rc;
            prev = r;
        }
        if (rc == CLSPEC_OK)
            rc = alt_push(P, CUR, CS_GEL_REF, prev);
    }
#undef CUR
    free(u);
    return rc;
}

static int parse_int(struct parser *P, int32_t *v)
{
    const char *at = P->p;
    long x = 0;
    if (P->p >= P->end || *P->p < '0' || *P->p > '9')
        return perr(P, at, "expected a number in {m,n}");
    while (P->p < P->end && *P->p >= '0' && *P->p <= '9') {
        x = x * 10 + (*P->p++ - '0');
        if (x > MAX_REPEAT)
            return perr(P, at, "repetition count above %d", MAX_REPEAT);
    }
    *v = (int32_t)x;
    return CLSPEC_OK;
}

/* After a unit: * + ? {..}, if any. */
static int parse_postfix(struct parser *P, int32_t rule, int32_t ai, int32_t u0)
{
    char c = P->p < P->end ? *P->p : 0;
    int32_t min = 0, max = -1;
    const char *at = P->p;
    if (c == '*' || c == '+' || c == '?') {
        P->p++;
        min = c == '+';
        max = c == '?' ? 1 : -1;
    } else if (c == '{') {
        P->p++;
        skip_space(P, false);
        if (P->p < P->end && *P->p != ',')
            CS_TRY(parse_int(P, &min));
        skip_space(P, false);
        if (P->p < P->end && *P->p == ',') {
            P->p++;
            skip_space(P, false);
            if (P->p < P->end && *P->p != '}')
                CS_TRY(parse_int(P, &max));
        } else {
            max = min;
        }
        skip_space(P, false);
        if (P->p >= P->end || *P->p != '}')
            return perr(P, at, "expected '}' closing the repetition");
        P->p++;
        if (max >= 0 && max < min)
            return perr(P, at, "repetition {%d,%d}: the maximum is below the minimum", min, max);
    } else {
        return CLSPEC_OK;
    }
    if (P->rules[rule].alts[ai].n == u0)
        return perr(P, at, "'%c' has nothing before it to repeat", c);
    return repeat(P, rule, &P->rules[rule].alts[ai], &ai, u0, min, max);
}

static int parse_alternates(struct parser *P, int32_t rule, bool nested);

/* A class after '[': ranges up to ']'. */
static int parse_class(struct parser *P, int32_t *cls)
{
    const char *at = P->p - 1;
    bool neg = P->p < P->end && *P->p == '^';
    P->p += neg;
    uint32_t *r = NULL;
    int32_t n = 0, cap = 0;
    int rc = CLSPEC_OK;
    while (rc == CLSPEC_OK) {
        if (P->p >= P->end) {
            rc = perr(P, at, "unterminated character class");
            break;
        }
        if (*P->p == ']' && (n > 0 || P->p > at + 1 + neg))
            break;
        uint32_t lo, hi;
        if ((rc = parse_char(P, &lo)) < 0)
            break;
        hi = lo;
        if (P->end - P->p >= 2 && P->p[0] == '-' && P->p[1] != ']') {
            P->p++;
            const char *rat = P->p;
            if ((rc = parse_char(P, &hi)) < 0)
                break;
            if (hi < lo) {
                rc = perr(P, rat, "range end U+%X below its start U+%X", (unsigned)hi, (unsigned)lo);
                break;
            }
        }
        if (!grow((void **)&r, &cap, n + 1, 2 * sizeof *r)) {
            rc = oom(P);
            break;
        }
        r[2 * n] = lo;
        r[2 * n + 1] = hi;
        n++;
    }
    if (rc == CLSPEC_OK) {
        P->p++; /* ']' */
        rc = class_add(P, r, n, neg);
        if (rc >= 0)
            *cls = rc;
    }
    free(r);
    return rc < 0 ? rc : CLSPEC_OK;
}

/* True where the sequence of the current alternative ends here. At top
 * level a line break ends it when the next line starts a definition (or
 * the text ends); otherwise the rule continues on that line. */
static bool seq_end(struct parser *P, bool nested)
{
    skip_space(P, nested);
    if (P->p >= P->end)
        return true;
    char c = *P->p;
    if (c == '|' || c == ')')
        return true;
    if (!nested && (c == '\n' || c == '\r')) {
        skip_space(P, true);
        if (P->p >= P->end || at_definition(P, P->p))
            return true;
        return *P->p == '|' || *P->p == ')';
    }
    return false;
}

static int parse_sequence(struct parser *P, int32_t rule, bool nested)
{
    struct palt *a0 = alt_new(P, rule);
    if (!a0)
        return P->rc;
    int32_t ai = P->rules[rule].n_alt - 1;
#define ALT (&P->rules[rule].alts[ai])
    while (!seq_end(P, nested)) {
        int32_t u0 = ALT->n;
        char c = *P->p;
        const char *at = P->p;
        if (c == '"') {
            P->p++;
            while (P->p < P->end && *P->p != '"') {
                uint32_t cp;
                CS_TRY(parse_char(P, &cp));
                uint32_t r[2] = {cp, cp};
                int32_t k = class_add(P, r, 1, false);
                CS_TRY(k);
                CS_TRY(alt_push(P, ALT, CS_GEL_CHAR, k));
            }
            if (P->p >= P->end)
                return perr(P, at, "unterminated string literal");
            P->p++;
        } else if (c == '[') {
            P->p++;
            int32_t k = 0;
            CS_TRY(parse_class(P, &k));
            CS_TRY(alt_push(P, ALT, CS_GEL_CHAR, k));
        } else if (c == '.') {
            P->p++;
            uint32_t r[2] = {0, 0x10FFFF};
            int32_t k = class_add(P, r, 1, false);
            CS_TRY(k);
            CS_TRY(alt_push(P, ALT, CS_GEL_CHAR, k));
        } else if (c == '(') {
            P->p++;
            int32_t g = rule_helper(P, rule);
            CS_TRY(g);
            skip_space(P, true);
            CS_TRY(parse_alternates(P, g, true));
            skip_space(P, true);
            if (P->p >= P->end || *P->p != ')')
                return perr(P, at, "'(' is not closed");
            P->p++;
            CS_TRY(alt_push(P, ALT, CS_GEL_REF, g));
        } else if (is_name_char(c)) {
            const char *n0 = P->p;
            while (P->p < P->end && is_name_char(*P->p))
                P->p++;
            if (at_definition(P, n0))
                return perr(P, n0, "a new rule starts in the middle of a sequence (missing line break?)");
            int32_t r = rule_find(P, n0, (size_t)(P->p - n0));
            if (r < 0 && (r = rule_new(P, n0, (size_t)(P->p - n0))) < 0)
                return r;
            if (!P->rules[r].ref_at)
                P->rules[r].ref_at = n0;
            CS_TRY(alt_push(P, ALT, CS_GEL_REF, r));
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            return perr(P, at, "'%c' has nothing before it to repeat", c);
        } else {
            return perr(P, at, "unexpected character '%c'", c);
        }
        CS_TRY(parse_postfix(P, rule, ai, u0));
    }
#undef ALT
    return CLSPEC_OK;
}

static int parse_alternates(struct parser *P, int32_t rule, bool nested)
{
    CS_TRY(parse_sequence(P, rule, nested));
    while (P->p < P->end && *P->p == '|') {
        P->p++;
        skip_space(P, true);
        CS_TRY(parse_sequence(P, rule, nested));
    }
    return CLSPEC_OK;
}

static int parse_rules(struct parser *P)
{
    for (;;) {
        skip_space(P, true);
        if (P->p >= P->end)
            return CLSPEC_OK;
        const char *n0 = P->p;
        while (P->p < P->end && is_name_char(*P->p))
            P->p++;
        if (P->p == n0)
            return perr(P, n0, "expected a rule name");
        size_t nl = (size_t)(P->p - n0);
        skip_space(P, false);
        if (P->end - P->p < 3 || memcmp(P->p, "::=", 3) != 0)
            return perr(P, P->p, "expected '::=' after '%.*s'", (int)CS_MIN(nl, 64), n0);
        P->p += 3;
        int32_t r = rule_find(P, n0, nl);
        if (r >= 0 && P->rules[r].defined)
            return perr(P, n0, "rule '%.*s' is defined twice", (int)CS_MIN(nl, 64), n0);
        if (r < 0 && (r = rule_new(P, n0, nl)) < 0)
            return r;
        P->rules[r].defined = true;
        P->rules[r].def_at = n0;
        skip_space(P, true);
        CS_TRY(parse_alternates(P, r, false));
        if (P->p < P->end && *P->p == ')')
            return perr(P, P->p, "unmatched ')'");
    }
}

/* ---- checks: undefined rules, left recursion ---- */

/* DFS over "rule a can start with rule b" (through nullable prefixes). */
static int left_rec(struct parser *P, int32_t r, uint8_t *color, const uint8_t *nullable)
{
    if (color[r] == 2)
        return CLSPEC_OK;
    if (color[r] == 1) {
        const char *at = P->rules[r].def_at ? P->rules[r].def_at : P->rules[r].ref_at;
        if (P->rules[r].helper)
            return perr(P, at ? at : P->s,
                        "a group or repetition here can begin with itself (does something under '*', '+' or "
                        "'{m,}' match the empty string?)");
        return perr(P, at ? at : P->s, "rule '%s' is left-recursive (it can begin with itself)", P->rules[r].name);
    }
    color[r] = 1;
    struct prule *R = &P->rules[r];
    for (int32_t a = 0; a < R->n_alt; a++)
        for (int32_t i = 0; i < R->alts[a].n; i++) {
            struct pel *e = &R->alts[a].e[i];
            if (e->type != CS_GEL_REF)
                break;
            CS_TRY(left_rec(P, e->v, color, nullable));
            if (!nullable[e->v])
                break;
        }
    color[r] = 2;
    return CLSPEC_OK;
}

static int check(struct parser *P)
{
    for (int32_t r = 0; r < P->n_rules; r++)
        if (!P->rules[r].defined)
            return perr(P, P->rules[r].ref_at, "undefined rule '%s'", P->rules[r].name);
    size_t n_rules = P->n_rules > 0 ? (size_t)P->n_rules : 1; /* a count, never negative */
    uint8_t *nullable = calloc(n_rules, 2);
    if (!nullable)
        return oom(P);
    uint8_t *color = nullable + P->n_rules;
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t r = 0; r < P->n_rules; r++) {
            if (nullable[r])
                continue;
            for (int32_t a = 0; a < P->rules[r].n_alt && !nullable[r]; a++) {
                struct palt *A = &P->rules[r].alts[a];
                int32_t i = 0;
                while (i < A->n && A->e[i].type == CS_GEL_REF && nullable[A->e[i].v])
                    i++;
                if (i == A->n)
                    nullable[r] = changed = true;
            }
        }
    }
    int rc = CLSPEC_OK;
    for (int32_t r = 0; r < P->n_rules && rc == CLSPEC_OK; r++)
        rc = left_rec(P, r, color, nullable);
    free(nullable);
    return rc;
}

/* ---- flattening ---- */

static void first_bytes(uint8_t set[32], uint32_t lo, uint32_t hi)
{
    static const uint32_t edge[4][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xFFFF}, {0x10000, 0x10FFFF}};
    static const int shift[4] = {0, 6, 12, 18};
    static const uint32_t mark[4] = {0, 0xC0, 0xE0, 0xF0};
    for (int k = 0; k < 4; k++) {
        uint32_t a = CS_MAX(lo, edge[k][0]), b = CS_MIN(hi, edge[k][1]);
        if (a > b)
            continue;
        for (uint32_t x = (a >> shift[k]); x <= (b >> shift[k]); x++) {
            uint32_t byte = mark[k] | x;
            set[byte >> 3] |= (uint8_t)(1u << (byte & 7));
        }
    }
}

static int flatten(struct parser *P, int32_t root, struct cs_grammar **out)
{
    struct cs_grammar *g = calloc(1, sizeof *g);
    if (!g)
        return oom(P);
    int32_t n_alt = 0, n_el = 0;
    for (int32_t r = 0; r < P->n_rules; r++)
        for (int32_t a = 0; a < P->rules[r].n_alt; a++) {
            n_alt++;
            n_el += P->rules[r].alts[a].n + 1;
        }
    static _Atomic uint64_t next_gen = 1;
    g->refs = 1;
    g->gen = next_gen++;
    g->n_rules = P->n_rules;
    g->root = root;
    g->n_el = n_el;
    g->el = malloc((size_t)n_el * sizeof *g->el);
    g->alt = malloc((size_t)CS_MAX(n_alt, 1) * sizeof *g->alt);
    g->rule_alt = malloc((size_t)(P->n_rules + 1) * sizeof *g->rule_alt);
    g->n_cls = P->n_cls;
    g->rng = malloc((size_t)CS_MAX(P->n_rng, 1) * 2 * sizeof *g->rng);
    g->cls = malloc((size_t)(P->n_cls + 1) * sizeof *g->cls);
    g->first = calloc((size_t)CS_MAX(P->n_cls, 1), sizeof *g->first);
    if (!g->el || !g->alt || !g->rule_alt || !g->rng || !g->cls || !g->first) {
        cs_grammar_unref(g);
        return oom(P);
    }
    int32_t ka = 0, ke = 0;
    for (int32_t r = 0; r < P->n_rules; r++) {
        g->rule_alt[r] = ka;
        for (int32_t a = 0; a < P->rules[r].n_alt; a++) {
            struct palt *A = &P->rules[r].alts[a];
            g->alt[ka++] = ke;
            for (int32_t i = 0; i < A->n; i++)
                g->el[ke++] = (struct cs_gel){A->e[i].type, A->e[i].v};
            g->el[ke++] = (struct cs_gel){CS_GEL_END, 0};
        }
    }
    g->rule_alt[P->n_rules] = ka;
    if (P->n_rng)
        memcpy(g->rng, P->rng, (size_t)P->n_rng * 2 * sizeof *g->rng);
    if (P->n_cls)
        memcpy(g->cls, P->cls, (size_t)P->n_cls * sizeof *g->cls);
    g->cls[P->n_cls] = P->n_rng;
    for (int32_t c = 0; c < g->n_cls; c++)
        for (int32_t k = g->cls[c]; k < g->cls[c + 1]; k++)
            first_bytes(g->first[c], g->rng[2 * k], g->rng[2 * k + 1]);
    *out = g;
    return CLSPEC_OK;
}

int cs_grammar_compile(const char *src, size_t len, const char *root, struct cs_grammar **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (!src)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "grammar: no text");
    if (!root || !*root)
        root = "root";
    struct parser P = {.s = src, .end = src + len, .p = src, .err = err, .errlen = errlen};
    int rc = parse_rules(&P);
    if (rc == CLSPEC_OK)
        rc = check(&P);
    int32_t r = rc == CLSPEC_OK ? rule_find(&P, root, strlen(root)) : -1;
    if (rc == CLSPEC_OK && r < 0)
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "grammar: no rule named '%s' (the start rule)", root);
    if (rc == CLSPEC_OK)
        rc = flatten(&P, r, out);
    for (int32_t i = 0; i < P.n_rules; i++) {
        for (int32_t a = 0; a < P.rules[i].n_alt; a++)
            free(P.rules[i].alts[a].e);
        free(P.rules[i].alts);
        free(P.rules[i].name);
    }
    free(P.rules);
    free(P.rng);
    free(P.cls);
    return rc;
}
