/* mmproj.c: `clspec mmproj`: vision projectors from the command line.
 *   clspec mmproj synth  ... -o OUT.gguf   a synthetic projector (src/vision/clip_synth.h)
 *   clspec mmproj encode --mmproj F --image IMG...  encode images through the engine door
 *                                                   (clspec_image_encode), timing each */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "clspec/clspec.h"
#include "gguf/quant.h"
#include "vision/clip_synth.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: clspec mmproj synth [--preset tiny|siglip-so400m] [--type T] [--proj-dim N]\n"
               "                           [--layers N] [--seed N] -o OUT.gguf\n"
               "       clspec mmproj encode --mmproj FILE [--device SEL] [--repeat N] [--dump OUT.f32] IMAGE...\n\n"
               "synth: writes a vision projector (type \"mlp\": a CLIP-style ViT and a 2-layer MLP) with\n"
               "  real shapes and seeded random weights; the preset sets the shapes (default\n"
               "  siglip-so400m: 27 blocks, width 1152, 16 heads, FFN 4304, patch 14, 384 x 384,\n"
               "  output 2048), the options override them; --type sets the matrices' type (f16).\n"
               "encode: decodes, preprocesses and encodes each image (PNG or JPEG), printing the\n"
               "  rows it yields and the time of each step (the first encode of a process includes\n"
               "  loading the kernels); --repeat N encodes each image N times; --dump writes the\n"
               "  rows of the last image as raw little-endian f32.\n");
}

static int cmd_synth(int argc, char **argv)
{
    char err[CLSPEC_ERRLEN];
    struct cs_clip_synth_params p;
    const char *out = NULL;
    if (cs_clip_synth_preset("siglip-so400m", &p, err, sizeof err) < 0)
        return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "--preset") == 0 && v) {
            if (cs_clip_synth_preset(v, &p, err, sizeof err) < 0) {
                fprintf(stderr, "clspec mmproj synth: %s\n", err);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--type") == 0 && v) {
            int t = cs_type_from_name(v);
            if (t < 0) {
                fprintf(stderr, "clspec mmproj synth: --type '%s': unknown type\n", v);
                return 2;
            }
            p.type = (uint32_t)t;
            i++;
        } else if (strcmp(a, "--proj-dim") == 0) {
            if (cs_opt_int("mmproj synth", a, v, 1, 65536, &n) < 0)
                return 2;
            p.proj_dim = (uint32_t)n;
            i++;
        } else if (strcmp(a, "--layers") == 0) {
            if (cs_opt_int("mmproj synth", a, v, 1, 256, &n) < 0)
                return 2;
            p.n_layer = (uint32_t)n;
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (cs_opt_int("mmproj synth", a, v, 0, 1L << 30, &n) < 0)
                return 2;
            p.seed = (uint64_t)n;
            i++;
        } else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && v) {
            out = v;
            i++;
        } else {
            fprintf(stderr, "clspec mmproj synth: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "clspec mmproj synth: -o OUT.gguf is required\n");
        return 2;
    }
    if (cs_clip_synth_write(&p, out, err, sizeof err) < 0) {
        fprintf(stderr, "clspec mmproj synth: %s\n", err);
        return 1;
    }
    printf("wrote %s: %u blocks, width %u, %u heads, FFN %u, %ux%u image in patches of %u, output %u, %s\n", out,
           p.n_layer, p.n_embd, p.n_head, p.n_ff, p.image_size, p.image_size, p.patch_size, p.proj_dim,
           cs_type_name(p.type));
    return 0;
}

/* Encodes one image file `repeat` times; the rows of the last go to out. */
static int encode_file(clspec_mmproj *m, const char *path, long repeat, float *out)
{
    char err[CLSPEC_ERRLEN];
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "clspec mmproj encode: %s: cannot open\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = len > 0 ? malloc((size_t)len) : NULL;
    size_t got = buf ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    if (!buf || got != (size_t)len) {
        free(buf);
        fprintf(stderr, "clspec mmproj encode: %s: cannot read\n", path);
        return 1;
    }
    double first = 0, sum = 0;
    for (long r = 0; r < repeat; r++) {
        double t0 = cs_now();
        if (clspec_image_encode(m, buf, (size_t)len, out, err, sizeof err) < 0) {
            fprintf(stderr, "clspec mmproj encode: %s: %s\n", path, err);
            free(buf);
            return 1;
        }
        double ms = (cs_now() - t0) * 1e3;
        if (r == 0)
            first = ms;
        else
            sum += ms;
    }
    printf("%s: %ld bytes, encode %.1f ms first", path, len, first);
    if (repeat > 1)
        printf(", %.1f ms mean of the next %ld", sum / (double)(repeat - 1), repeat - 1);
    printf("\n");
    free(buf);
    return 0;
}

static int cmd_encode(int argc, char **argv)
{
    char err[CLSPEC_ERRLEN];
    struct clspec_mmproj_params mp;
    clspec_mmproj_default_params(&mp, sizeof mp);
    const char *dump = NULL;
    long repeat = 1;
    int first_img = argc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--mmproj") == 0 && v) {
            mp.path = v;
            i++;
        } else if (strcmp(a, "--device") == 0 && v) {
            mp.device = v;
            i++;
        } else if (strcmp(a, "--dump") == 0 && v) {
            dump = v;
            i++;
        } else if (strcmp(a, "--repeat") == 0) {
            if (cs_opt_int("mmproj encode", a, v, 1, 1000, &repeat) < 0)
                return 2;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "clspec mmproj encode: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            first_img = i;
            break;
        }
    }
    if (!mp.path || first_img >= argc) {
        fprintf(stderr, "clspec mmproj encode: --mmproj FILE and at least one IMAGE are required\n");
        return 2;
    }
    double t0 = cs_now();
    clspec_mmproj *m = NULL;
    if (clspec_mmproj_open(NULL, &mp, &m, err, sizeof err) < 0) {
        fprintf(stderr, "clspec mmproj encode: %s\n", err);
        return 1;
    }
    struct clspec_mmproj_info info = {.size = sizeof info};
    if (clspec_mmproj_get_info(m, &info, err, sizeof err) < 0) {
        fprintf(stderr, "clspec mmproj encode: %s\n", err);
        clspec_mmproj_free(m);
        return 1;
    }
    printf("%s: projector %s, %d blocks, %dx%d input, %d rows of %d per image, on %s (opened in %.2f s)\n", mp.path,
           info.projector_type, info.n_layer, info.image_size, info.image_size, info.n_tokens, info.n_embd,
           info.device_name, cs_now() - t0);
    float *out = malloc(sizeof(float) * (size_t)info.n_tokens * (size_t)info.n_embd);
    int rc = out ? 0 : 1;
    for (int i = first_img; i < argc && rc == 0; i++)
        rc = encode_file(m, argv[i], repeat, out);
    if (rc == 0 && dump) {
        FILE *f = fopen(dump, "wb");
        size_t n = (size_t)info.n_tokens * (size_t)info.n_embd;
        if (!f || fwrite(out, sizeof(float), n, f) != n) {
            fprintf(stderr, "clspec mmproj encode: %s: cannot write\n", dump);
            rc = 1;
        }
        if (f)
            fclose(f);
    }
    free(out);
    clspec_mmproj_free(m);
    return rc;
}

int cs_cmd_mmproj(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "synth") == 0)
        return cmd_synth(argc - 2, argv + 2);
    if (strcmp(argv[1], "encode") == 0)
        return cmd_encode(argc - 2, argv + 2);
    fprintf(stderr, "clspec mmproj: unknown action '%s' (synth, encode)\n", argv[1]);
    return 2;
}
