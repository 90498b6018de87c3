/* lcpp_ref.c: llama.cpp CPU-backend arithmetic, modelled in plain C (see
 * lcpp_ref.h for what and why). Built with -std=c11, so the compiler does not
 * fuse a*b+c: every fma here is an explicit fmaf, as the vector code has it. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ref/lcpp_ref.h"
#include "ops/lcpp_ops.h" /* cs_lcpp_rope_table */

#define QK 32 /* q8_0 block */

struct cs_lcpp {
    const struct cs_model *m;
    struct cs_hparams hp;
    uint32_t n_ctx, n_past;
    uint16_t *kc;  /* (n_layer, n_ctx, kv_dim) f16: K after RoPE, cell-major */
    uint16_t *vc;  /* (n_layer, kv_dim, n_ctx) f16: V transposed, as llama.cpp stores it without flash attention */
};

static float h2f(uint16_t h) { return cs_f16_to_f32(h); }
static float rf16(float x) { return cs_f16_to_f32(cs_f32_to_f16(x)); }

static float cs_lcpp_reduce16(const float a[16])
{
    float t[8], u[4], v[2];
    for (int i = 0; i < 8; i++)
        t[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++)
        u[i] = t[i] + t[i + 4];
    for (int i = 0; i < 2; i++)
        v[i] = u[i] + u[i + 2];
    return v[0] + v[1];
}

static float cs_lcpp_hsum8(const float a[8])
{
    float r[4];
    for (int i = 0; i < 4; i++)
        r[i] = a[i + 4] + a[i];
    return (r[0] + r[2]) + (r[1] + r[3]);
}

static float cs_lcpp_expf(float x)
{
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                         fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (fabsf(n) > 192.0f || isnan(n))
        return n <= 0.0f || isnan(n) ? 0.0f : INFINITY;
    return ldexpf(j, (int)n); /* _mm512_scalef_ps: n is integral */
}

static float cs_lcpp_silu(float x)
{
    const float e = cs_lcpp_expf(0.0f - x);
    return x / (1.0f + e);
}

static void cs_lcpp_quantize_q8_0(const float *x, int8_t qs[32], float *d)
{
    float amax = 0.0f;
    for (int i = 0; i < QK; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    const float dd = amax / 127.f;
    *d = rf16(dd);
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int i = 0; i < QK; i++)
        qs[i] = (int8_t)nearbyintf(x[i] * id); /* _mm256_round_ps(_MM_ROUND_NEAREST): half to even */
}

/* ---- dot products: one weight row (type t, n elements) with an activation ---- */

/* tinyBLAS<16>: 16 lanes of fma over the row, then the reduce tree. w is read through get(). */
static float dot16_f32(const float *w, const float *x, int n)
{
    float acc[16] = {0};
    for (int c = 0; c < n; c += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = fmaf(w[c + l], x[c + l], acc[l]);
    return cs_lcpp_reduce16(acc);
}

static float dot16_hh(const uint16_t *w, const uint16_t *x, int n)
{
    float acc[16] = {0};
    for (int c = 0; c < n; c += 16)
        for (int l = 0; l < 16; l++)
            acc[l] = fmaf(h2f(w[c + l]), h2f(x[c + l]), acc[l]);
    return cs_lcpp_reduce16(acc);
}

/* ggml_vec_dot_f32 (AVX-512): 4 x 16 lanes per 64 elements, folded (0+2, 1+3, 0+1), reduced, float tail. */
static float vec_dot_f32(const float *w, const float *x, int n)
{
    const int np = n & ~63;
    float s[4][16] = {{0}};
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                s[j][l] = fmaf(w[i + 16 * j + l], x[i + 16 * j + l], s[j][l]);
    for (int l = 0; l < 16; l++) {
        s[0][l] = s[0][l] + s[2][l];
        s[1][l] = s[1][l] + s[3][l];
    }
    for (int l = 0; l < 16; l++)
        s[0][l] = s[0][l] + s[1][l];
    float sum = cs_lcpp_reduce16(s[0]);
    for (int i = np; i < n; i++)
        sum = sum + w[i] * x[i]; /* not contracted (an fma here: stories260K 3e-3 off) */
    return sum;
}

/* ggml_vec_dot_f16 with both sides f16 (AVX-512: 4 x 16 lanes per 64, tail in double). */
static float vec_dot_f16(const uint16_t *w, const uint16_t *x, int n)
{
    const int np = n & ~63;
    float s[4][16] = {{0}};
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++)
                s[j][l] = fmaf(h2f(w[i + 16 * j + l]), h2f(x[i + 16 * j + l]), s[j][l]);
    for (int l = 0; l < 16; l++) {
        s[0][l] = s[0][l] + s[2][l];
        s[1][l] = s[1][l] + s[3][l];
    }
    for (int l = 0; l < 16; l++)
        s[0][l] = s[0][l] + s[1][l];
    double sum = np ? (double)cs_lcpp_reduce16(s[0]) : 0.0;
    for (int i = np; i < n; i++)
        sum += (double)(h2f(w[i]) * h2f(x[i]));
    return (float)sum;
}

