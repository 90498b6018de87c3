/* test-api-llama.c: llama-server's /completion JSON without sockets (src/daemon/api_llama.c):
 * the request's llama fields translated onto the common request (n_predict,
 * n_probs, seed -1, repeat_last_n, mixed and object prompts, response_fields),
 * the refusals naming their field (samplers clspec lacks, several prompts,
 * a post_sampling_probs that is not a boolean, a malformed logit_bias), and the answers an accumulator builds
 * from scheduler events: whole and streamed, stop_type eos / limit / word
 * with the stopping word, completion_probabilities, timings with the draft
 * counts, response_fields; error bodies, /slots and /props. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "daemon/api_llama.h"
#include "daemon/cors.h"

static struct cs_api_defaults defaults(void)
{
    struct cs_api_defaults d;
    memset(&d, 0, sizeof d);
    d.sp = cs_sampler_defaults();
    d.sp.seed = 7;
    d.max_tokens = 256;
    d.n_vocab = 512;
    return d;
}

static int parse(const char *body, struct cs_llama_request *lr, const char **param)
{
    struct cs_api_defaults d = defaults();
    char err[256];
    return cs_llama_parse_completion(body, strlen(body), &d, lr, param, err, sizeof err);
}

static void test_fields(void **state)
{
    (void)state;
    struct cs_llama_request lr;
    const char *param = NULL;
    assert_int_equal(parse("{\"prompt\":\"Once\",\"n_predict\":12,\"n_probs\":3,\"seed\":-1,\"return_tokens\":true,"
                           "\"cache_prompt\":false,\"id_slot\":1,\"repeat_last_n\":-1,\"temperature\":0,"
                           "\"stop\":[\"x\"],\"ignore_eos\":true,\"stream\":true}",
                           &lr, &param),
                     CLSPEC_OK);
    assert_int_equal(lr.r.max_tokens, 12);
    assert_int_equal(lr.n_predict, 12);
    assert_int_equal(lr.n_probs, 3);
    assert_true(lr.r.logprobs);
    assert_int_equal(lr.r.top_logprobs, 3);
    assert_false(lr.r.seed_given); /* -1: a fresh seed (here the server's) */
    assert_true(lr.r.sp.seed == 7);
    assert_true(lr.return_tokens);
    assert_false(lr.cache_prompt);
    assert_int_equal(lr.id_slot, 1);
    assert_int_equal(lr.repeat_last_n, -1);
    assert_true(lr.r.sp.temp == 0.0f);
    assert_int_equal(lr.r.n_stop, 1);
    assert_true(lr.r.ignore_eos);
    assert_true(lr.r.stream);
    assert_null(lr.mixed);
    assert_string_equal(lr.r.prompt, "Once");
    cs_llama_request_free(&lr);

    /* defaults: n_predict -1 leaves max_tokens to the server, no probabilities, cache on */
    assert_int_equal(parse("{\"prompt\":[1,2,3],\"n_predict\":-1}", &lr, &param), CLSPEC_OK);
    assert_int_equal(lr.r.max_tokens, 0);
    assert_int_equal(lr.n_predict, -1);
    assert_false(lr.r.logprobs);
    assert_true(lr.cache_prompt);
    assert_int_equal(lr.r.n_prompt_ids, 3);
    cs_llama_request_free(&lr);

    /* a mixed prompt is kept for the caller to tokenize; an object prompt becomes its string */
    assert_int_equal(parse("{\"prompt\":[1,\"two\",3]}", &lr, &param), CLSPEC_OK);
    assert_non_null(lr.mixed);
    assert_int_equal(json_array_size(lr.mixed), 3);
    assert_string_equal(lr.r.prompt, "");
    cs_llama_request_free(&lr);
    assert_int_equal(parse("{\"prompt\":{\"prompt_string\":\"hi\"},\"response_fields\":[\"content\"]}", &lr, &param),
                     CLSPEC_OK);
    assert_string_equal(lr.r.prompt, "hi");
    assert_int_equal(json_array_size(lr.response_fields), 1);
    cs_llama_request_free(&lr);
    /* samplers set to their "off" value are fine */
    assert_int_equal(parse("{\"prompt\":\"a\",\"mirostat\":0,\"typical_p\":1,\"top_n_sigma\":-1,\"logit_bias\":[],"
                           "\"n_keep\":4,\"samplers\":[\"top_k\"]}",
                           &lr, &param),
                     CLSPEC_OK);
    cs_llama_request_free(&lr);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{\"prompt\":\"a\",\"mirostat\":2}", "mirostat"},
        {"{\"prompt\":\"a\",\"typical_p\":0.5}", "typical_p"},
        {"{\"prompt\":\"a\",\"dry_multiplier\":0.8}", "dry_multiplier"},
        {"{\"prompt\":\"a\",\"xtc_probability\":0.5}", "xtc_probability"},
        {"{\"prompt\":\"a\",\"post_sampling_probs\":1}", "post_sampling_probs"},
        {"{\"prompt\":\"a\",\"n_predict\":0}", "n_predict"},
        {"{\"prompt\":\"a\",\"n_predict\":\"5\"}", "n_predict"},
        {"{\"prompt\":\"a\",\"n_probs\":21}", "n_probs"},
        {"{\"prompt\":\"a\",\"id_slot\":99}", "id_slot"},
        {"{\"prompt\":\"a\",\"return_tokens\":1}", "return_tokens"},
        {"{\"prompt\":\"a\",\"repeat_last_n\":-2}", "repeat_last_n"},
        {"{\"prompt\":[\"a\",\"b\"]}", "prompt"},
        {"{\"prompt\":[[1],[2]]}", "prompt"},
        {"{\"prompt\":{\"prompt_string\":\"a\",\"multimodal_data\":5}}", "prompt"}, /* images: an array of base64 */
        {"{\"prompt\":\"a\",\"logit_bias\":[[1,true]]}", "logit_bias"},
        {"{\"prompt\":\"a\",\"logit_bias\":[{\"1\":-100}]}", "logit_bias"},
        {"{\"prompt\":\"a\",\"temperature\":-5}", "temperature"},
        {"{\"prompt\":\"a\",\"response_fields\":\"content\"}", "response_fields"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        struct cs_llama_request lr;
        const char *param = NULL;
        int rc = parse(cases[i].body, &lr, &param);
        if (rc != CLSPEC_E_INVAL || !param || strcmp(param, cases[i].param) != 0)
            fail_msg("%s: rc %d param %s (want %s)", cases[i].body, rc, param ? param : "(null)", cases[i].param);
        assert_null(lr.mixed);
    }
    struct cs_llama_request lr;
    assert_int_equal(parse("[1]", &lr, NULL), CLSPEC_E_FORMAT);
    assert_int_equal(parse("{\"prompt\":", &lr, NULL), CLSPEC_E_FORMAT);
}

