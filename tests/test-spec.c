/* test-spec.c: the speculative step (src/spec/spec.c) with the ngram and
 * draft plugins over stories260K: greedy output with speculation is identical to output
 * without it on the prompts of reference/greedy-stories260K.json (64
 * tokens), at parallel 1 and 4, KV f32, f16, q8_0 and q4_0; every slot holds exactly
 * n_hist - 1 KV cells after every step; seeded sampling (T > 0, penalties)
 * gives the same tokens and the same final sampler state (RNG + penalty
 * history) as a run without speculation; a KV cache that fills shrinks or
 * skips drafts; switching speculation off mid-request clears the plugin's
 * state; the draft model samples through rejection sampling, reproducibly,
 * and refuses a missing model or another vocabulary; rejection sampling
 * keeps the target distribution (chi-square); a prompt chunk of another
 * sequence rides in a step's forward (cs_spec_step_extra) without changing
 * any output, and each emitted token's logits row is the one it came from;
 * the cost-aware controller (CS_SPEC_CTL_COST) changes draft lengths, never
 * the output (greedy, and seeded sampling with ngram). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/api.h"
#include "fwdutil.h"
#include "base/common.h"
#include "engine/engine.h"
#include "fwdutil.h"
#include "golden.h"
#include "gguf/quant.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "testutil.h"

#define NGEN 64

static struct golden *G;

/* NULL with the engine's message in err when it cannot be opened. */
static struct cs_engine *engine_try(uint32_t n_ctx, uint32_t n_seq, uint32_t kv_type, char *err, size_t errlen)
{
    struct cs_engine_params p = cs_engine_defaults();
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.type_k = p.type_v = kv_type;
    p.n_batch = p.n_ubatch = 128;
    struct cs_engine *e = NULL;
    fu_engine_try("models/stories260K.gguf", &p, &e, err, errlen);
    return e;
}

static struct cs_engine *engine_open(uint32_t n_ctx, uint32_t n_seq, uint32_t kv_type)
{
    char err[CLSPEC_ERRLEN];
    struct cs_engine *e = engine_try(n_ctx, n_seq, kv_type, err, sizeof err);
    if (!e)
        fail_msg("engine: %s", err);
    return e;
}

