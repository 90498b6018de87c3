/* pretok.h: the BPE pre-tokenizers (GPT-2, Llama 3, Qwen2 split patterns),
 * written as hand scanners over code points instead of regexes.
 * Pure functions: the caller owns the code point and boundary arrays. */
#ifndef CS_PRETOK_H
#define CS_PRETOK_H

#include <stddef.h>
#include <stdint.h>

enum cs_pretok {
    CS_PRETOK_GPT2,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    CS_PRETOK_LLAMA3, /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
                         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    CS_PRETOK_QWEN2,  /* as LLAMA3 but \p{N} one digit at a time */
};

/* Splits cps[0..n) (code points from cs_utf8_decode; invalid bytes count as
 * "other") into consecutive words covering the input. Writes the exclusive
 * end index of each word to ends (room for n entries) and returns the count. */
size_t cs_pretok_split(enum cs_pretok kind, const uint32_t *cps, size_t n, size_t *ends);

/* Maps a tokenizer.ggml.pre name to a kind; -1 when unknown. NULL or "" gives
 * CS_PRETOK_GPT2 (the default). */
int cs_pretok_from_name(const char *name);

#endif
