/* test-dflash.c: the dflash speculator through the plugin ABI
 * (plugins/dflash, its drafter on the device compute service): lossless
 * greedy speculation for KV types and 1, 2, 4, 8 slots with acceptance
 * independent of both, slot reuse, n_max clamping, chunked prefill,
 * sampling, two devices, quantized target and drafter KV (synth-256), the
 * 1.3 DFlash host entries absent (NULL) and a host without the compute
 * service refused at init. */
#include "config.h"

#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine/api.h"
#include "base/common.h"
#include "engine/engine.h"
#include "dflash_golden.h"
#include "dflashutil.h"
#include "fwdutil.h"
#include "gguf/quant.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "testutil.h"

/* ---- through the plugin: lossless greedy speculation ---- */

#define NGEN 48
#define NP 8 /* at most: the 3 golden prompts, cycled */

static uint32_t engine_n_batch; /* 0: the default */

static struct cs_engine *engine_open(const char *model, uint32_t n_ctx, uint32_t n_seq, uint32_t kv_type)
{
    struct cs_engine_params p = cs_engine_defaults();
    if (engine_n_batch)
        p.n_batch = p.n_ubatch = engine_n_batch;
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.type_k = p.type_v = kv_type;
    return fu_engine_open(model, &p);
}

static struct cs_plugin *dflash_open(struct cs_engine *e, uint32_t n_slots, const char *drafter, const char *type,
                                     char *err, size_t errlen)
{
    char *path = tu_shared_path(drafter);
    struct cs_plugin_kv kv[] = {{"model", drafter[0] == '/' ? drafter : path}, {"type_k", type}, {"type_v", type}};
    struct cs_plugin_params pp = {.type = "dflash", .kv = kv, .n_kv = type ? 3 : 1, .engine = e, .n_slots = n_slots};
    struct cs_plugin *pl = NULL;
    int rc = cs_plugin_load(&pp, &pl, err, errlen);
    free(path);
    return rc == CLSPEC_OK ? pl : NULL;
}

struct prompts {
    int n;
    const int32_t *ids[NP];
    int len[NP];
};

struct run {
    int32_t tok[NP][NGEN];
    int n[NP];
    struct cs_spec_stats st;
};

static float gen_temp; /* 0: greedy */
static bool gen_dev;   /* the caller reads no logits: greedy steps verify on the device (device drafts, 1.7) */
static int gen_sched; /* > 0: the cost controller, drafting for gen_sched steps, then plain as long (fu_ctl_force) */

/* Generation (greedy unless gen_temp) of NGEN tokens for every prompt, parallel slots at a
 * time (slots are reused: every group is a new request on the same slots). */
