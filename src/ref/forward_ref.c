/* forward_ref.c: the reference transformer forward pass, one token at a time,
 * readable top to bottom (after llama2.c's run.c): embed, then per layer
 * RMSNorm -> QKV (+bias) -> (q/k norm) -> RoPE -> GQA causal attention -> Wo
 * -> residual -> RMSNorm -> SwiGLU FFN -> residual; final RMSNorm -> logits. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "ref/forward_ref.h"
#include "ref/ops_ref.h"

/* Dequantizes a whole tensor (row by row) into a fresh f32 array. */
static int dequant(const struct cs_gguf_tensor *t, float **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!t)
        return CLSPEC_OK;
    float *d = malloc(t->n_elems * sizeof(float));
    if (!d)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "tensor %s: out of memory (%llu floats)", t->name,
                      (unsigned long long)t->n_elems);
    uint64_t row_bytes = 0;
    uint64_t n_rows = t->n_elems / t->ne[0];
    if (!cs_row_bytes(t->type, t->ne[0], &row_bytes)) {
        free(d);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "tensor %s: rows of %llu elements do not fit type %s", t->name,
                      (unsigned long long)t->ne[0], cs_type_name(t->type));
    }
    const uint8_t *src = t->data;
    for (uint64_t r = 0; r < n_rows; r++) {
        if (cs_dequantize_row(t->type, src + r * row_bytes, d + r * t->ne[0], (int64_t)t->ne[0]) != 0) {
            free(d);
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "tensor %s: cannot dequantize type %s", t->name,
                          cs_type_name(t->type));
        }
    }
    *out = d;
    return CLSPEC_OK;
}

void cs_ref_free(struct cs_ref *r)
{
    if (!r)
        return;
    if (r->layers) {
        for (uint32_t i = 0; i < r->hp.n_layer; i++) {
            struct cs_ref_layer *L = &r->layers[i];
            float *p[] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->bq, L->bk, L->bv,
                          L->q_norm, L->k_norm, L->ffn_norm, L->w_gate, L->w_up, L->w_down};
            for (size_t j = 0; j < CS_ARRAY_LEN(p); j++)
                free(p[j]);
        }
        free(r->layers);
    }
    if (r->output != r->tok_embd)
        free(r->output);
    free(r->tok_embd);
    free(r->output_norm);
    float *s[] = {r->xr, r->k_cache, r->v_cache, r->x, r->xb, r->q, r->k, r->v, r->att, r->hb, r->hb2, r->xo};
    for (size_t j = 0; j < CS_ARRAY_LEN(s); j++)
        free(s[j]);
    free(r);
}

int cs_ref_load(const struct cs_model *m, uint32_t n_ctx, struct cs_ref **out, char *err, size_t errlen)
{
    *out = NULL;
    if (n_ctx == 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "reference forward: n_ctx must be > 0");
    struct cs_ref *r = calloc(1, sizeof *r);
    if (!r)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "reference forward: out of memory");
    r->model = m;
    r->hp = m->hp;
    r->n_ctx = n_ctx;
    const struct cs_hparams *hp = &r->hp;
    int rc;
    if ((rc = dequant(m->tok_embd, &r->tok_embd, err, errlen)) < 0 ||
        (rc = dequant(m->output_norm, &r->output_norm, err, errlen)) < 0)
        goto fail;
    if (hp->tied_output)
        r->output = r->tok_embd;
    else if ((rc = dequant(m->output, &r->output, err, errlen)) < 0)
        goto fail;
    r->layers = calloc(hp->n_layer, sizeof *r->layers);
    if (!r->layers)
        goto nomem;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        const struct cs_layer *S = &m->layers[i];
        struct cs_ref_layer *L = &r->layers[i];
        if ((rc = dequant(S->attn_norm, &L->attn_norm, err, errlen)) < 0 ||
            (rc = dequant(S->wq, &L->wq, err, errlen)) < 0 || (rc = dequant(S->wk, &L->wk, err, errlen)) < 0 ||
            (rc = dequant(S->wv, &L->wv, err, errlen)) < 0 || (rc = dequant(S->wo, &L->wo, err, errlen)) < 0 ||
            (rc = dequant(S->bq, &L->bq, err, errlen)) < 0 || (rc = dequant(S->bk, &L->bk, err, errlen)) < 0 ||
            (rc = dequant(S->bv, &L->bv, err, errlen)) < 0 ||
            (rc = dequant(S->q_norm, &L->q_norm, err, errlen)) < 0 ||
            (rc = dequant(S->k_norm, &L->k_norm, err, errlen)) < 0 ||
            (rc = dequant(S->ffn_norm, &L->ffn_norm, err, errlen)) < 0 ||
            (rc = dequant(S->w_gate, &L->w_gate, err, errlen)) < 0 ||
            (rc = dequant(S->w_up, &L->w_up, err, errlen)) < 0 ||
            (rc = dequant(S->w_down, &L->w_down, err, errlen)) < 0)
            goto fail;
    }
    size_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff;
    size_t cache = (size_t)hp->n_layer * n_ctx * KV;
    r->k_cache = calloc(cache, sizeof(float));
    r->v_cache = calloc(cache, sizeof(float));
    r->x = calloc(E, sizeof(float));
    r->xb = calloc(CS_MAX(E, Q), sizeof(float));
    r->xo = calloc(E, sizeof(float));
    r->q = calloc(Q, sizeof(float));
    r->k = calloc(KV, sizeof(float));
    r->v = calloc(KV, sizeof(float));
    r->att = calloc(n_ctx, sizeof(float));
    r->hb = calloc(F, sizeof(float));
    r->hb2 = calloc(F, sizeof(float));
    r->xr = calloc(CS_MAX(CS_MAX(E, Q), F), sizeof(float));
    if (!r->xr || !r->k_cache || !r->v_cache || !r->x || !r->xb || !r->xo || !r->q || !r->k || !r->v || !r->att || !r->hb ||
        !r->hb2)
        goto nomem;
    *out = r;
    return CLSPEC_OK;
