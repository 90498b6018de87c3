/* clspec.h: the public engine API of libclspec.
 * Every function that can fail returns an int status (CLSPEC_OK or a negative
 * enum clspec_status) and, where it takes one, fills a caller-owned message
 * buffer with a human-readable explanation ("file: what: where").
 * Below the status codes: the engine door (open a model, tokenize, decode
 * batches of many sequences, edit sequences in the KV cache, sample, tap
 * hidden states). What the caller owns is said at "The engine door". */
#ifndef CLSPEC_CLSPEC_H
#define CLSPEC_CLSPEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLSPEC_VERSION_MAJOR 0
#define CLSPEC_VERSION_MINOR 1
#define CLSPEC_VERSION_PATCH 0

/* Recommended size of the message buffers the API fills. */
#define CLSPEC_ERRLEN 512

enum clspec_status {
    CLSPEC_OK = 0,
    CLSPEC_E_IO = -1,          /* a file or socket could not be read or written */
    CLSPEC_E_FORMAT = -2,      /* malformed input: truncated/hostile GGUF, bad JSON, ... */
    CLSPEC_E_NOMEM = -3,       /* host allocation failed */
    CLSPEC_E_INVAL = -4,       /* bad argument or configuration value */
    CLSPEC_E_UNSUPPORTED = -5, /* valid, but not something clspec implements */
    CLSPEC_E_CL = -6,          /* an OpenCL call failed */
    CLSPEC_E_RANGE = -7,       /* an index, size or length out of range */
    CLSPEC_E_NOTFOUND = -8,    /* a key, tensor, device or file does not exist */
    CLSPEC_E_KV_FULL = -9,     /* the KV cache has no free cell for this sequence */
    CLSPEC_E_CONTEXT = -10,    /* the prompt does not fit the context */
    CLSPEC_E_PLUGIN = -11,     /* a speculator plugin failed to load or initialise */
    CLSPEC_E_BUSY = -12,       /* a queue or pool is full */
    CLSPEC_E_CANCELLED = -13,  /* the request was cancelled */
    CLSPEC_E_SHUTDOWN = -14,   /* the server is draining and takes no new work */
};

/* A static, never-NULL description of a status code. */
const char *clspec_strerror(int status);

/* The library version as "MAJOR.MINOR.PATCH". */
const char *clspec_version(void);

/* ==== The engine door ======================================================
 * One model opened on one or several OpenCL devices with one KV cache shared
 * by up to CLSPEC_MAX_SEQ sequences: tokenize, decode batches of rows of many
 * sequences, edit sequences in the cache, sample, and tap hidden states.
 *
 * Ownership: every handle returned by a *_open / *_new / *_save is freed by
 * the matching *_free (NULL is accepted and ignored). Strings and arrays the
 * library returns (engine info, clspec_logits, clspec_tap) belong to the
 * engine; logits and taps stay valid until the next clspec_decode or
 * clspec_engine_free. Buffers the caller passes in are only read during the
 * call.
 *
 * Growing structs start with `size`: the caller sets it to sizeof as it was
 * compiled (the *_default_params functions do so); the library reads or
 * writes only the fields inside size, so a program built against an older
 * header keeps working.
 *
 * Threading: one engine (and one sampler) from one thread at a time.
 *
 * A minimal greedy generator (examples/generate.c is the complete one):
 *
 *     struct clspec_engine_params ep;
 *     clspec_engine_default_params(&ep, sizeof ep);
 *     ep.model_path = "stories260K.gguf";
 *     clspec_engine_open(&ep, &e, err, sizeof err);
 *     clspec_tokenize(e, text, strlen(text), 1, 0, ids, cap, &n, err, sizeof err);
 *     struct clspec_batch b = {sizeof b, (int32_t)n, ids, pos, NULL, NULL, NULL};
 *     clspec_decode(e, &b, NULL, err, sizeof err);   // logits of the last row
 *     int32_t t = clspec_argmax(clspec_logits(e, (int32_t)n - 1), info.n_vocab);
 */

