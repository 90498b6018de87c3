/* test-cl-multidev.c: two PoCL devices at once (POCL_DEVICES="pthread
 * pthread", set before the first CL call since the ICD reads it once): both
 * are listed, selectable, open together and each runs a kernel; the second
 * reuses the first one's cached binary (same device name and driver). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>

#include "cl/bandwidth.h"
#include "cl/runtime.h"
#include "base/common.h"
#include "testutil.h"

static bool is_pocl(const struct cs_cl_devinfo *d)
{
    return strstr(d->platform_name, "Portable Computing Language") != NULL;
}

static void test_two_pocl_devices(void **state)
{
    (void)state;
    char err[2048];
    struct cs_cl_devinfo *l = NULL;
    size_t n = 0;
    assert_int_equal(cs_cl_list(&l, &n, err, sizeof err), CLSPEC_OK);
    size_t pocl[4], np = 0;
    for (size_t i = 0; i < n; i++)
        if (is_pocl(&l[i]) && np < 4)
            pocl[np++] = i;
    if (np == 0) {
        free(l);
        skip(); /* no PoCL here: POCL_DEVICES means nothing */
    }
    assert_int_equal(np, 2);

    /* selecting by index reaches the second one */
    char sel[16];
    size_t idx = 99;
    snprintf(sel, sizeof sel, "%zu", pocl[1]);
    assert_int_equal(cs_cl_select(l, n, sel, &idx, err, sizeof err), CLSPEC_OK);
    assert_int_equal(idx, pocl[1]);

    struct cs_cl_dev *d[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        if (cs_cl_dev_open(&l[pocl[i]], &d[i], err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
    }
    assert_ptr_not_equal(d[0]->info.id, d[1]->info.id);
    for (int i = 0; i < 2; i++) {
        struct cs_cl_bw bw;
        int rc = cs_cl_bandwidth(d[i], 4 << 20, 1, &bw, err, sizeof err); /* checks its sums */
        if (rc != CLSPEC_OK)
            fail_msg("device %zu: %s", pocl[i], err);
        assert_true(bw.best_gbps > 0);
    }
    /* the first built (or loaded) it; the second loaded the cached binary */
    assert_int_equal(d[0]->stats.source_builds + d[0]->stats.cache_loads, 1);
    assert_int_equal(d[1]->stats.source_builds, 0);
    assert_int_equal(d[1]->stats.cache_loads, 1);
    cs_cl_dev_close(d[0]);
    cs_cl_dev_close(d[1]);
    free(l);
}

int main(void)
{
    setenv("POCL_DEVICES", "pthread pthread", 1);
    char base[700];
    tu_private_cache("test-cl-multidev", base, sizeof base);
    unsetenv("CLSPEC_NO_BINARY_CACHE");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_pocl_devices),
    };
    return cmocka_run_group_tests_name("cl-multidev", tests, NULL, NULL);
}
