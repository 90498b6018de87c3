/* host_compute.c: see host_compute.h. Each handle starts with a magic word
 * so an entry can refuse a handle of another kind (or a freed one, while
 * its memory is still ours) with a message instead of crashing; buffers,
 * weights and KV caches sit in their dev's list, devs and GGUF files in
 * the plugin's (struct cs_compute). Ops check kinds, devices, element types
 * and every offset + extent against the buffers, then call the one host
 * entry of src/ops/ for the op; nothing waits except buf_read and sync
 * (and kv_place / kv_seq_rm when the previous cell metadata upload may still
 * be queued: see kv_mutable). The handle structs and checks shared with
 * host_compute_block.c (layers, the block builder) are in host_compute_impl.h. */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kv/batch.h"
#include "base/common.h"
#include "engine/engine.h"
#include "model/forward.h"
#include "kv/kv.h"
#include "ops/matmul.h"
#include "ops/ops.h"
#include "spec/host_compute.h"
#include "spec/host_compute_impl.h"
#include "spec/host_model.h"

/* A plugin's compute state (struct cs_plugin.compute). */
struct cs_compute {
    struct clspec_dev *devs;
    struct clspec_gguf *ggufs;
};

static struct cs_compute *state_of(struct cs_plugin *pl)
{
    if (!pl->compute)
        pl->compute = calloc(1, sizeof *pl->compute);
    return pl->compute;
}

/* ---- handle checks ---- */

int cs_hc_bad(char *err, size_t errlen, const char *op, const char *arg, const char *what)
{
    return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %s: %s", op, arg, what);
}

/* b must be a live buffer on *dev (set from b when NULL) of element type
 * type holding [off, off + n); out: the op writes it. */
int cs_hc_chk_buf(const clspec_buf *b, clspec_dev **dev, uint32_t type, size_t off, size_t n, bool out, const char *op,
                  const char *arg, char *err, size_t errlen)
{
    if (!b || b->o.magic != MAGIC_BUF)
        return cs_hc_bad(err, errlen, op, arg, b ? "not a buffer handle" : "NULL buffer");
    if (*dev && b->o.dev != *dev)
        return cs_hc_bad(err, errlen, op, arg, "a buffer of another device queue");
    *dev = b->o.dev;
    if (b->type != type)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %s: an %s buffer, the op wants %s", op, arg,
                      b->type == CLSPEC_BUF_F32 ? "f32" : "int32", type == CLSPEC_BUF_F32 ? "f32" : "int32");
    if (off > b->n || n > b->n - off)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: %s: elements [%zu, %zu) beyond the buffer's %zu", op, arg,
                      off, off + n, b->n);
    if (out && b->ro)
        return cs_hc_bad(err, errlen, op, arg, "the target's buffer is read-only");
    return CLSPEC_OK;
}

int cs_hc_chk_wt(const clspec_weight *w, clspec_dev **dev, const char *op, const char *arg, char *err, size_t errlen)
{
    if (!w || w->o.magic != MAGIC_WT)
        return cs_hc_bad(err, errlen, op, arg, w ? "not a weight handle" : "NULL weight");
    if (*dev && w->o.dev != *dev)
        return cs_hc_bad(err, errlen, op, arg, "a weight of another device queue");
    *dev = w->o.dev;
    return CLSPEC_OK;
}

int cs_hc_chk_kv(const clspec_kv *kv, int32_t layer, const char *op, char *err, size_t errlen)
{
    if (!kv || kv->o.magic != MAGIC_KV)
        return cs_hc_bad(err, errlen, op, "kv", kv ? "not a KV cache handle" : "NULL KV cache");
    if (layer < 0 || (uint32_t)layer >= kv->kv->n_layer)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "%s: layer %d out of range 0..%u", op, layer,
                      kv->kv->n_layer - 1);
    return CLSPEC_OK;
}

int cs_hc_chk_rows(int32_t n_rows, const char *op, char *err, size_t errlen)
{
    if (n_rows <= 0)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %d rows (want >= 1)", op, n_rows);
    return CLSPEC_OK;
}

/* ---- ownership lists ---- */

void cs_hc_obj_link(clspec_dev *d, struct cs_hc_obj *o, uint32_t magic)
{
    o->magic = magic;
    o->dev = d;
    o->prev = NULL;
    o->next = d->objs;
    if (d->objs)
        d->objs->prev = o;
    d->objs = o;
}

void cs_hc_obj_unlink(struct cs_hc_obj *o)
{
    if (o->prev)
        o->prev->next = o->next;
    else
        o->dev->objs = o->next;
    if (o->next)
        o->next->prev = o->prev;
    o->magic = MAGIC_DEAD;
}

static void buf_free(clspec_buf *b)
{
    if (!b || b->o.magic != MAGIC_BUF)
        return;
    cs_hc_obj_unlink(&b->o);
    cs_cl_release(&b->m);
    free(b);
}

static void weight_free(clspec_weight *w)
{
    if (!w || w->o.magic != MAGIC_WT)
        return;
    cs_hc_obj_unlink(&w->o);
    cs_weight_free(&w->own);
    free(w);
}

static void kv_free(clspec_kv *kv)
{
    if (!kv || kv->o.magic != MAGIC_KV)
        return;
    if (kv->inflight)
        clFinish(kv->o.dev->d->q); /* the queued metadata upload reads kv's host arrays */
    cs_hc_obj_unlink(&kv->o);
    cs_kv_free(kv->kv);
    cs_batch_free(&kv->b);
    free(kv);
}

/* After the queue was seen empty: host copies of written sources are free. */
static void waited(clspec_dev *d)
{
    for (size_t i = 0; i < d->n_staged; i++)
        free(d->staged[i]);
    d->n_staged = 0;
    d->gen++;
}

