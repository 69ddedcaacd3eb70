/*
 * test_bridge_rest.c - the REST bridge end to end: a real redis-server, the
 * real event service and the real tracseq-rest-bridge binary, spoken to
 * over raw HTTP/1.1 on loopback (and with the curl CLI for the original
 * document's Quick Start, run verbatim but for the port).
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "wait.h"

#define UUID_A "7d0f4a0e-3c55-4a63-9d0e-2b1f6f1b9a01"
#define UUID_B "0b8e7c1a-9f3d-4e5b-8a6c-1d2e3f4a5b6c"

/* One request on a fresh connection; headers: extra "K: v\r\n" lines. */
static tse_test_http_resp http(const tse_test_service *b, const char *method, const char *path,
                               const char *ctype, const char *headers, const char *body)
{
    int fd = tse_test_http_connect(b->port);
    tse_test_http_resp r;

    tse_test_http_send(fd, method, path, ctype, headers, body, body ? strlen(body) : 0, true);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    return r;
}

static const char *header(tse_test_http_resp *r, const char *name, char *buf, size_t len)
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

static void http_free(tse_test_http_resp *r)
{
    free(r->body);
}

/* Asserts an error answer: status, JSON {"error","code"} and the detail field. */
static void assert_error(tse_test_http_resp *r, int status, const char *code, const char *field)
{
    json_t *j;

    if (r->status != status)
        fail_msg("status %d, want %d: %s", r->status, status, r->body);
    j = tse_test_http_json(r);
    assert_true(json_is_string(json_object_get(j, "error")));
    assert_string_equal(json_string_value(json_object_get(j, "code")), code);
    if (field != NULL)
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(j, "details"), 0), "field")),
                            field);
    json_decref(j);
}

/* ===================== worlds ============================================ */

typedef struct world {
    tse_test_redis *redis;
    tse_test_service *service;
    tse_test_service *bridge;
} world;

static int world_up(void **state, const char *const *service_args)
{
    world *w = calloc(1, sizeof(*w));

    w->redis = tse_test_redis_start(false);
    assert_non_null(w->redis);
    w->service = tse_test_service_start(w->redis, service_args);
    assert_non_null(w->service);
    w->bridge = tse_test_bridge_start(
        w->service->addr,
        (const char *const[]){"--max-body-bytes=4096", "--read-timeout=1s", "--max-batch-events=5",
                              "--retry-after=2", "--rpc-timeout=2s", NULL});
    assert_non_null(w->bridge);
    /* Before the first test: a bridge still connecting answers 503. */
    tse_test_http_await_healthy(w->bridge->port, 30000);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    world *w = *state;

    /* SIGTERM must end the bridge cleanly (exit 0). */
    assert_int_equal(tse_test_service_stop(w->bridge), 0);
    tse_test_service_stop(w->service);
    tse_test_redis_stop(w->redis);
    free(w);
    return 0;
}

static int lenient_up(void **state)
{
    return world_up(state, NULL);
}

static int strict_up(void **state)
{
    return world_up(state, (const char *const[]){"--validation-mode=strict", NULL});
}

#define JSON "application/json"

static const char *publish_body(void)
{
    return "{\"event_type\":\"sample.created\",\"source_service\":\"test\","
           "\"payload\":{\"test\":\"data\"}}";
}

static long long stat_of(const tse_test_service *b, const char *key)
{
    tse_test_http_resp r = http(b, "GET", "/api/v1/stats", NULL, NULL, NULL);
    json_t *j;
    long long v;

    assert_int_equal(r.status, 200);
    j = tse_test_http_json(&r);
    assert_true(json_is_integer(json_object_get(j, key)));
    v = json_integer_value(json_object_get(j, key));
    json_decref(j);
    http_free(&r);
    return v;
}

/* ===================== the original document's Quick Start =============== */

/* Runs a shell command and returns its stdout (malloc'd). */
static char *sh(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    char *out = calloc(1, 65536);
    size_t n;

    assert_non_null(p);
    n = fread(out, 1, 65535, p);
    out[n] = '\0';
    assert_int_equal(tse_test_exit_code(pclose(p)), 0);
    return out;
}

