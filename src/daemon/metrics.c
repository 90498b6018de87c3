/* metrics.c: Prometheus text exposition (0.0.4) of the scheduler's stats. */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "daemon/metrics.h"
#include "base/strbuf.h"

/* model="..." with the label value escaped; empty when no name */
static void put_labels(struct cs_strbuf *b, const char *model, const char *outcome)
{
    if (!model && !outcome)
        return;
    cs_strbuf_put(b, "{");
    if (model) {
        cs_strbuf_put(b, "model=\"");
        for (const char *c = model; *c; c++) {
            if (*c == '\\')
                cs_strbuf_put(b, "\\\\");
            else if (*c == '"')
                cs_strbuf_put(b, "\\\"");
            else if (*c == '\n')
                cs_strbuf_put(b, "\\n");
            else
                cs_strbuf_put_n(b, c, 1);
        }
        cs_strbuf_put(b, "\"");
    }
    if (outcome) {
        if (model)
            cs_strbuf_put(b, ",");
        cs_strbuf_put(b, "outcome=\"");
        cs_strbuf_put(b, outcome);
        cs_strbuf_put(b, "\"");
    }
    cs_strbuf_put(b, "}");
}

static void header(struct cs_strbuf *b, const char *name, const char *type, const char *help)
{
    cs_strbuf_printf(b, "# HELP %s ", name);
    cs_strbuf_put(b, help);
    cs_strbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void sample_u64(struct cs_strbuf *b, const char *name, const char *model, const char *outcome, uint64_t v)
{
    cs_strbuf_put(b, name);
    put_labels(b, model, outcome);
    cs_strbuf_printf(b, " %" PRIu64 "\n", v);
}

static void sample_f64(struct cs_strbuf *b, const char *name, const char *model, double v)
{
    cs_strbuf_put(b, name);
    put_labels(b, model, NULL);
    if (isnan(v))
        cs_strbuf_put(b, " NaN\n");
    else if (isinf(v))
        cs_strbuf_put(b, v > 0 ? " +Inf\n" : " -Inf\n");
    else
        cs_strbuf_printf(b, " %.17g\n", v);
}

static void counter_u64(struct cs_strbuf *b, const char *name, const char *help, const char *model, uint64_t v)
{
    header(b, name, "counter", help);
    sample_u64(b, name, model, NULL, v);
}

static void counter_f64(struct cs_strbuf *b, const char *name, const char *help, const char *model, double v)
{
    header(b, name, "counter", help);
    sample_f64(b, name, model, v);
}

static void gauge_i64(struct cs_strbuf *b, const char *name, const char *help, const char *model, int64_t v)
{
    header(b, name, "gauge", help);
    cs_strbuf_put(b, name);
    put_labels(b, model, NULL);
    cs_strbuf_printf(b, " %" PRId64 "\n", v);
}

static void gauge_f64(struct cs_strbuf *b, const char *name, const char *help, const char *model, double v)
{
    header(b, name, "gauge", help);
    sample_f64(b, name, model, v);
}

/* A counter of the speculator: {model="...",speculator="..."} (specd). */
static void counter_spec(struct cs_strbuf *b, const char *name, const char *help, const char *model,
                         const char *spec, uint64_t v)
{
    header(b, name, "counter", help);
    cs_strbuf_put(b, name);
    if (model) {
        put_labels(b, model, NULL);
        if (!b->oom && b->len > 0)
            b->p[--b->len] = '\0'; /* reopen the label set: drop its closing brace */
        cs_strbuf_put(b, ",");
    } else {
        cs_strbuf_put(b, "{");
    }
    cs_strbuf_put(b, "speculator=\"");
    for (const char *c = spec; *c; c++)
        if (*c == '\\' || *c == '"')
            cs_strbuf_printf(b, "\\%c", *c);
        else if (*c == '\n')
            cs_strbuf_put(b, "\\n");
        else
            cs_strbuf_put_n(b, c, 1);
    cs_strbuf_printf(b, "\"} %" PRIu64 "\n", v);
}

int cs_metrics_render(const struct cs_sched_stats *st, const char *model, char **out, size_t *len, char *err,
                      size_t errlen)
{
    if (!st || !out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "metrics: no stats or output");
    *out = NULL;
    struct cs_strbuf b = {0};

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
    counter_u64(&b, "clspec_preemptions_total",
                "Running requests preempted when the KV cache filled (their cells freed; resumed by recomputing).",
                model, st->preemptions);
    if (st->spec_name) {
        const char *sn = st->spec_name;
        counter_spec(&b, "clspec_spec_requests_total", "Finished requests that decoded with the speculator.", model,
                     sn, st->spec_requests);
        counter_spec(&b, "clspec_spec_steps_total", "Speculative verification steps.", model, sn, st->spec_steps);
        counter_spec(&b, "clspec_spec_draft_tokens_total", "Draft tokens verified.", model, sn, st->spec_drafted);
        counter_spec(&b, "clspec_spec_draft_accepted_total", "Draft tokens accepted.", model, sn, st->spec_accepted);
        counter_spec(&b, "clspec_spec_emitted_tokens_total",
                     "Tokens emitted by speculative steps (accepted drafts and the target's own).", model, sn,
                     st->spec_emitted);
        counter_spec(&b, "clspec_spec_draft_asked_tokens_total",
                     "Draft tokens asked of the speculator: the draft lengths the controller chose, summed.", model,
                     sn, st->spec_asked);
        counter_spec(&b, "clspec_spec_plain_steps_total",
                     "Steps the cost-aware controller decoded without a draft because no length paid.", model, sn,
                     st->spec_steps_plain);
        counter_spec(&b, "clspec_spec_draft_kv_shrinks_total",
                     "Steps whose draft was shortened or left out because the KV cache had too few free cells.",
                     model, sn, st->spec_kv_shrinks);
        counter_spec(&b, "clspec_spec_forwards_total",
                     "Scheduler steps that ran the target's forward (every decoding slot and prompt chunk in one).",
                     model, sn, st->spec_forwards);
        counter_spec(&b, "clspec_spec_syncs_total",
                     "Blocking host syncs in those steps, drafting included (syncs per step: / forwards_total).",
                     model, sn, st->spec_syncs);
        counter_spec(&b, "clspec_spec_draft_syncs_total", "Of those syncs, the ones in the speculator's draft calls.",
                     model, sn, st->spec_syncs_draft);
    }

    if (cs_strbuf_take(&b, out, len) != CLSPEC_OK)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "metrics: out of memory");
    return CLSPEC_OK;
}
