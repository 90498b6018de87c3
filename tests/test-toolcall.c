/* test-toolcall.c: tool calls parsed out of model output in each format
 * (src/text/toolcall.c), whole and streamed: every answer is fed in chunks
 * of 1, 2, 3, 5, 8 bytes and whole, and the deltas must add up to the same
 * content and calls; streamed, the name comes before the arguments end,
 * arguments arrive in pieces, and text that may start a marker is held
 * back. Malformed calls come back as content; format detection on the
 * template fixtures. */
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
#include "text/chat.h"
#include "text/toolcall.h"

#ifndef CS_CHAT_FIXTURES
#define CS_CHAT_FIXTURES "tests/chat"
#endif

#define DS_CALLS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALLS_END "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_CALL_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"

struct result {
    struct cs_strbuf content;
    struct cs_strbuf names;  /* "name1|name2|" */
    struct cs_strbuf args;   /* "args1|args2|" */
    int n_args_deltas;       /* CALL_ARGS deltas seen */
    bool start_before_args_end; /* a CALL_START was seen while its arguments were incomplete */
};

static void result_free(struct result *r)
{
    cs_strbuf_free(&r->content);
    cs_strbuf_free(&r->names);
    cs_strbuf_free(&r->args);
}

/* feeds text in chunks of k bytes (0: whole) and sums the deltas up */
static void run(enum cs_tool_format f, const char *text, size_t k, struct result *r)
{
    memset(r, 0, sizeof *r);
    struct cs_toolcall_stream *s = NULL;
    char err[256];
    assert_int_equal(cs_toolcall_stream_new(f, &s, err, sizeof err), CLSPEC_OK);
    size_t n = strlen(text), pos = 0;
    struct cs_strbuf cur[8] = {{0}};
    int n_calls = 0;
    do {
        size_t take = k ? CS_MIN(k, n - pos) : n;
        struct cs_tool_delta *ev = NULL;
        size_t nev = 0;
        bool final = pos + take >= n;
        assert_int_equal(cs_toolcall_stream_feed(s, text + pos, take, final, &ev, &nev, err, sizeof err), CLSPEC_OK);
        pos += take;
        for (size_t i = 0; i < nev; i++) {
            switch (ev[i].kind) {
            case CS_TD_CONTENT: cs_strbuf_put(&r->content, ev[i].text); break;
            case CS_TD_CALL_START:
                assert_int_equal(ev[i].index, n_calls);
                assert_true(n_calls < 8);
                n_calls++;
                cs_strbuf_put(&r->names, ev[i].text);
                cs_strbuf_put(&r->names, "|");
                if (!final)
                    r->start_before_args_end = true;
                break;
            case CS_TD_CALL_ARGS:
                assert_true(ev[i].index >= 0 && ev[i].index < n_calls);
                cs_strbuf_put(&cur[ev[i].index], ev[i].text);
                r->n_args_deltas++;
                break;
            }
        }
        cs_tool_deltas_free(ev, nev);
    } while (pos < n);
    for (int i = 0; i < n_calls; i++) {
        cs_strbuf_put(&r->args, cur[i].p ? cur[i].p : "");
        cs_strbuf_put(&r->args, "|");
    }
    for (int i = 0; i < 8; i++)
        cs_strbuf_free(&cur[i]);
    cs_toolcall_stream_free(s);
}

static const char *str(const struct cs_strbuf *b) { return b->p ? b->p : ""; }

