/* clip_dev.h: the vision encoder on an OpenCL device: the projector file's
 * weights uploaded, the ViT blocks run through the one block builder
 * (LayerNorm, biases, GELU FFN, bidirectional attention over a small f32
 * K/V of the image's own rows), then the projector type's device path.
 * One image per call; the rows come back to the host, from where the engine
 * takes them as input embeddings (the projector may sit on another device
 * than the text model). */
#ifndef CS_CLIP_DEV_H
#define CS_CLIP_DEV_H

#include <stddef.h>

#include "cl/runtime.h"
#include "ops/matmul.h"
#include "vision/clip.h"

/* Uploads c's encoder to d (borrowed; must outlive c) and builds the
 * programs it launches. Calling it again is a no-op. */
int cs_clip_upload(struct cs_clip *c, struct cs_cl_dev *d, char *err, size_t errlen);
/* Releases what cs_clip_upload and the projector's device path made. */
void cs_clip_dev_free(struct cs_clip *c);

/* Encodes a preprocessed image planar (3, S, S) on the device: out
 * (n_tokens, proj_dim) host floats. stages (NULL or (1 + n_run) * n_pos * D
 * floats): the rows after the pre-LayerNorm and after each block, as
 * cs_clip_encode_ref gives them. */
int cs_clip_encode(struct cs_clip *c, const float *planar, float *out, float *stages, char *err, size_t errlen);

/* For the projector modules: upload a matrix (rows of ne[0]) / a vector
 * (f32; t NULL gives NULL) / a scratch buffer of n floats to c's device. */
int cs_clip_dev_mat(struct cs_clip *c, const struct cs_gguf_tensor *t, struct cs_weight *w, char *err,
                    size_t errlen);
int cs_clip_dev_vec(struct cs_clip *c, const struct cs_gguf_tensor *t, cl_mem *out, char *err, size_t errlen);
int cs_clip_dev_scratch(struct cs_clip *c, size_t n, cl_mem *out, char *err, size_t errlen);
/* y (n, w->n_out) = x[x_off ..] (n, w->n_in) . W^T (+ b); x_off in floats. */
int cs_vit_dev_linear(struct cs_cl_dev *d, const struct cs_weight *w, cl_mem b, cl_mem x, size_t x_off, cl_mem y,
                      int n, char *err, size_t errlen);
/* x (n floats) = act(x) in place. */
int cs_vit_dev_act(struct cs_cl_dev *d, enum cs_vit_act act, cl_mem x, size_t n, char *err, size_t errlen);

#endif
