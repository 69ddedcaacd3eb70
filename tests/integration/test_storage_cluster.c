/*
 * test_storage_cluster.c - the slot map and the MOVED/ASK parser against a
 * real 3-master Redis Cluster on loopback (tests/support/harness.h): the map
 * from CLUSTER SLOTS and CLUSTER SHARDS covers every slot and agrees with
 * Redis on which node serves 1000 keys; a node that does not serve a key
 * answers a MOVED that parses to the one that does; while a slot migrates
 * the old owner answers ASK to the new one, and after it moved, MOVED.
 *
 * Nothing above storage routes through the map yet (issue 13, point 2).
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

#include "harness.h"
#include "storage/cluster_map.h"
#include "storage/keys.h"

#define KEYS 1000

typedef struct fixture {
    tse_test_redis_cluster *cluster;
    redisContext *conn[TSE_TEST_CLUSTER_MAX]; /* by cluster node */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    struct timeval tv = {5, 0};

    assert_non_null(f);
    *state = f;
    f->cluster = tse_test_redis_cluster_start(3);
    assert_non_null(f->cluster);
    for (int i = 0; i < f->cluster->n; i++) {
        f->conn[i] = redisConnectWithTimeout("127.0.0.1", f->cluster->nodes[i]->port, tv);
        assert_true(f->conn[i] != NULL && f->conn[i]->err == 0);
        redisSetTimeout(f->conn[i], tv);
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    if (f == NULL)
        return 0;
    for (int i = 0; i < TSE_TEST_CLUSTER_MAX; i++)
        if (f->conn[i] != NULL)
            redisFree(f->conn[i]);
    tse_test_redis_cluster_stop(f->cluster);
    free(f);
    return 0;
}

/* The cluster node (index into f->conn) listening on port. */
static int node_of_port(const fixture *f, int port)
{
    for (int i = 0; i < f->cluster->n; i++)
        if (f->cluster->nodes[i]->port == port)
            return i;
    fail_msg("no cluster node on port %d", port);
    return -1;
}

