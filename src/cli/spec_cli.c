/* spec_cli.c: see spec_cli.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/api.h"
#include "cli/opts.h"
#include "cli/spec_cli.h"
#include "base/common.h"
#include "engine/engine.h"
#include "gguf/quant.h"
#include "base/strbuf.h"
#include "spec/spec.h"

void cs_spec_cli_init(struct cs_spec_cli *o)
{
    memset(o, 0, sizeof *o);
    o->n_max = 8;
    o->n_min = 1;
    o->p_min = 0;
    o->parallel = 1;
    o->ctl = 1; /* CS_SPEC_CTL_COST */
}

const char *cs_spec_cli_usage(void)
{
    return "  --spec TYPE           speculator: a plugin's name (NAME.so in the plugin directory), a path\n"
           "                        to a plugin .so, or none\n"
           "  --spec-n-max N        most draft tokens per step (default 8)\n"
           "  --spec-n-min N        shorter drafts are not verified (default 1)\n"
           "  --spec-p-min P        cut drafts at a token with draft probability < P (default 0)\n"
           "  --spec-opt KEY=VALUE  a plugin setting (as in its INI section; repeatable)\n"
           "  --spec-ctl cost|acceptance  draft length from measured cost and acceptance (default),\n"
           "                        or from acceptance alone\n"
           "  --plugin-dir DIR      where built-in plugins are (default: the install directory)\n";
}

int cs_spec_cli_opt(struct cs_spec_cli *o, const char *cmd, const char *a, const char *v)
{
    if (!strcmp(a, "--spec")) {
        o->type = cs_plugin_is_none(v) ? NULL : v; /* none: no speculation, as in clspecd */
        return 1;
    }
    if (!strcmp(a, "--plugin-dir")) {
        o->plugin_dir = v;
        return 1;
    }
    if (!strcmp(a, "--spec-ctl")) {
        if (v && (!strcmp(v, "cost") || !strcmp(v, "acceptance"))) {
            o->ctl = !strcmp(v, "cost") ? CS_SPEC_CTL_COST : CS_SPEC_CTL_ACCEPT;
            return 1;
        }
        fprintf(stderr, "clspec %s: %s wants cost or acceptance, not '%s'\n", cmd, a, v ? v : "");
        return -1;
    }
    if (!strcmp(a, "--spec-n-max"))
        return cs_opt_num(cmd, a, v, 1, 64, &o->n_max) < 0 ? -1 : 1;
    if (!strcmp(a, "--spec-n-min"))
        return cs_opt_num(cmd, a, v, 0, 64, &o->n_min) < 0 ? -1 : 1;
    if (!strcmp(a, "--spec-p-min"))
        return cs_opt_num(cmd, a, v, 0, 1, &o->p_min) < 0 ? -1 : 1;
    if (!strcmp(a, "--parallel") && !strcmp(cmd, "bench"))
        return cs_opt_num(cmd, a, v, 1, 64, &o->parallel) < 0 ? -1 : 1;
    if (!strcmp(a, "--spec-prompt") && !strcmp(cmd, "bench")) {
        o->prompt = v;
        return 1;
    }
    if (!strcmp(a, "--spec-opt")) {
        const char *eq = v ? strchr(v, '=') : NULL;
        if (!eq || eq == v || (size_t)(eq - v) >= sizeof o->kbuf[0] || o->n_kv >= 16) {
            fprintf(stderr, "clspec %s: --spec-opt needs KEY=VALUE (at most 16, keys < 64 chars)\n", cmd);
            return -1;
        }
        memcpy(o->kbuf[o->n_kv], v, (size_t)(eq - v));
        o->kbuf[o->n_kv][eq - v] = 0;
        o->kv[o->n_kv].key = o->kbuf[o->n_kv];
        o->kv[o->n_kv].value = eq + 1;
        o->n_kv++;
        return 1;
    }
    return 0;
}

static void cli_ignored(void *user, const char *key, const char *why)
{
    fprintf(stderr, "clspec: warning: --spec-opt %s: ignored by --spec %s (%s)\n", key, (const char *)user, why);
}

