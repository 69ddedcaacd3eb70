/*
 * bench_publish.c - load generator for the event service's publish path, on
 * the gRPC C core API. One completion queue drained by one thread with
 * grpc_completion_queue_next, every call in flight at once; no thread per
 * call, so the generator costs as little CPU as possible on a machine it
 * shares with the server and Redis.
 *
 * Modes:
 *   stream   K PublishStream calls; each pipelines up to `window` unanswered
 *            events, chaining every send from the previous send completion
 *            (one SEND_MESSAGE in flight per call) with GRPC_WRITE_BUFFER_HINT
 *            on all but the first and the last queued message; a full window
 *            is refilled in bursts of a quarter window.
 *   unary    C concurrent Publish calls, closed loop (a call starts when one
 *            ends).
 *   latency  Publish calls started at a fixed rate whatever the responses
 *            (open loop); each latency counts from the call's scheduled
 *            start, so a server (or generator) that falls behind shows it.
 *            A launcher thread starts the calls on time (clock_nanosleep):
 *            a completion-queue deadline is only millisecond-accurate. How
 *            late the launcher itself was is reported (launch_lag_*).
 *
 * Threads: everything runs on the main thread (the queue's only reader)
 * except, in latency mode, the launcher, which only creates and starts
 * calls; the two share `live` (atomic) and the error record (mutex).
 *
 * Invariants: a measurement counts only responses verified to be successes
 * (status OK, a non-empty stream_id, no per-event error, no duplicate flag,
 * and with --ids the event id of the request it answers: this checks that
 * PublishStream answers in request order);
 * every other outcome is an error, counted and reported, and any error makes
 * the exit status 1. Rates count responses completed between the end of the
 * warm-up and the end of the measured interval; latencies count calls
 * started in that interval. A hinted send is only ever started when the next
 * send is already committed, so no message is left in gRPC's write buffer.
 *
 * Output: human-readable lines on stderr, one machine-readable line on
 * stdout: "RESULT mode=... events=... errors=... seconds=... rate=...".
 */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
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

#include "google/protobuf/struct.pb-c.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

#define METHOD_PUBLISH  "/tracseq.events.v1.EventService/Publish"
#define METHOD_STREAM   "/tracseq.events.v1.EventService/PublishStream"
#define MAX_CONNECTIONS 64
#define MAX_WINDOW      4000 /* the server stops reading at 4096 unanswered */
#define DRAIN_LIMIT_NS  (30LL * 1000000000LL)
#define TICK_NS         (20LL * 1000000LL)

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
    int concurrency;
    int connections;
    double rate;
    int payload_bytes;
    bool ids;
    const char *label;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_publish [options]\n"
            "  --target HOST:PORT     service address (default 127.0.0.1:50051)\n"
            "  --mode M               stream | unary | latency (default stream)\n"
            "  --duration S           measured seconds (default 10)\n"
            "  --warmup S             seconds before measuring (default 1; none with --count)\n"
            "  --count N              stop sending after N events (default: duration only)\n"
            "  --streams K            stream: concurrent PublishStream calls (default 4)\n"
            "  --window W             stream: unanswered events per stream, < 4096 (default "
            "1024)\n"
            "  --concurrency C        unary: calls in flight (default 32)\n"
            "  --rate R               latency: calls started per second (default 5000)\n"
            "  --connections N        TCP connections, calls spread round-robin (default 4)\n"
            "  --payload-bytes B      packed size of the Struct `data` payload (default 300)\n"
            "  --ids                  set a unique client event id (exercises dedup)\n"
            "  --label TEXT           extra label printed in the RESULT line\n");
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
    else if (strcmp(key, "--concurrency") == 0 && parse_number(value, 1, 100000, &v))
        o->concurrency = (int)v;
    else if (strcmp(key, "--connections") == 0 && parse_number(value, 1, MAX_CONNECTIONS, &v))
        o->connections = (int)v;
    else if (strcmp(key, "--rate") == 0 && parse_number(value, 1, 1e7, &v))
        o->rate = v;
    else if (strcmp(key, "--payload-bytes") == 0 && parse_number(value, 16, 1 << 20, &v))
        o->payload_bytes = (int)v;
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
                   .concurrency = 32,
                   .connections = 4,
                   .rate = 5000,
                   .payload_bytes = 300,
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

