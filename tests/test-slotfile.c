/* test-slotfile.c: llama-server's slot action files and fields without a
 * daemon (src/daemon/slotfile.c, api_llama.c): file names that may not
 * leave the save directory, a write/read round trip of a slot's tokens, the
 * refusal of files that are not slot files (bad magic, short, longer than
 * the header says, another vocabulary size, an id outside it), and the
 * /completion fields id_slot, n_keep, n_discard (parsed, refused out of
 * range); the slot actions without slot_save_path answer 501 (their HTTP
 * side with a scheduler is tests/daemon/slots-e2e.sh). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/common.h"
#include "daemon/api_llama.h"
#include "daemon/slotfile.h"

static void test_names(void **state)
{
    (void)state;
    assert_true(cs_slotfile_name_ok("slot1.bin"));
    assert_true(cs_slotfile_name_ok("a..b"));
    const char *bad[] = {"", "..", ".hidden", "../x", "a/b", "a\\b", "/etc/passwd", NULL};
    for (int i = 0; i < (int)CS_ARRAY_LEN(bad); i++)
        assert_false(cs_slotfile_name_ok(bad[i]));
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_false(cs_slotfile_name_ok(longname));
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void test_round_trip_and_refusals(void **state)
{
    (void)state;
    char dir[] = "/tmp/test-slotfile-XXXXXX", path[128], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s.bin", dir);
    int32_t tok[5] = {1, 403, 407, 261, 511}, *back = NULL;
    int n = -1;
    assert_int_equal(cs_slotfile_write(path, 512, tok, 5, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(back, tok, sizeof tok);
    free(back);
    /* another vocabulary size */
    assert_int_equal(cs_slotfile_read(path, 32000, &back, &n, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, "vocabulary of 512"));
    assert_null(back);
    /* an id outside the vocabulary */
    tok[4] = 512;
    assert_int_equal(cs_slotfile_write(path, 512, tok, 5, err, sizeof err), CLSPEC_OK);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, "outside the vocabulary"));
    /* the file cut short, or longer than its header says */
    unsigned char img[16 + 8] = {'C', 'L', 'S', 'P', 'S', 'L', 'T', '1', 0, 2, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0};
    write_bytes(path, img, sizeof img);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 2);
    assert_int_equal(back[1], 2);
    free(back);
    write_bytes(path, img, sizeof img - 1);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_E_FORMAT);
    img[12] = 1; /* says 1 token, holds 2 */
    write_bytes(path, img, sizeof img);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_E_FORMAT);
    write_bytes(path, "CLSPSLT0 not one", 16);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_E_FORMAT);
    assert_non_null(strstr(err, "not a clspec slot file"));
    unlink(path);
    assert_int_equal(cs_slotfile_read(path, 512, &back, &n, err, sizeof err), CLSPEC_E_IO);
    snprintf(path, sizeof path, "%s/no/such/dir/s.bin", dir);
    assert_int_equal(cs_slotfile_write(path, 512, tok, 5, err, sizeof err), CLSPEC_E_IO);
    rmdir(dir);
}

static void test_actions_off(void **state)
{
    (void)state;
    struct cs_slot_ctx x = {NULL, NULL, NULL, NULL};
    char *body = NULL;
    assert_int_equal(cs_slot_action(&x, "0", "save", "{\"filename\":\"a.bin\"}", 20, &body), 501);
    assert_non_null(strstr(body, "not_supported_error"));
    free(body);
    x.save_dir = "/tmp";
    const char *ids[] = {"", "x", "-1", "64", "1x"};
    for (int i = 0; i < (int)CS_ARRAY_LEN(ids); i++) {
        assert_int_equal(cs_slot_action(&x, ids[i], "save", "{}", 2, &body), 400);
        assert_non_null(strstr(body, "Invalid slot ID"));
        free(body);
    }
    assert_int_equal(cs_slot_action(&x, "0", "copy", "{}", 2, &body), 400);
    assert_non_null(strstr(body, "Invalid action"));
    free(body);
    assert_int_equal(cs_slot_action(&x, "0", NULL, "{}", 2, &body), 400);
    free(body);
    const char *names[] = {"{\"filename\":\"../a\"}", "{\"filename\":\"\"}", "{}", "{\"filename\":3}", "not json"};
    for (int i = 0; i < (int)CS_ARRAY_LEN(names); i++) {
        assert_int_equal(cs_slot_action(&x, "1", "restore", names[i], strlen(names[i]), &body), 400);
        assert_non_null(strstr(body, "Invalid filename"));
        free(body);
    }
}

static int parse(const char *body, struct cs_llama_request *lr, const char **param)
{
    struct cs_api_defaults d;
    memset(&d, 0, sizeof d);
    d.sp = cs_sampler_defaults();
    d.max_tokens = 256;
    d.n_vocab = 512;
    char err[256];
    return cs_llama_parse_completion(body, strlen(body), &d, lr, param, err, sizeof err);
}

static void test_fields(void **state)
{
    (void)state;
    struct cs_llama_request lr;
    const char *param = NULL;
    assert_int_equal(parse("{\"prompt\":\"a\"}", &lr, &param), CLSPEC_OK);
    assert_int_equal(lr.id_slot, -1);
    assert_int_equal(lr.n_keep, 0);
    assert_int_equal(lr.n_discard, 0);
    cs_llama_request_free(&lr);
    assert_int_equal(parse("{\"prompt\":\"a\",\"id_slot\":1,\"n_keep\":-1,\"n_discard\":7}", &lr, &param), CLSPEC_OK);
    assert_int_equal(lr.id_slot, 1);
    assert_int_equal(lr.n_keep, -1);
    assert_int_equal(lr.n_discard, 7);
    cs_llama_request_free(&lr);
    const char *bad[][2] = {{"{\"prompt\":\"a\",\"n_keep\":-2}", "n_keep"},
                            {"{\"prompt\":\"a\",\"n_keep\":\"all\"}", "n_keep"},
                            {"{\"prompt\":\"a\",\"n_discard\":-1}", "n_discard"},
                            {"{\"prompt\":\"a\",\"id_slot\":64}", "id_slot"}};
    for (int i = 0; i < (int)CS_ARRAY_LEN(bad); i++) {
        assert_int_not_equal(parse(bad[i][0], &lr, &param), CLSPEC_OK);
        assert_non_null(param);
        assert_string_equal(param, bad[i][1]);
        cs_llama_request_free(&lr);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_round_trip_and_refusals),
        cmocka_unit_test(test_actions_off),
        cmocka_unit_test(test_fields),
    };
    return cmocka_run_group_tests_name("slotfile", tests, NULL, NULL);
}
