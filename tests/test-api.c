/* test-api.c: clspecd's API JSON without sockets: request bodies parsed and
 * validated (types, ranges, defaults, chat messages, stop strings, logprobs),
 * every refusal names its field (out-of-range numbers jansson cannot hold,
 * unsupported OpenAI fields, bad token ids); seeds (drawn fresh when absent,
 * any uint64 when given, reported in responses); responses, stream chunks, usage/timings,
 * logprobs (invalid UTF-8 pieces sanitised), error JSON and status codes;
 * llama-server's /tokenize and /detokenize bodies and answers.
 * And the HTTP server itself before a model is loaded (loopback, port 0):
 * /health 503 while loading and draining, API key, 404, 405, 413, the
 * llama-server routes (/models, /tokenize) while loading. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/common.h"
#include "daemon/api.h"
#include "daemon/http.h"
#include "daemon/log.h"
#include "engine/api.h"

static struct cs_api_defaults defaults(void)
{
    struct cs_api_defaults d;
    memset(&d, 0, sizeof d);
    d.sp = cs_sampler_defaults();
    d.max_tokens = 256;
    return d;
}

static int parse(enum cs_api_kind k, const char *body, struct cs_api_request *r, const char **param)
{
    struct cs_api_defaults d = defaults();
    char err[256];
    return cs_api_parse(k, body, strlen(body), &d, r, param, err, sizeof err);
}

static void test_completion_fields(void **state)
{
    (void)state;
    struct cs_api_request r;
    const char *param = "x";
    assert_int_equal(parse(CS_API_COMPLETION,
                           "{\"model\":\"m\",\"prompt\":\"Once upon\",\"max_tokens\":12,\"temperature\":0,"
                           "\"top_p\":0.5,\"top_k\":7,\"min_p\":0.1,\"seed\":42,\"stop\":[\"\\n\",\"The end\"],"
                           "\"presence_penalty\":0.5,\"frequency_penalty\":-0.25,\"logprobs\":3,\"stream\":true,"
                           "\"stream_options\":{\"include_usage\":true},\"speculative\":false,\"unknown\":[1]}",
                           &r, &param),
                     CLSPEC_OK);
    assert_null(param);
    assert_string_equal(r.prompt, "Once upon");
    assert_int_equal(r.prompt_len, 9);
    assert_int_equal(r.max_tokens, 12);
    assert_true(r.sp.temp == 0.0f);
    assert_true(r.sp.top_p == 0.5f);
    assert_int_equal(r.sp.top_k, 7);
    assert_true(fabsf(r.sp.min_p - 0.1f) < 1e-7f);
    assert_int_equal(r.sp.seed, 42);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "The end");
    assert_true(r.sp.presence_penalty == 0.5f);
    assert_true(r.sp.freq_penalty == -0.25f);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 3);
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_false(r.speculative);
    cs_api_request_free(&r);
}

static void test_defaults_and_nulls(void **state)
{
    (void)state;
    struct cs_api_request r;
    struct cs_sampler_params d = cs_sampler_defaults();
    assert_int_equal(parse(CS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":null,\"stop\":null,\"max_tokens\":null}",
                           &r, NULL),
                     CLSPEC_OK);
    assert_int_equal(r.max_tokens, 0); /* the server's default */
    assert_true(r.sp.temp == d.temp);
    assert_int_equal(r.sp.top_k, d.top_k);
    assert_int_equal(r.n_stop, 0);
    assert_false(r.logprobs);
    assert_false(r.stream);
    assert_true(r.speculative);
    cs_api_request_free(&r);
    /* a single stop string; prompt as an array of one string; as token ids */
    assert_int_equal(parse(CS_API_COMPLETION, "{\"prompt\":[\"y\"],\"stop\":\"END\"}", &r, NULL), CLSPEC_OK);
    assert_string_equal(r.prompt, "y");
    assert_int_equal(r.n_stop, 1);
    cs_api_request_free(&r);
    assert_int_equal(parse(CS_API_COMPLETION, "{\"prompt\":[1,345,2]}", &r, NULL), CLSPEC_OK);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[1], 345);
    cs_api_request_free(&r);
}

