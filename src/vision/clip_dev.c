/* clip_dev.c: the vision encoder on a device (see clip_dev.h). The patch
 * embedding is a matmul over the patches laid out on the host (the image is
 * preprocessed there anyway), the blocks are cs_blk_layer calls with a
 * LayerNorm / GELU shape and no RoPE, attention reads a private f32 K/V of
 * n_pos cells (all visible: non-causal, one sequence). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "model/block.h"
#include "model/forward.h"
#include "ops/family.h"
#include "ops/ops.h"
#include "vision/clip_dev.h"

struct cs_clip_dev {
    struct cs_weight patch;            /* (D rows of 3 P P) */
    cl_mem patch_b, class_e, pos_e;    /* f32 (D), (D), (n_pos, D); patch_b, class_e may be NULL */
    cl_mem pre_w, pre_b, post_w, post_b; /* f32 (D) or NULL */
    struct cs_fwd_layer *layers;       /* (n_run) */
    struct cs_blk_act act;             /* n_pos rows */
    cl_mem xin;                        /* (n_patch, 3 P P) the patches */
    cl_mem out;                        /* (n_tokens, E) */
    struct cs_kv_view kv;              /* f32, n_pos cells */
};

int cs_clip_dev_mat(struct cs_clip *c, const struct cs_gguf_tensor *t, struct cs_weight *w, char *err, size_t errlen)
{
    return cs_fwd_upload_mat(c->dev, t, w, NULL, err, errlen);
}

int cs_clip_dev_vec(struct cs_clip *c, const struct cs_gguf_tensor *t, cl_mem *out, char *err, size_t errlen)
{
    return cs_fwd_upload_vec(c->dev, t, out, NULL, err, errlen);
}

int cs_clip_dev_scratch(struct cs_clip *c, size_t n, cl_mem *out, char *err, size_t errlen)
{
    return cs_cl_alloc(c->dev, CL_MEM_READ_WRITE, CS_MAX(n, (size_t)1) * sizeof(float), NULL, out, err, errlen);
}

int cs_vit_dev_linear(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem b, cl_mem x, size_t x_off, cl_mem y,
                      int n, char *err, size_t errlen)
{
    CS_TRY(cs_op_matmul(d, w, x, x_off, y, 0, (uint32_t)n, err, errlen));
    return b ? cs_op_add_bias(d, y, 0, b, n, (int)w->n_out, err, errlen) : CLSPEC_OK;
}

int cs_vit_dev_act(struct cs_cl_dev *d, enum cs_vit_act act, cl_mem x, size_t n, char *err, size_t errlen)
{
    return cs_op_gelu(d, x, 0, n, act == CS_VIT_QUICK_GELU, err, errlen);
}

static void release(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
}

static void layer_free(struct cs_fwd_layer *L)
{
    struct cs_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_up, &L->w_down};
    cl_mem *m[] = {&L->attn_norm, &L->ffn_norm, &L->attn_norm_b, &L->ffn_norm_b, &L->bq,
                   &L->bk,        &L->bv,       &L->bo,          &L->b_up,       &L->b_down};
    for (size_t i = 0; i < CS_ARRAY_LEN(w); i++)
        cs_weight_free(w[i]);
    for (size_t i = 0; i < CS_ARRAY_LEN(m); i++)
        release(m[i]);
}

void cs_clip_dev_free(struct cs_clip *c)
{
    if (c->type && c->type->free_dev && c->proj_dev)
        c->type->free_dev(c);
    struct cs_clip_dev *v = c->dv;
    if (!v)
        return;
    cs_weight_free(&v->patch);
    cl_mem *m[] = {&v->patch_b, &v->class_e, &v->pos_e, &v->pre_w, &v->pre_b, &v->post_w, &v->post_b,
                   &v->xin,     &v->out,     &v->kv.k,  &v->kv.v,  &v->kv.cell_pos, &v->kv.cell_seq,
                   &v->act.x,   &v->act.xb,  &v->act.q, &v->act.att, &v->act.kc, &v->act.vc, &v->act.hb,
                   &v->act.hb2, &v->act.pos, &v->act.seq, &v->act.cell};
    for (size_t i = 0; i < CS_ARRAY_LEN(m); i++)
        release(m[i]);
    for (int l = 0; v->layers && l < c->hp.n_run; l++)
        layer_free(&v->layers[l]);
    free(v->layers);
    free(v);
    c->dv = NULL;
    c->dev = NULL;
}

