/*
 * publish.c - POST /api/v1/events/publish and POST /api/v1/events/batch:
 * JSON (or a CloudEvent, structured or binary mode: src/domain/cloudevent.c) to a
 * tracseq.events.v1.Event (application/json through event_reader.c's fast
 * reader, straight to the Event's bytes; jansson for what it declines),
 * queued on a few long-lived PublishBatchStream calls shared by every
 * request (the SDK's pipelined publishers, one per gRPC channel, which
 * batch by themselves: the events of one REST batch, handed over together
 * with tse_client_publisher_publish_many, and those of concurrent requests
 * share messages of up to BATCH events; a batch's events go in order on
 * one stream), and the service's answer back as JSON. The
 * request's connection is suspended meanwhile.
 *
 * Why streams: a unary call costs the bridge and the service a whole
 * HTTP/2 stream (headers, trailers, a call object, a completion each
 * side); a message on an open stream costs a DATA frame, and concurrent
 * requests share writes. The service answers a stream's events one for
 * one, in order, each answer carrying its own error, so a stream is a FIFO
 * of unary publishes with the same validation and answers. The publishers
 * fail on a break (fail_on_break): when a stream ends (the service
 * restarts, an event waits longer than RPC_TIMEOUT) its unanswered events
 * are answered with the stream's status (503) and the next event opens a
 * new stream. Events go as the client wrote them (no id or source added by
 * the SDK), so the service stamps what is missing.
 *
 * The payload always travels as the Event's generic `data` Struct: the
 * service converts a fitting Struct to its catalog type's message, so REST
 * and gRPC clients get the same validation (lenient: misfits stored as
 * generic data; strict: 422 naming "payload.<field>"). A payload that is
 * not a JSON object is sent as {"value": <payload>}, the only shape a Struct
 * can carry.
 *
 * Unknown top-level fields are ignored, as the original API did: only the
 * envelope's own fields are copied into the Event.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "codec/pbjson.h"
#include "codec/pbwire.h"
#include "domain/cloudevent.h"
#include "domain/trace.h"
#include "domain/validate.h"
#include "event_reader.h"

typedef Tracseq__Events__V1__Event Event;

/* Unanswered events per stream: the SDK's maximum (the service stops
 * reading a stream at 4,096). */
#define WINDOW 4000
/* Events per stream message: a REST batch of 100 is about one message. */
#define BATCH  100

/* ---- CloudEvents (src/domain/cloudevent.c) ---- */

/* Our field name -> the CloudEvents attribute a client wrote. */
static const char *ce_rename(const char *ours)
{
    static const struct {
        const char *ours, *ce;
    } names[] = {
        {"event_type", "type"},
        {"source_service", "source"},
        {"payload", "data"},
        {"correlation_id", "correlationid"},
        {"causation_id", "causationid"},
        {"version", "tracseqversion"},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].ours, ours) == 0)
            return names[i].ce;
    return NULL;
}

/*
 * JSON (REST or a CloudEvent) -> Event; err names our field (ce_rename
 * gives a CloudEvent's name for it). Returns TSE_OK, a tse_status, or
 * TSB_INVALID_CLOUDEVENT for a CloudEvent against its spec (err names the
 * attribute).
 */
static int convert(const json_t *body, bool cloud, Event **out, tse_error *err)
{
    json_t *ours = NULL;
    tse_status st;

    if (!cloud)
        return tsb_event_from_json(body, out, err);
    if ((st = tse_ce_to_envelope(body, &ours, err)) != TSE_OK)
        return st == TSE_INVALID ? TSB_INVALID_CLOUDEVENT : st;
    st = tsb_event_from_json(ours, out, err);
    json_decref(ours);
    return st;
}

/* ---- answers ---- */

static json_t *result_json(const tse_client_publish_result *r)
{
    char ts[48] = "";

    tse_rfc3339_format(r->published_at_seconds, r->published_at_nanos, ts, sizeof(ts));
    return json_pack("{s:s, s:s, s:s, s:b, s:b}", "event_id", r->event_id, "stream_id",
                     r->stream_id, "published_at", ts, "duplicate", r->duplicate, "schema_valid",
                     r->schema_valid);
}

/* Appends s (n bytes) at p; returns the end. */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LITERAL(p, s) put((p), (s), sizeof(s) - 1)

