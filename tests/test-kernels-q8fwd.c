/* test-kernels-q8fwd.c: the integer-dot path (CLSPEC_INTDOT=1: q4_0 / q8_0
 * matmuls on 8-bit activations, cl/matmul_q8.cl) through whole forward
 * passes, on the CPU family:
 *   - golden: llama.cpp's top-5 logits of every step of the references of
 *     TinyStories-656K-Q8_0, TinyStories-656K-Q4_0 and synth-256-Q8_0,
 *     teacher-forced in one batch, within the bound of the other quantized
 *     paths (tests/test-golden.c: |d| <= 0.02 * the step's logit range), and
 *     llama.cpp's greedy choice wherever its top-2 gap exceeds twice that;
 *   - lossless speculation: every step decoded alone (one column: the fused
 *     mat-vecs) gives bitwise the logits of its row in the batch (the
 *     mat-mat kernels), as verification of a draft needs.
 * The same checks on the default path (CLSPEC_INTDOT unset): q8_0 and q6_K
 * weights on the rows-in-lanes integer path (cl/matmul_i8.cl), in the
 * q8_0, q6_K, Q4_K_M and Q5_K_M models (their q6_K tensors). */
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
#include "engine/sampler.h"
#include "fwdutil.h"
#include "golden.h"
#include "testutil.h"

#define QUANT_REL_RANGE 0.02f /* as tests/test-golden.c */

static void golden_q8_bound(const char *name, float bound)
{
    struct golden *g = NULL;
    if (strchr(name, '/')) { /* a reference file of the shared directory */
        char *jp = tu_shared_path(name);
        g = golden_load(jp);
        free(jp);
        assert_non_null(g);
    } else {
        g = fu_golden(name);
    }
    if (!g->model_path) {
        golden_free(g);
        skip();
        return;
    }
    struct fu_model f;
    assert_int_equal(fu_open(strstr(g->model_path, "models/"), 1, NULL, NULL, &f), 0);
    if (!f.dev[0]->int8_act && getenv("CLSPEC_INTDOT")) /* not a CPU-family device: nothing of this path runs */
        print_message("# %s: the device does not take the integer path (GPU family)\n", name);
    const int V = f.V;
    char err[CLSPEC_ERRLEN];
    float worst = 0.0f;
    int clear = 0, agree = 0, n = 0, same = 0;
    for (int ci = 0; ci < g->n_cases; ci++) {
        const struct golden_case *gc = &g->cases[ci];
        const int nt = gc->n_prompt + gc->n_steps - 1; /* the last step's token is never fed */
        int32_t *tok = malloc((size_t)nt * sizeof *tok), *pos = malloc((size_t)nt * sizeof *pos);
        float *all = malloc((size_t)nt * V * sizeof *all), *one = malloc((size_t)V * sizeof *one);
        assert_true(tok && pos && all && one);
        memcpy(tok, gc->prompt, (size_t)gc->n_prompt * sizeof *tok);
        for (int s = 0; s + 1 < gc->n_steps; s++)
            tok[gc->n_prompt + s] = gc->steps[s].token;
        for (int i = 0; i < nt; i++)
            pos[i] = i;
        struct cs_fwd_ctx *c = fu_ctx(&f, 128, 64, CS_TYPE_F16, CS_TYPE_F16);
        fu_all_logits(c, tok, nt, 0, all); /* teacher forcing, one batch */
        cs_fwd_ctx_free(c);
        c = fu_ctx(&f, 128, 64, CS_TYPE_F16, CS_TYPE_F16);
        for (int s = 0; s < gc->n_steps; s++) {
            const float *row = all + (size_t)(gc->n_prompt - 1 + s) * V;
            float dabs, drel;
            golden_compare(&gc->steps[s], row, &dabs, &drel);
            const float range = golden_range(row, V), tol = QUANT_REL_RANGE * range;
            worst = fmaxf(worst, dabs / range);
            if (gc->steps[s].top_val[0] - gc->steps[s].top_val[1] > 2.0f * tol) {
                clear++;
                agree += cs_argmax(row, V) == gc->steps[s].token;
            }
            /* the same step alone: the prompt in one pass, then one token at a time */
            const int at = s == 0 ? 0 : gc->n_prompt + s - 1, cnt = s == 0 ? gc->n_prompt : 1;
            assert_int_equal(cs_forward(c, tok + at, cnt, pos + at, NULL, NULL, 1, one, NULL, err, sizeof err), 0);
            same += memcmp(one, row, (size_t)V * sizeof *one) == 0;
            n++;
        }
        cs_fwd_ctx_free(c);
        free(tok);
        free(pos);
        free(all);
        free(one);
    }
    print_message("# %s, integer dots: max |d|/range %.3g (bound %g), greedy %d/%d clear steps, decode == batch "
                  "row %d/%d\n", name, worst, bound, agree, clear, same, n);
    assert_true(worst <= bound);
    assert_int_equal(agree, clear);
    assert_int_equal(same, n);
    golden_free(g);
    fu_close(&f);
}

