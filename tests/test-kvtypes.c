/* test-kvtypes.c: KV cache types through the OpenCL forward pass. f16 K/V
 * gives the same greedy 64 tokens as f32 on stories260K and
 * TinyStories-656K-Q8_0 (every reference prompt); bf16, q8_0 and q4_0 (and
 * mixed K/V pairs) stay within a measured logit bound of f32, teacher-forced
 * over prompt + the f32 greedy continuation; q8_0/q4_0 match the plain-C
 * reference forward with the same KV rounding; each type's bytes per token. */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/common.h"
#include "fwdutil.h"
#include "gguf/quant.h"
#include "ref/forward_ref.h"
#include "testutil.h"

#define N_GEN 64

struct kvcase {
    uint32_t tk, tv;
    float bound[3]; /* per model (stories260K, 656K-Q8_0, synth-256-Q8_0): max |logit - f32 logit| /
                     * (max - min of the f32 row), over every row */
};

/* Bounds: max |dlogit| / logit range measured on PoCL (2026-12-02), then
 * about 2x margin. q8_0/q4_0 blocks of 32 run along the whole cell row, so
 * they apply to all three models (stories260K: 4 kv heads x 8, 656K: 4 x 16,
 * synth-256: 4 x 32):
 *   K/V         stories260K      656K-Q8_0        synth-256-Q8_0
 *               measured bound   measured bound   measured bound
 *   f16/f16     7.35e-4  0.002   4.31e-4  0.002   9.27e-5  0.002
 *   bf16/bf16   4.79e-3  0.01    2.61e-3  0.01    8.77e-4  0.01
 *   q8_0/q8_0   3.44e-2  0.07    9.19e-3  0.02    3.14e-3  0.008
 *   q4_0/q4_0   6.81e-1  1.4     2.01e-1  0.4     4.59e-2  0.08
 *   q8_0/f16    4.06e-2  0.08    8.94e-3  0.02    1.60e-3  0.005
 *   f16/q4_0    3.75e-2  0.08    5.12e-2  0.1     3.69e-2  0.07
 * The small models lose much more to 4-bit K/V (one block scale spans 4 or
 * 2 heads of a tiny, outlier-prone row; q4_0/q4_0 on stories260K moves the
 * logits by most of their range): test_ref_quantized shows the loss is the
 * type's: the device matches the reference forward with the same KV
 * rounding to <= 2.4e-4. (Printed as "# MODEL K t V t: max |d|/range ...".) */
static const struct kvcase cases[] = {
    {CS_TYPE_F16, CS_TYPE_F16, {0.002f, 0.002f, 0.002f}},
    {CS_TYPE_BF16, CS_TYPE_BF16, {0.01f, 0.01f, 0.01f}},
    {CS_TYPE_Q8_0, CS_TYPE_Q8_0, {0.07f, 0.02f, 0.008f}},
    {CS_TYPE_Q4_0, CS_TYPE_Q4_0, {1.4f, 0.4f, 0.08f}},
    {CS_TYPE_Q8_0, CS_TYPE_F16, {0.08f, 0.02f, 0.005f}},
    {CS_TYPE_F16, CS_TYPE_Q4_0, {0.08f, 0.1f, 0.07f}},
};

static float range_of(const float *l, int V)
{
    float lo = l[0], hi = l[0];
    for (int i = 1; i < V; i++) {
        lo = fminf(lo, l[i]);
        hi = fmaxf(hi, l[i]);
    }
    return hi - lo;
}

/* A KV type the cache can hold for the model (cs_kv_type_check: quantized
 * rows are padded to whole blocks of 32, so this is every type here). */
static bool type_ok(const struct fu_model *f, uint32_t t)
{
    char err[CLSPEC_ERRLEN];
    return cs_kv_type_check(t, (int)f->m->hp.n_head_kv, (int)f->m->hp.head_dim, err, sizeof err) == CLSPEC_OK;
}

