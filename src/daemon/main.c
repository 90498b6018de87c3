/* main.c: clspecd, the clspec inference server: reads the INI
 * configuration, starts the HTTP API (which answers /health with 503 while
 * the model loads), loads the engine and the scheduler on a loader thread,
 * then waits for signals: SIGHUP reopens the log, SIGTERM/SIGINT drain
 * (no new requests, running ones get drain_timeout_s) and exit 0. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/api.h"
#include "text/chat.h"
#include "base/common.h"
#include "base/strbuf.h"
#include "daemon/cfg.h"
#include "daemon/embed.h"
#include "daemon/http.h"
#include "daemon/log.h"
#include "daemon/sched.h"
#include "engine/engine.h"
#include "gguf/quant.h"
#include "spec/loader.h"
#include "spec/spec.h"

#ifndef CLSPEC_SYSCONF_DIR
#define CLSPEC_SYSCONF_DIR "/etc/clspec"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clspecd [-c FILE.ini] [--check] [--print-config]\n"
            "\n"
            "clspec's inference server: an OpenAI-compatible HTTP API (/v1/completions,\n"
            "/v1/chat/completions, /v1/models, /health, /metrics, /slots).\n"
            "\n"
            "  -c, --config FILE  configuration (default " CLSPEC_SYSCONF_DIR "/clspecd.ini)\n"
            "      --check        validate the configuration (values, model file, devices,\n"
            "                     port) and exit: 0 when it is good\n"
            "      --print-config print the effective configuration, defaults filled in, and exit\n"
            "  -h, --help         this text\n"
            "  -V, --version      the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reopens the log file.\n");
}

struct loader {
    const struct cs_config *cfg;
    pthread_t main_thread;
    int rc;
    char err[1024];
    clspec_engine *door;    /* the engine (owned): the scheduler and the speculative core use only it */
    struct cs_engine *e;    /* door's internals (cs_api_engine): the plugin loader, the load time */
    struct cs_sched *s;
    enum cs_chat_family chat;
    int n_ctx_slot;
    struct cs_plugin *pl;   /* [speculator] (NULL: type = none) */
    struct cs_spec *sp;
    struct cs_embedder *emb; /* [server] embeddings (NULL: off) */
    clspec_mmproj *mm;      /* [model] mmproj (NULL: images refused) */
};

/* [model] mmproj: the vision projector beside the engine, its kernels built
 * before "ready". */
static int load_mmproj(struct loader *L)
{
    const struct cs_config *cfg = L->cfg;
    if (!cfg->mmproj_path || !cfg->mmproj_path[0])
        return CLSPEC_OK;
    struct clspec_mmproj_params mp;
    clspec_mmproj_default_params(&mp, sizeof mp);
    mp.path = cfg->mmproj_path;
    mp.device = cfg->mmproj_device;
    char e2[CLSPEC_ERRLEN];
    const double t0 = cs_now();
    int rc = clspec_mmproj_open(L->door, &mp, &L->mm, e2, sizeof e2);
    if (rc != CLSPEC_OK)
        return cs_config_err(cfg, "model", "mmproj", L->err, sizeof L->err, rc, "%s", e2);
    struct clspec_mmproj_info mi = {.size = sizeof mi};
    clspec_mmproj_get_info(L->mm, &mi, NULL, 0);
    cs_log(CS_LOG_INFO, NULL, "vision projector: %s (%s), %d rows of %d per image, %dx%d input, on %s (%.2f s)",
           cfg->mmproj_path, mi.projector_type, mi.n_tokens, mi.n_embd, mi.image_size, mi.image_size,
           mi.device_name, cs_now() - t0);
    return CLSPEC_OK;
}

/* [speculator]: loads the plugin over the engine (the loader validates its
 * ABI and capabilities and runs its init) and creates the speculative core
 * over the engine's slots. type = none: nothing is loaded (L->sp NULL).
 * Loader errors are shown verbatim after "file:line: [speculator] type: ". */
