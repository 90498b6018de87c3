/* dflash_model.c: see dflash_model.h. Only the compute service of the host
 * table: handles made here belong to the model's dev (dfm_free closes it,
 * which frees everything left on it). A decode ends with a blocking read, so
 * the cells of the block can be removed right after. */
#define _POSIX_C_SOURCE 200809L
#include "dflash_model.h"
#include "../common/plugin_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        int rc_ = (x);                                                                                                 \
        if (rc_ < 0)                                                                                                   \
            return rc_;                                                                                                \
    } while (0)

/* ---- hyper-parameters ---- */

/* An unsigned integer key: dflt when absent (required: an error). */
static int get_u32(const struct clspec_host *h, const clspec_gguf *g, const char *path, const char *key,
                   uint32_t *out, uint32_t dflt, int required, char *err, size_t errlen)
{
    int64_t v = 0;
    int32_t n = h->gguf_ints(g, key, &v, 1);
    if (n < 0) {
        if (required)
            return pu_failf(err, errlen, "%s: missing key %s", path, key);
        *out = dflt;
        return 0;
    }
    if (n != 1 || v < 0 || v > (int64_t)UINT32_MAX)
        return pu_failf(err, errlen, "%s: %s: want an unsigned 32-bit integer", path, key);
    *out = (uint32_t)v;
    return 0;
}

/* A float key (stored f32: the same float back), dflt when absent. */
static void get_f32(const struct clspec_host *h, const clspec_gguf *g, const char *key, float *out, float dflt)
{
    double v = 0;
    *out = h->gguf_float(g, key, &v) == 0 ? (float)v : dflt;
}

/* The two layouts a drafter file may have: clspec's "dflash" (FORMATS.md)
 * and "dflash-draft" as the llama.cpp forks that ship DFlash write it
 * (Qwen3.6 drafters): keys under "dflash-draft." with the DFlash ones under
 * "dflash-draft.dflash.", target layers as 0-based ids of the layer whose
 * OUTPUT is tapped (ours: +1), the feature count stated, the mask token
 * among the keys, tensors dflash_fc / dflash_hidden_norm and the FFN norm
 * named post_attention_norm (or attn_post_norm), optional sliding-window
 * layers. */
struct layout {
    const char *arch;       /* general.architecture */
    const char *pre;        /* key prefix ("dflash.", "dflash-draft.") */
    const char *dpre;       /* prefix of the DFlash-specific keys */
    const char *taps_key;   /* the target layers' key (after dpre) */
    int32_t tap_offset;     /* stored id + offset = clspec's tap (input of that layer) */
    const char *fc[2], *enc_norm[2]; /* tensor names tried in order (NULL: none) */
};

static const struct layout layouts[] = {
    {"dflash", "dflash.", "dflash.", "target_layers", 0, {"fc.weight", NULL}, {"enc.output_norm.weight", NULL}},
    {"dflash-draft", "dflash-draft.", "dflash-draft.dflash.", "target_layer_ids", 1,
     {"dflash_fc.weight", "dflash.fc.weight"}, {"dflash_hidden_norm.weight", "dflash.hidden_norm.weight"}},
};

/* prefix + key in buf */
static const char *k2(char *buf, size_t n, const char *pre, const char *key)
{
    snprintf(buf, n, "%s%s", pre, key);
    return buf;
}

