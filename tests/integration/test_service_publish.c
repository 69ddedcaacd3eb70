/*
 * test_service_publish.c - the event service end to end: a real
 * redis-server, the real tracseq-events binary, and gRPC calls over
 * loopback. Events are read back from Redis directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/pbjson.h"
#include "domain/validate.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc_client.h"
#include "harness.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define PUBLISH        "/tracseq.events.v1.EventService/Publish"
#define PUBLISH_STREAM "/tracseq.events.v1.EventService/PublishStream"
#define HEALTH_CHECK   "/grpc.health.v1.Health/Check"
#define HEALTH_WATCH   "/grpc.health.v1.Health/Watch"

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;

/* One Redis and one lenient service shared by the tests that need no other. */
typedef tse_test_world world;

static int world_up(void **state, const char *const *args)
{
    *state = tse_test_world_start(tse_test_redis_start(true), args, false, NULL);
    return 0;
}

/* Graceful shutdown: SIGTERM must end the process with status 0. */
static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

static int lenient_up(void **state)
{
    return world_up(state, (const char *const[]){"--redis-timeout=500ms", NULL});
}

static int strict_up(void **state)
{
    return world_up(state, (const char *const[]){"--validation-mode=strict", NULL});
}

/* ---- helpers ---- */

static Event *event_from_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    ProtobufCMessage *msg = NULL;
    tse_error err;

    if (j == NULL)
        fail_msg("bad test JSON: %s: %s", jerr.text, text);
    if (tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &msg, &err) != TSE_OK)
        fail_msg("test JSON does not map onto Event: %s %s", err.field, err.message);
    json_decref(j);
    return (Event *)msg;
}

static grpc_status_code publish(tse_client *ch, Event *ev, PublishResponse **resp,
                                tse_test_status *st, const char *md_key, const char *md_value)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;

    req.event = ev;
    return tse_test_unary(ch, PUBLISH, &req.base,
                          &tracseq__events__v1__publish_response__descriptor,
                          (ProtobufCMessage **)resp, st, 5000, md_key, md_value);
}

static grpc_status_code publish_json(tse_client *ch, const char *text, PublishResponse **resp,
                                     tse_test_status *st)
{
    Event *ev = event_from_json(text);
    grpc_status_code code = publish(ch, ev, resp, st, NULL, NULL);

    protobuf_c_message_free_unpacked(&ev->base, NULL);
    return code;
}

/* The stored envelope of one stream entry; NULL when absent. */
static Event *read_entry(const tse_test_redis *r, const char *key, const char *id,
                         json_t **plain_fields)
{
    redisContext *c = redisConnect("127.0.0.1", r->port);
    redisReply *rep = redisCommand(c, "XRANGE %s %s %s", key, id, id);
    Event *ev = NULL;

    assert_non_null(rep);
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
        redisReply *fields = rep->element[0]->element[1];
        if (plain_fields)
            *plain_fields = json_object();
        for (size_t i = 0; i + 1 < fields->elements; i += 2) {
            redisReply *k = fields->element[i], *v = fields->element[i + 1];
            if (strcmp(k->str, "event") == 0)
                ev = tracseq__events__v1__event__unpack(NULL, v->len, (uint8_t *)v->str);
            else if (plain_fields)
                json_object_set_new(*plain_fields, k->str, json_stringn(v->str, v->len));
        }
    }
    freeReplyObject(rep);
    redisFree(c);
    return ev;
}

static long long redis_int(const tse_test_redis *r, const char *fmt, const char *arg)
{
    char *out = tse_test_redis_cmd(r, fmt, arg);
    long long v;

    assert_non_null(out);
    v = atoll(out);
    free(out);
    return v;
}

/* ---- every catalog type round-trips through Redis ---- */

