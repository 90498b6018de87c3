/* engine.c: see engine.h. Opens the devices of `devices` (each once), plans
 * the layer split, uploads each device's layers (cs_fwd_model_load_split)
 * and makes one context whose KV cache puts each layer's K/V on that layer's
 * device. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "engine/engine.h"
#include "gguf/quant.h"
#include "kv/kv_rec.h"
#include "ops/ops.h"

#define MAX_DEV 8

struct cs_engine_params cs_engine_defaults(void)
{
    struct cs_engine_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 2048;
    p.n_batch = 512;
    p.n_ubatch = 512;
    p.type_k = CS_TYPE_F16;
    p.type_v = CS_TYPE_F16;
    p.n_seq_max = 1;
    p.kv_unified = true;
    return p;
}

void cs_engine_free(struct cs_engine *e)
{
    if (!e)
        return;
    cs_fwd_ctx_free(e->ctx);
    cs_fwd_model_free(e->fm);
    for (int i = 0; i < e->n_dev; i++)
        cs_cl_dev_close(e->dev[i]);
    free(e->dev);
    cs_tokenizer_free(e->tok);
    cs_model_free(e->model);
    free((char *)e->p.model_path);
    free((char *)e->p.devices);
    free(e);
}

static void fmt_list(const uint32_t *v, int n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%u", i ? "," : "", v[i]);
}

int cs_engine_plan_split(uint32_t n_layer, int n_dev, enum cs_split_mode mode, const uint32_t *split,
                         const uint64_t *mem, uint32_t *counts, char *err, size_t errlen)
{
    if (n_dev < 1 || n_dev > MAX_DEV)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "split: %d devices (1..%d)", n_dev, MAX_DEV);
    int given = 0;
    for (int i = 0; i < MAX_DEV; i++)
        if (split[i])
            given = i + 1;
    char list[96];
    fmt_list(split, given, list, sizeof list);
    if (given > n_dev)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "split %s has %d entries for %d device(s)", list, given, n_dev);
    if (n_layer < (uint32_t)n_dev)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "split: %d devices for a model of %u layer(s)", n_dev, n_layer);
    if (mode == CS_SPLIT_LAYERS && given > 0) {
        uint64_t sum = 0;
        for (int i = 0; i < n_dev; i++)
            sum += split[i];
        if (sum != n_layer)
            return cs_err(err, errlen, CLSPEC_E_INVAL,
                          "split %s sums to %llu layers; the model has %u (layer counts must sum to n_layer)", list,
                          (unsigned long long)sum, n_layer);
        for (int i = 0; i < n_dev; i++) {
            if (!split[i])
                return cs_err(err, errlen, CLSPEC_E_INVAL, "split %s leaves device %d without layers", list, i);
            counts[i] = split[i];
        }
        return CLSPEC_OK;
    }
    if (mode != CS_SPLIT_LAYERS && mode != CS_SPLIT_MEMORY)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "split: unknown mode %d", (int)mode);
    /* proportional to weights w (even when none): largest remainder, at least one layer each */
    double w[MAX_DEV], tot = 0;
    for (int i = 0; i < n_dev; i++) {
        w[i] = given > 0 ? (double)split[i] : mode == CS_SPLIT_MEMORY && mem ? (double)mem[i] : 1.0;
        if (given > 0 && !split[i])
            return cs_err(err, errlen, CLSPEC_E_INVAL, "split %s gives device %d a ratio of 0", list, i);
        tot += w[i];
    }
    if (!(tot > 0))
        return cs_err(err, errlen, CLSPEC_E_INVAL, "split: no weight to divide the layers by");
    uint32_t done = 0;
    double rem[MAX_DEV];
    for (int i = 0; i < n_dev; i++) {
        double share = w[i] / tot * (double)n_layer;
        counts[i] = (uint32_t)share;
        rem[i] = share - (double)counts[i];
        done += counts[i];
    }
    while (done < n_layer) {
        int best = 0;
        for (int i = 1; i < n_dev; i++)
            if (rem[i] > rem[best])
                best = i;
        counts[best]++;
        rem[best] = -1.0;
        done++;
    }
    for (int i = 0; i < n_dev; i++) /* take one from the largest for any device left empty */
        while (counts[i] == 0) {
            int big = 0;
            for (int j = 1; j < n_dev; j++)
                if (counts[j] > counts[big])
                    big = j;
            counts[big]--;
            counts[i]++;
        }
    return CLSPEC_OK;
}

