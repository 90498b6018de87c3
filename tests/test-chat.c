/* test-chat.c: chat template families: rendering each family exactly as its
 * Jinja template does (expected strings checked against the templates in
 * tests/chat/ rendered by Jinja2 with trim_blocks/lstrip_blocks, as
 * transformers does), detection on real templates, fallbacks, BOS handling,
 * role and order validation, and the templates the shared GGUFs carry. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "text/chat.h"
#include "base/common.h"
#include "engine/api.h"
#include "gguf/gguf.h"
#include "testutil.h"
#include "text/tokenizer.h"

#ifndef CS_CHAT_FIXTURES
#define CS_CHAT_FIXTURES "tests/chat"
#endif

static const struct cs_chat_msg conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};

static char *render(enum cs_chat_family f, const struct cs_chat_msg *m, size_t n, bool gen, const char *bos,
                    const char *eos, bool *starts_bos)
{
    struct cs_chat_params p = {.family = f, .add_generation_prompt = gen, .bos = bos, .eos = eos};
    char err[256] = "", *out = NULL;
    size_t len = 0;
    int rc = cs_chat_render(&p, m, n, &out, &len, starts_bos, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("%s: render failed: %s", cs_chat_family_name(f), err);
    assert_int_equal(len, strlen(out));
    return out;
}

static void expect_render(enum cs_chat_family f, const struct cs_chat_msg *m, size_t n, bool gen, const char *bos,
                          const char *eos, const char *want)
{
    char *out = render(f, m, n, gen, bos, eos, NULL);
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "# %s:\n# got  [%s]\n# want [%s]\n", cs_chat_family_name(f), out, want);
        free(out);
        fail();
    }
    free(out);
}

/* system + user + assistant + user, generation prompt on */
static void test_render_each_family(void **state)
{
    (void)state;
    static const struct {
        enum cs_chat_family f;
        const char *bos;
        const char *want;
    } cases[] = {
        {CS_CHAT_PLAIN, NULL,
         "System: You are a helpful assistant\nUser: Hello\nAssistant: Hi there\nUser: Who are you\nAssistant:"},
        {CS_CHAT_CHATML, NULL,
         "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
         "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
         "<|im_start|>assistant\n"},
        {CS_CHAT_LLAMA2, "<s>",
         "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
         "<s>[INST] Who are you [/INST]"},
        {CS_CHAT_LLAMA3, "<|begin_of_text|>",
         "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {CS_CHAT_LLAMA31, "<|begin_of_text|>",
         "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
         "Today Date: 26 Jul 2024\n\nYou are a helpful assistant<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {CS_CHAT_MISTRAL, "<s>",
         "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]"},
        {CS_CHAT_MISTRAL_V3, "<s>",
         "<s>[INST] Hello[/INST] Hi there</s>[INST] You are a helpful assistant\n\nWho are you[/INST]"},
        {CS_CHAT_MISTRAL_TEKKEN, "<s>",
         "<s>[INST]Hello[/INST]Hi there</s>[INST]You are a helpful assistant\n\nWho are you[/INST]"},
        {CS_CHAT_ZEPHYR, NULL,
         "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
         "<|user|>\nWho are you</s>\n<|assistant|>\n"},
        {CS_CHAT_GEMMA, "<bos>",
         "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
         "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n"
         "<start_of_turn>model\n"},
    };
    assert_int_equal(CS_ARRAY_LEN(cases), CS_CHAT_N_FAMILIES);
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        expect_render(cases[i].f, conv, CS_ARRAY_LEN(conv), true, cases[i].bos, "</s>", cases[i].want);
        /* NULL bos/eos: the family's default texts give the same result */
        expect_render(cases[i].f, conv, CS_ARRAY_LEN(conv), true, NULL, NULL, cases[i].want);
    }
}

/* Ends with an assistant turn, no generation prompt, contents padded with
 * whitespace: where each template trims and where it does not. */
