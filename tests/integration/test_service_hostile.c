/*
 * test_service_hostile.c - hostile input over gRPC against the real
 * tracseq-events binary and a real redis-server: requests built byte by
 * byte (nesting a million levels deep, garbage, truncated, oversized,
 * invalid UTF-8) and requests at and past every limit.
 *
 * What each test holds the service to: a clear error naming the field or
 * the limit, nothing written to Redis, and the process alive and answering
 * afterwards (world_down also requires a clean exit). Before the wire scan
 * (src/codec/pbscan.h) one 30 KB Publish nesting 4,375 levels killed the
 * process with a stack overflow in protobuf-c's recursive unpack.
 *
 * The limits (README's configuration table) are set low enough to reach:
 * MAX_MESSAGE_BYTES 2 MiB, MAX_SUBSCRIBER_STREAMS 3; MAX_SUBSCRIPTION_PATTERNS
 * (32) and MAX_ACK_IDS (1000) keep their defaults. Every string field of
 * every request type is found by walking the descriptors, so a field added
 * to the .proto is tested without a word here.
 *
 * Invariants of this file: every test uses its own event types and
 * subscription names on the one shared service and Redis; "nothing
 * changed" compares every key's type and length before and after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "grpc_client.h"
#include "harness.h"
#include "pbnest.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define SERVICE          "/tracseq.events.v1.EventService/"
#define M_PUBLISH        SERVICE "Publish"
#define M_PUBLISH_STREAM SERVICE "PublishStream"
#define M_SUBSCRIBE      SERVICE "Subscribe"
#define M_CREATE         SERVICE "CreateSubscription"
#define M_HEALTH         "/grpc.health.v1.Health/Check"
#define M_WATCH          "/grpc.health.v1.Health/Watch"
#define M_REFLECT_V1     "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define M_REFLECT_ALPHA  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
#define TIMEOUT_MS       30000
#define MAX_MESSAGE      (2 << 20)
#define MAX_SUBSCRIBERS  3

typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;

/* ===================== the world ========================================= */

typedef tse_test_world world;

static int world_up(void **state)
{
    /* Limits small enough to reach: a 2 MiB message, 3 subscriber streams. */
    *state = tse_test_world_start(
        tse_test_redis_start(false),
        (const char *const[]){"--max-message-bytes=2MiB", "--max-subscriber-streams=3", NULL},
        false, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* The process is alive and answers a health check. */
static void assert_service_lives(const world *w)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    tse_test_status st;

    if (waitpid(w->service->pid, NULL, WNOHANG) != 0)
        fail_msg("the service died (see %s)", w->service->log);
    assert_int_equal(tse_test_unary(w->ch, M_HEALTH, &req.base,
                                    &grpc__health__v1__health_check_response__descriptor, &resp,
                                    &st, TIMEOUT_MS, NULL, NULL),
                     GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* No stream of event_type exists in Redis, nor is one registered. */
static void assert_nothing_stored(const world *w, const char *event_type)
{
    char *keys = tse_test_redis_cmd(w->redis, "KEYS tracseq:events:{%s}:*", event_type);
    char *member = tse_test_redis_cmd(w->redis, "SMEMBERS tracseq:streams");
    char prefix[256];

    assert_non_null(keys);
    assert_non_null(member);
    snprintf(prefix, sizeof(prefix), "tracseq:events:{%s}:p", event_type);
    if (keys[0] != '\0' || strstr(member, prefix) != NULL)
        fail_msg("%s was written to Redis: keys '%s', streams '%s'", event_type, keys, member);
    free(keys);
    free(member);
}

/* ===================== nesting =========================================== */

/* details of a deep Publish: the path of the too-deep value and the limit,
 * or, past the message size limit, gRPC's own refusal. */
static void expect_too_deep(size_t depth, grpc_status_code code, const char *details)
{
    print_message("depth %zu: status %d '%.80s'\n", depth, code, details);
    if (code == GRPC_STATUS_RESOURCE_EXHAUSTED)
        return;
    assert_int_equal(code, GRPC_STATUS_INVALID_ARGUMENT);
    if (strncmp(details, "event.data.x[0][0]", 18) != 0 || strstr(details, "64 levels") == NULL)
        fail_msg("depth %zu: the error does not name the field and the limit: '%s'", depth,
                 details);
}

static void test_deep_publish_is_refused_at_every_depth_and_the_service_lives(void **state)
{
    static const size_t depths[] = {100, 1000, 4375, 10000, 100000, 1000000};
    world *w = *state;

    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        ProtobufCMessage *resp = NULL;
        tse_test_status st;
        size_t len;
        uint8_t *buf = tse_nest_publish_lists("deep.unary", depths[i], &len);
        grpc_status_code code = tse_test_unary_raw(
            w->ch, M_PUBLISH, buf, len, &tracseq__events__v1__publish_response__descriptor, &resp,
            &st, TIMEOUT_MS);
        if (depths[i] == 4375)
            print_message("the reported request: %zu bytes\n", len);
        assert_null(resp);
        expect_too_deep(depths[i], code, st.details);
        /* Up to 10,000 the request fits the 4 MiB limit: the scan must refuse it. */
        if (depths[i] <= 10000)
            assert_int_equal(code, GRPC_STATUS_INVALID_ARGUMENT);
        free(buf);
        assert_service_lives(w);
    }
    assert_nothing_stored(w, "deep.unary");
}

/* Over PublishStream a deep message gets its own error response, in order,
 * and the stream goes on; one past the size limit ends the stream. */
static void test_deep_messages_on_a_publish_stream_are_refused_in_order(void **state)
{
    static const size_t depths[] = {100, 4375, 100000};
    world *w = *state;
    tse_test_stream *s = tse_test_stream_open(w->ch, M_PUBLISH_STREAM, TIMEOUT_MS, NULL, NULL);
    tse_test_status st;
    size_t len;
    uint8_t *buf;

    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        buf = tse_nest_publish_lists("deep.stream", depths[i], &len);
        assert_true(tse_test_stream_send_raw(s, buf, len));
        free(buf);
        /* A shallow one between: it must still be answered, and stored. */
        buf = tse_nest_publish_lists("deep.stream.ok", 3, &len);
        assert_true(tse_test_stream_send_raw(s, buf, len));
        free(buf);
    }
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        PublishResponse *r = (PublishResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_response__descriptor, TIMEOUT_MS, NULL);
        assert_non_null(r);
        assert_non_null(r->error);
        assert_int_equal(r->error->code, GRPC_STATUS_INVALID_ARGUMENT);
        assert_int_equal(strncmp(r->error->field, "event.data.x[0][0]", 18), 0);
        assert_non_null(strstr(r->error->message, "64 levels"));
        assert_true(r->stream_id == NULL || r->stream_id[0] == '\0');
        protobuf_c_message_free_unpacked(&r->base, NULL);
        r = (PublishResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_response__descriptor, TIMEOUT_MS, NULL);
        assert_non_null(r);
        assert_null(r->error);
        assert_true(r->stream_id[0] != '\0');
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_true(tse_test_stream_close_send(s));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_OK);
    assert_nothing_stored(w, "deep.stream");

    /* A million levels is over the 4 MiB message limit: gRPC ends the stream. */
    s = tse_test_stream_open(w->ch, M_PUBLISH_STREAM, TIMEOUT_MS, NULL, NULL);
    buf = tse_nest_publish_lists("deep.stream", 1000000, &len);
    tse_test_stream_send_raw(s, buf, len); /* the server may cut the stream mid-send */
    free(buf);
    grpc_status_code code = tse_test_stream_finish(s, &st);
    print_message("PublishStream, depth 1,000,000 (%zu bytes): status %d '%s'\n", len, code,
                  st.details);
    assert_true(code == GRPC_STATUS_RESOURCE_EXHAUSTED || code == GRPC_STATUS_INVALID_ARGUMENT);
    assert_service_lives(w);
    assert_nothing_stored(w, "deep.stream");
}

