/* engine.c: see engine.h. First version (lead): one device, the context of
 * forward.c; the fwd helper extends it to layer splits over several devices. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "engine.h"
#include "quant.h"

struct cs_engine_params cs_engine_defaults(void)
{
    struct cs_engine_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 2048;
    p.n_batch = 512;
    p.n_ubatch = 512;
    p.type_k = CS_TYPE_F16;
    p.type_v = CS_TYPE_F16;
    p.n_seq_max = 1;
    p.kv_unified = true;
    return p;
}

void cs_engine_free(struct cs_engine *e)
{
    if (!e)
        return;
    cs_fwd_ctx_free(e->ctx);
    cs_fwd_model_free(e->fm);
    for (int i = 0; i < e->n_dev; i++)
        cs_cl_dev_close(e->dev[i]);
    free(e->dev);
    cs_tokenizer_free(e->tok);
    cs_model_free(e->model);
    free((char *)e->p.model_path);
    free((char *)e->p.devices);
    free(e);
}

int cs_engine_open(const struct cs_engine_params *p, struct cs_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!p->model_path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine: no model path");
    struct cs_engine *e = calloc(1, sizeof *e);
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "engine: out of memory");
    e->p = *p;
    e->p.model_path = strdup(p->model_path);
    e->p.devices = p->devices ? strdup(p->devices) : NULL;
    int rc;
    if (!e->p.model_path || (p->devices && !e->p.devices)) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "engine: out of memory");
        goto fail;
    }
    double t0 = cs_now();
    if ((rc = cs_model_load(p->model_path, &e->model, err, errlen)) < 0 ||
        (rc = cs_tokenizer_load(e->model->gguf, &e->tok, err, errlen)) < 0)
        goto fail;
    if (p->n_ctx == 0 && e->model->hp.n_ctx_train)
        e->p.n_ctx = e->model->hp.n_ctx_train;
    e->dev = calloc(1, sizeof *e->dev);
    if (!e->dev) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "engine: out of memory");
        goto fail;
    }
    if ((rc = cs_cl_open(p->devices, &e->dev[0], err, errlen)) < 0)
        goto fail;
    e->n_dev = 1;
    if ((rc = cs_fwd_model_load(e->model, e->dev[0], p->progress, &e->fm, err, errlen)) < 0)
        goto fail;
    if (p->type_k != p->type_v) {
        rc = cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "engine: K type %s differs from V type %s",
                    cs_type_name(p->type_k), cs_type_name(p->type_v));
        goto fail;
    }
    struct cs_fwd_ctx_params cp = {.n_ctx = e->p.n_ctx, .n_batch = p->n_ubatch ? p->n_ubatch : p->n_batch,
                                   .kv_type = p->type_k, .llamacpp_numerics = p->llamacpp_numerics};
    if ((rc = cs_fwd_ctx_new(e->fm, &cp, &e->ctx, err, errlen)) < 0)
        goto fail;
    e->load_s = cs_now() - t0;
    *out = e;
    return CLSPEC_OK;
fail:
    cs_engine_free(e);
    return rc;
}