/* Opens the devices named in sel ("0,1", "pthread", NULL = the first). */
static int open_devices(struct cs_engine *e, const char *sel, char *err, size_t errlen)
{
    struct cs_cl_devinfo *list = NULL;
    size_t n = 0;
    int rc = cs_cl_list(&list, &n, err, errlen);
    if (rc < 0)
        return rc;
    if (n == 0) {
        free(list);
        return cs_err(err, errlen, CLSPEC_E_NOTFOUND, "no OpenCL device found (is an OpenCL driver/ICD installed?)");
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sel && *sel ? sel : "0");
    size_t idx[MAX_DEV];
    int k = 0;
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = '\0';
        while (isspace((unsigned char)*tok))
            tok++;
        for (char *end = tok + strlen(tok); end > tok && isspace((unsigned char)end[-1]);)
            *--end = '\0';
        if (!*tok) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "devices '%s': empty entry", sel);
            goto out;
        }
        if (k == MAX_DEV) {
            rc = cs_err(err, errlen, CLSPEC_E_INVAL, "devices '%s': more than %d devices", sel, MAX_DEV);
            goto out;
        }
        bool digits = true;
        for (const char *p = tok; *p; p++)
            digits = digits && isdigit((unsigned char)*p);
        if (digits && (strlen(tok) > 6 || (size_t)atol(tok) >= n)) {
            rc = cs_err(err, errlen, CLSPEC_E_NOTFOUND, "device %s: no such device (have 0..%zu)", tok, n - 1);
            goto out;
        }
        if ((rc = cs_cl_select(list, n, tok, &idx[k], err, errlen)) < 0) {
            cs_err_prefix(err, errlen, rc, "device %s", tok);
            goto out;
        }
        for (int j = 0; j < k; j++)
            if (idx[j] == idx[k]) {
                rc = cs_err(err, errlen, CLSPEC_E_INVAL, "devices '%s': device %zu (%s) listed twice", sel, idx[k],
                            list[idx[k]].name);
                goto out;
            }
        k++;
    }
    if (k == 0) {
        rc = cs_err(err, errlen, CLSPEC_E_INVAL, "devices '%s': no device", sel);
        goto out;
    }
    e->dev = calloc((size_t)k, sizeof *e->dev);
    if (!e->dev) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "engine: out of memory");
        goto out;
    }
    for (int i = 0; i < k; i++) {
        if ((rc = cs_cl_dev_open(&list[idx[i]], &e->dev[i], err, errlen)) < 0) {
            cs_err_prefix(err, errlen, rc, "device %zu", idx[i]);
            goto out;
        }
        e->n_dev = i + 1;
    }
out:
    free(list);
    return rc;
}