nomem:
    rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "reference forward: out of memory");
fail:
    cs_ref_free(r);
    return rc;
}

void cs_fwdref_rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps)
{
    double ss = 0.0;
    for (uint32_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (uint32_t i = 0; i < n; i++)
        out[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

void cs_fwdref_matvec(float *out, const float *W, const float *x, uint32_t n_in, uint32_t n_out)
{
    for (uint32_t r = 0; r < n_out; r++) {
        const float *row = W + (size_t)r * n_in;
        float acc = 0.0f;
        for (uint32_t k = 0; k < n_in; k++)
            acc += row[k] * x[k];
        out[r] = acc;
    }
}

/* theta_i = freq_scale * (pos * theta_scale^i), theta_scale = freq_base^(-2 /
 * n_rot) (the power by repeated float products, as ggml), i < n_rot / 2; the
 * pair rotated by theta_i is (2i, 2i+1) (normal) or (i, i + n_rot/2) (NeoX). */
void cs_fwdref_rope(float *vec, uint32_t n_heads, uint32_t head_dim, uint32_t n_rot, uint32_t pos, float freq_base,
                 float freq_scale, enum cs_rope_style style)
{
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * head_dim;
        const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
        float theta_e = (float)pos; /* pos * theta_scale^i by repeated products, as ggml */
        for (uint32_t i = 0; i < n_rot / 2; i++, theta_e *= theta_scale) {
            float theta = freq_scale * theta_e;
            float c = cosf(theta), s = sinf(theta);
            uint32_t a = style == CS_ROPE_NEOX ? i : 2 * i;
            uint32_t b = style == CS_ROPE_NEOX ? i + n_rot / 2 : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

static float round_f16(float x) { return cs_f16_to_f32(cs_f32_to_f16(x)); }

/* llama.cpp's activation rounding before a dot product with weights of type t
 * (its x86 CPU backend: see cs_ref_round_rows). */
static void round_for(uint32_t t, float *x, uint32_t n)
{
    cs_ref_round_rows(t, x, 1, (int)n);
}

/* out = W x, with llama.cpp's input rounding for t's type when enabled. */
static void mv(struct cs_ref *r, float *out, const float *W, const struct cs_gguf_tensor *t, const float *x,
               uint32_t n_in, uint32_t n_out)
{
    if (r->llamacpp_rounding && t->type != CS_TYPE_F32) {
        memcpy(r->xr, x, n_in * sizeof(float));
        round_for(t->type, r->xr, n_in);
        x = r->xr;
    }
    cs_fwdref_matvec(out, W, x, n_in, n_out);
}

static void add_bias(float *x, const float *b, uint32_t n)
{
    if (b)
        for (uint32_t i = 0; i < n; i++)
            x[i] += b[i];
}

/* Rounds row x (n values) in place through type t's storage; nonzero on failure. */
static int kv_round(uint32_t t, float *x, uint32_t n)
{
    unsigned char *buf = malloc((size_t)n * 4 + 64);
    int rc = !buf || cs_kv_quantize_row(t, x, buf, n) != 0 || cs_kv_dequantize_row(t, buf, x, n) != 0;
    free(buf);
    return rc;
}

int cs_ref_forward(struct cs_ref *r, int32_t token, uint32_t pos, float *logits, float *hidden, char *err,
                   size_t errlen)
{
    const struct cs_hparams *hp = &r->hp;
    if (token < 0 || (uint32_t)token >= hp->n_vocab)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "reference forward: token %d out of range [0, %u)", token,
                      hp->n_vocab);
    if (pos >= r->n_ctx)
        return cs_err(err, errlen, CLSPEC_E_CONTEXT, "reference forward: position %u beyond the context (%u)", pos,
                      r->n_ctx);
    const uint32_t E = hp->n_embd, Q = cs_hp_q_dim(hp), KV = cs_hp_kv_dim(hp), F = hp->n_ff, D = hp->head_dim;
    const uint32_t group = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)D);
    float *x = r->x;

    /* token embedding */
    memcpy(x, r->tok_embd + (size_t)token * E, E * sizeof(float));

    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const struct cs_ref_layer *L = &r->layers[l];
        const struct cs_layer *S = &r->model->layers[l];
        if (hidden)
            memcpy(hidden + (size_t)l * E, x, E * sizeof(float));

        /* attention: norm, projections, (bias), (q/k norm), RoPE */
        cs_fwdref_rmsnorm(r->xb, x, L->attn_norm, E, hp->rms_eps);
        mv(r, r->q, L->wq, S->wq, r->xb, E, Q);
        mv(r, r->k, L->wk, S->wk, r->xb, E, KV);
        mv(r, r->v, L->wv, S->wv, r->xb, E, KV);
        add_bias(r->q, L->bq, Q);
        add_bias(r->k, L->bk, KV);
        add_bias(r->v, L->bv, KV);
        if (L->q_norm)
            for (uint32_t h = 0; h < hp->n_head; h++)
                cs_fwdref_rmsnorm(r->q + h * D, r->q + h * D, L->q_norm, D, hp->rms_eps);
        if (L->k_norm)
            for (uint32_t h = 0; h < hp->n_head_kv; h++)
                cs_fwdref_rmsnorm(r->k + h * D, r->k + h * D, L->k_norm, D, hp->rms_eps);
        cs_fwdref_rope(r->q, hp->n_head, D, hp->n_rot, pos, hp->rope_freq_base, hp->rope_freq_scale, hp->rope_style);
        cs_fwdref_rope(r->k, hp->n_head_kv, D, hp->n_rot, pos, hp->rope_freq_base, hp->rope_freq_scale, hp->rope_style);

        /* store this position's K and V */
        float *kc = r->k_cache + (size_t)l * r->n_ctx * KV;
        float *vc = r->v_cache + (size_t)l * r->n_ctx * KV;
        memcpy(kc + (size_t)pos * KV, r->k, KV * sizeof(float));
        memcpy(vc + (size_t)pos * KV, r->v, KV * sizeof(float));
        if ((r->kv_type_k != CS_TYPE_F32 && kv_round(r->kv_type_k, kc + (size_t)pos * KV, KV)) ||
            (r->kv_type_v != CS_TYPE_F32 && kv_round(r->kv_type_v, vc + (size_t)pos * KV, KV)))
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "reference: KV types %s/%s: cannot round a row of %u",
                          cs_type_name(r->kv_type_k), cs_type_name(r->kv_type_v), KV);
        if (r->llamacpp_rounding) {
            for (uint32_t i = 0; i < KV; i++) {
                kc[(size_t)pos * KV + i] = round_f16(r->k[i]);
                vc[(size_t)pos * KV + i] = round_f16(r->v[i]);
            }
            for (uint32_t i = 0; i < Q; i++)
                r->q[i] = round_f16(r->q[i]);
        }

        /* causal GQA attention over positions 0..pos; output into xb (q_dim) */
        for (uint32_t h = 0; h < hp->n_head; h++) {
            const float *qh = r->q + (size_t)h * D;
            const uint32_t kvh = h / group;
            float maxs = -INFINITY;
            for (uint32_t t = 0; t <= pos; t++) {
                const float *kt = kc + (size_t)t * KV + (size_t)kvh * D;
                float s = 0.0f;
                for (uint32_t i = 0; i < D; i++)
                    s += qh[i] * kt[i];
                s *= scale;
                r->att[t] = s;
                if (s > maxs)
                    maxs = s;
            }
            float sum = 0.0f;
            for (uint32_t t = 0; t <= pos; t++) {
                r->att[t] = expf(r->att[t] - maxs);
                sum += r->att[t];
            }
            float *oh = r->xb + (size_t)h * D;
            memset(oh, 0, D * sizeof(float));
            for (uint32_t t = 0; t <= pos; t++) {
                const float *vt = vc + (size_t)t * KV + (size_t)kvh * D;
                float a = r->att[t] / sum;
                if (r->llamacpp_rounding)
                    a = round_f16(a);
                for (uint32_t i = 0; i < D; i++)
                    oh[i] += a * vt[i];
            }
        }
        mv(r, r->xo, L->wo, S->wo, r->xb, Q, E);
        for (uint32_t i = 0; i < E; i++)
            x[i] += r->xo[i];

        /* feed-forward: norm, SwiGLU, down, residual */
        cs_fwdref_rmsnorm(r->xb, x, L->ffn_norm, E, hp->rms_eps);
        mv(r, r->hb, L->w_gate, S->w_gate, r->xb, E, F);
        mv(r, r->hb2, L->w_up, S->w_up, r->xb, E, F);
        for (uint32_t i = 0; i < F; i++) {
            float g = r->hb[i];
            r->hb[i] = g / (1.0f + expf(-g)) * r->hb2[i];
        }
        mv(r, r->xo, L->w_down, S->w_down, r->hb, F, E);
        for (uint32_t i = 0; i < E; i++)
            x[i] += r->xo[i];
    }
    if (hidden)
        memcpy(hidden + (size_t)hp->n_layer * E, x, E * sizeof(float));

    cs_fwdref_rmsnorm(r->xb, x, r->output_norm, E, hp->rms_eps);
    mv(r, logits, r->output, r->model->output, r->xb, E, hp->n_vocab);
    return CLSPEC_OK;
}
