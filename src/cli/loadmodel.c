/* loadmodel.c: model + tokenizer + device + weights + context for the CLI. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/loadmodel.h"
#include "common.h"
#include "quant.h"

void cs_loaded_free(struct cs_loaded *l)
{
    cs_fwd_ctx_free(l->ctx);
    cs_fwd_model_free(l->fm);
    cs_cl_dev_close(l->dev);
    cs_tokenizer_free(l->tok);
    cs_model_free(l->model);
    memset(l, 0, sizeof *l);
}

int cs_loaded_open(const char *path, const char *device, uint32_t n_ctx, uint32_t n_batch, int with_tokenizer,
                   struct cs_loaded *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    double t0 = cs_now();
    int rc = cs_model_load(path, &out->model, err, errlen);
    if (rc < 0)
        return rc;
    if (with_tokenizer && (rc = cs_tokenizer_load(out->model->gguf, &out->tok, err, errlen)) < 0)
        goto fail;
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0, idx = 0;
    if ((rc = cs_cl_list(&list, &n, err, errlen)) < 0)
        goto fail;
    if (n == 0) {
        free(list);
        rc = cs_err(err, errlen, CLSPEC_E_NOTFOUND, "no OpenCL device found");
        goto fail;
    }
    rc = cs_cl_select(list, n, device, &idx, err, errlen);
    if (rc == 0)
        rc = cs_cl_dev_open(&list[idx], &out->dev, err, errlen);
    free(list);
    if (rc < 0)
        goto fail;
    if ((rc = cs_fwd_model_load(out->model, out->dev, true, &out->fm, err, errlen)) < 0)
        goto fail;
    struct cs_fwd_ctx_params p = {.n_ctx = n_ctx, .n_batch = n_batch, .kv_type = CS_TYPE_F32};
    if ((rc = cs_fwd_ctx_new(out->fm, &p, &out->ctx, err, errlen)) < 0)
        goto fail;
    out->load_s = cs_now() - t0;
    return CLSPEC_OK;
fail:
    cs_loaded_free(out);
    return rc;
}
