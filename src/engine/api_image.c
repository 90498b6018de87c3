/* api_image.c: the engine door's image calls (include/clspec/clspec.h
 * "images"): a vision projector opened on its own device (src/vision), an
 * image decoded, preprocessed and encoded into rows of input embeddings. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "clspec/clspec.h"
#include "vision/clip.h"
#include "vision/clip_dev.h"
#include "vision/image.h"

struct clspec_mmproj {
    struct cs_clip *clip;      /* owned */
    struct cs_cl_dev *dev;     /* owned: the projector's device */
    struct cs_image_limits lim;
    float *planar;             /* (3, S, S) the preprocessed image, reused */
    pthread_mutex_t mu;        /* one image at a time: planar and the device buffers are shared */
};

void clspec_mmproj_default_params(struct clspec_mmproj_params *p, size_t size)
{
    memset(p, 0, size);
    p->size = (uint32_t)size;
}

void clspec_mmproj_free(clspec_mmproj *m)
{
    if (!m)
        return;
    cs_clip_free(m->clip);
    pthread_mutex_destroy(&m->mu);
    if (m->dev)
        cs_cl_dev_close(m->dev);
    free(m->planar);
    free(m);
}

int clspec_mmproj_open(const clspec_engine *e, const struct clspec_mmproj_params *p, clspec_mmproj **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (!p || p->size < offsetof(struct clspec_mmproj_params, max_bytes) || !p->path || !*p->path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "mmproj: no projector path");
    struct clspec_engine_info info = {.size = sizeof info};
    if (e)
        CS_TRY(clspec_engine_get_info(e, &info, err, errlen));
    clspec_mmproj *m = calloc(1, sizeof *m);
    if (!m)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    pthread_mutex_init(&m->mu, NULL);
    int rc = cs_clip_open(p->path, &m->clip, err, errlen);
    if (rc == CLSPEC_OK && e && m->clip->hp.proj_dim != info.n_embd)
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "mmproj %s: its output width (clip.vision.projection_dim %d) is "
                    "not the text model's n_embd %d: this projector belongs to another model", p->path,
                    m->clip->hp.proj_dim, info.n_embd);
    if (rc == CLSPEC_OK)
        rc = cs_cl_open(p->device && *p->device ? p->device : NULL, &m->dev, err, errlen);
    if (rc == CLSPEC_OK)
        rc = cs_clip_upload(m->clip, m->dev, err, errlen);
    const int S = rc == CLSPEC_OK ? m->clip->hp.image_size : 0;
    if (rc == CLSPEC_OK && !(m->planar = malloc(sizeof(float) * 3 * (size_t)S * S)))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    if (rc < 0) {
        clspec_mmproj_free(m);
        return rc;
    }
    if (p->size >= offsetof(struct clspec_mmproj_params, max_pixels) + sizeof p->max_pixels) {
        m->lim.max_bytes = (size_t)p->max_bytes;
        m->lim.max_pixels = p->max_pixels;
    }
    *out = m;
    return CLSPEC_OK;
}

int32_t clspec_mmproj_n_tokens(const clspec_mmproj *m)
{
    return m ? cs_clip_n_tokens(m->clip) : 0;
}

int clspec_mmproj_get_info(const clspec_mmproj *m, struct clspec_mmproj_info *info, char *err, size_t errlen)
{
    if (!m || !info || info->size < offsetof(struct clspec_mmproj_info, device_name) + sizeof info->device_name)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "mmproj info: no projector or a short info struct");
    const struct cs_clip_hparams *hp = &m->clip->hp;
    info->projector_type = hp->projector_type;
    info->image_size = hp->image_size;
    info->n_tokens = cs_clip_n_tokens(m->clip);
    info->n_embd = hp->proj_dim;
    info->n_layer = hp->n_run;
    info->device_name = m->dev->info.name;
    return CLSPEC_OK;
}

int clspec_image_encode(clspec_mmproj *m, const void *bytes, size_t len, float *out, char *err, size_t errlen)
{
    if (!m || !out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "image: no projector or no output buffer");
    const struct cs_clip_hparams *hp = &m->clip->hp;
    struct cs_image im;
    CS_TRY(cs_image_decode(bytes, len, &m->lim, &im, err, errlen));
    pthread_mutex_lock(&m->mu);
    int rc = cs_image_preprocess(&im, hp->image_size, hp->pad, hp->mean, hp->std, m->planar, err, errlen);
    cs_image_free(&im);
    if (rc == CLSPEC_OK)
        rc = cs_clip_encode(m->clip, m->planar, out, NULL, err, errlen);
    pthread_mutex_unlock(&m->mu);
    return rc;
}
