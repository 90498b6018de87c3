/* test-grammar-spec.c: grammar-constrained generation on stories260K through
 * the speculative core (src/spec/spec.c): greedy output under a grammar is a
 * sentence of it ("yes" | "no", a number list, a JSON Schema's objects) and
 * differs from the unconstrained output; with the ngram, draft, mtp and
 * dflash speculators (parallel 1 and 4) the greedy tokens are identical to
 * those without speculation, and with ngram seeded sampling too, while drafts
 * are cut and rejected (rollbacks restore the grammar state). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "engine/api.h"
#include "engine/engine.h"
#include "engine/grammar.h"
#include "fwdutil.h"
#include "spec/loader.h"
#include "spec/spec.h"
#include "testutil.h"

#define NGEN 48
#define NP 4

static const char *const PROMPTS[NP] = {"Once upon a time", "The cat said", "Lily wanted to know",
                                        "Tom and his mom"};

static const char *YESNO = "root ::= \" \"? (\"yes\" | \"no\") \".\"\n";
static const char *NUMBERS = "root ::= \" [\" num (\", \" num){2,4} \"]\"\nnum ::= [1-9] [0-9]{0,2}\n";
static const char *SCHEMA = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
                            "\"age\":{\"type\":\"integer\",\"minimum\":0},\"tags\":{\"type\":\"array\",\"items\":"
                            "{\"enum\":[\"a\",\"b\"]},\"maxItems\":3},\"happy\":{\"type\":\"boolean\"}},"
                            "\"required\":[\"name\",\"age\",\"happy\"]}";

struct env {
    struct cs_engine *e;
    clspec_engine *door;
    clspec_grammar_vocab *gv;
    char *schema_gbnf;
};

struct run {
    int32_t tok[NP][NGEN];
    int n[NP];
    bool eog[NP];
    struct cs_spec_stats st;
};

static struct cs_plugin *plugin(struct cs_engine *e, const char *type, uint32_t n_slots)
{
    const char *rel = strcmp(type, "draft") == 0    ? "models/derived/stories260K-draft-distilled.gguf"
                      : strcmp(type, "mtp") == 0    ? "models/derived/stories260K-mtp-head.gguf"
                      : strcmp(type, "dflash") == 0 ? "models/derived/stories260K-dflash.gguf"
                                                    : NULL;
    char *model = rel ? tu_shared_path(rel) : NULL;
    struct cs_plugin_kv kv[] = {{"model", model}};
    struct cs_plugin_kv kvn[] = {{"n_min_ngram", "1"}, {"n_max_ngram", "4"}};
    struct cs_plugin_params pp = {.type = type, .kv = model ? kv : kvn, .n_kv = model ? 1 : 2, .engine = e,
                                  .n_slots = n_slots};
    struct cs_plugin *pl = NULL;
    char err[CLSPEC_ERRLEN];
    if (cs_plugin_load(&pp, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s: %s", type, err);
    free(model);
    return pl;
}

/* Generates for the prompts [0, NP) on n_slots slots at a time with grammar gbnf (NULL: none). */
static void gen(struct env *E, const char *type, int n_slots, float temp, const char *gbnf, struct run *out)
{
    memset(out, 0, sizeof *out);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = type ? plugin(E->e, type, (uint32_t)n_slots) : NULL;
    for (int c0 = 0; c0 < NP; c0 += n_slots) {
        struct cs_spec_params sp = cs_spec_defaults();
        sp.n_max = 6;
        struct cs_spec *spec = NULL;
        assert_int_equal(cs_spec_new(E->door, pl, &sp, n_slots, &spec, err, sizeof err), CLSPEC_OK);
        clspec_sampler *smp[NP] = {NULL};
        int32_t left[NP] = {0};
        for (int s = 0; s < n_slots; s++) {
            struct cs_sampler_params p = cs_sampler_defaults();
            p.temp = temp;
            p.seed = 77 + (uint64_t)(c0 + s);
            assert_int_equal(cs_api_sampler_new(&p, spec->n_vocab, &smp[s], err, sizeof err), CLSPEC_OK);
            int32_t prompt[64];
            size_t n = 0;
            const char *t = PROMPTS[c0 + s];
            assert_int_equal(clspec_tokenize(E->door, t, strlen(t), 1, 0, prompt, 64, &n, err, sizeof err), 0);
            for (size_t i = 0; i < n; i++)
                clspec_sampler_accept(smp[s], prompt[i]);
            if (gbnf && clspec_sampler_set_grammar(smp[s], E->gv, gbnf, NULL, err, sizeof err) != CLSPEC_OK)
                fail_msg("grammar: %s", err);
            if (cs_spec_slot_begin(spec, s, prompt, (int32_t)n, smp[s], true, err, sizeof err) != CLSPEC_OK)
                fail_msg("slot_begin: %s", err);
            left[s] = NGEN;
        }
        for (;;) {
            bool any = false;
            for (int s = 0; s < n_slots; s++)
                any |= left[s] > 0;
            if (!any)
                break;
            if (cs_spec_step(spec, left, err, sizeof err) != CLSPEC_OK)
                fail_msg("step: %s", err);
            for (int s = 0; s < n_slots; s++) {
                const struct cs_spec_slot *sl = &spec->slots[s];
                if (left[s] <= 0)
                    continue;
                assert_int_equal(sl->rc, CLSPEC_OK);
                for (int i = 0; i < sl->n_out; i++)
                    out->tok[c0 + s][out->n[c0 + s]++] = sl->out[i];
                out->eog[c0 + s] = sl->eog;
                left[s] = sl->eog ? 0 : left[s] - sl->n_out;
                assert_int_equal(cs_spec_kv_cells(spec->e, s), (uint32_t)(sl->n_hist - 1));
            }
        }
        out->st.n_drafted += spec->total.n_drafted;
        out->st.n_accepted += spec->total.n_accepted;
        out->st.n_steps += spec->total.n_steps;
        for (int s = 0; s < n_slots; s++) {
            cs_spec_slot_end(spec, s);
            clspec_sampler_free(smp[s]);
        }
        cs_spec_free(spec);
    }
    if (pl)
        cs_plugin_free(pl);
}

