/*
 * test_service_pull.c - Pull end to end: a real redis-server, the real
 * tracseq-events binary and the real REST bridge (a client of Pull), over
 * loopback.
 *
 * What this file holds the service to: a pull gathers events across every
 * priority level, priority 1 first, up to max_events (up to 1,000, not a
 * batch size of the engine), and is answered exactly once. Before the fix a
 * pull whose events spanned two priority levels was answered once per level,
 * the second time on a call already freed, and the process died within a
 * few such pulls. Every test counts the service's "Pull" request lines: one
 * per pull made, never more.
 *
 * Invariants of this file: every test uses its own subscription names and
 * event types, so tests sharing one Redis and one service never see each
 * other's events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "events.h"
#include "grpc_client.h"
#include "harness.h"
#include "http_client.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define SERVICE          "/tracseq.events.v1.EventService/"
#define M_PUBLISH        SERVICE "Publish"
#define M_PUBLISH_STREAM SERVICE "PublishStream"
#define M_PULL           SERVICE "Pull"
#define M_ACKNOWLEDGE    SERVICE "Acknowledge"
#define UNARY_TIMEOUT_MS 10000

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__PullResponse PullResponse;

/* ===================== the world ========================================= */

typedef tse_test_world world;

/* Pull calls made on the service, directly or through the bridge. */
static int pulls;

static int world_up(void **state)
{
    *state = tse_test_world_start(tse_test_redis_start(false), NULL, true, NULL);
    return 0;
}

/* A service that answered a call twice dies or aborts before its clean exit. */
static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* Occurrences of needle in the service's log. */
static int log_count(const world *w, const char *needle)
{
    FILE *f = fopen(w->service->log, "r");
    char line[8192];
    int n = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL)
        for (const char *p = line; (p = strstr(p, needle)) != NULL; p += strlen(needle))
            n++;
    fclose(f);
    return n;
}

/*
 * The service is alive and wrote exactly one request line per pull made. A
 * request line is written when the call is finished, so a call finished
 * twice shows as one line too many (once with the method name freed).
 */
static void assert_each_pull_answered_once(const world *w)
{
    tse_test_waiter waiter;
    int lines;

    assert_int_equal(kill(w->service->pid, 0), 0);
    assert_int_equal(waitpid(w->service->pid, NULL, WNOHANG), 0);
    /* The line of the last answer may be written just after the client got it. */
    tse_test_waiter_init(&waiter, 5000);
    while ((lines = log_count(w, "\"method\":\"Pull\"")) < pulls && tse_test_waiter_poll(&waiter)) {
    }
    if (lines != pulls)
        fail_msg("%d pulls made, %d Pull request lines logged (see %s)", pulls, lines,
                 w->service->log);
}

/* ===================== events and calls ================================== */

static int seq_of(const Delivery *d)
{
    assert_non_null(d->event);
    assert_memory_equal(d->event->subject, "seq-", 4);
    return atoi(d->event->subject + 4);
}

static void publish_one(world *w, const char *type, int priority, int seq)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    PublishResponse *resp = NULL;
    tse_test_status st;
    tse_test_event t;
    grpc_status_code code;

    req.event = tse_test_event_init(&t, "pulltest", type, priority, seq, NULL);
    code = tse_test_unary(w->ch, M_PUBLISH, &req.base,
                          &tracseq__events__v1__publish_response__descriptor,
                          (ProtobufCMessage **)&resp, &st, UNARY_TIMEOUT_MS, NULL, NULL);
    if (code != GRPC_STATUS_OK)
        fail_msg("publishing %s p%d seq %d: status %d '%s'", type, priority, seq, code, st.details);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* Publishes seq from .. from+n-1 at one priority through PublishStream. */
