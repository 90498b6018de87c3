/* http.c: see http.h.
 *
 * Threads: libmicrohttpd runs an epoll loop in each of a small pool of
 * worker threads ([server] http_threads); no callback ever blocks one. A
 * completion waiting for the scheduler suspends its connection
 * (MHD_suspend_connection: in the access handler for a whole answer, in
 * the content reader for a stream) and the scheduler's callback (its own
 * thread) resumes it after appending to the job under the job's mutex
 * (job_wake). While suspended, MHD neither times the connection out nor
 * notices a peer that went away, so the reaper thread (reaper_main) looks
 * every 200 ms at the suspended jobs: a closed peer cancels the request
 * (cs_sched_cancel frees the slot and its KV cells) and a stream quiet for
 * 15 s is resumed to send an SSE comment. The reaper also frees every job
 * once MHD is done with it (cancelling it first when still running), so
 * cs_sched_cancel, which waits for the scheduler's step, never runs on a
 * worker thread.
 *
 * Connections: counted in total and per client address (conn.c); the first
 * request of a connection opened over a cap gets 503 or 429 and the
 * connection is closed (/health is still answered). MHD's own limit sits a
 * reserve above the cap so that those get an answer instead of a reset.
 * MHD_OPTION_CONNECTION_TIMEOUT (idle_timeout_s) closes connections with
 * no request in flight: a suspended connection does not time out. */
#include "config.h"

#include "daemon/http.h"
#include "daemon/api_llama.h"
#include "daemon/cors.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/common.h"
#include "daemon/conn.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/routes_llama.h"
#include "daemon/webui.h"
#include "daemon/sched.h"
#include "base/strbuf.h"
#include "daemon/chatout.h"

enum { ST_LOADING = 0, ST_READY = 1, ST_DRAINING = 2 };

struct cs_http {
    struct cs_http_params p;
    char *model_name, *api_key, *cors, *model_path;
    struct cs_embedder *emb;    /* /embeddings ([server] embeddings), NULL: 501 */
    struct MHD_Daemon *mhd;
    int port;
    atomic_int state;
    atomic_uint_fast64_t next_req;
    atomic_int live_jobs;       /* jobs not yet freed (answers still being sent) */
    atomic_int live_requests;   /* requests MHD has not completed (their answers not wholly sent) */
    clspec_engine *e;         /* the engine door: the vocabulary */
    struct cs_sched *s;
    enum cs_chat_family chat;
    int n_ctx_slot;
    int64_t created;
    clspec_mmproj *mm;          /* borrowed: the vision projector, NULL = images refused */
    struct cs_conn_table *conns;
    /* every job not yet freed, newest first (jobs_mu); only the reaper frees one */
    pthread_mutex_t jobs_mu;
    pthread_cond_t jobs_cv;
    struct job *jobs;
    bool reaper_started, reaper_stop;
    pthread_t reaper;
};

/* Per request: the request body as it arrives, and the job of a whole
 * (non-streamed) answer while the connection waits suspended. */
struct conn {
    struct cs_strbuf body;
    bool close_after;           /* close the connection after the answer */
    unsigned refuse;            /* HTTP status the answer will be, once the body is read (0: none) */
    char refuse_msg[160];
    size_t discarded;           /* body bytes dropped since the refusal */
    struct job *job;
};

/* One completion between a worker thread, the scheduler thread and the reaper. */
struct job {
    struct cs_http *h;
    struct job *prev, *next;    /* h->jobs (h->jobs_mu) */
    struct MHD_Connection *conn;
    int fd;                     /* the connection's socket (peer_gone), -1 unknown */
    bool suspended;             /* the connection waits for job_wake (mu) */
    bool released;              /* MHD no longer uses the job: the reaper frees it (mu) */
    bool want_ping;             /* the reaper asks the stream for an SSE comment (mu) */
    bool silent;                /* never submitted, or its end already logged */
    char req_id[40];
    char resp_id[48];
    struct cs_api_resp rs;
    enum cs_api_kind kind;
    bool stream, include_usage, want_lp;
    uint64_t sched_id;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool finished;              /* DONE or ERROR seen (no callback follows) */
    bool cancelled;             /* the client went away */
    /* streamed: SSE bytes not yet sent */
    struct cs_strbuf out;
    size_t out_pos;
    /* non-streamed: the whole answer */
    struct cs_strbuf text;
    json_t *lp;
    size_t n_text;              /* bytes of generated text so far (logprobs text_offset) */
    const char *finish_reason;  /* static strings from the scheduler */
    struct cs_req_usage usage;
    int err_status;             /* clspec status of an ERROR event, 0 otherwise */
    char err_msg[256];
    double t0;
    double last_out;            /* when the reader last handed out bytes (keep-alive comments) */
    struct cs_llama_acc *llama; /* llama-server's /completion: its answer shapes (NULL: OpenAI's) */
    char *llama_body;           /* its whole answer, built at DONE */
    /* chat: the answer split into reasoning, content and tool calls (issue 20) */
    bool shaped;
    struct cs_chatout_params cop;
    struct cs_chatout *co;      /* streamed */
};

/* Resumes the job's connection if it waits (j->mu held; any thread). */
static void job_wake(struct job *j)
{
    if (j->suspended) {
        j->suspended = false;
        MHD_resume_connection(j->conn);
    }
}

/* Suspends the job's connection until job_wake (j->mu held; only from the
 * access handler or the content reader of that connection). */
static void job_sleep(struct job *j)
{
    j->suspended = true;
    MHD_suspend_connection(j->conn);
}

/* MHD is done with the job: the reaper cancels it if still running and frees it
 * (at once, maybe: j is not touched after `released` is set). */
static void job_release(struct job *j)
{
    struct cs_http *h = j->h;
    pthread_mutex_lock(&j->mu);
    j->released = true;
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&h->jobs_mu);
    pthread_cond_signal(&h->jobs_cv);
    pthread_mutex_unlock(&h->jobs_mu);
}

/* ---------------------------------------------------------------- responses */

/* The method a 405 names in its Allow header (set by on_request before replying). */
static _Thread_local const char *allow_method;
/* Per request (set by on_request): the Access-Control-Allow-Origin value to send (NULL: none), and
 * whether errors take llama-server's shape (its own routes). */
static _Thread_local const char *cors_allow;
static _Thread_local bool llama_errors;
/* While on (several prompts in one /completion): reply() keeps the answer here instead of sending it. */
static _Thread_local struct {
    bool on;
    unsigned code;               /* 0: nothing answered (the client went away) */
    char *body;
} capture;

