/* test-model.c: hyper-parameters and tensor lookup of the shared models, and
 * the errors for missing keys / wrong shapes on GGUFs built in memory. */
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

#include "clspec/clspec.h"
#include "model/model.h"
#include "gguf/quant.h"
#include "ref/forward_ref.h"
#include "testutil.h"

/* ---- a tiny GGUF v3 writer (the bytes: testutil.h tu_buf) ---- */

#define MAX_T 32
struct spec {
    const char *arch;
    uint32_t n_embd, n_head, n_head_kv, n_ff, n_layer, n_vocab, nextn;
    float scale_factor; /* 0: no rope scaling keys */
    const char *skip_key;    /* a key not to write */
    const char *skip_tensor; /* a tensor not to write */
    const char *bad_tensor;  /* a tensor written with ne0 + 1 */
    int with_output;
};

struct tinfo {
    char name[64];
    uint64_t ne0, ne1;
};

static int add_t(struct tinfo *t, int n, const struct spec *s, const char *name, uint64_t ne0, uint64_t ne1)
{
    if (s->skip_tensor && !strcmp(s->skip_tensor, name))
        return n;
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].ne0 = ne0 + (s->bad_tensor && !strcmp(s->bad_tensor, name));
    t[n].ne1 = ne1;
    return n + 1;
}

static struct tu_buf build(const struct spec *s)
{
    struct tinfo t[MAX_T * 4];
    int nt = 0;
    uint32_t E = s->n_embd, D = s->n_embd / s->n_head, Q = s->n_head * D, KV = s->n_head_kv * D;
    nt = add_t(t, nt, s, "token_embd.weight", E, s->n_vocab);
    nt = add_t(t, nt, s, "output_norm.weight", E, 1);
    if (s->with_output)
        nt = add_t(t, nt, s, "output.weight", E, s->n_vocab);
    for (uint32_t l = 0; l < s->n_layer; l++) {
        char n[64];
#define T(suffix, a, b)                                  \
    snprintf(n, sizeof n, "blk.%u." suffix, l);          \
    nt = add_t(t, nt, s, n, a, b)
        T("attn_norm.weight", E, 1);
        T("attn_q.weight", E, Q);
        T("attn_k.weight", E, KV);
        T("attn_v.weight", E, KV);
        T("attn_output.weight", Q, E);
        if (!strcmp(s->arch, "qwen2")) {
            T("attn_q.bias", Q, 1);
            T("attn_k.bias", KV, 1);
            T("attn_v.bias", KV, 1);
        }
        if (!strcmp(s->arch, "qwen3")) {
            T("attn_q_norm.weight", D, 1);
            T("attn_k_norm.weight", D, 1);
        }
        T("ffn_norm.weight", E, 1);
        T("ffn_gate.weight", E, s->n_ff);
        T("ffn_up.weight", E, s->n_ff);
        T("ffn_down.weight", s->n_ff, E);
#undef T
    }
    struct {
        char key[96];
        int is_f32;
        uint32_t u;
        float f;
    } kv[16];
    int nkv = 0;
#define KU(k, v)                                                               \
    do {                                                                       \
        snprintf(kv[nkv].key, sizeof kv[nkv].key, "%s." k, s->arch);           \
        kv[nkv].is_f32 = 0, kv[nkv].u = (v);                                   \
        if (!s->skip_key || strcmp(s->skip_key, kv[nkv].key)) nkv++;           \
    } while (0)
#define KF(k, v)                                                               \
    do {                                                                       \
        snprintf(kv[nkv].key, sizeof kv[nkv].key, "%s." k, s->arch);           \
        kv[nkv].is_f32 = 1, kv[nkv].f = (v);                                   \
        if (!s->skip_key || strcmp(s->skip_key, kv[nkv].key)) nkv++;           \
    } while (0)
    KU("block_count", s->n_layer + s->nextn);
    if (s->nextn)
        KU("nextn_predict_layers", s->nextn);
    KU("embedding_length", E);
    KU("feed_forward_length", s->n_ff);
    KU("attention.head_count", s->n_head);
    KU("attention.head_count_kv", s->n_head_kv);
    KU("context_length", 128);
    KF("attention.layer_norm_rms_epsilon", 1e-6f);
    KF("rope.freq_base", 500000.0f);
    if (s->scale_factor != 0.0f)
        KF("rope.scaling.factor", s->scale_factor);
#undef KU
#undef KF
    int with_type = s->scale_factor != 0.0f;