static void gen(struct cs_engine *e, struct cs_plugin *pl, const struct prompts *P, int parallel, int n_max,
                struct run *r)
{
    memset(r, 0, sizeof *r);
    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = n_max;
    sp.ctl = gen_sched > 0 ? CS_SPEC_CTL_COST : CS_SPEC_CTL_ACCEPT;
    struct cs_spec *spec = NULL;
    char err[CLSPEC_ERRLEN];
    clspec_engine *door = fu_door(e);
    uint64_t n_it = 0;
    assert_int_equal(cs_spec_new(door, pl, &sp, parallel, &spec, err, sizeof err), CLSPEC_OK);
    for (int c0 = 0; c0 < P->n; c0 += parallel) {
        const int ns = CS_MIN(parallel, P->n - c0);
        clspec_sampler *smp[NP] = {NULL};
        int32_t left[NP] = {0};
        for (int s = 0; s < ns; s++) {
            struct cs_sampler_params p = cs_sampler_defaults();
            p.temp = gen_temp;
            p.seed = 99 + (uint64_t)(c0 + s);
            assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err), CLSPEC_OK);
            cs_api_sampler_keep_logits(smp[s], !gen_dev);
            if (cs_spec_slot_begin(spec, s, P->ids[c0 + s], P->len[c0 + s], smp[s], pl != NULL, err, sizeof err) !=
                CLSPEC_OK)
                fail_msg("slot_begin: %s", err);
            if (pl)
                assert_true(spec->slots[s].on); /* the plugin took the request */
            left[s] = NGEN;
        }
        for (;;) {
            bool any = false;
            for (int s = 0; s < ns; s++)
                any |= left[s] > 0;
            if (!any)
                break;
            if (gen_sched > 0)
                fu_ctl_force(spec, (n_it++ / (uint64_t)gen_sched) % 2 == 0);
            if (cs_spec_step(spec, left, err, sizeof err) != CLSPEC_OK)
                fail_msg("step: %s", err);
            for (int s = 0; s < ns; s++) {
                const struct cs_spec_slot *sl = &spec->slots[s];
                assert_int_equal(sl->rc, CLSPEC_OK);
                if (pl)
                    assert_true(sl->on); /* speculation was never switched off (no plugin error) */
                for (int i = 0; i < sl->n_out && r->n[c0 + s] < NGEN; i++)
                    r->tok[c0 + s][r->n[c0 + s]++] = sl->out[i];
                left[s] = sl->eog ? 0 : left[s] - sl->n_out;
            }
        }
        for (int s = 0; s < ns; s++) {
            cs_spec_slot_end(spec, s);
            clspec_sampler_free(smp[s]);
        }
    }
    r->st = spec->total;
    cs_spec_free(spec);
    clspec_engine_free(door);
}

static void assert_same(const struct run *a, const struct run *b, int n, const char *what)
{
    for (int c = 0; c < n; c++)
        if (a->n[c] != b->n[c] || memcmp(a->tok[c], b->tok[c], (size_t)a->n[c] * sizeof(int32_t)) != 0) {
            int i = 0;
            while (i < a->n[c] && i < b->n[c] && a->tok[c][i] == b->tok[c][i])
                i++;
            fail_msg("%s: prompt %d differs at token %d (%d vs %d tokens)", what, c, i, a->n[c], b->n[c]);
        }
}

static double tau(const struct cs_spec_stats *st)
{
    return st->n_steps ? (double)st->n_emitted / (double)st->n_steps : 0.0;
}

static double acc_rate(const struct cs_spec_stats *st)
{
    return st->n_drafted ? (double)st->n_accepted / (double)st->n_drafted : 0.0;
}

static struct prompts golden_prompts_n(int n)
{
    struct prompts P = {.n = n};
    for (int i = 0; i < n; i++) {
        P.ids[i] = dfg_cases[i % DFG_N_CASES].prompt;
        P.len[i] = dfg_cases[i % DFG_N_CASES].n_prompt;
    }
    return P;
}

/* The 3 golden prompts and the first again (4 slots at parallel 4). */
static struct prompts golden_prompts(void)
{
    return golden_prompts_n(4);
}

/* stories260K with the trained drafter: output identical to no speculation
 * for target/drafter KV type and 1, 2, 4 slots; acceptance the same for
 * every KV type and slot count (within noise), well above chance. */