static gpr_timespec at_ns(int64_t when)
{
    int64_t d = when - now_ns();

    if (d < 0)
        d = 0;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(d, GPR_TIMESPAN));
}

/* ============================== requests ================================== */

/*
 * The request bytes. Without client ids every request is the same, packed
 * once and shared by reference. With ids, a request is the packed event
 * prefixed by its id field: protobuf lets a field come before the others, so
 * no per-event repacking is needed.
 */
typedef struct payload {
    uint8_t *event;    /* packed Event without id */
    size_t event_len;  /* its length */
    size_t data_len;   /* packed size of the Struct `data` */
    grpc_slice shared; /* packed PublishRequest, without id */
    uint64_t id_seed;  /* random bits of this run's ids */
    uint64_t id_next;  /* number of the next id */
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

/* Packs an Event whose `data` Struct packs to target bytes (or slightly
 * more when target is below the fixed fields' size). */
static bool payload_pack(payload *p, int target)
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
    ev.event_type = "bench.event";
    ev.source_service = "bench-publish";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    p->event_len = protobuf_c_message_get_packed_size(&ev.base);
    p->event = malloc(p->event_len);
    if (p->event != NULL)
        protobuf_c_message_pack(&ev.base, p->event);
    free(filler);
    return p->event != NULL;
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

/* PublishRequest{event = prefix + event}: field 1, length-delimited. */
static grpc_slice request_slice(const payload *p, const uint8_t *prefix, size_t prefix_len)
{
    size_t inner = prefix_len + p->event_len;
    uint8_t head[11];
    size_t n;
    grpc_slice s;

    head[0] = 0x0a;
    n = 1 + put_varint(head + 1, inner);
    s = grpc_slice_malloc(n + inner);
    memcpy(GRPC_SLICE_START_PTR(s), head, n);
    if (prefix_len > 0)
        memcpy(GRPC_SLICE_START_PTR(s) + n, prefix, prefix_len);
    memcpy(GRPC_SLICE_START_PTR(s) + n + prefix_len, p->event, p->event_len);
    return s;
}

static bool payload_init(payload *p, int target)
{
    memset(p, 0, sizeof(*p));
    if (!payload_pack(p, target))
        return false;
    p->shared = request_slice(p, NULL, 0);
    p->id_seed = (uint64_t)now_ns() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    return true;
}

static void payload_cleanup(payload *p)
{
    free(p->event);
    grpc_slice_unref(p->shared);
}

/* Id number n as a UUID (version 4 layout): the run's random bits, then n,
 * so ids are unique within a run and unlikely to repeat across runs. */
static void format_id(const payload *p, uint64_t n, char out[37])
{
    snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012" PRIx64, (unsigned)(p->id_seed >> 32),
             (unsigned)((p->id_seed >> 16) & 0xffff), (unsigned)((p->id_seed >> 4) & 0xfff),
             (unsigned)((p->id_seed ^ (p->id_seed >> 40)) & 0xfff), n & (uint64_t)0xffffffffffff);
}

/* The next request, as a byte buffer the caller destroys; *id_num is the
 * number of its id (meaningful with ids only). */