/* Set by on_request: the reply closes the connection (a connection over a cap, a framing error). */
static _Thread_local bool reply_close;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type, char *body,
                             const char *req_id)
{
    if (!body) {
        code = 500;
        type = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                      "\"code\":\"internal_error\"}}");
        if (!body)
            return MHD_NO;
    }
    if (capture.on) {
        free(capture.body);
        capture.code = code;
        capture.body = body;
        return MHD_YES;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (req_id)
        MHD_add_response_header(r, "X-Request-Id", req_id);
    cs_cors_headers(r, cors_allow);
    if (code == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
                                allow_method && strcmp(allow_method, "GET") == 0 ? "GET, HEAD" : "POST");
    if (code == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (reply_close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned code, char *body, const char *req_id)
{
    return reply(c, code, "application/json", body, req_id);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned code, const char *msg, const char *param,
                                   const char *req_id)
{
    cs_log(code >= 500 ? CS_LOG_WARN : CS_LOG_INFO, req_id, "HTTP %u: %s", code, msg);
    return reply_json(c, code, llama_errors ? cs_llama_error_json((int)code, msg) : cs_api_error_json((int)code, msg, param),
                      req_id);
}

/* ---------------------------------------------------------------- jobs */

/* The peer closed its end (or reset it): no one reads the answer any more. */
static bool peer_gone(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return true;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

static void sse_put(struct job *j, char *json)
{
    if (!json) {
        j->out.oom = true;
        return;
    }
    cs_strbuf_put(&j->out, "data: ");
    cs_strbuf_put(&j->out, json);
    cs_strbuf_put(&j->out, "\n\n");
    free(json);
}

/* on_event for llama-server's /completion (j->mu held). */
static void llama_event(struct job *j, const struct cs_req_event *ev)
{
    bool oom = false;
    if (ev->type == CS_EV_TOKEN) {
        char piece[256];
        size_t n = 0;
        if (ev->token < 0 || clspec_token_piece(j->h->e, ev->token, 0, piece, sizeof piece, &n, NULL, 0) != CLSPEC_OK)
            n = 0;
        char *chunk = cs_llama_acc_token(j->llama, ev, piece, CS_MIN(n, sizeof piece), &oom);
        if (chunk)
            sse_put(j, chunk);
    } else if (ev->type == CS_EV_DONE) {
        j->finish_reason = ev->finish_reason;
        j->usage = ev->usage;
        char *last = cs_llama_acc_final(j->llama, ev->finish_reason, &ev->usage);
        if (j->stream)
            sse_put(j, last);
        else
            oom = !(j->llama_body = last);
        j->finished = true;
    } else {
        j->err_status = ev->status ? ev->status : CLSPEC_E_INVAL;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", ev->message ? ev->message : "request failed");
        if (j->stream)
            sse_put(j, cs_llama_error_json(ev->status == CLSPEC_E_KV_FULL ? 503 : cs_api_http_status(ev->status),
                                           j->err_msg));
        j->finished = true;
    }
    if (oom)
        j->out.oom = j->text.oom = true;
}

/* a streamed chat answer: its deltas (content, reasoning_content,
 * tool_calls) as chunks, the token's logprobs with the first */
static void chat_stream(struct job *j, const char *text, size_t len, bool final, json_t *lp)
{
    json_t *deltas = NULL, *d;
    if (cs_chatout_feed(j->co, text, len, final, &deltas, NULL, 0) != CLSPEC_OK) {
        json_decref(lp);
        j->out.oom = true;
        return;
    }
    size_t i;
    json_array_foreach(deltas, i, d) {
        sse_put(j, cs_api_chat_delta_json(&j->rs, json_incref(d), lp));
        lp = NULL;
    }
    if (lp)
        sse_put(j, cs_api_chat_delta_json(&j->rs, json_object(), lp));
    json_decref(deltas);
}

static void on_event(void *user, const struct cs_req_event *ev)
{
    struct job *j = user;
    pthread_mutex_lock(&j->mu);
    if (j->llama) {
        llama_event(j, ev);
        goto wake;
    }
    json_t *lp = NULL;
    if (ev->type == CS_EV_TOKEN && j->want_lp && ev->token >= 0) {
        char piece[256];
        size_t n = 0;
        if (clspec_token_piece(j->h->e, ev->token, 0, piece, sizeof piece, &n, NULL, 0) != CLSPEC_OK)
            n = 0;
        if (j->stream) {
            lp = cs_api_logprobs_new(j->kind);
            cs_api_logprobs_add(lp, j->kind, piece, n, ev->logprob, ev->top, ev->n_top, j->n_text);
        } else {
            cs_api_logprobs_add(j->lp, j->kind, piece, n, ev->logprob, ev->top, ev->n_top, j->n_text);
        }
    }
    switch (ev->type) {
    case CS_EV_TOKEN:
        if (j->stream && j->co) {
            chat_stream(j, ev->text, ev->len, false, lp);
        } else if (j->stream) {
            if (ev->len || lp)
                sse_put(j, cs_api_chunk_json(&j->rs, ev->text, ev->len, false, NULL, lp, NULL, false));
        } else {
            cs_strbuf_put_n(&j->text, ev->text, ev->len);
        }
        j->n_text += ev->len;
        break;
    case CS_EV_DONE:
        j->finish_reason = ev->finish_reason;
        j->usage = ev->usage;
        if (j->stream && j->co) { /* the held-back end; a tool call ends the turn as "tool_calls" */
            chat_stream(j, NULL, 0, true, NULL);
            if (cs_chatout_n_calls(j->co) > 0 && ev->finish_reason && !strcmp(ev->finish_reason, "stop"))
                j->finish_reason = "tool_calls";
        }
        if (j->stream) {
            sse_put(j, cs_api_chunk_json(&j->rs, NULL, 0, false, j->finish_reason, NULL, &ev->usage, false));
            if (j->include_usage)
                sse_put(j, cs_api_chunk_json(&j->rs, NULL, 0, false, NULL, NULL, &ev->usage, true));
            cs_strbuf_put(&j->out, "data: [DONE]\n\n");
        }
        j->finished = true;
        break;
    case CS_EV_ERROR:
        j->err_status = ev->status ? ev->status : CLSPEC_E_INVAL;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", ev->message ? ev->message : "request failed");
        if (j->stream) {
            int code = ev->status == CLSPEC_E_KV_FULL ? 503 : cs_api_http_status(ev->status);
            sse_put(j, cs_api_error_json(code, j->err_msg, NULL));
            cs_strbuf_put(&j->out, "data: [DONE]\n\n");
        }
        j->finished = true;
        break;
    }
wake:
    if (j->stream || j->finished) /* a whole answer only needs waking at its end */
        job_wake(j);
    if (j->finished) /* a whole answer waited for in its thread (whole_answer without a connection) */
        pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    struct cs_http *h = j->h;
    pthread_mutex_lock(&h->jobs_mu);
    if (j->prev)
        j->prev->next = j->next;
    else if (h->jobs == j)
        h->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    pthread_mutex_unlock(&h->jobs_mu);
    atomic_fetch_sub(&h->live_jobs, 1);
    cs_strbuf_free(&j->out);
    cs_strbuf_free(&j->text);
    json_decref(j->lp);
    cs_llama_acc_free(j->llama);
    free(j->llama_body);
    cs_chatout_free(j->co);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_log_end(struct job *j)
{
    if (j->cancelled) {
        cs_log(CS_LOG_INFO, j->req_id, "cancelled: client went away after %.0f ms", (cs_now() - j->t0) * 1e3);
    } else if (j->err_status) {
        cs_log(CS_LOG_WARN, j->req_id, "failed: %s", j->err_msg);
    } else {
        const struct cs_req_usage *u = &j->usage;
        cs_log(CS_LOG_INFO, j->req_id,
               "done (%s): %d prompt + %d completion tokens, queue %.1f ms, prefill %.1f ms, decode %.1f ms "
               "(%.1f tokens/s)",
               j->finish_reason ? j->finish_reason : "?", u->prompt_tokens, u->completion_tokens, u->queue_ms,
               u->prefill_ms, u->decode_ms,
               u->decode_ms > 0 ? (u->completion_tokens - 1) * 1e3 / u->decode_ms : 0.0);
    }
}

/* The client is gone: cancel (afterwards no callback runs for the job). */
static void job_cancel(struct job *j)
{
    cs_sched_cancel(j->h->s, j->sched_id);
    pthread_mutex_lock(&j->mu);
    if (!j->finished)
        j->cancelled = true;
    j->finished = true;
    pthread_mutex_unlock(&j->mu);
}

/* Streamed body: hands out SSE bytes as the scheduler produces them; with
 * nothing to send it suspends the connection and returns 0 (on_event or the
 * reaper resumes it, and MHD calls again). */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct job *j = cls;
    pthread_mutex_lock(&j->mu);
    ssize_t ret = 0;
    if (j->out.oom || j->cancelled) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (j->out_pos < j->out.len) {
        size_t n = CS_MIN(max, j->out.len - j->out_pos);
        memcpy(buf, j->out.p + j->out_pos, n);
        j->out_pos += n;
        j->last_out = cs_now();
        if (j->out_pos == j->out.len) { /* all sent: reuse the buffer */
            j->out.len = 0;
            j->out_pos = 0;
            j->out.p[0] = 0;
        }
        ret = (ssize_t)n;
    } else if (j->finished) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (j->want_ping && max >= 8) {
        /* an SSE comment while queued or slow: keeps proxies and the connection timeout happy */
        j->want_ping = false;
        j->last_out = cs_now();
        memcpy(buf, ": ping\n\n", 8);
        ret = 8;
    } else {
        job_sleep(j);
    }
    pthread_mutex_unlock(&j->mu);
    return ret;
}

/* The streamed response is destroyed (sent, or the connection died while sending). */
static void stream_free(void *cls)
{
    job_release(cls);
}

/* ---------------------------------------------------------------- the reaper */

/* One look at job j (not under any lock): frees it once released, cancels
 * it when its suspended connection lost its peer, asks a quiet stream for a
 * ping. Returns true when j was freed. */
static bool reap_one(struct job *j, double now)
{
    pthread_mutex_lock(&j->mu);
    bool released = j->released, finished = j->finished, susp = j->suspended;
    bool quiet = j->stream && now - j->last_out > 15.0;
    pthread_mutex_unlock(&j->mu);
    if (released || (susp && !finished && j->fd >= 0 && peer_gone(j->fd))) {
        if (!finished)
            job_cancel(j);
        if (released) {
            if (!j->silent)
                job_log_end(j);
            job_free(j);
            return true;
        }
        job_log_end(j); /* now: the slot is free once cs_sched_cancel returned */
        j->silent = true;
        pthread_mutex_lock(&j->mu);
        job_wake(j); /* the handler sees `cancelled` and closes */
        pthread_mutex_unlock(&j->mu);
    } else if (susp && quiet) {
        pthread_mutex_lock(&j->mu);
        j->want_ping = true;
        job_wake(j);
        pthread_mutex_unlock(&j->mu);
    }
    return false;
}

/* The reaper thread: every 200 ms (or when a job is released) one pass over
 * the jobs. Only it frees jobs, so the pointers it collects stay valid. */
static void *reaper_main(void *arg)
{
    struct cs_http *h = arg;
    struct job **snap = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&h->jobs_mu);
    while (!h->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->jobs_cv, &h->jobs_mu, &ts);
        size_t n = 0;
        for (struct job *j = h->jobs; j; j = j->next)
            n++;
        if (n > cap) {
            struct job **ns = realloc(snap, n * sizeof *ns);
            if (!ns)
                continue; /* try again on the next pass */
            snap = ns;
            cap = n;
        }
        n = 0;
        for (struct job *j = h->jobs; j; j = j->next)
            snap[n++] = j;
        pthread_mutex_unlock(&h->jobs_mu);
        double now = cs_now();
        for (size_t i = 0; i < n; i++)
            reap_one(snap[i], now);
        pthread_mutex_lock(&h->jobs_mu);
    }
    pthread_mutex_unlock(&h->jobs_mu);
    free(snap);
    return NULL;
}

/* ---------------------------------------------------------------- completions */

/* text[0..len) as token ids (*ids malloc'd, the caller frees it): the engine
 * door's tokenizer, its buffer grown once when too small. */
static int tokenize_text(struct cs_http *h, const char *text, size_t len, bool add_special, bool parse_special,
                         int32_t **ids, int *n_ids, char *err, size_t errlen)
{
    size_t cap = len + 8, n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        *ids = malloc(cap * sizeof **ids);
        if (!*ids)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        int rc = clspec_tokenize(h->e, text, len, add_special, parse_special, *ids, cap, &n, err, errlen);
        if (rc == CLSPEC_OK) {
            if (n > INT32_MAX) {
                free(*ids);
                *ids = NULL;
                return cs_err(err, errlen, CLSPEC_E_CONTEXT, "prompt too long");
            }
            *n_ids = (int)n;
            return CLSPEC_OK;
        }
        free(*ids);
        *ids = NULL;
        if (rc != CLSPEC_E_RANGE)
            return rc;
        cap = n + 1;
    }
    return cs_err(err, errlen, CLSPEC_E_RANGE, "prompt: tokenizer gave inconsistent sizes");
}