    struct tu_buf b = {0};
    tu_buf_put(&b, "GGUF", 4);
    tu_buf_u32(&b, 3);
    tu_buf_u64(&b, (uint64_t)nt);
    tu_buf_u64(&b, (uint64_t)nkv + 1 + with_type);
    tu_buf_str(&b, "general.architecture");
    tu_buf_u32(&b, 8);
    tu_buf_str(&b, s->arch);
    if (with_type) {
        char k[96];
        snprintf(k, sizeof k, "%s.rope.scaling.type", s->arch);
        tu_buf_str(&b, k);
        tu_buf_u32(&b, 8);
        tu_buf_str(&b, "linear");
    }
    for (int i = 0; i < nkv; i++) {
        tu_buf_str(&b, kv[i].key);
        tu_buf_u32(&b, kv[i].is_f32 ? 6 : 4);
        if (kv[i].is_f32)
            tu_buf_put(&b, &kv[i].f, 4);
        else
            tu_buf_u32(&b, kv[i].u);
    }
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        tu_buf_str(&b, t[i].name);
        int nd = t[i].ne1 == 1 ? 1 : 2;
        tu_buf_u32(&b, (uint32_t)nd);
        tu_buf_u64(&b, t[i].ne0);
        if (nd == 2)
            tu_buf_u64(&b, t[i].ne1);
        tu_buf_u32(&b, 0); /* F32 */
        tu_buf_u64(&b, off);
        off += (t[i].ne0 * t[i].ne1 * 4 + 31) / 32 * 32;
    }
    static const uint8_t zero[32];
    tu_buf_put(&b, zero, (32 - b.n % 32) % 32);
    struct tu_rng r;
    tu_rng_seed(&r, 5);
    for (uint64_t i = 0; i < off / 4; i++) {
        float v = 0.1f * tu_rng_normal(&r);
        tu_buf_put(&b, &v, 4);
    }
    return b;
}

static struct spec base_spec(const char *arch)
{
    struct spec s = {.arch = arch, .n_embd = 16, .n_head = 4, .n_head_kv = 2, .n_ff = 32, .n_layer = 2,
                     .n_vocab = 10};
    return s;
}

/* Builds spec into *mem (caller frees after cs_model_free) and loads it. */
static int load_spec(const struct spec *s, struct cs_model **m, uint8_t **mem, char *err, size_t errlen)
{
    struct tu_buf b = build(s);
    *mem = b.p;
    *m = NULL;
    struct cs_gguf *g = NULL;
    int rc = cs_gguf_open_mem(b.p, b.n, "mem.gguf", &g, err, errlen);
    if (rc != 0) {
        print_error("unexpected GGUF error: %s\n", err);
        return rc;
    }
    return cs_model_from_gguf(g, m, err, errlen);
}

static void expect_error(const struct spec *s, int status, const char *needle1, const char *needle2)
{
    char err[512] = "";
    struct cs_model *m = NULL;
    uint8_t *mem = NULL;
    int rc = load_spec(s, &m, &mem, err, sizeof err);
    if (rc != status || !strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        print_error("got %d '%s', wanted %d with '%s' '%s'\n", rc, err, status, needle1, needle2 ? needle2 : "");
    assert_int_equal(rc, status);
    assert_non_null(strstr(err, needle1));
    if (needle2)
        assert_non_null(strstr(err, needle2));
    assert_null(m);
    free(mem);
}

static void test_synthetic_llama(void **state)
{
    (void)state;
    char err[512];
    struct cs_model *m = NULL;
    uint8_t *mem = NULL;
    struct spec s = base_spec("llama");
    assert_int_equal(load_spec(&s, &m, &mem, err, sizeof err), 0);
    const struct cs_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, CS_ARCH_LLAMA);
    assert_int_equal(hp->n_embd, 16);
    assert_int_equal(hp->n_layer, 2);
    assert_int_equal(hp->n_head, 4);
    assert_int_equal(hp->n_head_kv, 2);
    assert_int_equal(hp->head_dim, 4);
    assert_int_equal(hp->n_rot, 4);
    assert_int_equal(hp->n_ff, 32);
    assert_int_equal(hp->n_vocab, 10); /* from token_embd: no vocab_size, no tokenizer */
    assert_int_equal(hp->n_ctx_train, 128);
    assert_float_equal(hp->rope_freq_base, 500000.0f, 0.0);
    assert_float_equal(hp->rope_freq_scale, 1.0f, 0.0);
    assert_float_equal(hp->rms_eps, 1e-6f, 1e-12);
    assert_int_equal(hp->rope_style, CS_ROPE_NORMAL);
    assert_true(hp->tied_output);
    assert_ptr_equal(m->output, m->tok_embd);
    assert_null(m->layers[1].bq);
    assert_null(m->layers[1].q_norm);
    assert_non_null(m->layers[1].w_down);
    /* params: embd 160 + norm 16 + 2 * (16 + 256 + 128 + 128 + 256 + 16 + 3 * 512) */
    assert_int_equal(m->n_params, 160 + 16 + 2 * (16 + 256 + 128 + 128 + 256 + 16 + 3 * 512));
    cs_model_free(m);
    free(mem);

    s.with_output = 1;
    s.scale_factor = 4.0f;
    s.nextn = 1;
    assert_int_equal(load_spec(&s, &m, &mem, err, sizeof err), 0);
    assert_false(m->hp.tied_output);
    assert_ptr_not_equal(m->output, m->tok_embd);
    assert_float_equal(m->hp.rope_freq_scale, 0.25f, 0.0);
    assert_int_equal(m->hp.n_layer, 2);
    assert_int_equal(m->hp.n_layer_total, 3);
    cs_model_free(m);
    free(mem);
}

