/* schedutil: the helpers of the daemon scheduler's tests (tests/test-sched.c,
 * tests/test-sched-spec.c): a collector of one request's callbacks, engines
 * over stories260K with their door, a scheduler, requests, and the greedy
 * reference. Helpers fail the running cmocka test on an error. */
#ifndef CS_TESTS_SCHEDUTIL_H
#define CS_TESTS_SCHEDUTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/sched.h"
#include "engine/engine.h"
#include "golden.h"

#define MAXTOK 1024

struct su_col { /* what one request's callbacks delivered */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t tok[MAXTOK];
    float lp[MAXTOK];
    int n_tok;
    char text[16384];
    size_t n_text;
    int n_events, n_release; /* TOKEN events; of them with token -1 */
    bool done;
    int type;
    char reason[16];
    int status;
    char msg[512];
    struct cs_req_usage usage;
    struct cs_top_logprob top0[CS_MAX_TOP_LOGPROBS]; /* alternatives of the first token */
    char top0_txt[CS_MAX_TOP_LOGPROBS][32];
    int n_top0;
    int sleep_us;             /* slow callback (cancel test) */
    atomic_int in_cb;
    atomic_int calls;
};

void su_col_init(struct su_col *c);
void su_col_destroy(struct su_col *c);
/* The request callback: user is a struct su_col. An event after the last one
 * sets status 9999. */
void su_col_cb(void *user, const struct cs_req_event *ev);
/* Waits up to timeout_s for the last event; whether it came. */
bool su_col_wait(struct su_col *c, double timeout_s);
int su_col_ntok(struct su_col *c);

/* stories260K with n_ctx cells for n_seq sequences, batches of 128. */
struct cs_engine *su_engine_open(uint32_t n_ctx, uint32_t n_seq, bool unified);
/* The engine door of e (the scheduler and the speculative core share it),
 * made on first use; su_engine_close frees both. Up to 8 engines at once. */
clspec_engine *su_door_of(struct cs_engine *e);
void su_engine_close(struct cs_engine *e);
struct cs_sched *su_sched_new(struct cs_engine *e, int n_slots, int queue_max, bool truncate);
/* A greedy, speculative request for prompt[0..n). */
struct cs_req su_req_make(const int32_t *prompt, int n, int max_tokens);
/* Submits r with su_col_cb on c; the request id. */
uint64_t su_submit_ok(struct cs_sched *s, const struct cs_req *r, struct su_col *c);
/* llama.cpp's greedy reference of stories260K (at least 2 cases). */
struct golden *su_gold(void);

#endif
