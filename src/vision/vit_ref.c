/* vit_ref.c: the plain-C reference of the vision encoder (clip.h
 * cs_clip_encode_ref): patch embedding, the sequence llama.cpp's mtmd
 * builds (patch rows first, then the class token), position embeddings, the
 * pre-LayerNorm, the pre-norm ViT blocks with bidirectional attention, the
 * optional post-LayerNorm, then the projector type's reference. Straight
 * loops in float with double-free accumulation order: the device path is
 * tested against this. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "vision/clip.h"

void cs_vit_ref_matmul(const float *W, const float *b, const float *x, float *y, int n, int n_in, int n_out)
{
    for (int r = 0; r < n; r++)
        for (int o = 0; o < n_out; o++) {
            float acc = 0.0f;
            for (int i = 0; i < n_in; i++)
                acc += W[(size_t)o * n_in + i] * x[(size_t)r * n_in + i];
            y[(size_t)r * n_out + o] = acc + (b ? b[o] : 0.0f);
        }
}

float cs_vit_ref_gelu(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

float cs_vit_ref_quick_gelu(float x)
{
    return x / (1.0f + expf(-1.702f * x));
}

/* y = LayerNorm(x) * w + b over rows of n (population variance); w, b may be NULL. */
static void layernorm(const float *x, const float *w, const float *b, float *y, int rows, int n, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        float mean = 0.0f, var = 0.0f;
        for (int i = 0; i < n; i++)
            mean += xr[i];
        mean /= (float)n;
        for (int i = 0; i < n; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        const float s = 1.0f / sqrtf(var / (float)n + eps);
        for (int i = 0; i < n; i++)
            yr[i] = (xr[i] - mean) * s * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
    }
}

/* The host f32 copies of one block's tensors (NULL where absent). */
struct blk_f32 {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *up_w, *up_b, *down_w,
        *down_b;
};

#define BLK_N (sizeof(struct blk_f32) / sizeof(float *))

static int load_f32(const struct cs_gguf_tensor *t, float **out, char *err, size_t errlen)
{
    *out = NULL;
    return t ? cs_clip_tensor_f32(t, out, err, errlen) : CLSPEC_OK;
}

static int blk_load(const struct cs_clip_block_t *t, struct blk_f32 *b, char *err, size_t errlen)
{
    const struct cs_gguf_tensor *src[] = {t->ln1_w, t->ln1_b, t->ln2_w, t->ln2_b, t->q_w,  t->q_b,
                                          t->k_w,   t->k_b,   t->v_w,   t->v_b,   t->o_w,  t->o_b,
                                          t->up_w,  t->up_b,  t->down_w, t->down_b};
    float **dst = (float **)b;
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < BLK_N; i++)
        CS_TRY(load_f32(src[i], &dst[i], err, errlen));
    return CLSPEC_OK;
}

static void blk_free(struct blk_f32 *b)
{
    float **p = (float **)b;
    for (size_t i = 0; i < BLK_N; i++)
        free(p[i]);
}

/* Bidirectional multi-head attention: o (n, D) from q, k, v (n, D). */
static void attention(const float *q, const float *k, const float *v, float *o, int n, int D, int n_head,
                      float *sc)
{
    const int hd = D / n_head;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < n; i++) {
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) {
                float s = 0.0f;
                for (int d = 0; d < hd; d++)
                    s += q[(size_t)i * D + h * hd + d] * k[(size_t)j * D + h * hd + d];
                sc[j] = s * scale;
                mx = fmaxf(mx, sc[j]);
            }
            for (int j = 0; j < n; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            for (int d = 0; d < hd; d++) {
                float acc = 0.0f;
                for (int j = 0; j < n; j++)
                    acc += sc[j] * v[(size_t)j * D + h * hd + d];
                o[(size_t)i * D + h * hd + d] = acc / sum;
            }
        }
}

/* One pre-norm block on h (n, D) in place; tmp: 4 * n * max(D, F) + n floats. */
static void block(const struct cs_clip_hparams *hp, const struct blk_f32 *b, float *h, int n, float *tmp)
{
    const int D = hp->n_embd, F = hp->n_ff, W = CS_MAX(D, F);
    float *c = tmp, *q = c + (size_t)n * W, *k = q + (size_t)n * W, *v = k + (size_t)n * W, *sc = v + (size_t)n * W;
    layernorm(h, b->ln1_w, b->ln1_b, c, n, D, hp->eps);
    cs_vit_ref_matmul(b->q_w, b->q_b, c, q, n, D, D);
    cs_vit_ref_matmul(b->k_w, b->k_b, c, k, n, D, D);
    cs_vit_ref_matmul(b->v_w, b->v_b, c, v, n, D, D);
    attention(q, k, v, c, n, D, hp->n_head, sc);
    cs_vit_ref_matmul(b->o_w, b->o_b, c, q, n, D, D);
    for (size_t i = 0; i < (size_t)n * D; i++)
        h[i] += q[i];
    layernorm(h, b->ln2_w, b->ln2_b, c, n, D, hp->eps);
    cs_vit_ref_matmul(b->up_w, b->up_b, c, q, n, D, F);
    for (size_t i = 0; i < (size_t)n * F; i++)
        q[i] = hp->act == CS_VIT_GELU ? cs_vit_ref_gelu(q[i]) : cs_vit_ref_quick_gelu(q[i]);
    cs_vit_ref_matmul(b->down_w, b->down_b, q, c, n, F, D);
    for (size_t i = 0; i < (size_t)n * D; i++)
        h[i] += c[i];
}

