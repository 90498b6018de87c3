/* loader.c: see loader.h. The host table's 1.0 entries are implemented
 * here over the engine, the 1.1 draft-model entries and the 1.2
 * target-tensor entries in host_model.c, the 1.2 taps in taps.c;
 * ctx_kv_inject is still NULL (see speculator.h). */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/common.h"
#include "engine/engine.h"
#include "spec/host_compute.h"
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

bool cs_plugin_is_none(const char *type)
{
    return !type || !strcmp(type, "none");
}

/* The places a plugin NAME is looked for, in order: a directory and
 * whether it is the build tree (NAME/.libs/NAME.so) or flat (NAME.so). */
struct search_dir {
    const char *dir;
    bool tree;
};

static int search_dirs(const char *plugin_dir, struct search_dir out[3])
{
    int n = 0;
    const char *env = getenv("CLSPEC_PLUGIN_DIR");
    if (plugin_dir && *plugin_dir)
        out[n++] = (struct search_dir){plugin_dir, false};
    else if (env && *env)
        out[n++] = (struct search_dir){env, false};
    out[n++] = (struct search_dir){CLSPEC_PLUGIN_DIR, false};
#ifdef CLSPEC_BUILD_PLUGIN_DIR
    if (!(plugin_dir && *plugin_dir)) /* uninstalled runs and tests */
        out[n++] = (struct search_dir){CLSPEC_BUILD_PLUGIN_DIR, true};
#endif
    return n;
}

static void candidate(const struct search_dir *d, const char *name, char *out, size_t n)
{
    if (d->tree)
        snprintf(out, n, "%s/%s/.libs/%s.so", d->dir, name, name);
    else
        snprintf(out, n, "%s/%s.so", d->dir, name);
}

static bool valid_name(const char *s, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* The plugin names present in the search directories (for messages). */
struct found {
    char name[64][64];
    int n;
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void scan_dir(const struct search_dir *d, struct found *f)
{
    DIR *dir = opendir(d->dir);
    if (!dir)
        return;
    for (struct dirent *de; (de = readdir(dir)) && f->n < (int)CS_ARRAY_LEN(f->name);) {
        size_t len = strlen(de->d_name);
        if (!d->tree && (len < 4 || strcmp(de->d_name + len - 3, ".so")))
            continue;
        if (!d->tree)
            len -= 3;
        if (!valid_name(de->d_name, len) || len >= sizeof f->name[0])
            continue;
        char *nm = f->name[f->n], path[1024];
        memcpy(nm, de->d_name, len);
        nm[len] = 0;
        candidate(d, nm, path, sizeof path);
        bool dup = !strcmp(nm, "none");
        for (int i = 0; i < f->n && !dup; i++)
            dup = !strcmp(f->name[i], nm);
        if (!dup && is_file(path))
            f->n++;
    }
    closedir(dir);
}

/* "unknown speculator 'x' (did you mean y?): ..." naming every place looked
 * at and every plugin present. */
static int not_found(const char *type, const struct search_dir *dirs, int n, char *err, size_t errlen)
{
    char cand[1024], looked[2048] = "", names[1024] = "";
    struct found *f = calloc(1, sizeof *f);
    if (!f)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "speculator '%s': out of memory", type);
    const char *best = NULL;
    unsigned best_d = 99;
    for (int i = 0; i < n; i++) {
        candidate(&dirs[i], type, cand, sizeof cand);
        size_t l = strlen(looked);
        snprintf(looked + l, sizeof looked - l, "%s%s", i ? ", " : "", cand);
        scan_dir(&dirs[i], f);
    }
    qsort(f->name, (size_t)f->n, sizeof f->name[0], cmp_name);
    for (int i = 0; i < f->n; i++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "", f->name[i]);
        unsigned d = cs_edit_distance(type, f->name[i]);
        if (cs_close_enough(type, f->name[i], d) && d < best_d) {
            best_d = d;
            best = f->name[i];
        }
    }
    int rc = cs_err(err, errlen, CLSPEC_E_NOTFOUND,
                    "unknown speculator '%s'%s%s%s: plugin not found (looked at %s); %s%s; use one of those, "
                    "none, the path of a plugin .so (with a '/'), or set plugin_dir",
                    type, best ? " (did you mean " : "", best ? best : "", best ? "?)" : "", looked,
                    names[0] ? "plugins there: " : "no plugins there", names);
    free(f);
    return rc;
}