#define CLSPEC_MAX_SEQ 64    /* sequence ids are 0..CLSPEC_MAX_SEQ-1 (n_seq of them usable) */
#define CLSPEC_MAX_DEVICES 8 /* devices one engine may split its layers over */

typedef struct clspec_engine clspec_engine;               /* model + devices + KV cache */
typedef struct clspec_sampler clspec_sampler;             /* sampling chain of one sequence */
typedef struct clspec_sampler_state clspec_sampler_state; /* a saved sampler state */

/* KV cache element types (their GGUF type ids). */
enum clspec_kv_type {
    CLSPEC_KV_F32 = 0,
    CLSPEC_KV_F16 = 1,
    CLSPEC_KV_Q4_0 = 2,
    CLSPEC_KV_Q8_0 = 8,
    CLSPEC_KV_BF16 = 30,
};

/* "f32", "f16", "q4_0", "q8_0", "bf16"; NULL for another value. */
const char *clspec_kv_type_name(uint32_t type);
/* The type of such a name, or CLSPEC_E_INVAL. */
int clspec_kv_type_from_name(const char *name);

/* ---- opening an engine ---- */
struct clspec_engine_params {
    uint32_t size;            /* sizeof(struct clspec_engine_params) as the caller was built */
    const char *model_path;   /* GGUF file (required; copied) */
    const char *devices;      /* "0", "0,1", "pthread", "1,cpu": indices or device-name substrings,
                               * comma separated; NULL or "" = the first device (copied) */
    int32_t split_by_memory;  /* 0: split[] = layers per device; 1: split[] = relative weights
                               * (all 0: the devices' global memory) */
    uint32_t split[CLSPEC_MAX_DEVICES]; /* per device in the order of `devices`; all 0 = even split */
    uint32_t n_ctx;           /* KV cells for all sequences together; 0 = min(training context, 2048) */
    uint32_t n_batch;         /* most rows one clspec_decode takes (default 512) */
    uint32_t n_ubatch;        /* rows per device pass, <= n_batch (default 512) */
    uint32_t type_k, type_v;  /* enum clspec_kv_type of cached keys / values (default f16 / f16) */
    uint32_t n_seq;           /* sequences 0..n_seq-1 (1..CLSPEC_MAX_SEQ, default 1) */
    int32_t kv_partitioned;   /* 0 (default): any sequence takes any cell; 1: n_ctx / n_seq cells each */
    int32_t progress;         /* 1: a loading progress line on stderr when it is a terminal */
    int32_t llamacpp_numerics;/* 1: llama.cpp's x86 CPU arithmetic bit for bit (slow; f16 cache) */
    int32_t vocab_only;       /* 1: read only the GGUF's metadata and vocabulary (no device is
                               * opened): info and the tokenizer work, decoding and the
                               * sequence operations fail with CLSPEC_E_INVAL */
    /* appended after vocab_only */
    uint32_t n_draft_max;     /* hybrid models (recurrent layers): the longest draft one speculative step
                               * verifies, i.e. the most tail positions one clspec_seq_rm may drop; each
                               * sequence keeps n_draft_max + 1 recurrent states (0..15: 16 states).
                               * 0..1024; no effect on other models */
};

/* Fills *p (size bytes, normally sizeof *p) with the defaults above and sets p->size. */
void clspec_engine_default_params(struct clspec_engine_params *p, size_t size);

/* Opens the model, its devices, the weights and the KV cache. On failure
 * *out is NULL, nothing stays allocated and err names the failing part
 * ("model.gguf: ...", "device 2: no such device (have 0..1)"). */
int clspec_engine_open(const struct clspec_engine_params *p, clspec_engine **out, char *err, size_t errlen);
void clspec_engine_free(clspec_engine *e);

