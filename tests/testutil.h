/* testutil.h: helpers shared by the cmocka tests: where ../shared is, reading
 * whole files, seeded random numbers. Returned paths/buffers are malloc'd
 * (free them). */
#ifndef CS_TESTUTIL_H
#define CS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* $CLSPEC_SHARED (set by make check) joined with rel; aborts the test run
 * with a clear message if the shared directory is missing. */
char *tu_shared_path(const char *rel);
/* Reads a whole file; NULL on error. */
void *tu_read_file(const char *path, size_t *len);
/* A fresh temporary file path under $TMPDIR (not created). */
char *tu_tmp_path(const char *suffix);
/* Writes len bytes to path; 0 on success. */
int tu_write_file(const char *path, const void *buf, size_t len);

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
