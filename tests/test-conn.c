/* test-conn.c: clspecd's connection accounting (src/daemon/conn.c): the
 * verdict against the total and per-address caps, counts going back down
 * on close (entries of addresses with no connection left removed), IPv4 and
 * IPv6 addresses kept apart, unknown families counted in the total only,
 * bad caps refused, the request framing checks (Content-Length with
 * Transfer-Encoding, codings other than chunked, control bytes and NULs in
 * headers), and the open-file limit raised (never lowered). */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "base/common.h"
#include "daemon/conn.h"

static struct sockaddr_in v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(1234)};
    assert_int_equal(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return s;
}

static void test_caps(void **state)
{
    (void)state;
    struct cs_conn_table *t = NULL;
    char err[256];
    assert_int_equal(cs_conn_table_new(5, 2, &t, err, sizeof err), CLSPEC_OK);
    struct sockaddr_in a = v4("10.0.0.1"), b = v4("10.0.0.2");
    struct cs_conn c[8];
    cs_conn_open(t, (struct sockaddr *)&a, &c[0]);
    cs_conn_open(t, (struct sockaddr *)&a, &c[1]);
    assert_int_equal(c[0].verdict, CS_CONN_OK);
    assert_int_equal(c[1].verdict, CS_CONN_OK);
    assert_int_equal(c[1].n_addr_at_open, 2);
    cs_conn_open(t, (struct sockaddr *)&a, &c[2]); /* third from a: over its address's cap */
    assert_int_equal(c[2].verdict, CS_CONN_OVER_ADDR);
    assert_int_equal(c[2].n_addr_at_open, 3);
    cs_conn_open(t, (struct sockaddr *)&b, &c[3]); /* another address: fine */
    assert_int_equal(c[3].verdict, CS_CONN_OK);
    assert_int_equal(c[3].n_addr_at_open, 1);
    cs_conn_open(t, (struct sockaddr *)&b, &c[4]);
    assert_int_equal(c[4].verdict, CS_CONN_OK);
    assert_int_equal(c[4].n_total_at_open, 5);
    cs_conn_open(t, NULL, &c[5]); /* sixth: over the total, whatever its address */
    assert_int_equal(c[5].verdict, CS_CONN_OVER_TOTAL);
    assert_int_equal(c[5].n_total_at_open, 6);
    int nt = 0, na = 0;
    cs_conn_counts(t, &c[0], &nt, &na);
    assert_int_equal(nt, 6);
    assert_int_equal(na, 3);
    /* closing brings the counts down: a new connection from a is within the caps again */
    cs_conn_close(t, &c[5]);
    cs_conn_close(t, &c[2]);
    cs_conn_close(t, &c[1]);
    cs_conn_counts(t, &c[0], &nt, &na);
    assert_int_equal(nt, 3);
    assert_int_equal(na, 1);
    cs_conn_open(t, (struct sockaddr *)&a, &c[6]);
    assert_int_equal(c[6].verdict, CS_CONN_OK);
    assert_int_equal(c[6].n_addr_at_open, 2);
    cs_conn_close(t, &c[6]);
    cs_conn_close(t, &c[0]);
    cs_conn_counts(t, &c[0], &nt, &na); /* a has no connection left: its entry is gone, count 0 */
    assert_int_equal(nt, 2);
    assert_int_equal(na, 0);
    cs_conn_close(t, &c[3]);
    cs_conn_close(t, &c[4]);
    cs_conn_counts(t, NULL, &nt, NULL);
    assert_int_equal(nt, 0);
    cs_conn_table_free(t);
}

static void test_families_and_no_caps(void **state)
{
    (void)state;
    struct cs_conn_table *t = NULL;
    char err[256];
    assert_int_equal(cs_conn_table_new(0, 1, &t, err, sizeof err), CLSPEC_OK);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.0.0.1", &s6.sin6_addr), 1);
    struct sockaddr_in s4 = v4("10.0.0.1");
    struct sockaddr un = {.sa_family = AF_UNIX};
    struct cs_conn c[4];
    cs_conn_open(t, (struct sockaddr *)&s4, &c[0]);
    cs_conn_open(t, (struct sockaddr *)&s6, &c[1]); /* a different key from the IPv4 form */
    assert_int_equal(c[1].verdict, CS_CONN_OK);
    assert_int_equal(c[1].addr_len, 16);
    cs_conn_open(t, &un, &c[2]); /* unknown family: total only, never over an address cap */
    cs_conn_open(t, &un, &c[3]);
    assert_int_equal(c[3].addr_len, 0);
    assert_int_equal(c[3].verdict, CS_CONN_OK);
    assert_int_equal(c[3].n_total_at_open, 4); /* no total cap (0) */
    for (int i = 0; i < 4; i++)
        cs_conn_close(t, &c[i]);
    int nt = -1;
    cs_conn_counts(t, NULL, &nt, NULL);
    assert_int_equal(nt, 0);
    cs_conn_table_free(t);
    assert_int_equal(cs_conn_table_new(-1, 0, &t, err, sizeof err), CLSPEC_E_INVAL);
    assert_null(t);
    assert_non_null(strstr(err, "-1"));
}

