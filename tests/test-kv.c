/* test-kv.c: the KV cache (src/kv/kv.h): placement (unified and partitioned,
 * all-or-nothing per sequence), the sequence operations checked on the host
 * metadata and on the device rows (seq_add's K re-rotation, seq_cp's copies,
 * checkpoints), accounting, prefix matching, errors, and a cache whose
 * layers sit on two devices (POCL_DEVICES="pthread pthread", set before the
 * first OpenCL call). Small shapes: 4 layers, 2 kv heads x 64. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "kv/kv.h"
#include "gguf/quant.h"
#include "ref/ops_ref.h"
#include "testutil.h"

#define NL 4   /* layers */
#define NKV 2  /* kv heads */
#define HD 64  /* head_dim */
#define NH 4   /* query heads */
#define ROW (NKV * HD)

static struct cs_cl_dev *g_dev[2]; /* g_dev[1] NULL when only one device */
static char g_err[CLSPEC_ERRLEN];

static const uint32_t k_types[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0,
                                   CS_TYPE_Q4_0};

#define OK(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != CLSPEC_OK)                                                                      \
            fail_msg("%s: %d %s", #call, rc_, g_err);                                              \
    } while (0)

#define NEED_DEV()                                                                                 \
    do {                                                                                           \
        if (!g_dev[0])                                                                             \
            skip();                                                                                \
    } while (0)

static struct cs_hparams hp_small(void)
{
    struct cs_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layer = NL;
    hp.n_head = NH;
    hp.n_head_kv = NKV;
    hp.head_dim = HD;
    hp.n_embd = NH * HD;
    hp.n_rot = HD;
    hp.rope_freq_base = 10000.0f;
    hp.rope_freq_scale = 1.0f;
    hp.rope_style = CS_ROPE_NORMAL;
    return hp;
}

/* A cache of n_ctx cells; layers on g_dev[0], or split 2/2 over both devices. */
static struct cs_kv *kv_make(uint32_t n_ctx, uint32_t n_seq, bool unified, uint32_t tk, uint32_t tv,
                             bool split)
{
    struct cs_hparams hp = hp_small();
    struct cs_kv_params p = {n_ctx, tk, tv, n_seq, unified};
    struct cs_cl_dev *ld[NL];
    for (int l = 0; l < NL; l++)
        ld[l] = split && l >= NL / 2 ? g_dev[1] : g_dev[0];
    struct cs_kv *kv = NULL;
    OK(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err));
    return kv;
}

/* Places rows (seq, pos from p0, n rows; token = 1000 * seq + pos) and
 * returns the placement status of seq; cells[] gets the cells. */
static int place(struct cs_kv *kv, int32_t seq, int32_t p0, int n, int32_t *cells)
{
    struct cs_batch b;
    OK(cs_batch_init(&b, n, g_err, sizeof g_err));
    for (int i = 0; i < n; i++)
        OK(cs_batch_add(&b, 1000 * seq + p0 + i, p0 + i, seq, false, g_err, sizeof g_err));
    int seq_rc[CS_MAX_SEQ];
    int32_t tmp[64];
    OK(cs_kv_place(kv, &b, cells ? cells : tmp, seq_rc, g_err, sizeof g_err));
    cs_batch_free(&b);
    return seq_rc[seq];
}

/* The host metadata is consistent: n_used counts occupied cells, hi covers them. */
static void check_meta(const struct cs_kv *kv)
{
    uint32_t used = 0;
    int32_t hi = 0;
    for (uint32_t c = 0; c < kv->p.n_ctx; c++) {
        assert_true((kv->pos[c] >= 0) == (kv->seq[c] != 0));
        if (kv->pos[c] >= 0) {
            used++;
            hi = (int32_t)c + 1;
        }
    }
    assert_int_equal(used, kv->n_used);
    assert_true(kv->hi >= hi);
    uint32_t free_all = 0;
    for (uint32_t s = 0; s < kv->p.n_seq_max && kv->p.unified; s++)
        assert_int_equal(cs_kv_n_free(kv, (int32_t)s), kv->p.n_ctx - used);
    (void)free_all;
}

static float *rand_vec(struct tu_rng *r, size_t n)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = tu_rng_normal(r);
    return v;
}

static cl_mem buf(struct cs_cl_dev *d, size_t bytes, const void *host)
{
    cl_mem m = NULL;
    OK(cs_cl_alloc(d, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0), bytes ? bytes : 4,
                   (void *)host, &m, g_err, sizeof g_err));
    return m;
}

/* Stores f32 rows k, v ((NL, n, ROW) each) into cells[0..n) of every layer. */
static void store(struct cs_kv *kv, const int32_t *cells, int n, const float *k, const float *v)
{
    for (uint32_t l = 0; l < NL; l++) {
        struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
        cl_mem bk = buf(d, (size_t)n * ROW * 4, k + (size_t)l * n * ROW);
        cl_mem bv = buf(d, (size_t)n * ROW * 4, v + (size_t)l * n * ROW);
        cl_mem bc = buf(d, (size_t)n * 4, cells);
        struct cs_kv_view view = cs_kv_layer_view(kv, l);
        OK(cs_op_kv_store(d, &view, bk, 0, bv, 0, bc, n, g_err, sizeof g_err));
        OK(cs_cl_finish(d, g_err, sizeof g_err));
        clReleaseMemObject(bk);
        clReleaseMemObject(bv);
        clReleaseMemObject(bc);
    }
}

/* The raw bytes of one cell's K (or V) row of layer l. */
static void read_raw(struct cs_kv *kv, uint32_t l, int32_t cell, bool is_v, void *dst)
{
    uint64_t rb = is_v ? kv->row_bytes_v : kv->row_bytes_k;
    OK(cs_cl_read(cs_kv_layer_device(kv, l), is_v ? kv->v[l] : kv->k[l], (size_t)cell * rb, rb,
                  dst, g_err, sizeof g_err));
}

static void read_row(struct cs_kv *kv, uint32_t l, int32_t cell, bool is_v, float *dst)
{
    unsigned char raw[ROW * 4];
    read_raw(kv, l, cell, is_v, raw);
    assert_int_equal(cs_dequantize_row(is_v ? kv->p.type_v : kv->p.type_k, raw, dst, ROW), 0);
}

