/*
 * test_bridge_subscriptions.c - the REST bridge's subscription endpoints end
 * to end: a real redis-server, the real event service and the real
 * tracseq-rest-bridge binary, spoken to over raw HTTP/1.1 on loopback (and
 * over gRPC, tests/support/grpc_client.h, where events cross protocols).
 *
 * The bridge runs with ONE HTTP worker thread, so every test here also
 * checks that long-polls and event streams never hold the worker: were any
 * request waiting on the service in the worker, the others would stall.
 *
 * The bridge binary is found beside the service's:
 * <dir of $TSE_SERVICE_BIN>/rest-bridge/tracseq-rest-bridge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec/pbjson.h"
#include "grpc_client.h"
#include "harness.h"
#include "http_client.h"
#include "tracseq/events/v1/service.pb-c.h"

#define JSON        "application/json"
#define SVC         "/tracseq.events.v1.EventService/"
#define KEEPALIVE_S 1

/* ===================== processes ========================================= */

typedef tse_test_service proc;

static proc *bridge_start(const char *service_addr)
{
    char keep[32];

    snprintf(keep, sizeof(keep), "--sse-keepalive=%ds", KEEPALIVE_S);
    return tse_test_bridge_start(service_addr,
                                 (const char *const[]){keep, "--http-threads=1", "--rpc-timeout=3s",
                                                       "--retry-after=1", NULL});
}

/* ===================== a small HTTP/1.1 client =========================== */

/* A request with a JSON body (when body is non-NULL) and extra headers. */
static void send_request(int fd, const char *method, const char *path, const char *headers,
                         const char *body)
{
    tse_test_http_send(fd, method, path, body ? JSON : NULL, headers, body, body ? strlen(body) : 0,
                       false);
}

static tse_test_http_resp http(const proc *b, const char *method, const char *path,
                               const char *body)
{
    int fd = tse_test_http_connect(b->port);
    tse_test_http_resp r;

    send_request(fd, method, path, "Connection: close\r\n", body);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    return r;
}

/* One request whose answer must have status; returns its JSON. */
static json_t *http_json(const proc *b, const char *method, const char *path, const char *body,
                         int status)
{
    tse_test_http_resp r = http(b, method, path, body);
    json_t *j;

    if (r.status != status)
        fail_msg("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body);
    j = tse_test_http_json(&r);
    free(r.body);
    return j;
}

static void assert_error(const proc *b, const char *method, const char *path, const char *body,
                         int status, const char *code, const char *field)
{
    json_t *j = http_json(b, method, path, body, status);

    assert_true(json_is_string(json_object_get(j, "error")));
    assert_string_equal(json_string_value(json_object_get(j, "code")), code);
    if (field != NULL)
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(j, "details"), 0), "field")),
                            field);
    json_decref(j);
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    if (s == NULL)
        fail_msg("no string \"%s\"", key);
    return s;
}

static long long num(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v))
        fail_msg("no integer \"%s\"", key);
    return json_integer_value(v);
}

/* ===================== Server-Sent Events reader ========================= */

/* A chunked text/event-stream response read line by line. */
typedef struct sse {
    int fd;
    int status;
    char raw[65536];
    size_t raw_len;
    char text[65536]; /* decoded body not yet returned as lines */
    size_t text_len;
    bool ended; /* the terminating chunk came */
} sse;

/* Reads more bytes within timeout_ms; false on timeout or close. */
static bool sse_fill(sse *s, int timeout_ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    n = recv(s->fd, s->raw + s->raw_len, sizeof(s->raw) - s->raw_len, 0);
    if (n <= 0)
        return false;
    s->raw_len += (size_t)n;
    return true;
}

/* Moves complete chunks from raw to text. */
static void sse_dechunk(sse *s)
{
    for (;;) {
        char *crlf = memmem(s->raw, s->raw_len, "\r\n", 2);
        size_t size, head;
        if (crlf == NULL)
            return;
        size = strtoul(s->raw, NULL, 16);
        head = (size_t)(crlf - s->raw) + 2;
        if (s->raw_len < head + size + 2)
            return;
        if (size == 0)
            s->ended = true;
        assert_true(s->text_len + size < sizeof(s->text));
        memcpy(s->text + s->text_len, s->raw + head, size);
        s->text_len += size;
        memmove(s->raw, s->raw + head + size + 2, s->raw_len - head - size - 2);
        s->raw_len -= head + size + 2;
    }
}

static sse *sse_open(const proc *b, const char *path)
{
    sse *s = calloc(1, sizeof(*s));
    char *end;

    s->fd = tse_test_http_connect(b->port);
    send_request(s->fd, "GET", path, "Accept: text/event-stream\r\n", NULL);
    while ((end = memmem(s->raw, s->raw_len, "\r\n\r\n", 4)) == NULL)
        assert_true(sse_fill(s, 5000));
    sscanf(s->raw, "HTTP/1.1 %d", &s->status);
    if (s->status == 200) {
        *end = '\0';
        assert_non_null(strcasestr(s->raw, "Content-Type: text/event-stream"));
        assert_non_null(strcasestr(s->raw, "Transfer-Encoding: chunked"));
    }
    memmove(s->raw, end + 4, s->raw_len - (size_t)(end + 4 - s->raw));
    s->raw_len -= (size_t)(end + 4 - s->raw);
    return s;
}

/* The next line (without "\n"), waiting up to timeout_ms; false if none. */
static bool sse_line(sse *s, char *line, size_t len, int timeout_ms)
{
    long long deadline = tse_test_now_ms() + timeout_ms;

    for (;;) {
        char *nl;
        sse_dechunk(s);
        if ((nl = memchr(s->text, '\n', s->text_len)) != NULL) {
            size_t n = (size_t)(nl - s->text);
            snprintf(line, len, "%.*s", (int)n, s->text);
            memmove(s->text, nl + 1, s->text_len - n - 1);
            s->text_len -= n + 1;
            return true;
        }
        if (s->ended)
            return false;
        long long left = deadline - tse_test_now_ms();
        if (left <= 0 || !sse_fill(s, (int)left))
            return false;
    }
}

/* Skips lines until one starting with prefix; copies what follows it. */
static bool sse_expect(sse *s, const char *prefix, char *rest, size_t len, int timeout_ms)
{
    long long deadline = tse_test_now_ms() + timeout_ms;
    char line[32768];

    while (sse_line(s, line, sizeof(line), (int)(deadline - tse_test_now_ms()))) {
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            const char *from = line + strlen(prefix);
            size_t n = strnlen(from, len - 1); /* cut to fit, as the caller asked */
            memcpy(rest, from, n);
            rest[n] = '\0';
            return true;
        }
    }
    return false;
}

