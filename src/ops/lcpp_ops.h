/* lcpp_ops.h: host dispatch of the llamacpp_numerics kernels (cl/lcpp.cl):
 * llama.cpp's CPU-backend arithmetic on the device, bit for bit as modelled by
 * src/ref/lcpp_ref.c, and the host RoPE table they read. Composed into a
 * kernel family by src/ops/lcpp_family.c (the forward pass with
 * cs_fwd_ctx_params.llamacpp_numerics: golden tests); slow on purpose
 * (one output per work-item). All buffers are f32 unless said. */
#ifndef CS_LCPP_OPS_H
#define CS_LCPP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "ops/matmul.h"
#include "ops/ops.h"

/* Whether cs_op_lcpp_matmul handles w (F32, F16, Q8_0, Q4_0 in one part). */
bool cs_op_lcpp_matmul_ok(const struct cs_weight *w);

/* y (n, n_out) = x (n, n_in) . W^T; batch: llama.cpp's ubatch had >= 2 rows
 * (llamafile's sgemm) rather than 1 (ggml_vec_dot_*). xq (n * n_in bytes) and
 * xd (n * n_in / 32 floats): scratch for the q8_0 activation. */
int cs_op_lcpp_matmul(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, cl_mem y, int n, bool batch,
                      cl_mem xq, cl_mem xd, char *err, size_t errlen);

/* y (n_rows, n) = rmsnorm(x) * w (n), the sum of squares in double. */
int cs_op_lcpp_rmsnorm(struct cs_cl_dev *d, cl_mem x, cl_mem w, cl_mem y, int n_rows, int n, float eps, char *err,
                       size_t errlen);

/* ggml_rope_cache_init for one position, on the host: cs[2i], cs[2i+1] =
 * cosf, sinf of pair i's angle (n_rot/2 pairs; theta *= powf(base, -2/n_rot)
 * per pair, times freq_scale). The table cs_op_lcpp_rope reads, one row per
 * token; src/ref/lcpp_ref.c uses it too. */
void cs_lcpp_rope_table(uint32_t n_rot, float freq_base, float freq_scale, int32_t pos, float *cs);

/* Rotates x (n_tokens, n_head, head_dim) at x_off (floats) in place with
 * table cs (n_tokens * n_rot/2 float2: cs_lcpp_rope_table). */
int cs_op_lcpp_rope(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem cs, int n_tokens, int n_head, int head_dim,
                    int n_rot, bool neox, char *err, size_t errlen);

/* g (n_rows, F) = silu(g) * u. */
int cs_op_lcpp_swiglu(struct cs_cl_dev *d, cl_mem g, cl_mem u, int n_rows, int F, char *err, size_t errlen);

/* Attention of q (n_tokens, n_head, head_dim) over cells 0..n_kv-1 of an f16/f16
 * cache (see lcpp_attn in cl/lcpp.cl) into out; n_kv <= n_cells padded to 32
 * (cells past n_cells count as unused); sc: n_tokens * n_head * n_kv floats. */
int cs_op_lcpp_attention(struct cs_cl_dev *d, const struct cs_kv_view *kv, cl_mem q, cl_mem out, cl_mem tok_pos,
                         cl_mem tok_seq, int n_tokens, int n_head, int n_kv, bool batch, float scale, cl_mem sc,
                         char *err, size_t errlen);

#endif
