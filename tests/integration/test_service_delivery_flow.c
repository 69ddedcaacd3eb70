/*
 * test_service_delivery_flow.c - how the delivery engine moves events and
 * acks between Redis and Subscribe streams (src/delivery/delivery_flow.c),
 * end to end: a real redis-server, the real tracseq-events binary, Subscribe
 * streams over loopback. What the engine did is read from Redis itself:
 * XINFO GROUPS (a group's pending count) and INFO commandstats (which
 * commands ran).
 *
 * The ack linger. A Subscribe stream's acks are owed to Redis and go ahead
 * of the group's next XREADGROUP, in its pipeline, or alone once the oldest
 * has waited TSE_ACK_LINGER_MS (5 ms) and no read took them. The engine
 * also sends what is owed before a claim scan (each second at most), a
 * discovery (each second), a poll and any request but an ack, so that an
 * ack reached Redis does not tell that the linger sent it; the test of an
 * ack that no read follows looks at what else ran in Redis meanwhile.
 *
 * "Filled first". A subscriber whose last read's entries wait for the next
 * engine pass (the pass starts at once: requests or a publish wait) is
 * filled first in that pass, so that its entries go out while its next read
 * runs; the credit those entries will take is kept for them (room_of).
 * Entries are held so only when the read that gave them was the fill's last
 * (its priority-5 streams, or it used up the room), so the tests of it read
 * priority-5 streams. What must hold whatever the order: no subscriber has
 * more than max_in_flight deliveries unacked, what it read and holds stays
 * bounded, subscribers of one subscription share a flow of events (none
 * starves), and priority 1 goes before priority 5.
 *
 * Invariants of this file: every test uses its own subscription names and
 * event types (one service and one Redis for all); ack deadlines are 30 s,
 * so no test sees a redelivery it did not cause; tests wait for conditions,
 * never for a time, except where a time is the subject (said there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_client.h"
#include "harness.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define STREAM_LIFETIME_MS 120000
#define UNARY_TIMEOUT_MS   10000
#define MAX_SEQ            4096

typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef tse_test_world world;

/* A poll so slow (the most the service takes) that it never sends owed
 * acks in a test's time: only reads, scans, discoveries and the linger do. */
static int world_up(void **state)
{
    static const char *const args[] = {"--redis-timeout=10s", "--delivery-poll=10s", NULL};

    *state = tse_test_world_start(tse_test_redis_start(true), args, false, NULL);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    *state = NULL;
    return 0;
}

/* ---- subscriptions, streams, deliveries ---- */

/* Subscription name of the one pattern, from the earliest entry, holding
 * at most max_in_flight unacked deliveries per subscriber; created. */
static void create_earliest(world *w, const char *name, const char *pattern, uint32_t max_in_flight)
{
    tse_test_subscription sp;

    tse_test_subscription_init(&sp, name, pattern,
                               TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST);
    sp.sub.max_in_flight = max_in_flight;
    tse_test_subscription_create(w->ch, &sp.sub, UNARY_TIMEOUT_MS);
}

static void await_subscribers(world *w, const char *name, uint32_t n)
{
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch, name, UNARY_TIMEOUT_MS) == n, 10000,
                   "%u subscribers of %s attached", n, name);
}

/* The n of a delivery's "seq-<n>" subject; fails the test for another. */
static int seq_of(const Delivery *d)
{
    int seq = -1;

    if (d->event != NULL && d->event->subject != NULL && strncmp(d->event->subject, "seq-", 4) == 0)
        seq = atoi(d->event->subject + 4);
    if (seq < 0 || seq >= MAX_SEQ)
        fail_msg("a delivery (%s) of no event of this test", d->ack_id);
    return seq;
}

static void ack_one(tse_test_stream *s, const char *ack_id)
{
    char *id = (char *)ack_id;

    assert_true(tse_test_send_acks(s, &id, 1));
}

static void stream_key(char *buf, size_t len, const char *type, int priority)
{
    snprintf(buf, len, "tracseq:events:{%s}:p%d", type, priority);
}

