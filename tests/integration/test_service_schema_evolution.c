/*
 * test_service_schema_evolution.c - schema evolution end to end (issue 15.6,
 * docs/schemas.md): a real redis-server, the real tracseq-events and the
 * real REST bridge over loopback.
 *
 * What this file holds the service to: an event's `version` is MAJOR.MINOR
 * (anything else is INVALID_ARGUMENT / HTTP 4xx naming "version"; empty
 * becomes "1.0") and reaches subscribers as published, over Subscribe,
 * Pull and the bridge's Server-Sent Events; a newer producer's payload
 * with fields this service does not know keeps its catalog type, is
 * schema_valid, and its unknown fields reach subscribers byte for byte
 * (protobuf's rule: unknown fields are kept and passed on).
 *
 * Invariants of this file: every test uses its own subscription names and
 * event types, so tests sharing one world never see each other's events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "grpc_client.h"
#include "harness.h"
#include "http_client.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "world.h"

#define SERVICE          "/tracseq.events.v1.EventService/"
#define M_PUBLISH        SERVICE "Publish"
#define M_PULL           SERVICE "Pull"
#define M_CREATE         SERVICE "CreateSubscription"
#define M_SUBSCRIBE      SERVICE "Subscribe"
#define UNARY_TIMEOUT_MS 10000

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__SampleCreated SampleCreated;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__PullResponse PullResponse;

/* Two fields a newer SampleCreated might have: 50 (varint 42) and 51
 * (string "future"), as wire bytes. */
static const uint8_t unknown_fields[] = {0x90, 0x03, 0x2a, /* 50: 42 */
                                         0x9a, 0x03, 0x06, 'f', 'u', 't', 'u', 'r', 'e'};

/* ===================== the world ========================================= */

typedef tse_test_world world;

static int world_up(void **state)
{
    *state = tse_test_world_start(tse_test_redis_start(false), NULL, true, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* ===================== helpers ============================================ */

/* A subscription to type, from the earliest event, never dead-lettering. */
static void create_subscription(const world *w, const char *name, const char *type)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    ProtobufCMessage *resp = NULL;
    tse_test_status st;

    sub.name = (char *)name;
    sub.event_types = (char *[]){(char *)type};
    sub.n_event_types = 1;
    sub.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    req.subscription = &sub;
    if (tse_test_unary(w->ch, M_CREATE, &req.base, &tracseq__events__v1__subscription__descriptor,
                       &resp, &st, UNARY_TIMEOUT_MS, NULL, NULL) != GRPC_STATUS_OK)
        fail_msg("create %s: %s", name, st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* Publishes raw PublishRequest bytes; the response (caller frees) or the
 * status in *st. */
static PublishResponse *publish_raw(const world *w, const uint8_t *req, size_t len,
                                    tse_test_status *st)
{
    ProtobufCMessage *resp = NULL;

    if (tse_test_unary_raw(w->ch, M_PUBLISH, req, len,
                           &tracseq__events__v1__publish_response__descriptor, &resp, st,
                           UNARY_TIMEOUT_MS) != GRPC_STATUS_OK)
        return NULL;
    return (PublishResponse *)resp;
}

static PublishResponse *publish(const world *w, const Event *ev, tse_test_status *st)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    uint8_t *buf;
    size_t len;
    PublishResponse *r;

    req.event = (Event *)ev;
    len = tracseq__events__v1__publish_request__get_packed_size(&req);
    buf = malloc(len + 1);
    assert_non_null(buf);
    tracseq__events__v1__publish_request__pack(&req, buf);
    r = publish_raw(w, buf, len, st);
    free(buf);
    return r;
}

/* A generic event of type with version (NULL: unset). */
static Event generic_event(const char *type, const char *version, Google__Protobuf__Struct *data)
{
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;

    google__protobuf__struct__init(data);
    ev.event_type = (char *)type;
    ev.source_service = "schema-test";
    if (version != NULL)
        ev.version = (char *)version;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = data;
    return ev;
}

/* One Pull of sub (waiting up to 5 s); the first delivery, or NULL. The
 * response is kept in *resp for the caller to free. */
static Delivery *pull_one(const world *w, const char *sub, PullResponse **resp)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    tse_test_status st;

    req.subscription = (char *)sub;
    req.max_events = 1;
    req.wait_ms = 5000;
    *resp = NULL;
    if (tse_test_unary(w->ch, M_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor,
                       (ProtobufCMessage **)resp, &st, UNARY_TIMEOUT_MS, NULL,
                       NULL) != GRPC_STATUS_OK)
        fail_msg("pull %s: %s", sub, st.details);
    return (*resp)->n_deliveries > 0 ? (*resp)->deliveries[0] : NULL;
}

/* The first delivery of a Subscribe stream to the existing sub. */
static Delivery *subscribe_one(const world *w, const char *sub)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(w->ch, M_SUBSCRIBE, 20000, NULL, NULL);
    Delivery *d;

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)sub;
    assert_true(tse_test_stream_send(s, &req.base));
    d = (Delivery *)tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, 10000,
                                         NULL);
    tse_test_stream_cancel(s);
    return d;
}

