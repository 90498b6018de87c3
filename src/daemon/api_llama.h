/* api_llama.h: llama-server's own HTTP API (llama.cpp tools/server/README.md)
 * as JSON, without sockets: the /completion request translated onto the
 * common request of api.h (n_predict, n_probs, cache_prompt, return_tokens,
 * id_slot, mixed prompts), the per-request accumulator that turns scheduler
 * events into /completion answers (whole, or server-sent-event chunks with
 * the last one carrying stop_type, timings and generation_settings),
 * /props, /apply-template and llama-server's error bodies. The caller owns
 * every request (cs_llama_request_free), accumulator (cs_llama_acc_free) and
 * returned string (free). */
#ifndef CS_DAEMON_API_LLAMA_H
#define CS_DAEMON_API_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon/api.h"

struct cs_llama_request {
    struct cs_api_request r;     /* the common fields; r.prompt / r.prompt_ids as api.h, except for a
                                  * mixed prompt (then r.prompt is "" and mixed is set) */
    json_t *mixed;               /* borrowed from r.root: a prompt array of strings and token ids, or NULL */
    int n_predict;               /* -1: until EOS, the context or the server's default (as max_tokens 0) */
    int n_probs;                 /* 0..CS_MAX_TOP_LOGPROBS: completion_probabilities with that many top entries */
    bool post_sampling;          /* post_sampling_probs: those are the sampler's probabilities ("prob",
                                  * "top_probs", no zeros) instead of the model's log-probabilities */
    bool return_tokens;          /* "tokens" of the answer hold the generated ids */
    bool cache_prompt;           /* accepted (default true): prefix reuse is always on */
    int id_slot;                 /* -1 (any), else the request runs on that slot (cs_req pin_slot) */
    int repeat_last_n;           /* penalty window as sent (-1: the slot's context) */
    json_t *response_fields;     /* NULL, or the names (paths "a/b") the answer is cut down to */
    int n_keep, n_discard;       /* context shift ([server] context_shift): prompt tokens kept (-1: all),
                                  * tokens dropped per shift (0: half); 0, 0 by default */
};

/* Parses a /completion body. Errors as cs_api_parse (CLSPEC_E_FORMAT /
 * CLSPEC_E_INVAL with the field in *param). Samplers clspec lacks
 * (mirostat, typical_p, dynatemp, xtc, dry, top_n_sigma,
 * post_sampling_probs) are refused unless they hold their "off" value;
 * several prompts in one request are refused. Fields that only tune
 * llama-server's internals (n_indent, t_max_predict_ms, samplers,
 * response_fields, timings_per_token, return_progress, lora, min_keep,
 * n_cmpl, penalize_nl) are ignored. */
int cs_llama_parse_completion(const char *body, size_t len, const struct cs_api_defaults *d,
                              struct cs_llama_request *lr, const char **param, char *err, size_t errlen);
void cs_llama_request_free(struct cs_llama_request *lr);
/* Several prompts in one /completion body (a "prompt" array of 2..64 entries
 * that is neither token ids nor one mixed prompt: strings, id arrays,
 * {prompt_string} objects), not streamed: the array (a new reference) and
 * *root the parsed body (json_decref both). NULL otherwise (the body is then
 * parsed as one request, which refuses what is wrong with it). */
json_t *cs_llama_prompts(const char *body, size_t len, json_t **root);

/* Collects one /completion's events. */
struct cs_llama_acc;

struct cs_llama_acc_params {
    const char *model;           /* copied */
    bool stream, return_tokens;
    int n_probs;
    bool post_sampling;          /* completion_probabilities as probabilities after the sampler's chain */
    int n_prompt;                /* prompt tokens */
    int n_predict;               /* as generation_settings reports it (-1: none) */
    int n_ctx_slot;
    const struct cs_api_request *r; /* sampling and stop strings for generation_settings (read at creation) */
    int repeat_last_n;
    const char *prompt_text;     /* the prompt's text, control tokens written out ("prompt"; copied) */
    size_t prompt_len;
    json_t *response_fields;     /* NULL or names (paths "a/b"): the whole answer holds only those */
};
/* timings as llama-server reports them (cache_n, prompt_n, prompt_ms, prompt_per_token_ms,
 * prompt_per_second, predicted_n, predicted_ms, predicted_per_token_ms, predicted_per_second), with
 * draft_n / draft_n_accepted when drafts were verified. */