/* Rows (n_pos, D) before the blocks: patches, then the class token, plus
 * the position embeddings, then the pre-LayerNorm. */
static int embed(const struct cs_clip *c, const float *planar, float *h, char *err, size_t errlen)
{
    const struct cs_clip_hparams *hp = &c->hp;
    const int D = hp->n_embd, P = hp->patch_size, S = hp->image_size, G = S / P, K = 3 * P * P;
    float *pw = NULL, *pb = NULL, *ce = NULL, *pe = NULL, *lw = NULL, *lb = NULL;
    float *xin = malloc(sizeof(float) * (size_t)c->n_patch * K);
    int rc = xin ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    if (rc == CLSPEC_OK)
        rc = load_f32(c->t.patch_w, &pw, err, errlen);
    if (rc == CLSPEC_OK)
        rc = load_f32(c->t.patch_b, &pb, err, errlen);
    if (rc == CLSPEC_OK)
        rc = load_f32(c->t.class_e, &ce, err, errlen);
    if (rc == CLSPEC_OK)
        rc = load_f32(c->t.pos_e, &pe, err, errlen);
    if (rc == CLSPEC_OK)
        rc = load_f32(c->t.pre_ln_w, &lw, err, errlen);
    if (rc == CLSPEC_OK)
        rc = load_f32(c->t.pre_ln_b, &lb, err, errlen);
    if (rc == CLSPEC_OK) {
        /* patch p's input in the kernel's order (channel, ky, kx) */
        for (int p = 0; p < c->n_patch; p++)
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++)
                    for (int kx = 0; kx < P; kx++)
                        xin[(size_t)p * K + (ch * P + ky) * P + kx] =
                            planar[((size_t)ch * S + (p / G) * P + ky) * S + (p % G) * P + kx];
        cs_vit_ref_matmul(pw, pb, xin, h, c->n_patch, K, D);
        if (ce)
            memcpy(h + (size_t)c->n_patch * D, ce, sizeof(float) * D);
        for (size_t i = 0; i < (size_t)c->n_pos * D; i++)
            h[i] += pe[i];
        if (lw)
            layernorm(h, lw, lb, h, c->n_pos, D, hp->eps);
    }
    free(xin);
    free(pw);
    free(pb);
    free(ce);
    free(pe);
    free(lw);
    free(lb);
    return rc;
}

int cs_clip_encode_ref(const struct cs_clip *c, const float *planar, float *out, float *stages, char *err,
                       size_t errlen)
{
    const struct cs_clip_hparams *hp = &c->hp;
    const int D = hp->n_embd, n = c->n_pos, W = CS_MAX(hp->n_embd, hp->n_ff);
    float *h = malloc(sizeof(float) * (size_t)n * D);
    float *tmp = malloc(sizeof(float) * ((size_t)4 * n * W + n));
    int rc = h && tmp ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    if (rc == CLSPEC_OK)
        rc = embed(c, planar, h, err, errlen);
    if (rc == CLSPEC_OK && stages)
        memcpy(stages, h, sizeof(float) * (size_t)n * D);
    for (int l = 0; rc == CLSPEC_OK && l < hp->n_run; l++) {
        struct blk_f32 b;
        rc = blk_load(&c->t.blk[l], &b, err, errlen);
        if (rc == CLSPEC_OK) {
            block(hp, &b, h, n, tmp);
            if (stages)
                memcpy(stages + (size_t)(l + 1) * n * D, h, sizeof(float) * (size_t)n * D);
        }
        blk_free(&b);
    }
    if (rc == CLSPEC_OK && c->t.post_ln_w) {
        float *w = NULL, *b = NULL;
        rc = load_f32(c->t.post_ln_w, &w, err, errlen);
        if (rc == CLSPEC_OK)
            rc = load_f32(c->t.post_ln_b, &b, err, errlen);
        if (rc == CLSPEC_OK)
            layernorm(h, w, b, h, n, D, hp->eps);
        free(w);
        free(b);
    }
    if (rc == CLSPEC_OK)
        rc = c->type->project_ref(c, h, n, out, err, errlen);
    free(h);
    free(tmp);
    return rc;
}
