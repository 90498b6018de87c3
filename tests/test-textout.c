/* test-textout.c: incremental detokenization for streaming: complete UTF-8
 * only (characters built from byte-fallback tokens), stop strings across
 * token boundaries, SentencePiece leading space, and the equality
 * concat(deltas) == cs_detokenize(tokens). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "daemon/textout.h"
#include "engine/api.h"
#include "gguf/gguf.h"
#include "testutil.h"
#include "text/tokenizer.h"

struct vocab {
    struct cs_gguf *g;
    struct cs_tokenizer *tok;
    clspec_engine *e; /* a door over tok (cs_api_wrap_vocab): what textout reads */
};

static void vocab_open(const char *rel, struct vocab *v)
{
    char err[CLSPEC_ERRLEN];
    char *path = tu_shared_path(rel);
    if (cs_gguf_open(path, &v->g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    if (cs_tokenizer_load(v->g, &v->tok, err, sizeof err) != CLSPEC_OK ||
        cs_api_wrap_vocab(v->tok, v->g, &v->e, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    free(path);
}

static void vocab_close(struct vocab *v)
{
    clspec_engine_free(v->e);
    cs_tokenizer_free(v->tok);
    cs_gguf_close(v->g);
}

static int32_t tok_of(const struct vocab *v, const char *s)
{
    int32_t id = cs_tokenizer_find(v->tok, s, strlen(s));
    if (id < 0)
        fail_msg("token '%s' not in the vocabulary", s);
    return id;
}

static size_t tokenize(const struct vocab *v, const char *text, int32_t *ids, size_t cap)
{
    char err[CLSPEC_ERRLEN];
    size_t n = 0;
    if (cs_tokenize(v->tok, text, strlen(text), false, false, ids, cap, &n, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    return n;
}

static bool valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int L = u[i] < 0x80 ? 1 : (u[i] & 0xE0) == 0xC0 ? 2 : (u[i] & 0xF0) == 0xE0 ? 3 : (u[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (L == 0 || i + (size_t)L > n)
            return false;
        for (int k = 1; k < L; k++)
            if ((u[i + k] & 0xC0) != 0x80)
                return false;
        i += (size_t)L;
    }
    return true;
}

/* Streams ids through a textout; returns the concatenated text (malloc'd),
 * *stop_at = index of the token that completed a stop string (-1 none),
 * every delta checked to be valid UTF-8; deltas[i] lengths in dl (if non-NULL). */
static char *stream(const struct vocab *v, const int32_t *ids, size_t n, const char *const *stop, int n_stop,
                    bool lstrip, int *stop_at, size_t *dl)
{
    char err[CLSPEC_ERRLEN];
    struct cs_textout *t = NULL;
    if (cs_textout_new(v->e, stop, n_stop, lstrip, &t, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    size_t cap = 64, len = 0;
    char *all = malloc(cap);
    *stop_at = -1;
    for (size_t i = 0; i <= n; i++) {
        const char *d;
        size_t dn;
        int rc;
        if (i < n) {
            rc = cs_textout_push(t, ids[i], &d, &dn, err, sizeof err);
            if (rc < 0)
                fail_msg("push %zu: %s", i, err);
        } else {
            assert_int_equal(cs_textout_flush(t, &d, &dn), CLSPEC_OK);
            rc = 0;
        }
        assert_true(valid_utf8(d, dn));
        if (dl && i < n)
            dl[i] = dn;
        while (len + dn + 1 > cap)
            cap *= 2;
        all = realloc(all, cap);
        memcpy(all + len, d, dn);
        len += dn;
        if (rc == 1) {
            *stop_at = (int)i;
            assert_true(cs_textout_stop_index(t) >= 0);
            /* a stopped textout takes nothing more */
            assert_int_equal(cs_textout_push(t, ids[0], &d, &dn, err, sizeof err), CLSPEC_E_INVAL);
            break;
        }
    }
    all[len] = '\0';
    cs_textout_free(t);
    return all;
}

static char *detok(const struct vocab *v, const int32_t *ids, size_t n)
{
    char err[CLSPEC_ERRLEN];
    size_t need = 0;
    char *buf = malloc(1);
    int rc = cs_detokenize(v->tok, ids, n, false, false, buf, 1, &need, err, sizeof err);
    if (rc == CLSPEC_E_RANGE) {
        buf = realloc(buf, need + 1);
        rc = cs_detokenize(v->tok, ids, n, false, false, buf, need + 1, &need, err, sizeof err);
    }
    if (rc != CLSPEC_OK)
        fail_msg("%s", err);
    return buf;
}

static const char *const TEXTS[] = {
    "Once upon a time, there was a little girl named Lily.",
    "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e and \xf0\x9f\x98\x80 emoji \xf0\x9f\x90\x88!",
    "  two leading spaces\n\nand newlines\t\xc2\xa9",
    "\xe2\x82\xac" "100 \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
};

/* concat(deltas) == cs_detokenize(ids) for tokenized texts in three vocabularies
 * (SPM with byte fallback, Llama-2 SPM, GPT-2 byte-level BPE). */
static void test_equality_with_detokenize(void **state)
{
    (void)state;
    const char *vocabs[] = {"models/stories260K.gguf", "models/vocab/ggml-vocab-llama-spm.gguf",
                            "models/vocab/ggml-vocab-gpt-2.gguf"};
    for (size_t vi = 0; vi < CS_ARRAY_LEN(vocabs); vi++) {
        struct vocab v;
        vocab_open(vocabs[vi], &v);
        struct clspec_engine_info info = {.size = sizeof info};
        assert_int_equal(clspec_engine_get_info(v.e, &info, NULL, 0), CLSPEC_OK);
        bool strip = info.strips_space != 0;
        assert_int_equal(strip, vi < 2); /* SPM with add_space_prefix strips; BPE does not */
        for (size_t ti = 0; ti < CS_ARRAY_LEN(TEXTS); ti++) {
            int32_t ids[256];
            size_t n = tokenize(&v, TEXTS[ti], ids, CS_ARRAY_LEN(ids));
            assert_true(n > 0);
            int stop_at;
            char *got = stream(&v, ids, n, NULL, 0, strip, &stop_at, NULL);
            char *want = detok(&v, ids, n);
            assert_int_equal(stop_at, -1);
            assert_string_equal(got, want);
            free(got);
            free(want);
            /* without lstrip: the text the tokens add after a prompt */
            int32_t all[512];
            size_t np = tokenize(&v, "Hello", all, CS_ARRAY_LEN(all));
            memcpy(all + np, ids, n * sizeof *ids);
            char *whole = detok(&v, all, np + n), *pre = detok(&v, all, np);
            got = stream(&v, ids, n, NULL, 0, false, &stop_at, NULL);
            assert_int_equal(strlen(got) + strlen(pre), strlen(whole));
            assert_string_equal(got, whole + strlen(pre));
            free(got);
            free(whole);
            free(pre);
        }
        vocab_close(&v);
    }
}

/* A character built from byte-fallback tokens is shown only when complete. */
static void test_multibyte_split(void **state)
{
    (void)state;
    struct vocab v;
    vocab_open("models/stories260K.gguf", &v);
    /* "a" + U+1F600 as 4 byte tokens + "é" as 2 byte tokens */
    int32_t ids[] = {tok_of(&v, "<0x61>"), tok_of(&v, "<0xF0>"), tok_of(&v, "<0x9F>"), tok_of(&v, "<0x98>"),
                     tok_of(&v, "<0x80>"), tok_of(&v, "<0xC3>"), tok_of(&v, "<0xA9>")};
    size_t dl[7];
    int stop_at;
    char *got = stream(&v, ids, 7, NULL, 0, false, &stop_at, dl);
    assert_string_equal(got, "a\xf0\x9f\x98\x80\xc3\xa9");
    size_t want[] = {1, 0, 0, 0, 4, 0, 2};
    for (int i = 0; i < 7; i++)
        assert_int_equal(dl[i], want[i]);
    free(got);
    /* invalid bytes become U+FFFD: a lead byte followed by ASCII, a lone
     * continuation byte, and an incomplete character at the end */
    int32_t bad[] = {tok_of(&v, "<0xC3>"), tok_of(&v, "<0x61>"), tok_of(&v, "<0xA9>"), tok_of(&v, "<0xE2>"),
                     tok_of(&v, "<0x82>")};
    got = stream(&v, bad, 5, NULL, 0, false, &stop_at, NULL);
    assert_string_equal(got, "\xef\xbf\xbd" "a" "\xef\xbf\xbd" "\xef\xbf\xbd");
    free(got);
    vocab_close(&v);
}

/* Stop strings spanning tokens: nothing of the stop string is ever shown,
 * text before it is, and the token completing it ends the stream. */
static void test_stop_strings(void **state)
{
    (void)state;
    struct vocab v;
    vocab_open("models/stories260K.gguf", &v);
    const char *text = "Once upon a time, there was a little girl named Lily.";
    int32_t ids[128];
    size_t n = tokenize(&v, text, ids, CS_ARRAY_LEN(ids));
    int stop_at;
    size_t dl[128];

    /* ", there" spans several tokens */
    const char *s1[] = {", there"};
    char *got = stream(&v, ids, n, s1, 1, true, &stop_at, dl);
    assert_string_equal(got, "Once upon a time");
    assert_true(stop_at > 0 && (size_t)stop_at < n - 1);
    /* the token completing the stop is the one after which the detokenized prefix first contains it */
    char *pre = detok(&v, ids, (size_t)stop_at + 1), *pre1 = detok(&v, ids, (size_t)stop_at);
    assert_non_null(strstr(pre, ", there"));
    assert_null(strstr(pre1, ", there"));
    free(pre);
    free(pre1);
    free(got);

    /* a stop that starts to match, then diverges: everything is released */
    const char *s2[] = {"time to", "girl named Bob"};
    got = stream(&v, ids, n, s2, 2, true, &stop_at, dl);
    assert_int_equal(stop_at, -1);
    assert_string_equal(got, text);
    free(got);

    /* the earliest match wins; text after the stop inside the same token is dropped */
    const char *s3[] = {"Lily", "a l", "e, t"};
    got = stream(&v, ids, n, s3, 3, true, &stop_at, NULL);
    assert_string_equal(got, "Once upon a tim");
    free(got);

    /* held back while it could still be a stop string: "tim" of "time." */
    const char *s4[] = {"time."};
    got = stream(&v, ids, n, s4, 1, true, &stop_at, dl);
    assert_int_equal(stop_at, -1);
    assert_string_equal(got, text);
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = detok(&v, ids, i + 1);
        shown += dl[i];
        /* what was shown is a prefix of the text; what is held could still become "time." */
        size_t plen = strlen(p);
        assert_true(shown <= plen);
        assert_memory_equal(p, text, shown);
        size_t held = plen - shown;
        assert_true(held == 0 || (held < 5 && strncmp(p + shown, "time.", held) == 0));
        free(p);
    }
    free(got);

    /* a stop string made of a multi-byte character split over byte tokens */
    int32_t mb[] = {tok_of(&v, "<0x61>"), tok_of(&v, "<0xC3>"), tok_of(&v, "<0xA9>"), tok_of(&v, "<0x62>")};
    const char *s5[] = {"\xc3\xa9"};
    got = stream(&v, mb, 4, s5, 1, false, &stop_at, NULL);
    assert_string_equal(got, "a");
    assert_int_equal(stop_at, 2);
    free(got);

    /* bad stop strings are refused */
    char err[CLSPEC_ERRLEN];
    struct cs_textout *t = NULL;
    const char *bad1[] = {""}, *bad2[] = {"\xc3"};
    assert_int_equal(cs_textout_new(v.e, bad1, 1, false, &t, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_textout_new(v.e, bad2, 1, false, &t, err, sizeof err), CLSPEC_E_INVAL);
    assert_null(t);
    vocab_close(&v);
}

/* The EOS piece is empty (control token) and ids outside the vocabulary fail. */
static void test_control_and_range(void **state)
{
    (void)state;
    struct vocab v;
    vocab_open("models/stories260K.gguf", &v);
    char err[CLSPEC_ERRLEN];
    struct cs_textout *t = NULL;
    assert_int_equal(cs_textout_new(v.e, NULL, 0, true, &t, err, sizeof err), CLSPEC_OK);
    const char *d;
    size_t dn;
    assert_int_equal(cs_textout_push(t, cs_tokenizer_eos(v.tok), &d, &dn, err, sizeof err), 0);
    assert_int_equal(dn, 0);
    assert_int_equal(cs_textout_push(t, 100000, &d, &dn, err, sizeof err), CLSPEC_E_RANGE);
    cs_textout_free(t);
    vocab_close(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality_with_detokenize),
        cmocka_unit_test(test_multibyte_split),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_control_and_range),
    };
    return cmocka_run_group_tests_name("textout", tests, NULL, NULL);
}
