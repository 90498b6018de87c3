/* clip_synth.c: writes a synthetic "mlp" projector (see clip_synth.h) with
 * the keys and tensor names of llama.cpp's converter. Matrices N(0, 0.02)
 * (the patch kernel and position table too), norm weights 1 + N(0, 0.02),
 * biases N(0, 0.02). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/rng.h"
#include "gguf/gguf_write.h"
#include "gguf/quant.h"
#include "vision/clip_synth.h"

int cs_clip_synth_preset(const char *name, struct cs_clip_synth_params *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->type = CS_TYPE_F16;
    p->seed = 1;
    if (strcmp(name, "tiny") == 0) {
        *p = (struct cs_clip_synth_params){64, 16, 32, 128, 4, 2, 64, CS_TYPE_F32, 1};
        return CLSPEC_OK;
    }
    if (strcmp(name, "siglip-so400m") == 0) {
        *p = (struct cs_clip_synth_params){384, 14, 1152, 4304, 16, 27, 2048, CS_TYPE_F16, 1};
        return CLSPEC_OK;
    }
    return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "unknown projector preset '%s' (tiny, siglip-so400m)", name);
}

struct fill {
    struct cs_rng rng;
    float mean, std;
    uint32_t type;
    uint64_t ne0, row_bytes;
    float *row; /* ne0 floats */
};

static int fill_rows(void *user, uint64_t row0, uint64_t n_rows, void *dst, char *err, size_t errlen)
{
    (void)row0;
    struct fill *f = user;
    for (uint64_t r = 0; r < n_rows; r++) {
        for (uint64_t i = 0; i < f->ne0; i++)
            f->row[i] = f->mean + f->std * cs_rng_normal(&f->rng);
        if (cs_quantize_row(f->type, f->row, (uint8_t *)dst + r * f->row_bytes, (int64_t)f->ne0) != 0)
            return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "cannot quantize to %s", cs_type_name(f->type));
    }
    return CLSPEC_OK;
}

/* One tensor description of the file. */
struct tdesc {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    float mean;
};

static int check(const struct cs_clip_synth_params *p, char *err, size_t errlen)
{
    if (!p->patch_size || p->image_size < p->patch_size || !p->n_head || p->n_embd % p->n_head ||
        (p->n_embd / p->n_head) % 4 || !p->n_layer || !p->n_ff || !p->proj_dim)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "projector shape: image %u, patch %u, width %u / heads %u "
                      "(head width a multiple of 4), %u blocks, FFN %u, output %u",
                      p->image_size, p->patch_size, p->n_embd, p->n_head, p->n_layer, p->n_ff, p->proj_dim);
    uint64_t rb;
    if (!cs_row_bytes(p->type, p->n_embd, &rb) || !cs_row_bytes(p->type, p->n_ff, &rb) ||
        !cs_row_bytes(p->type, p->patch_size, &rb))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "type %s does not fit rows of %u / %u / %u", cs_type_name(p->type),
                      p->n_embd, p->n_ff, p->patch_size);
    return CLSPEC_OK;
}

/* The tensor list in file order; returns the count (<= cap). */
static int tensors(const struct cs_clip_synth_params *p, struct tdesc *t)
{
    const uint64_t D = p->n_embd, F = p->n_ff, P = p->patch_size, E = p->proj_dim;
    const uint64_t n_pos = (uint64_t)(p->image_size / p->patch_size) * (p->image_size / p->patch_size) + 1;
    int n = 0;
#define T(nm, nd, a, b, c, d, ty, m)                                                                   \
    do {                                                                                               \
        t[n] = (struct tdesc){.n_dims = nd, .ne = {a, b, c, d}, .type = ty, .mean = m};                 \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                               \
        n++;                                                                                           \
    } while (0)
    T("v.patch_embd.weight", 4, P, P, 3, D, p->type, 0.0f);
    T("v.class_embd", 1, D, 1, 1, 1, CS_TYPE_F32, 0.0f);
    T("v.position_embd.weight", 2, D, n_pos, 1, 1, p->type, 0.0f);
    T("v.pre_ln.weight", 1, D, 1, 1, 1, CS_TYPE_F32, 1.0f);
    T("v.pre_ln.bias", 1, D, 1, 1, 1, CS_TYPE_F32, 0.0f);
    for (uint32_t l = 0; l < p->n_layer; l++) {
        const struct {
            const char *suffix;
            uint32_t nd;
            uint64_t a, b;
            float mean;
        } bl[] = {{"ln1.weight", 1, D, 1, 1.0f},     {"ln1.bias", 1, D, 1, 0.0f},      {"attn_q.weight", 2, D, D, 0},
                  {"attn_q.bias", 1, D, 1, 0},       {"attn_k.weight", 2, D, D, 0},    {"attn_k.bias", 1, D, 1, 0},
                  {"attn_v.weight", 2, D, D, 0},     {"attn_v.bias", 1, D, 1, 0},      {"attn_out.weight", 2, D, D, 0},
                  {"attn_out.bias", 1, D, 1, 0},     {"ln2.weight", 1, D, 1, 1.0f},    {"ln2.bias", 1, D, 1, 0.0f},
                  {"ffn_up.weight", 2, D, F, 0},     {"ffn_up.bias", 1, F, 1, 0},      {"ffn_down.weight", 2, F, D, 0},
                  {"ffn_down.bias", 1, D, 1, 0}};
        for (size_t i = 0; i < CS_ARRAY_LEN(bl); i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "v.blk.%u.%s", l, bl[i].suffix);
            T(nm, bl[i].nd, bl[i].a, bl[i].b, 1, 1, bl[i].nd == 2 ? p->type : CS_TYPE_F32, bl[i].mean);
        }
    }
    T("mm.0.weight", 2, D, E, 1, 1, p->type, 0.0f);
    T("mm.0.bias", 1, E, 1, 1, 1, CS_TYPE_F32, 0.0f);
    T("mm.2.weight", 2, E, E, 1, 1, p->type, 0.0f);
    T("mm.2.bias", 1, E, 1, 1, 1, CS_TYPE_F32, 0.0f);
