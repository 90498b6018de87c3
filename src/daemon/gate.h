/* gate.h: clspecd's accept loop in front of libmicrohttpd. libmicrohttpd
 * 0.9.75 hides a NUL inside a header from the application and waits for
 * the data of any chunk size it is told, so the gate owns the listening
 * socket: it accepts each connection (counted in the connection table,
 * conn.h), waits on its own epoll (one thread, never blocking) until the
 * first request's header block is in, peeks at it (MSG_PEEK: the bytes stay
 * for libmicrohttpd) and checks it (cs_framing_scan). A refused request is
 * answered (400, 413, 431; 408 when its header block is not complete within
 * head_timeout_s of its first byte, or its body of at most max_wait_body
 * bytes within head_timeout_s of the header block's end) and closed; an accepted one is handed
 * to libmicrohttpd (MHD_add_connection) with the number of requests checked
 * in its cs_conn, and http.c closes the connection after the answer to the
 * last of them, so that no request is ever parsed unchecked (keep-alive
 * lasts as long as the requests that came together; a client reconnects for
 * the next). A connection that sends nothing closes after idle_timeout_s.
 *
 * Shapes: one struct cs_gate per daemon; connections it holds are in a list
 * (at most the process's file-descriptor limit); the handover table maps a
 * file descriptor to its cs_conn until libmicrohttpd's connection
 * notification takes it (cs_gate_take). */
#ifndef CS_DAEMON_GATE_H
#define CS_DAEMON_GATE_H

#include <stddef.h>

struct MHD_Daemon;
struct cs_conn;
struct cs_conn_table;
struct cs_gate;

struct cs_gate_params {
    int listen_fd;               /* bound and listening; the gate closes it */
    struct MHD_Daemon *mhd;      /* started with MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC */
    struct cs_conn_table *conns; /* borrowed */
    int idle_timeout_s;          /* a connection that sends nothing closes after it (0: never) */
    int head_timeout_s;          /* from the first byte to the end of the header block (408 after it) */
    size_t max_head;             /* header block bytes (431 past it) */
    size_t max_body;             /* a chunk size over it is 413 */
    size_t max_wait_body;        /* a Content-Length body up to this size is waited for (408 when it stalls) */
};

int cs_gate_start(const struct cs_gate_params *p, struct cs_gate **out, char *err, size_t errlen);
/* Stops accepting (the listening socket closes: new connections are
 * refused, a proxy retries them elsewhere) and closes the connections the
 * gate still holds. */
void cs_gate_stop(struct cs_gate *g);
/* Stops (cs_gate_stop) and frees; after libmicrohttpd stopped (a connection
 * handed over but never taken is uncounted here). */
void cs_gate_free(struct cs_gate *g);
/* The cs_conn of a connection the gate handed over as fd (NULL when none):
 * the caller owns it from then on (cs_conn_close, free). */
struct cs_conn *cs_gate_take(struct cs_gate *g, int fd);

#endif
