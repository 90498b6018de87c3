/* cfg_schema.c: THE schema of clspecd's configuration (sections, keys,
 * types, defaults, ranges, help: defined here and nowhere else), schema
 * queries, printing the effective configuration, and engine parameters. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon/cfg_schema.h"
#include "gguf/quant.h"

#define OFF(f) offsetof(struct cs_config, f)
#define KVTYPES "f32|f16|bf16|q8_0|q4_0"
#define TEMPLATES "chatml|llama2|llama3|mistral|zephyr|gemma|plain|jinja" \
    "|llama3.1|mistral-v1|mistral-v3|mistral-tekken|mistral-v3-tekken" \
    "|command-r|vicuna|vicuna-orca|phi3|phi4|falcon3|deepseek|openchat|monarch"

const char *const cs_cfg_sections[] = {"server", "model", "devices", "kv", "slots", "sampling", "speculator"};

/* THE schema. Order = order of cs_cfg_sections above = order of printing. */
const struct cs_cfg_key cs_cfg_keys[] = {
    {"server", "host", CS_CFG_STR, OFF(host), "127.0.0.1", 0, 0, NULL,
     "address to listen on (IPv4, IPv6 or host name; 0.0.0.0 or :: = every interface)"},
    {"server", "port", CS_CFG_INT, OFF(port), "8080", 0, 65535, NULL, "TCP port (0 = any free port)"},
    {"server", "api_key", CS_CFG_STR, OFF(api_key), "", 0, 0, NULL,
     "when set, requests need 'Authorization: Bearer <api_key>' (empty = no authentication)"},
    {"server", "max_body_bytes", CS_CFG_SIZE, OFF(max_body_bytes), "1M", 1024, 1073741824.0, NULL,
     "largest request body accepted (bytes; suffixes K, M, G = 1024, 1024^2, 1024^3)"},
    {"server", "max_tokens_limit", CS_CFG_INT, OFF(max_tokens_limit), "0", 0, 16777216, NULL,
     "largest max_tokens a request may ask for (0 = what fits: a slot's context less the prompt)"},
    {"server", "queue_max", CS_CFG_INT, OFF(queue_max), "64", 0, 1000000, NULL,
     "requests that may wait for a free slot; more are refused with HTTP 429"},
    {"server", "drain_timeout_s", CS_CFG_DBL, OFF(drain_timeout_s), "30", 0, 86400, NULL,
     "seconds running requests get to finish on SIGTERM before they are cancelled"},
    {"server", "log_level", CS_CFG_ENUM, OFF(log_level), "info", 0, 0, "error|warn|info|debug",
     "least severe log message written"},
    {"server", "log_file", CS_CFG_PATH, OFF(log_file), "", 0, 0, NULL,
     "log file, reopened on SIGHUP (empty = standard error)"},
    {"server", "http_threads", CS_CFG_INT, OFF(http_threads), "0", 0, 64, NULL,
     "HTTP worker threads, each an epoll loop over its share of the connections (0 = 4)"},
    {"server", "max_connections", CS_CFG_INT, OFF(max_connections), "8192", 0, 1000000, NULL,
     "open connections past this get 503 on their first request, then are closed (0 = no cap)"},
    {"server", "max_connections_per_ip", CS_CFG_INT, OFF(max_connections_per_ip), "0", 0, 1000000, NULL,
     "open connections from one client address past this get 429, then are closed (0 = no cap)"},
    {"server", "idle_timeout_s", CS_CFG_INT, OFF(idle_timeout_s), "60", 0, 86400, NULL,
     "seconds a connection may stay silent without a request in flight before it is closed (0 = never)"},
    {"server", "cors_origins", CS_CFG_STR, OFF(cors_origins), "", 0, 0, NULL,
     "origins whose browser pages may call the API (CORS): * = any, or origins comma separated "
     "(empty = no CORS headers)"},
    {"server", "webui", CS_CFG_BOOL, OFF(webui), "true", 0, 0, NULL, "serve the chat page at /"},
    {"server", "slots", CS_CFG_BOOL, OFF(slots_endpoint), "true", 0, 0, NULL,
     "answer GET /slots (false: 501, as llama-server without --slots)"},
    {"server", "embeddings", CS_CFG_BOOL, OFF(embeddings), "false", 0, 0, NULL,
     "answer /embeddings and /v1/embeddings (a second engine over the model: its weights twice on the device)"},
    {"server", "context_shift", CS_CFG_BOOL, OFF(context_shift), "false", 0, 0, NULL,
     "a generation that fills its slot's context drops half of what follows the BOS (n_keep, n_discard) and "
     "goes on, as llama-server's --context-shift (false: it ends with \"length\"; refused for hybrid models)"},
    {"server", "slot_save_path", CS_CFG_PATH, OFF(slot_save_path), "", 0, 0, NULL,
     "directory of POST /slots/{id}?action=save|restore files (empty = the slot actions answer 501)"},

    {"model", "path", CS_CFG_PATH, OFF(model_path), "", 0, 0, NULL, "the GGUF model file to serve (required)"},
    {"model", "name", CS_CFG_STR, OFF(model_name), "", 0, 0, NULL,
     "model id in /v1/models and responses (empty = file name without .gguf)"},
    {"model", "aliases", CS_CFG_STR, OFF(model_aliases), "", 0, 0, NULL,
     "other names of the model, comma-separated, listed with the id in /models \"aliases\" as llama-server's --alias "
     "(requests may name any model: clspecd serves one)"},
    {"model", "tags", CS_CFG_STR, OFF(model_tags), "", 0, 0, NULL,
     "labels of the model, comma-separated, listed in /models \"tags\" as llama-server's --tags (empty = none)"},
    {"model", "chat_template", CS_CFG_ENUM, OFF(chat_template), "", 0, 0, TEMPLATES,
     "chat template family (empty = the template stored in the GGUF)"},
    {"model", "chat_template_file", CS_CFG_PATH, OFF(chat_template_file), "", 0, 0, NULL,
     "a chat template file (Jinja) used instead of the GGUF's, as llama-server's --chat-template-file (empty = none)"},
    {"model", "reasoning", CS_CFG_ENUM, OFF(reasoning), "auto", 0, 0, "auto|on|off",
     "thinking in chats, as llama-server's --reasoning: off = templates get enable_thinking false unless a request's "
     "chat_template_kwargs say (auto, on: true)"},
    {"model", "mmproj", CS_CFG_PATH, OFF(mmproj_path), "", 0, 0, NULL,
     "vision projector GGUF (mmproj) for image input (empty = images refused)"},
    {"model", "mmproj_device", CS_CFG_STR, OFF(mmproj_device), "", 0, 0, NULL,
     "the projector's OpenCL device: index or name substring (empty = the first device)"},
    {"model", "remote_images", CS_CFG_BOOL, OFF(remote_images), "false", 0, 0, NULL,
     "fetch image_url http(s) URLs (10 s, 20 MiB at most; false: such URLs are refused with 400)"},

    {"devices", "platform", CS_CFG_STR, OFF(platform), "", 0, 0, NULL,
     "OpenCL platform: index or name substring (empty = any)"},
    {"devices", "devices", CS_CFG_DEVS, OFF(devices), "0", 0, 0, NULL,
     "OpenCL devices, comma separated: indices or name substrings (see `clspec devices`); "
     "layers are split across them in this order"},
    {"devices", "split_mode", CS_CFG_ENUM, OFF(split_mode), "layers", 0, 0, "layers|memory",
     "meaning of split: layers = layer count per device, memory = relative weights"},
    {"devices", "split", CS_CFG_SPLIT, OFF(split), "", 1, 1000000, NULL,
     "per device, in the order of devices: layer counts or weights (empty = even split)"},

    {"kv", "n_ctx", CS_CFG_U32, OFF(n_ctx), "4096", 0, 16777216, NULL,
     "KV cache cells for all slots together (0 = the model's training context)"},
    {"kv", "type_k", CS_CFG_KVTYPE, OFF(type_k), "f16", 0, 0, KVTYPES, "type of cached keys"},
    {"kv", "type_v", CS_CFG_KVTYPE, OFF(type_v), "f16", 0, 0, KVTYPES, "type of cached values"},
    {"kv", "unified", CS_CFG_BOOL, OFF(kv_unified), "true", 0, 0, NULL,
     "true: slots share all cells; false: each slot gets n_ctx / parallel cells of its own"},
    {"kv", "n_batch", CS_CFG_U32, OFF(n_batch), "512", 1, 65536, NULL, "most tokens decoded in one step (all slots)"},
    {"kv", "n_ubatch", CS_CFG_U32, OFF(n_ubatch), "512", 1, 65536, NULL,
     "tokens per device pass (at most n_batch; not set: min(512, n_batch))"},

    {"slots", "parallel", CS_CFG_INT, OFF(parallel), "4", 1, 64, NULL, "requests decoded at the same time"},
    {"slots", "truncate_prompt", CS_CFG_BOOL, OFF(truncate_prompt), "false", 0, 0, NULL,
     "a prompt longer than a slot's context keeps its end instead of being refused"},
    {"slots", "keep_cache", CS_CFG_BOOL, OFF(keep_cache), "false", 0, 0, NULL,
     "an idle slot keeps its cells (prompt and output) for the next request on it, as llama-server's slots; "
     "given up when a request needs the cells (false: cells are freed with their request)"},

    {"sampling", "temperature", CS_CFG_FLT, OFF(sampling.temp), "0.8", 0, 100, NULL,
     "default temperature (0 = greedy)"},
    {"sampling", "top_k", CS_CFG_I32, OFF(sampling.top_k), "40", 0, 1000000, NULL, "default top-k (0 = off)"},
    {"sampling", "top_p", CS_CFG_FLT, OFF(sampling.top_p), "0.95", 0, 1, NULL, "default top-p (1 = off)"},
    {"sampling", "min_p", CS_CFG_FLT, OFF(sampling.min_p), "0.05", 0, 1, NULL, "default min-p (0 = off)"},
    {"sampling", "repeat_penalty", CS_CFG_FLT, OFF(sampling.repeat_penalty), "1", 0.01, 10, NULL,
     "default repetition penalty (1 = off)"},
    {"sampling", "frequency_penalty", CS_CFG_FLT, OFF(sampling.freq_penalty), "0", -2, 2, NULL,
     "default frequency penalty (0 = off)"},
    {"sampling", "presence_penalty", CS_CFG_FLT, OFF(sampling.presence_penalty), "0", -2, 2, NULL,
     "default presence penalty (0 = off)"},
    {"sampling", "penalty_last_n", CS_CFG_I32, OFF(sampling.penalty_last_n), "64", 0, 1048576, NULL,
     "recent tokens the penalties look at (0 = off)"},
    {"sampling", "seed", CS_CFG_U64, OFF(sampling.seed), "0", 0, 0, NULL,
     "RNG seed of requests that give none; 0 = a fresh random seed per request (reported in the response)"},
    {"sampling", "max_tokens", CS_CFG_INT, OFF(max_tokens), "256", 0, 16777216, NULL,
     "max_tokens of requests that give none (0 = until end of text or a full context)"},

    {"speculator", "type", CS_CFG_STR, OFF(spec_type), "none", 0, 0, NULL,
     "speculative decoding: none, a plugin's name (NAME.so in plugin_dir), or the path of a plugin .so"},
    {"speculator", "n_max", CS_CFG_INT, OFF(spec_n_max), "16", 1, 64, NULL, "most tokens drafted per step"},
    {"speculator", "n_min", CS_CFG_INT, OFF(spec_n_min), "0", 0, 64, NULL,
     "fewest drafted tokens worth verifying (at most n_max)"},
    {"speculator", "p_min", CS_CFG_DBL, OFF(spec_p_min), "0", 0, 1, NULL,
     "a draft with probabilities is cut before its first token below this probability (0 = never)"},
    {"speculator", "device", CS_CFG_STR, OFF(spec_device), "", 0, 0, NULL,
     "device of the drafter: index or name substring (empty = the device of the target's last layer)"},
    {"speculator", "model", CS_CFG_PATH, OFF(spec_model), "", 0, 0, NULL, "drafter GGUF (for speculators that draft with a model)"},
    {"speculator", "type_k", CS_CFG_KVTYPE, OFF(spec_type_k), "", 0, 0, KVTYPES,
     "type of the drafter's cached keys (empty = the plugin's default)"},
    {"speculator", "type_v", CS_CFG_KVTYPE, OFF(spec_type_v), "", 0, 0, KVTYPES,
     "type of the drafter's cached values (empty = the plugin's default)"},
    {"speculator", "plugin_dir", CS_CFG_PATH, OFF(spec_plugin_dir), "", 0, 0, NULL,
     "directory of the built-in plugins (empty = $CLSPEC_PLUGIN_DIR, the install directory, the build tree)"},
    {"speculator", "controller", CS_CFG_ENUM, OFF(spec_controller), "cost", 0, 0, "acceptance|cost",
     "draft length from acceptance alone, or from measured cost and acceptance (plain decoding when none pays)"},
};

