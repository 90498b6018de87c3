/* test-tokenizer.c: the SPM and BPE tokenizers against llama.cpp's vocab test
 * vectors (../shared/models/vocab), the prompt_ids and texts of the greedy
 * references, hand-checked pre-tokenizer splits (Qwen2 included: its vocab is
 * not shipped), round trips, special tokens and hostile metadata. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <jansson.h>

#include "clspec/clspec.h"
#include "gguf/gguf.h"
#include "text/pretok.h"
#include "testutil.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

/* ---------- loading helpers ---------- */

struct vocab {
    const char *rel;
    struct cs_gguf *g;
    struct cs_tokenizer *tok;
};

static struct vocab v_spm = {"models/vocab/ggml-vocab-llama-spm.gguf", NULL, NULL};
static struct vocab v_gpt2 = {"models/vocab/ggml-vocab-gpt-2.gguf", NULL, NULL};

static struct cs_tokenizer *open_tok(const char *path, struct cs_gguf **g)
{
    char err[CLSPEC_ERRLEN];
    struct cs_tokenizer *tok = NULL;
    if (cs_gguf_open(path, g, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    if (cs_tokenizer_load(*g, &tok, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    return tok;
}

static struct cs_tokenizer *vocab_tok(struct vocab *v)
{
    if (!v->tok) {
        char *p = tu_shared_path(v->rel);
        v->tok = open_tok(p, &v->g);
        free(p);
    }
    return v->tok;
}

static void vocab_free(struct vocab *v)
{
    cs_tokenizer_free(v->tok);
    cs_gguf_close(v->g);
    v->tok = NULL, v->g = NULL;
}

/* Tokenizes into a malloc'd array. */
static int32_t *tokenize(const struct cs_tokenizer *tok, const char *s, size_t len, bool add_special,
                         bool parse_special, size_t *n)
{
    char err[CLSPEC_ERRLEN];
    size_t cap = len + 8;
    int32_t *ids = malloc(cap * sizeof(*ids));
    assert_non_null(ids);
    int rc = cs_tokenize(tok, s, len, add_special, parse_special, ids, cap, n, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("tokenize: %s", err);
    return ids;
}

static char *detok(const struct cs_tokenizer *tok, const int32_t *ids, size_t n, bool remove_special, size_t *len)
{
    char err[CLSPEC_ERRLEN];
    size_t need;
    int rc = cs_detokenize(tok, ids, n, remove_special, false, NULL, 0, &need, err, sizeof err);
    assert_int_equal(rc, CLSPEC_E_RANGE);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    rc = cs_detokenize(tok, ids, n, remove_special, false, buf, need + 1, len, err, sizeof err);
    if (rc != CLSPEC_OK)
        fail_msg("detokenize: %s", err);
    assert_int_equal(*len, need);
    return buf;
}

static void fmt_ids(char *buf, size_t cap, const int32_t *ids, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o + 16 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? " " : "", (int)ids[i]);
}

/* ---------- llama.cpp vocab vectors ---------- */

#define MAX_VECTORS 64

struct vectors {
    struct vocab *v;
    const char *inp_rel, *out_rel;
    char *inp_buf, *out_buf;
    size_t n;
    const char *text[MAX_VECTORS];
    size_t text_len[MAX_VECTORS];
    const char *ids_line[MAX_VECTORS];
};

static struct vectors vec_spm = {&v_spm, "models/vocab/ggml-vocab-llama-spm.gguf.inp",
                                 "models/vocab/ggml-vocab-llama-spm.gguf.out", NULL, NULL, 0, {0}, {0}, {0}};
static struct vectors vec_gpt2 = {&v_gpt2, "models/vocab/ggml-vocab-gpt-2.gguf.inp",
                                  "models/vocab/ggml-vocab-gpt-2.gguf.out", NULL, NULL, 0, {0}, {0}, {0}};

/* Splits "a\n__ggml_vocab_test__\nb..." and the .out lines (one per input). */
static void vectors_load(struct vectors *vs)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t n_inp, n_out;
    char *p = tu_shared_path(vs->inp_rel), *q = tu_shared_path(vs->out_rel);
    vs->inp_buf = tu_read_file(p, &n_inp);
    vs->out_buf = tu_read_file(q, &n_out);
    if (!vs->inp_buf || !vs->out_buf)
        fail_msg("cannot read %s / %s", p, q);
    free(p);
    free(q);
    vs->inp_buf = realloc(vs->inp_buf, n_inp + 1);
    vs->inp_buf[n_inp] = '\0';
    vs->out_buf = realloc(vs->out_buf, n_out + 1);
    vs->out_buf[n_out] = '\0';
    char *s = vs->inp_buf, *end = vs->inp_buf + n_inp;
    while (s < end && vs->n < MAX_VECTORS) {
        char *m = strstr(s, sep);
        vs->text[vs->n] = s;
        vs->text_len[vs->n] = m ? (size_t)(m - s) : (size_t)(end - s);
        vs->n++;
        if (!m)
            break;
        s = m + strlen(sep);
    }
    /* a trailing separator leaves no further string */
    char *line = vs->out_buf;
    for (size_t i = 0; i < vs->n; i++) {
        vs->ids_line[i] = line;
        char *nl = strchr(line, '\n');
        if (!nl) {
            if (i + 1 < vs->n)
                fail_msg("%s: only %zu lines for %zu inputs", vs->out_rel, i + 1, vs->n);
            break;
        }
        *nl = '\0';
        line = nl + 1;
    }
}

static size_t parse_ids(const char *line, int32_t *ids, size_t cap)
{
    size_t n = 0;
    char *e;
    for (const char *p = line; *p && n < cap;) {
        long v = strtol(p, &e, 10);
        if (e == p)
            break;
        ids[n++] = (int32_t)v;
        p = e;
    }
    return n;
}

struct vec_ref {
    struct vectors *vs;
    size_t i;
};

static void test_vector(void **state)
{
    struct vec_ref *r = *state;
    struct vectors *vs = r->vs;
    if (!vs->inp_buf)
        vectors_load(vs);
    if (r->i >= vs->n)
        fail_msg("%s: vector %zu missing (only %zu)", vs->inp_rel, r->i, vs->n);
    const struct cs_tokenizer *tok = vocab_tok(vs->v);
    int32_t want[512];
    size_t n_want = parse_ids(vs->ids_line[r->i], want, 512), n_got;
    int32_t *got = tokenize(tok, vs->text[r->i], vs->text_len[r->i], false, false, &n_got);
    if (n_got != n_want || memcmp(got, want, n_got * sizeof(*got)) != 0) {
        char a[4096], b[4096];
        fmt_ids(a, sizeof a, want, n_want);
        fmt_ids(b, sizeof b, got, n_got);
        fail_msg("%s vector %zu \"%.*s\":\n  want [%s]\n  got  [%s]", vs->v->rel, r->i, (int)vs->text_len[r->i],
                 vs->text[r->i], a, b);
    }
    free(got);
}

/* Every vector detokenizes back to its text (with and without BOS). */
static void test_roundtrip(void **state)
{
    struct vectors *vs = *state;
    if (!vs->inp_buf)
        vectors_load(vs);
    const struct cs_tokenizer *tok = vocab_tok(vs->v);
    size_t ok = 0;
    for (size_t i = 0; i < vs->n; i++) {
        for (int bos = 0; bos < 2; bos++) {
            size_t n, len;
            int32_t *ids = tokenize(tok, vs->text[i], vs->text_len[i], bos, false, &n);
            char *s = detok(tok, ids, n, false, &len);
            if (len != vs->text_len[i] || memcmp(s, vs->text[i], len) != 0)
                fail_msg("%s vector %zu (bos %d): \"%.*s\" came back as \"%s\"", vs->v->rel, i, bos,
                         (int)vs->text_len[i], vs->text[i], s);
            ok++;
            free(ids);
            free(s);
        }
    }
    print_message("# %zu round trips\n", ok);
}

/* ---------- greedy references: prompt_ids and texts ---------- */

struct ref_file {
    char name[256]; /* greedy-X.json */
    bool check_text;
};

static void test_reference(void **state)
{
    const struct ref_file *rf = *state;
    char rel[512], err[CLSPEC_ERRLEN];
    snprintf(rel, sizeof rel, "reference/%s", rf->name);
    json_t *root = tu_load_json(rel);
    if (!root)
        fail_msg("%s: not readable JSON (see above)", rel);
    const char *model = json_string_value(json_object_get(root, "model"));
    assert_non_null(model);
    char *mpath = tu_find_model(model);
    if (!mpath && strlen(model) > 5 && strlen(model) < 200) {
        /* synth-256.gguf (F32) is not shipped; README: the F16 file has the same source and vocabulary */
        char alt[256];
        snprintf(alt, sizeof alt, "%.*s-F16.gguf", (int)(strlen(model) - 5), model);
        mpath = tu_find_model(alt);
        if (mpath)
            print_message("# %s: model %s is not shipped, using its vocabulary twin %s\n", rf->name, model, alt);
    }
    if (!mpath)
        fail_msg("%s: model %s not found under models/", rf->name, model);
    struct cs_gguf *g;
    struct cs_tokenizer *tok = open_tok(mpath, &g);
    json_int_t n_vocab = json_integer_value(json_object_get(root, "n_vocab"));
    assert_int_equal(n_vocab, cs_tokenizer_n_vocab(tok));
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) > 0);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *prompt = json_string_value(json_object_get(c, "prompt"));
        json_t *pids = json_object_get(c, "prompt_ids");
        assert_non_null(prompt);
        size_t n_want = json_array_size(pids), n_got;
        int32_t *want = calloc(n_want + 1, sizeof(*want));
        for (size_t k = 0; k < n_want; k++)
            want[k] = (int32_t)json_integer_value(json_array_get(pids, k));
        int32_t *got = tokenize(tok, prompt, strlen(prompt), true, true, &n_got);
        if (n_got != n_want || memcmp(got, want, n_got * sizeof(*got)) != 0) {
            char a[4096], b[4096];
            fmt_ids(a, sizeof a, want, n_want);
            fmt_ids(b, sizeof b, got, n_got);
            fail_msg("%s case %zu \"%s\":\n  want [%s]\n  got  [%s]", rf->name, i, prompt, a, b);
        }
        /* a cap one short reports the count needed */
        if (n_want > 0) {
            size_t need;
            assert_int_equal(cs_tokenize(tok, prompt, strlen(prompt), true, true, got, n_want - 1, &need, err,
                                         sizeof err),
                             CLSPEC_E_RANGE);
            assert_int_equal(need, n_want);
        }
        if (rf->check_text) {
            /* detok(prompt + steps) == detok(prompt) + text */
            json_t *steps = json_object_get(c, "steps");
            const char *text = json_string_value(json_object_get(c, "text"));
            assert_non_null(text);
            size_t n_all = n_want + json_array_size(steps), lp, la;
            int32_t *all = malloc(n_all * sizeof(*all));
            memcpy(all, want, n_want * sizeof(*all));
            for (size_t k = 0; k < json_array_size(steps); k++)
                all[n_want + k] = (int32_t)json_integer_value(json_object_get(json_array_get(steps, k), "token"));
            char *sp = detok(tok, want, n_want, false, &lp);
            char *sa = detok(tok, all, n_all, false, &la);
            assert_string_equal(sp, prompt); /* BOS dropped, prefix space stripped */
            if (la < lp || memcmp(sa, sp, lp) != 0 || strcmp(sa + lp, text) != 0)
                fail_msg("%s case %zu: continuation\n  want \"%s\"\n  got  \"%s\"", rf->name, i, text, sa + lp);
            /* and piece by piece, as llama.cpp printed it */
            size_t tl = strlen(text), o = 0;
            for (size_t k = n_want; k < n_all; k++) {
                char pc[256];
                size_t pn;
                assert_int_equal(cs_token_to_piece(tok, all[k], false, pc, sizeof pc, &pn, err, sizeof err), CLSPEC_OK);
                if (o + pn > tl || memcmp(text + o, pc, pn) != 0)
                    fail_msg("%s case %zu: step %zu piece \"%s\" does not continue \"%.*s\"", rf->name, i,
                             k - n_want, pc, (int)o, text);
                o += pn;
            }
            assert_int_equal(o, tl);
            free(all);
            free(sp);
            free(sa);
        }
        free(want);
        free(got);
    }
    cs_tokenizer_free(tok);
    cs_gguf_close(g);
    json_decref(root);
    free(mpath);
}