/* Appends v in decimal at p; returns the end. */
static char *put_unsigned(char *p, size_t v)
{
    char digits[24];
    size_t n = 0;

    do {
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return put(p, digits + sizeof(digits) - n, n);
}

/* s's length when nothing in it needs escaping in a JSON string, else -1. */
static long plain_length(const char *s)
{
    const char *p = s;

    for (; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            return -1;
    return (long)(p - s);
}

/*
 * The members of a publish's result as JSON text, `"event_id":...,
 * "schema_valid":b`: what result_json builds, in its order, as a compact
 * json_dumps writes them, copied piece by piece (this runs once per event
 * published; snprintf's format parsing cost more than the rest of the
 * answer). Returns its length, or 0 when an id needs escaping (the caller
 * then falls back to result_json). buf holds RESULT_MEMBERS_MAX bytes.
 */
#define RESULT_MEMBERS_MAX 256
static size_t result_members(const tse_client_publish_result *r, char *buf)
{
    long id = plain_length(r->event_id), sid = plain_length(r->stream_id);
    char ts[48] = "", *p = buf;

    /* The ids are arrays of 40 and 48 bytes: everything fits. */
    if (id < 0 || sid < 0)
        return 0;
    tse_rfc3339_format(r->published_at_seconds, r->published_at_nanos, ts, sizeof(ts));
    p = PUT_LITERAL(p, "\"event_id\":\"");
    p = put(p, r->event_id, (size_t)id);
    p = PUT_LITERAL(p, "\",\"stream_id\":\"");
    p = put(p, r->stream_id, (size_t)sid);
    p = PUT_LITERAL(p, "\",\"published_at\":\"");
    p = put(p, ts, strlen(ts));
    p = PUT_LITERAL(p, "\",\"duplicate\":");
    p = r->duplicate ? PUT_LITERAL(p, "true") : PUT_LITERAL(p, "false");
    p = PUT_LITERAL(p, ",\"schema_valid\":");
    p = r->schema_valid ? PUT_LITERAL(p, "true") : PUT_LITERAL(p, "false");
    *p = '\0';
    return (size_t)(p - buf);
}

/* body (malloc'ed text, len bytes) as the 200 answer; takes body. */
static void reply_text(tsb_response *resp, char *body, size_t len)
{
    free(resp->body);
    resp->body = body;
    resp->len = len;
    tsb_reply_status(resp, TSE_OK);
    resp->content_type = "application/json";
}

/*
 * The 200 answer of one publish written directly: the hot path of the
 * bridge, where building and dumping a jansson object cost more than the
 * rest of the answer. Falls back to result_json for anything unusual.
 */
static bool reply_published(tsb_response *resp, const tse_client_publish_result *r)
{
    char members[RESULT_MEMBERS_MAX], *text;
    size_t n = result_members(r, members);

    if (n == 0 || (text = malloc(n + 3)) == NULL)
        return false;
    text[0] = '{';
    memcpy(text + 1, members, n);
    memcpy(text + 1 + n, "}", 2);
    reply_text(resp, text, n + 2);
    return true;
}

/* An event the bridge itself refused (why: TSE_INVALID, VALIDATION_FAILED;
 * TSB_INVALID_CLOUDEVENT, 400; TSE_NOMEM), the field as the client wrote it. */
static json_t *local_error_json(int why, const tse_error *err, bool cloud, unsigned *status)
{
    if (why == TSB_INVALID_CLOUDEVENT)
        return tsb_refusal_json(why, err->field, err->message, status);
    return tsb_error_json(why == TSE_NOMEM ? TSE_NOMEM : TSE_INVALID, err->field, err->message,
                          cloud ? ce_rename : NULL, status);
}

static void reply_invalid(tsb_response *resp, int why, const tse_error *err, bool cloud)
{
    unsigned status;
    json_t *j = local_error_json(why, err, cloud, &status);

    tsb_http_of(why == TSB_INVALID_CLOUDEVENT || why == TSE_NOMEM ? why : TSE_INVALID, &resp->code);
    tsb_reply_json(resp, status, j);
}

/*
 * The event carries the request's correlation id when it has none of its
 * own (the stream's metadata is shared by many requests, so the service's
 * fallback from x-correlation-id cannot serve). A header that is no UUID
 * cannot be an event's correlation id: 422 naming the header. echo: a
 * single event's own correlation id (own, "" when none) becomes the
 * request's (echoed back). uuid: whether the request's correlation id is a
 * UUID (checked once per request). True when the event may go on.
 */
static bool check_correlation(tsb_request *req, const char *own, bool echo, bool uuid,
                              tse_error *err)
{
    if (own[0] != '\0') {
        if (echo && !req->correlation_given)
            snprintf(req->correlation_id, sizeof(req->correlation_id), "%s", own);
        return true;
    }
    if (!uuid) {
        tse_error_set(err, TSE_INVALID, "X-Correlation-ID",
                      "X-Correlation-ID must be a UUID (8-4-4-4-12 hex digits) when the event "
                      "has no correlation_id");
        return false;
    }
    return true;
}

static bool adopt_correlation(tsb_request *req, Event *ev, bool echo, tse_error *err)
{
    char *copy;

    if (!check_correlation(req, ev->correlation_id != NULL ? ev->correlation_id : "", echo,
                           tse_uuid_valid(req->correlation_id), err))
        return false;
    if (ev->correlation_id != NULL && ev->correlation_id[0] != '\0')
        return true;
    if ((copy = strdup(req->correlation_id)) == NULL) {
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        return false;
    }
    if (ev->correlation_id != NULL && ev->correlation_id != protobuf_c_empty_string)
        free(ev->correlation_id);
    ev->correlation_id = copy;
    return true;
}

/*
 * The request's W3C `traceparent` / `tracestate` headers (*tp, *ts: NULL
 * when absent), for an event without a trace context of its own: what the
 * service does with a call's metadata, which the shared streams cannot
 * carry per request. A header pair that is not Trace Context: 422 naming
 * the header.
 */
static bool trace_headers(tsb_request *req, const char **tp, const char **ts, tse_error *err)
{
    *tp = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "traceparent");
    *ts = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "tracestate");
    return (*tp == NULL && *ts == NULL) ||
           tse_trace_context_check(*tp, *ts, "traceparent", "tracestate", err) == TSE_OK;
}

