/* fwdutil.h: test helper for the forward-pass tests (test-forward,
 * test-kvtypes, test-batch, test-split, test-dflash*, test-mtp, test-sched*):
 * open a model on one or more OpenCL devices or as an engine, make contexts, run greedy decoding of one sequence, compare
 * logits. Everything is released by fu_close / cs_fwd_ctx_free; failures end
 * the test (cmocka fail_msg). */
#ifndef CS_TEST_FWDUTIL_H
#define CS_TEST_FWDUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"
#include "engine/engine.h"
#include "model/forward.h"
#include "golden.h"

struct fu_model {
    struct cs_model *m;
    int n_dev;
    struct cs_cl_dev *dev[4];
    struct cs_fwd_model *fm;
    int V;                      /* n_vocab */
};

/* Opens $CLSPEC_SHARED/rel on devices dev_idx[0..n_dev-1] (indices in
 * cs_cl_list order; NULL = device 0) with layer_counts (NULL: all on the
 * first). Returns 1 (and opens nothing) when there are fewer devices. */
int fu_open(const char *rel, int n_dev, const int *dev_idx, const uint32_t *layer_counts, struct fu_model *f);
void fu_close(struct fu_model *f);

/* A context: n_ctx cells, n_ubatch rows per pass, K/V types, unified. */
struct cs_fwd_ctx *fu_ctx(struct fu_model *f, uint32_t n_ctx, uint32_t n_ubatch, uint32_t type_k, uint32_t type_v);

/* Greedy decoding of sequence seq from pos 0: prompt (n) in one call, then
 * n_gen tokens (out, n_gen); logits of each step to steps (n_gen, V) when
 * not NULL (step s: the row from which out[s] was chosen). */
void fu_greedy(struct cs_fwd_ctx *c, const int32_t *prompt, int n, int n_gen, int32_t seq, int32_t *out,
               float *steps);

/* All rows' logits of tokens (n) for sequence seq at positions 0..n-1, in
 * one call: teacher forcing. out: (n, V). */
void fu_all_logits(struct cs_fwd_ctx *c, const int32_t *tokens, int n, int32_t seq, float *out);

/* The logits of the last of tokens (n) decoded as sequence 0 at positions
 * 0..n-1 in one call: out (V). */
void fu_last_logits(struct cs_fwd_ctx *c, const int32_t *tokens, int n, float *out);

/* max |a - b| and max |a - b| / (1 + |b|) over n values. */
float fu_max_abs(const float *a, const float *b, size_t n);
float fu_max_rel(const float *a, const float *b, size_t n);

/* cs_engine_open with p (model_path set to $CLSPEC_SHARED/rel for the
 * call): its status, the engine in *e (the caller frees it), the message in
 * err. */
int fu_engine_try(const char *rel, const struct cs_engine_params *p, struct cs_engine **e, char *err,
                  size_t errlen);
/* fu_engine_try that fails the test on an error. */
struct cs_engine *fu_engine_open(const char *rel, const struct cs_engine_params *p);

/* The engine door over e (cs_api_wrap) the speculative core runs over;
 * fails the test on an error. The caller frees it (clspec_engine_free)
 * before e. */
clspec_engine *fu_door(struct cs_engine *e);

/* The reference prompts of $CLSPEC_SHARED/reference/greedy-NAME.json. */
struct golden *fu_golden(const char *name);

/* Sets the cost-aware controller's measurements of sp (CS_SPEC_CTL_COST)
 * so that its next choice does not depend on the clock: a step of r rows
 * costs 1 ms (draft_pays: every slot drafts its longest) or 2^r ms (each
 * row doubles the cost, more than any draft brings: every slot stays
 * plain, and with a plugin of ABI 1.8 detached, until its re-probe). The
 * slots' acceptance and probe counters stay as the steps left them. Call
 * before each step. */
struct cs_spec;
void fu_ctl_force(struct cs_spec *sp, bool draft_pays);

#endif
