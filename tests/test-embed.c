/* test-embed.c: embeddings (src/daemon/embed.c, clspec_final_norm): the
 * pooling against a hand computation; clspec_final_norm against the plain-C
 * RMS norm with the model's output_norm; and a whole embedding of
 * stories260K on the OpenCL device against the plain-C reference forward
 * pass (src/ref: the state before the final norm of every token, normed,
 * averaged, unit length). Skips without a device. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/common.h"
#include "clspec/clspec.h"
#include "daemon/embed.h"
#include "engine/api.h"
#include "engine/engine.h"
#include "gguf/quant.h"
#include "model/model.h"
#include "ref/forward_ref.h"
#include "testutil.h"

static void test_pool(void **state)
{
    (void)state;
    const float a[3] = {1, 2, 2}, b[3] = {3, 2, -2};
    const float *rows[2] = {a, b};
    float out[3];
    cs_embed_pool(rows, 2, 3, out); /* mean (2, 2, 0), length sqrt(8) */
    assert_float_equal(out[0], 2 / sqrtf(8), 1e-6);
    assert_float_equal(out[1], 2 / sqrtf(8), 1e-6);
    assert_float_equal(out[2], 0, 1e-6);
    const float z[3] = {0, 0, 0};
    const float *zr[1] = {z};
    cs_embed_pool(zr, 1, 3, out); /* length 0: left as is */
    assert_float_equal(out[0], 0, 0);
}

static void test_against_reference(void **state)
{
    (void)state;
    char err[CLSPEC_ERRLEN];
    char *path = tu_shared_path("models/stories260K.gguf");
    struct clspec_engine_params ep;
    clspec_engine_default_params(&ep, sizeof ep);
    ep.model_path = path;
    struct cs_embedder *m = NULL;
    int rc = cs_embedder_open(&ep, 256, &m, err, sizeof err);
    if (rc != CLSPEC_OK) {
        free(path);
        if (strstr(err, "no OpenCL") || strstr(err, "device"))
            skip();
        fail_msg("%s", err);
    }
    clspec_engine *e = cs_embedder_engine(m);
    const struct cs_model *model = cs_api_engine(e)->model;
    const uint32_t E = model->hp.n_embd, NL = model->hp.n_layer;
    assert_int_equal(cs_embedder_dim(m), (int)E);

    /* clspec_final_norm = RMS norm with output_norm's weights */
    float *w = malloc(E * sizeof *w), *x = malloc(E * sizeof *x), *y = malloc(E * sizeof *y),
          *yr = malloc(E * sizeof *yr);
    assert_true(w && x && y && yr);
    assert_int_equal(cs_dequantize_row(model->output_norm->type, model->output_norm->data, w, E), 0);
    for (uint32_t i = 0; i < E; i++)
        x[i] = sinf((float)i * 0.37f) * 3.0f;
    assert_int_equal(clspec_final_norm(e, x, y, err, sizeof err), CLSPEC_OK);
    cs_fwdref_rmsnorm(yr, x, w, E, model->hp.rms_eps);
    for (uint32_t i = 0; i < E; i++)
        assert_float_equal(y[i], yr[i], 1e-5 * (1 + fabsf(yr[i])));
    assert_int_equal(clspec_final_norm(e, NULL, y, err, sizeof err), CLSPEC_E_INVAL);

    /* a whole embedding against the plain-C forward pass */
    const int32_t ids[] = {1, 403, 407, 261, 378, 286, 261, 370};
    const int n = (int)CS_ARRAY_LEN(ids);
    float *emb = malloc(E * sizeof *emb), *ref = malloc(E * sizeof *ref);
    float *hidden = malloc((size_t)(NL + 1) * E * sizeof *hidden);
    float *logits = malloc((size_t)model->hp.n_vocab * sizeof *logits);
    float *normed = malloc((size_t)n * E * sizeof *normed);
    const float **rows = malloc((size_t)n * sizeof *rows);
    assert_true(emb && ref && hidden && logits && normed && rows);
    assert_int_equal(cs_embed(m, ids, n, emb, err, sizeof err), CLSPEC_OK);
    struct cs_ref *r = NULL;
    assert_int_equal(cs_ref_load(model, 64, &r, err, sizeof err), 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(cs_ref_forward(r, ids[i], (uint32_t)i, logits, hidden, err, sizeof err), 0);
        cs_fwdref_rmsnorm(normed + (size_t)i * E, hidden + (size_t)NL * E, w, E, model->hp.rms_eps);
        rows[i] = normed + (size_t)i * E;
    }
    cs_embed_pool(rows, n, (int32_t)E, ref);
    double dot = 0, maxd = 0;
    for (uint32_t i = 0; i < E; i++) {
        dot += (double)emb[i] * ref[i];
        maxd = fmax(maxd, fabs((double)emb[i] - ref[i]));
    }
    print_message("# embedding vs reference: cosine %.6f, max |diff| %.2e\n", dot, maxd);
    assert_true(dot > 0.9999); /* both unit length */
    assert_true(maxd < 5e-3);  /* f16 KV cache on the device */

    /* the same input gives the same vector; another input another; bounds refused */
    float *again = malloc(E * sizeof *again);
    assert_non_null(again);
    assert_int_equal(cs_embed(m, ids, n, again, err, sizeof err), CLSPEC_OK);
    assert_memory_equal(again, emb, E * sizeof *emb);
    assert_int_equal(cs_embed(m, ids, 3, again, err, sizeof err), CLSPEC_OK);
    assert_memory_not_equal(again, emb, E * sizeof *emb);
    assert_int_equal(cs_embed(m, ids, 0, again, err, sizeof err), CLSPEC_E_INVAL);
    int32_t *big = calloc(300, sizeof *big);
    assert_non_null(big);
    assert_int_equal(cs_embed(m, big, 300, again, err, sizeof err), CLSPEC_E_CONTEXT);

    free(big);
    free(again);
    cs_ref_free(r);
    free(rows);
    free(normed);
    free(logits);
    free(hidden);
    free(ref);
    free(emb);
    free(w);
    free(x);
    free(y);
    free(yr);
    cs_embedder_free(m);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
