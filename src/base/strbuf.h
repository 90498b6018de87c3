/* strbuf.h: a growable NUL-terminated byte string for building text (chat
 * prompts, /metrics, JSON). Appends never fail loudly: an allocation failure
 * sets oom and later appends do nothing; check it once at the end. The caller
 * owns the struct (zero-initialise it) and frees p, or takes it. */
#ifndef CS_STRBUF_H
#define CS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "base/common.h"

struct cs_strbuf {
    char *p;    /* malloc'd, NUL-terminated once anything was appended; NULL before */
    size_t len; /* bytes, without the NUL */
    size_t cap; /* bytes allocated */
    bool oom;   /* an append failed; p holds what came before it */
};

void cs_strbuf_put_n(struct cs_strbuf *b, const char *s, size_t n);
void cs_strbuf_put(struct cs_strbuf *b, const char *s);
void cs_strbuf_printf(struct cs_strbuf *b, const char *fmt, ...) CS_PRINTF(2, 3);
/* Hands the text over: *out = p (an empty string when nothing was appended),
 * *len (optional) = len, and resets b. CLSPEC_E_NOMEM (b freed, *out NULL)
 * when an append had failed. */
int cs_strbuf_take(struct cs_strbuf *b, char **out, size_t *len);
void cs_strbuf_free(struct cs_strbuf *b);

#endif