static grpc_byte_buffer *payload_next(payload *p, bool ids, uint64_t *id_num)
{
    grpc_byte_buffer *bb;
    grpc_slice s;
    uint8_t prefix[2 + 36 + 1];

    *id_num = p->id_next++;
    if (!ids)
        return grpc_raw_byte_buffer_create(&p->shared, 1);
    prefix[0] = 0x0a; /* Event.id: field 1, length-delimited */
    prefix[1] = 36;
    format_id(p, *id_num, (char *)prefix + 2);
    s = request_slice(p, prefix, 2 + 36);
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
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

typedef struct bench bench;

typedef enum tag_kind {
    TAG_STREAM_START,
    TAG_STREAM_SEND,
    TAG_STREAM_CLOSE,
    TAG_STREAM_RECV,
    TAG_STREAM_STATUS,
    TAG_UNARY
} tag_kind;

/* Every batch's tag: a small struct embedded in the call object it belongs
 * to, so dispatch needs no lookup. */
typedef struct tag {
    tag_kind kind;
    void *owner;
} tag;

struct bench {
    options opt;
    grpc_completion_queue *cq;
    grpc_channel *channels[MAX_CONNECTIONS];
    int next_channel;
    payload pl;
    int64_t t_start, t_measure, t_end;
    gpr_timespec deadline; /* of every call: the end plus DRAIN_LIMIT_NS */
    bool sending;          /* false once the measured interval (or count) is over */
    long long sent;        /* events started, all calls */
    long long reserved;    /* stream sends committed (by a hint) but not started */
    long long ok_measured, ok_total;
    long long errors;
    char first_error[256];
    atomic_int live;          /* calls not yet finished */
    atomic_bool launch_done;  /* latency mode: the launcher has returned */
    pthread_mutex_t error_mu; /* errors and first_error */
    samples lat;
    samples lag;       /* latency mode: launcher lateness, owned by the launcher */
    samples from_send; /* latency mode: latency from the actual start */
};

static void record_error(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void record_error(bench *b, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&b->error_mu);
    if (b->errors++ == 0) {
        va_start(ap, fmt);
        vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&b->error_mu);
}

/* True when a send may start now: within the interval and the count. */
static bool may_send(const bench *b)
{
    return b->sending && (b->opt.count == 0 || b->sent + b->reserved < b->opt.count);
}

/* True when got is the id numbered n; want receives that id. */
static bool id_matches(const payload *p, uint64_t n, const char *got, char want[37])
{
    format_id(p, n, want);
    return got != NULL && strcmp(got, want) == 0;
}

/* Checks one PublishResponse to the request with id number id_num (sent
 * at `started`); records success (and its latency) or error. True on
 * success. */
static bool check_response(bench *b, grpc_byte_buffer *bb, uint64_t id_num, int64_t started,
                           int64_t done)
{
    Tracseq__Events__V1__PublishResponse *r = NULL;
    grpc_byte_buffer_reader reader;
    grpc_slice all;
    char want[37] = "";
    bool ok = false;

    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb)) {
        record_error(b, "missing response message");
        return false;
    }
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    r = tracseq__events__v1__publish_response__unpack(NULL, GRPC_SLICE_LENGTH(all),
                                                      GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
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

static void check_status(bench *b, grpc_status_code code, grpc_slice details)
{
    if (code != GRPC_STATUS_OK)
        record_error(b, "status %d: %.*s", (int)code, (int)GRPC_SLICE_LENGTH(details),
                     (const char *)GRPC_SLICE_START_PTR(details));
}

static grpc_channel *pick_channel(bench *b)
{
    grpc_channel *ch = b->channels[b->next_channel];

    b->next_channel = (b->next_channel + 1) % b->opt.connections;
    return ch;
}

static grpc_call *new_call(bench *b, const char *method)
{
    grpc_slice m = grpc_slice_from_static_string(method);
    grpc_call *c = grpc_channel_create_call(pick_channel(b), NULL, GRPC_PROPAGATE_DEFAULTS, b->cq,
                                            m, NULL, b->deadline, NULL);

    grpc_slice_unref(m);
    return c;
}

/* ============================== stream mode =============================== */

/*
 * One PublishStream call. `batches` counts started batches not yet
 * completed; the call is released when it reaches zero after the status
 * arrived. Send times sit in a ring indexed by event number: responses come
 * in request order, so response n answers send n.
 */
typedef struct stream {
    bench *b;
    grpc_call *call;
    tag t_start, t_send, t_close, t_recv, t_status;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf;
    int64_t *sent_at; /* ring of window entries: when each was sent */
    uint64_t *id_at;  /* ring of window entries: each one's id number */
    long long sent, received;
    int batches;
    bool send_pending, next_committed, closed, status_done;
} stream;

/* The call is failing (its status will say why): send nothing more. */
static void stream_abandon_sends(stream *s)
{
    s->closed = true;
    if (s->next_committed)
        s->b->reserved--;
    s->next_committed = false;
}

static bool stream_batch(stream *s, const grpc_op *ops, size_t n, tag *t)
{
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, t, NULL);

    if (e != GRPC_CALL_OK) {
        record_error(s->b, "start_batch failed: %d", (int)e);
        grpc_call_cancel(s->call, NULL);
        return false;
    }
    s->batches++;
    return true;
}

