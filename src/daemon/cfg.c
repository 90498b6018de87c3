/* cfg.c: clspecd's configuration loader: the INI file read with libinih
 * (our own line reader, so every message has its line), values parsed and
 * checked against the schema (cfg_schema.c), combinations validated.
 * Checks against the machine live in cfg_check.c. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "daemon/cfg_schema.h"
#include "gguf/quant.h"

#define MAX_FILE_BYTES (1u << 20) /* a config file above 1 MiB is refused */
#define MAX_LIST CS_CFG_MAX_LIST
#define MAX_LINE 8192               /* characters in a line, at most */
#define MIN_SLOT_CELLS CS_CFG_MIN_SLOT_CELLS

/* ---- small text helpers ---- */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* ---- the loader ---- */

struct loader {
    const char *file;       /* as given, for messages */
    const char *buf;        /* whole file */
    size_t len, pos;
    int line;               /* lines handed to inih so far = line of the current one */
    char sec[64];           /* section of the latest header we saw */
    bool sec_ok;            /* that section is known */
    char *dir;              /* absolute directory of the file (for relative paths) */
    struct cs_config *c;
    char *err;
    size_t errlen;
    int rc;                 /* first error (CLSPEC_OK: none yet) */
};

CS_PRINTF(6, 7)
static void fail(struct loader *L, int line, const char *sec, const char *key, int status, const char *fmt, ...)
{
    if (L->rc != CLSPEC_OK)
        return; /* the first error (lowest line) wins */
    L->rc = status;
    if (!L->err || !L->errlen)
        return;
    int n;
    /* names from the file are cut to 64 characters in messages */
    if (sec && key)
        n = snprintf(L->err, L->errlen, "%s:%d: [%.64s] %.64s: ", L->file, line, sec, key);
    else if (sec)
        n = snprintf(L->err, L->errlen, "%s:%d: [%.64s]: ", L->file, line, sec);
    else if (key)
        n = snprintf(L->err, L->errlen, "%s:%d: %.64s: ", L->file, line, key);
    else
        n = snprintf(L->err, L->errlen, "%s:%d: ", L->file, line);
    if (n < 0 || (size_t)n >= L->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = L->err; *p; p++) /* text quoted from the file must not drive a terminal */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static void warn(struct cs_config *c, const char *fmt, ...) CS_PRINTF(2, 3);
static void warn(struct cs_config *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    size_t old = c->warnings ? strlen(c->warnings) : 0, add = strlen(line);
    char *w = realloc(c->warnings, old + add + 2);
    if (!w)
        return; /* a lost warning is not worth failing for */
    memcpy(w + old, line, add);
    w[old + add] = '\n';
    w[old + add + 1] = '\0';
    c->warnings = w;
}

/* "did you mean" for an unknown key in section sec (known or not). */
static void suggest_key(const char *sec, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    unsigned best = 99;
    int bi = -1;
    for (size_t i = 0; i < cs_cfg_n_keys; i++) {
        unsigned d = cs_edit_distance(name, cs_cfg_keys[i].name) + (strcmp(cs_cfg_keys[i].sec, sec) != 0); /* prefer this section */
        if (d < best) {
            best = d;
            bi = (int)i;
        }
    }
    if (bi < 0)
        return;
    const struct cs_cfg_key *k = &cs_cfg_keys[bi];
    bool same = !strcmp(k->sec, sec);
    unsigned d = cs_edit_distance(name, k->name);
    if (!cs_close_enough(name, k->name, d))
        return;
    if (same)
        snprintf(out, n, "; did you mean %s?", k->name);
    else
        snprintf(out, n, "; did you mean %s in [%s]?", k->name, k->sec);
}

static void list_keys(const char *sec, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < cs_cfg_n_keys && used + 1 < n; i++) {
        if (strcmp(cs_cfg_keys[i].sec, sec))
            continue;
        int w = snprintf(out + used, n - used, "%s%s", used ? ", " : "", cs_cfg_keys[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Looks at one line (leading blanks already dropped) before inih does: tracks
 * sections and finds the syntax errors inih only reports as a line number. */
static void classify(struct loader *L, const char *s, size_t n)
{
    if (L->line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) {
        s += 3;
        n -= 3;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || s[0] == ';' || s[0] == '#')
        return;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) {
            fail(L, L->line, NULL, NULL, CLSPEC_E_FORMAT,
                 "section header without ']'; write it as [name] on a line of its own");
            return;
        }
        const char *a = s + 1, *b = close; /* not trimmed: inih does not trim either */
        size_t m = (size_t)(b - a);
        if (m >= sizeof L->sec)
            m = sizeof L->sec - 1;
        memcpy(L->sec, a, m);
        L->sec[m] = '\0';
        L->sec_ok = cs_cfg_section_known(L->sec);
        if (!L->sec_ok) {
            unsigned best = 99;
            const char *bs = NULL;
            for (size_t i = 0; i < cs_cfg_n_sections; i++) {
                unsigned d = cs_edit_distance(L->sec, cs_cfg_sections[i]);
                if (d < best) {
                    best = d;
                    bs = cs_cfg_sections[i];
                }
            }
            char hint[64] = "";
            if (bs && cs_close_enough(L->sec, bs, best))
                snprintf(hint, sizeof hint, "did you mean [%s]? ", bs);
            fail(L, L->line, L->sec, NULL, CLSPEC_E_INVAL,
                 "unknown section; %sknown sections: [server] [model] [devices] [kv] [slots] [sampling] "
                 "[speculator]",
                 hint);
        }
        return;
    }
    if (!memchr(s, '=', n) && !memchr(s, ':', n))
        fail(L, L->line, NULL, NULL, CLSPEC_E_FORMAT,
             "'%.40s%s' is not 'key = value', a [section] or a comment (; or #); fix or remove the line", s,
             n > 40 ? "..." : "");
}

static int handler(void *user, const char *sec, const char *name, const char *value);

/* A "key = value" line too long for inih's buffer: name up to the first '='
 * or ':', value without an inline " ;" comment, both trimmed, as inih does. */
static void long_line(struct loader *L, const char *s, size_t n)
{
    if (L->rc != CLSPEC_OK || !n || s[0] == '[' || s[0] == ';' || s[0] == '#')
        return;
    char *t = malloc(n + 1);
    if (!t) {
        fail(L, L->line, NULL, NULL, CLSPEC_E_NOMEM, "out of memory");
        return;
    }
    memcpy(t, s, n);
    t[n] = '\0';
    char *sep = strpbrk(t, "=:");
    if (sep) {
        *sep = '\0';
        char *v = sep + 1;
        for (char *q = v; *q; q++)
            if (*q == ';' && q > v && isspace((unsigned char)q[-1])) {
                *q = '\0';
                break;
            }
        char *e = sep;
        while (e > t && isspace((unsigned char)e[-1]))
            *--e = '\0';
        while (isspace((unsigned char)*v))
            v++;
        e = v + strlen(v);
        while (e > v && isspace((unsigned char)e[-1]))
            *--e = '\0';
        handler(L, L->sec, t, v);
    }
    free(t);
}

/* inih's reader: hands out one whole line per call (so L->line is the line
 * the handler is called for), without leading blanks (no multi-line values). */
static char *reader(char *str, int num, void *stream)
{
    struct loader *L = stream;
    if (L->pos >= L->len || num < 3)
        return NULL;
    const char *s = L->buf + L->pos;
    size_t rem = L->len - L->pos;
    const char *nl = memchr(s, '\n', rem);
    size_t n = nl ? (size_t)(nl - s) : rem;
    L->pos += n + (nl ? 1 : 0);
    L->line++;
    size_t m = n;
    if (m && s[m - 1] == '\r')
        m--;
    size_t a = 0;
    while (a < m && (s[a] == ' ' || s[a] == '\t'))
        a++;
    if (memchr(s, '\0', n)) {
        fail(L, L->line, NULL, NULL, CLSPEC_E_FORMAT, "NUL byte: this is not a text file; check the -c path");
        m = a = 0;
    } else if (m - a > MAX_LINE) {
        fail(L, L->line, NULL, NULL, CLSPEC_E_FORMAT, "line too long (%zu characters, at most %d); shorten it",
             m - a, MAX_LINE);
        m = a = 0;
    } else if (m - a + 2 > (size_t)num) {
        /* longer than inih's line buffer (a long path): split it here, the way inih would */
        classify(L, s + a, m - a);
        long_line(L, s + a, m - a);
        m = a = 0;
    } else {
        classify(L, s + a, m - a);
    }
    memcpy(str, s + a, m - a);
    str[m - a] = '\n';
    str[m - a + 1] = '\0';
    return str;
}

/* ---- values ---- */

static bool parse_ll(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_dbl(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static int parse_bool(const char *s)
{
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, t[i]))
            return 1;
        if (!strcasecmp(s, f[i]))
            return 0;
    }
    return -1;
}


static bool parse_size(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    uint64_t mul = 1;
    const char *u = end;
    if (*u) {
        switch (toupper((unsigned char)*u)) {
        case 'B': mul = 1; break;
        case 'K': mul = 1ull << 10; break;
        case 'M': mul = 1ull << 20; break;
        case 'G': mul = 1ull << 30; break;
        default: return false;
        }
        u++;
        if (mul > 1 && (*u == 'i' || *u == 'I'))
            u++;
        if (mul > 1 && (*u == 'b' || *u == 'B'))
            u++;
        if (*u)
            return false;
    }
    return cs_mul_ok(v, mul, out);
}

/* Splits a comma list into trimmed entries (at most MAX_LIST). Returns the
 * count, -1 for an empty entry, -2 for too many. */
static int split_list(const char *s, char ent[MAX_LIST][64])
{
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *a = p, *b = e;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if (a == b || (size_t)(b - a) >= 64)
            return -1;
        if (n == MAX_LIST)
            return -2;
        memcpy(ent[n], a, (size_t)(b - a));
        ent[n][b - a] = '\0';
        n++;
        if (!comma)
            return n;
        p = comma + 1;
    }
}

