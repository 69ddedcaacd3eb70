/*
 * test_service_trace.c - W3C Trace Context end to end against a real
 * redis-server and the real tracseq-events: `traceparent` / `tracestate`
 * call metadata of Publish, PublishBatch, PublishStream and
 * PublishBatchStream reach every event without a context of its own, are
 * stored in the Redis entry's envelope, and come back to subscribers in
 * Delivery (Subscribe) and Pull; an event's own context wins; a bad one is
 * refused INVALID_ARGUMENT naming the field, and nothing is stored; the
 * trace id is in the service's log lines of the publish and the delivery.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client.h"
#include "harness.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define M_PUBLISH              "/tracseq.events.v1.EventService/Publish"
#define M_PUBLISH_BATCH        "/tracseq.events.v1.EventService/PublishBatch"
#define M_PUBLISH_STREAM       "/tracseq.events.v1.EventService/PublishStream"
#define M_PUBLISH_BATCH_STREAM "/tracseq.events.v1.EventService/PublishBatchStream"
#define M_SUBSCRIBE            "/tracseq.events.v1.EventService/Subscribe"
#define M_CREATE               "/tracseq.events.v1.EventService/CreateSubscription"
#define M_PULL                 "/tracseq.events.v1.EventService/Pull"

#define TRACE_ID  "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP        "00-" TRACE_ID "-00f067aa0ba902b7-01"
#define TS        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
#define TRACE_ID2 "0af7651916cd43dd8448eb211c80319c"
#define TP2       "00-" TRACE_ID2 "-b7ad6b7169203331-00"

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__PublishBatchRequest PublishBatchRequest;
typedef Tracseq__Events__V1__PublishBatchResponse PublishBatchResponse;
typedef Tracseq__Events__V1__Delivery Delivery;

typedef tse_test_world world;

static int world_up(void **state)
{
    /* Debug lines: the delivery's line carries the trace id. */
    *state = tse_test_world_start(tse_test_redis_start(true),
                                  (const char *const[]){"--log-level=debug", NULL}, false, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* ---- helpers ---- */

/* A generic event of type with an empty data payload; traceparent and
 * tracestate may be NULL (unset). */
static void event_init(Event *ev, Google__Protobuf__Struct *data, const char *type,
                       const char *traceparent, const char *tracestate)
{
    tracseq__events__v1__event__init(ev);
    google__protobuf__struct__init(data);
    ev->event_type = (char *)type;
    ev->source_service = "trace-test";
    ev->payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev->data = data;
    if (traceparent != NULL)
        ev->traceparent = (char *)traceparent;
    if (tracestate != NULL)
        ev->tracestate = (char *)tracestate;
}

/* The trace metadata of a call: n pairs of md (traceparent first). */
static const tse_client_metadata trace_md[] = {{"traceparent", TP}, {"tracestate", TS}};

static grpc_status_code publish(world *w, Event *ev, const tse_client_metadata *md, size_t n_md,
                                PublishResponse **resp, tse_test_status *st)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;

    req.event = ev;
    return tse_test_unary_md(w->ch, M_PUBLISH, &req.base,
                             &tracseq__events__v1__publish_response__descriptor,
                             (ProtobufCMessage **)resp, st, 5000, md, n_md);
}

/* The stored envelope of one stream entry (NULL when absent). */
static Event *read_entry(const world *w, const char *key, const char *id)
{
    redisContext *c = redisConnect("127.0.0.1", w->redis->port);
    redisReply *rep = redisCommand(c, "XRANGE %s %s %s", key, id, id);
    Event *ev = NULL;

    assert_non_null(rep);
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
        redisReply *fields = rep->element[0]->element[1];
        for (size_t i = 0; i + 1 < fields->elements; i += 2)
            if (strcmp(fields->element[i]->str, "event") == 0)
                ev = tracseq__events__v1__event__unpack(NULL, fields->element[i + 1]->len,
                                                        (uint8_t *)fields->element[i + 1]->str);
    }
    freeReplyObject(rep);
    redisFree(c);
    return ev;
}