/* mi: the model's column of kvcase.bound */
static void run_model(const char *model_rel, const char *gname, int mi, bool greedy)
{
    struct fu_model f;
    if (fu_open(model_rel, 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    struct golden *g = fu_golden(gname);
    const int V = f.V;
    float worst[CS_ARRAY_LEN(cases)];
    memset(worst, 0, sizeof worst);
    for (int ci = 0; ci < (greedy ? g->n_cases : CS_MIN(g->n_cases, 2)); ci++) {
        const struct golden_case *gc = &g->cases[ci];
        int n = gc->n_prompt;
        int32_t t32[N_GEN], t16[N_GEN];
        /* f32: greedy 64, then the teacher-forced rows of prompt + continuation */
        struct cs_fwd_ctx *c = fu_ctx(&f, 256, 32, CS_TYPE_F32, CS_TYPE_F32);
        fu_greedy(c, gc->prompt, n, N_GEN, 0, t32, NULL);
        int nt = n + N_GEN - 1;
        int32_t *toks = malloc((size_t)nt * sizeof *toks);
        float *ref = malloc((size_t)nt * V * sizeof *ref), *got = malloc((size_t)nt * V * sizeof *got);
        assert_true(toks && ref && got);
        memcpy(toks, gc->prompt, (size_t)n * sizeof *toks);
        memcpy(toks + n, t32, (size_t)(N_GEN - 1) * sizeof *toks);
        cs_kv_clear(c->kv);
        fu_all_logits(c, toks, nt, 0, ref);
        cs_fwd_ctx_free(c);
        /* f16: the same greedy tokens */
        if (greedy) {
            c = fu_ctx(&f, 256, 32, CS_TYPE_F16, CS_TYPE_F16);
            fu_greedy(c, gc->prompt, n, N_GEN, 0, t16, NULL);
            for (int s = 0; s < N_GEN; s++)
                if (t16[s] != t32[s])
                    fail_msg("%s case %d: f16 KV step %d gives token %d, f32 KV %d", gname, ci, s, t16[s], t32[s]);
            cs_fwd_ctx_free(c);
        }
        for (size_t k = 0; k < CS_ARRAY_LEN(cases); k++) {
            if (!type_ok(&f, cases[k].tk) || !type_ok(&f, cases[k].tv)) {
                worst[k] = -1.0f;
                continue;
            }
            c = fu_ctx(&f, 256, 32, cases[k].tk, cases[k].tv);
            fu_all_logits(c, toks, nt, 0, got);
            for (int r = 0; r < nt; r++) {
                const float *a = got + (size_t)r * V, *b = ref + (size_t)r * V;
                worst[k] = fmaxf(worst[k], fu_max_abs(a, b, (size_t)V) / range_of(b, V));
            }
            cs_fwd_ctx_free(c);
        }
        free(toks);
        free(ref);
        free(got);
    }
    for (size_t k = 0; k < CS_ARRAY_LEN(cases); k++) {
        if (worst[k] < 0) {
            print_message("# %s K %s V %s: not available (%u kv heads x head_dim %u)\n", gname,
                          cs_type_name(cases[k].tk), cs_type_name(cases[k].tv), f.m->hp.n_head_kv,
                          f.m->hp.head_dim);
            continue;
        }
        print_message("# %s K %s V %s: max |d|/range %.3g (bound %.3g)\n", gname, cs_type_name(cases[k].tk),
                      cs_type_name(cases[k].tv), worst[k], cases[k].bound[mi]);
        assert_true(worst[k] <= cases[k].bound[mi]);
    }
    golden_free(g);
    fu_close(&f);
}

static void test_stories(void **s) { (void)s; run_model("models/stories260K.gguf", "stories260K", 0, true); }
static void test_q8(void **s) { (void)s; run_model("models/TinyStories-656K-Q8_0.gguf", "TinyStories-656K-Q8_0", 1, true); }
/* head_dim 32: every quantized type applies (random weights: no greedy check) */
static void test_synth(void **s) { (void)s; run_model("models/synthetic/synth-256-Q8_0.gguf", "synth-256-Q8_0", 2, false); }

/* The quantized cache against the plain-C reference forward with the same KV
 * types (cs_ref.kv_type_k/v: every stored row rounded through cs_quantize_row,
 * blocks along the whole row): the device holds what the reference holds, so
 * the loss measured above is the type's, not the kernels'. Teacher-forced
 * over the first reference prompt + 40 tokens of the f32 greedy run. Returns
 * (worst over rows) max |d|/range against the reference with the same types
 * in *same and against the f32 reference in *f32. */
static void ref_compare(struct fu_model *f, const char *gname, uint32_t tk, uint32_t tv, float *same, float *f32)
{
    struct golden *g = fu_golden(gname);
    const int V = f->V, n = g->cases[0].n_prompt, nt = n + 40;
    int32_t *toks = malloc((size_t)(nt + 1) * sizeof *toks);
    float *ref = malloc((size_t)nt * V * sizeof *ref), *ref32 = malloc((size_t)nt * V * sizeof *ref32),
          *got = malloc((size_t)nt * V * sizeof *got);
    assert_true(toks && ref && ref32 && got);
    memcpy(toks, g->cases[0].prompt, (size_t)n * sizeof *toks);
    struct cs_fwd_ctx *c = fu_ctx(f, 256, 32, CS_TYPE_F32, CS_TYPE_F32);
    fu_greedy(c, toks, n, 41, 0, toks + n, NULL);
    cs_fwd_ctx_free(c);
    char err[CLSPEC_ERRLEN];
    for (int pass = 0; pass < 2; pass++) {
        struct cs_ref *r = NULL;
        assert_int_equal(cs_ref_load(f->m, (uint32_t)nt, &r, err, sizeof err), 0);
        r->kv_type_k = pass ? tk : CS_TYPE_F32;
        r->kv_type_v = pass ? tv : CS_TYPE_F32;
        for (int i = 0; i < nt; i++)
            if (cs_ref_forward(r, toks[i], (uint32_t)i, (pass ? ref : ref32) + (size_t)i * V, NULL, err, sizeof err))
                fail_msg("reference: %s", err);
        cs_ref_free(r);
    }
    c = fu_ctx(f, 256, 32, tk, tv);
    fu_all_logits(c, toks, nt, 0, got);
    cs_fwd_ctx_free(c);
    *same = *f32 = 0.0f;
    for (int i = 0; i < nt; i++) {
        const float *a = got + (size_t)i * V;
        *same = fmaxf(*same, fu_max_abs(a, ref + (size_t)i * V, (size_t)V) / range_of(ref + (size_t)i * V, V));
        *f32 = fmaxf(*f32, fu_max_abs(a, ref32 + (size_t)i * V, (size_t)V) / range_of(ref32 + (size_t)i * V, V));
    }
    free(toks);
    free(ref);
    free(ref32);
    free(got);
    golden_free(g);
}

/* Bounds: measured (2026-12-02, PoCL) max |d|/range against the reference
 * with the same KV types (and, for scale, against the f32-KV reference):
 *   K/V         stories260K          656K-Q8_0
 *   q8_0/q8_0   3.72e-7 (f32 3.1e-2) 3.43e-7 (f32 6.0e-3)
 *   q4_0/q4_0   2.42e-4 (f32 5.1e-1) 5.04e-7 (f32 8.1e-2)
 * f32 noise, plus an occasional element one quantization step off (the
 * kernel's 1/d may differ from the host's by an ulp at a rounding boundary:
 * stories260K q4_0). Bounds: 5e-4 (q8_0), 1e-3 (q4_0), still 60x-500x below
 * the type's own loss, so a kernel that read a wrong block would fail. */
static void test_ref_quantized(void **s)
{
    (void)s;
    static const struct {
        const char *rel, *gname;
        uint32_t t;
        float bound;
    } rc[] = {
        {"models/stories260K.gguf", "stories260K", CS_TYPE_Q8_0, 5e-4f},
        {"models/stories260K.gguf", "stories260K", CS_TYPE_Q4_0, 1e-3f},
        {"models/TinyStories-656K-Q8_0.gguf", "TinyStories-656K-Q8_0", CS_TYPE_Q8_0, 5e-4f},
        {"models/TinyStories-656K-Q8_0.gguf", "TinyStories-656K-Q8_0", CS_TYPE_Q4_0, 1e-3f},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(rc); i++) {
        struct fu_model f;
        if (fu_open(rc[i].rel, 1, NULL, NULL, &f)) {
            skip();
            return;
        }
        float same = 0.0f, f32 = 0.0f;
        ref_compare(&f, rc[i].gname, rc[i].t, rc[i].t, &same, &f32);
        print_message("# %s K/V %s vs the reference with %s KV: max |d|/range %.3g (bound %.3g); vs f32 KV %.3g\n",
                      rc[i].gname, cs_type_name(rc[i].t), cs_type_name(rc[i].t), same, rc[i].bound, f32);
        assert_true(same <= rc[i].bound);
        fu_close(&f);
    }
}

/* Bytes per token: K + V rows of every layer; q8_0 <= 0.55x f16. */
static void test_bytes_per_token(void **s)
{
    (void)s;
    struct fu_model f;
    if (fu_open("models/synthetic/synth-256-Q8_0.gguf", 1, NULL, NULL, &f)) {
        skip();
        return;
    }
    const struct cs_hparams *hp = &f.m->hp;
    uint64_t bpt[5];
    const uint32_t ty[5] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0, CS_TYPE_Q4_0};
    for (int i = 0; i < 5; i++) {
        struct cs_fwd_ctx *c = fu_ctx(&f, 64, 8, ty[i], ty[i]);
        bpt[i] = cs_kv_bytes_per_token(c->kv);
        uint64_t rb = 0;
        assert_true(cs_row_bytes(ty[i], cs_hp_kv_dim(hp), &rb));
        assert_int_equal(bpt[i], 2 * rb * hp->n_layer);
        cs_fwd_ctx_free(c);
    }
    assert_int_equal(bpt[0], 2 * bpt[1]);
    assert_int_equal(bpt[1], bpt[2]);
    assert_true(bpt[3] * 100 <= bpt[1] * 55);
    assert_true(bpt[4] < bpt[3]);
    /* mixed: K f16 + V q4_0 = half of each */
    struct cs_fwd_ctx *c = fu_ctx(&f, 64, 8, CS_TYPE_F16, CS_TYPE_Q4_0);
    assert_int_equal(cs_kv_bytes_per_token(c->kv), (bpt[1] + bpt[4]) / 2);
    cs_fwd_ctx_free(c);
    fu_close(&f);
}

int main(void)
{
    /* KV-type effects against the float C reference at tight bounds: the float layouts (read at device
     * open; the integer path's own bound: tests/test-kernels-q8fwd.c) */
    setenv("CLSPEC_INTDOT", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_per_token),
        cmocka_unit_test(test_stories),
        cmocka_unit_test(test_q8),
        cmocka_unit_test(test_synth),
        cmocka_unit_test(test_ref_quantized),
    };
    return cmocka_run_group_tests_name("kvtypes", tests, NULL, NULL);
}
