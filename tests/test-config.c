/* test-config.c: clspecd's configuration: the schema and defaults, every
 * value type, every error class with its file:line message, warnings, the
 * speculator plugins' keys, hostile files and bad paths. Relative paths, the
 * print -> load round trip, conf/clspecd.ini, the systemd unit, runtime
 * checks and engine parameters: tests/test-config-run.c. */
#include "config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/cfg.h"
#include "gguf/quant.h"
#include "cfgutil.h"
#include "testutil.h"

/* ---- schema and defaults ---- */

static void test_schema_table(void **state)
{
    (void)state;
    size_t n = cs_config_n_keys();
    assert_true(n >= 40 && n <= CS_CONFIG_MAX_KEYS);
    struct cs_config_key_info k, k2;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cs_config_key(i, &k), CLSPEC_OK);
        assert_non_null(k.section);
        assert_non_null(k.name);
        assert_non_null(k.def);
        assert_non_null(k.allowed);
        assert_true(strlen(k.help) > 10);
        for (size_t j = 0; j < i; j++) { /* no key twice */
            cs_config_key(j, &k2);
            assert_false(!strcmp(k.section, k2.section) && !strcmp(k.name, k2.name));
        }
    }
    assert_int_equal(cs_config_key(n, &k), CLSPEC_E_RANGE);
}

