/* test-mtp.c: target hidden-state taps (ABI 1.2 tap_request / tap_get) and
 * the mtp speculator over stories260K.
 * Taps: with the ngram plugin drafting, every position of every slot's
 * history (prefill in chunks, then each verification) reaches the plugin,
 * at the requested layers, equal to the hidden states of one plain forward
 * over the final history; a slot that reads only every third step gets the
 * rows since its last read (consecutive positions, rejected rows replaced).
 * MTP (reference/mtp-stories260K.json, README-mtp.md), with the combined
 * file and with the sidecar head: the plugin's head on the device compute
 * service (plugins/mtp/mtp_head.c through the plugin's mtp_test_decode:
 * host hidden states, then chained on the device; target_embed and
 * target_head checked against the target's own forward) gives the first
 * step's top-5 draft logits within 1e-3; the plugin inside the speculative
 * step reproduces the 8 traced k = 3 steps exactly (drafts, accepted
 * counts, commits); greedy output with mtp speculation equals output
 * without it (48 tokens, 3 prompts, target KV f32 / f16, head KV of another
 * type, parallel 1 and 4); acceptance with fixed k = 1, 2, 3 is close to
 * the reference's spec_stats_48_tokens; a head on another device than the
 * target's output (two PoCL devices) drafts the same; a 1.4 host refuses
 * the old model_load MTP flag with a message. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <jansson.h>
#include <stdint.h>

#include "engine/api.h"
#include "base/common.h"
#include "engine/engine.h"
#include "fwdutil.h"
#include "gguf/gguf_write.h"
#include "gguf/quant.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "testutil.h"

static const char *g_devices; /* engine devices ("0,1"), NULL = the first */

static struct cs_engine *engine_open(const char *model, uint32_t n_ctx, uint32_t n_seq, uint32_t kv_type,
                                     uint32_t n_batch)
{
    struct cs_engine_params p = cs_engine_defaults();
    p.devices = g_devices;
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq;
    p.type_k = p.type_v = kv_type;
    p.n_batch = p.n_ubatch = n_batch;
    return fu_engine_open(model, &p);
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
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &sp, 2, &spec, err, sizeof err), CLSPEC_OK);
    const int32_t p0[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298}, p1[] = {1, 291, 280, 294, 262, 294};
    const int32_t *prompts[2] = {p0, p1};
    const int32_t np[2] = {11, 6};
    static float got[2][TAP_MAXPOS][TAP_NL][64];
    static int seen[2][TAP_MAXPOS];
    memset(seen, 0, sizeof seen);
    assert_true(E <= 64);
    clspec_sampler *smp[2];
    int32_t left[2] = {TAP_GEN, TAP_GEN};
    for (int s = 0; s < 2; s++) {
        struct cs_sampler_params p = cs_sampler_defaults();
        p.temp = 0;
        assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err), CLSPEC_OK);
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
            if (step >= 0)
                left[s] -= sl->n_out;
            if (s == 1 && step % 3 != 2 && left[s] > 0) /* slot 1 reads every third step: rows accumulate */
                continue;
            const float *t = pl->host.tap_get(&pl->host, s, &n_rows, &first);
            assert_non_null(t);
            /* prefill: positions 0..n_prompt-2; a step: [last, drafts] from the last token's position; rows of
             * unread steps stay, a later step's rows replace the rejected ones */
            int32_t want_first = step < 0 ? 0 : s == 0 ? sl->n_hist - 1 - sl->n_out : first;
            assert_int_equal(first, want_first);
            int32_t n_keep = sl->n_hist - 1 - first; /* rows of committed tokens */
            if (step < 0)
                assert_int_equal(n_keep, np[s] - 1);
            assert_true(n_rows >= n_keep);
            if (step >= 0)
                drafted += n_rows - n_keep;
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
        cs_kv_clear(ref->ctx->kv);
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
        clspec_sampler_free(smp[s]);
    free(hid);
    cs_spec_free(spec);
    clspec_engine_free(door);
    cs_plugin_free(pl);
    cs_engine_free(ref);
    cs_engine_free(e);
}

/* ---- MTP: golden data ---- */

#define MAXC 3
#define NGREEDY 48

struct gstep {
    int32_t n_past, input, drafts[3], n_acc, committed[4], n_committed, next;
};

struct gcase {
    int32_t prompt[32], n_prompt;
    int32_t greedy[NGREEDY];
    struct gstep steps[8];
    int32_t top_id[3][5];
    float top_val[3][5];
    int32_t stats[3][3]; /* k = 1..3: steps, drafted, accepted */
};

static struct gcase GC[MAXC];

