/* test-lcpp: the llamacpp_numerics path (src/ref/lcpp_ref.c, cl/lcpp.cl).
 *  1. The C model of llama.cpp's CPU arithmetic reproduces the reference
 *     runs (../shared/reference/greedy-*.json): every top-5 logit of every
 *     teacher-forced step to the printed 6 decimals.
 *  2. The OpenCL kernels equal the C model bit for bit on random inputs
 *     (matmul of F32 / F16 / Q8_0 / Q4_0 weights as one row and as a batch, RMSNorm,
 *     SiLU x up).
 *  3. The OpenCL forward pass with llamacpp_numerics equals the C model bit
 *     for bit on every logit (attention, RoPE, SiLU in context), prompt and
 *     decode steps. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/common.h"
#include "fwdutil.h"
#include "golden.h"
#include "model/model.h"
#include "ops/lcpp_ops.h"
#include "gguf/quant.h"
#include "ref/lcpp_ref.h"
#include "engine/sampler.h"
#include "testutil.h"

/* ---- 1. the C model against the references ---- */

static void model_vs_reference(const char *name)
{
    struct golden *g = fu_golden(name);
    if (!g->model_path) {
        golden_free(g);
        skip();
    }
    char err[CLSPEC_ERRLEN];
    struct cs_model *m = NULL;
    assert_int_equal(cs_model_load(g->model_path, &m, err, sizeof err), 0);
    float *lg = malloc(m->hp.n_vocab * sizeof(float));
    float worst = 0.0f;
    int agree = 0, n = 0;
    for (int ci = 0; ci < g->n_cases; ci++) {
        const struct golden_case *gc = &g->cases[ci];
        struct cs_lcpp *L = NULL;
        assert_int_equal(cs_lcpp_new(m, 512, &L, err, sizeof err), 0);
        for (int s = 0; s < gc->n_steps; s++) {
            int rc = s == 0 ? cs_lcpp_eval(L, gc->prompt, gc->n_prompt, lg, err, sizeof err)
                            : cs_lcpp_eval(L, &gc->steps[s - 1].token, 1, lg, err, sizeof err);
            if (rc)
                fail_msg("%s: %s", name, err);
            float dabs, drel;
            golden_compare(&gc->steps[s], lg, &dabs, &drel);
            worst = fmaxf(worst, dabs);
            agree += cs_argmax(lg, (int)m->hp.n_vocab) == gc->steps[s].token;
            n++;
        }
        cs_lcpp_free(L);
    }
    print_message("# C model of llama.cpp, %s: max |d| %.3g over %d steps, greedy %d/%d\n", name, worst, n, agree, n);
    assert_true(worst <= 2e-6f);
    assert_int_equal(agree, n);
    free(lg);
    cs_model_free(m);
    golden_free(g);
}

static void test_ref_stories(void **s) { (void)s; model_vs_reference("stories260K"); }
static void test_ref_q8(void **s) { (void)s; model_vs_reference("TinyStories-656K-Q8_0"); }
static void test_ref_synth_f16(void **s) { (void)s; model_vs_reference("synth-256-F16"); }
static void test_ref_synth_q8(void **s) { (void)s; model_vs_reference("synth-256-Q8_0"); }
static void test_ref_draft(void **s) { (void)s; model_vs_reference("stories260K-draft-distilled"); }
static void test_ref_q4(void **s) { (void)s; model_vs_reference("TinyStories-656K-Q4_0"); }

/* ---- 2. kernels against the C model on random inputs ---- */

static struct cs_cl_dev *g_dev;

static int open_dev(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, idx = 0;
    if (cs_cl_list(&list, &n, err, sizeof err) != CLSPEC_OK || n == 0 ||
        cs_cl_select(list, n, getenv("CLSPEC_TEST_DEVICE"), &idx, err, sizeof err) != CLSPEC_OK ||
        cs_cl_dev_open(&list[idx], &g_dev, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "test-lcpp: no OpenCL device (%s)\n", err);
        g_dev = NULL;
    }
    free(list);
    return 0;
}

