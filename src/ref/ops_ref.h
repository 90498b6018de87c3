/* ops_ref.h: plain-C references of the non-matmul ops (the ground truth the
 * OpenCL kernels are tested against, and the ops of the plain-C reference
 * forward pass). f32 arrays + sizes, caller-owned, no allocation. */
#ifndef CS_REF_OPS_REF_H
#define CS_REF_OPS_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* y (n_rows, n_cols) = x / sqrt(mean(x^2) + eps) * w (w (n_cols) or NULL). y may be x. */
void cs_ref_rmsnorm(const float *x, const float *w, float *y, int n_rows, int n_cols, float eps);

/* RoPE in place on x (n_tokens, n_head, head_dim), pos (n_tokens):
 * theta_i = freq_scale * (pos * theta_scale^i), theta_scale = freq_base^(-2/n_rot)
 * (powf; the power by repeated float products, as ggml), i < n_rot/2, rotating
 * (2i, 2i+1) or, if neox, (i, i + n_rot/2); dims >= n_rot untouched. */
void cs_ref_rope(float *x, const int32_t *pos, int n_tokens, int n_head, int head_dim, int n_rot,
                 bool neox, float freq_base, float freq_scale);

/* out[i] = silu(gate[i]) * up[i]. */
void cs_ref_swiglu(const float *gate, const float *up, float *out, size_t n);
/* out[i] = a[i] + b[i]. */
void cs_ref_add(const float *a, const float *b, float *out, size_t n);
/* x (n_rows, n_cols) += bias (n_cols) per row. */
void cs_ref_add_bias(float *x, const float *bias, int n_rows, int n_cols);
/* x[i] *= s. */
void cs_ref_scale(float *x, size_t n, float s);
/* Softmax in place over each row of x (n_rows, n_cols). */
void cs_ref_softmax(float *x, int n_rows, int n_cols);

/* out[r] = the index of the largest element of row r of x (n_rows, n_cols):
 * the first maximum (ties: smallest index); NaN never wins over a number. */
void cs_ref_argmax(const float *x, int n_rows, int n_cols, int32_t *out);
/* Greedy verification of runs of n rows (cl/argmax.cl greedy_accept): am
 * (n) each row's argmax, nxt (n) the token the next row of the run carries
 * or -1 at a run's end; res (n, 2): per row the count of matching rows from
 * it on (am[j] == nxt[j]) and the argmax of the first row that stops it. */
void cs_ref_greedy_accept(const int32_t *am, const int32_t *nxt, int n, int32_t *res);

/* Attention (see src/ops/ops.h cs_op_attention for the visibility rule) over
 * f32 k, v (n_cells, n_kv_head * head_dim); q, out (n_tokens, n_head,
 * head_dim); cell_pos (n_cells, -1 empty), cell_seq (n_cells, bitmask);
 * token_pos, token_seq (n_tokens). Two passes (max, then exp-sum), double
 * accumulation; a token with no visible cell gets zeros. */
void cs_ref_attention(const float *q, const float *k, const float *v, const int32_t *cell_pos,
                      const uint64_t *cell_seq, int n_cells, const int32_t *token_pos,
                      const int32_t *token_seq, int n_tokens, int n_head, int n_kv_head,
                      int head_dim, bool causal, float scale, float *out);

/* llama.cpp's x86 CPU rounding of a matmul input x (n_rows, n_cols), in place,
 * for weights of type weight_type (the vec_dot_type conversion): F16 -> f16,
 * BF16 -> bf16 (nearest even); Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 -> q8_0 / q8_1 blocks
 * of 32 (d = amax / 127, id = 127 / amax, q = nearbyint(x id), x = f16(d) q);
 * Q2_K..Q6_K -> q8_K blocks of 256 (iscale = -127 / x_max, q = min(127,
 * nearbyint(iscale x)), x = (1 / iscale) q); any other type: unchanged.
 * Partial trailing blocks are left unchanged (llama.cpp rows never have one). */
void cs_ref_round_rows(uint32_t weight_type, float *x, int n_rows, int n_cols);

#endif
