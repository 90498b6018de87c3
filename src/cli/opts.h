/* opts.h: numeric command-line option values for the clspec subcommands.
 * On a bad value they print "clspec CMD: OPT needs ..." to stderr and return
 * -1; *out is written only on success. */
#ifndef CS_CLI_OPTS_H
#define CS_CLI_OPTS_H

/* A number in [lo, hi] (strtod syntax). v may be NULL (missing value). */
int cs_opt_num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out);
/* A base-10 integer in [lo, hi]. */
int cs_opt_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out);

/* A KV cache type name: f32, f16, bf16, q8_0 or q4_0 (enum cs_type to *out). */
int cs_opt_kvtype(const char *cmd, const char *opt, const char *v, unsigned *out);
/* A comma-separated list of 1..cap integers in [lo, hi] ("1,2,4,8"); *n gets the count. */
int cs_opt_list(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out, int cap, int *n);

/* The engine options `clspec run` and `clspec bench` share: --device LIST,
 * --split N,M,..., --split-mode layers|memory, -c/--ctx-size N,
 * -ctk/--cache-type-k TYPE, -ctv/--cache-type-v TYPE, -ub/--ubatch-size N.
 * Returns 1 when a is one of them (and v was valid: p updated), 0 when it
 * is not, -1 on a bad value (printed). */
struct cs_engine_params;
int cs_opt_engine(const char *cmd, const char *a, const char *v, struct cs_engine_params *p);
#define CS_OPT_ENGINE_HELP                                                                              \
    "  --device LIST         OpenCL devices, comma separated: indices or name substrings (see\n"       \
    "                        `clspec devices`); layers are split across them in this order\n"          \
    "  --split N,M,...       layers per device (--split-mode layers, default: even) or relative\n"     \
    "                        weights (--split-mode memory; none given: the devices' memory)\n"          \
    "  --split-mode MODE     layers | memory\n"                                                         \
    "  -c, --ctx-size N      KV cache cells\n"                                                          \
    "  -ctk, --cache-type-k T  type of cached keys: f32, f16 (default), bf16, q8_0, q4_0\n"             \
    "  -ctv, --cache-type-v T  type of cached values (same choices)\n"                                  \
    "  -ub, --ubatch-size N  tokens per device pass (default 512)\n"                                  \
    "  --numerics MODE       default | llamacpp: llama.cpp's CPU arithmetic bit for bit (F32/F16/Q8_0/Q4_0\n" \
    "                        weights, f16 cache; slow; greedy text as llama.cpp prints it)\n"

#endif
