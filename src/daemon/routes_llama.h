/* routes_llama.h: the bodies of llama-server's informational routes
 * (GET /props, POST /apply-template) from the engine door and the
 * scheduler, without sockets: http.c routes to them and replies. Each
 * returns the HTTP status and fills *body (malloc'd JSON; on an error
 * status, llama-server's error body). */
#ifndef CS_DAEMON_ROUTES_LLAMA_H
#define CS_DAEMON_ROUTES_LLAMA_H

#include <stddef.h>

#include "clspec/clspec.h"
#include "daemon/api.h"
#include "daemon/sched.h"
#include "text/chat.h"

struct cs_llama_ctx {
    clspec_engine *e;
    struct cs_sched *s;
    enum cs_chat_family chat;
    int n_ctx_slot;
    const char *model_name, *model_path;
    const struct cs_api_defaults *d;
};

/* GET /props: 200. */
int cs_llama_route_props(const struct cs_llama_ctx *x, char **body);
struct cs_llama_request;
struct cs_llama_acc;
/* The ids of a mixed prompt ([ids and strings]): strings tokenized with
 * special tokens parsed, BOS (add_special) only for a string that comes
 * first; ids checked against n_vocab (CLSPEC_E_INVAL naming prompt[i]).
 * *ids malloc'd (the caller frees it). */
int cs_llama_tokenize_mixed(clspec_engine *e, json_t *mixed, int32_t n_vocab, int32_t **ids, int *n_ids, char *err,
                            size_t errlen);
/* The accumulator of one /completion (api_llama.h) for its parsed request,
 * its common part ar and its prompt ids (for "prompt": the pieces with
 * control tokens written out, "<s> Once"). CLSPEC_E_NOMEM or CLSPEC_OK. */
int cs_llama_acc_for(clspec_engine *e, const struct cs_llama_request *lr, const struct cs_api_request *ar,
                     const int32_t *ids, int n_ids, const char *model, int n_ctx_slot, struct cs_llama_acc **out);

/* r->logit_bias (checked by cs_api_parse) resolved into r->bias_id / r->bias
 * (token-id keys as they are, text keys tokenized: each token gets the
 * bias; false: -INFINITY), plus every end-of-generation token at -INFINITY
 * when r->ignore_eos (as llama-server does). CLSPEC_E_INVAL naming an id
 * outside the vocabulary. */
int cs_llama_logit_bias(clspec_engine *e, struct cs_api_request *r, char *err, size_t errlen);

struct cs_embedder;
/* POST /embeddings, /v1/embeddings through m (NULL: 501, embeddings off): 200 with OpenAI's shape. */
int cs_llama_route_embeddings(const struct cs_llama_ctx *x, struct cs_embedder *m, const char *req, size_t len,
                              char **body);
/* POST /apply-template {"messages": [...]}: 200 {"prompt": text}, 400 on bad messages. */
int cs_llama_route_apply_template(const struct cs_llama_ctx *x, const char *req, size_t len, char **body);
/* POST /chat/completions/input_tokens (a chat body): 200 {"input_tokens": n}, the prompt's token
 * count as the chat request would have it. */
int cs_llama_route_input_tokens(const struct cs_llama_ctx *x, const char *req, size_t len, char **body);

#endif