/* Weight block b of a q8_0 (34 bytes) or q4_0 (18 bytes: nibbles - 8, low
 * nibbles first) row: its f16 scale's value and 32 int8 values. */
static float wblock(uint32_t type, const uint8_t *row, int b, int8_t q[32])
{
    const uint8_t *blk = row + (size_t)b * (type == CS_TYPE_Q8_0 ? 34 : 18);
    if (type == CS_TYPE_Q8_0)
        memcpy(q, blk + 2, 32);
    else
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((blk[2 + j] & 0xf) - 8);
            q[j + 16] = (int8_t)((blk[2 + j] >> 4) - 8);
        }
    return h2f((uint16_t)(blk[0] | blk[1] << 8));
}

/* q8_0 / q4_0 x q8_0 (ggml_vec_dot_q8_0_q8_0 / _q4_0_q8_0 AVX2, tinyBLAS_Q0_AVX). */
static float dot_q0(uint32_t type, const uint8_t *w, const int8_t *xq, const float *xd, int nb)
{
    float acc[8] = {0};
    for (int b = 0; b < nb; b++) {
        int8_t wq[32];
        const float d = wblock(type, w, b, wq) * xd[b];
        const int8_t *q = xq + (size_t)b * QK;
        for (int l = 0; l < 8; l++) {
            int s = 0;
            for (int k = 0; k < 4; k++)
                s += wq[4 * l + k] * q[4 * l + k];
            acc[l] = fmaf(d, (float)s, acc[l]);
        }
    }
    return cs_lcpp_hsum8(acc);
}

/* q4_0 repacked for AVX2 (ggml's q4_0_8x8 gemv/gemm, taken when rows % 8 == 0):
 * each block's whole 32-element integer dot, acc = fma(dot, d_w * d_x, acc). */
static float dot_q4_0_8x8(const uint8_t *w, const int8_t *xq, const float *xd, int nb)
{
    float acc = 0.0f;
    for (int b = 0; b < nb; b++) {
        int8_t wq[32];
        const float d = wblock(CS_TYPE_Q4_0, w, b, wq) * xd[b];
        int s = 0;
        for (int k = 0; k < 32; k++)
            s += wq[k] * xq[(size_t)b * QK + k];
        acc = fmaf((float)s, d, acc);
    }
    return acc;
}

