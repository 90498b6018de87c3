/* test-toolcall.c: tool calls parsed out of model output in each format
 * (src/text/toolcall.c), whole and streamed: every answer is fed in chunks
 * of 1, 2, 3, 5, 8 bytes and whole, and the deltas must add up to the same
 * content and calls; streamed, the name comes before the arguments end,
 * arguments arrive in pieces, and text that may start a marker is held
 * back. Malformed calls come back as content; format detection on the
 * template fixtures. Forced calls (toolgrammar.c): per format, the grammar
 * accepts a written call and refuses a wrong name or argument, and every
 * text a random walk through the grammar produces parses back as calls of
 * the allowed tools whose arguments fit their schemas. */
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
#include "text/toolgrammar.h"
#include "engine/grammar.h"
#include "testutil.h"

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
        {"qwen3.6-27b.jinja", CS_TOOL_QWEN3_CODER}, {"hermes-3-llama-3.1-8b-tool_use.jinja", CS_TOOL_HERMES},
        {"llama3.1-8b-instruct.jinja", CS_TOOL_LLAMA3},
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
        {"qwen3.6-27b.jinja", "<|im_start|>assistant\n<think>\n\n</think>\n\n", "<|im_end|>"},
        {"hermes-3-llama-3.1-8b-tool_use.jinja", "<|im_start|>assistant", "<|im_end|>"},
        {"llama3.1-8b-instruct.jinja", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
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

/* ---- forced calls ---- */
static const char TG_TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"city\": {\"type\": \"string\", \"maxLength\": 12}, \"days\": {\"type\": \"integer\", "
    "\"minimum\": 1, \"maximum\": 7}}, \"required\": [\"city\"]}}}, "
    "{\"type\": \"function\", \"function\": {\"name\": \"now\"}}, "
    "{\"type\": \"function\", \"function\": {\"name\": \"ping\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {}}}}]";

static const struct {
    enum cs_tool_format f;
    const char *tmpl; /* picks the variant */
    const char *call; /* get_weather(city "Paris") as the format writes it; @@ stands for the value */
} TG[] = {
    {CS_TOOL_HERMES, NULL, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": @@}}\n</tool_call>"},
    {CS_TOOL_LLAMA3, NULL, "{\"name\": \"get_weather\", \"parameters\": {\"city\": @@}}"},
    {CS_TOOL_MISTRAL, NULL, "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": @@}}]"},
    {CS_TOOL_MISTRAL, "[ARGS]", "[TOOL_CALLS]get_weather[ARGS]{\"city\": @@}"},
    {CS_TOOL_QWEN3_CODER, NULL,
     "<tool_call>\n<function=get_weather>\n<parameter=city>\n@@\n</parameter>\n</function>\n</tool_call>"},
    {CS_TOOL_DEEPSEEK, "```json",
     DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP "get_weather\n```json\n{\"city\": @@}\n```" DS_CALL_END DS_CALLS_END},
    {CS_TOOL_DEEPSEEK, NULL, DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\": @@}" DS_CALL_END DS_CALLS_END},
    {CS_TOOL_FUNCTIONARY, NULL, "get_weather\n{\"city\": @@}"},
    {CS_TOOL_FUNCTIONARY_V31, NULL, "<function=get_weather>{\"city\": @@}</function>"},
    {CS_TOOL_COMMAND_R7B, NULL,
     "<|START_ACTION|>[\n    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"city\": @@}}"
     "\n]<|END_ACTION|>"},
};