/* The plugin's own check of its keys (its config_check, ABI 1.4), before
 * the engine loads: a refusal names the --spec-opt key; the loader's errors
 * (not found, not a plugin) come verbatim. */
static int check_plugin(const struct cs_spec_cli *o, char *err, size_t errlen)
{
    struct cs_plugin_params pp = {.type = o->type, .plugin_dir = o->plugin_dir, .kv = o->kv, .n_kv = o->n_kv};
    struct cs_plugin_check chk = {.ignored = cli_ignored, .user = (void *)o->type};
    int rc = cs_plugin_check_config(&pp, &chk, err, errlen);
    if (rc < 0 && chk.key[0])
        return cs_err_prefix(err, errlen, rc, "--spec-opt %s", chk.key);
    return rc == CLSPEC_E_NOTFOUND ? CLSPEC_E_PLUGIN : rc;
}

/* Engine + plugin + spec for n_slots; type NULL = no speculation. */
struct rig {
    clspec_engine *door;     /* the engine (owned): sp and the output use only it */
    struct cs_engine *e;     /* door's internals (cs_api_engine), for the plugin loader */
    struct cs_plugin *pl;
    struct cs_spec *sp;
};

static void rig_free(struct rig *r)
{
    cs_spec_free(r->sp);
    cs_plugin_free(r->pl);
    clspec_engine_free(r->door);
    memset(r, 0, sizeof *r);
}

static int rig_open(const struct cs_spec_cli *o, const char *type, const struct cs_engine_params *base,
                    uint32_t n_ctx, int n_slots, struct rig *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (base->llamacpp_numerics && type && strcmp(type, "none"))
        return cs_err(err, errlen, CLSPEC_E_INVAL,
                      "--numerics llamacpp computes a batch of rows differently from a single row, as llama.cpp "
                      "does, so verifying drafts in batches would not be lossless: drop --spec or --numerics");
    struct cs_engine_params ep = *base;
    if (ep.n_ctx == 0)
        ep.n_ctx = n_ctx;
    ep.n_seq_max = (uint32_t)n_slots;
    ep.n_draft_max = type && strcmp(type, "none") ? (uint32_t)o->n_max : 0; /* hybrid: the longest rollback */
    struct clspec_engine_params dp;
    cs_api_engine_params(&ep, &dp);
    int rc = clspec_engine_open(&dp, &r->door, err, errlen);
    r->e = cs_api_engine(r->door);
    if (rc == 0 && type) {
        /* the plugin sees n_max as clspecd passes it (a hybrid drafter keeps the states of its rollback) */
        struct cs_plugin_kv kv[17];
        char nmax[16];
        snprintf(nmax, sizeof nmax, "%d", (int)o->n_max);
        memcpy(kv, o->kv, (size_t)o->n_kv * sizeof *kv);
        int n_kv = o->n_kv;
        bool has = false;
        for (int i = 0; i < n_kv; i++)
            has |= !strcmp(kv[i].key, "n_max");
        if (!has)
            kv[n_kv++] = (struct cs_plugin_kv){"n_max", nmax};
        struct cs_plugin_params pp = {.type = type, .plugin_dir = o->plugin_dir, .kv = kv, .n_kv = n_kv,
                                      .engine = r->e, .n_slots = (uint32_t)n_slots};
        rc = cs_plugin_load(&pp, &r->pl, err, errlen);
    }
    if (rc == 0) {
        struct cs_spec_params sp = cs_spec_defaults();
        sp.n_max = (int32_t)o->n_max;
        sp.n_min = (int32_t)o->n_min;
        sp.p_min = (float)o->p_min;
        sp.ctl = o->ctl;
        rc = cs_spec_new(r->door, r->pl, &sp, n_slots, &r->sp, err, errlen);
    }
    if (rc < 0)
        rig_free(r);
    return rc;
}

