/* media.c: image references of requests and prompts with image rows (see
 * media.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "base/strbuf.h"
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>

#include "daemon/media.h"

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62; /* '-' and '_': the URL-safe alphabet, accepted too */
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int cs_base64_decode(const char *s, size_t len, unsigned char **out, size_t *n, char *err, size_t errlen)
{
    unsigned char *o = malloc(len / 4 * 3 + 3);
    if (!o)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    size_t k = 0, pad = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_val(c);
        if (v < 0 || pad > 0) {
            free(o);
            return cs_err(err, errlen, CLSPEC_E_FORMAT, "base64: unexpected character at offset %zu", i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (pad > 2 || bits >= 6) {
        free(o);
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "base64: truncated (%zu characters)", len);
    }
    *out = o;
    *n = k;
    return CLSPEC_OK;
}

/* ---- remote images ([model] remote_images) ---- */

struct fetch {
    unsigned char *p;
    size_t n, cap;
    bool too_big;
};

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *user)
{
    struct fetch *f = user;
    const size_t k = size * nmemb;
    if (f->n + k > CS_MEDIA_MAX_BYTES) {
        f->too_big = true;
        return 0; /* libcurl stops with a write error */
    }
    if (f->n + k > f->cap) {
        size_t cap = CS_MAX(f->cap * 2, f->n + k);
        unsigned char *g = realloc(f->p, cap);
        if (!g)
            return 0;
        f->p = g;
        f->cap = cap;
    }
    memcpy(f->p + f->n, data, k);
    f->n += k;
    return k;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* GET url (len bytes) into *out: http and https only, also across redirects. */
static int fetch_url(const char *url, size_t len, unsigned char **out, size_t *n, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    char *u = strndup(url, len);
    CURL *c = u ? curl_easy_init() : NULL;
    if (!c) {
        free(u);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "image URL: out of memory");
    }
    struct fetch f = {0};
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CS_MEDIA_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    const CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    int ret = CLSPEC_OK;
    if (f.too_big || rc == CURLE_FILESIZE_EXCEEDED)
        ret = cs_err(err, errlen, CLSPEC_E_RANGE, "image URL %s: more than %zu bytes", u, CS_MEDIA_MAX_BYTES);
    else if (rc != CURLE_OK)
        ret = cs_err(err, errlen, CLSPEC_E_INVAL, "image URL %s: %s", u, cerr[0] ? cerr : curl_easy_strerror(rc));
    free(u);
    if (ret < 0) {
        free(f.p);
        return ret;
    }
    *out = f.p;
    *n = f.n;
    return CLSPEC_OK;
}

int cs_media_bytes(const struct cs_media_ref *r, bool remote_ok, unsigned char **out, size_t *n, char *err,
                   size_t errlen)
{
    if (!r->uri)
        return cs_base64_decode(r->s, r->len, out, n, err, errlen);
    if (r->len < 5 || strncmp(r->s, "data:", 5) != 0) {
        const bool web = (r->len >= 7 && strncmp(r->s, "http://", 7) == 0) ||
                         (r->len >= 8 && strncmp(r->s, "https://", 8) == 0);
        if (web && remote_ok)
            return fetch_url(r->s, r->len, out, n, err, errlen);
        if (web)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "remote image URLs are not fetched by this server "
                          "([model] remote_images = false): send the image inline as a data: URI "
                          "(data:image/png;base64,...)");
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "image URL: a data: URI expected (data:image/png;base64,...)");
    }
    const char *comma = memchr(r->s, ',', r->len);
    if (!comma)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "data: URI without a comma");
    const size_t hlen = (size_t)(comma - r->s);
    if (hlen < 7 || memcmp(comma - 7, ";base64", 7) != 0)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "data: URI: only base64 payloads (\";base64,\") are supported");
    const char *mime = r->s + 5;
    const size_t mlen = hlen - 5 - 7;
    static const char *const ok[] = {"image/png", "image/jpeg", "image/jpg"};
    bool known = mlen == 0; /* no type given: sniffed from the bytes */
    for (size_t i = 0; i < CS_ARRAY_LEN(ok) && !known; i++)
        known = mlen == strlen(ok[i]) && strncmp(mime, ok[i], mlen) == 0;
    if (!known)
        return cs_err(err, errlen, CLSPEC_E_FORMAT, "data: URI of type '%.*s': image/png or image/jpeg expected",
                      (int)CS_MIN(mlen, (size_t)64), mime);
    return cs_base64_decode(comma + 1, r->len - hlen - 1, out, n, err, errlen);
}