static struct cs_plugin *ngram_open(struct cs_engine *e, uint32_t n_slots, const char *n_min_ngram)
{
    struct cs_plugin_kv kv[] = {{"n_min_ngram", n_min_ngram}, {"n_max_ngram", "4"}};
    struct cs_plugin_params pp = {.type = "ngram", .kv = kv, .n_kv = 2, .engine = e, .n_slots = n_slots};
    struct cs_plugin *pl = NULL;
    char err[CLSPEC_ERRLEN];
    if (cs_plugin_load(&pp, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("ngram: %s", err);
    return pl;
}

static struct cs_plugin *draft_open(struct cs_engine *e, uint32_t n_slots, const char *model, char *err,
                                     size_t errlen)
{
    char *path = model ? tu_shared_path(model) : NULL;
    struct cs_plugin_kv kv[] = {{"model", path}};
    struct cs_plugin_params pp = {.type = "draft", .kv = kv, .n_kv = path ? 1 : 0, .engine = e, .n_slots = n_slots};
    struct cs_plugin *pl = NULL;
    int rc = cs_plugin_load(&pp, &pl, err, errlen);
    free(path);
    return rc == CLSPEC_OK ? pl : NULL;
}

#define DRAFT_MODEL "models/derived/stories260K-draft-distilled.gguf"

static int g_ctl = CS_SPEC_CTL_ACCEPT; /* gen()'s draft-length controller */
static bool g_dev = false;             /* gen(): greedy steps verify on the device (samplers keep no logits) */
static int32_t g_ban = -1;             /* gen(): >= 0: every sampler bans this token (logit bias -inf) */

struct run {
    int32_t tok[4][NGEN];    /* per case */
    int n[4];
    struct cs_spec_stats st;
    struct cs_sampler_state final[4]; /* rng + counters (hist copied below) */
    int32_t hist[4][64];
};

/* Generates NGEN tokens for the golden cases [c0, c0 + n_slots) on slots
 * 0..n_slots-1 at once, checking the KV cell count after every step. */
static void gen(struct cs_engine *e, struct cs_plugin *pl, int c0, int n_slots, float temp, struct run *out,
                int disable_after)
{
    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = 6;
    sp.ctl = g_ctl;
    struct cs_spec *spec = NULL;
    char err[CLSPEC_ERRLEN];
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &sp, n_slots, &spec, err, sizeof err), CLSPEC_OK);
    clspec_sampler *smp[4] = {NULL};
    int32_t left[4] = {0};
    for (int s = 0; s < n_slots; s++) {
        struct cs_sampler_params p = cs_sampler_defaults();
        p.temp = temp;
        p.seed = 1234 + (uint64_t)(c0 + s);
        if (temp > 0) {
            p.repeat_penalty = 1.3f;
            p.penalty_last_n = 16;
            p.top_k = 0;
            p.top_p = 1.0f;
            p.min_p = 0.0f;
        }
        assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err), CLSPEC_OK);
        if (g_ban >= 0) {
            const float b = -INFINITY;
            assert_int_equal(clspec_sampler_set_logit_bias(smp[s], &g_ban, &b, 1, err, sizeof err), CLSPEC_OK);
            assert_int_equal(clspec_sampler_n_logit_bias(smp[s]), 1);
        }
        const struct golden_case *gc = &G->cases[c0 + s];
        for (int i = 0; i < gc->n_prompt; i++)
            clspec_sampler_accept(smp[s], gc->prompt[i]);
        cs_api_sampler_keep_logits(smp[s], !g_dev);
        if (cs_spec_slot_begin(spec, s, gc->prompt, gc->n_prompt, smp[s], true, err, sizeof err) != CLSPEC_OK)
            fail_msg("slot_begin: %s", err);
        assert_int_equal(cs_spec_kv_cells(spec->e, s), (uint32_t)(gc->n_prompt - 1));
        left[s] = NGEN;
        out->n[c0 + s] = 0;
    }
    uint64_t drafted_at_disable = 0;
    for (int step = 0;; step++) {
        bool any = false;
        for (int s = 0; s < n_slots; s++)
            any |= left[s] > 0;
        if (!any)
            break;
        if (step == disable_after)
        {
            for (int s = 0; s < n_slots; s++) {
                cs_spec_slot_disable(spec, s, "test");
                assert_false(spec->slots[s].on);
                assert_int_equal(spec->slots[s].n_draft, 0);
            }
            drafted_at_disable = spec->total.n_drafted;
        }
        if (cs_spec_step(spec, left, err, sizeof err) != CLSPEC_OK)
            fail_msg("step: %s", err);
        for (int s = 0; s < n_slots; s++) {
            const struct cs_spec_slot *sl = &spec->slots[s];
            assert_int_equal(sl->rc, CLSPEC_OK);
            for (int i = 0; i < sl->n_out; i++)
                out->tok[c0 + s][out->n[c0 + s]++] = sl->out[i];
            left[s] = sl->eog ? 0 : left[s] - sl->n_out;
            /* no orphan cells: the slot holds exactly its history but the last token */
            assert_int_equal(cs_spec_kv_cells(spec->e, s), (uint32_t)(sl->n_hist - 1));
        }
    }
    if (disable_after < (1 << 30)) /* no draft after the switch */
        assert_int_equal(spec->total.n_drafted, drafted_at_disable);
    out->st.n_drafted += spec->total.n_drafted;
    out->st.n_accepted += spec->total.n_accepted;
    out->st.n_steps += spec->total.n_steps;
    out->st.n_calls += spec->total.n_calls;
    out->st.n_syncs += spec->total.n_syncs;
    out->st.n_syncs_draft += spec->total.n_syncs_draft;
    out->st.n_greedy_rows += spec->total.n_greedy_rows;
    for (int s = 0; s < n_slots; s++) {
        const struct cs_sampler *cs = cs_api_sampler(smp[s]);
        out->final[c0 + s] = cs->st;
        memcpy(out->hist[c0 + s], cs->st.hist, (size_t)cs->st.hist_cap * sizeof(int32_t));
        cs_spec_slot_end(spec, s);
        assert_int_equal(cs_spec_kv_cells(spec->e, s), 0);
        clspec_sampler_free(smp[s]);
    }
    cs_spec_free(spec);
    clspec_engine_free(door);
}

static void gen_all(struct cs_engine *e, struct cs_plugin *pl, int parallel, float temp, struct run *r,
                    int disable_after)
{
    memset(r, 0, sizeof *r);
    for (int c0 = 0; c0 < G->n_cases; c0 += parallel)
        gen(e, pl, c0, CS_MIN(parallel, G->n_cases - c0), temp, r, disable_after);
}

static void assert_same(const struct run *a, const struct run *b, const char *what)
{
    for (int c = 0; c < G->n_cases; c++) {
        if (a->n[c] != b->n[c] || memcmp(a->tok[c], b->tok[c], (size_t)a->n[c] * sizeof(int32_t)) != 0) {
            int i = 0;
            while (i < a->n[c] && i < b->n[c] && a->tok[c][i] == b->tok[c][i])
                i++;
            fail_msg("%s: case %d differs at token %d (%d vs %d tokens)", what, c, i, a->n[c], b->n[c]);
        }
    }
}

/* ---- lossless, greedy ---- */

