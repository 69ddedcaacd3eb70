/*
 * test_cli_operate.c - dead letters, seek and snapshots end to end, over
 * each of the three ways in: gRPC (the SDK's tse_client_call_json), REST
 * (the real tracseq-rest-bridge) and eventctl (run as a child process),
 * against a real redis-server and the real tracseq-events; then all of it
 * again on a Redis Cluster of one node (every command on one slot).
 *
 * Events are dead-lettered the way they are in production: pulled and
 * nacked until they used up the subscription's max_delivery_attempts.
 *
 * Invariants of this file: every test uses its own event type and
 * subscription names, so tests sharing the one world never see each
 * other's events; every child is reaped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"
#include "sdk_world.h"
#include "tracseq/client.h"

#define OUT_MAX        (256 * 1024)
#define RUN_TIMEOUT_MS 20000
#define MAX_ARGS       24

/* ---- the world: Redis, the service, the bridge, an SDK client ---- */

typedef struct world {
    tse_test_sdk_world *sdk;
    tse_test_service *bridge;
} world;

static int world_up(void **state)
{
    world *w = calloc(1, sizeof(*w));

    if (getenv("TSE_EVENTCTL_BIN") == NULL)
        fail_msg("TSE_EVENTCTL_BIN is not set (run through ctest)");
    w->sdk = tse_test_sdk_world_start(false, NULL, "operate-test");
    w->bridge = tse_test_bridge_start(w->sdk->service->addr, NULL);
    tse_test_http_await_healthy(w->bridge->port, 30000);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    world *w = *state;

    assert_int_equal(tse_test_service_stop(w->bridge), 0);
    tse_test_sdk_world_stop(w->sdk);
    free(w);
    return 0;
}

/* ---- eventctl ---- */

typedef struct ctl_run {
    int status;
    char out[OUT_MAX];
} ctl_run;

/* Runs eventctl --server <service> args... (NULL-terminated); stdout and
 * stderr together in r->out. */
