/* test-mtp.c: target hidden-state taps (ABI 1.2 tap_request / tap_get) and
 * the mtp speculator over stories260K.
 * Taps: with the ngram plugin drafting, every position of every slot's
 * history (prefill in chunks, then each verification) is handed to the
 * plugin exactly once per forward, at the requested layers, equal to the
 * hidden states of one plain forward over the final history. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "common.h"
#include "engine.h"
#include "quant.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "testutil.h"

static struct cs_engine *engine_open(const char *model, uint32_t n_ctx, uint32_t n_seq, uint32_t kv_type,
                                     uint32_t n_batch)
{
    struct cs_engine_params p = cs_engine_defaults();
    char *path = tu_shared_path(model);
    p.model_path = path;
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.type_k = p.type_v = kv_type;
    p.n_batch = p.n_ubatch = n_batch;
    struct cs_engine *e = NULL;
    char err[CLSPEC_ERRLEN];
    if (cs_engine_open(&p, &e, err, sizeof err) != CLSPEC_OK)
        fail_msg("engine: %s", err);
    free(path);
    return e;
}

/* ---- taps ---- */

#define TAP_NL 3
#define TAP_GEN 40
#define TAP_MAXPOS 96

static void test_taps(void **state)
{
    (void)state;
    /* n_batch 4: the prompts are prefilled in several chunks */
    struct cs_engine *e = engine_open("models/stories260K.gguf", 256, 2, CS_TYPE_F32, 8);
    const uint32_t E = e->model->hp.n_embd, NL = e->model->hp.n_layer;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin_kv kv[] = {{"n_min_ngram", "1"}};
    struct cs_plugin_params pp = {.type = "ngram", .kv = kv, .n_kv = 1, .engine = e, .n_slots = 2};
    struct cs_plugin *pl = NULL;
    if (cs_plugin_load(&pp, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("ngram: %s", err);
    assert_true(pl->host.abi_minor >= 2);
    int32_t n_rows = 7, first = 7;
    assert_null(pl->host.tap_get(&pl->host, 0, &n_rows, &first)); /* nothing requested yet */
    assert_int_equal(n_rows, 0);
    const int32_t bad[] = {(int32_t)NL + 1};
    assert_int_not_equal(pl->host.tap_request(&pl->host, bad, 1, err, sizeof err), CLSPEC_OK);
    const int32_t layers[TAP_NL] = {0, 2, (int32_t)NL};
    assert_int_equal(pl->host.tap_request(&pl->host, layers, TAP_NL, err, sizeof err), CLSPEC_OK);

    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = 4;
    struct cs_spec *spec = NULL;
    assert_int_equal(cs_spec_new(e, pl, &sp, 2, &spec, err, sizeof err), CLSPEC_OK);
    const int32_t p0[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298}, p1[] = {1, 291, 280, 294, 262, 294};
    const int32_t *prompts[2] = {p0, p1};
    const int32_t np[2] = {11, 6};
    static float got[2][TAP_MAXPOS][TAP_NL][64];
    static int seen[2][TAP_MAXPOS];
    memset(seen, 0, sizeof seen);
    assert_true(E <= 64);
    struct cs_sampler *smp[2];
    int32_t left[2] = {TAP_GEN, TAP_GEN};
    for (int s = 0; s < 2; s++) {
        struct cs_sampler_params p = cs_sampler_defaults();
        p.temp = 0;
        assert_int_equal(cs_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_spec_slot_begin(spec, s, prompts[s], np[s], smp[s], true, err, sizeof err), CLSPEC_OK);
    }
    int64_t drafted = 0;
    for (int step = -1;; step++) {
        if (step >= 0) {
            if (left[0] <= 0 && left[1] <= 0)
                break;
            assert_int_equal(cs_spec_step(spec, left, err, sizeof err), CLSPEC_OK);
        }
        for (int s = 0; s < 2; s++) {
            const struct cs_spec_slot *sl = &spec->slots[s];
            if (step >= 0 && left[s] <= 0)
                continue;
            const float *t = pl->host.tap_get(&pl->host, s, &n_rows, &first);
            assert_non_null(t);
            /* prefill: positions 0..n_prompt-2; a step: [last, drafts] from the last token's position */
            int32_t want_first = step < 0 ? 0 : sl->n_hist - 1 - sl->n_out;
            assert_int_equal(first, want_first);
            int32_t n_keep = step < 0 ? np[s] - 1 : sl->n_out; /* rows of committed tokens */
            assert_true(n_rows >= n_keep);
            if (step >= 0) {
                drafted += n_rows - 1;
                left[s] -= sl->n_out;
            }
            for (int32_t r = 0; r < n_keep; r++) {
                int32_t pos = first + r;
                assert_true(pos < TAP_MAXPOS);
                assert_int_equal(seen[s][pos], 0);
                seen[s][pos] = 1;
                for (int l = 0; l < TAP_NL; l++)
                    memcpy(got[s][pos][l], t + ((size_t)l * (size_t)n_rows + (size_t)r) * E, E * sizeof(float));
            }
        }
    }
    assert_true(drafted > 0); /* verify rows with drafts were tapped */
    /* the reference: one forward over each final history */
    struct cs_engine *ref = engine_open("models/stories260K.gguf", 256, 1, CS_TYPE_F32, 128);
    float *hid = malloc((size_t)TAP_NL * TAP_MAXPOS * E * sizeof *hid);
    int32_t pos[TAP_MAXPOS];
    for (int i = 0; i < TAP_MAXPOS; i++)
        pos[i] = i;
    double max_diff = 0;
    for (int s = 0; s < 2; s++) {
        const struct cs_spec_slot *sl = &spec->slots[s];
        int32_t n = sl->n_hist - 1;
        for (int32_t p = 0; p < n; p++)
            assert_int_equal(seen[s][p], 1); /* every committed position was tapped */
        struct cs_fwd_hidden h = {.n_layers = TAP_NL, .layers = layers, .out = hid};
        cs_fwd_kv_clear(ref->ctx);
        float *lg = malloc((size_t)ref->model->hp.n_vocab * sizeof *lg);
        assert_int_equal(cs_forward(ref->ctx, sl->hist, n, pos, NULL, NULL, 0, lg, &h, err, sizeof err), CLSPEC_OK);
        free(lg);
        for (int32_t p = 0; p < n; p++)
            for (int l = 0; l < TAP_NL; l++)
                for (uint32_t k = 0; k < E; k++) {
                    double d = fabs((double)got[s][p][l][k] - hid[((size_t)l * (size_t)n + (size_t)p) * E + k]);
                    max_diff = d > max_diff ? d : max_diff;
                }
    }
    print_message("taps: %lld draft rows tapped, max |diff| vs one forward %.3g\n", (long long)drafted, max_diff);
    assert_true(max_diff < 1e-4);
    /* a new request drops the slot's old rows */
    cs_spec_slot_end(spec, 0);
    assert_int_equal(cs_spec_slot_begin(spec, 0, p0, 1, smp[0], true, err, sizeof err), CLSPEC_OK);
    assert_null(pl->host.tap_get(&pl->host, 0, &n_rows, &first));
    for (int s = 0; s < 2; s++)
        cs_sampler_free(smp[s]);
    free(hid);
    cs_spec_free(spec);
    cs_plugin_free(pl);
    cs_engine_free(ref);
    cs_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
