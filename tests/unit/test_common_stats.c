/*
 * test_common_stats.c - tse_stats: counters and the gauge stay exact under
 * concurrent updates, per-type counts keep one slot per type even when
 * several threads see a new type at once, the type table folds types past
 * its bound into "other", the latency summary's percentiles are within the
 * histogram's resolution on known distributions, the fixed-bucket histograms
 * count each value in its bucket and stay cumulative and exact under
 * concurrent observations, and uptime counts seconds.
 *
 * Thread counts and loop sizes keep each test well under a second on two
 * shared cores, also under ASan; only the uptime test sleeps (1.1 s).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "obs/stats.h"

#define NTHREADS   4
#define TYPE_BOUND 4096 /* stats.h: types past 4096 go to "other" */

/* Asserts got is within pct percent of want. */
static void assert_near(double got, double want, double pct)
{
    double diff = got > want ? got - want : want - got;

    if (diff > want * pct / 100.0)
        fail_msg("got %.1f, want %.1f within %.0f%%", got, want, pct);
}

/* ---- counters ----------------------------------------------------------- */

static void fresh_stats_are_zero(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    for (int c = 0; c < TSE_STAT_COUNT; c++)
        assert_int_equal(tse_stats_get(s, (tse_counter)c), 0);
    l = tse_stats_latency(s);
    assert_int_equal(l.count, 0);
    assert_true(l.p50_us == 0 && l.p99_us == 0 && l.max_us == 0);
}

static void destroy_null_is_a_noop(void **state)
{
    tse_stats_destroy(NULL);
}

static void counters_are_independent(void **state)
{
    tse_stats *s = *state;

    for (int c = 0; c < TSE_STAT_COUNT; c++)
        tse_stats_add(s, (tse_counter)c, c + 1);
    tse_stats_add(s, TSE_STAT_PUBLISHED, 10);
    assert_int_equal(tse_stats_get(s, TSE_STAT_PUBLISHED), 11);
    for (int c = 1; c < TSE_STAT_COUNT; c++)
        assert_int_equal(tse_stats_get(s, (tse_counter)c), c + 1);
}

static void gauge_goes_up_and_down(void **state)
{
    tse_stats *s = *state;

    tse_stats_add(s, TSE_STAT_SUBSCRIBERS, 1);
    tse_stats_add(s, TSE_STAT_SUBSCRIBERS, 1);
    tse_stats_add(s, TSE_STAT_SUBSCRIBERS, 1);
    tse_stats_add(s, TSE_STAT_SUBSCRIBERS, -1);
    assert_int_equal(tse_stats_get(s, TSE_STAT_SUBSCRIBERS), 2);
    tse_stats_add(s, TSE_STAT_SUBSCRIBERS, -2);
    assert_int_equal(tse_stats_get(s, TSE_STAT_SUBSCRIBERS), 0);
}

typedef struct worker {
    tse_stats *s;
    pthread_barrier_t *start;
    int id;
} worker;

/* Enough that the threads' loops overlap even when their wake-ups are staggered. */
#define INCREMENTS 1000000

static void *add_many(void *arg)
{
    worker *w = arg;

    pthread_barrier_wait(w->start);
    for (int i = 0; i < INCREMENTS; i++) {
        tse_stats_add(w->s, TSE_STAT_PUBLISHED, 1);
        tse_stats_add(w->s, TSE_STAT_SUBSCRIBERS, 1);
        tse_stats_add(w->s, TSE_STAT_SUBSCRIBERS, -1);
    }
    tse_stats_add(w->s, TSE_STAT_ACKED, w->id);
    return NULL;
}