static void lossless(uint32_t kv_type, int parallel)
{
    char err0[CLSPEC_ERRLEN];
    struct cs_engine *e = engine_try(512, 4, kv_type, err0, sizeof err0);
    if (!e)
        fail_msg("engine: %s", err0);
    static struct run base, spec1, spec2;
    gen_all(e, NULL, parallel, 0.0f, &base, 1 << 30);
    /* the run without speculation is llama.cpp's greedy run (where it has the steps) */
    int agree = 0;
    for (int c = 0; c < G->n_cases; c++)
        for (int i = 0; i < base.n[c] && i < G->cases[c].n_steps && base.tok[c][i] == G->cases[c].steps[i].token;
             i++)
            agree++;
    /* plain decoding samples every logits row on the host (base); the other runs verify on the device */
    g_dev = true;
    static struct run base_dev;
    gen_all(e, NULL, parallel, 0.0f, &base_dev, 1 << 30);
    struct cs_plugin *pl = ngram_open(e, 4, "2");
    gen_all(e, pl, parallel, 0.0f, &spec1, 1 << 30);
    cs_plugin_free(pl);
    pl = ngram_open(e, 4, "1"); /* drafts on every repeated token: many rejections */
    gen_all(e, pl, parallel, 0.0f, &spec2, 1 << 30);
    cs_plugin_free(pl);
    static struct run spec3;
    char err[CLSPEC_ERRLEN];
    pl = draft_open(e, 4, DRAFT_MODEL, err, sizeof err);
    if (!pl)
        fail_msg("draft: %s", err);
    gen_all(e, pl, parallel, 0.0f, &spec3, 1 << 30);
    cs_plugin_free(pl);
    g_dev = false;
    assert_same(&base, &base_dev, "plain decoding verified on the device");
    /* every target row of the device runs came back as its argmax alone; the target's step (ngram
     * drafts on the host) is one host sync, with or without a draft */
    assert_int_equal(base.st.n_greedy_rows, 0);
    assert_int_equal(base_dev.st.n_greedy_rows, base_dev.st.n_steps);
    assert_int_equal(spec2.st.n_greedy_rows, spec2.st.n_steps + spec2.st.n_drafted);
    assert_int_equal(base_dev.st.n_syncs, base_dev.st.n_calls);
    assert_int_equal(spec2.st.n_syncs, spec2.st.n_calls);
    assert_int_equal(spec2.st.n_syncs_draft, 0);
    print_message("kv %s parallel %d: reference agreement %d tokens; ngram(2) drafted %llu accepted %llu; "
                  "ngram(1) drafted %llu accepted %llu; draft drafted %llu accepted %llu\n",
                  cs_type_name(kv_type), parallel, agree, (unsigned long long)spec1.st.n_drafted,
                  (unsigned long long)spec1.st.n_accepted, (unsigned long long)spec2.st.n_drafted,
                  (unsigned long long)spec2.st.n_accepted, (unsigned long long)spec3.st.n_drafted,
                  (unsigned long long)spec3.st.n_accepted);
    assert_same(&base, &spec1, "ngram n_min 2");
    assert_same(&base, &spec2, "ngram n_min 1");
    assert_same(&base, &spec3, "draft model");
    assert_true(spec3.st.n_accepted > spec3.st.n_drafted / 4); /* a distilled draft: well above chance */
    /* the speculation was real: drafts were both accepted and rejected */
    assert_true(spec2.st.n_drafted > 0);
    assert_true(spec2.st.n_accepted > 0);
    assert_true(spec2.st.n_accepted < spec2.st.n_drafted);
    assert_true(spec2.st.n_steps < base.st.n_steps);
    cs_engine_free(e);
}

struct lossless_cfg {
    uint32_t kv_type;
    int parallel;
};

static void test_lossless(void **state)
{
    const struct lossless_cfg *c = *state;
    lossless(c->kv_type, c->parallel);
}

/* ---- sampling: same tokens and the same sampler state as without speculation ---- */

static void test_sampler_state(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 4, CS_TYPE_F32);
    static struct run base, spec;
    gen_all(e, NULL, 4, 0.9f, &base, 1 << 30);
    struct cs_plugin *pl = ngram_open(e, 4, "1");
    gen_all(e, pl, 4, 0.9f, &spec, 1 << 30);
    cs_plugin_free(pl);
    print_message("T 0.9: drafted %llu accepted %llu\n", (unsigned long long)spec.st.n_drafted,
                  (unsigned long long)spec.st.n_accepted);
    assert_true(spec.st.n_drafted > spec.st.n_accepted);
    assert_same(&base, &spec, "sampling T 0.9");
    for (int c = 0; c < G->n_cases; c++) {
        assert_memory_equal(base.final[c].rng, spec.final[c].rng, sizeof base.final[c].rng);
        assert_int_equal(base.final[c].hist_n, spec.final[c].hist_n);
        assert_int_equal(base.final[c].hist_head, spec.final[c].hist_head);
        assert_memory_equal(base.hist[c], spec.hist[c], (size_t)base.final[c].hist_cap * sizeof(int32_t));
    }
    cs_engine_free(e);
}

/* ---- the draft model at T > 0: rejection sampling with its (one-hot) q ---- */

