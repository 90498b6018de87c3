/* mtp_head.c: see mtp_head.h. One decode: inputs -> embedding gather (E) ->
 * the two RMSNorms -> the concat (copy each half into its columns; one row:
 * the norms write into them) -> eh_proj -> the nextn block (block_layer,
 * attention norm unfused, shared_head_norm fused into its last residual
 * add) on the head's own KV -> h' saved per sequence where asked -> the
 * output matmul on the kept rows -> argmax -> one blocking read. The ops
 * compute what the core's MTP forward computed, so the bits are the same. */
#define _POSIX_C_SOURCE 200809L
#include "mtp_head.h"
#include "../common/plugin_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prefixes err with "MTP head: " (the error of a failed step). */
static int prefixed(char *err, size_t errlen)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", err);
    snprintf(err, errlen, "MTP head: %s", tmp);
    return -1;
}

static const char *path_of(const char *path)
{
    return path ? path : "the target's file";
}

/* An integer key {arch}.key into *out (dflt when absent; required: absent fails). */
static int key_i(const struct mtp_head *m, const char *arch, const char *key, int64_t dflt, int required,
                 int64_t *out)
{
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v = 0;
    int32_t n = m->h->gguf_ints(m->g, k, &v, 1);
    *out = n == 1 ? v : dflt;
    return n == 1 || !required ? 0 : -1;
}

static double key_f(const struct mtp_head *m, const char *arch, const char *key, double dflt, int *found)
{
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    double v = dflt;
    int ok = m->h->gguf_float(m->g, k, &v) == 0;
    if (found)
        *found = ok;
    return ok ? v : dflt;
}

/* Tensor name with shape (ne0, ne1): present (1), absent and optional (0), else < 0. */
static int tensor(const struct mtp_head *m, const char *path, const char *name, int64_t ne0, int64_t ne1,
                  int required, char *err, size_t errlen)
{
    struct clspec_tensor_info ti = {.size = sizeof ti};
    char e2[256];
    if (m->h->gguf_tensor(m->g, name, &ti, e2, sizeof e2) < 0)
        return required ? pu_failf(err, errlen, "%s: tensor %s is missing (an MTP head needs it)", path_of(path), name)
                        : 0;
    if ((int64_t)ti.ne[0] != ne0 || (int64_t)ti.ne[1] != ne1 || ti.ne[2] != 1 || ti.ne[3] != 1)
        return pu_failf(err, errlen, "%s: tensor %s has shape [%llu, %llu], expected [%lld, %lld]", path_of(path), name,
                    (unsigned long long)ti.ne[0], (unsigned long long)ti.ne[1], (long long)ne0, (long long)ne1);
    return 1;
}

