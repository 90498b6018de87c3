/* jinja_lex.c: template text -> tokens. Whitespace control happens here, as
 * in Jinja's lexer with transformers' settings:
 *   "{%-" "{{-" "{#-"  strip all whitespace before the tag;
 *   "-%}" "-}}" "-#}"  strip all whitespace after it;
 *   trim_blocks        drop the first newline after a block or comment tag;
 *   lstrip_blocks      drop the spaces and tabs between a line's start and a
 *                      block or comment tag ("{%+" turns it off).
 * Inside a tag the end marker only counts outside brackets (a dict literal
 * may end in "}}"). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_impl.h"

struct lexer {
    const char *s;
    size_t n, pos;
    int line;
    struct jx_token *t;
    size_t nt, cap;
    char *err;
    size_t errlen;
};

static int emit(struct lexer *L, enum jx_tok type, const char *text, size_t len, int line)
{
    if (L->nt == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        struct jx_token *nt = realloc(L->t, cap * sizeof *nt);
        if (!nt)
            return cs_err(L->err, L->errlen, CLSPEC_E_NOMEM, "template: out of memory");
        L->t = nt;
        L->cap = cap;
    }
    struct jx_token *k = &L->t[L->nt];
    memset(k, 0, sizeof *k);
    k->t = type;
    k->line = line;
    if (text) {
        k->text = malloc(len + 1);
        if (!k->text)
            return cs_err(L->err, L->errlen, CLSPEC_E_NOMEM, "template: out of memory");
        memcpy(k->text, text, len);
        k->text[len] = 0;
        k->len = len;
    }
    L->nt++;
    return CLSPEC_OK;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static void put_utf8(struct cs_strbuf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    cs_strbuf_put_n(b, u, n);
}

static int lex_string(struct lexer *L)
{
    char q = L->s[L->pos++];
    int line = L->line;
    struct cs_strbuf b = {0};
    while (L->pos < L->n && L->s[L->pos] != q) {
        char c = L->s[L->pos++];
        if (c == '\n')
            L->line++;
        if (c != '\\' || L->pos >= L->n) {
            cs_strbuf_put_n(&b, &c, 1);
            continue;
        }
        char e = L->s[L->pos++];
        unsigned cp = 0;
        int hex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        switch (e) {
        case 'n': cs_strbuf_put(&b, "\n"); break;
        case 't': cs_strbuf_put(&b, "\t"); break;
        case 'r': cs_strbuf_put(&b, "\r"); break;
        case '0': cs_strbuf_put_n(&b, "\0", 1); break;
        case '\\': cs_strbuf_put(&b, "\\"); break;
        case '\'': cs_strbuf_put(&b, "'"); break;
        case '"': cs_strbuf_put(&b, "\""); break;
        case '\n': L->line++; break;
        default:
            if (!hex) { /* Python keeps unknown escapes as written */
                cs_strbuf_put_n(&b, "\\", 1);
                cs_strbuf_put_n(&b, &e, 1);
                break;
            }
            for (int i = 0; i < hex; i++) {
                char h = L->pos < L->n ? L->s[L->pos++] : 0;
                int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (d < 0) {
                    cs_strbuf_free(&b);
                    return cs_err(L->err, L->errlen, CLSPEC_E_INVAL, "template line %d: bad \\%c escape", line, e);
                }
                cp = cp * 16 + (unsigned)d;
            }
            put_utf8(&b, cp);
        }
    }
    if (L->pos >= L->n) {
        cs_strbuf_free(&b);
        return cs_err(L->err, L->errlen, CLSPEC_E_INVAL, "template line %d: unterminated string", line);
    }
    L->pos++;
    int rc = b.oom ? cs_err(L->err, L->errlen, CLSPEC_E_NOMEM, "template: out of memory")
                   : emit(L, JT_STRING, b.p ? b.p : "", b.len, line);
    cs_strbuf_free(&b);
    return rc;
}

