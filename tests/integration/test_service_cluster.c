/*
 * test_service_cluster.c - the service on a Redis Cluster (issue 13,
 * "Tests"): 3 masters with a replica each (tests/support/cluster.h), the
 * real tracseq-events binary given their redis+cluster:// seed list, the
 * real REST bridge in front of it, and calls over loopback.
 *
 * Every test uses event types whose streams live on different masters
 * (chosen by the slot of their hash tag, as Redis computes it), so what
 * the service does across masters is what is checked: publish of every
 * catalog type, wildcard subscriptions, load balancing and fan-out,
 * redelivery and dead letters, dedup (its scope: one event type), Pull
 * (gRPC and REST), GetStats; then a live resharding by `redis-cli
 * --cluster reshard` and a master killed with SIGKILL, each under publish
 * and subscribe load, after which every publish answered OK must have
 * been delivered at least once (duplicates are allowed: at least once).
 *
 * Invariants of this file: every test has its own subscription names and
 * event types; the failover test runs last (it leaves a node dead). Waits
 * are for conditions (wait.h); no assertion is on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "codec/pbjson.h"
#include "common/clock.h"
#include "events.h"
#include "grpc_client.h"
#include "harness.h"
#include "http_client.h"
#include "storage/keys.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define SERVICE         "/tracseq.events.v1.EventService/"
#define M_PUBLISH       SERVICE "Publish"
#define M_SUBSCRIBE     SERVICE "Subscribe"
#define M_PULL          SERVICE "Pull"
#define M_ACKNOWLEDGE   SERVICE "Acknowledge"
#define M_NACK          SERVICE "Nack"
#define M_CREATE        SERVICE "CreateSubscription"
#define M_STATS         SERVICE "GetStats"
#define CALL_MS         10000
/* A call's deadline while a master is dead: as any other (a writer lane's
 * round gives a slot without a master a short while, not the Redis timeout). */
#define GAP_CALL_MS     CALL_MS
/* Publishes answered while a master is dead (publishers at LOAD_PAUSE_US):
 * OK for the live masters' types, UNAVAILABLE for the dead one's. A lane
 * that waited the Redis timeout (5 s here) for the dead slot's job, its
 * batch's jobs of live slots waiting with it, answers a few per SETTLE_MS. */
#define GAP_PUBLISHES   100
#define GAP_REFUSALS    20
#define STREAM_MS       300000
#define MASTERS         3
/* A master unreachable this long is failed over (cluster-node-timeout). */
#define NODE_TIMEOUT_MS 1000
#define SETTLE_MS       30000
#define MAX_SEQ         4096
/* The load of the resharding and failover tests. */
#define LOAD_MAX        30000
#define LOAD_PAUSE_US   2000 /* between two publishes of one publisher: pacing, not a wait */
#define RESHARD_SLOTS   300
/* Keys put in the slot of the resharded type beside its streams: the tool
 * moves a slot's keys one at a time, so the slot stays half moved for
 * thousands of MIGRATEs rather than one. */
#define FILLER_KEYS     3000

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__SubscribeRequest SubscribeRequest;
typedef Tracseq__Events__V1__Stats Stats;

/* ---- the world: one cluster, one service, one bridge ---- */

typedef tse_test_world world; /* redis: the cluster's front, commands reach a key's master */

static int world_up(void **state)
{
    /* Redis's timeout well above a loaded machine's hiccups; a killed
     * master closes its sockets at once, so it is noticed anyway. */
    const char *const args[] = {"--redis-timeout=5s", NULL};

    *state = tse_test_world_start(tse_test_cluster_front(tse_test_redis_cluster_start_replicated(
                                      MASTERS, 1, NODE_TIMEOUT_MS)),
                                  args, true, NULL);
    return 0;
}

/* Graceful shutdown, even after a master died under it. */
static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* ---- event types by master ---- */

/* The master (node index) serving the streams of type. */
static int type_master(const world *w, const char *type)
{
    char key[160];

    tse_key_stream(type, 3, key, sizeof(key));
    return tse_test_cluster_key_master(w->redis->whole, key);
}

/* n (<= MASTERS) types "<prefix><i>" whose streams are on n different
 * masters, into types. */
static void types_on_masters(const world *w, const char *prefix, int n, char types[][32])
{
    int masters[MASTERS], found = 0;

    for (int i = 0; i < 1000 && found < n; i++) {
        bool taken = false;
        int m;
        snprintf(types[found], 32, "%s%d", prefix, i);
        m = type_master(w, types[found]);
        assert_true(m >= 0);
        for (int j = 0; j < found; j++)
            taken |= masters[j] == m;
        if (!taken)
            masters[found++] = m;
    }
    assert_int_equal(found, n);
}

/* Keys of the slot of key that its master holds (CLUSTER COUNTKEYSINSLOT
 * asked of that master itself: no redirection). */
static long long keys_held_by_master(const world *w, const char *key)
{
    unsigned slot = tse_key_slot(key, strlen(key));
    int m = tse_test_cluster_slot_master(w->redis->whole, slot);
    char *out;
    long long n;

    assert_true(m >= 0);
    out = tse_test_redis_cmd(w->redis->whole->nodes[m], "CLUSTER COUNTKEYSINSLOT %u", slot);
    assert_non_null(out);
    n = atoll(out);
    free(out);
    return n;
}

static long long redis_int(const world *w, const char *fmt, const char *arg)
{
    char *out = tse_test_redis_cmd(w->redis, fmt, arg);
    long long v;

    assert_non_null(out);
    v = atoll(out);
    free(out);
    return v;
}

/* ---- publishing ---- */

static grpc_status_code publish_event(tse_client *ch, Event *ev, PublishResponse **resp,
                                      tse_test_status *st)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;

    req.event = ev;
    *resp = NULL;
    return tse_test_unary(ch, M_PUBLISH, &req.base,
                          &tracseq__events__v1__publish_response__descriptor,
                          (ProtobufCMessage **)resp, st, CALL_MS, NULL, NULL);
}

/* Publishes one event, failing the test unless answered OK; caller frees. */
static PublishResponse *publish_ok(const world *w, const char *type, int priority, int seq,
                                   const char *client_id)
{
    PublishResponse *resp;
    tse_test_status st;
    tse_test_event t;
    grpc_status_code code = publish_event(
        w->ch, tse_test_event_init(&t, "clustertest", type, priority, seq, client_id), &resp, &st);

    if (code != GRPC_STATUS_OK)
        fail_msg("publish %s seq %d: status %d '%s'", type, seq, code, st.details);
    assert_non_null(resp);
    return resp;
}

static void publish_quiet(const world *w, const char *type, int priority, int seq)
{
    protobuf_c_message_free_unpacked(&publish_ok(w, type, priority, seq, NULL)->base, NULL);
}

/* ---- subscriptions ---- */

/* A subscription to patterns (NULL-terminated), start LATEST, 30 s ack
 * deadline; the caller changes what it needs before create_ok. */
typedef struct spec {
    Subscription sub;
    char *patterns[8];
} spec;

static Subscription *spec_init(spec *sp, const char *name, const char *const *patterns)
{
    Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;

    sp->sub = sub;
    sp->sub.name = (char *)name;
    sp->sub.n_event_types = 0;
    while (patterns[sp->sub.n_event_types] != NULL && sp->sub.n_event_types < 8) {
        sp->patterns[sp->sub.n_event_types] = (char *)patterns[sp->sub.n_event_types];
        sp->sub.n_event_types++;
    }
    sp->sub.event_types = sp->patterns;
    sp->sub.start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
    sp->sub.ack_deadline_ms = 30000;
    return &sp->sub;
}

/* A unary call with timeout_ms to answer. */
static grpc_status_code timed_unary(tse_client *ch, const char *method, const ProtobufCMessage *req,
                                    const ProtobufCMessageDescriptor *desc, void *resp,
                                    tse_test_status *st, int timeout_ms)
{
    return tse_test_unary(ch, method, req, desc, (ProtobufCMessage **)resp, st, timeout_ms, NULL,
                          NULL);
}

