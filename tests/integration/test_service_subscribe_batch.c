/*
 * test_service_subscribe_batch.c - batched delivery end to end: a real
 * redis-server, the real tracseq-events binary, Subscribe streams over
 * loopback, raw (tests/support streams) and through the SDK's subscriber.
 *
 * A subscriber that sets max_deliveries_per_message > 1 in its first
 * message gets a backlog in fewer messages (the Delivery and its `more`),
 * each delivery acked, nacked, redelivered and dead-lettered on its own as
 * before; one that does not (or sets 1) gets exactly one delivery per
 * message; the field's bounds are checked before anything attaches. What
 * the service claims is checked against Redis (XPENDING, the dead-letter
 * stream) and against the service's request log, which counts the
 * deliveries and messages of each Subscribe stream.
 *
 * Invariants of this file: every test uses its own subscription names and
 * event types. Backlogs are published before the subscription is created
 * with START_POSITION_EARLIEST, so the first read finds them whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "grpc_client.h"
#include "harness.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define SERVICE            "/tracseq.events.v1.EventService/"
#define M_PUBLISH_STREAM   SERVICE "PublishStream"
#define M_SUBSCRIBE        SERVICE "Subscribe"
#define STREAM_LIFETIME_MS 300000
#define UNARY_TIMEOUT_MS   10000
#define MAX_SEQ            2048

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__SubscribeRequest SubscribeRequest;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;

typedef tse_test_world world;

static int world_up(void **state)
{
    static const char *const args[] = {"--redis-timeout=10s", NULL};

    *state = tse_test_world_start(tse_test_redis_start(true), args, false, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* ---- events: generic, numbered through their subject "seq-<n>" ---- */

static int seq_of_subject(const char *subject)
{
    int seq;

    if (subject == NULL || strncmp(subject, "seq-", 4) != 0)
        return -1;
    seq = atoi(subject + 4);
    return seq >= 0 && seq < MAX_SEQ ? seq : -1;
}

static int seq_of(const Delivery *d)
{
    return d != NULL && d->event != NULL ? seq_of_subject(d->event->subject) : -1;
}

/* Publishes seq 0 .. n-1 through PublishStream, every answer checked. */
static void publish_many(tse_client *ch, const char *type, int n)
{
    tse_test_stream *s = tse_test_stream_open(ch, M_PUBLISH_STREAM, STREAM_LIFETIME_MS, NULL, NULL);
    tse_test_status st;

    for (int i = 0; i < n; i++) {
        PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        tse_test_event t;
        req.event = tse_test_event_init(&t, "batchtest", type, 0, i, NULL);
        assert_true(tse_test_stream_send(s, &req.base));
    }
    for (int i = 0; i < n; i++) {
        PublishResponse *r = (PublishResponse *)tse_test_stream_recv(
            s, &tracseq__events__v1__publish_response__descriptor, 30000, NULL);
        if (r == NULL || r->error != NULL)
            fail_msg("PublishStream of %s seq %d failed: %s", type, i,
                     r ? r->error->message : "stream ended");
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_true(tse_test_stream_close_send(s));
    assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_OK);
}

/* ---- subscriptions ---- */

/* One exact type, start EARLIEST (the backlog), 30 s deadline. */
static Subscription *spec_init(tse_test_subscription *sp, const char *name, const char *type)
{
    Subscription *sub = tse_test_subscription_init(
        sp, name, type, TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST);

    sub->max_delivery_attempts = 5;
    return sub;
}

static void create_ok(tse_client *ch, const Subscription *sub)
{
    tse_test_subscription_create(ch, sub, UNARY_TIMEOUT_MS);
}

/* ---- Subscribe streams ---- */

