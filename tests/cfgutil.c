/* cfgutil: see cfgutil.h. */
#include "config.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cfgutil.h"
#include "testutil.h"

char *cfu_write_tmp(const char *text, size_t len)
{
    char *p = tu_tmp_path(".ini");
    assert_int_equal(tu_write_file(p, text, len), 0);
    return p;
}

int cfu_load_text(const char *text, struct cs_config **c, char *err, size_t errlen, char **path_out)
{
    char *p = cfu_write_tmp(text, strlen(text));
    int rc = cs_config_load(p, c, err, errlen);
    unlink(p);
    if (path_out)
        *path_out = p;
    else
        free(p);
    return rc;
}

struct cs_config *cfu_load_ok(const char *text)
{
    struct cs_config *c = NULL;
    char err[CLSPEC_ERRLEN] = "";
    int rc = cfu_load_text(text, &c, err, sizeof err, NULL);
    if (rc != CLSPEC_OK)
        print_message("unexpected error: %s\n", err);
    assert_int_equal(rc, CLSPEC_OK);
    assert_non_null(c);
    return c;
}

/* Asserts text is refused with "<file>:<line>: " + a message containing each
 * of the given substrings (NULL-terminated). */
static void expect_err_v(const char *text, int line, va_list ap)
{
    struct cs_config *c = (struct cs_config *)1;
    char err[CLSPEC_ERRLEN] = "", *path, prefix[PATH_MAX + 32];
    int rc = cfu_load_text(text, &c, err, sizeof err, &path);
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    free(path);
    if (rc >= 0) {
        print_message("accepted:\n%s\n", text);
        cs_config_free(c);
        fail();
    }
    assert_null(c);
    if (strncmp(err, prefix, strlen(prefix)) != 0) {
        print_message("want prefix '%s'\n got '%s'\n", prefix, err);
        fail();
    }
    const char *sub;
    while ((sub = va_arg(ap, const char *)) != NULL)
        if (!strstr(err, sub)) {
            print_message("want '%s'\n in '%s'\n", sub, err);
            fail();
        }
}

void cfu_expect_err(const char *text, int line, ...)
{
    va_list ap;
    va_start(ap, line);
    expect_err_v(text, line, ap);
    va_end(ap);
}

char *cfu_fixture(const char *rel)
{
    size_t n = strlen(CS_TOP_SRCDIR) + strlen(rel) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", CS_TOP_SRCDIR, rel);
    return p;
}