/* ---- Redis's side ---- */

/* The pending count of group on stream key (XINFO GROUPS: a command the
 * engine's ack paths never send, so counting commands is not disturbed);
 * -1 when the group is not there. */
static long long group_pending(const world *w, const char *key, const char *group)
{
    redisReply *r = tse_test_redis_reply(w->redis, "XINFO GROUPS %s", key);
    long long pending = -1;

    assert_non_null(r);
    for (size_t g = 0; r->type == REDIS_REPLY_ARRAY && g < r->elements; g++) {
        const redisReply *e = r->element[g];
        bool ours = false;
        long long n = -1;
        for (size_t i = 0; e->type == REDIS_REPLY_ARRAY && i + 1 < e->elements; i += 2) {
            const char *field = e->element[i]->str;
            const redisReply *v = e->element[i + 1];
            if (strcmp(field, "name") == 0 && v->type == REDIS_REPLY_STRING)
                ours = strcmp(v->str, group) == 0;
            else if (strcmp(field, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                n = v->integer;
        }
        if (ours)
            pending = n;
    }
    freeReplyObject(r);
    return pending;
}

/* Entries of key pending for one consumer of group (XPENDING's summary). */
static long long consumer_pending(const world *w, const char *key, const char *group,
                                  const char *consumer)
{
    redisReply *r = tse_test_redis_reply(w->redis, "XPENDING %s %s", key, group);
    long long n = 0;

    assert_non_null(r);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[3]->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->element[3]->elements; i++) {
            const redisReply *c = r->element[3]->element[i];
            if (c->elements == 2 && strcmp(c->element[0]->str, consumer) == 0)
                n = atoll(c->element[1]->str);
        }
    }
    freeReplyObject(r);
    return n;
}

/* How many XACKs Redis has run, and how many other commands that the
 * engine sends (every command but XACK and those of the test itself or of
 * a connection's set-up), from INFO commandstats. */
typedef struct redis_calls {
    long long xack, other;
} redis_calls;

static bool the_tests_own(const char *name, size_t len)
{
    static const char *const own[] = {"info",    "xinfo",  "ping",   "client", "hello",
                                      "command", "config", "select", "auth"};

    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strlen(own[i]) == len && strncmp(name, own[i], len) == 0)
            return true;
    return false;
}

static redis_calls calls_now(const world *w)
{
    char *info = tse_test_redis_cmd(w->redis, "INFO commandstats");
    redis_calls c = {0, 0};

    assert_non_null(info);
    for (const char *p = strstr(info, "cmdstat_"); p != NULL; p = strstr(p + 1, "cmdstat_")) {
        const char *name = p + strlen("cmdstat_"), *calls = strstr(name, ":calls=");
        /* "xinfo|groups": the command is what comes before the '|'. */
        size_t len = strcspn(name, "|:");
        if (calls == NULL)
            break;
        if (len == 4 && strncmp(name, "xack", 4) == 0)
            c.xack += atoll(calls + strlen(":calls="));
        else if (!the_tests_own(name, len))
            c.other += atoll(calls + strlen(":calls="));
    }
    free(info);
    return c;
}

/* ==== the ack linger ==== */

#define LINGER_HELD   100
#define LINGER_ROUNDS 20 /* credit 20 of 100: still below a read's quarter */

/*
 * A subscriber holds max_in_flight deliveries, so nothing is read for it,
 * and acks one at a time: one unit of credit back is too little to read
 * for (a refill waits for a quarter of the window), so no read follows the
 * ack and the linger must send it alone. Alone means: while the group's
 * pending count dropped, Redis ran one XACK and no other command of the
 * engine (a claim scan's XPENDING, a discovery's HKEYS, a read), which is
 * what tells the linger from the scans and discoveries that would take the
 * ack along within a second without it. A scan or discovery may still
 * fall into a round by chance; the round is then done again, up to
 * LINGER_ROUNDS times: one round that shows the ack alone is the proof.
 */