/* Joins name; per_message: max_deliveries_per_message (0: not set). */
static tse_test_stream *subscribe(tse_client *ch, const char *name, uint32_t per_message)
{
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(ch, M_SUBSCRIBE, STREAM_LIFETIME_MS, NULL, NULL);

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    req.max_deliveries_per_message = per_message;
    if (!tse_test_stream_send(s, &req.base))
        print_message("Subscribe: the first message could not be sent\n");
    return s;
}

/* Acks, nacks (delay_ms) or rejects ids on the stream, in one message. */
static void send_ids(tse_test_stream *s, Tracseq__Events__V1__SubscribeRequest__RequestCase kind,
                     char **ids, size_t n, uint32_t delay_ms)
{
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ack = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    Tracseq__Events__V1__NackIds nack = TRACSEQ__EVENTS__V1__NACK_IDS__INIT;

    if (n == 0)
        return;
    req.request_case = kind;
    if (kind == TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK) {
        ack.ack_ids = ids;
        ack.n_ack_ids = n;
        req.ack = &ack;
    } else {
        nack.ack_ids = ids;
        nack.n_ack_ids = n;
        nack.delay_ms = delay_ms;
        req.nack = &nack;
    }
    assert_true(tse_test_stream_send(s, &req.base));
}

static void ack_all(tse_test_stream *s, const Delivery *m)
{
    char *ids[1001];
    size_t n = 0;

    ids[n++] = m->ack_id;
    for (size_t i = 0; i < m->n_more && n < 1001; i++)
        ids[n++] = m->more[i]->ack_id;
    send_ids(s, TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK, ids, n, 0);
}

/* What a stream received. */
typedef struct tally {
    int deliveries, messages, largest;
    int seen[MAX_SEQ];
} tally;

/* Receives until `want` deliveries arrived (or timeout_ms passed), acking
 * each message's deliveries when ack; every delivery is checked: a
 * sequence of this test, attempt 1, no `more` of its own, at most
 * per_message in a message. */
static void receive(tse_test_stream *s, int want, bool ack, uint32_t per_message, tally *t,
                    int timeout_ms)
{
    long long end = tse_test_now_ms() + timeout_ms;

    while (t->deliveries < want && tse_test_now_ms() < end) {
        const Delivery *ds[1001];
        Delivery *m = tse_test_next_delivery(s, (int)(end - tse_test_now_ms()), NULL);
        size_t n;

        if (m == NULL)
            break;
        n = tse_test_message_deliveries(m, ds, 1001);
        if (n > (per_message > 1 ? per_message : 1))
            fail_msg("%zu deliveries in one message, max_deliveries_per_message %u", n,
                     per_message);
        for (size_t i = 0; i < n; i++) {
            int seq = seq_of(ds[i]);
            if (seq < 0)
                fail_msg("delivery %zu of a message has no event of this test", i);
            assert_int_equal(ds[i]->delivery_attempt, 1);
            assert_int_equal(ds[i]->n_more, i == 0 ? m->n_more : 0);
            assert_non_null(strstr(ds[i]->ack_id, ds[i]->stream_id));
            t->seen[seq]++;
        }
        t->deliveries += (int)n;
        t->messages++;
        if ((int)n > t->largest)
            t->largest = (int)n;
        if (ack)
            ack_all(s, m);
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
}

static void assert_each_once(const tally *t, int n)
{
    for (int i = 0; i < n; i++)
        if (t->seen[i] != 1)
            fail_msg("seq %d delivered %d times", i, t->seen[i]);
}

/* ---- Redis-side truth ---- */

static long long redis_int(const world *w, const char *fmt, const char *arg1, const char *arg2)
{
    char *out = tse_test_redis_cmd(w->redis, fmt, arg1, arg2);
    long long v;

    assert_non_null(out);
    v = atoll(out);
    free(out);
    return v;
}

static long long pending(const world *w, const char *type, const char *group)
{
    char key[160];

    snprintf(key, sizeof(key), "tracseq:events:{%s}:p3", type);
    return redis_int(w, "XPENDING %s %s", key, group);
}

/* ---- the service's request log ---- */

/* From the request line of the ended Subscribe stream of `name`: its
 * "delivered" and "messages"; false while there is none. */
static bool logged_counts(const world *w, const char *name, long long *delivered,
                          long long *messages)
{
    char want[160], line[8192];
    const char *d, *m;
    bool found = false;
    FILE *f = fopen(w->service->log, "r");

    if (f == NULL)
        return false;
    snprintf(want, sizeof(want), "\"subscription\":\"%s\"", name);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "\"Subscribe\"") == NULL || strstr(line, want) == NULL ||
            (d = strstr(line, "\"delivered\":\"")) == NULL ||
            (m = strstr(line, "\"messages\":\"")) == NULL)
            continue;
        *delivered = atoll(d + strlen("\"delivered\":\""));
        *messages = atoll(m + strlen("\"messages\":\""));
        found = true;
    }
    fclose(f);
    return found;
}