static int load_speculator(struct loader *L)
{
    const struct cs_config *cfg = L->cfg;
    if (!cfg->spec_type || !strcmp(cfg->spec_type, "none")) {
        cs_log(CS_LOG_INFO, NULL, "speculation: off ([speculator] type = none)");
        return CLSPEC_OK;
    }
    char nmax[16], nmin[16], pmin[32];
    snprintf(nmax, sizeof nmax, "%d", cfg->spec_n_max);
    snprintf(nmin, sizeof nmin, "%d", cfg->spec_n_min);
    snprintf(pmin, sizeof pmin, "%g", cfg->spec_p_min);
    struct cs_plugin_kv kv[8 + CS_CONFIG_MAX_SPEC_OPTS];
    int n = 0;
    kv[n++] = (struct cs_plugin_kv){"n_max", nmax};
    kv[n++] = (struct cs_plugin_kv){"n_min", nmin};
    kv[n++] = (struct cs_plugin_kv){"p_min", pmin};
    if (cfg->spec_type_k != CS_CONFIG_KVTYPE_UNSET)
        kv[n++] = (struct cs_plugin_kv){"type_k", cs_type_name(cfg->spec_type_k)};
    if (cfg->spec_type_v != CS_CONFIG_KVTYPE_UNSET)
        kv[n++] = (struct cs_plugin_kv){"type_v", cs_type_name(cfg->spec_type_v)};
    if (cfg->spec_model)
        kv[n++] = (struct cs_plugin_kv){"model", cfg->spec_model};
    if (cfg->spec_device)
        kv[n++] = (struct cs_plugin_kv){"device", cfg->spec_device};
    for (int i = 0; i < cfg->spec_n_opts; i++)
        kv[n++] = (struct cs_plugin_kv){cfg->spec_opt_key[i], cfg->spec_opt_val[i]};
    struct cs_plugin_params pp = {.type = cfg->spec_type, .plugin_dir = cfg->spec_plugin_dir, .kv = kv, .n_kv = n,
                                  .engine = L->e, .n_slots = (uint32_t)cfg->parallel};
    char e2[sizeof L->err];
    int rc = cs_plugin_load(&pp, &L->pl, e2, sizeof e2);
    if (rc != CLSPEC_OK)
        return cs_config_err(cfg, "speculator", "type", L->err, sizeof L->err, rc, "%s", e2);
    struct cs_spec_params sp = cs_spec_defaults();
    sp.n_max = cfg->spec_n_max;
    sp.n_min = cfg->spec_n_min;
    sp.p_min = (float)cfg->spec_p_min;
    sp.ctl = cfg->spec_controller && !strcmp(cfg->spec_controller, "cost") ? CS_SPEC_CTL_COST : CS_SPEC_CTL_ACCEPT;
    sp.log = false; /* the scheduler logs each slot's state with its request id */
    rc = cs_spec_new(L->door, L->pl, &sp, cfg->parallel, &L->sp, e2, sizeof e2);
    if (rc != CLSPEC_OK) {
        cs_plugin_free(L->pl);
        L->pl = NULL;
        return cs_config_err(cfg, "speculator", "type", L->err, sizeof L->err, rc, "%s", e2);
    }
    cs_log(CS_LOG_INFO, NULL, "speculation: %s (%s), n_max %d, n_min %d, p_min %g, caps 0x%llx", L->pl->vt.name,
           L->pl->path, cfg->spec_n_max, cfg->spec_n_min, cfg->spec_p_min, (unsigned long long)L->pl->vt.caps);
    return CLSPEC_OK;
}

/* Every program built or loaded from the binary cache is logged: while
 * loading, as progress (the engine prepares them all before "ready"); after
 * "ready", as a warning, since a request then waited for a compiler
 * (tests/daemon/ready.sh checks there is none). */
static atomic_bool progs_ready;
static atomic_uint progs_built, progs_loaded, progs_after_ready;

