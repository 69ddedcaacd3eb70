/*
 * bench_publish.c - load generator for the event service's publish path, on
 * the client SDK's asynchronous raw-bytes API (tse_client_stream_* and
 * tse_client_call_*: the one client runtime of the tree). Every call is in
 * flight at once on the SDK client's one call thread; no thread per call, so
 * the generator costs as little CPU as possible on a machine it shares with
 * the server and Redis. bench/echo_server.c is the raw gRPC ceiling to
 * compare with.
 *
 * Modes:
 *   stream   K PublishStream calls; each pipelines up to `window` unanswered
 *            events. The SDK sends one message at a time per stream, each
 *            from the previous one's completion, with GRPC_WRITE_BUFFER_HINT
 *            whenever another is queued behind it; a full window is
 *            refilled in bursts of a quarter window, so that messages are
 *            queued together and share writes.
 *            With --batch N > 1: PublishBatchStream calls instead, N events
 *            per message (the PublishRequests concatenated: that is a
 *            PublishBatchRequest), each answered by one PublishBatchResponse
 *            whose results are checked one by one; the window still counts
 *            events.
 *   unary    C concurrent Publish calls, closed loop (a call starts when one
 *            ends).
 *   latency  Publish calls started at a fixed rate whatever the responses
 *            (open loop); each latency counts from the call's scheduled
 *            start, so a server (or generator) that falls behind shows it.
 *            A launcher thread starts the calls on time (clock_nanosleep).
 *            How late the launcher itself was is reported (launch_lag_*).
 *
 * Event types: "bench.event" by default; with --types N the events take N
 * types in turn, named so that they fall in N equal parts of Redis
 * Cluster's slot space (bench_types.h): every master of a cluster gets its
 * share of the load.
 *
 * Threads: the SDK's call thread runs every handler; the main thread starts
 * the calls and waits; in latency mode the launcher starts calls too. All
 * of them share the run's state under `mu` (handlers hold it while they
 * run; the SDK never calls a handler while holding a lock of its own, so
 * handlers may start, send and close under it).
 *
 * Invariants: a measurement counts only responses verified to be successes
 * (status OK, a non-empty stream_id, no per-event error, no duplicate flag,
 * and with --ids the event id of the request it answers: this checks that
 * PublishStream answers in request order);
 * every other outcome is an error, counted and reported, and any error makes
 * the exit status 1. Rates count responses completed between the end of the
 * warm-up and the end of the measured interval; latencies count calls
 * started in that interval.
 *
 * Output: human-readable lines on stderr, one machine-readable line on
 * stdout: "RESULT mode=... events=... errors=... seconds=... rate=...".
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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

#define METHOD_PUBLISH  "/tracseq.events.v1.EventService/Publish"
#define METHOD_STREAM   "/tracseq.events.v1.EventService/PublishStream"
#define METHOD_BATCH    "/tracseq.events.v1.EventService/PublishBatchStream"
#define MAX_BATCH       1000 /* the service's limit per message */
#define MAX_CONNECTIONS 64
#define MAX_WINDOW      4000 /* the server stops reading at 4096 unanswered */
#define DRAIN_LIMIT_NS  (30LL * 1000000000LL)

/* ============================== settings ================================== */

typedef enum mode { MODE_STREAM, MODE_UNARY, MODE_LATENCY } mode;

typedef struct options {
    const char *target;
    mode mode;
    double duration_s;
    double warmup_s;
    long long count; /* 0: bounded by duration only */
    int streams;
    int window;
    int batch; /* events per message; > 1: PublishBatchStream */
    int concurrency;
    int connections;
    double rate;
    int payload_bytes;
    int types; /* event types, taken in turn (bench_types.h) */
    bool ids;
    const char *label;
    const char *tls_ca; /* PEM file: TLS to the service (NULL: plaintext) */
    const char *token;  /* bearer token on every call (NULL: none) */
    /* W3C traceparent metadata on every call (NULL: none): what carrying a
     * trace context costs (docs/tracing.md) */
    tse_client_metadata trace;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_publish [options]\n"
            "  --target HOST:PORT     service address (default 127.0.0.1:50051)\n"
            "  --mode M               stream | unary | latency (default stream)\n"
            "  --tls-ca FILE          TLS to the service, trusting this PEM CA\n"
            "  --token TOKEN          bearer token on every call (identity bench-publish)\n"
            "  --traceparent TP       W3C traceparent metadata on every call: every\n"
            "                         event gets it\n"
            "  --duration S           measured seconds (default 10)\n"
            "  --warmup S             seconds before measuring (default 1; none with --count)\n"
            "  --count N              stop sending after N events (default: duration only)\n"
            "  --streams K            stream: concurrent PublishStream calls (default 4)\n"
            "  --window W             stream: unanswered events per stream, < 4096 (default "
            "1024)\n"
            "  --batch N              stream: events per message, 1..1000; > 1 uses "
            "PublishBatchStream (default 1)\n"
            "  --concurrency C        unary: calls in flight (default 32)\n"
            "  --rate R               latency: calls started per second (default 5000)\n"
            "  --connections N        TCP connections, calls spread round-robin (default 4)\n"
            "  --payload-bytes B      packed size of the Struct `data` payload (default 300)\n"
            "  --types N              events take N types in turn, spread over the cluster's\n"
            "                         slot space (bench_types.h), 1..%d (default 1: bench.event)\n"
            "  --ids                  set a unique client event id (exercises dedup)\n"
            "  --label TEXT           extra label printed in the RESULT line\n",
            BENCH_TYPES_MAX);
}

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

