/* test-batch.c: many sequences in one forward (cs_forward_batch on the
 * cs_kv cache, f32 K/V): 4 sequences with different prompts decoded together
 * give exactly the tokens (and logits) each gives alone, with prefill split
 * into micro-batches; a full cache refuses one sequence (CLSPEC_E_KV_FULL)
 * while the others run and complete; seq_rm then re-decoding reproduces the
 * same logits; a removed sequence id reused with another prompt reads no
 * stale cell (logits equal a fresh context's); logits rows come back in
 * batch order and only for requested rows; hidden states of a batch; a
 * partitioned cache (a sequence outgrowing its part is refused alone). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/batch.h"
#include "base/common.h"
#include "fwdutil.h"
#include "gguf/quant.h"
#include "engine/sampler.h"
#include "testutil.h"

#define NS 4
#define NG 24

/* prompts: the reference prompts (4 of them), the last one extended so lengths differ */
static int prompts(const struct golden *g, int32_t p[NS][32], int n[NS])
{
    assert_true(g->n_cases >= 1);
    for (int s = 0; s < NS; s++) {
        const struct golden_case *gc = &g->cases[s % g->n_cases];
        n[s] = CS_MIN(gc->n_prompt, 24);
        memcpy(p[s], gc->prompt, (size_t)n[s] * sizeof(int32_t));
        if (s >= g->n_cases) /* fewer cases than sequences: vary the tail */
            p[s][n[s] - 1] = (p[s][n[s] - 1] + 17 * s) % 500;
    }
    return 0;
}

