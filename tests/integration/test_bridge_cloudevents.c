/*
 * test_bridge_cloudevents.c - CloudEvents 1.0 through the REST bridge end to
 * end: a real redis-server, the real event service and the real
 * tracseq-rest-bridge, spoken to over raw HTTP/1.1 on loopback. Events go
 * in structured mode (application/cloudevents+json), batch mode and HTTP
 * binary mode (ce-* headers), and over gRPC in the protobuf format
 * (EventService.PublishCloudEvent); they come back out of a subscription in
 * the JSON format and in binary mode, and every CloudEvent the bridge writes is
 * checked against the spec's JSON schema (tests/cloudevents/check_schema.py,
 * Debian's python3-jsonschema).
 *
 * The bridge binary is found beside the service's:
 * <dir of $TSE_SERVICE_BIN>/rest-bridge/tracseq-rest-bridge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grpc_client.h"
#include "harness.h"
#include "http_client.h"
#include "tracseq/events/v1/service.pb-c.h"

#define CE      "application/cloudevents+json"
#define CEBATCH "application/cloudevents-batch+json"
#define JSON    "application/json"
#define PUBLISH "/api/v1/events/publish"

typedef struct world {
    tse_test_redis *redis;
    tse_test_service *service;
    tse_test_service *bridge;
} world;

/* ===================== HTTP ============================================== */

static tse_test_http_resp http(const world *w, const char *method, const char *path,
                               const char *ctype, const char *headers, const char *body, size_t len)
{
    int fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_resp r;

    tse_test_http_send(fd, method, path, ctype, headers, body, len, true);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    return r;
}

/* A response header's value into buf; NULL when absent. */
static const char *header(const tse_test_http_resp *r, const char *name, char *buf, size_t len)
{
    char key[128];
    const char *p;

    snprintf(key, sizeof(key), "\r\n%s:", name);
    if ((p = strcasestr(r->head, key)) == NULL)
        return NULL;
    p += strlen(key);
    while (*p == ' ')
        p++;
    snprintf(buf, len, "%.*s", (int)strcspn(p, "\r"), p);
    return buf;
}

/* A publish that must succeed; returns its answer. */
static json_t *publish_ok(const world *w, const char *ctype, const char *headers, const char *body,
                          size_t len)
{
    tse_test_http_resp r = http(w, "POST", PUBLISH, ctype, headers, body, len);
    json_t *j;

    if (r.status != 200)
        fail_msg("publish: status %d: %s", r.status, r.body);
    j = tse_test_http_json(&r);
    free(r.body);
    return j;
}

/* A publish that must be refused 400 INVALID_CLOUDEVENT naming field. */
static void publish_refused(const world *w, const char *ctype, const char *headers,
                            const char *body, const char *field)
{
    tse_test_http_resp r = http(w, "POST", PUBLISH, ctype, headers, body, strlen(body));
    json_t *j;

    if (r.status != 400)
        fail_msg("want 400 naming %s, got %d: %s", field, r.status, r.body);
    j = tse_test_http_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "INVALID_CLOUDEVENT");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(j, "details"), 0), "field")),
                        field);
    json_decref(j);
    free(r.body);
}

static void subscribe(const world *w, const char *name, const char *pattern)
{
    char body[256];
    tse_test_http_resp r;

    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"event_types\":[\"%s\"]}", name, pattern);
    r = http(w, "POST", "/api/v1/events/subscribe", JSON, NULL, body, strlen(body));
    if (r.status != 200 && r.status != 201)
        fail_msg("subscribe %s: %d %s", name, r.status, r.body);
    free(r.body);
}

/* GET the subscription's events with query; the answer (status 200). */
static tse_test_http_resp pull(const world *w, const char *sub, const char *query)
{
    char path[256];
    tse_test_http_resp r;

    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/events%s", sub, query);
    r = http(w, "GET", path, NULL, NULL, NULL, 0);
    return r;
}

