/*
 * test_service_cluster_smoke.c - the service on a Redis Cluster, end to
 * end: a real 3-master, 3-replica cluster on loopback (tests/support/
 * cluster.h), the real tracseq-events binary with REDIS_URL=redis+cluster://
 * naming two of the masters as seeds, and gRPC calls over loopback.
 *
 * Events of types whose streams live on different masters are stored on
 * the master serving their slot (read back there with XRANGE) and
 * registered in the stream set (on its own master); a client-set id is
 * deduplicated by the script on the type's master; GetStats reports the
 * length of streams on every master; a subscription over a
 * pattern receives events of types on every master; and a publish while
 * the slot of its stream migrates (ASK before the keys moved and after,
 * MOVED once the slot is the new master's) succeeds, the events found on
 * the new master. Scripts flushed on a master are loaded there again by
 * the lanes that meet NOSCRIPT. With a password on every node, the one in the URL is
 * what every node connection authenticates with.
 *
 * The replication check (REDIS_MIN_REPLICAS, on by default on a cluster):
 * every test above publishes with it; a batch over many types costs one
 * WAIT per master per writer round, not one per event; a master whose
 * replica is dead answers a publish UNAVAILABLE "not confirmed by a
 * replica" (the event stored on the master: at least once) until the
 * replica is back. On a cluster whose masters have no replicas, publishes
 * succeed and no WAIT is sent (n capped at a master's replicas); on a
 * single Redis a positive REDIS_MIN_REPLICAS is refused at start.
 *
 * The tests run in this order on one cluster and one service; each uses
 * its own event types.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cluster.h"
#include "grpc_client.h"
#include "harness.h"
#include "storage/keys.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"
#include "world.h"

#define SERVICE     "/tracseq.events.v1.EventService/"
#define M_PUBLISH   SERVICE "Publish"
#define M_BATCH     SERVICE "PublishBatch"
#define M_SUBSCRIBE SERVICE "Subscribe"
#define M_STATS     SERVICE "GetStats"
#define TIMEOUT_MS  10000
#define MASTERS     3
#define MAX_TYPES   64
/* The service's writer lanes (each its own connection per master). */
#define LANES       2
#define LANES_ARG   "2"

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Delivery Delivery;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__PublishBatchRequest BatchRequest;
typedef Tracseq__Events__V1__PublishBatchResponse BatchResponse;
typedef Tracseq__Events__V1__Stats Stats;

typedef tse_test_world world; /* redis: a front of the cluster (redis->whole) */

/* The service on a new cluster of MASTERS masters with replicas each,
 * given only its first seeds nodes: it finds the others itself; prepare
 * (NULL: none) reshapes the cluster before the service starts. */
static tse_test_world *cluster_world_prepared(int replicas, int seeds,
                                              void (*prepare)(tse_test_redis_cluster *))
{
    const char *const args[] = {"--redis-timeout=10s", "--redis-connections=" LANES_ARG, NULL};
    tse_test_redis *front =
        tse_test_cluster_front(tse_test_redis_cluster_start_replicated(MASTERS, replicas, 1000));
    size_t used;

    assert_non_null(front);
    if (prepare != NULL)
        prepare(front->whole);
    used = (size_t)snprintf(front->url, sizeof(front->url), "redis+cluster://");
    for (int i = 0; i < seeds; i++)
        used += (size_t)snprintf(front->url + used, sizeof(front->url) - used, "%s127.0.0.1:%d",
                                 i > 0 ? "," : "", front->whole->nodes[i]->port);
    return tse_test_world_start(front, args, false, NULL);
}

static tse_test_world *cluster_world(int replicas, int seeds)
{
    return cluster_world_prepared(replicas, seeds, NULL);
}

static int world_up(void **state)
{
    *state = cluster_world(1, 2);
    return 0;
}

static int world_down(void **state)
{
    tse_test_world_stop(*state);
    return 0;
}

/* ---- events, keys and where they live ---- */

