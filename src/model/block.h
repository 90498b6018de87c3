/* block.h: the one transformer block builder. Every forward that runs llama-
 * style layers (the target, src/model/forward.c; drafters' heads in plugins, through
 * the compute service's block_layer / block_kv; hybrid layers) enqueues them through these
 * calls, so a fusion or a fix lands once. The ops come from a kernel family
 * (struct cs_ops, src/ops/family.h) bound to the rows' device; the block
 * never asks which family it runs.
 * The caller owns every buffer (struct cs_blk_act), the layer's weights
 * (struct cs_fwd_layer, forward.h) and the KV view; nothing here allocates,
 * and every call only enqueues on the family's device. */
#ifndef CS_BLOCK_H
#define CS_BLOCK_H

#include <stdbool.h>
#include <stddef.h>

#include "cl/runtime.h"
#include "ops/family.h"
#include "ops/ops.h"

struct cs_fwd_layer; /* forward.h: wq..w_down, norms, biases, q_norm / k_norm (NULL = absent) */

/* The norm every sub-block starts with: RMSNorm * w (llama family) or
 * LayerNorm * w + b (ViT encoders; the bias is the layer's *_norm_b). */
enum cs_blk_norm { CS_BLK_RMSNORM = 0, CS_BLK_LAYERNORM };
/* The FFN: silu(gate) * up -> down, or up (+ b_up) -> GELU / quick-GELU -> down (+ b_down). */
enum cs_blk_ffn { CS_BLK_SWIGLU = 0, CS_BLK_GELU, CS_BLK_QUICK_GELU };

/* The layer's shape (the same for every layer of a model). */
struct cs_blk_shape {
    int n_embd;                 /* E: residual width */
    int n_head, n_head_kv;      /* query / key-value heads (n_head % n_head_kv == 0) */
    int head_dim;               /* D: Q = n_head * D, KV = n_head_kv * D */
    int n_ff;                   /* F: FFN width */
    float eps;                  /* RMSNorm epsilon (every norm of the block) */
    struct cs_rope_params rope; /* RoPE of q and k; n_rot 0: none (learned absolute positions) */
    enum cs_blk_norm norm;      /* 0: RMSNorm */
    enum cs_blk_ffn ffn;        /* 0: SwiGLU */
};

/* The activation buffers of one pass of n rows on one device (all f32
 * row-major from offset 0, at least n rows each; ints are int32). */
struct cs_blk_act {
    cl_mem x;              /* (n, E) residual stream, updated in place */
    cl_mem xb;             /* (n, max(E, Q)) the normed input, then the projections' outputs */
    cl_mem q, att;         /* (n, Q) queries; attention output */
    cl_mem kc, vc;         /* (n, KV) this pass's K and V, before the cache */
    cl_mem hb, hb2;        /* (n, F) FFN hidden; scratch */
    cl_mem pos, seq, cell; /* int32 (n) position, sequence id (0..63), KV cell of each row */
};

/* How one block runs. */
struct cs_blk_opt {
    bool normed;          /* xb already holds rmsnorm(x) * attn_norm (fused into the previous residual add);
                           * false: the attention sub-block norms x itself */
    bool causal;          /* attention visibility: cell pos <= row pos (true) or every cell of the row's
                           * sequence (false); see cs_op_attention */
    int n_cells_used;     /* attention reads cells [0, n_cells_used) of the KV view */
    cl_mem next_norm;     /* f32 (E) or NULL: after the FFN's residual add, xb = rmsnorm(x) * next_norm in the
                           * same launch (the next layer's attn_norm, or the output norm); NULL: a plain add.
                           * RMSNorm blocks only (LayerNorm blocks pass NULL and norm at their start) */
    int ffn_rows;         /* rows the FFN has in the reproduced graph (family.h "n_logical"): normally n; the
                           * target's last layer passes its logits rows */
};

/* Attention sub-block over n rows (shown for RMSNorm; LayerNorm blocks
 * add the norms' biases, and bo after Wo): [xb = rmsnorm(x) * attn_norm unless
 * normed] -> q, k, v = xb . Wq/Wk/Wv^T (one fused matmul where the family
 * can) -> + biases -> per-head q_norm / k_norm (when present) -> RoPE at pos
 * -> K/V stored into kv at cell -> attention (causal or not, scale
 * 1/sqrt(D)) -> Wo -> x += ..., fused with xb = rmsnorm(x) * ffn_norm. So on
 * return x is the residual after attention and xb the FFN's normed input. */
int cs_blk_attn(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt,
                char *err, size_t errlen);

/* FFN sub-block over n rows, xb holding its normed input (cs_blk_attn):
 * hb = silu(xb . Wg^T) * (xb . Wu^T) (GELU kinds: hb = act(xb . Wu^T + b_up)) -> xb = hb . Wd^T (+ b_down) -> x += xb, fused
 * with xb = rmsnorm(x) * opt->next_norm when that is set. */
int cs_blk_ffn(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
               const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt, char *err, size_t errlen);

/* A whole layer: cs_blk_attn then cs_blk_ffn. */
int cs_blk_layer(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                 const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt,
                 char *err, size_t errlen);

/* K/V only (a drafter's context injection): from n rows of xb (n, E), k = xb .
 * Wk^T (+ bk), v = xb . Wv^T (+ bv), k_norm when present, RoPE on k at pos,
 * stored into kv at cell; no attention, x untouched. The same code as
 * cs_blk_attn's K/V part. */
int cs_blk_kv(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
              const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, char *err, size_t errlen);

#endif
