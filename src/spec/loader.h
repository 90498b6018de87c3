/* loader.h: finds, dlopens and initialises one speculator plugin (the ABI of
 * include/clspec/speculator.h) and builds the host services table it gets.
 * The caller owns struct cs_plugin (cs_plugin_load / cs_plugin_free); the
 * engine passed in is borrowed and must outlive the plugin. */
#ifndef CS_SPEC_LOADER_H
#define CS_SPEC_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "clspec/speculator.h"

struct cs_engine;
struct cs_taps;

struct cs_plugin_kv {
    const char *key, *value;
};

struct cs_plugin_params {
    const char *type;               /* built-in name ("ngram") or a path to a .so (contains '/') */
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

/* The path cs_plugin_load would open for type (for messages and tests);
 * CLSPEC_E_NOTFOUND with the list of places looked at. */
int cs_plugin_resolve(const char *type, const char *plugin_dir, char *path, size_t pathlen, char *err,
                      size_t errlen);

#endif
