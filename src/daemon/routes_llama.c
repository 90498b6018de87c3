/* routes_llama.c: see routes_llama.h. */
#include "config.h"

#include "daemon/routes_llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/api_llama.h"

/* A token's text as a NUL-terminated copy in buf ("" when id < 0). */
static const char *token_text(clspec_engine *e, int32_t id, char *buf, size_t cap)
{
    size_t n = 0;
    const char *t = id >= 0 ? clspec_token_text(e, id, &n) : NULL;
    snprintf(buf, cap, "%.*s", (int)CS_MIN(n, cap - 1), t ? t : "");
    return buf;
}

int cs_llama_route_props(const struct cs_llama_ctx *x, char **body)
{
    struct clspec_engine_info info = {.size = sizeof info};
    char err[256], bos[64], eos[64];
    if (clspec_engine_get_info(x->e, &info, err, sizeof err) != CLSPEC_OK) {
        *body = cs_llama_error_json(500, err);
        return 500;
    }
    struct cs_sched_stats st;
    cs_sched_get_stats(x->s, &st);
    size_t tl = 0;
    const char *tmpl = clspec_chat_template(x->e, &tl);
    char *tcopy = tmpl ? strndup(tmpl, tl) : NULL;
    struct cs_llama_props p = {
        .model_name = x->model_name,
        .model_path = x->model_path,
        .chat_template = tcopy ? tcopy : cs_chat_family_name(x->chat),
        .bos_text = token_text(x->e, info.bos, bos, sizeof bos),
        .eos_text = token_text(x->e, info.eos, eos, sizeof eos),
        .total_slots = st.n_slots,
        .n_ctx_slot = x->n_ctx_slot,
        .d = x->d,
        .speculator = st.spec_name,
    };
    *body = cs_llama_props_json(&p);
    free(tcopy);
    return 200;
}

int cs_llama_route_apply_template(const struct cs_llama_ctx *x, const char *req, size_t len, char **body)
{
    char err[512];
    const char *param = NULL;
    struct cs_api_request r;
    int rc = cs_llama_parse_apply_template(req, len, &r, &param, err, sizeof err);
    if (rc != CLSPEC_OK) {
        int code = cs_api_http_status(rc);
        *body = cs_llama_error_json(code, err);
        return code;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    rc = cs_chat_tokenize(x->e, x->chat, r.msgs, r.n_msgs, true, &ids, &n, &text, err, sizeof err);
    cs_api_request_free(&r);
    free(ids);
    if (rc != CLSPEC_OK) {
        int code = cs_api_http_status(rc);
        *body = cs_llama_error_json(code, err);
        free(text);
        return code;
    }
    *body = cs_llama_prompt_json(text, strlen(text));
    free(text);
    return 200;
}