/* Parses one "--key value" pair; false on an unknown key or a bad value. */
static bool parse_option(options *o, const char *key, const char *value)
{
    double v = 0;

    if (strcmp(key, "--target") == 0)
        o->target = value;
    else if (strcmp(key, "--tls-ca") == 0)
        o->tls_ca = value;
    else if (strcmp(key, "--token") == 0)
        o->token = value;
    else if (strcmp(key, "--traceparent") == 0)
        o->trace = (tse_client_metadata){"traceparent", value};
    else if (strcmp(key, "--label") == 0)
        o->label = value;
    else if (strcmp(key, "--mode") == 0) {
        if (strcmp(value, "stream") == 0)
            o->mode = MODE_STREAM;
        else if (strcmp(value, "unary") == 0)
            o->mode = MODE_UNARY;
        else if (strcmp(value, "latency") == 0)
            o->mode = MODE_LATENCY;
        else
            return false;
    } else if (strcmp(key, "--duration") == 0 && parse_number(value, 0.1, 3600, &v))
        o->duration_s = v;
    else if (strcmp(key, "--warmup") == 0 && parse_number(value, 0, 600, &v))
        o->warmup_s = v;
    else if (strcmp(key, "--count") == 0 && parse_number(value, 1, 1e12, &v))
        o->count = (long long)v;
    else if (strcmp(key, "--streams") == 0 && parse_number(value, 1, 1024, &v))
        o->streams = (int)v;
    else if (strcmp(key, "--window") == 0 && parse_number(value, 1, MAX_WINDOW, &v))
        o->window = (int)v;
    else if (strcmp(key, "--batch") == 0 && parse_number(value, 1, MAX_BATCH, &v))
        o->batch = (int)v;
    else if (strcmp(key, "--concurrency") == 0 && parse_number(value, 1, 100000, &v))
        o->concurrency = (int)v;
    else if (strcmp(key, "--connections") == 0 && parse_number(value, 1, MAX_CONNECTIONS, &v))
        o->connections = (int)v;
    else if (strcmp(key, "--rate") == 0 && parse_number(value, 1, 1e7, &v))
        o->rate = v;
    else if (strcmp(key, "--payload-bytes") == 0 && parse_number(value, 16, 1 << 20, &v))
        o->payload_bytes = (int)v;
    else if (strcmp(key, "--types") == 0 && parse_number(value, 1, BENCH_TYPES_MAX, &v))
        o->types = (int)v;
    else
        return false;
    return true;
}

static bool parse_options(options *o, int argc, char **argv)
{
    *o = (options){.target = "127.0.0.1:50051",
                   .mode = MODE_STREAM,
                   .duration_s = 10,
                   .warmup_s = 1,
                   .streams = 4,
                   .window = 1024,
                   .batch = 1,
                   .concurrency = 32,
                   .connections = 4,
                   .rate = 5000,
                   .payload_bytes = 300,
                   .types = 1,
                   .label = ""};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--ids") == 0) {
            o->ids = true;
            continue;
        }
        if (i + 1 >= argc || !parse_option(o, argv[i], argv[i + 1])) {
            fprintf(stderr, "bench_publish: bad option '%s'\n", argv[i]);
            usage(stderr);
            return false;
        }
        i++;
    }
    return true;
}

static const char *mode_name(mode m)
{
    switch (m) {
    case MODE_STREAM: return "stream";
    case MODE_UNARY: return "unary";
    case MODE_LATENCY: return "latency";
    }
    return "?";
}

/* ============================== clock ===================================== */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ============================== requests ================================== */

/*
 * The request bytes, one set per event type (--types; events take the
 * types in turn). Without client ids every request of a type is the same,
 * packed once and shared by reference. With ids, a request is the packed
 * event prefixed by its id field: protobuf lets a field come before the
 * others, so no per-event repacking is needed.
 */
