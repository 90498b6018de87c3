/* test-split.c: layers split across two devices (two PoCL devices,
 * POCL_DEVICES="pthread pthread"): the split gives the same logits and hidden
 * states as one device (<= 1e-5 relative) for prefill, decode and a batch of
 * two sequences, on tied and untied models; every buffer a layer reads lives
 * in its own device's context; the engine's split plan (layer counts, memory
 * ratio) and its errors (unknown device, counts not summing to n_layer, a
 * device listed twice). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv/batch.h"
#include "base/common.h"
#include "engine/engine.h"
#include "fwdutil.h"
#include "gguf/quant.h"
#include "testutil.h"

#define REL 1e-5f

static cl_context ctx_of(cl_mem m)
{
    cl_context c = NULL;
    assert_int_equal(clGetMemObjectInfo(m, CL_MEM_CONTEXT, sizeof c, &c, NULL), CL_SUCCESS);
    return c;
}

static void check_weight(const struct cs_weight *w, cl_context want)
{
    for (uint32_t i = 0; i < w->n_parts; i++)
        assert_ptr_equal(ctx_of(w->parts[i].buf), want);
}

/* every buffer of layer l in its device's context, K/V too */
static void check_placement(const struct fu_model *f, const struct cs_fwd_ctx *c)
{
    const struct cs_fwd_model *fm = f->fm;
    for (uint32_t l = 0; l < f->m->hp.n_layer; l++) {
        cl_context want = fm->devs[fm->layer_dev[l]]->ctx;
        const struct cs_fwd_layer *L = &fm->layers[l];
        const struct cs_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < CS_ARRAY_LEN(ws); i++)
            check_weight(ws[i], want);
        assert_ptr_equal(ctx_of(L->attn_norm), want);
        assert_ptr_equal(ctx_of(L->ffn_norm), want);
        assert_ptr_equal(ctx_of(c->kv->k[l]), want);
        assert_ptr_equal(ctx_of(c->kv->v[l]), want);
    }
    check_weight(&fm->tok_embd, fm->devs[fm->emb_dev]->ctx);
    assert_ptr_equal(ctx_of(fm->output_norm), fm->devs[fm->out_dev]->ctx);
    if (!fm->output_is_embd)
        check_weight(&fm->output, fm->devs[fm->out_dev]->ctx);
    for (int i = 0; i < fm->n_dev; i++)
        if (c->act[i].x)
            assert_ptr_equal(ctx_of(c->act[i].x), fm->devs[i]->ctx);
}

struct run_out {
    float *prefill;  /* (NP, V) */
    float *hidden;   /* (NL + 1, NP, E) */
    float *decode;   /* (ND, V) */
    float *pair;     /* (2, V) two sequences in one batch */
};

enum { NP = 20, ND = 8 };

