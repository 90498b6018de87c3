/* test-metrics.c: the /metrics body follows the Prometheus text format 0.0.4
 * (checked by a small validator written here from the format's rules),
 * every stats field reads back exactly, and the model label is escaped. */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "daemon/metrics.h"

/* ---- a validator for the text exposition format ---- */

#define MAX_SAMPLES 64
#define MAX_FAMILIES 64

struct sample {
    char name[96];
    char labels[512];  /* raw text between { and }, "" when none */
    char value[64];    /* raw value text */
};

struct family {
    char name[96];
    char type[16];
    bool has_help, closed; /* closed: another family's sample came after this one's */
};

struct parsed {
    struct sample s[MAX_SAMPLES];
    int n;
    struct family f[MAX_FAMILIES];
    int nf;
};

static bool name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == ':';
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* at *p; copies it to out */
static bool read_name(const char **p, char *out, size_t cap, bool label)
{
    const char *s = *p;
    if (!name_start(*s) || (label && *s == ':'))
        return false;
    size_t n = 0;
    while (name_char(s[n]) && !(label && s[n] == ':'))
        n++;
    if (n + 1 > cap)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return true;
}

static bool valid_value(const char *v)
{
    if (!strcmp(v, "NaN") || !strcmp(v, "+Inf") || !strcmp(v, "-Inf"))
        return true;
    if (!*v)
        return false;
    char *end;
    (void)strtod(v, &end);
    return *end == '\0';
}

static struct family *find_family(struct parsed *P, const char *name)
{
    for (int i = 0; i < P->nf; i++)
        if (!strcmp(P->f[i].name, name))
            return &P->f[i];
    return NULL;
}

/* Returns NULL when text is valid, else a static message naming the line. */
static const char *validate(const char *text, struct parsed *P)
{
    static char msg[256];
    memset(P, 0, sizeof *P);
    size_t tl = strlen(text);
    if (tl == 0 || text[tl - 1] != '\n')
        return "output does not end with a newline";
    const char *line = text;
    int lineno = 0;
    struct family *last = NULL;
    while (*line) {
        lineno++;
        const char *eol = strchr(line, '\n');
        char buf[1024];
        size_t ll = (size_t)(eol - line);
        if (ll >= sizeof buf)
            return "line too long";
        memcpy(buf, line, ll);
        buf[ll] = '\0';
        line = eol + 1;
        const char *p = buf;
        if (buf[0] == '#') {
            char kind[8] = "", name[96];
            if (!strncmp(buf, "# HELP ", 7))
                strcpy(kind, "HELP");
            else if (!strncmp(buf, "# TYPE ", 7))
                strcpy(kind, "TYPE");
            else
                continue; /* other comments are allowed */
            p = buf + 7;
            if (!read_name(&p, name, sizeof name, false) || (*p != ' '))
                goto bad;
            p++;
            struct family *f = find_family(P, name);
            if (!f) {
                if (P->nf == MAX_FAMILIES)
                    return "too many families";
                f = &P->f[P->nf++];
                snprintf(f->name, sizeof f->name, "%s", name);
            }
            if (!strcmp(kind, "HELP")) {
                if (f->has_help || !*p)
                    goto bad;
                f->has_help = true;
                for (const char *c = p; *c; c++) { /* HELP escapes: \\ and \n only */
                    if (*c == '\\') {
                        if (c[1] != '\\' && c[1] != 'n')
                            goto bad;
                        c++;
                    }
                }
            } else {
                if (f->type[0])
                    goto bad; /* a second TYPE */
                if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
                    strcmp(p, "summary") && strcmp(p, "untyped"))
                    goto bad;
                for (int i = 0; i < P->n; i++)
                    if (!strcmp(P->s[i].name, name))
                        goto bad; /* TYPE after a sample */
                snprintf(f->type, sizeof f->type, "%s", p);
            }
            continue;
        }
        /* sample: name [{labels}] value [timestamp] */
        if (P->n == MAX_SAMPLES)
            return "too many samples";
        struct sample *s = &P->s[P->n];
        if (!read_name(&p, s->name, sizeof s->name, false))
            goto bad;
        struct family *f = find_family(P, s->name);
        if (!f || !f->type[0])
            goto bad; /* every sample preceded by its TYPE */
        if (!strcmp(f->type, "counter") && (strlen(s->name) < 6 || strcmp(s->name + strlen(s->name) - 6, "_total")))
            goto bad;
        if (f->closed)
            goto bad;
        if (last && last != f)
            last->closed = true; /* a family's samples form one group */
        last = f;
        if (*p == '{') {
            const char *l0 = ++p;
            while (*p != '}') {
                char lname[64];
                if (!read_name(&p, lname, sizeof lname, true) || *p != '=' || p[1] != '"')
                    goto bad;
                p += 2;
                while (*p != '"') {
                    if (!*p)
                        goto bad;
                    if (*p == '\\') {
                        if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                            goto bad;
                        p++;
                    } else if (*p == '\n') {
                        goto bad;
                    }
                    p++;
                }
                p++;
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    goto bad;
            }
            size_t n = (size_t)(p - l0);
            if (n >= sizeof s->labels)
                goto bad;
            memcpy(s->labels, l0, n);
            s->labels[n] = '\0';
            p++;
        }
        if (*p != ' ')
            goto bad;
        p++;
        const char *v0 = p;
        while (*p && *p != ' ')
            p++;
        if ((size_t)(p - v0) >= sizeof s->value)
            goto bad;
        memcpy(s->value, v0, (size_t)(p - v0));
        s->value[p - v0] = '\0';
        if (!valid_value(s->value))
            goto bad;
        if (*p == ' ') { /* optional integer timestamp */
            p++;
            char *end;
            (void)strtoll(p, &end, 10);
            if (end == p || *end)
                goto bad;
        }
        for (int i = 0; i < P->n; i++)
            if (!strcmp(P->s[i].name, s->name) && !strcmp(P->s[i].labels, s->labels))
                goto bad; /* duplicate series */
        P->n++;
        continue;
    bad:
        snprintf(msg, sizeof msg, "line %d invalid: %.200s", lineno, buf);
        return msg;
    }
    return NULL;
}

