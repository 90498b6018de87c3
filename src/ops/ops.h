/* ops.h: host dispatch of every non-matmul op of the forward pass (norms,
 * RoPE, elementwise, softmax, KV cache store, attention) on one OpenCL device.
 * Each call only enqueues on d->q (no wait); the caller owns every cl_mem.
 * Activations are f32 row-major; offsets are in elements. Row reductions and
 * attention pick their kernel by d->info.family (CPU: one row / (token, head)
 * per work-item; GPU: one work-group per row / (token, head)); the rest is
 * elementwise and the same for both. */
#ifndef CS_OPS_OPS_H
#define CS_OPS_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "cl/runtime.h"

/* The single dispatch path of every kernel (ops.c, matmul.c, lcpp_ops.c,
 * src/cl/bandwidth.c): fetch the (cached) kernel kname of program prog built with
 * extra -D flags, set its arguments a[0..na), enqueue a 1-D range of n_items
 * work-items, which cs_cl_run rounds up to the explicit local size (kernels
 * bound-check their index); n_items 0 sets the arguments and enqueues
 * nothing. Sizes the kernels also know (work-groups, tiles, rows per
 * work-item) come from src/cl/kconst.h. */
struct cs_karg {
    size_t size;    /* of the value */
    const void *p;  /* the value (cl_mem, int, ...); NULL with size: __local memory of size bytes */
};
#define CS_KA(v) {sizeof(v), &(v)}
int cs_op_launch(struct cs_cl_dev *d, const char *prog, const char *extra, const char *kname,
                 const struct cs_karg *a, size_t na, size_t n_items, size_t local, char *err, size_t errlen);
/* cs_op_launch over a dims-D range (1..3): global[i] work-items (rounded up
 * to local[i]) in dimension i; a zero global[i] enqueues nothing. */
int cs_op_launch_nd(struct cs_cl_dev *d, const char *prog, const char *extra, const char *kname,
                    const struct cs_karg *a, size_t na, cl_uint dims, const size_t *global, const size_t *local,
                    char *err, size_t errlen);

/* RMSNorm per row: y = x / sqrt(mean(x^2) + eps) (* w if w != NULL).
 * x, y: (n_rows, n_cols); w: (n_cols). y may equal x (same offset). */
int cs_op_rmsnorm(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem w, cl_mem y, size_t y_off,
                  int n_rows, int n_cols, float eps, char *err, size_t errlen);

/* RoPE parameters (GGUF: rope.dimension_count, rope.freq_base, 1/scaling factor). */
struct cs_rope_params {
    int n_rot;        /* rotated dims per head, even, <= head_dim */
    bool neox;        /* pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    float freq_base;  /* theta_i = freq_scale * pos * base^(-2i/n_rot) (the power as ggml: repeated products) */
    float freq_scale; /* linear position scaling (1 = none) */
};

/* RoPE in place on x (n_tokens, n_head, head_dim); pos: int32 (n_tokens). */
int cs_op_rope(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem pos, int n_tokens, int n_head,
               int head_dim, const struct cs_rope_params *p, char *err, size_t errlen);

/* out[i] = silu(gate[i]) * up[i], i < n. out may alias gate or up. */
int cs_op_swiglu(struct cs_cl_dev *d, cl_mem gate, size_t gate_off, cl_mem up, size_t up_off,
                 cl_mem out, size_t out_off, size_t n, char *err, size_t errlen);

/* out[i] = a[i] + b[i], i < n (residual). out may alias a or b. */
int cs_op_add(struct cs_cl_dev *d, cl_mem a, size_t a_off, cl_mem b, size_t b_off, cl_mem out,
              size_t out_off, size_t n, char *err, size_t errlen);

/* x (n_rows, n_cols) += bias (n_cols), broadcast over rows (QKV bias). */
int cs_op_add_bias(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem bias, int n_rows, int n_cols,
                   char *err, size_t errlen);

/* x[i] *= s, i < n. */
int cs_op_scale(struct cs_cl_dev *d, cl_mem x, size_t x_off, size_t n, float s, char *err,
                size_t errlen);

/* Softmax in place over each row of x (n_rows, n_cols). */
int cs_op_softmax(struct cs_cl_dev *d, cl_mem x, size_t x_off, int n_rows, int n_cols, char *err,
                  size_t errlen);