static void test_synthetic_qwen(void **state)
{
    (void)state;
    char err[512];
    struct cs_model *m = NULL;
    uint8_t *mem = NULL;
    struct spec s = base_spec("qwen2");
    assert_int_equal(load_spec(&s, &m, &mem, err, sizeof err), 0);
    assert_int_equal(m->hp.rope_style, CS_ROPE_NEOX);
    assert_non_null(m->layers[0].bq);
    assert_non_null(m->layers[1].bv);
    cs_model_free(m);
    free(mem);
    s = base_spec("qwen3");
    assert_int_equal(load_spec(&s, &m, &mem, err, sizeof err), 0);
    assert_int_equal(m->hp.arch, CS_ARCH_QWEN3);
    assert_non_null(m->layers[1].k_norm);
    cs_model_free(m);
    free(mem);
}

static void test_errors(void **state)
{
    (void)state;
    struct spec s = base_spec("llama");
    s.skip_key = "llama.embedding_length";
    expect_error(&s, CLSPEC_E_FORMAT, "missing key llama.embedding_length", NULL);
    s = base_spec("llama");
    s.skip_key = "llama.attention.layer_norm_rms_epsilon";
    expect_error(&s, CLSPEC_E_FORMAT, "llama.attention.layer_norm_rms_epsilon", NULL);
    s = base_spec("llama");
    s.n_head_kv = 3;
    s.n_head = 4;
    expect_error(&s, CLSPEC_E_FORMAT, "llama.attention.head_count_kv", "divide");
    s = base_spec("llama");
    s.bad_tensor = "blk.1.attn_k.weight";
    expect_error(&s, CLSPEC_E_FORMAT, "tensor blk.1.attn_k.weight", "expected [16, 8]");
    s = base_spec("llama");
    s.bad_tensor = "blk.0.ffn_norm.weight";
    expect_error(&s, CLSPEC_E_FORMAT, "tensor blk.0.ffn_norm.weight", "expected [16]");
    s = base_spec("llama");
    s.skip_tensor = "blk.1.ffn_down.weight";
    expect_error(&s, CLSPEC_E_FORMAT, "tensor blk.1.ffn_down.weight is missing", NULL);
    s = base_spec("qwen2");
    s.skip_tensor = "blk.0.attn_v.bias";
    expect_error(&s, CLSPEC_E_FORMAT, "blk.0.attn_v.bias", NULL);
    s = base_spec("qwen3");
    s.skip_tensor = "blk.1.attn_q_norm.weight";
    expect_error(&s, CLSPEC_E_FORMAT, "blk.1.attn_q_norm.weight", NULL);
    s = base_spec("gpt2");
    expect_error(&s, CLSPEC_E_UNSUPPORTED, "gpt2", NULL);
}

static struct cs_model *load_shared(const char *rel)
{
    char err[512];
    char *p = tu_shared_path(rel);
    struct cs_model *m = NULL;
    int rc = cs_model_load(p, &m, err, sizeof err);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(p);
    return m;
}

static void test_shared_models(void **state)
{
    (void)state;
    struct cs_model *m = load_shared("models/stories260K.gguf");
    const struct cs_hparams *hp = &m->hp;
    assert_int_equal(hp->n_layer, 5);
    assert_int_equal(hp->n_embd, 64);
    assert_int_equal(hp->n_ff, 172);
    assert_int_equal(hp->n_head, 8);
    assert_int_equal(hp->n_head_kv, 4);
    assert_int_equal(hp->head_dim, 8);
    assert_int_equal(hp->n_rot, 8);
    assert_int_equal(hp->n_vocab, 512);
    assert_float_equal(hp->rope_freq_base, 10000.0f, 0.0);
    assert_false(hp->tied_output); /* output.weight stored (equal to token_embd) */
    cs_model_free(m);

    m = load_shared("models/TinyStories-656K-Q8_0.gguf");
    assert_true(m->hp.tied_output);
    assert_int_equal(m->hp.n_vocab, 2048);
    assert_int_equal(m->hp.n_layer, 2);
    assert_int_equal(m->tok_embd->type, CS_TYPE_Q8_0);
    assert_float_equal(m->hp.rms_eps, 1e-6f, 1e-12);
    cs_model_free(m);

    m = load_shared("models/derived/stories260K-mtp.gguf");
    assert_int_equal(m->hp.n_layer, 5);
    assert_int_equal(m->hp.n_layer_total, 6);
    cs_model_free(m);

    m = load_shared("models/llama-2-tiny-random.gguf");
    assert_int_equal(m->hp.n_vocab, 32000);
    assert_int_equal(m->hp.n_rot, 4);
    assert_false(m->hp.tied_output);
    cs_model_free(m);
}

