/* image.c: PNG / JPEG decoding with limits, bicubic letterbox and
 * normalisation (see image.h). libpng's simplified API and libjpeg-turbo
 * both report damage through their own error paths; neither may abort the
 * process, so JPEG errors longjmp back here and PNG errors come back as a
 * failed call with a message. */
#include "config.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "base/common.h"
#include "vision/image.h"

#define DEF_MAX_BYTES ((size_t)20 << 20)
#define DEF_MAX_PIXELS ((uint64_t)40000000)
#define DEF_MAX_SIDE 16384

enum cs_image_format cs_image_sniff(const void *buf, size_t len)
{
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const unsigned char *b = buf;
    if (len >= 8 && memcmp(b, png_magic, 8) == 0)
        return CS_IMAGE_PNG;
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return CS_IMAGE_JPEG;
    return CS_IMAGE_UNKNOWN;
}

const char *cs_image_mime(enum cs_image_format f)
{
    return f == CS_IMAGE_PNG ? "image/png" : f == CS_IMAGE_JPEG ? "image/jpeg" : NULL;
}

void cs_image_free(struct cs_image *im)
{
    if (!im)
        return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

/* The header's size against the limits, before any pixel is allocated. */
static int check_size(uint64_t w, uint64_t h, const struct cs_image_limits *lim, char *err, size_t errlen)
{
    const uint64_t max_px = lim->max_pixels ? lim->max_pixels : DEF_MAX_PIXELS;
    const uint64_t max_side = lim->max_side ? (uint64_t)lim->max_side : DEF_MAX_SIDE;
    if (w == 0 || h == 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "image has no pixels (%llux%llu)", (unsigned long long)w,
                      (unsigned long long)h);
    if (w > max_side || h > max_side)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "image is %llux%llu pixels; each side may be at most %llu",
                      (unsigned long long)w, (unsigned long long)h, (unsigned long long)max_side);
    if (w * h > max_px)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "image is %llux%llu = %llu pixels; at most %llu are accepted",
                      (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                      (unsigned long long)max_px);
    return CLSPEC_OK;
}

static int decode_png(const void *buf, size_t len, const struct cs_image_limits *lim, struct cs_image *out,
                      char *err, size_t errlen)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, buf, len))
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "not a readable PNG: %s", pi.message);
    int rc = check_size(pi.width, pi.height, lim, err, errlen);
    if (rc < 0) {
        png_image_free(&pi);
        return rc;
    }
    pi.format = PNG_FORMAT_RGB; /* 8-bit RGB; palette, grey, 16-bit and alpha are converted (alpha composited on black) */
    const size_t n = (size_t)PNG_IMAGE_SIZE(pi);
    uint8_t *rgb = malloc(n);
    if (!rgb) {
        png_image_free(&pi);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "image of %u x %u pixels: out of memory", pi.width, pi.height);
    }
    if (!png_image_finish_read(&pi, NULL, rgb, 0, NULL)) {
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "damaged PNG: %s", pi.message);
        png_image_free(&pi);
        free(rgb);
        return rc;
    }
    out->w = (int)pi.width;
    out->h = (int)pi.height;
    out->rgb = rgb;
    return CLSPEC_OK;
}

/* libjpeg's error manager, extended with the jump back into decode_jpeg. */
struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr c)
{
    struct jerr *e = (struct jerr *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jump, 1);
}

static void jerr_silent(j_common_ptr c)
{
    (void)c; /* warnings (e.g. a premature end of data is padded): not printed */
}

static int decode_jpeg(const void *buf, size_t len, const struct cs_image_limits *lim, struct cs_image *out,
                       char *err, size_t errlen)
{
    struct jpeg_decompress_struct ci;
    struct jerr je;
    uint8_t *volatile rgb = NULL;
    memset(&je, 0, sizeof je);
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jerr_exit;
    je.mgr.output_message = jerr_silent;
    if (setjmp(je.jump)) {
        jpeg_destroy_decompress(&ci);
        free(rgb);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "damaged JPEG: %s", je.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, (const unsigned char *)buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    int rc = check_size(ci.image_width, ci.image_height, lim, err, errlen);
    if (rc < 0) {
        jpeg_destroy_decompress(&ci);
        return rc;
    }
    ci.out_color_space = JCS_RGB; /* grey and YCbCr convert; CMYK is refused by libjpeg itself */
    jpeg_start_decompress(&ci);
    if (ci.output_components != 3) {
        jpeg_destroy_decompress(&ci);
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "JPEG with %d colour components (RGB or grey expected)",
                      ci.output_components);
    }
    const size_t stride = (size_t)ci.output_width * 3;
    rgb = malloc(stride * ci.output_height);
    if (!rgb) {
        jpeg_destroy_decompress(&ci);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "image of %u x %u pixels: out of memory", ci.output_width,
                      ci.output_height);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = rgb + stride * ci.output_scanline;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    out->w = (int)ci.output_width;
    out->h = (int)ci.output_height;
    out->rgb = rgb;
    jpeg_destroy_decompress(&ci);
    return CLSPEC_OK;
}

