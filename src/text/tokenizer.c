/* tokenizer.c: loading and validating the vocabulary (token hash, merge hash,
 * special-token list, byte tokens) and the accessors. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/gguf.h"
#include "text/pretok.h"
#include "text/tokenizer.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

/* ---------- hashing ---------- */

uint64_t cs_tok_fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t cs_tok_pair_hash(const char *l, size_t ln, const char *r, size_t rn)
{
    uint64_t h = cs_tok_fnv(CS_FNV0, l, ln);
    h = cs_tok_fnv(h, "\xff", 1); /* never inside valid UTF-8 */
    return cs_tok_fnv(h, r, rn);
}

int32_t cs_tokenizer_find(const struct cs_tokenizer *tok, const char *s, size_t n)
{
    size_t mask = tok->hash_cap - 1;
    for (size_t i = (size_t)cs_tok_fnv(CS_FNV0, s, n) & mask;; i = (i + 1) & mask) {
        int32_t e = tok->hash[i];
        if (e == 0)
            return NO_ID;
        e--;
        if (tok->text_len[e] == n && memcmp(tok->text + tok->text_off[e], s, n) == 0)
            return e;
    }
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* ---------- GPT-2 byte <-> unicode ---------- */

static uint32_t byte_to_cp(uint8_t b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        return b;
    /* the others, in byte order, map to 256, 257, ... */
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE)))
            n++;
    return 256 + n;
}

static void bytemap_init(struct cs_byte_map *m)
{
    char tmp[4];
    for (size_t i = 0; i < CS_ARRAY_LEN(m->rev); i++)
        m->rev[i] = -1;
    for (int b = 0; b < 256; b++) {
        m->cp[b] = byte_to_cp((uint8_t)b);
        m->len[b] = (uint8_t)cs_utf8_encode(m->cp[b], tmp);
        memcpy(m->utf8[b], tmp, m->len[b]);
        m->rev[m->cp[b]] = (int16_t)b;
    }
}

/* ---------- loading ---------- */

#define MAX_VOCAB (1 << 26) /* far above any real vocabulary */

static int get_str_opt(const struct cs_gguf *g, const char *key, char *buf, size_t n, char *err, size_t errlen)
{
    int rc = cs_gguf_get_str(g, key, buf, n, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND) {
        buf[0] = '\0';
        return CLSPEC_OK;
    }
    if (rc == CLSPEC_E_RANGE)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s: value too long", g->path, key);
    return rc;
}

static int get_bool_opt(const struct cs_gguf *g, const char *key, bool *v, char *err, size_t errlen)
{
    int rc = cs_gguf_get_bool(g, key, v, err, errlen);
    return rc == CLSPEC_E_NOTFOUND ? CLSPEC_OK : rc;
}

/* An optional token id: absent keeps *id; -1 / 0xFFFFFFFF mean "none". */
static int get_id_opt(const struct cs_gguf *g, const char *key, int32_t n_vocab, int32_t *id, char *err,
                      size_t errlen)
{
    int64_t v;
    int rc = cs_gguf_get_i64(g, key, &v, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND)
        return CLSPEC_OK;
    if (rc != CLSPEC_OK)
        return rc;
    if (v == -1 || v == 0xFFFFFFFFll) {
        *id = NO_ID;
        return CLSPEC_OK;
    }
    if (v < 0 || v >= n_vocab)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s = %lld is outside the vocabulary (%d tokens)",
                      g->path, key, (long long)v, (int)n_vocab);
    *id = (int32_t)v;
    return CLSPEC_OK;
}

/* A metadata array of n_vocab scalars (any numeric element type), or NULL. */
static int get_parallel(const struct cs_gguf *g, const char *key, uint64_t n, bool want_float,
                        const struct cs_gguf_kv **out, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv = cs_gguf_find(g, key);
    *out = NULL;
    if (!kv)
        return CLSPEC_OK;
    if (kv->type != CS_GGUF_ARRAY)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s: expected an array, found %s", g->path, key,
                      cs_gguf_type_name(kv->type));
    enum cs_gguf_type t = kv->arr_type;
    bool is_int = t == CS_GGUF_U8 || t == CS_GGUF_I8 || t == CS_GGUF_U16 || t == CS_GGUF_I16 ||
                  t == CS_GGUF_U32 || t == CS_GGUF_I32 || t == CS_GGUF_U64 || t == CS_GGUF_I64;
    bool is_float = t == CS_GGUF_F32 || t == CS_GGUF_F64;
    if (want_float ? !is_float : !is_int)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s: unexpected element type %s", g->path, key,
                      cs_gguf_type_name(t));
    if (kv->arr_n != n)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s has %llu entries but tokenizer.ggml.tokens has %llu",
                      g->path, key, (unsigned long long)kv->arr_n, (unsigned long long)n);
    *out = kv;
    return CLSPEC_OK;
}

