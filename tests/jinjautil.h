/* jinjautil: the helpers of the Jinja chat-template tests
 * (tests/test-chat-jinja.c, tests/test-chat-jinja-api.c): fixtures of
 * tests/chat/ read whole, conversations loaded as JSON, a template rendered
 * on a conversation. They fail the running cmocka test when a fixture cannot
 * be read. CS_CHAT_FIXTURES (the fixtures' directory) comes from the
 * program's CPPFLAGS. */
#ifndef CS_TESTS_JINJAUTIL_H
#define CS_TESTS_JINJAUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#ifndef CS_CHAT_FIXTURES
#define CS_CHAT_FIXTURES "tests/chat"
#endif

#define NOW 1700000000 /* 2023-11-14 UTC: "Today Date: 14 Nov 2023" */

/* The fixture CS_CHAT_FIXTURES/name, NUL-terminated (malloc'd); *len (if
 * given) gets its length. */
char *cju_slurp(const char *name, size_t *len);
/* The fixture conversation name as JSON (a new reference). */
json_t *cju_load_conv(const char *name);
/* Renders template tname on conversation cname (messages, tools,
 * add_generation_prompt; every other key but bos/eos is a template kwarg)
 * at NOW; the cs_chat_render_json code, *out malloc'd when it is CLSPEC_OK. */
int cju_render_case(const char *tname, const char *cname, const char *bos, const char *eos, bool skip_bos,
                    char **out, bool *starts_bos, char *err, size_t errlen);

#endif
