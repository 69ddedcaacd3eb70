/*
 * test_storage_cluster_map.c - the slot map from CLUSTER SLOTS and CLUSTER
 * SHARDS replies (fed as RESP bytes through hiredis's reader, as they come
 * off the wire), key routing by slot, MOVED updates, and the MOVED/ASK
 * parser on every address form Redis prints and on broken ones.
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

#include "../support/resp_reply.h"
#include "storage/cluster_map.h"
#include "storage/keys.h"

/* A node of a SLOTS entry as RESP: [host, port, id]. */
#define NODE(host, port) "*3\r\n$" host "\r\n:" port "\r\n$2\r\nid\r\n"

/* Three masters over all slots, one with a replica. */
/* clang-format off */
static const char three_masters[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n" NODE("9\r\n127.0.0.1", "7000") NODE("9\r\n127.0.0.1", "7003")
    "*3\r\n:5461\r\n:10922\r\n" NODE("9\r\n127.0.0.1", "7001")
    "*3\r\n:10923\r\n:16383\r\n" NODE("9\r\n127.0.0.1", "7002");
/* clang-format on */

static tse_cluster_map *map_of(const char *resp, size_t len, const char *conn_host)
{
    redisReply *r = read_reply_n(resp, len);
    tse_cluster_map *m = NULL;
    tse_error err;

    tse_error_clear(&err);
    assert_int_equal(tse_cluster_map_from_slots(r, conn_host, &m, &err), TSE_OK);
    freeReplyObject(r);
    return m;
}

static void slots_reply_covers_every_slot(void **state)
{
    tse_cluster_map *m = map_of(three_masters, sizeof(three_masters) - 1, "h");
    const tse_cluster_node *n;

    assert_int_equal(tse_cluster_map_slots_covered(m), TSE_KEY_SLOTS);
    assert_int_equal(tse_cluster_map_node_count(m), 4);
    assert_int_equal(tse_cluster_map_slot_owner(m, 0), 0);
    assert_int_equal(tse_cluster_map_slot_owner(m, 5460), 0);
    assert_int_equal(tse_cluster_map_slot_owner(m, 5461), 2);
    assert_int_equal(tse_cluster_map_slot_owner(m, 16383), 3);
    assert_int_equal(tse_cluster_map_slot_owner(m, 16384), TSE_CLUSTER_NO_NODE);
    n = tse_cluster_map_node(m, 1);
    assert_int_equal(n->port, 7003);
    assert_false(n->master);
    assert_null(tse_cluster_map_node(m, 4));
    /* the replicas each master's entry lists (the WAIT cap) */
    assert_int_equal(tse_cluster_map_node(m, 0)->replicas, 1);
    assert_int_equal(tse_cluster_map_node(m, 2)->replicas, 0);
    assert_int_equal(tse_cluster_map_node(m, 3)->replicas, 0);
    tse_cluster_map_destroy(m);
}

static void keys_route_by_slot_and_hash_tag(void **state)
{
    tse_cluster_map *m = map_of(three_masters, sizeof(three_masters) - 1, "h");
    const tse_cluster_node *n;

    /* "foo" is slot 12182 (Redis's CLUSTER KEYSLOT), on the third master */
    n = tse_cluster_map_node_for_key(m, "foo", 3);
    assert_non_null(n);
    assert_int_equal(n->port, 7002);
    assert_true(n->master);
    /* "{foo}.a" hashes "foo" only */
    assert_ptr_equal(tse_cluster_map_node_for_key(m, "{foo}.a", 7), n);
    /* "bar" is slot 5061 (CLUSTER KEYSLOT), on the first master */
    n = tse_cluster_map_node_for_key(m, "bar", 3);
    assert_int_equal(n->port, 7000);
    tse_cluster_map_destroy(m);
}

static void empty_and_nil_hosts_are_the_connection_host(void **state)
{
    static const char resp[] = "*2\r\n"
                               "*3\r\n:0\r\n:99\r\n*2\r\n$0\r\n\r\n:7000\r\n"
                               "*3\r\n:100\r\n:199\r\n*2\r\n$-1\r\n:7001\r\n";
    tse_cluster_map *m = map_of(resp, sizeof(resp) - 1, "10.1.2.3");

    assert_int_equal(tse_cluster_map_slots_covered(m), 200);
    assert_string_equal(tse_cluster_map_node(m, 0)->host, "10.1.2.3");
    assert_string_equal(tse_cluster_map_node(m, 1)->host, "10.1.2.3");
    assert_int_equal(tse_cluster_map_node(m, 1)->port, 7001);
    tse_cluster_map_destroy(m);
}

static void unknown_endpoint_leaves_its_slots_unowned(void **state)
{
    static const char resp[] =
        "*2\r\n"
        "*3\r\n:0\r\n:99\r\n*2\r\n$1\r\n?\r\n:7000\r\n"
        "*4\r\n:100\r\n:199\r\n" NODE("1\r\nb", "7001") "*2\r\n$1\r\n?\r\n:7002\r\n";
    tse_cluster_map *m = map_of(resp, sizeof(resp) - 1, "h");

    assert_int_equal(tse_cluster_map_slots_covered(m), 100);
    assert_int_equal(tse_cluster_map_slot_owner(m, 0), TSE_CLUSTER_NO_NODE);
    assert_int_equal(tse_cluster_map_node_count(m), 1);
    tse_cluster_map_destroy(m);
}

static void assert_slots_rejected(const char *resp, size_t len)
{
    redisReply *r = read_reply_n(resp, len);
    tse_cluster_map *m = (tse_cluster_map *)(uintptr_t)0x1;
    tse_error err;

    tse_error_clear(&err);
    assert_int_equal(tse_cluster_map_from_slots(r, "h", &m, &err), TSE_INVALID);
    assert_string_equal(err.field, "CLUSTER SLOTS");
    assert_true(m == (tse_cluster_map *)(uintptr_t)0x1); /* out untouched */
    freeReplyObject(r);
}

#define REJECTED(s) assert_slots_rejected(s, sizeof(s) - 1)

static void malformed_slots_replies_are_invalid(void **state)
{
    REJECTED("+OK\r\n");
    REJECTED("-ERR This instance has cluster support disabled\r\n");
    REJECTED("*1\r\n:5\r\n");
    REJECTED("*1\r\n*2\r\n:0\r\n:1\r\n");
    REJECTED("*1\r\n*3\r\n:5\r\n:4\r\n" NODE("1\r\na", "1"));          /* start > end */
    REJECTED("*1\r\n*3\r\n:0\r\n:16384\r\n" NODE("1\r\na", "1"));      /* slot range */
    REJECTED("*1\r\n*3\r\n:-1\r\n:1\r\n" NODE("1\r\na", "1"));         /* negative */
    REJECTED("*1\r\n*3\r\n$1\r\n0\r\n:1\r\n" NODE("1\r\na", "1"));     /* string slot */
    REJECTED("*1\r\n*3\r\n:0\r\n:1\r\n" NODE("1\r\na", "0"));          /* port 0 */
    REJECTED("*1\r\n*3\r\n:0\r\n:1\r\n" NODE("1\r\na", "65536"));      /* port */
    REJECTED("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n");            /* int host */
    REJECTED("*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\na\r\n");             /* no port */
    REJECTED("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:1\r\n");    /* NUL */
    REJECTED("*1\r\n*4\r\n:0\r\n:1\r\n" NODE("1\r\na", "1") ":7\r\n"); /* replica */
}

static void overlong_host_is_invalid(void **state)
{
    char resp[1024], host[300];
    int n;

    memset(host, 'x', 299);
    host[299] = '\0';
    n = snprintf(resp, sizeof(resp), "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$299\r\n%s\r\n:1\r\n", host);
    assert_slots_rejected(resp, (size_t)n);
}

/* RESP2 CLUSTER SHARDS: two shards, maps as flat arrays. */
#define SNODE(ip, endpoint, port, role)                                                            \
    "*10\r\n$2\r\nid\r\n$2\r\nxx\r\n$4\r\nport\r\n:" port "\r\n$2\r\nip\r\n$" ip                   \
    "\r\n$8\r\nendpoint\r\n$" endpoint "\r\n$4\r\nrole\r\n$" role "\r\n"

static void shards_reply_maps_masters(void **state)
{
    static const char resp[] =
        "*2\r\n"
        "*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:8000\r\n:9000\r\n:9001\r\n"
        "$5\r\nnodes\r\n*2\r\n" SNODE("1\r\nr", "1\r\nr", "7100", "7\r\nreplica") SNODE(
            "9\r\n127.0.0.1", "9\r\n127.0.0.1", "7000",
            "6\r\nmaster") "*4\r\n$5\r\nnodes\r\n*1\r\n" SNODE("9\r\n127.0.0.1", "0\r\n", "7001",
                                                               "6\r\nmaster") "$5\r\nslots\r\n*"
                                                                              "2\r\n:8001\r\n:"
                                                                              "8999\r\n";
    redisReply *r = read_reply(resp);
    tse_cluster_map *m = NULL;
    tse_error err;
    const tse_cluster_node *n;

    tse_error_clear(&err);
    assert_int_equal(tse_cluster_map_from_shards(r, "h", &m, &err), TSE_OK);
    assert_int_equal(tse_cluster_map_slots_covered(m), 9002);
    n = tse_cluster_map_node(m, tse_cluster_map_slot_owner(m, 9001));
    assert_int_equal(n->port, 7000);
    assert_true(n->master);
    assert_int_equal(n->replicas, 1); /* its shard's other node */
    /* an empty endpoint falls back to the ip */
    n = tse_cluster_map_node(m, tse_cluster_map_slot_owner(m, 8500));
    assert_string_equal(n->host, "127.0.0.1");
    assert_int_equal(n->port, 7001);
    assert_int_equal(n->replicas, 0);
    assert_false(tse_cluster_map_node(m, 0)->master);
    tse_cluster_map_destroy(m);
    freeReplyObject(r);
}

static void malformed_shards_replies_are_invalid(void **state)
{
    static const char *bad[] = {
        ":1\r\n",
        "*1\r\n:1\r\n",
        "*1\r\n*2\r\n$5\r\nslots\r\n*1\r\n:0\r\n",
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16384\r\n$5\r\nnodes\r\n*0\r\n",
        "*1\r\n*4\r\n$5\r\nslots\r\n*1\r\n:0\r\n$5\r\nnodes\r\n*0\r\n",
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
        "*4\r\n$4\r\nport\r\n$1\r\n1\r\n$2\r\nip\r\n$1\r\na\r\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = read_reply_n(bad[i], strlen(bad[i]));
        tse_cluster_map *m = NULL;
        tse_error err;

        tse_error_clear(&err);
        assert_int_equal(tse_cluster_map_from_shards(r, "h", &m, &err), TSE_INVALID);
        assert_string_equal(err.field, "CLUSTER SHARDS");
        assert_null(m);
        freeReplyObject(r);
    }
}

static void set_slot_moves_one_slot(void **state)
{
    tse_cluster_map *m = map_of(three_masters, sizeof(three_masters) - 1, "h");
    tse_error err;

    assert_int_equal(tse_cluster_map_set_slot(m, 0, "127.0.0.1", 7002, &err), TSE_OK);
    assert_int_equal(tse_cluster_map_slot_owner(m, 0), 3);
    assert_int_equal(tse_cluster_map_slot_owner(m, 1), 0);
    assert_int_equal(tse_cluster_map_set_slot(m, 1, "new", 7009, &err), TSE_OK);
    assert_int_equal(tse_cluster_map_node_count(m), 5);
    assert_true(tse_cluster_map_node(m, 4)->master);
    assert_int_equal(tse_cluster_map_set_slot(m, 16384, "new", 7009, &err), TSE_INVALID);
    assert_int_equal(tse_cluster_map_set_slot(m, 2, "new", 0, &err), TSE_INVALID);
    assert_int_equal(tse_cluster_map_slot_owner(m, 2), 0);
    assert_int_equal(tse_cluster_map_slots_covered(m), TSE_KEY_SLOTS);
    tse_cluster_map_destroy(m);
    tse_cluster_map_destroy(NULL);
}

static tse_cluster_redirect parse(const char *text, tse_cluster_redirect_kind want)
{
    tse_cluster_redirect r;

    memset(&r, 0x5a, sizeof(r));
    if (tse_cluster_redirect_parse(text, strlen(text), "conn", &r) != want)
        fail_msg("\"%s\" did not parse as %d", text, (int)want);
    assert_int_equal(r.kind, want);
    return r;
}

static void moved_and_ask_are_parsed(void **state)
{
    tse_cluster_redirect r = parse("MOVED 3999 127.0.0.1:6381", TSE_REDIRECT_MOVED);

    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    r = parse("-ASK 16383 redis-2.example:7000\r\n", TSE_REDIRECT_ASK);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.host, "redis-2.example");
    assert_int_equal(r.port, 7000);
    r = parse("MOVED 0 ::1:7000", TSE_REDIRECT_MOVED);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7000);
    r = parse("MOVED 1 [fe80::1]:7001", TSE_REDIRECT_MOVED);
    assert_string_equal(r.host, "fe80::1");
    assert_int_equal(r.port, 7001);
    /* an empty host is the connection's (unknown preferred endpoint) */
    r = parse("MOVED 2 :7002", TSE_REDIRECT_MOVED);
    assert_string_equal(r.host, "conn");
    assert_int_equal(r.port, 7002);
}

