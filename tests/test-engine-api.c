/* test-engine-api.c: the engine door (include/clspec/clspec.h, src/engine/api.c) on
 * stories260K: decoding through clspec_decode gives bitwise the logits and
 * hidden-state taps of the internal cs_forward for the same rows; the first
 * greedy tokens are the reference's; a full KV cache refuses only the
 * sequence that does not fit (per-sequence status; NULL status turns it
 * into CLSPEC_E_KV_FULL); seq_cp / seq_rm / seq_keep / kv_clear change the
 * cell counts and max positions as documented and a shared prefix decodes
 * like its original; prefix_match finds it; tokenize / detokenize / piece /
 * info; sampler save/restore (and save_into) replays the same samples and
 * refuses a foreign state; get_params, probs (sums to 1, one-hot when
 * greedy) and uniform (rewound by restore); bad arguments give messages, never a crash; kv_usage /
 * seq_n_free count cells (shared ones once); kept logits rows lie in one
 * array in row order; a door over a borrowed engine (cs_api_wrap) decodes
 * the same and leaves the engine alive when freed. */
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

#include "engine/api.h"
#include "clspec/clspec.h"
#include "engine/engine.h"
#include "model/forward.h"
#include "text/tokenizer.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"

static char g_err[CLSPEC_ERRLEN];

/* "Once upon a time" and its greedy continuation (reference/greedy-stories260K.json) */
static const int32_t k_prompt[] = {1, 403, 407, 261, 378};
static const int32_t k_greedy[] = {432, 383, 286, 261};

#define OK(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != CLSPEC_OK)                                                                      \
            fail_msg("%s: %d %s", #call, rc_, g_err);                                              \
    } while (0)

/* An engine on stories260K with n_ctx cells and n_seq sequences (vocab_only if asked). */
static clspec_engine *open_engine(uint32_t n_ctx, uint32_t n_seq, int vocab_only)
{
    char *path = tu_shared_path(MODEL);
    struct clspec_engine_params p;
    clspec_engine_default_params(&p, sizeof p);
    p.model_path = path;
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.vocab_only = vocab_only;
    clspec_engine *e = NULL;
    OK(clspec_engine_open(&p, &e, g_err, sizeof g_err));
    free(path);
    assert_non_null(e);
    return e;
}

static void positions(int32_t *pos, int n, int32_t from)
{
    for (int i = 0; i < n; i++)
        pos[i] = from + i;
}

/* clspec_decode (all rows' logits, taps at layers 0 and n_layer) against
 * cs_forward on an internal engine opened with the same parameters. */
static void test_decode_matches_forward(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(64, 1, 0);
    struct clspec_engine_info info = {.size = sizeof info};
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    char *path = tu_shared_path(MODEL);
    struct cs_engine_params ep = cs_engine_defaults();
    ep.model_path = path;
    ep.n_ctx = 64;
    struct cs_engine *ie = NULL;
    OK(cs_engine_open(&ep, &ie, g_err, sizeof g_err));
    const int n = 5, V = info.n_vocab, D = info.n_embd;
    int32_t pos[8], rows[8], layers[2] = {0, info.n_layer};
    positions(pos, n, 0);
    positions(rows, n, 0);
    uint8_t keep[8] = {1, 1, 1, 1, 1};
    OK(clspec_taps_set(e, layers, 2, g_err, sizeof g_err));
    struct clspec_batch b = {.size = sizeof b, .n_rows = n, .token = k_prompt, .pos = pos, .logits = keep};
    OK(clspec_decode(e, &b, NULL, g_err, sizeof g_err));
    float *ref = malloc((size_t)n * (size_t)V * sizeof *ref);
    float *hid = malloc((size_t)2 * (size_t)n * (size_t)D * sizeof *hid);
    struct cs_fwd_hidden h = {.n_layers = 2, .layers = layers, .out = hid};
    OK(cs_forward(ie->ctx, k_prompt, n, pos, NULL, rows, n, ref, &h, g_err, sizeof g_err));
    for (int r = 0; r < n; r++) {
        assert_non_null(clspec_logits(e, r));
        assert_memory_equal(clspec_logits(e, r), ref + (size_t)r * (size_t)V, (size_t)V * sizeof(float));
        for (int t = 0; t < 2; t++)
            assert_memory_equal(clspec_tap(e, t, r), hid + ((size_t)t * (size_t)n + (size_t)r) * (size_t)D,
                                (size_t)D * sizeof(float));
    }
    assert_null(clspec_tap(e, 2, 0));
    assert_null(clspec_logits(e, n));
    /* greedy steps one row at a time: the reference tokens, the same logits as cs_forward */
    OK(clspec_taps_set(e, NULL, 0, g_err, sizeof g_err)); /* from the next decode on */
    assert_non_null(clspec_tap(e, 1, n - 1));
    int32_t t = clspec_argmax(clspec_logits(e, n - 1), V);
    for (int s = 0; s < (int)(sizeof k_greedy / sizeof k_greedy[0]); s++) {
        assert_int_equal(t, k_greedy[s]);
        int32_t p = n + s;
        struct clspec_batch one = {.size = sizeof one, .n_rows = 1, .token = &t, .pos = &p};
        OK(clspec_decode(e, &one, NULL, g_err, sizeof g_err));
        OK(cs_forward(ie->ctx, &t, 1, &p, NULL, NULL, 1, ref, NULL, g_err, sizeof g_err));
        assert_memory_equal(clspec_logits(e, 0), ref, (size_t)V * sizeof(float));
        assert_null(clspec_tap(e, 0, 0));
        t = clspec_argmax(clspec_logits(e, 0), V);
    }
    free(ref);
    free(hid);
    free(path);
    cs_engine_free(ie);
    clspec_engine_free(e);
}

