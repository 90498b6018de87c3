/* http_completion.c: the completion routes (OpenAI's /v1/completions and
 * /v1/chat/completions, llama-server's /completion): the request parsed,
 * its prompt made rows (text, chat templates, images), the job submitted to
 * the scheduler, the answer streamed or returned whole. */
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
#include "daemon/api_llama.h"
#include "daemon/cors.h"
#include "daemon/http_impl.h"
#include "daemon/log.h"
#include "daemon/media.h"
#include "daemon/routes_llama.h"

/* ---------------------------------------------------------------- completions */

/* text[0..len) as token ids (*ids malloc'd, the caller frees it): the engine
 * door's tokenizer, its buffer grown once when too small. */
int cs_http_tokenize_text(struct cs_http *h, const char *text, size_t len, bool add_special, bool parse_special,
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
    int rc = cs_media_prompt_build(h->e, h->mm, t, len, add_special, true, ar->media, ar->n_media,
                                   h->p.remote_images, &mp, err, errlen);
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
    return cs_http_tokenize_text(h, ar->prompt, ar->prompt_len, true, true, ids, n_ids, err, errlen);
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
    ar->post_sampling = lr->post_sampling;
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
enum MHD_Result cs_http_whole_answer(struct MHD_Connection *c, struct conn *cn, struct job *j)
{
    pthread_mutex_lock(&j->mu);
    if (!cn) {
        while (!j->finished)
            pthread_cond_wait(&j->cv, &j->mu);
    } else if (!j->finished) {
        cs_http_job_sleep(j);
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
        ret = cs_http_reply_json(c, (unsigned)code, cs_api_error_json(code, j->err_msg, NULL), req_id);
    } else if (j->text.oom) {
        ret = cs_http_reply_error(c, 500, "out of memory", NULL, req_id);
    } else if (j->llama) {
        ret = cs_http_reply_json(c, 200, j->llama_body, req_id);
        j->llama_body = NULL;
    } else if (j->shaped) {
        json_t *lp = j->lp, *msg = NULL;
        int n_calls = 0;
        char err[512];
        j->lp = NULL;
        if (cs_chatout_message(&j->cop, j->text.p ? j->text.p : "", j->text.len, &msg, &n_calls, err,
                               sizeof err) != CLSPEC_OK) {
            json_decref(lp);
            ret = cs_http_reply_error(c, 500, err, NULL, req_id);
        } else {
            const char *fr = n_calls && j->finish_reason && !strcmp(j->finish_reason, "stop") ? "tool_calls"
                                                                                               : j->finish_reason;
            ret = cs_http_reply_json(c, 200,
                                     cs_llama_add_verbose(cs_api_chat_message_json(&j->rs, msg, fr, lp, &j->usage),
                                                          j->verbose_prompt),
                                     req_id);
        }
    } else {
        json_t *lp = j->lp;
        j->lp = NULL;
        ret = cs_http_reply_json(c, 200,
                         cs_llama_add_verbose(cs_api_completion_json(&j->rs, j->text.p ? j->text.p : "", j->text.len,
                                                                     j->finish_reason, lp, &j->usage),
                                              j->verbose_prompt),
                         req_id);
    }
    cs_http_job_release(j); /* the reaper logs its end and frees it */
    return ret;
}

/* A prompt over the slot's context: 400 in llama-server's shape (type exceed_context_size_error,
 * n_prompt_tokens, n_ctx = the slot's context, its message first), for both API families. */
static enum MHD_Result context_error(struct cs_http *h, struct MHD_Connection *c, bool llama, const char *why,
                                     const char *param, int n_prompt, const char *req_id)
{
    char msg[768];
    snprintf(msg, sizeof msg, "the request exceeds the available context size, try increasing it (%s)", why);
    char *body = llama ? cs_llama_error_json(400, msg) : cs_api_error_json(400, msg, param);
    json_t *o = body ? json_loads(body, 0, NULL) : NULL;
    json_t *e = json_object_get(o, "error");
    free(body);
    body = NULL;
    if (e && !json_object_set_new(e, "type", json_string("exceed_context_size_error")) &&
        !json_object_set_new(e, "n_prompt_tokens", json_integer(n_prompt)) &&
        !json_object_set_new(e, "n_ctx", json_integer(h->n_ctx_slot)))
        body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return body ? cs_http_reply_json(c, 400, body, req_id) : cs_http_reply_error(c, 500, "out of memory", NULL, req_id);
}

static enum MHD_Result completion(struct cs_http *h, struct MHD_Connection *c, struct conn *cn, enum cs_api_kind kind,
                                  bool llama, const char *body, size_t len, struct job **submitted)
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
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, param, req_id);
    if ((ar.logit_bias || ar.ignore_eos) && (rc = cs_llama_logit_bias(h->e, &ar, err, sizeof err)) != CLSPEC_OK) {
        cs_llama_request_free(&lr);
        cs_api_request_free(&ar);
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, "logit_bias", req_id);
    }
    if (kind == CS_API_CHAT && ar.tools && h->chat != CS_CHAT_JINJA) {
        snprintf(err, sizeof err, "'tools' need the model's Jinja chat template; this model renders chats with the "
                 "%s family (configure [model] chat_template = jinja on a model that has one)",
                 cs_chat_family_name(h->chat));
        cs_api_request_free(&ar);
        return cs_http_reply_error(c, 400, err, "tools", req_id);
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
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, kind == CS_API_CHAT ? "messages" : "prompt",
                           req_id);
    }
    if (kind == CS_API_CHAT && ar.tool_forced) { /* tool_choice required / a function: a grammar forces the call */
        size_t tl = 0;
        const char *tmpl = clspec_chat_template(h->e, &tl);
        struct cs_reasoning_markers mk = cs_reasoning_markers_detect(tmpl, tl);
        bool open = prompt_text && cs_reasoning_starts_open(prompt_text, strlen(prompt_text), mk);
        rc = cs_chatout_force_grammar(tmpl, tl, ar.tools, ar.tool_only, ar.parallel_tool_calls, open ? mk.close : NULL,
                                      &ar.grammar, err, sizeof err);
        if (rc != CLSPEC_OK) {
            free(ids);
            free(img_rows);
            free(prompt_text);
            cs_llama_request_free(&lr);
            cs_api_request_free(&ar);
            return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, "tool_choice", req_id);
        }
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
        return cs_http_reply_error(c, 500, "out of memory", NULL, req_id);
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
    /* llama-server's --verbose, or the request's "verbose": true */
    if (!llama && !ar.stream && (cs_log_enabled(CS_LOG_DEBUG) || json_is_true(json_object_get(ar.root, "verbose"))))
        j->verbose_prompt = cs_llama_prompt_text(h->e, ids, n_ids, NULL);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (llama) {
        int arc = cs_llama_acc_for(h->e, &lr, &ar, ids, n_ids, h->model_name, h->n_ctx_slot, &j->llama);
        cs_llama_request_free(&lr);
        if (arc != CLSPEC_OK) {
            free(ids);
            cs_api_request_free(&ar);
            cs_http_job_free(j);
            return cs_http_reply_error(c, 500, "out of memory", NULL, req_id);
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
        cs_http_sse_put(j, cs_api_chunk_json(&j->rs, "", 0, true, NULL, NULL, NULL, false));

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
    rq.post_sampling = ar.post_sampling;
    rq.ignore_eos = ar.ignore_eos;
    rq.grammar = ar.grammar;
    rq.bias_id = ar.bias_id;
    rq.bias = ar.bias;
    rq.n_bias = ar.n_bias;
    rq.speculative = ar.speculative;
    rq.spec_n_max = ar.spec_n_max;
    if (llama) { /* llama-server's slot pinning and context shift fields */
        rq.pin_slot = lr.id_slot >= 0 ? lr.id_slot + 1 : 0;
        rq.n_keep = lr.n_keep;
        rq.n_discard = lr.n_discard;
    }
    rq.return_progress = ar.return_progress && j->stream;
    snprintf(rq.id, sizeof rq.id, "%s", req_id);
    cs_log(CS_LOG_INFO, req_id, "POST %s: %d prompt tokens (%d image rows of %d images), max_tokens %d, seed %llu%s, %s",
           llama ? "/completion" : kind == CS_API_CHAT ? "/v1/chat/completions" : "/v1/completions", n_ids, n_img_rows,
           ar.n_media, ar.max_tokens, (unsigned long long)ar.sp.seed, ar.seed_given ? "" : " (drawn)",
           j->stream ? "streamed" : "whole");
    rc = cs_sched_submit(h->s, &rq, cs_http_on_event, j, &j->sched_id, err, sizeof err);
    free(ids);
    free(img_rows);
    bool stream = j->stream;
    cs_api_request_free(&ar);
    if (rc != CLSPEC_OK) {
        pthread_mutex_lock(&j->mu);
        j->finished = true; /* never ran: nothing to cancel, nothing to log */
        j->silent = true;
        pthread_mutex_unlock(&j->mu);
        cs_http_job_release(j);
        const char *p = rc == CLSPEC_E_RANGE ? "max_tokens"
                        : rc == CLSPEC_E_CONTEXT ? (kind == CS_API_CHAT ? "messages" : "prompt") : NULL;
        if (rc == CLSPEC_E_CONTEXT)
            return context_error(h, c, llama, err, p, n_ids, req_id);
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, p, req_id);
    }

    if (stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, cs_http_stream_reader, j,
                                                                   cs_http_stream_free);
        if (!r) {
            cs_http_job_release(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Request-Id", req_id);
        if (cn && cn->close_after) /* the gate checked no request after this one (gate.h) */
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        cs_cors_headers(r, cs_http_cors_allow());
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r); /* cs_http_stream_free runs when the connection is done with it */
        return ret;
    }

    /* whole answer: the connection waits suspended; cs_http_whole_answer replies once the job ends */
    if (cn)
        cn->job = j;
    if (submitted) {
        *submitted = j;
        return MHD_YES;
    }
    return cs_http_whole_answer(c, cn, j);
}

enum MHD_Result cs_http_completion(struct cs_http *h, struct MHD_Connection *c, struct conn *cn,
                                   enum cs_api_kind kind, bool llama, const char *body, size_t len)
{
    return completion(h, c, cn, kind, llama, body, len, NULL);
}

enum MHD_Result cs_http_completion_submit(struct cs_http *h, struct MHD_Connection *c, enum cs_api_kind kind,
                                          const char *body, size_t len, struct job **submitted)
{
    *submitted = NULL;
    return completion(h, c, NULL, kind, false, body, len, submitted);
}