/* ===================== what Redis holds ================================== */

static int compare_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every key with its type and length, sorted: equal snapshots mean nothing
 * was written (deletions and writes alike). Caller frees. */
static char *redis_snapshot(const world *w)
{
    char *keys = tse_test_redis_cmd(w->redis, "KEYS *"), *line, *save = NULL, *out;
    char *lines[4096];
    size_t n = 0, cap = 1 << 16, used = 0;

    assert_non_null(keys);
    out = calloc(1, cap);
    assert_non_null(out);
    for (line = strtok_r(keys, "\n", &save); line && n < 4096; line = strtok_r(NULL, "\n", &save))
        lines[n++] = line;
    qsort(lines, n, sizeof(lines[0]), compare_lines);
    for (size_t i = 0; i < n; i++) {
        char *type = tse_test_redis_cmd(w->redis, "TYPE %s", lines[i]);
        char *size = tse_test_redis_cmd(w->redis,
                                        strcmp(type, "stream") == 0 ? "XLEN %s"
                                        : strcmp(type, "hash") == 0 ? "HLEN %s"
                                        : strcmp(type, "set") == 0  ? "SCARD %s"
                                                                    : "STRLEN %s",
                                        lines[i]);
        used += (size_t)snprintf(out + used, cap - used, "%s %s %s\n", lines[i], type, size);
        free(type);
        free(size);
    }
    free(keys);
    return out;
}

static void assert_unchanged(const world *w, char *before, const char *what)
{
    char *after = redis_snapshot(w);

    if (strcmp(before, after) != 0)
        fail_msg("%s changed Redis:\n--- before\n%s--- after\n%s", what, before, after);
    free(before);
    free(after);
}

/* ===================== calls of every kind =============================== */

/* How a request type reaches the service. */
typedef enum via { UNARY, PUBLISH_STREAM, BATCH_STREAM, FIRST_ON_STREAM } via;

typedef struct rpc {
    const char *method;
    const ProtobufCMessageDescriptor *request;
    via via;
} rpc;

