/* http.c: see http.h. The transport (libmicrohttpd), the routes, the
 * replies and the life cycle; the jobs between a connection and the
 * scheduler are http_jobs.c, the completion routes http_completion.c
 * (shared declarations: http_impl.h).
 *
 * Threads: libmicrohttpd runs an epoll loop in each of a small pool of
 * worker threads ([server] http_threads); no callback ever blocks one. A
 * completion waiting for the scheduler suspends its connection
 * (MHD_suspend_connection: in the access handler for a whole answer, in
 * the content reader for a stream) and the scheduler's callback (its own
 * thread) resumes it after appending to the job under the job's mutex
 * (cs_http_job_wake). While suspended, MHD neither times the connection out nor
 * notices a peer that went away, so the reaper thread (cs_http_reaper_main) looks
 * every 200 ms at the suspended jobs: a closed peer cancels the request
 * (cs_sched_cancel frees the slot and its KV cells) and a stream quiet for
 * 15 s is resumed to send an SSE comment. The reaper also frees every job
 * once MHD is done with it (cancelling it first when still running), so
 * cs_sched_cancel, which waits for the scheduler's step, never runs on a
 * worker thread.
 *
 * Connections: accepted by the gate (gate.c), which checks the raw header
 * bytes libmicrohttpd would hide (a NUL) or wait on (a huge chunk size)
 * and hands each connection over with the number of requests it checked;
 * the answer to the last of them closes the connection (last_checked).
 * Counted in total and per client address (conn.c); the first
 * request of a connection opened over a cap gets 503 or 429 and the
 * connection is closed (/health is still answered). MHD's own limit sits a
 * reserve above the cap so that those get an answer instead of a reset.
 * MHD_OPTION_CONNECTION_TIMEOUT (idle_timeout_s) closes connections with
 * no request in flight: a suspended connection does not time out. */
#include "config.h"

#include "daemon/http.h"
#include "daemon/http_impl.h"
#include "daemon/api_llama.h"
#include "daemon/cors.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
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
#include "daemon/gate.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/routes_llama.h"
#include "daemon/slotfile.h"
#include "daemon/webui.h"
#include "daemon/sched.h"
#include "base/strbuf.h"
#include "daemon/chatout.h"

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

enum MHD_Result cs_http_reply_json(struct MHD_Connection *c, unsigned code, char *body, const char *req_id)
{
    return reply(c, code, "application/json", body, req_id);
}

enum MHD_Result cs_http_reply_error(struct MHD_Connection *c, unsigned code, const char *msg, const char *param,
                                   const char *req_id)
{
    cs_log(code >= 500 ? CS_LOG_WARN : CS_LOG_INFO, req_id, "HTTP %u: %s", code, msg);
    return cs_http_reply_json(c, code, llama_errors ? cs_llama_error_json((int)code, msg) : cs_api_error_json((int)code, msg, param),
                      req_id);
}

const char *cs_http_cors_allow(void)
{
    return cors_allow;
}

/* The captured reply as its parsed 200 answer, or NULL (the reply stays in capture). */
static json_t *captured_answer(void)
{
    json_t *ans = capture.code == 200 && capture.body ? json_loads(capture.body, 0, NULL) : NULL;
    if (ans) {
        free(capture.body);
        capture.body = NULL;
    }
    return ans;
}

/* Runs root (its JSON text) as one whole request of kind through cs_http_completion, the reply
 * captured: the parsed 200 answer, or NULL (the reply stays in capture: code 0 when the client
 * went away, else its status and body). */
static json_t *run_captured(struct cs_http *h, struct MHD_Connection *c, enum cs_api_kind kind, bool llama,
                            json_t *root)
{
    capture.code = 0;
    char *sub = json_dumps(root, JSON_COMPACT);
    if (!sub)
        return NULL;
    capture.on = true;
    cs_http_completion(h, c, NULL, kind, llama, sub, strlen(sub));
    capture.on = false;
    free(sub);
    return captured_answer();
}

/* The reply to a captured request that failed (run_captured gave NULL): MHD_NO when the client went
 * away, else its status and body (a 200 that did not parse: 500). */
