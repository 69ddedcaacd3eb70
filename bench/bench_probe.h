/*
 * bench_probe.h - connecting a bench's clients before it measures, so that
 * connection setup is not measured: health checks, two per connection at
 * once (the first asks every connection to connect, the SDK takes a ready
 * one in turn), counted under the bench's mutex. bench_publish and
 * bench_subscribe. Header-only.
 */
#ifndef TSE_BENCH_PROBE_H
#define TSE_BENCH_PROBE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "tracseq/client.h"

/* The health checks of one connect, counted under *mu; *changed is
 * signalled when the last answers. */
typedef struct bench_probe {
    pthread_mutex_t *mu;
    pthread_cond_t *changed;
    /* A deadline counts as no answer too (else only UNAVAILABLE does). */
    bool deadline_unreachable;
    int waiting, unreachable;
} bench_probe;

static inline void bench_probe_done(void *arg, tse_client_status status,
                                    const tse_client_error *err, const void *response, size_t len)
{
    bench_probe *p = arg;

    (void)err, (void)response, (void)len;
    pthread_mutex_lock(p->mu);
    p->unreachable += status == TSE_CLIENT_UNAVAILABLE ||
                      (p->deadline_unreachable && status == TSE_CLIENT_DEADLINE_EXCEEDED);
    if (--p->waiting == 0)
        pthread_cond_signal(p->changed);
    pthread_mutex_unlock(p->mu);
}

/* Starts one health check on c (under *p->mu). */
static inline void bench_probe_start(bench_probe *p, tse_client *c,
                                     const tse_client_call_options *o)
{
    if (tse_client_call_start(c, "/grpc.health.v1.Health/Check", NULL, 0, o, bench_probe_done, p,
                              NULL, NULL) == TSE_CLIENT_OK)
        p->waiting++;
    else
        p->unreachable++;
}

/* Waits for every check started (under *p->mu); true when all answered. */
static inline bool bench_probe_wait(bench_probe *p)
{
    while (p->waiting > 0)
        pthread_cond_wait(p->changed, p->mu);
    return p->unreachable == 0;
}

#endif
