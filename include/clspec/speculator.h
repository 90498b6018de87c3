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
#define CLSPEC_SPEC_ABI_MINOR 8 /* grows as fields are appended or provided */

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
#define CLSPEC_SPEC_CAP_EMBD_ROWS (1ull << 6)      /* takes prompts with embedding rows (images): their tokens are
                                                    * CLSPEC_TOKEN_EMBD in slot_begin's prompt and in hist; a
                                                    * plugin without it sits out such requests (host >= 1.5) */

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

/* model_load flags (1.2 and 1.3 only: clspec's hosts of minor >= 4 refuse both with a
 * clear error; a drafter with its own network runs it on the compute service). */
#define CLSPEC_MODEL_TARGET_TENSORS (1u << 0) /* tensors the GGUF lacks (token_embd, output_norm, output) are
                                               * the target's, shared (copied once when on another device);
                                               * needs host minor >= 2 (MTP heads, DFlash drafters) */
#define CLSPEC_MODEL_NEXTN (1u << 1)          /* path NULL: the target GGUF's own nextn blocks
                                               * ({arch}.nextn_predict_layers); minor >= 2 */

/* ---- device compute service handles (1.4; see the end of struct clspec_host) ---- */
typedef struct clspec_gguf clspec_gguf;     /* a GGUF file opened for its metadata and tensors */
typedef struct clspec_dev clspec_dev;       /* one device's in-order queue; owns what is made on it */
typedef struct clspec_buf clspec_buf;       /* a device buffer of f32 or int32 elements */
typedef struct clspec_weight clspec_weight; /* a matrix on a device in its GGUF type (n_out rows of n_in) */
typedef struct clspec_kv clspec_kv;         /* a typed KV cache: n_layer layers of cells, per-sequence placement */

/* Element types of a clspec_buf (buf_new). */
#define CLSPEC_BUF_F32 0
#define CLSPEC_BUF_I32 1

/* The shape and type of a GGUF tensor (gguf_tensor). */
struct clspec_tensor_info {
    uint32_t size;
    uint32_t type;          /* GGUF type id (enum clspec_type and the other ggml types) */
    uint32_t n_dims;        /* 1..4 */
    uint64_t ne[4];         /* ne[0] innermost (a matrix: ne[0] = n_in, ne[1] = n_out); unused dims 1 */
};

/* ---- the engine's block builder through the compute service (1.4) ----
 * A llama-style layer (block_layer): [xb = rmsnorm(x) * attn_norm] -> q, k, v
 * = xb . Wq/Wk/Wv^T (+ biases) -> per-head q_norm / k_norm -> RoPE -> K/V
 * into the cache -> attention -> Wo -> x += ..., xb = rmsnorm(x) * ffn_norm
 * -> hb = silu(xb . Wg^T) * (xb . Wu^T) -> x += hb . Wd^T [, xb =
 * rmsnorm(x) * next_norm]. The engine's own code (src/model/block.h), so the
 * same bits as its forward passes. Every struct starts with size = sizeof
 * as the plugin was built. */
typedef struct clspec_layer clspec_layer;   /* one layer's weights and shape on a dev (layer_new) */

/* A layer's shape, the same for every layer of a model. */
struct clspec_block_shape {
    uint32_t size;
    int32_t n_embd;          /* E: residual width */
    int32_t n_head, n_head_kv; /* query / key-value heads (n_head a multiple of n_head_kv) */
    int32_t head_dim;        /* D: Q = n_head * D, KV = n_head_kv * D */
    int32_t n_ff;            /* F: FFN width */
    float eps;               /* RMSNorm epsilon of every norm of the block */
    int32_t n_rot;           /* RoPE: rotated dims per head (even, <= D) */
    int32_t neox;            /* 1: pairs (i, i + n_rot/2); 0: (2i, 2i+1) */
    float freq_base, freq_scale; /* theta_i = freq_scale * pos * freq_base^(-2i/n_rot) */
};

/* A layer's tensors, all on the dev of layer_new (weights: n_out rows of n_in). */
struct clspec_layer_desc {
    uint32_t size;
    clspec_weight *wq, *wk, *wv; /* (Q, E), (KV, E), (KV, E) */
    clspec_weight *wo;           /* (E, Q) */
    clspec_weight *w_gate, *w_up; /* (F, E) */
    clspec_weight *w_down;       /* (E, F) */
    const clspec_buf *attn_norm, *ffn_norm; /* f32 (E) */
    const clspec_buf *bq, *bk, *bv;         /* f32 (Q), (KV), (KV), or NULL: no bias */
    const clspec_buf *q_norm, *k_norm;      /* f32 (D) or NULL: no per-head norm */
};