static enum MHD_Result reply_captured_failure(struct MHD_Connection *c)
{
    if (capture.code == 0) {
        free(capture.body);
        capture.body = NULL;
        return MHD_NO;
    }
    char *body = capture.body;
    capture.body = NULL;
    return cs_http_reply_json(c, capture.code == 200 ? 500 : capture.code, body, NULL);
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
        if (!out)
            break;
        json_t *ans = run_captured(h, c, CS_API_COMPLETION, true, root);
        if (!ans) {
            json_decref(out);
            return reply_captured_failure(c);
        }
        json_object_set_new(ans, "index", json_integer((json_int_t)i));
        json_array_append_new(out, ans);
    }
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return cs_http_reply_json(c, 200, s, NULL);
}

/* An OpenAI body with "n" 2..CS_HTTP_MAX_CHOICES, not streamed: the request run n times at once
 * ("n" removed; a given seed s becomes s + i for choice i, else each draws its own), the answers
 * merged into one: choices in order with their index, usage summed over the choices' tokens
 * (prompt_tokens once). The choices run as requests of their own side by side (one decode step for
 * all of them); the first goes alone until its prompt is in, so the others share its prompt's cells
 * (prefix reuse) instead of computing them again. A choice the queue refuses waits for an earlier
 * one to end. NULL root (not JSON, no such n): MHD_NO, the caller goes the usual way. */
#define CS_HTTP_MAX_CHOICES 16
struct choices {
    struct job *job[CS_HTTP_MAX_CHOICES]; /* submitted, not yet answered */
    json_t *ans[CS_HTTP_MAX_CHOICES];     /* the answers */
    int n_sub, n_got;
};

/* Submits choice ch->n_sub (root, its seed set) with the reply captured: true when it runs. */
static bool choice_submit(struct cs_http *h, struct MHD_Connection *c, enum cs_api_kind kind, json_t *root,
                          struct choices *ch)
{
    capture.code = 0;
    char *sub = json_dumps(root, JSON_COMPACT);
    if (!sub)
        return false;
    capture.on = true;
    cs_http_completion_submit(h, c, kind, sub, strlen(sub), &ch->job[ch->n_sub]);
    capture.on = false;
    free(sub);
    if (!ch->job[ch->n_sub])
        return false;
    ch->n_sub++;
    return true;
}

/* Waits for choice ch->n_got and takes its answer (the reply captured): true when it is a 200. */
static bool choice_collect(struct MHD_Connection *c, struct choices *ch)
{
    capture.code = 0;
    capture.on = true;
    cs_http_whole_answer(c, NULL, ch->job[ch->n_got]); /* replies and releases the job */
    capture.on = false;
    ch->job[ch->n_got] = NULL;
    ch->ans[ch->n_got] = captured_answer();
    if (ch->ans[ch->n_got] && !json_array_get(json_object_get(ch->ans[ch->n_got], "choices"), 0)) {
        capture.code = 500; /* a 200 without choices */
        capture.body = cs_api_error_json(500, "an answer without choices", NULL);
        json_decref(ch->ans[ch->n_got]);
        ch->ans[ch->n_got] = NULL;
    }
    return ch->ans[ch->n_got++] != NULL;
}