static void publish_many(world *w, const char *type, int priority, int from, int n)
{
    tse_test_stream *s = tse_test_stream_open(w->ch, M_PUBLISH_STREAM, 60000, NULL, NULL);
    tse_test_status st;

    for (int i = 0; i < n; i++) {
        PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        tse_test_event t;
        req.event = tse_test_event_init(&t, "pulltest", type, priority, from + i, NULL);
        assert_true(tse_test_stream_send(s, &req.base));
    }
    for (int i = 0; i < n; i++) {
        PublishResponse *r = (PublishResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_response__descriptor, 30000, NULL);
        if (r == NULL || r->error != NULL)
            fail_msg("PublishStream of %s seq %d failed", type, from + i);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_true(tse_test_stream_close_send(s));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_OK);
}

/* A minute to ack: no redelivery within a test. */
static void create_sub(world *w, const char *name, const char *pattern,
                       Tracseq__Events__V1__StartPosition start, bool auto_ack)
{
    tse_test_subscription t;
    Subscription *sub = tse_test_subscription_init(&t, name, pattern, start);

    sub->auto_ack = auto_ack;
    sub->ack_deadline_ms = 60000;
    tse_test_subscription_create(w->ch, sub, UNARY_TIMEOUT_MS);
}

static PullResponse *pull_ok(world *w, const char *name, uint32_t max, uint32_t wait_ms)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    PullResponse *resp = NULL;
    tse_test_status st;
    grpc_status_code code;

    req.subscription = (char *)name;
    req.max_events = max;
    req.wait_ms = wait_ms;
    code = tse_test_unary(w->ch, M_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor,
                          (ProtobufCMessage **)&resp, &st, UNARY_TIMEOUT_MS, NULL, NULL);
    pulls++;
    if (code != GRPC_STATUS_OK)
        fail_msg("Pull %s (max %u): status %d '%s'", name, max, code, st.details);
    assert_non_null(resp);
    return resp;
}

