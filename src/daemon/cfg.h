/* config.h: clspecd's configuration: one schema (sections, keys, types,
 * defaults, allowed values, help) defined once in cfg.c, parsed from an
 * INI file with libinih, validated with `file:line: [section] key: problem;
 * how to fix` messages, and printed back with every default filled in.
 * The caller owns struct cs_config (cs_config_load / cs_config_free). */
#ifndef CS_DAEMON_CONFIG_H
#define CS_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/common.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "spec/loader.h"

#define CS_CONFIG_MAX_KEYS 64   /* room in key_line[] for the schema's keys */

struct cs_config {
    char *path;                 /* the file read */
    /* [server] */
    char *host;                 /* "127.0.0.1" */
    int port;                   /* 8080 */
    char *api_key;              /* NULL or "" = no auth */
    size_t max_body_bytes;      /* 1 MiB */
    int max_tokens_limit;       /* 0 = what fits a slot */
    int queue_max;              /* 64 */
    double drain_timeout_s;     /* 30 */
    char *log_level;            /* "error" | "warn" | "info" | "debug" */
    char *log_file;             /* NULL = stderr */
    int http_threads;           /* HTTP worker threads; 0 = 4 */
    int max_connections;        /* 8192; 0 = no cap */
    int max_connections_per_ip; /* 0 = no cap */
    int idle_timeout_s;         /* 60; 0 = never */
    char *cors_origins;         /* NULL = no CORS headers; "*" or origins, comma separated */
    bool webui;                 /* true: the chat page at / */
    bool slots_endpoint;        /* true: GET /slots answers (false: 501) */
    bool embeddings;            /* false: /embeddings answers 501 */
    bool context_shift;         /* false: a generation ends when its slot's context is full */
    char *slot_save_path;       /* NULL = POST /slots/{id}?action=... answers 501 */
    /* [model] */
    char *model_path;           /* required */
    char *model_name;           /* id in /v1/models; default: file name without .gguf */
    char *model_aliases;        /* NULL = none; else comma-separated names listed in /models beside the id */
    char *model_tags;           /* NULL = none; else comma-separated labels listed in /models */
    char *chat_template;        /* NULL = from the GGUF; else a family name (chatml, llama2, llama3,
                                 * mistral, zephyr, gemma, plain) */
    char *chat_template_file;   /* NULL = none; else a template text replacing the GGUF's */
    char *reasoning;            /* "auto" | "on" | "off" (enable_thinking false by default) */
    char *mmproj_path;          /* NULL = no vision projector (images refused) */
    char *mmproj_device;        /* NULL = the first device */
    bool remote_images;         /* fetch http(s) image URLs (false: refused) */
    /* [devices] */
    char *platform;             /* NULL = any */
    char *devices;              /* "0" (default), "0,1", name substrings */
    char *split_mode;           /* "layers" | "memory" */
    uint32_t split[8];          /* parsed from `split = 10,12` (0s = even) */
    /* [kv] */
    uint32_t n_ctx;             /* 4096 */
    uint32_t type_k, type_v;    /* enum cs_type; default f16 */
    bool kv_unified;            /* true */
    uint32_t n_batch, n_ubatch; /* 512, 512 */
    /* [slots] */
    int parallel;               /* 4 */
    bool truncate_prompt;       /* false */
    bool keep_cache;            /* false: a slot's cells go with its request */
    /* [sampling] request defaults */
    struct cs_sampler_params sampling;
    int max_tokens;             /* default max_tokens of a request: 256 */
    /* [speculator] */
    char *spec_type;            /* "none" | a plugin's name (plugin_dir/NAME.so) | a plugin path (absolute) */
    int spec_n_max, spec_n_min; /* 16 (1..64), 0 */
    double spec_p_min;          /* 0.75: drafts with probabilities are cut before a token with q < p_min */
    char *spec_device;          /* NULL = the target's last-layer device */
    char *spec_model;           /* drafter GGUF */
    uint32_t spec_type_k, spec_type_v; /* CS_CONFIG_KVTYPE_UNSET (default): the plugin's own default
                                        * (e.g. the target's KV types) */
#define CS_CONFIG_KVTYPE_UNSET UINT32_MAX
    char *spec_plugin_dir;      /* where plugins named by type are looked for; NULL = the default search */
    char *spec_controller;      /* "acceptance" | "cost" (enum cs_spec_ctl) */
    bool spec_model_ignored;    /* the plugin's config_check said it does not use model (not opened by --check) */
    /* plugin-specific keys, written `opt.KEY = value` in [speculator]: handed to the plugin as KEY */
#define CS_CONFIG_MAX_SPEC_OPTS 16
    int spec_n_opts;
    char *spec_opt_key[CS_CONFIG_MAX_SPEC_OPTS], *spec_opt_val[CS_CONFIG_MAX_SPEC_OPTS];
    int spec_opt_line[CS_CONFIG_MAX_SPEC_OPTS];

