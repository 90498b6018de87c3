/* model.c: hyper-parameters and tensor lookup (with shape validation) for
 * llama / qwen2 / qwen3 GGUF models. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/model.h"
#include "gguf/quant.h"

const char *cs_arch_name(enum cs_arch a)
{
    switch (a) {
    case CS_ARCH_LLAMA: return "llama";
    case CS_ARCH_QWEN2: return "qwen2";
    case CS_ARCH_QWEN3: return "qwen3";
    case CS_ARCH_QWEN35: return "qwen35";
    }
    return "unknown";
}

/* Reads "{arch}.suffix" as u32. required: missing is an error. Returns
 * CLSPEC_OK, CLSPEC_E_NOTFOUND (optional and absent) or an error. */
static int get_u32(const struct cs_gguf *g, const char *arch, const char *suffix, bool required,
                   uint32_t *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = cs_gguf_get_u32(g, key, out, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND && required)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: missing key %s", g->path, key);
    if (rc != CLSPEC_OK && rc != CLSPEC_E_NOTFOUND)
        return cs_err_prefix(err, errlen, rc, "%s: key %s", g->path, key);
    return rc;
}

static int get_f32(const struct cs_gguf *g, const char *arch, const char *suffix, bool required,
                   float *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = cs_gguf_get_f32(g, key, out, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND && required)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: missing key %s", g->path, key);
    if (rc != CLSPEC_OK && rc != CLSPEC_E_NOTFOUND)
        return cs_err_prefix(err, errlen, rc, "%s: key %s", g->path, key);
    return rc;
}

#define TRY(x)                       \
    do {                             \
        int rc_ = (x);               \
        if (rc_ < 0 && rc_ != CLSPEC_E_NOTFOUND) \
            return rc_;              \
    } while (0)

static int invalid(const struct cs_gguf *g, const char *arch, const char *suffix, const char *why,
                   uint64_t v, char *err, size_t errlen)
{
    return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key %s.%s = %llu: %s", g->path, arch, suffix,
                  (unsigned long long)v, why);
}

/* qwen35's delta-net keys (all required) and their limits (the kernels' private arrays: cl/deltanet.cl). */
static int read_qwen35(const struct cs_gguf *g, struct cs_hparams *hp, char *err, size_t errlen)
{
    const char *a = hp->arch_name;
    TRY(get_u32(g, a, "ssm.conv_kernel", true, &hp->ssm_d_conv, err, errlen));
    TRY(get_u32(g, a, "ssm.state_size", true, &hp->ssm_d_state, err, errlen));
    TRY(get_u32(g, a, "ssm.group_count", true, &hp->ssm_n_group, err, errlen));
    TRY(get_u32(g, a, "ssm.time_step_rank", true, &hp->ssm_dt_rank, err, errlen));
    TRY(get_u32(g, a, "ssm.inner_size", true, &hp->ssm_d_inner, err, errlen));
    hp->full_attn_interval = 4;
    TRY(get_u32(g, a, "full_attention_interval", false, &hp->full_attn_interval, err, errlen));
    if (hp->ssm_d_conv < 2 || hp->ssm_d_conv > 8)
        return invalid(g, a, "ssm.conv_kernel", "out of range 2..8", hp->ssm_d_conv, err, errlen);
    if (hp->ssm_d_state == 0 || hp->ssm_d_state > 256)
        return invalid(g, a, "ssm.state_size", "out of range 1..256", hp->ssm_d_state, err, errlen);
    if (hp->ssm_n_group == 0 || hp->ssm_n_group > 1024)
        return invalid(g, a, "ssm.group_count", "out of range 1..1024", hp->ssm_n_group, err, errlen);
    if (hp->ssm_dt_rank == 0 || hp->ssm_dt_rank % hp->ssm_n_group)
        return invalid(g, a, "ssm.time_step_rank", "must be a positive multiple of ssm.group_count", hp->ssm_dt_rank,
                       err, errlen);
    if (hp->ssm_d_inner == 0 || hp->ssm_d_inner % hp->ssm_dt_rank || hp->ssm_d_inner / hp->ssm_dt_rank > 4096)
        return invalid(g, a, "ssm.inner_size", "must be ssm.time_step_rank times a head size <= 4096",
                       hp->ssm_d_inner, err, errlen);
    if (hp->full_attn_interval == 0)
        return invalid(g, a, "full_attention_interval", "must be > 0", 0, err, errlen);
    return CLSPEC_OK;
}