static struct cs_grammar *tg_compile_think(json_t *tools, size_t t, const char *only, bool parallel,
                                           const char *think_close)
{
    struct cs_tool_grammar_params p = {.format = TG[t].f, .tools = tools, .only = only, .parallel = parallel,
                                       .tmpl = TG[t].tmpl, .tmpl_len = TG[t].tmpl ? strlen(TG[t].tmpl) : 0,
                                       .think_close = think_close};
    char *g = NULL, err[512];
    size_t gl = 0;
    if (cs_tool_grammar(&p, &g, &gl, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s: %s", cs_tool_format_name(TG[t].f), err);
    struct cs_grammar *cg = NULL;
    if (cs_grammar_compile(g, gl, NULL, &cg, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s: %s in\n%s", cs_tool_format_name(TG[t].f), err, g);
    free(g);
    return cg;
}

static struct cs_grammar *tg_compile(json_t *tools, size_t t, const char *only, bool parallel)
{
    return tg_compile_think(tools, t, only, parallel, NULL);
}

/* whether the grammar takes the whole text (arg in place of @@) */
static bool tg_accepts(struct cs_grammar *g, const char *call, const char *arg)
{
    struct cs_strbuf b = {0};
    const char *at = strstr(call, "@@");
    cs_strbuf_put_n(&b, call, (size_t)(at - call));
    cs_strbuf_put(&b, arg);
    cs_strbuf_put(&b, at + 2);
    struct cs_grammar_state st = {0};
    char err[256];
    assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), CLSPEC_OK);
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    bool ok = cs_grammar_accept_bytes(g, &st, (const uint8_t *)b.p, b.len, sc) == 1 && cs_grammar_complete(g, &st);
    cs_grammar_scratch_free(sc);
    cs_grammar_state_free(&st);
    cs_strbuf_free(&b);
    return ok;
}

static int byte_piece(void *ctx, int32_t id, const uint8_t **s, size_t *n, int *eog)
{
    static uint8_t bytes[256];
    (void)ctx;
    bytes[id] = (uint8_t)id;
    *s = &bytes[id];
    *n = id == 0 ? 0 : 1;
    *eog = id == 0;
    return 0;
}

static size_t n_code_points(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* the arguments of a forced call fit its tool's schema */
static void tg_check_call(const struct cs_tool_call *c, const char *only, const char *text)
{
    json_t *a = json_loads(c->arguments, 0, NULL);
    if (!json_is_object(a))
        fail_msg("arguments [%s] not an object in [%s]", c->arguments, text);
    if (only && strcmp(c->name, only))
        fail_msg("call of %s, only %s allowed: [%s]", c->name, only, text);
    if (!strcmp(c->name, "now") || !strcmp(c->name, "ping")) { /* no parameters / none declared: {} */
        assert_int_equal(json_object_size(a), 0);
    } else if (!strcmp(c->name, "get_weather")) {
        json_t *city = json_object_get(a, "city"), *days = json_object_get(a, "days");
        if (!json_is_string(city) || n_code_points(json_string_value(city)) > 12)
            fail_msg("city in [%s]", text);
        if (days && (!json_is_integer(days) || json_integer_value(days) < 1 || json_integer_value(days) > 7))
            fail_msg("days in [%s]", text);
        assert_true(json_object_size(a) == 1 + (days != NULL));
    } else {
        fail_msg("call of %s: [%s]", c->name, text);
    }
    json_decref(a);
}

/* random walks through the grammar over a byte vocabulary: each text parses as allowed calls; with
 * think (a reasoning close marker) the walk mostly types the marker when it may, and the text after
 * its first occurrence is what must parse */
static void tg_walks(struct cs_grammar *g, struct cs_grammar_vocab *v, enum cs_tool_format f, const char *only,
                     bool parallel, const char *think, struct tu_rng *r)
{
    uint8_t allowed[256];
    int32_t pick[256];
    char err[256];
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    for (int walk = 0; walk < 6; walk++) {
        struct cs_grammar_state st = {0};
        assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), CLSPEC_OK);
        struct cs_strbuf text = {0};
        size_t hint = 0; /* think: bytes of the marker typed in a row */
        for (int step = 0;; step++) {
            assert_true(step < 4000);
            cs_grammar_mask(g, &st, v, allowed, sc);
            int n = 0;
            for (int32_t i = 1; i < 256; i++)
                if (allowed[i])
                    pick[n++] = i;
            if (allowed[0] && (n == 0 || tu_rng_u64(r) % 3 == 0 || step > 1500))
                break;
            if (n == 0)
                fail_msg("%s: dead end (%d stacks, step %d) after [%s]", cs_tool_format_name(f), st.n_stacks, step, text.p ? text.p : "");
            int32_t id = pick[tu_rng_u64(r) % (uint64_t)n];
            if (think && think[hint] && allowed[(uint8_t)think[hint]] && tu_rng_u64(r) % 4 != 0)
                id = (uint8_t)think[hint];
            hint = think && think[hint] && id == (uint8_t)think[hint] ? hint + 1 : think && think[hint] ? 0 : hint;
            assert_int_equal(cs_grammar_accept_token(g, &st, v, id, sc), 1);
            char ch = (char)id;
            cs_strbuf_put_n(&text, &ch, 1);
        }
        char *content = NULL;
        struct cs_tool_call *calls = NULL;
        size_t nc = 0;
        const char *body = text.p;
        if (think) { /* the reasoning ends at the marker's first occurrence */
            const char *at = strstr(text.p, think);
            if (!at)
                fail_msg("%s: no %s in [%s]", cs_tool_format_name(f), think, text.p);
            body = at + strlen(think);
        }
        assert_int_equal(cs_toolcall_parse(f, body, strlen(body), &content, &calls, &nc, err, sizeof err), CLSPEC_OK);
        if (nc < 1 || (!parallel && nc != 1) || content[strspn(content, " \t\n")])
            fail_msg("%s: %zu calls, content [%s] from [%s]", cs_tool_format_name(f), nc, content, text.p);
        for (size_t i = 0; i < nc; i++)
            tg_check_call(&calls[i], only, text.p);
        cs_tool_calls_free(calls, nc);
        free(content);
        cs_strbuf_free(&text);
        cs_grammar_state_free(&st);
    }
    cs_grammar_scratch_free(sc);
}

static void test_forced_grammar(void **state)
{
    (void)state;
    json_t *tools = json_loads(TG_TOOLS, 0, NULL);
    assert_non_null(tools);
    char err[256];
    struct cs_grammar_vocab *v = NULL;
    assert_int_equal(cs_grammar_vocab_new(256, byte_piece, NULL, &v, err, sizeof err), CLSPEC_OK);
    struct tu_rng r;
    tu_rng_seed(&r, 2020);
    for (size_t t = 0; t < CS_ARRAY_LEN(TG); t++) {
        for (int mode = 0; mode < 3; mode++) { /* any tool, parallel / any tool, one call / only get_weather */
            const char *only = mode == 2 ? "get_weather" : NULL;
            bool parallel = mode == 0;
            struct cs_grammar *g = tg_compile(tools, t, only, parallel);
            if (!tg_accepts(g, TG[t].call, "\"Paris\""))
                fail_msg("%s (%s, mode %d): refuses [%s]", cs_tool_format_name(TG[t].f), TG[t].tmpl ? TG[t].tmpl : "", mode, TG[t].call);
            assert_false(tg_accepts(g, TG[t].call, "5"));                     /* city is a string */
            assert_false(tg_accepts(g, TG[t].call, "\"Paris is a city\"")); /* of at most 12 */
            tg_walks(g, v, TG[t].f, only, parallel, NULL, &r);
            cs_grammar_unref(g);
        }
        struct cs_grammar *g = tg_compile(tools, t, "now", true); /* the named function only */
        assert_false(tg_accepts(g, TG[t].call, "\"Paris\""));
        cs_grammar_unref(g);
        /* the prompt opened a reasoning block: its rest, the marker, then the call */
        static const char *const close[] = {"</think>", "<|END_THINKING|>"};
        const char *m = close[t % 2];
        g = tg_compile_think(tools, t, NULL, true, m);
        struct cs_strbuf with = {0};
        cs_strbuf_printf(&with, "Paris: so < or </ or <|END but not the end.%s%s%s", m,
                         TG[t].f == CS_TOOL_FUNCTIONARY ? "" : "\n\n", TG[t].call);
        if (!tg_accepts(g, with.p, "\"Paris\""))
            fail_msg("%s: refuses [%s]", cs_tool_format_name(TG[t].f), with.p);
        assert_false(tg_accepts(g, TG[t].call, "\"Paris\""));            /* the marker is needed */
        cs_strbuf_free(&with);
        cs_strbuf_printf(&with, "a%sb%s%s", m, m, TG[t].call);      /* and ends the reasoning */
        assert_false(tg_accepts(g, with.p, "\"Paris\""));
        cs_strbuf_free(&with);
        tg_walks(g, v, TG[t].f, NULL, true, m, &r);
        cs_grammar_unref(g);
    }
    cs_grammar_vocab_unref(v);
    /* refusals: no format, a name not offered, a schema json_schema refuses, a name the format cannot write */
    struct cs_tool_grammar_params p = {.format = CS_TOOL_NONE, .tools = tools};
    char *g = NULL;
    size_t gl = 0;
    assert_int_equal(cs_tool_grammar(&p, &g, &gl, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "format"));
    p.format = CS_TOOL_HERMES;
    p.only = "get_time";
    assert_int_equal(cs_tool_grammar(&p, &g, &gl, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "get_time"));
    json_t *bad = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"f g\", \"parameters\": "
                             "{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\", \"foo\": 1}}}}}]",
                             0, NULL);
    p.tools = bad;
    p.only = NULL;
    assert_int_equal(cs_tool_grammar(&p, &g, &gl, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "f g"));
    assert_non_null(strstr(err, "foo"));
    p.format = CS_TOOL_FUNCTIONARY_V31;
    assert_int_equal(cs_tool_grammar(&p, &g, &gl, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "cannot be written"));
    assert_null(g);
    json_decref(bad);
    json_decref(tools);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hermes),      cmocka_unit_test(test_llama3),          cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_qwen3_coder), cmocka_unit_test(test_deepseek),        cmocka_unit_test(test_functionary),
        cmocka_unit_test(test_functionary_v31), cmocka_unit_test(test_command_r7b),
        cmocka_unit_test(test_none),        cmocka_unit_test(test_streaming_shape), cmocka_unit_test(test_names_and_detection),
        cmocka_unit_test(test_round_trip_through_templates), cmocka_unit_test(test_forced_grammar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