static ctl_run *ctl(const world *w, ...)
{
    ctl_run *r = calloc(1, sizeof(*r));
    char *argv[MAX_ARGS + 4];
    size_t n = 0, len = 0;
    int fds[2], st = 0;
    long long end = tse_test_now_ms() + RUN_TIMEOUT_MS;
    va_list ap;
    pid_t pid;

    assert_non_null(r);
    argv[n++] = getenv("TSE_EVENTCTL_BIN");
    argv[n++] = "--server";
    argv[n++] = (char *)w->sdk->service->addr;
    va_start(ap, w);
    for (char *a; (a = va_arg(ap, char *)) != NULL && n < MAX_ARGS;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        long long left = end - tse_test_now_ms();
        ssize_t got;
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        got = read(fds[0], r->out + len, OUT_MAX - 1 - len);
        if (got <= 0 && errno != EINTR)
            break;
        if (got > 0)
            len += (size_t)got;
    }
    close(fds[0]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

static void expect_ctl(const ctl_run *r, int code)
{
    if (r->status != code)
        fail_msg("eventctl exited %d, expected %d\n%s", r->status, code, r->out);
}

/* eventctl ... --json, its answer parsed. */
static json_t *ctl_json(const ctl_run *r)
{
    json_error_t e;
    json_t *j;

    expect_ctl(r, 0);
    j = json_loads(r->out, 0, &e);
    if (j == NULL)
        fail_msg("eventctl --json printed no JSON: %s\n%s", e.text, r->out);
    return j;
}

/* ---- REST ---- */

/* method path [JSON body]: the status, and the answer in *out (may be NULL). */
static int http(const world *w, const char *method, const char *path, const char *body,
                json_t **out)
{
    tse_test_http_resp resp;
    int fd = tse_test_http_connect(w->bridge->port), status;

    tse_test_http_send(fd, method, path, body ? "application/json" : NULL, NULL, body,
                       body ? strlen(body) : 0, true);
    assert_true(tse_test_http_read(fd, &resp));
    close(fd);
    status = resp.status;
    if (out != NULL)
        *out = tse_test_http_json(&resp);
    free(resp.body);
    return status;
}

/* ---- gRPC (the SDK) ---- */

/* method with a JSON request: the status; the answer in *out when OK. */
static tse_client_status grpc(const world *w, const char *method, const char *request, json_t **out,
                              tse_client_error *err)
{
    char *text = NULL;
    tse_client_status st = tse_client_call_json(w->sdk->client, method, request, &text, err);

    if (out != NULL)
        *out = st == TSE_CLIENT_OK ? json_loads(text, 0, NULL) : NULL;
    tse_client_free(text);
    return st;
}

static json_t *grpc_ok(const world *w, const char *method, const char *request)
{
    tse_client_error err;
    json_t *out = NULL;

    if (grpc(w, method, request, &out, &err) != TSE_CLIENT_OK)
        fail_msg("%s %s: %s (%s)", method, request, err.message, err.field);
    assert_non_null(out);
    return out;
}

/* A JSON integer, or a 64-bit one sent as a string (proto3 JSON). */
static long long num(const json_t *v)
{
    return json_is_string(v) ? atoll(json_string_value(v)) : json_integer_value(v);
}

/* ---- events ---- */

/* The ack deadline is the default (30 s): these tests count deliveries
 * exactly, and with 100 ms a busy machine's slow auto ack was redelivered
 * and counted twice (a_live_subscriber_is_kept_through_a_seek, CI at load
 * 14). Nothing here waits for a deadline to pass. */
static void create_subscription(const world *w, const char *name, const char *type,
                                int max_attempts, tse_client_start start)
{
    tse_client_subscription_spec spec = {.name = name,
                                         .event_types = (const char *const[]){type},
                                         .n_event_types = 1,
                                         .start = start,
                                         .max_delivery_attempts = max_attempts};
    tse_client_error err;

    if (tse_client_subscription_create(w->sdk->client, &spec, NULL, &err) != TSE_CLIENT_OK)
        fail_msg("create %s: %s", name, err.message);
}

static void publish(const world *w, const char *type, int n, tse_client_publish_result *last)
{
    tse_client_publish_result res;
    tse_client_error err;
    char payload[64];

    for (int i = 0; i < n; i++) {
        snprintf(payload, sizeof(payload), "{\"n\": %d}", i);
        if (tse_client_publish_json(w->sdk->client, type, payload, NULL, &res, &err) !=
            TSE_CLIENT_OK)
            fail_msg("publish %s: %s", type, err.message);
    }
    if (last)
        *last = res;
}

/* Pulls until `want` deliveries came (or 10 s passed); nacks them when
 * nack, else acks them. Returns how many came; *attempt: the last one's. */
static size_t pull_all(const world *w, const char *sub, size_t want, bool nack, uint32_t *attempt)
{
    long long end = tse_test_now_ms() + 10000;
    size_t got = 0;

    while (got < want && tse_test_now_ms() < end) {
        tse_client_batch *b = NULL;
        tse_client_error err;
        if (tse_client_pull(w->sdk->client, sub, 100, 500, NULL, &b, &err) != TSE_CLIENT_OK)
            fail_msg("pull %s: %s", sub, err.message);
        for (size_t i = 0; i < tse_client_batch_count(b); i++) {
            const tse_client_event_view *ev = tse_client_batch_event(b, i);
            const char *id = ev->ack_id;
            if (attempt)
                *attempt = ev->delivery_attempt;
            if (nack)
                assert_int_equal(tse_client_nack(w->sdk->client, sub, &id, 1, 0, NULL, NULL),
                                 TSE_CLIENT_OK);
            else
                assert_int_equal(tse_client_acknowledge(w->sdk->client, sub, &id, 1, NULL, NULL),
                                 TSE_CLIENT_OK);
            got++;
        }
        tse_client_batch_destroy(b);
    }
    return got;
}

/* Nothing more is delivered within a short pull. */
static void expect_nothing(const world *w, const char *sub)
{
    tse_client_batch *b = NULL;
    tse_client_error err;

    assert_int_equal(tse_client_pull(w->sdk->client, sub, 100, 300, NULL, &b, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_batch_count(b), 0);
    tse_client_batch_destroy(b);
}

/* The dead letters of sub, over REST; waits until there are `want`. */
static json_t *await_dead_letters(const world *w, const char *sub, size_t want)
{
    char path[128];
    long long end = tse_test_now_ms() + 10000;
    json_t *out = NULL;

    snprintf(path, sizeof(path), "/api/v1/subscriptions/%s/dead-letters", sub);
    for (;;) {
        assert_int_equal(http(w, "GET", path, NULL, &out), 200);
        if (json_array_size(json_object_get(out, "dead_letters")) >= want ||
            tse_test_now_ms() > end)
            break;
        json_decref(out);
        /* A waiting pull is a subscriber: its claim scan dead-letters. */
        expect_nothing(w, sub);
    }
    assert_int_equal(json_array_size(json_object_get(out, "dead_letters")), want);
    return out;
}

/* Publishes n events of type and nacks each until it is dead-lettered
 * (max_attempts 2). */
static void make_dead_letters(const world *w, const char *sub, const char *type, size_t n)
{
    uint32_t attempt = 0;

    create_subscription(w, sub, type, 2, TSE_CLIENT_START_LATEST);
    publish(w, type, (int)n, NULL);
    assert_int_equal(pull_all(w, sub, n, true, &attempt), n);
    assert_int_equal(pull_all(w, sub, n, true, &attempt), n);
    assert_int_equal(attempt, 2);
    json_decref(await_dead_letters(w, sub, n));
}

/* ---- dead letters ---- */

/* A nacked-to-dead event is listed (REST, gRPC, eventctl) with its event,
 * stream, attempts and reason; redrive (eventctl) delivers it again from
 * attempt 1 and empties the store. */
static void dead_letter_listed_then_redriven(void **state)
{
    world *w = *state;
    json_t *list, *dl, *one;
    const char *id;
    char req[256];
    uint32_t attempt = 0;
    ctl_run *r;

    make_dead_letters(w, "op-dl", "op.dl.failed", 1);
    list = await_dead_letters(w, "op-dl", 1);
    dl = json_array_get(json_object_get(list, "dead_letters"), 0);
    id = json_string_value(json_object_get(dl, "id"));
    assert_string_equal(json_string_value(json_object_get(dl, "reason")),
                        "DEAD_LETTER_REASON_MAX_DELIVERY_ATTEMPTS");
    assert_int_equal(json_integer_value(json_object_get(dl, "attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(dl, "stream")),
                        "tracseq:events:{op.dl.failed}:p3");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(dl, "event"), "event_type")),
        "op.dl.failed");
    assert_int_equal(json_integer_value(json_object_get(list, "total")), 1);

    /* gRPC: the same one by id. */
    snprintf(req, sizeof(req), "{\"subscription\":\"op-dl\",\"id\":\"%s\"}", id);
    one = grpc_ok(w, "GetDeadLetter", req);
    assert_string_equal(json_string_value(json_object_get(one, "stream_id")),
                        json_string_value(json_object_get(dl, "stream_id")));
    json_decref(one);

    /* eventctl: listed in text, then redriven. */
    r = ctl(w, "dead-letters", "list", "op-dl", NULL);
    expect_ctl(r, 0);
    assert_non_null(strstr(r->out, id));
    assert_non_null(strstr(r->out, "DEAD_LETTER_REASON_MAX_DELIVERY_ATTEMPTS"));
    free(r);
    r = ctl(w, "dead-letters", "redrive", "op-dl", id, "--json", NULL);
    one = ctl_json(r);
    assert_int_equal(json_integer_value(json_object_get(one, "redriven")), 1);
    json_decref(one);
    free(r);

    assert_int_equal(pull_all(w, "op-dl", 1, false, &attempt), 1);
    assert_int_equal(attempt, 1);
    json_decref(list);
    list = await_dead_letters(w, "op-dl", 0);
    assert_int_equal(json_integer_value(json_object_get(list, "total")), 0);
    json_decref(list);

    /* The stats count it: per reason, and the redrive. */
    one = grpc_ok(w, "GetStats", "{}");
    assert_true(num(json_object_get(json_object_get(one, "dead_lettered_by_reason"),
                                    "max_delivery_attempts")) >= 1);
    assert_true(num(json_object_get(one, "dead_letters_redriven")) >= 1);
    json_decref(one);
}

/* Purge over REST empties the store; redrive --all over gRPC, after. */
static void purge_empties_the_store(void **state)
{
    world *w = *state;
    json_t *out;
    char *metrics;
    tse_test_http_resp resp;
    int fd;

    make_dead_letters(w, "op-purge", "op.purge.failed", 3);
    assert_int_equal(http(w, "POST", "/api/v1/subscriptions/op-purge/dead-letters/purge",
                          "{\"all\": true}", &out),
                     200);
    assert_int_equal(json_integer_value(json_object_get(out, "purged")), 3);
    json_decref(out);
    out = await_dead_letters(w, "op-purge", 0);
    json_decref(out);
    out = grpc_ok(w, "RedriveDeadLetters", "{\"subscription\":\"op-purge\",\"all\":true}");
    assert_int_equal(json_integer_value(json_object_get(out, "redriven")), 0);
    json_decref(out);

    /* /metrics has the per-reason and purge series. */
    fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_send(fd, "GET", "/metrics", NULL, NULL, NULL, 0, true);
    assert_true(tse_test_http_read(fd, &resp));
    close(fd);
    metrics = resp.body;
    assert_non_null(
        strstr(metrics, "tracseq_dead_letters_total{reason=\"max_delivery_attempts\"}"));
    assert_non_null(strstr(metrics, "tracseq_dead_letters_purged_total 3"));
    free(metrics);
}

/* Bad input names the field; an unknown subscription is NOT_FOUND / 404. */
static void refusals_name_the_field(void **state)
{
    world *w = *state;
    tse_client_error err;
    json_t *out;
    ctl_run *r;

    assert_int_equal(
        grpc(w, "RedriveDeadLetters", "{\"subscription\":\"op-x\",\"ids\":[\"x\"]}", NULL, &err),
        TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "ids[0]");
    assert_int_equal(grpc(w, "PurgeDeadLetters", "{\"subscription\":\"op-x\"}", NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "ids");
    assert_int_equal(grpc(w, "Seek", "{\"subscription\":\"op-x\"}", NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "position");
    assert_int_equal(grpc(w, "Seek",
                          "{\"subscription\":\"op-x\",\"position\":\"START_POSITION_TIMESTAMP\"}",
                          NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "time");
    assert_int_equal(grpc(w, "ListDeadLetters", "{\"subscription\":\"no-such-sub\"}", NULL, &err),
                     TSE_CLIENT_NOT_FOUND);

    assert_int_equal(
        http(w, "POST", "/api/v1/subscriptions/op-x/seek", "{\"position\":\"sideways\"}", &out),
        422);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(out, "details"), 0), "field")),
                        "position");
    json_decref(out);
    assert_int_equal(
        http(w, "GET", "/api/v1/subscriptions/op-x/dead-letters?page_size=5000", NULL, &out), 422);
    json_decref(out);
    assert_int_equal(http(w, "GET", "/api/v1/subscriptions/no-such-sub/dead-letters", NULL, &out),
                     404);
    json_decref(out);
    assert_int_equal(
        http(w, "GET", "/api/v1/subscriptions/no-such-sub/dead-letters/1-0", NULL, &out), 404);
    json_decref(out);
    r = ctl(w, "seek", "no-such-sub", "earliest", NULL);
    expect_ctl(r, 1);
    free(r);
    r = ctl(w, "dead-letters", "redrive", "op-x", NULL);
    expect_ctl(r, 2);
    free(r);
}

/* ---- seek ---- */

/* Seek to earliest (eventctl) delivers the acked history again; to latest
 * (REST) skips the backlog. */
static void seek_earliest_redelivers_history(void **state)
{
    world *w = *state;
    json_t *out;
    ctl_run *r;

    create_subscription(w, "op-seek", "op.seek.done", 0, TSE_CLIENT_START_LATEST);
    publish(w, "op.seek.done", 3, NULL);
    assert_int_equal(pull_all(w, "op-seek", 3, false, NULL), 3);
    expect_nothing(w, "op-seek");

    r = ctl(w, "seek", "op-seek", "earliest", "--json", NULL);
    out = ctl_json(r);
    assert_int_equal(json_integer_value(json_object_get(out, "streams")), 1);
    json_decref(out);
    free(r);
    assert_int_equal(pull_all(w, "op-seek", 3, false, NULL), 3);
    expect_nothing(w, "op-seek");

    /* Pending deliveries are settled by a seek to latest. */
    publish(w, "op.seek.done", 2, NULL);
    assert_int_equal(
        http(w, "POST", "/api/v1/subscriptions/op-seek/seek", "{\"position\":\"latest\"}", &out),
        200);
    json_decref(out);
    expect_nothing(w, "op-seek");
}

static void count_delivery(void *arg, const tse_client_event_view *event,
                           tse_client_delivery *delivery)
{
    (void)arg;
    (void)event;
    (void)delivery; /* acked by the SDK when this returns */
}

/* Waits until sub has delivered n (10 s at most). */
static void await_delivered(tse_client_subscriber *sub, uint64_t n)
{
    long long end = tse_test_now_ms() + 10000;

    while (tse_client_subscriber_delivered(sub) < n && tse_test_now_ms() < end)
        usleep(20000);
    assert_int_equal(tse_client_subscriber_delivered(sub), n);
}

/* A live Subscribe stream stays attached through a seek and receives the
 * history again. */
static void a_live_subscriber_is_kept_through_a_seek(void **state)
{
    world *w = *state;
    tse_client_subscriber_options opts = {.subscription = "op-live",
                                          .ack_mode = TSE_CLIENT_ACK_AUTO};
    tse_client_subscriber *sub = NULL;
    tse_client_error err;

    create_subscription(w, "op-live", "op.live.done", 0, TSE_CLIENT_START_LATEST);
    assert_int_equal(
        tse_client_subscriber_create(w->sdk->client, &opts, count_delivery, NULL, &sub, &err),
        TSE_CLIENT_OK);
    assert_int_equal(tse_client_subscriber_start(sub, &err), TSE_CLIENT_OK);
    publish(w, "op.live.done", 3, NULL);
    await_delivered(sub, 3);
    json_decref(grpc_ok(w, "Seek",
                        "{\"subscription\":\"op-live\",\"position\":\"START_POSITION_EARLIEST\"}"));
    await_delivered(sub, 6);
    tse_client_subscriber_stop(sub);
    tse_client_subscriber_wait(sub, NULL);
    tse_client_subscriber_destroy(sub);
}

/* A retry policy holds a nacked event back for its backoff; then it comes
 * again with the next attempt. A bad policy names its field. */
static void a_retry_policy_backs_off_between_attempts(void **state)
{
    world *w = *state;
    tse_client_batch *b = NULL;
    tse_client_error err;
    uint32_t attempt = 0;
    json_t *sub;

    sub = grpc_ok(w, "CreateSubscription",
                  "{\"subscription\":{\"name\":\"op-retry\",\"event_types\":[\"op.retry.done\"],"
                  "\"ack_deadline_ms\":100,\"max_delivery_attempts\":5,"
                  "\"min_backoff_ms\":2000,\"max_backoff_ms\":4000}}");
    assert_int_equal(json_integer_value(json_object_get(sub, "min_backoff_ms")), 2000);
    json_decref(sub);
    assert_int_equal(grpc(w, "CreateSubscription",
                          "{\"subscription\":{\"name\":\"op-retry-bad\",\"event_types\":[\"x.y\"],"
                          "\"min_backoff_ms\":3000,\"max_backoff_ms\":1000}}",
                          NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "subscription.max_backoff_ms");

    publish(w, "op.retry.done", 1, NULL);
    assert_int_equal(pull_all(w, "op-retry", 1, true, &attempt), 1);
    assert_int_equal(attempt, 1);
    /* Nacked without a delay: held back for 2 s, far longer than this pull. */
    assert_int_equal(tse_client_pull(w->sdk->client, "op-retry", 10, 300, NULL, &b, &err),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_batch_count(b), 0);
    tse_client_batch_destroy(b);
    assert_int_equal(pull_all(w, "op-retry", 1, false, &attempt), 1);
    assert_int_equal(attempt, 2);
}

/* ---- dead-letter targets ---- */

/* Pulls one delivery of sub (10 s at most) and acks it; its envelope as
 * JSON (NULL when none came). */
static json_t *pull_envelope(const world *w, const char *sub)
{
    long long end = tse_test_now_ms() + 10000;
    json_t *out = NULL;

    while (out == NULL && tse_test_now_ms() < end) {
        tse_client_batch *b = NULL;
        tse_client_error err;
        if (tse_client_pull(w->sdk->client, sub, 1, 300, NULL, &b, &err) != TSE_CLIENT_OK)
            fail_msg("pull %s: %s", sub, err.message);
        if (tse_client_batch_count(b) == 1) {
            const tse_client_event_view *ev = tse_client_batch_event(b, 0);
            char *text = tse_client_envelope_json(ev->envelope, ev->envelope_len);
            assert_non_null(text);
            out = json_loads(text, 0, NULL);
            tse_client_free(text);
            assert_int_equal(
                tse_client_acknowledge(w->sdk->client, sub, &ev->ack_id, 1, NULL, NULL),
                TSE_CLIENT_OK);
        } else {
            /* A waiting pull on the source is a subscriber: its claim scan
             * gives the event up. */
            expect_nothing(w, "op-dlt");
        }
        tse_client_batch_destroy(b);
    }
    return out;
}

/* True when the JSON text of j holds needle. */
static bool mentions(const json_t *j, const char *needle)
{
    char *text = json_dumps(j, 0);
    bool found = text != NULL && strstr(text, needle) != NULL;

    free(text);
    return found;
}

static const char *meta(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(json_object_get(ev, "metadata"), key));
}

/* A subscription created over REST with a dead_letter_type (shown by
 * eventctl's describe) hands an event nacked past its attempts to a
 * subscription of that type (created by eventctl), carrying the original
 * with its stream, attempts and reason; its own store stays empty. */
static void a_dead_letter_target_receives_given_up_events(void **state)
{
    world *w = *state;
    tse_client_publish_result pub;
    json_t *out, *ev, *data;
    uint32_t attempt = 0;
    ctl_run *r;

    assert_int_equal(
        http(w, "POST", "/api/v1/events/subscribe",
             "{\"name\":\"op-dlt\",\"event_types\":[\"op.dlt.failed\"],\"auto_ack\":false,"
             "\"max_delivery_attempts\":2,\"ack_deadline_ms\":100,"
             "\"dead_letter_type\":\"deadletter.op_dlt\"}",
             &out),
        200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "subscription"),
                                                          "dead_letter_type")),
                        "deadletter.op_dlt");
    json_decref(out);
    r = ctl(w, "subscriptions", "create", "op-dlt-sink", "--types", "deadletter.*", NULL);
    expect_ctl(r, 0);
    free(r);
    r = ctl(w, "subscriptions", "get", "op-dlt", NULL);
    expect_ctl(r, 0);
    assert_non_null(strstr(r->out, "dead letter type"));
    assert_non_null(strstr(r->out, "deadletter.op_dlt"));
    free(r);

    publish(w, "op.dlt.failed", 1, &pub);
    assert_int_equal(pull_all(w, "op-dlt", 1, true, &attempt), 1);
    assert_int_equal(pull_all(w, "op-dlt", 1, true, &attempt), 1);
    assert_int_equal(attempt, 2);

    ev = pull_envelope(w, "op-dlt-sink");
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "event_type")), "deadletter.op_dlt");
    assert_string_equal(json_string_value(json_object_get(ev, "causation_id")), pub.event_id);
    assert_string_equal(meta(ev, "dead_letter_reason"), "max_delivery_attempts");
    assert_string_equal(meta(ev, "dead_letter_attempts"), "2");
    assert_string_equal(meta(ev, "dead_letter_subscription"), "op-dlt");
    data = json_object_get(ev, "data");
    assert_string_equal(json_string_value(json_object_get(data, "reason")),
                        "max_delivery_attempts");
    assert_int_equal((long long)json_number_value(json_object_get(data, "attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(data, "stream")),
                        "tracseq:events:{op.dlt.failed}:p3");
    assert_string_equal(json_string_value(json_object_get(data, "stream_id")), pub.stream_id);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(data, "event"), "event_type")),
        "op.dlt.failed");
    assert_string_equal(json_string_value(json_object_get(json_object_get(data, "event"), "id")),
                        pub.event_id);
    json_decref(ev);

    /* Given up on: acked at its source, and not in the default store. */
    expect_nothing(w, "op-dlt");
    out = await_dead_letters(w, "op-dlt", 0);
    assert_int_equal(json_integer_value(json_object_get(out, "total")), 0);
    json_decref(out);
}

