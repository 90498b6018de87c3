/* grammar.h: GBNF grammars (the format of llama.cpp's grammars/README.md):
 * a parser that compiles the text into a rule set, and a matcher whose state
 * is a set of pushdown stacks advanced over the bytes of token texts (UTF-8
 * code points may be split across tokens).
 *
 * Compiled form: every rule is a list of alternatives, every alternative a
 * run of elements ending in END; an element is a character class (sorted,
 * merged code-point ranges; negation resolved at compile time) or a reference
 * to a rule. Repetitions (* + ? {m,n}) and groups become helper rules.
 *
 * A matcher state is a set of stacks; each stack is a list of element
 * indices, the top being the next character class to match and the ones
 * below the places to return to. An empty stack means "the grammar is
 * complete here". Copying a state (cs_grammar_state_copy) is its save.
 *
 * Speed: a scratch remembers steps (stack set + code point -> stack set),
 * the last vocabulary masks by state, and an automaton of interned stack
 * sets whose transitions the mask fills as it walks the vocabulary; all of
 * it is tied to one grammar and starts over for another. */
#ifndef CS_GRAMMAR_H
#define CS_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cs_grammar; /* compiled rule set: immutable, reference counted */

/* Compiles GBNF text src[0..len) with start rule root (NULL: "root").
 * Errors carry "line:column" of the offending place (1-based). */
int cs_grammar_compile(const char *src, size_t len, const char *root, struct cs_grammar **out, char *err,
                       size_t errlen);
struct cs_grammar *cs_grammar_ref(struct cs_grammar *g);
void cs_grammar_unref(struct cs_grammar *g);
/* Number of rules (helper rules included) and of elements: for tests and logs. */
int32_t cs_grammar_n_rules(const struct cs_grammar *g);

/* The matcher state. buf holds n_stacks stacks, each as [len, e_0 .. e_len-1]
 * (e_len-1 the top). A UTF-8 sequence cut by the end of a token waits in
 * cp / need (continuation bytes still expected; cp_lo..cp_hi the code points
 * it can still become). */
struct cs_grammar_state {
    int32_t *buf;
    int32_t len, cap;   /* int32s used / allocated in buf */
    int32_t n_stacks;
    uint32_t cp;        /* bits of the pending code point so far */
    int32_t need;       /* continuation bytes still expected (0: none pending) */
    int32_t seq_len;    /* bytes of the pending sequence (2..4) */
};

/* The start state of g (root expanded). */
int cs_grammar_state_init(const struct cs_grammar *g, struct cs_grammar_state *st, char *err, size_t errlen);
void cs_grammar_state_free(struct cs_grammar_state *st);
/* dst = src (grows dst's buffer; -1 on allocation failure). */
int cs_grammar_state_copy(struct cs_grammar_state *dst, const struct cs_grammar_state *src);
/* 1 when the text so far is a complete sentence of the grammar (end allowed). */
bool cs_grammar_complete(const struct cs_grammar *g, const struct cs_grammar_state *st);
/* 1 when no continuation is possible (nothing can follow, not even the end). */
bool cs_grammar_dead(const struct cs_grammar_state *st);

/* Scratch space of the matcher (reused between calls; one per thread of use). */
struct cs_grammar_scratch;
struct cs_grammar_scratch *cs_grammar_scratch_new(void);
void cs_grammar_scratch_free(struct cs_grammar_scratch *sc);

/* Advances st over bytes s[0..n). Returns 1 (accepted; st updated), 0 (the
 * grammar forbids these bytes; st unchanged) or -1 (out of memory). */
int cs_grammar_accept_bytes(const struct cs_grammar *g, struct cs_grammar_state *st, const uint8_t *s, size_t n,
                            struct cs_grammar_scratch *sc);
/* 1 when st would accept s[0..n) (n >= 1), without changing st; 0 otherwise. */
int cs_grammar_allows_bytes(const struct cs_grammar *g, const struct cs_grammar_state *st, const uint8_t *s, size_t n,
                            struct cs_grammar_scratch *sc);

/* ---- a vocabulary's token texts, prepared once for masking ---- */
struct cs_grammar_vocab {
    int32_t n_vocab;
    uint32_t *off;      /* (n_vocab + 1) byte offsets of each token's text in bytes */
    uint8_t *bytes;     /* the texts as the detokenizer renders each token alone */
    uint8_t *eog;       /* (n_vocab) 1 = ends generation */
    int32_t first_eog;  /* an end-of-generation id, -1 when none */
    _Atomic int refs;   /* owners (samplers sharing it) */
};
/* Builds from texts given by a callback (text of token i, NUL-free length). */
typedef int (*cs_grammar_piece_fn)(void *ctx, int32_t id, const uint8_t **s, size_t *n, int *eog);
int cs_grammar_vocab_new(int32_t n_vocab, cs_grammar_piece_fn fn, void *ctx, struct cs_grammar_vocab **out,
                         char *err, size_t errlen);
struct cs_grammar_vocab *cs_grammar_vocab_ref(struct cs_grammar_vocab *v);
void cs_grammar_vocab_unref(struct cs_grammar_vocab *v);

/* Whether token id may come next: EOG tokens when the grammar is complete,
 * other tokens when their (non-empty) text is accepted. */
bool cs_grammar_token_allowed(const struct cs_grammar *g, const struct cs_grammar_state *st,
                              const struct cs_grammar_vocab *v, int32_t id, struct cs_grammar_scratch *sc);
/* allowed[i] = cs_grammar_token_allowed(.., i, ..) for the whole vocabulary
 * (tokens whose first byte no stack can take are rejected without a walk).
 * Returns the number allowed. */
int32_t cs_grammar_mask(const struct cs_grammar *g, const struct cs_grammar_state *st,
                        const struct cs_grammar_vocab *v, uint8_t *allowed, struct cs_grammar_scratch *sc);
/* Advances st over token id (EOG tokens leave it as it is). Returns 1, 0 (forbidden; st unchanged), -1 (memory). */
int cs_grammar_accept_token(const struct cs_grammar *g, struct cs_grammar_state *st, const struct cs_grammar_vocab *v,
                            int32_t id, struct cs_grammar_scratch *sc);

#endif
