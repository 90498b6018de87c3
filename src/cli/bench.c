/* bench.c: `clspec bench`: prompt-processing (ppN: N tokens in one forward
 * call) and text-generation (tgN: N single-token steps) speeds, as a
 * llama-bench-like table: mean ± sd tokens/s over -r repetitions after one warm-up. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/loadmodel.h"
#include "cli/opts.h"
#include "cli/spec_cli.h"
#include "common.h"
#include "quant.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clspec bench -m MODEL [-p N] [-n N] [-r N] [--device SEL]\n"
            "\n"
            "  -m, --model FILE   GGUF model\n"
            "  -p N               prompt tokens processed in one call (default 512; 0 = skip)\n"
            "  -n N               generated tokens, one call each (default 128; 0 = skip)\n"
            "  -r N               repetitions (default 3), after one warm-up run\n"
            "  --device SEL       OpenCL device index or name substring\n"
            "with --spec: decode -n tokens per slot without and with speculation (greedy):\n"
            "  --parallel N          slots (default 1)\n"
            "  --spec-prompt TEXT    prompt of every slot (default: four short stories)\n"
            "  --kv f32|f16          KV cache type (default f16)\n");
    fputs(cs_spec_cli_usage(), f);
}

/* One timed run: n_p tokens as one batch (pp) or n_g single steps after one
 * prompt token (tg). Returns seconds or a negative status. */
static int one_run(struct cs_loaded *L, const int32_t *tok, int n_p, int n_g, float *logits, double *secs, char *err,
                   size_t errlen)
{
    cs_fwd_kv_clear(L->ctx);
    int n = n_p > 0 ? n_p : n_g;
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!pos)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        pos[i] = i;
    int rc = 0;
    double t0 = cs_now();
    if (n_p > 0) {
        rc = cs_forward(L->ctx, tok, n_p, pos, NULL, NULL, 1, logits, NULL, err, errlen);
    } else {
        for (int i = 0; i < n_g && rc == 0; i++)
            rc = cs_forward(L->ctx, tok + i, 1, pos + i, NULL, NULL, 1, logits, NULL, err, errlen);
    }
    *secs = cs_now() - t0;
    free(pos);
    return rc;
}

static void human(double v, char *buf, size_t n)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2f B", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2f M", v / 1e6);
    else
        snprintf(buf, n, "%.2f K", v / 1e3);
}

int cs_cmd_bench(int argc, char **argv)
{
    const char *model = NULL, *device = NULL;
    long n_p = 512, n_g = 128, reps = 3;
    struct cs_spec_cli so;
    cs_spec_cli_init(&so);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--device"))
            device = v;
        else if (!strcmp(a, "-p"))
            r = cs_opt_int("bench", a, v, 0, 65536, &n_p);
        else if (!strcmp(a, "-n"))
            r = cs_opt_int("bench", a, v, 0, 65536, &n_g);
        else if (!strcmp(a, "-r"))
            r = cs_opt_int("bench", a, v, 1, 1000, &reps);
        else if ((r = cs_spec_cli_opt(&so, "bench", a, v)) != 0)
            r = r < 0 ? -1 : 0;
        else {
            fprintf(stderr, "clspec bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (r < 0)
            return 2;
        if (!v) {
            fprintf(stderr, "clspec bench: %s needs a value\n", a);
            return 2;
        }
        i++;
    }
    if (!model) {
        usage(stderr);
        return 2;
    }
    if (so.type) /* speculation table: src/cli/spec_cli.c */
        return cs_spec_cli_bench(&so, model, device, (int32_t)n_g, (int)reps);
    char err[CLSPEC_ERRLEN];
    struct cs_loaded L;
    uint32_t n_ctx = (uint32_t)CS_MAX(CS_MAX(n_p, n_g), 1);
    uint32_t n_batch = (uint32_t)CS_MAX(n_p, 1);
    int rc = cs_loaded_open(model, device, n_ctx, n_batch, 0, &L, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "clspec bench: %s\n", err);
        return 1;
    }
    const struct cs_hparams *hp = &L.model->hp;
    int n_tok = (int)CS_MAX(n_p, n_g);
    int32_t *tok = malloc((size_t)n_tok * sizeof *tok);
    float *logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    if (!tok || !logits) {
        fprintf(stderr, "clspec bench: out of memory\n");
        free(tok);
        free(logits);
        cs_loaded_free(&L);
        return 1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < n_tok; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[i] = (int32_t)(x % hp->n_vocab);
    }
    const char *base = strrchr(model, '/');
    base = base ? base + 1 : model;
    char params[32], type[32];
    human((double)L.model->n_params, params, sizeof params);
    snprintf(type, sizeof type, "%s", cs_type_name(L.model->layers[0].wq->type));
    printf("| %-28s | %-6s | %10s | %9s | %-24.24s | %7s | %18s |\n", "model", "type", "size", "params", "device",
           "test", "t/s");
    printf("| %.28s | %.6s | %.10s | %.9s | %.24s | %.7s | %.18s |\n", "-----------------------------------",
           "--------", "-------------", "-----------", "------------------------------", "--------",
           "---------------------");
    for (int which = 0; which < 2 && rc == 0; which++) {
        int np = which == 0 ? (int)n_p : 0, ng = which == 1 ? (int)n_g : 0;
        if (np == 0 && ng == 0)
            continue;
        double secs, sum = 0, sum2 = 0;
        rc = one_run(&L, tok, np, ng, logits, &secs, err, sizeof err); /* warm-up */
        for (long r = 0; r < reps && rc == 0; r++) {
            rc = one_run(&L, tok, np, ng, logits, &secs, err, sizeof err);
            double tps = (np + ng) / secs;
            sum += tps;
            sum2 += tps * tps;
        }
        if (rc < 0)
            break;
        double mean = sum / (double)reps, var = reps > 1 ? (sum2 - sum * sum / (double)reps) / (double)(reps - 1) : 0;
        char test[16], tps[32];
        snprintf(test, sizeof test, "%s%d", np ? "pp" : "tg", np ? np : ng);
        snprintf(tps, sizeof tps, "%.2f ± %.2f", mean, sqrt(var > 0 ? var : 0));
        printf("| %-28.28s | %-6s | %6.2f MiB | %9s | %-24.24s | %7s | %19s |\n", base, type,
               (double)L.model->n_bytes / 1048576.0, params, L.dev->info.name, test, tps);
        fflush(stdout);
    }
    if (rc < 0)
        fprintf(stderr, "clspec bench: %s\n", err);
    free(tok);
    free(logits);
    cs_loaded_free(&L);
    return rc < 0 ? 1 : 0;
}
