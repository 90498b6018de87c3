/* matmul_tiled.h: the tiled mat-mat of cl/matmul_tiled.cl for the float
 * weight types (F32, F16, BF16) and prefill-sized batches. cs_op_matmul
 * (src/ops/matmul.c) hands a batch to cs_op_matmul_tiled first; every
 * element comes out bitwise the same as from the mat-vec and the small
 * mat-mat (the one reduction order of cl/matmul.cl), so which path a batch
 * takes changes no logit. */
#ifndef CS_OPS_MATMUL_TILED_H
#define CS_OPS_MATMUL_TILED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "ops/matmul.h"

/* The tile sizes: their one definition; the program is built with them as
 * -D (cs_op_matmul_tiled_extra) and the host sizes its launches from them.
 * CPU family (mt_T): a work-item computes CS_MT_R rows x CS_MT_C columns
 * (2 CS_MT_R CS_MT_C float16 accumulators over its two passes, CS_MT_R
 * CS_MT_C live at once: 24 of the 32 vector registers of AVX-512; 6 x 4
 * took about 5% fewer CPU samples in mt_f16 than 4 x 4 on 110M F16 pp512
 * under PoCL 3.1, 4 x 6 about 3%); a
 * work-group is CS_MT_GR x CS_MT_GC such tiles (column tiles fastest).
 * GPU family (mtg_T): a work-group of CS_MM_WG computes CS_MT_GPU_R rows x
 * CS_MM_TC columns (local memory: CS_MT_GPU_R CS_MM_TC CS_MM_WG floats). */
#define CS_MT_R 6
#define CS_MT_C 4
#define CS_MT_GR 16
#define CS_MT_GC 4
#define CS_MT_GPU_R 4
/* Batches of at least this many columns take the tiled kernels (below it,
 * cl/matmul.cl's mv_T / mm_T; the same bits either way). */
#define CS_MT_MIN_COLS 16

/* The build options of the matmul_tiled program (the CS_MT_* above). */
void cs_op_matmul_tiled_extra(char *buf, size_t len);

/* Builds (or loads from the cache) the matmul_tiled program of d. */
int cs_op_matmul_tiled_prepare(struct cs_cl_dev *d, char *err, size_t errlen);

/* Whether cs_op_matmul_tiled takes a batch of n_cols on w: a float weight
 * type in the GGUF layout, n_cols >= CS_MT_MIN_COLS, and the tiled path not
 * switched off by CLSPEC_MM_TILED=0 in the environment (for measurements
 * and tests of the other path). */
bool cs_op_matmul_tiled_applies(const struct cs_cl_dev *d, const struct cs_weight *w, uint32_t n_cols);

/* y = x . W^T as cs_op_matmul (same arguments, offsets in floats, enqueues
 * only) through the tiled kernels when cs_op_matmul_tiled_applies; sets
 * *done to whether it did (nothing enqueued otherwise). The caller has
 * checked the weight and the 32-bit offset ranges (cs_op_matmul does). */
int cs_op_matmul_tiled(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                       size_t y_off, uint32_t n_cols, bool *done, char *err, size_t errlen);

/* The tiled kernels whatever the batch size or CLSPEC_MM_TILED (tests):
 * CLSPEC_E_UNSUPPORTED for a weight type or layout they do not cover. */
int cs_op_matmul_tiled_force(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem x, size_t x_off, cl_mem y,
                             size_t y_off, uint32_t n_cols, char *err, size_t errlen);

#endif