static void lossless_stories(uint32_t kv, double *tau_out)
{
    struct prompts P = golden_prompts();
    const int par[] = {1, 2, 4};
    *tau_out = 0;
    if (kv == CS_TYPE_Q8_0 || kv == CS_TYPE_Q4_0) { /* head_dim 8: runs once the engine's KV takes it */
        struct cs_engine_params ep = cs_engine_defaults();
        char e0[CLSPEC_ERRLEN];
        ep.n_ctx = 64;
        ep.type_k = ep.type_v = kv;
        struct cs_engine *t = NULL;
        int rc = fu_engine_try(DFU_TARGET, &ep, &t, e0, sizeof e0);
        cs_engine_free(t);
        if (rc == CLSPEC_E_UNSUPPORTED && strstr(e0, "head_dim 8")) {
            print_message("KV %s with stories260K: not run, the engine refuses it (%s); quantized KV is covered "
                          "with synth-256 (test_inject_kvtypes, test_lossless_quant)\n", cs_type_name(kv), e0);
            return;
        }
    }
    struct cs_engine *e = engine_open(DFU_TARGET, 512, 4, kv);
    static struct run base, sp;
    char err[CLSPEC_ERRLEN];
    double t1 = 0;
    for (size_t k = 0; k < CS_ARRAY_LEN(par); k++) {
        gen(e, NULL, &P, par[k], 7, &base);
        if (kv == CS_TYPE_F32 && par[k] == 1) { /* no speculation = the reference greedy run */
            int agree = 0;
            for (int c = 0; c < DFG_N_CASES; c++)
                for (int i = 0; i < base.n[c] && base.tok[c][i] == dfg_cases[c].greedy[i]; i++)
                    agree++;
            print_message("no speculation: %d of %d tokens as the reference greedy run\n", agree, 3 * NGEN);
        }
        struct cs_plugin *pl = dflash_open(e, (uint32_t)par[k], DFU_DRAFTER, NULL, err, sizeof err);
        if (!pl)
            fail_msg("dflash plugin: %s", err);
        gen(e, pl, &P, par[k], 7, &sp);
        cs_plugin_free(pl);
        print_message("KV %s, parallel %d: %llu steps, drafted %llu, accepted %llu (%.3f), tau %.3f\n",
                      cs_type_name(kv), par[k], (unsigned long long)sp.st.n_steps,
                      (unsigned long long)sp.st.n_drafted, (unsigned long long)sp.st.n_accepted, acc_rate(&sp.st),
                      tau(&sp.st));
        assert_same(&base, &sp, P.n, "dflash");
        /* README: 2.6 at n_max 7. q4_0 KV moves stories260K's own logits by up
         * to 0.68 of their range (test-kvtypes; its greedy text leaves f32's
         * after a few tokens), so the drafter, trained on the f32 target,
         * agrees less: measured tau 1.61 (f32 2.26, q8_0 2.40) */
        assert_true(tau(&sp.st) > (kv == CS_TYPE_Q4_0 ? 1.3 : 1.8));
        if (k == 0)
            t1 = tau(&sp.st);
        else /* slot count changes nothing but batching: within noise of parallel 1 */
            assert_true(fabs(tau(&sp.st) - t1) < 0.1 * t1);
    }
    *tau_out = t1;
    cs_engine_free(e);
}

static double tau_f32;

static void test_lossless_f32(void **s)
{
    (void)s;
    lossless_stories(CS_TYPE_F32, &tau_f32);
}

static void test_lossless_f16(void **s)
{
    (void)s;
    double t;
    lossless_stories(CS_TYPE_F16, &t);
    if (tau_f32 > 0)
        assert_true(fabs(t - tau_f32) < 0.1 * tau_f32);
}

/* MISSION 5 case 1: quantized target and drafter KV, acceptance within
 * noise of f32 (once the engine's KV takes head_dim 8). */
static void test_lossless_q8_q4(void **s)
{
    (void)s;
    const uint32_t ty[] = {CS_TYPE_Q8_0, CS_TYPE_Q4_0};
    for (size_t i = 0; i < CS_ARRAY_LEN(ty); i++) {
        double t;
        lossless_stories(ty[i], &t);
        /* q8_0: within noise of f32 (measured 2.40 vs 2.26); q4_0 changes
         * the target's own output (see lossless_stories), only lossless */
        if (t > 0 && tau_f32 > 0 && ty[i] == CS_TYPE_Q8_0)
            assert_true(fabs(t - tau_f32) < 0.1 * tau_f32);
    }
}

/* 8 slots (MISSION 5 case 2): 8 requests at once, lossless, and the same
 * acceptance as the same 8 requests one after the other. */