const size_t cs_cfg_n_keys = CS_ARRAY_LEN(cs_cfg_keys);
const size_t cs_cfg_n_sections = CS_ARRAY_LEN(cs_cfg_sections);
_Static_assert(CS_ARRAY_LEN(cs_cfg_keys) <= CS_CONFIG_MAX_KEYS, "raise CS_CONFIG_MAX_KEYS");

static const char *type_word(enum cs_cfg_type t)
{
    switch (t) {
    case CS_CFG_STR: return "string";
    case CS_CFG_PATH: return "path";
    case CS_CFG_ENUM: case CS_CFG_KVTYPE: return "enum";
    case CS_CFG_INT: case CS_CFG_I32: case CS_CFG_U32: case CS_CFG_U64: return "int";
    case CS_CFG_DBL: case CS_CFG_FLT: return "float";
    case CS_CFG_BOOL: return "bool";
    case CS_CFG_SIZE: return "size";
    case CS_CFG_DEVS: case CS_CFG_SPLIT: return "list";
    }
    return "?";
}

int cs_cfg_key_index(const char *sec, const char *name)
{
    for (size_t i = 0; i < cs_cfg_n_keys; i++)
        if (!strcmp(cs_cfg_keys[i].sec, sec) && !strcmp(cs_cfg_keys[i].name, name))
            return (int)i;
    return -1;
}

