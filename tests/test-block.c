/* test-block.c: the block builder (src/model/block.c) and its kernel families
 * (src/ops/family.h) against the forward pass that composes them. Layer 0 of
 * stories260K built by hand with cs_blk_layer (embedding rows in, no fused
 * next norm) gives, bit for bit, the forward's hidden state at layer 1, with
 * the standard family (KV f32, q8_0) and with the llama.cpp-numerics family
 * (KV f16, against a llamacpp_numerics context); cs_blk_kv (DFlash's K/V-only
 * injection) stores exactly the K/V bytes cs_blk_attn stores. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/batch.h"
#include "model/block.h"
#include "base/common.h"
#include "fwdutil.h"
#include "kv/kv.h"
#include "gguf/quant.h"

#define N 12     /* rows */
#define NCTX 64  /* cells */

static char err[CLSPEC_ERRLEN];
#define OK(x)                                  \
    do {                                       \
        if ((x) < 0)                           \
            fail_msg("%s: %s", #x, err);       \
    } while (0)

/* One sequence's n rows placed in a fresh one-sequence cache of type t. */
struct place {
    struct cs_kv *kv;
    int32_t tok[N], pos[N], seq[N], cell[N];
};

static void place_new(struct fu_model *f, uint32_t t, struct place *p)
{
    const struct cs_hparams *hp = &f->m->hp;
    struct cs_cl_dev **ldev = calloc(hp->n_layer, sizeof *ldev);
    assert_non_null(ldev);
    for (uint32_t l = 0; l < hp->n_layer; l++)
        ldev[l] = f->dev[0];
    struct cs_kv_params kp = {.n_ctx = NCTX, .type_k = t, .type_v = t, .n_seq_max = 1, .unified = true};
    OK(cs_kv_new(hp, &kp, ldev, &p->kv, err, sizeof err));
    free(ldev);
    struct cs_batch b;
    OK(cs_batch_init(&b, N, err, sizeof err));
    for (int i = 0; i < N; i++) {
        p->tok[i] = (int32_t)((i * 37 + 5) % hp->n_vocab);
        p->pos[i] = i;
        p->seq[i] = 0;
        OK(cs_batch_add(&b, p->tok[i], i, 0, false, err, sizeof err));
    }
    int seq_rc[CS_MAX_SEQ];
    OK(cs_kv_place(p->kv, &b, p->cell, seq_rc, err, sizeof err));
    assert_int_equal(seq_rc[0], CLSPEC_OK);
    OK(cs_kv_sync(p->kv, true, err, sizeof err));
    cs_batch_free(&b);
}

/* Device buffers of struct cs_blk_act (N rows) plus the token ids. */
struct bufs {
    struct cs_blk_act a;
    cl_mem tok;
};

static void bufs_new(struct fu_model *f, const struct place *p, struct bufs *b)
{
    const struct cs_hparams *hp = &f->m->hp;
    const size_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff;
    struct {
        cl_mem *m;
        size_t bytes;
        const void *init;
    } t[] = {
        {&b->a.x, N * E * 4, NULL},   {&b->a.xb, N * CS_MAX(E, Q) * 4, NULL}, {&b->a.q, N * Q * 4, NULL},
        {&b->a.att, N * Q * 4, NULL}, {&b->a.kc, N * KV * 4, NULL},           {&b->a.vc, N * KV * 4, NULL},
        {&b->a.hb, N * F * 4, NULL},  {&b->a.hb2, N * F * 4, NULL},           {&b->a.pos, N * 4, p->pos},
        {&b->a.seq, N * 4, p->seq},   {&b->a.cell, N * 4, p->cell},           {&b->tok, N * 4, p->tok},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++)
        OK(cs_cl_alloc(f->dev[0], t[i].init ? CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE,
                       t[i].bytes, (void *)t[i].init, t[i].m, err, sizeof err));
}

static void bufs_free(struct bufs *b)
{
    cl_mem *m[] = {&b->a.x,  &b->a.xb,  &b->a.q,   &b->a.att, &b->a.kc,   &b->a.vc,
                   &b->a.hb, &b->a.hb2, &b->a.pos, &b->a.seq, &b->a.cell, &b->tok};
    for (size_t i = 0; i < CS_ARRAY_LEN(m); i++)
        cs_cl_release(m[i]);
}

/* The forward's hidden state at layer 1 (the output of layer 0) of p's rows. */
static void forward_layer1(struct fu_model *f, const struct place *p, uint32_t t, bool lcpp, float *out)
{
    struct cs_fwd_ctx_params cp = {.n_ctx = NCTX, .n_batch = N, .n_ubatch = N, .type_k = t, .type_v = t,
                                   .llamacpp_numerics = lcpp};
    struct cs_fwd_ctx *c = NULL;
    OK(cs_fwd_ctx_new(f->fm, &cp, &c, err, sizeof err));
    const int32_t layer = 1;
    struct cs_fwd_hidden h = {.n_layers = 1, .layers = &layer, .out = out};
    float *logits = malloc((size_t)f->V * 4);
    assert_non_null(logits);
    OK(cs_forward(c, p->tok, N, p->pos, NULL, NULL, 1, logits, &h, err, sizeof err));
    free(logits);
    cs_fwd_ctx_free(c);
}

/* Layer 0 by hand on ops o, compared with the forward's layer-1 hidden state. */
static void check_layer0(struct fu_model *f, uint32_t t, bool lcpp)
{
    const struct cs_hparams *hp = &f->m->hp;
    const size_t E = hp->n_embd;
    struct place p;
    place_new(f, t, &p);
    struct bufs b;
    bufs_new(f, &p, &b);
    struct cs_ops o = cs_ops_std(f->dev[0]);
    if (lcpp) {
        const struct cs_ops_lcpp_params lp = {.n_rows = N, .max_in = (int)CS_MAX(CS_MAX(E, cs_hp_q_dim(hp)), hp->n_ff),
                                              .n_head = (int)hp->n_head, .n_ctx = NCTX, .rope = p.kv->rope};
        OK(cs_ops_lcpp_new(f->dev[0], &lp, &o, err, sizeof err));
    }
    OK(cs_ops_begin(&o, p.pos, N, err, sizeof err));
    const struct cs_blk_shape s = cs_fwd_blk_shape(hp, &p.kv->rope);
    const struct cs_kv_view kv = cs_kv_layer_view(p.kv, 0);
    const struct cs_blk_opt opt = {.normed = false, .causal = true, .n_cells_used = p.kv->hi, .next_norm = NULL,
                                   .ffn_rows = N};
    OK(cs_op_get_rows(f->dev[0], &f->fm->tok_embd, b.tok, 0, N, b.a.x, 0, err, sizeof err));
    OK(cs_blk_layer(&o, &s, &f->fm->layers[0], &kv, &b.a, N, &opt, err, sizeof err));
    float *got = malloc(N * E * 4), *want = malloc(N * E * 4);
    assert_non_null(got);
    assert_non_null(want);
    OK(cs_cl_read(f->dev[0], b.a.x, 0, N * E * 4, got, err, sizeof err));
    forward_layer1(f, &p, t, lcpp, want);
    assert_memory_equal(got, want, N * E * 4);
    free(got);
    free(want);
    cs_ops_free(&o);
    bufs_free(&b);
    cs_kv_free(p.kv);
}

static void test_layer_std(void **st)
{
    (void)st;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f))
        skip();
    check_layer0(&f, CS_TYPE_F32, false);
    check_layer0(&f, CS_TYPE_Q8_0, false);
    fu_close(&f);
}