static void test_every_catalog_type_is_stored_with_every_field(void **state)
{
    world *w = *state;
    char path[512];
    json_error_t jerr;
    json_t *fixtures, *fixture;
    size_t i;

    snprintf(path, sizeof(path), "%s/tests/fixtures/catalog_events.json", getenv("TSE_SOURCE_DIR"));
    fixtures = json_load_file(path, 0, &jerr);
    assert_non_null(fixtures);
    assert_int_equal(json_array_size(fixtures), 18);
    json_array_foreach(fixtures, i, fixture)
    {
        char *text = json_dumps(fixture, 0);
        PublishResponse *resp = NULL;
        tse_test_status st;
        json_t *plain = NULL, *stored_json, *expected;
        char ts[64], prio[8];

        assert_int_equal(publish_json(w->ch, text, &resp, &st), GRPC_STATUS_OK);
        assert_non_null(resp);
        assert_true(tse_uuid_valid(resp->event_id));
        assert_true(resp->schema_valid);
        assert_false(resp->duplicate);
        Event *stored = read_entry(w->redis, resp->stream, resp->stream_id, &plain);
        assert_non_null(stored);

        /* The stored envelope is the fixture plus what the server stamps. */
        expected = json_deep_copy(fixture);
        tse_rfc3339_format(resp->published_at->seconds, resp->published_at->nanos, ts, sizeof(ts));
        json_object_set_new(expected, "id", json_string(resp->event_id));
        json_object_set_new(expected, "version", json_string("1.0"));
        json_object_set_new(expected, "timestamp", json_string(ts));
        if (json_object_get(expected, "priority") == NULL)
            json_object_set_new(expected, "priority", json_integer(3));
        stored_json = tse_pbjson_from_message(&stored->base, 0);
        if (!json_equal(stored_json, expected)) {
            char *a = json_dumps(stored_json, JSON_SORT_KEYS),
                 *b = json_dumps(expected, JSON_SORT_KEYS);
            fail_msg("stored %s\nexpected %s", a, b);
        }
        /* Plain fields for inspection and filtering. */
        snprintf(prio, sizeof(prio), "%d", stored->priority);
        assert_string_equal(json_string_value(json_object_get(plain, "id")), resp->event_id);
        assert_string_equal(json_string_value(json_object_get(plain, "type")), stored->event_type);
        assert_int_equal(json_object_size(plain), 2); /* id, type (+ event) */
        char key[256];
        snprintf(key, sizeof(key), "tracseq:events:{%s}:p%d", stored->event_type, stored->priority);
        assert_string_equal(resp->stream, key);

        json_decref(stored_json);
        json_decref(expected);
        json_decref(plain);
        protobuf_c_message_free_unpacked(&stored->base, NULL);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        free(text);
    }
    json_decref(fixtures);
}

/* ---- PublishStream: per-event answers, in order ---- */

#define STREAM_EVENTS 10000
#define STREAM_CHUNK  500

static bool is_bad(int i)
{
    return i == 17 || i == 500 || i == 4999 || i == 9998;
}

static Event *stream_event(int i, char *id)
{
    char text[512];

    tse_uuid_generate(id);
    if (i == 17) /* priority out of range */
        snprintf(text, sizeof(text),
                 "{\"id\":\"%.36s\",\"event_type\":\"test.stream_order\",\"source_service\":\"t\","
                 "\"priority\":9,\"data\":{\"seq\":%d}}",
                 id, i);
    else if (i == 500) /* malformed type */
        snprintf(text, sizeof(text),
                 "{\"id\":\"%.36s\",\"event_type\":\"Test..Bad\",\"source_service\":\"t\","
                 "\"data\":{\"seq\":%d}}",
                 id, i);
    else if (i == 4999) /* no source */
        snprintf(text, sizeof(text),
                 "{\"id\":\"%.36s\",\"event_type\":\"test.stream_order\",\"data\":{\"seq\":%d}}",
                 id, i);
    else if (i == 9998) /* no payload */
        snprintf(text, sizeof(text),
                 "{\"id\":\"%.36s\",\"event_type\":\"test.stream_order\",\"source_service\":\"t\"}",
                 id);
    else
        snprintf(text, sizeof(text),
                 "{\"id\":\"%.36s\",\"event_type\":\"test.stream_order\",\"source_service\":\"t\","
                 "\"data\":{\"seq\":%d}}",
                 id, i);
    return event_from_json(text);
}

