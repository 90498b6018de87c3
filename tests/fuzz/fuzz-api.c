/* fuzz-api.c: libFuzzer target for clspecd's request JSON parsers (the
 * body of every POST route): cs_api_parse as a completion and as a chat
 * completion, cs_api_parse_tokenize and cs_api_parse_detokenize. Each must
 * return OK or an error with a message (and, for field errors, the field
 * named), never crash or leak; an accepted request is checked for the
 * ranges the parser promises. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_one(enum cs_api_kind kind, const char *body, size_t size)
{
    struct cs_api_defaults d = {.max_tokens = 16, .n_vocab = 512};
    d.sp.temp = 0.8f;
    d.sp.top_p = 0.95f;
    d.sp.repeat_penalty = 1.0f;
    struct cs_api_request r;
    const char *param = NULL;
    char err[512] = "";
    int rc = cs_api_parse(kind, body, size, &d, &r, &param, err, sizeof err);
    if (rc != CLSPEC_OK) {
        if (!err[0])
            abort(); /* every refusal says why */
        return;
    }
    if (r.max_tokens < 0 || r.n_stop < 0 || r.n_stop > CS_MAX_STOP)
        abort();
    if (kind == CS_API_CHAT && r.n_msgs < 1)
        abort();
    for (int i = 0; r.prompt_ids && i < r.n_prompt_ids; i++)
        if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= d.n_vocab)
            abort();
    cs_api_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    parse_one(CS_API_COMPLETION, body, size);
    parse_one(CS_API_CHAT, body, size);
    struct cs_api_tokenize t;
    const char *param = NULL;
    char err[512] = "";
    if (cs_api_parse_tokenize(body, size, &t, &param, err, sizeof err) == CLSPEC_OK)
        json_decref(t.root);
    else if (!err[0])
        abort();
    int32_t *ids = NULL;
    size_t n = 0;
    err[0] = 0;
    if (cs_api_parse_detokenize(body, size, 512, &ids, &n, &param, err, sizeof err) == CLSPEC_OK) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= 512)
                abort();
        free(ids);
    } else if (!err[0]) {
        abort();
    }
    return 0;
}