/* ==== a raw subscriber ==== */

static void test_opted_in_subscriber_gets_a_backlog_in_fewer_messages_each_acked(void **state)
{
    world *w = *state;
    tally *t = calloc(1, sizeof(*t));
    long long delivered = 0, messages = 0;
    tse_test_subscription sp;

    publish_many(w->ch, "batch.backlog", 500);
    spec_init(&sp, "batch-backlog", "batch.backlog");
    sp.sub.max_in_flight = 1000;
    create_ok(w->ch, &sp.sub);
    tse_test_stream *s = subscribe(w->ch, "batch-backlog", 100);
    receive(s, 500, true, 100, t, 20000);
    assert_int_equal(t->deliveries, 500);
    assert_each_once(t, 500);
    print_message("500 deliveries in %d messages (largest %d)\n", t->messages, t->largest);
    /* The engine hands a read's entries over together: they share messages. */
    assert_true(t->messages < t->deliveries);
    assert_true(t->largest > 1);
    /* Every ack of every message took effect. */
    TSE_TEST_AWAIT(pending(w, "batch.backlog", "batch-backlog") == 0, 10000, "all 500 acked");
    tse_test_stream_cancel(s);
    TSE_TEST_AWAIT(logged_counts(w, "batch-backlog", &delivered, &messages), 10000,
                   "the Subscribe request line");
    assert_int_equal(delivered, 500);
    assert_int_equal(messages, t->messages);
    tse_test_delete_subscription(w->ch, "batch-backlog", UNARY_TIMEOUT_MS);
    free(t);
}

static void test_a_subscriber_that_did_not_opt_in_gets_one_delivery_per_message(void **state)
{
    world *w = *state;
    static const uint32_t per_message[] = {0, 1};
    char name[64];
    long long delivered = 0, messages = 0;
    tse_test_subscription sp;

    publish_many(w->ch, "batch.single", 300);
    for (size_t k = 0; k < 2; k++) {
        tally *t = calloc(1, sizeof(*t));
        snprintf(name, sizeof(name), "batch-single-%u", per_message[k]);
        spec_init(&sp, name, "batch.single");
        sp.sub.max_in_flight = 1000;
        create_ok(w->ch, &sp.sub);
        tse_test_stream *s = subscribe(w->ch, name, per_message[k]);
        /* receive() fails on a message with more than one. */
        receive(s, 300, true, 1, t, 20000);
        assert_int_equal(t->deliveries, 300);
        assert_int_equal(t->messages, 300);
        assert_each_once(t, 300);
        TSE_TEST_AWAIT(pending(w, "batch.single", name) == 0, 10000, "all 300 acked");
        tse_test_stream_cancel(s);
        TSE_TEST_AWAIT(logged_counts(w, name, &delivered, &messages), 10000,
                       "the Subscribe request line");
        assert_int_equal(delivered, 300);
        assert_int_equal(messages, 300);
        tse_test_delete_subscription(w->ch, name, UNARY_TIMEOUT_MS);
        free(t);
    }
}

