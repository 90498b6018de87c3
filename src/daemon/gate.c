/* gate.c: see gate.h. One thread: an epoll on the listening socket, an
 * eventfd (stop) and every connection held. Client sockets are
 * edge-triggered: the gate only peeks (the bytes stay queued), so a
 * level-triggered wait would wake at once again; each new arrival is a new
 * edge. Deadlines are swept every 200 ms. */
#include "config.h"

#include "daemon/gate.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/common.h"
#include "daemon/api.h"
#include "daemon/conn.h"
#include "daemon/log.h"

enum { CHUNK_WAIT_MS = 1000, DRAIN_MS = 2000, DRAIN_MAX = 1 << 20, SWEEP_MS = 200 };

/* One connection the gate holds. Times in cs_now() seconds; 0: not yet. */
struct held {
    struct held *prev, *next;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct cs_conn *cc;          /* counted in the connection table */
    double t_open, t_first;      /* accepted; its first byte seen */
    double t_head;               /* header block complete, waiting for the first chunk size or the body */
    bool wait_body;              /* t_head: waiting for a Content-Length body (else a chunk size) */
    double t_drain;              /* refused: answer sent, reading what is left until EOF */
    size_t drained;
};

struct cs_gate {
    struct cs_gate_params p;
    int ep, wake;
    pthread_t th;
    bool started;
    bool listen_paused;          /* out of descriptors: accept() rests until t_resume */
    double t_resume;
    struct held *list;
    char *buf;                   /* buf_cap bytes: one peek */
    size_t buf_cap;
    pthread_mutex_t mu;          /* by_fd */
    struct cs_conn **by_fd;      /* (by_fd_cap) handed over, not yet taken */
    int by_fd_cap;
};

static char tag_listen, tag_wake; /* epoll data of the listening socket and the eventfd */

static void unlink_held(struct cs_gate *g, struct held *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        g->list = h->next;
    if (h->next)
        h->next->prev = h->prev;
}

/* Closes a connection the gate holds and uncounts it. */
static void close_held(struct cs_gate *g, struct held *h)
{
    unlink_held(g, h);
    close(h->fd);
    cs_conn_close(g->p.conns, h->cc);
    free(h->cc);
    free(h);
}

/* Hands h to libmicrohttpd with n_checked requests checked. */
static void handover(struct cs_gate *g, struct held *h, int n_checked)
{
    unlink_held(g, h);
    epoll_ctl(g->ep, EPOLL_CTL_DEL, h->fd, NULL);
    h->cc->n_checked = n_checked;
    h->cc->n_req = 0;
    bool tabled = false;
    pthread_mutex_lock(&g->mu);
    if (h->fd >= g->by_fd_cap) {
        int cap = CS_MAX(h->fd + 1, g->by_fd_cap * 2);
        struct cs_conn **nb = realloc(g->by_fd, (size_t)cap * sizeof *nb);
        if (nb) {
            memset(nb + g->by_fd_cap, 0, (size_t)(cap - g->by_fd_cap) * sizeof *nb);
            g->by_fd = nb;
            g->by_fd_cap = cap;
        }
    }
    if (h->fd < g->by_fd_cap) {
        struct cs_conn *stale = g->by_fd[h->fd]; /* never taken, and its descriptor is reused: it is gone */
        if (stale) {
            cs_conn_close(g->p.conns, stale);
            free(stale);
        }
        g->by_fd[h->fd] = h->cc;
        tabled = true;
    }
    pthread_mutex_unlock(&g->mu);
    if (!tabled) { /* no memory: not handed over */
        close(h->fd);
        cs_conn_close(g->p.conns, h->cc);
        free(h->cc);
        free(h);
        return;
    }
    int fd = h->fd;
    if (MHD_add_connection(g->p.mhd, fd, (const struct sockaddr *)&h->addr, h->addr_len) != MHD_YES) {
        struct cs_conn *cc = cs_gate_take(g, fd); /* NULL: libmicrohttpd's notification took it (and frees it) */
        if (cc) {
            cs_conn_close(g->p.conns, cc);
            free(cc);
        }
        cs_log(CS_LOG_DEBUG, NULL, "http: a connection could not be handed over (libmicrohttpd's limit)");
    }
    free(h);
}

