/* conn.c: see conn.h. The per-address counts live in a chained hash table
 * (256 buckets, an entry per address with open connections, removed when
 * its count returns to 0), all under one mutex. */
#include "config.h"

#include "daemon/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "base/common.h"

#define N_BUCKETS 256

struct addr_entry {
    struct addr_entry *next;
    unsigned char addr[16];
    int addr_len;
    int n;                      /* open connections from this address */
};

struct cs_conn_table {
    pthread_mutex_t mu;
    int max_total, max_per_addr; /* 0 = no cap */
    int n_total;
    struct addr_entry *bucket[N_BUCKETS];
};

int cs_conn_table_new(int max_total, int max_per_addr, struct cs_conn_table **out, char *err, size_t errlen)
{
    *out = NULL;
    if (max_total < 0 || max_per_addr < 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "connection caps must be >= 0 (got %d, %d)", max_total,
                      max_per_addr);
    struct cs_conn_table *t = calloc(1, sizeof *t);
    if (!t)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    pthread_mutex_init(&t->mu, NULL);
    t->max_total = max_total;
    t->max_per_addr = max_per_addr;
    *out = t;
    return CLSPEC_OK;
}

void cs_conn_table_free(struct cs_conn_table *t)
{
    if (!t)
        return;
    for (int b = 0; b < N_BUCKETS; b++)
        for (struct addr_entry *e = t->bucket[b], *nx; e; e = nx) {
            nx = e->next;
            free(e);
        }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* The address bytes of sa into c (addr_len 0 for other families). */
static void addr_of(const struct sockaddr *sa, struct cs_conn *c)
{
    memset(c->addr, 0, sizeof c->addr);
    c->addr_len = 0;
    if (sa && sa->sa_family == AF_INET) {
        memcpy(c->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        c->addr_len = 4;
    } else if (sa && sa->sa_family == AF_INET6) {
        memcpy(c->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        c->addr_len = 16;
    }
}

static unsigned bucket_of(const struct cs_conn *c)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < c->addr_len; i++)
        h = (h ^ c->addr[i]) * 16777619u;
    return h % N_BUCKETS;
}

/* The entry of c's address (t->mu held); NULL when none. */
static struct addr_entry **find(struct cs_conn_table *t, const struct cs_conn *c)
{
    struct addr_entry **pp = &t->bucket[bucket_of(c)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->addr_len == c->addr_len && memcmp((*pp)->addr, c->addr, (size_t)c->addr_len) == 0)
            return pp;
    return pp;
}

void cs_conn_open(struct cs_conn_table *t, const struct sockaddr *sa, struct cs_conn *c)
{
    addr_of(sa, c);
    pthread_mutex_lock(&t->mu);
    t->n_total++;
    c->n_total_at_open = t->n_total;
    c->n_addr_at_open = 0;
    if (c->addr_len) {
        struct addr_entry **pp = find(t, c);
        if (!*pp && (*pp = calloc(1, sizeof **pp)) != NULL) {
            memcpy((*pp)->addr, c->addr, sizeof c->addr);
            (*pp)->addr_len = c->addr_len;
        }
        if (*pp)
            c->n_addr_at_open = ++(*pp)->n;
        else
            c->addr_len = 0; /* no memory: counted in the total only */
    }
    if (t->max_total > 0 && c->n_total_at_open > t->max_total)
        c->verdict = CS_CONN_OVER_TOTAL;
    else if (t->max_per_addr > 0 && c->n_addr_at_open > t->max_per_addr)
        c->verdict = CS_CONN_OVER_ADDR;
    else
        c->verdict = CS_CONN_OK;
    pthread_mutex_unlock(&t->mu);
}

void cs_conn_close(struct cs_conn_table *t, const struct cs_conn *c)
{
    pthread_mutex_lock(&t->mu);
    t->n_total--;
    if (c->addr_len) {
        struct addr_entry **pp = find(t, c);
        if (*pp && --(*pp)->n <= 0) {
            struct addr_entry *e = *pp;
            *pp = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void cs_conn_counts(struct cs_conn_table *t, const struct cs_conn *c, int *n_total, int *n_addr)
{
    pthread_mutex_lock(&t->mu);
    *n_total = t->n_total;
    if (n_addr) {
        *n_addr = 0;
        if (c && c->addr_len) {
            struct addr_entry **pp = find(t, c);
            *n_addr = *pp ? (*pp)->n : 0;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

int cs_conn_raise_nofile(long want, long *got, char *err, size_t errlen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return cs_err(err, errlen, CLSPEC_E_IO, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    if (want > 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < want) {
        rlim_t to = (rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max < want) ? rl.rlim_max : (rlim_t)want;
        if (to > rl.rlim_cur) {
            struct rlimit nr = {to, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &nr) != 0)
                return cs_err(err, errlen, CLSPEC_E_IO, "setrlimit(RLIMIT_NOFILE, %ld): %s", (long)to,
                              strerror(errno));
            rl.rlim_cur = to;
        }
    }
    *got = rl.rlim_cur == RLIM_INFINITY ? (long)INT32_MAX : (long)rl.rlim_cur;
    return CLSPEC_OK;
}

/* ---------------------------------------------------------------- framing */

static bool has_ctl(const char *p, size_t n, bool allow_tab)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && !(allow_tab && ch == '\t')) || ch == 0x7f)
            return true;
    }
    return false;
}

static bool key_is(const char *key, size_t key_len, const char *name)
{
    return key_len == strlen(name) && strncasecmp(key, name, key_len) == 0;
}

void cs_framing_add(struct cs_framing *f, const char *key, size_t key_len, const char *val, size_t val_len)
{
    if (!key)
        return;
    if (!val)
        val_len = 0;
    bool bad = has_ctl(key, key_len, false) || memchr(key, ' ', key_len) != NULL ||
               (val && has_ctl(val, val_len, true));
    if (bad && !f->bad_key[0]) {
        size_t n = CS_MIN(key_len, sizeof f->bad_key - 1);
        for (size_t i = 0; i < n; i++) /* printable in the message */
            f->bad_key[i] = (unsigned char)key[i] < 0x20 || (unsigned char)key[i] >= 0x7f ? '?' : key[i];
        f->bad_key[n] = 0;
        if (!n)
            snprintf(f->bad_key, sizeof f->bad_key, "(empty)");
    }
    if (key_is(key, key_len, "Content-Length")) {
        f->n_cl++;
        bool digits = val_len > 0;
        for (size_t i = 0; i < val_len; i++)
            digits &= val[i] >= '0' && val[i] <= '9';
        f->cl_bad |= !digits;
        for (size_t i = 0; digits && i < val_len; i++) /* saturating */
            f->cl = f->cl > UINT64_MAX / 10 - 10 ? UINT64_MAX : f->cl * 10 + (uint64_t)(val[i] - '0');
    } else if (key_is(key, key_len, "Transfer-Encoding")) {
        f->n_te++;
        f->te_chunked = val_len == 7 && strncasecmp(val, "chunked", 7) == 0;
        size_t n = CS_MIN(val_len, sizeof f->te - 1);
        for (size_t i = 0; i < n; i++)
            f->te[i] = (unsigned char)val[i] < 0x20 || (unsigned char)val[i] >= 0x7f ? '?' : val[i];
        f->te[n] = 0;
    }
}

unsigned cs_framing_verdict(const struct cs_framing *f, char *msg, size_t msglen)
{
    if (f->bad_key[0]) {
        snprintf(msg, msglen, "header '%s' holds a control byte", f->bad_key);
        return 400;
    }
    if (f->n_cl && f->n_te) {
        snprintf(msg, msglen, "Content-Length and Transfer-Encoding in one request are refused");
        return 400;
    }
    if (f->n_te > 1 || (f->n_te && !f->te_chunked)) {
        snprintf(msg, msglen, "Transfer-Encoding '%s' is not supported (only one, chunked)", f->te);
        return 400;
    }
    if (f->n_cl > 1 || f->cl_bad) {
        snprintf(msg, msglen, "Content-Length must be one decimal number");
        return 400;
    }
    return 0;
}

/* ---------------------------------------------------------------- raw scan */

/* RFC 9110 token characters (method, header name). */
static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The end of the line starting at p[i] (the index of its LF) within n, -1 none yet. */
static ptrdiff_t line_end(const char *p, size_t i, size_t n)
{
    const char *lf = memchr(p + i, '\n', n - i);
    return lf ? lf - p : -1;
}

/* Checks the request line p[0..len) (the CR, if any, not in len). */
static bool request_line_ok(const char *p, size_t len)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= len || p[i] != ' ')
        return false;
    size_t t0 = ++i;
    while (i < len && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] != 0x7f)
        i++;
    if (i == t0 || len - i != 9 || p[i] != ' ')
        return false;
    const char *v = p + i + 1;
    return memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' && v[7] >= '0' && v[7] <= '9';
}

