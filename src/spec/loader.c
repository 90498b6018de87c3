/* loader.c: see loader.h. The host table's 1.0 entries are implemented
 * here over the engine, the 1.1 draft-model entries and the 1.2 MTP-head /
 * target-tensor entries in host_model.c, the 1.2 taps in taps.c;
 * ctx_kv_inject is still NULL (see speculator.h). */
#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "engine.h"
#include "spec/host_compute.h"
#include "spec/host_dflash.h"
#include "spec/host_model.h"
#include "spec/loader.h"
#include "spec/taps.h"

#ifndef CLSPEC_PLUGIN_DIR
#define CLSPEC_PLUGIN_DIR "/usr/local/lib/clspec/plugins"
#endif

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_path(const char *type)
{
    return strchr(type, '/') != NULL;
}

int cs_plugin_resolve(const char *type, const char *plugin_dir, char *path, size_t pathlen, char *err,
                      size_t errlen)
{
    if (!type || !*type)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "speculator: empty type (want ngram, draft, ... or a path to a .so)");
    if (is_path(type)) {
        if (!is_file(type))
            return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "speculator plugin %s: no such file", type);
        snprintf(path, pathlen, "%s", type);
        return CLSPEC_OK;
    }
    for (const char *c = type; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "speculator type '%s': not a built-in name ([a-z0-9_-]) nor a path (give ./%s for a file "
                          "here)",
                          type, type);
    /* candidates, in order */
    char cand[4][1024];
    int n = 0;
    const char *env = getenv("CLSPEC_PLUGIN_DIR");
    if (plugin_dir && *plugin_dir)
        snprintf(cand[n++], sizeof cand[0], "%s/%s.so", plugin_dir, type);
    else if (env && *env)
        snprintf(cand[n++], sizeof cand[0], "%s/%s.so", env, type);
    snprintf(cand[n++], sizeof cand[0], "%s/%s.so", CLSPEC_PLUGIN_DIR, type);
#ifdef CLSPEC_BUILD_PLUGIN_DIR
    if (!(plugin_dir && *plugin_dir)) /* uninstalled runs and tests */
        snprintf(cand[n++], sizeof cand[0], "%s/%s/.libs/%s.so", CLSPEC_BUILD_PLUGIN_DIR, type, type);
#endif
    for (int i = 0; i < n; i++)
        if (is_file(cand[i])) {
            snprintf(path, pathlen, "%s", cand[i]);
            return CLSPEC_OK;
        }
    char list[2048] = "";
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", cand[i]);
    }
    return cs_err(err, errlen, CLSPEC_E_NOTFOUND,
                  "speculator '%s': plugin not found (looked at %s); set plugin_dir or give a path", type, list);
}

/* ---- host services (1.0) ---- */

static struct cs_plugin *self(const struct clspec_host *h)
{
    return (struct cs_plugin *)h->impl;
}

static void host_log(const struct clspec_host *h, int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level >= CLSPEC_LOG_DEBUG && !getenv("CLSPEC_DEBUG"))
        return;
    struct cs_plugin *pl = self(h);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "speculator %s: %s: %s\n", pl->vt.name ? pl->vt.name : "?",
            names[level < 0 ? 0 : level > 3 ? 3 : level], line);
}

static const char *host_config_get(const struct clspec_host *h, const char *key)
{
    struct cs_plugin *pl = self(h);
    for (int i = 0; key && i < pl->n_kv; i++)
        if (!strcmp(pl->kv[i].key, key))
            return pl->kv[i].value;
    return NULL;
}

static int host_target_info(const struct clspec_host *h, struct clspec_target_info *out)
{
    struct cs_plugin *pl = self(h);
    const struct cs_engine *e = pl->engine;
    if (!e || !out)
        return CLSPEC_E_UNSUPPORTED;
    struct clspec_target_info t;
    memset(&t, 0, sizeof t);
    t.size = sizeof t;
    t.model.size = sizeof t.model;
    t.model.arch = e->model->hp.arch_name;
    t.model.n_vocab = e->model->hp.n_vocab;
    t.model.n_embd = e->model->hp.n_embd;
    t.model.n_layer = e->model->hp.n_layer;
    t.model.n_ctx_train = e->model->hp.n_ctx_train;
    t.model.bos = e->tok ? cs_tokenizer_bos(e->tok) : -1;
    t.model.eos = e->tok ? cs_tokenizer_eos(e->tok) : -1;
    t.model.device = e->n_dev - 1;
    t.n_ctx = e->p.n_ctx;
    t.n_slots = pl->n_slots;
    t.type_k = e->p.type_k;
    t.type_v = e->p.type_v;
    cs_host_fill(out, &t, sizeof t);
    return CLSPEC_OK;
}