static void test_quick_start_commands_work_verbatim(void **state)
{
    world *w = *state;
    char cmd[1024], *out;
    json_t *j;
    long long before = stat_of(w->bridge, "events_published");

    /* Step 2: verify the service. */
    snprintf(cmd, sizeof(cmd), "curl -s http://localhost:%d/health", w->bridge->port);
    out = sh(cmd);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "healthy");
    assert_string_equal(json_string_value(json_object_get(j, "service")), "TracSeq Event Service");
    json_decref(j);
    free(out);

    /* Step 3: publish a test event, exactly as the document writes it. */
    snprintf(cmd, sizeof(cmd),
             "curl -s -X POST http://localhost:%d/api/v1/events/publish \\\n"
             "  -H \"Content-Type: application/json\" \\\n"
             "  -d '{\n"
             "    \"event_type\": \"sample.created\",\n"
             "    \"source_service\": \"test\",\n"
             "    \"payload\": {\"test\": \"data\"}\n"
             "  }'",
             w->bridge->port);
    out = sh(cmd);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "event_id"))), 36);
    assert_non_null(strchr(json_string_value(json_object_get(j, "stream_id")), '-'));
    assert_non_null(strchr(json_string_value(json_object_get(j, "published_at")), 'T'));
    json_decref(j);
    free(out);

    /* Step 4: statistics, with the four original keys. */
    snprintf(cmd, sizeof(cmd), "curl -s http://localhost:%d/api/v1/stats", w->bridge->port);
    out = sh(cmd);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "events_published")), before + 1);
    assert_true(json_is_integer(json_object_get(j, "events_consumed")));
    assert_true(json_is_integer(json_object_get(j, "events_failed")));
    assert_true(json_is_integer(json_object_get(j, "handlers_registered")));
    json_decref(j);
    free(out);
}

/* ===================== information endpoints ============================= */

static void test_root_lists_the_documented_endpoints(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "GET", "/", NULL, NULL, NULL);
    json_t *j = tse_test_http_json(&r), *ep = json_object_get(j, "endpoints");

    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "TracSeq Event Service");
    assert_string_equal(json_string_value(json_object_get(ep, "health")), "/health");
    assert_string_equal(json_string_value(json_object_get(ep, "publish")),
                        "/api/v1/events/publish");
    assert_string_equal(json_string_value(json_object_get(ep, "subscribe")),
                        "/api/v1/events/subscribe");
    assert_string_equal(json_string_value(json_object_get(ep, "stats")), "/api/v1/stats");
    json_decref(j);
    http_free(&r);
}

static void test_health_reports_checks_and_uptime(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "GET", "/health", NULL, NULL, NULL);
    json_t *j = tse_test_http_json(&r), *checks = json_object_get(j, "checks");

    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "healthy");
    assert_true(json_is_integer(json_object_get(j, "uptime_seconds")));
    assert_non_null(strchr(json_string_value(json_object_get(j, "timestamp")), 'Z'));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(checks, "event_service"), "status")),
        "up");
    assert_true(
        json_is_number(json_object_get(json_object_get(checks, "event_service"), "latency_ms")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(checks, "redis"), "status")), "up");
    json_decref(j);
    http_free(&r);
}

static void test_event_types_lists_the_catalog(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "GET", "/api/v1/event-types", NULL, NULL, NULL);
    json_t *j = tse_test_http_json(&r), *types = json_object_get(j, "event_types");
    bool found = false;
    size_t i;
    json_t *t;

    assert_int_equal(r.status, 200);
    json_array_foreach(types, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "event_type")), "sample.created") == 0)
            found = true;
    }
    assert_true(found);
    assert_true(json_is_string(json_object_get(j, "generic_type_pattern")));
    json_decref(j);
    http_free(&r);
}