/* Attention of layer l for n query tokens (q: (n, NH, HD)) after a sync. */
static void attend(struct cs_kv *kv, uint32_t l, const float *q, int n, const int32_t *tpos,
                   const int32_t *tseq, float *out)
{
    OK(cs_kv_sync(kv, true, g_err, sizeof g_err));
    struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
    struct cs_kv_view view = cs_kv_layer_view(kv, l);
    size_t qn = (size_t)n * NH * HD;
    cl_mem bq = buf(d, qn * 4, q), bo = buf(d, qn * 4, NULL);
    cl_mem bp = buf(d, (size_t)n * 4, tpos), bs = buf(d, (size_t)n * 4, tseq);
    OK(cs_op_attention(d, &view, kv->hi, bq, 0, bo, 0, bp, bs, n, NH, true, 0.125f, g_err,
                       sizeof g_err));
    OK(cs_cl_read(d, bo, 0, qn * 4, out, g_err, sizeof g_err));
    clReleaseMemObject(bq);
    clReleaseMemObject(bo);
    clReleaseMemObject(bp);
    clReleaseMemObject(bs);
}

/* ---- host metadata ---- */

static void test_place_unified(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kv_make(16, 3, true, CS_TYPE_F16, CS_TYPE_F16, false);
    int32_t c0[8], c1[8];
    assert_int_equal(place(kv, 0, 0, 4, c0), CLSPEC_OK);
    assert_int_equal(place(kv, 1, 0, 3, c1), CLSPEC_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(kv->pos[c0[i]], i);
        assert_int_equal(kv->seq[c0[i]], 1);
        assert_int_equal(kv->tok[c0[i]], i);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kv->pos[c1[i]], i);
        assert_int_equal(kv->seq[c1[i]], 2);
        for (int j = 0; j < 4; j++)
            assert_int_not_equal(c1[i], c0[j]);
    }
    assert_int_equal(kv->n_used, 7);
    assert_int_equal(cs_kv_n_free(kv, 2), 9);
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 4);
    assert_int_equal(cs_kv_seq_pos_max(kv, 1), 2);
    assert_int_equal(cs_kv_seq_pos_max(kv, 2), -1);
    /* a row at a (seq, pos) the sequence holds alone reuses its cell */
    int32_t again[1];
    assert_int_equal(place(kv, 0, 3, 1, again), CLSPEC_OK);
    assert_int_equal(again[0], c0[3]);
    assert_int_equal(kv->n_used, 7);
    /* one shared with another sequence is left to it: a new cell */
    OK(cs_kv_seq_cp(kv, 0, 2, 0, -1, g_err, sizeof g_err));
    assert_int_equal(kv->n_used, 7);
    assert_int_equal(kv->seq[c0[3]], 5);
    assert_int_equal(place(kv, 2, 3, 1, again), CLSPEC_OK);
    assert_int_not_equal(again[0], c0[3]);
    assert_int_equal(kv->seq[c0[3]], 1);
    assert_int_equal(kv->seq[again[0]], 4);
    assert_int_equal(kv->n_used, 8);
    assert_int_equal(cs_kv_seq_n_cells(kv, 2), 4);
    check_meta(kv);
    cs_kv_clear(kv);
    assert_int_equal(kv->n_used, 0);
    assert_int_equal(kv->hi, 0);
    assert_int_equal(cs_kv_n_free(kv, 0), 16);
    check_meta(kv);
    cs_kv_free(kv);
}

/* The visiting order after each sync equals one built from scratch:
 * occupied cells below hi by (position, cell), then the free ones, then
 * identity; over random steps of interleaved sequences (places, tail
 * removals, shifts), the order is kept incrementally (no full sort). */
