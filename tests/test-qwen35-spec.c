/* test-qwen35-spec.c: speculation on the hybrid qwen35-tiny target through
 * the core's loop (src/spec/spec.c), the cases test-qwen35.c leaves out:
 * - a decode that fails in the middle of a multi-slot speculative step (the
 *   test-only fault hook cs_fwd_debug_fail: the forward ran, cells were
 *   placed and recurrent states advanced, then the call fails) clears every
 *   slot's speculative state: no pending draft, the KV cells and the
 *   recurrent state back at the slot's history, the sampler and its grammar
 *   back at their snapshot, the plugin told nothing was accepted; decoding
 *   goes on and every answer, and every later request's, equals the
 *   non-speculative one (ngram, a stories260K drafter, a hybrid
 *   qwen35-tiny-Q8_0 drafter; a grammar on one slot);
 * - drafts longer than 15 tokens: the engine keeps n_draft_max + 1 recurrent
 *   states per sequence (clspec_engine_params.n_draft_max), so n_max 24 is
 *   lossless with ngram on a repetitive prompt, with a drafter that is
 *   almost always wrong (rollbacks of more than 15 tokens) and with a hybrid
 *   drafter (whose own context keeps n_max + 1 states); an engine opened
 *   without it refuses n_max above 15 at cs_spec_new, naming the INI key and
 *   the limit; the memory per sequence is printed;
 * - an MTP head made for another trunk is refused at load naming both. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/common.h"
#include "engine/api.h"
#include "engine/engine.h"
#include "fwdutil.h"
#include "golden.h"
#include "kv/kv.h"
#include "kv/kv_rec.h"
#include "model/forward.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "testutil.h"

#define F32_MODEL "models/synthetic/qwen35-tiny-F32.gguf"
#define STORIES "models/stories260K.gguf"
#define Q35_Q8 "models/synthetic/qwen35-tiny-Q8_0.gguf"
#define NGEN 40
#define NREQ 6
#define MAXP 160

/* A grammar the random model can always follow: lower-case words. */
static const char *WORDS = "root ::= \" \"? [a-z]+ (\" \" [a-z]+)* \".\"\n";

struct req {
    int32_t prompt[MAXP];
    int n;
    bool grammar;            /* constrained by WORDS */
};

struct result {
    int32_t tok[NREQ][NGEN];
    uint64_t n_drafted, n_accepted;
    int32_t max_verified;    /* the longest draft one step verified */
    int32_t max_rollback;    /* the most drafted tokens one step rejected */
    bool all_on;             /* speculation stayed on in every slot */
    int n_faults;            /* injected failures seen */
    int first_multi;         /* the first step >= 3 of the first round in which 2 or more slots verified drafts */
};

struct env {
    struct cs_engine *e;
    clspec_engine *door;
    clspec_grammar_vocab *gv;
};

static void env_open(struct env *E, int par, uint32_t n_draft_max)
{
    struct cs_engine_params p = cs_engine_defaults();
    p.n_ctx = 1024;
    p.n_seq_max = (uint32_t)par;
    p.n_draft_max = n_draft_max;
    E->e = fu_engine_open(F32_MODEL, &p);
    E->door = fu_door(E->e);
    char err[CLSPEC_ERRLEN];
    if (clspec_grammar_vocab_new(E->door, &E->gv, err, sizeof err) != CLSPEC_OK)
        fail_msg("grammar vocabulary: %s", err);
}

static void env_close(struct env *E)
{
    clspec_grammar_vocab_free(E->gv);
    clspec_engine_free(E->door);
    cs_engine_free(E->e);
}

static struct cs_plugin *plugin(struct cs_engine *e, const char *type, const char *rel, int par, int n_max)
{
    char err[CLSPEC_ERRLEN], nm[16];
    snprintf(nm, sizeof nm, "%d", n_max);
    char *model = rel ? tu_shared_path(rel) : NULL;
    struct cs_plugin_kv kv[3] = {{"n_max", nm}, {"model", model}};
    int n_kv = rel ? 2 : 1;
    if (!rel) { /* ngram: short patterns, so a repeated phrase is found at once */
        kv[1] = (struct cs_plugin_kv){"n_min_ngram", "1"};
        kv[2] = (struct cs_plugin_kv){"n_max_ngram", "4"};
        n_kv = 3;
    }
    struct cs_plugin_params pp = {.type = type, .kv = kv, .n_kv = n_kv, .engine = e, .n_slots = (uint32_t)par};
    struct cs_plugin *pl = NULL;
    int rc = cs_plugin_load(&pp, &pl, err, sizeof err);
    free(model);
    if (rc != CLSPEC_OK)
        fail_msg("%s plugin: %s", type, err);
    return pl;
}