/* The activation buffers of one pass of n rows, each used from element 0
 * and at least this long; all distinct, on the layer's dev. */
struct clspec_block_act {
    uint32_t size;
    clspec_buf *x;           /* f32 (n, E) residual stream, updated in place */
    clspec_buf *xb;          /* f32 (n, max(E, Q)) normed input, then projections; on return the next
                              * norm's output (next_norm) or the FFN's output */
    clspec_buf *q, *att;     /* f32 (n, Q) queries; attention output */
    clspec_buf *kc, *vc;     /* f32 (n, KV) this pass's K (after RoPE) and V */
    clspec_buf *hb, *hb2;    /* f32 (n, F) FFN hidden; scratch */
    clspec_buf *pos, *seq, *cell; /* int32 (n) position, sequence, KV cell (kv_place) of each row */
};

/* How block_layer runs. Zero-filled (but size): x not normed, non-causal,
 * every cell in use, no next norm. */
struct clspec_block_opt {
    uint32_t size;
    int32_t normed;          /* 1: xb already holds rmsnorm(x) * attn_norm (the previous layer's next_norm) */
    int32_t causal;          /* 1: a row sees its sequence's cells with pos <= its pos; 0: all of them */
    int32_t n_cells_used;    /* attention reads cells [0, n_cells_used); <= 0: every cell in use (as the
                              * engine: the cache's high-water mark) */
    const clspec_buf *next_norm; /* f32 (E) or NULL: after the FFN's residual add, xb = rmsnorm(x) * next_norm
                              * in the same launch (the next layer's attn_norm or the output norm) */
};

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

    /* -- DFlash drafters: may be NULL (provided by hosts of minor 3; NULL in
     * clspec's hosts since its DFlash plugin runs on the compute service) --
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

    /* -- device compute service: may be NULL (hosts of minor >= 4) --
     * A drafter's own forward pass on one of the target's devices, queued
     * without host round trips. dev_open gives a clspec_dev: the device's
     * in-order queue. Buffers, weights and KV caches are made on a dev and
     * belong to it: their free entries are optional (dev_close frees what is
     * left; the host closes every dev after fini). Ops and buf_write only
     * enqueue (buf_write copies src first, so src is free again at return);
     * buf_read and sync wait. Every op takes buffer handles with element
     * offsets (off) and is checked before it is queued: a handle of another
     * kind or another dev, a shape that does not fit the buffers, or a
     * bad type is an error (< 0, err) and nothing is queued. Rows are
     * row-major f32 (int32 for ids, positions, sequences, cells); an op's
     * inputs and outputs may not overlap unless the entry says so. */

    int (*dev_open)(const struct clspec_host *h, int32_t device, clspec_dev **out, char *err, size_t errlen);
    /* device: 0..n_devices-1, -1 = the target's last device (where its logits are made) */
    void (*dev_close)(clspec_dev *d);
    /* Waits until everything queued on d has run. */
    int (*sync)(clspec_dev *d, char *err, size_t errlen);

    /* GGUF files (host-owned mappings; valid until gguf_close). path NULL: the
     * target's own file (e.g. its nextn blocks). */
    int (*gguf_open)(const struct clspec_host *h, const char *path, clspec_gguf **out, char *err, size_t errlen);
    void (*gguf_close)(clspec_gguf *g);
    /* Integer value(s) of key (an integer or bool scalar, or an array of
     * integers): at most cap to out; returns how many the key holds, < 0
     * when absent or not integral. */
    int32_t (*gguf_ints)(const clspec_gguf *g, const char *key, int64_t *out, int32_t cap);
    /* A float (f32/f64, or an integer) scalar into *out; < 0 when absent or not numeric. */
    int (*gguf_float)(const clspec_gguf *g, const char *key, double *out);
    /* A string value into buf (NUL-terminated); < 0 when absent, not a string or longer than len - 1. */
    int (*gguf_str)(const clspec_gguf *g, const char *key, char *buf, size_t len);
    /* The shape and type of tensor name; < 0 (err) when absent. */
    int (*gguf_tensor)(const clspec_gguf *g, const char *name, struct clspec_tensor_info *out, char *err,
                       size_t errlen);

    /* Uploads: a 2-D tensor as a weight in its GGUF type (every type the
     * engine's matmul reads: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1,
     * q2_K..q6_K); any tensor dequantized to an f32 buffer (norm weights,
     * biases). Blocking (the upload is complete at return). */
    int (*weight_upload)(clspec_dev *d, const clspec_gguf *g, const char *name, clspec_weight **out, char *err,
                         size_t errlen);
    int (*vec_upload)(clspec_dev *d, const clspec_gguf *g, const char *name, clspec_buf **out, char *err,
                      size_t errlen);
    /* The target's tensors on d: "token_embd.weight", "output.weight" (the
     * token embedding when tied) as weights, "output_norm.weight" as an f32
     * buffer (target_vec). Shared with the target when it holds them on d,
     * else copied once; free them like any other handle. */
    int (*target_weight)(clspec_dev *d, const char *name, clspec_weight **out, char *err, size_t errlen);
    int (*target_vec)(clspec_dev *d, const char *name, clspec_buf **out, char *err, size_t errlen);
    /* n_in (row length), n_out (rows) and GGUF type of w (any may be NULL). */
    void (*weight_shape)(const clspec_weight *w, uint32_t *n_in, uint32_t *n_out, uint32_t *type);
    void (*weight_free)(clspec_weight *w);

    /* Buffers: n elements of CLSPEC_BUF_F32 or CLSPEC_BUF_I32 (contents undefined). */
    int (*buf_new)(clspec_dev *d, uint32_t type, size_t n, clspec_buf **out, char *err, size_t errlen);
    void (*buf_free)(clspec_buf *b);
    /* Elements [off, off + n) from src (enqueued; src is copied at the call). */
    int (*buf_write)(clspec_buf *b, size_t off, size_t n, const void *src, char *err, size_t errlen);
    /* Elements [off, off + n) into dst: waits for everything queued before it. */
    int (*buf_read)(clspec_buf *b, size_t off, size_t n, void *dst, char *err, size_t errlen);
    /* n_rows rows of n_cols elements: dst[dst_off + r * dst_ld + c] = src[src_off + r * src_ld + c]
     * (row copies, and a concat: copy each part into its columns of a wider row). Same element type. */
    int (*copy)(clspec_buf *dst, size_t dst_off, size_t dst_ld, const clspec_buf *src, size_t src_off,
                size_t src_ld, int32_t n_rows, int32_t n_cols, char *err, size_t errlen);

    /* Ops (enqueue only). Shapes: x (n_rows, n_in) -> y (n_rows, n_out). */
    int (*matmul)(const clspec_weight *w, const clspec_buf *x, size_t x_off, clspec_buf *y, size_t y_off,
                  int32_t n_rows, char *err, size_t errlen);
    /* q, k, v = x . wq^T, x . wk^T, x . wv^T (one launch where the engine can). */
    int (*matmul_qkv)(const clspec_weight *wq, const clspec_weight *wk, const clspec_weight *wv, const clspec_buf *x,
                      size_t x_off, clspec_buf *q, size_t q_off, clspec_buf *k, size_t k_off, clspec_buf *v,
                      size_t v_off, int32_t n_rows, char *err, size_t errlen);
    /* out (n_rows, n_ff) = silu(x . wg^T) * (x . wu^T) (the FFN's first half). */
    int (*matmul_swiglu)(const clspec_weight *wg, const clspec_weight *wu, const clspec_buf *x, size_t x_off,
                         clspec_buf *out, size_t out_off, int32_t n_rows, char *err, size_t errlen);
    /* out (n, n_in) = rows ids[ids_off .. ids_off + n) of w as f32 (embedding); an id out of range gives zeros. */
    int (*get_rows)(const clspec_weight *w, const clspec_buf *ids, size_t ids_off, int32_t n, clspec_buf *out,
                    size_t out_off, char *err, size_t errlen);
    /* y (n_rows, n_cols) = x / sqrt(mean(x^2) + eps) * w (w: (n_cols) f32, or NULL); y may be x (same off).
     * Per-head Q/K norms: n_rows = tokens * heads, n_cols = head_dim. */
    int (*rmsnorm)(const clspec_buf *x, size_t x_off, const clspec_buf *w, clspec_buf *y, size_t y_off,
                   int32_t n_rows, int32_t n_cols, float eps, char *err, size_t errlen);
    /* RoPE in place on x (n_rows, n_head, head_dim) at positions pos[pos_off ..] (int32, n_rows):
     * n_rot dims of each head (even, <= head_dim), neox = 1 rotates pairs (i, i + n_rot/2), 0 pairs
     * (2i, 2i+1); theta_i = freq_scale * pos * freq_base^(-2i/n_rot). */
    int (*rope)(clspec_buf *x, size_t x_off, const clspec_buf *pos, size_t pos_off, int32_t n_rows, int32_t n_head,
                int32_t head_dim, int32_t n_rot, int32_t neox, float freq_base, float freq_scale, char *err,
                size_t errlen);
    /* out[i] = a[i] + b[i], i < n (out may be a or b). */
    int (*add)(const clspec_buf *a, size_t a_off, const clspec_buf *b, size_t b_off, clspec_buf *out, size_t out_off,
               size_t n, char *err, size_t errlen);
    /* x (n_rows, n_cols) += bias (n_cols) on every row (Q/K/V biases). */
    int (*add_bias)(clspec_buf *x, size_t x_off, const clspec_buf *bias, int32_t n_rows, int32_t n_cols, char *err,
                    size_t errlen);
    /* out[i] = silu(gate[i]) * up[i], i < n (out may be gate or up). */
    int (*swiglu)(const clspec_buf *gate, size_t gate_off, const clspec_buf *up, size_t up_off, clspec_buf *out,
                  size_t out_off, size_t n, char *err, size_t errlen);
    /* out[out_off + r] (int32) = index of the largest of row r of x (n_rows, n_cols); ties: the first. */
    int (*argmax)(const clspec_buf *x, size_t x_off, clspec_buf *out, size_t out_off, int32_t n_rows, int32_t n_cols,
                  char *err, size_t errlen);

    /* KV caches: n_layer layers of n_ctx cells, each a K and a V row of
     * n_kv_head * head_dim elements of type_k / type_v (f32, f16, bf16,
     * q8_0, q4_0), cells shared by sequences 0..n_seq-1 (n_seq <= 64). */
    int (*kv_new)(clspec_dev *d, int32_t n_layer, int32_t n_kv_head, int32_t head_dim, int32_t n_ctx, int32_t n_seq,
                  uint32_t type_k, uint32_t type_v, clspec_kv **out, char *err, size_t errlen);
    void (*kv_free)(clspec_kv *kv);
    /* Places n rows (seq[i], pos[i]) (host arrays) in cells: a (seq, pos)
     * held by that sequence alone keeps its cell, else a free cell is
     * taken; all or nothing (a sequence that does not fit: < 0, nothing
     * placed). The cell of row i goes to cells[cells_off + i] (int32
     * device buffer, for kv_store) and, when cells_host is not NULL, to
     * cells_host[i]. Attention sees the placed cells from now on. */
    int (*kv_place)(clspec_kv *kv, int32_t n, const int32_t *pos, const int32_t *seq, clspec_buf *cells,
                    size_t cells_off, int32_t *cells_host, char *err, size_t errlen);
    /* Removes seq's cells with p0 <= pos < p1 (p1 < 0: to the end); seq < 0: every sequence. */
    int (*kv_seq_rm)(clspec_kv *kv, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);
    /* Writes K and V rows (f32, (n_rows, n_kv_head * head_dim), K after
     * RoPE) of layer into cells cells[cells_off + i], converted to the
     * cache's types. */
    int (*kv_store)(clspec_kv *kv, int32_t layer, const clspec_buf *k, size_t k_off, const clspec_buf *v,
                    size_t v_off, const clspec_buf *cells, size_t cells_off, int32_t n_rows, char *err,
                    size_t errlen);
    /* out (n_rows, n_head, head_dim) = softmax(q . K^T * scale) . V over
     * layer's cells visible to each row (same sequence seq[seq_off + i];
     * causal: cell pos <= pos[pos_off + i], else every cell of the
     * sequence), q (n_rows, n_head, head_dim) after RoPE; n_head a multiple
     * of n_kv_head. A row sees no cell: zeros. */
    int (*attention)(const clspec_kv *kv, int32_t layer, const clspec_buf *q, size_t q_off, clspec_buf *out,
                     size_t out_off, const clspec_buf *pos, size_t pos_off, const clspec_buf *seq, size_t seq_off,
                     int32_t n_rows, int32_t n_head, int32_t causal, float scale, char *err, size_t errlen);
    /* The residual add and the next norm in one launch: x += b, then y = rmsnorm(x) (* w), rows
     * (n_rows, n_cols); the same bits as add then rmsnorm. y may be b (same off), not x. */
    int (*add_rmsnorm)(clspec_buf *x, size_t x_off, const clspec_buf *b, size_t b_off, const clspec_buf *w,
                       clspec_buf *y, size_t y_off, int32_t n_rows, int32_t n_cols, float eps, char *err,
                       size_t errlen);

    /* -- compute service: the engine's block builder (1.4) -- */

    /* A layer of shape on d from desc's tensors (borrowed: the layer refers
     * to them, they must outlive its use). Every tensor is checked against
     * the shape ("layer_new: wk: 64 x 128, the shape wants n_in 128 x n_out
     * 32 (KV x E)"): a missing required one, a wrong shape, another dev, an
     * int32 or too short vector is CLSPEC_E_INVAL. Freed with layer_free or
     * its dev. */
    int (*layer_new)(clspec_dev *d, const struct clspec_layer_desc *desc, const struct clspec_block_shape *shape,
                     clspec_layer **out, char *err, size_t errlen);
    void (*layer_free)(clspec_layer *l);
    /* One whole layer over n_rows rows (the comment above struct
     * clspec_block_shape): K/V go to kv's layer kv_layer at act->cell; kv
     * has n_head_kv heads of head_dim on the layer's dev. act's buffers
     * are checked against n_rows and the shape first; enqueues only. */
    int (*block_layer)(const clspec_layer *l, clspec_kv *kv, int32_t kv_layer, const struct clspec_block_act *act,
                       int32_t n_rows, const struct clspec_block_opt *opt, char *err, size_t errlen);
    /* K/V only (DFlash's context injection): k = xb . Wk^T (+ bk), v = xb .
     * Wv^T (+ bv), k_norm, RoPE on k at act->pos, stored into kv_layer at
     * act->cell; reads act->xb (n_rows, E), writes kc, vc; x, q, att, hb,
     * hb2, seq unused (may be NULL). */
    int (*block_kv)(const clspec_layer *l, clspec_kv *kv, int32_t kv_layer, const struct clspec_block_act *act,
                    int32_t n_rows, char *err, size_t errlen);

    /* -- 1.6: greedy draft chains on the device: may be NULL (absent before 1.6) -- */

    /* Decodes d (tokens; its kept rows are the heads of n_chain chains, one per sequence, in row
     * order), then depth - 1 more rows per chain, each at the next position of its head's
     * sequence with the argmax of the chain's previous row as its token: all queued on the
     * device, one host sync at the end. amax (depth * n_chain): the argmax (the first maximum) of
     * each chain's row at depth 0 (the head), then depth 1, ...: a greedy draft of depth tokens
     * per chain. The cells of every row stay placed (positions head + 1 .. head + depth - 1 hold
     * drafts 1 .. depth - 1; drop rejected ones with ctx_seq_rm). A sequence without room for
     * all its rows: CLSPEC_E_KV_FULL, nothing placed. No logits are kept (ctx_logits: none).
     * d->n and n_chain at most the context's n_batch; CLSPEC_E_UNSUPPORTED where the host
     * cannot chain this model (the plugin then decodes depth by depth). */
    int (*ctx_decode_chain)(clspec_ctx *c, const struct clspec_decode *d, int32_t depth, int32_t *amax, char *err,
                            size_t errlen);
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

