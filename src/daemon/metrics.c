/* metrics.c: Prometheus text exposition (0.0.4) of the scheduler's stats. */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "daemon/metrics.h"

struct mbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void put_n(struct mbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 2048;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put(struct mbuf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

static void CS_PRINTF(2, 3) putf(struct mbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true; /* never for the short numbers written here */
        return;
    }
    put_n(b, tmp, (size_t)n);
}

/* model="..." with the label value escaped; empty when no name */
static void put_labels(struct mbuf *b, const char *model, const char *outcome)
{
    if (!model && !outcome)
        return;
    put(b, "{");
    if (model) {
        put(b, "model=\"");
        for (const char *c = model; *c; c++) {
            if (*c == '\\')
                put(b, "\\\\");
            else if (*c == '"')
                put(b, "\\\"");
            else if (*c == '\n')
                put(b, "\\n");
            else
                put_n(b, c, 1);
        }
        put(b, "\"");
    }
    if (outcome) {
        if (model)
            put(b, ",");
        put(b, "outcome=\"");
        put(b, outcome);
        put(b, "\"");
    }
    put(b, "}");
}

static void header(struct mbuf *b, const char *name, const char *type, const char *help)
{
    putf(b, "# HELP %s ", name);
    put(b, help);
    putf(b, "\n# TYPE %s %s\n", name, type);
}

static void sample_u64(struct mbuf *b, const char *name, const char *model, const char *outcome, uint64_t v)
{
    put(b, name);
    put_labels(b, model, outcome);
    putf(b, " %" PRIu64 "\n", v);
}

static void sample_f64(struct mbuf *b, const char *name, const char *model, double v)
{
    put(b, name);
    put_labels(b, model, NULL);
    if (isnan(v))
        put(b, " NaN\n");
    else if (isinf(v))
        put(b, v > 0 ? " +Inf\n" : " -Inf\n");
    else
        putf(b, " %.17g\n", v);
}

static void counter_u64(struct mbuf *b, const char *name, const char *help, const char *model, uint64_t v)
{
    header(b, name, "counter", help);
    sample_u64(b, name, model, NULL, v);
}

static void counter_f64(struct mbuf *b, const char *name, const char *help, const char *model, double v)
{
    header(b, name, "counter", help);
    sample_f64(b, name, model, v);
}

static void gauge_i64(struct mbuf *b, const char *name, const char *help, const char *model, int64_t v)
{
    header(b, name, "gauge", help);
    put(b, name);
    put_labels(b, model, NULL);
    putf(b, " %" PRId64 "\n", v);
}

static void gauge_f64(struct mbuf *b, const char *name, const char *help, const char *model, double v)
{
    header(b, name, "gauge", help);
    sample_f64(b, name, model, v);
}

int cs_metrics_render(const struct cs_sched_stats *st, const char *model, char **out, size_t *len, char *err,
                      size_t errlen)
{
    if (!st || !out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "metrics: no stats or output");
    *out = NULL;
    struct mbuf b = {0};

    counter_u64(&b, "clspec_requests_received_total", "Requests submitted to the scheduler.", model,
                st->requests_total);
    header(&b, "clspec_requests_total", "counter", "Requests finished, by outcome.");
    sample_u64(&b, "clspec_requests_total", model, "ok", st->requests_ok);
    sample_u64(&b, "clspec_requests_total", model, "failed", st->requests_failed);
    sample_u64(&b, "clspec_requests_total", model, "cancelled", st->requests_cancelled);
    sample_u64(&b, "clspec_requests_total", model, "rejected", st->requests_rejected);
    counter_u64(&b, "clspec_prompt_tokens_total", "Prompt tokens processed.", model, st->prompt_tokens_total);
    counter_u64(&b, "clspec_completion_tokens_total", "Tokens generated.", model, st->completion_tokens_total);
    counter_u64(&b, "clspec_cached_prompt_tokens_total", "Prompt tokens reused from the KV cache.", model,
                st->cached_tokens_total);
    counter_f64(&b, "clspec_prefill_seconds_total", "Seconds spent on prompt processing, summed over requests.",
                model, st->prefill_seconds_total);
    counter_f64(&b, "clspec_decode_seconds_total", "Seconds spent generating, summed over requests.", model,
                st->decode_seconds_total);

    gauge_i64(&b, "clspec_queue_depth", "Requests waiting for a slot.", model, st->queue_depth);
    gauge_i64(&b, "clspec_slots_busy", "Slots running a request.", model, st->slots_busy);
    gauge_i64(&b, "clspec_slots", "Slots (parallel sequences).", model, st->n_slots);
    header(&b, "clspec_kv_cells_used", "gauge", "KV cache cells in use.");
    sample_u64(&b, "clspec_kv_cells_used", model, NULL, st->kv_cells_used);
    header(&b, "clspec_kv_cells", "gauge", "KV cache cells in total.");
    sample_u64(&b, "clspec_kv_cells", model, NULL, st->kv_cells_total);
    gauge_f64(&b, "clspec_prefill_tokens_per_second", "Prompt processing speed of the last finished request.",
              model, st->prefill_tps_last);
    gauge_f64(&b, "clspec_decode_tokens_per_second", "Generation speed of the last finished request.", model,
              st->decode_tps_last);

    if (b.oom) {
        free(b.p);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "metrics: out of memory");
    }
    if (len)
        *len = b.len;
    *out = b.p;
    return CLSPEC_OK;
}
