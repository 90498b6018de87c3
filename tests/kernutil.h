/* kernutil: the device harness of the kernel tests (tests/test-kernels*.c):
 * one device opened once per kernel family, buffers, read-back, the error
 * measure. Helpers that fail the running cmocka test on an OpenCL error. */
#ifndef CS_TESTS_KERNUTIL_H
#define CS_TESTS_KERNUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"

/* Opens the first OpenCL device (or $CLSPEC_TEST_DEVICE) once per kernel
 * family into devs[CS_KFAMILY_*], with cs_op_matmul_prepare when prepare is
 * set (printing how long each family took). Programs are built from source
 * and PoCL's own cache keeps the kernels (CLSPEC_NO_BINARY_CACHE, unless the
 * caller set it): exporting a PoCL program binary compiles every kernel of a
 * program up front. 1: opened; 0: no device (the tests skip, a line on
 * stderr names label); -1: an error (printed). */
int ku_open_families(struct cs_cl_dev *devs[2], bool prepare, const char *label);
void ku_close_families(struct cs_cl_dev *devs[2]);

/* A read-write buffer of bytes, copied from init when it is not NULL. */
cl_mem ku_buf(struct cs_cl_dev *d, size_t bytes, const void *init);
/* Reads bytes at off of m into dst (a blocking read on d's queue). */
void ku_read_to(struct cs_cl_dev *d, cl_mem m, size_t off, size_t bytes, void *dst);
/* Waits for d's queue, then returns a malloc'd copy of bytes at off of m. */
void *ku_read(struct cs_cl_dev *d, cl_mem m, size_t off, size_t bytes);
/* max |y - ref| / max |ref| over n values; INFINITY when a y is not finite. */
double ku_norm_err(const float *y, const float *ref, size_t n);
/* Random weight rows of type (n_out rows of n_in), quantized from normal
 * values (uneven: scaled by 1 + k % 7, so sub-block scales differ). */
unsigned char *ku_random_weight(uint32_t type, uint32_t n_in, uint32_t n_out, uint64_t seed, bool uneven);
/* n random normal values (malloc'd). */
float *ku_random_floats(size_t n, uint64_t seed);
/* n_cols random normal columns of n_in; block 1 of column 0 all zero; with
 * outlier, 40 at element n_in / 2 of column 0 (it dominates its block). */
float *ku_random_x(uint32_t n_in, uint32_t n_cols, uint64_t seed, bool outlier);
/* n_out rows of n_in elements of any type (malloc'd, *bytes_out bytes):
 * types cs_quantize_row supports as ku_random_weight (even); the others are
 * random block bytes with finite scales d in [0.01, 0.1) and mins in
 * (-0.1, 0.1). */
unsigned char *ku_random_blocks(uint32_t type, uint32_t n_in, uint32_t n_out, uint64_t seed, uint64_t *bytes_out);
struct cs_weight;
/* y = x W^T through cs_op_matmul (x at float offset 3 of its buffer, y at 5:
 * offsets are honoured); a malloc'd (n_cols, n_out) copy of y. */
float *ku_run_matmul(struct cs_cl_dev *d, const struct cs_weight *w, const float *x, uint32_t n_cols);
/* Fused Q/K/V (w[0], w[1], w[2]: three weights on one input) and, when swiglu,
 * gate/up/SwiGLU (gate w[1], up w[2]) give the same bits as the plain matmuls
 * of the same weights (and cs_op_swiglu of them), at 1 and 5 columns; what
 * names the case in a failure. */
void ku_check_fused(struct cs_cl_dev *d, const struct cs_weight *w, bool swiglu, const char *what);
/* "gpu" / "cpu", indexed by enum cs_kfamily */
extern const char *const ku_fam_name[2];

#endif
