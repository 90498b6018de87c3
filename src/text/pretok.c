/* pretok.c: hand-written scanners equivalent to the BPE split regexes. */
#include "config.h"

#include <string.h>

#include "text/pretok.h"
#include "text/unicode.h"

#define OUT_OF_RANGE 0xFFFFFFFFu
#define IN_RANGE 16u /* extra flag: position is inside the text */

struct scan {
    const uint32_t *cps;
    size_t n;
    size_t *ends;
    size_t n_words;
    size_t last; /* end of the last word */
};

static uint32_t cpt(const struct scan *s, size_t pos)
{
    return pos < s->n ? s->cps[pos] : OUT_OF_RANGE;
}

static unsigned flags(const struct scan *s, size_t pos)
{
    return pos < s->n ? (cs_unicode_flags(s->cps[pos]) | IN_RANGE) : 0;
}

static void emit(struct scan *s, size_t end)
{
    if (end > s->last) {
        s->ends[s->n_words++] = end;
        s->last = end;
    }
}

static uint32_t lower_ascii(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d at pos (optionally case-insensitive): length or 0. */
static size_t contraction(const struct scan *s, size_t pos, int icase)
{
    if (cpt(s, pos) != '\'' || pos + 1 >= s->n)
        return 0;
    uint32_t a = cpt(s, pos + 1), b = cpt(s, pos + 2);
    if (icase)
        a = lower_ascii(a), b = lower_ascii(b);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 < s->n && ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')))
        return 3;
    return 0;
}

#define SLN (CS_UCAT_SPACE | CS_UCAT_LETTER | CS_UCAT_NUMBER)

/* The tail every pattern shares, at pos: \s+(?!\S) | \s+ | (no match: one
 * character). Returns the end of that word. With last_rn, also stores the end
 * of the last \r or \n inside the whitespace run (0 if none). */
static size_t space_run(const struct scan *s, size_t pos, size_t *last_rn)
{
    size_t nws = 0;
    while (flags(s, pos + nws) & CS_UCAT_SPACE) {
        uint32_t c = cpt(s, pos + nws);
        if (last_rn && (c == '\r' || c == '\n'))
            *last_rn = pos + nws + 1;
        nws++;
    }
    if (nws > 1 && pos + nws < s->n) /* \s+(?!\S): leave the last space to the next word */
        return pos + nws - 1;
    if (nws > 0) /* \s+ */
        return pos + nws;
    return pos + 1; /* no match: one character alone */
}

static void split_gpt2(struct scan *s)
{
    size_t pos = 0;
    while (pos < s->n) {
        uint32_t c = cpt(s, pos);
        size_t k = contraction(s, pos, 0);
        if (k) {
            pos += k;
            emit(s, pos);
            continue;
        }
        unsigned f2 = c == ' ' ? flags(s, pos + 1) : flags(s, pos);
        if (f2 & CS_UCAT_LETTER) { /* ?\p{L}+ */
            pos += c == ' ';
            while (flags(s, pos) & CS_UCAT_LETTER)
                pos++;
            emit(s, pos);
            continue;
        }
        if (f2 & CS_UCAT_NUMBER) { /* ?\p{N}+ */
            pos += c == ' ';
            while (flags(s, pos) & CS_UCAT_NUMBER)
                pos++;
            emit(s, pos);
            continue;
        }
        if (!(f2 & SLN) && (f2 & IN_RANGE)) { /* ?[^\s\p{L}\p{N}]+ */
            pos += c == ' ';
            while (!(flags(s, pos) & SLN) && (flags(s, pos) & IN_RANGE))
                pos++;
            emit(s, pos);
            continue;
        }
        pos = space_run(s, pos, NULL);
        emit(s, pos);
    }
}

static void split_llama3(struct scan *s, size_t max_digits)
{
    size_t pos = 0;
    while (pos < s->n) {
        uint32_t c = cpt(s, pos);
        unsigned f = flags(s, pos);
        size_t k = contraction(s, pos, 1);
        if (k) {
            pos += k;
            emit(s, pos);
            continue;
        }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(c == '\r' || c == '\n' || (f & CS_UCAT_NUMBER)) &&
            ((f & CS_UCAT_LETTER) || (flags(s, pos + 1) & CS_UCAT_LETTER))) {
            pos++;
            while (flags(s, pos) & CS_UCAT_LETTER)
                pos++;
            emit(s, pos);
            continue;
        }
        if (f & CS_UCAT_NUMBER) { /* \p{N}{1,max_digits} */
            size_t start = pos;
            while ((flags(s, pos) & CS_UCAT_NUMBER) && pos - start < max_digits)
                pos++;
            emit(s, pos);
            continue;
        }
        /* ?[^\s\p{L}\p{N}]+[\r\n]* */
        unsigned f2 = c == ' ' ? flags(s, pos + 1) : f;
        if (!(f2 & SLN) && (f2 & IN_RANGE)) {
            pos += c == ' ';
            while (!(flags(s, pos) & SLN) && (flags(s, pos) & IN_RANGE))
                pos++;
            while (cpt(s, pos) == '\r' || cpt(s, pos) == '\n')
                pos++;
            emit(s, pos);
            continue;
        }
        size_t last_rn = 0;
        size_t end = space_run(s, pos, &last_rn);
        pos = last_rn > 0 ? last_rn : end; /* \s*[\r\n]+ first */
        emit(s, pos);
    }
}

size_t cs_pretok_split(enum cs_pretok kind, const uint32_t *cps, size_t n, size_t *ends)
{
    struct scan s = {cps, n, ends, 0, 0};
    switch (kind) {
    case CS_PRETOK_GPT2:
        split_gpt2(&s);
        break;
    case CS_PRETOK_LLAMA3:
        split_llama3(&s, 3);
        break;
    case CS_PRETOK_QWEN2:
        split_llama3(&s, 1);
        break;
    }
    return s.n_words;
}

int cs_pretok_from_name(const char *name)
{
    static const struct {
        const char *name;
        enum cs_pretok kind;
    } names[] = {
        {"default", CS_PRETOK_GPT2}, {"gpt-2", CS_PRETOK_GPT2},       {"llama3", CS_PRETOK_LLAMA3},
        {"llama-bpe", CS_PRETOK_LLAMA3}, {"llama-v3", CS_PRETOK_LLAMA3}, {"qwen2", CS_PRETOK_QWEN2},
    };
    if (!name || !name[0])
        return CS_PRETOK_GPT2;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].name, name) == 0)
            return (int)names[i].kind;
    return -1;
}
