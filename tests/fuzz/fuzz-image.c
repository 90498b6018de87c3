/* fuzz-image.c: libFuzzer target for image decoding and preprocessing
 * (src/vision/image.c): any bytes go through cs_image_decode with small
 * limits (so a hostile header cannot ask for gigabytes); an image that
 * decodes is letterboxed to 32 x 32 (the bicubic resize) and normalised,
 * touching every pixel under ASan. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "clspec/clspec.h"
#include "vision/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CLSPEC_ERRLEN];
    const struct cs_image_limits lim = {.max_bytes = 1 << 20, .max_pixels = 1 << 20, .max_side = 4096};
    struct cs_image im;
    if (cs_image_decode(data, size, &lim, &im, err, sizeof err) != CLSPEC_OK)
        return 0;
    static const uint8_t pad[3] = {122, 116, 104};
    static const float mean[3] = {0.5f, 0.5f, 0.5f}, sd[3] = {0.25f, 0.25f, 0.25f};
    float *planar = malloc(sizeof(float) * 3 * 32 * 32);
    if (planar)
        (void)cs_image_preprocess(&im, 32, pad, mean, sd, planar, err, sizeof err);
    free(planar);
    cs_image_free(&im);
    return 0;
}