/* ---------- pre-tokenizer splits (expected words from Python's `regex`
 * module applied to the patterns in pretok.h) ---------- */

struct split_case {
    const char *text;
    const char *words[16];
};

static const struct split_case qwen2_cases[] = {
    {"Price: 12345 dollars", {"Price", ":", " ", "1", "2", "3", "4", "5", " dollars", NULL}},
    {"I'M here, YOU'RE there", {"I", "'M", " here", ",", " YOU", "'RE", " there", NULL}},
    {"hello!!\x0a\x0aworld", {"hello", "!!\x0a\x0a", "world", NULL}},
    {"  two spaces\x09""and\x09tabs  ", {" ", " two", " spaces", "\x09""and", "\x09tabs", "  ", NULL}},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80 2024", {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", " \xd0\xbc\xd0\xb8\xd1\x80", " ", "2", "0", "2", "4", NULL}},
    {"this is \xf0\x9f\xa6\x99.cpp\x0d\x0a", {"this", " is", " \xf0\x9f\xa6\x99.", "cpp", "\x0d\x0a", NULL}},
    {"x=3.14159;y", {"x", "=", "3", ".", "1", "4", "1", "5", "9", ";y", NULL}},
    {"\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6\xe6\xb5\x8b\xe8\xaf\x95", {"\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6\xe6\xb5\x8b\xe8\xaf\x95", NULL}},
    {"a\x0a \x0a b", {"a", "\x0a \x0a", " b", NULL}},
    {"'ll'VE", {"'ll", "'VE", NULL}},
};
static const struct split_case llama3_cases[] = {
    {"Price: 12345 dollars", {"Price", ":", " ", "123", "45", " dollars", NULL}},
    {"I'M here, YOU'RE there", {"I", "'M", " here", ",", " YOU", "'RE", " there", NULL}},
    {"  two spaces\x09""and\x09tabs  ", {" ", " two", " spaces", "\x09""and", "\x09tabs", "  ", NULL}},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80 2024", {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", " \xd0\xbc\xd0\xb8\xd1\x80", " ", "202", "4", NULL}},
    {"x=3.14159;y", {"x", "=", "3", ".", "141", "59", ";y", NULL}},
    {"a\x0a \x0a b", {"a", "\x0a \x0a", " b", NULL}},
};
static const struct split_case gpt2_cases[] = {
    {"Price: 12345 dollars", {"Price", ":", " 12345", " dollars", NULL}},
    {"I'M here, YOU'RE there", {"I", "'", "M", " here", ",", " YOU", "'", "RE", " there", NULL}},
    {"hello!!\x0a\x0aworld", {"hello", "!!", "\x0a", "\x0a", "world", NULL}},
    {"  two spaces\x09""and\x09tabs  ", {" ", " two", " spaces", "\x09", "and", "\x09", "tabs", "  ", NULL}},
    {"x=3.14159;y", {"x", "=", "3", ".", "14159", ";", "y", NULL}},
    {"'ll'VE", {"'ll", "'", "VE", NULL}},
};

