/* run.c: `clspec run`: generate text from a prompt, streaming it to stdout;
 * load time and prefill/decode speeds on stderr. Plain generation uses only
 * the engine door (clspec/clspec.h); --spec hands over to src/cli/spec_cli.c.
 * engine.h and sampler.h (via api.h) are here for the option structs the two share. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/api.h"
#include "clspec/clspec.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/spec_cli.h"
#include "base/common.h"
#include "engine/engine.h"
#include "engine/sampler.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clspec run -m MODEL -p PROMPT [-n N] [options]\n"
            "\n"
            "  -m, --model FILE      GGUF model\n"
            "  -p, --prompt TEXT     prompt (BOS added as the vocabulary asks)\n"
            "  -n, --n-predict N     tokens to generate (default 128); stops early at end of text\n"
            "  --temp T              temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K             (default 40; 0 = off)\n"
            "  --top-p P             (default 0.95; 1 = off)\n"
            "  --min-p P             (default 0.05; 0 = off)\n"
            "  --repeat-penalty R    (default 1 = off), over --repeat-last-n tokens (default 64)\n"
            "  --seed S              RNG seed (default 0)\n" CS_OPT_ENGINE_HELP
            "                        (-c default: prompt + N)\n");
    fputs(cs_spec_cli_usage(), f);
}

/* The prompt's tokens (BOS as the vocabulary asks) from a vocab_only engine:
 * *ids (malloc'd, the caller frees it) and *n. Prints the error; exit code. */
static int tokenize_prompt(const struct clspec_engine_params *dp, const char *prompt, int32_t **ids, size_t *n)
{
    char err[CLSPEC_ERRLEN];
    struct clspec_engine_params vp = *dp;
    vp.vocab_only = 1;
    clspec_engine *V = NULL;
    size_t cap = strlen(prompt) + 8;
    *ids = malloc(cap * sizeof **ids);
    int rc = clspec_engine_open(&vp, &V, err, sizeof err);
    if (rc == 0 && !*ids)
        rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
    if (rc == 0)
        rc = clspec_tokenize(V, prompt, strlen(prompt), 1, 0, *ids, cap, n, err, sizeof err);
    clspec_engine_free(V);
    if (rc == 0 && *n == 0)
        rc = cs_err(err, sizeof err, CLSPEC_E_INVAL, "the prompt gives no tokens");
    if (rc < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        free(*ids);
        *ids = NULL;
        return 1;
    }
    return 0;
}

static int emit(const clspec_engine *E, int32_t id)
{
    char buf[256];
    size_t n = 0;
    char err[CLSPEC_ERRLEN];
    if (clspec_token_piece(E, id, 0, buf, sizeof buf, &n, err, sizeof err) < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        return -1;
    }
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    return 0;
}

static void print_stats(const struct clspec_engine_info *in, size_t n_prompt, double t_prefill, int n_dec,
                        double t_decode, int n_gen)
{
    char where[512];
    size_t o = 0;
    where[0] = '\0';
    for (int i = 0; i < in->n_devices && o < sizeof where; i++)
        o += (size_t)snprintf(where + o, sizeof where - o, "%s%s (%u layers)", i ? ", " : "", in->device_name[i],
                              in->device_layers[i]);
    fprintf(stderr,
            "load: %.3f s (%s, %.2f MiB on %s)\n"
            "kv: %u cells, K %s, V %s, %.1f KiB per token\n"
            "prefill: %zu tokens in %.3f s, %.1f tokens/s\n"
            "decode: %d tokens in %.3f s, %.1f tokens/s (%d generated)\n",
            in->load_s, in->arch, (double)in->weight_bytes / 1048576.0, where, in->n_ctx,
            clspec_kv_type_name(in->type_k), clspec_kv_type_name(in->type_v),
            (double)in->kv_bytes_per_token / 1024.0, n_prompt, t_prefill, t_prefill > 0 ? n_prompt / t_prefill : 0.0,
            n_dec, t_decode, t_decode > 0 ? n_dec / t_decode : 0.0, n_gen);
}

/* Plain generation through the engine door only: the prompt in one decode,
 * then one token per decode until n_predict tokens or end of generation.
 * Streams the prompt and the text to stdout, statistics to stderr. Exit code. */
