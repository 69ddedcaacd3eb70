/*
 * test_client_gateway.c - what a gateway (the REST bridge) needs of the SDK,
 * against a real redis-server and the real tracseq-events binary: events
 * published exactly as encoded (no id or source added), publishers that
 * fail unanswered events when their stream breaks instead of resending
 * them, a bound on how long an event may wait for its answer, a cancel
 * that answers every unanswered event before it returns, and asynchronous
 * calls and streams with their own metadata, deadline, flow control and
 * cancel.
 *
 * Invariants of this file: every test uses event types of its own; tests
 * that stop, pause or restart a service start their own. Waits are bounded
 * and generous for a loaded machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/pbjson.h"
#include "sdk_world.h"
#include "tracseq/client.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"

#define WAIT_MS 20000

static tse_test_sdk_world *W;

static int world_up(void **state)
{
    W = tse_test_sdk_world_start(false, NULL, "gateway-test");
    return 0;
}

static int world_down(void **state)
{
    tse_test_sdk_world_stop(W);
    W = NULL;
    return 0;
}

/* A service of our own on a fixed port, so a restart keeps the address. */
static tse_test_service *service_on(int port)
{
    static const char *const args[] = {"--log-level=warn", NULL};
    tse_test_service *s = tse_test_service_start_on(W->redis, port, args);

    if (s == NULL)
        fail_msg("the service did not start on port %d", port);
    return s;
}

/*
 * Stops a process and returns once every thread of it is stopped: kill()
 * returns before the group stop completes, and meanwhile its other threads
 * run on (long enough, under load, to answer a request sent after it).
 */
static void freeze(pid_t pid)
{
    long long until = tse_test_now_ms() + WAIT_MS;
    char path[64];
    bool running = true;

    assert_int_equal(kill(pid, SIGSTOP), 0);
    while (running && tse_test_now_ms() < until) {
        DIR *d;
        struct dirent *t;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        assert_non_null(d = opendir(path));
        running = false;
        while ((t = readdir(d)) != NULL && !running) {
            char stat[512], *close_paren;
            FILE *f;
            size_t n;

            if (t->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/proc/%d/task/%.16s/stat", (int)pid, t->d_name);
            if ((f = fopen(path, "r")) == NULL)
                continue;
            n = fread(stat, 1, sizeof(stat) - 1, f);
            fclose(f);
            stat[n] = '\0';
            close_paren = strrchr(stat, ')');
            running = close_paren != NULL && close_paren[1] == ' ' && close_paren[2] != 'T' &&
                      close_paren[2] != 't';
        }
        closedir(d);
        if (running)
            usleep(1000);
    }
    assert_false(running);
}

/* An event from its JSON envelope (proto3 JSON of tracseq.events.v1.Event). */
static tse_client_event *envelope(const char *json_text)
{
    json_t *j = json_loads(json_text, 0, NULL);
    ProtobufCMessage *msg = NULL;
    tse_client_event *ev = NULL;
    uint8_t buf[4096];
    size_t len;
    tse_error err;

    assert_non_null(j);
    if (tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &msg, &err) != TSE_OK)
        fail_msg("%s: %s", err.field, err.message);
    len = protobuf_c_message_get_packed_size(msg);
    assert_true(len <= sizeof(buf));
    protobuf_c_message_pack(msg, buf);
    assert_int_equal(tse_client_event_from_envelope(buf, len, &ev, NULL), TSE_CLIENT_OK);
    protobuf_c_message_free_unpacked(msg, NULL);
    json_decref(j);
    return ev;
}

/* ============================== outcomes ================================== */

typedef struct outcomes {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ok, failed;
    tse_client_status last;
    char message[TSE_CLIENT_ERROR_MESSAGE_MAX];
    int grpc_code;
} outcomes;