static void check_splits(enum cs_pretok kind, const struct split_case *cases, size_t n_cases)
{
    for (size_t c = 0; c < n_cases; c++) {
        const char *s = cases[c].text;
        size_t len = strlen(s), n = 0, offs[256], ends[256];
        uint32_t cps[256];
        for (size_t o = 0; o < len; n++) {
            size_t k;
            cps[n] = cs_utf8_decode((const uint8_t *)s + o, len - o, &k);
            offs[n] = o;
            o += k;
        }
        offs[n] = len;
        size_t nw = cs_pretok_split(kind, cps, n, ends), start = 0, w;
        for (w = 0; w < nw; w++) {
            const char *want = cases[c].words[w];
            size_t b0 = offs[start], b1 = offs[ends[w]];
            if (!want || strlen(want) != b1 - b0 || memcmp(want, s + b0, b1 - b0) != 0)
                fail_msg("split %d of \"%s\": word %zu is \"%.*s\", want \"%s\"", (int)kind, s, w, (int)(b1 - b0),
                         s + b0, want ? want : "(end)");
            start = ends[w];
        }
        if (cases[c].words[w])
            fail_msg("split %d of \"%s\": %zu words, missing \"%s\"", (int)kind, s, nw, cases[c].words[w]);
    }
}

static void test_split_qwen2(void **state)
{
    (void)state;
    check_splits(CS_PRETOK_QWEN2, qwen2_cases, sizeof qwen2_cases / sizeof qwen2_cases[0]);
    assert_int_equal(cs_pretok_from_name("qwen2"), CS_PRETOK_QWEN2);
}

