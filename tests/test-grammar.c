/* test-grammar.c: the GBNF parser (valid grammars, errors with line:column),
 * the matcher (strings accepted / refused, UTF-8 split across pieces,
 * repetition bounds, save / restore), the vocabulary mask, JSON Schema ->
 * GBNF (schemas -> grammars -> JSON texts accepted / refused) and the
 * sampler with a grammar (masking, forced end, rollback). No device. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clspec/clspec.h"
#include "base/common.h"
#include "engine/grammar.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"
#include "testutil.h"

static struct cs_grammar *compile(const char *src)
{
    char err[256] = "";
    struct cs_grammar *g = NULL;
    int rc = cs_grammar_compile(src, strlen(src), NULL, &g, err, sizeof err);
    if (rc != 0)
        print_error("grammar:\n%s\nerror: %s\n", src, err);
    assert_int_equal(rc, 0);
    return g;
}

/* 1: s is a complete sentence; 0: a prefix only; -1: refused somewhere. */
static int match(const struct cs_grammar *g, const char *s)
{
    struct cs_grammar_state st = {0};
    char err[256];
    assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    int rc = cs_grammar_accept_bytes(g, &st, (const uint8_t *)s, strlen(s), sc);
    int res = rc == 1 ? (cs_grammar_complete(g, &st) ? 1 : 0) : -1;
    cs_grammar_state_free(&st);
    cs_grammar_scratch_free(sc);
    return res;
}

static void expect_error(const char *src, const char *where)
{
    char err[256] = "";
    struct cs_grammar *g = NULL;
    int rc = cs_grammar_compile(src, strlen(src), NULL, &g, err, sizeof err);
    assert_int_equal(rc, CLSPEC_E_INVAL);
    assert_null(g);
    if (!strstr(err, where))
        print_error("grammar:\n%s\nerror '%s' lacks '%s'\n", src, err, where);
    assert_non_null(strstr(err, where));
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("root ::= foo", "1:10: undefined rule 'foo'");
    expect_error("root ::= \"abc", "1:10: unterminated string literal");
    expect_error("root ::= [a-", "unterminated character class");
    expect_error("root ::= [z-a]", "1:13: range end");
    expect_error("root ::= \"a\"\nx ::= (\"b\" | \"c\"", "2:7: '(' is not closed");
    expect_error("root ::= \"a\" \\q", "1:14: unexpected character '\\'");
    expect_error("root ::= \"\\q\"", "1:11: unknown escape");
    expect_error("root ::= \"\\x4\"", "1:11: \\x needs 2 hex digits");
    expect_error("root ::= \"a\"{3,2}", "maximum is below the minimum");
    expect_error("root ::= \"a\"{99999}", "repetition count above");
    expect_error("root ::= * \"a\"", "1:10: '*' has nothing before it");
    expect_error("root = \"a\"", "1:6: expected '::='");
    expect_error("root ::= \"a\"\nroot ::= \"b\"", "2:1: rule 'root' is defined twice");
    expect_error("expr ::= expr \"+\" \"1\" | \"1\"\nroot ::= expr", "left-recursive");
    expect_error("a ::= b? a \"x\"\nb ::= \"y\"\nroot ::= a", "left-recursive");
    expect_error("other ::= \"x\"", "no rule named 'root'");
    expect_error("root ::= \"a\" (\"b\"?)*", "1:21: a group or repetition here can begin with itself");
    expect_error("root ::= \"a\" )", "unmatched ')'");
}