/* y (n, n_out) = x (n, n_in) . W^T with llama.cpp's kernel choice for W's type. */
static int matmul(const struct cs_lcpp *L, const struct cs_gguf_tensor *W, const float *x, int n, float *y, char *err,
                  size_t errlen)
{
    const int n_in = (int)W->ne[0], n_out = (int)W->ne[1];
    if (W->type == CS_TYPE_Q8_0 || W->type == CS_TYPE_Q4_0) {
        if (n_in % QK)
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp_ref: %s: rows of %d are not blocks of 32", W->name,
                          n_in);
        const int nb = n_in / QK;
        const size_t row_bytes = (size_t)nb * (W->type == CS_TYPE_Q8_0 ? 34 : 18);
        const bool repacked = W->type == CS_TYPE_Q4_0 && n_out % 8 == 0; /* ggml's AVX2 q4_0_8x8 */
        int8_t *xq = malloc((size_t)n_in);
        float *xd = malloc((size_t)nb * sizeof(float));
        if (!xq || !xd) {
            free(xq);
            free(xd);
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp_ref: out of memory");
        }
        for (int t = 0; t < n; t++) {
            for (int b = 0; b < nb; b++)
                cs_lcpp_quantize_q8_0(x + (size_t)t * n_in + b * QK, xq + b * QK, &xd[b]);
            for (int r = 0; r < n_out; r++) {
                const uint8_t *row = (const uint8_t *)W->data + (size_t)r * row_bytes;
                y[(size_t)t * n_out + r] = repacked ? dot_q4_0_8x8(row, xq, xd, nb) : dot_q0(W->type, row, xq, xd, nb);
            }
        }
        free(xq);
        free(xd);
        return CLSPEC_OK;
    }
    /* llamafile_sgemm serves only batches (n >= 2); a single row goes through ggml_vec_dot_* */
    const bool tiny = n >= 2 && n_in % 16 == 0;
    if (W->type == CS_TYPE_F32) {
        const float *w = W->data;
        for (int t = 0; t < n; t++)
            for (int r = 0; r < n_out; r++)
                y[(size_t)t * n_out + r] = tiny ? dot16_f32(w + (size_t)r * n_in, x + (size_t)t * n_in, n_in)
                                               : vec_dot_f32(w + (size_t)r * n_in, x + (size_t)t * n_in, n_in);
        return CLSPEC_OK;
    }
    if (W->type == CS_TYPE_F16) {
        const uint16_t *w = W->data;
        uint16_t *xh = malloc((size_t)n_in * sizeof(uint16_t));
        if (!xh)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp_ref: out of memory");
        for (int t = 0; t < n; t++) {
            const float *xr = x + (size_t)t * n_in;
            for (int i = 0; i < n_in; i++)
                xh[i] = cs_f32_to_f16(xr[i]);
            for (int r = 0; r < n_out; r++)
                y[(size_t)t * n_out + r] = tiny ? dot16_hh(w + (size_t)r * n_in, xh, n_in)
                                                          : vec_dot_f16(w + (size_t)r * n_in, xh, n_in);
        }
        free(xh);
        return CLSPEC_OK;
    }
    return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp_ref: %s: weight type %s is not modelled", W->name,
                  cs_type_name(W->type));
}

int cs_lcpp_matmul_raw(uint32_t type, const void *W, int n_in, int n_out, const float *x, int n, bool batch, float *y,
                       char *err, size_t errlen)
{
    struct cs_gguf_tensor t = {.name = (char *)"raw", .n_dims = 2, .ne = {(uint64_t)n_in, (uint64_t)n_out, 1, 1},
                               .type = type, .data = W};
    const struct cs_lcpp L = {0};
    if (!batch)
        for (int r = 0; r < n; r++)
            CS_TRY(matmul(&L, &t, x + (size_t)r * n_in, 1, y + (size_t)r * n_out, err, errlen));
    else if (n < 2)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "lcpp_ref: a batch has >= 2 rows");
    else
        CS_TRY(matmul(&L, &t, x, n, y, err, errlen));
    return CLSPEC_OK;
}

/* ---- row ops ---- */

void cs_lcpp_swiglu_row(float *g, const float *u, int F)
{
    const int nv = F & ~15; /* ggml_vec_silu_f32: 16-wide vector part, then the C library's expf */
    for (int i = 0; i < F; i++)
        g[i] = i < nv ? cs_lcpp_silu(g[i]) : g[i] / (1.0f + expf(-g[i]));
    for (int i = 0; i < F; i++)
        g[i] = g[i] * u[i];
}