static const struct sample *find(const struct parsed *P, const char *name, const char *labels)
{
    for (int i = 0; i < P->n; i++)
        if (!strcmp(P->s[i].name, name) && !strcmp(P->s[i].labels, labels))
            return &P->s[i];
    return NULL;
}

/* ---- tests ---- */

static char *render_ok(const struct cs_sched_stats *st, const char *model, struct parsed *P)
{
    char err[256], *out = NULL;
    size_t len = 0;
    if (cs_metrics_render(st, model, &out, &len, err, sizeof err) != CLSPEC_OK)
        fail_msg("render: %s", err);
    assert_int_equal(len, strlen(out));
    const char *v = validate(out, P);
    if (v) {
        fprintf(stderr, "%s", out);
        fail_msg("%s", v);
    }
    return out;
}

static struct cs_sched_stats sample_stats(void)
{
    struct cs_sched_stats st = {
        .requests_total = 1234567,
        .requests_ok = 1200000,
        .requests_failed = 17,
        .requests_cancelled = 4550,
        .requests_rejected = 30000,
        .prompt_tokens_total = (UINT64_C(1) << 53) + 1, /* not exact in a double */
        .completion_tokens_total = UINT64_MAX,
        .cached_tokens_total = 0,
        .prefill_seconds_total = 0.1,
        .decode_seconds_total = 12345.678901234567,
        .prefill_tps_last = 1e-300,
        .decode_tps_last = 58.333333333333336,
        .queue_depth = 3,
        .slots_busy = 2,
        .n_slots = 4,
        .kv_cells_used = 1000,
        .kv_cells_total = 8192,
        .preemptions = 77,
    };
    return st;
}

static void expect_u64(const struct parsed *P, const char *name, const char *labels, uint64_t want)
{
    const struct sample *s = find(P, name, labels);
    if (!s)
        fail_msg("missing %s{%s}", name, labels);
    char *end;
    unsigned long long v = strtoull(s->value, &end, 10);
    assert_true(*end == '\0');
    assert_true(v == want);
}

static void expect_f64(const struct parsed *P, const char *name, const char *labels, double want)
{
    const struct sample *s = find(P, name, labels);
    if (!s)
        fail_msg("missing %s{%s}", name, labels);
    double v = strtod(s->value, NULL);
    if (memcmp(&v, &want, sizeof v) != 0)
        fail_msg("%s: %s reads back as %.17g, want %.17g", name, s->value, v, want);
}