/* Reads and validates the keys of g in either layout (errors name the key). */
static int read_hparams(const struct clspec_host *h, const clspec_gguf *g, const char *path, struct dfm_hparams *hp,
                        const struct layout **lo_out, char *err, size_t errlen)
{
    memset(hp, 0, sizeof *hp);
    char arch[32] = "", k[128];
    h->gguf_str(g, "general.architecture", arch, sizeof arch);
    const struct layout *lo = NULL;
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (strcmp(arch, layouts[i].arch) == 0)
            lo = &layouts[i];
    if (!lo)
        return pu_failf(err, errlen, "%s: general.architecture is '%s', not 'dflash' or 'dflash-draft'", path, arch);
    *lo_out = lo;
    const char *P = lo->pre, *D = lo->dpre;
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "block_count"), &hp->n_layer, 0, 1, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "embedding_length"), &hp->n_embd, 0, 1, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "feed_forward_length"), &hp->n_ff, 0, 1, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "attention.head_count"), &hp->n_head, 0, 1, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "attention.head_count_kv"), &hp->n_head_kv, hp->n_head, 0, err,
                errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "attention.key_length"), &hp->head_dim,
                hp->n_head ? hp->n_embd / hp->n_head : 0, 0, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "context_length"), &hp->n_ctx_train, 0, 0, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, D, "block_size"), &hp->block_size, 16, 0, err, errlen));
    get_f32(h, g, k2(k, sizeof k, P, "attention.layer_norm_rms_epsilon"), &hp->rms_eps, 1e-6f);
    get_f32(h, g, k2(k, sizeof k, P, "rope.freq_base"), &hp->rope_base, 10000.0f);
    uint32_t causal = 0, mask = 0;
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "attention.causal"), &causal, 0, 0, err, errlen));
    TRY(get_u32(h, g, path, "tokenizer.ggml.mask_token_id", &mask, 0, 0, err, errlen));
    TRY(get_u32(h, g, path, k2(k, sizeof k, D, "mask_token_id"), &mask, mask, 0, err, errlen));
    hp->causal = causal != 0;
    hp->mask_id = (int32_t)mask;
    int64_t taps[DFM_MAX_TAPS];
    int32_t nt = h->gguf_ints(g, k2(k, sizeof k, D, lo->taps_key), taps, DFM_MAX_TAPS);
    if (nt < 1 || nt > DFM_MAX_TAPS)
        return pu_failf(err, errlen, "%s: %s: want an array of 1..%d integers", path, k, DFM_MAX_TAPS);
    hp->n_taps = (uint32_t)nt;
    for (int32_t i = 0; i < nt; i++)
        hp->taps[i] = (int32_t)taps[i] + lo->tap_offset;
    uint32_t n_feat = 0;
    TRY(get_u32(h, g, path, k2(k, sizeof k, D, "n_target_features"), &n_feat, hp->n_taps * hp->n_embd, 0, err,
                errlen));
    if (n_feat != hp->n_taps * hp->n_embd)
        return pu_failf(err, errlen, "%s: %s = %u, but %u target layers of %u features make %u", path, k, n_feat,
                        hp->n_taps, hp->n_embd, hp->n_taps * hp->n_embd);
    TRY(get_u32(h, g, path, k2(k, sizeof k, P, "attention.sliding_window"), &hp->swa_window, 0, 0, err, errlen));
    if (hp->n_layer == 0 || hp->n_embd == 0 || hp->n_ff == 0 || hp->n_head == 0 || hp->n_head_kv == 0 ||
        hp->n_head % hp->n_head_kv || hp->head_dim == 0 || hp->head_dim % 2 || hp->block_size < 2 ||
        hp->block_size > 256)
        return pu_failf(err, errlen,
                    "%s: bad dflash shape (layers %u, embd %u, ff %u, heads %u/%u, head_dim %u, block_size %u)", path,
                    hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv, hp->head_dim, hp->block_size);
    return 0;
}

/* ---- weights ---- */

/* Tensor name of g must be [ne0, ne1]. */
static int want_shape(const struct clspec_host *h, const clspec_gguf *g, const char *path, const char *name,
                      uint64_t ne0, uint64_t ne1, char *err, size_t errlen)
{
    struct clspec_tensor_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    char e2[256] = "";
    if (h->gguf_tensor(g, name, &ti, e2, sizeof e2) < 0)
        return pu_failf(err, errlen, "%s: missing tensor %s", path, name);
    if (ti.ne[0] != ne0 || ti.ne[1] != ne1 || ti.ne[2] != 1 || ti.ne[3] != 1)
        return pu_failf(err, errlen, "%s: tensor %s has shape [%llu, %llu], want [%llu, %llu]", path, name,
                    (unsigned long long)ti.ne[0], (unsigned long long)ti.ne[1], (unsigned long long)ne0,
                    (unsigned long long)ne1);
    return 0;
}