static void test_lossless_p8(void **s)
{
    (void)s;
    struct prompts P = golden_prompts_n(8);
    struct cs_engine *e = engine_open(DFU_TARGET, 1024, 8, CS_TYPE_F16);
    static struct run base, sp1, sp8;
    char err[CLSPEC_ERRLEN];
    gen(e, NULL, &P, 8, 7, &base);
    struct cs_plugin *pl = dflash_open(e, 8, DFU_DRAFTER, NULL, err, sizeof err);
    if (!pl)
        fail_msg("%s", err);
    gen(e, pl, &P, 1, 7, &sp1);
    gen(e, pl, &P, 8, 7, &sp8);
    cs_plugin_free(pl);
    print_message("8 requests, f16 KV: one at a time tau %.3f (%.3f accepted), 8 slots tau %.3f (%.3f accepted)\n",
                  tau(&sp1.st), acc_rate(&sp1.st), tau(&sp8.st), acc_rate(&sp8.st));
    assert_same(&base, &sp1, P.n, "dflash, 8 requests on 1 slot");
    assert_same(&base, &sp8, P.n, "dflash, 8 slots");
    assert_true(fabs(tau(&sp8.st) - tau(&sp1.st)) < 0.1 * tau(&sp1.st));
    cs_engine_free(e);
}

/* ABI 1.8: a slot the controller keeps plain is detached (no accept calls,
 * no block decodes); at its next draft the drafter injects the plain
 * steps' rows from the taps the host kept, in one call. Drafting and plain
 * phases alternate (fu_ctl_force): the output is plain decoding's and the
 * drafts are exactly those of the plugin without the 1.8 entries (a 1.7
 * plugin, told every step through accept). */
static void test_detach(void **s)
{
    (void)s;
    struct prompts P = golden_prompts_n(4);
    struct cs_engine *e = engine_open(DFU_TARGET, 1024, 4, CS_TYPE_F32);
    static struct run base, det, old;
    char err[CLSPEC_ERRLEN];
    const int par[] = {1, 4};
    for (int k = 0; k < 2; k++) {
        gen_dev = k == 1;
        gen(e, NULL, &P, par[k], 7, &base);
        struct cs_plugin *pl = dflash_open(e, (uint32_t)par[k], DFU_DRAFTER, NULL, err, sizeof err);
        if (!pl)
            fail_msg("dflash plugin: %s", err);
        assert_non_null(pl->vt.slot_detach);
        assert_non_null(pl->vt.slot_attach);
        gen_sched = 4;
        gen(e, pl, &P, par[k], 7, &det);
        pl->vt.slot_attach = NULL; /* a plugin built before 1.8 */
        gen(e, pl, &P, par[k], 7, &old);
        gen_sched = 0;
        gen_dev = false;
        cs_plugin_free(pl);
        print_message("detach, parallel %d: %llu steps, %llu detached slot-steps, %llu attaches, drafted %llu, "
                      "accepted %llu (without the 1.8 entries: drafted %llu, accepted %llu)\n",
                      par[k], (unsigned long long)det.st.n_steps, (unsigned long long)det.st.n_detached,
                      (unsigned long long)det.st.n_attach, (unsigned long long)det.st.n_drafted,
                      (unsigned long long)det.st.n_accepted, (unsigned long long)old.st.n_drafted,
                      (unsigned long long)old.st.n_accepted);
        assert_same(&base, &det, P.n, "dflash, detached while plain");
        assert_same(&base, &old, P.n, "dflash, without the 1.8 entries");
        assert_true(det.st.n_detached > 0);
        assert_true(det.st.n_attach > 0);
        assert_int_equal(old.st.n_detached, 0);
        assert_true(det.st.n_drafted > 0);
        assert_int_equal(det.st.n_drafted, old.st.n_drafted);
        assert_int_equal(det.st.n_accepted, old.st.n_accepted);
    }
    cs_engine_free(e);
}