static void test_format_and_roundtrip(void **state)
{
    (void)state;
    struct cs_sched_stats st = sample_stats();
    struct parsed *P = malloc(sizeof *P);
    assert_non_null(P);
    char *out = render_ok(&st, "stories260K", P);
    const char *m = "model=\"stories260K\"";
    char lab[128];
    expect_u64(P, "clspec_requests_received_total", m, st.requests_total);
    static const char *const outcomes[] = {"ok", "failed", "cancelled", "rejected"};
    const uint64_t want[] = {st.requests_ok, st.requests_failed, st.requests_cancelled, st.requests_rejected};
    for (int i = 0; i < 4; i++) {
        snprintf(lab, sizeof lab, "%s,outcome=\"%s\"", m, outcomes[i]);
        expect_u64(P, "clspec_requests_total", lab, want[i]);
    }
    expect_u64(P, "clspec_prompt_tokens_total", m, st.prompt_tokens_total);
    expect_u64(P, "clspec_completion_tokens_total", m, st.completion_tokens_total);
    expect_u64(P, "clspec_cached_prompt_tokens_total", m, st.cached_tokens_total);
    expect_f64(P, "clspec_prefill_seconds_total", m, st.prefill_seconds_total);
    expect_f64(P, "clspec_decode_seconds_total", m, st.decode_seconds_total);
    expect_u64(P, "clspec_queue_depth", m, (uint64_t)st.queue_depth);
    expect_u64(P, "clspec_slots_busy", m, (uint64_t)st.slots_busy);
    expect_u64(P, "clspec_slots", m, (uint64_t)st.n_slots);
    expect_u64(P, "clspec_kv_cells_used", m, st.kv_cells_used);
    expect_u64(P, "clspec_kv_cells", m, st.kv_cells_total);
    expect_u64(P, "clspec_preemptions_total", m, st.preemptions);
    expect_f64(P, "clspec_prefill_tokens_per_second", m, st.prefill_tps_last);
    expect_f64(P, "clspec_decode_tokens_per_second", m, st.decode_tps_last);
    assert_int_equal(P->n, 18); /* every sample accounted for above */

    /* types: counters and gauges as documented, each with HELP */
    for (int i = 0; i < P->nf; i++) {
        const struct family *f = &P->f[i];
        bool total = strlen(f->name) > 6 && !strcmp(f->name + strlen(f->name) - 6, "_total");
        assert_true(f->has_help);
        assert_string_equal(f->type, total ? "counter" : "gauge");
    }
    assert_int_equal(P->nf, 15);
    free(out);
    free(P);
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct cs_sched_stats st = sample_stats();
    struct parsed *P = malloc(sizeof *P);
    assert_non_null(P);
    const char *name = "a\\b\"c\nd/é";
    char *out = render_ok(&st, name, P);
    const struct sample *s = find(P, "clspec_slots", "model=\"a\\\\b\\\"c\\nd/é\"");
    assert_non_null(s);
    /* unescaping the label value gives the name back */
    const char *v = strchr(s->labels, '"') + 1;
    char un[64];
    size_t n = 0;
    for (; *v != '"'; v++) {
        if (*v == '\\') {
            v++;
            un[n++] = *v == 'n' ? '\n' : *v;
        } else {
            un[n++] = *v;
        }
    }
    un[n] = '\0';
    assert_string_equal(un, name);
    /* the raw newline never reaches the output except as line ends */
    int lines = 0;
    for (const char *c = out; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 15 * 2 + 18);
    free(out);

    /* no model name: no model label at all */
    out = render_ok(&st, NULL, P);
    assert_null(strstr(out, "model="));
    expect_u64(P, "clspec_slots", "", (uint64_t)st.n_slots);
    expect_u64(P, "clspec_requests_total", "outcome=\"rejected\"", st.requests_rejected);
    free(out);
    free(P);
}

static void test_special_values(void **state)
{
    (void)state;
    struct cs_sched_stats st = {0};
    st.prefill_tps_last = NAN;
    st.decode_tps_last = INFINITY;
    st.decode_seconds_total = -0.0;
    struct parsed *P = malloc(sizeof *P);
    assert_non_null(P);
    char *out = render_ok(&st, "m", P);
    assert_string_equal(find(P, "clspec_prefill_tokens_per_second", "model=\"m\"")->value, "NaN");
    assert_string_equal(find(P, "clspec_decode_tokens_per_second", "model=\"m\"")->value, "+Inf");
    assert_string_equal(find(P, "clspec_requests_received_total", "model=\"m\"")->value, "0");
    free(out);
    st.decode_tps_last = -INFINITY;
    out = render_ok(&st, "m", P);
    assert_string_equal(find(P, "clspec_decode_tokens_per_second", "model=\"m\"")->value, "-Inf");
    free(out);
    free(P);
    char err[128];
    assert_int_equal(cs_metrics_render(NULL, "m", &out, NULL, err, sizeof err), CLSPEC_E_INVAL);
    assert_int_equal(cs_metrics_render(&st, "m", NULL, NULL, err, sizeof err), CLSPEC_E_INVAL);
}

/* the validator itself rejects what the format forbids */
static void test_validator_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "x 1\n",                                           /* no TYPE */
        "# TYPE x gauge\nx 1",                             /* no final newline */
        "# TYPE 1x gauge\n1x 1\n",                         /* bad name */
        "# TYPE x gauge\nx{a=\"b} 1\n",                    /* unterminated label */
        "# TYPE x gauge\nx{a=\"\\t\"} 1\n",                /* bad escape */
        "# TYPE x gauge\nx{a:b=\"c\"} 1\n",                /* colon in a label name */
        "# TYPE x gauge\nx 1.2.3\n",                       /* bad value */
        "# TYPE x counter\nx 1\n",                         /* counter without _total */
        "# TYPE x gauge\n# TYPE x gauge\nx 1\n",           /* two TYPEs */
        "# TYPE x gauge\nx 1\nx 2\n",                      /* duplicate series */
        "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n", /* split group */
        "# TYPE x gauge\nx 1\n# TYPE x gauge\n",           /* TYPE after sample */
        "# TYPE x gauge\nx  1\n",                          /* empty value */
    };
    struct parsed *P = malloc(sizeof *P);
    assert_non_null(P);
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++)
        if (!validate(bad[i], P))
            fail_msg("validator accepted bad case %zu", i);
    assert_null(validate("# HELP x a \\\\ help\n# TYPE x gauge\nx{a=\"\\\"\",b=\"\"} -1.5e3 1700000000\n", P));
    assert_int_equal(P->n, 1);
    free(P);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_roundtrip),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_validator_rejects),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
