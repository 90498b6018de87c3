/* host_model.h: fills the draft-model entries of a plugin's host table
 * (model_load .. ctx_logits, ABI 1.1) over the plugin's engine (h->impl is
 * the struct cs_plugin). Handles returned to the plugin are its to free. */
#ifndef CS_SPEC_HOST_MODEL_H
#define CS_SPEC_HOST_MODEL_H

#include <stddef.h>

#include "clspec/speculator.h"
#include "spec/loader.h"

void cs_host_model_entries(struct clspec_host *h);
/* Frees pl->hpriv (target_head's device buffers). */
void cs_host_model_priv_free(struct cs_plugin *pl);

/* Copies an info struct (first field: uint32_t size) to a plugin's out:
 * at most out->size bytes (0 = all), and sets out->size to what was filled. */
void cs_host_fill(void *out, const void *full, size_t full_size);

#endif
