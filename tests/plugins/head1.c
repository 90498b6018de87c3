/* head1.c: the worked example of the device compute service (ABI 1.4,
 * docs/plugins.md "Device compute service"): a speculator that runs a
 * one-layer llama block head entirely on the device through the host table:
 * embedding (get_rows) -> the engine's block (block_layer: RMSNorm, Q/K/V,
 * RoPE, KV store, attention, O, residual, RMSNorm, SwiGLU FFN, residual,
 * fused with the final norm) -> output (matmul) -> argmax, on layer 0 of a GGUF ([speculator] model = PATH) and drafts
 * greedily with it. Keys: model (required), borrow = 1 (token_embd, output
 * and output_norm are the target's: host->target_weight / target_vec),
 * n_ctx (cells of the head's KV cache, default 512), keep_handles = 1 (fini
 * leaves its handles to the host, which frees them after fini). Builds
 * against the installed header only. The plugin owns its state; every
 * device object belongs to its clspec_dev.
 * It also exports head1_decode, so tests/test-compute.c can compare the
 * head's logits with the engine's. */
#include <clspec/speculator.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP 64 /* rows per decode */

struct head1 {
    const struct clspec_host *h;
    clspec_dev *d;                 /* the target's output device */
    clspec_gguf *g;
    uint32_t E, H, HKV, D, F, V;   /* n_embd, heads, kv heads, head_dim, n_ff, n_vocab */
    uint32_t n_rot;
    int32_t neox;                  /* qwen*: 1, llama: 0 */
    float eps, theta;              /* rms epsilon, rope.freq_base */
    int keep_handles;
    clspec_weight *embd, *wq, *wk, *wv, *wo, *wg, *wu, *wd, *out;
    clspec_buf *attn_norm, *ffn_norm, *out_norm; /* f32 (E) */
    clspec_layer *layer;           /* layer 0: the weights above with the shape, for block_layer */
    clspec_kv *kv;                 /* 1 layer, one sequence per slot */
    /* activations, CAP rows each */
    clspec_buf *x, *xb, *q, *k, *v, *att; /* (E) (max(E, HD)) (HD) (HKV D) (HKV D) (HD) */
    clspec_buf *hb, *hb2, *logits;        /* (F) (F) (V) */
    clspec_buf *tok, *pos, *seq, *cell, *amax;           /* int32 */
    int32_t n_slots;
    int32_t *n_kv;                 /* (n_slots) positions 0..n_kv-1 of the slot's sequence hold its history */
    int32_t *base, *fed;           /* (n_slots) the last draft: n_hist, drafts fed back into the KV */
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int key_u32(struct head1 *s, const char *arch, const char *key, uint32_t dflt, uint32_t *out)
{
    char k[128];
    int64_t v;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int32_t n = s->h->gguf_ints(s->g, k, &v, 1);
    *out = n == 1 ? (uint32_t)v : dflt;
    return n == 1 || dflt ? 0 : -1;
}

static int load_hparams(struct head1 *s, char *err, size_t errlen)
{
    const struct clspec_host *h = s->h;
    char arch[32], k[128];
    if (h->gguf_str(s->g, "general.architecture", arch, sizeof arch) < 0)
        return fail(err, errlen, "head1: no general.architecture");
    if (key_u32(s, arch, "embedding_length", 0, &s->E) < 0 || key_u32(s, arch, "attention.head_count", 0, &s->H) < 0 ||
        key_u32(s, arch, "feed_forward_length", 0, &s->F) < 0)
        return fail(err, errlen, "head1: %s.embedding_length, attention.head_count and feed_forward_length needed",
                    arch);
    key_u32(s, arch, "attention.head_count_kv", s->H, &s->HKV);
    key_u32(s, arch, "attention.key_length", s->E / s->H, &s->D);
    key_u32(s, arch, "rope.dimension_count", s->D, &s->n_rot);
    double v = 1e-5;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    h->gguf_float(s->g, k, &v);
    s->eps = (float)v;
    v = 10000.0;
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    h->gguf_float(s->g, k, &v);
    s->theta = (float)v;
    s->neox = strncmp(arch, "qwen", 4) == 0;
    struct clspec_tensor_info ti = {.size = sizeof ti};
    if (h->gguf_tensor(s->g, "token_embd.weight", &ti, err, errlen) < 0)
        return -1;
    s->V = (uint32_t)ti.ne[1];
    return 0;
}

static int load_weights(struct head1 *s, int borrow, char *err, size_t errlen)
{
    const struct clspec_host *h = s->h;
    static const char *const mats[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    clspec_weight **w[] = {&s->wq, &s->wk, &s->wv, &s->wo, &s->wg, &s->wu, &s->wd};
    char n[96];
    for (int i = 0; i < 7; i++) {
        snprintf(n, sizeof n, "blk.0.%s.weight", mats[i]);
        if (h->weight_upload(s->d, s->g, n, w[i], err, errlen) < 0)
            return -1;
    }
    if (h->vec_upload(s->d, s->g, "blk.0.attn_norm.weight", &s->attn_norm, err, errlen) < 0 ||
        h->vec_upload(s->d, s->g, "blk.0.ffn_norm.weight", &s->ffn_norm, err, errlen) < 0)
        return -1;
    if (borrow)
        return h->target_weight(s->d, "token_embd.weight", &s->embd, err, errlen) < 0 ||
                       h->target_weight(s->d, "output.weight", &s->out, err, errlen) < 0 ||
                       h->target_vec(s->d, "output_norm.weight", &s->out_norm, err, errlen) < 0
                   ? -1
                   : 0;
    struct clspec_tensor_info ti = {.size = sizeof ti};
    const char *out = h->gguf_tensor(s->g, "output.weight", &ti, err, errlen) == 0 ? "output.weight"
                                                                                  : "token_embd.weight"; /* tied */
    return h->weight_upload(s->d, s->g, "token_embd.weight", &s->embd, err, errlen) < 0 ||
                   h->weight_upload(s->d, s->g, out, &s->out, err, errlen) < 0 ||
                   h->vec_upload(s->d, s->g, "output_norm.weight", &s->out_norm, err, errlen) < 0
               ? -1
               : 0;
}

static int alloc_bufs(struct head1 *s, int32_t n_ctx, char *err, size_t errlen)
{
    const struct clspec_host *h = s->h;
    const size_t HD = (size_t)s->H * s->D, KVD = (size_t)s->HKV * s->D;
    struct {
        clspec_buf **b;
        uint32_t type;
        size_t n;
    } t[] = {
        {&s->x, CLSPEC_BUF_F32, s->E},  {&s->xb, CLSPEC_BUF_F32, s->E > HD ? s->E : HD}, {&s->q, CLSPEC_BUF_F32, HD},
        {&s->k, CLSPEC_BUF_F32, KVD},   {&s->v, CLSPEC_BUF_F32, KVD},   {&s->att, CLSPEC_BUF_F32, HD},
        {&s->hb, CLSPEC_BUF_F32, s->F}, {&s->hb2, CLSPEC_BUF_F32, s->F}, {&s->logits, CLSPEC_BUF_F32, s->V},
        {&s->tok, CLSPEC_BUF_I32, 1},
        {&s->pos, CLSPEC_BUF_I32, 1},   {&s->seq, CLSPEC_BUF_I32, 1},   {&s->cell, CLSPEC_BUF_I32, 1},
        {&s->amax, CLSPEC_BUF_I32, 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (h->buf_new(s->d, t[i].type, CAP * t[i].n, t[i].b, err, errlen) < 0)
            return -1;
    return h->kv_new(s->d, 1, (int32_t)s->HKV, (int32_t)s->D, n_ctx, s->n_slots, CLSPEC_TYPE_F32, CLSPEC_TYPE_F32,
                     &s->kv, err, errlen);
}

/* Layer 0 as one handle of the engine's block builder (shapes checked there). */
static int make_layer(struct head1 *s, char *err, size_t errlen)
{
    const struct clspec_block_shape shape = {
        .size = sizeof shape, .n_embd = (int32_t)s->E, .n_head = (int32_t)s->H, .n_head_kv = (int32_t)s->HKV,
        .head_dim = (int32_t)s->D, .n_ff = (int32_t)s->F, .eps = s->eps, .n_rot = (int32_t)s->n_rot,
        .neox = s->neox, .freq_base = s->theta, .freq_scale = 1.0f};
    const struct clspec_layer_desc desc = {.size = sizeof desc, .wq = s->wq, .wk = s->wk, .wv = s->wv, .wo = s->wo,
                                           .w_gate = s->wg, .w_up = s->wu, .w_down = s->wd,
                                           .attn_norm = s->attn_norm, .ffn_norm = s->ffn_norm}; /* no bq..k_norm */
    return s->h->layer_new(s->d, &desc, &shape, &s->layer, err, errlen);
}

static void head1_fini(void *state)
{
    struct head1 *s = state;
    if (!s->keep_handles) {
        if (s->d)
            s->h->dev_close(s->d); /* frees every buffer, weight and KV cache made on it */
        if (s->g)
            s->h->gguf_close(s->g);
    }
    free(s->n_kv);
    free(s->base);
    free(s->fed);
    free(s);
}

static int head1_init(const struct clspec_host *h, void **state, char *err, size_t errlen)
{
    if (h->abi_minor < 4 || h->size <= offsetof(struct clspec_host, block_kv) || !h->block_kv)
        return fail(err, errlen, "head1: needs the device compute service (ABI 1.4; this host is %u.%u)",
                    h->abi_major, h->abi_minor);
    const char *path = h->config_get(h, "model"), *b = h->config_get(h, "borrow"), *c = h->config_get(h, "n_ctx"),
               *kh = h->config_get(h, "keep_handles");
    struct clspec_target_info ti = {.size = sizeof ti};
    if (!path)
        return fail(err, errlen, "head1: set model = PATH");
    if (h->target_info(h, &ti) < 0)
        return fail(err, errlen, "head1: no target");
    struct head1 *s = calloc(1, sizeof *s);
    if (!s)
        return fail(err, errlen, "head1: out of memory");
    s->h = h;
    s->keep_handles = kh && atoi(kh) == 1;
    s->n_slots = (int32_t)ti.n_slots;
    s->n_kv = calloc((size_t)s->n_slots, sizeof *s->n_kv);
    s->base = calloc((size_t)s->n_slots, sizeof *s->base);
    s->fed = calloc((size_t)s->n_slots, sizeof *s->fed);
    int rc = s->n_kv && s->base && s->fed ? 0 : fail(err, errlen, "head1: out of memory");
    if (rc == 0)
        rc = h->dev_open(h, -1, &s->d, err, errlen);
    if (rc == 0)
        rc = h->gguf_open(h, path, &s->g, err, errlen);
    if (rc == 0)
        rc = load_hparams(s, err, errlen);
    if (rc == 0)
        rc = load_weights(s, b && atoi(b) == 1, err, errlen);
    if (rc == 0)
        rc = alloc_bufs(s, c ? atoi(c) : 512, err, errlen);
    if (rc == 0)
        rc = make_layer(s, err, errlen);
    if (rc < 0) {
        s->keep_handles = 0;
        head1_fini(s);
        return -1;
    }
    h->log(h, CLSPEC_LOG_INFO, "one-layer head: embd %u, heads %u/%u of %u, ff %u, vocab %u", s->E, s->H, s->HKV,
           s->D, s->F, s->V);
    *state = s;
    return 0;
}

int head1_decode(void *state, int32_t n, const int32_t *tok, const int32_t *pos, const int32_t *seq, float *logits,
                 int32_t *amax, char *err, size_t errlen);

/* The block on n rows (n <= CAP) of (tok, pos, seq): their K/V join the
 * head's cache; logits (n, V) to logits when not NULL, argmax (n) to amax. */
__attribute__((visibility("default"))) int head1_decode(void *state, int32_t n, const int32_t *tok,
                                                        const int32_t *pos, const int32_t *seq, float *logits,
                                                        int32_t *amax, char *err, size_t errlen)
{
    struct head1 *s = state;
    const struct clspec_host *h = s->h;
    if (n < 1 || n > CAP)
        return fail(err, errlen, "head1: %d rows (want 1..%d)", n, CAP);
    if (h->kv_place(s->kv, n, pos, seq, s->cell, 0, NULL, err, errlen) < 0 ||
        h->buf_write(s->tok, 0, (size_t)n, tok, err, errlen) < 0 ||
        h->buf_write(s->pos, 0, (size_t)n, pos, err, errlen) < 0 ||
        h->buf_write(s->seq, 0, (size_t)n, seq, err, errlen) < 0)
        return -1;
    const struct clspec_block_act act = {.size = sizeof act, .x = s->x, .xb = s->xb, .q = s->q, .att = s->att,
                                         .kc = s->k, .vc = s->v, .hb = s->hb, .hb2 = s->hb2, .pos = s->pos,
                                         .seq = s->seq, .cell = s->cell};
    /* causal, every cell in use; the final norm fused into the FFN's residual add: xb = out_norm(x) */
    const struct clspec_block_opt opt = {.size = sizeof opt, .causal = 1, .next_norm = s->out_norm};
    if (h->get_rows(s->embd, s->tok, 0, n, s->x, 0, err, errlen) < 0 ||
        h->block_layer(s->layer, s->kv, 0, &act, n, &opt, err, errlen) < 0 ||
        h->matmul(s->out, s->xb, 0, s->logits, 0, n, err, errlen) < 0 ||
        h->argmax(s->logits, 0, s->amax, 0, n, (int32_t)s->V, err, errlen) < 0)
        return -1;
    if (logits && h->buf_read(s->logits, 0, (size_t)n * s->V, logits, err, errlen) < 0)
        return -1;
    return h->buf_read(s->amax, 0, (size_t)n, amax, err, errlen);
}

static int head1_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                       size_t errlen)
{
    (void)probs;
    struct head1 *s = state;
    const int32_t slot = req->slot, n_hist = req->n_hist;
    int32_t valid = s->n_kv[slot] < n_hist - 1 ? s->n_kv[slot] : n_hist - 1;
    if (s->h->kv_seq_rm(s->kv, slot, valid, -1, err, errlen) < 0)
        return -1;
    int32_t pos[CAP], seq[CAP], am[CAP], next = -1;
    for (int32_t p0 = valid; p0 < n_hist; p0 += CAP) { /* the history not in the cache yet */
        int32_t n = n_hist - p0 < CAP ? n_hist - p0 : CAP;
        for (int32_t i = 0; i < n; i++) {
            pos[i] = p0 + i;
            seq[i] = slot;
        }
        if (head1_decode(s, n, req->hist + p0, pos, seq, NULL, am, err, errlen) < 0)
            return -1;
        next = am[n - 1];
    }
    int32_t k = 0;
    out[k++] = next;
    while (k < req->n_max) { /* feed each draft back */
        pos[0] = n_hist - 1 + k;
        seq[0] = slot;
        if (head1_decode(s, 1, &out[k - 1], pos, seq, NULL, am, err, errlen) < 0)
            return -1;
        out[k++] = am[0];
    }
    s->n_kv[slot] = n_hist;
    s->base[slot] = n_hist;
    s->fed[slot] = k - 1;
    return k;
}

static void head1_accept(void *state, int32_t slot, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                         int32_t n_tokens)
{
    (void)n_drafted;
    (void)tokens;
    (void)n_tokens;
    struct head1 *s = state;
    /* the accepted drafts fed back are valid history; the rest is dropped at the next draft */
    s->n_kv[slot] = s->base[slot] + (n_accepted < s->fed[slot] ? n_accepted : s->fed[slot]);
}

static void head1_slot_end(void *state, int32_t slot)
{
    struct head1 *s = state;
    char err[128];
    s->n_kv[slot] = 0;
    s->h->kv_seq_rm(s->kv, slot, 0, -1, err, sizeof err);
}

static const struct clspec_speculator vt = {
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
    .size = sizeof(struct clspec_speculator),
    .name = "head1",
    .caps = CLSPEC_SPEC_CAP_DEVICE_MEMORY,
    .init = head1_init,
    .fini = head1_fini,
    .draft = head1_draft,
    .accept = head1_accept,
    .slot_end = head1_slot_end,
};

__attribute__((visibility("default"))) const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &vt;
}