/* every chunking gives content, names and arguments; the whole-answer parser too */
static void expect(enum cs_tool_format f, const char *text, const char *content, const char *names, const char *args)
{
    static const size_t chunks[] = {1, 2, 3, 5, 8, 0};
    for (size_t c = 0; c < CS_ARRAY_LEN(chunks); c++) {
        struct result r;
        run(f, text, chunks[c], &r);
        if (strcmp(str(&r.content), content) || strcmp(str(&r.names), names) || strcmp(str(&r.args), args)) {
            fprintf(stderr, "# %s, chunks of %zu, [%s]:\n#  content [%s] want [%s]\n#  names [%s] want [%s]\n"
                            "#  args [%s] want [%s]\n",
                    cs_tool_format_name(f), chunks[c], text, str(&r.content), content, str(&r.names), names,
                    str(&r.args), args);
            result_free(&r);
            fail();
        }
        result_free(&r);
    }
    char *ct = NULL, err[128];
    struct cs_tool_call *calls = NULL;
    size_t n = 0;
    assert_int_equal(cs_toolcall_parse(f, text, strlen(text), &ct, &calls, &n, err, sizeof err), CLSPEC_OK);
    assert_string_equal(ct, content);
    struct cs_strbuf nb = {0}, ab = {0};
    for (size_t i = 0; i < n; i++) {
        cs_strbuf_printf(&nb, "%s|", calls[i].name);
        cs_strbuf_printf(&ab, "%s|", calls[i].arguments);
    }
    assert_string_equal(str(&nb), names);
    assert_string_equal(str(&ab), args);
    cs_strbuf_free(&nb);
    cs_strbuf_free(&ab);
    cs_tool_calls_free(calls, n);
    free(ct);
}

static void test_hermes(void **state)
{
    (void)state;
    expect(CS_TOOL_HERMES,
           "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
           "Let me check.\n", "get_weather|", "{\"city\": \"Paris\"}|");
    /* two calls; arguments before the name; arguments as a JSON string */
    expect(CS_TOOL_HERMES,
           "<tool_call>{\"arguments\": {\"a\": [1, \"}\"]}, \"name\": \"f\"}</tool_call>\n"
           "<tool_call>{\"name\": \"g\", \"arguments\": \"{\\\"b\\\": 2}\"}</tool_call>",
           "\n", "f|g|", "{\"a\": [1, \"}\"]}|{\"b\": 2}|");
    /* no arguments at all: {} */
    expect(CS_TOOL_HERMES, "<tool_call>{\"name\": \"now\"}</tool_call>", "", "now|", "{}|");
    /* not a call: a lone '<', a marker prefix at the end, a malformed body */
    expect(CS_TOOL_HERMES, "a < b <tool", "a < b <tool", "", "");
    expect(CS_TOOL_HERMES, "x<tool_call>not json</tool_call> y", "x<tool_call>not json</tool_call> y", "", "");
    /* the model stopped inside a call: the text comes back as content */
    expect(CS_TOOL_HERMES, "ok <tool_call>{\"name\": \"f\", \"argu", "ok <tool_call>{\"name\": \"f\", \"argu", "", "");
}

static void test_llama3(void **state)
{
    (void)state;
    expect(CS_TOOL_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", "get_weather|",
           "{\"city\": \"Paris\"}|");
    expect(CS_TOOL_LLAMA3, "  {\"name\": \"f\", \"arguments\": {}}", "", "f|", "{}|");
    expect(CS_TOOL_LLAMA3, "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"x\"}}", "", "search|",
           "{\"q\": \"x\"}|");
    expect(CS_TOOL_LLAMA3, "<|python_tag|>print(\"hi\")", "", "python|", "{\"code\": \"print(\\\"hi\\\")\"}|");
    /* JSON that is not a call, and text: content */
    expect(CS_TOOL_LLAMA3, "{\"answer\": 42}", "{\"answer\": 42}", "", "");
    expect(CS_TOOL_LLAMA3, "{\"name\": \"Bob\"}", "{\"name\": \"Bob\"}", "", "");
    expect(CS_TOOL_LLAMA3, "Hello {there}", "Hello {there}", "", "");
}