/* Until j's prompt is in (its first text, or its end). */
static void choice_wait_started(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    while (!j->finished && j->n_text == 0)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

/* Runs the k choices of root; true when every one answered (ch->ans[0..k)). */
static bool choices_run(struct cs_http *h, struct MHD_Connection *c, enum cs_api_kind kind, json_t *root, int k,
                        json_int_t s0, struct choices *ch)
{
    while (ch->n_got < k) {
        bool more = ch->n_sub < k;
        if (more && s0 >= 0)
            json_object_set_new(root, "seed", json_integer(s0 + ch->n_sub));
        if (more && choice_submit(h, c, kind, root, ch)) {
            if (ch->n_sub == 1)
                choice_wait_started(ch->job[0]);
            continue;
        }
        if (more && !(capture.code == 429 && ch->n_got < ch->n_sub))
            return false; /* refused, and not for a full queue an earlier choice will make room in */
        if (more) {
            free(capture.body); /* the queue's refusal: retried once the next choice is answered */
            capture.body = NULL;
        }
        if (!choice_collect(c, ch))
            return false;
    }
    return true;
}

static enum MHD_Result handle_choices(struct cs_http *h, struct MHD_Connection *c, enum cs_api_kind kind,
                                      const char *body, size_t len, bool *done)
{
    *done = false;
    json_t *root = json_loadb(body, len, 0, NULL), *n = json_object_get(root, "n"), *seed;
    json_int_t k = json_is_integer(n) ? json_integer_value(n) : 1;
    if (k < 2 || k > CS_HTTP_MAX_CHOICES || json_is_true(json_object_get(root, "stream"))) {
        json_decref(root);
        return MHD_NO;
    }
    *done = true;
    seed = json_object_get(root, "seed");
    json_int_t s0 = json_is_integer(seed) ? json_integer_value(seed) : -1;
    json_object_del(root, "n");
    struct choices ch;
    memset(&ch, 0, sizeof ch);
    bool ok = choices_run(h, c, kind, root, (int)k, s0, &ch);
    json_decref(root);
    for (int i = ch.n_got; i < ch.n_sub; i++) /* after a failure: the reaper cancels and frees them */
        cs_http_job_release(ch.job[i]);
    json_t *out = ok ? ch.ans[0] : NULL, *choices = ok ? json_array() : NULL;
    json_int_t done_tokens = 0;
    for (int i = 0; i < ch.n_got; i++) {
        json_t *c0 = json_array_get(json_object_get(ch.ans[i], "choices"), 0);
        if (choices && c0) {
            json_object_set_new(c0, "index", json_integer(i));
            json_array_append(choices, c0);
        }
        done_tokens += json_integer_value(json_object_get(json_object_get(ch.ans[i], "usage"), "completion_tokens"));
        if (i > 0 || !ok)
            json_decref(ch.ans[i]);
    }
    if (!ok)
        return reply_captured_failure(c);
    json_t *u = json_object_get(out, "usage");
    if (u) {
        json_int_t pt = json_integer_value(json_object_get(u, "prompt_tokens"));
        json_object_set_new(u, "completion_tokens", json_integer(done_tokens));
        json_object_set_new(u, "total_tokens", json_integer(pt + done_tokens));
    }
    if (out && choices)
        json_object_set(out, "choices", choices);
    json_decref(choices);
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    return s ? cs_http_reply_json(c, 200, s, NULL) : cs_http_reply_error(c, 500, "out of memory", NULL, NULL);
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
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, param, NULL);
    int32_t *ids = NULL;
    int n = 0;
    rc = cs_http_tokenize_text(h, t.content, t.len, t.add_special, t.parse_special, &ids, &n, err, sizeof err);
    bool with_pieces = t.with_pieces;
    json_decref(t.root);
    if (rc != CLSPEC_OK)
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, "content", NULL);
    struct cs_strbuf pieces = {0};
    size_t *off = with_pieces ? malloc(((size_t)n + 1) * sizeof *off) : NULL;
    if (with_pieces && !off) {
        free(ids);
        return cs_http_reply_error(c, 500, "out of memory", NULL, NULL);
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
            return cs_http_reply_error(c, 500, err, NULL, NULL);
        }
    }
    if (with_pieces)
        off[n] = pieces.len;
    char *out = pieces.oom ? NULL
                           : cs_api_tokens_json(ids, (size_t)n, with_pieces ? (pieces.p ? pieces.p : "") : NULL, off);
    free(ids);
    free(off);
    cs_strbuf_free(&pieces);
    return cs_http_reply_json(c, 200, out, NULL);
}