static void test_defaults(void **state)
{
    (void)state;
    struct cs_config *c = cfu_load_ok(MODEL);
    assert_string_equal(c->host, "127.0.0.1");
    assert_int_equal(c->port, 8080);
    assert_null(c->api_key);
    assert_int_equal(c->max_body_bytes, 1u << 20);
    assert_int_equal(c->max_tokens_limit, 0);
    assert_int_equal(c->queue_max, 64);
    assert_true(c->drain_timeout_s == 30.0);
    assert_string_equal(c->log_level, "info");
    assert_null(c->log_file);
    assert_int_equal(c->http_threads, 0);
    assert_string_equal(c->model_path, "/m.gguf");
    assert_string_equal(c->model_name, "m");
    assert_null(c->chat_template);
    assert_null(c->platform);
    assert_string_equal(c->devices, "0");
    assert_int_equal(c->n_devices, 1);
    assert_string_equal(c->split_mode, "layers");
    assert_int_equal(c->n_split, 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(c->split[i], 0);
    assert_int_equal(c->n_ctx, 4096);
    assert_int_equal(c->type_k, CS_TYPE_F16);
    assert_int_equal(c->type_v, CS_TYPE_F16);
    assert_true(c->kv_unified);
    assert_int_equal(c->n_batch, 512);
    assert_int_equal(c->n_ubatch, 512);
    assert_int_equal(c->parallel, 4);
    assert_false(c->truncate_prompt);
    /* the sampling defaults are the sampler's */
    struct cs_sampler_params sd = cs_sampler_defaults();
    assert_true(c->sampling.temp == sd.temp);
    assert_int_equal(c->sampling.top_k, sd.top_k);
    assert_true(c->sampling.top_p == sd.top_p);
    assert_true(c->sampling.min_p == sd.min_p);
    assert_true(c->sampling.repeat_penalty == sd.repeat_penalty);
    assert_true(c->sampling.freq_penalty == sd.freq_penalty);
    assert_true(c->sampling.presence_penalty == sd.presence_penalty);
    assert_int_equal(c->sampling.penalty_last_n, sd.penalty_last_n);
    assert_int_equal(c->sampling.seed, sd.seed);
    assert_int_equal(c->max_tokens, 256);
    assert_string_equal(c->spec_type, "none");
    assert_int_equal(c->spec_n_max, 16);
    assert_int_equal(c->spec_n_min, 0);
    assert_true(c->spec_p_min == 0.0); /* a cut costs a sync per depth */
    assert_null(c->spec_device);
    assert_null(c->spec_model);
    assert_int_equal(c->spec_type_k, CS_CONFIG_KVTYPE_UNSET);
    assert_int_equal(c->spec_type_v, CS_CONFIG_KVTYPE_UNSET);
    assert_null(c->warnings);
    assert_int_equal(cs_config_line(c, "model", "path"), 2);
    assert_int_equal(cs_config_line(c, "server", "port"), 0);
    assert_int_equal(cs_config_line(c, "nope", "port"), 0);
    cs_config_free(c);
}

static char *dir_of(const char *file)
{
    char *r = realpath(file, NULL);
    assert_non_null(r);
    *strrchr(r, '/') = '\0';
    return r;
}

static void test_every_value(void **state)
{
    (void)state;
    char *p = cfu_fixture("tests/config/full.ini"), err[CLSPEC_ERRLEN] = "", want[PATH_MAX + 64];
    struct cs_config *c = NULL;
    int rc = cs_config_load(p, &c, err, sizeof err);
    if (rc)
        print_message("%s\n", err);
    assert_int_equal(rc, CLSPEC_OK);
    char *dir = dir_of(p);
    assert_string_equal(c->host, "0.0.0.0");
    assert_int_equal(c->port, 9090);
    assert_string_equal(c->api_key, "s3cret key"); /* quotes dropped */
    assert_int_equal(c->max_body_bytes, 512 * 1024);
    assert_int_equal(c->max_tokens_limit, 8000);
    assert_int_equal(c->queue_max, 7);
    assert_true(c->drain_timeout_s == 12.5);
    assert_string_equal(c->log_level, "debug"); /* canonical spelling */
    snprintf(want, sizeof want, "%s/logs/clspecd.log", dir);
    assert_string_equal(c->log_file, want);
    assert_int_equal(c->http_threads, 3);
    assert_string_equal(c->cors_origins, "https://a.example, http://localhost:3000");
    assert_false(c->webui);
    assert_false(c->slots_endpoint);
    assert_true(c->embeddings);
    assert_true(c->context_shift);
    snprintf(want, sizeof want, "%s/slots", dir);
    assert_string_equal(c->slot_save_path, want); /* relative to the file */
    assert_int_equal(c->max_connections, 500);
    assert_int_equal(c->max_connections_per_ip, 9);
    assert_int_equal(c->idle_timeout_s, 7);
    snprintf(want, sizeof want, "%s/models/tiny.gguf", dir);
    assert_string_equal(c->model_path, want);
    assert_string_equal(c->model_name, "tiny-model");
    assert_string_equal(c->model_aliases, "tiny, t1");
    assert_string_equal(c->model_tags, "chat, small");
    assert_string_equal(c->chat_template, "chatml");
    snprintf(want, sizeof want, "%s/templates/t.jinja", dir);
    assert_string_equal(c->chat_template_file, want); /* relative to the file */
    assert_string_equal(c->reasoning, "off");
    snprintf(want, sizeof want, "%s/models/tiny-mmproj.gguf", dir);
    assert_string_equal(c->mmproj_path, want); /* relative to the file */
    assert_string_equal(c->mmproj_device, "1");
    assert_true(c->remote_images);
    assert_string_equal(c->platform, "portable");
    assert_string_equal(c->devices, "0,pthread");
    assert_int_equal(c->n_devices, 2);
    assert_string_equal(c->split_mode, "memory");
    assert_int_equal(c->n_split, 2);
    assert_int_equal(c->split[0], 1);
    assert_int_equal(c->split[1], 3);
    assert_int_equal(c->split[2], 0);
    assert_int_equal(c->n_ctx, 1024);
    assert_int_equal(c->type_k, CS_TYPE_Q8_0);
    assert_int_equal(c->type_v, CS_TYPE_BF16);
    assert_false(c->kv_unified);
    assert_int_equal(c->n_batch, 256);
    assert_int_equal(c->n_ubatch, 128);
    assert_int_equal(c->parallel, 8);
    assert_true(c->truncate_prompt);
    assert_true(c->keep_cache);
    assert_true(c->sampling.temp == 0.3f);
    assert_int_equal(c->sampling.top_k, 20);
    assert_true(c->sampling.top_p == 0.9f);
    assert_true(c->sampling.min_p == 0.1f);
    assert_true(c->sampling.repeat_penalty == 1.1f);
    assert_true(c->sampling.freq_penalty == -0.5f);
    assert_true(c->sampling.presence_penalty == 0.25f);
    assert_int_equal(c->sampling.penalty_last_n, 32);
    assert_true(c->sampling.seed == UINT64_MAX);
    assert_int_equal(c->max_tokens, 100);
    assert_int_equal(c->spec_n_max, 8);
    assert_int_equal(c->spec_n_min, 2);
    assert_true(c->spec_p_min == 0.5);
    assert_string_equal(c->spec_device, "1");
    assert_string_equal(c->spec_model, "/abs/draft.gguf"); /* absolute: unchanged */
    assert_int_equal(c->spec_type_k, CS_TYPE_Q4_0);
    assert_int_equal(c->spec_type_v, CS_TYPE_F32);
    snprintf(want, sizeof want, "%s/plugins", dir);
    assert_string_equal(c->spec_plugin_dir, want); /* relative to the file */
    assert_string_equal(c->spec_controller, "cost");
    /* every key was set: each has its line */
    struct cs_config_key_info k;
    for (size_t i = 0; i < cs_config_n_keys(); i++) {
        cs_config_key(i, &k);
        assert_true(cs_config_line(c, k.section, k.name) > 2);
    }
    assert_int_equal(cs_config_line(c, "server", "host"), 4);
    /* warnings: open host without api_key is fine here (key set); speculator keys with type none */
    assert_non_null(c->warnings);
    assert_null(strstr(c->warnings, "[server] host"));
    assert_non_null(strstr(c->warnings, "[speculator] model: ignored because type = none"));
    cs_config_free(c);
    free(dir);
    free(p);
}

static void test_sizes_bools_lists(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        size_t bytes;
    } sizes[] = {{"1M", 1u << 20}, {"512K", 512u << 10}, {"2048", 2048}, {"1G", 1u << 30},
                 {"3MiB", 3u << 20}, {"4kb", 4u << 10}, {"1500B", 1500}};
    char text[256];
    for (size_t i = 0; i < CS_ARRAY_LEN(sizes); i++) {
        snprintf(text, sizeof text, MODEL "[server]\nmax_body_bytes = %s\n", sizes[i].v);
        struct cs_config *c = cfu_load_ok(text);
        assert_int_equal(c->max_body_bytes, sizes[i].bytes);
        cs_config_free(c);
    }
    static const char *const yes[] = {"true", "YES", "on", "1"}, *const no[] = {"false", "No", "OFF", "0"};
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text, MODEL "[kv]\nunified = %s\n[slots]\ntruncate_prompt = %s\n", no[i], yes[i]);
        struct cs_config *c = cfu_load_ok(text);
        assert_false(c->kv_unified);
        assert_true(c->truncate_prompt);
        cs_config_free(c);
    }
    struct cs_config *c = cfu_load_ok(MODEL "[devices]\ndevices = 0,1,2,3,4,5,6,7\nsplit = 1,1,1,1,1,1,1,9\n");
    assert_int_equal(c->n_devices, 8);
    assert_int_equal(c->n_split, 8);
    assert_int_equal(c->split[7], 9);
    cs_config_free(c);
    /* a line longer than inih's buffer (a long path, with an inline comment) */
    char *longp = malloc(5000), *lt = malloc(5100);
    assert_non_null(longp);
    assert_non_null(lt);
    memset(longp, 'p', 4999);
    longp[0] = '/';
    longp[4999] = '\0';
    snprintf(lt, 5100, "[model]\n  path =  %s  ; comment\n[server]\nport = 1\n", longp);
    c = cfu_load_ok(lt);
    assert_string_equal(c->model_path, longp);
    assert_int_equal(cs_config_line(c, "model", "path"), 2);
    assert_int_equal(c->port, 1);
    cs_config_free(c);
    snprintf(lt, 5100, "[model]\npath = /a\n[server]\nunknown_key_%s = 1\n", longp);
    cfu_expect_err(lt, 4, "[server] unknown_key_/ppp", "unknown key", NULL);
    free(longp);
    free(lt);
    /* CRLF line ends, a UTF-8 BOM, indented keys, inline comments */
    c = cfu_load_ok("\xEF\xBB\xBF[model]\r\n  path = /x/y.GGUF ; the model\r\n[server]\r\n\tport = 81\r\n");
    assert_string_equal(c->model_path, "/x/y.GGUF");
    assert_string_equal(c->model_name, "y");
    assert_int_equal(c->port, 81);
    cs_config_free(c);
}