static void log_program(void *ud, const struct cs_cl_dev *d, const char *name, const char *extra, bool from_cache,
                        double ms)
{
    (void)ud;
    atomic_fetch_add(from_cache ? &progs_loaded : &progs_built, 1);
    const char *how = from_cache ? "loaded from the binary cache" : "built";
    if (!atomic_load(&progs_ready)) {
        cs_log(CS_LOG_INFO, NULL, "kernels: cl/%s.cl %s in %.0f ms on %s%s%s", name, how, ms, d->info.name,
               *extra ? " with " : "", extra);
        return;
    }
    unsigned n = atomic_fetch_add(&progs_after_ready, 1) + 1;
    cs_log(CS_LOG_WARN, NULL, "kernels: cl/%s.cl %s after ready (%u so far) in %.0f ms on %s%s%s: a request waited "
           "for it", name, how, n, ms, d->info.name, *extra ? " with " : "", extra);
}

/* [model] chat_template_file: its text becomes the engine's chat template (in place of the GGUF's). */
static int load_template_file(clspec_engine *e, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cs_err(err, errlen, CLSPEC_E_IO, "[model] chat_template_file: %s: %s", path, strerror(errno));
    struct cs_strbuf b = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        cs_strbuf_put_n(&b, buf, n);
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? cs_err(err, errlen, CLSPEC_E_IO, "[model] chat_template_file: %s: read error", path)
             : b.oom ? cs_err(err, errlen, CLSPEC_E_NOMEM, "[model] chat_template_file: out of memory")
                     : clspec_set_chat_template(e, b.p ? b.p : "", b.len, err, errlen);
    if (rc == CLSPEC_OK)
        cs_log(CS_LOG_INFO, NULL, "chat template: from %s (%zu bytes)", path, b.len);
    cs_strbuf_free(&b);
    return rc;
}