static bool adopt_trace(tsb_request *req, Event *ev, tse_error *err)
{
    const char *tp, *ts;

    if (!trace_headers(req, &tp, &ts, err))
        return false;
    if (tp == NULL && ts == NULL)
        return true;
    return tse_event_adopt_trace(ev, tp, tp ? strlen(tp) : 0, ts, ts ? strlen(ts) : 0, err) ==
           TSE_OK;
}

/* What a request gives its events, read and checked once for all of them:
 * its correlation id's validity and its trace headers. */
typedef struct request_trace {
    bool uuid;
    const char *tp, *ts;
    bool ok;       /* the trace headers */
    tse_error err; /* when !ok */
} request_trace;

static void request_trace_read(tsb_request *req, request_trace *t)
{
    t->uuid = tse_uuid_valid(req->correlation_id);
    tse_error_clear(&t->err);
    t->ok = trace_headers(req, &t->tp, &t->ts, &t->err);
}

/* The same two steps for event i read by the fast reader: *d what the
 * request gives it when it is encoded. */
static bool adopt_read(tsb_request *req, const tsb_read_events *evs, size_t i, bool echo,
                       const request_trace *t, tsb_event_defaults *d, tse_error *err)
{
    if (!check_correlation(req, tsb_read_event_string(evs, i, TSB_READ_CORRELATION_ID), echo,
                           t->uuid, err))
        return false;
    if (!t->ok) {
        *err = t->err;
        return false;
    }
    d->correlation_id = req->correlation_id;
    d->traceparent = t->tp;
    d->tracestate = t->ts;
    return true;
}

/* Appends ev's bytes to wire. */
static void encode_event(const Event *ev, tsb_bytes *wire)
{
    size_t len = protobuf_c_message_get_packed_size(&ev->base);
    uint8_t *at = tsb_bytes_extend(wire, len);

    if (at != NULL)
        protobuf_c_message_pack(&ev->base, at);
}

/* ---- the publishers ---- */

/* A request's events in flight (the head of its req->ctx): the last
 * answer resumes the request. */
typedef struct flight {
    tsb_request *req;
    atomic_size_t waiting;
} flight;

/* Where one event's answer goes; the user_data of its publish. */
typedef struct answer {
    flight *flight;
    bool ok;
    tse_client_publish_result res; /* when ok */
    /* Else why, and `stream` when the stream (or the bridge) failed the
     * event rather than the service's checks: answered as a failed call. */
    tsb_calls_status st;
    bool stream;
} answer;

static const tsb_calls_status answered = {.code = TSE_OK};

/*
 * Copies an outcome. A stream's status comes with the field the SDK lifted
 * out of "field: message" (its text repeats it); an event's own error has
 * its field apart. The first is answered as a failed call would be.
 */
static void answer_set(answer *a, const tse_client_publish_outcome *o)
{
    const tse_client_error *e = o->error;

    if ((a->ok = o->status == TSE_CLIENT_OK)) {
        a->res = *o->result;
        return;
    }
    tsb_calls_status_set(&a->st, o->status, e);
    a->stream = e->grpc_code < 0 || e->field[0] == '\0' || strcmp(a->st.message, e->message) != 0;
    if (o->status == TSE_CLIENT_CANCELLED && e->grpc_code < 0) /* only the bridge's stop */
        tsb_calls_status_fail(&a->st, TSE_UNAVAILABLE, "the REST bridge is shutting down");
}

