/*
 * test_service_answers.c - answers a client must be able to believe: stats
 * that list every subscription, duplicates answered with the stored event's
 * stream, id and time, lag that counts a group started mid-stream, and a
 * long poll that gets an event of a type first published while it waits.
 * A real redis-server, the real tracseq-events binary over gRPC, and the
 * REST bridge in front of it where a REST variant is named.
 *
 * Invariants of this file: every test uses its own subscription names and
 * event types, so tests sharing the one world never see each other's
 * events; what the service says is checked against Redis where Redis can
 * tell.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
#define M_SUBSCRIBE      SERVICE "Subscribe"
#define M_PULL           SERVICE "Pull"
#define M_CREATE         SERVICE "CreateSubscription"
#define M_GET            SERVICE "GetSubscription"
#define UNARY_TIMEOUT_MS 10000

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__PullResponse PullResponse;
typedef Tracseq__Events__V1__Stats Stats;

/* ---- the world: one Redis, one service, a bridge in front ---- */

typedef tse_test_world world;

static const char *const service_args[] = {"--redis-timeout=1s", NULL};

static int world_up(void **state)
{
    *state = tse_test_world_start(tse_test_redis_start(false), service_args, true, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* ---- calls ---- */

static grpc_status_code unary(tse_client *ch, const char *method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *desc, void *resp,
                              tse_test_status *st)
{
    return tse_test_unary(ch, method, req, desc, (ProtobufCMessage **)resp, st, UNARY_TIMEOUT_MS,
                          NULL, NULL);
}

typedef struct test_event {
    Event ev;
    Google__Protobuf__Struct data;
    Google__Protobuf__Timestamp ts;
} test_event;

/* A generic event; id NULL: the server makes one. */
static Event *test_event_init(test_event *t, const char *type, int priority, const char *id)
{
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

    t->ev = ev;
    t->data = data;
    t->ts = ts;
    t->ev.event_type = (char *)type;
    t->ev.source_service = "answers";
    t->ev.priority = priority;
    if (id != NULL)
        t->ev.id = (char *)id;
    t->ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    t->ev.data = &t->data;
    return &t->ev;
}

static PublishResponse *publish_ok(world *w, const char *type, int priority, const char *id)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    PublishResponse *resp = NULL;
    tse_test_status st;
    test_event t;
    grpc_status_code code;

    req.event = test_event_init(&t, type, priority, id);
    code = unary(w->ch, M_PUBLISH, &req.base, &tracseq__events__v1__publish_response__descriptor,
                 &resp, &st);
    if (code != GRPC_STATUS_OK)
        fail_msg("Publish %s: %d '%s'", type, code, st.details);
    assert_non_null(resp);
    return resp;
}

static void create_sub(world *w, const char *name, const char *pattern,
                       Tracseq__Events__V1__StartPosition start, int64_t start_ms)
{
    tse_test_subscription t;
    Subscription *sub = tse_test_subscription_init(&t, name, pattern, start);

    if (start == TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP) {
        t.start_time.seconds = start_ms / 1000;
        t.start_time.nanos = (int32_t)(start_ms % 1000) * 1000000;
        sub->start_time = &t.start_time;
    }
    tse_test_subscription_create(w->ch, sub, UNARY_TIMEOUT_MS);
}

static void create_latest(world *w, const char *name, const char *pattern)
{
    create_sub(w, name, pattern, TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST, 0);
}

static const Subscription *stats_sub(const Stats *s, const char *name)
{
    for (size_t i = 0; i < s->n_subscription_stats; i++)
        if (strcmp(s->subscription_stats[i]->name, name) == 0)
            return s->subscription_stats[i];
    return NULL;
}

/* ---- REST ---- */

static json_t *rest_get(const world *w, const char *path)
{
    int fd = tse_test_http_connect(w->bridge->port);
    tse_test_http_resp r;
    json_t *j;

    tse_test_http_send(fd, "GET", path, NULL, NULL, NULL, 0, true);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    if (r.status != 200)
        fail_msg("GET %s: %d %s", path, r.status, r.body);
    j = tse_test_http_json(&r);
    free(r.body);
    return j;
}

static const json_t *rest_stats_sub(const json_t *stats, const char *name)
{
    const json_t *sub;
    size_t i;

    json_array_foreach(json_object_get(stats, "subscription_stats"), i, sub)
    {
        if (strcmp(json_string_value(json_object_get(sub, "name")), name) == 0)
            return sub;
    }
    return NULL;
}

/* ==== GetStats lists every subscription ==== */

static void test_stats_list_subscriptions_with_no_subscriber_and_from_other_instances(void **state)
{
    world *w = *state;
    tse_test_service *other;
    tse_client *och;
    Stats *s;
    json_t *j;

    create_latest(w, "st-idle-a", "st.a.*");
    create_latest(w, "st-idle-b", "st.b.*");
    /* One made by another instance on the same Redis, which this one has
     * never heard of. */
    other = tse_test_service_start(w->redis, service_args);
    assert_non_null(other);
    och = tse_test_channel(other->addr);
    world ow = {.ch = och};
    create_latest(&ow, "st-elsewhere", "st.c.*");
    tse_test_channel_destroy(och);
    assert_int_equal(tse_test_service_stop(other), 0);
    protobuf_c_message_free_unpacked(&publish_ok(w, "st.a.thing", 3, NULL)->base, NULL);

    s = tse_test_get_stats(w->ch, UNARY_TIMEOUT_MS);
    if (s->subscriptions < 3 || stats_sub(s, "st-idle-a") == NULL ||
        stats_sub(s, "st-idle-b") == NULL || stats_sub(s, "st-elsewhere") == NULL)
        fail_msg("GetStats: subscriptions %u, %zu listed; want st-idle-a, st-idle-b and "
                 "st-elsewhere",
                 s->subscriptions, s->n_subscription_stats);
    assert_int_equal(s->subscriptions, s->n_subscription_stats);
    assert_non_null(stats_sub(s, "st-idle-a")->stats);
    assert_int_equal(stats_sub(s, "st-idle-a")->stats->active_subscribers, 0);
    assert_int_equal(stats_sub(s, "st-idle-a")->stats->lag, 1);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    /* The same through the bridge. */
    j = rest_get(w, "/api/v1/stats");
    if (json_integer_value(json_object_get(j, "subscriptions")) < 3 ||
        rest_stats_sub(j, "st-idle-a") == NULL || rest_stats_sub(j, "st-elsewhere") == NULL) {
        char *text = json_dumps(j, JSON_COMPACT);
        fail_msg("GET /api/v1/stats lists too few subscriptions: %s", text);
    }
    json_decref(j);
}

/* ==== a duplicate is answered with the stored event ==== */

static bool redis_says(const world *w, const char *want, const char *fmt, const char *arg)
{
    char *out = tse_test_redis_cmd(w->redis, fmt, arg);
    bool same;

    assert_non_null(out);
    same = strcmp(out, want) == 0;
    if (!same)
        print_message("redis: %s -> %s (want %s)\n", fmt, out, want);
    free(out);
    return same;
}

/* The duplicate must read like the stored event, and the stream it claims
 * (another priority of the same type) must hold nothing. The dedup scope is
 * one event type: the same id under another type is another event. */
static void expect_stored_answer(world *w, const PublishResponse *first, const PublishResponse *dup,
                                 const char *refused_key)
{
    assert_true(dup->duplicate);
    assert_string_equal(dup->event_id, first->event_id);
    assert_string_equal(dup->stream_id, first->stream_id);
    assert_string_equal(dup->stream, first->stream);
    assert_non_null(dup->published_at);
    if (dup->published_at->seconds != first->published_at->seconds ||
        dup->published_at->nanos != first->published_at->nanos)
        fail_msg("duplicate published_at %lld.%09d, stored event's %lld.%09d",
                 (long long)dup->published_at->seconds, dup->published_at->nanos,
                 (long long)first->published_at->seconds, first->published_at->nanos);
    if (refused_key != NULL)
        assert_true(redis_says(w, "0", "XLEN %s", refused_key));
}

static void test_duplicate_publish_answers_the_stored_events_stream_id_and_time(void **state)
{
    world *w = *state;
    const char *id = "0b7f3f3e-4d1c-4a55-9a3e-1d2c3b4a5f60";
    PublishResponse *first, *again, *other, *other_type;

    first = publish_ok(w, "dup.first", 2, id);
    assert_false(first->duplicate);
    assert_string_equal(first->stream, "tracseq:events:{dup.first}:p2");
    usleep(20000); /* so a retry stamped now has another time */
    again = publish_ok(w, "dup.first", 2, id);
    expect_stored_answer(w, first, again, NULL);
    other = publish_ok(w, "dup.first", 4, id);
    expect_stored_answer(w, first, other, "tracseq:events:{dup.first}:p4");
    assert_true(redis_says(w, "1", "XLEN %s", "tracseq:events:{dup.first}:p2"));
    /* Another type: another event, stored. */
    other_type = publish_ok(w, "dup.other", 4, id);
    assert_false(other_type->duplicate);
    assert_string_equal(other_type->stream, "tracseq:events:{dup.other}:p4");
    assert_true(redis_says(w, "1", "XLEN %s", "tracseq:events:{dup.other}:p4"));
    protobuf_c_message_free_unpacked(&first->base, NULL);
    protobuf_c_message_free_unpacked(&again->base, NULL);
    protobuf_c_message_free_unpacked(&other->base, NULL);
    protobuf_c_message_free_unpacked(&other_type->base, NULL);
}

static void test_duplicate_on_publish_stream_answers_the_stored_event(void **state)
{
    world *w = *state;
    const char *id = "1c8a4f4f-5e2d-4b66-8b4f-2e3d4c5b6a71";
    tse_test_stream *st = tse_test_stream_open(w->ch, M_PUBLISH_STREAM, 30000, NULL, NULL);
    PublishResponse *r[2];
    tse_test_status status;

    for (int i = 0; i < 2; i++) {
        PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        test_event t;
        req.event = test_event_init(&t, "dups.first", i == 0 ? 1 : 5, id);
        assert_true(tse_test_stream_send(st, &req.base));
        r[i] = (PublishResponse *)tse_test_stream_recv(
            st, &tracseq__events__v1__publish_response__descriptor, 10000, NULL);
        assert_non_null(r[i]);
        assert_null(r[i]->error);
        usleep(20000); /* so a retry stamped now has another time */
    }
    assert_true(tse_test_stream_close_send(st));
    assert_int_equal(tse_test_stream_finish(st, &status), GRPC_STATUS_OK);
    assert_false(r[0]->duplicate);
    expect_stored_answer(w, r[0], r[1], "tracseq:events:{dups.first}:p5");
    protobuf_c_message_free_unpacked(&r[0]->base, NULL);
    protobuf_c_message_free_unpacked(&r[1]->base, NULL);
}

/* ==== lag of a group that started mid-stream ==== */

static Subscription *get_sub(world *w, const char *name)
{
    Tracseq__Events__V1__GetSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    Subscription *out = NULL;
    tse_test_status st;

    req.name = (char *)name;
    if (unary(w->ch, M_GET, &req.base, &tracseq__events__v1__subscription__descriptor, &out, &st) !=
        GRPC_STATUS_OK)
        fail_msg("GetSubscription %s: '%s'", name, st.details);
    assert_non_null(out->stats);
    return out;
}

static uint64_t lag_of(world *w, const char *name)
{
    Subscription *s = get_sub(w, name);
    uint64_t lag = s->stats->lag;

    protobuf_c_message_free_unpacked(&s->base, NULL);
    return lag;
}

/* Waits up to ms for the lag to read want; returns the last figure. */
static uint64_t wait_lag(world *w, const char *name, uint64_t want, int ms)
{
    tse_test_waiter waiter;
    uint64_t lag;

    tse_test_waiter_init(&waiter, ms);
    while ((lag = lag_of(w, name)) != want && tse_test_waiter_poll(&waiter)) {
    }
    return lag;
}

static long long stream_id_ms(const char *id)
{
    return atoll(id);
}

static void test_lag_counts_a_group_that_started_mid_stream(void **state)
{
    world *w = *state;
    long long ms[10];
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s;
    Stats *stats;

    /* Ten events a few milliseconds apart; a subscription replays from the
     * fifth one's time: its group starts in the middle of the stream. */
    for (int i = 0; i < 10; i++) {
        PublishResponse *r = publish_ok(w, "lagmid.ev", 3, NULL);
        ms[i] = stream_id_ms(r->stream_id);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        usleep(3000); /* entries in distinct milliseconds */
    }
    assert_true(ms[3] < ms[4]);
    create_sub(w, "lagmid", "lagmid.*",
               TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP, ms[4]);
    assert_int_equal(lag_of(w, "lagmid"), 6);
    stats = tse_test_get_stats(w->ch, UNARY_TIMEOUT_MS);
    assert_non_null(stats_sub(stats, "lagmid"));
    assert_int_equal(stats_sub(stats, "lagmid")->stats->lag, 6);
    protobuf_c_message_free_unpacked(&stats->base, NULL);

    /* Deliveries and new events keep it right. */
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, 60000, NULL, NULL);
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = "lagmid";
    assert_true(tse_test_stream_send(s, &req.base));
    for (int i = 0; i < 6; i++) {
        Delivery *d = (Delivery *)tse_test_stream_recv(
            s, &tracseq__events__v1__delivery__descriptor, 10000, NULL);
        assert_non_null(d);
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    tse_test_stream_cancel(s);
    assert_int_equal(wait_lag(w, "lagmid", 0, 5000), 0);
    protobuf_c_message_free_unpacked(&publish_ok(w, "lagmid.ev", 3, NULL)->base, NULL);
    protobuf_c_message_free_unpacked(&publish_ok(w, "lagmid.ev", 3, NULL)->base, NULL);
    assert_int_equal(lag_of(w, "lagmid"), 2);
}

/* A group part-way through a stream with more than one lag count may read
 * (5,000 entries): the figure is estimated, within what was counted. */
static void test_lag_past_the_count_bound_is_estimated_close(void **state)
{
    world *w = *state;
    tse_test_stream *st = tse_test_stream_open(w->ch, M_PUBLISH_STREAM, 120000, NULL, NULL);
    tse_test_status status;
    static long long ms[50000];
    long long mid_ms, truth = 0;
    uint64_t lag;
    enum { N = 50000, CHUNK = 1000 };

    for (int base = 0; base < N; base += CHUNK) {
        for (int i = 0; i < CHUNK; i++) {
            PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
            test_event t;
            req.event = test_event_init(&t, "lagbig.ev", 3, NULL);
            assert_true(tse_test_stream_send(st, &req.base));
        }
        for (int i = 0; i < CHUNK; i++) {
            PublishResponse *r = (PublishResponse *)tse_test_stream_recv(
                st, &tracseq__events__v1__publish_response__descriptor, 30000, NULL);
            assert_non_null(r);
            assert_null(r->error);
            ms[base + i] = stream_id_ms(r->stream_id);
            protobuf_c_message_free_unpacked(&r->base, NULL);
        }
    }
    assert_true(tse_test_stream_close_send(st));
    assert_int_equal(tse_test_stream_finish(st, &status), GRPC_STATUS_OK);
    mid_ms = ms[N / 2];
    for (int i = 0; i < N; i++)
        truth += ms[i] >= mid_ms;
    create_sub(w, "lagbig", "lagbig.*",
               TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP, mid_ms);
    lag = lag_of(w, "lagbig");
    print_message("lag %llu, truly %lld\n", (unsigned long long)lag, truth);
    /* At least what the count saw, and near the truth (the estimate splits
     * the 45,000 entries not counted by time, and the publish rate varied). */
    assert_true(lag >= 2500 && lag <= N);
    assert_true((long long)lag >= truth / 2 && (long long)lag <= truth * 3 / 2);
}

/* ==== stats read no entries again while the streams only grow ==== */

/* Calls Redis ran to read entries (XRANGE, XREVRANGE, inside scripts too)
 * since the last CONFIG RESETSTAT. */
static long long entry_reads(const world *w)
{
    static const char *const cmds[] = {"cmdstat_xrange:calls=", "cmdstat_xrevrange:calls="};
    char *info = tse_test_redis_cmd(w->redis, "INFO %s", "commandstats");
    long long n = 0;

    assert_non_null(info);
    for (size_t i = 0; i < 2; i++) {
        const char *at = strstr(info, cmds[i]);
        n += at ? atoll(at + strlen(cmds[i])) : 0;
    }
    free(info);
    return n;
}

static void reset_redis_stats(const world *w)
{
    free(tse_test_redis_cmd(w->redis, "CONFIG %s", "RESETSTAT"));
}

/* Reads GetStats and the subscription n times; returns the last lag. */
static uint64_t read_stats(world *w, const char *name, int n)
{
    uint64_t lag = 0;

    for (int i = 0; i < n; i++) {
        protobuf_c_message_free_unpacked(&tse_test_get_stats(w->ch, UNARY_TIMEOUT_MS)->base, NULL);
        lag = lag_of(w, name);
    }
    return lag;
}

/* The bug: a group whose lag Redis cannot report (here 'lagbig', started in
 * the middle of 50,000 entries) had 20,000 of them read on every GetStats,
 * for every group of every stream: stats slowed with the data until they
 * timed out and Redis stalled. Once counted, a figure is kept; appends add to
 * it without a read. */
static void test_stats_read_no_entries_again_while_streams_only_grow(void **state)
{
    world *w = *state;
    uint64_t lag = read_stats(w, "lagbig", 1);

    reset_redis_stats(w);
    assert_int_equal(read_stats(w, "lagbig", 10), lag);
    assert_int_equal(entry_reads(w), 0);
    for (int i = 0; i < 3; i++)
        protobuf_c_message_free_unpacked(&publish_ok(w, "lagbig.ev", 3, NULL)->base, NULL);
    assert_int_equal(read_stats(w, "lagbig", 5), lag + 3);
    assert_int_equal(entry_reads(w), 0);
}

/* An entry deleted ahead of a group keeps Redis from ever reporting its lag,
 * even after the count's hand-back: counted once, then kept exact. */
static void test_lag_with_a_deleted_entry_ahead_is_counted_once_and_kept_exact(void **state)
{
    world *w = *state;
    char ids[10][48];

    /* Ten events a few milliseconds apart; the group starts before the
     * fifth (six to deliver), and the eighth is deleted (five). */
    for (int i = 0; i < 10; i++) {
        PublishResponse *r = publish_ok(w, "lagdel.ev", 3, NULL);
        snprintf(ids[i], sizeof(ids[i]), "%s", r->stream_id);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        usleep(3000); /* entries in distinct milliseconds */
    }
    assert_true(stream_id_ms(ids[3]) < stream_id_ms(ids[4]));
    create_sub(w, "lagdel", "lagdel.*",
               TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP, stream_id_ms(ids[4]));
    assert_true(redis_says(w, "1", "XDEL tracseq:events:{lagdel.ev}:p3 %s", ids[7]));
    assert_int_equal(lag_of(w, "lagdel"), 5);
    reset_redis_stats(w);
    assert_int_equal(read_stats(w, "lagdel", 5), 5);
    assert_int_equal(entry_reads(w), 0);
    for (int i = 0; i < 2; i++)
        protobuf_c_message_free_unpacked(&publish_ok(w, "lagdel.ev", 3, NULL)->base, NULL);
    assert_int_equal(read_stats(w, "lagdel", 5), 7);
    assert_int_equal(entry_reads(w), 0);
}

/* ==== a waiting pull gets an event of a type new while it waits ==== */

typedef struct pull_result {
    grpc_status_code code;
    size_t n;
    char type[128];
    long long answered_ms;
} pull_result;

static pull_result pull(tse_client *ch, const char *name, uint32_t wait_ms)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    PullResponse *resp = NULL;
    tse_test_status st;
    pull_result out = {0};

    req.subscription = (char *)name;
    req.max_events = 10;
    req.wait_ms = wait_ms;
    out.code =
        unary(ch, M_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor, &resp, &st);
    out.answered_ms = tse_test_now_ms();
    if (resp != NULL) {
        out.n = resp->n_deliveries;
        if (out.n > 0)
            snprintf(out.type, sizeof(out.type), "%s", resp->deliveries[0]->event->event_type);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return out;
}

/* The case: the first-ever event of a type, then at once a pull
 * with a short wait. Each round is a type new to Redis. */
static void test_pull_right_after_the_first_event_of_a_new_type_gets_it(void **state)
{
    world *w = *state;
    char type[64];

    create_latest(w, "solo", "solo.*");
    for (int round = 0; round < 5; round++) {
        snprintf(type, sizeof(type), "solo.thing%d", round);
        protobuf_c_message_free_unpacked(&publish_ok(w, type, 3, NULL)->base, NULL);
        pull_result r = pull(w->ch, "solo", 500);
        assert_int_equal(r.code, GRPC_STATUS_OK);
        if (r.n != 1)
            fail_msg("round %d: a pull (wait 500 ms) right after the first %s event got %zu "
                     "events",
                     round, type, r.n);
        assert_string_equal(r.type, type);
    }
}

typedef struct delayed_publish {
    const char *addr;
    const char *type;
    int delay_ms;
    long long published_ms;
} delayed_publish;

/* Publishes one event of dp->type after dp->delay_ms, through dp->addr. */
static void *publish_later(void *arg)
{
    delayed_publish *dp = arg;
    tse_client *ch = tse_test_channel(dp->addr);
    world tmp = {.ch = ch};

    usleep((useconds_t)dp->delay_ms * 1000); /* under test: the wait ends at this publish */
    protobuf_c_message_free_unpacked(&publish_ok(&tmp, dp->type, 2, NULL)->base, NULL);
    dp->published_ms = tse_test_now_ms();
    tse_test_channel_destroy(ch);
    return NULL;
}

/* A pull waiting when a type is first published, by this instance or by
 * another one, gets it while it waits: soon, not a discovery round (1 s)
 * later. */
static void test_waiting_pull_gets_a_type_first_published_meanwhile(void **state)
{
    world *w = *state;
    tse_test_service *other = tse_test_service_start(w->redis, service_args);
    char type[64];

    assert_non_null(other);
    create_latest(w, "waiter", "waiter.*");
    for (int round = 0; round < 6; round++) {
        bool elsewhere = round % 2 == 1;
        delayed_publish dp = {.addr = elsewhere ? other->addr : w->service->addr,
                              .type = type,
                              .delay_ms = 200 + 70 * round};
        pthread_t t;

        snprintf(type, sizeof(type), "waiter.kind%d", round);
        assert_int_equal(pthread_create(&t, NULL, publish_later, &dp), 0);
        pull_result r = pull(w->ch, "waiter", 5000);
        pthread_join(t, NULL);
        assert_int_equal(r.code, GRPC_STATUS_OK);
        if (r.n != 1)
            fail_msg("round %d: the waiting pull got %zu events", round, r.n);
        assert_string_equal(r.type, type);
        print_message("%s %s: delivered %lld ms after it was stored\n", type,
                      elsewhere ? "(other instance)" : "(this instance)",
                      r.answered_ms - dp.published_ms);
        /* The poll is 100 ms; a second is what discovery alone took. */
        if (r.answered_ms - dp.published_ms > 700)
            fail_msg("%s came %lld ms after it was stored", type, r.answered_ms - dp.published_ms);
    }
    assert_int_equal(tse_test_service_stop(other), 0);
}

/* The bridge's long poll is a Pull: the same, through REST. */
static void test_rest_long_poll_right_after_the_first_event_of_a_new_type_gets_it(void **state)
{
    world *w = *state;
    char type[64];

    create_latest(w, "restsolo", "restsolo.*");
    for (int round = 0; round < 3; round++) {
        json_t *j, *events;

        snprintf(type, sizeof(type), "restsolo.thing%d", round);
        protobuf_c_message_free_unpacked(&publish_ok(w, type, 3, NULL)->base, NULL);
        j = rest_get(w, "/api/v1/subscriptions/restsolo/events?max=10&wait_ms=500");
        events = json_object_get(j, "events");
        if (json_array_size(events) != 1) {
            char *text = json_dumps(j, JSON_COMPACT);
            fail_msg("round %d: a long poll right after the first %s event answered %s", round,
                     type, text);
        }
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(json_array_get(events, 0), "event"), "event_type")),
                            type);
        json_decref(j);
    }
}