static grpc_status_code unary(tse_client *ch, const char *method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *desc, void *resp,
                              tse_test_status *st)
{
    return timed_unary(ch, method, req, desc, resp, st, CALL_MS);
}

static void create_ok(const world *w, const Subscription *sub)
{
    tse_test_subscription_create(w->ch, sub, CALL_MS);
}

static void await_subscribers(tse_client *ch, const char *name, uint32_t n)
{
    TSE_TEST_AWAIT(tse_test_subscribers_of(ch, name, CALL_MS) == n, SETTLE_MS,
                   "%u subscribers of %s", n, name);
}

static tse_test_stream *subscribe_name(tse_client *ch, const char *name)
{
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(ch, M_SUBSCRIBE, STREAM_MS, NULL, NULL);

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    if (!tse_test_stream_send(s, &req.base))
        print_message("Subscribe %s: the first message could not be sent\n", name);
    return s;
}

static void delivery_free(Delivery *d)
{
    if (d != NULL)
        protobuf_c_message_free_unpacked(&d->base, NULL);
}

/* Sends an ack (nack when nack) of one delivery; false when the stream
 * has ended. */
static bool settle(tse_test_stream *s, const char *ack_id, bool nack)
{
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds acks = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    Tracseq__Events__V1__NackIds nacks = TRACSEQ__EVENTS__V1__NACK_IDS__INIT;
    char *one = (char *)ack_id;

    if (nack) {
        nacks.ack_ids = &one;
        nacks.n_ack_ids = 1;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK;
        req.nack = &nacks;
    } else {
        acks.ack_ids = &one;
        acks.n_ack_ids = 1;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
        req.ack = &acks;
    }
    return tse_test_stream_send(s, &req.base);
}

/* The n of an event's "seq-<n>" subject; -1 when it has none. */
static int seq_of(const Event *ev)
{
    if (ev == NULL || ev->subject == NULL || strncmp(ev->subject, "seq-", 4) != 0)
        return -1;
    return atoi(ev->subject + 4);
}

/* One round over n streams: each gets a short wait for a delivery, which
 * is acked and counted in got[i][seq]. */
static void receive_round(tse_test_stream **s, int n, int (*got)[MAX_SEQ])
{
    for (int i = 0; i < n; i++) {
        Delivery *d = tse_test_next_delivery(s[i], 20, NULL);
        int seq;

        if (d == NULL)
            continue;
        seq = seq_of(d->event);
        assert_true(seq >= 0 && seq < MAX_SEQ);
        got[i][seq]++;
        assert_true(settle(s[i], d->ack_id, false));
        delivery_free(d);
    }
}

/* How many of seq 0..n-1 streams [from, to) of got delivered at least once. */
static int delivered_by(int (*got)[MAX_SEQ], int from, int to, int n)
{
    int count = 0;

    for (int seq = 0; seq < n; seq++) {
        int times = 0;
        for (int i = from; i < to; i++)
            times += got[i][seq];
        count += times > 0;
    }
    return count;
}

/* Fails the test if a delivery arrives on s within ms (what must not
 * come: a sleep that is the subject of the check). */
static void expect_silence(tse_test_stream *s, int ms, const char *why)
{
    Delivery *d = tse_test_next_delivery(s, ms, NULL);

    if (d != NULL)
        fail_msg("%s: got %s (%s)", why, d->ack_id, d->event ? d->event->subject : "no event");
}

/* ======================= publish and subscribe =========================== */

/* Every catalog type (tests/fixtures/catalog_events.json, one event of
 * each) is stored on the master of its type's slot and reaches a "*"
 * subscription once; the catalog's streams span all three masters. */
static void test_every_catalog_type_is_stored_on_its_master_and_delivered(void **state)
{
    world *w = *state;
    char path[512];
    json_error_t jerr;
    json_t *fixtures, *fixture, *seen = json_object();
    bool on_master[TSE_TEST_CLUSTER_MAX] = {false};
    int masters = 0, got = 0;
    size_t i, n;
    spec sp;

    create_ok(w, spec_init(&sp, "cat-all", (const char *const[]){"*", NULL}));
    tse_test_stream *s = subscribe_name(w->ch, "cat-all");
    await_subscribers(w->ch, "cat-all", 1);
    snprintf(path, sizeof(path), "%s/tests/fixtures/catalog_events.json", getenv("TSE_SOURCE_DIR"));
    fixtures = json_load_file(path, 0, &jerr);
    assert_non_null(fixtures);
    n = json_array_size(fixtures);
    assert_true(n >= 18);
    json_array_foreach(fixtures, i, fixture)
    {
        ProtobufCMessage *msg = NULL;
        PublishResponse *resp;
        tse_test_status st;
        tse_error err;
        char key[160];
        Event *ev;
        int m;

        if (tse_pbjson_to_message(fixture, &tracseq__events__v1__event__descriptor, 0, &msg,
                                  &err) != TSE_OK)
            fail_msg("fixture %zu does not map onto Event: %s %s", i, err.field, err.message);
        ev = (Event *)msg;
        if (publish_event(w->ch, ev, &resp, &st) != GRPC_STATUS_OK)
            fail_msg("publish of %s: '%s'", ev->event_type, st.details);
        /* Priority 3 when the fixture has none. */
        tse_key_stream(ev->event_type, ev->priority ? ev->priority : 3, key, sizeof(key));
        assert_string_equal(resp->stream, key);
        /* Held by the master of its slot, asked without redirection. */
        assert_true(keys_held_by_master(w, key) >= 1);
        m = tse_test_cluster_key_master(w->redis->whole, key);
        masters += !on_master[m];
        on_master[m] = true;
        json_object_set_new(seen, ev->event_type, json_integer(0));
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    assert_int_equal(masters, MASTERS);
    while (got < (int)n) {
        Delivery *d = tse_test_next_delivery(s, 10000, NULL);
        json_t *count;
        if (d == NULL)
            fail_msg("%d of %zu catalog events delivered", got, n);
        count = json_object_get(seen, d->event->event_type);
        if (count == NULL)
            fail_msg("delivered %s, never published here", d->event->event_type);
        json_integer_set(count, json_integer_value(count) + 1);
        assert_true(settle(s, d->ack_id, false));
        delivery_free(d);
        got++;
    }
    const char *type;
    json_t *count;
    json_object_foreach(seen, type, count)
    {
        if (json_integer_value(count) != 1)
            fail_msg("%s delivered %lld times", type, (long long)json_integer_value(count));
    }
    expect_silence(s, 300, "a catalog event twice");
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "cat-all", CALL_MS);
    json_decref(seen);
    json_decref(fixtures);
}

/* A pattern over types on three masters gets every matching event once,
 * in publish order per (type, priority), and nothing else. */
static void test_a_wildcard_over_types_on_three_masters_gets_each_event_once(void **state)
{
    world *w = *state;
    char types[MASTERS][32], other[MASTERS][32];
    int got[1][MAX_SEQ] = {{0}}, last[MASTERS][6], want = 0;
    spec sp;

    types_on_masters(w, "wild.t", MASTERS, types);
    types_on_masters(w, "tame.t", MASTERS, other);
    create_ok(w, spec_init(&sp, "wild", (const char *const[]){"wild.*", NULL}));
    tse_test_stream *s = subscribe_name(w->ch, "wild");
    await_subscribers(w->ch, "wild", 1);
    for (int seq = 0; seq < 90; seq++) {
        int t = seq % MASTERS, prio = 1 + (seq / MASTERS) % 5;
        publish_quiet(w, types[t], prio, seq);
        publish_quiet(w, other[t], prio, 1000 + seq);
        want++;
    }
    memset(last, -1, sizeof(last));
    for (int n = 0; n < want; n++) {
        Delivery *d = tse_test_next_delivery(s, 10000, NULL);
        int seq, t;
        if (d == NULL)
            fail_msg("%d of %d wild events delivered", n, want);
        seq = seq_of(d->event);
        if (seq < 0 || seq >= 90)
            fail_msg("delivered %s %s, which does not match wild.*", d->event->event_type,
                     d->event->subject);
        t = seq % MASTERS;
        assert_string_equal(d->event->event_type, types[t]);
        /* One stream per (type, priority): its events in publish order. */
        if (seq <= last[t][d->event->priority])
            fail_msg("%s p%d: seq %d after seq %d", types[t], d->event->priority, seq,
                     last[t][d->event->priority]);
        last[t][d->event->priority] = seq;
        got[0][seq]++;
        assert_true(settle(s, d->ack_id, false));
        delivery_free(d);
    }
    for (int seq = 0; seq < 90; seq++)
        if (got[0][seq] != 1)
            fail_msg("seq %d delivered %d times", seq, got[0][seq]);
    expect_silence(s, 300, "an event twice, or one of tame.*");
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "wild", CALL_MS);
}

