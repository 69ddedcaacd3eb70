/*
 * stats.c - counters, per-type counts, the publish-latency maximum (which no
 * bucket scheme gives; the quantiles are the publish histogram's) and the
 * fixed-bucket histograms; see stats.h.
 */
#include "obs/stats.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/hash.h"

#define TYPE_SLOTS 8192 /* power of two, twice the type limit */
#define TYPE_LIMIT 4096

typedef struct type_slot {
    _Atomic(const char *) name; /* set once, under the mutex */
    atomic_uint_fast64_t count;
} type_slot;

struct tse_stats {
    atomic_uint_fast64_t counters[TSE_STAT_COUNT];
    atomic_uint_fast64_t max_us;
    tse_histogram *hist[TSE_HIST_COUNT];
    pthread_mutex_t type_lock;
    size_t types;
    type_slot slots[TYPE_SLOTS];
    int64_t started_us; /* tse_clock_us */
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
    s->started_us = tse_clock_us();
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

void tse_stats_record_latency(tse_stats *s, int64_t micros)
{
    uint64_t us = micros < 0 ? 0 : (uint64_t)micros;
    uint64_t max = atomic_load(&s->max_us);

    while (us > max && !atomic_compare_exchange_weak(&s->max_us, &max, us))
        ;
}

tse_latency_summary tse_stats_latency(const tse_stats *s)
{
    const tse_histogram *h = s->hist[TSE_HIST_PUBLISH];
    tse_histogram_snapshot snap;
    double max = (double)atomic_load(&((tse_stats *)s)->max_us);

    tse_histogram_read(h, &snap);
    return (tse_latency_summary){.count = snap.count,
                                 .p50_us = fmin(tse_histogram_percentile(h, 50), max),
                                 .p99_us = fmin(tse_histogram_percentile(h, 99), max),
                                 .max_us = max};
}

tse_histogram *tse_stats_histogram(tse_stats *s, tse_hist h)
{
    return s->hist[h];
}

uint64_t tse_stats_uptime(const tse_stats *s)
{
    return (uint64_t)((tse_clock_us() - s->started_us) / 1000000);
}