static void test_split_llama3_gpt2(void **state)
{
    (void)state;
    check_splits(CS_PRETOK_LLAMA3, llama3_cases, sizeof llama3_cases / sizeof llama3_cases[0]);
    check_splits(CS_PRETOK_GPT2, gpt2_cases, sizeof gpt2_cases / sizeof gpt2_cases[0]);
    assert_int_equal(cs_pretok_from_name("llama-bpe"), CS_PRETOK_LLAMA3);
    assert_int_equal(cs_pretok_from_name("default"), CS_PRETOK_GPT2);
    assert_int_equal(cs_pretok_from_name("no-such-pre"), -1);
}

/* ---------- special tokens, pieces, odd input ---------- */

static void test_special_spm(void **state)
{
    (void)state;
    const struct cs_tokenizer *tok = vocab_tok(&v_spm);
    char err[CLSPEC_ERRLEN], buf[64];
    size_t n, len;
    assert_int_equal(cs_tokenizer_bos(tok), 1);
    assert_int_equal(cs_tokenizer_eos(tok), 2);
    assert_int_equal(cs_tokenizer_unk(tok), 0);
    assert_true(cs_tokenizer_is_eog(tok, 2));
    assert_false(cs_tokenizer_is_eog(tok, 1));
    assert_false(cs_tokenizer_is_eog(tok, 32000));
    assert_int_equal(cs_tokenizer_n_vocab(tok), 32000);
    assert_string_equal(cs_tokenizer_text(tok, 1, &len), "<s>");
    assert_null(cs_tokenizer_text(tok, -1, NULL));
    /* parsed: <s> and </s> are single ids, text around them gets the prefix rule */
    int32_t *ids = tokenize(tok, "<s>Hi</s>", 9, false, true, &n);
    assert_true(n >= 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[n - 1], 2);
    char *s = detok(tok, ids, n, false, &len);
    assert_string_equal(s, "Hi"); /* control tokens are omitted */
    free(s);
    assert_int_equal(cs_detokenize(tok, ids, n, false, true, buf, sizeof buf, &len, err, sizeof err), CLSPEC_OK);
    assert_string_equal(buf, "<s>Hi</s>"); /* the prefix space of the first token after BOS is dropped */
    free(ids);
    /* unparsed: the same text is ordinary characters */
    ids = tokenize(tok, "<s>Hi</s>", 9, false, false, &n);
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] != 1 && ids[i] != 2);
    s = detok(tok, ids, n, false, &len);
    assert_string_equal(s, "<s>Hi</s>");
    free(s);
    free(ids);
    /* add_special: BOS only (add_eos_token is false) */
    ids = tokenize(tok, "Hi", 2, true, false, &n);
    assert_int_equal(ids[0], 1);
    assert_int_not_equal(ids[n - 1], 2);
    free(ids);
    /* byte fallback: U+10FFFF has no token: four <0xNN> pieces, back to the bytes */
    ids = tokenize(tok, "\xf4\x8f\xbf\xbf", 4, false, false, &n);
    assert_int_equal(n, 5); /* "▁" + 4 bytes */
    assert_int_equal(ids[1], 3 + 0xF4);
    assert_int_equal(cs_token_to_piece(tok, ids[1], false, buf, sizeof buf, &len, err, sizeof err), CLSPEC_OK);
    assert_int_equal(len, 1);
    assert_int_equal((uint8_t)buf[0], 0xF4);
    free(ids);
    /* pieces: U+2581 becomes a space; buffers too small say how much is needed */
    int32_t hello = -1;
    ids = tokenize(tok, "Hello", 5, false, false, &n);
    assert_int_equal(n, 1);
    hello = ids[0];
    free(ids);
    assert_int_equal(cs_token_to_piece(tok, hello, false, buf, sizeof buf, &len, err, sizeof err), CLSPEC_OK);
    assert_string_equal(buf, " Hello");
    assert_int_equal(cs_token_to_piece(tok, hello, false, buf, 6, &len, err, sizeof err), CLSPEC_E_RANGE);
    assert_int_equal(len, 6);
    assert_int_equal(cs_token_to_piece(tok, 1, false, buf, sizeof buf, &len, err, sizeof err), CLSPEC_OK);
    assert_int_equal(len, 0);
    assert_int_equal(cs_token_to_piece(tok, 1, true, buf, sizeof buf, &len, err, sizeof err), CLSPEC_OK);
    assert_string_equal(buf, "<s>");
    assert_int_equal(cs_token_to_piece(tok, 32000, true, buf, sizeof buf, &len, err, sizeof err), CLSPEC_E_RANGE);
    int32_t bad[2] = {5, -3};
    assert_int_equal(cs_detokenize(tok, bad, 2, false, false, buf, sizeof buf, &len, err, sizeof err), CLSPEC_E_RANGE);
    assert_non_null(strstr(err, "ids[1]"));
}

