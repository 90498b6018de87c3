/* fuzz-tokenizer.c: libFuzzer target for the tokenizers. Loads the llama-spm
 * and gpt-2 vocabularies from $CLSPEC_SHARED (default ../shared); every input
 * is tokenized (with and without parse_special, into a bounded buffer) and
 * detokenized, checking ids are in range and that text comes back exactly
 * (BPE always; SPM when the text holds no U+2581). An input that starts with
 * "GGUF" is instead opened as a vocabulary file (hostile metadata). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clspec/clspec.h"
#include "gguf/gguf.h"
#include "text/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cs_gguf *g_spm, *g_bpe;
static struct cs_tokenizer *t_spm, *t_bpe;

static struct cs_tokenizer *load(const char *root, const char *name, struct cs_gguf **g)
{
    char path[4096], err[CLSPEC_ERRLEN];
    struct cs_tokenizer *t;
    snprintf(path, sizeof path, "%s/models/vocab/%s", root, name);
    if (cs_gguf_open(path, g, err, sizeof err) != CLSPEC_OK ||
        cs_tokenizer_load(*g, &t, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "fuzz-tokenizer: cannot load %s: %s\n(set CLSPEC_SHARED to the shared directory)\n", path, err);
        exit(1);
    }
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *root = getenv("CLSPEC_SHARED");
    if (!root || !*root)
        root = "../shared";
    t_spm = load(root, "ggml-vocab-llama-spm.gguf", &g_spm);
    t_bpe = load(root, "ggml-vocab-gpt-2.gguf", &g_bpe);
    return 0;
}

#define CAP 2048

static void check(const struct cs_tokenizer *t, const uint8_t *data, size_t size, bool parse_special)
{
    static int32_t ids[CAP];
    static char text[CAP * 64 + 16];
    char err[CLSPEC_ERRLEN];
    size_t n, len;
    int rc = cs_tokenize(t, (const char *)data, size, parse_special, parse_special, ids, CAP, &n, err, sizeof err);
    if (rc == CLSPEC_E_RANGE) {
        if (n <= CAP)
            abort();
        return;
    }
    if (rc != CLSPEC_OK)
        abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cs_tokenizer_n_vocab(t))
            abort();
    for (size_t i = 0; i < n; i++) {
        char piece[256];
        if (cs_token_to_piece(t, ids[i], true, piece, sizeof piece, &len, err, sizeof err) != CLSPEC_OK)
            abort();
    }
    /* render specials when they were parsed, so that the text can come back */
    rc = cs_detokenize(t, ids, n, false, parse_special, text, sizeof text, &len, err, sizeof err);
    if (rc != CLSPEC_OK)
        abort();
    bool exact = cs_tokenizer_kind(t) == CS_TOK_BPE ||
                 (!parse_special && !memmem(data, size, "\xe2\x96\x81", 3));
    if (exact && (len != size || memcmp(text, data, size) != 0)) {
        fprintf(stderr, "round trip failed (%s, parse_special %d): %zu bytes in, %zu out\n",
                cs_tokenizer_kind(t) == CS_TOK_BPE ? "bpe" : "spm", (int)parse_special, size, len);
        abort();
    }
}

/* A whole GGUF as the vocabulary: loading must fail cleanly or give a
 * tokenizer that works on a fixed text. */
static void fuzz_vocab(const uint8_t *data, size_t size)
{
    static const char text[] = "Hello world <s> \xe2\x96\x81x 123 \xff!";
    char err[CLSPEC_ERRLEN], out[4096];
    struct cs_gguf *g = NULL;
    struct cs_tokenizer *t = NULL;
    int32_t ids[256];
    size_t n, len;
    if (cs_gguf_open_mem(data, size, "fuzz.gguf", &g, err, sizeof err) == CLSPEC_OK &&
        cs_tokenizer_load(g, &t, err, sizeof err) == CLSPEC_OK) {
        for (int p = 0; p < 2; p++) {
            int rc = cs_tokenize(t, text, sizeof text - 1, p, p, ids, 256, &n, err, sizeof err);
            if (rc != CLSPEC_OK && rc != CLSPEC_E_RANGE)
                abort();
            if (rc != CLSPEC_OK)
                continue;
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= cs_tokenizer_n_vocab(t))
                    abort();
            rc = cs_detokenize(t, ids, n, p, p, out, sizeof out, &len, err, sizeof err);
            if (rc != CLSPEC_OK && rc != CLSPEC_E_RANGE)
                abort();
        }
        for (int32_t id = 0; id < cs_tokenizer_n_vocab(t) && id < 64; id++)
            if (cs_token_to_piece(t, id, true, out, sizeof out, &len, err, sizeof err) == CLSPEC_E_NOMEM)
                abort();
    }
    cs_tokenizer_free(t);
    cs_gguf_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        fuzz_vocab(data, size);
        return 0;
    }
    if (size > 4096)
        return 0;
    for (int p = 0; p < 2; p++) {
        check(t_spm, data, size, p);
        check(t_bpe, data, size, p);
    }
    return 0;
}
