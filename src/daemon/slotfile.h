/* slotfile.h: llama-server's slot actions, POST /slots/{id}?action=save |
 * restore | erase (llama.cpp tools/server/README.md), over the scheduler's
 * slot caches ([slots] keep_cache, sched.h), and the file they use.
 *
 * What a file holds: the slot's tokens (the prompt and output its cells
 * hold), not the cells themselves: the engine door has no export of KV
 * contents. Restore submits those tokens to the slot as a prefill-only
 * request: they are computed again into that slot's cells (the same tokens
 * at the same positions: the same cells a save would have exported), queued
 * like any request on that slot (a request pinned to the slot after the
 * restore answer runs after it and finds them cached). The answer comes once
 * the restore is queued; a restore that fails later (KV cache full) is
 * logged, and the slot is then empty.
 *
 * File: "CLSPSLT1", then little-endian u32 n_vocab, u32 n, n x i32 tokens.
 * Names: 1..255 bytes, no '/', '\\', NUL or leading '.' (no "..", no
 * hidden files), under [server] slot_save_path. */
#ifndef CS_DAEMON_SLOTFILE_H
#define CS_DAEMON_SLOTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clspec/clspec.h"
#include "daemon/api.h"
#include "daemon/sched.h"

/* True when name may be a slot file's name (see above). */
bool cs_slotfile_name_ok(const char *name);
/* Writes / reads a slot file (CLSPEC_E_IO naming the path; read: CLSPEC_E_FORMAT for a file that is
 * not one, or made for another vocabulary size, or with an id outside it). *tok malloc'd. */
int cs_slotfile_write(const char *path, uint32_t n_vocab, const int32_t *tok, int n, char *err, size_t errlen);
int cs_slotfile_read(const char *path, uint32_t n_vocab, int32_t **tok, int *n, char *err, size_t errlen);

struct cs_slot_ctx {
    clspec_engine *e;
    struct cs_sched *s;
    const char *save_dir;      /* [server] slot_save_path; NULL or "": the actions answer 501 */
    const struct cs_api_defaults *d;
};
/* POST /slots/{id_text}?action=...: the HTTP status and *body (llama-server's answer or error body).
 * save: {"id_slot","filename","n_saved","n_written","timings":{"save_ms"}}; restore: {"id_slot",
 * "filename","n_restored","n_read","timings":{"restore_ms"}}; erase: {"id_slot","n_erased"}. 400 bad
 * slot id, action or filename; 404 no such file; 409 the slot runs a request; 501 no save path. */
int cs_slot_action(const struct cs_slot_ctx *x, const char *id_text, const char *action, const char *req,
                   size_t len, char **body);

#endif