static const char *reason(unsigned code)
{
    switch (code) {
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    default: return "Bad Request";
    }
}

/* Answers h with code (an error body naming msg), then drains it until EOF or DRAIN_MS. */
static void refuse(struct cs_gate *g, struct held *h, unsigned code, const char *msg)
{
    cs_log(CS_LOG_INFO, NULL, "HTTP %u (checked before parsing): %s", code, msg);
    char *body = cs_api_error_json((int)code, msg, NULL);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n", code, reason(code), body ? strlen(body) : 0);
    if (send(h->fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT) == hn && body)
        send(h->fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT); /* small: fits the socket's buffer */
    free(body);
    shutdown(h->fd, SHUT_WR);
    h->t_drain = cs_now();
    (void)g;
}

/* Reads what a refused connection still sends; closes it at EOF. */
static void drain(struct cs_gate *g, struct held *h)
{
    for (;;) {
        ssize_t n = recv(h->fd, g->buf, g->buf_cap, MSG_DONTWAIT);
        if (n > 0 && (h->drained += (size_t)n) <= DRAIN_MAX)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        close_held(g, h);
        return;
    }
}

static void on_ready(struct cs_gate *g, struct held *h, uint32_t events)
{
    if (h->t_drain > 0) {
        drain(g, h);
        return;
    }
    ssize_t n = recv(h->fd, g->buf, g->buf_cap, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_held(g, h); /* closed (or reset) before a whole request */
        return;
    }
    if (n < 0)
        return;
    if (h->t_first == 0)
        h->t_first = cs_now();
    char msg[192];
    int k = 0;
    int rc = cs_framing_scan(g->buf, (size_t)n, g->p.max_head, g->p.max_body, g->p.max_wait_body, &k, msg,
                             sizeof msg);
    if (rc == 0)
        handover(g, h, k);
    else if (rc > 0)
        refuse(g, h, (unsigned)rc, msg);
    else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        close_held(g, h); /* the peer stopped sending inside the header block */
    else if ((rc == CS_SCAN_CHUNK || rc == CS_SCAN_BODY) && h->t_head == 0) {
        h->t_head = cs_now();
        h->wait_body = rc == CS_SCAN_BODY;
    }
}

static void on_accept(struct cs_gate *g)
{
    for (int i = 0; i < 256; i++) {
        struct held *h = calloc(1, sizeof *h);
        struct cs_conn *cc = malloc(sizeof *cc);
        if (!h || !cc) {
            free(h);
            free(cc);
            return; /* the listening socket stays readable: retried at the next wait */
        }
        h->addr_len = sizeof h->addr;
        int fd = accept4(g->p.listen_fd, (struct sockaddr *)&h->addr, &h->addr_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            free(h);
            free(cc);
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) { /* rest 100 ms, then try again */
                cs_log(CS_LOG_WARN, NULL, "http: accept: %s (connections wait in the backlog)", strerror(e));
                epoll_ctl(g->ep, EPOLL_CTL_DEL, g->p.listen_fd, NULL);
                g->listen_paused = true;
                g->t_resume = cs_now() + 0.1;
            }
            return;
        }
        h->fd = fd;
        h->cc = cc;
        h->t_open = cs_now();
        cs_conn_open(g->p.conns, (const struct sockaddr *)&h->addr, cc);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = h};
        if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            cs_conn_close(g->p.conns, cc);
            free(cc);
            free(h);
            continue;
        }
        h->next = g->list;
        if (g->list)
            g->list->prev = h;
        g->list = h;
    }
}

/* Deadlines: silent connections close, slow header blocks and small
 * bodies get 408, a chunked request whose first chunk size did not follow
 * goes on unchecked past it (libmicrohttpd reads it), refused ones stop
 * draining. */
