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