static void test_draft_sampling(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 4, CS_TYPE_F16);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = draft_open(e, 4, DRAFT_MODEL, err, sizeof err);
    if (!pl)
        fail_msg("draft: %s", err);
    assert_true(pl->vt.caps & CLSPEC_SPEC_CAP_DRAFT_PROBS);
    static struct run a, b;
    gen_all(e, pl, 4, 0.9f, &a, 1 << 30); /* gen() checks the KV cells after every step */
    gen_all(e, pl, 4, 0.9f, &b, 1 << 30);
    cs_plugin_free(pl);
    print_message("draft T 0.9: drafted %llu accepted %llu\n", (unsigned long long)a.st.n_drafted,
                  (unsigned long long)a.st.n_accepted);
    assert_true(a.st.n_accepted > 0 && a.st.n_accepted < a.st.n_drafted);
    assert_same(&a, &b, "identical seeded requests"); /* bit-identical output for identical requests */
    cs_engine_free(e);
}

/* ---- the cost-aware controller: lengths change with measured time, output does not ---- */

static void test_cost_ctl(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 4, CS_TYPE_F16);
    char err[CLSPEC_ERRLEN];
    static struct run base, greedy, base_t, samp;
    gen_all(e, NULL, 4, 0.0f, &base, 1 << 30);
    gen_all(e, NULL, 1, 0.9f, &base_t, 1 << 30);
    struct cs_plugin *pl = draft_open(e, 4, DRAFT_MODEL, err, sizeof err);
    if (!pl)
        fail_msg("draft: %s", err);
    g_ctl = CS_SPEC_CTL_COST; /* greedy with the draft model, T 0.9 with ngram */
    gen_all(e, pl, 4, 0.0f, &greedy, 1 << 30);
    cs_plugin_free(pl);
    pl = ngram_open(e, 4, "1"); /* no draft probabilities: sample-and-match draws what plain decoding draws */
    gen_all(e, pl, 1, 0.9f, &samp, 1 << 30);
    g_ctl = CS_SPEC_CTL_ACCEPT;
    cs_plugin_free(pl);
    print_message("cost controller: greedy drafted %llu accepted %llu; T 0.9 drafted %llu accepted %llu\n",
                  (unsigned long long)greedy.st.n_drafted, (unsigned long long)greedy.st.n_accepted,
                  (unsigned long long)samp.st.n_drafted, (unsigned long long)samp.st.n_accepted);
    /* it drafted (after one plain step it tries the longest draft before it knows the cost) */
    assert_true(greedy.st.n_drafted > 0);
    assert_true(samp.st.n_drafted > 0);
    assert_same(&base, &greedy, "cost controller, greedy, parallel 4");
    assert_same(&base_t, &samp, "cost controller, T 0.9");
    for (int c = 0; c < G->n_cases; c++) {
        assert_memory_equal(base_t.final[c].rng, samp.final[c].rng, sizeof base_t.final[c].rng);
        assert_memory_equal(base_t.hist[c], samp.hist[c], (size_t)base_t.final[c].hist_cap * sizeof(int32_t));
    }
    /* a controller that is neither is refused */
    struct cs_spec_params sp = cs_spec_defaults();
    sp.ctl = 7;
    struct cs_spec *spec = NULL;
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, NULL, &sp, 1, &spec, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "ctl 7"));
    clspec_engine_free(door);
    cs_engine_free(e);
}

/* ---- the draft model's chain on the device (host 1.6) against depth-by-depth decoding ---- */

/* Greedy, parallel 4 and 1: the draft plugin on this host chains its draft
 * on the device (ctx_decode_chain); with the entry taken away (a host of
 * ABI 1.5) it decodes depth by depth. Same drafts, same output, and the
 * chain blocks the host fewer times while drafting. */
static void test_draft_chain(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 4, CS_TYPE_F16);
    char err[CLSPEC_ERRLEN];
    static struct run chain, old;
    for (int par = 1; par <= 4; par += 3) {
        g_dev = true;
        struct cs_plugin *pl = draft_open(e, 4, DRAFT_MODEL, err, sizeof err);
        if (!pl)
            fail_msg("draft: %s", err);
        assert_non_null(pl->host.ctx_decode_chain);
        gen_all(e, pl, par, 0.0f, &chain, 1 << 30);
        pl->host.abi_minor = 5; /* as an older host: no chain entry */
        pl->host.ctx_decode_chain = NULL;
        gen_all(e, pl, par, 0.0f, &old, 1 << 30);
        cs_plugin_free(pl);
        g_dev = false;
        print_message("parallel %d: drafted %llu accepted %llu; syncs drafting: chain %llu, depth by depth %llu "
                      "(%llu steps)\n", par, (unsigned long long)chain.st.n_drafted,
                      (unsigned long long)chain.st.n_accepted, (unsigned long long)chain.st.n_syncs_draft,
                      (unsigned long long)old.st.n_syncs_draft, (unsigned long long)chain.st.n_calls);
        assert_same(&old, &chain, "draft chain on the device");
        assert_int_equal(chain.st.n_drafted, old.st.n_drafted);
        assert_int_equal(chain.st.n_accepted, old.st.n_accepted);
        assert_true(chain.st.n_drafted > 0);
        assert_true(chain.st.n_syncs_draft <= chain.st.n_calls); /* at most one per step */
        assert_true(chain.st.n_syncs_draft < old.st.n_syncs_draft);
    }
    cs_engine_free(e);
}

