/* jinjautil: see jinjautil.h. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "text/chat.h"
#include "jinjautil.h"

char *cju_slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", CS_CHAT_FIXTURES, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return p;
}

json_t *cju_load_conv(const char *name)
{
    char *text = cju_slurp(name, NULL);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("%s: %s", name, je.text);
    free(text);
    return j;
}

/* Renders template tname on conversation cname (messages, tools,
 * add_generation_prompt; every other key but bos/eos is a template kwarg). */
int cju_render_case(const char *tname, const char *cname, const char *bos, const char *eos, bool skip_bos,
                       char **out, bool *starts_bos, char *err, size_t errlen)
{
    size_t tl = 0;
    char *tmpl = cju_slurp(tname, &tl);
    json_t *conv = cju_load_conv(cname), *kw = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(conv, k, v) {
        if (strcmp(k, "messages") && strcmp(k, "tools") && strcmp(k, "add_generation_prompt") &&
            strcmp(k, "bos_token") && strcmp(k, "eos_token"))
            json_object_set(kw, k, v);
    }
    struct cs_chat_params p = {
        .family = CS_CHAT_JINJA,
        .add_generation_prompt = json_is_true(json_object_get(conv, "add_generation_prompt")),
        .bos = bos,
        .eos = eos,
        .skip_leading_bos = skip_bos,
        .jinja = tmpl,
        .jinja_len = tl,
        .tools = json_object_get(conv, "tools"),
        .kwargs = kw,
        .now = NOW,
    };
    size_t len = 0;
    int rc = cs_chat_render_json(&p, json_object_get(conv, "messages"), out, &len, starts_bos, err, errlen);
    if (rc == CLSPEC_OK)
        assert_int_equal(len, strlen(*out));
    json_decref(kw);
    json_decref(conv);
    free(tmpl);
    return rc;
}


