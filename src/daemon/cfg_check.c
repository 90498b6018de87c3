/* cfg_check.c: cs_config_check_runtime, the configuration checked against
 * the machine: the model opens as a GGUF of a supported architecture, KV types
 * fit its KV cell row, the context holds `parallel` slots, the OpenCL platform
 * and devices exist (and are distinct), the split matches the model's layers,
 * and host:port can be bound. Messages: "file:line: [section] key: ...". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl/runtime.h"
#include "daemon/cfg.h"
#include "spec/loader.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "gguf/quant.h"
#include "text/tokenizer.h"

#define MIN_SLOT_CELLS 64 /* as in cfg.c */

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

static int check_model(const struct cs_config *c, char *err, size_t errlen)
{
    const char *p = c->model_path;
    struct stat st;
    if (stat(p, &st) != 0)
        return cs_config_err(c, "model", "path", err, errlen, CLSPEC_E_NOTFOUND,
                             "%s: %s; fix the path (a relative path is relative to the directory of %s)", p,
                             strerror(errno), c->path);
    if (!S_ISREG(st.st_mode))
        return cs_config_err(c, "model", "path", err, errlen, CLSPEC_E_IO,
                             "%s is not a regular file; point path at a .gguf model file", p);
    if (access(p, R_OK) != 0)
        return cs_config_err(c, "model", "path", err, errlen, CLSPEC_E_IO,
                             "%s is not readable by this user (uid %ld); fix its permissions", p, (long)getuid());
    struct cs_gguf *g = NULL;
    char e2[CLSPEC_ERRLEN];
    int rc = cs_gguf_open(p, &g, e2, sizeof e2);
    if (rc != CLSPEC_OK)
        return cs_config_err(c, "model", "path", err, errlen, rc, "not a usable GGUF file (%s); point path at a GGUF model",
                             e2);
    struct cs_hparams hp;
    rc = cs_hparams_read(g, &hp, e2, sizeof e2);
    cs_gguf_close(g);
    if (rc != CLSPEC_OK)
        return cs_config_err(c, "model", "path", err, errlen, rc, "%s; serve a model of a supported architecture", e2);
    /* what the server validates at start without a device: the tensors (mapped, not read) and the vocabulary */
    struct cs_model *m = NULL;
    if ((rc = cs_model_load(p, &m, e2, sizeof e2)) != CLSPEC_OK)
        return cs_config_err(c, "model", "path", err, errlen, rc, "the model's tensors: %s", e2);
    struct cs_tokenizer *tok = NULL;
    rc = cs_tokenizer_load(m->gguf, &tok, e2, sizeof e2);
    cs_tokenizer_free(tok);
    cs_model_free(m);
    if (rc != CLSPEC_OK)
        return cs_config_err(c, "model", "path", err, errlen, rc, "the vocabulary: %s", e2);

    /* quantized KV (q8_0, q4_0) fits any model: blocks run along the whole
     * cell row, padded with 0 to whole blocks (src/gguf/quant.h cs_kv_row_bytes) */

    uint32_t n_ctx = c->n_ctx ? c->n_ctx : hp.n_ctx_train;
    if (n_ctx && (uint64_t)n_ctx < (uint64_t)c->parallel * MIN_SLOT_CELLS) {
        bool set = cs_config_line(c, "kv", "n_ctx") || !cs_config_line(c, "slots", "parallel");
        return cs_config_err(c, set ? "kv" : "slots", set ? "n_ctx" : "parallel", err, errlen, CLSPEC_E_INVAL,
                             "a context of %u cells%s cannot hold parallel = %d slots of at least %d cells; set "
                             "[kv] n_ctx >= %d or lower [slots] parallel",
                             n_ctx, c->n_ctx ? "" : " (the model's training context)", c->parallel, MIN_SLOT_CELLS,
                             c->parallel * MIN_SLOT_CELLS);
    }
    if ((uint32_t)c->n_devices > hp.n_layer)
        return cs_config_err(c, "devices", "devices", err, errlen, CLSPEC_E_INVAL,
                             "%d devices for a model of %u layers; list at most %u devices", c->n_devices, hp.n_layer,
                             hp.n_layer);
    if (c->n_split && !strcmp(c->split_mode, "layers")) {
        uint64_t sum = 0;
        for (int i = 0; i < c->n_split; i++)
            sum += c->split[i];
        if (sum != hp.n_layer)
            return cs_config_err(c, "devices", "split", err, errlen, CLSPEC_E_INVAL,
                                 "layer counts add up to %llu but the model has %u layers; make them add up to %u "
                                 "(or set split_mode = memory for relative weights)",
                                 (unsigned long long)sum, hp.n_layer, hp.n_layer);
    }
    return CLSPEC_OK;
}

