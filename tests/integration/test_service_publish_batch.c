/*
 * test_service_publish_batch.c - PublishBatch and PublishBatchStream end to
 * end: a real redis-server, the real tracseq-events binary, gRPC over
 * loopback. Per-event results in request order, a bad event failing alone,
 * dedup within one batch and across batches, a batch over the limit.
 * Events are read back from Redis directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "domain/limits.h"
#include "domain/validate.h"
#include "grpc_client.h"
#include "harness.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "world.h"

#define PUBLISH_BATCH        "/tracseq.events.v1.EventService/PublishBatch"
#define PUBLISH_BATCH_STREAM "/tracseq.events.v1.EventService/PublishBatchStream"

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__PublishBatchRequest BatchRequest;
typedef Tracseq__Events__V1__PublishBatchResponse BatchResponse;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;

typedef tse_test_world world;

static int world_up(void **state)
{
    *state = tse_test_world_start(tse_test_redis_start(true), NULL, false, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
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

/* Event i of type type: with id (when non-NULL), bad (no source) when bad. */
static Event *make_event(const char *type, int i, const char *id, bool bad)
{
    char text[512];

    snprintf(text, sizeof(text), "{%s%s%s\"event_type\":\"%s\",%s\"data\":{\"seq\":%d}}",
             id ? "\"id\":\"" : "", id ? id : "", id ? "\"," : "", type,
             bad ? "" : "\"source_service\":\"t\",", i);
    return event_from_json(text);
}

static void batch_init(BatchRequest *req, Event **evs, size_t n)
{
    tracseq__events__v1__publish_batch_request__init(req);
    req->n_events = n;
    req->events = evs;
}