static void test_parse_valid(void **state)
{
    (void)state;
    /* comments, multi-line rules, groups, classes, every repetition form, escapes */
    const char *src = "# a comment\n"
                      "root ::= greeting ws ( \"yes\" | \"no\" ) item{2,3} tail? # trailing comment\n"
                      "greeting ::=\n"
                      "    \"hi\"\n"
                      "  | \"hello\"\n"
                      "ws ::= [ \\t]*\n"
                      "item ::= [0-9]+ \",\"\n"
                      "tail ::= \"\\x41\\u00e9\\U0001F600\" [^a-z]{,2} .\n";
    struct cs_grammar *g = compile(src);
    assert_true(cs_grammar_n_rules(g) > 5);
    assert_int_equal(match(g, "hi yes1,22,"), 1);
    assert_int_equal(match(g, "hello\t\tno1,2,3,"), 1);
    assert_int_equal(match(g, "hiyes1,"), 0);          /* a prefix */
    assert_int_equal(match(g, "hi yes1,2,3,4,"), -1);  /* {2,3} */
    assert_int_equal(match(g, "hey"), -1);
    assert_int_equal(match(g, "hi no1,2,A\xc3\xa9\xf0\x9f\x98\x80ZZ!"), 1);
    assert_int_equal(match(g, "hi no1,2,A\xc3\xa9\xf0\x9f\x98\x80zz!"), -1); /* [^a-z] */
    assert_int_equal(match(g, "hi no1,2,A\xc3\xa9\xf0\x9f\x98\x80ZZZ!"), -1); /* {,2} then one char */
    cs_grammar_unref(g);

    g = compile("root ::= \"a\"{3}\n");
    assert_int_equal(match(g, "aa"), 0);
    assert_int_equal(match(g, "aaa"), 1);
    assert_int_equal(match(g, "aaaa"), -1);
    cs_grammar_unref(g);
    g = compile("root ::= (\"ab\" | \"c\"){2,}\n");
    assert_int_equal(match(g, "c"), 0);
    assert_int_equal(match(g, "cab"), 1);
    assert_int_equal(match(g, "abcabccab"), 1);
    assert_int_equal(match(g, "abb"), -1);
    cs_grammar_unref(g);
    /* a right-recursive list and nested nullable rules */
    g = compile("root ::= list\nlist ::= \"x\" list | \"\"\n");
    assert_int_equal(match(g, ""), 1);
    assert_int_equal(match(g, "xxxxxxxx"), 1);
    assert_int_equal(match(g, "xy"), -1);
    cs_grammar_unref(g);
    /* a custom root name */
    char err[256];
    struct cs_grammar *h = NULL;
    const char *two = "a ::= \"1\"\nb ::= \"2\"";
    assert_int_equal(cs_grammar_compile(two, strlen(two), "b", &h, err, sizeof err), 0);
    assert_int_equal(match(h, "2"), 1);
    assert_int_equal(match(h, "1"), -1);
    cs_grammar_unref(h);
}

static void test_utf8_split(void **state)
{
    (void)state;
    struct cs_grammar *g = compile("root ::= [\\u00e0-\\u00ff] \"\xe2\x82\xac\" [\\U0001F600-\\U0001F64F]\n");
    const char *s = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x81"; /* é € 😁 */
    size_t n = strlen(s);
    char err[256];
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    /* every split of the text into pieces of one to three bytes: the same answer */
    for (size_t piece = 1; piece <= 3; piece++) {
        struct cs_grammar_state st = {0};
        assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
        for (size_t i = 0; i < n; i += piece) {
            assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)s + i, CS_MIN(piece, n - i), sc), 1);
            assert_int_equal(cs_grammar_complete(g, &st), i + piece >= n);
        }
        cs_grammar_state_free(&st);
    }
    struct cs_grammar_state st = {0};
    assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
    /* a lead byte of a code point below the class: refused at once */
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xc2", 1, sc), 0);
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xc3", 1, sc), 1);
    /* an invalid continuation, a lone continuation byte, an overlong form */
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xc3\x41", 2, sc), 0);
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xa9", 1, sc), 0);
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xc1\xa9", 2, sc), 0);
    /* a pending half: the state remembers it, and only continuation bytes go on */
    assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)"\xc3", 1, sc), 1);
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"a", 1, sc), 0);
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xa9\xe2", 2, sc), 1);
    assert_int_equal(cs_grammar_allows_bytes(g, &st, (const uint8_t *)"\xa9\xe3", 2, sc), 0); /* not € */
    cs_grammar_state_free(&st);
    cs_grammar_scratch_free(sc);
    cs_grammar_unref(g);
}

static void test_save_restore(void **state)
{
    (void)state;
    struct cs_grammar *g = compile("root ::= \"[\" num (\",\" num)* \"]\"\nnum ::= [0-9]{1,3}\n");
    char err[256];
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    struct cs_grammar_state st = {0}, snap = {0};
    assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
    assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)"[12,", 4, sc), 1);
    assert_int_equal(cs_grammar_state_copy(&snap, &st), 0);
    assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)"345]", 4, sc), 1);
    assert_true(cs_grammar_complete(g, &st));
    assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)"7", 1, sc), 0); /* nothing after ']' */
    assert_int_equal(cs_grammar_state_copy(&st, &snap), 0);                             /* rollback */
    assert_false(cs_grammar_complete(g, &st));
    assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)"1234", 4, sc), 0); /* {1,3} */
    assert_int_equal(cs_grammar_accept_bytes(g, &st, (const uint8_t *)"9]", 2, sc), 1);
    assert_true(cs_grammar_complete(g, &st));
    cs_grammar_state_free(&st);
    cs_grammar_state_free(&snap);
    cs_grammar_scratch_free(sc);
    cs_grammar_unref(g);
}

