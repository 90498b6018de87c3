/* batch.h: the input of one forward over tokens of many sequences: per row a
 * token, its position, its sequence and whether its logits are wanted.
 * The caller owns struct cs_batch (cs_batch_init / cs_batch_free). */
#ifndef CS_BATCH_H
#define CS_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CS_MAX_SEQ 64 /* sequence ids are 0..63 (one bit each in a KV cell) */

struct cs_batch {
    int n;            /* rows in use */
    int cap;          /* rows allocated */
    int32_t *token;   /* (cap) token ids */
    int32_t *pos;     /* (cap) positions, >= 0 */
    int32_t *seq;     /* (cap) sequence ids 0..CS_MAX_SEQ-1 */
    uint8_t *logits;  /* (cap) 1 = return this row's logits (and its row index in the output) */
    const float *embd; /* borrowed, NULL or (n, n_embd): the input of rows whose token is negative */
};

int cs_batch_init(struct cs_batch *b, int cap, char *err, size_t errlen);
void cs_batch_free(struct cs_batch *b);
/* Empties the batch (keeps the allocation). */
void cs_batch_clear(struct cs_batch *b);
/* Appends one row; CLSPEC_E_RANGE when the batch is full or seq/pos invalid. */
int cs_batch_add(struct cs_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits, char *err,
                 size_t errlen);
/* Rows with logits requested, counted. */
int cs_batch_n_logits(const struct cs_batch *b);

#endif
