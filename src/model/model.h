/* model.h: a transformer model's hyper-parameters and weight tensors as read
 * from a GGUF file (llama, qwen2, qwen3), every shape validated on load.
 * cs_model owns the GGUF mapping; tensor pointers point into it and live until cs_model_free. */
#ifndef CS_MODEL_H
#define CS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

enum cs_arch {
    CS_ARCH_LLAMA = 0,
    CS_ARCH_QWEN2 = 1, /* q/k/v biases, NeoX RoPE */
    CS_ARCH_QWEN3 = 2, /* per-head RMSNorm on q and k before RoPE, NeoX RoPE */
    CS_ARCH_QWEN35 = 3, /* hybrid: gated delta-net layers + gated attention layers (q/k norms, partial NeoX RoPE) */
};

enum cs_rope_style {
    CS_ROPE_NORMAL = 0, /* rotate pairs (2i, 2i+1) */
    CS_ROPE_NEOX = 1,   /* rotate pairs (i, i + n_rot/2) */
};

struct cs_hparams {
    enum cs_arch arch;
    char arch_name[32];       /* "llama", "qwen2", "qwen3" */
    uint32_t n_vocab;         /* tokens (rows of token_embd / output) */
    uint32_t n_embd;          /* model width */
    uint32_t n_layer;         /* trunk blocks: block_count less the extra prediction blocks the file declares */
    uint32_t n_layer_total;   /* block_count (includes the extra blocks the trunk skips; a plugin may read them) */
    uint32_t n_head;          /* query heads */
    uint32_t n_head_kv;       /* key/value heads (GQA: n_head % n_head_kv == 0) */
    uint32_t head_dim;        /* attention.key_length, or n_embd / n_head */
    uint32_t n_ff;            /* feed-forward width */
    uint32_t n_rot;           /* rope.dimension_count (<= head_dim, even), default head_dim */
    float rms_eps;            /* attention.layer_norm_rms_epsilon */
    float rope_freq_base;     /* rope.freq_base, default 10000 */
    float rope_freq_scale;    /* 1 / rope.scaling.factor for linear scaling, else 1 */
    enum cs_rope_style rope_style;
    uint32_t n_ctx_train;     /* context_length (0 if absent) */
    bool tied_output;         /* output.weight absent: logits use token_embd */
    /* qwen35 (hybrid) only, else 0: the gated delta-net layers */
    uint32_t n_recurrent;     /* layers that are delta-net (have blk.i.ssm_conv1d.weight) */
    uint32_t full_attn_interval; /* full_attention_interval: layer i is attention when (i+1) % it == 0 */
    uint32_t ssm_d_conv;      /* ssm.conv_kernel: taps of the causal depthwise conv (K, <= 8) */
    uint32_t ssm_d_state;     /* ssm.state_size: q/k head size Dk (<= 256) */
    uint32_t ssm_n_group;     /* ssm.group_count: q/k heads Hk */
    uint32_t ssm_dt_rank;     /* ssm.time_step_rank: value heads Hv (multiple of Hk; v head h uses q/k head h % Hk) */
    uint32_t ssm_d_inner;     /* ssm.inner_size: Hv * Dv (value width) */
};

/* qwen35 delta-net widths: conv channels C = 2 * Hk * Dk + Hv * Dv ([q | k | v]), value head size Dv. */
static inline uint32_t cs_hp_dn_conv_dim(const struct cs_hparams *hp)
{
    return 2 * hp->ssm_n_group * hp->ssm_d_state + hp->ssm_d_inner;
}
static inline uint32_t cs_hp_dn_dv(const struct cs_hparams *hp)
{
    return hp->ssm_dt_rank ? hp->ssm_d_inner / hp->ssm_dt_rank : 0;
}

/* Dimensions of the q / k / v projections. */
static inline uint32_t cs_hp_q_dim(const struct cs_hparams *hp) { return hp->n_head * hp->head_dim; }
static inline uint32_t cs_hp_kv_dim(const struct cs_hparams *hp) { return hp->n_head_kv * hp->head_dim; }