/* The CloudEvents (JSON format) of up to n events; a new array. */
static json_t *pull_cloudevents(const world *w, const char *sub, size_t n)
{
    char q[64];
    tse_test_http_resp r;
    json_t *j, *out = json_array(), *d;
    size_t i;

    snprintf(q, sizeof(q), "?max=%zu&wait_ms=3000&format=cloudevents", n);
    r = pull(w, sub, q);
    assert_int_equal(r.status, 200);
    j = tse_test_http_json(&r);
    json_array_foreach(json_object_get(j, "events"), i, d)
        json_array_append(out, json_object_get(d, "event"));
    json_decref(j);
    free(r.body);
    return out;
}

/* Finds the event whose attribute name is value in an array of CloudEvents. */
static json_t *find(json_t *events, const char *name, const char *value)
{
    size_t i;
    json_t *e;

    json_array_foreach(
        events, i, e) if (json_is_string(json_object_get(e, name)) &&
                          strcmp(json_string_value(json_object_get(e, name)), value) == 0) return e;
    fail_msg("no event with %s = %s", name, value);
    return NULL;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    if (s == NULL)
        fail_msg("no string %s", key);
    return s;
}

/* ===================== the spec's JSON schema ============================ */

/* Every CloudEvent in events validates against the CloudEvents 1.0 JSON
 * schema (python3-jsonschema, formats checked). */
static void assert_schema_valid(const json_t *events)
{
    char path[] = "/tmp/tse-cloudevents-XXXXXX", cmd[1024];
    int fd = mkstemp(path), rc;
    FILE *f;

    assert_true(fd >= 0);
    assert_non_null(f = fdopen(fd, "w"));
    assert_int_equal(json_dumpf(events, f, JSON_COMPACT), 0);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/cloudevents/check_schema.py %s",
             getenv("TSE_SOURCE_DIR"), path);
    rc = system(cmd);
    unlink(path);
    if (tse_test_exit_code(rc) != 0)
        fail_msg("CloudEvents out of the bridge do not match the spec's schema (above)");
}

/* ===================== worlds ============================================ */

static int world_up(void **state)
{
    world *w = calloc(1, sizeof(*w));

    w->redis = tse_test_redis_start(false);
    assert_non_null(w->redis);
    w->service = tse_test_service_start(w->redis, NULL);
    assert_non_null(w->service);
    w->bridge =
        tse_test_bridge_start(w->service->addr, (const char *const[]){"--rpc-timeout=3s", NULL});
    assert_non_null(w->bridge);
    tse_test_http_await_healthy(w->bridge->port, 30000);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    world *w = *state;

    assert_int_equal(tse_test_service_stop(w->bridge), 0);
    tse_test_service_stop(w->service);
    tse_test_redis_stop(w->redis);
    free(w);
    return 0;
}

/* ===================== structured mode =================================== */

/* Every attribute sent comes back as it was: id (not a UUID), source (a
 * URI), time, subject, dataschema, datacontenttype, extensions. */
static void test_structured_mode_keeps_and_returns_every_attribute(void **state)
{
    world *w = *state;
    const char *body =
        "{\"specversion\":\"1.0\",\"id\":\"order-17/a\",\"type\":\"cer.kept\","
        "\"source\":\"https://lab.example/lims?x=1\",\"time\":\"2024-06-18T10:00:00.5+02:00\","
        "\"subject\":\"sample-9\",\"dataschema\":\"https://lab.example/schemas/kept.json\","
        "\"datacontenttype\":\"application/json\",\"labname\":\"north\",\"attempt\":4,"
        "\"urgent\":true,\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-"
        "b7ad6b7169203331-01\",\"priority\":2,\"data\":{\"k\":[1,2]}}";
    json_t *ans, *evs, *e;

    subscribe(w, "cer_kept", "cer.kept");
    ans = publish_ok(w, CE, NULL, body, strlen(body));
    /* A non-UUID id becomes a UUID event id (v5 of source and id). */
    assert_int_equal(strlen(str(ans, "event_id")), 36);
    assert_int_equal(str(ans, "event_id")[14], '5');
    json_decref(ans);

    evs = pull_cloudevents(w, "cer_kept", 10);
    assert_int_equal(json_array_size(evs), 1);
    e = json_array_get(evs, 0);
    assert_string_equal(str(e, "specversion"), "1.0");
    assert_string_equal(str(e, "id"), "order-17/a");
    assert_string_equal(str(e, "source"), "https://lab.example/lims?x=1");
    assert_string_equal(str(e, "type"), "cer.kept");
    assert_string_equal(str(e, "time"), "2024-06-18T10:00:00.5+02:00");
    assert_string_equal(str(e, "subject"), "sample-9");
    assert_string_equal(str(e, "dataschema"), "https://lab.example/schemas/kept.json");
    assert_string_equal(str(e, "datacontenttype"), "application/json");
    assert_string_equal(str(e, "labname"), "north");
    assert_string_equal(str(e, "attempt"), "4"); /* extensions: canonical string form */
    assert_string_equal(str(e, "urgent"), "true");
    assert_string_equal(str(e, "traceparent"),
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_int_equal(json_integer_value(json_object_get(e, "priority")), 2);
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(json_object_get(e, "data"), "k"), 1)), 2);
    assert_null(json_object_get(e, "data_base64"));
    assert_schema_valid(evs);
    json_decref(evs);
}

