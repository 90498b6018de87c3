/* fwdutil.c: see fwdutil.h. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/common.h"
#include "engine/api.h"
#include "fwdutil.h"
#include "model/model.h"
#include "engine/sampler.h"
#include "spec/spec.h"
#include "testutil.h"

int fu_open(const char *rel, int n_dev, const int *dev_idx, const uint32_t *layer_counts, struct fu_model *f)
{
    char err[CLSPEC_ERRLEN];
    memset(f, 0, sizeof *f);
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0;
    if (cs_cl_list(&list, &n, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    if ((int)n < (dev_idx ? 1 : n_dev) || n == 0) {
        free(list);
        return 1;
    }
    for (int i = 0; i < n_dev; i++) {
        int idx = dev_idx ? dev_idx[i] : i;
        if (idx >= (int)n) {
            for (int j = 0; j < f->n_dev; j++)
                cs_cl_dev_close(f->dev[j]);
            free(list);
            return 1;
        }
        if (cs_cl_dev_open(&list[idx], &f->dev[i], err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
        f->n_dev = i + 1;
    }
    free(list);
    char *path = tu_shared_path(rel);
    if (cs_model_load(path, &f->m, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    free(path);
    if (cs_fwd_model_load_split(f->m, f->dev, n_dev, layer_counts, false, &f->fm, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s: %s", rel, err);
    f->V = (int)f->m->hp.n_vocab;
    return 0;
}

void fu_close(struct fu_model *f)
{
    cs_fwd_model_free(f->fm);
    for (int i = 0; i < f->n_dev; i++)
        cs_cl_dev_close(f->dev[i]);
    cs_model_free(f->m);
    memset(f, 0, sizeof *f);
}

struct cs_fwd_ctx *fu_ctx(struct fu_model *f, uint32_t n_ctx, uint32_t n_ubatch, uint32_t type_k, uint32_t type_v)
{
    char err[CLSPEC_ERRLEN];
    struct cs_fwd_ctx_params p = {.n_ctx = n_ctx, .n_batch = n_ubatch, .n_ubatch = n_ubatch, .type_k = type_k,
                                  .type_v = type_v};
    struct cs_fwd_ctx *c = NULL;
    if (cs_fwd_ctx_new(f->fm, &p, &c, err, sizeof err) != CLSPEC_OK)
        fail_msg("context: %s", err);
    return c;
}

void fu_greedy(struct cs_fwd_ctx *c, const int32_t *prompt, int n, int n_gen, int32_t seq, int32_t *out,
               float *steps)
{
    char err[CLSPEC_ERRLEN];
    const int V = (int)c->fm->model->hp.n_vocab;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *pos = malloc((size_t)(n + n_gen) * sizeof *pos), *seqs = malloc((size_t)n * sizeof *seqs);
    assert_true(logits && pos && seqs);
    for (int i = 0; i < n + n_gen; i++)
        pos[i] = i;
    for (int i = 0; i < n; i++)
        seqs[i] = seq;
    if (cs_forward(c, prompt, n, pos, seqs, NULL, 1, logits, NULL, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    for (int s = 0; s < n_gen; s++) {
        out[s] = cs_argmax(logits, V);
        if (steps)
            memcpy(steps + (size_t)s * V, logits, (size_t)V * sizeof *logits);
        if (s + 1 < n_gen &&
            cs_forward(c, &out[s], 1, &pos[n + s], &seq, NULL, 1, logits, NULL, err, sizeof err) != CLSPEC_OK)
            fail_msg("%s", err);
    }
    free(seqs);
    free(pos);
    free(logits);
}

void fu_all_logits(struct cs_fwd_ctx *c, const int32_t *tokens, int n, int32_t seq, float *out)
{
    char err[CLSPEC_ERRLEN];
    int32_t *pos = malloc((size_t)n * 3 * sizeof *pos);
    assert_non_null(pos);
    int32_t *seqs = pos + n, *rows = seqs + n;
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        seqs[i] = seq;
        rows[i] = i;
    }
    if (cs_forward(c, tokens, n, pos, seqs, rows, n, out, NULL, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    free(pos);
}

void fu_last_logits(struct cs_fwd_ctx *c, const int32_t *tokens, int n, float *out)
{
    char err[CLSPEC_ERRLEN];
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    assert_non_null(pos);
    for (int i = 0; i < n; i++)
        pos[i] = i;
    if (cs_forward(c, tokens, n, pos, NULL, NULL, 1, out, NULL, err, sizeof err) != CLSPEC_OK)
        fail_msg("%s", err);
    free(pos);
}

float fu_max_abs(const float *a, const float *b, size_t n)
{
    float w = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= w))
            w = d;
    }
    return w;
}

float fu_max_rel(const float *a, const float *b, size_t n)
{
    float w = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]) / (1.0f + fabsf(b[i]));
        if (!(d <= w))
            w = d;
    }
    return w;
}

struct golden *fu_golden(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "reference/greedy-%s.json", name);
    char *jp = tu_shared_path(rel);
    struct golden *g = golden_load(jp);
    free(jp);
    assert_non_null(g);
    return g;
}

clspec_engine *fu_door(struct cs_engine *e)
{
    clspec_engine *d = NULL;
    char err[CLSPEC_ERRLEN];
    if (cs_api_wrap(e, &d, err, sizeof err) != CLSPEC_OK)
        fail_msg("engine door: %s", err);
    return d;
}

int fu_engine_try(const char *rel, const struct cs_engine_params *p, struct cs_engine **e, char *err,
                  size_t errlen)
{
    struct cs_engine_params q = *p;
    char *path = tu_shared_path(rel);
    q.model_path = path;
    int rc = cs_engine_open(&q, e, err, errlen);
    free(path);
    return rc;
}

struct cs_engine *fu_engine_open(const char *rel, const struct cs_engine_params *p)
{
    struct cs_engine *e = NULL;
    char err[CLSPEC_ERRLEN];
    if (fu_engine_try(rel, p, &e, err, sizeof err) != CLSPEC_OK)
        fail_msg("engine: %s", err);
    return e;
}

void fu_ctl_force(struct cs_spec *sp, bool draft_pays)
{
    const int32_t n_max = sp->ctl.n_max, max_rows = sp->ctl.verify.len - 1;
    const bool batched = sp->ctl.batched;
    cs_ctl_free(&sp->ctl);
    if (cs_ctl_init(&sp->ctl, n_max, max_rows, batched) != CLSPEC_OK)
        fail_msg("fu_ctl_force: out of memory");
    const int32_t R = CS_MIN(max_rows, sp->n_slots * (n_max + 1));
    for (int rep = 0; rep < CS_CTL_MED_MIN; rep++)
        for (int32_t r = 1; r <= R; r++)
            cs_ctl_sample(&sp->ctl.verify, r, draft_pays ? 1e-3 : 1e-3 * (double)(1 << CS_MIN(r, 15)));
}