/* A prompt with images (ar->n_media > 0): the text with its markers (the
 * rendered chat, or the completion's prompt_string) as rows; *rows gets the
 * image rows' inputs (free()); *text_out (when not NULL) the rendered chat. */
static int media_prompt(struct cs_http *h, const struct cs_api_request *ar, int32_t **ids, int *n_ids, float **rows,
                        int *n_rows, char **text_out, char *err, size_t errlen)
{
    char *text = NULL;
    const char *t = ar->prompt;
    size_t len = ar->prompt_len;
    bool add_special = true;
    if (ar->kind == CS_API_CHAT) { /* the rendered text, tokenized with the chat's BOS rule */
        int32_t *tmp = NULL;
        size_t n = 0;
        int rc = CLSPEC_OK;
        if (h->chat == CS_CHAT_JINJA) { /* the messages as sent, each image part as its marker text */
            json_t *msgs = cs_media_messages(ar->messages);
            rc = msgs ? cs_chat_tokenize_json(h->e, h->chat, msgs, ar->tools, ar->template_kwargs, true, &tmp, &n,
                                              &text, err, errlen)
                      : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
            json_decref(msgs);
        } else {
            rc = cs_chat_tokenize(h->e, h->chat, ar->msgs, ar->n_msgs, true, &tmp, &n, &text, err, errlen);
        }
        CS_TRY(rc);
        struct clspec_engine_info info = {.size = sizeof info};
        size_t blen = 0;
        const char *btext = clspec_engine_get_info(h->e, &info, NULL, 0) == CLSPEC_OK && info.bos >= 0
                                ? clspec_token_text(h->e, info.bos, &blen) : NULL;
        add_special = !(btext && blen > 0 && strncmp(text, btext, blen) == 0);
        free(tmp);
        t = text;
        len = strlen(text);
    }
    struct cs_media_prompt mp;
    int rc = cs_media_prompt_build(h->e, h->mm, t, len, add_special, true, ar->media, ar->n_media, &mp, err, errlen);
    if (rc == CLSPEC_OK && text_out)
        *text_out = text;
    else
        free(text);
    if (rc < 0)
        return rc;
    *ids = mp.ids;
    *n_ids = mp.n;
    *rows = mp.rows;
    *n_rows = mp.n_rows;
    return CLSPEC_OK;
}

/* The request's prompt as rows: *rows / *n_rows its image rows (NULL / 0 without images); *text (when not
 * NULL) the rendered chat. */
