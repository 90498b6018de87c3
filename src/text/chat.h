/* chat.h: chat templates. A GGUF's tokenizer.chat_template runs as Jinja
 * (CS_CHAT_JINJA, chat_jinja.c on the interpreter of jinja.h) with OpenAI
 * messages, tools and template kwargs (cs_chat_render_json); that is what
 * cs_chat_select picks when the template compiles. The marker families
 * below are the fallback (a template that does not compile, no template)
 * and what [model] chat_template = NAME forces: recognise the family of a
 * template by its markers and render {role, content} messages into the
 * exact prompt text that family's template produces.
 * The caller owns the messages; cs_chat_render returns a malloc'd string.
 *
 * Families (rendered text for system S, user U, assistant A; "bos"/"eos" are
 * the texts passed in cs_chat_params, or the family's default when NULL):
 *   plain      "System: S\nUser: U\nAssistant: A\n" (chat_template = plain);
 *              generation prompt "Assistant:". No BOS in the text.
 *   chatml     "<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message (Qwen, Hermes,
 *              ...); generation prompt "<|im_start|>assistant\n". No BOS.
 *              Template-specific defaults (Qwen2.5's default system prompt,
 *              Qwen3's <think> handling, tools) are not reproduced.
 *   llama2     Llama-2-chat: "bos[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A eos"
 *              then "bos[INST] U [/INST]" (BOS before every user turn; the
 *              system block folded into the first user turn; user content with
 *              the block and assistant content whitespace-trimmed).
 *   llama3     Llama-3-Instruct: bos, then
 *              "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>"
 *              with CONTENT trimmed; generation prompt
 *              "<|start_header_id|>assistant<|end_header_id|>\n\n".
 *   llama3.1   Llama-3.1/3.2/3.3-Instruct: as llama3, but always opens with a
 *              system turn "Cutting Knowledge Date: December 2023\nToday Date:
 *              26 Jul 2024\n\n" + S(trimmed, may be empty) (the template's date
 *              when none is passed in; fixed so that prompts stay cacheable).
 *              Tool calling is not rendered.
 *   mistral    Mistral-7B-Instruct v0.1/v0.2 ("v1"): bos, " [INST] S\n\nU [/INST]",
 *              " A" + eos, " [INST] U [/INST]" (system folded into the first user turn).
 *   mistral-v3 v0.3 / Large-2407: bos, "[INST] U[/INST]", " A"(trimmed) + eos; the
 *              system text goes in front of the LAST user turn ("S\n\nU"), and is
 *              dropped when the conversation ends with an assistant turn (as
 *              the template does).
 *   mistral-tekken Nemo-2407: like mistral-v3 without the spaces:
 *              "[INST]U[/INST]A" + eos.
 *   zephyr     "<|ROLE|>\nCONTENT" + eos + "\n" per message; generation prompt
 *              "<|assistant|>\n". No BOS.
 *   gemma      Gemma 2/3-it: bos, "<start_of_turn>user\nS\n\nU<end_of_turn>\n",
 *              "<start_of_turn>model\nA<end_of_turn>\n" (contents trimmed, system
 *              folded into the first user turn); generation prompt
 *              "<start_of_turn>model\n".
 *
 * Roles are "system", "user", "assistant" (anything else: CLSPEC_E_INVAL).
 * Order policy: plain, chatml, llama3(.1) and zephyr render any order (their
 * templates do). llama2, mistral* and gemma take an optional first system
 * message, then user/assistant strictly alternating starting with user, at
 * least one user message (their templates raise_exception otherwise); a
 * violation is CLSPEC_E_INVAL naming the message index. llama2 and mistral*
 * have no generation prompt (a user turn already ends in [/INST]).
 *
 * BOS: the templates of llama2, llama3, mistral* and gemma start with
 * bos_token. cs_chat_render reports whether the text starts with the BOS text
 * (*starts_with_bos); pass skip_leading_bos to leave that first one out and
 * let cs_tokenize(add_special=true) add the BOS token instead (later BOS
 * texts, e.g. llama2's per-turn ones, stay). Either way tokenize with
 * parse_special=true so markers such as <|im_start|> become their ids. */
#ifndef CS_CHAT_H
#define CS_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "clspec/clspec.h"