/* ---- errors ---- */

static void test_errors_syntax(void **state)
{
    (void)state;
    cfu_expect_err(MODEL "[server\nport = 1\n", 3, "section header without ']'", NULL);
    cfu_expect_err(MODEL "[model", 3, "section header without ']'", NULL); /* at EOF, no newline */
    cfu_expect_err(MODEL "[server]\njust some words\n", 4, "is not 'key = value'", "fix or remove the line", NULL);
    cfu_expect_err("port = 1\n" MODEL, 1, "port: key before any [section] header", "did you mean port in [server]?",
               NULL);
    cfu_expect_err(MODEL "\n[srever]\nport = 1\n", 4, "[srever]: unknown section; did you mean [server]?", NULL);
    cfu_expect_err(MODEL "[zzzzzzzz]\n", 3, "[zzzzzzzz]: unknown section; known sections: [server]", NULL);
    cfu_expect_err(MODEL "[server]\nprot = 1\n", 4, "[server] prot: unknown key; did you mean port?", NULL);
    cfu_expect_err(MODEL "[server]\nn_ctx = 1\n", 4, "[server] n_ctx: unknown key; did you mean n_ctx in [kv]?", NULL);
    cfu_expect_err(MODEL "[slots]\nxyzzy = 1\n", 4, "[slots] xyzzy: unknown key; known keys: parallel, truncate_prompt",
               NULL);
    cfu_expect_err(MODEL "[server]\nport = 1\n; comment\n\nport = 2\n", 7,
               "[server] port: set twice (first on line 4); keep one", NULL);
    /* the same key set twice across two [server] sections */
    cfu_expect_err("[server]\nhost = ::1\n" MODEL "[server]\nhost = ::1\n", 6, "[server] host: set twice (first on line 2)",
               NULL);
    cfu_expect_err("[server]\nport = 1\n", 0, "[model] path: missing", NULL);
    cfu_expect_err("", 0, "[model] path: missing", NULL);
    /* the first error is the one reported */
    cfu_expect_err(MODEL "[server]\nport = x\nhost =\n", 4, "[server] port:", NULL);
}