static int upload_layer(struct cs_clip *c, const struct cs_clip_block_t *t, struct cs_fwd_layer *L, char *err,
                        size_t errlen)
{
    const struct {
        const struct cs_gguf_tensor *t;
        struct cs_weight *w;
    } mats[] = {{t->q_w, &L->wq}, {t->k_w, &L->wk}, {t->v_w, &L->wv}, {t->o_w, &L->wo},
                {t->up_w, &L->w_up}, {t->down_w, &L->w_down}};
    const struct {
        const struct cs_gguf_tensor *t;
        cl_mem *m;
    } vecs[] = {{t->ln1_w, &L->attn_norm}, {t->ln1_b, &L->attn_norm_b}, {t->ln2_w, &L->ffn_norm},
                {t->ln2_b, &L->ffn_norm_b}, {t->q_b, &L->bq}, {t->k_b, &L->bk}, {t->v_b, &L->bv},
                {t->o_b, &L->bo}, {t->up_b, &L->b_up}, {t->down_b, &L->b_down}};
    for (size_t i = 0; i < CS_ARRAY_LEN(mats); i++)
        CS_TRY(cs_clip_dev_mat(c, mats[i].t, mats[i].w, err, errlen));
    for (size_t i = 0; i < CS_ARRAY_LEN(vecs); i++)
        CS_TRY(cs_clip_dev_vec(c, vecs[i].t, vecs[i].m, err, errlen));
    return CLSPEC_OK;
}

/* The activation buffers, the K/V and its cell tables (all n_pos cells of
 * sequence 0 at positions 0..n_pos-1: every row sees every row). */
