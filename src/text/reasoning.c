/* reasoning.c: thinking split from the answer (see reasoning.h). A small
 * state machine over the text fed so far: before the answer is known to
 * start with a thinking block (whitespace and a prefix of the open marker
 * are held back), inside it (a prefix of the close marker is held back),
 * and after it (content, leading whitespace dropped once). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "text/reasoning.h"
#include "base/common.h"
#include "base/strbuf.h"

int cs_reasoning_format_parse(const char *name, enum cs_reasoning_format *out, char *err, size_t errlen)
{
    if (name && !strcmp(name, "none"))
        *out = CS_REASONING_NONE;
    else if (name && (!strcmp(name, "deepseek") || !strcmp(name, "auto")))
        *out = CS_REASONING_DEEPSEEK;
    else if (name && !strcmp(name, "deepseek-legacy"))
        *out = CS_REASONING_DEEPSEEK_LEGACY;
    else
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "reasoning_format \"%s\": unknown (expected none, deepseek, deepseek-legacy or auto)",
                      name ? name : "(null)");
    return CLSPEC_OK;
}

static bool has(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; s && i + k <= n; i++)
        if (!memcmp(s + i, needle, k))
            return true;
    return false;
}

struct cs_reasoning_markers cs_reasoning_markers_detect(const char *tmpl, size_t len)
{
    if (has(tmpl, len, "<|START_THINKING|>"))
        return (struct cs_reasoning_markers){"<|START_THINKING|>", "<|END_THINKING|>"};
    return (struct cs_reasoning_markers){"<think>", "</think>"};
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool cs_reasoning_starts_open(const char *p, size_t n, struct cs_reasoning_markers m)
{
    while (n && is_ws(p[n - 1]))
        n--;
    size_t k = strlen(m.open);
    return n >= k && !memcmp(p + n - k, m.open, k);
}

enum phase { P_BEFORE, P_THINK, P_AFTER_CLOSE, P_CONTENT };

struct cs_reasoning_stream {
    enum cs_reasoning_format f;
    struct cs_reasoning_markers m;
    struct cs_strbuf buf;
    size_t pos;
    enum phase ph;
    struct cs_reasoning_delta *ev;
    size_t n_ev, cap;
    bool oom;
};

static void emit(struct cs_reasoning_stream *s, enum cs_reasoning_kind k, const char *t, size_t n)
{
    if (!n || s->oom)
        return;
    if (s->n_ev && s->ev[s->n_ev - 1].kind == k) { /* the same kind: one delta */
        s->oom = cs_str_append(&s->ev[s->n_ev - 1].text, t, n) != 0;
        return;
    }
    struct cs_reasoning_delta *nv = cs_grow(s->ev, &s->cap, s->n_ev + 1, sizeof *nv);
    char *p = NULL;
    if (nv)
        s->ev = nv;
    if (!nv || cs_str_append(&p, t, n) != 0) {
        s->oom = true;
        return;
    }
    s->ev[s->n_ev++] = (struct cs_reasoning_delta){k, p};
}

/* content as the format wants it: legacy keeps the tags in the content too */
static void out_content(struct cs_reasoning_stream *s, const char *t, size_t n) { emit(s, CS_RD_CONTENT, t, n); }
static void out_thought(struct cs_reasoning_stream *s, const char *t, size_t n)
{
    emit(s, CS_RD_REASONING, t, n);
}

static size_t find(const char *b, size_t from, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = from; i + k <= n; i++)
        if (!memcmp(b + i, needle, k))
            return i;
    return SIZE_MAX;
}

/* bytes at the end of b[from, n) that could begin needle */
static size_t held(const char *b, size_t from, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t l = CS_MIN(k - 1, n - from); l > 0; l--)
        if (!memcmp(b + n - l, needle, l))
            return l;
    return 0;
}

