/* engine.h: one loaded model ready to decode: GGUF + tokenizer + OpenCL
 * devices (layers split across them) + weights + one context with its KV
 * cache. What the CLI, the daemon and the speculative loop share.
 * The caller owns struct cs_engine (cs_engine_open / cs_engine_free). */
#ifndef CS_ENGINE_H
#define CS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "model/forward.h"
#include "kv/kv.h"
#include "model/model.h"
#include "text/tokenizer.h"

enum cs_split_mode {
    CS_SPLIT_LAYERS = 0, /* split[] = layer counts per device (sum = n_layer) */
    CS_SPLIT_MEMORY = 1, /* split[] = relative weights (e.g. 1,3): layers proportional to them */
};

struct cs_engine_params {
    const char *model_path;
    const char *devices;        /* "0", "0,1", "pthread", "1,cpu": indices or name substrings, comma
                                 * separated; NULL or "" = the first device */
    enum cs_split_mode split_mode;
    uint32_t split[8];          /* per device in the order of `devices`; all 0 = even layer split */
    uint32_t n_ctx;             /* KV cells in all */
    uint32_t n_batch;           /* most tokens one cs_forward_batch call takes (logical batch) */
    uint32_t n_ubatch;          /* tokens per device pass (<= n_batch) */
    uint32_t type_k, type_v;    /* enum cs_type */
    uint32_t n_seq_max;         /* parallel sequences (1..CS_MAX_SEQ) */
    bool kv_unified;            /* see struct cs_kv_params */
    bool progress;              /* loading progress on a terminal */
    bool llamacpp_numerics;     /* llama.cpp's CPU-backend arithmetic (see cs_fwd_ctx_params; tests) */
    uint32_t n_draft_max;       /* hybrid models: the longest rollback (clspec_engine_params.n_draft_max) */
};

/* Defaults: first device, n_ctx 2048 (capped to the model's training
 * context when it has one), n_batch 512, n_ubatch 512, f16 K and V,
 * 1 sequence, unified. */
struct cs_engine_params cs_engine_defaults(void);

/* The layer split: counts[i] layers for device i of n_dev (sum n_layer) from
 * mode/split (see struct cs_engine_params; mem[i] = the device's global
 * memory, used when mode is CS_SPLIT_MEMORY and split is all 0). Errors:
 * counts not summing to n_layer, entries past n_dev, a device left with no
 * layer. */
int cs_engine_plan_split(uint32_t n_layer, int n_dev, enum cs_split_mode mode, const uint32_t *split,
                         const uint64_t *mem, uint32_t *counts, char *err, size_t errlen);

struct cs_engine {
    struct cs_engine_params p;    /* as used (defaults filled in); strings are owned copies */
    struct cs_model *model;
    struct cs_tokenizer *tok;
    int n_dev;
    struct cs_cl_dev **dev;       /* (n_dev) opened devices */
    struct cs_fwd_model *fm;      /* weights on all devices (fm->layer_dev: each layer's device) */
    struct cs_fwd_ctx *ctx;       /* its KV cache: ctx->kv (struct cs_kv) */
    uint32_t layer_counts[8];     /* (n_dev) layers per device, in the order of `devices` */
    double load_s;                /* wall seconds to open all of the above */
};

/* Builds (or loads from the binary cache) every program the ops of ctx
 * launch, on every device of its KV cache (cs_op_prepare_all), so no
 * request waits for a compiler: cs_engine_open does it for its context, the
 * host's ctx_new for a drafter's. progress: a line on stderr when it is a
 * terminal. */
int cs_engine_prepare_ctx(const struct cs_fwd_ctx *ctx, bool llamacpp_numerics, bool progress, char *err,
                          size_t errlen);

/* Opens everything; on failure nothing is left allocated and err names the
 * failing part ("model.gguf: ...", "device 2: no such device (have 0..1)",
 * "split 3,3 sums to 6 layers; the model has 8"). A device may be listed
 * once; with several devices every one gets at least one layer. */
int cs_engine_open(const struct cs_engine_params *p, struct cs_engine **out, char *err, size_t errlen);
void cs_engine_free(struct cs_engine *e);

/* ---- cache counts for the public door (src/engine/api.c) ----
 * Sequence ids are KV sequences (0..n_seq_max-1). Everything above the
 * engine (the speculative loop, the scheduler, the CLI) goes through the
 * public door, include/clspec/clspec.h. */

/* Cells seq could still take (less than the free total in a partitioned cache). */
uint32_t cs_engine_seq_free(const struct cs_engine *e, int32_t seq);
/* Occupied cells in the whole cache (a cell shared by several sequences counts once). */
uint32_t cs_engine_kv_used(const struct cs_engine *e);
/* Free cells in the whole cache. */
uint32_t cs_engine_kv_free(const struct cs_engine *e);

#endif
