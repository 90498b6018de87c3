/* forward_ref.h: a plain-C reference forward pass (one token at a time, f32
 * weights dequantized on load, f32 KV cache): the oracle the OpenCL forward is
 * tested against. cs_ref owns its weights and caches; it borrows the cs_model. */
#ifndef CS_FORWARD_REF_H
#define CS_FORWARD_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

struct cs_ref_layer {
    float *attn_norm;           /* (n_embd) */
    float *wq, *wk, *wv;        /* (q_dim, n_embd), (kv_dim, n_embd), (kv_dim, n_embd): row r = output r */
    float *wo;                  /* (n_embd, q_dim) */
    float *bq, *bk, *bv;        /* (q_dim), (kv_dim), (kv_dim) or NULL */
    float *q_norm, *k_norm;     /* (head_dim) or NULL (qwen3 only) */
    float *ffn_norm;            /* (n_embd) */
    float *w_gate, *w_up;       /* (n_ff, n_embd) */
    float *w_down;              /* (n_embd, n_ff) */
};

struct cs_ref {
    const struct cs_model *model; /* borrowed */
    struct cs_hparams hp;
    uint32_t n_ctx;             /* positions the KV cache holds */
    float *tok_embd;            /* (n_vocab, n_embd) */
    float *output_norm;         /* (n_embd) */
    float *output;              /* (n_vocab, n_embd); == tok_embd when tied */
    struct cs_ref_layer *layers; /* n_layer */
    float *k_cache, *v_cache;   /* (n_layer, n_ctx, kv_dim), K after RoPE */
    /* scratch activations */
    float *x;                   /* (n_embd) residual stream */
    float *xb;                  /* (max(n_embd, q_dim)) */
    float *q, *k, *v;           /* (q_dim), (kv_dim), (kv_dim) */
    float *att;                 /* (n_ctx) scores of one head */
    float *hb, *hb2;            /* (n_ff) */
    float *xo;                  /* (n_embd) */
    float *xr;                  /* (max(n_embd, q_dim, n_ff)) rounded matvec input */
    /* Set after cs_ref_load to reproduce llama.cpp's CPU arithmetic (default
     * false: pure f32): matvec inputs rounded to the weight's dot type (f16,
     * bf16, q8_0 for 32-blocks, q8_K for K-quants), f16 KV cache, q and the
     * attention weights rounded to f16. Used by the golden test only. */
    bool llamacpp_rounding;
    /* Set after cs_ref_load to model a typed KV cache (default 0 = F32: exact):
     * enum cs_type of K and of V (F16, BF16, Q8_0, Q4_0); each stored row
     * (kv_dim values, q8_0/q4_0 blocks of 32 along the whole row, the last
     * one padded with 0) is rounded through cs_kv_quantize_row and
     * cs_kv_dequantize_row, as the device cache holds it. */
    uint32_t kv_type_k, kv_type_v;
};

int cs_ref_load(const struct cs_model *m, uint32_t n_ctx, struct cs_ref **out, char *err, size_t errlen);
void cs_ref_free(struct cs_ref *r);

/* Runs token at position pos (0 <= pos < n_ctx; positions 0..pos-1 must have
 * been run before) and writes n_vocab logits. hidden (optional, may be NULL):
 * (n_layer + 1, n_embd) floats: row k = the input of layer k, row n_layer =
 * the state before the final norm. */
int cs_ref_forward(struct cs_ref *r, int32_t token, uint32_t pos, float *logits, float *hidden, char *err,
                   size_t errlen);

/* Building blocks (exposed so tests can check them). */
void cs_fwdref_rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps);
void cs_fwdref_matvec(float *out, const float *W, const float *x, uint32_t n_in, uint32_t n_out);
void cs_fwdref_rope(float *vec, uint32_t n_heads, uint32_t head_dim, uint32_t n_rot, uint32_t pos, float freq_base,
                 float freq_scale, enum cs_rope_style style);

#endif
