/* opts.c: see opts.h. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/opts.h"
#include "gguf/quant.h"
#include "engine/engine.h"
#include <string.h>

int cs_opt_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "clspec %s: %s needs a number in [%g, %g]\n", cmd, opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cs_opt_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "clspec %s: %s needs an integer in [%ld, %ld]\n", cmd, opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cs_opt_kvtype(const char *cmd, const char *opt, const char *v, unsigned *out)
{
    static const char *const ok[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
    for (size_t i = 0; v && i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(v, ok[i])) {
            *out = (unsigned)cs_type_from_name(v);
            return 0;
        }
    fprintf(stderr, "clspec %s: %s needs a KV cache type: f32, f16, bf16, q8_0 or q4_0\n", cmd, opt);
    return -1;
}

int cs_opt_list(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out, int cap, int *n)
{
    int k = 0;
    const char *p = v;
    while (p && *p && k < cap) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || x < lo || x > hi)
            break;
        out[k++] = x;
        p = *end ? end + 1 : end;
        if (!*p && *end == ',')
            break;
    }
    if (!p || *p || k == 0 || (p > v && p[-1] == ',')) {
        fprintf(stderr, "clspec %s: %s needs 1..%d comma-separated integers in [%ld, %ld]\n", cmd, opt, cap, lo, hi);
        return -1;
    }
    *n = k;
    return 0;
}

int cs_opt_engine(const char *cmd, const char *a, const char *v, struct cs_engine_params *p)
{
    long x = 0;
    if (!strcmp(a, "--device") || !strcmp(a, "--devices")) {
        if (!v || !*v) {
            fprintf(stderr, "clspec %s: %s needs a device list\n", cmd, a);
            return -1;
        }
        p->devices = v;
    } else if (!strcmp(a, "--split")) {
        long l[8];
        int n = 0;
        if (cs_opt_list(cmd, a, v, 1, 1000000, l, 8, &n) < 0)
            return -1;
        memset(p->split, 0, sizeof p->split);
        for (int i = 0; i < n; i++)
            p->split[i] = (uint32_t)l[i];
    } else if (!strcmp(a, "--split-mode")) {
        if (v && !strcmp(v, "layers"))
            p->split_mode = CS_SPLIT_LAYERS;
        else if (v && !strcmp(v, "memory"))
            p->split_mode = CS_SPLIT_MEMORY;
        else {
            fprintf(stderr, "clspec %s: %s needs layers or memory\n", cmd, a);
            return -1;
        }
    } else if (!strcmp(a, "--numerics")) {
        if (v && !strcmp(v, "llamacpp"))
            p->llamacpp_numerics = true;
        else if (v && !strcmp(v, "default"))
            p->llamacpp_numerics = false;
        else {
            fprintf(stderr, "clspec %s: %s needs default or llamacpp\n", cmd, a);
            return -1;
        }
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
        if (cs_opt_int(cmd, a, v, 1, 1 << 24, &x) < 0)
            return -1;
        p->n_ctx = (uint32_t)x;
    } else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch-size")) {
        if (cs_opt_int(cmd, a, v, 1, 65536, &x) < 0)
            return -1;
        p->n_ubatch = (uint32_t)x;
    } else if (!strcmp(a, "-ctk") || !strcmp(a, "--cache-type-k")) {
        unsigned t;
        if (cs_opt_kvtype(cmd, a, v, &t) < 0)
            return -1;
        p->type_k = t;
    } else if (!strcmp(a, "-ctv") || !strcmp(a, "--cache-type-v")) {
        unsigned t;
        if (cs_opt_kvtype(cmd, a, v, &t) < 0)
            return -1;
        p->type_v = t;
    } else
        return 0;
    return 1;
}
