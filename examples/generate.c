/* generate.c: a minimal greedy generator on libclspec's public engine API
 * (clspec/clspec.h) and nothing else: open the engine, tokenize the prompt,
 * decode it in one batch, then pick the most likely token and decode it,
 * N times or until end of generation. Prints the prompt and the continuation
 * (what `clspec run -m MODEL -p PROMPT -n N --temp 0` prints on stdout).
 *
 * Build against an installed clspec:
 *     cc -std=c11 generate.c $(pkg-config --cflags --libs clspec) -o generate
 * Run:
 *     ./generate stories260K.gguf "Once upon a time" 64
 * Everything allocated here is freed here; the engine owns the logits it returns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clspec/clspec.h>

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "generate: %s: %s\n", what, err);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: generate MODEL PROMPT [N]\n");
        return 2;
    }
    const char *prompt = argv[2];
    int n_predict = argc > 3 ? atoi(argv[3]) : 64;
    if (n_predict < 0)
        n_predict = 0;
    char err[CLSPEC_ERRLEN];

    /* the context must hold the prompt and the tokens to come: tokenize first
     * with a vocabulary-only engine (no device is opened) */
    struct clspec_engine_params ep;
    clspec_engine_default_params(&ep, sizeof ep);
    ep.model_path = argv[1];
    ep.vocab_only = 1;
    clspec_engine *e = NULL;
    if (clspec_engine_open(&ep, &e, err, sizeof err) < 0)
        return fail(argv[1], err);
    size_t cap = strlen(prompt) + 8, n_prompt = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    int32_t *pos = malloc(cap * sizeof *pos);
    int rc = ids && pos ? clspec_tokenize(e, prompt, strlen(prompt), 1, 0, ids, cap, &n_prompt, err, sizeof err)
                        : CLSPEC_E_NOMEM;
    clspec_engine_free(e);
    e = NULL;
    if (rc < 0 || n_prompt == 0) {
        free(ids);
        free(pos);
        return fail("tokenize", rc < 0 ? err : "the prompt gives no tokens");
    }

    /* the real engine: first device, n_ctx = prompt + n_predict + 1 cells */
    ep.vocab_only = 0;
    ep.n_ctx = (uint32_t)(n_prompt + (size_t)n_predict + 1);
    struct clspec_engine_info info = {.size = sizeof info};
    if (clspec_engine_open(&ep, &e, err, sizeof err) < 0 || clspec_engine_get_info(e, &info, err, sizeof err) < 0) {
        clspec_engine_free(e);
        free(ids);
        free(pos);
        return fail(argv[1], err);
    }

    /* the prompt in one decode; only the last row's logits are kept */
    for (size_t i = 0; i < n_prompt; i++)
        pos[i] = (int32_t)i;
    struct clspec_batch b = {.size = sizeof b, .n_rows = (int32_t)n_prompt, .token = ids, .pos = pos};
    fputs(prompt, stdout);
    rc = clspec_decode(e, &b, NULL, err, sizeof err);
    const float *logits = clspec_logits(e, (int32_t)n_prompt - 1);

    /* greedy: the most likely token, printed, then decoded at the next position */
    int32_t p = (int32_t)n_prompt;
    for (int n = 0; rc == CLSPEC_OK && n < n_predict; n++) {
        int32_t t = clspec_argmax(logits, info.n_vocab);
        if (clspec_token_is_eog(e, t))
            break;
        char piece[256];
        size_t len = 0;
        if ((rc = clspec_token_piece(e, t, 0, piece, sizeof piece, &len, err, sizeof err)) < 0)
            break;
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        if (n + 1 == n_predict)
            break;
        struct clspec_batch one = {.size = sizeof one, .n_rows = 1, .token = &t, .pos = &p};
        rc = clspec_decode(e, &one, NULL, err, sizeof err);
        logits = clspec_logits(e, 0);
        p++;
    }
    printf("\n");
    clspec_engine_free(e);
    free(ids);
    free(pos);
    return rc < 0 ? fail("decode", err) : 0;
}
