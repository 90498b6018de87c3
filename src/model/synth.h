/* synth.h: synthetic llama/qwen2/qwen3 GGUF models with seeded random weights
 * and real shapes (for benchmarks and tests), written tensor by tensor through
 * gguf_write.h. The caller owns the params struct and the strings it points to. */
#ifndef CS_SYNTH_H
#define CS_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cs_synth_params {
    const char *arch;       /* "llama", "qwen2" (q/k/v biases), "qwen3" (q/k norms) or "qwen35" (hybrid: every
                             * 4th layer gated attention with q/k norms, the others gated delta-net with
                             * q/k/value heads of min(128, head_dim) filling dim, see synth.c) */
    const char *name;       /* general.name; NULL: "synth-<arch>" */
    uint32_t dim;           /* n_embd */
    uint32_t n_layer;       /* blocks */
    uint32_t n_head;        /* query heads */
    uint32_t n_kv_head;     /* key/value heads (divides n_head) */
    uint32_t head_dim;      /* 0: dim / n_head (which must divide) */
    uint32_t ffn;           /* feed-forward hidden size */
    uint32_t ctx;           /* context_length */
    uint32_t type;          /* enum cs_type of the 2-D weights (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) */
    int32_t output_type;    /* enum cs_type of output.weight; -1: same as type */
    bool tied;              /* no output.weight (output tied to token_embd) */
    float rms_eps;          /* 0: arch default (llama 1e-5, qwen 1e-6) */
    float rope_base;        /* 0: arch default (llama 1e4, qwen 1e6) */
    const char *vocab_path; /* GGUF whose tokenizer.* KVs are copied (vocab size from it) */
    uint64_t seed;          /* weights are a pure function of seed and shape */
    bool q4_k_m;            /* the Q4_K_M mix (type must be Q4_K): Q6_K for output.weight and
                               for attn_v/ffn_down of some layers (synth.c, mat_type) */
};

/* A small llama default (dim 256, 4 layers, 8/4 heads, FFN 768, ctx 2048, F32,
 * untied, seed 1); vocab_path NULL. */
void cs_synth_defaults(struct cs_synth_params *p);

/* Applies a preset ("110m": 768/12 layers/12 heads/12 kv/FFN 2048/ctx 1024,
 * tied like stories110M; "1.1b": 2048/22/32/4/5632/ctx 2048, untied like
 * TinyLlama) to the shape fields and tied flag of p. */
int cs_synth_preset(const char *name, struct cs_synth_params *p, char *err, size_t errlen);

/* Checks arch, shape and types without touching any file (n_vocab 0: skip the
 * vocabulary-dependent checks). Messages name the offending option. */
int cs_synth_check(const struct cs_synth_params *p, uint64_t n_vocab, char *err, size_t errlen);

/* Writes the model to path. *n_params_out (may be NULL) receives the number
 * of weights written. */
int cs_synth_write(const struct cs_synth_params *p, const char *path, uint64_t *n_params_out,
                   char *err, size_t errlen);

/* general.file_type (llama_ftype) for a weight type, -1 if none. */
int cs_synth_file_type(uint32_t type);

#endif
