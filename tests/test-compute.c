/* test-compute.c: the device compute service of the host table (ABI 1.4,
 * src/spec/host_compute.c) through its worked example, tests/plugins/head1.c
 * (a one-layer llama head built on the service alone), loaded by the loader:
 * - the head's logits and argmax equal the engine's (cs_forward on the same
 *   one-layer synthetic model, q8_0 weights, f32 KV) bit for bit, for two
 *   sequences over two decodes, with its own weights and with the target's
 *   token_embd / output / output_norm borrowed;
 * - its greedy drafts equal the engine's greedy continuation, also after an
 *   accept that rolls back part of a draft (kv_seq_rm);
 * - buffers, copies (row copies and a concat), KV placement (all or
 *   nothing), GGUF key lookups, and every checked error: NULL and wrong-kind
 *   handles, shapes beyond a buffer, element types, read-only target
 *   buffers, bad KV types and layers;
 * - NeoX RoPE and non-causal attention (a DFlash block) with index
 *   arguments at offsets, against the plain-C references;
 * - the block builder's entries: layer_new refuses a missing weight, a
 *   wrong shape, a tensor on another dev; block_layer / block_kv refuse
 *   too-small, wrong-type, aliased and foreign activation buffers and a
 *   mismatched KV cache; block_kv gives block_layer's K bit for bit (the
 *   layer itself is checked against the engine through head1 above);
 * - a host of minor 3 (size ending before dev_open) is refused by head1's
 *   init, and the new entries sit past that size;
 * - handles left to the host (keep_handles = 1) are freed by it after fini. */
#include "config.h"

#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/common.h"
#include "cl/runtime.h"
#include "engine/engine.h"
#include "fwdutil.h"
#include "ref/ops_ref.h"
#include "engine/sampler.h"
#include "spec/loader.h"
#include "model/synth.h"
#include "testutil.h"

#ifndef CS_TEST_PLUGINS
#error "CS_TEST_PLUGINS: the directory of the test plugins"
#endif

typedef int (*head1_decode_fn)(void *state, int32_t n, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                               float *logits, int32_t *amax, char *err, size_t errlen);

static char *g_model;             /* the one-layer synthetic model (a temp file) */
static struct cs_engine *g_e;     /* the engine on it: 2 sequences, f32 KV */
static char g_err[CLSPEC_ERRLEN];

