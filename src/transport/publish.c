/*
 * publish.c - Publish and PublishBatch (unary), PublishStream and
 * PublishBatchStream (bidi): decode, validate and stamp on the worker,
 * append through the broker, answer from the broker's lane thread once
 * Redis acknowledged.
 *
 * A batch is many events in one message (at most
 * TSE_PUBLISH_BATCH_MAX_EVENTS, counted before anything is unpacked): each
 * event is validated, deduplicated and answered on its own, so a bad one
 * fails alone (its field named "events[i]...") and the others are stored;
 * the message is answered once Redis answered every event, with the results
 * in request order. PublishStream is the same machinery with one event per
 * message.
 *
 * Stream invariants: one response per request, in request order (a
 * FIFO of slots, each completed by validation or by the broker, sent from
 * the head); one send and one receive in flight at a time; at most
 * `publish-stream-window` unanswered events (receiving pauses beyond it, so
 * a client that does not read responses cannot make us buffer without
 * bound; one batch may pass the window, by at most its limit); the status is sent only after the
 * client half-closed and every response went out. A stream's events all go through one broker lane,
 * so they reach Redis in request order.
 *
 * At shutdown a stream winds down at once: it reads no more requests,
 * answers every request it read (stored or refused), then ends with
 * UNAVAILABLE, so the client resends the unanswered rest to another
 * instance. A request that arrives after the status is discarded unread:
 * nothing is stored that was not answered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/pbscan.h"
#include "domain/cloudevent.h"
#include "domain/envelope.h"
#include "domain/trace.h"
#include "domain/validate.h"
#include "obs/log.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "transport/internal.h"

/* ===================== shared: one event made ready to store ============ */

typedef struct prepared {
    char event_id[64];
    char event_type[TSE_EVENT_TYPE_MAX + 1];
    char source[TSE_SOURCE_SERVICE_MAX + 1];
    char correlation_id[64];
    char trace_id[33]; /* of its traceparent, or "" */
    int priority;
    int64_t ts_sec;
    int32_t ts_nanos;
    bool schema_valid;
    bool dedup;
    uint8_t *envelope;
    size_t envelope_len;
    tse_error *schema_error; /* !schema_valid: why, until announced (malloc'd) */
    int64_t start_us;
} prepared;

/* Frees what a prepared event holds (not yet stored, or stored). */
static void prepared_discard(prepared *p)
{
    free(p->envelope);
    p->envelope = NULL;
    free(p->schema_error);
    p->schema_error = NULL;
}