/* What an engine holds. The caller sets size; strings belong to the engine. */
struct clspec_engine_info {
    uint32_t size;            /* sizeof(struct clspec_engine_info) as the caller was built */
    const char *arch;         /* "llama", "qwen2", "qwen3" */
    int32_t n_vocab;          /* rows of the logits */
    int32_t n_embd;           /* width of the hidden state (a tap row) */
    int32_t n_layer;          /* trunk layers (taps take 0..n_layer) */
    int32_t n_head, n_head_kv;
    uint32_t n_ctx_train;     /* the model's training context (0 when the GGUF has none) */
    uint32_t n_ctx;           /* KV cells as opened (0 when vocab_only) */
    uint32_t n_batch, n_ubatch, n_seq; /* as opened (defaults filled in) */
    uint32_t type_k, type_v;  /* enum clspec_kv_type */
    int32_t bos, eos;         /* token ids, -1 when the vocabulary has none */
    int32_t add_bos;          /* 1: clspec_tokenize(add_special = 1) puts BOS first */
    int32_t has_chat_template;/* 1: the GGUF has tokenizer.chat_template */
    uint64_t weight_bytes;    /* device bytes of the weights, all devices */
    uint64_t kv_bytes_per_token; /* device bytes of one cached token, all layers, K + V */
    double load_s;            /* wall seconds clspec_engine_open took */
    int32_t n_devices;        /* 0 when vocab_only */
    const char *device_name[CLSPEC_MAX_DEVICES];  /* (n_devices) OpenCL device names */
    uint32_t device_layers[CLSPEC_MAX_DEVICES];   /* (n_devices) layers on each device */
    int32_t kv_partitioned;   /* 1: each sequence has n_ctx / n_seq cells of its own (0 when vocab_only) */
    /* appended in 0.1 after kv_partitioned (a caller whose size ends before them does not get them) */
    uint64_t n_params;        /* elements of the trunk's weight tensors (a tied output counted once) */
    uint64_t model_bytes;     /* bytes of those tensors in the GGUF */
    const char *weight_type;  /* GGUF type name of the trunk's weights (layer 0's attn_q: "q8_0", "f16") */
    uint32_t kv_dim;          /* values of K (and of V) per token and layer: n_head_kv * head_dim */
    int32_t strips_space;     /* 1: clspec_detokenize drops the leading space of the first token's piece
                               * (SentencePiece add_space_prefix): a generation that starts the text
                               * shows the first piece without it */
    uint32_t n_draft_max;     /* hybrid models: the most tail positions one clspec_seq_rm may drop (the
                               * longest draft a speculative step may verify); 0: no recurrent state, no limit */
};
int clspec_engine_get_info(const clspec_engine *e, struct clspec_engine_info *info, char *err, size_t errlen);

/* ---- text <-> tokens ----
 * The buffer rule of all three: up to cap entries (bytes) are written and
 * *n_out gets the full count; when cap is too small the call returns
 * CLSPEC_E_RANGE with *n_out = the count needed. */
/* add_special: BOS/EOS as the vocabulary asks; parse_special: control tokens
 * written in the text ("<s>") become their id. */
int clspec_tokenize(const clspec_engine *e, const char *text, size_t len, int add_special, int parse_special,
                    int32_t *out, size_t cap, size_t *n_out, char *err, size_t errlen);
/* The text of a sequence (NUL-terminated; *n_out without the NUL).
 * remove_special drops a leading BOS / trailing EOS; unparse_special renders
 * control tokens. */
int clspec_detokenize(const clspec_engine *e, const int32_t *ids, size_t n, int remove_special,
                      int unparse_special, char *buf, size_t cap, size_t *n_out, char *err, size_t errlen);
/* The text of one token (NUL-terminated). Control tokens give "" unless special. */
int clspec_token_piece(const clspec_engine *e, int32_t id, int special, char *buf, size_t cap, size_t *n_out,
                       char *err, size_t errlen);
