/*
 * test_storage_rconn.c - what the Redis connection (src/storage/rconn.c)
 * decides without a server: how a round's commands are grouped per node
 * with each node's order kept (so replies read back per node land on the
 * right command), and the refusals at append time (keys across slots, an
 * unknown command, a bad slot, an empty formatted command), which leave the
 * pipeline as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "storage/rconn.h"
#include "storage/rconn_internal.h"
#include "storage/redis_url.h"

static void plan_groups_by_node_keeping_each_nodes_order(void **state)
{
    const int node_of[] = {2, 0, 1, 0, 2, 2, 1, 0};
    size_t order[8], start[4];

    (void)state;
    assert_int_equal(tse_rconn_plan(node_of, 8, 3, order, start), 8);
    assert_int_equal(start[0], 0);
    assert_int_equal(start[1], 3);
    assert_int_equal(start[2], 5);
    assert_int_equal(start[3], 8);
    /* node 0: commands 1, 3, 7; node 1: 2, 6; node 2: 0, 4, 5 */
    const size_t want[] = {1, 3, 7, 2, 6, 0, 4, 5};
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(order[i], want[i]);
}

static void plan_leaves_out_commands_without_a_node(void **state)
{
    const int node_of[] = {-1, 1, -1, 1, 0};
    size_t order[5], start[3];

    (void)state;
    assert_int_equal(tse_rconn_plan(node_of, 5, 2, order, start), 3);
    assert_int_equal(start[1] - start[0], 1);
    assert_int_equal(order[0], 4);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 3);
    assert_int_equal(start[2], 3);
}

static void plan_of_nothing_is_empty(void **state)
{
    const int node_of[] = {-1, -1};
    size_t order[2], start[4] = {9, 9, 9, 9};

    (void)state;
    assert_int_equal(tse_rconn_plan(node_of, 2, 3, order, start), 0);
    for (int k = 0; k <= 3; k++)
        assert_int_equal(start[k], 0);
}

/* A connection to a cluster no test reaches: nothing here connects. */
static tse_rconn *cluster_conn(void)
{
    tse_redis_target t;
    tse_rconn *c = NULL;
    tse_error err;

    assert_int_equal(tse_redis_url_parse("redis+cluster://127.0.0.1:1,127.0.0.1:2", &t, &err),
                     TSE_OK);
    assert_int_equal(tse_rconn_create(&t, 100, &c, &err), TSE_OK);
    assert_true(tse_rconn_is_cluster(c));
    return c;
}