/* Slot s's state after a failed step equals its state before (n_hist0):
 * nothing pending, cells and recurrent state at the history. */
static void assert_cleared(const struct env *E, const struct cs_spec *spec, int32_t s, int32_t n_hist0, int gstat0)
{
    const struct cs_spec_slot *sl = &spec->slots[s];
    assert_int_equal(sl->n_draft, 0);
    assert_int_equal(sl->n_out, 0);
    assert_int_equal(sl->n_accepted, 0);
    assert_int_equal(sl->n_hist, n_hist0);
    assert_int_equal(cs_spec_kv_cells(spec->e, s), (uint32_t)(n_hist0 - 1));
    assert_int_equal(E->e->ctx->kv->rec->len[s], n_hist0 - 1);
    assert_int_equal(clspec_sampler_grammar_status(sl->smp), gstat0);
}

/* Runs the requests par at a time (NGEN greedy tokens each) with plugin pl
 * (NULL: none) and draft length n_max. fault_step >= 0: the forward of that
 * step of the first round fails (cs_fwd_debug_fail); the step must report
 * it and leave every slot as it was, then decoding goes on. */
static void run(struct env *E, const struct req *rq, int n_req, struct cs_plugin *pl, int par, int n_max,
                int fault_step, struct result *out)
{
    char err[CLSPEC_ERRLEN];
    memset(out, 0, sizeof *out);
    out->all_on = true;
    out->first_multi = -1;
    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = n_max;
    struct cs_spec *spec = NULL;
    if (cs_spec_new(E->door, pl, &sp, par, &spec, err, sizeof err) != CLSPEC_OK)
        fail_msg("spec: %s", err);
    for (int r0 = 0; r0 < n_req; r0 += par) {
        const int ns = CS_MIN(par, n_req - r0);
        clspec_sampler *smp[8] = {NULL};
        int32_t left[8] = {0}, got[8] = {0};
        for (int s = 0; s < ns; s++) {
            const struct req *q = &rq[r0 + s];
            struct cs_sampler_params p = cs_sampler_defaults();
            p.temp = 0;
            if (cs_api_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err) != CLSPEC_OK)
                fail_msg("sampler: %s", err);
            if (q->grammar && clspec_sampler_set_grammar(smp[s], E->gv, WORDS, NULL, err, sizeof err) != CLSPEC_OK)
                fail_msg("grammar: %s", err);
            if (cs_spec_slot_begin(spec, s, q->prompt, q->n, smp[s], pl != NULL, err, sizeof err) != CLSPEC_OK)
                fail_msg("request %d: %s", r0 + s, err);
            left[s] = NGEN;
        }
        for (int step = 0;; step++) {
            bool any = false;
            for (int s = 0; s < ns; s++)
                any |= left[s] > 0;
            if (!any)
                break;
            int32_t h0[8], g0[8];
            uint64_t d0[8], a0[8], asked0[8];
            for (int s = 0; s < ns; s++) {
                h0[s] = spec->slots[s].n_hist;
                g0[s] = clspec_sampler_grammar_status(smp[s]);
                d0[s] = spec->slots[s].st.n_drafted;
                a0[s] = spec->slots[s].st.n_accepted;
                asked0[s] = spec->slots[s].st.n_asked;
            }
            const bool fault = r0 == 0 && step == fault_step;
            if (fault)
                cs_fwd_debug_fail(E->e->ctx, 1);
            int rc = cs_spec_step(spec, left, err, sizeof err);
            if (fault) {
                assert_int_equal(rc, CLSPEC_E_CL);
                assert_non_null(strstr(err, "injected failure"));
                assert_int_equal(E->e->ctx->debug_fail, 0);
                int n_asking = 0;
                for (int s = 0; s < ns; s++) {
                    n_asking += spec->slots[s].st.n_asked > asked0[s];
                    if (left[s] > 0)
                        assert_cleared(E, spec, s, h0[s], g0[s]);
                }
                if (pl) /* a multi-slot speculative batch was in flight */
                    assert_true(n_asking >= 2);
                out->n_faults++;
                continue; /* nothing came out: the same step again */
            }
            if (rc != CLSPEC_OK)
                fail_msg("step %d: %s", step, err);
            int n_drafting = 0;
            for (int s = 0; s < ns; s++) {
                const struct cs_spec_slot *sl = &spec->slots[s];
                if (left[s] <= 0)
                    continue;
                assert_int_equal(sl->rc, CLSPEC_OK);
                int32_t nd = (int32_t)(sl->st.n_drafted - d0[s]), na = (int32_t)(sl->st.n_accepted - a0[s]);
                n_drafting += nd > 0;
                out->max_verified = CS_MAX(out->max_verified, nd);
                out->max_rollback = CS_MAX(out->max_rollback, nd - na);
                for (int i = 0; i < sl->n_out && got[s] < NGEN; i++)
                    out->tok[r0 + s][got[s]++] = sl->out[i];
                left[s] = sl->eog ? 0 : NGEN - got[s];
                assert_int_equal(cs_spec_kv_cells(spec->e, s), (uint32_t)(sl->n_hist - 1));
                assert_int_equal(E->e->ctx->kv->rec->len[s], sl->n_hist - 1);
            }
            if (r0 == 0 && step >= 3 && n_drafting >= 2 && out->first_multi < 0)
                out->first_multi = step;
        }
        for (int s = 0; s < ns; s++) {
            const struct cs_spec_slot *sl = &spec->slots[s];
            if (pl && (!sl->on || sl->off_why[0])) {
                out->all_on = false;
                print_message("# slot %d: speculation off: %s\n", s, sl->off_why);
            }
            out->n_drafted += sl->st.n_drafted;
            out->n_accepted += sl->st.n_accepted;
            cs_spec_slot_end(spec, s);
            clspec_sampler_free(smp[s]);
            assert_int_equal(cs_kv_seq_n_cells(E->e->ctx->kv, s), 0);
            assert_int_equal(E->e->ctx->kv->rec->len[s], 0);
        }
    }
    assert_int_equal(E->e->ctx->kv->n_used, 0);
    cs_spec_free(spec);
}