static void events_free(Event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(&evs[i]->base, NULL);
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

/* The "id" field of every entry of key, in stream order, into ids (n max). */
static size_t stored_ids(const tse_test_redis *r, const char *key, char ids[][40], size_t n)
{
    redisContext *c = redisConnect("127.0.0.1", r->port);
    redisReply *rep = redisCommand(c, "XRANGE %s - +", key);
    size_t k = 0;

    assert_non_null(rep);
    for (; k < rep->elements && k < n; k++) {
        redisReply *fields = rep->element[k]->element[1];
        assert_string_equal(fields->element[0]->str, "id");
        snprintf(ids[k], 40, "%s", fields->element[1]->str);
    }
    freeReplyObject(rep);
    redisFree(c);
    return k;
}

/* Calls of a command Redis has served, scripts' included (INFO
 * commandstats); name in lower case. */
static long command_calls(const tse_test_redis *r, const char *name)
{
    char *out = tse_test_redis_cmd(r, "INFO commandstats");
    char field[64];
    const char *at;
    long n = 0;

    assert_non_null(out);
    snprintf(field, sizeof(field), "cmdstat_%s:calls=", name);
    if ((at = strstr(out, field)) != NULL)
        n = atol(at + strlen(field));
    free(out);
    return n;
}

static long evalsha_calls(const tse_test_redis *r)
{
    return command_calls(r, "evalsha");
}

/* ---- unary ---- */

static void test_batch_answers_each_event_in_order_and_a_bad_one_fails_alone(void **state)
{
    world *w = *state;
    Event *evs[5];
    BatchRequest req;
    BatchResponse *resp = NULL;
    tse_test_status st;
    char ids[5][40];

    for (int i = 0; i < 5; i++)
        evs[i] = make_event("test.batch_order", i, NULL, i == 2);
    batch_init(&req, evs, 5);
    assert_int_equal(tse_test_unary(w->ch, PUBLISH_BATCH, &req.base,
                                    &tracseq__events__v1__publish_batch_response__descriptor,
                                    (ProtobufCMessage **)&resp, &st, 10000, NULL, NULL),
                     GRPC_STATUS_OK);
    events_free(evs, 5);
    assert_int_equal(resp->n_results, 5);
    assert_null(resp->error);
    assert_non_null(resp->results[2]->error);
    assert_int_equal(resp->results[2]->error->code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(resp->results[2]->error->field, "events[2].source_service");
    assert_string_equal(resp->results[2]->event_id, "");
    /* The four good ones are stored, in request order. */
    assert_int_equal(stored_ids(w->redis, "tracseq:events:{test.batch_order}:p3", ids, 5), 4);
    for (int i = 0, k = 0; i < 5; i++) {
        if (i == 2)
            continue;
        assert_null(resp->results[i]->error);
        assert_false(resp->results[i]->duplicate);
        assert_string_equal(resp->results[i]->stream, "tracseq:events:{test.batch_order}:p3");
        assert_string_equal(resp->results[i]->event_id, ids[k++]);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_client_ids_are_deduplicated_within_and_across_batches(void **state)
{
    world *w = *state;
    const char *a = "0b6f1f0e-7a51-4d3c-9d4e-1f2a3b4c5d6e",
               *b = "1c7a2e3f-8b62-4e4d-8e5f-2a3b4c5d6e7f";
    Event *evs[4];
    BatchRequest req;
    BatchResponse *first = NULL, *again = NULL;
    tse_test_status st;
    long calls;

    evs[0] = make_event("test.batch_dedup", 0, a, false);
    evs[1] = make_event("test.batch_dedup", 1, b, false);
    evs[2] = make_event("test.batch_dedup", 2, a, false); /* a again, same batch */
    evs[3] = make_event("test.batch_dedup", 3, NULL, false);
    batch_init(&req, evs, 4);
    calls = evalsha_calls(w->redis);
    assert_int_equal(tse_test_unary(w->ch, PUBLISH_BATCH, &req.base,
                                    &tracseq__events__v1__publish_batch_response__descriptor,
                                    (ProtobufCMessage **)&first, &st, 10000, NULL, NULL),
                     GRPC_STATUS_OK);
    /* The three events from the first client id to the last are one script
     * call; the last, without an id, a plain XADD. */
    assert_int_equal(evalsha_calls(w->redis) - calls, 1);
    assert_int_equal(first->n_results, 4);
    assert_false(first->results[0]->duplicate);
    assert_false(first->results[1]->duplicate);
    assert_true(first->results[2]->duplicate);
    assert_string_equal(first->results[2]->stream_id, first->results[0]->stream_id);
    assert_string_equal(first->results[2]->event_id, a);
    assert_false(first->results[3]->duplicate);
    /* The same batch again: both client ids are duplicates, the id-less
     * event is a new one. */
    assert_int_equal(tse_test_unary(w->ch, PUBLISH_BATCH, &req.base,
                                    &tracseq__events__v1__publish_batch_response__descriptor,
                                    (ProtobufCMessage **)&again, &st, 10000, NULL, NULL),
                     GRPC_STATUS_OK);
    events_free(evs, 4);
    assert_true(again->results[0]->duplicate);
    assert_string_equal(again->results[0]->stream_id, first->results[0]->stream_id);
    assert_true(again->results[1]->duplicate);
    assert_string_equal(again->results[1]->stream_id, first->results[1]->stream_id);
    assert_true(again->results[2]->duplicate);
    assert_false(again->results[3]->duplicate);
    assert_int_equal(redis_int(w->redis, "XLEN %s", "tracseq:events:{test.batch_dedup}:p3"), 4);
    protobuf_c_message_free_unpacked(&first->base, NULL);
    protobuf_c_message_free_unpacked(&again->base, NULL);
}

/* A batch with client ids over two streams registers each stream once,
 * not once per event (one SADD per stream and script call). */
static void test_a_batch_registers_each_of_its_streams_once(void **state)
{
    world *w = *state;
    char id[40];
    Event *evs[6];
    BatchRequest req;
    BatchResponse *resp = NULL;
    tse_test_status st;
    long sadds;

    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof(id), "2d8b3f40-9c73-4f5e-9f60-%012d", i);
        evs[i] = make_event(i % 2 ? "test.batch_reg_b" : "test.batch_reg_a", i, id, false);
    }
    batch_init(&req, evs, 6);
    sadds = command_calls(w->redis, "sadd");
    assert_int_equal(tse_test_unary(w->ch, PUBLISH_BATCH, &req.base,
                                    &tracseq__events__v1__publish_batch_response__descriptor,
                                    (ProtobufCMessage **)&resp, &st, 10000, NULL, NULL),
                     GRPC_STATUS_OK);
    events_free(evs, 6);
    assert_int_equal(resp->n_results, 6);
    for (int i = 0; i < 6; i++)
        assert_null(resp->results[i]->error);
    assert_int_equal(command_calls(w->redis, "sadd") - sadds, 2);
    assert_int_equal(
        redis_int(w->redis, "SISMEMBER tracseq:streams %s", "tracseq:events:{test.batch_reg_a}:p3"),
        1);
    assert_int_equal(
        redis_int(w->redis, "SISMEMBER tracseq:streams %s", "tracseq:events:{test.batch_reg_b}:p3"),
        1);
    assert_int_equal(redis_int(w->redis, "XLEN %s", "tracseq:events:{test.batch_reg_b}:p3"), 3);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_batch_over_the_limit_is_refused_naming_events(void **state)
{
    world *w = *state;
    size_t n = TSE_PUBLISH_BATCH_MAX_EVENTS + 1;
    /* Empty events (2 bytes each): refused before they are unpacked. */
    uint8_t *bytes = malloc(2 * n);
    BatchResponse *resp = NULL;
    tse_test_status st;

    for (size_t i = 0; i < n; i++) {
        bytes[2 * i] = 0x0A;
        bytes[2 * i + 1] = 0x00;
    }
    assert_int_equal(tse_test_unary_raw(w->ch, PUBLISH_BATCH, bytes, 2 * n,
                                        &tracseq__events__v1__publish_batch_response__descriptor,
                                        (ProtobufCMessage **)&resp, &st, 10000),
                     GRPC_STATUS_INVALID_ARGUMENT);
    assert_null(resp);
    assert_non_null(strstr(st.details, "events: "));
    assert_non_null(strstr(st.details, "at most 1000"));
    /* At the limit it is a batch of 1000 events, each refused alone. */
    assert_int_equal(tse_test_unary_raw(w->ch, PUBLISH_BATCH, bytes, 2 * (n - 1),
                                        &tracseq__events__v1__publish_batch_response__descriptor,
                                        (ProtobufCMessage **)&resp, &st, 10000),
                     GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, n - 1);
    assert_string_equal(resp->results[999]->error->field, "events[999].event_type");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(bytes);
}

/*
 * A batch is read one event at a time (transport/internal.h,
 * tse_batch_reader). One whose second event does not unpack (priority, a
 * varint, sent length-delimited: the wire scan lets it through, protobuf-c
 * does not) is still refused whole, as decoding it whole refused it, and
 * its good first event, already prepared, is not stored.
 */
static void test_batch_with_an_event_that_does_not_unpack_is_refused_whole(void **state)
{
    world *w = *state;
    static const uint8_t bad[] = {0x4A, 0x00}; /* field 9 (priority), length-delimited */
    Event *good = make_event("unpack.refused", 0, NULL, false);
    size_t n = protobuf_c_message_get_packed_size(&good->base), len = 0;
    uint8_t *bytes = malloc(n + 2 + 2 + sizeof(bad));
    BatchResponse *resp = NULL;
    redisContext *c;
    redisReply *keys;
    tse_test_status st;

    assert_non_null(bytes);
    assert_true(n < 128);
    bytes[len++] = 0x0A;
    bytes[len++] = (uint8_t)n;
    len += protobuf_c_message_pack(&good->base, bytes + len);
    bytes[len++] = 0x0A;
    bytes[len++] = sizeof(bad);
    memcpy(bytes + len, bad, sizeof(bad));
    len += sizeof(bad);
    assert_int_equal(tse_test_unary_raw(w->ch, PUBLISH_BATCH, bytes, len,
                                        &tracseq__events__v1__publish_batch_response__descriptor,
                                        (ProtobufCMessage **)&resp, &st, 10000),
                     GRPC_STATUS_INVALID_ARGUMENT);
    assert_null(resp);
    assert_string_equal(st.details, "request: not a valid tracseq.events.v1.PublishBatchRequest");
    /* Without the bad event, the same bytes are stored. */
    assert_int_equal(tse_test_unary_raw(w->ch, PUBLISH_BATCH, bytes, n + 2,
                                        &tracseq__events__v1__publish_batch_response__descriptor,
                                        (ProtobufCMessage **)&resp, &st, 10000),
                     GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, 1);
    assert_null(resp->results[0]->error);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    c = redisConnect("127.0.0.1", w->redis->port);
    keys = redisCommand(c, "KEYS *unpack.refused*");
    assert_non_null(keys);
    assert_int_equal(keys->elements, 1);
    assert_int_equal(redis_int(w->redis, "XLEN %s", keys->element[0]->str), 1);
    freeReplyObject(keys);
    redisFree(c);
    protobuf_c_message_free_unpacked(&good->base, NULL);
    free(bytes);
}

static void test_empty_batch_gets_no_results(void **state)
{
    world *w = *state;
    BatchRequest req;
    BatchResponse *resp = NULL;
    tse_test_status st;

    batch_init(&req, NULL, 0);
    assert_int_equal(tse_test_unary(w->ch, PUBLISH_BATCH, &req.base,
                                    &tracseq__events__v1__publish_batch_response__descriptor,
                                    (ProtobufCMessage **)&resp, &st, 10000, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* ---- stream ---- */

#define STREAM_BATCHES 40
#define STREAM_BATCH   100

static void test_batch_stream_answers_each_batch_in_order(void **state)
{
    world *w = *state;
    tse_test_stream *s = tse_test_stream_open(w->ch, PUBLISH_BATCH_STREAM, 60000, NULL, NULL);
    static char ids[STREAM_BATCHES * STREAM_BATCH][40];
    static char stored[STREAM_BATCHES * STREAM_BATCH][40];
    uint8_t over[2 * (TSE_PUBLISH_BATCH_MAX_EVENTS + 1)];
    tse_test_status st;
    size_t valid = 0;

    for (int b = 0; b < STREAM_BATCHES; b++) {
        Event *evs[STREAM_BATCH];
        BatchRequest req;
        for (int i = 0; i < STREAM_BATCH; i++)
            evs[i] = make_event("test.batch_stream", b * STREAM_BATCH + i, NULL, i == b % 7);
        batch_init(&req, evs, STREAM_BATCH);
        assert_true(tse_test_stream_send(s, &req.base));
        events_free(evs, STREAM_BATCH);
        if (b == 20) { /* one batch over the limit, refused as a whole */
            for (size_t i = 0; i < sizeof(over); i += 2) {
                over[i] = 0x0A;
                over[i + 1] = 0x00;
            }
            assert_true(tse_test_stream_send_raw(s, over, sizeof(over)));
        }
    }
    assert_true(tse_test_stream_close_send(s));
    for (int b = 0; b < STREAM_BATCHES; b++) {
        BatchResponse *r = (BatchResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_batch_response__descriptor, 10000, NULL);
        assert_non_null(r);
        assert_null(r->error);
        assert_int_equal(r->n_results, STREAM_BATCH);
        for (int i = 0; i < STREAM_BATCH; i++) {
            PublishResponse *one = r->results[i];
            if (i == b % 7) {
                char field[64];
                snprintf(field, sizeof(field), "events[%d].source_service", i);
                assert_non_null(one->error);
                assert_string_equal(one->error->field, field);
            } else {
                assert_null(one->error);
                snprintf(ids[valid++], 40, "%s", one->event_id);
            }
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (b == 20) {
            r = (BatchResponse *)tse_test_stream_recv(
                s, &tracseq__events__v1__publish_batch_response__descriptor, 10000, NULL);
            assert_non_null(r);
            assert_non_null(r->error);
            assert_int_equal(r->error->code, GRPC_STATUS_INVALID_ARGUMENT);
            assert_string_equal(r->error->field, "events");
            assert_int_equal(r->n_results, 0);
            protobuf_c_message_free_unpacked(&r->base, NULL);
        }
    }
    assert_null(tse_test_stream_recv(s, &tracseq__events__v1__publish_batch_response__descriptor,
                                     10000, NULL));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_OK);
    /* Exactly the valid ones, in publish order. */
    assert_int_equal(stored_ids(w->redis, "tracseq:events:{test.batch_stream}:p3", stored,
                                STREAM_BATCHES * STREAM_BATCH),
                     valid);
    for (size_t i = 0; i < valid; i++)
        assert_string_equal(stored[i], ids[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_answers_each_event_in_order_and_a_bad_one_fails_alone),
        cmocka_unit_test(test_client_ids_are_deduplicated_within_and_across_batches),
        cmocka_unit_test(test_a_batch_registers_each_of_its_streams_once),
        cmocka_unit_test(test_batch_over_the_limit_is_refused_naming_events),
        cmocka_unit_test(test_batch_with_an_event_that_does_not_unpack_is_refused_whole),
        cmocka_unit_test(test_empty_batch_gets_no_results),
        cmocka_unit_test(test_batch_stream_answers_each_batch_in_order),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