static void test_mistral(void **state)
{
    (void)state;
    expect(CS_TOOL_MISTRAL,
           "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"x\": 1}}, {\"name\": \"g\", \"arguments\": {\"y\": [1, 2]},"
           " \"id\": \"abc123def\"}]",
           "", "f|g|", "{\"x\": 1}|{\"y\": [1, 2]}|");
    expect(CS_TOOL_MISTRAL, "Sure. [TOOL_CALLS]oops", "Sure. [TOOL_CALLS]oops", "", "");
    /* the newer form: one marker per call, name then [ARGS]; optionally [CALL_ID] */
    expect(CS_TOOL_MISTRAL, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]now[ARGS]{}", "",
           "get_weather|now|", "{\"city\": \"Paris\"}|{}|");
    expect(CS_TOOL_MISTRAL, "Ok.[TOOL_CALLS]f[CALL_ID]a1B2c3D4e[ARGS]{\"x\": {\"y\": \"}\"}} done", "Ok. done", "f|",
           "{\"x\": {\"y\": \"}\"}}|");
    expect(CS_TOOL_MISTRAL, "[TOOL_CALLS]f[ARGS]not json", "[TOOL_CALLS]f[ARGS]not json", "", "");
    expect(CS_TOOL_MISTRAL, "[TOOL_CALLS]bad name[ARGS]{}", "[TOOL_CALLS]bad name[ARGS]{}", "", "");
    expect(CS_TOOL_MISTRAL, "[TOOL_CALLS]f[ARG", "[TOOL_CALLS]f[ARG", "", "");
}

static void test_functionary_v31(void **state)
{
    (void)state;
    expect(CS_TOOL_FUNCTIONARY_V31,
           "Looking.<function=get_weather>{\"city\": \"Paris\"}</function><function=now>{}</function>", "Looking.",
           "get_weather|now|", "{\"city\": \"Paris\"}|{}|");
    expect(CS_TOOL_FUNCTIONARY_V31, "<|python_tag|>print(1)", "", "python|", "{\"code\": \"print(1)\"}|");
    expect(CS_TOOL_FUNCTIONARY_V31, "a <function=f>oops</function>", "a <function=f>oops</function>", "", "");
    expect(CS_TOOL_FUNCTIONARY_V31, "x < y <func", "x < y <func", "", "");
}

static void test_command_r7b(void **state)
{
    (void)state;
    expect(CS_TOOL_COMMAND_R7B,
           "<|START_ACTION|>[\n    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": "
           "{\"city\": \"Paris\"}},\n    {\"tool_call_id\": \"1\", \"tool_name\": \"now\", \"parameters\": {}}\n]"
           "<|END_ACTION|>",
           "", "get_weather|now|", "{\"city\": \"Paris\"}|{}|");
    expect(CS_TOOL_COMMAND_R7B, "<|START_RESPONSE|>Hello there.<|END_RESPONSE|>", "Hello there.", "", "");
    expect(CS_TOOL_COMMAND_R7B, "<|START_ACTION|>{\"tool_name\": \"f\"}<|END_ACTION|>",
           "<|START_ACTION|>{\"tool_name\": \"f\"}<|END_ACTION|>", "", "");
}

static void test_qwen3_coder(void **state)
{
    (void)state;
    expect(CS_TOOL_QWEN3_CODER,
           "I'll call.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
           "<parameter=days>\n3\n</parameter>\n<parameter=opts>\n{\"metric\": true}\n</parameter>\n</function>\n"
           "</tool_call>",
           "I'll call.\n", "get_weather|", "{\"city\": \"Paris\", \"days\": 3, \"opts\": {\"metric\": true}}|");
    expect(CS_TOOL_QWEN3_CODER, "<tool_call><function=now></function></tool_call>done", "done", "now|", "{}|");
}

static void test_deepseek(void **state)
{
    (void)state;
    expect(CS_TOOL_DEEPSEEK,
           "Checking." DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP "get_weather\n```json\n{\"city\": \"Paris\"}\n```"
           DS_CALL_END "\n" DS_CALL_BEGIN "function" DS_SEP "get_time\n```json\n{}\n```" DS_CALL_END DS_CALLS_END,
           "Checking.", "get_weather|get_time|", "{\"city\": \"Paris\"}|{}|");
    /* V3.1: name<sep>arguments */
    expect(CS_TOOL_DEEPSEEK,
           DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\": \"Oslo\"}" DS_CALL_END DS_CALLS_END, "",
           "get_weather|", "{\"city\": \"Oslo\"}|");
}