/* -- 1.7: where draft_batch_dev left one slot's draft: on the device, never read by the plugin -- */
struct clspec_draft_dev {
    uint32_t size;           /* sizeof as the host built it */
    const clspec_buf *buf;   /* an int32 buffer of the plugin's (compute service) on the target's device that
                              * embeds its input and makes its logits (host_model info: model.device) */
    size_t off, stride;      /* draft token d (0..n-1) is element off + d * stride (stride >= 1) */
    int32_t n;               /* tokens drafted (0..reqs[i].n_max; 0 = no draft this step) */
};

/* -- 1.4: what config_check gets: the speculator's configuration, read-only -- */

/* One key as the user set it (or its default). */
struct clspec_config_item {
    const char *key;         /* "model", "n_max", ... or a plugin key (clspecd: opt.KEY, the CLI:
                              * --spec-opt KEY=V) without any prefix */
    const char *value;
    int32_t line;            /* line in the host's configuration file; 0: a default, or not from a file */
};

/* Host-owned, valid during config_check only. Entries past size do not exist. */
struct clspec_config_view {
    uint32_t size;           /* sizeof as the host built it */
    void *impl;              /* host-private */
    int32_t n;               /* items */
    const struct clspec_config_item *items; /* (n) the keys the plugin's init will see with config_get */
    /* The value of key (as config_get), NULL when not set. */
    const char *(*get)(const struct clspec_config_view *v, const char *key);
    /* key is set but this plugin does not use it: the host warns, naming the
     * key's place and why, and checks nothing more of it. */
    void (*ignored)(const struct clspec_config_view *v, const char *key, const char *why);
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

