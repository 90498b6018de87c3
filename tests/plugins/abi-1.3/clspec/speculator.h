/* clspec/speculator.h: the ABI between clspec and speculator plugins.
 * A plugin is a shared object exporting clspec_speculator_entry(), which
 * returns a static, versioned vtable (struct clspec_speculator). The host
 * hands the plugin a services table (struct clspec_host) at init. Both
 * structs are append-only: fields are never removed, reordered or retyped;
 * new ones go at the end, with a minor version bump. Plain C types and
 * opaque handles only; a plugin needs nothing but this header.
 *
 * Ownership: the vtable and the strings in it belong to the plugin and must
 * live until the plugin is unloaded. The host table and everything it
 * returns belong to the host (valid until the plugin's fini returns, unless
 * an entry says otherwise). Buffers passed to an entry are valid only during
 * that call. Every int-returning entry returns 0 on success or a negative
 * status (the CLSPEC_E_* values of clspec.h; plugins may simply use -1), and
 * fills err (errlen bytes, NUL-terminated) with a message on failure.
 *
 * Threading: the host calls a plugin's entries from one thread at a time. */
#ifndef CLSPEC_SPECULATOR_H
#define CLSPEC_SPECULATOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLSPEC_SPEC_ABI_MAJOR 1 /* a host refuses a plugin with another major */
#define CLSPEC_SPEC_ABI_MINOR 3 /* grows as fields are appended or provided */

/* ---- capabilities (struct clspec_speculator.caps) -------------------------
 * What a plugin needs or offers; the host validates a configuration against
 * them before serving (a missing service is a start-up error, not a crash). */
#define CLSPEC_SPEC_CAP_TARGET_TAPS (1ull << 0)    /* needs hidden-state taps of the target (tap_request) */
#define CLSPEC_SPEC_CAP_SHARED_KV (1ull << 1)      /* reads the target's KV cache (same device as the target) */
#define CLSPEC_SPEC_CAP_DEVICE_MEMORY (1ull << 2)  /* allocates its own device memory (model_load / ctx_new) */
#define CLSPEC_SPEC_CAP_DRAFT_PROBS (1ull << 3)    /* fills draft probabilities q (rejection sampling) */
#define CLSPEC_SPEC_CAP_TARGET_TENSORS (1ull << 4) /* uses the target's embedding / head (target_embed,
                                                      * target_head, CLSPEC_MODEL_TARGET_TENSORS) */
#define CLSPEC_SPEC_CAP_KV_INJECT (1ull << 5)      /* writes K/V rows into its own context (ctx_kv_inject) */

/* ---- log levels (clspec_host.log) ---- */
enum clspec_log_level {
    CLSPEC_LOG_ERROR = 0,
    CLSPEC_LOG_WARN = 1,
    CLSPEC_LOG_INFO = 2,
    CLSPEC_LOG_DEBUG = 3,
};

/* ---- opaque host handles ---- */
typedef struct clspec_model clspec_model;   /* a GGUF loaded onto a device by the host */
typedef struct clspec_ctx clspec_ctx;       /* a context of a clspec_model with its own typed KV cache */

/* KV / tensor element types (the GGUF type ids). */
enum clspec_type {
    CLSPEC_TYPE_F32 = 0,
    CLSPEC_TYPE_F16 = 1,
    CLSPEC_TYPE_Q4_0 = 2,
    CLSPEC_TYPE_Q8_0 = 8,
    CLSPEC_TYPE_BF16 = 30,
};

/* Every info struct starts with size: the caller sets it to sizeof as it was
 * compiled, the host fills at most that many bytes (fields the host does not
 * know stay as the caller left them, so zero the struct first). */

struct clspec_device_info {
    uint32_t size;
    int32_t index;          /* host device index (0..n_devices-1) */
    const char *name;       /* OpenCL device name (host-owned) */
    const char *vendor;
    uint64_t global_mem;    /* bytes */
    uint64_t max_alloc;     /* bytes, largest single buffer */
    int32_t is_gpu;         /* 1 = GPU, 0 = CPU/other */
};

struct clspec_model_info {
    uint32_t size;
    const char *arch;       /* general.architecture ("llama", ...) */
    uint32_t n_vocab;
    uint32_t n_embd;        /* hidden size */
    uint32_t n_layer;
    uint32_t n_ctx_train;   /* 0 when unknown */
    int32_t bos, eos;       /* token ids, -1 when absent */
    int32_t device;         /* device index of the model's last layer (the target: where logits are made) */
};