/* id is unique per source: the same id from one source is a duplicate
 * (same event id), from another source a different event. */
static void test_an_id_is_deduplicated_per_source(void **state)
{
    world *w = *state;
    const char *a = "{\"specversion\":\"1.0\",\"id\":\"42\",\"type\":\"cer.dedup\","
                    "\"source\":\"/robots/1\",\"data\":{}}";
    const char *b = "{\"specversion\":\"1.0\",\"id\":\"42\",\"type\":\"cer.dedup\","
                    "\"source\":\"/robots/2\",\"data\":{}}";
    json_t *r1 = publish_ok(w, CE, NULL, a, strlen(a));
    json_t *r2 = publish_ok(w, CE, NULL, a, strlen(a));
    json_t *r3 = publish_ok(w, CE, NULL, b, strlen(b));

    assert_string_equal(str(r1, "event_id"), str(r2, "event_id"));
    assert_true(json_is_false(json_object_get(r1, "duplicate")));
    assert_true(json_is_true(json_object_get(r2, "duplicate")));
    assert_string_not_equal(str(r1, "event_id"), str(r3, "event_id"));
    assert_true(json_is_false(json_object_get(r3, "duplicate")));
    json_decref(r1);
    json_decref(r2);
    json_decref(r3);
}

/* data_base64 in, data_base64 out; a non-object data and no data at all
 * come back as they were; a batch of CloudEvents too. */
static void test_data_forms_come_back_as_sent(void **state)
{
    world *w = *state;
    const char *b64 = "{\"specversion\":\"1.0\",\"id\":\"b64\",\"type\":\"cer.data\","
                      "\"source\":\"s\",\"datacontenttype\":\"image/png\","
                      "\"data_base64\":\"iVBORw0KGgo=\"}";
    const char *batch = "[{\"specversion\":\"1.0\",\"id\":\"arr\",\"type\":\"cer.data\","
                        "\"source\":\"s\",\"data\":[1,\"two\"]},"
                        "{\"specversion\":\"1.0\",\"id\":\"none\",\"type\":\"cer.data\","
                        "\"source\":\"s\"},"
                        "{\"specversion\":\"1.0\",\"id\":\"txt\",\"type\":\"cer.data\","
                        "\"source\":\"s\",\"datacontenttype\":\"text/plain\",\"data\":\"hi\"}]";
    tse_test_http_resp r;
    json_t *evs, *e;

    subscribe(w, "cer_data", "cer.data");
    json_decref(publish_ok(w, CE, NULL, b64, strlen(b64)));
    r = http(w, "POST", "/api/v1/events/batch", CEBATCH, NULL, batch, strlen(batch));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"published\":3"));
    free(r.body);

    evs = pull_cloudevents(w, "cer_data", 10);
    assert_int_equal(json_array_size(evs), 4);
    e = find(evs, "id", "b64");
    assert_string_equal(str(e, "data_base64"), "iVBORw0KGgo=");
    assert_string_equal(str(e, "datacontenttype"), "image/png");
    assert_null(json_object_get(e, "data"));
    e = find(evs, "id", "arr");
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "data"), 1)), "two");
    e = find(evs, "id", "none");
    assert_null(json_object_get(e, "data"));
    assert_null(json_object_get(e, "data_base64"));
    e = find(evs, "id", "txt");
    assert_string_equal(str(e, "data"), "hi");
    assert_string_equal(str(e, "datacontenttype"), "text/plain");
    assert_schema_valid(evs);
    json_decref(evs);
}