static int tokenize_prompt(struct cs_http *h, const struct cs_api_request *ar, int32_t **ids, int *n_ids,
                           float **rows, int *n_rows, char **text, char *err, size_t errlen)
{
    *rows = NULL;
    *n_rows = 0;
    if (ar->n_media > 0)
        return media_prompt(h, ar, ids, n_ids, rows, n_rows, text, err, errlen);
    if (ar->kind == CS_API_CHAT) {
        size_t n = 0;
        int rc = h->chat == CS_CHAT_JINJA /* the OpenAI messages as sent: tool calls and results too */
                     ? cs_chat_tokenize_json(h->e, h->chat, ar->messages, ar->tools, ar->template_kwargs, true, ids,
                                             &n, text, err, errlen)
                     : cs_chat_tokenize(h->e, h->chat, ar->msgs, ar->n_msgs, true, ids, &n, text, err, errlen);
        if (rc == CLSPEC_OK && n > INT32_MAX) {
            free(*ids);
            return cs_err(err, errlen, CLSPEC_E_CONTEXT, "prompt too long");
        }
        *n_ids = (int)n;
        return rc;
    }
    if (ar->prompt_ids) {
        *ids = malloc((size_t)ar->n_prompt_ids * sizeof **ids);
        if (!*ids)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
        memcpy(*ids, ar->prompt_ids, (size_t)ar->n_prompt_ids * sizeof **ids);
        *n_ids = ar->n_prompt_ids;
        return CLSPEC_OK;
    }
    return tokenize_text(h, ar->prompt, ar->prompt_len, true, true, ids, n_ids, err, errlen);
}

/* The body as OpenAI's request (ar), or as llama-server's /completion (llama: lr holds its own
 * fields, the common ones move to ar; penalty window and n_predict cap applied). */
static int parse_request(struct cs_http *h, enum cs_api_kind kind, bool llama, const char *body, size_t len,
                         const struct cs_api_defaults *d, struct cs_api_request *ar, struct cs_llama_request *lr,
                         const char **param, char *err, size_t errlen)
{
    if (!llama)
        return cs_api_parse(kind, body, len, d, ar, param, err, errlen);
    int rc = cs_llama_parse_completion(body, len, d, lr, param, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    *ar = lr->r;
    memset(&lr->r, 0, sizeof lr->r);
    ar->sp.penalty_last_n = lr->repeat_last_n < 0 ? h->n_ctx_slot : lr->repeat_last_n;
    if (h->p.n_predict_cap > 0 && ar->max_tokens > h->p.n_predict_cap)
        ar->max_tokens = h->p.n_predict_cap;
    lr->n_predict = ar->max_tokens > 0 ? ar->max_tokens : d->max_tokens > 0 ? d->max_tokens : -1;
    return CLSPEC_OK;
}

/* The access handler's call for a whole answer whose job runs: suspends
 * again while the job runs; replies (and releases the job) once it ended;
 * closes the connection when the client went away. cn NULL (the several
 * prompts of one /completion, answered in turn): waits in this thread. */
static enum MHD_Result whole_answer(struct MHD_Connection *c, struct conn *cn, struct job *j)
{
    pthread_mutex_lock(&j->mu);
    if (!cn) {
        while (!j->finished)
            pthread_cond_wait(&j->cv, &j->mu);
    } else if (!j->finished) {
        job_sleep(j);
        pthread_mutex_unlock(&j->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&j->mu);
    if (cn)
        cn->job = NULL;
    const char *req_id = j->req_id;
    enum MHD_Result ret;
    if (j->cancelled) {
        ret = MHD_NO; /* close the connection */
    } else if (j->err_status) {
        int code = j->err_status == CLSPEC_E_KV_FULL ? 503 : cs_api_http_status(j->err_status);
        ret = reply_json(c, (unsigned)code, cs_api_error_json(code, j->err_msg, NULL), req_id);
    } else if (j->text.oom) {
        ret = reply_error(c, 500, "out of memory", NULL, req_id);
    } else if (j->llama) {
        ret = reply_json(c, 200, j->llama_body, req_id);
        j->llama_body = NULL;
    } else if (j->shaped) {
        json_t *lp = j->lp, *msg = NULL;
        int n_calls = 0;
        char err[512];
        j->lp = NULL;
        if (cs_chatout_message(&j->cop, j->text.p ? j->text.p : "", j->text.len, &msg, &n_calls, err,
                               sizeof err) != CLSPEC_OK) {
            json_decref(lp);
            ret = reply_error(c, 500, err, NULL, req_id);
        } else {
            const char *fr = n_calls && j->finish_reason && !strcmp(j->finish_reason, "stop") ? "tool_calls"
                                                                                               : j->finish_reason;
            ret = reply_json(c, 200, cs_api_chat_message_json(&j->rs, msg, fr, lp, &j->usage), req_id);
        }
    } else {
        json_t *lp = j->lp;
        j->lp = NULL;
        ret = reply_json(c, 200,
                         cs_api_completion_json(&j->rs, j->text.p ? j->text.p : "", j->text.len, j->finish_reason,
                                                lp, &j->usage),
                         req_id);
    }
    job_release(j); /* the reaper logs its end and frees it */
    return ret;
}

static enum MHD_Result handle_completion(struct cs_http *h, struct MHD_Connection *c, struct conn *cn,
                                         enum cs_api_kind kind, bool llama, const char *body, size_t len)
{
    char req_id[40];
    unsigned long long num = (unsigned long long)atomic_fetch_add(&h->next_req, 1) + 1;
    snprintf(req_id, sizeof req_id, "req-%llu", num);
    char err[512];
    const char *param = NULL;
    struct cs_api_request ar;
    struct cs_api_defaults d = h->p.defaults;
    struct clspec_engine_info info = {.size = sizeof info};
    if (clspec_engine_get_info(h->e, &info, NULL, 0) == CLSPEC_OK)
        d.n_vocab = (int32_t)info.n_vocab;
    else
        info.size = 0; /* no EOS text below */
    struct cs_llama_request lr = {.n_predict = -1};
    int rc = parse_request(h, kind, llama, body, len, &d, &ar, &lr, &param, err, sizeof err);
    if (rc != CLSPEC_OK)
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, param, req_id);
    if (kind == CS_API_CHAT && ar.tools && h->chat != CS_CHAT_JINJA) {
        snprintf(err, sizeof err, "'tools' need the model's Jinja chat template; this model renders chats with the "
                 "%s family (configure [model] chat_template = jinja on a model that has one)",
                 cs_chat_family_name(h->chat));
        cs_api_request_free(&ar);
        return reply_error(c, 400, err, "tools", req_id);
    }
    int32_t *ids = NULL;
    int n_ids = 0, n_img_rows = 0;
    float *img_rows = NULL;
    char *prompt_text = NULL;
    rc = lr.mixed ? cs_llama_tokenize_mixed(h->e, lr.mixed, d.n_vocab, &ids, &n_ids, err, sizeof err)
                  : tokenize_prompt(h, &ar, &ids, &n_ids, &img_rows, &n_img_rows,
                                    kind == CS_API_CHAT ? &prompt_text : NULL, err, sizeof err);
    json_decref(lr.mixed);
    lr.mixed = NULL;
    if (rc != CLSPEC_OK) {
        cs_llama_request_free(&lr);
        cs_api_request_free(&ar);
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, kind == CS_API_CHAT ? "messages" : "prompt",
                           req_id);
    }
    struct job *j = calloc(1, sizeof *j);
    if (j && kind == CS_API_CHAT) { /* how the answer is split: the template's markers and tool-call format */
        size_t tl = 0;
        const char *tmpl = h->chat == CS_CHAT_JINJA ? clspec_chat_template(h->e, &tl) : NULL;
        j->shaped = true;
        j->cop = (struct cs_chatout_params){
            .reasoning = ar.reasoning_format < 0 ? CS_REASONING_DEEPSEEK : (enum cs_reasoning_format)ar.reasoning_format,
            .markers = cs_reasoning_markers_detect(tmpl, tl),
            .tools = ar.tools ? cs_tool_format_detect(tmpl, tl) : CS_TOOL_NONE,
            .parallel = ar.parallel_tool_calls,
        };
        j->cop.starts_open = prompt_text && cs_reasoning_starts_open(prompt_text, strlen(prompt_text), j->cop.markers);
        if (ar.stream && cs_chatout_new(&j->cop, &j->co, NULL, 0) != CLSPEC_OK) {
            free(j);
            j = NULL;
        }
    }
    free(prompt_text);
    if (!j) {
        free(ids);
        cs_llama_request_free(&lr);
        free(img_rows);
        cs_api_request_free(&ar);
        return reply_error(c, 500, "out of memory", NULL, req_id);
    }
    atomic_fetch_add(&h->live_jobs, 1);
    j->h = h;
    j->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    j->kind = kind;
    j->t0 = cs_now();
    j->last_out = j->t0;
    snprintf(j->req_id, sizeof j->req_id, "%s", req_id);
    snprintf(j->resp_id, sizeof j->resp_id, "%s-%llu", kind == CS_API_CHAT ? "chatcmpl" : "cmpl", num);
    j->rs = (struct cs_api_resp){kind, j->resp_id, h->model_name, (int64_t)cs_wall_now(), ar.sp.seed};
    j->stream = ar.stream;
    j->include_usage = ar.include_usage;
    j->want_lp = ar.logprobs;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (llama) {
        int arc = cs_llama_acc_for(h->e, &lr, &ar, ids, n_ids, h->model_name, h->n_ctx_slot, &j->llama);
        cs_llama_request_free(&lr);
        if (arc != CLSPEC_OK) {
            free(ids);
            cs_api_request_free(&ar);
            job_free(j);
            return reply_error(c, 500, "out of memory", NULL, req_id);
        }
        j->want_lp = false; /* the accumulator writes completion_probabilities */
    }
    pthread_mutex_lock(&h->jobs_mu); /* from now on only the reaper frees it */
    j->next = h->jobs;
    if (h->jobs)
        h->jobs->prev = j;
    h->jobs = j;
    pthread_mutex_unlock(&h->jobs_mu);
    if (!j->stream && j->want_lp)
        j->lp = cs_api_logprobs_new(kind);
    if (j->stream && kind == CS_API_CHAT) /* the first chunk names the role */
        sse_put(j, cs_api_chunk_json(&j->rs, "", 0, true, NULL, NULL, NULL, false));

    struct cs_req rq;
    memset(&rq, 0, sizeof rq);
    rq.prompt = ids;
    rq.n_prompt = n_ids;
    rq.image_rows = img_rows;
    rq.n_image_rows = n_img_rows;
    rq.max_tokens = ar.max_tokens;
    rq.sp = ar.sp;
    for (int i = 0; i < ar.n_stop; i++)
        rq.stop[rq.n_stop++] = ar.stop[i];
    if (kind == CS_API_CHAT && rq.n_stop < CS_MAX_STOP) {
        size_t elen = 0;
        int32_t eos = info.size ? info.eos : -1;
        const char *etext = eos >= 0 ? clspec_token_text(h->e, eos, &elen) : NULL;
        char eos_buf[64];
        snprintf(eos_buf, sizeof eos_buf, "%.*s", (int)CS_MIN(elen, sizeof eos_buf - 1), etext ? etext : "");
        const char *st = cs_chat_stop(h->chat, etext ? eos_buf : NULL);
        if (st && st[0])
            rq.stop[rq.n_stop++] = st;
    }
    rq.logprobs = ar.logprobs;
    rq.top_logprobs = ar.top_logprobs;
    rq.ignore_eos = ar.ignore_eos;
    rq.grammar = ar.grammar;
    rq.speculative = ar.speculative;
    rq.spec_n_max = ar.spec_n_max;
    snprintf(rq.id, sizeof rq.id, "%s", req_id);
    cs_log(CS_LOG_INFO, req_id, "POST %s: %d prompt tokens (%d image rows of %d images), max_tokens %d, seed %llu%s, %s",
           llama ? "/completion" : kind == CS_API_CHAT ? "/v1/chat/completions" : "/v1/completions", n_ids, n_img_rows,
           ar.n_media, ar.max_tokens, (unsigned long long)ar.sp.seed, ar.seed_given ? "" : " (drawn)",
           j->stream ? "streamed" : "whole");
    rc = cs_sched_submit(h->s, &rq, on_event, j, &j->sched_id, err, sizeof err);
    free(ids);
    free(img_rows);
    bool stream = j->stream;
    cs_api_request_free(&ar);
    if (rc != CLSPEC_OK) {
        pthread_mutex_lock(&j->mu);
        j->finished = true; /* never ran: nothing to cancel, nothing to log */
        j->silent = true;
        pthread_mutex_unlock(&j->mu);
        job_release(j);
        const char *p = rc == CLSPEC_E_RANGE ? "max_tokens"
                        : rc == CLSPEC_E_CONTEXT ? (kind == CS_API_CHAT ? "messages" : "prompt") : NULL;
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, p, req_id);
    }

    if (stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, j,
                                                                   stream_free);
        if (!r) {
            job_release(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Request-Id", req_id);
        cs_cors_headers(r, cors_allow);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r); /* stream_free runs when the connection is done with it */
        return ret;
    }

    /* whole answer: the connection waits suspended; whole_answer replies once the job ends */
    if (cn)
        cn->job = j;
    return whole_answer(c, cn, j);
}