static void stream_key(char *buf, size_t len, const char *type, int priority)
{
    tse_key_stream(type, priority, buf, len);
}

/* The master (index in the cluster) serving type's priority-3 stream. */
static int master_of_type(const world *w, const char *type)
{
    char key[256];

    stream_key(key, sizeof(key), type, 3);
    return tse_test_cluster_slot_master(w->redis->whole, tse_key_slot(key, strlen(key)));
}

/* Finds, for each master, a type "<prefix>.<n>" whose stream it serves. */
static void types_on_every_master(const world *w, const char *prefix, char types[][64])
{
    bool found[TSE_TEST_CLUSTER_MAX] = {false};
    int have = 0;

    for (int n = 0; n < 1000 && have < MASTERS; n++) {
        char type[64];
        int m;

        snprintf(type, sizeof(type), "%s.t%d", prefix, n);
        m = master_of_type(w, type);
        assert_true(m >= 0);
        if (found[m])
            continue;
        found[m] = true;
        snprintf(types[have++], 64, "%s", type);
    }
    assert_int_equal(have, MASTERS);
}

/* One Publish on ch; *resp set on OK (caller frees). */
static grpc_status_code publish_on(tse_client *ch, const char *type, const char *id, int seq,
                                   PublishResponse **resp, tse_test_status *st)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    char subject[32];

    snprintf(subject, sizeof(subject), "seq-%d", seq);
    ev.event_type = (char *)type;
    ev.source_service = "clustertest";
    ev.subject = subject;
    ev.id = (char *)(id ? id : "");
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    *resp = NULL;
    return tse_test_unary(ch, M_PUBLISH, &req.base,
                          &tracseq__events__v1__publish_response__descriptor,
                          (ProtobufCMessage **)resp, st, TIMEOUT_MS, NULL, NULL);
}

static PublishResponse *publish(const world *w, const char *type, const char *id, int seq)
{
    PublishResponse *resp = NULL;
    tse_test_status st;
    grpc_status_code code = publish_on(w->ch, type, id, seq, &resp, &st);

    if (code != GRPC_STATUS_OK)
        fail_msg("publish of %s: status %d '%s'", type, code, st.details);
    assert_non_null(resp);
    return resp;
}

/* Publishes one event of type; returns its stream entry id (caller frees). */
static char *publish_ok(const world *w, const char *type, int seq)
{
    PublishResponse *r = publish(w, type, NULL, seq);
    char key[256], *id;

    stream_key(key, sizeof(key), type, 3);
    assert_false(r->duplicate);
    assert_string_equal(r->stream, key);
    id = strdup(r->stream_id);
    assert_non_null(id);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return id;
}

/* What node i answers to a command (caller frees), failing when nothing. */
static char *node_cmd(const world *w, int i, const char *fmt, const char *arg)
{
    char *out = tse_test_redis_cmd(w->redis->whole->nodes[i], fmt, arg);

    assert_non_null(out);
    return out;
}

static long long stream_length_on(const world *w, int node, const char *type)
{
    char key[256], *out;
    long long n;

    stream_key(key, sizeof(key), type, 3);
    out = node_cmd(w, node, "XLEN %s", key);
    n = strtoll(out, NULL, 10);
    free(out);
    return n;
}

/* ---- the tests ---- */