/* Two subscribers of one subscription split its events (each once, both
 * get some); a second subscription gets every one of them too. */
static void test_subscribers_split_a_subscription_and_subscriptions_each_get_all(void **state)
{
    world *w = *state;
    static int got[3][MAX_SEQ];
    char types[MASTERS][32];
    const int n = 150;
    tse_test_stream *s[3];
    int split = 0;
    spec sp;

    memset(got, 0, sizeof(got));
    types_on_masters(w, "share.t", MASTERS, types);
    create_ok(w, spec_init(&sp, "share-a", (const char *const[]){"share.*", NULL}));
    create_ok(w, spec_init(&sp, "share-b", (const char *const[]){"share.*", NULL}));
    s[0] = subscribe_name(w->ch, "share-a");
    s[1] = subscribe_name(w->ch, "share-a");
    s[2] = subscribe_name(w->ch, "share-b");
    await_subscribers(w->ch, "share-a", 2);
    await_subscribers(w->ch, "share-b", 1);
    for (int seq = 0; seq < n; seq++)
        publish_quiet(w, types[seq % MASTERS], 3, seq);
    /* share-a's two streams together get n; share-b's gets n. */
    TSE_TEST_AWAIT((receive_round(s, 3, got),
                    delivered_by(got, 0, 2, n) == n && delivered_by(got, 2, 3, n) == n),
                   SETTLE_MS, "share-a and share-b to get %d events each", n);
    /* Anything more (a duplicate) would come now. */
    for (int i = 0; i < 10; i++)
        receive_round(s, 3, got);
    for (int seq = 0; seq < n; seq++) {
        if (got[0][seq] + got[1][seq] != 1)
            fail_msg("share-a: seq %d delivered %d + %d times", seq, got[0][seq], got[1][seq]);
        if (got[2][seq] != 1)
            fail_msg("share-b: seq %d delivered %d times", seq, got[2][seq]);
        split += got[0][seq];
    }
    print_message("share-a: %d and %d of %d\n", split, n - split, n);
    assert_true(split > 0 && split < n);
    for (int i = 0; i < 3; i++)
        tse_test_stream_cancel(s[i]);
    tse_test_delete_subscription(w->ch, "share-a", CALL_MS);
    tse_test_delete_subscription(w->ch, "share-b", CALL_MS);
}

/* Across masters: a nacked event comes back (attempt 2), an unacked one
 * comes back after its deadline, and one never acked is dead-lettered
 * after max_delivery_attempts into the subscription's dead-letter stream
 * (a key of its own slot). */
static void test_nack_and_deadline_redeliver_and_dead_letters_are_stored(void **state)
{
    world *w = *state;
    char types[MASTERS][32], dlq[160];
    int attempts[MASTERS] = {0};
    bool settled[MASTERS] = {false};
    spec sp;

    types_on_masters(w, "retry.t", MASTERS, types);
    spec_init(&sp, "retry", (const char *const[]){"retry.*", NULL});
    sp.sub.ack_deadline_ms = 500;
    sp.sub.max_delivery_attempts = 3;
    create_ok(w, &sp.sub);
    tse_test_stream *s = subscribe_name(w->ch, "retry");
    await_subscribers(w->ch, "retry", 1);
    /* types[0]: nacked once, then acked; types[1]: left to its deadline
     * once, then acked; types[2]: never acked (dead-lettered). */
    for (int t = 0; t < MASTERS; t++)
        publish_quiet(w, types[t], 3, t);
    while (!settled[0] || !settled[1] || attempts[2] < 3) {
        Delivery *d = tse_test_next_delivery(s, 10000, NULL);
        int t;
        if (d == NULL)
            fail_msg("stalled: attempts %d %d %d", attempts[0], attempts[1], attempts[2]);
        t = seq_of(d->event);
        assert_true(t >= 0 && t < MASTERS);
        attempts[t]++;
        assert_int_equal(d->delivery_attempt, attempts[t]);
        if (t == 0 && attempts[t] == 1)
            assert_true(settle(s, d->ack_id, true));
        else if (t < 2 && attempts[t] == 2) {
            assert_true(settle(s, d->ack_id, false));
            settled[t] = true;
        }
        delivery_free(d);
    }
    tse_key_dlq("retry", dlq, sizeof(dlq));
    TSE_TEST_AWAIT(redis_int(w, "XLEN %s", dlq) == 1, SETTLE_MS, "one dead letter in %s", dlq);
    expect_silence(s, 1500, "a delivery after the last attempt or the ack");
    assert_int_equal(attempts[0], 2);
    assert_int_equal(attempts[1], 2);
    assert_int_equal(attempts[2], 3);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "retry", CALL_MS);
}

/* A client id is a duplicate within its event type (one slot: its dedup
 * key shares the type's hash tag), not across types on other masters. */
static void test_dedup_by_client_id_is_per_event_type(void **state)
{
    world *w = *state;
    const char *id = "7d0c2a9e-5b1f-4c3d-9e8a-1f2b3c4d5e6f";
    char types[2][32], key[2][160], dedup[160];
    PublishResponse *first, *again, *other;

    types_on_masters(w, "dedup.t", 2, types);
    first = publish_ok(w, types[0], 3, 1, id);
    again = publish_ok(w, types[0], 3, 2, id);
    other = publish_ok(w, types[1], 3, 3, id);
    assert_false(first->duplicate);
    assert_true(again->duplicate);
    assert_string_equal(again->stream_id, first->stream_id);
    assert_false(other->duplicate);
    for (int t = 0; t < 2; t++) {
        tse_key_stream(types[t], 3, key[t], sizeof(key[t]));
        assert_int_equal(redis_int(w, "XLEN %s", key[t]), 1);
    }
    /* The dedup key lives in the slot of its type's streams. */
    tse_key_dedup(types[0], id, dedup, sizeof(dedup));
    assert_int_equal(tse_key_slot(dedup, strlen(dedup)), tse_key_slot(key[0], strlen(key[0])));
    assert_int_equal(redis_int(w, "EXISTS %s", dedup), 1);
    protobuf_c_message_free_unpacked(&first->base, NULL);
    protobuf_c_message_free_unpacked(&again->base, NULL);
    protobuf_c_message_free_unpacked(&other->base, NULL);
}

/* ======================= Pull, REST, stats =============================== */

static Tracseq__Events__V1__PullResponse *pull(const world *w, const char *name, uint32_t max,
                                               uint32_t wait_ms)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    Tracseq__Events__V1__PullResponse *resp = NULL;
    tse_test_status st;
    grpc_status_code code;

    req.subscription = (char *)name;
    req.max_events = max;
    req.wait_ms = wait_ms;
    code = unary(w->ch, M_PULL, &req.base, &tracseq__events__v1__pull_response__descriptor, &resp,
                 &st);
    if (code != GRPC_STATUS_OK)
        fail_msg("Pull %s: status %d '%s'", name, code, st.details);
    return resp;
}