/* One event: its id, type and data lines. */
typedef struct sse_event {
    char id[256], type[160];
    json_t *data;
} sse_event;

static bool sse_event_next(sse *s, sse_event *ev, int timeout_ms)
{
    char data[32768];

    memset(ev, 0, sizeof(*ev));
    if (!sse_expect(s, "id: ", ev->id, sizeof(ev->id), timeout_ms))
        return false;
    assert_true(sse_expect(s, "event: ", ev->type, sizeof(ev->type), 1000));
    assert_true(sse_expect(s, "data: ", data, sizeof(data), 1000));
    ev->data = json_loads(data, 0, NULL);
    assert_non_null(ev->data);
    return true;
}

static void sse_close(sse *s)
{
    close(s->fd);
    free(s);
}

/* ===================== the world ========================================= */

typedef struct world {
    tse_test_redis *redis;
    tse_test_service *service;
    proc *bridge;
    tse_client *ch;
} world;

static int world_up(void **state)
{
    world *w = calloc(1, sizeof(*w));

    w->redis = tse_test_redis_start(false);
    assert_non_null(w->redis);
    w->service = tse_test_service_start(w->redis, NULL);
    assert_non_null(w->service);
    w->bridge = bridge_start(w->service->addr);
    assert_non_null(w->bridge);
    w->ch = tse_test_channel(w->service->addr);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    world *w = *state;

    tse_test_channel_destroy(w->ch);
    /* Streams and long-polls of the tests are gone; SIGTERM ends it cleanly. */
    assert_int_equal(tse_test_service_stop(w->bridge), 0);
    tse_test_service_stop(w->service);
    tse_test_redis_stop(w->redis);
    free(w);
    return 0;
}

/* Publishes over REST; returns the event id (static buffer). */
static const char *publish(const proc *b, const char *type, const char *payload)
{
    static char id[64];
    char body[1024];
    json_t *j;

    snprintf(body, sizeof(body),
             "{\"event_type\":\"%s\",\"source_service\":\"rest-test\","
             "\"payload\":%s}",
             type, payload);
    j = http_json(b, "POST", "/api/v1/events/publish", body, 200);
    snprintf(id, sizeof(id), "%s", str(j, "event_id"));
    json_decref(j);
    return id;
}

/* Publishes an event written as proto3 JSON over gRPC. */
static void publish_grpc(world *w, const char *event_json)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    ProtobufCMessage *ev = NULL, *resp = NULL;
    json_t *j = json_loads(event_json, 0, NULL);
    tse_test_status st;

    assert_non_null(j);
    assert_int_equal(
        tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &ev, NULL), 0);
    req.event = (Tracseq__Events__V1__Event *)ev;
    assert_int_equal(tse_test_unary(w->ch, SVC "Publish", &req.base,
                                    &tracseq__events__v1__publish_response__descriptor, &resp, &st,
                                    5000, NULL, NULL),
                     GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(resp, NULL);
    protobuf_c_message_free_unpacked(ev, NULL);
    json_decref(j);
}

/* Creates a subscription over REST with the given body. */
static json_t *subscribe(const proc *b, const char *body)
{
    return http_json(b, "POST", "/api/v1/events/subscribe", body, 200);
}

/* GET /api/v1/subscriptions/{name} -> its stats[key]. */
static long long sub_stat(const proc *b, const char *name, const char *key)
{
    char path[160];
    json_t *j;
    long long v;

    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s", name);
    j = http_json(b, "GET", path, NULL, 200);
    v = num(json_object_get(j, "stats"), key);
    json_decref(j);
    return v;
}

/* Polls a subscription stat until it equals want (within timeout_ms). */
static bool stat_becomes(const proc *b, const char *name, const char *key, long long want,
                         int timeout_ms)
{
    long long deadline = tse_test_now_ms() + timeout_ms;

    do {
        if (sub_stat(b, name, key) == want)
            return true;
        usleep(50000);
    } while (tse_test_now_ms() < deadline);
    return false;
}

/* How many pulls the bridge answered with a status it has no label for,
 * i.e. 499: the client hung up and the bridge cancelled the call. */
static long long pulls_hung_up(const proc *b)
{
    static const char key[] =
        "tracseq_bridge_http_requests_total{route=\"GET /api/v1/subscriptions/{name}/events\","
        "status=\"other\"} ";
    tse_test_http_resp r = http(b, "GET", "/metrics", NULL);
    const char *at;
    long long n;

    assert_int_equal(r.status, 200);
    at = strstr(r.body, key);
    n = at != NULL ? strtoll(at + strlen(key), NULL, 10) : 0;
    free(r.body);
    return n;
}

/* Waits until the bridge cancelled one more hung-up pull than before. */
static bool pull_hangup_counted(const proc *b, long long before, int timeout_ms)
{
    long long deadline = tse_test_now_ms() + timeout_ms;

    do {
        if (pulls_hung_up(b) > before)
            return true;
        usleep(50000);
    } while (tse_test_now_ms() < deadline);
    return false;
}

static json_t *pull(const proc *b, const char *name, const char *query)
{
    char path[256];

    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/events%s", name, query);
    return http_json(b, "GET", path, NULL, 200);
}

static void settle(const proc *b, const char *name, const char *what, const char *ack_id,
                   const char *extra, const char *field, long long want)
{
    char path[256], body[600];
    json_t *j;

    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/%s", name, what);
    snprintf(body, sizeof(body), "{\"ack_ids\":[\"%s\"]%s}", ack_id, extra ? extra : "");
    j = http_json(b, "POST", path, body, 200);
    assert_int_equal(num(j, field), want);
    json_decref(j);
}

/* ===================== subscribe ========================================= */

static void test_subscribe_with_an_empty_body_uses_the_documented_defaults(void **state)
{
    world *w = *state;
    json_t *j = subscribe(w->bridge, "{}"), *types = json_object_get(j, "event_types");

    assert_string_equal(str(j, "status"), "subscribed");
    assert_string_equal(str(j, "subscription_name"), "default");
    assert_int_equal(json_array_size(types), 1);
    assert_string_equal(json_string_value(json_array_get(types, 0)), "*");
    assert_true(json_is_true(json_object_get(j, "auto_ack")));
    assert_string_equal(str(j, "start"), "latest");
    assert_string_equal(str(j, "events_url"),
                        "/api/v1/subscriptions/default/events?max=10&wait_ms=5000");
    json_decref(j);
    j = http_json(w->bridge, "GET", "/api/v1/subscriptions/default", NULL, 200);
    assert_string_equal(str(j, "start"), "START_POSITION_LATEST");
    assert_true(json_is_true(json_object_get(j, "auto_ack")));
    json_decref(j);
}