static void golden_q8(const char *name)
{
    golden_q8_bound(name, QUANT_REL_RANGE);
}

static void test_stories_q8(void **s)
{
    (void)s;
    golden_q8("TinyStories-656K-Q8_0");
}

static void test_stories_q4(void **s)
{
    (void)s;
    golden_q8("TinyStories-656K-Q4_0");
}

static void test_synth_q8(void **s)
{
    (void)s;
    golden_q8("synth-256-Q8_0");
}

/* the 4-bit integer path (default on the CPU family, src/ops/matmul_i4.h):
 * q4_0 and q4_K weights (Q4_K_M also holds q6_K ones, on their own path) */
static void test_synth_q4_0(void **s)
{
    (void)s;
    golden_q8("synth-256-Q4_0");
}

static void test_synth_q4_K(void **s)
{
    (void)s;
    golden_q8("synth-256-Q4_K_M");
}

/* the default path: q8_0 / q6_K / q5_K on CS_WLAYOUT_I8 (read at upload) */
static void golden_i8(const char *name, float bound)
{
    unsetenv("CLSPEC_INTDOT");
    golden_q8_bound(name, bound);
    setenv("CLSPEC_INTDOT", "1", 1);
}

static void test_i8_stories_q8(void **s)
{
    (void)s;
    golden_i8("TinyStories-656K-Q8_0", QUANT_REL_RANGE);
}

static void test_i8_synth(void **s)
{
    (void)s;
    golden_i8("synth-256-Q8_0", QUANT_REL_RANGE);
    golden_i8("synth-256-Q6_K", QUANT_REL_RANGE);
    golden_i8("synth-256-Q4_K_M", QUANT_REL_RANGE);
    golden_i8("synth-256-Q5_K_M", QUANT_REL_RANGE);
    /* a hybrid model (delta-rule layers): its float path measures 0.0242 of the range here (f32
     * activations against llama.cpp's q8_0 ones), the integer path 0.0226; bound 0.03 */
    golden_i8("reference/qwen35/greedy-qwen35-tiny-Q8_0.json", 0.03f);
}

/* a llamacpp-numerics context on a model uploaded in the integer layout:
 * a clear refusal, never llama.cpp's numerics silently broken */
static void test_i8_lcpp_refused(void **s)
{
    (void)s;
    unsetenv("CLSPEC_INTDOT");
    struct fu_model f;
    if (fu_open("models/TinyStories-656K-Q8_0.gguf", 1, NULL, NULL, &f))
        skip();
    if (f.dev[0]->int_layouts) {
        char err[CLSPEC_ERRLEN];
        struct cs_fwd_ctx_params p = {.n_ctx = 32, .n_batch = 8, .type_k = CS_TYPE_F16, .type_v = CS_TYPE_F16,
                                      .llamacpp_numerics = true};
        struct cs_fwd_ctx *c = NULL;
        int rc = cs_fwd_ctx_new(f.fm, &p, &c, err, sizeof err);
        if (rc == CLSPEC_OK) {
            const int32_t tok[2] = {1, 2}, pos[2] = {0, 1};
            float *lg = malloc((size_t)f.V * sizeof *lg);
            assert_non_null(lg);
            rc = cs_forward(c, tok, 2, pos, NULL, NULL, 1, lg, NULL, err, sizeof err);
            free(lg);
            cs_fwd_ctx_free(c);
        }
        assert_int_equal(rc, CLSPEC_E_UNSUPPORTED);
        assert_non_null(strstr(err, "integer layout"));
    }
    fu_close(&f);
    setenv("CLSPEC_INTDOT", "1", 1);
}

const char *__asan_default_options(void); /* as tests/test-kernels.c: PoCL threads crash LSan's tracer */
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

int main(void)
{
    setenv("CLSPEC_INTDOT", "1", 1); /* read when a device is opened */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_q8),
        cmocka_unit_test(test_stories_q4),
        cmocka_unit_test(test_synth_q8),
        cmocka_unit_test(test_synth_q4_0),
        cmocka_unit_test(test_synth_q4_K),
        cmocka_unit_test(test_i8_stories_q8),
        cmocka_unit_test(test_i8_synth),
        cmocka_unit_test(test_i8_lcpp_refused),
    };
    return cmocka_run_group_tests_name("kernels-q8fwd", tests, NULL, NULL);
}
