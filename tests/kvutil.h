/* kvutil: the harness of the KV cache tests (tests/test-kv.c,
 * tests/test-kv-data.c): small shapes (4 layers, 2 kv heads x 64, 4 query
 * heads), up to two devices of one platform opened in the group setup
 * (POCL_DEVICES="pthread pthread" is set by main before the first OpenCL
 * call), caches, placement, rows stored and read back, attention over a
 * layer. Helpers fail the running cmocka test on an error. */
#ifndef CS_TESTS_KVUTIL_H
#define CS_TESTS_KVUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "kv/kv.h"
#include "testutil.h"

#define NL 4   /* layers */
#define NKV 2  /* kv heads */
#define HD 64  /* head_dim */
#define NH 4   /* query heads */
#define ROW (NKV * HD)

extern struct cs_cl_dev *kvu_dev[2]; /* kvu_dev[1] NULL when only one device */
extern char kvu_err[CLSPEC_ERRLEN];

extern const uint32_t kvu_types[5]; /* F32, F16, BF16, Q8_0, Q4_0 */

#define OK(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != CLSPEC_OK)                                                                      \
            fail_msg("%s: %d %s", #call, rc_, kvu_err);                                            \
    } while (0)

#define NEED_DEV()                                                                                 \
    do {                                                                                           \
        if (!kvu_dev[0])                                                                           \
            skip();                                                                                \
    } while (0)

/* The hyperparameters of the shapes above (RoPE normal, base 10000). */
struct cs_hparams kvu_hparams(void);
/* A cache of n_ctx cells; layers on kvu_dev[0], or split 2/2 over both devices. */
struct cs_kv *kvu_make(uint32_t n_ctx, uint32_t n_seq, bool unified, uint32_t tk, uint32_t tv, bool split);
/* Places rows (seq, pos from p0, n rows; token = 1000 * seq + pos) and
 * returns the placement status of seq; cells[] gets the cells. */
int kvu_place(struct cs_kv *kv, int32_t seq, int32_t p0, int n, int32_t *cells);
/* The host metadata is consistent: n_used counts occupied cells, hi covers them. */
void kvu_check_meta(const struct cs_kv *kv);
/* n normal values (malloc'd). */
float *kvu_rand_vec(struct tu_rng *r, size_t n);
cl_mem kvu_buf(struct cs_cl_dev *d, size_t bytes, const void *host);
/* Stores f32 rows k, v ((NL, n, ROW) each) into cells[0..n) of every layer. */
void kvu_store(struct cs_kv *kv, const int32_t *cells, int n, const float *k, const float *v);
/* The raw bytes of one cell's K (or V) row of layer l. */
void kvu_read_raw(struct cs_kv *kv, uint32_t l, int32_t cell, bool is_v, void *dst);
/* One cell's K (or V) row of layer l, dequantized (ROW floats). */
void kvu_read_row(struct cs_kv *kv, uint32_t l, int32_t cell, bool is_v, float *dst);
/* Attention of layer l for n query tokens (q: (n, NH, HD)) after a sync. */
void kvu_attend(struct cs_kv *kv, uint32_t l, const float *q, int n, const int32_t *tpos, const int32_t *tseq,
                float *out);

/* cmocka group setup/teardown: the first device, and a second one of the
 * same platform when there is one. */
int kvu_setup(void **state);
int kvu_teardown(void **state);

#endif
