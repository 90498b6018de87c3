/* test-chat-jinja-api.c: chat templates run as Jinja (CS_CHAT_JINJA) beyond
 * the published templates' exact prompts (tests/test-chat-jinja.c): content
 * given as parts, Jinja builtins, continue_final_message, errors naming the
 * template line, selection (auto -> jinja, fallback to markers), the OpenAI
 * message path of the marker families, and the compiled-template cache. */
#include "config.h"

#include <pthread.h>
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

/* content as text parts: given as they are to a template that reads them
 * (Gemma 3), joined for one that adds content to a string (Qwen 2.5) */
static void test_content_parts(void **state)
{
    (void)state;
    json_error_t je;
    json_t *m = json_loads("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \" A\"},"
                           " {\"type\": \"text\", \"text\": \"B \"}]}]", 0, &je);
    assert_non_null(m);
    static const struct {
        const char *tmpl, *want;
    } t[] = {
        {"gemma-3-4b-it.jinja", "<start_of_turn>user\nAB<end_of_turn>\n<start_of_turn>model\n"},
        {"qwen2.5-7b-instruct.jinja", "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                                      "assistant.<|im_end|>\n<|im_start|>user\n A\nB <|im_end|>\n<|im_start|>assistant\n"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++) {
        size_t tl;
        char *tmpl = cju_slurp(t[i].tmpl, &tl), *out = NULL, err[256];
        struct cs_chat_params p = {.family = CS_CHAT_JINJA, .jinja = tmpl, .jinja_len = tl, .add_generation_prompt = true};
        assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
        assert_string_equal(out, t[i].want);
        free(out);
        free(tmpl);
    }
    json_decref(m);
}

/* llama.cpp's built-in names: the prompt its format gives (system, user, assistant, user; generation prompt) */
static void test_builtin_names(void **state)
{
    (void)state;
    static const struct {
        const char *name, *want;
    } t[] = {
        {"command-r", "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Be brief.<|END_OF_TURN_TOKEN|>"
                      "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>"
                      "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello<|END_OF_TURN_TOKEN|>"
                      "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Q<|END_OF_TURN_TOKEN|>"
                      "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
        {"vicuna", " Be brief. \n\nUSER: Hi there\nASSISTANT: Hello</s>\nUSER: Q\nASSISTANT:"},
        {"Vicuna-Orca", "SYSTEM:  Be brief. \nUSER: Hi there\nASSISTANT: Hello</s>\nUSER: Q\nASSISTANT:"},
        {"phi3", "<|system|>\n Be brief. <|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello<|end|>\n"
                 "<|user|>\nQ<|end|>\n<|assistant|>\n"},
        {"phi4", "<|im_start|>system<|im_sep|> Be brief. <|im_end|><|im_start|>user<|im_sep|>Hi there<|im_end|>"
                 "<|im_start|>assistant<|im_sep|>Hello<|im_end|><|im_start|>user<|im_sep|>Q<|im_end|>"
                 "<|im_start|>assistant<|im_sep|>"},
        {"falcon3", "<|system|>\n Be brief. \n<|user|>\nHi there\n<|assistant|>\nHello\n<|user|>\nQ\n<|assistant|>\n"},
        {"deepseek", " Be brief. ### Instruction:\nHi there\n### Response:\nHello\n<|EOT|>\n### Instruction:\nQ\n"
                     "### Response:\n"},
        {"openchat", " Be brief. <|end_of_turn|>GPT4 Correct User: Hi there<|end_of_turn|>GPT4 Correct Assistant: "
                     "Hello<|end_of_turn|>GPT4 Correct User: Q<|end_of_turn|>GPT4 Correct Assistant:"},
        {"monarch", "system\n Be brief. </s>\n<s>user\nHi there</s>\n<s>assistant\nHello</s>\n<s>user\nQ</s>\n"
                    "<s>assistant\n"},
    };
    json_t *m = json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "role", "system", "content", " Be brief. ",
                          "role", "user", "content", "Hi there", "role", "assistant", "content", "Hello", "role",
                          "user", "content", "Q");
    for (size_t i = 0; i < CS_ARRAY_LEN(t); i++) {
        const char *text = cs_chat_builtin_template(t[i].name);
        assert_non_null(text);
        char *out = NULL, err[256];
        struct cs_chat_params p = {.family = CS_CHAT_JINJA, .jinja = text, .jinja_len = strlen(text),
                                   .add_generation_prompt = true};
        assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
        if (strcmp(out, t[i].want) != 0)
            fail_msg("%s: got [%s]", t[i].name, out);
        free(out);
    }
    /* the generation prompt only when asked; names that are families or unknown have no text */
    const char *cr = cs_chat_builtin_template("command-r");
    char *out = NULL, err[256];
    struct cs_chat_params p = {.family = CS_CHAT_JINJA, .jinja = cr, .jinja_len = strlen(cr)};
    assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_null(strstr(out + strlen(out) - strlen("<|END_OF_TURN_TOKEN|>"), "CHATBOT"));
    free(out);
    assert_null(cs_chat_builtin_template("chatml"));
    assert_null(cs_chat_builtin_template("nonsense"));
    assert_null(cs_chat_builtin_template(NULL));
    enum cs_chat_family f;
    assert_int_equal(cs_chat_family_parse("mistral-v1", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_MISTRAL);
    assert_int_equal(cs_chat_family_parse("mistral-v3-tekken", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_MISTRAL_TEKKEN);
    assert_int_equal(cs_chat_family_parse("command-r", &f, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "command-r"));
    json_decref(m);
}

/* continue_final with the JSON messages: Llama 3.1's own template, a string and content parts */
static void test_continue_final_json(void **state)
{
    (void)state;
    size_t tl;
    char *tmpl = cju_slurp("llama3.1-8b-instruct.jinja", &tl), *out = NULL, err[256];
    struct cs_chat_params p = {.family = CS_CHAT_JINJA, .jinja = tmpl, .jinja_len = tl, .continue_final = true,
                               .now = NOW};
    static const char *const want_end = "<|start_header_id|>user<|end_header_id|>\n\nWhat is the best book<|eot_id|>"
                                        "<|start_header_id|>assistant<|end_header_id|>\n\n";
    json_t *m = json_loads("[{\"role\":\"system\",\"content\":\"Book\"},{\"role\":\"user\",\"content\":"
                           "\"What is the best book\"},{\"role\":\"assistant\",\"content\":\"Whill\"}]", 0, NULL);
    json_t *parts = json_loads("[{\"type\":\"text\",\"text\":\"Wh\"},{\"type\":\"text\",\"text\":\"ill\"}]", 0, NULL);
    static const char *const tails[] = {"Whill", "Wh\n\nill", ""};
    for (int k = 0; k < 3; k++) {
        if (k == 1)
            json_object_set(json_array_get(m, 2), "content", parts);
        if (k == 2)
            json_object_set_new(json_array_get(m, 2), "content", json_null());
        assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
        size_t wl = strlen(want_end) + strlen(tails[k]), ol = strlen(out);
        assert_true(ol > wl);
        assert_memory_equal(out + ol - wl, want_end, strlen(want_end));
        assert_string_equal(out + ol - strlen(tails[k]), tails[k]);
        free(out);
    }
    json_object_set_new(json_array_get(m, 2), "content", json_integer(3));
    assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    json_decref(parts);
    json_decref(m);
    free(tmpl);
}

/* a template's own refusals and errors come back with the template line */
static void test_template_errors(void **state)
{
    (void)state;
    char err[512], *out = NULL;
    assert_int_equal(cju_render_case("gemma-2-2b-it.jinja", "conv-basic.json", "<bos>", "", false, &out, NULL, err,
                                 sizeof err),
                     CLSPEC_E_INVAL);
    assert_null(out);
    assert_non_null(strstr(err, "chat template jinja: template line 1: raise_exception: System role not supported"));
    static const char broken[] = "{% for m in messages %}\n{{ m.content }\n{% endfor %}";
    struct cs_chat_params p = {.family = CS_CHAT_JINJA, .jinja = broken, .jinja_len = sizeof broken - 1};
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", "x");
    assert_int_equal(cs_chat_render_json(&p, msgs, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "template line 2:"));
    /* not an array, kwargs not an object */
    p.jinja = "{{ messages|length }}";
    p.jinja_len = strlen(p.jinja);
    assert_int_equal(cs_chat_render_json(&p, NULL, &out, NULL, NULL, err, sizeof err),
                     CLSPEC_E_INVAL);
    json_t *arr = json_array();
    p.kwargs = arr;
    assert_int_equal(cs_chat_render_json(&p, msgs, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "kwargs"));
    /* the kwargs cannot replace messages */
    json_t *kw = json_pack("{s:i}", "messages", 5);
    p.kwargs = kw;
    assert_int_equal(cs_chat_render_json(&p, msgs, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out, "1");
    free(out);
    json_decref(kw);
    json_decref(arr);
    json_decref(msgs);
}

/* auto: the GGUF's template runs as Jinja when it compiles, else markers;
 * "jinja" configured on a broken or missing template is an error naming it */
static void test_select(void **state)
{
    (void)state;
    char err[512];
    enum cs_chat_family f;
    bool known = false;
    size_t tl;
    char *tmpl = cju_slurp("llama3.2-3b-instruct.jinja", &tl);
    assert_int_equal(cs_chat_select(tmpl, tl, NULL, &f, &known, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_JINJA);
    assert_true(known);
    assert_int_equal(cs_chat_select(tmpl, tl, "llama3.1", &f, &known, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_LLAMA31);
    assert_int_equal(cs_chat_select(tmpl, tl, "Jinja", &f, &known, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_JINJA);
    free(tmpl);
    static const char broken[] = "<|im_start|>{% if x %}\n{{ messages[0].content";
    assert_int_equal(cs_chat_select(broken, sizeof broken - 1, "auto", &f, &known, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_CHATML); /* the marker fallback */
    assert_int_equal(cs_chat_select(broken, sizeof broken - 1, "jinja", &f, &known, err, sizeof err),
                     CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "template line 2"));
    assert_int_equal(cs_chat_select(NULL, 0, "jinja", &f, &known, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "no chat template"));
    assert_string_equal(cs_chat_family_name(CS_CHAT_JINJA), "jinja");
}

/* the marker families through the OpenAI message path: text parts joined,
 * null content empty, tool calls refused with a reason */
static void test_family_json_path(void **state)
{
    (void)state;
    char err[512], *out = NULL;
    struct cs_chat_params p = {.family = CS_CHAT_CHATML, .add_generation_prompt = true};
    json_error_t je;
    json_t *m = json_loads("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"A\"},"
                           " {\"type\": \"text\", \"text\": \"B\"}]}, {\"role\": \"assistant\", \"content\": null}]",
                           0, &je);
    assert_non_null(m);
    assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out, "<|im_start|>user\nA\nB<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n"
                             "<|im_start|>assistant\n");
    free(out);
    json_decref(m);
    m = json_loads("[{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"1\"}]}]", 0, &je);
    assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "message 0: tool_calls need the model's Jinja chat template"));
    json_decref(m);
    m = json_loads("[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]", 0, &je);
    assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "content part 0"));
    json_decref(m);
    m = json_loads("[{\"role\": \"tool\", \"content\": \"x\"}]", 0, &je);
    assert_int_equal(cs_chat_render_json(&p, m, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    json_decref(m);
}

/* ---- the compiled-template cache (chat_jinja.c) ---- */

/* renders template text tmpl[0..tl) on conversation cname (no BOS) */
static char *render_text(const char *tmpl, size_t tl, const char *cname)
{
    json_t *conv = cju_load_conv(cname);
    struct cs_chat_params p = {.family = CS_CHAT_JINJA, .add_generation_prompt = true, .jinja = tmpl,
                               .jinja_len = tl, .tools = json_object_get(conv, "tools"), .now = NOW};
    char *out = NULL, err[512];
    if (cs_chat_render_json(&p, json_object_get(conv, "messages"), &out, NULL, NULL, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s: %s", cname, err);
    json_decref(conv);
    return out;
}

struct render_job {
    const char *tmpl;
    size_t tl;
    const char *want;
    int bad;
};

static void *render_thread(void *arg)
{
    struct render_job *j = arg;
    for (int i = 0; i < 25; i++) {
        json_t *conv = json_loads("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}", 0, NULL);
        struct cs_chat_params p = {.family = CS_CHAT_JINJA, .add_generation_prompt = true, .jinja = j->tmpl,
                                   .jinja_len = j->tl, .now = NOW};
        char *out = NULL, err[256];
        if (!conv || cs_chat_render_json(&p, json_object_get(conv, "messages"), &out, NULL, NULL, err, sizeof err) ||
            strcmp(out, j->want))
            j->bad++;
        free(out);
        json_decref(conv);
    }
    return NULL;
}

/* A template renders the same from the cache as compiled afresh; the cache
 * is keyed by the text (a copy elsewhere hits it, an edit of the same
 * length does not); more distinct templates than it holds still render;
 * threads render one cached template at once. */
static void test_template_cache(void **state)
{
    (void)state;
    size_t tl = 0;
    char *tmpl = cju_slurp("llama3.1-8b-instruct.jinja", &tl);
    char *a = render_text(tmpl, tl, "conv-basic.json"), *b = render_text(tmpl, tl, "conv-basic.json");
    assert_string_equal(a, b);
    char *copy = malloc(tl);
    assert_non_null(copy);
    memcpy(copy, tmpl, tl);
    char *c = render_text(copy, tl, "conv-basic.json");
    assert_string_equal(a, c);
    char *k = strstr(copy, "Cutting Knowledge");
    assert_non_null(k);
    k[strlen("Cutting Knowledg")] = 'f'; /* same length, other text */
    char *d = render_text(copy, tl, "conv-basic.json");
    assert_non_null(strstr(d, "Cutting Knowledgf Date"));
    assert_null(strstr(a, "Knowledgf"));
    free(copy);
    for (int i = 0; i < 24; i++) { /* distinct texts beyond the cache's 16 */
        char *v = malloc(tl + 32);
        assert_non_null(v);
        int n = snprintf(v, 32, "{#- %d #}", i);
        memcpy(v + n, tmpl, tl);
        char *o = render_text(v, tl + (size_t)n, "conv-basic.json");
        assert_string_equal(o, a);
        free(o);
        free(v);
    }
    char *want = NULL;
    {
        json_t *conv = json_loads("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}", 0, NULL);
        struct cs_chat_params p = {.family = CS_CHAT_JINJA, .add_generation_prompt = true, .jinja = tmpl,
                                   .jinja_len = tl, .now = NOW};
        char err[256];
        assert_int_equal(cs_chat_render_json(&p, json_object_get(conv, "messages"), &want, NULL, NULL, err, sizeof err),
                         CLSPEC_OK);
        json_decref(conv);
    }
    struct render_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct render_job){tmpl, tl, want, 0};
        assert_int_equal(pthread_create(&th[i], NULL, render_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
    free(want);
    free(a);
    free(b);
    free(c);
    free(d);
    free(tmpl);
}
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_cache), /* first: the cache is empty (hits, inserts, then full) */
        cmocka_unit_test(test_template_errors),     cmocka_unit_test(test_select),
        cmocka_unit_test(test_family_json_path),    cmocka_unit_test(test_content_parts),
        cmocka_unit_test(test_builtin_names),       cmocka_unit_test(test_continue_final_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