static void test_stats_has_numbers_not_strings(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "GET", "/api/v1/stats", NULL, NULL, NULL);
    json_t *j = tse_test_http_json(&r);

    assert_int_equal(r.status, 200);
    assert_true(json_is_integer(json_object_get(j, "events_published")));
    assert_true(json_is_integer(json_object_get(j, "uptime_seconds")));
    assert_true(json_is_object(json_object_get(j, "published_by_type")));
    json_decref(j);
    http_free(&r);
}

static void test_metrics_are_prometheus_text_with_service_stats(void **state)
{
    world *w = *state;
    tse_test_http_resp p =
        http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL, publish_body());
    tse_test_http_resp r = http(w->bridge, "GET", "/metrics", NULL, NULL, NULL);
    char ct[128];

    assert_int_equal(p.status, 200);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(header(&r, "Content-Type", ct, sizeof(ct)), "text/plain"));
    assert_non_null(strstr(r.body, "# TYPE tracseq_bridge_http_requests_total counter"));
    assert_non_null(strstr(r.body, "tracseq_bridge_http_requests_total{route=\"POST "
                                   "/api/v1/events/publish\",status=\"200\"}"));
    assert_non_null(strstr(r.body, "tracseq_bridge_http_request_duration_seconds_bucket{"));
    assert_non_null(strstr(r.body, "tracseq_bridge_event_service_up 1"));
    assert_non_null(strstr(r.body, "tracseq_events_published_total "));
    assert_non_null(strstr(r.body, "tracseq_events_published_by_type_total{event_type=\"sample."
                                   "created\"}"));
    http_free(&p);
    http_free(&r);
}

/* ===================== publish =========================================== */

static void test_publish_answers_the_original_shape(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "POST", "/api/v1/events/publish",
                                "application/json; charset=utf-8", NULL, publish_body());
    json_t *j = tse_test_http_json(&r);

    assert_int_equal(r.status, 200);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "event_id"))), 36);
    assert_true(json_is_string(json_object_get(j, "stream_id")));
    assert_true(json_is_string(json_object_get(j, "published_at")));
    assert_true(json_is_false(json_object_get(j, "duplicate")));
    json_decref(j);
    http_free(&r);
}

static void test_publish_with_client_id_twice_is_a_duplicate(void **state)
{
    world *w = *state;
    const char *body = "{\"id\":\"" UUID_A "\",\"event_type\":\"lab.thing_done\","
                       "\"source_service\":\"t\",\"payload\":{\"n\":1}}";
    tse_test_http_resp a = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL, body);
    tse_test_http_resp b = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL, body);
    json_t *ja = tse_test_http_json(&a), *jb = tse_test_http_json(&b);

    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    assert_string_equal(json_string_value(json_object_get(ja, "event_id")), UUID_A);
    assert_true(json_is_false(json_object_get(ja, "duplicate")));
    assert_true(json_is_true(json_object_get(jb, "duplicate")));
    assert_string_equal(json_string_value(json_object_get(ja, "stream_id")),
                        json_string_value(json_object_get(jb, "stream_id")));
    json_decref(ja);
    json_decref(jb);
    http_free(&a);
    http_free(&b);
}

static void test_publish_takes_a_non_object_payload(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
             "{\"event_type\":\"lab.note\",\"source_service\":\"t\",\"payload\":[1,2]}");

    assert_int_equal(r.status, 200);
    http_free(&r);
}

static void test_correlation_id_header_is_echoed(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "POST", "/api/v1/events/publish", JSON,
                                "X-Correlation-ID: " UUID_B "\r\n", publish_body());
    char v[128];

    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "X-Correlation-ID", v, sizeof(v)), UUID_B);
    http_free(&r);
}

static void test_body_correlation_id_is_echoed_without_header(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
                                "{\"event_type\":\"lab.note\",\"source_service\":\"t\","
                                "\"correlation_id\":\"" UUID_A "\",\"payload\":{}}");
    tse_test_http_resp g = http(w->bridge, "GET", "/api/v1/stats", NULL, NULL, NULL);
    char v[128], v2[128];

    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "X-Correlation-ID", v, sizeof(v)), UUID_A);
    /* Without either, a fresh id is made and echoed. */
    assert_int_equal(strlen(header(&g, "X-Correlation-ID", v2, sizeof(v2))), 36);
    assert_string_not_equal(v2, UUID_A);
    http_free(&r);
    http_free(&g);
}