static int lex_number(struct lexer *L)
{
    size_t st = L->pos;
    bool flt = false;
    char buf[64];
    size_t nb = 0;
    while (L->pos < L->n && (is_digit(L->s[L->pos]) || L->s[L->pos] == '_'))
        L->pos++;
    if (L->pos + 1 < L->n && L->s[L->pos] == '.' && is_digit(L->s[L->pos + 1])) {
        flt = true;
        L->pos++;
        while (L->pos < L->n && (is_digit(L->s[L->pos]) || L->s[L->pos] == '_'))
            L->pos++;
    }
    if (L->pos < L->n && (L->s[L->pos] == 'e' || L->s[L->pos] == 'E')) {
        size_t p = L->pos + 1;
        if (p < L->n && (L->s[p] == '+' || L->s[p] == '-'))
            p++;
        if (p < L->n && is_digit(L->s[p])) {
            flt = true;
            L->pos = p;
            while (L->pos < L->n && is_digit(L->s[L->pos]))
                L->pos++;
        }
    }
    for (size_t i = st; i < L->pos && nb + 1 < sizeof buf; i++)
        if (L->s[i] != '_')
            buf[nb++] = L->s[i];
    buf[nb] = 0;
    CS_TRY(emit(L, flt ? JT_FLOAT : JT_INT, NULL, 0, L->line));
    if (flt)
        L->t[L->nt - 1].f = strtod(buf, NULL);
    else
        L->t[L->nt - 1].i = strtoll(buf, NULL, 10);
    return CLSPEC_OK;
}

/* Tokens of one tag up to its end marker ("}}" or "%}", optionally "-"
 * first). *strip_after: the end marker had the "-". */
static int lex_tag(struct lexer *L, char endc, bool *strip_after)
{
    static const char *ops2[] = {"**", "//", "==", "!=", "<=", ">="};
    int depth = 0;
    int start_line = L->line;
    for (;;) {
        while (L->pos < L->n && is_ws(L->s[L->pos])) {
            if (L->s[L->pos] == '\n')
                L->line++;
            L->pos++;
        }
        if (L->pos >= L->n)
            return cs_err(L->err, L->errlen, CLSPEC_E_INVAL, "template line %d: unclosed tag (missing '%c}')",
                          start_line, endc);
        const char *p = L->s + L->pos;
        size_t left = L->n - L->pos;
        if (depth == 0) {
            if (left >= 3 && p[0] == '-' && p[1] == endc && p[2] == '}') {
                L->pos += 3;
                *strip_after = true;
                return CLSPEC_OK;
            }
            if (left >= 2 && p[0] == endc && p[1] == '}') {
                L->pos += 2;
                *strip_after = false;
                return CLSPEC_OK;
            }
        }
        char c = *p;
        if (c == '\'' || c == '"') {
            CS_TRY(lex_string(L));
        } else if (is_digit(c)) {
            CS_TRY(lex_number(L));
        } else if (is_alpha(c)) {
            size_t st = L->pos;
            while (L->pos < L->n && (is_alpha(L->s[L->pos]) || is_digit(L->s[L->pos])))
                L->pos++;
            CS_TRY(emit(L, JT_NAME, L->s + st, L->pos - st, L->line));
        } else {
            size_t len = 0;
            for (size_t i = 0; i < CS_ARRAY_LEN(ops2) && !len; i++)
                if (left >= 2 && p[0] == ops2[i][0] && p[1] == ops2[i][1])
                    len = 2;
            if (!len) {
                if (!strchr("+-*/%~<>=()[]{},.:|!", c))
                    return cs_err(L->err, L->errlen, CLSPEC_E_INVAL, "template line %d: unexpected character '%c'",
                                  L->line, c);
                len = 1;
                if (c == '(' || c == '[' || c == '{')
                    depth++;
                else if ((c == ')' || c == ']' || c == '}') && depth > 0)
                    depth--;
            }
            CS_TRY(emit(L, JT_OP, p, len, L->line));
            L->pos += len;
        }
    }
}

