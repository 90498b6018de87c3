/* clip.h: a vision projector file ("mmproj": general.architecture = clip,
 * keys clip.* / clip.vision.*, tensors v.* and mm.*, as llama.cpp's
 * converter writes them) and the encoder that turns an image into rows of
 * the text model's input embeddings.
 * The encoder is a ViT run on the one block builder (src/model/block.c:
 * LayerNorm, biases, a GELU FFN, non-causal attention); what differs between
 * projector types (how patches become rows, which rows are kept, the
 * projector after the encoder) is one module per type behind struct
 * cs_proj_type (src/vision/proj_*.c). */
#ifndef CS_CLIP_H
#define CS_CLIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "gguf/gguf.h"

/* Activation of the encoder FFN. */
enum cs_vit_act { CS_VIT_GELU = 0, CS_VIT_QUICK_GELU };

/* The encoder's shape, from the clip.vision.* keys. */
struct cs_clip_hparams {
    char projector_type[32]; /* clip.projector_type, e.g. "mlp" */
    int image_size;          /* input side in pixels (square) */
    int patch_size;          /* pixels per patch side */
    int n_embd;              /* D: encoder width */
    int n_ff;                /* encoder FFN width */
    int n_head;              /* attention heads (D % n_head == 0) */
    int n_layer;             /* blocks in the file */
    int n_run;               /* blocks run: max(clip.vision.feature_layer) when present, else n_layer - 1 */
    int proj_dim;            /* output width E (the text model's n_embd) */
    float eps;               /* LayerNorm epsilon */
    enum cs_vit_act act;     /* clip.use_gelu true: GELU, false: quick-GELU */
    float mean[3], std[3];   /* per-channel normalisation */
    uint8_t pad[3];          /* letterbox colour */
};

/* One encoder block's tensors (into the mapping; biases may be NULL). */
struct cs_clip_block_t {
    const struct cs_gguf_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const struct cs_gguf_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    const struct cs_gguf_tensor *up_w, *up_b, *down_w, *down_b;
};

/* The encoder's tensors. */
struct cs_clip_tensors {
    const struct cs_gguf_tensor *patch_w;  /* {P, P, 3, D}: D rows of 3*P*P, order (c, ky, kx) */
    const struct cs_gguf_tensor *patch_b;  /* {D} or NULL */
    const struct cs_gguf_tensor *class_e;  /* {D} or NULL */
    const struct cs_gguf_tensor *pos_e;    /* {D, n_pos} */
    const struct cs_gguf_tensor *pre_ln_w, *pre_ln_b, *post_ln_w, *post_ln_b; /* or NULL */
    struct cs_clip_block_t *blk;           /* (n_layer) */
};

struct cs_clip;

/* A projector type: how the encoder's rows become the text model's rows. */
struct cs_proj_type {
    const char *name; /* clip.projector_type */
    /* Finds and checks the type's own tensors; c's hparams and encoder tensors are read. */
    int (*load)(struct cs_clip *c, char *err, size_t errlen);
    /* Rows one image yields (the image tokens). */
    int (*n_tokens)(const struct cs_clip *c);
    /* Plain-C reference: from the encoder's output rows h (n_pos, D), the
     * image's rows out (n_tokens, E). */
    int (*project_ref)(const struct cs_clip *c, const float *h, int n_pos, float *out, char *err, size_t errlen);
    /* The same on the device (c->dev): h (n_pos, D) device rows -> out (n_tokens, E). */
    int (*project_dev)(struct cs_clip *c, cl_mem h, int n_pos, cl_mem out, char *err, size_t errlen);
    void (*free_dev)(struct cs_clip *c); /* releases c->proj_dev */
    void (*free)(struct cs_clip *c);     /* releases c->proj */
};

struct cs_clip_dev; /* clip_dev.c: the uploaded weights and scratch */

struct cs_clip {
    struct cs_gguf *g;                 /* owned */
    struct cs_clip_hparams hp;
    struct cs_clip_tensors t;
    const struct cs_proj_type *type;
    void *proj;                        /* the type's own state (owned by it) */
    void *proj_dev;                    /* the type's device state (owned by it, made by project_dev) */
    int n_patch;                       /* floor(image_size / patch_size)^2 (a remainder is not seen) */
    int n_pos;                         /* encoder rows: n_patch (+ 1 with a class token) */
    struct cs_cl_dev *dev;             /* borrowed, NULL until cs_clip_upload */
    struct cs_clip_dev *dv;            /* owned, NULL until cs_clip_upload */
};

/* Opens a projector file and checks its keys and tensors against each
 * other (messages name the key or tensor). */
int cs_clip_open(const char *path, struct cs_clip **out, char *err, size_t errlen);
void cs_clip_free(struct cs_clip *c);

/* Rows one image yields; the width of each is hp.proj_dim. */
int cs_clip_n_tokens(const struct cs_clip *c);

/* Host f32 copy of a tensor (dequantized), n_elems floats in *out (owned by
 * the caller, free()). */
int cs_clip_tensor_f32(const struct cs_gguf_tensor *t, float **out, char *err, size_t errlen);

/* The projector types clspec implements, by name; NULL when unknown. */
const struct cs_proj_type *cs_proj_type_find(const char *name);
/* "mlp, ..." for messages. */
const char *cs_proj_type_names(void);

/* Plain-C reference of the whole encoder on a preprocessed image planar
 * (3, S, S): out (n_tokens, E). stages (optional, NULL): the rows after the
 * pre-LayerNorm and after each block, (1 + n_run) * n_pos * D floats, for
 * tests. */
int cs_clip_encode_ref(const struct cs_clip *c, const float *planar, float *out, float *stages, char *err,
                       size_t errlen);

/* The encoder's shared reference pieces, for the projector modules. */
void cs_vit_ref_matmul(const float *W, const float *b, const float *x, float *y, int n, int n_in, int n_out);
float cs_vit_ref_gelu(float x);
float cs_vit_ref_quick_gelu(float x);

#endif
