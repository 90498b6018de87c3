/* lcpp_ref.h: a plain-C model of the arithmetic of llama.cpp's CPU backend
 * (commit c392e50 of Feb 2025, x86-64 with AVX-512/FMA/F16C, one thread,
 * no flash attention, f16 KV cache, compiled by GCC) for llama models with
 * F32, F16, Q8_0 and Q4_0 weights: every sum in the order those kernels use,
 * every rounding where they round, so that its logits equal the ones
 * recorded in ../shared/reference/greedy-*.json to the last printed digit
 * (tests/test-lcpp: six models). It is the specification the OpenCL path's
 * llamacpp_numerics mode (cl/lcpp.cl) is tested against, not an engine: one
 * sequence, slow loops.
 *
 * What it models. "Batch" means llama.cpp's ubatch had >= 2 rows: llamafile's
 * sgemm (tinyBLAS) serves only those; a single row goes through ggml_vec_dot_*.
 *  - Quantized weights: the activation row quantized to q8_0 (AVX2
 *    quantize_row_q8_0: d = amax/127 stored as f16, q = round-half-even(x *
 *    (127/amax))). Q8_0 (and Q4_0 with rows % 8 != 0): 8 lanes, lane l of a
 *    block holds the exact integer sum of elements 4l..4l+3, lane = fma(d_w *
 *    d_x, sum, lane) over blocks, then the hsum_float_8 tree (vec_dot and
 *    tinyBLAS_Q0_AVX alike). Q4_0 with rows % 8 == 0: ggml repacks it for AVX2
 *    (q4_0_8x8): acc = fma(whole-block integer dot, d_w * d_x, acc).
 *  - F32 weights: batch and row length % 16 == 0: tinyBLAS<16> (16 lanes of
 *    fma, then the _mm512_reduce_add_ps tree); else ggml_vec_dot_f32 (4 x 16
 *    lanes per 64 elements, folded, reduced, then a float tail).
 *  - F16 weights: the activation rounded to f16; batch and % 16 == 0:
 *    tinyBLAS<16> (f16 x f16); else ggml_vec_dot_f16 (tail summed in double).
 *  - RMSNorm: sum of float squares in double; scale = 1/sqrtf(mean + eps).
 *  - RoPE: ggml_rope_cache_init (theta *= powf(base, -2/n_dims) per pair,
 *    cosf/sinf of the C library), the rotation as GCC contracts it:
 *    fma(x0, cos, -(x1*sin)), fma(x0, sin, x1*cos).
 *  - Attention: K and V stored as f16; n_kv = the used cells padded to 32;
 *    Q rounded to f16, K.Q as tinyBLAS<16> (batch, head_dim % 16 == 0) or
 *    ggml_vec_dot_f16; softmax: scale, mask, ggml_v_expf (AVX-512) per 16
 *    cells with the chunk sums in double, times (float)(1/sum); P rounded to
 *    f16, V.P as tinyBLAS<16> (batch) or ggml_vec_dot_f16.
 *  - SiLU: ggml_v_silu on 16-wide chunks, x/(1+expf(-x)) on the tail.
 *  - The last layer's FFN and the output run on the rows that want logits
 *    only (llama.cpp's inp_out_ids), so their batch-ness is theirs. */
#ifndef CS_LCPP_REF_H
#define CS_LCPP_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

struct cs_lcpp;

/* n_ctx: cells, a multiple of 32. */
int cs_lcpp_new(const struct cs_model *m, uint32_t n_ctx, struct cs_lcpp **out, char *err, size_t errlen);
void cs_lcpp_free(struct cs_lcpp *L);

/* Runs tokens[0..n-1] at positions n_past..n_past+n-1 as one llama.cpp ubatch
 * (n > 1: prompt processing; n == 1: a decode step) and writes the logits
 * (n_vocab floats) of the last one. */
int cs_lcpp_eval(struct cs_lcpp *L, const int32_t *tokens, int n, float *logits, char *err, size_t errlen);

/* Building blocks, exposed for the OpenCL kernels' tests. */
/* y (n, n_out) = x (n, n_in) . W^T for W (GGUF rows of type F32, F16, Q8_0 or Q4_0);
 * batch: as one llama.cpp ubatch of n >= 2 rows, else row by row. */
int cs_lcpp_matmul_raw(uint32_t type, const void *W, int n_in, int n_out, const float *x, int n, bool batch, float *y,
                       char *err, size_t errlen);
void cs_lcpp_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* g (F) = silu(g) * u as ggml_vec_silu_f32 then ggml_vec_mul_f32. */
void cs_lcpp_swiglu_row(float *g, const float *u, int F);
/* The RoPE table (ggml_rope_cache_init) is production code: cs_lcpp_rope_table in ops/lcpp_ops.h. */

#endif
