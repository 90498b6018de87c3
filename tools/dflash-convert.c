/* dflash-convert.c: rewrites a DFlash drafter GGUF in the other layout.
 *
 *   dflash-convert IN.gguf OUT.gguf
 *
 * "dflash" (clspec's, ../shared/docs/FORMATS.md) <-> "dflash-draft" (the
 * layout the llama.cpp forks that ship DFlash use for published drafters):
 *   general.architecture          dflash                   dflash-draft
 *   shape keys                    dflash.KEY               dflash-draft.KEY
 *   block size                    dflash.block_size        dflash-draft.dflash.block_size
 *   target layers                 dflash.target_layers     dflash-draft.dflash.target_layer_ids
 *                                 (input of layer k: k)    (output of layer k: k - 1)
 *   feature count                 (n_taps * n_embd)        dflash-draft.dflash.n_target_features
 *   mask token                    tokenizer.ggml.mask_token_id (both; and dflash-draft.dflash.mask_token_id)
 *   feature projection / norm     fc / enc.output_norm     dflash_fc / dflash_hidden_norm
 *   each layer's FFN norm         blk.N.ffn_norm           blk.N.post_attention_norm
 * Tensor data is copied as is (any type). A dflash-draft file with
 * sliding-window layers is refused (the dflash layout has none). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"

#define MAX_TAPS 64

/* The generic shape keys, present under both prefixes. */
static const char *const shape_keys[] = {"block_count",
                                         "embedding_length",
                                         "feed_forward_length",
                                         "attention.head_count",
                                         "attention.head_count_kv",
                                         "attention.key_length",
                                         "attention.value_length",
                                         "rope.dimension_count",
                                         "attention.layer_norm_rms_epsilon",
                                         "attention.causal",
                                         "rope.freq_base",
                                         "context_length"};