void cs_lcpp_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

/* The NORM / NEOX rotation of one token's heads (n_heads x head_dim). */
static void rope(const struct cs_lcpp *L, float *v, int n_heads, int pos)
{
    const struct cs_hparams *hp = &L->hp;
    const int n_dims = (int)hp->n_rot, hd = (int)hp->head_dim;
    float cache[512];
    cs_lcpp_rope_table(hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, pos, cache);
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hd;
        for (int i = 0; i < n_dims / 2; i++) {
            const float c = cache[2 * i], s = cache[2 * i + 1];
            const int a = hp->rope_style == CS_ROPE_NEOX ? i : 2 * i;
            const int b = hp->rope_style == CS_ROPE_NEOX ? i + n_dims / 2 : 2 * i + 1;
            const float x0 = x[a], x1 = x[b];
            x[a] = fmaf(x0, c, -(x1 * s)); /* as GCC contracts it (plain float: stories260K 1e-3 off) */
            x[b] = fmaf(x0, s, x1 * c);
        }
    }
}

/* ---- the model ---- */

static const float *f32_of(const struct cs_gguf_tensor *t) { return t ? (const float *)t->data : NULL; }

int cs_lcpp_new(const struct cs_model *m, uint32_t n_ctx, struct cs_lcpp **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct cs_hparams *hp = &m->hp;
    if (hp->arch != CS_ARCH_LLAMA)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp_ref: only llama models are modelled");
    if (n_ctx == 0 || n_ctx % 32 || hp->n_rot > 512)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "lcpp_ref: n_ctx must be a positive multiple of 32");
    if (m->output_norm->type != CS_TYPE_F32)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp_ref: norms must be f32");
    for (uint32_t i = 0; i < hp->n_layer; i++)
        if (m->layers[i].attn_norm->type != CS_TYPE_F32 || m->layers[i].ffn_norm->type != CS_TYPE_F32 ||
            m->layers[i].bq || m->layers[i].bk || m->layers[i].bv)
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "lcpp_ref: norms must be f32, no biases");
    struct cs_lcpp *L = calloc(1, sizeof *L);
    if (!L)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp_ref: out of memory");
    L->m = m;
    L->hp = *hp;
    L->n_ctx = n_ctx;
    const size_t cells = (size_t)hp->n_layer * n_ctx * cs_hp_kv_dim(hp);
    L->kc = calloc(cells, sizeof(uint16_t));
    L->vc = calloc(cells, sizeof(uint16_t));
    if (!L->kc || !L->vc) {
        cs_lcpp_free(L);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp_ref: out of memory (KV cache)");
    }
    *out = L;
    return CLSPEC_OK;
}

void cs_lcpp_free(struct cs_lcpp *L)
{
    if (!L)
        return;
    free(L->kc);
    free(L->vc);
    free(L);
}


/* Attention of the n batch rows (q: (n, q_dim) after RoPE) over cells
 * 0..n_kv-1 of layer il; writes (n, q_dim). */