static void test_render_whitespace_and_history(void **state)
{
    (void)state;
    static const struct cs_chat_msg m[] = {
        {"system", " Be brief. "}, {"user", " Hello\n"},   {"assistant", "  Hi there  "},
        {"user", "Who are you?"},  {"assistant", "\tA model.\n"},
    };
    expect_render(CS_CHAT_CHATML, m, 5, false, NULL, NULL,
                  "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\n Hello\n<|im_end|>\n"
                  "<|im_start|>assistant\n  Hi there  <|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n"
                  "<|im_start|>assistant\n\tA model.\n<|im_end|>\n");
    expect_render(CS_CHAT_LLAMA2, m, 5, false, NULL, NULL,
                  "<s>[INST] <<SYS>>\n Be brief. \n<</SYS>>\n\n Hello [/INST] Hi there </s>"
                  "<s>[INST] Who are you? [/INST] A model. </s>");
    /* llama2 has no generation prompt: the same text with it on */
    expect_render(CS_CHAT_LLAMA2, m, 5, true, NULL, NULL,
                  "<s>[INST] <<SYS>>\n Be brief. \n<</SYS>>\n\n Hello [/INST] Hi there </s>"
                  "<s>[INST] Who are you? [/INST] A model. </s>");
    expect_render(CS_CHAT_LLAMA3, m, 5, false, NULL, NULL,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nA model.<|eot_id|>");
    /* llama3.1: the system turn is always there; later system messages are ordinary turns */
    static const struct cs_chat_msg m31[] = {{"system", " S "}, {"user", "u"}, {"system", " s2 "}};
    expect_render(CS_CHAT_LLAMA31, m31, 3, false, NULL, NULL,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                  "2023\nToday Date: 26 Jul 2024\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nu<|eot_id|>"
                  "<|start_header_id|>system<|end_header_id|>\n\ns2<|eot_id|>");
    expect_render(CS_CHAT_LLAMA31, conv + 1, 1, true, NULL, NULL,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                  "2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello"
                  "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(CS_CHAT_MISTRAL, m, 5, false, NULL, NULL,
                  "<s> [INST]  Be brief. \n\n Hello\n [/INST]   Hi there  </s> [INST] Who are you? [/INST] "
                  "\tA model.\n</s>");
    /* v3 / tekken: the system text rides on the last user turn only when the
     * conversation ends with it; here it ends with the assistant: dropped */
    expect_render(CS_CHAT_MISTRAL_TEKKEN, m, 5, false, NULL, NULL,
                  "<s>[INST] Hello\n[/INST]  Hi there  </s>[INST]Who are you?[/INST]\tA model.\n</s>");
    expect_render(CS_CHAT_MISTRAL_V3, m, 5, false, NULL, NULL,
                  "<s>[INST]  Hello\n[/INST] Hi there</s>[INST] Who are you?[/INST] A model.</s>");
    expect_render(CS_CHAT_ZEPHYR, m, 5, false, NULL, NULL,
                  "<|system|>\n Be brief. </s>\n<|user|>\n Hello\n</s>\n<|assistant|>\n  Hi there  </s>\n"
                  "<|user|>\nWho are you?</s>\n<|assistant|>\n\tA model.\n</s>\n");
    expect_render(CS_CHAT_GEMMA, m + 1, 4, false, NULL, NULL,
                  "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\nA model.<end_of_turn>\n");
    expect_render(CS_CHAT_PLAIN, m, 5, false, NULL, NULL,
                  "System:  Be brief. \nUser:  Hello\n\nAssistant:   Hi there  \nUser: Who are you?\n"
                  "Assistant: \tA model.\n\n");
    /* a single user message, and a caller-given eos text */
    static const struct cs_chat_msg one[] = {{"user", "Hi"}};
    expect_render(CS_CHAT_PLAIN, one, 1, true, NULL, NULL, "User: Hi\nAssistant:");
    expect_render(CS_CHAT_ZEPHYR, one, 1, true, NULL, "<|endoftext|>", "<|user|>\nHi<|endoftext|>\n<|assistant|>\n");
}

static void test_bos_flag_and_skip(void **state)
{
    (void)state;
    static const struct {
        enum cs_chat_family f;
        bool bos;
    } cases[] = {
        {CS_CHAT_PLAIN, false},  {CS_CHAT_CHATML, false},     {CS_CHAT_LLAMA2, true},
        {CS_CHAT_LLAMA3, true},  {CS_CHAT_LLAMA31, true},  {CS_CHAT_MISTRAL, true},     {CS_CHAT_MISTRAL_V3, true},
        {CS_CHAT_MISTRAL_TEKKEN, true}, {CS_CHAT_ZEPHYR, false}, {CS_CHAT_GEMMA, true},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        bool sb = !cases[i].bos;
        char *full = render(cases[i].f, conv, 4, true, "<BOS>", "</s>", &sb);
        assert_true(sb == cases[i].bos);
        if (sb)
            assert_memory_equal(full, "<BOS>", 5);
        /* skip_leading_bos: the same text minus exactly the first BOS */
        struct cs_chat_params p = {.family = cases[i].f, .add_generation_prompt = true, .bos = "<BOS>",
                                   .eos = "</s>", .skip_leading_bos = true};
        char err[256], *out = NULL;
        sb = true;
        assert_int_equal(cs_chat_render(&p, conv, 4, &out, NULL, &sb, err, sizeof err), CLSPEC_OK);
        assert_false(sb);
        assert_string_equal(out, full + (cases[i].bos ? 5 : 0));
        /* an empty BOS text never counts as a BOS (and llama2 then loses its
         * per-turn BOS too, unlike with skip_leading_bos) */
        free(full);
        full = render(cases[i].f, conv, 4, true, "", "</s>", &sb);
        assert_false(sb);
        if (cases[i].f == CS_CHAT_LLAMA2)
            assert_string_not_equal(full, out);
        else
            assert_string_equal(full, out);
        free(out);
        free(full);
    }
    /* llama2 keeps the per-turn BOS after the first */
    bool sb;
    struct cs_chat_params p = {.family = CS_CHAT_LLAMA2, .skip_leading_bos = true};
    char err[256], *out = NULL;
    assert_int_equal(cs_chat_render(&p, conv, 4, &out, NULL, &sb, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out, "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                             "<s>[INST] Who are you [/INST]");
    free(out);
}

static int render_rc(enum cs_chat_family f, const struct cs_chat_msg *m, size_t n, char *err, size_t errlen)
{
    struct cs_chat_params p = {.family = f, .add_generation_prompt = true};
    char *out = (char *)"sentinel";
    int rc = cs_chat_render(&p, m, n, &out, NULL, NULL, err, errlen);
    if (rc != CLSPEC_OK)
        assert_null(out);
    free(rc == CLSPEC_OK ? out : NULL);
    return rc;
}

static void test_invalid_messages(void **state)
{
    (void)state;
    char err[256];
    static const struct cs_chat_msg tool[] = {{"user", "x"}, {"tool", "y"}};
    static const struct cs_chat_msg upper[] = {{"User", "x"}};
    static const struct cs_chat_msg nocontent[] = {{"user", NULL}};
    static const struct cs_chat_msg norole[] = {{NULL, "x"}};
    for (int f = 0; f < CS_CHAT_N_FAMILIES; f++) {
        assert_int_equal(render_rc((enum cs_chat_family)f, tool, 2, err, sizeof err), CLSPEC_E_INVAL);
        assert_non_null(strstr(err, "messages[1]: unknown role \"tool\""));
        assert_int_equal(render_rc((enum cs_chat_family)f, upper, 1, err, sizeof err), CLSPEC_E_INVAL);
        assert_int_equal(render_rc((enum cs_chat_family)f, nocontent, 1, err, sizeof err), CLSPEC_E_INVAL);
        assert_non_null(strstr(err, "messages[0]: no content"));
        assert_int_equal(render_rc((enum cs_chat_family)f, norole, 1, err, sizeof err), CLSPEC_E_INVAL);
        assert_int_equal(render_rc((enum cs_chat_family)f, conv, 0, err, sizeof err), CLSPEC_E_INVAL);
        assert_non_null(strstr(err, "no messages"));
    }
    struct cs_chat_params p = {.family = CS_CHAT_N_FAMILIES};
    char *out;
    assert_int_equal(cs_chat_render(&p, conv, 4, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
}

static void test_order_policy(void **state)
{
    (void)state;
    char err[256];
    static const struct cs_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    static const struct cs_chat_msg asst_first[] = {{"assistant", "a"}, {"user", "b"}};
    static const struct cs_chat_msg late_system[] = {{"user", "a"}, {"assistant", "b"}, {"system", "c"},
                                                     {"user", "d"}};
    static const struct cs_chat_msg only_system[] = {{"system", "a"}};
    static const enum cs_chat_family strict[] = {CS_CHAT_LLAMA2, CS_CHAT_MISTRAL, CS_CHAT_MISTRAL_V3,
                                                 CS_CHAT_MISTRAL_TEKKEN, CS_CHAT_GEMMA};
    static const enum cs_chat_family free_order[] = {CS_CHAT_PLAIN, CS_CHAT_CHATML, CS_CHAT_LLAMA3, CS_CHAT_LLAMA31,
                                                     CS_CHAT_ZEPHYR};
    for (size_t i = 0; i < CS_ARRAY_LEN(strict); i++) {
        assert_int_equal(render_rc(strict[i], two_users, 2, err, sizeof err), CLSPEC_E_INVAL);
        assert_non_null(strstr(err, "messages[1]"));
        assert_non_null(strstr(err, cs_chat_family_name(strict[i])));
        assert_int_equal(render_rc(strict[i], asst_first, 2, err, sizeof err), CLSPEC_E_INVAL);
        assert_non_null(strstr(err, "messages[0]"));
        assert_int_equal(render_rc(strict[i], late_system, 4, err, sizeof err), CLSPEC_E_INVAL);
        assert_non_null(strstr(err, "messages[2]"));
        assert_int_equal(render_rc(strict[i], only_system, 1, err, sizeof err), CLSPEC_E_INVAL);
    }
    for (size_t i = 0; i < CS_ARRAY_LEN(free_order); i++) {
        assert_int_equal(render_rc(free_order[i], two_users, 2, err, sizeof err), CLSPEC_OK);
        assert_int_equal(render_rc(free_order[i], asst_first, 2, err, sizeof err), CLSPEC_OK);
        assert_int_equal(render_rc(free_order[i], late_system, 4, err, sizeof err), CLSPEC_OK);
        assert_int_equal(render_rc(free_order[i], only_system, 1, err, sizeof err), CLSPEC_OK);
    }
    expect_render(CS_CHAT_CHATML, late_system + 2, 1, false, NULL, NULL, "<|im_start|>system\nc<|im_end|>\n");
}

static char *read_fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", CS_CHAT_FIXTURES, name);
    char *t = tu_read_file(path, len);
    if (!t)
        fail_msg("cannot read fixture %s", path);
    return t;
}

/* real templates (tests/chat/) */
static void test_detect_real_templates(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        enum cs_chat_family f;
        bool known;
    } cases[] = {
        {"chatml-openhermes-2.5.jinja", CS_CHAT_CHATML, true},
        {"qwen3-0.6b.jinja", CS_CHAT_CHATML, true},
        {"llama2-7b-chat.jinja", CS_CHAT_LLAMA2, true},
        {"llama3-8b-instruct.jinja", CS_CHAT_LLAMA3, true},
        {"llama3.2-3b-instruct.jinja", CS_CHAT_LLAMA31, true},
        {"mistral-7b-instruct-v0.2.jinja", CS_CHAT_MISTRAL, true},
        {"mistral-7b-instruct-v0.1-old.jinja", CS_CHAT_MISTRAL, true},
        {"mistral-nemo-instruct-2407.jinja", CS_CHAT_MISTRAL_TEKKEN, true},
        {"zephyr-7b-beta.jinja", CS_CHAT_ZEPHYR, true},
        {"gemma-7b-it.jinja", CS_CHAT_GEMMA, true},
        {"gemma-2-2b-it.jinja", CS_CHAT_GEMMA, true},
        /* not a family we render: the plain fallback */
        {"phi-3-mini.jinja", CS_CHAT_PLAIN, false},
        {"deepseek-v2.jinja", CS_CHAT_PLAIN, false},
        {"phi-4.jinja", CS_CHAT_PLAIN, false},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        size_t len;
        char *t = read_fixture(cases[i].file, &len);
        bool known = !cases[i].known;
        enum cs_chat_family f = cs_chat_detect(t, len, &known);
        if (f != cases[i].f || known != cases[i].known)
            fail_msg("%s: detected %s (known %d), want %s", cases[i].file, cs_chat_family_name(f), known,
                     cs_chat_family_name(cases[i].f));
        free(t);
    }
    /* mistral v3 marker ("[INST] " + content + "[/INST]"), from v0.3's template */
    static const char v3[] = "{%- if message[\"role\"] == \"user\" %}{{- \"[INST] \" + message[\"content\"] + "
                             "\"[/INST]\" }}{%- endif %}";
    assert_int_equal(cs_chat_detect(v3, strlen(v3), NULL), CS_CHAT_MISTRAL_V3);
}

static void test_detect_fallback(void **state)
{
    (void)state;
    bool known = true;
    assert_int_equal(cs_chat_detect(NULL, 0, &known), CS_CHAT_PLAIN);
    assert_false(known);
    known = true;
    assert_int_equal(cs_chat_detect("", 0, &known), CS_CHAT_PLAIN);
    assert_false(known);
    known = true;
    assert_int_equal(cs_chat_detect("INVALID TEMPLATE", 16, &known), CS_CHAT_PLAIN);
    assert_false(known);
    /* malformed Jinja still detected by its markers; truncation respected */
    const char *broken = "{% for m in messages %}{{ '<|im_start|>' + m.role";
    assert_int_equal(cs_chat_detect(broken, strlen(broken), &known), CS_CHAT_CHATML);
    assert_true(known);
    assert_int_equal(cs_chat_detect(broken, 30, &known), CS_CHAT_PLAIN); /* marker cut off */
    assert_false(known);
    /* binary garbage with NULs */
    const char junk[] = {'\0', '\x01', '[', 'I', 'N', 'S', '\0', 'T', ']'};
    assert_int_equal(cs_chat_detect(junk, sizeof junk, &known), CS_CHAT_PLAIN);
    assert_false(known);
}

static void test_family_names(void **state)
{
    (void)state;
    char err[256];
    for (int i = 0; i < CS_CHAT_N_FAMILIES; i++) {
        enum cs_chat_family f = CS_CHAT_N_FAMILIES;
        const char *name = cs_chat_family_name((enum cs_chat_family)i);
        assert_string_not_equal(name, "?");
        assert_int_equal(cs_chat_family_parse(name, &f, err, sizeof err), CLSPEC_OK);
        assert_int_equal(f, i);
    }
    enum cs_chat_family f;
    assert_int_equal(cs_chat_family_parse("ChatML", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_CHATML);
    assert_int_equal(cs_chat_family_parse("qwen", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_CHATML);
    assert_int_equal(cs_chat_family_parse("llama-3", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_LLAMA3);
    assert_int_equal(cs_chat_family_parse("Llama-3.1", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_LLAMA31);
    assert_int_equal(cs_chat_family_parse("vicuna", &f, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "\"vicuna\""));
    assert_non_null(strstr(err, "mistral-tekken"));
    assert_int_equal(cs_chat_family_parse(NULL, &f, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(cs_chat_family_name(CS_CHAT_N_FAMILIES), "?");
}

static void test_stop_strings(void **state)
{
    (void)state;
    assert_string_equal(cs_chat_stop(CS_CHAT_CHATML, NULL), "<|im_end|>");
    assert_string_equal(cs_chat_stop(CS_CHAT_LLAMA3, NULL), "<|eot_id|>");
    assert_string_equal(cs_chat_stop(CS_CHAT_LLAMA31, NULL), "<|eot_id|>");
    assert_string_equal(cs_chat_stop(CS_CHAT_GEMMA, NULL), "<end_of_turn>");
    assert_string_equal(cs_chat_stop(CS_CHAT_PLAIN, NULL), "\nUser:");
    assert_string_equal(cs_chat_stop(CS_CHAT_ZEPHYR, "<|endoftext|>"), "<|endoftext|>");
    assert_string_equal(cs_chat_stop(CS_CHAT_LLAMA2, NULL), "</s>");
    /* every assistant turn a family renders ends with its stop string */
    static const struct cs_chat_msg m[] = {{"user", "PP"}, {"assistant", "QQ"}};
    for (int f = 0; f < CS_CHAT_N_FAMILIES; f++) {
        char *out = render((enum cs_chat_family)f, m, 2, false, NULL, NULL, NULL);
        const char *stop = cs_chat_stop((enum cs_chat_family)f, NULL);
        const char *b = strstr(out, "QQ");
        assert_non_null(b);
        if (f == CS_CHAT_PLAIN) /* plain: the stop is the next turn's opening */
            assert_string_equal(b, "QQ\n");
        else
            assert_memory_equal(b + 2 + strspn(b + 2, " "), stop, strlen(stop));
        free(out);
    }
}

/* Every GGUF in the shared models: what chat template it carries, and that
 * selection follows it (override by name works, a bad name is refused). */
static void test_shared_gguf_templates(void **state)
{
    (void)state;
    static const char *const files[] = {
        "models/stories260K.gguf",
        "models/TinyStories-656K-Q8_0.gguf",
        "models/llama-2-tiny-random.gguf",
        "models/derived/TinyStories-656K-Q4_0.gguf",
        "models/derived/stories260K-draft-distilled.gguf",
        "models/vocab/ggml-vocab-llama-spm.gguf",
        "models/vocab/ggml-vocab-gpt-2.gguf",
        "models/synthetic/synth-256-Q8_0.gguf",
    };
    char err[512];
    for (size_t i = 0; i < CS_ARRAY_LEN(files); i++) {
        char *path = tu_shared_path(files[i]);
        struct cs_gguf *g = NULL;
        int rc = cs_gguf_open(path, &g, err, sizeof err);
        if (rc != CLSPEC_OK)
            fail_msg("%s", err);
        const struct cs_gguf_kv *kv = cs_gguf_find(g, "tokenizer.chat_template");
        const char *tt = kv && kv->type == CS_GGUF_STRING ? kv->v.s.ptr : NULL; /* as clspec_chat_template */
        size_t tl = tt ? (size_t)kv->v.s.len : 0;
        enum cs_chat_family f = CS_CHAT_N_FAMILIES;
        bool known = true;
        assert_int_equal(cs_chat_select(tt, tl, NULL, &f, &known, err, sizeof err), CLSPEC_OK);
        if (kv && kv->type == CS_GGUF_STRING) {
            bool k2;
            assert_int_equal(f, cs_chat_detect(kv->v.s.ptr, kv->v.s.len, &k2));
            assert_true(known == k2);
            printf("# %s: chat template of %llu bytes -> %s%s\n", files[i], (unsigned long long)kv->v.s.len,
                   cs_chat_family_name(f), known ? "" : " (unrecognised, fallback)");
        } else {
            assert_int_equal(f, CS_CHAT_CHATML); /* llama-server's fallback */
            assert_false(known);
            printf("# %s: no chat template -> chatml\n", files[i]);
        }
        assert_int_equal(cs_chat_select(tt, tl, "auto", &f, NULL, err, sizeof err), CLSPEC_OK);
        assert_int_equal(cs_chat_select(tt, tl, "gemma", &f, &known, err, sizeof err), CLSPEC_OK);
        assert_int_equal(f, CS_CHAT_GEMMA);
        assert_true(known);
        assert_int_equal(cs_chat_select(tt, tl, "nonsense", &f, NULL, err, sizeof err), CLSPEC_E_INVAL);
        cs_gguf_close(g);
        free(path);
    }
    enum cs_chat_family f;
    assert_int_equal(cs_chat_select(NULL, 0, NULL, &f, NULL, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_CHAT_CHATML);
}

/* continue_final: a final assistant message is continued (the turns before it, the generation
 * prompt, its text, no end of turn); other endings and continue_final off render as before */
static void test_continue_final(void **state)
{
    (void)state;
    static const struct cs_chat_msg m[] = {{"system", "S"}, {"user", "Q"}, {"assistant", "Whi"}};
    char *out = NULL, err[256];
    struct cs_chat_params p = {.family = CS_CHAT_CHATML, .continue_final = true};
    assert_int_equal(cs_chat_render(&p, m, 3, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nWhi");
    free(out);
    p.family = CS_CHAT_LLAMA3;
    p.add_generation_prompt = true; /* ignored: the continued turn is the generation prompt */
    assert_int_equal(cs_chat_render(&p, m, 3, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                             "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
                             "<|start_header_id|>assistant<|end_header_id|>\n\nWhi");
    free(out);
    /* a final user message: the generation prompt as asked */
    assert_int_equal(cs_chat_render(&p, m, 2, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out + strlen(out) - strlen("assistant<|end_header_id|>\n\n"), "assistant<|end_header_id|>\n\n");
    free(out);
    /* off: the assistant turn is closed */
    p.continue_final = false;
    p.add_generation_prompt = false;
    assert_int_equal(cs_chat_render(&p, m, 3, &out, NULL, NULL, err, sizeof err), CLSPEC_OK);
    assert_string_equal(out + strlen(out) - strlen("Whi<|eot_id|>"), "Whi<|eot_id|>");
    free(out);
    /* an assistant message alone: no turn before it for a family that needs one */
    p.continue_final = true;
    p.family = CS_CHAT_GEMMA;
    assert_int_equal(cs_chat_render(&p, m + 2, 1, &out, NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_null(out);
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ids[i] == id;
    return c;
}

/* The two ways to avoid a double BOS with a real SPM vocabulary (Llama-2's):
 * keep the template's BOS text and tokenize without add_special, or skip it
 * and let the tokenizer add BOS. Both give the same ids; BOS once per llama2
 * user turn; <s> and </s> texts parsed as their control tokens. */
static void test_tokenize_rendered_llama2(void **state)
{
    (void)state;
    char err[512];
    char *path = tu_shared_path("models/vocab/ggml-vocab-llama-spm.gguf");
    struct cs_gguf *g = NULL;
    if (cs_gguf_open(path, &g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    struct cs_tokenizer *tok = NULL;
    if (cs_tokenizer_load(g, &tok, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    int32_t bos = cs_tokenizer_bos(tok), eos = cs_tokenizer_eos(tok);
    assert_true(cs_tokenizer_add_bos(tok));
    const char *bos_text = cs_tokenizer_text(tok, bos, NULL), *eos_text = cs_tokenizer_text(tok, eos, NULL);
    assert_string_equal(bos_text, "<s>");

    int32_t a[512], b[512];
    size_t na = 0, nb = 0;
    struct cs_chat_params p = {.family = CS_CHAT_LLAMA2, .bos = bos_text, .eos = eos_text};
    char *text = NULL;
    size_t len;
    bool sb = false;
    assert_int_equal(cs_chat_render(&p, conv, 4, &text, &len, &sb, err, sizeof err), CLSPEC_OK);
    assert_true(sb);
    assert_int_equal(cs_tokenize(tok, text, len, !sb, true, a, CS_ARRAY_LEN(a), &na, err, sizeof err), CLSPEC_OK);
    free(text);
    p.skip_leading_bos = true;
    assert_int_equal(cs_chat_render(&p, conv, 4, &text, &len, &sb, err, sizeof err), CLSPEC_OK);
    assert_false(sb);
    assert_int_equal(cs_tokenize(tok, text, len, !sb, true, b, CS_ARRAY_LEN(b), &nb, err, sizeof err), CLSPEC_OK);
    free(text);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof a[0]);
    assert_int_equal(a[0], bos);
    assert_true(a[1] != bos);
    assert_int_equal(count_id(a, na, bos), 2); /* one per user turn */
    assert_int_equal(count_id(a, na, eos), 1); /* after the assistant turn */
    cs_tokenizer_free(tok);
    cs_gguf_close(g);
    free(path);
}

static struct cs_tokenizer *load_tok(const char *rel)
{
    char err[512];
    char *path = tu_shared_path(rel);
    struct cs_gguf *g = NULL;
    if (cs_gguf_open(path, &g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    struct cs_tokenizer *tok = NULL;
    if (cs_tokenizer_load(g, &tok, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    cs_gguf_close(g);
    free(path);
    return tok;
}

/* cs_chat_tokenize: exactly one leading BOS whether the template or the
 * tokenizer supplies it, and the same ids as rendering + tokenizing by hand. */
static void test_chat_tokenize(void **state)
{
    (void)state;
    char err[512];
    static const char *const vocabs[] = {"models/vocab/ggml-vocab-llama-spm.gguf", "models/stories260K.gguf",
                                         "models/vocab/ggml-vocab-gpt-2.gguf"};
    for (size_t v = 0; v < CS_ARRAY_LEN(vocabs); v++) {
        struct cs_tokenizer *tok = load_tok(vocabs[v]);
        clspec_engine *e = NULL; /* cs_chat_tokenize reads the vocabulary through the door */
        if (cs_api_wrap_vocab(tok, NULL, &e, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        int32_t bos = cs_tokenizer_bos(tok);
        bool add_bos = cs_tokenizer_add_bos(tok);
        for (int f = 0; f < CS_CHAT_N_FAMILIES; f++) {
            int32_t *ids = NULL;
            size_t n = 0;
            char *text = NULL;
            int rc = cs_chat_tokenize(e, (enum cs_chat_family)f, conv, 4, true, &ids, &n, &text, err, sizeof err);
            if (rc != CLSPEC_OK)
                fail_msg("%s %s: %s", vocabs[v], cs_chat_family_name((enum cs_chat_family)f), err);
            assert_true(n > 4);
            /* by hand: text rendered with the tokenizer's BOS text, tokenized
             * with add_special only when the text has no BOS of its own */
            bool starts = text[0] && bos >= 0 && !strncmp(text, cs_tokenizer_text(tok, bos, NULL),
                                                          strlen(cs_tokenizer_text(tok, bos, NULL)));
            int32_t ref[1024];
            size_t nref = 0;
            assert_int_equal(cs_tokenize(tok, text, strlen(text), !starts, true, ref, CS_ARRAY_LEN(ref), &nref, err,
                                         sizeof err),
                             CLSPEC_OK);
            assert_int_equal(n, nref);
            assert_memory_equal(ids, ref, n * sizeof ids[0]);
            bool template_bos = f == CS_CHAT_LLAMA2 || f == CS_CHAT_LLAMA3 || f == CS_CHAT_LLAMA31 ||
                                f == CS_CHAT_MISTRAL || f == CS_CHAT_MISTRAL_V3 || f == CS_CHAT_MISTRAL_TEKKEN ||
                                f == CS_CHAT_GEMMA;
            /* the template's BOS text is the vocabulary's BOS token text, so
             * it becomes the BOS id; other families get BOS from add_bos */
            bool want_bos = template_bos || add_bos;
            if (bos >= 0) {
                assert_true((ids[0] == bos) == want_bos);
                assert_true(n < 2 || !(ids[0] == bos && ids[1] == bos));
            }
            free(ids);
            free(text);
        }
        clspec_engine_free(e);
        cs_tokenizer_free(tok);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_each_family),
        cmocka_unit_test(test_render_whitespace_and_history),
        cmocka_unit_test(test_bos_flag_and_skip),
        cmocka_unit_test(test_invalid_messages),
        cmocka_unit_test(test_order_policy),
        cmocka_unit_test(test_detect_real_templates),
        cmocka_unit_test(test_detect_fallback),
        cmocka_unit_test(test_family_names),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_shared_gguf_templates),
        cmocka_unit_test(test_tokenize_rendered_llama2),
        cmocka_unit_test(test_chat_tokenize),
        cmocka_unit_test(test_continue_final),
    };
    return cmocka_run_group_tests_name("chat", tests, NULL, NULL);
}
