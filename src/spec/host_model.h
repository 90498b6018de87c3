/* host_model.h: fills the draft-model entries of a plugin's host table
 * (model_load .. ctx_logits, ABI 1.1) over the plugin's engine (h->impl is
 * the struct cs_plugin). Handles returned to the plugin are its to free. */
#ifndef CS_SPEC_HOST_MODEL_H
#define CS_SPEC_HOST_MODEL_H

#include "clspec/speculator.h"
#include "spec/loader.h"

void cs_host_model_entries(struct clspec_host *h);

#endif
