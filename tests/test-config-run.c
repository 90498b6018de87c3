/* test-config-run.c: clspecd's configuration beyond parsing: relative paths,
 * the print -> load round trip, conf/clspecd.ini (documents every key,
 * loads), the systemd unit, runtime checks (model, devices, port) and the
 * engine parameters. Parsing and errors: tests/test-config.c. */
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

/* ---- paths, print round trip ---- */

static void test_relative_paths(void **state)
{
    (void)state;
    char *d = tu_tmp_path("-rel");
    assert_int_equal(mkdir(d, 0700), 0);
    char file[PATH_MAX], want[PATH_MAX + 64];
    snprintf(file, sizeof file, "%s/c.ini", d);
    const char *text = "[model]\npath = m/model.gguf\n[server]\nlog_file = \"log dir/x.log\"\n"
                       "[speculator]\nmodel = ../d.gguf\n";
    assert_int_equal(tu_write_file(file, text, strlen(text)), 0);
    char *rd = realpath(d, NULL);
    assert_non_null(rd);
    /* given relative to the working directory: resolved against the file's directory anyway */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(rd), 0);
    struct cs_config *c = NULL;
    char err[CLSPEC_ERRLEN];
    int rc = cs_config_load("c.ini", &c, err, sizeof err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, CLSPEC_OK);
    snprintf(want, sizeof want, "%s/m/model.gguf", rd);
    assert_string_equal(c->model_path, want);
    assert_string_equal(c->model_name, "model");
    snprintf(want, sizeof want, "%s/log dir/x.log", rd);
    assert_string_equal(c->log_file, want);
    snprintf(want, sizeof want, "%s/../d.gguf", rd);
    assert_string_equal(c->spec_model, want);
    assert_string_equal(c->path, "c.ini");
    cs_config_free(c);
    unlink(file);
    rmdir(d);
    free(rd);
    free(d);
}

static char *print_to_string(const struct cs_config *c, unsigned flags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    cs_config_print_opts(c, f, flags);
    fclose(f);
    return buf;
}

/* Prints c, loads the print, prints again: same text (after the header line,
 * which names the file) and the same values. */
static void round_trip(struct cs_config *c)
{
    char *a = print_to_string(c, CS_CONFIG_PRINT_HELP);
    char *p = cfu_write_tmp(a, strlen(a)), err[CLSPEC_ERRLEN];
    struct cs_config *c2 = NULL;
    int rc = cs_config_load(p, &c2, err, sizeof err);
    if (rc)
        print_message("%s\n--\n%s\n", err, a);
    assert_int_equal(rc, CLSPEC_OK);
    char *b = print_to_string(c2, 0);
    char *a0 = print_to_string(c, 0);
    assert_string_equal(strchr(a0, '\n'), strchr(b, '\n'));
    /* every key of the schema is printed, once */
    struct cs_config_key_info k;
    char needle[96];
    for (size_t i = 0; i < cs_config_n_keys(); i++) {
        cs_config_key(i, &k);
        snprintf(needle, sizeof needle, "\n%s =", k.name);
        assert_non_null(strstr(b, needle));
        assert_true(cs_config_line(c2, k.section, k.name) > 0);
    }
    assert_memory_equal(&c->sampling, &c2->sampling, sizeof c->sampling);
    assert_true(c->drain_timeout_s == c2->drain_timeout_s && c->spec_p_min == c2->spec_p_min);
    assert_int_equal(c->max_body_bytes, c2->max_body_bytes);
    assert_memory_equal(c->split, c2->split, sizeof c->split);
    assert_string_equal(c->model_path, c2->model_path);
    assert_string_equal(c->model_name, c2->model_name);
    unlink(p);
    free(p);
    free(a);
    free(a0);
    free(b);
    cs_config_free(c2);
}

static void test_print_round_trip(void **state)
{
    (void)state;
    char *p = cfu_fixture("tests/config/full.ini"), err[CLSPEC_ERRLEN];
    struct cs_config *c = NULL;
    assert_int_equal(cs_config_load(p, &c, err, sizeof err), CLSPEC_OK);
    round_trip(c);
    /* awkward values: shortest float text, odd sizes, quotes kept by quoting */
    c->sampling.temp = 0.1f + 0.2f;
    c->drain_timeout_s = 1.0 / 3.0;
    c->max_body_bytes = 1025;
    free(c->api_key);
    c->api_key = strdup("\"quoted\"");
    round_trip(c);
    /* redacted print hides the key */
    char *r = print_to_string(c, CS_CONFIG_PRINT_REDACT);
    assert_non_null(strstr(r, "\napi_key = <redacted>\n"));
    assert_null(strstr(r, "quoted"));
    free(r);
    cs_config_free(c);
    c = cfu_load_ok(MODEL);
    round_trip(c);
    cs_config_free(c);
    free(p);
}

