/* broken.c: test plugins that the loader must refuse, one per failure:
 * BROKEN_NOSYM (no entry symbol), BROKEN_ABI (major 99), BROKEN_SMALL
 * (vtable of 16 bytes), BROKEN_INIT (init fails with its own message),
 * BROKEN_CAPS (needs target taps, which the host does not provide yet);
 * and NEWER, which must load: a plugin built against a later 1.x header
 * (a larger vtable whose extra entries this host ignores). */
#include <clspec/speculator.h>

#include <string.h>

static int b_init(const struct clspec_host *host, void **state, char *err, size_t errlen)
{
    (void)host;
    *state = NULL;
#ifdef BROKEN_INIT
    strncpy(err, "broken: the frobnicator is not configured", errlen - 1);
    err[errlen - 1] = 0;
    return -1;
#else
    (void)err;
    (void)errlen;
    return 0;
#endif
}

static int b_draft(void *state, const struct clspec_draft_req *req, int32_t *out, float *probs, char *err,
                   size_t errlen)
{
    (void)state, (void)req, (void)out, (void)probs, (void)err, (void)errlen;
    return 0;
}

#ifdef V17
static void b_detach(void *state, int32_t slot)
{
    (void)state, (void)slot;
}
static int b_attach(void *state, int32_t slot, const int32_t *tokens, int32_t n, char *err, size_t errlen)
{
    (void)state, (void)slot, (void)tokens, (void)n, (void)err, (void)errlen;
    return 0;
}
#endif

#ifdef NEWER
static const struct {
    struct clspec_speculator v1;
    void (*later_entry)(void *state); /* appended by a hypothetical 1.9 */
} newer = {
    .v1 = {.abi_major = CLSPEC_SPEC_ABI_MAJOR, .size = sizeof newer, .name = "newer", .init = b_init, .draft = b_draft},
    .later_entry = NULL,
};
#define vt newer.v1
#else
static const struct clspec_speculator vt = {
#ifdef BROKEN_ABI
    .abi_major = 99,
#else
    .abi_major = CLSPEC_SPEC_ABI_MAJOR,
#endif
#ifdef BROKEN_SMALL
    .size = 16,
#elif defined(V17)
    .size = offsetof(struct clspec_speculator, slot_detach), /* a plugin built against the 1.7 header */
#else
    .size = sizeof(struct clspec_speculator),
#endif
    .name = "broken",
#ifdef BROKEN_CAPS
    .caps = CLSPEC_SPEC_CAP_SHARED_KV, /* still not provided (taps are, since 1.2) */
#endif
    .init = b_init,
    .draft = b_draft,
#ifdef V17
    .slot_detach = b_detach, /* beyond its size: bytes a 1.7 plugin has there, which the host must not read */
    .slot_attach = b_attach,
#endif
};
#endif

#ifdef BROKEN_NOSYM
const struct clspec_speculator *not_the_entry(void);
const struct clspec_speculator *not_the_entry(void)
#else
const struct clspec_speculator *clspec_speculator_entry(void)
#endif
{
    return &vt;
}
