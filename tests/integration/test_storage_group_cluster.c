/*
 * test_storage_group_cluster.c - the consumer-group operations of the
 * delivery engine (storage/group_ops.h) on a storage connection (conn.h)
 * to a real 3-master Redis Cluster on loopback: a read over the streams of
 * three event types whose slots live on three different masters (one
 * XREADGROUP could not cross them: the connection refuses a cross-slot
 * command) returns every entry once, in order per stream, with each
 * stream's count; acks sent ahead of such a read apply on every master;
 * the pending list, claims and acks work per stream; an
 * error reply of one slot leaves what the others read; a master killed
 * (no replica: its slots stay without one) is one slot's failure, not a
 * lost connection, and only a cluster of which no node answers is lost.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "cluster.h"
#include "common/clock.h"
#include "harness.h"
#include "storage/conn.h"
#include "storage/group_ops.h"
#include "storage/keys.h"
#include "storage/rconn.h"
#include "storage/redis_url.h"

#define DEADLINE_MS 10000
#define TYPES       3
#define PRIOS       2
#define STREAMS     (TYPES * PRIOS)
#define PER_STREAM  5
#define GROUP       "sub.cluster"

typedef struct fixture {
    tse_test_redis_cluster *cluster;
    tse_redis_target target;
    tse_rconn *rc; /* setup writes and the slot map */
    tse_conn *conn;
    char keys[STREAMS][128]; /* type t, prio p at p * TYPES + t */
    const char *key[STREAMS];
} fixture;

/* The master serving key's slot as "host:port" into out. */
static void master_of(const fixture *f, const char *key, char *out, size_t len)
{
    char host[256];
    int port = 0;

    assert_true(
        tse_rconn_slot_master(f->rc, tse_key_slot(key, strlen(key)), host, sizeof(host), &port));
    snprintf(out, len, "%s:%d", host, port);
}

/* TYPES event types whose streams live on TYPES different masters. */
static void pick_types(fixture *f, char types[TYPES][32])
{
    char masters[TYPES][300];
    int found = 0;

    for (int i = 0; i < 1000 && found < TYPES; i++) {
        char key[128], m[300];
        bool taken = false;
        snprintf(types[found], sizeof(types[found]), "lab.type%d", i);
        tse_key_stream(types[found], 1, key, sizeof(key));
        master_of(f, key, m, sizeof(m));
        for (int j = 0; j < found; j++)
            taken |= strcmp(masters[j], m) == 0;
        if (!taken)
            snprintf(masters[found++], sizeof(masters[0]), "%s", m);
    }
    assert_int_equal(found, TYPES);
}