static void *field(struct cs_config *c, const struct cs_cfg_key *k)
{
    return (char *)c + k->off;
}

static int set_str(char **dst, const char *v)
{
    char *s = NULL;
    if (v && *v && !(s = xstrdup(v)))
        return CLSPEC_E_NOMEM;
    free(*dst);
    *dst = s;
    return CLSPEC_OK;
}

#define BAD(...) (fail(L, line, k->sec, k->name, CLSPEC_E_INVAL, __VA_ARGS__), CLSPEC_E_INVAL)

static int out_of_range(struct loader *L, int line, const struct cs_cfg_key *k, const char *v)
{
    char lo[32], hi[32];
    cs_cfg_fmt_num(lo, sizeof lo, k->lo, false);
    cs_cfg_fmt_num(hi, sizeof hi, k->hi, false);
    return BAD("%s is out of range; use a value from %s to %s", v, lo, hi);
}

/* Parses v (inih-stripped) into key k of L->c. Errors go to fail() at line. */
static int set_value(struct loader *L, const struct cs_cfg_key *k, const char *v, int line)
{
    struct cs_config *c = L->c;
    char tmp[4096];
    size_t vl = strlen(v);
    if ((k->t == CS_CFG_STR || k->t == CS_CFG_PATH) && vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
        if (vl - 2 >= sizeof tmp)
            return BAD("value too long; shorten it");
        memcpy(tmp, v + 1, vl - 2); /* one pair of surrounding double quotes is dropped */
        tmp[vl - 2] = '\0';
        v = tmp;
    }
    if (!*v && k->def[0] && k->t != CS_CFG_SPLIT)
        return BAD("empty; set a value (default: %s)", k->def);
    long long ll;
    double d;
    switch (k->t) {
    case CS_CFG_STR:
        return set_str(field(c, k), v);
    case CS_CFG_PATH: {
        if (!*v || v[0] == '/' || !L->dir)
            return set_str(field(c, k), v);
        size_t n = strlen(L->dir) + strlen(v) + 2;
        char *p = malloc(n);
        if (!p)
            return CLSPEC_E_NOMEM;
        snprintf(p, n, "%s/%s", L->dir, v);
        char **dst = field(c, k);
        free(*dst);
        *dst = p;
        return CLSPEC_OK;
    }
    case CS_CFG_ENUM: {
        char buf[32];
        const char *canon = *v ? cs_cfg_pick(k->allowed, v, buf, sizeof buf) : NULL;
        if (*v && !canon)
            return BAD("'%s' is not allowed; use one of %s", v, k->allowed);
        return set_str(field(c, k), canon);
    }
    case CS_CFG_KVTYPE: {
        if (!*v && !*k->def) { /* a key without a default ([speculator] type_k): unset, the plugin decides */
            *(uint32_t *)field(c, k) = CS_CONFIG_KVTYPE_UNSET;
            return CLSPEC_OK;
        }
        char buf[32];
        const char *canon = cs_cfg_pick(k->allowed, v, buf, sizeof buf);
        if (!canon)
            return BAD("'%s' is not a KV cache type; use one of %s", v, k->allowed);
        int t = cs_type_from_name(canon);
        if (t < 0)
            return BAD("'%s' is not supported by this build; use one of %s", v, k->allowed);
        *(uint32_t *)field(c, k) = (uint32_t)t;
        return CLSPEC_OK;
    }
    case CS_CFG_INT:
    case CS_CFG_I32:
    case CS_CFG_U32:
        if (!parse_ll(v, &ll))
            return BAD("'%s' is not a whole number; write digits only, e.g. %s", v, k->def);
        if ((double)ll < k->lo || (double)ll > k->hi)
            return out_of_range(L, line, k, v);
        if (k->t == CS_CFG_INT)
            *(int *)field(c, k) = (int)ll;
        else if (k->t == CS_CFG_I32)
            *(int32_t *)field(c, k) = (int32_t)ll;
        else
            *(uint32_t *)field(c, k) = (uint32_t)ll;
        return CLSPEC_OK;
    case CS_CFG_U64: {
        char *end;
        errno = 0;
        unsigned long long u = isdigit((unsigned char)v[0]) ? strtoull(v, &end, 10) : 0;
        if (!isdigit((unsigned char)v[0]) || errno || *end)
            return BAD("'%s' is not a whole number from 0 to 18446744073709551615; write digits only", v);
        *(uint64_t *)field(c, k) = u;
        return CLSPEC_OK;
    }
    case CS_CFG_DBL:
    case CS_CFG_FLT:
        if (!parse_dbl(v, &d))
            return BAD("'%s' is not a number; write it like %s", v, k->def);
        if (d < k->lo || d > k->hi)
            return out_of_range(L, line, k, v);
        if (k->t == CS_CFG_DBL)
            *(double *)field(c, k) = d;
        else
            *(float *)field(c, k) = (float)d;
        return CLSPEC_OK;
    case CS_CFG_BOOL: {
        int b = parse_bool(v);
        if (b < 0)
            return BAD("'%s' is not a boolean; use true or false (yes/no, on/off, 1/0)", v);
        *(bool *)field(c, k) = b;
        return CLSPEC_OK;
    }
    case CS_CFG_SIZE: {
        uint64_t u;
        if (!parse_size(v, &u))
            return BAD("'%s' is not a size; write bytes, optionally with K, M or G (e.g. 1M, 512K)", v);
        if ((double)u < k->lo || (double)u > k->hi)
            return BAD("%s is out of range; use a size from 1K to 1G", v);
        *(size_t *)field(c, k) = (size_t)u;
        return CLSPEC_OK;
    }
    case CS_CFG_DEVS: {
        char ent[MAX_LIST][64], joined[MAX_LIST * 65];
        int n = split_list(v, ent);
        if (n == -2)
            return BAD("more than %d devices; list at most %d", MAX_LIST, MAX_LIST);
        if (n < 0)
            return BAD("empty or overlong entry in '%s'; give device indices or name substrings, e.g. 0 or 0,1", v);
        joined[0] = '\0';
        for (int i = 0; i < n; i++) {
            if (i)
                strcat(joined, ",");
            strcat(joined, ent[i]);
        }
        c->n_devices = n;
        return set_str(&c->devices, joined);
    }
    case CS_CFG_SPLIT: {
        uint32_t val[MAX_LIST] = {0};
        int n = 0;
        if (*v) {
            char ent[MAX_LIST][64];
            n = split_list(v, ent);
            if (n == -2)
                return BAD("more than %d entries; give one per device", MAX_LIST);
            if (n < 0)
                return BAD("empty entry in '%s'; write whole numbers separated by commas, e.g. 10,12", v);
            for (int i = 0; i < n; i++) {
                if (!parse_ll(ent[i], &ll))
                    return BAD("'%s' is not a whole number; write e.g. split = 10,12", ent[i]);
                if ((double)ll < k->lo || (double)ll > k->hi)
                    return BAD("entry %s is out of range; each entry is from 1 to 1000000 (leave split empty for an "
                               "even split)", ent[i]);
                val[i] = (uint32_t)ll;
            }
        }
        memcpy(c->split, val, sizeof c->split);
        c->n_split = n;
        return CLSPEC_OK;
    }
    }
    return CLSPEC_E_INVAL;
}

