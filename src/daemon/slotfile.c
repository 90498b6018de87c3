/* slotfile.c: see slotfile.h. */
#include "config.h"

#include "daemon/slotfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <jansson.h>

#include "base/common.h"
#include "daemon/api_llama.h"
#include "daemon/log.h"

static const char MAGIC[8] = {'C', 'L', 'S', 'P', 'S', 'L', 'T', '1'};

bool cs_slotfile_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n < 256 && name[0] != '.' && !strchr(name, '/') && !strchr(name, '\\');
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int cs_slotfile_write(const char *path, uint32_t n_vocab, const int32_t *tok, int n, char *err, size_t errlen)
{
    size_t bytes = 16 + 4 * (size_t)n;
    unsigned char *b = malloc(bytes);
    if (!b)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    memcpy(b, MAGIC, 8);
    put_u32(b + 8, n_vocab);
    put_u32(b + 12, (uint32_t)n);
    for (int i = 0; i < n; i++)
        put_u32(b + 16 + 4 * (size_t)i, (uint32_t)tok[i]);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b, 1, bytes, f) == bytes;
    int e = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    free(b);
    if (!ok)
        return cs_err(err, errlen, CLSPEC_E_IO, "cannot write %s: %s", path, strerror(e));
    return CLSPEC_OK;
}

int cs_slotfile_read(const char *path, uint32_t n_vocab, int32_t **tok, int *n, char *err, size_t errlen)
{
    *tok = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cs_err(err, errlen, CLSPEC_E_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char h[16];
    int rc = CLSPEC_OK;
    if (fread(h, 1, 16, f) != 16 || memcmp(h, MAGIC, 8) != 0)
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s is not a clspec slot file", path);
    else if (get_u32(h + 8) != n_vocab)
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s was saved for a vocabulary of %u tokens; this model has %u",
                    path, get_u32(h + 8), n_vocab);
    else if (get_u32(h + 12) > (1u << 24))
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: %u tokens is more than a slot file holds", path,
                    get_u32(h + 12));
    uint32_t cnt = rc == CLSPEC_OK ? get_u32(h + 12) : 0;
    unsigned char *b = rc == CLSPEC_OK ? malloc(4 * (size_t)cnt + 1) : NULL;
    int32_t *t = rc == CLSPEC_OK ? malloc(((size_t)cnt + 1) * sizeof *t) : NULL;
    if (rc == CLSPEC_OK && (!b || !t))
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    if (rc == CLSPEC_OK && (fread(b, 1, 4 * (size_t)cnt + 1, f) != 4 * (size_t)cnt))
        rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: the header says %u tokens, the file holds another count",
                    path, cnt);
    for (uint32_t i = 0; rc == CLSPEC_OK && i < cnt; i++) {
        t[i] = (int32_t)get_u32(b + 4 * (size_t)i);
        if (t[i] < 0 || (uint32_t)t[i] >= n_vocab)
            rc = cs_err(err, errlen, CLSPEC_E_FORMAT, "%s: token %u is %d, outside the vocabulary", path, i, t[i]);
    }
    fclose(f);
    free(b);
    if (rc != CLSPEC_OK) {
        free(t);
        return rc;
    }
    *tok = t;
    *n = (int)cnt;
    return CLSPEC_OK;
}

