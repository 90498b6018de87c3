/* forward.h: the OpenCL forward pass: a model's weights uploaded to one or
 * several devices, layers split across them (cs_fwd_model), a context with
 * the KV cache (struct cs_kv, src/kv/kv.h) and per-device activation buffers
 * (cs_fwd_ctx), and cs_forward_batch, which runs tokens of many sequences in
 * one forward, enqueued without host synchronisation except at device
 * boundaries (the residual stream is read to the host and written to the
 * next device: the devices' contexts differ, so no buffer is ever shared),
 * reading back only the requested logits rows.
 * The caller owns the cs_model and the devices; both must outlive what uses them. */
#ifndef CS_FORWARD_H
#define CS_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "kv/kv.h"
#include "model/block.h"
#include "model/model.h"
#include "ops/matmul.h"
#include "ops/ops.h"

struct cs_fwd_layer {
    struct cs_weight wq, wk, wv, wo;      /* see struct cs_layer for shapes; on the layer's device */
    struct cs_weight w_gate, w_up, w_down;
    cl_mem attn_norm, ffn_norm;           /* f32 (n_embd) */
    cl_mem bq, bk, bv;                    /* f32 (q_dim)/(kv_dim) or NULL */
    cl_mem q_norm, k_norm;                /* f32 (head_dim) or NULL */
    cl_mem attn_norm_b, ffn_norm_b;       /* f32 (n_embd) or NULL: LayerNorm biases (ViT encoders) */
    cl_mem bo, b_up, b_down;              /* f32 (n_embd)/(n_ff)/(n_embd) or NULL: output and FFN biases */
    /* qwen35 delta-net layers (recurrent; see struct cs_layer), else empty / NULL */
    struct cs_weight wqkv, wz, w_beta, w_alpha, ssm_out;
    cl_mem conv1d;                        /* f32 (C, d_conv) */
    cl_mem dt_bias, ssm_a;                /* f32 (Hv) */
    cl_mem ssm_norm;                      /* f32 (Dv) */
};

/* The block builder's shape of a layer of hp (block.h), with RoPE rope. */
struct cs_blk_shape cs_fwd_blk_shape(const struct cs_hparams *hp, const struct cs_rope_params *rope);

struct cs_fwd_model {
    const struct cs_model *model;         /* borrowed */
    int n_dev;
    struct cs_cl_dev **devs;              /* (n_dev) borrowed, in split order */
    struct cs_cl_dev *dev;                /* devs[0] */
    int *layer_dev;                       /* (n_layer) index into devs of each layer's device (non-decreasing) */
    int emb_dev, out_dev;                 /* devices of layer 0 and of layer n_layer - 1 */
    struct cs_weight tok_embd;            /* (n_vocab rows of n_embd) on emb_dev */
    struct cs_weight output;              /* on out_dev: the output matrix, or a copy of tok_embd when
                                           * tied and out_dev != emb_dev; empty when output_is_embd */
    bool output_is_embd;                  /* tied and one device: the output projection reads tok_embd */
    cl_mem output_norm;                   /* f32 (n_embd) on out_dev */
    struct cs_fwd_layer *layers;          /* n_layer */
    uint64_t bytes;                       /* device bytes of the weights, all devices */
    uint64_t *dev_bytes;                  /* (n_dev) per device */
};

/* Uploads every trunk tensor to d. progress: print a "loading" line on
 * stderr (only when stderr is a terminal). */
int cs_fwd_model_load(const struct cs_model *m, struct cs_cl_dev *d, bool progress, struct cs_fwd_model **out,
                      char *err, size_t errlen);
/* The same over n_dev devices: device i holds the next layer_counts[i]
 * layers (sum = n_layer; a count may be 0), the token embedding goes to the
 * device of layer 0, the output norm and output matrix to the device of the
 * last layer. layer_counts NULL: every layer on devs[0]. */