/* Runs fn on NTHREADS threads released together. */
static void run_threads(tse_stats *s, void *(*fn)(void *))
{
    pthread_t t[NTHREADS];
    worker w[NTHREADS];
    pthread_barrier_t start;

    pthread_barrier_init(&start, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){.s = s, .start = &start, .id = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, fn, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
}

static void concurrent_adds_give_exact_totals(void **state)
{
    tse_stats *s = *state;

    run_threads(s, add_many);
    assert_int_equal(tse_stats_get(s, TSE_STAT_PUBLISHED), NTHREADS * INCREMENTS);
    assert_int_equal(tse_stats_get(s, TSE_STAT_SUBSCRIBERS), 0);
    assert_int_equal(tse_stats_get(s, TSE_STAT_ACKED), NTHREADS * (NTHREADS + 1) / 2);
}

/* ---- per-type counts ---------------------------------------------------- */

typedef struct type_seen {
    const char *name;
    uint64_t count;
} type_seen;

typedef struct type_list {
    type_seen items[2 * TYPE_BOUND];
    size_t n;
} type_list;

static void collect(void *arg, const char *event_type, uint64_t published)
{
    type_list *l = arg;

    assert_true(l->n < sizeof(l->items) / sizeof(l->items[0]));
    l->items[l->n++] = (type_seen){event_type, published};
}

/* Collects the per-type table; the caller frees. */
static type_list *types_of(tse_stats *s)
{
    type_list *l = calloc(1, sizeof(*l));

    assert_non_null(l);
    tse_stats_each_type(s, collect, l);
    return l;
}

/* The count of name in l, asserting it appears exactly once. */
static uint64_t count_of(const type_list *l, const char *name)
{
    const type_seen *found = NULL;

    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].name, name) != 0)
            continue;
        if (found != NULL)
            fail_msg("type \"%s\" has more than one slot", name);
        found = &l->items[i];
    }
    if (found == NULL)
        fail_msg("type \"%s\" is missing", name);
    return found->count;
}

static void no_types_until_one_is_counted(void **state)
{
    tse_stats *s = *state;
    type_list *l;

    l = types_of(s);
    assert_int_equal(l->n, 0);
    free(l);
}

static void each_type_is_counted_separately(void **state)
{
    tse_stats *s = *state;
    type_list *l;

    for (int i = 0; i < 3; i++)
        tse_stats_count_type(s, "sample.created");
    tse_stats_count_type(s, "storage.temperature_alert");
    tse_stats_count_type(s, "sample.created.v2");
    l = types_of(s);
    assert_int_equal(l->n, 3);
    assert_int_equal(count_of(l, "sample.created"), 3);
    assert_int_equal(count_of(l, "storage.temperature_alert"), 1);
    assert_int_equal(count_of(l, "sample.created.v2"), 1);
    free(l);
}

static void counted_type_name_is_copied(void **state)
{
    tse_stats *s = *state;
    char name[32] = "sample.stored";
    type_list *l;

    tse_stats_count_type(s, name);
    memcpy(name, "xxxxxx.xxxxxx", sizeof("xxxxxx.xxxxxx"));
    l = types_of(s);
    assert_int_equal(count_of(l, "sample.stored"), 1);
    free(l);
}

#define SHARED_TYPES 2000
#define ROUNDS       2

static void shared_type_name(char *buf, size_t size, int i)
{
    snprintf(buf, size, "lab.type_%04d", i);
}

/*
 * Every thread counts the same new types in the same order at the same
 * moment, so each type's first-seen insert is raced by several threads; the
 * second round takes the lock-free path for types already there.
 */
static void *count_shared_types(void *arg)
{
    worker *w = arg;
    char name[32];

    pthread_barrier_wait(w->start);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < SHARED_TYPES; i++) {
            shared_type_name(name, sizeof(name), i);
            tse_stats_count_type(w->s, name);
            tse_stats_count_type(w->s, "sample.created");
        }
    }
    return NULL;
}

static void concurrent_first_seen_type_gets_one_slot(void **state)
{
    tse_stats *s = *state;
    char name[32];
    type_list *l;

    run_threads(s, count_shared_types);
    l = types_of(s);
    assert_int_equal(l->n, SHARED_TYPES + 1);
    assert_int_equal(count_of(l, "sample.created"), NTHREADS * ROUNDS * SHARED_TYPES);
    for (int i = 0; i < SHARED_TYPES; i++) {
        shared_type_name(name, sizeof(name), i);
        assert_int_equal(count_of(l, name), NTHREADS * ROUNDS);
    }
    free(l);
}

/* Counts a burst of brand-new types per thread while another reads. */
static void *count_new_types(void *arg)
{
    worker *w = arg;
    char name[32];

    pthread_barrier_wait(w->start);
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "t%d.n%d", w->id, i);
        tse_stats_count_type(w->s, name);
    }
    return NULL;
}