static const rpc rpcs[] = {
    {M_PUBLISH, &tracseq__events__v1__publish_request__descriptor, UNARY},
    {M_PUBLISH_STREAM, &tracseq__events__v1__publish_request__descriptor, PUBLISH_STREAM},
    {M_SUBSCRIBE, &tracseq__events__v1__subscribe_request__descriptor, FIRST_ON_STREAM},
    {SERVICE "PublishBatch", &tracseq__events__v1__publish_batch_request__descriptor, UNARY},
    {SERVICE "PublishCloudEvent", &tracseq__events__v1__publish_cloud_event_request__descriptor,
     UNARY},
    {SERVICE "PublishBatchStream", &tracseq__events__v1__publish_batch_request__descriptor,
     BATCH_STREAM},
    {M_CREATE, &tracseq__events__v1__create_subscription_request__descriptor, UNARY},
    {SERVICE "GetSubscription", &tracseq__events__v1__get_subscription_request__descriptor, UNARY},
    {SERVICE "ListSubscriptions", &tracseq__events__v1__list_subscriptions_request__descriptor,
     UNARY},
    {SERVICE "DeleteSubscription", &tracseq__events__v1__delete_subscription_request__descriptor,
     UNARY},
    {SERVICE "Acknowledge", &tracseq__events__v1__acknowledge_request__descriptor, UNARY},
    {SERVICE "Nack", &tracseq__events__v1__nack_request__descriptor, UNARY},
    {SERVICE "Pull", &tracseq__events__v1__pull_request__descriptor, UNARY},
    {SERVICE "GetStats", &tracseq__events__v1__get_stats_request__descriptor, UNARY},
    {SERVICE "ListEventTypes", &tracseq__events__v1__list_event_types_request__descriptor, UNARY},
    {SERVICE "ListDeadLetters", &tracseq__events__v1__list_dead_letters_request__descriptor, UNARY},
    {SERVICE "GetDeadLetter", &tracseq__events__v1__get_dead_letter_request__descriptor, UNARY},
    {SERVICE "RedriveDeadLetters", &tracseq__events__v1__redrive_dead_letters_request__descriptor,
     UNARY},
    {SERVICE "PurgeDeadLetters", &tracseq__events__v1__purge_dead_letters_request__descriptor,
     UNARY},
    {SERVICE "Seek", &tracseq__events__v1__seek_request__descriptor, UNARY},
    {SERVICE "CreateSnapshot", &tracseq__events__v1__create_snapshot_request__descriptor, UNARY},
    {SERVICE "ListSnapshots", &tracseq__events__v1__list_snapshots_request__descriptor, UNARY},
    {SERVICE "DeleteSnapshot", &tracseq__events__v1__delete_snapshot_request__descriptor, UNARY},
    {M_HEALTH, &grpc__health__v1__health_check_request__descriptor, UNARY},
    {M_WATCH, &grpc__health__v1__health_check_request__descriptor, UNARY},
    {M_REFLECT_V1, &grpc__reflection__v1__server_reflection_request__descriptor, FIRST_ON_STREAM},
    {M_REFLECT_ALPHA, &grpc__reflection__v1alpha__server_reflection_request__descriptor,
     FIRST_ON_STREAM},
};

/* A publish stream's verdict: its refusal's error in a response (the stream
 * goes on, OK), else its status; UNKNOWN when the request was accepted. */
static grpc_status_code stream_verdict(grpc_status_code code,
                                       const Tracseq__Events__V1__PublishError *error,
                                       tse_test_status *st)
{
    if (code != GRPC_STATUS_OK)
        return code;
    if (error == NULL) {
        snprintf(st->details, sizeof(st->details), "(the request was accepted)");
        return GRPC_STATUS_UNKNOWN;
    }
    snprintf(st->details, sizeof(st->details), "%s: %s", error->field, error->message);
    return (grpc_status_code)error->code;
}

/* The service's verdict on one request: a status, or for PublishStream the
 * error of its one response, as "field: message" in details. */
