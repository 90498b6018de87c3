/* clip.c: opening a projector file (see clip.h): the clip.vision.* keys,
 * the encoder's tensors with their shapes checked against the keys, and the
 * projector type's module. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "gguf/quant.h"
#include "vision/clip.h"
#include "vision/clip_dev.h"

extern const struct cs_proj_type cs_proj_mlp;

static const struct cs_proj_type *const proj_types[] = {&cs_proj_mlp};

const struct cs_proj_type *cs_proj_type_find(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(proj_types); i++)
        if (strcmp(proj_types[i]->name, name) == 0)
            return proj_types[i];
    return NULL;
}

const char *cs_proj_type_names(void)
{
    return "mlp";
}

int cs_clip_tensor_f32(const struct cs_gguf_tensor *t, float **out, char *err, size_t errlen)
{
    float *f = malloc(sizeof(float) * (size_t)t->n_elems);
    if (!f)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s: out of memory", t->name);
    const uint64_t row = t->ne[0], n_rows = t->n_elems / row;
    uint64_t row_bytes = 0;
    if (!cs_row_bytes(t->type, row, &row_bytes)) {
        free(f);
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: type %u not readable", t->name, t->type);
    }
    for (uint64_t r = 0; r < n_rows; r++)
        if (cs_dequantize_row(t->type, (const uint8_t *)t->data + r * row_bytes, f + r * row, (int64_t)row) < 0) {
            free(f);
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: type %u not readable", t->name, t->type);
        }
    *out = f;
    return CLSPEC_OK;
}

/* An int key that must be present and within [lo, hi]. */
static int get_int(const struct cs_gguf *g, const char *key, int lo, int hi, int *out, char *err, size_t errlen)
{
    int64_t v = 0;
    int rc = cs_gguf_get_i64(g, key, &v, err, errlen);
    if (rc == CLSPEC_E_NOTFOUND)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: key %s missing", g->path, key);
    if (rc < 0)
        return rc;
    if (v < lo || v > hi)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s = %lld (expected %d..%d)", g->path, key, (long long)v,
                      lo, hi);
    *out = (int)v;
    return CLSPEC_OK;
}

/* A float[3] key (mean / std); absent keeps *out. */
static int get_f3(const struct cs_gguf *g, const char *key, float out[3], char *err, size_t errlen)
{
    const struct cs_gguf_kv *kv = cs_gguf_find(g, key);
    if (!kv)
        return CLSPEC_OK;
    if (kv->type != CS_GGUF_ARRAY || kv->arr_n != 3 ||
        (kv->arr_type != CS_GGUF_F32 && kv->arr_type != CS_GGUF_F64))
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %s must be an array of 3 floats", g->path, key);
    for (int i = 0; i < 3; i++)
        out[i] = (float)cs_gguf_arr_float(kv, (uint64_t)i);
    return CLSPEC_OK;
}