static void dev_close(clspec_dev *d)
{
    if (!d || d->magic != MAGIC_DEV)
        return;
    clFinish(d->d->q);
    waited(d);
    while (d->objs) {
        struct cs_hc_obj *o = d->objs;
        if (o->magic == MAGIC_BUF)
            buf_free((clspec_buf *)o);
        else if (o->magic == MAGIC_WT)
            weight_free((clspec_weight *)o);
        else if (o->magic == MAGIC_LAYER)
            cs_hc_layer_free((clspec_layer *)o);
        else
            kv_free((clspec_kv *)o);
    }
    for (int i = 0; i < 3; i++)
        cs_cl_release(&d->idx[i]);
    cs_cl_release(&d->tmp);
    free(d->staged);
    struct cs_compute *cs = d->pl->compute;
    for (clspec_dev **p = &cs->devs; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    d->magic = MAGIC_DEAD;
    free(d);
}

static void gguf_close(clspec_gguf *g)
{
    if (!g || g->magic != MAGIC_GGUF)
        return;
    if (g->prev)
        g->prev->next = g->next;
    else
        g->cs->ggufs = g->next;
    if (g->next)
        g->next->prev = g->prev;
    g->magic = MAGIC_DEAD;
    cs_gguf_close(g->g);
    free(g);
}

int cs_host_buf_tokens(const struct cs_plugin *pl, const clspec_buf *b, size_t off, size_t stride, int32_t n,
                       cl_mem *m, size_t *n_el, const struct cs_cl_dev **dev, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    if (n < 0 || stride < 1)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "draft_batch_dev: %d tokens at a stride of %zu", n, stride);
    const size_t span = n > 0 ? (size_t)(n - 1) * stride + 1 : 0;
    CS_TRY(cs_hc_chk_buf(b, &d, CLSPEC_BUF_I32, off, span, false, "draft_batch_dev", "buf", err, errlen));
    if (d->pl != pl)
        return cs_hc_bad(err, errlen, "draft_batch_dev", "buf", "a buffer of another plugin");
    *m = b->m;
    *n_el = b->n;
    *dev = d->d;
    return CLSPEC_OK;
}

void cs_host_compute_waited(struct cs_plugin *pl, const struct cs_cl_dev *dev)
{
    for (clspec_dev *d = pl && pl->compute ? pl->compute->devs : NULL; d; d = d->next)
        if (d->d == dev)
            waited(d);
}

void cs_host_compute_free(struct cs_plugin *pl)
{
    struct cs_compute *cs = pl->compute;
    if (!cs)
        return;
    while (cs->devs)
        dev_close(cs->devs);
    while (cs->ggufs)
        gguf_close(cs->ggufs);
    free(cs);
    pl->compute = NULL;
}

/* ---- devices ---- */

static int dev_open(const struct clspec_host *h, int32_t device, clspec_dev **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_plugin *pl = h->impl;
    const struct cs_engine *e = pl->engine;
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "dev_open: no target engine");
    if (device < 0)
        device = e->fm->out_dev;
    if (device >= e->n_dev)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "dev_open: device %d does not exist (the target has 0..%d)",
                      device, e->n_dev - 1);
    struct cs_compute *cs = state_of(pl);
    clspec_dev *d = calloc(1, sizeof *d);
    if (!cs || !d) {
        free(d);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "dev_open: out of memory");
    }
    d->magic = MAGIC_DEV;
    d->pl = pl;
    d->d = e->dev[device];
    d->index = device;
    d->next = cs->devs;
    cs->devs = d;
    *out = d;
    return CLSPEC_OK;
}

static int dev_ok(const clspec_dev *d, const char *op, char *err, size_t errlen)
{
    if (!d || d->magic != MAGIC_DEV)
        return cs_hc_bad(err, errlen, op, "dev", d ? "not a device handle" : "NULL device");
    return CLSPEC_OK;
}

static int sync_dev(clspec_dev *d, char *err, size_t errlen)
{
    CS_TRY(dev_ok(d, "sync", err, errlen));
    CS_TRY(cs_cl_finish(d->d, err, errlen));
    waited(d);
    return CLSPEC_OK;
}

/* The int32 buffer to pass for b[off, off + n): b itself at offset 0, else a
 * copy in staging slot (the ops of src/ops take these without an offset). */
static int idx_mem(clspec_dev *d, int slot, const clspec_buf *b, size_t off, size_t n, cl_mem *out, char *err,
                   size_t errlen)
{
    if (off == 0) {
        *out = b->m;
        return CLSPEC_OK;
    }
    if (d->idx_n[slot] < n) {
        cs_cl_release(&d->idx[slot]); /* queued commands keep the old one alive */
        d->idx_n[slot] = 0;
        CS_TRY(cs_cl_alloc(d->d, CL_MEM_READ_WRITE, n * 4, NULL, &d->idx[slot], err, errlen));
        d->idx_n[slot] = n;
    }
    cl_int e = clEnqueueCopyBuffer(d->d->q, b->m, d->idx[slot], off * 4, 0, n * 4, 0, NULL, NULL);
    CS_TRY(cs_cl_check(e, "clEnqueueCopyBuffer(index staging)", err, errlen));
    *out = d->idx[slot];
    return CLSPEC_OK;
}

/* ---- GGUF ---- */

static int gguf_open(const struct clspec_host *h, const char *path, clspec_gguf **out, char *err, size_t errlen)
{
    *out = NULL;
    struct cs_compute *cs = state_of(h->impl);
    clspec_gguf *g = calloc(1, sizeof *g);
    if (!cs || !g) {
        free(g);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "gguf_open: out of memory");
    }
    const struct cs_engine *e = ((struct cs_plugin *)h->impl)->engine;
    if (!path && !e) {
        free(g);
        return cs_err(err, errlen, CLSPEC_E_INVAL, "gguf_open: no path and no target engine");
    }
    int rc = cs_gguf_open(path ? path : e->model->gguf->path, &g->g, err, errlen); /* NULL: the target's file */
    if (rc < 0) {
        free(g);
        return rc;
    }
    g->magic = MAGIC_GGUF;
    g->cs = cs;
    g->next = cs->ggufs;
    if (g->next)
        g->next->prev = g;
    cs->ggufs = g;
    *out = g;
    return CLSPEC_OK;
}