/* 1 when id ends generation (EOS, EOT, <|im_end|>, ...), 0 otherwise (also for invalid arguments). */
int clspec_token_is_eog(const clspec_engine *e, int32_t id);
/* Token types (the GGUF's tokenizer.ggml.token_type values). */
enum clspec_token_type {
    CLSPEC_TOKEN_UNDEFINED = 0,
    CLSPEC_TOKEN_NORMAL = 1,
    CLSPEC_TOKEN_UNKNOWN = 2,
    CLSPEC_TOKEN_CONTROL = 3,      /* BOS, EOS, <|im_start|>, ...: no text unless rendered as special */
    CLSPEC_TOKEN_USER_DEFINED = 4,
    CLSPEC_TOKEN_UNUSED = 5,
    CLSPEC_TOKEN_BYTE = 6,         /* <0x0A>: one raw byte */
};
/* The enum clspec_token_type of id; CLSPEC_E_RANGE for an id outside the
 * vocabulary, CLSPEC_E_INVAL for a NULL engine. */
int clspec_token_type(const clspec_engine *e, int32_t id);
/* The vocabulary's string of id as stored in the GGUF ("</s>", "\xe2\x96\x81the",
 * "Ġthe"; not NUL-terminated: *len gets its length, len may be NULL). NULL for
 * an id outside the vocabulary. Belongs to the engine. */
const char *clspec_token_text(const clspec_engine *e, int32_t id, size_t *len);
/* The GGUF's tokenizer.chat_template (the Jinja source, not NUL-terminated:
 * *len gets its length, len may be NULL); NULL when the model has none.
 * Belongs to the engine. */
const char *clspec_chat_template(const clspec_engine *e, size_t *len);

/* ---- decoding ----
 * One call runs rows of many sequences through the model and stores their
 * K/V in the cache; each row attends causally to its own sequence. Rows of
 * one sequence come in increasing position order. */
struct clspec_batch {
    uint32_t size;            /* sizeof(struct clspec_batch) as the caller was built */
    int32_t n_rows;           /* >= 1; long batches run as several n_ubatch passes */
    const int32_t *token;     /* (n_rows) token ids 0..n_vocab-1 */
    const int32_t *pos;       /* (n_rows) positions >= 0 */
    const int32_t *seq;       /* (n_rows) sequence ids 0..n_seq-1; NULL = all 0 */
    const uint8_t *logits;    /* (n_rows) 1 = keep this row's logits; NULL = the last row only */
    /* appended after logits (a caller whose size ends before it does not have it): input embeddings
     * instead of tokens. NULL: every row is a token. Else
     * (n_rows, n_embd) floats: a row whose token is negative takes row i of embd as its input
     * (image rows from clspec_image_encode); the others ignore their row of embd. The negative id
     * stays with the row's cell as its identity for clspec_prefix_match: give the rows of an image
     * ids derived from its content (a reused prefix then matches the same image only), or
     * CLSPEC_TOKEN_EMBD, which never matches. */
    const float *embd;
    /* appended after embd: greedy rows. NULL: none. Else (n_rows): 1 = a kept row (logits[i] set)
     * whose logits stay on the device: clspec_logits gives NULL for it, clspec_greedy its argmax
     * (the first maximum, as clspec_argmax) and how far a draft in the rows after it matches.
     * Consecutive greedy rows of one sequence form a run; the rows' argmaxes and the run matches
     * come back as a few integers per row instead of n_vocab floats. */
    const uint8_t *greedy;
};
/* The anonymous id of an embedding row (clspec_batch.embd): never matched by clspec_prefix_match. */
#define CLSPEC_TOKEN_EMBD (-1)

/* Decodes b. Placement is all or nothing per sequence: a sequence whose
 * rows do not fit the cache is left out of this decode (its cache
 * unchanged) while the others run. seq_status (CLSPEC_MAX_SEQ entries, or
 * NULL) gets per sequence CLSPEC_OK or CLSPEC_E_KV_FULL (CLSPEC_OK for
 * sequences absent from b); with seq_status NULL a full sequence makes the
 * call return CLSPEC_E_KV_FULL. Another error (invalid batch, device)
 * fails the whole call and no logits are readable. */
