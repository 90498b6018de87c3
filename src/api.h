/* api.h: internal helpers of the engine door (src/api.c) for code that
 * holds both a public and an internal struct (the CLI's --spec path takes
 * the sampler options as struct clspec_sampler_params, like plain runs, and
 * hands src/spec a struct cs_sampler_params). Nothing here allocates. */
#ifndef CS_API_H
#define CS_API_H

#include "clspec/clspec.h"
#include "sampler.h"

/* The internal sampler parameters of in (all of its fields; in->size is not
 * read: in must be a complete struct of this build). */
void cs_api_sampler_params(const struct clspec_sampler_params *in, struct cs_sampler_params *out);

#endif