int32_t cs_host_gguf_ints(const struct cs_gguf *g, const char *key, int64_t *out, int32_t cap)
{
    const struct cs_gguf_kv *kv = key ? cs_gguf_find(g, key) : NULL;
    if (!kv)
        return -1;
    enum cs_gguf_type t = kv->type == CS_GGUF_ARRAY ? kv->arr_type : kv->type;
    if (t == CS_GGUF_F32 || t == CS_GGUF_F64 || t == CS_GGUF_STRING || t == CS_GGUF_ARRAY)
        return -1;
    if (kv->type != CS_GGUF_ARRAY) {
        if (cap > 0 && out)
            out[0] = (t == CS_GGUF_I8 || t == CS_GGUF_I16 || t == CS_GGUF_I32 || t == CS_GGUF_I64) ? kv->v.i
                                                                                                 : (int64_t)kv->v.u;
        return 1;
    }
    for (uint64_t i = 0; i < kv->arr_n && (int64_t)i < cap && out; i++)
        out[i] = cs_gguf_arr_int(kv, i);
    return kv->arr_n > INT32_MAX ? INT32_MAX : (int32_t)kv->arr_n;
}

static int32_t gguf_ints(const clspec_gguf *g, const char *key, int64_t *out, int32_t cap)
{
    if (!g || g->magic != MAGIC_GGUF)
        return -1;
    return cs_host_gguf_ints(g->g, key, out, cap);
}

static int gguf_float(const clspec_gguf *g, const char *key, double *out)
{
    const struct cs_gguf_kv *kv = g && g->magic == MAGIC_GGUF && key ? cs_gguf_find(g->g, key) : NULL;
    if (!kv || kv->type == CS_GGUF_STRING || kv->type == CS_GGUF_ARRAY)
        return -1;
    int64_t i;
    if (kv->type == CS_GGUF_F32 || kv->type == CS_GGUF_F64)
        *out = kv->v.f;
    else if (cs_host_gguf_ints(g->g, key, &i, 1) == 1)
        *out = (double)i;
    else
        return -1;
    return 0;
}

static int gguf_str(const clspec_gguf *g, const char *key, char *buf, size_t len)
{
    const struct cs_gguf_kv *kv = g && g->magic == MAGIC_GGUF && key ? cs_gguf_find(g->g, key) : NULL;
    if (!kv || kv->type != CS_GGUF_STRING || !buf || kv->v.s.len >= len)
        return -1;
    memcpy(buf, kv->v.s.ptr, kv->v.s.len);
    buf[kv->v.s.len] = 0;
    return 0;
}

static int find_tensor(const clspec_gguf *g, const char *name, const char *op, const struct cs_gguf_tensor **t,
                       char *err, size_t errlen)
{
    if (!g || g->magic != MAGIC_GGUF)
        return cs_hc_bad(err, errlen, op, "gguf", g ? "not a GGUF handle" : "NULL GGUF");
    *t = name ? cs_gguf_find_tensor(g->g, name) : NULL;
    if (!*t)
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "%s: %s: no tensor %s", op, g->g->path, name ? name : "(null)");
    return CLSPEC_OK;
}

static int gguf_tensor(const clspec_gguf *g, const char *name, struct clspec_tensor_info *out, char *err,
                       size_t errlen)
{
    const struct cs_gguf_tensor *t;
    CS_TRY(find_tensor(g, name, "gguf_tensor", &t, err, errlen));
    struct clspec_tensor_info ti = {.size = sizeof ti, .type = t->type, .n_dims = t->n_dims};
    memcpy(ti.ne, t->ne, sizeof ti.ne);
    cs_host_fill(out, &ti, sizeof ti);
    return CLSPEC_OK;
}

/* ---- weights and buffers ---- */

static int wt_new(clspec_dev *d, clspec_weight **out, char *err, size_t errlen)
{
    clspec_weight *w = calloc(1, sizeof *w);
    if (!w)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "weight: out of memory");
    w->w = &w->own;
    cs_hc_obj_link(d, &w->o, MAGIC_WT);
    *out = w;
    return CLSPEC_OK;
}

/* A 2-D tensor t of a type the matmul reads into a new weight of d. */
static int wt_upload(clspec_dev *d, const struct cs_gguf_tensor *t, const char *what, clspec_weight **out, char *err,
                     size_t errlen)
{
    if (t->n_dims > 2 || !cs_weight_type_ok(t->type))
        return cs_err(err, errlen, CLSPEC_E_UNSUPPORTED, "%s: tensor %s: %u dims of type %s (want a matrix of a "
                      "matmul type)", what, t->name, t->n_dims, cs_type_name(t->type));
    CS_TRY(wt_new(d, out, err, errlen));
    int rc = cs_fwd_upload_mat(d->d, t, &(*out)->own, NULL, err, errlen);
    if (rc < 0) {
        weight_free(*out);
        *out = NULL;
    }
    return rc;
}

static int weight_upload(clspec_dev *d, const clspec_gguf *g, const char *name, clspec_weight **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    const struct cs_gguf_tensor *t;
    CS_TRY(dev_ok(d, "weight_upload", err, errlen));
    CS_TRY(find_tensor(g, name, "weight_upload", &t, err, errlen));
    return wt_upload(d, t, "weight_upload", out, err, errlen);
}

static int buf_make(clspec_dev *d, uint32_t type, size_t n, cl_mem m, clspec_buf **out, char *err, size_t errlen)
{
    clspec_buf *b = calloc(1, sizeof *b);
    if (!b) {
        cs_cl_release(&m);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "buffer: out of memory");
    }
    b->m = m;
    b->type = type;
    b->n = n;
    cs_hc_obj_link(d, &b->o, MAGIC_BUF);
    *out = b;
    return CLSPEC_OK;
}

static int vec_upload(clspec_dev *d, const clspec_gguf *g, const char *name, clspec_buf **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    const struct cs_gguf_tensor *t;
    CS_TRY(dev_ok(d, "vec_upload", err, errlen));
    CS_TRY(find_tensor(g, name, "vec_upload", &t, err, errlen));
    cl_mem m = NULL;
    CS_TRY(cs_fwd_upload_vec(d->d, t, &m, NULL, err, errlen));
    return buf_make(d, CLSPEC_BUF_F32, (size_t)t->n_elems, m, out, err, errlen);
}