static int load_tokens(struct cs_tokenizer *t, const struct cs_gguf *g, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv, *scores, *types;
    int rc = cs_gguf_get_arr(g, "tokenizer.ggml.tokens", CS_GGUF_STRING, &kv, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.tokens is missing", g->path);
    if (rc != CLSPEC_OK)
        return rc;
    if (kv->arr_n == 0 || kv->arr_n > MAX_VOCAB)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.tokens: %llu tokens", g->path,
                      (unsigned long long)kv->arr_n);
    if ((rc = get_parallel(g, "tokenizer.ggml.scores", kv->arr_n, true, &scores, err, errlen)) ||
        (rc = get_parallel(g, "tokenizer.ggml.token_type", kv->arr_n, false, &types, err, errlen)))
        return rc;

    size_t n = (size_t)kv->arr_n;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cs_gguf_str *s = &kv->arr_str[i];
        if (!cs_utf8_valid((const uint8_t *)s->ptr, (size_t)s->len))
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.tokens[%zu]: invalid UTF-8", g->path, i);
        total += s->len + 1;
        if (total >= UINT32_MAX)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.tokens: too much text", g->path);
    }
    t->n_vocab = (int32_t)n;
    t->text = malloc((size_t)total);
    t->text_off = malloc(n * sizeof(*t->text_off));
    t->text_len = malloc(n * sizeof(*t->text_len));
    t->score = malloc(n * sizeof(*t->score));
    t->type = malloc(n);
    t->eog = calloc(n, sizeof(*t->eog));
    t->hash_cap = pow2_at_least(2 * n);
    t->hash = calloc(t->hash_cap, sizeof(*t->hash));
    if (!t->text || !t->text_off || !t->text_len || !t->score || !t->type || !t->eog || !t->hash)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: tokenizer: out of memory", g->path);

    size_t off = 0, mask = t->hash_cap - 1;
    for (size_t i = 0; i < n; i++) {
        const struct cs_gguf_str *s = &kv->arr_str[i];
        memcpy(t->text + off, s->ptr, (size_t)s->len);
        t->text[off + s->len] = '\0';
        t->text_off[i] = (uint32_t)off;
        t->text_len[i] = (uint32_t)s->len;
        off += (size_t)s->len + 1;
        t->score[i] = scores ? (float)cs_gguf_arr_float(scores, i) : 0.0f;
        int64_t ty = types ? cs_gguf_arr_int(types, i) : CS_TT_NORMAL;
        if (ty < CS_TT_UNDEFINED || ty > CS_TT_BYTE)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.token_type[%zu] = %lld is not a token type",
                          g->path, i, (long long)ty);
        t->type[i] = (uint8_t)ty;
        /* insert; a repeated text maps to its last id (as llama.cpp's map does) */
        size_t h = (size_t)cs_tok_fnv(CS_FNV0, s->ptr, (size_t)s->len) & mask;
        for (;; h = (h + 1) & mask) {
            int32_t e = t->hash[h];
            if (e == 0 || (t->text_len[e - 1] == s->len && memcmp(t->text + t->text_off[e - 1], s->ptr, s->len) == 0)) {
                t->hash[h] = (int32_t)i + 1;
                break;
            }
        }
    }
    return CLSPEC_OK;
}

