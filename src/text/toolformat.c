/* toolformat.c: the tool-call formats by name, and which one a chat
 * template's text uses (toolcall.h declares them). */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "text/toolcall.h"
#include "base/common.h"

static const char *const format_names[CS_TOOL_N_FORMATS] = {
    "none", "hermes", "llama3", "mistral", "qwen3-coder", "deepseek", "functionary", "functionary-v3.1", "command-r7b",
};

const char *cs_tool_format_name(enum cs_tool_format f)
{
    return (int)f >= 0 && f < CS_TOOL_N_FORMATS ? format_names[f] : "?";
}

int cs_tool_format_parse(const char *name, enum cs_tool_format *out, char *err, size_t errlen)
{
    for (int i = 0; name && i < CS_TOOL_N_FORMATS; i++)
        if (!strcmp(name, format_names[i])) {
            *out = (enum cs_tool_format)i;
            return CLSPEC_OK;
        }
    return cs_err(err, errlen, CLSPEC_E_INVAL,
                  "tool-call format \"%s\": unknown (expected none, hermes, llama3, mistral, qwen3-coder, deepseek, "
                  "functionary, functionary-v3.1 or command-r7b)",
                  name ? name : "(null)");
}

static bool has(const char *s, size_t n, const char *needle)
{
    return s && memmem(s, n, needle, strlen(needle)) != NULL;
}

enum cs_tool_format cs_tool_format_detect(const char *t, size_t n)
{
    if (has(t, n, "<|START_ACTION|>"))
        return CS_TOOL_COMMAND_R7B;
    if (has(t, n, "<function=") && has(t, n, "<parameter="))
        return CS_TOOL_QWEN3_CODER;
    if (has(t, n, "<function="))
        return CS_TOOL_FUNCTIONARY_V31;
    if (has(t, n, "<tool_call>"))
        return CS_TOOL_HERMES;
    if (has(t, n, "[TOOL_CALLS]"))
        return CS_TOOL_MISTRAL;
    if (has(t, n, "tool\xe2\x96\x81" "calls\xe2\x96\x81" "begin"))
        return CS_TOOL_DEEPSEEK;
    if (has(t, n, ">>>"))
        return CS_TOOL_FUNCTIONARY;
    if (has(t, n, "<|python_tag|>") || (has(t, n, "\"parameters\"") && has(t, n, "<|eot_id|>")))
        return CS_TOOL_LLAMA3;
    return CS_TOOL_NONE;
}