static void test_order_incremental(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kv_make(96, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    struct tu_rng r;
    tu_rng_seed(&r, 5);
    int32_t next[4] = {0}, ref[96];
    for (int it = 0; it < 300; it++) {
        int32_t s = (int32_t)(tu_rng_u64(&r) % 4), op = (int32_t)(tu_rng_u64(&r) % 4);
        if (op <= 1 && next[s] < 40) { /* a step's rows */
            int n = 1 + (int)(tu_rng_u64(&r) % 4);
            if (place(kv, s, next[s], n, NULL) == CLSPEC_OK)
                next[s] += n;
        } else if (op == 2 && next[s] > 0) { /* a rejected draft's tail */
            int32_t p0 = next[s] - 1 - (int32_t)(tu_rng_u64(&r) % (uint64_t)next[s]);
            OK(cs_kv_seq_rm(kv, s, p0, -1, g_err, sizeof g_err));
            next[s] = p0;
        } else if (op == 3 && next[s] > 4) { /* a context shift: drop 2 after 1, move the rest back */
            OK(cs_kv_seq_rm(kv, s, 1, 3, g_err, sizeof g_err));
            OK(cs_kv_seq_add(kv, s, 3, -1, -2, g_err, sizeof g_err));
            next[s] -= 2;
        }
        OK(cs_kv_sync(kv, true, g_err, sizeof g_err));
        int32_t n = 0;
        for (int32_t pos = 0; pos < 64; pos++) /* by (position, cell) */
            for (int32_t c = 0; c < kv->hi; c++)
                if (kv->pos[c] == pos)
                    ref[n++] = c;
        for (int32_t c = 0; c < kv->hi; c++)
            if (kv->pos[c] < 0)
                ref[n++] = c;
        assert_int_equal(n, kv->hi);
        assert_memory_equal(kv->order, ref, (size_t)n * sizeof *ref);
        for (int32_t c = kv->hi; c < kv->order_hi; c++)
            assert_int_equal(kv->order[c], c);
    }
    check_meta(kv);
    cs_kv_free(kv);
}

static void test_place_partitioned(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kv_make(16, 4, false, CS_TYPE_F32, CS_TYPE_Q8_0, false);
    int32_t c[8];
    for (int s = 0; s < 4; s++) {
        assert_int_equal(place(kv, s, 0, 3, c), CLSPEC_OK);
        for (int i = 0; i < 3; i++)
            assert_true(c[i] >= 4 * s && c[i] < 4 * s + 4);
        assert_int_equal(cs_kv_n_free(kv, s), 1);
    }
    /* a batch where sequence 1 does not fit its partition: 1 and 3 refused,
     * 0 and 2 placed, the refused ones unchanged */
    struct cs_batch b;
    OK(cs_batch_init(&b, 8, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 7, 3, 0, false, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 7, 3, 1, false, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 7, 4, 1, false, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 7, 3, 2, false, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 7, 3, 3, false, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 7, 4, 3, false, g_err, sizeof g_err));
    int rc[CS_MAX_SEQ];
    int32_t cells[8];
    OK(cs_kv_place(kv, &b, cells, rc, g_err, sizeof g_err));
    assert_int_equal(rc[0], CLSPEC_OK);
    assert_int_equal(rc[1], CLSPEC_E_KV_FULL);
    assert_int_equal(rc[2], CLSPEC_OK);
    assert_int_equal(rc[3], CLSPEC_E_KV_FULL);
    assert_int_equal(rc[5], CLSPEC_OK);
    assert_int_equal(cells[0], 3);
    assert_int_equal(cells[1], -1);
    assert_int_equal(cells[2], -1);
    assert_int_equal(cells[3], 11);
    assert_int_equal(cells[4], -1);
    assert_int_equal(cells[5], -1);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 3);
    assert_int_equal(cs_kv_n_free(kv, 1), 1);
    assert_int_equal(cs_kv_n_free(kv, 0), 0);
    assert_int_equal(kv->n_used, 14);
    check_meta(kv);
    /* partitioned seq_cp copies into dst's partition: 1 gets 0's 4 cells
     * after its own are removed; 0's cells stay its own */
    OK(cs_kv_seq_cp(kv, 0, 1, 0, -1, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 4);
    for (int32_t cc = 4; cc < 8; cc++) {
        assert_int_equal(kv->seq[cc], 2);
        assert_int_equal(kv->pos[cc], cc - 4);
        assert_int_equal(kv->tok[cc], cc - 4 == 3 ? 7 : cc - 4);
    }
    /* 3 cells of seq 2 cannot go into 3's partition with... they can (3 own cells freed) */
    OK(cs_kv_seq_cp(kv, 2, 3, 0, -1, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 3), 4);
    /* seq 2 (4 cells) into seq 0's partition restricted to positions >= 10: nothing to copy */
    OK(cs_kv_seq_cp(kv, 2, 0, 10, -1, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 4);
    check_meta(kv);
    cs_batch_free(&b);
    cs_kv_free(kv);
}

static void test_full_unified(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kv_make(12, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    assert_int_equal(place(kv, 0, 0, 8, NULL), CLSPEC_OK);
    /* 4 free: seq 1 takes 2, seq 2 asks for 3 of the remaining 2: refused, seq 3 gets 2 */
    struct cs_batch b;
    OK(cs_batch_init(&b, 8, g_err, sizeof g_err));
    for (int i = 0; i < 2; i++)
        OK(cs_batch_add(&b, 1, i, 1, false, g_err, sizeof g_err));
    for (int i = 0; i < 3; i++)
        OK(cs_batch_add(&b, 2, i, 2, true, g_err, sizeof g_err));
    for (int i = 0; i < 2; i++)
        OK(cs_batch_add(&b, 3, i, 3, false, g_err, sizeof g_err));
    int rc[CS_MAX_SEQ];
    int32_t cells[8];
    OK(cs_kv_place(kv, &b, cells, rc, g_err, sizeof g_err));
    assert_int_equal(rc[1], CLSPEC_OK);
    assert_int_equal(rc[2], CLSPEC_E_KV_FULL);
    assert_int_equal(rc[3], CLSPEC_OK);
    assert_int_equal(cs_kv_seq_n_cells(kv, 2), 0);
    assert_int_equal(cs_kv_seq_n_cells(kv, 3), 2);
    for (int i = 2; i < 5; i++)
        assert_int_equal(cells[i], -1);
    assert_int_equal(kv->n_used, 12);
    assert_int_equal(cs_kv_n_free(kv, 2), 0);
    /* the others carry on: seq 1 freed, seq 2 now fits */
    OK(cs_kv_seq_rm(kv, 1, 0, -1, g_err, sizeof g_err));
    assert_int_equal(place(kv, 2, 0, 2, NULL), CLSPEC_OK);
    /* invalid batches change nothing */
    cs_batch_clear(&b);
    OK(cs_batch_add(&b, 1, 0, 5, false, g_err, sizeof g_err)); /* seq 5 >= n_seq_max 4 */
    uint32_t used = kv->n_used;
    assert_int_equal(cs_kv_place(kv, &b, cells, rc, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_non_null(strstr(g_err, "sequence 5"));
    cs_batch_clear(&b);
    OK(cs_batch_add(&b, 1, 9, 3, false, g_err, sizeof g_err));
    OK(cs_batch_add(&b, 1, 9, 3, false, g_err, sizeof g_err));
    assert_int_equal(cs_kv_place(kv, &b, cells, rc, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(kv->n_used, used);
    check_meta(kv);
    cs_batch_free(&b);
    cs_kv_free(kv);
}

static void test_seq_ops_meta(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kv_make(32, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    int32_t c0[10];
    assert_int_equal(place(kv, 0, 0, 10, c0), CLSPEC_OK);
    OK(cs_kv_seq_cp(kv, 0, 1, 0, 5, g_err, sizeof g_err)); /* 1 shares positions 0..4 */
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 5);
    assert_int_equal(kv->n_used, 10);
    assert_int_equal(place(kv, 1, 5, 3, NULL), CLSPEC_OK);
    assert_int_equal(kv->n_used, 13);
    /* seq_rm of a shared range only drops the bit */
    OK(cs_kv_seq_rm(kv, 0, 3, 7, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 6);
    assert_int_equal(kv->n_used, 11); /* positions 5, 6 of seq 0 freed; 3, 4 kept for seq 1 */
    assert_int_equal(kv->seq[c0[3]], 2);
    assert_int_equal(kv->pos[c0[5]], -1);
    check_meta(kv);
    /* seq_add: seq 1's positions >= 2 move by +10: cell 2 (shared with 0)
     * is unshared into the first free cell (5), 3, 4 and 10..12 shift in place */
    OK(cs_kv_seq_add(kv, 1, 2, -1, 10, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_pos_max(kv, 1), 17);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 8);
    assert_int_equal(kv->pos[c0[3]], 13); /* held by 1 alone: shifted in place */
    assert_int_equal(kv->pos[5], 12);
    assert_int_equal(kv->seq[5], 2);
    assert_int_equal(kv->seq[c0[2]], 1);
    /* seq 0's positions < 8 move by -2: 0 and 1 (shared with 1) fall off,
     * only the bit goes; 2 (now 0's alone) -> 0, 7 -> 5; 8, 9 stay */
    OK(cs_kv_seq_add(kv, 0, 0, 8, -2, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 4);
    assert_int_equal(kv->pos[c0[2]], 0);
    assert_int_equal(kv->pos[c0[7]], 5);
    assert_int_equal(kv->seq[c0[0]], 2);
    assert_int_equal(kv->pos[c0[0]], 0);
    assert_int_equal(cs_kv_seq_pos_max(kv, 0), 9);
    check_meta(kv);
    /* seq_keep(1): every other sequence leaves */
    OK(cs_kv_seq_keep(kv, 1, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 0);
    assert_int_equal(kv->n_used, cs_kv_seq_n_cells(kv, 1));
    check_meta(kv);
    /* seq_rm(-1) over a range: all sequences */
    OK(cs_kv_seq_rm(kv, -1, 12, -1, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_pos_max(kv, 1), 1);
    check_meta(kv);
    /* invalid sequence ids */
    assert_int_equal(cs_kv_seq_rm(kv, 4, 0, -1, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_non_null(strstr(g_err, "sequence 4"));
    assert_int_equal(cs_kv_seq_rm(kv, -2, 0, -1, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(cs_kv_seq_cp(kv, 0, 9, 0, -1, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(cs_kv_seq_keep(kv, -1, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(cs_kv_seq_add(kv, 64, 0, -1, 1, g_err, sizeof g_err), CLSPEC_E_RANGE);
    struct cs_kv_ckpt *ck = NULL;
    assert_int_equal(cs_kv_ckpt_save(kv, 7, 0, -1, &ck, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_null(ck);
    cs_kv_free(kv);
}

static void test_prefix_match(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kv_make(32, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    assert_int_equal(place(kv, 0, 0, 6, NULL), CLSPEC_OK); /* tokens 0..5 */
    assert_int_equal(place(kv, 2, 0, 3, NULL), CLSPEC_OK); /* tokens 2000..2002 */
    int32_t toks[8] = {0, 1, 2, 3, 99, 5, 6, 7}, src = 7;
    assert_int_equal(cs_kv_prefix_match(kv, toks, 8, 1, &src), 4);
    assert_int_equal(src, 0);
    assert_int_equal(cs_kv_prefix_match(kv, toks, 3, 1, &src), 3);
    /* dst itself is not a source */
    assert_int_equal(cs_kv_prefix_match(kv, toks, 8, 0, &src), 0);
    assert_int_equal(src, -1);
    int32_t t2[3] = {2000, 2001, 5};
    assert_int_equal(cs_kv_prefix_match(kv, t2, 3, 1, &src), 2);
    assert_int_equal(src, 2);
    /* reuse: 1 shares 0's first 4 cells, then decodes its own */
    OK(cs_kv_seq_cp(kv, 0, 1, 0, 4, g_err, sizeof g_err));
    assert_int_equal(kv->n_used, 9);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 4);
    assert_int_equal(cs_kv_prefix_match(kv, toks, 8, 3, &src), 4);
    cs_kv_free(kv);
}

/* ---- device data ---- */

/* seq_add re-rotates K: each shifted row equals RoPE(delta) of the stored
 * row within the type's requantization error; V and other cells unchanged. */
static void test_seq_add_device(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 41);
    for (size_t ti = 0; ti < CS_ARRAY_LEN(k_types); ti++) {
        uint32_t t = k_types[ti];
        struct cs_kv *kv = kv_make(16, 2, true, t, CS_TYPE_Q4_0, false);
        const int n = 6;
        int32_t cells[8], pos[8];
        assert_int_equal(place(kv, 0, 0, n, cells), CLSPEC_OK);
        float *k = rand_vec(&r, (size_t)NL * n * ROW), *v = rand_vec(&r, (size_t)NL * n * ROW);
        store(kv, cells, n, k, v);
        float before[NL][8][ROW], vb[NL][8][ROW];
        unsigned char vraw[NL][8][ROW * 4];
        for (uint32_t l = 0; l < NL; l++)
            for (int i = 0; i < n; i++) {
                read_row(kv, l, cells[i], false, before[l][i]);
                read_row(kv, l, cells[i], true, vb[l][i]);
                read_raw(kv, l, cells[i], true, vraw[l][i]);
            }
        /* positions 2.. move by +5 */
        OK(cs_kv_seq_add(kv, 0, 2, -1, 5, g_err, sizeof g_err));
        for (int i = 0; i < n; i++)
            pos[i] = kv->pos[cells[i]];
        assert_int_equal(pos[1], 1);
        assert_int_equal(pos[2], 7);
        double emax = 0.0;
        for (uint32_t l = 0; l < NL; l++)
            for (int i = 0; i < n; i++) {
                float got[ROW], want[ROW];
                unsigned char raw[ROW * 4];
                memcpy(want, before[l][i], sizeof want);
                if (i >= 2) {
                    int32_t d = 5;
                    cs_ref_rope(want, &d, 1, NKV, HD, HD, false, 10000.0f, 1.0f);
                }
                read_row(kv, l, cells[i], false, got);
                double amax = 0.0;
                for (int j = 0; j < ROW; j++)
                    amax = fmax(amax, fabs(want[j]));
                for (int j = 0; j < ROW; j++)
                    emax = fmax(emax, fabs(got[j] - want[j]) / amax);
                if (i < 2)
                    for (int j = 0; j < ROW; j++)
                        assert_true(got[j] == want[j]);
                read_raw(kv, l, cells[i], true, raw);
                assert_memory_equal(raw, vraw[l][i], kv->row_bytes_v);
            }
        /* f32: float rounding of the rotation; f16 / bf16 one rounding of
         * the type (2^-11, 2^-8 relative); q8_0 / q4_0 one requantization
         * step (1/127, 1/7 of the block maximum) */
        double bound = t == CS_TYPE_F32    ? 1e-5
                       : t == CS_TYPE_F16  ? 2e-3
                       : t == CS_TYPE_BF16 ? 1e-2
                       : t == CS_TYPE_Q8_0 ? 1.2e-2
                                           : 0.16;
        printf("# seq_add K shift %s: max err %.2e of the row maximum (bound %.1e)\n",
               cs_type_name(t), emax, bound);
        assert_true(emax <= bound);
        /* a shift below position 0 removes the cells */
        OK(cs_kv_seq_add(kv, 0, 0, 2, -1, g_err, sizeof g_err));
        assert_int_equal(kv->pos[cells[0]], -1);
        assert_int_equal(kv->pos[cells[1]], 0);
        assert_int_equal(kv->n_used, 5);
        check_meta(kv);
        free(k);
        free(v);
        cs_kv_free(kv);
    }
}

/* seq_add on cells shared by two sequences: the shifting one gets copies
 * (same V bytes), the other keeps the originals untouched. */
static void test_seq_add_shared(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 42);
    struct cs_kv *kv = kv_make(16, 2, true, CS_TYPE_Q8_0, CS_TYPE_F16, false);
    int32_t cells[4];
    assert_int_equal(place(kv, 0, 0, 4, cells), CLSPEC_OK);
    float *k = rand_vec(&r, (size_t)NL * 4 * ROW), *v = rand_vec(&r, (size_t)NL * 4 * ROW);
    store(kv, cells, 4, k, v);
    unsigned char k0[ROW * 4], v0[ROW * 4], x[ROW * 4];
    read_raw(kv, 3, cells[1], false, k0);
    read_raw(kv, 3, cells[1], true, v0);
    OK(cs_kv_seq_cp(kv, 0, 1, 0, -1, g_err, sizeof g_err));
    OK(cs_kv_seq_add(kv, 1, 0, -1, 3, g_err, sizeof g_err));
    assert_int_equal(kv->n_used, 8);
    assert_int_equal(kv->seq[cells[1]], 1);
    assert_int_equal(kv->pos[cells[1]], 1);
    read_raw(kv, 3, cells[1], false, x);
    assert_memory_equal(x, k0, kv->row_bytes_k);
    int32_t c1 = -1;
    for (uint32_t c = 0; c < 16; c++)
        if (kv->seq[c] == 2 && kv->pos[c] == 4)
            c1 = (int32_t)c;
    assert_true(c1 >= 0);
    read_raw(kv, 3, c1, true, x);
    assert_memory_equal(x, v0, kv->row_bytes_v);
    read_raw(kv, 3, c1, false, x);
    assert_memory_not_equal(x, k0, kv->row_bytes_k);
    check_meta(kv);
    free(k);
    free(v);
    cs_kv_free(kv);
}

/* Checkpoint round trip for every K/V type (and a mixed pair): attention
 * before save, mutate the sequence, restore, attention again: identical. */
static void test_ckpt_roundtrip(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 43);
    for (size_t ti = 0; ti <= CS_ARRAY_LEN(k_types); ti++) {
        uint32_t tk = ti < CS_ARRAY_LEN(k_types) ? k_types[ti] : CS_TYPE_Q4_0;
        uint32_t tv = ti < CS_ARRAY_LEN(k_types) ? k_types[ti] : CS_TYPE_BF16;
        struct cs_kv *kv = kv_make(32, 2, true, tk, tv, false);
        int32_t cells[16];
        const int n = 10;
        assert_int_equal(place(kv, 0, 0, n, cells), CLSPEC_OK);
        assert_int_equal(place(kv, 1, 0, 3, NULL), CLSPEC_OK);
        float *k = rand_vec(&r, (size_t)NL * n * ROW), *v = rand_vec(&r, (size_t)NL * n * ROW);
        store(kv, cells, n, k, v);
        float *q = rand_vec(&r, NH * HD), a[NL][NH * HD], b[NH * HD];
        int32_t tp = 9, ts = 0;
        for (uint32_t l = 0; l < NL; l++)
            attend(kv, l, q, 1, &tp, &ts, a[l]);
        unsigned char raw_k[5][ROW * 4], raw_v[5][ROW * 4];
        for (int i = 0; i < 5; i++) {
            read_raw(kv, 2, cells[5 + i], false, raw_k[i]);
            read_raw(kv, 2, cells[5 + i], true, raw_v[i]);
        }
        struct cs_kv_ckpt *ck = NULL;
        OK(cs_kv_ckpt_save(kv, 0, 5, -1, &ck, g_err, sizeof g_err));
        assert_int_equal(cs_kv_ckpt_bytes(ck), 5ull * NL * (kv->row_bytes_k + kv->row_bytes_v));
        /* mutate: drop 5.., decode other rows at 5..12 */
        OK(cs_kv_seq_rm(kv, 0, 5, -1, g_err, sizeof g_err));
        int32_t c2[8];
        assert_int_equal(place(kv, 0, 5, 8, c2), CLSPEC_OK);
        float *k2 = rand_vec(&r, (size_t)NL * 8 * ROW), *v2 = rand_vec(&r, (size_t)NL * 8 * ROW);
        store(kv, c2, 8, k2, v2);
        attend(kv, 0, q, 1, &tp, &ts, b);
        assert_memory_not_equal(a[0], b, sizeof b);
        uint32_t used = kv->n_used;
        OK(cs_kv_ckpt_restore(kv, ck, g_err, sizeof g_err));
        assert_int_equal(kv->n_used, used - 3);
        assert_int_equal(cs_kv_seq_pos_max(kv, 0), 9);
        assert_int_equal(cs_kv_seq_n_cells(kv, 0), 10);
        for (uint32_t l = 0; l < NL; l++) {
            attend(kv, l, q, 1, &tp, &ts, b);
            assert_memory_equal(a[l], b, sizeof b);
        }
        check_meta(kv);
        /* restoring into a cache whose cells moved: other free cells, the same rows */
        OK(cs_kv_seq_rm(kv, 0, 5, -1, g_err, sizeof g_err));
        assert_int_equal(place(kv, 1, 3, 5, NULL), CLSPEC_OK); /* takes 0's old cells */
        OK(cs_kv_ckpt_restore(kv, ck, g_err, sizeof g_err));
        for (int i = 5; i < n; i++) { /* the rows of positions 5..9 are back, elsewhere */
            int32_t c = -1;
            for (uint32_t cc = 0; cc < kv->p.n_ctx; cc++)
                if (kv->seq[cc] == 1 && kv->pos[cc] == i)
                    c = (int32_t)cc;
            assert_true(c >= 10);
            assert_int_equal(kv->tok[c], i);
            unsigned char got[ROW * 4];
            read_raw(kv, 2, c, true, got);
            assert_memory_equal(got, raw_v[i - 5], kv->row_bytes_v);
            read_raw(kv, 2, c, false, got);
            assert_memory_equal(got, raw_k[i - 5], kv->row_bytes_k);
        }
        check_meta(kv);
        cs_kv_ckpt_free(ck);
        free(k);
        free(v);
        free(k2);
        free(v2);
        free(q);
        cs_kv_free(kv);
    }
}

/* seq_cp in a partitioned cache copies the K/V rows on the device. */
static void test_seq_cp_rows(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 44);
    struct cs_kv *kv = kv_make(16, 2, false, CS_TYPE_BF16, CS_TYPE_Q8_0, false);
    int32_t cells[4];
    assert_int_equal(place(kv, 0, 0, 4, cells), CLSPEC_OK);
    float *k = rand_vec(&r, (size_t)NL * 4 * ROW), *v = rand_vec(&r, (size_t)NL * 4 * ROW);
    store(kv, cells, 4, k, v);
    OK(cs_kv_seq_cp(kv, 0, 1, 1, 3, g_err, sizeof g_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 2);
    for (uint32_t c = 8; c < 10; c++) {
        assert_int_equal(kv->seq[c], 2);
        int32_t src = kv->pos[c]; /* cell i of seq 0 holds position i */
        for (uint32_t l = 0; l < NL; l++)
            for (int isv = 0; isv < 2; isv++) {
                unsigned char a[ROW * 4], b[ROW * 4];
                read_raw(kv, l, (int32_t)c, isv, a);
                read_raw(kv, l, src, isv, b);
                assert_memory_equal(a, b, isv ? kv->row_bytes_v : kv->row_bytes_k);
            }
    }
    /* seq 1's view of its copies equals seq 0's view of the originals */
    float *q = rand_vec(&r, NH * HD), a[NH * HD], b[NH * HD];
    int32_t tp = 2, s0 = 0, s1 = 1;
    attend(kv, 1, q, 1, &tp, &s1, a);
    OK(cs_kv_seq_rm(kv, 0, 3, -1, g_err, sizeof g_err));
    OK(cs_kv_seq_rm(kv, 0, 0, 1, g_err, sizeof g_err));
    attend(kv, 1, q, 1, &tp, &s0, b);
    assert_memory_equal(a, b, sizeof a);
    /* more than the partition holds: refused, nothing changed */
    assert_int_equal(place(kv, 0, 10, 6, NULL), CLSPEC_OK);
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 8);
    OK(cs_kv_seq_rm(kv, 1, 0, -1, g_err, sizeof g_err));
    assert_int_equal(place(kv, 1, 0, 1, NULL), CLSPEC_OK);
    OK(cs_kv_seq_rm(kv, 0, 0, 12, g_err, sizeof g_err)); /* 0 keeps 12..15 */
    assert_int_equal(place(kv, 1, 1, 5, NULL), CLSPEC_OK); /* 1: 6 of 8 cells */
    assert_int_equal(cs_kv_seq_cp(kv, 0, 1, 12, -1, g_err, sizeof g_err), CLSPEC_E_KV_FULL);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 6);
    check_meta(kv);
    free(q);
    free(k);
    free(v);
    cs_kv_free(kv);
}

static void test_errors(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_hparams hp = hp_small();
    struct cs_cl_dev *ld[NL];
    struct cs_cl_dev *d1 = g_dev[1] ? g_dev[1] : g_dev[0];
    for (int l = 0; l < NL; l++)
        ld[l] = l >= 2 ? d1 : g_dev[0];
    struct cs_kv *kv = NULL;
    /* 1000 cells x 512 bytes (f32, 2 x 64) = 512000 bytes > a 100000-byte limit */
    struct cs_kv_params p = {1000, CS_TYPE_F32, CS_TYPE_Q4_0, 1, true};
    cl_ulong saved = d1->info.max_alloc;
    if (g_dev[1])
        d1->info.max_alloc = 100000;
    else
        for (int l = 0; l < NL; l++)
            ld[l] = g_dev[0];
    if (g_dev[1]) {
        assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_RANGE);
        printf("# %s\n", g_err);
        assert_non_null(strstr(g_err, "layer 2"));
        assert_non_null(strstr(g_err, "K buffer"));
        assert_non_null(strstr(g_err, d1->info.name));
        char idx[32];
        snprintf(idx, sizeof idx, "device %u", d1->info.index);
        assert_non_null(strstr(g_err, idx));
        assert_null(kv);
        /* q8_0 K (1000 x 136 bytes) and f16 V (1000 x 256) fit 300000; V not 200000 */
        d1->info.max_alloc = 300000;
        p.type_k = CS_TYPE_Q8_0;
        p.type_v = CS_TYPE_F16;
        OK(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err));
        cs_kv_free(kv);
        kv = NULL;
        d1->info.max_alloc = 200000;
        assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_RANGE);
        assert_non_null(strstr(g_err, "V buffer"));
        d1->info.max_alloc = saved;
    } else {
        cl_ulong s0 = g_dev[0]->info.max_alloc;
        g_dev[0]->info.max_alloc = 100000;
        assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_RANGE);
        assert_non_null(strstr(g_err, "layer 0"));
        g_dev[0]->info.max_alloc = s0;
    }
    /* types and parameters */
    p = (struct cs_kv_params){64, CS_TYPE_Q4_K, CS_TYPE_F16, 1, true};
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_UNSUPPORTED);
    assert_non_null(strstr(g_err, "type_k"));
    p = (struct cs_kv_params){64, CS_TYPE_F16, CS_TYPE_F16, 65, true};
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_INVAL);
    p = (struct cs_kv_params){3, CS_TYPE_F16, CS_TYPE_F16, 4, false};
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_INVAL);
    /* quantized blocks of 32 run along the cell row (n_head_kv * head_dim),
     * padded to whole blocks: 1 x 48 takes 2 blocks; 2 x 48 (96) and
     * stories260K's 4 x 8 are whole blocks; head_dim 6 is refused */
    hp.head_dim = 48;
    hp.n_head_kv = 1;
    p = (struct cs_kv_params){64, CS_TYPE_F16, CS_TYPE_Q8_0, 1, true};
    OK(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err));
    assert_int_equal(kv->row_bytes_v, 2 * 34);
    assert_int_equal(kv->row_bytes_k, 48 * 2);
    cs_kv_free(kv);
    kv = NULL;
    hp.head_dim = 6;
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err), CLSPEC_E_UNSUPPORTED);
    assert_non_null(strstr(g_err, "type_k"));
    assert_null(kv);
    hp.head_dim = 48;
    hp.n_head_kv = 2;
    OK(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err));
    cs_kv_free(kv);
    kv = NULL;
    hp.head_dim = 8;
    hp.n_head_kv = 4;
    p = (struct cs_kv_params){64, CS_TYPE_Q4_0, CS_TYPE_Q8_0, 1, true};
    OK(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err));
    cs_kv_free(kv);
}

/* Layers 0-1 on the first device, 2-3 on the second: each device has its
 * own metadata mirror (equal to the host's after a sync), K/V rows live on
 * their layer's device, attention there matches the reference, and seq_add
 * and checkpoints act on both. */
static void test_two_devices(void **state)
{
    (void)state;
    NEED_DEV();
    if (!g_dev[1])
        skip();
    struct tu_rng r;
    tu_rng_seed(&r, 45);
    struct cs_kv *kv = kv_make(24, 2, true, CS_TYPE_F16, CS_TYPE_Q8_0, true);
    assert_int_equal(kv->n_dev, 2);
    assert_ptr_equal(cs_kv_layer_device(kv, 1), g_dev[0]);
    assert_ptr_equal(cs_kv_layer_device(kv, 2), g_dev[1]);
    struct cs_kv_view v0 = cs_kv_layer_view(kv, 0), v3 = cs_kv_layer_view(kv, 3);
    assert_ptr_not_equal(v0.cell_pos, v3.cell_pos);
    const int n = 8;
    int32_t cells[8];
    assert_int_equal(place(kv, 0, 0, n, cells), CLSPEC_OK);
    assert_int_equal(place(kv, 1, 0, 3, NULL), CLSPEC_OK);
    OK(cs_kv_seq_add(kv, 1, 0, -1, 2, g_err, sizeof g_err));
    float *k = rand_vec(&r, (size_t)NL * n * ROW), *v = rand_vec(&r, (size_t)NL * n * ROW);
    store(kv, cells, n, k, v);
    OK(cs_kv_sync(kv, true, g_err, sizeof g_err));
    for (int i = 0; i < 2; i++) {
        int32_t pos[24];
        uint64_t seq[24];
        OK(cs_cl_read(kv->devs[i].dev, kv->devs[i].cell_pos, 0, sizeof pos, pos, g_err,
                      sizeof g_err));
        OK(cs_cl_read(kv->devs[i].dev, kv->devs[i].cell_seq, 0, sizeof seq, seq, g_err,
                      sizeof g_err));
        assert_memory_equal(pos, kv->pos, sizeof pos);
        assert_memory_equal(seq, kv->seq, sizeof seq);
    }
    /* attention per layer against the reference over the rows read back */
    float *q = rand_vec(&r, NH * HD), out[NH * HD], ref[NH * HD];
    int32_t tp = 7, ts = 0;
    for (uint32_t l = 0; l < NL; l++) {
        float *kr = calloc(24 * ROW, sizeof *kr), *vr = calloc(24 * ROW, sizeof *vr);
        assert_non_null(kr);
        assert_non_null(vr);
        for (int c = 0; c < kv->hi; c++) {
            read_row(kv, l, c, false, kr + (size_t)c * ROW);
            read_row(kv, l, c, true, vr + (size_t)c * ROW);
        }
        attend(kv, l, q, 1, &tp, &ts, out);
        cs_ref_attention(q, kr, vr, kv->pos, kv->seq, kv->hi, &tp, &ts, 1, NH, NKV, HD, true,
                         0.125f, ref);
        for (int j = 0; j < NH * HD; j++)
            assert_true(fabsf(out[j] - ref[j]) <= 1e-4f);
        free(kr);
        free(vr);
    }
    /* seq_add shifts K on both devices; a checkpoint restores both */
    struct cs_kv_ckpt *ck = NULL;
    OK(cs_kv_ckpt_save(kv, 0, 0, -1, &ck, g_err, sizeof g_err));
    float before[ROW], after[ROW];
    read_row(kv, 3, cells[4], false, before);
    OK(cs_kv_seq_add(kv, 0, 4, -1, 3, g_err, sizeof g_err));
    read_row(kv, 3, cells[4], false, after);
    int32_t d = 3;
    cs_ref_rope(before, &d, 1, NKV, HD, HD, false, 10000.0f, 1.0f);
    for (int j = 0; j < ROW; j++)
        assert_true(fabsf(after[j] - before[j]) <= 2e-2f);
    OK(cs_kv_ckpt_restore(kv, ck, g_err, sizeof g_err));
    tp = 7;
    for (uint32_t l = 0; l < NL; l += 3) {
        float again[NH * HD];
        attend(kv, l, q, 1, &tp, &ts, again);
        if (l == 3)
            assert_memory_equal(again, out, sizeof out);
    }
    cs_kv_ckpt_free(ck);
    check_meta(kv);
    free(q);
    free(k);
    free(v);
    cs_kv_free(kv);
}

/* KV bytes per token per type (printed for the report) and the q8_0 / f16 ratio. */
static void test_bytes_per_token(void **state)
{
    (void)state;
    NEED_DEV();
    uint64_t f16_small = 0, q8_small = 0;
    for (size_t ti = 0; ti < CS_ARRAY_LEN(k_types); ti++) {
        struct cs_kv *kv = kv_make(8, 1, true, k_types[ti], k_types[ti], false);
        uint64_t b = cs_kv_bytes_per_token(kv);
        /* 1.1B shape: 22 layers, 4 kv heads x 64 (arithmetic of the same rows) */
        uint64_t rb = 0;
        assert_true(cs_row_bytes(k_types[ti], 4 * 64, &rb));
        printf("# kv bytes/token %s: %llu (4 layers, 2 x 64), %llu (22 layers, 4 x 64)\n",
               cs_type_name(k_types[ti]), (unsigned long long)b, (unsigned long long)(2 * 22 * rb));
        if (k_types[ti] == CS_TYPE_F16)
            f16_small = b;
        if (k_types[ti] == CS_TYPE_Q8_0)
            q8_small = b;
        assert_int_equal(b, (kv->row_bytes_k + kv->row_bytes_v) * NL);
        cs_kv_free(kv);
    }
    double ratio = (double)q8_small / (double)f16_small;
    printf("# kv q8_0 / f16 bytes: %.4f\n", ratio);
    assert_true(ratio <= 0.55);
    struct cs_kv *kv = kv_make(8, 1, true, CS_TYPE_Q8_0, CS_TYPE_F32, false);
    assert_int_equal(cs_kv_bytes_per_token(kv), (uint64_t)NL * (136 + 512));
    cs_kv_free(kv);
}

/* Cell rows that are not whole blocks (the distilled drafter: 2 kv heads x 8
 * = 16 values): q8_0 / q4_0 rows are padded with 0 to one block (34 / 18
 * bytes); kv_store writes the reference bytes (cs_kv_quantize_row, within one
 * quantization step) and zero padding, seq_cp and a checkpoint round trip
 * copy whole padded rows exactly, seq_add re-rotates the valid values and
 * keeps the padding 0. */
static void test_padded_rows(void **state)
{
    (void)state;
    NEED_DEV();
    enum { PKV = 2, PHD = 8, PROW = PKV * PHD, PN = 4 };
    static const uint32_t pairs[][2] = {{CS_TYPE_Q8_0, CS_TYPE_Q4_0}, {CS_TYPE_Q4_0, CS_TYPE_Q8_0}};
    struct tu_rng r;
    tu_rng_seed(&r, 61);
    for (size_t pi = 0; pi < CS_ARRAY_LEN(pairs); pi++) {
        struct cs_hparams hp = hp_small();
        hp.n_head_kv = PKV;
        hp.head_dim = PHD;
        hp.n_embd = NH * PHD;
        hp.n_rot = PHD;
        struct cs_kv_params p = {16, pairs[pi][0], pairs[pi][1], 2, true};
        struct cs_cl_dev *ld[NL] = {g_dev[0], g_dev[0], g_dev[0], g_dev[0]};
        struct cs_kv *kv = NULL;
        OK(cs_kv_new(&hp, &p, ld, &kv, g_err, sizeof g_err));
        uint64_t bk = pairs[pi][0] == CS_TYPE_Q8_0 ? 34 : 18, bv = pairs[pi][1] == CS_TYPE_Q8_0 ? 34 : 18;
        assert_int_equal(kv->row_bytes_k, bk);
        assert_int_equal(kv->row_bytes_v, bv);
        assert_int_equal(cs_kv_bytes_per_token(kv), (uint64_t)NL * (bk + bv));
        int32_t cells[PN];
        assert_int_equal(place(kv, 0, 0, PN, cells), CLSPEC_OK);
        float *k = rand_vec(&r, (size_t)NL * PN * PROW), *v = rand_vec(&r, (size_t)NL * PN * PROW);
        for (uint32_t l = 0; l < NL; l++) {
            struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
            cl_mem mk = buf(d, (size_t)PN * PROW * 4, k + (size_t)l * PN * PROW);
            cl_mem mv = buf(d, (size_t)PN * PROW * 4, v + (size_t)l * PN * PROW);
            cl_mem mc = buf(d, sizeof cells, cells);
            struct cs_kv_view view = cs_kv_layer_view(kv, l);
            OK(cs_op_kv_store(d, &view, mk, 0, mv, 0, mc, PN, g_err, sizeof g_err));
            OK(cs_cl_finish(d, g_err, sizeof g_err));
            clReleaseMemObject(mk);
            clReleaseMemObject(mv);
            clReleaseMemObject(mc);
        }
        /* the rows: reference values within one step, padding 0 */
        unsigned char raw[NL][PN][2][34];
        for (uint32_t l = 0; l < NL; l++)
            for (int i = 0; i < PN; i++)
                for (int isv = 0; isv < 2; isv++) {
                    uint32_t t = isv ? pairs[pi][1] : pairs[pi][0];
                    const float *src = (isv ? v : k) + ((size_t)l * PN + i) * PROW;
                    unsigned char want[34];
                    float a[32], b[PROW];
                    read_raw(kv, l, cells[i], isv, raw[l][i][isv]);
                    assert_int_equal(cs_kv_quantize_row(t, src, want, PROW), 0);
                    assert_int_equal(cs_dequantize_row(t, raw[l][i][isv], a, 32), 0);
                    assert_int_equal(cs_kv_dequantize_row(t, want, b, PROW), 0);
                    float amax = 0.0f;
                    for (int j = 0; j < PROW; j++)
                        amax = fmaxf(amax, fabsf(b[j]));
                    for (int j = 0; j < PROW; j++)
                        assert_true(fabsf(a[j] - b[j]) <= amax / (t == CS_TYPE_Q8_0 ? 127.0f : 7.0f) * 1.01f + 1e-6f);
                    for (int j = PROW; j < 32; j++)
                        assert_true(a[j] == 0.0f);
                }
        /* seq_cp: whole padded rows */
        OK(cs_kv_seq_cp(kv, 0, 1, 0, -1, g_err, sizeof g_err));
        for (uint32_t l = 0; l < NL; l++)
            for (int i = 0; i < PN; i++)
                for (int isv = 0; isv < 2; isv++) {
                    unsigned char a[34];
                    read_raw(kv, l, cells[i], isv, a);
                    assert_memory_equal(a, raw[l][i][isv], isv ? bv : bk);
                }
        OK(cs_kv_seq_rm(kv, 1, 0, -1, g_err, sizeof g_err));
        /* checkpoint of positions 1..3, removed, restored: the same bytes by position */
        struct cs_kv_ckpt *ck = NULL;
        OK(cs_kv_ckpt_save(kv, 0, 1, PN, &ck, g_err, sizeof g_err));
        assert_int_equal(cs_kv_ckpt_bytes(ck), (uint64_t)(PN - 1) * NL * (bk + bv));
        OK(cs_kv_seq_rm(kv, 0, 1, -1, g_err, sizeof g_err));
        OK(cs_kv_ckpt_restore(kv, ck, g_err, sizeof g_err));
        cs_kv_ckpt_free(ck);
        int found = 0;
        for (uint32_t c = 0; c < kv->p.n_ctx; c++) {
            if (!(kv->seq[c] & 1) || kv->pos[c] < 0)
                continue;
            found++;
            for (uint32_t l = 0; l < NL; l++)
                for (int isv = 0; isv < 2; isv++) {
                    unsigned char a[34];
                    read_raw(kv, l, (int32_t)c, isv, a);
                    assert_memory_equal(a, raw[l][kv->pos[c]][isv], isv ? bv : bk);
                }
        }
        assert_int_equal(found, PN);
        /* seq_add: K re-rotated (the valid values), padding still 0, V untouched */
        OK(cs_kv_seq_add(kv, 0, 0, -1, 3, g_err, sizeof g_err));
        for (uint32_t c = 0; c < kv->p.n_ctx; c++) {
            if (!(kv->seq[c] & 1) || kv->pos[c] < 0)
                continue;
            int i = kv->pos[c] - 3;
            for (uint32_t l = 0; l < NL; l++) {
                unsigned char a[34];
                float x[32], before[PROW];
                read_raw(kv, l, (int32_t)c, true, a);
                assert_memory_equal(a, raw[l][i][1], bv);
                read_raw(kv, l, (int32_t)c, false, a);
                assert_int_equal(cs_dequantize_row(pairs[pi][0], a, x, 32), 0);
                for (int j = PROW; j < 32; j++)
                    assert_true(x[j] == 0.0f);
                assert_int_equal(cs_kv_dequantize_row(pairs[pi][0], raw[l][i][0], before, PROW), 0);
                int32_t dd = 3;
                cs_ref_rope(before, &dd, 1, PKV, PHD, PHD, false, 10000.0f, 1.0f);
                for (int j = 0; j < PROW; j++)
                    assert_true(fabsf(x[j] - before[j]) <= (pairs[pi][0] == CS_TYPE_Q8_0 ? 0.05f : 0.6f));
            }
        }
        free(k);
        free(v);
        cs_kv_free(kv);
    }
}

static int setup(void **state)
{
    (void)state;
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0;
    if (cs_cl_list(&list, &n, g_err, sizeof g_err) != CLSPEC_OK || n == 0) {
        free(list);
        return 0; /* no device: every test skips */
    }
    /* the first device, and a second one of the same platform when there is one */
    size_t idx[2] = {0, SIZE_MAX};
    for (size_t i = 1; i < n && idx[1] == SIZE_MAX; i++)
        if (list[i].platform == list[0].platform)
            idx[1] = i;
    for (int i = 0; i < 2; i++) {
        if (idx[i] == SIZE_MAX)
            continue;
        if (cs_cl_dev_open(&list[idx[i]], &g_dev[i], g_err, sizeof g_err) != CLSPEC_OK) {
            fprintf(stderr, "# %s\n", g_err);
            g_dev[i] = NULL;
        }
    }
    if (g_dev[0])
        printf("# devices: %s%s\n", g_dev[0]->info.name, g_dev[1] ? " x 2" : "");
    free(list);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        if (g_dev[i])
            cs_cl_dev_close(g_dev[i]);
    return 0;
}

int main(void)
{
    setenv("POCL_DEVICES", "pthread pthread", 1); /* before the first OpenCL call */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_place_unified),
        cmocka_unit_test(test_order_incremental),
        cmocka_unit_test(test_place_partitioned),
        cmocka_unit_test(test_full_unified),
        cmocka_unit_test(test_seq_ops_meta),
        cmocka_unit_test(test_prefix_match),
        cmocka_unit_test(test_seq_add_device),
        cmocka_unit_test(test_seq_add_shared),
        cmocka_unit_test(test_ckpt_roundtrip),
        cmocka_unit_test(test_seq_cp_rows),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_two_devices),
        cmocka_unit_test(test_bytes_per_token),
        cmocka_unit_test(test_padded_rows),
    };
    return cmocka_run_group_tests_name("kv", tests, setup, teardown);
}
