/* clip_synth.h: a synthetic vision projector file (projector type "mlp":
 * CLIP-style ViT with a class token, 2-layer MLP projector) with real
 * shapes and seeded random weights, for benchmarks of the encoder at the
 * sizes people run (e.g. SigLIP-so400m: 27 blocks, width 1152, 16 heads,
 * FFN 4304, patch 14, 384 x 384). */
#ifndef CS_CLIP_SYNTH_H
#define CS_CLIP_SYNTH_H

#include <stddef.h>
#include <stdint.h>

struct cs_clip_synth_params {
    uint32_t image_size, patch_size; /* pixels; floor(image_size / patch_size)^2 patches */
    uint32_t n_embd, n_ff, n_head, n_layer;
    uint32_t proj_dim;               /* the text model's n_embd */
    uint32_t type;                   /* enum cs_type of the matrices (f32, f16, q8_0, ...) */
    uint64_t seed;
};

/* The shapes of a named preset ("tiny": the test fixture's shapes;
 * "siglip-so400m"); CLSPEC_E_NOTFOUND for another name. */
int cs_clip_synth_preset(const char *name, struct cs_clip_synth_params *p, char *err, size_t errlen);
int cs_clip_synth_write(const struct cs_clip_synth_params *p, const char *path, char *err, size_t errlen);

#endif
