/* toolcall.h: tool calls in model output, parsed as the common formats
 * write them, whole or incrementally while the text streams in:
 *
 *   hermes       <tool_call>{"name": N, "arguments": {...}}</tool_call>
 *                (Hermes 2/3, Qwen 2.5/3; several calls in a row)
 *   llama3       {"name": N, "parameters": {...}} as the whole answer (also
 *                "arguments"), or <|python_tag|> then such an object or code
 *                (code becomes a call of "python" with {"code": ...})
 *   mistral      [TOOL_CALLS][{"name": N, "arguments": {...}}, ...]
 *   qwen3-coder  <tool_call><function=N><parameter=P>V</parameter>...
 *                </function></tool_call> (V: JSON when it reads as JSON,
 *                else the text without its surrounding newlines)
 *   deepseek     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N
 *                ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *                (R1/V3; V3.1's N<｜tool▁sep｜>{...} form too)
 *   mistral      also the newer [TOOL_CALLS]N[ARGS]{...} (optionally
 *                [TOOL_CALLS]N[CALL_ID]id[ARGS]{...}), one marker per call
 *   functionary  v3.2: ">>>N\n{...}" segments; N "all" is content; the
 *                generation prompt ends in ">>>", so the text starts with N
 *   functionary-v3.1  <function=N>{...}</function>, or <|python_tag|> then
 *                code (a call of "python" with {"code": ...})
 *   command-r7b  <|START_ACTION|>[{"tool_call_id": "0", "tool_name": N,
 *                "parameters": {...}}, ...]<|END_ACTION|>; the
 *                <|START_RESPONSE|> / <|END_RESPONSE|> wrappers of its
 *                text are dropped
 *
 * Streaming follows OpenAI: content deltas, then per call one start (index,
 * name) and argument fragments whose concatenation is the arguments' JSON
 * text. Text that could be the start of a tool-call marker is held back
 * until it is known not to be one; a call still open when the text ends
 * comes back as content (the model stopped mid-call). */
#ifndef CS_TOOLCALL_H
#define CS_TOOLCALL_H

#include <stdbool.h>
#include <stddef.h>

enum cs_tool_format {
    CS_TOOL_NONE = 0, /* no tool calls: everything is content */
    CS_TOOL_HERMES,
    CS_TOOL_LLAMA3,
    CS_TOOL_MISTRAL,
    CS_TOOL_QWEN3_CODER,
    CS_TOOL_DEEPSEEK,
    CS_TOOL_FUNCTIONARY,
    CS_TOOL_FUNCTIONARY_V31,
    CS_TOOL_COMMAND_R7B,
    CS_TOOL_N_FORMATS
};

/* "none", "hermes", "llama3", "mistral", "qwen3-coder", "deepseek", "functionary",
 * "functionary-v3.1", "command-r7b"; "?" */
const char *cs_tool_format_name(enum cs_tool_format f);
/* CLSPEC_E_INVAL naming the valid names for an unknown one */
int cs_tool_format_parse(const char *name, enum cs_tool_format *out, char *err, size_t errlen);
/* The format a chat template's tool calls take, by its markers
 * ("<|START_ACTION|>" -> command-r7b, "<function=" with "<parameter=" ->
 * qwen3-coder, "<function=" alone -> functionary-v3.1, "<tool_call>" -> hermes,
 * "[TOOL_CALLS]" -> mistral, "tool▁calls▁begin" -> deepseek, ">>>" ->
 * functionary, "<|python_tag|>" or "\"parameters\"" with "<|eot_id|>" ->
 * llama3); CS_TOOL_NONE when none is found or tmpl is NULL. */
enum cs_tool_format cs_tool_format_detect(const char *tmpl, size_t len);

enum cs_tool_delta_kind {
    CS_TD_CONTENT,    /* text: a piece of the answer */
    CS_TD_CALL_START, /* index, text: the function name */
    CS_TD_CALL_ARGS   /* index, text: a fragment of the arguments' JSON */
};
struct cs_tool_delta {
    enum cs_tool_delta_kind kind;
    int index;  /* the call's index in the answer, from 0 */
    char *text; /* malloc'd, NUL-terminated */
};

struct cs_toolcall_stream;

/* A parser for one answer. *out: free with cs_toolcall_stream_free. */
int cs_toolcall_stream_new(enum cs_tool_format f, struct cs_toolcall_stream **out, char *err, size_t errlen);
void cs_toolcall_stream_free(struct cs_toolcall_stream *s);

/* Feeds the next n bytes of the answer (final: it ends here, flush what is
 * held back). *ev: malloc'd array of *n_ev deltas (free with
 * cs_tool_deltas_free; NULL when none). Consecutive deltas of one kind and
 * call may be merged. CLSPEC_E_NOMEM. */
int cs_toolcall_stream_feed(struct cs_toolcall_stream *s, const char *text, size_t n, bool final,
                            struct cs_tool_delta **ev, size_t *n_ev, char *err, size_t errlen);
void cs_tool_deltas_free(struct cs_tool_delta *ev, size_t n);

struct cs_tool_call {
    char *name;      /* malloc'd */
    char *arguments; /* malloc'd JSON text (an object) */
};

/* The whole answer at once: *content (malloc'd, the text outside the calls),
 * *calls (malloc'd array of *n_calls; free with cs_tool_calls_free). */
int cs_toolcall_parse(enum cs_tool_format f, const char *text, size_t n, char **content,
                      struct cs_tool_call **calls, size_t *n_calls, char *err, size_t errlen);
void cs_tool_calls_free(struct cs_tool_call *c, size_t n);

#endif