static void sweep(struct cs_gate *g, double now)
{
    double head_s = g->p.head_timeout_s > 0 ? g->p.head_timeout_s : 10;
    for (struct held *h = g->list, *nx; h; h = nx) {
        nx = h->next;
        if (h->t_drain > 0) {
            if (now - h->t_drain > DRAIN_MS / 1000.0)
                close_held(g, h);
        } else if (h->t_head > 0 && h->wait_body) {
            if (now - h->t_head > head_s) {
                char msg[96];
                snprintf(msg, sizeof msg, "the request's body did not arrive within %.0f s", head_s);
                refuse(g, h, 408, msg);
            }
        } else if (h->t_head > 0) {
            if (now - h->t_head > CHUNK_WAIT_MS / 1000.0)
                handover(g, h, 1);
        } else if (h->t_first > 0) {
            if (now - h->t_first > head_s) {
                char msg[96];
                snprintf(msg, sizeof msg, "the request's header block did not arrive within %.0f s", head_s);
                refuse(g, h, 408, msg);
            }
        } else if (g->p.idle_timeout_s > 0 && now - h->t_open > g->p.idle_timeout_s) {
            close_held(g, h);
        }
    }
    if (g->listen_paused && now >= g->t_resume) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
        if (epoll_ctl(g->ep, EPOLL_CTL_ADD, g->p.listen_fd, &ev) == 0)
            g->listen_paused = false;
        else
            g->t_resume = now + 0.1;
    }
}

static void *gate_main(void *arg)
{
    struct cs_gate *g = arg;
    struct epoll_event evs[64];
    double next_sweep = cs_now();
    for (;;) {
        int n = epoll_wait(g->ep, evs, 64, SWEEP_MS);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &tag_wake)
                return NULL;
            if (evs[i].data.ptr == &tag_listen)
                on_accept(g);
        }
        for (int i = 0; i < n; i++)
            if (evs[i].data.ptr != &tag_listen)
                on_ready(g, evs[i].data.ptr, evs[i].events);
        double now = cs_now();
        if (now >= next_sweep) {
            sweep(g, now);
            next_sweep = now + SWEEP_MS / 1000.0;
        }
    }
}

int cs_gate_start(const struct cs_gate_params *p, struct cs_gate **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_gate *g = calloc(1, sizeof *g);
    if (!g)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    g->p = *p;
    g->wake = g->ep = -1;
    pthread_mutex_init(&g->mu, NULL);
    g->buf_cap = p->max_head + 64 + p->max_wait_body; /* the header block and a first chunk size or body after it */
    g->buf = malloc(g->buf_cap);
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &tag_listen};
    struct epoll_event ew = {.events = EPOLLIN, .data.ptr = &tag_wake};
    if (!g->buf || g->ep < 0 || g->wake < 0 || epoll_ctl(g->ep, EPOLL_CTL_ADD, p->listen_fd, &el) != 0 ||
        epoll_ctl(g->ep, EPOLL_CTL_ADD, g->wake, &ew) != 0 || pthread_create(&g->th, NULL, gate_main, g) != 0) {
        int e = errno;
        g->p.listen_fd = -1; /* the caller's still */
        cs_gate_stop(g);
        cs_gate_free(g);
        return cs_err(err, errlen, CLSPEC_E_IO, "cannot start the accept thread: %s", strerror(e));
    }
    g->started = true;
    *out = g;
    return CLSPEC_OK;
}

void cs_gate_stop(struct cs_gate *g)
{
    if (!g)
        return;
    if (g->started) {
        uint64_t one = 1;
        if (write(g->wake, &one, sizeof one) < 0)
            cs_log(CS_LOG_WARN, NULL, "http: cannot wake the accept thread: %s", strerror(errno));
        pthread_join(g->th, NULL);
        g->started = false;
    }
    if (g->p.listen_fd >= 0)
        close(g->p.listen_fd);
    g->p.listen_fd = -1;
    while (g->list)
        close_held(g, g->list);
}

void cs_gate_free(struct cs_gate *g)
{
    if (!g)
        return;
    cs_gate_stop(g);
    for (int fd = 0; fd < g->by_fd_cap; fd++)
        if (g->by_fd[fd]) {
            cs_conn_close(g->p.conns, g->by_fd[fd]);
            free(g->by_fd[fd]);
        }
    free(g->by_fd);
    if (g->ep >= 0)
        close(g->ep);
    if (g->wake >= 0)
        close(g->wake);
    free(g->buf);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

struct cs_conn *cs_gate_take(struct cs_gate *g, int fd)
{
    struct cs_conn *cc = NULL;
    pthread_mutex_lock(&g->mu);
    if (fd >= 0 && fd < g->by_fd_cap) {
        cc = g->by_fd[fd];
        g->by_fd[fd] = NULL;
    }
    pthread_mutex_unlock(&g->mu);
    return cc;
}