/* ===================== binary mode ======================================= */

/* Binary mode in: ce-* headers and the body as data, of any media type. */
static void test_binary_mode_publishes_headers_and_body(void **state)
{
    world *w = *state;
    static const char bytes[] = {0, 1, (char)0xff, 'a', 'b', 'c'};
    const char *h_bin = "ce-specversion: 1.0\r\nce-id: bin-1\r\nce-type: cer.binary\r\n"
                        "ce-source: /robots/7\r\nCE-Note: caf%C3%A9 %22q%22\r\n"
                        "ce-time: 2024-06-18T10:00:00Z\r\n";
    const char *h_json = "ce-specversion: 1.0\r\nce-id: bin-2\r\nce-type: cer.binary\r\n"
                         "ce-source: /robots/7\r\nce-priority: 1\r\n";
    const char *h_text = "ce-specversion: 1.0\r\nce-id: bin-3\r\nce-type: cer.binary\r\n"
                         "ce-source: /robots/7\r\nce-subject: s%201\r\n";
    json_t *evs, *e;

    subscribe(w, "cer_bin", "cer.binary");
    json_decref(publish_ok(w, "application/octet-stream", h_bin, bytes, sizeof(bytes)));
    json_decref(publish_ok(w, "application/json", h_json, "{\"n\":5}", 7));
    json_decref(publish_ok(w, "text/plain; charset=utf-8", h_text, "hello", 5));

    evs = pull_cloudevents(w, "cer_bin", 10);
    assert_int_equal(json_array_size(evs), 3);
    e = find(evs, "id", "bin-1");
    assert_string_equal(str(e, "data_base64"), "AAH/YWJj");
    assert_string_equal(str(e, "datacontenttype"), "application/octet-stream");
    assert_string_equal(str(e, "note"), "caf\xc3\xa9 \"q\"");
    assert_string_equal(str(e, "time"), "2024-06-18T10:00:00Z");
    e = find(evs, "id", "bin-2");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "data"), "n")), 5);
    assert_int_equal(json_integer_value(json_object_get(e, "priority")), 1);
    e = find(evs, "id", "bin-3");
    assert_string_equal(str(e, "data"), "hello");
    assert_string_equal(str(e, "subject"), "s 1");
    assert_schema_valid(evs);
    json_decref(evs);
}

/* Binary mode out: ?format=cloudevents-binary answers one delivery as
 * ce-* headers, Content-Type and the data as the body; 204 when none. */
static void test_pull_in_binary_mode(void **state)
{
    world *w = *state;
    static const char bytes[] = {0, 1, (char)0xff, 'a', 'b', 'c'};
    const char *h = "ce-specversion: 1.0\r\nce-id: out 1\r\nce-type: cer.out\r\n"
                    "ce-source: /robots/7\r\nce-note: caf%C3%A9\r\n";
    tse_test_http_resp r;
    char v[256];

    subscribe(w, "cer_out", "cer.out");
    json_decref(publish_ok(w, "application/octet-stream", h, bytes, sizeof(bytes)));
    r = pull(w, "cer_out", "?wait_ms=3000&format=cloudevents-binary");
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "ce-specversion", v, sizeof(v)), "1.0");
    assert_string_equal(header(&r, "ce-id", v, sizeof(v)), "out%201");
    assert_string_equal(header(&r, "ce-type", v, sizeof(v)), "cer.out");
    assert_string_equal(header(&r, "ce-source", v, sizeof(v)), "/robots/7");
    assert_string_equal(header(&r, "ce-note", v, sizeof(v)), "caf%C3%A9");
    assert_non_null(header(&r, "ce-time", v, sizeof(v)));
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "application/octet-stream");
    assert_non_null(header(&r, "X-Ack-Id", v, sizeof(v)));
    assert_string_equal(header(&r, "X-Delivery-Attempt", v, sizeof(v)), "1");
    assert_null(header(&r, "ce-data", v, sizeof(v)));
    assert_int_equal(r.body_len, sizeof(bytes));
    assert_memory_equal(r.body, bytes, sizeof(bytes));
    free(r.body);

    /* A structured-mode JSON event reads back as its JSON body. */
    json_decref(publish_ok(w, CE, NULL,
                           "{\"specversion\":\"1.0\",\"id\":\"out2\",\"type\":\"cer.out\","
                           "\"source\":\"s\",\"data\":{\"a\":\"b\"}}",
                           strlen("{\"specversion\":\"1.0\",\"id\":\"out2\",\"type\":\"cer.out\","
                                  "\"source\":\"s\",\"data\":{\"a\":\"b\"}}")));
    r = pull(w, "cer_out", "?wait_ms=3000&format=cloudevents-binary");
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "ce-id", v, sizeof(v)), "out2");
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "application/json");
    assert_string_equal(r.body, "{\"a\":\"b\"}");
    free(r.body);

    r = pull(w, "cer_out", "?wait_ms=0&format=cloudevents-binary");
    assert_int_equal(r.status, 204);
    free(r.body);
    r = pull(w, "cer_out", "?format=xml");
    assert_int_equal(r.status, 422);
    free(r.body);
}