static void test_chat_messages(void **state)
{
    (void)state;
    struct cs_api_request r;
    assert_int_equal(parse(CS_API_CHAT,
                           "{\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                           "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hel\"},"
                           "{\"type\":\"text\",\"text\":\"lo\"}]},{\"role\":\"assistant\",\"content\":null}],"
                           "\"max_completion_tokens\":5,\"logprobs\":true,\"top_logprobs\":2}",
                           &r, NULL),
                     CLSPEC_OK);
    assert_int_equal(r.n_msgs, 3);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.msgs[1].content, "Hel\nlo"); /* text parts joined by a line break, as llama-server */
    assert_string_equal(r.msgs[2].content, "");
    assert_int_equal(r.max_tokens, 5);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 2);
    cs_api_request_free(&r);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        enum cs_api_kind kind;
        const char *body;
        int status;
        const char *param;
    } cases[] = {
        {CS_API_COMPLETION, "{\"prompt\": \"x\", ", CLSPEC_E_FORMAT, NULL},
        {CS_API_COMPLETION, "", CLSPEC_E_FORMAT, NULL},
        {CS_API_COMPLETION, "[1,2]", CLSPEC_E_FORMAT, NULL},
        {CS_API_COMPLETION, "{\"prompt\":\"a\",\"prompt\":\"b\"}", CLSPEC_E_FORMAT, NULL},
        {CS_API_COMPLETION, "{}", CLSPEC_E_INVAL, "prompt"},
        {CS_API_COMPLETION, "{\"prompt\":3}", CLSPEC_E_INVAL, "prompt"},
        {CS_API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", CLSPEC_E_INVAL, "prompt"},
        {CS_API_COMPLETION, "{\"prompt\":[1,-2]}", CLSPEC_E_INVAL, "prompt"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":\"ten\"}", CLSPEC_E_INVAL, "max_tokens"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", CLSPEC_E_INVAL, "max_tokens"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":2.5}", CLSPEC_E_INVAL, "max_tokens"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", CLSPEC_E_INVAL, "temperature"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":-1}", CLSPEC_E_INVAL, "temperature"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":1.5}", CLSPEC_E_INVAL, "top_p"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"top_k\":-1}", CLSPEC_E_INVAL, "top_k"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"presence_penalty\":3}", CLSPEC_E_INVAL, "presence_penalty"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"s\"}", CLSPEC_E_INVAL, "seed"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":-1}", CLSPEC_E_INVAL, "seed"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":18446744073709551616}", CLSPEC_E_INVAL, "seed"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":-9223372036854775809}", CLSPEC_E_INVAL, "seed"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"\\u0001seed\"}", CLSPEC_E_INVAL, "seed"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":0}", CLSPEC_E_INVAL, "top_p"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":1e-50}", CLSPEC_E_INVAL, "top_p"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"min_p\":1}", CLSPEC_E_INVAL, "min_p"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"repeat_penalty\":0}", CLSPEC_E_INVAL, "repeat_penalty"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":3000000000}", CLSPEC_E_INVAL, "max_tokens"},
        {CS_API_COMPLETION, "{\"prompt\":[1,2.5]}", CLSPEC_E_INVAL, "prompt"},
        {CS_API_COMPLETION, "{\"prompt\":[1,4294967296]}", CLSPEC_E_INVAL, "prompt"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"50256\":\"-100\"}}", CLSPEC_E_INVAL, "logit_bias"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":[[1,-1,2]]}", CLSPEC_E_INVAL, "logit_bias"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":5}", CLSPEC_E_INVAL, "logit_bias"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}",
         CLSPEC_E_INVAL, "response_format"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
                      "\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"objekt\"}}}}",
         CLSPEC_E_INVAL, "response_format"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"grammar\":\"root ::= \\\"a\\\" b\"}", CLSPEC_E_INVAL, "grammar"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"json_schema\":{\"not\":{}}}", CLSPEC_E_INVAL, "json_schema"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"grammar\":\"root ::= \\\"a\\\"\",\"json_schema\":{}}", CLSPEC_E_INVAL,
         "grammar"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}",
         CLSPEC_E_INVAL, "tools"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}",
         CLSPEC_E_INVAL, "tool_choice"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":\"function\"}}",
         CLSPEC_E_INVAL, "tool_choice"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"parallel_tool_calls\":1}",
         CLSPEC_E_INVAL, "parallel_tool_calls"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":[]}",
         CLSPEC_E_INVAL, "chat_template_kwargs"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_format\":\"qwen\"}",
         CLSPEC_E_INVAL, "reasoning_format"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", CLSPEC_E_INVAL, "messages"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",1]}", CLSPEC_E_INVAL, "stop"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":\"\"}", CLSPEC_E_INVAL, "stop"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}",
         CLSPEC_E_INVAL, "stop"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", CLSPEC_E_INVAL, "stream"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":true}", CLSPEC_E_INVAL, "logprobs"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":21}", CLSPEC_E_INVAL, "logprobs"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"n\":2}", CLSPEC_E_INVAL, "n"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", CLSPEC_E_INVAL, "echo"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"speculative\":1}", CLSPEC_E_INVAL, "speculative"},
        {CS_API_COMPLETION, "{\"prompt\":\"x\",\"model\":5}", CLSPEC_E_INVAL, "model"},
        {CS_API_CHAT, "{\"messages\":\"hi\"}", CLSPEC_E_INVAL, "messages"},
        {CS_API_CHAT, "{\"messages\":[]}", CLSPEC_E_INVAL, "messages"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", CLSPEC_E_INVAL, "messages"},
        {CS_API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", CLSPEC_E_INVAL, "messages"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", CLSPEC_E_INVAL, "messages"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", CLSPEC_E_INVAL,
         "messages"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", CLSPEC_E_INVAL,
         "top_logprobs"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":3}", CLSPEC_E_INVAL,
         "logprobs"},
        {CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":true}",
         CLSPEC_E_INVAL, "stream_options"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct cs_api_request r;
        const char *param = "unset";
        char err[256] = "";
        struct cs_api_defaults d = defaults();
        int rc = cs_api_parse(cases[i].kind, cases[i].body, strlen(cases[i].body), &d, &r, &param, err, sizeof err);
        if (rc != cases[i].status || (cases[i].param ? !param || strcmp(param, cases[i].param) : param != NULL))
            fail_msg("case %zu (%s): status %d param %s (%s)", i, cases[i].body, rc, param ? param : "NULL", err);
        assert_true(err[0] != 0);
        assert_int_equal(cs_api_http_status(rc), 400);
        assert_null(r.root); /* nothing left to free */
    }
}