/* One transformer block's tensors. GGUF shapes (ne0 = contiguous = inputs):
 * q_dim = n_head * head_dim, kv_dim = n_head_kv * head_dim. */
struct cs_layer {
    const struct cs_gguf_tensor *attn_norm; /* (n_embd) f32 */
    const struct cs_gguf_tensor *wq;        /* (n_embd, q_dim) */
    const struct cs_gguf_tensor *wk;        /* (n_embd, kv_dim) */
    const struct cs_gguf_tensor *wv;        /* (n_embd, kv_dim) */
    const struct cs_gguf_tensor *wo;        /* (q_dim, n_embd) */
    const struct cs_gguf_tensor *bq;        /* required for qwen2, optional otherwise: (q_dim) */
    const struct cs_gguf_tensor *bk;        /* qwen2 (optional otherwise): (kv_dim) */
    const struct cs_gguf_tensor *bv;        /* qwen2 (optional otherwise): (kv_dim) */
    const struct cs_gguf_tensor *q_norm;    /* qwen3 only: (head_dim) */
    const struct cs_gguf_tensor *k_norm;    /* qwen3 only: (head_dim) */
    const struct cs_gguf_tensor *ffn_norm;  /* (n_embd) */
    const struct cs_gguf_tensor *w_gate;    /* (n_embd, n_ff) */
    const struct cs_gguf_tensor *w_up;      /* (n_embd, n_ff) */
    const struct cs_gguf_tensor *w_down;    /* (n_ff, n_embd) */
    /* qwen35: attention layers have wq (n_embd, 2 * q_dim) = per head [q (head_dim) | gate (head_dim)] and
     * q_norm / k_norm; ffn_norm is post_attention_norm. Delta-net layers (recurrent) have none of
     * wq..wo but these (C, Dv, Hv: cs_hp_dn_*): */
    bool recurrent;
    const struct cs_gguf_tensor *wqkv;      /* attn_qkv (n_embd, C) */
    const struct cs_gguf_tensor *wz;        /* attn_gate (n_embd, d_inner) */
    const struct cs_gguf_tensor *conv1d;    /* ssm_conv1d (d_conv, C) f32: tap d_conv-1 = current token */
    const struct cs_gguf_tensor *w_beta;    /* ssm_beta (n_embd, Hv) */
    const struct cs_gguf_tensor *w_alpha;   /* ssm_alpha (n_embd, Hv) */
    const struct cs_gguf_tensor *dt_bias;   /* ssm_dt.bias (Hv) */
    const struct cs_gguf_tensor *ssm_a;     /* ssm_a (Hv) = -exp(A_log) */
    const struct cs_gguf_tensor *ssm_norm;  /* ssm_norm (Dv) */
    const struct cs_gguf_tensor *ssm_out;   /* (d_inner, n_embd) */
};

struct cs_model {
    struct cs_gguf *gguf;      /* owned */
    struct cs_hparams hp;
    const struct cs_gguf_tensor *tok_embd;    /* (n_embd, n_vocab) */
    const struct cs_gguf_tensor *output_norm; /* (n_embd) */
    const struct cs_gguf_tensor *output;      /* (n_embd, n_vocab); == tok_embd when tied */
    struct cs_layer *layers;   /* owned, n_layer entries */
    uint64_t n_params;         /* elements of every tensor the trunk uses (tied output counted once) */
    uint64_t n_bytes;          /* bytes of those tensors */
};

/* Reads and validates the hyper-parameters; errors name the missing/invalid key. */
int cs_hparams_read(const struct cs_gguf *g, struct cs_hparams *hp, char *err, size_t errlen);

/* Opens path, reads hparams and looks up every trunk tensor with its expected shape. */
int cs_model_load(const char *path, struct cs_model **out, char *err, size_t errlen);
/* Same over an already opened GGUF; the model takes ownership of g (even on error). */
int cs_model_from_gguf(struct cs_gguf *g, struct cs_model **out, char *err, size_t errlen);
void cs_model_free(struct cs_model *m);

/* "llama" etc. */
const char *cs_arch_name(enum cs_arch a);

#endif