static void print_stats(FILE *f, const struct cs_spec_stats *st)
{
    fprintf(f, "speculation: draft_n %llu, accepted %llu (%.1f%%), mean accepted length %.2f tokens/step "
               "(%llu steps, %llu with a draft)\n",
            (unsigned long long)st->n_drafted, (unsigned long long)st->n_accepted,
            st->n_drafted ? 100.0 * (double)st->n_accepted / (double)st->n_drafted : 0.0,
            st->n_steps ? (double)st->n_emitted / (double)st->n_steps : 0.0, (unsigned long long)st->n_steps,
            (unsigned long long)st->n_draft_steps);
}

/* Blocking host syncs per step of the loop (one forward for all slots). */
static void print_syncs(FILE *f, const struct cs_spec_stats *t)
{
    fprintf(f, "syncs: %.2f per step (%.2f of them drafting), %llu steps, %llu target rows verified on the device\n",
            t->n_calls ? (double)t->n_syncs / (double)t->n_calls : 0.0,
            t->n_calls ? (double)t->n_syncs_draft / (double)t->n_calls : 0.0, (unsigned long long)t->n_calls,
            (unsigned long long)t->n_greedy_rows);
}

/* Load, cache and timing lines of a run (stderr). */
static void print_run_stats(const clspec_engine *E, int32_t n_prompt, double t_prefill, int n_dec, double t_decode,
                            int n_gen)
{
    struct clspec_engine_info in = {.size = sizeof in};
    char err[CLSPEC_ERRLEN];
    if (clspec_engine_get_info(E, &in, err, sizeof err) < 0)
        return;
    char where[512];
    size_t o = 0;
    where[0] = '\0';
    for (int i = 0; i < in.n_devices && o < sizeof where; i++)
        o += (size_t)snprintf(where + o, sizeof where - o, "%s%s (%u layers)", i ? ", " : "", in.device_name[i],
                              in.device_layers[i]);
    fprintf(stderr,
            "load: %.3f s (%s, %.2f MiB on %s)\n"
            "kv: %u cells, K %s, V %s, %.1f KiB per token\n"
            "prefill: %d tokens in %.3f s, %.1f tokens/s\n"
            "decode: %d tokens in %.3f s, %.1f tokens/s (%d generated)\n",
            in.load_s, in.arch, (double)in.weight_bytes / 1048576.0, where, in.n_ctx,
            clspec_kv_type_name(in.type_k), clspec_kv_type_name(in.type_v), (double)in.kv_bytes_per_token / 1024.0,
            n_prompt, t_prefill, t_prefill > 0 ? n_prompt / t_prefill : 0.0, n_dec, t_decode,
            t_decode > 0 ? n_dec / t_decode : 0.0, n_gen);
}

/* Writes token id's text to stdout; < 0 (err) when it has none. */
static int emit(const clspec_engine *E, int32_t id, char *err, size_t errlen)
{
    char buf[256];
    size_t n = 0;
    CS_TRY(clspec_token_piece(E, id, 0, buf, sizeof buf, &n, err, errlen));
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    return CLSPEC_OK;
}

/* The prompt as the daemon feeds it: in one decode (the door), the first
 * token sampled from its last row, then the slot handed to the loop with
 * the prompt already in the cache. A speculator that reads the target's
 * states of the prompt (taps, KV injection) gets the prompt prefilled by
 * the loop instead (its first step gives the first token), as in the
 * daemon (spec_core_prefill). *first: the first token, or -1 when the loop
 * gives it. */
