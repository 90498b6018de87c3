/* matmul_i8.h: the rows-in-lanes integer path for 8-bit-like weights (q8_0,
 * q6_K, q5_K): CS_WLAYOUT_I8, made at upload (groups of 16 rows, one 64-byte
 * vector = 4 consecutive k of 16 rows; layout and reduction order at the top
 * of cl/matmul_i8.cl), read by integer dot products (VNNI vpdpbusd where the
 * host has it) against the activation columns quantized once by quant_q8
 * (cl/quant.cl, src/ops/matmul_q8.h). One kernel body for mat-vec and
 * mat-mat: a column's result never depends on the batch. CPU family only;
 * on by default for the types below, CLSPEC_INTDOT=0 keeps the float path
 * (the choice is made per weight at upload, never per batch). */
#ifndef CS_OPS_MATMUL_I8_H
#define CS_OPS_MATMUL_I8_H

#include <stdbool.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "ops/matmul.h"

/* Whether a weight of type with rows of n_in gets CS_WLAYOUT_I8 on d at
 * upload (CS_INTL_I8 in d->int_layouts: CPU family, CLSPEC_INTDOT not 0;
 * a type and shape of the path). */
bool cs_i8_wants(const struct cs_cl_dev *d, uint32_t type, uint32_t n_in);

/* Device bytes per row of CS_WLAYOUT_I8 (a group of 16 rows: 16 times). */
uint64_t cs_i8_row_bytes(uint32_t type, uint32_t n_in);

/* n_rows GGUF rows of type at src -> CS_WLAYOUT_I8 at dst (ceil(n_rows / 16)
 * * 16 * cs_i8_row_bytes bytes; the last group's missing rows are zeros). */
void cs_i8_repack(uint32_t type, uint32_t n_in, uint32_t n_rows, const void *src, void *dst);

/* Builds cl/matmul_i8.cl on d (optional: the ops build it on first use). */
int cs_op_matmul_i8_prepare(struct cs_cl_dev *d, char *err, size_t errlen);

/* y = x . W^T (as cs_op_matmul) for a CS_WLAYOUT_I8 weight, from the
 * columns that cs_op_quant_q8_scratch left in d's scratch. Enqueues only. */
int cs_op_matmul_i8(struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols, cl_mem y, size_t y_off,
                    char *err, size_t errlen);

/* cs_op_get_rows for a CS_WLAYOUT_I8 weight (the same values as the GGUF
 * layout's gather, bit for bit). */
int cs_op_get_rows_i8(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem ids, size_t ids_off, uint32_t n,
                      cl_mem out, size_t out_off, char *err, size_t errlen);

#endif