static void test_cloudevents_structured_mode_publishes(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "POST", "/api/v1/events/publish", "application/cloudevents+json", NULL,
             "{\"specversion\":\"1.0\",\"id\":\"" UUID_B "\",\"type\":\"lab.ce_done\","
             "\"source\":\"ce-client\",\"time\":\"2024-06-18T10:00:00Z\","
             "\"priority\":\"2\",\"correlationid\":\"" UUID_A "\",\"data\":{\"k\":1}}");
    json_t *j = tse_test_http_json(&r);
    char v[128];

    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "event_id")), UUID_B);
    assert_string_equal(header(&r, "X-Correlation-ID", v, sizeof(v)), UUID_A);
    json_decref(j);
    http_free(&r);
}

static void test_cloudevents_errors_name_cloudevents_attributes(void **state)
{
    world *w = *state;
    const char *ce = "application/cloudevents+json";
    tse_test_http_resp a =
        http(w->bridge, "POST", "/api/v1/events/publish", ce, NULL,
             "{\"specversion\":\"0.3\",\"type\":\"a.b\",\"source\":\"s\",\"data\":{}}");
    tse_test_http_resp b =
        http(w->bridge, "POST", "/api/v1/events/publish", ce, NULL,
             "{\"specversion\":\"1.0\",\"id\":\"e-1\",\"type\":\"NotAType\",\"source\":\"s\","
             "\"data\":{}}");

    /* Against the CloudEvents spec: 400; against our domain's rules: 422. */
    assert_error(&a, 400, "INVALID_CLOUDEVENT", "specversion");
    assert_error(&b, 422, "VALIDATION_FAILED", "type");
    http_free(&a);
    http_free(&b);
}

/* ===================== the error table =================================== */

static void test_malformed_json_is_400_with_line_and_column(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
                                "{\n  \"event_type\": \"a.b\",\n  \"source_service\": oops\n}");
    json_t *j, *d;

    assert_error(&r, 400, "INVALID_JSON", "body");
    j = tse_test_http_json(&r);
    d = json_array_get(json_object_get(j, "details"), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "line")), 3);
    assert_true(json_integer_value(json_object_get(d, "column")) > 0);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "line 3"));
    json_decref(j);
    http_free(&r);
}

static void test_wrong_content_type_is_415(void **state)
{
    world *w = *state;
    tse_test_http_resp a =
        http(w->bridge, "POST", "/api/v1/events/publish", "text/plain", NULL, publish_body());
    tse_test_http_resp b =
        http(w->bridge, "POST", "/api/v1/events/publish", NULL, NULL, publish_body());

    assert_error(&a, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type");
    assert_error(&b, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type");
    http_free(&a);
    http_free(&b);
}

static void test_body_over_the_limit_is_413(void **state)
{
    world *w = *state;
    size_t len = 5000; /* the world's limit is 4096 */
    char *big = malloc(len + 1);
    tse_test_http_resp r;
    int fd;

    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    big[len] = '\0';
    r = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL, big);
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE", "body");
    http_free(&r);

    /* Chunked, so no Content-Length announces the size: still 413. */
    fd = tse_test_http_connect(w->bridge->port);
    {
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "POST /api/v1/events/publish HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         "application/json\r\nTransfer-Encoding: chunked\r\nConnection: "
                         "close\r\n\r\n%zx\r\n",
                         len);
        tse_test_http_send_raw(fd, head, (size_t)n);
        tse_test_http_send_raw(fd, big, len);
        tse_test_http_send_raw(fd, "\r\n0\r\n\r\n", 7);
    }
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE", "body");
    http_free(&r);
    free(big);
}

static void test_unknown_path_is_404_json(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "GET", "/api/v2/nothing", NULL, NULL, NULL);

    assert_error(&r, 404, "NOT_FOUND", NULL);
    http_free(&r);
}