static int close_dev(void **state)
{
    (void)state;
    cs_cl_dev_close(g_dev);
    return 0;
}

static cl_mem upload(const void *p, size_t bytes)
{
    char err[CLSPEC_ERRLEN];
    cl_mem m = NULL;
    assert_int_equal(cs_cl_alloc(g_dev, CL_MEM_READ_WRITE | (p ? CL_MEM_COPY_HOST_PTR : 0), bytes, (void *)p, &m, err,
                                 sizeof err),
                     0);
    return m;
}

/* Random weights of type (n_out rows of n_in) in GGUF layout, x (n rows), through
 * both paths; repack: the device copy in its repacked layout (q8_0). */
static void matmul_case(uint32_t type, int n_in, int n_out, int n, bool batch, bool repack, uint64_t seed)
{
    if (!g_dev)
        skip();
    char err[CLSPEC_ERRLEN];
    struct tu_rng r;
    tu_rng_seed(&r, seed);
    float *wf = malloc((size_t)n_in * n_out * sizeof(float));
    float *x = malloc((size_t)n_in * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n_in * n_out; i++)
        wf[i] = tu_rng_normal(&r) * 0.1f;
    for (size_t i = 0; i < (size_t)n_in * n; i++)
        x[i] = tu_rng_normal(&r);
    uint64_t rb = 0;
    assert_true(cs_row_bytes(type, (uint64_t)n_in, &rb));
    uint8_t *w = malloc(rb * n_out);
    for (int o = 0; o < n_out; o++)
        assert_int_equal(cs_quantize_row(type, wf + (size_t)o * n_in, w + o * rb, n_in), 0);
    float *want = malloc((size_t)n * n_out * sizeof(float)), *got = malloc((size_t)n * n_out * sizeof(float));
    assert_int_equal(cs_lcpp_matmul_raw(type, w, n_in, n_out, x, n, batch, want, err, sizeof err), 0);
    struct cs_weight W = {0};
    assert_int_equal(cs_weight_upload_parts(g_dev, type, (uint32_t)n_in, (uint32_t)n_out, w, 0, repack, &W, err,
                                            sizeof err),
                     0);
    assert_true(cs_op_lcpp_matmul_ok(&W));
    cl_mem xb = upload(x, (size_t)n_in * n * sizeof(float)), yb = upload(NULL, (size_t)n * n_out * sizeof(float));
    cl_mem xq = upload(NULL, (size_t)n_in * n), xd = upload(NULL, (size_t)(n_in / 32 + 1) * n * sizeof(float));
    if (cs_op_lcpp_matmul(g_dev, &W, xb, yb, n, batch, xq, xd, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(cs_cl_read(g_dev, yb, 0, (size_t)n * n_out * sizeof(float), got, err, sizeof err), 0);
    int bad = 0;
    for (size_t i = 0; i < (size_t)n * n_out; i++)
        bad += memcmp(&want[i], &got[i], sizeof(float)) != 0;
    if (bad)
        fail_msg("%s %dx%d, %d rows (%s): %d of %d outputs differ from the C model (first: %.9g vs %.9g)",
                 cs_type_name(type), n_out, n_in, n, batch ? "batch" : "rows", bad, n * n_out, got[0], want[0]);
    cs_cl_release(&xb);
    cs_cl_release(&yb);
    cs_cl_release(&xq);
    cs_cl_release(&xd);
    cs_weight_free(&W);
    free(wf);
    free(x);
    free(w);
    free(want);
    free(got);
}

static void test_mm_q8_0(void **s)
{
    (void)s;
    matmul_case(CS_TYPE_Q8_0, 256, 48, 1, false, true, 1);
    matmul_case(CS_TYPE_Q8_0, 256, 48, 5, true, true, 2);
    matmul_case(CS_TYPE_Q8_0, 96, 33, 3, true, false, 3); /* GGUF layout, odd rows */
}

static void test_mm_q4_0(void **s)
{
    (void)s;
    matmul_case(CS_TYPE_Q4_0, 256, 48, 1, false, false, 12); /* rows % 8 == 0: the q4_0_8x8 repack's order */
    matmul_case(CS_TYPE_Q4_0, 256, 48, 6, true, false, 13);
    matmul_case(CS_TYPE_Q4_0, 128, 36, 2, false, false, 14); /* rows % 8 != 0: 8 lanes, hsum */
}

static void test_mm_f32(void **s)
{
    (void)s;
    matmul_case(CS_TYPE_F32, 172, 40, 2, false, false, 4); /* ggml_vec_dot_f32: 128 in lanes + a 44 tail */
    matmul_case(CS_TYPE_F32, 64, 40, 4, true, false, 5);   /* tinyBLAS */
    matmul_case(CS_TYPE_F32, 172, 40, 4, true, false, 6);  /* a batch whose rows are not 16-multiples */
}

static void test_mm_f16(void **s)
{
    (void)s;
    matmul_case(CS_TYPE_F16, 200, 24, 2, false, false, 7);
    matmul_case(CS_TYPE_F16, 256, 24, 3, true, false, 8);
}

static void test_rmsnorm(void **s)
{
    (void)s;
    if (!g_dev)
        skip();
    char err[CLSPEC_ERRLEN];
    enum { R = 5, N = 172 };
    struct tu_rng r;
    tu_rng_seed(&r, 9);
    float x[R * N], w[N], want[R * N], got[R * N];
    for (int i = 0; i < R * N; i++)
        x[i] = tu_rng_normal(&r) * 3.0f;
    for (int i = 0; i < N; i++)
        w[i] = 1.0f + 0.1f * tu_rng_normal(&r);
    for (int i = 0; i < R; i++)
        cs_lcpp_rmsnorm(want + i * N, x + i * N, w, N, 1e-5f);
    cl_mem xb = upload(x, sizeof x), wb = upload(w, sizeof w), yb = upload(NULL, sizeof got);
    assert_int_equal(cs_op_lcpp_rmsnorm(g_dev, xb, wb, yb, R, N, 1e-5f, err, sizeof err), 0);
    assert_int_equal(cs_cl_read(g_dev, yb, 0, sizeof got, got, err, sizeof err), 0);
    assert_memory_equal(want, got, sizeof got);
    cs_cl_release(&xb);
    cs_cl_release(&wb);
    cs_cl_release(&yb);
}

/* SiLU * up: the 16-wide ggml_v_silu part and the scalar tail through glibc's expf
 * algorithm (F = 172: 160 + 12), inputs spread over [-30, 30]. */
static void test_swiglu(void **s)
{
    (void)s;
    if (!g_dev)
        skip();
    char err[CLSPEC_ERRLEN];
    enum { R = 64, F = 172 };
    struct tu_rng r;
    tu_rng_seed(&r, 10);
    static float g[R * F], u[R * F], want[R * F], got[R * F];
    for (int i = 0; i < R * F; i++) {
        g[i] = (tu_rng_uniform(&r) - 0.5f) * 60.0f;
        u[i] = tu_rng_normal(&r);
    }
    memcpy(want, g, sizeof g);
    for (int i = 0; i < R; i++)
        cs_lcpp_swiglu_row(want + i * F, u + i * F, F);
    cl_mem gb = upload(g, sizeof g), ub = upload(u, sizeof u);
    assert_int_equal(cs_op_lcpp_swiglu(g_dev, gb, ub, R, F, err, sizeof err), 0);
    assert_int_equal(cs_cl_read(g_dev, gb, 0, sizeof got, got, err, sizeof err), 0);
    assert_memory_equal(want, got, sizeof got);
    cs_cl_release(&gb);
    cs_cl_release(&ub);
}

/* ---- 3. the OpenCL forward pass against the C model, every logit ---- */

static void forward_vs_model(const char *rel, int n_steps)
{
    struct fu_model f;
    if (fu_open(rel, 1, NULL, NULL, &f))
        skip();
    char err[CLSPEC_ERRLEN];
    struct cs_fwd_ctx_params p = {.n_ctx = 128, .n_batch = 32, .type_k = CS_TYPE_F16, .type_v = CS_TYPE_F16,
                                  .llamacpp_numerics = true};
    struct cs_fwd_ctx *c = NULL;
    assert_int_equal(cs_fwd_ctx_new(f.fm, &p, &c, err, sizeof err), 0);
    struct cs_lcpp *L = NULL;
    assert_int_equal(cs_lcpp_new(f.m, 128, &L, err, sizeof err), 0);
    struct tu_rng r;
    tu_rng_seed(&r, 11);
    int32_t toks[64], pos[64];
    tu_rng_tokens(&r, toks, 64, f.V);
    toks[0] = 1;
    for (int i = 0; i < 64; i++)
        pos[i] = i;
    float *a = malloc((size_t)f.V * sizeof(float)), *b = malloc((size_t)f.V * sizeof(float));
    const int n_prompt = 7;
    for (int s = 0; s <= n_steps; s++) {
        const int at = s == 0 ? 0 : n_prompt + s - 1, cnt = s == 0 ? n_prompt : 1;
        assert_int_equal(cs_forward(c, toks + at, cnt, pos + at, NULL, NULL, 1, a, NULL, err, sizeof err), 0);
        assert_int_equal(cs_lcpp_eval(L, toks + at, cnt, b, err, sizeof err), 0);
        int bad = 0;
        for (int i = 0; i < f.V; i++)
            bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
        if (bad)
            fail_msg("%s step %d: %d of %d logits differ from the C model", rel, s, bad, f.V);
    }
    free(a);
    free(b);
    cs_lcpp_free(L);
    cs_fwd_ctx_free(c);
    fu_close(&f);
}

static void test_fwd_q8(void **s) { (void)s; forward_vs_model("models/TinyStories-656K-Q8_0.gguf", 40); }
static void test_fwd_f16(void **s) { (void)s; forward_vs_model("models/synthetic/synth-256-F16.gguf", 8); }
static void test_fwd_f32(void **s) { (void)s; forward_vs_model("models/stories260K.gguf", 40); }
static void test_fwd_q4(void **s) { (void)s; forward_vs_model("models/derived/TinyStories-656K-Q4_0.gguf", 20); }

int main(void)
{
    setenv("CLSPEC_INTDOT", "0", 1); /* read at device open: llama.cpp's arithmetic reads the float layouts */
    const struct CMUnitTest tests[] = {
        /* the C model against the references */
        cmocka_unit_test(test_ref_stories), cmocka_unit_test(test_ref_q8), cmocka_unit_test(test_ref_q4),
        cmocka_unit_test(test_ref_synth_f16), cmocka_unit_test(test_ref_synth_q8), cmocka_unit_test(test_ref_draft),
        /* kernels against the model */
        cmocka_unit_test(test_mm_q8_0), cmocka_unit_test(test_mm_q4_0), cmocka_unit_test(test_mm_f32),
        cmocka_unit_test(test_mm_f16), cmocka_unit_test(test_rmsnorm), cmocka_unit_test(test_swiglu),
        /* the forward pass against the model */
        cmocka_unit_test(test_fwd_q8), cmocka_unit_test(test_fwd_q4), cmocka_unit_test(test_fwd_f16),
        cmocka_unit_test(test_fwd_f32),
    };
    return cmocka_run_group_tests_name("lcpp", tests, open_dev, close_dev);
}