/* A bounded copy (snprintf showed in the publish profile). */
static void copy_str(char *dst, size_t len, const char *src)
{
    size_t n = src ? strnlen(src, len - 1) : 0;

    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* The bytes an event arrived in, within its request's (data NULL: not
 * known, e.g. a CloudEvent's mapping: the event is packed). */
typedef struct wire {
    const uint8_t *data;
    size_t len;
} wire;

#define NO_WIRE ((wire){NULL, 0})

/*
 * The next occurrence of field 1 (a PublishRequest's event, a batch's
 * events[i]) at the root of the request's bytes, from *pos on: the event
 * bytes protobuf-c unpacked into that entry. NO_WIRE when there is none.
 * By pointer: a small slice holds its bytes in the struct itself, so a copy
 * of it would hand out pointers into the copy.
 */
static wire next_event_wire(const grpc_slice *request, size_t *pos)
{
    const uint8_t *data = GRPC_SLICE_START_PTR(*request);
    size_t len = GRPC_SLICE_LENGTH(*request);
    tse_pbscan_field f;

    while (tse_pbscan_next(data, len, pos, &f))
        if (f.id == 1 && f.wire == 2)
            return (wire){f.data, f.len};
    return NO_WIRE;
}

/* The stored envelope of the prepared ev: the client's bytes with the
 * fields the server set appended when they can be reused (domain/
 * envelope.h), else ev packed. */
static tse_status envelope_of(const Tracseq__Events__V1__Event *ev, wire w,
                              const tse_prepare_result *res, prepared *p, tse_error *err)
{
    if (tse_event_envelope_reuse(w.data, w.len, ev, res, &p->envelope, &p->envelope_len))
        return TSE_OK;
    p->envelope_len = protobuf_c_message_get_packed_size(&ev->base);
    p->envelope = malloc(p->envelope_len ? p->envelope_len : 1);
    if (p->envelope == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    protobuf_c_message_pack(&ev->base, p->envelope);
    return TSE_OK;
}

/* Validates and stamps ev (taking the call's trace context when it has
 * none), then makes its envelope from w. Nothing is logged or counted yet
 * (announce does it), so a batch can still be refused whole. On failure
 * err names the field (within the event) and nothing is allocated. */
static tse_status prepare_event(tse_call *c, Tracseq__Events__V1__Event *ev, wire w, prepared *p,
                                tse_error *err)
{
    tse_server *s = c->server;
    tse_prepare_result res;
    struct timespec now;
    tse_status st;

    st = tse_event_adopt_trace(ev, c->md_traceparent, c->md_traceparent_len, c->md_tracestate,
                               c->md_tracestate_len, err);
    if (st != TSE_OK)
        return st;
    clock_gettime(CLOCK_REALTIME, &now);
    st = tse_event_prepare(ev, s->config->strict ? TSE_VALIDATION_STRICT : TSE_VALIDATION_LENIENT,
                           now.tv_sec, (int32_t)now.tv_nsec, c->correlation_id, &res, err);
    if (st != TSE_OK)
        return st;
    tse_trace_id(ev->traceparent, p->trace_id);
    copy_str(p->event_id, sizeof(p->event_id), ev->id);
    copy_str(p->event_type, sizeof(p->event_type), ev->event_type);
    copy_str(p->source, sizeof(p->source), ev->source_service);
    copy_str(p->correlation_id, sizeof(p->correlation_id), ev->correlation_id);
    p->priority = ev->priority;
    p->ts_sec = now.tv_sec;
    p->ts_nanos = (int32_t)now.tv_nsec;
    p->schema_valid = res.schema_valid;
    p->dedup = !res.id_generated;
    if ((st = envelope_of(ev, w, &res, p, err)) != TSE_OK)
        return st;
    if (!res.schema_valid) {
        p->schema_error = malloc(sizeof(*p->schema_error));
        if (p->schema_error == NULL) {
            prepared_discard(p);
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        }
        *p->schema_error = res.schema_error;
    }
    return TSE_OK;
}

/* The log lines and counts of an event prepared (prepare_event), once its
 * request is known to be whole. */
static void announce(tse_call *c, prepared *p)
{
    if (p->schema_error != NULL) {
        char why[TSE_ERROR_FIELD_MAX + TSE_ERROR_MESSAGE_MAX + 4];
        tse_stats_add(c->server->stats, TSE_STAT_SCHEMA_INVALID, 1);
        tse_error_describe(p->schema_error, why, sizeof(why));
        tse_log(TSE_LOG_WARN, "payload does not fit its schema; stored as generic data",
                (const char *[]){"event_type", p->event_type, "event_id", p->event_id,
                                 "schema_error", why, "correlation_id", p->correlation_id,
                                 "trace_id", p->trace_id, NULL});
        free(p->schema_error);
        p->schema_error = NULL;
    }
    if (tse_log_enabled(TSE_LOG_DEBUG))
        tse_log(TSE_LOG_DEBUG, "event accepted",
                (const char *[]){"method", c->method->name, "event_type", p->event_type, "event_id",
                                 p->event_id, "trace_id", p->trace_id, NULL});
}

/* An event's place in its request: a batch's events[index] (index >= 0), or
 * the one event of a single publish (SINGLE). */
#define SINGLE (-1L)

/* The name of the event at index, into buf: printed only for an error
 * (snprintf showed in the batch profile when it ran for every event). */
static const char *place_prefix(long index, char *buf, size_t len)
{
    if (index == SINGLE)
        return "event";
    snprintf(buf, len, "events[%ld]", index);
    return buf;
}

/* prepare_event, a bad field named under the event's place ("event",
 * "events[3]"). */
static tse_status prepare_placed(tse_call *c, Tracseq__Events__V1__Event *ev, wire w, long index,
                                 prepared *p, tse_error *err)
{
    char prefix[32];
    tse_status st;

    if (ev == NULL)
        return tse_error_set(err, TSE_INVALID, place_prefix(index, prefix, sizeof(prefix)),
                             "is required");
    st = prepare_event(c, ev, w, p, err);
    if (st != TSE_OK)
        tse_error_prefix_field(err, place_prefix(index, prefix, sizeof(prefix)));
    return st;
}

/* A prepared event announced, once the caller may publish it (type,
 * source_service, rate: access.c). */
static tse_status admit(tse_call *c, prepared *p, tse_error *err)
{
    tse_status st;

    announce(c, p);
    /* A refusal of the caller names no field: the event is fine. */
    if ((st = tse_access_publish(c, p->event_type, p->source, err)) != TSE_OK)
        prepared_discard(p);
    return st;
}

/* Prepares and admits one event. */
static tse_status prepare_one(tse_call *c, Tracseq__Events__V1__Event *ev, wire w, long index,
                              prepared *p, tse_error *err)
{
    tse_status st = prepare_placed(c, ev, w, index, p, err);

    return st == TSE_OK ? admit(c, p, err) : st;
}

/*
 * The call's traceparent / tracestate metadata, checked once for the whole
 * call (it applies to each of its events without a context of their own):
 * false, the call failed INVALID_ARGUMENT naming the key, when it is not
 * W3C Trace Context. Its trace id goes into the request's log line.
 */
static bool trace_metadata_ok(tse_call *c)
{
    tse_traceparent tp;
    tse_error err;

    tse_error_clear(&err);
    if (c->md_traceparent == NULL && c->md_tracestate == NULL)
        return true;
    if (c->md_traceparent == NULL)
        tse_error_set(&err, TSE_INVALID, "tracestate",
                      "tracestate is allowed only with a traceparent");
    else if (tse_traceparent_parse(c->md_traceparent, c->md_traceparent_len, &tp, "traceparent",
                                   &err) == TSE_OK &&
             c->md_tracestate != NULL)
        tse_tracestate_check(c->md_tracestate, c->md_tracestate_len, "tracestate", &err);
    if (err.code == TSE_OK) {
        tse_call_log_kv(c, "trace_id", tp.trace_id);
        return true;
    }
    if (c->method->counts_invalid)
        tse_stats_add(c->server->stats, TSE_STAT_INVALID, 1);
    tse_call_fail(c, &err);
    return false;
}

/* Prepares the event of a decoded PublishRequest, whose bytes are request
 * (empty: not kept). An event field sent twice was merged by unpacking: its
 * bytes are not one piece, so the event is packed. */
static tse_status prepare_request(tse_call *c, Tracseq__Events__V1__PublishRequest *req,
                                  const grpc_slice *request, prepared *p, tse_error *err)
{
    size_t pos = 0;
    wire w = next_event_wire(request, &pos);

    if (w.data != NULL && next_event_wire(request, &pos).data != NULL)
        w = NO_WIRE;
    return prepare_one(c, req->event, w, SINGLE, p, err);
}

static void msg_of(const prepared *p, tse_publish_msg *msg)
{
    *msg = (tse_publish_msg){
        .event_id = p->event_id,
        .event_type = p->event_type,
        .priority = p->priority,
        .source_service = p->source,
        .correlation_id = p->correlation_id,
        .timestamp_sec = p->ts_sec,
        .timestamp_nanos = p->ts_nanos,
        .envelope = p->envelope,
        .envelope_len = p->envelope_len,
        .dedup = p->dedup,
    };
}

/* The broker's refusal of a job as the error its caller answers. */
static tse_status refused(tse_status st, tse_error *err)
{
    if (st == TSE_UNAVAILABLE)
        return tse_error_set(err, st, NULL, "Redis is unavailable; retry later");
    return tse_error_set(err, st, NULL, "the service is overloaded; retry later");
}

static tse_status submit(tse_server *s, int lane, const prepared *p, tse_publish_cb cb, void *arg,
                         tse_error *err)
{
    tse_publish_msg msg;
    tse_status st;

    msg_of(p, &msg);
    st = tse_broker_publish(s->broker, lane, &msg, cb, arg);
    return st == TSE_OK ? TSE_OK : refused(st, err);
}

/* Counts an outcome and fills the response of a stored event. A duplicate
 * is answered with the stored event's stream, entry id and publish time. */
static tse_status account(tse_server *s, const prepared *p, const tse_publish_result *r,
                          Tracseq__Events__V1__PublishResponse *resp,
                          Google__Protobuf__Timestamp *ts, tse_error *err)
{
    if (r->status != TSE_OK) {
        tse_stats_add(s->stats, TSE_STAT_UNAVAILABLE, 1);
        return tse_error_set(err, r->status, NULL, "Redis did not store the event: %s",
                             r->message ? r->message : "unavailable");
    }
    if (r->duplicate) {
        tse_stats_add(s->stats, TSE_STAT_DUPLICATE, 1);
    } else {
        tse_stats_add(s->stats, TSE_STAT_PUBLISHED, 1);
        tse_stats_count_type(s->stats, p->event_type);
        /* Subscribers of this process hear of it at once, and of a stream
         * new to Redis too (a waiting pull of its type gets it now). */
        if (r->new_stream)
            tse_delivery_notify_new_stream(s->delivery);
        tse_delivery_notify(s->delivery, r->stream_key);
    }
    int64_t took = tse_clock_us() - p->start_us;
    tse_stats_record_latency(s->stats, took);
    tse_histogram_observe(tse_stats_histogram(s->stats, TSE_HIST_PUBLISH), took);
    ts->seconds = r->duplicate ? r->published_sec : p->ts_sec;
    ts->nanos = r->duplicate ? r->published_nanos : p->ts_nanos;
    resp->event_id = (char *)p->event_id;
    resp->stream_id = (char *)r->stream_id;
    resp->stream = (char *)r->stream_key;
    resp->published_at = ts;
    resp->duplicate = r->duplicate;
    resp->schema_valid = p->schema_valid;
    return TSE_OK;
}

/* ===================== Publish (unary) ================================== */

typedef struct publish_call {
    tse_call base;
    prepared p;
} publish_call;

static void publish_release(tse_call *c)
{
    prepared_discard(&((publish_call *)c)->p);
}

static void publish_stored(void *arg, const tse_publish_result *r)
{
    publish_call *pc = arg;
    tse_server *s = pc->base.server;
    Tracseq__Events__V1__PublishResponse resp = TRACSEQ__EVENTS__V1__PUBLISH_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    tse_error err;

    if (account(s, &pc->p, r, &resp, &ts, &err) != TSE_OK) {
        tse_call_fail(&pc->base, &err);
        return;
    }
    if (r->duplicate)
        tse_call_log_kv(&pc->base, "duplicate", "true");
    tse_call_finish_unary(&pc->base, &resp.base, NULL);
}

/* Frees a unary call's request and its bytes (method keeps_bytes). */
static void release_request(tse_call *c)
{
    protobuf_c_message_free_unpacked(c->request, NULL);
    c->request = NULL;
    grpc_slice_unref(c->request_bytes);
    c->request_bytes = grpc_empty_slice();
}

/*
 * The unary publishes' common end, once the request was prepared (st):
 * frees the request (the envelope is packed: it is not needed while Redis
 * works), refuses it, or logs it and hands it to a writer lane.
 */
static void publish_prepared(publish_call *pc, tse_status st, tse_error *err)
{
    tse_call *c = &pc->base;
    tse_server *s = c->server;

    release_request(c);
    if (st != TSE_OK) {
        tse_stats_add(s->stats, TSE_STAT_INVALID, 1);
        tse_call_fail(c, err);
        return;
    }
    tse_call_log_kv(c, "event_type", pc->p.event_type);
    tse_call_log_kv(c, "event_id", pc->p.event_id);
    if (c->md_traceparent == NULL && pc->p.trace_id[0] != '\0')
        tse_call_log_kv(c, "trace_id", pc->p.trace_id);
    if (c->correlation_id[0] == '\0')
        copy_str(c->correlation_id, sizeof(c->correlation_id), pc->p.correlation_id);
    if (submit(s, tse_broker_pick_lane(s->broker), &pc->p, publish_stored, pc, err) != TSE_OK) {
        tse_stats_add(s->stats, TSE_STAT_UNAVAILABLE, 1);
        tse_call_fail(c, err);
    }
}

static void publish_start(tse_call *c)
{
    publish_call *pc = (publish_call *)c;
    tse_status st;
    tse_error err;

    if (!trace_metadata_ok(c))
        return;
    tse_error_clear(&err);
    pc->p.start_us = c->start_us;
    st = prepare_request(c, (Tracseq__Events__V1__PublishRequest *)c->request, &c->request_bytes,
                         &pc->p, &err);
    publish_prepared(pc, st, &err);
}

const tse_method tse_method_publish = {
    .path = "/tracseq.events.v1.EventService/Publish",
    .name = "Publish",
    .streaming_in = false,
    .backlog = 64,
    .call_size = sizeof(publish_call),
    .request = &tracseq__events__v1__publish_request__descriptor,
    .keeps_bytes = true,
    .counts_invalid = true,
    .start = publish_start,
    .release = publish_release,
};

/* ===================== PublishCloudEvent (unary) ======================== */

/*
 * The CloudEvent of a PublishCloudEventRequest mapped onto an Event
 * (domain/cloudevent.h: the same mapping as the REST bridge's), then
 * prepared as Publish prepares its event. A CloudEvent against its spec is
 * refused naming "event.<attribute>".
 */
static tse_status prepare_cloudevent(tse_call *c,
                                     Tracseq__Events__V1__PublishCloudEventRequest *req,
                                     prepared *p, tse_error *err)
{
    json_t *ce = NULL, *env = NULL;
    Tracseq__Events__V1__Event *ev = NULL;
    tse_status st;

    if (req->event == NULL)
        return tse_error_set(err, TSE_INVALID, "event", "is required");
    if ((st = tse_ce_from_proto(req->event, &ce, err)) != TSE_OK ||
        (st = tse_ce_to_envelope(ce, &env, err)) != TSE_OK ||
        (st = tse_ce_envelope_event(env, &ev, err)) != TSE_OK)
        tse_error_prefix_field(err, "event");
    else
        st = prepare_one(c, ev, NO_WIRE, SINGLE, p, err);
    if (ev != NULL)
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    json_decref(env);
    json_decref(ce);
    return st;
}

static void publish_cloudevent_start(tse_call *c)
{
    publish_call *pc = (publish_call *)c;
    tse_status st;
    tse_error err;

    tse_error_clear(&err);
    pc->p.start_us = c->start_us;
    st = prepare_cloudevent(c, (Tracseq__Events__V1__PublishCloudEventRequest *)c->request, &pc->p,
                            &err);
    publish_prepared(pc, st, &err);
}

const tse_method tse_method_publish_cloudevent = {
    .path = "/tracseq.events.v1.EventService/PublishCloudEvent",
    .name = "PublishCloudEvent",
    .streaming_in = false,
    .backlog = 16,
    .call_size = sizeof(publish_call),
    .request = &tracseq__events__v1__publish_cloud_event_request__descriptor,
    .counts_invalid = true,
    .start = publish_cloudevent_start,
    .release = publish_release,
};

/* ===================== answers-to-be: one per request message =========== */

/* One event's answer-to-be. */
typedef struct item {
    struct slot *sl;
    prepared p;
    char stream_id[48];
    char stream_key[TSE_EVENT_TYPE_MAX + 32];
    bool duplicate;
    tse_error err; /* code != TSE_OK: the result carries this error */
} item;

/*
 * One request message's answer-to-be: the event of a PublishStream request,
 * or the events of a batch (PublishBatch, PublishBatchStream), answered
 * together once Redis answered every one of them (pending 0). Its items
 * are submitted to one lane in order, so they reach Redis in request order.
 */
typedef struct slot {
    struct slot *next;
    tse_call *call;
    size_t n;       /* items */
    size_t pending; /* items submitted, not yet answered by the broker */
    bool batch;     /* answered with a PublishBatchResponse */
    tse_error err;  /* a batch refused as a whole: no items */
    item items[];
} slot;

static slot *slot_create(tse_call *c, size_t n, bool batch)
{
    slot *sl = calloc(1, sizeof(*sl) + n * sizeof(item));

    if (sl == NULL)
        return NULL;
    sl->call = c;
    sl->n = n;
    sl->batch = batch;
    tse_error_clear(&sl->err);
    for (size_t i = 0; i < n; i++) {
        sl->items[i].sl = sl;
        tse_error_clear(&sl->items[i].err);
    }
    return sl;
}

static void slot_free(slot *sl)
{
    if (sl == NULL)
        return;
    for (size_t i = 0; i < sl->n; i++)
        prepared_discard(&sl->items[i].p);
    free(sl);
}

/* Events the slot stands for in a stream's window (a refused batch: one). */
static int slot_weight(const slot *sl)
{
    return sl->n > 0 ? (int)sl->n : 1;
}

/* Items refused (not stored). */
static uint64_t slot_errors(const slot *sl)
{
    uint64_t n = sl->err.code != TSE_OK;

    for (size_t i = 0; i < sl->n; i++)
        n += sl->items[i].err.code != TSE_OK;
    return n;
}

/*
 * Prepares the events of a batch (sl->n, read from r), each alone, each
 * freed before the next is unpacked (transport/internal.h, tse_batch_reader):
 * a bad one fails with its field named under "events[i]", the others go
 * on. Nothing is announced or admitted yet, so an event that does not
 * unpack can still refuse the whole batch as decoding it whole did: then
 * the request's error is in err, and the items hold nothing.
 */
static tse_status prepare_batch(tse_call *c, tse_batch_reader *r, slot *sl, int64_t start_us,
                                tse_error *err)
{
    for (size_t i = 0; i < sl->n; i++) {
        item *it = &sl->items[i];
        ProtobufCMessage *ev;
        wire w;
        tse_status st = tse_batch_next(r, &ev, &w.data, &w.len, err);
        if (st != TSE_OK) {
            for (size_t j = 0; j < i; j++)
                prepared_discard(&sl->items[j].p);
            return st;
        }
        it->p.start_us = start_us;
        prepare_placed(c, (Tracseq__Events__V1__Event *)ev, r->reusable ? w : NO_WIRE, (long)i,
                       &it->p, &it->err);
        protobuf_c_message_free_unpacked(ev, NULL);
    }
    return TSE_OK;
}

/* Admits the prepared events of a batch, in order; counts the refused. */
static void admit_batch(tse_call *c, slot *sl)
{
    for (size_t i = 0; i < sl->n; i++) {
        item *it = &sl->items[i];
        if (it->err.code == TSE_OK)
            admit(c, &it->p, &it->err);
        if (it->err.code != TSE_OK)
            tse_stats_add(c->server->stats, TSE_STAT_INVALID, 1);
    }
}

/* Opens, then prepares a batch request of bb into a new slot (*out, NULL
 * when out of memory): false when the request is refused whole, with its
 * error in err (nothing prepared, *out may hold an empty slot). */
static bool batch_prepared(tse_call *c, grpc_byte_buffer *bb, int64_t start_us, slot **out,
                           tse_error *err)
{
    tse_batch_reader r;
    tse_status st;

    *out = NULL;
    if (!tse_batch_open(&r, bb, &tracseq__events__v1__publish_batch_request__descriptor,
                        TSE_PUBLISH_BATCH_MAX_EVENTS, err))
        return false;
    *out = slot_create(c, r.n, true);
    if (*out == NULL) {
        tse_batch_close(&r);
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        return false;
    }
    st = prepare_batch(c, &r, *out, start_us, err);
    tse_batch_close(&r);
    if (st != TSE_OK)
        (*out)->n = 0; /* its items hold nothing */
    return st == TSE_OK;
}

static void slot_answered_locked(slot *sl);

static void item_stored(void *arg, const tse_publish_result *r)
{
    item *it = arg;
    slot *sl = it->sl;
    tse_call *c = sl->call;
    Tracseq__Events__V1__PublishResponse resp = TRACSEQ__EVENTS__V1__PUBLISH_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

    pthread_mutex_lock(&c->lock);
    if (account(c->server, &it->p, r, &resp, &ts, &it->err) == TSE_OK) {
        copy_str(it->stream_id, sizeof(it->stream_id), r->stream_id);
        copy_str(it->stream_key, sizeof(it->stream_key), r->stream_key);
        it->duplicate = r->duplicate;
        it->p.ts_sec = ts.seconds; /* a duplicate's is the stored event's */
        it->p.ts_nanos = ts.nanos;
    }
    if (--sl->pending == 0)
        slot_answered_locked(sl);
    pthread_mutex_unlock(&c->lock);
    tse_call_unref(c); /* the broker job's */
}

/*
 * With the call's lock held: submits the slot's prepared items to the lane
 * as one batch (broker.h: one pipeline write, one script call for the
 * events with client ids), each job holding a reference to the call. When
 * the broker refuses the batch, every item gets that error. Returns whether
 * any item is pending.
 */
static bool slot_submit_locked(slot *sl, int lane)
{
    tse_call *c = sl->call;
    tse_server *s = c->server;
    tse_publish_msg *msgs;
    void **args;
    size_t n = 0;
    tse_status st = TSE_NOMEM;

    if (sl->n == 1 && sl->items[0].err.code == TSE_OK) {
        c->refs++; /* the broker job's */
        if (submit(s, lane, &sl->items[0].p, item_stored, &sl->items[0], &sl->items[0].err) ==
            TSE_OK) {
            sl->pending = 1;
            return true;
        }
        c->refs--;
        tse_stats_add(s->stats, TSE_STAT_UNAVAILABLE, 1);
        return false;
    }
    msgs = malloc((sl->n ? sl->n : 1) * sizeof(*msgs));
    args = malloc((sl->n ? sl->n : 1) * sizeof(*args));
    for (size_t i = 0; msgs != NULL && args != NULL && i < sl->n; i++) {
        if (sl->items[i].err.code != TSE_OK)
            continue;
        msg_of(&sl->items[i].p, &msgs[n]);
        args[n++] = &sl->items[i];
    }
    if (msgs != NULL && args != NULL)
        st = tse_broker_publish_batch(s->broker, lane, msgs, n, item_stored, args);
    if (st == TSE_OK) {
        sl->pending = n;
        c->refs += (int)n; /* the broker jobs' */
    } else {
        for (size_t i = 0; i < sl->n; i++)
            if (sl->items[i].err.code == TSE_OK) {
                refused(st, &sl->items[i].err);
                tse_stats_add(s->stats, TSE_STAT_UNAVAILABLE, 1);
            }
    }
    free(msgs);
    free(args);
    return sl->pending > 0;
}

static void fill_result(const item *it, Tracseq__Events__V1__PublishResponse *resp,
                        Tracseq__Events__V1__PublishError *perr, Google__Protobuf__Timestamp *ts)
{
    if (it->err.code != TSE_OK) {
        perr->code = (int32_t)tse_status_to_grpc(it->err.code);
        perr->message = (char *)it->err.message;
        perr->field = (char *)it->err.field;
        resp->error = perr;
        return;
    }
    ts->seconds = it->p.ts_sec;
    ts->nanos = it->p.ts_nanos;
    resp->event_id = (char *)it->p.event_id;
    resp->stream_id = (char *)it->stream_id;
    resp->stream = (char *)it->stream_key;
    resp->published_at = ts;
    resp->duplicate = it->duplicate;
    resp->schema_valid = it->p.schema_valid;
}

/* The PublishBatchResponse of an answered batch slot; NULL when out of memory. */
static grpc_byte_buffer *encode_batch(const slot *sl)
{
    Tracseq__Events__V1__PublishBatchResponse out =
        TRACSEQ__EVENTS__V1__PUBLISH_BATCH_RESPONSE__INIT;
    Tracseq__Events__V1__PublishError whole = TRACSEQ__EVENTS__V1__PUBLISH_ERROR__INIT;
    Tracseq__Events__V1__PublishResponse *resps, **ptrs;
    Tracseq__Events__V1__PublishError *perrs;
    Google__Protobuf__Timestamp *ts;
    grpc_byte_buffer *bb = NULL;
    size_t n = sl->n ? sl->n : 1;

    if (sl->err.code != TSE_OK) {
        whole.code = (int32_t)tse_status_to_grpc(sl->err.code);
        whole.message = (char *)sl->err.message;
        whole.field = (char *)sl->err.field;
        out.error = &whole;
        return tse_encode(&out.base);
    }
    resps = malloc(n * sizeof(*resps));
    ptrs = malloc(n * sizeof(*ptrs));
    perrs = malloc(n * sizeof(*perrs));
    ts = malloc(n * sizeof(*ts));
    if (resps == NULL || ptrs == NULL || perrs == NULL || ts == NULL)
        goto out;
    for (size_t i = 0; i < sl->n; i++) {
        tracseq__events__v1__publish_response__init(&resps[i]);
        tracseq__events__v1__publish_error__init(&perrs[i]);
        google__protobuf__timestamp__init(&ts[i]);
        fill_result(&sl->items[i], &resps[i], &perrs[i], &ts[i]);
        ptrs[i] = &resps[i];
    }
    out.n_results = sl->n;
    out.results = ptrs;
    bb = tse_encode(&out.base);
out:
    free(resps);
    free(ptrs);
    free(perrs);
    free(ts);
    return bb;
}

/* The answer of an answered slot; NULL when out of memory. */
static grpc_byte_buffer *encode_slot(const slot *sl)
{
    Tracseq__Events__V1__PublishResponse resp = TRACSEQ__EVENTS__V1__PUBLISH_RESPONSE__INIT;
    Tracseq__Events__V1__PublishError perr = TRACSEQ__EVENTS__V1__PUBLISH_ERROR__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

    if (sl->batch)
        return encode_batch(sl);
    fill_result(&sl->items[0], &resp, &perr, &ts);
    return tse_encode(&resp.base);
}

/* ===================== PublishBatch (unary) ============================= */

typedef struct batch_call {
    tse_call base;
    slot *sl;
} batch_call;

static void batch_release(tse_call *c)
{
    slot_free(((batch_call *)c)->sl);
}

/* With the lock held, by a holder of a reference: the answer. */
static void batch_finish_locked(slot *sl)
{
    tse_call *c = sl->call;
    grpc_byte_buffer *bb = encode_slot(sl);
    char msg[64];
    tse_error err;

    snprintf(msg, sizeof(msg), "%zu events, %llu refused", sl->n,
             (unsigned long long)slot_errors(sl));
    tse_call_log_kv(c, "events", msg);
    if (bb == NULL) {
        tse_error_set(&err, TSE_NOMEM, NULL, "out of memory");
        tse_call_finish_locked(c, NULL, &err);
        return;
    }
    tse_call_finish_locked(c, bb, NULL);
}

/*
 * The request is read here (method reads_payload), one event at a time;
 * it is refused as the server refuses a request that does not decode
 * (counted invalid, INVALID_ARGUMENT) before the call's trace metadata is
 * looked at, as when the server decoded it whole before the handler ran.
 */
static void batch_start(tse_call *c)
{
    batch_call *bc = (batch_call *)c;
    tse_error err;

    tse_error_clear(&err);
    if (!batch_prepared(c, c->payload, c->start_us, &bc->sl, &err)) {
        if (bc->sl != NULL || err.code != TSE_NOMEM) /* not our own slot's allocation */
            tse_stats_add(c->server->stats, TSE_STAT_INVALID, 1);
        tse_call_fail(c, &err);
        return;
    }
    if (!trace_metadata_ok(c))
        return;
    admit_batch(c, bc->sl);
    pthread_mutex_lock(&c->lock);
    c->refs++; /* held across the finish below */
    if (!slot_submit_locked(bc->sl, tse_broker_pick_lane(c->server->broker)))
        batch_finish_locked(bc->sl);
    pthread_mutex_unlock(&c->lock);
    tse_call_unref(c);
}

const tse_method tse_method_publish_batch = {
    .path = "/tracseq.events.v1.EventService/PublishBatch",
    .name = "PublishBatch",
    .streaming_in = false,
    .backlog = 16,
    .call_size = sizeof(batch_call),
    .request = &tracseq__events__v1__publish_batch_request__descriptor,
    .max_entries = TSE_PUBLISH_BATCH_MAX_EVENTS,
    .reads_payload = true,
    .counts_invalid = true,
    .start = batch_start,
    .release = batch_release,
};

/* ===================== PublishStream, PublishBatchStream (bidi) ========= */

typedef struct stream_call {
    tse_call base;
    tse_tag recv_tag, send_tag, close_tag;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    slot *head, *tail;
    int unanswered; /* events queued, not yet sent */
    int lane;
    bool batch; /* PublishBatchStream */
    bool recv_pending, send_pending, input_done, failed;
    bool preparing;       /* a received request is being prepared outside the lock */
    bool winding_down;    /* the server is stopping */
    int64_t last_recv_us; /* when the last request arrived (0: never) */
    uint64_t received, errors, discarded;
} stream_call;

/*
 * Winding down, a stream keeps reading (and discarding, unanswered) what
 * the client still sends, and ends once nothing arrived for this long. The
 * status then goes out on a connection with nothing more on its way in:
 * closed with unread bytes, the socket would reset, and the client's
 * transport could fail its pending write ("Broken pipe") before reading
 * the answers and the status that were already there.
 */
#define TSE_DRAIN_QUIET_US (100 * 1000)

static void stream_try_send(stream_call *sc);

static void stream_release(tse_call *c)
{
    stream_call *sc = (stream_call *)c;

    while (sc->head) {
        slot *next = sc->head->next;
        slot_free(sc->head);
        sc->head = next;
    }
    if (sc->recv_buf)
        grpc_byte_buffer_destroy(sc->recv_buf);
    if (sc->send_buf)
        grpc_byte_buffer_destroy(sc->send_buf);
}

static void stream_post_recv(stream_call *sc)
{
    if (sc->recv_pending || sc->input_done || sc->failed || !tse_call_active_locked(&sc->base))
        return;
    if (tse_call_recv_locked(&sc->base, &sc->recv_buf, &sc->recv_tag))
        sc->recv_pending = true;
    else
        sc->input_done = true;
}

/* Ends the stream (the status) once input ended and every response went
 * out, or at once when the client is gone. */
static void stream_finish(stream_call *sc, tse_status st)
{
    char msg[320];
    tse_error end;

    snprintf(msg, sizeof(msg), "%llu events, %llu refused", (unsigned long long)sc->received,
             (unsigned long long)sc->errors);
    if (sc->discarded > 0)
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), ", %llu not accepted",
                 (unsigned long long)sc->discarded);
    tse_call_log_kv(&sc->base, "events", msg);
    if (st == TSE_UNAVAILABLE)
        snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
                 "; the server is shutting down: every event answered is stored, none left "
                 "unanswered is: resend those to another instance");
    tse_error_set(&end, st, NULL, "%s", msg);
    tse_call_finish_locked(&sc->base, NULL, &end);
}