/* POST /completion with several prompts (cs_llama_prompts): each answered in turn as a request of
 * its own, the answers in one array (llama-server's batch form; not streamed). The first error ends it. */
static enum MHD_Result handle_completion_batch(struct cs_http *h, struct MHD_Connection *c, json_t *root,
                                               json_t *prompts)
{
    json_t *out = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(prompts, i, p)
    {
        json_object_set(root, "prompt", p);
        char *sub = json_dumps(root, JSON_COMPACT);
        if (!sub || !out)
            break;
        capture.on = true;
        capture.code = 0;
        handle_completion(h, c, NULL, CS_API_COMPLETION, true, sub, strlen(sub));
        capture.on = false;
        free(sub);
        json_t *ans = capture.code == 200 && capture.body ? json_loads(capture.body, 0, NULL) : NULL;
        if (!ans) {
            json_decref(out);
            if (capture.code == 0) /* the client went away */
                return MHD_NO;
            char *body = capture.body;
            capture.body = NULL;
            return reply_json(c, capture.code == 200 ? 500 : capture.code, body, NULL);
        }
        free(capture.body);
        capture.body = NULL;
        json_object_set_new(ans, "index", json_integer((json_int_t)i));
        json_array_append_new(out, ans);
    }
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return reply_json(c, 200, s, NULL);
}

/* ---------------------------------------------------------------- tokenize, detokenize */

