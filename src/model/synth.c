/* synth.c: see synth.h. Tensor names, shapes and metadata keys follow
 * llama.cpp's converter (ne[0] innermost: token_embd.weight {n_embd, n_vocab},
 * blk.N.attn_q.weight {n_embd, n_head*head_dim}, ...). Weights: 2-D matrices
 * N(0, 1/fan_in) (so each projection keeps activations near unit scale), the
 * embedding N(0, 0.02^2), norms 1 + N(0, 0.02^2), biases N(0, 0.02^2). Each
 * tensor has its own random stream seeded from (seed, name), generated row by
 * row and quantized as it is written. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/rng.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "gguf/quant.h"
#include "model/synth.h"

#define MAX_EXTENT (1u << 20) /* generous upper bound for any one dimension */
#define MAX_LAYERS 1024

enum kind { K_EMBD, K_MAT, K_NORM, K_BIAS, K_CONV, K_SSM_A, K_DT_BIAS };

struct plan {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
    enum kind kind;
    const char *opt; /* the option that sets ne[0], for messages */
};

/* per-tensor fill state */
struct fill {
    struct cs_rng rng; /* the tensor's own stream (seed and name) */
    float mean, std;
    uint32_t type;
    uint64_t ne0, row_bytes;
    float *row;      /* shared scratch, ne0 floats at most max ne0 */
};

void cs_synth_defaults(struct cs_synth_params *p)
{
    memset(p, 0, sizeof *p);
    p->arch = "llama";
    p->dim = 256;
    p->n_layer = 4;
    p->n_head = 8;
    p->n_kv_head = 4;
    p->ffn = 768;
    p->ctx = 2048;
    p->type = CS_TYPE_F32;
    p->output_type = -1;
    p->seed = 1;
}

int cs_synth_preset(const char *name, struct cs_synth_params *p, char *err, size_t errlen)
{
    if (!strcmp(name, "110m")) {
        p->dim = 768, p->n_layer = 12, p->n_head = 12, p->n_kv_head = 12, p->ffn = 2048;
        p->ctx = 1024, p->head_dim = 0, p->tied = true; /* like llama2.c's stories110M */
    } else if (!strcmp(name, "1.1b")) {
        p->dim = 2048, p->n_layer = 22, p->n_head = 32, p->n_kv_head = 4, p->ffn = 5632;
        p->ctx = 2048, p->head_dim = 0, p->tied = false; /* like TinyLlama */
    } else {
        return cs_err(err, errlen, CLSPEC_E_INVAL, "unknown preset '%s' (known: 110m, 1.1b)", name);
    }
    return CLSPEC_OK;
}

int cs_synth_file_type(uint32_t type)
{
    switch (type) {
    case CS_TYPE_F32: return 0;
    case CS_TYPE_F16: return 1;
    case CS_TYPE_Q4_0: return 2;
    case CS_TYPE_Q8_0: return 7;
    case CS_TYPE_Q4_K: return 14; /* mostly Q4_K (llama.cpp's Q4_K_S id; Q4_K_M is 15) */
    case CS_TYPE_Q5_K: return 16;
    case CS_TYPE_Q6_K: return 18;
    case CS_TYPE_BF16: return 32;
    default: return -1;
    }
}

static int arch_id(const char *arch)
{
    if (!arch)
        return -1;
    if (!strcmp(arch, "llama"))
        return 0;
    if (!strcmp(arch, "qwen2"))
        return 1;
    if (!strcmp(arch, "qwen35"))
        return 3;
    if (!strcmp(arch, "qwen3"))
        return 2;
    return -1;
}

static uint32_t head_dim_of(const struct cs_synth_params *p)
{
    return p->head_dim ? p->head_dim : p->dim / p->n_head;
}

static uint32_t out_type_of(const struct cs_synth_params *p)
{
    return p->output_type >= 0 ? (uint32_t)p->output_type : p->q4_k_m ? CS_TYPE_Q6_K : p->type;
}

/* The Q4_K_M mix (clspec's recipe, shaped like llama.cpp's): Q4_K everywhere
 * except output.weight (Q6_K, out_type_of) and attn_v / ffn_down (more_bits
 * true) of the first and last eighth of the layers and of every third layer
 * in between, which get Q6_K. Without q4_k_m: p->type. */
static uint32_t mat_type(const struct cs_synth_params *p, uint32_t layer, bool more_bits)
{
    if (!p->q4_k_m || !more_bits)
        return p->type;
    const uint32_t n = p->n_layer, e = n / 8;
    const bool edge = layer < e || layer >= n - e, third = layer >= e && (layer - e) % 3 == 2;
    return edge || third ? CS_TYPE_Q6_K : p->type;
}

