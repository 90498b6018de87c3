/* textout.c: see textout.h. Three buffers: raw (bytes of pieces whose UTF-8
 * sequence is not complete yet), held (valid text not yet shown: it may be
 * the start of a stop string) and out (the delta handed to the caller). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/textout.h"
#include "base/strbuf.h"

struct cs_textout {
    const clspec_engine *e;         /* borrowed: the vocabulary */
    char **stop;                    /* (n_stop) NUL-terminated copies */
    size_t *stop_len;               /* (n_stop) */
    int n_stop;
    bool lstrip;                    /* strip one leading space of the first token's piece */
    bool first;                     /* no token pushed yet */
    int stopped;                    /* index of the matched stop string, -1 */
    struct cs_strbuf raw, held, out; /* (a failed append sets .oom) */
    char *piece;                    /* scratch for clspec_token_piece */
    size_t piece_cap;
};

/* Removes the first n bytes of b. */
static void buf_shift(struct cs_strbuf *b, size_t n)
{
    if (!b->p)
        return;
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

/* UTF-8 (RFC 3629): the length of the sequence that lead byte c starts, 0 if
 * c cannot start one; lo/hi: the allowed range of the second byte. */
static int utf8_lead(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            *lo = 0xA0;
        if (c == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            *lo = 0x90;
        if (c == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Length of the valid sequence at s[0..n): > 0 complete; 0 a valid but
 * incomplete prefix (needs more bytes); -1 invalid (replace s[0]). */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char lo, hi;
    int L = utf8_lead(s[0], &lo, &hi);
    if (L == 0)
        return -1;
    for (int i = 1; i < L; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned char a = i == 1 ? lo : 0x80, b = i == 1 ? hi : 0xBF;
        if (s[i] < a || s[i] > b)
            return -1;
    }
    return L;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int L = utf8_seq((const unsigned char *)s + i, n - i);
        if (L <= 0)
            return false;
        i += (size_t)L;
    }
    return true;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Moves the complete sequences of raw into held (invalid bytes as U+FFFD);
 * at_end: an incomplete tail becomes U+FFFD too. */
static int drain_raw(struct cs_textout *t, bool at_end)
{
    size_t i = 0;
    const unsigned char *s = (const unsigned char *)t->raw.p;
    while (i < t->raw.len) {
        int L = utf8_seq(s + i, t->raw.len - i);
        if (L == 0 && !at_end)
            break;
        if (L > 0) {
            size_t j = i + (size_t)L;
            while (j < t->raw.len && s[j] < 0x80) /* ASCII runs in one go */
                j++;
            cs_strbuf_put_n(&t->held, (const char *)s + i, j - i);
            i = j;
        } else {
            cs_strbuf_put_n(&t->held, REPLACEMENT, 3);
            i += L == 0 ? t->raw.len - i : 1; /* an incomplete tail is one U+FFFD */
        }
    }
    buf_shift(&t->raw, i);
    return t->held.oom ? CLSPEC_E_NOMEM : CLSPEC_OK;
}

bool cs_textout_textless(const clspec_engine *e, const int32_t *p, int n)
{
    for (int i = 0; i < n; i++) {
        int t = clspec_token_type(e, p[i]);
        if (t != CLSPEC_TOKEN_CONTROL && t != CLSPEC_TOKEN_UNKNOWN && t != CLSPEC_TOKEN_UNUSED)
            return false;
    }
    return true;
}

int cs_textout_new(const clspec_engine *e, const char *const *stop, int n_stop, bool lstrip,
                   struct cs_textout **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_stop < 0 || (n_stop > 0 && !stop))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "textout: bad stop list (%d strings)", n_stop);
    for (int i = 0; i < n_stop; i++) {
        if (!stop[i] || !stop[i][0])
            return cs_err(err, errlen, CLSPEC_E_INVAL, "stop[%d]: empty stop string", i);
        if (!utf8_valid(stop[i], strlen(stop[i])))
            return cs_err(err, errlen, CLSPEC_E_INVAL, "stop[%d]: not valid UTF-8", i);
    }
    struct cs_textout *t = calloc(1, sizeof *t);
    if (!t)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "textout: out of memory");
    t->e = e;
    t->lstrip = lstrip;
    t->first = true;
    t->stopped = -1;
    t->piece_cap = 256;
    t->piece = malloc(t->piece_cap);
    t->stop = calloc((size_t)(n_stop ? n_stop : 1), sizeof *t->stop);
    t->stop_len = calloc((size_t)(n_stop ? n_stop : 1), sizeof *t->stop_len);
    if (!t->piece || !t->stop || !t->stop_len)
        goto oom;
    for (int i = 0; i < n_stop; i++) {
        t->stop[i] = strdup(stop[i]);
        if (!t->stop[i])
            goto oom;
        t->stop_len[i] = strlen(stop[i]);
        t->n_stop = i + 1;
    }
    *out = t;
    return CLSPEC_OK;
oom:
    cs_textout_free(t);
    return cs_err(err, errlen, CLSPEC_E_NOMEM, "textout: out of memory");
}