static void test_events_are_stored_on_the_master_of_their_slot(void **state)
{
    world *w = *state;
    char types[MASTERS][64], key[256], members_key[256];
    int set_master;

    types_on_every_master(w, "smoke.store", types);
    for (int i = 0; i < MASTERS; i++) {
        char *id = publish_ok(w, types[i], i);
        int m = master_of_type(w, types[i]);
        char *out;

        stream_key(key, sizeof(key), types[i], 3);
        out = node_cmd(w, m, "XRANGE %s - +", key);
        if (strstr(out, id) == NULL || strstr(out, types[i]) == NULL)
            fail_msg("%s on master %d: XRANGE does not hold %s: %s", types[i], m, id, out);
        free(out);
        free(id);
        assert_int_equal(stream_length_on(w, m, types[i]), 1);
    }
    /* Every stream registered, in the stream set on its own master. */
    snprintf(members_key, sizeof(members_key), "%s", TSE_STREAMS_KEY);
    set_master = tse_test_cluster_slot_master(w->redis->whole,
                                              tse_key_slot(members_key, strlen(members_key)));
    assert_true(set_master >= 0);
    for (int i = 0; i < MASTERS; i++) {
        char *out;

        stream_key(key, sizeof(key), types[i], 3);
        out = node_cmd(w, set_master, "SISMEMBER " TSE_STREAMS_KEY " %s", key);
        if (strcmp(out, "1") != 0)
            fail_msg("%s is not in the stream set: %s", key, out);
        free(out);
    }
}

static void test_a_client_set_id_is_deduplicated_on_its_types_master(void **state)
{
    world *w = *state;
    char types[MASTERS][64];

    types_on_every_master(w, "smoke.dedup", types);
    for (int i = 0; i < MASTERS; i++) {
        char id[64];
        PublishResponse *first, *again;

        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i + 1);
        first = publish(w, types[i], id, i);
        again = publish(w, types[i], id, i);
        assert_false(first->duplicate);
        assert_true(again->duplicate);
        assert_string_equal(again->stream_id, first->stream_id);
        assert_int_equal(stream_length_on(w, master_of_type(w, types[i]), types[i]), 1);
        protobuf_c_message_free_unpacked(&first->base, NULL);
        protobuf_c_message_free_unpacked(&again->base, NULL);
    }
}

/* The length GetStats reports for a type's streams; -1 when it lists none. */
static long long reported_length(const Stats *stats, const char *type)
{
    for (size_t i = 0; i < stats->n_stream_lengths; i++)
        if (strcmp(stats->stream_lengths[i]->key, type) == 0)
            return (long long)stats->stream_lengths[i]->value;
    return -1;
}