static void count_lines(struct lexer *L, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (L->s[i] == '\n')
            L->line++;
}

/* Emits the text s[a, b) after whitespace control. */
static int emit_text(struct lexer *L, size_t a, size_t b, bool lstrip_all, bool trim_nl, char tag, char sign,
                     int line)
{
    if (trim_nl && a < b && L->s[a] == '\n')
        a++;
    else if (trim_nl && a + 1 < b && L->s[a] == '\r' && L->s[a + 1] == '\n')
        a += 2;
    if (lstrip_all)
        while (a < b && is_ws(L->s[a]))
            a++;
    if (sign == '-') {
        while (b > a && is_ws(L->s[b - 1]))
            b--;
    } else if ((tag == '%' || tag == '#') && sign != '+') {
        size_t l = b;
        while (l > a && (L->s[l - 1] == ' ' || L->s[l - 1] == '\t'))
            l--;
        if ((l > a && L->s[l - 1] == '\n') || (l == a && (a == 0 || L->s[a - 1] == '\n')))
            b = l;
    }
    return b > a ? emit(L, JT_TEXT, L->s + a, b - a, line) : CLSPEC_OK;
}

int jx_lex(const char *src, size_t len, struct jx_token **toks, size_t *n, char *err, size_t errlen)
{
    /* Jinja drops one newline at the end of the template (keep_trailing_newline off) */
    if (len && src[len - 1] == '\n')
        len -= len > 1 && src[len - 2] == '\r' ? 2 : 1;
    struct lexer L = {.s = src, .n = len, .line = 1, .err = err, .errlen = errlen};
    bool lstrip_next = false, trim_next = false;
    int rc = CLSPEC_OK;
    while (rc == CLSPEC_OK) {
        size_t t = L.pos;
        while (t + 1 < len && !(src[t] == '{' && (src[t + 1] == '{' || src[t + 1] == '%' || src[t + 1] == '#')))
            t++;
        if (t + 1 >= len)
            t = len;
        char tag = t < len ? src[t + 1] : 0;
        char sign = t + 2 < len && (src[t + 2] == '-' || src[t + 2] == '+') ? src[t + 2] : 0;
        int text_line = L.line;
        rc = emit_text(&L, L.pos, t, lstrip_next, trim_next, tag, sign, text_line);
        count_lines(&L, L.pos, t);
        if (rc || t >= len)
            break;
        L.pos = t + 2 + (sign ? 1 : 0);
        if (tag == '#') {
            const char *e = NULL;
            for (size_t i = L.pos; i + 1 < len && !e; i++)
                if (src[i] == '#' && src[i + 1] == '}')
                    e = src + i;
            if (!e) {
                rc = cs_err(err, errlen, CLSPEC_E_INVAL, "template line %d: unclosed comment", L.line);
                break;
            }
            size_t end = (size_t)(e - src);
            lstrip_next = end > L.pos && src[end - 1] == '-';
            trim_next = true;
            count_lines(&L, L.pos, end);
            L.pos = end + 2;
            continue;
        }
        bool block = tag == '%';
        rc = emit(&L, block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, NULL, 0, L.line);
        if (!rc)
            rc = lex_tag(&L, block ? '%' : '}', &lstrip_next);
        if (!rc)
            rc = emit(&L, block ? JT_BLOCK_END : JT_VAR_END, NULL, 0, L.line);
        trim_next = block;
    }
    if (!rc)
        rc = emit(&L, JT_EOF, NULL, 0, L.line);
    if (rc) {
        jx_tokens_free(L.t, L.nt);
        return rc;
    }
    *toks = L.t;
    *n = L.nt;
    return CLSPEC_OK;
}

void jx_tokens_free(struct jx_token *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++)
        free(t[i].text);
    free(t);
}
