/* fuzz-http.c: libFuzzer target for clspecd's request path after the HTTP
 * parser (socket-free: libmicrohttpd itself is not run). The input is a raw
 * request: a request line, header lines up to an empty line, then a body.
 * Header lines are split at the first ':' as the parser hands them over
 * (key and value with their lengths, NULs and control bytes kept) and fed to
 * the framing checks (cs_framing_add / cs_framing_verdict, conn.c); a
 * refusal must name its reason. The body of an accepted POST goes to the
 * JSON parser of the route named in the request line. Each header line's
 * first bytes also serve as a client address opened in, and at the end
 * closed from, a connection table with small caps (conn.c): the counts must
 * return to zero. The whole input also goes through the gate's raw check
 * (cs_framing_scan): a refusal must be 400/413/431 with a reason. */
#include "config.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/api.h"
#include "daemon/conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_CONNS = 64 };

/* Next line of p[0..n) from *at (ends at LF, a CR before it dropped); false at the end. */
static bool next_line(const char *p, size_t n, size_t *at, const char **line, size_t *len)
{
    if (*at >= n)
        return false;
    const char *s = p + *at;
    const char *lf = memchr(s, '\n', n - *at);
    size_t l = lf ? (size_t)(lf - s) : n - *at;
    *at += l + (lf ? 1 : 0);
    if (l && s[l - 1] == '\r')
        l--;
    *line = s;
    *len = l;
    return true;
}

static void parse_body(const char *target, size_t tlen, const char *body, size_t blen)
{
    char err[512] = "";
    const char *param = NULL;
    bool chat = tlen >= 17 && memcmp(target + tlen - 17, "/chat/completions", 17) == 0;
    bool compl = !chat && tlen >= 12 && memcmp(target + tlen - 12, "/completions", 12) == 0;
    if (chat || compl) {
        struct cs_api_defaults d = {.max_tokens = 16, .n_vocab = 512};
        struct cs_api_request r;
        if (cs_api_parse(chat ? CS_API_CHAT : CS_API_COMPLETION, body, blen, &d, &r, &param, err, sizeof err) ==
            CLSPEC_OK)
            cs_api_request_free(&r);
        else if (!err[0])
            abort();
    } else if (tlen == 9 && memcmp(target, "/tokenize", 9) == 0) {
        struct cs_api_tokenize t;
        if (cs_api_parse_tokenize(body, blen, &t, &param, err, sizeof err) == CLSPEC_OK)
            json_decref(t.root);
        else if (!err[0])
            abort();
    } else if (tlen == 11 && memcmp(target, "/detokenize", 11) == 0) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (cs_api_parse_detokenize(body, blen, 512, &ids, &n, &param, err, sizeof err) == CLSPEC_OK)
            free(ids);
        else if (!err[0])
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    /* the gate's check of the raw bytes (gate.c): a refusal names its reason, an acceptance counts >= 1 */
    char smsg[192] = "";
    int k = 0, src = cs_framing_scan(p, size, 512, 4096, 256, &k, smsg, sizeof smsg);
    if ((src > 0 && (!smsg[0] || (src != 400 && src != 413 && src != 431))) || (src == 0 && k < 1) ||
        (src < 0 && src != CS_SCAN_MORE && src != CS_SCAN_CHUNK && src != CS_SCAN_BODY))
        abort();
    size_t at = 0, len = 0;
    const char *line = NULL;
    if (!next_line(p, size, &at, &line, &len))
        return 0;
    /* request line: METHOD SP TARGET SP VERSION */
    const char *sp1 = memchr(line, ' ', len);
    const char *target = sp1 ? sp1 + 1 : line + len;
    const char *sp2 = sp1 ? memchr(target, ' ', (size_t)(line + len - target)) : NULL;
    size_t tlen = sp2 ? (size_t)(sp2 - target) : (size_t)(line + len - target);
    bool post = len >= 5 && memcmp(line, "POST ", 5) == 0;

    struct cs_conn_table *t = NULL;
    char err[256];
    if (cs_conn_table_new(8, 2, &t, err, sizeof err) != CLSPEC_OK)
        abort();
    struct cs_conn conns[MAX_CONNS];
    int n_conns = 0;
    struct cs_framing f = {0};
    while (next_line(p, size, &at, &line, &len) && len > 0) {
        const char *colon = memchr(line, ':', len);
        if (!colon)
            continue; /* the HTTP parser refuses such lines itself */
        const char *v = colon + 1;
        while (v < line + len && (*v == ' ' || *v == '\t'))
            v++;
        cs_framing_add(&f, line, (size_t)(colon - line), v, (size_t)(line + len - v));
        if (n_conns < MAX_CONNS) {
            struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
            struct sockaddr_in a4 = {.sin_family = AF_INET};
            memcpy(&a4.sin_addr, line, CS_MIN(len, sizeof a4.sin_addr));
            memcpy(&a6.sin6_addr, line, CS_MIN(len, sizeof a6.sin6_addr));
            const struct sockaddr *sa = len % 3 == 0 ? (const struct sockaddr *)&a4
                                      : len % 3 == 1 ? (const struct sockaddr *)&a6 : NULL;
            cs_conn_open(t, sa, &conns[n_conns]);
            if (conns[n_conns].verdict != CS_CONN_OK && conns[n_conns].n_total_at_open <= 8 &&
                conns[n_conns].n_addr_at_open <= 2)
                abort(); /* a verdict without a cap exceeded */
            n_conns++;
        }
    }
    char msg[160] = "";
    unsigned code = cs_framing_verdict(&f, msg, sizeof msg);
    if (code && (code != 400 || !msg[0]))
        abort();
    if (!code && post)
        parse_body(target, tlen, p + CS_MIN(at, size), size - CS_MIN(at, size));
    for (int i = n_conns - 1; i >= 0; i--)
        cs_conn_close(t, &conns[i]);
    int nt = -1;
    cs_conn_counts(t, NULL, &nt, NULL);
    if (nt != 0)
        abort();
    cs_conn_table_free(t);
    return 0;
}
