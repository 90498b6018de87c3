/* taps.h: target hidden-state taps for plugins (ABI 1.2 tap_request /
 * tap_get). A plugin asks at init for some layers of the target; the core's
 * speculative step (spec.c) then captures those layers for every row of
 * every target forward (prefill and verify) and keeps, per slot, the rows
 * since the plugin's previous tap_get for the slot (prefill chunks
 * accumulate; a later forward's row at a position replaces the earlier
 * one and drops the rows after it, so the rows are always consecutive
 * positions). The plugin reads them with tap_get.
 * struct cs_taps is owned by its struct cs_plugin (pl->taps, freed by
 * cs_plugin_free through cs_taps_free). */
#ifndef CS_SPEC_TAPS_H
#define CS_SPEC_TAPS_H

#include <stdbool.h>
#include <stdint.h>

#include "clspec/clspec.h"
#include "clspec/speculator.h"

struct cs_plugin;

struct cs_tap_slot {
    float *rows;        /* (n_layers, cap, n_embd): layer l's row r at (l * cap + r) * n_embd */
    float *out;         /* (n_layers, n_rows, n_embd) compacted for tap_get when n_layers > 1 */
    int32_t n_rows, cap;
    int32_t first_pos;  /* position of row 0 */
    bool read;          /* tap_get returned the rows: the next capture starts afresh */
};

struct cs_taps {
    int32_t n_layers;
    int32_t layers[16];       /* requested layers, 0..n_layer of the target */
    uint32_t n_embd;
    int32_t n_slots;
    struct cs_tap_slot *slots;/* (n_slots) */
};

/* Sets the 1.2 tap entries (tap_request, tap_get) of h. */
void cs_host_taps_entries(struct clspec_host *h);
void cs_taps_free(struct cs_taps *t);

/* Before a target forward through the door e: asks e for the layers the
 * plugin requested (clspec_taps_set; none without a plugin or a request). */
int cs_taps_prepare(struct cs_plugin *pl, clspec_engine *e, char *err, size_t errlen);
/* After that forward (rows seq[i], pos[i], i < n): adds each placed
 * sequence's rows (seq_rc[s] == CLSPEC_OK) to its slot's taps, read from
 * the door (clspec_tap); a refused sequence's rows are not kept. */
void cs_taps_capture(struct cs_plugin *pl, const clspec_engine *e, const int32_t *seq, const int32_t *pos, int32_t n,
                     const int *seq_rc);
/* Drops slot's rows (a new request). */
void cs_taps_slot_clear(struct cs_plugin *pl, int32_t slot);

#endif