static void test_errors_values(void **state)
{
    (void)state;
    cfu_expect_err(MODEL "[server]\nport = abc\n", 4, "[server] port: 'abc' is not a whole number", NULL);
    cfu_expect_err(MODEL "[server]\nport = 80 # http\n", 4, "'80 # http' is not a whole number", NULL);
    cfu_expect_err(MODEL "[server]\nport = \x1b[2J\a\n", 4, "[server] port: '?[2J?' is not a whole number", NULL);
    cfu_expect_err(MODEL "[server]\nport = 70000\n", 4, "[server] port: 70000 is out of range; use a value from 0 to 65535",
               NULL);
    cfu_expect_err(MODEL "[server]\nport = 99999999999999999999\n", 4, "is not a whole number", NULL);
    cfu_expect_err(MODEL "[server]\nhost =\n", 4, "[server] host: empty; set a value (default: 127.0.0.1)", NULL);
    cfu_expect_err(MODEL "[server]\nlog_level = verbose\n", 4,
               "[server] log_level: 'verbose' is not allowed; use one of error|warn|info|debug", NULL);
    cfu_expect_err(MODEL "[server]\nmax_body_bytes = 1T\n", 4, "[server] max_body_bytes: '1T' is not a size", NULL);
    cfu_expect_err(MODEL "[server]\nmax_body_bytes = 10\n", 4, "10 is out of range; use a size from 1K to 1G", NULL);
    cfu_expect_err(MODEL "[server]\nmax_body_bytes = 99999999999999G\n", 4, "is not a size", NULL);
    cfu_expect_err(MODEL "[server]\ndrain_timeout_s = soon\n", 4, "[server] drain_timeout_s: 'soon' is not a number",
               NULL);
    cfu_expect_err(MODEL "[sampling]\ntemperature = nan\n", 4, "[sampling] temperature: 'nan' is not a number", NULL);
    cfu_expect_err(MODEL "[sampling]\ntop_p = 1.5\n", 4, "[sampling] top_p: 1.5 is out of range; use a value from 0 to 1",
               NULL);
    cfu_expect_err(MODEL "[sampling]\nseed = -1\n", 4, "[sampling] seed: '-1' is not a whole number", NULL);
    cfu_expect_err(MODEL "[kv]\nunified = maybe\n", 4, "[kv] unified: 'maybe' is not a boolean; use true or false", NULL);
    cfu_expect_err(MODEL "[kv]\ntype_k = q5_0\n", 4,
               "[kv] type_k: 'q5_0' is not a KV cache type; use one of f32|f16|bf16|q8_0|q4_0", NULL);
}