static int generate(const struct clspec_engine_params *dp, const char *prompt, const int32_t *ids, size_t n_prompt,
                    int n_predict, const struct clspec_sampler_params *spp)
{
    char err[CLSPEC_ERRLEN];
    clspec_engine *E = NULL;
    int rc = clspec_engine_open(dp, &E, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        return 1;
    }
    struct clspec_engine_info info = {.size = sizeof info};
    rc = clspec_engine_get_info(E, &info, err, sizeof err);
    clspec_sampler *smp = NULL;
    int32_t *pos = malloc((n_prompt + 1) * sizeof *pos);
    if (rc == 0 && !pos)
        rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
    if (rc == 0)
        rc = clspec_sampler_new(spp, info.n_vocab, &smp, err, sizeof err);
    int n_gen = 0, n_dec = 0; /* sampled tokens, decode passes */
    double t_prefill = 0, t_decode = 0;
    if (rc == 0) {
        for (size_t i = 0; i < n_prompt; i++) {
            pos[i] = (int32_t)i;
            clspec_sampler_accept(smp, ids[i]);
        }
        /* echo the prompt */
        fputs(prompt, stdout);
        fflush(stdout);
        double t0 = cs_now();
        struct clspec_batch b = {.size = sizeof b, .n_rows = (int32_t)n_prompt, .token = ids, .pos = pos};
        rc = clspec_decode(E, &b, NULL, err, sizeof err); /* logits of the last row */
        const float *logits = clspec_logits(E, (int32_t)n_prompt - 1);
        t_prefill = cs_now() - t0;
        t0 = cs_now();
        int32_t p = (int32_t)n_prompt;
        while (rc == 0 && n_gen < n_predict) {
            int32_t t = clspec_sampler_sample(smp, logits);
            clspec_sampler_accept(smp, t);
            n_gen++;
            if (clspec_token_is_eog(E, t))
                break;
            if (emit(E, t) < 0)
                break;
            if (n_gen == n_predict)
                break;
            struct clspec_batch one = {.size = sizeof one, .n_rows = 1, .token = &t, .pos = &p};
            rc = clspec_decode(E, &one, NULL, err, sizeof err);
            logits = clspec_logits(E, 0);
            p++;
            n_dec++;
        }
        t_decode = cs_now() - t0;
        printf("\n");
        fflush(stdout);
    }
    if (rc < 0)
        fprintf(stderr, "clspec run: %s\n", err);
    else
        print_stats(&info, n_prompt, t_prefill, n_dec, t_decode, n_gen);
    clspec_sampler_free(smp);
    free(pos);
    clspec_engine_free(E);
    return rc < 0 ? 1 : 0;
}

int cs_cmd_run(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL;
    struct cs_engine_params ep = cs_engine_defaults();
    ep.n_ctx = 0;
    ep.progress = true;
    double n_predict = 128, temp = 0.8, top_k = 40, top_p = 0.95, min_p = 0.05, rep = 1.0, rep_n = 64,
           seed = 0;
    struct cs_spec_cli so;
    cs_spec_cli_init(&so);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((r = cs_opt_engine("run", a, v, &ep)) != 0 || (r = cs_spec_cli_opt(&so, "run", a, v)) != 0) {
            r = r < 0 ? -1 : 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            prompt = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            r = cs_opt_num("run", a, v, 0, 1 << 20, &n_predict);
        else if (!strcmp(a, "--temp"))
            r = cs_opt_num("run", a, v, 0, 100, &temp);
        else if (!strcmp(a, "--top-k"))
            r = cs_opt_num("run", a, v, 0, 1 << 30, &top_k);
        else if (!strcmp(a, "--top-p"))
            r = cs_opt_num("run", a, v, 1e-6, 1, &top_p);
        else if (!strcmp(a, "--min-p"))
            r = cs_opt_num("run", a, v, 0, 0.999, &min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            r = cs_opt_num("run", a, v, 1e-3, 100, &rep);
        else if (!strcmp(a, "--repeat-last-n"))
            r = cs_opt_num("run", a, v, 0, 1 << 20, &rep_n);
        else if (!strcmp(a, "--seed"))
            r = cs_opt_num("run", a, v, 0, 18446744073709551615.0, &seed);
        else {
            fprintf(stderr, "clspec run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (r < 0)
            return 2;
        if (!v) {
            fprintf(stderr, "clspec run: %s needs a value\n", a);
            return 2;
        }
        i++;
    }
    if (!model || !prompt) {
        usage(stderr);
        return 2;
    }
    /* tokenize first (needs only the GGUF) to size the context */
    struct clspec_engine_params dp;
    ep.model_path = model;
    cs_api_engine_params(&ep, &dp);
    int32_t *ids = NULL;
    size_t n_prompt = 0;
    if (tokenize_prompt(&dp, prompt, &ids, &n_prompt) != 0)
        return 1;
    uint32_t ctx = ep.n_ctx > 0 ? ep.n_ctx : (uint32_t)(n_prompt + (size_t)n_predict + 1);
    if (n_prompt + (size_t)n_predict > ctx) {
        fprintf(stderr, "clspec run: prompt (%zu tokens) + %d tokens do not fit the context of %u\n", n_prompt,
                (int)n_predict, ctx);
        free(ids);
        return 1;
    }
    ep.n_ctx = ctx;
    struct clspec_sampler_params spp;
    clspec_sampler_default_params(&spp, sizeof spp);
    spp.temp = (float)temp;
    spp.top_k = (int32_t)top_k;
    spp.top_p = (float)top_p;
    spp.min_p = (float)min_p;
    spp.repeat_penalty = (float)rep;
    spp.penalty_last_n = (int32_t)rep_n;
    spp.seed = (uint64_t)seed;
    if (so.type) { /* speculative generation: src/cli/spec_cli.c */
        struct cs_sampler_params sp;
        cs_api_sampler_params(&spp, &sp);
        fputs(prompt, stdout);
        int rc = cs_spec_cli_run(&so, &ep, ids, (int32_t)n_prompt, (int32_t)n_predict, &sp);
        free(ids);
        return rc;
    }
    dp.n_ctx = ctx;
    int rc = generate(&dp, prompt, ids, n_prompt, (int)n_predict, &spp);
    free(ids);
    return rc;
}
