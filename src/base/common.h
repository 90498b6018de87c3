/* common.h: small internal helpers shared by every module of libclspec:
 * error-message formatting, checked size arithmetic, array length, the
 * clocks and a case-insensitive substring test.
 * Nothing here allocates; the caller owns every buffer it passes in. */
#ifndef CS_COMMON_H
#define CS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"

#define CS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CS_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Evaluates x (a call returning a status) and returns its status from the
 * calling function where it is negative. */
#define CS_TRY(x)              \
    do {                       \
        int rc_ = (x);         \
        if (rc_ < 0)           \
            return rc_;        \
    } while (0)

#if defined(__GNUC__)
#define CS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CS_PRINTF(f, a)
#endif

/* Formats a message into err (if err && errlen) and returns status, so that
 * error paths read: return cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: ...", path); */
int cs_err(char *err, size_t errlen, int status, const char *fmt, ...) CS_PRINTF(4, 5);

/* Prepends "prefix: " to the message already in err (used when a caller adds
 * context to a callee's message). Returns status. */
int cs_err_prefix(char *err, size_t errlen, int status, const char *fmt, ...) CS_PRINTF(4, 5);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool cs_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}
static inline bool cs_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a)
        return false;
    *out = a + b;
    return true;
}

/* Monotonic clock in seconds (for durations; its zero is arbitrary). */
double cs_now(void);
/* Wall-clock time in seconds since the Unix epoch (for timestamps). */
double cs_wall_now(void);

/* True where needle occurs in hay, ignoring ASCII case; an empty needle
 * occurs everywhere. */
bool cs_contains_nocase(const char *hay, const char *needle);

/* Did-you-mean: edit distance with adjacent transpositions ("prot" ->
 * "port" = 1), case-insensitive (99 for strings over 64 characters), and
 * whether typed is close enough to known to suggest it. */
unsigned cs_edit_distance(const char *a, const char *b);
bool cs_close_enough(const char *typed, const char *known, unsigned d);

/* Growable arrays: p (NULL at first) with room for at least need elements
 * of elem bytes, the capacity doubled from 8 (*cap updated). Returns the
 * array (p may have moved), or NULL with p and *cap unchanged when memory
 * or size_t runs out. */
void *cs_grow(void *p, size_t *cap, size_t need, size_t elem);
/* Appends t[0..n) to the malloc'd NUL-terminated string *s (NULL: a new
 * one). 0, or -1 with *s unchanged when memory runs out. */
int cs_str_append(char **s, const char *t, size_t n);

#endif