/* an accumulator over a request parsed from body */
static struct cs_llama_acc *acc_for(const char *body, bool stream, struct cs_llama_request *lr)
{
    assert_int_equal(parse(body, lr, NULL), CLSPEC_OK);
    struct cs_llama_acc_params p = {.model = "m", .stream = stream, .return_tokens = lr->return_tokens,
                                    .n_probs = lr->n_probs, .n_prompt = 5, .n_predict = lr->n_predict,
                                    .n_ctx_slot = 256, .r = &lr->r, .repeat_last_n = 64,
                                    .prompt_text = "<s> Once", .prompt_len = 8,
                                    .response_fields = lr->response_fields};
    struct cs_llama_acc *a = NULL;
    assert_int_equal(cs_llama_acc_new(&p, &a), CLSPEC_OK);
    return a;
}

static char *token(struct cs_llama_acc *a, int32_t id, const char *text, const char *piece)
{
    struct cs_top_logprob top[2] = {{id, -0.5f, piece, strlen(piece)}, {id + 1, -1.5f, "\xff", 1}};
    struct cs_req_event ev = {.type = CS_EV_TOKEN, .text = text, .len = strlen(text), .token = id,
                              .logprob = -0.5f, .top = top, .n_top = 2};
    bool oom = true;
    char *s = cs_llama_acc_token(a, &ev, piece, strlen(piece), &oom);
    assert_false(oom);
    return s;
}

static json_t *final(struct cs_llama_acc *a, const char *reason, int draft_n)
{
    struct cs_req_usage u = {.prompt_tokens = 5, .completion_tokens = 3, .cached_tokens = 2, .prefill_ms = 3,
                             .decode_ms = 4, .draft_n = draft_n, .draft_accepted = draft_n / 2};
    char *s = cs_llama_acc_final(a, reason, &u);
    assert_non_null(s);
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    assert_non_null(o);
    return o;
}