bool cs_cfg_section_known(const char *sec)
{
    for (size_t i = 0; i < cs_cfg_n_sections; i++)
        if (!strcmp(cs_cfg_sections[i], sec))
            return true;
    return false;
}

size_t cs_config_n_keys(void)
{
    return cs_cfg_n_keys;
}

int cs_config_key(size_t i, struct cs_config_key_info *out)
{
    if (i >= cs_cfg_n_keys || !out)
        return CLSPEC_E_RANGE;
    static char ranges[CS_CONFIG_MAX_KEYS][64];
    const struct cs_cfg_key *k = &cs_cfg_keys[i];
    out->section = k->sec;
    out->name = k->name;
    out->type = type_word(k->t);
    out->def = k->def;
    out->help = k->help;
    out->allowed = k->allowed;
    if (!k->allowed) {
        out->allowed = "";
        if (k->t == CS_CFG_BOOL)
            out->allowed = "true|false|yes|no|on|off|1|0";
        else if (k->hi > k->lo) {
            snprintf(ranges[i], sizeof ranges[i], "%.17g..%.17g", k->lo, k->hi);
            out->allowed = ranges[i];
        }
    }
    return CLSPEC_OK;
}

/* Shortest %.Ng that reads back to the same double (or float when is_float). */
void cs_cfg_fmt_num(char *buf, size_t n, double v, bool is_float)
{
    if (v == floor(v) && fabs(v) < 1e15) { /* whole numbers as such: 30, not 3e+01 */
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            return;
    }
}