static void on_outcome(void *arg, const tse_client_publish_outcome *o)
{
    outcomes *r = arg;

    pthread_mutex_lock(&r->mu);
    if (o->status == TSE_CLIENT_OK) {
        r->ok++;
    } else {
        r->failed++;
        snprintf(r->message, sizeof(r->message), "%s", o->error->message);
        r->grpc_code = o->error->grpc_code;
    }
    r->last = o->status;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Waits until n outcomes came in all (false after WAIT_MS). */
static bool wait_outcomes(outcomes *r, int n)
{
    long long until = tse_test_now_ms() + WAIT_MS;
    bool done;

    pthread_mutex_lock(&r->mu);
    while (r->ok + r->failed < n && tse_test_now_ms() < until) {
        pthread_mutex_unlock(&r->mu);
        usleep(10000);
        pthread_mutex_lock(&r->mu);
    }
    done = r->ok + r->failed >= n;
    pthread_mutex_unlock(&r->mu);
    return done;
}

static tse_client_publisher *gateway_publisher(tse_client *c, outcomes *r, int answer_timeout_ms)
{
    tse_client_publisher_options o = {
        .server_assigned_ids = true, .fail_on_break = true, .answer_timeout_ms = answer_timeout_ms};
    tse_client_publisher *p = NULL;
    tse_client_error err;

    if (tse_client_publisher_create(c, &o, on_outcome, r, &p, &err) != TSE_CLIENT_OK)
        fail_msg("publisher: %s", err.message);
    return p;
}

/* ============================== envelopes ================================= */

/*
 * An envelope keeps its own source_service and gets no SDK id, on both
 * publish paths: the server stamps the id; one without a source is refused
 * by the server (the client's source would otherwise have filled it in).
 */
static void test_an_envelope_is_published_exactly_as_encoded(void **state)
{
    tse_client_event *ev = envelope("{\"event_type\":\"gw.raw\",\"source_service\":\"gateway-x\","
                                    "\"subject\":\"s1\",\"data\":{\"n\":1}}");
    tse_client_event *nosource = envelope("{\"event_type\":\"gw.raw\",\"data\":{}}");
    const char *patterns[] = {"gw.raw"};
    tse_client_subscription_spec spec = {.name = "gw-raw",
                                         .event_types = patterns,
                                         .n_event_types = 1,
                                         .start = TSE_CLIENT_START_EARLIEST};
    tse_client_publish_result res;
    tse_client_batch *batch = NULL;
    tse_client_error err;

    assert_string_equal(tse_client_event_type(ev), "gw.raw");
    assert_int_equal(tse_client_publish_event(W->client, ev, &res, &err), TSE_CLIENT_OK);
    assert_int_equal(strlen(res.event_id), 36);
    assert_false(res.duplicate);
    assert_true(res.schema_valid);
    assert_int_equal(tse_client_publish_event(W->client, nosource, NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_non_null(strstr(err.field, "source_service"));
    assert_int_equal(tse_client_subscription_create(W->client, &spec, NULL, &err), TSE_CLIENT_OK);
    assert_int_equal(tse_client_pull(W->client, "gw-raw", 10, 5000, NULL, &batch, &err),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_batch_count(batch), 1);
    assert_string_equal(tse_client_batch_event(batch, 0)->source_service, "gateway-x");
    assert_string_equal(tse_client_batch_event(batch, 0)->id, res.event_id);
    assert_string_equal(tse_client_batch_event(batch, 0)->subject, "s1");
    tse_client_batch_destroy(batch);
    tse_client_event_destroy(ev);
    tse_client_event_destroy(nosource);
}

static void test_bytes_that_are_no_event_are_refused(void **state)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    tse_client_event *ev = NULL;
    tse_client_error err;

    assert_int_equal(tse_client_event_from_envelope(junk, sizeof(junk), &ev, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "envelope");
    assert_null(ev);
}

/* A lenient server stores a misfit catalog payload as generic data and
 * says so in the result. */
static void test_the_result_says_whether_the_payload_fit_its_schema(void **state)
{
    tse_client_event *ev = envelope(
        "{\"event_type\":\"sample.created\",\"source_service\":\"gw\",\"data\":{\"n\":1}}");
    tse_client_publish_result res;

    assert_int_equal(tse_client_publish_event(W->client, ev, &res, NULL), TSE_CLIENT_OK);
    assert_false(res.schema_valid);
    tse_client_event_destroy(ev);
}

/* The publisher's outcome says the same. */
static void on_schema_outcome(void *arg, const tse_client_publish_outcome *o)
{
    int *seen = arg;

    /* 1: fit, 0: did not fit, -1: failed. */
    *seen = o->status == TSE_CLIENT_OK ? (int)o->result->schema_valid : -1;
}

static void test_the_publisher_outcome_says_whether_the_payload_fit(void **state)
{
    tse_client_event *misfit = envelope(
        "{\"event_type\":\"sample.created\",\"source_service\":\"gw\",\"data\":{\"n\":1}}");
    tse_client_event *generic =
        envelope("{\"event_type\":\"gw.schema\",\"source_service\":\"gw\",\"data\":{\"n\":1}}");
    tse_client_publisher *p = NULL;
    int seen = -2;

    assert_int_equal(
        tse_client_publisher_create(W->client, NULL, on_schema_outcome, &seen, &p, NULL),
        TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_publish(p, misfit, NULL, NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(p, WAIT_MS, NULL), TSE_CLIENT_OK);
    assert_int_equal(seen, 0);
    assert_int_equal(tse_client_publisher_publish(p, generic, NULL, NULL), TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_flush(p, WAIT_MS, NULL), TSE_CLIENT_OK);
    assert_int_equal(seen, 1);
    tse_client_publisher_destroy(p);
    tse_client_event_destroy(misfit);
    tse_client_event_destroy(generic);
}

/* ============================== failing on a break ======================== */

/*
 * With fail_on_break, an event of a stream that broke is answered with the
 * stream's status at once, not resent when the service is back; the next
 * event opens a new stream by itself.
 */
static void test_fail_on_break_fails_the_event_and_the_next_one_opens_a_stream(void **state)
{
    int port = tse_test_free_port();
    tse_test_service *svc = service_on(port);
    tse_client_event *ev =
        envelope("{\"event_type\":\"gw.break\",\"source_service\":\"gw\",\"data\":{}}");
    outcomes r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    tse_client_publisher *p;
    tse_client *c;
    char addr[64];
    long long until;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    c = tse_test_sdk_client(addr, "gw", 5000);
    p = gateway_publisher(c, &r, 0);
    assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
    assert_true(wait_outcomes(&r, 1));
    assert_int_equal(r.ok, 1);
    tse_test_service_stop(svc);
    assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
    assert_true(wait_outcomes(&r, 2));
    assert_int_equal(r.failed, 1);
    assert_int_equal(r.last, TSE_CLIENT_UNAVAILABLE);
    assert_int_equal(r.grpc_code, 14); /* UNAVAILABLE */
    svc = service_on(port);
    /* The channel reconnects with the client's backoff (at most 500 ms). */
    until = tse_test_now_ms() + WAIT_MS;
    do {
        int before = r.ok + r.failed;
        assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
        assert_true(wait_outcomes(&r, before + 1));
        if (r.last != TSE_CLIENT_OK)
            usleep(100000);
    } while (r.last != TSE_CLIENT_OK && tse_test_now_ms() < until);
    assert_int_equal(r.last, TSE_CLIENT_OK);
    tse_client_publisher_destroy(p);
    tse_client_event_destroy(ev);
    tse_client_destroy(c);
    tse_test_service_stop(svc);
}

/* A service that stopped answering (SIGSTOP: its socket still accepts)
 * ends the stream after answer_timeout_ms: DEADLINE_EXCEEDED. */
static void test_an_event_unanswered_past_the_answer_timeout_fails_its_stream(void **state)
{
    tse_test_service *svc = service_on(tse_test_free_port());
    tse_client_event *ev =
        envelope("{\"event_type\":\"gw.slow\",\"source_service\":\"gw\",\"data\":{}}");
    outcomes r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    tse_client *c = tse_test_sdk_client(svc->addr, "gw", 5000);
    tse_client_publisher *p = gateway_publisher(c, &r, 500);
    long long t0;

    assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
    assert_true(wait_outcomes(&r, 1));
    assert_int_equal(r.ok, 1);
    freeze(svc->pid);
    t0 = tse_test_now_ms();
    assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
    assert_true(wait_outcomes(&r, 2));
    assert_true(tse_test_now_ms() - t0 >= 450);
    assert_int_equal(r.last, TSE_CLIENT_DEADLINE_EXCEEDED);
    assert_non_null(strstr(r.message, "did not answer in time"));
    kill(svc->pid, SIGCONT);
    tse_client_publisher_destroy(p);
    tse_client_event_destroy(ev);
    tse_client_destroy(c);
    tse_test_service_stop(svc);
}

/*
 * Regression: with fail_on_break, an event published while a broken stream
 * is still closing (here from the callback that fails that stream's event,
 * the service resumed meanwhile) goes out on the next stream and is
 * answered; it used to fail with the old stream's status.
 */
typedef struct republish {
    outcomes r;
    tse_client_publisher *p;
    tse_client_event *ev;
    pid_t pid;
    bool done;
} republish;

static void on_outcome_republish(void *arg, const tse_client_publish_outcome *o)
{
    republish *rp = arg;

    on_outcome(&rp->r, o);
    if (o->status != TSE_CLIENT_OK && !rp->done) {
        rp->done = true;
        kill(rp->pid, SIGCONT);
        assert_int_equal(tse_client_publisher_publish(rp->p, rp->ev, NULL, NULL), TSE_CLIENT_OK);
    }
}

static void test_an_event_published_while_a_broken_stream_closes_goes_on_the_next(void **state)
{
    tse_test_service *svc = service_on(tse_test_free_port());
    republish rp = {.r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER},
                    .pid = svc->pid};
    tse_client_publisher_options o = {
        .server_assigned_ids = true, .fail_on_break = true, .answer_timeout_ms = 500};
    tse_client *c = tse_test_sdk_client(svc->addr, "gw", 5000);

    rp.ev = envelope("{\"event_type\":\"gw.closing\",\"source_service\":\"gw\",\"data\":{}}");
    assert_int_equal(tse_client_publisher_create(c, &o, on_outcome_republish, &rp, &rp.p, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_publisher_publish(rp.p, rp.ev, NULL, NULL), TSE_CLIENT_OK);
    assert_true(wait_outcomes(&rp.r, 1));
    assert_int_equal(rp.r.ok, 1);
    freeze(svc->pid);
    assert_int_equal(tse_client_publisher_publish(rp.p, rp.ev, NULL, NULL), TSE_CLIENT_OK);
    if (!wait_outcomes(&rp.r, 3))
        fail_msg("ok %d failed %d last %d: %s", rp.r.ok, rp.r.failed, rp.r.last, rp.r.message);
    assert_int_equal(rp.r.failed, 1);
    assert_int_equal(rp.r.ok, 2);
    assert_int_equal(rp.r.last, TSE_CLIENT_OK);
    tse_client_publisher_destroy(rp.p);
    tse_client_event_destroy(rp.ev);
    tse_client_destroy(c);
    tse_test_service_stop(svc);
}

/* Cancel answers what is unanswered (CANCELLED) before it returns, and
 * refuses later events, while the publisher stays allocated. */
static void test_cancel_answers_every_unanswered_event_before_it_returns(void **state)
{
    tse_test_service *svc = service_on(tse_test_free_port());
    tse_client_event *ev =
        envelope("{\"event_type\":\"gw.cancel\",\"source_service\":\"gw\",\"data\":{}}");
    outcomes r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    tse_client *c = tse_test_sdk_client(svc->addr, "gw", 5000);
    tse_client_publisher *p = gateway_publisher(c, &r, 0);
    tse_client_error err;

    assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
    assert_true(wait_outcomes(&r, 1));
    freeze(svc->pid);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tse_client_publisher_publish(p, ev, NULL, NULL), TSE_CLIENT_OK);
    tse_client_publisher_cancel(p);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.failed, 3);
    assert_int_equal(r.last, TSE_CLIENT_CANCELLED);
    pthread_mutex_unlock(&r.mu);
    assert_int_equal(tse_client_publisher_publish(p, ev, NULL, &err), TSE_CLIENT_CANCELLED);
    tse_client_publisher_cancel(p); /* again: nothing left */
    kill(svc->pid, SIGCONT);
    tse_client_publisher_destroy(p);
    assert_int_equal(r.ok + r.failed, 4);
    tse_client_event_destroy(ev);
    tse_client_destroy(c);
    tse_test_service_stop(svc);
}

/* ============================== asynchronous calls ======================== */

#define SERVICE(m) "/tracseq.events.v1.EventService/" m

typedef struct answer {
    pthread_mutex_t mu;
    bool done;
    tse_client_status status;
    int grpc_code;
    char field[TSE_CLIENT_ERROR_FIELD_MAX];
    char message[TSE_CLIENT_ERROR_MESSAGE_MAX];
    uint8_t *bytes;
    size_t len;
} answer;

static void on_answer(void *arg, tse_client_status status, const tse_client_error *err,
                      const void *response, size_t len)
{
    answer *a = arg;

    pthread_mutex_lock(&a->mu);
    a->status = status;
    a->grpc_code = err != NULL ? err->grpc_code : 0;
    snprintf(a->field, sizeof(a->field), "%s", err != NULL ? err->field : "");
    snprintf(a->message, sizeof(a->message), "%s", err != NULL ? err->message : "");
    a->bytes = malloc(len ? len : 1);
    memcpy(a->bytes, response, len);
    a->len = len;
    a->done = true;
    pthread_mutex_unlock(&a->mu);
}

/* Waits for the answer; false after timeout_ms. */
static bool wait_answer(answer *a, int timeout_ms)
{
    long long until = tse_test_now_ms() + timeout_ms;
    bool done;

    for (;;) {
        pthread_mutex_lock(&a->mu);
        done = a->done;
        pthread_mutex_unlock(&a->mu);
        if (done || tse_test_now_ms() >= until)
            return done;
        usleep(5000);
    }
}

/* Starts msg as method on c; the handle into *call when call != NULL. */
static void start(tse_client *c, const char *method, const ProtobufCMessage *msg,
                  const tse_client_call_options *o, answer *a, tse_client_call **call)
{
    uint8_t buf[4096];
    size_t len = protobuf_c_message_get_packed_size(msg);
    tse_client_error err;

    assert_true(len <= sizeof(buf));
    protobuf_c_message_pack(msg, buf);
    if (tse_client_call_start(c, method, buf, len, o, on_answer, a, call, &err) != TSE_CLIENT_OK)
        fail_msg("start %s: %s", method, err.message);
}

static void create_sub(const char *name, const char *pattern)
{
    const char *patterns[] = {pattern};
    tse_client_subscription_spec spec = {.name = name,
                                         .event_types = patterns,
                                         .n_event_types = 1,
                                         .start = TSE_CLIENT_START_EARLIEST};
    tse_client_error err;

    if (tse_client_subscription_create(W->client, &spec, NULL, &err) != TSE_CLIENT_OK)
        fail_msg("create %s: %s", name, err.message);
}

/* An asynchronous Publish carries its own metadata: the server stamps the
 * event's correlation id from x-correlation-id. */
static void test_an_async_call_answers_with_the_response_and_sends_its_metadata(void **state)
{
    static const char cid[] = "5b8f2f0e-8f43-4c1e-9d55-5a0c7c1e2d3f";
    tse_client_metadata md = {"x-correlation-id", cid};
    tse_client_call_options o = {.metadata = &md, .n_metadata = 1};
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    json_t *j =
        json_pack("{s:s, s:s, s:{}}", "event_type", "gw.async", "source_service", "gw", "data");
    Tracseq__Events__V1__PublishResponse *resp;
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tse_client_batch *batch = NULL;
    ProtobufCMessage *ev = NULL;

    assert_int_equal(
        tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &ev, NULL), TSE_OK);
    req.event = (Tracseq__Events__V1__Event *)ev;
    start(W->client, SERVICE("Publish"), &req.base, &o, &a, NULL);
    protobuf_c_message_free_unpacked(ev, NULL);
    json_decref(j);
    assert_true(wait_answer(&a, WAIT_MS));
    if (a.status != TSE_CLIENT_OK)
        fail_msg("Publish: %s", a.message);
    resp = tracseq__events__v1__publish_response__unpack(NULL, a.len, a.bytes);
    assert_non_null(resp);
    assert_int_equal(strlen(resp->event_id), 36);
    create_sub("gw-async", "gw.async");
    assert_int_equal(tse_client_pull(W->client, "gw-async", 10, 5000, NULL, &batch, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_batch_count(batch), 1);
    assert_string_equal(tse_client_batch_event(batch, 0)->id, resp->event_id);
    assert_string_equal(tse_client_batch_event(batch, 0)->correlation_id, cid);
    tse_client_batch_destroy(batch);
    tracseq__events__v1__publish_response__free_unpacked(resp, NULL);
    free(a.bytes);
}

/* A server error comes with its gRPC code and details. */
static void test_an_async_call_the_server_refuses_carries_its_code(void **state)
{
    Tracseq__Events__V1__GetSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};

    req.name = "gw-nobody";
    start(W->client, SERVICE("GetSubscription"), &req.base, NULL, &a, NULL);
    assert_true(wait_answer(&a, WAIT_MS));
    assert_int_equal(a.status, TSE_CLIENT_NOT_FOUND);
    assert_int_equal(a.grpc_code, 5); /* NOT_FOUND */
    assert_true(strlen(a.message) > 0);
    free(a.bytes);
}

/* A refusal naming a field carries it (the server's structured details). */
static void test_an_async_call_refused_for_a_field_names_it(void **state)
{
    Tracseq__Events__V1__GetSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};

    req.name = "not a name";
    start(W->client, SERVICE("GetSubscription"), &req.base, NULL, &a, NULL);
    assert_true(wait_answer(&a, WAIT_MS));
    assert_int_equal(a.status, TSE_CLIENT_INVALID_ARGUMENT);
    assert_true(strlen(a.field) > 0);
    free(a.bytes);
}

