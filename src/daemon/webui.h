/* webui.h: clspecd's chat page (GET /, [server] webui): one self-contained
 * HTML page with its script; it streams answers from /v1/chat/completions
 * (fetch + server-sent events) and shows tokens/s while they stream and the
 * speculation counts (drafted, accepted) of each answer. */
#ifndef CS_DAEMON_WEBUI_H
#define CS_DAEMON_WEBUI_H

extern const char cs_webui_html[];

#endif