/* 16 cells, 2 sequences: sequence 0 holds 10; a batch of 1 more row of
 * sequence 0 and 8 of sequence 1 runs sequence 0 and refuses sequence 1. */
static void test_kv_full_one_sequence(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(16, 2, 0);
    int32_t tok[16], pos[16], seq[16];
    for (int i = 0; i < 16; i++)
        tok[i] = 300 + i;
    positions(pos, 10, 0);
    struct clspec_batch b = {.size = sizeof b, .n_rows = 10, .token = tok, .pos = pos};
    OK(clspec_decode(e, &b, NULL, g_err, sizeof g_err));
    pos[0] = 10;
    seq[0] = 0;
    for (int i = 1; i < 9; i++) {
        pos[i] = i - 1;
        seq[i] = 1;
    }
    uint8_t keep[9] = {1, 0, 0, 0, 0, 0, 0, 0, 1};
    struct clspec_batch two = {.size = sizeof two, .n_rows = 9, .token = tok, .pos = pos, .seq = seq, .logits = keep};
    int st[CLSPEC_MAX_SEQ];
    OK(clspec_decode(e, &two, st, g_err, sizeof g_err));
    assert_int_equal(st[0], CLSPEC_OK);
    assert_int_equal(st[1], CLSPEC_E_KV_FULL);
    assert_int_equal(st[2], CLSPEC_OK);
    assert_non_null(clspec_logits(e, 0));
    assert_null(clspec_logits(e, 8));
    uint32_t n0 = 0, n1 = 99;
    OK(clspec_seq_n_cells(e, 0, &n0, g_err, sizeof g_err));
    OK(clspec_seq_n_cells(e, 1, &n1, g_err, sizeof g_err));
    assert_int_equal(n0, 11);
    assert_int_equal(n1, 0);
    /* without a status array the refusal is the call's error, naming the sequence */
    struct clspec_batch only1 = {.size = sizeof only1, .n_rows = 8, .token = tok + 1, .pos = pos + 1, .seq = seq + 1};
    g_err[0] = '\0';
    assert_int_equal(clspec_decode(e, &only1, NULL, g_err, sizeof g_err), CLSPEC_E_KV_FULL);
    assert_non_null(strstr(g_err, "sequence 1"));
    /* room made by removing sequence 0's tail: sequence 1 fits */
    OK(clspec_seq_rm(e, 0, 4, -1, g_err, sizeof g_err));
    OK(clspec_decode(e, &only1, st, g_err, sizeof g_err));
    assert_int_equal(st[1], CLSPEC_OK);
    OK(clspec_seq_n_cells(e, 1, &n1, g_err, sizeof g_err));
    assert_int_equal(n1, 8);
    clspec_engine_free(e);
}

static uint32_t cells(clspec_engine *e, int32_t s)
{
    uint32_t n = 0;
    OK(clspec_seq_n_cells(e, s, &n, g_err, sizeof g_err));
    return n;
}

static int32_t pmax(clspec_engine *e, int32_t s)
{
    int32_t p = -2;
    OK(clspec_seq_pos_max(e, s, &p, g_err, sizeof g_err));
    return p;
}