static int start(struct rig *r, const int32_t *ids, int32_t n_prompt, clspec_sampler *smp, int32_t *first,
                 char *err, size_t errlen)
{
    *first = -1;
    if (cs_plugin_needs_core_prefill(r->pl))
        return cs_spec_slot_begin_cached(r->sp, 0, ids, n_prompt, 0, smp, true, err, errlen);
    int32_t *hist = malloc(((size_t)n_prompt + 1) * sizeof *hist), *pos = malloc((size_t)n_prompt * sizeof *pos);
    int rc = hist && pos ? CLSPEC_OK : cs_err(err, errlen, CLSPEC_E_NOMEM, "out of memory");
    for (int32_t i = 0; rc == CLSPEC_OK && i < n_prompt; i++)
        pos[i] = i;
    struct clspec_batch b = {.size = sizeof b, .n_rows = n_prompt, .token = ids, .pos = pos};
    if (rc == CLSPEC_OK)
        rc = clspec_decode(r->door, &b, NULL, err, errlen); /* logits of the last row */
    if (rc == CLSPEC_OK) {
        *first = clspec_sampler_sample(smp, clspec_logits(r->door, n_prompt - 1));
        rc = clspec_sampler_accept(smp, *first);
    }
    if (rc == CLSPEC_OK) {
        memcpy(hist, ids, (size_t)n_prompt * sizeof *hist);
        hist[n_prompt] = *first;
        rc = cs_spec_slot_begin_cached(r->sp, 0, hist, n_prompt + 1, n_prompt, smp, r->pl != NULL, err, errlen);
    }
    free(hist);
    free(pos);
    return rc;
}

int cs_cli_generate(const struct cs_spec_cli *o, const struct cs_engine_params *ep, const int32_t *ids,
                    int32_t n_prompt, int32_t n_predict, const struct cs_sampler_params *smp_p)
{
    char err[CLSPEC_ERRLEN];
    struct rig r;
    uint32_t n_ctx = (uint32_t)(n_prompt + n_predict + (int32_t)o->n_max + 2);
    int rc = o->type ? check_plugin(o, err, sizeof err) : CLSPEC_OK;
    if (rc == 0)
        rc = rig_open(o, o->type, ep, n_ctx, 1, &r, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "clspec run: %s\n", err);
        return 1;
    }
    clspec_sampler *smp = NULL;
    rc = cs_api_sampler_new(smp_p, r.sp->n_vocab, &smp, err, sizeof err);
    for (int32_t i = 0; rc == 0 && i < n_prompt; i++)
        rc = clspec_sampler_accept(smp, ids[i]);
    int32_t n_gen = 0, first = -1;
    int n_dec = 0; /* steps of the loop */
    bool done = n_predict <= 0;
    double t0 = cs_now(), t_prefill = 0;
    if (rc == 0)
        rc = start(&r, ids, n_prompt, smp, &first, err, sizeof err);
    t_prefill = cs_now() - t0;
    t0 = cs_now();
    if (rc == 0 && first >= 0 && !done) { /* the prompt's own token, sampled in start() */
        n_gen++;
        const bool eog = clspec_token_is_eog(r.door, first) == 1;
        done = eog || n_gen >= n_predict;
        if (!eog)
            rc = emit(r.door, first, err, sizeof err);
    }
    while (rc == 0 && !done && n_gen < n_predict) {
        int32_t left = n_predict - n_gen;
        if ((rc = cs_spec_step(r.sp, &left, err, sizeof err)) < 0)
            break;
        n_dec++;
        const struct cs_spec_slot *sl = &r.sp->slots[0];
        if (sl->rc < 0) {
            rc = cs_err(err, sizeof err, sl->rc, "the KV cache is full");
            break;
        }
        for (int32_t i = 0; rc == 0 && i < sl->n_out; i++) {
            n_gen++;
            if (sl->eog && i == sl->n_out - 1) {
                done = true;
                break;
            }
            rc = emit(r.door, sl->out[i], err, sizeof err);
        }
    }
    double t = cs_now() - t0;
    printf("\n");
    fflush(stdout);
    if (rc < 0)
        fprintf(stderr, "clspec run: %s\n", err);
    else {
        print_run_stats(r.door, n_prompt, t_prefill, n_dec, t, n_gen);
        if (r.pl) {
            fprintf(stderr, "speculator %s\n", r.pl->vt.name);
            print_stats(stderr, &r.sp->slots[0].st);
        }
        print_syncs(stderr, &r.sp->total);
    }
    clspec_sampler_free(smp);
    rig_free(&r);
    return rc < 0 ? 1 : 0;
}

static const char *const bench_prompts[] = {
    "Once upon a time",
    "The cat sat",
    "Lily and Tom went to the park",
    "Tim had a big red ball. He liked to",
};