/* Reads the bridge's Server-Sent Events of sub until needle shows (true)
 * or 10 s pass. */
static bool sse_shows(const world *w, const char *sub, const char *needle)
{
    char req[512], buf[65536];
    size_t len = 0;
    long long end = tse_test_now_ms() + 10000;
    int fd = tse_test_http_connect(w->bridge->port);
    bool found = false;

    snprintf(req, sizeof(req),
             "GET /api/v1/subscriptions/%s/events HTTP/1.1\r\nHost: x\r\n"
             "Accept: text/event-stream\r\n\r\n",
             sub);
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    while (!found && tse_test_now_ms() < end && len < sizeof(buf) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t got;
        if (poll(&p, 1, 200) <= 0)
            continue;
        if ((got = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) <= 0)
            break;
        len += (size_t)got;
        buf[len] = '\0';
        found = strstr(buf, needle) != NULL;
    }
    close(fd);
    return found;
}

/* ===================== version ============================================ */

/* A MAJOR.MINOR version reaches subscribers as published: Subscribe, Pull
 * and SSE; an empty one reads "1.0". */
static void version_reaches_every_kind_of_subscriber(void **state)
{
    world *w = *state;
    Google__Protobuf__Struct data;
    Event ev = generic_event("schema.version.set", "2.3", &data);
    PublishResponse *r;
    PullResponse *pr;
    Delivery *d;
    tse_test_status st;

    create_subscription(w, "schema-version-pull", "schema.version.set");
    create_subscription(w, "schema-version-stream", "schema.version.set");
    create_subscription(w, "schema-version-sse", "schema.version.set");
    r = publish(w, &ev, &st);
    if (r == NULL)
        fail_msg("publish: %s", st.details);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    d = pull_one(w, "schema-version-pull", &pr);
    assert_non_null(d);
    assert_string_equal(d->event->version, "2.3");
    protobuf_c_message_free_unpacked(&pr->base, NULL);

    d = subscribe_one(w, "schema-version-stream");
    assert_non_null(d);
    assert_string_equal(d->event->version, "2.3");
    protobuf_c_message_free_unpacked(&d->base, NULL);

    assert_true(sse_shows(w, "schema-version-sse", "\"version\":\"2.3\""));

    /* Unset: the default, delivered as such. */
    create_subscription(w, "schema-version-default", "schema.version.unset");
    ev = generic_event("schema.version.unset", NULL, &data);
    r = publish(w, &ev, &st);
    assert_non_null(r);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    d = pull_one(w, "schema-version-default", &pr);
    assert_non_null(d);
    assert_string_equal(d->event->version, "1.0");
    protobuf_c_message_free_unpacked(&pr->base, NULL);
}

/* Anything but MAJOR.MINOR is refused naming "version", over gRPC and REST. */
static void a_version_other_than_major_minor_is_refused(void **state)
{
    static const char *const bad[] = {"2", "2.1-beta", "1.0.0", "v1.0", "01.0"};
    world *w = *state;
    Google__Protobuf__Struct data;
    tse_test_status st;
    tse_test_http_resp resp;
    json_t *body;
    char json[256];
    int fd;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Event ev = generic_event("schema.version.bad", bad[i], &data);
        assert_null(publish(w, &ev, &st));
        assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
        if (strncmp(st.details, "event.version:", 14) != 0)
            fail_msg("%s: expected the error to name version, got '%s'", bad[i], st.details);

        snprintf(json, sizeof(json),
                 "{\"event_type\":\"schema.version.bad\",\"source_service\":\"t\","
                 "\"version\":\"%s\",\"payload\":{}}",
                 bad[i]);
        fd = tse_test_http_connect(w->bridge->port);
        tse_test_http_send(fd, "POST", "/api/v1/events/publish", "application/json", NULL, json,
                           strlen(json), true);
        assert_true(tse_test_http_read(fd, &resp));
        close(fd);
        assert_int_equal(resp.status, 422);
        body = tse_test_http_json(&resp);
        if (strstr(resp.body, "\"version\"") == NULL)
            fail_msg("REST %s: %d %s", bad[i], resp.status, resp.body);
        json_decref(body);
        free(resp.body);
    }
}

/* ===================== unknown fields ===================================== */

