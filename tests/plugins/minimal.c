/* minimal.c: the smallest complete speculator plugin (docs/plugins.md shows
 * it whole). It proposes what followed the previous occurrence of the last
 * token, up to `max` tokens ([speculator] max = N, default 4). Builds
 * against the installed header only:
 *   cc -shared -fPIC $(pkg-config --cflags clspec) minimal.c -o minimal.so */
#include <clspec/speculator.h>

#include <stdlib.h>
#include <string.h>

struct minimal {
    const struct clspec_host *host;
    int32_t max;      /* most tokens proposed per draft */
    int64_t n_drafts; /* drafts proposed (logged at fini) */
};

static int minimal_init(const struct clspec_host *host, void **state, char *err, size_t errlen)
{
    const char *v = host->config_get(host, "max");
    int32_t max = v ? (int32_t)atoi(v) : 4;
    if (max < 1 || max > 64) {
        strncpy(err, "minimal: max must be 1..64", errlen - 1);
        err[errlen - 1] = 0;
        return -1;
    }
    struct minimal *m = calloc(1, sizeof *m);
    if (!m) {
        strncpy(err, "minimal: out of memory", errlen - 1);
        err[errlen - 1] = 0;
        return -1;
    }
    m->host = host;
    m->max = max;
    host->log(host, CLSPEC_LOG_INFO, "ready (max %d)", (int)max);
    *state = m;
    return 0;
}

static void minimal_fini(void *state)
{
    struct minimal *m = state;
    m->host->log(m->host, CLSPEC_LOG_INFO, "%lld drafts", (long long)m->n_drafts);
    free(m);
}

static int minimal_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                         size_t errlen)
{
    (void)probs;
    (void)err;
    (void)errlen;
    struct minimal *m = state;
    const int32_t *h = req->hist, n = req->n_hist, last = h[n - 1];
    int32_t lim = req->n_max < m->max ? req->n_max : m->max, k = 0;
    for (int32_t i = n - 2; i >= 0; i--)
        if (h[i] == last) {
            while (k < lim && i + 1 + k < n - 1) {
                out[k] = h[i + 1 + k];
                k++;
            }
            break;
        }
    m->n_drafts += k > 0;
    return k;
}

static const struct clspec_speculator minimal_vtable = {
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
    .size = sizeof(struct clspec_speculator),
    .name = "minimal",
    .caps = 0,
    .init = minimal_init,
    .fini = minimal_fini,
    .draft = minimal_draft,
    /* slot_begin, accept, slot_end: optional, this plugin keeps no per-slot state */
};

const struct clspec_speculator *clspec_speculator_entry(void)
{
    return &minimal_vtable;
}