/* The text of tokens (pieces as the grammar saw them), the end token left out. */
static void text_of(struct env *E, const int32_t *t, int n, char *buf, size_t cap)
{
    size_t len = 0;
    char err[CLSPEC_ERRLEN];
    for (int i = 0; i < n; i++) {
        if (clspec_token_is_eog(E->door, t[i]) == 1)
            break;
        size_t k = 0;
        assert_int_equal(clspec_token_piece(E->door, t[i], 0, buf + len, cap - len, &k, err, sizeof err), 0);
        len += k;
    }
    buf[len] = '\0';
}

/* Every output is a sentence of gbnf (complete when it ended, a prefix when it ran out). */
static void check_sentences(struct env *E, const struct run *r, const char *gbnf)
{
    char err[CLSPEC_ERRLEN];
    struct cs_grammar *g = NULL;
    assert_int_equal(cs_grammar_compile(gbnf, strlen(gbnf), NULL, &g, err, sizeof err), 0);
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    for (int c = 0; c < NP; c++) {
        char text[4096];
        text_of(E, r->tok[c], r->n[c], text, sizeof text);
        struct cs_grammar_state st = {0};
        assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
        int ok = cs_grammar_accept_bytes(g, &st, (const uint8_t *)text, strlen(text), sc);
        if (ok != 1 || (r->eog[c] && !cs_grammar_complete(g, &st)))
            fail_msg("prompt %d: '%s' is not a sentence of the grammar (ended: %d)", c, text, r->eog[c]);
        cs_grammar_state_free(&st);
    }
    cs_grammar_scratch_free(sc);
    cs_grammar_unref(g);
}

static void assert_same(const struct run *a, const struct run *b, const char *what)
{
    for (int c = 0; c < NP; c++) {
        if (a->n[c] != b->n[c] || memcmp(a->tok[c], b->tok[c], (size_t)a->n[c] * sizeof(int32_t)) != 0)
            fail_msg("%s: prompt %d differs from the run without speculation", what, c);
        assert_int_equal(a->eog[c], b->eog[c]);
    }
}