static grpc_status_code call_raw(const world *w, const rpc *r, const void *data, size_t len,
                                 char *details, size_t details_len)
{
    tse_test_status st;
    grpc_status_code code;

    if (r->via == UNARY) {
        code = tse_test_unary_raw(w->ch, r->method, data, len, NULL, NULL, &st, TIMEOUT_MS);
    } else {
        tse_test_stream *s = tse_test_stream_open(w->ch, r->method, TIMEOUT_MS, NULL, NULL);
        tse_test_stream_send_raw(s, data, len);
        if (r->via == PUBLISH_STREAM) {
            PublishResponse *resp = (PublishResponse *)tse_test_stream_recv(
                s, &tracseq__events__v1__publish_response__descriptor, TIMEOUT_MS, NULL);
            tse_test_stream_close_send(s);
            code = stream_verdict(tse_test_stream_finish(s, &st), resp ? resp->error : NULL, &st);
            if (resp)
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else if (r->via == BATCH_STREAM) {
            /* A refused batch gets its error in a response; the stream goes on. */
            Tracseq__Events__V1__PublishBatchResponse *resp =
                (Tracseq__Events__V1__PublishBatchResponse *)tse_test_stream_recv(
                    s, &tracseq__events__v1__publish_batch_response__descriptor, TIMEOUT_MS, NULL);
            tse_test_stream_close_send(s);
            code = stream_verdict(tse_test_stream_finish(s, &st), resp ? resp->error : NULL, &st);
            if (resp)
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else {
            /* The service ends the stream on a bad first message. */
            code = tse_test_stream_finish(s, &st);
        }
    }
    snprintf(details, details_len, "%s", st.details);
    return code;
}

static void expect_refused(const world *w, const rpc *r, const void *data, size_t len,
                           grpc_status_code want, const char *prefix, const char *contains)
{
    char details[512];
    grpc_status_code code = call_raw(w, r, data, len, details, sizeof(details));

    if (code != want || strncmp(details, prefix, strlen(prefix)) != 0 ||
        (contains && strstr(details, contains) == NULL))
        fail_msg("%s: status %d '%s', want %d '%s...%s'", r->method, code, details, want, prefix,
                 contains ? contains : "");
}

/* ===================== garbage, truncation, size ========================= */

/* Every method the service declares is in rpcs[]: a new RPC cannot miss
 * the hostile-input tests below. */
static void test_every_rpc_of_the_service_is_in_the_table(void **state)
{
    const ProtobufCServiceDescriptor *d = &tracseq__events__v1__event_service__descriptor;
    char path[256];

    (void)state;
    for (unsigned m = 0; m < d->n_methods; m++) {
        bool found = false;
        snprintf(path, sizeof(path), "/%s/%s", d->name, d->methods[m].name);
        for (size_t i = 0; i < sizeof(rpcs) / sizeof(rpcs[0]) && !found; i++)
            found = strcmp(rpcs[i].method, path) == 0;
        if (!found)
            fail_msg("%s is not in rpcs[] of this test", path);
    }
}

static void test_garbage_truncated_and_oversized_messages_are_refused_by_every_rpc(void **state)
{
    world *w = *state;
    static const uint8_t garbage[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x13};
    static const uint8_t group[] = {0x0B, 0x0C}; /* protobuf groups: not proto3 */
    /* Field 1, length 10, 3 bytes given: cut mid-field. */
    static const uint8_t truncated[] = {0x0A, 0x0A, 'a', 'b', 'c'};
    char *before = redis_snapshot(w), prefix[160];
    size_t big_len = MAX_MESSAGE + 4096;
    uint8_t *big = malloc(big_len);

    assert_non_null(big);
    /* Field 1 holding the rest: well-formed, only too large. */
    big[0] = 0x0A;
    for (size_t v = big_len - 5, k = 1; k < 5; k++, v >>= 7)
        big[k] = (uint8_t)((v & 0x7F) | (k < 4 ? 0x80 : 0));
    memset(big + 5, 'x', big_len - 5);
    for (size_t i = 0; i < sizeof(rpcs) / sizeof(rpcs[0]); i++) {
        const rpc *r = &rpcs[i];
        snprintf(prefix, sizeof(prefix), "request: not a valid %s", r->request->name);
        expect_refused(w, r, garbage, sizeof(garbage), GRPC_STATUS_INVALID_ARGUMENT, prefix, NULL);
        expect_refused(w, r, group, sizeof(group), GRPC_STATUS_INVALID_ARGUMENT, prefix, NULL);
        expect_refused(w, r, truncated, sizeof(truncated), GRPC_STATUS_INVALID_ARGUMENT, prefix,
                       "beyond the end");
        expect_refused(w, r, big, big_len, GRPC_STATUS_RESOURCE_EXHAUSTED, "", "larger than max");
    }
    free(big);
    assert_service_lives(w);
    assert_unchanged(w, before, "garbage requests");
}

/*
 * Regression (interop/reflection once made the service assert "a call
 * answered twice"): a client that half-closes and cancels at once races the
 * receive of its end of stream against the close op on the server's two
 * poller threads. Every streaming RPC, many times over, with and without the
 * half-close: the service answers each call once and lives (its Debug build
 * aborts on a broken call invariant; world_down requires a clean exit).
 */
static void test_streams_cancelled_right_after_their_half_close_are_answered_once(void **state)
{
    world *w = *state;

    for (size_t i = 0; i < sizeof(rpcs) / sizeof(rpcs[0]); i++) {
        if (rpcs[i].via == UNARY)
            continue;
        for (int k = 0; k < 100; k++) {
            tse_test_stream *s =
                tse_test_stream_open(w->ch, rpcs[i].method, TIMEOUT_MS, NULL, NULL);
            tse_test_stream_send_raw(s, "", 0);
            if (k % 2 == 0)
                tse_test_stream_close_send(s);
            if (k % 4 == 3)
                usleep(200);
            tse_test_stream_cancel(s);
        }
    }
    assert_service_lives(w);
}

/* ===================== invalid UTF-8 in every string field =============== */

/* Allocations of one built request, freed together. */
typedef struct arena {
    void *p[64];
    int n;
} arena;

static void *arena_new(arena *a, size_t size)
{
    void *p = calloc(1, size);

    assert_non_null(p);
    assert_true(a->n < 64);
    a->p[a->n++] = p;
    return p;
}

static void arena_free(arena *a)
{
    while (a->n > 0)
        free(a->p[--a->n]);
}

static ProtobufCMessage *new_message(arena *a, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = arena_new(a, d->sizeof_message);

    protobuf_c_message_init(d, m);
    return m;
}

/* Sets field f of msg to value (a char * or a message *); one element when
 * repeated; the oneof case when it is a member. */
static void set_field(arena *a, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                      void *value)
{
    char *base = (char *)msg;

    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        void **arr = arena_new(a, sizeof(void *));
        arr[0] = value;
        *(size_t *)(base + f->quantifier_offset) = 1;
        *(void ***)(base + f->offset) = arr;
        return;
    }
    *(void **)(base + f->offset) = value;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
}

/* The message type of field f. */
static const ProtobufCMessageDescriptor *type_of(const ProtobufCFieldDescriptor *f)
{
    return (const ProtobufCMessageDescriptor *)f->descriptor;
}

static bool is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t len = strlen(d->name);

    return d->n_fields == 2 && strcmp(d->fields[0].name, "key") == 0 && len > 5 &&
           strcmp(d->name + len - 5, "Entry") == 0;
}

