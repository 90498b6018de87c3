/* http.h: clspecd's HTTP server (libmicrohttpd, epoll in a pool of worker threads):
 * routes, API key, body limit, and the glue between a request and the
 * scheduler (submit, stream the callbacks as server-sent events or collect
 * them into one JSON body, cancel when the client goes away). JSON comes
 * from api.h. The caller owns struct cs_http (cs_http_start / cs_http_stop)
 * and keeps the engine and the scheduler alive until cs_http_stop returns.
 *
 * Life cycle: started while the model loads (/health answers 503
 * "loading"), cs_http_set_ready once the scheduler runs, cs_http_set_draining
 * on SIGTERM (new work gets 503), cs_http_stop after the scheduler drained. */
#ifndef CS_DAEMON_HTTP_H
#define CS_DAEMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "clspec/clspec.h"
#include "text/chat.h"
#include "daemon/api.h"

struct cs_sched;
struct cs_http;

struct cs_http_params {
    const char *host;           /* address to bind (IPv4, IPv6 or name) */
    int port;                   /* 0 = any free port (see cs_http_port) */
    const char *api_key;        /* NULL or "" = no authentication */
    size_t max_body_bytes;      /* larger bodies: 413 */
    int max_connections;        /* open connections past it: 503 (0 = no cap) */
    int max_connections_per_ip; /* from one client address past it: 429 (0 = no cap) */
    int idle_timeout_s;         /* a connection without a request in flight closes after it (0 = never) */
    int threads;                /* worker threads (epoll each; <= 0: 4) */
    const char *model_name;     /* id in /v1/models and responses (copied) */
    const char *model_aliases;  /* NULL or comma-separated other names, listed in /models (copied) */
    const char *model_tags;     /* NULL or comma-separated labels, listed in /models (copied) */
    struct cs_api_defaults defaults;
    /* browsers and llama-server's routes */
    const char *cors_origins;   /* NULL/"": no CORS headers; "*": any origin; else origins, comma separated */
    bool remote_images;         /* image_url parts may name http(s) URLs, fetched by the server */
    bool webui_off;             /* no chat page at / (404) */
    bool slots_off;             /* GET /slots answers 501 */
    const char *model_path;     /* for /props (copied) */
    int n_predict_cap;          /* llama-server's /completion: an n_predict above it is lowered to it, as
                                 * llama-server's --n-predict does ([server] max_tokens_limit; 0: none);
                                 * the OpenAI routes are refused above it instead */
    const char *slot_save_path; /* POST /slots/{id}?action=save|restore|erase (slotfile.h); NULL/"": 501
                                 * (copied) */
};

int cs_http_start(const struct cs_http_params *p, struct cs_http **out, char *err, size_t errlen);
/* The port actually bound. */
int cs_http_port(const struct cs_http *h);
/* The API starts serving: the engine door (the vocabulary), the scheduler, the chat
 * template family, and a slot's context (for /v1/models). */
void cs_http_set_ready(struct cs_http *h, clspec_engine *e, struct cs_sched *s, enum cs_chat_family chat,
                       int n_ctx_slot);
/* /embeddings through m (borrowed, kept alive until cs_http_stop; NULL: 501). Call before cs_http_set_ready. */
struct cs_embedder;
void cs_http_set_embedder(struct cs_http *h, struct cs_embedder *m);
/* The vision projector requests with images use (borrowed; set before
 * cs_http_set_ready). NULL: images are refused with 400. */
void cs_http_set_mmproj(struct cs_http *h, clspec_mmproj *m);
/* New requests get 503 from now on; running ones continue. */
void cs_http_set_draining(struct cs_http *h);
/* Waits (up to 5 s) until the answers of finished requests are sent, then
 * cancels what still runs, closes the listening socket and every
 * connection, stops the worker threads, frees. */
void cs_http_stop(struct cs_http *h);

#endif
