/* test-chatout.c: chat answers shaped as OpenAI returns them
 * (src/daemon/chatout.c): streamed deltas (reasoning_content, content,
 * tool_calls with index, id, type and argument fragments that add up to the
 * arguments), the whole message (content null beside tool calls), call ids,
 * parallel_tool_calls false, and the api.c JSON around them. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "base/strbuf.h"
#include "daemon/api.h"
#include "daemon/chatout.h"

static const struct cs_chatout_params QWEN = {
    .reasoning = CS_REASONING_DEEPSEEK,
    .markers = {"<think>", "</think>"},
    .tools = CS_TOOL_HERMES,
    .parallel = true,
};

static const char ANSWER[] = "<think>Paris weather.</think>\n\nChecking.\n<tool_call>\n{\"name\": \"get_weather\", "
                             "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\","
                             " \"arguments\": {}}\n</tool_call>";

static bool valid_id(const char *id)
{
    if (!id || strlen(id) != 14 || strncmp(id, "call_", 5))
        return false;
    for (int i = 5; i < 14; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9')))
            return false;
    return true;
}

/* streamed 3 bytes at a time: the deltas add up to the whole message */
static void test_stream_deltas(void **state)
{
    (void)state;
    struct cs_chatout *c = NULL;
    char err[128];
    assert_int_equal(cs_chatout_new(&QWEN, &c, err, sizeof err), CLSPEC_OK);
    struct cs_strbuf reasoning = {0}, content = {0}, args[2] = {{0}, {0}};
    const char *names[2] = {NULL, NULL};
    char *ids[2] = {NULL, NULL};
    size_t n = strlen(ANSWER);
    for (size_t pos = 0; pos < n;) {
        size_t take = CS_MIN(3, n - pos);
        json_t *d = NULL, *x;
        assert_int_equal(cs_chatout_feed(c, ANSWER + pos, take, pos + take >= n, &d, err, sizeof err), CLSPEC_OK);
        pos += take;
        size_t i;
        json_array_foreach(d, i, x) {
            assert_int_equal(json_object_size(x), 1); /* one kind per delta */
            json_t *v;
            if ((v = json_object_get(x, "reasoning_content"))) {
                cs_strbuf_put(&reasoning, json_string_value(v));
            } else if ((v = json_object_get(x, "content"))) {
                cs_strbuf_put(&content, json_string_value(v));
            } else {
                json_t *tc = json_array_get(json_object_get(x, "tool_calls"), 0);
                assert_non_null(tc);
                json_int_t idx = json_integer_value(json_object_get(tc, "index"));
                assert_true(idx == 0 || idx == 1);
                json_t *fn = json_object_get(tc, "function");
                if (json_object_get(tc, "id")) { /* the first delta of a call: id, type, name */
                    assert_null(ids[idx]);
                    ids[idx] = strdup(json_string_value(json_object_get(tc, "id")));
                    assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
                    names[idx] = json_string_value(json_object_get(fn, "name"));
                    names[idx] = names[idx] ? strdup(names[idx]) : NULL;
                } else {
                    assert_non_null(ids[idx]);
                    assert_null(json_object_get(fn, "name"));
                }
                cs_strbuf_put(&args[idx], json_string_value(json_object_get(fn, "arguments")));
            }
        }
        json_decref(d);
    }
    assert_string_equal(reasoning.p, "Paris weather.");
    assert_string_equal(content.p, "Checking.\n\n");
    assert_string_equal(names[0], "get_weather");
    assert_string_equal(names[1], "get_time");
    assert_string_equal(args[0].p, "{\"city\": \"Paris\"}");
    assert_string_equal(args[1].p, "{}");
    assert_true(valid_id(ids[0]) && valid_id(ids[1]));
    assert_string_not_equal(ids[0], ids[1]);
    assert_int_equal(cs_chatout_n_calls(c), 2);
    for (int i = 0; i < 2; i++) {
        free(ids[i]);
        free((char *)names[i]);
        cs_strbuf_free(&args[i]);
    }
    cs_strbuf_free(&reasoning);
    cs_strbuf_free(&content);
    cs_chatout_free(c);
}

static void test_whole_message(void **state)
{
    (void)state;
    json_t *m = NULL;
    int n = 0;
    char err[128];
    struct cs_chatout_params p = QWEN;
    p.parallel = false; /* only the first call */
    assert_int_equal(cs_chatout_message(&p, ANSWER, strlen(ANSWER), &m, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(m, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(m, "content")), "Checking.\n\n");
    assert_string_equal(json_string_value(json_object_get(m, "reasoning_content")), "Paris weather.");
    json_t *tc = json_array_get(json_object_get(m, "tool_calls"), 0);
    assert_null(json_object_get(tc, "index"));
    assert_true(valid_id(json_string_value(json_object_get(tc, "id"))));
    assert_string_equal(json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
                        "{\"city\": \"Paris\"}");
    json_decref(m);
    /* only a call: content null; no thinking: no reasoning_content */
    static const char only[] = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>";
    assert_int_equal(cs_chatout_message(&QWEN, only, strlen(only), &m, &n, err, sizeof err), CLSPEC_OK);
    assert_true(json_is_null(json_object_get(m, "content")));
    assert_null(json_object_get(m, "reasoning_content"));
    json_decref(m);
    /* reasoning_format none, no tools: the text as it is */
    struct cs_chatout_params plain = {.reasoning = CS_REASONING_NONE, .tools = CS_TOOL_NONE};
    assert_int_equal(cs_chatout_message(&plain, ANSWER, strlen(ANSWER), &m, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 0);
    assert_string_equal(json_string_value(json_object_get(m, "content")), ANSWER);
    assert_null(json_object_get(m, "tool_calls"));
    char *s = cs_api_chat_message_json(&(struct cs_api_resp){CS_API_CHAT, "chatcmpl-1", "m", 1, 7}, m, "tool_calls",
                                       NULL, &(struct cs_req_usage){0});
    assert_non_null(strstr(s, "\"finish_reason\":\"tool_calls\""));
    assert_non_null(strstr(s, "\"seed\":7}"));
    free(s);
}

static void test_delta_chunk_json(void **state)
{
    (void)state;
    char *s = cs_api_chat_delta_json(&(struct cs_api_resp){CS_API_CHAT, "chatcmpl-2", "m", 1, 7},
                                     json_pack("{s:s}", "reasoning_content", "hm"), NULL);
    json_t *o = json_loads(s, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion.chunk");
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "delta"), "reasoning_content")), "hm");
    assert_true(json_is_null(json_object_get(ch, "finish_reason")));
    json_decref(o);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_deltas),
        cmocka_unit_test(test_whole_message),
        cmocka_unit_test(test_delta_chunk_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