static const struct cs_req_usage usage = {
    .prompt_tokens = 10, .completion_tokens = 21, .cached_tokens = 2,
    .queue_ms = 1.5, .prefill_ms = 4.0, .decode_ms = 100.0,
};

/* parse() that also returns the message. */
static int parse_err(enum cs_api_kind k, const char *body, const struct cs_api_defaults *d, struct cs_api_request *r,
                     const char **param, char *err, size_t errlen)
{
    struct cs_api_defaults dd = defaults();
    return cs_api_parse(k, body, strlen(body), d ? d : &dd, r, param, err, errlen);
}

/* A request without "seed" gets a fresh one (or the server's when set); a
 * given seed is kept exactly, up to 2^64-1. */
static void test_seed(void **state)
{
    (void)state;
    struct cs_api_request r;
    char err[256];
    uint64_t seen[8];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(parse(CS_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":0.8}", &r, NULL), CLSPEC_OK);
        assert_false(r.seed_given);
        assert_true(r.sp.seed < (1ull << 53)); /* exact as a JavaScript number */
        seen[i] = r.sp.seed;
        for (int k = 0; k < i; k++)
            assert_true(seen[k] != seen[i]); /* 53 random bits: a repeat means no fresh seed */
        cs_api_request_free(&r);
    }
    /* the server's [sampling] seed, when set, is the default */
    struct cs_api_defaults d = defaults();
    d.sp.seed = 1234;
    assert_int_equal(parse_err(CS_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &d, &r, NULL, err,
                               sizeof err),
                     CLSPEC_OK);
    assert_int_equal(r.sp.seed, 1234);
    assert_false(r.seed_given);
    cs_api_request_free(&r);
    static const struct {
        const char *body;
        uint64_t seed;
    } given[] = {
        {"{\"prompt\":\"x\",\"seed\":0}", 0},
        {"{\"prompt\":\"x\",\"seed\":9223372036854775807}", 9223372036854775807ull},
        {"{\"prompt\":\"x\",\"seed\":9223372036854775808}", 9223372036854775808ull},
        {"{\"seed\" :\n 18446744073709551615 , \"prompt\":\"x\"}", UINT64_MAX},
        /* a big number under another key does not become the seed */
        {"{\"prompt\":\"x\",\"seed\":5,\"metadata\":{\"seed\":18446744073709551615}}", 5},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(given); i++) {
        const char *param = "unset";
        int rc = parse_err(CS_API_COMPLETION, given[i].body, NULL, &r, &param, err, sizeof err);
        if (rc != CLSPEC_OK)
            fail_msg("%s: %s", given[i].body, err);
        assert_true(r.seed_given);
        if (r.sp.seed != given[i].seed)
            fail_msg("%s: seed %llu", given[i].body, (unsigned long long)r.sp.seed);
        assert_string_equal(r.prompt, "x");
        cs_api_request_free(&r);
    }
    /* a nested big seed alone: the request's seed is still drawn */
    assert_int_equal(parse(CS_API_COMPLETION, "{\"prompt\":\"x\",\"metadata\":{\"seed\":18446744073709551615}}", &r,
                           NULL),
                     CLSPEC_OK);
    assert_false(r.seed_given);
    assert_true(r.sp.seed < (1ull << 53));
    cs_api_request_free(&r);
    /* the seed goes back exactly, even above int64 */
    struct cs_api_resp rs = {CS_API_COMPLETION, "cmpl-1", "m", 1, UINT64_MAX};
    char *s = cs_api_completion_json(&rs, "t", 1, "stop", NULL, &usage);
    assert_non_null(s);
    assert_non_null(strstr(s, ",\"seed\":18446744073709551615}"));
    free(s);
    s = cs_api_chunk_json(&rs, NULL, 0, false, "stop", NULL, &usage, false);
    assert_non_null(strstr(s, ",\"seed\":18446744073709551615}"));
    free(s);
}

/* Numbers jansson cannot hold and ranges: the message names the field, the
 * value and the limit (or where the number is). */
