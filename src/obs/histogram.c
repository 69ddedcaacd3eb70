/*
 * histogram.c - fixed-bucket latency histograms; see histogram.h.
 *
 * Each bucket is counted as FINE equal slices (the +Inf one as one), so
 * its cumulative count stays exact and a percentile is known to within
 * 1/FINE of the step from the bound below: 1.5/32 = 4.7 % in a 1 -> 2.5 step.
 *
 * Each shard is its own cache lines (aligned to 64 bytes), so the relaxed
 * additions of threads on different CPUs never contend for one line; a
 * thread that moves between CPUs merely adds to another shard, which the
 * read sums anyway.
 */
/* sched_getcpu needs _GNU_SOURCE, which the build defines. */
#include "obs/histogram.h"

#include <math.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 16 /* a power of two */
#define FINE   32 /* slices per bucket of the bounds */
#define SLICES (TSE_HISTOGRAM_BOUNDS * FINE + 1)

/* 25 us to 5 minutes, in the 1-2.5-5 steps Prometheus's defaults use. */
const int64_t tse_histogram_bounds_us[TSE_HISTOGRAM_BOUNDS] = {
    25,      50,      100,     250,      500,      1000,     2500,
    5000,    10000,   25000,   50000,    100000,   250000,   500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 300000000,
};

typedef struct shard {
    alignas(64) atomic_uint_fast64_t counts[SLICES];
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

/* The first bucket whose bound is at or above us (most latencies are small:
 * a walk from the bottom), then its slice; bucket b holds (lo, bound b]. */
static int slice_of(uint64_t us)
{
    int b = 0;

    while (b < TSE_HISTOGRAM_BOUNDS && us > (uint64_t)tse_histogram_bounds_us[b])
        b++;
    if (b == TSE_HISTOGRAM_BOUNDS)
        return SLICES - 1;
    int64_t lo = b == 0 ? -1 : tse_histogram_bounds_us[b - 1];
    return b * FINE + (int)(((int64_t)us - lo - 1) * FINE / (tse_histogram_bounds_us[b] - lo));
}

/* The smallest value slice i holds, the inverse of slice_of. */
static double slice_floor(int i)
{
    int b = i / FINE;
    int64_t lo = b == 0 ? -1 : tse_histogram_bounds_us[b - 1];

    return (double)(lo + 1 + ((i % FINE) * (tse_histogram_bounds_us[b] - lo) + FINE - 1) / FINE);
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
    atomic_fetch_add_explicit(&s->counts[slice_of(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
}

/* The count of slice i over every shard. */
static uint64_t slice_count(tse_histogram *h, int i)
{
    uint64_t n = 0;

    for (int k = 0; k < SHARDS; k++)
        n += atomic_load_explicit(&h->shards[k].counts[i], memory_order_relaxed);
    return n;
}

void tse_histogram_read(const tse_histogram *ch, tse_histogram_snapshot *out)
{
    tse_histogram *h = (tse_histogram *)ch;
    uint64_t total = 0;

    memset(out, 0, sizeof(*out));
    if (h == NULL)
        return;
    for (int i = 0; i < SLICES; i++) {
        total += slice_count(h, i);
        out->cumulative[i / FINE] = total; /* last written by its last slice */
    }
    for (int i = 0; i < SHARDS; i++)
        out->sum_us += atomic_load_explicit(&h->shards[i].sum_us, memory_order_relaxed);
    out->count = total;
}

/* Observations racing the scan can only end it sooner. */
double tse_histogram_percentile(const tse_histogram *h, unsigned pct)
{
    tse_histogram_snapshot snap;
    uint64_t seen = 0;

    tse_histogram_read(h, &snap);
    for (int i = 0; i < SLICES - 1 && snap.count > 0; i++) {
        seen += slice_count((tse_histogram *)h, i);
        if (seen * 100 >= snap.count * pct)
            return slice_floor(i);
    }
    return snap.count > 0 ? INFINITY : 0;
}