static void test_wrong_method_is_405_json_with_allow(void **state)
{
    world *w = *state;
    tse_test_http_resp r = http(w->bridge, "GET", "/api/v1/events/publish", NULL, NULL, NULL);
    char allow[64];

    assert_error(&r, 405, "METHOD_NOT_ALLOWED", NULL);
    assert_string_equal(header(&r, "Allow", allow, sizeof(allow)), "POST");
    http_free(&r);
}

static void test_missing_required_field_is_422_naming_it(void **state)
{
    world *w = *state;
    tse_test_http_resp a = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
                                "{\"event_type\":\"a.b\",\"payload\":{}}");
    tse_test_http_resp b = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
                                "{\"event_type\":\"a.b\",\"source_service\":\"s\"}");

    assert_error(&a, 422, "VALIDATION_FAILED", "source_service");
    assert_error(&b, 422, "VALIDATION_FAILED", "payload");
    http_free(&a);
    http_free(&b);
}

static void test_bad_fields_are_422_naming_them(void **state)
{
    world *w = *state;
    tse_test_http_resp prio =
        http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
             "{\"event_type\":\"a.b\",\"source_service\":\"s\",\"payload\":{},"
             "\"priority\":9}");
    tse_test_http_resp uuid =
        http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
             "{\"event_type\":\"a.b\",\"source_service\":\"s\",\"payload\":{},"
             "\"id\":\"not-a-uuid\"}");
    tse_test_http_resp type = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
                                   "{\"event_type\":\"Sample-Created\",\"source_service\":\"s\","
                                   "\"payload\":{}}");
    tse_test_http_resp kind =
        http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
             "{\"event_type\":\"a.b\",\"source_service\":\"s\",\"payload\":{},"
             "\"subject\":42}");

    assert_error(&prio, 422, "VALIDATION_FAILED", "priority");
    assert_error(&uuid, 422, "VALIDATION_FAILED", "id");
    assert_error(&type, 422, "VALIDATION_FAILED", "event_type");
    assert_error(&kind, 422, "VALIDATION_FAILED", "subject");
    http_free(&prio);
    http_free(&uuid);
    http_free(&type);
    http_free(&kind);
}

static void test_strict_payload_misfit_is_422_naming_payload_field(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL,
             "{\"event_type\":\"sample.created\",\"source_service\":\"s\","
             "\"payload\":{\"sample_id\":\"" UUID_A "\",\"sample_type\":\"DNA\"}}");
    json_t *j = tse_test_http_json(&r);
    const char *field = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "details"), 0), "field"));

    assert_int_equal(r.status, 422);
    assert_non_null(field);
    assert_int_equal(strncmp(field, "payload.", 8), 0);
    json_decref(j);
    http_free(&r);
}

static void test_bad_correlation_header_is_400(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "GET", "/api/v1/stats", NULL, "X-Correlation-ID: a b\r\n", NULL);

    assert_error(&r, 400, "INVALID_HEADER", "X-Correlation-ID");
    http_free(&r);
}

/* ===================== batch ============================================= */

/*
 * The bridge writes a batch's answer as text, not through jansson: it must
 * be what json_dumps(JSON_COMPACT) writes of the same values (jansson keeps
 * keys in insertion order), with a result's keys in the order the bridge
 * always gave them.
 */
static void assert_batch_text(const tse_test_http_resp *r, const json_t *j)
{
    static const char *const keys[] = {"event_id",     "stream_id", "published_at", "duplicate",
                                       "schema_valid", "index",     "status"};
    json_t *res = json_object_get(j, "results");
    char *again = json_dumps(j, JSON_COMPACT);
    size_t k = 0;
    const char *key;
    json_t *v;

    assert_non_null(again);
    assert_string_equal(r->body, again);
    free(again);
    assert_true(strncmp(r->body, "{\"results\":[", 12) == 0);
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *e = json_array_get(res, i);
        if (json_integer_value(json_object_get(e, "status")) != 200)
            continue;
        k = 0;
        json_object_foreach(e, key, v)
        {
            assert_true(k < 7);
            assert_string_equal(key, keys[k++]);
        }
        assert_int_equal(k, 7);
    }
}

