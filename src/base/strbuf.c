/* strbuf.c: growable string; see strbuf.h. */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

static bool reserve(struct cs_strbuf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (extra >= SIZE_MAX - b->len) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *np = realloc(b->p, cap);
    if (!np) {
        b->oom = true;
        return false;
    }
    b->p = np;
    b->cap = cap;
    return true;
}

void cs_strbuf_put_n(struct cs_strbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void cs_strbuf_put(struct cs_strbuf *b, const char *s)
{
    cs_strbuf_put_n(b, s, strlen(s));
}

void cs_strbuf_printf(struct cs_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int cs_strbuf_take(struct cs_strbuf *b, char **out, size_t *len)
{
    *out = NULL;
    if (!b->oom)
        reserve(b, 0); /* an empty text is still a string */
    if (b->oom) {
        cs_strbuf_free(b);
        return CLSPEC_E_NOMEM;
    }
    b->p[b->len] = '\0';
    *out = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return CLSPEC_OK;
}

void cs_strbuf_free(struct cs_strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}
