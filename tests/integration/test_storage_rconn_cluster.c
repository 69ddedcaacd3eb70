/*
 * test_storage_rconn_cluster.c - the cluster connection (storage/rconn.h)
 * against a real Redis Cluster on loopback: 3 masters with one replica each
 * (tests/support/cluster.h). Commands go to the master of their keys' slot;
 * a pipeline over the three masters answers in the order it was appended; a
 * multi-key command across slots is refused and never sent; after a slot
 * migrates, MOVED refreshes the map and the command succeeds; while a slot
 * is half migrated, keys already moved are found through ASK and ASKING;
 * a command borrowed rather than copied is sent from the caller's bytes
 * and never freed; a round of megabytes is sent whole; a master's slots
 * share one owner number; a master killed with SIGKILL makes its slots
 * UNAVAILABLE (saying which slot) until its replica is promoted, then the
 * same connection carries on.
 *
 * The tests run in this order on one cluster: the migrations move slots,
 * the failover kills a master.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "cluster.h"
#include "common/clock.h"
#include "storage/keys.h"
#include "storage/rconn.h"
#include "storage/redis_url.h"

/* Bounds a test's waits when things go wrong; never reached when they go
 * right. */
#define DEADLINE_MS     10000
/* Each connect and reply of the connections under test. */
#define CONN_TIMEOUT_MS 10000
/* tse_rconn_set_moving_ms of the tests that set it: far longer than any
 * test waits, so that a command kept that long shows. */
#define MOVING_MS       60000

typedef struct fixture {
    tse_test_redis_cluster *cluster;
    tse_redis_target target;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char url[128];
    tse_error err;

    assert_non_null(f);
    *state = f;
    f->cluster = tse_test_redis_cluster_start_replicated(3, 1, 1000);
    assert_non_null(f->cluster);
    /* Two seeds: the connection finds the rest of the cluster itself. */
    snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d,127.0.0.1:%d",
             f->cluster->nodes[0]->port, f->cluster->nodes[1]->port);
    assert_int_equal(tse_redis_url_parse(url, &f->target, &err), TSE_OK);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    if (f != NULL)
        tse_test_redis_cluster_stop(f->cluster);
    free(f);
    return 0;
}

static tse_rconn *conn_new(const fixture *f)
{
    tse_rconn *c = NULL;
    tse_error err;

    /* A reply may take seconds on a loaded machine while redis-cli migrates
     * slots: a short timeout would fail a command that merely waited. */
    assert_int_equal(tse_rconn_create(&f->target, CONN_TIMEOUT_MS, &c, &err), TSE_OK);
    assert_true(tse_rconn_is_cluster(c));
    return c;
}

/* argv of up to 8 NUL-terminated strings, NULL-terminated. */
static int count_args(const char *const *argv)
{
    int n = 0;

    while (argv[n] != NULL)
        n++;
    return n;
}

/* Runs a command (keys found by the connection) that must get a reply;
 * caller frees it. */
static redisReply *run(tse_rconn *c, const char *const *argv)
{
    redisReply *r = NULL;
    tse_error err;

    tse_error_clear(&err);
    if (tse_rconn_command(c, count_args(argv), argv, NULL, TSE_RCONN_SLOT_OF_KEYS,
                          tse_clock_ms() + DEADLINE_MS, &r, &err) != TSE_OK)
        fail_msg("%s: %s", argv[0], err.message);
    assert_non_null(r);
    return r;
}

#define RUN(c, ...) run((c), (const char *const[]){__VA_ARGS__, NULL})

static void expect_text(redisReply *r, const char *want)
{
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
        fail_msg("reply of type %d (%s), not \"%s\"", r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "-", want);
    assert_string_equal(r->str, want);
    freeReplyObject(r);
}

static void expect_number(redisReply *r, long long want)
{
    if (r->type != REDIS_REPLY_INTEGER)
        fail_msg("reply of type %d (%s), not %lld", r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "-", want);
    assert_int_equal(r->integer, want);
    freeReplyObject(r);
}

static unsigned slot_of(const char *key)
{
    return tse_key_slot(key, strlen(key));
}