/* POST /tokenize (llama-server's): ids, or {id, piece} with with_pieces. */
static enum MHD_Result handle_tokenize(struct cs_http *h, struct MHD_Connection *c, const char *body, size_t len)
{
    char err[512];
    const char *param = NULL;
    struct cs_api_tokenize t;
    int rc = cs_api_parse_tokenize(body, len, &t, &param, err, sizeof err);
    if (rc != CLSPEC_OK)
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, param, NULL);
    int32_t *ids = NULL;
    int n = 0;
    rc = tokenize_text(h, t.content, t.len, t.add_special, t.parse_special, &ids, &n, err, sizeof err);
    bool with_pieces = t.with_pieces;
    json_decref(t.root);
    if (rc != CLSPEC_OK)
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, "content", NULL);
    struct cs_strbuf pieces = {0};
    size_t *off = with_pieces ? malloc(((size_t)n + 1) * sizeof *off) : NULL;
    if (with_pieces && !off) {
        free(ids);
        return reply_error(c, 500, "out of memory", NULL, NULL);
    }
    for (int i = 0; with_pieces && i < n; i++) {
        char buf[256], *big = NULL;
        size_t pn = 0;
        off[i] = pieces.len;
        rc = clspec_token_piece(h->e, ids[i], 1, buf, sizeof buf, &pn, err, sizeof err);
        if (rc == CLSPEC_E_RANGE && (big = malloc(pn + 1)) != NULL) /* a piece over 255 bytes */
            rc = clspec_token_piece(h->e, ids[i], 1, big, pn + 1, &pn, err, sizeof err);
        if (rc == CLSPEC_OK)
            cs_strbuf_put_n(&pieces, big ? big : buf, pn);
        free(big);
        if (rc != CLSPEC_OK) {
            free(ids);
            free(off);
            cs_strbuf_free(&pieces);
            return reply_error(c, 500, err, NULL, NULL);
        }
    }
    if (with_pieces)
        off[n] = pieces.len;
    char *out = pieces.oom ? NULL
                           : cs_api_tokens_json(ids, (size_t)n, with_pieces ? (pieces.p ? pieces.p : "") : NULL, off);
    free(ids);
    free(off);
    cs_strbuf_free(&pieces);
    return reply_json(c, 200, out, NULL);
}

/* POST /detokenize (llama-server's): the text of the ids, control tokens rendered. */
static enum MHD_Result handle_detokenize(struct cs_http *h, struct MHD_Connection *c, const char *body, size_t len)
{
    char err[512];
    const char *param = NULL;
    struct clspec_engine_info info = {.size = sizeof info};
    if (clspec_engine_get_info(h->e, &info, err, sizeof err) != CLSPEC_OK)
        return reply_error(c, 500, err, NULL, NULL);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = cs_api_parse_detokenize(body, len, info.n_vocab, &ids, &n, &param, err, sizeof err);
    if (rc != CLSPEC_OK)
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, param, NULL);
    size_t cap = n * 8 + 16, tn = 0;
    char *text = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        text = malloc(cap);
        if (!text) {
            rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
            break;
        }
        rc = clspec_detokenize(h->e, ids, n, 0, 1, text, cap, &tn, err, sizeof err);
        if (rc != CLSPEC_E_RANGE)
            break;
        free(text);
        text = NULL;
        cap = tn + 1;
    }
    free(ids);
    if (rc != CLSPEC_OK) {
        free(text);
        return reply_error(c, (unsigned)cs_api_http_status(rc), err, "tokens", NULL);
    }
    char *out = cs_api_content_json(text, tn);
    free(text);
    return reply_json(c, 200, out, NULL);
}

/* ---------------------------------------------------------------- routing */

static bool authorized(struct cs_http *h, struct MHD_Connection *c)
{
    if (!h->api_key)
        return true;
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *x = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key"); /* Anthropic's clients */
    if ((!a || strncasecmp(a, "Bearer ", 7) != 0) && x)
        a = x;
    else if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return false;
    else
        a += 7;
    while (*a == ' ')
        a++;
    size_t la = strlen(a), lk = strlen(h->api_key);
    unsigned diff = (unsigned)(la != lk);
    for (size_t i = 0; i < lk; i++) /* constant time in the key's length */
        diff |= (unsigned)(unsigned char)h->api_key[i] ^ (unsigned)(unsigned char)(i < la ? a[i] : 0);
    return diff == 0;
}

enum route { R_NONE, R_HEALTH, R_MODELS, R_METRICS, R_SLOTS, R_COMPLETIONS, R_CHAT, R_TOKENIZE, R_DETOKENIZE,
             R_COMPLETION, R_PROPS, R_APPLY_TEMPLATE, R_EMBEDDINGS, R_PAGE };

static enum route find_route(const char *url, const char **method_needed)
{
    static const struct {
        const char *path;
        enum route r;
        const char *method;
    } routes[] = {
        {"/health", R_HEALTH, "GET"},
        {"/v1/health", R_HEALTH, "GET"},
        {"/v1/models", R_MODELS, "GET"},
        {"/metrics", R_METRICS, "GET"},
        {"/slots", R_SLOTS, "GET"},
        {"/v1/completions", R_COMPLETIONS, "POST"},
        {"/v1/chat/completions", R_CHAT, "POST"},
        /* llama-server's paths: the OpenAI routes without /v1, and its own */
        {"/models", R_MODELS, "GET"},
        {"/completions", R_COMPLETIONS, "POST"},
        {"/chat/completions", R_CHAT, "POST"},
        {"/tokenize", R_TOKENIZE, "POST"},
        {"/detokenize", R_DETOKENIZE, "POST"},
        {"/completion", R_COMPLETION, "POST"},
        {"/props", R_PROPS, "GET"},
        {"/apply-template", R_APPLY_TEMPLATE, "POST"},
        {"/embeddings", R_EMBEDDINGS, "POST"},
        {"/v1/embeddings", R_EMBEDDINGS, "POST"},
        {"/", R_PAGE, "GET"},
        {"/index.html", R_PAGE, "GET"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(routes); i++)
        if (strcmp(url, routes[i].path) == 0) {
            *method_needed = routes[i].method;
            return routes[i].r;
        }
    return R_NONE;
}

/* OPTIONS (a CORS preflight; daemon/cors.h). */
static enum MHD_Result reply_preflight(struct MHD_Connection *c, const char *method)
{
    struct MHD_Response *r = cs_cors_preflight(c, method, cors_allow);
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---------------------------------------------------------------- transport checks */

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
    (void)kind;
    cs_framing_add(cls, key, key_size, value, value_size);
    return MHD_YES;
}

/* The request's framing (conn.c), before any body is read: 0 when
 * acceptable, else the HTTP status with msg filled (the reply then closes
 * the connection). */
static unsigned framing_error(struct MHD_Connection *c, bool *unframed, char *msg, size_t msglen)
{
    struct cs_framing f = {0};
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, scan_header, &f);
    *unframed = f.n_te && !f.te_chunked; /* no framing to read a body by */
    return cs_framing_verdict(&f, msg, msglen);
}