/* One string field reached through a chain of message fields. */
typedef struct string_path {
    const ProtobufCFieldDescriptor *chain[8];
    int depth;
    const rpc *r;
    int cases; /* how many were tried */
} string_path;

#define BAD "ok\xff\xfe"

/* Builds the request down the chain, the last field a bad string (or, for
 * a map, the entry with a bad key or value), sends it and checks the error
 * names the field's JSON path. */
static void try_bad_string(const world *w, string_path *sp, int map_part)
{
    const ProtobufCMessageDescriptor *d = sp->r->request;
    ProtobufCMessage *root, *msg;
    char path[256] = "", want[300];
    arena a = {.n = 0};
    uint8_t *buf;
    size_t len;

    root = msg = new_message(&a, d);
    for (int i = 0; i < sp->depth; i++) {
        const ProtobufCFieldDescriptor *f = sp->chain[i];
        size_t used = strlen(path);
        bool is_map = i + 1 == sp->depth && map_part != 0; /* a map is no list */
        snprintf(path + used, sizeof(path) - used, "%s%s%s", used ? "." : "", f->name,
                 f->label == PROTOBUF_C_LABEL_REPEATED && !is_map ? "[0]" : "");
        if (i + 1 == sp->depth && map_part != 0) {
            /* A map<string, string> entry: a bad key names the map, a bad
             * value its key. */
            ProtobufCMessage *entry = new_message(&a, type_of(f));
            char **key = (char **)((char *)entry + type_of(f)->fields[0].offset);
            char **value = (char **)((char *)entry + type_of(f)->fields[1].offset);
            *key = map_part == 1 ? BAD : "k";
            if (type_of(f)->fields[1].type == PROTOBUF_C_TYPE_STRING)
                *value = map_part == 1 ? "v" : BAD;
            set_field(&a, msg, f, entry);
            if (map_part == 2)
                strcat(path, ".k");
        } else if (i + 1 == sp->depth) {
            set_field(&a, msg, f, BAD);
        } else {
            ProtobufCMessage *sub = new_message(&a, type_of(f));
            set_field(&a, msg, f, sub);
            msg = sub;
        }
    }
    len = protobuf_c_message_get_packed_size(root);
    buf = malloc(len ? len : 1);
    protobuf_c_message_pack(root, buf);
    snprintf(want, sizeof(want), "%s: ", path);
    expect_refused(w, sp->r, buf, len, GRPC_STATUS_INVALID_ARGUMENT, want,
                   map_part == 1 ? "keys must be valid UTF-8" : "must be valid UTF-8");
    free(buf);
    arena_free(&a);
    sp->cases++;
}

/* Every string field below d, messages followed up to 4 levels (the JSON
 * types Struct, Value and ListValue are tried on their own). */
static void each_string_field(const world *w, string_path *sp, const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        sp->chain[sp->depth++] = f;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            try_bad_string(w, sp, 0);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(type_of(f))) {
            if (type_of(f)->fields[0].type == PROTOBUF_C_TYPE_STRING)
                try_bad_string(w, sp, 1);
            if (type_of(f)->fields[1].type == PROTOBUF_C_TYPE_STRING)
                try_bad_string(w, sp, 2);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
                   strncmp(type_of(f)->name, "google.protobuf.", 16) != 0 && sp->depth < 5) {
            each_string_field(w, sp, type_of(f));
        }
        sp->depth--;
    }
}

