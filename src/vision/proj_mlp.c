/* proj_mlp.c: the LLaVA-1.5 projector type "mlp": the encoder's rows 1 ..
 * n_pos-1 (llama.cpp's mtmd drops "row 0", meant as the class token; with
 * its patch-first sequence that is patch 0, and the class token becomes the
 * last image row), each through y = mm.2 . gelu(mm.0 . x + b0) + b2 with
 * the tanh GELU. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "vision/clip.h"
#include "vision/clip_dev.h"

struct mlp {
    const struct cs_gguf_tensor *w0, *b0, *w2, *b2; /* {D, H}, {H}, {H, E}, {E} */
    int n_hidden;                                   /* H */
};

static int mlp_load(struct cs_clip *c, char *err, size_t errlen)
{
    struct mlp *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    c->proj = m;
    m->w0 = cs_gguf_find_tensor(c->g, "mm.0.weight");
    m->b0 = cs_gguf_find_tensor(c->g, "mm.0.bias");
    m->w2 = cs_gguf_find_tensor(c->g, "mm.2.weight");
    m->b2 = cs_gguf_find_tensor(c->g, "mm.2.bias");
    if (!m->w0 || !m->w2)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: projector \"mlp\" needs mm.0.weight and mm.2.weight",
                      c->g->path);
    const uint64_t D = (uint64_t)c->hp.n_embd, E = (uint64_t)c->hp.proj_dim;
    m->n_hidden = (int)(m->w0->n_elems / m->w0->ne[0]);
    if (m->w0->ne[0] != D || m->w2->ne[0] != (uint64_t)m->n_hidden || m->w2->n_elems != (uint64_t)m->n_hidden * E ||
        (m->b0 && m->b0->n_elems != (uint64_t)m->n_hidden) || (m->b2 && m->b2->n_elems != E))
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: projector tensors do not chain %llu -> hidden -> %llu "
                      "(projection_dim)", c->g->path, (unsigned long long)D, (unsigned long long)E);
    if (!c->t.class_e)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: projector \"mlp\" needs v.class_embd", c->g->path);
    return CLSPEC_OK;
}

static int mlp_n_tokens(const struct cs_clip *c)
{
    return c->n_pos - 1;
}

static int mlp_project_ref(const struct cs_clip *c, const float *h, int n_pos, float *out, char *err,
                           size_t errlen)
{
    const struct mlp *m = c->proj;
    const int D = c->hp.n_embd, E = c->hp.proj_dim, H = m->n_hidden, n = n_pos - 1;
    float *w0 = NULL, *b0 = NULL, *w2 = NULL, *b2 = NULL, *mid = malloc(sizeof(float) * (size_t)n * H);
    int rc = mid ? cs_clip_tensor_f32(m->w0, &w0, err, errlen) : cs_err(err, errlen, CLSPEC_E_NOMEM, "oom");
    if (rc == CLSPEC_OK)
        rc = cs_clip_tensor_f32(m->w2, &w2, err, errlen);
    if (rc == CLSPEC_OK && m->b0)
        rc = cs_clip_tensor_f32(m->b0, &b0, err, errlen);
    if (rc == CLSPEC_OK && m->b2)
        rc = cs_clip_tensor_f32(m->b2, &b2, err, errlen);
    if (rc == CLSPEC_OK) {
        cs_vit_ref_matmul(w0, b0, h + D, mid, n, D, H); /* rows 1 .. n_pos-1 */
        for (size_t i = 0; i < (size_t)n * H; i++)
            mid[i] = cs_vit_ref_gelu(mid[i]);
        cs_vit_ref_matmul(w2, b2, mid, out, n, H, E);
    }
    free(w0);
    free(b0);
    free(w2);
    free(b2);
    free(mid);
    return rc;
}

/* The device weights of the projector (clip_dev.h helpers). */
struct mlp_dev {
    struct cs_weight w0, w2;
    cl_mem b0, b2, mid; /* mid: (n_pos, H) scratch */
};

static int mlp_project_dev(struct cs_clip *c, cl_mem h, int n_pos, cl_mem out, char *err, size_t errlen)
{
    struct mlp *m = c->proj;
    struct mlp_dev *md = c->proj_dev;
    struct cs_cl_dev *d = c->dev;
    const int D = c->hp.n_embd, H = m->n_hidden, n = n_pos - 1;
    if (!md) {
        md = calloc(1, sizeof *md);
        if (!md)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        c->proj_dev = md;
        CS_TRY(cs_clip_dev_mat(c, m->w0, &md->w0, err, errlen));
        CS_TRY(cs_clip_dev_mat(c, m->w2, &md->w2, err, errlen));
        CS_TRY(cs_clip_dev_vec(c, m->b0, &md->b0, err, errlen));
        CS_TRY(cs_clip_dev_vec(c, m->b2, &md->b2, err, errlen));
        CS_TRY(cs_clip_dev_scratch(c, (size_t)n_pos * H, &md->mid, err, errlen));
    }
    CS_TRY(cs_vit_dev_linear(d, &md->w0, md->b0, h, (size_t)D, md->mid, n, err, errlen));
    CS_TRY(cs_vit_dev_act(d, CS_VIT_GELU, md->mid, (size_t)n * H, err, errlen));
    return cs_vit_dev_linear(d, &md->w2, md->b2, md->mid, 0, out, n, err, errlen);
}

static void mlp_free_dev(struct cs_clip *c)
{
    struct mlp_dev *md = c->proj_dev;
    c->proj_dev = NULL;
    if (!md)
        return;
    cs_weight_free(&md->w0);
    cs_weight_free(&md->w2);
    if (md->b0)
        clReleaseMemObject(md->b0);
    if (md->b2)
        clReleaseMemObject(md->b2);
    if (md->mid)
        clReleaseMemObject(md->mid);
    free(md);
}

static void mlp_free(struct cs_clip *c)
{
    free(c->proj);
    c->proj = NULL;
}

const struct cs_proj_type cs_proj_mlp = {
    .name = "mlp",
    .load = mlp_load,
    .n_tokens = mlp_n_tokens,
    .project_ref = mlp_project_ref,
    .project_dev = mlp_project_dev,
    .free_dev = mlp_free_dev,
    .free = mlp_free,
};
