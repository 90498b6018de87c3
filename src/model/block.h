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
#include "kv/kv_rec.h"
#include "ops/dn_ops.h"
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
    bool attn_gated;            /* qwen35: Wq gives per head [q | gate]; the attention output is multiplied by
                                 * sigmoid(gate) before Wo */
    struct cs_dn_shape dn;      /* qwen35: the delta-net layers' shape (zero otherwise) */
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
    /* hybrid models only (attn_gated / delta-net layers): */
    cl_mem qg;             /* (n, max(2 Q, C)) Wq's [q | gate] rows; the delta-net's qkv (conv in place) */
    cl_mem gz;             /* (n, max(Q, Hv Dv)) attention gate; the delta-net's z */
    cl_mem bt, al;         /* (n, Hv) ssm_beta . x, ssm_alpha . x */
    cl_mem dno;            /* (n, Hv Dv) delta-net output */
    cl_mem rd, wr;         /* int32 (n) recurrent state slot plan (kv_rec.h, cl/deltanet.cl) */
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

/* A layer of a hybrid model: a delta-net layer (L->conv1d set: the mixer of
 * src/model/deltanet.c on the states rv) or an attention layer
 * (cs_blk_attn), then cs_blk_ffn. rv NULL: attention layers only. */
int cs_blk_layer_rec(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                     const struct cs_kv_view *kv, const struct cs_kv_rec_view *rv, const struct cs_blk_act *a, int n,
                     const struct cs_blk_opt *opt, char *err, size_t errlen);

/* The delta-net mixer over n rows (src/model/deltanet.c): [xb = rmsnorm(x) *
 * attn_norm unless normed] -> qkv = xb . Wqkv^T, z = xb . Wz^T, beta / alpha
 * projections -> causal conv + SiLU (state rv->conv) -> the gated delta
 * rule (state rv->ssm) -> per-head rmsnorm * ssm_norm * silu(z) -> ssm_out
 * -> x += ..., fused with xb = rmsnorm(x) * ffn_norm. */
int cs_blk_deltanet(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
                    const struct cs_kv_rec_view *rv, const struct cs_blk_act *a, int n, const struct cs_blk_opt *opt,
                    char *err, size_t errlen);

/* K/V only (a drafter's context injection): from n rows of xb (n, E), k = xb .
 * Wk^T (+ bk), v = xb . Wv^T (+ bv), k_norm when present, RoPE on k at pos,
 * stored into kv at cell; no attention, x untouched. The same code as
 * cs_blk_attn's K/V part. */
int cs_blk_kv(const struct cs_ops *o, const struct cs_blk_shape *s, const struct cs_fwd_layer *L,
              const struct cs_kv_view *kv, const struct cs_blk_act *a, int n, char *err, size_t errlen);

#endif
