/* metrics.h: the daemon's GET /metrics body: struct cs_sched_stats formatted
 * in the Prometheus text exposition format 0.0.4 (# HELP, # TYPE, samples).
 * The caller owns the stats; cs_metrics_render returns a malloc'd string.
 *
 * Families (all samples carry model="NAME" when a name is given; the label
 * value is escaped: backslash -> \\, quote -> \", newline -> \n):
 *   counters  clspec_requests_received_total        requests submitted (requests_total)
 *             clspec_requests_total{outcome=...}    finished requests, outcome
 *                                                   ok|failed|cancelled|rejected
 *             clspec_prompt_tokens_total, clspec_completion_tokens_total,
 *             clspec_cached_prompt_tokens_total     tokens
 *             clspec_prefill_seconds_total, clspec_decode_seconds_total
 *   gauges    clspec_queue_depth, clspec_slots_busy, clspec_slots,
 *             clspec_kv_cells_used, clspec_kv_cells,
 *             clspec_prefill_tokens_per_second, clspec_decode_tokens_per_second
 *             (of the last finished request)
 *   speculator counters, only when one is configured, with speculator="NAME":
 *             clspec_spec_requests_total, clspec_spec_steps_total,
 *             clspec_spec_draft_tokens_total, clspec_spec_draft_accepted_total,
 *             clspec_spec_emitted_tokens_total,
 *             clspec_spec_draft_asked_tokens_total (the chosen draft lengths),
 *             clspec_spec_plain_steps_total (steps the controller kept plain) (finished requests)
 * Integers print exactly; doubles with 17 significant digits (they read back
 * bit-exact), NaN as "NaN", infinities as "+Inf" / "-Inf". */
#ifndef CS_DAEMON_METRICS_H
#define CS_DAEMON_METRICS_H

#include <stddef.h>

#include "daemon/sched.h"

/* The Content-Type of the body. */
#define CS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Renders st. model_name: NULL for no model label. *out: malloc'd,
 * NUL-terminated (free it); *len its length (optional). Errors:
 * CLSPEC_E_INVAL (NULL st/out), CLSPEC_E_NOMEM. */
int cs_metrics_render(const struct cs_sched_stats *st, const char *model_name, char **out, size_t *len, char *err,
                      size_t errlen);

#endif