/* One header block p[0..end) (from the request line to the empty line's
 * LF, exclusive): 0 when acceptable (f filled, *expect_continue set), else
 * 400 with msg. */
static unsigned header_block(const char *p, size_t end, struct cs_framing *f, bool *expect_continue, char *msg,
                             size_t msglen)
{
    for (size_t i = 0; i < end; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == 0) {
            snprintf(msg, msglen, "a NUL byte in the request's header block");
            return 400;
        }
        if (ch == '\r' && p[i + 1] != '\n') { /* p[end] is the block's last LF */
            snprintf(msg, msglen, "a CR not followed by LF in the request's header block");
            return 400;
        }
    }
    size_t at = 0;
    bool first = true;
    while (at < end) {
        ptrdiff_t lf = line_end(p, at, end + 1);
        size_t len = (size_t)lf - at;
        if (len && p[at + len - 1] == '\r')
            len--;
        const char *l = p + at;
        at = (size_t)lf + 1;
        if (first) {
            first = false;
            if (!request_line_ok(l, len)) {
                snprintf(msg, msglen, "malformed request line (want: METHOD target HTTP/x.y)");
                return 400;
            }
            continue;
        }
        if (len == 0)
            break; /* the empty line ending the block */
        if (l[0] == ' ' || l[0] == '\t') {
            snprintf(msg, msglen, "a folded header line (obsolete line folding) is refused");
            return 400;
        }
        size_t k = 0;
        while (k < len && is_tchar((unsigned char)l[k]))
            k++;
        if (k == 0 || k >= len || l[k] != ':') {
            char name[40];
            size_t n = CS_MIN(k, sizeof name - 1);
            memcpy(name, l, n);
            name[n] = 0;
            snprintf(msg, msglen, "malformed header line%s%s (want: name: value, no space before the colon)",
                     n ? " after " : "", name);
            return 400;
        }
        size_t v = k + 1, ve = len;
        while (v < ve && (l[v] == ' ' || l[v] == '\t'))
            v++;
        while (ve > v && (l[ve - 1] == ' ' || l[ve - 1] == '\t'))
            ve--;
        cs_framing_add(f, l, k, l + v, ve - v);
        if (k == 6 && strncasecmp(l, "Expect", 6) == 0 && ve - v == 12 && strncasecmp(l + v, "100-continue", 12) == 0)
            *expect_continue = true;
    }
    return cs_framing_verdict(f, msg, msglen);
}