/* ---- a toy vocabulary ---- */

static const char *const TOY[] = {"</s>", "yes", "no", "y", "es", "n", "o", " ", "1", "2", ",", "[", "]", "",
                                  "\xc3", "\xa9", "maybe", "12", "[1", "]]"};
#define TOY_N ((int32_t)CS_ARRAY_LEN(TOY))

static int toy_piece(void *ctx, int32_t id, const uint8_t **s, size_t *n, int *eog)
{
    (void)ctx;
    *s = (const uint8_t *)(id == 0 ? "" : TOY[id]);
    *n = strlen((const char *)*s);
    *eog = id == 0;
    return 0;
}

static struct cs_grammar_vocab *toy_vocab(void)
{
    char err[256];
    struct cs_grammar_vocab *v = NULL;
    assert_int_equal(cs_grammar_vocab_new(TOY_N, toy_piece, NULL, &v, err, sizeof err), 0);
    return v;
}

static void test_mask(void **state)
{
    (void)state;
    struct cs_grammar *g = compile("root ::= \"yes\" | \"no\" | \"\\u00e9\"\n");
    struct cs_grammar_vocab *v = toy_vocab();
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    struct cs_grammar_state st = {0};
    char err[256];
    uint8_t ok[TOY_N];
    assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
    int32_t n = cs_grammar_mask(g, &st, v, ok, sc);
    /* allowed: yes no y n \xc3; not: </s> (incomplete), es, o, the empty token, maybe, \xa9 */
    int32_t want[] = {1, 2, 3, 5, 14};
    assert_int_equal(n, (int32_t)CS_ARRAY_LEN(want));
    for (size_t i = 0; i < CS_ARRAY_LEN(want); i++)
        assert_int_equal(ok[want[i]], 1);
    for (int32_t i = 0; i < TOY_N; i++) /* the mask agrees with the per-token answer */
        assert_int_equal(ok[i], cs_grammar_token_allowed(g, &st, v, i, sc));
    struct cs_grammar_state start = {0};
    assert_int_equal(cs_grammar_state_copy(&start, &st), 0);
    assert_int_equal(cs_grammar_accept_token(g, &st, v, 3, sc), 1); /* "y" */
    assert_int_equal(cs_grammar_mask(g, &st, v, ok, sc), 1);
    assert_int_equal(ok[4], 1); /* "es" */
    /* back at the start: the remembered mask of that state, not the last one */
    assert_int_equal(cs_grammar_mask(g, &start, v, ok, sc), n);
    for (int32_t i = 0; i < TOY_N; i++)
        assert_int_equal(ok[i], cs_grammar_token_allowed(g, &start, v, i, sc));
    /* a pending UTF-8 half is part of the state: only its continuation */
    assert_int_equal(cs_grammar_accept_token(g, &start, v, 14, sc), 1); /* "\xc3" */
    assert_int_equal(cs_grammar_mask(g, &start, v, ok, sc), 1);
    assert_int_equal(ok[15], 1);
    cs_grammar_state_free(&start);
    assert_int_equal(cs_grammar_mask(g, &st, v, ok, sc), 1);
    assert_int_equal(ok[4], 1);
    assert_int_equal(cs_grammar_accept_token(g, &st, v, 4, sc), 1);
    assert_int_equal(cs_grammar_mask(g, &st, v, ok, sc), 1);
    assert_int_equal(ok[0], 1); /* complete: only the end */
    cs_grammar_state_free(&st);
    cs_grammar_scratch_free(sc);
    cs_grammar_vocab_unref(v);
    cs_grammar_unref(g);
}

/* A random vocabulary of JSON-ish pieces (UTF-8 split too): along random
 * walks through a schema's grammar, the mask (automaton, memo) equals the
 * per-token answer of the plain walk at every state. */
static const char *const PIECES[] = {"{", "}", "[", "]", "\"", ",", ":", " ", "\n", "a", "b", "0", "1", "9", "-",
                                     "\xc3", "\xa9", "\xc3\xa9", "\\", "n", "u", "e", "true", "null", "\"a"};
static char rv_text[600][16];
static struct cs_grammar *schema_grammar(const char *schema);

static int rand_piece(void *ctx, int32_t id, const uint8_t **s, size_t *n, int *eog)
{
    (void)ctx;
    *s = (const uint8_t *)rv_text[id];
    *n = strlen(rv_text[id]);
    *eog = id == 0;
    return 0;
}