/* One timed generation of n_gen tokens on every slot (greedy). */
static int bench_once(struct rig *r, int n_slots, int32_t **ids, const int32_t *n_ids, int32_t n_gen,
                      double *secs, uint64_t *n_tok, char *err, size_t errlen)
{
    struct cs_sampler_params p = cs_sampler_defaults();
    p.temp = 0;
    clspec_sampler *smp[CS_MAX_SEQ] = {NULL};
    int32_t left[CS_MAX_SEQ] = {0};
    int rc = 0;
    memset(&r->sp->total, 0, sizeof r->sp->total);
    const bool host_logits = getenv("CLSPEC_BENCH_HOST_LOGITS") != NULL; /* A/B: every logits row comes back */
    for (int s = 0; s < n_slots && rc == 0; s++) {
        rc = cs_api_sampler_new(&p, r->sp->n_vocab, &smp[s], err, errlen);
        cs_api_sampler_keep_logits(smp[s], host_logits); /* without: greedy steps verify on the device */
        if (rc == 0)
            rc = cs_spec_slot_begin(r->sp, s, ids[s], n_ids[s], smp[s], true, err, errlen);
        left[s] = n_gen;
    }
    *n_tok = 0;
    double t0 = cs_now();
    for (bool any = true; rc == 0 && any;) {
        if ((rc = cs_spec_step(r->sp, left, err, errlen)) < 0)
            break;
        any = false;
        for (int s = 0; s < n_slots; s++) {
            const struct cs_spec_slot *sl = &r->sp->slots[s];
            if (sl->rc < 0) {
                rc = cs_err(err, errlen, sl->rc, "slot %d: the KV cache is full", s);
                break;
            }
            left[s] = sl->eog ? 0 : left[s] - sl->n_out;
            *n_tok += (uint64_t)sl->n_out;
            any |= left[s] > 0;
        }
    }
    *secs = cs_now() - t0;
    for (int s = 0; s < n_slots; s++) {
        cs_spec_slot_end(r->sp, s);
        clspec_sampler_free(smp[s]);
    }
    return rc;
}

