/* i4_ref.h: plain-C reference of the 4-bit integer path (cl/matmul_i4.cl),
 * operation for operation, from the GGUF blocks (so the test also checks the
 * repack at upload, src/ops/matmul_i4.c). */
#ifndef CS_REF_I4_REF_H
#define CS_REF_I4_REF_H

#include <stddef.h>
#include <stdint.h>

/* y[c n_out + r] = row r of w (GGUF layout, type Q4_0 or Q4_K) . column c of
 * (q, d) (quant_q8's output, cs_ref_quant_q8), in the reduction order of
 * cl/matmul_i4.cl. Returns CLSPEC_OK or CLSPEC_E_UNSUPPORTED with a
 * message. */
int cs_ref_matmul_i4(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int8_t *q, const float *d,
                     uint32_t n_cols, float *y, char *err, size_t errlen);

#endif
