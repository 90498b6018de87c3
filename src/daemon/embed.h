/* embed.h: embeddings for /embeddings and /v1/embeddings ([server]
 * embeddings = true): a second engine over the same model (one sequence, its
 * own small KV cache; the scheduler's engine is never touched from HTTP
 * threads) decodes the input with a tap on the final state; the embedding is
 * the mean over the input's rows of the final-normed hidden state
 * (clspec_final_norm), scaled to unit Euclidean length. One input at a time
 * (a mutex); the caller owns struct cs_embedder (cs_embedder_open / _free). */
#ifndef CS_DAEMON_EMBED_H
#define CS_DAEMON_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"

struct cs_embedder;

/* ep: the serving engine's parameters (n_seq, n_ctx and the partitioning are
 * overridden: one sequence of n_ctx cells). */
int cs_embedder_open(const struct clspec_engine_params *ep, uint32_t n_ctx, struct cs_embedder **out, char *err,
                     size_t errlen);
void cs_embedder_free(struct cs_embedder *m);
int32_t cs_embedder_dim(const struct cs_embedder *m);
clspec_engine *cs_embedder_engine(struct cs_embedder *m);

/* out (n_embd floats) = the embedding of ids[0..n) (1 <= n < n_ctx;
 * CLSPEC_E_CONTEXT when longer). */
int cs_embed(struct cs_embedder *m, const int32_t *ids, int n, float *out, char *err, size_t errlen);

/* The pooling alone (the plain-C reference the tests check): out = the mean
 * of rows[0..n) (each n_embd floats), then divided by its Euclidean norm
 * (left as is when that is 0). */
void cs_embed_pool(const float *const *rows, int n, int32_t n_embd, float *out);

#endif
