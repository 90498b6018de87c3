/* cors.c: see cors.h. */
#include "config.h"

#include "daemon/cors.h"

#include <stdbool.h>
#include <string.h>

/* origin is http(s)://localhost, 127.0.0.1 or [::1], with or without a port, and nothing else */
static bool is_local(const char *origin)
{
    static const char *const hosts[] = {"localhost", "127.0.0.1", "[::1]"};
    const char *p = strncmp(origin, "http://", 7) == 0 ? origin + 7 : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                                                                           : NULL;
    for (size_t i = 0; p && i < sizeof hosts / sizeof hosts[0]; i++) {
        size_t n = strlen(hosts[i]);
        if (strncmp(p, hosts[i], n) != 0)
            continue;
        const char *q = p + n;
        if (*q == '\0')
            return true;
        if (*q++ != ':' || !*q)
            return false;
        while (*q >= '0' && *q <= '9')
            q++;
        return *q == '\0';
    }
    return false;
}

const char *cs_cors_allow(const char *cfg, const char *origin)
{
    if (!origin || !cfg || !cfg[0])
        return NULL;
    if (strcmp(cfg, "*") == 0)
        return origin;
    size_t n = strlen(origin);
    for (const char *p = cfg; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t k = strcspn(p, ", ");
        if (k == n && k > 0 && strncmp(p, origin, n) == 0)
            return origin;
        if (k == 9 && strncmp(p, "localhost", 9) == 0 && is_local(origin))
            return origin;
        p += k;
    }
    return NULL;
}

void cs_cors_headers(struct MHD_Response *r, const char *allow)
{
    if (!allow)
        return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", allow);
    MHD_add_response_header(r, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "X-Request-Id");
    MHD_add_response_header(r, "Vary", "Origin");
}

struct MHD_Response *cs_cors_preflight(struct MHD_Connection *c, const char *method, const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r)
        return NULL;
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, strcmp(method, "GET") == 0 ? "GET, HEAD, OPTIONS"
                                                                                 : "POST, OPTIONS");
    if (allow) {
        const char *hdrs = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        cs_cors_headers(r, allow);
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", hdrs && hdrs[0] ? hdrs : "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    return r;
}
