/* bench.c: `clspec bench`: prompt-processing (ppN: N tokens in one forward
 * call) and text-generation (tgN: N single-token steps) speeds, as a
 * llama-bench-like table: mean ± sd tokens/s over -r repetitions after one
 * warm-up; with --parallel P,...: aggregate decode speed of P sequences
 * decoded together (one batch of P rows per step, each sequence after its own
 * prompt of -p tokens), and the KV bytes per token of every KV type. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clspec/clspec.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/spec_cli.h"
#include "base/common.h"
#include "engine/api.h"
#include "engine/engine.h"
#include "gguf/quant.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clspec bench -m MODEL [-p N] [-n N] [-r N] [--parallel P,...] [engine options]\n"
            "\n"
            "  -m, --model FILE      GGUF model\n"
            "  -p N                  prompt tokens processed in one call (default 512; 0 = skip)\n"
            "  -n N                  generated tokens, one call each (default 128; 0 = skip)\n"
            "  -r N                  repetitions (default 3), after one warm-up run\n"
            "  --parallel P,...      also decode -n tokens for P sequences together (after a prompt of\n"
            "                        -p tokens each, not timed): aggregate tokens/s; and KV bytes/token\n" CS_OPT_ENGINE_HELP
            "with --spec: decode -n tokens per slot without and with speculation (greedy), for each\n"
            "--parallel value (slots; default 1), the runs alternating; speedup = best with / best\n"
            "without, pair med = the median over -r repetitions of with / without run back to back:\n"
            "  --spec-prompt TEXT    prompt of every slot (default: four short stories)\n");
    fputs(cs_spec_cli_usage(), f);
}

/* The rows of one clspec_decode (cap of them): the bench's batch. */
struct rows {
    int32_t *token, *pos, *seq; /* (cap) */
    uint8_t *keep;              /* (cap) 1 = keep the row's logits */
    int n, cap;
};

static void rows_add(struct rows *r, int32_t token, int32_t pos, int32_t seq, bool keep)
{
    r->token[r->n] = token;
    r->pos[r->n] = pos;
    r->seq[r->n] = seq;
    r->keep[r->n++] = keep;
}

/* Decodes r's rows; a sequence the cache could not take is an error. */
static int rows_decode(clspec_engine *e, const struct rows *r, char *err, size_t errlen)
{
    struct clspec_batch b = {sizeof b, r->n, r->token, r->pos, r->seq, r->keep, NULL, NULL};
    int seq_rc[CLSPEC_MAX_SEQ];
    CS_TRY(clspec_decode(e, &b, seq_rc, err, errlen));
    for (int s = 0; s < CLSPEC_MAX_SEQ; s++)
        if (seq_rc[s] != CLSPEC_OK)
            return cs_err(err, errlen, seq_rc[s], "sequence %d: KV cache full", s);
    return CLSPEC_OK;
}

/* One timed run on sequences 0..n_seq-1: n_p tokens each as one batch
 * (timed when n_g == 0), then n_g decode steps of n_seq rows (timed when
 * n_g > 0). Returns a status; *secs the timed part. */