/* The first chunk-size line at p[0..n): 0 acceptable, CS_SCAN_MORE when
 * incomplete, 413 over max_body, 400 malformed (msg filled). */
static int chunk_line(const char *p, size_t n, size_t max_body, char *msg, size_t msglen)
{
    uint64_t size = 0;
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0)
            break;
        if (i >= 16 || (size << 4 | (uint64_t)d) > (uint64_t)max_body) {
            snprintf(msg, msglen, "a chunk of %s0x%.*s bytes: the request body is over the limit of %zu bytes",
                     i >= 16 ? "more than " : "", (int)CS_MIN(i + 1, 16), p, max_body);
            return 413;
        }
        size = size << 4 | (uint64_t)d;
    }
    if (i == n)
        return CS_SCAN_MORE;
    if (i == 0) {
        snprintf(msg, msglen, "malformed chunk size (want hex digits)");
        return 400;
    }
    unsigned char ch = (unsigned char)p[i];
    if (ch != '\r' && ch != '\n' && ch != ';' && ch != ' ' && ch != '\t') {
        snprintf(msg, msglen, "malformed chunk size (want hex digits)");
        return 400;
    }
    return memchr(p + i, '\n', n - i) ? 0 : CS_SCAN_MORE;
}

int cs_framing_scan(const char *p, size_t n, size_t max_head, size_t max_body, size_t max_wait_body, int *n_checked,
                    char *msg, size_t msglen)
{
    *n_checked = 0;
    size_t at = 0;
    for (;;) {
        size_t start = at;
        while (at < n && (p[at] == '\r' || p[at] == '\n')) /* empty lines before a request line are allowed */
            at++;
        if (at - start > 64) {
            snprintf(msg, msglen, "more than 64 empty lines before a request line");
            return 400;
        }
        /* the block ends at an empty line: LF (CR) LF */
        size_t end = 0;
        bool found = false;
        for (size_t i = at; i < n && !found; i++) {
            if (p[i] != '\n')
                continue;
            size_t j = i + 1;
            if (j < n && p[j] == '\r')
                j++;
            if (j < n && p[j] == '\n') {
                end = j;
                found = i > at;
            }
        }
        if (!found) {
            size_t have = n - at;
            for (size_t i = at; i < n; i++) /* refuse early what no further byte can make valid */
                if (p[i] == 0 || ((unsigned char)p[i] < 0x20 && p[i] != '\r' && p[i] != '\n' && p[i] != '\t') ||
                    p[i] == 0x7f) {
                    if (*n_checked > 0)
                        return 0; /* a later pipelined request: the connection closes before it */
                    snprintf(msg, msglen, "a %s byte in the request's header block", p[i] ? "control" : "NUL");
                    return 400;
                }
            if (*n_checked > 0)
                return 0;
            if (have > max_head) {
                snprintf(msg, msglen, "request header block over %zu bytes", max_head);
                return 431;
            }
            return CS_SCAN_MORE;
        }
        if (end - at > max_head) {
            if (*n_checked > 0)
                return 0;
            snprintf(msg, msglen, "request header block over %zu bytes", max_head);
            return 431;
        }
        struct cs_framing f = {0};
        bool expect = false;
        unsigned code = header_block(p + at, end - at, &f, &expect, msg, msglen);
        for (size_t i = at; !code && i < end; i++) /* control bytes other than CR LF HTAB */
            if (((unsigned char)p[i] < 0x20 && p[i] != '\r' && p[i] != '\n' && p[i] != '\t') || p[i] == 0x7f) {
                snprintf(msg, msglen, "a control byte in the request's header block");
                code = 400;
            }
        if (code)
            return *n_checked > 0 ? 0 : (int)code;
        at = end + 1;
        if (expect) { /* the client waits for 100 Continue before its body: nothing after it to look at */
            (*n_checked)++;
            return 0;
        }
        if (f.n_te) { /* chunked (the verdict allows no other): its first chunk size, not further */
            int rc = chunk_line(p + at, n - at, max_body, msg, msglen);
            if (rc == CS_SCAN_MORE && *n_checked == 0)
                return CS_SCAN_CHUNK;
            if (rc > 0)
                return *n_checked > 0 ? 0 : rc;
            (*n_checked)++;
            return 0;
        }
        (*n_checked)++;
        uint64_t cl = f.cl; /* its body, then the next request (pipelined) */
        if (cl > n - at)
            return *n_checked == 1 && cl <= max_wait_body ? CS_SCAN_BODY : 0;
        at += (size_t)cl;
        if (at >= n)
            return 0;
    }
}
