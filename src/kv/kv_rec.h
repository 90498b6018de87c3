/* kv_rec.h: the recurrent state of a hybrid model's delta-net layers
 * (qwen35), part of the sequence state the core owns next to the KV cells.
 *
 * Per recurrent layer, on that layer's device, and per sequence, a ring of
 * `keep` state slots: slot (seq, L) holds the state after the sequence's
 * first L tokens (L >= 1) in slot seq * keep + (L - 1) % keep: the conv
 * state (K-1 previous inputs of C channels) and the delta-rule state (Hv
 * heads of Dk x Dv). Each forward row reads the state after its position and
 * writes the state after itself (cs_kv_rec_plan), so the states of the last
 * `keep` lengths stay on the device: rolling back after a verification is a
 * host bookkeeping change (no copy, no replay) and bit-exact, because the
 * restored state is the one the forward computed for the accepted prefix.
 *
 * Host bookkeeping per sequence: len (tokens absorbed = the next position)
 * and lo: every length in [lo, len], and 0, is restorable. A sequence op
 * that would need another state (removing a middle range, a rollback further
 * than `keep`, a shift) fails with CLSPEC_E_UNSUPPORTED and changes nothing;
 * a forward row whose position is not the sequence's next one fails the
 * whole forward with CLSPEC_E_INVAL (never stale state). */
#ifndef CS_KV_REC_H
#define CS_KV_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "kv/batch.h"
#include "model/model.h"

#define CS_KV_REC_KEEP_DEFAULT 16 /* states kept per sequence: a verification of up to 15 drafted tokens */

struct cs_kv_rec {
    uint32_t n_layer;        /* model layers */
    int32_t *idx;            /* (n_layer) index of the layer's state, -1: attention layer */
    uint32_t n_rec;          /* recurrent layers */
    uint32_t n_seq, keep;    /* sequences; slots per sequence */
    struct cs_cl_dev **dev;  /* (n_rec) borrowed: the layer's device */
    cl_mem *conv;            /* (n_rec) f32 (n_seq * keep, K-1, C) */
    cl_mem *ssm;             /* (n_rec) f32 (n_seq * keep, Hv, Dk, Dv) */
    uint64_t conv_slot, ssm_slot; /* bytes of one slot */
    int32_t *len, *lo;       /* (n_seq) */
};

/* A layer's state buffers (NULL for an attention layer). */
struct cs_kv_rec_view {
    cl_mem conv, ssm;
};

/* States for hp's recurrent layers (hp->n_recurrent > 0) on layer_dev[l];
 * keep 0 = CS_KV_REC_KEEP_DEFAULT. Errors name the layer and device. */
int cs_kv_rec_new(const struct cs_hparams *hp, const struct cs_layer *layers, uint32_t n_seq, uint32_t keep,
                  struct cs_cl_dev *const *layer_dev, struct cs_kv_rec **out, char *err, size_t errlen);
void cs_kv_rec_free(struct cs_kv_rec *r);
/* Device bytes of all states. */
uint64_t cs_kv_rec_bytes(const struct cs_kv_rec *r);
struct cs_kv_rec_view cs_kv_rec_layer(const struct cs_kv_rec *r, uint32_t l);

/* Every row of b must continue its sequence: the rows of sequence s, in
 * order, have positions len[s], len[s] + 1, ... Nothing changes. */
int cs_kv_rec_check(const struct cs_kv_rec *r, const struct cs_batch *b, char *err, size_t errlen);
/* The slot plan of one pass of n rows (seq, pos; rows that continue their
 * sequences, cs_kv_rec_check): rd[t] / wr[t] as cl/deltanet.cl reads them.
 * Advances len / lo. */
void cs_kv_rec_plan(struct cs_kv_rec *r, const int32_t *seq, const int32_t *pos, int n, int32_t *rd, int32_t *wr);

/* Sequence operations (seq -1: all). rm keeps the positions < p0 when
 * p1 < 0 or p1 >= len; check_only: validate, change nothing. */
int cs_kv_rec_seq_rm(struct cs_kv_rec *r, int32_t seq, int32_t p0, int32_t p1, bool check_only, char *err,
                     size_t errlen);
/* dst gets src's state after min(p1, len) tokens (p1 < 0: len); p0 must be
 * 0 (or >= that length: nothing to copy). Enqueues device copies. */
int cs_kv_rec_seq_cp(struct cs_kv_rec *r, int32_t src, int32_t dst, int32_t p0, int32_t p1, bool check_only,
                     char *err, size_t errlen);
void cs_kv_rec_seq_keep(struct cs_kv_rec *r, int32_t seq);
void cs_kv_rec_clear(struct cs_kv_rec *r);
/* The largest restorable length <= k of seq (prefix reuse). */
int32_t cs_kv_rec_restorable(const struct cs_kv_rec *r, int32_t seq, int32_t k);

#endif