static void test_batch_answers_one_result_per_entry(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "POST", "/api/v1/events/batch", JSON, NULL,
             "{\"events\":["
             "{\"event_type\":\"lab.batch_a\",\"source_service\":\"t\",\"payload\":{}},"
             "{\"event_type\":\"BAD\",\"source_service\":\"t\",\"payload\":{}},"
             "{\"source_service\":\"t\",\"payload\":{}},"
             "{\"event_type\":\"lab.batch_b\",\"source_service\":\"t\",\"payload\":{},"
             "\"id\":\"nope\"},"
             "{\"event_type\":\"lab.batch_c\",\"source_service\":\"t\",\"payload\":{}}"
             "]}");
    json_t *j = tse_test_http_json(&r), *res = json_object_get(j, "results");
    static const int want[] = {200, 422, 422, 422, 200};

    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(res), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *e = json_array_get(res, i);
        assert_int_equal(json_integer_value(json_object_get(e, "index")), (int)i);
        assert_int_equal(json_integer_value(json_object_get(e, "status")), want[i]);
        if (want[i] == 200)
            assert_true(json_is_string(json_object_get(e, "event_id")));
    }
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_array_get(res, 3), "details"), 0), "field")),
        "id");
    assert_int_equal(json_integer_value(json_object_get(j, "published")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "failed")), 3);
    assert_batch_text(&r, j);
    json_decref(j);
    http_free(&r);
}

static void test_batch_limits_are_422(void **state)
{
    world *w = *state;
    tse_test_http_resp empty =
        http(w->bridge, "POST", "/api/v1/events/batch", JSON, NULL, "{\"events\":[]}");
    tse_test_http_resp over = http(w->bridge, "POST", "/api/v1/events/batch", JSON, NULL,
                                   "{\"events\":[{},{},{},{},{},{}]}"); /* the world allows 5 */
    tse_test_http_resp notarr =
        http(w->bridge, "POST", "/api/v1/events/batch", JSON, NULL, "{\"events\":{}}");

    assert_error(&empty, 422, "VALIDATION_FAILED", "events");
    assert_error(&over, 422, "VALIDATION_FAILED", "events");
    assert_error(&notarr, 422, "VALIDATION_FAILED", "events");
    http_free(&empty);
    http_free(&over);
    http_free(&notarr);
}

static void test_cloudevents_batch_publishes(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "POST", "/api/v1/events/batch", "application/cloudevents-batch+json", NULL,
             "[{\"specversion\":\"1.0\",\"id\":\"a\",\"type\":\"lab.ce_a\",\"source\":\"s\","
             "\"data\":{}},{\"specversion\":\"1.0\",\"id\":\"b\",\"type\":\"lab.ce_b\","
             "\"source\":\"s\",\"data\":{}}]");
    json_t *j = tse_test_http_json(&r);

    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "published")), 2);
    assert_batch_text(&r, j);
    json_decref(j);
    http_free(&r);
}

/* ===================== connections ======================================= */

static void test_keep_alive_serves_several_requests(void **state)
{
    world *w = *state;
    int fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_resp r;

    for (int i = 0; i < 3; i++) {
        tse_test_http_send(fd, "POST", "/api/v1/events/publish", JSON, NULL, publish_body(),
                           strlen(publish_body()), false);
        assert_true(tse_test_http_read(fd, &r));
        assert_int_equal(r.status, 200);
        http_free(&r);
    }
    close(fd);
}

static void test_silent_connection_is_closed_after_read_timeout(void **state)
{
    world *w = *state;
    int fd = tse_test_http_connect(w->bridge->port);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long long start = tse_test_now_ms();
    char buf[256];

    tse_test_http_send_raw(fd, "POST /api/v1/events/publish HTTP/1.1\r\nHost: x\r\n", 47);
    /* The world's read timeout is 1 s; MHD checks it about once a second. */
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_true(recv(fd, buf, sizeof(buf), 0) <= 0);
    assert_true(tse_test_now_ms() - start >= 900);
    close(fd);
}