static bool step(struct cs_reasoning_stream *s, bool final)
{
    const char *b = s->buf.p ? s->buf.p : "";
    size_t n = s->buf.len;
    bool legacy = s->f == CS_REASONING_DEEPSEEK_LEGACY;
    switch (s->ph) {
    case P_BEFORE: {
        size_t p = s->pos;
        while (p < n && is_ws(b[p]))
            p++;
        size_t k = strlen(s->m.open), have = n - p;
        if (memcmp(b + p, s->m.open, CS_MIN(k, have)) != 0 || (final && have < k)) {
            s->ph = P_CONTENT; /* no thinking block */
            return true;
        }
        if (have < k)
            return false;
        if (legacy)
            out_content(s, b + s->pos, p + k - s->pos);
        s->pos = p + k;
        s->ph = P_THINK;
        return true;
    }
    case P_THINK: {
        size_t at = find(b, s->pos, n, s->m.close);
        size_t end = at != SIZE_MAX ? at : final ? n : n - held(b, s->pos, n, s->m.close);
        out_thought(s, b + s->pos, end - s->pos);
        if (legacy)
            out_content(s, b + s->pos, end - s->pos);
        bool moved = end > s->pos;
        s->pos = end;
        if (at != SIZE_MAX) {
            size_t k = strlen(s->m.close);
            if (legacy)
                out_content(s, b + at, k);
            s->pos = at + k;
            s->ph = P_AFTER_CLOSE;
            return true;
        }
        return moved;
    }
    case P_AFTER_CLOSE: {
        size_t p = s->pos;
        if (!legacy)
            while (p < n && is_ws(b[p]))
                p++;
        if (p >= n && !final) {
            s->pos = p;
            return false;
        }
        s->pos = p;
        s->ph = P_CONTENT;
        return true;
    }
    case P_CONTENT:
        out_content(s, b + s->pos, n - s->pos);
        s->pos = n;
        return false;
    }
    return false;
}

int cs_reasoning_stream_new(enum cs_reasoning_format f, struct cs_reasoning_markers m, bool starts_open,
                            struct cs_reasoning_stream **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!m.open || !m.close || !*m.open || !*m.close)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "reasoning: empty markers");
    struct cs_reasoning_stream *s = calloc(1, sizeof *s);
    if (!s)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "reasoning: out of memory");
    s->f = f;
    s->m = m;
    s->ph = f == CS_REASONING_NONE ? P_CONTENT : starts_open ? P_THINK : P_BEFORE;
    *out = s;
    return CLSPEC_OK;
}

void cs_reasoning_stream_free(struct cs_reasoning_stream *s)
{
    if (!s)
        return;
    cs_strbuf_free(&s->buf);
    cs_reasoning_deltas_free(s->ev, s->n_ev);
    free(s);
}

void cs_reasoning_deltas_free(struct cs_reasoning_delta *ev, size_t n)
{
    for (size_t i = 0; ev && i < n; i++)
        free(ev[i].text);
    free(ev);
}

int cs_reasoning_stream_feed(struct cs_reasoning_stream *s, const char *text, size_t n, bool final,
                             struct cs_reasoning_delta **ev, size_t *n_ev, char *err, size_t errlen)
{
    *ev = NULL;
    *n_ev = 0;
    if (n)
        cs_strbuf_put_n(&s->buf, text, n);
    while (!s->buf.oom && !s->oom && step(s, final))
        ;
    if (s->buf.oom || s->oom)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "reasoning: out of memory");
    *ev = s->ev;
    *n_ev = s->n_ev;
    s->ev = NULL;
    s->n_ev = s->cap = 0;
    return CLSPEC_OK;
}

int cs_reasoning_split(enum cs_reasoning_format f, struct cs_reasoning_markers m, bool starts_open, const char *text,
                       size_t n, char **reasoning, char **content, char *err, size_t errlen)
{
    *reasoning = *content = NULL;
    struct cs_reasoning_stream *s = NULL;
    CS_TRY(cs_reasoning_stream_new(f, m, starts_open, &s, err, errlen));
    struct cs_reasoning_delta *ev = NULL;
    size_t nev = 0;
    int rc = cs_reasoning_stream_feed(s, text, n, true, &ev, &nev, err, errlen);
    cs_reasoning_stream_free(s);
    if (rc)
        return rc;
    struct cs_strbuf r = {0}, c = {0};
    bool any_thought = false;
    for (size_t i = 0; i < nev; i++) {
        if (ev[i].kind == CS_RD_REASONING) {
            cs_strbuf_put(&r, ev[i].text);
            any_thought = true;
        } else {
            cs_strbuf_put(&c, ev[i].text);
        }
    }
    cs_reasoning_deltas_free(ev, nev);
    size_t len;
    rc = cs_strbuf_take(&c, content, &len);
    if (rc == CLSPEC_OK && any_thought)
        rc = cs_strbuf_take(&r, reasoning, &len);
    cs_strbuf_free(&r);
    cs_strbuf_free(&c);
    if (rc) {
        free(*content);
        *content = NULL;
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "reasoning: out of memory");
    }
    return CLSPEC_OK;
}