/* Device drafts (ABI 1.7): the blocks' argmaxes stay on the device and
 * the target reads them there: the same tokens as plain decoding and the
 * same drafts as the host path (draft_batch), in one blocking sync per
 * step; with the entry removed (a plugin built before 1.7) the old path. */
static void test_device_drafts(void **s)
{
    (void)s;
    struct prompts P = golden_prompts_n(4);
    struct cs_engine *e = engine_open(DFU_TARGET, 1024, 4, CS_TYPE_F32);
    static struct run base, host, dev, old;
    char err[CLSPEC_ERRLEN];
    const int par[] = {1, 4};
    for (int k = 0; k < 2; k++) {
        gen_dev = true;
        gen(e, NULL, &P, par[k], 7, &base);
        struct cs_plugin *pl = dflash_open(e, (uint32_t)par[k], DFU_DRAFTER, NULL, err, sizeof err);
        if (!pl)
            fail_msg("dflash plugin: %s", err);
        assert_non_null(pl->vt.draft_batch_dev);
        gen(e, pl, &P, par[k], 7, &dev);
        gen_dev = false;
        gen(e, pl, &P, par[k], 7, &host);
        gen_dev = true;
        pl->vt.draft_batch_dev = NULL;
        gen(e, pl, &P, par[k], 7, &old);
        gen_dev = false;
        cs_plugin_free(pl);
        print_message("device drafts, parallel %d: %llu calls, %llu syncs (%llu drafting), drafted %llu, accepted "
                      "%llu; without the entry %llu syncs in %llu calls\n",
                      par[k], (unsigned long long)dev.st.n_calls, (unsigned long long)dev.st.n_syncs,
                      (unsigned long long)dev.st.n_syncs_draft, (unsigned long long)dev.st.n_drafted,
                      (unsigned long long)dev.st.n_accepted, (unsigned long long)old.st.n_syncs,
                      (unsigned long long)old.st.n_calls);
        assert_same(&base, &dev, P.n, "dflash, device drafts");
        assert_same(&base, &old, P.n, "dflash, without draft_batch_dev");
        assert_true(dev.st.n_drafted > 0);
        assert_int_equal(dev.st.n_drafted, host.st.n_drafted);
        assert_int_equal(dev.st.n_accepted, host.st.n_accepted);
        assert_int_equal(dev.st.n_syncs, dev.st.n_calls);
        assert_int_equal(dev.st.n_syncs_draft, 0);
        assert_true(old.st.n_syncs_draft > 0);
    }
    cs_engine_free(e);
}

/* Sampling at temperature 0.8 (one-hot draft probabilities: the host's
 * rejection sampling accepts a draft with probability p(d)): speculation
 * stays on, drafts are accepted, every request ends normally. */
static void test_sampling(void **s)
{
    (void)s;
    struct prompts P = golden_prompts();
    struct cs_engine *e = engine_open(DFU_TARGET, 512, 4, CS_TYPE_F16);
    static struct run sp;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = dflash_open(e, 4, DFU_DRAFTER, NULL, err, sizeof err);
    if (!pl)
        fail_msg("%s", err);
    gen_temp = 0.8f;
    gen(e, pl, &P, 4, 7, &sp);
    gen_temp = 0.0f;
    cs_plugin_free(pl);
    print_message("temperature 0.8, 4 slots: drafted %llu, accepted %llu, tau %.3f\n",
                  (unsigned long long)sp.st.n_drafted, (unsigned long long)sp.st.n_accepted, tau(&sp.st));
    for (int c = 0; c < P.n; c++)
        assert_true(sp.n[c] > 0);
    assert_true(sp.st.n_accepted > 0);
    cs_engine_free(e);
}

/* n_max above block_size - 1 is clamped (a draft never exceeds 7 for the
 * fixture's block of 8); a new request on a used slot starts from a clean
 * drafter state (the same drafts as on a fresh plugin); generation with a
 * host n_max of 10 stays lossless. */