static int32_t host_n_devices(const struct clspec_host *h)
{
    struct cs_plugin *pl = self(h);
    return pl->engine ? pl->engine->n_dev : 0;
}

static int host_device_info(const struct clspec_host *h, int32_t index, struct clspec_device_info *out)
{
    struct cs_plugin *pl = self(h);
    if (!pl->engine || index < 0 || index >= pl->engine->n_dev || !out)
        return CLSPEC_E_RANGE;
    const struct cs_cl_devinfo *di = &pl->engine->dev[index]->info;
    struct clspec_device_info d = {
        .size = sizeof d, .index = index, .name = di->name, .vendor = di->vendor, .global_mem = di->global_mem,
        .max_alloc = di->max_alloc, .is_gpu = (di->type & CL_DEVICE_TYPE_GPU) != 0,
    };
    cs_host_fill(out, &d, sizeof d);
    return CLSPEC_OK;
}

static const char *host_token_text(const struct clspec_host *h, int32_t id)
{
    struct cs_plugin *pl = self(h);
    if (!pl->engine || !pl->engine->tok || id < 0 || id >= cs_tokenizer_n_vocab(pl->engine->tok))
        return NULL;
    size_t len = 0;
    return cs_tokenizer_text(pl->engine->tok, id, &len);
}

static void host_table(struct cs_plugin *pl)
{
    struct clspec_host *h = &pl->host;
    memset(h, 0, sizeof *h);
    h->abi_major = CLSPEC_SPEC_ABI_MAJOR;
    h->abi_minor = CLSPEC_SPEC_ABI_MINOR;
    h->size = sizeof *h;
    h->impl = pl;
    h->log = host_log;
    h->config_get = host_config_get;
    h->target_info = host_target_info;
    h->n_devices = host_n_devices;
    h->device_info = host_device_info;
    h->token_text = host_token_text;
    cs_host_model_entries(h); /* 1.1: draft models; 1.2: MTP heads, target_embed / target_head, ctx_hidden */
    cs_host_taps_entries(h);  /* 1.2: target taps */
    cs_host_dflash_entries(h); /* 1.3: dflash drafters (wraps the draft-model entries) */
    cs_host_compute_entries(h); /* 1.4: device compute service */
    /* ctx_kv_inject stays NULL (not provided yet) */
}

/* ---- capabilities: refuse before init what this host cannot give ---- */

static int check_caps(const struct cs_plugin *pl, char *err, size_t errlen)
{
    static const struct {
        uint64_t bit;
        const char *what;
    } known[] = {
        {CLSPEC_SPEC_CAP_TARGET_TAPS, "hidden-state taps of the target"},
        {CLSPEC_SPEC_CAP_SHARED_KV, "a shared target KV cache"},
        {CLSPEC_SPEC_CAP_DEVICE_MEMORY, "device memory of its own (draft models)"},
        {CLSPEC_SPEC_CAP_DRAFT_PROBS, "draft probabilities"},
        {CLSPEC_SPEC_CAP_TARGET_TENSORS, "the target's embedding and output tensors"},
        {CLSPEC_SPEC_CAP_KV_INJECT, "KV injection"},
    };
    const struct clspec_host *h = &pl->host;
    const char *nm = pl->vt.name ? pl->vt.name : "?";
    uint64_t all = 0;
    for (size_t i = 0; i < CS_ARRAY_LEN(known); i++)
        all |= known[i].bit;
    if (pl->vt.caps & ~all)
        return cs_err(err, errlen, CLSPEC_E_PLUGIN,
                      "speculator plugin %s (%s): capability bits 0x%llx unknown to this clspec (ABI %u.%u); "
                      "use a newer clspec",
                      pl->path, nm, (unsigned long long)(pl->vt.caps & ~all), h->abi_major, h->abi_minor);
    for (size_t i = 0; i < CS_ARRAY_LEN(known); i++) {
        uint64_t b = known[i].bit;
        if (!(pl->vt.caps & b))
            continue;
        bool have = b == CLSPEC_SPEC_CAP_TARGET_TAPS      ? h->tap_request && h->tap_get
                    : b == CLSPEC_SPEC_CAP_SHARED_KV      ? false
                    : b == CLSPEC_SPEC_CAP_DEVICE_MEMORY  ? h->model_load && h->ctx_new
                    : b == CLSPEC_SPEC_CAP_TARGET_TENSORS ? h->target_embed && h->target_head
                    : b == CLSPEC_SPEC_CAP_KV_INJECT      ? h->ctx_kv_inject != NULL
                                                          : true;
        if (!have)
            return cs_err(err, errlen, CLSPEC_E_PLUGIN,
                          "speculator plugin %s (%s) needs %s, which this clspec (ABI %u.%u) does not provide",
                          pl->path, nm, known[i].what, h->abi_major, h->abi_minor);
    }
    return CLSPEC_OK;
}

