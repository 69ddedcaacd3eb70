/*
 * test_storage_rconn_single.c - the Redis connection (storage/rconn.h) on a
 * single redis-server (tests/support/harness.h): commands and a pipeline
 * answer in order, a pipeline sent ahead runs before its replies are taken, multi-key commands go
 * as they are (one server runs them whatever their slots), an idle connection the server closed (a
 * restart) is replaced before it is given a command, and an unreachable server fails UNAVAILABLE at
 * the deadline, naming it, and is used again once back; a connection told not to reopen (storage's
 * tse_conn) reports the restart; a cluster URL naming this server is told it is no cluster; a
 * connection told it is idle gives back its send buffer and serves the next round.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "common/clock.h"
#include "harness.h"
#include "storage/rconn.h"
#include "storage/redis_url.h"

#define DEADLINE_MS 10000

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};

    nanosleep(&ts, NULL);
}

typedef struct fixture {
    tse_test_redis *redis;
    tse_rconn *c;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    tse_redis_target t;
    tse_error err;

    assert_non_null(f);
    *state = f;
    /* appendfsync always: what was acknowledged survives the kill. */
    f->redis = tse_test_redis_start_aof("always");
    assert_non_null(f->redis);
    assert_int_equal(tse_redis_url_parse(f->redis->url, &t, &err), TSE_OK);
    assert_int_equal(tse_rconn_create(&t, 2000, &f->c, &err), TSE_OK);
    assert_false(tse_rconn_is_cluster(f->c));
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    if (f != NULL) {
        tse_rconn_destroy(f->c);
        tse_test_redis_stop(f->redis);
    }
    free(f);
    return 0;
}

static redisReply *run(tse_rconn *c, int argc, const char **argv)
{
    redisReply *r = NULL;
    tse_error err;

    tse_error_clear(&err);
    if (tse_rconn_command(c, argc, argv, NULL, TSE_RCONN_SLOT_OF_KEYS, tse_clock_ms() + DEADLINE_MS,
                          &r, &err) != TSE_OK)
        fail_msg("%s: %s", argv[0], err.message);
    return r;
}

#define RUN(c, ...)                                                                                \
    run((c), sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *),                         \
        (const char *[]){__VA_ARGS__})

static void expect_number(redisReply *r, long long want)
{
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, want);
    freeReplyObject(r);
}

static void expect_text(redisReply *r, const char *want)
{
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s", r->str);
    assert_string_equal(r->str, want);
    freeReplyObject(r);
}

