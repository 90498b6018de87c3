/* accept.c: the rule of rejection sampling, by which a draft token drawn
 * from q is kept or replaced so that the output follows p exactly
 * (cs_spec_rs_token, spec.h); the speculative step (spec.c) applies it. */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "spec/spec.h"

int32_t cs_spec_rs_token(const float *p, const float *q, int32_t n, int32_t d, double u, double u2, float *resid,
                         bool *accepted)
{
    double pd = p[d], qd = q[d];
    if (qd <= 0.0 || u * qd < pd) { /* u < min(1, p/q); q(d) = 0 cannot be drawn, accept what p allows */
        if (qd > 0.0 || pd > 0.0) {
            *accepted = true;
            return d;
        }
    }
    *accepted = false;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float r = p[i] - q[i];
        resid[i] = r > 0.0f ? r : 0.0f;
        sum += resid[i];
    }
    if (!(sum > 0.0)) { /* p == q: rejection has probability 0; fall back to p itself */
        memcpy(resid, p, (size_t)n * sizeof *resid);
        sum = 0.0;
        for (int32_t i = 0; i < n; i++)
            sum += resid[i];
    }
    double x = u2 * sum, cum = 0.0;
    int32_t last = 0;
    for (int32_t i = 0; i < n; i++) {
        if (resid[i] <= 0.0f)
            continue;
        last = i;
        cum += resid[i];
        if (x < cum)
            return i;
    }
    return last;
}