/* ===================== subscriptions ===================================== */

static void test_subscription_input_errors_are_422(void **state)
{
    world *w = *state;
    tse_test_http_resp ack =
        http(w->bridge, "POST", "/api/v1/subscriptions/s1/ack", JSON, NULL, "{\"ack_ids\":[]}");
    tse_test_http_resp pull =
        http(w->bridge, "GET", "/api/v1/subscriptions/s1/events?max=0", NULL, NULL, NULL);
    tse_test_http_resp sub =
        http(w->bridge, "POST", "/api/v1/events/subscribe", JSON, NULL, "{\"name\":5}");

    assert_error(&ack, 422, "VALIDATION_FAILED", "ack_ids");
    assert_error(&pull, 422, "VALIDATION_FAILED", "max");
    assert_error(&sub, 422, "VALIDATION_FAILED", "name");
    http_free(&ack);
    http_free(&pull);
    http_free(&sub);
}

/* The original's body, all eight fields, creates the subscription. */
static void test_subscribe_accepts_the_original_body(void **state)
{
    world *w = *state;
    tse_test_http_resp r =
        http(w->bridge, "POST", "/api/v1/events/subscribe", JSON, NULL,
             "{\"name\":\"qs\",\"event_types\":[\"sample.*\"],\"consumer_group\":\"qs\","
             "\"consumer_name\":\"c1\",\"batch_size\":10,\"timeout_ms\":5000,"
             "\"auto_ack\":true,\"read_latest\":true}");
    json_t *j = tse_test_http_json(&r);

    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "subscribed");
    assert_string_equal(json_string_value(json_object_get(j, "subscription_name")), "qs");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "event_types"), 0)),
                        "sample.*");
    json_decref(j);
    http_free(&r);
}

/* ===================== outages (run last: they break the world) ========= */

static void test_redis_down_makes_health_and_publish_503(void **state)
{
    world *w = *state;
    tse_test_http_resp h, p;
    char ra[16];
    tse_test_waiter waiter;
    json_t *j;

    tse_test_redis_kill(w->redis);
    /* The service notices on its next Redis reply or health probe. */
    tse_test_waiter_init(&waiter, 10000);
    for (;;) {
        h = http(w->bridge, "GET", "/health", NULL, NULL, NULL);
        if (h.status == 503 || !tse_test_waiter_poll(&waiter))
            break;
        http_free(&h);
    }
    assert_int_equal(h.status, 503);
    j = tse_test_http_json(&h);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "unhealthy");
    assert_string_equal(json_string_value(json_object_get(j, "failing")), "redis");
    assert_string_equal(header(&h, "Retry-After", ra, sizeof(ra)), "2");
    json_decref(j);
    p = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL, publish_body());
    assert_error(&p, 503, "SERVICE_UNAVAILABLE", NULL);
    assert_string_equal(header(&p, "Retry-After", ra, sizeof(ra)), "2");
    http_free(&h);
    http_free(&p);
}

static void test_service_down_makes_everything_503(void **state)
{
    world *w = *state;
    tse_test_http_resp h, p, s, b;
    char ra[16];
    json_t *j;

    tse_test_service_stop(w->service);
    w->service = NULL;
    h = http(w->bridge, "GET", "/health", NULL, NULL, NULL);
    assert_int_equal(h.status, 503);
    j = tse_test_http_json(&h);
    assert_string_equal(json_string_value(json_object_get(j, "failing")), "event_service");
    json_decref(j);
    p = http(w->bridge, "POST", "/api/v1/events/publish", JSON, NULL, publish_body());
    assert_error(&p, 503, "SERVICE_UNAVAILABLE", NULL);
    assert_string_equal(header(&p, "Retry-After", ra, sizeof(ra)), "2");
    s = http(w->bridge, "GET", "/api/v1/stats", NULL, NULL, NULL);
    assert_error(&s, 503, "SERVICE_UNAVAILABLE", NULL);
    b = http(w->bridge, "POST", "/api/v1/events/batch", JSON, NULL,
             "{\"events\":[{\"event_type\":\"a.b\",\"source_service\":\"t\",\"payload\":{}}]}");
    assert_error(&b, 503, "SERVICE_UNAVAILABLE", NULL);
    http_free(&h);
    http_free(&p);
    http_free(&s);
    http_free(&b);
}