enum cs_chat_family {
    CS_CHAT_PLAIN = 0,
    CS_CHAT_CHATML,
    CS_CHAT_LLAMA2,
    CS_CHAT_LLAMA3,
    CS_CHAT_LLAMA31,
    CS_CHAT_MISTRAL,
    CS_CHAT_MISTRAL_V3,
    CS_CHAT_MISTRAL_TEKKEN,
    CS_CHAT_ZEPHYR,
    CS_CHAT_GEMMA,
    CS_CHAT_N_FAMILIES, /* the marker families above */
    /* not a marker family: the GGUF's own tokenizer.chat_template, run by
     * the Jinja interpreter (chat_jinja.c); name "jinja" */
    CS_CHAT_JINJA = 64
};

/* "plain", "chatml", "llama2", "llama3", "llama3.1", "mistral", "mistral-v3",
 * "mistral-tekken", "zephyr", "gemma", "jinja"; "?" when out of range. */
const char *cs_chat_family_name(enum cs_chat_family f);

/* Parses a family name (case-insensitive; also "qwen" = chatml, "llama-2",
 * "llama-3", "llama-3.1", and llama.cpp's names "mistral-v1" = mistral,
 * "mistral-v3-tekken" = mistral-tekken). CLSPEC_E_INVAL, with the list of valid names in err, otherwise. */
int cs_chat_family_parse(const char *name, enum cs_chat_family *out, char *err, size_t errlen);

/* llama.cpp's built-in template names that are no marker family above
 * ("command-r", "vicuna", "vicuna-orca", "phi3", "phi4", "falcon3",
 * "deepseek", "openchat", "monarch"; case-insensitive): a Jinja text
 * (static) rendering that format, to install as the model's template
 * (clspec_set_chat_template) and render as CS_CHAT_JINJA. NULL for any
 * other name. */
const char *cs_chat_builtin_template(const char *name);

/* Recognises a Jinja template by its markers (first match wins):
 *   "<|im_start|>" without phi-4's "<|im_sep|>"    -> chatml
 *   "<|start_header_id|>" and "<|end_header_id|>" -> llama3, or llama3.1
 *                                   when "Cutting Knowledge Date" is there too
 *   "<start_of_turn>"                             -> gemma
 *   "[INST]" and "<<SYS>>"                        -> llama2
 *   "[INST]" followed by a quote ("[INST]\"")     -> mistral-tekken
 *   "[/INST]" preceded by a quote ("\"[/INST]")   -> mistral-v3
 *   "[INST]" otherwise                            -> mistral
 *   "<|user|>" and "<|assistant|>", no "<|end|>"  -> zephyr
 * NULL, empty and unrecognised templates give CS_CHAT_PLAIN (the documented
 * fallback: plain text works with any vocabulary, while another family's
 * markers would be tokenized as ordinary text). *known (optional) is set to
 * whether a family was recognised. tmpl need not be NUL-terminated. */
enum cs_chat_family cs_chat_detect(const char *tmpl, size_t len, bool *known);

/* The family for a model: the configured name when given (NULL, "" and
 * "auto" mean none), else CS_CHAT_JINJA when the model has a chat template
 * tmpl (len bytes, clspec_chat_template) that the Jinja interpreter
 * compiles, else detection on it by markers (the fallback), and for a
 * model without a template (NULL) chatml, as llama-server falls back to
 * (its markers are then tokenized as ordinary text). *known (optional): the template runs as Jinja, was recognised or
 * a name configured. CLSPEC_E_INVAL for an unknown configured name, and for
 * "jinja" configured on a model without a template or with one that does
 * not compile (the message names the template line). */
int cs_chat_select(const char *tmpl, size_t len, const char *configured, enum cs_chat_family *out, bool *known,
                   char *err, size_t errlen);

/* The text that ends an assistant turn in this family, for use as a stop
 * string (the tokenizer usually stops on the EOG token already):
 * "<|im_end|>", "<|eot_id|>", "<end_of_turn>", the eos text, or for plain
 * "\nUser:". eos as in cs_chat_params (NULL: the family's default). */
const char *cs_chat_stop(enum cs_chat_family f, const char *eos);

struct cs_chat_msg {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8, NUL-terminated */
};