static void test_mask_differential(void **state)
{
    (void)state;
    struct tu_rng r;
    tu_rng_seed(&r, 77);
    const int32_t V = 600;
    for (int32_t i = 1; i < V; i++) {
        rv_text[i][0] = '\0';
        int k = 1 + (int)(tu_rng_u64(&r) % 3);
        for (int j = 0; j < k; j++)
            strcat(rv_text[i], PIECES[tu_rng_u64(&r) % CS_ARRAY_LEN(PIECES)]);
    }
    char err[256];
    struct cs_grammar_vocab *v = NULL;
    assert_int_equal(cs_grammar_vocab_new(V, rand_piece, NULL, &v, err, sizeof err), 0);
    struct cs_grammar *g = schema_grammar("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
                                          "\"b\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},"
                                          "\"e\":{\"enum\":[\"\\u00e9\",null,true]}},\"required\":[\"a\"]}");
    struct cs_grammar_scratch *fast = cs_grammar_scratch_new(), *slow = cs_grammar_scratch_new();
    uint8_t *ok = malloc((size_t)V);
    int checked = 0;
    for (int walk = 0; walk < 8; walk++) {
        struct cs_grammar_state st = {0};
        assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
        for (int step = 0; step < 40; step++) {
            int32_t n = cs_grammar_mask(g, &st, v, ok, fast), m = 0;
            for (int32_t i = 0; i < V; i++) {
                bool want = cs_grammar_token_allowed(g, &st, v, i, slow);
                if (ok[i] != want)
                    fail_msg("walk %d step %d token %d '%s': mask %d, walk %d", walk, step, i, rv_text[i], ok[i],
                             want);
                m += want;
            }
            assert_int_equal(n, m);
            checked++;
            int32_t pick = -1, seen = 0;
            for (int32_t i = 1; i < V; i++) /* a random allowed token (not the end) */
                if (ok[i] && tu_rng_u64(&r) % (uint64_t)(++seen) == 0)
                    pick = i;
            if (pick < 0)
                break;
            assert_int_equal(cs_grammar_accept_token(g, &st, v, pick, slow), 1);
        }
        cs_grammar_state_free(&st);
    }
    assert_true(checked > 50);
    /* the same scratch with another grammar: nothing of the first one's automaton or masks leaks in */
    struct cs_grammar *g2 = compile("root ::= \"{\" [ab\\u00e9]* \"}\"\n");
    struct cs_grammar_state s2 = {0};
    assert_int_equal(cs_grammar_state_init(g2, &s2, err, sizeof err), 0);
    for (int round = 0; round < 2; round++) {
        int32_t n2 = cs_grammar_mask(g2, &s2, v, ok, fast);
        int32_t m2 = 0;
        for (int32_t i = 0; i < V; i++) {
            assert_int_equal(ok[i], cs_grammar_token_allowed(g2, &s2, v, i, slow));
            m2 += ok[i];
        }
        assert_int_equal(n2, m2);
        assert_true(n2 > 0);
        int32_t pick = -1;
        for (int32_t i = 1; i < V && pick < 0; i++)
            if (ok[i])
                pick = i;
        assert_int_equal(cs_grammar_accept_token(g2, &s2, v, pick, slow), 1);
    }
    cs_grammar_state_free(&s2);
    cs_grammar_unref(g2);
    free(ok);
    cs_grammar_scratch_free(fast);
    cs_grammar_scratch_free(slow);
    cs_grammar_unref(g);
    cs_grammar_vocab_unref(v);
}