    int n_devices;              /* entries in `devices` (1..8) */
    int n_split;                /* entries in `split` (0 = even split) */
    char *warnings;             /* NULL, or lines ("file:line: [section] key: ...\n") that are not
                                 * errors but should be logged at start-up (e.g. a non-loopback host
                                 * without api_key, speculator keys set while type = none) */
    int key_line[CS_CONFIG_MAX_KEYS]; /* per schema key (cs_config_key): line it was set on, 0 = default */
};

/* Reads and validates path (values and combinations that need no hardware).
 * On failure *out is NULL and err holds "file:line: [section] key: problem;
 * how to fix" (line 0 for a problem of the file as a whole); the first
 * problem in file order is reported. On success c->warnings may hold lines
 * for the log. Relative paths ([model] path, log_file, [speculator] model)
 * come back absolute, resolved against the directory of the file. */
int cs_config_load(const char *path, struct cs_config **out, char *err, size_t errlen);
void cs_config_free(struct cs_config *c);

/* Checks against the machine: the model file opens as GGUF, the devices
 * exist, the context fits `parallel`, the port can be bound. Same message format. */
int cs_config_check_runtime(const struct cs_config *c, char *err, size_t errlen);

/* Writes the effective configuration (every key, defaults filled in, as INI,
 * each key's help as a comment above it); cs_config_load reads it back to the
 * same values. api_key is written as is: for logs use cs_config_print_opts
 * with CS_CONFIG_PRINT_REDACT. */
void cs_config_print(const struct cs_config *c, FILE *f);

/* The engine parameters this configuration asks for. Strings point into c. */
struct cs_engine_params cs_config_engine_params(const struct cs_config *c);

/* The keys a speculator plugin sees (its config_get and config_check):
 * n_max, n_min, p_min, then type_k, type_v, model, device when set, then
 * each opt.KEY as KEY; line[i]: where each was set (0: its default).
 * Values point into c and into the struct. */
struct cs_config_spec_kv {
    struct cs_plugin_kv kv[7 + CS_CONFIG_MAX_SPEC_OPTS];
    int line[7 + CS_CONFIG_MAX_SPEC_OPTS];
    int n;
    char nmax[16], nmin[16], pmin[32];
};
void cs_config_spec_kv(const struct cs_config *c, struct cs_config_spec_kv *out);

/* ---- printing, checks against the model and devices ---- */

/* cs_config_print with options: CS_CONFIG_PRINT_REDACT writes api_key as
 * "<redacted>" (for logs; such output does not load back to the same key),
 * CS_CONFIG_PRINT_HELP adds each key's one-line help as a comment above it.
 * cs_config_print(c, f) = cs_config_print_opts(c, f, CS_CONFIG_PRINT_HELP). */
#define CS_CONFIG_PRINT_REDACT 1u
#define CS_CONFIG_PRINT_HELP 2u
void cs_config_print_opts(const struct cs_config *c, FILE *f, unsigned flags);

/* The schema, for documentation and tests: key i (0..cs_config_n_keys()-1). */
struct cs_config_key_info {
    const char *section;  /* "kv" */
    const char *name;     /* "type_k" */
    const char *type;     /* "int", "float", "bool", "string", "path", "size", "enum", "list" */
    const char *def;      /* default as written in the file ("" = unset / empty) */
    const char *allowed;  /* "f32|f16|bf16|q8_0|q4_0", "1..64", ... */
    const char *help;     /* one line */
};
size_t cs_config_n_keys(void);
int cs_config_key(size_t i, struct cs_config_key_info *out);

/* Line of the file where [section] key was set; 0 when it kept its default
 * (or is not a key of the schema). */
int cs_config_line(const struct cs_config *c, const char *section, const char *key);

/* Formats "file:line: [section] key: <fmt>" into err with the line of that
 * key (cs_config_line) and returns status. For cfg_check.c and main.c. */
int cs_config_err(const struct cs_config *c, const char *section, const char *key, char *err, size_t errlen,
                  int status, const char *fmt, ...) CS_PRINTF(7, 8);

#endif
