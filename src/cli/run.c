/* run.c: `clspec run`: options, the prompt's tokens (a vocab-only engine
 * door sizes the context), then the one generate path of src/cli/spec_cli.c
 * (the speculation loop, with or without a speculator, fed as the daemon
 * feeds a request). engine.h and sampler.h are here for the option structs. */
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
    /* one generate path, with or without a speculator: src/cli/spec_cli.c */
    struct cs_sampler_params sp;
    cs_api_sampler_params(&spp, &sp);
    fputs(prompt, stdout);
    fflush(stdout);
    int rc = cs_cli_generate(&so, &ep, ids, (int32_t)n_prompt, (int32_t)n_predict, &sp);
    free(ids);
    return rc;
}
