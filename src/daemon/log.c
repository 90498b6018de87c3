/* log.c: see log.h. */
#include "config.h"

#include "daemon/log.h"

#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/common.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_file;  /* NULL: stderr */
static char *g_path;
static enum cs_log_level g_level = CS_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int cs_log_level_parse(const char *name, enum cs_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (name && strcasecmp(name, level_names[i]) == 0) {
            *out = (enum cs_log_level)i;
            return CLSPEC_OK;
        }
    return CLSPEC_E_INVAL;
}

int cs_log_open(const char *path, enum cs_log_level level, char *err, size_t errlen)
{
    pthread_mutex_lock(&g_mu);
    g_level = level;
    int rc = CLSPEC_OK;
    if (path && path[0]) {
        FILE *f = fopen(path, "a");
        if (!f) {
            rc = cs_err(err, errlen, CLSPEC_E_IO, "log file %s: %s", path, strerror(errno));
        } else {
            setvbuf(f, NULL, _IOLBF, 0);
            if (g_file)
                fclose(g_file);
            g_file = f;
            free(g_path);
            g_path = strdup(path);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int cs_log_reopen(char *err, size_t errlen)
{
    pthread_mutex_lock(&g_mu);
    int rc = CLSPEC_OK;
    if (g_path) {
        FILE *f = fopen(g_path, "a");
        if (!f) {
            rc = cs_err(err, errlen, CLSPEC_E_IO, "log file %s: %s", g_path, strerror(errno));
        } else {
            setvbuf(f, NULL, _IOLBF, 0);
            fclose(g_file);
            g_file = f;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void cs_log_close(void)
{
    pthread_mutex_lock(&g_mu);
    if (g_file)
        fclose(g_file);
    g_file = NULL;
    free(g_path);
    g_path = NULL;
    pthread_mutex_unlock(&g_mu);
}

int cs_log_enabled(enum cs_log_level level)
{
    return level <= g_level;
}

void cs_log(enum cs_log_level level, const char *req, const char *fmt, ...)
{
    if (level > g_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    double now = cs_wall_now();
    time_t sec = (time_t)now;
    long ms = CS_MIN((long)((now - (double)sec) * 1e3), 999L);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    /* one line: newlines and other control characters escaped */
    char line[4200];
    size_t n = 0;
    for (const char *p = msg; *p && n + 5 < sizeof line; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') {
            line[n++] = '\\';
            line[n++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(line + n, sizeof line - n, "\\x%02x", c);
        } else {
            line[n++] = (char)c;
        }
    }
    line[n] = 0;
    pthread_mutex_lock(&g_mu);
    FILE *f = g_file ? g_file : stderr;
    fprintf(f, "%s.%03ldZ %-5s %s%s%s%s\n", when, ms, level_names[level], req ? "[" : "",
            req ? req : "", req ? "] " : "", line);
    fflush(f);
    pthread_mutex_unlock(&g_mu);
}