/* cmocka asserts must not run off the test's thread: the reader only counts. */
typedef struct reader {
    tse_stats *s;
    atomic_int *done;
    uint64_t walks;
    uint64_t odd_entries;
} reader;

static void check_entry(void *arg, const char *event_type, uint64_t published)
{
    reader *r = arg;

    if (event_type[0] != 't' || published > 1)
        r->odd_entries++;
}

static void *read_types(void *arg)
{
    reader *r = arg;

    do { /* at least one walk, however late this thread is scheduled */
        tse_stats_each_type(r->s, check_entry, r);
        r->walks++;
    } while (!atomic_load(r->done));
    return NULL;
}

static void reading_types_while_they_are_inserted_is_safe(void **state)
{
    tse_stats *s = *state;
    atomic_int done = 0;
    reader r = {.s = s, .done = &done};
    pthread_t rt;
    type_list *l;

    assert_int_equal(pthread_create(&rt, NULL, read_types, &r), 0);
    run_threads(s, count_new_types);
    atomic_store(&done, 1);
    pthread_join(rt, NULL);
    assert_true(r.walks > 0);
    assert_int_equal(r.odd_entries, 0);
    l = types_of(s);
    assert_int_equal(l->n, NTHREADS * 500);
    free(l);
}

static void types_past_the_bound_fold_into_other(void **state)
{
    tse_stats *s = *state;
    char name[32];
    type_list *l;

    for (int i = 0; i < TYPE_BOUND; i++) {
        snprintf(name, sizeof(name), "bulk.type_%d", i);
        tse_stats_count_type(s, name);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "late.type_%d", i);
        tse_stats_count_type(s, name);
        tse_stats_count_type(s, name); /* a repeat goes to "other" too */
    }
    tse_stats_count_type(s, "bulk.type_7"); /* a known type still counts itself */
    l = types_of(s);
    assert_int_equal(l->n, TYPE_BOUND + 1);
    assert_int_equal(count_of(l, "other"), 20);
    assert_int_equal(count_of(l, "bulk.type_7"), 2);
    assert_int_equal(count_of(l, "bulk.type_0"), 1);
    assert_int_equal(count_of(l, "bulk.type_4095"), 1);
    for (size_t i = 0; i < l->n; i++)
        assert_null(strstr(l->items[i].name, "late."));
    free(l);
}

/* ---- latency ------------------------------------------------------------ */

static void uniform_latencies_give_expected_percentiles(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    for (int us = 1000; us >= 1; us--) /* order must not matter */
        tse_stats_record_latency(s, us);
    l = tse_stats_latency(s);
    assert_int_equal(l.count, 1000);
    assert_near(l.p50_us, 500, 7);
    assert_near(l.p99_us, 990, 7);
    assert_true(l.max_us == 1000);
    assert_true(l.p50_us <= l.p99_us && l.p99_us <= l.max_us);
}

static void small_latencies_are_exact(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    for (int us = 1; us <= 10; us++)
        tse_stats_record_latency(s, us);
    l = tse_stats_latency(s);
    assert_int_equal(l.count, 10);
    assert_true(l.p50_us == 5);
    assert_true(l.p99_us == 10);
    assert_true(l.max_us == 10);
}

static void single_value_is_reported_within_resolution(void **state)
{
    static const int64_t values[] = {1,    15,    17,     100,     999,      1000,
                                     4097, 65535, 100000, 1000000, 30000000, 60000000};

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        tse_stats *s = tse_stats_create();
        tse_latency_summary l;

        assert_non_null(s);
        for (int k = 0; k < 3; k++)
            tse_stats_record_latency(s, values[i]);
        l = tse_stats_latency(s);
        assert_int_equal(l.count, 3);
        assert_near(l.p50_us, (double)values[i], 7);
        assert_near(l.p99_us, (double)values[i], 7);
        assert_true(l.max_us == (double)values[i]);
        tse_stats_destroy(s);
    }
}

