/* mtp_head.h: the MTP ("nextn", DeepSeek-V3 / GLM-4.5 style) head's forward
 * on the host's device compute service (ABI 1.4), for plugins/mtp. Per row p
 * it takes a token x_p and a hidden g (the target's pre-final-norm state at
 * p-1, or the head's own previous output when chaining drafts):
 *   u   = eh_proj . concat(rms(E[x_p]) * enorm, rms(g) * hnorm)   (embedding half first)
 *   h'  = the nextn block (the engine's block builder, block_layer: RoPE at
 *         position p, causal attention over the head's own KV cache)
 *   out = output . (rms(h') * shared_head_norm)
 * E and output: the head's own (nextn.embed_tokens, nextn.shared_head_head)
 * when the file has them; for the target's own file (path NULL) the
 * target's (target_weight: borrowed on the head's device, else copied);
 * for a sidecar head the file's token_embd / output when present, else the
 * target's. The plugin owns struct mtp_head; every device object belongs to
 * its clspec_dev (closed by mtp_head_free). Builds against the installed
 * headers only. */
#ifndef MTP_HEAD_H
#define MTP_HEAD_H

#include <clspec/speculator.h>

#include <stddef.h>
#include <stdint.h>

struct mtp_head {
    const struct clspec_host *h;
    clspec_dev *d;                  /* the head's device */
    clspec_gguf *g;                 /* the head's file (the target's own when path was NULL) */
    int32_t E, V, H, HKV, D, F;     /* n_embd, n_vocab, heads, kv heads, head_dim, n_ff */
    float eps;
    int32_t blk;                    /* the nextn block's index in the file */
    clspec_weight *wq, *wk, *wv, *wo, *wg, *wu, *wd;   /* the block's matrices */
    clspec_buf *attn_norm, *ffn_norm, *bq, *bk, *bv, *qn, *kn; /* f32; the optional ones NULL */
    clspec_weight *eh_proj;         /* (2E -> E) */
    clspec_buf *enorm, *hnorm, *head_norm; /* f32 (E) */
    clspec_weight *embd, *out;      /* E and output: the file's, or the target's (borrowed or copied) */
    clspec_layer *layer;            /* the nextn block for block_layer */
    clspec_kv *kv;                  /* one layer; sequences = slots; positions p >= 1 */
    int32_t n_batch, n_seq;
    /* activations (n_batch rows): x (E) xe (E) xg (E) cat (2E) xb (max(E, HD)) q att (HD) kc vc (HKV D)
     * hb hb2 (F) xo (E) logits (V); int32: tok pos seq cell amax (n_batch) */
    clspec_buf *x, *xe, *xg, *cat, *xb, *q, *att, *kc, *vc, *hb, *hb2, *xo, *logits;
    clspec_buf *tok, *pos, *seq, *cell, *amax;
    clspec_buf *cell_d;             /* (n_batch) int32: one depth's cells of a chain (mtp_head_chain) */
    clspec_buf *hkeep;              /* (n_seq, E) h' saved per sequence (a chained draft's next g) */
    struct pu_i32_shadow *seq_sh;   /* what seq holds (plugin_util.h): unchanged ids are not uploaded again */
};

/* Opens the head: path NULL = the target's own nextn block. device: an
 * engine device index, -1 = the target's last. n_embd / n_vocab: the
 * target's (the head must fit them). On failure *out is NULL and err says
 * why. */
int mtp_head_load(const struct clspec_host *h, const char *path, int32_t device, uint32_t n_embd, uint32_t n_vocab,
                  struct mtp_head **out, char *err, size_t errlen);
/* The head's KV cache (n_ctx cells, sequences 0..n_seq-1, any KV type) and
 * n_batch rows of activations. */
int mtp_head_ctx(struct mtp_head *m, int32_t n_ctx, int32_t n_batch, int32_t n_seq, uint32_t type_k,
                 uint32_t type_v, char *err, size_t errlen);
void mtp_head_free(struct mtp_head *m);

/* One decode of n rows (tokens, positions, sequences; host arrays). g (n,
 * E): the hidden of each row, host floats; a row with g_seq[i] >= 0 takes
 * instead the h' saved for sequence g_seq[i] (g_seq may be NULL; g may be
 * NULL when every row takes a saved one). save[i] != 0 saves row i's h'
 * for its sequence (may be NULL). keep[i] != 0 makes row i's logits (NULL:
 * the last row); amax (n_keep) gets their argmax (ties: the first), logits
 * (n_keep, V), when not NULL, the logits themselves. One blocking read at
 * the end. Returns n_keep, or < 0 (the head's KV full for a sequence:
 * nothing placed). */
int mtp_head_decode(struct mtp_head *m, int32_t n, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                    const float *g, const int32_t *g_seq, const uint8_t *save, const uint8_t *keep, int32_t *amax,
                    float *logits, char *err, size_t errlen);
/* A draft chain of `depth` head decodes with one blocking read: depth 0
 * is mtp_head_decode's rows (n0 rows, host g, the kept rows one per chain,
 * in chain order, their h' saved); depth d >= 1 has one row per chain i at
 * position pos1[i] + d - 1 of sequence seq1[i] whose token is depth d-1's
 * argmax and whose g is depth d-1's h', both taken on the device. The
 * cells of every depth are placed up front. amax (depth, n_chain) gets each
 * depth's argmax; amax NULL: nothing is read (no wait), the argmaxes stay
 * in m->amax (element d * n_chain + i) until the head's next decode.
 * Needs n0 + (depth - 1) n_chain <= n_batch and depth
 * n_chain <= n_batch. Returns 0, or < 0 (nothing placed when the head's KV
 * is full). */
int mtp_head_chain(struct mtp_head *m, int32_t n0, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                   const float *g, const uint8_t *keep, int32_t n_chain, const int32_t *pos1, const int32_t *seq1,
                   int32_t depth, int32_t *amax, char *err, size_t errlen);
/* Removes sequence seq's cache entries with p0 <= pos < p1 (p1 < 0: to the end). */
int mtp_head_seq_rm(struct mtp_head *m, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen);

#endif
