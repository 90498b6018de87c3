/* media.h: images in requests. A request names its images (OpenAI chat
 * content parts {"type": "image_url", "image_url": {"url": "data:..."}},
 * llama-server's /completion prompt object {"prompt_string": "...
 * <__media__> ...", "multimodal_data": ["<base64>", ...]}); each image sits
 * where the marker text CS_MEDIA_MARKER stands in the prompt text. Here the
 * references are decoded (base64, data: URIs; remote URLs are refused) and
 * the prompt becomes rows: text chunks tokenized, each image's rows from
 * the projector (clspec_image_encode).
 * Image rows carry negative placeholder ids in the prompt's token array,
 * derived from the image's content hash (cs_media_placeholder), so that
 * prefix reuse in the KV cache matches an image exactly when its bytes
 * match; their inputs are the projector's rows, in prompt order. */
#ifndef CS_MEDIA_H
#define CS_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"

#define CS_MEDIA_MARKER "<__media__>"
#define CS_MEDIA_MAX 16 /* images per request */

/* One image reference of a request (points into the request's JSON). */
struct cs_media_ref {
    const char *s;   /* a data: URI (image_url) or bare base64 (multimodal_data) */
    size_t len;
    bool uri;        /* s is a URL: "data:image/...;base64,..." (others are refused) */
};

/* Decodes base64 (standard alphabet, padding optional, whitespace ignored)
 * into *out (malloc'd, *n bytes). CLSPEC_E_FORMAT names the first bad
 * offset. */
int cs_base64_decode(const char *s, size_t len, unsigned char **out, size_t *n, char *err, size_t errlen);

/* The bytes of one reference: a data: URI with a base64 image/png or
 * image/jpeg payload, or bare base64; an http(s) URL is fetched when
 * remote_ok ([model] remote_images: libcurl, redirects within http(s), 10 s
 * and CS_MEDIA_MAX_BYTES at most) and refused otherwise; other URLs get
 * CLSPEC_E_INVAL, a MIME type other than PNG / JPEG CLSPEC_E_FORMAT. */
int cs_media_bytes(const struct cs_media_ref *r, bool remote_ok, unsigned char **out, size_t *n, char *err,
                   size_t errlen);
#define CS_MEDIA_MAX_BYTES ((size_t)20 << 20)

/* The placeholder id of row k of an image whose bytes hash to h (< 0, never
 * CLSPEC_TOKEN_EMBD). */
int32_t cs_media_placeholder(uint64_t h, int32_t k);

/* A prompt with images as rows. */
struct cs_media_prompt {
    int32_t *ids;    /* (n) tokens; image rows: placeholders (< 0) */
    int n;
    float *rows;     /* (n_rows, n_embd) the image rows' inputs, in prompt order; NULL when no image */
    int n_rows;
    int n_images;
};

/* text (len bytes) with n_refs image references, one per CS_MEDIA_MARKER in
 * the text: the chunks between markers are tokenized (the first with
 * add_special, parse_special as given), each image decoded and encoded by m. The number of markers must equal n_refs
 * (CLSPEC_E_INVAL naming both). Errors of the images come back as
 * "image K: ..." (FORMAT/RANGE/UNSUPPORTED). */
int cs_media_prompt_build(const clspec_engine *e, clspec_mmproj *m, const char *text, size_t len,
                          bool add_special, bool parse_special, const struct cs_media_ref *refs, int n_refs,
                          bool remote_ok, struct cs_media_prompt *out, char *err, size_t errlen);
void cs_media_prompt_free(struct cs_media_prompt *p);

/* A copy of an OpenAI messages array in which every content given as parts
 * is one text: the text parts joined, each image_url part as CS_MEDIA_MARKER
 * (where the chat template renders the image); NULL when out of memory. The
 * caller releases it. */
struct json_t;
struct json_t *cs_media_messages(struct json_t *messages);

#endif