static void test_clamp_and_reset(void **s)
{
    (void)s;
    struct prompts P = golden_prompts();
    struct cs_engine *e = engine_open(DFU_TARGET, 512, 2, CS_TYPE_F32);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = dflash_open(e, 2, DFU_DRAFTER, NULL, err, sizeof err);
    if (!pl)
        fail_msg("%s", err);
    struct cs_spec_params spp = cs_spec_defaults();
    spp.n_max = 10;
    struct cs_spec *spec = NULL;
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &spp, 2, &spec, err, sizeof err), CLSPEC_OK);
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 0.0f;
    clspec_sampler *smp = NULL;
    assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp, err, sizeof err), CLSPEC_OK);
    int32_t first[2][16];
    int nfirst[2] = {0};
    for (int round = 0; round < 2; round++) {
        /* round 0: prompt 1 on slot 0 (fresh); round 1: prompt 0 on slot 0 and 1 then prompt 1 again on slot 0 */
        if (round == 1) {
            assert_int_equal(cs_spec_slot_begin(spec, 1, P.ids[0], P.len[0], smp, true, err, sizeof err), CLSPEC_OK);
            assert_int_equal(cs_spec_slot_begin(spec, 0, P.ids[0], P.len[0], smp, true, err, sizeof err), CLSPEC_OK);
            int32_t left[2] = {20, 20};
            for (int k = 0; k < 3; k++)
                assert_int_equal(cs_spec_step(spec, left, err, sizeof err), CLSPEC_OK);
        }
        assert_int_equal(cs_spec_slot_begin(spec, 0, P.ids[1], P.len[1], smp, true, err, sizeof err), CLSPEC_OK);
        struct clspec_draft_req req = {.size = sizeof req, .slot = 0, .hist = P.ids[1], .n_hist = P.len[1],
                                       .pos_last = P.len[1] - 1, .n_max = 10, .n_vocab = (uint32_t)spec->n_vocab};
        nfirst[round] = pl->vt.draft(pl->state, &req, first[round], NULL, err, sizeof err);
        assert_int_equal(nfirst[round], 7); /* clamped to block_size - 1 */
        cs_spec_slot_end(spec, 0);
        cs_spec_slot_end(spec, 1);
    }
    assert_memory_equal(first[0], first[1], 7 * sizeof(int32_t));
    clspec_sampler_free(smp);
    cs_spec_free(spec);
    clspec_engine_free(door);
    static struct run base, sp;
    gen(e, NULL, &P, 2, 10, &base);
    gen(e, pl, &P, 2, 10, &sp);
    assert_same(&base, &sp, P.n, "dflash, n_max 10");
    print_message("n_max 10 (clamped to 7): drafted %llu in %llu steps, accepted %llu, tau %.3f\n",
                  (unsigned long long)sp.st.n_drafted, (unsigned long long)sp.st.n_steps,
                  (unsigned long long)sp.st.n_accepted, tau(&sp.st));
    assert_true(sp.st.n_drafted <= 7 * sp.st.n_steps);
    cs_plugin_free(pl);
    cs_engine_free(e);
}

/* The host knows no DFlash: the 1.3 entries model_key_ints and
 * ctx_inject_taps are NULL (the layout keeps their slots) and a dflash GGUF
 * is not a draft model of model_load; the plugin refuses a host without the
 * compute service (minor 3) at init with its own message, and runs on this
 * one. */