static void test_batches_never_exceed_max_in_flight(void **state)
{
    world *w = *state;
    tally *t = calloc(1, sizeof(*t));
    bool ended = false;
    tse_test_subscription sp;

    publish_many(w->ch, "batch.credit", 100);
    spec_init(&sp, "batch-credit", "batch.credit");
    sp.sub.max_in_flight = 10;
    create_ok(w->ch, &sp.sub);
    tse_test_stream *s = subscribe(w->ch, "batch-credit", 1000);
    receive(s, 10, false, 1000, t, 10000);
    assert_int_equal(t->deliveries, 10);
    /* Nothing more while 10 are unacked (a wait that is the subject). */
    Delivery *extra = tse_test_next_delivery(s, 700, &ended);
    if (extra != NULL)
        fail_msg("an 11th delivery with 10 unacked and max_in_flight 10");
    assert_false(ended);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "batch-credit", UNARY_TIMEOUT_MS);
    free(t);
}

static void test_batched_deliveries_nack_redeliver_and_dead_letter_one_by_one(void **state)
{
    world *w = *state;
    char *nacked[20], *acked[20];
    size_t n_nacked = 0, n_acked = 0;
    int got = 0, attempts2 = 0;
    Delivery *held[20];
    size_t n_held = 0;
    tse_test_subscription sp;

    publish_many(w->ch, "batch.poison", 20);
    spec_init(&sp, "batch-poison", "batch.poison");
    sp.sub.ack_deadline_ms = 400;
    sp.sub.max_delivery_attempts = 2;
    create_ok(w->ch, &sp.sub);
    tse_test_stream *s = subscribe(w->ch, "batch-poison", 100);
    /* First attempt: ack the even sequences, nack the odd ones. */
    while (got < 20) {
        const Delivery *ds[101];
        Delivery *m = tse_test_next_delivery(s, 10000, NULL);
        if (m == NULL)
            fail_msg("only %d of 20 first deliveries came", got);
        size_t n = tse_test_message_deliveries(m, ds, 101);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ds[i]->delivery_attempt, 1);
            if (seq_of(ds[i]) % 2 == 0)
                acked[n_acked++] = ds[i]->ack_id;
            else
                nacked[n_nacked++] = ds[i]->ack_id;
        }
        got += (int)n;
        held[n_held++] = m;
    }
    assert_int_equal(n_acked, 10);
    send_ids(s, TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK, acked, n_acked, 0);
    send_ids(s, TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK, nacked, n_nacked, 0);
    /* Second attempt: the 10 nacked ones come back, the acked ones never;
     * left unacked, they are dead-lettered after max_delivery_attempts. */
    while (attempts2 < 10) {
        const Delivery *ds[101];
        Delivery *m = tse_test_next_delivery(s, 10000, NULL);
        if (m == NULL)
            fail_msg("only %d of 10 redeliveries came", attempts2);
        size_t n = tse_test_message_deliveries(m, ds, 101);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ds[i]->delivery_attempt, 2);
            assert_int_equal(seq_of(ds[i]) % 2, 1);
        }
        attempts2 += (int)n;
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
    assert_int_equal(attempts2, 10);
    TSE_TEST_AWAIT(redis_int(w, "XLEN %s", "tracseq:dlq:batch-poison", NULL) == 10, 15000,
                   "10 dead letters");
    TSE_TEST_AWAIT(pending(w, "batch.poison", "batch-poison") == 0, 10000, "nothing pending");
    for (size_t i = 0; i < n_held; i++)
        protobuf_c_message_free_unpacked(&held[i]->base, NULL);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "batch-poison", UNARY_TIMEOUT_MS);
}

