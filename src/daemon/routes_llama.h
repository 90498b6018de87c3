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
struct cs_embedder;
/* POST /embeddings, /v1/embeddings through m (NULL: 501, embeddings off): 200 with OpenAI's shape. */
int cs_llama_route_embeddings(const struct cs_llama_ctx *x, struct cs_embedder *m, const char *req, size_t len,
                              char **body);
/* POST /apply-template {"messages": [...]}: 200 {"prompt": text}, 400 on bad messages. */
int cs_llama_route_apply_template(const struct cs_llama_ctx *x, const char *req, size_t len, char **body);

#endif