int cs_hparams_read(const struct cs_gguf *g, struct cs_hparams *hp, char *err, size_t errlen)
{
    memset(hp, 0, sizeof *hp);
    int rc = cs_gguf_get_str(g, "general.architecture", hp->arch_name, sizeof hp->arch_name, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: missing key general.architecture", g->path);
    if (rc != CLSPEC_OK)
        return cs_err_prefix(err, errlen, rc, "%s: key general.architecture", g->path);
    const char *a = hp->arch_name;
    if (!strcmp(a, "llama")) {
        hp->arch = CS_ARCH_LLAMA;
        hp->rope_style = CS_ROPE_NORMAL;
    } else if (!strcmp(a, "qwen2")) {
        hp->arch = CS_ARCH_QWEN2;
        hp->rope_style = CS_ROPE_NEOX;
    } else if (!strcmp(a, "qwen3")) {
        hp->arch = CS_ARCH_QWEN3;
        hp->rope_style = CS_ROPE_NEOX;
    } else if (!strcmp(a, "qwen35")) {
        hp->arch = CS_ARCH_QWEN35;
        hp->rope_style = CS_ROPE_NEOX; /* interleaved M-RoPE: for text every section has the token position */
    } else {
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                      "%s: general.architecture '%s' is not supported (llama, qwen2, qwen3, qwen35)", g->path, a);
    }

    uint32_t block_count = 0, nextn = 0;
    TRY(get_u32(g, a, "block_count", true, &block_count, err, errlen));
    TRY(get_u32(g, a, "nextn_predict_layers", false, &nextn, err, errlen));
    if (block_count == 0 || block_count > 4096)
        return invalid(g, a, "block_count", "out of range 1..4096", block_count, err, errlen);
    if (nextn >= block_count)
        return invalid(g, a, "nextn_predict_layers", "not below block_count", nextn, err, errlen);
    hp->n_layer_total = block_count;
    hp->n_layer = block_count - nextn;

    TRY(get_u32(g, a, "embedding_length", true, &hp->n_embd, err, errlen));
    TRY(get_u32(g, a, "feed_forward_length", true, &hp->n_ff, err, errlen));
    TRY(get_u32(g, a, "attention.head_count", true, &hp->n_head, err, errlen));
    hp->n_head_kv = hp->n_head;
    TRY(get_u32(g, a, "attention.head_count_kv", false, &hp->n_head_kv, err, errlen));
    if (hp->n_embd == 0 || hp->n_embd > (1u << 20))
        return invalid(g, a, "embedding_length", "out of range", hp->n_embd, err, errlen);
    if (hp->n_ff == 0 || hp->n_ff > (1u << 22))
        return invalid(g, a, "feed_forward_length", "out of range", hp->n_ff, err, errlen);
    if (hp->n_head == 0 || hp->n_head > 4096)
        return invalid(g, a, "attention.head_count", "out of range", hp->n_head, err, errlen);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0)
        return invalid(g, a, "attention.head_count_kv", "must divide attention.head_count", hp->n_head_kv,
                       err, errlen);

    rc = get_u32(g, a, "attention.key_length", false, &hp->head_dim, err, errlen);
    TRY(rc);
    if (rc == CLSPEC_E_NOTFOUND) {
        if (hp->n_embd % hp->n_head != 0)
            return invalid(g, a, "embedding_length", "not a multiple of attention.head_count", hp->n_embd,
                           err, errlen);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->head_dim == 0 || hp->head_dim > 4096 || hp->head_dim % 2 != 0)
        return invalid(g, a, "attention.key_length", "must be even and in 2..4096", hp->head_dim, err, errlen);
    uint32_t vlen = hp->head_dim;
    TRY(get_u32(g, a, "attention.value_length", false, &vlen, err, errlen));
    if (vlen != hp->head_dim)
        return invalid(g, a, "attention.value_length", "differs from the key length (unsupported)", vlen, err,
                       errlen);

    hp->n_rot = hp->head_dim;
    TRY(get_u32(g, a, "rope.dimension_count", false, &hp->n_rot, err, errlen));
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return invalid(g, a, "rope.dimension_count", "must be even and at most the head dimension", hp->n_rot,
                       err, errlen);

    hp->rms_eps = 1e-5f;
    rc = get_f32(g, a, "attention.layer_norm_rms_epsilon", true, &hp->rms_eps, err, errlen);
    if (rc < 0)
        return rc;
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f))
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key %s.attention.layer_norm_rms_epsilon = %g: out of range (0, 1)",
                      g->path, a, hp->rms_eps);

    hp->rope_freq_base = 10000.0f;
    TRY(get_f32(g, a, "rope.freq_base", false, &hp->rope_freq_base, err, errlen));
    if (!(hp->rope_freq_base > 1.0f && isfinite(hp->rope_freq_base)))
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key %s.rope.freq_base = %g: must be > 1", g->path, a,
                      hp->rope_freq_base);

    /* rope scaling: "{arch}.rope.scaling.type" (none|linear) + ".factor", or
     * the older "{arch}.rope.scale_linear". */
    hp->rope_freq_scale = 1.0f;
    char key[128], stype[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    rc = cs_gguf_get_str(g, key, stype, sizeof stype, err, errlen);
    if (rc != CLSPEC_OK && rc != CLSPEC_E_NOTFOUND)
        return cs_err_prefix(err, errlen, rc, "%s: key %s", g->path, key);
    float factor = 0.0f;
    if (rc == CLSPEC_OK && strcmp(stype, "none") != 0) {
        if (strcmp(stype, "linear") != 0)
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: key %s = '%s': only linear rope scaling is supported",
                          g->path, key, stype);
        TRY(get_f32(g, a, "rope.scaling.factor", true, &factor, err, errlen));
    } else if (rc == CLSPEC_E_NOTFOUND) {
        TRY(get_f32(g, a, "rope.scale_linear", false, &factor, err, errlen));
    }
    if (factor != 0.0f) {
        if (!(factor > 0.0f && isfinite(factor)))
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: rope scaling factor %g must be > 0", g->path, factor);
        hp->rope_freq_scale = 1.0f / factor;
    }

    TRY(get_u32(g, a, "context_length", false, &hp->n_ctx_train, err, errlen));

    /* n_vocab: {arch}.vocab_size, else the tokenizer's token list, else token_embd's rows. */
    rc = get_u32(g, a, "vocab_size", false, &hp->n_vocab, err, errlen);
    TRY(rc);
    if (rc == CLSPEC_E_NOTFOUND) {
        const struct cs_gguf_kv *kv = cs_gguf_find(g, "tokenizer.ggml.tokens");
        const struct cs_gguf_tensor *te = cs_gguf_find_tensor(g, "token_embd.weight");
        if (kv && kv->type == CS_GGUF_ARRAY && kv->arr_n > 0 && kv->arr_n < (1u << 31))
            hp->n_vocab = (uint32_t)kv->arr_n;
        else if (te && te->n_dims == 2 && te->ne[1] < (1u << 31))
            hp->n_vocab = (uint32_t)te->ne[1];
        else
            return cs_err(err, errlen, CLSPEC_E_FORMAT,
                          "%s: vocabulary size unknown (no %s.vocab_size, tokenizer.ggml.tokens or token_embd.weight)",
                          g->path, a);
    }
    if (hp->n_vocab == 0)
        return invalid(g, a, "vocab_size", "must be > 0", 0, err, errlen);
    if (hp->arch == CS_ARCH_QWEN35)
        return read_qwen35(g, hp, err, errlen);
    return CLSPEC_OK;
}

