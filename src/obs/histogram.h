/*
 * histogram.h - latency histograms with fixed bucket bounds, kept the way
 * Prometheus exposes them: a count per bucket (read back cumulative), the
 * sum of the observations and their count. Fixed bounds, the same in every
 * instance, are what lets the histograms of several instances be added up
 * (a quantile cannot be).
 *
 * Thread-safety: tse_histogram_observe may run on any number of threads at
 * once and takes no lock. The counters are split into SHARDS (histogram.c)
 * shards, one cache line apart, picked by the CPU the caller runs on
 * (sched_getcpu, which glibc answers from the rseq area without a system
 * call), so threads on different cores do not write the same line; each
 * observation is two relaxed atomic additions. tse_histogram_read may run
 * at any time: it adds the shards up, so an observation made meanwhile may
 * be in the buckets and not yet in the sum, never in the count without its
 * bucket (the count is the sum of the buckets).
 *
 * Ownership: create/destroy; destroy(NULL) is a no-op.
 */
#ifndef TSE_OBS_HISTOGRAM_H
#define TSE_OBS_HISTOGRAM_H

#include <stdint.h>

/* Upper bounds of the buckets, microseconds (TSE_HISTOGRAM_BOUNDS of them;
 * a last bucket, +Inf, takes the rest). */
#define TSE_HISTOGRAM_BOUNDS  21
#define TSE_HISTOGRAM_BUCKETS (TSE_HISTOGRAM_BOUNDS + 1)
extern const int64_t tse_histogram_bounds_us[TSE_HISTOGRAM_BOUNDS];

typedef struct tse_histogram tse_histogram;

/* A consistent-enough copy: cumulative[i] observations at or below bound i,
 * cumulative[TSE_HISTOGRAM_BOUNDS] == count (every observation). */
typedef struct tse_histogram_snapshot {
    uint64_t cumulative[TSE_HISTOGRAM_BUCKETS];
    uint64_t count;
    uint64_t sum_us;
} tse_histogram_snapshot;

tse_histogram *tse_histogram_create(void); /* NULL when out of memory */
void tse_histogram_destroy(tse_histogram *h);

/* Records one observation of micros (negative counts as 0). h NULL: nothing. */
void tse_histogram_observe(tse_histogram *h, int64_t micros);

/* Fills out from h (all zero for NULL). */
void tse_histogram_read(const tse_histogram *h, tse_histogram_snapshot *out);

#endif