/* Acknowledges (or nacks with delay 0) n ack ids over unary calls; returns
 * how many the service acked (nack: 0). */
static uint32_t settle_unary(const world *w, const char *name, char **ids, size_t n, bool nack)
{
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__NackRequest nreq = TRACSEQ__EVENTS__V1__NACK_REQUEST__INIT;
    Tracseq__Events__V1__AcknowledgeResponse *aresp = NULL;
    ProtobufCMessage *nresp = NULL;
    tse_test_status st;
    uint32_t acked = 0;

    if (nack) {
        nreq.subscription = (char *)name;
        nreq.ack_ids = ids;
        nreq.n_ack_ids = n;
        assert_int_equal(unary(w->ch, M_NACK, &nreq.base,
                               &tracseq__events__v1__nack_response__descriptor, &nresp, &st),
                         GRPC_STATUS_OK);
        protobuf_c_message_free_unpacked(nresp, NULL);
        return 0;
    }
    ack.subscription = (char *)name;
    ack.ack_ids = ids;
    ack.n_ack_ids = n;
    assert_int_equal(unary(w->ch, M_ACKNOWLEDGE, &ack.base,
                           &tracseq__events__v1__acknowledge_response__descriptor, &aresp, &st),
                     GRPC_STATUS_OK);
    acked = aresp->acked;
    assert_int_equal(aresp->n_unknown_ack_ids, 0);
    protobuf_c_message_free_unpacked(&aresp->base, NULL);
    return acked;
}

/* Publishes one event through the bridge (REST), its subject "seq-<n>". */
static void rest_publish(const world *w, const char *type, int seq)
{
    char body[512];
    tse_test_http_resp r;
    int fd = tse_test_http_connect(w->bridge->port);

    snprintf(body, sizeof(body),
             "{\"event_type\":\"%s\",\"source_service\":\"clustertest\",\"subject\":\"seq-%d\","
             "\"payload\":{\"n\":%d}}",
             type, seq, seq);
    tse_test_http_send(fd, "POST", "/api/v1/events/publish", "application/json", NULL, body,
                       strlen(body), true);
    assert_true(tse_test_http_read(fd, &r));
    close(fd);
    if (r.status != 200)
        fail_msg("REST publish of %s: %d %s", type, r.status, r.body);
    free(r.body);
}

/* Events published through the REST bridge on types of three masters are
 * pulled over gRPC: acked ones are gone, nacked ones come back (attempt
 * 2; maybe before other first deliveries), then the queue is empty. */