static void test_an_ack_no_read_follows_goes_to_redis_alone(void **state)
{
    world *w = *state;
    Delivery *held[LINGER_HELD];
    char key[128];
    int alone = -1;

    tse_test_publish_seqs(w->ch, "linger.alone", 3, 0, LINGER_HELD);
    create_earliest(w, "linger-alone", "linger.alone", LINGER_HELD);
    tse_test_stream *s = tse_test_subscribe(w->ch, "linger-alone", NULL, 0, STREAM_LIFETIME_MS);
    for (int i = 0; i < LINGER_HELD; i++) {
        held[i] = tse_test_next_delivery(s, 10000, NULL);
        if (held[i] == NULL)
            fail_msg("only %d of %d deliveries arrived", i, LINGER_HELD);
        assert_int_equal(held[i]->delivery_attempt, 1);
    }
    stream_key(key, sizeof(key), "linger.alone", 3);
    assert_int_equal(group_pending(w, key, "linger-alone"), LINGER_HELD);
    for (int round = 0; round < LINGER_ROUNDS && alone < 0; round++) {
        redis_calls before = calls_now(w), after;
        ack_one(s, held[round]->ack_id);
        TSE_TEST_AWAIT(group_pending(w, key, "linger-alone") == LINGER_HELD - round - 1, 10000,
                       "the ack of delivery %d in Redis", round);
        after = calls_now(w);
        if (after.xack == before.xack + 1 && after.other == before.other)
            alone = round;
        else
            print_message("round %d: %lld XACK and %lld other commands came with the ack: again\n",
                          round, after.xack - before.xack, after.other - before.other);
    }
    if (alone < 0)
        fail_msg("none of %d acks went to Redis alone: each waited for a scan, a discovery or a "
                 "read to take it",
                 LINGER_ROUNDS);
    print_message("the ack of round %d went alone\n", alone);
    for (int i = 0; i < LINGER_HELD; i++)
        protobuf_c_message_free_unpacked(&held[i]->base, NULL);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "linger-alone", UNARY_TIMEOUT_MS);
}

/* What a publisher thread publishes: n events of type from seq `from`, in
 * chunks of `chunk` (one PublishStream each), on a channel of its own. */
typedef struct publisher {
    pthread_t thread;
    const char *addr, *type;
    int priority, from, n, chunk;
} publisher;

static void *publish_main(void *arg)
{
    publisher *p = arg;
    tse_client *ch = tse_test_channel(p->addr);

    for (int at = 0; at < p->n; at += p->chunk)
        tse_test_publish_seqs(ch, p->type, p->priority, p->from + at,
                              p->n - at < p->chunk ? p->n - at : p->chunk);
    tse_test_channel_destroy(ch);
    return NULL;
}

static void publisher_start(publisher *p, const world *w, const char *type, int priority, int from,
                            int n, int chunk)
{
    *p = (publisher){.addr = w->service->addr,
                     .type = type,
                     .priority = priority,
                     .from = from,
                     .n = n,
                     .chunk = chunk};
    assert_int_equal(pthread_create(&p->thread, NULL, publish_main, p), 0);
}

#define FLOW_EVENTS 600

/*
 * A subscriber acks every delivery as it comes while events keep coming:
 * its acks give credit back, the credit makes it read, and the acks go
 * ahead of that read. None of them may be lost on the way: every event
 * arrives once, at attempt 1, and the group ends with nothing pending (an
 * ack lost would leave its entry pending for the 30 s deadline).
 */