/* ---- a biased greedy sampler is no plain argmax: it never verifies on the device ---- */

static void test_bias_host(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 4, CS_TYPE_F16);
    static struct run plain, host, dev;
    gen_all(e, NULL, 4, 0.0f, &plain, 1 << 30);
    g_ban = plain.tok[0][1]; /* a token greedy decoding picks */
    gen_all(e, NULL, 4, 0.0f, &host, 1 << 30);
    g_dev = true;
    struct cs_plugin *pl = ngram_open(e, 4, "1");
    gen_all(e, pl, 4, 0.0f, &dev, 1 << 30);
    cs_plugin_free(pl);
    g_dev = false;
    const int32_t ban = g_ban;
    g_ban = -1;
    assert_same(&host, &dev, "greedy with a logit bias, ngram drafts, slots asking for the device path");
    assert_int_equal(dev.st.n_greedy_rows, 0); /* the bias kept every row on the host */
    assert_true(dev.st.n_drafted > 0);
    for (int c = 0; c < G->n_cases; c++)
        for (int i = 0; i < host.n[c]; i++)
            assert_int_not_equal(host.tok[c][i], ban);
    cs_engine_free(e);
}

/* ---- the draft model's start-up refusals ---- */

static void test_draft_refusals(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(256, 1, CS_TYPE_F32);
    char err[CLSPEC_ERRLEN];
    assert_null(draft_open(e, 1, NULL, err, sizeof err));
    print_message("%s\n", err);
    assert_non_null(strstr(err, "init failed: draft: no model"));
    assert_null(draft_open(e, 1, "models/derived/TinyStories-656K-Q4_0.gguf", err, sizeof err));
    print_message("%s\n", err);
    assert_non_null(strstr(err, "the vocabularies must be the same"));
    cs_engine_free(e);
}

/* ---- switching speculation off mid-request ---- */

static void test_disable(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 4, CS_TYPE_F32);
    static struct run base, spec;
    gen_all(e, NULL, 4, 0.0f, &base, 1 << 30);
    struct cs_plugin *pl = ngram_open(e, 4, "1");
    gen_all(e, pl, 4, 0.0f, &spec, 10); /* gen() asserts no drafts from step 10 on */
    cs_plugin_free(pl);
    assert_same(&base, &spec, "disabled at step 10");
    assert_true(spec.st.n_drafted > 0); /* it was on before the switch */
    cs_engine_free(e);
}

/* ---- speculation off for one request ("speculative": false), on for the next ---- */

static void test_per_request_off(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(256, 1, CS_TYPE_F32);
    struct cs_plugin *pl = ngram_open(e, 1, "1");
    struct cs_spec_params sp = cs_spec_defaults();
    struct cs_spec *spec = NULL;
    char err[CLSPEC_ERRLEN];
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &sp, 1, &spec, err, sizeof err), CLSPEC_OK);
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 0;
    clspec_sampler *smp = NULL;
    assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp, err, sizeof err), CLSPEC_OK);
    const struct golden_case *gc = &G->cases[0];
    for (int on = 0; on < 2; on++) {
        assert_int_equal(cs_spec_slot_begin(spec, 0, gc->prompt, gc->n_prompt, smp, on, err, sizeof err), 0);
        assert_int_equal(spec->slots[0].on, on);
        int32_t left = 48;
        while (left > 0) {
            assert_int_equal(cs_spec_step(spec, &left, err, sizeof err), CLSPEC_OK);
            left -= spec->slots[0].n_out;
        }
        if (!on)
            assert_int_equal(spec->slots[0].st.n_drafted, 0);
        else
            assert_true(spec->slots[0].st.n_drafted > 0);
        cs_spec_slot_end(spec, 0);
        assert_int_equal(cs_spec_kv_cells(spec->e, 0), 0);
    }
    clspec_sampler_free(smp);
    cs_spec_free(spec);
    clspec_engine_free(door);
    cs_plugin_free(pl);
    cs_engine_free(e);
}

/* ---- extra rows: a prompt chunk of another sequence rides in the step's forward ---- */

/* Slot 0 speculates (ngram) on case 0 while case 1's whole prompt rides in
 * the first step's forward as extra rows of sequence 1; then slot 1 joins
 * the core with the prompt in the KV (begin_cached). Both outputs equal a
 * plain run's; the extra rows' logits give case 1's first token; every
 * emitted token is the argmax of the row cs_spec_out_logits names; an
 * extra row of an active slot is refused. */