static int up_vec(struct dfm_model *m, const char *path, const char *name, uint64_t n, clspec_buf **out, char *err,
                  size_t errlen)
{
    TRY(want_shape(m->h, m->g, path, name, n, 1, err, errlen));
    return m->h->vec_upload(m->d, m->g, name, out, err, errlen);
}

static int up_mat(struct dfm_model *m, const char *path, const char *name, uint32_t n_in, uint32_t n_out,
                  clspec_weight **out, char *err, size_t errlen)
{
    TRY(want_shape(m->h, m->g, path, name, n_in, n_out, err, errlen));
    return m->h->weight_upload(m->d, m->g, name, out, err, errlen);
}

/* The first of the names (NULL-terminated list, at most 3) the file has; names[0] when none. */
static const char *first_tensor(const struct dfm_model *m, const char *const *names, int n)
{
    struct clspec_tensor_info ti;
    char e2[256];
    for (int i = 0; i < n && names[i]; i++) {
        memset(&ti, 0, sizeof ti);
        ti.size = sizeof ti;
        if (m->h->gguf_tensor(m->g, names[i], &ti, e2, sizeof e2) == 0)
            return names[i];
    }
    return names[0];
}

void dfm_free(struct dfm_model *m)
{
    if (!m)
        return;
    if (m->d)
        m->h->dev_close(m->d); /* every weight, buffer and layer made on it */
    if (m->g)
        m->h->gguf_close(m->g);
    free(m->layers);
    free(m->w);
    free(m->v);
    free(m);
}

/* The drafter's fit to the target: hidden size, tap layers, device. */
static int check_target(const struct clspec_host *h, const char *path, const struct dfm_hparams *hp, int32_t device,
                        char *err, size_t errlen)
{
    struct clspec_target_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    if (h->target_info(h, &ti) < 0)
        return pu_failf(err, errlen, "%s: no target model", path);
    if (hp->n_embd != ti.model.n_embd)
        return pu_failf(err, errlen, "%s: dflash.embedding_length %u != the target's n_embd %u", path, hp->n_embd,
                    ti.model.n_embd);
    for (uint32_t i = 0; i < hp->n_taps; i++)
        if (hp->taps[i] < 0 || hp->taps[i] > (int32_t)ti.model.n_layer)
            return pu_failf(err, errlen,
                            "%s: target layer %u of the drafter taps the input of layer %d; the target has %u layers "
                            "(0..%u): this drafter belongs to another target", path, i, hp->taps[i], ti.model.n_layer,
                            ti.model.n_layer);
    const int32_t od = ti.model.device;
    if (device >= 0 && device != od) {
        struct clspec_device_info a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        a.size = b.size = sizeof a;
        h->device_info(h, od, &a);
        h->device_info(h, device, &b);
        return pu_failf(err, errlen,
                    "%s: a dflash drafter borrows the target's output matrix, which is on device %d (%s); it "
                    "cannot run on device %d (%s): set the speculator's `device` to %d or leave it unset",
                    path, od, a.name ? a.name : "?", device, b.name ? b.name : "?", od);
    }
    return 0;
}

