/* matmul_q8.h: the integer-dot matmul path (cl/quant.cl, cl/matmul_q8.cl):
 * activation columns quantized once to 8-bit blocks of 32 (a scale each),
 * then int8 x int4 / int8 dot products against q4_0 and q8_0 weights.
 * CPU family only, and only when the device was opened with CLSPEC_INTDOT=1
 * (d->int8_act): the activation rounding changes logits slightly (bounded
 * in tests/test-kernels-q8.c and the golden tests), so it stays opt-in
 * until it pays. Every kernel of a type follows the one reduction order at
 * the top of cl/matmul_q8.cl, so a column's result does not depend on the
 * batch (speculative verification stays lossless). */
#ifndef CS_OPS_MATMUL_Q8_H
#define CS_OPS_MATMUL_Q8_H

#include <stdbool.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "ops/matmul.h"

/* Whether cs_op_matmul takes the integer path for w on d. */
bool cs_op_q8_takes(const struct cs_cl_dev *d, const struct cs_weight *w);

/* Bytes of quant_q8's output for n_cols columns of n_in (n_in % 32 == 0):
 * n_cols n_in chars, then n_cols n_in / 32 floats at byte *d_off. */
size_t cs_q8_bytes(uint32_t n_in, uint32_t n_cols, size_t *d_off);

/* Quantizes x (n_cols columns of n_in floats at x_off) into out (at least
 * cs_q8_bytes). Enqueues only. */
int cs_op_quant_q8(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols, cl_mem out,
                   char *err, size_t errlen);
/* The same, with the block sums of q at s_off (bytes, 4-aligned, after the
 * dx; 0: none; layout in cl/quant.cl), for the 4-bit path. */
int cs_op_quant_q8_sums(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols, cl_mem out,
                        size_t s_off, char *err, size_t errlen);

/* Quantizes x into d's scratch (d->q8_buf, grown as needed). */
int cs_op_quant_q8_scratch(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols,
                           char *err, size_t errlen);

/* y = x . W^T from the columns that cs_op_quant_q8_scratch left in d's
 * scratch (n_cols of w->n_in), y as in cs_op_matmul. Enqueues only. */
int cs_op_matmul_q8(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                    char *err, size_t errlen);

/* The fused mat-vecs (one column, single-part weights of one type and
 * layout; the same bits as cs_op_matmul_q8 per weight, and cs_op_swiglu):
 * Q, K and V in one launch; silu(gate) * up into out in one launch. */
int cs_op_matmul_q8_qkv(struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                        const struct cs_weight *wv, cl_mem q, size_t q_off, cl_mem k, size_t k_off, cl_mem v,
                        size_t v_off, char *err, size_t errlen);
int cs_op_matmul_q8_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem out,
                           size_t out_off, char *err, size_t errlen);

#endif