static void test_range_messages(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *param;
        const char *msg;
    } cases[] = {
        {"{\"prompt\":\"x\",\"temperature\":1e309}", "temperature",
         "'temperature' is 1e309: the number is out of range (line 1, column 33)"},
        {"{\"prompt\":\"x\",\"seed\":18446744073709551616}", "seed", "'seed' is 18446744073709551616: the number is "
                                                                   "out of range (seeds are 0..18446744073709551615)"},
        {"{\"prompt\":\"x\",\n\"max_tokens\": 99999999999999999999}", "max_tokens",
         "'max_tokens' is 99999999999999999999: the number is out of range (line 2, column 34)"},
        {"{\"prompt\":[1, 2,\n 99999999999999999999]}", "prompt", "'prompt' holds "
                                                                "99999999999999999999: the number is out of range"},
        {"{\"prompt\":\"x\",\"foo\":-1e400}", NULL, "'foo' is -1e400: the number is out of range"},
        {"[1e999]", NULL, "the number 1e999 at line 1, column 6 is out of range"},
        {"{\"prompt\":\"x\",\"seed\":1e30}", "seed", "'seed' must be an integer (0..18446744073709551615)"},
        {"{\"prompt\":\"x\",\"top_p\":0}", "top_p", "'top_p' is 0; it must be greater than 0 and at most 1"},
        {"{\"prompt\":\"x\",\"min_p\":1}", "min_p", "'min_p' is 1; it must be at least 0 and less than 1"},
        {"{\"prompt\":\"x\",\"temperature\":101}", "temperature", "'temperature' is 101; it must be at least 0 and "
                                                                   "at most 100"},
        {"{\"prompt\":[1,-1]}", "prompt", "prompt[1] = -1: token ids are 0..n_vocab-1"},
        {"{\"prompt\":[1,2,7.5]}", "prompt", "prompt[2] is not an integer: token ids are 0..n_vocab-1"},
        {"{\"prompt\":\"x\",\"n\":3}", "n", "'n' is 3; only 1 is supported"},
        {"{\"prompt\":\"x\",\"logit_bias\":{\"1\":true}}", "logit_bias", "logit_bias[\"1\"] must be a number or false (never)"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct cs_api_request r;
        const char *param = "unset";
        char err[256] = "";
        int rc = parse_err(CS_API_COMPLETION, cases[i].body, NULL, &r, &param, err, sizeof err);
        if (rc != CLSPEC_E_INVAL || !strstr(err, cases[i].msg) ||
            (cases[i].param ? !param || strcmp(param, cases[i].param) : param != NULL))
            fail_msg("case %zu (%s): status %d param %s: '%s' lacks '%s'", i, cases[i].body, rc,
                     param ? param : "NULL", err, cases[i].msg);
        assert_null(r.root);
    }
    /* with the vocabulary's size known (the HTTP server passes it) the message states the range */
    {
        struct cs_api_defaults d = defaults();
        d.n_vocab = 512;
        struct cs_api_request r;
        const char *param = NULL;
        char err[256] = "";
        assert_int_equal(parse_err(CS_API_COMPLETION, "{\"prompt\":[1,2,512]}", &d, &r, &param, err, sizeof err),
                         CLSPEC_E_INVAL);
        assert_string_equal(param, "prompt");
        assert_string_equal(err, "prompt[2] = 512: token ids are 0..511 (n_vocab 512)");
        assert_int_equal(parse_err(CS_API_COMPLETION, "{\"prompt\":[0,511]}", &d, &r, &param, err, sizeof err),
                         CLSPEC_OK);
        cs_api_request_free(&r);
    }
    /* documented edges are accepted; max_tokens above the server's limit is the scheduler's to refuse */
    static const char *const ok[] = {
        "{\"prompt\":\"x\",\"top_p\":1,\"min_p\":0,\"temperature\":100,\"repeat_penalty\":0.01}",
        "{\"prompt\":\"x\",\"top_p\":1e-6,\"min_p\":0.999,\"presence_penalty\":-2,\"frequency_penalty\":2}",
        "{\"prompt\":\"x\",\"max_tokens\":20000000,\"top_k\":1073741824,\"logprobs\":20}",
        "{\"prompt\":\"x\",\"logit_bias\":{},\"tools\":[],\"tool_choice\":\"none\",\"response_format\":{\"type\":\"text\"}}",
        "{\"prompt\":\"x\",\"logit_bias\":null,\"tools\":null,\"tool_choice\":null,\"response_format\":null}",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(ok); i++) {
        struct cs_api_request r;
        char err[256] = "";
        if (parse_err(CS_API_COMPLETION, ok[i], NULL, &r, NULL, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s: %s", ok[i], err);
        if (i == 2)
            assert_int_equal(r.max_tokens, 20000000);
        cs_api_request_free(&r);
    }
    /* the sampler takes what the API accepts */
    struct cs_api_request r;
    assert_int_equal(parse(CS_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":1e-6,\"min_p\":0.999}", &r, NULL), CLSPEC_OK);
    clspec_sampler *smp = NULL;
    char err[256];
    assert_int_equal(cs_api_sampler_new(&r.sp, 32, &smp, err, sizeof err), CLSPEC_OK);
    clspec_sampler_free(smp);
    cs_api_request_free(&r);
}

static void test_status_and_error_json(void **state)
{
    (void)state;
    assert_int_equal(cs_api_http_status(CLSPEC_E_CONTEXT), 400);
    assert_int_equal(cs_api_http_status(CLSPEC_E_RANGE), 400);
    assert_int_equal(cs_api_http_status(CLSPEC_E_BUSY), 429);
    assert_int_equal(cs_api_http_status(CLSPEC_E_SHUTDOWN), 503);
    assert_int_equal(cs_api_http_status(CLSPEC_E_CL), 500);
    static const struct {
        int code;
        const char *type, *ecode;
    } cases[] = {
        {400, "invalid_request_error", NULL},  {401, "authentication_error", "invalid_api_key"},
        {404, "not_found_error", "not_found"}, {413, "invalid_request_error", "request_too_large"},
        {429, "rate_limit_error", "queue_full"}, {503, "unavailable_error", "unavailable"},
        {500, "server_error", "internal_error"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        char *s = cs_api_error_json(cases[i].code, "bad \"thing\"\n", i == 0 ? "max_tokens" : NULL);
        json_error_t je;
        json_t *j = json_loads(s, 0, &je);
        assert_non_null(j);
        json_t *e = json_object_get(j, "error");
        assert_string_equal(json_string_value(json_object_get(e, "message")), "bad \"thing\"\n");
        assert_string_equal(json_string_value(json_object_get(e, "type")), cases[i].type);
        if (cases[i].ecode)
            assert_string_equal(json_string_value(json_object_get(e, "code")), cases[i].ecode);
        else
            assert_true(json_is_null(json_object_get(e, "code")));
        if (i == 0)
            assert_string_equal(json_string_value(json_object_get(e, "param")), "max_tokens");
        else
            assert_true(json_is_null(json_object_get(e, "param")));
        json_decref(j);
        free(s);
    }
}

static json_t *load(char *s)
{
    assert_non_null(s);
    json_error_t je;
    json_t *j = json_loads(s, 0, &je);
    if (!j)
        fail_msg("not JSON: %s (%s)", s, je.text);
    free(s);
    return j;
}

static void test_completion_json(void **state)
{
    (void)state;
    struct cs_api_resp rs = {CS_API_COMPLETION, "cmpl-1", "stories", 1700000000, 987654321};
    json_t *j = load(cs_api_completion_json(&rs, "Hi \xC3\xA9", 5, "length", NULL, &usage));
    assert_int_equal(json_integer_value(json_object_get(j, "seed")), 987654321);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "cmpl-1");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "stories");
    assert_int_equal(json_integer_value(json_object_get(j, "created")), 1700000000);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "text")), "Hi \xC3\xA9");
    assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "length");
    assert_true(json_is_null(json_object_get(c, "logprobs")));
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 31);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")),
                     2);
    json_t *t = json_object_get(j, "timings");
    assert_int_equal(json_integer_value(json_object_get(t, "prefill_tokens")), 8);
    assert_true(fabs(json_real_value(json_object_get(t, "prefill_tokens_per_second")) - 2000.0) < 1e-6);
    assert_int_equal(json_integer_value(json_object_get(t, "decode_tokens")), 20);
    assert_true(fabs(json_real_value(json_object_get(t, "decode_tokens_per_second")) - 200.0) < 1e-6);
    assert_true(fabs(json_real_value(json_object_get(t, "queue_ms")) - 1.5) < 1e-9);
    json_decref(j);

    rs.kind = CS_API_CHAT;
    rs.id = "chatcmpl-2";
    j = load(cs_api_completion_json(&rs, "Hello", 5, "stop", NULL, &usage));
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    c = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "message"), "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "message"), "content")), "Hello");
    json_decref(j);
}