int cs_fwd_model_load_split(const struct cs_model *m, struct cs_cl_dev *const *devs, int n_dev,
                            const uint32_t *layer_counts, bool progress, struct cs_fwd_model **out, char *err,
                            size_t errlen);
void cs_fwd_model_free(struct cs_fwd_model *fm);

/* Weight upload, for every model the forward passes run (trunk, draft
 * models). cs_fwd_upload_vec: t dequantized to f32 in a new
 * read-only buffer *out (the caller releases it); cs_fwd_upload_mat: t into
 * *w (cs_weight_upload; the caller frees it with cs_weight_free). t NULL:
 * nothing is uploaded (*out = NULL; *w untouched). Both add the bytes
 * uploaded to *bytes where bytes is not NULL; errors name the tensor. */
int cs_fwd_upload_vec(struct cs_cl_dev *d, const struct cs_gguf_tensor *t, cl_mem *out, uint64_t *bytes, char *err,
                      size_t errlen);
int cs_fwd_upload_mat(struct cs_cl_dev *d, const struct cs_gguf_tensor *t, struct cs_weight *w, uint64_t *bytes,
                      char *err, size_t errlen);

struct cs_fwd_ctx_params {
    uint32_t n_ctx;          /* KV cells (all sequences together) */
    uint32_t n_batch;        /* rows per device pass when n_ubatch is 0 (the default of n_ubatch) */
    uint32_t n_ubatch;       /* rows per device pass; longer batches are split (0 = n_batch) */
    uint32_t type_k, type_v; /* enum cs_type of the KV cache: F32 (0, the default), F16, BF16, Q8_0, Q4_0 */
    uint32_t n_seq_max;      /* sequence ids 0..n_seq_max-1 (0 = CS_MAX_SEQ; must be set when partitioned) */
    bool kv_partitioned;     /* false (default): unified cache; true: n_ctx / n_seq_max cells per sequence */
    uint32_t n_rec_keep;     /* hybrid models: recurrent states kept per sequence, the longest rollback
                              * (src/kv/kv_rec.h; 0 = CS_KV_REC_KEEP_DEFAULT) */
    bool llamacpp_numerics;  /* compute as llama.cpp's x86 CPU backend does, bit for bit (cl/lcpp.cl, modelled by
                              * src/ref/lcpp_ref.c): every device runs the lcpp kernel family
                              * (src/ops/lcpp_family.c) instead of the standard one. F32/F16/Q8_0/Q4_0 weights
                              * and an f16/f16 cache; other types round the matmul inputs only. Tests; slow. */
};

/* One device's activation buffers, rows = tokens of one pass (n_ubatch). */
struct cs_fwd_act {
    struct cs_cl_dev *dev;                /* borrowed */
    cl_mem x;                             /* (n_ubatch, n_embd) residual stream */
    cl_mem xb;                            /* (n_ubatch, max(n_embd, q_dim)) */
    cl_mem q, att;                        /* (n_ubatch, q_dim) */
    cl_mem kc, vc;                        /* (n_ubatch, kv_dim) this pass's K, V */
    cl_mem hb, hb2;                       /* (n_ubatch, n_ff) */
    cl_mem tok, pos, seq, cell;           /* int32 (n_ubatch) inputs of a pass */
    cl_mem logits;                        /* (n_ubatch, n_vocab), output device only */
    cl_mem xo;                            /* (n_ubatch, n_embd) rows chosen for logits, output device only */
    /* hybrid models only (NULL otherwise): see struct cs_blk_act */
    cl_mem qg, gz, bt, al, dno;
    cl_mem rd, wr;                        /* int32 (n_ubatch) recurrent state slot plan of a pass */
    struct cs_ops ops;                    /* the kernel family the block builder runs on dev (std, or the
                                           * llama.cpp-numerics one: chosen at cs_fwd_ctx_new, owns its scratch) */
};

/* A context: the KV cache (kv: per layer on the layer's device) and the
 * activation buffers of every device of fm. */
