/*
 * bench_sdk_publish.c - load generator for the client SDK's pipelined
 * publish (tse_client_publisher), to compare with bench_publish's raw
 * PublishStream figure in the same run (issue 5: the SDK must reach 90 % of
 * it).
 *
 * Shape: P publishers, each on its own client (so its own TCP connection,
 * as bench_publish's --connections spreads its streams), each fed by its own
 * thread that publishes one prebuilt event in a loop for the warm-up plus
 * the measured interval. The event is the same as bench_publish's stream
 * mode: type "bench.event", source "bench-publish", a Struct `data` of three
 * string fields (sample_id, lab, note) whose note is grown until the Struct
 * packs to --payload-bytes (with --types N, N such events of the types
 * bench_types.h names, each publisher taking them in turn). By default every event carries an
 * SDK-made client id (the SDK's default, which makes resends idempotent); with
 * --server-ids the server assigns them, as bench_publish does without --ids.
 *
 * Invariants: a measurement counts only callbacks with status OK and a
 * stream id, completed between the end of the warm-up and the end of the
 * interval; any other outcome is an error, counted and reported, and makes
 * the exit status 1. After the interval the publishers are flushed (30 s at
 * most) so every event is accounted for.
 *
 * Output: human-readable lines on stderr, one machine-readable line on
 * stdout: "RESULT mode=sdk-stream ... events=... errors=... rate=...".
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_types.h"
#include "google/protobuf/struct.pb-c.h"
#include "tracseq/client.h"

#define MAX_PUBLISHERS 64

typedef struct options {
    const char *target;
    double duration_s, warmup_s;
    int publishers, window, payload_bytes, types;
    bool server_ids;
    const char *label;
} options;

typedef struct bench {
    options opt;
    int64_t t_start, t_measure, t_end;
    atomic_llong ok_measured, ok_total, errors;
    pthread_mutex_t error_mu;
    char first_error[TSE_CLIENT_ERROR_MESSAGE_MAX];
    tse_client_event *events[BENCH_TYPES_MAX]; /* one per type, taken in turn */
    size_t data_len;
    tse_client *client; /* one client: its publishers share one thread */
} bench;

typedef struct lane {
    bench *b;
    tse_client_publisher *pub;
    pthread_t feeder;
    long long published;
} lane;

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_sdk_publish [options]\n"
            "  --target HOST:PORT     service address (default 127.0.0.1:50051)\n"
            "  --duration S           measured seconds (default 10)\n"
            "  --warmup S             seconds before measuring (default 1)\n"
            "  --publishers P         publishers of one client, a connection each (default 4)\n"
            "  --window W             unanswered events per publisher (default 1024)\n"
            "  --payload-bytes B      packed size of the Struct `data` (default 300)\n"
            "  --server-ids           let the server assign ids (no client ids)\n"
            "  --types N              events take N types in turn, spread over the cluster's\n"
            "                         slot space (bench_types.h), 1..32 (default 1: bench.event)\n"
            "  --label TEXT           extra label printed in the RESULT line\n");
}

static bool parse_options(options *o, int argc, char **argv)
{
    *o = (options){"127.0.0.1:50051", 10, 1, 4, 1024, 300, 1, false, ""};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(k, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(k, "--server-ids") == 0) {
            o->server_ids = true;
            continue;
        } else if (v == NULL)
            return false;
        else if (strcmp(k, "--target") == 0)
            o->target = v;
        else if (strcmp(k, "--label") == 0)
            o->label = v;
        else if (strcmp(k, "--duration") == 0)
            o->duration_s = atof(v);
        else if (strcmp(k, "--warmup") == 0)
            o->warmup_s = atof(v);
        else if (strcmp(k, "--publishers") == 0)
            o->publishers = atoi(v);
        else if (strcmp(k, "--window") == 0)
            o->window = atoi(v);
        else if (strcmp(k, "--payload-bytes") == 0)
            o->payload_bytes = atoi(v);
        else if (strcmp(k, "--types") == 0)
            o->types = atoi(v);
        else
            return false;
        i++;
    }
    return o->duration_s > 0 && o->warmup_s >= 0 && o->publishers >= 1 &&
           o->publishers <= MAX_PUBLISHERS && o->window >= 1 && o->payload_bytes >= 16 &&
           o->types >= 1 && o->types <= BENCH_TYPES_MAX;
}