/* A long poll ends when cancelled, with the status and reason given; a
 * cancel after the end does nothing. */
static void test_cancel_ends_a_waiting_call_with_the_status_given(void **state)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tse_client_call *call = NULL;
    long long t0;

    create_sub("gw-wait", "gw.never");
    req.subscription = "gw-wait";
    req.wait_ms = 15000;
    start(W->client, SERVICE("Pull"), &req.base, &(tse_client_call_options){.timeout_ms = 30000},
          &a, &call);
    usleep(200000);
    assert_false(a.done);
    t0 = tse_test_now_ms();
    tse_client_call_cancel(call, TSE_CLIENT_CANCELLED, "the HTTP client went away");
    assert_true(wait_answer(&a, 5000));
    assert_true(tse_test_now_ms() - t0 < 5000);
    assert_int_equal(a.status, TSE_CLIENT_CANCELLED);
    assert_int_equal(a.grpc_code, 1); /* CANCELLED */
    assert_string_equal(a.message, "the HTTP client went away");
    tse_client_call_cancel(call, TSE_CLIENT_UNAVAILABLE, "late");
    tse_client_call_release(call);
    free(a.bytes);
}

static void test_a_call_past_its_deadline_is_deadline_exceeded(void **state)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};

    create_sub("gw-late", "gw.never");
    req.subscription = "gw-late";
    req.wait_ms = 10000;
    start(W->client, SERVICE("Pull"), &req.base, &(tse_client_call_options){.timeout_ms = 300}, &a,
          NULL);
    assert_true(wait_answer(&a, WAIT_MS));
    assert_int_equal(a.status, TSE_CLIENT_DEADLINE_EXCEEDED);
    free(a.bytes);
}