/* The target (served) model and its context. */
struct clspec_target_info {
    uint32_t size;
    struct clspec_model_info model;
    uint32_t n_ctx;         /* KV cells of the target context (all slots together) */
    uint32_t n_slots;       /* slot ids passed to the plugin are 0..n_slots-1 */
    uint32_t type_k, type_v;/* enum clspec_type of the target KV */
};

struct clspec_ctx_params {
    uint32_t size;
    uint32_t n_ctx;         /* KV cells in all */
    uint32_t n_batch;       /* most rows one ctx_decode takes */
    uint32_t n_seq;         /* sequence ids 0..n_seq-1 (use the slot id as sequence id) */
    uint32_t type_k, type_v;/* enum clspec_type */
    int32_t non_causal;     /* 1: rows of one decode attend to each other in both directions (DFlash) */
};

/* One decode: n rows of (token or embedding, position, sequence). */
struct clspec_decode {
    uint32_t size;
    int32_t n;
    const int32_t *tokens;  /* (n) token ids, or NULL when embd is used */
    const float *embd;      /* (n, n_embd) input embeddings instead of tokens, or NULL */
    const int32_t *pos;     /* (n) positions */
    const int32_t *seq;     /* (n) sequence ids */
    const uint8_t *logits;  /* (n) 1 = keep this row's logits (ctx_logits), NULL = last row only */
};

/* model_load flags. */
#define CLSPEC_MODEL_TARGET_TENSORS (1u << 0) /* tensors the GGUF lacks (token_embd, output_norm, output) are
                                               * the target's, shared (copied once when on another device);
                                               * needs host minor >= 2 (MTP heads, DFlash drafters) */
#define CLSPEC_MODEL_NEXTN (1u << 1)          /* path NULL: the target GGUF's own nextn blocks
                                               * ({arch}.nextn_predict_layers); minor >= 2 */

/* ---- the host services table ----------------------------------------------
 * Handed to init; valid until fini returns. Entries documented "may be NULL"
 * are absent on hosts that do not provide them yet: check before calling
 * (and fail init with a clear message when the plugin needs one). Entries
 * past `size` do not exist: read them only when
 * offsetof(struct clspec_host, entry) < host->size. */
struct clspec_host {
    uint32_t abi_major;      /* CLSPEC_SPEC_ABI_MAJOR of the host */
    uint32_t abi_minor;
    uint32_t size;           /* sizeof(struct clspec_host) as the host built it */
    void *impl;              /* host-private; pass the table, never touch this */

    /* -- always provided (1.0) -- */