static int setup(void **state)
{
    (void)state;
    char *vocab = tu_shared_path("models/stories260K.gguf");
    struct cs_synth_params p;
    cs_synth_defaults(&p);
    p.dim = 64;
    p.n_layer = 1;
    p.n_head = 4;
    p.n_kv_head = 2;
    p.ffn = 96;
    p.ctx = 256;
    p.type = CS_TYPE_Q8_0;
    p.output_type = CS_TYPE_F16;
    p.vocab_path = vocab;
    p.seed = 5;
    g_model = tu_tmp_path(".gguf");
    if (cs_synth_write(&p, g_model, NULL, g_err, sizeof g_err) != CLSPEC_OK) {
        fprintf(stderr, "# synth: %s\n", g_err);
        free(vocab);
        return -1;
    }
    free(vocab);
    struct cs_engine_params ep = cs_engine_defaults();
    ep.model_path = g_model;
    ep.n_ctx = 256;
    ep.n_seq_max = 2;
    ep.type_k = ep.type_v = CS_TYPE_F32;
    ep.n_batch = ep.n_ubatch = 64;
    if (cs_engine_open(&ep, &g_e, g_err, sizeof g_err) != CLSPEC_OK) {
        fprintf(stderr, "# engine: %s\n", g_err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cs_engine_free(g_e);
    if (g_model)
        unlink(g_model);
    free(g_model);
    return 0;
}

static struct cs_plugin *load_head(const char *borrow, const char *keep)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/head1.so", CS_TEST_PLUGINS);
    struct cs_plugin_kv kv[] = {{"model", g_model}, {"borrow", borrow}, {"keep_handles", keep}, {"n_ctx", "128"}};
    struct cs_plugin_params pp = {.type = path, .kv = kv, .n_kv = 4, .engine = g_e, .n_slots = 2};
    struct cs_plugin *pl = NULL;
    if (cs_plugin_load(&pp, &pl, g_err, sizeof g_err) != CLSPEC_OK)
        fail_msg("head1: %s", g_err);
    return pl;
}

/* ---- the head against the engine ---- */

#define NR 12

/* Two decodes of rows of sequences 0 and 1 (interleaved), through the head
 * and through the engine: identical logits and argmax. */
static void check_rows(struct cs_plugin *pl)
{
    head1_decode_fn dec = (head1_decode_fn)(uintptr_t)dlsym(pl->dl, "head1_decode");
    assert_non_null(dec);
    const int V = (int)g_e->model->hp.n_vocab;
    cs_kv_clear(g_e->ctx->kv);
    struct tu_rng r;
    tu_rng_seed(&r, 3);
    int32_t tok[NR], pos[NR], seq[NR], rows[NR], am[NR];
    float *lh = malloc((size_t)NR * V * sizeof *lh), *le = malloc((size_t)NR * V * sizeof *le);
    assert_true(lh && le);
    int32_t next[2] = {0, 0};
    for (int step = 0; step < 2; step++) {
        const int n = step == 0 ? NR : 5; /* 12 rows, then 5: 3 of seq 0, 2 of seq 1 */
        tu_rng_tokens(&r, tok, n, V);
        for (int i = 0; i < n; i++) {
            seq[i] = step == 0 ? (i < 7 ? 0 : 1) : (i < 3 ? 0 : 1);
            pos[i] = next[seq[i]]++;
            rows[i] = i;
        }
        if (dec(pl->state, n, tok, pos, seq, lh, am, g_err, sizeof g_err) != 0)
            fail_msg("head1_decode: %s", g_err);
        if (cs_forward(g_e->ctx, tok, n, pos, seq, rows, n, le, NULL, g_err, sizeof g_err) != CLSPEC_OK)
            fail_msg("cs_forward: %s", g_err);
        for (int i = 0; i < n; i++) {
            assert_int_equal(am[i], cs_argmax(le + (size_t)i * V, V));
            if (memcmp(lh + (size_t)i * V, le + (size_t)i * V, (size_t)V * sizeof *lh) != 0)
                fail_msg("step %d row %d: logits differ (max |d| %g)", step, i,
                         (double)fu_max_abs(lh + (size_t)i * V, le + (size_t)i * V, (size_t)V));
        }
    }
    free(lh);
    free(le);
}

static void test_head_matches_engine(void **state)
{
    (void)state;
    struct cs_plugin *pl = load_head("0", "0");
    check_rows(pl);
    cs_plugin_free(pl);
    pl = load_head("1", "0"); /* the target's token_embd, output, output_norm */
    check_rows(pl);
    cs_plugin_free(pl);
}

/* draft = the engine's greedy continuation; after accept(2) of 5, the next
 * draft continues from the rolled-back cache */
static void test_head_drafts(void **state)
{
    (void)state;
    struct cs_plugin *pl = load_head("0", "1"); /* also: the host frees what fini left */
    const int V = (int)g_e->model->hp.n_vocab, N = 9, G = 11;
    int32_t hist[32], greedy[16], out[8];
    struct tu_rng r;
    tu_rng_seed(&r, 9);
    tu_rng_tokens(&r, hist, N, V);
    cs_kv_clear(g_e->ctx->kv);
    fu_greedy(g_e->ctx, hist, N, G, 1, greedy, NULL);
    struct clspec_draft_req req = {.size = sizeof req, .slot = 1, .hist = hist, .n_hist = N, .pos_last = N - 1,
                                   .n_max = 5, .n_vocab = (uint32_t)V};
    int k = pl->vt.draft(pl->state, &req, out, NULL, g_err, sizeof g_err);
    if (k < 0)
        fail_msg("draft: %s", g_err);
    assert_int_equal(k, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(out[i], greedy[i]);
    /* 2 drafts accepted, then the target's token: the history grows by greedy[0..3) */
    memcpy(hist + N, greedy, 3 * sizeof *hist);
    pl->vt.accept(pl->state, 1, 5, 2, greedy, 3);
    req.n_hist = N + 3;
    req.pos_last = N + 2;
    k = pl->vt.draft(pl->state, &req, out, NULL, g_err, sizeof g_err);
    assert_int_equal(k, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(out[i], greedy[3 + i]);
    pl->vt.slot_end(pl->state, 1);
    cs_plugin_free(pl);
}

/* ---- the service itself ---- */

static void test_buffers_and_kv(void **state)
{
    (void)state;
    struct cs_plugin *pl = load_head("0", "0");
    const struct clspec_host *h = &pl->host;
    clspec_dev *d = NULL;
    assert_int_equal(h->dev_open(h, -1, &d, g_err, sizeof g_err), 0);
    /* write, read, a concat of two (3, 4) blocks into (3, 8) rows */
    clspec_buf *a, *b, *c;
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, 12, &a, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, 12, &b, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, 24, &c, g_err, sizeof g_err), 0);
    float va[12], vb[12], vc[24];
    for (int i = 0; i < 12; i++) {
        va[i] = (float)i;
        vb[i] = (float)(100 + i);
    }
    assert_int_equal(h->buf_write(a, 0, 12, va, g_err, sizeof g_err), 0);
    memset(va, 0, sizeof va); /* the service copied it */
    assert_int_equal(h->buf_write(b, 0, 12, vb, g_err, sizeof g_err), 0);
    assert_int_equal(h->copy(c, 0, 8, a, 0, 4, 3, 4, g_err, sizeof g_err), 0);
    assert_int_equal(h->copy(c, 4, 8, b, 0, 4, 3, 4, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(c, 0, 24, vc, g_err, sizeof g_err), 0);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++) {
            assert_true(vc[r * 8 + i] == (float)(r * 4 + i));
            assert_true(vc[r * 8 + 4 + i] == (float)(100 + r * 4 + i));
        }
    /* argmax through the service */
    clspec_buf *am;
    int32_t got[3];
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_I32, 3, &am, g_err, sizeof g_err), 0);
    assert_int_equal(h->argmax(c, 0, am, 0, 3, 8, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(am, 0, 3, got, g_err, sizeof g_err), 0);
    for (int r = 0; r < 3; r++)
        assert_int_equal(got[r], 7);
    /* KV: 4 cells, 2 sequences; placement is all or nothing */
    clspec_kv *kv;
    clspec_buf *cells;
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_I32, 8, &cells, g_err, sizeof g_err), 0);
    assert_int_equal(h->kv_new(d, 2, 1, 16, 4, 2, CLSPEC_TYPE_F16, CLSPEC_TYPE_Q8_0, &kv, g_err, sizeof g_err), 0);
    int32_t pos[5] = {0, 1, 2, 0, 1}, seq[5] = {0, 0, 0, 1, 1}, ch[5] = {-2, -2, -2, -2, -2};
    assert_int_equal(h->kv_place(kv, 5, pos, seq, cells, 0, ch, g_err, sizeof g_err), CLSPEC_E_KV_FULL);
    print_message("kv_place: %s\n", g_err);
    assert_int_equal(h->kv_place(kv, 3, pos, seq, cells, 1, ch, g_err, sizeof g_err), 0); /* all 3 fit now */
    int32_t dev_cells[4];
    assert_int_equal(h->buf_read(cells, 0, 4, dev_cells, g_err, sizeof g_err), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(ch[i] >= 0 && ch[i] < 4);
        assert_int_equal(dev_cells[1 + i], ch[i]);
    }
    assert_int_equal(h->kv_place(kv, 2, pos + 3, seq + 3, cells, 0, NULL, g_err, sizeof g_err), CLSPEC_E_KV_FULL);
    assert_int_equal(h->kv_seq_rm(kv, 0, 1, -1, g_err, sizeof g_err), 0); /* frees 2 cells */
    assert_int_equal(h->kv_place(kv, 2, pos + 3, seq + 3, cells, 0, NULL, g_err, sizeof g_err), 0);
    /* after a wait, a removal and a placement block nothing (the removal's metadata goes up with the
     * placement's), and the placement finds the freed cell */
    assert_int_equal(h->buf_read(cells, 0, 4, dev_cells, g_err, sizeof g_err), 0);
    const uint64_t s0 = cs_cl_sync_count();
    assert_int_equal(h->kv_seq_rm(kv, 1, 1, -1, g_err, sizeof g_err), 0);
    assert_int_equal(h->kv_place(kv, 1, pos + 4, seq + 4, cells, 0, NULL, g_err, sizeof g_err), 0);
    assert_int_equal(cs_cl_sync_count() - s0, 0);
    assert_int_equal(h->kv_seq_rm(kv, -1, 0, -1, g_err, sizeof g_err), 0);
    h->kv_free(kv);
    h->buf_free(a); /* the rest is closed with d */
    /* GGUF keys */
    clspec_gguf *g;
    assert_int_equal(h->gguf_open(h, g_model, &g, g_err, sizeof g_err), 0);
    int64_t iv = 0;
    double fv = 0;
    char sv[32];
    assert_int_equal(h->gguf_ints(g, "llama.embedding_length", &iv, 1), 1);
    assert_int_equal(iv, 64);
    assert_int_equal(h->gguf_float(g, "llama.attention.layer_norm_rms_epsilon", &fv), 0);
    assert_true(fv > 0 && fv < 1e-3);
    assert_int_equal(h->gguf_str(g, "general.architecture", sv, sizeof sv), 0);
    assert_string_equal(sv, "llama");
    assert_true(h->gguf_ints(g, "general.architecture", &iv, 1) < 0);
    assert_true(h->gguf_str(g, "general.architecture", sv, 3) < 0); /* does not fit */
    struct clspec_tensor_info ti = {.size = sizeof ti};
    assert_int_equal(h->gguf_tensor(g, "blk.0.attn_q.weight", &ti, g_err, sizeof g_err), 0);
    assert_int_equal(ti.type, CLSPEC_TYPE_Q8_0);
    assert_int_equal(ti.ne[0], 64);
    assert_int_equal(h->gguf_tensor(g, "blk.1.attn_q.weight", &ti, g_err, sizeof g_err), CLSPEC_E_NOTFOUND);
    h->gguf_close(g);
    assert_int_equal(h->gguf_open(h, NULL, &g, g_err, sizeof g_err), 0); /* the target's own file */
    assert_int_equal(h->gguf_ints(g, "llama.block_count", &iv, 1), 1);
    assert_int_equal(iv, 1);
    h->gguf_close(g);
    h->dev_close(d);
    cs_plugin_free(pl);
}