static void append_refuses_what_a_cluster_cannot_route(void **state)
{
    tse_rconn *c = cluster_conn();
    const char *ok[] = {"XLEN", "{t}:a"};
    const char *cross[] = {"DEL", "{t}:a", "{u}:b"};
    const char *unknown[] = {"FROB", "x"};
    tse_error err;

    (void)state;
    assert_int_equal(tse_rconn_append(c, 2, ok, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_OK);
    tse_error_clear(&err);
    assert_int_equal(tse_rconn_append(c, 3, cross, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                     TSE_INVALID);
    assert_string_equal(err.field, "command");
    assert_non_null(strstr(err.message, "different slots"));
    assert_int_equal(tse_rconn_append(c, 2, unknown, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                     TSE_INVALID);
    assert_non_null(strstr(err.message, "FROB"));
    assert_int_equal(tse_rconn_append(c, 2, unknown, NULL, 16384, &err), TSE_INVALID);
    assert_string_equal(err.field, "slot");
    /* Only the first went in; the caller names the slot of the unknown. */
    assert_int_equal(tse_rconn_pending(c), 1);
    assert_int_equal(tse_rconn_append(c, 2, unknown, NULL, 42, &err), TSE_OK);
    assert_int_equal(tse_rconn_pending(c), 2);
    tse_rconn_discard(c);
    assert_int_equal(tse_rconn_pending(c), 0);
    tse_rconn_destroy(c);
}

static void append_resp_takes_a_formatted_command_for_a_named_slot(void **state)
{
    tse_rconn *c = cluster_conn();
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    tse_error err;

    (void)state;
    assert_int_equal(tse_rconn_append_resp(c, ping, strlen(ping), 16384, &err), TSE_INVALID);
    assert_string_equal(err.field, "slot");
    assert_int_equal(tse_rconn_append_resp(c, ping, strlen(ping), -2, &err), TSE_INVALID);
    assert_int_equal(tse_rconn_append_resp(c, ping, 0, 7, &err), TSE_INVALID);
    assert_string_equal(err.field, "command");
    assert_int_equal(tse_rconn_pending(c), 0);
    assert_int_equal(tse_rconn_append_resp(c, ping, strlen(ping), 7, &err), TSE_OK);
    assert_int_equal(tse_rconn_append_resp(c, ping, strlen(ping), TSE_SLOT_ANY, &err), TSE_OK);
    assert_int_equal(tse_rconn_pending(c), 2);
    tse_rconn_destroy(c); /* frees what was appended */
}

/* The borrowed append refuses what the copying one refuses, appends what
 * it appends, and frees nothing of the caller's (a stack buffer here). */
static void append_resp_borrowed_checks_as_append_resp(void **state)
{
    tse_rconn *c = cluster_conn();
    char ping[] = "*1\r\n$4\r\nPING\r\n";
    tse_error err;

    (void)state;
    assert_int_equal(tse_rconn_append_resp_borrowed(c, ping, strlen(ping), 16384, &err),
                     TSE_INVALID);
    assert_string_equal(err.field, "slot");
    assert_int_equal(tse_rconn_append_resp_borrowed(c, ping, 0, 7, &err), TSE_INVALID);
    assert_string_equal(err.field, "command");
    assert_int_equal(tse_rconn_pending(c), 0);
    assert_int_equal(tse_rconn_append_resp_borrowed(c, ping, strlen(ping), 7, &err), TSE_OK);
    assert_int_equal(tse_rconn_append_resp(c, ping, strlen(ping), 7, &err), TSE_OK);
    assert_int_equal(tse_rconn_pending(c), 2);
    tse_rconn_discard(c);
    assert_int_equal(tse_rconn_append_resp_borrowed(c, ping, strlen(ping), 7, &err), TSE_OK);
    tse_rconn_destroy(c); /* frees the copy, not ping */
}

/* Without a map (nothing fetched yet), or on a single Redis, no slot has an
 * owner. */
static void no_owner_without_a_map(void **state)
{
    tse_rconn *c = cluster_conn();
    tse_redis_target t;
    tse_error err;
    int replicas = 7;

    (void)state;
    assert_int_equal(tse_rconn_slot_owner(c, 0, &replicas), -1);
    assert_int_equal(replicas, 7);
    assert_int_equal(tse_rconn_slot_owner(c, 16383, NULL), -1);
    tse_rconn_destroy(c);
    assert_int_equal(tse_redis_url_parse("redis://127.0.0.1:1", &t, &err), TSE_OK);
    assert_int_equal(tse_rconn_create(&t, 100, &c, &err), TSE_OK);
    assert_int_equal(tse_rconn_slot_owner(c, 0, &replicas), -1);
    tse_rconn_destroy(c);
}

static void nothing_appended_has_no_reply(void **state)
{
    tse_rconn *c = cluster_conn();
    struct redisReply *r = (struct redisReply *)&r;
    tse_error err;

    (void)state;
    assert_int_equal(tse_rconn_get_reply(c, tse_clock_ms(), &r, &err), TSE_FAILED_PRECONDITION);
    assert_null(r);
    tse_rconn_destroy(c);
    tse_rconn_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_groups_by_node_keeping_each_nodes_order),
        cmocka_unit_test(plan_leaves_out_commands_without_a_node),
        cmocka_unit_test(plan_of_nothing_is_empty),
        cmocka_unit_test(append_refuses_what_a_cluster_cannot_route),
        cmocka_unit_test(append_resp_takes_a_formatted_command_for_a_named_slot),
        cmocka_unit_test(append_resp_borrowed_checks_as_append_resp),
        cmocka_unit_test(no_owner_without_a_map),
        cmocka_unit_test(nothing_appended_has_no_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