static void add_plan(struct plan *pl, size_t *n, const char *name, uint32_t n_dims, uint64_t ne0,
                     uint64_t ne1, uint32_t type, enum kind kind, const char *opt)
{
    struct plan *t = &pl[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->type = type;
    t->kind = kind;
    t->opt = opt;
}

/* qwen35's delta-net shape, derived from the attention shape: q/k and value
 * heads of min(128, head_dim), as many value heads as fill --dim (inner size
 * = dim), as many q/k heads; 4 conv taps; every 4th layer is attention. */
#define Q35_INTERVAL 4
#define Q35_CONV 4
static uint32_t q35_dk(const struct cs_synth_params *p)
{
    return CS_MIN(128u, head_dim_of(p));
}
static uint32_t q35_heads(const struct cs_synth_params *p)
{
    return CS_MAX(1u, p->dim / q35_dk(p));
}

/* The tensor list in file order; returns the count (pl has room for it, see plan_max). */
static size_t plan_max(const struct cs_synth_params *p)
{
    return 3 + (size_t)p->n_layer * 14;
}

/* A qwen35 layer's mixer: gated attention ((l+1) % 4 == 0) or gated delta-net. */
static void plan_qwen35_mixer(const struct cs_synth_params *p, uint32_t l, struct plan *pl, size_t *n)
{
    char nm[64];
    const uint64_t hd = head_dim_of(p), q = hd * p->n_head, kv = hd * p->n_kv_head, dk = q35_dk(p),
                   H = q35_heads(p), di = H * dk, C = 2 * H * dk + di;
#define NM(s) (snprintf(nm, sizeof nm, "blk.%u." s, l), nm)
    if ((l + 1) % Q35_INTERVAL == 0) {
        add_plan(pl, n, NM("attn_q.weight"), 2, p->dim, 2 * q, p->type, K_MAT, "--dim"); /* per head [q | gate] */
        add_plan(pl, n, NM("attn_k.weight"), 2, p->dim, kv, p->type, K_MAT, "--dim");
        add_plan(pl, n, NM("attn_v.weight"), 2, p->dim, kv, p->type, K_MAT, "--dim");
        add_plan(pl, n, NM("attn_q_norm.weight"), 1, hd, 1, CS_TYPE_F32, K_NORM, "--head-dim");
        add_plan(pl, n, NM("attn_k_norm.weight"), 1, hd, 1, CS_TYPE_F32, K_NORM, "--head-dim");
        add_plan(pl, n, NM("attn_output.weight"), 2, q, p->dim, p->type, K_MAT, "--heads x --head-dim");
    } else {
        add_plan(pl, n, NM("attn_qkv.weight"), 2, p->dim, C, p->type, K_MAT, "--dim");
        add_plan(pl, n, NM("attn_gate.weight"), 2, p->dim, di, p->type, K_MAT, "--dim");
        add_plan(pl, n, NM("ssm_conv1d.weight"), 2, Q35_CONV, C, CS_TYPE_F32, K_CONV, "--dim");
        add_plan(pl, n, NM("ssm_dt.bias"), 1, H, 1, CS_TYPE_F32, K_DT_BIAS, "--dim");
        add_plan(pl, n, NM("ssm_a"), 1, H, 1, CS_TYPE_F32, K_SSM_A, "--dim");
        add_plan(pl, n, NM("ssm_beta.weight"), 2, p->dim, H, p->type, K_MAT, "--dim");
        add_plan(pl, n, NM("ssm_alpha.weight"), 2, p->dim, H, p->type, K_MAT, "--dim");
        add_plan(pl, n, NM("ssm_norm.weight"), 1, dk, 1, CS_TYPE_F32, K_NORM, "--head-dim");
        add_plan(pl, n, NM("ssm_out.weight"), 2, di, p->dim, p->type, K_MAT, "--dim");
    }
#undef NM
}

static size_t make_plan(const struct cs_synth_params *p, uint64_t n_vocab, struct plan *pl)
{
    int arch = arch_id(p->arch);
    uint64_t hd = head_dim_of(p), q = hd * p->n_head, kv = hd * p->n_kv_head;
    size_t n = 0;
    char nm[64];
    add_plan(pl, &n, "token_embd.weight", 2, p->dim, n_vocab, p->type, K_EMBD, "--dim");
    for (uint32_t l = 0; l < p->n_layer; l++) {
#define NM(s) (snprintf(nm, sizeof nm, "blk.%u." s, l), nm)
        add_plan(pl, &n, NM("attn_norm.weight"), 1, p->dim, 1, CS_TYPE_F32, K_NORM, "--dim");
        if (arch == 3) {
            plan_qwen35_mixer(p, l, pl, &n);
            add_plan(pl, &n, NM("post_attention_norm.weight"), 1, p->dim, 1, CS_TYPE_F32, K_NORM, "--dim");
            add_plan(pl, &n, NM("ffn_gate.weight"), 2, p->dim, p->ffn, p->type, K_MAT, "--dim");
            add_plan(pl, &n, NM("ffn_up.weight"), 2, p->dim, p->ffn, p->type, K_MAT, "--dim");
            add_plan(pl, &n, NM("ffn_down.weight"), 2, p->ffn, p->dim, p->type, K_MAT, "--ffn");
            continue;
        }
        add_plan(pl, &n, NM("attn_q.weight"), 2, p->dim, q, p->type, K_MAT, "--dim");
        add_plan(pl, &n, NM("attn_k.weight"), 2, p->dim, kv, p->type, K_MAT, "--dim");
        add_plan(pl, &n, NM("attn_v.weight"), 2, p->dim, kv, mat_type(p, l, true), K_MAT, "--dim");
        if (arch == 1) {
            add_plan(pl, &n, NM("attn_q.bias"), 1, q, 1, CS_TYPE_F32, K_BIAS, "--heads");
            add_plan(pl, &n, NM("attn_k.bias"), 1, kv, 1, CS_TYPE_F32, K_BIAS, "--kv-heads");
            add_plan(pl, &n, NM("attn_v.bias"), 1, kv, 1, CS_TYPE_F32, K_BIAS, "--kv-heads");
        }
        if (arch == 2) {
            add_plan(pl, &n, NM("attn_q_norm.weight"), 1, hd, 1, CS_TYPE_F32, K_NORM, "--head-dim");
            add_plan(pl, &n, NM("attn_k_norm.weight"), 1, hd, 1, CS_TYPE_F32, K_NORM, "--head-dim");
        }
        add_plan(pl, &n, NM("attn_output.weight"), 2, q, p->dim, p->type, K_MAT,
                 p->head_dim ? "--heads x --head-dim" : "--dim");
        add_plan(pl, &n, NM("ffn_norm.weight"), 1, p->dim, 1, CS_TYPE_F32, K_NORM, "--dim");
        add_plan(pl, &n, NM("ffn_gate.weight"), 2, p->dim, p->ffn, p->type, K_MAT, "--dim");
        add_plan(pl, &n, NM("ffn_up.weight"), 2, p->dim, p->ffn, p->type, K_MAT, "--dim");
        add_plan(pl, &n, NM("ffn_down.weight"), 2, p->ffn, p->dim, mat_type(p, l, true), K_MAT, "--ffn");
#undef NM
    }
    add_plan(pl, &n, "output_norm.weight", 1, p->dim, 1, CS_TYPE_F32, K_NORM, "--dim");
    if (!p->tied)
        add_plan(pl, &n, "output.weight", 2, p->dim, n_vocab, out_type_of(p), K_MAT, "--dim");
    return n;
}

static int check_type(uint32_t type, const char *opt, char *err, size_t errlen)
{
    const struct cs_type_info *ti = cs_type_get(type);
    if (!ti || !ti->quant || cs_synth_file_type(type) < 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s %s: unsupported (use f32, f16, bf16, q8_0, q4_0, q4_K, q5_K or q6_K)",
                      opt, cs_type_name(type));
    return CLSPEC_OK;
}

int cs_synth_check(const struct cs_synth_params *p, uint64_t n_vocab, char *err, size_t errlen)
{
    if (arch_id(p->arch) < 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "--arch '%s': unknown (llama, qwen2, qwen3 or qwen35)",
                      p->arch ? p->arch : "");
    const struct {
        const char *opt;
        uint32_t v, max;
    } lim[] = {
        {"--dim", p->dim, MAX_EXTENT},       {"--layers", p->n_layer, MAX_LAYERS},
        {"--heads", p->n_head, 4096},        {"--kv-heads", p->n_kv_head, 4096},
        {"--ffn", p->ffn, MAX_EXTENT},       {"--ctx", p->ctx, 1u << 24},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(lim); i++)
        if (lim[i].v == 0 || lim[i].v > lim[i].max)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "%s %u: must be in 1..%u", lim[i].opt,
                          lim[i].v, lim[i].max);
    if (p->n_head % p->n_kv_head)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "--heads %u is not a multiple of --kv-heads %u",
                      p->n_head, p->n_kv_head);
    if (!p->head_dim && p->dim % p->n_head)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "--dim %u is not divisible by --heads %u (give --head-dim to set the head size)",
                      p->dim, p->n_head);
    uint32_t hd = head_dim_of(p);
    if (hd % 2 || hd > 4096 || (uint64_t)hd * p->n_head > MAX_EXTENT)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "head dimension %u: must be even and at most 4096", hd);
    if (p->output_type >= 0 && p->tied)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "--output-type needs an untied output (drop --tied)");
    if (p->q4_k_m && p->type != CS_TYPE_Q4_K)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "--type q4_K_M: the matrices must be q4_K, not %s",
                      cs_type_name(p->type));
    int rc = check_type(p->type, "--type", err, errlen);
    if (!rc)
        rc = check_type(out_type_of(p), "--output-type", err, errlen);
    if (rc)
        return rc;
    if (n_vocab > INT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "vocabulary of %llu tokens is too large",
                      (unsigned long long)n_vocab);
    struct plan *pl = malloc(plan_max(p) * sizeof *pl);
    if (!pl)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    size_t n = make_plan(p, n_vocab ? n_vocab : 1, pl);
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t rb;
        if (!cs_row_bytes(pl[i].type, pl[i].ne[0], &rb))
            rc = cs_err(err, errlen, CLSPEC_E_INVAL,
                        "type %s needs rows that are multiples of %u: %s has rows of %llu (%s)",
                        cs_type_name(pl[i].type), cs_type_get(pl[i].type)->block_elems, pl[i].name,
                        (unsigned long long)pl[i].ne[0], pl[i].opt);
    }
    free(pl);
    return rc;
}