/* A bad target names its field over gRPC, REST and eventctl. */
static void a_bad_dead_letter_type_names_the_field(void **state)
{
    world *w = *state;
    tse_client_error err;
    json_t *out;
    ctl_run *r;

    assert_int_equal(grpc(w, "CreateSubscription",
                          "{\"subscription\":{\"name\":\"op-dlt-bad\",\"event_types\":[\"x.y\"],"
                          "\"dead_letter_type\":\"sample.created\"}}",
                          NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "subscription.dead_letter_type");
    assert_int_equal(http(w, "POST", "/api/v1/events/subscribe",
                          "{\"name\":\"op-dlt-bad\",\"dead_letter_type\":\"Dead Letters\"}", &out),
                     422);
    assert_true(mentions(out, "dead_letter_type"));
    json_decref(out);
    assert_int_equal(http(w, "POST", "/api/v1/events/subscribe",
                          "{\"name\":\"op-dlt-bad\",\"dead_letter_type\":7}", &out),
                     422);
    json_decref(out);
    r = ctl(w, "subscriptions", "create", "op-dlt-bad", "--types", "x.y", "--dead-letter-type",
            "deadletter", NULL);
    expect_ctl(r, 1);
    assert_non_null(strstr(r->out, "dead_letter_type"));
    free(r);
}

/* The retry policy over REST and eventctl: set, shown, and checked. */
static void a_retry_policy_over_rest_and_eventctl(void **state)
{
    world *w = *state;
    json_t *out, *sub;
    ctl_run *r;

    assert_int_equal(http(w, "POST", "/api/v1/events/subscribe",
                          "{\"name\":\"op-retry-rest\",\"event_types\":[\"op.retry.rest\"],"
                          "\"min_backoff_ms\":500,\"max_backoff_ms\":8000}",
                          &out),
                     200);
    json_decref(out);
    assert_int_equal(http(w, "GET", "/api/v1/subscriptions/op-retry-rest", NULL, &out), 200);
    assert_int_equal(json_integer_value(json_object_get(out, "min_backoff_ms")), 500);
    assert_int_equal(json_integer_value(json_object_get(out, "max_backoff_ms")), 8000);
    json_decref(out);
    assert_int_equal(http(w, "POST", "/api/v1/events/subscribe",
                          "{\"name\":\"op-retry-rest2\",\"min_backoff_ms\":700000}", &out),
                     422);
    assert_true(mentions(out, "min_backoff_ms"));
    json_decref(out);
    assert_int_equal(http(w, "POST", "/api/v1/events/subscribe",
                          "{\"name\":\"op-retry-rest2\",\"min_backoff_ms\":3000,"
                          "\"max_backoff_ms\":1000}",
                          &out),
                     422);
    assert_true(mentions(out, "max_backoff_ms"));
    json_decref(out);

    r = ctl(w, "subscriptions", "create", "op-retry-ctl", "--types", "op.retry.ctl",
            "--min-backoff", "250", "--max-backoff", "4000", "--json", NULL);
    sub = ctl_json(r);
    assert_int_equal(json_integer_value(json_object_get(sub, "min_backoff_ms")), 250);
    assert_int_equal(json_integer_value(json_object_get(sub, "max_backoff_ms")), 4000);
    json_decref(sub);
    free(r);
    r = ctl(w, "subscriptions", "get", "op-retry-ctl", NULL);
    expect_ctl(r, 0);
    assert_non_null(strstr(r->out, "min backoff ms"));
    assert_non_null(strstr(r->out, "4000"));
    free(r);
    r = ctl(w, "subscriptions", "create", "op-retry-ctl2", "--types", "op.retry.ctl",
            "--min-backoff", "-1", NULL);
    expect_ctl(r, 2);
    free(r);
    r = ctl(w, "subscriptions", "create", "op-retry-ctl2", "--types", "op.retry.ctl",
            "--min-backoff", "5000", "--max-backoff", "10", NULL);
    expect_ctl(r, 1);
    assert_non_null(strstr(r->out, "max_backoff_ms"));
    free(r);
}

/* ---- rejects ---- */

/* Pulls one delivery of sub (10 s at most); its ack id into id. */
static void pull_ack_id(const world *w, const char *sub, char *id, size_t len)
{
    long long end = tse_test_now_ms() + 10000;

    id[0] = '\0';
    while (id[0] == '\0' && tse_test_now_ms() < end) {
        tse_client_batch *b = NULL;
        tse_client_error err;
        if (tse_client_pull(w->sdk->client, sub, 1, 300, NULL, &b, &err) != TSE_CLIENT_OK)
            fail_msg("pull %s: %s", sub, err.message);
        if (tse_client_batch_count(b) == 1)
            snprintf(id, len, "%s", tse_client_batch_event(b, 0)->ack_id);
        tse_client_batch_destroy(b);
    }
    assert_true(id[0] != '\0');
}

/*
 * A reject whose dead letter Redis refuses to store (here the dead-letter
 * stream's key holds a string: WRONGTYPE) is answered UNAVAILABLE, not as
 * an unknown ack id, and the delivery stays pending; once Redis takes it,
 * the same reject succeeds.
 */
static void a_reject_redis_refuses_is_unavailable_and_stays_pending(void **state)
{
    world *w = *state;
    char id[512], req[768];
    tse_client_error err;
    json_t *out;
    char *r;

    create_subscription(w, "op-reject-stuck", "op.reject.stuck", 5, TSE_CLIENT_START_LATEST);
    r = tse_test_redis_cmd(w->sdk->redis, "SET tracseq:dlq:op-reject-stuck occupied");
    free(r);
    publish(w, "op.reject.stuck", 1, NULL);
    pull_ack_id(w, "op-reject-stuck", id, sizeof(id));
    snprintf(req, sizeof(req),
             "{\"subscription\":\"op-reject-stuck\",\"ack_ids\":[\"%s\"],\"reject\":true}", id);
    assert_int_equal(grpc(w, "Nack", req, NULL, &err), TSE_CLIENT_UNAVAILABLE);
    if (strstr(err.message, "could not be dead-lettered") == NULL)
        fail_msg("reject refused by Redis answered '%s'", err.message);
    r = tse_test_redis_cmd(w->sdk->redis, "DEL tracseq:dlq:op-reject-stuck");
    free(r);
    out = grpc_ok(w, "Nack", req); /* still pending: the retry dead-letters it */
    assert_int_equal(json_integer_value(json_object_get(out, "nacked")), 1);
    json_decref(out);
    json_decref(await_dead_letters(w, "op-reject-stuck", 1));
}

/* A nack with reject (gRPC, then REST) dead-letters at once, attempts left
 * or not, with reason REJECTED, counted apart from max attempts in GetStats
 * and /metrics. */
static void a_rejected_delivery_is_dead_lettered_at_once(void **state)
{
    world *w = *state;
    char id[512], req[768];
    json_t *out, *dl;
    tse_test_http_resp resp;
    int fd;

    create_subscription(w, "op-reject", "op.reject.failed", 5, TSE_CLIENT_START_LATEST);
    publish(w, "op.reject.failed", 3, NULL);
    pull_ack_id(w, "op-reject", id, sizeof(id));
    snprintf(req, sizeof(req),
             "{\"subscription\":\"op-reject\",\"ack_ids\":[\"%s\"],\"reject\":true}", id);
    out = grpc_ok(w, "Nack", req);
    assert_int_equal(json_integer_value(json_object_get(out, "nacked")), 1);
    json_decref(out);
    pull_ack_id(w, "op-reject", id, sizeof(id));
    snprintf(req, sizeof(req), "{\"ack_ids\":[\"%s\"],\"reject\":true}", id);
    assert_int_equal(http(w, "POST", "/api/v1/subscriptions/op-reject/nack", req, &out), 200);
    assert_int_equal(json_integer_value(json_object_get(out, "nacked")), 1);
    json_decref(out);
    /* The SDK's reject. */
    {
        const char *one = id;
        unsigned done = 0;
        pull_ack_id(w, "op-reject", id, sizeof(id));
        assert_int_equal(tse_client_reject(w->sdk->client, "op-reject", &one, 1, &done, NULL),
                         TSE_CLIENT_OK);
        assert_int_equal(done, 1);
    }
    /* Rejected again: no longer pending, so unknown. */
    assert_int_equal(http(w, "POST", "/api/v1/subscriptions/op-reject/nack", req, &out), 200);
    assert_int_equal(json_array_size(json_object_get(out, "unknown_ack_ids")), 1);
    json_decref(out);
    assert_int_equal(http(w, "POST", "/api/v1/subscriptions/op-reject/nack",
                          "{\"ack_ids\":[\"x\"],\"reject\":\"yes\"}", &out),
                     422);
    assert_true(mentions(out, "reject"));
    json_decref(out);

    expect_nothing(w, "op-reject");
    out = await_dead_letters(w, "op-reject", 3);
    dl = json_array_get(json_object_get(out, "dead_letters"), 0);
    assert_string_equal(json_string_value(json_object_get(dl, "reason")),
                        "DEAD_LETTER_REASON_REJECTED");
    assert_int_equal(json_integer_value(json_object_get(dl, "attempts")), 1);
    json_decref(out);

    out = grpc_ok(w, "GetStats", "{}");
    assert_true(num(json_object_get(json_object_get(out, "dead_lettered_by_reason"), "rejected")) >=
                3);
    json_decref(out);
    fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_send(fd, "GET", "/metrics", NULL, NULL, NULL, 0, true);
    assert_true(tse_test_http_read(fd, &resp));
    close(fd);
    assert_non_null(strstr(resp.body, "tracseq_dead_letters_total{reason=\"rejected\"}"));
    free(resp.body);
}

/* Seek to a timestamp (REST) delivers what was published from then on. */
static void seek_to_a_timestamp(void **state)
{
    world *w = *state;
    tse_client_publish_result second;
    char body[128], when[64];
    struct tm tm;
    time_t secs;
    json_t *out;

    create_subscription(w, "op-time", "op.time.done", 0, TSE_CLIENT_START_LATEST);
    publish(w, "op.time.done", 2, NULL);
    usleep(20000); /* the next event a later millisecond than the first two */
    publish(w, "op.time.done", 1, &second);
    publish(w, "op.time.done", 1, NULL);
    assert_int_equal(pull_all(w, "op-time", 4, false, NULL), 4);

    secs = (time_t)second.published_at_seconds;
    gmtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(body, sizeof(body), "{\"position\":\"timestamp\",\"time\":\"%s.%09dZ\"}", when,
             (int)second.published_at_nanos);
    assert_int_equal(http(w, "POST", "/api/v1/subscriptions/op-time/seek", body, &out), 200);
    json_decref(out);
    assert_int_equal(pull_all(w, "op-time", 2, false, NULL), 2);
    expect_nothing(w, "op-time");
}

/* A snapshot (created over REST, listed by eventctl) is sought back to over
 * gRPC: what was acked after it is delivered again; delete removes it. */
static void seek_to_a_snapshot(void **state)
{
    world *w = *state;
    json_t *out;
    ctl_run *r;

    create_subscription(w, "op-snap", "op.snap.done", 0, TSE_CLIENT_START_LATEST);
    publish(w, "op.snap.done", 2, NULL);
    assert_int_equal(pull_all(w, "op-snap", 2, false, NULL), 2);
    assert_int_equal(
        http(w, "POST", "/api/v1/subscriptions/op-snap/snapshots", "{\"name\":\"before\"}", &out),
        200);
    assert_int_equal(json_object_size(json_object_get(out, "positions")), 1);
    json_decref(out);
    assert_int_equal(
        http(w, "POST", "/api/v1/subscriptions/op-snap/snapshots", "{\"name\":\"before\"}", &out),
        409);
    json_decref(out);
    publish(w, "op.snap.done", 3, NULL);
    assert_int_equal(pull_all(w, "op-snap", 3, false, NULL), 3);

    r = ctl(w, "snapshots", "list", "op-snap", NULL);
    expect_ctl(r, 0);
    assert_non_null(strstr(r->out, "before"));
    free(r);

    out = grpc_ok(w, "Seek", "{\"subscription\":\"op-snap\",\"snapshot\":\"before\"}");
    json_decref(out);
    assert_int_equal(pull_all(w, "op-snap", 3, false, NULL), 3);
    expect_nothing(w, "op-snap");

    r = ctl(w, "snapshots", "delete", "op-snap", "before", NULL);
    expect_ctl(r, 0);
    free(r);
    assert_int_equal(
        http(w, "DELETE", "/api/v1/subscriptions/op-snap/snapshots/before", NULL, &out), 404);
    json_decref(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dead_letter_listed_then_redriven),
        cmocka_unit_test(purge_empties_the_store),
        cmocka_unit_test(refusals_name_the_field),
        cmocka_unit_test(seek_earliest_redelivers_history),
        cmocka_unit_test(a_live_subscriber_is_kept_through_a_seek),
        cmocka_unit_test(seek_to_a_timestamp),
        cmocka_unit_test(a_retry_policy_backs_off_between_attempts),
        cmocka_unit_test(seek_to_a_snapshot),
        cmocka_unit_test(a_dead_letter_target_receives_given_up_events),
        cmocka_unit_test(a_bad_dead_letter_type_names_the_field),
        cmocka_unit_test(a_retry_policy_over_rest_and_eventctl),
        cmocka_unit_test(a_rejected_delivery_is_dead_lettered_at_once),
        cmocka_unit_test(a_reject_redis_refuses_is_unavailable_and_stays_pending),
    };

    int failed = cmocka_run_group_tests(tests, world_up, world_down);

    /* Again on a Redis Cluster of one node, which refuses a command over
     * several slots: dead-lettering, redrive, purge, seek, snapshots and
     * the dead-letter target each touch one slot per command. */
    if (getenv("TSE_TEST_REDIS") == NULL) {
        setenv("TSE_TEST_REDIS", "one-node-cluster", 1);
        failed += cmocka_run_group_tests_name("operate on a one-node Redis Cluster", tests,
                                              world_up, world_down);
        unsetenv("TSE_TEST_REDIS");
    }
    return failed == 0 ? 0 : 1;
}