static int load_merges(struct cs_tokenizer *t, const struct cs_gguf *g, char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv;
    int rc = cs_gguf_get_arr(g, "tokenizer.ggml.merges", CS_GGUF_STRING, &kv, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.merges is missing (needed by gpt2)", g->path);
    if (rc != CLSPEC_OK)
        return rc;
    if (kv->arr_n > MAX_VOCAB)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.merges: %llu merges", g->path,
                      (unsigned long long)kv->arr_n);
    size_t n = (size_t)kv->arr_n;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cs_gguf_str *s = &kv->arr_str[i];
        if (!cs_utf8_valid((const uint8_t *)s->ptr, (size_t)s->len))
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.merges[%zu]: invalid UTF-8", g->path, i);
        /* "left right": the separator is the first space after the first byte */
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', (size_t)s->len - 1) : NULL;
        if (!sp)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.merges[%zu]: no space separating the pair",
                          g->path, i);
        total += s->len;
        if (total >= UINT32_MAX)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.merges: too much text", g->path);
    }
    t->n_merges = n;
    t->merges = malloc((n ? n : 1) * sizeof(*t->merges));
    t->merge_text = malloc(total ? (size_t)total : 1);
    t->mhash_cap = pow2_at_least(2 * n);
    t->mhash = calloc(t->mhash_cap, sizeof(*t->mhash));
    if (!t->merges || !t->merge_text || !t->mhash)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: tokenizer: out of memory", g->path);
    size_t off = 0, mask = t->mhash_cap - 1;
    for (size_t i = 0; i < n; i++) {
        const struct cs_gguf_str *s = &kv->arr_str[i];
        const char *sp = memchr(s->ptr + 1, ' ', (size_t)s->len - 1);
        size_t ln = (size_t)(sp - s->ptr), rn = (size_t)s->len - ln - 1;
        struct merge *m = &t->merges[i];
        memcpy(t->merge_text + off, s->ptr, ln);
        memcpy(t->merge_text + off + ln, sp + 1, rn);
        *m = (struct merge){(uint32_t)off, (uint32_t)ln, (uint32_t)(off + ln), (uint32_t)rn};
        off += ln + rn;
        /* insert; the first occurrence of a pair keeps its rank */
        size_t h = (size_t)cs_tok_pair_hash(s->ptr, ln, sp + 1, rn) & mask;
        for (;; h = (h + 1) & mask) {
            int32_t e = t->mhash[h];
            if (e == 0) {
                t->mhash[h] = (int32_t)i + 1;
                break;
            }
            const struct merge *o = &t->merges[e - 1];
            if (o->llen == ln && o->rlen == rn && memcmp(t->merge_text + o->loff, s->ptr, ln) == 0 &&
                memcmp(t->merge_text + o->roff, sp + 1, rn) == 0)
                break;
        }
    }
    return CLSPEC_OK;
}

struct len_id {
    uint32_t len;
    int32_t id;
};

/* Longest text first, then lowest id: a total order, so the result is stable. */
static int cmp_len_id(const void *a, const void *b)
{
    const struct len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool is_special_type(uint8_t ty)
{
    return ty == CS_TT_CONTROL || ty == CS_TT_USER_DEFINED || ty == CS_TT_UNKNOWN;
}

static int build_tables(struct cs_tokenizer *t, const char *path, char *err, size_t errlen)
{
    size_t n = (size_t)t->n_vocab, k = 0;
    for (size_t i = 0; i < n; i++)
        if (is_special_type(t->type[i]) && t->text_len[i] > 0)
            k++;
    struct len_id *tmp = malloc((k ? k : 1) * sizeof(*tmp));
    t->special = malloc((k ? k : 1) * sizeof(*t->special));
    if (!tmp || !t->special) {
        free(tmp);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: tokenizer: out of memory", path);
    }
    for (size_t i = 0; i < n; i++)
        if (is_special_type(t->type[i]) && t->text_len[i] > 0)
            tmp[t->n_special++] = (struct len_id){t->text_len[i], (int32_t)i};
    qsort(tmp, t->n_special, sizeof(*tmp), cmp_len_id);
    for (size_t i = 0; i < t->n_special; i++)
        t->special[i] = tmp[i].id;
    free(tmp);

    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id = NO_ID;
        if (t->kind == CS_TOK_SPM) {
            snprintf(buf, sizeof(buf), "<0x%02X>", b);
            id = cs_tokenizer_find(t, buf, 6);
            if (id == NO_ID && b < 0x80) {
                buf[0] = (char)b;
                id = cs_tokenizer_find(t, buf, 1);
            }
        } else {
            id = cs_tokenizer_find(t, t->bmap.utf8[b], t->bmap.len[b]);
        }
        t->byte_tok[b] = id;
    }
    /* byte tokens must spell a byte */
    for (size_t i = 0; i < n; i++) {
        if (t->type[i] != CS_TT_BYTE || t->kind != CS_TOK_SPM)
            continue;
        const char *s = t->text + t->text_off[i];
        unsigned v;
        char tail;
        if (t->text_len[i] != 6 || sscanf(s, "<0x%2x%c", &v, &tail) != 2 || tail != '>')
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.tokens[%zu]: byte token \"%s\" is not <0xNN>",
                          path, i, s);
    }
    /* end of generation */
    static const char *const eog_names[] = {"<|endoftext|>", "<|eot_id|>", "<|im_end|>", "<|end_of_text|>",
                                            "<|eom_id|>",    "<end_of_turn>", "<|end|>"};
    int32_t ids[] = {t->eos, t->eot, t->eom};
    for (size_t i = 0; i < CS_ARRAY_LEN(ids); i++)
        if (ids[i] != NO_ID)
            t->eog[ids[i]] = true;
    for (size_t i = 0; i < CS_ARRAY_LEN(eog_names); i++) {
        int32_t id = cs_tokenizer_find(t, eog_names[i], strlen(eog_names[i]));
        if (id != NO_ID && t->type[id] == CS_TT_CONTROL)
            t->eog[id] = true;
    }
    return CLSPEC_OK;
}

