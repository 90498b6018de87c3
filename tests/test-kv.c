/* test-kv.c: the KV cache's host metadata (src/kv/kv.h): placement (unified
 * and partitioned, all-or-nothing per sequence), the visiting order, the
 * sequence operations on the metadata, prefix matching, errors and
 * accounting. The device rows (seq_add's K re-rotation, seq_cp's copies,
 * checkpoints, two devices, padded rows): tests/test-kv-data.c. Small shapes
 * and the harness: tests/kvutil.h. */
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
#include "kvutil.h"
#include "testutil.h"

/* ---- host metadata ---- */

static void test_place_unified(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kvu_make(16, 3, true, CS_TYPE_F16, CS_TYPE_F16, false);
    int32_t c0[8], c1[8];
    assert_int_equal(kvu_place(kv, 0, 0, 4, c0), CLSPEC_OK);
    assert_int_equal(kvu_place(kv, 1, 0, 3, c1), CLSPEC_OK);
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
    assert_int_equal(kvu_place(kv, 0, 3, 1, again), CLSPEC_OK);
    assert_int_equal(again[0], c0[3]);
    assert_int_equal(kv->n_used, 7);
    /* one shared with another sequence is left to it: a new cell */
    OK(cs_kv_seq_cp(kv, 0, 2, 0, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(kv->n_used, 7);
    assert_int_equal(kv->seq[c0[3]], 5);
    assert_int_equal(kvu_place(kv, 2, 3, 1, again), CLSPEC_OK);
    assert_int_not_equal(again[0], c0[3]);
    assert_int_equal(kv->seq[c0[3]], 1);
    assert_int_equal(kv->seq[again[0]], 4);
    assert_int_equal(kv->n_used, 8);
    assert_int_equal(cs_kv_seq_n_cells(kv, 2), 4);
    kvu_check_meta(kv);
    cs_kv_clear(kv);
    assert_int_equal(kv->n_used, 0);
    assert_int_equal(kv->hi, 0);
    assert_int_equal(cs_kv_n_free(kv, 0), 16);
    kvu_check_meta(kv);
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
    struct cs_kv *kv = kvu_make(96, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    struct tu_rng r;
    tu_rng_seed(&r, 5);
    int32_t next[4] = {0}, ref[96];
    for (int it = 0; it < 300; it++) {
        int32_t s = (int32_t)(tu_rng_u64(&r) % 4), op = (int32_t)(tu_rng_u64(&r) % 4);
        if (op <= 1 && next[s] < 40) { /* a step's rows */
            int n = 1 + (int)(tu_rng_u64(&r) % 4);
            if (kvu_place(kv, s, next[s], n, NULL) == CLSPEC_OK)
                next[s] += n;
        } else if (op == 2 && next[s] > 0) { /* a rejected draft's tail */
            int32_t p0 = next[s] - 1 - (int32_t)(tu_rng_u64(&r) % (uint64_t)next[s]);
            OK(cs_kv_seq_rm(kv, s, p0, -1, kvu_err, sizeof kvu_err));
            next[s] = p0;
        } else if (op == 3 && next[s] > 4) { /* a context shift: drop 2 after 1, move the rest back */
            OK(cs_kv_seq_rm(kv, s, 1, 3, kvu_err, sizeof kvu_err));
            OK(cs_kv_seq_add(kv, s, 3, -1, -2, kvu_err, sizeof kvu_err));
            next[s] -= 2;
        }
        OK(cs_kv_sync(kv, true, kvu_err, sizeof kvu_err));
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
    kvu_check_meta(kv);
    cs_kv_free(kv);
}

static void test_place_partitioned(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kvu_make(16, 4, false, CS_TYPE_F32, CS_TYPE_Q8_0, false);
    int32_t c[8];
    for (int s = 0; s < 4; s++) {
        assert_int_equal(kvu_place(kv, s, 0, 3, c), CLSPEC_OK);
        for (int i = 0; i < 3; i++)
            assert_true(c[i] >= 4 * s && c[i] < 4 * s + 4);
        assert_int_equal(cs_kv_n_free(kv, s), 1);
    }
    /* a batch where sequence 1 does not fit its partition: 1 and 3 refused,
     * 0 and 2 placed, the refused ones unchanged */
    struct cs_batch b;
    OK(cs_batch_init(&b, 8, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 7, 3, 0, false, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 7, 3, 1, false, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 7, 4, 1, false, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 7, 3, 2, false, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 7, 3, 3, false, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 7, 4, 3, false, kvu_err, sizeof kvu_err));
    int rc[CS_MAX_SEQ];
    int32_t cells[8];
    OK(cs_kv_place(kv, &b, cells, rc, kvu_err, sizeof kvu_err));
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
    kvu_check_meta(kv);
    /* partitioned seq_cp copies into dst's partition: 1 gets 0's 4 cells
     * after its own are removed; 0's cells stay its own */
    OK(cs_kv_seq_cp(kv, 0, 1, 0, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 4);
    for (int32_t cc = 4; cc < 8; cc++) {
        assert_int_equal(kv->seq[cc], 2);
        assert_int_equal(kv->pos[cc], cc - 4);
        assert_int_equal(kv->tok[cc], cc - 4 == 3 ? 7 : cc - 4);
    }
    /* 3 cells of seq 2 cannot go into 3's partition with... they can (3 own cells freed) */
    OK(cs_kv_seq_cp(kv, 2, 3, 0, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 3), 4);
    /* seq 2 (4 cells) into seq 0's partition restricted to positions >= 10: nothing to copy */
    OK(cs_kv_seq_cp(kv, 2, 0, 10, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 4);
    kvu_check_meta(kv);
    cs_batch_free(&b);
    cs_kv_free(kv);
}

static void test_full_unified(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kvu_make(12, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    assert_int_equal(kvu_place(kv, 0, 0, 8, NULL), CLSPEC_OK);
    /* 4 free: seq 1 takes 2, seq 2 asks for 3 of the remaining 2: refused, seq 3 gets 2 */
    struct cs_batch b;
    OK(cs_batch_init(&b, 8, kvu_err, sizeof kvu_err));
    for (int i = 0; i < 2; i++)
        OK(cs_batch_add(&b, 1, i, 1, false, kvu_err, sizeof kvu_err));
    for (int i = 0; i < 3; i++)
        OK(cs_batch_add(&b, 2, i, 2, true, kvu_err, sizeof kvu_err));
    for (int i = 0; i < 2; i++)
        OK(cs_batch_add(&b, 3, i, 3, false, kvu_err, sizeof kvu_err));
    int rc[CS_MAX_SEQ];
    int32_t cells[8];
    OK(cs_kv_place(kv, &b, cells, rc, kvu_err, sizeof kvu_err));
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
    OK(cs_kv_seq_rm(kv, 1, 0, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(kvu_place(kv, 2, 0, 2, NULL), CLSPEC_OK);
    /* invalid batches change nothing */
    cs_batch_clear(&b);
    OK(cs_batch_add(&b, 1, 0, 5, false, kvu_err, sizeof kvu_err)); /* seq 5 >= n_seq_max 4 */
    uint32_t used = kv->n_used;
    assert_int_equal(cs_kv_place(kv, &b, cells, rc, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    assert_non_null(strstr(kvu_err, "sequence 5"));
    cs_batch_clear(&b);
    OK(cs_batch_add(&b, 1, 9, 3, false, kvu_err, sizeof kvu_err));
    OK(cs_batch_add(&b, 1, 9, 3, false, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_place(kv, &b, cells, rc, kvu_err, sizeof kvu_err), CLSPEC_E_INVAL);
    assert_int_equal(kv->n_used, used);
    kvu_check_meta(kv);
    cs_batch_free(&b);
    cs_kv_free(kv);
}

static void test_seq_ops_meta(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kvu_make(32, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    int32_t c0[10];
    assert_int_equal(kvu_place(kv, 0, 0, 10, c0), CLSPEC_OK);
    OK(cs_kv_seq_cp(kv, 0, 1, 0, 5, kvu_err, sizeof kvu_err)); /* 1 shares positions 0..4 */
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 5);
    assert_int_equal(kv->n_used, 10);
    assert_int_equal(kvu_place(kv, 1, 5, 3, NULL), CLSPEC_OK);
    assert_int_equal(kv->n_used, 13);
    /* seq_rm of a shared range only drops the bit */
    OK(cs_kv_seq_rm(kv, 0, 3, 7, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 6);
    assert_int_equal(kv->n_used, 11); /* positions 5, 6 of seq 0 freed; 3, 4 kept for seq 1 */
    assert_int_equal(kv->seq[c0[3]], 2);
    assert_int_equal(kv->pos[c0[5]], -1);
    kvu_check_meta(kv);
    /* seq_add: seq 1's positions >= 2 move by +10: cell 2 (shared with 0)
     * is unshared into the first free cell (5), 3, 4 and 10..12 shift in place */
    OK(cs_kv_seq_add(kv, 1, 2, -1, 10, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_pos_max(kv, 1), 17);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 8);
    assert_int_equal(kv->pos[c0[3]], 13); /* held by 1 alone: shifted in place */
    assert_int_equal(kv->pos[5], 12);
    assert_int_equal(kv->seq[5], 2);
    assert_int_equal(kv->seq[c0[2]], 1);
    /* seq 0's positions < 8 move by -2: 0 and 1 (shared with 1) fall off,
     * only the bit goes; 2 (now 0's alone) -> 0, 7 -> 5; 8, 9 stay */
    OK(cs_kv_seq_add(kv, 0, 0, 8, -2, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 4);
    assert_int_equal(kv->pos[c0[2]], 0);
    assert_int_equal(kv->pos[c0[7]], 5);
    assert_int_equal(kv->seq[c0[0]], 2);
    assert_int_equal(kv->pos[c0[0]], 0);
    assert_int_equal(cs_kv_seq_pos_max(kv, 0), 9);
    kvu_check_meta(kv);
    /* seq_keep(1): every other sequence leaves */
    OK(cs_kv_seq_keep(kv, 1, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 0);
    assert_int_equal(kv->n_used, cs_kv_seq_n_cells(kv, 1));
    kvu_check_meta(kv);
    /* seq_rm(-1) over a range: all sequences */
    OK(cs_kv_seq_rm(kv, -1, 12, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_pos_max(kv, 1), 1);
    kvu_check_meta(kv);
    /* invalid sequence ids */
    assert_int_equal(cs_kv_seq_rm(kv, 4, 0, -1, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    assert_non_null(strstr(kvu_err, "sequence 4"));
    assert_int_equal(cs_kv_seq_rm(kv, -2, 0, -1, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    assert_int_equal(cs_kv_seq_cp(kv, 0, 9, 0, -1, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    assert_int_equal(cs_kv_seq_keep(kv, -1, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    assert_int_equal(cs_kv_seq_add(kv, 64, 0, -1, 1, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    struct cs_kv_ckpt *ck = NULL;
    assert_int_equal(cs_kv_ckpt_save(kv, 7, 0, -1, &ck, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
    assert_null(ck);
    cs_kv_free(kv);
}

static void test_prefix_match(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_kv *kv = kvu_make(32, 4, true, CS_TYPE_F16, CS_TYPE_F16, false);
    assert_int_equal(kvu_place(kv, 0, 0, 6, NULL), CLSPEC_OK); /* tokens 0..5 */
    assert_int_equal(kvu_place(kv, 2, 0, 3, NULL), CLSPEC_OK); /* tokens 2000..2002 */
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
    OK(cs_kv_seq_cp(kv, 0, 1, 0, 4, kvu_err, sizeof kvu_err));
    assert_int_equal(kv->n_used, 9);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 4);
    assert_int_equal(cs_kv_prefix_match(kv, toks, 8, 3, &src), 4);
    cs_kv_free(kv);
}

static void test_errors(void **state)
{
    (void)state;
    NEED_DEV();
    struct cs_hparams hp = kvu_hparams();
    struct cs_cl_dev *ld[NL];
    struct cs_cl_dev *d1 = kvu_dev[1] ? kvu_dev[1] : kvu_dev[0];
    for (int l = 0; l < NL; l++)
        ld[l] = l >= 2 ? d1 : kvu_dev[0];
    struct cs_kv *kv = NULL;
    /* 1000 cells x 512 bytes (f32, 2 x 64) = 512000 bytes > a 100000-byte limit */
    struct cs_kv_params p = {1000, CS_TYPE_F32, CS_TYPE_Q4_0, 1, true};
    cl_ulong saved = d1->info.max_alloc;
    if (kvu_dev[1])
        d1->info.max_alloc = 100000;
    else
        for (int l = 0; l < NL; l++)
            ld[l] = kvu_dev[0];
    if (kvu_dev[1]) {
        assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
        printf("# %s\n", kvu_err);
        assert_non_null(strstr(kvu_err, "layer 2"));
        assert_non_null(strstr(kvu_err, "K buffer"));
        assert_non_null(strstr(kvu_err, d1->info.name));
        char idx[32];
        snprintf(idx, sizeof idx, "device %u", d1->info.index);
        assert_non_null(strstr(kvu_err, idx));
        assert_null(kv);
        /* q8_0 K (1000 x 136 bytes) and f16 V (1000 x 256) fit 300000; V not 200000 */
        d1->info.max_alloc = 300000;
        p.type_k = CS_TYPE_Q8_0;
        p.type_v = CS_TYPE_F16;
        OK(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err));
        cs_kv_free(kv);
        kv = NULL;
        d1->info.max_alloc = 200000;
        assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
        assert_non_null(strstr(kvu_err, "V buffer"));
        d1->info.max_alloc = saved;
    } else {
        cl_ulong s0 = kvu_dev[0]->info.max_alloc;
        kvu_dev[0]->info.max_alloc = 100000;
        assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_RANGE);
        assert_non_null(strstr(kvu_err, "layer 0"));
        kvu_dev[0]->info.max_alloc = s0;
    }
    /* types and parameters */
    p = (struct cs_kv_params){64, CS_TYPE_Q4_K, CS_TYPE_F16, 1, true};
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_UNSUPPORTED);
    assert_non_null(strstr(kvu_err, "type_k"));
    p = (struct cs_kv_params){64, CS_TYPE_F16, CS_TYPE_F16, 65, true};
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_INVAL);
    p = (struct cs_kv_params){3, CS_TYPE_F16, CS_TYPE_F16, 4, false};
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_INVAL);
    /* quantized blocks of 32 run along the cell row (n_head_kv * head_dim),
     * padded to whole blocks: 1 x 48 takes 2 blocks; 2 x 48 (96) and
     * stories260K's 4 x 8 are whole blocks; head_dim 6 is refused */
    hp.head_dim = 48;
    hp.n_head_kv = 1;
    p = (struct cs_kv_params){64, CS_TYPE_F16, CS_TYPE_Q8_0, 1, true};
    OK(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err));
    assert_int_equal(kv->row_bytes_v, 2 * 34);
    assert_int_equal(kv->row_bytes_k, 48 * 2);
    cs_kv_free(kv);
    kv = NULL;
    hp.head_dim = 6;
    assert_int_equal(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err), CLSPEC_E_UNSUPPORTED);
    assert_non_null(strstr(kvu_err, "type_k"));
    assert_null(kv);
    hp.head_dim = 48;
    hp.n_head_kv = 2;
    OK(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err));
    cs_kv_free(kv);
    kv = NULL;
    hp.head_dim = 8;
    hp.n_head_kv = 4;
    p = (struct cs_kv_params){64, CS_TYPE_Q4_0, CS_TYPE_Q8_0, 1, true};
    OK(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err));
    cs_kv_free(kv);
}

/* Layers 0-1 on the first device, 2-3 on the second: each device has its
 * own metadata mirror (equal to the host's after a sync), K/V rows live on
 * their layer's device, attention there matches the reference, and seq_add
 * and checkpoints act on both. */
/* KV bytes per token per type (printed for the report) and the q8_0 / f16 ratio. */
static void test_bytes_per_token(void **state)
{
    (void)state;
    NEED_DEV();
    uint64_t f16_small = 0, q8_small = 0;
    for (size_t ti = 0; ti < CS_ARRAY_LEN(kvu_types); ti++) {
        struct cs_kv *kv = kvu_make(8, 1, true, kvu_types[ti], kvu_types[ti], false);
        uint64_t b = cs_kv_bytes_per_token(kv);
        /* 1.1B shape: 22 layers, 4 kv heads x 64 (arithmetic of the same rows) */
        uint64_t rb = 0;
        assert_true(cs_row_bytes(kvu_types[ti], 4 * 64, &rb));
        printf("# kv bytes/token %s: %llu (4 layers, 2 x 64), %llu (22 layers, 4 x 64)\n",
               cs_type_name(kvu_types[ti]), (unsigned long long)b, (unsigned long long)(2 * 22 * rb));
        if (kvu_types[ti] == CS_TYPE_F16)
            f16_small = b;
        if (kvu_types[ti] == CS_TYPE_Q8_0)
            q8_small = b;
        assert_int_equal(b, (kv->row_bytes_k + kv->row_bytes_v) * NL);
        cs_kv_free(kv);
    }
    double ratio = (double)q8_small / (double)f16_small;
    printf("# kv q8_0 / f16 bytes: %.4f\n", ratio);
    assert_true(ratio <= 0.55);
    struct cs_kv *kv = kvu_make(8, 1, true, CS_TYPE_Q8_0, CS_TYPE_F32, false);
    assert_int_equal(cs_kv_bytes_per_token(kv), (uint64_t)NL * (136 + 512));
    cs_kv_free(kv);
}

/* Cell rows that are not whole blocks (the distilled drafter: 2 kv heads x 8
 * = 16 values): q8_0 / q4_0 rows are padded with 0 to one block (34 / 18
 * bytes); kv_store writes the reference bytes (cs_kv_quantize_row, within one
 * quantization step) and zero padding, seq_cp and a checkpoint round trip
 * copy whole padded rows exactly, seq_add re-rotates the valid values and
 * keeps the padding 0. */
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
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bytes_per_token),
    };
    return cmocka_run_group_tests_name("kv", tests, kvu_setup, kvu_teardown);
}
