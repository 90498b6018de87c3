/* opsutil: the device harness of the non-matmul op tests
 * (tests/test-kernels-ops.c, tests/test-kernels-attn.c): one device opened in
 * the group setup, both kernel families run on it by forcing its family per
 * test (env CLSPEC_KFAMILY=cpu|gpu restricts to one), buffers that fail the
 * running cmocka test on an OpenCL error, the normalized error every bound
 * uses, and a device KV cache filled through cs_op_kv_store. */
#ifndef CS_TESTS_OPSUTIL_H
#define CS_TESTS_OPSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "clspec/clspec.h"
#include "ops/ops.h"
#include "testutil.h"

extern struct cs_cl_dev *ou_dev; /* NULL when no device: every test skips */
extern char ou_err[CLSPEC_ERRLEN];

extern const enum cs_kfamily ou_fams[2]; /* CPU, GPU */
const char *ou_fam_name(enum cs_kfamily f);
/* The families to run: both, or the one named by CLSPEC_KFAMILY. */
bool ou_fam_enabled(enum cs_kfamily f);
double ou_now_ms(void);

cl_mem ou_buf(size_t bytes, const void *host);
void ou_read(cl_mem m, size_t bytes, void *host);
void ou_write(cl_mem m, size_t bytes, const void *host);
void ou_finish(void);
/* n normal values times scale (malloc'd). */
float *ou_rand_vec(struct tu_rng *r, size_t n, float scale);
/* max |a - b| / max(|ref|, floor): the normalized error every bound uses. */
double ou_norm_err(const float *got, const float *ref, size_t n, double floor);

/* cmocka group setup/teardown: opens the first device (or $CLSPEC_DEVICE). */
int ou_setup(void **state);
int ou_teardown(void **state);

/* Asserts an op call succeeded, showing its message otherwise. */
#define OP_OK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != CLSPEC_OK)                                                                      \
            fail_msg("%s: %s", #call, ou_err);                                                     \
    } while (0)

/* Runs call twice, the first time as a warm-up (program build, PoCL's
 * work-group compilation), restoring in-place inputs in between; t0/t1
 * bracket the second run. */
#define TIMED(t0, t1, restore, call)                                                               \
    do {                                                                                           \
        OP_OK(call);                                                                               \
        ou_finish();                                                                               \
        restore;                                                                                   \
        t0 = ou_now_ms();                                                                          \
        OP_OK(call);                                                                               \
        ou_finish();                                                                               \
        t1 = ou_now_ms();                                                                          \
    } while (0)

#define NEED_DEV()                                                                                 \
    do {                                                                                           \
        if (!ou_dev)                                                                               \
            skip();                                                                                \
    } while (0)

/* Defines test NAME running NAME_fam(f) once per enabled kernel family, with
 * the device's family forced to f (the per-device override). */
#define FAM_TEST(name)                                                                             \
    static void name##_fam(enum cs_kfamily f);                                                     \
    static void name(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        NEED_DEV();                                                                                \
        enum cs_kfamily saved = ou_dev->info.family;                                               \
        for (size_t i_ = 0; i_ < CS_ARRAY_LEN(ou_fams); i_++) {                                    \
            if (!ou_fam_enabled(ou_fams[i_]))                                                      \
                continue;                                                                          \
            ou_dev->info.family = ou_fams[i_];                                                     \
            name##_fam(ou_fams[i_]);                                                               \
        }                                                                                          \
        ou_dev->info.family = saved;                                                               \
    }                                                                                              \
    static void name##_fam(enum cs_kfamily f)

/* ---- KV cache ---- */

extern const uint32_t ou_kv_types[5]; /* F32, F16, BF16, Q8_0, Q4_0 */

/* Bytes of a KV cache row of n elements (quantized: padded to whole blocks). */
size_t ou_kv_row_bytes(uint32_t type, size_t n);
/* Asserts that the padding of a quantized row of n elements (rb bytes) at p
 * reads back as 0. */
void ou_assert_pad_zero(uint32_t type, const unsigned char *p, size_t rb, int n);

/* A device KV cache filled through cs_op_kv_store from f32 rows k, v
 * (n_cells, row): cell c gets row c, except cells listed as skipped (-1 in
 * the index buffer) keep zeros. */
struct ou_kv_fixture {
    struct cs_kv_view kv;
    float *kdq, *vdq; /* the cache contents read back and dequantized (n_cells, row) */
};

void ou_kv_fill(struct ou_kv_fixture *fx, uint32_t type, uint32_t type_v, int n_cells, int n_kv_head, int head_dim,
                const float *k, const float *v, const int32_t *cell_pos, const uint64_t *cell_seq);
void ou_kv_free(struct ou_kv_fixture *fx);

#endif
