/* plugin_util.h: small helpers the in-tree speculator plugins share (error
 * formatting, clocks, device lookup, KV type names). Static inline functions
 * only: a plugin includes it and links against nothing but the host ABI of
 * <clspec/speculator.h>. Not installed. The caller owns every buffer it passes;
 * returned strings are static or the host's. */
#ifndef CLSPEC_PLUGIN_UTIL_H
#define CLSPEC_PLUGIN_UTIL_H

#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 199309L
#error "define _POSIX_C_SOURCE 200809L before any include (clock_gettime)"
#endif

#include <clspec/speculator.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Writes prefix then fmt (with its two %s filled from a and b; NULL reads as
 * "") into err; returns -1. */
static inline int pu_fail(char *err, size_t errlen, const char *prefix, const char *fmt, const char *a, const char *b)
{
    int n = snprintf(err, errlen, "%s", prefix);
    if (n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, fmt, a ? a : "", b ? b : "");
    return -1;
}

/* printf-style message into err; returns -1. */
static inline int pu_failf(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline int pu_failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Monotonic clock in seconds. */
static inline double pu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The host device v names: a decimal index, or a substring of the device's
 * name (the first device that matches). -1: none. */
static inline int32_t pu_find_device(const struct clspec_host *h, const char *v)
{
    char *end = NULL;
    long i = strtol(v, &end, 10);
    if (end != v && !*end)
        return i >= 0 && i < h->n_devices(h) ? (int32_t)i : -1;
    for (int32_t k = 0; k < h->n_devices(h); k++) {
        struct clspec_device_info di;
        memset(&di, 0, sizeof di);
        di.size = sizeof di;
        if (h->device_info(h, k, &di) == 0 && di.name && strstr(di.name, v))
            return k;
    }
    return -1;
}

/* Name of host device i, "?" where the host has none. */
static inline const char *pu_dev_name(const struct clspec_host *h, int32_t i)
{
    struct clspec_device_info di;
    memset(&di, 0, sizeof di);
    di.size = sizeof di;
    return h->device_info(h, i, &di) == 0 && di.name ? di.name : "?";
}

/* The KV cache types a plugin's context may use, by config name. */
static const struct {
    const char *name;
    uint32_t type;
} pu_kv_types[] = {{"f32", CLSPEC_TYPE_F32},   {"f16", CLSPEC_TYPE_F16},   {"bf16", CLSPEC_TYPE_BF16},
                   {"q8_0", CLSPEC_TYPE_Q8_0}, {"q4_0", CLSPEC_TYPE_Q4_0}};

/* Config name of KV type t, "?" for another type. */
static inline const char *pu_type_name(uint32_t t)
{
    for (size_t i = 0; i < sizeof pu_kv_types / sizeof pu_kv_types[0]; i++)
        if (pu_kv_types[i].type == t)
            return pu_kv_types[i].name;
    return "?";
}

/* Parses a KV type name into *out; NULL or "" (unset) gives dflt. -1: not a
 * KV type name (*out unchanged). */
static inline int pu_parse_type(const char *v, uint32_t dflt, uint32_t *out)
{
    if (!v || !*v) {
        *out = dflt;
        return 0;
    }
    for (size_t i = 0; i < sizeof pu_kv_types / sizeof pu_kv_types[0]; i++)
        if (!strcmp(v, pu_kv_types[i].name)) {
            *out = pu_kv_types[i].type;
            return 0;
        }
    return -1;
}

/* config_check (ABI 1.4) of a plugin that drafts with a model of its own:
 * model must be set. name: the plugin's ("draft"); what: the kind of GGUF. */
static inline int pu_need_model(const struct clspec_config_view *v, const char **key, char *err, size_t errlen,
                                const char *name, const char *what)
{
    const char *m = v->get(v, "model");
    if (m && *m)
        return 0;
    *key = "model";
    snprintf(err, errlen, "%s needs a drafter model; set model = /path/to/%s.gguf (%s)", name, name, what);
    return -1;
}


/* The host's copy of what pu_upload_i32 last put in an int32 device buffer
 * (its first n elements; nothing else may write that buffer): an upload of
 * what is already there is skipped (a drafter's sequence ids, the same step
 * after step at parallel 1). Zero-initialise; free(v) at the end. */
struct pu_i32_shadow {
    int32_t *v;
    int32_t n, cap;
};

/* b[0..n) = src (host->buf_write), unless s says b already holds it. */
static inline int pu_upload_i32(const struct clspec_host *h, clspec_buf *b, struct pu_i32_shadow *s,
                                const int32_t *src, int32_t n, char *err, size_t errlen)
{
    if (n <= s->n && memcmp(s->v, src, (size_t)n * sizeof *src) == 0)
        return 0;
    if (n > s->cap) {
        int32_t *v = realloc(s->v, (size_t)n * sizeof *v);
        if (v) {
            s->v = v;
            s->cap = n;
        }
    }
    const int rc = h->buf_write(b, 0, (size_t)n, src, err, errlen);
    if (rc < 0 || n > s->cap) { /* unknown contents, or no room to remember them */
        s->n = 0;
        return rc;
    }
    memcpy(s->v, src, (size_t)n * sizeof *src);
    s->n = n > s->n ? n : s->n;
    return 0;
}

#endif
