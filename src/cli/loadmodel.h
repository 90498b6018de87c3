/* loadmodel.h: what `clspec run` and `clspec bench` share: open a model, its
 * tokenizer, an OpenCL device, upload the weights and make a context.
 * struct cs_loaded owns all of it (cs_loaded_free). */
#ifndef CS_CLI_LOADMODEL_H
#define CS_CLI_LOADMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cl/runtime.h"
#include "forward.h"
#include "model.h"
#include "tokenizer.h"

struct cs_loaded {
    struct cs_model *model;
    struct cs_tokenizer *tok;      /* NULL if with_tokenizer was false */
    struct cs_cl_dev *dev;
    struct cs_fwd_model *fm;
    struct cs_fwd_ctx *ctx;
    double load_s;                 /* wall seconds for all of the above */
};

/* device: index or name substring (NULL = first device). */
int cs_loaded_open(const char *path, const char *device, uint32_t n_ctx, uint32_t n_batch, int with_tokenizer,
                   struct cs_loaded *out, char *err, size_t errlen);
void cs_loaded_free(struct cs_loaded *l);


#endif