typedef struct payload {
    int types;                          /* event types in use */
    uint8_t *event[BENCH_TYPES_MAX];    /* packed Event without id */
    size_t event_len[BENCH_TYPES_MAX];  /* its length */
    size_t data_len;                    /* packed size of the Struct `data` */
    uint8_t *shared[BENCH_TYPES_MAX];   /* packed PublishRequest, without id */
    size_t shared_len[BENCH_TYPES_MAX]; /* its length */
    uint8_t *scratch;                   /* with ids: the request being built */
    uint64_t id_seed;                   /* random bits of this run's ids */
    uint64_t id_next;                   /* number of the next id */
} payload;

/* One string field of the Struct payload. */
static void set_field(Google__Protobuf__Struct__FieldsEntry *e, Google__Protobuf__Value *v,
                      const char *key, char *value)
{
    google__protobuf__value__init(v);
    v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v->string_value = value;
    google__protobuf__struct__fields_entry__init(e);
    e->key = (char *)key;
    e->value = v;
}

/* Packs an Event of type `type` into p's slot t, whose `data` Struct
 * packs to target bytes (or slightly more when target is below the fixed
 * fields' size). */
static bool payload_pack(payload *p, int t, const char *type, int target)
{
    static const char *keys[] = {"sample_id", "lab", "note"};
    char *values[3] = {"S-000042", "genomics-3", NULL};
    Google__Protobuf__Struct__FieldsEntry entries[3], *ep[3];
    Google__Protobuf__Value vals[3];
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    char *filler = calloc((size_t)target + 1, 1);
    size_t fill = 0;

    if (filler == NULL)
        return false;
    values[2] = filler;
    for (int i = 0; i < 3; i++) {
        set_field(&entries[i], &vals[i], keys[i], values[i]);
        ep[i] = &entries[i];
    }
    data.n_fields = 3;
    data.fields = ep;
    /* Grow the filler until the packed Struct reaches the target; varint
     * lengths make the size step unevenly, so search rather than compute. */
    while (protobuf_c_message_get_packed_size(&data.base) < (size_t)target &&
           fill < (size_t)target) {
        filler[fill] = (char)('a' + fill % 26);
        fill++;
    }
    p->data_len = protobuf_c_message_get_packed_size(&data.base);
    ev.event_type = (char *)type;
    ev.source_service = "bench-publish";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    p->event_len[t] = protobuf_c_message_get_packed_size(&ev.base);
    p->event[t] = malloc(p->event_len[t]);
    if (p->event[t] != NULL)
        protobuf_c_message_pack(&ev.base, p->event[t]);
    free(filler);
    return p->event[t] != NULL;
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

/* PublishRequest{event = prefix + event of type t}: field 1,
 * length-delimited, into out (room for 11 + prefix_len + event_len[t]
 * bytes); returns its length. */
static size_t request_pack(const payload *p, int t, const uint8_t *prefix, size_t prefix_len,
                           uint8_t *out)
{
    size_t inner = prefix_len + p->event_len[t];
    size_t n;

    out[0] = 0x0a;
    n = 1 + put_varint(out + 1, inner);
    if (prefix_len > 0)
        memcpy(out + n, prefix, prefix_len);
    memcpy(out + n + prefix_len, p->event[t], p->event_len[t]);
    return n + inner;
}

/* The requests of `types` event types (bench_types.h names them after
 * "bench.event"). Caller cleans up with payload_cleanup, even on failure. */
static bool payload_init(payload *p, int types, int target)
{
    char names[BENCH_TYPES_MAX][BENCH_TYPE_LEN];
    size_t longest = 0;

    memset(p, 0, sizeof(*p));
    if (!bench_type_names("bench.event", types, names))
        return false;
    p->types = types;
    for (int t = 0; t < types; t++) {
        if (!payload_pack(p, t, names[t], target) ||
            (p->shared[t] = malloc(11 + p->event_len[t])) == NULL)
            return false;
        p->shared_len[t] = request_pack(p, t, NULL, 0, p->shared[t]);
        if (p->event_len[t] > longest)
            longest = p->event_len[t];
    }
    p->scratch = malloc(11 + 2 + 36 + 1 + longest);
    if (p->scratch == NULL)
        return false;
    p->id_seed = (uint64_t)now_ns() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    return true;
}

static void payload_cleanup(payload *p)
{
    for (int t = 0; t < BENCH_TYPES_MAX; t++) {
        free(p->event[t]);
        free(p->shared[t]);
    }
    free(p->scratch);
}

/* Id number n as a UUID (version 4 layout): the run's random bits, then n,
 * so ids are unique within a run and unlikely to repeat across runs. */
static void format_id(const payload *p, uint64_t n, char out[37])
{
    snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012" PRIx64, (unsigned)(p->id_seed >> 32),
             (unsigned)((p->id_seed >> 16) & 0xffff), (unsigned)((p->id_seed >> 4) & 0xfff),
             (unsigned)((p->id_seed ^ (p->id_seed >> 40)) & 0xfff), n & (uint64_t)0xffffffffffff);
}