static void p99_ignores_the_last_percent(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    for (int i = 0; i < 990; i++)
        tse_stats_record_latency(s, 200);
    for (int i = 0; i < 10; i++)
        tse_stats_record_latency(s, 5000000);
    l = tse_stats_latency(s);
    assert_near(l.p50_us, 200, 7);
    assert_near(l.p99_us, 200, 7);
    assert_true(l.max_us == 5000000);
}

/*
 * A median of zero is a median: when most calls finish within the same
 * microsecond, p50 is 0 us, not the bucket after it.
 */
static void zero_median_is_reported_as_zero(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    for (int i = 0; i < 6; i++)
        tse_stats_record_latency(s, 0);
    for (int i = 0; i < 4; i++)
        tse_stats_record_latency(s, 100);
    l = tse_stats_latency(s);
    assert_int_equal(l.count, 10);
    if (l.p50_us != 0)
        fail_msg("6 of 10 latencies are 0 us, yet p50 = %.1f us", l.p50_us);
    assert_near(l.p99_us, 100, 7);
    assert_true(l.max_us == 100);
}

static void negative_latency_counts_as_zero(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    tse_stats_record_latency(s, -5);
    l = tse_stats_latency(s);
    assert_int_equal(l.count, 1);
    assert_true(l.p50_us == 0 && l.p99_us == 0 && l.max_us == 0);
}

#define RECORDS 50000

static void *record_many(void *arg)
{
    worker *w = arg;

    pthread_barrier_wait(w->start);
    for (int i = 0; i < RECORDS; i++)
        tse_stats_record_latency(w->s, 100 * w->id + i % 7);
    return NULL;
}

static void concurrent_records_keep_count_and_max(void **state)
{
    tse_stats *s = *state;
    tse_latency_summary l;

    run_threads(s, record_many);
    l = tse_stats_latency(s);
    assert_int_equal(l.count, NTHREADS * RECORDS);
    assert_true(l.max_us == 100 * NTHREADS + 6);
}

/* ---- fixed-bucket histograms (obs/histogram.h) -------------------------- */

static void histogram_bounds_ascend(void **state)
{
    (void)state;
    for (int i = 1; i < TSE_HISTOGRAM_BOUNDS; i++)
        assert_true(tse_histogram_bounds_us[i - 1] < tse_histogram_bounds_us[i]);
}

static void histogram_counts_each_value_at_or_below_its_bound(void **state)
{
    tse_histogram *h = tse_stats_histogram(*state, TSE_HIST_PUBLISH);
    tse_histogram_snapshot snap;

    /* Exactly on the first bound, just past it, past the last, negative. */
    tse_histogram_observe(h, tse_histogram_bounds_us[0]);
    tse_histogram_observe(h, tse_histogram_bounds_us[0] + 1);
    tse_histogram_observe(h, tse_histogram_bounds_us[TSE_HISTOGRAM_BOUNDS - 1] + 1);
    tse_histogram_observe(h, -7);
    tse_histogram_read(h, &snap);
    assert_int_equal(snap.count, 4);
    assert_int_equal(snap.cumulative[0], 2); /* the bound itself and the negative */
    assert_int_equal(snap.cumulative[1], 3);
    assert_int_equal(snap.cumulative[TSE_HISTOGRAM_BOUNDS - 1], 3);
    assert_int_equal(snap.cumulative[TSE_HISTOGRAM_BOUNDS], 4); /* +Inf */
    assert_int_equal(snap.sum_us,
                     (uint64_t)(2 * tse_histogram_bounds_us[0] + 1 +
                                tse_histogram_bounds_us[TSE_HISTOGRAM_BOUNDS - 1] + 1));
}

static void histograms_are_independent(void **state)
{
    tse_histogram_snapshot snap;

    tse_histogram_observe(tse_stats_histogram(*state, TSE_HIST_DELIVERY), 1000);
    tse_histogram_read(tse_stats_histogram(*state, TSE_HIST_PUBLISH), &snap);
    assert_int_equal(snap.count, 0);
    tse_histogram_read(tse_stats_histogram(*state, TSE_HIST_REDIS_RTT), &snap);
    assert_int_equal(snap.count, 0);
    tse_histogram_read(tse_stats_histogram(*state, TSE_HIST_DELIVERY), &snap);
    assert_int_equal(snap.count, 1);
}

