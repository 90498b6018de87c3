/* taps.c: see taps.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/common.h"
#include "engine/engine.h"
#include "spec/loader.h"
#include "spec/taps.h"

void cs_taps_free(struct cs_taps *t)
{
    if (!t)
        return;
    for (int32_t s = 0; s < t->n_slots && t->slots; s++) {
        free(t->slots[s].rows);
        free(t->slots[s].out);
    }
    free(t->slots);
    free(t);
}

static int tap_request(const struct clspec_host *h, const int32_t *layers, int32_t n, char *err, size_t errlen)
{
    struct cs_plugin *pl = h->impl;
    if (!pl->engine)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "tap_request: no target engine");
    const uint32_t NL = pl->engine->model->hp.n_layer;
    if (n < 1 || n > 16 || !layers)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "tap_request: %d layers (want 1..16)", n);
    for (int32_t i = 0; i < n; i++)
        if (layers[i] < 0 || (uint32_t)layers[i] > NL)
            return cs_err(err, errlen, CLSPEC_E_RANGE,
                          "tap_request: layer %d out of range 0..%u (%u = before the final norm)", layers[i], NL, NL);
    struct cs_taps *t = pl->taps;
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t || !(t->slots = calloc(pl->n_slots ? pl->n_slots : 1, sizeof *t->slots))) {
            free(t);
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "tap_request: out of memory");
        }
        t->n_slots = (int32_t)(pl->n_slots ? pl->n_slots : 1);
        t->n_embd = pl->engine->model->hp.n_embd;
        pl->taps = t;
    }
    /* a later request replaces the earlier one; rows kept so far are dropped */
    for (int32_t s = 0; s < t->n_slots; s++)
        t->slots[s].n_rows = 0;
    t->n_layers = n;
    memcpy(t->layers, layers, (size_t)n * sizeof *layers);
    return CLSPEC_OK;
}

static const float *tap_get(const struct clspec_host *h, int32_t slot, int32_t *n_rows, int32_t *first_pos)
{
    struct cs_plugin *pl = h->impl;
    struct cs_taps *t = pl->taps;
    if (n_rows)
        *n_rows = 0;
    if (first_pos)
        *first_pos = -1;
    if (!t || slot < 0 || slot >= t->n_slots || t->slots[slot].n_rows == 0)
        return NULL;
    struct cs_tap_slot *ts = &t->slots[slot];
    ts->read = true; /* the rows stay until the next forward (the plugin's call returns first) */
    if (n_rows)
        *n_rows = ts->n_rows;
    if (first_pos)
        *first_pos = ts->first_pos;
    if (t->n_layers == 1 || ts->n_rows == ts->cap)
        return ts->rows;
    const size_t E = t->n_embd, R = (size_t)ts->n_rows;
    float *o = realloc(ts->out, (size_t)t->n_layers * R * E * sizeof *o);
    if (!o)
        return NULL;
    ts->out = o;
    for (int32_t l = 0; l < t->n_layers; l++)
        memcpy(o + (size_t)l * R * E, ts->rows + (size_t)l * (size_t)ts->cap * E, R * E * sizeof *o);
    return o;
}

void cs_host_taps_entries(struct clspec_host *h)
{
    h->tap_request = tap_request;
    h->tap_get = tap_get;
}

int cs_taps_prepare(struct cs_plugin *pl, clspec_engine *e, char *err, size_t errlen)
{
    struct cs_taps *t = pl ? pl->taps : NULL;
    return t && t->n_layers > 0 ? clspec_taps_set(e, t->layers, t->n_layers, err, errlen)
                                : clspec_taps_set(e, NULL, 0, err, errlen);
}

void cs_taps_slot_clear(struct cs_plugin *pl, int32_t slot)
{
    struct cs_taps *t = pl ? pl->taps : NULL;
    if (t && slot >= 0 && slot < t->n_slots) {
        t->slots[slot].n_rows = 0;
        t->slots[slot].read = false;
    }
}

/* Makes room for n rows in slot ts, keeping its rows (restrided per layer). */
static int slot_reserve(struct cs_taps *t, struct cs_tap_slot *ts, int32_t n)
{
    if (n <= ts->cap)
        return 0;
    const size_t E = t->n_embd;
    int32_t cap = CS_MAX(n, 2 * ts->cap);
    float *r = malloc((size_t)t->n_layers * (size_t)cap * E * sizeof *r);
    if (!r)
        return -1;
    for (int32_t l = 0; l < t->n_layers && ts->n_rows > 0; l++)
        memcpy(r + (size_t)l * cap * E, ts->rows + (size_t)l * ts->cap * E, (size_t)ts->n_rows * E * sizeof *r);
    free(ts->rows);
    ts->rows = r;
    ts->cap = cap;
    return 0;
}

void cs_taps_capture(struct cs_plugin *pl, const clspec_engine *e, const int32_t *seq, const int32_t *pos, int32_t n,
                     const int *seq_rc)
{
    struct cs_taps *t = pl ? pl->taps : NULL;
    if (!t || t->n_layers == 0)
        return;
    const size_t E = t->n_embd;
    for (int32_t i = 0; i < n; i++) {
        int32_t s = seq[i];
        if (s < 0 || s >= t->n_slots || (seq_rc && seq_rc[s] != CLSPEC_OK) || !clspec_tap(e, 0, i))
            continue;
        struct cs_tap_slot *ts = &t->slots[s];
        if (ts->read) { /* the plugin has read the earlier rows */
            ts->read = false;
            ts->n_rows = 0;
        }
        int32_t p = pos[i];
        if (ts->n_rows == 0 || p < ts->first_pos || p > ts->first_pos + ts->n_rows) {
            ts->n_rows = 0; /* a gap or an earlier start: afresh */
            ts->first_pos = p;
        } else {
            ts->n_rows = p - ts->first_pos; /* this row replaces the one at p and drops the rows after it */
        }
        if (slot_reserve(t, ts, ts->n_rows + 1) < 0) {
            ts->n_rows = 0; /* out of memory: no taps for this forward rather than wrong ones */
            continue;
        }
        for (int32_t l = 0; l < t->n_layers; l++)
            memcpy(ts->rows + ((size_t)l * ts->cap + (size_t)ts->n_rows) * E, clspec_tap(e, l, i), E * sizeof(float));
        ts->n_rows++;
    }
}