static void test_acks_riding_a_flowing_subscribers_reads_all_reach_redis(void **state)
{
    world *w = *state;
    static int seen[MAX_SEQ];
    int got = 0;
    publisher pub;
    char key[128];
    redis_calls before, after;

    memset(seen, 0, sizeof(seen));
    tse_test_publish_seqs(w->ch, "linger.flow", 5, 0, 1);
    create_earliest(w, "linger-flow", "linger.flow", 10);
    tse_test_stream *s = tse_test_subscribe(w->ch, "linger-flow", NULL, 0, STREAM_LIFETIME_MS);
    before = calls_now(w);
    publisher_start(&pub, w, "linger.flow", 5, 1, FLOW_EVENTS - 1, 50);
    while (got < FLOW_EVENTS) {
        Delivery *d = tse_test_next_delivery(s, 10000, NULL);
        if (d == NULL)
            fail_msg("%d of %d events arrived", got, FLOW_EVENTS);
        if (d->delivery_attempt != 1)
            fail_msg("%s came again (attempt %u) though acked", d->event->subject,
                     d->delivery_attempt);
        if (seen[seq_of(d)]++ > 0)
            fail_msg("%s delivered twice", d->event->subject);
        ack_one(s, d->ack_id);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        got++;
    }
    pthread_join(pub.thread, NULL);
    stream_key(key, sizeof(key), "linger.flow", 5);
    TSE_TEST_AWAIT(group_pending(w, key, "linger-flow") == 0, 10000, "all %d acks in Redis",
                   FLOW_EVENTS);
    after = calls_now(w);
    print_message("%d acks in %lld XACKs\n", FLOW_EVENTS, after.xack - before.xack);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "linger-flow", UNARY_TIMEOUT_MS);
}

#define LEAVE_HELD   40
#define LEAVE_ACKED  5 /* too few to read for: they are owed when it leaves */
#define LEAVE_ROUNDS 3

/*
 * A subscriber acks and leaves at once: its next message is not a
 * SubscribeRequest, so the service ends the stream (INVALID_ARGUMENT) right
 * after taking the ack, and the engine gets the ack and the departure one
 * after the other. The acks are not lost with the subscriber: the group
 * keeps pending only what was not acked.
 */
static void test_acks_of_a_subscriber_that_leaves_right_after_reach_redis(void **state)
{
    world *w = *state;
    static const char garbage[] = {0x0a, 0x7f, 0x01};
    char key[128];

    stream_key(key, sizeof(key), "linger.leave", 3);
    tse_test_publish_seqs(w->ch, "linger.leave", 3, 0, LEAVE_HELD * LEAVE_ROUNDS);
    create_earliest(w, "linger-leave", "linger.leave", LEAVE_HELD);
    for (int round = 0; round < LEAVE_ROUNDS; round++) {
        Delivery *held[LEAVE_HELD];
        char *ids[LEAVE_ACKED];
        tse_test_status st;
        tse_test_stream *s = tse_test_subscribe(w->ch, "linger-leave", NULL, 0, STREAM_LIFETIME_MS);
        for (int i = 0; i < LEAVE_HELD; i++) {
            held[i] = tse_test_next_delivery(s, 10000, NULL);
            if (held[i] == NULL)
                fail_msg("round %d: only %d of %d deliveries arrived", round, i, LEAVE_HELD);
        }
        for (int i = 0; i < LEAVE_ACKED; i++)
            ids[i] = held[i]->ack_id;
        assert_true(tse_test_send_acks(s, ids, LEAVE_ACKED));
        assert_true(tse_test_stream_send_raw(s, garbage, sizeof(garbage)));
        assert_int_equal(tse_test_stream_finish(s, &st), GRPC_STATUS_INVALID_ARGUMENT);
        /* Each round leaves LEAVE_HELD - LEAVE_ACKED pending for good (30 s). */
        TSE_TEST_AWAIT(
            group_pending(w, key, "linger-leave") == (round + 1) * (LEAVE_HELD - LEAVE_ACKED),
            10000, "round %d: the %d acks sent before leaving in Redis", round, LEAVE_ACKED);
        for (int i = 0; i < LEAVE_HELD; i++)
            protobuf_c_message_free_unpacked(&held[i]->base, NULL);
    }
    tse_test_delete_subscription(w->ch, "linger-leave", UNARY_TIMEOUT_MS);
}

/* The service answers and its engine still delivers: a fresh subscription
 * of a fresh type gets an event published now. */