    /* printf-style log line, prefixed by the host with the plugin's name. */
    void (*log)(const struct clspec_host *h, int level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* The value of key in the plugin's INI section ([speculator] or the
     * CLI's --spec-opt key=value), NULL when not set. Host-owned. */
    const char *(*config_get)(const struct clspec_host *h, const char *key);
    /* The target model and context. */
    int (*target_info)(const struct clspec_host *h, struct clspec_target_info *out);
    int32_t (*n_devices)(const struct clspec_host *h);
    int (*device_info)(const struct clspec_host *h, int32_t index, struct clspec_device_info *out);
    /* The text of token id in the target's vocabulary (NULL when out of range); host-owned. */
    const char *(*token_text)(const struct clspec_host *h, int32_t id);

    /* -- draft models: may be NULL (provided by hosts of minor >= 1) -- */

    /* Loads a GGUF onto device (-1 = the target's last device). flags:
     * CLSPEC_MODEL_* (0 for a self-contained draft model); a flag the host
     * does not support is an error naming it. */
    int (*model_load)(const struct clspec_host *h, const char *path, int32_t device, uint32_t flags,
                      clspec_model **out, char *err, size_t errlen);
    void (*model_free)(clspec_model *m);
    int (*model_info)(const clspec_model *m, struct clspec_model_info *out);
    /* Token text in m's vocabulary (vocabulary checks), NULL when out of range. */
    const char *(*model_token_text)(const clspec_model *m, int32_t id);
    int (*ctx_new)(clspec_model *m, const struct clspec_ctx_params *p, clspec_ctx **out, char *err, size_t errlen);
    void (*ctx_free)(clspec_ctx *c);
    /* Removes seq's cells with p0 <= pos < p1 (p1 < 0: to the end). */
    int (*ctx_seq_rm)(clspec_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);
    /* Runs one batch; all rows' sequences at once. A plain model takes
     * tokens; an MTP head (model_load of a file with nextn blocks, 1.2)
     * takes per row a token AND an embedding (embd: the target's
     * pre-final-norm hidden state, or the head's own output from ctx_hidden). */
    int (*ctx_decode)(clspec_ctx *c, const struct clspec_decode *d, char *err, size_t errlen);
    /* Logits (n_vocab floats) of the i-th kept row of the last decode; NULL if none. */
    const float *(*ctx_logits)(clspec_ctx *c, int32_t i);

    /* -- target taps, target tensors and KV injection: may be NULL (NULL until 1.2) -- */

    /* Asks for the target's hidden states at layers[0..n) (k < n_layer: the
     * input of layer k; k = n_layer: the state before the final norm) for
     * every row of every later target forward. Call from init. */
    int (*tap_request)(const struct clspec_host *h, const int32_t *layers, int32_t n, char *err, size_t errlen);
    /* The taps of slot's target rows since the plugin's previous call for
     * this slot: at slot_begin every prompt row (all prefill chunks), at
     * draft / accept the rows [last, d1..dk] of the verification (read row
     * n_accepted for the state after the accepted prefix). (n_layers,
     * *n_rows, n_embd) floats in tap_request's layer order, host-owned until
     * the call returns; *first_pos = position of row 0. NULL: no rows. */
    const float *(*tap_get)(const struct clspec_host *h, int32_t slot, int32_t *n_rows, int32_t *first_pos);
    /* Rows of the target's token embedding for tokens (n): out (n, n_embd) f32
     * (inputs of ctx_decode with embd, e.g. DFlash's [last, MASK x n] block). */
    int (*target_embed)(const struct clspec_host *h, const int32_t *tokens, int32_t n, float *out, char *err,
                        size_t errlen);
    /* The target's head on hidden states: output_norm, then output (token_embd
     * when tied): hidden (n, n_embd) -> logits (n, n_vocab). */
    int (*target_head)(const struct clspec_host *h, const float *hidden, int32_t n, float *logits, char *err,
                       size_t errlen);
    /* Writes K and V rows (f32, (n, n_kv_head * head_dim) each, K before
     * RoPE) of layer into c's cache for (seq, pos[i]), converted to the
     * cache's own type exactly as its readers expect (RoPE at pos[i],
     * quantization to type_k / type_v). */
    int (*ctx_kv_inject)(clspec_ctx *c, int32_t layer, int32_t seq, const int32_t *pos, int32_t n, const float *k,
                         const float *v, char *err, size_t errlen);
    /* The hidden states of c's last decode before its final norm, (*n_rows,
     * n_embd), one row per decoded row; host-owned until the next decode. */
    const float *(*ctx_hidden)(clspec_ctx *c, int32_t *n_rows);

    /* -- DFlash drafters: may be NULL (provided by hosts of minor >= 3) --
     * model_load of a GGUF with general.architecture = "dflash" gives a
     * drafter that borrows the target's token_embd and output; ctx_new on it
     * makes a context whose ctx_decode runs a block: the rows' K/V are
     * visible to every row of the same sequence in the decode (non_causal = 1;
     * 0 keeps the model's dflash.attention.causal) and are dropped again
     * after it: only injected context (ctx_inject_taps) persists. */

    /* Integer value(s) of key in m's GGUF (an integer or bool scalar, or an
     * array of integers): at most cap of them to out; returns how many the
     * key holds, or < 0 when the key is absent or not integral (this host:
     * dflash models only; e.g. dflash.target_layers, dflash.block_size). */
    int32_t (*model_key_ints)(const clspec_model *m, const char *key, int64_t *out, int32_t cap);
    /* DFlash feature injection into c (a context of a dflash model): rows
     * pos..pos+n-1 of seq from target taps laid out as tap_get returns them,
     * (n_taps, ld, n_embd) floats with ld >= n (the first n rows are used),
     * the taps in the order of the model's dflash.target_layers. Per row:
     * g = enc.output_norm(fc(concat(taps))); every layer stores
     * K = rope(k_norm(W_k g), pos) and V = W_v g in c's cache, converted to
     * its type exactly as its readers expect. No attention. */
    int (*ctx_inject_taps)(clspec_ctx *c, int32_t seq, int32_t pos, int32_t n, const float *taps, int32_t ld,
                           char *err, size_t errlen);
};

/* ---- the plugin vtable ----------------------------------------------------- */

/* What draft() gets for one slot. */
struct clspec_draft_req {
    uint32_t size;           /* sizeof as the host built it */
    int32_t slot;            /* 0..n_slots-1 */
    const int32_t *hist;     /* (n_hist) the slot's tokens so far: prompt + generated; hist[n_hist-1] is
                              * the last token, the one the drafts continue (not yet in the target KV) */
    int32_t n_hist;
    int32_t pos_last;        /* position of hist[n_hist-1] (= n_hist - 1 today) */
    int32_t n_max;           /* draft at most this many tokens (>= 1) */
    float p_min;             /* a plugin with probabilities may stop when q(d_i) < p_min (the host also cuts there) */
    uint32_t n_vocab;        /* row length of probs */
};

struct clspec_speculator {
    uint32_t abi_major;      /* CLSPEC_SPEC_ABI_MAJOR the plugin was built with */
    uint32_t size;           /* sizeof(struct clspec_speculator) as the plugin was built */
    const char *name;        /* short name for logs and metrics ("ngram") */
    uint64_t caps;           /* CLSPEC_SPEC_CAP_* */