/* ---- loading ---- */

void cs_plugin_free(struct cs_plugin *pl)
{
    if (!pl)
        return;
    if (pl->state && pl->vt.fini)
        pl->vt.fini(pl->state);
    if (pl->dl)
        dlclose(pl->dl);
    cs_taps_free(pl->taps);
    cs_host_model_priv_free(pl);
    cs_host_compute_free(pl); /* what the plugin left on its devs */
    for (int i = 0; i < pl->n_kv; i++) {
        free((char *)pl->kv[i].key);
        free((char *)pl->kv[i].value);
    }
    free(pl->kv);
    free(pl->path);
    free(pl);
}

int cs_plugin_load(const struct cs_plugin_params *p, struct cs_plugin **out, char *err, size_t errlen)
{
    *out = NULL;
    char path[1024];
    int rc = cs_plugin_resolve(p->type, p->plugin_dir, path, sizeof path, err, errlen);
    if (rc < 0)
        return rc == CLSPEC_E_NOTFOUND ? CLSPEC_E_PLUGIN : rc; /* err: "no such file" / "not found (looked at ...)" */
    struct cs_plugin *pl = calloc(1, sizeof *pl);
    if (!pl || !(pl->path = strdup(path)) ||
        (p->n_kv > 0 && !(pl->kv = calloc((size_t)p->n_kv, sizeof *pl->kv)))) {
        cs_plugin_free(pl);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "speculator: out of memory");
    }
    for (int i = 0; i < p->n_kv; i++) {
        pl->kv[pl->n_kv].key = strdup(p->kv[i].key);
        pl->kv[pl->n_kv].value = strdup(p->kv[i].value ? p->kv[i].value : "");
        pl->n_kv++;
        if (!pl->kv[i].key || !pl->kv[i].value) {
            cs_plugin_free(pl);
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "speculator: out of memory");
        }
    }
    pl->engine = p->engine;
    pl->n_slots = p->n_slots;
    pl->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!pl->dl) {
        const char *de = dlerror();
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s: cannot load: %s", path, de ? de : "?");
        goto fail;
    }
    dlerror();
    clspec_speculator_entry_fn entry;
    void *sym = dlsym(pl->dl, CLSPEC_SPECULATOR_ENTRY);
    memcpy(&entry, &sym, sizeof entry); /* object -> function pointer without a pedantic warning */
    if (!sym) {
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN,
                    "speculator plugin %s: missing entry symbol %s (not a clspec speculator, or built without "
                    "exporting it)",
                    path, CLSPEC_SPECULATOR_ENTRY);
        goto fail;
    }
    const struct clspec_speculator *vt = entry();
    if (!vt) {
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s: %s() returned NULL", path,
                    CLSPEC_SPECULATOR_ENTRY);
        goto fail;
    }
    if (vt->abi_major != CLSPEC_SPEC_ABI_MAJOR) {
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN,
                    "speculator plugin %s: ABI major version %u, this clspec speaks %u (rebuild the plugin against "
                    "this clspec's speculator.h)",
                    path, vt->abi_major, CLSPEC_SPEC_ABI_MAJOR);
        goto fail;
    }
    if (vt->size < CLSPEC_SPEC_V1_MIN_SIZE) {
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN,
                    "speculator plugin %s: vtable too small (%u bytes, ABI %u needs at least %zu)", path, vt->size,
                    CLSPEC_SPEC_ABI_MAJOR, (size_t)CLSPEC_SPEC_V1_MIN_SIZE);
        goto fail;
    }
    memset(&pl->vt, 0, sizeof pl->vt);
    memcpy(&pl->vt, vt, vt->size < sizeof pl->vt ? vt->size : sizeof pl->vt);
    const char *nm = pl->vt.name && *pl->vt.name ? pl->vt.name : path;
    if (!pl->vt.init || !pl->vt.draft) {
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s (%s): required entry %s is NULL", path, nm,
                    !pl->vt.init ? "init" : "draft");
        goto fail;
    }
    host_table(pl);
    if ((rc = check_caps(pl, err, errlen)) < 0)
        goto fail;
    char perr[512] = "";
    int prc = pl->vt.init(&pl->host, &pl->state, perr, sizeof perr);
    if (prc < 0) {
        pl->state = NULL; /* fini is not called after a failed init */
        perr[sizeof perr - 1] = 0;
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s (%s): init failed: %s", path, nm,
                    perr[0] ? perr : "(no message)");
        goto fail;
    }
    *out = pl;
    return CLSPEC_OK;
fail:
    cs_plugin_free(pl);
    return rc;
}
