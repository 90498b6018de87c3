/* run.c: `clspec run`: generate text from a prompt, streaming it to stdout;
 * load time and prefill/decode speeds on stderr. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/spec_cli.h"
#include "common.h"
#include "engine.h"
#include "quant.h"
#include "sampler.h"

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

static int emit(const struct cs_tokenizer *tok, int32_t id)
{
    char buf[256];
    size_t n = 0;
    char err[CLSPEC_ERRLEN];
    if (cs_token_to_piece(tok, id, false, buf, sizeof buf, &n, err, sizeof err) < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        return -1;
    }
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
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
    char err[CLSPEC_ERRLEN];
    /* tokenize first (needs only the GGUF) to size the context */
    struct cs_model *m0 = NULL;
    struct cs_tokenizer *tok0 = NULL;
    int rc = cs_model_load(model, &m0, err, sizeof err);
    if (rc == 0)
        rc = cs_tokenizer_load(m0->gguf, &tok0, err, sizeof err);
    size_t n_prompt = 0, cap = strlen(prompt) + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (rc == 0 && !ids)
        rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
    if (rc == 0)
        rc = cs_tokenize(tok0, prompt, strlen(prompt), true, false, ids, cap, &n_prompt, err, sizeof err);
    cs_tokenizer_free(tok0);
    cs_model_free(m0);
    if (rc == 0 && n_prompt == 0)
        rc = cs_err(err, sizeof err, CLSPEC_E_INVAL, "the prompt gives no tokens");
    if (rc < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        free(ids);
        return 1;
    }
    uint32_t ctx = ep.n_ctx > 0 ? ep.n_ctx : (uint32_t)(n_prompt + (size_t)n_predict + 1);
    if (n_prompt + (size_t)n_predict > ctx) {
        fprintf(stderr, "clspec run: prompt (%zu tokens) + %d tokens do not fit the context of %u\n", n_prompt,
                (int)n_predict, ctx);
        free(ids);
        return 1;
    }
    struct cs_sampler_params sp = cs_sampler_defaults();
    sp.temp = (float)temp;
    sp.top_k = (int32_t)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.repeat_penalty = (float)rep;
    sp.penalty_last_n = (int32_t)rep_n;
    sp.seed = (uint64_t)seed;
    ep.model_path = model;
    ep.n_ctx = ctx;
    if (so.type) { /* speculative generation: src/cli/spec_cli.c */
        fputs(prompt, stdout);
        rc = cs_spec_cli_run(&so, &ep, ids, (int32_t)n_prompt, (int32_t)n_predict, &sp);
        free(ids);
        return rc;
    }
    struct cs_engine *E = NULL;
    rc = cs_engine_open(&ep, &E, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        free(ids);
        return 1;
    }
    const int V = (int)E->model->hp.n_vocab;
    struct cs_sampler *smp = NULL;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *pos = malloc((n_prompt + 1) * sizeof *pos);
    if (!logits || !pos)
        rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
    if (rc == 0)
        rc = cs_sampler_new(&sp, V, &smp, err, sizeof err);
    int n_gen = 0, n_dec = 0; /* sampled tokens, decode passes */
    double t_prefill = 0, t_decode = 0;
    if (rc == 0) {
        for (size_t i = 0; i < n_prompt; i++) {
            pos[i] = (int32_t)i;
            cs_sampler_accept(smp, ids[i]);
        }
        /* echo the prompt */
        fputs(prompt, stdout);
        fflush(stdout);
        double t0 = cs_now();
        if (rc == 0)
            rc = cs_forward(E->ctx, ids, (int)n_prompt, pos, NULL, NULL, 1, logits, NULL, err, sizeof err);
        t_prefill = cs_now() - t0;
        t0 = cs_now();
        int32_t p = (int32_t)n_prompt;
        while (rc == 0 && n_gen < (int)n_predict) {
            int32_t t = cs_sampler_sample(smp, logits);
            cs_sampler_accept(smp, t);
            n_gen++;
            if (cs_tokenizer_is_eog(E->tok, t))
                break;
            if (emit(E->tok, t) < 0)
                break;
            if (n_gen == (int)n_predict)
                break;
            rc = cs_forward(E->ctx, &t, 1, &p, NULL, NULL, 1, logits, NULL, err, sizeof err);
            p++;
            n_dec++;
        }
        t_decode = cs_now() - t0;
        printf("\n");
        fflush(stdout);
    }
    if (rc < 0)
        fprintf(stderr, "clspec run: %s\n", err);
    else {
        char where[512];
        size_t o = 0;
        where[0] = '\0';
        for (int i = 0; i < E->n_dev && o < sizeof where; i++)
            o += (size_t)snprintf(where + o, sizeof where - o, "%s%s (%u layers)", i ? ", " : "",
                                  E->dev[i]->info.name, E->layer_counts[i]);
        fprintf(stderr,
                "load: %.3f s (%s, %.2f MiB on %s)\n"
                "kv: %u cells, K %s, V %s, %.1f KiB per token\n"
                "prefill: %zu tokens in %.3f s, %.1f tokens/s\n"
                "decode: %d tokens in %.3f s, %.1f tokens/s (%d generated)\n",
                E->load_s, E->model->hp.arch_name, (double)E->fm->bytes / 1048576.0, where, E->p.n_ctx,
                cs_type_name(E->p.type_k), cs_type_name(E->p.type_v),
                (double)cs_kv_bytes_per_token(E->ctx->kv) / 1024.0, n_prompt, t_prefill,
                t_prefill > 0 ? n_prompt / t_prefill : 0.0, n_dec, t_decode, t_decode > 0 ? n_dec / t_decode : 0.0,
                n_gen);
    }
    cs_sampler_free(smp);
    free(logits);
    free(pos);
    free(ids);
    cs_engine_free(E);
    return rc < 0 ? 1 : 0;
}