/* The connection's verdict against the caps (conn.c), from its socket context. */
static enum cs_conn_verdict conn_verdict(struct MHD_Connection *c, char *msg, size_t msglen)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const struct cs_conn *cc = ci ? ci->socket_context : NULL;
    if (!cc || cc->verdict == CS_CONN_OK)
        return CS_CONN_OK;
    if (cc->verdict == CS_CONN_OVER_TOTAL)
        snprintf(msg, msglen, "too many connections: %d were open, the limit is max_connections", cc->n_total_at_open);
    else
        snprintf(msg, msglen, "too many connections from your address: %d were open, the limit is "
                 "max_connections_per_ip", cc->n_addr_at_open);
    return cc->verdict;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct cs_http *h = cls;
    const char *need = NULL;
    enum route r = find_route(url, &need);
    allow_method = need;
    cors_allow = cs_cors_allow(h->cors, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"));
    llama_errors = r == R_COMPLETION || r == R_PROPS || r == R_APPLY_TEMPLATE || r == R_EMBEDDINGS;
    reply_close = false;
    int state = atomic_load(&h->state);

    if (*con_cls && ((struct conn *)*con_cls)->job) /* a whole answer resumed */
        return whole_answer(c, *con_cls, ((struct conn *)*con_cls)->job);
    if (!*con_cls) { /* first call: headers only */
        struct conn *cn = calloc(1, sizeof *cn);
        if (!cn)
            return MHD_NO;
        *con_cls = cn;
        atomic_fetch_add(&h->live_requests, 1); /* until on_completed: the answer is wholly sent */
        char emsg[160];
        bool unframed = false;
        unsigned code = framing_error(c, &unframed, emsg, sizeof emsg);
        if (code && unframed) { /* no framing to read the body by: answer, close */
            reply_close = true;
            return reply_error(c, code, emsg, NULL, NULL);
        }
        if (code) { /* answered after the body (dropped): an answer before it may be lost to a reset */
            cn->refuse = code;
            cn->close_after = true;
            snprintf(cn->refuse_msg, sizeof cn->refuse_msg, "%s", emsg);
            return MHD_YES;
        }
        enum cs_conn_verdict v = conn_verdict(c, emsg, sizeof emsg);
        if (v != CS_CONN_OK && r != R_HEALTH) {
            reply_close = true;
            return reply_error(c, v == CS_CONN_OVER_TOTAL ? 503 : 429, emsg, NULL, NULL);
        }
        cn->close_after = v != CS_CONN_OK; /* /health is answered, then the connection closes */
        if (strcmp(method, "POST") == 0) {
            /* answer early what needs no body (the rest of the body is then discarded) */
            if (r == R_NONE)
                return reply_error(c, 404, "no such endpoint", NULL, NULL);
            if (r == R_PROPS) /* llama-server's answer without --props */
                return authorized(h, c) ? reply_error(c, 501, "POST /props is not supported: clspecd's settings "
                                                              "come from its INI file", NULL, NULL)
                                        : reply_error(c, 401, "invalid or missing API key (Authorization: Bearer "
                                                              "...)", NULL, NULL);
            if (strcmp(method, need) != 0)
                return reply_error(c, 405, "method not allowed", NULL, NULL);
            if (!authorized(h, c))
                return reply_error(c, 401, "invalid or missing API key (Authorization: Bearer ...)", NULL, NULL);
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > h->p.max_body_bytes) {
                char msg[128];
                snprintf(msg, sizeof msg, "request body of %s bytes is over the limit of %zu bytes", cl,
                         h->p.max_body_bytes);
                return reply_error(c, 413, msg, NULL, NULL);
            }
            return MHD_YES;
        }
        /* other methods: answered on the next call, once MHD has the whole request
         * (an answer before that makes MHD close the connection, losing a pipelined request) */
        return MHD_YES;
    }
    struct conn *cn = *con_cls;
    reply_close = cn->close_after;
    if (*upload_size) {
        if (!cn->refuse && cn->body.len + *upload_size > h->p.max_body_bytes) {
            /* a chunked body states no length up front */
            cn->refuse = 413;
            cn->close_after = true;
            snprintf(cn->refuse_msg, sizeof cn->refuse_msg, "request body is over the limit of %zu bytes",
                     h->p.max_body_bytes);
        }
        if (cn->refuse) { /* drop the body up to a bound, then answer: the answer is read, not reset */
            cn->discarded += *upload_size;
            *upload_size = 0;
            if (cn->discarded > h->p.max_body_bytes + (1u << 20)) {
                reply_close = true;
                return reply_error(c, cn->refuse, cn->refuse_msg, NULL, NULL);
            }
            return MHD_YES;
        }
        cs_strbuf_put_n(&cn->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->refuse)
        return reply_error(c, cn->refuse, cn->refuse_msg, NULL, NULL);

    if (r == R_NONE || (r == R_PAGE && h->p.webui_off))
        return reply_error(c, 404, "no such endpoint", NULL, NULL);
    if (strcmp(method, "OPTIONS") == 0)
        return reply_preflight(c, need);
    if (strcmp(method, need) != 0 && !(strcmp(method, "HEAD") == 0 && strcmp(need, "GET") == 0))
        return reply_error(c, 405, "method not allowed", NULL, NULL);
    if (r == R_PAGE)
        return reply(c, 200, "text/html; charset=utf-8", strdup(cs_webui_html), NULL);
    if (r == R_HEALTH) {
        unsigned code = state == ST_READY ? 200 : 503;
        const char *s = state == ST_READY ? "ok" : state == ST_LOADING ? "loading" : "draining";
        char *b = NULL;
        if (asprintf(&b, "{\"status\":\"%s\"}", s) < 0)
            b = NULL;
        return reply_json(c, code, b, NULL);
    }
    if (!authorized(h, c))
        return reply_error(c, 401, "invalid or missing API key (Authorization: Bearer ...)", NULL, NULL);
    if (r == R_MODELS)
        return reply_json(c, 200, cs_api_models_json(h->model_name, h->created, h->n_ctx_slot), NULL);
    if (state == ST_LOADING)
        return reply_error(c, 503, "the model is loading; retry shortly", NULL, NULL);
    if (r == R_METRICS) {
        struct cs_sched_stats st;
        cs_sched_get_stats(h->s, &st);
        char *body = NULL, err[256];
        if (cs_metrics_render(&st, h->model_name, &body, NULL, err, sizeof err) != CLSPEC_OK)
            return reply_error(c, 500, err, NULL, NULL);
        return reply(c, 200, CS_METRICS_CONTENT_TYPE, body, NULL);
    }
    if (r == R_SLOTS && h->p.slots_off) {
        llama_errors = true;
        return reply_error(c, 501, "the /slots endpoint is off ([server] slots = false)", NULL, NULL);
    }
    if (r == R_PROPS || r == R_APPLY_TEMPLATE || r == R_EMBEDDINGS) {
        struct cs_llama_ctx x = {h->e, h->s, h->chat, h->n_ctx_slot, h->model_name, h->model_path, &h->p.defaults};
        char *b = NULL;
        const char *rb = cn->body.p ? cn->body.p : "";
        int code = r == R_PROPS            ? cs_llama_route_props(&x, &b)
                   : r == R_APPLY_TEMPLATE ? cs_llama_route_apply_template(&x, rb, cn->body.len, &b)
                                           : cs_llama_route_embeddings(&x, h->emb, rb, cn->body.len, &b);
        return reply_json(c, (unsigned)code, b, NULL);
    }
    if (r == R_SLOTS) {
        struct cs_slot_info slots[64];
        int n = cs_sched_get_slots(h->s, slots, 64);
        return reply_json(c, 200, cs_llama_slots_json(slots, CS_MIN(n, 64), h->n_ctx_slot), NULL);
    }
    /* completions, tokenize, detokenize */
    if (state == ST_DRAINING)
        return reply_error(c, 503, "the server is shutting down", NULL, NULL);
    if (cn->body.oom)
        return reply_error(c, 500, "out of memory", NULL, NULL);
    if (r == R_TOKENIZE)
        return handle_tokenize(h, c, cn->body.p ? cn->body.p : "", cn->body.len);
    if (r == R_DETOKENIZE)
        return handle_detokenize(h, c, cn->body.p ? cn->body.p : "", cn->body.len);
    if (r == R_COMPLETION) {
        json_t *root = NULL, *prompts = cs_llama_prompts(cn->body.p ? cn->body.p : "", cn->body.len, &root);
        enum MHD_Result ret = prompts ? handle_completion_batch(h, c, root, prompts) : MHD_NO;
        json_decref(prompts);
        json_decref(root);
        if (prompts)
            return ret;
    }
    return handle_completion(h, c, cn, r == R_CHAT ? CS_API_CHAT : CS_API_COMPLETION, r == R_COMPLETION,
                             cn->body.p ? cn->body.p : "", cn->body.len);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode tc)
{
    struct cs_http *h = cls;
    (void)c;
    (void)tc;
    struct conn *cn = *con_cls;
    if (cn) {
        atomic_fetch_sub(&h->live_requests, 1);
        if (cn->job) /* the connection ended while its whole answer ran: the reaper cancels it */
            job_release(cn->job);
        cs_strbuf_free(&cn->body);
        free(cn);
        *con_cls = NULL;
    }
}