static void run(struct fu_model *f, uint32_t tk, uint32_t n_ubatch, struct run_out *o)
{
    const int V = f->V, E = (int)f->m->hp.n_embd, NL = (int)f->m->hp.n_layer;
    char err[CLSPEC_ERRLEN];
    o->prefill = malloc((size_t)NP * V * sizeof(float));
    o->hidden = malloc((size_t)(NL + 1) * NP * E * sizeof(float));
    o->decode = malloc((size_t)ND * V * sizeof(float));
    o->pair = malloc(2 * (size_t)V * sizeof(float));
    struct tu_rng rng;
    tu_rng_seed(&rng, 5);
    int32_t tok[NP + ND], pos[NP + ND], rows[NP], layers[16];
    tu_rng_tokens(&rng, tok, NP + ND, V);
    for (int i = 0; i < NP + ND; i++)
        pos[i] = i;
    for (int i = 0; i < NP; i++)
        rows[i] = i;
    for (int l = 0; l <= NL; l++)
        layers[l] = l;
    struct cs_fwd_ctx *c = fu_ctx(f, 128, n_ubatch, tk, tk);
    check_placement(f, c);
    struct cs_fwd_hidden h = {.n_layers = NL + 1, .layers = layers, .out = o->hidden};
    if (cs_forward(c, tok, NP, pos, NULL, rows, NP, o->prefill, &h, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    for (int i = 0; i < ND; i++)
        if (cs_forward(c, &tok[NP + i], 1, &pos[NP + i], NULL, NULL, 1, o->decode + (size_t)i * V, NULL, err,
                       sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
    struct cs_batch b;
    assert_int_equal(cs_batch_init(&b, 32, err, sizeof err), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(cs_batch_add(&b, tok[i + 3], i, 1, i == 5, err, sizeof err), 0);
    assert_int_equal(cs_batch_add(&b, tok[0], NP + ND, 0, true, err, sizeof err), 0);
    int seq_rc[CS_MAX_SEQ];
    if (cs_forward_batch(c, &b, o->pair, NULL, seq_rc, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    cs_batch_free(&b);
    cs_fwd_ctx_free(c);
}

static void run_free(struct run_out *o)
{
    free(o->prefill);
    free(o->hidden);
    free(o->decode);
    free(o->pair);
}

static void compare_split(const char *rel, const uint32_t counts[2], uint32_t tk)
{
    struct fu_model one, two;
    const int idx1[1] = {0}, idx2[2] = {0, 1};
    if (fu_open(rel, 2, idx2, counts, &two)) {
        skip();
        return;
    }
    assert_int_equal(fu_open(rel, 1, idx1, NULL, &one), 0);
    assert_int_equal(two.fm->n_dev, 2);
    assert_int_equal(two.fm->emb_dev, 0);
    assert_int_equal(two.fm->out_dev, 1);
    struct run_out a, b;
    run(&one, tk, 7, &a);
    run(&two, tk, 7, &b);
    const int V = one.V, E = (int)one.m->hp.n_embd, NL = (int)one.m->hp.n_layer;
    float dp = fu_max_rel(b.prefill, a.prefill, (size_t)NP * V);
    float dh = fu_max_rel(b.hidden, a.hidden, (size_t)(NL + 1) * NP * E);
    float dd = fu_max_rel(b.decode, a.decode, (size_t)ND * V);
    float d2 = fu_max_rel(b.pair, a.pair, 2 * (size_t)V);
    print_message("# %s split %u,%u KV %s: prefill %.3g hidden %.3g decode %.3g batch %.3g (%s output)\n", rel,
                  counts[0], counts[1], cs_type_name(tk), dp, dh, dd, d2,
                  one.m->hp.tied_output ? "tied" : "own");
    assert_true(dp <= REL);
    assert_true(dh <= REL);
    assert_true(dd <= REL);
    assert_true(d2 <= REL);
    run_free(&a);
    run_free(&b);
    fu_close(&one);
    fu_close(&two);
}

static void test_split_stories(void **s)
{
    (void)s;
    const uint32_t c[2] = {2, 3};
    compare_split("models/stories260K.gguf", c, CS_TYPE_F32);
}
static void test_split_q8(void **s)
{
    (void)s;
    const uint32_t c[2] = {1, 1};
    compare_split("models/TinyStories-656K-Q8_0.gguf", c, CS_TYPE_F16);
}
static void test_split_synth(void **s)
{
    (void)s;
    const uint32_t c[2] = {3, 1};
    compare_split("models/synthetic/synth-256-Q4_K_M.gguf", c, CS_TYPE_Q8_0);
}

/* the plan: layer counts, ratios, memory, and the errors */
static void test_plan(void **s)
{
    (void)s;
    char err[CLSPEC_ERRLEN];
    uint32_t c[8], sp[8] = {0};
    assert_int_equal(cs_engine_plan_split(5, 2, CS_SPLIT_LAYERS, sp, NULL, c, err, sizeof err), 0);
    assert_int_equal(c[0] + c[1], 5);
    assert_true(c[0] >= 2 && c[1] >= 2);
    sp[0] = 3, sp[1] = 3;
    assert_int_equal(cs_engine_plan_split(8, 2, CS_SPLIT_LAYERS, sp, NULL, c, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "split 3,3 sums to 6 layers; the model has 8"));
    sp[1] = 5;
    assert_int_equal(cs_engine_plan_split(8, 2, CS_SPLIT_LAYERS, sp, NULL, c, err, sizeof err), 0);
    assert_int_equal(c[0], 3);
    assert_int_equal(c[1], 5);
    sp[0] = 1, sp[1] = 3;
    assert_int_equal(cs_engine_plan_split(8, 2, CS_SPLIT_MEMORY, sp, NULL, c, err, sizeof err), 0);
    assert_int_equal(c[0], 2);
    assert_int_equal(c[1], 6);
    sp[0] = 0, sp[1] = 0;
    const uint64_t mem[2] = {3ull << 30, 1ull << 30};
    assert_int_equal(cs_engine_plan_split(12, 2, CS_SPLIT_MEMORY, sp, mem, c, err, sizeof err), 0);
    assert_int_equal(c[0], 9);
    assert_int_equal(c[1], 3);
    sp[0] = 1, sp[1] = 1, sp[2] = 1;
    assert_int_equal(cs_engine_plan_split(12, 2, CS_SPLIT_LAYERS, sp, NULL, c, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "3 entries for 2 device"));
    memset(sp, 0, sizeof sp);
    assert_int_equal(cs_engine_plan_split(1, 2, CS_SPLIT_LAYERS, sp, NULL, c, err, sizeof err), CLSPEC_E_INVAL);
    sp[0] = 100, sp[1] = 1; /* memory: never leaves a device empty */
    assert_int_equal(cs_engine_plan_split(4, 2, CS_SPLIT_MEMORY, sp, NULL, c, err, sizeof err), 0);
    assert_int_equal(c[0], 3);
    assert_int_equal(c[1], 1);
}

static int engine_try(const char *devices, enum cs_split_mode mode, uint32_t s0, uint32_t s1, struct cs_engine **e,
                      char *err, size_t errlen)
{
    struct cs_engine_params p = cs_engine_defaults();
    p.devices = devices;
    p.split_mode = mode;
    p.split[0] = s0;
    p.split[1] = s1;
    p.n_ctx = 64;
    p.n_batch = p.n_ubatch = 16;
    return fu_engine_try("models/stories260K.gguf", &p, e, err, errlen);
}

static void test_engine(void **s)
{
    (void)s;
    char err[CLSPEC_ERRLEN];
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0;
    assert_int_equal(cs_cl_list(&list, &n, err, sizeof err), 0);
    free(list);
    if (n < 2)
        skip();
    struct cs_engine *e = NULL;
    char sel[32];
    snprintf(sel, sizeof sel, "0,%zu", n);
    assert_int_equal(engine_try(sel, CS_SPLIT_LAYERS, 0, 0, &e, err, sizeof err), CLSPEC_E_NOTFOUND);
    char want[64];
    snprintf(want, sizeof want, "device %zu: no such device (have 0..%zu)", n, n - 1);
    assert_non_null(strstr(err, want));
    assert_null(e);
    assert_int_equal(engine_try("0,1", CS_SPLIT_LAYERS, 3, 3, &e, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "sums to 6 layers; the model has 5"));
    assert_int_equal(engine_try("1,1", CS_SPLIT_LAYERS, 0, 0, &e, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "listed twice"));
    assert_int_equal(engine_try("0,", CS_SPLIT_LAYERS, 0, 0, &e, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(engine_try("0,nosuchdevicename", CS_SPLIT_LAYERS, 0, 0, &e, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_non_null(strstr(err, "nosuchdevicename"));
    /* a working split: 1 + 4 layers, greedy text equals one device's */
    if (engine_try("1,0", CS_SPLIT_MEMORY, 1, 4, &e, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_int_equal(e->n_dev, 2);
    assert_int_equal(e->layer_counts[0], 1);
    assert_int_equal(e->layer_counts[1], 4);
    assert_ptr_equal(e->fm->devs[0], e->dev[0]);
    struct cs_engine *e1 = NULL;
    if (engine_try("0", CS_SPLIT_LAYERS, 0, 0, &e1, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    const int32_t prompt[4] = {1, 403, 407, 261};
    int32_t t2[16], t1[16];
    fu_greedy(e->ctx, prompt, 4, 16, 0, t2, NULL);
    fu_greedy(e1->ctx, prompt, 4, 16, 0, t1, NULL);
    assert_memory_equal(t1, t2, sizeof t1);
    cs_engine_free(e1);
    cs_engine_free(e);
}

int main(void)
{
    setenv("POCL_DEVICES", "pthread pthread", 1); /* before the first OpenCL call */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),          cmocka_unit_test(test_engine),
        cmocka_unit_test(test_split_stories), cmocka_unit_test(test_split_q8),
        cmocka_unit_test(test_split_synth),
    };
    return cmocka_run_group_tests_name("split", tests, NULL, NULL);
}