/* A scalar KV under a new key. */
static int copy_scalar(struct cs_gguf_writer *w, const struct cs_gguf_kv *kv, const char *key, char *err,
                       size_t errlen)
{
    switch (kv->type) {
    case CS_GGUF_U8: case CS_GGUF_U16: case CS_GGUF_U32:
        return cs_gguf_add_u32(w, key, (uint32_t)kv->v.u, err, errlen);
    case CS_GGUF_U64: return cs_gguf_add_u64(w, key, kv->v.u, err, errlen);
    case CS_GGUF_I8: case CS_GGUF_I16: case CS_GGUF_I32:
        return cs_gguf_add_i32(w, key, (int32_t)kv->v.i, err, errlen);
    case CS_GGUF_I64: return cs_gguf_add_i64(w, key, kv->v.i, err, errlen);
    case CS_GGUF_F32: return cs_gguf_add_f32(w, key, (float)kv->v.f, err, errlen);
    case CS_GGUF_F64: return cs_gguf_add_f64(w, key, kv->v.f, err, errlen);
    case CS_GGUF_BOOL: return cs_gguf_add_bool(w, key, kv->v.u != 0, err, errlen);
    default: return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: not a scalar", kv->key);
    }
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* The tensor's name in the other layout (buf holds it when rewritten). */
static const char *tensor_name(const char *name, bool to_draft, char *buf, size_t n)
{
    /* top-level: clspec's name, then the dflash-draft names */
    static const char *const top[][3] = {
        {"fc.weight", "dflash_fc.weight", "dflash.fc.weight"},
        {"enc.output_norm.weight", "dflash_hidden_norm.weight", "dflash.hidden_norm.weight"}};
    for (size_t i = 0; i < CS_ARRAY_LEN(top); i++) {
        if (to_draft && strcmp(name, top[i][0]) == 0)
            return top[i][1];
        if (!to_draft && (strcmp(name, top[i][1]) == 0 || strcmp(name, top[i][2]) == 0))
            return top[i][0];
    }
    /* each layer's FFN norm: clspec's, then the dflash-draft names */
    static const char *const ffn[] = {".ffn_norm.weight", ".post_attention_norm.weight", ".attn_post_norm.weight"};
    const size_t L = strlen(name);
    for (size_t a = to_draft ? 0 : 1; a < (to_draft ? 1 : CS_ARRAY_LEN(ffn)); a++) {
        const size_t fl = strlen(ffn[a]);
        if (has_prefix(name, "blk.") && L > fl && strcmp(name + L - fl, ffn[a]) == 0) {
            snprintf(buf, n, "%.*s%s", (int)(L - fl), name, ffn[to_draft ? 1 : 0]);
            return buf;
        }
    }
    return name;
}

static int convert(const struct cs_gguf *g, const char *out, char *err, size_t errlen)
{
    char arch[32] = "";
    CS_TRY(cs_gguf_get_str(g, "general.architecture", arch, sizeof arch, err, errlen));
    const bool to_draft = strcmp(arch, "dflash") == 0;
    if (!to_draft && strcmp(arch, "dflash-draft") != 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: general.architecture '%s' is neither dflash nor dflash-draft",
                      g->path, arch);
    const char *src_pre = to_draft ? "dflash." : "dflash-draft.";
    const char *dst_pre = to_draft ? "dflash-draft." : "dflash.";
    const char *src_dpre = to_draft ? "dflash." : "dflash-draft.dflash.";
    const char *dst_dpre = to_draft ? "dflash-draft.dflash." : "dflash.";
    char k[160];
    snprintf(k, sizeof k, "%sattention.sliding_window", src_pre);
    if (!to_draft && cs_gguf_find(g, k))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: %s: the dflash layout has no sliding-window layers",
                      g->path, k);
    struct cs_gguf_writer *w = NULL;
    CS_TRY(cs_gguf_writer_new(out, &w, err, errlen));
    int rc = cs_gguf_add_str(w, "general.architecture", to_draft ? "dflash-draft" : "dflash", err, errlen);
    /* keys outside both prefixes (general.*, tokenizer.*) verbatim */
    for (uint64_t i = 0; rc == CLSPEC_OK && i < g->n_kv; i++) {
        const struct cs_gguf_kv *kv = &g->kv[i];
        if (strcmp(kv->key, "general.architecture") == 0 || has_prefix(kv->key, "dflash.") ||
            has_prefix(kv->key, "dflash-draft."))
            continue;
        rc = cs_gguf_add_kv(w, kv, err, errlen);
    }
    for (size_t i = 0; rc == CLSPEC_OK && i < CS_ARRAY_LEN(shape_keys); i++) {
        snprintf(k, sizeof k, "%s%s", src_pre, shape_keys[i]);
        const struct cs_gguf_kv *kv = cs_gguf_find(g, k);
        if (!kv)
            continue;
        char nk[160];
        snprintf(nk, sizeof nk, "%s%s", dst_pre, shape_keys[i]);
        rc = copy_scalar(w, kv, nk, err, errlen);
    }
    const struct cs_gguf_kv *kv = NULL;
    snprintf(k, sizeof k, "%sblock_size", src_dpre);
    if (rc == CLSPEC_OK && (kv = cs_gguf_find(g, k)) != NULL) {
        char nk[160];
        snprintf(nk, sizeof nk, "%sblock_size", dst_dpre);
        rc = copy_scalar(w, kv, nk, err, errlen);
    }
    /* target layers: clspec counts the input of layer k (k), dflash-draft the output of layer k - 1 */
    const struct cs_gguf_kv *taps = NULL;
    snprintf(k, sizeof k, "%s%s", src_dpre, to_draft ? "target_layers" : "target_layer_ids");
    if (rc == CLSPEC_OK && (taps = cs_gguf_find(g, k)) == NULL)
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key %s missing", g->path, k);
    if (rc == CLSPEC_OK && (taps->type != CS_GGUF_ARRAY || taps->arr_n < 1 || taps->arr_n > MAX_TAPS))
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s must be an array of 1..%d integers", g->path, k, MAX_TAPS);
    if (rc == CLSPEC_OK) {
        int32_t v[MAX_TAPS];
        for (uint64_t i = 0; i < taps->arr_n; i++)
            v[i] = (int32_t)cs_gguf_arr_int(taps, i) + (to_draft ? -1 : 1);
        char nk[160];
        snprintf(nk, sizeof nk, "%s%s", dst_dpre, to_draft ? "target_layer_ids" : "target_layers");
        rc = cs_gguf_add_arr(w, nk, CS_GGUF_I32, v, taps->arr_n, err, errlen);
    }
    uint32_t n_embd = 0;
    snprintf(k, sizeof k, "%sembedding_length", src_pre);
    if (rc == CLSPEC_OK)
        rc = cs_gguf_get_u32(g, k, &n_embd, err, errlen);
    if (rc == CLSPEC_OK && to_draft)
        rc = cs_gguf_add_u32(w, "dflash-draft.dflash.n_target_features", (uint32_t)taps->arr_n * n_embd, err, errlen);
    uint32_t mask = 0;
    const bool has_mask = cs_gguf_get_u32(g, "tokenizer.ggml.mask_token_id", &mask, err, errlen) == CLSPEC_OK ||
                          (!to_draft && cs_gguf_get_u32(g, "dflash-draft.dflash.mask_token_id", &mask, err,
                                                        errlen) == CLSPEC_OK);
    if (rc == CLSPEC_OK && has_mask && to_draft)
        rc = cs_gguf_add_u32(w, "dflash-draft.dflash.mask_token_id", mask, err, errlen);
    if (rc == CLSPEC_OK && has_mask && !to_draft && !cs_gguf_find(g, "tokenizer.ggml.mask_token_id"))
        rc = cs_gguf_add_u32(w, "tokenizer.ggml.mask_token_id", mask, err, errlen);
    /* tensors, renamed, data as is */
    for (uint64_t i = 0; rc == CLSPEC_OK && i < g->n_tensors; i++) {
        const struct cs_gguf_tensor *t = &g->tensors[i];
        char buf[160];
        rc = cs_gguf_add_tensor(w, tensor_name(t->name, to_draft, buf, sizeof buf), t->n_dims, t->ne, t->type,
                                t->data, NULL, NULL, err, errlen);
    }
    if (rc == CLSPEC_OK)
        rc = cs_gguf_writer_finish(w, err, errlen);
    cs_gguf_writer_free(w);
    if (rc == CLSPEC_OK)
        printf("%s (%s) -> %s (%s): %llu tensors\n", g->path, arch, out, to_draft ? "dflash-draft" : "dflash",
               (unsigned long long)g->n_tensors);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3 || argv[1][0] == '-') {
        fprintf(stderr, "usage: dflash-convert IN.gguf OUT.gguf\n"
                        "Rewrites a DFlash drafter in the other layout (dflash <-> dflash-draft).\n");
        return 2;
    }
    char err[CLSPEC_ERRLEN];
    struct cs_gguf *g = NULL;
    int rc = cs_gguf_open(argv[1], &g, err, sizeof err);
    if (rc == CLSPEC_OK)
        rc = convert(g, argv[2], err, sizeof err);
    cs_gguf_close(g);
    if (rc != CLSPEC_OK) {
        fprintf(stderr, "dflash-convert: %s\n", err);
        return 1;
    }
    return 0;
}