    /* Required. Creates the plugin's state from the host table (read the
     * configuration with host->config_get, check optional host entries).
     * On failure: fill err with the reason (the host shows it verbatim) and
     * return < 0; fini is then not called. */
    int (*init)(const struct clspec_host *host, void **state, char *err, size_t errlen);
    /* Optional. Frees the state (every slot has ended). */
    void (*fini)(void *state);
    /* Optional. A new request starts on slot: prompt (n_prompt tokens, BOS
     * first) is what the target has been given. Any previous state of the
     * slot is gone (slot_end was called). */
    int (*slot_begin)(void *state, int32_t slot, const int32_t *prompt, int32_t n_prompt, char *err,
                      size_t errlen);
    /* Required. Proposes up to req->n_max tokens following req->hist into
     * out (n_max entries); when probs is not NULL (the plugin has
     * CLSPEC_SPEC_CAP_DRAFT_PROBS and the host samples) it also writes the
     * draft distribution of each proposed token: probs[i * n_vocab + v] =
     * q_i(v), rows summing to 1. Returns the count (0 = no draft this step)
     * or < 0 on error (the host then switches speculation off for the slot). */
    int (*draft)(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                 size_t errlen);
    /* Optional. After verification of the last draft of slot: n_accepted
     * of its drafted tokens were accepted (0..n_drafted); tokens (n_tokens =
     * n_accepted + 0 or 1) are what was appended to the slot's history: the
     * accepted drafts and then the target's own token (none when generation
     * stopped inside the draft). Everything the plugin keeps beyond the
     * accepted prefix must be dropped here. */
    void (*accept)(void *state, int32_t slot, int32_t n_drafted, int32_t n_accepted, const int32_t *tokens,
                   int32_t n_tokens);
    /* Optional. The request on slot ended, or speculation was switched off
     * for it: drop all of the slot's state. */
    void (*slot_end)(void *state, int32_t slot);

    /* -- 1.1 (optional; a 1.0 host ignores it) -- */

    /* Drafts for n slots at once (one batched decode for all of them): as
     * draft for each reqs[i], into out[i] (reqs[i].n_max entries) and, when
     * probs is not NULL, probs[i] (or NULL for that slot); n_out[i] gets the
     * count. When present the host calls it instead of draft. Returns 0, or
     * < 0 (the host then switches speculation off for these slots). */
    int (*draft_batch)(void *state, const struct clspec_draft_req *reqs, int32_t n, int32_t *const *out,
                       float *const *probs, int32_t *n_out, char *err, size_t errlen);
};

/* The smallest vtable a 1.x host accepts: everything up to slot_end. */
#define CLSPEC_SPEC_V1_MIN_SIZE (offsetof(struct clspec_speculator, slot_end) + sizeof(void (*)(void)))

/* The entry symbol every plugin exports. */
#define CLSPEC_SPECULATOR_ENTRY "clspec_speculator_entry"
typedef const struct clspec_speculator *(*clspec_speculator_entry_fn)(void);
const struct clspec_speculator *clspec_speculator_entry(void);

#ifdef __cplusplus
}
#endif

#endif