static void attention(const struct cs_lcpp *L, uint32_t il, const float *q, int n, uint32_t n_kv, float *out,
                      float *sc, uint16_t *qh)
{
    const struct cs_hparams *hp = &L->hp;
    const int hd = (int)hp->head_dim, Qd = (int)cs_hp_q_dim(hp), KVd = (int)cs_hp_kv_dim(hp);
    const int grp = (int)(hp->n_head / hp->n_head_kv);
    const float scale = 1.0f / sqrtf((float)hd);
    const uint16_t *K = L->kc + (size_t)il * L->n_ctx * KVd;
    const uint16_t *V = L->vc + (size_t)il * L->n_ctx * KVd;
    /* K.Q: sgemm refuses one token, and a batch's permuted Q is not contiguous, so Q is rounded to
     * f16 and ggml_vec_dot_f16 runs. V.P: a batch's P is contiguous (tinyBLAS<16> with f32 P); one
     * token's P is rounded to f16 for ggml_vec_dot_f16. */
    uint16_t *ph = (uint16_t *)(sc + L->n_ctx);
    for (int t = 0; t < n; t++) {
        const uint32_t pos = L->n_past + (uint32_t)t;
        for (int h = 0; h < (int)hp->n_head; h++) {
            const int g = h / grp;
            const float *qv = q + (size_t)t * Qd + (size_t)h * hd;
            for (int i = 0; i < hd; i++)
                qh[i] = cs_f32_to_f16(qv[i]);
            for (uint32_t c = 0; c < n_kv; c++)
                sc[c] = n >= 2 && hd % 16 == 0 ? dot16_hh(K + (size_t)c * KVd + (size_t)g * hd, qh, hd)
                                               : vec_dot_f16(K + (size_t)c * KVd + (size_t)g * hd, qh, hd);
            /* ggml_compute_forward_soft_max_f32: scale, mask, max, exp + double sum, scale by 1/sum */
            float mx = -INFINITY;
            for (uint32_t c = 0; c < n_kv; c++) {
                sc[c] = sc[c] * scale;
                if (c > pos)
                    sc[c] = -INFINITY;
                mx = fmaxf(mx, sc[c]);
            }
            double sum = 0.0;
            for (uint32_t c = 0; c < n_kv; c += 16) {
                float e[16];
                for (int l = 0; l < 16; l++)
                    sc[c + l] = e[l] = cs_lcpp_expf(sc[c + l] - mx);
                sum += (double)cs_lcpp_reduce16(e);
            }
            const float inv = (float)(1.0 / sum);
            for (uint32_t c = 0; c < n_kv; c++) {
                sc[c] *= inv;
                ph[c] = cs_f32_to_f16(sc[c]);
            }
            for (int i = 0; i < hd; i++) {
                const uint16_t *vr = V + ((size_t)g * hd + i) * L->n_ctx;
                out[(size_t)t * Qd + (size_t)h * hd + i] =
                    n >= 2 ? dot16_hh(vr, ph, (int)n_kv) : vec_dot_f16(vr, ph, (int)n_kv);
            }
        }
    }
}