/* The stored event of a publish answer has this trace context. */
static void expect_stored(const world *w, const PublishResponse *r, const char *traceparent,
                          const char *tracestate)
{
    Event *ev = read_entry(w, r->stream, r->stream_id);

    assert_non_null(ev);
    assert_string_equal(ev->traceparent, traceparent);
    assert_string_equal(ev->tracestate, tracestate);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

/* Whether anything of type was stored (its default-priority stream exists). */
static bool anything_stored(const world *w, const char *type)
{
    char *out = tse_test_redis_cmd(w->redis, "EXISTS tracseq:events:{%s}:p3", type);
    bool yes;

    assert_non_null(out);
    yes = strcmp(out, "0") != 0;
    free(out);
    return yes;
}

/* details read "<field>: <message>". */
static void assert_names_field(const tse_test_status *st, const char *field)
{
    size_t n = strlen(field);

    if (strncmp(st->details, field, n) != 0 || st->details[n] != ':')
        fail_msg("expected the error to name %s, got '%s'", field, st->details);
}

/* Whether a line of the service's log holds all three strings. */
static bool logged(const world *w, const char *a, const char *b, const char *c)
{
    FILE *f = fopen(w->service->log, "r");
    char line[8192];
    bool found = false;

    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, a) && strstr(line, b) && strstr(line, c);
    fclose(f);
    return found;
}

static bool wait_logged(const world *w, const char *a, const char *b, const char *c)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, 5000);
    while (!logged(w, a, b, c))
        if (!tse_test_waiter_poll(&waiter))
            return false;
    return true;
}

/* A subscription of type's events from the earliest, by name. */
static void create_subscription(world *w, const char *name, const char *type)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    Google__Protobuf__Timestamp epoch = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char *types[1] = {(char *)type};
    tse_test_status st;

    sub.name = (char *)name;
    sub.event_types = types;
    sub.n_event_types = 1;
    sub.start_time = &epoch; /* from the first event */
    req.subscription = &sub;
    assert_int_equal(tse_test_unary(w->ch, M_CREATE, &req.base,
                                    &tracseq__events__v1__subscription__descriptor, NULL, &st, 5000,
                                    NULL, NULL),
                     GRPC_STATUS_OK);
}

/* ==== gRPC metadata in, Delivery and Pull out ==== */

