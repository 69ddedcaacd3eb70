/*
 * stats.h - the service's counters, its publish-latency quantiles and its
 * latency histograms (obs/histogram.h).
 *
 * One tse_stats per service instance, created at start and shared by every
 * thread: counters are atomics, the per-type table takes a mutex only when a
 * type is seen for the first time, histograms take no lock. Figures are this
 * instance's since it started (Redis-side figures such as stream lengths are
 * read elsewhere).
 */
#ifndef TSE_OBS_STATS_H
#define TSE_OBS_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "obs/histogram.h"

typedef enum tse_counter {
    TSE_STAT_PUBLISHED = 0,  /* events stored (not duplicates) */
    TSE_STAT_DUPLICATE,      /* publishes answered as duplicates */
    TSE_STAT_INVALID,        /* publishes refused as invalid */
    TSE_STAT_UNAVAILABLE,    /* publishes failed: Redis unreachable */
    TSE_STAT_SCHEMA_INVALID, /* stored as generic data by lenient mode */
    TSE_STAT_CONSUMED,       /* deliveries sent */
    TSE_STAT_ACKED,
    TSE_STAT_REDELIVERED,
    TSE_STAT_DEAD_LETTERED, /* reason max_delivery_attempts */
    TSE_STAT_REJECTED,      /* dead-lettered, reason rejected (a nack with reject) */
    TSE_STAT_REDRIVEN,      /* dead letters handed back to their subscription */
    TSE_STAT_PURGED,        /* dead letters deleted */
    TSE_STAT_NACKED,        /* deliveries nacked (handed back) */
    TSE_STAT_SUBSCRIBERS,   /* gauge: live subscriber streams */
    TSE_STAT_COUNT
} tse_counter;

typedef struct tse_stats tse_stats;

/* The latency histograms every instance keeps. */
typedef enum tse_hist {
    TSE_HIST_PUBLISH = 0, /* a publish: request received to Redis acknowledged */
    TSE_HIST_REDIS_RTT,   /* a writer lane's command: written to its reply read */
    TSE_HIST_DELIVERY,    /* an event's publish time to its first delivery */
    TSE_HIST_COUNT
} tse_hist;

/* Per-type callback for tse_stats_each_type. */
typedef void (*tse_stats_type_fn)(void *arg, const char *event_type, uint64_t published);

/* Latency summary, microseconds. */
typedef struct tse_latency_summary {
    uint64_t count;
    double p50_us;
    double p99_us;
    double max_us;
} tse_latency_summary;

tse_stats *tse_stats_create(void);
void tse_stats_destroy(tse_stats *s); /* NULL is a no-op */

void tse_stats_add(tse_stats *s, tse_counter c, int64_t n);
uint64_t tse_stats_get(const tse_stats *s, tse_counter c);

/* Counts one stored event of a type (bounded: types past 4096 go to "other"). */
void tse_stats_count_type(tse_stats *s, const char *event_type);
void tse_stats_each_type(tse_stats *s, tse_stats_type_fn fn, void *arg);

/* Records one publish latency (request received to Redis acknowledged). */
void tse_stats_record_latency(tse_stats *s, int64_t micros);
tse_latency_summary tse_stats_latency(const tse_stats *s);

/* The histogram h of s, borrowed for the life of s (observe it directly on
 * hot paths that have no tse_stats). */
tse_histogram *tse_stats_histogram(tse_stats *s, tse_hist h);

/* Seconds since create. */
uint64_t tse_stats_uptime(const tse_stats *s);

#endif
