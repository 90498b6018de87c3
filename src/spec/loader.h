/* loader.h: finds (a NAME is plugin_dir/NAME.so: no list of names), dlopens,
 * asks to check its keys (config_check) and initialises one speculator plugin
 * (the ABI of include/clspec/speculator.h) and builds the host table it gets.
 * The caller owns struct cs_plugin (cs_plugin_load / cs_plugin_free); the
 * engine passed in is borrowed and must outlive the plugin. */
#ifndef CS_SPEC_LOADER_H
#define CS_SPEC_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/speculator.h"

struct cs_engine;
struct cs_taps;

struct cs_plugin_kv {
    const char *key, *value;
};

struct cs_plugin_params {
    const char *type;               /* a plugin's name (NAME.so in the plugin directory) or a path to a .so
                                     * (contains '/') */
    const char *plugin_dir;         /* where built-ins live; NULL = $CLSPEC_PLUGIN_DIR, the install
                                     * directory, then the build tree */
    const struct cs_plugin_kv *kv;  /* (n_kv) the plugin's configuration (copied) */
    int n_kv;
    struct cs_engine *engine;       /* the target (borrowed); NULL: target_info fails (tests) */
    uint32_t n_slots;               /* slot ids 0..n_slots-1 */
};

struct cs_plugin {
    void *dl;                       /* dlopen handle */
    char *path;                     /* the file loaded */
    struct clspec_speculator vt;    /* the plugin's vtable, zero-extended to this host's size */
    void *state;                    /* from vt.init */
    struct clspec_host host;        /* handed to init; impl points back to this struct */
    struct cs_plugin_kv *kv;        /* (n_kv) owned copies */
    int n_kv;
    struct cs_engine *engine;
    uint32_t n_slots;
    struct cs_taps *taps;           /* owned; NULL until the plugin calls tap_request (spec/taps.h) */
    struct cs_host_priv *hpriv;     /* owned: host_model.c's state (target_head buffers), NULL until used */
    struct cs_compute *compute;     /* owned: host_compute.c's devs and GGUFs (ABI 1.4), NULL until used */
};

/* Resolves the file (built-in search or path), dlopens it with
 * RTLD_NOW | RTLD_LOCAL, checks the vtable and calls init. Errors, each its
 * own message: no such file (naming every place looked at), not a loadable
 * object (dlerror), missing entry symbol, NULL vtable, ABI major mismatch,
 * vtable too small, required entries missing, init failure (with the
 * plugin's own message). All CLSPEC_E_PLUGIN. */
int cs_plugin_load(const struct cs_plugin_params *p, struct cs_plugin **out, char *err, size_t errlen);
/* Calls fini and unloads. NULL is fine. */
void cs_plugin_free(struct cs_plugin *pl);
/* Whether pl reads the target's states of the prompt (taps or KV injection):
 * then the speculation loop prefills the prompt itself (cs_spec_slot_begin*
 * with nothing cached) instead of the caller. false for NULL. The one place
 * of that rule (clspecd's scheduler and clspec run both ask it). */
bool cs_plugin_needs_core_prefill(const struct cs_plugin *pl);

/* What cs_plugin_check_config reports besides its status. */
struct cs_plugin_check {
    const int *kv_line;  /* in: (n_kv) the line each key of the params was set on (0: a default), or NULL */
    /* in: called for each key the plugin says it does not use (may be NULL) */
    void (*ignored)(void *user, const char *key, const char *why);
    void *user;
    char key[64];        /* out: the key a refusal of the plugin is about ("": the plugin itself) */
};

/* Asks the plugin to check its configuration (the 1.4 entry config_check)
 * without initialising it: resolves and opens it as cs_plugin_load does
 * (the same messages and statuses, with CLSPEC_E_NOTFOUND when the file is
 * not found), hands it p->kv as a read-only view and unloads it. A plugin
 * without the entry (built against an older header) is not asked and
 * passes. A refusal of the plugin: CLSPEC_E_INVAL, chk->key = the key it
 * named and err = its message (the caller adds the key's place). */
int cs_plugin_check_config(const struct cs_plugin_params *p, struct cs_plugin_check *chk, char *err, size_t errlen);

/* true for the built-in "no speculator" (NULL or "none"): nothing to load. */
bool cs_plugin_is_none(const char *type);

/* The path cs_plugin_load would open for type: a path (with a '/') as is,
 * a NAME as NAME.so in the plugin directory (the search of
 * cs_plugin_params.plugin_dir); no list of names. CLSPEC_E_NOTFOUND with
 * the places looked at, the plugins present there and a did-you-mean. */
int cs_plugin_resolve(const char *type, const char *plugin_dir, char *path, size_t pathlen, char *err,
                      size_t errlen);

#endif