static int target_weight(clspec_dev *d, const char *name, clspec_weight **out, char *err, size_t errlen)
{
    *out = NULL;
    CS_TRY(dev_ok(d, "target_weight", err, errlen));
    const struct cs_engine *e = d->pl->engine;
    const struct cs_fwd_model *fm = e->fm;
    const bool embd = name && strcmp(name, "token_embd.weight") == 0;
    if (!embd && !(name && strcmp(name, "output.weight") == 0))
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "target_weight: %s is not lent (token_embd.weight or "
                      "output.weight)", name ? name : "(null)");
    const struct cs_weight *tw = embd || fm->output_is_embd ? &fm->tok_embd : &fm->output;
    struct cs_cl_dev *on = fm->devs[embd || fm->output_is_embd ? fm->emb_dev : fm->out_dev];
    if (on != d->d) /* another device: a copy of the tensor */
        return wt_upload(d, embd ? e->model->tok_embd : e->model->output, "target_weight", out, err, errlen);
    CS_TRY(wt_new(d, out, err, errlen));
    (*out)->w = tw;
    return CLSPEC_OK;
}

static int target_vec(clspec_dev *d, const char *name, clspec_buf **out, char *err, size_t errlen)
{
    *out = NULL;
    CS_TRY(dev_ok(d, "target_vec", err, errlen));
    const struct cs_engine *e = d->pl->engine;
    const struct cs_fwd_model *fm = e->fm;
    if (!name || strcmp(name, "output_norm.weight") != 0)
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "target_vec: %s is not lent (output_norm.weight)",
                      name ? name : "(null)");
    cl_mem m = NULL;
    if (fm->devs[fm->out_dev] == d->d) {
        CS_TRY(cs_cl_check(clRetainMemObject(fm->output_norm), "clRetainMemObject(output_norm)", err, errlen));
        m = fm->output_norm;
    } else {
        CS_TRY(cs_fwd_upload_vec(d->d, e->model->output_norm, &m, NULL, err, errlen));
    }
    CS_TRY(buf_make(d, CLSPEC_BUF_F32, e->model->hp.n_embd, m, out, err, errlen));
    (*out)->ro = true;
    return CLSPEC_OK;
}

static void weight_shape(const clspec_weight *w, uint32_t *n_in, uint32_t *n_out, uint32_t *type)
{
    const bool ok = w && w->o.magic == MAGIC_WT;
    if (n_in)
        *n_in = ok ? w->w->n_in : 0;
    if (n_out)
        *n_out = ok ? w->w->n_out : 0;
    if (type)
        *type = ok ? (uint32_t)w->w->type : UINT32_MAX;
}

static int buf_new(clspec_dev *d, uint32_t type, size_t n, clspec_buf **out, char *err, size_t errlen)
{
    *out = NULL;
    CS_TRY(dev_ok(d, "buf_new", err, errlen));
    if (type != CLSPEC_BUF_F32 && type != CLSPEC_BUF_I32)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "buf_new: element type %u (want CLSPEC_BUF_F32 or _I32)", type);
    if (n == 0 || n > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_RANGE, "buf_new: %zu elements (want 1..2^32-1)", n);
    cl_mem m = NULL;
    CS_TRY(cs_cl_alloc(d->d, CL_MEM_READ_WRITE, n * 4, NULL, &m, err, errlen));
    return buf_make(d, type, n, m, out, err, errlen);
}

static int buf_write(clspec_buf *b, size_t off, size_t n, const void *src, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(
        cs_hc_chk_buf(b, &d, b && b->o.magic == MAGIC_BUF ? b->type : 0, off, n, true, "buf_write", "b", err, errlen));
    if (n == 0)
        return CLSPEC_OK;
    if (d->n_staged == d->cap_staged) {
        size_t cap = d->cap_staged ? 2 * d->cap_staged : 16;
        void **p = realloc(d->staged, cap * sizeof *p);
        if (!p)
            return cs_err(err, errlen, CLSPEC_E_NOMEM, "buf_write: out of memory");
        d->staged = p;
        d->cap_staged = cap;
    }
    void *copy = malloc(n * 4);
    if (!copy)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "buf_write: out of memory");
    memcpy(copy, src, n * 4);
    d->staged[d->n_staged++] = copy;
    return cs_cl_write_async(d->d, b->m, off * 4, n * 4, copy, err, errlen);
}

static int buf_read(clspec_buf *b, size_t off, size_t n, void *dst, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(
        cs_hc_chk_buf(b, &d, b && b->o.magic == MAGIC_BUF ? b->type : 0, off, n, false, "buf_read", "b", err, errlen));
    CS_TRY(cs_cl_read(d->d, b->m, off * 4, n * 4, dst, err, errlen));
    waited(d);
    return CLSPEC_OK;
}

static int copy(clspec_buf *dst, size_t dst_off, size_t dst_ld, const clspec_buf *src, size_t src_off, size_t src_ld,
                int32_t n_rows, int32_t n_cols, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n_rows, "copy", err, errlen));
    if (n_cols <= 0 || (size_t)n_cols > dst_ld || (size_t)n_cols > src_ld)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "copy: %d columns with row strides %zu (dst), %zu (src)", n_cols,
                      dst_ld, src_ld);
    const size_t span_d = (size_t)(n_rows - 1) * dst_ld + (size_t)n_cols,
                 span_s = (size_t)(n_rows - 1) * src_ld + (size_t)n_cols;
    CS_TRY(cs_hc_chk_buf(src, &d, src && src->o.magic == MAGIC_BUF ? src->type : 0, src_off, span_s, false, "copy",
                         "src", err, errlen));
    CS_TRY(cs_hc_chk_buf(dst, &d, src->type, dst_off, span_d, true, "copy", "dst", err, errlen));
    size_t so[3] = {src_off * 4, 0, 0}, dor[3] = {dst_off * 4, 0, 0}, reg[3] = {(size_t)n_cols * 4, (size_t)n_rows, 1};
    cl_int e = clEnqueueCopyBufferRect(d->d->q, src->m, dst->m, so, dor, reg, src_ld * 4, 0, dst_ld * 4, 0, 0, NULL,
                                       NULL);
    return cs_cl_check(e, "clEnqueueCopyBufferRect(copy)", err, errlen);
}

