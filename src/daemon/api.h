/* api.h: the OpenAI-compatible HTTP API's JSON, without sockets: request
 * bodies of /v1/completions and /v1/chat/completions parsed and validated
 * into struct cs_api_request, and the response bodies built (whole
 * completions, server-sent-event chunks, errors, /v1/models, /slots).
 * Text passed in must be valid UTF-8 except token pieces for logprobs, which
 * are sanitised (invalid bytes -> U+FFFD). The caller owns every request
 * (cs_api_request_free) and every returned string (free). */
#ifndef CS_DAEMON_API_H
#define CS_DAEMON_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon/media.h"
#include "text/chat.h"
#include "daemon/sched.h"
#include "engine/sampler.h"

enum cs_api_kind { CS_API_COMPLETION = 0, CS_API_CHAT = 1 };

/* What a request gets for the fields it leaves out. */
struct cs_api_defaults {
    struct cs_sampler_params sp; /* sp.seed 0: each request without "seed" gets a fresh one */
    int max_tokens;              /* 0 = until EOS or a full context */
    int32_t n_vocab;             /* token ids in a prompt are 0..n_vocab-1; 0 = not checked here */
    bool thinking_off;           /* [model] reasoning = off: chats get enable_thinking false unless their
                                  * chat_template_kwargs say (else the template sees true, as llama-server's) */
};

struct cs_api_request {
    enum cs_api_kind kind;
    /* completion: the prompt as text, or as token ids (then prompt is NULL) */
    const char *prompt;          /* points into root */
    size_t prompt_len;           /* bytes */
    int32_t *prompt_ids;         /* malloc'd (n_prompt_ids) or NULL */
    int n_prompt_ids;
    /* chat: n_msgs >= 1 messages; strings point into root or into msg_text */
    struct cs_chat_msg *msgs;    /* malloc'd */
    size_t n_msgs;
    char **msg_text;             /* (n_msgs) contents assembled from parts, malloc'd or NULL */
    /* images: chat image_url parts (a CS_MEDIA_MARKER in the message text where each was) or
     * /completion's {"prompt_string", "multimodal_data"} prompt object; point into root */
    struct cs_media_ref media[CS_MEDIA_MAX];
    int n_media;
    /* generation */
    int max_tokens;              /* >= 1, or 0 = the server's default */
    struct cs_sampler_params sp; /* sp.seed: the seed this request uses (given, the server's, or fresh) */
    bool seed_given;             /* the request named its seed */
    const char *stop[CS_MAX_STOP]; /* point into root */
    int n_stop;
    bool logprobs;
    int top_logprobs;            /* 0..CS_MAX_TOP_LOGPROBS */
    bool stream;
    bool include_usage;          /* stream_options.include_usage */
    bool speculative;            /* extension: default true */
    int spec_n_max;              /* "speculative.n_max" (llama-server's): this request's draft length cap, 0 = the server's */
    bool ignore_eos;             /* extension: default false */
    bool return_progress;        /* llama-server's: prompt_progress chunks while the prompt is computed (stream) */
    char *grammar;               /* GBNF from "grammar", "json_schema" or "response_format" (malloc'd), NULL: none */
    bool post_sampling;          /* llama-server's post_sampling_probs: n_probs report the sampler's distribution */
    json_t *logit_bias;          /* "logit_bias" as sent (shape checked; borrowed from root), NULL: none */
    int32_t *bias_id;            /* (n_bias) malloc'd by cs_llama_logit_bias: logit_bias resolved to token ids */
    float *bias;                 /* (n_bias) their biases (-INFINITY: never), ignore_eos's EOG entries included */
    int n_bias;
    json_t *root;                /* the parsed body */
    /* chat, issue 20 (borrowed from root; NULL when absent): */
    json_t *messages;            /* the OpenAI message list as sent (tool_calls, role "tool", ...) */
    json_t *tools;               /* non-empty "tools" array, NULL when absent/empty or tool_choice "none" */
    json_t *template_kwargs;     /* "chat_template_kwargs" object */
    bool parallel_tool_calls;    /* default true */
    int reasoning_format;        /* enum cs_reasoning_format, or -1: the server's default (deepseek) */
    bool tool_forced;            /* tool_choice "required" or naming a function: a grammar forces a call */
    const char *tool_only;       /* the function tool_choice names (borrowed from root), NULL: any of tools */
};

/* Parses body[0..len). On error: CLSPEC_E_FORMAT (not JSON, not an object)
 * or CLSPEC_E_INVAL (a field of the wrong type or out of range, unsupported
 * value, a number beyond int64/double), err holds the message and *param
 * (optional) the field's name (or NULL); r is left empty. Unknown fields are
 * ignored (clients send extras); logit_bias is checked for shape only
 * (cs_llama_logit_bias resolves it); tools are {type: "function", function: {name, ...}}
 * objects; tool_choice "auto", "none", "required" or {"type": "function",
 * "function": {"name": N}} (N among tools; the last two set tool_forced,
 * and cannot go with a grammar of the request's own); "grammar",
 * "json_schema" and "response_format" become r->grammar (GBNF, checked). "seed" is any
 * whole number 0..2^64-1; without one the request gets d->sp.seed, or when
 * that is 0 cs_api_fresh_seed(). */
int cs_api_parse(enum cs_api_kind kind, const char *body, size_t len, const struct cs_api_defaults *d,
                 struct cs_api_request *r, const char **param, char *err, size_t errlen);
void cs_api_request_free(struct cs_api_request *r);

/* A fresh random seed below 2^53 (exact in JavaScript's numbers):
 * getrandom(2), or a per-process counter mixed with the clock. Thread-safe. */
uint64_t cs_api_fresh_seed(void);