/* ---- random numbers: src/base/rng.h; each tensor seeded by the seed and its name ---- */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

static int fill_rows(void *user, uint64_t row0, uint64_t n_rows, void *dst, char *err, size_t errlen)
{
    (void)row0;
    struct fill *f = user;
    uint8_t *out = dst;
    for (uint64_t r = 0; r < n_rows; r++) {
        for (uint64_t i = 0; i < f->ne0; i++)
            f->row[i] = f->mean + f->std * cs_rng_normal(&f->rng);
        if (cs_quantize_row(f->type, f->row, out + r * f->row_bytes, (int64_t)f->ne0) != 0)
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "cannot quantize to %s",
                          cs_type_name(f->type));
    }
    return CLSPEC_OK;
}

/* ---- the file ---- */

static int add_meta(struct cs_gguf_writer *w, const struct cs_synth_params *p, uint64_t n_vocab,
                    char *err, size_t errlen)
{
    int arch = arch_id(p->arch);
    char name[64], key[128];
    snprintf(name, sizeof name, "synth-%s", p->arch);
    float eps = p->rms_eps > 0 ? p->rms_eps : (arch == 0 ? 1e-5f : 1e-6f);
    float base = p->rope_base > 0 ? p->rope_base : (arch == 0 ? 10000.0f : 1000000.0f);
    uint32_t hd = head_dim_of(p);
    int rc = cs_gguf_add_str(w, "general.architecture", p->arch, err, errlen);
    if (!rc)
        rc = cs_gguf_add_str(w, "general.name", p->name ? p->name : name, err, errlen);
#define U32(k, v) \
    if (!rc) \
        rc = (snprintf(key, sizeof key, "%s." k, p->arch), cs_gguf_add_u32(w, key, (v), err, errlen))
#define F32(k, v) \
    if (!rc) \
        rc = (snprintf(key, sizeof key, "%s." k, p->arch), cs_gguf_add_f32(w, key, (v), err, errlen))
    U32("vocab_size", (uint32_t)n_vocab);
    U32("context_length", p->ctx);
    U32("embedding_length", p->dim);
    U32("block_count", p->n_layer);
    U32("feed_forward_length", p->ffn);
    U32("rope.dimension_count", arch == 3 ? CS_MAX(2u, hd / 4 / 2 * 2) : hd); /* qwen35: partial rotary 0.25 */
    U32("attention.head_count", p->n_head);
    U32("attention.head_count_kv", p->n_kv_head);
    if (arch == 3) {
        U32("ssm.conv_kernel", Q35_CONV);
        U32("ssm.state_size", q35_dk(p));
        U32("ssm.group_count", q35_heads(p));
        U32("ssm.time_step_rank", q35_heads(p));
        U32("ssm.inner_size", q35_heads(p) * q35_dk(p));
        U32("full_attention_interval", Q35_INTERVAL);
    }
    if (arch >= 2 || hd * p->n_head != p->dim) {
        U32("attention.key_length", hd);
        U32("attention.value_length", hd);
    }
    F32("rope.freq_base", base);
    F32("attention.layer_norm_rms_epsilon", eps);
#undef U32
#undef F32
    if (!rc)
        rc = cs_gguf_add_u32(w, "general.file_type", p->q4_k_m ? 15u : (uint32_t)cs_synth_file_type(p->type),
                             err, errlen);
    if (!rc && cs_type_get(p->type)->block_elems > 1)
        rc = cs_gguf_add_u32(w, "general.quantization_version", 2, err, errlen);
    if (!rc)
        rc = cs_gguf_add_u32(w, "general.alignment", 32, err, errlen);
    return rc;
}