static void test_special_gpt2(void **state)
{
    (void)state;
    const struct cs_tokenizer *tok = vocab_tok(&v_gpt2);
    size_t n, len;
    assert_int_equal(cs_tokenizer_n_vocab(tok), 50257);
    assert_int_equal(cs_tokenizer_eos(tok), 50256);
    assert_true(cs_tokenizer_is_eog(tok, 50256));
    const char *text = "a<|endoftext|>b";
    int32_t *ids = tokenize(tok, text, strlen(text), false, true, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 50256);
    free(ids);
    ids = tokenize(tok, text, strlen(text), false, false, &n);
    assert_true(n > 3);
    char *s = detok(tok, ids, n, false, &len);
    assert_string_equal(s, text);
    free(s);
    free(ids);
}

/* Invalid UTF-8 and control bytes do not crash; BPE reproduces any bytes. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const inputs[] = {"\xff", "a\x80\x80 b", "\xc3", "\xe2\x82", "ok \xed\xa0\x80 surrogate",
                                         "\xf8\x88\x80\x80\x80", "\xc0\xaf overlong", "x\x00y"};
    struct tu_rng rng;
    tu_rng_seed(&rng, 7);
    char rnd[200];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (char)(tu_rng_u64(&rng) & 0xFF);
    for (size_t v = 0; v < 2; v++) {
        const struct cs_tokenizer *tok = vocab_tok(v ? &v_gpt2 : &v_spm);
        for (size_t i = 0; i <= sizeof inputs / sizeof inputs[0]; i++) {
            const char *s = i < sizeof inputs / sizeof inputs[0] ? inputs[i] : rnd;
            size_t len = i < sizeof inputs / sizeof inputs[0] ? (i == 7 ? 3 : strlen(s)) : sizeof rnd, n, out;
            int32_t *ids = tokenize(tok, s, len, true, true, &n);
            for (size_t k = 0; k < n; k++)
                assert_true(ids[k] >= 0 && ids[k] < cs_tokenizer_n_vocab(tok));
            char *back = detok(tok, ids, n, false, &out);
            assert_int_equal(out, len); /* SPM: <0xNN> fallback; BPE: byte-level */
            assert_memory_equal(back, s, len);
            free(back);
            free(ids);
        }
    }
}