static void test_auto_ack_batches_leave_nothing_pending(void **state)
{
    world *w = *state;
    tally *t = calloc(1, sizeof(*t));
    tse_test_subscription sp;

    publish_many(w->ch, "batch.auto", 300);
    spec_init(&sp, "batch-auto", "batch.auto");
    sp.sub.auto_ack = true;
    create_ok(w->ch, &sp.sub);
    tse_test_stream *s = subscribe(w->ch, "batch-auto", 50);
    receive(s, 300, false, 50, t, 20000);
    assert_int_equal(t->deliveries, 300);
    assert_each_once(t, 300);
    assert_true(t->messages < t->deliveries);
    TSE_TEST_AWAIT(pending(w, "batch.auto", "batch-auto") == 0, 10000, "all auto-acked");
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "batch-auto", UNARY_TIMEOUT_MS);
    free(t);
}

/* ==== hostile: the field's bounds ==== */

static void test_max_deliveries_per_message_over_1000_is_invalid_naming_it(void **state)
{
    world *w = *state;
    static const uint32_t bad[] = {1001, 65536, UINT32_MAX};
    tse_test_status st;
    tse_test_subscription sp;

    spec_init(&sp, "batch-bounds", "batch.bounds");
    create_ok(w->ch, &sp.sub);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tse_test_stream *s = subscribe(w->ch, "batch-bounds", bad[i]);
        assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
        if (strncmp(st.details, "max_deliveries_per_message:", 27) != 0)
            fail_msg("%u: expected the error to name max_deliveries_per_message, got '%s'", bad[i],
                     st.details);
    }
    /* With a spec as the first message too, and nothing was created. */
    {
        SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
        tse_test_subscription other;
        tse_test_stream *s =
            tse_test_stream_open(w->ch, M_SUBSCRIBE, STREAM_LIFETIME_MS, NULL, NULL);
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION;
        req.subscription = spec_init(&other, "batch-bounds-spec", "batch.bounds");
        req.max_deliveries_per_message = 1001;
        tse_test_stream_send(s, &req.base);
        assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
        assert_int_equal(strncmp(st.details, "max_deliveries_per_message:", 27), 0);
        assert_int_equal(redis_int(w, "HEXISTS tracseq:subs %s", "batch-bounds-spec", NULL), 0);
    }
    assert_int_equal(tse_test_subscribers_of(w->ch, "batch-bounds", UNARY_TIMEOUT_MS), 0);
    /* The bound itself is accepted and delivers. */
    {
        tally *t = calloc(1, sizeof(*t));
        tse_test_stream *s = subscribe(w->ch, "batch-bounds", 1000);
        TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch, "batch-bounds", UNARY_TIMEOUT_MS) == 1, 10000,
                       "attached");
        publish_many(w->ch, "batch.bounds", 3);
        receive(s, 3, true, 1000, t, 10000);
        assert_int_equal(t->deliveries, 3);
        tse_test_stream_cancel(s);
        free(t);
    }
    tse_test_delete_subscription(w->ch, "batch-bounds", UNARY_TIMEOUT_MS);
}

/* ==== the SDK's subscriber ==== */

typedef struct sdk_collector {
    pthread_mutex_t mu;
    int n;
    int seen[MAX_SEQ];
    int bad;
} sdk_collector;

static void on_sdk_delivery(void *arg, const tse_client_event_view *v, tse_client_delivery *d)
{
    sdk_collector *c = arg;
    int seq = seq_of_subject(v->subject);

    (void)d; /* ACK_AUTO: acked when this returns */
    pthread_mutex_lock(&c->mu);
    if (seq < 0 || v->delivery_attempt != 1)
        c->bad++;
    else
        c->seen[seq]++;
    c->n++;
    pthread_mutex_unlock(&c->mu);
}