static int read_hparams(struct cs_clip *c, char *err, size_t errlen)
{
    const struct cs_gguf *g = c->g;
    struct cs_clip_hparams *hp = &c->hp;
    char arch[32];
    int rc = cs_gguf_get_str(g, "general.architecture", arch, sizeof arch, err, errlen);
    if (rc < 0 || strcmp(arch, "clip") != 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: not a vision projector (general.architecture %s, "
                      "expected clip)", g->path, rc < 0 ? "missing" : arch);
    bool has_v = false;
    if (cs_gguf_get_bool(g, "clip.has_vision_encoder", &has_v, err, errlen) < 0 || !has_v)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: clip.has_vision_encoder is not true (audio "
                      "projectors are not supported)", g->path);
    if (cs_gguf_get_str(g, "clip.projector_type", hp->projector_type, sizeof hp->projector_type, err, errlen) < 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: clip.projector_type missing", g->path);
    CS_TRY(get_int(g, "clip.vision.image_size", 1, 4096, &hp->image_size, err, errlen));
    CS_TRY(get_int(g, "clip.vision.patch_size", 1, 1024, &hp->patch_size, err, errlen));
    CS_TRY(get_int(g, "clip.vision.embedding_length", 4, 16384, &hp->n_embd, err, errlen));
    CS_TRY(get_int(g, "clip.vision.feed_forward_length", 1, 65536, &hp->n_ff, err, errlen));
    CS_TRY(get_int(g, "clip.vision.attention.head_count", 1, 256, &hp->n_head, err, errlen));
    CS_TRY(get_int(g, "clip.vision.block_count", 1, 256, &hp->n_layer, err, errlen));
    CS_TRY(get_int(g, "clip.vision.projection_dim", 1, 65536, &hp->proj_dim, err, errlen));
    hp->eps = 1e-5f;
    if (cs_gguf_get_f32(g, "clip.vision.attention.layer_norm_epsilon", &hp->eps, err, errlen) == CLSPEC_E_FORMAT)
        return CLSPEC_E_FORMAT;
    if (hp->image_size < hp->patch_size) /* a remainder is not covered by any patch (SigLIP: 384 / 14) */
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: image_size %d is smaller than patch_size %d", g->path,
                      hp->image_size, hp->patch_size);
    const int hd = hp->n_embd / hp->n_head;
    if (hp->n_embd % hp->n_head != 0 || hd % 4 != 0)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: embedding_length %d / head_count %d: the head "
                      "width must be a multiple of 4", g->path, hp->n_embd, hp->n_head);
    bool use_gelu = false;
    if (cs_gguf_get_bool(g, "clip.use_gelu", &use_gelu, err, errlen) == CLSPEC_E_FORMAT)
        return CLSPEC_E_FORMAT;
    hp->act = use_gelu ? CS_VIT_GELU : CS_VIT_QUICK_GELU;
    /* feature_layer: "blocks applied"; without it, the penultimate block's output */
    hp->n_run = hp->n_layer - 1;
    const struct cs_gguf_kv *fl = cs_gguf_find(g, "clip.vision.feature_layer");
    if (fl) {
        if (fl->type != CS_GGUF_ARRAY || fl->arr_n == 0 || fl->arr_type == CS_GGUF_STRING ||
            fl->arr_type == CS_GGUF_F32 || fl->arr_type == CS_GGUF_F64)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: clip.vision.feature_layer must be an integer array",
                          g->path);
        int64_t mx = -1;
        for (uint64_t i = 0; i < fl->arr_n; i++)
            mx = CS_MAX(mx, cs_gguf_arr_int(fl, i));
        if (mx < 0 || mx > hp->n_layer)
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: clip.vision.feature_layer %lld outside 0..%d",
                          g->path, (long long)mx, hp->n_layer);
        hp->n_run = (int)mx;
    }
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(hp->mean, mean, sizeof mean);
    memcpy(hp->std, sd, sizeof sd);
    CS_TRY(get_f3(g, "clip.vision.image_mean", hp->mean, err, errlen));
    CS_TRY(get_f3(g, "clip.vision.image_std", hp->std, err, errlen));
    for (int i = 0; i < 3; i++)
        if (!(hp->std[i] > 0.0f))
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: clip.vision.image_std[%d] = %g", g->path, i,
                          (double)hp->std[i]);
    /* LLaVA's pad colour: the mean colour in 8 bits */
    const uint8_t pad[3] = {122, 116, 104};
    memcpy(hp->pad, pad, 3);
    return CLSPEC_OK;
}

/* Tensor name, optional or required, with its expected shape (ne1 0: a vector). */
static int tensor(const struct cs_clip *c, const char *name, uint64_t ne0, uint64_t ne1, bool required,
                  const struct cs_gguf_tensor **out, char *err, size_t errlen)
{
    const struct cs_gguf_tensor *t = cs_gguf_find_tensor(c->g, name);
    *out = t;
    if (!t)
        return required ? cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s missing", c->g->path, name)
                        : CLSPEC_OK;
    const uint64_t want = ne0 * (ne1 ? ne1 : 1);
    if (t->ne[0] != ne0 || t->n_elems != want)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: tensor %s has %llu x %llu elements, expected %llu x %llu",
                      c->g->path, name, (unsigned long long)t->ne[0], (unsigned long long)(t->n_elems / t->ne[0]),
                      (unsigned long long)ne0, (unsigned long long)(ne1 ? ne1 : 1));
    uint64_t rb;
    if (!cs_row_bytes(t->type, t->ne[0], &rb))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: tensor %s: type %u is not supported", c->g->path,
                      name, t->type);
    return CLSPEC_OK;
}