/* One of "a|b|c" (case-insensitive): the canonical spelling, or NULL. */
const char *cs_cfg_pick(const char *allowed, const char *s, char *buf, size_t n)
{
    const char *p = allowed;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == strlen(s) && !strncasecmp(p, s, len) && len < n) {
            memcpy(buf, p, len);
            buf[len] = '\0';
            return buf;
        }
        p += len + (bar ? 1 : 0);
    }
    return NULL;
}

int cs_config_line(const struct cs_config *c, const char *section, const char *key)
{
    int i = cs_cfg_key_index(section, key);
    return c && i >= 0 ? c->key_line[i] : 0;
}

int cs_config_err(const struct cs_config *c, const char *section, const char *key, char *err, size_t errlen,
                  int status, const char *fmt, ...)
{
    if (!err || !errlen)
        return status;
    int n = snprintf(err, errlen, "%s:%d: [%s] %s: ", c && c->path ? c->path : "(config)",
                     cs_config_line(c, section, key), section, key);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* ---- printing ---- */

static bool value_empty(const struct cs_config *c, const struct cs_cfg_key *k)
{
    if (k->t == CS_CFG_SPLIT)
        return c->n_split == 0;
    if (k->t == CS_CFG_KVTYPE)
        return *(const uint32_t *)((const char *)c + k->off) == CS_CONFIG_KVTYPE_UNSET;
    if (k->t == CS_CFG_STR || k->t == CS_CFG_PATH || k->t == CS_CFG_ENUM || k->t == CS_CFG_DEVS) {
        const char *s = *(char *const *)((const char *)c + k->off);
        return !s || !*s;
    }
    return false;
}

static void print_value(const struct cs_config *c, const struct cs_cfg_key *k, FILE *f, unsigned flags)
{
    const void *p = (const char *)c + k->off;
    char buf[64];
    switch (k->t) {
    case CS_CFG_STR:
    case CS_CFG_PATH:
    case CS_CFG_ENUM:
    case CS_CFG_DEVS: {
        const char *s = *(char *const *)p;
        if (!s)
            s = "";
        if ((flags & CS_CONFIG_PRINT_REDACT) && !strcmp(k->name, "api_key") && *s)
            s = "<redacted>";
        size_t n = strlen(s);
        bool quote = n && (s[0] == '"' || s[n - 1] == '"');
        fprintf(f, quote ? "\"%s\"" : "%s", s);
        return;
    }
    case CS_CFG_INT: fprintf(f, "%d", *(const int *)p); return;
    case CS_CFG_I32: fprintf(f, "%d", (int)*(const int32_t *)p); return;
    case CS_CFG_U32: fprintf(f, "%u", (unsigned)*(const uint32_t *)p); return;
    case CS_CFG_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); return;
    case CS_CFG_DBL: cs_cfg_fmt_num(buf, sizeof buf, *(const double *)p, false); fputs(buf, f); return;
    case CS_CFG_FLT: cs_cfg_fmt_num(buf, sizeof buf, *(const float *)p, true); fputs(buf, f); return;
    case CS_CFG_BOOL: fputs(*(const bool *)p ? "true" : "false", f); return;
    case CS_CFG_SIZE: {
        size_t v = *(const size_t *)p;
        if (v && v % (1u << 30) == 0)
            fprintf(f, "%zuG", v >> 30);
        else if (v && v % (1u << 20) == 0)
            fprintf(f, "%zuM", v >> 20);
        else if (v && v % (1u << 10) == 0)
            fprintf(f, "%zuK", v >> 10);
        else
            fprintf(f, "%zu", v);
        return;
    }
    case CS_CFG_KVTYPE: {
        if (*(const uint32_t *)p == CS_CONFIG_KVTYPE_UNSET)
            return;
        const char *name = cs_type_name(*(const uint32_t *)p);
        fputs(cs_cfg_pick(k->allowed, name, buf, sizeof buf) ? buf : name, f);
        return;
    }
    case CS_CFG_SPLIT:
        for (int i = 0; i < c->n_split; i++)
            fprintf(f, "%s%u", i ? "," : "", (unsigned)c->split[i]);
        return;
    }
}