static void test_subscribe_takes_the_original_eight_fields_and_is_idempotent(void **state)
{
    world *w = *state;
    static const char body[] =
        "{\"name\":\"orig\",\"event_types\":[\"sample.*\",\"*.completed\"],"
        "\"consumer_group\":\"orig\",\"consumer_name\":\"c1\",\"batch_size\":25,"
        "\"timeout_ms\":2000,\"auto_ack\":false,\"read_latest\":false}";
    json_t *j = subscribe(w->bridge, body);

    assert_string_equal(str(j, "subscription_name"), "orig");
    assert_int_equal(json_array_size(json_object_get(j, "event_types")), 2);
    assert_string_equal(str(j, "consumer_group"), "orig");
    assert_true(json_is_false(json_object_get(j, "auto_ack")));
    assert_string_equal(str(j, "start"), "earliest");
    assert_string_equal(str(j, "events_url"),
                        "/api/v1/subscriptions/orig/events?max=25&wait_ms=2000&consumer=c1");
    assert_string_equal(str(j, "ack_url"), "/api/v1/subscriptions/orig/ack");
    json_decref(j);
    /* The same settings again: accepted. */
    json_decref(subscribe(w->bridge, body));
}

static void test_subscribe_with_other_settings_is_409_json(void **state)
{
    world *w = *state;

    json_decref(subscribe(w->bridge, "{\"name\":\"clash\",\"event_types\":[\"a.*\"]}"));
    assert_error(w->bridge, "POST", "/api/v1/events/subscribe",
                 "{\"name\":\"clash\",\"event_types\":[\"b.*\"]}", 409, "ALREADY_EXISTS", NULL);
}

static void test_subscribe_input_errors_are_422_naming_the_field(void **state)
{
    world *w = *state;

    assert_error(w->bridge, "POST", "/api/v1/events/subscribe", "{\"batch_size\":0}", 422,
                 "VALIDATION_FAILED", "batch_size");
    assert_error(w->bridge, "POST", "/api/v1/events/subscribe", "{\"timeout_ms\":60001}", 422,
                 "VALIDATION_FAILED", "timeout_ms");
    assert_error(w->bridge, "POST", "/api/v1/events/subscribe", "{\"event_types\":[1]}", 422,
                 "VALIDATION_FAILED", "event_types");
    assert_error(w->bridge, "POST", "/api/v1/events/subscribe", "{\"consumer_name\":\"a b\"}", 422,
                 "VALIDATION_FAILED", "consumer_name");
    assert_error(w->bridge, "POST", "/api/v1/events/subscribe", "{\"auto_ack\":\"yes\"}", 422,
                 "VALIDATION_FAILED", "auto_ack");
    /* The service's own check of the name. */
    assert_error(w->bridge, "POST", "/api/v1/events/subscribe", "{\"name\":\"no/slash\"}", 422,
                 "VALIDATION_FAILED", NULL);
}

/* ===================== pull, ack, nack ==================================== */

static void test_pull_of_an_auto_ack_subscription_acks_what_it_answers(void **state)
{
    world *w = *state;
    json_t *j, *events, *ev;
    char id[64];

    json_decref(subscribe(w->bridge, "{\"name\":\"auto\",\"event_types\":[\"auto.*\"]}"));
    /* One type: one stream, so the two come in publish order. */
    snprintf(id, sizeof(id), "%s", publish(w->bridge, "auto.job", "{\"n\":1}"));
    publish(w->bridge, "auto.job", "{\"n\":2}");
    j = pull(w->bridge, "auto", "?max=10&wait_ms=2000");
    events = json_object_get(j, "events");
    if (json_array_size(events) < 2) { /* the second may come with the next read */
        json_t *more = pull(w->bridge, "auto", "?max=10&wait_ms=2000");
        json_array_extend(events, json_object_get(more, "events"));
        json_decref(more);
    }
    assert_int_equal(json_array_size(events), 2);
    ev = json_array_get(events, 0);
    assert_int_equal(num(ev, "delivery_attempt"), 1);
    assert_non_null(strstr(str(ev, "ack_id"), "tracseq:events:{auto."));
    assert_string_equal(str(json_object_get(ev, "event"), "id"), id);
    assert_string_equal(str(json_object_get(ev, "event"), "event_type"), "auto.job");
    assert_int_equal(num(json_object_get(json_object_get(ev, "event"), "payload"), "n"), 1);
    assert_true(json_is_true(json_object_get(j, "auto_acked")));
    json_decref(j);
    /* Acked before the answer went out: nothing pending, nothing again. */
    assert_int_equal(sub_stat(w->bridge, "auto", "pending"), 0);
    j = pull(w->bridge, "auto", "?wait_ms=0");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
}

/* Events read back as CloudEvents 1.0, the mirror of CloudEvents publish. */
static void test_pull_reads_events_back_as_cloudevents(void **state)
{
    world *w = *state;
    json_t *j, *ce;
    char id[64];

    json_decref(subscribe(w->bridge, "{\"name\":\"ce\",\"event_types\":[\"ce.*\"]}"));
    snprintf(id, sizeof(id), "%s", publish(w->bridge, "ce.job", "{\"n\":7}"));
    j = pull(w->bridge, "ce", "?max=1&wait_ms=2000&format=cloudevents");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    ce = json_object_get(json_array_get(json_object_get(j, "events"), 0), "event");
    assert_string_equal(str(ce, "specversion"), "1.0");
    assert_string_equal(str(ce, "id"), id);
    assert_string_equal(str(ce, "type"), "ce.job");
    assert_non_null(json_object_get(ce, "source"));
    assert_non_null(json_object_get(ce, "time"));
    assert_int_equal(num(json_object_get(ce, "data"), "n"), 7);
    assert_null(json_object_get(ce, "event_type"));
    json_decref(j);
}