/* TinyStories-656K has no <0xNN> tokens and all scores equal. */
static void test_tinystories_unk(void **state)
{
    (void)state;
    char *p = tu_shared_path("models/TinyStories-656K-Q8_0.gguf");
    struct cs_gguf *g;
    struct cs_tokenizer *tok = open_tok(p, &g);
    size_t n;
    int32_t *ids = tokenize(tok, "a \xe2\x98\x83 b", 7, false, false, &n);
    size_t unk = 0;
    for (size_t i = 0; i < n; i++)
        unk += ids[i] == cs_tokenizer_unk(tok);
    assert_int_equal(unk, 1); /* the snowman, once */
    free(ids);
    ids = tokenize(tok, "<|start_story|>Once", 19, false, true, &n);
    assert_int_equal(ids[0], 1);
    free(ids);
    cs_tokenizer_free(tok);
    cs_gguf_close(g);
    free(p);
}

/* ---------- hand-built vocabularies (a minimal GGUF writer) ---------- */

/* The KV section of a GGUF file (the bytes: testutil.h tu_buf) and its key count. */
struct gb {
    struct tu_buf buf;
    uint64_t n_kv;
};

static void gb_key(struct gb *g, const char *k, uint32_t type)
{
    tu_buf_str(&g->buf, k);
    tu_buf_u32(&g->buf, type);
    g->n_kv++;
}
static void kv_str(struct gb *g, const char *k, const char *v)
{
    gb_key(g, k, CS_GGUF_STRING);
    tu_buf_str(&g->buf, v);
}
static void kv_u32(struct gb *g, const char *k, uint32_t v)
{
    gb_key(g, k, CS_GGUF_U32);
    tu_buf_u32(&g->buf, v);
}
static void kv_strs(struct gb *g, const char *k, const char *const *v, size_t n)
{
    gb_key(g, k, CS_GGUF_ARRAY);
    tu_buf_u32(&g->buf, CS_GGUF_STRING);
    tu_buf_u64(&g->buf, n);
    for (size_t i = 0; i < n; i++)
        tu_buf_str(&g->buf, v[i]);
}
static void kv_f32s(struct gb *g, const char *k, const float *v, size_t n)
{
    gb_key(g, k, CS_GGUF_ARRAY);
    tu_buf_u32(&g->buf, CS_GGUF_F32);
    tu_buf_u64(&g->buf, n);
    tu_buf_put(&g->buf, v, 4 * n);
}
static void kv_i32s(struct gb *g, const char *k, const int32_t *v, size_t n)
{
    gb_key(g, k, CS_GGUF_ARRAY);
    tu_buf_u32(&g->buf, CS_GGUF_I32);
    tu_buf_u64(&g->buf, n);
    tu_buf_put(&g->buf, v, 4 * n);
}

/* Header + the kv bytes collected in body. */
static int gb_load(struct gb *body, struct cs_gguf **g, struct cs_tokenizer **tok, uint8_t **file, char *err,
                   size_t errlen)
{
    struct tu_buf f = {0};
    tu_buf_put(&f, "GGUF", 4);
    tu_buf_u32(&f, 3);
    tu_buf_u64(&f, 0);
    tu_buf_u64(&f, body->n_kv);
    tu_buf_put(&f, body->buf.p, body->buf.n);
    free(body->buf.p);
    *file = f.p;
    *tok = NULL;
    int rc = cs_gguf_open_mem(f.p, f.n, "hand.gguf", g, err, errlen);
    if (rc != CLSPEC_OK)
        fail_msg("writer produced a bad file: %s", err);
    return cs_tokenizer_load(*g, tok, err, errlen);
}

enum { SPM_N = 8 };
static const char *const spm_tokens[SPM_N] = {"<unk>", "<s>", "</s>", "a", "b", "c", "ab", "bc"};