struct cs_chat_params {
    enum cs_chat_family family;
    bool add_generation_prompt; /* end with the assistant turn's opening */
    const char *bos;            /* bos_token text; NULL: "<s>" (llama2, mistral*),
                                 * "<|begin_of_text|>" (llama3), "<bos>" (gemma) */
    const char *eos;            /* eos_token text; NULL: "</s>" */
    bool skip_leading_bos;      /* leave out the template's first bos_token */
    bool continue_final;        /* a final assistant message is continued (llama-server's prefill_assistant,
                                 * transformers' continue_final_message): the messages before it render with
                                 * the generation prompt, then its text follows, its turn left open (content
                                 * parts joined by a blank line) */
    /* CS_CHAT_JINJA only (the marker families ignore them): */
    const char *jinja;          /* the template text (jinja_len bytes) */
    size_t jinja_len;
    const json_t *tools;        /* OpenAI "tools" array passed as `tools` (NULL or []: left undefined) */
    const json_t *kwargs;       /* extra template variables (an object, e.g. {"enable_thinking": false}) */
    int64_t now;                /* Unix time strftime_now formats (UTC); 0 = now */
};

/* Renders n >= 1 messages. *out: malloc'd NUL-terminated text (free it),
 * *out_len its length (optional), *starts_with_bos (optional) whether it
 * begins with the BOS text. Errors: CLSPEC_E_INVAL (bad role, NULL content,
 * order not allowed by the family, no messages), CLSPEC_E_NOMEM. */
int cs_chat_render(const struct cs_chat_params *p, const struct cs_chat_msg *msgs, size_t n, char **out,
                   size_t *out_len, bool *starts_with_bos, char *err, size_t errlen);

/* Renders and tokenizes in one step through the engine door (e's
 * vocabulary), as llama-server does: continue_final on (a final assistant
 * message is continued), and the BOS rule applied once: bos/eos texts are the
 * vocabulary's own (none when the vocabulary has no such token);
 * a text that starts with the BOS text is tokenized without add_special,
 * otherwise with it (the vocabulary's add_bos decides); parse_special is
 * always on, so markers become their control tokens. *ids: malloc'd (free
 * it), *n_ids its length; *text (optional): the rendered text, malloc'd.
 * Errors as cs_chat_render and cs_tokenize. */
int cs_chat_tokenize(const clspec_engine *e, enum cs_chat_family f, const struct cs_chat_msg *msgs, size_t n,
                     bool add_generation_prompt, int32_t **ids, size_t *n_ids, char **text, char *err,
                     size_t errlen);

/* Renders an OpenAI message list (a JSON array of objects with role,
 * content (a string, null, or an array of parts {"type":"text","text":...}),
 * and for the Jinja path anything else the template reads: tool_calls,
 * tool_call_id, name, reasoning_content). CS_CHAT_JINJA runs p->jinja with
 * the variables messages, add_generation_prompt, bos_token, eos_token,
 * tools (when non-empty) and the p->kwargs (which cannot replace those);
 * a marker family takes role system/user/assistant with text content only
 * (CLSPEC_E_INVAL naming the message otherwise). Output and BOS as
 * cs_chat_render: *starts_with_bos when the text begins with the BOS text
 * (p->bos; none when NULL or empty for Jinja), which skip_leading_bos
 * removes. Errors: CLSPEC_E_INVAL (bad messages, template errors with
 * "template line N: ..."), CLSPEC_E_NOMEM. */
int cs_chat_render_json(const struct cs_chat_params *p, const json_t *messages, char **out, size_t *out_len,
                        bool *starts_with_bos, char *err, size_t errlen);

/* cs_chat_tokenize for an OpenAI message list with tools and template
 * kwargs (either may be NULL); CS_CHAT_JINJA renders e's
 * clspec_chat_template. */
int cs_chat_tokenize_json(const clspec_engine *e, enum cs_chat_family f, const json_t *messages,
                          const json_t *tools, const json_t *kwargs, bool add_generation_prompt, int32_t **ids,
                          size_t *n_ids, char **text, char *err, size_t errlen);

/* The separator put between two consecutive text parts of a message's
 * content, as llama-server joins them: a line break, or a blank line in the
 * assistant message that continue_final_message continues (its last). */
const char *cs_chat_part_sep(bool continued);

struct cs_strbuf;
/* Appends the text parts of content (an array of {"type": "text", "text":
 * ...}) to b, cs_chat_part_sep(continued) between two. True when every part
 * is such a text part; false at the first one that is not, with its index
 * in *bad (may be NULL), b then holding the parts before it. */
bool cs_chat_join_text_parts(const json_t *content, bool continued, struct cs_strbuf *b, size_t *bad);

#endif
