/* http_jobs.c: the jobs between a connection and the scheduler (see
 * http_impl.h and the threading notes at the top of http.c): their events
 * into SSE bytes or the whole answer, waking the suspended connection, the
 * stream's content reader, and the reaper thread that cancels requests whose
 * peer went away, pings quiet streams and frees jobs. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/common.h"
#include "daemon/cors.h"
#include "daemon/http_impl.h"
#include "daemon/log.h"

/* Resumes the job's connection if it waits (j->mu held; any thread). */
void cs_http_job_wake(struct job *j)
{
    if (j->suspended) {
        j->suspended = false;
        MHD_resume_connection(j->conn);
    }
}

/* Suspends the job's connection until cs_http_job_wake (j->mu held; only from the
 * access handler or the content reader of that connection). */
void cs_http_job_sleep(struct job *j)
{
    j->suspended = true;
    MHD_suspend_connection(j->conn);
}

/* MHD is done with the job: the reaper cancels it if still running and frees it
 * (at once, maybe: j is not touched after `released` is set). */
void cs_http_job_release(struct job *j)
{
    struct cs_http *h = j->h;
    pthread_mutex_lock(&j->mu);
    j->released = true;
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&h->jobs_mu);
    pthread_cond_signal(&h->jobs_cv);
    pthread_mutex_unlock(&h->jobs_mu);
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

void cs_http_sse_put(struct job *j, char *json)
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

/* cs_http_on_event for llama-server's /completion (j->mu held). */
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
            cs_http_sse_put(j, chunk);
    } else if (ev->type == CS_EV_PROGRESS) {
        if (j->stream)
            cs_http_sse_put(j, cs_llama_progress_chunk(NULL, ev));
    } else if (ev->type == CS_EV_DONE) {
        j->finish_reason = ev->finish_reason;
        j->usage = ev->usage;
        char *last = cs_llama_acc_final(j->llama, ev->finish_reason, &ev->usage);
        if (j->stream)
            cs_http_sse_put(j, last);
        else
            oom = !(j->llama_body = last);
        j->finished = true;
    } else {
        j->err_status = ev->status ? ev->status : CLSPEC_E_INVAL;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", ev->message ? ev->message : "request failed");
        if (j->stream)
            cs_http_sse_put(j, cs_llama_error_json(ev->status == CLSPEC_E_KV_FULL ? 503 : cs_api_http_status(ev->status),
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
        cs_http_sse_put(j, cs_api_chat_delta_json(&j->rs, json_incref(d), lp));
        lp = NULL;
    }
    if (lp)
        cs_http_sse_put(j, cs_api_chat_delta_json(&j->rs, json_object(), lp));
    json_decref(deltas);
}

void cs_http_on_event(void *user, const struct cs_req_event *ev)
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
                cs_http_sse_put(j, cs_api_chunk_json(&j->rs, ev->text, ev->len, false, NULL, lp, NULL, false));
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
            cs_http_sse_put(j, cs_api_chunk_json(&j->rs, NULL, 0, false, j->finish_reason, NULL, &ev->usage, false));
            if (j->include_usage)
                cs_http_sse_put(j, cs_api_chunk_json(&j->rs, NULL, 0, false, NULL, NULL, &ev->usage, true));
            cs_strbuf_put(&j->out, "data: [DONE]\n\n");
        }
        j->finished = true;
        break;
    case CS_EV_PROGRESS: { /* llama-server's: a chunk (the chat's opening delta) with prompt_progress */
        char *c = !j->stream ? NULL
                  : j->kind == CS_API_CHAT
                      ? cs_api_chat_delta_json(&j->rs, json_pack("{s:s,s:n}", "role", "assistant", "content"), NULL)
                      : cs_api_chunk_json(&j->rs, "", 0, false, NULL, NULL, NULL, false);
        if (j->stream)
            cs_http_sse_put(j, c ? cs_llama_progress_chunk(c, ev) : NULL);
        break;
    }
    case CS_EV_ERROR:
        j->err_status = ev->status ? ev->status : CLSPEC_E_INVAL;
        snprintf(j->err_msg, sizeof j->err_msg, "%s", ev->message ? ev->message : "request failed");
        if (j->stream) {
            int code = ev->status == CLSPEC_E_KV_FULL ? 503 : cs_api_http_status(ev->status);
            cs_http_sse_put(j, cs_api_error_json(code, j->err_msg, NULL));
            cs_strbuf_put(&j->out, "data: [DONE]\n\n");
        }
        j->finished = true;
        break;
    }
wake:
    if (j->stream || j->finished) /* a whole answer only needs waking at its end */
        cs_http_job_wake(j);
    if (j->finished || !j->stream) /* a whole answer waited for in its thread (its end; "n" > 1: its start) */
        pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void cs_http_job_free(struct job *j)
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
    free(j->verbose_prompt);
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
void cs_http_job_cancel(struct job *j)
{
    cs_sched_cancel(j->h->s, j->sched_id);
    pthread_mutex_lock(&j->mu);
    if (!j->finished)
        j->cancelled = true;
    j->finished = true;
    pthread_mutex_unlock(&j->mu);
}

/* Streamed body: hands out SSE bytes as the scheduler produces them; with
 * nothing to send it suspends the connection and returns 0 (cs_http_on_event or the
 * reaper resumes it, and MHD calls again). */
ssize_t cs_http_stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
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
        cs_http_job_sleep(j);
    }
    pthread_mutex_unlock(&j->mu);
    return ret;
}

/* The streamed response is destroyed (sent, or the connection died while sending). */
void cs_http_stream_free(void *cls)
{
    cs_http_job_release(cls);
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
            cs_http_job_cancel(j);
        if (released) {
            if (!j->silent)
                job_log_end(j);
            cs_http_job_free(j);
            return true;
        }
        job_log_end(j); /* now: the slot is free once cs_sched_cancel returned */
        j->silent = true;
        pthread_mutex_lock(&j->mu);
        cs_http_job_wake(j); /* the handler sees `cancelled` and closes */
        pthread_mutex_unlock(&j->mu);
    } else if (susp && quiet) {
        pthread_mutex_lock(&j->mu);
        j->want_ping = true;
        cs_http_job_wake(j);
        pthread_mutex_unlock(&j->mu);
    }
    return false;
}

/* The reaper thread: every 200 ms (or when a job is released) one pass over
 * the jobs. Only it frees jobs, so the pointers it collects stay valid. */
void *cs_http_reaper_main(void *arg)
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
