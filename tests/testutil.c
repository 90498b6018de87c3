/* testutil.c: see testutil.h. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
