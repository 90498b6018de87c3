/* kv_impl.h: helpers shared by the KV cache's two source files (kv.c: cells,
 * placement and sequence operations; kv_ckpt.c: checkpoints). Internal to
 * the KV module; everything works on the host metadata of struct cs_kv. */
#ifndef CS_KV_IMPL_H
#define CS_KV_IMPL_H

#include "kv/kv.h"

/* Cells sequence seq may take: [*lo, *hi) (the whole cache when unified). */
void cs_kv_region(const struct cs_kv *kv, int32_t seq, uint32_t *lo, uint32_t *hi);
/* Records that cell c changed (for the next sync) and keeps kv->hi. */
void cs_kv_touch(struct cs_kv *kv, uint32_t c);
/* Frees cell c (position -1, no sequence) and keeps the counters. */
void cs_kv_free_cell(struct cs_kv *kv, uint32_t c);
/* Lowers kv->hi past free cells at the top. */
void cs_kv_fix_hi(struct cs_kv *kv);
/* Free cells of [lo, hi) counted. */
uint32_t cs_kv_count_free(const struct cs_kv *kv, uint32_t lo, uint32_t hi);
/* Checks 0 <= seq < n_seq_max (allow_all: also -1). */
int cs_kv_check_seq(const struct cs_kv *kv, const char *op, int32_t seq, bool allow_all, char *err,
                    size_t errlen);
/* Copies n rows of row_bytes from src rows from[i] to dst rows to[i] on d's
 * queue, one clEnqueueCopyBuffer per run where both indices advance by one.
 * src and dst may be the same buffer (rows must not overlap). */
int cs_kv_copy_rows(struct cs_cl_dev *d, cl_mem src, cl_mem dst, uint64_t row_bytes,
                    const int32_t *from, const int32_t *to, uint32_t n, char *err, size_t errlen);

#endif