static void test_greedy_grammar(void **state)
{
    struct env *E = *state;
    struct run free_run, yn, num;
    gen(E, NULL, 1, 0.0f, NULL, &free_run);
    gen(E, NULL, 1, 0.0f, YESNO, &yn);
    gen(E, NULL, 1, 0.0f, NUMBERS, &num);
    check_sentences(E, &yn, YESNO);
    check_sentences(E, &num, NUMBERS);
    int differ = 0;
    for (int c = 0; c < NP; c++) {
        assert_true(yn.eog[c]); /* "yes." / "no." then only the end is allowed */
        differ += num.n[c] != free_run.n[c] || memcmp(num.tok[c], free_run.tok[c], sizeof(int32_t) * 4) != 0;
        char text[4096];
        text_of(E, num.tok[c], num.n[c], text, sizeof text);
        print_message("numbers %d: %s\n", c, text);
    }
    assert_true(differ > 0); /* the story model does not write number lists by itself */
}

static void lossless(struct env *E, const char *gbnf, float temp)
{
    struct run base, r;
    gen(E, NULL, 1, temp, gbnf, &base);
    check_sentences(E, &base, gbnf);
    const char *types[] = {"ngram", "draft", "mtp", "dflash"};
    for (int t = 0; t < 4; t++)
        for (int par = 1; par <= 4; par *= 4) {
            gen(E, types[t], par, temp, gbnf, &r);
            char what[64];
            snprintf(what, sizeof what, "%s parallel %d T %.1f", types[t], par, temp);
            assert_same(&r, &base, what);
            print_message("%s: drafted %llu accepted %llu steps %llu\n", what, (unsigned long long)r.st.n_drafted,
                          (unsigned long long)r.st.n_accepted, (unsigned long long)r.st.n_steps);
            if (t == 1) { /* the draft model drafts every step: some drafts are rejected and rolled back */
                assert_true(r.st.n_drafted > 0);
                assert_true(r.st.n_accepted < r.st.n_drafted);
            }
        }
}

static void test_spec_json_schema(void **state)
{
    struct env *E = *state;
    lossless(E, E->schema_gbnf, 0.0f);
}

static void test_spec_numbers_sampled(void **state)
{
    struct env *E = *state;
    lossless(E, NUMBERS, 0.0f);
    struct run base, r;
    /* seeded sampling without draft probabilities (ngram: sample and match) draws the same tokens */
    gen(E, NULL, 1, 0.8f, E->schema_gbnf, &base);
    check_sentences(E, &base, E->schema_gbnf);
    gen(E, "ngram", 4, 0.8f, E->schema_gbnf, &r);
    assert_same(&r, &base, "ngram T 0.8");
}

static int setup(void **state)
{
    struct env *E = calloc(1, sizeof *E);
    struct cs_engine_params p = cs_engine_defaults();
    p.n_ctx = 1024;
    p.n_seq_max = 4;
    p.n_batch = p.n_ubatch = 128;
    E->e = fu_engine_open("models/stories260K.gguf", &p);
    E->door = fu_door(E->e);
    char err[CLSPEC_ERRLEN];
    if (clspec_grammar_vocab_new(E->door, &E->gv, err, sizeof err) != CLSPEC_OK)
        fail_msg("vocab: %s", err);
    size_t n = 0;
    char probe[1];
    assert_int_equal(clspec_json_schema_to_grammar(SCHEMA, strlen(SCHEMA), probe, 1, &n, err, sizeof err),
                     CLSPEC_E_RANGE);
    E->schema_gbnf = malloc(n + 1);
    assert_int_equal(clspec_json_schema_to_grammar(SCHEMA, strlen(SCHEMA), E->schema_gbnf, n + 1, &n, err,
                                                   sizeof err),
                     0);
    *state = E;
    return 0;
}

static int teardown(void **state)
{
    struct env *E = *state;
    clspec_grammar_vocab_free(E->gv);
    clspec_engine_free(E->door);
    cs_engine_free(E->e);
    free(E->schema_gbnf);
    free(E);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_grammar),
        cmocka_unit_test(test_spec_json_schema),
        cmocka_unit_test(test_spec_numbers_sampled),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