static void not_queued(answer *a)
{
    a->ok = false;
    a->stream = true;
    tsb_calls_status_fail(&a->st, TSE_UNAVAILABLE, "the bridge could not queue the event");
}

/* The publisher thread (the SDK's): one event answered. */
static void published(void *arg, const tse_client_publish_outcome *o)
{
    answer *a = o->user_data;
    flight *f = a->flight;

    (void)arg;
    answer_set(a, o);
    if (atomic_fetch_sub(&f->waiting, 1) == 1)
        tsb_request_complete(f->req, &answered, NULL);
}

/*
 * Queues n events (event j: len[j] bytes of an encoded Event at wire +
 * off[j], answered into answers[j]) on pub together, so a REST batch goes
 * out in full messages of the publisher's batch size. Returns how many
 * were queued, from the first.
 */
static size_t publish_all(tse_client_publisher *pub, const uint8_t *wire, const size_t *off,
                          const size_t *len, answer *answers, size_t n)
{
    tse_client_event **ces = calloc(n, sizeof(*ces));
    void **data = calloc(n, sizeof(*data));
    size_t made = 0, queued = 0;

    if (ces != NULL && data != NULL) {
        for (; made < n; made++) {
            if (tse_client_event_from_envelope(wire + off[made], len[made], &ces[made], NULL) !=
                TSE_CLIENT_OK)
                break;
            data[made] = &answers[made];
        }
        tse_client_publisher_publish_many(pub, (const tse_client_event *const *)ces, data, made,
                                          &queued, NULL);
    }
    for (size_t j = 0; j < made; j++)
        tse_client_event_destroy(ces[j]);
    free(ces);
    free(data);
    return queued;
}

/*
 * A request with an Authorization header publishes with the caller's
 * rights, not the bridge's: each event is one unary Publish carrying the
 * header as its `authorization` metadata (the shared publishers' streams
 * belong to no caller). The service answers 401/403/429 through the same
 * status table as any refusal.
 */