static void test_chunks(void **state)
{
    (void)state;
    struct cs_api_resp rs = {CS_API_CHAT, "chatcmpl-3", "m", 1, 77};
    json_t *j = load(cs_api_chunk_json(&rs, "", 0, true, NULL, NULL, NULL, false));
    assert_null(json_object_get(j, "seed")); /* only in the last chunk */
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    json_t *d = json_object_get(c, "delta");
    assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
    assert_true(json_is_null(json_object_get(d, "content"))); /* llama-server's first chunk: content null */
    assert_true(json_is_null(json_object_get(c, "finish_reason")));
    assert_true(json_is_null(json_object_get(j, "usage")));
    json_decref(j);

    j = load(cs_api_chunk_json(&rs, " world", 6, false, NULL, NULL, NULL, false));
    d = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
    assert_null(json_object_get(d, "role"));
    assert_string_equal(json_string_value(json_object_get(d, "content")), " world");
    json_decref(j);

    j = load(cs_api_chunk_json(&rs, NULL, 0, false, "stop", NULL, &usage, false));
    c = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "finish_reason")), "stop");
    assert_int_equal(json_object_size(json_object_get(c, "delta")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")), 21);
    assert_non_null(json_object_get(j, "timings"));
    /* llama-server's timings beside clspec's: predicted_n = the completion's tokens */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "timings"), "predicted_n")), 21);
    assert_non_null(json_object_get(json_object_get(j, "timings"), "prompt_per_second"));
    assert_int_equal(json_integer_value(json_object_get(j, "seed")), 77); /* the last chunk reports the seed */
    json_decref(j);

    j = load(cs_api_chunk_json(&rs, NULL, 0, false, NULL, NULL, &usage, true));
    assert_int_equal(json_array_size(json_object_get(j, "choices")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), 10);
    assert_null(json_object_get(j, "seed"));
    json_decref(j);

    rs.kind = CS_API_COMPLETION;
    j = load(cs_api_chunk_json(&rs, "abc", 3, false, NULL, NULL, NULL, false));
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text")),
                        "abc");
    json_decref(j);
}