/* ===================== refusals ========================================== */

/* Bad CloudEvents are 400 naming the attribute and publish nothing. */
static void test_bad_cloudevents_are_400_naming_the_attribute(void **state)
{
    world *w = *state;
    static const struct {
        const char *body, *field;
    } structured[] = {
        {"{\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\"}", "specversion"},
        {"{\"specversion\":\"0.3\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\"}",
         "specversion"},
        {"{\"specversion\":\"1.0\",\"type\":\"cer.bad\",\"source\":\"s\"}", "id"},
        {"{\"specversion\":\"1.0\",\"id\":\"\",\"type\":\"cer.bad\",\"source\":\"s\"}", "id"},
        {"{\"specversion\":\"1.0\",\"id\":7,\"type\":\"cer.bad\",\"source\":\"s\"}", "id"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\"}", "source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"a b\"}",
         "source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":"
         "\"https://lab.example/a-very-long-source-path-that-goes-beyond-64-chars\"}",
         "source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\"}", "type"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"time\":\"yesterday\"}",
         "time"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"dataschema\":\"no scheme\"}",
         "dataschema"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"Lab_Name\":\"x\"}",
         "Lab_Name"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"abcdefghijklmnopqrstu\":\"x\"}",
         "abcdefghijklmnopqrstu"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"lab\":{\"a\":1}}",
         "lab"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"data\":{},\"data_base64\":\"AA==\"}",
         "data_base64"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"cer.bad\",\"source\":\"s\","
         "\"data_base64\":\"not base64!\"}",
         "data_base64"},
    };
    static const struct {
        const char *ctype, *headers, *body, *field;
    } binary[] = {
        {"text/plain", "ce-specversion: 1.0\r\nce-type: cer.bad\r\nce-source: s\r\n", "x", "id"},
        {"text/plain", "ce-specversion: 1.0\r\nce-id: 1\r\nce-source: s\r\n", "x", "type"},
        {"text/plain", "ce-specversion: 2.0\r\nce-id: 1\r\nce-type: cer.bad\r\nce-source: s\r\n",
         "x", "specversion"},
        {"text/plain",
         "ce-specversion: 1.0\r\nce-id: 1\r\nce-type: cer.bad\r\nce-source: s\r\nce-note: %zz\r\n",
         "x", "note"},
        {"text/plain",
         "ce-specversion: 1.0\r\nce-id: 1\r\nce-type: cer.bad\r\nce-source: s\r\nce-note: %FF\r\n",
         "x", "note"},
        {"text/plain",
         "ce-specversion: 1.0\r\nce-id: 1\r\nce-type: cer.bad\r\nce-source: s\r\nce-a_b: 1\r\n",
         "x", "a_b"},
        {"text/plain",
         "ce-specversion: 1.0\r\nce-id: 1\r\nce-type: cer.bad\r\nce-source: s\r\n"
         "ce-datacontenttype: text/plain\r\n",
         "x", "datacontenttype"},
        {"text/plain",
         "ce-specversion: 1.0\r\nce-id: 1\r\nce-id: 2\r\nce-type: cer.bad\r\nce-source: s\r\n", "x",
         "id"},
        {"application/json",
         "ce-specversion: 1.0\r\nce-id: 1\r\nce-type: cer.bad\r\nce-source: s\r\n", "{oops",
         "data"},
    };
    tse_test_http_resp r;

    subscribe(w, "cer_bad", "cer.bad");
    for (size_t i = 0; i < sizeof(structured) / sizeof(structured[0]); i++)
        publish_refused(w, CE, NULL, structured[i].body, structured[i].field);
    for (size_t i = 0; i < sizeof(binary) / sizeof(binary[0]); i++)
        publish_refused(w, binary[i].ctype, binary[i].headers, binary[i].body, binary[i].field);
    /* Our domain's rules stay the service's: 422 naming the attribute. */
    r = http(w, "POST", PUBLISH, CE, NULL,
             "{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"NotAType\",\"source\":\"s\"}",
             strlen("{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"NotAType\",\"source\":"
                    "\"s\"}"));
    assert_int_equal(r.status, 422);
    assert_non_null(strstr(r.body, "\"field\":\"type\""));
    free(r.body);
    /* Nothing was published. */
    r = pull(w, "cer_bad", "?wait_ms=200");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"events\":[]"));
    free(r.body);
}