static void test_errors(void **state)
{
    (void)state;
    struct cs_plugin *pl = load_head("0", "0");
    const struct clspec_host *h = &pl->host;
    clspec_dev *d = NULL;
    assert_int_equal(h->dev_open(h, 5, &d, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(h->dev_open(h, 0, &d, g_err, sizeof g_err), 0);
    clspec_buf *x, *y, *ids, *on;
    clspec_weight *w;
    clspec_gguf *g;
    assert_int_equal(h->buf_new(d, 7, 4, &x, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, 64 * 2, &x, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, 64, &y, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_I32, 2, &ids, g_err, sizeof g_err), 0);
    assert_int_equal(h->gguf_open(h, g_model, &g, g_err, sizeof g_err), 0);
    assert_int_equal(h->weight_upload(d, g, "blk.0.attn_q.weight", &w, g_err, sizeof g_err), 0);
    assert_int_equal(h->weight_upload(d, g, NULL, &w, g_err, sizeof g_err), CLSPEC_E_NOTFOUND);
    assert_int_equal(h->weight_upload(d, g, "nope", &w, g_err, sizeof g_err), CLSPEC_E_NOTFOUND);
    assert_int_equal(h->weight_upload(d, g, "blk.0.attn_q.weight", &w, g_err, sizeof g_err), 0);
    uint32_t n_in, n_out, ty;
    h->weight_shape(w, &n_in, &n_out, &ty);
    assert_int_equal(n_in, 64);
    assert_int_equal(n_out, 64);
    assert_int_equal(ty, CLSPEC_TYPE_Q8_0);
    /* handles: NULL, of another kind */
    assert_int_equal(h->matmul(NULL, x, 0, y, 0, 1, g_err, sizeof g_err), CLSPEC_E_INVAL);
    print_message("NULL weight: %s\n", g_err);
    assert_int_equal(h->matmul((const clspec_weight *)x, x, 0, y, 0, 1, g_err, sizeof g_err), CLSPEC_E_INVAL);
    print_message("buffer as weight: %s\n", g_err);
    assert_non_null(strstr(g_err, "not a weight handle"));
    assert_int_equal(h->matmul(w, (const clspec_buf *)w, 0, y, 0, 1, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->sync((clspec_dev *)x, g_err, sizeof g_err), CLSPEC_E_INVAL);
    /* shapes: 2 rows of 64 fit x, not y; an offset beyond the end */
    assert_int_equal(h->matmul(w, x, 0, y, 0, 1, g_err, sizeof g_err), 0);
    assert_int_equal(h->matmul(w, x, 0, y, 0, 2, g_err, sizeof g_err), CLSPEC_E_RANGE);
    print_message("too many rows: %s\n", g_err);
    assert_int_equal(h->matmul(w, x, 65, y, 0, 1, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(h->matmul(w, x, 0, y, 0, 0, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->buf_write(y, 60, 5, g_err, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(h->copy(y, 0, 4, x, 0, 3, 2, 4, g_err, sizeof g_err), CLSPEC_E_INVAL); /* n_cols > src_ld */
    /* element types */
    assert_int_equal(h->rmsnorm(ids, 0, NULL, y, 0, 1, 2, 1e-5f, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->get_rows(w, x, 0, 1, y, 0, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->argmax(x, 0, y, 0, 1, 64, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->rope(x, 0, ids, 0, 1, 4, 16, 15, 0, 1e4f, 1.0f, g_err, sizeof g_err), CLSPEC_E_INVAL);
    /* the target's output_norm is lent read-only */
    assert_int_equal(h->target_vec(d, "output_norm.weight", &on, g_err, sizeof g_err), 0);
    assert_int_equal(h->rmsnorm(y, 0, NULL, on, 0, 1, 64, 1e-5f, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->buf_write(on, 0, 1, g_err, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->rmsnorm(y, 0, on, y, 0, 1, 64, 1e-5f, g_err, sizeof g_err), 0); /* read: fine */
    assert_int_equal(h->add_rmsnorm(y, 0, x, 0, on, y, 0, 1, 64, 1e-5f, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->add_rmsnorm(y, 0, x, 0, on, x, 1, 1, 64, 1e-5f, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(h->add_rmsnorm(y, 0, x, 0, on, x, 0, 1, 64, 1e-5f, g_err, sizeof g_err), 0);
    assert_int_equal(h->target_vec(d, "token_embd.weight", &on, g_err, sizeof g_err), CLSPEC_E_NOTFOUND);
    /* KV caches */
    clspec_kv *kv;
    assert_true(h->kv_new(d, 1, 2, 16, 8, 1, 12 /* q4_K */, CLSPEC_TYPE_F32, &kv, g_err, sizeof g_err) < 0);
    print_message("kv type: %s\n", g_err);
    assert_int_equal(h->kv_new(d, 1, 2, 16, 8, 65, CLSPEC_TYPE_F32, CLSPEC_TYPE_F32, &kv, g_err, sizeof g_err),
                     CLSPEC_E_INVAL);
    assert_int_equal(h->kv_new(d, 1, 2, 16, 8, 1, CLSPEC_TYPE_F32, CLSPEC_TYPE_F32, &kv, g_err, sizeof g_err), 0);
    assert_int_equal(h->attention(kv, 1, x, 0, y, 0, ids, 0, ids, 0, 1, 4, 1, 0.25f, g_err, sizeof g_err),
                     CLSPEC_E_RANGE);
    assert_int_equal(h->attention(kv, 0, x, 0, y, 0, ids, 0, ids, 0, 1, 3, 1, 0.25f, g_err, sizeof g_err),
                     CLSPEC_E_INVAL);
    assert_int_equal(h->attention(kv, 0, x, 0, x, 0, ids, 0, ids, 0, 1, 4, 1, 0.25f, g_err, sizeof g_err),
                     CLSPEC_E_INVAL);
    int32_t p1 = 0, s1 = 1;
    assert_int_equal(h->kv_place(kv, 1, &p1, &s1, ids, 0, NULL, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(h->kv_store(kv, 0, x, 0, x, 0, ids, 1, 2, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(h->sync(d, g_err, sizeof g_err), 0);
    /* a second dev: its buffers do not mix with d's */
    clspec_dev *d2;
    clspec_buf *z;
    assert_int_equal(h->dev_open(h, 0, &d2, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d2, CLSPEC_BUF_F32, 64, &z, g_err, sizeof g_err), 0);
    assert_int_equal(h->add(x, 0, z, 0, y, 0, 64, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_non_null(strstr(g_err, "another device"));
    /* everything left open here is freed by the host (dev_close at plugin unload) */
    cs_plugin_free(pl);
}

/* A plugin reading a minor-3 host: the 1.4 entries lie past its size. */
static void test_old_host(void **state)
{
    (void)state;
    assert_true(offsetof(struct clspec_host, dev_open) > offsetof(struct clspec_host, ctx_inject_taps));
    struct cs_plugin *pl = load_head("0", "0");
    assert_true(pl->host.abi_minor >= 4);
    assert_true(offsetof(struct clspec_host, add_rmsnorm) < pl->host.size);
    assert_true(offsetof(struct clspec_host, block_kv) < pl->host.size);
    struct clspec_host h3 = pl->host;
    h3.abi_minor = 3;
    h3.size = (uint32_t)offsetof(struct clspec_host, dev_open);
    void *st = NULL;
    assert_true(pl->vt.init(&h3, &st, g_err, sizeof g_err) < 0);
    print_message("minor 3: %s\n", g_err);
    assert_non_null(strstr(g_err, "compute service"));
    assert_null(st);
    cs_plugin_free(pl);
}

/* max |got - ref| / max(|ref|, 1e-3) */
static double rel_err(const float *got, const float *ref, size_t n)
{
    double e = 0, m = 1e-3;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        e = d > e || d != d ? d : e;
        m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    }
    return e / m;
}

/* What a DFlash drafter needs beyond head1: NeoX RoPE and non-causal
 * attention, with positions, sequences and cells read at non-zero offsets,
 * against the plain-C references (bound: the kernels' own, 1e-5 of the
 * largest value). */
#define BR 6  /* rows: 4 of sequence 0, 2 of sequence 1 */
#define BH 4  /* query heads */
#define BK 2  /* kv heads */
#define BD 16 /* head_dim */
static void test_block_ops(void **state)
{
    (void)state;
    struct cs_plugin *pl = load_head("0", "0");
    const struct clspec_host *h = &pl->host;
    clspec_dev *d;
    clspec_kv *kv;
    clspec_buf *q, *k, *v, *att, *ix;
    assert_int_equal(h->dev_open(h, -1, &d, g_err, sizeof g_err), 0);
    assert_int_equal(h->kv_new(d, 1, BK, BD, 16, 2, CLSPEC_TYPE_F32, CLSPEC_TYPE_F32, &kv, g_err, sizeof g_err), 0);
    const size_t QN = (size_t)BR * BH * BD, KN = (size_t)BR * BK * BD;
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, QN, &q, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, KN, &k, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, KN, &v, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_F32, QN, &att, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_new(d, CLSPEC_BUF_I32, 3 * (BR + 1), &ix, g_err, sizeof g_err), 0);
    struct tu_rng r;
    tu_rng_seed(&r, 17);
    float hq[QN], hk[KN], hv[KN], got[QN], ref[QN];
    for (size_t i = 0; i < QN; i++)
        hq[i] = tu_rng_normal(&r);
    for (size_t i = 0; i < KN; i++) {
        hk[i] = tu_rng_normal(&r);
        hv[i] = tu_rng_normal(&r);
    }
    /* ix holds [junk, pos (BR), seq (BR), cells (BR)]: every index argument at an offset */
    const int32_t pos[BR] = {7, 8, 9, 10, 3, 4}, seq[BR] = {0, 0, 0, 0, 1, 1}, junk = -5;
    int32_t cells[BR];
    assert_int_equal(h->buf_write(ix, 0, 1, &junk, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(ix, 1, BR, pos, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(ix, 1 + BR, BR, seq, g_err, sizeof g_err), 0);
    assert_int_equal(h->kv_place(kv, BR, pos, seq, ix, 1 + 2 * BR, cells, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(q, 0, QN, hq, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(k, 0, KN, hk, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(v, 0, KN, hv, g_err, sizeof g_err), 0);
    /* NeoX RoPE of q, all dims, base 1e6 */
    assert_int_equal(h->rope(q, 0, ix, 1, BR, BH, BD, BD, 1, 1e6f, 1.0f, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(q, 0, QN, got, g_err, sizeof g_err), 0);
    memcpy(ref, hq, sizeof ref);
    cs_ref_rope(ref, pos, BR, BH, BD, BD, true, 1e6f, 1.0f);
    assert_true(rel_err(got, ref, QN) <= 1e-5);
    memcpy(hq, got, sizeof hq); /* the rotated q is the attention's input */
    /* store K/V (K as given), attend without the causal mask */
    assert_int_equal(h->kv_store(kv, 0, k, 0, v, 0, ix, 1 + 2 * BR, BR, g_err, sizeof g_err), 0);
    assert_int_equal(h->attention(kv, 0, q, 0, att, 0, ix, 1, ix, 1 + BR, BR, BH, 0, 0.25f, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(att, 0, QN, got, g_err, sizeof g_err), 0);
    /* the reference over the cells as placed */
    int n_cells = 0;
    for (int i = 0; i < BR; i++)
        n_cells = cells[i] + 1 > n_cells ? cells[i] + 1 : n_cells;
    float ck[16 * BK * BD] = {0}, cv[16 * BK * BD] = {0};
    int32_t cpos[16];
    uint64_t cseq[16] = {0};
    for (int c = 0; c < 16; c++)
        cpos[c] = -1;
    for (int i = 0; i < BR; i++) {
        memcpy(ck + (size_t)cells[i] * BK * BD, hk + (size_t)i * BK * BD, BK * BD * sizeof(float));
        memcpy(cv + (size_t)cells[i] * BK * BD, hv + (size_t)i * BK * BD, BK * BD * sizeof(float));
        cpos[cells[i]] = pos[i];
        cseq[cells[i]] = 1ull << seq[i];
    }
    cs_ref_attention(hq, ck, cv, cpos, cseq, n_cells, pos, seq, BR, BH, BK, BD, false, 0.25f, ref);
    double e = rel_err(got, ref, QN);
    print_message("non-causal attention: err %.2e\n", e);
    assert_true(e <= 1e-5);
    /* the same with the causal mask differs (row 0 of sequence 0 sees 1 cell, not 4) */
    assert_int_equal(h->attention(kv, 0, q, 0, att, 0, ix, 1, ix, 1 + BR, BR, BH, 1, 0.25f, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(att, 0, QN, got, g_err, sizeof g_err), 0);
    assert_true(rel_err(got, ref, QN) > 1e-3);
    cs_ref_attention(hq, ck, cv, cpos, cseq, n_cells, pos, seq, BR, BH, BK, BD, true, 0.25f, ref);
    assert_true(rel_err(got, ref, QN) <= 1e-5);
    cs_plugin_free(pl); /* d and everything on it: freed by the host */
}

/* ---- the block builder's entries (layer_new, block_layer, block_kv) ---- */

/* rc must be code with a message naming what (the field or buffer at fault). */
static void expect_err(int rc, int code, const char *what, const char *label)
{
    print_message("%s: %s\n", label, g_err);
    assert_int_equal(rc, code);
    if (!strstr(g_err, what))
        fail_msg("%s: message \"%s\" does not name \"%s\"", label, g_err, what);
}

/* layer_new refuses a missing weight, a wrong shape, a tensor of another dev
 * and a bad shape; block_layer / block_kv refuse too-small, wrong-type,
 * aliased and foreign activation buffers, a KV cache of other heads and
 * cells beyond the cache; block_kv computes the same K/V as block_layer. */
static void test_block_errors(void **state)
{
    (void)state;
    struct cs_plugin *pl = load_head("0", "0");
    const struct clspec_host *h = &pl->host;
    clspec_dev *d, *d2;
    clspec_gguf *g;
    assert_int_equal(h->dev_open(h, -1, &d, g_err, sizeof g_err), 0);
    assert_int_equal(h->dev_open(h, -1, &d2, g_err, sizeof g_err), 0); /* another queue handle */
    assert_int_equal(h->gguf_open(h, g_model, &g, g_err, sizeof g_err), 0);
    enum { E = 64, H = 4, HKV = 2, D = 16, F = 96, Q = H * D, KV = HKV * D, N = 3 };
    static const char *const mats[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    clspec_weight *w[7];
    char name[64];
    for (int i = 0; i < 7; i++) {
        snprintf(name, sizeof name, "blk.0.%s.weight", mats[i]);
        assert_int_equal(h->weight_upload(d, g, name, &w[i], g_err, sizeof g_err), 0);
    }
    clspec_buf *an, *fn, *an2;
    assert_int_equal(h->vec_upload(d, g, "blk.0.attn_norm.weight", &an, g_err, sizeof g_err), 0);
    assert_int_equal(h->vec_upload(d, g, "blk.0.ffn_norm.weight", &fn, g_err, sizeof g_err), 0);
    assert_int_equal(h->vec_upload(d2, g, "blk.0.attn_norm.weight", &an2, g_err, sizeof g_err), 0);
    const struct clspec_block_shape shape = {.size = sizeof shape, .n_embd = E, .n_head = H, .n_head_kv = HKV,
                                             .head_dim = D, .n_ff = F, .eps = 1e-5f, .n_rot = D, .neox = 0,
                                             .freq_base = 10000.0f, .freq_scale = 1.0f};
    const struct clspec_layer_desc good = {.size = sizeof good, .wq = w[0], .wk = w[1], .wv = w[2], .wo = w[3],
                                           .w_gate = w[4], .w_up = w[5], .w_down = w[6], .attn_norm = an,
                                           .ffn_norm = fn};
    clspec_layer *l = NULL;
    struct clspec_layer_desc bad = good;
    bad.w_down = NULL;
    expect_err(h->layer_new(d, &bad, &shape, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "w_down", "missing weight");
    assert_null(l);
    bad = good;
    bad.w_gate = w[6]; /* (E, F) where (F, E) is wanted */
    expect_err(h->layer_new(d, &bad, &shape, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "w_gate", "wrong shape");
    bad = good;
    bad.wk = w[0]; /* (Q, E) where (KV, E) is wanted */
    expect_err(h->layer_new(d, &bad, &shape, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "wk", "wrong shape");
    bad = good;
    bad.bk = fn; /* (E) where (KV) is wanted */
    expect_err(h->layer_new(d, &bad, &shape, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "bk", "wrong bias");
    bad = good;
    bad.attn_norm = an2;
    expect_err(h->layer_new(d, &bad, &shape, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "another device",
               "norm on another dev");
    struct clspec_block_shape bs = shape;
    bs.n_head_kv = 3;
    expect_err(h->layer_new(d, &good, &bs, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "n_head_kv", "bad shape");
    bs = shape;
    bs.size = 8;
    expect_err(h->layer_new(d, &good, &bs, &l, g_err, sizeof g_err), CLSPEC_E_INVAL, "size", "short shape");
    assert_null(l);
    assert_int_equal(h->layer_new(d, &good, &shape, &l, g_err, sizeof g_err), 0);
    assert_non_null(l);

    /* activations for N rows, and one row short of them */
    clspec_buf *x, *xb, *q, *att, *kc, *vc, *hb, *hb2, *pos, *seq, *cell, *small, *x2, *kc2;
    clspec_kv *kv, *kv_other;
    struct {
        clspec_buf **b;
        clspec_dev *d;
        uint32_t type;
        size_t n;
    } t[] = {{&x, d, CLSPEC_BUF_F32, N * E},   {&xb, d, CLSPEC_BUF_F32, N * E}, {&q, d, CLSPEC_BUF_F32, N * Q},
             {&att, d, CLSPEC_BUF_F32, N * Q}, {&kc, d, CLSPEC_BUF_F32, N * KV}, {&vc, d, CLSPEC_BUF_F32, N * KV},
             {&hb, d, CLSPEC_BUF_F32, N * F},  {&hb2, d, CLSPEC_BUF_F32, N * F}, {&pos, d, CLSPEC_BUF_I32, N},
             {&seq, d, CLSPEC_BUF_I32, N},     {&cell, d, CLSPEC_BUF_I32, N},    {&x2, d2, CLSPEC_BUF_F32, N * E},
             {&kc2, d, CLSPEC_BUF_F32, N * KV}, {&small, d, CLSPEC_BUF_F32, (N - 1) * F}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(h->buf_new(t[i].d, t[i].type, t[i].n, t[i].b, g_err, sizeof g_err), 0);
    assert_int_equal(h->kv_new(d, 1, HKV, D, 16, 1, CLSPEC_TYPE_F32, CLSPEC_TYPE_F32, &kv, g_err, sizeof g_err), 0);
    assert_int_equal(h->kv_new(d, 1, H, D, 16, 1, CLSPEC_TYPE_F32, CLSPEC_TYPE_F32, &kv_other, g_err, sizeof g_err),
                     0);
    const int32_t hpos[N] = {0, 1, 2}, hseq[N] = {0, 0, 0};
    assert_int_equal(h->kv_place(kv, N, hpos, hseq, cell, 0, NULL, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(pos, 0, N, hpos, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(seq, 0, N, hseq, g_err, sizeof g_err), 0);
    struct tu_rng r;
    tu_rng_seed(&r, 29);
    float hx[N * E], hk[N * KV], hk2[N * KV];
    for (int i = 0; i < N * E; i++)
        hx[i] = tu_rng_normal(&r);
    assert_int_equal(h->buf_write(x, 0, N * E, hx, g_err, sizeof g_err), 0);
    const struct clspec_block_act act = {.size = sizeof act, .x = x, .xb = xb, .q = q, .att = att, .kc = kc,
                                         .vc = vc, .hb = hb, .hb2 = hb2, .pos = pos, .seq = seq, .cell = cell};
    const struct clspec_block_opt opt = {.size = sizeof opt, .causal = 1};
    struct clspec_block_act ba = act;
    ba.hb = small;
    expect_err(h->block_layer(l, kv, 0, &ba, N, &opt, g_err, sizeof g_err), CLSPEC_E_RANGE, "hb", "too-small act");
    ba = act;
    ba.x = x2;
    expect_err(h->block_layer(l, kv, 0, &ba, N, &opt, g_err, sizeof g_err), CLSPEC_E_INVAL, "x: a buffer of another",
               "act on another dev");
    ba = act;
    ba.pos = small;
    expect_err(h->block_layer(l, kv, 0, &ba, N, &opt, g_err, sizeof g_err), CLSPEC_E_INVAL, "pos", "f32 as pos");
    ba = act;
    ba.hb2 = hb;
    expect_err(h->block_layer(l, kv, 0, &ba, N, &opt, g_err, sizeof g_err), CLSPEC_E_INVAL, "same buffer",
               "aliased act");
    ba = act;
    ba.seq = NULL;
    expect_err(h->block_layer(l, kv, 0, &ba, N, &opt, g_err, sizeof g_err), CLSPEC_E_INVAL, "seq", "NULL seq");
    expect_err(h->block_layer(l, kv_other, 0, &act, N, &opt, g_err, sizeof g_err), CLSPEC_E_INVAL, "kv",
               "kv of other heads");
    expect_err(h->block_layer(l, kv, 1, &act, N, &opt, g_err, sizeof g_err), CLSPEC_E_RANGE, "layer", "kv layer");
    struct clspec_block_opt bo = opt;
    bo.n_cells_used = 17;
    expect_err(h->block_layer(l, kv, 0, &act, N, &bo, g_err, sizeof g_err), CLSPEC_E_RANGE, "n_cells_used",
               "cells beyond the cache");
    bo = opt;
    bo.next_norm = an2;
    expect_err(h->block_layer(l, kv, 0, &act, N, &bo, g_err, sizeof g_err), CLSPEC_E_INVAL, "next_norm",
               "next_norm on another dev");
    expect_err(h->block_layer(l, kv, 0, &act, N + 1, &opt, g_err, sizeof g_err), CLSPEC_E_RANGE, "x",
               "more rows than the buffers");

    /* the layer runs; block_kv on its normed input gives the same K (after RoPE) */
    assert_int_equal(h->block_layer(l, kv, 0, &act, N, &opt, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(kc, 0, N * KV, hk, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_write(x, 0, N * E, hx, g_err, sizeof g_err), 0);
    assert_int_equal(h->rmsnorm(x, 0, an, xb, 0, N, E, 1e-5f, g_err, sizeof g_err), 0);
    const struct clspec_block_act kva = {.size = sizeof kva, .xb = xb, .kc = kc2, .vc = vc, .pos = pos,
                                         .cell = cell};
    assert_int_equal(h->block_kv(l, kv, 0, &kva, N, g_err, sizeof g_err), 0);
    assert_int_equal(h->buf_read(kc2, 0, N * KV, hk2, g_err, sizeof g_err), 0);
    assert_memory_equal(hk, hk2, sizeof hk);
    float nz = 0;
    for (int i = 0; i < N * KV; i++)
        nz += fabsf(hk[i]);
    assert_true(nz > 0);
    ba = kva;
    ba.kc = NULL;
    expect_err(h->block_kv(l, kv, 0, &ba, N, g_err, sizeof g_err), CLSPEC_E_INVAL, "kc", "block_kv without kc");

    h->layer_free(l); /* and the rest with the devs */
    expect_err(h->block_layer(NULL, kv, 0, &act, N, &opt, g_err, sizeof g_err), CLSPEC_E_INVAL, "layer", "NULL layer");
    cs_plugin_free(pl); /* d, d2, g and what is on them: freed by the host */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_matches_engine),
        cmocka_unit_test(test_head_drafts),
        cmocka_unit_test(test_buffers_and_kv),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_old_host),
        cmocka_unit_test(test_block_ops),
        cmocka_unit_test(test_block_errors),
    };
    return cmocka_run_group_tests_name("compute", tests, setup, teardown);
}
