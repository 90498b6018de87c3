/* chat_jinja.h: the glue between chat.c and the Jinja interpreter: the
 * GGUF's template rendered with an OpenAI message list (chat.h documents
 * the public side: CS_CHAT_JINJA, cs_chat_render_json). */
#ifndef CS_CHAT_JINJA_H
#define CS_CHAT_JINJA_H

#include "text/chat.h"

/* Whether tmpl (len bytes) compiles; CLSPEC_E_INVAL with the template line
 * in err otherwise (err may be NULL), also for a NULL template. */
int cs_chat_jinja_check(const char *tmpl, size_t len, char *err, size_t errlen);

/* cs_chat_render for CS_CHAT_JINJA: msgs as [{"role", "content"}]. */
int cs_chat_jinja_render_msgs(const struct cs_chat_params *p, const struct cs_chat_msg *msgs, size_t n,
                              char **out, size_t *out_len, bool *starts_with_bos, char *err, size_t errlen);

#endif