int cs_plugin_resolve(const char *type, const char *plugin_dir, char *path, size_t pathlen, char *err,
                      size_t errlen)
{
    if (!type || !*type)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "speculator: empty type (want the name of a plugin in the plugin directory, or a path to a "
                      ".so)");
    if (is_path(type)) {
        if (!is_file(type))
            return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "speculator plugin %s: no such file", type);
        snprintf(path, pathlen, "%s", type);
        return CLSPEC_OK;
    }
    if (!valid_name(type, strlen(type)))
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "speculator type '%s': not a plugin name ([a-z0-9_-]) nor a path (give ./%s for a file "
                      "here)",
                      type, type);
    struct search_dir dirs[3];
    int n = search_dirs(plugin_dir, dirs);
    for (int i = 0; i < n; i++) {
        char cand[1024];
        candidate(&dirs[i], type, cand, sizeof cand);
        if (is_file(cand)) {
            snprintf(path, pathlen, "%s", cand);
            return CLSPEC_OK;
        }
    }
    return not_found(type, dirs, n, err, errlen);
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
    cs_host_model_entries(h); /* 1.1: draft models; 1.2: target_embed / target_head, ctx_hidden */
    cs_host_taps_entries(h);  /* 1.2: target taps */
    cs_host_compute_entries(h); /* 1.4: device compute service */
    /* ctx_kv_inject stays NULL (not provided yet); model_key_ints / ctx_inject_taps (1.3) stay NULL:
     * drafters that need them run their own forward on the compute service */
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
        {CLSPEC_SPEC_CAP_EMBD_ROWS, "prompts with image rows"}, /* an offer: every host of 1.5 takes it */
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

bool cs_plugin_needs_core_prefill(const struct cs_plugin *pl)
{
    return pl && (pl->vt.caps & (CLSPEC_SPEC_CAP_TARGET_TAPS | CLSPEC_SPEC_CAP_KV_INJECT)) != 0;
}

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

/* dlopens path into pl and takes its vtable: the entry symbol, ABI major,
 * vtable size and required entries, each refusal its own message. */
static int plugin_open(struct cs_plugin *pl, const char *path, char *err, size_t errlen)
{
    pl->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!pl->dl) {
        const char *de = dlerror();
        return cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s: cannot load: %s", path, de ? de : "?");
    }
    dlerror();
    clspec_speculator_entry_fn entry;
    void *sym = dlsym(pl->dl, CLSPEC_SPECULATOR_ENTRY);
    memcpy(&entry, &sym, sizeof entry); /* object -> function pointer without a pedantic warning */
    if (!sym)
        return cs_err(err, errlen, CLSPEC_E_PLUGIN,
                      "speculator plugin %s: missing entry symbol %s (not a clspec speculator, or built without "
                      "exporting it)",
                      path, CLSPEC_SPECULATOR_ENTRY);
    const struct clspec_speculator *vt = entry();
    if (!vt)
        return cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s: %s() returned NULL", path,
                      CLSPEC_SPECULATOR_ENTRY);
    if (vt->abi_major != CLSPEC_SPEC_ABI_MAJOR)
        return cs_err(err, errlen, CLSPEC_E_PLUGIN,
                      "speculator plugin %s: ABI major version %u, this clspec speaks %u (rebuild the plugin against "
                      "this clspec's speculator.h)",
                      path, vt->abi_major, CLSPEC_SPEC_ABI_MAJOR);
    if (vt->size < CLSPEC_SPEC_V1_MIN_SIZE)
        return cs_err(err, errlen, CLSPEC_E_PLUGIN,
                      "speculator plugin %s: vtable too small (%u bytes, ABI %u needs at least %zu)", path, vt->size,
                      CLSPEC_SPEC_ABI_MAJOR, (size_t)CLSPEC_SPEC_V1_MIN_SIZE);
    memset(&pl->vt, 0, sizeof pl->vt);
    memcpy(&pl->vt, vt, vt->size < sizeof pl->vt ? vt->size : sizeof pl->vt);
    if (!pl->vt.init || !pl->vt.draft)
        return cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s (%s): required entry %s is NULL", path,
                      pl->vt.name && *pl->vt.name ? pl->vt.name : path, !pl->vt.init ? "init" : "draft");
    return CLSPEC_OK;
}

