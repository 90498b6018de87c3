/* reasoning.h: the thinking of reasoning models (<think>...</think>, or a
 * template's own markers) separated from the answer, whole or streamed, as
 * llama-server's reasoning_format does:
 *   none             everything stays in the content;
 *   deepseek         the thoughts go to reasoning_content, the content is
 *                    the answer after the closing marker (its leading
 *                    whitespace dropped); "auto" means deepseek;
 *   deepseek-legacy  the content keeps everything, tags included, and the
 *                    thoughts are also given as reasoning_content.
 * Only a block at the start of the answer (after whitespace) is thinking;
 * when the prompt already opened it (DeepSeek R1's generation prompt ends in
 * "<think>\n"), the answer starts inside it. A block never closed is all
 * thinking (the model ran out of tokens while thinking). */
#ifndef CS_REASONING_H
#define CS_REASONING_H

#include <stdbool.h>
#include <stddef.h>

enum cs_reasoning_format { CS_REASONING_NONE = 0, CS_REASONING_DEEPSEEK, CS_REASONING_DEEPSEEK_LEGACY };

/* "none", "deepseek", "deepseek-legacy", and "auto" (= deepseek); CLSPEC_E_INVAL naming them otherwise */
int cs_reasoning_format_parse(const char *name, enum cs_reasoning_format *out, char *err, size_t errlen);

struct cs_reasoning_markers {
    const char *open, *close; /* static strings */
};
/* The markers a chat template uses: Command R7B's <|START_THINKING|> /
 * <|END_THINKING|>, otherwise <think> / </think> (also for NULL). */
struct cs_reasoning_markers cs_reasoning_markers_detect(const char *tmpl, size_t len);
/* Whether a rendered prompt ends inside an opened thinking block (its last
 * non-whitespace text is the open marker). */
bool cs_reasoning_starts_open(const char *prompt, size_t len, struct cs_reasoning_markers m);

enum cs_reasoning_kind { CS_RD_CONTENT, CS_RD_REASONING };
struct cs_reasoning_delta {
    enum cs_reasoning_kind kind;
    char *text; /* malloc'd */
};

struct cs_reasoning_stream;
int cs_reasoning_stream_new(enum cs_reasoning_format f, struct cs_reasoning_markers m, bool starts_open,
                            struct cs_reasoning_stream **out, char *err, size_t errlen);
void cs_reasoning_stream_free(struct cs_reasoning_stream *s);
/* Feeds the next n bytes (final: the answer ends). *ev: malloc'd deltas (free
 * with cs_reasoning_deltas_free), consecutive ones of a kind merged. Text
 * that may be the start of a marker is held back until decided. */
int cs_reasoning_stream_feed(struct cs_reasoning_stream *s, const char *text, size_t n, bool final,
                             struct cs_reasoning_delta **ev, size_t *n_ev, char *err, size_t errlen);
void cs_reasoning_deltas_free(struct cs_reasoning_delta *ev, size_t n);

/* The whole answer: *reasoning (NULL when there was no thinking) and
 * *content, malloc'd. */
int cs_reasoning_split(enum cs_reasoning_format f, struct cs_reasoning_markers m, bool starts_open, const char *text,
                       size_t n, char **reasoning, char **content, char *err, size_t errlen);

#endif
