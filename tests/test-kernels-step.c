/* test-kernels-step.c: the kernels of one speculative step in the layout the
 * step uses (src/model/forward.c, device tokens): a forward's row tokens, the
 * greedy runs' next-row tokens and their verdicts in one int32 buffer
 * ([tok n | nxt k | res 2k]), so they go up in one write and come back in
 * one read.
 *   - cs_op_greedy_accept_at with nxt and res at offsets of the buffer that
 *     holds the tokens equals the C twin cs_ref_greedy_accept, and leaves the
 *     tokens in front untouched, in both kernel families;
 *   - at offsets 0 of separate buffers it equals cs_op_greedy_accept;
 *   - offsets past 32 bits and NULL buffers are refused with an error. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "ops/ops.h"
#include "ref/ops_ref.h"
#include "kernutil.h"
#include "testutil.h"

static struct cs_cl_dev *devs[2];

/* One step's buffer: n random tokens, then k next tokens over a 3-token
 * alphabet (many matches, -1 at run ends), then 2k zeros; am (k) argmaxes. */
static void step_case(struct tu_rng *r, int n, int k, int32_t *buf, int32_t *am)
{
    for (int i = 0; i < n; i++)
        buf[i] = 1000 + (int32_t)(tu_rng_u64(r) % 500);
    for (int i = 0; i < k; i++) {
        am[i] = (int32_t)(tu_rng_u64(r) % 3);
        uint32_t u = (uint32_t)(tu_rng_u64(r) % 10);
        buf[n + i] = i == k - 1 || u == 0 ? -1 : u < 8 ? am[i] : (am[i] + 1) % 3;
    }
    memset(buf + n + k, 0, (size_t)k * 2 * sizeof *buf);
}

static void greedy_at_family(enum cs_kfamily fam)
{
    struct cs_cl_dev *d = devs[fam];
    if (!d)
        skip();
    char err[512];
    struct tu_rng r;
    tu_rng_seed(&r, 77);
    for (int n = 1; n <= 41; n += 8) {
        const int k = 1 + (int)(tu_rng_u64(&r) % (uint64_t)n); /* kept rows: 1..n */
        int32_t *buf = malloc((size_t)(n + 3 * k) * 4), *am = malloc((size_t)k * 4), *ref = malloc((size_t)k * 8);
        assert_true(buf && am && ref);
        step_case(&r, n, k, buf, am);
        cs_ref_greedy_accept(am, buf + n, k, ref);
        cl_mem bb = ku_buf(d, (size_t)(n + 3 * k) * 4, buf), ba = ku_buf(d, (size_t)k * 4, am);
        assert_int_equal(cs_op_greedy_accept_at(d, ba, bb, (size_t)n, bb, (size_t)(n + k), k, err, sizeof err),
                         CLSPEC_OK);
        int32_t *got = ku_read(d, bb, 0, (size_t)(n + 3 * k) * 4);
        assert_memory_equal(got, buf, (size_t)(n + k) * 4); /* tokens and next tokens as they went up */
        assert_memory_equal(got + n + k, ref, (size_t)k * 8);
        /* separate buffers at offset 0: the plain op's bits */
        cl_mem bn = ku_buf(d, (size_t)k * 4, buf + n), br = ku_buf(d, (size_t)k * 8, NULL);
        cl_mem br2 = ku_buf(d, (size_t)k * 8, NULL);
        assert_int_equal(cs_op_greedy_accept_at(d, ba, bn, 0, br, 0, k, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_op_greedy_accept(d, ba, bn, br2, k, err, sizeof err), CLSPEC_OK);
        int32_t *g1 = ku_read(d, br, 0, (size_t)k * 8), *g2 = ku_read(d, br2, 0, (size_t)k * 8);
        assert_memory_equal(g1, ref, (size_t)k * 8);
        assert_memory_equal(g2, ref, (size_t)k * 8);
        free(g1);
        free(g2);
        free(got);
        clReleaseMemObject(bb);
        clReleaseMemObject(ba);
        clReleaseMemObject(bn);
        clReleaseMemObject(br);
        clReleaseMemObject(br2);
        free(buf);
        free(am);
        free(ref);
    }
    cl_mem b = ku_buf(d, 64, NULL);
    assert_int_equal(cs_op_greedy_accept_at(d, b, b, (size_t)1 << 32, b, 0, 2, err, sizeof err), CLSPEC_E_RANGE);
    assert_int_equal(cs_op_greedy_accept_at(d, b, b, 0, b, UINT32_MAX, 2, err, sizeof err), CLSPEC_E_RANGE);
    assert_int_equal(cs_op_greedy_accept_at(d, NULL, b, 0, b, 4, 2, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_op_greedy_accept_at(d, b, b, 0, b, 4, 0, err, sizeof err), CLSPEC_E_INVAL);
    clReleaseMemObject(b);
}

static void test_greedy_accept_at_cpu(void **s)
{
    (void)s;
    greedy_at_family(CS_KFAMILY_CPU);
}

static void test_greedy_accept_at_gpu(void **s)
{
    (void)s;
    greedy_at_family(CS_KFAMILY_GPU);
}

static int setup(void **state)
{
    (void)state;
    return ku_open_families(devs, false, "speculative step kernel tests") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    ku_close_families(devs);
    return 0;
}

const char *__asan_default_options(void); /* as tests/test-kernels.c: PoCL threads crash LSan's tracer */
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_accept_at_cpu),
        cmocka_unit_test(test_greedy_accept_at_gpu),
    };
    if (getenv("CLSPEC_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CLSPEC_TEST_FILTER"));
    return _cmocka_run_group_tests("kernels-step", tests, CS_ARRAY_LEN(tests), setup, teardown);
}