/* A Subscribe stream gets a type first published by another instance while
 * it is attached, soon (a poll, 100 ms), not a discovery round later. */
static void test_subscriber_gets_a_type_first_published_elsewhere_soon(void **state)
{
    world *w = *state;
    tse_test_service *other = tse_test_service_start(w->redis, service_args);
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s;
    char type[64];

    assert_non_null(other);
    create_latest(w, "streamer", "streamer.*");
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, 60000, NULL, NULL);
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = "streamer";
    assert_true(tse_test_stream_send(s, &req.base));
    for (int round = 0; round < 3; round++) {
        delayed_publish dp = {.addr = other->addr, .type = type, .delay_ms = 150 + 90 * round};
        Delivery *d;
        pthread_t t;

        snprintf(type, sizeof(type), "streamer.kind%d", round);
        assert_int_equal(pthread_create(&t, NULL, publish_later, &dp), 0);
        d = (Delivery *)tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, 5000,
                                             NULL);
        long long at = tse_test_now_ms();
        pthread_join(t, NULL);
        assert_non_null(d);
        assert_string_equal(d->event->event_type, type);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        print_message("%s: delivered %lld ms after it was stored\n", type, at - dp.published_ms);
        if (at - dp.published_ms > 700)
            fail_msg("%s came %lld ms after it was stored", type, at - dp.published_ms);
    }
    tse_test_stream_cancel(s);
    assert_int_equal(tse_test_service_stop(other), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_list_subscriptions_with_no_subscriber_and_from_other_instances),
        cmocka_unit_test(test_duplicate_publish_answers_the_stored_events_stream_id_and_time),
        cmocka_unit_test(test_duplicate_on_publish_stream_answers_the_stored_event),
        cmocka_unit_test(test_lag_counts_a_group_that_started_mid_stream),
        cmocka_unit_test(test_lag_past_the_count_bound_is_estimated_close),
        cmocka_unit_test(test_stats_read_no_entries_again_while_streams_only_grow),
        cmocka_unit_test(test_lag_with_a_deleted_entry_ahead_is_counted_once_and_kept_exact),
        cmocka_unit_test(test_pull_right_after_the_first_event_of_a_new_type_gets_it),
        cmocka_unit_test(test_waiting_pull_gets_a_type_first_published_meanwhile),
        cmocka_unit_test(test_rest_long_poll_right_after_the_first_event_of_a_new_type_gets_it),
        cmocka_unit_test(test_subscriber_gets_a_type_first_published_elsewhere_soon),
    };
    int failed;

    /* TSE_TEST_FILTER=<glob> runs only the matching tests. */
    if (getenv("TSE_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TSE_TEST_FILTER"));
    failed = cmocka_run_group_tests_name("answers", tests, world_up, world_down);
    return failed == 0 ? 0 : 1;
}