/* A Struct payload's keys and string values, which the walk above skips. */
static void try_bad_struct_text(const world *w)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Struct__FieldsEntry entry = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT,
                                          *entries[] = {&entry};
    Google__Protobuf__Value value = GOOGLE__PROTOBUF__VALUE__INIT;
    uint8_t buf[256];
    size_t len;

    ev.event_type = "hostile.text";
    ev.source_service = "hostile";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    data.n_fields = 1;
    data.fields = entries;
    entry.value = &value;
    value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    req.event = &ev;
    for (int part = 0; part < 2; part++) {
        entry.key = part == 0 ? BAD : "note";
        value.string_value = part == 0 ? "fine" : BAD;
        len = protobuf_c_message_pack(&req.base, buf);
        for (int k = 0; k < 2; k++)
            expect_refused(w, &rpcs[k], buf, len, GRPC_STATUS_INVALID_ARGUMENT,
                           part == 0 ? "event.data: " : "event.data.note: ",
                           part == 0 ? "keys must be valid UTF-8" : "must be valid UTF-8");
    }
}

/* protobuf-c does not check that proto3 strings are UTF-8: the service
 * does, for every string field of every request, before anything else. */
static void test_invalid_utf8_in_every_string_field_of_every_request_names_the_field(void **state)
{
    world *w = *state;
    char *before = redis_snapshot(w);
    int total = 0;

    for (size_t i = 0; i < sizeof(rpcs) / sizeof(rpcs[0]); i++) {
        string_path sp = {.depth = 0, .r = &rpcs[i], .cases = 0};
        each_string_field(w, &sp, rpcs[i].request);
        print_message("%-60s %3d string fields\n", rpcs[i].method, sp.cases);
        total += sp.cases;
    }
    try_bad_struct_text(w);
    assert_true(total > 100);
    assert_service_lives(w);
    assert_unchanged(w, before, "requests with invalid UTF-8");
}

/* ===================== limits ============================================ */

/* A message of r's request type, packed (caller frees). */
static uint8_t *packed(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(m);
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(m, buf);
    return buf;
}

static const rpc *rpc_named(const char *method)
{
    for (size_t i = 0; i < sizeof(rpcs) / sizeof(rpcs[0]); i++)
        if (strcmp(rpcs[i].method, method) == 0)
            return &rpcs[i];
    fail_msg("no rpc %s", method);
    return NULL;
}

static void expect_message_refused(const world *w, const char *method, const ProtobufCMessage *m,
                                   grpc_status_code want, const char *prefix, const char *contains)
{
    size_t len;
    uint8_t *buf = packed(m, &len);

    expect_refused(w, rpc_named(method), buf, len, want, prefix, contains);
    free(buf);
}

/* n copies of text (caller frees). */
static char *repeat(const char *text, size_t n)
{
    size_t k = strlen(text);
    char *s = malloc(n * k + 1);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * k, text, k);
    s[n * k] = '\0';
    return s;
}

