/* forward.h: the OpenCL forward pass: a model's weights uploaded to one device
 * (cs_fwd_model), a context with the KV cache and activation buffers
 * (cs_fwd_ctx), and cs_forward, which enqueues a whole batch without host
 * synchronisation and reads back only the requested logits rows.
 * The caller owns the cs_model and the device; both must outlive what uses them. */
#ifndef CS_FORWARD_H
#define CS_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "model.h"
#include "ops/matmul.h"
#include "ops/ops.h"

struct cs_fwd_layer {
    struct cs_weight wq, wk, wv, wo;      /* see struct cs_layer for shapes */
    struct cs_weight w_gate, w_up, w_down;
    cl_mem attn_norm, ffn_norm;           /* f32 (n_embd) */
    cl_mem bq, bk, bv;                    /* f32 (q_dim)/(kv_dim) or NULL */
    cl_mem q_norm, k_norm;                /* f32 (head_dim) or NULL */
};

struct cs_fwd_model {
    const struct cs_model *model;         /* borrowed */
    struct cs_cl_dev *dev;                /* borrowed */
    struct cs_weight tok_embd;            /* (n_vocab rows of n_embd) */
    struct cs_weight output;              /* unused when tied (tok_embd is used) */
    cl_mem output_norm;                   /* f32 (n_embd) */
    struct cs_fwd_layer *layers;          /* n_layer */
    uint64_t bytes;                       /* device bytes of the weights */
};

/* Uploads every trunk tensor. progress: print a "loading" line on stderr
 * (only when stderr is a terminal). */
int cs_fwd_model_load(const struct cs_model *m, struct cs_cl_dev *d, bool progress, struct cs_fwd_model **out,
                      char *err, size_t errlen);
void cs_fwd_model_free(struct cs_fwd_model *fm);

struct cs_fwd_ctx_params {
    uint32_t n_ctx;     /* KV cells (all sequences together) */
    uint32_t n_batch;   /* tokens per device pass; cs_forward splits longer inputs */
    uint32_t kv_type;   /* CS_TYPE_F32 or CS_TYPE_F16 */
    bool llamacpp_numerics; /* round matmul inputs as llama.cpp's CPU backend does (see mm() in forward.c) */
};

/* A context: KV cache per layer ((n_ctx, n_head_kv * head_dim) of kv_type,
 * the kops layout), cell metadata (device buffers + host mirror), and the
 * activation buffers of one pass of n_batch tokens. Cells are allocated per
 * token (first free cell), so several sequences can share the cache. */
struct cs_fwd_ctx {
    struct cs_fwd_model *fm;              /* borrowed */
    struct cs_cl_dev *dev;
    struct cs_fwd_ctx_params p;
    cl_mem *k, *v;                        /* per layer */
    cl_mem cell_pos, cell_seq;            /* int32 / uint64 (n_ctx) */
    int32_t *h_cell_pos;                  /* host mirror, -1 = free */
    uint64_t *h_cell_seq;                 /* host mirror, bitmask of sequences */
    int32_t n_used;                       /* 1 + highest occupied cell (0 when empty) */
    /* activations, rows = tokens of one pass */
    cl_mem x;                             /* (n_batch, n_embd) residual stream */
    cl_mem xb;                            /* (n_batch, max(n_embd, q_dim)) */
    cl_mem q, att;                        /* (n_batch, q_dim) */
    cl_mem kc, vc;                        /* (n_batch, kv_dim) this pass's K, V */
    cl_mem hb, hb2;                       /* (n_batch, n_ff) */
    cl_mem logits;                        /* (n_batch, n_vocab) */
    cl_mem xo;                            /* (n_batch, n_embd) rows chosen for logits */
    cl_mem tok, pos, seq, cell;           /* int32 (n_batch) inputs of a pass */
    int32_t *h_cell;                      /* host staging (n_batch) */
};

int cs_fwd_ctx_new(struct cs_fwd_model *fm, const struct cs_fwd_ctx_params *p, struct cs_fwd_ctx **out, char *err,
                   size_t errlen);
void cs_fwd_ctx_free(struct cs_fwd_ctx *c);
/* Empties the KV cache. */
void cs_fwd_kv_clear(struct cs_fwd_ctx *c);
/* Removes sequence seq's cells with p0 <= pos < p1 (p1 < 0: to the end) —
 * speculative rollback. Takes effect at the next cs_forward. */
int cs_fwd_kv_seq_rm(struct cs_fwd_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);

/* Optional hidden-state capture: for each of n_layers entries layers[i] in
 * 0..n_layer, the rows of all n input tokens are written to
 * out[(i * n + t) * n_embd ...]: layers[i] = k < n_layer is the input of
 * layer k, = n_layer the state before the final norm. */
struct cs_fwd_hidden {
    int n_layers;
    const int32_t *layers;
    float *out;                           /* (n_layers, n, n_embd) */
};

/* Runs n tokens (token ids, positions, sequence ids 0..63; seq_ids NULL =
 * all 0) through the model, storing their K/V in the cache (tokens attend
 * causally to their own sequence), and writes the logits of the n_out rows
 * out_rows[i] (indices into the n tokens; NULL = the last row only, n_out
 * ignored) to logits_out (n_out, n_vocab). hidden may be NULL. */
int cs_forward(struct cs_fwd_ctx *c, const int32_t *tokens, int n, const int32_t *positions, const int32_t *seq_ids,
               const int32_t *out_rows, int n_out, float *logits_out, const struct cs_fwd_hidden *hidden, char *err,
               size_t errlen);

/* CONTRACT (lead, 08:25; the fwd helper implements it): one forward over a
 * batch of many sequences. Rows are placed in the KV cache with cs_kv_place
 * (src/kv.h); a sequence whose rows do not fit is dropped from this forward
 * (seq_rc[s] = CLSPEC_E_KV_FULL, its logits rows left untouched) while the
 * other sequences run (seq_rc = CLSPEC_OK). seq_rc: CS_MAX_SEQ entries or
 * NULL. logits_out: (cs_batch_n_logits(b), n_vocab), in row order of the
 * rows with b->logits[i] set. Long batches are split into n_ubatch passes.
 * hidden rows are indexed like b's rows. Returns CLSPEC_OK when every
 * sequence either ran or was refused for a full cache; another error
 * (device, invalid batch) fails the whole call. */
struct cs_batch;
int cs_forward_batch(struct cs_fwd_ctx *c, const struct cs_batch *b, float *logits_out,
                     const struct cs_fwd_hidden *hidden, int *seq_rc, char *err, size_t errlen);

#endif
