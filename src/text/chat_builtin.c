/* chat_builtin.c: llama.cpp's built-in chat template names (llama-server's
 * --chat-template NAME) that are not one of chat.h's marker families: each
 * is a Jinja text of our own writing that renders the format llama.cpp
 * documents for that name (system/user/assistant roles; the text between
 * the markers as llama.cpp treats it: trimmed where it trims). The caller
 * installs the text as the model's template and renders it as CS_CHAT_JINJA. */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "base/common.h"
#include "text/chat.h"

static const struct {
    const char *name;
    const char *text;
} builtins[] = {
    /* (newlines are written inside expressions: trim_blocks would eat one after a block tag) */
    /* CohereForAI/c4ai-command-r-plus */
    {"command-r",
     "{% for m in messages %}"
     "{% set tag = {'system': 'SYSTEM', 'user': 'USER', 'assistant': 'CHATBOT'}[m.role] %}"
     "<|START_OF_TURN_TOKEN|><|{{ tag }}_TOKEN|>{{ m.content | trim }}<|END_OF_TURN_TOKEN|>"
     "{% endfor %}"
     "{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"},
    /* eachadea/vicuna-13b-1.1: the system text, a blank line, then USER:/ASSISTANT: lines */
    {"vicuna",
     "{% for m in messages %}"
     "{% if m.role == 'system' %}{{ m.content ~ '\\n\\n' }}"
     "{% elif m.role == 'user' %}{{ 'USER: ' ~ m.content ~ '\\n' }}"
     "{% else %}{{ 'ASSISTANT: ' ~ m.content ~ '</s>\\n' }}{% endif %}"
     "{% endfor %}"
     "{% if add_generation_prompt %}ASSISTANT:{% endif %}"},
    /* the Orca-Vicuna variant: a SYSTEM: line */
    {"vicuna-orca",
     "{% for m in messages %}"
     "{% if m.role == 'system' %}{{ 'SYSTEM: ' ~ m.content ~ '\\n' }}"
     "{% elif m.role == 'user' %}{{ 'USER: ' ~ m.content ~ '\\n' }}"
     "{% else %}{{ 'ASSISTANT: ' ~ m.content ~ '</s>\\n' }}{% endif %}"
     "{% endfor %}"
     "{% if add_generation_prompt %}ASSISTANT:{% endif %}"},
    /* microsoft/Phi-3 */
    {"phi3",
     "{% for m in messages %}{{ '<|' ~ m.role ~ '|>\\n' ~ m.content ~ '<|end|>\\n' }}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"},
    /* microsoft/phi-4: chatml with <|im_sep|> */
    {"phi4",
     "{% for m in messages %}<|im_start|>{{ m.role }}<|im_sep|>{{ m.content }}<|im_end|>{% endfor %}"
     "{% if add_generation_prompt %}<|im_start|>assistant<|im_sep|>{% endif %}"},
    /* tiiuae/Falcon3 */
    {"falcon3",
     "{% for m in messages %}{{ '<|' ~ m.role ~ '|>\\n' ~ m.content ~ '\\n' }}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"},
    /* deepseek-ai/deepseek-coder-33b-instruct */
    {"deepseek",
     "{% for m in messages %}"
     "{% if m.role == 'system' %}{{ m.content }}"
     "{% elif m.role == 'user' %}{{ '### Instruction:\\n' ~ m.content ~ '\\n' }}"
     "{% else %}{{ '### Response:\\n' ~ m.content ~ '\\n<|EOT|>\\n' }}{% endif %}"
     "{% endfor %}"
     "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"},
    /* openchat/openchat-3.5-0106 */
    {"openchat",
     "{% for m in messages %}"
     "{% if m.role == 'system' %}{{ m.content }}<|end_of_turn|>"
     "{% else %}GPT4 Correct {{ m.role | capitalize }}: {{ m.content }}<|end_of_turn|>{% endif %}"
     "{% endfor %}"
     "{% if add_generation_prompt %}GPT4 Correct Assistant:{% endif %}"},
    /* mlabonne/AlphaMonarch-7B: <s> before every message but the first */
    {"monarch",
     "{% for m in messages %}{% if not loop.first %}<s>{% endif %}{{ m.role ~ '\\n' ~ m.content ~ '</s>\\n' }}"
     "{% endfor %}"
     "{% if add_generation_prompt %}{{ '<s>assistant\\n' }}{% endif %}"},
};

const char *cs_chat_builtin_template(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(builtins); i++)
        if (strcasecmp(name, builtins[i].name) == 0)
            return builtins[i].text;
    return NULL;
}
