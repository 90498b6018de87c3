/* api.h: internal helpers of the engine door (src/engine/api.c) for code that
 * holds both a public and an internal struct: parameter conversions, a door
 * over an engine opened with cs_engine_open, and the internal engine behind
 * a door. The last one is for the plugin loader and host code only (they
 * hand plugins the target's internals); the speculation loop and the
 * scheduler use only the door. */
#ifndef CS_API_H
#define CS_API_H

#include "clspec/clspec.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/forward.h"

/* The internal sampler parameters of in (all of its fields; in->size is not
 * read: in must be a complete struct of this build). */
void cs_api_sampler_params(const struct clspec_sampler_params *in, struct cs_sampler_params *out);

/* The door's parameters of internal engine parameters in (every field;
 * strings are borrowed from in): what clspec_engine_open turns back into
 * in. For code configured with struct cs_engine_params (clspecd, the CLI). */
void cs_api_engine_params(const struct cs_engine_params *in, struct clspec_engine_params *out);

/* A public sampler (*out, freed by clspec_sampler_free) with internal
 * parameters p (the daemon's requests, the CLI's --spec path, tests). */
int cs_api_sampler_new(const struct cs_sampler_params *p, int32_t n_vocab, clspec_sampler **out, char *err,
                       size_t errlen);
/* The door's sampler handles (src/engine/api_sampler.c): a cs_sampler. */
struct clspec_sampler {
    struct cs_sampler *s;             /* owned */
    bool keep_logits;                 /* its request reads every token's logits row (logprobs); false: tokens
                                       * only (cs_api_sampler_keep_logits) */
};

struct clspec_sampler_state {
    struct cs_sampler *copy;          /* owned clone holding the saved state */
};

/* Whether s's request reads every token's logits row (the daemon's
 * logprobs): set where the request's sampler is made; off by default. The
 * speculation loop reads it at slot_begin (cs_spec_slot.host_logits): the
 * greedy steps of a request that reads no logits verify on the device. */
void cs_api_sampler_keep_logits(clspec_sampler *s, bool on);
bool cs_api_sampler_keeps_logits(const clspec_sampler *s);

/* The internal sampler behind a public one (tests read its state). */
struct cs_sampler *cs_api_sampler(clspec_sampler *s);

/* A door (*out, freed by clspec_engine_free) over e, which stays the
 * caller's: it must outlive the door and is not freed with it. */
int cs_api_wrap(struct cs_engine *e, clspec_engine **out, char *err, size_t errlen);
/* A door (*out, freed by clspec_engine_free) over a bare tokenizer and the
 * GGUF it came from (g may be NULL), both the caller's and outliving the
 * door: the tokenizer calls, clspec_token_type / _text, clspec_chat_template
 * and an info of vocabulary fields (arch "", model fields 0) work; the
 * rest fails as on a vocab_only engine. For vocabularies of an architecture
 * clspec cannot open (tests of the text output and the chat templates). */
int cs_api_wrap_vocab(const struct cs_tokenizer *tok, const struct cs_gguf *g, clspec_engine **out, char *err,
                      size_t errlen);
/* The internal engine behind a door (NULL for NULL or a vocab_only one).
 * Loader / host code only. */
struct cs_engine *cs_api_engine(clspec_engine *e);

/* clspec_decode with device tokens (the speculation loop: a drafter's
 * tokens that stay on the device; struct cs_fwd_dtok in model/forward.h,
 * indexed by b's rows, which must be greedy rows there). dt NULL: exactly
 * clspec_decode. Where they cannot be taken (cs_fwd_tok_dev of the engine's
 * context is NULL): CLSPEC_E_UNSUPPORTED, nothing placed. */
int cs_api_decode_dev(clspec_engine *e, const struct clspec_batch *b, const struct cs_fwd_dtok *dt,
                      int *seq_status, char *err, size_t errlen);

#endif