/* Connection opened or closed (any worker thread): the accounting of conn.c. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct cs_http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct cs_conn *cc = malloc(sizeof *cc);
        if (!cc)
            return; /* not counted; no verdict: treated as within the caps */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        cs_conn_open(h->conns, ci ? ci->client_addr : NULL, cc);
        *socket_context = cc;
    } else if (*socket_context) {
        cs_conn_close(h->conns, *socket_context);
        free(*socket_context);
        *socket_context = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    cs_log(CS_LOG_DEBUG, NULL, "http: %s", msg);
}

/* ---------------------------------------------------------------- life cycle */

int cs_http_start(const struct cs_http_params *p, struct cs_http **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_http *h = calloc(1, sizeof *h);
    if (!h)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    h->p = *p;
    h->model_name = strdup(p->model_name ? p->model_name : "model");
    h->api_key = p->api_key && p->api_key[0] ? strdup(p->api_key) : NULL;
    h->cors = p->cors_origins && p->cors_origins[0] ? strdup(p->cors_origins) : NULL;
    h->model_path = strdup(p->model_path ? p->model_path : "");
    h->p.cors_origins = h->p.model_path = NULL; /* the caller's strings are not kept */
    h->created = (int64_t)cs_wall_now();
    atomic_init(&h->state, ST_LOADING);
    atomic_init(&h->next_req, 0);
    atomic_init(&h->live_jobs, 0);
    atomic_init(&h->live_requests, 0);
    pthread_mutex_init(&h->jobs_mu, NULL);
    pthread_cond_init(&h->jobs_cv, NULL);
    if (!h->model_name || (p->api_key && p->api_key[0] && !h->api_key)) {
        cs_http_stop(h);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    }
    int rc = cs_conn_table_new(p->max_connections, p->max_connections_per_ip, &h->conns, err, errlen);
    if (rc != CLSPEC_OK) {
        cs_http_stop(h);
        return rc;
    }
    if (pthread_create(&h->reaper, NULL, reaper_main, h) != 0) {
        cs_http_stop(h);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "cannot start the HTTP reaper thread");
    }
    h->reaper_started = true;
    /* MHD's own cap: a reserve above ours, so that connections over our cap get an answer, not a reset */
    unsigned mhd_limit = 0;
    if (p->max_connections > 0) {
        int reserve = CS_MAX(64, p->max_connections / 8);
        mhd_limit = (unsigned)p->max_connections + (unsigned)reserve;
        long got = 0;
        char e2[160];
        if (cs_conn_raise_nofile((long)mhd_limit + 256, &got, e2, sizeof e2) != CLSPEC_OK)
            cs_log(CS_LOG_WARN, NULL, "%s", e2);
        else if (got < (long)mhd_limit + 64)
            cs_log(CS_LOG_WARN, NULL, "max_connections %d: only %ld file descriptors allowed (RLIMIT_NOFILE hard "
                   "limit); connections past about %ld will be refused", p->max_connections, got, got - 64);
    }
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(p->host && p->host[0] ? p->host : "127.0.0.1", port, &hints, &ai);
    if (gai != 0) {
        cs_http_stop(h);
        return cs_err(err, errlen, CLSPEC_E_INVAL, "host %s: %s", p->host, gai_strerror(gai));
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[12];
    int no = 0;
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, p->idle_timeout_s > 0 ? p->idle_timeout_s : 0,
                                         NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, p->threads > 0 ? p->threads : 4, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
    if (mhd_limit)
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, mhd_limit, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    h->mhd = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, opts,
                              MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->mhd) {
        cs_http_stop(h);
        return cs_err(err, errlen, CLSPEC_E_IO, "cannot listen on %s port %d (in use, or not an address of this "
                      "machine)", p->host, p->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : p->port;
    *out = h;
    return CLSPEC_OK;
}

int cs_http_port(const struct cs_http *h)
{
    return h->port;
}

void cs_http_set_ready(struct cs_http *h, clspec_engine *e, struct cs_sched *s, enum cs_chat_family chat,
                       int n_ctx_slot)
{
    h->e = e;
    h->s = s;
    h->chat = chat;
    h->n_ctx_slot = n_ctx_slot;
    atomic_store(&h->state, ST_READY);
}

void cs_http_set_embedder(struct cs_http *h, struct cs_embedder *m)
{
    h->emb = m;
}

void cs_http_set_mmproj(struct cs_http *h, clspec_mmproj *m)
{
    h->mm = m;
}

void cs_http_set_draining(struct cs_http *h)
{
    int st = ST_READY;
    if (!atomic_compare_exchange_strong(&h->state, &st, ST_DRAINING) && st == ST_LOADING)
        atomic_store(&h->state, ST_DRAINING);
}

void cs_http_stop(struct cs_http *h)
{
    if (!h)
        return;
    /* no new connections (a proxy retries them elsewhere); let the answers of requests that already
     * ended reach their clients, the last bytes of a stream included (at most 5 s) */
    if (h->mhd) {
        MHD_socket ls = MHD_quiesce_daemon(h->mhd);
        if (ls != MHD_INVALID_SOCKET)
            close(ls);
    }
    for (int i = 0; i < 500 && (atomic_load(&h->live_jobs) > 0 || atomic_load(&h->live_requests) > 0); i++)
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    if (h->reaper_started) { /* no more reaping: the jobs left are ours */
        pthread_mutex_lock(&h->jobs_mu);
        h->reaper_stop = true;
        pthread_cond_signal(&h->jobs_cv);
        pthread_mutex_unlock(&h->jobs_mu);
        pthread_join(h->reaper, NULL);
    }
    /* MHD may not stop with suspended connections: end and wake every job left */
    bool woke = false;
    for (struct job *j = h->jobs; j; j = j->next) {
        pthread_mutex_lock(&j->mu);
        bool running = !j->finished;
        pthread_mutex_unlock(&j->mu);
        if (running && h->s)
            job_cancel(j);
        pthread_mutex_lock(&j->mu);
        j->finished = true;
        woke |= j->suspended;
        job_wake(j);
        pthread_mutex_unlock(&j->mu);
    }
    if (woke) /* let the workers pick the resumed connections up */
        nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    while (h->jobs)
        job_free(h->jobs);
    cs_conn_table_free(h->conns);
    pthread_mutex_destroy(&h->jobs_mu);
    pthread_cond_destroy(&h->jobs_cv);
    free(h->model_name);
    free(h->api_key);
    free(h->cors);
    free(h->model_path);
    free(h);
}