static redisReply *command(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static tse_cluster_map *map_from(redisContext *c, const char *which)
{
    redisReply *r = command(c, "CLUSTER %s", which);
    tse_cluster_map *m = NULL;
    tse_error err;
    tse_status st;

    tse_error_clear(&err);
    st = strcmp(which, "SLOTS") == 0 ? tse_cluster_map_from_slots(r, "127.0.0.1", &m, &err)
                                     : tse_cluster_map_from_shards(r, "127.0.0.1", &m, &err);
    if (st != TSE_OK)
        fail_msg("CLUSTER %s: %s", which, err.message);
    freeReplyObject(r);
    return m;
}

static void slots_and_shards_cover_every_slot_alike(void **state)
{
    fixture *f = *state;
    tse_cluster_map *slots = map_from(f->conn[0], "SLOTS");
    tse_cluster_map *shards = map_from(f->conn[1], "SHARDS");

    assert_int_equal(tse_cluster_map_slots_covered(slots), TSE_KEY_SLOTS);
    assert_int_equal(tse_cluster_map_slots_covered(shards), TSE_KEY_SLOTS);
    assert_int_equal(tse_cluster_map_node_count(slots), 3);
    for (unsigned s = 0; s < TSE_KEY_SLOTS; s++) {
        const tse_cluster_node *a =
            tse_cluster_map_node(slots, tse_cluster_map_slot_owner(slots, s));
        const tse_cluster_node *b =
            tse_cluster_map_node(shards, tse_cluster_map_slot_owner(shards, s));
        assert_true(a->master);
        assert_string_equal(a->host, b->host);
        assert_int_equal(a->port, b->port);
    }
    tse_cluster_map_destroy(slots);
    tse_cluster_map_destroy(shards);
}

static void mapped_node_serves_each_key_and_others_say_moved(void **state)
{
    fixture *f = *state;
    tse_cluster_map *m = map_from(f->conn[2], "SLOTS");
    char key[32];

    for (int k = 0; k < KEYS; k++) {
        int len = snprintf(key, sizeof(key), "key:%d", k);
        const tse_cluster_node *n = tse_cluster_map_node_for_key(m, key, (size_t)len);
        int owner = node_of_port(f, n->port);
        int other = (owner + 1) % f->cluster->n;
        tse_cluster_redirect rd;
        redisReply *r;

        r = command(f->conn[owner], "GET %s", key);
        if (r->type == REDIS_REPLY_ERROR)
            fail_msg("GET %s on the mapped node: %s", key, r->str);
        freeReplyObject(r);

        r = command(f->conn[other], "GET %s", key);
        assert_int_equal(r->type, REDIS_REPLY_ERROR);
        assert_int_equal(tse_cluster_redirect_parse(r->str, r->len, "127.0.0.1", &rd),
                         TSE_REDIRECT_MOVED);
        assert_int_equal(rd.slot, tse_key_slot(key, (size_t)len));
        assert_string_equal(rd.host, n->host);
        assert_int_equal(rd.port, n->port);
        freeReplyObject(r);
    }
    tse_cluster_map_destroy(m);
}

/* The node id of cluster node i. */
static void node_id(fixture *f, int i, char *out, size_t len)
{
    redisReply *r = command(f->conn[i], "CLUSTER MYID");

    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(out, len, "%s", r->str);
    freeReplyObject(r);
}

static void expect_ok(redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s", r->str);
    freeReplyObject(r);
}

static void redirect_of_get(fixture *f, int node, const char *key, tse_cluster_redirect *rd,
                            tse_cluster_redirect_kind want)
{
    redisReply *r = command(f->conn[node], "GET %s", key);

    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    if (tse_cluster_redirect_parse(r->str, r->len, "127.0.0.1", rd) != want)
        fail_msg("GET %s: \"%s\" is not redirect kind %d", key, r->str, (int)want);
    freeReplyObject(r);
}

static void migrated_slot_answers_ask_then_moved_to_new_owner(void **state)
{
    fixture *f = *state;
    tse_cluster_map *m = map_from(f->conn[0], "SLOTS");
    const char *key = "migrating-key";
    unsigned slot = tse_key_slot(key, strlen(key));
    int from = node_of_port(f, tse_cluster_map_node_for_key(m, key, strlen(key))->port);
    int to = (from + 1) % f->cluster->n;
    char from_id[64], to_id[64];
    tse_cluster_redirect rd;
    tse_error err;

    node_id(f, from, from_id, sizeof(from_id));
    node_id(f, to, to_id, sizeof(to_id));
    /* The slot holds no key, so no MIGRATE is needed between the steps. */
    expect_ok(command(f->conn[to], "CLUSTER SETSLOT %u IMPORTING %s", slot, from_id));
    expect_ok(command(f->conn[from], "CLUSTER SETSLOT %u MIGRATING %s", slot, to_id));

    /* a key the old owner does not hold: ASK the new one, map unchanged */
    redirect_of_get(f, from, key, &rd, TSE_REDIRECT_ASK);
    assert_int_equal(rd.slot, slot);
    assert_int_equal(rd.port, f->cluster->nodes[to]->port);
    assert_string_equal(rd.host, "127.0.0.1");

    for (int i = 0; i < f->cluster->n; i++)
        expect_ok(command(f->conn[i], "CLUSTER SETSLOT %u NODE %s", slot, to_id));

    /* the old owner now says MOVED to the new one */
    redirect_of_get(f, from, key, &rd, TSE_REDIRECT_MOVED);
    assert_int_equal(rd.slot, slot);
    assert_int_equal(rd.port, f->cluster->nodes[to]->port);
    assert_int_equal(tse_cluster_map_set_slot(m, rd.slot, rd.host, rd.port, &err), TSE_OK);
    assert_int_equal(tse_cluster_map_node_for_key(m, key, strlen(key))->port,
                     f->cluster->nodes[to]->port);
    tse_cluster_map_destroy(m);

    /* a fresh map agrees, and the new owner serves the key */
    m = map_from(f->conn[to], "SLOTS");
    assert_int_equal(tse_cluster_map_slots_covered(m), TSE_KEY_SLOTS);
    assert_int_equal(tse_cluster_map_node_for_key(m, key, strlen(key))->port,
                     f->cluster->nodes[to]->port);
    expect_ok(command(f->conn[to], "SET %s v", key));
    tse_cluster_map_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_and_shards_cover_every_slot_alike),
        cmocka_unit_test(mapped_node_serves_each_key_and_others_say_moved),
        cmocka_unit_test(migrated_slot_answers_ask_then_moved_to_new_owner),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