/* [speculator] opt.KEY = value: a plugin-specific key, handed to the plugin
 * as KEY (its config_get). KEY: letters, digits, '_', '-', '.'; not a key
 * of the schema (those are set directly); each at most once. */
static int spec_opt(struct loader *L, int line, const char *name, const char *value)
{
    struct cs_config *c = L->c;
    const char *key = name + 4;
    bool ok = *key && strlen(key) < 64;
    for (const char *p = key; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
             *p == '-' || *p == '.';
    if (!ok) {
        fail(L, line, "speculator", name, CLSPEC_E_INVAL,
             "a plugin key must be opt.KEY with KEY of 1..63 letters, digits, '_', '-' or '.'; fix the name");
        return 0;
    }
    if (cs_cfg_key_index("speculator", key) >= 0) {
        fail(L, line, "speculator", name, CLSPEC_E_INVAL, "%s is a key of [speculator] itself; write %s = %s", key,
             key, value);
        return 0;
    }
    for (int i = 0; i < c->spec_n_opts; i++)
        if (!strcmp(c->spec_opt_key[i], key)) {
            fail(L, line, "speculator", name, CLSPEC_E_INVAL, "set twice (first on line %d); keep one of the two",
                 c->spec_opt_line[i]);
            return 0;
        }
    if (c->spec_n_opts >= CS_CONFIG_MAX_SPEC_OPTS) {
        fail(L, line, "speculator", name, CLSPEC_E_INVAL, "more than %d opt.* keys; remove some",
             CS_CONFIG_MAX_SPEC_OPTS);
        return 0;
    }
    int i = c->spec_n_opts;
    c->spec_opt_key[i] = xstrdup(key);
    c->spec_opt_val[i] = xstrdup(value);
    if (!c->spec_opt_key[i] || !c->spec_opt_val[i]) {
        free(c->spec_opt_key[i]);
        free(c->spec_opt_val[i]);
        fail(L, line, "speculator", name, CLSPEC_E_NOMEM, "out of memory");
        return 0;
    }
    c->spec_opt_line[i] = line;
    c->spec_n_opts++;
    return 1;
}

static int handler(void *user, const char *sec, const char *name, const char *value)
{
    struct loader *L = user;
    int line = L->line;
    if (L->rc != CLSPEC_OK)
        return 1; /* keep only the first error; let inih run to the end */
    if (!*sec) {
        char hint[96];
        suggest_key("", name, hint, sizeof hint);
        fail(L, line, NULL, name, CLSPEC_E_INVAL, "key before any [section] header; move it into its section%s",
             hint);
        return 0;
    }
    if (!L->sec_ok || strcmp(sec, L->sec))
        return 1; /* unknown section: reported at its header */
    if (!strcmp(sec, "speculator") && !strncmp(name, "opt.", 4))
        return spec_opt(L, line, name, value);
    int i = cs_cfg_key_index(sec, name);
    if (i < 0) {
        char hint[96], known[512];
        suggest_key(sec, name, hint, sizeof hint);
        list_keys(sec, known, sizeof known);
        fail(L, line, sec, name, CLSPEC_E_INVAL, "unknown key%s%s%s", hint, hint[0] ? "" : "; known keys: ",
             hint[0] ? "" : known);
        return 0;
    }
    if (L->c->key_line[i]) {
        fail(L, line, sec, name, CLSPEC_E_INVAL, "set twice (first on line %d); keep one of the two",
             L->c->key_line[i]);
        return 0;
    }
    L->c->key_line[i] = line;
    int rc = set_value(L, &cs_cfg_keys[i], value, line);
    if (rc == CLSPEC_E_NOMEM)
        fail(L, line, sec, name, rc, "out of memory");
    return rc == CLSPEC_OK;
}

/* ---- combinations ---- */

/* Line to blame for a combination: the key that should change if it was set
 * in the file, else the other one, else 0. */
static int blame(const struct cs_config *c, const char *sec_a, const char *a, const char *sec_b, const char *b,
                 const char **sec_out, const char **key_out)
{
    int la = cs_config_line(c, sec_a, a), lb = b ? cs_config_line(c, sec_b, b) : 0;
    *sec_out = sec_a;
    *key_out = a;
    if (!la && lb) {
        *sec_out = sec_b;
        *key_out = b;
        return lb;
    }
    return la;
}

static bool is_loopback(const char *h)
{
    return !strcmp(h, "localhost") || !strncmp(h, "127.", 4) || !strcmp(h, "::1") || !strcmp(h, "[::1]");
}

/* config_check's "key is set but not used by this plugin": a warning with
 * the key's place. */
static void spec_ignored(void *user, const char *key, const char *why)
{
    struct loader *L = user;
    struct cs_config *c = L->c;
    int line = cs_config_line(c, "speculator", key);
    const char *opt = "";
    for (int i = 0; i < c->spec_n_opts && cs_cfg_key_index("speculator", key) < 0; i++)
        if (!strcmp(c->spec_opt_key[i], key)) {
            line = c->spec_opt_line[i];
            opt = "opt.";
        }
    if (!strcmp(key, "model"))
        c->spec_model_ignored = true;
    warn(c, "%s:%d: [speculator] %s%s: ignored by type = %s (%s)", L->file, line, opt, key, c->spec_type, why);
}

/* [speculator] type: none, a plugin's NAME (plugin_dir/NAME.so, found by
 * cs_plugin_resolve: no list here) or a path (with a '/'; relative to the
 * file's directory, it comes back absolute). The plugin then checks its own
 * keys (its config_check, ABI 1.4); a refusal names the key it is about, at
 * its line (a missing key: at type's line). A path that does not exist is
 * left to cs_config_check_runtime, which names it. */
static void check_speculator(struct loader *L)
{
    struct cs_config *c = L->c;
    const char *t = c->spec_type ? c->spec_type : "none";
    int tl = cs_config_line(c, "speculator", "type");
    if (strchr(t, '/') && t[0] != '/' && L->dir) {
        size_t n = strlen(L->dir) + strlen(t) + 2;
        char *p = malloc(n);
        if (!p) {
            fail(L, tl, "speculator", "type", CLSPEC_E_NOMEM, "out of memory");
            return;
        }
        snprintf(p, n, "%s/%s", L->dir, t);
        free(c->spec_type);
        c->spec_type = p;
        t = p; /* t pointed into the string just freed */
    }
    if (cs_plugin_is_none(t))
        return;
    struct cs_config_spec_kv kv;
    cs_config_spec_kv(c, &kv);
    struct cs_plugin_params pp = {.type = t, .plugin_dir = c->spec_plugin_dir, .kv = kv.kv, .n_kv = kv.n};
    struct cs_plugin_check chk = {.kv_line = kv.line, .ignored = spec_ignored, .user = L};
    char e2[CLSPEC_ERRLEN];
    int rc = cs_plugin_check_config(&pp, &chk, e2, sizeof e2);
    if (rc == CLSPEC_OK || (rc == CLSPEC_E_NOTFOUND && strchr(t, '/')))
        return;
    if (!chk.key[0]) { /* not found, not loadable, not a speculator */
        fail(L, tl, "speculator", "type", rc == CLSPEC_E_NOTFOUND ? CLSPEC_E_INVAL : rc, "%s", e2);
        return;
    }
    char name[80];
    int line = tl;
    snprintf(name, sizeof name, "%s", chk.key);
    for (int i = 0; i < kv.n; i++)
        if (!strcmp(kv.kv[i].key, chk.key)) {
            line = kv.line[i] ? kv.line[i] : tl;
            if (i >= kv.n - c->spec_n_opts)
                snprintf(name, sizeof name, "opt.%s", chk.key);
        }
    fail(L, line, "speculator", name, CLSPEC_E_INVAL, "%s", e2);
}

static void check_combinations(struct loader *L)
{
    struct cs_config *c = L->c;
    const char *s, *k;
    int line;
    if (!c->model_path) {
        fail(L, 0, "model", "path", CLSPEC_E_INVAL,
             "missing; add a [model] section with path = /path/to/model.gguf");
        return;
    }
    if (c->n_ctx && (uint64_t)c->n_ctx < (uint64_t)c->parallel * MIN_SLOT_CELLS) {
        line = blame(c, "kv", "n_ctx", "slots", "parallel", &s, &k);
        fail(L, line, s, k, CLSPEC_E_INVAL,
             "n_ctx = %u cells cannot hold parallel = %d slots of at least %d cells each; set [kv] n_ctx >= %d or "
             "lower [slots] parallel",
             c->n_ctx, c->parallel, MIN_SLOT_CELLS, c->parallel * MIN_SLOT_CELLS);
    }
    /* a default derives from the keys it depends on: n_ubatch not in the
     * file is min(512, n_batch), so n_batch = 32 alone is a valid file; only
     * an n_ubatch written above n_batch is a contradiction */
    if (!cs_config_line(c, "kv", "n_ubatch"))
        c->n_ubatch = CS_MIN(c->n_ubatch, c->n_batch);
    if (c->n_ubatch > c->n_batch) {
        line = blame(c, "kv", "n_ubatch", "kv", "n_batch", &s, &k);
        fail(L, line, s, k, CLSPEC_E_INVAL, "n_ubatch = %u is larger than n_batch = %u; set n_ubatch <= n_batch",
             c->n_ubatch, c->n_batch);
    }
    if (c->n_split && c->n_split != c->n_devices) {
        line = blame(c, "devices", "split", "devices", "devices", &s, &k);
        fail(L, line, s, k, CLSPEC_E_INVAL,
             "%d entries for %d device%s (devices = %s); give one entry per device, or leave split empty", c->n_split,
             c->n_devices, c->n_devices == 1 ? "" : "s", c->devices);
    }
    if (c->max_tokens_limit && c->max_tokens > c->max_tokens_limit) {
        line = blame(c, "sampling", "max_tokens", "server", "max_tokens_limit", &s, &k);
        fail(L, line, s, k, CLSPEC_E_INVAL,
             "default max_tokens = %d is above [server] max_tokens_limit = %d; lower max_tokens or raise the limit",
             c->max_tokens, c->max_tokens_limit);
    }
    check_speculator(L);
    if (c->spec_n_min > c->spec_n_max) {
        line = blame(c, "speculator", "n_min", "speculator", "n_max", &s, &k);
        fail(L, line, s, k, CLSPEC_E_INVAL, "n_min = %d is above n_max = %d; set n_min <= n_max", c->spec_n_min,
             c->spec_n_max);
    }
    if (L->rc != CLSPEC_OK)
        return;
    /* warnings: valid, but probably not what was meant */
    if (!c->api_key && !is_loopback(c->host))
        warn(c, "%s:%d: [server] host: %s is reachable from other machines and api_key is empty: anyone who can "
                "connect can use the API; set api_key",
             L->file, cs_config_line(c, "server", "host"), c->host);
    /* a drafter named while speculation is off: the orphan-state trap of MISSION §5.4. Nothing of the
     * speculator is loaded or initialised then (the daemon never calls a plugin); the keys are ignored. */
    if (!strcmp(c->spec_type, "none")) {
        if (c->spec_model)
            warn(c, "%s:%d: [speculator] model: ignored because type = none (speculation is off)", L->file,
                 cs_config_line(c, "speculator", "model"));
        if (c->spec_device)
            warn(c, "%s:%d: [speculator] device: ignored because type = none (speculation is off)", L->file,
                 cs_config_line(c, "speculator", "device"));
        for (int i = 0; i < c->spec_n_opts; i++)
            warn(c, "%s:%d: [speculator] opt.%s: ignored because type = none (speculation is off)", L->file,
                 c->spec_opt_line[i], c->spec_opt_key[i]);
    }
}

/* ---- load / free ---- */

static char *file_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = xstrdup(".");
    else if (slash == path)
        dir = xstrdup("/");
    else {
        dir = malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    if (!dir)
        return NULL;
    char *abs = realpath(dir, NULL);
    free(dir);
    return abs;
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cs_err(err, errlen, errno == ENOENT ? CLSPEC_E_NOTFOUND : CLSPEC_E_IO,
                      "%s:0: cannot open: %s; check the path given with -c", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_IO, "%s:0: not a regular file; give the path of an INI file", path);
    }
    if (st.st_size > (off_t)MAX_FILE_BYTES) {
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s:0: %lld bytes is too large for a configuration (at most %u)",
                      path, (long long)st.st_size, MAX_FILE_BYTES);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s:0: out of memory", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return CLSPEC_OK;
}

