/* i8_ref.h: the integers of 8-bit-like weight blocks (q8_0, q6_K, q5_K) and the
 * plain-C reference of the rows-in-lanes integer path (cl/matmul_i8.cl), in
 * its reduction order, so the kernels can be checked bit for bit
 * (tests/test-kernels-i8.c). The repack at upload (src/ops/matmul_i8.c)
 * reads the blocks through cs_i8_block too. */
#ifndef CS_REF_I8_REF_H
#define CS_REF_I8_REF_H

#include <stddef.h>
#include <stdint.h>

/* One block of 32 elements of a GGUF row: element k = d * sc[k / 16] * w[k]
 * - dmin * m. q8_0: d its scale, sc = {1, 1}, w its int8 values; q6_K: d the
 * super-block's scale, sc the sub-block scales of elements 0..15 and
 * 16..31, w = q - 32 (-32..31); both m = 0, dmin = 0. q5_K: d, dmin the
 * super-block's, sc = {s, s} and m the sub-block's 6-bit scale and min, w =
 * q (0..31). */
struct cs_i8_blk {
    float d, dmin;
    int8_t sc[2];
    uint8_t m;
    int8_t w[32];
};

/* Whether type has an integer layout (q8_0: n_in % 32 == 0; q6_K, q5_K:
 * n_in % 256 == 0). */
int cs_i8_type_ok(uint32_t type, uint32_t n_in);

/* Block b (elements [32 b, 32 b + 32)) of row (GGUF layout) into *o. */
void cs_i8_block(uint32_t type, const uint8_t *row, uint32_t b, struct cs_i8_blk *o);

/* y[c n_out + r] = row r of w (GGUF layout) . column c of (q, d) (quant_q8's
 * output as cs_ref_quant_q8 gives it), in the reduction order of
 * cl/matmul_i8.cl. CLSPEC_OK, or CLSPEC_E_UNSUPPORTED with a message. */
int cs_ref_matmul_i8(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int8_t *q,
                     const float *d, uint32_t n_cols, float *y, char *err, size_t errlen);

#endif
