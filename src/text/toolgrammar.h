/* toolgrammar.h: a GBNF grammar (grammar.h's format) that forces a
 * well-formed tool call in the format a chat template uses (toolcall.h):
 * the format's wrapper around the JSON-Schema grammar (json_schema.h) of
 * each allowed tool's parameters, the name restricted to the allowed names.
 * It is what OpenAI's tool_choice "required" or a named function asks for.
 *
 *   hermes        <tool_call>\n{"name": N, "arguments": A}\n</tool_call>
 *                 (parallel: more, each on its own line)
 *   llama3        {"name": N, "parameters": A} (always exactly one call)
 *   mistral       [TOOL_CALLS][{"name": N, "arguments": A}, ...], or when
 *                 the template writes [ARGS]: [TOOL_CALLS]N[ARGS]A ...
 *   qwen3-coder   <tool_call>\n<function=N>\n<parameter=P>\nV\n</parameter>\n
 *                 ...</function>\n</tool_call>: the parameters in their
 *                 declared order, the required ones always, V the JSON value
 *                 of P's schema (the parser reads JSON values as JSON)
 *   deepseek      <｜tool▁calls▁begin｜> then per call (R1/V3, when the
 *                 template writes ```json) <｜tool▁call▁begin｜>function
 *                 <｜tool▁sep｜>N\n```json\nA\n```<｜tool▁call▁end｜>, or
 *                 (V3.1) <｜tool▁call▁begin｜>N<｜tool▁sep｜>A<｜tool▁call▁end｜>;
 *                 then <｜tool▁calls▁end｜>
 *   functionary   N\nA, more as >>>N\nA (the prompt ends in ">>>")
 *   functionary-v3.1  <function=N>A</function> ...
 *   command-r7b   <|START_ACTION|>[{"tool_call_id": "0", "tool_name": N,
 *                 "parameters": A}, ...]<|END_ACTION|>
 *
 * A: the arguments object of N's "parameters" schema (a tool without one,
 * or whose schema declares no properties, takes {}). Without parallel
 * calls exactly one call is allowed. The call is the whole answer: nothing
 * after it, and before it only the rest of a reasoning block the prompt
 * opened (think_close: any text without that marker, the marker, up to 4
 * blanks or line breaks; functionary: none, the name follows). */
#ifndef CS_TOOLGRAMMAR_H
#define CS_TOOLGRAMMAR_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "text/toolcall.h"

struct cs_tool_grammar_params {
    enum cs_tool_format format; /* the template's (cs_tool_format_detect) */
    const json_t *tools;        /* OpenAI "tools": [{"type": "function", "function": {"name", "parameters"}}] */
    const char *only;           /* the one function allowed (tool_choice naming it), NULL: any of tools */
    bool parallel;              /* several calls allowed (parallel_tool_calls) */
    const char *tmpl;           /* the chat template (picks a format's variant); NULL: the first form above */
    size_t tmpl_len;
    const char *think_close;    /* the prompt ended inside a reasoning block this marker closes ("</think>"); NULL: none */
};

/* *out: GBNF (malloc'd, NUL-terminated, *len bytes, start rule "root").
 * CLSPEC_E_INVAL with a message for: no known format, no tools, a name not
 * among the tools, a parameters schema json_schema.h refuses (naming the
 * tool). */
int cs_tool_grammar(const struct cs_tool_grammar_params *p, char **out, size_t *len, char *err, size_t errlen);

#endif