static void test_seq_ops(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(64, 4, 0);
    struct clspec_engine_info info = {.size = sizeof info};
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    const int V = info.n_vocab;
    int32_t tok[8] = {1, 403, 407, 261, 378, 432, 383, 286}, pos[8];
    positions(pos, 4, 0);
    struct clspec_batch b = {.size = sizeof b, .n_rows = 4, .token = tok, .pos = pos};
    OK(clspec_decode(e, &b, NULL, g_err, sizeof g_err));
    assert_int_equal(cells(e, 0), 4);
    assert_int_equal(pmax(e, 0), 3);
    assert_int_equal(pmax(e, 1), -1);
    /* sequence 1 shares 0's prefix; its next row decodes exactly as 0's own next row */
    OK(clspec_seq_cp(e, 0, 1, 0, 4, g_err, sizeof g_err));
    assert_int_equal(cells(e, 1), 4);
    assert_int_equal(pmax(e, 1), 3);
    int32_t p4 = 4, s1 = 1;
    struct clspec_batch next0 = {.size = sizeof next0, .n_rows = 1, .token = tok + 4, .pos = &p4};
    OK(clspec_decode(e, &next0, NULL, g_err, sizeof g_err));
    float *l0 = malloc((size_t)V * sizeof *l0);
    memcpy(l0, clspec_logits(e, 0), (size_t)V * sizeof *l0);
    struct clspec_batch next1 = {.size = sizeof next1, .n_rows = 1, .token = tok + 4, .pos = &p4, .seq = &s1};
    OK(clspec_decode(e, &next1, NULL, g_err, sizeof g_err));
    assert_memory_equal(clspec_logits(e, 0), l0, (size_t)V * sizeof *l0);
    free(l0);
    assert_int_equal(cells(e, 0), 5);
    assert_int_equal(cells(e, 1), 5);
    /* prefix match: sequence 2 could reuse the first 5 tokens */
    int32_t k = -1, src = -2;
    OK(clspec_prefix_match(e, tok, 8, 2, &k, &src, g_err, sizeof g_err));
    assert_int_equal(k, 5);
    assert_true(src == 0 || src == 1);
    /* seq_rm of a tail, of a shared prefix from one sequence, keep, clear */
    OK(clspec_seq_rm(e, 0, 3, -1, g_err, sizeof g_err));
    assert_int_equal(cells(e, 0), 3);
    assert_int_equal(pmax(e, 0), 2);
    assert_int_equal(cells(e, 1), 5);
    OK(clspec_seq_cp(e, 1, 2, 0, -1, g_err, sizeof g_err));
    OK(clspec_seq_keep(e, 2, g_err, sizeof g_err));
    assert_int_equal(cells(e, 0), 0);
    assert_int_equal(cells(e, 1), 0);
    assert_int_equal(cells(e, 2), 5);
    assert_int_equal(pmax(e, 2), 4);
    OK(clspec_seq_rm(e, -1, 0, 2, g_err, sizeof g_err));
    assert_int_equal(cells(e, 2), 3);
    OK(clspec_kv_clear(e, g_err, sizeof g_err));
    assert_int_equal(cells(e, 2), 0);
    OK(clspec_prefix_match(e, tok, 8, 2, &k, &src, g_err, sizeof g_err));
    assert_int_equal(k, 0);
    assert_int_equal(src, -1);
    clspec_engine_free(e);
}

static void usage(const clspec_engine *e, uint32_t used, uint32_t free_cells)
{
    uint32_t u = 0, f = 0;
    OK(clspec_kv_usage(e, &u, &f, g_err, sizeof g_err));
    assert_int_equal(u, used);
    assert_int_equal(f, free_cells);
}