static void acknowledge_all(world *w, const char *name, const PullResponse *r)
{
    Tracseq__Events__V1__AcknowledgeRequest req = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__AcknowledgeResponse *resp = NULL;
    char **ids = calloc(r->n_deliveries, sizeof(*ids));
    tse_test_status st;

    if (r->n_deliveries == 0) {
        free(ids);
        return;
    }
    for (size_t i = 0; i < r->n_deliveries; i++)
        ids[i] = r->deliveries[i]->ack_id;
    req.subscription = (char *)name;
    req.ack_ids = ids;
    req.n_ack_ids = r->n_deliveries;
    assert_int_equal(tse_test_unary(w->ch, M_ACKNOWLEDGE, &req.base,
                                    &tracseq__events__v1__acknowledge_response__descriptor,
                                    (ProtobufCMessage **)&resp, &st, UNARY_TIMEOUT_MS, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_int_equal(resp->acked, r->n_deliveries);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(ids);
}

/* Priorities of a pull's deliveries never go down (priority 1 first). */
static void assert_priority_order(const PullResponse *r, int *last_priority)
{
    for (size_t i = 0; i < r->n_deliveries; i++) {
        int p = r->deliveries[i]->event->priority;
        if (p < *last_priority)
            fail_msg("delivery %zu has priority %d after priority %d", i, p, *last_priority);
        *last_priority = p;
    }
}

/* ===================== the reported crash ================================ */

/* The report: three events at priorities 1, 2 and 3, one Pull of 5. It
 * was answered with the priority-1 event only, then again, and crashed. */
static void test_pull_over_three_priorities_answers_once_with_all_three(void **state)
{
    world *w = *state;

    create_sub(w, "crash1", "crash.*", TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST,
               false);
    for (int round = 0; round < 5; round++) {
        int last = 0;
        for (int p = 1; p <= 3; p++)
            publish_one(w, "crash.thing", p, 10 * round + p);
        PullResponse *r = pull_ok(w, "crash1", 5, 1000);
        if (r->n_deliveries != 3)
            fail_msg("round %d: pulled %zu of 3 events", round, r->n_deliveries);
        assert_priority_order(r, &last);
        for (size_t i = 0; i < 3; i++) {
            assert_int_equal(r->deliveries[i]->event->priority, (int)i + 1);
            assert_int_equal(seq_of(r->deliveries[i]), 10 * round + (int)i + 1);
        }
        acknowledge_all(w, "crash1", r);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_each_pull_answered_once(w);
    }
}

/* A backlog older than the subscription (start earliest), pulled two at a
 * time: each pull takes the two most urgent left, across levels. */
static void test_earliest_backlog_pulled_two_at_a_time_in_priority_order(void **state)
{
    world *w = *state;
    int want[] = {1, 4, 2, 5, 3, 6}; /* seq by priority: p1 {1,4}, p2 {2,5}, p3 {3,6} */
    int got = 0;

    for (int round = 0; round < 2; round++)
        for (int p = 1; p <= 3; p++)
            publish_one(w, "backlog.thing", p, 3 * round + p);
    create_sub(w, "backlog2", "backlog.*",
               TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST, false);
    for (int i = 0; i < 3; i++) {
        PullResponse *r = pull_ok(w, "backlog2", 2, 1000);
        if (r->n_deliveries != 2)
            fail_msg("pull %d: %zu events, want 2", i, r->n_deliveries);
        for (size_t k = 0; k < r->n_deliveries; k++)
            assert_int_equal(seq_of(r->deliveries[k]), want[got++]);
        acknowledge_all(w, "backlog2", r);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    PullResponse *r = pull_ok(w, "backlog2", 2, 0);
    assert_int_equal(r->n_deliveries, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_each_pull_answered_once(w);
}

/* ===================== volume ============================================ */

/* More than 64 (the engine's batch) across all five priorities: one pull
 * of 1,000 takes the whole backlog of 500, priority 1 first, publish order
 * within a priority. */
static void test_one_pull_takes_500_across_five_priorities_in_priority_order(void **state)
{
    world *w = *state;
    enum { PER = 100 };
    int last = 0, next_seq[6] = {0};

    create_sub(w, "wide", "wide.*", TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST,
               false);
    for (int p = 5; p >= 1; p--) /* the least urgent first: order is by priority, not age */
        publish_many(w, "wide.thing", p, p * 1000, PER);
    PullResponse *r = pull_ok(w, "wide", 1000, 1000);
    if (r->n_deliveries != 5 * PER)
        fail_msg("pulled %zu of %d events", r->n_deliveries, 5 * PER);
    assert_priority_order(r, &last);
    for (size_t i = 0; i < r->n_deliveries; i++) {
        int p = r->deliveries[i]->event->priority;
        assert_int_equal(seq_of(r->deliveries[i]), p * 1000 + next_seq[p]++);
    }
    acknowledge_all(w, "wide", r);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_each_pull_answered_once(w);
}

/* Many pulls of odd sizes over a backlog spread across priorities: every
 * event exactly once, in priority order overall, each pull answered once. */
static void test_many_repeated_pulls_take_each_event_once(void **state)
{
    world *w = *state;
    enum { PER = 40, N = 5 * PER };
    int seen[N] = {0}, total = 0, last = 0;

    create_sub(w, "many", "many.*", TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST,
               false);
    for (int p = 1; p <= 5; p++)
        publish_many(w, "many.thing", p, (p - 1) * PER, PER);
    for (int i = 0; total < N && i < 400; i++) {
        PullResponse *r = pull_ok(w, "many", (uint32_t)(1 + i % 7), 1000);
        assert_priority_order(r, &last);
        for (size_t k = 0; k < r->n_deliveries; k++) {
            int seq = seq_of(r->deliveries[k]);
            assert_true(seq >= 0 && seq < N);
            seen[seq]++;
            total++;
        }
        acknowledge_all(w, "many", r);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_int_equal(total, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    /* And as many again on the drained subscription: empty answers. */
    for (int i = 0; i < 100; i++) {
        PullResponse *r = pull_ok(w, "many", (uint32_t)(1 + i % 5), i % 10 == 0 ? 50 : 0);
        assert_int_equal(r->n_deliveries, 0);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_each_pull_answered_once(w);
}

/*
 * Three types at one priority are three streams of one level. A pull of 2
 * must not read 2 from each (6) and answer 2: the 4 others would be pending
 * for nobody until the 60 s ack deadline. Every event comes, once, first
 * attempt, within pulls of 2.
 */
static void test_small_pulls_over_many_streams_of_a_level_leave_nothing_behind(void **state)
{
    world *w = *state;
    static const char *const types[] = {"level.a", "level.b", "level.c"};
    int seen[9] = {0}, total = 0;

    create_sub(w, "level", "level.*", TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST,
               false);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 3; i++)
            publish_one(w, types[t], 3, 3 * t + i);
    for (int i = 0; i < 5; i++) {
        PullResponse *r = pull_ok(w, "level", 2, 1000);
        assert_true(r->n_deliveries <= 2);
        for (size_t k = 0; k < r->n_deliveries; k++) {
            int seq = seq_of(r->deliveries[k]);
            assert_true(seq >= 0 && seq < 9);
            assert_int_equal(r->deliveries[k]->delivery_attempt, 1);
            seen[seq]++;
            total++;
        }
        acknowledge_all(w, "level", r);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    if (total != 9)
        fail_msg("5 pulls of 2 took %d of 9 events", total);
    for (int i = 0; i < 9; i++)
        assert_int_equal(seen[i], 1);
    assert_each_pull_answered_once(w);
}

/* ===================== through the REST bridge =========================== */

static json_t *bridge_get(const world *w, const char *path)
{
    int fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_resp r;
    json_t *j;

    tse_test_http_send(fd, "GET", path, NULL, "Connection: close\r\n", NULL, 0, false);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    if (r.status != 200)
        fail_msg("GET %s: status %d: %s", path, r.status, r.body);
    j = tse_test_http_json(&r);
    free(r.body);
    return j;
}

/* The bridge's long poll is a Pull: the same three events over three
 * priorities come back in one answer, and the service lives on. */
static void test_bridge_long_poll_over_three_priorities_answers_once(void **state)
{
    world *w = *state;

    create_sub(w, "lpcrash", "lpcrash.*",
               TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST, true);
    for (int round = 0; round < 5; round++) {
        for (int p = 1; p <= 3; p++)
            publish_one(w, "lpcrash.thing", p, p);
        json_t *j = bridge_get(w, "/api/v1/subscriptions/lpcrash/events?max=5&wait_ms=1000");
        json_t *events = json_object_get(j, "events");
        pulls++;
        if (json_array_size(events) != 3)
            fail_msg("round %d: the long poll answered %zu of 3 events", round,
                     json_array_size(events));
        for (size_t i = 0; i < 3; i++) {
            json_t *ev = json_object_get(json_array_get(events, i), "event");
            assert_int_equal(json_integer_value(json_object_get(ev, "priority")), (int)i + 1);
        }
        json_decref(j);
    }
    /* Auto-acked: nothing more, and the waiting polls end empty. */
    json_t *j = bridge_get(w, "/api/v1/subscriptions/lpcrash/events?max=5&wait_ms=200");
    pulls++;
    assert_int_equal(json_array_size(json_object_get(j, "events")), 0);
    json_decref(j);
    assert_each_pull_answered_once(w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pull_over_three_priorities_answers_once_with_all_three),
        cmocka_unit_test(test_earliest_backlog_pulled_two_at_a_time_in_priority_order),
        cmocka_unit_test(test_one_pull_takes_500_across_five_priorities_in_priority_order),
        cmocka_unit_test(test_many_repeated_pulls_take_each_event_once),
        cmocka_unit_test(test_small_pulls_over_many_streams_of_a_level_leave_nothing_behind),
        cmocka_unit_test(test_bridge_long_poll_over_three_priorities_answers_once),
    };

    (void)argc;
    (void)argv;
    return cmocka_run_group_tests(tests, world_up, world_down);
}