/* Destroy cancels what is still running; the callback has run when it
 * returns. */
static void test_destroying_the_client_ends_its_calls_first(void **state)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    tse_client *c = tse_test_sdk_client(W->service->addr, "gw", 30000);
    answer a = {.mu = PTHREAD_MUTEX_INITIALIZER};

    create_sub("gw-destroy", "gw.never");
    req.subscription = "gw-destroy";
    req.wait_ms = 15000;
    start(c, SERVICE("Pull"), &req.base, NULL, &a, NULL);
    usleep(200000);
    tse_client_destroy(c);
    assert_true(a.done);
    assert_int_equal(a.status, TSE_CLIENT_CANCELLED);
    free(a.bytes);
}

/* ============================== asynchronous streams ====================== */

typedef struct streamed {
    pthread_mutex_t mu;
    tse_client_stream *stream;
    int messages, ends;
    int pause_after; /* > 0: the handler pauses the stream at that message */
    char ack_ids[8][128];
    bool ended_after_messages;
    tse_client_status status;
    int grpc_code;
    char message[TSE_CLIENT_ERROR_MESSAGE_MAX];
} streamed;

static void on_stream_message(void *arg, const void *msg, size_t len)
{
    streamed *t = arg;
    Tracseq__Events__V1__Delivery *d = tracseq__events__v1__delivery__unpack(NULL, len, msg);

    assert_non_null(d);
    pthread_mutex_lock(&t->mu);
    if (t->messages < 8)
        snprintf(t->ack_ids[t->messages], sizeof(t->ack_ids[0]), "%s", d->ack_id);
    if (++t->messages == t->pause_after)
        tse_client_stream_pause(t->stream, true);
    pthread_mutex_unlock(&t->mu);
    tracseq__events__v1__delivery__free_unpacked(d, NULL);
}

