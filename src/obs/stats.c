/*
 * stats.c - counters, per-type counts, the publish-latency quantiles and the
 * fixed-bucket histograms; see stats.h.
 *
 * The quantiles come from their own histogram, which has log-linear buckets: 16 sub-buckets per
 * power of two from 1 us to about 18 minutes (larger values count in the last bucket), so any
 * percentile is known to within ~6% (reported as its bucket's lower bound).
 */
#include "obs/stats.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/hash.h"

#define SUB_BUCKETS 16
#define OCTAVES     27
#define BUCKETS     (OCTAVES * SUB_BUCKETS)
#define TYPE_SLOTS  8192 /* power of two, twice the type limit */
#define TYPE_LIMIT  4096

typedef struct type_slot {
    _Atomic(const char *) name; /* set once, under the mutex */
    atomic_uint_fast64_t count;
} type_slot;

struct tse_stats {
    atomic_uint_fast64_t counters[TSE_STAT_COUNT];
    atomic_uint_fast64_t buckets[BUCKETS];
    atomic_uint_fast64_t max_us;
    tse_histogram *hist[TSE_HIST_COUNT];
    pthread_mutex_t type_lock;
    size_t types;
    type_slot slots[TYPE_SLOTS];
    int64_t started_s; /* the monotonic clock (common/clock.h), in seconds */
};

tse_stats *tse_stats_create(void)
{
    tse_stats *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->type_lock, NULL);
    for (int h = 0; h < TSE_HIST_COUNT; h++) {
        s->hist[h] = tse_histogram_create();
        if (s->hist[h] == NULL) {
            tse_stats_destroy(s);
            return NULL;
        }
    }
    s->started_s = tse_clock_us() / 1000000;
    return s;
}

void tse_stats_destroy(tse_stats *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < TYPE_SLOTS; i++)
        free((char *)atomic_load(&s->slots[i].name));
    for (int h = 0; h < TSE_HIST_COUNT; h++)
        tse_histogram_destroy(s->hist[h]);
    pthread_mutex_destroy(&s->type_lock);
    free(s);
}

void tse_stats_add(tse_stats *s, tse_counter c, int64_t n)
{
    atomic_fetch_add(&s->counters[c], (uint_fast64_t)n);
}

uint64_t tse_stats_get(const tse_stats *s, tse_counter c)
{
    return atomic_load(&((tse_stats *)s)->counters[c]);
}

/* The slot of a type: found lock-free, inserted under the mutex. */
static type_slot *find_slot(tse_stats *s, const char *type, bool insert)
{
    size_t i = tse_hash_str(type) & (TYPE_SLOTS - 1);

    for (size_t probe = 0; probe < TYPE_SLOTS; probe++, i = (i + 1) & (TYPE_SLOTS - 1)) {
        const char *name = atomic_load(&s->slots[i].name);
        if (name == NULL) {
            if (!insert)
                return NULL;
            char *copy = strdup(type);
            if (copy == NULL)
                return NULL;
            atomic_store(&s->slots[i].name, copy);
            s->types++;
            return &s->slots[i];
        }
        if (strcmp(name, type) == 0)
            return &s->slots[i];
    }
    return NULL;
}

void tse_stats_count_type(tse_stats *s, const char *event_type)
{
    type_slot *slot = find_slot(s, event_type, false);

    if (slot == NULL) {
        pthread_mutex_lock(&s->type_lock);
        slot = find_slot(s, event_type, false);
        if (slot == NULL)
            slot = find_slot(s, s->types < TYPE_LIMIT ? event_type : "other", true);
        pthread_mutex_unlock(&s->type_lock);
    }
    if (slot != NULL)
        atomic_fetch_add(&slot->count, 1);
}

void tse_stats_each_type(tse_stats *s, tse_stats_type_fn fn, void *arg)
{
    for (size_t i = 0; i < TYPE_SLOTS; i++) {
        const char *name = atomic_load(&s->slots[i].name);
        if (name != NULL)
            fn(arg, name, atomic_load(&s->slots[i].count));
    }
}

static int bucket_of(uint64_t us)
{
    int octave;

    if (us < SUB_BUCKETS)
        return (int)us;
    octave = 63 - __builtin_clzll(us); /* >= 4 */
    int sub = (int)((us >> (octave - 4)) & (SUB_BUCKETS - 1));
    int b = (octave - 3) * SUB_BUCKETS + sub;
    return b < BUCKETS ? b : BUCKETS - 1;
}

/* The lower bound of a bucket, the inverse of bucket_of. */
static double bucket_value(int b)
{
    if (b < SUB_BUCKETS)
        return b;
    int octave = b / SUB_BUCKETS + 3;
    int sub = b % SUB_BUCKETS;
    return (double)((uint64_t)(SUB_BUCKETS + sub) << (octave - 4));
}

void tse_stats_record_latency(tse_stats *s, int64_t micros)
{
    uint64_t us = micros < 0 ? 0 : (uint64_t)micros;
    uint64_t max = atomic_load(&s->max_us);

    atomic_fetch_add(&s->buckets[bucket_of(us)], 1);
    while (us > max && !atomic_compare_exchange_weak(&s->max_us, &max, us))
        ;
}

tse_latency_summary tse_stats_latency(const tse_stats *cs)
{
    tse_stats *s = (tse_stats *)cs;
    tse_latency_summary out = {0};
    uint64_t counts[BUCKETS], seen = 0;
    bool have_p50 = false;

    for (int b = 0; b < BUCKETS; b++) {
        counts[b] = atomic_load(&s->buckets[b]);
        out.count += counts[b];
    }
    out.max_us = (double)atomic_load(&s->max_us);
    if (out.count == 0)
        return out;
    for (int b = 0; b < BUCKETS; b++) {
        seen += counts[b];
        if (!have_p50 && seen * 2 >= out.count) {
            out.p50_us = bucket_value(b);
            have_p50 = true;
        }
        if (seen * 100 >= out.count * 99) {
            out.p99_us = bucket_value(b);
            break;
        }
    }
    if (out.p50_us > out.max_us)
        out.p50_us = out.max_us;
    if (out.p99_us > out.max_us)
        out.p99_us = out.max_us;
    return out;
}

tse_histogram *tse_stats_histogram(tse_stats *s, tse_hist h)
{
    return s->hist[h];
}

uint64_t tse_stats_uptime(const tse_stats *s)
{
    return (uint64_t)(tse_clock_us() / 1000000 - s->started_s);
}