static void test_whole_answer(void **state)
{
    (void)state;
    struct cs_llama_request lr;
    struct cs_llama_acc *a = acc_for("{\"prompt\":\"x\",\"n_predict\":3,\"n_probs\":2,\"return_tokens\":true,"
                                     "\"stop\":[\"END\",\"upon\"]}",
                                     false, &lr);
    assert_null(token(a, 10, " up", " up"));
    assert_null(token(a, 11, "", "on"));   /* held back: could be the stop word */
    assert_null(token(a, 12, "", " a"));
    json_t *o = final(a, "stop", 4);
    assert_string_equal(json_string_value(json_object_get(o, "content")), " up");
    assert_true(json_is_true(json_object_get(o, "stop")));
    assert_string_equal(json_string_value(json_object_get(o, "stop_type")), "word");
    assert_string_equal(json_string_value(json_object_get(o, "stopping_word")), "upon");
    assert_int_equal(json_array_size(json_object_get(o, "tokens")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "tokens_cached")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "tokens_evaluated")), 5);
    assert_string_equal(json_string_value(json_object_get(o, "prompt")), "<s> Once");
    assert_true(json_is_false(json_object_get(o, "truncated"))); /* 5 prompt tokens in, 5 used */
    json_t *t = json_object_get(o, "timings");
    assert_int_equal(json_integer_value(json_object_get(t, "prompt_n")), 3);
    assert_int_equal(json_integer_value(json_object_get(t, "predicted_n")), 3);
    assert_int_equal(json_integer_value(json_object_get(t, "draft_n")), 4);
    assert_int_equal(json_integer_value(json_object_get(t, "draft_n_accepted")), 2);
    json_t *cp = json_object_get(o, "completion_probabilities");
    assert_int_equal(json_array_size(cp), 3);
    json_t *e = json_array_get(cp, 0);
    assert_int_equal(json_integer_value(json_object_get(e, "id")), 10);
    assert_string_equal(json_string_value(json_object_get(e, "token")), " up");
    assert_int_equal(json_array_size(json_object_get(e, "bytes")), 3);
    json_t *top1 = json_array_get(json_object_get(e, "top_logprobs"), 1);
    assert_string_equal(json_string_value(json_object_get(top1, "token")), "\xEF\xBF\xBD"); /* invalid byte */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(top1, "bytes"), 0)), 255);
    json_t *gs = json_object_get(o, "generation_settings");
    assert_int_equal(json_integer_value(json_object_get(gs, "n_predict")), 3);
    assert_int_equal(json_integer_value(json_object_get(gs, "seed")), 7);
    json_decref(o);
    cs_llama_acc_free(a);
    cs_llama_request_free(&lr);

    /* the end-of-generation token ends with a token -1 event: eos; no drafts: no draft fields */
    a = acc_for("{\"prompt\":\"x\"}", false, &lr);
    assert_null(token(a, 10, " a", " a"));
    struct cs_req_event ev = {.type = CS_EV_TOKEN, .text = "", .len = 0, .token = -1};
    bool oom;
    assert_null(cs_llama_acc_token(a, &ev, NULL, 0, &oom));
    o = final(a, "stop", 0);
    assert_string_equal(json_string_value(json_object_get(o, "stop_type")), "eos");
    assert_string_equal(json_string_value(json_object_get(o, "stopping_word")), "");
    assert_int_equal(json_array_size(json_object_get(o, "tokens")), 0); /* no return_tokens */
    assert_null(json_object_get(json_object_get(o, "timings"), "draft_n"));
    assert_null(json_object_get(o, "completion_probabilities"));
    json_decref(o);
    o = final(a, "length", 0);
    assert_string_equal(json_string_value(json_object_get(o, "stop_type")), "limit");
    json_decref(o);
    struct cs_req_usage cut = {.prompt_tokens = 4, .completion_tokens = 1}; /* [slots] truncate_prompt kept 4 of 5 */
    char *cs = cs_llama_acc_final(a, "length", &cut);
    o = json_loads(cs, 0, NULL);
    free(cs);
    assert_true(json_is_true(json_object_get(o, "truncated")));
    json_decref(o);
    cs_llama_acc_free(a);
    cs_llama_request_free(&lr);

    /* response_fields: only the named paths, under their names */
    a = acc_for("{\"prompt\":\"x\",\"n_predict\":2,\"response_fields\":[\"content\",\"generation_settings/n_predict\","
                "\"nope/x\"]}",
                false, &lr);
    assert_null(token(a, 10, "hi", "hi"));
    o = final(a, "length", 0);
    assert_int_equal(json_object_size(o), 2);
    assert_string_equal(json_string_value(json_object_get(o, "content")), "hi");
    assert_int_equal(json_integer_value(json_object_get(o, "generation_settings/n_predict")), 2);
    json_decref(o);
    cs_llama_acc_free(a);
    cs_llama_request_free(&lr);
}