static void test_layer_lcpp(void **st)
{
    (void)st;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f))
        skip();
    check_layer0(&f, CS_TYPE_F16, true);
    fu_close(&f);
}

/* Reads the whole K and V buffers of layer 0. */
static void read_kv(struct fu_model *f, const struct cs_kv_view *kv, void **k, void **v, size_t *kb, size_t *vb)
{
    clGetMemObjectInfo(kv->k, CL_MEM_SIZE, sizeof *kb, kb, NULL);
    clGetMemObjectInfo(kv->v, CL_MEM_SIZE, sizeof *vb, vb, NULL);
    *k = malloc(*kb);
    *v = malloc(*vb);
    assert_non_null(*k);
    assert_non_null(*v);
    OK(cs_cl_read(f->dev[0], kv->k, 0, *kb, *k, err, sizeof err));
    OK(cs_cl_read(f->dev[0], kv->v, 0, *vb, *v, err, sizeof err));
}

static void check_kv_only(struct fu_model *f, uint32_t t)
{
    const struct cs_hparams *hp = &f->m->hp;
    struct place p1, p2;
    place_new(f, t, &p1);
    place_new(f, t, &p2);
    struct bufs b;
    bufs_new(f, &p1, &b);
    const struct cs_ops o = cs_ops_std(f->dev[0]);
    const struct cs_blk_shape s = cs_fwd_blk_shape(hp, &p1.kv->rope);
    const struct cs_kv_view kv1 = cs_kv_layer_view(p1.kv, 0), kv2 = cs_kv_layer_view(p2.kv, 0);
    const struct cs_fwd_layer *L = &f->fm->layers[0];
    OK(cs_op_get_rows(f->dev[0], &f->fm->tok_embd, b.tok, 0, N, b.a.x, 0, err, sizeof err));
    /* K/V only from the normed rows into p2's cache (x untouched) */
    OK(cs_op_rmsnorm(f->dev[0], b.a.x, 0, L->attn_norm, b.a.xb, 0, N, (int)hp->n_embd, hp->rms_eps, err,
                     sizeof err));
    OK(cs_blk_kv(&o, &s, L, &kv2, &b.a, N, err, sizeof err));
    /* the attention sub-block from the same x into p1's cache (the same cells: fresh caches, same rows) */
    const struct cs_blk_opt opt = {.normed = false, .causal = true, .n_cells_used = p1.kv->hi, .ffn_rows = N};
    OK(cs_blk_attn(&o, &s, L, &kv1, &b.a, N, &opt, err, sizeof err));
    void *k1, *v1, *k2, *v2;
    size_t k1b, v1b, k2b, v2b;
    read_kv(f, &kv1, &k1, &v1, &k1b, &v1b);
    read_kv(f, &kv2, &k2, &v2, &k2b, &v2b);
    assert_int_equal(k1b, k2b);
    assert_int_equal(v1b, v2b);
    /* the rows' cells (the rest of the buffers is never written) */
    uint64_t krow = 0, vrow = 0;
    assert_true(cs_kv_row_bytes(t, cs_hp_kv_dim(hp), &krow));
    assert_true(cs_kv_row_bytes(t, cs_hp_kv_dim(hp), &vrow));
    bool nonzero = false;
    for (int i = 0; i < N; i++) {
        assert_int_equal(p1.cell[i], p2.cell[i]);
        const unsigned char *a = (unsigned char *)k1 + krow * (uint64_t)p1.cell[i];
        assert_memory_equal(a, (unsigned char *)k2 + krow * (uint64_t)p1.cell[i], krow);
        assert_memory_equal((unsigned char *)v1 + vrow * (uint64_t)p1.cell[i],
                            (unsigned char *)v2 + vrow * (uint64_t)p1.cell[i], vrow);
        for (uint64_t j = 0; j < krow; j++) /* something was stored */
            nonzero = nonzero || a[j] != 0;
    }
    assert_true(nonzero);
    free(k1);
    free(v1);
    free(k2);
    free(v2);
    bufs_free(&b);
    cs_kv_free(p1.kv);
    cs_kv_free(p2.kv);
}

static void test_kv_only(void **st)
{
    (void)st;
    struct fu_model f;
    if (fu_open("models/stories260K.gguf", 1, NULL, NULL, &f))
        skip();
    check_kv_only(&f, CS_TYPE_F32);
    check_kv_only(&f, CS_TYPE_Q8_0);
    fu_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_std),
        cmocka_unit_test(test_layer_lcpp),
        cmocka_unit_test(test_kv_only),
    };
    return cmocka_run_group_tests_name("block", tests, NULL, NULL);
}
