/* host_compute_impl.h: the compute service's internals shared by its files
 * (host_compute.c: devices, GGUF, buffers, weights, KV caches and the ops;
 * host_compute_block.c: layers and the block builder's entries). Not for
 * anything outside src/spec/host_compute*.c. Every handle starts with a
 * magic word; buffers, weights, KV caches and layers sit in their dev's
 * list (struct cs_hc_obj) and are freed with it. */
#ifndef CS_SPEC_HOST_COMPUTE_IMPL_H
#define CS_SPEC_HOST_COMPUTE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/batch.h"
#include "cl/runtime.h"
#include "clspec/speculator.h"
#include "kv/kv.h"
#include "ops/matmul.h"
#include "spec/loader.h"

#define MAGIC_DEV 0x43444556u  /* "CDEV" */
#define MAGIC_BUF 0x43425546u  /* "CBUF" */
#define MAGIC_WT 0x43575431u   /* "CWT1" */
#define MAGIC_KV 0x434b5631u   /* "CKV1" */
#define MAGIC_LAYER 0x434c5931u /* "CLY1" */
#define MAGIC_GGUF 0x43474746u /* "CGGF" */
#define MAGIC_DEAD 0xdeadbeefu

/* What a dev owns: a doubly linked list node at the start of each buffer, weight and KV cache. */
struct cs_hc_obj {
    uint32_t magic;             /* MAGIC_BUF, MAGIC_WT, MAGIC_KV, MAGIC_LAYER */
    struct clspec_dev *dev;     /* the owner */
    struct cs_hc_obj *prev, *next;
};

struct clspec_dev {
    uint32_t magic;             /* MAGIC_DEV */
    struct cs_plugin *pl;       /* the plugin whose list holds this dev */
    struct cs_cl_dev *d;        /* borrowed: the engine's device */
    int32_t index;              /* engine device index */
    struct clspec_dev *next;    /* in the plugin's list */
    struct cs_hc_obj *objs;     /* owned buffers, weights, KV caches */
    cl_mem idx[3];              /* int32 staging of index arguments at an offset (pos, seq, cells) */
    size_t idx_n[3];            /* their capacities, elements */
    cl_mem tmp;                 /* f32 scratch of matmul_swiglu (tmp_n elements) */
    size_t tmp_n;
    void **staged;              /* (n_staged) host copies of buf_write sources, freed at the next wait */
    size_t n_staged, cap_staged;
    uint64_t gen;               /* waits so far (buf_read, sync): the queue was empty at each */
};

struct clspec_buf {
    struct cs_hc_obj o;
    cl_mem m;                   /* n elements of 4 bytes */
    uint32_t type;              /* CLSPEC_BUF_F32 / CLSPEC_BUF_I32 */
    size_t n;                   /* elements */
    bool ro;                    /* the target's (target_vec): ops may not write it */
};

struct clspec_weight {
    struct cs_hc_obj o;
    struct cs_weight own;       /* uploaded here (empty when borrowed) */
    const struct cs_weight *w;  /* &own, or the target's weight on this device */
};

struct clspec_kv {
    struct cs_hc_obj o;
    struct cs_kv *kv;           /* owned */
    uint64_t synced_gen;        /* dev gen when cell metadata was last uploaded without waiting */
    bool inflight;              /* an upload from kv's host metadata may still be queued */
    bool pending;               /* metadata changed by kv_seq_rm, not uploaded yet: the next kv_place or
                                 * device use uploads it (cs_hc_kv_ready), so a removal never waits */
    struct cs_batch b;          /* placement scratch */
};

struct clspec_gguf {
    uint32_t magic;             /* MAGIC_GGUF */
    struct cs_gguf *g;          /* owned */
    struct cs_compute *cs;      /* the plugin's state whose list holds it */
    struct clspec_gguf *prev, *next;
};

/* "op: arg: what" as CLSPEC_E_INVAL into err. */
int cs_hc_bad(char *err, size_t errlen, const char *op, const char *arg, const char *what);
/* b must be a live buffer on *dev (set from b when NULL) of element type
 * type holding [off, off + n); out: the op writes it (not read-only). */
int cs_hc_chk_buf(const clspec_buf *b, clspec_dev **dev, uint32_t type, size_t off, size_t n, bool out,
                  const char *op, const char *arg, char *err, size_t errlen);
/* w must be a live weight on *dev (set from w when NULL). */
int cs_hc_chk_wt(const clspec_weight *w, clspec_dev **dev, const char *op, const char *arg, char *err,
                 size_t errlen);
/* kv must be a live KV cache with layer in 0..n_layer-1. */
int cs_hc_chk_kv(const clspec_kv *kv, int32_t layer, const char *op, char *err, size_t errlen);
/* Before a device use of kv's cells (store, attention, a block): a pending removal is uploaded. */
int cs_hc_kv_ready(const clspec_kv *kv, char *err, size_t errlen);
/* n_rows >= 1. */
int cs_hc_chk_rows(int32_t n_rows, const char *op, char *err, size_t errlen);
/* Puts o at the head of d's list with magic; unlinks it and marks it dead. */
void cs_hc_obj_link(clspec_dev *d, struct cs_hc_obj *o, uint32_t magic);
void cs_hc_obj_unlink(struct cs_hc_obj *o);

/* host_compute_block.c: the layer_free entry (dev_close frees layers with it). */
void cs_hc_layer_free(clspec_layer *l);
/* Sets the block builder's entries of h (layer_new .. block_kv). */
void cs_hc_block_entries(struct clspec_host *h);

#endif
