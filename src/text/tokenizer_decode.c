/* tokenizer_decode.c: ids -> text (token pieces and whole sequences). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

/* Appends the piece of id to b; lstrip removes one leading space. An
 * allocation failure leaves b->oom set. */
static void piece(const struct cs_tokenizer *t, int32_t id, bool special, bool lstrip, struct cs_strbuf *b)
{
    const char *s = t->text + t->text_off[id];
    size_t n = t->text_len[id], start = b->len;
    switch ((enum cs_tok_type)t->type[id]) {
    case CS_TT_UNKNOWN:
    case CS_TT_CONTROL:
        if (!special)
            return;
        cs_strbuf_put_n(b, s, n);
        break;
    case CS_TT_USER_DEFINED:
        cs_strbuf_put_n(b, s, n);
        break;
    case CS_TT_NORMAL:
    case CS_TT_BYTE:
        if (t->kind == CS_TOK_SPM && t->type[id] == CS_TT_BYTE) {
            char c = (char)strtoul(s + 3, NULL, 16); /* "<0xNN>", checked at load */
            cs_strbuf_put_n(b, &c, 1);
        } else if (t->kind == CS_TOK_SPM) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                    cs_strbuf_put_n(b, " ", 1);
                    i += 3;
                } else {
                    cs_strbuf_put_n(b, s + i++, 1);
                }
            }
        } else {
            for (size_t i = 0; i < n;) {
                size_t k;
                uint32_t cp = cs_utf8_decode((const uint8_t *)s + i, n - i, &k);
                if (cp < CS_ARRAY_LEN(t->bmap.rev) && t->bmap.rev[cp] >= 0) {
                    char c = (char)t->bmap.rev[cp];
                    cs_strbuf_put_n(b, &c, 1);
                } else {
                    cs_strbuf_put_n(b, s + i, k); /* not a byte-level character: as is */
                }
                i += k;
            }
        }
        break;
    default: /* undefined, unused */
        return;
    }
    if (!b->oom && lstrip && b->len > start && b->p[start] == ' ') {
        memmove(b->p + start, b->p + start + 1, b->len - start); /* with the NUL */
        b->len--;
    }
}

/* Copies b (then freed) to buf (cap bytes, NUL-terminated); *n_out = its
 * length, also when it does not fit (CLSPEC_E_RANGE). */
static int finish(struct cs_strbuf *b, char *buf, size_t cap, size_t *n_out, const char *what, char *err,
                  size_t errlen)
{
    if (b->oom) {
        cs_strbuf_free(b);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", what);
    }
    *n_out = b->len;
    int rc = CLSPEC_OK;
    if (cap < b->len + 1)
        rc = cs_err(err, errlen, CLSPEC_E_RANGE, "%s: %zu bytes do not fit in a buffer of %zu", what, b->len, cap);
    else {
        if (b->len)
            memcpy(buf, b->p, b->len);
        buf[b->len] = '\0';
    }
    cs_strbuf_free(b);
    return rc;
}

int cs_token_to_piece(const struct cs_tokenizer *t, int32_t id, bool special, char *buf, size_t cap,
                      size_t *n_out, char *err, size_t errlen)
{
    *n_out = 0;
    if (id < 0 || id >= t->n_vocab)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "token_to_piece: id %d outside the vocabulary (%d tokens)",
                      (int)id, (int)t->n_vocab);
    struct cs_strbuf b = {0};
    piece(t, id, special, false, &b);
    return finish(&b, buf, cap, n_out, "token_to_piece", err, errlen);
}

int cs_detokenize(const struct cs_tokenizer *t, const int32_t *ids, size_t n, bool remove_special,
                  bool unparse_special, char *buf, size_t cap, size_t *n_out, char *err, size_t errlen)
{
    *n_out = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "detokenize: ids[%zu] = %d outside the vocabulary (%d tokens)",
                          i, (int)ids[i], (int)t->n_vocab);
    size_t first = 0;
    if (remove_special && t->add_bos && n > 0 && ids[0] == t->bos)
        first = 1;
    if (remove_special && t->add_eos && n > first && ids[n - 1] == t->eos)
        n--;
    /* SPM: the space the tokenizer prefixed goes away with the first token after BOS */
    size_t strip_at = (t->kind == CS_TOK_SPM && t->add_space_prefix)
                          ? ((n > 0 && t->bos >= 0 && ids[0] == t->bos) ? 1 : 0)
                          : SIZE_MAX;
    struct cs_strbuf b = {0};
    for (size_t i = first; i < n && !b.oom; i++)
        piece(t, ids[i], unparse_special, i == strip_at, &b);
    return finish(&b, buf, cap, n_out, "detokenize", err, errlen);
}

bool cs_tokenizer_strips_space(const struct cs_tokenizer *tok)
{
    if (cs_tokenizer_kind(tok) != CS_TOK_SPM)
        return false;
    int32_t id = cs_tokenizer_find(tok, "\xe2\x96\x81", 3);
    if (id < 0) { /* no lone "\u2581": any normal token that starts with one */
        for (int32_t i = 0; i < cs_tokenizer_n_vocab(tok) && id < 0; i++) {
            size_t n;
            const char *s = cs_tokenizer_text(tok, i, &n);
            if (cs_tokenizer_type(tok, i) == CS_TT_NORMAL && s && n > 3 && memcmp(s, "\xe2\x96\x81", 3) == 0)
                id = i;
        }
    }
    if (id < 0)
        return false;
    char a[256], b[256];
    size_t na, nb;
    if (cs_token_to_piece(tok, id, false, a, sizeof a, &na, NULL, 0) < 0 ||
        cs_detokenize(tok, &id, 1, false, false, b, sizeof b, &nb, NULL, 0) < 0)
        return false;
    return nb < na;
}