static int check_devices(const struct cs_config *c, char *err, size_t errlen)
{
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0;
    char e2[CLSPEC_ERRLEN];
    int rc = cs_cl_list(&list, &n, e2, sizeof e2);
    if (rc != CLSPEC_OK)
        return cs_config_err(c, "devices", "devices", err, errlen, rc, "%s", e2);
    if (n == 0) {
        free(list);
        return cs_config_err(c, "devices", "devices", err, errlen, CLSPEC_E_NOTFOUND,
                             "no OpenCL device found; install an OpenCL driver (ICD) and check with clinfo");
    }
    /* [devices] platform: index or name substring of a platform */
    long plat = -1;
    if (c->platform) {
        for (size_t i = 0; i < n && plat < 0; i++) {
            if (all_digits(c->platform) ? (unsigned long)strtoul(c->platform, NULL, 10) == list[i].platform_index
                                        : cs_contains_nocase(list[i].platform_name, c->platform))
                plat = (long)list[i].platform_index;
        }
        if (plat < 0) {
            char have[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < n; i++) {
                if (i && list[i].platform_index == list[i - 1].platform_index)
                    continue;
                int w = snprintf(have + used, sizeof have - used, "%s%u: %s", used ? ", " : "",
                                 list[i].platform_index, list[i].platform_name);
                if (w < 0 || (size_t)w >= sizeof have - used)
                    break;
                used += (size_t)w;
            }
            free(list);
            return cs_config_err(c, "devices", "platform", err, errlen, CLSPEC_E_NOTFOUND,
                                 "no OpenCL platform matches '%s' (have %s); use an index or a name substring, or "
                                 "leave it empty",
                                 c->platform, have);
        }
    }
    size_t chosen[8];
    int k = 0;
    const char *p = c->devices;
    while (p && *p && k < 8) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char sel[64];
        snprintf(sel, sizeof sel, "%.*s", (int)(len < 63 ? len : 63), p);
        size_t idx;
        rc = cs_cl_select(list, n, sel, &idx, e2, sizeof e2);
        if (rc != CLSPEC_OK) {
            free(list);
            return cs_config_err(c, "devices", "devices", err, errlen, rc,
                                 "entry '%s': %s; use an index or a name substring from that list", sel, e2);
        }
        if (plat >= 0 && (long)list[idx].platform_index != plat) {
            cs_config_err(c, "devices", "devices", err, errlen, CLSPEC_E_INVAL,
                          "entry '%s' is device %zu (%s) of platform %u, not of [devices] platform = %s; pick a "
                          "device of that platform or change platform",
                          sel, idx, list[idx].name, list[idx].platform_index, c->platform);
            free(list);
            return CLSPEC_E_INVAL;
        }
        for (int j = 0; j < k; j++)
            if (chosen[j] == idx) {
                cs_config_err(c, "devices", "devices", err, errlen, CLSPEC_E_INVAL,
                              "entry '%s' is device %zu (%s), already listed; list each device once", sel, idx,
                              list[idx].name);
                free(list);
                return CLSPEC_E_INVAL;
            }
        chosen[k++] = idx;
        p = comma ? comma + 1 : NULL;
    }
    free(list);
    return CLSPEC_OK;
}

static int check_port(const struct cs_config *c, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", c->port);
    const char *host = c->host;
    char bare[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof bare) { /* [::1] */
        memcpy(bare, host + 1, hl - 2);
        bare[hl - 2] = '\0';
        host = bare;
    }
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return cs_config_err(c, "server", "host", err, errlen, CLSPEC_E_NOTFOUND,
                             "cannot resolve '%s' (%s); use an IP address such as 127.0.0.1", c->host,
                             gai_strerror(g));
    int rc = CLSPEC_OK, e = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as the server will */
        int b = bind(fd, a->ai_addr, a->ai_addrlen);
        e = errno;
        close(fd);
        if (b == 0) {
            e = 0;
            break;
        }
    }
    freeaddrinfo(res);
    if (e == EADDRINUSE)
        rc = cs_config_err(c, "server", "port", err, errlen, CLSPEC_E_IO,
                           "%s:%d is already in use; stop the other server or choose another port", c->host, c->port);
    else if (e == EACCES)
        rc = cs_config_err(c, "server", "port", err, errlen, CLSPEC_E_IO,
                           "binding %s:%d is not permitted (%s); use a port above 1023 or give the service "
                           "CAP_NET_BIND_SERVICE",
                           c->host, c->port, strerror(e));
    else if (e)
        rc = cs_config_err(c, "server", "host", err, errlen, CLSPEC_E_IO,
                           "cannot bind %s:%d (%s); use an address of this machine", c->host, c->port, strerror(e));
    return rc;
}

/* [speculator]: the plugin file can be found and the drafter model, unless
 * the plugin said it does not use one, is a GGUF (the plugin checked its
 * keys when the file was read; loading and init happen at start-up, after
 * the engine). */
static int check_speculator(const struct cs_config *c, char *err, size_t errlen)
{
    if (cs_plugin_is_none(c->spec_type))
        return CLSPEC_OK;
    char path[4096], e2[CLSPEC_ERRLEN];
    int rc = cs_plugin_resolve(c->spec_type, c->spec_plugin_dir, path, sizeof path, e2, sizeof e2);
    if (rc != CLSPEC_OK)
        return cs_config_err(c, "speculator", cs_config_line(c, "speculator", "type") || !c->spec_plugin_dir
                                                  ? "type" : "plugin_dir",
                             err, errlen, rc, "%s; fix type (or plugin_dir)", e2);
    if (c->spec_model && !c->spec_model_ignored) {
        struct cs_gguf *g = NULL;
        if ((rc = cs_gguf_open(c->spec_model, &g, e2, sizeof e2)) != CLSPEC_OK)
            return cs_config_err(c, "speculator", "model", err, errlen, rc,
                                 "%s is not a usable GGUF file (%s); point model at the drafter's GGUF", c->spec_model,
                                 e2);
        cs_gguf_close(g);
    }
    return CLSPEC_OK;
}

int cs_config_check_runtime(const struct cs_config *c, char *err, size_t errlen)
{
    if (!c)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "cs_config_check_runtime: no configuration");
    int rc = check_model(c, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_devices(c, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_speculator(c, err, errlen);
    if (rc == CLSPEC_OK)
        rc = check_port(c, err, errlen);
    return rc;
}