static void assert_engine_alive(world *w, const char *name, const char *type)
{
    Tracseq__Events__V1__Stats *stats = tse_test_get_stats(w->ch, UNARY_TIMEOUT_MS);
    Delivery *d;

    protobuf_c_message_free_unpacked(&stats->base, NULL);
    create_earliest(w, name, type, 10);
    tse_test_publish_seqs(w->ch, type, 3, 0, 1);
    tse_test_stream *s = tse_test_subscribe(w->ch, name, NULL, 0, STREAM_LIFETIME_MS);
    d = tse_test_next_delivery(s, 10000, NULL);
    if (d == NULL)
        fail_msg("the engine delivers no more: nothing of %s came", type);
    ack_one(s, d->ack_id);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, name, UNARY_TIMEOUT_MS);
}

/* Holds n deliveries of s into held; returns their ack ids in ids. */
static void hold(tse_test_stream *s, Delivery **held, char **ids, int n)
{
    for (int i = 0; i < n; i++) {
        held[i] = tse_test_next_delivery(s, 10000, NULL);
        if (held[i] == NULL)
            fail_msg("only %d of %d deliveries arrived", i, n);
        ids[i] = held[i]->ack_id;
    }
}

static void release_all(Delivery **held, int n)
{
    for (int i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(&held[i]->base, NULL);
}

#define RACE_HELD 10
#define RACE_MAX  40

/*
 * Acks racing what happens to their stream or group behind the engine's
 * back: the stream trimmed to nothing (the acks still take the entries off
 * the pending list), the group destroyed (XACK answers NOGROUP, and so do
 * the reads acks ride with), the stream deleted; half the acks sent before
 * an event published to the stream, half after (its read may carry them).
 * The engine neither crashes nor stalls nor drops its connection: the
 * subscriber stays attached, the service answers and delivers a fresh
 * subscription's event after each, and exits 0 at the end (world_down).
 */
static void test_acks_racing_a_trim_or_a_vanished_group_do_not_break_the_engine(void **state)
{
    world *w = *state;
    static const char *const what[] = {"XTRIM %s MAXLEN 0", "XGROUP DESTROY %s linger-race",
                                       "DEL %s"};
    static const char *const alive_types[] = {"linger.alive0", "linger.alive1", "linger.alive2"};
    char key[128];

    stream_key(key, sizeof(key), "linger.race", 3);
    for (size_t k = 0; k < sizeof(what) / sizeof(what[0]); k++) {
        Delivery *held[RACE_HELD];
        char *ids[RACE_HELD], alive[32];
        char *out;

        tse_test_publish_seqs(w->ch, "linger.race", 3, 0, RACE_HELD);
        create_earliest(w, "linger-race", "linger.race", RACE_MAX);
        tse_test_stream *s = tse_test_subscribe(w->ch, "linger-race", NULL, 0, STREAM_LIFETIME_MS);
        hold(s, held, ids, RACE_HELD);
        out = tse_test_redis_cmd(w->redis, what[k], key);
        assert_non_null(out);
        free(out);
        assert_true(tse_test_send_acks(s, ids, RACE_HELD / 2));
        tse_test_publish_seqs(w->ch, "linger.race", 3, RACE_HELD, 1);
        assert_true(tse_test_send_acks(s, ids + RACE_HELD / 2, RACE_HELD - RACE_HELD / 2));
        /* Trimmed: the acks took the ten off the list; the new event is
         * delivered and held. */
        if (k == 0)
            TSE_TEST_AWAIT(group_pending(w, key, "linger-race") == 1, 10000,
                           "the acks of trimmed entries in Redis");
        snprintf(alive, sizeof(alive), "linger-alive-%zu", k);
        assert_engine_alive(w, alive, alive_types[k]);
        assert_int_equal(tse_test_subscribers_of(w->ch, "linger-race", UNARY_TIMEOUT_MS), 1);
        release_all(held, RACE_HELD);
        tse_test_stream_cancel(s);
        tse_test_delete_subscription(w->ch, "linger-race", UNARY_TIMEOUT_MS);
    }
}

/* ==== "filled first" ==== */

#define SHARE_SUBSCRIBERS 3
#define SHARE_EVENTS      900

/* One subscriber of a shared subscription, acking each delivery as it
 * comes, on its own thread. */
typedef struct sharer {
    pthread_t thread;
    tse_test_stream *s;
    atomic_int *total;
    atomic_bool *stop;
    int got, again;
    int seen[MAX_SEQ];
} sharer;

static void *share_main(void *arg)
{
    sharer *sh = arg;

    while (!atomic_load(sh->stop)) {
        Delivery *d = tse_test_next_delivery(sh->s, 50, NULL);
        if (d == NULL)
            continue;
        if (d->delivery_attempt != 1)
            sh->again++;
        sh->seen[seq_of(d)]++;
        ack_one(sh->s, d->ack_id);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        sh->got++;
        atomic_fetch_add(sh->total, 1);
    }
    return NULL;
}

/*
 * Subscribers of one subscription acking as they go, events published
 * while they do: every subscriber reads with credit left, and the one whose
 * entries wait for the next pass is filled first in it. That must not let
 * one of them take the whole flow: each gets a share (a fair turn gives a
 * third each; starving is getting next to nothing), every event arrives
 * once.
 */
static void test_subscribers_sharing_a_flow_of_events_all_get_a_share(void **state)
{
    world *w = *state;
    sharer *sh = calloc(SHARE_SUBSCRIBERS, sizeof(*sh));
    atomic_int total = 0;
    atomic_bool stop = false;
    publisher pub;

    assert_non_null(sh);
    tse_test_publish_seqs(w->ch, "fill.share", 5, 0, 1);
    create_earliest(w, "fill-share", "fill.share", 200);
    for (int k = 0; k < SHARE_SUBSCRIBERS; k++) {
        char consumer[16];
        snprintf(consumer, sizeof(consumer), "share-%d", k);
        sh[k].s = tse_test_subscribe(w->ch, "fill-share", consumer, 0, STREAM_LIFETIME_MS);
        sh[k].total = &total;
        sh[k].stop = &stop;
    }
    await_subscribers(w, "fill-share", SHARE_SUBSCRIBERS);
    for (int k = 0; k < SHARE_SUBSCRIBERS; k++)
        assert_int_equal(pthread_create(&sh[k].thread, NULL, share_main, &sh[k]), 0);
    publisher_start(&pub, w, "fill.share", 5, 1, SHARE_EVENTS - 1, 1);
    pthread_join(pub.thread, NULL);
    TSE_TEST_AWAIT(atomic_load(&total) >= SHARE_EVENTS, 20000, "all %d events delivered",
                   SHARE_EVENTS);
    atomic_store(&stop, true);
    for (int k = 0; k < SHARE_SUBSCRIBERS; k++)
        pthread_join(sh[k].thread, NULL);
    print_message("shares: %d %d %d\n", sh[0].got, sh[1].got, sh[2].got);
    for (int seq = 0; seq < SHARE_EVENTS; seq++) {
        int n = 0;
        for (int k = 0; k < SHARE_SUBSCRIBERS; k++)
            n += sh[k].seen[seq];
        if (n != 1)
            fail_msg("seq-%d delivered %d times", seq, n);
    }
    for (int k = 0; k < SHARE_SUBSCRIBERS; k++) {
        assert_int_equal(sh[k].again, 0);
        if (sh[k].got < SHARE_EVENTS / 10)
            fail_msg("subscriber %d got %d of %d events (shares %d %d %d): starved", k, sh[k].got,
                     SHARE_EVENTS, sh[0].got, sh[1].got, sh[2].got);
        tse_test_stream_cancel(sh[k].s);
    }
    free(sh);
    tse_test_delete_subscription(w->ch, "fill-share", UNARY_TIMEOUT_MS);
}

#define HELD_MAX     8
#define HELD_TYPES   2
#define HELD_PRIOS   3
#define HELD_EVENTS  600
#define HELD_PER_MSG 4

static const char *const held_types[HELD_TYPES] = {"fill.held.a", "fill.held.b"};
static const int held_prios[HELD_PRIOS] = {1, 3, 5};

/* Entries pending for consumer over every stream of the held test. */
static long long held_pending(const world *w, const char *consumer)
{
    long long n = 0;
    char key[128];

    for (int t = 0; t < HELD_TYPES; t++)
        for (int p = 0; p < HELD_PRIOS; p++) {
            stream_key(key, sizeof(key), held_types[t], held_prios[p]);
            n += consumer_pending(w, key, "fill-held", consumer);
        }
    return n;
}

/*
 * One subscriber, max_in_flight 8, over six streams (two types, three
 * priorities) with a backlog, acking in bursts, sometimes holding all it
 * may: entries read for it wait for the next pass while its acks queue up.
 * At no moment does it hold more than max_in_flight unacked deliveries (its
 * own count: what it received less what it acked, which is never below the
 * engine's), and what Redis has pending for it (delivered, plus read and
 * held, plus acks on their way) stays within a bound of a read's worth per
 * stream of a level, not growing with the backlog.
 */
static void test_held_entries_keep_a_subscriber_within_max_in_flight(void **state)
{
    world *w = *state;
    static int seen[MAX_SEQ];
    char *unacked[HELD_MAX];
    int n_unacked = 0, got = 0, most = 0, messages = 0;
    long long most_pending = 0;
    unsigned rng = 12345;
    const int total = HELD_EVENTS;

    memset(seen, 0, sizeof(seen));
    for (int t = 0; t < HELD_TYPES; t++)
        for (int p = 0; p < HELD_PRIOS; p++) {
            int at = (t * HELD_PRIOS + p) * (total / (HELD_TYPES * HELD_PRIOS));
            tse_test_publish_seqs(w->ch, held_types[t], held_prios[p], at,
                                  total / (HELD_TYPES * HELD_PRIOS));
        }
    create_earliest(w, "fill-held", "fill.held.*", HELD_MAX);
    tse_test_stream *s =
        tse_test_subscribe(w->ch, "fill-held", "held-0", HELD_PER_MSG, STREAM_LIFETIME_MS);
    while (got < total) {
        const Delivery *ds[HELD_PER_MSG + 1];
        Delivery *m = tse_test_next_delivery(s, 10000, NULL);
        size_t n;

        if (m == NULL)
            fail_msg("%d of %d events arrived", got, total);
        n = tse_test_message_deliveries(m, ds, HELD_PER_MSG + 1);
        for (size_t i = 0; i < n; i++) {
            int seq = seq_of(ds[i]);
            if (seen[seq]++ > 0 || ds[i]->delivery_attempt != 1)
                fail_msg("seq-%d delivered again (attempt %u)", seq, ds[i]->delivery_attempt);
            if (n_unacked == HELD_MAX)
                fail_msg("a delivery beyond max_in_flight %d: %d unacked before it", HELD_MAX,
                         n_unacked);
            if ((unacked[n_unacked++] = strdup(ds[i]->ack_id)) == NULL)
                fail_msg("out of memory");
            got++;
        }
        most = n_unacked > most ? n_unacked : most;
        protobuf_c_message_free_unpacked(&m->base, NULL);
        /* Ack all at once (often when holding all it may), or half, or none
         * yet; but never wait holding more than three quarters of the
         * window: the engine refills a window a quarter at a time, and
         * credit below that waits for the next poll (10 s here). */
        rng = rng * 1103515245 + 12345;
        int r = (int)(rng >> 16) % 4, k = r == 0 ? n_unacked : r == 1 ? n_unacked / 2 : 0;
        if (n_unacked == HELD_MAX && r >= 2)
            k = r == 2 ? HELD_MAX / 4 : HELD_MAX;
        if (n_unacked - k > HELD_MAX - HELD_MAX / 4)
            k = n_unacked - (HELD_MAX - HELD_MAX / 4);
        if (k > 0) {
            assert_true(tse_test_send_acks(s, unacked, (size_t)k));
            for (int i = 0; i < k; i++)
                free(unacked[i]);
            memmove(unacked, unacked + k, (size_t)(n_unacked - k) * sizeof(*unacked));
            n_unacked -= k;
        }
        if (++messages % 10 == 0) {
            long long p = held_pending(w, "held-0");
            most_pending = p > most_pending ? p : most_pending;
        }
    }
    print_message("at most %d unacked, %lld pending in Redis\n", most, most_pending);
    assert_int_equal(most, HELD_MAX);
    /* Delivered (8), read and held (a read of the level's two streams asks
     * the credit from each: 16), acks not yet sent (8). */
    if (most_pending > (HELD_TYPES + 2) * HELD_MAX)
        fail_msg("%lld entries pending for one subscriber of max_in_flight %d", most_pending,
                 HELD_MAX);
    assert_true(tse_test_send_acks(s, unacked, (size_t)n_unacked));
    for (int i = 0; i < n_unacked; i++)
        free(unacked[i]);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "fill-held", UNARY_TIMEOUT_MS);
}

