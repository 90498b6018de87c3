/* matmul_ref.h: plain-C references of the weight-matrix ops (cs_op_matmul,
 * cs_op_get_rows) over host buffers in the GGUF layout, for tests and checks.
 * Rows are dequantized with cs_dequantize_row and sums accumulated in double.
 * The caller owns every buffer; nothing is kept. */
#ifndef CS_REF_MATMUL_REF_H
#define CS_REF_MATMUL_REF_H

#include <stddef.h>
#include <stdint.h>

/* y[c * n_out + r] = sum_k W[r][k] x[c * n_in + k] for c < n_cols, r < n_out;
 * w: n_out rows of n_in elements of type. Returns CLSPEC_OK, or an error
 * (unsupported type, bad shape, out of memory) with a message in err. */
int cs_ref_matmul(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const float *x,
                  uint32_t n_cols, float *y, char *err, size_t errlen);

/* out[t * n_in + k] = W[ids[t]][k] for t < n; ids outside [0, n_out) give
 * zeros (as the kernel does). */
int cs_ref_get_rows(uint32_t type, const void *w, uint32_t n_in, uint32_t n_out, const int32_t *ids,
                    uint32_t n, float *out, char *err, size_t errlen);

#endif