/*
 * Starts the send of the next event. Its hint is set only when the send
 * after it is committed now (room in the window, more to send, and not the
 * first message): a hinted message is written only when a later send
 * flushes it. A commitment is kept even if the interval ends meanwhile.
 */
static void stream_send(stream *s)
{
    bench *b = s->b;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};

    if (s->next_committed)
        b->reserved--;
    s->sent_at[s->sent % b->opt.window] = now_ns();
    s->send_buf = payload_next(&b->pl, b->opt.ids, &s->id_at[s->sent % b->opt.window]);
    s->sent++;
    b->sent++;
    s->next_committed = s->sent > 1 && s->sent - s->received < b->opt.window && may_send(b);
    if (s->next_committed) {
        b->reserved++;
        op.flags = GRPC_WRITE_BUFFER_HINT;
    }
    op.data.send_message.send_message = s->send_buf;
    s->send_pending = stream_batch(s, &op, 1, &s->t_send);
    if (!s->send_pending) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
        stream_abandon_sends(s);
    }
}

static void stream_close(stream *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};

    s->closed = true;
    stream_batch(s, &op, 1, &s->t_close);
}

/*
 * Sends what the window allows, or half-closes once sending is over. A full
 * window is refilled only once a quarter of it was answered: refilling one
 * message per response would leave every message the last queued one, so
 * none could be hinted and each would cost a write of its own.
 */
static void stream_pump(stream *s)
{
    long long refill = s->b->opt.window / 4 > 0 ? s->b->opt.window / 4 : 1;

    if (s->send_pending || s->closed || s->status_done)
        return;
    if (s->next_committed)
        stream_send(s);
    else if (may_send(s->b)) {
        if (s->sent - s->received <= s->b->opt.window - refill)
            stream_send(s);
    } else
        stream_close(s);
}

static void stream_recv(stream *s, bool with_md)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (with_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv_buf;
    stream_batch(s, ops, n, &s->t_recv);
}

static stream *stream_create(bench *b)
{
    stream *s = calloc(1, sizeof(*s));
    grpc_op ops[1];

    if (s == NULL)
        return NULL;
    s->sent_at = calloc((size_t)b->opt.window, sizeof(int64_t));
    s->id_at = calloc((size_t)b->opt.window, sizeof(uint64_t));
    if (s->sent_at == NULL || s->id_at == NULL) {
        free(s->sent_at);
        free(s->id_at);
        free(s);
        return NULL;
    }
    s->b = b;
    s->t_start = (tag){TAG_STREAM_START, s};
    s->t_send = (tag){TAG_STREAM_SEND, s};
    s->t_close = (tag){TAG_STREAM_CLOSE, s};
    s->t_recv = (tag){TAG_STREAM_RECV, s};
    s->t_status = (tag){TAG_STREAM_STATUS, s};
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    s->call = new_call(b, METHOD_STREAM);
    b->live++;
    /* Initial metadata goes alone: a hinted message beside it is never
     * written (measured.md). */
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->send_pending = stream_batch(s, ops, 1, &s->t_start);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[0].data.recv_status_on_client.status = &s->code;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    stream_batch(s, ops, 1, &s->t_status);
    stream_recv(s, true);
    return s;
}

static void stream_destroy(stream *s)
{
    if (s == NULL)
        return;
    if (s->call != NULL)
        grpc_call_unref(s->call);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    free(s->sent_at);
    free(s->id_at);
    free(s);
}