static void test_sampler_grammar(void **state)
{
    (void)state;
    struct cs_grammar *g = compile("root ::= \"[\" [12] (\",\" [12])* \"]\"\n");
    struct cs_grammar_vocab *v = toy_vocab();
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 0.0f;
    struct cs_sampler *s = NULL;
    char err[256];
    assert_int_equal(cs_sampler_new(&p, TOY_N, &s, err, sizeof err), 0);
    assert_int_equal(cs_sampler_set_grammar(s, g, v, err, sizeof err), 0);
    cs_grammar_unref(g); /* the sampler keeps its own references */
    cs_grammar_vocab_unref(v);
    /* a fresh state: how far token runs go */
    int32_t run1[] = {11, 8, 10, 9, 12, 0}, run2[] = {11, 16}, run3[] = {11, 8, 19}, run4[] = {18, 10, 17, 12, 1};
    assert_int_equal(cs_sampler_grammar_prefix(s, run1, 6), 6);
    assert_int_equal(cs_sampler_grammar_prefix(s, run2, 2), 1);
    assert_int_equal(cs_sampler_grammar_prefix(s, run3, 3), 2);
    assert_int_equal(cs_sampler_grammar_prefix(s, run4, 5), 2); /* "[1" "," then "12": two digits */
    assert_int_equal(cs_sampler_grammar_state(s), 1);           /* unchanged */
    /* logits that love "maybe" and the end: the grammar forces "[", digits, commas, "]" */
    float L[TOY_N];
    char out[64] = "";
    int32_t toks[16];
    int n_tok = 0;
    struct cs_sampler *snap = NULL;
    for (int step = 0; step < 12; step++) {
        for (int32_t i = 0; i < TOY_N; i++)
            L[i] = (float)((i * 7 + step * 3) % 11);
        L[16] = 100.0f; /* maybe */
        L[0] = 50.0f;   /* </s> */
        L[10] = step < 6 ? 60.0f : 0.0f; /* "," for a while */
        int32_t t = cs_sampler_sample(s, L);
        assert_true(t >= 0 && t < TOY_N);
        assert_int_not_equal(t, 16);
        if (step == 1)
            assert_int_equal(cs_sampler_clone(s, &snap, err, sizeof err), 0);
        assert_int_equal(cs_sampler_accept(s, t), 0);
        toks[n_tok++] = t;
        if (t == 0)
            break;
        strcat(out, TOY[t]);
    }
    assert_true(n_tok >= 6);
    assert_int_equal(toks[n_tok - 1], 0); /* it ended, and only where the text was complete */
    struct cs_grammar *check = compile("root ::= \"[\" [12] (\",\" [12])* \"]\"\n");
    assert_int_equal(match(check, out), 1);
    cs_grammar_unref(check);
    /* a forbidden token: refused, the state unchanged */
    assert_int_equal(cs_sampler_accept(s, 16), CLSPEC_E_INVAL);
    /* rollback to the clone taken at step 1: replaying gives the same tokens */
    assert_non_null(snap);
    assert_int_equal(cs_sampler_restore(s, snap, err, sizeof err), 0);
    assert_int_equal(cs_sampler_grammar_state(s), 1);
    for (int step = 1; step < n_tok; step++) {
        for (int32_t i = 0; i < TOY_N; i++)
            L[i] = (float)((i * 7 + step * 3) % 11);
        L[16] = 100.0f;
        L[0] = 50.0f;
        L[10] = step < 6 ? 60.0f : 0.0f;
        int32_t t = cs_sampler_sample(s, L);
        assert_int_equal(t, toks[step]);
        assert_int_equal(cs_sampler_accept(s, t), 0);
    }
    /* probabilities of a grammar sampler put mass only on allowed tokens */
    cs_sampler_free(snap);
    struct cs_sampler_params q = cs_sampler_defaults();
    q.temp = 1.0f;
    q.top_k = 0;
    q.top_p = 1.0f;
    q.min_p = 0.0f;
    struct cs_sampler *t = NULL;
    assert_int_equal(cs_sampler_new(&q, TOY_N, &t, err, sizeof err), 0);
    assert_int_equal(cs_sampler_restore(t, s, err, sizeof err), 0);
    float P[TOY_N];
    for (int32_t i = 0; i < TOY_N; i++)
        L[i] = 0.0f;
    cs_sampler_probs(t, L, P);
    double sum = 0.0;
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    for (int32_t i = 0; i < TOY_N; i++) {
        sum += P[i];
        if (P[i] > 0.0f)
            assert_true(cs_grammar_token_allowed(t->gram, &t->gst, t->gvocab, i, sc));
    }
    assert_true(fabs(sum - 1.0) < 1e-5);
    for (int k = 0; k < 50; k++) {
        int32_t x = cs_sampler_sample(t, L);
        assert_true(cs_grammar_token_allowed(t->gram, &t->gst, t->gvocab, x, sc));
    }
    cs_grammar_scratch_free(sc);
    cs_sampler_free(t);
    cs_sampler_free(s);
}

static void test_forced_end(void **state)
{
    (void)state;
    /* a grammar no token of the vocabulary can continue: the end is forced, with a status */
    struct cs_grammar *g = compile("root ::= \"Z\"\n");
    struct cs_grammar_vocab *v = toy_vocab();
    struct cs_sampler_params p = cs_sampler_defaults();
    struct cs_sampler *s = NULL;
    char err[256];
    assert_int_equal(cs_sampler_new(&p, TOY_N, &s, err, sizeof err), 0);
    assert_int_equal(cs_sampler_set_grammar(s, g, v, err, sizeof err), 0);
    float L[TOY_N] = {0};
    assert_int_equal(cs_sampler_sample(s, L), 0);
    assert_int_equal(cs_sampler_grammar_state(s), 3);
    assert_int_equal(cs_sampler_accept(s, 0), 0);
    /* a vocabulary of another size is refused */
    struct cs_sampler *w = NULL;
    assert_int_equal(cs_sampler_new(&p, TOY_N + 1, &w, err, sizeof err), 0);
    assert_int_equal(cs_sampler_set_grammar(w, g, v, err, sizeof err), CLSPEC_E_INVAL);
    cs_sampler_free(w);
    cs_sampler_free(s);
    cs_grammar_unref(g);
    cs_grammar_vocab_unref(v);
}

