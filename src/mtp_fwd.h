/* mtp_fwd.h: the forward of an MTP ("nextn", DeepSeek-V3 / GLM-4.5 style)
 * head on one OpenCL device, with its own typed KV cache. Per row p it
 * takes a token x_p and a hidden g (the target's pre-final-norm state at
 * p-1, or the head's own previous output when chaining drafts):
 *   u   = eh_proj . concat(rms(E[x_p]) * enorm, rms(g) * hnorm)   (embedding half first)
 *   h'  = the nextn block (a llama block, src/block.c, with per-head q_norm /
 *         k_norm when the file has them: RoPE at position p, causal
 *         attention over the head's own KV cache)
 *   out = output . (rms(h') * shared_head_norm)
 * E and output: the head's own (nextn.embed_tokens, nextn.shared_head_head)
 * when the file has them; else, for the target's own file, the target's
 * (borrowed when the target keeps them on the head's device, else copied
 * there once at load); else the file's token_embd / output (tied: token_embd);
 * what the file lacks is the target's when target_tensors is set.
 * The caller owns cs_mtp_model / cs_mtp_ctx; the device and the target
 * model/weights passed to cs_mtp_model_load are borrowed and must outlive
 * them. Reads files whose {arch}.nextn_predict_layers is 1 (the combined
 * target + head file, or a sidecar head holding only the nextn block). */
#ifndef CS_MTP_FWD_H
#define CS_MTP_FWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "forward.h"
#include "kv.h"
#include "model.h"
#include "ops/matmul.h"

struct cs_mtp_model {
    struct cs_gguf *g;                /* owned: the file's mapping */
    struct cs_hparams hp;             /* of the file; the block is blk.{hp.n_layer} */
    struct cs_hparams hpb;            /* hp with n_layer = 1: the head's KV cache */
    struct cs_cl_dev *dev;            /* borrowed */
    struct cs_fwd_layer blk;          /* the nextn block's llama layer */
    struct cs_weight eh_proj;         /* (2 n_embd -> n_embd) */
    cl_mem enorm, hnorm, head_norm;   /* f32 (n_embd) */
    struct cs_weight own_embd, own_out;   /* nextn.embed_tokens / shared_head_head (empty when absent) */
    struct cs_weight copy_embd, copy_out; /* the target's, copied to dev (empty when borrowed or own) */
    const struct cs_weight *embd;     /* what the forward uses: own, borrowed or copy */
    const struct cs_weight *out;
    bool embd_shared, out_shared;     /* borrowed from the target's weights */
};

/* Loads the nextn block of path onto dev. target: the target model (its
 * host tensors, copied when needed); tfm: its weights on the devices (for
 * borrowing), may be NULL. own_file: path is the target's own file.
 * target_tensors: the target's embedding / output stand in for what the
 * file lacks. Checks that the head fits the target (n_embd, n_vocab) and
 * that the file has exactly one nextn block. */
int cs_mtp_model_load(const char *path, struct cs_cl_dev *dev, const struct cs_model *target,
                      const struct cs_fwd_model *tfm, bool own_file, bool target_tensors, struct cs_mtp_model **out,
                      char *err, size_t errlen);
void cs_mtp_model_free(struct cs_mtp_model *mm);

struct cs_mtp_ctx {
    struct cs_mtp_model *mm;          /* borrowed */
    struct cs_kv *kv;                 /* owned: one layer, positions p >= 1 of each sequence */
    uint32_t n_batch;                 /* most rows per decode */
    cl_mem x, xe, xg, cat, xb, q, att, kc, vc, hb, hb2, xo, logits; /* activations (n_batch rows) */
    cl_mem tok, pos, seq, cell;       /* int32 (n_batch) */
    struct cs_batch b;                /* placement */
    int32_t *cells;                   /* (n_batch) */
    float *hidden;                    /* (n_batch, n_embd) h' of the last decode's rows (before the norm) */
    float *logits_h;                  /* (n_batch, n_vocab) logits of the last decode's chosen rows */
    int32_t n_rows, n_logits;
};

/* n_ctx cells for sequences 0..n_seq-1 (any KV type of cs_kv). */
int cs_mtp_ctx_new(struct cs_mtp_model *mm, uint32_t n_ctx, uint32_t n_batch, uint32_t n_seq, uint32_t type_k,
                   uint32_t type_v, struct cs_mtp_ctx **out, char *err, size_t errlen);
void cs_mtp_ctx_free(struct cs_mtp_ctx *c);

/* One decode of n rows: tokens (n), g (n, n_embd) host floats, positions,
 * sequence ids; logits[i] != 0 keeps row i's logits (NULL: the last row).
 * out: the output matrix to use (NULL = the model's); it must live on the
 * head's device. Results in c->hidden (every row) and c->logits_h (kept
 * rows, in order). A sequence that does not fit the cache fails the call
 * with CLSPEC_E_KV_FULL. */
int cs_mtp_decode(struct cs_mtp_ctx *c, int32_t n, const int32_t *tokens, const float *g, const int32_t *pos,
                  const int32_t *seq, const uint8_t *logits, const struct cs_weight *out, char *err, size_t errlen);

#endif