/* ---- ops ---- */

static int matmul(const clspec_weight *w, const clspec_buf *x, size_t x_off, clspec_buf *y, size_t y_off,
                  int32_t n_rows, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n_rows, "matmul", err, errlen));
    CS_TRY(cs_hc_chk_wt(w, &d, "matmul", "w", err, errlen));
    const size_t n = (size_t)n_rows;
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, n * w->w->n_in, false, "matmul", "x", err, errlen));
    CS_TRY(cs_hc_chk_buf(y, &d, CLSPEC_BUF_F32, y_off, n * w->w->n_out, true, "matmul", "y", err, errlen));
    return cs_op_matmul(d->d, w->w, x->m, x_off, y->m, y_off, (uint32_t)n_rows, err, errlen);
}

static int matmul_qkv(const clspec_weight *wq, const clspec_weight *wk, const clspec_weight *wv, const clspec_buf *x,
                      size_t x_off, clspec_buf *q, size_t q_off, clspec_buf *k, size_t k_off, clspec_buf *v,
                      size_t v_off, int32_t n_rows, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    const char *op = "matmul_qkv";
    CS_TRY(cs_hc_chk_rows(n_rows, op, err, errlen));
    CS_TRY(cs_hc_chk_wt(wq, &d, op, "wq", err, errlen));
    CS_TRY(cs_hc_chk_wt(wk, &d, op, "wk", err, errlen));
    CS_TRY(cs_hc_chk_wt(wv, &d, op, "wv", err, errlen));
    const size_t n = (size_t)n_rows, n_in = wq->w->n_in;
    if (wk->w->n_in != n_in || wv->w->n_in != n_in)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: rows of %u, %u, %u elements (want one n_in)", op, wq->w->n_in,
                      wk->w->n_in, wv->w->n_in);
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, n * n_in, false, op, "x", err, errlen));
    CS_TRY(cs_hc_chk_buf(q, &d, CLSPEC_BUF_F32, q_off, n * wq->w->n_out, true, op, "q", err, errlen));
    CS_TRY(cs_hc_chk_buf(k, &d, CLSPEC_BUF_F32, k_off, n * wk->w->n_out, true, op, "k", err, errlen));
    CS_TRY(cs_hc_chk_buf(v, &d, CLSPEC_BUF_F32, v_off, n * wv->w->n_out, true, op, "v", err, errlen));
    return cs_op_matmul_qkv(d->d, wq->w, wk->w, wv->w, x->m, x_off, q->m, q_off, k->m, k_off, v->m, v_off,
                            (uint32_t)n_rows, err, errlen);
}

static int matmul_swiglu(const clspec_weight *wg, const clspec_weight *wu, const clspec_buf *x, size_t x_off,
                         clspec_buf *out, size_t out_off, int32_t n_rows, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    const char *op = "matmul_swiglu";
    CS_TRY(cs_hc_chk_rows(n_rows, op, err, errlen));
    CS_TRY(cs_hc_chk_wt(wg, &d, op, "wg", err, errlen));
    CS_TRY(cs_hc_chk_wt(wu, &d, op, "wu", err, errlen));
    const struct cs_weight *g = wg->w, *u = wu->w;
    if (g->type != u->type || g->n_in != u->n_in || g->n_out != u->n_out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: gate (%u x %u %s) and up (%u x %u %s) differ", op, g->n_out,
                      g->n_in, cs_type_name(g->type), u->n_out, u->n_in, cs_type_name(u->type));
    const size_t n = (size_t)n_rows;
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, n * g->n_in, false, op, "x", err, errlen));
    CS_TRY(cs_hc_chk_buf(out, &d, CLSPEC_BUF_F32, out_off, n * g->n_out, true, op, "out", err, errlen));
    if (d->tmp_n < n * g->n_out) {
        cs_cl_release(&d->tmp); /* queued commands keep the old one alive */
        d->tmp_n = 0;
        CS_TRY(cs_cl_alloc(d->d, CL_MEM_READ_WRITE, n * g->n_out * 4, NULL, &d->tmp, err, errlen));
        d->tmp_n = n * g->n_out;
    }
    return cs_op_matmul_swiglu(d->d, g, u, x->m, x_off, d->tmp, out->m, out_off, (uint32_t)n_rows, err, errlen);
}

static int get_rows(const clspec_weight *w, const clspec_buf *ids, size_t ids_off, int32_t n, clspec_buf *out,
                    size_t out_off, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n, "get_rows", err, errlen));
    CS_TRY(cs_hc_chk_wt(w, &d, "get_rows", "w", err, errlen));
    CS_TRY(cs_hc_chk_buf(ids, &d, CLSPEC_BUF_I32, ids_off, (size_t)n, false, "get_rows", "ids", err, errlen));
    CS_TRY(
        cs_hc_chk_buf(out, &d, CLSPEC_BUF_F32, out_off, (size_t)n * w->w->n_in, true, "get_rows", "out", err, errlen));
    return cs_op_get_rows(d->d, w->w, ids->m, ids_off, (uint32_t)n, out->m, out_off, err, errlen);
}

static int rmsnorm(const clspec_buf *x, size_t x_off, const clspec_buf *w, clspec_buf *y, size_t y_off,
                   int32_t n_rows, int32_t n_cols, float eps, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n_rows, "rmsnorm", err, errlen));
    CS_TRY(cs_hc_chk_rows(n_cols, "rmsnorm (columns)", err, errlen));
    const size_t n = (size_t)n_rows * (size_t)n_cols;
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, n, false, "rmsnorm", "x", err, errlen));
    if (w)
        CS_TRY(cs_hc_chk_buf(w, &d, CLSPEC_BUF_F32, 0, (size_t)n_cols, false, "rmsnorm", "w", err, errlen));
    CS_TRY(cs_hc_chk_buf(y, &d, CLSPEC_BUF_F32, y_off, n, true, "rmsnorm", "y", err, errlen));
    if (x == y && x_off != y_off)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "rmsnorm: y overlaps x at another offset");
    return cs_op_rmsnorm(d->d, x->m, x_off, w ? w->m : NULL, y->m, y_off, n_rows, n_cols, eps, err, errlen);
}