/* GetStats' stream lengths come from an XLEN on each stream's master. */
static void test_get_stats_reports_streams_of_every_master(void **state)
{
    world *w = *state;
    Tracseq__Events__V1__GetStatsRequest req = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;
    char types[MASTERS][64];
    Stats *stats = NULL;
    tse_test_status st;

    types_on_every_master(w, "smoke.stats", types);
    for (int i = 0; i < MASTERS; i++)
        for (int k = 0; k <= i; k++)
            free(publish_ok(w, types[i], k));
    assert_int_equal(tse_test_unary(w->ch, M_STATS, &req.base,
                                    &tracseq__events__v1__stats__descriptor,
                                    (ProtobufCMessage **)&stats, &st, TIMEOUT_MS, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_non_null(stats);
    assert_true(stats->redis_connected);
    for (int i = 0; i < MASTERS; i++)
        assert_int_equal(reported_length(stats, types[i]), i + 1);
    protobuf_c_message_free_unpacked(&stats->base, NULL);
}

static tse_test_stream *subscribe(const world *w, const char *name, const char *pattern)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s;

    tse_test_create_subscription(w->ch, name, pattern,
                                 TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST, true,
                                 TIMEOUT_MS);
    s = tse_test_stream_open(w->ch, M_SUBSCRIBE, 300000, NULL, NULL);
    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    assert_true(tse_test_stream_send(s, &req.base));
    TSE_TEST_AWAIT(tse_test_subscribers_of(w->ch, name, TIMEOUT_MS) == 1, TIMEOUT_MS,
                   "a subscriber of %s attached", name);
    return s;
}

static void test_a_pattern_subscription_receives_types_on_every_master(void **state)
{
    world *w = *state;
    char types[MASTERS][64];
    int seen[MASTERS] = {0};
    tse_test_stream *s;

    types_on_every_master(w, "smoke.sub", types);
    s = subscribe(w, "smoke-sub", "smoke.sub.*");
    for (int i = 0; i < MASTERS; i++)
        free(publish_ok(w, types[i], i));
    for (int got = 0; got < MASTERS; got++) {
        Delivery *d = (Delivery *)tse_test_stream_recv(
            s, &tracseq__events__v1__delivery__descriptor, TIMEOUT_MS, NULL);
        int k = -1;

        if (d == NULL)
            fail_msg("%d of %d deliveries came", got, MASTERS);
        assert_non_null(d->event);
        for (int i = 0; i < MASTERS; i++)
            if (strcmp(d->event->event_type, types[i]) == 0)
                k = i;
        if (k < 0)
            fail_msg("a delivery of %s, not published here", d->event->event_type);
        seen[k]++;
        protobuf_c_message_free_unpacked(&d->base, NULL);
    }
    for (int i = 0; i < MASTERS; i++)
        assert_int_equal(seen[i], 1);
    tse_test_stream_cancel(s);
}

/*
 * The slot of a type's stream moves from its master to another, in the
 * steps of a live resharding, with a publish at each: before the keys
 * moved (the source has the stream: it runs there), after (the source
 * answers ASK: ASKING then the command on the target), and once the slot
 * is the target's (MOVED: the service refreshes its map).
 */
static void test_a_publish_during_a_slot_migration_succeeds(void **state)
{
    world *w = *state;
    char types[MASTERS][64], key[256];
    const char *type;
    unsigned slot;
    int from, to;

    types_on_every_master(w, "smoke.move", types);
    type = types[0];
    stream_key(key, sizeof(key), type, 3);
    slot = tse_key_slot(key, strlen(key));
    from = master_of_type(w, type);
    to = master_of_type(w, types[1]);
    assert_true(from != to);

    free(publish_ok(w, type, 0));
    assert_true(tse_test_cluster_slot_begin(w->redis->whole, slot, to));
    free(publish_ok(w, type, 1));
    assert_true(tse_test_cluster_slot_move_keys(w->redis->whole, slot, to, 100) >= 1);
    free(publish_ok(w, type, 2));
    assert_true(tse_test_cluster_slot_finish(w->redis->whole, slot, to));
    free(publish_ok(w, type, 3));
    free(publish_ok(w, type, 4));

    assert_int_equal(tse_test_cluster_slot_master(w->redis->whole, slot), to);
    assert_int_equal(stream_length_on(w, to, type), 5);
}

/*
 * A master whose scripts were flushed answers a dedup publish NOSCRIPT
 * (UNAVAILABLE: the event was not stored): the lane that saw it loads the
 * scripts again before its next dedup publish, on the master of that
 * publish's slot, so each lane fails at most one publish and every
 * later one is stored there.
 */
static void test_scripts_flushed_on_a_master_are_loaded_there_again(void **state)
{
    world *w = *state;
    char types[MASTERS][64], *out;
    int m, ok = 0, unavailable = 0;

    types_on_every_master(w, "smoke.flush", types);
    m = master_of_type(w, types[0]);
    out = tse_test_redis_cmd(w->redis->whole->nodes[m], "SCRIPT FLUSH");
    assert_non_null(out);
    assert_string_equal(out, "OK");
    free(out);
    for (int i = 0; i < 4 * LANES; i++) {
        PublishResponse *resp = NULL;
        tse_test_status st;
        char id[64];
        grpc_status_code code;

        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", 100 + i);
        code = publish_on(w->ch, types[0], id, i, &resp, &st);
        if (code == GRPC_STATUS_OK) {
            assert_false(resp->duplicate);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            ok++;
        } else if (code == GRPC_STATUS_UNAVAILABLE) {
            unavailable++;
        } else {
            fail_msg("publish %d after SCRIPT FLUSH: status %d '%s'", i, code, st.details);
        }
    }
    if (unavailable > LANES)
        fail_msg("%d of %d publishes failed after SCRIPT FLUSH (at most one per lane)", unavailable,
                 4 * LANES);
    assert_int_equal(stream_length_on(w, m, types[0]), ok);
}

/*
 * Every node asks for a password (masterauth first, so the replicas keep
 * replicating): a service whose URL carries it publishes to every master
 * (each node connection authenticates), one without it is refused by
 * Redis and answers UNAVAILABLE. Last: the nodes keep the password.
 */
static void test_a_password_in_the_url_is_used_on_every_master(void **state)
{
    world *w = *state;
    const char *args[] = {"--redis-timeout=10s", NULL},
               *short_args[] = {"--redis-timeout=1s", NULL};
    char types[MASTERS][64];
    tse_test_redis with, without;
    tse_test_service *s_with, *s_without;
    tse_client *ch_with, *ch_without;
    PublishResponse *resp;
    tse_test_status st;

    types_on_every_master(w, "smoke.auth", types);
    for (int i = 0; i < w->redis->whole->n; i++)
        assert_true(tse_test_cluster_config_set(w->redis->whole, i, "masterauth", "s3cret"));
    for (int i = 0; i < w->redis->whole->n; i++)
        assert_true(tse_test_cluster_config_set(w->redis->whole, i, "requirepass", "s3cret"));
    with = *w->redis->whole->nodes[0];
    snprintf(with.url, sizeof(with.url), "redis+cluster://:s3cret@127.0.0.1:%d,127.0.0.1:%d",
             w->redis->whole->nodes[0]->port, w->redis->whole->nodes[1]->port);
    without = with;
    snprintf(without.url, sizeof(without.url), "redis+cluster://127.0.0.1:%d",
             w->redis->whole->nodes[0]->port);
    s_with = tse_test_service_start(&with, args);
    /* It waits for Redis up to its timeout before it listens: a short one. */
    s_without = tse_test_service_start(&without, short_args);
    assert_non_null(s_with);
    assert_non_null(s_without);
    ch_with = tse_test_channel(s_with->addr);
    ch_without = tse_test_channel(s_without->addr);
    for (int i = 0; i < MASTERS; i++) {
        grpc_status_code code = publish_on(ch_with, types[i], NULL, i, &resp, &st);

        if (code != GRPC_STATUS_OK)
            fail_msg("publish of %s with the password: status %d '%s'", types[i], code, st.details);
        assert_true(resp->stream_id[0] != '\0');
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    assert_int_equal(publish_on(ch_without, types[0], NULL, 0, &resp, &st),
                     GRPC_STATUS_UNAVAILABLE);
    assert_null(resp);
    tse_test_channel_destroy(ch_with);
    tse_test_channel_destroy(ch_without);
    assert_int_equal(tse_test_service_stop(s_with), 0);
    assert_int_equal(tse_test_service_stop(s_without), 0);
}

/* ---- the replication check ---- */

/* Calls of WAIT node i has served (INFO commandstats). */
static long wait_calls(const world *w, int i)
{
    char *out = node_cmd(w, i, "INFO %s", "commandstats");
    const char *at = strstr(out, "cmdstat_wait:calls=");
    long n = at ? atol(at + strlen("cmdstat_wait:calls=")) : 0;

    free(out);
    return n;
}

static long wait_calls_of_masters(const world *w, long per_master[TSE_TEST_CLUSTER_MAX])
{
    long total = 0;

    for (int i = 0; i < w->redis->whole->n; i++) {
        per_master[i] = tse_test_cluster_is_master(w->redis->whole, i) ? wait_calls(w, i) : 0;
        total += per_master[i];
    }
    return total;
}

#define WAIT_TYPES 60

/* One PublishBatch of one event of each type; every result OK. */
static void publish_batch_ok(const world *w, char types[][64], int n)
{
    Event *evs[WAIT_TYPES], ev[WAIT_TYPES];
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    BatchRequest req = TRACSEQ__EVENTS__V1__PUBLISH_BATCH_REQUEST__INIT;
    BatchResponse *resp = NULL;
    tse_test_status st;

    for (int i = 0; i < n; i++) {
        tracseq__events__v1__event__init(&ev[i]);
        ev[i].event_type = types[i];
        ev[i].source_service = "clustertest";
        ev[i].payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
        ev[i].data = &data;
        evs[i] = &ev[i];
    }
    req.n_events = (size_t)n;
    req.events = evs;
    assert_int_equal(tse_test_unary(w->ch, M_BATCH, &req.base,
                                    &tracseq__events__v1__publish_batch_response__descriptor,
                                    (ProtobufCMessage **)&resp, &st, TIMEOUT_MS, NULL, NULL),
                     GRPC_STATUS_OK);
    assert_int_equal(resp->n_results, n);
    for (int i = 0; i < n; i++)
        if (resp->results[i]->error != NULL)
            fail_msg("event %d (%s): %s", i, types[i], resp->results[i]->error->message);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/*
 * A batch of one event of each of 60 types (about 20 per master): each
 * type is its own job, the lane writes them in a round or a few, and WAITs
 * once per master of a round: each master serves at least one WAIT and
 * all of them far fewer than the 60 a WAIT per event would cost.
 */
static void test_a_round_waits_once_per_master_not_per_event(void **state)
{
    world *w = *state;
    char types[WAIT_TYPES][64];
    long before[TSE_TEST_CLUSTER_MAX], after[TSE_TEST_CLUSTER_MAX], total;
    int masters = 0;

    for (int i = 0; i < WAIT_TYPES; i++)
        snprintf(types[i], sizeof(types[i]), "smoke.wait.t%d", i);
    total = -wait_calls_of_masters(w, before);
    publish_batch_ok(w, types, WAIT_TYPES);
    total += wait_calls_of_masters(w, after);
    for (int i = 0; i < w->redis->whole->n; i++) {
        if (!tse_test_cluster_is_master(w->redis->whole, i))
            continue;
        masters++;
        print_message("master %d: %ld WAIT\n", i, after[i] - before[i]);
        assert_true(after[i] - before[i] >= 1);
    }
    assert_int_equal(masters, MASTERS);
    if (total > WAIT_TYPES / 4)
        fail_msg("%ld WAITs for %d events over %d masters", total, WAIT_TYPES, MASTERS);
}

typedef struct replica_at {
    const world *w;
    int master;
} replica_at;

static bool replica_online(void *arg)
{
    const replica_at *a = arg;
    char *out = tse_test_redis_cmd(a->w->redis->whole->nodes[a->master], "INFO replication");
    bool online = out != NULL && strstr(out, "slave0:") != NULL &&
                  strstr(strstr(out, "slave0:"), "state=online") != NULL;

    free(out);
    return online;
}

/*
 * The replica of a type's master killed: a publish there is stored on the
 * master but answered UNAVAILABLE, saying it was not confirmed by a
 * replica (it would be lost if the master died now); a type on another
 * master is still answered OK. The replica restarted, the master's
 * publishes are confirmed again.
 */
static void test_a_publish_no_replica_confirms_is_unavailable(void **state)
{
    world *w = *state;
    char types[MASTERS][64];
    PublishResponse *resp = NULL;
    tse_test_status st;
    int m, r, other;
    long long stored;
    long waits;

    types_on_every_master(w, "smoke.unreplicated", types);
    m = master_of_type(w, types[0]);
    other = master_of_type(w, types[1]);
    r = tse_test_cluster_replica_of(w->redis->whole, m);
    assert_true(r >= 0);
    free(publish_ok(w, types[0], 0));
    stored = stream_length_on(w, m, types[0]);
    tse_test_cluster_kill(w->redis->whole, r);

    assert_int_equal(publish_on(w->ch, types[0], NULL, 1, &resp, &st), GRPC_STATUS_UNAVAILABLE);
    assert_null(resp);
    if (strstr(st.details, "not confirmed by a replica") == NULL ||
        strstr(st.details, "retry with the same client_id") == NULL)
        fail_msg("details: '%s'", st.details);
    assert_int_equal(stream_length_on(w, m, types[0]), stored + 1);
    assert_true(other != m);
    free(publish_ok(w, types[1], 2));

    /* A master found short of replicas is not waited on again (ROLE says
     * its replica is gone): at most one more WAIT, by a lane that has not
     * met it yet, however many publishes follow; each still UNAVAILABLE. */
    waits = wait_calls(w, m);
    for (int i = 0; i < 3 * LANES; i++) {
        assert_int_equal(publish_on(w->ch, types[0], NULL, 10 + i, &resp, &st),
                         GRPC_STATUS_UNAVAILABLE);
        if (strstr(st.details, "not confirmed by a replica") == NULL ||
            strstr(st.details, "retry with the same client_id") == NULL)
            fail_msg("details: '%s'", st.details);
        free(publish_ok(w, types[1], 100 + i));
    }
    waits = wait_calls(w, m) - waits;
    print_message("master %d: %ld WAIT for %d publishes\n", m, waits, 3 * LANES);
    assert_true(waits <= LANES - 1);

    /* The replica back and in sync: confirmed again. */
    assert_true(tse_test_redis_restart(w->redis->whole->nodes[r]));
    assert_true(tse_test_wait_until(replica_online, &(replica_at){w, m}, 30000,
                                    "the replica of master %d to be online", m));
    free(publish_ok(w, types[0], 3));
}

/* A cluster whose masters have no replica: the map says so, n is capped at
 * 0 for each, and publishes succeed without a WAIT. */
static int bare_world_up(void **state)
{
    *state = cluster_world(0, 1);
    return 0;
}

/* On a single Redis only 0 is accepted: a start with more is refused,
 * naming the setting (no Redis needed: refused before connecting). */
static void test_min_replicas_on_a_single_redis_is_refused(void **state)
{
    char cmd[1024], out[4096];
    FILE *p;
    size_t n;

    (void)state;
    snprintf(cmd, sizeof(cmd),
             "'%s' --listen=127.0.0.1:%d --redis-url=redis://127.0.0.1:1 "
             "--redis-min-replicas=1 2>&1",
             getenv("TSE_SERVICE_BIN"), tse_test_free_port());
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(tse_test_exit_code(pclose(p)), 2);
    if (strstr(out, "REDIS_MIN_REPLICAS (--redis-min-replicas) 1 needs a Redis Cluster") == NULL)
        fail_msg("output: %s", out);
}

static void test_masters_without_replicas_are_not_waited_on(void **state)
{
    world *w = *state;
    char types[MASTERS][64];
    long before[TSE_TEST_CLUSTER_MAX], after[TSE_TEST_CLUSTER_MAX];

    types_on_every_master(w, "bare.t", types);
    wait_calls_of_masters(w, before);
    for (int i = 0; i < MASTERS; i++)
        free(publish_ok(w, types[i], i));
    assert_int_equal(wait_calls_of_masters(w, after), 0);
    for (int i = 0; i < MASTERS; i++)
        assert_int_equal(stream_length_on(w, master_of_type(w, types[i]), types[i]), 1);
}

/* ---- a master without replicas beside masters with ---- */

#define BARE_MASTER 0

typedef struct forgotten {
    const tse_test_redis_cluster *c;
    const char *id;
} forgotten;

static bool forgotten_everywhere(void *arg)
{
    const forgotten *f = arg;

    for (int i = 0; i < f->c->n; i++) {
        char *out;
        bool known;

        if (f->c->nodes[i]->pid == 0)
            continue;
        out = tse_test_redis_cmd(f->c->nodes[i], "CLUSTER NODES");
        known = out == NULL || strstr(out, f->id) != NULL;
        free(out);
        if (known)
            return false;
    }
    return true;
}

/* Master BARE_MASTER's replica killed and forgotten by every node, before
 * the service starts: the service's map lists that master without
 * replicas, the others with one each. */
static void forget_a_replica(tse_test_redis_cluster *c)
{
    int r = tse_test_cluster_replica_of(c, BARE_MASTER);
    char *id, *out;

    assert_true(r >= 0);
    id = tse_test_redis_cmd(c->nodes[r], "CLUSTER MYID");
    assert_non_null(id);
    tse_test_cluster_kill(c, r);
    for (int i = 0; i < c->n; i++) {
        if (c->nodes[i]->pid == 0)
            continue;
        out = tse_test_redis_cmd(c->nodes[i], "CLUSTER FORGET %s", id);
        if (out == NULL || strcmp(out, "OK") != 0)
            fail_msg("CLUSTER FORGET on node %d: %s", i, out ? out : "(no answer)");
        free(out);
    }
    assert_true(tse_test_wait_until(forgotten_everywhere, &(forgotten){c, id}, 30000,
                                    "every node to forget node %s", id));
    free(id);
}

static int forgot_world_up(void **state)
{
    *state = cluster_world_prepared(1, 2, forget_a_replica);
    return 0;
}

/*
 * A publish the lane sends to a master without replicas (its slot map is
 * stale: the slot moved since), which the MOVED answer sends on to a
 * master with a replica: its master is the one that stored the event, so
 * it is answered OK only once that master's WAIT confirms it. Here that
 * master's replica is dead: UNAVAILABLE "not confirmed by a replica", not
 * the OK of a master that needs no WAIT.
 */
static void test_a_publish_moved_to_a_replicated_master_waits_there(void **state)
{
    world *w = *state;
    tse_test_redis_cluster *c = w->redis->whole;
    char types[MASTERS][64], key[256];
    PublishResponse *resp = NULL;
    tse_test_status st;
    const char *type = NULL;
    int to, r;

    types_on_every_master(w, "forgot.moved", types);
    for (int i = 0; i < MASTERS; i++)
        if (master_of_type(w, types[i]) == BARE_MASTER)
            type = types[i];
    assert_non_null(type);
    free(publish_ok(w, type, 0)); /* no replica, no WAIT: OK */

    to = tse_test_cluster_other_master(c, BARE_MASTER);
    r = tse_test_cluster_replica_of(c, to);
    assert_true(to >= 0 && r >= 0);
    tse_test_cluster_kill(c, r);
    stream_key(key, sizeof(key), type, 3);
    assert_true(tse_test_cluster_migrate_slot(c, tse_key_slot(key, strlen(key)), to));

    assert_int_equal(publish_on(w->ch, type, NULL, 1, &resp, &st), GRPC_STATUS_UNAVAILABLE);
    assert_null(resp);
    if (strstr(st.details, "not confirmed by a replica") == NULL)
        fail_msg("details: '%s'", st.details);
    assert_int_equal(stream_length_on(w, to, type), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_are_stored_on_the_master_of_their_slot),
        cmocka_unit_test(test_a_client_set_id_is_deduplicated_on_its_types_master),
        cmocka_unit_test(test_get_stats_reports_streams_of_every_master),
        cmocka_unit_test(test_a_pattern_subscription_receives_types_on_every_master),
        cmocka_unit_test(test_a_publish_during_a_slot_migration_succeeds),
        cmocka_unit_test(test_scripts_flushed_on_a_master_are_loaded_there_again),
        cmocka_unit_test(test_a_round_waits_once_per_master_not_per_event),
        cmocka_unit_test(test_a_publish_no_replica_confirms_is_unavailable),
        cmocka_unit_test(test_a_password_in_the_url_is_used_on_every_master),
    };
    const struct CMUnitTest bare[] = {
        cmocka_unit_test(test_masters_without_replicas_are_not_waited_on),
        cmocka_unit_test(test_min_replicas_on_a_single_redis_is_refused),
    };
    const struct CMUnitTest forgot[] = {
        cmocka_unit_test(test_a_publish_moved_to_a_replicated_master_waits_there),
    };
    int failed = cmocka_run_group_tests_name("replicated", tests, world_up, world_down);

    failed += cmocka_run_group_tests_name("no replicas", bare, bare_world_up, world_down);
    return failed + cmocka_run_group_tests_name("a master without replicas", forgot,
                                                forgot_world_up, world_down);
}