/* The next request's bytes (valid until the next call; the SDK copies
 * them); *id_num is the number of its id (meaningful with ids only). */
static const uint8_t *payload_next(payload *p, bool ids, uint64_t *id_num, size_t *len)
{
    uint8_t prefix[2 + 36 + 1];
    int t;

    *id_num = p->id_next++;
    t = (int)(*id_num % (uint64_t)p->types);
    if (!ids) {
        *len = p->shared_len[t];
        return p->shared[t];
    }
    prefix[0] = 0x0a; /* Event.id: field 1, length-delimited */
    prefix[1] = 36;
    format_id(p, *id_num, (char *)prefix + 2);
    *len = request_pack(p, t, prefix, 2 + 36, p->scratch);
    return p->scratch;
}

/* ============================== results =================================== */

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

/* ============================== the run =================================== */

typedef struct bench {
    options opt;
    tse_client *client;
    int64_t t_start, t_measure, t_end;
    pthread_mutex_t mu;     /* everything below */
    pthread_cond_t changed; /* live or launch_done changed */
    payload pl;
    bool sending;   /* false once the measured interval (or count) is over */
    long long sent; /* events started, all calls */
    long long ok_measured, ok_total;
    long long errors;
    char first_error[256];
    int live;         /* calls not yet ended */
    bool launch_done; /* latency mode: the launcher has returned */
    samples lat;
    samples lag;       /* latency mode: launcher lateness */
    samples from_send; /* latency mode: latency from the actual start */
} bench;