/* the terminal's progress line of cs_engine_prepare */
static void prepare_progress(void *ud, const struct cs_cl_dev *d, const char *prog, unsigned done, unsigned total)
{
    (void)ud;
    fprintf(stderr, "\rkernels: %u/%u programs ready on %s (cl/%s.cl)\033[K", done, total, d->info.name, prog);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

int cs_engine_prepare_ctx(const struct cs_fwd_ctx *ctx, bool llamacpp_numerics, bool progress, char *err,
                          size_t errlen)
{
    const struct cs_kv *kv = ctx->kv;
    struct cs_op_kv_shape shape = {.head_dim = (int)kv->head_dim, .type_k = kv->p.type_k, .type_v = kv->p.type_v};
    bool tty = progress && isatty(2);
    for (int i = 0; i < kv->n_dev; i++) {
        int rc = cs_op_prepare_all(kv->devs[i].dev, &shape, llamacpp_numerics, tty ? prepare_progress : NULL, NULL,
                                   err, errlen);
        if (rc != CLSPEC_OK)
            return rc;
    }
    return CLSPEC_OK;
}

int cs_engine_open(const struct cs_engine_params *p, struct cs_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!p->model_path)
        return cs_err(err, errlen, CLSPEC_E_INVAL, "engine: no model path");
    struct cs_engine *e = calloc(1, sizeof *e);
    if (!e)
        return cs_err(err, errlen, CLSPEC_E_NOMEM, "engine: out of memory");
    e->p = *p;
    e->p.model_path = strdup(p->model_path);
    e->p.devices = p->devices ? strdup(p->devices) : NULL;
    int rc;
    if (!e->p.model_path || (p->devices && !e->p.devices)) {
        rc = cs_err(err, errlen, CLSPEC_E_NOMEM, "engine: out of memory");
        goto fail;
    }
    double t0 = cs_now();
    if ((rc = cs_model_load(p->model_path, &e->model, err, errlen)) < 0 ||
        (rc = cs_tokenizer_load(e->model->gguf, &e->tok, err, errlen)) < 0)
        goto fail;
    const struct cs_hparams *hp = &e->model->hp;
    if (e->p.n_ctx == 0)
        e->p.n_ctx = hp->n_ctx_train ? CS_MIN(hp->n_ctx_train, 2048u) : 2048u;
    if (e->p.n_batch == 0)
        e->p.n_batch = 512;
    if (e->p.n_ubatch == 0 || e->p.n_ubatch > e->p.n_batch)
        e->p.n_ubatch = e->p.n_batch;
    if (e->p.n_seq_max == 0)
        e->p.n_seq_max = 1;
    if ((rc = open_devices(e, p->devices, err, errlen)) < 0)
        goto fail;
    for (int i = 0; i < e->n_dev && p->llamacpp_numerics; i++)
        e->dev[i]->int_layouts = 0; /* llama.cpp's arithmetic reads the float layouts (ops/matmul_i8.h) */
    uint64_t mem[MAX_DEV];
    for (int i = 0; i < e->n_dev; i++)
        mem[i] = e->dev[i]->info.global_mem;
    if ((rc = cs_engine_plan_split(hp->n_layer, e->n_dev, p->split_mode, p->split, mem, e->layer_counts, err,
                                   errlen)) < 0)
        goto fail;
    if ((rc = cs_fwd_model_load_split(e->model, e->dev, e->n_dev, e->layer_counts, p->progress, &e->fm, err,
                                      errlen)) < 0)
        goto fail;
    struct cs_fwd_ctx_params cp = {.n_ctx = e->p.n_ctx, .n_batch = e->p.n_batch, .n_ubatch = e->p.n_ubatch,
                                   .type_k = e->p.type_k, .type_v = e->p.type_v, .n_seq_max = e->p.n_seq_max,
                                   .kv_partitioned = !e->p.kv_unified,
                                   .llamacpp_numerics = e->p.llamacpp_numerics,
                                   /* recurrent states kept per sequence: the longest rollback + 1 (at least the default) */
                                   .n_rec_keep = e->p.n_draft_max >= CS_KV_REC_KEEP_DEFAULT ? e->p.n_draft_max + 1 : 0};
    if ((rc = cs_fwd_ctx_new(e->fm, &cp, &e->ctx, err, errlen)) < 0 || (rc = cs_engine_prepare_ctx(e->ctx, e->p.llamacpp_numerics, e->p.progress, err, errlen)) < 0)
        goto fail;
    e->load_s = cs_now() - t0;
    *out = e;
    return CLSPEC_OK;
fail:
    cs_engine_free(e);
    return rc;
}

/* ---- cache counts for the public door ---- */

uint32_t cs_engine_seq_free(const struct cs_engine *e, int32_t seq)
{
    return cs_kv_n_free(e->ctx->kv, seq);
}

uint32_t cs_engine_kv_used(const struct cs_engine *e)
{
    return e->ctx->kv->n_used;
}

uint32_t cs_engine_kv_free(const struct cs_engine *e)
{
    return e->ctx->kv->p.n_ctx - e->ctx->kv->n_used;
}