struct cs_fwd_ctx {
    struct cs_fwd_model *fm;              /* borrowed */
    struct cs_cl_dev *dev;                /* fm->devs[0] */
    struct cs_fwd_ctx_params p;           /* as used (defaults filled in) */
    struct cs_kv *kv;                     /* owned */
    struct cs_fwd_act *act;               /* (fm->n_dev) */
    float *h_x;                           /* host staging (n_ubatch, n_embd): boundary copies, hidden rows */
    int32_t *scratch;                     /* (scratch_cap * 9) per-row scratch of cs_forward_batch */
    int scratch_cap;
    int32_t debug_fail;                   /* test-only (cs_fwd_debug_fail): calls until an injected failure */
    /* greedy rows (cs_forward_batch_greedy), on the output device, grown as needed; indexed by the
     * placed kept rows of one forward in row order */
    cl_mem g_am, g_nxt, g_res;            /* (g_cap) argmaxes, (g_cap) next-row tokens, (g_cap, 2) results */
    int32_t *g_nxt_h, *g_res_h;           /* host sides of g_nxt and g_res */
    int g_cap;
    /* device tokens (struct cs_fwd_greedy.dt_buf), on the input device, grown as needed */
    cl_mem t_all;                         /* int32 (t_cap) every placed row's token of one forward (n), then
                                           * greedy next tokens (k) and verdicts (2k) (t_cap >= 4n) */
    int32_t *t_all_h;                     /* (t_cap) host side: the tokens read back with the verdicts */
    int t_cap;
    uint8_t *chain_all;                   /* (chain_cap) ones: cs_forward_chain's greedy rows */
    int chain_cap;
};

int cs_fwd_ctx_new(struct cs_fwd_model *fm, const struct cs_fwd_ctx_params *p, struct cs_fwd_ctx **out, char *err,
                   size_t errlen);
void cs_fwd_ctx_free(struct cs_fwd_ctx *c);

/* TEST-ONLY fault injection (tests/test-qwen35-spec.c): the n-th
 * cs_forward_batch call from now on c (n >= 1; 0 cancels) runs as usual
 * (cells placed, recurrent states advanced, every pass computed) and then
 * fails with CLSPEC_E_CL, as an OpenCL error found at the end would.
 * Nothing outside the tests calls it. */
void cs_fwd_debug_fail(struct cs_fwd_ctx *c, int32_t n);

/* Optional hidden-state capture: for each of n_layers entries layers[i] in
 * 0..n_layer, the rows of all n input tokens are written to
 * out[(i * n + t) * n_embd ...]: layers[i] = k < n_layer is the input of
 * layer k, = n_layer the state before the final norm. */
struct cs_fwd_hidden {
    int n_layers;
    const int32_t *layers;
    float *out;                           /* (n_layers, n, n_embd) */
};

/* Convenience over cs_forward_batch: runs n tokens (token ids, positions,
 * sequence ids; seq_ids NULL = all 0) through the model, storing their K/V
 * in the cache (tokens attend causally to their own sequence), and writes
 * the logits of the n_out rows out_rows[i] (increasing indices into the n
 * tokens; NULL = the last row only, n_out ignored) to logits_out (n_out,
 * n_vocab). hidden may be NULL. A sequence that does not fit the cache makes
 * the call fail with CLSPEC_E_KV_FULL. */
int cs_forward(struct cs_fwd_ctx *c, const int32_t *tokens, int n, const int32_t *positions, const int32_t *seq_ids,
               const int32_t *out_rows, int n_out, float *logits_out, const struct cs_fwd_hidden *hidden, char *err,
               size_t errlen);

/* One forward over a
 * batch of many sequences. Rows are placed in the KV cache with cs_kv_place
 * (src/kv/kv.h); a sequence whose rows do not fit is dropped from this forward
 * (seq_rc[s] = CLSPEC_E_KV_FULL, its logits rows left untouched) while the
 * other sequences run (seq_rc = CLSPEC_OK). seq_rc: CS_MAX_SEQ entries or
 * NULL. logits_out: (cs_batch_n_logits(b), n_vocab), in row order of the
 * rows with b->logits[i] set. Long batches are split into n_ubatch passes.
 * hidden rows are indexed like b's rows. Returns CLSPEC_OK when every
 * sequence either ran or was refused for a full cache; another error
 * (device, invalid batch) fails the whole call. Rows of one sequence must
 * come in increasing position order (all rows are placed before the first
 * pass). */