static void stream_on_recv(stream *s, bool ok)
{
    bench *b = s->b;
    int64_t t = now_ns();

    if (!ok || s->recv_buf == NULL) {
        /* End of the response stream; the status tells why. */
        if (s->received != s->sent && ok)
            record_error(b, "stream ended after %lld of %lld responses", s->received, s->sent);
        return;
    }
    if (s->received >= s->sent)
        record_error(b, "response without a request");
    else
        check_response(b, s->recv_buf, s->id_at[s->received % b->opt.window],
                       s->sent_at[s->received % b->opt.window], t);
    s->received++;
    grpc_byte_buffer_destroy(s->recv_buf);
    s->recv_buf = NULL;
    stream_recv(s, false);
    stream_pump(s);
}

static void stream_on_event(tag *t, bool ok)
{
    stream *s = t->owner;

    s->batches--;
    switch (t->kind) {
    case TAG_STREAM_START:
    case TAG_STREAM_SEND:
        if (s->send_buf != NULL) {
            grpc_byte_buffer_destroy(s->send_buf);
            s->send_buf = NULL;
        }
        s->send_pending = false;
        if (!ok)
            stream_abandon_sends(s);
        else
            stream_pump(s);
        break;
    case TAG_STREAM_CLOSE: break;
    case TAG_STREAM_RECV: stream_on_recv(s, ok); break;
    case TAG_STREAM_STATUS:
        check_status(s->b, s->code, s->details);
        s->status_done = true;
        s->b->live--;
        break;
    default: break;
    }
    /* The status batch stays pending until the call ended, but other
     * batches may complete after it: release only when none is left. */
    if (s->batches == 0)
        stream_destroy(s);
}

/* ============================== unary modes =============================== */

/* One Publish call: all six ops in one batch, one completion. */
typedef struct unary {
    bench *b;
    grpc_call *call;
    tag t_done;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    grpc_byte_buffer *send_buf, *recv_buf;
    int64_t started; /* when the call was due (open loop) or started */
    int64_t sent_ns; /* when it was actually started */
    uint64_t id_num;
} unary;

static unary *unary_create(bench *b)
{
    unary *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return NULL;
    u->b = b;
    u->t_done = (tag){TAG_UNARY, u};
    grpc_metadata_array_init(&u->initial_md);
    grpc_metadata_array_init(&u->trailing_md);
    u->details = grpc_empty_slice();
    return u;
}

static void unary_destroy(unary *u)
{
    if (u == NULL)
        return;
    grpc_metadata_array_destroy(&u->initial_md);
    grpc_metadata_array_destroy(&u->trailing_md);
    grpc_slice_unref(u->details);
    free(u);
}

/*
 * Starts one call; `started` is when it was due (open loop) or now. Once
 * it returns true, u belongs to the completion: another thread may already
 * have finished and freed it, so the caller must not touch it. On false the
 * caller still owns u.
 */
static bool unary_start(unary *u, int64_t started)
{
    bench *b = u->b;
    grpc_op ops[6];
    grpc_call_error e;

    memset(ops, 0, sizeof(ops));
    u->started = started;
    u->send_buf = payload_next(&b->pl, b->opt.ids, &u->id_num);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send_buf;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv_buf;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
    ops[5].data.recv_status_on_client.status = &u->code;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    u->call = new_call(b, METHOD_PUBLISH);
    b->sent++;
    b->live++;
    u->sent_ns = now_ns();
    e = grpc_call_start_batch(u->call, ops, 6, &u->t_done, NULL);
    if (e != GRPC_CALL_OK) {
        /* Never queued: account for it here, as its completion would. */
        record_error(b, "start_batch failed: %d", (int)e);
        grpc_byte_buffer_destroy(u->send_buf);
        u->send_buf = NULL;
        grpc_call_unref(u->call);
        u->call = NULL;
        b->live--;
        return false;
    }
    return true;
}