static void test_functionary(void **state)
{
    (void)state;
    expect(CS_TOOL_FUNCTIONARY, "all\nLet me look.>>>get_weather\n{\"city\": \"Paris\"}", "Let me look.",
           "get_weather|", "{\"city\": \"Paris\"}|");
    expect(CS_TOOL_FUNCTIONARY, "all\nHello > there", "Hello > there", "", "");
    expect(CS_TOOL_FUNCTIONARY, "f\n{\"a\": 1}>>>g\n{}", "", "f|g|", "{\"a\": 1}|{}|");
}

static void test_none(void **state)
{
    (void)state;
    expect(CS_TOOL_NONE, "<tool_call>{\"name\": \"f\"}</tool_call>", "<tool_call>{\"name\": \"f\"}</tool_call>", "", "");
}

/* streamed byte by byte: the call starts before its arguments end, the
 * arguments come in many deltas, and "<tool" is held back until decided */
static void test_streaming_shape(void **state)
{
    (void)state;
    struct result r;
    run(CS_TOOL_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"text\": \"a long argument\"}}</tool_call>", 1, &r);
    assert_true(r.start_before_args_end);
    assert_true(r.n_args_deltas > 10);
    result_free(&r);
    struct cs_toolcall_stream *s = NULL;
    char err[128];
    assert_int_equal(cs_toolcall_stream_new(CS_TOOL_HERMES, &s, err, sizeof err), CLSPEC_OK);
    struct cs_tool_delta *ev = NULL;
    size_t n = 0;
    assert_int_equal(cs_toolcall_stream_feed(s, "Hi <tool", 8, false, &ev, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].text, "Hi ");
    cs_tool_deltas_free(ev, n);
    assert_int_equal(cs_toolcall_stream_feed(s, "s", 1, false, &ev, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 1); /* "<tools" cannot be "<tool_call>": out it goes */
    assert_string_equal(ev[0].text, "<tools");
    cs_tool_deltas_free(ev, n);
    cs_toolcall_stream_free(s);
}

static void test_names_and_detection(void **state)
{
    (void)state;
    char err[256];
    enum cs_tool_format f;
    for (int i = 0; i < CS_TOOL_N_FORMATS; i++) {
        assert_int_equal(cs_tool_format_parse(cs_tool_format_name((enum cs_tool_format)i), &f, err, sizeof err),
                         CLSPEC_OK);
        assert_int_equal(f, i);
    }
    assert_int_equal(cs_tool_format_parse("xml", &f, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "qwen3-coder"));
    assert_string_equal(cs_tool_format_name(CS_TOOL_N_FORMATS), "?");
    static const struct {
        const char *file;
        enum cs_tool_format f;
    } t[] = {
        {"qwen2.5-7b-instruct.jinja", CS_TOOL_HERMES},     {"qwen3-0.6b.jinja", CS_TOOL_HERMES},
        {"deepseek-r1-distill-qwen-32b.jinja", CS_TOOL_DEEPSEEK}, {"llama3.2-3b-instruct.jinja", CS_TOOL_LLAMA3},
        {"mistral-nemo-instruct-2407.jinja", CS_TOOL_MISTRAL}, {"chatml-openhermes-2.5.jinja", CS_TOOL_NONE},
        {"qwen3-coder-tool_use.jinja", CS_TOOL_QWEN3_CODER}, {"hermes-2-pro-llama-3-8b-tool_use.jinja", CS_TOOL_HERMES},
        {"command-r7b-12-2024-tool_use.jinja", CS_TOOL_COMMAND_R7B}, {"functionary-medium-v3.2.jinja", CS_TOOL_FUNCTIONARY},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CS_CHAT_FIXTURES, t[i].file);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        char buf[16384];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        if (cs_tool_format_detect(buf, n) != t[i].f)
            fail_msg("%s: detected %s", t[i].file, cs_tool_format_name(cs_tool_format_detect(buf, n)));
    }
    assert_int_equal(cs_tool_format_detect(NULL, 0), CS_TOOL_NONE);
    assert_int_equal(cs_tool_format_detect("<function=x><parameter=y>", 25), CS_TOOL_QWEN3_CODER);
    assert_int_equal(cs_tool_format_detect("<function=x>{}</function>", 25), CS_TOOL_FUNCTIONARY_V31);
}