static void on_stream_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    streamed *t = arg;

    pthread_mutex_lock(&t->mu);
    t->ends++;
    t->status = status;
    t->grpc_code = err != NULL ? err->grpc_code : 0;
    snprintf(t->message, sizeof(t->message), "%s", err != NULL ? err->message : "");
    pthread_mutex_unlock(&t->mu);
}

/* Subscribes to name on c; the handle into t->stream. */
static void subscribe(tse_client *c, const char *name, streamed *t)
{
    static const tse_client_stream_handlers h = {on_stream_message, on_stream_end};
    Tracseq__Events__V1__SubscribeRequest first = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    uint8_t buf[256];
    size_t len;
    tse_client_error err;

    first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    first.subscription_name = (char *)name;
    len = protobuf_c_message_pack(&first.base, buf);
    pthread_mutex_lock(&t->mu); /* the handlers wait until the handle is set */
    if (tse_client_stream_start(c, SERVICE("Subscribe"), buf, len,
                                &(tse_client_call_options){.timeout_ms = -1}, &h, t, &t->stream,
                                &err) != TSE_CLIENT_OK)
        fail_msg("Subscribe: %s", err.message);
    pthread_mutex_unlock(&t->mu);
}

static int count(streamed *t, bool ends)
{
    int n;

    pthread_mutex_lock(&t->mu);
    n = ends ? t->ends : t->messages;
    pthread_mutex_unlock(&t->mu);
    return n;
}