void cs_config_free(struct cs_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < cs_cfg_n_keys; i++) {
        enum cs_cfg_type t = cs_cfg_keys[i].t;
        if (t == CS_CFG_STR || t == CS_CFG_PATH || t == CS_CFG_ENUM || t == CS_CFG_DEVS)
            free(*(char **)field(c, &cs_cfg_keys[i]));
    }
    for (int i = 0; i < c->spec_n_opts; i++) {
        free(c->spec_opt_key[i]);
        free(c->spec_opt_val[i]);
    }
    free(c->warnings);
    free(c->path);
    free(c);
}

int cs_config_load(const char *path, struct cs_config **out, char *err, size_t errlen)
{
    if (!out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "cs_config_load: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "(none):0: no configuration file given; pass -c FILE");
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err, errlen);
    if (rc != CLSPEC_OK)
        return rc;
    struct cs_config *c = calloc(1, sizeof *c);
    struct loader L = {.file = path, .buf = buf, .len = len, .c = c, .err = err, .errlen = errlen};
    if (!c || !(c->path = xstrdup(path)) || !(L.dir = file_dir(path))) {
        free(buf);
        free(L.dir);
        cs_config_free(c);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "%s:0: out of memory (or the directory cannot be resolved)", path);
    }
    for (size_t i = 0; i < cs_cfg_n_keys && L.rc == CLSPEC_OK; i++)
        if (set_value(&L, &cs_cfg_keys[i], cs_cfg_keys[i].def, 0) != CLSPEC_OK && L.rc == CLSPEC_OK)
            fail(&L, 0, cs_cfg_keys[i].sec, cs_cfg_keys[i].name, CLSPEC_E_NOMEM, "default does not load (out of memory?)");
    if (L.rc == CLSPEC_OK) {
        int r = ini_parse_stream(reader, &L, handler, &L);
        if (r != 0 && L.rc == CLSPEC_OK) /* an inih error our line check did not name */
            fail(&L, r > 0 ? r : 0, NULL, NULL, r == -2 ? CLSPEC_E_NOMEM : CLSPEC_E_FORMAT,
                 "cannot parse this line; write key = value, [section] or a comment");
    }
    if (L.rc == CLSPEC_OK)
        check_combinations(&L);
    if (L.rc == CLSPEC_OK && !c->model_name) {
        const char *b = strrchr(c->model_path, '/');
        b = b ? b + 1 : c->model_path;
        size_t n = strlen(b);
        if (n > 5 && !strcasecmp(b + n - 5, ".gguf"))
            n -= 5;
        c->model_name = malloc(n + 1);
        if (!c->model_name)
            fail(&L, 0, "model", "name", CLSPEC_E_NOMEM, "out of memory");
        else {
            memcpy(c->model_name, b, n);
            c->model_name[n] = '\0';
        }
    }
    free(buf);
    free(L.dir);
    if (L.rc != CLSPEC_OK) {
        cs_config_free(c);
        return L.rc;
    }
    *out = c;
    return CLSPEC_OK;
}