static void histogram_null_is_harmless(void **state)
{
    tse_histogram_snapshot snap;

    (void)state;
    tse_histogram_observe(NULL, 5);
    tse_histogram_read(NULL, &snap);
    assert_int_equal(snap.count, 0);
    tse_histogram_destroy(NULL);
}

static void *observe_many(void *arg)
{
    worker *w = arg;
    tse_histogram *h = tse_stats_histogram(w->s, TSE_HIST_REDIS_RTT);

    pthread_barrier_wait(w->start);
    for (int i = 0; i < RECORDS; i++)
        tse_histogram_observe(h, 10 * (i % 100)); /* 0..990 us */
    return NULL;
}

/* Read while others observe: every snapshot is cumulative and its +Inf
 * bucket is its count; at the end nothing was lost. */
static void concurrent_observes_stay_cumulative_and_exact(void **state)
{
    tse_stats *s = *state;
    tse_histogram *h = tse_stats_histogram(s, TSE_HIST_REDIS_RTT);
    tse_histogram_snapshot snap;
    uint64_t sum_per_thread = 0;

    run_threads(s, observe_many);
    tse_histogram_read(h, &snap);
    for (int b = 1; b < TSE_HISTOGRAM_BUCKETS; b++)
        assert_true(snap.cumulative[b - 1] <= snap.cumulative[b]);
    assert_int_equal(snap.count, (uint64_t)NTHREADS * RECORDS);
    assert_int_equal(snap.cumulative[TSE_HISTOGRAM_BOUNDS], snap.count);
    for (int i = 0; i < RECORDS; i++)
        sum_per_thread += 10 * (uint64_t)(i % 100);
    assert_int_equal(snap.sum_us, NTHREADS * sum_per_thread);
    /* 0..990 us: none above the 1 ms bound. */
    for (int b = 0; b < TSE_HISTOGRAM_BOUNDS; b++)
        if (tse_histogram_bounds_us[b] == 1000)
            assert_int_equal(snap.cumulative[b], snap.count);
}

/* ---- uptime ------------------------------------------------------------- */

static void uptime_counts_seconds_since_create(void **state)
{
    tse_stats *s = *state;
    struct timespec pause = {.tv_sec = 1, .tv_nsec = 100 * 1000 * 1000};
    uint64_t before;

    before = tse_stats_uptime(s);
    assert_true(before <= 1);
    nanosleep(&pause, NULL);
    assert_true(tse_stats_uptime(s) >= 1);
    assert_true(tse_stats_uptime(s) <= before + 3);
}

/* Each test gets a fresh tse_stats, destroyed even when the test fails. */
static int stats_setup(void **state)
{
    *state = tse_stats_create();
    return *state != NULL ? 0 : -1;
}

static int stats_teardown(void **state)
{
    tse_stats_destroy(*state);
    return 0;
}

#define FRESH(f) cmocka_unit_test_setup_teardown(f, stats_setup, stats_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FRESH(fresh_stats_are_zero),
        cmocka_unit_test(destroy_null_is_a_noop),
        FRESH(counters_are_independent),
        FRESH(gauge_goes_up_and_down),
        FRESH(concurrent_adds_give_exact_totals),
        FRESH(no_types_until_one_is_counted),
        FRESH(each_type_is_counted_separately),
        FRESH(counted_type_name_is_copied),
        FRESH(concurrent_first_seen_type_gets_one_slot),
        FRESH(reading_types_while_they_are_inserted_is_safe),
        FRESH(types_past_the_bound_fold_into_other),
        FRESH(uniform_latencies_give_expected_percentiles),
        FRESH(small_latencies_are_exact),
        cmocka_unit_test(single_value_is_reported_within_resolution),
        FRESH(p99_ignores_the_last_percent),
        FRESH(zero_median_is_reported_as_zero),
        FRESH(negative_latency_counts_as_zero),
        FRESH(concurrent_records_keep_count_and_max),
        cmocka_unit_test(histogram_bounds_ascend),
        FRESH(histogram_counts_each_value_at_or_below_its_bound),
        FRESH(histograms_are_independent),
        cmocka_unit_test(histogram_null_is_harmless),
        FRESH(concurrent_observes_stay_cumulative_and_exact),
        FRESH(uptime_counts_seconds_since_create),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