int clspec_decode(clspec_engine *e, const struct clspec_batch *b, int *seq_status, char *err, size_t errlen);
/* The logits (n_vocab floats) of row `row` of the last clspec_decode; NULL
 * when that row's logits were not kept, its sequence was full, or row is out
 * of range. The kept rows lie in one array in row order: the k-th kept row
 * after row r is at clspec_logits(e, r) + k * n_vocab (a caller may read a
 * run of kept rows through one pointer). */
const float *clspec_logits(const clspec_engine *e, int32_t row);
/* Index of the largest of n values (the first on ties; NaN never wins over a number): greedy
 * sampling. -1 when x is NULL or n < 1. */
int32_t clspec_argmax(const float *x, int32_t n);
/* A greedy row of the last clspec_decode (clspec_batch.greedy): *n_match = how many rows from
 * `row` on, within its run, have an argmax equal to the token of the row after them (a greedily
 * verified draft: the tokens accepted), *next = the argmax of the row where that stops (the
 * token greedy decoding takes there). CLSPEC_E_INVAL when row was not a greedy row of that
 * decode or its sequence was full. */
int clspec_greedy(const clspec_engine *e, int32_t row, int32_t *n_match, int32_t *next);

/* ---- hidden-state taps ----
 * From the next clspec_decode on, every decode also keeps the hidden state
 * of each row at the given layers: layers[i] = k < n_layer is the input of
 * layer k, = n_layer the state before the final norm. n_layers 0 turns taps
 * off. At most 64 layers. */
int clspec_taps_set(clspec_engine *e, const int32_t *layers, int32_t n_layers, char *err, size_t errlen);
/* Row `row` of the last decode at tap i (the i-th of the layers given),
 * n_embd floats; NULL when out of range or that row's sequence was full. */
const float *clspec_tap(const clspec_engine *e, int32_t i, int32_t row);

/* ---- sequences in the KV cache ----
 * Positions p0 <= pos < p1; p1 < 0 means "to the end". Changes take effect
 * at the next decode. */
/* Removes the cells of seq in [p0, p1) (seq -1: of every sequence);
 * cells shared with other sequences stay theirs. Speculative rollback. */
int clspec_seq_rm(clspec_engine *e, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);
/* dst gets src's cells in [p0, p1) (prefix sharing: the cells are shared,
 * not duplicated, in a unified cache; copied into dst's part of a
 * partitioned one, CLSPEC_E_KV_FULL when they do not fit). dst's own cells
 * in [p0, p1) are removed first. */
int clspec_seq_cp(clspec_engine *e, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err, size_t errlen);
/* Removes every sequence but seq. */
int clspec_seq_keep(clspec_engine *e, int32_t seq, char *err, size_t errlen);
/* Empties the whole cache. */
int clspec_kv_clear(clspec_engine *e, char *err, size_t errlen);
/* Cells seq holds (shared ones included). */
int clspec_seq_n_cells(const clspec_engine *e, int32_t seq, uint32_t *n_cells, char *err, size_t errlen);
/* Cells seq could still take (in a partitioned cache less than the free total). */
int clspec_seq_n_free(const clspec_engine *e, int32_t seq, uint32_t *n_free, char *err, size_t errlen);
/* Occupied cells of the whole cache (a cell shared by several sequences
 * counts once) and free ones; either pointer may be NULL. */
int clspec_kv_usage(const clspec_engine *e, uint32_t *n_used, uint32_t *n_free, char *err, size_t errlen);
/* Largest position seq holds, -1 when it holds none. */
int clspec_seq_pos_max(const clspec_engine *e, int32_t seq, int32_t *pos_max, char *err, size_t errlen);
/* Prefix reuse: *n_match = the longest k such that a sequence other than
 * dst holds tokens[0..k) at positions 0..k-1; *src = that sequence (-1 when
 * k = 0). Share it with clspec_seq_cp(e, *src, dst, 0, k) and decode from k. */
int clspec_prefix_match(const clspec_engine *e, const int32_t *tokens, int32_t n, int32_t dst, int32_t *n_match,
                        int32_t *src, char *err, size_t errlen);

