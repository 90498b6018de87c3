/* http_impl.h: what the three files of clspecd's HTTP front end share
 * (http.c: transport, routing, replies, life cycle; http_jobs.c: the jobs
 * between a connection and the scheduler, and the reaper; http_completion.c:
 * the completion routes). Not a public header: see http.h. */
#ifndef CS_HTTP_IMPL_H
#define CS_HTTP_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#include "base/strbuf.h"
#include "daemon/api.h"
#include "daemon/api_llama.h"
#include "daemon/chatout.h"
#include "daemon/conn.h"
#include "daemon/http.h"
#include "daemon/sched.h"

enum { ST_LOADING = 0, ST_READY = 1, ST_DRAINING = 2 };

struct cs_http {
    struct cs_http_params p;
    char *model_name, *api_key, *cors, *model_path, *model_aliases, *model_tags;
    char *slot_save_path;        /* NULL: slot actions answer 501 */
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
    struct cs_gate *gate;       /* the accept loop that checks each connection's first bytes (gate.c) */
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
    bool suspended;             /* the connection waits for cs_http_job_wake (mu) */
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
    char *verbose_prompt;       /* log_level debug, whole answers: the prompt's text for "__verbose" (llama-server's) */
    /* chat: the answer split into reasoning, content and tool calls (issue 20) */
    bool shaped;
    struct cs_chatout_params cop;
    struct cs_chatout *co;      /* streamed */
};

/* ---- http_jobs.c: jobs and the reaper (j->mu held where a comment says so) ---- */
void cs_http_job_wake(struct job *j);
void cs_http_job_sleep(struct job *j);
void cs_http_job_release(struct job *j);
void cs_http_job_free(struct job *j);
void cs_http_job_cancel(struct job *j);
/* SSE bytes of one event (json: owned, NULL = out of memory) appended to j's stream (j->mu held). */
void cs_http_sse_put(struct job *j, char *json);
/* The scheduler's callback of a job (its thread). */
void cs_http_on_event(void *user, const struct cs_req_event *ev);
ssize_t cs_http_stream_reader(void *cls, uint64_t pos, char *buf, size_t max);
void cs_http_stream_free(void *cls);
void *cs_http_reaper_main(void *arg);

/* ---- http.c: replies (the route's CORS origin and error shape apply) ---- */
enum MHD_Result cs_http_reply_json(struct MHD_Connection *c, unsigned code, char *body, const char *req_id);
enum MHD_Result cs_http_reply_error(struct MHD_Connection *c, unsigned code, const char *msg, const char *param,
                                    const char *req_id);
/* The Access-Control-Allow-Origin value of the request this thread answers (NULL: none). */
const char *cs_http_cors_allow(void);

/* ---- http_completion.c: the completion routes ---- */
int cs_http_tokenize_text(struct cs_http *h, const char *text, size_t len, bool add_special, bool parse_special,
                          int32_t **ids, int *n_ids, char *err, size_t errlen);
/* A completion (OpenAI's kind, or llama-server's /completion when llama). cn NULL: the answer is
 * waited for in this thread (several prompts of one /completion). */
enum MHD_Result cs_http_completion(struct cs_http *h, struct MHD_Connection *c, struct conn *cn,
                                   enum cs_api_kind kind, bool llama, const char *body, size_t len);
/* As cs_http_completion without a connection, for a whole (not streamed) answer: once the job is
 * submitted, *submitted = it and the answer is left to the caller (cs_http_whole_answer(c, NULL, it),
 * or cs_http_job_release to drop it); an immediate reply (an error, a stream) leaves *submitted NULL. */
enum MHD_Result cs_http_completion_submit(struct cs_http *h, struct MHD_Connection *c, enum cs_api_kind kind,
                                          const char *body, size_t len, struct job **submitted);
/* The whole answer of j, when it is done (else cn's connection suspends again). */
enum MHD_Result cs_http_whole_answer(struct MHD_Connection *c, struct conn *cn, struct job *j);

#endif
