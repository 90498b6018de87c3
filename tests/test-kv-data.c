/* test-kv-data.c: the KV cache's device rows (src/kv/kv.h): seq_add's K
 * re-rotation (own and shared cells), checkpoints, seq_cp's copies, a cache
 * whose layers sit on two devices (POCL_DEVICES="pthread pthread", set before
 * the first OpenCL call), and cell rows that are not whole blocks. The host
 * metadata: tests/test-kv.c; small shapes and the harness: tests/kvutil.h. */
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

/* ---- device data ---- */

/* seq_add re-rotates K: each shifted row equals RoPE(delta) of the stored
 * row within the type's requantization error; V and other cells unchanged. */
static void test_seq_add_device(void **state)
{
    (void)state;
    NEED_DEV();
    struct tu_rng r;
    tu_rng_seed(&r, 41);
    for (size_t ti = 0; ti < CS_ARRAY_LEN(kvu_types); ti++) {
        uint32_t t = kvu_types[ti];
        struct cs_kv *kv = kvu_make(16, 2, true, t, CS_TYPE_Q4_0, false);
        const int n = 6;
        int32_t cells[8], pos[8];
        assert_int_equal(kvu_place(kv, 0, 0, n, cells), CLSPEC_OK);
        float *k = kvu_rand_vec(&r, (size_t)NL * n * ROW), *v = kvu_rand_vec(&r, (size_t)NL * n * ROW);
        kvu_store(kv, cells, n, k, v);
        float before[NL][8][ROW], vb[NL][8][ROW];
        unsigned char vraw[NL][8][ROW * 4];
        for (uint32_t l = 0; l < NL; l++)
            for (int i = 0; i < n; i++) {
                kvu_read_row(kv, l, cells[i], false, before[l][i]);
                kvu_read_row(kv, l, cells[i], true, vb[l][i]);
                kvu_read_raw(kv, l, cells[i], true, vraw[l][i]);
            }
        /* positions 2.. move by +5 */
        OK(cs_kv_seq_add(kv, 0, 2, -1, 5, kvu_err, sizeof kvu_err));
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
                kvu_read_row(kv, l, cells[i], false, got);
                double amax = 0.0;
                for (int j = 0; j < ROW; j++)
                    amax = fmax(amax, fabs(want[j]));
                for (int j = 0; j < ROW; j++)
                    emax = fmax(emax, fabs(got[j] - want[j]) / amax);
                if (i < 2)
                    for (int j = 0; j < ROW; j++)
                        assert_true(got[j] == want[j]);
                kvu_read_raw(kv, l, cells[i], true, raw);
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
        OK(cs_kv_seq_add(kv, 0, 0, 2, -1, kvu_err, sizeof kvu_err));
        assert_int_equal(kv->pos[cells[0]], -1);
        assert_int_equal(kv->pos[cells[1]], 0);
        assert_int_equal(kv->n_used, 5);
        kvu_check_meta(kv);
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
    struct cs_kv *kv = kvu_make(16, 2, true, CS_TYPE_Q8_0, CS_TYPE_F16, false);
    int32_t cells[4];
    assert_int_equal(kvu_place(kv, 0, 0, 4, cells), CLSPEC_OK);
    float *k = kvu_rand_vec(&r, (size_t)NL * 4 * ROW), *v = kvu_rand_vec(&r, (size_t)NL * 4 * ROW);
    kvu_store(kv, cells, 4, k, v);
    unsigned char k0[ROW * 4], v0[ROW * 4], x[ROW * 4];
    kvu_read_raw(kv, 3, cells[1], false, k0);
    kvu_read_raw(kv, 3, cells[1], true, v0);
    OK(cs_kv_seq_cp(kv, 0, 1, 0, -1, kvu_err, sizeof kvu_err));
    OK(cs_kv_seq_add(kv, 1, 0, -1, 3, kvu_err, sizeof kvu_err));
    assert_int_equal(kv->n_used, 8);
    assert_int_equal(kv->seq[cells[1]], 1);
    assert_int_equal(kv->pos[cells[1]], 1);
    kvu_read_raw(kv, 3, cells[1], false, x);
    assert_memory_equal(x, k0, kv->row_bytes_k);
    int32_t c1 = -1;
    for (uint32_t c = 0; c < 16; c++)
        if (kv->seq[c] == 2 && kv->pos[c] == 4)
            c1 = (int32_t)c;
    assert_true(c1 >= 0);
    kvu_read_raw(kv, 3, c1, true, x);
    assert_memory_equal(x, v0, kv->row_bytes_v);
    kvu_read_raw(kv, 3, c1, false, x);
    assert_memory_not_equal(x, k0, kv->row_bytes_k);
    kvu_check_meta(kv);
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
    for (size_t ti = 0; ti <= CS_ARRAY_LEN(kvu_types); ti++) {
        uint32_t tk = ti < CS_ARRAY_LEN(kvu_types) ? kvu_types[ti] : CS_TYPE_Q4_0;
        uint32_t tv = ti < CS_ARRAY_LEN(kvu_types) ? kvu_types[ti] : CS_TYPE_BF16;
        struct cs_kv *kv = kvu_make(32, 2, true, tk, tv, false);
        int32_t cells[16];
        const int n = 10;
        assert_int_equal(kvu_place(kv, 0, 0, n, cells), CLSPEC_OK);
        assert_int_equal(kvu_place(kv, 1, 0, 3, NULL), CLSPEC_OK);
        float *k = kvu_rand_vec(&r, (size_t)NL * n * ROW), *v = kvu_rand_vec(&r, (size_t)NL * n * ROW);
        kvu_store(kv, cells, n, k, v);
        float *q = kvu_rand_vec(&r, NH * HD), a[NL][NH * HD], b[NH * HD];
        int32_t tp = 9, ts = 0;
        for (uint32_t l = 0; l < NL; l++)
            kvu_attend(kv, l, q, 1, &tp, &ts, a[l]);
        unsigned char raw_k[5][ROW * 4], raw_v[5][ROW * 4];
        for (int i = 0; i < 5; i++) {
            kvu_read_raw(kv, 2, cells[5 + i], false, raw_k[i]);
            kvu_read_raw(kv, 2, cells[5 + i], true, raw_v[i]);
        }
        struct cs_kv_ckpt *ck = NULL;
        OK(cs_kv_ckpt_save(kv, 0, 5, -1, &ck, kvu_err, sizeof kvu_err));
        assert_int_equal(cs_kv_ckpt_bytes(ck), 5ull * NL * (kv->row_bytes_k + kv->row_bytes_v));
        /* mutate: drop 5.., decode other rows at 5..12 */
        OK(cs_kv_seq_rm(kv, 0, 5, -1, kvu_err, sizeof kvu_err));
        int32_t c2[8];
        assert_int_equal(kvu_place(kv, 0, 5, 8, c2), CLSPEC_OK);
        float *k2 = kvu_rand_vec(&r, (size_t)NL * 8 * ROW), *v2 = kvu_rand_vec(&r, (size_t)NL * 8 * ROW);
        kvu_store(kv, c2, 8, k2, v2);
        kvu_attend(kv, 0, q, 1, &tp, &ts, b);
        assert_memory_not_equal(a[0], b, sizeof b);
        uint32_t used = kv->n_used;
        OK(cs_kv_ckpt_restore(kv, ck, kvu_err, sizeof kvu_err));
        assert_int_equal(kv->n_used, used - 3);
        assert_int_equal(cs_kv_seq_pos_max(kv, 0), 9);
        assert_int_equal(cs_kv_seq_n_cells(kv, 0), 10);
        for (uint32_t l = 0; l < NL; l++) {
            kvu_attend(kv, l, q, 1, &tp, &ts, b);
            assert_memory_equal(a[l], b, sizeof b);
        }
        kvu_check_meta(kv);
        /* restoring into a cache whose cells moved: other free cells, the same rows */
        OK(cs_kv_seq_rm(kv, 0, 5, -1, kvu_err, sizeof kvu_err));
        assert_int_equal(kvu_place(kv, 1, 3, 5, NULL), CLSPEC_OK); /* takes 0's old cells */
        OK(cs_kv_ckpt_restore(kv, ck, kvu_err, sizeof kvu_err));
        for (int i = 5; i < n; i++) { /* the rows of positions 5..9 are back, elsewhere */
            int32_t c = -1;
            for (uint32_t cc = 0; cc < kv->p.n_ctx; cc++)
                if (kv->seq[cc] == 1 && kv->pos[cc] == i)
                    c = (int32_t)cc;
            assert_true(c >= 10);
            assert_int_equal(kv->tok[c], i);
            unsigned char got[ROW * 4];
            kvu_read_raw(kv, 2, c, true, got);
            assert_memory_equal(got, raw_v[i - 5], kv->row_bytes_v);
            kvu_read_raw(kv, 2, c, false, got);
            assert_memory_equal(got, raw_k[i - 5], kv->row_bytes_k);
        }
        kvu_check_meta(kv);
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
    struct cs_kv *kv = kvu_make(16, 2, false, CS_TYPE_BF16, CS_TYPE_Q8_0, false);
    int32_t cells[4];
    assert_int_equal(kvu_place(kv, 0, 0, 4, cells), CLSPEC_OK);
    float *k = kvu_rand_vec(&r, (size_t)NL * 4 * ROW), *v = kvu_rand_vec(&r, (size_t)NL * 4 * ROW);
    kvu_store(kv, cells, 4, k, v);
    OK(cs_kv_seq_cp(kv, 0, 1, 1, 3, kvu_err, sizeof kvu_err));
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 2);
    for (uint32_t c = 8; c < 10; c++) {
        assert_int_equal(kv->seq[c], 2);
        int32_t src = kv->pos[c]; /* cell i of seq 0 holds position i */
        for (uint32_t l = 0; l < NL; l++)
            for (int isv = 0; isv < 2; isv++) {
                unsigned char a[ROW * 4], b[ROW * 4];
                kvu_read_raw(kv, l, (int32_t)c, isv, a);
                kvu_read_raw(kv, l, src, isv, b);
                assert_memory_equal(a, b, isv ? kv->row_bytes_v : kv->row_bytes_k);
            }
    }
    /* seq 1's view of its copies equals seq 0's view of the originals */
    float *q = kvu_rand_vec(&r, NH * HD), a[NH * HD], b[NH * HD];
    int32_t tp = 2, s0 = 0, s1 = 1;
    kvu_attend(kv, 1, q, 1, &tp, &s1, a);
    OK(cs_kv_seq_rm(kv, 0, 3, -1, kvu_err, sizeof kvu_err));
    OK(cs_kv_seq_rm(kv, 0, 0, 1, kvu_err, sizeof kvu_err));
    kvu_attend(kv, 1, q, 1, &tp, &s0, b);
    assert_memory_equal(a, b, sizeof a);
    /* more than the partition holds: refused, nothing changed */
    assert_int_equal(kvu_place(kv, 0, 10, 6, NULL), CLSPEC_OK);
    assert_int_equal(cs_kv_seq_n_cells(kv, 0), 8);
    OK(cs_kv_seq_rm(kv, 1, 0, -1, kvu_err, sizeof kvu_err));
    assert_int_equal(kvu_place(kv, 1, 0, 1, NULL), CLSPEC_OK);
    OK(cs_kv_seq_rm(kv, 0, 0, 12, kvu_err, sizeof kvu_err)); /* 0 keeps 12..15 */
    assert_int_equal(kvu_place(kv, 1, 1, 5, NULL), CLSPEC_OK); /* 1: 6 of 8 cells */
    assert_int_equal(cs_kv_seq_cp(kv, 0, 1, 12, -1, kvu_err, sizeof kvu_err), CLSPEC_E_KV_FULL);
    assert_int_equal(cs_kv_seq_n_cells(kv, 1), 6);
    kvu_check_meta(kv);
    free(q);
    free(k);
    free(v);
    cs_kv_free(kv);
}

static void test_two_devices(void **state)
{
    (void)state;
    NEED_DEV();
    if (!kvu_dev[1])
        skip();
    struct tu_rng r;
    tu_rng_seed(&r, 45);
    struct cs_kv *kv = kvu_make(24, 2, true, CS_TYPE_F16, CS_TYPE_Q8_0, true);
    assert_int_equal(kv->n_dev, 2);
    assert_ptr_equal(cs_kv_layer_device(kv, 1), kvu_dev[0]);
    assert_ptr_equal(cs_kv_layer_device(kv, 2), kvu_dev[1]);
    struct cs_kv_view v0 = cs_kv_layer_view(kv, 0), v3 = cs_kv_layer_view(kv, 3);
    assert_ptr_not_equal(v0.cell_pos, v3.cell_pos);
    const int n = 8;
    int32_t cells[8];
    assert_int_equal(kvu_place(kv, 0, 0, n, cells), CLSPEC_OK);
    assert_int_equal(kvu_place(kv, 1, 0, 3, NULL), CLSPEC_OK);
    OK(cs_kv_seq_add(kv, 1, 0, -1, 2, kvu_err, sizeof kvu_err));
    float *k = kvu_rand_vec(&r, (size_t)NL * n * ROW), *v = kvu_rand_vec(&r, (size_t)NL * n * ROW);
    kvu_store(kv, cells, n, k, v);
    OK(cs_kv_sync(kv, true, kvu_err, sizeof kvu_err));
    for (int i = 0; i < 2; i++) {
        int32_t pos[24];
        uint64_t seq[24];
        OK(cs_cl_read(kv->devs[i].dev, kv->devs[i].cell_pos, 0, sizeof pos, pos, kvu_err,
                      sizeof kvu_err));
        OK(cs_cl_read(kv->devs[i].dev, kv->devs[i].cell_seq, 0, sizeof seq, seq, kvu_err,
                      sizeof kvu_err));
        assert_memory_equal(pos, kv->pos, sizeof pos);
        assert_memory_equal(seq, kv->seq, sizeof seq);
    }
    /* attention per layer against the reference over the rows read back */
    float *q = kvu_rand_vec(&r, NH * HD), out[NH * HD], ref[NH * HD];
    int32_t tp = 7, ts = 0;
    for (uint32_t l = 0; l < NL; l++) {
        float *kr = calloc(24 * ROW, sizeof *kr), *vr = calloc(24 * ROW, sizeof *vr);
        assert_non_null(kr);
        assert_non_null(vr);
        for (int c = 0; c < kv->hi; c++) {
            kvu_read_row(kv, l, c, false, kr + (size_t)c * ROW);
            kvu_read_row(kv, l, c, true, vr + (size_t)c * ROW);
        }
        kvu_attend(kv, l, q, 1, &tp, &ts, out);
        cs_ref_attention(q, kr, vr, kv->pos, kv->seq, kv->hi, &tp, &ts, 1, NH, NKV, HD, true,
                         0.125f, ref);
        for (int j = 0; j < NH * HD; j++)
            assert_true(fabsf(out[j] - ref[j]) <= 1e-4f);
        free(kr);
        free(vr);
    }
    /* seq_add shifts K on both devices; a checkpoint restores both */
    struct cs_kv_ckpt *ck = NULL;
    OK(cs_kv_ckpt_save(kv, 0, 0, -1, &ck, kvu_err, sizeof kvu_err));
    float before[ROW], after[ROW];
    kvu_read_row(kv, 3, cells[4], false, before);
    OK(cs_kv_seq_add(kv, 0, 4, -1, 3, kvu_err, sizeof kvu_err));
    kvu_read_row(kv, 3, cells[4], false, after);
    int32_t d = 3;
    cs_ref_rope(before, &d, 1, NKV, HD, HD, false, 10000.0f, 1.0f);
    for (int j = 0; j < ROW; j++)
        assert_true(fabsf(after[j] - before[j]) <= 2e-2f);
    OK(cs_kv_ckpt_restore(kv, ck, kvu_err, sizeof kvu_err));
    tp = 7;
    for (uint32_t l = 0; l < NL; l += 3) {
        float again[NH * HD];
        kvu_attend(kv, l, q, 1, &tp, &ts, again);
        if (l == 3)
            assert_memory_equal(again, out, sizeof out);
    }
    cs_kv_ckpt_free(ck);
    kvu_check_meta(kv);
    free(q);
    free(k);
    free(v);
    cs_kv_free(kv);
}

static void test_padded_rows(void **state)
{
    (void)state;
    NEED_DEV();
    enum { PKV = 2, PHD = 8, PROW = PKV * PHD, PN = 4 };
    static const uint32_t pairs[][2] = {{CS_TYPE_Q8_0, CS_TYPE_Q4_0}, {CS_TYPE_Q4_0, CS_TYPE_Q8_0}};
    struct tu_rng r;
    tu_rng_seed(&r, 61);
    for (size_t pi = 0; pi < CS_ARRAY_LEN(pairs); pi++) {
        struct cs_hparams hp = kvu_hparams();
        hp.n_head_kv = PKV;
        hp.head_dim = PHD;
        hp.n_embd = NH * PHD;
        hp.n_rot = PHD;
        struct cs_kv_params p = {16, pairs[pi][0], pairs[pi][1], 2, true};
        struct cs_cl_dev *ld[NL] = {kvu_dev[0], kvu_dev[0], kvu_dev[0], kvu_dev[0]};
        struct cs_kv *kv = NULL;
        OK(cs_kv_new(&hp, &p, ld, &kv, kvu_err, sizeof kvu_err));
        uint64_t bk = pairs[pi][0] == CS_TYPE_Q8_0 ? 34 : 18, bv = pairs[pi][1] == CS_TYPE_Q8_0 ? 34 : 18;
        assert_int_equal(kv->row_bytes_k, bk);
        assert_int_equal(kv->row_bytes_v, bv);
        assert_int_equal(cs_kv_bytes_per_token(kv), (uint64_t)NL * (bk + bv));
        int32_t cells[PN];
        assert_int_equal(kvu_place(kv, 0, 0, PN, cells), CLSPEC_OK);
        float *k = kvu_rand_vec(&r, (size_t)NL * PN * PROW), *v = kvu_rand_vec(&r, (size_t)NL * PN * PROW);
        for (uint32_t l = 0; l < NL; l++) {
            struct cs_cl_dev *d = cs_kv_layer_device(kv, l);
            cl_mem mk = kvu_buf(d, (size_t)PN * PROW * 4, k + (size_t)l * PN * PROW);
            cl_mem mv = kvu_buf(d, (size_t)PN * PROW * 4, v + (size_t)l * PN * PROW);
            cl_mem mc = kvu_buf(d, sizeof cells, cells);
            struct cs_kv_view view = cs_kv_layer_view(kv, l);
            OK(cs_op_kv_store(d, &view, mk, 0, mv, 0, mc, PN, kvu_err, sizeof kvu_err));
            OK(cs_cl_finish(d, kvu_err, sizeof kvu_err));
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
                    kvu_read_raw(kv, l, cells[i], isv, raw[l][i][isv]);
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
        OK(cs_kv_seq_cp(kv, 0, 1, 0, -1, kvu_err, sizeof kvu_err));
        for (uint32_t l = 0; l < NL; l++)
            for (int i = 0; i < PN; i++)
                for (int isv = 0; isv < 2; isv++) {
                    unsigned char a[34];
                    kvu_read_raw(kv, l, cells[i], isv, a);
                    assert_memory_equal(a, raw[l][i][isv], isv ? bv : bk);
                }
        OK(cs_kv_seq_rm(kv, 1, 0, -1, kvu_err, sizeof kvu_err));
        /* checkpoint of positions 1..3, removed, restored: the same bytes by position */
        struct cs_kv_ckpt *ck = NULL;
        OK(cs_kv_ckpt_save(kv, 0, 1, PN, &ck, kvu_err, sizeof kvu_err));
        assert_int_equal(cs_kv_ckpt_bytes(ck), (uint64_t)(PN - 1) * NL * (bk + bv));
        OK(cs_kv_seq_rm(kv, 0, 1, -1, kvu_err, sizeof kvu_err));
        OK(cs_kv_ckpt_restore(kv, ck, kvu_err, sizeof kvu_err));
        cs_kv_ckpt_free(ck);
        int found = 0;
        for (uint32_t c = 0; c < kv->p.n_ctx; c++) {
            if (!(kv->seq[c] & 1) || kv->pos[c] < 0)
                continue;
            found++;
            for (uint32_t l = 0; l < NL; l++)
                for (int isv = 0; isv < 2; isv++) {
                    unsigned char a[34];
                    kvu_read_raw(kv, l, (int32_t)c, isv, a);
                    assert_memory_equal(a, raw[l][kv->pos[c]][isv], isv ? bv : bk);
                }
        }
        assert_int_equal(found, PN);
        /* seq_add: K re-rotated (the valid values), padding still 0, V untouched */
        OK(cs_kv_seq_add(kv, 0, 0, -1, 3, kvu_err, sizeof kvu_err));
        for (uint32_t c = 0; c < kv->p.n_ctx; c++) {
            if (!(kv->seq[c] & 1) || kv->pos[c] < 0)
                continue;
            int i = kv->pos[c] - 3;
            for (uint32_t l = 0; l < NL; l++) {
                unsigned char a[34];
                float x[32], before[PROW];
                kvu_read_raw(kv, l, (int32_t)c, true, a);
                assert_memory_equal(a, raw[l][i][1], bv);
                kvu_read_raw(kv, l, (int32_t)c, false, a);
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

int main(void)
{
    setenv("POCL_DEVICES", "pthread pthread", 1); /* before the first OpenCL call */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_add_device),
        cmocka_unit_test(test_seq_add_shared),
        cmocka_unit_test(test_ckpt_roundtrip),
        cmocka_unit_test(test_seq_cp_rows),
        cmocka_unit_test(test_two_devices),
        cmocka_unit_test(test_padded_rows),
    };
    return cmocka_run_group_tests_name("kv-data", tests, kvu_setup, kvu_teardown);
}
