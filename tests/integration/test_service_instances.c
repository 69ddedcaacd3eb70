/*
 * test_service_instances.c - several service instances as one: a real
 * redis-server and two real tracseq-events processes (A and B) on it, on
 * loopback ports. Subscriptions and consumer groups live in Redis, so a
 * subscription made through one instance is used through the other, the
 * consumers of one group on both instances share its events (each event to
 * one of them), and GetStats from either instance reports the same shared
 * figures (subscriptions, stream lengths, each subscription's lag, pending,
 * consumers, dead letters) while its counters are its own.
 *
 * Every test starts its own Redis and its own two instances, so the shared
 * figures are known exactly: nothing else publishes or subscribes there.
 * Ack deadlines are a minute, so no redelivery can blur the counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client.h"
#include "harness.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define SERVICE            "/tracseq.events.v1.EventService/"
#define M_PUBLISH          SERVICE "Publish"
#define M_SUBSCRIBE        SERVICE "Subscribe"
#define M_ACKNOWLEDGE      SERVICE "Acknowledge"
#define M_GET              SERVICE "GetSubscription"
#define STREAM_LIFETIME_MS 300000
#define UNARY_TIMEOUT_MS   10000
#define DELIVERY_WAIT_MS   20000
#define EVENTS             10

typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__SubscriptionStats SubscriptionStats;
typedef Tracseq__Events__V1__Stats Stats;

/* ---- the world: one Redis, two instances, a client of each ---- */

typedef struct world {
    tse_test_world *a; /* Redis, instance A and a channel to it */
    tse_test_service *b;
    tse_client *ch_a, *ch_b;
} world;

static const char *const service_args[] = {"--redis-timeout=10s", NULL};

