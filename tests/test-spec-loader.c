/* test-spec-loader.c: src/spec/loader.c: a good plugin loads, gets its
 * configuration and logs through the host table; each failure (missing
 * file, unknown built-in, not a shared object, missing entry symbol, ABI
 * major mismatch, vtable too small, init failure with the plugin's own
 * message, a capability the host cannot serve) gives its own error; the built-in ngram is found by name;
 * an unknown name gets the plugins present and a did-you-mean; a plugin
 * built against the 1.3 header loads and runs; the shipped plugins'
 * config_check (1.4) names the key it refuses. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "spec/loader.h"
#include "testutil.h"

#ifndef CS_TEST_PLUGINS
#error "CS_TEST_PLUGINS: the directory of the test plugins"
#endif

static int load(const char *type, const struct cs_plugin_kv *kv, int n_kv, struct cs_plugin **pl, char *err,
                size_t errlen)
{
    struct cs_plugin_params p = {.type = type, .kv = kv, .n_kv = n_kv, .n_slots = 2};
    return cs_plugin_load(&p, pl, err, errlen);
}

/* Loads a test plugin that must fail; returns its message (static). */
static const char *load_fail(const char *file)
{
    static char err[CLSPEC_ERRLEN];
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", CS_TEST_PLUGINS, file);
    struct cs_plugin *pl = (struct cs_plugin *)1;
    int rc = load(path, NULL, 0, &pl, err, sizeof err);
    assert_int_equal(rc, CLSPEC_E_PLUGIN);
    assert_null(pl);
    print_message("%s: %s\n", file, err);
    return err;
}

static void test_minimal_loads(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN], path[1024];
    snprintf(path, sizeof path, "%s/minimal.so", CS_TEST_PLUGINS);
    struct cs_plugin_kv kv[] = {{"max", "3"}};
    struct cs_plugin *pl = NULL;
    if (load(path, kv, 1, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_string_equal(pl->vt.name, "minimal");
    assert_int_equal(pl->vt.abi_major, CLSPEC_SPEC_ABI_MAJOR);
    assert_non_null(pl->vt.draft);
    assert_null(pl->vt.accept); /* optional entries stay NULL */
    assert_string_equal(pl->host.config_get(&pl->host, "max"), "3");
    assert_null(pl->host.config_get(&pl->host, "nope"));
    /* entries this host does not provide yet are NULL, as documented */
    assert_int_equal(pl->host.abi_minor, CLSPEC_SPEC_ABI_MINOR);
    assert_non_null(pl->host.model_load); /* 1.1: draft models */
    assert_non_null(pl->host.ctx_decode);
    assert_non_null(pl->host.tap_request); /* 1.2: taps */
    assert_non_null(pl->host.tap_get);
    assert_null(pl->host.ctx_kv_inject);   /* not yet */
    /* it drafts through the vtable: what followed the last 7 */
    int32_t hist[] = {1, 7, 8, 9, 10, 11, 7}, out[8];
    struct clspec_draft_req req = {.size = sizeof req, .slot = 0, .hist = hist, .n_hist = 7, .pos_last = 6,
                                   .n_max = 8, .n_vocab = 512};
    int n = pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err);
    assert_int_equal(n, 3); /* max = 3 from the configuration */
    assert_int_equal(out[0], 8);
    assert_int_equal(out[2], 10);
    cs_plugin_free(pl);
}

static void test_ngram_by_name(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = NULL;
    if (load("ngram", NULL, 0, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_string_equal(pl->vt.name, "ngram");
    int32_t hist[] = {5, 6, 7, 8, 9, 5, 6, 7}, out[4];
    struct clspec_draft_req req = {.size = sizeof req, .slot = 1, .hist = hist, .n_hist = 8, .pos_last = 7,
                                   .n_max = 4, .n_vocab = 512};
    /* "5 6 7" occurred at 0: what followed it */
    assert_int_equal(pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err), 4);
    assert_int_equal(out[0], 8);
    assert_int_equal(out[1], 9);
    assert_int_equal(out[2], 5);
    assert_int_equal(out[3], 6);
    req.n_max = 2; /* the host's limit holds */
    assert_int_equal(pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err), 2);
    /* a loop goes on past the history's end (the continuation copies itself): period 1 and 2 */
    int32_t loop1[] = {1, 2, 9, 9, 9}, loop2[] = {1, 5, 6, 5, 6};
    req.n_max = 4;
    req.hist = loop1;
    req.n_hist = 5;
    assert_int_equal(pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err), 4);
    for (int j = 0; j < 4; j++)
        assert_int_equal(out[j], 9);
    req.hist = loop2;
    assert_int_equal(pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err), 4);
    assert_int_equal(out[0], 5);
    assert_int_equal(out[1], 6);
    assert_int_equal(out[2], 5);
    assert_int_equal(out[3], 6);
    int32_t none[] = {1, 2, 3, 4};
    req.hist = none;
    req.n_hist = 4;
    assert_int_equal(pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err), 0);
    cs_plugin_free(pl);
}

