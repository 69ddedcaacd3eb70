/*
 * bench_subscribe.c - load generator for the event service's delivery path
 * (Subscribe with explicit acks), on the client SDK's asynchronous raw-bytes
 * API (tse_client_stream_* and tse_client_call_*: the one client runtime of
 * the tree, as in bench_publish). Two SDK clients keep the publishers and
 * the subscribers on connections of their own (--connections,
 * --sub-connections); each client's one call thread runs the handlers of its
 * calls. Latency mode with --publisher stream uses one client instead, with
 * two connections (the paced stream on one, the subscriber on the other):
 * gRPC polls every connection of a process from one thread at a time, so
 * with two clients a response read by one client's thread was often handed
 * to the other's, one more wake-up per event in the generator on two
 * shared cores. The unary helper calls (CreateSubscription,
 * GetSubscription, GetStats, DeleteSubscription) are started the same way
 * and waited for between phases.
 *
 * Modes:
 *   latency  Events published at a fixed rate whatever the responses (open
 *            loop: a launcher thread sleeps until each event is due, as in
 *            bench_publish), one unary Publish call each or, with
 *            --publisher stream, one message each on a single PublishStream;
 *            one subscriber acks in batches. Every event's subject carries
 *            "<sequence>:<monotonic send ns>"; end-to-end latency is delivery
 *            time minus the time the event was due (so a late generator
 *            counts against the result), also reported from the actual send.
 *   drain    A backlog of --count events published with PublishStream while
 *            the subscription has no subscriber, then one Subscribe stream
 *            (or --subscribers M, sharing the subscription) drains it with
 *            max_in_flight K; the rate is events over the time from opening
 *            the streams to the last delivery. With --pid (and --redis-pid),
 *            the CPU those processes spent per delivered event over the
 *            drain alone.
 *   fanout   S subscriptions x M subscribers held open at once; reads the
 *            service's VmRSS idle before, with the streams open and after a
 *            burst of --count events, the service's and Redis's CPU while the
 *            streams sit idle, and counts each stream's deliveries.
 *
 * Several types and instances: with --types N the events take N types in
 * turn, named so that they fall in N equal parts of Redis Cluster's slot
 * space (bench_types.h), and each subscription lists the N types, so its
 * reads span every master of a cluster. With --sub-target A,B,... the
 * subscriber connections go to those service instances in turn (the
 * publishers and unary helper calls keep --target): events published
 * through one instance are delivered through others, as several instances
 * sharing one Redis (or cluster) must.
 *
 * Acks: a subscriber queues the ack id of each delivery and sends one
 * SubscribeRequest{ack} when --ack-batch ids are queued or the oldest has
 * waited --ack-delay-ms, with one send on its way per stream
 * (tse_client_stream_busy); ids queued meanwhile go with the next send.
 * Acks that fell due go out from the handler of the next delivery; the
 * main thread sends those left when deliveries pause, at most ACK_GRACE_NS
 * after they fell due (waking it for every ack batch cost two wake-ups per
 * batch). With --hold-acks (fanout) nothing is
 * acked until every expected delivery arrived, so the service's credit
 * limit alone decides who gets what.
 *
 * Invariants: every delivery is checked (decodable, a sequence this run
 * published, delivery_attempt 1, once per subscription); a stream that ends
 * before the bench cancels it, a failed publish, a lost, duplicated or
 * redelivered event, or a subscription still holding pending entries after
 * the acks were sent is an error, and any error makes the exit status 1.
 *
 * Threads: the SDK clients' call threads run every handler; the main thread
 * drives the phases, sends the acks that fall due and waits; in latency
 * mode a launcher thread starts the publishes. They share the run's state
 * under `mu`: handlers hold it while they run (the SDK never calls a
 * handler while holding a lock of its own, so handlers may start, send and
 * cancel under it), and the main thread holds it except while it waits.
 * The launcher starts its calls and the sends of its paced stream outside
 * it, touching only atomics (`live_unary`, `launched`, `launch_done`), its
 * own buffer and the paced stream's handle. The error record has its own
 * mutex.
 *
 * Output: human-readable lines on stderr, one machine-readable line on
 * stdout: "RESULT mode=... key=value ...".
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_probe.h"
#include "bench_types.h"
#include "google/protobuf/struct.pb-c.h"
#include "tracseq/client.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

#define SERVICE                "/tracseq.events.v1.EventService/"
#define METHOD_PUBLISH         SERVICE "Publish"
#define METHOD_PUBLISH_STREAM  SERVICE "PublishStream"
#define METHOD_SUBSCRIBE       SERVICE "Subscribe"
#define METHOD_CREATE_SUB      SERVICE "CreateSubscription"
#define METHOD_GET_SUB         SERVICE "GetSubscription"
#define METHOD_DELETE_SUB      SERVICE "DeleteSubscription"
#define METHOD_GET_STATS       SERVICE "GetStats"
#define MAX_CONNECTIONS        64    /* the SDK's channels per client */
#define MAX_WINDOW             4000  /* the server stops reading at 4096 unanswered */
#define STREAMS_PER_CONNECTION 900   /* the server allows 1000 concurrent streams */
#define ACK_DEADLINE_MS        60000 /* no redelivery within a run */
#define TICK_NS                (20LL * 1000000LL)
#define ACK_GRACE_NS           (4LL * 1000000LL) /* see "Acks" above */
#define SEC_NS                 1000000000LL
#define MAX_PIDS               16 /* --pid, --redis-pid, --sub-target entries */
#define TARGET_LEN             128

typedef Tracseq__Events__V1__Subscription Subscription;

/* ============================== settings ================================== */

typedef enum mode { MODE_LATENCY, MODE_DRAIN, MODE_FANOUT } mode;

typedef struct options {
    const char *target;
    mode mode;
    const char *name;       /* subscription name (prefix with several) */
    const char *event_type; /* NULL: one per mode */
    double duration_s, warmup_s, rate;
    long long count;
    int connections;     /* publisher connections */
    int sub_connections; /* subscriber connections (0: enough for the streams) */
    int pub_streams, window;
    int max_in_flight; /* 0: the server's default */
    int per_message;   /* max_deliveries_per_message (0: not sent, one per message) */
    int ack_batch;
    int ack_max; /* ack ids per message at most: the service's MAX_ACK_IDS */
    double ack_delay_ms;
    int subscriptions, subscribers;
    bool hold_acks;
    int payload_bytes;
    int types; /* event types, taken in turn (bench_types.h) */
    /* subscriber connections' targets, in turn (--sub-target; none: target) */
    char sub_targets[MAX_PIDS][TARGET_LEN];
    int n_sub_targets;
    /* service processes (VmRSS: the first; CPU: all summed) and Redis
     * processes (CPU summed) */
    int pids[MAX_PIDS], n_pids;
    int redis_pids[MAX_PIDS], n_redis_pids;
    double idle_s;
    double stall_s; /* give up when nothing arrives for this long */
    const char *label;
    const char *trace;     /* latency: per-event figures written here */
    bool stream_publisher; /* latency: one paced PublishStream, not unary calls */
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_subscribe [options]\n"
            "  --target HOST:PORT     service address (default 127.0.0.1:50051)\n"
            "  --mode M               latency | drain | fanout (default latency)\n"
            "  --name NAME            subscription name, or prefix (default bench-sub-<pid>)\n"
            "  --event-type T         event type published (default bench.sub_<mode>)\n"
            "  --max-in-flight K      subscription max_in_flight (default 0: the server's)\n"
            "  --per-message N        batched delivery: max_deliveries_per_message of each\n"
            "                         Subscribe, 0..1000 (default 0: not sent, one per message)\n"
            "  --ack-batch N          ack ids per ack message (default 64)\n"
            "  --ack-max N            ack ids in one message at most, the service's\n"
            "                         MAX_ACK_IDS (default 1000); more queued while a\n"
            "                         send was on its way go in the next messages\n"
            "  --ack-delay-ms MS      longest an ack waits for its batch (default 1)\n"
            "  --payload-bytes B      packed size of the Struct `data` payload (default 300)\n"
            "  --connections N        publisher TCP connections (default 4)\n"
            "  --types N              events take N types in turn, spread over the cluster's\n"
            "                         slot space (bench_types.h), 1..32 (default 1)\n"
            "  --sub-target A[,B...]  subscriber connections go to these instances in turn\n"
            "                         (default: --target)\n"
            "  --sub-connections N    subscriber TCP connections (default: 1 per %d streams)\n"
            "  --stall S              give up after S seconds without progress (default 10)\n"
            "  --label TEXT           extra label printed in the RESULT line\n"
            "  --trace FILE           latency: per event \"seq due_ms publish_us delivery_us\"\n"
            " latency: --rate R (5000/s)  --duration S (10)  --warmup S (1)\n"
            "          --publisher unary|stream (unary: a Publish call per event)\n"
            " drain:   --count N (300000)  --pub-streams K (4)  --window W (1024)\n"
            "          --subscribers M streams sharing the subscription (1)\n"
            "          --pid PID[,PID...] --redis-pid PID[,PID...] (CPU per delivery)\n"
            " fanout:  --subscriptions S (10)  --subscribers M per subscription (100)\n"
            "          --count N events (2000)  --hold-acks  --idle S (2)\n"
            "          --pid PID (service: VmRSS, CPU)  --redis-pid PID[,PID...] (CPU)\n",
            STREAMS_PER_CONNECTION);
}

/* A numeric option: where it goes in `options` and its bounds. */
typedef struct num_option {
    const char *key;
    char kind; /* 'i' int, 'l' long long, 'd' double */
    size_t offset;
    double min, max;
} num_option;