int cs_spec_cli_bench(const struct cs_spec_cli *o, const struct cs_engine_params *ep, int32_t n_gen, int reps)
{
    char err[CLSPEC_ERRLEN];
    const int n_slots = (int)o->parallel;
    const char *model = ep->model_path;
    /* tokenize with a vocab_only door (no device) */
    clspec_engine *vocab = NULL;
    int rc = check_plugin(o, err, sizeof err);
    if (rc == 0) {
        struct clspec_engine_params vp;
        clspec_engine_default_params(&vp, sizeof vp);
        vp.model_path = model;
        vp.vocab_only = 1;
        rc = clspec_engine_open(&vp, &vocab, err, sizeof err);
    }
    int32_t *ids[CS_MAX_SEQ] = {NULL}, n_ids[CS_MAX_SEQ] = {0}, n_max_prompt = 0;
    for (int s = 0; rc == 0 && s < n_slots; s++) {
        const char *text = o->prompt ? o->prompt : bench_prompts[s % 4];
        size_t cap = strlen(text) + 8, n = 0;
        ids[s] = malloc(cap * sizeof *ids[s]);
        if (!ids[s])
            rc = cs_err(err, sizeof err, CLSPEC_E_NOMEM, "out of memory");
        else
            rc = clspec_tokenize(vocab, text, strlen(text), 1, 0, ids[s], cap, &n, err, sizeof err);
        n_ids[s] = (int32_t)n;
        n_max_prompt = CS_MAX(n_max_prompt, n_ids[s]);
    }
    clspec_engine_free(vocab);
    uint32_t n_ctx = (uint32_t)(n_slots * (n_max_prompt + n_gen + (int32_t)o->n_max + 4));
    double tps[2] = {0, 0};
    if (rc == 0)
        printf("| %-10s | %8s | %4s | %7s | %9s | %8s | %8s | %7s | %8s | %8s | %7s | %8s |\n", "speculator", "parallel",
               "kv", "tokens", "tokens/s", "draft_n", "accepted", "rate", "mean len", "rows/tok", "speedup", "pair med");
    /* both rigs open, runs alternating (without, with, without, ...): a loaded machine slows both alike */
    struct rig rigs[2];
    memset(rigs, 0, sizeof rigs);
    for (int mode = 0; mode < 2 && rc == 0; mode++)
        rc = rig_open(o, mode == 0 ? NULL : o->type, ep, n_ctx, n_slots, &rigs[mode], err, sizeof err);
    struct cs_spec_stats st[2];
    uint64_t n_tok[2] = {0, 0};
    memset(st, 0, sizeof st);
    double pair[1000], v[2] = {0, 0}; /* per repetition: with / without, run back to back */
    int n_pair = 0;
    for (int k = -1; k < reps && rc == 0; k++) { /* k = -1: warm-up */
        for (int mode = 0; mode < 2 && rc == 0; mode++) {
            double secs = 0;
            rc = bench_once(&rigs[mode], n_slots, ids, n_ids, n_gen, &secs, &n_tok[mode], err, sizeof err);
            v[mode] = secs > 0 ? (double)n_tok[mode] / secs : 0;
            if (k >= 0) {
                tps[mode] = CS_MAX(tps[mode], v[mode]);
                st[mode] = rigs[mode].sp->total;
            }
        }
        if (k >= 0 && rc == 0 && v[0] > 0 && n_pair < 1000)
            pair[n_pair++] = v[1] / v[0];
    }
    for (int a = 1; a < n_pair; a++) /* sorted: the median pair */
        for (int b = a; b > 0 && pair[b - 1] > pair[b]; b--) {
            double x = pair[b];
            pair[b] = pair[b - 1];
            pair[b - 1] = x;
        }
    const double pair_med = n_pair ? (n_pair % 2 ? pair[n_pair / 2] : 0.5 * (pair[n_pair / 2 - 1] + pair[n_pair / 2])) : 0;
    for (int mode = 0; mode < 2 && rc == 0; mode++) {
        struct rig *r = &rigs[mode];
        const char *type = mode == 0 ? NULL : o->type;
        const struct cs_spec_stats *t = &st[mode];
        /* mean len: tokens per target forward and slot; rows/tok: target rows computed per token */
        printf("| %-10.10s | %8d | %4s | %7llu | %9.1f | %8llu | %8llu | %6.1f%% | %8.2f | %8.2f | %6.2fx | %7.2fx |\n",
               type ? (r->pl ? r->pl->vt.name : type) : "none", n_slots, cs_type_name(ep->type_k),
               (unsigned long long)n_tok[mode], tps[mode], (unsigned long long)t->n_drafted,
               (unsigned long long)t->n_accepted, t->n_drafted ? 100.0 * (double)t->n_accepted / (double)t->n_drafted : 0.0,
               t->n_steps ? (double)t->n_emitted / (double)t->n_steps : 0.0,
               t->n_emitted ? (double)(t->n_steps + t->n_drafted) / (double)t->n_emitted : 0.0,
               tps[0] > 0 ? tps[mode] / tps[0] : 1.0, mode ? pair_med : 1.0);
        if (type && r->sp->p.ctl == CS_SPEC_CTL_COST) { /* what the cost-aware controller measured */
            struct cs_strbuf cb = {0};
            cs_ctl_report(&r->sp->ctl, n_slots, &cb);
            printf("controller: %s; mean chosen length %.2f, steps kept plain %llu (last run)\n", cb.p ? cb.p : "",
                   t->n_steps ? (double)t->n_asked / (double)t->n_steps : 0.0, (unsigned long long)t->n_ctl_plain);
            cs_strbuf_free(&cb);
        }
        print_syncs(stdout, t);
        fflush(stdout);
    }
    for (int mode = 0; mode < 2; mode++)
        rig_free(&rigs[mode]);
    if (rc < 0)
        fprintf(stderr, "clspec bench: %s\n", err);
    for (int s = 0; s < n_slots; s++)
        free(ids[s]);
    return rc < 0 ? 1 : 0;
}