static void test_logprobs(void **state)
{
    (void)state;
    struct cs_top_logprob top[2] = {{5, -0.1f, " the", 4}, {6, -2.5f, "\xE2\x96", 2}};
    /* completions format */
    json_t *lp = cs_api_logprobs_new(CS_API_COMPLETION);
    assert_int_equal(cs_api_logprobs_add(lp, CS_API_COMPLETION, " the", 4, -0.1f, top, 2, 0), CLSPEC_OK);
    assert_int_equal(cs_api_logprobs_add(lp, CS_API_COMPLETION, "\xE2\x96", 2, -3.0f, NULL, 0, 4), CLSPEC_OK);
    struct cs_api_resp rs = {CS_API_COMPLETION, "cmpl-4", "m", 1, 0};
    json_t *j = load(cs_api_completion_json(&rs, " the", 4, "length", lp, &usage));
    json_t *l = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    assert_int_equal(json_array_size(json_object_get(l, "tokens")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "tokens"), 0)), " the");
    /* a partial UTF-8 piece becomes U+FFFD (twice: two invalid bytes) */
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "tokens"), 1)),
                        "\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_true(fabs(json_real_value(json_array_get(json_object_get(l, "token_logprobs"), 1)) + 3.0) < 1e-6);
    json_t *alts = json_array_get(json_object_get(l, "top_logprobs"), 0);
    assert_int_equal(json_object_size(alts), 2);
    assert_true(fabs(json_real_value(json_object_get(alts, " the")) + 0.1) < 1e-6);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(l, "text_offset"), 1)), 4);
    json_decref(j);
    /* chat format: token, logprob, bytes, top_logprobs */
    lp = cs_api_logprobs_new(CS_API_CHAT);
    assert_int_equal(cs_api_logprobs_add(lp, CS_API_CHAT, "\xE2\x96", 2, -1.0f, top, 2, 0), CLSPEC_OK);
    rs.kind = CS_API_CHAT;
    j = load(cs_api_chunk_json(&rs, "x", 1, false, NULL, lp, NULL, false));
    json_t *e = json_array_get(json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0),
                                                               "logprobs"),
                                               "content"),
                               0);
    json_t *bytes = json_object_get(e, "bytes");
    assert_int_equal(json_array_size(bytes), 2);
    assert_int_equal(json_integer_value(json_array_get(bytes, 0)), 0xE2);
    assert_int_equal(json_array_size(json_object_get(e, "top_logprobs")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(e, "top_logprobs"), 1),
                                                          "token")),
                        "\xEF\xBF\xBD\xEF\xBF\xBD");
    json_decref(j);
}

static void test_models_and_slots(void **state)
{
    (void)state;
    json_t *j = load(cs_api_models_json("stories260K", NULL, NULL, 5, 512));
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "stories260K");
    assert_string_equal(json_string_value(json_object_get(m, "object")), "model");
    json_t *al = json_object_get(m, "aliases"), *tg = json_object_get(m, "tags");
    assert_int_equal(json_array_size(al), 1); /* the id alone */
    assert_string_equal(json_string_value(json_array_get(al, 0)), "stories260K");
    assert_true(json_is_array(tg) && json_array_size(tg) == 0);
    json_decref(j);
    /* aliases: trimmed, each once (the id too), empty entries skipped; tags likewise */
    j = load(cs_api_models_json("code", " code, fim ,,tinyllama-2,fim", "chat,fim, small", 5, 512));
    m = json_array_get(json_object_get(j, "data"), 0);
    char *txt = json_dumps(json_object_get(m, "aliases"), JSON_COMPACT);
    assert_string_equal(txt, "[\"code\",\"fim\",\"tinyllama-2\"]");
    free(txt);
    txt = json_dumps(json_object_get(m, "tags"), JSON_COMPACT);
    assert_string_equal(txt, "[\"chat\",\"fim\",\"small\"]");
    free(txt);
    json_decref(j);
    struct cs_slot_info s[2];
    memset(s, 0, sizeof s);
    s[0].id = 0;
    s[1].id = 1;
    s[1].busy = true;
    snprintf(s[1].req_id, sizeof s[1].req_id, "req-9");
    s[1].n_prompt = 5;
    s[1].n_generated = 3;
    s[1].n_past = 8;
    j = load(cs_api_slots_json(s, 2));
    assert_int_equal(json_array_size(j), 2);
    assert_true(json_is_null(json_object_get(json_array_get(j, 0), "request_id")));
    assert_true(json_is_false(json_object_get(json_array_get(j, 0), "busy")));
    json_t *b = json_array_get(j, 1);
    assert_true(json_is_true(json_object_get(b, "busy")));
    assert_string_equal(json_string_value(json_object_get(b, "request_id")), "req-9");
    assert_int_equal(json_integer_value(json_object_get(b, "n_past")), 8);
    json_decref(j);
}