static void tokenize(struct env *E, const char *text, struct req *q)
{
    size_t n = 0;
    char err[CLSPEC_ERRLEN];
    if (clspec_tokenize(E->door, text, strlen(text), 1, 0, q->prompt, MAXP, &n, err, sizeof err) != CLSPEC_OK)
        fail_msg("tokenize: %s", err);
    q->n = (int)n;
}

/* Six requests: two with repeated phrases (prompt lookup drafts from the
 * first step on) among the reference's 4 prompts; request 0 under the
 * grammar. */
static int requests(struct env *E, struct req *rq)
{
    char *path = tu_shared_path("reference/qwen35/greedy-qwen35-tiny-F32.json");
    struct golden *g = golden_load(path);
    free(path);
    assert_non_null(g);
    assert_true(g->n_cases >= 4);
    memset(rq, 0, NREQ * sizeof *rq);
    static const int at[4] = {0, 3, 4, 5}; /* where the reference's prompts go */
    for (int i = 0; i < 4; i++) {
        assert_true(g->cases[i].n_prompt <= MAXP);
        memcpy(rq[at[i]].prompt, g->cases[i].prompt, (size_t)g->cases[i].n_prompt * sizeof *rq[at[i]].prompt);
        rq[at[i]].n = g->cases[i].n_prompt;
    }
    golden_free(g);
    tokenize(E, "one two three four one two three four one two three four", &rq[1]);
    tokenize(E, "The little dog ran to the park and the little dog ran to the", &rq[2]);
    rq[0].grammar = true;
    return NREQ;
}

static void fault_case(const char *type, const char *rel)
{
    struct env E;
    env_open(&E, 3, 0);
    struct req rq[NREQ];
    int n = requests(&E, rq);
    static struct result plain, probe, spec;
    run(&E, rq, n, NULL, 3, 8, -1, &plain);
    /* the same run without the fault (a fresh plugin: the same drafts) finds a step where 2 or more slots
     * verify drafts; the fault hits that step */
    struct cs_plugin *pl = plugin(E.e, type, rel, 3, 8);
    run(&E, rq, n, pl, 3, 8, -1, &probe);
    cs_plugin_free(pl);
    assert_true(probe.first_multi >= 0);
    pl = plugin(E.e, type, rel, 3, 8);
    run(&E, rq, n, pl, 3, 8, probe.first_multi, &spec);
    print_message("# %s%s%s: failure injected at step %d (3 slots, drafts in flight); %llu drafted, %llu "
                  "accepted in all\n", type, rel ? " " : "", rel ? rel : "", probe.first_multi,
                  (unsigned long long)spec.n_drafted, (unsigned long long)spec.n_accepted);
    assert_int_equal(spec.n_faults, 1);
    assert_true(spec.n_drafted > 0);
    for (int r = 0; r < n; r++) /* the faulted round and the later requests */
        assert_memory_equal(spec.tok[r], plain.tok[r], sizeof plain.tok[r]);
    cs_plugin_free(pl);
    env_close(&E);
}

