/* unicode.h: UTF-8 decoding/encoding and the code point categories that the
 * BPE pre-tokenizers need (letter, number, mark, whitespace as llama.cpp's \s).
 * Pure functions over caller-owned buffers; the tables are static data. */
#ifndef CS_UNICODE_H
#define CS_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Category flags of a code point (bit set). */
enum cs_ucat {
    CS_UCAT_LETTER = 1, /* \p{L}: Lu Ll Lt Lm Lo */
    CS_UCAT_NUMBER = 2, /* \p{N}: Nd Nl No */
    CS_UCAT_MARK = 4,   /* \p{M}: Mn Mc Me */
    CS_UCAT_SPACE = 8,  /* \s (the list llama.cpp uses) */
};

/* One generated range: lo..hi inclusive share one category flag. */
struct cs_urange {
    uint32_t lo, hi;
    uint8_t flag;
};
extern const struct cs_urange cs_unicode_ranges[]; /* sorted by lo */
extern const size_t cs_unicode_n_ranges;
extern const char cs_unicode_version[];

/* Code points returned by cs_utf8_decode for a byte that does not start a
 * valid sequence: CS_UTF8_INVALID_BASE + byte (outside Unicode, category 0). */
#define CS_UTF8_INVALID_BASE 0x110000u

/* Decodes one code point from s[0..len) (len >= 1). Stores its byte length in
 * *n (1..4). Invalid, overlong, surrogate or truncated sequences decode as one
 * byte: CS_UTF8_INVALID_BASE + s[0]. */
uint32_t cs_utf8_decode(const uint8_t *s, size_t len, size_t *n);
/* Encodes cp (< 0x110000) into out (4 bytes room); returns the byte count. */
size_t cs_utf8_encode(uint32_t cp, char *out);
/* True when s[0..len) is entirely valid UTF-8. */
bool cs_utf8_valid(const uint8_t *s, size_t len);
/* Category flags of cp (0 for other/invalid). */
unsigned cs_unicode_flags(uint32_t cp);

#endif