/* Takes the head slot off the FIFO and frees it. */
static void stream_pop(stream_call *sc)
{
    slot *sl = sc->head;

    sc->head = sl->next;
    if (sc->head == NULL)
        sc->tail = NULL;
    sc->unanswered -= slot_weight(sl);
    sc->errors += slot_errors(sl);
    slot_free(sl);
}

/* Sends the head slot if it is answered and no send is in flight. */
static void stream_try_send(stream_call *sc)
{
    slot *sl = sc->head;
    bool more;

    if (sc->send_pending || !tse_call_active_locked(&sc->base))
        return;
    if (sc->failed) {
        /* The client is gone: nothing more can be sent; drop answered slots. */
        while (sc->head && sc->head->pending == 0)
            stream_pop(sc);
        return;
    }
    if (sl == NULL) {
        if (sc->input_done) /* UNAVAILABLE when some were drained unanswered */
            stream_finish(sc, sc->discarded > 0 ? TSE_UNAVAILABLE : TSE_OK);
        else if (sc->winding_down && !sc->preparing &&
                 tse_clock_us() - sc->last_recv_us >= TSE_DRAIN_QUIET_US)
            stream_finish(sc, TSE_UNAVAILABLE);
        return;
    }
    if (sl->pending > 0)
        return;
    sc->send_buf = encode_slot(sl);
    /* Buffered when the next answer is ready behind it (never the last
     * queued one: it would never flush). */
    more = sl->next && sl->next->pending == 0;
    stream_pop(sc);
    if (sc->send_buf == NULL) {
        sc->failed = true;
        stream_try_send(sc);
        return;
    }
    sc->send_pending = tse_call_send_locked(&sc->base, sc->send_buf, more, &sc->send_tag);
    if (!sc->send_pending)
        sc->failed = true;
    if (sc->unanswered < sc->base.server->config->stream_window)
        stream_post_recv(sc);
}