static void test_step_extra(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(512, 2, CS_TYPE_F32);
    struct run ref;
    memset(&ref, 0, sizeof ref);
    gen(e, NULL, 0, 2, 0.0f, &ref, 1 << 30);
    struct cs_plugin *pl = ngram_open(e, 2, "1");
    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = 6;
    struct cs_spec *spec = NULL;
    char err[CLSPEC_ERRLEN];
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &sp, 2, &spec, err, sizeof err), CLSPEC_OK);
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 0;
    clspec_sampler *smp[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++)
        assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err), CLSPEC_OK);
    const struct golden_case *g0 = &G->cases[0], *g1 = &G->cases[1];
    for (int s = 0; s < 2; s++) /* as gen() does */
        for (int i = 0; i < G->cases[s].n_prompt; i++)
            clspec_sampler_accept(smp[s], G->cases[s].prompt[i]);
    /* slot 0 verifies on the device, next to the extra rows' logits; slot 1 reads its rows' logits */
    cs_api_sampler_keep_logits(smp[1], true);
    assert_int_equal(cs_spec_slot_begin(spec, 0, g0->prompt, g0->n_prompt, smp[0], true, err, sizeof err), 0);
    struct cs_batch xb;
    assert_int_equal(cs_batch_init(&xb, g1->n_prompt, err, sizeof err), CLSPEC_OK);
    /* a row of the active slot 0: refused, nothing runs */
    cs_batch_add(&xb, g0->prompt[0], 0, 0, false, err, sizeof err);
    struct clspec_batch xcb = {sizeof xcb, 0, xb.token, xb.pos, xb.seq, xb.logits, NULL, NULL};
    struct cs_spec_extra x = {.b = &xcb};
    xcb.n_rows = xb.n;
    int32_t left[2] = {NGEN, 0};
    assert_int_equal(cs_spec_step_extra(spec, left, &x, err, sizeof err), CLSPEC_E_INVAL);
    assert_null(x.logits);
    assert_int_equal(cs_spec_kv_cells(spec->e, 0), (uint32_t)(g0->n_prompt - 1));
    cs_batch_clear(&xb);
    for (int i = 0; i < g1->n_prompt; i++)
        cs_batch_add(&xb, g1->prompt[i], i, 1, i == g1->n_prompt - 1, err, sizeof err);
    xcb.n_rows = xb.n;
    int32_t out[2][NGEN + 8];
    int n[2] = {0, 0};
    for (int step = 0; left[0] > 0 || left[1] > 0; step++) {
        assert_int_equal(cs_spec_step_extra(spec, left, step == 0 ? &x : NULL, err, sizeof err), CLSPEC_OK);
        for (int s = 0; s < 2; s++) {
            const struct cs_spec_slot *sl = &spec->slots[s];
            if (!sl->active)
                continue;
            assert_int_equal(sl->rc, CLSPEC_OK);
            for (int t = 0; t < sl->n_out; t++) {
                if (s == 0) /* only argmaxes came back */
                    assert_null(cs_spec_out_logits(spec, s, t));
                else
                    assert_int_equal(cs_argmax(cs_spec_out_logits(spec, s, t), spec->n_vocab), sl->out[t]);
                out[s][n[s]++] = sl->out[t];
            }
            assert_null(cs_spec_out_logits(spec, s, sl->n_out));
            left[s] = sl->eog ? 0 : left[s] - sl->n_out;
            assert_int_equal(cs_spec_kv_cells(spec->e, s), (uint32_t)(sl->n_hist - 1));
        }
        if (step > 0)
            continue;
        /* the extra rows: placed, their logits give case 1's first token; slot 1 joins */
        assert_int_equal(x.seq_rc[1], CLSPEC_OK);
        assert_non_null(x.logits);
        assert_int_equal(cs_spec_kv_cells(spec->e, 1), (uint32_t)g1->n_prompt);
        int32_t tok = cs_argmax(x.logits, spec->n_vocab);
        clspec_sampler_accept(smp[1], tok);
        out[1][n[1]++] = tok;
        int32_t hist[512];
        memcpy(hist, g1->prompt, (size_t)g1->n_prompt * sizeof *hist);
        hist[g1->n_prompt] = tok;
        assert_int_equal(cs_spec_slot_begin_cached(spec, 1, hist, g1->n_prompt + 1, g1->n_prompt, smp[1], true, err,
                                                   sizeof err),
                         CLSPEC_OK);
        left[1] = NGEN - 1;
    }
    for (int s = 0; s < 2; s++) {
        assert_int_equal(n[s], ref.n[s]);
        assert_memory_equal(out[s], ref.tok[s], (size_t)n[s] * sizeof(int32_t));
    }
    assert_true(spec->total.n_drafted > 0);
    cs_batch_free(&xb);
    for (int s = 0; s < 2; s++)
        clspec_sampler_free(smp[s]);
    cs_spec_free(spec);
    clspec_engine_free(door);
    cs_plugin_free(pl);
    cs_engine_free(e);
}

/* ---- a KV cache that fills: drafts shrink, then the slot reports KV full ---- */

