/* kv.h: the KV cache of one model context: per layer a K and a V buffer on
 * the device that runs that layer (types chosen independently), cell
 * metadata (position, sequence set, token) kept on the host and mirrored to
 * every device, the sequence operations speculative decoding and slots need,
 * and checkpoints. The caller owns struct cs_kv (cs_kv_new / cs_kv_free);
 * the devices are borrowed and must outlive it. */
#ifndef CS_KV_H
#define CS_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/batch.h"
#include "cl/runtime.h"
#include "model/model.h"
#include "ops/ops.h"

struct cs_kv_rec;

struct cs_kv_params {
    uint32_t n_ctx;          /* cells in all (all sequences together) */
    uint32_t type_k, type_v; /* enum cs_type: F32, F16, BF16, Q8_0, Q4_0 */
    uint32_t n_seq_max;      /* sequence ids 0..n_seq_max-1 may be used (1..CS_MAX_SEQ) */
    bool unified;            /* true: any sequence may take any cell; false: sequence s only takes
                              * cells of its partition [s * n_ctx / n_seq_max, (s + 1) * n_ctx / n_seq_max) */
};

/* One distinct device of the cache and its mirror of the cell metadata. */
struct cs_kv_dev {
    struct cs_cl_dev *dev;   /* borrowed */
    cl_mem cell_pos;         /* int32 (n_ctx), -1 = free */
    cl_mem cell_seq;         /* uint64 (n_ctx), bit s = sequence s holds the cell */
    cl_mem cell_order;       /* int32 (n_ctx), permutation: attention's visiting order */
};

struct cs_kv {
    struct cs_kv_params p;
    uint32_t n_layer, n_kv_head, head_dim;
    struct cs_rope_params rope;   /* of the model: seq_add re-rotates K by the position delta */
    int *layer_dev;               /* (n_layer) index into devs of the device of each layer */
    int n_dev;
    struct cs_kv_dev *devs;       /* (n_dev) */
    cl_mem *k, *v;                /* (n_layer) (n_ctx rows of n_kv_head * head_dim) of type_k / type_v; NULL for a
                                   * layer without K/V (cs_kv_new_layers) */
    uint64_t row_bytes_k, row_bytes_v; /* bytes of one cell's row in one layer */
    /* host cell metadata (authoritative; cs_kv_sync uploads what changed) */
    int32_t *pos;                 /* (n_ctx) position, -1 = free */
    uint64_t *seq;                /* (n_ctx) sequence set bitmask */
    int32_t *tok;                 /* (n_ctx) token held (-1 unknown): prefix reuse */
    uint32_t n_used;              /* occupied cells */
    int32_t hi;                   /* 1 + highest occupied cell: attention reads cells [0, hi) */
    int32_t dirty_lo, dirty_hi;   /* cells changed since the last sync, [lo, hi) (lo >= hi: none) */
    int32_t *order;               /* (n_ctx) cells [0, hi) occupied ones first, sorted by
                                   * (position, cell), then the free ones; identity from hi on.
                                   * Attention visits cells in this order, so a sequence's
                                   * result does not depend on where its cells sit. */
    int32_t order_hi;             /* hi when order was last uploaded */
    int32_t order_n;              /* occupied cells at the head of order (the last build) */
    int32_t *order_tmp;           /* (n_ctx) scratch of the build */
    uint64_t *order_key;          /* (n_ctx) scratch: (position, cell) keys of the changed cells */
    struct cs_kv_rec *rec;        /* owned, NULL unless the model is hybrid: the recurrent state
                                   * (src/kv/kv_rec.h), set by the context; the sequence operations apply to it */
    bool rec_inner;               /* set while a sequence op calls another (the state is handled once) */
};

/* Allocates K/V for every layer on layer_dev[l] (n_layer entries; the same
 * device may appear many times). Checks the types against head_dim
 * (cs_kv_type_check) and the buffer sizes against each device's max
 * allocation, naming the layer and device on failure. */
int cs_kv_new(const struct cs_hparams *hp, const struct cs_kv_params *p, struct cs_cl_dev *const *layer_dev,
              struct cs_kv **out, char *err, size_t errlen);
/* cs_kv_new where no_kv (n_layer entries, or NULL) marks layers without K/V
 * (a hybrid model's recurrent layers: k[l] = v[l] = NULL; their state is in kv_rec.h). */
int cs_kv_new_layers(const struct cs_hparams *hp, const struct cs_kv_params *p, struct cs_cl_dev *const *layer_dev,
                     const bool *no_kv, struct cs_kv **out, char *err, size_t errlen);