void cs_config_print_opts(const struct cs_config *c, FILE *f, unsigned flags)
{
    if (!c || !f)
        return;
    fprintf(f, "# clspecd effective configuration (read from %s; every key, defaults filled in)\n",
            c->path ? c->path : "(none)");
    const char *sec = "";
    for (size_t i = 0; i < cs_cfg_n_keys; i++) {
        const struct cs_cfg_key *k = &cs_cfg_keys[i];
        if (strcmp(sec, k->sec)) {
            sec = k->sec;
            fprintf(f, "\n[%s]\n", sec);
        }
        if (flags & CS_CONFIG_PRINT_HELP)
            fprintf(f, "# %s\n", k->help);
        fprintf(f, value_empty(c, k) ? "%s =" : "%s = ", k->name);
        print_value(c, k, f, flags);
        fputc('\n', f);
    }
    /* [speculator] is the last section: its plugin-specific keys follow it */
    for (int i = 0; i < c->spec_n_opts; i++) {
        if (flags & CS_CONFIG_PRINT_HELP)
            fprintf(f, "# plugin-specific key, handed to the plugin as %s\n", c->spec_opt_key[i]);
        fprintf(f, "opt.%s = %s\n", c->spec_opt_key[i], c->spec_opt_val[i]);
    }
}