/* HTTP status for a clspec status from parsing or cs_sched_submit:
 * FORMAT/INVAL/RANGE/CONTEXT 400, BUSY 429, SHUTDOWN 503, others 500. */
int cs_api_http_status(int status);

/* {"error":{"message":..., "type":..., "param":..., "code":...}} with the
 * type and code OpenAI uses for that HTTP status (param may be NULL). */
char *cs_api_error_json(int http_status, const char *message, const char *param);

/* Identity of one response: id ("cmpl-7" / "chatcmpl-7"), model name, creation time (Unix s). */
struct cs_api_resp {
    enum cs_api_kind kind;
    const char *id;
    const char *model;
    int64_t created;
    uint64_t seed;               /* the sampler's seed: "seed" in whole responses and the last chunk */
};

/* Logprobs of the tokens of one response (or one chunk), accumulated in the
 * kind's format: completions {tokens, token_logprobs, top_logprobs,
 * text_offset}, chat {content: [{token, logprob, bytes, top_logprobs}]}. */
json_t *cs_api_logprobs_new(enum cs_api_kind kind);
/* piece: the token's text (any bytes); text_offset: bytes of generated text before it. */
int cs_api_logprobs_add(json_t *lp, enum cs_api_kind kind, const char *piece, size_t len, float logprob,
                        const struct cs_top_logprob *top, int n_top, size_t text_offset);

/* The usage object {prompt_tokens, completion_tokens, total_tokens,
 * prompt_tokens_details:{cached_tokens}} and the timings object {queue_ms,
 * prefill_ms, prefill_tokens, prefill_tokens_per_second, decode_ms,
 * decode_tokens, decode_tokens_per_second} (decode rate over the tokens after
 * the first: their time is decode_ms). */
json_t *cs_api_usage(const struct cs_req_usage *u);
json_t *cs_api_timings(const struct cs_req_usage *u);

/* A whole response (non-streamed), with "seed": logprobs (NULL: null) is taken over. */
char *cs_api_completion_json(const struct cs_api_resp *rs, const char *text, size_t len, const char *finish_reason,
                             json_t *logprobs, const struct cs_req_usage *u);

/* One streamed chunk's JSON (without "data: "): text delta (len may be 0),
 * role_first: chat's first chunk (delta carries role "assistant"),
 * finish_reason NULL while running, logprobs (NULL: null) taken over,
 * u non-NULL: usage, timings and seed added (the last chunk). usage_only: the final usage chunk of
 * stream_options.include_usage (choices empty). */
char *cs_api_chunk_json(const struct cs_api_resp *rs, const char *text, size_t len, bool role_first,
                        const char *finish_reason, json_t *logprobs, const struct cs_req_usage *u,
                        bool usage_only);

/* Chat answers shaped by daemon/chatout.c (reasoning_content, tool_calls):
 * a whole response whose choices[0].message is message, and a streamed
 * chunk whose choices[0].delta is delta (both taken over, as logprobs). */
char *cs_api_chat_message_json(const struct cs_api_resp *rs, json_t *message, const char *finish_reason,
                               json_t *logprobs, const struct cs_req_usage *u);
char *cs_api_chat_delta_json(const struct cs_api_resp *rs, json_t *delta, json_t *logprobs);

/* POST /tokenize (llama-server's): {"content": string (required),
 * "add_special": bool (false), "parse_special": bool (true), "with_pieces":
 * bool (false)}. content points into root (len bytes, may hold NULs). */
struct cs_api_tokenize {
    const char *content;
    size_t len;
    bool add_special, parse_special, with_pieces;
    json_t *root;                /* the parsed body: json_decref when done */
};
/* Errors as cs_api_parse (FORMAT: not JSON or not an object; INVAL: a
 * field missing or of the wrong type, *param names it); t is left empty. */
int cs_api_parse_tokenize(const char *body, size_t len, struct cs_api_tokenize *t, const char **param, char *err,
                          size_t errlen);
/* POST /detokenize: {"tokens": [ids]}, each id 0..n_vocab-1 (the message
 * names the index and the range as for prompts). *ids is malloc'd (NULL
 * when *n is 0): the caller frees it. */
int cs_api_parse_detokenize(const char *body, size_t len, int32_t n_vocab, int32_t **ids, size_t *n,
                            const char **param, char *err, size_t errlen);
/* The answer of /tokenize: {"tokens": [ids]}; with pieces (non-NULL; token
 * i's bytes are pieces[off[i]..off[i+1]), off has n+1 entries)
 * {"tokens": [{"id": N, "piece": "text"}]}, the piece a string when it is
 * valid UTF-8, else an array of its byte values (as llama-server). */
char *cs_api_tokens_json(const int32_t *ids, size_t n, const char *pieces, const size_t *off);
/* The answer of /detokenize: {"content": text} (invalid UTF-8 -> U+FFFD). */
char *cs_api_content_json(const char *text, size_t len);

/* GET /v1/models: one model. n_ctx: the context a slot gets; aliases and
 * tags NULL or comma-separated ([model] aliases, tags): "aliases" lists the
 * id and the other names (each once), "tags" the labels, as llama-server. */
char *cs_api_models_json(const char *model, const char *aliases, const char *tags, int64_t created, int n_ctx);
/* GET /slots: [{id, busy, request_id, n_prompt, n_generated, n_past, speculative}]. */
char *cs_api_slots_json(const struct cs_slot_info *slots, int n);

/* A JSON string of any bytes (invalid UTF-8 -> U+FFFD); the byte values as a JSON array. */
json_t *cs_api_str_lossy(const char *s, size_t len);
json_t *cs_api_bytes_array(const char *s, size_t len);

#endif