static const num_option num_options[] = {
    {"--duration", 'd', offsetof(options, duration_s), 0.1, 3600},
    {"--warmup", 'd', offsetof(options, warmup_s), 0, 600},
    {"--rate", 'd', offsetof(options, rate), 1, 1e6},
    {"--count", 'l', offsetof(options, count), 1, 1e9},
    {"--connections", 'i', offsetof(options, connections), 1, MAX_CONNECTIONS},
    {"--sub-connections", 'i', offsetof(options, sub_connections), 1, MAX_CONNECTIONS},
    {"--pub-streams", 'i', offsetof(options, pub_streams), 1, 256},
    {"--window", 'i', offsetof(options, window), 1, MAX_WINDOW},
    {"--max-in-flight", 'i', offsetof(options, max_in_flight), 0, 10000},
    {"--per-message", 'i', offsetof(options, per_message), 0, 1000},
    {"--ack-batch", 'i', offsetof(options, ack_batch), 1, 10000},
    {"--ack-max", 'i', offsetof(options, ack_max), 1, 100000},
    {"--ack-delay-ms", 'd', offsetof(options, ack_delay_ms), 0, 10000},
    {"--subscriptions", 'i', offsetof(options, subscriptions), 1, 1000},
    {"--subscribers", 'i', offsetof(options, subscribers), 1, 10000},
    {"--payload-bytes", 'i', offsetof(options, payload_bytes), 16, 1 << 20},
    {"--types", 'i', offsetof(options, types), 1, BENCH_TYPES_MAX},
    {"--idle", 'd', offsetof(options, idle_s), 0, 600},
    {"--stall", 'd', offsetof(options, stall_s), 0.1, 600},
};

static bool parse_number(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_numeric(options *o, const char *key, const char *value)
{
    for (size_t i = 0; i < sizeof(num_options) / sizeof(num_options[0]); i++) {
        const num_option *n = &num_options[i];
        char *field = (char *)o + n->offset;
        double v;
        if (strcmp(key, n->key) != 0)
            continue;
        if (!parse_number(value, n->min, n->max, &v))
            return false;
        if (n->kind == 'i')
            *(int *)field = (int)v;
        else if (n->kind == 'l')
            *(long long *)field = (long long)v;
        else
            *(double *)field = v;
        return true;
    }
    return false;
}

/* A comma-separated list of process ids into pids; false when one is bad
 * or there are more than MAX_PIDS. */
static bool parse_pids(const char *value, int *pids, int *n)
{
    const char *at = value;

    *n = 0;
    do {
        char *end;
        long v;
        errno = 0;
        v = strtol(at, &end, 10);
        if (errno != 0 || end == at || v < 1 || v > (1 << 30) || *n == MAX_PIDS ||
            (*end != ',' && *end != '\0'))
            return false;
        pids[(*n)++] = (int)v;
        at = *end == ',' ? end + 1 : end;
    } while (*at != '\0');
    return true;
}

/* A comma-separated list of HOST:PORT into o->sub_targets. */
static bool parse_sub_targets(options *o, const char *value)
{
    const char *at = value;

    o->n_sub_targets = 0;
    while (*at != '\0') {
        size_t len = strcspn(at, ",");
        if (len == 0 || len >= TARGET_LEN || o->n_sub_targets == MAX_PIDS)
            return false;
        memcpy(o->sub_targets[o->n_sub_targets], at, len);
        o->sub_targets[o->n_sub_targets++][len] = '\0';
        at += len + (at[len] == ',');
    }
    return o->n_sub_targets > 0;
}

/* Parses one "--key value" pair; false on an unknown key or a bad value. */
static bool parse_option(options *o, const char *key, const char *value)
{
    if (strcmp(key, "--target") == 0)
        o->target = value;
    else if (strcmp(key, "--sub-target") == 0)
        return parse_sub_targets(o, value);
    else if (strcmp(key, "--pid") == 0)
        return parse_pids(value, o->pids, &o->n_pids);
    else if (strcmp(key, "--redis-pid") == 0)
        return parse_pids(value, o->redis_pids, &o->n_redis_pids);
    else if (strcmp(key, "--name") == 0)
        o->name = value;
    else if (strcmp(key, "--event-type") == 0)
        o->event_type = value;
    else if (strcmp(key, "--label") == 0)
        o->label = value;
    else if (strcmp(key, "--trace") == 0)
        o->trace = value;
    else if (strcmp(key, "--publisher") == 0) {
        if (strcmp(value, "stream") != 0 && strcmp(value, "unary") != 0)
            return false;
        o->stream_publisher = strcmp(value, "stream") == 0;
    } else if (strcmp(key, "--mode") == 0) {
        if (strcmp(value, "latency") == 0)
            o->mode = MODE_LATENCY;
        else if (strcmp(value, "drain") == 0)
            o->mode = MODE_DRAIN;
        else if (strcmp(value, "fanout") == 0)
            o->mode = MODE_FANOUT;
        else
            return false;
    } else
        return parse_numeric(o, key, value);
    return true;
}

static const char *mode_name(mode m)
{
    switch (m) {
    case MODE_LATENCY: return "latency";
    case MODE_DRAIN: return "drain";
    case MODE_FANOUT: return "fanout";
    }
    return "?";
}

/* Fills what depends on the mode; false when the options do not fit. */
static bool settle_options(options *o)
{
    static char name[64], type[64];

    if (o->count == 0)
        o->count = o->mode == MODE_DRAIN ? 300000 : 2000;
    /* Fanout's default is 100 streams a subscription; drain's one (more
     * when asked: they share the subscription); latency's always one. */
    if (o->subscribers == 0)
        o->subscribers = o->mode == MODE_FANOUT ? 100 : 1;
    if (o->mode != MODE_FANOUT)
        o->subscriptions = 1;
    if (o->mode == MODE_LATENCY)
        o->subscribers = 1;
    if (o->name == NULL) {
        snprintf(name, sizeof(name), "bench-sub-%d", (int)getpid());
        o->name = name;
    }
    if (o->event_type == NULL) {
        snprintf(type, sizeof(type), "bench.sub_%s", mode_name(o->mode));
        o->event_type = type;
    }
    if (o->sub_connections == 0) {
        int streams = o->subscriptions * o->subscribers;
        o->sub_connections = (streams + STREAMS_PER_CONNECTION - 1) / STREAMS_PER_CONNECTION;
        if (o->sub_connections < o->n_sub_targets) /* at least one per instance */
            o->sub_connections = o->n_sub_targets;
    }
    if (o->subscriptions * o->subscribers > o->sub_connections * STREAMS_PER_CONNECTION) {
        fprintf(stderr, "bench_subscribe: more than %d streams per connection\n",
                STREAMS_PER_CONNECTION);
        return false;
    }
    return true;
}

static bool parse_options(options *o, int argc, char **argv)
{
    *o = (options){.target = "127.0.0.1:50051",
                   .mode = MODE_LATENCY,
                   .duration_s = 10,
                   .warmup_s = 1,
                   .rate = 5000,
                   .connections = 4,
                   .pub_streams = 4,
                   .window = 1024,
                   .ack_batch = 64,
                   .ack_max = 1000,
                   .ack_delay_ms = 1,
                   .subscriptions = 10,
                   .types = 1,
                   .payload_bytes = 300,
                   .idle_s = 2,
                   .stall_s = 10,
                   .label = ""};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--hold-acks") == 0) {
            o->hold_acks = true;
            continue;
        }
        if (i + 1 >= argc || !parse_option(o, argv[i], argv[i + 1])) {
            fprintf(stderr, "bench_subscribe: bad option '%s'\n", argv[i]);
            usage(stderr);
            return false;
        }
        i++;
    }
    return settle_options(o);
}

/* ============================== clock and /proc =========================== */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC_NS + ts.tv_nsec;
}