/* Finds name and checks its shape (n_dims, ne0, ne1). required=false: absent -> *out = NULL. */
static int want(const struct cs_gguf *g, const char *name, int n_dims, uint64_t ne0, uint64_t ne1, bool required,
                bool f32_only, const struct cs_gguf_tensor **out, char *err, size_t errlen)
{
    const struct cs_gguf_tensor *t = cs_gguf_find_tensor(g, name);
    *out = t;
    if (!t) {
        if (required)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s is missing", g->path, name);
        return CLSPEC_OK;
    }
    bool ok = t->ne[0] == ne0 && t->ne[2] == 1 && t->ne[3] == 1 && (n_dims == 1 ? t->ne[1] == 1 : t->ne[1] == ne1);
    if (!ok) {
        if (n_dims == 1)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%llu]",
                          g->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                          (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (unsigned long long)ne0);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                      g->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                      (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (unsigned long long)ne0,
                      (unsigned long long)ne1);
    }
    const struct cs_type_info *ti = cs_type_get(t->type);
    if (!ti || !ti->dequant)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: tensor %s: type %s is not supported", g->path, name,
                      cs_type_name(t->type));
    if (f32_only && t->type != CS_TYPE_F32 && t->type != CS_TYPE_F16 && t->type != CS_TYPE_BF16)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: tensor %s: type %s (a 1-D tensor must be f32/f16/bf16)",
                      g->path, name, cs_type_name(t->type));
    return CLSPEC_OK;
}

