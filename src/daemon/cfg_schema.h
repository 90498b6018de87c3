/* cfg_schema.h: internal to clspecd's configuration (cfg.c,
 * cfg_schema.c): the schema table type and the helpers the loader and the
 * printer share. Everything here is static data or pure; nothing is owned. */
#ifndef CS_DAEMON_CONFIG_SCHEMA_H
#define CS_DAEMON_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/cfg.h"

#define CS_CFG_MAX_LIST 8          /* devices / split entries (engine: split[8]) */
#define CS_CFG_MIN_SLOT_CELLS 64   /* KV cells each slot needs at the least */

enum cs_cfg_type {
    CS_CFG_STR,    /* char *; opt: "" = NULL */
    CS_CFG_PATH,   /* char *, relative to the file's directory; "" = NULL */
    CS_CFG_ENUM,   /* char *, one of allowed ("a|b|c"); opt: "" = NULL */
    CS_CFG_INT,    /* int */
    CS_CFG_I32,    /* int32_t */
    CS_CFG_U32,    /* uint32_t */
    CS_CFG_U64,    /* uint64_t */
    CS_CFG_DBL,    /* double */
    CS_CFG_FLT,    /* float */
    CS_CFG_BOOL,   /* bool */
    CS_CFG_SIZE,   /* size_t, bytes with optional K/M/G suffix */
    CS_CFG_KVTYPE, /* uint32_t enum cs_type, one of allowed */
    CS_CFG_DEVS,   /* char *devices + n_devices */
    CS_CFG_SPLIT,  /* uint32_t split[8] + n_split */
};

struct cs_cfg_key {
    const char *sec, *name;
    enum cs_cfg_type t;
    size_t off;          /* offsetof(struct cs_config, field) */
    const char *def;     /* default, as written in the file ("" = unset) */
    double lo, hi;       /* numbers, sizes (bytes), list entries: allowed range */
    const char *allowed; /* CS_CFG_ENUM / CS_CFG_KVTYPE: "a|b|c" */
    const char *help;
};


/* The schema (cfg_schema.c), in printing order. */
extern const struct cs_cfg_key cs_cfg_keys[];
extern const size_t cs_cfg_n_keys;
extern const char *const cs_cfg_sections[];
extern const size_t cs_cfg_n_sections;

/* Index of [sec] name in cs_cfg_keys, -1 if none. */
int cs_cfg_key_index(const char *sec, const char *name);
bool cs_cfg_section_known(const char *sec);
/* Shortest %.Ng text that reads back to the same double (float when is_float). */
void cs_cfg_fmt_num(char *buf, size_t n, double v, bool is_float);
/* s among "a|b|c" (case-insensitive): its spelling in allowed (copied to buf), or NULL. */
const char *cs_cfg_pick(const char *allowed, const char *s, char *buf, size_t n);

#endif