int cs_lcpp_eval(struct cs_lcpp *L, const int32_t *tokens, int n, float *logits, char *err, size_t errlen)
{
    const struct cs_model *m = L->m;
    const struct cs_hparams *hp = &L->hp;
    if (n <= 0 || L->n_past + (uint32_t)n > L->n_ctx)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "lcpp_ref: %d tokens do not fit (%u of %u used)", n, L->n_past,
                      L->n_ctx);
    const int E = (int)hp->n_embd, Qd = (int)cs_hp_q_dim(hp), KVd = (int)cs_hp_kv_dim(hp), F = (int)hp->n_ff;
    const int hd = (int)hp->head_dim;
    const int W = CS_MAX(CS_MAX(E, Qd), F);
    float *x = malloc((size_t)n * E * sizeof(float));
    float *a = malloc((size_t)n * W * sizeof(float));
    float *q = malloc((size_t)n * Qd * sizeof(float));
    float *k = malloc((size_t)n * KVd * sizeof(float));
    float *v = malloc((size_t)n * KVd * sizeof(float));
    float *att = malloc((size_t)n * Qd * sizeof(float));
    float *g = malloc((size_t)n * F * sizeof(float));
    float *u = malloc((size_t)n * F * sizeof(float));
    float *o = malloc((size_t)n * E * sizeof(float));
    float *sc = malloc(L->n_ctx * (sizeof(float) + sizeof(uint16_t))); /* scores, then their f16 copy */
    uint16_t *qh = malloc((size_t)hd * sizeof(uint16_t));
    int rc = CLSPEC_OK;
    if (!x || !a || !q || !k || !v || !att || !g || !u || !o || !sc || !qh) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "lcpp_ref: out of memory");
        goto done;
    }
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "lcpp_ref: token %d out of range", tokens[t]);
            goto done;
        }
        uint64_t rb = 0;
        cs_row_bytes(m->tok_embd->type, (uint64_t)E, &rb);
        cs_dequantize_row(m->tok_embd->type, (const uint8_t *)m->tok_embd->data + (size_t)tokens[t] * rb,
                          x + (size_t)t * E, E);
    }
    /* n_kv: the used cells after this batch, padded to 32 (llama_kv_cache's padding without flash attention) */
    uint32_t used = L->n_past + (uint32_t)n;
    uint32_t n_kv = (used + 31) / 32 * 32;
    if (n_kv > L->n_ctx)
        n_kv = L->n_ctx;
    int nr = n; /* rows still computed */
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const struct cs_layer *ly = &m->layers[il];
        for (int t = 0; t < n; t++)
            cs_lcpp_rmsnorm(a + (size_t)t * E, x + (size_t)t * E, f32_of(ly->attn_norm), E, hp->rms_eps);
        if ((rc = matmul(L, ly->wq, a, n, q, err, errlen)) < 0 || (rc = matmul(L, ly->wk, a, n, k, err, errlen)) < 0 ||
            (rc = matmul(L, ly->wv, a, n, v, err, errlen)) < 0)
            goto done;
        for (int t = 0; t < n; t++) {
            rope(L, q + (size_t)t * Qd, (int)hp->n_head, (int)(L->n_past + t));
            rope(L, k + (size_t)t * KVd, (int)hp->n_head_kv, (int)(L->n_past + t));
            const uint32_t cell = L->n_past + (uint32_t)t;
            uint16_t *kr = L->kc + ((size_t)il * L->n_ctx + cell) * KVd;
            for (int i = 0; i < KVd; i++) {
                kr[i] = cs_f32_to_f16(k[(size_t)t * KVd + i]);
                L->vc[((size_t)il * KVd + i) * L->n_ctx + cell] = cs_f32_to_f16(v[(size_t)t * KVd + i]);
            }
        }
        attention(L, il, q, n, n_kv, att, sc, qh);
        if ((rc = matmul(L, ly->wo, att, n, o, err, errlen)) < 0)
            goto done;
        for (size_t i = 0; i < (size_t)n * E; i++)
            x[i] = o[i] + x[i];
        if (il == hp->n_layer - 1 && nr > 1) { /* llama.cpp keeps only the output rows from here on */
            memmove(x, x + (size_t)(nr - 1) * E, (size_t)E * sizeof(float));
            nr = 1;
        }
        for (int t = 0; t < nr; t++)
            cs_lcpp_rmsnorm(a + (size_t)t * E, x + (size_t)t * E, f32_of(ly->ffn_norm), E, hp->rms_eps);
        if ((rc = matmul(L, ly->w_up, a, nr, u, err, errlen)) < 0 ||
            (rc = matmul(L, ly->w_gate, a, nr, g, err, errlen)) < 0)
            goto done;
        for (int t = 0; t < nr; t++)
            cs_lcpp_swiglu_row(g + (size_t)t * F, u + (size_t)t * F, F);
        if ((rc = matmul(L, ly->w_down, g, nr, o, err, errlen)) < 0)
            goto done;
        for (size_t i = 0; i < (size_t)nr * E; i++)
            x[i] = o[i] + x[i];
    }
    cs_lcpp_rmsnorm(a, x + (size_t)(nr - 1) * E, f32_of(m->output_norm), E, hp->rms_eps);
    rc = matmul(L, m->output, a, 1, logits, err, errlen);
    if (rc == CLSPEC_OK)
        L->n_past += (uint32_t)n;
done:
    free(x);
    free(a);
    free(q);
    free(k);
    free(v);
    free(att);
    free(g);
    free(u);
    free(o);
    free(sc);
    free(qh);
    return rc;
}