static void test_rope_ref(void **state)
{
    (void)state;
    float a[16], b[16], x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)(i + 1) * 0.25f;
    for (int style = 0; style < 2; style++) {
        memcpy(a, x, sizeof a);
        cs_fwdref_rope(a, 2, 8, 8, 0, 10000.0f, 1.0f, (enum cs_rope_style)style);
        assert_memory_equal(a, x, sizeof a); /* position 0 is the identity */
        memcpy(a, x, sizeof a);
        cs_fwdref_rope(a, 2, 8, 6, 7, 10000.0f, 1.0f, (enum cs_rope_style)style);
        /* dims >= n_rot untouched, rotated pairs keep their norm */
        assert_float_equal(a[6], x[6], 0.0);
        assert_float_equal(a[15], x[15], 0.0);
        int p0 = style ? 0 : 0, p1 = style ? 3 : 1;
        assert_float_equal(a[p0] * a[p0] + a[p1] * a[p1], x[p0] * x[p0] + x[p1] * x[p1], 1e-4);
        /* first pair rotates by exactly pos radians */
        assert_float_equal(a[p0], x[p0] * cosf(7.0f) - x[p1] * sinf(7.0f), 1e-5);
    }
    /* linear scaling: pos 8 with scale 0.5 == pos 4 */
    memcpy(a, x, sizeof a);
    memcpy(b, x, sizeof b);
    cs_fwdref_rope(a, 2, 8, 8, 8, 10000.0f, 0.5f, CS_ROPE_NEOX);
    cs_fwdref_rope(b, 2, 8, 8, 4, 10000.0f, 1.0f, CS_ROPE_NEOX);
    for (int i = 0; i < 16; i++)
        assert_float_equal(a[i], b[i], 1e-5);
}

/* The reference forward on a model built in memory runs, is deterministic
 * and gives finite logits; qwen2/qwen3 paths too. */
static void test_ref_forward_synthetic(void **state)
{
    (void)state;
    const char *arches[] = {"llama", "qwen2", "qwen3"};
    for (size_t a = 0; a < 3; a++) {
        char err[512];
        struct cs_model *m = NULL;
        uint8_t *mem = NULL;
        struct spec s = base_spec(arches[a]);
        assert_int_equal(load_spec(&s, &m, &mem, err, sizeof err), 0);
        struct cs_ref *r1 = NULL, *r2 = NULL;
        assert_int_equal(cs_ref_load(m, 8, &r1, err, sizeof err), 0);
        assert_int_equal(cs_ref_load(m, 8, &r2, err, sizeof err), 0);
        float l1[10], l2[10], hid[3 * 16];
        for (int t = 0; t < 5; t++) {
            assert_int_equal(cs_ref_forward(r1, t + 2, (uint32_t)t, l1, hid, err, sizeof err), 0);
            assert_int_equal(cs_ref_forward(r2, t + 2, (uint32_t)t, l2, NULL, err, sizeof err), 0);
            assert_memory_equal(l1, l2, sizeof l1);
            for (int i = 0; i < 10; i++)
                assert_true(isfinite(l1[i]));
        }
        /* hidden row 0 is the embedding of the last token */
        assert_memory_equal(hid, r1->tok_embd + 6 * 16, 16 * sizeof(float));
        assert_int_equal(cs_ref_forward(r1, 10, 5, l1, NULL, err, sizeof err), CLSPEC_E_RANGE);
        assert_int_equal(cs_ref_forward(r1, 1, 8, l1, NULL, err, sizeof err), CLSPEC_E_CONTEXT);
        cs_ref_free(r1);
        cs_ref_free(r2);
        cs_model_free(m);
        free(mem);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthetic_llama), cmocka_unit_test(test_synthetic_qwen),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_shared_models),
        cmocka_unit_test(test_rope_ref),        cmocka_unit_test(test_ref_forward_synthetic),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