static void test_pull_ack_and_redelivery_after_nack_delay(void **state)
{
    world *w = *state;
    char ack_id[256];
    long long start;
    json_t *j, *ev;

    json_decref(subscribe(
        w->bridge, "{\"name\":\"manual\",\"event_types\":[\"manual.*\"],\"auto_ack\":false}"));
    publish(w->bridge, "manual.job", "{\"k\":\"v\"}");
    j = pull(w->bridge, "manual", "?max=1&wait_ms=2000");
    ev = json_array_get(json_object_get(j, "events"), 0);
    assert_non_null(ev);
    assert_int_equal(num(ev, "delivery_attempt"), 1);
    assert_true(json_is_false(json_object_get(j, "auto_acked")));
    snprintf(ack_id, sizeof(ack_id), "%s", str(ev, "ack_id"));
    json_decref(j);
    assert_int_equal(sub_stat(w->bridge, "manual", "pending"), 1);

    settle(w->bridge, "manual", "nack", ack_id, ",\"delay_ms\":800", "nacked", 1);
    start = tse_test_now_ms();
    j = pull(w->bridge, "manual", "?wait_ms=0"); /* not before the delay */
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
    /* The service hands a redelivery that fell due to a pull when the
     * pull starts, so ask once the delay is over. */
    usleep(900000);
    j = pull(w->bridge, "manual", "?max=1&wait_ms=3000");
    ev = json_array_get(json_object_get(j, "events"), 0);
    assert_non_null(ev);
    assert_true(tse_test_now_ms() - start >= 800);
    assert_string_equal(str(ev, "ack_id"), ack_id);
    assert_int_equal(num(ev, "delivery_attempt"), 2);
    json_decref(j);

    settle(w->bridge, "manual", "ack", ack_id, NULL, "acked", 1);
    assert_int_equal(sub_stat(w->bridge, "manual", "pending"), 0);
    /* A second ack finds nothing pending: it is named unknown. */
    j = http_json(w->bridge, "POST", "/api/v1/subscriptions/manual/ack",
                  "{\"ack_ids\":[\"tracseq:events:{manual.job}:p3/1-0\"]}", 200);
    assert_int_equal(num(j, "acked"), 0);
    assert_int_equal(json_array_size(json_object_get(j, "unknown_ack_ids")), 1);
    json_decref(j);
}

static void test_long_poll_answers_when_an_event_arrives(void **state)
{
    world *w = *state;
    int fd = tse_test_http_connect(w->bridge->port);
    long long start = tse_test_now_ms();
    tse_test_http_resp r;
    json_t *j;

    json_decref(subscribe(w->bridge, "{\"name\":\"lp\",\"event_types\":[\"lp.*\"]}"));
    send_request(fd, "GET", "/api/v1/subscriptions/lp/events?wait_ms=10000", NULL, NULL);
    usleep(300000);
    /* The one HTTP worker is free while the poll waits: this publish runs. */
    publish(w->bridge, "lp.arrived", "{}");
    assert_true(tse_test_http_read(fd, &r));
    assert_int_equal(r.status, 200);
    assert_true(tse_test_now_ms() - start < 5000);
    j = tse_test_http_json(&r);
    assert_string_equal(
        str(json_object_get(json_array_get(json_object_get(j, "events"), 0), "event"),
            "event_type"),
        "lp.arrived");
    json_decref(j);
    free(r.body);
    close(fd);
}

/* True when no answer to any of the n requests on fds arrived yet. */
static bool none_answered(const int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (poll(&p, 1, 0) != 0)
            return false;
    }
    return true;
}

/* 1000 idle long-polls on the bridge's single worker: publishing and the
 * other endpoints answer all the same, while every poll still waits (not
 * "within 1 s": a loaded host is slower than that and proves nothing). */
static void test_idle_long_polls_do_not_hold_the_worker(void **state)
{
    world *w = *state;
    enum { POLLS = 1000 };
    int fds[POLLS];
    json_t *j;

    json_decref(subscribe(w->bridge, "{\"name\":\"idle\",\"event_types\":[\"idle.*\"]}"));
    for (int i = 0; i < POLLS; i++) {
        fds[i] = tse_test_http_connect(w->bridge->port);
        send_request(fds[i], "GET", "/api/v1/subscriptions/idle/events?wait_ms=6000", NULL, NULL);
    }
    usleep(200000);
    publish(w->bridge, "other.event", "{}");
    j = http_json(w->bridge, "GET", "/api/v1/stats", NULL, 200);
    json_decref(j);
    assert_true(none_answered(fds, POLLS));
    for (int i = 0; i < POLLS; i++) {
        tse_test_http_resp r;
        assert_true(tse_test_http_read(fds[i], &r));
        assert_int_equal(r.status, 200);
        free(r.body);
        close(fds[i]);
    }
}

/*
 * The bridge cancels the Pull of a client that hung up, and the service
 * lets go of a cancelled pull at once: the next event is neither acked
 * (auto_ack) nor even read for the departed client; the next poll gets it,
 * first attempt.
 */
static void test_a_long_poll_whose_client_hangs_up_takes_no_event(void **state)
{
    world *w = *state;
    int fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_resp r;
    json_t *j, *ev;

    long long hung_up = pulls_hung_up(w->bridge);

    json_decref(subscribe(w->bridge, "{\"name\":\"hangup\",\"event_types\":[\"hangup.*\"]}"));
    send_request(fd, "GET", "/api/v1/subscriptions/hangup/events?wait_ms=20000", NULL, NULL);
    usleep(200000);
    close(fd);
    /* The bridge notices within a tick and cancels the pull (counted as a
     * 499); a fixed sleep for it was too short on a loaded host, and the
     * event then went to the departed client's pull. */
    assert_true(pull_hangup_counted(w->bridge, hung_up, 10000));
    publish(w->bridge, "hangup.event", "{}");
    usleep(500000);
    assert_int_equal(sub_stat(w->bridge, "hangup", "delivered"), 0);
    assert_int_equal(sub_stat(w->bridge, "hangup", "acked"), 0);
    assert_int_equal(sub_stat(w->bridge, "hangup", "pending"), 0);
    fd = tse_test_http_connect(w->bridge->port);
    send_request(fd, "GET", "/api/v1/subscriptions/hangup/events?wait_ms=3000", NULL, NULL);
    assert_true(tse_test_http_read(fd, &r));
    assert_int_equal(r.status, 200);
    j = tse_test_http_json(&r);
    ev = json_array_get(json_object_get(j, "events"), 0);
    assert_string_equal(str(json_object_get(ev, "event"), "event_type"), "hangup.event");
    assert_int_equal(num(ev, "delivery_attempt"), 1);
    json_decref(j);
    free(r.body);
    close(fd);
}