/* ---- conf/clspecd.ini ---- */

static void test_default_conf_file(void **state)
{
    (void)state;
    char *p = cfu_fixture("conf/clspecd.ini"), err[CLSPEC_ERRLEN] = "";
    size_t len;
    char *text = tu_read_file(p, &len);
    assert_non_null(text);
    /* every key: a "key =" or "# key =" line in its section, under a comment
     * block that documents it ("# key: ...") and names its default */
    struct cs_config_key_info k;
    for (size_t i = 0; i < cs_config_n_keys(); i++) {
        cs_config_key(i, &k);
        char sec[64], doc[96], set[96], set2[96], def[96];
        snprintf(sec, sizeof sec, "\n[%s]\n", k.section);
        snprintf(doc, sizeof doc, "\n# %s: ", k.name);
        snprintf(set, sizeof set, "\n%s = ", k.name);
        snprintf(set2, sizeof set2, "\n# %s =", k.name);
        snprintf(def, sizeof def, "default: %s", k.def[0] ? k.def : "(");
        const char *s = strstr(text, sec);
        if (!s) {
            print_message("conf/clspecd.ini: no section [%s]\n", k.section);
            fail();
            return; /* fail() does not return; tells the compiler s is set below */
        }
        const char *end = strstr(s + 1, "\n[");
        size_t span = end ? (size_t)(end - s) : strlen(s);
        char *chunk = strndup(s, span);
        const char *d = strstr(chunk, doc);
        const char *a = d ? strstr(d, set) : NULL, *b = d ? strstr(d, set2) : NULL;
        const char *kl = a && (!b || a < b) ? a : b;
        if (!d || !kl) {
            print_message("conf/clspecd.ini: [%s] %s is not documented (\"# %s: ...\" then \"%s = \")\n", k.section,
                          k.name, k.name, k.name);
            fail();
        }
        char *block = strndup(d, (size_t)(kl - d));
        if (!strstr(block, def)) {
            print_message("conf/clspecd.ini: [%s] %s: the comment does not say '%s'\n", k.section, k.name, def);
            fail();
        }
        free(block);
        free(chunk);
    }
    struct cs_config *c = NULL;
    int rc = cs_config_load(p, &c, err, sizeof err);
    if (rc)
        print_message("%s\n", err);
    assert_int_equal(rc, CLSPEC_OK);
    assert_null(c->warnings);
    assert_string_equal(c->host, "127.0.0.1");
    assert_int_equal(c->port, 8080);
    assert_int_equal(c->parallel, 4);
    assert_true(c->n_ctx >= 4u * 512);
    assert_string_equal(c->model_name, "stories260K");
    /* it points at the model shipped in models/ (a lone clone works), and passes the runtime checks */
    char *want = cfu_fixture("models/stories260K.gguf");
    char *rw = realpath(want, NULL), *rc_path = realpath(c->model_path, NULL);
    assert_non_null(rw);
    assert_non_null(rc_path);
    assert_string_equal(rw, rc_path);
    c->port = 0; /* 8080 may be taken on this machine */
    rc = cs_config_check_runtime(c, err, sizeof err);
    if (rc)
        print_message("%s\n", err);
    assert_int_equal(rc, CLSPEC_OK);
    free(rw);
    free(rc_path);
    free(want);
    cs_config_free(c);
    free(text);
    free(p);
}