static void test_fault_ngram(void **st) { (void)st; fault_case("ngram", NULL); }
static void test_fault_draft(void **st) { (void)st; fault_case("draft", STORIES); }
static void test_fault_draft_hybrid(void **st) { (void)st; fault_case("draft", Q35_Q8); }

/* ---- drafts longer than 15 tokens ---- */

static void long_case(const char *type, const char *rel, int par)
{
    struct env E;
    env_open(&E, par, 24);
    struct req rq[NREQ];
    int n = requests(&E, rq);
    static struct result plain, spec;
    run(&E, rq, n, NULL, par, 24, -1, &plain);
    struct cs_plugin *pl = plugin(E.e, type, rel, par, 24);
    run(&E, rq, n, pl, par, 24, -1, &spec);
    print_message("# n_max 24, %s%s%s, parallel %d: %llu drafted, %llu accepted; longest verified draft %d, most "
                  "rejected in one step %d\n",
                  type, rel ? " " : "", rel ? rel : "", par, (unsigned long long)spec.n_drafted,
                  (unsigned long long)spec.n_accepted, spec.max_verified, spec.max_rollback);
    for (int r = 0; r < n; r++)
        assert_memory_equal(spec.tok[r], plain.tok[r], sizeof plain.tok[r]);
    assert_true(spec.all_on); /* no rollback refused anywhere (a hybrid drafter's own included) */
    if (!rel) /* ngram on repeated phrases: long drafts verified */
        assert_true(spec.max_verified > 15);
    else if (!strcmp(rel, STORIES)) /* an (almost) always wrong drafter: long rollbacks */
        assert_true(spec.max_rollback > 15);
    else /* the hybrid drafter agrees often: partial acceptances of long drafts */
        assert_true(spec.max_verified > 15 && spec.n_accepted > 0 && spec.n_accepted < spec.n_drafted);
    cs_plugin_free(pl);
    env_close(&E);
}

static void test_long_ngram(void **st) { (void)st; long_case("ngram", NULL, 2); }
static void test_long_draft(void **st) { (void)st; long_case("draft", STORIES, 2); }
static void test_long_draft_hybrid(void **st) { (void)st; long_case("draft", Q35_Q8, 3); }