static void test_pull_errors_are_json(void **state)
{
    world *w = *state;

    assert_error(w->bridge, "GET", "/api/v1/subscriptions/nobody/events", NULL, 404, "NOT_FOUND",
                 NULL);
    assert_error(w->bridge, "GET", "/api/v1/subscriptions/x/events?max=1001", NULL, 422,
                 "VALIDATION_FAILED", "max");
    assert_error(w->bridge, "GET", "/api/v1/subscriptions/x/events?wait_ms=60001", NULL, 422,
                 "VALIDATION_FAILED", "wait_ms");
    assert_error(w->bridge, "GET", "/api/v1/subscriptions/x/events?consumer=a%20b", NULL, 422,
                 "VALIDATION_FAILED", "consumer");
    assert_error(w->bridge, "POST", "/api/v1/subscriptions/nobody/ack", "{\"ack_ids\":[\"k/1-0\"]}",
                 404, "NOT_FOUND", NULL);
    assert_error(w->bridge, "POST", "/api/v1/subscriptions/x/nack",
                 "{\"ack_ids\":[\"k/1-0\"],\"delay_ms\":-1}", 422, "VALIDATION_FAILED", "delay_ms");
}

/* ===================== list, get, delete ================================= */

static void test_list_get_and_delete_subscriptions(void **state)
{
    world *w = *state;
    json_t *j, *subs, *stats;
    bool found = false;

    json_decref(subscribe(w->bridge, "{\"name\":\"listed\",\"event_types\":[\"listed.*\"],"
                                     "\"auto_ack\":false}"));
    publish(w->bridge, "listed.a", "{}"); /* one type: one stream, one lag */
    publish(w->bridge, "listed.a", "{}");
    json_decref(pull(w->bridge, "listed", "?max=1&wait_ms=2000"));

    j = http_json(w->bridge, "GET", "/api/v1/subscriptions", NULL, 200);
    subs = json_object_get(j, "subscriptions");
    for (size_t i = 0; i < json_array_size(subs); i++)
        found |= strcmp(str(json_array_get(subs, i), "name"), "listed") == 0;
    assert_true(found);
    json_decref(j);

    j = http_json(w->bridge, "GET", "/api/v1/subscriptions/listed", NULL, 200);
    stats = json_object_get(j, "stats");
    assert_int_equal(num(stats, "pending"), 1);
    assert_int_equal(num(stats, "lag"), 1);
    assert_int_equal(num(stats, "dead_lettered"), 0);
    assert_string_equal(str(stats, "dead_letter_stream"), "tracseq:dlq:listed");
    assert_int_equal(json_array_size(json_object_get(j, "event_types")), 1);
    json_decref(j);

    j = http_json(w->bridge, "DELETE", "/api/v1/subscriptions/listed", NULL, 200);
    assert_string_equal(str(j, "status"), "deleted");
    json_decref(j);
    assert_error(w->bridge, "GET", "/api/v1/subscriptions/listed", NULL, 404, "NOT_FOUND", NULL);
    assert_error(w->bridge, "DELETE", "/api/v1/subscriptions/listed", NULL, 404, "NOT_FOUND", NULL);
}

