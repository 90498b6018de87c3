/* tokenizer_impl.h: the internals shared by tokenizer.c (loading, accessors),
 * tokenizer_encode.c and tokenizer_decode.c. Not for other modules: use
 * tokenizer.h. Everything here is owned by struct cs_tokenizer. */
#ifndef CS_TOKENIZER_IMPL_H
#define CS_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/pretok.h"
#include "text/tokenizer.h"

#define NO_ID (-1)
#define CS_FNV0 0xcbf29ce484222325ull

/* GPT-2's byte-level alphabet: every byte has a printable code point. */
struct cs_byte_map {
    uint32_t cp[256];   /* byte -> code point */
    char utf8[256][2];  /* its UTF-8 (always 1 or 2 bytes) */
    uint8_t len[256];
    int16_t rev[324];   /* code point -> byte, -1 when not a byte-level char */
};

struct merge {
    uint32_t loff, llen; /* left part, in merge_text */
    uint32_t roff, rlen; /* right part */
};

struct cs_tokenizer {
    enum cs_tok_kind kind;
    enum cs_pretok pre;       /* BPE only */
    bool ignore_merges;       /* BPE: a word that is a token is emitted whole (llama3) */
    bool add_bos, add_eos;
    bool add_space_prefix;    /* SPM */
    int32_t bos, eos, unk, eot, eom; /* NO_ID when absent */

    int32_t n_vocab;
    char *text;               /* all token texts, each NUL-terminated */
    uint32_t *text_off;       /* (n_vocab) byte offset into text */
    uint32_t *text_len;       /* (n_vocab) bytes, without the NUL */
    float *score;             /* (n_vocab) SPM merge priority */
    uint8_t *type;            /* (n_vocab) enum cs_tok_type */
    bool *eog;                /* (n_vocab) end-of-generation flags */

    int32_t *hash;            /* (hash_cap) token ids + 1 by text, 0 = empty */
    size_t hash_cap;          /* power of two >= 2 * n_vocab */

    int32_t *special;         /* (n_special) control/user/unknown ids, longest text first */
    size_t n_special;

    int32_t byte_tok[256];    /* token for a raw byte (<0xNN>, the byte itself, or byte-level char) */

    size_t n_merges;
    struct merge *merges;     /* (n_merges) rank = index */
    char *merge_text;         /* concatenated merge parts */
    int32_t *mhash;           /* (mhash_cap) merge index + 1 by (left, right), 0 = empty */
    size_t mhash_cap;

    struct cs_byte_map bmap;  /* BPE byte-level alphabet */
};

/* FNV-1a over n bytes, continuing from h (start with CS_FNV0). */
uint64_t cs_tok_fnv(uint64_t h, const char *s, size_t n);
/* Hash of a merge pair (left, right). */
uint64_t cs_tok_pair_hash(const char *l, size_t ln, const char *r, size_t rn);

#endif