static void test_ngram_bad_config(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = NULL;
    struct cs_plugin_kv kv[] = {{"n_max_ngram", "banana"}};
    assert_int_equal(load("ngram", kv, 1, &pl, err, sizeof err), CLSPEC_E_PLUGIN);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "init failed: ngram: bad value for n_max_ngram"));
}

static void test_ngram_table(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = NULL;
    struct cs_plugin_kv kv[] = {{"table", "1"}, {"table_n", "2"}, {"table_mb", "1"}, {"n_min_ngram", "3"}};
    if (load("ngram", kv, 4, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    /* slot 0 learns "3 4 -> 5" twice; slot 1, a new request, drafts it from the table */
    int32_t a[] = {1, 3, 4, 5, 2, 3, 4, 5, 9};
    assert_int_equal(pl->vt.slot_begin(pl->state, 0, a, 9, err, sizeof err), 0);
    int32_t b[] = {7, 3, 4}, out[4];
    assert_int_equal(pl->vt.slot_begin(pl->state, 1, b, 3, err, sizeof err), 0);
    struct clspec_draft_req req = {.size = sizeof req, .slot = 1, .hist = b, .n_hist = 3, .pos_last = 2,
                                   .n_max = 4, .n_vocab = 512};
    int n = pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err);
    assert_true(n >= 1);
    assert_int_equal(out[0], 5);
    cs_plugin_free(pl);
}

static void test_missing_file(void **state)
{
    (void)state;
    const char *e = load_fail("does-not-exist.so");
    assert_non_null(strstr(e, "no such file"));
}

static void test_unknown_builtin(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = NULL;
    assert_int_equal(load("nosuchspeculator", NULL, 0, &pl, err, sizeof err), CLSPEC_E_PLUGIN);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "plugin not found (looked at "));
    assert_non_null(strstr(err, "nosuchspeculator.so"));
    /* names are not listed in the core: the message scans the plugin directories and suggests */
    assert_int_equal(load("ngarm", NULL, 0, &pl, err, sizeof err), CLSPEC_E_PLUGIN);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "unknown speculator 'ngarm' (did you mean ngram?): plugin not found"));
    assert_non_null(strstr(err, "; plugins there: "));
    assert_non_null(strstr(strstr(err, "plugins there: "), "draft"));
    char path[64];
    assert_int_equal(cs_plugin_resolve("none", NULL, path, sizeof path, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_true(cs_plugin_is_none("none") && cs_plugin_is_none(NULL) && !cs_plugin_is_none("ngram"));
}

/* A plugin built against the saved 1.3 header (tests/plugins/abi-1.3: no
 * config_check) loads into this host, runs, and is not asked to check. */
static void test_abi13_plugin(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN], path[1024];
    snprintf(path, sizeof path, "%s/abi13.so", CS_TEST_PLUGINS);
    struct cs_plugin_kv kv[] = {{"max", "2"}};
    struct cs_plugin_params p = {.type = path, .kv = kv, .n_kv = 1, .n_slots = 1};
    struct cs_plugin_check chk = {.kv_line = NULL};
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_OK);
    assert_string_equal(chk.key, "");
    struct cs_plugin *pl = NULL;
    if (cs_plugin_load(&p, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_string_equal(pl->vt.name, "minimal");
    assert_int_equal(pl->vt.size, offsetof(struct clspec_speculator, config_check)); /* the 1.3 vtable */
    assert_null(pl->vt.config_check);
    int32_t hist[] = {4, 5, 6, 7, 4}, out[8];
    struct clspec_draft_req req = {.size = sizeof req, .slot = 0, .hist = hist, .n_hist = 5, .pos_last = 4,
                                   .n_max = 8, .n_vocab = 512};
    assert_int_equal(pl->vt.draft(pl->state, &req, out, NULL, err, sizeof err), 2); /* max = 2 */
    assert_int_equal(out[0], 5);
    assert_int_equal(out[1], 6);
    cs_plugin_free(pl);
}

struct ignored_log {
    char key[64], why[256];
    int n;
};

static void on_ignored(void *user, const char *key, const char *why)
{
    struct ignored_log *l = user;
    snprintf(l->key, sizeof l->key, "%s", key);
    snprintf(l->why, sizeof l->why, "%s", why);
    l->n++;
}

/* config_check (1.4) of the shipped plugins, through the loader: a refusal
 * names the key; a key the plugin does not use is reported, not refused. */
static void test_config_check(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    struct ignored_log log = {.n = 0};
    struct cs_plugin_check chk = {.ignored = on_ignored, .user = &log};
    struct cs_plugin_kv bad[] = {{"n_max", "8"}, {"n_max_ngram", "banana"}};
    struct cs_plugin_params p = {.type = "ngram", .kv = bad, .n_kv = 2};
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(chk.key, "n_max_ngram");
    assert_non_null(strstr(err, "ngram: bad value for n_max_ngram"));
    struct cs_plugin_kv model[] = {{"model", "/x.gguf"}};
    p.kv = model;
    p.n_kv = 1;
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_OK);
    assert_int_equal(log.n, 1);
    assert_string_equal(log.key, "model");
    assert_non_null(strstr(log.why, "the request's own tokens"));
    p.type = "draft"; /* needs model: given */
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_OK);
    p.n_kv = 0;
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(chk.key, "model");
    assert_non_null(strstr(err, "draft needs a drafter model"));
    p.type = "dflash";
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(chk.key, "model");
    p.type = "mtp"; /* model optional */
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_OK);
    p.type = "ngarm"; /* the loader's own error, no key */
    assert_int_equal(cs_plugin_check_config(&p, &chk, err, sizeof err), CLSPEC_E_NOTFOUND);
    assert_string_equal(chk.key, "");
    assert_non_null(strstr(err, "did you mean ngram?"));
    assert_int_equal(log.n, 1);
}

