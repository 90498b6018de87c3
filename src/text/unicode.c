/* unicode.c: UTF-8 and code point categories for the pre-tokenizers. */
#include "config.h"

#include "text/unicode.h"

uint32_t cs_utf8_decode(const uint8_t *s, size_t len, size_t *n)
{
    uint8_t c = s[0];
    uint32_t cp, min;
    size_t k;
    if (c < 0x80) {
        *n = 1;
        return c;
    } else if ((c & 0xE0) == 0xC0) {
        k = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        k = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        k = 4, cp = c & 0x07, min = 0x10000;
    } else {
        goto bad;
    }
    if (len < k)
        goto bad;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto bad;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        goto bad;
    *n = k;
    return cp;
bad:
    *n = 1;
    return CS_UTF8_INVALID_BASE + c;
}

size_t cs_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool cs_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0, n;
    while (i < len) {
        if (cs_utf8_decode(s + i, len - i, &n) >= CS_UTF8_INVALID_BASE)
            return false;
        i += n;
    }
    return true;
}

/* \s as llama.cpp's unicode tables define it. */
static bool is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

unsigned cs_unicode_flags(uint32_t cp)
{
    unsigned f = is_space(cp) ? CS_UCAT_SPACE : 0;
    if (cp < 0x80) { /* fast path */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return f | CS_UCAT_LETTER;
        if (cp >= '0' && cp <= '9')
            return f | CS_UCAT_NUMBER;
        return f;
    }
    size_t lo = 0, hi = cs_unicode_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cs_unicode_ranges[mid].hi < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < cs_unicode_n_ranges && cs_unicode_ranges[lo].lo <= cp)
        f |= cs_unicode_ranges[lo].flag;
    return f;
}