static void test_kv_usage_logits_layout(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(64, 2, 0);
    struct clspec_engine_info info = {.size = sizeof info};
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    const size_t V = (size_t)info.n_vocab;
    usage(e, 0, 64);
    uint32_t nf = 0;
    OK(clspec_seq_n_free(e, 1, &nf, g_err, sizeof g_err));
    assert_int_equal(nf, 64);
    int32_t tok[4] = {1, 403, 407, 261}, pos[4];
    positions(pos, 4, 0);
    uint8_t keep[4] = {1, 0, 1, 1};
    struct clspec_batch b = {.size = sizeof b, .n_rows = 4, .token = tok, .pos = pos, .logits = keep};
    OK(clspec_decode(e, &b, NULL, g_err, sizeof g_err));
    const float *L0 = clspec_logits(e, 0);
    assert_non_null(L0);
    assert_null(clspec_logits(e, 1));
    assert_ptr_equal(clspec_logits(e, 2), L0 + V);
    assert_ptr_equal(clspec_logits(e, 3), L0 + 2 * V);
    usage(e, 4, 60);
    /* shared cells count once; the other sequence could still take every free one */
    OK(clspec_seq_cp(e, 0, 1, 0, -1, g_err, sizeof g_err));
    usage(e, 4, 60);
    OK(clspec_seq_n_free(e, 1, &nf, g_err, sizeof g_err));
    assert_int_equal(nf, 60);
    OK(clspec_kv_usage(e, NULL, NULL, g_err, sizeof g_err));
    assert_int_equal(clspec_seq_n_free(e, 2, &nf, g_err, sizeof g_err), CLSPEC_E_RANGE);
    assert_int_equal(clspec_seq_n_free(e, 0, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_int_equal(clspec_kv_usage(NULL, NULL, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL);
    /* a door over the same engine, borrowed: same logits; freeing it keeps e working */
    float *l3 = malloc(V * sizeof *l3);
    memcpy(l3, clspec_logits(e, 3), V * sizeof *l3);
    clspec_engine *d = NULL;
    OK(cs_api_wrap(cs_api_engine(e), &d, g_err, sizeof g_err));
    assert_ptr_equal(cs_api_engine(d), cs_api_engine(e));
    usage(d, 4, 60);
    OK(clspec_kv_clear(d, g_err, sizeof g_err));
    OK(clspec_decode(d, &b, NULL, g_err, sizeof g_err));
    assert_memory_equal(clspec_logits(d, 3), l3, V * sizeof *l3);
    clspec_engine_free(d);
    usage(e, 4, 60);
    OK(clspec_decode(e, &(struct clspec_batch){.size = sizeof b, .n_rows = 1, .token = tok, .pos = (int32_t[]){4}},
                     NULL, g_err, sizeof g_err));
    usage(e, 5, 59);
    free(l3);
    clspec_engine_free(e);
    /* a partitioned cache: the info says so, and a sequence may take only its own part */
    assert_int_equal(info.kv_partitioned, 0);
    char *path = tu_shared_path(MODEL);
    struct clspec_engine_params pp;
    clspec_engine_default_params(&pp, sizeof pp);
    pp.model_path = path;
    pp.n_ctx = 64;
    pp.n_seq = 2;
    pp.kv_partitioned = 1;
    OK(clspec_engine_open(&pp, &e, g_err, sizeof g_err));
    free(path);
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    assert_int_equal(info.kv_partitioned, 1);
    OK(clspec_decode(e, &b, NULL, g_err, sizeof g_err));
    OK(clspec_seq_n_free(e, 0, &nf, g_err, sizeof g_err));
    assert_int_equal(nf, 28);
    OK(clspec_seq_n_free(e, 1, &nf, g_err, sizeof g_err));
    assert_int_equal(nf, 32);
    usage(e, 4, 60);
    clspec_engine_free(e);
    clspec_engine *v = open_engine(0, 1, 1);
    OK(clspec_engine_get_info(v, &info, g_err, sizeof g_err));
    assert_int_equal(info.kv_partitioned, 0);
    assert_int_equal(clspec_kv_usage(v, NULL, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_null(cs_api_engine(v));
    clspec_engine_free(v);
}

static void test_tokenizer_info(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(0, 1, 1);
    struct clspec_engine_info info = {.size = sizeof info};
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    assert_int_equal(info.n_vocab, 512);
    assert_string_equal(info.arch, "llama");
    assert_int_equal(info.bos, 1);
    assert_int_equal(info.n_devices, 0);
    assert_int_equal(info.n_ctx, 0);
    int32_t ids[16];
    size_t n = 0;
    const char *text = "Once upon a time";
    OK(clspec_tokenize(e, text, strlen(text), 1, 0, ids, 16, &n, g_err, sizeof g_err));
    assert_int_equal(n, 5);
    assert_memory_equal(ids, k_prompt, sizeof k_prompt);
    assert_int_equal(clspec_tokenize(e, text, strlen(text), 1, 0, ids, 2, &n, g_err, sizeof g_err),
                     CLSPEC_E_RANGE);
    assert_int_equal(n, 5);
    char buf[64];
    OK(clspec_detokenize(e, k_prompt, 5, 1, 0, buf, sizeof buf, &n, g_err, sizeof g_err));
    assert_string_equal(buf, text);
    OK(clspec_token_piece(e, 403, 0, buf, sizeof buf, &n, g_err, sizeof g_err));
    assert_string_equal(buf, " Once");
    assert_int_equal(clspec_token_is_eog(e, info.eos), 1);
    assert_int_equal(clspec_token_is_eog(e, 403), 0);
    assert_int_equal(clspec_token_is_eog(e, 100000), 0);
    /* vocab_only: no decoding, no sequences */
    int32_t p = 0;
    struct clspec_batch b = {.size = sizeof b, .n_rows = 1, .token = k_prompt, .pos = &p};
    g_err[0] = '\0';
    assert_int_equal(clspec_decode(e, &b, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_non_null(strstr(g_err, "vocab_only"));
    assert_int_equal(clspec_seq_rm(e, 0, 0, -1, g_err, sizeof g_err), CLSPEC_E_INVAL);
    clspec_engine_free(e);
}

/* The door's vocabulary and model facts (token types and texts, the chat
 * template, the info fields appended after kv_partitioned) agree with the
 * internals; a caller built before those fields does not get them. */
static void test_token_facts(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(64, 1, 0);
    const struct cs_engine *ie = cs_api_engine(e);
    struct clspec_engine_info info = {.size = sizeof info};
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    assert_int_equal(info.n_params, ie->model->n_params);
    assert_int_equal(info.model_bytes, ie->model->n_bytes);
    assert_string_equal(info.weight_type, "f32");
    assert_int_equal(info.kv_dim, 32);
    assert_int_equal(info.kv_bytes_per_token, 2 * (uint64_t)info.n_layer * info.kv_dim * 2); /* f16 K and V */
    assert_int_equal(info.strips_space, cs_tokenizer_strips_space(ie->tok));
    assert_int_equal(info.strips_space, 1); /* llama SentencePiece, add_space_prefix */
    struct clspec_engine_info old;
    memset(&old, 0x5a, sizeof old);
    old.size = (uint32_t)offsetof(struct clspec_engine_info, n_params);
    OK(clspec_engine_get_info(e, &old, g_err, sizeof g_err));
    assert_int_equal(old.kv_partitioned, info.kv_partitioned);
    assert_int_equal(old.n_params, 0x5a5a5a5a5a5a5a5aULL);
    assert_int_equal(old.strips_space, 0x5a5a5a5a);
    assert_int_equal(clspec_token_type(e, info.bos), CLSPEC_TOKEN_CONTROL);
    assert_int_equal(clspec_token_type(e, 403), CLSPEC_TOKEN_NORMAL);
    assert_int_equal(clspec_token_type(e, 100000), CLSPEC_E_RANGE);
    assert_int_equal(clspec_token_type(e, -1), CLSPEC_E_RANGE);
    assert_int_equal(clspec_token_type(NULL, 0), CLSPEC_E_INVAL);
    size_t len = 99;
    const char *t = clspec_token_text(e, info.eos, &len);
    assert_non_null(t);
    assert_int_equal(len, 4);
    assert_memory_equal(t, "</s>", 4);
    t = clspec_token_text(e, 403, NULL);
    assert_non_null(t);
    assert_memory_equal(t, "\xe2\x96\x81Once", 7);
    assert_null(clspec_token_text(e, info.n_vocab, &len));
    assert_int_equal(len, 0);
    assert_null(clspec_token_text(NULL, 0, NULL));
    /* stories260K has no tokenizer.chat_template */
    len = 99;
    assert_int_equal(info.has_chat_template, 0);
    assert_null(clspec_chat_template(e, &len));
    assert_int_equal(len, 0);
    assert_null(clspec_chat_template(NULL, NULL));
    clspec_engine_free(e);
}

static void sample_n(clspec_sampler *s, const float *logits, int n, int32_t *out)
{
    for (int i = 0; i < n; i++) {
        out[i] = clspec_sampler_sample(s, logits);
        assert_true(out[i] >= 0);
        assert_int_equal(clspec_sampler_accept(s, out[i]), CLSPEC_OK);
    }
}

static void test_sampler_save_restore(void **state)
{
    (void)state;
    enum { V = 512, N = 24 };
    float logits[V];
    struct tu_rng r;
    tu_rng_seed(&r, 7);
    for (int i = 0; i < V; i++)
        logits[i] = 2.0f * tu_rng_normal(&r);
    struct clspec_sampler_params p;
    clspec_sampler_default_params(&p, sizeof p);
    assert_int_equal(p.size, sizeof p);
    p.temp = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.3f;
    p.penalty_last_n = 8;
    p.seed = 11;
    clspec_sampler *s = NULL;
    OK(clspec_sampler_new(&p, V, &s, g_err, sizeof g_err));
    int32_t warm[4], a[N], b[N];
    sample_n(s, logits, 4, warm);
    clspec_sampler_state *st = NULL;
    OK(clspec_sampler_save(s, &st, g_err, sizeof g_err));
    sample_n(s, logits, N, a);
    OK(clspec_sampler_restore(s, st, g_err, sizeof g_err));
    sample_n(s, logits, N, b);
    assert_memory_equal(a, b, sizeof a);
    int differ = 0; /* the samples are random, not one repeated token */
    for (int i = 1; i < N; i++)
        differ += a[i] != a[0];
    assert_true(differ > 0);
    /* a state of another sampler is refused */
    clspec_sampler *o = NULL;
    p.temp = 0.5f;
    OK(clspec_sampler_new(&p, V, &o, g_err, sizeof g_err));
    g_err[0] = '\0';
    assert_int_equal(clspec_sampler_restore(o, st, g_err, sizeof g_err), CLSPEC_E_INVAL);
    assert_true(strlen(g_err) > 0);
    assert_int_equal(clspec_sampler_accept(s, V), CLSPEC_E_RANGE);
    assert_int_equal(clspec_sampler_accept(s, -1), CLSPEC_E_RANGE);
    assert_int_equal(clspec_sampler_sample(s, NULL), CLSPEC_E_INVAL);
    /* save_into: rewinds like save, allocates nothing, refuses another sampler's state */
    sample_n(s, logits, 3, warm);
    OK(clspec_sampler_save_into(s, st, g_err, sizeof g_err));
    sample_n(s, logits, N, a);
    OK(clspec_sampler_restore(s, st, g_err, sizeof g_err));
    sample_n(s, logits, N, b);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(clspec_sampler_save_into(o, st, g_err, sizeof g_err), CLSPEC_E_INVAL);
    /* get_params: what it was made with, only inside size */
    struct clspec_sampler_params q;
    memset(&q, 0x55, sizeof q);
    q.size = sizeof q;
    int32_t nv = 0;
    OK(clspec_sampler_get_params(o, &q, &nv, g_err, sizeof g_err));
    assert_int_equal(nv, V);
    assert_true(q.size == p.size && q.temp == p.temp && q.top_k == p.top_k && q.top_p == p.top_p &&
                q.min_p == p.min_p && q.repeat_penalty == p.repeat_penalty && q.freq_penalty == p.freq_penalty &&
                q.presence_penalty == p.presence_penalty && q.penalty_last_n == p.penalty_last_n &&
                q.seed == p.seed);
    memset(&q, 0x55, sizeof q);
    q.size = (uint32_t)offsetof(struct clspec_sampler_params, top_k);
    OK(clspec_sampler_get_params(o, &q, NULL, g_err, sizeof g_err));
    assert_true(q.temp == 0.5f);
    assert_int_equal(q.top_k, 0x55555555);
    assert_int_equal(clspec_sampler_get_params(NULL, &q, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL);
    /* probs: the distribution sampling draws from; uniform draws advance the RNG as sampling does */
    float *pr = malloc(V * sizeof *pr);
    OK(clspec_sampler_probs(s, logits, pr));
    double sum = 0.0;
    int32_t best = 0;
    for (int i = 0; i < V; i++) {
        assert_true(pr[i] >= 0.0f);
        sum += pr[i];
        best = pr[i] > pr[best] ? i : best;
    }
    assert_true(fabs(sum - 1.0) < 1e-4);
    assert_true(pr[best] < 1.0f); /* temp 1.5 over 512 tokens: not one-hot */
    p.temp = 0.0f;
    clspec_sampler *g = NULL;
    OK(clspec_sampler_new(&p, V, &g, g_err, sizeof g_err));
    OK(clspec_sampler_probs(g, logits, pr));
    int32_t gp = clspec_sampler_sample(g, logits);
    for (int i = 0; i < V; i++)
        assert_true(pr[i] == (i == gp ? 1.0f : 0.0f));
    assert_int_equal(clspec_sampler_probs(g, NULL, pr), CLSPEC_E_INVAL);
    OK(clspec_sampler_save_into(s, st, g_err, sizeof g_err));
    double u0 = clspec_sampler_uniform(s), u1 = clspec_sampler_uniform(s);
    assert_true(u0 >= 0.0 && u0 < 1.0 && u1 >= 0.0 && u1 < 1.0 && u0 != u1);
    OK(clspec_sampler_restore(s, st, g_err, sizeof g_err));
    assert_true(clspec_sampler_uniform(s) == u0);
    assert_true(clspec_sampler_uniform(NULL) < 0.0);
    free(pr);
    clspec_sampler_free(g);
    clspec_sampler_state_free(st);
    clspec_sampler_free(o);
    clspec_sampler_free(s);
}

/* Each bad call returns status want and a message containing what. */
#define BAD(call, want, what)                                                                      \
    do {                                                                                           \
        g_err[0] = '\0';                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (want) || !strstr(g_err, what))                                                 \
            fail_msg("%s: %d '%s' (want %d, '%s')", #call, rc_, g_err, (int)(want), what);         \
    } while (0)

static void test_bad_arguments(void **state)
{
    (void)state;
    struct clspec_engine_params p;
    clspec_engine *e = (clspec_engine *)&p; /* must be set to NULL on failure */
    BAD(clspec_engine_open(NULL, &e, g_err, sizeof g_err), CLSPEC_E_INVAL, "params is NULL");
    assert_null(e);
    memset(&p, 0, sizeof p);
    BAD(clspec_engine_open(&p, &e, g_err, sizeof g_err), CLSPEC_E_INVAL, "clspec_engine_default_params");
    clspec_engine_default_params(&p, sizeof p);
    BAD(clspec_engine_open(&p, &e, g_err, sizeof g_err), CLSPEC_E_INVAL, "no model path");
    char *path = tu_shared_path(MODEL);
    p.model_path = path;
    p.type_k = 5;
    BAD(clspec_engine_open(&p, &e, g_err, sizeof g_err), CLSPEC_E_INVAL, "KV types");
    p.type_k = CLSPEC_KV_F16;
    p.n_seq = 65;
    BAD(clspec_engine_open(&p, &e, g_err, sizeof g_err), CLSPEC_E_INVAL, "n_seq 65");
    p.n_seq = 1;
    p.model_path = "/nonexistent/model.gguf";
    BAD(clspec_engine_open(&p, &e, g_err, sizeof g_err), CLSPEC_E_NOTFOUND, "/nonexistent/model.gguf");
    assert_null(e);
    free(path);
    BAD(clspec_engine_get_info(NULL, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "engine is NULL");

    e = open_engine(32, 2, 0);
    struct clspec_engine_info bad_info = {.size = 0};
    BAD(clspec_engine_get_info(e, &bad_info, g_err, sizeof g_err), CLSPEC_E_INVAL, "size");
    int32_t tok[2] = {1, 9999}, pos[2] = {0, 1}, seq[2] = {0, 5};
    BAD(clspec_decode(e, NULL, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "batch is NULL");
    struct clspec_batch b = {.size = 4, .n_rows = 2, .token = tok, .pos = pos};
    BAD(clspec_decode(e, &b, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "batch size 4");
    b.size = sizeof b;
    b.n_rows = 0;
    BAD(clspec_decode(e, &b, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "0 rows");
    b.n_rows = 2;
    b.pos = NULL;
    BAD(clspec_decode(e, &b, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "NULL");
    b.pos = pos;
    BAD(clspec_decode(e, &b, NULL, g_err, sizeof g_err), CLSPEC_E_RANGE, "token 9999");
    assert_null(clspec_logits(e, 0)); /* a failed decode leaves nothing readable */
    tok[1] = 2;
    b.seq = seq;
    BAD(clspec_decode(e, &b, NULL, g_err, sizeof g_err), CLSPEC_E_RANGE, "sequence id 5");
    BAD(clspec_seq_rm(e, 2, 0, -1, g_err, sizeof g_err), CLSPEC_E_RANGE, "sequence 2 outside 0..1");
    BAD(clspec_seq_cp(e, 0, -1, 0, -1, g_err, sizeof g_err), CLSPEC_E_RANGE, "sequence -1");
    BAD(clspec_seq_keep(e, 64, g_err, sizeof g_err), CLSPEC_E_RANGE, "sequence 64");
    BAD(clspec_seq_n_cells(e, 0, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "output pointer is NULL");
    int32_t layer = 99;
    BAD(clspec_taps_set(e, &layer, 1, g_err, sizeof g_err), CLSPEC_E_RANGE, "layer 99");
    BAD(clspec_taps_set(e, NULL, 2, g_err, sizeof g_err), CLSPEC_E_INVAL, "taps");
    BAD(clspec_tokenize(e, NULL, 3, 1, 0, tok, 2, NULL, g_err, sizeof g_err), CLSPEC_E_INVAL, "NULL");
    assert_null(clspec_logits(NULL, 0));
    assert_null(clspec_tap(e, 0, 0));
    assert_int_equal(clspec_argmax(NULL, 3), -1);
    clspec_sampler *s = NULL;
    BAD(clspec_sampler_new(NULL, 512, &s, g_err, sizeof g_err), CLSPEC_E_INVAL, "params NULL");
    struct clspec_sampler_params sp;
    clspec_sampler_default_params(&sp, sizeof sp);
    sp.top_p = 0.0f;
    BAD(clspec_sampler_new(&sp, 512, &s, g_err, sizeof g_err), CLSPEC_E_INVAL, "top_p");
    assert_null(s);
    assert_string_equal(clspec_kv_type_name(CLSPEC_KV_Q8_0), "q8_0");
    assert_null(clspec_kv_type_name(3));
    assert_int_equal(clspec_kv_type_from_name("bf16"), CLSPEC_KV_BF16);
    assert_int_equal(clspec_kv_type_from_name("q4_K"), CLSPEC_E_INVAL);
    clspec_engine_free(e);
    clspec_engine_free(NULL);
    clspec_sampler_free(NULL);
    clspec_sampler_state_free(NULL);
}

/* Greedy rows (clspec_batch.greedy): sequence 0 verifies the draft
 * [g1, X, g3] after g0 on the device (X != g2: one accepted, then g2), next
 * to a full-logits row of sequence 1; every greedy row's verdict equals the
 * argmaxes of the same batch decoded with all logits, the full row's logits
 * are the same bytes, greedy rows give no logits; one host sync for it all. */
static void test_greedy_rows(void **state)
{
    (void)state;
    clspec_engine *e = open_engine(64, 2, 0);
    struct clspec_engine_info info = {.size = sizeof info};
    OK(clspec_engine_get_info(e, &info, g_err, sizeof g_err));
    const int V = info.n_vocab;
    int32_t tok[10], pos[10], seq[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    for (int i = 0; i < 5; i++) {
        tok[i] = tok[5 + i] = k_prompt[i];
        pos[i] = pos[5 + i] = i;
    }
    struct clspec_batch pb = {.size = sizeof pb, .n_rows = 10, .token = tok, .pos = pos, .seq = seq};
    OK(clspec_decode(e, &pb, NULL, g_err, sizeof g_err));
    const int32_t X = k_greedy[2] == 300 ? 301 : 300;
    int32_t vt[5] = {k_greedy[0], k_greedy[1], X, k_greedy[3], k_greedy[0]}, vp[5] = {5, 6, 7, 8, 5};
    int32_t vs[5] = {0, 0, 0, 0, 1};
    uint8_t keep[5] = {1, 1, 1, 1, 1}, greedy[5] = {1, 1, 1, 1, 0};
    /* all logits first: the reference argmaxes and sequence 1's row */
    struct clspec_batch full = {.size = sizeof full, .n_rows = 5, .token = vt, .pos = vp, .seq = vs, .logits = keep};
    OK(clspec_decode(e, &full, NULL, g_err, sizeof g_err));
    int32_t am[4];
    for (int i = 0; i < 4; i++)
        am[i] = clspec_argmax(clspec_logits(e, i), V);
    assert_int_equal(am[0], k_greedy[1]);
    assert_int_equal(am[1], k_greedy[2]);
    float *row1 = malloc((size_t)V * sizeof *row1);
    assert_non_null(row1);
    memcpy(row1, clspec_logits(e, 4), (size_t)V * sizeof *row1);
    OK(clspec_seq_rm(e, -1, 5, -1, g_err, sizeof g_err));
    struct clspec_batch gb = full;
    gb.greedy = greedy;
    const uint64_t s0 = cs_cl_sync_count();
    OK(clspec_decode(e, &gb, NULL, g_err, sizeof g_err));
    assert_int_equal(cs_cl_sync_count() - s0, 1); /* logits row and verdicts: one finish */
    int32_t nm = -1, nx = -1;
    OK(clspec_greedy(e, 0, &nm, &nx));
    assert_int_equal(nm, 1);
    assert_int_equal(nx, k_greedy[2]);
    for (int i = 1; i < 4; i++) { /* from each row on: matches against the reference argmaxes */
        int want = 0;
        while (i + want < 3 && am[i + want] == vt[i + want + 1])
            want++;
        OK(clspec_greedy(e, i, &nm, &nx));
        assert_int_equal(nm, want);
        assert_int_equal(nx, am[i + want]);
        assert_null(clspec_logits(e, i));
    }
    assert_int_equal(clspec_greedy(e, 4, &nm, &nx), CLSPEC_E_INVAL); /* a full row */
    assert_int_equal(clspec_greedy(e, 5, &nm, &nx), CLSPEC_E_INVAL);
    assert_memory_equal(clspec_logits(e, 4), row1, (size_t)V * sizeof *row1);
    free(row1);
    clspec_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_forward), cmocka_unit_test(test_kv_full_one_sequence),
        cmocka_unit_test(test_seq_ops),                cmocka_unit_test(test_tokenizer_info),
        cmocka_unit_test(test_sampler_save_restore),   cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_kv_usage_logits_layout), cmocka_unit_test(test_token_facts),
        cmocka_unit_test(test_greedy_rows),
    };
    return cmocka_run_group_tests_name("engine-api", tests, NULL, NULL);
}