/* framing of headers given as "Key: value" strings (n of them); returns the verdict, msg filled */
static unsigned framing(const char *const *h, const size_t *len, int n, char *msg, size_t msglen)
{
    struct cs_framing f = {0};
    for (int i = 0; i < n; i++) {
        size_t l = len ? len[i] : strlen(h[i]);
        const char *colon = memchr(h[i], ':', l);
        assert_non_null(colon);
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        cs_framing_add(&f, h[i], (size_t)(colon - h[i]), v, l - (size_t)(v - h[i]));
    }
    msg[0] = 0;
    return cs_framing_verdict(&f, msg, msglen);
}

static void test_framing(void **state)
{
    (void)state;
    char msg[160];
    const char *ok1[] = {"Host: x", "Content-Length: 12", "Content-Type: application/json", "X-Tab: a\tb"};
    assert_int_equal(framing(ok1, NULL, 4, msg, sizeof msg), 0);
    const char *ok2[] = {"Host: x", "transfer-encoding: Chunked"};
    assert_int_equal(framing(ok2, NULL, 2, msg, sizeof msg), 0);
    const char *both[] = {"Content-Length: 5", "Transfer-Encoding: chunked"};
    assert_int_equal(framing(both, NULL, 2, msg, sizeof msg), 400);
    assert_string_equal(msg, "Content-Length and Transfer-Encoding in one request are refused");
    const char *gz[] = {"Transfer-Encoding: gzip, chunked"};
    assert_int_equal(framing(gz, NULL, 1, msg, sizeof msg), 400);
    assert_string_equal(msg, "Transfer-Encoding 'gzip, chunked' is not supported (only one, chunked)");
    const char *two_te[] = {"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"};
    assert_int_equal(framing(two_te, NULL, 2, msg, sizeof msg), 400);
    const char *two_cl[] = {"Content-Length: 5", "Content-Length: 6"};
    assert_int_equal(framing(two_cl, NULL, 2, msg, sizeof msg), 400);
    assert_string_equal(msg, "Content-Length must be one decimal number");
    const char *neg_cl[] = {"Content-Length: -1"};
    assert_int_equal(framing(neg_cl, NULL, 1, msg, sizeof msg), 400);
    const char *ctl[] = {"Host: x", "X-Evil: a\x01b"};
    assert_int_equal(framing(ctl, NULL, 2, msg, sizeof msg), 400);
    assert_string_equal(msg, "header 'X-Evil' holds a control byte");
    const char nul[] = "X-Nul: a\0b";
    const char *nulh[] = {nul};
    size_t nul_len[] = {sizeof nul - 1};
    assert_int_equal(framing(nulh, nul_len, 1, msg, sizeof msg), 400);
    assert_string_equal(msg, "header 'X-Nul' holds a control byte");
    const char *del[] = {"X-Del: a\x7f"};
    assert_int_equal(framing(del, NULL, 1, msg, sizeof msg), 400);
    const char *keyctl[] = {"X-\x02Key: v"};
    assert_int_equal(framing(keyctl, NULL, 1, msg, sizeof msg), 400);
    assert_string_equal(msg, "header 'X-?Key' holds a control byte");
}

/* cs_framing_scan on raw bytes (n given: NULs inside); returns its result, *k the requests checked */
static int scan(const char *p, size_t n, int *k, char *msg)
{
    msg[0] = 0;
    *k = -1;
    return cs_framing_scan(p, n, 256, 1024, 16, k, msg, 160);
}
#define SCAN(lit, k, msg) scan(lit, sizeof lit - 1, k, msg)

