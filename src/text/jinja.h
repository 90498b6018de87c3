/* jinja.h: a Jinja interpreter for chat templates (the subset published
 * tokenizer.chat_template strings use), with the environment transformers'
 * apply_chat_template sets up: trim_blocks and lstrip_blocks on, loop
 * controls (break/continue), {% generation %} blocks, the globals
 * raise_exception(msg), strftime_now(fmt), range, namespace, dict, and its
 * tojson filter (json.dumps with ensure_ascii=False, indent, separators,
 * sort_keys).
 *
 * Values are Jinja's: undefined (lenient: prints as "", false, iterates as
 * empty; an attribute of it is an error), none, bool, int (64-bit), float,
 * string (UTF-8; length and slicing count code points), list, dict (ordered
 * by insertion), callables (macros, builtins, bound methods).
 * One leniency jinja2 lacks, as llama.cpp's interpreter has it: string +
 * undefined (either order) is the string (firefunction-v2 adds an undefined
 * `functions`); jinja2 raises there. string + none still fails, as in
 * jinja2 (chat_jinja.c retries such templates with "" for null contents).
 *
 * Use: cs_jinja_compile once per template (the lexer and parser run there,
 * syntax errors name the template line), cs_jinja_render per prompt with
 * the variables in a JSON object (messages, tools, add_generation_prompt,
 * bos_token, ...; runtime errors name the line too, raise_exception's
 * message is passed through). A compiled template is read-only while
 * rendering, so threads may render one template concurrently. */
#ifndef CS_JINJA_H
#define CS_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct cs_jinja;

/* Compiles src (len bytes, need not be NUL-terminated). *out: free it with
 * cs_jinja_free. CLSPEC_E_INVAL with "template line N: ..." on a syntax
 * error, CLSPEC_E_NOMEM. */
int cs_jinja_compile(const char *src, size_t len, struct cs_jinja **out, char *err, size_t errlen);

void cs_jinja_free(struct cs_jinja *t);

/* Renders t with the variables of vars (a JSON object, or NULL for none).
 * now: the Unix time strftime_now formats (UTC), 0 = the current time.
 * *out: malloc'd NUL-terminated text (free it), *out_len its length
 * (optional). CLSPEC_E_INVAL with "template line N: ..." on an error at run
 * time (raise_exception, an unknown filter, a type error, ...), including
 * the limits that keep a hostile template bounded (memory 256 MiB, output 64
 * MiB, range() 1M items, macro depth 64). */
int cs_jinja_render(const struct cs_jinja *t, const json_t *vars, int64_t now, char **out, size_t *out_len,
                    char *err, size_t errlen);

#endif