/* ---- JSON Schema ---- */

static struct cs_grammar *schema_grammar(const char *schema)
{
    char err[256] = "", *gbnf = NULL;
    size_t n = 0;
    int rc = cs_json_schema_gbnf_text(schema, strlen(schema), &gbnf, &n, err, sizeof err);
    if (rc != 0)
        print_error("schema %s: %s\n", schema, err);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(gbnf), n);
    struct cs_grammar *g = compile(gbnf);
    free(gbnf);
    return g;
}

static void schema_case(const char *schema, const char *const *good, const char *const *bad)
{
    struct cs_grammar *g = schema_grammar(schema);
    for (; *good; good++) {
        if (match(g, *good) != 1)
            print_error("schema %s should accept %s\n", schema, *good);
        assert_int_equal(match(g, *good), 1);
    }
    for (; *bad; bad++) {
        if (match(g, *bad) == 1)
            print_error("schema %s should refuse %s\n", schema, *bad);
        assert_int_not_equal(match(g, *bad), 1);
    }
    cs_grammar_unref(g);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_json_schema(void **state)
{
    (void)state;
    schema_case("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\","
                "\"minimum\":0},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"age\"],"
                "\"additionalProperties\":false}",
                L("{\"name\":\"Al\",\"age\":3}", "{ \"name\" : \"\\u00e9\\n\", \"age\": 0, \"ok\": true }",
                  "{\"name\":\"\",\"age\":12,\"ok\":false}"),
                L("{\"age\":3}", "{\"name\":\"Al\",\"age\":-3}", "{\"name\":\"Al\",\"age\":3,\"x\":1}",
                  "{\"name\":\"Al\",\"age\":3,}", "{\"name\":\"A\nl\",\"age\":3}", "{\"name\":\"Al\",\"age\":03}"));
    /* all optional, order kept, commas right */
    schema_case("{\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"const\":7}}}",
                L("{}", "{\"a\":null}", "{\"b\":7}", "{\"a\":null,\"b\":7}"),
                L("{,\"b\":7}", "{\"b\":7,\"a\":null}", "{\"a\":null,}", "{\"b\":8}"));
    /* additional properties by schema */
    schema_case("{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"}},\"additionalProperties\":"
                "{\"type\":\"number\"}}",
                L("{\"id\":1,\"x\":2.5}", "{\"x\":-1e3}", "{}"), L("{\"id\":1,\"x\":\"s\"}"));
    schema_case("{\"type\":\"array\",\"items\":{\"enum\":[\"red\",\"green\",1,null]},\"minItems\":1,\"maxItems\":3}",
                L("[\"red\"]", "[ 1 , null , \"green\" ]"), L("[]", "[\"blue\"]", "[1,1,1,1]"));
    schema_case("{\"type\":\"array\",\"maxItems\":0}", L("[]", "[ ]"), L("[1]"));
    schema_case("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", L("\"ab\"", "\"a\\\"c\""),
                L("\"a\"", "\"abcd\""));
    schema_case("{\"type\":\"string\",\"pattern\":\"^[A-Z][a-z]+-\\\\d{2,3}(x|yz)?$\"}",
                L("\"Ab-12\"", "\"Abc-123yz\"", "\"Qq-99x\""), L("\"ab-12\"", "\"Ab-1\"", "\"Ab-12w\""));
    schema_case("{\"type\":\"string\",\"format\":\"date\"}", L("\"2024-02-29\""), L("\"2024-13-01\"", "\"24-1-1\""));
    schema_case("{\"type\":\"string\",\"format\":\"uuid\"}", L("\"123e4567-e89b-12d3-a456-426614174000\""),
                L("\"123e4567e89b12d3a456426614174000\""));
    schema_case("{\"type\":\"integer\",\"minimum\":-2,\"exclusiveMaximum\":3}", L("-2", "0", "2"),
                L("3", "-3", "1.5"));
    schema_case("{\"type\":[\"number\",\"null\"]}", L("null", "-0.5e+10", "3"), L("\"3\"", "+3", ".5"));
    schema_case("{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"string\",\"enum\":[\"x\"]}]}", L("true", "\"x\""),
                L("\"y\"", "1"));
    schema_case("{\"allOf\":[{\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},"
                "{\"properties\":{\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}]}",
                L("{\"a\":1,\"b\":\"\"}"), L("{\"a\":1}", "{\"b\":\"\"}"));
    /* $ref into $defs, recursive */
    schema_case("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                "\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},"
                "\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/node\"}",
                L("{\"v\":1,\"next\":null}", "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}"),
                L("{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2}}"));
    schema_case("{\"definitions\":{\"n\":{\"type\":\"number\"}},\"type\":\"array\",\"items\":{\"$ref\":"
                "\"#/definitions/n\"},\"title\":\"ignored\",\"description\":\"too\"}",
                L("[1,2.5]", "[]"), L("[\"1\"]"));
    /* tuples: items as an array (drafts 4-2019) and prefixItems (2020-12); further items only by schema */
    schema_case("{\"items\":[{\"type\":\"integer\"}]}", L("[1]", "[ -3000 ]"), L("[]", "[1,2]", "[\"1\"]"));
    schema_case("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"enum\":[1,2]}]}",
                L("[\"a\",2]", "[ \"\" , 1 ]"), L("[2,\"a\"]", "[\"a\"]", "[\"a\",3]", "[\"a\",1,1]"));
    schema_case("{\"prefixItems\":[{\"type\":\"null\"}],\"items\":{\"type\":\"boolean\"},\"maxItems\":3}",
                L("[null]", "[null,true]", "[null,true,false]"), L("[null,true,false,true]", "[null,1]", "[]"));
    schema_case("{\"items\":[{\"const\":\"x\"}],\"additionalItems\":{\"type\":\"integer\"},\"minItems\":2}",
                L("[\"x\",1]", "[\"x\",1,2,3]"), L("[\"x\"]", "[\"x\",\"y\"]"));
    schema_case("{\"items\":[{\"const\":1}],\"additionalItems\":false}", L("[1]"), L("[1,1]"));
    schema_case("{\"prefixItems\":[],\"items\":{\"type\":\"integer\"}}", L("[]", "[1,2]"), L("[\"a\"]"));
    schema_case("{\"prefixItems\":[]}", L("[]", "[ ]"), L("[1]"));
    /* any JSON: {} and json_object */
    schema_case("{}", L("{\"a\":[1,{\"b\":null}]}", "\"s\"", "true"), L("{a:1}", "[1,]"));
    struct cs_grammar *g = compile(cs_json_object_gbnf());
    assert_int_equal(match(g, "{ \"k\" : [ 1, 2, {\"x\": \"y\"} ] }"), 1);
    assert_int_not_equal(match(g, "[1]"), 1);
    cs_grammar_unref(g);
}

