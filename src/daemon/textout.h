/* textout.h: a request's generated tokens -> text deltas safe to stream:
 * only complete UTF-8, stop strings detected across token boundaries (any
 * text that could still become a stop string is held back). The caller owns
 * struct cs_textout (cs_textout_new / cs_textout_free); the engine (its
 * vocabulary, through the door) is borrowed. */
#ifndef CS_DAEMON_TEXTOUT_H
#define CS_DAEMON_TEXTOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"

struct cs_textout;

/* True when the n tokens p have no text of their own (only control,
 * unknown or unused tokens, such as a lone BOS): a prompt after which the
 * generation starts the text (lstrip below). */
bool cs_textout_textless(const clspec_engine *e, const int32_t *p, int n);

/* stop: n_stop non-empty, valid UTF-8 stop strings (copied).
 * lstrip: drop one leading space of the first token's piece, as
 * clspec_detokenize does for a text that starts with the generation (pass
 * the engine info's strips_space when the prompt holds no text). Then the
 * deltas of cs_textout_push + cs_textout_flush concatenated equal
 * clspec_detokenize(tokens) for any token sequence decoding to valid UTF-8
 * (without lstrip: the text those tokens add after a prompt).
 * CLSPEC_E_INVAL for an empty or invalid stop string. */
int cs_textout_new(const clspec_engine *e, const char *const *stop, int n_stop, bool lstrip,
                   struct cs_textout **out, char *err, size_t errlen);
void cs_textout_free(struct cs_textout *t);

/* Adds one token (control tokens add nothing; bytes that cannot form valid
 * UTF-8 become U+FFFD). *text, *len: the text now safe
 * to show (possibly empty), valid until the next call on t. Returns 1 when a
 * stop string completed (*text is what preceded it; the stop string and
 * anything after it are dropped, and t takes no further tokens), 0 otherwise,
 * or a negative status (CLSPEC_E_RANGE for an id outside the vocabulary,
 * CLSPEC_E_NOMEM, CLSPEC_E_INVAL after a stop). */
int cs_textout_push(struct cs_textout *t, int32_t token, const char **text, size_t *len, char *err, size_t errlen);

/* The generation ended without a stop string: releases everything held (an
 * incomplete UTF-8 sequence at the end becomes U+FFFD). Returns CLSPEC_OK or
 * CLSPEC_E_NOMEM. *text valid until the next call on t. */
int cs_textout_flush(struct cs_textout *t, const char **text, size_t *len);

/* Index of the stop string that matched, -1 while none has. */
int cs_textout_stop_index(const struct cs_textout *t);

#endif