static void together_equals_alone(const char *rel, const char *gname, uint32_t n_ubatch)
{
    struct fu_model f;
    if (fu_open(rel, 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    struct golden *g = fu_golden(gname);
    const int V = f.V;
    int32_t p[NS][32], n[NS], alone[NS][NG], tog[NS][NG];
    prompts(g, p, n);
    float *la = malloc((size_t)NS * NG * V * sizeof(float)), *lt = malloc((size_t)NS * NG * V * sizeof(float));
    assert_true(la && lt);
    for (int s = 0; s < NS; s++) {
        struct cs_fwd_ctx *c = fu_ctx(&f, 128, 64, CS_TYPE_F32, CS_TYPE_F32);
        fu_greedy(c, p[s], n[s], NG, 0, alone[s], la + (size_t)s * NG * V);
        cs_fwd_ctx_free(c);
    }
    /* together: one batch with every prompt (interleaved order: s = row % NS while rows last), then
     * NG - 1 steps of NS rows; sequence ids 3, 0, 2, 1 so ids and batch order differ */
    const int32_t sid[NS] = {3, 0, 2, 1};
    struct cs_fwd_ctx *c = fu_ctx(&f, 256, n_ubatch, CS_TYPE_F32, CS_TYPE_F32);
    struct cs_batch b;
    char err[CLSPEC_ERRLEN];
    assert_int_equal(cs_batch_init(&b, 256, err, sizeof err), 0);
    int fed[NS] = {0}, order[NS], k = 0;
    for (int more = 1; more;) {
        more = 0;
        for (int s = 0; s < NS; s++)
            if (fed[s] < n[s]) {
                bool last = fed[s] == n[s] - 1;
                assert_int_equal(cs_batch_add(&b, p[s][fed[s]], fed[s], sid[s], last, err, sizeof err), 0);
                if (last)
                    order[k++] = s;
                fed[s]++;
                more = 1;
            }
    }
    float *rows = malloc((size_t)NS * V * sizeof(float));
    int seq_rc[CS_MAX_SEQ];
    if (cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    for (int step = 0; step < NG; step++) {
        for (int i = 0; i < NS; i++) {
            int s = step == 0 ? order[i] : i;
            assert_int_equal(seq_rc[sid[s]], CLSPEC_OK);
            memcpy(lt + ((size_t)s * NG + step) * V, rows + (size_t)i * V, (size_t)V * sizeof(float));
            tog[s][step] = cs_argmax(rows + (size_t)i * V, V);
        }
        if (step + 1 == NG)
            break;
        cs_batch_clear(&b);
        for (int s = 0; s < NS; s++)
            assert_int_equal(cs_batch_add(&b, tog[s][step], n[s] + step, sid[s], true, err, sizeof err), 0);
        if (cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
    }
    float worst = 0;
    for (int s = 0; s < NS; s++) {
        for (int step = 0; step < NG; step++)
            if (tog[s][step] != alone[s][step])
                fail_msg("%s: sequence %d step %d: together %d, alone %d", gname, s, step, tog[s][step],
                         alone[s][step]);
        worst = fmaxf(worst, fu_max_rel(lt + (size_t)s * NG * V, la + (size_t)s * NG * V, (size_t)NG * V));
    }
    print_message("# %s n_ubatch %u: %d sequences x %d tokens equal alone; max logit rel diff %.3g\n", gname, n_ubatch,
                  NS, NG, worst);
    assert_true(worst <= 1e-4f);
    assert_int_equal(cs_kv_seq_n_cells(c->kv, sid[0]), (uint32_t)(n[0] + NG - 1));
    free(rows);
    cs_batch_free(&b);
    cs_fwd_ctx_free(c);
    free(la);
    free(lt);
    golden_free(g);
    fu_close(&f);
}

static void test_together_stories(void **s) { (void)s; together_equals_alone("models/stories260K.gguf", "stories260K", 64); }
static void test_together_ubatch(void **s) { (void)s; together_equals_alone("models/stories260K.gguf", "stories260K", 5); }
static void test_together_q8(void **s) { (void)s; together_equals_alone("models/TinyStories-656K-Q8_0.gguf", "TinyStories-656K-Q8_0", 16); }

/* A cache of 40 cells: sequences 0 and 1 (12 and 14 rows) fit, sequence 2
 * (20 rows) does not: it alone gets CLSPEC_E_KV_FULL and leaves the cache
 * unchanged; 0 and 1 get the logits they get alone and keep decoding until
 * the cache is full, each refused then by itself. */
static void test_kv_full(void **state)
{
    (void)state;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    const int V = f.V;
    char err[CLSPEC_ERRLEN];
    struct tu_rng rng;
    tu_rng_seed(&rng, 7);
    int32_t tok[3][20];
    const int n[3] = {12, 14, 20};
    for (int s = 0; s < 3; s++)
        tu_rng_tokens(&rng, tok[s], 20, V);
    float *alone = malloc(2 * (size_t)V * sizeof(float)), *rows = malloc(3 * (size_t)V * sizeof(float));
    for (int s = 0; s < 2; s++) {
        struct cs_fwd_ctx *c = fu_ctx(&f, 64, 32, CS_TYPE_F32, CS_TYPE_F32);
        fu_last_logits(c, tok[s], n[s], alone + (size_t)s * V);
        cs_fwd_ctx_free(c);
    }
    struct cs_fwd_ctx *c = fu_ctx(&f, 40, 32, CS_TYPE_F32, CS_TYPE_F32);
    struct cs_batch b;
    assert_int_equal(cs_batch_init(&b, 64, err, sizeof err), 0);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < n[s]; i++)
            assert_int_equal(cs_batch_add(&b, tok[s][i], i, s, i == n[s] - 1, err, sizeof err), 0);
    for (int i = 0; i < 3 * V; i++)
        rows[i] = 12345.0f;
    int seq_rc[CS_MAX_SEQ];
    assert_int_equal(cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(seq_rc[0], CLSPEC_OK);
    assert_int_equal(seq_rc[1], CLSPEC_OK);
    assert_int_equal(seq_rc[2], CLSPEC_E_KV_FULL);
    assert_true(fu_max_rel(rows, alone, (size_t)V) <= 1e-5f);
    assert_true(fu_max_rel(rows + V, alone + V, (size_t)V) <= 1e-5f);
    assert_true(rows[2 * V] == 12345.0f); /* the refused sequence's row is left untouched */
    assert_int_equal(cs_kv_seq_n_cells(c->kv, 2), 0);
    assert_int_equal(c->kv->n_used, 26u);
    /* 0 and 1 decode on: 14 cells left, 7 steps each fit; the 8th step refuses both, the
     * cache stays usable */
    int32_t last[2] = {cs_argmax(rows, V), cs_argmax(rows + V, V)};
    for (int step = 0; step < 8; step++) {
        cs_batch_clear(&b);
        for (int s = 0; s < 2; s++)
            assert_int_equal(cs_batch_add(&b, last[s], n[s] + step, s, true, err, sizeof err), 0);
        assert_int_equal(cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err), CLSPEC_OK);
        int want = step < 7 ? CLSPEC_OK : CLSPEC_E_KV_FULL;
        assert_int_equal(seq_rc[0], want);
        assert_int_equal(seq_rc[1], want);
        for (int s = 0; s < 2 && want == CLSPEC_OK; s++)
            last[s] = cs_argmax(rows + (size_t)s * V, V);
    }
    assert_int_equal(c->kv->n_used, 40u);
    /* cs_forward reports the full cache as an error */
    int32_t p = 30;
    int rc = cs_forward(c, &last[0], 1, &p, NULL, NULL, 1, rows, NULL, err, sizeof err);
    assert_int_equal(rc, CLSPEC_E_KV_FULL);
    cs_batch_free(&b);
    cs_fwd_ctx_free(c);
    free(alone);
    free(rows);
    fu_close(&f);
}

/* Rollback: decode 12 tokens recording logits, remove the last 6 positions,
 * decode the same tokens again: identical logits. */
static void test_seq_rm_redecode(void **state)
{
    (void)state;
    struct fu_model f;
    if (fu_open("models/TinyStories-656K-Q8_0.gguf", 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    const int V = f.V;
    char err[CLSPEC_ERRLEN];
    struct golden *g = fu_golden("TinyStories-656K-Q8_0");
    const struct golden_case *gc = &g->cases[0];
    for (int t = 0; t < 2; t++) {
        uint32_t ty = t ? CS_TYPE_F16 : CS_TYPE_F32;
        struct cs_fwd_ctx *c = fu_ctx(&f, 128, 32, ty, ty);
        int32_t out[12];
        float *l1 = malloc(12 * (size_t)V * sizeof(float)), *l2 = malloc((size_t)V * sizeof(float));
        fu_greedy(c, gc->prompt, gc->n_prompt, 12, 2, out, l1);
        /* positions n_prompt + 5 .. are removed; the KV then holds prompt + out[0..5) */
        int32_t keep = gc->n_prompt + 5;
        assert_int_equal(cs_kv_seq_rm(c->kv, 2, keep, -1, err, sizeof err), 0);
        assert_int_equal(cs_kv_seq_pos_max(c->kv, 2), keep - 1);
        int32_t seq = 2;
        for (int s = 5; s < 11; s++) {
            int32_t p = gc->n_prompt + s - 1;
            assert_int_equal(cs_forward(c, &out[s - 1], 1, &p, &seq, NULL, 1, l2, NULL, err, sizeof err), 0);
            float d = fu_max_abs(l2, l1 + (size_t)s * V, (size_t)V);
            if (d != 0.0f)
                fail_msg("KV %s: step %d after seq_rm: max |d| %g", cs_type_name(ty), s, d);
        }
        free(l1);
        free(l2);
        cs_fwd_ctx_free(c);
    }
    golden_free(g);
    fu_close(&f);
}

/* A removed sequence's id reused with another prompt: what it reads is only
 * its new cells (the device's copy of the cell metadata follows the host's).
 * Sequences 0 and 2 keep cells around the holes so the cells the new prompt
 * takes are not the old ones in order. */
static void test_reuse_seq_id(void **state)
{
    (void)state;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    const int V = f.V;
    char err[CLSPEC_ERRLEN];
    struct tu_rng rng;
    tu_rng_seed(&rng, 11);
    int32_t a[30], bb[10], o[40];
    tu_rng_tokens(&rng, a, 30, V);
    tu_rng_tokens(&rng, bb, 10, V);
    tu_rng_tokens(&rng, o, 40, V);
    /* fresh: greedy 16 after prompt bb as sequence 1 */
    int32_t fresh_t[16], re_t[16];
    float *fresh = malloc(16 * (size_t)V * sizeof(float)), *re = malloc(16 * (size_t)V * sizeof(float));
    struct cs_fwd_ctx *c = fu_ctx(&f, 128, 32, CS_TYPE_F32, CS_TYPE_F32);
    fu_greedy(c, bb, 10, 16, 1, fresh_t, fresh);
    cs_fwd_ctx_free(c);
    /* used: seq 0 (10), seq 1 = a (30, decoded with seq 0 interleaved), seq 2 (10); then seq 1 removed */
    c = fu_ctx(&f, 128, 32, CS_TYPE_F32, CS_TYPE_F32);
    float *tmp = malloc((size_t)V * sizeof(float));
    int32_t pos[40];
    for (int i = 0; i < 40; i++)
        pos[i] = i;
    int32_t s0 = 0, s1 = 1, s2 = 2;
    assert_int_equal(cs_forward(c, o, 10, pos, (int32_t[10]){0}, NULL, 1, tmp, NULL, err, sizeof err), 0);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(cs_forward(c, &a[i], 1, &pos[i], &s1, NULL, 1, tmp, NULL, err, sizeof err), 0);
        if (i % 3 == 0)
            assert_int_equal(cs_forward(c, &o[10 + i / 3], 1, &pos[10 + i / 3], &s0, NULL, 1, tmp, NULL, err,
                                        sizeof err),
                             0);
    }
    int32_t sq2[10] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    assert_int_equal(cs_forward(c, o + 20, 10, pos, sq2, NULL, 1, tmp, NULL, err, sizeof err), 0);
    assert_int_equal(cs_kv_seq_rm(c->kv, 1, 0, -1, err, sizeof err), 0);
    assert_int_equal(cs_kv_seq_n_cells(c->kv, 1), 0);
    /* remove part of sequence 0 too, so holes are interleaved */
    assert_int_equal(cs_kv_seq_rm(c->kv, 0, 12, -1, err, sizeof err), 0);
    fu_greedy(c, bb, 10, 16, 1, re_t, re);
    (void)s2;
    for (int s = 0; s < 16; s++)
        assert_int_equal(re_t[s], fresh_t[s]);
    float d = fu_max_rel(re, fresh, 16 * (size_t)V);
    print_message("# reused sequence id: max rel diff to a fresh context %.3g\n", d);
    assert_true(d <= 1e-5f);
    free(tmp);
    free(fresh);
    free(re);
    cs_fwd_ctx_free(c);
    fu_close(&f);
}

/* Only requested rows come back, in batch order; hidden states are indexed
 * like the batch's rows, also when a sequence is refused. */
static void test_rows_and_hidden(void **state)
{
    (void)state;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    const int V = f.V, E = (int)f.m->hp.n_embd, NL = (int)f.m->hp.n_layer;
    char err[CLSPEC_ERRLEN];
    int32_t tok[8] = {1, 20, 30, 40, 50, 60, 70, 80}, pos[8];
    for (int i = 0; i < 8; i++)
        pos[i] = i;
    /* reference: all rows of one sequence */
    struct cs_fwd_ctx *c = fu_ctx(&f, 64, 8, CS_TYPE_F32, CS_TYPE_F32);
    float *all = malloc(8 * (size_t)V * sizeof(float));
    fu_all_logits(c, tok, 8, 0, all);
    int32_t layers[2] = {1, NL};
    float *h_ref = malloc(2 * 8 * (size_t)E * sizeof(float)), *h = malloc(2 * 16 * (size_t)E * sizeof(float));
    struct cs_fwd_hidden hr = {.n_layers = 2, .layers = layers, .out = h_ref};
    cs_kv_clear(c->kv);
    assert_int_equal(cs_forward(c, tok, 8, pos, NULL, NULL, 1, all + 7 * (size_t)V, &hr, err, sizeof err), 0);
    cs_fwd_ctx_free(c);
    /* batch: sequence 5 rows interleaved with sequence 9 rows (refused: cache of 10 cells) */
    c = fu_ctx(&f, 10, 3, CS_TYPE_F32, CS_TYPE_F32);
    struct cs_batch b;
    assert_int_equal(cs_batch_init(&b, 16, err, sizeof err), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cs_batch_add(&b, tok[i], i, 5, i == 2 || i == 6, err, sizeof err), 0);
        assert_int_equal(cs_batch_add(&b, tok[i], i, 9, i == 3, err, sizeof err), 0);
    }
    assert_int_equal(cs_batch_n_logits(&b), 3);
    float *rows = malloc(3 * (size_t)V * sizeof(float));
    for (int i = 0; i < 3 * V; i++)
        rows[i] = -7.0f;
    for (int i = 0; i < 2 * 16 * E; i++)
        h[i] = -7.0f;
    struct cs_fwd_hidden hb = {.n_layers = 2, .layers = layers, .out = h};
    int seq_rc[CS_MAX_SEQ];
    assert_int_equal(cs_forward_batch(c, &b, rows, &hb, seq_rc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(seq_rc[5], CLSPEC_OK);
    assert_int_equal(seq_rc[9], CLSPEC_E_KV_FULL);
    /* logits rows in batch order: seq 5 pos 2, seq 9 pos 3 (refused, untouched), seq 5 pos 6 */
    assert_true(fu_max_rel(rows, all + 2 * (size_t)V, (size_t)V) <= 1e-5f);
    assert_true(rows[V] == -7.0f);
    assert_true(fu_max_rel(rows + 2 * (size_t)V, all + 6 * (size_t)V, (size_t)V) <= 1e-5f);
    for (int li = 0; li < 2; li++)
        for (int i = 0; i < 8; i++) {
            assert_true(fu_max_rel(h + ((size_t)li * 16 + 2 * i) * E, h_ref + ((size_t)li * 8 + i) * E, (size_t)E) <=
                        1e-5f);
            assert_true(h[((size_t)li * 16 + 2 * i + 1) * E] == -7.0f);
        }
    /* invalid batches fail the whole call and place nothing */
    uint32_t used = c->kv->n_used;
    cs_batch_clear(&b);
    assert_int_equal(cs_batch_add(&b, 1, 0, 6, false, err, sizeof err), 0);
    assert_int_equal(cs_batch_add(&b, V, 1, 6, true, err, sizeof err), 0);
    assert_int_equal(cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err), CLSPEC_E_RANGE);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(c->kv->n_used, used);
    free(rows);
    free(all);
    free(h);
    free(h_ref);
    cs_batch_free(&b);
    cs_fwd_ctx_free(c);
    fu_close(&f);
}

/* Partitioned cache (2 sequences, 24 cells each): each sequence gets the
 * logits it gets alone; one that outgrows its partition is refused while
 * the other still has room. */
static void test_partitioned(void **state)
{
    (void)state;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    const int V = f.V;
    char err[CLSPEC_ERRLEN];
    int32_t tok[2][30];
    struct tu_rng rng;
    tu_rng_seed(&rng, 3);
    for (int s = 0; s < 2; s++)
        tu_rng_tokens(&rng, tok[s], 30, V);
    float *alone = malloc(2 * (size_t)V * sizeof(float)), *rows = malloc(2 * (size_t)V * sizeof(float));
    const int n[2] = {10, 20};
    for (int s = 0; s < 2; s++) {
        struct cs_fwd_ctx *c = fu_ctx(&f, 64, 32, CS_TYPE_F32, CS_TYPE_F32);
        fu_last_logits(c, tok[s], n[s], alone + (size_t)s * V);
        cs_fwd_ctx_free(c);
    }
    struct cs_fwd_ctx_params p = {.n_ctx = 48, .n_ubatch = 16, .n_seq_max = 2, .kv_partitioned = true};
    struct cs_fwd_ctx *c = NULL;
    if (cs_fwd_ctx_new(f.fm, &p, &c, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    struct cs_batch b;
    assert_int_equal(cs_batch_init(&b, 64, err, sizeof err), 0);
    for (int i = 0; i < 20; i++)
        for (int s = 0; s < 2; s++)
            if (i < n[s])
                assert_int_equal(cs_batch_add(&b, tok[s][i], i, s, i == n[s] - 1, err, sizeof err), 0);
    int seq_rc[CS_MAX_SEQ];
    assert_int_equal(cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(seq_rc[0], CLSPEC_OK);
    assert_int_equal(seq_rc[1], CLSPEC_OK);
    assert_true(fu_max_rel(rows, alone, (size_t)V) <= 1e-5f);
    assert_true(fu_max_rel(rows + V, alone + V, (size_t)V) <= 1e-5f);
    assert_int_equal(cs_kv_n_free(c->kv, 1), 4);
    /* sequence 1 asks for 5 more cells (4 left in its partition): refused; sequence 0 runs */
    cs_batch_clear(&b);
    for (int i = 0; i < 5; i++)
        assert_int_equal(cs_batch_add(&b, tok[1][20 + i], 20 + i, 1, i == 4, err, sizeof err), 0);
    assert_int_equal(cs_batch_add(&b, tok[0][10], 10, 0, true, err, sizeof err), 0);
    assert_int_equal(cs_forward_batch(c, &b, rows, NULL, seq_rc, err, sizeof err), CLSPEC_OK);
    assert_int_equal(seq_rc[1], CLSPEC_E_KV_FULL);
    assert_int_equal(seq_rc[0], CLSPEC_OK);
    assert_int_equal(cs_kv_seq_n_cells(c->kv, 1), 20);
    assert_int_equal(cs_kv_seq_n_cells(c->kv, 0), 11);
    cs_batch_free(&b);
    cs_fwd_ctx_free(c);
    free(alone);
    free(rows);
    fu_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_together_stories), cmocka_unit_test(test_together_ubatch),
        cmocka_unit_test(test_together_q8),      cmocka_unit_test(test_kv_full),
        cmocka_unit_test(test_seq_rm_redecode),  cmocka_unit_test(test_reuse_seq_id),
        cmocka_unit_test(test_rows_and_hidden),  cmocka_unit_test(test_partitioned),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