void cs_kv_free(struct cs_kv *kv);

/* Device bytes one token costs across all layers (K + V). */
uint64_t cs_kv_bytes_per_token(const struct cs_kv *kv);

/* Finds a cell for each row of b (cells[i], b->n entries). A row whose
 * (seq, pos) already has a cell held by that sequence alone reuses it; one
 * held by other sequences too (shared prefix) is left to them and a new cell
 * taken. Placement is all-or-nothing per sequence: when the rows of sequence
 * s do not all fit, none of them is placed (cells[i] = -1 for its rows, the
 * cache unchanged for s) and seq_rc[s] = CLSPEC_E_KV_FULL; the other
 * sequences are placed and get seq_rc = CLSPEC_OK. seq_rc has CS_MAX_SEQ
 * entries (entries of sequences absent from b are set to CLSPEC_OK). Rows'
 * tokens are recorded in tok[]. Returns CLSPEC_OK, or an error for an invalid
 * batch (sequence >= n_seq_max, ...). */
int cs_kv_place(struct cs_kv *kv, const struct cs_batch *b, int32_t *cells, int *seq_rc, char *err, size_t errlen);

/* Uploads the changed cell metadata (and the visiting order) to every
 * device. Call before attention reads it. Blocking writes unless !blocking:
 * then the caller must sync every device's queue (finish, blocking read)
 * before the cell metadata changes again (cs_forward_batch does, per call). */
int cs_kv_sync(struct cs_kv *kv, bool blocking, char *err, size_t errlen);

/* The view of layer l for cs_op_kv_store / cs_op_attention (on that layer's device). */
struct cs_kv_view cs_kv_layer_view(const struct cs_kv *kv, uint32_t l);
/* The device that holds layer l's K/V (where its attention must run). */
struct cs_cl_dev *cs_kv_layer_device(const struct cs_kv *kv, uint32_t l);

/* Sequence operations (host metadata; take effect at the next sync). p1 < 0
 * means "to the end". Errors only for invalid arguments. */
void cs_kv_clear(struct cs_kv *kv);
int cs_kv_seq_rm(struct cs_kv *kv, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);
/* dst shares src's cells with p0 <= pos < p1 (unified: the bit is added;
 * partitioned: rows are copied into dst's partition, CLSPEC_E_KV_FULL if they
 * do not fit). dst's own cells in [p0, p1) are removed first. */
int cs_kv_seq_cp(struct cs_kv *kv, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err, size_t errlen);
/* Removes every sequence but seq. */
int cs_kv_seq_keep(struct cs_kv *kv, int32_t seq, char *err, size_t errlen);
/* Adds delta to the positions of seq's cells with p0 <= pos < p1 and
 * re-rotates their K (RoPE by delta; quantized K is dequantized, rotated and
 * requantized). Cells that become negative are removed. Cells shared with
 * another sequence are first unshared (copied). */
int cs_kv_seq_add(struct cs_kv *kv, int32_t seq, int32_t p0, int32_t p1, int32_t delta, char *err, size_t errlen);

/* Queries. */
int32_t cs_kv_seq_pos_max(const struct cs_kv *kv, int32_t seq); /* -1 when seq holds no cell */
uint32_t cs_kv_seq_n_cells(const struct cs_kv *kv, int32_t seq);
uint32_t cs_kv_n_free(const struct cs_kv *kv, int32_t seq); /* cells seq could still take */

/* Prefix reuse: the longest k such that some sequence other than dst holds
 * tokens[0..k) at positions 0..k-1; *src gets that sequence (-1 if k = 0). */
int32_t cs_kv_prefix_match(const struct cs_kv *kv, const int32_t *tokens, int32_t n, int32_t dst, int32_t *src);

/* Checkpoints: a copy of sequence seq's cells with p0 <= pos < p1 (their
 * positions, tokens and K/V rows of every layer, kept on each layer's
 * device). Restore removes seq's cells in [p0, p1) and puts the saved ones
 * back (into free cells), so the sequence reads exactly what it read at save
 * time. Recurrent state will join the checkpoint later. */
struct cs_kv_ckpt;
int cs_kv_ckpt_save(struct cs_kv *kv, int32_t seq, int32_t p0, int32_t p1, struct cs_kv_ckpt **out, char *err,
                    size_t errlen);
int cs_kv_ckpt_restore(struct cs_kv *kv, const struct cs_kv_ckpt *ck, char *err, size_t errlen);
uint64_t cs_kv_ckpt_bytes(const struct cs_kv_ckpt *ck);
void cs_kv_ckpt_free(struct cs_kv_ckpt *ck);

#endif