static int rope(clspec_buf *x, size_t x_off, const clspec_buf *pos, size_t pos_off, int32_t n_rows, int32_t n_head,
                int32_t head_dim, int32_t n_rot, int32_t neox, float freq_base, float freq_scale, char *err,
                size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n_rows, "rope", err, errlen));
    if (n_head <= 0 || head_dim <= 0 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "rope: %d heads of %d, n_rot %d (want even, <= head_dim)", n_head,
                      head_dim, n_rot);
    const size_t n = (size_t)n_rows * (size_t)n_head * (size_t)head_dim;
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, n, true, "rope", "x", err, errlen));
    CS_TRY(cs_hc_chk_buf(pos, &d, CLSPEC_BUF_I32, pos_off, (size_t)n_rows, false, "rope", "pos", err, errlen));
    cl_mem pm;
    CS_TRY(idx_mem(d, 0, pos, pos_off, (size_t)n_rows, &pm, err, errlen));
    const struct cs_rope_params p = {n_rot, neox != 0, freq_base, freq_scale};
    return cs_op_rope(d->d, x->m, x_off, pm, n_rows, n_head, head_dim, &p, err, errlen);
}

static int add_rmsnorm(clspec_buf *x, size_t x_off, const clspec_buf *b, size_t b_off, const clspec_buf *w,
                       clspec_buf *y, size_t y_off, int32_t n_rows, int32_t n_cols, float eps, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    const char *op = "add_rmsnorm";
    CS_TRY(cs_hc_chk_rows(n_rows, op, err, errlen));
    CS_TRY(cs_hc_chk_rows(n_cols, "add_rmsnorm (columns)", err, errlen));
    const size_t n = (size_t)n_rows * (size_t)n_cols;
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, n, true, op, "x", err, errlen));
    CS_TRY(cs_hc_chk_buf(b, &d, CLSPEC_BUF_F32, b_off, n, false, op, "b", err, errlen));
    if (w)
        CS_TRY(cs_hc_chk_buf(w, &d, CLSPEC_BUF_F32, 0, (size_t)n_cols, false, op, "w", err, errlen));
    CS_TRY(cs_hc_chk_buf(y, &d, CLSPEC_BUF_F32, y_off, n, true, op, "y", err, errlen));
    if (y == x || (y == b && y_off != b_off))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: y must be b at the same offset or another buffer than x", op);
    return cs_op_add_rmsnorm(d->d, x->m, x_off, b->m, b_off, w ? w->m : NULL, y->m, y_off, n_rows, n_cols, eps, err,
                             errlen);
}

/* a, b -> out elementwise (add, swiglu): n elements of each */
static int binary(const char *op, const clspec_buf *a, size_t a_off, const clspec_buf *b, size_t b_off,
                  clspec_buf *out, size_t out_off, size_t n, clspec_dev **d, char *err, size_t errlen)
{
    if (n == 0 || n > UINT32_MAX)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %zu elements", op, n);
    CS_TRY(cs_hc_chk_buf(a, d, CLSPEC_BUF_F32, a_off, n, false, op, "a", err, errlen));
    CS_TRY(cs_hc_chk_buf(b, d, CLSPEC_BUF_F32, b_off, n, false, op, "b", err, errlen));
    return cs_hc_chk_buf(out, d, CLSPEC_BUF_F32, out_off, n, true, op, "out", err, errlen);
}

static int add(const clspec_buf *a, size_t a_off, const clspec_buf *b, size_t b_off, clspec_buf *out, size_t out_off,
               size_t n, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(binary("add", a, a_off, b, b_off, out, out_off, n, &d, err, errlen));
    return cs_op_add(d->d, a->m, a_off, b->m, b_off, out->m, out_off, n, err, errlen);
}

static int swiglu(const clspec_buf *gate, size_t gate_off, const clspec_buf *up, size_t up_off, clspec_buf *out,
                  size_t out_off, size_t n, char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(binary("swiglu", gate, gate_off, up, up_off, out, out_off, n, &d, err, errlen));
    return cs_op_swiglu(d->d, gate->m, gate_off, up->m, up_off, out->m, out_off, n, err, errlen);
}

static int add_bias(clspec_buf *x, size_t x_off, const clspec_buf *bias, int32_t n_rows, int32_t n_cols, char *err,
                    size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n_rows, "add_bias", err, errlen));
    CS_TRY(cs_hc_chk_rows(n_cols, "add_bias (columns)", err, errlen));
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, (size_t)n_rows * (size_t)n_cols, true, "add_bias", "x", err,
                         errlen));
    CS_TRY(cs_hc_chk_buf(bias, &d, CLSPEC_BUF_F32, 0, (size_t)n_cols, false, "add_bias", "bias", err, errlen));
    return cs_op_add_bias(d->d, x->m, x_off, bias->m, n_rows, n_cols, err, errlen);
}

static int argmax(const clspec_buf *x, size_t x_off, clspec_buf *out, size_t out_off, int32_t n_rows, int32_t n_cols,
                  char *err, size_t errlen)
{
    clspec_dev *d = NULL;
    CS_TRY(cs_hc_chk_rows(n_rows, "argmax", err, errlen));
    CS_TRY(cs_hc_chk_rows(n_cols, "argmax (columns)", err, errlen));
    CS_TRY(cs_hc_chk_buf(x, &d, CLSPEC_BUF_F32, x_off, (size_t)n_rows * (size_t)n_cols, false, "argmax", "x", err,
                         errlen));
    CS_TRY(cs_hc_chk_buf(out, &d, CLSPEC_BUF_I32, out_off, (size_t)n_rows, true, "argmax", "out", err, errlen));
    return cs_op_argmax(d->d, x->m, x_off, out->m, out_off, n_rows, n_cols, err, errlen);
}

