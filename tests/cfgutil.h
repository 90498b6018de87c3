/* cfgutil: the helpers of clspecd's configuration tests (tests/test-config.c,
 * tests/test-config-run.c): INI text written to a fresh file and loaded, the
 * expected refusal with its file:line message, paths of the source tree's
 * fixtures. They fail the running cmocka test on an unexpected result. */
#ifndef CS_TESTS_CFGUTIL_H
#define CS_TESTS_CFGUTIL_H

#include <stddef.h>

#include "daemon/cfg.h"

/* the smallest valid file: a model path */
#define MODEL "[model]\npath = /m.gguf\n"

/* A fresh temporary .ini file holding len bytes of text; its malloc'd path. */
char *cfu_write_tmp(const char *text, size_t len);
/* Loads text from a fresh file; *path_out (if given) gets its malloc'd path. */
int cfu_load_text(const char *text, struct cs_config **c, char *err, size_t errlen, char **path_out);
/* Loads text, which must be accepted. */
struct cs_config *cfu_load_ok(const char *text);
/* Asserts text is refused with "<file>:<line>: " + a message containing each
 * of the given substrings (NULL-terminated). */
void cfu_expect_err(const char *text, int line, ...);
/* CS_TOP_SRCDIR/rel (malloc'd); CS_TOP_SRCDIR comes from the program's CFLAGS. */
char *cfu_fixture(const char *rel);

#endif
