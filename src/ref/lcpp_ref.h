/* lcpp_ref.h: a plain-C model of the arithmetic of llama.cpp's CPU backend
 * (commit c392e50 of Feb 2025, x86-64 with AVX-512/FMA/F16C, one thread,
 * no flash attention, f16 KV cache) for llama models with F32, F16 and Q8_0
 * weights: every sum in the order those kernels use, every rounding where
 * they round, so that its logits equal the ones recorded in
 * ../shared/reference/greedy-*.json to the last printed digit. It is the
 * specification the OpenCL path's llamacpp_numerics mode is tested against
 * (greedy text identical to llama.cpp's on near-ties), not an engine:
 * one sequence, no batching across sequences, slow loops.
 *
 * What it models (the paths llama.cpp takes for these shapes):
 *  - Q8_0 weights: the activation row quantized to q8_0 (AVX2
 *    quantize_row_q8_0: d = amax/127 stored as f16, q = round-half-even(x *
 *    (127/amax))); dot products as ggml_vec_dot_q8_0_q8_0 / tinyBLAS_Q0_AVX:
 *    8 lanes, lane l of a block holds the exact integer sum of elements
 *    4l..4l+3, acc_l = fma(d_w * d_x, lane_l, acc_l) over blocks, then the
 *    hsum_float_8 tree.
 *  - F32 weights: tinyBLAS<16> (16 lanes of fma over the row, then the
 *    _mm512_reduce_add_ps tree) when the row length is a multiple of 16,
 *    else ggml_vec_dot_f32 (4 x 16 lanes per 64 elements, folded, reduced,
 *    then a scalar tail).
 *  - F16 weights: tinyBLAS<16> with the f32 activation when the row length
 *    is a multiple of 16, else the activation rounded to f16 and
 *    ggml_vec_dot_f16 (tail summed in double).
 *  - RMSNorm: sum of float squares in double; scale = 1/sqrtf(mean + eps).
 *  - RoPE: ggml_rope_cache_init (theta *= powf(base, -2/n_dims) per pair,
 *    cosf/sinf of the C library) and the rotation in float.
 *  - Attention: K and V stored as f16 (V transposed); n_kv = the used cells
 *    padded to 32; K.Q as tinyBLAS<16> (f32 Q) when a single token is
 *    decoded and head_dim % 16 == 0, otherwise Q rounded to f16 and
 *    ggml_vec_dot_f16; softmax with ggml_v_expf (AVX-512 version) over
 *    16-wide chunks, the sum in double; V.P as tinyBLAS<16> over the cells.
 *  - SiLU: ggml_v_silu (AVX-512 version) on 16-wide chunks, x/(1+expf(-x))
 *    on the tail.
 * Options select between modelling choices the reference data decides
 * (see cs_lcpp_opts). */
#ifndef CS_LCPP_REF_H
#define CS_LCPP_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct cs_lcpp_opts {
    bool no_rope_fma; /* default: x0*cos - x1*sin compiled as fma(x0, cos, -(x1*sin)), as GCC contracts it */
    bool tail_fma;   /* the compiler fused the scalar tails of the f32 dot products */
};

struct cs_lcpp;

int cs_lcpp_new(const struct cs_model *m, uint32_t n_ctx, const struct cs_lcpp_opts *o, struct cs_lcpp **out,
                char *err, size_t errlen);
void cs_lcpp_free(struct cs_lcpp *L);

/* Runs tokens[0..n-1] at positions n_past..n_past+n-1 as one llama.cpp ubatch
 * (n > 1: prompt processing; n == 1: a decode step) and writes the logits
 * (n_vocab floats) of the last one. */
int cs_lcpp_eval(struct cs_lcpp *L, const int32_t *tokens, int n, float *logits, char *err, size_t errlen);

/* Positions already in the cache. */
uint32_t cs_lcpp_n_past(const struct cs_lcpp *L);

/* Building blocks, exposed for the OpenCL kernels' tests. */
/* y (n, n_out) = x (n, n_in) . W^T for W (GGUF rows of type F32, F16 or Q8_0);
 * batch: as one llama.cpp ubatch of n >= 2 rows, else row by row. */
int cs_lcpp_matmul_raw(uint32_t type, const void *W, int n_in, int n_out, const float *x, int n, bool batch, float *y,
                       char *err, size_t errlen);
void cs_lcpp_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* g (F) = silu(g) * u as ggml_vec_silu_f32 then ggml_vec_mul_f32. */
void cs_lcpp_swiglu_row(float *g, const float *u, int F);
float cs_lcpp_expf(float x);                           /* ggml_v_expf, one lane */
float cs_lcpp_silu(float x);                           /* ggml_v_silu, one lane */
float cs_lcpp_reduce16(const float a[16]);              /* _mm512_reduce_add_ps */
float cs_lcpp_hsum8(const float a[8]);                  /* hsum_float_8 */
/* ggml_rope_cache_init for one position: cs[2i], cs[2i+1] = cosf, sinf of pair i's angle (n_rot/2 pairs). */
void cs_lcpp_rope_table(uint32_t n_rot, float freq_base, float freq_scale, int32_t pos, float *cs);
/* One q8_0 block of x (32 floats): qs and the f16 scale's value. */
void cs_lcpp_quantize_q8_0(const float *x, int8_t qs[32], float *d);

#endif