static void test_host_entries(void **s)
{
    (void)s;
    struct cs_engine *e = engine_open(DFU_TARGET, 256, 2, CS_TYPE_F32);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = dflash_open(e, 2, DFU_DRAFTER, NULL, err, sizeof err);
    if (!pl)
        fail_msg("%s", err);
    const struct clspec_host *h = &pl->host;
    assert_true(h->abi_minor >= 4);
    assert_true(offsetof(struct clspec_host, ctx_inject_taps) < h->size);
    assert_null(h->model_key_ints);
    assert_null(h->ctx_inject_taps);
    char *dp = tu_shared_path(DFU_DRAFTER);
    clspec_model *m = NULL;
    assert_true(h->model_load(h, dp, -1, 0, &m, err, sizeof err) < 0);
    assert_null(m);
    assert_true(h->model_load(h, dp, -1, CLSPEC_MODEL_TARGET_TENSORS, &m, err, sizeof err) < 0);
    assert_null(m);
    free(dp);
    /* a 1.3 host: ends before dev_open */
    struct clspec_host h3 = pl->host;
    h3.abi_minor = 3;
    h3.size = (uint32_t)offsetof(struct clspec_host, dev_open);
    void *st = NULL;
    assert_true(pl->vt.init(&h3, &st, err, sizeof err) < 0);
    print_message("minor 3: %s\n", err);
    assert_non_null(strstr(err, "dflash: "));
    assert_non_null(strstr(err, "compute service"));
    assert_null(st);
    /* a 1.4 host without the block builder (block_kv NULL) */
    struct clspec_host h4 = pl->host;
    h4.block_kv = NULL;
    assert_true(pl->vt.init(&h4, &st, err, sizeof err) < 0);
    assert_non_null(strstr(err, "block_kv"));
    cs_plugin_free(pl);
    cs_engine_free(e);
}

/* Prompts prefilled in chunks of 2 tokens (engine n_batch 2): the taps of
 * every chunk reach the drafter; the same drafts and output as in one chunk. */
static void test_chunked_prefill(void **s)
{
    (void)s;
    struct prompts P = golden_prompts();
    char err[CLSPEC_ERRLEN];
    static struct run base, sp[2];
    for (int k = 0; k < 2; k++) {
        engine_n_batch = k ? 2 : 0;
        struct cs_engine *e = engine_open(DFU_TARGET, 512, 2, CS_TYPE_F32);
        engine_n_batch = 0;
        if (k == 1)
            gen(e, NULL, &P, 2, 7, &base);
        struct cs_plugin *pl = dflash_open(e, 2, DFU_DRAFTER, NULL, err, sizeof err);
        if (!pl)
            fail_msg("%s", err);
        gen(e, pl, &P, 2, 7, &sp[k]);
        cs_plugin_free(pl);
        cs_engine_free(e);
    }
    print_message("prefill in chunks of 2: drafted %llu, accepted %llu (in one chunk: %llu, %llu)\n",
                  (unsigned long long)sp[1].st.n_drafted, (unsigned long long)sp[1].st.n_accepted,
                  (unsigned long long)sp[0].st.n_drafted, (unsigned long long)sp[0].st.n_accepted);
    assert_same(&base, &sp[1], P.n, "dflash, chunked prefill");
    assert_same(&sp[0], &sp[1], P.n, "dflash, chunked vs one chunk");
    assert_true(sp[1].st.n_accepted + 3 >= sp[0].st.n_accepted && sp[0].st.n_accepted + 3 >= sp[1].st.n_accepted);
}

/* Two devices (PoCL: POCL_DEVICES="pthread pthread", set in main): layers
 * split 2 + 3, the drafter on the output device (the default), lossless at
 * parallel 2; placing it on the other device is refused naming both devices
 * and the key. */