/* One layer's KV cache on a device, as the attention reads it. k and v are
 * (n_cells, n_kv_head * head_dim) of type_k / type_v (bytes per row: cs_kv_row_bytes);
 * cell_pos (int32, n_cells, -1 = empty) and cell_seq (uint64 bitmask of the
 * sequences 0..63 holding the cell, n_cells) are shared by all layers. */
struct cs_kv_view {
    uint32_t type_k; /* enum cs_type of k: F32, F16, BF16, Q8_0, Q4_0 (quantized: n_kv_head * head_dim % 32 == 0) */
    uint32_t type_v; /* enum cs_type of v, chosen independently of type_k */
    int n_cells;
    int n_kv_head;
    int head_dim;  /* multiple of 4 */
    cl_mem k, v;
    cl_mem cell_pos, cell_seq;
    cl_mem cell_order; /* int32 (n_cells), a permutation of the cells: the order attention
                        * visits them in (cs_kv: sorted by position, so a token's result does
                        * not depend on where its cells sit); NULL: 0..n_cells-1 */
};

/* CLSPEC_OK if the KV cache can hold type for cell rows of n_kv_head heads
 * of head_dim (a multiple of 4; q8_0/q4_0 blocks of 32 run along the whole
 * row, a head may start inside a block, and a row that is not whole blocks is
 * padded with 0 to whole blocks: cs_kv_row_bytes), else CLSPEC_E_UNSUPPORTED
 * with the reason in err. */
int cs_kv_type_check(uint32_t type, int n_kv_head, int head_dim, char *err, size_t errlen);

/* Writes rows t < n_tokens of k and v (f32, (n_tokens, n_kv_head * head_dim))
 * into cells cell_idx[t] (int32 cl_mem, distinct; an index outside
 * [0, n_cells) is skipped) of kv->k / kv->v, converting to kv->type like
 * cs_kv_quantize_row. Cell metadata (cell_pos, cell_seq) is the caller's job. */
int cs_op_kv_store(struct cs_cl_dev *d, const struct cs_kv_view *kv, cl_mem k, size_t k_off,
                   cl_mem v, size_t v_off, cl_mem cell_idx, int n_tokens, char *err, size_t errlen);

/* Attention of the batch. q, out: (n_tokens, n_head, head_dim) f32 (must not
 * alias); token_pos, token_seq: int32 (n_tokens), seq in 0..63. Reads cells
 * [0, n_cells_used) of kv (entries [0, n_cells_used) of kv->cell_order when
 * set); visibility (see cl/attention.cl): same sequence bit and (causal ?
 * 0 <= cell_pos <= token_pos : cell_pos >= 0). scores are q.k * scale
 * (normally 1/sqrt(head_dim)); n_head % kv->n_kv_head == 0. Batch-invariant
 * in both families: a token's output row is bit for bit the same whatever
 * the other rows of the batch and n_tokens, and depends on the cells only
 * through its visible ones in visiting order. */
int cs_op_attention(struct cs_cl_dev *d, const struct cs_kv_view *kv, int n_cells_used, cl_mem q,
                    size_t q_off, cl_mem out, size_t out_off, cl_mem token_pos, cl_mem token_seq,
                    int n_tokens, int n_head, bool causal, float scale, char *err, size_t errlen);

/* seq_add's K re-rotation: RoPE by delta positions (angle delta * theta_i,
 * parameters p as cs_op_rope) on every kv head of the K rows of the cells
 * listed in cells (int32 cl_mem, n_list entries; an index outside
 * [0, n_cells) is skipped) of kv->k. Quantized K is dequantized, rotated and
 * requantized inside the kernel; dims >= n_rot are rewritten unchanged (for
 * q8_0/q4_0 requantized). V is untouched. */
int cs_op_kv_shift(struct cs_cl_dev *d, const struct cs_kv_view *kv, cl_mem cells, int n_list,
                   int delta, const struct cs_rope_params *p, char *err, size_t errlen);

/* llama.cpp-compatible numerics: rounds a matmul input x (n_rows, n_cols) in
 * place the way llama.cpp's x86 CPU backend converts activations for weights
 * of weight_type (f16, bf16, q8_0/q8_1 blocks of 32 with round-half-even on
 * x * 127 / amax, q8_K blocks of 256; the exact rules: cs_ref_round_rows in
 * src/ref/ops_ref.h, its plain-C twin). F32 and unknown types: a no-op (no
 * launch). Rounding twice for the same type changes nothing, except for q8_K
 * (1 ulp). */