int32_t cs_media_placeholder(uint64_t h, int32_t k)
{
    return -2 - (int32_t)((h + (uint64_t)k) & 0x3FFFFFFFu);
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* Appends the tokens of text[0..len) to p->ids (grown as needed). */
static int add_text(const clspec_engine *e, const char *text, size_t len, bool add_special, bool parse_special,
                    struct cs_media_prompt *p, int *cap, char *err, size_t errlen)
{
    for (;;) {
        size_t n = 0;
        int rc = clspec_tokenize(e, text, len, add_special, parse_special, p->ids + p->n, (size_t)(*cap - p->n), &n,
                                 err, errlen);
        if (rc == CLSPEC_OK) {
            p->n += (int)n;
            return CLSPEC_OK;
        }
        if (rc != CLSPEC_E_RANGE || n > (size_t)INT32_MAX / 2)
            return rc;
        int want = p->n + (int)n + 64;
        int32_t *g = realloc(p->ids, (size_t)want * sizeof *g);
        if (!g)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        p->ids = g;
        *cap = want;
    }
}

/* Appends image k (its reference r) as rows. */
static int add_image(clspec_mmproj *m, int n_embd, const struct cs_media_ref *r, bool remote_ok,
                     struct cs_media_prompt *p, int *cap, char *err, size_t errlen)
{
    unsigned char *bytes = NULL;
    size_t n = 0;
    CS_TRY(cs_media_bytes(r, remote_ok, &bytes, &n, err, errlen));
    const int nt = clspec_mmproj_n_tokens(m);
    float *rows = realloc(p->rows, ((size_t)p->n_rows + nt) * (size_t)n_embd * sizeof *rows);
    int32_t *ids = p->n + nt > *cap ? realloc(p->ids, ((size_t)p->n + nt + 64) * sizeof *ids) : p->ids;
    if (rows)
        p->rows = rows;
    if (ids && ids != p->ids) {
        p->ids = ids;
        *cap = p->n + nt + 64;
    }
    int rc = rows && ids ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    if (rc == CLSPEC_OK)
        rc = clspec_image_encode(m, bytes, n, p->rows + (size_t)p->n_rows * n_embd, err, errlen);
    if (rc == CLSPEC_OK) {
        const uint64_t h = fnv1a(bytes, n);
        for (int k = 0; k < nt; k++)
            p->ids[p->n++] = cs_media_placeholder(h, k);
        p->n_rows += nt;
        p->n_images++;
    }
    free(bytes);
    return rc;
}

int cs_media_prompt_build(const clspec_engine *e, clspec_mmproj *m, const char *text, size_t len,
                          bool add_special, bool parse_special, const struct cs_media_ref *refs, int n_refs,
                          bool remote_ok, struct cs_media_prompt *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const size_t ml = strlen(CS_MEDIA_MARKER);
    int n_markers = 0;
    for (const char *q = text; (q = memmem(q, len - (size_t)(q - text), CS_MEDIA_MARKER, ml)) != NULL; q += ml)
        n_markers++;
    if (n_refs > 0 && !m)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "this server has no vision projector ([model] mmproj): "
                      "images are not accepted");
    if (n_markers != n_refs)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "the prompt has %d image marker%s (%s) for %d image%s", n_markers,
                      n_markers == 1 ? "" : "s", CS_MEDIA_MARKER, n_refs, n_refs == 1 ? "" : "s");
    if (n_refs > CS_MEDIA_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%d images in one request; at most %d", n_refs, CS_MEDIA_MAX);
    struct clspec_engine_info info = {.size = sizeof info};
    CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    int cap = 0, rc = CLSPEC_OK;
    const char *c = text, *end = text + len;
    for (int k = 0; rc == CLSPEC_OK && k <= n_refs; k++) {
        const char *mk = k < n_refs ? memmem(c, (size_t)(end - c), CS_MEDIA_MARKER, ml) : end;
        if (mk > c || (k == 0 && add_special)) /* an empty first chunk still gets its BOS */
            rc = add_text(e, c, (size_t)(mk - c), k == 0 && add_special, parse_special, out, &cap, err, errlen);
        if (rc == CLSPEC_OK && k < n_refs) {
            rc = add_image(m, info.n_embd, &refs[k], remote_ok, out, &cap, err, errlen);
            if (rc < 0)
                cs_err_prefix(err, errlen, rc, "image %d", k + 1);
            c = mk + ml;
        }
    }
    if (rc == CLSPEC_OK && out->n == 0)
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "the prompt is empty");
    if (rc == CLSPEC_OK && out->ids[out->n - 1] < 0) /* generation starts from a text token */
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "the prompt ends with an image: put some text after it");
    if (rc < 0)
        cs_media_prompt_free(out);
    return rc;
}

void cs_media_prompt_free(struct cs_media_prompt *p)
{
    free(p->ids);
    free(p->rows);
    memset(p, 0, sizeof *p);
}

json_t *cs_media_messages(json_t *messages)
{
    json_t *m = json_deep_copy(messages);
    size_t i, k;
    json_t *msg, *part;
    json_array_foreach(m, i, msg)
    {
        json_t *content = json_object_get(msg, "content");
        if (!json_is_array(content))
            continue;
        /* the parts as one text, each image as its marker (as llama-server hands templates a
         * multimodal message) */
        struct cs_strbuf b = {0};
        json_array_foreach(content, k, part)
        {
            json_t *t = json_object_get(part, "type"), *tx = json_object_get(part, "text");
            if (json_is_string(t) && strcmp(json_string_value(t), "image_url") == 0)
                cs_strbuf_put(&b, CS_MEDIA_MARKER);
            else if (json_is_string(tx))
                cs_strbuf_put(&b, json_string_value(tx));
        }
        char *text = NULL;
        if (cs_strbuf_take(&b, &text, NULL) != CLSPEC_OK) {
            json_decref(m);
            return NULL;
        }
        json_object_set_new(msg, "content", json_string(text ? text : ""));
        free(text);
    }
    return m;
}