static bool wait_count(streamed *t, bool ends, int n)
{
    long long until = tse_test_now_ms() + WAIT_MS;

    while (count(t, ends) < n && tse_test_now_ms() < until)
        usleep(10000);
    return count(t, ends) >= n;
}

static void publish_n(const char *type, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(tse_client_publish_json(W->client, type, "{}", NULL, NULL, NULL),
                         TSE_CLIENT_OK);
}

/* The subscription's acked counter (a uint64: a JSON string). */
static long long acked(const char *name)
{
    char *text = NULL;
    json_t *j, *v;
    long long n;

    assert_int_equal(tse_client_subscription_get(W->client, name, &text, NULL), TSE_CLIENT_OK);
    j = json_loads(text, 0, NULL);
    v = json_object_get(json_object_get(j, "stats"), "acked");
    n = json_is_string(v) ? atoll(json_string_value(v)) : json_integer_value(v);
    json_decref(j);
    tse_client_free(text);
    return n;
}

/* Every response reaches on_message; requests sent later (acks) reach the
 * server; a cancel ends it once, after the messages, as given. */
static bool stream_idle(void *arg)
{
    return !tse_client_stream_busy(arg);
}

static void test_a_stream_hands_over_responses_and_sends_later_requests(void **state)
{
    Tracseq__Events__V1__SubscribeRequest ack = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ids = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    streamed t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char *id_ptrs[3];
    uint8_t buf[1024];
    long long until;

    create_sub("gw-stream", "gw.stream");
    publish_n("gw.stream", 3);
    subscribe(W->client, "gw-stream", &t);
    assert_true(wait_count(&t, false, 3));
    for (int i = 0; i < 3; i++)
        id_ptrs[i] = t.ack_ids[i];
    ids.n_ack_ids = 3;
    ids.ack_ids = id_ptrs;
    ack.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
    ack.ack = &ids;
    assert_int_equal(tse_client_stream_send(t.stream, buf, protobuf_c_message_pack(&ack.base, buf)),
                     TSE_CLIENT_OK);
    until = tse_test_now_ms() + WAIT_MS;
    while (acked("gw-stream") < 3 && tse_test_now_ms() < until)
        usleep(50000);
    assert_int_equal(acked("gw-stream"), 3);
    /* Its one request went out: nothing is left queued or being written. */
    assert_true(tse_test_wait_until(stream_idle, t.stream, WAIT_MS, "the ack's send to complete"));
    tse_client_stream_cancel(t.stream, TSE_CLIENT_CANCELLED, "the HTTP client went away");
    assert_true(wait_count(&t, true, 1));
    usleep(100000);
    assert_int_equal(t.ends, 1);
    assert_int_equal(t.messages, 3);
    assert_int_equal(t.status, TSE_CLIENT_CANCELLED);
    assert_string_equal(t.message, "the HTTP client went away");
    assert_int_equal(tse_client_stream_send(t.stream, buf, 0), TSE_CLIENT_CANCELLED);
    tse_client_stream_release(t.stream);
}

/* Paused from its own handler, a stream takes no further response until
 * resumed. */
static void test_a_paused_stream_receives_nothing_until_resumed(void **state)
{
    streamed t = {.mu = PTHREAD_MUTEX_INITIALIZER, .pause_after = 1};

    create_sub("gw-pause", "gw.pause");
    publish_n("gw.pause", 4);
    subscribe(W->client, "gw-pause", &t);
    assert_true(wait_count(&t, false, 1));
    usleep(500000);
    assert_int_equal(count(&t, false), 1);
    tse_client_stream_pause(t.stream, false);
    assert_true(wait_count(&t, false, 4));
    tse_client_stream_cancel(t.stream, TSE_CLIENT_CANCELLED, NULL);
    assert_true(wait_count(&t, true, 1));
    tse_client_stream_release(t.stream);
}