static void unary_published(void *arg, tse_client_status status, const tse_client_error *err,
                            const void *resp, size_t len)
{
    answer *a = arg;
    flight *f = a->flight;
    Tracseq__Events__V1__PublishResponse *r = NULL;

    if (status == TSE_CLIENT_OK &&
        (r = tracseq__events__v1__publish_response__unpack(NULL, len, resp)) != NULL) {
        a->ok = true;
        snprintf(a->res.event_id, sizeof(a->res.event_id), "%s", r->event_id);
        snprintf(a->res.stream_id, sizeof(a->res.stream_id), "%s", r->stream_id);
        a->res.duplicate = r->duplicate;
        a->res.schema_valid = r->schema_valid;
        if (r->published_at != NULL) {
            a->res.published_at_seconds = r->published_at->seconds;
            a->res.published_at_nanos = r->published_at->nanos;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
    } else if (status == TSE_CLIENT_OK) {
        a->ok = false;
        a->stream = true;
        tsb_calls_status_fail(&a->st, TSE_INTERNAL, "the service's answer did not decode");
    } else {
        a->ok = false;
        tsb_calls_status_set(&a->st, status, err);
        a->stream = err == NULL || err->field[0] == '\0';
    }
    if (atomic_fetch_sub(&f->waiting, 1) == 1)
        tsb_request_complete(f->req, &answered, NULL);
}

static bool publish_as_caller(const tsb_request *req, const uint8_t *event, size_t len, answer *a)
{
    tse_client_metadata md[2] = {{"authorization", req->authorization},
                                 {"x-correlation-id", req->correlation_id}};
    tse_client_call_options o = {.timeout_ms = (int)req->bridge->cfg->rpc_timeout_ms,
                                 .metadata = md,
                                 .n_metadata = req->correlation_id[0] ? 2 : 1};
    tsb_bytes pr = {0};
    uint8_t head[1 + 10];
    bool ok;

    /* A PublishRequest: its field 1, the event. */
    head[0] = 0x0a;
    tsb_bytes_add(&pr, head, (size_t)(tse_pbwire_put_varint(head + 1, len) - head));
    tsb_bytes_add(&pr, event, len);
    ok = !pr.failed &&
         tse_client_call_start(req->bridge->client, TSB_CALLS_SERVICE "Publish", pr.p, pr.len, &o,
                               unary_published, a, NULL, NULL) == TSE_CLIENT_OK;
    tsb_bytes_cleanup(&pr);
    return ok;
}

/*
 * Queues n events in order on one publisher, answers[j] for event j (the
 * len[j] bytes at wire + off[j]); those that could not be queued are
 * answered at once. The request (whose step was deferred) resumes once
 * every event has its answer.
 */
static void submit(tsb_request *req, flight *f, const uint8_t *wire, const size_t *off,
                   const size_t *len, answer *answers, size_t n)
{
    tsb_bridge *b = req->bridge;
    tse_client_publisher *pub =
        b->publishers[atomic_fetch_add(&b->next_publisher, 1) % b->npublishers];
    size_t queued = 0, left;

    f->req = req;
    atomic_store(&f->waiting, n + 1); /* + 1: until the events are queued */
    for (size_t j = 0; j < n; j++)
        answers[j].flight = f;
    if (req->authorization[0] == '\0')
        queued = publish_all(pub, wire, off, len, answers, n);
    else
        while (queued < n &&
               publish_as_caller(req, wire + off[queued], len[queued], &answers[queued]))
            queued++;
    for (size_t j = queued; j < n; j++)
        not_queued(&answers[j]);
    left = n - queued + 1;
    if (atomic_fetch_sub(&f->waiting, left) == left)
        tsb_request_complete(req, &answered, NULL);
}

tse_status tsb_publishers_start(tsb_bridge *b, tse_error *err)
{
    tse_client_publisher_options o = {
        .window = WINDOW,
        .server_assigned_ids = true,
        .fail_on_break = true,
        .answer_timeout_ms = (int)b->cfg->rpc_timeout_ms,
        .batch_size = BATCH,
    };
    size_t n = (size_t)b->cfg->grpc_channels;
    tse_client_error cerr;

    if ((b->publishers = calloc(n, sizeof(*b->publishers))) == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    for (; b->npublishers < n; b->npublishers++)
        if (tse_client_publisher_create(b->client, &o, published, NULL,
                                        &b->publishers[b->npublishers], &cerr) != TSE_CLIENT_OK)
            return tse_error_set(err, TSE_NOMEM, NULL, "cannot start a publisher: %s",
                                 cerr.message);
    return TSE_OK;
}

void tsb_publishers_cancel(tsb_bridge *b)
{
    for (size_t i = 0; i < b->npublishers; i++)
        tse_client_publisher_cancel(b->publishers[i]);
}

void tsb_publishers_destroy(tsb_bridge *b)
{
    for (size_t i = 0; i < b->npublishers; i++)
        tse_client_publisher_destroy(b->publishers[i]);
    free(b->publishers);
    b->publishers = NULL;
    b->npublishers = 0;
}

/* ---- answers ---- */

/* An event's answer as the HTTP result of one event. */
static json_t *answer_json(const answer *a, bool cloud, unsigned *status)
{
    if (a->ok) {
        *status = tsb_http_of(TSE_OK, NULL);
        return result_json(&a->res);
    }
    return tsb_error_json(a->st.code, a->st.field, a->st.message, cloud ? ce_rename : NULL, status);
}

/* A single publish between its steps (req->ctx). */
typedef struct single {
    flight f;
    answer a;
    bool cloud; /* a CloudEvent (either mode): errors name its attributes */
} single;

static void then_publish(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                         ProtobufCMessage *out)
{
    const single *one = req->ctx;

    if (!one->a.ok)
        tsb_reply_failed(resp, req, &one->a.st, one->cloud ? ce_rename : NULL);
    else if (!reply_published(resp, &one->a.res))
        tsb_reply_ok(resp, result_json(&one->a.res));
}

/* The body of a publish: JSON, or CloudEvents when the Content-Type is
 * cloud_type (*cloud); NULL when answered. */
static json_t *events_body(tsb_request *req, tsb_response *resp, const char *cloud_type,
                           bool *cloud)
{
    char accepted[96];

    if ((*cloud = tsb_media_is(req, cloud_type)) || tsb_media_is(req, "application/json"))
        return tsb_parse_body(req, resp);
    snprintf(accepted, sizeof(accepted), "application/json or %s", cloud_type);
    tsb_reply_unsupported(req, resp, accepted);
    return NULL;
}

/* ---- CloudEvents binary mode in ---- */

typedef struct binary_in {
    json_t *ce;
    tse_error *err;
    tse_status st;
} binary_in;

static enum MHD_Result binary_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    binary_in *in = cls;

    (void)kind;
    in->st = tse_ce_binary_header(in->ce, key, value, in->err);
    return in->st == TSE_OK ? MHD_YES : MHD_NO;
}

/* A request in binary mode: a ce-specversion header and a Content-Type
 * other than application/cloudevents+json (structured mode wins). */
static bool binary_mode(const tsb_request *req)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "ce-specversion") != NULL &&
           !tsb_media_is(req, "application/cloudevents+json");
}