/* The limit, where it is, refused with its name; the memory it costs. */
static void test_long_limits(void **st)
{
    (void)st;
    char err[CLSPEC_ERRLEN];
    struct clspec_engine_info info = {.size = sizeof info};
    struct cs_spec_params sp = cs_spec_defaults();
    struct cs_spec *spec = NULL;
    uint64_t per_seq[3];
    const uint32_t ndm[3] = {0, 24, 64};
    for (int k = 0; k < 3; k++) {
        struct env E;
        env_open(&E, 2, ndm[k]);
        assert_int_equal(clspec_engine_get_info(E.door, &info, err, sizeof err), CLSPEC_OK);
        const uint32_t reach = ndm[k] ? ndm[k] : 15;
        assert_int_equal(info.n_draft_max, reach);
        per_seq[k] = cs_kv_rec_bytes(E.e->ctx->kv->rec) / 2;
        /* n_max up to the reach starts; one more is refused naming the key and the limit */
        sp.n_max = (int32_t)CS_MIN(reach, 64u);
        assert_int_equal(cs_spec_new(E.door, NULL, &sp, 2, &spec, err, sizeof err), CLSPEC_OK);
        cs_spec_free(spec);
        if (reach < 64) {
            sp.n_max = (int32_t)reach + 1;
            assert_int_equal(cs_spec_new(E.door, NULL, &sp, 2, &spec, err, sizeof err), CLSPEC_E_RANGE);
            print_message("# refused: %s\n", err);
            assert_non_null(strstr(err, "[speculator] n_max"));
            assert_non_null(strstr(err, "n_draft_max"));
            char lim[32];
            snprintf(lim, sizeof lim, "the %u drafted tokens", reach);
            assert_non_null(strstr(err, lim));
        }
        /* the door: a rollback of `reach` tokens works, one more fails loudly and changes nothing */
        int32_t tok[80], pos[80], seq[80];
        const int32_t n = (int32_t)reach + 10;
        for (int32_t i = 0; i < n; i++)
            tok[i] = 5 + i % 50, pos[i] = i, seq[i] = 0;
        struct clspec_batch b = {.size = sizeof b, .n_rows = n, .token = tok, .pos = pos, .seq = seq};
        assert_int_equal(clspec_decode(E.door, &b, NULL, err, sizeof err), CLSPEC_OK);
        assert_int_equal(clspec_seq_rm(E.door, 0, n - (int32_t)reach - 1, -1, err, sizeof err), CLSPEC_E_UNSUPPORTED);
        assert_int_equal(E.e->ctx->kv->rec->len[0], n);
        assert_int_equal(clspec_seq_rm(E.door, 0, n - (int32_t)reach, -1, err, sizeof err), CLSPEC_OK);
        assert_int_equal(E.e->ctx->kv->rec->len[0], n - (int32_t)reach);
        env_close(&E);
    }
    print_message("# recurrent state per sequence (qwen35-tiny): %.1f KiB with 16 states (n_draft_max <= 15), "
                  "%.1f KiB with 25 (24), %.1f KiB with 65 (64): %.1f KiB a state\n",
                  per_seq[0] / 1024.0, per_seq[1] / 1024.0, per_seq[2] / 1024.0, per_seq[0] / 16 / 1024.0);
    assert_true(per_seq[1] * 16 == per_seq[0] * 25 && per_seq[2] * 16 == per_seq[0] * 65);
    /* a model without recurrent state: no limit */
    struct cs_engine_params p = cs_engine_defaults();
    p.n_seq_max = 1;
    struct cs_engine *e = fu_engine_open(STORIES, &p);
    clspec_engine *door = fu_door(e);
    assert_int_equal(clspec_engine_get_info(door, &info, err, sizeof err), CLSPEC_OK);
    assert_int_equal(info.n_draft_max, 0);
    sp.n_max = 64;
    assert_int_equal(cs_spec_new(door, NULL, &sp, 1, &spec, err, sizeof err), CLSPEC_OK);
    cs_spec_free(spec);
    clspec_engine_free(door);
    cs_engine_free(e);
    /* out of range at open */
    struct clspec_engine_params ep;
    clspec_engine_default_params(&ep, sizeof ep);
    char *path = tu_shared_path(F32_MODEL);
    ep.model_path = path;
    ep.n_draft_max = 5000;
    clspec_engine *bad = NULL;
    assert_int_equal(clspec_engine_open(&ep, &bad, err, sizeof err), CLSPEC_E_INVAL);
    assert_null(bad);
    assert_non_null(strstr(err, "n_draft_max 5000"));
    free(path);
}

/* An MTP head made for another trunk (stories260K's 5 layers) is refused at
 * load, naming both sides. */
static void test_mtp_other_trunk(void **st)
{
    (void)st;
    struct env E;
    env_open(&E, 1, 0);
    char err[CLSPEC_ERRLEN];
    char *model = tu_shared_path("models/derived/stories260K-mtp-head.gguf");
    struct cs_plugin_kv kv[1] = {{"model", model}};
    struct cs_plugin_params pp = {.type = "mtp", .kv = kv, .n_kv = 1, .engine = E.e, .n_slots = 1};
    struct cs_plugin *pl = NULL;
    assert_int_equal(cs_plugin_load(&pp, &pl, err, sizeof err), CLSPEC_E_PLUGIN);
    assert_null(pl);
    print_message("# refused: %s\n", err);
    assert_non_null(strstr(err, "made for a 5-layer trunk"));
    assert_non_null(strstr(err, "the target (qwen35) has 8 layers"));
    free(model);
    env_close(&E);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_ngram), cmocka_unit_test(test_fault_draft),
        cmocka_unit_test(test_fault_draft_hybrid), cmocka_unit_test(test_long_limits),
        cmocka_unit_test(test_long_ngram), cmocka_unit_test(test_long_draft),
        cmocka_unit_test(test_long_draft_hybrid), cmocka_unit_test(test_mtp_other_trunk),
    };
    return cmocka_run_group_tests_name("qwen35-spec", tests, NULL, NULL);
}