/* The server's status ends the stream: NOT_FOUND for an unknown name. */
static void test_a_stream_the_server_refuses_ends_with_its_status(void **state)
{
    streamed t = {.mu = PTHREAD_MUTEX_INITIALIZER};

    subscribe(W->client, "gw-nobody-streams", &t);
    assert_true(wait_count(&t, true, 1));
    assert_int_equal(t.status, TSE_CLIENT_NOT_FOUND);
    assert_int_equal(t.grpc_code, 5);
    assert_int_equal(t.messages, 0);
    /* Ended before it was asked: a half-close has nothing left to close. */
    assert_int_equal(tse_client_stream_close_send(t.stream), TSE_CLIENT_CANCELLED);
    tse_client_stream_release(t.stream);
}

/* Destroying the client ends its streams; on_end has run when it returns. */
static void test_destroying_the_client_ends_its_streams_first(void **state)
{
    tse_client *c = tse_test_sdk_client(W->service->addr, "gw", 5000);
    streamed t = {.mu = PTHREAD_MUTEX_INITIALIZER};

    create_sub("gw-stream-destroy", "gw.never");
    subscribe(c, "gw-stream-destroy", &t);
    usleep(200000);
    tse_client_stream_release(t.stream);
    tse_client_destroy(c);
    assert_int_equal(t.ends, 1);
    assert_int_equal(t.status, TSE_CLIENT_CANCELLED);
}

/* Answers of a PublishStream, counted by a stream of their own. */
typedef struct published {
    pthread_mutex_t mu;
    int answers, ok, ends;
    tse_client_status status;
} published;

static void on_publish_answer(void *arg, const void *msg, size_t len)
{
    published *p = arg;
    Tracseq__Events__V1__PublishResponse *r =
        tracseq__events__v1__publish_response__unpack(NULL, len, msg);

    assert_non_null(r);
    pthread_mutex_lock(&p->mu);
    p->answers++;
    p->ok += r->error == NULL && r->event_id[0] != '\0';
    pthread_mutex_unlock(&p->mu);
    tracseq__events__v1__publish_response__free_unpacked(r, NULL);
}

static void on_publish_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    published *p = arg;

    (void)err;
    pthread_mutex_lock(&p->mu);
    p->ends++;
    p->status = status;
    pthread_mutex_unlock(&p->mu);
}

static size_t publish_request(uint8_t *buf)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;

    ev.event_type = "gw.half";
    ev.source_service = "gw";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    return protobuf_c_message_pack(&req.base, buf);
}

static bool publish_ended(published *p)
{
    long long until = tse_test_now_ms() + WAIT_MS;
    int ends;

    do {
        pthread_mutex_lock(&p->mu);
        ends = p->ends;
        pthread_mutex_unlock(&p->mu);
    } while (ends == 0 && tse_test_now_ms() < until && usleep(10000) == 0);
    return ends == 1;
}

/* A half-close ends the requests after those queued: the server answers
 * every one, then ends the stream with OK; a later send is refused. The
 * second close came just after the first: under load the server may have
 * ended the stream in between, which must not change its answer (a flake
 * of the sanitizer run, regression). */
