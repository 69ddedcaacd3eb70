/*
 * bench_obs.c - what the latency histograms add to the hot paths (issue
 * 15.3): one tse_histogram_observe (what a publish, a Redis reply and a
 * first delivery each pay), from one thread and from two threads observing
 * the same histogram at once; the older tse_stats_record_latency (the
 * quantiles, still kept) beside it; and tse_pbscan_timestamp on a packed
 * Event with a 300-byte payload (how the delivery engine reads an event's
 * publish time, once per delivery).
 *
 *   build/bench/bench_obs [iterations]     default 20,000,000
 *
 * Prints nanoseconds per operation. The two-thread figure is per
 * observation of each thread (both run at once).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/pbscan.h"
#include "obs/histogram.h"
#include "obs/stats.h"
#include "tracseq/events/v1/event.pb-c.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct job {
    tse_histogram *h;
    long n;
    double seconds;
} job;

static void *observe_loop(void *arg)
{
    job *j = arg;
    double t0 = now_s();

    for (long i = 0; i < j->n; i++)
        tse_histogram_observe(j->h, 100 + (i & 1023)); /* 100 us .. 1.1 ms */
    j->seconds = now_s() - t0;
    return NULL;
}

static void observe_threads(tse_histogram *h, long n, int threads)
{
    pthread_t t[2];
    job j[2];
    double worst = 0;

    for (int i = 0; i < threads; i++) {
        j[i] = (job){.h = h, .n = n};
        pthread_create(&t[i], NULL, observe_loop, &j[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (j[i].seconds > worst)
            worst = j[i].seconds;
    }
    printf("tse_histogram_observe, %d thread%s: %.1f ns\n", threads, threads > 1 ? "s" : "",
           worst * 1e9 / (double)n);
}

static size_t packed_event(uint8_t **out)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry entry = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *entries[] = {&entry};
    Google__Protobuf__Value value = GOOGLE__PROTOBUF__VALUE__INIT;
    char text[301];
    size_t len;

    memset(text, 'x', 300);
    text[300] = '\0';
    value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    value.string_value = text;
    entry.key = "blob";
    entry.value = &value;
    data.n_fields = 1;
    data.fields = entries;
    ev.id = "6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10";
    ev.event_type = "bench.obs";
    ev.source_service = "bench";
    ts.seconds = 1718700000;
    ts.nanos = 5000000;
    ev.timestamp = &ts;
    ev.priority = 3;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    len = tracseq__events__v1__event__get_packed_size(&ev);
    *out = malloc(len);
    if (*out == NULL)
        exit(1);
    tracseq__events__v1__event__pack(&ev, *out);
    return len;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    tse_stats *stats = tse_stats_create();
    uint8_t *envelope;
    size_t len = packed_event(&envelope);
    int64_t sec, sum = 0;
    int32_t nanos;
    double t0;

    if (stats == NULL || n <= 0)
        return 1;
    observe_threads(tse_stats_histogram(stats, TSE_HIST_PUBLISH), n, 1);
    observe_threads(tse_stats_histogram(stats, TSE_HIST_REDIS_RTT), n, 2);
    t0 = now_s();
    for (long i = 0; i < n; i++)
        tse_stats_record_latency(stats, 100 + (i & 1023));
    printf("tse_stats_record_latency (quantiles), 1 thread: %.1f ns\n",
           (now_s() - t0) * 1e9 / (double)n);
    t0 = now_s();
    for (long i = 0; i < n; i++) {
        if (tse_pbscan_timestamp(envelope, len, 5, &sec, &nanos))
            sum += sec + nanos;
    }
    printf("tse_pbscan_timestamp on a %zu-byte Event: %.1f ns (%lld)\n", len,
           (now_s() - t0) * 1e9 / (double)n, (long long)(sum / n));
    free(envelope);
    tse_stats_destroy(stats);
    return 0;
}
