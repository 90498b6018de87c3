/* host_compute.h: the device compute service of a plugin's host table (ABI
 * 1.4, the last part of struct clspec_host): GGUF access, buffers, weights
 * and KV caches on the engine's devices, and the ops a drafter's forward
 * pass needs, queued on the device's in-order queue. The opaque clspec_dev,
 * clspec_buf, clspec_weight, clspec_kv and clspec_gguf handles are defined
 * in host_compute.c. Ownership: everything a plugin makes belongs to its
 * struct cs_plugin (pl->compute); cs_host_compute_free releases what the
 * plugin left (call it after fini). */
#ifndef CS_SPEC_HOST_COMPUTE_H
#define CS_SPEC_HOST_COMPUTE_H

#include <stdint.h>

#include "cl/runtime.h"
#include "clspec/speculator.h"
#include "gguf/gguf.h"
#include "spec/loader.h"

/* Sets the 1.4 compute entries of h (h->impl: the struct cs_plugin). */
void cs_host_compute_entries(struct clspec_host *h);
/* Closes every dev (and what is on it) and GGUF the plugin left open; frees pl->compute. */
void cs_host_compute_free(struct cs_plugin *pl);

/* Integer value(s) of key in g (an integer or bool scalar, or an array of
 * integers): at most cap of them to out; returns how many the key holds, or
 * -1 when absent or not integral (gguf_ints of the host table). */
int32_t cs_host_gguf_ints(const struct cs_gguf *g, const char *key, int64_t *out, int32_t cap);

/* A device draft's tokens (struct clspec_draft_dev): b must be a live int32
 * buffer of pl's holding elements off + d * stride for d < n; its cl_mem,
 * element count and queue (the engine's device) to *m, *n_el, *dev. < 0
 * (err) otherwise. */
int cs_host_buf_tokens(const struct cs_plugin *pl, const clspec_buf *b, size_t off, size_t stride, int32_t n,
                       cl_mem *m, size_t *n_el, const struct cs_cl_dev **dev, char *err, size_t errlen);
/* The engine waited for queue dev (the speculative step's one sync): what
 * the plugin's devs on it staged is free again, as after its own wait. */
void cs_host_compute_waited(struct cs_plugin *pl, const struct cs_cl_dev *dev);

#endif