#undef T
    return n;
}

static int add_meta(struct cs_gguf_writer *w, const struct cs_clip_synth_params *p, char *err, size_t errlen)
{
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    const int32_t feature_layer[1] = {(int32_t)p->n_layer};
    CS_TRY(cs_gguf_add_str(w, "general.architecture", "clip", err, errlen));
    CS_TRY(cs_gguf_add_str(w, "general.type", "mmproj", err, errlen));
    CS_TRY(cs_gguf_add_str(w, "general.name", "synth-mmproj", err, errlen));
    CS_TRY(cs_gguf_add_bool(w, "clip.has_vision_encoder", true, err, errlen));
    CS_TRY(cs_gguf_add_bool(w, "clip.has_text_encoder", false, err, errlen));
    CS_TRY(cs_gguf_add_str(w, "clip.projector_type", "mlp", err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.image_size", p->image_size, err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.patch_size", p->patch_size, err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.embedding_length", p->n_embd, err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.feed_forward_length", p->n_ff, err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.projection_dim", p->proj_dim, err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.attention.head_count", p->n_head, err, errlen));
    CS_TRY(cs_gguf_add_f32(w, "clip.vision.attention.layer_norm_epsilon", 1e-5f, err, errlen));
    CS_TRY(cs_gguf_add_u32(w, "clip.vision.block_count", p->n_layer, err, errlen));
    CS_TRY(cs_gguf_add_arr(w, "clip.vision.feature_layer", CS_GGUF_I32, feature_layer, 1, err, errlen));
    CS_TRY(cs_gguf_add_arr(w, "clip.vision.image_mean", CS_GGUF_F32, mean, 3, err, errlen));
    CS_TRY(cs_gguf_add_arr(w, "clip.vision.image_std", CS_GGUF_F32, sd, 3, err, errlen));
    return cs_gguf_add_bool(w, "clip.use_gelu", false, err, errlen);
}

int cs_clip_synth_write(const struct cs_clip_synth_params *p, const char *path, char *err, size_t errlen)
{
    CS_TRY(check(p, err, errlen));
    const int cap = 5 + 16 * (int)p->n_layer + 4;
    struct tdesc *t = calloc((size_t)cap, sizeof *t);
    struct fill *fs = calloc((size_t)cap, sizeof *fs);
    const uint64_t max_ne0 = CS_MAX(CS_MAX(p->n_embd, p->n_ff), CS_MAX(p->proj_dim, p->patch_size));
    float *row = malloc(sizeof(float) * max_ne0);
    struct cs_gguf_writer *w = NULL;
    int rc = t && fs && row ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    if (rc == CLSPEC_OK)
        rc = cs_gguf_writer_new(path, &w, err, errlen);
    if (rc == CLSPEC_OK)
        rc = add_meta(w, p, err, errlen);
    const int n = rc == CLSPEC_OK ? tensors(p, t) : 0;
    for (int i = 0; i < n && rc == CLSPEC_OK; i++) {
        struct fill *f = &fs[i];
        cs_rng_seed(&f->rng, p->seed * 0x100000001B3ull + (uint64_t)i);
        f->mean = t[i].mean;
        f->std = 0.02f;
        f->type = t[i].type;
        f->ne0 = t[i].ne[0];
        f->row = row;
        if (!cs_row_bytes(f->type, f->ne0, &f->row_bytes))
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "%s: type", t[i].name);
        if (rc == CLSPEC_OK)
            rc = cs_gguf_add_tensor(w, t[i].name, t[i].n_dims, t[i].ne, t[i].type, NULL, fill_rows, f, err, errlen);
    }
    if (rc == CLSPEC_OK)
        rc = cs_gguf_writer_finish(w, err, errlen);
    cs_gguf_writer_free(w);
    free(t);
    free(fs);
    free(row);
    return rc;
}
