/* rng.h: the one seeded random-number helper: splitmix64 for 64-bit words
 * and N(0, 1) floats by Marsaglia's polar method (two 24-bit uniforms per
 * draw, the second normal kept for the next call). Reproducible across
 * machines: synthetic weights of a given seed are the same everywhere. */
#ifndef CS_RNG_H
#define CS_RNG_H

#include <stdbool.h>
#include <stdint.h>

struct cs_rng {
    uint64_t s;      /* splitmix64 state */
    float spare;     /* the polar method's second value */
    bool has_spare;
};

void cs_rng_seed(struct cs_rng *r, uint64_t seed);
/* The next splitmix64 output (advances *state). */
uint64_t cs_splitmix64(uint64_t *state);
/* N(0, 1). */
float cs_rng_normal(struct cs_rng *r);

#endif