#define PRIO_BACKLOG 1500
#define PRIO_URGENT  20
#define PRIO_MAX     20

/*
 * A subscriber drains a backlog of priority 5 and acks as it goes; priority
 * 1 events published meanwhile overtake the backlog: once they are
 * published, at most what was already read for the subscriber or on its
 * way (a few reads' worth of max_in_flight) comes before the last of them,
 * not the rest of the backlog.
 */
static void test_priority_1_overtakes_a_priority_5_backlog_being_drained(void **state)
{
    world *w = *state;
    static int seen[MAX_SEQ];
    int got = 0, urgent = 0, p5_after = -1;

    memset(seen, 0, sizeof(seen));
    tse_test_publish_seqs(w->ch, "fill.prio", 5, 0, PRIO_BACKLOG);
    /* The priority-1 stream exists before the subscription: no discovery
     * stands between its events and the subscriber. */
    tse_test_publish_seqs(w->ch, "fill.prio", 1, PRIO_BACKLOG, 1);
    create_earliest(w, "fill-prio", "fill.prio", PRIO_MAX);
    tse_test_stream *s = tse_test_subscribe(w->ch, "fill-prio", NULL, 0, STREAM_LIFETIME_MS);
    while (urgent < PRIO_URGENT + 1) {
        Delivery *d = tse_test_next_delivery(s, 10000, NULL);
        int seq;

        if (d == NULL)
            fail_msg("%d deliveries, %d of %d priority-1 events", got, urgent, PRIO_URGENT + 1);
        seq = seq_of(d);
        if (seen[seq]++ > 0)
            fail_msg("seq-%d delivered twice", seq);
        if (d->event->priority == 1)
            urgent++;
        else if (p5_after >= 0)
            p5_after++;
        ack_one(s, d->ack_id);
        protobuf_c_message_free_unpacked(&d->base, NULL);
        if (++got == 100) {
            tse_test_publish_seqs(w->ch, "fill.prio", 1, PRIO_BACKLOG + 1, PRIO_URGENT);
            p5_after = 0;
        }
    }
    print_message("%d priority-5 deliveries between the priority-1 publish and its last event\n",
                  p5_after);
    if (p5_after > 4 * PRIO_MAX)
        fail_msg("%d priority-5 deliveries came before the last of %d priority-1 events published "
                 "ahead of them",
                 p5_after, PRIO_URGENT);
    tse_test_stream_cancel(s);
    tse_test_delete_subscription(w->ch, "fill-prio", UNARY_TIMEOUT_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_ack_no_read_follows_goes_to_redis_alone),
        cmocka_unit_test(test_acks_riding_a_flowing_subscribers_reads_all_reach_redis),
        cmocka_unit_test(test_acks_of_a_subscriber_that_leaves_right_after_reach_redis),
        cmocka_unit_test(test_acks_racing_a_trim_or_a_vanished_group_do_not_break_the_engine),
        cmocka_unit_test(test_subscribers_sharing_a_flow_of_events_all_get_a_share),
        cmocka_unit_test(test_held_entries_keep_a_subscriber_within_max_in_flight),
        cmocka_unit_test(test_priority_1_overtakes_a_priority_5_backlog_being_drained),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