/* The CloudEvent of a binary-mode request (its ce-* headers and body), as
 * the JSON format would write it; NULL when it is not one (err set). */
static json_t *binary_event(const tsb_request *req, tse_error *err)
{
    binary_in in = {.ce = json_object(), .err = err, .st = TSE_OK};
    const char *ctype = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");

    if (in.ce == NULL) {
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        return NULL;
    }
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, binary_header, &in);
    if (in.st == TSE_OK)
        in.st = tse_ce_binary_body(in.ce, ctype, req->body, req->body_len, err);
    if (in.st != TSE_OK) {
        json_decref(in.ce);
        return NULL;
    }
    return in.ce;
}

/* Queues a single event (wire's bytes) whose checks passed. */
static void publish_single(tsb_request *req, tsb_response *resp, const tsb_bytes *wire, bool cloud)
{
    const size_t off = 0;
    single *one;

    if (wire->failed || (one = calloc(1, sizeof(*one))) == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    one->cloud = cloud;
    req->ctx = one;
    req->ctx_free = free;
    /* Suspended before the event is queued: the answer may come at once. */
    tsb_request_defer(req, resp, then_publish);
    submit(req, &one->f, wire->p, &off, &wire->len, &one->a, 1);
}

/*
 * An application/json body through the fast reader (event_reader.h): true
 * when it read the body and the request is answered or queued; false
 * leaves the body to the reference path, which answers exactly as before
 * (every error included).
 */
static bool publish_read(tsb_request *req, tsb_response *resp)
{
    tsb_read_events evs = {0};
    tsb_event_defaults d;
    tsb_bytes wire = {0};
    request_trace t;
    tse_error err;

    if (!tsb_media_is(req, "application/json") ||
        !tsb_read_event_body(req->body, req->body_len, &evs))
        return false;
    tse_error_clear(&err);
    request_trace_read(req, &t);
    if (!adopt_read(req, &evs, 0, true, &t, &d, &err)) {
        reply_invalid(resp, err.code, &err, false);
    } else {
        tsb_read_event_encode(&evs, 0, &d, &wire);
        publish_single(req, resp, &wire, false);
    }
    tsb_bytes_cleanup(&wire);
    tsb_read_events_cleanup(&evs);
    return true;
}

void tsb_handle_publish(tsb_request *req, tsb_response *resp)
{
    bool cloud = true;
    Event *ev = NULL;
    tsb_bytes wire = {0};
    tse_error err;
    json_t *body;
    int why;

    tse_error_clear(&err);
    if (binary_mode(req)) {
        if ((body = binary_event(req, &err)) == NULL) {
            reply_invalid(resp, err.code == TSE_NOMEM ? TSE_NOMEM : TSB_INVALID_CLOUDEVENT, &err,
                          true);
            return;
        }
    } else if (publish_read(req, resp)) {
        return;
    } else if ((body = events_body(req, resp, "application/cloudevents+json", &cloud)) == NULL) {
        return;
    }
    if ((why = convert(body, cloud, &ev, &err)) != TSE_OK) {
        reply_invalid(resp, why, &err, cloud);
    } else if (!adopt_correlation(req, ev, true, &err) || !adopt_trace(req, ev, &err)) {
        reply_invalid(resp, err.code, &err, cloud);
    } else {
        encode_event(ev, &wire);
        publish_single(req, resp, &wire, cloud);
    }
    if (ev != NULL)
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    tsb_bytes_cleanup(&wire);
    json_decref(body);
}

/* ---- batch ---- */

/* The entries of a batch body: {"events": [...]} or a CloudEvents batch. */
static json_t *batch_entries(const json_t *body, bool cloud, tse_error *err)
{
    json_t *arr = cloud ? (json_t *)body : json_object_get(body, "events");

    if (!json_is_array(arr)) {
        tse_error_set(err, TSE_INVALID, cloud ? "body" : "events",
                      cloud ? "a CloudEvents batch must be a JSON array"
                            : "events must be an array of events");
        return NULL;
    }
    if (json_array_size(arr) == 0) {
        tse_error_set(err, TSE_INVALID, cloud ? "body" : "events",
                      "a batch needs at least one event");
        return NULL;
    }
    return arr;
}

/* An entry that did not convert: its error, answered as it is. */
typedef struct refused {
    json_t *json; /* NULL once answered (or for an entry that converted) */
    unsigned status;
} refused;

/* A batch between its steps (req->ctx). */
typedef struct batch {
    flight f;
    size_t n, nsent;
    tsb_bytes wire; /* the entries that converted, encoded, in order */
    size_t *off;    /* event j: len[j] bytes at wire.p + off[j] */
    size_t *len;
    size_t *index;    /* event j is entry index[j] */
    answer *answers;  /* answers[j] answers event j */
    refused *refused; /* one per entry */
    size_t published, failed;
} batch;

static void batch_free(void *arg)
{
    batch *b = arg;

    if (b == NULL)
        return;
    tsb_bytes_cleanup(&b->wire);
    free(b->off);
    free(b->len);
    free(b->index);
    free(b->answers);
    if (b->refused != NULL)
        for (size_t i = 0; i < b->n; i++)
            json_decref(b->refused[i].json);
    free(b->refused);
    free(b);
}

static bool batch_alloc(batch *b, size_t n)
{
    b->n = n;
    b->off = calloc(n, sizeof(*b->off));
    b->len = calloc(n, sizeof(*b->len));
    b->index = calloc(n, sizeof(*b->index));
    b->answers = calloc(n, sizeof(*b->answers));
    b->refused = calloc(n, sizeof(*b->refused));
    return b->off && b->len && b->index && b->answers && b->refused;
}

/* Entry i refused (why, err): its result is its error. */
static void batch_refuse(batch *b, size_t i, int why, const tse_error *err, bool cloud)
{
    unsigned status;

    b->refused[i].json = local_error_json(why, err, cloud, &status);
    b->refused[i].status = status;
}

/* Entry i passed: the bytes added to b->wire since `at` are its event. */
static void batch_accept(batch *b, size_t i, size_t at)
{
    b->off[b->nsent] = at;
    b->len[b->nsent] = b->wire.len - at;
    b->index[b->nsent++] = i;
}

/* Converts every entry; the ones that fail get their result at once. */
static bool batch_convert(tsb_request *req, batch *b, const json_t *arr, bool cloud)
{
    if (!batch_alloc(b, json_array_size(arr)))
        return false;
    for (size_t i = 0; i < b->n; i++) {
        size_t at = b->wire.len;
        Event *ev = NULL;
        tse_error err;
        int why;

        tse_error_clear(&err);
        if ((why = convert(json_array_get(arr, i), cloud, &ev, &err)) != TSE_OK ||
            (why = adopt_correlation(req, ev, false, &err) ? TSE_OK : err.code) != TSE_OK ||
            (why = adopt_trace(req, ev, &err) ? TSE_OK : err.code) != TSE_OK) {
            batch_refuse(b, i, why, &err, cloud);
        } else {
            encode_event(ev, &b->wire);
            batch_accept(b, i, at);
        }
        if (ev != NULL)
            protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    return !b->wire.failed;
}

/* The same from the fast reader's events (every entry converted). */
static bool batch_read(tsb_request *req, batch *b, const tsb_read_events *evs)
{
    request_trace t;

    if (!batch_alloc(b, evs->n))
        return false;
    request_trace_read(req, &t);
    for (size_t i = 0; i < b->n; i++) {
        size_t at = b->wire.len;
        tsb_event_defaults d;
        tse_error err;

        tse_error_clear(&err);
        if (!adopt_read(req, evs, i, false, &t, &d, &err)) {
            batch_refuse(b, i, err.code, &err, false);
        } else {
            tsb_read_event_encode(evs, i, &d, &b->wire);
            batch_accept(b, i, at);
        }
    }
    return !b->wire.failed;
}

/*
 * The batch's answer, {"results":[...],"published":P,"failed":F}, written
 * directly rather than built as a jansson tree and dumped: with 100 events
 * a request, building and dumping the results cost a fifth of the bridge's
 * instructions per event (docs/benchmarks.md). A published event's result
 * is written as text; an error's (rare, and with a sentence to escape) is
 * still a jansson object, dumped on its own. The text is byte for byte what
 * json_dumps(JSON_COMPACT) wrote of the whole tree (tests/integration/
 * test_bridge_rest.c compares the two).
 */

/* Entry i's result from a jansson object (index and status added); takes r. */
static void text_add_json(tsb_bytes *t, batch *b, size_t i, json_t *r, unsigned status)
{
    char *dump;

    json_object_set_new(r, "index", json_integer((json_int_t)i));
    json_object_set_new(r, "status", json_integer(status));
    if ((dump = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(6))) == NULL)
        t->failed = true;
    else
        tsb_bytes_add(t, dump, strlen(dump));
    free(dump);
    json_decref(r);
    if (status == tsb_http_of(TSE_OK, NULL))
        b->published++;
    else
        b->failed++;
}

/* Entry i's result from its answer. */
static void text_add_answer(tsb_bytes *t, batch *b, size_t i, const answer *a, bool cloud)
{
    char entry[RESULT_MEMBERS_MAX + 64], *p;
    unsigned status;
    size_t n;
    json_t *r;

    if (a->ok && (n = result_members(&a->res, entry + 1)) > 0) {
        entry[0] = '{';
        p = PUT_LITERAL(entry + 1 + n, ",\"index\":");
        p = put_unsigned(p, i);
        p = PUT_LITERAL(p, ",\"status\":");
        p = put_unsigned(p, tsb_http_of(TSE_OK, NULL));
        *p++ = '}';
        tsb_bytes_add(t, entry, (size_t)(p - entry));
        b->published++;
        return;
    }
    r = answer_json(a, cloud, &status); /* sets status first */
    text_add_json(t, b, i, r, status);
}

static void then_batch(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                       ProtobufCMessage *out)
{
    bool cloud = tsb_media_is(req, "application/cloudevents-batch+json");
    batch *b = req->ctx;
    const answer *failed = NULL; /* the first event its stream failed */
    tsb_bytes t = {0};
    char tail[96];
    int n;

    for (size_t j = 0; j < b->nsent; j++)
        if (!b->answers[j].ok && b->answers[j].stream) {
            failed = &b->answers[j];
            break;
        }
    /* Nothing published because the service could not be reached: the
     * whole request failed and may be retried as it is. */
    if (failed != NULL) {
        size_t ok = 0;
        for (size_t j = 0; j < b->nsent; j++)
            ok += b->answers[j].ok;
        if (ok == 0) {
            tsb_reply_failed(resp, req, &failed->st, NULL);
            return;
        }
    }
    tsb_bytes_add(&t, "{\"results\":[", 12);
    for (size_t i = 0, j = 0; i < b->n; i++) {
        if (i > 0)
            tsb_bytes_add(&t, ",", 1);
        if (j < b->nsent && b->index[j] == i) {
            text_add_answer(&t, b, i, &b->answers[j++], cloud);
        } else {
            text_add_json(&t, b, i, b->refused[i].json, b->refused[i].status);
            b->refused[i].json = NULL;
        }
    }
    n = snprintf(tail, sizeof(tail), "],\"published\":%zu,\"failed\":%zu}", b->published,
                 b->failed);
    tsb_bytes_add(&t, tail, (size_t)n + 1); /* with its NUL */
    if (t.failed) {
        tsb_bytes_cleanup(&t);
        tsb_reply_nomem(resp);
        return;
    }
    reply_text(resp, (char *)t.p, t.len - 1);
}

/* Runs a batch: its entries from arr (the reference) or, when evs is not
 * NULL, from the fast reader. */
static void batch_run(tsb_request *req, tsb_response *resp, const json_t *arr,
                      const tsb_read_events *evs, bool cloud)
{
    batch *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    req->ctx = b;
    req->ctx_free = batch_free;
    if (!(evs != NULL ? batch_read(req, b, evs) : batch_convert(req, b, arr, cloud))) {
        tsb_reply_nomem(resp);
        return;
    }
    if (b->nsent == 0) {
        then_batch(req, resp, &answered, NULL);
        return;
    }
    tsb_request_defer(req, resp, then_batch);
    /* b may be gone once the last answer came: nothing touches it after. */
    submit(req, &b->f, b->wire.p, b->off, b->len, b->answers, b->nsent);
}

void tsb_handle_batch(tsb_request *req, tsb_response *resp)
{
    size_t max = (size_t)req->bridge->cfg->max_batch;
    tsb_read_events evs = {0};
    bool cloud;
    json_t *body, *arr;
    tse_error err;

    /* application/json through the fast reader; what it declines (errors
     * included) through jansson, the reference. */
    if (tsb_media_is(req, "application/json") &&
        tsb_read_batch_body(req->body, req->body_len, max, &evs)) {
        batch_run(req, resp, NULL, &evs, false);
        tsb_read_events_cleanup(&evs);
        return;
    }
    if ((body = events_body(req, resp, "application/cloudevents-batch+json", &cloud)) == NULL)
        return;
    tse_error_clear(&err);
    if ((arr = batch_entries(body, cloud, &err)) == NULL) {
        reply_invalid(resp, TSE_INVALID, &err, cloud);
    } else if (json_array_size(arr) > max) {
        tsb_reply_error(resp, TSE_INVALID, cloud ? "body" : "events",
                        "A batch may carry at most %d events; this one has %zu.",
                        req->bridge->cfg->max_batch, json_array_size(arr));
    } else {
        batch_run(req, resp, arr, NULL, cloud);
    }
    json_decref(body);
}