    /* -- 1.4 (optional; older hosts ignore it, and a host asks no plugin without it) -- */

    /* Checks the plugin's own keys before anything is loaded: clspecd calls
     * it when it reads its INI file (start-up and clspecd --check), the CLI
     * before init; it may be called without any init following. No host
     * table, no target: only the view. On a problem: set *key to the key it
     * is about (one of the view, or a required one that is missing; a string
     * that lives as long as the view or the plugin), fill err with what is
     * wrong and how to fix it, without the key (the host writes
     * "file:line: [speculator] KEY: " before it), and return < 0. */
    int (*config_check)(const struct clspec_config_view *cfg, const char **key, char *err, size_t errlen);

    /* -- 1.7 (optional; older hosts ignore it, and the host falls back to draft_batch / draft) -- */

    /* Greedy drafts that stay on the device, so that the whole speculative
     * step costs one host sync: as draft_batch for reqs[0..n), but the
     * plugin only queues its work on its compute-service devs (no buf_read,
     * no sync) and says in out[i] where slot reqs[i].slot's tokens will be
     * (set out[i].buf, off, stride, n; out[i].size is the host's). The host
     * then queues the target's verification with those tokens read on the
     * device (same queue, so in order) and reads them back once with the
     * verdict; the plugin learns them in accept() as usual. Each token must
     * be a valid id (an argmax is), out[i].n fixed when the call returns
     * (no cut by probability), and the buffer must keep them until accept()
     * or slot_end() of that slot. The host calls it only for slots verified
     * greedily on the device with p_min = 0 (no probabilities); for the
     * others, and when the call fails with CLSPEC_E_UNSUPPORTED (e.g. a
     * drafter on another device), it uses draft_batch / draft. Another
     * error switches speculation off for these slots. */
    int (*draft_batch_dev)(void *state, const struct clspec_draft_req *reqs, int32_t n, struct clspec_draft_dev *out,
                           char *err, size_t errlen);