/* Writes v as a varint at out; its length. */
static size_t varint(uint8_t *out, size_t v)
{
    size_t n = 0;

    do {
        out[n++] = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    return n;
}

/* A PublishRequest of sample.created whose SampleCreated carries the
 * unknown fields after its known ones (caller frees). */
static uint8_t *newer_sample_created(size_t *len)
{
    SampleCreated sc = TRACSEQ__EVENTS__V1__SAMPLE_CREATED__INIT;
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    uint8_t tmp[16];
    size_t sc_len, ev_len, n = 0;
    uint8_t *out;

    sc.sample_id = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    sc.barcode = "SAM-EVOLVED-001";
    sc.sample_type = "DNA";
    sc.submitter_id = "7f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    sc.lab_id = "8f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    ev.event_type = "sample.created";
    ev.source_service = "newer-producer";
    ev.version = "1.1";
    /* The envelope without payload, then field 101 (SampleCreated) by hand:
     * its known fields packed, the unknown ones appended. */
    sc_len = tracseq__events__v1__sample_created__get_packed_size(&sc) + sizeof(unknown_fields);
    ev_len = tracseq__events__v1__event__get_packed_size(&ev) + 2 + varint(tmp, sc_len) + sc_len;
    out = malloc(1 + 10 + ev_len);
    assert_non_null(out);
    out[n++] = 0x0a; /* PublishRequest.event */
    n += varint(out + n, ev_len);
    n += tracseq__events__v1__event__pack(&ev, out + n);
    out[n++] = 0xaa; /* field 101, length-delimited */
    out[n++] = 0x06;
    n += varint(out + n, sc_len);
    n += tracseq__events__v1__sample_created__pack(&sc, out + n);
    memcpy(out + n, unknown_fields, sizeof(unknown_fields));
    n += sizeof(unknown_fields);
    *len = n;
    return out;
}

/* The unknown fields of a delivered SampleCreated, re-encoded as protobuf-c
 * kept them, equal the bytes published. */
static void expect_unknown_fields_kept(const Delivery *d)
{
    const SampleCreated *sc;
    uint8_t *packed;
    size_t len;

    assert_non_null(d);
    assert_int_equal(d->event->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED);
    sc = d->event->sample_created;
    assert_string_equal(sc->barcode, "SAM-EVOLVED-001");
    assert_int_equal(sc->base.n_unknown_fields, 2);
    assert_int_equal(sc->base.unknown_fields[0].tag, 50);
    assert_int_equal(sc->base.unknown_fields[1].tag, 51);
    /* Byte for byte: the packed payload ends with exactly what was sent. */
    len = tracseq__events__v1__sample_created__get_packed_size(sc);
    packed = malloc(len);
    assert_non_null(packed);
    tracseq__events__v1__sample_created__pack(sc, packed);
    assert_true(len >= sizeof(unknown_fields));
    assert_memory_equal(packed + len - sizeof(unknown_fields), unknown_fields,
                        sizeof(unknown_fields));
    free(packed);
    for (size_t i = 0; i < d->event->n_metadata; i++)
        if (strncmp(d->event->metadata[i]->key, "schema_", 7) == 0)
            fail_msg("delivered with %s=%s", d->event->metadata[i]->key,
                     d->event->metadata[i]->value);
}

/* A newer producer's SampleCreated with two fields this service does not
 * know: stored as sample.created (not generic data), schema_valid, and
 * delivered with the unknown fields intact over Pull and Subscribe. */
static void unknown_fields_of_a_newer_producer_reach_subscribers(void **state)
{
    world *w = *state;
    PublishResponse *r;
    PullResponse *pr;
    Delivery *d;
    tse_test_status st;
    uint8_t *req;
    size_t len;

    create_subscription(w, "schema-unknown-pull", "sample.created");
    create_subscription(w, "schema-unknown-stream", "sample.created");
    req = newer_sample_created(&len);
    r = publish_raw(w, req, len, &st);
    free(req);
    if (r == NULL)
        fail_msg("publish: %s", st.details);
    assert_true(r->schema_valid);
    assert_null(r->error);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    d = pull_one(w, "schema-unknown-pull", &pr);
    expect_unknown_fields_kept(d);
    assert_string_equal(d->event->version, "1.1");
    protobuf_c_message_free_unpacked(&pr->base, NULL);

    d = subscribe_one(w, "schema-unknown-stream");
    expect_unknown_fields_kept(d);
    protobuf_c_message_free_unpacked(&d->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_reaches_every_kind_of_subscriber),
        cmocka_unit_test(a_version_other_than_major_minor_is_refused),
        cmocka_unit_test(unknown_fields_of_a_newer_producer_reach_subscribers),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