static void test_scan(void **state)
{
    (void)state;
    char msg[160];
    int k;
    assert_int_equal(SCAN("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &k, msg), 0);
    assert_int_equal(k, 1);
    assert_int_equal(SCAN("\r\nGET / HTTP/1.0\n\n", &k, msg), 0); /* bare LF, an empty line first */
    assert_int_equal(SCAN("GET /health HTTP/1.1\r\nHost: x\r\n", &k, msg), CS_SCAN_MORE);
    assert_int_equal(SCAN("GET /health HT", &k, msg), CS_SCAN_MORE);
    /* a NUL, in a value, a name, the request line; also before the block is complete */
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-Evil: a\0b\r\n\r\n", &k, msg), 400);
    assert_non_null(strstr(msg, "NUL"));
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-E\0vil: ab\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET /\0 HTTP/1.1\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-Evil: a\0", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-Evil: a\x01" "b\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-Evil: a\x7f" "b\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-Tab: a\tb\r\n\r\n", &k, msg), 0);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nX-Evil: a\rb\r\n\r\n", &k, msg), 400); /* CR without LF */
    assert_non_null(strstr(msg, "CR"));
    /* malformed lines */
    assert_int_equal(SCAN("GET /\r\n\r\n", &k, msg), 400);
    assert_non_null(strstr(msg, "request line"));
    assert_int_equal(SCAN("GET / HTTP/1.1 x\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("G(T / HTTP/1.1\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nHost : x\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &k, msg), 400);
    assert_int_equal(SCAN("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", &k, msg), 400);
    assert_non_null(strstr(msg, "fold"));
    /* framing rules of cs_framing_verdict */
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", &k, msg), 400);
    /* chunk sizes: over max_body (1024) or 17+ digits is 413, even before the line ends */
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", &k, msg), 413);
    assert_non_null(strstr(msg, "over the limit of 1024 bytes"));
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffff", &k, msg), 413);
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\n", &k, msg), 413);
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n400\r\nab", &k, msg), 0);
    assert_int_equal(k, 1);
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4", &k, msg), CS_SCAN_CHUNK);
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &k, msg), CS_SCAN_CHUNK);
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", &k, msg), 400);
    assert_int_equal(SCAN("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", &k, msg), 0);
    /* too large a header block */
    char big[400];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(scan(big, sizeof big, &k, msg), 431);
    /* pipelined: counted while complete and good; a bad later one stops the count */
    const char pipe3[] = "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n";
    assert_int_equal(scan(pipe3, sizeof pipe3 - 1, &k, msg), 0);
    assert_int_equal(k, 3);
    assert_int_equal(scan(pipe3, sizeof pipe3 - 5, &k, msg), 0); /* the third one incomplete */
    assert_int_equal(k, 2);
    assert_int_equal(SCAN("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nX: a\0b\r\n\r\n", &k, msg), 0);
    assert_int_equal(k, 1);
    assert_int_equal(SCAN("POST /b HTTP/1.1\r\nContent-Length: 300\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n", &k, msg), 0);
    assert_int_equal(k, 1); /* the body is not all there (and over 16 bytes: not waited for): nothing after it */
    /* a body of at most max_wait_body (16) bytes is waited for */
    assert_int_equal(SCAN("POST /b HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789", &k, msg), CS_SCAN_BODY);
    assert_int_equal(SCAN("POST /b HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef", &k, msg), 0);
    assert_int_equal(k, 1);
    assert_int_equal(SCAN("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 16\r\n\r\n01", &k, msg), 0);
    assert_int_equal(k, 2); /* only the first request's body is waited for */
    assert_int_equal(SCAN("POST /b HTTP/1.1\r\nContent-Length: 16\r\nExpect: 100-continue\r\n\r\n", &k, msg), 0);
}

static void test_nofile(void **state)
{
    (void)state;
    struct rlimit before;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &before), 0);
    long got = 0;
    char err[256];
    /* asking for less than now never lowers it */
    assert_int_equal(cs_conn_raise_nofile(16, &got, err, sizeof err), CLSPEC_OK);
    if (before.rlim_cur != RLIM_INFINITY)
        assert_int_equal(got, (long)before.rlim_cur);
    /* asking for more gets at most the hard limit */
    long want = before.rlim_max == RLIM_INFINITY ? 65536 : (long)before.rlim_max;
    assert_int_equal(cs_conn_raise_nofile(want, &got, err, sizeof err), CLSPEC_OK);
    if (before.rlim_cur != RLIM_INFINITY)
        assert_true(got >= (long)before.rlim_cur && got <= want);
    struct rlimit after;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &after), 0);
    if (after.rlim_cur != RLIM_INFINITY)
        assert_int_equal((long)after.rlim_cur, got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_families_and_no_caps),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_nofile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