static void count(struct cs_model *m, const struct cs_gguf_tensor *t)
{
    if (t) {
        m->n_params += t->n_elems;
        m->n_bytes += t->size;
    }
}

/* The rest of a qwen35 layer (attn_norm done; L->recurrent set from ssm_conv1d's presence). */
static int load_qwen35_layer(struct cs_model *m, uint32_t il, struct cs_layer *L, char *err, size_t errlen)
{
    const struct cs_gguf *g = m->gguf;
    const struct cs_hparams *hp = &m->hp;
    const uint64_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff,
                   C = cs_hp_dn_conv_dim(hp), DI = hp->ssm_d_inner, HV = hp->ssm_dt_rank;
    char n[96];
    int rc;
#define W(field, suffix, nd, a0, a1, f32)                                               \
    do {                                                                                \
        snprintf(n, sizeof n, "blk.%u." suffix, il);                                   \
        if ((rc = want(g, n, nd, a0, a1, true, f32, &L->field, err, errlen)) < 0)      \
            return rc;                                                                  \
        count(m, L->field);                                                             \
    } while (0)
    if (L->recurrent) {
        W(wqkv, "attn_qkv.weight", 2, E, C, false);
        W(wz, "attn_gate.weight", 2, E, DI, false);
        W(conv1d, "ssm_conv1d.weight", 2, hp->ssm_d_conv, C, true);
        W(w_beta, "ssm_beta.weight", 2, E, HV, false);
        W(w_alpha, "ssm_alpha.weight", 2, E, HV, false);
        W(dt_bias, "ssm_dt.bias", 1, HV, 1, true);
        W(ssm_a, "ssm_a", 1, HV, 1, true);
        W(ssm_norm, "ssm_norm.weight", 1, cs_hp_dn_dv(hp), 1, true);
        W(ssm_out, "ssm_out.weight", 2, DI, E, false);
    } else {
        W(wq, "attn_q.weight", 2, E, 2 * Q, false); /* per head [q | gate] */
        W(wk, "attn_k.weight", 2, E, KV, false);
        W(wv, "attn_v.weight", 2, E, KV, false);
        W(wo, "attn_output.weight", 2, Q, E, false);
        W(q_norm, "attn_q_norm.weight", 1, hp->head_dim, 1, true);
        W(k_norm, "attn_k_norm.weight", 1, hp->head_dim, 1, true);
    }
    W(ffn_norm, "post_attention_norm.weight", 1, E, 1, true);
    W(w_gate, "ffn_gate.weight", 2, E, F, false);
    W(w_up, "ffn_up.weight", 2, E, F, false);
    W(w_down, "ffn_down.weight", 2, F, E, false);
#undef W
    if (L->recurrent)
        m->hp.n_recurrent++;
    else if ((il + 1) % hp->full_attn_interval != 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT,
                      "%s: layer %u has no ssm_conv1d but full_attention_interval %u makes it a delta-net layer",
                      g->path, il, hp->full_attn_interval);
    return CLSPEC_OK;
}

