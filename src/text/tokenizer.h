/* tokenizer.h: text <-> token ids for GGUF vocabularies: SentencePiece-style
 * "llama" (score-ordered bigram merges, byte fallback) and byte-level BPE "gpt2"
 * (ranked merges, GPT-2 / Llama 3 / Qwen2 pre-tokenizers), as llama.cpp does them.
 * cs_tokenizer_load copies everything it needs, so the cs_gguf may be closed
 * afterwards; the caller owns the tokenizer (cs_tokenizer_free) and all output
 * buffers. A loaded tokenizer is read-only: calls on it are thread-safe. */
#ifndef CS_TOKENIZER_H
#define CS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cs_gguf;
struct cs_tokenizer; /* opaque */

enum cs_tok_kind {
    CS_TOK_SPM = 0, /* tokenizer.ggml.model = llama */
    CS_TOK_BPE = 1, /* tokenizer.ggml.model = gpt2 */
};

/* tokenizer.ggml.token_type values (llama.cpp's token types). */
enum cs_tok_type {
    CS_TT_UNDEFINED = 0,
    CS_TT_NORMAL = 1,
    CS_TT_UNKNOWN = 2,
    CS_TT_CONTROL = 3,
    CS_TT_USER_DEFINED = 4,
    CS_TT_UNUSED = 5,
    CS_TT_BYTE = 6,
};

/* Builds a tokenizer from the tokenizer.ggml.* metadata of g. Bad metadata
 * (missing or mismatched arrays, ids out of range, invalid UTF-8 in tokens or
 * merges, unknown model/pre) gives CLSPEC_E_FORMAT or CLSPEC_E_UNSUPPORTED
 * with a message naming the key. */
int cs_tokenizer_load(const struct cs_gguf *g, struct cs_tokenizer **out, char *err, size_t errlen);
void cs_tokenizer_free(struct cs_tokenizer *tok);

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is handled byte-wise).
 * add_special: add BOS/EOS as the vocabulary asks (add_bos_token/add_eos_token).
 * parse_special: control tokens written in the text ("<s>") become their id;
 * user-defined tokens are always matched (as llama.cpp does).
 * Writes up to cap ids to out and the full count to *n_out; when cap is too
 * small returns CLSPEC_E_RANGE with *n_out = the count needed. */
int cs_tokenize(const struct cs_tokenizer *tok, const char *text, size_t len, bool add_special,
                bool parse_special, int32_t *out, size_t cap, size_t *n_out, char *err, size_t errlen);

/* The text of one token: SPM U+2581 -> ' ', <0xNN> -> that byte, BPE byte-level
 * characters -> bytes. Control/unknown tokens give "" unless special is true.
 * Writes a NUL-terminated string to buf; *n_out = bytes without the NUL. When
 * cap < *n_out + 1 returns CLSPEC_E_RANGE (buf untouched). */
int cs_token_to_piece(const struct cs_tokenizer *tok, int32_t id, bool special, char *buf, size_t cap,
                      size_t *n_out, char *err, size_t errlen);

/* Whole-sequence detokenization: the pieces concatenated; for SPM with
 * add_space_prefix the leading space of the first non-BOS token is removed.
 * remove_special drops a leading BOS / trailing EOS (when the vocabulary adds
 * them); unparse_special renders control tokens. Same buffer rules as above. */
int cs_detokenize(const struct cs_tokenizer *tok, const int32_t *ids, size_t n, bool remove_special,
                  bool unparse_special, char *buf, size_t cap, size_t *n_out, char *err, size_t errlen);

/* True when whole-sequence detokenization drops the leading space of the
 * first token (SentencePiece with add_space_prefix). Computed from the
 * vocabulary (compares cs_token_to_piece with cs_detokenize of one "\u2581"
 * token; without a lone one, of the first normal token starting with it). */
bool cs_tokenizer_strips_space(const struct cs_tokenizer *tok);

/* Accessors. Ids are -1 when the vocabulary has none. */
enum cs_tok_kind cs_tokenizer_kind(const struct cs_tokenizer *tok);
int32_t cs_tokenizer_n_vocab(const struct cs_tokenizer *tok);
int32_t cs_tokenizer_bos(const struct cs_tokenizer *tok);
int32_t cs_tokenizer_eos(const struct cs_tokenizer *tok);
int32_t cs_tokenizer_unk(const struct cs_tokenizer *tok);
bool cs_tokenizer_add_bos(const struct cs_tokenizer *tok);
/* End of generation: EOS, EOT, EOM or a control token such as <|im_end|>. */
bool cs_tokenizer_is_eog(const struct cs_tokenizer *tok, int32_t id);
/* Raw vocabulary text of id (NUL-terminated, owned by tok; *len if non-NULL);
 * NULL when id is out of range. */
const char *cs_tokenizer_text(const struct cs_tokenizer *tok, int32_t id, size_t *len);
/* token_type of id; CS_TT_UNDEFINED when out of range. */
enum cs_tok_type cs_tokenizer_type(const struct cs_tokenizer *tok, int32_t id);
/* Id of an exact vocabulary string; -1 when absent. */
int32_t cs_tokenizer_find(const struct cs_tokenizer *tok, const char *text, size_t len);

#endif