/* POST /detokenize (llama-server's): the text of the ids, control tokens rendered. */
static enum MHD_Result handle_detokenize(struct cs_http *h, struct MHD_Connection *c, const char *body, size_t len)
{
    char err[512];
    const char *param = NULL;
    struct clspec_engine_info info = {.size = sizeof info};
    if (clspec_engine_get_info(h->e, &info, err, sizeof err) != CLSPEC_OK)
        return cs_http_reply_error(c, 500, err, NULL, NULL);
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = cs_api_parse_detokenize(body, len, info.n_vocab, &ids, &n, &param, err, sizeof err);
    if (rc != CLSPEC_OK)
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, param, NULL);
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
        return cs_http_reply_error(c, (unsigned)cs_api_http_status(rc), err, "tokens", NULL);
    }
    char *out = cs_api_content_json(text, tn);
    free(text);
    return cs_http_reply_json(c, 200, out, NULL);
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
             R_COMPLETION, R_PROPS, R_APPLY_TEMPLATE, R_EMBEDDINGS, R_PAGE, R_INPUT_TOKENS, R_SLOT_ACTION };

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
        /* llama-server's paths: the OpenAI routes without /v1 (but /completions: its own
         * /completion, as llama-server routes it), and its own */
        {"/models", R_MODELS, "GET"},
        {"/completions", R_COMPLETION, "POST"},
        {"/chat/completions", R_CHAT, "POST"},
        {"/tokenize", R_TOKENIZE, "POST"},
        {"/detokenize", R_DETOKENIZE, "POST"},
        {"/completion", R_COMPLETION, "POST"},
        {"/props", R_PROPS, "GET"},
        {"/apply-template", R_APPLY_TEMPLATE, "POST"},
        {"/chat/completions/input_tokens", R_INPUT_TOKENS, "POST"},
        {"/v1/chat/completions/input_tokens", R_INPUT_TOKENS, "POST"},
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
    if (strncmp(url, "/slots/", 7) == 0) { /* POST /slots/{id}?action=... (slotfile.h) */
        *method_needed = "POST";
        return R_SLOT_ACTION;
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

/* Counts a request of the connection; true when it is the last the gate checked (gate.h). */
static bool last_checked(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct cs_conn *cc = ci ? ci->socket_context : NULL;
    return !cc || ++cc->n_req >= cc->n_checked;
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
    llama_errors = r == R_COMPLETION || r == R_PROPS || r == R_APPLY_TEMPLATE || r == R_EMBEDDINGS || r == R_INPUT_TOKENS ||
                   r == R_SLOT_ACTION;
    reply_close = *con_cls && ((struct conn *)*con_cls)->close_after;
    int state = atomic_load(&h->state);

    if (*con_cls && ((struct conn *)*con_cls)->job) /* a whole answer resumed */
        return cs_http_whole_answer(c, *con_cls, ((struct conn *)*con_cls)->job);
    if (!*con_cls) { /* first call: headers only */
        struct conn *cn = calloc(1, sizeof *cn);
        if (!cn)
            return MHD_NO;
        *con_cls = cn;
        atomic_fetch_add(&h->live_requests, 1); /* until on_completed: the answer is wholly sent */
        if (last_checked(c)) /* the next request would reach us unchecked (gate.h): none on this connection */
            cn->close_after = reply_close = true;
        char emsg[160];
        bool unframed = false;
        unsigned code = framing_error(c, &unframed, emsg, sizeof emsg);
        if (code && unframed) { /* no framing to read the body by: answer, close */
            reply_close = true;
            return cs_http_reply_error(c, code, emsg, NULL, NULL);
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
            return cs_http_reply_error(c, v == CS_CONN_OVER_TOTAL ? 503 : 429, emsg, NULL, NULL);
        }
        cn->close_after |= v != CS_CONN_OK; /* /health is answered, then the connection closes */
        if (strcmp(method, "POST") == 0) {
            /* answer early what needs no body (the rest of the body is then discarded) */
            if (r == R_NONE)
                return cs_http_reply_error(c, 404, "no such endpoint", NULL, NULL);
            if (r == R_PROPS) /* llama-server's answer without --props */
                return authorized(h, c) ? cs_http_reply_error(c, 501, "POST /props is not supported: clspecd's settings "
                                                              "come from its INI file", NULL, NULL)
                                        : cs_http_reply_error(c, 401, "invalid or missing API key (Authorization: Bearer "
                                                              "...)", NULL, NULL);
            if (strcmp(method, need) != 0)
                return cs_http_reply_error(c, 405, "method not allowed", NULL, NULL);
            if (!authorized(h, c))
                return cs_http_reply_error(c, 401, "invalid or missing API key (Authorization: Bearer ...)", NULL, NULL);
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > h->p.max_body_bytes) {
                char msg[128];
                snprintf(msg, sizeof msg, "request body of %s bytes is over the limit of %zu bytes", cl,
                         h->p.max_body_bytes);
                return cs_http_reply_error(c, 413, msg, NULL, NULL);
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
                return cs_http_reply_error(c, cn->refuse, cn->refuse_msg, NULL, NULL);
            }
            return MHD_YES;
        }
        cs_strbuf_put_n(&cn->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->refuse)
        return cs_http_reply_error(c, cn->refuse, cn->refuse_msg, NULL, NULL);

    if (r == R_NONE || (r == R_PAGE && h->p.webui_off))
        return cs_http_reply_error(c, 404, "no such endpoint", NULL, NULL);
    if (strcmp(method, "OPTIONS") == 0)
        return reply_preflight(c, need);
    if (strcmp(method, need) != 0 && !(strcmp(method, "HEAD") == 0 && strcmp(need, "GET") == 0))
        return cs_http_reply_error(c, 405, "method not allowed", NULL, NULL);
    if (r == R_PAGE)
        return reply(c, 200, "text/html; charset=utf-8", strdup(cs_webui_html), NULL);
    if (r == R_HEALTH) {
        unsigned code = state == ST_READY ? 200 : 503;
        const char *s = state == ST_READY ? "ok" : state == ST_LOADING ? "loading" : "draining";
        char *b = NULL;
        if (asprintf(&b, "{\"status\":\"%s\"}", s) < 0)
            b = NULL;
        return cs_http_reply_json(c, code, b, NULL);
    }
    if (r == R_MODELS) /* public, as llama-server's (clients list models before they hold a key) */
        return cs_http_reply_json(c, 200, cs_api_models_json(h->model_name, h->model_aliases, h->model_tags, h->created, h->n_ctx_slot), NULL);
    if (!authorized(h, c))
        return cs_http_reply_error(c, 401, "invalid or missing API key (Authorization: Bearer ...)", NULL, NULL);
    if (state == ST_LOADING)
        return cs_http_reply_error(c, 503, "the model is loading; retry shortly", NULL, NULL);
    if (r == R_METRICS) {
        struct cs_sched_stats st;
        cs_sched_get_stats(h->s, &st);
        char *body = NULL, err[256];
        if (cs_metrics_render(&st, h->model_name, &body, NULL, err, sizeof err) != CLSPEC_OK)
            return cs_http_reply_error(c, 500, err, NULL, NULL);
        return reply(c, 200, CS_METRICS_CONTENT_TYPE, body, NULL);
    }
    if (r == R_SLOTS && h->p.slots_off) {
        llama_errors = true;
        return cs_http_reply_error(c, 501, "the /slots endpoint is off ([server] slots = false)", NULL, NULL);
    }
    if (r == R_PROPS || r == R_APPLY_TEMPLATE || r == R_EMBEDDINGS || r == R_INPUT_TOKENS) {
        struct cs_llama_ctx x = {h->e, h->s, h->chat, h->n_ctx_slot, h->model_name, h->model_path, &h->p.defaults};
        char *b = NULL;
        const char *rb = cn->body.p ? cn->body.p : "";
        int code = r == R_PROPS            ? cs_llama_route_props(&x, &b)
                   : r == R_APPLY_TEMPLATE ? cs_llama_route_apply_template(&x, rb, cn->body.len, &b)
                   : r == R_INPUT_TOKENS   ? cs_llama_route_input_tokens(&x, rb, cn->body.len, &b)
                                           : cs_llama_route_embeddings(&x, h->emb, rb, cn->body.len, &b);
        return cs_http_reply_json(c, (unsigned)code, b, NULL);
    }
    if (r == R_SLOT_ACTION) {
        llama_errors = true;
        struct cs_slot_ctx x = {h->e, h->s, h->slot_save_path, &h->p.defaults};
        char *b = NULL;
        int code = cs_slot_action(&x, url + 7, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "action"),
                                  cn->body.p ? cn->body.p : "", cn->body.len, &b);
        return cs_http_reply_json(c, (unsigned)code, b, NULL);
    }
    if (r == R_SLOTS) {
        struct cs_slot_info slots[64];
        int n = cs_sched_get_slots(h->s, slots, 64);
        return cs_http_reply_json(c, 200, cs_llama_slots_json(slots, CS_MIN(n, 64), h->n_ctx_slot), NULL);
    }
    /* completions, tokenize, detokenize */
    if (state == ST_DRAINING)
        return cs_http_reply_error(c, 503, "the server is shutting down", NULL, NULL);
    if (cn->body.oom)
        return cs_http_reply_error(c, 500, "out of memory", NULL, NULL);
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
    if (r == R_CHAT || r == R_COMPLETIONS) { /* "n" > 1 choices */
        bool done = false;
        enum MHD_Result ret = handle_choices(h, c, r == R_CHAT ? CS_API_CHAT : CS_API_COMPLETION,
                                             cn->body.p ? cn->body.p : "", cn->body.len, &done);
        if (done)
            return ret;
    }
    return cs_http_completion(h, c, cn, r == R_CHAT ? CS_API_CHAT : CS_API_COMPLETION, r == R_COMPLETION,
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
            cs_http_job_release(cn->job);
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
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct cs_conn *cc = fi && h->gate ? cs_gate_take(h->gate, fi->connect_fd) : NULL; /* counted there */
        if (!cc && (cc = calloc(1, sizeof *cc)) != NULL) { /* not from the gate: counted here, nothing checked */
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
            cs_conn_open(h->conns, ci ? ci->client_addr : NULL, cc);
        }
        *socket_context = cc; /* NULL without memory: not counted; treated as within the caps */
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

/* A connection's header block: bytes at most, seconds from its first byte at most; bodies up to
 * GATE_WAIT_BODY bytes are waited for by the gate (gate.h). */
enum { GATE_MAX_HEAD = 16384, GATE_HEAD_TIMEOUT_S = 10, GATE_WAIT_BODY = 65536 };

/* The listening socket on ai (reuse the address, backlog 1024), -1 with err filled. */
static int listen_socket(const struct addrinfo *ai, const char *host, int port, char *err, size_t errlen)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        cs_err(err, errlen, CLSPEC_E_IO, "cannot listen on %s port %d (%s: in use, or not an address of this "
               "machine)", host, port, strerror(e));
        return -1;
    }
    return fd;
}

