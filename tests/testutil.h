/* testutil.h: helpers shared by the cmocka tests: where ../shared is and
 * what it holds (models, JSON references), files, a private kernel cache,
 * hand-built byte images (GGUF), seeded random numbers. Returned
 * paths/buffers are malloc'd (free them). Part of tests/libtestutil.la with
 * golden.h, fwdutil.h and dflashutil.h. */
#ifndef CS_TESTUTIL_H
#define CS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* $CLSPEC_SHARED (set by make check) joined with rel; aborts the test run
 * with a clear message if the shared directory is missing. */
char *tu_shared_path(const char *rel);
/* Reads a whole file; NULL on error. */
void *tu_read_file(const char *path, size_t *len);
/* A fresh temporary file path under $TMPDIR (not created). */
char *tu_tmp_path(const char *suffix);
/* Writes len bytes to path; 0 on success. */
int tu_write_file(const char *path, const void *buf, size_t len);
/* models/NAME, models/derived/NAME or models/synthetic/NAME of the shared
 * directory, the first that can be read; NULL when none. */
char *tu_find_model(const char *name);
/* Parses $CLSPEC_SHARED/rel as JSON (the caller json_decref's it); NULL
 * with "path:line: reason" on stderr. */
json_t *tu_load_json(const char *rel);
/* Points XDG_CACHE_HOME at $CLSPEC_BUILDDIR/.cache/name (the working
 * directory when unset) so that a test's compiled kernels are its own;
 * call it before any OpenCL call. base (cap bytes) receives the directory. */
void tu_private_cache(const char *name, char *base, size_t cap);

/* A growable byte image for hand-built files (GGUF headers, broken files):
 * zero-initialise it, free p. Appends fail the test when out of memory. */
struct tu_buf {
    uint8_t *p;
    size_t n, cap;
};
void tu_buf_put(struct tu_buf *b, const void *src, size_t n);
/* v as n little-endian bytes (n <= 8). */
void tu_buf_le(struct tu_buf *b, uint64_t v, unsigned n);
void tu_buf_u32(struct tu_buf *b, uint32_t v);
void tu_buf_u64(struct tu_buf *b, uint64_t v);
/* A GGUF string: u64 length, then the bytes (no NUL). */
void tu_buf_str(struct tu_buf *b, const char *s);
/* v as an IEEE half, little-endian, at p[0..1]. */
void tu_put_f16(uint8_t *p, float v);

/* xorshift64* PRNG: deterministic random inputs for kernel/quant tests. */
struct tu_rng {
    uint64_t s;
};
void tu_rng_seed(struct tu_rng *r, uint64_t seed);
uint64_t tu_rng_u64(struct tu_rng *r);
float tu_rng_uniform(struct tu_rng *r);          /* [0, 1) */
float tu_rng_normal(struct tu_rng *r);           /* N(0, 1) */
/* n random token ids in [0, n_vocab) to out (n), in order. */
void tu_rng_tokens(struct tu_rng *r, int32_t *out, int n, int n_vocab);

#endif
