/* matmul_i4.h: the 4-bit integer path (cl/matmul_i4.cl): q4_0 and q4_K
 * weights repacked at upload with 16 rows in vector lanes (layouts below),
 * activations quantized once per matmul input to 8-bit blocks of 32
 * (cl/quant.cl, shared with src/ops/matmul_q8.c), int8 x int4 block sums by
 * vpdpbusd where the CPU has it. CPU family, where the device's one
 * decision at open (CS_INTL_I4 of cs_cl_int_layouts, src/cl/runtime.h) has
 * it: by default where the host CPU has AVX-512BW; CLSPEC_INTDOT=0 at open
 * keeps the float path (the weights stay in their float-path layouts), =1
 * takes it on any CPU. The
 * layout is fixed per weight at upload, never by batch size: every kernel
 * follows the one reduction order at the top of cl/matmul_i4.cl, so a
 * column's result does not depend on the batch (verification rows equal
 * plain decode rows). */
#ifndef CS_OPS_MATMUL_I4_H
#define CS_OPS_MATMUL_I4_H

#include <stdbool.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "ops/matmul.h"

/* The i4 layouts (numbers apart from the other CS_WLAYOUT_* of matmul.h).
 * A part's rows in groups of 16 (the last one padded with zero rows); per
 * group, q4_0i: per block of 32, half d[16] then 256 nibble bytes (288);
 * q4_Ki: per super-block of 256, half d[16], dmin[16], uchar sc[8][16],
 * mn[8][16], then 8 x 256 nibble bytes (2368). Nibble bytes of a block:
 * byte 4 j + i of vector v (64 bytes) = row j's element 4 v + i (low) and
 * 16 + 4 v + i (high). row_bytes: 18 per 32 (q4_0i, as GGUF), 148 per 256
 * (q4_Ki, GGUF 144). */
#define CS_WLAYOUT_Q4_0_I16 16
#define CS_WLAYOUT_Q4_K_I16 17
/* q6_Ki (q6_K on this path, its 6 bits packed as 4 + 2): per group and
 * super-block of 256, 3392 bytes: float d[16]; char sc[16][16] (scale t of
 * the super-block's 16 scales, row j at 16 t + j); then per sub-block u of
 * 32 (384 bytes) its 256 nibble bytes as above (the low 4 bits of q) and two
 * 64-byte vectors of high bits: byte 4 j + i of the first holds bits 4, 5 of
 * row j's element 4 v + i at bits (4 + 2 v) mod 8 and the next (v = 0..3),
 * the second the same for element 16 + 4 v + i. w = d sc (q - 32). 212 bytes per row per
 * 256 (GGUF: 210; the 8-bit path: 276). CLSPEC_Q6K=i8 keeps q6_K on the
 * 8-bit path (ops/matmul_i8.h), for comparison and its tests. */
#define CS_WLAYOUT_Q6_K_I16 18

/* The i4 layout that an upload of type (rows of n_in) to d takes, with its
 * row bytes; -1 when none (not the CPU family, another type, not on: see
 * above). */
int cs_i4_layout(const struct cs_cl_dev *d, uint32_t type, uint32_t n_in, uint64_t *row_bytes);
bool cs_i4_layout_is(int layout);
/* Device bytes of a part of n_rows rows (whole groups of 16). */
uint64_t cs_i4_part_bytes(uint32_t n_rows, uint64_t row_bytes);
/* Repacks n_rows GGUF rows (src) of n_in elements into dst
 * (cs_i4_part_bytes). */
void cs_i4_repack(int layout, const unsigned char *src, uint32_t n_rows, uint32_t n_in, unsigned char *dst);

/* Whether w is in an i4 layout (then every matmul of w goes here). */
bool cs_op_i4_takes(const struct cs_cl_dev *d, const struct cs_weight *w);

/* Loads cl/quant.cl and cl/matmul_i4.cl on d where the path is on. */
int cs_op_i4_prepare(struct cs_cl_dev *d, char *err, size_t errlen);

/* y = x . W^T as cs_op_matmul: x quantized into d's scratch, then the
 * integer kernels. Enqueues only. */
int cs_op_matmul_i4(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                    size_t y_off, uint32_t n_cols, char *err, size_t errlen);
/* Quantizes x (n_cols columns of n_in floats at x_off) into d's scratch
 * (as cs_op_quant_q8_scratch) with each block's sums of q in the same
 * launch (cs_op_quant_q8_sums), for cs_op_matmul_i4_q. Enqueues only. */
int cs_op_quant_i4_scratch(struct cs_cl_dev *d, cl_mem x, size_t x_off, uint32_t n_in, uint32_t n_cols, char *err,
                           size_t errlen);
/* The same from columns already in d's scratch (cs_op_quant_i4_scratch of
 * n_cols columns of w->n_in). */
int cs_op_matmul_i4_q(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                      char *err, size_t errlen);

/* silu(x . Wg^T) * (x . Wu^T) for one column already in d's scratch
 * (cs_op_quant_i4_scratch), wg and wu single-part of one layout, in one
 * launch: the same bits as two cs_op_matmul_i4_q and cs_op_swiglu. */
int cs_op_matmul_i4_swiglu(struct cs_cl_dev *d, const struct cs_weight *wg, const struct cs_weight *wu, cl_mem out,
                           size_t out_off, char *err, size_t errlen);

/* Q, K and V for one column already in d's scratch, weights that
 * cs_op_i4_qkv_fits, in one launch (the same bits as cs_op_matmul_i4_q
 * for each). */
int cs_op_matmul_i4_qkv(struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                        const struct cs_weight *wv, cl_mem q, size_t q_off, cl_mem k, size_t k_off, cl_mem v,
                        size_t v_off, char *err, size_t errlen);

/* Whether cs_op_matmul_i4_qkv takes these weights: single parts, one n_in,
 * Q and K of one layout, V of that layout or a pair with a kernel (q4_Ki Q
 * and K with q6_Ki V). */
bool cs_op_i4_qkv_fits(const struct cs_cl_dev *d, const struct cs_weight *wq, const struct cs_weight *wk,
                       const struct cs_weight *wv);

/* Embedding gather (cs_op_get_rows) from an i4 layout. */
int cs_op_get_rows_i4(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem ids, size_t ids_off, uint32_t n,
                      cl_mem out, size_t out_off, char *err, size_t errlen);

#endif
