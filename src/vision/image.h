/* image.h: decoding untrusted image bytes (PNG through libpng, JPEG through
 * libjpeg-turbo) into 8-bit RGB, and the fixed-size preprocessing of
 * mtmd-style vision encoders: letterbox with bicubic resampling onto a pad
 * colour, then per-channel normalisation into the planar float layout the
 * patch embedding reads.
 * Every size is checked against limits before anything is allocated, so a
 * hostile header (30000 x 30000) or a truncated file gets an error, never a
 * crash or a huge allocation. */
#ifndef CS_IMAGE_H
#define CS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* An 8-bit RGB image, rows top to bottom, pixels left to right, 3 bytes each. */
struct cs_image {
    int w, h;        /* pixels */
    uint8_t *rgb;    /* (h, w, 3), owned */
};

/* What a decoder accepts (0 = the default given). */
struct cs_image_limits {
    size_t max_bytes;     /* encoded size; default 20 MiB */
    uint64_t max_pixels;  /* w * h; default 40 megapixels */
    int max_side;         /* w and h each; default 16384 */
};

/* The formats cs_image_sniff recognises. */
enum cs_image_format { CS_IMAGE_UNKNOWN = 0, CS_IMAGE_PNG, CS_IMAGE_JPEG };

/* The format from the first bytes (magic numbers), CS_IMAGE_UNKNOWN if neither. */
enum cs_image_format cs_image_sniff(const void *buf, size_t len);

/* "image/png", "image/jpeg" or NULL. */
const char *cs_image_mime(enum cs_image_format f);

/* Decodes buf (PNG or JPEG, any bit depth / colour type / palette / alpha,
 * alpha dropped) into out. CLSPEC_E_FORMAT for something that is not an image
 * or is damaged, CLSPEC_E_RANGE past the limits (the message names the size
 * and the limit). lim may be NULL (defaults). */
int cs_image_decode(const void *buf, size_t len, const struct cs_image_limits *lim, struct cs_image *out,
                    char *err, size_t errlen);

void cs_image_free(struct cs_image *im);

/* mtmd's bicubic resize: destination pixel (x, y) samples the source at
 * (x * w / nw, y * h / nh) with cubic convolution (a = -1/2), clamp-to-edge,
 * each channel rounded and clamped to 0..255. out gets a new (nw, nh) image. */
int cs_image_resize_bicubic(const struct cs_image *in, int nw, int nh, struct cs_image *out, char *err,
                            size_t errlen);

/* The fixed-size preprocessing: an image already size x size is used as is;
 * otherwise it is scaled by min(size/w, size/h) to (min(ceil(w*s), size),
 * min(ceil(h*s), size)) with cs_image_resize_bicubic and pasted centred
 * (integer offsets) onto a size x size canvas of the pad colour. Then
 * v = (u8 / 255 - mean[c]) / std[c] into planar[c][y][x] (3 * size * size
 * floats, caller-owned). */
int cs_image_preprocess(const struct cs_image *in, int size, const uint8_t pad[3], const float mean[3],
                        const float std[3], float *planar, char *err, size_t errlen);

#endif