/* Equal scores: leftmost pair first; a higher score wins over position. */
static void test_spm_ties(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    for (int bc_wins = 0; bc_wins < 2; bc_wins++) {
        struct gb b = {0};
        float scores[SPM_N] = {0, 0, 0, -1000, -1000, -1000, -1000, bc_wins ? -999.0f : -1000.0f};
        int32_t types[SPM_N] = {2, 3, 3, 1, 1, 1, 1, 1};
        kv_str(&b, "tokenizer.ggml.model", "llama");
        kv_strs(&b, "tokenizer.ggml.tokens", spm_tokens, SPM_N);
        kv_f32s(&b, "tokenizer.ggml.scores", scores, SPM_N);
        kv_i32s(&b, "tokenizer.ggml.token_type", types, SPM_N);
        gb_key(&b, "tokenizer.ggml.add_space_prefix", CS_GGUF_BOOL);
        tu_buf_put(&b.buf, "\0", 1);
        struct cs_gguf *g;
        struct cs_tokenizer *tok;
        uint8_t *file;
        if (gb_load(&b, &g, &tok, &file, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        size_t n;
        int32_t *ids = tokenize(tok, "abc", 3, false, false, &n);
        assert_int_equal(n, 2);
        assert_int_equal(ids[0], bc_wins ? 3 : 6);
        assert_int_equal(ids[1], bc_wins ? 7 : 5);
        free(ids);
        ids = tokenize(tok, "abx", 3, true, false, &n); /* x: no byte tokens -> UNK */
        assert_int_equal(n, 3);
        assert_int_equal(ids[0], 1);
        assert_int_equal(ids[2], 0);
        free(ids);
        cs_tokenizer_free(tok);
        cs_gguf_close(g);
        free(file);
    }
}

struct bad_case {
    const char *what;   /* expected in the message */
    int status;
};

/* Each case builds a broken vocabulary; the load must fail with a message. */
static void build_bad(struct gb *b, int which)
{
    static const char *const ok3[3] = {"<unk>", "<s>", "</s>"};
    static const char *const bad_utf8[3] = {"<unk>", "\xc3\x28", "</s>"};
    static const char *const bad_byte[4] = {"<unk>", "<s>", "</s>", "<0xZZ>"};
    static const char *const merges_nosp[1] = {"ab"};
    float sc2[2] = {0, 0};
    int32_t tt_bad[3] = {2, 9, 3}, tt_byte[4] = {2, 3, 3, 6};
    switch (which) {
    case 0: kv_strs(b, "tokenizer.ggml.tokens", ok3, 3); break;
    case 1: kv_str(b, "tokenizer.ggml.model", "llama"); break;
    case 2:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        kv_f32s(b, "tokenizer.ggml.scores", sc2, 2);
        break;
    case 3:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        kv_u32(b, "tokenizer.ggml.bos_token_id", 99);
        break;
    case 4:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_strs(b, "tokenizer.ggml.tokens", bad_utf8, 3);
        break;
    case 5:
        kv_str(b, "tokenizer.ggml.model", "gpt2");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        break;
    case 6:
        kv_str(b, "tokenizer.ggml.model", "gpt2");
        kv_str(b, "tokenizer.ggml.pre", "martian");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        break;
    case 7:
        kv_str(b, "tokenizer.ggml.model", "gpt2");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        kv_strs(b, "tokenizer.ggml.merges", merges_nosp, 1);
        break;
    case 8:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        kv_i32s(b, "tokenizer.ggml.token_type", tt_bad, 3);
        break;
    case 9:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_strs(b, "tokenizer.ggml.tokens", bad_byte, 4);
        kv_i32s(b, "tokenizer.ggml.token_type", tt_byte, 4);
        break;
    case 10:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_u32(b, "tokenizer.ggml.tokens", 5);
        break;
    case 11:
        kv_str(b, "tokenizer.ggml.model", "bert");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 3);
        break;
    case 12:
        kv_str(b, "tokenizer.ggml.model", "llama");
        kv_strs(b, "tokenizer.ggml.tokens", ok3, 0);
        break;
    }
}

static void test_hostile_metadata(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"tokenizer.ggml.model", CLSPEC_E_FORMAT},      {"tokenizer.ggml.tokens", CLSPEC_E_FORMAT},
        {"tokenizer.ggml.scores", CLSPEC_E_FORMAT},     {"bos_token_id", CLSPEC_E_FORMAT},
        {"tokens[1]", CLSPEC_E_FORMAT},                 {"tokenizer.ggml.merges", CLSPEC_E_FORMAT},
        {"tokenizer.ggml.pre", CLSPEC_E_UNSUPPORTED},   {"merges[0]", CLSPEC_E_FORMAT},
        {"token_type[1]", CLSPEC_E_FORMAT},             {"<0xZZ>", CLSPEC_E_FORMAT},
        {"tokenizer.ggml.tokens", CLSPEC_E_FORMAT},     {"bert", CLSPEC_E_UNSUPPORTED},
        {"tokenizer.ggml.tokens", CLSPEC_E_FORMAT},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        struct gb b = {0};
        char err[CLSPEC_ERRLEN] = "";
        build_bad(&b, i);
        struct cs_gguf *g;
        struct cs_tokenizer *tok;
        uint8_t *file;
        int rc = gb_load(&b, &g, &tok, &file, err, sizeof err);
        if (rc != cases[i].status || !strstr(err, cases[i].what))
            fail_msg("bad vocabulary %d: rc %d (%s), want %d mentioning \"%s\"", i, rc, err, cases[i].status,
                     cases[i].what);
        assert_null(tok);
        cs_gguf_close(g);
        free(file);
    }
}