static void metadata_reaches_the_stored_event_and_its_delivery(void **state)
{
    world *w = *state;
    Event ev;
    Google__Protobuf__Struct data;
    PublishResponse *resp = NULL;
    tse_test_status st;
    Tracseq__Events__V1__SubscribeRequest sreq = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s;
    Delivery *d;

    create_subscription(w, "trace-sub", "trace.unary");
    event_init(&ev, &data, "trace.unary", NULL, NULL);
    assert_int_equal(publish(w, &ev, trace_md, 2, &resp, &st), GRPC_STATUS_OK);
    expect_stored(w, resp, TP, TS);

    sreq.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    sreq.subscription_name = "trace-sub";
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, 20000, NULL, NULL);
    assert_true(tse_test_stream_send(s, &sreq.base));
    d = (Delivery *)tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, 5000, NULL);
    assert_non_null(d);
    assert_non_null(d->event);
    assert_string_equal(d->event->id, resp->event_id);
    assert_string_equal(d->event->traceparent, TP);
    assert_string_equal(d->event->tracestate, TS);
    /* The trace id is in the publish's request line and the delivery's line. */
    assert_true(
        wait_logged(w, "\"method\":\"Publish\"", "\"trace_id\":\"" TRACE_ID "\"", resp->event_id));
    assert_true(wait_logged(w, "event delivered", "\"trace_id\":\"" TRACE_ID "\"", resp->event_id));
    protobuf_c_message_free_unpacked(&d->base, NULL);
    tse_test_stream_cancel(s);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void pull_hands_back_the_trace_context(void **state)
{
    world *w = *state;
    Event ev;
    Google__Protobuf__Struct data;
    PublishResponse *resp = NULL;
    Tracseq__Events__V1__PullRequest preq = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    Tracseq__Events__V1__PullResponse *pulled = NULL;
    tse_test_status st;

    create_subscription(w, "trace-pull", "trace.pull");
    /* The event's own context, no metadata. */
    event_init(&ev, &data, "trace.pull", TP2, "a=1");
    assert_int_equal(publish(w, &ev, NULL, 0, &resp, &st), GRPC_STATUS_OK);
    preq.subscription = "trace-pull";
    preq.max_events = 1;
    preq.wait_ms = 5000;
    assert_int_equal(tse_test_unary(w->ch, M_PULL, &preq.base,
                                    &tracseq__events__v1__pull_response__descriptor,
                                    (ProtobufCMessage **)&pulled, &st, 10000, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_int_equal(pulled->n_deliveries, 1);
    assert_string_equal(pulled->deliveries[0]->event->traceparent, TP2);
    assert_string_equal(pulled->deliveries[0]->event->tracestate, "a=1");
    assert_true(
        wait_logged(w, "\"method\":\"Pull\"", "event delivered", "\"trace_id\":\"" TRACE_ID2 "\""));
    protobuf_c_message_free_unpacked(&pulled->base, NULL);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void a_batch_event_keeps_its_own_context_over_the_metadata(void **state)
{
    world *w = *state;
    Event ev[3];
    Google__Protobuf__Struct data[3];
    Event *evs[3] = {&ev[0], &ev[1], &ev[2]};
    PublishBatchRequest req = TRACSEQ__EVENTS__V1__PUBLISH_BATCH_REQUEST__INIT;
    PublishBatchResponse *resp = NULL;
    tse_test_status st;

    event_init(&ev[0], &data[0], "trace.batch", NULL, NULL);
    event_init(&ev[1], &data[1], "trace.batch", TP2, NULL);
    event_init(&ev[2], &data[2], "trace.batch", NULL, NULL);
    req.events = evs;
    req.n_events = 3;
    assert_int_equal(tse_test_unary_md(w->ch, M_PUBLISH_BATCH, &req.base,
                                       &tracseq__events__v1__publish_batch_response__descriptor,
                                       (ProtobufCMessage **)&resp, &st, 5000, trace_md, 2),
                     GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, 3);
    expect_stored(w, resp->results[0], TP, TS);
    expect_stored(w, resp->results[1], TP2, ""); /* its own pair, whole */
    expect_stored(w, resp->results[2], TP, TS);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* Publishes n events on a stream of method carrying the trace metadata
 * (each alone, or all in one batch message) and checks each is stored
 * with it. */
static void stream_applies_metadata_to_every_event(world *w, const char *method, bool batch)
{
    Event ev[3];
    Google__Protobuf__Struct data[3];
    Event *evs[3] = {&ev[0], &ev[1], &ev[2]};
    tse_test_stream *s = tse_test_stream_open(w->ch, method, 10000, NULL, NULL);
    tse_test_status st;

    tse_test_stream_add_metadata(s, "traceparent", TP);
    tse_test_stream_add_metadata(s, "tracestate", TS);
    for (int i = 0; i < 3; i++)
        event_init(&ev[i], &data[i], "trace.stream", NULL, NULL);
    if (batch) {
        PublishBatchRequest req = TRACSEQ__EVENTS__V1__PUBLISH_BATCH_REQUEST__INIT;
        PublishBatchResponse *resp;
        req.events = evs;
        req.n_events = 3;
        assert_true(tse_test_stream_send(s, &req.base));
        resp = (PublishBatchResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_batch_response__descriptor, 5000, NULL);
        assert_non_null(resp);
        assert_int_equal(resp->n_results, 3);
        for (int i = 0; i < 3; i++)
            expect_stored(w, resp->results[i], TP, TS);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    } else {
        for (int i = 0; i < 3; i++) {
            PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
            PublishResponse *resp;
            req.event = evs[i];
            assert_true(tse_test_stream_send(s, &req.base));
            resp = (PublishResponse *)tse_test_stream_recv(
                s, &tracseq__events__v1__publish_response__descriptor, 5000, NULL);
            assert_non_null(resp);
            expect_stored(w, resp, TP, TS);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
    }
    assert_true(tse_test_stream_close_send(s));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_OK);
}

static void publish_stream_metadata_applies_to_every_event(void **state)
{
    stream_applies_metadata_to_every_event(*state, M_PUBLISH_STREAM, false);
}

static void publish_batch_stream_metadata_applies_to_every_event(void **state)
{
    stream_applies_metadata_to_every_event(*state, M_PUBLISH_BATCH_STREAM, true);
}

/* ==== refusals: naming the field, nothing stored ==== */

static void a_bad_traceparent_in_metadata_is_refused_and_nothing_stored(void **state)
{
    world *w = *state;
    Event ev;
    Google__Protobuf__Struct data;
    PublishResponse *resp = NULL;
    tse_test_status st;
    static const tse_client_metadata upper[] = {
        {"traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}};
    static const tse_client_metadata zero[] = {
        {"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}};
    static const tse_client_metadata state_alone[] = {{"tracestate", "a=1"}};
    static const tse_client_metadata bad_state[] = {{"traceparent", TP}, {"tracestate", "A=1"}};

    event_init(&ev, &data, "trace.refused", NULL, NULL);
    assert_int_equal(publish(w, &ev, upper, 1, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "traceparent");
    assert_int_equal(publish(w, &ev, zero, 1, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "traceparent");
    assert_int_equal(publish(w, &ev, state_alone, 1, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "tracestate");
    assert_int_equal(publish(w, &ev, bad_state, 2, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "tracestate");
    assert_null(resp);
    assert_false(anything_stored(w, "trace.refused"));
}

static void a_bad_traceparent_of_the_event_is_refused_naming_it(void **state)
{
    world *w = *state;
    Event ev;
    Google__Protobuf__Struct data;
    PublishResponse *resp = NULL;
    tse_test_status st;

    event_init(&ev, &data, "trace.refused_own", "01-" TRACE_ID "-00f067aa0ba902b7-01.x", NULL);
    assert_int_equal(publish(w, &ev, NULL, 0, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "event.traceparent");
    event_init(&ev, &data, "trace.refused_own", NULL, "a=1");
    assert_int_equal(publish(w, &ev, NULL, 0, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "event.tracestate");
    assert_false(anything_stored(w, "trace.refused_own"));
}

static void a_stream_with_bad_metadata_is_refused_before_any_event(void **state)
{
    world *w = *state;
    Event ev;
    Google__Protobuf__Struct data;
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(w->ch, M_PUBLISH_STREAM, 10000, "traceparent", "x");
    tse_test_status st;

    event_init(&ev, &data, "trace.refused_stream", NULL, NULL);
    req.event = &ev;
    (void)tse_test_stream_send(s, &req.base); /* may race the refusal */
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_names_field(&st, "traceparent");
    assert_false(anything_stored(w, "trace.refused_stream"));
}

static void a_later_version_traceparent_is_accepted_as_is(void **state)
{
    world *w = *state;
    Event ev;
    Google__Protobuf__Struct data;
    PublishResponse *resp = NULL;
    tse_test_status st;
    static const tse_client_metadata later[] = {
        {"traceparent", "cc-" TRACE_ID "-00f067aa0ba902b7-01-what-the-future-holds"}};

    event_init(&ev, &data, "trace.later", NULL, NULL);
    assert_int_equal(publish(w, &ev, later, 1, &resp, &st), GRPC_STATUS_OK);
    expect_stored(w, resp, "cc-" TRACE_ID "-00f067aa0ba902b7-01-what-the-future-holds", "");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metadata_reaches_the_stored_event_and_its_delivery),
        cmocka_unit_test(pull_hands_back_the_trace_context),
        cmocka_unit_test(a_batch_event_keeps_its_own_context_over_the_metadata),
        cmocka_unit_test(publish_stream_metadata_applies_to_every_event),
        cmocka_unit_test(publish_batch_stream_metadata_applies_to_every_event),
        cmocka_unit_test(a_bad_traceparent_in_metadata_is_refused_and_nothing_stored),
        cmocka_unit_test(a_bad_traceparent_of_the_event_is_refused_naming_it),
        cmocka_unit_test(a_stream_with_bad_metadata_is_refused_before_any_event),
        cmocka_unit_test(a_later_version_traceparent_is_accepted_as_is),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