static void test_kv_full(void **state)
{
    (void)state;
    const struct golden_case *gc = &G->cases[0];
    const uint32_t n_ctx = (uint32_t)gc->n_prompt + 40;
    struct cs_engine *e = engine_open(n_ctx, 1, CS_TYPE_F32);
    int32_t toks[2][256];
    int n[2] = {0, 0};
    for (int mode = 0; mode < 2; mode++) {
        struct cs_plugin *pl = mode ? ngram_open(e, 1, "1") : NULL;
        struct cs_spec_params sp = cs_spec_defaults();
        sp.n_max = 8;
        struct cs_spec *spec = NULL;
        char err[CLSPEC_ERRLEN];
        clspec_engine *door = fu_door(e);
        assert_int_equal(cs_spec_new(door, pl, &sp, 1, &spec, err, sizeof err), CLSPEC_OK);
        struct cs_sampler_params p = cs_sampler_defaults();
        p.temp = 0;
        clspec_sampler *smp = NULL;
        assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp, err, sizeof err), CLSPEC_OK);
        cs_api_sampler_keep_logits(smp, mode == 0); /* the speculating run verifies on the device, retries too */
        assert_int_equal(cs_spec_slot_begin(spec, 0, gc->prompt, gc->n_prompt, smp, true, err, sizeof err), 0);
        int32_t left = 1000;
        int full = 0;
        for (int step = 0; step < 200 && !full; step++) {
            assert_int_equal(cs_spec_step(spec, &left, err, sizeof err), CLSPEC_OK);
            const struct cs_spec_slot *sl = &spec->slots[0];
            if (sl->rc == CLSPEC_E_KV_FULL) {
                assert_int_equal(sl->n_out, 0);
                full = 1;
            }
            for (int i = 0; i < sl->n_out; i++)
                toks[mode][n[mode]++] = sl->out[i];
            assert_true(cs_spec_kv_cells(spec->e, 0) <= n_ctx);
            assert_int_equal(cs_spec_kv_cells(spec->e, 0), (uint32_t)(sl->n_hist - 1));
            if (sl->eog)
                break;
        }
        /* near the end drafts were cut to the free cells (none without a speculator) */
        print_message("mode %d: %llu steps with a draft shortened for want of cells\n", mode,
                      (unsigned long long)spec->total.n_kv_shrunk);
        if (mode)
            assert_true(spec->total.n_kv_shrunk >= 1);
        else
            assert_int_equal(spec->total.n_kv_shrunk, 0);
        cs_spec_free(spec);
        clspec_engine_free(door);
        clspec_sampler_free(smp);
        cs_plugin_free(pl);
    }
    print_message("kv full after %d / %d tokens\n", n[0], n[1]);
    /* both stop at the same token: the cache is used to its last cell */
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(toks[0], toks[1], (size_t)n[0] * sizeof(int32_t));
    cs_engine_free(e);
}

/* ---- rejection sampling keeps the target distribution ---- */

static double chi2(const long *obs, const double *p, int n, long total)
{
    double x = 0;
    for (int i = 0; i < n; i++) {
        double ex = p[i] * (double)total;
        if (ex > 0)
            x += ((double)obs[i] - ex) * ((double)obs[i] - ex) / ex;
        else if (obs[i] > 0)
            return INFINITY;
    }
    return x;
}

static void test_rejection_sampling(void **state)
{
    (void)state;
    enum { N = 8, TRIALS = 200000 };
    /* target p and a quite different draft q (q has mass where p has none and vice versa) */
    const float p[N] = {0.30f, 0.20f, 0.15f, 0.10f, 0.10f, 0.10f, 0.05f, 0.00f};
    const float q[N] = {0.05f, 0.40f, 0.05f, 0.20f, 0.00f, 0.10f, 0.10f, 0.10f};
    double pd[N], qd[N];
    for (int i = 0; i < N; i++) {
        pd[i] = p[i];
        qd[i] = q[i];
    }
    struct tu_rng r;
    tu_rng_seed(&r, 42);
    long out[N] = {0}, drawn[N] = {0}, n_acc = 0;
    float resid[N];
    for (long t = 0; t < TRIALS; t++) {
        double u0 = (double)(tu_rng_u64(&r) >> 11) * 0x1.0p-53, cum = 0;
        int d = N - 1;
        for (int i = 0; i < N; i++) {
            cum += q[i];
            if (u0 < cum) {
                d = i;
                break;
            }
        }
        drawn[d]++;
        bool acc = false;
        double u = (double)(tu_rng_u64(&r) >> 11) * 0x1.0p-53, u2 = (double)(tu_rng_u64(&r) >> 11) * 0x1.0p-53;
        int32_t tok = cs_spec_rs_token(p, q, N, d, u, u2, resid, &acc);
        assert_true(tok >= 0 && tok < N);
        assert_true(p[tok] > 0.0f);
        if (acc)
            assert_int_equal(tok, d);
        n_acc += acc;
        out[tok]++;
    }
    double x_out = chi2(out, pd, N - 1, TRIALS); /* p[7] = 0: never produced (checked above) */
    double x_draft = chi2(drawn, pd, N, TRIALS);
    double x_q = chi2(drawn, qd, N, TRIALS);
    /* acceptance rate = sum min(p, q) */
    double expect_acc = 0;
    for (int i = 0; i < N; i++)
        expect_acc += fmin(pd[i], qd[i]);
    print_message("chi2 vs p: output %.2f (7 dof), raw drafts %.1f; drafts vs q %.2f; acceptance %.4f (expect %.4f)\n",
                  x_out, x_draft, x_q, (double)n_acc / TRIALS, expect_acc);
    assert_true(x_out < 24.32);   /* chi-square, 7 degrees of freedom, p = 0.001 */
    assert_true(x_q < 24.32);     /* the draws follow q ... */
    assert_true(x_draft > 1000);  /* ... which is far from p: the test can tell */
    assert_true(fabs((double)n_acc / TRIALS - expect_acc) < 0.01);
}