/* ===================== the protobuf format over gRPC ===================== */

typedef Io__Cloudevents__V1__CloudEvent CloudEvent;
typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue CeValue;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry CeEntry;

/* PublishCloudEvent of ce; the status, *resp when OK (caller frees). */
static grpc_status_code publish_proto(const world *w, CloudEvent *ce,
                                      Tracseq__Events__V1__PublishResponse **resp,
                                      tse_test_status *st)
{
    Tracseq__Events__V1__PublishCloudEventRequest req =
        TRACSEQ__EVENTS__V1__PUBLISH_CLOUD_EVENT_REQUEST__INIT;
    tse_client *ch = tse_test_channel(w->service->addr);
    grpc_status_code code;

    req.event = ce;
    *resp = NULL;
    code = tse_test_unary(ch, "/tracseq.events.v1.EventService/PublishCloudEvent", &req.base,
                          &tracseq__events__v1__publish_response__descriptor,
                          (ProtobufCMessage **)resp, st, 10000, NULL, NULL);
    tse_test_channel_destroy(ch);
    return code;
}

/* A CloudEvent in the protobuf format with a string, an integer, a
 * timestamp and a bytes attribute, read back through the bridge in the
 * JSON format; the same (source, id) again is a duplicate. */
static void test_grpc_publishes_the_protobuf_format(void **state)
{
    world *w = *state;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    CloudEvent ce;
    CeValue v[4];
    CeEntry e[4], *entries[4] = {&e[0], &e[1], &e[2], &e[3]};
    Tracseq__Events__V1__PublishResponse *r1, *r2;
    tse_test_status st;
    json_t *evs, *ev;

    io__cloudevents__v1__cloud_event__init(&ce);
    for (int i = 0; i < 4; i++) {
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&v[i]);
        io__cloudevents__v1__cloud_event__attributes_entry__init(&e[i]);
        e[i].value = &v[i];
    }
    subscribe(w, "cer_grpc", "cer.grpc");
    ce.id = "grpc-1";
    ce.source = "urn:lab:robot:7";
    ce.spec_version = "1.0";
    ce.type = "cer.grpc";
    e[0].key = "subject";
    v[0].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    v[0].ce_string = "plate-3";
    e[1].key = "attempt";
    v[1].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    v[1].ce_integer = 4;
    e[2].key = "time";
    v[2].attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    ts.seconds = 1718704800; /* 2024-06-18T10:00:00Z */
    v[2].ce_timestamp = &ts;
    e[3].key = "datacontenttype";
    v[3].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    v[3].ce_string = "application/json";
    ce.n_attributes = 4;
    ce.attributes = entries;
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
    ce.text_data = "{\"wells\":96}";

    if (publish_proto(w, &ce, &r1, &st) != GRPC_STATUS_OK)
        fail_msg("PublishCloudEvent: %d %s", st.code, st.details);
    assert_int_equal(publish_proto(w, &ce, &r2, &st), GRPC_STATUS_OK);
    assert_string_equal(r1->event_id, r2->event_id);
    assert_false(r1->duplicate);
    assert_true(r2->duplicate);
    protobuf_c_message_free_unpacked(&r1->base, NULL);
    protobuf_c_message_free_unpacked(&r2->base, NULL);

    /* Bytes data comes back as data_base64. */
    ce.id = "grpc-2";
    ce.n_attributes = 1;
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    ce.binary_data.data = (uint8_t *)"\x00\x01\xff";
    ce.binary_data.len = 3;
    assert_int_equal(publish_proto(w, &ce, &r1, &st), GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(&r1->base, NULL);

    evs = pull_cloudevents(w, "cer_grpc", 10);
    assert_int_equal(json_array_size(evs), 2);
    ev = find(evs, "id", "grpc-1");
    assert_string_equal(str(ev, "source"), "urn:lab:robot:7");
    assert_string_equal(str(ev, "subject"), "plate-3");
    assert_string_equal(str(ev, "attempt"), "4");
    assert_string_equal(str(ev, "time"), "2024-06-18T10:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "data"), "wells")), 96);
    ev = find(evs, "id", "grpc-2");
    assert_string_equal(str(ev, "data_base64"), "AAH/");
    assert_schema_valid(evs);
    json_decref(evs);
}

/* Over gRPC a bad CloudEvent is INVALID_ARGUMENT naming event.<attribute>,
 * and nothing is stored. */
static void test_grpc_refuses_bad_cloudevents_naming_the_attribute(void **state)
{
    world *w = *state;
    static const struct {
        const char *spec, *id, *source, *type, *field;
        int data;
    } cases[] = {
        {"0.3", "1", "s", "cer.gbad", "event.specversion", 0},
        {"1.0", "", "s", "cer.gbad", "event.id", 0},
        {"1.0", "1", "", "cer.gbad", "event.source", 0},
        {"1.0", "1", "a b", "cer.gbad", "event.source", 0},
        {"1.0", "1", "s", "", "event.type", 0},
        {"1.0", "1", "s", "cer.gbad", "event.proto_data", 1},
        {"1.0", "1", "s", "cer.gbad", "event.text_data", 2},
    };
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Tracseq__Events__V1__PublishResponse *r;
    tse_test_status st;
    CeValue v;
    CeEntry e, *entries[] = {&e};
    CloudEvent ce;
    tse_test_http_resp h;

    subscribe(w, "cer_gbad", "cer.gbad");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        io__cloudevents__v1__cloud_event__init(&ce);
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&v);
        io__cloudevents__v1__cloud_event__attributes_entry__init(&e);
        ce.spec_version = (char *)cases[i].spec;
        ce.id = (char *)cases[i].id;
        ce.source = (char *)cases[i].source;
        ce.type = (char *)cases[i].type;
        if (cases[i].data == 1) {
            ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA;
            any.type_url = "type.googleapis.com/x.Y";
            ce.proto_data = &any;
        } else if (cases[i].data == 2) {
            e.key = "datacontenttype";
            e.value = &v;
            v.attr_case =
                IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
            v.ce_string = "application/json";
            ce.n_attributes = 1;
            ce.attributes = entries;
            ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
            ce.text_data = "{not json";
        }
        assert_int_equal(publish_proto(w, &ce, &r, &st), GRPC_STATUS_INVALID_ARGUMENT);
        if (strncmp(st.details, cases[i].field, strlen(cases[i].field)) != 0)
            fail_msg("case %zu: '%s' does not name %s", i, st.details, cases[i].field);
    }
    h = pull(w, "cer_gbad", "?wait_ms=200");
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(h.body, "\"events\":[]"));
    free(h.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structured_mode_keeps_and_returns_every_attribute),
        cmocka_unit_test(test_an_id_is_deduplicated_per_source),
        cmocka_unit_test(test_data_forms_come_back_as_sent),
        cmocka_unit_test(test_binary_mode_publishes_headers_and_body),
        cmocka_unit_test(test_pull_in_binary_mode),
        cmocka_unit_test(test_bad_cloudevents_are_400_naming_the_attribute),
        cmocka_unit_test(test_grpc_publishes_the_protobuf_format),
        cmocka_unit_test(test_grpc_refuses_bad_cloudevents_naming_the_attribute),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