/* ---- sampling ---- */
struct clspec_sampler_params {
    uint32_t size;            /* sizeof(struct clspec_sampler_params) as the caller was built */
    float temp;               /* <= 0: greedy (argmax after penalties); default 0.8 */
    int32_t top_k;            /* <= 0 or >= n_vocab: off; default 40 */
    float top_p;              /* in (0, 1]; 1: off; default 0.95 */
    float min_p;              /* in [0, 1); 0: off; default 0.05 */
    float repeat_penalty;     /* > 0; 1: off (default); logit > 0 divided, <= 0 multiplied */
    float freq_penalty;       /* 0: off (default); logit -= count * freq_penalty */
    float presence_penalty;   /* 0: off (default); logit -= (count > 0) * presence_penalty */
    int32_t penalty_last_n;   /* accepted tokens the penalties look at (default 64; 0: off) */
    uint64_t seed;            /* RNG seed (default 0) */
};
/* Fills *p (size bytes, normally sizeof *p) with the defaults above and sets p->size. */
void clspec_sampler_default_params(struct clspec_sampler_params *p, size_t size);

int clspec_sampler_new(const struct clspec_sampler_params *p, int32_t n_vocab, clspec_sampler **out, char *err,
                       size_t errlen);
void clspec_sampler_free(clspec_sampler *s);
/* Picks a token (>= 0) from a logits row (n_vocab floats, not modified);
 * advances the RNG when not greedy but does not record the token (see
 * accept). CLSPEC_E_INVAL when s or logits is NULL. */
int32_t clspec_sampler_sample(clspec_sampler *s, const float *logits);
/* Records a token in the penalty history (prompt tokens too, if wanted)
 * and advances the sampler's grammar, if any, over it. CLSPEC_E_RANGE for
 * an id outside the vocabulary; CLSPEC_E_INVAL (history recorded, grammar
 * unchanged) for a token the grammar forbids. */
int clspec_sampler_accept(clspec_sampler *s, int32_t token);
/* Clears the history and reseeds the RNG (a grammar starts again at its root). */
void clspec_sampler_reset(clspec_sampler *s);
/* A copy of everything that evolves while sampling (RNG, history);
 * restoring it into the same sampler rewinds it exactly. */
int clspec_sampler_save(const clspec_sampler *s, clspec_sampler_state **out, char *err, size_t errlen);
/* CLSPEC_E_INVAL when st was saved from a sampler with other parameters or vocabulary. */
int clspec_sampler_restore(clspec_sampler *s, const clspec_sampler_state *st, char *err, size_t errlen);
void clspec_sampler_state_free(clspec_sampler_state *st);
/* As clspec_sampler_save into a state saved earlier from this sampler (or
 * one with the same parameters and vocabulary): nothing is allocated
 * (CLSPEC_E_INVAL otherwise). A per-token snapshot. */
int clspec_sampler_save_into(const clspec_sampler *s, clspec_sampler_state *st, char *err, size_t errlen);
/* s's parameters (p->size set by the caller: the fields inside it are
 * written) and, when n_vocab is not NULL, its vocabulary size. */
int clspec_sampler_get_params(const clspec_sampler *s, struct clspec_sampler_params *p, int32_t *n_vocab, char *err,
                              size_t errlen);
/* The distribution s draws from for this logits row (n_vocab floats, not
 * modified) after its chain (penalties over the accepted history, top-k,
 * top-p, min-p, temperature), written to p (n_vocab floats, summing to 1;
 * one-hot at the greedy pick when temp <= 0). Advances nothing.
 * CLSPEC_E_INVAL when an argument is NULL. Rejection sampling against a
 * draft's distribution needs it. */
int clspec_sampler_probs(clspec_sampler *s, const float *logits, float *p);
/* A draw uniform in [0, 1) from s's RNG (advancing it as a sample does);
 * -1 when s is NULL. */
double clspec_sampler_uniform(clspec_sampler *s);

