/* embed.c: see embed.h. */
#include "config.h"

#include "daemon/embed.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

struct cs_embedder {
    clspec_engine *e;
    pthread_mutex_t mu;
    uint32_t n_ctx;
    int32_t n_embd, n_layer;
    int32_t n_batch;             /* rows per clspec_decode */
    float *normed;               /* (n_ctx, n_embd) scratch: the final-normed rows */
    const float **rows;          /* (n_ctx) pointers into normed */
    int32_t *pos;                /* (n_ctx) 0..n-1 */
};

int cs_embedder_open(const struct clspec_engine_params *ep, uint32_t n_ctx, struct cs_embedder **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    struct cs_embedder *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "embeddings: out of memory");
    struct clspec_engine_params p = *ep;
    p.n_seq = 1;
    p.kv_partitioned = 0;
    p.n_ctx = n_ctx;
    p.progress = 0;
    m->n_batch = p.n_batch > 0 ? (int32_t)p.n_batch : 512;
    int rc = clspec_engine_open(&p, &m->e, err, errlen);
    struct clspec_engine_info info = {.size = sizeof info};
    if (rc == CLSPEC_OK)
        rc = clspec_engine_get_info(m->e, &info, err, errlen);
    if (rc == CLSPEC_OK) {
        m->n_ctx = info.n_ctx;
        m->n_embd = info.n_embd;
        m->n_layer = info.n_layer;
        rc = clspec_taps_set(m->e, &m->n_layer, 1, err, errlen);
    }
    if (rc == CLSPEC_OK) {
        m->normed = malloc((size_t)m->n_ctx * (size_t)m->n_embd * sizeof *m->normed);
        m->rows = malloc((size_t)m->n_ctx * sizeof *m->rows);
        m->pos = malloc((size_t)m->n_ctx * sizeof *m->pos);
        if (!m->normed || !m->rows || !m->pos)
            rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "embeddings: out of memory");
    }
    if (rc != CLSPEC_OK) {
        cs_embedder_free(m);
        return rc;
    }
    for (uint32_t i = 0; i < m->n_ctx; i++) {
        m->pos[i] = (int32_t)i;
        m->rows[i] = m->normed + (size_t)i * (size_t)m->n_embd;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return CLSPEC_OK;
}

void cs_embedder_free(struct cs_embedder *m)
{
    if (!m)
        return;
    if (m->pos) /* the mutex exists once everything was allocated */
        pthread_mutex_destroy(&m->mu);
    clspec_engine_free(m->e);
    free(m->normed);
    free(m->rows);
    free(m->pos);
    free(m);
}

int32_t cs_embedder_dim(const struct cs_embedder *m)
{
    return m->n_embd;
}

clspec_engine *cs_embedder_engine(struct cs_embedder *m)
{
    return m->e;
}

void cs_embed_pool(const float *const *rows, int n, int32_t n_embd, float *out)
{
    double ss = 0;
    for (int32_t j = 0; j < n_embd; j++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += rows[i][j];
        out[j] = n > 0 ? (float)(s / n) : 0.0f;
        ss += (double)out[j] * out[j];
    }
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int32_t j = 0; j < n_embd; j++)
            out[j] *= inv;
    }
}

int cs_embed(struct cs_embedder *m, const int32_t *ids, int n, float *out, char *err, size_t errlen)
{
    if (n < 1 || (uint32_t)n >= m->n_ctx)
        return cs_err(err, errlen, n < 1 ? CLSPEC_E_INVAL : CLSPEC_E_CONTEXT,
                      "input of %d tokens: embeddings take 1..%u tokens", n, m->n_ctx - 1);
    pthread_mutex_lock(&m->mu);
    int rc = clspec_kv_clear(m->e, err, errlen);
    for (int i0 = 0; rc == CLSPEC_OK && i0 < n; i0 += m->n_batch) { /* n_batch rows per decode */
        int k = CS_MIN(n - i0, m->n_batch);
        struct clspec_batch b = {.size = sizeof b, .n_rows = k, .token = ids + i0, .pos = m->pos + i0};
        rc = clspec_decode(m->e, &b, NULL, err, errlen);
        for (int i = 0; rc == CLSPEC_OK && i < k; i++) {
            const float *h = clspec_tap(m->e, 0, i);
            rc = h ? clspec_final_norm(m->e, h, (float *)m->rows[i0 + i], err, errlen)
                   : cs_err(err, errlen, CLSPEC_E_INVAL, "embeddings: no hidden state for row %d", i0 + i);
        }
    }
    if (rc == CLSPEC_OK)
        cs_embed_pool(m->rows, n, m->n_embd, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}
