/* spec_cli.h: the speculation options of `clspec run` and `clspec bench`
 * (--spec NAME|/path.so, --spec-n-max, --spec-n-min, --spec-p-min,
 * --spec-opt key=value, --plugin-dir; bench: --parallel, --spec-prompt,
 * and the engine options -c/-ctk/-ctv/--device of src/cli/opts.h) and the runs that use them (engine + src/spec). */
#ifndef CS_CLI_SPEC_CLI_H
#define CS_CLI_SPEC_CLI_H

#include <stdint.h>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "spec/loader.h"

struct cs_spec_cli {
    const char *type;              /* NULL: no --spec given */
    const char *plugin_dir;
    double n_max, n_min, p_min;
    struct cs_plugin_kv kv[16];    /* --spec-opt key=value (pointers into argv) */
    char kbuf[16][64];
    int n_kv;
    double parallel;               /* bench: slots */
    const char *prompt;            /* bench: one prompt for every slot (default: a built-in set) */
    int ctl;                       /* --spec-ctl: enum cs_spec_ctl (default cost) */
};

void cs_spec_cli_init(struct cs_spec_cli *o);
/* Consumes option a with value v when it is one of ours: returns 1 (taken),
 * 0 (not ours), -1 (bad value; message printed). */
int cs_spec_cli_opt(struct cs_spec_cli *o, const char *cmd, const char *a, const char *v);
/* The usage lines of the options. */
const char *cs_spec_cli_usage(void);
/* `clspec run`: generates from ids (n_prompt tokens) through the speculation
 * loop (src/spec/spec.c) on the engine door, with o->type's speculator or
 * none (o->type NULL): the one generate path, fed as the daemon feeds a
 * request. Streams the text to stdout, statistics to stderr. Exit code. */
int cs_cli_generate(const struct cs_spec_cli *o, const struct cs_engine_params *ep, const int32_t *ids,
                    int32_t n_prompt, int32_t n_predict, const struct cs_sampler_params *sp);
/* `clspec bench --spec`: n_gen tokens per slot, without and with speculation. Exit code. */
int cs_spec_cli_bench(const struct cs_spec_cli *o, const struct cs_engine_params *ep, int32_t n_gen, int reps);

#endif