/* ---- grammar-constrained sampling (GBNF; JSON Schema through GBNF) ----
 * The format is llama.cpp's GBNF (its grammars/README.md): rules
 * `name ::= ...`, alternatives `|`, "literals" with \n \t \xHH \uHHHH
 * \UHHHHHHHH escapes, [classes] and [^negated] ones with ranges, `.`, groups,
 * `*` `+` `?` `{m}` `{m,}` `{m,n}`, `#` comments. A sampler with a grammar
 * draws only tokens whose text continues a sentence of the grammar (tokens
 * may split UTF-8 characters) and end-of-generation only where the text is
 * a complete sentence; save / restore / save_into carry the grammar's state
 * (speculative rollback rewinds it exactly). */
typedef struct clspec_grammar_vocab clspec_grammar_vocab; /* token texts prepared for masking */
/* The texts of e's vocabulary (each token rendered alone, control tokens
 * empty), built once and shared by every sampler given it (they keep it
 * alive: it may be freed before them). */
int clspec_grammar_vocab_new(const clspec_engine *e, clspec_grammar_vocab **out, char *err, size_t errlen);
void clspec_grammar_vocab_free(clspec_grammar_vocab *v);
/* Compiles gbnf (NUL-terminated) with start rule root (NULL: "root") and
 * constrains s by it from its current point; gbnf NULL removes the
 * grammar. CLSPEC_E_INVAL with "grammar: line:column: what" for bad text. */
int clspec_sampler_set_grammar(clspec_sampler *s, const clspec_grammar_vocab *v, const char *gbnf, const char *root,
                               char *err, size_t errlen);
/* Checks gbnf as clspec_sampler_set_grammar would (no vocabulary needed). */
int clspec_grammar_check(const char *gbnf, const char *root, char *err, size_t errlen);
/* How many of tokens[0..n) the grammar of s allows one after another from
 * its current state (n without a grammar; an allowed end-of-generation
 * token ends the count). Changes nothing: speculation cuts a draft there. */
int32_t clspec_sampler_grammar_prefix(clspec_sampler *s, const int32_t *tokens, int32_t n);
enum clspec_grammar_status {
    CLSPEC_GRAMMAR_NONE = 0,     /* no grammar */
    CLSPEC_GRAMMAR_OPEN = 1,     /* more text needed */
    CLSPEC_GRAMMAR_COMPLETE = 2, /* end of generation allowed (more text may be too) */
    CLSPEC_GRAMMAR_DEAD = 3,     /* no token could continue it: an end-of-generation token was forced */
};
int clspec_sampler_grammar_status(const clspec_sampler *s);
/* GBNF for a JSON Schema (schema: JSON text of len bytes), written to buf
 * with the buffer rule of clspec_tokenize (NUL-terminated; *n_out without
 * the NUL). schema "{}" or "true": any JSON value. Unsupported keywords are
 * refused with their JSON pointer ("json_schema: /properties/a: 'not' is
 * not supported"); title, description, examples, default, $schema, $id,
 * $comment are ignored. */
int clspec_json_schema_to_grammar(const char *schema, size_t len, char *buf, size_t cap, size_t *n_out, char *err,
                                  size_t errlen);
/* ---- the final norm (appended in 0.1: embeddings) ----
 * out = the model's final norm (RMS norm with output_norm's weights and the
 * model's epsilon) of x: n_embd floats each (x is the state a tap at layer
 * n_layer gives; out may be x). On the host, in double precision sums.
 * CLSPEC_E_INVAL for NULL arguments or an engine without weights. */
int clspec_final_norm(const clspec_engine *e, const float *x, float *out, char *err, size_t errlen);
/* ---- images: a vision projector ("mmproj" GGUF) beside the text model ----
 * An image becomes n_tokens rows of input embeddings (n_embd floats each)
 * that go into clspec_decode as rows with token CLSPEC_TOKEN_EMBD, at their
 * own positions (one per row), through the same batched forward as text. */
typedef struct clspec_mmproj clspec_mmproj;