static void test_publish_stream_answers_each_event_in_order(void **state)
{
    world *w = *state;
    static char ids[STREAM_EVENTS][40];
    tse_test_stream *s = tse_test_stream_open(w->ch, PUBLISH_STREAM, 120000, NULL, NULL);
    const char *expected_field[STREAM_EVENTS] = {0};
    tse_test_status st;
    int valid = 0;

    expected_field[17] = "event.priority";
    expected_field[500] = "event.event_type";
    expected_field[4999] = "event.source_service";
    expected_field[9998] = "event.payload";
    for (int base = 0; base < STREAM_EVENTS; base += STREAM_CHUNK) {
        for (int i = base; i < base + STREAM_CHUNK; i++) {
            PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
            req.event = stream_event(i, ids[i]);
            assert_true(tse_test_stream_send(s, &req.base));
            protobuf_c_message_free_unpacked(&req.event->base, NULL);
        }
        for (int i = base; i < base + STREAM_CHUNK; i++) {
            PublishResponse *r = (PublishResponse *)tse_test_stream_recv(
                s, &tracseq__events__v1__publish_response__descriptor, 10000, NULL);
            assert_non_null(r);
            if (is_bad(i)) {
                assert_non_null(r->error);
                assert_int_equal(r->error->code, GRPC_STATUS_INVALID_ARGUMENT);
                assert_string_equal(r->error->field, expected_field[i]);
                assert_string_equal(r->event_id, "");
            } else {
                assert_null(r->error);
                assert_string_equal(r->event_id, ids[i]);
                assert_true(strlen(r->stream_id) > 0);
                valid++;
            }
            protobuf_c_message_free_unpacked(&r->base, NULL);
        }
    }
    assert_true(tse_test_stream_close_send(s));
    assert_null(
        tse_test_stream_recv(s, &tracseq__events__v1__publish_response__descriptor, 10000, NULL));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_OK);

    /* Exactly the valid ones are in Redis, in publish order. */
    const char *key = "tracseq:events:{test.stream_order}:p3";
    assert_int_equal(redis_int(w->redis, "XLEN %s", key), valid);
    redisContext *c = redisConnect("127.0.0.1", w->redis->port);
    redisReply *rep = redisCommand(c, "XRANGE %s - +", key);
    assert_int_equal(rep->elements, valid);
    for (int i = 0, k = 0; i < STREAM_EVENTS; i++) {
        if (is_bad(i))
            continue;
        redisReply *fields = rep->element[k++]->element[1];
        assert_string_equal(fields->element[0]->str, "id");
        assert_string_equal(fields->element[1]->str, ids[i]);
    }
    freeReplyObject(rep);
    redisFree(c);
}

/* ---- idempotent publish ---- */

static void test_client_set_id_is_published_once(void **state)
{
    world *w = *state;
    const char *text = "{\"id\":\"5d9e1b7c-3f2a-4c8e-9b1d-2a3c4e5f6a7b\","
                       "\"event_type\":\"test.dedup\",\"source_service\":\"t\",\"data\":{\"n\":1}}";
    PublishResponse *first = NULL, *again = NULL;
    tse_test_status st;

    assert_int_equal(publish_json(w->ch, text, &first, &st), GRPC_STATUS_OK);
    assert_int_equal(publish_json(w->ch, text, &again, &st), GRPC_STATUS_OK);
    assert_false(first->duplicate);
    assert_true(again->duplicate);
    assert_string_equal(first->stream_id, again->stream_id);
    assert_string_equal(again->event_id, "5d9e1b7c-3f2a-4c8e-9b1d-2a3c4e5f6a7b");
    assert_int_equal(redis_int(w->redis, "XLEN %s", "tracseq:events:{test.dedup}:p3"), 1);
    protobuf_c_message_free_unpacked(&first->base, NULL);
    protobuf_c_message_free_unpacked(&again->base, NULL);
}