static void test_not_shared_object(void **state)
{
    (void)state;
    char *path = tu_tmp_path(".so");
    assert_int_equal(tu_write_file(path, "not an ELF file\n", 16), 0);
    char err[CLSPEC_ERRLEN];
    struct cs_plugin *pl = NULL;
    assert_int_equal(load(path, NULL, 0, &pl, err, sizeof err), CLSPEC_E_PLUGIN);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "cannot load"));
    remove(path);
    free(path);
}

static void test_missing_symbol(void **state)
{
    (void)state;
    const char *e = load_fail("nosym.so");
    assert_non_null(strstr(e, "missing entry symbol clspec_speculator_entry"));
}

static void test_abi_mismatch(void **state)
{
    (void)state;
    const char *e = load_fail("badabi.so");
    assert_non_null(strstr(e, "ABI major version 99, this clspec speaks 1"));
}

static void test_vtable_too_small(void **state)
{
    (void)state;
    const char *e = load_fail("small.so");
    assert_non_null(strstr(e, "vtable too small (16 bytes"));
}

static void test_init_failure(void **state)
{
    (void)state;
    const char *e = load_fail("initfail.so");
    assert_non_null(strstr(e, "init failed: broken: the frobnicator is not configured"));
}

static void test_caps_refused(void **state)
{
    (void)state;
    const char *e = load_fail("caps.so");
    char want[160];
    snprintf(want, sizeof want, "(broken) needs a shared target KV cache, which this clspec (ABI %d.%d) does not provide",
             CLSPEC_SPEC_ABI_MAJOR, CLSPEC_SPEC_ABI_MINOR);
    assert_non_null(strstr(e, want));
}

static void test_newer_minor_loads(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN], path[1024];
    snprintf(path, sizeof path, "%s/newer.so", CS_TEST_PLUGINS);
    struct cs_plugin *pl = NULL;
    if (load(path, NULL, 0, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_string_equal(pl->vt.name, "newer");
    assert_true(pl->vt.size > sizeof pl->vt); /* as the plugin declared it; only sizeof was copied */
    cs_plugin_free(pl);
}

/* A plugin built against the 1.7 header (its vtable ends before the 1.8
 * entries, whatever bytes follow it): loads, without slot_detach /
 * slot_attach, so the host keeps calling accept for it. */
static void test_v17_loads(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN], path[1024];
    snprintf(path, sizeof path, "%s/v17.so", CS_TEST_PLUGINS);
    struct cs_plugin *pl = NULL;
    if (load(path, NULL, 0, &pl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    assert_int_equal(pl->vt.size, offsetof(struct clspec_speculator, slot_detach));
    assert_null(pl->vt.slot_detach);
    assert_null(pl->vt.slot_attach);
    assert_non_null(pl->vt.draft);
    cs_plugin_free(pl);
}

static void test_minimal_bad_config(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN], path[1024];
    snprintf(path, sizeof path, "%s/minimal.so", CS_TEST_PLUGINS);
    struct cs_plugin_kv kv[] = {{"max", "0"}};
    struct cs_plugin *pl = NULL;
    assert_int_equal(load(path, kv, 1, &pl, err, sizeof err), CLSPEC_E_PLUGIN);
    assert_non_null(strstr(err, "(minimal): init failed: minimal: max must be 1..64"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_loads),     cmocka_unit_test(test_ngram_by_name),
        cmocka_unit_test(test_ngram_bad_config),  cmocka_unit_test(test_ngram_table),
        cmocka_unit_test(test_missing_file),      cmocka_unit_test(test_unknown_builtin),
        cmocka_unit_test(test_not_shared_object), cmocka_unit_test(test_missing_symbol),
        cmocka_unit_test(test_abi_mismatch),      cmocka_unit_test(test_vtable_too_small),
        cmocka_unit_test(test_init_failure),      cmocka_unit_test(test_minimal_bad_config),
        cmocka_unit_test(test_caps_refused),      cmocka_unit_test(test_newer_minor_loads),
        cmocka_unit_test(test_v17_loads),
        cmocka_unit_test(test_abi13_plugin),      cmocka_unit_test(test_config_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