/* Creates a subscription over gRPC (settings REST cannot express). */
static void create_grpc(world *w, const char *name, const char *pattern, bool auto_ack,
                        uint32_t max_in_flight, uint32_t max_attempts)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *patterns[] = {(char *)pattern};
    ProtobufCMessage *resp = NULL;
    tse_test_status st;

    sub.name = (char *)name;
    sub.n_event_types = 1;
    sub.event_types = patterns;
    sub.auto_ack = auto_ack;
    sub.max_in_flight = max_in_flight;
    sub.max_delivery_attempts = max_attempts;
    sub.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    req.subscription = &sub;
    assert_int_equal(tse_test_unary(w->ch, SVC "CreateSubscription", &req.base,
                                    &tracseq__events__v1__subscription__descriptor, &resp, &st,
                                    5000, NULL, NULL),
                     GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_get_counts_dead_letters(void **state)
{
    world *w = *state;
    char ack_id[256];
    json_t *j;

    create_grpc(w, "dlq", "dlq.*", false, 10, 2);
    publish(w->bridge, "dlq.poison", "{}");
    for (int attempt = 1; attempt <= 2; attempt++) {
        j = pull(w->bridge, "dlq", "?max=1&wait_ms=3000");
        assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
        snprintf(ack_id, sizeof(ack_id), "%s",
                 str(json_array_get(json_object_get(j, "events"), 0), "ack_id"));
        json_decref(j);
        settle(w->bridge, "dlq", "nack", ack_id, NULL, "nacked", 1);
    }
    /* Redeliveries are decided while someone reads: keep a reader. */
    for (int i = 0; i < 20 && sub_stat(w->bridge, "dlq", "dead_lettered") == 0; i++) {
        j = pull(w->bridge, "dlq", "?wait_ms=250");
        assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
        json_decref(j);
    }
    assert_int_equal(sub_stat(w->bridge, "dlq", "dead_lettered"), 1);
    assert_int_equal(sub_stat(w->bridge, "dlq", "pending"), 0);
}

/* ===================== Server-Sent Events ================================ */

static void test_sse_delivers_an_event_published_over_grpc(void **state)
{
    world *w = *state;
    sse *s;
    sse_event ev;
    char comment[128];

    json_decref(subscribe(w->bridge, "{\"name\":\"sse1\",\"event_types\":[\"ssegrpc.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/sse1/events");
    assert_int_equal(s->status, 200);
    assert_true(sse_expect(s, ": subscription ", comment, sizeof(comment), 3000));
    assert_string_equal(comment, "sse1");
    assert_true(stat_becomes(w->bridge, "sse1", "active_subscribers", 1, 3000));
    publish_grpc(w, "{\"event_type\":\"ssegrpc.hello\",\"source_service\":\"grpc-client\","
                    "\"data\":{\"greeting\":\"hi\",\"n\":7}}");
    assert_true(sse_event_next(s, &ev, 5000));
    assert_string_equal(ev.type, "ssegrpc.hello");
    assert_non_null(strstr(ev.id, "tracseq:events:{ssegrpc.hello}:"));
    assert_string_equal(str(ev.data, "source_service"), "grpc-client");
    assert_string_equal(str(json_object_get(ev.data, "payload"), "greeting"), "hi");
    json_decref(ev.data);
    /* auto_ack: acked once written, so nothing stays pending. */
    assert_true(stat_becomes(w->bridge, "sse1", "pending", 0, 3000));
    sse_close(s);
}

static void test_sse_sends_keepalive_comments_while_idle(void **state)
{
    world *w = *state;
    char rest[64];
    sse *s;

    json_decref(subscribe(w->bridge, "{\"name\":\"quiet\",\"event_types\":[\"quiet.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/quiet/events");
    assert_true(sse_expect(s, ": keepalive", rest, sizeof(rest), KEEPALIVE_S * 1000 + 1500));
    sse_close(s);
}

static void test_sse_without_auto_ack_waits_for_rest_acks(void **state)
{
    world *w = *state;
    sse_event ev;
    char ids[2][256];
    sse *s;

    /* At most 2 unacked per subscriber: the third comes only after acks. */
    create_grpc(w, "credit", "credit.*", false, 2, 0);
    s = sse_open(w->bridge, "/api/v1/subscriptions/credit/events");
    assert_int_equal(s->status, 200);
    assert_true(stat_becomes(w->bridge, "credit", "active_subscribers", 1, 3000));
    for (int i = 0; i < 5; i++)
        publish(w->bridge, "credit.item", "{}");
    for (int i = 0; i < 2; i++) {
        assert_true(sse_event_next(s, &ev, 5000));
        snprintf(ids[i], sizeof(ids[i]), "%s", ev.id);
        json_decref(ev.data);
    }
    assert_false(sse_event_next(s, &ev, 700));
    assert_int_equal(sub_stat(w->bridge, "credit", "pending"), 2);
    settle(w->bridge, "credit", "ack", ids[0], NULL, "acked", 1);
    settle(w->bridge, "credit", "ack", ids[1], NULL, "acked", 1);
    for (int i = 0; i < 3; i++) {
        assert_true(sse_event_next(s, &ev, 5000));
        settle(w->bridge, "credit", "ack", ev.id, NULL, "acked", 1);
        json_decref(ev.data);
    }
    assert_int_equal(sub_stat(w->bridge, "credit", "pending"), 0);
    sse_close(s);
}

static void test_sse_client_disconnect_ends_the_subscribe_stream(void **state)
{
    world *w = *state;
    sse *s;

    json_decref(subscribe(w->bridge, "{\"name\":\"bye\",\"event_types\":[\"bye.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/bye/events");
    assert_true(stat_becomes(w->bridge, "bye", "active_subscribers", 1, 3000));
    sse_close(s);
    assert_true(stat_becomes(w->bridge, "bye", "active_subscribers", 0, 3000));
}

static void test_sse_of_an_unknown_subscription_is_404_json(void **state)
{
    world *w = *state;
    sse *s = sse_open(w->bridge, "/api/v1/subscriptions/ghost/events");

    assert_int_equal(s->status, 404);
    assert_non_null(strstr(s->raw, "\"code\":\"NOT_FOUND\""));
    sse_close(s);
}

static void test_sse_ends_with_an_error_event_when_the_subscription_is_deleted(void **state)
{
    world *w = *state;
    char rest[1024];
    json_t *j;
    sse *s;

    json_decref(subscribe(w->bridge, "{\"name\":\"doomed\",\"event_types\":[\"doomed.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/doomed/events");
    assert_true(stat_becomes(w->bridge, "doomed", "active_subscribers", 1, 3000));
    json_decref(http_json(w->bridge, "DELETE", "/api/v1/subscriptions/doomed", NULL, 200));
    assert_true(sse_expect(s, "event: error", rest, sizeof(rest), 5000));
    assert_true(sse_expect(s, "data: ", rest, sizeof(rest), 1000));
    j = json_loads(rest, 0, NULL);
    assert_string_equal(str(j, "code"), "NOT_FOUND");
    json_decref(j);
    /* Then the response ends (the terminating chunk). */
    while (sse_line(s, rest, sizeof(rest), 3000))
        ;
    assert_true(s->ended);
    sse_close(s);
}

/* ===================== across protocols ================================== */

static void test_publish_over_rest_is_received_over_grpc_subscribe(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__SubscribeRequest first = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__Delivery *d;
    tse_test_stream *st;
    char id[64];
    json_t *ev;

    json_decref(subscribe(w->bridge, "{\"name\":\"crossing\",\"event_types\":[\"crossing.*\"]}"));
    st = tse_test_stream_open(w->ch, SVC "Subscribe", 20000, NULL, NULL);
    first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    first.subscription_name = "crossing";
    assert_true(tse_test_stream_send(st, &first.base));
    assert_true(stat_becomes(w->bridge, "crossing", "active_subscribers", 1, 3000));
    snprintf(id, sizeof(id), "%s",
             publish(w->bridge, "crossing.rest", "{\"plate\":\"P-1\",\"wells\":96}"));
    d = (Tracseq__Events__V1__Delivery *)tse_test_stream_recv(
        st, &tracseq__events__v1__delivery__descriptor, 5000, NULL);
    assert_non_null(d);
    assert_string_equal(d->event->id, id);
    assert_string_equal(d->event->event_type, "crossing.rest");
    assert_string_equal(d->event->source_service, "rest-test");
    assert_string_equal(d->subscription, "crossing");
    ev = tse_pbjson_from_message(&d->event->base, 0);
    assert_string_equal(str(json_object_get(ev, "data"), "plate"), "P-1");
    json_decref(ev);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    tse_test_stream_cancel(st);
}

/* ===================== the event service restarts ======================== */

typedef struct restart_world {
    tse_test_redis *redis;
    proc *service;
    proc *bridge;
    int port;
    char addr[64];
} restart_world;

static int restart_up(void **state)
{
    restart_world *w = calloc(1, sizeof(*w));

    w->redis = tse_test_redis_start(false);
    assert_non_null(w->redis);
    w->port = tse_test_free_port();
    snprintf(w->addr, sizeof(w->addr), "127.0.0.1:%d", w->port);
    w->service = tse_test_service_start_on(w->redis, w->port, NULL);
    assert_non_null(w->service);
    w->bridge = bridge_start(w->addr);
    assert_non_null(w->bridge);
    *state = w;
    return 0;
}

static int restart_down(void **state)
{
    restart_world *w = *state;

    tse_test_service_stop(w->bridge);
    tse_test_service_stop(w->service);
    tse_test_redis_stop(w->redis);
    free(w);
    return 0;
}

/* GET /health: its status code, and "failing" when unhealthy. */
static int health(const proc *b, char *failing, size_t len)
{
    tse_test_http_resp r = http(b, "GET", "/health", NULL);
    json_t *j = tse_test_http_json(&r);
    int status = r.status;

    snprintf(failing, len, "%s",
             json_string_value(json_object_get(j, "failing"))
                 ? json_string_value(json_object_get(j, "failing"))
                 : "");
    json_decref(j);
    free(r.body);
    return status;
}

static void test_bridge_recovers_by_itself_when_the_service_restarts(void **state)
{
    restart_world *w = *state;
    char failing[64];
    long long deadline;
    int stopped;
    tse_test_http_resp r;
    sse *s;

    assert_int_equal(health(w->bridge, failing, sizeof(failing)), 200);
    json_decref(subscribe(w->bridge, "{\"name\":\"survivor\",\"event_types\":[\"surv.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/survivor/events");
    assert_int_equal(s->status, 200);

    /* Forgotten before the check: a failed check must not stop it twice. */
    stopped = tse_test_service_stop(w->service);
    w->service = NULL;
    assert_int_equal(stopped, 0);
    assert_int_equal(health(w->bridge, failing, sizeof(failing)), 503);
    assert_string_equal(failing, "event_service");
    r = http(w->bridge, "POST", "/api/v1/events/publish",
             "{\"event_type\":\"surv.x\",\"source_service\":\"t\",\"payload\":{}}");
    assert_int_equal(r.status, 503);
    assert_non_null(strcasestr(r.head, "\r\nRetry-After: 1"));
    free(r.body);
    /* The open event stream ends with an error event. */
    assert_true(sse_expect(s, "event: error", failing, sizeof(failing), 5000));
    sse_close(s);

    w->service = tse_test_service_start_on(w->redis, w->port, NULL);
    assert_non_null(w->service);
    deadline = tse_test_now_ms() + 10000;
    while (health(w->bridge, failing, sizeof(failing)) != 200 && tse_test_now_ms() < deadline)
        usleep(100000);
    assert_int_equal(health(w->bridge, failing, sizeof(failing)), 200);
    json_decref(http_json(w->bridge, "POST", "/api/v1/events/publish",
                          "{\"event_type\":\"surv.x\",\"source_service\":\"t\",\"payload\":{}}",
                          200));
    json_decref(pull(w->bridge, "survivor", "?wait_ms=0"));
}

static void test_stop_ends_open_streams_and_long_polls_cleanly(void **state)
{
    restart_world *w = *state;
    int poll_fd = tse_test_http_connect(w->bridge->port);
    long long start;
    int stopped;
    tse_test_http_resp r;
    sse *s;

    json_decref(subscribe(w->bridge, "{\"name\":\"closing\",\"event_types\":[\"closing.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/closing/events");
    send_request(poll_fd, "GET", "/api/v1/subscriptions/closing/events?wait_ms=30000", NULL, NULL);
    /* Let the long-poll reach the service first (slow under sanitizers). */
    usleep(1500000);
    start = tse_test_now_ms();
    /* Forgotten before the check: a failed check must not stop it twice. */
    stopped = tse_test_service_stop(w->bridge);
    w->bridge = NULL;
    assert_int_equal(stopped, 0);
    assert_true(tse_test_now_ms() - start < 5000);
    /* The long-poll got an answer (503: retry elsewhere), the stream ended. */
    assert_true(tse_test_http_read(poll_fd, &r));
    assert_int_equal(r.status, 503);
    free(r.body);
    close(poll_fd);
    sse_close(s);
}

static void test_non_uuid_correlation_header_without_body_id_is_422(void **state)
{
    world *w = *state;
    int fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_resp r;
    json_t *j;

    send_request(fd, "POST", "/api/v1/events/publish",
                 "X-Correlation-ID: trace-42\r\nConnection: close\r\n",
                 "{\"event_type\":\"corr.x\",\"source_service\":\"t\",\"payload\":{}}");
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    assert_int_equal(r.status, 422);
    j = tse_test_http_json(&r);
    assert_string_equal(str(json_array_get(json_object_get(j, "details"), 0), "field"),
                        "X-Correlation-ID");
    json_decref(j);
    free(r.body);
}

/* ===================== W3C Trace Context ================================ */

#define TRACE_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP       "00-" TRACE_ID "-00f067aa0ba902b7-01"
#define TS       "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"

/* POST path with body (content type ctype) and extra header lines. */
static tse_test_http_resp post_with(const proc *b, const char *path, const char *ctype,
                                    const char *headers, const char *body)
{
    int fd = tse_test_http_connect(b->port);
    char all[512];
    tse_test_http_resp r;

    snprintf(all, sizeof(all), "%sConnection: close\r\n", headers);
    tse_test_http_send(fd, "POST", path, ctype, all, body, strlen(body), false);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    return r;
}

static void test_trace_headers_reach_sse_pull_and_cloudevents_out(void **state)
{
    world *w = *state;
    tse_test_http_resp r;
    json_t *j, *ev, *ce;
    sse *s;
    sse_event sev;
    char comment[128];

    json_decref(subscribe(w->bridge, "{\"name\":\"trace-sse\",\"event_types\":[\"tracehdr.*\"]}"));
    json_decref(subscribe(w->bridge, "{\"name\":\"trace-pull\",\"event_types\":[\"tracehdr.*\"]}"));
    s = sse_open(w->bridge, "/api/v1/subscriptions/trace-sse/events");
    assert_int_equal(s->status, 200);
    assert_true(sse_expect(s, ": subscription ", comment, sizeof(comment), 3000));
    assert_true(stat_becomes(w->bridge, "trace-sse", "active_subscribers", 1, 3000));
    r = post_with(w->bridge, "/api/v1/events/publish", JSON,
                  "traceparent: " TP "\r\ntracestate: " TS "\r\n",
                  "{\"event_type\":\"tracehdr.one\",\"source_service\":\"t\",\"payload\":{}}");
    assert_int_equal(r.status, 200);
    free(r.body);
    /* SSE: the event as JSON carries the pair. */
    assert_true(sse_event_next(s, &sev, 5000));
    assert_string_equal(str(sev.data, "traceparent"), TP);
    assert_string_equal(str(sev.data, "tracestate"), TS);
    json_decref(sev.data);
    sse_close(s);
    /* Long-poll, JSON. */
    j = pull(w->bridge, "trace-pull", "?max=1&wait_ms=3000");
    ev = json_object_get(json_array_get(json_object_get(j, "events"), 0), "event");
    assert_string_equal(str(ev, "traceparent"), TP);
    assert_string_equal(str(ev, "tracestate"), TS);
    json_decref(j);
    /* CloudEvents out: the distributed-tracing extension's attributes. */
    r = post_with(w->bridge, "/api/v1/events/publish", JSON, "traceparent: " TP "\r\n",
                  "{\"event_type\":\"tracehdr.two\",\"source_service\":\"t\",\"payload\":{}}");
    assert_int_equal(r.status, 200);
    free(r.body);
    j = pull(w->bridge, "trace-pull", "?max=1&wait_ms=3000&format=cloudevents");
    ce = json_object_get(json_array_get(json_object_get(j, "events"), 0), "event");
    assert_string_equal(str(ce, "type"), "tracehdr.two");
    assert_string_equal(str(ce, "traceparent"), TP);
    assert_null(json_object_get(ce, "tracestate")); /* none: not an empty attribute */
    json_decref(j);
}

static void test_cloudevents_tracing_extension_in_is_kept(void **state)
{
    world *w = *state;
    tse_test_http_resp r;
    json_t *j, *ce;

    json_decref(subscribe(w->bridge, "{\"name\":\"trace-ce\",\"event_types\":[\"tracece.*\"]}"));
    /* The event's own attributes win over the request's header. */
    r = post_with(w->bridge, "/api/v1/events/publish", "application/cloudevents+json",
                  "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n",
                  "{\"specversion\":\"1.0\",\"id\":\"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b\","
                  "\"type\":\"tracece.job\",\"source\":\"lims\",\"traceparent\":\"" TP "\","
                  "\"tracestate\":\"" TS "\",\"data\":{\"n\":1}}");
    assert_int_equal(r.status, 200);
    free(r.body);
    j = pull(w->bridge, "trace-ce", "?max=1&wait_ms=3000&format=cloudevents");
    ce = json_object_get(json_array_get(json_object_get(j, "events"), 0), "event");
    assert_string_equal(str(ce, "traceparent"), TP);
    assert_string_equal(str(ce, "tracestate"), TS);
    json_decref(j);
    /* A bad attribute is refused naming it, in the client's words. */
    r = post_with(w->bridge, "/api/v1/events/publish", "application/cloudevents+json", "",
                  "{\"specversion\":\"1.0\",\"id\":\"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4c\","
                  "\"type\":\"tracece.job\",\"source\":\"lims\",\"traceparent\":\"00-1-2-3\","
                  "\"data\":{}}");
    assert_int_equal(r.status, 422);
    j = tse_test_http_json(&r);
    assert_string_equal(str(json_array_get(json_object_get(j, "details"), 0), "field"),
                        "traceparent");
    json_decref(j);
    free(r.body);
}

static void test_bad_trace_headers_are_422_naming_them_and_nothing_is_stored(void **state)
{
    world *w = *state;
    static const struct {
        const char *headers, *field;
    } bad[] = {
        {"traceparent: 00-" TRACE_ID "-00f067aa0ba902b7\r\n", "traceparent"},
        {"traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n", "traceparent"},
        {"tracestate: a=1\r\n", "tracestate"},
        {"traceparent: " TP "\r\ntracestate: A=1\r\n", "tracestate"},
    };
    tse_test_http_resp r;
    json_t *j;

    json_decref(subscribe(w->bridge, "{\"name\":\"trace-bad\",\"event_types\":[\"tracebad.*\"]}"));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = post_with(w->bridge, "/api/v1/events/publish", JSON, bad[i].headers,
                      "{\"event_type\":\"tracebad.x\",\"source_service\":\"t\",\"payload\":{}}");
        assert_int_equal(r.status, 422);
        j = tse_test_http_json(&r);
        assert_string_equal(str(json_array_get(json_object_get(j, "details"), 0), "field"),
                            bad[i].field);
        json_decref(j);
        free(r.body);
    }
    /* A batch: each event is answered 422 naming the header. */
    r = post_with(w->bridge, "/api/v1/events/batch", JSON, bad[0].headers,
                  "{\"events\":[{\"event_type\":\"tracebad.x\",\"source_service\":\"t\","
                  "\"payload\":{}}]}");
    assert_true(r.status == 200 || r.status == 207 || r.status == 422);
    assert_non_null(strstr(r.body, "\"traceparent\""));
    free(r.body);
    /* Then a good one: it is the only event the subscription ever gets. */
    r = post_with(w->bridge, "/api/v1/events/publish", JSON, "traceparent: " TP "\r\n",
                  "{\"event_type\":\"tracebad.ok\",\"source_service\":\"t\",\"payload\":{}}");
    assert_int_equal(r.status, 200);
    free(r.body);
    j = pull(w->bridge, "trace-bad", "?max=10&wait_ms=2000");
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1);
    assert_string_equal(
        str(json_object_get(json_array_get(json_object_get(j, "events"), 0), "event"),
            "event_type"),
        "tracebad.ok");
    json_decref(j);
}

/* 1000 connections need descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(void)
{
    const struct CMUnitTest subs[] = {
        cmocka_unit_test(test_subscribe_with_an_empty_body_uses_the_documented_defaults),
        cmocka_unit_test(test_subscribe_takes_the_original_eight_fields_and_is_idempotent),
        cmocka_unit_test(test_subscribe_with_other_settings_is_409_json),
        cmocka_unit_test(test_subscribe_input_errors_are_422_naming_the_field),
        cmocka_unit_test(test_pull_of_an_auto_ack_subscription_acks_what_it_answers),
        cmocka_unit_test(test_pull_reads_events_back_as_cloudevents),
        cmocka_unit_test(test_pull_ack_and_redelivery_after_nack_delay),
        cmocka_unit_test(test_long_poll_answers_when_an_event_arrives),
        cmocka_unit_test(test_idle_long_polls_do_not_hold_the_worker),
        cmocka_unit_test(test_a_long_poll_whose_client_hangs_up_takes_no_event),
        cmocka_unit_test(test_pull_errors_are_json),
        cmocka_unit_test(test_list_get_and_delete_subscriptions),
        cmocka_unit_test(test_get_counts_dead_letters),
        cmocka_unit_test(test_sse_delivers_an_event_published_over_grpc),
        cmocka_unit_test(test_sse_sends_keepalive_comments_while_idle),
        cmocka_unit_test(test_sse_without_auto_ack_waits_for_rest_acks),
        cmocka_unit_test(test_sse_client_disconnect_ends_the_subscribe_stream),
        cmocka_unit_test(test_sse_of_an_unknown_subscription_is_404_json),
        cmocka_unit_test(test_sse_ends_with_an_error_event_when_the_subscription_is_deleted),
        cmocka_unit_test(test_publish_over_rest_is_received_over_grpc_subscribe),
        cmocka_unit_test(test_non_uuid_correlation_header_without_body_id_is_422),
        cmocka_unit_test(test_trace_headers_reach_sse_pull_and_cloudevents_out),
        cmocka_unit_test(test_cloudevents_tracing_extension_in_is_kept),
        cmocka_unit_test(test_bad_trace_headers_are_422_naming_them_and_nothing_is_stored),
    };
    const struct CMUnitTest restart[] = {
        cmocka_unit_test(test_bridge_recovers_by_itself_when_the_service_restarts),
        cmocka_unit_test(test_stop_ends_open_streams_and_long_polls_cleanly),
    };
    int failed;

    raise_fd_limit();
    failed = cmocka_run_group_tests(subs, world_up, world_down);

    return failed + cmocka_run_group_tests(restart, restart_up, restart_down);
}