static void *load_main(void *arg)
{
    struct loader *L = arg;
    const struct cs_config *cfg = L->cfg;
    struct cs_engine_params cp = cs_config_engine_params(cfg);
    struct clspec_engine_params ep;
    cs_api_engine_params(&cp, &ep);
    L->rc = clspec_engine_open(&ep, &L->door, L->err, sizeof L->err);
    L->e = cs_api_engine(L->door);
    if (L->rc == CLSPEC_OK && cfg->chat_template_file && cfg->chat_template_file[0])
        L->rc = load_template_file(L->door, cfg->chat_template_file, L->err, sizeof L->err);
    if (L->rc == CLSPEC_OK) {
        bool known = false;
        size_t tlen = 0;
        const char *named = cfg->chat_template, *bt = cs_chat_builtin_template(named);
        if (bt) { /* one of llama.cpp's names: our Jinja text of it replaces the model's template */
            L->rc = clspec_set_chat_template(L->door, bt, strlen(bt), L->err, sizeof L->err);
            named = "jinja";
        }
        const char *tmpl = clspec_chat_template(L->door, &tlen);
        if (L->rc == CLSPEC_OK)
            L->rc = cs_chat_select(tmpl, tlen, named, &L->chat, &known, L->err, sizeof L->err);
        if (L->rc == CLSPEC_OK)
            cs_log(CS_LOG_INFO, NULL, "chat template: %s%s", cs_chat_family_name(L->chat),
                   known ? "" : " (no known template in the model)");
    }
    if (L->rc == CLSPEC_OK)
        L->rc = load_mmproj(L);
    if (L->rc == CLSPEC_OK)
        L->rc = load_speculator(L);
    if (L->rc == CLSPEC_OK) {
        struct cs_sched_params sp = {
            .n_slots = cfg->parallel,
            .queue_max = cfg->queue_max,
            .truncate_prompt = cfg->truncate_prompt,
            .max_tokens_default = cfg->max_tokens,
            .max_tokens_limit = cfg->max_tokens_limit,
            .prefill_max = 0,
            .spec = L->sp,
            /* speculators that read the target's states of the prompt get it prefilled by the core */
            .spec_core_prefill = cs_plugin_needs_core_prefill(L->pl),
            .images = L->mm != NULL,
            .keep_cache = cfg->keep_cache,
            .ctx_shift = cfg->context_shift,
        };
        L->rc = cs_sched_new(L->door, &sp, &L->s, L->err, sizeof L->err);
        struct clspec_engine_info info = {.size = sizeof info};
        clspec_engine_get_info(L->door, &info, NULL, 0);
        L->n_ctx_slot = (int)(info.kv_partitioned ? info.n_ctx / (uint32_t)cfg->parallel : info.n_ctx);
    }
    if (L->rc == CLSPEC_OK && cfg->embeddings) { /* a second engine: one sequence of a slot's context */
        L->rc = cs_embedder_open(&ep, (uint32_t)L->n_ctx_slot, &L->emb, L->err, sizeof L->err);
        if (L->rc == CLSPEC_OK)
            cs_log(CS_LOG_INFO, NULL, "embeddings: on (%d dimensions, inputs up to %d tokens)",
                   cs_embedder_dim(L->emb), L->n_ctx_slot - 1);
    }
    pthread_kill(L->main_thread, SIGUSR1);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = CLSPEC_SYSCONF_DIR "/clspecd.ini";
    bool check = false, print = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            path = a + 9;
        } else if (strcmp(a, "--check") == 0) {
            check = true;
        } else if (strcmp(a, "--print-config") == 0) {
            print = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("clspecd %s\n", PACKAGE_VERSION);
            return 0;
        } else {
            fprintf(stderr, "clspecd: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    char err[1024];
    struct cs_config *cfg = NULL;
    if (cs_config_load(path, &cfg, err, sizeof err) != CLSPEC_OK) {
        fprintf(stderr, "clspecd: %s\n", err);
        return 1;
    }
    if (print) {
        cs_config_print(cfg, stdout);
        cs_config_free(cfg);
        return 0;
    }
    if (check) {
        if (cfg->warnings)
            fputs(cfg->warnings, stderr);
        int rc = cs_config_check_runtime(cfg, err, sizeof err);
        if (rc != CLSPEC_OK)
            fprintf(stderr, "clspecd: %s\n", err);
        else
            printf("%s: configuration OK\n", cfg->path);
        cs_config_free(cfg);
        return rc == CLSPEC_OK ? 0 : 1;
    }

    /* every thread started from here on inherits these blocked signals; main takes them with sigwait */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    enum cs_log_level lvl = CS_LOG_INFO;
    cs_log_level_parse(cfg->log_level, &lvl);
    if (cs_log_open(cfg->log_file, lvl, err, sizeof err) != CLSPEC_OK)
        fprintf(stderr, "clspecd: %s (logging to standard error)\n", err);
    cs_log(CS_LOG_INFO, NULL, "clspecd %s starting with %s", PACKAGE_VERSION, cfg->path);
    if (cfg->warnings) {
        char *w = strdup(cfg->warnings), *save = NULL;
        for (char *l = w ? strtok_r(w, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
            cs_log(CS_LOG_WARN, NULL, "%s", l);
        free(w);
    }
    if (cs_config_check_runtime(cfg, err, sizeof err) != CLSPEC_OK) {
        cs_log(CS_LOG_ERROR, NULL, "%s", err);
        fprintf(stderr, "clspecd: %s\n", err);
        cs_config_free(cfg);
        return 1;
    }

    struct cs_http_params hp = {
        .host = cfg->host,
        .port = cfg->port,
        .api_key = cfg->api_key,
        .max_body_bytes = cfg->max_body_bytes,
        .max_connections = cfg->max_connections,
        .max_connections_per_ip = cfg->max_connections_per_ip,
        .idle_timeout_s = cfg->idle_timeout_s,
        .threads = cfg->http_threads,
        .model_name = cfg->model_name,
        .model_aliases = cfg->model_aliases,
        .model_tags = cfg->model_tags,
        .defaults = {.sp = cfg->sampling, .max_tokens = cfg->max_tokens,
                     .thinking_off = cfg->reasoning && strcmp(cfg->reasoning, "off") == 0},
        .cors_origins = cfg->cors_origins,
        .remote_images = cfg->remote_images,
        .webui_off = !cfg->webui,
        .slots_off = !cfg->slots_endpoint,
        .model_path = cfg->model_path,
        .n_predict_cap = cfg->max_tokens_limit,
        .slot_save_path = cfg->slot_save_path,
    };
    struct cs_http *http = NULL;
    if (cs_http_start(&hp, &http, err, sizeof err) != CLSPEC_OK) {
        cs_log(CS_LOG_ERROR, NULL, "%s", err);
        fprintf(stderr, "clspecd: %s\n", err);
        cs_config_free(cfg);
        return 1;
    }
    cs_log(CS_LOG_INFO, NULL, "listening on http://%s%s%s:%d (model %s loading)", strchr(cfg->host, ':') ? "[" : "",
           cfg->host, strchr(cfg->host, ':') ? "]" : "", cs_http_port(http), cfg->model_name);

    cs_cl_set_build_hook(log_program, NULL);
    struct loader L = {.cfg = cfg, .main_thread = pthread_self()};
    pthread_t lt;
    if (pthread_create(&lt, NULL, load_main, &L) != 0) {
        cs_log(CS_LOG_ERROR, NULL, "cannot start the loader thread");
        cs_http_stop(http);
        cs_config_free(cfg);
        return 1;
    }

    int exit_code = 0;
    bool loaded = false;
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (cs_log_reopen(err, sizeof err) != CLSPEC_OK)
                cs_log(CS_LOG_ERROR, NULL, "SIGHUP: %s", err);
            else
                cs_log(CS_LOG_INFO, NULL, "SIGHUP: log reopened");
            continue;
        }
        if (sig == SIGUSR1) {
            if (loaded)
                continue;
            pthread_join(lt, NULL);
            loaded = true;
            if (L.rc != CLSPEC_OK) {
                cs_log(CS_LOG_ERROR, NULL, "loading failed: %s", L.err);
                fprintf(stderr, "clspecd: %s\n", L.err);
                exit_code = 1;
                break;
            }
            atomic_store(&progs_ready, true);
            cs_log(CS_LOG_INFO, NULL, "kernels: %u programs built, %u loaded from the binary cache",
                   atomic_load(&progs_built), atomic_load(&progs_loaded));
            cs_http_set_embedder(http, L.emb);
            cs_http_set_mmproj(http, L.mm);
            cs_http_set_ready(http, L.door, L.s, L.chat, L.n_ctx_slot);
            cs_log(CS_LOG_INFO, NULL, "ready: model loaded in %.2f s, %d slots of %d tokens, queue %d",
                   L.e->load_s, cfg->parallel, L.n_ctx_slot, cfg->queue_max);
            continue;
        }
        /* SIGTERM / SIGINT */
        if (!loaded) {
            cs_log(CS_LOG_INFO, NULL, "%s while loading: exiting", strsignal(sig));
            cs_http_set_draining(http);
            cs_http_stop(http);
            cs_log_close();
            _exit(0); /* the loader thread is inside the OpenCL driver: no clean-up */
        }
        cs_log(CS_LOG_INFO, NULL, "%s: draining (up to %.1f s)", strsignal(sig), cfg->drain_timeout_s);
        cs_http_set_draining(http);
        int n = cs_sched_drain(L.s, cfg->drain_timeout_s);
        cs_log(CS_LOG_INFO, NULL, "drained (%d request%s cancelled)", n, n == 1 ? "" : "s");
        break;
    }
    cs_http_stop(http); /* waits for the connection threads */
    cs_embedder_free(L.emb);
    cs_sched_free(L.s);
    cs_spec_free(L.sp);
    cs_plugin_free(L.pl);
    clspec_mmproj_free(L.mm);
    clspec_engine_free(L.door);
    cs_log(CS_LOG_INFO, NULL, "exit %d", exit_code);
    cs_log_close();
    cs_config_free(cfg);
    return exit_code;
}