static void a_pipeline_answers_in_order(void **state)
{
    fixture *f = *state;
    const char *incr[] = {"INCR", "single:counter"};
    redisReply *r;
    tse_error err;

    expect_number(RUN(f->c, "DEL", "single:counter"), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(tse_rconn_append(f->c, 2, incr, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                         TSE_OK);
    /* Appending while the replies are being taken is refused. */
    assert_int_equal(tse_rconn_get_reply(f->c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
    expect_number(r, 1);
    assert_int_equal(tse_rconn_append(f->c, 2, incr, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                     TSE_FAILED_PRECONDITION);
    for (int i = 1; i < 50; i++) {
        assert_int_equal(tse_rconn_get_reply(f->c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        expect_number(r, i + 1);
    }
    assert_int_equal(tse_rconn_pending(f->c), 0);
    assert_int_equal(tse_rconn_get_reply(f->c, tse_clock_ms(), &r, &err), TSE_FAILED_PRECONDITION);
    /* Idle: the send buffer goes back, and the next round gets another. */
    tse_rconn_idle(f->c);
    tse_rconn_idle(NULL);
    assert_int_equal(tse_rconn_append(f->c, 2, incr, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_OK);
    assert_int_equal(tse_rconn_get_reply(f->c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
    expect_number(r, 51);
}

/* Sent ahead (tse_rconn_send): Redis runs the pipeline while the caller
 * does other things (here: asks Redis itself, over another connection),
 * nothing may be appended until the replies are taken, and they come in
 * order. A pipeline sent and then discarded has its replies read first, so
 * the next command gets its own. */
static void a_pipeline_sent_ahead_runs_before_its_replies_are_taken(void **state)
{
    fixture *f = *state;
    const char *incr[] = {"INCR", "single:ahead"};
    redisReply *r;
    tse_error err;
    char *v = NULL;

    expect_number(RUN(f->c, "DEL", "single:ahead"), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tse_rconn_append(f->c, 2, incr, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                         TSE_OK);
    tse_rconn_send(f->c);
    /* Ran without a reply taken: another connection sees the count. */
    for (int tries = 0; tries < 1000; tries++) {
        free(v);
        v = tse_test_redis_cmd(f->redis, "GET single:ahead");
        if (v != NULL && strcmp(v, "3") == 0)
            break;
        sleep_ms(5);
    }
    assert_non_null(v);
    assert_string_equal(v, "3");
    free(v);
    assert_int_equal(tse_rconn_append(f->c, 2, incr, NULL, TSE_RCONN_SLOT_OF_KEYS, &err),
                     TSE_FAILED_PRECONDITION);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tse_rconn_get_reply(f->c, tse_clock_ms() + DEADLINE_MS, &r, &err), TSE_OK);
        expect_number(r, i + 1);
    }
    assert_int_equal(tse_rconn_pending(f->c), 0);

    assert_int_equal(tse_rconn_append(f->c, 2, incr, NULL, TSE_RCONN_SLOT_OF_KEYS, &err), TSE_OK);
    tse_rconn_send(f->c);
    tse_rconn_discard(f->c);
    r = RUN(f->c, "GET", "single:ahead");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    expect_text(r, "4");
}

static void keys_of_different_slots_go_together_to_one_server(void **state)
{
    fixture *f = *state;

    expect_text(RUN(f->c, "SET", "{single-a}", "1"), "OK");
    expect_text(RUN(f->c, "SET", "{single-b}", "1"), "OK");
    expect_number(RUN(f->c, "DEL", "{single-a}", "{single-b}"), 2);
}

static void an_idle_connection_closed_by_a_restart_costs_no_command(void **state)
{
    fixture *f = *state;

    expect_text(RUN(f->c, "SET", "single:kept", "v"), "OK");
    tse_test_redis_kill(f->redis);
    assert_true(tse_test_redis_restart(f->redis));
    expect_text(RUN(f->c, "GET", "single:kept"), "v");
    assert_int_equal(tse_rconn_get_counters(f->c).node_drops, 1);
}

static void an_unreachable_server_fails_unavailable_then_is_used_again(void **state)
{
    fixture *f = *state;
    const char *get[] = {"GET", "single:kept"};
    redisReply *r = NULL;
    char port[16];
    tse_error err;

    tse_test_redis_kill(f->redis);
    tse_error_clear(&err);
    assert_int_equal(tse_rconn_command(f->c, 2, get, NULL, TSE_RCONN_SLOT_OF_KEYS,
                                       tse_clock_ms() + 300, &r, &err),
                     TSE_UNAVAILABLE);
    assert_null(r);
    snprintf(port, sizeof(port), ":%d", f->redis->port);
    if (strstr(err.message, port) == NULL)
        fail_msg("\"%s\" does not name the server %s", err.message, port);

    assert_true(tse_test_redis_restart(f->redis));
    expect_text(RUN(f->c, "GET", "single:kept"), "v");
}

/* tse_conn's mode (storage/conn.c): its owner must learn of every loss. */
static void a_connection_that_may_not_reopen_reports_the_restart(void **state)
{
    fixture *f = *state;
    const char *get[] = {"GET", "single:kept"};
    redisReply *r = NULL;
    tse_redis_target t;
    tse_rconn *c = NULL;
    tse_error err;

    assert_int_equal(tse_redis_url_parse(f->redis->url, &t, &err), TSE_OK);
    assert_int_equal(tse_rconn_create(&t, 2000, &c, &err), TSE_OK);
    tse_rconn_set_reopen(c, false);
    assert_int_equal(tse_rconn_connect(c, tse_clock_ms(), &err), TSE_OK);
    expect_text(RUN(c, "SET", "single:kept", "v"), "OK");

    tse_test_redis_kill(f->redis);
    assert_true(tse_test_redis_restart(f->redis));
    tse_error_clear(&err);
    assert_int_equal(
        tse_rconn_command(c, 2, get, NULL, TSE_RCONN_SLOT_OF_KEYS, tse_clock_ms() + 300, &r, &err),
        TSE_UNAVAILABLE);
    assert_null(r);
    /* and stays lost: no reconnect behind its owner's back */
    assert_int_equal(
        tse_rconn_command(c, 2, get, NULL, TSE_RCONN_SLOT_OF_KEYS, tse_clock_ms() + 300, &r, &err),
        TSE_UNAVAILABLE);
    assert_non_null(strstr(err.message, "connection lost"));
    assert_int_equal(tse_rconn_get_counters(c).connects, 1);
    tse_rconn_destroy(c);
}

/* A redis+cluster:// URL naming a server that is no cluster: said so. */
static void a_cluster_url_on_a_plain_server_says_it_is_no_cluster(void **state)
{
    fixture *f = *state;
    tse_redis_target t;
    tse_rconn *c = NULL;
    char url[64];
    tse_error err;

    snprintf(url, sizeof(url), "redis+cluster://127.0.0.1:%d", f->redis->port);
    assert_int_equal(tse_redis_url_parse(url, &t, &err), TSE_OK);
    assert_int_equal(tse_rconn_create(&t, 2000, &c, &err), TSE_OK);
    tse_error_clear(&err);
    assert_int_equal(tse_rconn_connect(c, tse_clock_ms(), &err), TSE_UNAVAILABLE);
    if (strstr(err.message, "cluster support disabled") == NULL)
        fail_msg("\"%s\" does not say the server is no cluster", err.message);
    tse_rconn_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_pipeline_answers_in_order),
        cmocka_unit_test(a_pipeline_sent_ahead_runs_before_its_replies_are_taken),
        cmocka_unit_test(keys_of_different_slots_go_together_to_one_server),
        cmocka_unit_test(an_idle_connection_closed_by_a_restart_costs_no_command),
        cmocka_unit_test(an_unreachable_server_fails_unavailable_then_is_used_again),
        cmocka_unit_test(a_connection_that_may_not_reopen_reports_the_restart),
        cmocka_unit_test(a_cluster_url_on_a_plain_server_says_it_is_no_cluster),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
