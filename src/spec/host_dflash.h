/* host_dflash.h: the host services for DFlash drafters (ABI 1.3): wraps the
 * draft-model entries of a host table (model_load .. ctx_logits, set first
 * by cs_host_model_entries) so that a GGUF of architecture "dflash" loads as
 * a drafter over the target engine (src/dflash_fwd.h) and its contexts run
 * block decodes; every other model goes to the wrapped entries unchanged.
 * Adds model_key_ints and ctx_inject_taps. Handles returned to the plugin
 * are its to free. */
#ifndef CS_SPEC_HOST_DFLASH_H
#define CS_SPEC_HOST_DFLASH_H

#include "clspec/speculator.h"

/* Call after cs_host_model_entries(h). */
void cs_host_dflash_entries(struct clspec_host *h);

#endif