/* The layers' tensors and the block builder's layers. */
static int load_layers(struct dfm_model *m, const char *path, char *err, size_t errlen)
{
    const struct dfm_hparams *hp = &m->hp;
    const uint32_t E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    m->w = calloc((size_t)hp->n_layer * 7, sizeof *m->w);
    m->v = calloc((size_t)hp->n_layer * 4, sizeof *m->v);
    if (!m->layers || !m->w || !m->v)
        return pu_failf(err, errlen, "%s: out of memory", path);
    static const char *const vsfx[4] = {"attn_norm", "ffn_norm", "attn_q_norm", "attn_k_norm"};
    static const char *const wsfx[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    const uint32_t vn[4] = {E, E, hp->head_dim, hp->head_dim};
    const uint32_t win[7] = {E, E, E, Q, E, E, F}, wout[7] = {Q, KV, KV, E, F, F, E};
    struct clspec_block_shape shape;
    memset(&shape, 0, sizeof shape);
    shape.size = sizeof shape;
    shape.n_embd = (int32_t)E;
    shape.n_head = (int32_t)hp->n_head;
    shape.n_head_kv = (int32_t)hp->n_head_kv;
    shape.head_dim = (int32_t)hp->head_dim;
    shape.n_ff = (int32_t)F;
    shape.eps = hp->rms_eps;
    shape.n_rot = (int32_t)hp->head_dim;
    shape.neox = 1;
    shape.freq_base = hp->rope_base;
    shape.freq_scale = 1.0f;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        char n[64];
        clspec_buf **v = m->v + (size_t)l * 4;
        clspec_weight **w = m->w + (size_t)l * 7;
        for (int j = 0; j < 4; j++) {
            char alt[3][64];
            snprintf(alt[0], sizeof alt[0], "blk.%u.%s.weight", l, vsfx[j]);
            /* the FFN norm of dflash-draft files */
            snprintf(alt[1], sizeof alt[1], "blk.%u.%s.weight", l, j == 1 ? "post_attention_norm" : vsfx[j]);
            snprintf(alt[2], sizeof alt[2], "blk.%u.%s.weight", l, j == 1 ? "attn_post_norm" : vsfx[j]);
            const char *const names[3] = {alt[0], alt[1], alt[2]};
            snprintf(n, sizeof n, "%s", first_tensor(m, names, 3));
            TRY(up_vec(m, path, n, vn[j], &v[j], err, errlen));
        }
        for (int j = 0; j < 7; j++) {
            snprintf(n, sizeof n, "blk.%u.%s.weight", l, wsfx[j]);
            TRY(up_mat(m, path, n, win[j], wout[j], &w[j], err, errlen));
        }
        struct clspec_layer_desc desc;
        memset(&desc, 0, sizeof desc);
        desc.size = sizeof desc;
        desc.wq = w[0], desc.wk = w[1], desc.wv = w[2], desc.wo = w[3];
        desc.w_gate = w[4], desc.w_up = w[5], desc.w_down = w[6];
        desc.attn_norm = v[0], desc.ffn_norm = v[1], desc.q_norm = v[2], desc.k_norm = v[3];
        char e2[384] = "";
        if (m->h->layer_new(m->d, &desc, &shape, &m->layers[l], e2, sizeof e2) < 0)
            return pu_failf(err, errlen, "%s: layer %u: %s", path, l, e2);
    }
    return 0;
}

static int load(struct dfm_model *m, const char *path, int32_t device, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    const struct layout *lo = NULL;
    TRY(h->gguf_open(h, path, &m->g, err, errlen));
    TRY(read_hparams(h, m->g, path, &m->hp, &lo, err, errlen));
    m->layout = lo->arch;
    TRY(check_target(h, path, &m->hp, device, err, errlen));
    TRY(h->dev_open(h, -1, &m->d, err, errlen));
    TRY(h->target_weight(m->d, "token_embd.weight", &m->embd, err, errlen));
    TRY(h->target_weight(m->d, "output.weight", &m->out, err, errlen));
    h->weight_shape(m->out, NULL, &m->n_vocab, NULL);
    struct clspec_tensor_info ti;
    memset(&ti, 0, sizeof ti);
    ti.size = sizeof ti;
    char e2[256];
    if (h->gguf_tensor(m->g, "token_embd.weight", &ti, e2, sizeof e2) == 0 ||
        h->gguf_tensor(m->g, "output.weight", &ti, e2, sizeof e2) == 0)
        h->log(h, CLSPEC_LOG_WARN, "%s: has its own token_embd/output; the target's are used (as upstream)", path);
    const uint32_t E = m->hp.n_embd;
    TRY(up_mat(m, path, first_tensor(m, lo->fc, 2), m->hp.n_taps * E, E, &m->fc, err, errlen));
    TRY(up_vec(m, path, first_tensor(m, lo->enc_norm, 2), E, &m->enc_norm, err, errlen));
    if (m->hp.swa_window > 0)
        h->log(h, CLSPEC_LOG_WARN,
               "%s: sliding-window layers (window %u): here every layer attends the whole injected context, so "
               "drafts may differ from a windowed drafter's beyond %u positions (verification keeps the output "
               "exact)", path, m->hp.swa_window, m->hp.swa_window);
    TRY(up_vec(m, path, "output_norm.weight", E, &m->out_norm, err, errlen));
    return load_layers(m, path, err, errlen);
}

