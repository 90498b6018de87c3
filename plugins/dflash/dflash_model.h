/* dflash_model.h: the DFlash drafter's model and its two passes (arch
 * "dflash", ../shared/docs/FORMATS.md), built on the host's device compute
 * service alone (struct clspec_host, ABI >= 1.4), on the device of the
 * target's output:
 *  - injection: rows of target taps -> g = enc.output_norm(fc(concat(taps)))
 *    -> per draft layer K = rope_neox(k_norm(W_k g), pos), V = W_v g, stored
 *    with the block builder's block_kv (no attention);
 *  - block decode: rows of tokens embedded with the TARGET's token_embd,
 *    Qwen3-style layers through block_layer (non-causal over the injected
 *    context and the block, each residual add fused with the next norm, the
 *    last with output_norm), then the TARGET's output matrix. The block's
 *    cells are removed before returning: only injected context persists.
 * The caller owns dfm_model and dfm_ctx (free a ctx before its model); the
 * host table is borrowed and must outlive both. Everything they make lives
 * on one clspec_dev of the model. */
#ifndef CLSPEC_DFLASH_MODEL_H
#define CLSPEC_DFLASH_MODEL_H

#include <clspec/speculator.h>

#include <stddef.h>
#include <stdint.h>

#define DFM_MAX_TAPS 16

struct dfm_hparams {
    uint32_t n_embd;          /* = the target's hidden size */
    uint32_t n_layer;         /* draft layers */
    uint32_t n_head, n_head_kv, head_dim;
    uint32_t n_ff;
    uint32_t n_ctx_train;     /* dflash.context_length (0 if absent) */
    float rms_eps;
    float rope_base;          /* NeoX RoPE over the whole head */
    uint32_t block_size;      /* B (default 16): drafts per block <= B - 1 */
    int causal;               /* dflash.attention.causal (default 0) */
    int32_t mask_id;          /* tokenizer.ggml.mask_token_id (default 0) */
    uint32_t n_taps;
    int32_t taps[DFM_MAX_TAPS]; /* target layers as clspec counts them: k < n_layer = input of layer k,
                                 * k = n_layer = the pre-final-norm state (dflash-draft ids + 1) */
    uint32_t swa_window;      /* dflash-draft attention.sliding_window (0: none); see dfm_load */
};

struct dfm_model {
    const struct clspec_host *h;      /* borrowed */
    const char *layout;               /* "dflash" or "dflash-draft" (static) */
    clspec_dev *d;                    /* owned: the device of the target's output */
    clspec_gguf *g;                   /* owned: the drafter's GGUF */
    struct dfm_hparams hp;
    uint32_t n_vocab;                 /* the target's */
    clspec_weight *embd, *out;        /* the target's token_embd and output on d (target_weight) */
    clspec_weight *fc;                /* (n_taps * n_embd -> n_embd) */
    clspec_buf *enc_norm, *out_norm;  /* f32 (n_embd) */
    clspec_layer **layers;            /* (n_layer) block builder layers, q_norm / k_norm set */
    clspec_weight **w;                /* (n_layer * 7) the layers' weights */
    clspec_buf **v;                   /* (n_layer * 4) attn_norm, ffn_norm, q_norm, k_norm */
};

/* Loads the drafter GGUF path (either layout) on host device `device` (-1: the target's
 * output device, the only one allowed: it borrows the target's output
 * matrix). Refuses a drafter whose hidden size or tap layers do not fit the
 * target (a message naming both). */
int dfm_load(const struct clspec_host *h, const char *path, int32_t device, struct dfm_model **out, char *err,
             size_t errlen);
void dfm_free(struct dfm_model *m);

struct dfm_ctx {
    struct dfm_model *m;              /* borrowed */
    uint32_t n_ctx, n_batch, n_seq;   /* KV cells (all sequences), most rows per pass, sequences 0..n_seq-1 */
    clspec_kv *kv;                    /* owned: n_layer layers, any KV type */
    clspec_buf *x, *xb, *q, *att, *kc, *vc, *hb, *hb2; /* (n_batch, ...) f32 activations: xb max(E, Q, n_taps E) */
    clspec_buf *tok, *pos, *seq, *cell;   /* int32 (n_batch): block rows */
    clspec_buf *ipos;                     /* int32 (n_batch): injection rows' positions */
    clspec_buf *cells;                    /* int32 (2 n_batch): kv_place's cells, queued rows then the block */
    clspec_buf *logits;                   /* f32 (n_batch, n_vocab) */
    clspec_buf *amax;                     /* int32 (n_batch) */
    float *h_feat;                    /* host (n_batch, n_taps * n_embd): queued injection features */
    int32_t *q_seq, *q_pos;           /* (n_batch) queued injection rows */
    int32_t n_q;
    int32_t *r_pos, *r_seq;           /* (2 n_batch) placement scratch: queued rows, then the block */
    uint64_t n_injected, n_decoded;   /* rows, counters */
    struct pu_i32_shadow *seq_sh;     /* what seq holds (plugin_util.h): unchanged ids are not uploaded again */
};

/* A context: n_ctx cells, n_batch rows per pass, KV types (enum
 * clspec_type), n_seq sequences. */
int dfm_ctx_new(struct dfm_model *m, uint32_t n_ctx, uint32_t n_batch, uint32_t type_k, uint32_t type_v,
                uint32_t n_seq, struct dfm_ctx **out, char *err, size_t errlen);
void dfm_ctx_free(struct dfm_ctx *c);

/* Queues n rows of seq at positions pos0..pos0+n-1 from taps: (n_taps, ld,
 * n_embd) floats (tap i of row r at taps[(i * ld + r) * n_embd]; ld >= n),
 * in the order of hp.taps. The features are copied; the injection pass
 * runs for every queued row of every sequence before the next block decode
 * (or at dfm_flush, or when n_batch rows are queued). */
int dfm_inject(struct dfm_ctx *c, int32_t seq, int32_t pos0, int32_t n, const float *taps, int32_t ld, char *err,
               size_t errlen);
/* Runs the queued injection now. A failure (KV full) drops the queue. */
int dfm_flush(struct dfm_ctx *c, char *err, size_t errlen);

/* Block decode of n rows (rows of one sequence in increasing position, after
 * its injected context), the queued injection first in the same placement.
 * Writes every row's logits to logits ((n, n_vocab), or NULL) and its
 * argmax (first on ties) to amax ((n), or NULL). The rows' cells are
 * removed before returning. */
int dfm_decode(struct dfm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
               int causal, float *logits, int32_t *amax, char *err, size_t errlen);

/* As dfm_decode, but nothing is read and nothing waits (ABI 1.7 device
 * drafts): every row's argmax stays in c->amax (row i at element i) until
 * the next decode, and the rows' cells stay placed: drop them with
 * dfm_seq_rm after the queue has run, before those positions are placed
 * again. */
int dfm_decode_dev(struct dfm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
                   int causal, char *err, size_t errlen);

/* Drops seq's cells (and queued rows) with p0 <= pos < p1 (p1 < 0: to the end). */
int dfm_seq_rm(struct dfm_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);

#endif