/* ===================== the process ======================================= */

static void test_help_and_bad_settings(void **state)
{
    char bin[600], cmd[800], *out;

    tse_test_bridge_path(bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "%s --help", bin);
    out = sh(cmd);
    assert_non_null(strstr(out, "PORT"));
    assert_non_null(strstr(out, "EVENT_SERVICE_ADDR"));
    assert_non_null(strstr(out, "8087"));
    free(out);
    snprintf(cmd, sizeof(cmd), "%s --port=http >/dev/null 2>&1", bin);
    assert_int_equal(tse_test_exit_code(system(cmd)), 2);
    snprintf(cmd, sizeof(cmd), "MAX_BODY_BYTES=lots %s >/dev/null 2>&1", bin);
    assert_int_equal(tse_test_exit_code(system(cmd)), 2);
}

int main(void)
{
    const struct CMUnitTest lenient[] = {
        cmocka_unit_test(test_quick_start_commands_work_verbatim),
        cmocka_unit_test(test_root_lists_the_documented_endpoints),
        cmocka_unit_test(test_health_reports_checks_and_uptime),
        cmocka_unit_test(test_event_types_lists_the_catalog),
        cmocka_unit_test(test_stats_has_numbers_not_strings),
        cmocka_unit_test(test_metrics_are_prometheus_text_with_service_stats),
        cmocka_unit_test(test_publish_answers_the_original_shape),
        cmocka_unit_test(test_publish_with_client_id_twice_is_a_duplicate),
        cmocka_unit_test(test_publish_takes_a_non_object_payload),
        cmocka_unit_test(test_correlation_id_header_is_echoed),
        cmocka_unit_test(test_body_correlation_id_is_echoed_without_header),
        cmocka_unit_test(test_cloudevents_structured_mode_publishes),
        cmocka_unit_test(test_cloudevents_errors_name_cloudevents_attributes),
        cmocka_unit_test(test_malformed_json_is_400_with_line_and_column),
        cmocka_unit_test(test_wrong_content_type_is_415),
        cmocka_unit_test(test_body_over_the_limit_is_413),
        cmocka_unit_test(test_unknown_path_is_404_json),
        cmocka_unit_test(test_wrong_method_is_405_json_with_allow),
        cmocka_unit_test(test_missing_required_field_is_422_naming_it),
        cmocka_unit_test(test_bad_fields_are_422_naming_them),
        cmocka_unit_test(test_bad_correlation_header_is_400),
        cmocka_unit_test(test_batch_answers_one_result_per_entry),
        cmocka_unit_test(test_batch_limits_are_422),
        cmocka_unit_test(test_cloudevents_batch_publishes),
        cmocka_unit_test(test_keep_alive_serves_several_requests),
        cmocka_unit_test(test_silent_connection_is_closed_after_read_timeout),
        cmocka_unit_test(test_subscription_input_errors_are_422),
        cmocka_unit_test(test_subscribe_accepts_the_original_body),
        cmocka_unit_test(test_help_and_bad_settings),
        /* Last: these take Redis, then the service, away. */
        cmocka_unit_test(test_redis_down_makes_health_and_publish_503),
        cmocka_unit_test(test_service_down_makes_everything_503),
    };
    const struct CMUnitTest strict[] = {
        cmocka_unit_test(test_strict_payload_misfit_is_422_naming_payload_field),
    };
    int failed =
        cmocka_run_group_tests_name("bridge, lenient service", lenient, lenient_up, world_down);

    failed += cmocka_run_group_tests_name("bridge, strict service", strict, strict_up, world_down);
    return failed;
}
