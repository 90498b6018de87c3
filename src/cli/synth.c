/* synth.c: `clspec synth`: writes a synthetic llama/qwen2/qwen3 GGUF with seeded
 * random weights (see src/model/synth.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "clspec/clspec.h"
#include "base/common.h"
#include "gguf/quant.h"
#include "model/synth.h"

#define DEFAULT_VOCAB "models/vocab/ggml-vocab-llama-spm.gguf"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clspec synth [OPTIONS] -o OUT.gguf\n"
            "Writes a model with real shapes and seeded random weights.\n\n"
            "  --preset NAME      110m (768 dim, 12 layers, 12/12 heads, FFN 2048, ctx 1024,\n"
            "                     tied) or 1.1b (2048, 22 layers, 32/4 heads, FFN 5632,\n"
            "                     ctx 2048, untied);\n"
            "                     other options override it\n"
            "  --arch ARCH        llama (default), qwen2 (q/k/v biases), qwen3 (q/k norms)\n"
            "                     qwen35 (hybrid: gated delta-net + every 4th layer gated attention)\n"
            "  --dim N            embedding size (default 256)\n"
            "  --layers N         blocks (default 4)\n"
            "  --heads N          query heads (default 8)\n"
            "  --kv-heads N       key/value heads (default 4)\n"
            "  --head-dim N       head size (default dim / heads)\n"
            "  --ffn N            feed-forward size (default 768)\n"
            "  --ctx N            context length (default 2048)\n"
            "  --type T           f32 (default), f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K for the\n"
            "                     matrices, or q4_K_M (q4_K with q6_K for output.weight and\n"
            "                     attn_v/ffn_down of some layers)\n"
            "                     (norms and biases stay f32)\n"
            "  --output-type T    type of output.weight (default: --type)\n"
            "  --tied             no output.weight (output tied to token_embd)\n"
            "  --untied           a separate output.weight (the default)\n"
            "  --vocab FILE       GGUF whose tokenizer.* metadata is copied (default\n"
            "                     $CLSPEC_SHARED/" DEFAULT_VOCAB ",\n"
            "                     $CLSPEC_SHARED defaulting to ../shared)\n"
            "  --name S           general.name\n"
            "  --rms-eps X        RMS norm epsilon (default llama 1e-5, qwen 1e-6)\n"
            "  --rope-base X      RoPE frequency base (default llama 10000, qwen 1e6)\n"
            "  --seed N           random seed (default 1)\n"
            "  -o, --output FILE  where to write\n"
            "  -q, --quiet        no summary line\n"
            "  -h, --help         this text\n");
}

static int parse_u32(const char *opt, const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-') {
        fprintf(stderr, "clspec synth: %s '%s': not a number\n", opt, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_type(const char *opt, const char *s, uint32_t *out)
{
    int t = cs_type_from_name(s);
    if (t < 0) {
        fprintf(stderr, "clspec synth: %s '%s': unknown type (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K, q4_K_M)\n", opt, s);
        return -1;
    }
    *out = (uint32_t)t;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v > 0)) {
        fprintf(stderr, "clspec synth: %s '%s': not a positive number\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cs_cmd_synth(int argc, char **argv)
{
    struct cs_synth_params p;
    cs_synth_defaults(&p);
    char err[CLSPEC_ERRLEN];
    const char *out = NULL;
    bool quiet = false;

    /* a preset first, so that the other options override it wherever they are */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--preset") && cs_synth_preset(argv[i + 1], &p, err, sizeof err)) {
            fprintf(stderr, "clspec synth: %s\n", err);
            return 2;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--tied") || !strcmp(a, "--untied")) {
            p.tied = !strcmp(a, "--tied");
            continue;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "clspec synth: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "clspec synth: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        uint32_t t;
        if (!strcmp(a, "--preset"))
            ; /* applied above */
        else if (!strcmp(a, "--arch"))
            p.arch = v;
        else if (!strcmp(a, "--dim"))
            bad = parse_u32(a, v, &p.dim);
        else if (!strcmp(a, "--layers"))
            bad = parse_u32(a, v, &p.n_layer);
        else if (!strcmp(a, "--heads"))
            bad = parse_u32(a, v, &p.n_head);
        else if (!strcmp(a, "--kv-heads"))
            bad = parse_u32(a, v, &p.n_kv_head);
        else if (!strcmp(a, "--head-dim"))
            bad = parse_u32(a, v, &p.head_dim);
        else if (!strcmp(a, "--ffn"))
            bad = parse_u32(a, v, &p.ffn);
        else if (!strcmp(a, "--ctx"))
            bad = parse_u32(a, v, &p.ctx);
        else if (!strcmp(a, "--type")) {
            p.q4_k_m = !strcasecmp(v, "q4_K_M");
            bad = parse_type(a, p.q4_k_m ? "q4_K" : v, &p.type);
        }
        else if (!strcmp(a, "--output-type")) {
            bad = parse_type(a, v, &t);
            p.output_type = (int32_t)t;
        } else if (!strcmp(a, "--vocab"))
            p.vocab_path = v;
        else if (!strcmp(a, "--name"))
            p.name = v;
        else if (!strcmp(a, "--rms-eps"))
            bad = parse_float(a, v, &p.rms_eps);
        else if (!strcmp(a, "--rope-base"))
            bad = parse_float(a, v, &p.rope_base);
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            p.seed = strtoull(v, &end, 0);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "clspec synth: --seed '%s': not a number\n", v);
                bad = 1;
            }
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = v;
        else {
            fprintf(stderr, "clspec synth: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad)
            return 2;
    }
    if (!out) {
        fprintf(stderr, "clspec synth: no output file (-o OUT.gguf)\n");
        return 2;
    }
    char vocab[4096];
    if (!p.vocab_path) {
        const char *root = getenv("CLSPEC_SHARED");
        snprintf(vocab, sizeof vocab, "%s/%s", root && *root ? root : "../shared", DEFAULT_VOCAB);
        p.vocab_path = vocab;
    }
    if (cs_synth_check(&p, 0, err, sizeof err)) {
        fprintf(stderr, "clspec synth: %s\n", err);
        return 2;
    }
    double t0 = cs_now();
    uint64_t n_params = 0;
    if (cs_synth_write(&p, out, &n_params, err, sizeof err)) {
        fprintf(stderr, "clspec synth: %s\n", err);
        return 1;
    }
    if (!quiet)
        printf("%s: %s, %.1fM parameters, %s, %.2f s\n", out, p.arch, (double)n_params / 1e6,
               cs_type_name(p.type), cs_now() - t0);
    return 0;
}