static void schema_error(const char *schema, const char *where)
{
    char err[256] = "", *gbnf = NULL;
    size_t n = 0;
    int rc = cs_json_schema_gbnf_text(schema, strlen(schema), &gbnf, &n, err, sizeof err);
    assert_true(rc < 0);
    assert_null(gbnf);
    if (!strstr(err, where))
        print_error("schema %s: error '%s' lacks '%s'\n", schema, err, where);
    assert_non_null(strstr(err, where));
}

static void test_json_schema_errors(void **state)
{
    (void)state;
    schema_error("{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}", "/properties/a: 'not' is not supported");
    schema_error("{\"type\":\"strin\"}", "'strin' is not a JSON Schema type");
    schema_error("{\"$ref\":\"http://x/y\"}", "does not resolve");
    schema_error("{\"$ref\":\"#/$defs/missing\"}", "does not resolve");
    schema_error("{\"type\":\"string\",\"pattern\":\"(?=a)b\"}", "lookaround");
    schema_error("{\"type\":\"string\",\"pattern\":\"a\\\\1\"}", "back-references");
    schema_error("{\"type\":\"array\",\"prefixItems\":{}}", "/: 'prefixItems' must be an array of schemas");
    schema_error("{\"prefixItems\":[{},{}],\"maxItems\":1}", "maxItems is below the number of tuple items");
    schema_error("{\"items\":[{}],\"minItems\":2}", "minItems is above the number of tuple items");
    schema_error("{\"items\":[{},{\"type\":\"x\"}]}", "/items/1: 'x' is not a JSON Schema type");
    schema_error("{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", "maxLength is below minLength");
    schema_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no number lies between");
    schema_error("{\"type\":\"object\",", "json_schema: 1:");
    schema_error("{\"uniqueItems\":true}", "'uniqueItems' true is not supported");
    schema_error("false", "accepts nothing");
    /* the door: buffer rule */
    char buf[8];
    size_t n = 0;
    char err[256];
    assert_int_equal(clspec_json_schema_to_grammar("{}", 2, buf, sizeof buf, &n, err, sizeof err), CLSPEC_E_RANGE);
    char *big = malloc(n + 1);
    assert_int_equal(clspec_json_schema_to_grammar("{}", 2, big, n + 1, &n, err, sizeof err), 0);
    assert_int_equal(clspec_grammar_check(big, NULL, err, sizeof err), 0);
    free(big);
    assert_int_equal(clspec_grammar_check("root ::= x", NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "1:10"));
}