static void test_100000_patterns_in_one_subscription_are_refused_naming_the_limit(void **state)
{
    enum { N = 100000 };
    world *w = *state;
    Tracseq__Events__V1__CreateSubscriptionRequest create =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__SubscribeRequest sub = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__Subscription spec = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char **patterns = calloc(N, sizeof(char *)), *before = redis_snapshot(w);

    assert_non_null(patterns);
    for (size_t i = 0; i < N; i++)
        patterns[i] = "sample.*";
    spec.name = "many-patterns";
    spec.event_types = patterns;
    spec.n_event_types = N;
    create.subscription = &spec;
    expect_message_refused(w, M_CREATE, &create.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription.event_types: 100000 patterns",
                           "at most 32 per subscription (MAX_SUBSCRIPTION_PATTERNS)");
    sub.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION;
    sub.subscription = &spec;
    expect_message_refused(w, M_SUBSCRIBE, &sub.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription.event_types: 100000 patterns",
                           "(MAX_SUBSCRIPTION_PATTERNS)");
    /* 33: one over the default. */
    spec.n_event_types = 33;
    expect_message_refused(w, M_CREATE, &create.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription.event_types: 33 patterns", NULL);
    free(patterns);
    assert_service_lives(w);
    assert_unchanged(w, before, "100,000 patterns");
}

static void test_huge_names_and_ids_are_refused_naming_the_field(void **state)
{
    world *w = *state;
    char *huge = repeat("n", 100000), *before = redis_snapshot(w);
    Tracseq__Events__V1__CreateSubscriptionRequest create =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription spec = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    Tracseq__Events__V1__GetSubscriptionRequest get =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__DeleteSubscriptionRequest del =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__PullRequest pull = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__SubscribeRequest sub = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    PublishRequest pub = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    char *types[] = {"huge.*"}, *ids[] = {huge};

    spec.name = huge;
    spec.event_types = types;
    spec.n_event_types = 1;
    create.subscription = &spec;
    expect_message_refused(w, M_CREATE, &create.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription.name: ", NULL);
    spec.name = "huge";
    spec.dead_letter_type = huge;
    expect_message_refused(w, M_CREATE, &create.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription.dead_letter_type: ", "must be an event type");
    spec.dead_letter_type = "";
    get.name = huge;
    expect_message_refused(w, SERVICE "GetSubscription", &get.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "name: ", "1 to 64 characters");
    del.name = huge;
    expect_message_refused(w, SERVICE "DeleteSubscription", &del.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "name: ", "1 to 64 characters");
    pull.subscription = huge;
    expect_message_refused(w, SERVICE "Pull", &pull.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription: ", NULL);
    pull.subscription = "huge";
    pull.consumer_name = huge;
    expect_message_refused(w, SERVICE "Pull", &pull.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "consumer_name: ", "1 to 128 characters");
    ack.subscription = "huge";
    ack.ack_ids = ids;
    ack.n_ack_ids = 1;
    expect_message_refused(w, SERVICE "Acknowledge", &ack.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "ack_ids[0]: ", "at most 256 characters");
    expect_message_refused(w, SERVICE "Nack", &ack.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "ack_ids[0]: ", NULL);
    sub.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    sub.subscription_name = huge;
    expect_message_refused(w, M_SUBSCRIBE, &sub.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "subscription_name: ", NULL);
    sub.subscription_name = "huge";
    sub.consumer_name = huge;
    expect_message_refused(w, M_SUBSCRIBE, &sub.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "consumer_name: ", NULL);

    /* An event's id, type, source and version, one at a time, by both publish paths. */
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    pub.event = &ev;
    static const char *const fields[] = {
        "event.id: ", "event.event_type: ", "event.source_service: ", "event.version: "};
    for (int f = 0; f < 4; f++) {
        ev.id = f == 0 ? huge : "";
        ev.event_type = f == 1 ? huge : "huge.event";
        ev.source_service = f == 2 ? huge : "hostile";
        ev.version = f == 3 ? huge : "";
        expect_message_refused(w, M_PUBLISH, &pub.base, GRPC_STATUS_INVALID_ARGUMENT, fields[f],
                               NULL);
        expect_message_refused(w, M_PUBLISH_STREAM, &pub.base, GRPC_STATUS_INVALID_ARGUMENT,
                               fields[f], NULL);
    }
    free(huge);
    assert_service_lives(w);
    assert_unchanged(w, before, "huge names and ids");
}

/* Opens a Subscribe stream to name. A stream the service refuses at once
 * may fail the first send: its status then tells. */
static tse_test_stream *subscribed(const world *w, const char *name)
{
    Tracseq__Events__V1__SubscribeRequest sub = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(w->ch, M_SUBSCRIBE, TIMEOUT_MS, NULL, NULL);

    sub.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    sub.subscription_name = (char *)name;
    tse_test_stream_send(s, &sub.base);
    return s;
}

static long long pending(const world *w, const char *key, const char *group)
{
    char *out = tse_test_redis_cmd(w->redis, "XPENDING %s %s", key, group);
    long long n = atoll(out);

    free(out);
    return n;
}

/* A subscription `name` of name.*, its one subscriber attached, and one
 * event of type name.thing published and delivered to it: the delivery
 * (caller frees) and the stream in *s. */
static Tracseq__Events__V1__Delivery *one_delivery(const world *w, const char *name,
                                                   tse_test_stream **s)
{
    char pattern[64], type[64];
    Tracseq__Events__V1__Delivery *d;
    ProtobufCMessage *published = NULL;
    tse_test_status st;
    size_t len;
    uint8_t *buf;

    snprintf(pattern, sizeof(pattern), "%s.*", name);
    snprintf(type, sizeof(type), "%s.thing", name);
    buf = tse_nest_publish_lists(type, 1, &len);
    tse_test_create_subscription(w->ch, name, pattern,
                                 TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED,
                                 false, TIMEOUT_MS);
    *s = subscribed(w, name);
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch, name, TIMEOUT_MS) == 1, 10000,
                   "the subscriber of %s attached", name);
    assert_int_equal(tse_test_unary_raw(w->ch, M_PUBLISH, buf, len,
                                        &tracseq__events__v1__publish_response__descriptor,
                                        &published, &st, TIMEOUT_MS),
                     GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(published, NULL);
    free(buf);
    d = (Tracseq__Events__V1__Delivery *)tse_test_stream_recv(
        *s, &tracseq__events__v1__delivery__descriptor, TIMEOUT_MS, NULL);
    assert_non_null(d);
    return d;
}

static void test_10000_ack_ids_in_one_request_are_refused_and_nothing_is_acked(void **state)
{
    enum { N = 10000 };
    world *w = *state;
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ids = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    char **many = calloc(N, sizeof(char *)), *before;
    tse_test_stream *s;
    tse_test_status st;
    Tracseq__Events__V1__Delivery *d = one_delivery(w, "acks", &s);

    /* 10,000 ids, the one real delivery among them. */
    for (size_t i = 0; i < N; i++)
        many[i] = i == N / 2 ? d->ack_id : "tracseq:events:{acks.thing}:p3/1-1";
    before = redis_snapshot(w);
    assert_int_equal(pending(w, "tracseq:events:{acks.thing}:p3", "acks"), 1);
    ack.subscription = "acks";
    ack.ack_ids = many;
    ack.n_ack_ids = N;
    expect_message_refused(w, SERVICE "Acknowledge", &ack.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "ack_ids: 10000 ack ids", "at most 1000 per request (MAX_ACK_IDS)");
    expect_message_refused(w, SERVICE "Nack", &ack.base, GRPC_STATUS_INVALID_ARGUMENT,
                           "ack_ids: 10000 ack ids", "(MAX_ACK_IDS)");
    /* On the stream: the stream ends naming the list; nothing is acked. */
    ids.ack_ids = many;
    ids.n_ack_ids = N;
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
    req.ack = &ids;
    tse_test_stream_send(s, &req.base);
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
    print_message("Subscribe, ack of 10,000: '%s'\n", st.details);
    assert_int_equal(strncmp(st.details, "ack.ack_ids: 10000 ack ids", 26), 0);
    assert_int_equal(pending(w, "tracseq:events:{acks.thing}:p3", "acks"), 1);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    free(many);
    assert_service_lives(w);
    assert_unchanged(w, before, "10,000 ack ids");
}

/*
 * A Subscribe-stream ack message is read straight from its bytes when it is
 * a plain list of ids; one whose id is too long is not, and ends the stream
 * naming the id, with none of the message's ids acked (the real delivery
 * first in it included).
 */
static void test_a_stream_ack_with_an_id_too_long_ends_the_stream_and_acks_nothing(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ids = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    char long_id[258], *two[2]; /* 257 characters: one over the longest ack id */
    tse_test_stream *s;
    tse_test_status st;
    Tracseq__Events__V1__Delivery *d = one_delivery(w, "longack", &s);

    assert_int_equal(pending(w, "tracseq:events:{longack.thing}:p3", "longack"), 1);
    memset(long_id, 'k', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    two[0] = d->ack_id;
    two[1] = long_id;
    ids.ack_ids = two;
    ids.n_ack_ids = 2;
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
    req.ack = &ids;
    tse_test_stream_send(s, &req.base);
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
    print_message("Subscribe, ack with a long id: '%s'\n", st.details);
    assert_int_equal(strncmp(st.details, "ack.ack_ids[1]: ", 16), 0);
    assert_int_equal(pending(w, "tracseq:events:{longack.thing}:p3", "longack"), 1);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    assert_service_lives(w);
}

/* MAX_SUBSCRIBER_STREAMS is 3 in this world. */
static void test_subscriber_streams_beyond_the_limit_are_refused_naming_it(void **state)
{
    world *w = *state;
    tse_test_stream *open[MAX_SUBSCRIBERS], *extra;
    tse_test_status st;
    long long deadline;
    grpc_status_code code;

    tse_test_create_subscription(w->ch, "crowd", "crowd.*",
                                 TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED,
                                 false, TIMEOUT_MS);
    for (int i = 0; i < MAX_SUBSCRIBERS; i++)
        open[i] = subscribed(w, "crowd");
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch, "crowd", TIMEOUT_MS) == MAX_SUBSCRIBERS, 10000,
                   "%d subscribers of crowd attached", MAX_SUBSCRIBERS);
    extra = subscribed(w, "crowd");
    code = tse_test_stream_finish(extra, &st);
    print_message("stream %d: %d '%s'\n", MAX_SUBSCRIBERS + 1, code, st.details);
    assert_int_equal(code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(st.details, "at most 3 (MAX_SUBSCRIBER_STREAMS)"));
    /* One leaves: a new one is let in (once the service saw it go). */
    tse_test_stream_cancel(open[0]);
    deadline = tse_test_now_ms() + 10000;
    for (;;) {
        bool timed_out = false;
        open[0] = subscribed(w, "crowd");
        /* Refused streams end at once; an accepted one stays open. */
        ProtobufCMessage *m = tse_test_stream_recv(
            open[0], &tracseq__events__v1__delivery__descriptor, 500, &timed_out);
        assert_null(m);
        if (timed_out)
            break;
        assert_int_equal(tse_test_stream_finish(open[0], &st), GRPC_STATUS_RESOURCE_EXHAUSTED);
        assert_true(tse_test_now_ms() < deadline);
    }
    for (int i = 0; i < MAX_SUBSCRIBERS; i++)
        tse_test_stream_cancel(open[i]);
    assert_service_lives(w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deep_publish_is_refused_at_every_depth_and_the_service_lives),
        cmocka_unit_test(test_deep_messages_on_a_publish_stream_are_refused_in_order),
        cmocka_unit_test(test_every_rpc_of_the_service_is_in_the_table),
        cmocka_unit_test(test_streams_cancelled_right_after_their_half_close_are_answered_once),
        cmocka_unit_test(test_garbage_truncated_and_oversized_messages_are_refused_by_every_rpc),
        cmocka_unit_test(test_invalid_utf8_in_every_string_field_of_every_request_names_the_field),
        cmocka_unit_test(test_100000_patterns_in_one_subscription_are_refused_naming_the_limit),
        cmocka_unit_test(test_huge_names_and_ids_are_refused_naming_the_field),
        cmocka_unit_test(test_10000_ack_ids_in_one_request_are_refused_and_nothing_is_acked),
        cmocka_unit_test(test_a_stream_ack_with_an_id_too_long_ends_the_stream_and_acks_nothing),
        cmocka_unit_test(test_subscriber_streams_beyond_the_limit_are_refused_naming_it),
    };

    (void)argc;
    (void)argv;
    return cmocka_run_group_tests(tests, world_up, world_down);
}
