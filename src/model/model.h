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
};

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