/* Ends a call; returns the object to the caller for reuse (or release). */
static void unary_finish(unary *u, bool ok)
{
    bench *b = u->b;
    int64_t t = now_ns();

    if (!ok)
        record_error(b, "batch failed");
    else if (u->code != GRPC_STATUS_OK)
        check_status(b, u->code, u->details);
    else if (check_response(b, u->recv_buf, u->id_num, u->started, t) &&
             b->opt.mode == MODE_LATENCY && u->started >= b->t_measure && u->started < b->t_end)
        samples_add(&b->from_send, t - u->sent_ns);
    grpc_byte_buffer_destroy(u->send_buf);
    u->send_buf = NULL;
    if (u->recv_buf != NULL)
        grpc_byte_buffer_destroy(u->recv_buf);
    u->recv_buf = NULL;
    grpc_call_unref(u->call);
    u->call = NULL;
    grpc_metadata_array_destroy(&u->initial_md);
    grpc_metadata_array_destroy(&u->trailing_md);
    grpc_metadata_array_init(&u->initial_md);
    grpc_metadata_array_init(&u->trailing_md);
    grpc_slice_unref(u->details);
    u->details = grpc_empty_slice();
    b->live--;
}

/* Closed loop: a slot restarts at once while sending lasts. */
static void unary_on_event(tag *t, bool ok)
{
    unary *u = t->owner;

    unary_finish(u, ok);
    if (u->b->opt.mode != MODE_UNARY || !may_send(u->b) || !unary_start(u, now_ns()))
        unary_destroy(u);
}

/*
 * Open loop, on its own thread: starts call n at t_start + n / rate, late
 * or not, until the end of the interval (or the count). Only this thread
 * starts calls in latency mode, so `sent`, `sending` and the payload are its
 * own until it returns.
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
        unary *u;

        if (due >= b->t_end || (b->opt.count > 0 && b->sent >= b->opt.count))
            break;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        if ((u = unary_create(b)) == NULL) {
            record_error(b, "out of memory");
            break;
        }
        samples_add(&b->lag, now_ns() - due);
        if (!unary_start(u, due))
            unary_destroy(u);
    }
    b->sending = false;
    atomic_store(&b->launch_done, true);
    return NULL;
}

/* ============================== driver ==================================== */

static void dispatch(grpc_event ev)
{
    tag *t = ev.tag;

    if (t->kind == TAG_UNARY)
        unary_on_event(t, ev.success != 0);
    else
        stream_on_event(t, ev.success != 0);
}

static bool bench_open(bench *b)
{
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_arg arg = {
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1};
    grpc_channel_args args = {.num_args = 1, .args = &arg};

    b->cq = grpc_completion_queue_create_for_next(NULL);
    /* A local subchannel pool per channel: one TCP connection each. */
    for (int i = 0; i < b->opt.connections; i++)
        b->channels[i] = grpc_channel_create(b->opt.target, creds, &args);
    grpc_channel_credentials_release(creds);
    return payload_init(&b->pl, b->opt.payload_bytes);
}

/* Waits until every channel is connected, so connection setup is not
 * measured; false after 5 s. */
static bool bench_connect(bench *b)
{
    int64_t give_up = now_ns() + 5000000000LL;

    for (int i = 0; i < b->opt.connections; i++) {
        grpc_connectivity_state st;
        while ((st = grpc_channel_check_connectivity_state(b->channels[i], 1)) !=
               GRPC_CHANNEL_READY) {
            if (now_ns() > give_up)
                return false;
            grpc_channel_watch_connectivity_state(b->channels[i], st, at_ns(now_ns() + 100000000),
                                                  b->cq, NULL);
            /* The watch's completion carries a NULL tag; nothing else is
             * queued yet. */
            grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        }
    }
    return true;
}

static void bench_start_calls(bench *b)
{
    if (b->opt.mode == MODE_STREAM) {
        for (int i = 0; i < b->opt.streams; i++)
            if (stream_create(b) == NULL)
                record_error(b, "out of memory");
    } else if (b->opt.mode == MODE_UNARY) {
        for (int i = 0; i < b->opt.concurrency && may_send(b); i++) {
            unary *u = unary_create(b);
            if (u == NULL) {
                record_error(b, "out of memory");
                break;
            }
            if (!unary_start(u, now_ns()))
                unary_destroy(u);
        }
    }
}

/* Runs the event loop until every call finished. Calls still open
 * DRAIN_LIMIT_NS after the end fail on their deadline, so this ends. */
