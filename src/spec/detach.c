/* detach.c: slots the cost-aware controller keeps plain, detached from the
 * plugin (ABI 1.8 slot_detach / slot_attach): no accept calls while
 * detached, one catch-up on the tokens of the plain steps at attach
 * (spec.h: cs_spec_detach_slot, cs_spec_attach_slot). */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>

#include "spec/spec.h"

static bool plugin_detaches(const struct cs_spec *sp)
{
    return sp->pl && sp->pl->vt.slot_detach && sp->pl->vt.slot_attach;
}

void cs_spec_detach_slot(struct cs_spec *sp, int32_t s)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    if (!sl->on || sl->detached || !plugin_detaches(sp))
        return;
    sp->pl->vt.slot_detach(sp->pl->state, s);
    sl->detached = true;
}

bool cs_spec_attach_slot(struct cs_spec *sp, int32_t s)
{
    struct cs_spec_slot *sl = &sp->slots[s];
    if (!sl->detached)
        return sl->on;
    char perr[512] = "";
    int rc = sp->pl->vt.slot_attach(sp->pl->state, s, sl->hist + sl->n_hist_det, sl->n_hist - sl->n_hist_det, perr,
                                    sizeof perr);
    sl->detached = false;
    sl->n_hist_det = sl->n_hist;
    sl->st.n_attach++;
    sp->total.n_attach++;
    if (rc < 0)
        cs_spec_slot_disable(sp, s, perr[0] ? perr : "the plugin's slot_attach failed");
    return rc >= 0;
}
