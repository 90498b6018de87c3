/* rng.c: splitmix64 and the polar method (see rng.h). */
#include "config.h"

#include <math.h>

#include "base/rng.h"

void cs_rng_seed(struct cs_rng *r, uint64_t seed)
{
    r->s = seed;
    r->spare = 0.0f;
    r->has_spare = false;
}

uint64_t cs_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float cs_rng_normal(struct cs_rng *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    float u, v, s;
    do {
        uint64_t a = cs_splitmix64(&r->s);
        u = (float)(a >> 40) * (2.0f / 16777216.0f) - 1.0f;
        v = (float)((a >> 16) & 0xFFFFFF) * (2.0f / 16777216.0f) - 1.0f;
        s = u * u + v * v;
    } while (s >= 1.0f || s == 0.0f);
    float m = sqrtf(-2.0f * logf(s) / s);
    r->spare = v * m;
    r->has_spare = true;
    return u * m;
}