json_t *cs_llama_timings(const struct cs_req_usage *u);
int cs_llama_acc_new(const struct cs_llama_acc_params *p, struct cs_llama_acc **out);
void cs_llama_acc_free(struct cs_llama_acc *a);

/* A token event (piece: the token's raw bytes, NULL for token -1). Stream:
 * returns the chunk's JSON (malloc'd, without "data: ") or NULL when there is
 * nothing to send or memory ran out (*oom then). Whole: accumulates, NULL. */
char *cs_llama_acc_token(struct cs_llama_acc *a, const struct cs_req_event *ev, const char *piece, size_t piece_len,
                         bool *oom);
/* The end: stream: the last chunk (stop: true, content ""), whole: the whole
 * answer. finish_reason as the scheduler's ("stop" / "length"). */
char *cs_llama_acc_final(struct cs_llama_acc *a, const char *finish_reason, const struct cs_req_usage *u);

/* return_progress: a CS_EV_PROGRESS event's chunk with llama-server's
 * "prompt_progress": {total, cache, processed, time_ms} added: to chunk (a
 * chunk's JSON text, freed here: the chat stream's role delta), or when
 * chunk is NULL to /completion's {"content": "", "tokens": [], "stop":
 * false}. Malloc'd; NULL when memory ran out. */
char *cs_llama_progress_chunk(char *chunk, const struct cs_req_event *ev);

/* The prompt's text as llama-server writes it: the pieces of ids (n of
 * them), control tokens written out. Malloc'd (*len its length, optional);
 * NULL when memory ran out. */
char *cs_llama_prompt_text(const clspec_engine *e, const int32_t *ids, int n, size_t *len);
/* llama-server's "__verbose" (its --verbose; here log_level = debug):
 * {"prompt": prompt} added to the answer's JSON text body (freed here).
 * prompt NULL: body unchanged. NULL when memory ran out. */
char *cs_llama_add_verbose(char *body, const char *prompt);

/* GET /slots: cs_api_slots_json's entries with llama-server's fields added:
 * id_task (-1 when idle), n_ctx (the slot's context), is_processing. */
char *cs_llama_slots_json(const struct cs_slot_info *slots, int n, int n_ctx_slot);

/* POST /embeddings and /v1/embeddings: {"input": ...} (or llama-server's
 * "content"): a string, strings, token ids, or lists of token ids; at most
 * 64 inputs; "encoding_format" "float" only. *items (json_decref it): an
 * array of strings and id arrays (ids 0..n_vocab-1). */
int cs_llama_parse_embeddings(const char *body, size_t len, int32_t n_vocab, json_t **items, const char **param,
                              char *err, size_t errlen);
/* {"object":"list","data":[{"object":"embedding","index":i,"embedding":[...]}],"model":...,
 * "usage":{"prompt_tokens":N,"total_tokens":N}}: vecs holds n vectors of dim floats. */
char *cs_llama_embeddings_json(const char *model, const float *vecs, int n, int32_t dim, int prompt_tokens);

/* {"error":{"code":N,"message":...,"type":...}} as llama-server writes it. */
char *cs_llama_error_json(int http_status, const char *message);

/* GET /props. */
struct cs_llama_props {
    const char *model_name, *model_path, *chat_template;
    const char *bos_text, *eos_text;
    int total_slots, n_ctx_slot;
    const struct cs_api_defaults *d;
    const char *speculator;      /* its name, NULL: none */
};
char *cs_llama_props_json(const struct cs_llama_props *p);

/* POST /apply-template: the messages of a chat body (cs_api_parse's rules;
 * dflt, may be NULL, for thinking_off) -> their parse result in *r (the
 * caller renders; cs_api_request_free). */
int cs_llama_parse_apply_template(const char *body, size_t len, const struct cs_api_defaults *dflt,
                                  struct cs_api_request *r, const char **param, char *err, size_t errlen);
/* {"prompt": text} */
char *cs_llama_prompt_json(const char *text, size_t len);

#endif