static void test_pull_over_three_masters_acks_and_nacks(void **state)
{
    world *w = *state;
    char types[MASTERS][32];
    int seen[MAX_SEQ] = {0}, acked = 0;
    const int n = 30;
    spec sp;

    types_on_masters(w, "pull.t", MASTERS, types);
    create_ok(w, spec_init(&sp, "puller", (const char *const[]){"pull.*", NULL}));
    for (int seq = 0; seq < n; seq++)
        rest_publish(w, types[seq % MASTERS], seq);
    /* An odd seq is acked at once, an even one nacked once, then acked. */
    for (int round = 0; acked < n && round < 200; round++) {
        Tracseq__Events__V1__PullResponse *r = pull(w, "puller", 7, 2000);
        char *acks[16], *nacks[16];
        size_t na = 0, nn = 0;
        for (size_t i = 0; i < r->n_deliveries; i++) {
            Delivery *d = r->deliveries[i];
            int seq = seq_of(d->event);
            assert_true(seq >= 0 && seq < n);
            assert_int_equal(d->delivery_attempt, ++seen[seq]);
            if (seq % 2 == 0 && seen[seq] == 1)
                nacks[nn++] = d->ack_id;
            else {
                assert_true(seen[seq] == (seq % 2 ? 1 : 2));
                acks[na++] = d->ack_id;
            }
        }
        if (na > 0)
            assert_int_equal(settle_unary(w, "puller", acks, na, false), na);
        if (nn > 0)
            settle_unary(w, "puller", nacks, nn, true);
        acked += (int)na;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_int_equal(acked, n);
    Tracseq__Events__V1__PullResponse *empty = pull(w, "puller", 10, 300);
    assert_int_equal(empty->n_deliveries, 0);
    protobuf_c_message_free_unpacked(&empty->base, NULL);
    tse_test_delete_subscription(w->ch, "puller", CALL_MS);
}

/* GetStats reports the stream lengths (per event type) of types on all
 * three masters as Redis holds them, and the subscriptions Redis holds. */
static void test_stats_report_streams_of_every_master_as_redis_holds_them(void **state)
{
    world *w = *state;
    char types[MASTERS][32], key[MASTERS][160];
    Stats *st;
    spec sp;

    types_on_masters(w, "stats.t", MASTERS, types);
    create_ok(w, spec_init(&sp, "stats-sub", (const char *const[]){"stats.*", NULL}));
    for (int t = 0; t < MASTERS; t++) {
        tse_key_stream(types[t], 3, key[t], sizeof(key[t]));
        for (int i = 0; i <= t; i++)
            publish_quiet(w, types[t], 3, i);
    }
    st = tse_test_get_stats(w->ch, CALL_MS);
    assert_true(st->redis_connected);
    for (int t = 0; t < MASTERS; t++) {
        bool found = false;
        for (size_t i = 0; i < st->n_stream_lengths; i++)
            if (strcmp(st->stream_lengths[i]->key, types[t]) == 0) {
                found = true;
                assert_int_equal(st->stream_lengths[i]->value, t + 1);
                assert_int_equal(st->stream_lengths[i]->value, redis_int(w, "XLEN %s", key[t]));
            }
        if (!found)
            fail_msg("GetStats lists no length of %s (on node %d)", types[t],
                     tse_test_cluster_key_master(w->redis->whole, key[t]));
    }
    assert_int_equal(st->subscriptions, redis_int(w, "HLEN %s", TSE_SUBS_KEY));
    protobuf_c_message_free_unpacked(&st->base, NULL);
    tse_test_delete_subscription(w->ch, "stats-sub", CALL_MS);
}

/* ======================= load: resharding and failover =================== */

/*
 * Publishers (one thread and channel per type) publish numbered events
 * until told to stop; a subscriber thread receives and acks them. What
 * every publish was answered and how often every event was delivered is
 * kept per seq. No cmocka assertion runs in a thread: a thread records
 * what went wrong in `error`, the test checks it.
 */
typedef struct load load;

typedef struct publisher {
    load *l;
    int type; /* index into l->types */
    pthread_t th;
    atomic_int ok, failed;
    atomic_bool paused;      /* publishes nothing while set */
    char first_refusal[256]; /* the details of the first refusal; written before failed counts it */
} publisher;

struct load {
    const world *w;
    char types[MASTERS][32];
    const char *subscription;
    publisher pub[MASTERS];
    pthread_t sub_th;
    atomic_int next_seq;
    atomic_int ok_total;
    atomic_uchar answer[LOAD_MAX]; /* 0: none yet, 1: OK, 2: refused (UNAVAILABLE) */
    atomic_int delivered[LOAD_MAX];
    atomic_int deliveries, resubscribes;
    atomic_int type_deliveries[MASTERS]; /* deliveries of each of types[] */
    char end_status[160];                /* how the subscriber's first stream that ended ended */
    atomic_bool stop_publishing, stop_subscribing;
    atomic_bool hold_subscriber; /* the subscriber reads (and acks) nothing while set */
    pthread_mutex_t mu;
    char error[512]; /* the first thing that went wrong, under mu */
};

static void load_error(load *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void load_error(load *l, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&l->mu);
    if (l->error[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(l->error, sizeof(l->error), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&l->mu);
}

static void *publisher_main(void *arg)
{
    publisher *p = arg;
    load *l = p->l;
    tse_client *ch = tse_test_channel(l->w->service->addr);

    while (!atomic_load(&l->stop_publishing)) {
        int seq;
        PublishResponse *resp;
        tse_test_status st;
        tse_test_event t;
        grpc_status_code code;

        if (atomic_load(&p->paused)) {
            usleep(LOAD_PAUSE_US);
            continue;
        }
        seq = atomic_fetch_add(&l->next_seq, 1);
        if (seq >= LOAD_MAX) {
            load_error(l, "more than %d events published", LOAD_MAX);
            break;
        }
        /* No client id: one key per publish (a script over two keys of a
         * half-moved slot is answered TRYAGAIN until the slot's keys are
         * on one side, for as long as the tool takes). */
        code = publish_event(
            ch, tse_test_event_init(&t, "clustertest", l->types[p->type], 3, seq, NULL), &resp,
            &st);
        if (code == GRPC_STATUS_OK) {
            atomic_store(&l->answer[seq], 1);
            atomic_fetch_add(&p->ok, 1);
            atomic_fetch_add(&l->ok_total, 1);
        } else if (code == GRPC_STATUS_UNAVAILABLE) {
            /* Not acknowledged: the client knows to retry; it may or may
             * not be stored, and need not be delivered. */
            atomic_store(&l->answer[seq], 2);
            if (atomic_load(&p->failed) == 0)
                snprintf(p->first_refusal, sizeof(p->first_refusal), "seq %d: '%.200s'", seq,
                         st.details);
            atomic_fetch_add(&p->failed, 1);
        } else
            load_error(l, "publish of %s seq %d: status %d '%s'", l->types[p->type], seq, code,
                       st.details);
        if (resp != NULL)
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        usleep(LOAD_PAUSE_US);
    }
    tse_test_channel_destroy(ch);
    return NULL;
}

/* Counts one delivered event (and those batched with it). */
static void load_count(load *l, const Event *ev)
{
    int seq = seq_of(ev);

    if (seq < 0 || seq >= LOAD_MAX || atomic_load(&l->answer[seq]) == 0) {
        /* A delivery may overtake its publish's answer: tolerated only when
         * the seq was handed out. */
        if (seq < 0 || seq >= atomic_load(&l->next_seq))
            load_error(l, "delivered %s, never published", ev ? ev->subject : "(no event)");
        if (seq < 0 || seq >= LOAD_MAX)
            return;
    }
    atomic_fetch_add(&l->delivered[seq], 1);
    atomic_fetch_add(&l->deliveries, 1);
    for (int t = 0; t < MASTERS; t++)
        if (ev->event_type != NULL && strcmp(ev->event_type, l->types[t]) == 0)
            atomic_fetch_add(&l->type_deliveries[t], 1);
}

/* Deliveries of the types other than types[0]. */
static int load_others_delivered(load *l)
{
    int n = 0;

    for (int t = 1; t < MASTERS; t++)
        n += atomic_load(&l->type_deliveries[t]);
    return n;
}

static void *subscriber_main(void *arg)
{
    load *l = arg;
    tse_client *ch = tse_test_channel(l->w->service->addr);
    tse_test_stream *s = subscribe_name(ch, l->subscription);

    while (!atomic_load(&l->stop_subscribing)) {
        bool ended;
        Delivery *d;

        if (atomic_load(&l->hold_subscriber)) {
            usleep(LOAD_PAUSE_US);
            continue;
        }
        d = tse_test_next_delivery(s, 100, &ended);

        if (d != NULL) {
            load_count(l, d->event);
            for (size_t i = 0; i < d->n_more; i++)
                load_count(l, d->more[i]->event);
            ended = !settle(s, d->ack_id, false);
            for (size_t i = 0; !ended && i < d->n_more; i++)
                ended = !settle(s, d->more[i]->ack_id, false);
            delivery_free(d);
        }
        if (ended) {
            /* The service may end a stream whose Redis went away: come
             * back after a pause, as a client does (pacing, not a wait).
             * Unacked events are redelivered. */
            tse_test_status st;
            grpc_status_code code = tse_test_stream_finish(s, &st);
            if (atomic_fetch_add(&l->resubscribes, 1) == 0)
                snprintf(l->end_status, sizeof(l->end_status), "%d '%.120s'", code, st.details);
            usleep(50000);
            s = subscribe_name(ch, l->subscription);
        }
    }
    tse_test_stream_cancel(s);
    tse_test_channel_destroy(ch);
    return NULL;
}

/* Starts the subscriber (and waits for it to be attached), then the
 * publishers, and waits until the load runs (some publishes answered OK
 * and delivered). */
static void load_start(load *l, const world *w, const char *subscription, const char *prefix)
{
    spec sp;
    char pattern[48];

    memset(l, 0, sizeof(*l));
    l->w = w;
    l->subscription = subscription;
    pthread_mutex_init(&l->mu, NULL);
    types_on_masters(w, prefix, MASTERS, l->types);
    /* "kill.t" -> "kill.*": a wildcard is a whole segment. */
    snprintf(pattern, sizeof(pattern), "%.*s*", (int)(strrchr(prefix, '.') + 1 - prefix), prefix);
    spec_init(&sp, subscription, (const char *const[]){pattern, NULL});
    /* An event whose ack was lost with a master comes back soon. */
    sp.sub.ack_deadline_ms = 3000;
    create_ok(w, &sp.sub);
    pthread_create(&l->sub_th, NULL, subscriber_main, l);
    await_subscribers(w->ch, subscription, 1);
    for (int t = 0; t < MASTERS; t++) {
        l->pub[t].l = l;
        l->pub[t].type = t;
        pthread_create(&l->pub[t].th, NULL, publisher_main, &l->pub[t]);
    }
    TSE_TEST_AWAIT(atomic_load(&l->ok_total) >= 100 && atomic_load(&l->deliveries) >= 50, SETTLE_MS,
                   "the load to run (%d published, %d delivered)", atomic_load(&l->ok_total),
                   atomic_load(&l->deliveries));
}

/* The first seq answered OK and never delivered, -1 when none; *missing
 * counts them. */
static int load_undelivered(load *l, int *missing)
{
    int first = -1, n = atomic_load(&l->next_seq);

    *missing = 0;
    for (int seq = 0; seq < n && seq < LOAD_MAX; seq++)
        if (atomic_load(&l->answer[seq]) == 1 && atomic_load(&l->delivered[seq]) == 0) {
            if (first < 0)
                first = seq;
            (*missing)++;
        }
    return first;
}

/* Stops the publishers; waits until every event answered OK was delivered
 * at least once (failing the test, naming the first missing one, after
 * SETTLE_MS); stops the subscriber; checks the threads' errors. */
static void load_stop_and_check(load *l)
{
    int missing = 0, first, dup = 0, refused = 0;

    atomic_store(&l->stop_publishing, true);
    for (int t = 0; t < MASTERS; t++)
        pthread_join(l->pub[t].th, NULL);
    TSE_TEST_AWAIT(load_undelivered(l, &missing) < 0, SETTLE_MS,
                   "every event answered OK delivered (%d missing)", missing);
    first = load_undelivered(l, &missing);
    atomic_store(&l->stop_subscribing, true);
    pthread_join(l->sub_th, NULL);
    for (int seq = 0; seq < atomic_load(&l->next_seq) && seq < LOAD_MAX; seq++) {
        dup += atomic_load(&l->delivered[seq]) > 1;
        refused += atomic_load(&l->answer[seq]) == 2;
    }
    print_message("load: %d published OK, %d refused, %d deliveries, %d events delivered more "
                  "than once, %d resubscribes%s%s\n",
                  atomic_load(&l->ok_total), refused, atomic_load(&l->deliveries), dup,
                  atomic_load(&l->resubscribes),
                  l->end_status[0] ? "; the first stream ended " : "", l->end_status);
    if (l->error[0] != '\0')
        fail_msg("%s", l->error);
    if (first >= 0)
        fail_msg("%d events answered OK never delivered, the first seq %d", missing, first);
    pthread_mutex_destroy(&l->mu);
}

/* Puts n keys "filler:{<type>}:<i>" in the slot of type's streams, on its
 * master, in one MSET (one slot: allowed in a cluster). */
static void fill_slot(const world *w, const char *type, int n)
{
    char key[160], **argv = calloc((size_t)(2 * n + 1), sizeof(char *));
    int m, argc = 1;
    redisContext *ctx;
    redisReply *r;

    assert_non_null(argv);
    tse_key_stream(type, 3, key, sizeof(key));
    m = tse_test_cluster_key_master(w->redis->whole, key);
    assert_true(m >= 0);
    argv[0] = "MSET";
    for (int i = 0; i < n; i++) {
        argv[argc] = calloc(1, 64);
        assert_non_null(argv[argc]);
        snprintf(argv[argc], 64, "filler:{%s}:%d", type, i);
        argv[argc + 1] = argv[argc];
        argc += 2;
    }
    ctx = redisConnect("127.0.0.1", w->redis->whole->nodes[m]->port);
    assert_true(ctx != NULL && ctx->err == 0);
    r = redisCommandArgv(ctx, argc, (const char **)argv, NULL);
    assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(ctx);
    for (int i = 1; i < argc; i += 2)
        free(argv[i]);
    free(argv);
}

/*
 * A live resharding by redis-cli of RESHARD_SLOTS slots from one master to
 * another while events of three types (one on each master) are published
 * and consumed: the slot of the first type moves, its stream among
 * FILLER_KEYS more keys, one at a time, so that its publishes meet the
 * slot half moved (ASK once the stream moved). No event answered OK is
 * lost or never delivered, no publish is refused, and the moved type's
 * stream ends up on the new master.
 */
static void test_reshard_under_load_loses_no_acknowledged_event(void **state)
{
    world *w = *state;
    static unsigned slots[RESHARD_SLOTS];
    static bool moving[TSE_KEY_SLOTS];
    static load l;
    char prefix[32] = "", key[160], type0[40];
    int from = tse_test_cluster_slot_master(w->redis->whole, 0), to, published_at_end;
    tse_test_reshard *r;

    assert_true(from >= 0);
    to = tse_test_cluster_other_master(w->redis->whole, from);
    assert_true(to >= 0);
    assert_int_equal(tse_test_cluster_lowest_slots(w->redis->whole, from, RESHARD_SLOTS, slots),
                     RESHARD_SLOTS);
    memset(moving, 0, sizeof(moving));
    for (int i = 0; i < RESHARD_SLOTS; i++)
        moving[slots[i]] = true;
    /* A prefix whose type 0 is in a slot that moves (the others are on the
     * two other masters, whatever their slots). */
    for (int i = 0; i < 100000 && prefix[0] == '\0'; i++) {
        char type[32];
        snprintf(type, sizeof(type), "mig%d.t0", i);
        tse_key_stream(type, 3, key, sizeof(key));
        if (moving[tse_key_slot(key, strlen(key))])
            snprintf(prefix, sizeof(prefix), "mig%d.t", i);
    }
    assert_true(prefix[0] != '\0');
    /* Before the stream exists: Redis lists a slot's newest keys first,
     * so the tool moves the stream first and the filler after it. */
    snprintf(type0, sizeof(type0), "%s0", prefix);
    fill_slot(w, type0, FILLER_KEYS);
    load_start(&l, w, "mig", prefix);
    assert_string_equal(l.types[0], type0);
    tse_key_stream(l.types[0], 3, key, sizeof(key));
    assert_int_equal(tse_test_cluster_key_master(w->redis->whole, key), from);

    r = tse_test_cluster_reshard_start(w->redis->whole, from, to, RESHARD_SLOTS);
    assert_non_null(r);
    assert_true(tse_test_cluster_reshard_finish(r, 120000));
    /* The moved type's stream is on the new master; the load goes on
     * there: it is still published to and delivered from. */
    assert_int_equal(tse_test_cluster_key_master(w->redis->whole, key), to);
    published_at_end = atomic_load(&l.pub[0].ok);
    TSE_TEST_AWAIT(atomic_load(&l.pub[0].ok) >= published_at_end + 50, SETTLE_MS,
                   "50 more publishes of %s after the resharding", l.types[0]);
    load_stop_and_check(&l);
    /* Nothing was refused: some master served every slot throughout. */
    for (int t = 0; t < MASTERS; t++)
        if (atomic_load(&l.pub[t].failed) != 0)
            fail_msg("%s: %d publishes refused during the resharding, the first %s", l.types[t],
                     atomic_load(&l.pub[t].failed), l.pub[t].first_refusal);
    tse_test_delete_subscription(w->ch, "mig", CALL_MS);
}

/*
 * Requests answered while a master is dead and not yet replaced: each
 * gets an answer before its deadline, OK or UNAVAILABLE (a request that
 * needs the dead master's slot), never another status and never a hang.
 * Returns whether the subscription "kill-gap" was created.
 */
static bool requests_are_answered(const world *w, const char *type)
{
    Tracseq__Events__V1__GetStatsRequest sreq = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    Tracseq__Events__V1__PullRequest preq = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    Tracseq__Events__V1__CreateSubscriptionRequest creq =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *resp;
    tse_test_status st;
    grpc_status_code code;
    spec sp;
    char pattern[40];
    bool created;
    int64_t t0, t1, t2;

    resp = NULL;
    t0 = tse_clock_ms();
    code = timed_unary(w->ch, M_STATS, &sreq.base, &tracseq__events__v1__stats__descriptor, &resp,
                       &st, GAP_CALL_MS);
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_UNAVAILABLE)
        fail_msg("GetStats during the failover: status %d '%s'", code, st.details);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    snprintf(pattern, sizeof(pattern), "%s", type);
    creq.subscription = spec_init(&sp, "kill-gap", (const char *const[]){pattern, NULL});
    resp = NULL;
    t1 = tse_clock_ms();
    code = timed_unary(w->ch, M_CREATE, &creq.base, &tracseq__events__v1__subscription__descriptor,
                       &resp, &st, GAP_CALL_MS);
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_UNAVAILABLE)
        fail_msg("CreateSubscription during the failover: status %d '%s'", code, st.details);
    created = code == GRPC_STATUS_OK;
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    preq.subscription = "kill-gap";
    preq.max_events = 10;
    preq.wait_ms = 200;
    resp = NULL;
    t2 = tse_clock_ms();
    code = timed_unary(w->ch, M_PULL, &preq.base, &tracseq__events__v1__pull_response__descriptor,
                       &resp, &st, GAP_CALL_MS);
    if (code != GRPC_STATUS_OK && code != GRPC_STATUS_UNAVAILABLE && code != GRPC_STATUS_NOT_FOUND)
        fail_msg("Pull during the failover: status %d '%s'", code, st.details);
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    print_message("with a master dead: GetStats answered in %lld ms, CreateSubscription in %lld "
                  "ms, Pull (wait 200 ms) in %lld ms\n",
                  (long long)(t1 - t0), (long long)(t2 - t1), (long long)(tse_clock_ms() - t2));
    return created;
}

/*
 * A master killed with SIGKILL under load: while its replica is held back
 * from taking over (cluster-replica-no-failover), so that no master serves
 * the dead master's slots for as long as the test looks, the Subscribe
 * stream opened before the kill stays open (the service must not end it:
 * a dead node is a per-slot problem on a cluster), the types of the
 * masters that live keep being delivered on it, and requests are
 * answered. The stream is fed by a backlog of the other types published
 * before the kill and left unread; then every type is published again
 * while the takeover is still held: the live masters' types are answered
 * OK (a writer lane does not wait the Redis timeout for the dead slot's
 * jobs, nor make its other jobs wait), the dead master's UNAVAILABLE, and
 * promptly (publishes at the load's pace, counted). Then the replica is
 * let take over while every type is published:
 * the service carries on (its publishes succeed again, on the promoted
 * master) and every event answered OK is delivered. While no master
 * serves that type's slot its publishes may be refused UNAVAILABLE; the
 * other masters' types are never refused.
 */
static void test_killed_master_is_replaced_and_no_acknowledged_event_is_lost(void **state)
{
    world *w = *state;
    static load l;
    char key[160];
    int victim, replica, promoted, published_at_promotion, others, backlog, ok_before,
        failed_before;
    bool gap_sub;

    load_start(&l, w, "kill", "kill.t");
    victim = type_master(w, l.types[0]);
    replica = tse_test_cluster_replica_of(w->redis->whole, victim);
    assert_true(victim >= 0 && replica >= 0);
    assert_true(tse_test_cluster_config_set(w->redis->whole, replica, "cluster-replica-no-failover",
                                            "yes"));
    /* A backlog of the other types, unread while the subscriber holds
     * max_in_flight (100) deliveries unacked: what it gets after the kill
     * beyond those 100 was read from the live masters with one dead. */
    atomic_store(&l.pub[0].paused, true);
    atomic_store(&l.hold_subscriber, true);
    backlog = atomic_load(&l.pub[1].ok) + atomic_load(&l.pub[2].ok);
    TSE_TEST_AWAIT(atomic_load(&l.pub[1].ok) + atomic_load(&l.pub[2].ok) >= backlog + 600,
                   SETTLE_MS, "600 publishes of %s and %s", l.types[1], l.types[2]);
    atomic_store(&l.pub[1].paused, true);
    atomic_store(&l.pub[2].paused, true);
    tse_test_cluster_kill(w->redis->whole, victim);
    others = load_others_delivered(&l);
    atomic_store(&l.hold_subscriber, false);
    TSE_TEST_AWAIT(load_others_delivered(&l) >= others + 400, SETTLE_MS,
                   "400 more deliveries of %s and %s with %s's master dead (%d)", l.types[1],
                   l.types[2], l.types[0], load_others_delivered(&l) - others);
    gap_sub = requests_are_answered(w, l.types[0]);
    if (atomic_load(&l.resubscribes) != 0)
        fail_msg("the Subscribe stream was ended with the master dead: %s", l.end_status);
    /* Publishes during the gap: the live masters' types are answered OK,
     * the dead master's UNAVAILABLE (publisher_main fails the test on any
     * other answer, a deadline exceeded included). */
    ok_before = atomic_load(&l.pub[1].ok) + atomic_load(&l.pub[2].ok);
    failed_before = atomic_load(&l.pub[0].failed);
    for (int t = 0; t < MASTERS; t++)
        atomic_store(&l.pub[t].paused, false);
    TSE_TEST_AWAIT(atomic_load(&l.pub[1].ok) + atomic_load(&l.pub[2].ok) >=
                       ok_before + GAP_PUBLISHES,
                   SETTLE_MS, "%d publishes of %s and %s answered OK with %s's master dead (%d)",
                   GAP_PUBLISHES, l.types[1], l.types[2], l.types[0],
                   atomic_load(&l.pub[1].ok) + atomic_load(&l.pub[2].ok) - ok_before);
    TSE_TEST_AWAIT(atomic_load(&l.pub[0].failed) >= failed_before + GAP_REFUSALS, SETTLE_MS,
                   "%d publishes of %s refused UNAVAILABLE with its master dead (%d)", GAP_REFUSALS,
                   l.types[0], atomic_load(&l.pub[0].failed) - failed_before);
    for (int t = 1; t < MASTERS; t++)
        if (atomic_load(&l.pub[t].failed) != 0)
            fail_msg("%s (on a master that lived) refused %d publishes with %s's master dead",
                     l.types[t], atomic_load(&l.pub[t].failed), l.types[0]);

    for (int t = 0; t < MASTERS; t++)
        atomic_store(&l.pub[t].paused, false);
    assert_true(
        tse_test_cluster_config_set(w->redis->whole, replica, "cluster-replica-no-failover", "no"));
    tse_key_stream(l.types[0], 3, key, sizeof(key));
    promoted = tse_test_cluster_wait_slot_served(w->redis->whole, tse_key_slot(key, strlen(key)),
                                                 SETTLE_MS);
    assert_int_equal(promoted, replica);
    assert_int_equal(type_master(w, l.types[0]), replica);
    published_at_promotion = atomic_load(&l.pub[0].ok);
    TSE_TEST_AWAIT(atomic_load(&l.pub[0].ok) >= published_at_promotion + 50, SETTLE_MS,
                   "50 more publishes of %s on its promoted master", l.types[0]);
    load_stop_and_check(&l);
    print_message("%s: %d publishes refused during the failover\n", l.types[0],
                  atomic_load(&l.pub[0].failed));
    for (int t = 1; t < MASTERS; t++)
        if (atomic_load(&l.pub[t].failed) != 0)
            fail_msg("%s (on a master that lived) refused %d publishes", l.types[t],
                     atomic_load(&l.pub[t].failed));
    /* No resubscribe: the stream opened before the kill was never ended. */
    if (atomic_load(&l.resubscribes) != 0)
        fail_msg("the Subscribe stream was ended by the failover: %s", l.end_status);
    tse_test_delete_subscription(w->ch, "kill", CALL_MS);
    if (gap_sub)
        tse_test_delete_subscription(w->ch, "kill-gap", CALL_MS);
}

/* A unary call that must answer UNAVAILABLE naming the dead slot, while a
 * master is dead: an OK would have reported part of the work as done (or
 * ids as unknown) with that part not done. False (said why) otherwise. */
static bool expect_unavailable(const world *w, const char *method, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *desc, const char *what)
{
    ProtobufCMessage *resp = NULL;
    tse_test_status st;
    grpc_status_code code = timed_unary(w->ch, method, req, desc, &resp, &st, GAP_CALL_MS);
    bool ok = true;

    if (code != GRPC_STATUS_UNAVAILABLE) {
        json_t *j = resp ? tse_pbjson_from_message(resp, 0) : NULL;
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        print_error("%s with a master dead: status %d '%s', answer %s (want UNAVAILABLE)\n", what,
                    code, st.details, text ? text : "none");
        free(text);
        json_decref(j);
        ok = false;
    } else if (strstr(st.details, "no reachable master") == NULL) {
        print_error("%s: UNAVAILABLE '%s' does not say what could not be done\n", what, st.details);
        ok = false;
    }
    if (resp != NULL)
        protobuf_c_message_free_unpacked(resp, NULL);
    return ok;
}

/* Whether a line of the service's log holds both texts: arg is {log
 * path, text, text}. */
static bool log_holds(void *arg)
{
    const char *const *a = arg;
    FILE *f = fopen(a[0], "r");
    char line[4096];
    bool found = false;

    if (f == NULL)
        return false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, a[1]) != NULL && strstr(line, a[2]) != NULL;
    fclose(f);
    return found;
}

