/* test-strbuf.c: the growable string used to build prompts and /metrics. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/strbuf.h"

static void test_append_and_take(void **state)
{
    (void)state;
    struct cs_strbuf b = {0};
    char *out = NULL;
    size_t len = 99;
    /* nothing appended: an empty string, not NULL */
    assert_int_equal(cs_strbuf_take(&b, &out, &len), CLSPEC_OK);
    assert_non_null(out);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    free(out);

    cs_strbuf_put(&b, "ab");
    cs_strbuf_put_n(&b, "c\0d", 3); /* embedded NUL kept, length counts it */
    cs_strbuf_printf(&b, "[%d|%s]", 42, "x");
    assert_int_equal(b.len, 5 + 6);
    assert_memory_equal(b.p, "abc\0d[42|x]", 12);
    assert_int_equal(cs_strbuf_take(&b, &out, &len), CLSPEC_OK);
    assert_int_equal(len, 11);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    free(out);
}

/* growth well past the first allocation, printf longer than any fixed buffer */
static void test_growth(void **state)
{
    (void)state;
    struct cs_strbuf b = {0};
    char big[5000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    size_t want = 0;
    for (int i = 0; i < 100; i++) {
        cs_strbuf_printf(&b, "%d:%s;", i, big);
        want += (size_t)snprintf(NULL, 0, "%d:", i) + strlen(big) + 1;
        assert_int_equal(b.len, want);
        assert_int_equal(strlen(b.p), want);
        assert_true(b.cap > b.len);
    }
    assert_false(b.oom);
    assert_memory_equal(b.p + want - strlen(big) - 1 - 3, "99:", 3);
    cs_strbuf_free(&b);
    assert_null(b.p);
    cs_strbuf_free(&b); /* twice is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_take),
        cmocka_unit_test(test_growth),
    };
    return cmocka_run_group_tests_name("strbuf", tests, NULL, NULL);
}