static void test_stream(void **state)
{
    (void)state;
    struct cs_llama_request lr;
    struct cs_llama_acc *a = acc_for("{\"prompt\":\"x\",\"n_probs\":1,\"stream\":true}", true, &lr);
    char *s = token(a, 10, " up", " up");
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    assert_string_equal(json_string_value(json_object_get(o, "content")), " up");
    assert_true(json_is_false(json_object_get(o, "stop")));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "tokens"), 0)), 10);
    assert_int_equal(json_integer_value(json_object_get(o, "tokens_predicted")), 1);
    assert_int_equal(json_array_size(json_object_get(o, "completion_probabilities")), 1);
    json_decref(o);
    /* text released at the end (token -1) still goes out, without a token; nothing at all: no event */
    struct cs_req_event ev = {.type = CS_EV_TOKEN, .text = "!", .len = 1, .token = -1};
    bool oom;
    s = cs_llama_acc_token(a, &ev, NULL, 0, &oom);
    o = json_loads(s, 0, NULL);
    free(s);
    assert_int_equal(json_array_size(json_object_get(o, "tokens")), 0);
    json_decref(o);
    ev.len = 0;
    assert_null(cs_llama_acc_token(a, &ev, NULL, 0, &oom));
    o = final(a, "stop", 0);
    assert_string_equal(json_string_value(json_object_get(o, "content")), "");
    assert_true(json_is_true(json_object_get(o, "stop")));
    assert_string_equal(json_string_value(json_object_get(o, "stop_type")), "eos");
    json_decref(o);
    cs_llama_acc_free(a);
    cs_llama_request_free(&lr);
}

static void test_errors_slots_props(void **state)
{
    (void)state;
    char *s = cs_llama_error_json(501, "no");
    assert_string_equal(s, "{\"error\":{\"code\":501,\"message\":\"no\",\"type\":\"not_supported_error\"}}");
    free(s);
    s = cs_llama_error_json(401, "key");
    assert_non_null(strstr(s, "authentication_error"));
    free(s);
    struct cs_slot_info sl[2] = {{.id = 0, .busy = true, .req_id = "req-1"}, {.id = 1}};
    s = cs_llama_slots_json(sl, 2, 128);
    json_t *a = json_loads(s, 0, NULL);
    free(s);
    assert_int_equal(json_array_size(a), 2);
    assert_true(json_is_true(json_object_get(json_array_get(a, 0), "is_processing")));
    assert_true(json_is_false(json_object_get(json_array_get(a, 1), "is_processing")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 1), "n_ctx")), 128);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 1), "id_task")), -1);
    json_decref(a);
    struct cs_api_defaults d = defaults();
    struct cs_llama_props p = {.model_name = "m", .model_path = "/x/m.gguf", .chat_template = "chatml",
                               .bos_text = "<s>", .eos_text = "</s>", .total_slots = 2, .n_ctx_slot = 256, .d = &d};
    s = cs_llama_props_json(&p);
    json_t *o = json_loads(s, 0, NULL);
    free(s);
    assert_int_equal(json_integer_value(json_object_get(o, "total_slots")), 2);
    json_t *dg = json_object_get(o, "default_generation_settings");
    assert_int_equal(json_integer_value(json_object_get(dg, "n_ctx")), 256);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(dg, "params"), "seed")), 7);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(dg, "params"), "n_predict")), 256);
    assert_string_equal(json_string_value(json_object_get(o, "model_path")), "/x/m.gguf");
    assert_true(json_is_null(json_object_get(o, "speculator")));
    json_decref(o);
    s = cs_llama_prompt_json("a\xff", 2);
    assert_string_equal(s, "{\"prompt\":\"a\xEF\xBF\xBD\"}");
    free(s);
}

static void test_batch_prompts(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int n; /* prompts, 0: not a batch */
    } cases[] = {
        {"{\"prompt\":[\"a\",\"b\"]}", 2},
        {"{\"prompt\":[[1,2],[3],\"c\",{\"prompt_string\":\"d\"}]}", 4},
        {"{\"prompt\":[\"a\",\"b\"],\"stream\":true}", 0}, /* streamed: one prompt */
        {"{\"prompt\":[1,2,3]}", 0},                           /* token ids */
        {"{\"prompt\":[1,\"a\",2]}", 0},                       /* one mixed prompt */
        {"{\"prompt\":[\"a\"]}", 0},
        {"{\"prompt\":\"a\"}", 0},
        {"{\"prompt\":[\"a\",true]}", 0},
        {"not json", 0},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(cases); i++) {
        json_t *root = NULL, *p = cs_llama_prompts(cases[i].body, strlen(cases[i].body), &root);
        if ((int)json_array_size(p) != cases[i].n || (cases[i].n == 0) != (p == NULL) || (p == NULL) != (root == NULL))
            fail_msg("%s: %zu prompts (want %d)", cases[i].body, json_array_size(p), cases[i].n);
        json_decref(p);
        json_decref(root);
    }
}