/* ---- the HTTP server before the model is loaded (no engine needed) ---- */

/* Sends raw (with Connection: close) to 127.0.0.1:port; returns the status
 * code and copies the whole answer into resp. */
static int http_raw(int port, const char *raw, char *resp, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    size_t len = strlen(raw), off = 0;
    while (off < len) {
        ssize_t n = send(fd, raw + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may answer (413) and close before reading everything */
        off += (size_t)n;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, resp + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == cap - 1)
            break;
    }
    resp[got] = 0;
    close(fd);
    int code = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
        return -1;
    return code;
}

/* llama-server's /tokenize and /detokenize bodies: defaults, refusals naming
 * the field, ids checked against n_vocab, pieces as strings or bytes. */
static void test_tokenize_json(void **state)
{
    (void)state;
    struct cs_api_tokenize t;
    const char *param = "x";
    char err[256];
    const char *b = "{\"content\":\"Once upon\"}";
    assert_int_equal(cs_api_parse_tokenize(b, strlen(b), &t, &param, err, sizeof err), CLSPEC_OK);
    assert_null(param);
    assert_int_equal(t.len, 9);
    assert_memory_equal(t.content, "Once upon", 9);
    assert_false(t.add_special);
    assert_true(t.parse_special);
    assert_false(t.with_pieces);
    json_decref(t.root);
    b = "{\"content\":\"a\",\"add_special\":true,\"with_pieces\":true,\"parse_special\":false}";
    assert_int_equal(cs_api_parse_tokenize(b, strlen(b), &t, &param, err, sizeof err), CLSPEC_OK);
    assert_true(t.add_special && t.with_pieces && !t.parse_special);
    json_decref(t.root);
    static const struct {
        const char *body, *param;
        int rc;
    } bad[] = {
        {"{\"text\":\"a\"}", "content", CLSPEC_E_INVAL},
        {"{\"content\":null}", "content", CLSPEC_E_INVAL},
        {"{\"content\":[1]}", "content", CLSPEC_E_INVAL},
        {"{\"content\":\"a\",\"add_special\":1}", "add_special", CLSPEC_E_INVAL},
        {"{\"content\":\"a\",\"with_pieces\":\"yes\"}", "with_pieces", CLSPEC_E_INVAL},
        {"{\"content\":", NULL, CLSPEC_E_FORMAT},
        {"[\"a\"]", NULL, CLSPEC_E_FORMAT},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        param = "x";
        assert_int_equal(cs_api_parse_tokenize(bad[i].body, strlen(bad[i].body), &t, &param, err, sizeof err),
                         bad[i].rc);
        assert_null(t.root);
        if (bad[i].param)
            assert_string_equal(param, bad[i].param);
        else
            assert_null(param);
    }

    int32_t *ids = NULL;
    size_t n = 9;
    b = "{\"tokens\":[1,0,511]}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[2], 511);
    free(ids);
    b = "{\"tokens\":[]}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_OK);
    assert_int_equal(n, 0);
    assert_null(ids);
    b = "{\"tokens\":[1,512]}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(param, "tokens");
    assert_string_equal(err, "tokens[1] = 512: token ids are 0..511 (n_vocab 512)");
    assert_null(ids);
    b = "{\"tokens\":[-1]}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "tokens[0] = -1"));
    b = "{\"tokens\":[2,\"x\"]}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_INVAL);
    assert_non_null(strstr(err, "tokens[1] is not an integer"));
    b = "{\"tokens\":\"1 2\"}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(param, "tokens");
    b = "{}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(err, "'tokens' is required");
    b = "{\"tokens\":[1,99999999999999999999]}";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_INVAL);
    assert_string_equal(param, "tokens");
    assert_non_null(strstr(err, "out of range"));
    b = "{\"tokens\":[1,2";
    assert_int_equal(cs_api_parse_detokenize(b, strlen(b), 512, &ids, &n, &param, err, sizeof err), CLSPEC_E_FORMAT);

    /* answers: ids; {id, piece} with a string piece, or bytes when not UTF-8 */
    int32_t tk[3] = {1, 7, 300};
    char *out = cs_api_tokens_json(tk, 3, NULL, NULL);
    assert_string_equal(out, "{\"tokens\":[1,7,300]}");
    free(out);
    const char pieces[] = "<s> Once\xE2\x96";
    size_t off[4] = {0, 3, 8, 10};
    out = cs_api_tokens_json(tk, 3, pieces, off);
    assert_string_equal(out, "{\"tokens\":[{\"id\":1,\"piece\":\"<s>\"},{\"id\":7,\"piece\":\" Once\"},"
                             "{\"id\":300,\"piece\":[226,150]}]}");
    free(out);
    out = cs_api_tokens_json(tk, 0, NULL, NULL);
    assert_string_equal(out, "{\"tokens\":[]}");
    free(out);
    out = cs_api_content_json("Once upon\xFF", 10);
    assert_string_equal(out, "{\"content\":\"Once upon\xEF\xBF\xBD\"}");
    free(out);
}