struct clspec_mmproj_params {
    uint32_t size;            /* sizeof(struct clspec_mmproj_params) as the caller was built */
    const char *path;         /* the projector GGUF (required; copied) */
    const char *device;       /* the projector's device, as clspec_engine_params.devices names one;
                               * NULL or "" = the first device */
    uint64_t max_bytes;       /* largest encoded image accepted (0 = 20 MiB) */
    uint64_t max_pixels;      /* largest width * height accepted (0 = 40 megapixels) */
};

/* What a projector is (clspec_mmproj_get_info). */
struct clspec_mmproj_info {
    uint32_t size;            /* sizeof(struct clspec_mmproj_info) as the caller was built */
    const char *projector_type; /* clip.projector_type, e.g. "mlp" */
    int32_t image_size;       /* input side in pixels */
    int32_t n_tokens;         /* rows per image */
    int32_t n_embd;           /* width of each row (the text model's n_embd) */
    int32_t n_layer;          /* encoder blocks run */
    const char *device_name;  /* the projector's OpenCL device */
};

/* Fills *p (size bytes) with the defaults above. */
void clspec_mmproj_default_params(struct clspec_mmproj_params *p, size_t size);
/* Opens a projector for the text model of e (its output width must equal
 * e's n_embd: refused otherwise, naming both), uploads it and builds its
 * kernels. e is only read here; NULL skips the width check (tools that only
 * encode). */
int clspec_mmproj_open(const clspec_engine *e, const struct clspec_mmproj_params *p, clspec_mmproj **out, char *err,
                       size_t errlen);
void clspec_mmproj_free(clspec_mmproj *m);
/* Rows one image yields (the same for every image of this projector). */
int32_t clspec_mmproj_n_tokens(const clspec_mmproj *m);
int clspec_mmproj_get_info(const clspec_mmproj *m, struct clspec_mmproj_info *info, char *err, size_t errlen);
/* Decodes a PNG or JPEG (bytes, len), preprocesses it as the projector
 * wants and encodes it: out gets (clspec_mmproj_n_tokens, n_embd) floats.
 * CLSPEC_E_FORMAT for something that is not a readable image,
 * CLSPEC_E_RANGE past the size limits (the message names size and limit).
 * Thread-safe: calls on one projector run one at a time. */
int clspec_image_encode(clspec_mmproj *m, const void *bytes, size_t len, float *out, char *err, size_t errlen);

/* ---- logit bias (appended) ---- */
/* Sets s's logit bias: bias[i] is added to the logit of token ids[i]
 * (repeated ids add up; -INFINITY: never sampled) before penalties,
 * grammar and filters, for sample, probs and the speculative verification
 * alike; n = 0 clears it. Save / restore carry it. CLSPEC_E_RANGE for an id
 * outside the vocabulary, CLSPEC_E_INVAL for a NaN or +inf bias (s keeps
 * its previous bias then). */
int clspec_sampler_set_logit_bias(clspec_sampler *s, const int32_t *ids, const float *bias, int32_t n, char *err,
                                  size_t errlen);
/* The number of distinct token ids s biases (0 without a logit bias; 0 for
 * NULL). A biased greedy sampler is no plain argmax: callers that take the
 * argmax elsewhere (on the device) must check it. */
int32_t clspec_sampler_n_logit_bias(const clspec_sampler *s);
/* Whether s's pick is the plain argmax of the logits row (greedy, no logit
 * bias, penalty or grammar): 1 means a caller may take the argmax
 * elsewhere (on the device) instead of sampling. 1 or 0 (0 for NULL). */
int clspec_sampler_is_argmax(const clspec_sampler *s);

/* ---- chat template override (appended) ---- */
/* From now on clspec_chat_template(e) answers tmpl (len bytes, copied; no
 * NUL inside) instead of the GGUF's tokenizer.chat_template (a template
 * file, as llama-server's --chat-template-file); tmpl NULL (len 0) goes
 * back to the GGUF's. Not thread-safe against readers of the template. */
int clspec_set_chat_template(clspec_engine *e, const char *tmpl, size_t len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
