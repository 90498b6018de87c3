/* common.c: error-message formatting, the status table, the clocks and a
 * case-insensitive substring test. */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <time.h>

#include "base/common.h"

int cs_err(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

int cs_err_prefix(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (!err || !errlen)
        return status;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t pl = strlen(prefix), ml = strnlen(err, errlen - 1);
    if (pl + 2 >= errlen)
        return status;
    if (ml > errlen - pl - 3)
        ml = errlen - pl - 3;
    memmove(err + pl + 2, err, ml);
    memcpy(err, prefix, pl);
    err[pl] = ':';
    err[pl + 1] = ' ';
    err[pl + 2 + ml] = '\0';
    return status;
}

const char *clspec_strerror(int status)
{
    switch (status) {
    case CLSPEC_OK: return "success";
    case CLSPEC_E_IO: return "input/output error";
    case CLSPEC_E_FORMAT: return "malformed input";
    case CLSPEC_E_NOMEM: return "out of memory";
    case CLSPEC_E_INVAL: return "invalid argument";
    case CLSPEC_E_UNSUPPORTED: return "not supported";
    case CLSPEC_E_CL: return "OpenCL error";
    case CLSPEC_E_RANGE: return "out of range";
    case CLSPEC_E_NOTFOUND: return "not found";
    case CLSPEC_E_KV_FULL: return "KV cache full";
    case CLSPEC_E_CONTEXT: return "prompt exceeds the context";
    case CLSPEC_E_PLUGIN: return "plugin error";
    case CLSPEC_E_BUSY: return "busy";
    case CLSPEC_E_CANCELLED: return "cancelled";
    case CLSPEC_E_SHUTDOWN: return "shutting down";
    }
    return "unknown status";
}

const char *clspec_version(void)
{
    return PACKAGE_VERSION;
}

double cs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

unsigned cs_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    unsigned d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            unsigned v = CS_MIN(CS_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + (ca != cb));
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) && tolower((unsigned char)a[i - 2]) == cb)
                v = CS_MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    return d[la][lb];
}

bool cs_close_enough(const char *typed, const char *known, unsigned d)
{
    size_t n = strlen(known);
    return d <= (n < 5 ? 1u : n < 9 ? 2u : 3u) && d < strlen(typed) + 1;
}

double cs_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool cs_contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return true;
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n))
            return true;
    return false;
}

void *cs_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 8;
    while (c < need && c <= SIZE_MAX / 2)
        c *= 2;
    if (c < need || elem == 0 || c > SIZE_MAX / elem)
        return NULL;
    void *np = realloc(p, c * elem);
    if (np)
        *cap = c;
    return np;
}

int cs_str_append(char **s, const char *t, size_t n)
{
    size_t old = *s ? strlen(*s) : 0;
    if (n > SIZE_MAX - old - 1)
        return -1;
    char *p = realloc(*s, old + n + 1);
    if (!p)
        return -1;
    memcpy(p + old, t, n);
    p[old + n] = 0;
    *s = p;
    return 0;
}
