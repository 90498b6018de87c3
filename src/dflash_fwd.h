/* dflash_fwd.h: DFlash block-diffusion drafters (general.architecture =
 * "dflash", ../shared/docs/FORMATS.md): loading, and their two passes on one
 * OpenCL device over the drafter's own KV cache (struct cs_kv, any KV type):
 *  - injection: rows of target taps -> g = enc.output_norm(fc(concat(taps)))
 *    -> per draft layer K = rope_neox(k_norm(W_k g), pos), V = W_v g, stored
 *    with cs_op_kv_store (no attention), so the cache holds exactly what its
 *    readers expect for its type;
 *  - block decode: rows of tokens (embedded with the TARGET's token_embd),
 *    Qwen3-style layers with non-causal attention over the injected context
 *    and the block, output_norm, then the TARGET's output matrix. The block's
 *    own K/V live in scratch cells that are removed before returning: only
 *    injected context persists.
 * The caller owns cs_dflash_model and cs_dflash_ctx; the target cs_fwd_model
 * (token_embd, output) and the device are borrowed and must outlive both. */
#ifndef CS_DFLASH_FWD_H
#define CS_DFLASH_FWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "gguf.h"
#include "kv.h"

#define CS_DFLASH_MAX_TAPS 16

struct cs_dflash_hparams {
    uint32_t n_embd;          /* = the target's hidden size */
    uint32_t n_layer;         /* draft layers */
    uint32_t n_head, n_head_kv, head_dim;
    uint32_t n_ff;
    uint32_t n_ctx_train;     /* context_length (0 if absent) */
    float rms_eps;
    float rope_base;          /* NeoX RoPE over the whole head */
    uint32_t block_size;      /* B (default 16): n_max <= B - 1 */
    bool causal;              /* dflash.attention.causal (default false) */
    int32_t mask_id;          /* tokenizer.ggml.mask_token_id (default 0) */
    uint32_t n_taps;
    int32_t taps[CS_DFLASH_MAX_TAPS]; /* target layers as stored (+1): k < n_layer = input of layer k,
                                       * k = n_layer = the pre-final-norm state */
};

/* Reads and validates the dflash.* keys (errors name the key). */
int cs_dflash_hparams_read(const struct cs_gguf *g, struct cs_dflash_hparams *hp, char *err, size_t errlen);
/* Whether path is a GGUF of architecture "dflash" (false on any error). */
bool cs_dflash_is_dflash_file(const char *path);

struct cs_dflash_model {
    struct cs_gguf *gguf;             /* owned */
    struct cs_dflash_hparams hp;
    struct cs_hparams khp;            /* the drafter's shape as cs_kv_new reads it */
    const struct cs_fwd_model *target;/* borrowed: token_embd, output */
    struct cs_cl_dev *dev;            /* borrowed: the device of the target's output */
    const struct cs_weight *embd;     /* the target's token_embd on dev: borrowed, or own_embd */
    const struct cs_weight *out;      /* the target's output matrix (on dev), borrowed */
    struct cs_weight own_embd;        /* a copy of token_embd when the target has it on another device */
    struct cs_weight fc;              /* (n_taps * n_embd -> n_embd) */
    cl_mem enc_norm, out_norm;        /* f32 (n_embd) */
    struct cs_fwd_layer *layers;      /* (n_layer), q_norm / k_norm set */
};

/* Loads a dflash GGUF onto dev for target (same hidden size; every tap
 * layer within 0..target n_layer). dev must hold the target's output matrix
 * (else a message naming both devices); the target's token_embd is used
 * where it is on dev (or its tied copy), else copied to dev. */
int cs_dflash_model_load(const char *path, const struct cs_fwd_model *target, struct cs_cl_dev *dev,
                         struct cs_dflash_model **out, char *err, size_t errlen);
void cs_dflash_model_free(struct cs_dflash_model *m);

struct cs_dflash_ctx_params {
    uint32_t n_ctx;           /* KV cells, all sequences (injected context + one block per drafting seq) */
    uint32_t n_batch;         /* most rows per pass (injection and block decode) */
    uint32_t type_k, type_v;  /* enum cs_type: F32, F16, BF16, Q8_0, Q4_0 */
    uint32_t n_seq;           /* sequence ids 0..n_seq-1 */
};

struct cs_dflash_ctx {
    struct cs_dflash_model *m;        /* borrowed */
    struct cs_dflash_ctx_params p;
    struct cs_kv *kv;                 /* owned */
    cl_mem x, xb, q, att, kc, vc, hb, hb2; /* (n_batch, ...) activations: x (E), xb (max(E, Q, n_taps E)), ... */
    cl_mem tok, pos, seq, cell;       /* int32 (n_batch): block rows */
    cl_mem ipos, icell;               /* int32 (n_batch): injection rows */
    cl_mem logits;                    /* (n_batch, n_vocab) */
    float *h_feat;                    /* host (n_batch, n_taps * n_embd): queued injection features */
    int32_t *q_seq, *q_pos;           /* (n_batch) queued injection rows */
    int32_t n_q;
    struct cs_batch b;                /* (2 n_batch) placement scratch: queued rows, then the block */
    int32_t *cells;                   /* (2 n_batch) */
    int32_t *idx;                     /* (n_batch) logits rows */
    uint64_t n_injected, n_decoded;   /* rows, counters */
};

int cs_dflash_ctx_new(struct cs_dflash_model *m, const struct cs_dflash_ctx_params *p, struct cs_dflash_ctx **out,
                      char *err, size_t errlen);
void cs_dflash_ctx_free(struct cs_dflash_ctx *c);

/* Injects n rows of seq at positions pos0..pos0+n-1 from taps: (n_taps,
 * ld, n_embd) floats (tap i of row r at taps[(i * ld + r) * n_embd]; ld >=
 * n), in the order of hp.taps. The features are copied (taps may go after
 * the call) and queued: the injection pass runs for all queued rows of all
 * sequences at once, before the next block decode (or at cs_dflash_flush,
 * or when n_batch rows are queued). Rows already held by seq at those
 * positions are overwritten. */
int cs_dflash_inject(struct cs_dflash_ctx *c, int32_t seq, int32_t pos0, int32_t n, const float *taps, int32_t ld,
                     char *err, size_t errlen);
/* Runs the queued injection now (store only, no attention). A failure
 * (CLSPEC_E_KV_FULL) drops the queue. */
int cs_dflash_flush(struct cs_dflash_ctx *c, char *err, size_t errlen);

/* Block decode of n rows (tokens, positions, sequences; rows of one
 * sequence in increasing position, after its injected context). Attention
 * is non-causal (every row sees all its sequence's cells: injected context
 * and the block) unless causal. The queued injection runs first, in the
 * same placement (a KV_FULL drops it). Writes the logits of the rows with
 * want[i] != 0 (NULL: every row) to logits ((rows wanted, n_vocab), in row
 * order). The rows' K/V are removed again before returning. */
int cs_dflash_decode(struct cs_dflash_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
                     bool causal, const uint8_t *want, float *logits, char *err, size_t errlen);

/* Drops seq's cells (and queued rows) with p0 <= pos < p1 (p1 < 0: to the end). */
int cs_dflash_seq_rm(struct cs_dflash_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);

#endif