static int world_up(void **state)
{
    world *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    w->a = tse_test_world_start(tse_test_redis_start(false), service_args, false, NULL);
    w->b = tse_test_service_start(w->a->redis, service_args);
    assert_non_null(w->b);
    w->ch_a = w->a->ch;
    w->ch_b = tse_test_channel(w->b->addr);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    world *w = *state;
    tse_test_world *a;
    int rc_b;

    if (w == NULL)
        return 0;
    a = w->a;
    tse_test_channel_destroy(w->ch_b);
    rc_b = tse_test_service_stop(w->b);
    free(w);
    *state = NULL;
    tse_test_world_stop(a);
    assert_int_equal(rc_b, 0);
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

/* Publishes one generic event of type with subject "seq-<seq>". */
static void publish_one(tse_client *ch, const char *type, int seq)
{
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    ProtobufCMessage *resp = NULL;
    tse_test_status st;
    char subject[32];
    grpc_status_code code;

    snprintf(subject, sizeof(subject), "seq-%d", seq);
    ev.event_type = (char *)type;
    ev.source_service = "instances-test";
    ev.subject = subject;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    code = unary(ch, M_PUBLISH, &req.base, &tracseq__events__v1__publish_response__descriptor,
                 &resp, &st);
    if (code != GRPC_STATUS_OK)
        fail_msg("Publish %s seq %d: status %d '%s'", type, seq, code, st.details);
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* One pattern, from the earliest event, a minute to ack, at most
 * max_in_flight unacked per subscriber. */
static Subscription *spec_init(tse_test_subscription *sp, const char *name, const char *pattern,
                               uint32_t max_in_flight)
{
    Subscription *sub = tse_test_subscription_init(
        sp, name, pattern, TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST);

    sub->ack_deadline_ms = 60000;
    sub->max_delivery_attempts = 5;
    sub->max_in_flight = max_in_flight;
    return sub;
}

static grpc_status_code get_sub(tse_client *ch, const char *name, Subscription **out,
                                tse_test_status *st)
{
    Tracseq__Events__V1__GetSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;

    req.name = (char *)name;
    return unary(ch, M_GET, &req.base, &tracseq__events__v1__subscription__descriptor, out, st);
}

/* Acknowledges n ack ids of subscription through ch; they must all be
 * pending (acked by this call). */
static void acknowledge_ok(tse_client *ch, const char *subscription, char **ids, size_t n)
{
    Tracseq__Events__V1__AcknowledgeRequest req = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__AcknowledgeResponse *resp = NULL;
    tse_test_status st;
    grpc_status_code code;

    req.subscription = (char *)subscription;
    req.ack_ids = ids;
    req.n_ack_ids = n;
    code = unary(ch, M_ACKNOWLEDGE, &req.base,
                 &tracseq__events__v1__acknowledge_response__descriptor, &resp, &st);
    if (code != GRPC_STATUS_OK)
        fail_msg("Acknowledge %s: status %d '%s'", subscription, code, st.details);
    assert_int_equal(resp->acked, n);
    assert_int_equal(resp->n_unknown_ack_ids, 0);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* ---- Subscribe streams ---- */

static tse_test_stream *subscribe_name(tse_client *ch, const char *name)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(ch, M_SUBSCRIBE, STREAM_LIFETIME_MS, NULL, NULL);

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    assert_true(tse_test_stream_send(s, &req.base));
    return s;
}

/* What one subscriber received: its ack ids, and how often each seq came. */
typedef struct received {
    char *ack_ids[EVENTS];
    int n;
} received;

static void received_cleanup(received *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->ack_ids[i]);
    r->n = 0;
}

/* Receives n deliveries of type on s (failing the test when they do not
 * come), counting each event's seq in seen[]. */
static void receive(tse_test_stream *s, int n, received *r, int *seen, const char *who)
{
    while (r->n < n) {
        bool timed_out = false;
        Delivery *d = (Delivery *)tse_test_stream_recv(
            s, &tracseq__events__v1__delivery__descriptor, DELIVERY_WAIT_MS, &timed_out);
        int seq;

        if (d == NULL)
            fail_msg("%s: %d of %d deliveries came (%s)", who, r->n, n,
                     timed_out ? "no more in time" : "the stream ended");
        assert_non_null(d->event);
        assert_int_equal(d->delivery_attempt, 1);
        seq = atoi(d->event->subject + strlen("seq-"));
        assert_true(seq >= 0 && seq < EVENTS);
        seen[seq]++;
        r->ack_ids[r->n] = strdup(d->ack_id);
        assert_non_null(r->ack_ids[r->n]);
        r->n++;
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
}

/* ---- reading the stats ---- */

static const SubscriptionStats *stats_of(const Stats *st, const char *name)
{
    for (size_t i = 0; i < st->n_subscription_stats; i++)
        if (strcmp(st->subscription_stats[i]->name, name) == 0) {
            assert_non_null(st->subscription_stats[i]->stats);
            return st->subscription_stats[i]->stats;
        }
    fail_msg("GetStats has no subscription %s", name);
    return NULL;
}

/* stream_lengths[type]; -1 when the map has no such key. */
static long long stream_length(const Stats *st, const char *type)
{
    for (size_t i = 0; i < st->n_stream_lengths; i++)
        if (strcmp(st->stream_lengths[i]->key, type) == 0)
            return (long long)st->stream_lengths[i]->value;
    return -1;
}

/* published_by_type[type]; 0 when the map has no such key. */
static uint64_t published_of(const Stats *st, const char *type)
{
    for (size_t i = 0; i < st->n_published_by_type; i++)
        if (strcmp(st->published_by_type[i]->key, type) == 0)
            return st->published_by_type[i]->value;
    return 0;
}

/* The figures of a subscription read from Redis: every instance reports
 * these and the same values. */
static void assert_shared_sub(const SubscriptionStats *s, uint64_t pending, uint32_t consumers)
{
    assert_int_equal(s->pending, pending);
    assert_int_equal(s->lag, 0);
    assert_int_equal(s->consumers, consumers);
    assert_int_equal(s->streams, 1);
    assert_int_equal(s->dead_lettered, 0);
}

/* The figures every instance keeps for itself. */
static void assert_own_sub(const SubscriptionStats *s, uint32_t active, uint64_t delivered,
                           uint64_t acked)
{
    assert_int_equal(s->active_subscribers, active);
    assert_int_equal(s->delivered, delivered);
    assert_int_equal(s->acked, acked);
    assert_int_equal(s->redelivered, 0);
    assert_int_equal(s->nacked, 0);
}

/* ---- tests ---- */

/*
 * A subscription created through A is seen, subscribed to, acked and
 * deleted through B: its settings and its groups are in Redis, not in A.
 */
static void test_subscription_created_on_one_instance_is_used_through_the_other(void **state)
{
    world *w = *state;
    const char *type = "instances.visible";
    tse_test_subscription sp;
    Subscription *got = NULL;
    tse_test_status st;
    received r = {0};
    int seen[EVENTS] = {0};
    tse_test_stream *s_a, *s_b;

    tse_test_subscription_create(w->ch_a, spec_init(&sp, "inst-visible", type, 100),
                                 UNARY_TIMEOUT_MS);
    assert_int_equal(get_sub(w->ch_b, "inst-visible", &got, &st), GRPC_STATUS_OK);
    assert_string_equal(got->name, "inst-visible");
    assert_string_equal(got->event_types[0], type);
    assert_int_equal(got->ack_deadline_ms, 60000);
    protobuf_c_message_free_unpacked(&got->base, NULL);

    /* Subscribed through B, published through A. */
    s_b = subscribe_name(w->ch_b, "inst-visible");
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch_b, "inst-visible", UNARY_TIMEOUT_MS) == 1, 10000,
                   "B to attach its subscriber");
    for (int i = 0; i < 3; i++)
        publish_one(w->ch_a, type, i);
    receive(s_b, 3, &r, seen, "B's subscriber");
    for (int i = 0; i < 3; i++)
        assert_int_equal(seen[i], 1);
    acknowledge_ok(w->ch_b, "inst-visible", r.ack_ids, (size_t)r.n);
    received_cleanup(&r);

    /* A subscriber on A too; then deleted through B: gone for A at once
     * (A had it cached: it used to answer it for up to a second, until its
     * next discovery), and both subscribers are ended. */
    s_a = subscribe_name(w->ch_a, "inst-visible");
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch_a, "inst-visible", UNARY_TIMEOUT_MS) == 1, 10000,
                   "A to attach its subscriber");
    tse_test_delete_subscription(w->ch_b, "inst-visible", UNARY_TIMEOUT_MS);
    assert_int_equal(get_sub(w->ch_a, "inst-visible", &got, &st), GRPC_STATUS_NOT_FOUND);
    assert_null(got);
    assert_int_equal(get_sub(w->ch_b, "inst-visible", &got, &st), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(tse_test_stream_finish(s_b, &st), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(tse_test_stream_finish(s_a, &st), GRPC_STATUS_NOT_FOUND);
}

/*
 * Publishes through A; one group ("inst-lb") has a subscriber on A and one
 * on B, each holding at most 5 unacked, so the 10 events split 5 and 5;
 * another subscription ("inst-fan") has its one subscriber on B and gets all
 * 10. Acks go through the instance that did not deliver: A's 5 and 3 of
 * B's "inst-lb" deliveries through B, 6 of "inst-fan"'s through A.
 *
 * Then GetStats on A and on B: the figures read from Redis are the same on
 * both and exact (a figure that counted one instance's consumers, pending
 * entries or subscriptions would differ between them or from the expected
 * value), and each instance's counters are its own.
 */
static void test_stats_shared_figures_agree_and_counters_are_each_instances_own(void **state)
{
    world *w = *state;
    const char *type = "instances.stats";
    tse_test_subscription lb, fan;
    tse_test_stream *s_a, *s_b, *s_fan;
    received r_a = {0}, r_b = {0}, r_fan = {0};
    int seen_lb[EVENTS] = {0}, seen_fan[EVENTS] = {0};
    Stats *st[2];

    tse_test_subscription_create(w->ch_a, spec_init(&lb, "inst-lb", type, 5), UNARY_TIMEOUT_MS);
    tse_test_subscription_create(w->ch_a, spec_init(&fan, "inst-fan", type, 100), UNARY_TIMEOUT_MS);
    s_a = subscribe_name(w->ch_a, "inst-lb");
    s_b = subscribe_name(w->ch_b, "inst-lb");
    s_fan = subscribe_name(w->ch_b, "inst-fan");
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch_a, "inst-lb", UNARY_TIMEOUT_MS) == 1, 10000,
                   "A's inst-lb subscriber");
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch_b, "inst-lb", UNARY_TIMEOUT_MS) == 1, 10000,
                   "B's inst-lb subscriber");
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch_b, "inst-fan", UNARY_TIMEOUT_MS) == 1, 10000,
                   "B's inst-fan subscriber");

    for (int i = 0; i < EVENTS; i++)
        publish_one(w->ch_a, type, i);
    receive(s_a, 5, &r_a, seen_lb, "A's inst-lb subscriber");
    receive(s_b, 5, &r_b, seen_lb, "B's inst-lb subscriber");
    receive(s_fan, EVENTS, &r_fan, seen_fan, "B's inst-fan subscriber");
    for (int i = 0; i < EVENTS; i++) {
        assert_int_equal(seen_lb[i], 1); /* load-balanced: each to one of them */
        assert_int_equal(seen_fan[i], 1);
    }

    acknowledge_ok(w->ch_b, "inst-lb", r_a.ack_ids, 5);
    acknowledge_ok(w->ch_b, "inst-lb", r_b.ack_ids, 3);
    acknowledge_ok(w->ch_a, "inst-fan", r_fan.ack_ids, 6);

    st[0] = tse_test_get_stats(w->ch_a, UNARY_TIMEOUT_MS);
    st[1] = tse_test_get_stats(w->ch_b, UNARY_TIMEOUT_MS);
    for (int i = 0; i < 2; i++) {
        print_message("instance %c: subscriptions %u, stream length %lld, inst-lb pending %llu "
                      "consumers %u, inst-fan pending %llu consumers %u\n",
                      "AB"[i], st[i] -> subscriptions, stream_length(st[i], type),
                      (unsigned long long)stats_of(st[i], "inst-lb") -> pending,
                      stats_of(st[i], "inst-lb") -> consumers,
                      (unsigned long long)stats_of(st[i], "inst-fan") -> pending,
                      stats_of(st[i], "inst-fan") -> consumers);
        /* Shared: from Redis, the same whichever instance answers. */
        assert_true(st[i]->redis_connected);
        assert_int_equal(st[i]->subscriptions, 2);
        assert_int_equal(st[i]->n_subscription_stats, 2);
        assert_int_equal(st[i]->n_stream_lengths, 1);
        assert_int_equal(stream_length(st[i], type), EVENTS);
        assert_shared_sub(stats_of(st[i], "inst-lb"), 2, 2);
        assert_shared_sub(stats_of(st[i], "inst-fan"), 4, 1);
    }

    /* Each names itself, so per-instance figures can be told apart. */
    assert_true(st[0]->instance[0] != '\0' && st[1]->instance[0] != '\0');
    assert_string_not_equal(st[0]->instance, st[1]->instance);

    /* A's own: it took every publish, delivered 5 and took 6 acks. */
    assert_int_equal(st[0]->events_published, EVENTS);
    assert_int_equal(published_of(st[0], type), EVENTS);
    assert_int_equal(st[0]->publish_latency->count, EVENTS);
    assert_int_equal(st[0]->events_consumed, 5);
    assert_int_equal(st[0]->delivery_latency->count, 5);
    assert_int_equal(st[0]->events_acked, 6);
    assert_int_equal(st[0]->active_subscribers, 1);
    assert_int_equal(st[0]->handlers_registered, 1);
    assert_own_sub(stats_of(st[0], "inst-lb"), 1, 5, 0);
    assert_own_sub(stats_of(st[0], "inst-fan"), 0, 0, 6);

    /* B's own: no publish, 15 deliveries, 8 acks. */
    assert_int_equal(st[1]->events_published, 0);
    assert_int_equal(st[1]->n_published_by_type, 0);
    assert_int_equal(st[1]->publish_latency->count, 0);
    assert_int_equal(st[1]->events_consumed, 5 + EVENTS);
    assert_int_equal(st[1]->delivery_latency->count, 5 + EVENTS);
    assert_int_equal(st[1]->events_acked, 8);
    assert_int_equal(st[1]->active_subscribers, 2);
    assert_int_equal(st[1]->handlers_registered, 2);
    assert_own_sub(stats_of(st[1], "inst-lb"), 1, 5, 8);
    assert_own_sub(stats_of(st[1], "inst-fan"), 1, EVENTS, 0);

    protobuf_c_message_free_unpacked(&st[0]->base, NULL);
    protobuf_c_message_free_unpacked(&st[1]->base, NULL);
    received_cleanup(&r_a);
    received_cleanup(&r_b);
    received_cleanup(&r_fan);
    tse_test_stream_cancel(s_a);
    tse_test_stream_cancel(s_b);
    tse_test_stream_cancel(s_fan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_subscription_created_on_one_instance_is_used_through_the_other, world_up,
            world_down),
        cmocka_unit_test_setup_teardown(
            test_stats_shared_figures_agree_and_counters_are_each_instances_own, world_up,
            world_down),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
