/* cors.h: CORS for clspecd ([server] cors_origins): which origin a request's
 * answer allows, the headers every answer to an allowed origin carries, and
 * the answer to an OPTIONS preflight. */
#ifndef CS_DAEMON_CORS_H
#define CS_DAEMON_CORS_H

#include <microhttpd.h>

/* The Access-Control-Allow-Origin value for a request with this Origin
 * header (NULL: none sent): origin itself when cfg is "*" or lists it
 * (comma or space separated, exact match; the word localhost stands for
 * http(s)://localhost, 127.0.0.1 and [::1] on any port, as llama-server's
 * --cors-origins localhost); NULL without cfg or origin. The
 * result points into origin. */
const char *cs_cors_allow(const char *cfg, const char *origin);
/* Adds Access-Control-Allow-Origin (allow), -Allow-Credentials, -Expose-Headers
 * (X-Request-Id) and Vary: Origin; nothing when allow is NULL. */
void cs_cors_headers(struct MHD_Response *r, const char *allow);
/* The (empty) answer to an OPTIONS preflight for a route taking method: Allow,
 * and with allow: the headers above, Access-Control-Allow-Methods "GET, POST,
 * DELETE, OPTIONS" (llama-server's), -Allow-Headers echoing the requested ones (a "*" would not cover
 * Authorization), -Max-Age 600. NULL when out of memory. */
struct MHD_Response *cs_cors_preflight(struct MHD_Connection *c, const char *method, const char *allow);

#endif