static void ints(json_t *a, int32_t *out, int32_t max, int32_t *n)
{
    assert_true(json_is_array(a));
    int32_t k = (int32_t)json_array_size(a);
    assert_true(k <= max);
    for (int32_t i = 0; i < k; i++)
        out[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    if (n)
        *n = k;
}

static int load_golden(void **state)
{
    (void)state;
    json_t *root = tu_load_json("reference/mtp-stories260K.json");
    if (!root)
        return -1;
    json_t *cases = json_object_get(root, "cases");
    if (json_array_size(cases) != MAXC) {
        json_decref(root);
        return -1;
    }
    for (int c = 0; c < MAXC; c++) {
        json_t *o = json_array_get(cases, (size_t)c);
        struct gcase *g = &GC[c];
        ints(json_object_get(o, "prompt_ids"), g->prompt, 32, &g->n_prompt);
        ints(json_object_get(o, "greedy_ids"), g->greedy, NGREEDY, NULL);
        json_t *st = json_object_get(o, "spec_k3_steps");
        for (int i = 0; i < 8; i++) {
            json_t *x = json_array_get(st, (size_t)i);
            struct gstep *gs = &g->steps[i];
            gs->n_past = (int32_t)json_integer_value(json_object_get(x, "n_past"));
            gs->input = (int32_t)json_integer_value(json_object_get(x, "input_token"));
            gs->n_acc = (int32_t)json_integer_value(json_object_get(x, "n_accepted"));
            gs->next = (int32_t)json_integer_value(json_object_get(x, "next_pending"));
            ints(json_object_get(x, "drafts"), gs->drafts, 3, NULL);
            ints(json_object_get(x, "committed"), gs->committed, 4, &gs->n_committed);
        }
        json_t *t5 = json_object_get(o, "first_step_draft_top5");
        for (int j = 0; j < 3; j++)
            for (int r = 0; r < 5; r++) {
                json_t *pr = json_array_get(json_array_get(t5, (size_t)j), (size_t)r);
                g->top_id[j][r] = (int32_t)json_integer_value(json_array_get(pr, 0));
                g->top_val[j][r] = (float)json_number_value(json_array_get(pr, 1));
            }
        json_t *ss = json_object_get(o, "spec_stats_48_tokens");
        for (int k = 1; k <= 3; k++) {
            char key[4];
            snprintf(key, sizeof key, "%d", k);
            json_t *x = json_object_get(ss, key);
            g->stats[k - 1][0] = (int32_t)json_integer_value(json_object_get(x, "steps"));
            g->stats[k - 1][1] = (int32_t)json_integer_value(json_object_get(x, "drafted"));
            g->stats[k - 1][2] = (int32_t)json_integer_value(json_object_get(x, "accepted"));
        }
    }
    json_decref(root);
    return 0;
}

#define COMBINED "models/derived/stories260K-mtp.gguf"
#define SIDECAR "models/derived/stories260K-mtp-head.gguf"
#define TARGET "models/stories260K.gguf"

/* The mtp plugin on e; head NULL = the target's own file. Extra key/value pairs (may be NULL). */
static struct cs_plugin *mtp_open(struct cs_engine *e, uint32_t n_slots, const char *head, const char *k1,
                                  const char *v1, char *err, size_t errlen)
{
    char *path = head ? tu_shared_path(head) : NULL;
    struct cs_plugin_kv kv[3];
    int n = 0;
    if (path)
        kv[n++] = (struct cs_plugin_kv){"model", path};
    if (k1)
        kv[n++] = (struct cs_plugin_kv){k1, v1};
    struct cs_plugin_params pp = {.type = "mtp", .kv = kv, .n_kv = n, .engine = e, .n_slots = n_slots};
    struct cs_plugin *pl = NULL;
    int rc = cs_plugin_load(&pp, &pl, err, errlen);
    free(path);
    return rc == CLSPEC_OK ? pl : NULL;
}

typedef int (*mtp_decode_fn)(void *state, int32_t n, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                             const float *g, int chain, const uint8_t *keep, float *logits, int32_t *amax, char *err,
                             size_t errlen);
typedef int (*mtp_seq_rm_fn)(void *state, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);

/* The first step's drafts through the plugin's head alone: the head's KV
 * filled for positions 1..m-1 from a plain target forward, then three
 * chained steps (the hidden state stays on the device); top-5 logits
 * against the reference. */
static void first_step_host(const char *target, const char *head)
{
    struct cs_engine *e = engine_open(target, 256, 1, CS_TYPE_F32, 64);
    const uint32_t E = e->model->hp.n_embd, V = e->model->hp.n_vocab;
    const int32_t NL = (int32_t)e->model->hp.n_layer;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = mtp_open(e, 1, head, NULL, NULL, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    const struct clspec_host *h = &pl->host;
    mtp_decode_fn dec = (mtp_decode_fn)(uintptr_t)dlsym(pl->dl, "mtp_test_decode");
    mtp_seq_rm_fn seq_rm = (mtp_seq_rm_fn)(uintptr_t)dlsym(pl->dl, "mtp_test_seq_rm");
    assert_non_null(dec);
    assert_non_null(seq_rm);
    float *hid = malloc((size_t)32 * E * sizeof *hid), *lg = malloc((size_t)V * sizeof *lg);
    float *l2 = malloc((size_t)V * sizeof *l2);
    double worst = 0;
    for (int ci = 0; ci < MAXC; ci++) {
        const struct gcase *gc = &GC[ci];
        const int32_t m_ = gc->n_prompt;
        int32_t pos[32], seq0[32] = {0}, tok[32], am[32];
        for (int i = 0; i < 32; i++)
            pos[i] = i;
        cs_kv_clear(e->ctx->kv);
        struct cs_fwd_hidden hh = {.n_layers = 1, .layers = &NL, .out = hid};
        assert_int_equal(cs_forward(e->ctx, gc->prompt, m_, pos, NULL, NULL, 0, lg, &hh, err, sizeof err), 0);
        /* target_head on the last hidden state = the target's own logits; target_embed = token_embd rows */
        float *lh = malloc((size_t)V * 4), *em = malloc((size_t)m_ * E * 4), *e0 = malloc((size_t)m_ * E * 4);
        assert_int_equal(h->target_head(h, hid + (size_t)(m_ - 1) * E, 1, lh, err, sizeof err), 0);
        for (uint32_t v = 0; v < V; v++)
            assert_true(fabsf(lh[v] - lg[v]) < 1e-4f);
        const int32_t L0 = 0;
        struct cs_fwd_hidden h0 = {.n_layers = 1, .layers = &L0, .out = e0};
        cs_kv_clear(e->ctx->kv);
        assert_int_equal(cs_forward(e->ctx, gc->prompt, m_, pos, NULL, NULL, 0, lh, &h0, err, sizeof err), 0);
        assert_int_equal(h->target_embed(h, gc->prompt, m_, em, err, sizeof err), 0);
        assert_memory_equal(em, e0, (size_t)m_ * E * 4);
        free(lh);
        free(em);
        free(e0);
        assert_int_equal(seq_rm(pl->state, 0, 0, -1, err, sizeof err), 0);
        /* entries 1..m-1: (x_p, h_{p-1}) */
        for (int32_t p = 1; p < m_; p++)
            tok[p - 1] = gc->prompt[p];
        uint8_t none[32] = {0};
        assert_int_equal(dec(pl->state, m_ - 1, tok, pos + 1, seq0, hid, 0, none, NULL, am, err, sizeof err), 0);
        int32_t x = gc->greedy[0], p = m_;
        for (int j = 0; j < 3; j++, p++) {
            /* step 1: the target's h_{m-1} from the host; then the head's own h' (kept on the device) */
            const float *g = hid + (size_t)(m_ - 1) * E;
            int32_t best = -1;
            if (dec(pl->state, 1, &x, &p, seq0, g, j > 0, NULL, l2, &best, err, sizeof err) != 1)
                fail_msg("mtp_test_decode: %s", err);
            for (int r = 0; r < 5; r++) {
                double dd = fabs((double)l2[gc->top_id[j][r]] - gc->top_val[j][r]);
                worst = dd > worst ? dd : worst;
                if (dd > 1e-3)
                    fail_msg("case %d draft %d: logit of %d is %.6f, reference %.6f", ci, j + 1, gc->top_id[j][r],
                             l2[gc->top_id[j][r]], gc->top_val[j][r]);
            }
            int32_t hb = 0;
            for (uint32_t v = 1; v < V; v++)
                hb = l2[v] > l2[hb] ? (int32_t)v : hb;
            assert_int_equal(best, hb); /* the device's argmax = the host's */
            assert_int_equal(best, gc->top_id[j][0]);
            assert_int_equal(best, gc->steps[0].drafts[j]);
            x = best;
        }
        /* rollback: without entry m-1 step 1 sees less (other logits); with it recomputed, the same bits */
        float *l1 = malloc((size_t)V * 4), *l3 = malloc((size_t)V * 4);
        int32_t x1 = gc->greedy[0], p1 = m_, b1 = -1, pl1 = m_ - 1;
        assert_int_equal(seq_rm(pl->state, 0, m_, -1, err, sizeof err), 0);
        assert_int_equal(dec(pl->state, 1, &x1, &p1, seq0, hid + (size_t)(m_ - 1) * E, 0, NULL, l1, &b1, err,
                             sizeof err), 1);
        assert_int_equal(seq_rm(pl->state, 0, m_ - 1, -1, err, sizeof err), 0);
        assert_int_equal(dec(pl->state, 1, &x1, &p1, seq0, hid + (size_t)(m_ - 1) * E, 0, NULL, l3, &b1, err,
                             sizeof err), 1);
        assert_true(memcmp(l1, l3, (size_t)V * 4) != 0);
        assert_int_equal(seq_rm(pl->state, 0, m_ - 1, -1, err, sizeof err), 0);
        assert_int_equal(dec(pl->state, 1, &gc->prompt[m_ - 1], &pl1, seq0, hid + (size_t)(m_ - 2) * E, 0, none,
                             NULL, &b1, err, sizeof err), 0);
        assert_int_equal(dec(pl->state, 1, &x1, &p1, seq0, hid + (size_t)(m_ - 1) * E, 0, NULL, l3, &b1, err,
                             sizeof err), 1);
        assert_memory_equal(l1, l3, (size_t)V * 4);
        free(l1);
        free(l3);
    }
    print_message("%s%s%s: first-step top-5 logits max |diff| %.3g\n", target, head ? " + " : "", head ? head : "",
                  worst);
    free(hid);
    free(lg);
    free(l2);
    cs_plugin_free(pl);
    cs_engine_free(e);
}

static void test_first_step_combined(void **state)
{
    (void)state;
    first_step_host(COMBINED, NULL);
}

static void test_first_step_sidecar(void **state)
{
    (void)state;
    first_step_host(TARGET, SIDECAR);
}

/* The plugin in the speculative step with k fixed (n_min = n_max = 3):
 * after one plain step (the reference's state: whole prompt in the KV,
 * pending = greedy[0]) the 8 traced steps, exactly. */
static void trace(const char *target, const char *head)
{
    struct cs_engine *e = engine_open(target, 256, 1, CS_TYPE_F32, 64);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = mtp_open(e, 1, head, NULL, NULL, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = sp.n_min = 3;
    struct cs_spec *spec = NULL;
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &sp, 1, &spec, err, sizeof err), 0);
    struct cs_sampler_params smp_p = cs_sampler_defaults();
    smp_p.temp = 0;
    for (int ci = 0; ci < MAXC; ci++) {
        const struct gcase *gc = &GC[ci];
        clspec_sampler *smp = NULL;
        assert_int_equal(cs_api_sampler_new(&smp_p, spec->n_vocab, &smp, err, sizeof err), 0);
        assert_int_equal(cs_spec_slot_begin(spec, 0, gc->prompt, gc->n_prompt, smp, true, err, sizeof err), 0);
        int32_t left = 1;
        assert_int_equal(cs_spec_step(spec, &left, err, sizeof err), 0);
        const struct cs_spec_slot *sl = &spec->slots[0];
        assert_int_equal(sl->n_out, 1);
        assert_int_equal(sl->out[0], gc->greedy[0]);
        for (int i = 0; i < 8; i++) {
            const struct gstep *gs = &gc->steps[i];
            assert_int_equal(sl->n_hist - 1, gs->n_past);
            assert_int_equal(sl->hist[sl->n_hist - 1], gs->input);
            left = 100;
            assert_int_equal(cs_spec_step(spec, &left, err, sizeof err), 0);
            for (int j = 0; j < 3; j++)
                if (sl->draft[j] != gs->drafts[j])
                    fail_msg("case %d step %d: draft %d is %d, reference %d", ci, i, j + 1, sl->draft[j],
                             gs->drafts[j]);
            assert_int_equal(sl->n_accepted, gs->n_acc);
            assert_int_equal(sl->n_out, gs->n_acc + 1);
            for (int j = 0; j < gs->n_acc; j++)
                assert_int_equal(sl->out[j], gs->committed[j + 1]);
            assert_int_equal(sl->out[gs->n_acc], gs->next);
        }
        cs_spec_slot_end(spec, 0);
        clspec_sampler_free(smp);
    }
    cs_spec_free(spec);
    clspec_engine_free(door);
    cs_plugin_free(pl);
    cs_engine_free(e);
}

static void test_trace_combined(void **state)
{
    (void)state;
    trace(COMBINED, NULL);
}

static void test_trace_sidecar(void **state)
{
    (void)state;
    trace(TARGET, SIDECAR);
}

/* ---- MTP: lossless and acceptance ---- */

struct gen_out {
    int32_t tok[4][NGREEDY];
    int32_t n[4];
    struct cs_spec_stats st;
};

/* NGREEDY greedy tokens for the cases on slots 0..n_slots-1 at once (slot
 * s runs case s % 3); n_fix > 0: draft length fixed to n_fix. */
static float g_pmin; /* the draft requests' p_min */
static bool g_dev;   /* the caller reads no logits: greedy steps verify on the device (device drafts, ABI 1.7) */
static int g_sched;  /* > 0: the cost controller, drafting for g_sched steps, then plain for g_sched (fu_ctl_force) */
static struct cs_spec *g_spec; /* gen()'s, while it runs */

static void gen(struct cs_engine *e, struct cs_plugin *pl, int n_slots, int n_fix, struct gen_out *o)
{
    char err[CLSPEC_ERRLEN];
    struct cs_spec_params sp = cs_spec_defaults();
    sp.p_min = g_pmin;
    sp.n_max = n_fix > 0 ? n_fix : 4;
    sp.n_min = n_fix > 0 ? n_fix : 1;
    sp.ctl = g_sched > 0 ? CS_SPEC_CTL_COST : CS_SPEC_CTL_ACCEPT;
    struct cs_spec *spec = NULL;
    clspec_engine *door = fu_door(e);
    assert_int_equal(cs_spec_new(door, pl, &sp, n_slots, &spec, err, sizeof err), 0);
    g_spec = spec;
    struct cs_sampler_params smp_p = cs_sampler_defaults();
    smp_p.temp = 0;
    clspec_sampler *smp[4] = {NULL};
    int32_t left[4] = {0};
    memset(o, 0, sizeof *o);
    for (int s = 0; s < n_slots; s++) {
        const struct gcase *gc = &GC[s % MAXC];
        assert_int_equal(cs_api_sampler_new(&smp_p, spec->n_vocab, &smp[s], err, sizeof err), 0);
        cs_api_sampler_keep_logits(smp[s], !g_dev);
        if (cs_spec_slot_begin(spec, s, gc->prompt, gc->n_prompt, smp[s], true, err, sizeof err) != 0)
            fail_msg("slot_begin: %s", err);
        left[s] = NGREEDY;
    }
    for (;;) {
        bool any = false;
        for (int s = 0; s < n_slots; s++)
            any |= left[s] > 0;
        if (!any)
            break;
        if (g_sched > 0)
            fu_ctl_force(spec, (o->st.n_calls++ / (uint64_t)g_sched) % 2 == 0);
        if (cs_spec_step(spec, left, err, sizeof err) != 0)
            fail_msg("step: %s", err);
        for (int s = 0; s < n_slots; s++) {
            const struct cs_spec_slot *sl = &spec->slots[s];
            assert_int_equal(sl->rc, 0);
            assert_true(sl->on || !pl); /* the plugin never switched itself off */
            for (int i = 0; i < sl->n_out; i++)
                o->tok[s][o->n[s]++] = sl->out[i];
            left[s] = sl->eog ? 0 : left[s] - sl->n_out;
        }
    }
    o->st = spec->total;
    g_spec = NULL;
    for (int s = 0; s < n_slots; s++) {
        cs_spec_slot_end(spec, s);
        clspec_sampler_free(smp[s]);
    }
    cs_spec_free(spec);
    clspec_engine_free(door);
}

static void lossless(uint32_t kv, int parallel, const char *key, const char *val)
{
    struct cs_engine *e = engine_open(COMBINED, 512, 4, kv, 64);
    char err[CLSPEC_ERRLEN];
    static struct gen_out base, spec;
    gen(e, NULL, parallel, 0, &base);
    struct cs_plugin *pl = mtp_open(e, 4, NULL, key, val, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    gen(e, pl, parallel, 0, &spec);
    cs_plugin_free(pl);
    for (int s = 0; s < parallel; s++) {
        assert_int_equal(spec.n[s], base.n[s]);
        assert_memory_equal(spec.tok[s], base.tok[s], (size_t)base.n[s] * 4);
        if (kv == CS_TYPE_F32) /* and the reference's greedy text */
            assert_memory_equal(base.tok[s], GC[s % MAXC].greedy, NGREEDY * 4);
    }
    const struct cs_spec_stats *st = &spec.st;
    print_message("lossless kv %s parallel %d head %s=%s: %d steps (plain %d), drafted %d, accepted %d (%.1f%%), "
                  "%.2f tokens/step\n",
                  cs_type_name(kv), parallel, key ? key : "-", val ? val : "-", (int)st->n_steps,
                  (int)base.st.n_steps, (int)st->n_drafted, (int)st->n_accepted,
                  100.0 * (double)st->n_accepted / (double)(st->n_drafted ? st->n_drafted : 1),
                  (double)st->n_emitted / (double)(st->n_steps ? st->n_steps : 1));
    assert_true(st->n_accepted * 2 > st->n_drafted); /* a trained head: most drafts accepted */
    if (g_pmin > 0) /* only the confident drafts: fewer, and nearly all accepted */
        assert_true(st->n_accepted * 10 > st->n_drafted * 9);
    else
        assert_true(st->n_steps * 2 < base.st.n_steps);
    cs_engine_free(e);
}

static void test_lossless_f32_p1(void **state)
{
    (void)state;
    lossless(CS_TYPE_F32, 1, NULL, NULL);
}

static void test_lossless_f32_p4(void **state)
{
    (void)state;
    lossless(CS_TYPE_F32, 4, NULL, NULL);
}

static void test_lossless_f16_p1(void **state)
{
    (void)state;
    lossless(CS_TYPE_F16, 1, "n_batch", "4"); /* staged entries decoded in several batches */
}

static void test_lossless_f16_p4_bf16_head(void **state)
{
    (void)state;
    lossless(CS_TYPE_F16, 4, "type_k", "bf16");
}

/* head n_batch 2: four slots' first steps do not fit one head decode */
static void test_lossless_f32_p4_small_batch(void **state)
{
    (void)state;
    lossless(CS_TYPE_F32, 4, "n_batch", "2");
}

/* p_min: the head stops a chain at a token it gives less than p_min */
static void test_lossless_pmin(void **state)
{
    (void)state;
    g_pmin = 0.6f;
    lossless(CS_TYPE_F32, 4, NULL, NULL);
    g_pmin = 0;
}

/* Device drafts (ABI 1.7): the head's chain stays on the device, the
 * target's verification reads its tokens there, and one read brings back
 * the verdict and the drafts: the same tokens as plain decoding, in one
 * blocking sync per step when the chain fits one head decode. n_batch 2
 * (chains do not fit): the drafts are made on the host and queued to the
 * device. strip: a plugin without draft_batch_dev (built before 1.7) goes
 * the old way, a sync for the draft and one for the verdict. */
static void dev_case(int parallel, const char *key, const char *val, bool strip, bool one_sync)
{
    struct cs_engine *e = engine_open(COMBINED, 512, 4, CS_TYPE_F32, 64);
    char err[CLSPEC_ERRLEN];
    static struct gen_out base, spec;
    g_dev = true;
    gen(e, NULL, parallel, 0, &base);
    struct cs_plugin *pl = mtp_open(e, 4, NULL, key, val, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    assert_non_null(pl->vt.draft_batch_dev);
    if (strip)
        pl->vt.draft_batch_dev = NULL;
    gen(e, pl, parallel, 0, &spec);
    g_dev = false;
    cs_plugin_free(pl);
    for (int s = 0; s < parallel; s++) {
        assert_int_equal(spec.n[s], base.n[s]);
        assert_memory_equal(spec.tok[s], base.tok[s], (size_t)base.n[s] * 4);
        assert_memory_equal(base.tok[s], GC[s % MAXC].greedy, NGREEDY * 4);
    }
    const struct cs_spec_stats *st = &spec.st;
    print_message("device drafts, parallel %d%s%s%s: %d calls, %d syncs (%d drafting), drafted %d, accepted %d\n",
                  parallel, key ? " " : "", key ? key : "", strip ? " (plugin without draft_batch_dev)" : "",
                  (int)st->n_calls, (int)st->n_syncs, (int)st->n_syncs_draft, (int)st->n_drafted,
                  (int)st->n_accepted);
    assert_true(st->n_accepted * 2 > st->n_drafted);
    assert_true(st->n_steps * 2 < base.st.n_steps);
    assert_int_equal(st->n_greedy_rows, st->n_drafted + st->n_steps); /* every row verified on the device */
    if (one_sync) {
        assert_int_equal(st->n_syncs, st->n_calls);
        assert_int_equal(st->n_syncs_draft, 0);
    } else { /* at least one more for drafts that came to the host */
        assert_true(st->n_syncs_draft > 0);
        assert_true(st->n_syncs > st->n_calls);
    }
    cs_engine_free(e);
}

static void test_device_drafts(void **state)
{
    (void)state;
    dev_case(1, NULL, NULL, false, true);
    dev_case(4, NULL, NULL, false, true);
    dev_case(4, "n_batch", "2", false, false);
    dev_case(1, NULL, NULL, true, false);
}

/* ABI 1.8: a slot the controller keeps plain is detached (no accept calls,
 * no head work); at its next draft the plugin catches up on the plain
 * steps' tokens from the taps the host kept. Drafting and plain phases
 * alternate (fu_ctl_force): the output is plain decoding's, and the drafts
 * are exactly those of the same plugin without the 1.8 entries (a 1.7
 * plugin, told every step through accept), so the catch-up rebuilt the
 * head's context exactly. */
static int g_n_accept, g_n_accept_det; /* accept calls; of them for a slot the host had detached */
static void (*g_accept)(void *, int32_t, int32_t, int32_t, const int32_t *, int32_t);
static void count_accept(void *st, int32_t s, int32_t nd, int32_t na, const int32_t *t, int32_t nt)
{
    g_n_accept++;
    g_n_accept_det += g_spec && g_spec->slots[s].detached;
    g_accept(st, s, nd, na, t, nt);
}

static void detach_case(int parallel, bool dev)
{
    struct cs_engine *e = engine_open(COMBINED, 512, 4, CS_TYPE_F32, 64);
    char err[CLSPEC_ERRLEN];
    static struct gen_out base, det, old;
    g_dev = dev;
    gen(e, NULL, parallel, 0, &base);
    struct cs_plugin *pl = mtp_open(e, 4, NULL, NULL, NULL, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    assert_non_null(pl->vt.slot_detach);
    assert_non_null(pl->vt.slot_attach);
    g_accept = pl->vt.accept;
    pl->vt.accept = count_accept;
    g_sched = 5;
    g_n_accept = g_n_accept_det = 0;
    gen(e, pl, parallel, 0, &det);
    const int acc_det = g_n_accept;
    assert_int_equal(g_n_accept_det, 0);
    pl->vt.slot_detach = NULL; /* a plugin built before 1.8 */
    g_n_accept = 0;
    gen(e, pl, parallel, 0, &old);
    g_sched = 0;
    g_dev = false;
    cs_plugin_free(pl);
    for (int s = 0; s < parallel; s++) {
        assert_int_equal(det.n[s], base.n[s]);
        assert_memory_equal(det.tok[s], base.tok[s], (size_t)base.n[s] * 4);
        assert_int_equal(old.n[s], base.n[s]);
        assert_memory_equal(old.tok[s], base.tok[s], (size_t)base.n[s] * 4);
    }
    print_message("detach, parallel %d%s: %llu steps, %llu detached slot-steps, %llu attaches, drafted %llu "
                  "accepted %llu (without the 1.8 entries: drafted %llu accepted %llu, %d accept calls against "
                  "%d)\n",
                  parallel, dev ? ", device drafts" : "", (unsigned long long)det.st.n_steps,
                  (unsigned long long)det.st.n_detached, (unsigned long long)det.st.n_attach,
                  (unsigned long long)det.st.n_drafted, (unsigned long long)det.st.n_accepted,
                  (unsigned long long)old.st.n_drafted, (unsigned long long)old.st.n_accepted, g_n_accept, acc_det);
    assert_true(det.st.n_detached > 0);
    assert_true(det.st.n_attach > 0);
    assert_int_equal(old.st.n_detached, 0);
    assert_int_equal(old.st.n_attach, 0);
    assert_true(det.st.n_drafted > 0);
    assert_int_equal(det.st.n_drafted, old.st.n_drafted);
    assert_int_equal(det.st.n_accepted, old.st.n_accepted);
    assert_int_equal(g_n_accept - acc_det, (int)det.st.n_detached); /* no accept for a detached step */
    cs_engine_free(e);
}

static void test_detach(void **state)
{
    (void)state;
    detach_case(1, false);
    detach_case(4, true);
}

/* A target KV cache that fills up: drafts shrink, are refused and retried
 * without (the plugin then sees a verification without drafts, or none at
 * all); the tokens out before the cache is full are the plain ones. */
static void test_kv_full(void **state)
{
    (void)state;
    g_pmin = 0;
    const struct gcase *gc = &GC[2];
    struct cs_engine *e = engine_open(COMBINED, (uint32_t)gc->n_prompt + 30, 1, CS_TYPE_F32, 64);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = mtp_open(e, 1, NULL, NULL, NULL, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    for (int with = 0; with < 2; with++) {
        struct cs_spec_params sp = cs_spec_defaults();
        sp.n_max = 6;
        struct cs_spec *spec = NULL;
        clspec_engine *door = fu_door(e);
        assert_int_equal(cs_spec_new(door, with ? pl : NULL, &sp, 1, &spec, err, sizeof err), 0);
        struct cs_sampler_params smp_p = cs_sampler_defaults();
        smp_p.temp = 0;
        clspec_sampler *smp = NULL;
        assert_int_equal(cs_api_sampler_new(&smp_p, spec->n_vocab, &smp, err, sizeof err), 0);
        assert_int_equal(cs_spec_slot_begin(spec, 0, gc->prompt, gc->n_prompt, smp, true, err, sizeof err), 0);
        int32_t n = 0, left = NGREEDY;
        for (int it = 0; it < 200 && left > 0; it++) {
            assert_int_equal(cs_spec_step(spec, &left, err, sizeof err), 0);
            const struct cs_spec_slot *sl = &spec->slots[0];
            if (sl->rc == CLSPEC_E_KV_FULL)
                break;
            assert_int_equal(sl->rc, 0);
            for (int i = 0; i < sl->n_out; i++, n++)
                assert_int_equal(sl->out[i], gc->greedy[n]);
            left -= sl->n_out;
            assert_true(!with || sl->on);
        }
        assert_int_equal(n, 31); /* prompt + 30 cells hold positions 0..n_prompt + 29; the last token out needs none */
        cs_spec_slot_end(spec, 0);
        clspec_sampler_free(smp);
        cs_spec_free(spec);
        clspec_engine_free(door);
    }
    cs_plugin_free(pl);
    cs_engine_free(e);
}

/* Fixed k = 1, 2, 3 on the three prompts: drafted / accepted near the
 * reference's spec_stats_48_tokens (our first step starts one token
 * earlier, at the prompt's last token, and the last step is cut at 48). */
static void test_acceptance(void **state)
{
    (void)state;
    g_pmin = 0;
    struct cs_engine *e = engine_open(COMBINED, 512, 4, CS_TYPE_F32, 64);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = mtp_open(e, 4, NULL, NULL, NULL, err, sizeof err);
    if (!pl)
        fail_msg("mtp: %s", err);
    static struct gen_out o;
    for (int k = 1; k <= 3; k++) {
        gen(e, pl, 3, k, &o);
        int32_t rs = 0, rd = 0, ra = 0;
        for (int c = 0; c < MAXC; c++) {
            rs += GC[c].stats[k - 1][0];
            rd += GC[c].stats[k - 1][1];
            ra += GC[c].stats[k - 1][2];
        }
        double ours = (double)o.st.n_accepted / (double)o.st.n_drafted, ref = (double)ra / rd;
        print_message("k %d: steps %d drafted %d accepted %d (%.1f%%); reference steps %d drafted %d accepted %d "
                      "(%.1f%%)\n",
                      k, (int)o.st.n_steps, (int)o.st.n_drafted, (int)o.st.n_accepted, 100 * ours, rs, rd, ra,
                      100 * ref);
        assert_true(fabs(ours - ref) < 0.08);
        assert_true(abs((int)o.st.n_steps - rs) <= 6);
    }
    cs_plugin_free(pl);
    cs_engine_free(e);
}

/* Placement on two PoCL devices: the target split over 0,1 with the head on
 * 0 (the embedding shared, the output copied to 0; hidden states through
 * the host): lossless, the same drafts as on one device; target_head runs
 * on the target's output device; a head on a device the engine did not open
 * is refused at start-up. */
static void test_devices(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_engine *e1 = engine_open(COMBINED, 512, 4, CS_TYPE_F32, 64);
    struct cs_plugin *pl = mtp_open(e1, 4, NULL, NULL, NULL, err, sizeof err);
    static struct gen_out ref, o;
    gen(e1, pl, 3, 0, &ref);
    cs_plugin_free(pl);
    cs_engine_free(e1);
    const char *placements[2][2] = {{"0,1", "0"}, {"0", "1"}};
    for (int i = 0; i < 2; i++) {
        g_devices = placements[i][0];
        struct cs_engine *e = engine_open(COMBINED, 512, 4, CS_TYPE_F32, 64);
        g_devices = NULL;
        pl = mtp_open(e, 4, NULL, "device", placements[i][1], err, sizeof err);
        if (!pl && i == 1) { /* the engine holds only device 0: the head cannot go elsewhere */
            assert_non_null(strstr(err, "[speculator] device = 1: not one of the target's devices"));
            cs_engine_free(e);
            continue;
        }
        if (!pl)
            fail_msg("mtp: %s", err);
        gen(e, pl, 3, 0, &o);
        for (int s = 0; s < 3; s++)
            assert_memory_equal(o.tok[s], GC[s].greedy, NGREEDY * 4);
        assert_int_equal(o.st.n_drafted, ref.st.n_drafted);
        assert_int_equal(o.st.n_accepted, ref.st.n_accepted);
        print_message("devices %s, head on %s: drafted %d accepted %d (one device: %d / %d)\n", placements[i][0],
                      placements[i][1], (int)o.st.n_drafted, (int)o.st.n_accepted, (int)ref.st.n_drafted,
                      (int)ref.st.n_accepted);
        if (i == 0) { /* the head on device 0 with the target's output on device 1: a copy; target_head there */
            const struct clspec_host *h = &pl->host;
            float hz[64], lz[512];
            for (int k = 0; k < 64; k++)
                hz[k] = (float)(k % 7) - 3.0f;
            assert_int_equal(h->target_head(h, hz, 1, lz, err, sizeof err), 0);
        }
        cs_plugin_free(pl);
        cs_engine_free(e);
    }
}

/* A sidecar head with seeded random weights for models/synthetic/synth-256-F16.gguf
 * (head_dim 32, so quantized KV caches work): eh_proj passes the hidden half
 * through, so the head mostly proposes the target's own next token again. */
static char *write_synth_head(void)
{
    char *path = tu_tmp_path(".gguf");
    struct cs_gguf_writer *w = NULL;
    char err[CLSPEC_ERRLEN];
    assert_int_equal(cs_gguf_writer_new(path, &w, err, sizeof err), 0);
    const uint32_t E = 256, F = 768, Q = 256, KV = 128;
    assert_int_equal(cs_gguf_add_str(w, "general.architecture", "llama", err, sizeof err), 0);
    const char *k32[] = {"llama.context_length", "llama.embedding_length", "llama.block_count",
                         "llama.nextn_predict_layers", "llama.feed_forward_length", "llama.attention.head_count",
                         "llama.attention.head_count_kv", "llama.rope.dimension_count", "llama.vocab_size"};
    const uint32_t v32[] = {4096, E, 5, 1, F, 8, 4, 32, 2048};
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(cs_gguf_add_u32(w, k32[i], v32[i], err, sizeof err), 0);
    assert_int_equal(cs_gguf_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err, sizeof err), 0);
    static const char *names[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                                  "ffn_up", "ffn_down", "nextn.eh_proj", "nextn.enorm", "nextn.hnorm",
                                  "nextn.shared_head_norm"};
    const uint64_t sh[13][2] = {{E, 1}, {E, Q}, {E, KV}, {E, KV}, {Q, E}, {E, 1}, {E, F},
                                {E, F}, {F, E}, {2 * E, E}, {E, 1}, {E, 1}, {E, 1}};
    static float *data[13];
    struct tu_rng r;
    tu_rng_seed(&r, 77);
    for (int i = 0; i < 13; i++) {
        size_t n = (size_t)(sh[i][0] * sh[i][1]);
        data[i] = malloc(n * sizeof(float));
        for (size_t j = 0; j < n; j++)
            data[i][j] = sh[i][1] == 1 ? 1.0f : 0.02f * tu_rng_normal(&r);
        if (i == 9) /* eh_proj: [0 I] */
            for (uint32_t o = 0; o < E; o++)
                for (uint32_t c = 0; c < 2 * E; c++)
                    data[i][(size_t)o * 2 * E + c] = c == E + o ? 1.0f : 0.0f;
        char n_[96];
        snprintf(n_, sizeof n_, "blk.4.%s.weight", names[i]);
        uint64_t ne[2] = {sh[i][0], sh[i][1]};
        assert_int_equal(cs_gguf_add_tensor(w, n_, sh[i][1] == 1 ? 1 : 2, ne, CS_TYPE_F32, data[i], NULL, NULL, err,
                                            sizeof err),
                         0);
    }
    if (cs_gguf_writer_finish(w, err, sizeof err) != 0)
        fail_msg("%s", err);
    cs_gguf_writer_free(w);
    for (int i = 0; i < 13; i++)
        free(data[i]);
    return path;
}

/* Quantized KV (target and head, q8_0 and q4_0) on a synthetic target with
 * head_dim 32 and a generated sidecar head (no output of its own: the
 * target's, through CLSPEC_MODEL_TARGET_TENSORS): lossless at parallel 1 and 3. */
static void test_quantized_kv(void **state)
{
    (void)state;
    g_pmin = 0;
    char *head = write_synth_head();
    static const uint32_t types[2] = {CS_TYPE_Q8_0, CS_TYPE_Q4_0};
    for (int t = 0; t < 2; t++)
        for (int par = 1; par <= 3; par += 2) {
            struct cs_engine *e = engine_open("models/synthetic/synth-256-F16.gguf", 512, 4, types[t], 64);
            char err[CLSPEC_ERRLEN];
            struct cs_plugin_kv kv[] = {{"model", head}, {"type_k", cs_type_name(types[t])},
                                        {"type_v", cs_type_name(types[t])}};
            struct cs_plugin_params pp = {.type = "mtp", .kv = kv, .n_kv = 3, .engine = e, .n_slots = 4};
            struct cs_plugin *pl = NULL;
            if (cs_plugin_load(&pp, &pl, err, sizeof err) != 0)
                fail_msg("mtp: %s", err);
            static struct gen_out base, o;
            gen(e, NULL, par, 0, &base);
            gen(e, pl, par, 0, &o);
            for (int s = 0; s < par; s++) {
                assert_int_equal(o.n[s], base.n[s]);
                assert_memory_equal(o.tok[s], base.tok[s], (size_t)base.n[s] * 4);
            }
            print_message("synth-256 kv %s parallel %d: drafted %d accepted %d\n", cs_type_name(types[t]), par,
                          (int)o.st.n_drafted, (int)o.st.n_accepted);
            assert_true(o.st.n_drafted > 0);
            cs_plugin_free(pl);
            cs_engine_free(e);
        }
    remove(head);
    free(head);
}

/* Refusals at start-up, each with its reason. */
static void test_refusals(void **state)
{
    (void)state;
    struct cs_engine *e = engine_open(TARGET, 128, 1, CS_TYPE_F32, 64);
    char err[CLSPEC_ERRLEN];
    assert_null(mtp_open(e, 1, NULL, NULL, NULL, err, sizeof err)); /* no nextn blocks, no model key */
    assert_non_null(strstr(err, "has no MTP blocks"));
    assert_null(mtp_open(e, 1, SIDECAR, "device", "7", err, sizeof err));
    assert_non_null(strstr(err, "device = 7: not one of the target's devices"));
    assert_null(mtp_open(e, 1, TARGET, NULL, NULL, err, sizeof err)); /* a plain model is no head */
    assert_non_null(strstr(err, "stories260K.gguf: not an MTP head (no llama.nextn_predict_layers)"));
    /* the old host-side MTP head (model_load flags) is gone: a plain draft model takes no embeddings and has no
     * hidden states */
    {
        struct cs_plugin *pl = mtp_open(e, 1, SIDECAR, NULL, NULL, err, sizeof err);
        assert_non_null(pl);
        char *tp = tu_shared_path(TARGET);
        clspec_model *m = NULL;
        clspec_ctx *c = NULL;
        assert_int_equal(pl->host.model_load(&pl->host, tp, -1, 0, &m, err, sizeof err), 0);
        free(tp);
        struct clspec_ctx_params cp = {.size = sizeof cp, .n_ctx = 8, .n_batch = 2, .n_seq = 1};
        assert_int_equal(pl->host.ctx_new(m, &cp, &c, err, sizeof err), 0);
        float z[64] = {0};
        int32_t x = 0, p = 1, sq = 0;
        struct clspec_decode d = {.size = sizeof d, .n = 1, .tokens = &x, .embd = z, .pos = &p, .seq = &sq};
        assert_int_not_equal(pl->host.ctx_decode(c, &d, err, sizeof err), 0);
        int32_t nr = 5;
        assert_null(pl->host.ctx_hidden(c, &nr)); /* plain models: no hidden states here */
        assert_int_equal(nr, 0);
        pl->host.ctx_free(c);
        pl->host.model_free(m);
        /* the 1.2 flag for the target's own nextn blocks: a clear refusal (old plugins fail their init with it) */
        assert_int_not_equal(pl->host.model_load(&pl->host, NULL, -1, CLSPEC_MODEL_NEXTN, &m, err, sizeof err), 0);
        assert_null(m);
        assert_non_null(strstr(err, "CLSPEC_MODEL_NEXTN is not provided by this host"));
        assert_non_null(strstr(err, "use the compute service (1.4)"));
        cs_plugin_free(pl);
    }
    /* q8_0 blocks run along the head's KV row (4 kv heads x 8 = 32): taken */
    struct cs_plugin *q8 = mtp_open(e, 1, SIDECAR, "type_k", "q8_0", err, sizeof err);
    if (!q8)
        fail_msg("mtp with q8_0 KV: %s", err);
    cs_plugin_free(q8);
    assert_null(mtp_open(e, 1, SIDECAR, "type_k", "q5_0", err, sizeof err)); /* not a KV type */
    assert_non_null(strstr(err, "q5_0"));
    cs_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_taps),
        cmocka_unit_test(test_first_step_combined),
        cmocka_unit_test(test_first_step_sidecar),
        cmocka_unit_test(test_trace_combined),
        cmocka_unit_test(test_trace_sidecar),
        cmocka_unit_test(test_lossless_f32_p1),
        cmocka_unit_test(test_lossless_f32_p4),
        cmocka_unit_test(test_lossless_f16_p1),
        cmocka_unit_test(test_lossless_f16_p4_bf16_head),
        cmocka_unit_test(test_lossless_f32_p4_small_batch),
        cmocka_unit_test(test_lossless_pmin),
        cmocka_unit_test(test_device_drafts), cmocka_unit_test(test_detach),
        cmocka_unit_test(test_kv_full),
        cmocka_unit_test(test_quantized_kv),
        cmocka_unit_test(test_acceptance),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_devices),
    };
    setenv("POCL_DEVICES", "pthread pthread", 1); /* before the first OpenCL call: two devices for test_devices */
    return cmocka_run_group_tests(tests, load_golden, NULL);
}