/* With the lock held: the last item of sl was answered. */
static void slot_answered_locked(slot *sl)
{
    if (sl->call->method->streaming_in)
        stream_try_send((stream_call *)sl->call);
    else
        batch_finish_locked(sl);
}

/* Decodes one PublishBatchStream message into a new slot; a batch that does
 * not decode, or is over the limit, becomes a slot refused as a whole. */
static slot *stream_prepare_batch(stream_call *sc, grpc_byte_buffer *bb, int64_t start_us)
{
    tse_error err;
    slot *sl;

    tse_error_clear(&err);
    if (batch_prepared(&sc->base, bb, start_us, &sl, &err)) {
        admit_batch(&sc->base, sl);
        return sl;
    }
    if (sl == NULL && err.code != TSE_NOMEM)
        sl = slot_create(&sc->base, 0, true);
    if (sl != NULL) {
        tse_stats_add(sc->base.server->stats, TSE_STAT_INVALID, 1);
        sl->err = err;
    }
    return sl;
}

/*
 * Decodes, validates and packs one received request into a new slot. Runs
 * without the call's lock (it is the expensive part), so the broker lane
 * completing earlier events of this stream never waits for it. NULL when out
 * of memory.
 */
static slot *stream_prepare(stream_call *sc, grpc_byte_buffer *bb)
{
    int64_t start_us = tse_clock_us();
    Tracseq__Events__V1__PublishRequest *req;
    grpc_slice bytes = grpc_empty_slice();
    slot *sl;

    if (sc->batch) {
        sl = stream_prepare_batch(sc, bb, start_us);
        return sl; /* NULL: out of memory, the caller fails the stream */
    }
    if ((sl = slot_create(&sc->base, 1, false)) == NULL)
        return NULL;
    sl->items[0].p.start_us = start_us;
    req = (Tracseq__Events__V1__PublishRequest *)tse_decode_keeping(
        bb, &tracseq__events__v1__publish_request__descriptor, 0, &bytes, &sl->items[0].err);
    if (req != NULL) {
        prepare_request(&sc->base, req, &bytes, &sl->items[0].p, &sl->items[0].err);
        protobuf_c_message_free_unpacked(&req->base, NULL);
        grpc_slice_unref(bytes);
    }
    if (sl->items[0].err.code != TSE_OK)
        tse_stats_add(sc->base.server->stats, TSE_STAT_INVALID, 1);
    return sl;
}