/* A plugin struct for p: the resolved path and copies of the keys. */
static int plugin_new(const struct cs_plugin_params *p, struct cs_plugin **out, char *err, size_t errlen)
{
    *out = NULL;
    char path[1024];
    int rc = cs_plugin_resolve(p->type, p->plugin_dir, path, sizeof path, err, errlen);
    if (rc < 0)
        return rc; /* err: "no such file" / "unknown speculator ... (looked at ...)" */
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
    *out = pl;
    return CLSPEC_OK;
}

int cs_plugin_load(const struct cs_plugin_params *p, struct cs_plugin **out, char *err, size_t errlen)
{
    struct cs_plugin *pl = NULL;
    int rc = plugin_new(p, &pl, err, errlen);
    *out = NULL;
    if (rc < 0)
        return rc == CLSPEC_E_NOTFOUND ? CLSPEC_E_PLUGIN : rc;
    if ((rc = plugin_open(pl, pl->path, err, errlen)) < 0)
        goto fail;
    const char *nm = pl->vt.name && *pl->vt.name ? pl->vt.name : pl->path;
    host_table(pl);
    if ((rc = check_caps(pl, err, errlen)) < 0)
        goto fail;
    char perr[512] = "";
    int prc = pl->vt.init(&pl->host, &pl->state, perr, sizeof perr);
    if (prc < 0) {
        pl->state = NULL; /* fini is not called after a failed init */
        perr[sizeof perr - 1] = 0;
        rc = cs_err(err, errlen, CLSPEC_E_PLUGIN, "speculator plugin %s (%s): init failed: %s", pl->path, nm,
                    perr[0] ? perr : "(no message)");
        goto fail;
    }
    *out = pl;
    return CLSPEC_OK;
fail:
    cs_plugin_free(pl);
    return rc;
}

/* ---- config_check (1.4): the plugin checks its own keys, before init ---- */

struct view_impl {
    struct clspec_config_item *items;
    struct cs_plugin_check *chk;
};

static const char *view_get(const struct clspec_config_view *v, const char *key)
{
    for (int32_t i = 0; key && i < v->n; i++)
        if (!strcmp(v->items[i].key, key))
            return v->items[i].value;
    return NULL;
}

static void view_ignored(const struct clspec_config_view *v, const char *key, const char *why)
{
    const struct view_impl *im = v->impl;
    if (key && im->chk->ignored)
        im->chk->ignored(im->chk->user, key, why ? why : "not used by this speculator");
}

int cs_plugin_check_config(const struct cs_plugin_params *p, struct cs_plugin_check *chk, char *err, size_t errlen)
{
    chk->key[0] = 0;
    struct cs_plugin *pl = NULL;
    int rc = plugin_new(p, &pl, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = plugin_open(pl, pl->path, err, errlen)) < 0 || !pl->vt.config_check) {
        cs_plugin_free(pl); /* an older plugin (no config_check) is not asked */
        return rc;
    }
    struct clspec_config_item *items = calloc((size_t)(pl->n_kv ? pl->n_kv : 1), sizeof *items);
    if (!items) {
        cs_plugin_free(pl);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "speculator: out of memory");
    }
    for (int i = 0; i < pl->n_kv; i++)
        items[i] = (struct clspec_config_item){pl->kv[i].key, pl->kv[i].value, chk->kv_line ? chk->kv_line[i] : 0};
    struct view_impl im = {items, chk};
    struct clspec_config_view v = {.size = sizeof v, .impl = &im, .n = pl->n_kv, .items = items,
                                   .get = view_get, .ignored = view_ignored};
    const char *key = NULL;
    char perr[512] = "";
    if (pl->vt.config_check(&v, &key, perr, sizeof perr) < 0) {
        perr[sizeof perr - 1] = 0;
        snprintf(chk->key, sizeof chk->key, "%s", key ? key : "");
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "%s", perr[0] ? perr : "refused by the plugin (no message)");
    }
    free(items);
    cs_plugin_free(pl);
    return rc;
}