static void test_errors_values2(void **state)
{
    (void)state;
    cfu_expect_err(MODEL "[model]\nchat_template = alpaca\n", 4, "[model] chat_template: 'alpaca' is not allowed", NULL);
    cfu_expect_err(MODEL "[devices]\ndevices = 0,,1\n", 4, "[devices] devices: empty or overlong entry", NULL);
    cfu_expect_err(MODEL "[devices]\ndevices =\n", 4, "[devices] devices: empty; set a value (default: 0)", NULL);
    cfu_expect_err(MODEL "[devices]\ndevices = 0,1,2,3,4,5,6,7,8\n", 4, "more than 8 devices", NULL);
    cfu_expect_err(MODEL "[devices]\nsplit = a,b\n", 4, "[devices] split: 'a' is not a whole number", NULL);
    cfu_expect_err(MODEL "[devices]\nsplit = 0\n", 4, "[devices] split: entry 0 is out of range", NULL);
    cfu_expect_err(MODEL "[devices]\nsplit_mode = rows\n", 4, "use one of layers|memory", NULL);
    cfu_expect_err(MODEL "[slots]\nparallel = 0\n", 4, "[slots] parallel: 0 is out of range; use a value from 1 to 64",
               NULL);
    cfu_expect_err(MODEL "[speculator]\nn_max = 0\n", 4, "[speculator] n_max: 0 is out of range", NULL);

    /* every non-string key refuses garbage with its own file:line: [section] key: prefix */
    struct cs_config_key_info k;
    char text[512], want[128];
    for (size_t i = 0; i < cs_config_n_keys(); i++) {
        cs_config_key(i, &k);
        if (!strcmp(k.type, "string") || !strcmp(k.type, "path") || !strcmp(k.name, "devices"))
            continue; /* any text is a string; devices may be name substrings */
        bool is_model = !strcmp(k.section, "model");
        snprintf(text, sizeof text, "%s[%s]\n%s = @bogus@\n", is_model ? "" : MODEL, k.section, k.name);
        snprintf(want, sizeof want, "[%s] %s: '@bogus@'", k.section, k.name);
        cfu_expect_err(text, is_model ? 2 : 4, want, NULL);
    }
}

/* n_ubatch not written derives from n_batch: min(512, n_batch); written, it is kept */
static void test_ubatch_default(void **state)
{
    (void)state;
    const struct {
        const char *kv;
        uint32_t n_batch, n_ubatch;
    } cases[] = {
        {"n_batch = 32\n", 32, 32},     {"n_batch = 2048\n", 2048, 512}, {"n_batch = 512\n", 512, 512},
        {"n_batch = 1\n", 1, 1},        {"n_batch = 64\nn_ubatch = 16\n", 64, 16},
        {"n_ubatch = 256\n", 512, 256}, {"n_batch = 100\nn_ubatch = 100\n", 100, 100},
    };
    char text[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, MODEL "[kv]\n%s", cases[i].kv);
        struct cs_config *c = cfu_load_ok(text);
        assert_int_equal(c->n_batch, cases[i].n_batch);
        assert_int_equal(c->n_ubatch, cases[i].n_ubatch);
        cs_config_free(c);
    }
}