/* With the lock held: queues the slot in request order and submits it. */
static void stream_accept(stream_call *sc, slot *sl)
{
    if (sc->tail)
        sc->tail->next = sl;
    else
        sc->head = sl;
    sc->tail = sl;
    sc->unanswered += slot_weight(sl);
    sc->received += sl->n;
    slot_submit_locked(sl, sc->lane);
}

/*
 * recv_pending stays set while the request is prepared outside the lock, so
 * nobody posts the next receive before this one is queued: requests enter
 * the FIFO (and the broker lane) in the order they arrived.
 */
static void stream_on_recv(tse_tag *tag, bool ok)
{
    stream_call *sc = TSE_CONTAINER_OF(tag, stream_call, recv_tag);
    grpc_byte_buffer *bb;
    slot *sl = NULL;

    pthread_mutex_lock(&sc->base.lock);
    bb = sc->recv_buf;
    sc->recv_buf = NULL;
    if (bb != NULL)
        sc->last_recv_us = tse_clock_us();
    /* Arrived after the status: never stored, never answered. */
    if (bb != NULL && !tse_call_active_locked(&sc->base)) {
        grpc_byte_buffer_destroy(bb);
        bb = NULL;
        ok = false;
    }
    /* Arrived winding down: drained, never stored, never answered. */
    if (bb != NULL && sc->winding_down) {
        grpc_byte_buffer_destroy(bb);
        sc->discarded++;
        sc->recv_pending = false;
        stream_post_recv(sc);
        stream_try_send(sc);
        pthread_mutex_unlock(&sc->base.lock);
        tse_call_unref(&sc->base);
        return;
    }
    sc->preparing = bb != NULL;
    pthread_mutex_unlock(&sc->base.lock);
    if (ok && bb != NULL) {
        sl = stream_prepare(sc, bb);
        grpc_byte_buffer_destroy(bb);
    }
    pthread_mutex_lock(&sc->base.lock);
    sc->recv_pending = false;
    sc->preparing = false;
    if (!ok || bb == NULL) {
        /* Half-close (or failure): answer what is queued, then the status. */
        sc->input_done = true;
    } else if (sl == NULL) {
        sc->failed = true;
    } else {
        stream_accept(sc, sl);
        if (sc->unanswered < sc->base.server->config->stream_window)
            stream_post_recv(sc);
    }
    stream_try_send(sc);
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base);
}