int dfm_load(const struct clspec_host *h, const char *path, int32_t device, struct dfm_model **out, char *err,
             size_t errlen)
{
    *out = NULL;
    struct dfm_model *m = calloc(1, sizeof *m);
    if (!m)
        return pu_failf(err, errlen, "%s: out of memory", path);
    m->h = h;
    int rc = load(m, path, device, err, errlen);
    if (rc < 0) {
        dfm_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- context ---- */

void dfm_ctx_free(struct dfm_ctx *c)
{
    if (!c)
        return;
    const struct clspec_host *h = c->m->h;
    clspec_buf *b[] = {c->x,   c->xb,  c->q,    c->att,   c->kc,    c->vc,     c->hb,  c->hb2,
                       c->tok, c->pos, c->seq, c->cell, c->ipos, c->cells, c->logits, c->amax};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i])
            h->buf_free(b[i]);
    if (c->kv)
        h->kv_free(c->kv);
    free(c->h_feat);
    free(c->q_seq);
    free(c->q_pos);
    free(c->r_pos);
    free(c->r_seq);
    if (c->seq_sh)
        free(c->seq_sh->v);
    free(c->seq_sh);
    free(c);
}

int dfm_ctx_new(struct dfm_model *m, uint32_t n_ctx, uint32_t n_batch, uint32_t type_k, uint32_t type_v,
                uint32_t n_seq, struct dfm_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct dfm_hparams *hp = &m->hp;
    const struct clspec_host *h = m->h;
    if (n_ctx == 0 || n_ctx > (1u << 30) || n_batch == 0 || n_batch > 65536 || n_seq == 0 || n_seq > 64)
        return pu_failf(err, errlen, "dflash context: n_ctx %u, n_batch %u, n_seq %u out of range", n_ctx, n_batch, n_seq);
    struct dfm_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return pu_failf(err, errlen, "dflash context: out of memory");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    c->n_seq = n_seq;
    const size_t B = n_batch, E = hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim,
                 KV = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = m->n_vocab, NTE = (size_t)hp->n_taps * E;
    const size_t XB = E > Q ? (E > NTE ? E : NTE) : (Q > NTE ? Q : NTE);
    char e2[384] = "";
    int rc = h->kv_new(m->d, (int32_t)hp->n_layer, (int32_t)hp->n_head_kv, (int32_t)hp->head_dim, (int32_t)n_ctx,
                       (int32_t)n_seq, type_k, type_v, &c->kv, e2, sizeof e2);
    c->h_feat = malloc(B * NTE * sizeof *c->h_feat);
    c->q_seq = malloc(B * sizeof *c->q_seq);
    c->q_pos = malloc(B * sizeof *c->q_pos);
    c->r_pos = malloc(2 * B * sizeof *c->r_pos);
    c->r_seq = malloc(2 * B * sizeof *c->r_seq);
    c->seq_sh = calloc(1, sizeof *c->seq_sh);
    if (rc == 0 && (!c->h_feat || !c->q_seq || !c->q_pos || !c->r_pos || !c->r_seq || !c->seq_sh))
        rc = pu_failf(e2, sizeof e2, "out of memory");
    struct {
        clspec_buf **b;
        uint32_t type;
        size_t n;
    } bufs[] = {
        {&c->x, CLSPEC_BUF_F32, B * E},       {&c->xb, CLSPEC_BUF_F32, B * XB},    {&c->q, CLSPEC_BUF_F32, B * Q},
        {&c->att, CLSPEC_BUF_F32, B * Q},     {&c->kc, CLSPEC_BUF_F32, B * KV},    {&c->vc, CLSPEC_BUF_F32, B * KV},
        {&c->hb, CLSPEC_BUF_F32, B * F},      {&c->hb2, CLSPEC_BUF_F32, B * F},    {&c->tok, CLSPEC_BUF_I32, B},
        {&c->pos, CLSPEC_BUF_I32, B},         {&c->seq, CLSPEC_BUF_I32, B},        {&c->cell, CLSPEC_BUF_I32, B},
        {&c->ipos, CLSPEC_BUF_I32, B},        {&c->cells, CLSPEC_BUF_I32, 2 * B},  {&c->logits, CLSPEC_BUF_F32, B * V},
        {&c->amax, CLSPEC_BUF_I32, B},
    };
    for (size_t j = 0; rc == 0 && j < sizeof bufs / sizeof bufs[0]; j++)
        rc = h->buf_new(m->d, bufs[j].type, bufs[j].n, bufs[j].b, e2, sizeof e2);
    if (rc < 0) {
        pu_failf(err, errlen, "dflash context (n_ctx %u, n_batch %u): %s", n_ctx, n_batch, e2);
        dfm_ctx_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int dfm_seq_rm(struct dfm_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    const size_t F = (size_t)c->m->hp.n_taps * c->m->hp.n_embd;
    int32_t k = 0;
    for (int32_t i = 0; i < c->n_q; i++) {
        if (c->q_seq[i] == seq && c->q_pos[i] >= p0 && (p1 < 0 || c->q_pos[i] < p1))
            continue;
        if (k != i) {
            c->q_seq[k] = c->q_seq[i];
            c->q_pos[k] = c->q_pos[i];
            memmove(c->h_feat + (size_t)k * F, c->h_feat + (size_t)i * F, F * sizeof(float));
        }
        k++;
    }
    c->n_q = k;
    return c->m->h->kv_seq_rm(c->kv, seq, p0, p1, err, errlen);
}

/* Places the queued rows and then n block rows (pos, seq) in one placement
 * (all or nothing), the cells to c->cells[0 .. n_q + n); drops the queue. */
static int place(struct dfm_ctx *c, int32_t n, const int32_t *pos, const int32_t *seq, char *err, size_t errlen)
{
    const int32_t ni = c->n_q;
    memcpy(c->r_pos, c->q_pos, (size_t)ni * sizeof *c->r_pos);
    memcpy(c->r_seq, c->q_seq, (size_t)ni * sizeof *c->r_seq);
    if (n > 0) {
        memcpy(c->r_pos + ni, pos, (size_t)n * sizeof *c->r_pos);
        memcpy(c->r_seq + ni, seq, (size_t)n * sizeof *c->r_seq);
    }
    c->n_q = 0; /* dropped on failure too: the caller's drafter state is then invalid anyway */
    char e2[384] = "";
    if (c->m->h->kv_place(c->kv, ni + n, c->r_pos, c->r_seq, c->cells, 0, NULL, e2, sizeof e2) < 0)
        return pu_failf(err, errlen, "dflash: %s", e2);
    return 0;
}

/* The activations of a pass over rows whose positions are in pos. */
static struct clspec_block_act act_of(const struct dfm_ctx *c, clspec_buf *pos, clspec_buf *cell)
{
    struct clspec_block_act a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.x = c->x, a.xb = c->xb, a.q = c->q, a.att = c->att, a.kc = c->kc, a.vc = c->vc, a.hb = c->hb, a.hb2 = c->hb2;
    a.pos = pos, a.seq = c->seq, a.cell = cell;
    return a;
}

/* The injection pass over ni queued rows (already copied to r_pos, placed
 * in cells[0..ni)): features -> fc -> enc.output_norm -> K/V of every layer. */
static int inject_pass(struct dfm_ctx *c, int32_t ni, const float *feat, char *err, size_t errlen)
{
    const struct dfm_model *m = c->m;
    const struct clspec_host *h = m->h;
    const size_t E = m->hp.n_embd, NT = m->hp.n_taps;
    TRY(h->buf_write(c->ipos, 0, (size_t)ni, c->r_pos, err, errlen));
    TRY(h->buf_write(c->xb, 0, (size_t)ni * NT * E, feat, err, errlen));
    TRY(h->matmul(m->fc, c->xb, 0, c->x, 0, ni, err, errlen));
    TRY(h->rmsnorm(c->x, 0, m->enc_norm, c->xb, 0, ni, (int32_t)E, m->hp.rms_eps, err, errlen));
    const struct clspec_block_act a = act_of(c, c->ipos, c->cells); /* the queued rows' cells come first */
    for (uint32_t l = 0; l < m->hp.n_layer; l++)
        TRY(h->block_kv(m->layers[l], c->kv, (int32_t)l, &a, ni, err, errlen));
    c->n_injected += (uint64_t)ni;
    return 0;
}

int dfm_flush(struct dfm_ctx *c, char *err, size_t errlen)
{
    if (c->n_q == 0)
        return 0;
    const int32_t ni = c->n_q;
    TRY(place(c, 0, NULL, NULL, err, errlen));
    TRY(inject_pass(c, ni, c->h_feat, err, errlen));
    return c->m->h->sync(c->m->d, err, errlen);
}

int dfm_inject(struct dfm_ctx *c, int32_t seq, int32_t pos0, int32_t n, const float *taps, int32_t ld, char *err,
               size_t errlen)
{
    const struct dfm_model *m = c->m;
    const size_t E = m->hp.n_embd, NT = m->hp.n_taps;
    if (n < 0 || ld < n || pos0 < 0 || seq < 0 || (uint32_t)seq >= c->n_seq || (n > 0 && !taps))
        return pu_failf(err, errlen, "dflash inject: seq %d, pos %d, n %d, ld %d", seq, pos0, n, ld);
    for (int32_t r = 0; r < n; r++) {
        if (c->n_q == (int32_t)c->n_batch)
            TRY(dfm_flush(c, err, errlen));
        const int32_t q = c->n_q++;
        c->q_seq[q] = seq;
        c->q_pos[q] = pos0 + r;
        for (size_t t = 0; t < NT; t++)
            memcpy(c->h_feat + ((size_t)q * NT + t) * E, taps + (t * (size_t)ld + (size_t)r) * E, E * sizeof(float));
    }
    return 0;
}

/* The block decode's layers, each residual add fused with the next norm
 * (the last with output_norm), then the target's output matrix. */
static int decode_pass(struct dfm_ctx *c, int32_t n, int causal, char *err, size_t errlen)
{
    const struct dfm_model *m = c->m;
    const struct clspec_host *h = m->h;
    const struct clspec_block_act a = act_of(c, c->pos, c->cell);
    TRY(h->get_rows(m->embd, c->tok, 0, n, c->x, 0, err, errlen));
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        struct clspec_block_opt o;
        memset(&o, 0, sizeof o);
        o.size = sizeof o;
        o.normed = l > 0;
        o.causal = causal != 0;
        o.n_cells_used = 0; /* the cache's high-water mark */
        o.next_norm = l + 1 < m->hp.n_layer ? m->v[(size_t)(l + 1) * 4] : m->out_norm;
        TRY(h->block_layer(m->layers[l], c->kv, (int32_t)l, &a, n, &o, err, errlen));
    }
    return h->matmul(m->out, c->xb, 0, c->logits, 0, n, err, errlen); /* xb: rms(x) * out_norm */
}

/* Queues the pass of n block rows placed after ni queued rows (the
 * injection first) and reads back what is wanted. */
static int decode_rows(struct dfm_ctx *c, int32_t ni, const int32_t *tokens, const int32_t *pos, const int32_t *seq,
                       int32_t n, int causal, float *logits, int32_t *amax, bool dev, char *err, size_t errlen)
{
    const struct clspec_host *h = c->m->h;
    if (ni > 0)
        TRY(inject_pass(c, ni, c->h_feat, err, errlen));
    TRY(h->copy(c->cell, 0, (size_t)n, c->cells, (size_t)ni, (size_t)n, 1, n, err, errlen));
    TRY(h->buf_write(c->pos, 0, (size_t)n, pos, err, errlen));
    TRY(pu_upload_i32(h, c->seq, c->seq_sh, seq, n, err, errlen));
    TRY(h->buf_write(c->tok, 0, (size_t)n, tokens, err, errlen));
    TRY(decode_pass(c, n, causal, err, errlen));
    const size_t V = c->m->n_vocab;
    if (amax || dev)
        TRY(h->argmax(c->logits, 0, c->amax, 0, n, (int32_t)V, err, errlen));
    if (amax)
        TRY(h->buf_read(c->amax, 0, (size_t)n, amax, err, errlen));
    if (logits)
        TRY(h->buf_read(c->logits, 0, (size_t)n * V, logits, err, errlen));
    return amax || logits || dev ? 0 : h->sync(c->m->d, err, errlen); /* a read waits for the pass */
}

static int decode(struct dfm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
                  int causal, float *logits, int32_t *amax, bool dev, char *err, size_t errlen)
{
    const struct clspec_host *h = c->m->h;
    const uint32_t V = c->m->n_vocab;
    if (n <= 0 || (uint32_t)n > c->n_batch)
        return pu_failf(err, errlen, "dflash decode: %d rows (want 1..n_batch %u)", n, c->n_batch);
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= V)
            return pu_failf(err, errlen, "dflash decode: token %d (row %d) out of range [0, %u)", tokens[i], i, V);
        if (seq[i] < 0 || (uint32_t)seq[i] >= c->n_seq)
            return pu_failf(err, errlen, "dflash decode: sequence %d (row %d) out of range 0..%u", seq[i], i,
                        c->n_seq - 1);
    }
    const int32_t ni = c->n_q;
    TRY(place(c, n, pos, seq, err, errlen)); /* nothing placed on failure */
    int rc = decode_rows(c, ni, tokens, pos, seq, n, causal, logits, amax, dev, err, errlen);
    if (rc < 0) { /* the queue may still hold this pass: wait before the cells change */
        char e2[256];
        h->sync(c->m->d, e2, sizeof e2);
    }
    c->n_decoded += (uint64_t)n;
    if (dev && rc == 0) /* the cells stay until the caller drops them (after its wait) */
        return 0;
    /* the block's K/V do not persist: each run of consecutive positions of a sequence at once */
    char e2[256];
    for (int32_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && seq[j] == seq[i] && pos[j] == pos[j - 1] + 1;)
            j++;
        h->kv_seq_rm(c->kv, seq[i], pos[i], pos[j - 1] + 1, e2, sizeof e2);
    }
    return rc;
}

int dfm_decode(struct dfm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
               int causal, float *logits, int32_t *amax, char *err, size_t errlen)
{
    return decode(c, tokens, pos, seq, n, causal, logits, amax, false, err, errlen);
}

int dfm_decode_dev(struct dfm_ctx *c, const int32_t *tokens, const int32_t *pos, const int32_t *seq, int32_t n,
                   int causal, char *err, size_t errlen)
{
    return decode(c, tokens, pos, seq, n, causal, NULL, NULL, true, err, errlen);
}