int cs_image_decode(const void *buf, size_t len, const struct cs_image_limits *lim, struct cs_image *out,
                    char *err, size_t errlen)
{
    static const struct cs_image_limits none = {0, 0, 0};
    if (!lim)
        lim = &none;
    memset(out, 0, sizeof *out);
    const size_t max_bytes = lim->max_bytes ? lim->max_bytes : DEF_MAX_BYTES;
    if (!buf || len == 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "empty image");
    if (len > max_bytes)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "image is %zu bytes; at most %zu are accepted", len, max_bytes);
    switch (cs_image_sniff(buf, len)) {
    case CS_IMAGE_PNG: return decode_png(buf, len, lim, out, err, errlen);
    case CS_IMAGE_JPEG: return decode_jpeg(buf, len, lim, out, err, errlen);
    default: return cs_err(err, errlen, CLSPEC_E_FORMAT, "not a PNG or JPEG image (unknown signature)");
    }
}

static int clampi(int x, int lo, int hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Cubic convolution through p(-1), p(0), p(1), p(2) at t in [0, 1) (Keys,
 * a = -1/2), with the coefficient arithmetic of mtmd's routine (double
 * constants, float storage), so the rounded bytes agree with it. */
static float cubic(float pm1, float p0, float p1, float p2, float t)
{
    const float d0 = pm1 - p0, d2 = p1 - p0, d3 = p2 - p0;
    const float a1 = (float)(-1.0 / 3 * d0 + d2 - 1.0 / 6 * d3);
    const float a2 = (float)(1.0 / 2 * d0 + 1.0 / 2 * d2);
    const float a3 = (float)(-1.0 / 6 * d0 - 1.0 / 2 * d2 + 1.0 / 6 * d3);
    return p0 + a1 * t + a2 * t * t + a3 * t * t * t;
}

int cs_image_resize_bicubic(const struct cs_image *in, int nw, int nh, struct cs_image *out, char *err,
                            size_t errlen)
{
    if (nw <= 0 || nh <= 0 || nw > DEF_MAX_SIDE || nh > DEF_MAX_SIDE)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "resize to %dx%d", nw, nh);
    uint8_t *dst = malloc((size_t)nw * nh * 3);
    if (!dst)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "resize to %dx%d: out of memory", nw, nh);
    const int w = in->w, h = in->h;
    const float tx = (float)w / (float)nw, ty = (float)h / (float)nh;
    for (int i = 0; i < nh; i++) {
        const int y = (int)(ty * i);
        const float dy = ty * i - y;
        for (int j = 0; j < nw; j++) {
            const int x = (int)(tx * j);
            const float dx = tx * j - x;
            int xs[4];
            for (int m = 0; m < 4; m++)
                xs[m] = clampi(x - 1 + m, 0, w - 1);
            for (int k = 0; k < 3; k++) {
                float col[4];
                for (int r = 0; r < 4; r++) {
                    const uint8_t *row = in->rgb + (size_t)clampi(y - 1 + r, 0, h - 1) * w * 3;
                    col[r] = cubic(row[xs[0] * 3 + k], row[xs[1] * 3 + k], row[xs[2] * 3 + k], row[xs[3] * 3 + k],
                                   dx);
                }
                float v = roundf(cubic(col[0], col[1], col[2], col[3], dy));
                v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
                dst[((size_t)i * nw + j) * 3 + k] = (uint8_t)v;
            }
        }
    }
    out->w = nw;
    out->h = nh;
    out->rgb = dst;
    return CLSPEC_OK;
}

int cs_image_preprocess(const struct cs_image *in, int size, const uint8_t pad[3], const float mean[3],
                        const float std[3], float *planar, char *err, size_t errlen)
{
    if (size <= 0 || size > DEF_MAX_SIDE || in->w <= 0 || in->h <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "preprocess %dx%d to %d", in->w, in->h, size);
    struct cs_image canvas = {0, 0, NULL};
    const struct cs_image *src = in;
    if (in->w != size || in->h != size) {
        const float s = fminf((float)size / in->w, (float)size / in->h);
        const int nw = CS_MIN((int)ceilf(in->w * s), size), nh = CS_MIN((int)ceilf(in->h * s), size);
        struct cs_image rs;
        CS_TRY(cs_image_resize_bicubic(in, nw, nh, &rs, err, errlen));
        canvas.w = canvas.h = size;
        canvas.rgb = malloc((size_t)size * size * 3);
        if (!canvas.rgb) {
            cs_image_free(&rs);
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "preprocess: out of memory");
        }
        for (size_t p = 0; p < (size_t)size * size; p++)
            memcpy(canvas.rgb + p * 3, pad, 3);
        const int ox = (size - nw) / 2, oy = (size - nh) / 2;
        for (int y = 0; y < nh; y++)
            memcpy(canvas.rgb + ((size_t)(y + oy) * size + ox) * 3, rs.rgb + (size_t)y * nw * 3, (size_t)nw * 3);
        cs_image_free(&rs);
        src = &canvas;
    }
    const size_t plane = (size_t)size * size;
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < 3; c++)
            planar[c * plane + p] = ((float)src->rgb[p * 3 + c] / 255.0f - mean[c]) / std[c];
    cs_image_free(&canvas);
    return CLSPEC_OK;
}
