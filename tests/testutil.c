/* testutil.c: shared test helpers: paths, files, JSON references, byte
 * images, random numbers (see testutil.h). */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf/quant.h"
#include "testutil.h"

char *tu_shared_path(const char *rel)
{
    const char *root = getenv("CLSPEC_SHARED");
    if (!root || !*root)
        root = "../shared";
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/models", root);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "testutil: shared directory '%s' not found (set CLSPEC_SHARED)\n", root);
        exit(99); /* automake: hard error */
    }
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/%s", root, rel);
    return p;
}

void *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long sz = ftell(f);
    rewind(f);
    char *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[sz] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)sz;
    return buf;
}

char *tu_tmp_path(const char *suffix)
{
    static unsigned counter;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    size_t n = strlen(dir) + strlen(suffix) + 64;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/clspec-test-%ld-%u%s", dir, (long)getpid(), counter++, suffix);
    return p;
}

int tu_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(buf, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

char *tu_find_model(const char *name)
{
    static const char *const dirs[] = {"models/", "models/derived/", "models/synthetic/"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "%s%s", dirs[i], name);
        char *p = tu_shared_path(rel);
        if (access(p, R_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

json_t *tu_load_json(const char *rel)
{
    char *path = tu_shared_path(rel);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
    free(path);
    return root;
}

void tu_private_cache(const char *name, char *base, size_t cap)
{
    const char *b = getenv("CLSPEC_BUILDDIR");
    char cwd[512];
    if (!b && getcwd(cwd, sizeof cwd))
        b = cwd;
    snprintf(base, cap, "%s/.cache/%s", b ? b : ".", name);
    setenv("XDG_CACHE_HOME", base, 1);
}

void tu_buf_put(struct tu_buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

void tu_buf_le(struct tu_buf *b, uint64_t v, unsigned n)
{
    uint8_t t[8];
    for (unsigned i = 0; i < n && i < 8; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    tu_buf_put(b, t, n < 8 ? n : 8);
}

void tu_buf_u32(struct tu_buf *b, uint32_t v)
{
    tu_buf_le(b, v, 4);
}

void tu_buf_u64(struct tu_buf *b, uint64_t v)
{
    tu_buf_le(b, v, 8);
}

void tu_buf_str(struct tu_buf *b, const char *s)
{
    tu_buf_u64(b, strlen(s));
    tu_buf_put(b, s, strlen(s));
}

void tu_put_f16(uint8_t *p, float v)
{
    uint16_t h = cs_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

void tu_rng_seed(struct tu_rng *r, uint64_t seed)
{
    r->s = seed ? seed : 0x9E3779B97F4A7C15ull;
}

uint64_t tu_rng_u64(struct tu_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

float tu_rng_uniform(struct tu_rng *r)
{
    return (float)(tu_rng_u64(r) >> 40) / (float)(1u << 24);
}

float tu_rng_normal(struct tu_rng *r)
{
    float u1 = tu_rng_uniform(r), u2 = tu_rng_uniform(r);
    if (u1 < 1e-7f)
        u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

void tu_rng_tokens(struct tu_rng *r, int32_t *out, int n, int n_vocab)
{
    for (int i = 0; i < n; i++)
        out[i] = (int32_t)(tu_rng_u64(r) % (uint64_t)n_vocab);
}