/* VmRSS of a process in kB; 0 when unknown (no pid, or it is gone). */
static long vmrss_kb(int pid)
{
    char path[64], line[256];
    long kb = 0;
    FILE *f;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* CPU time of a process (all threads), in clock ticks; 0 when unknown. */
static long long cpu_ticks(int pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    const char *p;
    size_t n;
    FILE *f;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields count from its ')'. */
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (long long)(ut + st);
}

/* The CPU time of n processes, summed, in clock ticks. */
static long long cpu_ticks_all(const int *pids, int n)
{
    long long sum = 0;

    for (int i = 0; i < n; i++)
        sum += cpu_ticks(pids[i]);
    return sum;
}

/* CPU seconds (user + system) this process used so far. */
static double own_cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Times this process's threads went to sleep (voluntary context switches):
 * each is a wake-up later, the generator's own share of the scheduling. */
static long own_sleeps(void)
{
    struct rusage ru;

    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_nvcsw : 0;
}

/* ============================== protobuf wire ============================= */

/*
 * Deliveries are read straight off the wire: only the ack id, the attempt
 * and the event's subject matter here, and decoding the whole Event (with
 * its Struct payload) would cost the load generator more CPU than the
 * server spends sending it.
 */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static bool bytes_put(bytes *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        uint8_t *p;
        while (cap < b->len + n)
            cap *= 2;
        if ((p = realloc(b->p, cap)) == NULL)
            return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return true;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* Appends a length-delimited field (tag byte, length, data). */
static bool bytes_put_field(bytes *b, uint8_t tag, const void *data, size_t n)
{
    uint8_t head[11];
    size_t h;

    head[0] = tag;
    h = 1 + put_varint(head + 1, n);
    return bytes_put(b, head, h) && bytes_put(b, data, n);
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;

    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t c = *(*p)++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* One field of a message: its number and either a value or bytes. */
typedef struct wire_field {
    uint32_t num;
    uint64_t value;
    const uint8_t *data;
    size_t len;
} wire_field;

/* Reads the field at *p; false at the end or on malformed input. */
static bool wire_next(const uint8_t **p, const uint8_t *end, wire_field *f)
{
    uint64_t key, n;

    if (*p >= end || !get_varint(p, end, &key))
        return false;
    f->num = (uint32_t)(key >> 3);
    f->data = NULL;
    f->len = 0;
    switch (key & 7) {
    case 0: return get_varint(p, end, &f->value);
    case 1: n = 8; break;
    case 5: n = 4; break;
    case 2:
        if (!get_varint(p, end, &n))
            return false;
        break;
    default: return false;
    }
    if ((uint64_t)(end - *p) < n)
        return false;
    f->data = *p;
    f->len = (size_t)n;
    *p += n;
    return true;
}

/* What the bench reads of a Delivery. */
typedef struct delivery_view {
    const uint8_t *ack_id;
    size_t ack_len;
    uint64_t attempt;
    const uint8_t *subject;
    size_t subject_len;
} delivery_view;

static bool find_subject(const uint8_t *p, const uint8_t *end, delivery_view *v)
{
    wire_field f;

    while (wire_next(&p, end, &f))
        if (f.num == 8 && f.data != NULL) {
            v->subject = f.data;
            v->subject_len = f.len;
        }
    return p == end;
}

static bool parse_delivery(const uint8_t *p, size_t len, delivery_view *v)
{
    const uint8_t *end = p + len;
    wire_field f;

    memset(v, 0, sizeof(*v));
    while (wire_next(&p, end, &f)) {
        if (f.num == 1 && f.data != NULL) {
            v->ack_id = f.data;
            v->ack_len = f.len;
        } else if (f.num == 2 && f.data == NULL)
            v->attempt = f.value;
        else if (f.num == 3 && f.data != NULL && !find_subject(f.data, f.data + f.len, v))
            return false;
    }
    return p == end && v->ack_id != NULL && v->ack_len > 0 && v->subject != NULL;
}

/* "<sequence>:<send ns>" */
static bool parse_subject(const delivery_view *v, long long *seq, int64_t *sent)
{
    char buf[64];
    char *end;

    if (v->subject_len == 0 || v->subject_len >= sizeof(buf))
        return false;
    memcpy(buf, v->subject, v->subject_len);
    buf[v->subject_len] = '\0';
    *seq = strtoll(buf, &end, 10);
    if (*end != ':')
        return false;
    *sent = strtoll(end + 1, &end, 10);
    return *end == '\0' && *seq >= 0;
}

/* ============================== event bytes =============================== */

/*
 * The published event, packed once without its subject. Protobuf lets a
 * field come before the others, so each request is the subject field
 * followed by these bytes: no per-event repacking.
 */
typedef struct event_bytes {
    uint8_t *event;
    size_t event_len;
    size_t data_len; /* packed size of the Struct `data` */
} event_bytes;

static bool event_bytes_init(event_bytes *e, const char *type, int target)
{
    Google__Protobuf__Struct__FieldsEntry entry = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    Google__Protobuf__Struct__FieldsEntry *entries[1] = {&entry};
    Google__Protobuf__Value value = GOOGLE__PROTOBUF__VALUE__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    char *text = calloc((size_t)target + 1, 1);
    size_t n = 0;

    memset(e, 0, sizeof(*e));
    if (text == NULL)
        return false;
    value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    value.string_value = text;
    entry.key = "note";
    entry.value = &value;
    data.n_fields = 1;
    data.fields = entries;
    /* Length prefixes grow in steps: add characters until the target. */
    while (protobuf_c_message_get_packed_size(&data.base) < (size_t)target && n < (size_t)target) {
        text[n] = (char)('a' + n % 26);
        n++;
    }
    e->data_len = protobuf_c_message_get_packed_size(&data.base);
    ev.event_type = (char *)type;
    ev.source_service = "bench-subscribe";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    e->event_len = protobuf_c_message_get_packed_size(&ev.base);
    if ((e->event = malloc(e->event_len)) != NULL)
        protobuf_c_message_pack(&ev.base, e->event);
    free(text);
    return e->event != NULL;
}

static void event_bytes_cleanup(event_bytes *e)
{
    free(e->event);
}

/* Bytes a request of publish_request takes at most. */
static size_t publish_request_max(const event_bytes *e)
{
    return 11 + 2 + 48 + e->event_len;
}

/* PublishRequest{event = subject "<seq>:<sent>" + the packed event} into
 * out (publish_request_max bytes); returns its length. */
static size_t publish_request(const event_bytes *e, long long seq, int64_t sent, uint8_t *out)
{
    char subject[48];
    size_t sl = (size_t)snprintf(subject, sizeof(subject), "%lld:%" PRId64, seq, sent);
    size_t inner = 2 + sl + e->event_len, h;

    out[0] = 0x0a; /* PublishRequest.event: field 1 */
    h = 1 + put_varint(out + 1, inner);
    out[h] = 0x42; /* Event.subject: field 8, length-delimited */
    out[h + 1] = (uint8_t)sl;
    memcpy(out + h + 2, subject, sl);
    memcpy(out + h + 2 + sl, e->event, e->event_len);
    return h + inner;
}

/* ============================== samples =================================== */

typedef struct samples {
    int64_t *v;
    size_t n, cap;
} samples;

static void samples_add(samples *s, int64_t ns)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        int64_t *v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return; /* a lost sample is better than a lost run */
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = ns;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static void samples_sort(samples *s)
{
    if (s->n > 0)
        qsort(s->v, s->n, sizeof(int64_t), cmp_i64);
}

/* The q-quantile in microseconds (nearest rank); s must be sorted. */
static double quantile_us(const samples *s, double q)
{
    size_t i;

    if (s->n == 0)
        return 0;
    i = (size_t)(q * (double)s->n);
    if (i >= s->n)
        i = s->n - 1;
    return (double)s->v[i] / 1000.0;
}

/* ============================== the bench ================================= */

typedef struct sub sub;
typedef struct pubstream pubstream;
typedef struct bench bench;

/* A condition the main thread waits for (under mu). */
typedef bool (*until_fn)(const bench *b);

struct bench {
    options opt;
    tse_client *pub_client; /* publishers and helper calls: --connections */
    /* subscriber streams (--sub-connections): a client per --sub-target */
    tse_client *sub_clients[MAX_PIDS];
    int n_sub_clients, next_sub;
    bool shared_client;              /* sub_clients[0] is pub_client (latency, stream) */
    long long pub_calls;             /* calls and streams started on pub_client */
    pthread_mutex_t mu;              /* everything below but the atomics and errors */
    pthread_cond_t changed;          /* `until` may hold, or news for the main thread */
    until_fn until;                  /* what the main thread waits for (NULL: nothing) */
    event_bytes ev[BENCH_TYPES_MAX]; /* one per type: event n has type n % types */
    char types[BENCH_TYPES_MAX][BENCH_TYPE_LEN];
    size_t req_max;    /* bytes of the longest PublishRequest */
    uint8_t *req;      /* a PublishRequest being sent (req_max bytes) */
    bytes scratch;     /* a SubscribeRequest being sent */
    char (*names)[64]; /* the subscriptions' names */
    /* publishing */
    long long pub_target; /* events to publish (stream publishers) */
    long long pub_next;   /* next sequence number (stream publishers) */
    long long pub_ok;
    int live_ps;
    atomic_int live_unary;
    atomic_llong launched;   /* latency: publishes started */
    atomic_bool launch_done; /* latency: the launcher has returned */
    pubstream *paced;        /* latency, --publisher stream: the launcher's call */
    /* subscribing */
    sub **subs;
    int n_subs, live_subs;
    sub *dirty;        /* streams with queued acks */
    int64_t main_wake; /* when the main thread's wait ends at the latest */
    bool holding;      /* --hold-acks: nothing is acked yet */
    uint8_t **seen;    /* per subscription: a bit per sequence number */
    long long seen_bits;
    long long delivered, unique, duplicates, redelivered, acks_sent, ack_msgs;
    long long messages; /* Subscribe messages received (deliveries: `delivered`) */
    /* time */
    int64_t t_start, t_measure, t_end, t_open, t_first, t_last, t_progress;
    samples e2e, e2e_send, pub_lat, lag;
    int32_t *trace_pub, *trace_e2e; /* --trace: per sequence number, us */
    int max_in_flight;              /* the subscriptions' effective max_in_flight */
    int n_created;                  /* subscriptions created (names[0 .. n_created - 1]) */
    char result[1536];              /* the mode's RESULT fields */
    /* errors */
    long long errors;
    char first_error[256];
    pthread_mutex_t error_mu;
};

static void record_error(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* When publish number seq was due (latency mode). */
static int64_t due_of(const bench *b, long long seq)
{
    return b->t_start + (int64_t)((double)seq * (1e9 / b->opt.rate));
}

static void record_error(bench *b, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&b->error_mu);
    if (b->errors++ == 0) {
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
        va_end(ap);
        fprintf(stderr, "bench_subscribe: error: %s\n", b->first_error);
    }
    pthread_mutex_unlock(&b->error_mu);
}

/* Why a call failed: the SDK's message, else its status's name. */
static const char *why(tse_client_status status, const tse_client_error *err)
{
    return err != NULL && err->message[0] != '\0' ? err->message : tse_client_status_name(status);
}

/* Wakes the main thread once what it waits for holds (under mu). A wake
 * per event would cost a context switch per event. */
static void notify(bench *b)
{
    if (b->until != NULL && b->until(b))
        pthread_cond_signal(&b->changed);
}

/* Checks a PublishResponse; counts it as published when it is a success
 * (under mu). */
static void check_publish_response(bench *b, const void *data, size_t len)
{
    Tracseq__Events__V1__PublishResponse *r =
        tracseq__events__v1__publish_response__unpack(NULL, len, data);

    if (r == NULL)
        record_error(b, "publish: undecodable PublishResponse");
    else if (r->error != NULL)
        record_error(b, "publish: event error %d: %s", r->error->code, r->error->message);
    else if (r->stream_id == NULL || r->stream_id[0] == '\0')
        record_error(b, "publish: response without stream_id");
    else {
        b->pub_ok++;
        b->t_progress = now_ns();
    }
    if (r != NULL)
        tracseq__events__v1__publish_response__free_unpacked(r, NULL);
}

/* ============================== unary calls =============================== */

/* A helper call the main thread waits for. */
typedef struct sync_call {
    bench *b;
    const ProtobufCMessageDescriptor *desc; /* NULL: the response is not decoded */
    ProtobufCMessage *resp;
    tse_client_status status;
    tse_client_error err;
    bool done;
} sync_call;

static void sync_call_done(void *arg, tse_client_status status, const tse_client_error *err,
                           const void *response, size_t len)
{
    sync_call *c = arg;

    pthread_mutex_lock(&c->b->mu);
    c->status = status;
    if (err != NULL)
        c->err = *err;
    if (status == TSE_CLIENT_OK && c->desc != NULL &&
        (c->resp = protobuf_c_message_unpack(c->desc, NULL, len, response)) == NULL) {
        c->status = TSE_CLIENT_INTERNAL;
        snprintf(c->err.message, sizeof(c->err.message), "undecodable response");
    }
    c->done = true;
    pthread_cond_signal(&c->b->changed);
    pthread_mutex_unlock(&c->b->mu);
}

/*
 * One unary call, waited for: the caller holds mu, which the wait lets go
 * of (handlers run meanwhile). resp_desc NULL: the response is not
 * decoded. Returns the status, why in detail; *resp (caller frees with
 * protobuf_c_message_free_unpacked) is set on OK with resp_desc.
 */
static tse_client_status call_sync(bench *b, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp_desc,
                                   ProtobufCMessage **resp, char *detail, size_t detail_len)
{
    tse_client_call_options o = {.timeout_ms = 10000};
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    sync_call c = {.b = b, .desc = resp_desc};

    if (buf == NULL) {
        snprintf(detail, detail_len, "out of memory");
        return TSE_CLIENT_NO_MEMORY;
    }
    protobuf_c_message_pack(req, buf);
    b->pub_calls++;
    if (tse_client_call_start(b->pub_client, method, buf, len, &o, sync_call_done, &c, NULL,
                              &c.err) != TSE_CLIENT_OK) {
        c.status = c.err.status;
        c.done = true;
    }
    free(buf);
    while (!c.done)
        pthread_cond_wait(&b->changed, &b->mu);
    snprintf(detail, detail_len, "%s", why(c.status, &c.err));
    if (resp != NULL)
        *resp = c.resp;
    return c.status;
}

static bool create_subscription(bench *b, const char *name)
{
    Subscription spec = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    char *types[BENCH_TYPES_MAX];
    char detail[TSE_CLIENT_ERROR_MESSAGE_MAX] = "";
    ProtobufCMessage *resp = NULL;
    tse_client_status st;

    spec.name = (char *)name;
    for (int t = 0; t < b->opt.types; t++)
        types[t] = b->types[t];
    spec.n_event_types = (size_t)b->opt.types;
    spec.event_types = types;
    spec.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    spec.ack_deadline_ms = ACK_DEADLINE_MS;
    spec.max_in_flight = (uint32_t)b->opt.max_in_flight;
    req.subscription = &spec;
    st = call_sync(b, METHOD_CREATE_SUB, &req.base, &tracseq__events__v1__subscription__descriptor,
                   &resp, detail, sizeof(detail));
    if (st != TSE_CLIENT_OK) {
        record_error(b, "CreateSubscription %s: %s: %s", name, tse_client_status_name(st), detail);
        return false;
    }
    b->max_in_flight = (int)((Subscription *)resp)->max_in_flight;
    b->n_created++;
    protobuf_c_message_free_unpacked(resp, NULL);
    return true;
}

static void delete_subscription(bench *b, const char *name)
{
    Tracseq__Events__V1__DeleteSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
    char detail[TSE_CLIENT_ERROR_MESSAGE_MAX] = "";
    tse_client_status st;

    req.name = (char *)name;
    st = call_sync(b, METHOD_DELETE_SUB, &req.base, NULL, NULL, detail, sizeof(detail));
    if (st != TSE_CLIENT_OK)
        record_error(b, "DeleteSubscription %s: %s: %s", name, tse_client_status_name(st), detail);
}

/* The subscription's statistics; false (and an error) when the call fails. */
static bool subscription_stats(bench *b, const char *name, uint64_t *pending, uint64_t *lag)
{
    Tracseq__Events__V1__GetSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char detail[TSE_CLIENT_ERROR_MESSAGE_MAX] = "";
    tse_client_status st;
    Subscription *s;

    req.name = (char *)name;
    st = call_sync(b, METHOD_GET_SUB, &req.base, &tracseq__events__v1__subscription__descriptor,
                   &resp, detail, sizeof(detail));
    if (st != TSE_CLIENT_OK) {
        record_error(b, "GetSubscription %s: %s: %s", name, tse_client_status_name(st), detail);
        return false;
    }
    s = (Subscription *)resp;
    *pending = s->stats ? s->stats->pending : 0;
    *lag = s->stats ? s->stats->lag : 0;
    protobuf_c_message_free_unpacked(resp, NULL);
    return true;
}

/* Live subscriber streams the service counts; -1 when the call fails. */
static long active_subscribers(bench *b)
{
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char detail[TSE_CLIENT_ERROR_MESSAGE_MAX] = "";
    long n;

    if (call_sync(b, METHOD_GET_STATS, &req.base, &tracseq__events__v1__stats__descriptor, &resp,
                  detail, sizeof(detail)) != TSE_CLIENT_OK)
        return -1;
    n = (long)((Tracseq__Events__V1__Stats *)resp)->active_subscribers;
    protobuf_c_message_free_unpacked(resp, NULL);
    return n;
}

/* ============================== PublishStream publisher =================== */

/*
 * One PublishStream call pipelining up to `window` unanswered events;
 * response n answers send n. A full window is refilled once a quarter of it
 * was answered, so that the SDK finds the sends queued together and hints
 * all but the last (GRPC_WRITE_BUFFER_HINT: they share writes). The paced
 * stream of latency mode is the launcher's: it sends each event at its due
 * time, outside mu; the SDK queues a send made while another is in flight,
 * and the last one queued always goes out unhinted, at once.
 */
struct pubstream {
    bench *b;
    tse_client_stream *h;
    long long sent, received; /* the paced stream's sent: `launched` */
    bool closed, ended, paced;
};

/* True when another event may be sent now (stream publishers). */
static bool ps_more(const bench *b)
{
    return b->pub_next < b->pub_target;
}

/* Queues what the window allows, or half-closes once every event was sent
 * (under mu). */
static void ps_pump(pubstream *p)
{
    bench *b = p->b;
    long long refill = b->opt.window / 4 > 0 ? b->opt.window / 4 : 1;

    if (p->closed || (ps_more(b) && p->sent - p->received > b->opt.window - refill))
        return;
    while (ps_more(b) && p->sent - p->received < b->opt.window) {
        size_t len =
            publish_request(&b->ev[b->pub_next % b->opt.types], b->pub_next, now_ns(), b->req);

        b->pub_next++;
        if (tse_client_stream_send(p->h, b->req, len) != TSE_CLIENT_OK) {
            p->closed = true; /* the stream ended: on_end says why */
            return;
        }
        p->sent++;
    }
    if (!ps_more(b)) {
        p->closed = true;
        tse_client_stream_close_send(p->h);
    }
}

/* Event seq of the paced stream was answered: its publish latency. */
static void paced_answered(bench *b, long long seq)
{
    int64_t due = due_of(b, seq), t = now_ns();

    if (due >= b->t_measure && due < b->t_end)
        samples_add(&b->pub_lat, t - due);
    if (b->trace_pub != NULL && seq < b->seen_bits)
        b->trace_pub[seq] = (int32_t)((t - due) / 1000);
}

static long long ps_sent(const pubstream *p)
{
    return p->paced ? atomic_load(&p->b->launched) : p->sent;
}

static void ps_on_message(void *arg, const void *msg, size_t len)
{
    pubstream *p = arg;
    bench *b = p->b;

    pthread_mutex_lock(&b->mu);
    if (p->received >= ps_sent(p))
        record_error(b, "PublishStream: a response without a request");
    check_publish_response(b, msg, len);
    if (p->paced)
        paced_answered(b, p->received);
    p->received++;
    if (!p->paced)
        ps_pump(p);
    notify(b);
    pthread_mutex_unlock(&b->mu);
}

/* The end: a stream publisher goes now, the paced one (whose handle the
 * launcher may still use) once the launcher is done. */
static void ps_on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    pubstream *p = arg;
    bench *b = p->b;
    bool paced = p->paced;

    pthread_mutex_lock(&b->mu);
    if (status != TSE_CLIENT_OK)
        record_error(b, "PublishStream: %s: %s", tse_client_status_name(status), why(status, err));
    else if (p->received != ps_sent(p))
        record_error(b, "PublishStream ended after %lld of %lld responses", p->received,
                     ps_sent(p));
    p->ended = true;
    b->live_ps--;
    notify(b);
    pthread_mutex_unlock(&b->mu);
    if (!paced) {
        tse_client_stream_release(p->h);
        free(p);
    }
}

/* Starts a PublishStream with its first request (under mu, so that its
 * handlers wait until the handle is stored); NULL (and an error) on
 * failure. */
static pubstream *ps_start(bench *b, const uint8_t *first, size_t len, bool paced)
{
    static const tse_client_stream_handlers h = {ps_on_message, ps_on_end};
    tse_client_call_options o = {.timeout_ms = -1};
    pubstream *p = calloc(1, sizeof(*p));
    tse_client_error err;

    if (p == NULL) {
        record_error(b, "out of memory");
        return NULL;
    }
    p->b = b;
    p->paced = paced;
    p->sent = 1;
    b->pub_calls++;
    if (tse_client_stream_start(b->pub_client, METHOD_PUBLISH_STREAM, first, len, &o, &h, p, &p->h,
                                &err) != TSE_CLIENT_OK) {
        record_error(b, "PublishStream: %s", err.message);
        free(p);
        return NULL;
    }
    b->live_ps++;
    return p;
}

/* Launcher: sends event n (in buf, len bytes) on the paced stream, which
 * event 0 starts; false once the stream is gone. */
static bool paced_send(bench *b, long long n, const uint8_t *buf, size_t len)
{
    if (n == 0) {
        pthread_mutex_lock(&b->mu);
        b->paced = ps_start(b, buf, len, true);
        pthread_mutex_unlock(&b->mu);
        return b->paced != NULL;
    }
    if (tse_client_stream_send(b->paced->h, buf, len) == TSE_CLIENT_OK)
        return true;
    record_error(b, "PublishStream: event %lld not sent: the stream ended", n);
    return false;
}

/* ============================== unary publisher (latency) ================= */

/* One Publish call. */
typedef struct unary {
    bench *b;
    int64_t due;
    long long seq;
} unary;

static void unary_on_end(void *arg, tse_client_status status, const tse_client_error *err,
                         const void *response, size_t len)
{
    unary *u = arg;
    bench *b = u->b;
    int64_t t = now_ns();

    pthread_mutex_lock(&b->mu);
    if (status != TSE_CLIENT_OK)
        record_error(b, "Publish: %s: %s", tse_client_status_name(status), why(status, err));
    else {
        long long before = b->pub_ok;
        check_publish_response(b, response, len);
        if (b->pub_ok > before && u->due >= b->t_measure && u->due < b->t_end)
            samples_add(&b->pub_lat, t - u->due);
        if (b->pub_ok > before && b->trace_pub != NULL && u->seq < b->seen_bits)
            b->trace_pub[u->seq] = (int32_t)((t - u->due) / 1000);
    }
    atomic_fetch_sub(&b->live_unary, 1);
    notify(b);
    pthread_mutex_unlock(&b->mu);
    free(u);
}

/* Launcher: starts Publish number seq (in buf, len bytes), due at `due`,
 * outside mu. */
static void unary_start(bench *b, long long seq, int64_t due, const uint8_t *buf, size_t len)
{
    int64_t left = due + 30 * SEC_NS - now_ns();
    tse_client_call_options o = {.timeout_ms = left > 1000000 ? (int)(left / 1000000) : 1};
    unary *u = calloc(1, sizeof(*u));
    tse_client_error err;

    if (u == NULL) {
        record_error(b, "out of memory");
        return;
    }
    *u = (unary){.b = b, .due = due, .seq = seq};
    atomic_fetch_add(&b->live_unary, 1);
    if (tse_client_call_start(b->pub_client, METHOD_PUBLISH, buf, len, &o, unary_on_end, u, NULL,
                              &err) != TSE_CLIENT_OK) {
        record_error(b, "Publish: %s", err.message);
        atomic_fetch_sub(&b->live_unary, 1);
        free(u);
    }
}

/*
 * Open loop, on its own thread: starts publish number n at t_start + n /
 * rate, late or not, until the end of the interval; then half-closes the
 * paced stream.
 */
static void *launcher_main(void *arg)
{
    bench *b = arg;
    uint8_t *buf = malloc(b->req_max);

    /* The default 50 us timer slack would make every call that late. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    if (buf == NULL)
        record_error(b, "out of memory");
    for (long long n = 0; buf != NULL; n++) {
        int64_t due = due_of(b, n);
        struct timespec ts = {(time_t)(due / SEC_NS), (long)(due % SEC_NS)};
        size_t len;

        if (due >= b->t_end)
            break;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        samples_add(&b->lag, now_ns() - due);
        atomic_store(&b->launched, n + 1);
        len = publish_request(&b->ev[n % b->opt.types], n, now_ns(), buf);
        if (!b->opt.stream_publisher)
            unary_start(b, n, due, buf, len);
        else if (!paced_send(b, n, buf, len))
            break;
    }
    if (b->paced != NULL)
        tse_client_stream_close_send(b->paced->h);
    free(buf);
    pthread_mutex_lock(&b->mu);
    atomic_store(&b->launch_done, true);
    notify(b);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ============================== subscriber streams ======================== */

/*
 * One Subscribe call. The first message names the subscription; later
 * messages carry acks. The handle goes when the stream ends (h is NULL
 * from then on); the object stays until the run is over.
 */
struct sub {
    bench *b;
    tse_client_stream *h;
    int group;  /* index of its subscription */
    bytes acks; /* encoded AckIds.ack_ids fields not yet sent */
    int n_acks;
    int64_t acks_since; /* when the oldest unsent ack was queued */
    sub *next_dirty;
    long long delivered;
    bool dirty, cancelled;
};

/* The bytes of the first n encoded AckIds.ack_ids fields of acks. */
static size_t acks_prefix(const bytes *acks, int n)
{
    const uint8_t *p = acks->p, *end = acks->p + acks->len;
    wire_field f;

    while (n-- > 0 && wire_next(&p, end, &f))
        ;
    return (size_t)(p - acks->p);
}

/* Sends the queued acks, at most --ack-max of them, as one
 * SubscribeRequest{ack} unless a send is still on its way (the acks then
 * wait for the next try, and go together; what is over --ack-max waits for
 * the next message). Acks of a stream that ended are dropped: its end is
 * reported. Under mu. */
static void sub_flush(sub *s)
{
    bench *b = s->b;
    int n = s->n_acks < b->opt.ack_max ? s->n_acks : b->opt.ack_max;
    size_t len = n < s->n_acks ? acks_prefix(&s->acks, n) : s->acks.len;

    if (s->n_acks == 0 || (s->h != NULL && !s->cancelled && tse_client_stream_busy(s->h)))
        return;
    b->scratch.len = 0;
    if (s->h == NULL || s->cancelled)
        len = s->acks.len, n = s->n_acks; /* gone: all dropped */
    else if (!bytes_put_field(&b->scratch, 0x1a, s->acks.p, len))
        record_error(b, "out of memory");
    else if (tse_client_stream_send(s->h, b->scratch.p, b->scratch.len) == TSE_CLIENT_OK) {
        b->acks_sent += n;
        b->ack_msgs++;
    }
    memmove(s->acks.p, s->acks.p + len, s->acks.len - len);
    s->acks.len -= len;
    s->n_acks -= n;
}

static bool sub_ack_due(const sub *s, int64_t now)
{
    const bench *b = s->b;

    return s->n_acks > 0 && !b->holding &&
           (s->n_acks >= b->opt.ack_batch ||
            now - s->acks_since >= (int64_t)(b->opt.ack_delay_ms * 1e6));
}

static void sub_queue_ack(sub *s, const uint8_t *id, size_t len)
{
    bench *b = s->b;

    if (!bytes_put_field(&s->acks, 0x0a, id, len)) {
        record_error(b, "out of memory");
        return;
    }
    if (s->n_acks++ == 0)
        s->acks_since = now_ns();
    if (!s->dirty) {
        /* The next delivery's handler sends it once due; if none comes,
         * the main thread does (wait_step), woken now only when its wait
         * would end later than that. */
        if (!b->holding &&
            b->main_wake > s->acks_since + (int64_t)(b->opt.ack_delay_ms * 1e6) + ACK_GRACE_NS)
            pthread_cond_signal(&b->changed);
        s->dirty = true;
        s->next_dirty = b->dirty;
        b->dirty = s;
    }
    if (!b->holding && s->n_acks >= b->opt.ack_batch)
        sub_flush(s);
}

/* Sends the acks that are due; forgets streams that have none left. */
static void flush_due_acks(bench *b, int64_t now)
{
    sub **p = &b->dirty;

    while (*p != NULL) {
        sub *s = *p;
        if (sub_ack_due(s, now))
            sub_flush(s);
        if (s->n_acks == 0) {
            s->dirty = false;
            *p = s->next_dirty;
        } else
            p = &s->next_dirty;
    }
}

/* SubscribeRequest{subscription_name, max_deliveries_per_message (11) when
 * per_message > 0} into out. */
static bool first_request(bytes *out, const char *name, int per_message)
{
    uint8_t tail[11];
    size_t n = 0;

    out->len = 0;
    if (!bytes_put_field(out, 0x12, name, strlen(name)))
        return false;
    if (per_message <= 0)
        return true;
    tail[n++] = 11 << 3;
    n += put_varint(tail + n, (uint64_t)per_message);
    return bytes_put(out, tail, n);
}

/* Records one event of a subscription; false when it is not one the run
 * published or was seen before. */
static bool mark_seen(bench *b, int group, long long seq)
{
    uint8_t *bits = b->seen[group];

    if (seq >= b->seen_bits) {
        record_error(b, "delivery of an unknown sequence number %lld", seq);
        return false;
    }
    if (bits[seq / 8] & (1u << (seq % 8))) {
        b->duplicates++;
        record_error(b, "event %lld delivered twice to subscription %s", seq, b->names[group]);
        return false;
    }
    bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
    b->unique++;
    return true;
}

static void on_delivery(sub *s, const uint8_t *data, size_t len)
{
    bench *b = s->b;
    int64_t now = now_ns();
    delivery_view v;
    long long seq;
    int64_t sent;

    if (!parse_delivery(data, len, &v) || !parse_subject(&v, &seq, &sent)) {
        record_error(b, "undecodable Delivery (%zu bytes)", len);
        return;
    }
    sub_queue_ack(s, v.ack_id, v.ack_len);
    b->delivered++;
    s->delivered++;
    if (b->t_first == 0)
        b->t_first = now;
    b->t_last = b->t_progress = now;
    if (v.attempt != 1) {
        b->redelivered++;
        record_error(b, "delivery_attempt %" PRIu64 " for event %lld", v.attempt, seq);
    }
    if (!mark_seen(b, s->group, seq) || b->opt.mode != MODE_LATENCY)
        return;
    int64_t due = due_of(b, seq);
    if (b->trace_e2e != NULL)
        b->trace_e2e[seq] = (int32_t)((now - due) / 1000);
    if (due >= b->t_measure && due < b->t_end) {
        samples_add(&b->e2e, now - due);
        samples_add(&b->e2e_send, now - sent);
    }
}

/* One Subscribe message: the Delivery itself, then each element of its
 * `more` (field 6, batched delivery), which parse_delivery skips. */
static void sub_on_message(void *arg, const void *msg, size_t len)
{
    sub *s = arg;
    bench *b = s->b;
    const uint8_t *data = msg, *p = data, *end = data + len;
    long long n = 1;
    wire_field f;

    pthread_mutex_lock(&b->mu);
    b->messages++;
    on_delivery(s, data, len);
    while (wire_next(&p, end, &f))
        if (f.num == 6 && f.data != NULL) {
            on_delivery(s, f.data, f.len);
            n++;
        }
    if (n > 1 && (b->opt.per_message <= 1 || n > b->opt.per_message))
        record_error(b, "%lld deliveries in one message, --per-message %d", n, b->opt.per_message);
    if (b->dirty != NULL && !b->holding)
        flush_due_acks(b, now_ns());
    notify(b);
    pthread_mutex_unlock(&b->mu);
}

static void sub_on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    sub *s = arg;
    bench *b = s->b;
    tse_client_stream *h;

    pthread_mutex_lock(&b->mu);
    if (!s->cancelled)
        record_error(b, "Subscribe to %s ended: %s: %s", b->names[s->group],
                     tse_client_status_name(status), why(status, err));
    h = s->h;
    s->h = NULL;
    b->live_subs--;
    notify(b);
    pthread_mutex_unlock(&b->mu);
    tse_client_stream_release(h);
}

/* Opens one stream on subscription `group` (under mu); NULL (and an error)
 * on failure. */
static sub *sub_open(bench *b, int group)
{
    static const tse_client_stream_handlers h = {sub_on_message, sub_on_end};
    tse_client_call_options o = {.timeout_ms = -1};
    sub *s = calloc(1, sizeof(*s));
    tse_client_error err;
    tse_client *c;

    if (s == NULL || !first_request(&b->scratch, b->names[group], b->opt.per_message)) {
        record_error(b, "out of memory");
        free(s);
        return NULL;
    }
    s->b = b;
    s->group = group;
    c = b->sub_clients[b->next_sub];
    b->next_sub = (b->next_sub + 1) % b->n_sub_clients;
    if (c == b->pub_client)
        b->pub_calls++;
    if (tse_client_stream_start(c, METHOD_SUBSCRIBE, b->scratch.p, b->scratch.len, &o, &h, s, &s->h,
                                &err) != TSE_CLIENT_OK) {
        record_error(b, "Subscribe: %s", err.message);
        free(s);
        return NULL;
    }
    b->live_subs++;
    return s;
}

static void sub_destroy(sub *s)
{
    if (s == NULL)
        return;
    free(s->acks.p);
    free(s);
}

/* ============================== driver ==================================== */

/* Waits (under mu, which the wait lets go of) for a handler's news, at most
 * until ACK_GRACE_NS after the next ack falls due (deliveries send what is
 * due before that while they come), a tick or `limit` (0: none); then sends
 * the acks that are due. */
static void wait_step(bench *b, int64_t limit)
{
    int64_t now = now_ns(), wake = now + TICK_NS;
    int64_t ack_wait = (int64_t)(b->opt.ack_delay_ms * 1e6) + ACK_GRACE_NS;
    struct timespec ts;

    if (b->dirty != NULL && !b->holding && now + ack_wait < wake)
        wake = now + ack_wait;
    if (limit > 0 && limit < wake)
        wake = limit;
    ts = (struct timespec){(time_t)(wake / SEC_NS), (long)(wake % SEC_NS)};
    b->main_wake = wake;
    pthread_cond_timedwait(&b->changed, &b->mu, &ts);
    b->main_wake = 0;
    if (b->dirty != NULL)
        flush_due_acks(b, now_ns());
}

/*
 * Waits until done(b) holds; false when nothing progressed (no publish
 * answered, no delivery) for the stall limit, or when the hard limit
 * `give_up` passed (0: none). Acks go out as they fall due.
 */
static bool run_until(bench *b, until_fn done, int64_t give_up)
{
    int64_t stall = (int64_t)(b->opt.stall_s * 1e9);
    bool ok = true;

    b->t_progress = now_ns();
    b->until = done;
    while (!done(b)) {
        int64_t now = now_ns();
        if (now - b->t_progress > stall || (give_up > 0 && now > give_up)) {
            ok = false;
            break;
        }
        wait_step(b, 0);
    }
    b->until = NULL;
    return ok;
}

/* Lets the run go on for a while, whatever happens. */
static void run_for(bench *b, double seconds)
{
    int64_t end = now_ns() + (int64_t)(seconds * 1e9);

    while (now_ns() < end)
        wait_step(b, end);
}

static bool publishers_done(const bench *b)
{
    return b->live_ps == 0 && atomic_load(&b->live_unary) == 0 &&
           (b->opt.mode != MODE_LATENCY || atomic_load(&b->launch_done));
}

/* Every event published so far reached every subscription. */
static bool all_delivered(const bench *b)
{
    return publishers_done(b) && b->unique >= b->pub_ok * b->opt.subscriptions;
}

/* Every ack is with the SDK (which sends them in order, before the end). */
static bool acks_sent(const bench *b)
{
    return b->dirty == NULL;
}

static bool subs_closed(const bench *b)
{
    return b->live_subs == 0;
}

/* Opens M streams on each subscription. */
static bool open_subs(bench *b)
{
    int total = b->opt.subscriptions * b->opt.subscribers;

    b->subs = calloc((size_t)total, sizeof(*b->subs));
    if (b->subs == NULL)
        return false;
    for (int i = 0; i < total; i++) {
        if ((b->subs[i] = sub_open(b, i % b->opt.subscriptions)) == NULL)
            return false;
        b->n_subs++;
    }
    return true;
}

/* Sends every ack left, waits until the service holds no pending entry for
 * the subscriptions (acks are applied asynchronously), then cancels the
 * streams. Returns the pending entries left (summed). */
static uint64_t close_subs(bench *b)
{
    uint64_t pending = 0, lag = 0;
    int64_t give_up;

    b->holding = false;
    for (sub *s = b->dirty; s != NULL; s = s->next_dirty)
        s->acks_since = 0; /* due now */
    if (!run_until(b, acks_sent, now_ns() + 10 * SEC_NS))
        record_error(b, "acks still unsent after 10 s");
    give_up = now_ns() + 5 * SEC_NS;
    do {
        run_for(b, 0.05);
        pending = 0;
        for (int g = 0; g < b->opt.subscriptions; g++) {
            uint64_t p = 0, l = 0;
            if (subscription_stats(b, b->names[g], &p, &l)) {
                pending += p;
                lag += l;
            }
        }
    } while (pending > 0 && now_ns() < give_up);
    if (pending > 0)
        record_error(b, "%" PRIu64 " deliveries still pending 5 s after their acks", pending);
    for (int i = 0; i < b->n_subs; i++) {
        b->subs[i]->cancelled = true;
        if (b->subs[i]->h != NULL)
            tse_client_stream_cancel(b->subs[i]->h, TSE_CLIENT_CANCELLED, "the run is over");
    }
    if (!run_until(b, subs_closed, now_ns() + 10 * SEC_NS))
        record_error(b, "streams still open 10 s after cancel");
    return pending;
}

/*
 * The subscribers' clients: one per --sub-target (or one on --target),
 * connection i of --sub-connections going to target i % targets, as each
 * SDK channel is a TCP connection of its own; streams take the clients in
 * turn.
 */
static bool open_sub_clients(bench *b, tse_client_options *o)
{
    int n = b->opt.n_sub_targets > 0 ? b->opt.n_sub_targets : 1;
    tse_client_error err;

    for (int t = 0; t < n; t++) {
        o->target = b->opt.n_sub_targets > 0 ? b->opt.sub_targets[t] : b->opt.target;
        o->channels = b->opt.sub_connections / n + (t < b->opt.sub_connections % n);
        if (tse_client_connect(o, &b->sub_clients[t], &err) != TSE_CLIENT_OK) {
            fprintf(stderr, "bench_subscribe: %s: %s\n", o->target, err.message);
            return false;
        }
        b->n_sub_clients++;
    }
    return true;
}

static bool bench_open(bench *b)
{
    tse_client_options o = {.target = b->opt.target,
                            .source_service = "bench-subscribe",
                            .timeout_ms = 10000,
                            .channels = b->opt.connections};
    long long bits = b->opt.count + 16; /* fanout's first event takes one more */
    tse_client_error err;
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&b->changed, &a);
    pthread_condattr_destroy(&a);
    /* Each SDK channel is a TCP connection of its own. The paced stream
     * and its subscriber: one client, a connection each (file comment). */
    b->shared_client =
        b->opt.mode == MODE_LATENCY && b->opt.stream_publisher && b->opt.n_sub_targets == 0;
    if (b->shared_client)
        o.channels = 2;
    if (tse_client_connect(&o, &b->pub_client, &err) != TSE_CLIENT_OK) {
        fprintf(stderr, "bench_subscribe: %s\n", err.message);
        return false;
    }
    if (b->shared_client) {
        b->sub_clients[0] = b->pub_client;
        b->n_sub_clients = 1;
    } else if (!open_sub_clients(b, &o))
        return false;
    if (b->opt.mode == MODE_LATENCY)
        bits = (long long)(b->opt.rate * (b->opt.warmup_s + b->opt.duration_s)) + 16;
    b->seen_bits = bits;
    if (b->opt.trace != NULL && b->opt.mode == MODE_LATENCY) {
        b->trace_pub = calloc((size_t)bits, sizeof(int32_t));
        b->trace_e2e = calloc((size_t)bits, sizeof(int32_t));
        if (b->trace_pub == NULL || b->trace_e2e == NULL)
            return false;
    }
    b->names = calloc((size_t)b->opt.subscriptions, sizeof(*b->names));
    b->seen = calloc((size_t)b->opt.subscriptions, sizeof(*b->seen));
    if (b->names == NULL || b->seen == NULL)
        return false;
    for (int g = 0; g < b->opt.subscriptions; g++) {
        if (b->opt.subscriptions == 1)
            snprintf(b->names[g], sizeof(b->names[g]), "%s", b->opt.name);
        else
            snprintf(b->names[g], sizeof(b->names[g]), "%s-%d", b->opt.name, g);
        if ((b->seen[g] = calloc((size_t)(bits / 8 + 1), 1)) == NULL)
            return false;
    }
    if (!bench_type_names(b->opt.event_type, b->opt.types, b->types))
        return false;
    for (int t = 0; t < b->opt.types; t++) {
        if (!event_bytes_init(&b->ev[t], b->types[t], b->opt.payload_bytes))
            return false;
        if (publish_request_max(&b->ev[t]) > b->req_max)
            b->req_max = publish_request_max(&b->ev[t]);
    }
    return (b->req = malloc(b->req_max)) != NULL;
}

/*
 * Connects before measuring, so that connection setup is not measured: two
 * health checks per connection of each client at once (the first asks
 * every connection to connect, the SDK takes a ready one in turn). False
 * when the service is unreachable. Under mu.
 */
static bool bench_connect(bench *b)
{
    tse_client_call_options o = {.timeout_ms = 5000};
    bench_probe p = {.mu = &b->mu, .changed = &b->changed, .deadline_unreachable = true};

    int n_pub = b->shared_client ? 2 : b->opt.connections;
    int n_sub = b->shared_client ? 0 : b->opt.sub_connections;

    for (int i = 0; i < 2 * (n_pub + n_sub); i++) {
        int k = i - 2 * n_pub;
        bench_probe_start(&p, k < 0 ? b->pub_client : b->sub_clients[k % b->n_sub_clients], &o);
    }
    return bench_probe_wait(&p);
}

/* After the run (not under mu): destroying a client cancels what still runs
 * and runs its handlers, which may still point into the run's objects;
 * those go after. */
static void bench_close(bench *b)
{
    tse_client_destroy(b->pub_client);
    for (int t = 0; !b->shared_client && t < b->n_sub_clients; t++)
        tse_client_destroy(b->sub_clients[t]);
    free(b->paced);
    for (int i = 0; i < b->n_subs; i++)
        sub_destroy(b->subs[i]);
    free(b->subs);
    pthread_cond_destroy(&b->changed);
    for (int t = 0; t < BENCH_TYPES_MAX; t++)
        event_bytes_cleanup(&b->ev[t]);
    free(b->req);
    free(b->scratch.p);
    for (int g = 0; b->seen != NULL && g < b->opt.subscriptions; g++)
        free(b->seen[g]);
    free(b->seen);
    free(b->names);
    free(b->e2e.v);
    free(b->e2e_send.v);
    free(b->pub_lat.v);
    free(b->lag.v);
    free(b->trace_pub);
    free(b->trace_e2e);
}

/* Publishes n events with up to `streams` PublishStream calls and waits for
 * every response; returns the rate. */
static double publish_backlog(bench *b, int streams, long long n)
{
    int64_t t0 = now_ns();
    long long before = b->pub_ok;

    b->pub_target += n;
    for (int i = 0; i < streams && ps_more(b); i++) {
        size_t len =
            publish_request(&b->ev[b->pub_next % b->opt.types], b->pub_next, now_ns(), b->req);
        pubstream *p = ps_start(b, b->req, len, false);
        if (p == NULL)
            break;
        b->pub_next++;
        ps_pump(p);
    }
    if (!run_until(b, publishers_done, 0))
        record_error(b, "publishing stalled after %lld events", b->pub_ok - before);
    return (double)(b->pub_ok - before) * 1e9 / (double)(now_ns() - t0);
}

/* ============================== modes ===================================== */

/* Waits until the service counts `want` live subscriber streams; the
 * count it last saw. */
static long wait_attached(bench *b, long want, double limit_s)
{
    int64_t give_up = now_ns() + (int64_t)(limit_s * 1e9);
    long n;

    do {
        run_for(b, 0.1);
        n = active_subscribers(b);
    } while (n < want && now_ns() < give_up && b->live_subs == b->n_subs);
    return n;
}

/* --trace: one line per event published (-1: no figure). */
static void write_trace(const bench *b)
{
    FILE *f = fopen(b->opt.trace, "w");
    long long n = atomic_load(&b->launched);

    if (f == NULL) {
        fprintf(stderr, "bench_subscribe: cannot write %s\n", b->opt.trace);
        return;
    }
    for (long long i = 0; i < n && i < b->seen_bits; i++)
        fprintf(f, "%lld %.3f %d %d\n", i, (double)(due_of(b, i) - b->t_start) / 1e6,
                b->trace_pub[i] ? b->trace_pub[i] : -1, b->trace_e2e[i] ? b->trace_e2e[i] : -1);
    fclose(f);
}

static void latency_report(bench *b, uint64_t pending)
{
    const options *o = &b->opt;

    samples_sort(&b->e2e);
    samples_sort(&b->e2e_send);
    samples_sort(&b->pub_lat);
    samples_sort(&b->lag);
    if (b->trace_pub != NULL)
        write_trace(b);
    fprintf(stderr,
            "latency: %zu events at %.0f/s offered: publish -> delivery p50 %.0f us, p90 %.0f us, "
            "p99 %.0f us, max %.0f us (publish answered: p50 %.0f us, p99 %.0f us)\n",
            b->e2e.n, o->rate, quantile_us(&b->e2e, 0.5), quantile_us(&b->e2e, 0.9),
            quantile_us(&b->e2e, 0.99), quantile_us(&b->e2e, 1.0), quantile_us(&b->pub_lat, 0.5),
            quantile_us(&b->pub_lat, 0.99));
    snprintf(b->result, sizeof(b->result),
             "offered=%.0f events=%zu published=%lld delivered=%lld "
             "unique=%lld p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f "
             "from_send_p50_us=%.0f from_send_p99_us=%.0f publish_p50_us=%.0f publish_p99_us=%.0f "
             "launch_lag_p99_us=%.0f launch_lag_max_us=%.0f max_in_flight=%d ack_batch=%d "
             "ack_delay_ms=%g ack_msgs=%lld pending_after=%" PRIu64,
             o->rate, b->e2e.n, b->pub_ok, b->delivered, b->unique, quantile_us(&b->e2e, 0.5),
             quantile_us(&b->e2e, 0.9), quantile_us(&b->e2e, 0.99), quantile_us(&b->e2e, 0.999),
             quantile_us(&b->e2e, 1.0), quantile_us(&b->e2e_send, 0.5),
             quantile_us(&b->e2e_send, 0.99), quantile_us(&b->pub_lat, 0.5),
             quantile_us(&b->pub_lat, 0.99), quantile_us(&b->lag, 0.99), quantile_us(&b->lag, 1.0),
             b->max_in_flight, o->ack_batch, o->ack_delay_ms, b->ack_msgs, pending);
}

static void mode_latency(bench *b)
{
    const options *o = &b->opt;
    pthread_t launcher;

    long long sub_call;

    if (!create_subscription(b, b->names[0]))
        return;
    sub_call = b->pub_calls;
    if (!open_subs(b))
        return;
    if (wait_attached(b, 1, 5) < 1)
        record_error(b, "the subscriber did not attach within 5 s");
    /* The SDK gives each call the next of its (ready) channels in turn: with
     * the client's two, the paced stream gets the subscriber's connection
     * when an odd number of calls came between them, so one more makes it
     * the other. */
    if (b->shared_client && (b->pub_calls - sub_call - 1) % 2 == 1)
        active_subscribers(b);
    b->t_start = now_ns() + 10000000;
    b->t_measure = b->t_start + (int64_t)(o->warmup_s * 1e9);
    b->t_end = b->t_measure + (int64_t)(o->duration_s * 1e9);
    if (pthread_create(&launcher, NULL, launcher_main, b) != 0) {
        record_error(b, "cannot start the launcher thread");
        return;
    }
    if (!run_until(b, all_delivered, b->t_end + (int64_t)(o->stall_s * 1e9)))
        record_error(b, "%lld of %lld published events delivered", b->unique, b->pub_ok);
    pthread_mutex_unlock(&b->mu);
    pthread_join(launcher, NULL);
    pthread_mutex_lock(&b->mu);
    run_until(b, publishers_done, 0);
    /* The paced stream's handle goes once it ended; one still running
     * (stalled) ends when the client is destroyed, and its handle is left. */
    if (b->paced != NULL && b->paced->ended) {
        tse_client_stream_release(b->paced->h);
        b->paced->h = NULL;
    }
    latency_report(b, close_subs(b));
}

/* srv_ticks and redis_ticks: the CPU of --pid and --redis-pid over the
 * drain, -1 when not asked for; own_s: this process's over the drain. */
static void drain_report(bench *b, double pub_rate, uint64_t lag, uint64_t pending,
                         long long srv_ticks, long long redis_ticks, double own_s)
{
    double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
    const options *o = &b->opt;
    double secs = (double)(b->t_last - b->t_open) / 1e9;
    double rate = secs > 0 ? (double)b->unique / secs : 0;
    double first_ms = b->t_first ? (double)(b->t_first - b->t_open) / 1e6 : 0;

    fprintf(stderr,
            "drain: %lld events in %.2f s = %.0f events/s (max_in_flight %d; first delivery "
            "after %.1f ms; %lld ack messages; %lld deliveries in %lld messages)\n",
            b->unique, secs, rate, b->max_in_flight, first_ms, b->ack_msgs, b->delivered,
            b->messages);
    snprintf(
        b->result, sizeof(b->result),
        "events=%lld published=%lld lag_before=%" PRIu64 " seconds=%.3f rate=%.1f "
        "first_delivery_ms=%.1f publish_rate=%.0f max_in_flight=%d ack_batch=%d "
        "ack_delay_ms=%g ack_msgs=%lld pending_after=%" PRIu64 " deliver_cpu_us=%.2f "
        "deliver_redis_us=%.2f deliver_client_us=%.2f subscribers=%d types=%d instances=%d",
        b->unique, b->pub_ok, lag, secs, rate, first_ms, pub_rate, b->max_in_flight, o->ack_batch,
        o->ack_delay_ms, b->ack_msgs, pending,
        srv_ticks >= 0 && b->unique > 0 ? (double)srv_ticks * tick_us / (double)b->unique : 0.0,
        redis_ticks >= 0 && b->unique > 0 ? (double)redis_ticks * tick_us / (double)b->unique : 0.0,
        b->unique > 0 ? own_s * 1e6 / (double)b->unique : 0.0, o->subscribers, o->types,
        o->n_sub_targets > 0 ? o->n_sub_targets : 1);
}

static void mode_drain(bench *b)
{
    const options *o = &b->opt;
    uint64_t pending = 0, lag = 0;
    double pub_rate;

    if (!create_subscription(b, b->names[0]))
        return;
    pub_rate = publish_backlog(b, o->pub_streams, o->count);
    fprintf(stderr, "drain: backlog of %lld events published at %.0f/s\n", b->pub_ok, pub_rate);
    subscription_stats(b, b->names[0], &pending, &lag);
    /* The service's and Redis's CPU over the drain alone (--pid,
     * --redis-pid): the delivery path's cost per event, the backlog's
     * publish left out. */
    long long s0 = cpu_ticks_all(o->pids, o->n_pids);
    long long r0 = cpu_ticks_all(o->redis_pids, o->n_redis_pids);
    double own0 = own_cpu_seconds();
    b->t_open = now_ns();
    if (!open_subs(b))
        return;
    if (!run_until(b, all_delivered, 0))
        record_error(b, "stalled: %lld of %lld events delivered", b->unique, b->pub_ok);
    long long s1 = cpu_ticks_all(o->pids, o->n_pids);
    long long r1 = cpu_ticks_all(o->redis_pids, o->n_redis_pids);
    double own1 = own_cpu_seconds();
    pending = close_subs(b);
    drain_report(b, pub_rate, lag, pending, o->n_pids > 0 && s1 >= s0 ? s1 - s0 : -1,
                 o->n_redis_pids > 0 && r1 >= r0 ? r1 - r0 : -1, own1 - own0);
}

/* Per-stream delivery counts: min, max, streams with none. */
static void spread(const bench *b, long long *min, long long *max, int *zero)
{
    *min = b->n_subs ? b->subs[0]->delivered : 0;
    *max = 0;
    *zero = 0;
    for (int i = 0; i < b->n_subs; i++) {
        long long d = b->subs[i]->delivered;
        *min = d < *min ? d : *min;
        *max = d > *max ? d : *max;
        *zero += d == 0;
    }
}

/* CPU use of a process over an interval, percent of one core. */
static double cpu_pct(long long t0, long long t1, double secs)
{
    return secs > 0 ? 100.0 * (double)(t1 - t0) / (double)sysconf(_SC_CLK_TCK) / secs : 0;
}

/* What the fanout mode reads of the service and Redis. */
typedef struct fanout_figures {
    long streams, attached;
    double attach_s, deliver_s, idle_srv_pct, idle_redis_pct;
    long rss_idle, rss_open, rss_loaded, rss_closed; /* kB */
    long long min, max;                              /* deliveries per stream */
    int zero;                                        /* streams without any */
    uint64_t pending;
} fanout_figures;

/* Creates the subscriptions and opens every stream; false on failure. */
static bool fanout_open(bench *b, fanout_figures *f)
{
    const options *o = &b->opt;
    int64_t t0;

    /* A first event creates the stream, so idle subscribers have a
     * stream to poll (a subscription over no stream costs nothing); it is
     * older than the subscriptions, so it is not delivered. */
    publish_backlog(b, 1, 1);
    b->pub_ok = 0;
    for (int g = 0; g < o->subscriptions; g++)
        if (!create_subscription(b, b->names[g]))
            return false;
    b->holding = o->hold_acks;
    t0 = now_ns();
    if (!open_subs(b))
        return false;
    f->attached = wait_attached(b, f->streams, 30);
    f->attach_s = (double)(now_ns() - t0) / 1e9;
    if (f->attached < f->streams)
        record_error(b, "only %ld of %ld streams attached", f->attached, f->streams);
    fprintf(stderr, "fanout: %ld streams attached in %.2f s\n", f->attached, f->attach_s);
    return true;
}

/* The service's and Redis's CPU while the streams sit idle. */
static void fanout_idle(bench *b, fanout_figures *f)
{
    const options *o = &b->opt;
    long long s0 = cpu_ticks_all(o->pids, o->n_pids);
    long long r0 = cpu_ticks_all(o->redis_pids, o->n_redis_pids);
    int64_t t0 = now_ns();
    double secs;

    run_for(b, o->idle_s);
    secs = (double)(now_ns() - t0) / 1e9;
    f->idle_srv_pct = cpu_pct(s0, cpu_ticks_all(o->pids, o->n_pids), secs);
    f->idle_redis_pct = cpu_pct(r0, cpu_ticks_all(o->redis_pids, o->n_redis_pids), secs);
}

static void fanout_report(bench *b, const fanout_figures *f)
{
    const options *o = &b->opt;
    double per_stream = (double)(f->rss_open - f->rss_idle) / (double)f->streams;

    fprintf(stderr,
            "fanout: %ld streams; VmRSS %ld kB idle, %ld kB open (%.1f kB/stream), %ld kB after "
            "%lld events, %ld kB closed; %lld deliveries of %lld expected in %.2f s; per stream "
            "min %lld max %lld, %d without any; idle CPU: service %.1f%%, Redis %.1f%%\n",
            f->streams, f->rss_idle, f->rss_open, per_stream, f->rss_loaded, b->pub_ok,
            f->rss_closed, b->unique, b->pub_ok * o->subscriptions, f->deliver_s, f->min, f->max,
            f->zero, f->idle_srv_pct, f->idle_redis_pct);
    snprintf(b->result, sizeof(b->result),
             "subscriptions=%d subscribers=%d streams=%ld attached=%ld attach_s=%.2f "
             "connections=%d events=%lld expected=%lld delivered=%lld unique=%lld deliver_s=%.3f "
             "min_per_stream=%lld max_per_stream=%lld streams_without=%d vmrss_idle_kb=%ld "
             "vmrss_open_kb=%ld vmrss_loaded_kb=%ld vmrss_closed_kb=%ld kb_per_stream=%.1f "
             "idle_server_cpu_pct=%.1f idle_redis_cpu_pct=%.1f max_in_flight=%d hold_acks=%d "
             "pending_after=%" PRIu64,
             o->subscriptions, o->subscribers, f->streams, f->attached, f->attach_s,
             o->sub_connections, b->pub_ok, b->pub_ok * o->subscriptions, b->delivered, b->unique,
             f->deliver_s, f->min, f->max, f->zero, f->rss_idle, f->rss_open, f->rss_loaded,
             f->rss_closed, per_stream, f->idle_srv_pct, f->idle_redis_pct, b->max_in_flight,
             o->hold_acks ? 1 : 0, f->pending);
}

static void mode_fanout(bench *b)
{
    const options *o = &b->opt;
    fanout_figures f = {.streams = (long)o->subscriptions * o->subscribers};
    int64_t t0;

    f.rss_idle = vmrss_kb(o->n_pids > 0 ? o->pids[0] : 0);
    if (!fanout_open(b, &f))
        return;
    fanout_idle(b, &f);
    f.rss_open = vmrss_kb(o->n_pids > 0 ? o->pids[0] : 0);
    t0 = now_ns();
    publish_backlog(b, 1, o->count);
    if (!run_until(b, all_delivered, 0))
        record_error(b, "stalled: %lld of %lld deliveries", b->unique,
                     b->pub_ok * o->subscriptions);
    f.deliver_s = (double)(b->t_last - t0) / 1e9;
    f.rss_loaded = vmrss_kb(o->n_pids > 0 ? o->pids[0] : 0);
    spread(b, &f.min, &f.max, &f.zero);
    f.pending = close_subs(b);
    run_for(b, 1.0);
    f.rss_closed = vmrss_kb(o->n_pids > 0 ? o->pids[0] : 0);
    fanout_report(b, &f);
}

int main(int argc, char **argv)
{
    static bench b = {.mu = PTHREAD_MUTEX_INITIALIZER, .error_mu = PTHREAD_MUTEX_INITIALIZER};
    int64_t t0;
    double cpu0;
    long sleeps0;
    int rc = 1;

    if (!parse_options(&b.opt, argc, argv))
        return 2;
    t0 = now_ns();
    cpu0 = own_cpu_seconds();
    sleeps0 = own_sleeps();
    if (!bench_open(&b)) {
        fprintf(stderr, "bench_subscribe: cannot set up the run (out of memory?)\n");
        goto out_close;
    }
    pthread_mutex_lock(&b.mu);
    if (!bench_connect(&b)) {
        fprintf(stderr, "bench_subscribe: cannot connect to %s\n", b.opt.target);
        goto out_unlock;
    }
    if (b.opt.mode == MODE_LATENCY)
        mode_latency(&b);
    else if (b.opt.mode == MODE_DRAIN)
        mode_drain(&b);
    else
        mode_fanout(&b);
    if (b.n_subs > 0 && !subs_closed(&b))
        close_subs(&b);
    for (int g = 0; g < b.n_created; g++)
        delete_subscription(&b, b.names[g]);
    if (b.errors > 0)
        fprintf(stderr, "bench_subscribe: %lld errors (first: %s)\n", b.errors, b.first_error);
    printf("RESULT mode=%s%s%s%s%s errors=%lld duplicates=%lld redelivered=%lld "
           "per_message=%d messages=%lld client_cpu_pct=%.0f client_cpu_s=%.3f client_sleeps=%ld\n",
           mode_name(b.opt.mode), b.opt.label[0] ? " label=" : "", b.opt.label,
           b.result[0] ? " " : "", b.result, b.errors, b.duplicates, b.redelivered,
           b.opt.per_message, b.messages,
           100.0 * (own_cpu_seconds() - cpu0) / ((double)(now_ns() - t0) / 1e9),
           own_cpu_seconds() - cpu0, own_sleeps() - sleeps0);
    fflush(stdout);
    rc = b.errors == 0 && b.unique > 0 ? 0 : 1;
out_unlock:
    pthread_mutex_unlock(&b.mu);
out_close:
    bench_close(&b);
    return rc;
}