/* GET key on cluster node i itself: a value, or the error (MOVED...) it
 * answers. Caller frees. */
static char *direct_get(const fixture *f, int i, const char *key)
{
    struct timeval tv = {2, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", f->cluster->nodes[i]->port, tv);
    redisReply *r;
    char *out;

    assert_true(ctx != NULL && ctx->err == 0);
    r = redisCommand(ctx, "GET %s", key);
    assert_non_null(r);
    out = strdup(r->type == REDIS_REPLY_NIL ? "(nil)" : r->str);
    freeReplyObject(r);
    redisFree(ctx);
    return out;
}

/* A master other than node i. */
static int other_master(const fixture *f, int i)
{
    for (int k = 0; k < f->cluster->n; k++)
        if (k != i && tse_test_cluster_is_master(f->cluster, k))
            return k;
    fail_msg("no master but node %d", i);
    return -1;
}

/* ---------------------------------------------------------------------- */

static void each_command_goes_to_the_master_of_its_slot(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    bool used[TSE_TEST_CLUSTER_MAX] = {false};
    char key[32], value[32];
    int masters = 0;

    for (int k = 0; k < 300; k++) {
        snprintf(key, sizeof(key), "route:%d", k);
        snprintf(value, sizeof(value), "v%d", k);
        expect_text(RUN(c, "SET", key, value), "OK");
    }
    for (int k = 0; k < 300; k++) {
        int owner;
        char *got;

        snprintf(key, sizeof(key), "route:%d", k);
        snprintf(value, sizeof(value), "v%d", k);
        owner = tse_test_cluster_slot_master(f->cluster, slot_of(key));
        assert_true(owner >= 0);
        /* Stored on the slot's master itself, not found by a redirection. */
        got = direct_get(f, owner, key);
        assert_string_equal(got, value);
        free(got);
        expect_text(RUN(c, "GET", key), value);
        masters += !used[owner];
        used[owner] = true;
    }
    assert_int_equal(masters, 3);

    /* The commands the service sends, each on keys of its own slot. */
    expect_number(RUN(c, "DEL", "{s}:stream", "{s}:set", "{s}:hash"), 0);
    freeReplyObject(RUN(c, "XADD", "{s}:stream", "*", "k", "v"));
    expect_number(RUN(c, "XLEN", "{s}:stream"), 1);
    expect_text(RUN(c, "XGROUP", "CREATE", "{s}:stream", "g", "0"), "OK");
    freeReplyObject(
        RUN(c, "XREADGROUP", "GROUP", "g", "c1", "COUNT", "10", "STREAMS", "{s}:stream", ">"));
    expect_number(RUN(c, "SADD", "{s}:set", "a"), 1);
    expect_number(RUN(c, "HSET", "{s}:hash", "f", "v"), 1);
    expect_text(RUN(c, "HGET", "{s}:hash", "f"), "v");
    expect_number(RUN(c, "EVAL", "return redis.call('SCARD', KEYS[1])", "1", "{s}:set"), 1);

    assert_int_equal(tse_rconn_get_counters(c).moved, 0);
    assert_int_equal(tse_rconn_get_counters(c).ask, 0);
    tse_rconn_destroy(c);
}

static void scripts_are_loaded_on_every_master(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    static const char body[] = "return redis.call('INCR', KEYS[1])";
    redisReply *sha;
    char key[32];
    tse_error err;

    assert_int_equal(tse_rconn_add_script(c, body, &err), TSE_OK);
    sha = RUN(c, "SCRIPT", "LOAD", body);
    assert_int_equal(sha->type, REDIS_REPLY_STRING);
    for (int k = 0; k < 30; k++) {
        snprintf(key, sizeof(key), "script:%d", k);
        expect_number(RUN(c, "DEL", key), 0);
        expect_number(RUN(c, "EVALSHA", sha->str, "1", key), 1);
    }
    freeReplyObject(sha);
    tse_rconn_destroy(c);
}

static void a_pipeline_over_three_masters_answers_in_order(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    char keys[3][32];
    int found = 0, owner[3];
    tse_error err;

    /* One key on each master. */
    for (int k = 0; found < 3; k++) {
        char key[32];
        int o;
        bool seen = false;

        snprintf(key, sizeof(key), "pipe:%d", k);
        o = tse_test_cluster_slot_master(f->cluster, slot_of(key));
        for (int j = 0; j < found; j++)
            seen = seen || owner[j] == o;
        if (!seen) {
            owner[found] = o;
            strcpy(keys[found++], key);
        }
    }
    expect_number(RUN(c, "DEL", keys[0]), 0);
    expect_number(RUN(c, "DEL", keys[1]), 0);
    expect_number(RUN(c, "DEL", keys[2]), 0);
    expect_text(RUN(c, "SET", "pipe:string", "s"), "OK");

    for (int i = 0; i < 30; i++) {
        const char *argv[] = {"INCR", keys[i % 3]};

        assert_int_equal(tse_rconn_append(c, 2, argv, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_OK);
        if (i == 10) {
            /* An error reply is an answer like any other, in its place. */
            const char *wrong[] = {"HGET", "pipe:string", "f"};

            assert_int_equal(tse_rconn_append(c, 3, wrong, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                             TSE_OK);
        }
    }
    assert_int_equal(tse_rconn_pending(c), 31);
    for (int i = 0; i < 30; i++) {
        redisReply *r = NULL;

        assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        expect_number(r, i / 3 + 1);
        if (i == 10) {
            assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err),
                             TSE_OK);
            assert_int_equal(r->type, REDIS_REPLY_ERROR);
            assert_non_null(strstr(r->str, "WRONGTYPE"));
            freeReplyObject(r);
        }
    }
    assert_int_equal(tse_rconn_pending(c), 0);
    assert_int_equal(tse_rconn_get_counters(c).moved, 0);
    tse_rconn_destroy(c);
}

/* "INCR <key>" in RESP, as the writer's jobs come formatted. */
static size_t incr_resp(char *buf, size_t len, const char *key)
{
    int n = snprintf(buf, len, "*2\r\n$4\r\nINCR\r\n$%zu\r\n%s\r\n", strlen(key), key);

    assert_true(n > 0 && (size_t)n < len);
    return (size_t)n;
}

/* A command appended already formatted goes to the master of the slot the
 * caller names (no MOVED); named with another master's slot, it is
 * redirected there and still answered (the writer's jobs name their slot). */
static void a_formatted_command_goes_to_the_slot_it_names(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    char keys[2][32], cmd[64];
    int owner0 = -1;
    tse_error err;
    redisReply *r = NULL;

    /* Two keys on different masters. */
    snprintf(keys[0], sizeof(keys[0]), "resp:0");
    owner0 = tse_test_cluster_slot_master(f->cluster, slot_of(keys[0]));
    for (int k = 1;; k++) {
        snprintf(keys[1], sizeof(keys[1]), "resp:%d", k);
        if (tse_test_cluster_slot_master(f->cluster, slot_of(keys[1])) != owner0)
            break;
    }
    for (int i = 0; i < 10; i++) {
        size_t n = incr_resp(cmd, sizeof(cmd), keys[i % 2]);

        assert_int_equal(tse_rconn_append_resp(c, cmd, n, (int)slot_of(keys[i % 2]), &err), TSE_OK);
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        expect_number(r, i / 2 + 1);
    }
    assert_int_equal(tse_rconn_get_counters(c).moved, 0);
    /* The wrong slot: the master asked answers MOVED, followed. */
    assert_int_equal(tse_rconn_append_resp(c, cmd, incr_resp(cmd, sizeof(cmd), keys[0]),
                                           (int)slot_of(keys[1]), &err),
                     TSE_OK);
    assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
    expect_number(r, 6);
    assert_int_equal(tse_rconn_get_counters(c).moved, 1);
    tse_rconn_destroy(c);
}

/* A borrowed command (tse_rconn_append_resp_borrowed) is sent from the
 * caller's bytes, including again after a MOVED, and answered in order;
 * nothing borrowed is freed by the connection (each buffer here is on the
 * stack: freeing one would abort), whether the pipeline ran, was
 * discarded, or is destroyed with commands not sent. */
static void a_borrowed_command_is_sent_from_the_callers_bytes(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    char keys[2][32], cmd[10][64], moved[64];
    size_t len[10];
    int owner0;
    tse_error err;
    redisReply *r = NULL;

    snprintf(keys[0], sizeof(keys[0]), "borrow:0");
    owner0 = tse_test_cluster_slot_master(f->cluster, slot_of(keys[0]));
    for (int k = 1;; k++) {
        snprintf(keys[1], sizeof(keys[1]), "borrow:%d", k);
        if (tse_test_cluster_slot_master(f->cluster, slot_of(keys[1])) != owner0)
            break;
    }
    for (int i = 0; i < 10; i++) {
        len[i] = incr_resp(cmd[i], sizeof(cmd[i]), keys[i % 2]);
        assert_int_equal(
            tse_rconn_append_resp_borrowed(c, cmd[i], len[i], (int)slot_of(keys[i % 2]), &err),
            TSE_OK);
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        expect_number(r, i / 2 + 1);
    }
    /* Named with the other master's slot: redirected, sent again. */
    assert_int_equal(tse_rconn_append_resp_borrowed(c, moved,
                                                    incr_resp(moved, sizeof(moved), keys[0]),
                                                    (int)slot_of(keys[1]), &err),
                     TSE_OK);
    assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
    expect_number(r, 6);
    /* Refused like a copied one, and nothing appended then. */
    assert_int_equal(tse_rconn_append_resp_borrowed(c, moved, 0, 7, &err), TSE_INVALID);
    assert_int_equal(tse_rconn_pending(c), 0);
    /* Discarded, then left in the pipeline at destroy: not freed. */
    assert_int_equal(tse_rconn_append_resp_borrowed(c, cmd[0], len[0], 7, &err), TSE_OK);
    tse_rconn_discard(c);
    assert_int_equal(tse_rconn_append_resp_borrowed(c, cmd[0], len[0], 7, &err), TSE_OK);
    tse_rconn_destroy(c);
}

/* tse_rconn_slot_owner names a master once for all its slots: the same
 * number for two slots of one master, another for another master's, with
 * the replicas the map lists (one each here). */
static void slots_of_one_master_have_one_owner(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    int same = -1, other = -1, replicas = -1, m0 = tse_test_cluster_slot_master(f->cluster, 0);
    int o0;
    tse_error err;

    assert_int_equal(tse_rconn_slot_owner(c, 0, &replicas), -1); /* no map yet */
    assert_int_equal(tse_rconn_connect(c, tse_clock_ms() + DEADLINE_MS, &err), TSE_OK);
    /* Across the slot space: some of the same master, some of another. */
    for (unsigned s = 1; s < 16384 && (same < 0 || other < 0); s += 1024) {
        int m = tse_test_cluster_slot_master(f->cluster, s);

        if (m == m0 && same < 0)
            same = (int)s;
        else if (m != m0 && other < 0)
            other = (int)s;
    }
    assert_true(same > 0 && other > 0);
    o0 = tse_rconn_slot_owner(c, 0, &replicas);
    assert_true(o0 >= 0);
    assert_int_equal(replicas, 1);
    assert_int_equal(replicas, tse_rconn_slot_replicas(c, 0));
    assert_int_equal(tse_rconn_slot_owner(c, (unsigned)same, NULL), o0);
    assert_true(tse_rconn_slot_owner(c, (unsigned)other, NULL) >= 0);
    assert_int_not_equal(tse_rconn_slot_owner(c, (unsigned)other, NULL), o0);
    tse_rconn_destroy(c);
}

/* A round bigger than the send buffer the connection keeps (4 MB) goes
 * out whole, and the next, small one still does. */
static void a_round_of_several_megabytes_is_sent_whole(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    enum { N = 80, VALUE = 64 * 1024 };
    char *value = malloc(VALUE + 1), key[32];
    tse_error err;
    redisReply *r = NULL;

    assert_non_null(value);
    memset(value, 'v', VALUE);
    value[VALUE] = '\0';
    for (int i = 0; i < N; i++) {
        const char *argv[] = {"SET", key, value};

        snprintf(key, sizeof(key), "{biground}:%d", i);
        assert_int_equal(tse_rconn_append(c, 3, argv, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_OK);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        expect_text(r, "OK");
    }
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "{biground}:%d", i);
        r = RUN(c, "GET", key);
        assert_int_equal(r->len, VALUE);
        freeReplyObject(r);
        expect_number(RUN(c, "DEL", key), 1);
    }
    free(value);
    tse_rconn_destroy(c);
}