/* conf/clspecd.service.in: the hardening the daemon needs and nothing that breaks OpenCL */
static void test_systemd_unit(void **state)
{
    (void)state;
    char *p = cfu_fixture("conf/clspecd.service.in");
    size_t len;
    char *t = tu_read_file(p, &len);
    assert_non_null(t);
    static const char *const need[] = {
        "\nExecStart=@bindir@/clspecd -c @sysconfdir@/clspec/clspecd.ini\n",
        "\nExecReload=/bin/kill -HUP $MAINPID\n", "\nKillSignal=SIGTERM\n", "\nDynamicUser=yes\n",
        "\nProtectSystem=strict\n", "\nProtectHome=yes\n", "\nPrivateTmp=yes\n", "\nNoNewPrivileges=yes\n",
        "\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n", "\nDeviceAllow=char-drm rw\n",
        "\nDeviceAllow=char-nvidia-frontend rw\n"};
    for (size_t i = 0; i < CS_ARRAY_LEN(need); i++)
        if (!strstr(t, need[i])) {
            print_message("conf/clspecd.service.in lacks %s", need[i]);
            fail();
        }
    /* OpenCL JITs kernels: W^X and device hiding would break it */
    assert_null(strstr(t, "\nMemoryDenyWriteExecute=yes"));
    assert_null(strstr(t, "\nMemoryDenyWriteExecute=true"));
    assert_null(strstr(t, "\nPrivateDevices=yes"));
    /* systemd waits longer than the default drain before SIGKILL */
    const char *ts = strstr(t, "\nTimeoutStopSec=");
    assert_non_null(ts);
    double stop = strtod(ts + 16, NULL), drain = -1;
    struct cs_config_key_info k;
    for (size_t i = 0; i < cs_config_n_keys(); i++)
        if (cs_config_key(i, &k) == CLSPEC_OK && !strcmp(k.name, "drain_timeout_s"))
            drain = strtod(k.def, NULL);
    assert_true(drain > 0);
    assert_true(stop >= drain + 5);
    free(t);
    free(p);
}

/* ---- runtime checks ---- */

/* The config "[model] path = MODEL, [server] port = 0" + extra (from line 5)
 * passes cs_config_check_runtime (substr NULL) or fails with both substrings. */
static void expect_runtime_model(const char *model_rel, const char *extra, const char *substr, const char *substr2)
{
    char *model = tu_shared_path(model_rel);
    char text[2048];
    snprintf(text, sizeof text, "[model]\npath = %s\n[server]\nport = 0\n%s", model, extra);
    free(model);
    struct cs_config *c = cfu_load_ok(text);
    char err[CLSPEC_ERRLEN] = "";
    int rc = cs_config_check_runtime(c, err, sizeof err);
    if (!substr) {
        if (rc)
            print_message("%s\n", err);
        assert_int_equal(rc, CLSPEC_OK);
    } else {
        assert_true(rc < 0);
        assert_memory_equal(err, c->path, strlen(c->path));
        if (!strstr(err, substr) || (substr2 && !strstr(err, substr2))) {
            print_message("want '%s' / '%s'\n in '%s'\n", substr, substr2 ? substr2 : "", err);
            fail();
        }
    }
    cs_config_free(c);
}

static void expect_runtime(const char *extra, const char *substr, const char *substr2)
{
    expect_runtime_model("models/stories260K.gguf", extra, substr, substr2);
}

static void test_runtime_ok(void **state)
{
    (void)state;
    expect_runtime("", NULL, NULL);
    expect_runtime("[devices]\ndevices = pthread\nsplit = 5\nplatform = 0\n", NULL, NULL);
    expect_runtime("[kv]\nn_ctx = 0\n", NULL, NULL); /* the model's 2048 cells hold 4 slots */
}

