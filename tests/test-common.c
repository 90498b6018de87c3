/* test-common.c: error formatting and the status table. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"

static void test_err_formats_and_returns(void **state)
{
    (void)state;
    char buf[64];
    int rc = cs_err(buf, sizeof buf, CLSPEC_E_FORMAT, "%s: bad %d", "f.gguf", 3);
    assert_int_equal(rc, CLSPEC_E_FORMAT);
    assert_string_equal(buf, "f.gguf: bad 3");
}

static void test_err_prefix(void **state)
{
    (void)state;
    char buf[32];
    cs_err(buf, sizeof buf, CLSPEC_E_IO, "inner");
    cs_err_prefix(buf, sizeof buf, CLSPEC_E_IO, "outer %d", 1);
    assert_string_equal(buf, "outer 1: inner");
    /* truncation keeps the buffer terminated */
    cs_err(buf, sizeof buf, CLSPEC_E_IO, "0123456789012345678901234567");
    cs_err_prefix(buf, sizeof buf, CLSPEC_E_IO, "prefix");
    assert_true(strlen(buf) < sizeof buf);
    assert_memory_equal(buf, "prefix: 0123", 12);
}

static void test_strerror_distinct(void **state)
{
    (void)state;
    for (int a = 0; a >= CLSPEC_E_SHUTDOWN; a--)
        for (int b = a - 1; b >= CLSPEC_E_SHUTDOWN; b--)
            assert_string_not_equal(clspec_strerror(a), clspec_strerror(b));
    assert_string_equal(clspec_strerror(12345), "unknown status");
}

static void test_checked_arith(void **state)
{
    (void)state;
    uint64_t r;
    assert_true(cs_mul_ok(1u << 20, 1u << 20, &r));
    assert_true(r == (1ull << 40));
    assert_false(cs_mul_ok(UINT64_MAX / 2, 3, &r));
    assert_false(cs_add_ok(UINT64_MAX, 1, &r));
}

/* cs_grow: room for what is asked, doubling, refused beyond size_t (unchanged);
 * cs_str_append: a new string, then appended, with embedded lengths */
static void test_grow_and_append(void **state)
{
    (void)state;
    size_t cap = 0;
    int *v = cs_grow(NULL, &cap, 1, sizeof *v);
    assert_non_null(v);
    assert_int_equal(cap, 8);
    for (int i = 0; i < 8; i++)
        v[i] = i;
    int *w = cs_grow(v, &cap, 9, sizeof *w);
    assert_non_null(w);
    assert_int_equal(cap, 16);
    assert_int_equal(w[7], 7); /* kept */
    assert_ptr_equal(cs_grow(w, &cap, 16, sizeof *w), w); /* room already */
    assert_null(cs_grow(w, &cap, SIZE_MAX / 2, sizeof *w));
    assert_int_equal(cap, 16);
    free(w);
    char *s = NULL;
    assert_int_equal(cs_str_append(&s, "ab", 2), 0);
    assert_int_equal(cs_str_append(&s, "cdef", 3), 0);
    assert_int_equal(cs_str_append(&s, "", 0), 0);
    assert_string_equal(s, "abcde");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_formats_and_returns),
        cmocka_unit_test(test_err_prefix),
        cmocka_unit_test(test_strerror_distinct),
        cmocka_unit_test(test_checked_arith),
        cmocka_unit_test(test_grow_and_append),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