/* Hyperparameters and the block's shape from the file's keys (the engine's rules and defaults). */
static int read_shape(struct mtp_head *m, const char *path, uint32_t n_embd, struct clspec_block_shape *sh,
                      char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    char arch[64];
    if (h->gguf_str(m->g, "general.architecture", arch, sizeof arch) < 0)
        return pu_failf(err, errlen, "%s: no general.architecture", path_of(path));
    int64_t nb = 0, nextn = 0, E = 0, F = 0, H = 0, HKV = 0, D = 0, nrot = 0;
    if (key_i(m, arch, "block_count", 0, 1, &nb) < 0)
        return pu_failf(err, errlen, "%s: no %s.block_count", path_of(path), arch);
    key_i(m, arch, "nextn_predict_layers", 0, 0, &nextn);
    if (nextn == 0 && !path)
        return pu_failf(err, errlen, "the target has no MTP blocks (%s.nextn_predict_layers); give an MTP head file",
                    arch);
    if (nextn == 0)
        return pu_failf(err, errlen, "%s: not an MTP head (no %s.nextn_predict_layers)", path, arch);
    if (nextn != 1)
        return pu_failf(err, errlen, "%s: %s.nextn_predict_layers = %lld: an MTP head needs exactly one nextn block",
                    path_of(path), arch, (long long)nextn);
    if (nextn >= nb)
        return pu_failf(err, errlen, "%s: %s.nextn_predict_layers not below block_count", path_of(path), arch);
    if (key_i(m, arch, "embedding_length", 0, 1, &E) < 0 || key_i(m, arch, "feed_forward_length", 0, 1, &F) < 0 ||
        key_i(m, arch, "attention.head_count", 0, 1, &H) < 0 || E <= 0 || F <= 0 || H <= 0)
        return pu_failf(err, errlen, "%s: %s.embedding_length, feed_forward_length and attention.head_count needed",
                    path_of(path), arch);
    key_i(m, arch, "attention.head_count_kv", H, 0, &HKV);
    key_i(m, arch, "attention.key_length", E / H, 0, &D);
    key_i(m, arch, "rope.dimension_count", D, 0, &nrot);
    if ((uint32_t)E != n_embd)
        return pu_failf(err, errlen, "%s: the MTP head (n_embd %lld) does not fit the target (n_embd %u)", path_of(path),
                    (long long)E, n_embd);
    m->blk = (int32_t)(nb - nextn);
    m->E = (int32_t)E;
    m->F = (int32_t)F;
    m->H = (int32_t)H;
    m->HKV = (int32_t)HKV;
    m->D = (int32_t)D;
    m->eps = (float)key_f(m, arch, "attention.layer_norm_rms_epsilon", 1e-5, NULL);
    /* RoPE scaling: {arch}.rope.scaling.type (none | linear) + .factor, or the older rope.scale_linear */
    float factor = 0.0f;
    char st[32] = "", k[160];
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    int has_type = h->gguf_str(m->g, k, st, sizeof st) == 0;
    if (has_type && strcmp(st, "none") != 0 && strcmp(st, "linear") != 0)
        return pu_failf(err, errlen, "%s: key %s = '%s': only linear rope scaling is supported", path_of(path), k, st);
    if (has_type && strcmp(st, "linear") == 0)
        factor = (float)key_f(m, arch, "rope.scaling.factor", 0.0, NULL);
    else if (!has_type)
        factor = (float)key_f(m, arch, "rope.scale_linear", 0.0, NULL);
    *sh = (struct clspec_block_shape){
        .size = sizeof *sh, .n_embd = m->E, .n_head = m->H, .n_head_kv = m->HKV, .head_dim = m->D, .n_ff = m->F,
        .eps = m->eps, .n_rot = (int32_t)nrot, .neox = strncmp(arch, "qwen", 4) == 0,
        .freq_base = (float)key_f(m, arch, "rope.freq_base", 10000.0, NULL),
        .freq_scale = factor != 0.0f ? 1.0f / factor : 1.0f};
    return 0;
}