static int one_run(clspec_engine *e, const int32_t *tok, int n_tok, int n_seq, int n_p, int n_g, struct rows *r,
                   double *secs, char *err, size_t errlen)
{
    int rc = clspec_kv_clear(e, err, errlen);
    double t0 = cs_now();
    if (n_p > 0 && rc == 0) {
        r->n = 0;
        for (int s = 0; s < n_seq; s++)
            for (int i = 0; i < n_p; i++)
                rows_add(r, tok[(i + 7 * s) % n_tok], i, s, i == n_p - 1);
        rc = rows_decode(e, r, err, errlen);
    }
    if (n_g > 0)
        t0 = cs_now();
    for (int g = 0; g < n_g && rc == 0; g++) {
        r->n = 0;
        for (int s = 0; s < n_seq; s++)
            rows_add(r, tok[(n_p + g + 13 * s) % n_tok], n_p + g, s, true);
        rc = rows_decode(e, r, err, errlen);
    }
    *secs = cs_now() - t0;
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

/* Mean and sd of tokens/s over reps timed runs after one warm-up. */
static int measure(clspec_engine *e, const int32_t *tok, int n_tok, int n_seq, int n_p, int n_g, long reps,
                   struct rows *rows, double *mean, double *sd, char *err, size_t errlen)
{
    double secs, sum = 0, sum2 = 0;
    int rc = one_run(e, tok, n_tok, n_seq, n_p, n_g, rows, &secs, err, errlen); /* warm-up */
    for (long r = 0; r < reps && rc == 0; r++) {
        rc = one_run(e, tok, n_tok, n_seq, n_p, n_g, rows, &secs, err, errlen);
        double tps = (double)(n_g > 0 ? n_g * n_seq : n_p * n_seq) / secs;
        sum += tps;
        sum2 += tps * tps;
    }
    double var = reps > 1 ? (sum2 - sum * sum / (double)reps) / (double)(reps - 1) : 0;
    *mean = sum / (double)reps;
    *sd = sqrt(var > 0 ? var : 0);
    return rc;
}

int cs_cmd_bench(int argc, char **argv)
{
    const char *model = NULL;
    long n_p = 512, n_g = 128, reps = 3, par[16];
    int n_par = 0;
    struct cs_engine_params ep = cs_engine_defaults();
    ep.n_ctx = 0;
    ep.n_batch = 0;
    ep.n_ubatch = 0;
    ep.progress = true; /* weights and kernels: a progress line when stderr is a terminal */
    struct cs_spec_cli so;
    cs_spec_cli_init(&so);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((r = cs_opt_engine("bench", a, v, &ep)) != 0 ||
                   (strcmp(a, "--parallel") && (r = cs_spec_cli_opt(&so, "bench", a, v)) != 0)) {
            r = r < 0 ? -1 : 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "-p"))
            r = cs_opt_int("bench", a, v, 0, 65536, &n_p);
        else if (!strcmp(a, "-n"))
            r = cs_opt_int("bench", a, v, 0, 65536, &n_g);
        else if (!strcmp(a, "-r"))
            r = cs_opt_int("bench", a, v, 1, 1000, &reps);
        else if (!strcmp(a, "--parallel"))
            r = cs_opt_list("bench", a, v, 1, CS_MAX_SEQ, par, 16, &n_par);
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
    if (so.type) { /* speculation table per slot count: src/cli/spec_cli.c */
        struct cs_engine_params sep = ep;
        sep.model_path = model;
        sep.n_batch = sep.n_batch ? sep.n_batch : 512;
        sep.n_ubatch = sep.n_ubatch ? sep.n_ubatch : sep.n_batch;
        int ec = 0;
        for (int i = 0; i < (n_par ? n_par : 1) && ec == 0; i++) {
            so.parallel = n_par ? (double)par[i] : 1;
            ec = cs_spec_cli_bench(&so, &sep, (int32_t)n_g, (int)reps);
        }
        return ec;
    }
    long max_par = 1;
    for (int i = 0; i < n_par; i++)
        max_par = CS_MAX(max_par, par[i]);
    char err[CLSPEC_ERRLEN];
    uint32_t need = (uint32_t)(max_par * (n_p + n_g + 1));
    if (ep.n_ctx == 0)
        ep.n_ctx = CS_MAX(need, 16u);
    ep.n_batch = (uint32_t)CS_MAX(CS_MAX(n_p * max_par, max_par), 1);
    if (ep.n_ubatch == 0)
        ep.n_ubatch = CS_MIN(ep.n_batch, 512u);
    ep.n_seq_max = (uint32_t)max_par;
    ep.model_path = model;
    struct clspec_engine_params dp;
    cs_api_engine_params(&ep, &dp);
    clspec_engine *e = NULL;
    struct clspec_engine_info info = {.size = sizeof info};
    int rc = clspec_engine_open(&dp, &e, err, sizeof err);
    if (rc == 0)
        rc = clspec_engine_get_info(e, &info, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "clspec bench: %s\n", err);
        clspec_engine_free(e);
        return 1;
    }
    int n_tok = (int)CS_MAX(CS_MAX(n_p, n_g), 1) + 64;
    int32_t *tok = malloc((size_t)n_tok * sizeof *tok);
    struct rows r = {.cap = (int)CS_MAX(n_p * max_par, max_par)};
    r.token = malloc((size_t)r.cap * sizeof *r.token);
    r.pos = malloc((size_t)r.cap * sizeof *r.pos);
    r.seq = malloc((size_t)r.cap * sizeof *r.seq);
    r.keep = malloc((size_t)r.cap);
    if (!tok || !r.token || !r.pos || !r.seq || !r.keep) {
        fprintf(stderr, "clspec bench: out of memory\n");
        rc = -1;
        goto out;
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < n_tok; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[i] = (int32_t)(x % (uint64_t)info.n_vocab);
    }
    const char *base = strrchr(model, '/');
    base = base ? base + 1 : model;
    char params[32], type[32], dev[300], kvt[24];
    human((double)info.n_params, params, sizeof params);
    snprintf(type, sizeof type, "%s", info.weight_type);
    snprintf(dev, sizeof dev, "%s%s", info.device_name[0], info.n_devices > 1 ? " +" : "");
    snprintf(kvt, sizeof kvt, "%s/%s", clspec_kv_type_name(info.type_k), clspec_kv_type_name(info.type_v));
    printf("| %-28s | %-6s | %10s | %9s | %-24.24s | %-9s | %-12s | %18s |\n", "model", "type", "size", "params",
           "device", "kv", "test", "t/s");
    printf("| %.28s | %.6s | %.10s | %.9s | %.24s | %.9s | %.12s | %.18s |\n", "-----------------------------------",
           "--------", "-------------", "-----------", "------------------------------", "-----------",
           "--------------", "---------------------");
    double par_tps[16] = {0};
    for (int which = 0; which < 2 + n_par && rc == 0; which++) {
        int np = which == 0 ? (int)n_p : 0, ng = which == 1 ? (int)n_g : 0, ns = 1;
        if (which >= 2) { /* parallel decode after untimed prompts */
            ns = (int)par[which - 2];
            np = (int)n_p;
            ng = (int)n_g;
            if (ng == 0)
                continue;
        }
        if (np == 0 && ng == 0)
            continue;
        double mean, sd;
        rc = measure(e, tok, n_tok, ns, np, ng, reps, &r, &mean, &sd, err, sizeof err);
        if (rc < 0)
            break;
        char test[24], tps[32];
        if (which >= 2) {
            snprintf(test, sizeof test, "tg%d x%d", ng, ns);
            par_tps[which - 2] = mean;
        }
        else
            snprintf(test, sizeof test, "%s%d", np && !ng ? "pp" : "tg", np && !ng ? np : ng);
        snprintf(tps, sizeof tps, "%.2f ± %.2f", mean, sd);
        printf("| %-28.28s | %-6s | %6.2f MiB | %9s | %-24.24s | %-9s | %-12s | %19s |\n", base, type,
               (double)info.model_bytes / 1048576.0, params, dev, kvt, test, tps);
        fflush(stdout);
    }
    if (rc == 0 && n_par > 0 && n_g > 0) {
        /* aggregate decode of P sequences relative to the first entry of --parallel */
        printf("\naggregate decode (tgN xP: P sequences, one batch of P rows per step):");
        for (int i = 0; i < n_par; i++)
            printf(" x%ld %.2fx", par[i], par_tps[0] > 0 ? par_tps[i] / par_tps[0] : 0.0);
        printf(" of x%ld\n", par[0]);
    }
    if (rc == 0 && n_par > 0) {
        /* KV bytes per token of every type (K + V, all layers), and the engine's own cache */
        static const uint32_t kt[] = {CS_TYPE_F32, CS_TYPE_F16, CS_TYPE_BF16, CS_TYPE_Q8_0, CS_TYPE_Q4_0};
        uint64_t kv_dim = info.kv_dim, f16 = 0;
        cs_row_bytes(CS_TYPE_F16, kv_dim, &f16);
        printf("\nKV cache (K and V of the same type, %u layers x %llu values): bytes per token\n", info.n_layer,
               (unsigned long long)kv_dim);
        printf("| %-5s | %12s | %8s |\n| ----- | ------------ | -------- |\n", "type", "bytes/token", "vs f16");
        for (size_t i = 0; i < CS_ARRAY_LEN(kt); i++) {
            uint64_t rb = 0;
            if (!cs_row_bytes(kt[i], kv_dim, &rb))
                continue;
            uint64_t tot = 2 * rb * (uint64_t)info.n_layer;
            printf("| %-5s | %12llu | %7.3fx |\n", cs_type_name(kt[i]), (unsigned long long)tot,
                   (double)rb / (double)f16);
        }
        printf("this run (%s): %llu bytes/token, %u cells\n", kvt,
               (unsigned long long)info.kv_bytes_per_token, info.n_ctx);
    }
    if (rc < 0)
        fprintf(stderr, "clspec bench: %s\n", err);
out:
    free(tok);
    free(r.token);
    free(r.pos);
    free(r.seq);
    free(r.keep);
    clspec_engine_free(e);
    return rc < 0 ? 1 : 0;
}