static void bench_loop(bench *b)
{
    bool latency = b->opt.mode == MODE_LATENCY;

    while (atomic_load(&b->live) > 0 || (latency && !atomic_load(&b->launch_done))) {
        grpc_event ev;

        /* The launcher owns `sending` in latency mode. */
        if (!latency && b->sending && (now_ns() >= b->t_end || !may_send(b)))
            b->sending = false;
        ev = grpc_completion_queue_next(b->cq, at_ns(now_ns() + TICK_NS), NULL);
        if (ev.type == GRPC_OP_COMPLETE && ev.tag != NULL)
            dispatch(ev);
    }
}

static void bench_close(bench *b)
{
    grpc_event ev;

    for (int i = 0; i < b->opt.connections; i++)
        grpc_channel_destroy(b->channels[i]);
    grpc_completion_queue_shutdown(b->cq);
    do
        ev = grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(b->cq);
    payload_cleanup(&b->pl);
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
           "p90_us=%.0f p99_us=%.0f max_us=%.0f streams=%d window=%d concurrency=%d "
           "offered=%.0f connections=%d ids=%d request_bytes=%zu data_bytes=%zu total_ok=%lld "
           "client_cpu_pct=%.0f launch_lag_p99_us=%.0f launch_lag_max_us=%.0f "
           "from_send_p99_us=%.0f\n",
           mode_name(o->mode), o->label[0] ? " label=" : "", o->label, b->ok_measured, b->errors,
           secs, rate, quantile_us(&b->lat, 0.50), quantile_us(&b->lat, 0.90),
           quantile_us(&b->lat, 0.99), quantile_us(&b->lat, 1.0),
           o->mode == MODE_STREAM ? o->streams : 0, o->mode == MODE_STREAM ? o->window : 0,
           o->mode == MODE_UNARY ? o->concurrency : 0, o->mode == MODE_LATENCY ? o->rate : 0,
           o->connections, o->ids ? 1 : 0, GRPC_SLICE_LENGTH(b->pl.shared) + (o->ids ? 38 : 0),
           b->pl.data_len, b->ok_total, wall_s > 0 ? 100.0 * cpu / wall_s : 0,
           quantile_us(&b->lag, 0.99), quantile_us(&b->lag, 1.0), quantile_us(&b->from_send, 0.99));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static bench b = {.error_mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t launcher;
    double wall;
    int rc = 1;

    if (!parse_options(&b.opt, argc, argv))
        return 2;
    grpc_init();
    if (!bench_open(&b)) {
        fprintf(stderr, "bench_publish: out of memory\n");
        goto out;
    }
    if (!bench_connect(&b)) {
        fprintf(stderr, "bench_publish: cannot connect to %s\n", b.opt.target);
        bench_close(&b);
        goto out;
    }
    b.t_start = now_ns();
    /* A counted run measures every event: a warm-up could swallow it. */
    b.t_measure = b.t_start + (b.opt.count > 0 ? 0 : (int64_t)(b.opt.warmup_s * 1e9));
    b.t_end = b.t_measure + (int64_t)(b.opt.duration_s * 1e9);
    b.deadline = at_ns(b.t_end + DRAIN_LIMIT_NS);
    b.sending = true;
    if (b.opt.mode == MODE_LATENCY) {
        if (pthread_create(&launcher, NULL, launcher_main, &b) != 0) {
            fprintf(stderr, "bench_publish: cannot start the launcher thread\n");
            bench_close(&b);
            goto out;
        }
    } else
        bench_start_calls(&b);
    bench_loop(&b);
    if (b.opt.mode == MODE_LATENCY)
        pthread_join(launcher, NULL);
    wall = (double)(now_ns() - b.t_start) / 1e9;
    /* With --count the run may end before the planned interval does. */
    if (b.opt.count > 0 && now_ns() < b.t_end)
        b.t_end = now_ns();
    report(&b, wall);
    rc = b.errors == 0 && b.ok_measured > 0 ? 0 : 1;
    bench_close(&b);
out:
    grpc_shutdown();
    return rc;
}
