/* test-reasoning.c: thinking split from the answer (src/text/reasoning.c)
 * in each reasoning_format, whole and streamed in chunks of 1..7 bytes (the
 * same split either way; marker prefixes held back), prompts that already
 * opened the block (DeepSeek R1), unclosed thinking, the template's own
 * markers (Command R7B), and the per-request switch through Qwen3's
 * enable_thinking (tests/test-chat-jinja.c renders that prompt). */
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
#include "text/reasoning.h"

static const struct cs_reasoning_markers THINK = {"<think>", "</think>"};

/* whole and in every chunking: reasoning ("" for none) and content */
static void expect(enum cs_reasoning_format f, struct cs_reasoning_markers m, bool open, const char *text,
                   const char *want_r, const char *want_c)
{
    char err[128], *r = NULL, *c = NULL;
    assert_int_equal(cs_reasoning_split(f, m, open, text, strlen(text), &r, &c, err, sizeof err), CLSPEC_OK);
    if (strcmp(r ? r : "", want_r) || strcmp(c, want_c))
        fail_msg("[%s]: reasoning [%s] want [%s], content [%s] want [%s]", text, r ? r : "(null)", want_r, c, want_c);
    assert_true((r == NULL) == (want_r[0] == 0));
    free(r);
    free(c);
    for (size_t k = 1; k <= 7; k++) {
        struct cs_reasoning_stream *s = NULL;
        assert_int_equal(cs_reasoning_stream_new(f, m, open, &s, err, sizeof err), CLSPEC_OK);
        struct cs_strbuf rb = {0}, cb = {0};
        size_t n = strlen(text), pos = 0;
        do {
            size_t take = CS_MIN(k, n - pos);
            struct cs_reasoning_delta *ev = NULL;
            size_t nev = 0;
            assert_int_equal(cs_reasoning_stream_feed(s, text + pos, take, pos + take >= n, &ev, &nev, err, sizeof err),
                             CLSPEC_OK);
            pos += take;
            for (size_t i = 0; i < nev; i++)
                cs_strbuf_put(ev[i].kind == CS_RD_REASONING ? &rb : &cb, ev[i].text);
            cs_reasoning_deltas_free(ev, nev);
        } while (pos < n);
        if (strcmp(rb.p ? rb.p : "", want_r) || strcmp(cb.p ? cb.p : "", want_c))
            fail_msg("[%s] in chunks of %zu: reasoning [%s], content [%s]", text, k, rb.p ? rb.p : "",
                     cb.p ? cb.p : "");
        cs_strbuf_free(&rb);
        cs_strbuf_free(&cb);
        cs_reasoning_stream_free(s);
    }
}

static void test_deepseek_format(void **state)
{
    (void)state;
    expect(CS_REASONING_DEEPSEEK, THINK, false, "<think>\nLet me see.\n</think>\n\nParis.", "\nLet me see.\n", "Paris.");
    expect(CS_REASONING_DEEPSEEK, THINK, false, "  <think>a</think>b", "a", "b");
    /* no block at the start: all content, even a later <think> */
    expect(CS_REASONING_DEEPSEEK, THINK, false, "Paris. <think>x</think>", "", "Paris. <think>x</think>");
    expect(CS_REASONING_DEEPSEEK, THINK, false, "<thin", "", "<thin");
    expect(CS_REASONING_DEEPSEEK, THINK, false, "", "", "");
    /* the prompt opened the block (R1): the answer starts inside it */
    expect(CS_REASONING_DEEPSEEK, THINK, true, "Hmm, 2+2.</think>4", "Hmm, 2+2.", "4");
    /* never closed: all thinking */
    expect(CS_REASONING_DEEPSEEK, THINK, false, "<think>still thinking </thi", "still thinking </thi", "");
    /* "auto" is deepseek */
    enum cs_reasoning_format f;
    char err[128];
    assert_int_equal(cs_reasoning_format_parse("auto", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_REASONING_DEEPSEEK);
}

static void test_none_and_legacy(void **state)
{
    (void)state;
    expect(CS_REASONING_NONE, THINK, false, "<think>a</think>b", "", "<think>a</think>b");
    expect(CS_REASONING_DEEPSEEK_LEGACY, THINK, false, "<think>a</think>\nb", "a", "<think>a</think>\nb");
    enum cs_reasoning_format f;
    char err[128];
    assert_int_equal(cs_reasoning_format_parse("none", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_REASONING_NONE);
    assert_int_equal(cs_reasoning_format_parse("deepseek-legacy", &f, err, sizeof err), CLSPEC_OK);
    assert_int_equal(f, CS_REASONING_DEEPSEEK_LEGACY);
    assert_int_equal(cs_reasoning_format_parse("qwen", &f, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "deepseek-legacy"));
}

static void test_template_markers(void **state)
{
    (void)state;
    static const char r7b[] = "{{ '<|START_THINKING|>' }}x{{ '<|END_THINKING|>' }}";
    struct cs_reasoning_markers m = cs_reasoning_markers_detect(r7b, sizeof r7b - 1);
    assert_string_equal(m.open, "<|START_THINKING|>");
    assert_string_equal(m.close, "<|END_THINKING|>");
    expect(CS_REASONING_DEEPSEEK, m, false, "<|START_THINKING|>plan<|END_THINKING|><|START_RESPONSE|>hi", "plan",
           "<|START_RESPONSE|>hi");
    m = cs_reasoning_markers_detect(NULL, 0);
    assert_string_equal(m.open, "<think>");
    /* R1's generation prompt opens the block; Qwen3's with enable_thinking=false closes it */
    static const char r1[] = "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>\n";
    assert_true(cs_reasoning_starts_open(r1, sizeof r1 - 1, THINK));
    static const char q3[] = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    assert_false(cs_reasoning_starts_open(q3, sizeof q3 - 1, THINK));
    struct cs_reasoning_stream *s = NULL;
    char err[64];
    assert_int_equal(cs_reasoning_stream_new(CS_REASONING_DEEPSEEK, (struct cs_reasoning_markers){"", "x"}, false, &s,
                                             err, sizeof err),
                     CLSPEC_E_INVAL);
}

/* streamed: the thinking arrives as it is written, and a possible marker is
 * held back until decided */
static void test_streaming_shape(void **state)
{
    (void)state;
    struct cs_reasoning_stream *s = NULL;
    char err[64];
    assert_int_equal(cs_reasoning_stream_new(CS_REASONING_DEEPSEEK, THINK, false, &s, err, sizeof err), CLSPEC_OK);
    struct cs_reasoning_delta *ev = NULL;
    size_t n = 0;
    assert_int_equal(cs_reasoning_stream_feed(s, "<think>abc</", 12, false, &ev, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].kind, CS_RD_REASONING);
    assert_string_equal(ev[0].text, "abc");
    cs_reasoning_deltas_free(ev, n);
    assert_int_equal(cs_reasoning_stream_feed(s, "b>d", 3, false, &ev, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].text, "</b>d");
    cs_reasoning_deltas_free(ev, n);
    assert_int_equal(cs_reasoning_stream_feed(s, "</think> ok", 11, true, &ev, &n, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].kind, CS_RD_CONTENT);
    assert_string_equal(ev[0].text, "ok");
    cs_reasoning_deltas_free(ev, n);
    cs_reasoning_stream_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek_format),
        cmocka_unit_test(test_none_and_legacy),
        cmocka_unit_test(test_template_markers),
        cmocka_unit_test(test_streaming_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