static void stream_on_send(tse_tag *tag, bool ok)
{
    stream_call *sc = TSE_CONTAINER_OF(tag, stream_call, send_tag);

    pthread_mutex_lock(&sc->base.lock);
    sc->send_pending = false;
    if (sc->send_buf) {
        grpc_byte_buffer_destroy(sc->send_buf);
        sc->send_buf = NULL;
    }
    if (!ok)
        sc->failed = true;
    stream_try_send(sc);
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base);
}

static void stream_on_close(tse_tag *tag, bool ok)
{
    stream_call *sc = TSE_CONTAINER_OF(tag, stream_call, close_tag);

    tse_call_unlist(&sc->base, &sc->base.server->publish_streams);
    pthread_mutex_lock(&sc->base.lock);
    if (sc->base.cancelled)
        sc->failed = true;
    stream_try_send(sc);
    /* Still ACTIVE: the client cancelled before the status went out. */
    if (tse_call_active_locked(&sc->base))
        stream_finish(sc, TSE_CANCELLED);
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base); /* the close op's */
}

static void stream_start(tse_call *c)
{
    stream_call *sc = (stream_call *)c;

    if (!trace_metadata_ok(c))
        return;
    sc->recv_tag.fn = stream_on_recv;
    sc->send_tag.fn = stream_on_send;
    sc->close_tag.fn = stream_on_close;
    sc->batch = c->method == &tse_method_publish_batch_stream;
    sc->lane = tse_broker_pick_lane(c->server->broker);
    /* Lock order everywhere: watch_lock, then a call's lock. */
    pthread_mutex_lock(&c->server->watch_lock);
    pthread_mutex_lock(&c->lock);
    if (tse_call_open_stream_locked(c, &c->server->publish_streams, &sc->close_tag)) {
        /* A stream that arrives as the server stops winds down at once. */
        sc->winding_down = atomic_load(&c->server->shutting_down);
        stream_post_recv(sc);
        stream_try_send(sc);
    }
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&c->server->watch_lock);
}

const tse_method tse_method_publish_stream = {
    .path = "/tracseq.events.v1.EventService/PublishStream",
    .name = "PublishStream",
    .streaming_in = true,
    .backlog = 8,
    .call_size = sizeof(stream_call),
    .request = &tracseq__events__v1__publish_request__descriptor,
    .start = stream_start,
    .release = stream_release,
};

const tse_method tse_method_publish_batch_stream = {
    .path = "/tracseq.events.v1.EventService/PublishBatchStream",
    .name = "PublishBatchStream",
    .streaming_in = true,
    .backlog = 8,
    .call_size = sizeof(stream_call),
    .request = &tracseq__events__v1__publish_batch_request__descriptor,
    .start = stream_start,
    .release = stream_release,
};

void tse_publish_shutdown(tse_server *s)
{
    pthread_mutex_lock(&s->watch_lock);
    for (tse_call *c = s->publish_streams.head; c; c = c->next_live) {
        pthread_mutex_lock(&c->lock);
        ((stream_call *)c)->winding_down = true;
        stream_try_send((stream_call *)c);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&s->watch_lock);
}