/* ---- invalid input: INVALID_ARGUMENT naming the field, nothing written ---- */

typedef struct bad_case {
    const char *json;
    const char *field;
} bad_case;

static const bad_case lenient_bad_cases[] = {
    {"{\"source_service\":\"t\",\"data\":{}}", "event.event_type"},
    {"{\"event_type\":\"Sample.Created\",\"source_service\":\"t\",\"data\":{}}",
     "event.event_type"},
    {"{\"event_type\":\"sample\",\"source_service\":\"t\",\"data\":{}}", "event.event_type"},
    {"{\"event_type\":\"test.no_source\",\"data\":{}}", "event.source_service"},
    {"{\"event_type\":\"test.long_source\",\"source_service\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"data\":{}}",
     "event.source_service"},
    {"{\"event_type\":\"test.prio_high\",\"source_service\":\"t\",\"priority\":6,\"data\":{}}",
     "event.priority"},
    {"{\"event_type\":\"test.prio_low\",\"source_service\":\"t\",\"priority\":-1,\"data\":{}}",
     "event.priority"},
    {"{\"event_type\":\"test.bad_id\",\"source_service\":\"t\",\"id\":\"not-a-uuid\",\"data\":{}}",
     "event.id"},
    {"{\"event_type\":\"test.bad_corr\",\"source_service\":\"t\",\"correlation_id\":\"xyz\","
     "\"data\":{}}",
     "event.correlation_id"},
    {"{\"event_type\":\"test.reserved_md\",\"source_service\":\"t\",\"metadata\":"
     "{\"schema_valid\":\"true\"},\"data\":{}}",
     "event.metadata.schema_valid"},
    {"{\"event_type\":\"test.no_payload\",\"source_service\":\"t\"}", "event.payload"},
    {"{\"event_type\":\"sample.created\",\"source_service\":\"t\"}", "event.payload"},
};