struct cs_batch;
int cs_forward_batch(struct cs_fwd_ctx *c, const struct cs_batch *b, float *logits_out,
                     const struct cs_fwd_hidden *hidden, int *seq_rc, char *err, size_t errlen);

/* Greedy rows: a kept row with rows[i] = 1 leaves its logits on the device
 * (its row of logits_out is not written); its argmax is taken there
 * (cs_op_argmax) and, over each run of consecutive greedy rows of one
 * sequence, compared with the token of the row after it (cs_op_greedy_accept:
 * a draft verified greedily). out (cs_batch_n_logits(b), 2), in kept-row
 * order: for each greedy row of a placed sequence, how many rows from it on
 * match and the argmax where the match stops (the next greedy token); other
 * entries untouched. Whatever comes back (logits, results, hidden rows)
 * comes in one host sync per device at the end. */
/* Device tokens (a drafter's tokens that never came to the host): rows
 * with src[i] >= 0 take their token from element src[i] of buf (int32, n
 * elements, on the device that embeds the input and makes the output,
 * filled by commands queued before on dev, the same queue); b->token[i] is
 * ignored (0 is fine). They must be greedy rows; the greedy runs' next-row
 * tokens come from there too, and the tokens come back with the results
 * (same sync) into got[i]; the KV's cells get them as their tokens (prefix
 * reuse). A model whose input and output sit on two devices, or a hybrid
 * one: CLSPEC_E_UNSUPPORTED, nothing placed (cs_fwd_tok_dev says so). */
struct cs_fwd_dtok {
    cl_mem buf;
    size_t n;
    const struct cs_cl_dev *dev;
    const int32_t *src;                   /* (b->n) */
    int32_t *got;                         /* (b->n) */
};
/* The queue device tokens must come from, NULL when c takes none. */
const struct cs_cl_dev *cs_fwd_tok_dev(const struct cs_fwd_ctx *c);

struct cs_fwd_greedy {
    const uint8_t *rows;                  /* (b->n) 1 = greedy row (with b->logits[i] set) */
    int32_t *out;                         /* (cs_batch_n_logits(b), 2); a chain: (n_keep) argmaxes */
    int32_t chain, chain_n0;              /* chain > 0: cs_forward_chain's passes (set by it only) */
    const struct cs_fwd_dtok *dt;         /* device tokens, or NULL (not with a chain) */
};
int cs_forward_batch_greedy(struct cs_fwd_ctx *c, const struct cs_batch *b, float *logits_out,
                            const struct cs_fwd_hidden *hidden, const struct cs_fwd_greedy *g, int *seq_rc,
                            char *err, size_t errlen);

/* A greedy draft chain queued on the device with one host sync: b's first
 * n0 rows (tokens given; exactly n_chain of them keep logits: the chains'
 * heads, in kept-row order), then depth - 1 depths of n_chain rows each
 * (b->n = n0 + (depth - 1) * n_chain; every one keeps logits; their tokens
 * are ignored): the token of chain i at depth d is the argmax of its row at
 * depth d - 1, taken on the device. Every cell is placed up front (all or
 * nothing: CLSPEC_E_KV_FULL when a sequence lacks room, nothing placed).
 * amax (depth * n_chain): the argmax of every kept row in kept-row order
 * (heads, then each depth). n0 and n_chain at most n_ubatch; a plain model
 * whose embedding and output sit on one device (else CLSPEC_E_UNSUPPORTED). */
int cs_forward_chain(struct cs_fwd_ctx *c, const struct cs_batch *b, int n0, int n_chain, int32_t *amax, char *err,
                     size_t errlen);

#endif