static void bad_redirects_are_none(void **state)
{
    static const char *bad[] = {
        "",
        "-",
        "ERR unknown command",
        "MOVED",
        "MOVED ",
        "MOVED 1",
        "MOVED 1 ",
        "MOVED 1 h",
        "MOVED 1 h:",
        "MOVED 1 h:0",
        "MOVED 1 h:65536",
        "MOVED 1 h:123456",
        "MOVED 1 h:12x",
        "MOVED 16384 h:1",
        "MOVED -1 h:1",
        "MOVED x h:1",
        "MOVED  1 h:1",
        "MOVED 1 ?:1",
        "MOVED 1 a b:1",
        "moved 1 h:1",
        "ASKING 1 h:1",
        "MOVED 99999999999999999999 h:1",
    };
    tse_cluster_redirect r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse(bad[i], TSE_REDIRECT_NONE);
    assert_int_equal(tse_cluster_redirect_parse(NULL, 0, "c", &r), TSE_REDIRECT_NONE);
    /* an empty host with no connection host to stand for it */
    assert_int_equal(tse_cluster_redirect_parse("MOVED 1 :7", 10, NULL, &r), TSE_REDIRECT_NONE);
    /* a NUL inside the host */
    assert_int_equal(tse_cluster_redirect_parse("MOVED 1 a\0b:7", 13, "c", &r), TSE_REDIRECT_NONE);
}

static void overlong_redirect_host_is_none(void **state)
{
    char text[600];

    memset(text, 'h', sizeof(text));
    memcpy(text, "MOVED 1 ", 8);
    memcpy(text + sizeof(text) - 5, ":7000", 5);
    tse_cluster_redirect r;
    assert_int_equal(tse_cluster_redirect_parse(text, sizeof(text), "c", &r), TSE_REDIRECT_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_reply_covers_every_slot),
        cmocka_unit_test(keys_route_by_slot_and_hash_tag),
        cmocka_unit_test(empty_and_nil_hosts_are_the_connection_host),
        cmocka_unit_test(unknown_endpoint_leaves_its_slots_unowned),
        cmocka_unit_test(malformed_slots_replies_are_invalid),
        cmocka_unit_test(overlong_host_is_invalid),
        cmocka_unit_test(shards_reply_maps_masters),
        cmocka_unit_test(malformed_shards_replies_are_invalid),
        cmocka_unit_test(set_slot_moves_one_slot),
        cmocka_unit_test(moved_and_ask_are_parsed),
        cmocka_unit_test(bad_redirects_are_none),
        cmocka_unit_test(overlong_redirect_host_is_none),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