static void test_http_loading(void **state)
{
    (void)state;
    struct cs_http_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1";
    p.port = 0;
    p.api_key = "k3y";
    p.max_body_bytes = 1000;
    p.model_name = "tiny";
    p.defaults = defaults();
    struct cs_http *h = NULL;
    char err[256];
    cs_log_open(NULL, CS_LOG_ERROR, err, sizeof err); /* the refusals log at info */
    assert_int_equal(cs_http_start(&p, &h, err, sizeof err), CLSPEC_OK);
    int port = cs_http_port(h);
    assert_true(port > 0);
    static char resp[8192];
    /* loading: /health 503 "loading" without a key; work 503 with a key */
    assert_int_equal(http_raw(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
                              sizeof resp), 503);
    assert_non_null(strstr(resp, "\"loading\""));
    const char *body = "{\"prompt\":\"x\"}";
    char req[512];
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\nContent-Type: "
             "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    assert_int_equal(http_raw(port, req, resp, sizeof resp), 503);
    assert_non_null(strstr(resp, "\"unavailable_error\""));
    /* llama-server's routes: /tokenize 503 while loading, 401 without the key; /models without /v1 */
    body = "{\"content\":\"x\"}";
    snprintf(req, sizeof req,
             "POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             strlen(body), body);
    assert_int_equal(http_raw(port, req, resp, sizeof resp), 503);
    assert_non_null(strstr(resp, "\"unavailable_error\""));
    snprintf(req, sizeof req,
             "POST /detokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert_int_equal(http_raw(port, req, resp, sizeof resp), 401);
    assert_int_equal(http_raw(port, "GET /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
                                    "Connection: close\r\n\r\n", resp, sizeof resp), 405);
    assert_non_null(strstr(resp, "Allow: POST"));
    assert_int_equal(http_raw(port, "GET /models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
                                    "Connection: close\r\n\r\n", resp, sizeof resp), 200);
    assert_non_null(strstr(resp, "\"tiny\""));
    /* the model list needs no loaded model and no key (public, as llama-server's); a wrong key elsewhere: 401 */
    assert_int_equal(http_raw(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
                                    "Connection: close\r\n\r\n", resp, sizeof resp), 200);
    assert_non_null(strstr(resp, "\"tiny\""));
    assert_int_equal(http_raw(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
                              sizeof resp), 200);
    assert_non_null(strstr(resp, "\"tiny\""));
    assert_int_equal(http_raw(port, "GET /slots HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3Y\r\n"
                                    "Connection: close\r\n\r\n", resp, sizeof resp), 401);
    assert_non_null(strstr(resp, "invalid_api_key"));
    /* 404, 405 with Allow, 413 from Content-Length before the body is read */
    assert_int_equal(http_raw(port, "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
                                    "Connection: close\r\n\r\n", resp, sizeof resp), 404);
    assert_int_equal(http_raw(port, "DELETE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
                              sizeof resp), 405);
    assert_non_null(strstr(resp, "Allow: GET"));
    assert_int_equal(http_raw(port, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k3y\r\n"
                                    "Content-Length: 5000\r\nConnection: close\r\n\r\n", resp, sizeof resp), 413);
    assert_non_null(strstr(resp, "request_too_large"));
    /* draining */
    cs_http_set_draining(h);
    assert_int_equal(http_raw(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
                              sizeof resp), 503);
    assert_non_null(strstr(resp, "\"draining\""));
    cs_http_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion_fields), cmocka_unit_test(test_defaults_and_nulls),
        cmocka_unit_test(test_chat_messages),     cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_seed),              cmocka_unit_test(test_range_messages),
        cmocka_unit_test(test_status_and_error_json), cmocka_unit_test(test_completion_json),
        cmocka_unit_test(test_chunks),            cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_models_and_slots),  cmocka_unit_test(test_tokenize_json),
        cmocka_unit_test(test_http_loading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