/* Sends one ack message of n ids on s. */
static bool ack_all(tse_test_stream *s, char **ids, size_t n)
{
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds acks = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;

    acks.ack_ids = ids;
    acks.n_ack_ids = n;
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
    req.ack = &acks;
    return tse_test_stream_send(s, &req.base);
}

/*
 * Operator calls over a subscription spanning live masters and a dead one
 * (its replica held back): Acknowledge, Nack, reject, Redrive, Purge and
 * Seek answer UNAVAILABLE saying which slot has no master, never OK with
 * the dead slot's ids listed unknown or silently left out; the
 * connection is not lost (the live masters' part is done). An ack message
 * on a Subscribe stream has no answer: its ids on the dead slot are not
 * acked (they come again: at least once), and the service logs so at
 * warn, naming the subscription; the stream stays open.
 */
static void test_operator_calls_with_a_dead_master_answer_unavailable(void **state)
{
    world *w = *state;
    char types[MASTERS][32], dlq[160], *acks[16], *rejects[16], *dl_ids[16];
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__NackRequest nack = TRACSEQ__EVENTS__V1__NACK_REQUEST__INIT;
    Tracseq__Events__V1__ListDeadLettersRequest lreq =
        TRACSEQ__EVENTS__V1__LIST_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__PurgeDeadLettersRequest preq =
        TRACSEQ__EVENTS__V1__PURGE_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__RedriveDeadLettersRequest rreq =
        TRACSEQ__EVENTS__V1__REDRIVE_DEAD_LETTERS_REQUEST__INIT;
    Tracseq__Events__V1__SeekRequest sreq = TRACSEQ__EVENTS__V1__SEEK_REQUEST__INIT;
    Tracseq__Events__V1__ListDeadLettersResponse *dls = NULL;
    Tracseq__Events__V1__PullResponse *pulled[64];
    size_t n_acks = 0, n_rejects = 0, n_pulled = 0, got = 0;
    int seen[MASTERS] = {0}, victim, replica, bad = 0;
    tse_test_status st;
    spec sp;
    tse_test_stream *stream;
    Delivery *streamed[2 * MASTERS];
    char *streamed_ids[2 * MASTERS];
    size_t n_streamed = 0;
    const char *logged[3] = {w->service->log, "settlements not applied", "opstream"};

    types_on_masters(w, "opf.t", MASTERS, types);
    create_ok(w, spec_init(&sp, "opfail", (const char *const[]){"opf.*", NULL}));
    create_ok(w, spec_init(&sp, "opstream", (const char *const[]){"opf.*", NULL}));
    stream = subscribe_name(w->ch, "opstream");
    await_subscribers(w->ch, "opstream", 1);
    for (int t = 0; t < MASTERS; t++)
        for (int k = 0; k < 2; k++)
            publish_quiet(w, types[t], 1 + k, t * 2 + k);
    while (n_streamed < 2 * MASTERS) {
        Delivery *d = tse_test_next_delivery(stream, SETTLE_MS, NULL);

        assert_non_null(d);
        streamed[n_streamed++] = d;
        streamed_ids[n_streamed - 1] = d->ack_id;
    }
    /* Two deliveries per type: one to reject (a dead letter), one kept. */
    while (got < 2 * MASTERS && n_pulled < 64) {
        Tracseq__Events__V1__PullResponse *r = pull(w, "opfail", 10, 2000);
        pulled[n_pulled++] = r;
        for (size_t i = 0; i < r->n_deliveries; i++, got++) {
            int t = seq_of(r->deliveries[i]->event) / 2;
            assert_true(t >= 0 && t < MASTERS);
            if (seen[t]++ == 0)
                rejects[n_rejects++] = r->deliveries[i]->ack_id;
            else
                acks[n_acks++] = r->deliveries[i]->ack_id;
        }
    }
    assert_int_equal(n_acks, MASTERS);
    assert_int_equal(n_rejects, MASTERS);
    nack.subscription = "opfail";
    nack.ack_ids = rejects;
    nack.n_ack_ids = n_rejects;
    nack.reject = true;
    {
        Tracseq__Events__V1__NackResponse *nr = NULL;
        assert_int_equal(unary(w->ch, M_NACK, &nack.base,
                               &tracseq__events__v1__nack_response__descriptor, &nr, &st),
                         GRPC_STATUS_OK);
        assert_int_equal(nr->nacked, MASTERS);
        protobuf_c_message_free_unpacked(&nr->base, NULL);
    }
    lreq.subscription = "opfail";
    assert_int_equal(unary(w->ch, SERVICE "ListDeadLetters", &lreq.base,
                           &tracseq__events__v1__list_dead_letters_response__descriptor, &dls, &st),
                     GRPC_STATUS_OK);
    assert_int_equal(dls->n_dead_letters, MASTERS);
    for (size_t i = 0; i < dls->n_dead_letters; i++)
        dl_ids[i] = dls->dead_letters[i]->id;

    /* The dead master: the one of the dead-letter store (one of the
     * types' too: types_on_masters covers every master). */
    tse_key_dlq("opfail", dlq, sizeof(dlq));
    victim = tse_test_cluster_key_master(w->redis->whole, dlq);
    assert_true(victim >= 0);
    replica = tse_test_cluster_replica_of(w->redis->whole, victim);
    if (replica >= 0)
        assert_true(tse_test_cluster_config_set(w->redis->whole, replica,
                                                "cluster-replica-no-failover", "yes"));
    tse_test_cluster_kill(w->redis->whole, victim);

    ack.subscription = "opfail";
    ack.ack_ids = acks;
    ack.n_ack_ids = n_acks;
    bad +=
        !expect_unavailable(w, M_ACKNOWLEDGE, &ack.base,
                            &tracseq__events__v1__acknowledge_response__descriptor, "Acknowledge");
    nack.ack_ids = acks;
    nack.n_ack_ids = n_acks;
    nack.reject = false;
    bad += !expect_unavailable(w, M_NACK, &nack.base,
                               &tracseq__events__v1__nack_response__descriptor, "Nack");
    nack.reject = true;
    bad += !expect_unavailable(w, M_NACK, &nack.base,
                               &tracseq__events__v1__nack_response__descriptor, "Nack (reject)");
    preq.subscription = "opfail";
    preq.ids = dl_ids;
    preq.n_ids = dls->n_dead_letters;
    bad += !expect_unavailable(w, SERVICE "PurgeDeadLetters", &preq.base,
                               &tracseq__events__v1__purge_dead_letters_response__descriptor,
                               "PurgeDeadLetters");
    rreq.subscription = "opfail";
    rreq.ids = dl_ids;
    rreq.n_ids = dls->n_dead_letters;
    bad += !expect_unavailable(w, SERVICE "RedriveDeadLetters", &rreq.base,
                               &tracseq__events__v1__redrive_dead_letters_response__descriptor,
                               "RedriveDeadLetters");
    sreq.subscription = "opfail";
    sreq.position = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    bad += !expect_unavailable(w, SERVICE "Seek", &sreq.base,
                               &tracseq__events__v1__seek_response__descriptor, "Seek");

    assert_false(log_holds(logged));
    assert_true(ack_all(stream, streamed_ids, n_streamed));
    assert_true(tse_test_wait_until(log_holds, logged, SETTLE_MS,
                                    "the service to log the stream's acks it could not apply"));
    assert_int_equal(tse_test_subscribers_of(w->ch, "opstream", CALL_MS), 1);
    for (size_t i = 0; i < n_streamed; i++)
        delivery_free(streamed[i]);
    tse_test_stream_cancel(stream);
    protobuf_c_message_free_unpacked(&dls->base, NULL);
    for (size_t i = 0; i < n_pulled; i++)
        protobuf_c_message_free_unpacked(&pulled[i]->base, NULL);
    if (bad > 0)
        fail_msg("%d of 6 calls did not answer UNAVAILABLE with a master dead", bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_catalog_type_is_stored_on_its_master_and_delivered),
        cmocka_unit_test(test_a_wildcard_over_types_on_three_masters_gets_each_event_once),
        cmocka_unit_test(test_subscribers_split_a_subscription_and_subscriptions_each_get_all),
        cmocka_unit_test(test_nack_and_deadline_redeliver_and_dead_letters_are_stored),
        cmocka_unit_test(test_dedup_by_client_id_is_per_event_type),
        cmocka_unit_test(test_pull_over_three_masters_acks_and_nacks),
        cmocka_unit_test(test_stats_report_streams_of_every_master_as_redis_holds_them),
        cmocka_unit_test(test_reshard_under_load_loses_no_acknowledged_event),
        /* Last: it leaves a master dead. */
        cmocka_unit_test(test_killed_master_is_replaced_and_no_acknowledged_event_is_lost),
        /* After it: it kills a master whose replica is held back. */
        cmocka_unit_test(test_operator_calls_with_a_dead_master_answer_unavailable),
    };

    /* TSE_TEST_FILTER=<glob> runs only the matching tests. */
    if (getenv("TSE_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TSE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, world_up, world_down);
}