static void test_a_half_closed_stream_is_answered_then_ends_with_the_servers_status(void **state)
{
    static const tse_client_stream_handlers h = {on_publish_answer, on_publish_end};
    published p = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tse_client_stream *s = NULL;
    uint8_t buf[256];
    size_t len = publish_request(buf);

    assert_int_equal(tse_client_stream_start(W->client, SERVICE("PublishStream"), buf, len,
                                             &(tse_client_call_options){.timeout_ms = -1}, &h, &p,
                                             &s, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_stream_send(s, buf, len), TSE_CLIENT_OK);
    assert_int_equal(tse_client_stream_send(s, buf, len), TSE_CLIENT_OK);
    assert_int_equal(tse_client_stream_close_send(s), TSE_CLIENT_OK);
    assert_int_equal(tse_client_stream_close_send(s), TSE_CLIENT_OK);
    assert_int_equal(tse_client_stream_send(s, buf, len), TSE_CLIENT_FAILED_PRECONDITION);
    assert_true(publish_ended(&p));
    assert_int_equal(p.status, TSE_CLIENT_OK);
    assert_int_equal(p.answers, 3);
    assert_int_equal(p.ok, 3);
    /* Asked before the end: still OK, however the two raced. */
    assert_int_equal(tse_client_stream_close_send(s), TSE_CLIENT_OK);
    tse_client_stream_release(s);
}

/* The race of the test above made certain: the server's end has come in
 * before the send. The caller half-closed, so the send is refused as after
 * a half-close, not as after an end (it was CANCELLED then: regression). */
static void test_a_send_after_close_send_is_refused_so_even_once_the_stream_ended(void **state)
{
    static const tse_client_stream_handlers h = {on_publish_answer, on_publish_end};
    published p = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tse_client_stream *s = NULL;
    uint8_t buf[256];
    size_t len = publish_request(buf);

    assert_int_equal(tse_client_stream_start(W->client, SERVICE("PublishStream"), buf, len,
                                             &(tse_client_call_options){.timeout_ms = -1}, &h, &p,
                                             &s, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(tse_client_stream_close_send(s), TSE_CLIENT_OK);
    assert_true(publish_ended(&p));
    assert_int_equal(p.status, TSE_CLIENT_OK);
    assert_int_equal(p.answers, 1);
    assert_int_equal(tse_client_stream_send(s, buf, len), TSE_CLIENT_FAILED_PRECONDITION);
    assert_int_equal(tse_client_stream_close_send(s), TSE_CLIENT_OK);
    tse_client_stream_release(s);
}

/* A PublishStream whose handler cancels it at the second answer, then
 * sends and half-closes: the pump thread runs the handler, so the status
 * of the cancel cannot have come in yet. */
typedef struct cancelling {
    published p;
    tse_client_stream *s; /* under p.mu */
    uint8_t buf[256];
    size_t len;
    tse_client_status sent, closed;
} cancelling;

static void on_answer_cancel(void *arg, const void *msg, size_t len)
{
    cancelling *x = arg;
    tse_client_stream *s;
    int answers;

    on_publish_answer(&x->p, msg, len);
    pthread_mutex_lock(&x->p.mu);
    answers = x->p.answers;
    s = x->s;
    pthread_mutex_unlock(&x->p.mu);
    if (answers != 2)
        return;
    tse_client_stream_cancel(s, TSE_CLIENT_CANCELLED, "the test cancels");
    x->sent = tse_client_stream_send(s, x->buf, x->len);
    x->closed = tse_client_stream_close_send(s);
}

/* A send or a first close_send after the caller's cancel is CANCELLED at
 * once, not queued on the cancelled call until its status comes in (they
 * were OK before it, CANCELLED after: regression). */
static void test_a_send_after_cancel_is_cancelled_before_the_end_comes(void **state)
{
    static const tse_client_stream_handlers h = {on_answer_cancel, on_publish_end};
    cancelling x = {
        .p = {.mu = PTHREAD_MUTEX_INITIALIZER}, .sent = TSE_CLIENT_OK, .closed = TSE_CLIENT_OK};
    tse_client_stream *s = NULL;

    x.len = publish_request(x.buf);
    assert_int_equal(tse_client_stream_start(W->client, SERVICE("PublishStream"), x.buf, x.len,
                                             &(tse_client_call_options){.timeout_ms = -1}, &h, &x,
                                             &s, NULL),
                     TSE_CLIENT_OK);
    pthread_mutex_lock(&x.p.mu);
    x.s = s;
    pthread_mutex_unlock(&x.p.mu);
    assert_int_equal(tse_client_stream_send(s, x.buf, x.len), TSE_CLIENT_OK);
    assert_true(publish_ended(&x.p));
    assert_int_equal(x.p.status, TSE_CLIENT_CANCELLED);
    assert_int_equal(x.p.answers, 2);
    assert_int_equal(x.sent, TSE_CLIENT_CANCELLED);
    assert_int_equal(x.closed, TSE_CLIENT_CANCELLED);
    assert_int_equal(tse_client_stream_send(s, x.buf, x.len), TSE_CLIENT_CANCELLED);
    tse_client_stream_release(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_envelope_is_published_exactly_as_encoded),
        cmocka_unit_test(test_bytes_that_are_no_event_are_refused),
        cmocka_unit_test(test_the_result_says_whether_the_payload_fit_its_schema),
        cmocka_unit_test(test_the_publisher_outcome_says_whether_the_payload_fit),
        cmocka_unit_test(test_fail_on_break_fails_the_event_and_the_next_one_opens_a_stream),
        cmocka_unit_test(test_an_event_unanswered_past_the_answer_timeout_fails_its_stream),
        cmocka_unit_test(test_an_event_published_while_a_broken_stream_closes_goes_on_the_next),
        cmocka_unit_test(test_cancel_answers_every_unanswered_event_before_it_returns),
        cmocka_unit_test(test_an_async_call_answers_with_the_response_and_sends_its_metadata),
        cmocka_unit_test(test_an_async_call_the_server_refuses_carries_its_code),
        cmocka_unit_test(test_an_async_call_refused_for_a_field_names_it),
        cmocka_unit_test(test_cancel_ends_a_waiting_call_with_the_status_given),
        cmocka_unit_test(test_a_call_past_its_deadline_is_deadline_exceeded),
        cmocka_unit_test(test_destroying_the_client_ends_its_calls_first),
        cmocka_unit_test(test_a_stream_hands_over_responses_and_sends_later_requests),
        cmocka_unit_test(test_a_paused_stream_receives_nothing_until_resumed),
        cmocka_unit_test(test_a_stream_the_server_refuses_ends_with_its_status),
        cmocka_unit_test(test_destroying_the_client_ends_its_streams_first),
        cmocka_unit_test(test_a_half_closed_stream_is_answered_then_ends_with_the_servers_status),
        cmocka_unit_test(test_a_send_after_close_send_is_refused_so_even_once_the_stream_ended),
        cmocka_unit_test(test_a_send_after_cancel_is_cancelled_before_the_end_comes),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