int cs_http_start(const struct cs_http_params *p, struct cs_http **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_http *h = calloc(1, sizeof *h);
    if (!h)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    h->p = *p;
    h->model_name = strdup(p->model_name ? p->model_name : "model");
    h->model_aliases = p->model_aliases ? strdup(p->model_aliases) : NULL;
    h->model_tags = p->model_tags ? strdup(p->model_tags) : NULL;
    h->api_key = p->api_key && p->api_key[0] ? strdup(p->api_key) : NULL;
    h->cors = p->cors_origins && p->cors_origins[0] ? strdup(p->cors_origins) : NULL;
    h->model_path = strdup(p->model_path ? p->model_path : "");
    h->slot_save_path = p->slot_save_path && p->slot_save_path[0] ? strdup(p->slot_save_path) : NULL;
    h->p.cors_origins = h->p.model_path = h->p.slot_save_path = NULL; /* the caller's strings are not kept */
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
    if (pthread_create(&h->reaper, NULL, cs_http_reaper_main, h) != 0) {
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
    int lfd = listen_socket(ai, p->host, p->port, err, errlen);
    freeaddrinfo(ai);
    if (lfd < 0) {
        cs_http_stop(h);
        return CLSPEC_E_IO;
    }
    /* the gate (gate.c) accepts and checks each connection's first bytes, then hands it to MHD */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    struct MHD_OptionItem opts[12];
    int no = 0;
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, p->idle_timeout_s > 0 ? p->idle_timeout_s : 0,
                                         NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, p->threads > 0 ? p->threads : 4, NULL};
    if (mhd_limit)
        opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, mhd_limit, NULL};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!h->mhd) {
        close(lfd);
        cs_http_stop(h);
        return cs_err(err, errlen, CLSPEC_E_IO, "cannot start the HTTP server (libmicrohttpd)");
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    h->port = p->port;
    if (getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0)
        h->port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&sa)->sin_port);
    struct cs_gate_params gp = {.listen_fd = lfd, .mhd = h->mhd, .conns = h->conns,
                                .idle_timeout_s = p->idle_timeout_s, .head_timeout_s = GATE_HEAD_TIMEOUT_S,
                                .max_head = GATE_MAX_HEAD, .max_body = p->max_body_bytes,
                                .max_wait_body = CS_MIN((size_t)GATE_WAIT_BODY, p->max_body_bytes)};
    if (p->idle_timeout_s > 0 && p->idle_timeout_s < GATE_HEAD_TIMEOUT_S)
        gp.head_timeout_s = p->idle_timeout_s;
    rc = cs_gate_start(&gp, &h->gate, err, errlen);
    if (rc != CLSPEC_OK) {
        close(lfd);
        cs_http_stop(h);
        return rc;
    }
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
    cs_gate_stop(h->gate);
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
            cs_http_job_cancel(j);
        pthread_mutex_lock(&j->mu);
        j->finished = true;
        woke |= j->suspended;
        cs_http_job_wake(j);
        pthread_mutex_unlock(&j->mu);
    }
    if (woke) /* let the workers pick the resumed connections up */
        nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    while (h->jobs)
        cs_http_job_free(h->jobs);
    cs_gate_free(h->gate);
    cs_conn_table_free(h->conns);
    pthread_mutex_destroy(&h->jobs_mu);
    pthread_cond_destroy(&h->jobs_cv);
    free(h->model_name);
    free(h->model_aliases);
    free(h->model_tags);
    free(h->api_key);
    free(h->cors);
    free(h->model_path);
    free(h->slot_save_path);
    free(h);
}