static void test_two_devices(void **s)
{
    (void)s;
    struct cs_engine_params p = cs_engine_defaults();
    p.n_ctx = 512;
    p.n_seq_max = 4;
    p.type_k = p.type_v = CS_TYPE_F16;
    p.devices = "0,1";
    p.split[0] = 2;
    p.split[1] = 3;
    struct cs_engine *e = NULL;
    char err[CLSPEC_ERRLEN];
    int rc = fu_engine_try(DFU_TARGET, &p, &e, err, sizeof err);
    if (rc != CLSPEC_OK) {
        print_message("two devices: %s (skipped)\n", err);
        skip();
    }
    struct prompts P = golden_prompts();
    static struct run base, sp;
    gen(e, NULL, &P, 2, 7, &base);
    struct cs_plugin *pl = dflash_open(e, 2, DFU_DRAFTER, NULL, err, sizeof err);
    if (!pl)
        fail_msg("%s", err);
    gen(e, pl, &P, 2, 7, &sp);
    cs_plugin_free(pl);
    print_message("two devices, parallel 2: drafted %llu, accepted %llu, tau %.3f\n",
                  (unsigned long long)sp.st.n_drafted, (unsigned long long)sp.st.n_accepted, tau(&sp.st));
    assert_same(&base, &sp, P.n, "dflash, two devices");
    assert_true(tau(&sp.st) > 1.8);
    char *dp = tu_shared_path(DFU_DRAFTER);
    struct cs_plugin_kv kv[] = {{"model", dp}, {"device", "0"}};
    struct cs_plugin_params pp = {.type = "dflash", .kv = kv, .n_kv = 2, .engine = e, .n_slots = 2};
    assert_int_not_equal(cs_plugin_load(&pp, &pl, err, sizeof err), CLSPEC_OK);
    free(dp);
    assert_non_null(strstr(err, "on device 1 ("));
    assert_non_null(strstr(err, "cannot run on device 0 ("));
    assert_non_null(strstr(err, "`device`"));
    cs_engine_free(e);
}

/* Lossless through the plugin with quantized target and drafter KV, 1 and 4
 * slots (a random drafter: acceptance is near zero, the point is that every
 * path runs and the output is the target's). */
static void test_lossless_quant(void **s)
{
    (void)s;
    struct prompts P = golden_prompts();
    const uint32_t ty[] = {CS_TYPE_Q8_0, CS_TYPE_Q4_0};
    const int par[] = {1, 4};
    char err[CLSPEC_ERRLEN];
    static struct run base, sp;
    for (size_t t = 0; t < CS_ARRAY_LEN(ty); t++) {
        struct cs_engine *e = engine_open(DFU_SYN_TARGET, 512, 4, ty[t]);
        for (size_t k = 0; k < CS_ARRAY_LEN(par); k++) {
            gen(e, NULL, &P, par[k], 7, &base);
            struct cs_plugin *pl = dflash_open(e, (uint32_t)par[k], dfu_syn_path, cs_type_name(ty[t]), err, sizeof err);
            if (!pl)
                fail_msg("dflash plugin: %s", err);
            gen(e, pl, &P, par[k], 7, &sp);
            cs_plugin_free(pl);
            print_message("synth-256, KV %s, parallel %d: %llu steps, drafted %llu, accepted %llu\n",
                          cs_type_name(ty[t]), par[k], (unsigned long long)sp.st.n_steps,
                          (unsigned long long)sp.st.n_drafted, (unsigned long long)sp.st.n_accepted);
            assert_same(&base, &sp, P.n, "dflash, quantized KV");
            assert_true(sp.st.n_drafted > 0);
        }
        cs_engine_free(e);
    }
}

int main(void)
{
    setenv("POCL_DEVICES", "pthread pthread", 0); /* two CPU devices for test_two_devices (PoCL only) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lossless_f32),
        cmocka_unit_test(test_lossless_f16),
        cmocka_unit_test(test_lossless_q8_q4),
        cmocka_unit_test(test_lossless_p8),
        cmocka_unit_test(test_device_drafts), cmocka_unit_test(test_detach),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_clamp_and_reset),
        cmocka_unit_test(test_host_entries),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_two_devices),
        cmocka_unit_test(test_lossless_quant),
    };
    return cmocka_run_group_tests(tests, dfu_synth_setup, dfu_synth_teardown);
}