int cs_op_round_rows(struct cs_cl_dev *d, uint32_t weight_type, cl_mem x, size_t x_off, int n_rows, int n_cols,
                     char *err, size_t errlen);

/* cs_op_rope on q (n_tokens, n_head, head_dim) and k (n_tokens, n_head_kv,
 * head_dim) in one launch (cos/sin computed once for both): bitwise the same
 * as two cs_op_rope calls. q and k must not overlap. */
int cs_op_rope_qk(struct cs_cl_dev *d, cl_mem q, size_t q_off, cl_mem k, size_t k_off, cl_mem pos, int n_tokens,
                  int n_head, int n_head_kv, int head_dim, const struct cs_rope_params *p, char *err, size_t errlen);

/* The residual add and the next RMSNorm in one launch: x += b, then y =
 * rmsnorm(x) (* w), rows (n_rows, n_cols); bitwise the same as cs_op_add then
 * cs_op_rmsnorm. y may equal b (same offset: every element of b is read
 * before the element of y it becomes is written); y must not overlap x. */
int cs_op_add_rmsnorm(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem b, size_t b_off, cl_mem w, cl_mem y,
                      size_t y_off, int n_rows, int n_cols, float eps, char *err, size_t errlen);

/* out[out_off + r] (int32) = the index of the largest element of row r of x
 * (n_rows, n_cols) f32, r < n_rows: the first maximum (ties: smallest index),
 * NaN never wins over a number (cl/argmax.cl; both families give the same
 * index as cs_ref_argmax). */
int cs_op_argmax(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem out, size_t out_off, int n_rows, int n_cols,
                 char *err, size_t errlen);
/* Greedy verification of runs of n rows on the device (cl/argmax.cl
 * greedy_accept; one kernel for both families): am (n int32) the rows'
 * argmaxes, nxt (n int32) the token of the next row of the run or -1 at a
 * run's end, res (2n int32) per row the number of matching rows from it on
 * and the argmax where the match stops (C twin cs_ref_greedy_accept). */
int cs_op_greedy_accept(struct cs_cl_dev *d, cl_mem am, cl_mem nxt, cl_mem res, int n, char *err, size_t errlen);
/* The same with nxt from element nxt_off of its buffer and res from res_off
 * (they may share one: a speculative step's tokens, next tokens and verdicts
 * go up and come back in one transfer each). */
int cs_op_greedy_accept_at(struct cs_cl_dev *d, cl_mem am, cl_mem nxt, size_t nxt_off, cl_mem res, size_t res_off,
                           int n, char *err, size_t errlen);

/* The shape of a KV cache that its programs are built for. */
struct cs_op_kv_shape {
    int head_dim;            /* multiple of 4 */
    uint32_t type_k, type_v; /* enum cs_type */
};

/* Called after each program cs_op_prepare_all made ready: prog is its
 * cl/NAME.cl, done of total on this device. */
typedef void (*cs_op_progress_fn)(void *ud, const struct cs_cl_dev *d, const char *prog, unsigned done,
                                  unsigned total);

/* Builds (or loads from the binary cache) every program the ops of a
 * context with this KV shape launch on d: matmul, getrows, norm, rope,
 * eltwise, argmax, kv (store and shift) and attention, plus lcpp with
 * llama.cpp numerics; so no request waits for a compiler. progress (may be
 * NULL) is told after each. Errors name the device and the program. */
int cs_op_prepare_all(struct cs_cl_dev *d, const struct cs_op_kv_shape *kv, bool llamacpp_numerics,
                      cs_op_progress_fn progress, void *ud, char *err, size_t errlen);

/* The vision encoder's row ops (cl/vit.cl). y (n_rows, n_cols) =
 * LayerNorm(x) (* w) (+ b): mean and population variance per row, then
 * (x - mean) / sqrt(var + eps); w, b NULL: absent. y may equal x. */
int cs_op_layernorm(struct cs_cl_dev *d, cl_mem x, size_t x_off, cl_mem w, cl_mem b, cl_mem y, size_t y_off,
                    int n_rows, int n_cols, float eps, char *err, size_t errlen);

/* x[i] = act(x[i]) in place, i < n: quick = false the tanh GELU
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), true x * sigmoid(1.702 x). */
int cs_op_gelu(struct cs_cl_dev *d, cl_mem x, size_t x_off, size_t n, bool quick, char *err, size_t errlen);

#endif