static void a_command_whose_keys_span_slots_is_refused_and_not_sent(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    const char *del[] = {"DEL", "{cross-a}", "{cross-b}"};
    const char *read[] = {"XREADGROUP", "GROUP",     "g", "c", "STREAMS",
                          "{cross-a}",  "{cross-b}", ">", ">"};
    redisReply *r = NULL;
    tse_error err;

    assert_int_not_equal(slot_of("{cross-a}"), slot_of("{cross-b}"));
    expect_text(RUN(c, "SET", "{cross-a}", "1"), "OK");
    expect_text(RUN(c, "SET", "{cross-b}", "1"), "OK");

    tse_error_clear(&err);
    assert_int_equal(tse_rconn_command(c, 3, del, NULL, TSE_RCONN_SLOT_OF_KEYS,
                                       tse_clock_ms() + DEADLINE_MS, &r, &err),
                     TSE_INVALID);
    assert_null(r);
    assert_string_equal(err.field, "command");
    assert_non_null(strstr(err.message, "different slots"));
    assert_int_equal(tse_rconn_pending(c), 0);
    /* Never sent: both keys are still there. */
    expect_number(RUN(c, "EXISTS", "{cross-a}"), 1);
    expect_number(RUN(c, "EXISTS", "{cross-b}"), 1);

    assert_int_equal(tse_rconn_append(c, 9, read, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_INVALID);
    assert_int_equal(tse_rconn_pending(c), 0);

    /* Keys of one hash tag share a slot: the same command goes. */
    expect_text(RUN(c, "SET", "{cross-a}:2", "1"), "OK");
    expect_number(RUN(c, "DEL", "{cross-a}", "{cross-a}:2"), 2);
    tse_rconn_destroy(c);
}

static void moved_after_a_slot_migrates_refreshes_the_map(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    const char *key = "moving-key";
    unsigned slot = slot_of(key);
    tse_rconn_counters before;
    int from, to, port;
    char host[256];

    expect_text(RUN(c, "SET", key, "v"), "OK");
    from = tse_test_cluster_slot_master(f->cluster, slot);
    to = other_master(f, from);
    assert_true(tse_rconn_slot_master(c, slot, host, sizeof(host), &port));
    assert_int_equal(port, f->cluster->nodes[from]->port);

    assert_true(tse_test_cluster_migrate_slot(f->cluster, slot, to));
    before = tse_rconn_get_counters(c);
    expect_text(RUN(c, "GET", key), "v");
    assert_int_equal(tse_rconn_get_counters(c).moved, before.moved + 1);
    assert_true(tse_rconn_get_counters(c).refreshes > before.refreshes);
    assert_true(tse_rconn_slot_master(c, slot, host, sizeof(host), &port));
    assert_int_equal(port, f->cluster->nodes[to]->port);

    /* The map knows now: no more redirections. */
    expect_text(RUN(c, "GET", key), "v");
    assert_int_equal(tse_rconn_get_counters(c).moved, before.moved + 1);
    tse_rconn_destroy(c);
}

static void ask_finds_the_keys_of_a_half_migrated_slot(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    unsigned slot = slot_of("{half}");
    const char *mget[] = {"MGET",     "{half}:0", "{half}:1", "{half}:2", "{half}:3", "{half}:4",
                          "{half}:5", "{half}:6", "{half}:7", "{half}:8", "{half}:9"};
    tse_rconn_counters before;
    redisReply *r = NULL;
    char key[32], value[32], host[256];
    int from, to, port;
    tse_error err;

    for (int k = 0; k < 10; k++) {
        snprintf(key, sizeof(key), "{half}:%d", k);
        snprintf(value, sizeof(value), "v%d", k);
        expect_text(RUN(c, "SET", key, value), "OK");
    }
    from = tse_test_cluster_slot_master(f->cluster, slot);
    to = other_master(f, from);
    assert_true(tse_test_cluster_slot_begin(f->cluster, slot, to));
    assert_int_equal(tse_test_cluster_slot_move_keys(f->cluster, slot, to, 5), 5);

    /* Every key, moved or not, in one pipeline. */
    before = tse_rconn_get_counters(c);
    for (int k = 0; k < 10; k++) {
        const char *argv[2] = {"GET", key};

        snprintf(key, sizeof(key), "{half}:%d", k);
        assert_int_equal(tse_rconn_append(c, 2, argv, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_OK);
    }
    for (int k = 0; k < 10; k++) {
        assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        snprintf(value, sizeof(value), "v%d", k);
        expect_text(r, value);
    }
    assert_int_equal(tse_rconn_get_counters(c).ask, before.ask + 5);
    assert_int_equal(tse_rconn_get_counters(c).moved, before.moved);
    /* ASK leaves the map alone. */
    assert_true(tse_rconn_slot_master(c, slot, host, sizeof(host), &port));
    assert_int_equal(port, f->cluster->nodes[from]->port);

    /* A new key goes to the importing node. */
    expect_text(RUN(c, "SET", "{half}:new", "n"), "OK");
    assert_int_equal(tse_rconn_get_counters(c).ask, before.ask + 6);

    /* Keys on both sides cannot be read at once until the slot has moved:
     * retried until the deadline, then Redis's TRYAGAIN is the answer. */
    assert_int_equal(tse_rconn_command(c, 11, mget, NULL, TSE_RCONN_SLOT_OF_KEYS,
                                       tse_clock_ms() + 200, &r, &err),
                     TSE_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "TRYAGAIN"));
    freeReplyObject(r);

    assert_int_equal(tse_test_cluster_slot_move_keys(f->cluster, slot, to, 100), 5);
    assert_true(tse_test_cluster_slot_finish(f->cluster, slot, to));
    r = RUN(c, "MGET", "{half}:0", "{half}:9", "{half}:new");
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "v0");
    assert_string_equal(r->element[1]->str, "v9");
    assert_string_equal(r->element[2]->str, "n");
    freeReplyObject(r);
    tse_rconn_destroy(c);
}