static void expect_refused(world *w, const bad_case *bc)
{
    PublishResponse *resp = NULL;
    tse_test_status st;
    char *before = tse_test_redis_cmd(w->redis, "SCARD tracseq:streams");

    assert_int_equal(publish_json(w->ch, bc->json, &resp, &st), GRPC_STATUS_INVALID_ARGUMENT);
    assert_null(resp);
    if (strncmp(st.details, bc->field, strlen(bc->field)) != 0 ||
        st.details[strlen(bc->field)] != ':')
        fail_msg("for %s expected field %s, got '%s'", bc->json, bc->field, st.details);
    char *after = tse_test_redis_cmd(w->redis, "SCARD tracseq:streams");
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_invalid_events_are_refused_naming_the_field(void **state)
{
    for (size_t i = 0; i < sizeof(lenient_bad_cases) / sizeof(lenient_bad_cases[0]); i++)
        expect_refused(*state, &lenient_bad_cases[i]);
}

static void test_request_without_event_is_refused(void **state)
{
    world *w = *state;
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    tse_test_status st;

    assert_int_equal(tse_test_unary(w->ch, PUBLISH, &req.base,
                                    &tracseq__events__v1__publish_response__descriptor, NULL, &st,
                                    5000, NULL, NULL),
                     GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(st.details, "event: is required");
}

static void test_lenient_mode_stores_misfit_payload_as_generic_data(void **state)
{
    world *w = *state;
    PublishResponse *resp = NULL;
    tse_test_status st;

    /* The original document's Quick Start event. */
    assert_int_equal(publish_json(w->ch,
                                  "{\"event_type\":\"sample.created\",\"source_service\":\"test\","
                                  "\"data\":{\"test\":\"data\"}}",
                                  &resp, &st),
                     GRPC_STATUS_OK);
    assert_false(resp->schema_valid);
    Event *stored = read_entry(w->redis, resp->stream, resp->stream_id, NULL);
    assert_non_null(stored);
    assert_int_equal(stored->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA);
    bool flagged = false;
    for (size_t i = 0; i < stored->n_metadata; i++)
        if (strcmp(stored->metadata[i]->key, "schema_valid") == 0)
            flagged = strcmp(stored->metadata[i]->value, "false") == 0;
    assert_true(flagged);
    protobuf_c_message_free_unpacked(&stored->base, NULL);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_fitting_struct_payload_is_stored_typed(void **state)
{
    world *w = *state;
    PublishResponse *resp = NULL;
    tse_test_status st;

    assert_int_equal(
        publish_json(w->ch,
                     "{\"event_type\":\"sample.stored\",\"source_service\":\"t\",\"data\":{"
                     "\"sample_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"barcode\":\"B1\","
                     "\"location_id\":\"f7\",\"storageZone\":\"-80C\",\"stored_by\":\"me\"}}",
                     &resp, &st),
        GRPC_STATUS_OK);
    assert_true(resp->schema_valid);
    Event *stored = read_entry(w->redis, resp->stream, resp->stream_id, NULL);
    assert_int_equal(stored->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_STORED);
    assert_string_equal(stored->sample_stored->storage_zone, "-80C");
    /* Unset timestamps are stamped with the publish time. */
    assert_int_equal(stored->sample_stored->stored_at->seconds, resp->published_at->seconds);
    protobuf_c_message_free_unpacked(&stored->base, NULL);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_correlation_id_comes_from_metadata_when_unset(void **state)
{
    world *w = *state;
    Event *ev = event_from_json("{\"event_type\":\"test.corr\",\"source_service\":\"t\","
                                "\"data\":{}}");
    PublishResponse *resp = NULL;
    tse_test_status st;

    assert_int_equal(
        publish(w->ch, ev, &resp, &st, "x-correlation-id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        GRPC_STATUS_OK);
    Event *stored = read_entry(w->redis, resp->stream, resp->stream_id, NULL);
    assert_string_equal(stored->correlation_id, "0f8fad5b-d9cb-469f-a165-70867728950e");
    protobuf_c_message_free_unpacked(&stored->base, NULL);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

static void test_unknown_method_is_unimplemented(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    tse_test_status st;

    assert_int_equal(tse_test_unary(w->ch, "/tracseq.events.v1.EventService/NoSuchMethod",
                                    &req.base, &tracseq__events__v1__stats__descriptor, NULL, &st,
                                    5000, NULL, NULL),
                     GRPC_STATUS_UNIMPLEMENTED);
}

static void test_stats_count_publishes_and_catalog_lists_every_type(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__GetStatsRequest sreq = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    Tracseq__Events__V1__ListEventTypesRequest lreq =
        TRACSEQ__EVENTS__V1__LIST_EVENT_TYPES_REQUEST__INIT;
    Tracseq__Events__V1__Stats *stats = NULL;
    Tracseq__Events__V1__ListEventTypesResponse *types = NULL;
    PublishResponse *resp = NULL;
    tse_test_status st;
    uint64_t before;

    assert_int_equal(tse_test_unary(w->ch, "/tracseq.events.v1.EventService/GetStats", &sreq.base,
                                    &tracseq__events__v1__stats__descriptor,
                                    (ProtobufCMessage **)&stats, &st, 5000, NULL, NULL),
                     GRPC_STATUS_OK);
    before = stats->events_published;
    protobuf_c_message_free_unpacked(&stats->base, NULL);
    assert_int_equal(publish_json(w->ch,
                                  "{\"event_type\":\"test.stats\",\"source_service\":\"t\","
                                  "\"data\":{}}",
                                  &resp, &st),
                     GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    assert_int_equal(tse_test_unary(w->ch, "/tracseq.events.v1.EventService/GetStats", &sreq.base,
                                    &tracseq__events__v1__stats__descriptor,
                                    (ProtobufCMessage **)&stats, &st, 5000, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_int_equal(stats->events_published, before + 1);
    assert_true(stats->redis_connected);
    assert_string_equal(stats->validation_mode, "lenient");
    bool counted = false;
    for (size_t i = 0; i < stats->n_published_by_type; i++)
        if (strcmp(stats->published_by_type[i]->key, "test.stats") == 0)
            counted = stats->published_by_type[i]->value == 1;
    assert_true(counted);
    protobuf_c_message_free_unpacked(&stats->base, NULL);

    assert_int_equal(tse_test_unary(w->ch, "/tracseq.events.v1.EventService/ListEventTypes",
                                    &lreq.base,
                                    &tracseq__events__v1__list_event_types_response__descriptor,
                                    (ProtobufCMessage **)&types, &st, 5000, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_int_equal(types->n_event_types, 18);
    Tracseq__Events__V1__EventTypeInfo *first = types->event_types[0];
    assert_string_equal(first->event_type, "sample.created");
    assert_string_equal(first->message, "tracseq.events.v1.SampleCreated");
    assert_string_equal(first->fields[0]->name, "sample_id");
    assert_string_equal(first->fields[0]->json_name, "sampleId");
    assert_string_equal(first->fields[0]->format, "uuid");
    assert_true(first->fields[0]->required);
    protobuf_c_message_free_unpacked(&types->base, NULL);
}

/* ---- strict mode ---- */

static const bad_case strict_bad_cases[] = {
    {"{\"event_type\":\"sample.created\",\"source_service\":\"t\",\"sample_created\":{"
     "\"sample_id\":\"123e4567-e89b-42d3-a456-426614174000\",\"sample_type\":\"DNA\","
     "\"submitter_id\":\"223e4567-e89b-42d3-a456-426614174001\","
     "\"lab_id\":\"323e4567-e89b-42d3-a456-426614174002\"}}",
     "event.payload.barcode"},
    {"{\"event_type\":\"sample.created\",\"source_service\":\"t\",\"sample_created\":{"
     "\"sample_id\":\"nope\",\"barcode\":\"B\",\"sample_type\":\"DNA\","
     "\"submitter_id\":\"223e4567-e89b-42d3-a456-426614174001\","
     "\"lab_id\":\"323e4567-e89b-42d3-a456-426614174002\"}}",
     "event.payload.sample_id"},
    {"{\"event_type\":\"sample.created\",\"source_service\":\"test\",\"data\":{\"test\":\"data\"}}",
     "event.payload.test"},
};

static void test_strict_mode_refuses_misfit_payloads(void **state)
{
    for (size_t i = 0; i < sizeof(strict_bad_cases) / sizeof(strict_bad_cases[0]); i++)
        expect_refused(*state, &strict_bad_cases[i]);
}

/* ---- Redis outage ---- */

static Grpc__Health__V1__HealthCheckResponse__ServingStatus health(world *w)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    tse_test_status st;
    int status;

    req.service = "tracseq.events.v1.EventService";
    assert_int_equal(tse_test_unary(w->ch, HEALTH_CHECK, &req.base,
                                    &grpc__health__v1__health_check_response__descriptor,
                                    (ProtobufCMessage **)&resp, &st, 5000, NULL, NULL),
                     GRPC_STATUS_OK);
    status = resp->status;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return status;
}

static bool wait_health(world *w, int want, int ms)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, ms);
    while ((int)health(w) != want)
        if (!tse_test_waiter_poll(&waiter))
            return false;
    return true;
}

static const char *outage_event =
    "{\"event_type\":\"test.outage\",\"source_service\":\"t\",\"data\":{\"x\":1}}";

static int recv_watch(tse_test_stream *s)
{
    Grpc__Health__V1__HealthCheckResponse *r =
        (Grpc__Health__V1__HealthCheckResponse *)tse_test_stream_recv(
            s, &grpc__health__v1__health_check_response__descriptor, 10000, NULL);
    int status;

    assert_non_null(r);
    status = r->status;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return status;
}

static void test_redis_outage_fails_fast_and_recovers_by_itself(void **state)
{
    world *w = *state;
    Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    PublishResponse *resp = NULL;
    tse_test_status st;
    tse_test_stream *watch;
    long long t0, elapsed;

    assert_true(
        wait_health(w, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, 5000));
    watch = tse_test_stream_open(w->ch, HEALTH_WATCH, 60000, NULL, NULL);
    assert_true(tse_test_stream_send(watch, &hreq.base));
    assert_true(tse_test_stream_close_send(watch));
    assert_int_equal(recv_watch(watch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);

    tse_test_redis_kill(w->redis);
    t0 = tse_test_now_ms();
    assert_int_equal(publish_json(w->ch, outage_event, &resp, &st), GRPC_STATUS_UNAVAILABLE);
    elapsed = tse_test_now_ms() - t0;
    print_message("publish with Redis down answered UNAVAILABLE in %lld ms\n", elapsed);
    assert_true(elapsed < 1500); /* redis-timeout is 500 ms */
    assert_true(
        wait_health(w, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING, 5000));
    assert_int_equal(recv_watch(watch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);

    assert_true(tse_test_redis_restart(w->redis));
    assert_true(
        wait_health(w, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, 10000));
    assert_int_equal(recv_watch(watch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    tse_test_stream_cancel(watch);
    assert_int_equal(publish_json(w->ch, outage_event, &resp, &st), GRPC_STATUS_OK);
    assert_int_equal(redis_int(w->redis, "XLEN %s", "tracseq:events:{test.outage}:p3"), 1);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_hung_redis_fails_publish_within_the_timeout(void **state)
{
    world *w = *state;
    PublishResponse *resp = NULL;
    tse_test_status st;
    long long t0, elapsed;

    kill(w->redis->pid, SIGSTOP);
    t0 = tse_test_now_ms();
    grpc_status_code code = publish_json(w->ch, outage_event, &resp, &st);
    elapsed = tse_test_now_ms() - t0;
    kill(w->redis->pid, SIGCONT);
    print_message("publish with Redis stopped answered %d in %lld ms\n", code, elapsed);
    assert_int_equal(code, GRPC_STATUS_UNAVAILABLE);
    assert_true(elapsed < 2000);
    assert_true(
        wait_health(w, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, 10000));
    assert_int_equal(publish_json(w->ch, outage_event, &resp, &st), GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

int main(void)
{
    const struct CMUnitTest lenient[] = {
        cmocka_unit_test(test_every_catalog_type_is_stored_with_every_field),
        cmocka_unit_test(test_publish_stream_answers_each_event_in_order),
        cmocka_unit_test(test_client_set_id_is_published_once),
        cmocka_unit_test(test_invalid_events_are_refused_naming_the_field),
        cmocka_unit_test(test_request_without_event_is_refused),
        cmocka_unit_test(test_lenient_mode_stores_misfit_payload_as_generic_data),
        cmocka_unit_test(test_fitting_struct_payload_is_stored_typed),
        cmocka_unit_test(test_correlation_id_comes_from_metadata_when_unset),
        cmocka_unit_test(test_unknown_method_is_unimplemented),
        cmocka_unit_test(test_stats_count_publishes_and_catalog_lists_every_type),
    };
    const struct CMUnitTest strict[] = {
        cmocka_unit_test(test_strict_mode_refuses_misfit_payloads),
    };
    const struct CMUnitTest outage[] = {
        cmocka_unit_test(test_redis_outage_fails_fast_and_recovers_by_itself),
        cmocka_unit_test(test_hung_redis_fails_publish_within_the_timeout),
    };
    int failed = 0;

    failed += cmocka_run_group_tests_name("publish (lenient)", lenient, lenient_up, world_down);
    failed += cmocka_run_group_tests_name("publish (strict)", strict, strict_up, world_down);
    failed += cmocka_run_group_tests_name("redis outage", outage, lenient_up, world_down);
    return failed == 0 ? 0 : 1;
}