static int find_block(struct cs_clip *c, int i, char *err, size_t errlen)
{
    struct cs_clip_block_t *b = &c->t.blk[i];
    const uint64_t D = (uint64_t)c->hp.n_embd, F = (uint64_t)c->hp.n_ff;
    char nm[96];
#define T(field, suffix, n0, n1, req)                                              \
    do {                                                                           \
        snprintf(nm, sizeof nm, "v.blk.%d.%s", i, suffix);                         \
        CS_TRY(tensor(c, nm, n0, n1, req, &b->field, err, errlen));                \
    } while (0)
    T(ln1_w, "ln1.weight", D, 0, true);
    T(ln1_b, "ln1.bias", D, 0, false);
    T(ln2_w, "ln2.weight", D, 0, true);
    T(ln2_b, "ln2.bias", D, 0, false);
    T(q_w, "attn_q.weight", D, D, true);
    T(q_b, "attn_q.bias", D, 0, false);
    T(k_w, "attn_k.weight", D, D, true);
    T(k_b, "attn_k.bias", D, 0, false);
    T(v_w, "attn_v.weight", D, D, true);
    T(v_b, "attn_v.bias", D, 0, false);
    T(o_w, "attn_out.weight", D, D, true);
    T(o_b, "attn_out.bias", D, 0, false);
    T(up_w, "ffn_up.weight", D, F, true);
    T(up_b, "ffn_up.bias", F, 0, false);
    T(down_w, "ffn_down.weight", F, D, true);
    T(down_b, "ffn_down.bias", D, 0, false);
#undef T
    return CLSPEC_OK;
}

static int find_tensors(struct cs_clip *c, char *err, size_t errlen)
{
    const struct cs_clip_hparams *hp = &c->hp;
    const uint64_t D = (uint64_t)hp->n_embd, P = (uint64_t)hp->patch_size;
    struct cs_clip_tensors *t = &c->t;
    CS_TRY(tensor(c, "v.patch_embd.weight", P, P * 3 * D, true, &t->patch_w, err, errlen));
    if (t->patch_w->ne[1] != P || t->patch_w->ne[2] != 3)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: v.patch_embd.weight must be {%llu, %llu, 3, %llu}",
                      c->g->path, (unsigned long long)P, (unsigned long long)P, (unsigned long long)D);
    CS_TRY(tensor(c, "v.patch_embd.bias", D, 0, false, &t->patch_b, err, errlen));
    CS_TRY(tensor(c, "v.class_embd", D, 0, false, &t->class_e, err, errlen));
    c->n_patch = (hp->image_size / hp->patch_size) * (hp->image_size / hp->patch_size);
    c->n_pos = c->n_patch + (t->class_e ? 1 : 0);
    CS_TRY(tensor(c, "v.position_embd.weight", D, (uint64_t)c->n_pos, true, &t->pos_e, err, errlen));
    CS_TRY(tensor(c, "v.pre_ln.weight", D, 0, false, &t->pre_ln_w, err, errlen));
    CS_TRY(tensor(c, "v.pre_ln.bias", D, 0, false, &t->pre_ln_b, err, errlen));
    CS_TRY(tensor(c, "v.post_ln.weight", D, 0, false, &t->post_ln_w, err, errlen));
    CS_TRY(tensor(c, "v.post_ln.bias", D, 0, false, &t->post_ln_b, err, errlen));
    t->blk = calloc((size_t)hp->n_layer, sizeof *t->blk);
    if (!t->blk)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (int i = 0; i < hp->n_run; i++)
        CS_TRY(find_block(c, i, err, errlen));
    return CLSPEC_OK;
}

int cs_clip_open(const char *path, struct cs_clip **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_clip *c = calloc(1, sizeof *c);
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    int rc = cs_gguf_open(path, &c->g, err, errlen);
    if (rc == CLSPEC_OK)
        rc = read_hparams(c, err, errlen);
    if (rc == CLSPEC_OK) {
        c->type = cs_proj_type_find(c->hp.projector_type);
        if (!c->type)
            rc = cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: clip.projector_type \"%s\" is not supported "
                        "(supported: %s)", path, c->hp.projector_type, cs_proj_type_names());
    }
    if (rc == CLSPEC_OK)
        rc = find_tensors(c, err, errlen);
    if (rc == CLSPEC_OK)
        rc = c->type->load(c, err, errlen);
    if (rc < 0) {
        cs_clip_free(c);
        return rc;
    }
    *out = c;
    return CLSPEC_OK;
}

void cs_clip_free(struct cs_clip *c)
{
    if (!c)
        return;
    cs_clip_dev_free(c);
    if (c->type && c->type->free)
        c->type->free(c);
    free(c->t.blk);
    cs_gguf_close(c->g);
    free(c);
}

int cs_clip_n_tokens(const struct cs_clip *c)
{
    return c->type->n_tokens(c);
}