/* Tokenizing must not be quadratic in the vocabulary: ~100 KB of text on the
 * 32000-token SPM and 50257-token BPE vocabularies. */
static void test_speed(void **state)
{
    (void)state;
    static const char para[] = "Once upon a time, there was a little girl named Lily. She loved to play outside "
                               "in the park with her friends, 1234 times! ";
    size_t reps = 800, len = (sizeof para - 1) * reps;
    char *text = malloc(len + 1);
    for (size_t i = 0; i < reps; i++)
        memcpy(text + i * (sizeof para - 1), para, sizeof para - 1);
    text[len] = '\0';
    for (int v = 0; v < 2; v++) {
        const struct cs_tokenizer *tok = vocab_tok(v ? &v_gpt2 : &v_spm);
        struct timespec t0, t1;
        size_t n;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int32_t *ids = tokenize(tok, text, len, true, true, &n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        print_message("# %s: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", v ? "gpt-2" : "llama-spm", len, n, s,
                      (double)len / s / 1e6);
        assert_true(s < 5.0);
        free(ids);
    }
    free(text);
}

/* ---------- the test list: one test per vector and per reference file ---------- */

#include <dirent.h>

static int teardown_all(void **state)
{
    (void)state;
    vocab_free(&v_spm);
    vocab_free(&v_gpt2);
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct ref_file *)a)->name, ((const struct ref_file *)b)->name);
}

int main(void)
{
    enum { MAX_TESTS = 2 * MAX_VECTORS + 64 + 16 };
    static struct CMUnitTest tests[MAX_TESTS];
    static char names[MAX_TESTS][300];
    static struct vec_ref refs[2 * MAX_VECTORS];
    static struct ref_file files[64];
    size_t nt = 0, nr = 0, nf = 0;

    struct vectors *sets[2] = {&vec_spm, &vec_gpt2};
    for (int s = 0; s < 2; s++) {
        vectors_load(sets[s]);
        for (size_t i = 0; i < sets[s]->n; i++) {
            refs[nr] = (struct vec_ref){sets[s], i};
            snprintf(names[nt], sizeof names[nt], "%s vector %zu", s ? "gpt-2" : "llama-spm", i);
            tests[nt] = (struct CMUnitTest){names[nt], test_vector, NULL, NULL, &refs[nr++]};
            nt++;
        }
        snprintf(names[nt], sizeof names[nt], "%s round trips", s ? "gpt-2" : "llama-spm");
        tests[nt] = (struct CMUnitTest){names[nt], test_roundtrip, NULL, NULL, sets[s]};
        nt++;
    }
    char *refdir = tu_shared_path("reference");
    DIR *d = opendir(refdir);
    if (!d) {
        fprintf(stderr, "test-tokenizer: cannot open %s\n", refdir);
        return 99;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL && nf < 64;) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "greedy-", 7) != 0 || l < 5 || strcmp(e->d_name + l - 5, ".json") != 0 ||
            l >= sizeof files[0].name)
            continue;
        memcpy(files[nf].name, e->d_name, l + 1);
        files[nf].check_text = strstr(e->d_name, "stories260K") || strstr(e->d_name, "TinyStories");
        nf++;
    }
    closedir(d);
    free(refdir);
    qsort(files, nf, sizeof files[0], cmp_name);
    for (size_t i = 0; i < nf; i++) {
        snprintf(names[nt], sizeof names[nt], "reference %.200s%s", files[i].name, files[i].check_text ? " (+text)" : "");
        tests[nt] = (struct CMUnitTest){names[nt], test_reference, NULL, NULL, &files[i]};
        nt++;
    }
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_split_qwen2),    cmocka_unit_test(test_split_llama3_gpt2),
        cmocka_unit_test(test_special_spm),    cmocka_unit_test(test_special_gpt2),
        cmocka_unit_test(test_invalid_utf8),   cmocka_unit_test(test_tinystories_unk),
        cmocka_unit_test(test_spm_ties),       cmocka_unit_test(test_hostile_metadata),
        cmocka_unit_test(test_speed),
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        tests[nt++] = fixed[i];
    return _cmocka_run_group_tests("tokenizer", tests, nt, NULL, teardown_all);
}
