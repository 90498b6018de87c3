/* chatout.h: a chat answer shaped as OpenAI returns it: the text the model
 * writes goes through the reasoning split (src/text/reasoning.c) and the
 * tool-call parser (src/text/toolcall.c) and comes out as streamed delta
 * objects ({"content"}, {"reasoning_content"}, {"tool_calls": [{"index",
 * "id", "type": "function", "function": {"name", "arguments"}}]}) or as the
 * whole message. Call ids are "call_" + 9 letters and digits (Mistral's
 * templates want 9 alphanumerics back in the history). */
#ifndef CS_CHATOUT_H
#define CS_CHATOUT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "text/reasoning.h"
#include "text/toolcall.h"

struct cs_chatout_params {
    enum cs_reasoning_format reasoning;  /* none: content only */
    struct cs_reasoning_markers markers; /* the template's thinking markers */
    bool starts_open;                    /* the prompt ended inside an opened thinking block */
    enum cs_tool_format tools;           /* none: no tool calls are parsed */
    bool parallel;                       /* false: only the first tool call is kept */
};

struct cs_chatout;
int cs_chatout_new(const struct cs_chatout_params *p, struct cs_chatout **out, char *err, size_t errlen);
void cs_chatout_free(struct cs_chatout *c);

/* Feeds the next n bytes of the answer (final: it ends). *deltas: a new JSON
 * array of delta objects, in order (empty when everything is held back).
 * CLSPEC_E_NOMEM. */
int cs_chatout_feed(struct cs_chatout *c, const char *text, size_t n, bool final, json_t **deltas, char *err,
                    size_t errlen);
/* tool calls emitted so far (finish_reason "tool_calls" when > 0) */
int cs_chatout_n_calls(const struct cs_chatout *c);

/* The whole answer as a message object {"role": "assistant", "content",
 * "reasoning_content" (when there was thinking), "tool_calls" (when any;
 * content is then null if empty)}. *n_calls (optional): the calls. */
int cs_chatout_message(const struct cs_chatout_params *p, const char *text, size_t n, json_t **message, int *n_calls,
                       char *err, size_t errlen);

/* tool_choice "required" or naming a function (only; NULL: any of tools):
 * *grammar (malloc'd GBNF) forcing a call in the format the chat template
 * tmpl[0..tl) uses (toolgrammar.h), after the rest of the reasoning block
 * the prompt opened when think_close (its close marker) is given.
 * CLSPEC_E_INVAL naming what is missing (a template without a known
 * tool-call format, a schema json_schema.h refuses). */
int cs_chatout_force_grammar(const char *tmpl, size_t tl, const json_t *tools, const char *only, bool parallel,
                             const char *think_close, char **grammar, char *err, size_t errlen);

#endif
