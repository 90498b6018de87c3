/* q8act_ref.h: plain-C references of the integer-dot path (cl/quant.cl,
 * cl/matmul_q8.cl), operation for operation, so the kernels can be checked
 * bit for bit (tests/test-kernels-q8.c). */
#ifndef CS_REF_Q8ACT_REF_H
#define CS_REF_Q8ACT_REF_H

#include <stddef.h>
#include <stdint.h>

/* Where element k (0..31) of block b of a column of nb blocks sits in the
 * column's quantized bytes (the pair order of cl/matmul_q8.cl). */
size_t cs_q8_pos(uint32_t nb, uint32_t b, uint32_t k);

/* quant_q8 of n_cols columns of n_in floats (n_in % 32 == 0): q (n_cols
 * n_in int8, each column in pair order), d (n_cols n_in / 32 floats); see
 * cl/quant.cl. */
void cs_ref_quant_q8(const float *x, uint32_t n_in, uint32_t n_cols, int8_t *q, float *d);

/* y[c n_out + r] = row r of w (GGUF layout, type Q4_0 or Q8_0) . column c
 * of (q, d), in the reduction order of cl/matmul_q8.cl. Returns CLSPEC_OK or
 * CLSPEC_E_UNSUPPORTED / CLSPEC_E_INVAL with a message. */
int cs_ref_matmul_q8(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int8_t *q,
                     const float *d, uint32_t n_cols, float *y, char *err, size_t errlen);

#endif