void cs_config_print(const struct cs_config *c, FILE *f)
{
    cs_config_print_opts(c, f, CS_CONFIG_PRINT_HELP);
}

void cs_config_spec_kv(const struct cs_config *c, struct cs_config_spec_kv *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->nmax, sizeof o->nmax, "%d", c->spec_n_max);
    snprintf(o->nmin, sizeof o->nmin, "%d", c->spec_n_min);
    snprintf(o->pmin, sizeof o->pmin, "%g", c->spec_p_min);
    struct {
        const char *key, *value;
    } common[] = {
        {"n_max", o->nmax},
        {"n_min", o->nmin},
        {"p_min", o->pmin},
        {"type_k", c->spec_type_k != CS_CONFIG_KVTYPE_UNSET ? cs_type_name(c->spec_type_k) : NULL},
        {"type_v", c->spec_type_v != CS_CONFIG_KVTYPE_UNSET ? cs_type_name(c->spec_type_v) : NULL},
        {"model", c->spec_model},
        {"device", c->spec_device},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(common); i++)
        if (common[i].value) {
            o->kv[o->n] = (struct cs_plugin_kv){common[i].key, common[i].value};
            o->line[o->n++] = cs_config_line(c, "speculator", common[i].key);
        }
    for (int i = 0; i < c->spec_n_opts; i++) {
        o->kv[o->n] = (struct cs_plugin_kv){c->spec_opt_key[i], c->spec_opt_val[i]};
        o->line[o->n++] = c->spec_opt_line[i];
    }
}

struct cs_engine_params cs_config_engine_params(const struct cs_config *c)
{
    /* every field set here (no cs_engine_defaults: keeps this file free of the engine) */
    struct cs_engine_params p;
    memset(&p, 0, sizeof p);
    if (!c)
        return p;
    p.model_path = c->model_path;
    p.devices = c->devices;
    p.split_mode = !strcmp(c->split_mode, "memory") ? CS_SPLIT_MEMORY : CS_SPLIT_LAYERS;
    memcpy(p.split, c->split, sizeof p.split);
    p.n_ctx = c->n_ctx;
    p.n_batch = c->n_batch;
    p.n_ubatch = c->n_ubatch;
    p.type_k = c->type_k;
    p.type_v = c->type_v;
    p.n_seq_max = (uint32_t)c->parallel;
    p.kv_unified = c->kv_unified;
    p.progress = false;
    /* hybrid models keep the recurrent states of the longest draft's rollback */
    p.n_draft_max = c->spec_type && strcmp(c->spec_type, "none") ? (uint32_t)c->spec_n_max : 0;
    return p;
}