/* return_progress: prompt_progress added to a chunk, or /completion's own chunk */
static void test_progress_chunk(void **state)
{
    (void)state;
    struct cs_req_event ev = {.type = CS_EV_PROGRESS};
    ev.progress.total = 150;
    ev.progress.cache = 20;
    ev.progress.processed = 84;
    ev.progress.time_ms = 12.5;
    char *c = cs_llama_progress_chunk(strdup("{\"object\":\"chat.completion.chunk\",\"choices\":[]}"), &ev);
    json_t *o = json_loads(c, 0, NULL);
    assert_non_null(o);
    json_t *pp = json_object_get(o, "prompt_progress");
    assert_int_equal(json_integer_value(json_object_get(pp, "total")), 150);
    assert_int_equal(json_integer_value(json_object_get(pp, "cache")), 20);
    assert_int_equal(json_integer_value(json_object_get(pp, "processed")), 84);
    assert_true(json_real_value(json_object_get(pp, "time_ms")) == 12.5);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion.chunk");
    json_decref(o);
    free(c);
    c = cs_llama_progress_chunk(NULL, &ev);
    o = json_loads(c, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "content")), "");
    assert_true(json_is_false(json_object_get(o, "stop")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "prompt_progress"), "processed")), 84);
    json_decref(o);
    free(c);
    assert_null(cs_llama_progress_chunk(strdup("not json"), &ev));
    /* __verbose: the prompt added to an answer; none asked: the body as it was */
    c = cs_llama_add_verbose(strdup("{\"id\":\"x\"}"), "<s> Hi");
    o = json_loads(c, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "__verbose"), "prompt")), "<s> Hi");
    assert_string_equal(json_string_value(json_object_get(o, "id")), "x");
    json_decref(o);
    free(c);
    c = cs_llama_add_verbose(strdup("{\"id\":\"x\"}"), NULL);
    assert_string_equal(c, "{\"id\":\"x\"}");
    free(c);
    assert_null(cs_llama_add_verbose(NULL, "p"));
    /* spliced as text: a uint64 seed (beyond what a JSON parse keeps) stays exact */
    c = cs_llama_add_verbose(strdup("{\"seed\":18446744073709551615}"), "p");
    assert_string_equal(c, "{\"seed\":18446744073709551615,\"__verbose\":{\"prompt\":\"p\"}}");
    free(c);
    c = cs_llama_add_verbose(strdup("{}"), "p");
    assert_string_equal(c, "{\"__verbose\":{\"prompt\":\"p\"}}");
    free(c);
}

static void test_cors_allow(void **state)
{
    (void)state;
    const char *o = "http://a.example";
    assert_ptr_equal(cs_cors_allow("*", o), o); /* echoed, not "*" */
    assert_ptr_equal(cs_cors_allow("https://b.example, http://a.example", o), o);
    assert_ptr_equal(cs_cors_allow("http://a.example,https://b.example", o), o);
    assert_null(cs_cors_allow("http://a.example.evil", o)); /* exact match only */
    assert_null(cs_cors_allow("http://a.exampl", o));
    assert_null(cs_cors_allow("https://b.example", o));
    assert_null(cs_cors_allow("", o));
    assert_null(cs_cors_allow(NULL, o));
    assert_null(cs_cors_allow("*", NULL));
    /* the word localhost: the loopback hosts on any port, nothing that merely starts like one */
    static const char *const local[] = {"http://localhost", "http://localhost:8080", "http://127.0.0.1",
                                        "https://127.0.0.1:3000", "http://[::1]", "http://[::1]:3000"};
    for (size_t i = 0; i < CS_ARRAY_LEN(local); i++)
        assert_ptr_equal(cs_cors_allow("https://b.example localhost", local[i]), local[i]);
    static const char *const other[] = {"http://localhost.evil.com", "http://notlocalhost", "http://evil.com",
                                        "http://localhost:", "http://localhost:80x", "ftp://localhost"};
    for (size_t i = 0; i < CS_ARRAY_LEN(other); i++)
        assert_null(cs_cors_allow("localhost", other[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),       cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_whole_answer), cmocka_unit_test(test_stream),
        cmocka_unit_test(test_errors_slots_props), cmocka_unit_test(test_cors_allow),
        cmocka_unit_test(test_batch_prompts),       cmocka_unit_test(test_progress_chunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