static int alloc_act(struct cs_clip *c, char *err, size_t errlen)
{
    struct cs_clip_dev *v = c->dv;
    const struct cs_clip_hparams *hp = &c->hp;
    const size_t n = (size_t)c->n_pos, D = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
    const size_t K = (size_t)3 * hp->patch_size * hp->patch_size;
    struct cs_blk_act *a = &v->act;
    const struct {
        cl_mem *m;
        size_t n;
    } f[] = {{&a->x, n * D},  {&a->xb, n * D},  {&a->q, n * D},   {&a->att, n * D},
             {&a->kc, n * D}, {&a->vc, n * D},  {&a->hb, n * F},  {&a->hb2, n * F},
             {&v->kv.k, n * D}, {&v->kv.v, n * D}, {&v->xin, (size_t)c->n_patch * K},
             {&v->out, (size_t)cs_clip_n_tokens(c) * hp->proj_dim}};
    for (size_t i = 0; i < CS_ARRAY_LEN(f); i++)
        CS_TRY(cs_clip_dev_scratch(c, f[i].n, f[i].m, err, errlen));
    int32_t *idx = malloc(n * sizeof *idx);
    uint64_t *seqbit = malloc(n * sizeof *seqbit);
    int32_t *zero = calloc(n, sizeof *zero);
    int rc = idx && seqbit && zero ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (size_t i = 0; rc == CLSPEC_OK && i < n; i++) {
        idx[i] = (int32_t)i;
        seqbit[i] = 1;
    }
    const cl_mem_flags ro = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(c->dev, ro, n * sizeof *idx, idx, &a->pos, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(c->dev, ro, n * sizeof *idx, idx, &a->cell, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(c->dev, ro, n * sizeof *idx, idx, &v->kv.cell_pos, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(c->dev, ro, n * sizeof *zero, zero, &a->seq, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_cl_alloc(c->dev, ro, n * sizeof *seqbit, seqbit, &v->kv.cell_seq, err, errlen);
    free(idx);
    free(seqbit);
    free(zero);
    v->kv.type_k = v->kv.type_v = CS_TYPE_F32;
    v->kv.n_cells = (int)n;
    v->kv.n_kv_head = hp->n_head;
    v->kv.head_dim = hp->n_embd / hp->n_head;
    v->kv.cell_order = NULL;
    return rc;
}

static int upload(struct cs_clip *c, char *err, size_t errlen)
{
    struct cs_clip_dev *v = c->dv;
    const struct cs_clip_hparams *hp = &c->hp;
    const struct cs_gguf_tensor *pw = c->t.patch_w;
    const uint32_t K = (uint32_t)(3 * hp->patch_size * hp->patch_size);
    int rc = cs_weight_upload(c->dev, pw->type, K, (uint32_t)hp->n_embd, pw->data, &v->patch, err, errlen);
    if (rc < 0)
        return cs_err_prefix(err, errlen, rc, "tensor %s", pw->name);
    const struct {
        const struct cs_gguf_tensor *t;
        cl_mem *m;
    } vecs[] = {{c->t.patch_b, &v->patch_b}, {c->t.class_e, &v->class_e}, {c->t.pos_e, &v->pos_e},
                {c->t.pre_ln_w, &v->pre_w},  {c->t.pre_ln_b, &v->pre_b},  {c->t.post_ln_w, &v->post_w},
                {c->t.post_ln_b, &v->post_b}};
    for (size_t i = 0; i < CS_ARRAY_LEN(vecs); i++)
        CS_TRY(cs_clip_dev_vec(c, vecs[i].t, vecs[i].m, err, errlen));
    v->layers = calloc((size_t)CS_MAX(hp->n_run, 1), sizeof *v->layers);
    if (!v->layers)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_run; l++)
        CS_TRY(upload_layer(c, &c->t.blk[l], &v->layers[l], err, errlen));
    CS_TRY(alloc_act(c, err, errlen));
    /* every program an encode launches, now rather than at the first image */
    const struct cs_op_kv_shape kvs = {.head_dim = v->kv.head_dim, .type_k = CS_TYPE_F32, .type_v = CS_TYPE_F32};
    CS_TRY(cs_op_prepare_all(c->dev, &kvs, false, NULL, NULL, err, errlen));
    cl_program p;
    return cs_cl_program(c->dev, "vit", NULL, &p, err, errlen);
}

int cs_clip_upload(struct cs_clip *c, struct cs_cl_dev *d, char *err, size_t errlen)
{
    if (c->dv)
        return CLSPEC_OK;
    c->dv = calloc(1, sizeof *c->dv);
    if (!c->dv)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    c->dev = d;
    int rc = upload(c, err, errlen);
    if (rc < 0) {
        cs_clip_dev_free(c);
        return cs_err_prefix(err, errlen, rc, "vision projector %s on %s", c->g->path, d->info.name);
    }
    return CLSPEC_OK;
}

/* The rows before the blocks on the device: patches . W (+ b), the class
 * token after them, + position embeddings, the pre-LayerNorm. */
static int embed(struct cs_clip *c, const float *planar, char *err, size_t errlen)
{
    struct cs_clip_dev *v = c->dv;
    const struct cs_clip_hparams *hp = &c->hp;
    const int P = hp->patch_size, S = hp->image_size, G = S / P, K = 3 * P * P, D = hp->n_embd;
    float *xin = malloc(sizeof(float) * (size_t)c->n_patch * K);
    if (!xin)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (int p = 0; p < c->n_patch; p++)
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(xin + (size_t)p * K + (ch * P + ky) * P,
                       planar + ((size_t)ch * S + (p / G) * P + ky) * S + (p % G) * P, sizeof(float) * P);
    int rc = cs_cl_write(c->dev, v->xin, 0, sizeof(float) * (size_t)c->n_patch * K, xin, err, errlen);
    free(xin);
    CS_TRY(rc);
    CS_TRY(cs_vit_dev_linear(c->dev, &v->patch, v->patch_b, v->xin, 0, v->act.x, c->n_patch, err, errlen));
    if (v->class_e) {
        cl_int e = clEnqueueCopyBuffer(c->dev->q, v->class_e, v->act.x, 0, sizeof(float) * (size_t)c->n_patch * D,
                                       sizeof(float) * D, 0, NULL, NULL);
        if (e != CL_SUCCESS)
            return cs_err(err, errlen, CLSPEC_E_CL, "vision: class token copy: OpenCL error %d", e);
    }
    const size_t n = (size_t)c->n_pos * D;
    CS_TRY(cs_op_add(c->dev, v->act.x, 0, v->pos_e, 0, v->act.x, 0, n, err, errlen));
    if (v->pre_w)
        CS_TRY(cs_op_layernorm(c->dev, v->act.x, 0, v->pre_w, v->pre_b, v->act.x, 0, c->n_pos, D, hp->eps, err,
                               errlen));
    return CLSPEC_OK;
}

static int read_stage(struct cs_clip *c, float *stages, int i, char *err, size_t errlen)
{
    const size_t n = (size_t)c->n_pos * c->hp.n_embd;
    return stages ? cs_cl_read(c->dev, c->dv->act.x, 0, n * sizeof(float), stages + (size_t)i * n, err, errlen)
                  : CLSPEC_OK;
}

int cs_clip_encode(struct cs_clip *c, const float *planar, float *out, float *stages, char *err, size_t errlen)
{
    struct cs_clip_dev *v = c->dv;
    const struct cs_clip_hparams *hp = &c->hp;
    if (!v)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "vision projector not uploaded");
    const struct cs_ops o = cs_ops_std(c->dev);
    const struct cs_blk_shape s = {.n_embd = hp->n_embd,
                                   .n_head = hp->n_head,
                                   .n_head_kv = hp->n_head,
                                   .head_dim = hp->n_embd / hp->n_head,
                                   .n_ff = hp->n_ff,
                                   .eps = hp->eps,
                                   .rope = {.n_rot = 0},
                                   .norm = CS_BLK_LAYERNORM,
                                   .ffn = hp->act == CS_VIT_GELU ? CS_BLK_GELU : CS_BLK_QUICK_GELU};
    const struct cs_blk_opt opt = {.normed = false, .causal = false, .n_cells_used = c->n_pos, .next_norm = NULL,
                                   .ffn_rows = c->n_pos};
    CS_TRY(embed(c, planar, err, errlen));
    CS_TRY(read_stage(c, stages, 0, err, errlen));
    for (int l = 0; l < hp->n_run; l++) {
        CS_TRY(cs_blk_layer(&o, &s, &v->layers[l], &v->kv, &v->act, c->n_pos, &opt, err, errlen));
        CS_TRY(read_stage(c, stages, l + 1, err, errlen));
    }
    if (v->post_w)
        CS_TRY(cs_op_layernorm(c->dev, v->act.x, 0, v->post_w, v->post_b, v->act.x, 0, c->n_pos, hp->n_embd,
                               hp->eps, err, errlen));
    CS_TRY(c->type->project_dev(c, v->act.x, c->n_pos, v->out, err, errlen));
    const size_t n_out = (size_t)cs_clip_n_tokens(c) * hp->proj_dim;
    return cs_cl_read(c->dev, v->out, 0, n_out * sizeof(float), out, err, errlen);
}