/* A call rendered into the history by a model's template reads back, with
 * the format detected on that template, as the same call: templates and
 * parsers agree on each format. */
static void test_round_trip_through_templates(void **state)
{
    (void)state;
    static const struct {
        const char *tmpl, *open, *close;
    } t[] = {
        {"qwen2.5-7b-instruct.jinja", "<|im_start|>assistant\n", "<|im_end|>"},
        {"hermes-2-pro-llama-3-8b-tool_use.jinja", "<|im_start|>assistant\n", "<|im_end|>"},
        {"qwen3-coder-tool_use.jinja", "<|im_start|>assistant", "<|im_end|>"},
        {"llama3.2-3b-instruct.jinja", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
        {"functionary-medium-v3.2.jinja", "<|start_header_id|>assistant<|end_header_id|>\n\n>>>", "<|eot_id|>"},
        {"deepseek-r1-distill-qwen-32b.jinja", "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
         "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>"},
        {"deepseek-v3-vllm-tool.jinja", "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
         "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>"},
        {"command-r7b-12-2024-tool_use.jinja", "<|CHATBOT_TOKEN|><|START_THINKING|><|END_THINKING|>",
         "<|END_OF_TURN_TOKEN|>"},
    };
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/conv-tools.json", CS_CHAT_FIXTURES);
    json_t *conv = json_load_file(path, 0, NULL);
    assert_non_null(conv);
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++) {
        snprintf(path, sizeof path, "%s/%s", CS_CHAT_FIXTURES, t[i].tmpl);
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        static char tmpl[16384];
        size_t tl = fread(tmpl, 1, sizeof tmpl, fp);
        fclose(fp);
        struct cs_chat_params p = {.family = CS_CHAT_JINJA, .jinja = tmpl, .jinja_len = tl, .add_generation_prompt = true,
                                   .tools = json_object_get(conv, "tools"), .now = 1700000000};
        char *out = NULL;
        if (cs_chat_render_json(&p, json_object_get(conv, "messages"), &out, NULL, NULL, err, sizeof err))
            fail_msg("%s: %s", t[i].tmpl, err);
        const char *q = strstr(out, "What is the weather in Paris?");
        const char *a = q ? strstr(q, t[i].open) : NULL;
        const char *b = a ? strstr(a + strlen(t[i].open), t[i].close) : NULL;
        if (!b)
            fail_msg("%s: no assistant turn in [%s]", t[i].tmpl, out);
        a += strlen(t[i].open);
        enum cs_tool_format f = cs_tool_format_detect(tmpl, tl);
        char *content = NULL;
        struct cs_tool_call *calls = NULL;
        size_t n = 0;
        assert_int_equal(cs_toolcall_parse(f, a, (size_t)(b - a), &content, &calls, &n, err, sizeof err), CLSPEC_OK);
        if (n != 1 || strcmp(calls[0].name, "get_weather"))
            fail_msg("%s (%s): %zu calls in [%.*s]", t[i].tmpl, cs_tool_format_name(f), n, (int)(b - a), a);
        json_t *args = json_loads(calls[0].arguments, 0, NULL);
        assert_non_null(args);
        assert_string_equal(json_string_value(json_object_get(args, "city")), "Paris");
        json_decref(args);
        cs_tool_calls_free(calls, n);
        free(content);
        free(out);
    }
    json_decref(conv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hermes),      cmocka_unit_test(test_llama3),          cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_qwen3_coder), cmocka_unit_test(test_deepseek),        cmocka_unit_test(test_functionary),
        cmocka_unit_test(test_functionary_v31), cmocka_unit_test(test_command_r7b),
        cmocka_unit_test(test_none),        cmocka_unit_test(test_streaming_shape), cmocka_unit_test(test_names_and_detection),
        cmocka_unit_test(test_round_trip_through_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