static void test_runtime_errors(void **state)
{
    (void)state;
    /* model */
    struct cs_config *c = cfu_load_ok("[server]\nport = 0\n[model]\npath = /nonexistent/m.gguf\n");
    char err[CLSPEC_ERRLEN], want[PATH_MAX + 128];
    assert_int_equal(cs_config_check_runtime(c, err, sizeof err), CLSPEC_E_NOTFOUND);
    snprintf(want, sizeof want, "%s:4: [model] path: /nonexistent/m.gguf: No such file or directory; fix the path",
             c->path);
    assert_memory_equal(err, want, strlen(want));
    cs_config_free(c);
    char *txt = cfu_write_tmp("this is not a model\n", 20);
    char text[PATH_MAX + 64];
    snprintf(text, sizeof text, "[model]\npath = %s\n", txt);
    c = cfu_load_ok(text);
    assert_true(cs_config_check_runtime(c, err, sizeof err) < 0);
    snprintf(want, sizeof want, "%s:2: [model] path: not a usable GGUF file (", c->path);
    assert_memory_equal(err, want, strlen(want));
    cs_config_free(c);
    unlink(txt);
    free(txt);
    snprintf(text, sizeof text, "[model]\npath = /tmp\n");
    c = cfu_load_ok(text);
    assert_true(cs_config_check_runtime(c, err, sizeof err) < 0);
    assert_non_null(strstr(err, ":2: [model] path: /tmp is not a regular file"));
    cs_config_free(c);
    /* model vs KV types, context, split */
    /* quantized KV: blocks of 32 along the cell row, padded to whole blocks:
     * stories260K's row is 4 kv heads x 8 = 32 values, llama-2-tiny-random's
     * 2 x 4 = 8 (one padded block): both accepted */
    expect_runtime("[kv]\ntype_k = q8_0\ntype_v = q4_0\n", NULL, NULL);
    expect_runtime_model("models/llama-2-tiny-random.gguf", "[kv]\ntype_k = q8_0\n", NULL, NULL);
    expect_runtime_model("models/llama-2-tiny-random.gguf", "[kv]\ntype_v = q4_0\n", NULL, NULL);
    expect_runtime("[kv]\nn_ctx = 0\n[slots]\nparallel = 64\n", ":6: [kv] n_ctx: a context of 2048 cells (the model's "
                   "training context) cannot hold parallel = 64 slots", "set [kv] n_ctx >= 4096");
    expect_runtime("[devices]\nsplit = 3\n", ":6: [devices] split: layer counts add up to 3 but the model has 5 layers",
                   NULL);
    /* devices */
    expect_runtime("[devices]\ndevices = 99\n", ":6: [devices] devices: entry '99': OpenCL device index 99 out of range",
                   "available:");
    expect_runtime("[devices]\ndevices = nosuchgpu\n", "[devices] devices: entry 'nosuchgpu': no OpenCL device name "
                   "contains 'nosuchgpu'", NULL);
    expect_runtime("[devices]\ndevices = 0,0\n", "[devices] devices: entry '0' is device 0", "already listed");
    expect_runtime("[devices]\nplatform = nosuchplatform\n", ":6: [devices] platform: no OpenCL platform matches "
                   "'nosuchplatform' (have 0: ", NULL);
    expect_runtime("[devices]\ndevices = 0,1,2,3,4,5\n", "[devices] devices: 6 devices for a model of 5 layers", NULL);
    /* host / port */
    expect_runtime("host = 192.0.2.1\n", ":5: [server] host: cannot bind 192.0.2.1:0", NULL);
}

static void test_runtime_port_in_use(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    int port = ntohs(a.sin_port);
    char *model = tu_shared_path("models/stories260K.gguf");
    char text[2048], err[CLSPEC_ERRLEN], want[PATH_MAX + 128];
    snprintf(text, sizeof text, "[model]\npath = %s\n[server]\nhost = 127.0.0.1\nport = %d\n", model, port);
    struct cs_config *c = cfu_load_ok(text);
    assert_int_equal(cs_config_check_runtime(c, err, sizeof err), CLSPEC_E_IO);
    snprintf(want, sizeof want, "%s:5: [server] port: 127.0.0.1:%d is already in use; stop the other server or choose "
             "another port", c->path, port);
    assert_string_equal(err, want);
    close(fd);
    /* free again: the check binds and lets go */
    assert_int_equal(cs_config_check_runtime(c, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_config_check_runtime(c, err, sizeof err), CLSPEC_OK);
    cs_config_free(c);
    free(model);
}

static void test_engine_params(void **state)
{
    (void)state;
    char *p = cfu_fixture("tests/config/full.ini"), err[CLSPEC_ERRLEN];
    struct cs_config *c = NULL;
    assert_int_equal(cs_config_load(p, &c, err, sizeof err), CLSPEC_OK);
    struct cs_engine_params e = cs_config_engine_params(c);
    assert_ptr_equal(e.model_path, c->model_path);
    assert_string_equal(e.devices, "0,pthread");
    assert_int_equal(e.split_mode, CS_SPLIT_MEMORY);
    assert_int_equal(e.split[0], 1);
    assert_int_equal(e.split[1], 3);
    assert_int_equal(e.n_ctx, 1024);
    assert_int_equal(e.n_batch, 256);
    assert_int_equal(e.n_ubatch, 128);
    assert_int_equal(e.type_k, CS_TYPE_Q8_0);
    assert_int_equal(e.type_v, CS_TYPE_BF16);
    assert_int_equal(e.n_seq_max, 8);
    assert_false(e.kv_unified);
    assert_false(e.progress);
    cs_config_free(c);
    c = cfu_load_ok(MODEL);
    e = cs_config_engine_params(c);
    assert_int_equal(e.split_mode, CS_SPLIT_LAYERS);
    assert_int_equal(e.n_seq_max, 4);
    assert_true(e.kv_unified);
    assert_int_equal(e.n_ctx, 4096);
    cs_config_free(c);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_default_conf_file),
        cmocka_unit_test(test_systemd_unit),
        cmocka_unit_test(test_runtime_ok),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_runtime_port_in_use),
        cmocka_unit_test(test_engine_params),
    };
    return cmocka_run_group_tests_name("config-run", tests, NULL, NULL);
}