/* Mutated grammars and schemas (seeded): every one compiles or is refused
 * with a message; what compiles walks random bytes without a crash. */
static void test_mutations(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "root ::= greeting ws ( \"yes\" | \"no\" ) item{2,3} tail?\ngreeting ::= \"hi\" | \"hello\"\n"
        "ws ::= [ \\t]*\nitem ::= [0-9]+ \",\"\ntail ::= \"\\x41\\u00e9\" [^a-z]{,2} .\n",
        "root ::= \"[\" num (\",\" num)* \"]\"\nnum ::= [0-9]{1,3} # comment\n",
    };
    static const char *const schemas[] = {
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^[a-z]+(x|y)?$\"},"
        "\"b\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"},\"maxItems\":2}},\"required\":[\"a\"],"
        "\"$defs\":{\"n\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9}}}",
    };
    const char alphabet[] = "\"[]()|*+?{},:=-^.#\\ \nabxu0123456789";
    struct tu_rng r;
    tu_rng_seed(&r, 2024);
    struct cs_grammar_scratch *sc = cs_grammar_scratch_new();
    int n_ok = 0, n_err = 0;
    for (int it = 0; it < 3000; it++) {
        bool schema = it % 3 == 2;
        const char *src = schema ? schemas[0] : seeds[it % 2];
        size_t n = strlen(src);
        char *m = malloc(n + 1);
        memcpy(m, src, n + 1);
        int edits = 1 + (int)(tu_rng_u64(&r) % 3);
        for (int k = 0; k < edits && n > 0; k++) {
            size_t at = (size_t)(tu_rng_u64(&r) % n);
            if (tu_rng_u64(&r) % 4 == 0)
                n = at; /* truncate */
            else
                m[at] = alphabet[tu_rng_u64(&r) % (sizeof alphabet - 1)];
        }
        m[n] = '\0';
        char err[256] = "";
        char *gbnf = NULL;
        size_t gl = 0;
        int rc = schema ? cs_json_schema_gbnf_text(m, n, &gbnf, &gl, err, sizeof err) : CLSPEC_OK;
        struct cs_grammar *g = NULL;
        if (rc == CLSPEC_OK) {
            const char *text = schema ? gbnf : m;
            rc = cs_grammar_compile(text, strlen(text), NULL, &g, err, sizeof err);
        }
        if (rc != CLSPEC_OK) {
            assert_true(rc == CLSPEC_E_INVAL || rc == CLSPEC_E_FORMAT);
            assert_true(strlen(err) > 0);
            n_err++;
        } else {
            struct cs_grammar_state st = {0};
            assert_int_equal(cs_grammar_state_init(g, &st, err, sizeof err), 0);
            uint8_t bytes[8];
            for (int k = 0; k < 20; k++) {
                size_t bl = 1 + tu_rng_u64(&r) % sizeof bytes;
                for (size_t b = 0; b < bl; b++)
                    bytes[b] = (uint8_t)(tu_rng_u64(&r) % 4 == 0 ? tu_rng_u64(&r) : (uint64_t)alphabet[tu_rng_u64(&r) % 20]);
                int a = cs_grammar_accept_bytes(g, &st, bytes, bl, sc);
                assert_true(a == 0 || a == 1);
            }
            cs_grammar_state_free(&st);
            cs_grammar_unref(g);
            n_ok++;
        }
        free(gbnf);
        free(m);
    }
    cs_grammar_scratch_free(sc);
    print_message("mutations: %d compiled, %d refused\n", n_ok, n_err);
    assert_true(n_ok > 100 && n_err > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),    cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_utf8_split),      cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_mask),            cmocka_unit_test(test_sampler_grammar),
        cmocka_unit_test(test_forced_end),      cmocka_unit_test(test_json_schema),
        cmocka_unit_test(test_json_schema_errors), cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_mask_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