/* ---- KV caches ---- */

static int kv_new(clspec_dev *d, int32_t n_layer, int32_t n_kv_head, int32_t head_dim, int32_t n_ctx, int32_t n_seq,
                  uint32_t type_k, uint32_t type_v, clspec_kv **out, char *err, size_t errlen)
{
    *out = NULL;
    CS_TRY(dev_ok(d, "kv_new", err, errlen));
    if (n_layer <= 0 || n_layer > 4096 || n_kv_head <= 0 || head_dim <= 0 || n_ctx <= 0 || n_seq <= 0 ||
        n_seq > CS_MAX_SEQ)
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "kv_new: %d layers, %d kv heads of %d, %d cells, %d sequences (want all > 0, sequences <= %d)",
                      n_layer, n_kv_head, head_dim, n_ctx, n_seq, CS_MAX_SEQ);
    struct cs_hparams hp = {0};
    hp.n_layer = hp.n_layer_total = (uint32_t)n_layer;
    hp.n_head = hp.n_head_kv = (uint32_t)n_kv_head;
    hp.head_dim = hp.n_rot = (uint32_t)head_dim;
    hp.rope_freq_base = 10000.0f; /* only seq_add re-rotates with these; the service has no seq_add */
    hp.rope_freq_scale = 1.0f;
    struct cs_cl_dev **ld = malloc((size_t)n_layer * sizeof *ld);
    clspec_kv *kv = calloc(1, sizeof *kv);
    if (!ld || !kv) {
        free(ld);
        free(kv);
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv_new: out of memory");
    }
    for (int32_t l = 0; l < n_layer; l++)
        ld[l] = d->d;
    struct cs_kv_params kp = {.n_ctx = (uint32_t)n_ctx, .type_k = type_k, .type_v = type_v,
                              .n_seq_max = (uint32_t)n_seq, .unified = true};
    int rc = cs_kv_new(&hp, &kp, ld, &kv->kv, err, errlen);
    free(ld);
    if (rc == 0)
        rc = cs_batch_init(&kv->b, 64, err, errlen);
    if (rc < 0) {
        cs_kv_free(kv->kv);
        free(kv);
        cs_err_prefix(err, errlen, rc, "kv_new");
        return rc;
    }
    cs_hc_obj_link(d, &kv->o, MAGIC_KV);
    *out = kv;
    return CLSPEC_OK;
}

/* Before kv's host cell metadata changes: the last upload from it must have
 * run (it was queued without waiting; any wait since then covers it). */
static int kv_mutable(clspec_kv *kv, char *err, size_t errlen)
{
    if (kv->inflight && kv->synced_gen == kv->o.dev->gen)
        CS_TRY(sync_dev(kv->o.dev, err, errlen));
    kv->inflight = false;
    return CLSPEC_OK;
}

static int kv_upload(clspec_kv *kv, char *err, size_t errlen)
{
    CS_TRY(cs_kv_sync(kv->kv, false, err, errlen));
    kv->pending = false;
    kv->inflight = true;
    kv->synced_gen = kv->o.dev->gen;
    return CLSPEC_OK;
}

static int kv_place(clspec_kv *kv, int32_t n, const int32_t *pos, const int32_t *seq, clspec_buf *cells,
                    size_t cells_off, int32_t *cells_host, char *err, size_t errlen)
{
    CS_TRY(cs_hc_chk_kv(kv, 0, "kv_place", err, errlen));
    CS_TRY(cs_hc_chk_rows(n, "kv_place", err, errlen));
    if (!pos || !seq)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "kv_place: positions and sequences are required");
    clspec_dev *d = kv->o.dev;
    CS_TRY(cs_hc_chk_buf(cells, &d, CLSPEC_BUF_I32, cells_off, (size_t)n, true, "kv_place", "cells", err, errlen));
    if (kv->b.cap < n) {
        cs_batch_free(&kv->b);
        CS_TRY(cs_batch_init(&kv->b, n, err, errlen));
    }
    cs_batch_clear(&kv->b);
    for (int32_t i = 0; i < n; i++) {
        if (seq[i] < 0 || (uint32_t)seq[i] >= kv->kv->p.n_seq_max)
            return cs_err(err, errlen, CLSPEC_E_RANGE, "kv_place: row %d: sequence %d out of range 0..%u", i, seq[i],
                          kv->kv->p.n_seq_max - 1);
        CS_TRY(cs_batch_add(&kv->b, -1, pos[i], seq[i], false, err, errlen));
    }
    CS_TRY(kv_mutable(kv, err, errlen));
    int32_t *ch = malloc((size_t)n * sizeof *ch);
    if (!ch)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "kv_place: out of memory");
    int seq_rc[CS_MAX_SEQ];
    int rc = cs_kv_place(kv->kv, &kv->b, ch, seq_rc, err, errlen);
    for (int s = 0; rc == 0 && s < CS_MAX_SEQ; s++)
        if (seq_rc[s] != CLSPEC_OK) { /* all or nothing: undo the other sequences' rows */
            char e2[64];
            for (int32_t i = 0; i < n; i++)
                if (ch[i] >= 0)
                    cs_kv_seq_rm(kv->kv, seq[i], pos[i], pos[i] + 1, e2, sizeof e2);
            rc = cs_err(err, errlen, CLSPEC_E_KV_FULL, "kv_place: no free cell for sequence %d (%u cells)", s,
                        kv->kv->p.n_ctx);
        }
    if (rc == 0)
        rc = kv_upload(kv, err, errlen);
    if (rc == 0)
        rc = buf_write(cells, cells_off, (size_t)n, ch, err, errlen);
    if (rc == 0 && cells_host)
        memcpy(cells_host, ch, (size_t)n * sizeof *ch);
    free(ch);
    return rc;
}

