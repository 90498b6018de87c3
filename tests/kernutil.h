/* kernutil: the device harness of the kernel tests (tests/test-kernels*.c):
 * one device opened once per kernel family, buffers, read-back, the error
 * measure. Helpers that fail the running cmocka test on an OpenCL error. */
#ifndef CS_TESTS_KERNUTIL_H
#define CS_TESTS_KERNUTIL_H

#include <stdbool.h>
#include <stddef.h>

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
/* Waits for d's queue, then returns a malloc'd copy of bytes at off of m. */
void *ku_read(struct cs_cl_dev *d, cl_mem m, size_t off, size_t bytes);
/* max |y - ref| / max |ref| over n values; INFINITY when a y is not finite. */
double ku_norm_err(const float *y, const float *ref, size_t n);
/* "gpu" / "cpu", indexed by enum cs_kfamily */
extern const char *const ku_fam_name[2];

#endif