int cs_model_from_gguf(struct cs_gguf *g, struct cs_model **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_model *m = calloc(1, sizeof *m);
    if (!m) {
        cs_gguf_close(g);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", g->path);
    }
    m->gguf = g;
    int rc = cs_hparams_read(g, &m->hp, err, errlen);
    if (rc < 0)
        goto fail;
    const struct cs_hparams *hp = &m->hp;
    uint64_t E = hp->n_embd, V = hp->n_vocab, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff;

    if ((rc = want(g, "token_embd.weight", 2, E, V, true, false, &m->tok_embd, err, errlen)) < 0 ||
        (rc = want(g, "output_norm.weight", 1, E, 1, true, true, &m->output_norm, err, errlen)) < 0 ||
        (rc = want(g, "output.weight", 2, E, V, false, false, &m->output, err, errlen)) < 0)
        goto fail;
    m->hp.tied_output = m->output == NULL;
    if (!m->output)
        m->output = m->tok_embd;
    count(m, m->tok_embd);
    count(m, m->output_norm);
    if (!m->hp.tied_output)
        count(m, m->output);

    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", g->path);
        goto fail;
    }
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        struct cs_layer *L = &m->layers[il];
        char n[96];
        bool q2 = hp->arch == CS_ARCH_QWEN2, q3 = hp->arch == CS_ARCH_QWEN3;
#define W(field, suffix, nd, a0, a1, req, f32)                                          \
    do {                                                                                \
        snprintf(n, sizeof n, "blk.%u." suffix, il);                                   \
        if ((rc = want(g, n, nd, a0, a1, req, f32, &L->field, err, errlen)) < 0)       \
            goto fail;                                                                  \
        count(m, L->field);                                                             \
    } while (0)
        W(attn_norm, "attn_norm.weight", 1, E, 1, true, true);
        if (hp->arch == CS_ARCH_QWEN35) {
            snprintf(n, sizeof n, "blk.%u.ssm_conv1d.weight", il);
            L->recurrent = cs_gguf_find_tensor(g, n) != NULL;
            if ((rc = load_qwen35_layer(m, il, L, err, errlen)) < 0)
                goto fail;
            continue;
        }
        W(wq, "attn_q.weight", 2, E, Q, true, false);
        W(wk, "attn_k.weight", 2, E, KV, true, false);
        W(wv, "attn_v.weight", 2, E, KV, true, false);
        W(wo, "attn_output.weight", 2, Q, E, true, false);
        W(bq, "attn_q.bias", 1, Q, 1, q2, true);
        W(bk, "attn_k.bias", 1, KV, 1, q2, true);
        W(bv, "attn_v.bias", 1, KV, 1, q2, true);
        W(q_norm, "attn_q_norm.weight", 1, hp->head_dim, 1, q3, true);
        W(k_norm, "attn_k_norm.weight", 1, hp->head_dim, 1, q3, true);
        W(ffn_norm, "ffn_norm.weight", 1, E, 1, true, true);
        W(w_gate, "ffn_gate.weight", 2, E, F, true, false);
        W(w_up, "ffn_up.weight", 2, E, F, true, false);
        W(w_down, "ffn_down.weight", 2, F, E, true, false);
#undef W
        /* q/k/v biases are required for qwen2 and used when present for the
         * others (as llama.cpp does); q/k norms are a qwen3 feature only. */
        if (!q3) {
            if (L->q_norm)
                m->n_params -= L->q_norm->n_elems, m->n_bytes -= L->q_norm->size;
            if (L->k_norm)
                m->n_params -= L->k_norm->n_elems, m->n_bytes -= L->k_norm->size;
            L->q_norm = L->k_norm = NULL;
        }
    }
    *out = m;
    return CLSPEC_OK;
fail:
    cs_model_free(m);
    return rc;
}

int cs_model_load(const char *path, struct cs_model **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_gguf *g = NULL;
    int rc = cs_gguf_open(path, &g, err, errlen);
    if (rc < 0)
        return rc;
    return cs_model_from_gguf(g, out, err, errlen);
}

void cs_model_free(struct cs_model *m)
{
    if (!m)
        return;
    free(m->layers);
    cs_gguf_close(m->gguf);
    free(m);
}