int cs_tokenizer_load(const struct cs_gguf *g, struct cs_tokenizer **out, char *err, size_t errlen)
{
    char model[64], pre[64];
    int rc;
    *out = NULL;
    if ((rc = get_str_opt(g, "tokenizer.ggml.model", model, sizeof(model), err, errlen)))
        return rc;
    if ((rc = get_str_opt(g, "tokenizer.ggml.pre", pre, sizeof(pre), err, errlen)))
        return rc;
    struct cs_tokenizer *t = calloc(1, sizeof(*t));
    if (!t)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: tokenizer: out of memory", g->path);
    bytemap_init(&t->bmap);
    if (strcmp(model, "llama") == 0) {
        t->kind = CS_TOK_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0; /* llama.cpp's defaults */
        t->add_bos = true, t->add_space_prefix = true;
    } else if (strcmp(model, "gpt2") == 0) {
        t->kind = CS_TOK_BPE;
        t->bos = t->eos = t->unk = NO_ID;
        int p = cs_pretok_from_name(pre);
        if (p < 0) {
            rc = cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: tokenizer.ggml.pre = \"%s\" is not supported "
                        "(default, gpt-2, llama3, llama-bpe, llama-v3, qwen2)", g->path, pre);
            goto fail;
        }
        t->pre = (enum cs_pretok)p;
        t->ignore_merges = t->pre == CS_PRETOK_LLAMA3;
        t->add_bos = t->pre == CS_PRETOK_LLAMA3;
    } else {
        if (model[0])
            rc = cs_err(err, errlen, CLSPEC_E_UNSUPPORTED,
                        "%s: tokenizer.ggml.model = \"%s\" is not supported (llama, gpt2)", g->path, model);
        else
            rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tokenizer.ggml.model is missing", g->path);
        goto fail;
    }
    t->eot = t->eom = NO_ID;
    if ((rc = load_tokens(t, g, err, errlen)))
        goto fail;
    if (t->kind == CS_TOK_BPE && (rc = load_merges(t, g, err, errlen)))
        goto fail;
    /* defaults that do not fit a tiny vocabulary mean "none" */
    if (t->bos >= t->n_vocab)
        t->bos = NO_ID;
    if (t->eos >= t->n_vocab)
        t->eos = NO_ID;
    if (t->unk >= t->n_vocab)
        t->unk = NO_ID;
    if ((rc = get_id_opt(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err, errlen)) ||
        (rc = get_id_opt(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err, errlen)) ||
        (rc = get_id_opt(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err, errlen)) ||
        (rc = get_id_opt(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err, errlen)) ||
        (rc = get_id_opt(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err, errlen)) ||
        (rc = get_bool_opt(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err, errlen)) ||
        (rc = get_bool_opt(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err, errlen)) ||
        (rc = get_bool_opt(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err, errlen)))
        goto fail;
    if (t->add_bos && t->bos == NO_ID)
        t->add_bos = false;
    if (t->add_eos && t->eos == NO_ID)
        t->add_eos = false;
    if ((rc = build_tables(t, g->path, err, errlen)))
        goto fail;
    *out = t;
    return CLSPEC_OK;
fail:
    cs_tokenizer_free(t);
    return rc;
}

void cs_tokenizer_free(struct cs_tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->type);
    free(t->eog);
    free(t->hash);
    free(t->special);
    free(t->merges);
    free(t->merge_text);
    free(t->mhash);
    free(t);
}

/* ---------- accessors ---------- */

enum cs_tok_kind cs_tokenizer_kind(const struct cs_tokenizer *t) { return t->kind; }
int32_t cs_tokenizer_n_vocab(const struct cs_tokenizer *t) { return t->n_vocab; }
int32_t cs_tokenizer_bos(const struct cs_tokenizer *t) { return t->bos; }
int32_t cs_tokenizer_eos(const struct cs_tokenizer *t) { return t->eos; }
int32_t cs_tokenizer_unk(const struct cs_tokenizer *t) { return t->unk; }
bool cs_tokenizer_add_bos(const struct cs_tokenizer *t) { return t->add_bos; }

bool cs_tokenizer_is_eog(const struct cs_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

const char *cs_tokenizer_text(const struct cs_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    if (len)
        *len = t->text_len[id];
    return t->text + t->text_off[id];
}

enum cs_tok_type cs_tokenizer_type(const struct cs_tokenizer *t, int32_t id)
{
    return (id < 0 || id >= t->n_vocab) ? CS_TT_UNDEFINED : (enum cs_tok_type)t->type[id];
}