static int kv_seq_rm(clspec_kv *kv, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    CS_TRY(cs_hc_chk_kv(kv, 0, "kv_seq_rm", err, errlen));
    CS_TRY(kv_mutable(kv, err, errlen));
    if (seq < 0) {
        if (p0 > 0 || p1 >= 0)
            return cs_err(err, errlen, CLSPEC_E_INVAL, "kv_seq_rm: every sequence (seq < 0) takes the whole range");
        cs_kv_clear(kv->kv);
    } else {
        CS_TRY(cs_kv_seq_rm(kv->kv, seq, p0, p1, err, errlen));
    }
    kv->pending = true; /* uploaded with the next placement or device use */
    return CLSPEC_OK;
}

int cs_hc_kv_ready(const clspec_kv *kv, char *err, size_t errlen)
{
    return kv->pending ? kv_upload((clspec_kv *)kv, err, errlen) : CLSPEC_OK; /* the handle is never const */
}

static int kv_store(clspec_kv *kv, int32_t layer, const clspec_buf *k, size_t k_off, const clspec_buf *v, size_t v_off,
                    const clspec_buf *cells, size_t cells_off, int32_t n_rows, char *err, size_t errlen)
{
    CS_TRY(cs_hc_chk_kv(kv, layer, "kv_store", err, errlen));
    CS_TRY(cs_hc_kv_ready(kv, err, errlen));
    CS_TRY(cs_hc_chk_rows(n_rows, "kv_store", err, errlen));
    clspec_dev *d = kv->o.dev;
    const size_t row = (size_t)kv->kv->n_kv_head * kv->kv->head_dim, n = (size_t)n_rows;
    CS_TRY(cs_hc_chk_buf(k, &d, CLSPEC_BUF_F32, k_off, n * row, false, "kv_store", "k", err, errlen));
    CS_TRY(cs_hc_chk_buf(v, &d, CLSPEC_BUF_F32, v_off, n * row, false, "kv_store", "v", err, errlen));
    CS_TRY(cs_hc_chk_buf(cells, &d, CLSPEC_BUF_I32, cells_off, n, false, "kv_store", "cells", err, errlen));
    cl_mem cm;
    CS_TRY(idx_mem(d, 2, cells, cells_off, n, &cm, err, errlen));
    const struct cs_kv_view view = cs_kv_layer_view(kv->kv, (uint32_t)layer);
    return cs_op_kv_store(d->d, &view, k->m, k_off, v->m, v_off, cm, n_rows, err, errlen);
}

static int attention(const clspec_kv *kv, int32_t layer, const clspec_buf *q, size_t q_off, clspec_buf *out,
                     size_t out_off, const clspec_buf *pos, size_t pos_off, const clspec_buf *seq, size_t seq_off,
                     int32_t n_rows, int32_t n_head, int32_t causal, float scale, char *err, size_t errlen)
{
    const char *op = "attention";
    CS_TRY(cs_hc_chk_kv(kv, layer, op, err, errlen));
    CS_TRY(cs_hc_kv_ready(kv, err, errlen));
    CS_TRY(cs_hc_chk_rows(n_rows, op, err, errlen));
    if (n_head <= 0 || n_head % (int32_t)kv->kv->n_kv_head)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: %d heads over %u kv heads", op, n_head, kv->kv->n_kv_head);
    clspec_dev *d = kv->o.dev;
    const size_t n = (size_t)n_rows, qn = n * (size_t)n_head * kv->kv->head_dim;
    CS_TRY(cs_hc_chk_buf(q, &d, CLSPEC_BUF_F32, q_off, qn, false, op, "q", err, errlen));
    CS_TRY(cs_hc_chk_buf(out, &d, CLSPEC_BUF_F32, out_off, qn, true, op, "out", err, errlen));
    if (q == out)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "%s: out must not be q's buffer", op);
    CS_TRY(cs_hc_chk_buf(pos, &d, CLSPEC_BUF_I32, pos_off, n, false, op, "pos", err, errlen));
    CS_TRY(cs_hc_chk_buf(seq, &d, CLSPEC_BUF_I32, seq_off, n, false, op, "seq", err, errlen));
    cl_mem pm, sm;
    CS_TRY(idx_mem(d, 0, pos, pos_off, n, &pm, err, errlen));
    CS_TRY(idx_mem(d, 1, seq, seq_off, n, &sm, err, errlen));
    const struct cs_kv_view view = cs_kv_layer_view(kv->kv, (uint32_t)layer);
    return cs_op_attention(d->d, &view, (int)kv->kv->hi, q->m, q_off, out->m, out_off, pm, sm, n_rows, n_head,
                           causal != 0, scale, err, errlen);
}

void cs_host_compute_entries(struct clspec_host *h)
{
    h->dev_open = dev_open;
    h->dev_close = dev_close;
    h->sync = sync_dev;
    h->gguf_open = gguf_open;
    h->gguf_close = gguf_close;
    h->gguf_ints = gguf_ints;
    h->gguf_float = gguf_float;
    h->gguf_str = gguf_str;
    h->gguf_tensor = gguf_tensor;
    h->weight_upload = weight_upload;
    h->vec_upload = vec_upload;
    h->target_weight = target_weight;
    h->target_vec = target_vec;
    h->weight_shape = weight_shape;
    h->weight_free = weight_free;
    h->buf_new = buf_new;
    h->buf_free = buf_free;
    h->buf_write = buf_write;
    h->buf_read = buf_read;
    h->copy = copy;
    h->matmul = matmul;
    h->matmul_qkv = matmul_qkv;
    h->matmul_swiglu = matmul_swiglu;
    h->get_rows = get_rows;
    h->rmsnorm = rmsnorm;
    h->rope = rope;
    h->add = add;
    h->add_bias = add_bias;
    h->swiglu = swiglu;
    h->argmax = argmax;
    h->kv_new = kv_new;
    h->kv_free = kv_free;
    h->kv_place = kv_place;
    h->kv_seq_rm = kv_seq_rm;
    h->kv_store = kv_store;
    h->attention = attention;
    h->add_rmsnorm = add_rmsnorm;
    cs_hc_block_entries(h);
}