/* A restore's (prefill-only) end: logged when it failed. */
static void on_restore(void *user, const struct cs_req_event *ev)
{
    (void)user;
    if (ev->type == CS_EV_ERROR)
        cs_log(CS_LOG_WARN, NULL, "slot restore failed (the slot is empty): %s", ev->message ? ev->message : "");
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The status for a scheduler or file error. */
static int status_of(int rc)
{
    return rc == CLSPEC_E_BUSY ? 409 : rc == CLSPEC_E_NOMEM ? 500 : rc == CLSPEC_E_INVAL ? 501 : 400;
}

static int restore(const struct cs_slot_ctx *x, int id, const char *name, const char *path, char **body)
{
    char err[512];
    struct clspec_engine_info info = {.size = sizeof info};
    int32_t *tok = NULL;
    int n = 0;
    double t0 = cs_now();
    int rc = clspec_engine_get_info(x->e, &info, err, sizeof err);
    if (rc == CLSPEC_OK) /* the slot keeps a cache and is idle now */
        rc = cs_sched_slot_tokens(x->s, id, &tok, &n, err, sizeof err);
    free(tok);
    tok = NULL;
    if (rc == CLSPEC_OK)
        rc = cs_slotfile_read(path, info.n_vocab, &tok, &n, err, sizeof err);
    if (rc == CLSPEC_E_IO && access(path, F_OK) != 0)
        return *body = cs_llama_error_json(404, err), 404;
    int n_erased = 0;
    if (rc == CLSPEC_OK && n == 0) /* an empty slot: restoring it is erasing it */
        rc = cs_sched_slot_erase(x->s, id, &n_erased, err, sizeof err);
    else if (rc == CLSPEC_OK) {
        struct cs_req r;
        memset(&r, 0, sizeof r);
        r.prompt = tok;
        r.n_prompt = n;
        r.sp = x->d->sp;
        r.pin_slot = id + 1;
        r.prefill_only = true;
        snprintf(r.id, sizeof r.id, "slot-%d-restore", id);
        uint64_t qid = 0;
        rc = cs_sched_submit(x->s, &r, on_restore, NULL, &qid, err, sizeof err);
    }
    free(tok);
    if (rc != CLSPEC_OK)
        return *body = cs_llama_error_json(status_of(rc), err), status_of(rc);
    cs_log(CS_LOG_INFO, NULL, "slot %d: restoring %d tokens from %s", id, n, name);
    *body = dump(json_pack("{s:i,s:s,s:i,s:I,s:{s:f}}", "id_slot", id, "filename", name, "n_restored", n, "n_read",
                           (json_int_t)(16 + 4 * (size_t)n), "timings", "restore_ms", (cs_now() - t0) * 1e3));
    return *body ? 200 : (*body = cs_llama_error_json(500, "out of memory"), 500);
}

static int save(const struct cs_slot_ctx *x, int id, const char *name, const char *path, char **body)
{
    char err[512];
    struct clspec_engine_info info = {.size = sizeof info};
    int32_t *tok = NULL;
    int n = 0;
    double t0 = cs_now();
    int rc = clspec_engine_get_info(x->e, &info, err, sizeof err);
    if (rc == CLSPEC_OK)
        rc = cs_sched_slot_tokens(x->s, id, &tok, &n, err, sizeof err);
    if (rc == CLSPEC_OK && mkdir(x->save_dir, 0755) != 0 && errno != EEXIST) /* as llama-server, made on use */
        rc = cs_err(err, sizeof err, CLSPEC_E_IO, "cannot create %s: %s", x->save_dir, strerror(errno));
    if (rc == CLSPEC_OK)
        rc = cs_slotfile_write(path, info.n_vocab, tok, n, err, sizeof err);
    free(tok);
    if (rc != CLSPEC_OK)
        return *body = cs_llama_error_json(rc == CLSPEC_E_IO ? 500 : status_of(rc), err),
               rc == CLSPEC_E_IO ? 500 : status_of(rc);
    cs_log(CS_LOG_INFO, NULL, "slot %d: %d tokens saved to %s", id, n, name);
    *body = dump(json_pack("{s:i,s:s,s:i,s:I,s:{s:f}}", "id_slot", id, "filename", name, "n_saved", n, "n_written",
                           (json_int_t)(16 + 4 * (size_t)n), "timings", "save_ms", (cs_now() - t0) * 1e3));
    return *body ? 200 : (*body = cs_llama_error_json(500, "out of memory"), 500);
}

int cs_slot_action(const struct cs_slot_ctx *x, const char *id_text, const char *action, const char *req,
                   size_t len, char **body)
{
    char err[512];
    if (!x->save_dir || !x->save_dir[0])
        return *body = cs_llama_error_json(501, "slot actions are off: set [server] slot_save_path"), 501;
    char *end = NULL;
    long id = id_text ? strtol(id_text, &end, 10) : -1;
    if (!id_text || !id_text[0] || *end || id < 0 || id > 63)
        return *body = cs_llama_error_json(400, "Invalid slot ID: /slots/{id} takes a slot number"), 400;
    if (!action || (strcmp(action, "save") && strcmp(action, "restore") && strcmp(action, "erase")))
        return *body = cs_llama_error_json(400, "Invalid action: ?action= takes save, restore or erase"), 400;
    if (strcmp(action, "erase") == 0) {
        int n = 0;
        int rc = cs_sched_slot_erase(x->s, (int)id, &n, err, sizeof err);
        if (rc != CLSPEC_OK)
            return *body = cs_llama_error_json(status_of(rc), err), status_of(rc);
        cs_log(CS_LOG_INFO, NULL, "slot %ld: %d cached tokens erased", id, n);
        *body = dump(json_pack("{s:i,s:i}", "id_slot", (int)id, "n_erased", n));
        return *body ? 200 : (*body = cs_llama_error_json(500, "out of memory"), 500);
    }
    json_t *o = json_loadb(req ? req : "", len, 0, NULL);
    const char *name = json_string_value(json_object_get(o, "filename"));
    int code = 400;
    if (!cs_slotfile_name_ok(name)) {
        *body = cs_llama_error_json(400, "Invalid filename: 'filename' must be a plain file name (no path "
                                         "separator, not starting with '.')");
    } else {
        char *path = NULL;
        if (asprintf(&path, "%s/%s", x->save_dir, name) < 0)
            path = NULL;
        code = !path ? (*body = cs_llama_error_json(500, "out of memory"), 500)
               : action[0] == 's' ? save(x, (int)id, name, path, body)
                                  : restore(x, (int)id, name, path, body);
        free(path);
    }
    json_decref(o);
    return code;
}