static void test_errors_combinations(void **state)
{
    (void)state;
    cfu_expect_err(MODEL "[kv]\nn_ctx = 128\n[slots]\nparallel = 4\n", 4,
               "[kv] n_ctx: n_ctx = 128 cells cannot hold parallel = 4 slots of at least 64 cells each",
               "set [kv] n_ctx >= 256", NULL);
    cfu_expect_err(MODEL "[kv]\nn_ubatch = 1024\n", 4, "[kv] n_ubatch: n_ubatch = 1024 is larger than n_batch = 512",
               "set n_ubatch <= n_batch", NULL);
    /* both written and contradicting: refused at the line of n_ubatch, whichever comes first */
    cfu_expect_err(MODEL "[kv]\nn_ubatch = 64\nn_batch = 32\n", 4, "[kv] n_ubatch: n_ubatch = 64 is larger than n_batch = 32",
               "set n_ubatch <= n_batch", NULL);
    cfu_expect_err(MODEL "[devices]\ndevices = 0,1\nsplit = 1,2,3\n", 5,
               "[devices] split: 3 entries for 2 devices (devices = 0,1); give one entry per device", NULL);
    cfu_expect_err(MODEL "[devices]\nsplit = 4,4\n", 4, "[devices] split: 2 entries for 1 device", NULL);
    cfu_expect_err(MODEL "[server]\nmax_tokens_limit = 4096\n[sampling]\nmax_tokens = 5000\n", 6,
               "[sampling] max_tokens: default max_tokens = 5000 is above [server] max_tokens_limit = 4096", NULL);
    cfu_expect_err(MODEL "[server]\nmax_tokens_limit = 100\n", 4, "[server] max_tokens_limit: default max_tokens = 256",
               NULL);
    /* specd: the speculator's type (a plugin found by name, no list) and the keys its plugin checks */
    cfu_expect_err(MODEL "[speculator]\nn_max = 4\ntype = ngarm\n", 5,
               "[speculator] type: unknown speculator 'ngarm' (did you mean ngram?): plugin not found (looked at ",
               "/ngarm.so", "; plugins there: ", "ngram", "set plugin_dir", NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = draft\n", 4,
               "[speculator] model: draft needs a drafter model; set model = /path/to/draft.gguf", NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = dflash\nn_max = 7\n", 4,
               "[speculator] model: dflash needs a drafter model; set model = /path/to/dflash.gguf", NULL);
    cfu_expect_err(MODEL "[speculator]\nn_max = 65\n", 4, "[speculator] n_max: 65 is out of range; use a value from 1 to 64",
               NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = ngram\nopt.model = x\n", 5,
               "[speculator] opt.model: model is a key of [speculator] itself; write model = x", NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = ngram\nopt.a = 1\nopt.a = 2\n", 6,
               "[speculator] opt.a: set twice (first on line 5)", NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = ngram\nopt. = 1\n", 5, "[speculator] opt.: a plugin key must be opt.KEY",
               NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = ngram\nmax_ngram = 3\n", 5, "[speculator] max_ngram: unknown key", NULL);
    struct cs_config *ok = cfu_load_ok(MODEL "[speculator]\ntype = ./x/my.so\nopt.table = 1\nopt.n_max_ngram = 3\n");
    assert_true(ok->spec_type[0] == '/'); /* a plugin path relative to the file comes back absolute */
    assert_non_null(strstr(ok->spec_type, "/x/my.so"));
    assert_int_equal(ok->spec_n_opts, 2);
    assert_string_equal(ok->spec_opt_key[1], "n_max_ngram");
    assert_string_equal(ok->spec_opt_val[1], "3");
    assert_int_equal(ok->spec_opt_line[1], 6);
    cs_config_free(ok);
    cfu_expect_err(MODEL "[speculator]\nn_min = 20\n", 4, "[speculator] n_min: n_min = 20 is above n_max = 16", NULL);
    struct cs_config *c = cfu_load_ok(MODEL "[server]\nmax_tokens_limit = 0\n[sampling]\nmax_tokens = 100000\n");
    assert_int_equal(c->max_tokens, 100000); /* no limit: anything goes */
    cs_config_free(c);
    c = cfu_load_ok(MODEL "[kv]\nn_ctx = 0\n[slots]\nparallel = 64\n"); /* 0: decided at runtime */
    cs_config_free(c);
}

static void test_warnings(void **state)
{
    (void)state;
    char *path;
    struct cs_config *c = NULL;
    char err[CLSPEC_ERRLEN];
    assert_int_equal(cfu_load_text(MODEL "[server]\nhost = 0.0.0.0\n", &c, err, sizeof err, &path), CLSPEC_OK);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:4: [server] host: 0.0.0.0 is reachable from other machines and api_key is empty",
             path);
    assert_non_null(c->warnings);
    assert_non_null(strstr(c->warnings, want));
    cs_config_free(c);
    free(path);
    c = cfu_load_ok(MODEL "[server]\nhost = 0.0.0.0\napi_key = k\n");
    assert_null(c->warnings);
    cs_config_free(c);
    c = cfu_load_ok(MODEL "[server]\nhost = ::1\n[speculator]\nn_max = 4\ndevice = 1\n");
    assert_non_null(c->warnings);
    assert_non_null(strstr(c->warnings, ":7: [speculator] device: ignored because type = none"));
    assert_null(strstr(c->warnings, "n_max"));
    assert_null(strstr(c->warnings, "host"));
    cs_config_free(c);
}