int cs_synth_write(const struct cs_synth_params *p, const char *path, uint64_t *n_params_out,
                   char *err, size_t errlen)
{
    if (!p->vocab_path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "no vocabulary file (--vocab FILE)");
    int rc = cs_synth_check(p, 0, err, errlen);
    if (rc)
        return rc;
    struct cs_gguf *voc = NULL;
    struct cs_gguf_writer *w = NULL;
    struct plan *pl = NULL;
    struct fill *fs = NULL;
    float *row = NULL;
    rc = cs_gguf_open(p->vocab_path, &voc, err, errlen);
    if (rc)
        return rc;
    const struct cs_gguf_kv *tok = NULL;
    rc = cs_gguf_get_arr(voc, "tokenizer.ggml.tokens", CS_GGUF_STRING, &tok, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND)
        rc = cs_err(err, errlen, rc, "%s: no tokenizer.ggml.tokens array", p->vocab_path);
    if (!rc && tok->arr_n == 0)
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: empty tokenizer.ggml.tokens", p->vocab_path);
    uint64_t n_vocab = rc ? 0 : tok->arr_n;
    if (!rc)
        rc = cs_synth_check(p, n_vocab, err, errlen);
    if (!rc)
        rc = cs_gguf_writer_new(path, &w, err, errlen);
    if (!rc)
        rc = add_meta(w, p, n_vocab, err, errlen);
    for (uint64_t i = 0; !rc && i < voc->n_kv; i++)
        if (!strncmp(voc->kv[i].key, "tokenizer.", 10))
            rc = cs_gguf_add_kv(w, &voc->kv[i], err, errlen);
    size_t n = 0;
    uint64_t max_ne0 = 0, n_params = 0;
    if (!rc) {
        pl = malloc(plan_max(p) * sizeof *pl);
        fs = pl ? calloc(plan_max(p), sizeof *fs) : NULL;
        if (!fs)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    if (!rc) {
        n = make_plan(p, n_vocab, pl);
        for (size_t i = 0; i < n; i++)
            max_ne0 = CS_MAX(max_ne0, pl[i].ne[0]);
        if (!(row = malloc(max_ne0 * sizeof *row)))
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; !rc && i < n; i++) {
        struct fill *f = &fs[i];
        cs_rng_seed(&f->rng, p->seed * 0x9E3779B97F4A7C15ull ^ name_hash(pl[i].name));
        f->type = pl[i].type;
        f->ne0 = pl[i].ne[0];
        f->row = row;
        cs_row_bytes(f->type, f->ne0, &f->row_bytes);
        switch (pl[i].kind) {
        case K_EMBD: f->mean = 0.0f, f->std = 0.02f; break;
        case K_MAT: f->mean = 0.0f, f->std = 1.0f / sqrtf((float)pl[i].ne[0]); break;
        case K_NORM: f->mean = 1.0f, f->std = 0.02f; break;
        case K_BIAS: f->mean = 0.0f, f->std = 0.02f; break;
        case K_CONV: f->mean = 0.0f, f->std = 0.5f; break;
        case K_SSM_A: f->mean = -0.5f, f->std = 0.05f; break; /* -exp(A_log): negative decay rates */
        case K_DT_BIAS: f->mean = 0.5f, f->std = 0.3f; break;
        }
        n_params += pl[i].ne[0] * pl[i].ne[1];
        rc = cs_gguf_add_tensor(w, pl[i].name, pl[i].n_dims, pl[i].ne, pl[i].type, NULL, fill_rows,
                                f, err, errlen);
    }
    if (!rc)
        rc = cs_gguf_writer_finish(w, err, errlen);
    if (!rc && n_params_out)
        *n_params_out = n_params;
    free(row);
    free(fs);
    free(pl);
    cs_gguf_writer_free(w);
    cs_gguf_close(voc);
    return rc;
}