/* The target distribution of a sampler: one-hot at argmax when greedy, a
 * softmax with temperature over the filtered candidates otherwise. */
static void test_target_probs(void **state)
{
    (void)state;
    enum { V = 16 };
    float logits[V], pt[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)((i * 7) % V) * 0.25f;
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 0;
    clspec_sampler *s = NULL;
    char err[CLSPEC_ERRLEN];
    assert_int_equal(cs_api_sampler_new(&p, V, &s, err, sizeof err), CLSPEC_OK);
    assert_int_equal(clspec_sampler_probs(s, logits, pt), CLSPEC_OK);
    int32_t am = cs_argmax(logits, V);
    for (int i = 0; i < V; i++)
        assert_float_equal(pt[i], i == am ? 1.0f : 0.0f, 0);
    clspec_sampler_free(s);
    p = cs_sampler_defaults();
    p.temp = 0.7f;
    p.top_k = 5;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    assert_int_equal(cs_api_sampler_new(&p, V, &s, err, sizeof err), CLSPEC_OK);
    assert_int_equal(clspec_sampler_probs(s, logits, pt), CLSPEC_OK);
    /* compare with the sampler's own draws */
    long cnt[V] = {0};
    const long T = 100000;
    for (long t = 0; t < T; t++)
        cnt[clspec_sampler_sample(s, logits)]++;
    double pd[V], sum = 0;
    int nz = 0;
    for (int i = 0; i < V; i++) {
        pd[i] = pt[i];
        sum += pt[i];
        nz += pt[i] > 0;
    }
    assert_int_equal(nz, 5);
    assert_true(fabs(sum - 1.0) < 1e-5);
    double x = chi2(cnt, pd, V, T);
    print_message("target probs vs sampler draws: chi2 %.2f (4 dof)\n", x);
    assert_true(x < 18.47); /* 4 dof, p = 0.001 */
    clspec_sampler_free(s);
}

static int setup(void **state)
{
    (void)state;
    char *jp = tu_shared_path("reference/greedy-stories260K.json");
    G = golden_load(jp);
    free(jp);
    return G && G->n_cases == 4 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    golden_free(G);
    return 0;
}

int main(void)
{
    static struct lossless_cfg lossless_cfgs[] = {
        {CS_TYPE_F32, 1},  {CS_TYPE_F32, 4},  {CS_TYPE_F16, 1},  {CS_TYPE_F16, 4},
        {CS_TYPE_Q8_0, 1}, {CS_TYPE_Q8_0, 4}, {CS_TYPE_Q4_0, 1}, {CS_TYPE_Q4_0, 4},
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejection_sampling), cmocka_unit_test(test_target_probs),
        {"lossless_f32_parallel1", test_lossless, NULL, NULL, &lossless_cfgs[0]},
        {"lossless_f32_parallel4", test_lossless, NULL, NULL, &lossless_cfgs[1]},
        {"lossless_f16_parallel1", test_lossless, NULL, NULL, &lossless_cfgs[2]},
        {"lossless_f16_parallel4", test_lossless, NULL, NULL, &lossless_cfgs[3]},
        {"lossless_q8_0_parallel1", test_lossless, NULL, NULL, &lossless_cfgs[4]},
        {"lossless_q8_0_parallel4", test_lossless, NULL, NULL, &lossless_cfgs[5]},
        {"lossless_q4_0_parallel1", test_lossless, NULL, NULL, &lossless_cfgs[6]},
        {"lossless_q4_0_parallel4", test_lossless, NULL, NULL, &lossless_cfgs[7]},
        cmocka_unit_test(test_sampler_state),      cmocka_unit_test(test_disable),
        cmocka_unit_test(test_kv_full),           cmocka_unit_test(test_draft_sampling),
        cmocka_unit_test(test_draft_refusals),    cmocka_unit_test(test_per_request_off),
        cmocka_unit_test(test_step_extra),        cmocka_unit_test(test_cost_ctl),
        cmocka_unit_test(test_draft_chain),        cmocka_unit_test(test_bias_host),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