/* [speculator] type = NAME is plugin_dir/NAME.so by convention (no list of
 * names in the core); the plugin checks its own keys (config_check, ABI 1.4)
 * and the host names the key at its line. Uses the plugins of the build tree. */
static void test_speculator_plugins(void **state)
{
    (void)state;
    cfu_expect_err(MODEL "[speculator]\ntype = ngram\nopt.table = 1\nopt.n_max_ngram = 99\n", 6,
               "[speculator] opt.n_max_ngram: ngram: bad value for n_max_ngram", NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = ngram\nopt.n_min_ngram = 5\nopt.n_max_ngram = 3\n", 5,
               "[speculator] opt.n_min_ngram: ngram: n_min_ngram is larger than n_max_ngram", NULL);
    cfu_expect_err(MODEL "[speculator]\ntype = mtp\nopt.n_batch = 0\n", 5,
               "[speculator] opt.n_batch: mtp: '0' is not a whole number from 1 to 4096", NULL);
    struct cs_config *c = cfu_load_ok(MODEL "[speculator]\ntype = mtp\n"); /* model optional: the target's own head */
    assert_null(c->warnings);
    cs_config_free(c);
    /* ngram does not use model: a warning at its line, and --check will not open it */
    c = cfu_load_ok(MODEL "[speculator]\ntype = ngram\nmodel = /nope.gguf\n");
    assert_non_null(c->warnings);
    assert_non_null(strstr(c->warnings, ":5: [speculator] model: ignored by type = ngram (it drafts from the "
                                        "request's own tokens)"));
    assert_true(c->spec_model_ignored);
    cs_config_free(c);
    c = cfu_load_ok(MODEL "[speculator]\ntype = draft\nmodel = /d.gguf\n");
    assert_null(c->warnings);
    assert_false(c->spec_model_ignored);
    cs_config_free(c);

    /* a plugin the core has never heard of, by name from plugin_dir: here the draft plugin as "mydrafter" */
    const char *bd = getenv("CLSPEC_BUILDDIR");
    if (!bd) {
        print_message("CLSPEC_BUILDDIR not set (run by make check): plugin_dir part skipped\n");
        return;
    }
    char dir[] = "/tmp/clspec-plugdir.XXXXXX", so[PATH_MAX], link[PATH_MAX + 32], text[2 * PATH_MAX];
    assert_non_null(mkdtemp(dir));
    snprintf(so, sizeof so, "%s/plugins/draft/.libs/draft.so", bd);
    snprintf(link, sizeof link, "%s/mydrafter.so", dir);
    assert_int_equal(symlink(so, link), 0);
    snprintf(text, sizeof text, MODEL "[speculator]\nplugin_dir = %s\ntype = mydrafter\n", dir);
    cfu_expect_err(text, 5, "[speculator] model: draft needs a drafter model", NULL);
    snprintf(text, sizeof text, MODEL "[speculator]\nplugin_dir = %s\ntype = mydrafter\nmodel = /d.gguf\n", dir);
    c = cfu_load_ok(text);
    assert_string_equal(c->spec_type, "mydrafter");
    cs_config_free(c);
    snprintf(text, sizeof text, MODEL "[speculator]\nplugin_dir = %s\ntype = mydrafte\n", dir);
    cfu_expect_err(text, 5, "[speculator] type: unknown speculator 'mydrafte' (did you mean mydrafter?)", dir,
               "plugins there: ", "mydrafter", NULL);
    unlink(link);
    rmdir(dir);
    /* a plugin built against the 1.3 header (no config_check) is not asked: its keys pass here, init checks them */
    snprintf(so, sizeof so, "%s/tests/plugins/.libs/abi13.so", bd);
    assert_int_equal(access(so, F_OK), 0); /* make check builds it */
    snprintf(text, sizeof text, MODEL "[speculator]\ntype = %s\nopt.max = 0\n", so);
    c = cfu_load_ok(text);
    assert_null(c->warnings);
    cs_config_free(c);
}

/* ---- hostile input ---- */