static void run(fixture *f, const char *const *argv, int argc)
{
    redisReply *r = NULL;
    tse_error err;

    tse_error_clear(&err);
    if (tse_rconn_command(f->rc, argc, argv, NULL, TSE_RCONN_SLOT_OF_KEYS,
                          tse_clock_ms() + DEADLINE_MS, &r, &err) != TSE_OK)
        fail_msg("%s: %s", argv[0], err.message);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", argv[0], r->str);
    freeReplyObject(r);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char url[128], why[256], types[TYPES][32];
    tse_error err;

    assert_non_null(f);
    *state = f;
    f->cluster = tse_test_redis_cluster_start(3);
    assert_non_null(f->cluster);
    snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d", f->cluster->nodes[0]->port);
    assert_int_equal(tse_redis_url_parse(url, &f->target, &err), TSE_OK);
    assert_int_equal(tse_rconn_create(&f->target, 2000, &f->rc, &err), TSE_OK);
    assert_int_equal(tse_rconn_connect(f->rc, tse_clock_ms() + DEADLINE_MS, &err), TSE_OK);
    pick_types(f, types);
    for (int p = 0; p < PRIOS; p++)
        for (int t = 0; t < TYPES; t++) {
            char *k = f->keys[p * TYPES + t];
            tse_key_stream(types[t], p == 0 ? 1 : 5, k, sizeof(f->keys[0]));
            f->key[p * TYPES + t] = k;
        }
    f->conn = tse_conn_open(&f->target, 2000, NULL, NULL, why, sizeof(why));
    if (f->conn == NULL)
        fail_msg("tse_conn_open: %s", why);
    for (int i = 0; i < STREAMS; i++) {
        assert_int_equal(tse_group_create(f->conn, f->key[i], GROUP, "0"), TSE_OK);
        for (int j = 0; j < PER_STREAM; j++) {
            char body[160];
            snprintf(body, sizeof(body), "%s#%d", f->key[i], j);
            run(f, (const char *const[]){"XADD", f->key[i], "*", "event", body}, 5);
        }
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    if (f != NULL) {
        tse_conn_close(f->conn);
        tse_rconn_destroy(f->rc);
        tse_test_redis_cluster_stop(f->cluster);
    }
    free(f);
    return 0;
}

/* Checks that got holds entries first..first+n-1 of every stream, each once
 * and in order per stream, and that per_stream says n for each. */
static void expect_entries(const fixture *f, const tse_group_entries *got, const size_t *per_stream,
                           int first, int n)
{
    int next[STREAMS];

    assert_int_equal(got->n, (size_t)(STREAMS * n));
    for (int i = 0; i < STREAMS; i++) {
        next[i] = first;
        assert_int_equal(per_stream[i], (size_t)n);
    }
    for (size_t e = 0; e < got->n; e++) {
        const tse_group_entry *g = &got->v[e];
        char want[160];
        assert_true(g->stream < STREAMS);
        snprintf(want, sizeof(want), "%s#%d", f->key[g->stream], next[g->stream]++);
        assert_int_equal(g->envelope_len, strlen(want));
        assert_memory_equal(g->envelope, want, g->envelope_len);
        assert_int_equal(g->attempt, 1);
    }
    for (int i = 0; i < STREAMS; i++)
        assert_int_equal(next[i], first + n);
}

static void streams_span_three_masters(void **state)
{
    fixture *f = *state;
    char m[TYPES][300];

    for (int t = 0; t < TYPES; t++)
        master_of(f, f->key[t], m[t], sizeof(m[t]));
    assert_string_not_equal(m[0], m[1]);
    assert_string_not_equal(m[0], m[2]);
    assert_string_not_equal(m[1], m[2]);
    /* The two priorities of a type share its slot. */
    for (int t = 0; t < TYPES; t++)
        assert_int_equal(tse_key_slot(f->key[t], strlen(f->key[t])),
                         tse_key_slot(f->key[TYPES + t], strlen(f->key[TYPES + t])));
}

static void a_read_over_slots_returns_every_entry_once(void **state)
{
    fixture *f = *state;
    tse_group_entries got = {0};
    size_t per[STREAMS];

    /* COUNT 3 of 5: every stream full, then the 2 left, then nothing. */
    assert_int_equal(tse_group_read(f->conn, GROUP, "c1", f->key, STREAMS, 3, &got, per), TSE_OK);
    expect_entries(f, &got, per, 0, 3);
    tse_group_entries_cleanup(&got);
    assert_int_equal(tse_group_read(f->conn, GROUP, "c1", f->key, STREAMS, 100, &got, per), TSE_OK);
    expect_entries(f, &got, per, 3, PER_STREAM - 3);
    tse_group_entries_cleanup(&got);
    assert_int_equal(tse_group_read(f->conn, GROUP, "c1", f->key, STREAMS, 100, &got, per), TSE_OK);
    expect_entries(f, &got, per, 0, 0);
    tse_group_entries_cleanup(&got);
    assert_false(tse_conn_lost(f->conn));
}

/* The engine's pass on a cluster: the acks of a read's entries (streams on
 * three masters) go ahead of the next read over the slots; Redis applies
 * every one, and the read returns the rest, in order per stream. */
static void acks_ahead_of_a_read_over_slots_apply_on_every_master(void **state)
{
    fixture *f = *state;
    tse_group_entries got = {0}, more = {0};
    const char *keys[STREAMS * 2], *ids[STREAMS * 2];
    size_t per[STREAMS];
    tse_pending_list p = {0};

    /* A group of its own: the other tests' group keeps its pending entries. */
    for (int i = 0; i < STREAMS; i++)
        assert_int_equal(tse_group_create(f->conn, f->key[i], "sub.ackread", "0"), TSE_OK);
    assert_int_equal(tse_group_read(f->conn, "sub.ackread", "c1", f->key, STREAMS, 2, &got, per),
                     TSE_OK);
    expect_entries(f, &got, per, 0, 2);
    for (size_t e = 0; e < got.n; e++) {
        keys[e] = f->key[got.v[e].stream];
        ids[e] = got.v[e].id;
    }
    tse_group_acks acks = {keys, ids, got.n, 0, TSE_INTERNAL};
    assert_int_equal(
        tse_group_ack_read(f->conn, "sub.ackread", &acks, "c1", f->key, STREAMS, 100, &more, per),
        TSE_OK);
    assert_int_equal(acks.st, TSE_OK);
    assert_int_equal(acks.acked, STREAMS * 2);
    expect_entries(f, &more, per, 2, PER_STREAM - 2);
    for (int i = 0; i < STREAMS; i++) {
        assert_int_equal(tse_group_pending(f->conn, f->key[i], "sub.ackread", 0, 100, &p), TSE_OK);
        assert_int_equal(p.n, PER_STREAM - 2);
        tse_pending_list_cleanup(&p);
    }
    assert_false(tse_conn_lost(f->conn));
    tse_group_entries_cleanup(&got);
    tse_group_entries_cleanup(&more);
}

static void pending_claims_and_acks_work_per_stream(void **state)
{
    fixture *f = *state;
    const char *keys[STREAMS * PER_STREAM], *ids[STREAMS * PER_STREAM];
    bool acked[STREAMS * PER_STREAM];
    tse_pending_list p[STREAMS];
    size_t n = 0, half;
    uint32_t runs = 0;

    for (int i = 0; i < STREAMS; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        assert_int_equal(tse_group_pending(f->conn, f->key[i], GROUP, 0, 100, &p[i]), TSE_OK);
        assert_int_equal(p[i].n, PER_STREAM);
    }
    /* Stream 0's entries claimed by another consumer: one more attempt. */
    {
        const char *cids[PER_STREAM];
        long long delivered[PER_STREAM];
        tse_group_entries claimed = {0};
        for (int j = 0; j < PER_STREAM; j++) {
            cids[j] = p[0].v[j].id;
            delivered[j] = p[0].v[j].delivered;
        }
        assert_int_equal(tse_group_claim(f->conn, f->key[0], GROUP, "c2", 0, cids, delivered,
                                         PER_STREAM, &claimed),
                         TSE_OK);
        assert_int_equal(claimed.n, PER_STREAM);
        for (size_t j = 0; j < claimed.n; j++)
            assert_int_equal(claimed.v[j].attempt, 2);
        tse_group_entries_cleanup(&claimed);
    }
    /* Every entry of every stream, in runs of one stream. */
    for (int i = 0; i < STREAMS; i++)
        for (size_t j = 0; j < p[i].n; j++) {
            keys[n] = f->key[i];
            ids[n++] = p[i].v[j].id;
        }
    half = n / 2;
    assert_int_equal(tse_group_ack_each(f->conn, GROUP, keys, ids, half, acked, NULL), TSE_OK);
    for (size_t i = 0; i < half; i++)
        assert_true(acked[i]);
    assert_int_equal(tse_group_ack_runs(f->conn, GROUP, keys, ids, n, &runs), TSE_OK);
    assert_int_equal(runs, n - half);
    for (int i = 0; i < STREAMS; i++) {
        tse_pending_list left = {0};
        assert_int_equal(tse_group_pending(f->conn, f->key[i], GROUP, 0, 100, &left), TSE_OK);
        assert_int_equal(left.n, 0);
        tse_pending_list_cleanup(&left);
        tse_pending_list_cleanup(&p[i]);
    }
    assert_false(tse_conn_lost(f->conn));
}

static void an_error_of_one_slot_leaves_what_the_others_read(void **state)
{
    fixture *f = *state;
    tse_group_entries got = {0};
    size_t per[STREAMS];

    /* Type 1 loses its group on both priorities: its XREADGROUP answers
     * NOGROUP; types 0 and 2 each get one new entry per stream. */
    for (int p = 0; p < PRIOS; p++) {
        assert_int_equal(tse_group_destroy(f->conn, f->key[p * TYPES + 1], GROUP), TSE_OK);
        for (int t = 0; t < TYPES; t += 2)
            run(f, (const char *const[]){"XADD", f->key[p * TYPES + t], "*", "event", "late"}, 5);
    }
    assert_int_equal(tse_group_read(f->conn, GROUP, "c1", f->key, STREAMS, 100, &got, per),
                     TSE_INTERNAL);
    assert_int_equal(got.n, 4);
    for (size_t e = 0; e < got.n; e++)
        assert_true(got.v[e].stream % TYPES != 1);
    for (int i = 0; i < STREAMS; i++)
        assert_int_equal(per[i], i % TYPES == 1 ? 0 : 1);
    tse_group_entries_cleanup(&got);
    assert_false(tse_conn_lost(f->conn));
}

/* Runs last: it kills every master. */
static void a_dead_master_fails_its_slot_and_the_connection_lives(void **state)
{
    fixture *f = *state;
    tse_group_entries got = {0};
    size_t per[STREAMS];
    const char *keys[3], *ids[3];
    bool acked[3], unreached[3], flag = true;
    uint32_t runs = 99;
    uint64_t cleared = 99;
    long long count = 99;
    char why[64];
    tse_pending_list p = {0};
    int dead = tse_test_cluster_key_master(f->cluster, f->key[1]);

    assert_true(dead >= 0);
    /* Types 0 and 2 each get one new entry per stream; type 1's master
     * dies (its group is gone since the test above: no matter, its slot
     * has no master now). */
    for (int pr = 0; pr < PRIOS; pr++)
        for (int t = 0; t < TYPES; t += 2)
            run(f, (const char *const[]){"XADD", f->key[pr * TYPES + t], "*", "event", "late2"}, 5);
    tse_test_cluster_kill(f->cluster, dead);
    assert_int_equal(tse_group_read(f->conn, GROUP, "c1", f->key, STREAMS, 100, &got, per),
                     TSE_UNAVAILABLE);
    assert_int_equal(got.n, 4);
    for (size_t e = 0; e < got.n; e++)
        assert_true(got.v[e].stream % TYPES != 1);
    assert_false(tse_conn_lost(f->conn));
    /* Acks across the three slots: the live ones are acked, the dead one
     * not (UNAVAILABLE: it may have run), in one pipeline and the next. */
    keys[0] = f->key[got.v[0].stream], ids[0] = got.v[0].id;
    keys[1] = f->key[1], ids[1] = "1-1";
    keys[2] = f->key[got.v[3].stream], ids[2] = got.v[3].id;
    assert_int_equal(tse_group_ack_each(f->conn, GROUP, keys, ids, 3, acked, unreached),
                     TSE_UNAVAILABLE);
    assert_true(acked[0] && acked[2]);
    assert_false(acked[1]);
    /* The dead slot's id is told apart from one not pending: not answered. */
    assert_true(unreached[1]);
    assert_false(unreached[0] || unreached[2]);
    /* Every operation of the engine on the dead slot answers UNAVAILABLE
     * (not "not pending", not "done"), the connection living on. */
    assert_int_equal(tse_group_pending_count(f->conn, f->key[1], GROUP, "1-1", &count),
                     TSE_UNAVAILABLE);
    assert_int_equal(tse_group_set_idle(f->conn, f->key[1], GROUP, "c1", "1-1", 0, &flag),
                     TSE_UNAVAILABLE);
    assert_false(flag);
    flag = true;
    assert_int_equal(tse_group_redrive(f->conn, f->key[1], GROUP, "c1", "1-1", 0, &flag),
                     TSE_UNAVAILABLE);
    assert_false(flag);
    assert_int_equal(tse_group_seek(f->conn, f->key[1], GROUP, "0-0", &cleared, why, sizeof(why)),
                     TSE_UNAVAILABLE);
    assert_int_equal(cleared, 0);
    assert_false(tse_conn_lost(f->conn));
    assert_int_equal(tse_group_ack_runs(f->conn, GROUP, keys, ids, 3, &runs), TSE_UNAVAILABLE);
    assert_int_equal(runs, 0); /* acked already */
    assert_false(tse_conn_lost(f->conn));
    /* A command on a live slot after the failures goes as usual. */
    assert_int_equal(tse_group_pending(f->conn, f->key[2], GROUP, 0, 100, &p), TSE_OK);
    tse_pending_list_cleanup(&p);
    tse_group_entries_cleanup(&got);
    /* No node answers: lost. */
    for (int i = 0; i < f->cluster->n; i++)
        if (i != dead)
            tse_test_cluster_kill(f->cluster, i);
    assert_int_equal(tse_group_pending(f->conn, f->key[2], GROUP, 0, 100, &p), TSE_UNAVAILABLE);
    tse_pending_list_cleanup(&p);
    assert_true(tse_conn_lost(f->conn));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streams_span_three_masters),
        cmocka_unit_test(a_read_over_slots_returns_every_entry_once),
        cmocka_unit_test(acks_ahead_of_a_read_over_slots_apply_on_every_master),
        cmocka_unit_test(pending_claims_and_acks_work_per_stream),
        cmocka_unit_test(an_error_of_one_slot_leaves_what_the_others_read),
        cmocka_unit_test(a_dead_master_fails_its_slot_and_the_connection_lives),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