static int sdk_count(sdk_collector *c)
{
    int n;

    pthread_mutex_lock(&c->mu);
    n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* An SDK subscriber with per_message (0: the SDK's default) drains a
 * backlog of n, each event once, all acked; returns the messages the
 * service logged for its stream. */
static long long sdk_drain(world *w, const char *name, const char *type, int per_message, int n)
{
    tse_client_subscriber_options o = {.subscription = name,
                                       .ack_mode = TSE_CLIENT_ACK_AUTO,
                                       .max_deliveries_per_message = per_message};
    sdk_collector *c = calloc(1, sizeof(*c));
    tse_client_subscriber *sub = NULL;
    long long delivered = 0, messages = 0;
    tse_client_error err;
    tse_test_subscription sp;

    pthread_mutex_init(&c->mu, NULL);
    spec_init(&sp, name, type);
    sp.sub.max_in_flight = 1000;
    create_ok(w->ch, &sp.sub);
    if (tse_client_subscriber_create(w->ch, &o, on_sdk_delivery, c, &sub, &err) != TSE_CLIENT_OK)
        fail_msg("subscriber: %s", err.message);
    assert_int_equal(tse_client_subscriber_start(sub, NULL), TSE_CLIENT_OK);
    TSE_TEST_AWAIT(sdk_count(c) >= n, 20000, "%d callbacks of %s", n, name);
    TSE_TEST_AWAIT(pending(w, type, name) == 0, 10000, "%s all acked", name);
    tse_client_subscriber_destroy(sub);
    assert_int_equal(c->bad, 0);
    assert_int_equal(c->n, n);
    for (int i = 0; i < n; i++)
        if (c->seen[i] != 1)
            fail_msg("%s: seq %d delivered %d times", name, i, c->seen[i]);
    TSE_TEST_AWAIT(logged_counts(w, name, &delivered, &messages), 10000,
                   "the Subscribe request line of %s", name);
    assert_int_equal(delivered, n);
    print_message("%s: %lld deliveries in %lld messages\n", name, delivered, messages);
    pthread_mutex_destroy(&c->mu);
    free(c);
    tse_test_delete_subscription(w->ch, name, UNARY_TIMEOUT_MS);
    return messages;
}

static void test_sdk_subscriber_batches_by_default_and_callbacks_see_single_events(void **state)
{
    world *w = *state;

    publish_many(w->ch, "batch.sdk", 600);
    assert_true(sdk_drain(w, "batch-sdk-default", "batch.sdk", 0, 600) < 600);
    assert_true(sdk_drain(w, "batch-sdk-100", "batch.sdk", 100, 600) < 600);
    /* Off: one per message, as from a server older than batching. */
    assert_int_equal(sdk_drain(w, "batch-sdk-off", "batch.sdk", 1, 600), 600);
}

static void test_sdk_refuses_max_deliveries_per_message_out_of_range(void **state)
{
    world *w = *state;
    static const int bad[] = {-1, 1001};
    tse_client_subscriber *sub = NULL;
    tse_client_error err;

    for (size_t i = 0; i < 2; i++) {
        tse_client_subscriber_options o = {.subscription = "batch-sdk-bad",
                                           .max_deliveries_per_message = bad[i]};
        assert_int_equal(tse_client_subscriber_create(w->ch, &o, on_sdk_delivery, NULL, &sub, &err),
                         TSE_CLIENT_INVALID_ARGUMENT);
        assert_string_equal(err.field, "max_deliveries_per_message");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opted_in_subscriber_gets_a_backlog_in_fewer_messages_each_acked),
        cmocka_unit_test(test_a_subscriber_that_did_not_opt_in_gets_one_delivery_per_message),
        cmocka_unit_test(test_batches_never_exceed_max_in_flight),
        cmocka_unit_test(test_batched_deliveries_nack_redeliver_and_dead_letter_one_by_one),
        cmocka_unit_test(test_auto_ack_batches_leave_nothing_pending),
        cmocka_unit_test(test_max_deliveries_per_message_over_1000_is_invalid_naming_it),
        cmocka_unit_test(test_sdk_subscriber_batches_by_default_and_callbacks_see_single_events),
        cmocka_unit_test(test_sdk_refuses_max_deliveries_per_message_out_of_range),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