static void expect_refused(const void *buf, size_t len, const char *substr)
{
    char *p = cfu_write_tmp(buf, len), err[CLSPEC_ERRLEN] = "";
    struct cs_config *c = (struct cs_config *)1;
    int rc = cs_config_load(p, &c, err, sizeof err);
    assert_true(rc < 0);
    assert_null(c);
    assert_memory_equal(err, p, strlen(p)); /* starts with the file name */
    assert_int_equal(err[strlen(p)], ':');
    if (substr && !strstr(err, substr)) {
        print_message("want '%s' in '%s'\n", substr, err);
        fail();
    }
    unlink(p);
    free(p);
}

static void test_hostile(void **state)
{
    (void)state;
    /* a huge line */
    size_t n = 200000;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int h = snprintf(big, 64, "[server]\napi_key = ");
    memset(big + h, 'a', n);
    memcpy(big + h + n, "\n[model]\npath = /m\n", 20);
    expect_refused(big, strlen(big), ":2: line too long (200010 characters, at most 8192)");
    /* a huge section name and key name */
    memcpy(big, "[", 1);
    memset(big + 1, 's', n);
    memcpy(big + 1 + n, "]\n", 3);
    expect_refused(big, strlen(big), ":1: line too long");
    free(big);
    /* binary garbage (seeded) */
    struct tu_rng r;
    tu_rng_seed(&r, 42);
    unsigned char *g = malloc(65536);
    assert_non_null(g);
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < 65536; i++)
            g[i] = (unsigned char)tu_rng_u64(&r);
        expect_refused(g, 65536, NULL);
        for (size_t i = 0; i < 65536; i++) /* printable garbage with structure characters */
            g[i] = (unsigned char)"[]=;#: \nab\r\t,\"0"[tu_rng_u64(&r) % 16];
        expect_refused(g, 65536, NULL);
    }
    free(g);
    expect_refused(MODEL "[server]\nport = 1\0\n", sizeof(MODEL "[server]\nport = 1\0\n") - 1, ":4: NUL byte");
    /* 10k keys, 10k duplicates, 10k sections */
    size_t cap = 10000 * 32 + 64, used;
    char *t = malloc(cap);
    assert_non_null(t);
    used = (size_t)snprintf(t, cap, MODEL "[server]\n");
    for (int i = 0; i < 10000; i++)
        used += (size_t)snprintf(t + used, cap - used, "key%d = %d\n", i, i);
    expect_refused(t, used, ":4: [server] key0: unknown key");
    used = (size_t)snprintf(t, cap, MODEL "[server]\n");
    for (int i = 0; i < 10000; i++)
        used += (size_t)snprintf(t + used, cap - used, "port = %d\n", i);
    expect_refused(t, used, ":5: [server] port: set twice (first on line 4)");
    used = (size_t)snprintf(t, cap, MODEL);
    for (int i = 0; i < 10000; i++)
        used += (size_t)snprintf(t + used, cap - used, "[s%d]\n", i);
    expect_refused(t, used, ":3: [s0]: unknown section");
    free(t);
    /* too large a file */
    size_t bigsz = (1u << 20) + 10;
    char *z = malloc(bigsz);
    assert_non_null(z);
    memset(z, '\n', bigsz);
    expect_refused(z, bigsz, ":0: 1048586 bytes is too large");
    free(z);
}

static void test_bad_paths(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_config *c = (struct cs_config *)1;
    assert_int_equal(cs_config_load("/nonexistent/clspecd.ini", &c, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_null(c);
    assert_string_equal(err, "/nonexistent/clspecd.ini:0: cannot open: No such file or directory; check the path "
                             "given with -c");
    char *d = tu_tmp_path("-dir");
    assert_int_equal(mkdir(d, 0700), 0);
    assert_int_equal(cs_config_load(d, &c, err, sizeof err), CLSPEC_E_IO);
    assert_non_null(strstr(err, ":0: not a regular file"));
    rmdir(d);
    free(d);
    assert_true(cs_config_load(NULL, &c, err, sizeof err) < 0);
    assert_true(cs_config_load("", &c, err, sizeof err) < 0);
    assert_true(cs_config_load("x", NULL, err, sizeof err) < 0);
    assert_true(cs_config_load("/nonexistent", &c, NULL, 0) < 0); /* no error buffer: no crash */
    cs_config_free(NULL);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_table),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_value),
        cmocka_unit_test(test_sizes_bools_lists),
        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_errors_values),
        cmocka_unit_test(test_errors_values2),
        cmocka_unit_test(test_ubatch_default),
        cmocka_unit_test(test_errors_combinations),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_speculator_plugins),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_bad_paths),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
