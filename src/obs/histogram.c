/*
 * histogram.c - fixed-bucket latency histograms; see histogram.h.
 *
 * Each shard is its own cache lines (aligned to 64 bytes), so the relaxed
 * additions of threads on different CPUs never contend for one line; a
 * thread that moves between CPUs merely adds to another shard, which the
 * read sums anyway.
 */
/* sched_getcpu needs _GNU_SOURCE, which the build defines. */
#include "obs/histogram.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 16 /* a power of two */

/* 25 us to 5 minutes, in the 1-2.5-5 steps Prometheus's defaults use. */
const int64_t tse_histogram_bounds_us[TSE_HISTOGRAM_BOUNDS] = {
    25,      50,      100,     250,      500,      1000,     2500,
    5000,    10000,   25000,   50000,    100000,   250000,   500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 300000000,
};

typedef struct shard {
    alignas(64) atomic_uint_fast64_t counts[TSE_HISTOGRAM_BUCKETS];
    atomic_uint_fast64_t sum_us;
} shard;

struct tse_histogram {
    shard shards[SHARDS];
};

tse_histogram *tse_histogram_create(void)
{
    tse_histogram *h = aligned_alloc(64, sizeof(*h));

    if (h != NULL)
        memset(h, 0, sizeof(*h));
    return h;
}

void tse_histogram_destroy(tse_histogram *h)
{
    free(h);
}

/* The first bucket whose bound is at or above us; most latencies are small,
 * so the walk from the bottom stops after a few comparisons. */
static int bucket_of(uint64_t us)
{
    int b = 0;

    while (b < TSE_HISTOGRAM_BOUNDS && us > (uint64_t)tse_histogram_bounds_us[b])
        b++;
    return b;
}

void tse_histogram_observe(tse_histogram *h, int64_t micros)
{
    uint64_t us = micros < 0 ? 0 : (uint64_t)micros;
    int cpu;
    shard *s;

    if (h == NULL)
        return;
    cpu = sched_getcpu();
    s = &h->shards[(unsigned)(cpu < 0 ? 0 : cpu) & (SHARDS - 1)];
    atomic_fetch_add_explicit(&s->counts[bucket_of(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
}

void tse_histogram_read(const tse_histogram *ch, tse_histogram_snapshot *out)
{
    tse_histogram *h = (tse_histogram *)ch;
    uint64_t total = 0;

    memset(out, 0, sizeof(*out));
    if (h == NULL)
        return;
    for (int b = 0; b < TSE_HISTOGRAM_BUCKETS; b++) {
        for (int i = 0; i < SHARDS; i++)
            total += atomic_load_explicit(&h->shards[i].counts[b], memory_order_relaxed);
        out->cumulative[b] = total;
    }
    for (int i = 0; i < SHARDS; i++)
        out->sum_us += atomic_load_explicit(&h->shards[i].sum_us, memory_order_relaxed);
    out->count = total;
}
