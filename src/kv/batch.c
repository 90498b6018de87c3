/* batch.c: see batch.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "kv/batch.h"
#include "base/common.h"

int cs_batch_init(struct cs_batch *b, int cap, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    if (cap <= 0 || cap > (1 << 24))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "batch: capacity %d out of range", cap);
    b->token = malloc((size_t)cap * sizeof *b->token);
    b->pos = malloc((size_t)cap * sizeof *b->pos);
    b->seq = malloc((size_t)cap * sizeof *b->seq);
    b->logits = malloc((size_t)cap);
    if (!b->token || !b->pos || !b->seq || !b->logits) {
        cs_batch_free(b);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "batch: out of memory (%d rows)", cap);
    }
    b->cap = cap;
    return CLSPEC_OK;
}

void cs_batch_free(struct cs_batch *b)
{
    free(b->token);
    free(b->pos);
    free(b->seq);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

void cs_batch_clear(struct cs_batch *b)
{
    b->n = 0;
}

int cs_batch_add(struct cs_batch *b, int32_t token, int32_t pos, int32_t seq, bool logits, char *err,
                 size_t errlen)
{
    if (b->n >= b->cap)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "batch: full (%d rows)", b->cap);
    if (seq < 0 || seq >= CS_MAX_SEQ)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "batch: sequence id %d out of range 0..%d", seq,
                      CS_MAX_SEQ - 1);
    if (pos < 0)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "batch: negative position %d", pos);
    b->token[b->n] = token;
    b->pos[b->n] = pos;
    b->seq[b->n] = seq;
    b->logits[b->n] = logits ? 1 : 0;
    b->n++;
    return CLSPEC_OK;
}

int cs_batch_n_logits(const struct cs_batch *b)
{
    int k = 0;
    for (int i = 0; i < b->n; i++)
        k += b->logits[i] != 0;
    return k;
}