/* The block's tensors and the head's own (eh_proj, the three norms), uploaded. */
static int load_block(struct mtp_head *m, const char *path, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    const int64_t E = m->E, Q = (int64_t)m->H * m->D, KV = (int64_t)m->HKV * m->D, F = m->F;
    static const char *const names[] = {"attn_norm", "attn_q",    "attn_k",      "attn_v",      "attn_output",
                                        "ffn_norm",  "ffn_gate",  "ffn_up",      "ffn_down",    "nextn.eh_proj",
                                        "nextn.enorm", "nextn.hnorm", "nextn.shared_head_norm", "attn_q.bias",
                                        "attn_k.bias", "attn_v.bias", "attn_q_norm", "attn_k_norm"};
    const int64_t sh[18][2] = {{E, 1}, {E, Q},  {E, KV}, {E, KV}, {Q, E}, {E, 1},  {E, F},       {E, F},
                               {F, E}, {2 * E, E}, {E, 1}, {E, 1}, {E, 1}, {Q, 1}, {KV, 1}, {KV, 1}, {m->D, 1},
                               {m->D, 1}};
    void *dst[18] = {&m->attn_norm, &m->wq, &m->wk, &m->wv, &m->wo, &m->ffn_norm, &m->wg, &m->wu, &m->wd,
                     &m->eh_proj, &m->enorm, &m->hnorm, &m->head_norm, &m->bq, &m->bk, &m->bv, &m->qn, &m->kn};
    for (int i = 0; i < 18; i++) {
        char n[160];
        snprintf(n, sizeof n, "blk.%d.%s%s", m->blk, names[i], i >= 13 && i < 16 ? "" : ".weight");
        int rc = tensor(m, path, n, sh[i][0], sh[i][1], i < 13, err, errlen);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        rc = sh[i][1] == 1 ? h->vec_upload(m->d, m->g, n, (clspec_buf **)dst[i], err, errlen)
                           : h->weight_upload(m->d, m->g, n, (clspec_weight **)dst[i], err, errlen);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* E and output: the head's own; for the target's own file the target's; else the file's (output: its
 * own output.weight, else the target's). */
static int load_io(struct mtp_head *m, const char *path, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    const int64_t E = m->E, V = m->V;
    char te[160], to[160];
    snprintf(te, sizeof te, "blk.%d.nextn.embed_tokens.weight", m->blk);
    snprintf(to, sizeof to, "blk.%d.nextn.shared_head_head.weight", m->blk);
    int has_te = tensor(m, path, te, E, V, 0, err, errlen), has_to = tensor(m, path, to, E, V, 0, err, errlen);
    int has_fe = tensor(m, path, "token_embd.weight", E, V, 0, err, errlen);
    int has_fo = tensor(m, path, "output.weight", E, V, 0, err, errlen);
    if (has_te < 0 || has_to < 0 || has_fe < 0 || has_fo < 0)
        return -1;
    const char *e_name = has_te ? te : path && has_fe ? "token_embd.weight" : NULL; /* NULL: the target's */
    const char *o_name = has_to ? to : path && has_fo ? "output.weight" : NULL;
    int rc = e_name ? h->weight_upload(m->d, m->g, e_name, &m->embd, err, errlen)
                    : h->target_weight(m->d, "token_embd.weight", &m->embd, err, errlen);
    if (rc == 0)
        rc = o_name ? h->weight_upload(m->d, m->g, o_name, &m->out, err, errlen)
                    : h->target_weight(m->d, "output.weight", &m->out, err, errlen);
    if (rc < 0)
        return -1;
    uint32_t n_in = 0, n_out = 0;
    h->weight_shape(m->out, &n_in, &n_out, NULL);
    if ((int64_t)n_in != E || (int64_t)n_out != V)
        return pu_failf(err, errlen, "%s: the output (%u x %u) does not fit the target (n_embd %d, n_vocab %d)",
                    path_of(path), n_in, n_out, m->E, m->V);
    return 0;
}

int mtp_head_load(const struct clspec_host *h, const char *path, int32_t device, uint32_t n_embd, uint32_t n_vocab,
                  struct mtp_head **out, char *err, size_t errlen)
{
    *out = NULL;
    struct mtp_head *m = calloc(1, sizeof *m);
    if (!m)
        return pu_failf(err, errlen, "MTP head: out of memory");
    m->h = h;
    m->V = (int32_t)n_vocab;
    struct clspec_block_shape sh;
    int rc = h->dev_open(h, device, &m->d, err, errlen);
    if (rc == 0)
        rc = h->gguf_open(h, path, &m->g, err, errlen);
    if (rc == 0)
        rc = read_shape(m, path, n_embd, &sh, err, errlen);
    if (rc == 0)
        rc = load_block(m, path, err, errlen);
    if (rc == 0)
        rc = load_io(m, path, err, errlen);
    if (rc == 0) {
        const struct clspec_layer_desc desc = {
            .size = sizeof desc, .wq = m->wq, .wk = m->wk, .wv = m->wv, .wo = m->wo, .w_gate = m->wg, .w_up = m->wu,
            .w_down = m->wd, .attn_norm = m->attn_norm, .ffn_norm = m->ffn_norm, .bq = m->bq, .bk = m->bk,
            .bv = m->bv, .q_norm = m->qn, .k_norm = m->kn};
        rc = h->layer_new(m->d, &desc, &sh, &m->layer, err, errlen);
    }
    if (rc < 0) {
        prefixed(err, errlen);
        mtp_head_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void mtp_head_free(struct mtp_head *m)
{
    if (!m)
        return;
    if (m->seq_sh)
        free(m->seq_sh->v);
    free(m->seq_sh);
    if (m->d)
        m->h->dev_close(m->d); /* every buffer, weight, layer and cache made on it */
    if (m->g)
        m->h->gguf_close(m->g);
    free(m);
}

int mtp_head_ctx(struct mtp_head *m, int32_t n_ctx, int32_t n_batch, int32_t n_seq, uint32_t type_k,
                 uint32_t type_v, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    if (n_batch < 1 || n_batch > 4096 || n_seq < 1 || n_seq > 64)
        return pu_failf(err, errlen, "MTP context: n_batch %d (want 1..4096), n_seq %d (want 1..64)", n_batch, n_seq);
    m->n_batch = n_batch;
    m->n_seq = n_seq;
    if (!m->seq_sh && !(m->seq_sh = calloc(1, sizeof *m->seq_sh)))
        return pu_failf(err, errlen, "MTP context: out of memory");
    m->seq_sh->n = 0; /* a new seq buffer below */
    const size_t E = (size_t)m->E, Q = (size_t)m->H * m->D, KV = (size_t)m->HKV * m->D, F = (size_t)m->F,
                 V = (size_t)m->V, B = (size_t)n_batch;
    struct {
        clspec_buf **b;
        uint32_t type;
        size_t n;
    } t[] = {
        {&m->x, CLSPEC_BUF_F32, B * E},       {&m->xe, CLSPEC_BUF_F32, B * E},   {&m->xg, CLSPEC_BUF_F32, B * E},
        {&m->cat, CLSPEC_BUF_F32, B * 2 * E}, {&m->xb, CLSPEC_BUF_F32, B * (E > Q ? E : Q)},
        {&m->q, CLSPEC_BUF_F32, B * Q},       {&m->att, CLSPEC_BUF_F32, B * Q},  {&m->kc, CLSPEC_BUF_F32, B * KV},
        {&m->vc, CLSPEC_BUF_F32, B * KV},     {&m->hb, CLSPEC_BUF_F32, B * F},   {&m->hb2, CLSPEC_BUF_F32, B * F},
        {&m->xo, CLSPEC_BUF_F32, B * E},      {&m->logits, CLSPEC_BUF_F32, B * V},
        {&m->hkeep, CLSPEC_BUF_F32, (size_t)n_seq * E},
        {&m->tok, CLSPEC_BUF_I32, B},         {&m->pos, CLSPEC_BUF_I32, B},      {&m->seq, CLSPEC_BUF_I32, B},
        {&m->cell, CLSPEC_BUF_I32, B},        {&m->amax, CLSPEC_BUF_I32, B},
        {&m->cell_d, CLSPEC_BUF_I32, B},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (h->buf_new(m->d, t[i].type, t[i].n, t[i].b, err, errlen) < 0)
            return prefixed(err, errlen);
    if (h->kv_new(m->d, 1, m->HKV, m->D, n_ctx, n_seq, type_k, type_v, &m->kv, err, errlen) < 0)
        return prefixed(err, errlen);
    return 0;
}

int mtp_head_seq_rm(struct mtp_head *m, int32_t seq, int32_t p0, int32_t p1, char *err, size_t errlen)
{
    return m->h->kv_seq_rm(m->kv, seq, p0, p1, err, errlen);
}

/* u = eh_proj . concat(rms(E[x]) * enorm, rms(g) * hnorm) into m->x, x the ids at ids_off (m->tok, or
 * a chain's previous depth's argmaxes where they lie); g into xg first (g_x: g is m->x
 * itself, row i the previous decode's row i: a chain's depth after the first). g of consecutive
 * sequences (g_seq) is read where it lies in hkeep; one row's norms write straight into the
 * concatenation's halves, so a chain's single-row depths queue no copies. */
static int head_input(struct mtp_head *m, int32_t n, const clspec_buf *ids, size_t ids_off, const float *g,
                      const int32_t *g_seq, bool g_x, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    const size_t E = (size_t)m->E;
    if (g && h->buf_write(m->xg, 0, (size_t)n * E, g, err, errlen) < 0)
        return -1;
    bool run = g_seq != NULL; /* g_seq: consecutive sequences, whose hkeep rows are g as they lie */
    for (int32_t i = 0; run && i < n; i++)
        run = g_seq[i] >= 0 && g_seq[i] == g_seq[0] + i;
    const bool one = n == 1 && (g || g_x || run);
    const clspec_buf *gb = g_x ? m->x : run ? m->hkeep : m->xg; /* where g is, from g_off */
    const size_t g_off = run ? (size_t)g_seq[0] * E : 0;
    for (int32_t i = 0; !run && g_seq && i < n; i++)
        if (g_seq[i] >= 0 && h->copy(m->xg, (size_t)i * E, E, m->hkeep, (size_t)g_seq[i] * E, E, 1, m->E, err,
                                     errlen) < 0)
            return -1;
    if (h->get_rows(m->embd, ids, ids_off, n, m->xe, 0, err, errlen) < 0)
        return -1;
    if (one) {
        if (h->rmsnorm(m->xe, 0, m->enorm, m->cat, 0, 1, m->E, m->eps, err, errlen) < 0 ||
            h->rmsnorm(gb, g_off, m->hnorm, m->cat, E, 1, m->E, m->eps, err, errlen) < 0)
            return -1;
    } else if (h->rmsnorm(m->xe, 0, m->enorm, m->xe, 0, n, m->E, m->eps, err, errlen) < 0 ||
               h->rmsnorm(gb, g_off, m->hnorm, m->xg, 0, n, m->E, m->eps, err, errlen) < 0 ||
               h->copy(m->cat, 0, 2 * E, m->xe, 0, E, n, m->E, err, errlen) < 0 ||
               h->copy(m->cat, E, 2 * E, m->xg, 0, E, n, m->E, err, errlen) < 0) {
        return -1;
    }
    return h->matmul(m->eh_proj, m->cat, 0, m->x, 0, n, err, errlen);
}

/* After the block (run with next_norm = head_norm: xb holds shared_head_norm
 * of every row): saves the h' of the rows with save[i] (or every row:
 * save_all) for their sequence, and queues the output of the kept rows
 * (keep[i]; keep NULL: the last row (keep_last) or every row) into m->amax
 * from amax_off. Returns the kept rows or -1. */
static int32_t head_out(struct mtp_head *m, int32_t n, const int32_t *seq, const uint8_t *save, bool save_all,
                        const uint8_t *keep, bool keep_last, size_t amax_off, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    const size_t E = (size_t)m->E;
    int32_t n_keep = 0, last = -1;
    const bool all = !keep && !keep_last; /* every row: the norm reads them in place */
    bool run = save_all; /* every row saved, of consecutive sequences: one copy */
    for (int32_t i = 0; run && i < n; i++)
        run = seq[i] == seq[0] + i;
    if (run && h->copy(m->hkeep, (size_t)seq[0] * E, E, m->x, 0, E, n, m->E, err, errlen) < 0)
        return -1;
    for (int32_t i = 0; i < n; i++) {
        if (!run && (save_all || (save && save[i])) &&
            h->copy(m->hkeep, (size_t)seq[i] * E, E, m->x, (size_t)i * E, E, 1, m->E, err, errlen) < 0)
            return -1;
        if (!all && !(keep ? !keep[i] : keep_last && i != n - 1)) {
            n_keep++;
            last = i;
        }
    }
    /* the kept normed rows into xo, unless the output reads them in place (all, or a single one) */
    for (int32_t i = 0, k = 0; !all && n_keep > 1 && i < n; i++) {
        if (keep ? !keep[i] : keep_last && i != n - 1)
            continue;
        if (h->copy(m->xo, (size_t)k++ * E, E, m->xb, (size_t)i * E, E, 1, m->E, err, errlen) < 0)
            return -1;
    }
    n_keep = all ? n : n_keep;
    if (n_keep == 0)
        return 0;
    const size_t x0 = !all && n_keep == 1 ? (size_t)last * E : 0; /* the output's first input row */
    if (h->matmul(m->out, all || n_keep == 1 ? m->xb : m->xo, x0, m->logits, 0, n_keep, err, errlen) < 0 ||
        h->argmax(m->logits, 0, m->amax, amax_off, n_keep, m->V, err, errlen) < 0)
        return -1;
    return n_keep;
}

int mtp_head_decode(struct mtp_head *m, int32_t n, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                    const float *g, const int32_t *g_seq, const uint8_t *save, const uint8_t *keep, int32_t *amax,
                    float *logits, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    if (n <= 0 || n > m->n_batch)
        return pu_failf(err, errlen, "MTP decode: %d rows (want 1..%d)", n, m->n_batch);
    if (!tok || !pos || !seq || !amax)
        return pu_failf(err, errlen, "MTP decode: every row needs a token, a position and a sequence");
    for (int32_t i = 0; i < n; i++) {
        if (tok[i] < 0 || tok[i] >= m->V)
            return pu_failf(err, errlen, "MTP decode: token %d (row %d) out of range", tok[i], i);
        if (seq[i] < 0 || seq[i] >= m->n_seq)
            return pu_failf(err, errlen, "MTP decode: sequence %d (row %d) out of range", seq[i], i);
        if (!g && (!g_seq || g_seq[i] < 0))
            return pu_failf(err, errlen, "MTP decode: row %d has no hidden g", i);
    }
    char e2[512];
    if (h->kv_place(m->kv, n, pos, seq, m->cell, 0, NULL, e2, sizeof e2) < 0)
        return pu_failf(err, errlen, "MTP decode: the head's KV cache: %s", e2);
    if (h->buf_write(m->tok, 0, (size_t)n, tok, err, errlen) < 0 ||
        h->buf_write(m->pos, 0, (size_t)n, pos, err, errlen) < 0 ||
        pu_upload_i32(h, m->seq, m->seq_sh, seq, n, err, errlen) < 0 ||
        head_input(m, n, m->tok, 0, g, g_seq, false, err, errlen) < 0)
        return -1;
    /* the block on the head's own KV: the attention norm unfused, causal, every cell in use */
    const struct clspec_block_act act = {.size = sizeof act, .x = m->x, .xb = m->xb, .q = m->q, .att = m->att,
                                         .kc = m->kc, .vc = m->vc, .hb = m->hb, .hb2 = m->hb2, .pos = m->pos,
                                         .seq = m->seq, .cell = m->cell};
    const struct clspec_block_opt opt = {.size = sizeof opt, .causal = 1, .next_norm = m->head_norm};
    if (h->block_layer(m->layer, m->kv, 0, &act, n, &opt, err, errlen) < 0)
        return -1;
    int32_t n_keep = head_out(m, n, seq, save, false, keep, true, 0, err, errlen);
    if (n_keep <= 0)
        return n_keep < 0 ? -1 : h->sync(m->d, err, errlen) < 0 ? -1 : 0;
    if (logits && h->buf_read(m->logits, 0, (size_t)n_keep * m->V, logits, err, errlen) < 0)
        return -1;
    return h->buf_read(m->amax, 0, (size_t)n_keep, amax, err, errlen) < 0 ? -1 : n_keep;
}

/* Validates the rows of a chain (tokens in range when given, sequences). */
static int check_rows(const struct mtp_head *m, int32_t n, const int32_t *tok, const int32_t *seq, char *err,
                      size_t errlen)
{
    for (int32_t i = 0; i < n; i++) {
        if (tok && (tok[i] < 0 || tok[i] >= m->V))
            return pu_failf(err, errlen, "MTP decode: token %d (row %d) out of range", tok[i], i);
        if (seq[i] < 0 || seq[i] >= m->n_seq)
            return pu_failf(err, errlen, "MTP decode: sequence %d (row %d) out of range", seq[i], i);
    }
    return 0;
}

int mtp_head_chain(struct mtp_head *m, int32_t n0, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                   const float *g, const uint8_t *keep, int32_t n_chain, const int32_t *pos1, const int32_t *seq1,
                   int32_t depth, int32_t *amax, char *err, size_t errlen)
{
    const struct clspec_host *h = m->h;
    if (n0 <= 0 || n_chain <= 0 || depth < 1 || n0 + (depth - 1) * n_chain > m->n_batch ||
        depth * n_chain > m->n_batch)
        return pu_failf(err, errlen, "MTP chain: %d rows, %d chains of depth %d (at most %d rows)", n0, n_chain,
                        depth, m->n_batch);
    if (!tok || !pos || !seq || !g || !keep || !pos1 || !seq1)
        return pu_failf(err, errlen, "MTP chain: every row needs a token, a position, a sequence and a g");
    if (check_rows(m, n0, tok, seq, err, errlen) < 0 || check_rows(m, n_chain, NULL, seq1, err, errlen) < 0)
        return -1;
    int32_t n_keep = 0;
    for (int32_t i = 0; i < n0; i++)
        n_keep += keep[i] != 0;
    if (n_keep != n_chain)
        return pu_failf(err, errlen, "MTP chain: %d kept rows for %d chains", n_keep, n_chain);
    /* the cells of every depth at once: one placement, no wait between depths */
    const int32_t n_all = n0 + (depth - 1) * n_chain;
    int32_t *pa = malloc((size_t)n_all * 2 * sizeof *pa);
    if (!pa)
        return pu_failf(err, errlen, "MTP chain: out of memory");
    int32_t *sa = pa + n_all;
    memcpy(pa, pos, (size_t)n0 * sizeof *pa);
    memcpy(sa, seq, (size_t)n0 * sizeof *sa);
    for (int32_t d = 1; d < depth; d++)
        for (int32_t i = 0; i < n_chain; i++) {
            pa[n0 + (d - 1) * n_chain + i] = pos1[i] + d - 1;
            sa[n0 + (d - 1) * n_chain + i] = seq1[i];
        }
    char e2[512];
    int rc = h->kv_place(m->kv, n_all, pa, sa, m->cell, 0, NULL, e2, sizeof e2);
    if (rc < 0) {
        free(pa);
        return pu_failf(err, errlen, "MTP chain: the head's KV cache: %s", e2);
    }
    struct clspec_block_act act = {.size = sizeof act, .x = m->x, .xb = m->xb, .q = m->q, .att = m->att,
                                   .kc = m->kc, .vc = m->vc, .hb = m->hb, .hb2 = m->hb2, .pos = m->pos,
                                   .seq = m->seq, .cell = m->cell};
    const struct clspec_block_opt opt = {.size = sizeof opt, .causal = 1, .next_norm = m->head_norm};
    rc = h->buf_write(m->tok, 0, (size_t)n0, tok, err, errlen) < 0 ||
                 h->buf_write(m->pos, 0, (size_t)n0, pos, err, errlen) < 0 ||
                 pu_upload_i32(h, m->seq, m->seq_sh, seq, n0, err, errlen) < 0 ||
                 head_input(m, n0, m->tok, 0, g, NULL, false, err, errlen) < 0 ||
                 h->block_layer(m->layer, m->kv, 0, &act, n0, &opt, err, errlen) < 0 ||
                 head_out(m, n0, seq, keep, false, keep, false, 0, err, errlen) < 0
             ? -1
             : 0;
    /* depth d: tokens = depth d-1's argmax (read where it lies), g = its h' (depth 1: saved per
     * sequence; later depths: the previous depth's rows of x, in chain order), cells from the
     * placement; the last depth saves its h' per sequence (a chain that goes on alone later); the
     * sequences go up once, at depth 1 */
    act.cell = m->cell_d;
    for (int32_t d = 1; d < depth && rc == 0; d++) {
        const size_t o = (size_t)(n0 + (d - 1) * n_chain);
        rc = h->copy(m->cell_d, 0, 1, m->cell, o, 1, n_chain, 1, err, errlen) < 0 ||
                     h->buf_write(m->pos, 0, (size_t)n_chain, pa + o, err, errlen) < 0 ||
                     (d == 1 && pu_upload_i32(h, m->seq, m->seq_sh, seq1, n_chain, err, errlen) < 0) ||
                     head_input(m, n_chain, m->amax, (size_t)(d - 1) * n_chain, NULL, d == 1 ? seq1 : NULL, d > 1,
                                err, errlen) < 0 ||
                     h->block_layer(m->layer, m->kv, 0, &act, n_chain, &opt, err, errlen) < 0 ||
                     head_out(m, n_chain, seq1, NULL, d == depth - 1, NULL, false, (size_t)d * n_chain, err, errlen) < 0
                 ? -1
                 : 0;
    }
    free(pa);
    if (rc < 0)
        return -1;
    if (!amax) /* the drafts stay on the device (m->amax) */
        return 0;
    return h->buf_read(m->amax, 0, (size_t)depth * n_chain, amax, err, errlen) < 0 ? -1 : 0;
}