/* Finishes the migration of a half-moved slot some time after the caller's
 * short deadline passed (the thread of the test below). */
typedef struct late_finish {
    fixture *f;
    unsigned slot;
    int to;
    bool ok;
} late_finish;

static void *finish_late(void *arg)
{
    late_finish *lf = arg;

    usleep(400 * 1000); /* the caller's deadline is 100 ms */
    lf->ok = tse_test_cluster_slot_move_keys(lf->f->cluster, lf->slot, lf->to, 100) > 0 &&
             tse_test_cluster_slot_finish(lf->f->cluster, lf->slot, lf->to);
    return NULL;
}

/*
 * A slot held half migrated (MIGRATING on one master, IMPORTING on the
 * other, keys on both sides) for longer than the deadline of a command over
 * its keys: the nodes answer TRYAGAIN throughout, so the slot is served,
 * not dead, and with tse_rconn_set_moving_ms the command goes on past its
 * deadline and runs once the migration ends (a writer's 100 ms per round
 * used to refuse publishes during a resharding under load).
 */
static void a_migrating_slot_is_retried_past_the_deadline_while_its_nodes_answer(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    unsigned slot = slot_of("{slow}");
    const char *mget[] = {"MGET", "{slow}:0", "{slow}:1", "{slow}:2", "{slow}:3"};
    late_finish lf = {.f = f, .slot = slot};
    redisReply *r = NULL;
    char key[32], value[32];
    pthread_t thread;
    tse_error err;
    int from;

    tse_rconn_set_moving_ms(c, MOVING_MS);
    for (int k = 0; k < 4; k++) {
        snprintf(key, sizeof(key), "{slow}:%d", k);
        snprintf(value, sizeof(value), "v%d", k);
        expect_text(RUN(c, "SET", key, value), "OK");
    }
    from = tse_test_cluster_slot_master(f->cluster, slot);
    lf.to = other_master(f, from);
    assert_true(tse_test_cluster_slot_begin(f->cluster, slot, lf.to));
    assert_int_equal(tse_test_cluster_slot_move_keys(f->cluster, slot, lf.to, 2), 2);

    assert_int_equal(pthread_create(&thread, NULL, finish_late, &lf), 0);
    assert_int_equal(
        tse_rconn_command(c, 5, mget, NULL, TSE_RCONN_SLOT_OF_KEYS, tse_clock_ms() + 100, &r, &err),
        TSE_OK);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_true(lf.ok);
    if (r->type != REDIS_REPLY_ARRAY)
        fail_msg("MGET over a half-migrated slot: %s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
    assert_int_equal(r->elements, 4);
    for (int k = 0; k < 4; k++) {
        snprintf(value, sizeof(value), "v%d", k);
        assert_string_equal(r->element[k]->str, value);
    }
    freeReplyObject(r);
    tse_rconn_destroy(c);
}

static void a_killed_master_is_unavailable_until_its_replica_takes_over(void **state)
{
    fixture *f = *state;
    tse_rconn *c = conn_new(f);
    const char *key = "failover-key", *get[] = {"GET", key}, *wait[] = {"WAIT", "1", "5000"};
    unsigned slot = slot_of(key);
    char other[32], want[32];
    int master, replica;
    redisReply *r = NULL;
    int64_t t0;
    tse_error err;

    master = tse_test_cluster_slot_master(f->cluster, slot);
    replica = tse_test_cluster_replica_of(f->cluster, master);
    assert_true(replica >= 0);
    /* A key of another master, served all along. */
    for (int k = 0;; k++) {
        snprintf(other, sizeof(other), "other:%d", k);
        if (tse_test_cluster_slot_master(f->cluster, slot_of(other)) != master)
            break;
    }
    expect_text(RUN(c, "SET", key, "v"), "OK");
    expect_text(RUN(c, "SET", other, "o"), "OK");
    /* The replica has the key before its master dies. */
    assert_int_equal(
        tse_rconn_command(c, 3, wait, NULL, (int)slot, tse_clock_ms() + DEADLINE_MS, &r, &err),
        TSE_OK);
    expect_number(r, 1);

    /* The gap is held open: the replica may not take over yet. */
    assert_true(
        tse_test_cluster_config_set(f->cluster, replica, "cluster-replica-no-failover", "yes"));
    tse_test_cluster_kill(f->cluster, master);

    /* A dead master does not answer: no grace for a moving slot (the
     * writer sets one), it fails at its deadline, not MOVING_MS later. */
    tse_rconn_set_moving_ms(c, MOVING_MS);
    tse_error_clear(&err);
    t0 = tse_clock_ms();
    assert_int_equal(
        tse_rconn_command(c, 2, get, NULL, TSE_RCONN_SLOT_OF_KEYS, tse_clock_ms() + 500, &r, &err),
        TSE_UNAVAILABLE);
    assert_true(tse_clock_ms() - t0 < MOVING_MS);
    assert_null(r);
    snprintf(want, sizeof(want), "slot %u", slot);
    if (strstr(err.message, want) == NULL)
        fail_msg("\"%s\" does not name %s", err.message, want);
    /* The other masters go on serving theirs. */
    expect_text(RUN(c, "GET", other), "o");

    assert_true(
        tse_test_cluster_config_set(f->cluster, replica, "cluster-replica-no-failover", "no"));
    assert_int_equal(tse_test_cluster_wait_slot_served(f->cluster, slot, 30000), replica);

    /* The same connection, without a restart. */
    expect_text(RUN(c, "GET", key), "v");
    expect_text(RUN(c, "SET", key, "after"), "OK");
    assert_true(tse_rconn_get_counters(c).node_drops >= 1);
    tse_rconn_destroy(c);
}

/*
 * A live resharding by Redis's own tool (`redis-cli --cluster reshard`,
 * cluster.h), slot by slot with MIGRATE and SETSLOT, while the connection
 * writes to keys in the slots it moves: every write is answered (by the
 * old owner, by the new one after ASK or MOVED) and none is lost.
 */
static void a_live_reshard_by_redis_cli_loses_no_write(void **state)
{
    fixture *f = *state;
    static unsigned slots[100];
    static bool moving[TSE_KEY_SLOTS];
    char keys[4][32];
    long long count[4] = {0};
    int from = tse_test_cluster_slot_master(f->cluster, 0), to, found = 0;
    tse_test_reshard *r;
    tse_rconn *c = conn_new(f);
    tse_rconn_counters before;

    to = tse_test_cluster_other_master(f->cluster, from);
    assert_true(from >= 0 && to >= 0);
    assert_int_equal(tse_test_cluster_lowest_slots(f->cluster, from, 100, slots), 100);
    for (int i = 0; i < 100; i++)
        moving[slots[i]] = true;
    for (int i = 0; i < 100000 && found < 4; i++) {
        snprintf(keys[found], sizeof(keys[found]), "reshard:%d", i);
        found += moving[slot_of(keys[found])];
    }
    assert_int_equal(found, 4);
    for (int k = 0; k < 4; k++)
        expect_text(RUN(c, "SET", keys[k], "0"), "OK");
    before = tse_rconn_get_counters(c);
    r = tse_test_cluster_reshard_start(f->cluster, from, to, 100);
    assert_non_null(r);
    /* While the tool runs, and one round after. */
    for (bool more = true; more;) {
        more = tse_test_cluster_reshard_running(r);
        for (int k = 0; k < 4; k++)
            expect_number(RUN(c, "INCR", keys[k]), ++count[k]);
    }
    assert_true(tse_test_cluster_reshard_finish(r, 60000));
    for (int k = 0; k < 4; k++) {
        char want[32];
        snprintf(want, sizeof(want), "%lld", ++count[k]);
        expect_number(RUN(c, "INCR", keys[k]), count[k]);
        assert_int_equal(tse_test_cluster_slot_master(f->cluster, slot_of(keys[k])), to);
        expect_text(RUN(c, "GET", keys[k]), want);
    }
    print_message("%lld writes per key during the resharding; %llu MOVED, %llu ASK\n", count[0],
                  (unsigned long long)(tse_rconn_get_counters(c).moved - before.moved),
                  (unsigned long long)(tse_rconn_get_counters(c).ask - before.ask));
    /* The connection learnt of the move (it did not just talk to the old
     * owner). */
    assert_true(tse_rconn_get_counters(c).moved + tse_rconn_get_counters(c).ask >
                before.moved + before.ask);
    tse_rconn_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_command_goes_to_the_master_of_its_slot),
        cmocka_unit_test(scripts_are_loaded_on_every_master),
        cmocka_unit_test(a_pipeline_over_three_masters_answers_in_order),
        cmocka_unit_test(a_formatted_command_goes_to_the_slot_it_names),
        cmocka_unit_test(a_borrowed_command_is_sent_from_the_callers_bytes),
        cmocka_unit_test(slots_of_one_master_have_one_owner),
        cmocka_unit_test(a_round_of_several_megabytes_is_sent_whole),
        cmocka_unit_test(a_command_whose_keys_span_slots_is_refused_and_not_sent),
        cmocka_unit_test(moved_after_a_slot_migrates_refreshes_the_map),
        cmocka_unit_test(ask_finds_the_keys_of_a_half_migrated_slot),
        cmocka_unit_test(a_migrating_slot_is_retried_past_the_deadline_while_its_nodes_answer),
        cmocka_unit_test(a_live_reshard_by_redis_cli_loses_no_write),
        cmocka_unit_test(a_killed_master_is_unavailable_until_its_replica_takes_over),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