void cs_textout_free(struct cs_textout *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_stop; i++)
        free(t->stop[i]);
    free(t->stop);
    free(t->stop_len);
    cs_strbuf_free(&t->raw);
    cs_strbuf_free(&t->held);
    cs_strbuf_free(&t->out);
    free(t->piece);
    free(t);
}

static const char EMPTY[] = "";

/* First index of needle (m > 0 bytes) in hay[0..n) (may hold NUL bytes), SIZE_MAX if none. */
static size_t find(const char *hay, size_t n, const char *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return i;
    return SIZE_MAX;
}

/* Hands out held[0..n) as the delta. */
static int emit(struct cs_textout *t, size_t n, const char **text, size_t *len)
{
    t->out.len = 0;
    cs_strbuf_put_n(&t->out, t->held.p ? t->held.p : EMPTY, n);
    if (t->out.oom)
        return CLSPEC_E_NOMEM;
    buf_shift(&t->held, n);
    *text = t->out.p ? t->out.p : EMPTY;
    *len = t->out.len;
    return CLSPEC_OK;
}

int cs_textout_push(struct cs_textout *t, int32_t token, const char **text, size_t *len, char *err, size_t errlen)
{
    *text = EMPTY;
    *len = 0;
    if (t->stopped >= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "textout: token after a stop string");
    size_t n;
    int rc = clspec_token_piece(t->e, token, 0, t->piece, t->piece_cap, &n, err, errlen);
    if (rc == CLSPEC_E_RANGE && n + 1 > t->piece_cap) { /* a long piece: grow and retry */
        char *np = realloc(t->piece, n + 1);
        if (!np)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "textout: out of memory");
        t->piece = np;
        t->piece_cap = n + 1;
        rc = clspec_token_piece(t->e, token, 0, t->piece, t->piece_cap, &n, err, errlen);
    }
    if (rc < 0)
        return rc;
    const char *p = t->piece;
    if (t->first && t->lstrip && n > 0 && p[0] == ' ')
        p++, n--;
    t->first = false;
    cs_strbuf_put_n(&t->raw, p, n);
    if (t->raw.oom || drain_raw(t, false))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "textout: out of memory");
    /* a complete stop string: the earliest one wins (the longer at the same place) */
    size_t best = SIZE_MAX;
    int best_i = -1;
    for (int i = 0; i < t->n_stop && t->held.len; i++) {
        size_t at = find(t->held.p, t->held.len, t->stop[i], t->stop_len[i]);
        if (at != SIZE_MAX && (at < best || (at == best && t->stop_len[i] > t->stop_len[best_i]))) {
            best = at;
            best_i = i;
        }
    }
    if (best_i >= 0) {
        t->stopped = best_i;
        if (emit(t, best, text, len))
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "textout: out of memory");
        t->held.len = 0;
        t->raw.len = 0;
        return 1;
    }
    /* hold back the longest suffix that is a proper prefix of a stop string */
    size_t hold = 0;
    for (int i = 0; i < t->n_stop; i++) {
        size_t k = CS_MIN(t->stop_len[i] - 1, t->held.len);
        for (; k > hold; k--)
            if (memcmp(t->held.p + t->held.len - k, t->stop[i], k) == 0)
                break;
        if (k > hold)
            hold = k;
    }
    /* pending raw bytes (an incomplete character) could also start a stop
     * string together with held text; they are not shown yet anyway, and
     * the held suffix check above runs again once they complete */
    if (emit(t, t->held.len - hold, text, len))
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "textout: out of memory");
    return 0;
}

int cs_textout_flush(struct cs_textout *t, const char **text, size_t *len)
{
    *text = EMPTY;
    *len = 0;
    if (t->stopped >= 0)
        return CLSPEC_OK;
    if (drain_raw(t, true) || emit(t, t->held.len, text, len))
        return CLSPEC_E_NOMEM;
    return CLSPEC_OK;
}

int cs_textout_stop_index(const struct cs_textout *t) { return t->stopped; }