static void record_error(bench *b, const char *what)
{
    pthread_mutex_lock(&b->error_mu);
    if (atomic_fetch_add(&b->errors, 1) == 0)
        snprintf(b->first_error, sizeof(b->first_error), "%s", what);
    pthread_mutex_unlock(&b->error_mu);
}

/* ============================== the event ================================= */

/* The filler length that makes bench_publish's Struct pack to target. */
static size_t filler_for(int target, size_t *data_len)
{
    static const char *keys[] = {"sample_id", "lab", "note"};
    const char *values[3] = {"S-000042", "genomics-3", ""};
    Google__Protobuf__Struct__FieldsEntry entries[3], *ep[3];
    Google__Protobuf__Value vals[3];
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    char *filler = calloc((size_t)target + 1, 1);
    size_t fill = 0;

    values[2] = filler;
    for (int i = 0; i < 3; i++) {
        google__protobuf__value__init(&vals[i]);
        vals[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        vals[i].string_value = (char *)values[i];
        google__protobuf__struct__fields_entry__init(&entries[i]);
        entries[i].key = (char *)keys[i];
        entries[i].value = &vals[i];
        ep[i] = &entries[i];
    }
    data.n_fields = 3;
    data.fields = ep;
    while (protobuf_c_message_get_packed_size(&data.base) < (size_t)target &&
           fill < (size_t)target) {
        filler[fill] = (char)('a' + fill % 26);
        fill++;
    }
    *data_len = protobuf_c_message_get_packed_size(&data.base);
    free(filler);
    return fill;
}

/* The events, one per type (bench_types.h names them). */
static bool build_events(bench *b)
{
    char names[BENCH_TYPES_MAX][BENCH_TYPE_LEN];
    size_t fill = filler_for(b->opt.payload_bytes, &b->data_len);
    char *note = calloc(fill + 1, 1), *text;
    json_t *j;
    tse_client_error err;
    tse_client_status st = TSE_CLIENT_OK;

    if (!bench_type_names("bench.event", b->opt.types, names) || note == NULL) {
        free(note);
        return false;
    }
    for (size_t i = 0; i < fill; i++)
        note[i] = (char)('a' + i % 26);
    j = json_pack("{s:s,s:s,s:s}", "sample_id", "S-000042", "lab", "genomics-3", "note", note);
    text = json_dumps(j, JSON_COMPACT);
    for (int t = 0; t < b->opt.types && st == TSE_CLIENT_OK; t++) {
        st = tse_client_event_from_json(names[t], text, NULL, &b->events[t], &err);
        if (st != TSE_CLIENT_OK)
            fprintf(stderr, "bench_sdk_publish: %s\n", err.message);
    }
    free(text);
    json_decref(j);
    free(note);
    return st == TSE_CLIENT_OK;
}

/* ============================== the run =================================== */

static void on_result(void *arg, const tse_client_publish_outcome *o)
{
    bench *b = arg;
    int64_t t = now_ns();

    if (o->status != TSE_CLIENT_OK) {
        record_error(b, o->error->message);
        return;
    }
    if (o->result->stream_id[0] == '\0') {
        record_error(b, "response without stream_id");
        return;
    }
    atomic_fetch_add(&b->ok_total, 1);
    if (t >= b->t_measure && t <= b->t_end)
        atomic_fetch_add(&b->ok_measured, 1);
}

static void *feeder_main(void *arg)
{
    lane *l = arg;
    tse_client_error err;

    while (now_ns() < l->b->t_end) {
        const tse_client_event *ev = l->b->events[l->published % l->b->opt.types];
        if (tse_client_publisher_publish(l->pub, ev, NULL, &err) != TSE_CLIENT_OK) {
            record_error(l->b, err.message);
            break;
        }
        l->published++;
    }
    return NULL;
}

static bool lane_open(bench *b, lane *l)
{
    tse_client_options co = {
        .target = b->opt.target, .source_service = "bench-publish", .timeout_ms = 30000};
    tse_client_publisher_options po = {.window = b->opt.window,
                                       .server_assigned_ids = b->opt.server_ids};
    tse_client_error err;

    l->b = b;
    if ((b->client == NULL && tse_client_connect(&co, &b->client, &err) != TSE_CLIENT_OK) ||
        tse_client_publisher_create(b->client, &po, on_result, b, &l->pub, &err) != TSE_CLIENT_OK) {
        fprintf(stderr, "bench_sdk_publish: %s\n", err.message);
        return false;
    }
    return true;
}

/* Waits until the service answers, so connection setup is not measured. */
static bool wait_ready(bench *b)
{
    for (int i = 0; i < 50; i++) {
        tse_client_serving s;
        if (tse_client_health(b->client, NULL, &s, NULL) == TSE_CLIENT_OK)
            return true;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void report(bench *b, double wall_s, long long published)
{
    const options *o = &b->opt;
    double secs = (double)(b->t_end - b->t_measure) / 1e9;
    long long ok = atomic_load(&b->ok_measured), errors = atomic_load(&b->errors);
    double rate = secs > 0 ? (double)ok / secs : 0;
    /* PublishRequest header + id field (unless server ids) + source field + event. */
    size_t request = 3 + (o->server_ids ? 0 : 38) + 2 + strlen("bench-publish") +
                     tse_client_event_size(b->events[0]);

    fprintf(stderr,
            "sdk-stream: %lld events in %.2f s measured = %.0f events/s; errors %lld%s%s%s\n", ok,
            secs, rate, errors, errors ? " (first: " : "", errors ? b->first_error : "",
            errors ? ")" : "");
    printf(
        "RESULT mode=sdk-stream%s%s events=%lld errors=%lld seconds=%.3f rate=%.1f "
        "publishers=%d window=%d connections=%d types=%d ids=%d request_bytes=%zu data_bytes=%zu "
        "total_ok=%lld published=%lld client_cpu_pct=%.0f\n",
        o->label[0] ? " label=" : "", o->label, ok, errors, secs, rate, o->publishers, o->window,
        o->publishers, o->types, o->server_ids ? 0 : 1, request, b->data_len,
        (long long)atomic_load(&b->ok_total), published,
        wall_s > 0 ? 100.0 * cpu_seconds() / wall_s : 0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static bench b = {.error_mu = PTHREAD_MUTEX_INITIALIZER};
    static lane lanes[MAX_PUBLISHERS];
    long long published = 0;
    int n = 0, rc = 1;
    tse_client_error err;

    if (!parse_options(&b.opt, argc, argv)) {
        usage(stderr);
        return 2;
    }
    if (!build_events(&b))
        goto out;
    for (n = 0; n < b.opt.publishers; n++)
        if (!lane_open(&b, &lanes[n]))
            goto out;
    if (!wait_ready(&b)) {
        fprintf(stderr, "bench_sdk_publish: cannot reach %s\n", b.opt.target);
        goto out;
    }
    b.t_start = now_ns();
    b.t_measure = b.t_start + (int64_t)(b.opt.warmup_s * 1e9);
    b.t_end = b.t_measure + (int64_t)(b.opt.duration_s * 1e9);
    for (int i = 0; i < n; i++)
        pthread_create(&lanes[i].feeder, NULL, feeder_main, &lanes[i]);
    for (int i = 0; i < n; i++) {
        pthread_join(lanes[i].feeder, NULL);
        published += lanes[i].published;
    }
    for (int i = 0; i < n; i++)
        if (tse_client_publisher_flush(lanes[i].pub, 30000, &err) != TSE_CLIENT_OK)
            record_error(&b, err.message);
    report(&b, (double)(now_ns() - b.t_start) / 1e9, published);
    rc = atomic_load(&b.errors) == 0 && atomic_load(&b.ok_measured) > 0 ? 0 : 1;
out:
    for (int i = 0; i < b.opt.publishers; i++) /* unopened lanes hold NULLs */
        tse_client_publisher_destroy(lanes[i].pub);
    tse_client_destroy(b.client);
    for (int t = 0; t < BENCH_TYPES_MAX; t++)
        tse_client_event_destroy(b.events[t]);
    return rc;
}