static void record_error(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Under mu. */
static void record_error(bench *b, const char *fmt, ...)
{
    va_list ap;

    if (b->errors++ == 0) {
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
        va_end(ap);
    }
}

/* True when a send may start now: within the interval and the count. */
static bool may_send(const bench *b)
{
    return b->sending && (b->opt.count == 0 || b->sent < b->opt.count);
}

/* True when got is the id numbered n; want receives that id. */
static bool id_matches(const payload *p, uint64_t n, const char *got, char want[37])
{
    format_id(p, n, want);
    return got != NULL && strcmp(got, want) == 0;
}

/* Checks one PublishResponse to the request with id number id_num (sent
 * at `started`); records success (and its latency) or error. True on
 * success. Under mu. */
static bool check_response(bench *b, const void *data, size_t len, uint64_t id_num, int64_t started,
                           int64_t done)
{
    Tracseq__Events__V1__PublishResponse *r =
        tracseq__events__v1__publish_response__unpack(NULL, len, data);
    char want[37] = "";
    bool ok = false;

    if (r == NULL)
        record_error(b, "undecodable PublishResponse");
    else if (r->error != NULL)
        record_error(b, "event error %d: %s", r->error->code, r->error->message);
    else if (r->stream_id == NULL || r->stream_id[0] == '\0')
        record_error(b, "response without stream_id");
    else if (r->duplicate)
        record_error(b, "unexpected duplicate for event %s", r->event_id);
    else if (b->opt.ids && !id_matches(&b->pl, id_num, r->event_id, want))
        record_error(b, "response for event %s where %s was expected", r->event_id, want);
    else {
        ok = true;
        b->ok_total++;
        if (done >= b->t_measure && done <= b->t_end)
            b->ok_measured++;
        if (started >= b->t_measure && started < b->t_end)
            samples_add(&b->lat, done - started);
    }
    if (r != NULL)
        tracseq__events__v1__publish_response__free_unpacked(r, NULL);
    return ok;
}

/* A call's end (under mu): an error unless status is OK. */
static void check_end(bench *b, tse_client_status status, const tse_client_error *err)
{
    if (status != TSE_CLIENT_OK)
        record_error(b, "status %d: %s", err != NULL ? err->grpc_code : -1,
                     err != NULL ? err->message : tse_client_status_name(status));
}

/* Every call's deadline: the end of the interval plus DRAIN_LIMIT_NS. */
static tse_client_call_options call_options(const bench *b)
{
    int64_t left = b->t_end + DRAIN_LIMIT_NS - now_ns();

    return (tse_client_call_options){.timeout_ms = left > 1000000 ? (int)(left / 1000000) : 1,
                                     .metadata = &b->opt.trace,
                                     .n_metadata = b->opt.trace.key != NULL};
}

/* A call ended (under mu). The main thread waits for the last one only
 * (in latency mode, once the launcher is done): a wake per call would
 * cost a context switch per event. */
static void call_ended(bench *b)
{
    if (--b->live == 0 && (b->opt.mode != MODE_LATENCY || b->launch_done))
        pthread_cond_signal(&b->changed);
}

/* ============================== stream mode =============================== */

/*
 * One PublishStream call. Send times sit in a ring indexed by event number:
 * responses come in request order, so response n answers send n.
 */
typedef struct stream {
    bench *b;
    tse_client_stream *h;
    int64_t *sent_at; /* ring of window entries: when each was sent */
    uint64_t *id_at;  /* ring of window entries: each one's id number */
    uint8_t *msg;     /* --batch: the message being built */
    size_t msg_cap;
    long long sent, received;
    bool closed;
} stream;

/* The next event's bytes, recorded in the ring (under mu). */
static const uint8_t *stream_next(stream *s, size_t *len)
{
    bench *b = s->b;
    const uint8_t *req;

    s->sent_at[s->sent % b->opt.window] = now_ns();
    req = payload_next(&b->pl, b->opt.ids, &s->id_at[s->sent % b->opt.window], len);
    s->sent++;
    b->sent++;
    return req;
}

/* The next message: one event, or --batch events concatenated (under mu);
 * NULL when out of memory. */
static const uint8_t *stream_message(stream *s, size_t *len)
{
    bench *b = s->b;
    size_t at = 0;

    if (b->opt.batch == 1)
        return stream_next(s, len);
    for (int i = 0; i < b->opt.batch && may_send(b); i++) {
        size_t one;
        const uint8_t *req = stream_next(s, &one);
        if (at + one > s->msg_cap) {
            size_t cap = 2 * (at + one);
            uint8_t *grown = realloc(s->msg, cap);
            if (grown == NULL)
                return NULL;
            s->msg = grown;
            s->msg_cap = cap;
        }
        memcpy(s->msg + at, req, one);
        at += one;
    }
    *len = at;
    return s->msg;
}

/*
 * Queues what the window allows, or half-closes once sending is over (the
 * server answers what it got, then ends the stream). A full window is
 * refilled only once a quarter of it was answered: refilling one message
 * per response would leave every message the last queued one, so none
 * could be hinted and each would cost a write of its own. Under mu.
 */
static void stream_pump(stream *s)
{
    bench *b = s->b;
    long long refill = b->opt.window / 4 > 0 ? b->opt.window / 4 : 1;
    size_t len;

    if (s->closed)
        return;
    if (!may_send(b)) {
        s->closed = true;
        tse_client_stream_close_send(s->h);
        return;
    }
    if (s->sent - s->received > b->opt.window - refill)
        return;
    while (s->sent - s->received + b->opt.batch <= b->opt.window && may_send(b)) {
        const uint8_t *req = stream_message(s, &len);
        if (req == NULL || tse_client_stream_send(s->h, req, len) != TSE_CLIENT_OK) {
            s->closed = true; /* the stream ended: on_end says why */
            return;
        }
    }
    if (!may_send(b)) {
        s->closed = true;
        tse_client_stream_close_send(s->h);
    }
}

/* A varint within [*at, end); false when truncated. */
static bool read_varint(const uint8_t **at, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;

    for (int shift = 0; shift < 64 && *at < end; shift += 7) {
        uint8_t byte = *(*at)++;
        v |= (uint64_t)(byte & 0x7F) << shift;
        if ((byte & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* A PublishBatchResponse: each result (field 1) checked as a
 * PublishResponse to the next event sent. Under mu. */
static void stream_batch_results(stream *s, const uint8_t *at, size_t len, int64_t t)
{
    const uint8_t *end = at + len;
    bench *b = s->b;
    uint64_t tag, size;

    while (at < end) {
        if (!read_varint(&at, end, &tag) || tag != 0x0a || !read_varint(&at, end, &size) ||
            size > (uint64_t)(end - at)) {
            record_error(b, "a batch response refusing the batch, or bad bytes");
            return;
        }
        if (s->received >= s->sent) {
            record_error(b, "a result without a request");
            return;
        }
        check_response(b, at, (size_t)size, s->id_at[s->received % b->opt.window],
                       s->sent_at[s->received % b->opt.window], t);
        s->received++;
        at += size;
    }
}

static void stream_on_message(void *arg, const void *msg, size_t len)
{
    stream *s = arg;
    bench *b = s->b;
    int64_t t = now_ns();

    pthread_mutex_lock(&b->mu);
    if (b->opt.batch > 1) {
        stream_batch_results(s, msg, len, t);
    } else {
        if (s->received >= s->sent)
            record_error(b, "response without a request");
        else
            check_response(b, msg, len, s->id_at[s->received % b->opt.window],
                           s->sent_at[s->received % b->opt.window], t);
        s->received++;
    }
    stream_pump(s);
    pthread_mutex_unlock(&b->mu);
}

static void stream_destroy(stream *s)
{
    if (s == NULL)
        return;
    tse_client_stream_release(s->h);
    free(s->msg);
    free(s->sent_at);
    free(s->id_at);
    free(s);
}

static void stream_on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    stream *s = arg;
    bench *b = s->b;

    pthread_mutex_lock(&b->mu);
    check_end(b, status, err);
    if (status == TSE_CLIENT_OK && s->received != s->sent)
        record_error(b, "stream ended after %lld of %lld responses", s->received, s->sent);
    call_ended(b);
    pthread_mutex_unlock(&b->mu);
    stream_destroy(s);
}

/* Starts one stream with its first event, then fills its window (under
 * mu, so its handlers wait until the handle is stored). */
static bool stream_create(bench *b)
{
    static const tse_client_stream_handlers h = {stream_on_message, stream_on_end};
    tse_client_call_options o = call_options(b);
    stream *s = calloc(1, sizeof(*s));
    const uint8_t *first;
    tse_client_error err;
    size_t len;

    if (s == NULL || (s->sent_at = calloc((size_t)b->opt.window, sizeof(int64_t))) == NULL ||
        (s->id_at = calloc((size_t)b->opt.window, sizeof(uint64_t))) == NULL) {
        record_error(b, "out of memory");
        stream_destroy(s);
        return false;
    }
    s->b = b;
    first = stream_message(s, &len);
    if (first == NULL ||
        tse_client_stream_start(b->client, b->opt.batch > 1 ? METHOD_BATCH : METHOD_STREAM, first,
                                len, &o, &h, s, &s->h, &err) != TSE_CLIENT_OK) {
        record_error(b, "%s: %s", b->opt.batch > 1 ? "PublishBatchStream" : "PublishStream",
                     err.message);
        stream_destroy(s);
        return false;
    }
    b->live++;
    stream_pump(s);
    return true;
}

/* ============================== unary modes =============================== */

/* One Publish call. */
typedef struct unary {
    bench *b;
    int64_t started; /* when the call was due (open loop) or started */
    int64_t sent_ns; /* when it was actually started */
    uint64_t id_num;
} unary;

static void unary_on_end(void *arg, tse_client_status status, const tse_client_error *err,
                         const void *response, size_t len);

/*
 * Starts one call; `started` is when it was due (open loop) or now. False
 * (the error recorded) when the SDK refused it: then the callback will not
 * come and the caller still owns u. Under mu.
 */
static bool unary_start(unary *u, int64_t started)
{
    bench *b = u->b;
    tse_client_call_options o = call_options(b);
    const uint8_t *req;
    tse_client_error err;
    size_t len;

    u->started = started;
    req = payload_next(&b->pl, b->opt.ids, &u->id_num, &len);
    b->sent++;
    u->sent_ns = now_ns();
    if (tse_client_call_start(b->client, METHOD_PUBLISH, req, len, &o, unary_on_end, u, NULL,
                              &err) != TSE_CLIENT_OK) {
        record_error(b, "Publish: %s", err.message);
        return false;
    }
    b->live++;
    return true;
}

/* Checks the answer; closed loop: the slot restarts at once while sending
 * lasts. */
static void unary_on_end(void *arg, tse_client_status status, const tse_client_error *err,
                         const void *response, size_t len)
{
    unary *u = arg;
    bench *b = u->b;
    int64_t t = now_ns();

    pthread_mutex_lock(&b->mu);
    if (status != TSE_CLIENT_OK)
        check_end(b, status, err);
    else if (check_response(b, response, len, u->id_num, u->started, t) &&
             b->opt.mode == MODE_LATENCY && u->started >= b->t_measure && u->started < b->t_end)
        samples_add(&b->from_send, t - u->sent_ns);
    call_ended(b);
    if (b->opt.mode != MODE_UNARY || !may_send(b) || !unary_start(u, now_ns()))
        free(u);
    pthread_mutex_unlock(&b->mu);
}

/*
 * Latency mode: starts the call due at `due`. Only the launcher starts calls
 * in this mode, so the payload and `sent` are its own (the handlers read
 * neither) and the call starts outside mu: the call thread never waits for
 * a start to answer the calls before it. False when out of memory.
 */
static bool launch_one(bench *b, int64_t due)
{
    tse_client_call_options o = call_options(b);
    unary *u = calloc(1, sizeof(*u));
    int64_t late = now_ns() - due;
    const uint8_t *req;
    tse_client_error err;
    size_t len;

    pthread_mutex_lock(&b->mu);
    samples_add(&b->lag, late);
    if (u == NULL)
        record_error(b, "out of memory");
    else
        b->live++; /* before the start: the end may come at once */
    pthread_mutex_unlock(&b->mu);
    if (u == NULL)
        return false;
    u->b = b;
    u->started = due;
    req = payload_next(&b->pl, b->opt.ids, &u->id_num, &len);
    b->sent++;
    u->sent_ns = now_ns();
    if (tse_client_call_start(b->client, METHOD_PUBLISH, req, len, &o, unary_on_end, u, NULL,
                              &err) != TSE_CLIENT_OK) {
        pthread_mutex_lock(&b->mu);
        record_error(b, "Publish: %s", err.message);
        call_ended(b);
        pthread_mutex_unlock(&b->mu);
        free(u);
    }
    return true;
}

/*
 * Open loop, on its own thread: starts call n at t_start + n / rate, late
 * or not, until the end of the interval (or the count).
 */
static void *launcher_main(void *arg)
{
    bench *b = arg;
    double period = 1e9 / b->opt.rate;

    /* The default 50 us timer slack would make every call that late. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    for (;;) {
        int64_t due = b->t_start + (int64_t)((double)b->sent * period);
        struct timespec ts = {(time_t)(due / 1000000000LL), (long)(due % 1000000000LL)};

        if (due >= b->t_end || (b->opt.count > 0 && b->sent >= b->opt.count))
            break;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        if (!launch_one(b, due))
            break;
    }
    pthread_mutex_lock(&b->mu);
    b->sending = false;
    b->launch_done = true;
    pthread_cond_signal(&b->changed);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ============================== driver ==================================== */

static bool bench_open(bench *b)
{
    tse_client_options o = {.target = b->opt.target,
                            .source_service = "bench-publish",
                            .timeout_ms = 5000,
                            .channels = b->opt.connections,
                            .token = b->opt.token};
    tse_client_error err;
    char *ca = NULL;

    if (b->opt.tls_ca != NULL) {
        FILE *f = fopen(b->opt.tls_ca, "r");
        ca = calloc(1, 1 << 20);
        if (f == NULL || ca == NULL || fread(ca, 1, (1 << 20) - 1, f) == 0) {
            fprintf(stderr, "bench_publish: cannot read %s\n", b->opt.tls_ca);
            return false;
        }
        fclose(f);
        o.tls_root_certs_pem = ca;
    }
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&b->changed, &a);
    pthread_condattr_destroy(&a);
    if (tse_client_connect(&o, &b->client, &err) != TSE_CLIENT_OK) {
        fprintf(stderr, "bench_publish: %s\n", err.message);
        free(ca);
        return false;
    }
    free(ca); /* copied */
    return payload_init(&b->pl, b->opt.types, b->opt.payload_bytes);
}

/*
 * Connects before measuring: two health checks per connection at once (the
 * first asks every connection to connect, the SDK takes a ready one in
 * turn), so connection setup is not measured. Any answer but UNAVAILABLE
 * counts, a deadline too: bench/echo_server.c serves PublishStream only.
 */
static bool bench_connect(bench *b)
{
    tse_client_call_options o = {.timeout_ms = 1000};
    bench_probe p = {.mu = &b->mu, .changed = &b->changed};
    bool ok;

    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < 2 * b->opt.connections; i++)
        bench_probe_start(&p, b->client, &o);
    ok = bench_probe_wait(&p);
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static void bench_start_calls(bench *b)
{
    pthread_mutex_lock(&b->mu);
    if (b->opt.mode == MODE_STREAM) {
        for (int i = 0; i < b->opt.streams && may_send(b); i++)
            stream_create(b);
    } else if (b->opt.mode == MODE_UNARY) {
        for (int i = 0; i < b->opt.concurrency && may_send(b); i++) {
            unary *u = calloc(1, sizeof(*u));
            if (u == NULL) {
                record_error(b, "out of memory");
                break;
            }
            u->b = b;
            if (!unary_start(u, now_ns()))
                free(u);
        }
    }
    pthread_mutex_unlock(&b->mu);
}

/* Ends sending at the end of the interval, then waits until every call
 * ended. Calls still open DRAIN_LIMIT_NS after the end fail on their
 * deadline, so this ends. */
static void bench_wait(bench *b)
{
    bool latency = b->opt.mode == MODE_LATENCY;
    struct timespec end = {(time_t)(b->t_end / 1000000000LL), (long)(b->t_end % 1000000000LL)};

    pthread_mutex_lock(&b->mu);
    while ((b->live > 0 || (latency && !b->launch_done)) && now_ns() < b->t_end)
        pthread_cond_timedwait(&b->changed, &b->mu, &end);
    if (!latency) /* the launcher owns `sending` in latency mode */
        b->sending = false;
    while (b->live > 0 || (latency && !b->launch_done))
        pthread_cond_wait(&b->changed, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static void bench_close(bench *b)
{
    tse_client_destroy(b->client);
    payload_cleanup(&b->pl);
    pthread_cond_destroy(&b->changed);
    free(b->lat.v);
    free(b->lag.v);
    free(b->from_send.v);
}

/* CPU seconds (user + system) this process used so far. */
static double cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void report(bench *b, double wall_s)
{
    const options *o = &b->opt;
    double secs = (double)(b->t_end - b->t_measure) / 1e9;
    double rate = secs > 0 ? (double)b->ok_measured / secs : 0;
    double cpu = cpu_seconds();

    samples_sort(&b->lat);
    samples_sort(&b->lag);
    samples_sort(&b->from_send);
    if (o->mode == MODE_LATENCY)
        fprintf(stderr,
                "latency: the launcher started calls late by p50 %.0f us, p99 %.0f us, max %.0f "
                "us; from the actual start: p50 %.0f us, p99 %.0f us\n",
                quantile_us(&b->lag, 0.5), quantile_us(&b->lag, 0.99), quantile_us(&b->lag, 1.0),
                quantile_us(&b->from_send, 0.5), quantile_us(&b->from_send, 0.99));
    fprintf(stderr,
            "%s: %lld events in %.2f s measured = %.0f events/s; latency p50 %.0f us, p90 %.0f "
            "us, p99 %.0f us, max %.0f us; errors %lld%s%s%s\n",
            mode_name(o->mode), b->ok_measured, secs, rate, quantile_us(&b->lat, 0.50),
            quantile_us(&b->lat, 0.90), quantile_us(&b->lat, 0.99), quantile_us(&b->lat, 1.0),
            b->errors, b->errors ? " (first: " : "", b->errors ? b->first_error : "",
            b->errors ? ")" : "");
    fflush(stderr);
    printf("RESULT mode=%s%s%s events=%lld errors=%lld seconds=%.3f rate=%.1f p50_us=%.0f "
           "p90_us=%.0f p99_us=%.0f max_us=%.0f streams=%d window=%d batch=%d concurrency=%d "
           "offered=%.0f connections=%d types=%d ids=%d request_bytes=%zu data_bytes=%zu "
           "total_ok=%lld "
           "client_cpu_pct=%.0f launch_lag_p99_us=%.0f launch_lag_max_us=%.0f "
           "from_send_p99_us=%.0f\n",
           mode_name(o->mode), o->label[0] ? " label=" : "", o->label, b->ok_measured, b->errors,
           secs, rate, quantile_us(&b->lat, 0.50), quantile_us(&b->lat, 0.90),
           quantile_us(&b->lat, 0.99), quantile_us(&b->lat, 1.0),
           o->mode == MODE_STREAM ? o->streams : 0, o->mode == MODE_STREAM ? o->window : 0,
           o->mode == MODE_STREAM ? o->batch : 1, o->mode == MODE_UNARY ? o->concurrency : 0,
           o->mode == MODE_LATENCY ? o->rate : 0, o->connections, o->types, o->ids ? 1 : 0,
           b->pl.shared_len[0] + (o->ids ? 38 : 0), b->pl.data_len, b->ok_total,
           wall_s > 0 ? 100.0 * cpu / wall_s : 0, quantile_us(&b->lag, 0.99),
           quantile_us(&b->lag, 1.0), quantile_us(&b->from_send, 0.99));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static bench b = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t launcher;
    double wall;
    int rc;

    if (!parse_options(&b.opt, argc, argv))
        return 2;
    if (!bench_open(&b) || !bench_connect(&b)) {
        fprintf(stderr, "bench_publish: cannot connect to %s\n", b.opt.target);
        bench_close(&b);
        return 1;
    }
    b.t_start = now_ns();
    /* A counted run measures every event: a warm-up could swallow it. */
    b.t_measure = b.t_start + (b.opt.count > 0 ? 0 : (int64_t)(b.opt.warmup_s * 1e9));
    b.t_end = b.t_measure + (int64_t)(b.opt.duration_s * 1e9);
    b.sending = true;
    if (b.opt.mode == MODE_LATENCY) {
        if (pthread_create(&launcher, NULL, launcher_main, &b) != 0) {
            fprintf(stderr, "bench_publish: cannot start the launcher thread\n");
            bench_close(&b);
            return 1;
        }
    } else
        bench_start_calls(&b);
    bench_wait(&b);
    if (b.opt.mode == MODE_LATENCY)
        pthread_join(launcher, NULL);
    wall = (double)(now_ns() - b.t_start) / 1e9;
    /* With --count the run may end before the planned interval does. */
    if (b.opt.count > 0 && now_ns() < b.t_end)
        b.t_end = now_ns();
    pthread_mutex_lock(&b.mu);
    report(&b, wall);
    rc = b.errors == 0 && b.ok_measured > 0 ? 0 : 1;
    pthread_mutex_unlock(&b.mu);
    bench_close(&b);
    return rc;
}
