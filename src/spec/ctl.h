/* ctl.h: the cost-aware draft-length controller of the speculative step.
 * It measures what a step costs (the draft call per asked length, the rest
 * of the step per verified row count) and what a draft yields (per slot, the
 * per-token acceptance alpha, decayed counts with the speculator-wide rate as
 * the prior), and picks each slot's draft length k maximising the step's
 * expected tokens per second:
 *     sum_s E(alpha_s, k_s) / (draft(k) + verify(R)),  R = sum_s (k_s + 1),
 *     E(alpha, k) = (1 - alpha^(k+1)) / (1 - alpha) (accepted drafts + the target's token),
 * draft(k) = sum_s draft(k_s) for a plugin drafting slot by slot, draft(max k_s)
 * for one draft_batch call. k_s = 0 is plain decoding: a slot for which no
 * length beats it stays off and is re-probed now and then (a probe every
 * `probe` off steps, the interval doubling up to CS_CTL_PROBE_MAX while
 * probes fail). Costs are the medians of measured indices (made
 * non-decreasing), interpolated between them, and extended with the
 * slope of a line through all of them beyond (struct cs_ctl_table). Pure host arithmetic: no device, no clock
 * (the caller passes the seconds it measured). */
#ifndef CS_SPEC_CTL_H
#define CS_SPEC_CTL_H

#include <stdbool.h>
#include <stdint.h>

#define CS_CTL_PROBE_MIN 16  /* off steps before the first re-probe */
#define CS_CTL_PROBE_MAX 1024 /* the longest interval between re-probes */
#define CS_CTL_PROBE_BUDGET 0.015 /* probes may cost this fraction of the plain steps between them */
#define CS_CTL_REFRESH 32    /* while drafting, every 32nd step is plain (plain decoding measured under
                              * the same load as the drafts) */

#define CS_CTL_RING 8        /* samples kept per index: their median is the index's cost */

/* Costs in seconds by index (rows, draft length), robust to a loaded
 * machine: the median of the latest CS_CTL_RING samples of each index, and
 * a weighted least-squares line t(i) = a + b i (b >= 0) through those
 * medians, which prices every index (one measured index: flat). */
struct cs_ctl_table {
    int32_t len;             /* indices 0..len-1 */
    int32_t first;           /* the first index that is measured (the draft table's 0 costs nothing) */
    float *ring;             /* (len, CS_CTL_RING) the latest samples */
    double *med;             /* (len) median of ring[i] */
    uint32_t *n;             /* (len) samples so far (0 = never measured) */
    double a, b;             /* the line */
    bool fitted;             /* a sample is in */
    /* the price of each index: where indices have CS_CTL_MED_MIN samples or more, their medians made
     * non-decreasing (pooled where they fall), linear between them, beyond them with the line's
     * slope; the line alone until one index has them (a step of 5 rows can cost far more than one of
     * 4, which no line through all the rows sees) */
    double *est;             /* (len) */
    bool curve;              /* est holds that curve */
    int32_t *px;             /* (len) scratch: the pooled indices */
    double *pv, *pw;         /* (len) scratch: their values and weights */
};

#define CS_CTL_MED_MIN 3     /* samples before an index's median prices it (else the curve or the line) */

struct cs_ctl {
    int32_t n_max;           /* the longest draft */
    struct cs_ctl_table verify; /* index R (rows of the step's forward): the step without its draft call */
    struct cs_ctl_table draft;  /* index k (tokens asked of one draft call) */
    bool batched;            /* one draft call serves every slot (draft_batch) */
    double g_succ, g_fail;   /* speculator-wide acceptance counts (decayed) */
    int32_t probe;           /* the latest re-probe interval of any slot: a new request starts with it, so
                              * a speculator that does not pay stays off across requests */
    int32_t n_on;            /* steps in a row with a draft (a plain step after CS_CTL_REFRESH) */
};

/* Per slot (struct cs_spec_slot holds one). */
struct cs_ctl_slot {
    double succ, fail;       /* decayed counts: accepted draft tokens, rejections */
    int32_t k;               /* the length chosen for the last step (0 = plain) */
    int32_t n_off;           /* steps in a row the controller chose plain while a draft was allowed */
    int32_t probe;           /* off steps before the next probe */
    uint64_t n_steps_off;    /* steps the controller ran without a draft that a draft was allowed */
};

int cs_ctl_init(struct cs_ctl *c, int32_t n_max, int32_t max_rows, bool batched);
void cs_ctl_free(struct cs_ctl *c);
/* A slot's request starts: acceptance from the speculator-wide prior. */
void cs_ctl_slot_reset(const struct cs_ctl *c, struct cs_ctl_slot *s);
/* The slot's acceptance estimate in (0, 1). */
double cs_ctl_alpha(const struct cs_ctl_slot *s);
/* Expected tokens out of a step with k drafts at per-token acceptance alpha. */
double cs_ctl_expected(double alpha, int32_t k);
/* The table's estimate for index i (interpolated, flat beyond the measured
 * ones; index 0 of the draft table is 0); < 0 when nothing is measured. */
double cs_ctl_estimate(const struct cs_ctl_table *t, int32_t i);
/* Records a sample. */
void cs_ctl_sample(struct cs_ctl_table *t, int32_t i, double secs);
/* After verification: n_draft tokens drafted, n_acc accepted. */
void cs_ctl_observe(struct cs_ctl *c, struct cs_ctl_slot *s, int32_t n_draft, int32_t n_acc);
/* Chooses the lengths k[i] in 0..kmax[i] of the n slots of a step
 * (slots[i]; kmax[i] = 0: a slot that decodes plainly) whose forward also
 * carries n_base other rows (prompt chunks), and counts probes and off
 * steps in the slots. All plain until a forward of n + n_base rows or fewer
 * has been measured. */
void cs_ctl_choose(struct cs_ctl *c, struct cs_ctl_slot *const *slots, const int32_t *kmax, int32_t n,
                   int32_t n_base, int32_t *k);

/* The speedup over plain decoding the measurements promise for n slots all
 * drafting k tokens at the speculator-wide acceptance, at the best k
 * (*k_best; 0 and 1.0 when none pays or nothing is measured). */
double cs_ctl_theory(const struct cs_ctl *c, int32_t n, int32_t *k_best);
/* One line: acceptance, the verify cost curve c(k) = t(n(k+1) rows) / t(n
 * rows) for k = 1..n_max, draft costs by k ("~": estimated, not measured)
 * and cs_ctl_theory's speedup. */
struct cs_strbuf;
void cs_ctl_report(const struct cs_ctl *c, int32_t n, struct cs_strbuf *b);

#endif
