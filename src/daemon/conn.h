/* conn.h: clspecd's connection accounting: open connections counted in
 * total and per client address, and the verdict a new connection gets
 * against the caps ([server] max_connections, max_connections_per_ip).
 * http.c calls cs_conn_open / cs_conn_close from libmicrohttpd's
 * connection notifications (any worker thread: the table has its own
 * mutex) and answers the first request of a connection that was over a cap
 * with 503 (total) or 429 (its address), then closes it.
 *
 * Also the file-descriptor budget: cs_conn_raise_nofile lifts the process's
 * RLIMIT_NOFILE soft limit so that the caps can be reached at all. */
#ifndef CS_DAEMON_CONN_H
#define CS_DAEMON_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cs_conn_table;

enum cs_conn_verdict {
    CS_CONN_OK = 0,       /* within both caps */
    CS_CONN_OVER_TOTAL,   /* more than max_total connections were open with it */
    CS_CONN_OVER_ADDR,    /* more than max_per_addr from its address were open with it */
};

/* One open connection (kept by the caller until cs_conn_close). */
struct cs_conn {
    unsigned char addr[16];     /* IPv4 (4 bytes, zero padded) or IPv6 (16 bytes); zeros: unknown */
    int addr_len;               /* 4, 16, or 0 (unknown family: counted in the total only) */
    enum cs_conn_verdict verdict;
    int n_total_at_open;        /* open connections, this one included, when it opened */
    int n_addr_at_open;         /* of them from its address */
    int n_checked;              /* requests the gate (gate.c) checked before libmicrohttpd read them */
    int n_req;                  /* requests libmicrohttpd handed over so far (its worker thread only) */
};

/* max_total, max_per_addr: caps (0 = none). */
int cs_conn_table_new(int max_total, int max_per_addr, struct cs_conn_table **out, char *err, size_t errlen);
void cs_conn_table_free(struct cs_conn_table *t);

/* Counts a new connection from sa (NULL or an unknown family: total only)
 * and fills *c with its verdict. Never fails: without memory for a new
 * address entry the connection is counted in the total only. */
void cs_conn_open(struct cs_conn_table *t, const struct sockaddr *sa, struct cs_conn *c);
/* Uncounts a connection that cs_conn_open counted. */
void cs_conn_close(struct cs_conn_table *t, const struct cs_conn *c);
/* Open connections now: in total, and from c's address (when c is not NULL). */
void cs_conn_counts(struct cs_conn_table *t, const struct cs_conn *c, int *n_total, int *n_addr);

/* A request's framing, header by header as the HTTP parser hands them over
 * (key and value with their lengths: a NUL inside shows as a length
 * mismatch). Refused: Content-Length together with Transfer-Encoding (a
 * request two parsers could split differently), a Transfer-Encoding other
 * than chunked, control bytes in a header's key or value (HTAB allowed in
 * values), a Content-Length that is not one decimal number. */
struct cs_framing {
    int n_cl, n_te;             /* Content-Length / Transfer-Encoding headers seen */
    bool te_chunked;            /* the (last) Transfer-Encoding is exactly "chunked" */
    bool cl_bad;                /* a Content-Length that is not digits only */
    uint64_t cl;                /* the (last) Content-Length's value, saturated */
    char te[48];                /* the (last) Transfer-Encoding value, cut */
    char bad_key[48];           /* the first header with a control byte, "" none */
};
void cs_framing_add(struct cs_framing *f, const char *key, size_t key_len, const char *val, size_t val_len);
/* 0 when acceptable, else the HTTP status (400) with msg filled. */
unsigned cs_framing_verdict(const struct cs_framing *f, char *msg, size_t msglen);

/* The raw bytes a connection sent so far, p[0..n) from its first byte,
 * checked before libmicrohttpd parses them (it hides a NUL in a header
 * and waits for any chunk size): the request line (METHOD target
 * HTTP/x.y), header lines (a token name, a colon without space before
 * it, no folding), no NUL, no CR without LF, no control byte but HTAB,
 * the framing rules above, and for a chunked body (unless the client
 * waits for 100 Continue) the first chunk size against max_body. A
 * header block over max_head bytes is refused. Requests pipelined
 * behind the first are checked as far as their bytes are there (a
 * Content-Length body is skipped; nothing past a chunked one).
 * Returns 0 with *n_checked (>= 1) requests accepted in full (a bad
 * later one stops the count: the connection closes before it);
 * CS_SCAN_MORE when the first request's header block is not complete;
 * CS_SCAN_CHUNK when it is but its first chunk size is not;
 * CS_SCAN_BODY when it is but its Content-Length body (at most
 * max_wait_body bytes; a longer one is not waited for) is not; else the
 * HTTP status (400 malformed, 413 chunk over max_body, 431 header block
 * too large) with msg filled. */
enum { CS_SCAN_MORE = -1, CS_SCAN_CHUNK = -2, CS_SCAN_BODY = -3 };
int cs_framing_scan(const char *p, size_t n, size_t max_head, size_t max_body, size_t max_wait_body, int *n_checked,
                    char *msg, size_t msglen);

/* Raises the soft RLIMIT_NOFILE to at least want (at most the hard limit);
 * *got = the soft limit afterwards. */
int cs_conn_raise_nofile(long want, long *got, char *err, size_t errlen);

#endif