    /* -- 1.8 (optional; the host uses them only when both are set; older hosts ignore them, and a
     * host keeps calling accept after every step of a plugin without them) -- */

    /* The host keeps slot plain for a while (its cost-aware controller found no draft length that
     * pays): until slot_attach it asks no draft of slot and calls no accept for it, so the plugin
     * does no per-token work. The plugin keeps its context as of the slot's last accept (or
     * slot_begin) and may drop what only a next draft would use. The host keeps the target's taps
     * of every row it decodes for the slot meanwhile (tap_get has them after slot_attach, from the
     * first position after what the plugin read last). Called for an active slot only. */
    void (*slot_detach)(void *state, int32_t slot);
    /* The slot is back: tokens (n_tokens >= 0) are what its history gained while detached, in
     * order, as the accept calls the plugin missed would have given them (no drafts). Catch up on
     * them as on one accept of n_tokens tokens with nothing drafted. The host calls it before the
     * slot's next draft request (a re-probe, or a length that pays again), and now and then for a
     * long detachment, followed at once by slot_detach (so the kept taps stay bounded: at most 256
     * tokens). < 0 with err filled: the host switches speculation off for the slot's request. */
    int (*slot_attach)(void *state, int32_t slot, const int32_t *tokens, int32_t n_tokens, char *err,
                       size_t errlen);
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
