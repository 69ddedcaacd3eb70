/*
 * test_storage_conn.c - the delivery engine's storage operations on a real
 * redis-server (src/storage/conn.c, group_ops.c, dlq_ops.c, subs_ops.c):
 * one read over several streams answering each entry with its stream, the
 * pending list, claims counting attempts, acks in runs and per id, acks
 * sent ahead of a read in its round trip, dead
 * letters and the subscriptions hash; and a connection lost under an
 * operation: reported once, then every operation fails at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "storage/conn.h"
#include "storage/conn_internal.h"
#include "storage/dlq_ops.h"
#include "storage/group_ops.h"
#include "storage/keys.h"
#include "storage/subs_ops.h"

typedef struct world {
    tse_test_redis *redis;
    tse_conn *conn;
    int lost; /* times the loss was reported */
    char why[256];
} world;

static void on_lost(void *arg, const char *why)
{
    world *w = arg;

    w->lost++;
    snprintf(w->why, sizeof(w->why), "%s", why);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    tse_redis_target t;
    tse_error err;
    char why[256];

    assert_non_null(w);
    assert_non_null(w->redis = tse_test_redis_start(false));
    assert_int_equal(tse_redis_url_parse(w->redis->url, &t, &err), TSE_OK);
    w->conn = tse_conn_open(&t, 2000, on_lost, w, why, sizeof(why));
    if (w->conn == NULL)
        fail_msg("connect: %s", why);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;

    tse_conn_close(w->conn);
    tse_test_redis_stop(w->redis);
    free(w);
    return 0;
}

static void add(const world *w, const char *key, const char *env)
{
    char *id = tse_test_redis_cmd(w->redis, "XADD %s * type t event %s", key, env);

    assert_non_null(id);
    free(id);
}

static void a_read_of_several_streams_then_claims_and_acks(void **state)
{
    world *w = *state;
    char a[128], b[128];
    tse_key_stream("x.a", 1, a, sizeof(a));
    tse_key_stream("x.b", 1, b, sizeof(b));
    const char *keys[] = {a, b};
    tse_group_entries got = {0}, claimed = {0};
    tse_pending_list p = {0};
    size_t per[2];
    uint32_t acked;
    bool each[2];

    assert_int_equal(tse_group_create(w->conn, a, "g", "0"), TSE_OK);
    assert_int_equal(tse_group_create(w->conn, b, "g", "0"), TSE_OK);
    /* An existing group is fine. */
    assert_int_equal(tse_group_create(w->conn, a, "g", "0"), TSE_OK);
    add(w, a, "one");
    add(w, b, "two");
    add(w, b, "three");

    assert_int_equal(tse_group_read(w->conn, "g", "c1", keys, 2, 10, &got, per), TSE_OK);
    assert_int_equal(got.n, 3);
    assert_int_equal(per[0], 1);
    assert_int_equal(per[1], 2);
    for (size_t i = 0; i < got.n; i++) {
        assert_int_equal(got.v[i].attempt, 1);
        if (got.v[i].stream == 0) {
            assert_int_equal(got.v[i].envelope_len, 3);
            assert_memory_equal(got.v[i].envelope, "one", 3);
        }
    }
    /* Nothing new: an empty answer, not an error. */
    tse_group_entries_cleanup(&got);
    assert_int_equal(tse_group_read(w->conn, "g", "c1", keys, 2, 10, &got, per), TSE_OK);
    assert_int_equal(got.n, 0);

    assert_int_equal(tse_group_pending(w->conn, b, "g", 0, 100, &p), TSE_OK);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.v[0].delivered, 1);
    const char *ids[] = {p.v[0].id, p.v[1].id};
    const long long delivered[] = {p.v[0].delivered, p.v[1].delivered};
    assert_int_equal(tse_group_claim(w->conn, b, "g", "c2", 0, ids, delivered, 2, &claimed),
                     TSE_OK);
    assert_int_equal(claimed.n, 2);
    assert_int_equal(claimed.v[0].attempt, 2);

    /* One run for both ids of b, then per id: both gone already. */
    const char *run_keys[] = {b, b};
    assert_int_equal(tse_group_ack_runs(w->conn, "g", run_keys, ids, 2, &acked), TSE_OK);
    assert_int_equal(acked, 2);
    assert_int_equal(tse_group_ack_each(w->conn, "g", run_keys, ids, 2, each, NULL), TSE_OK);
    assert_false(each[0]);
    assert_false(each[1]);
    assert_false(tse_conn_lost(w->conn));
    tse_pending_list_cleanup(&p);
    tse_group_entries_cleanup(&got);
    tse_group_entries_cleanup(&claimed);
}

/* The delivery engine's pass: the acks of what was delivered go ahead of
 * the next read, one round trip for both, and Redis applies them first. */
static void acks_go_ahead_of_a_read_in_its_round_trip(void **state)
{
    world *w = *state;
    char a[128], b[128];
    tse_key_stream("y.a", 1, a, sizeof(a));
    tse_key_stream("y.b", 1, b, sizeof(b));
    const char *keys[] = {a, b};
    tse_group_entries got = {0};
    tse_pending_list p = {0};
    size_t per[2];
    uint64_t rounds;

    assert_int_equal(tse_group_create(w->conn, a, "g", "0"), TSE_OK);
    assert_int_equal(tse_group_create(w->conn, b, "g", "0"), TSE_OK);
    add(w, a, "a1");
    add(w, b, "b1");
    add(w, a, "a2");
    assert_int_equal(tse_group_read(w->conn, "g", "c1", keys, 2, 10, &got, per), TSE_OK);
    assert_int_equal(got.n, 3);
    add(w, a, "a3");

    /* Acks of both streams, a run of a interrupted by b and an id of no
     * stream (skipped), then the read: one round trip. */
    const char *ack_keys[4], *ack_ids[4];
    size_t n = 0;
    for (size_t i = 0; i < got.n; i++) {
        ack_keys[n] = keys[got.v[i].stream];
        ack_ids[n++] = got.v[i].id;
    }
    ack_keys[n] = NULL;
    ack_ids[n++] = "1-1";
    tse_group_acks acks = {ack_keys, ack_ids, n, 0, TSE_INTERNAL};
    tse_group_entries more = {0};
    rounds = tse_conn_rounds(w->conn);
    assert_int_equal(tse_group_ack_read(w->conn, "g", &acks, "c1", keys, 2, 10, &more, per),
                     TSE_OK);
    assert_int_equal(tse_conn_rounds(w->conn) - rounds, 1);
    assert_int_equal(acks.st, TSE_OK);
    assert_int_equal(acks.acked, 3);
    assert_int_equal(more.n, 1);
    assert_int_equal(more.v[0].stream, 0);
    assert_memory_equal(more.v[0].envelope, "a3", 2);
    assert_int_equal(per[0], 1);
    assert_int_equal(per[1], 0);
    /* Only the new entry is pending. */
    assert_int_equal(tse_group_pending(w->conn, a, "g", 0, 100, &p), TSE_OK);
    assert_int_equal(p.n, 1);
    tse_pending_list_cleanup(&p);
    assert_int_equal(tse_group_pending(w->conn, b, "g", 0, 100, &p), TSE_OK);
    assert_int_equal(p.n, 0);

    /* No acks: a plain read, still one round trip. */
    tse_group_entries none = {0};
    rounds = tse_conn_rounds(w->conn);
    assert_int_equal(tse_group_ack_read(w->conn, "g", NULL, "c1", keys, 2, 10, &none, per), TSE_OK);
    assert_int_equal(tse_conn_rounds(w->conn) - rounds, 1);
    assert_int_equal(none.n, 0);
    tse_pending_list_cleanup(&p);
    tse_group_entries_cleanup(&got);
    tse_group_entries_cleanup(&more);
    tse_group_entries_cleanup(&none);
}

static void dead_letters_keep_the_original_fields(void **state)
{
    world *w = *state;
    char key[128];
    tse_stream_entry orig, dl;
    tse_stream_entries all = {0};
    long long n = 0;
    bool deleted;

    tse_key_stream("x.c", 2, key, sizeof(key));
    add(w, key, "payload");
    assert_int_equal(tse_dlq_range(w->conn, "sub", "-", 10, &all), TSE_OK);
    assert_int_equal(all.n, 0);
    {
        char *id = tse_test_redis_cmd(w->redis, "XADD %s * event again", key);
        assert_non_null(id);
        assert_int_equal(tse_stream_entry_get(w->conn, key, id, &orig), TSE_OK);
        assert_int_equal(tse_dlq_add(w->conn, "sub", key, id, 5, "rejected", &orig), TSE_OK);
        free(id);
    }
    assert_int_equal(tse_stream_entry_get(w->conn, key, "1-1", &dl), TSE_NOT_FOUND);
    assert_int_equal(tse_dlq_length(w->conn, "sub", &n), TSE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(tse_dlq_range(w->conn, "sub", "-", 10, &all), TSE_OK);
    assert_int_equal(all.n, 1);
    assert_int_equal(tse_dlq_get(w->conn, "sub", all.v[0].id, &dl), TSE_OK);
    assert_string_equal(tse_stream_entry_field(&dl, "dlq_stream", NULL), key);
    assert_string_equal(tse_stream_entry_field(&dl, "dlq_attempts", NULL), "5");
    assert_string_equal(tse_stream_entry_field(&dl, "dlq_reason", NULL), "rejected");
    assert_string_equal(tse_stream_entry_field(&dl, "event", NULL), "again");
    assert_int_equal(tse_dlq_delete(w->conn, "sub", all.v[0].id, &deleted), TSE_OK);
    assert_true(deleted);
    assert_int_equal(tse_dlq_delete(w->conn, "sub", all.v[0].id, &deleted), TSE_OK);
    assert_false(deleted);
    /* An answer is written over out: what it held is the caller's to free. */
    tse_stream_entry_cleanup(&dl);
    assert_int_equal(tse_dlq_get(w->conn, "sub", all.v[0].id, &dl), TSE_NOT_FOUND);
    assert_null(dl.id);
    tse_stream_entry_cleanup(&orig);
    tse_stream_entry_cleanup(&dl);
    tse_stream_entries_cleanup(&all);
}

static void a_subscription_is_stored_once(void **state)
{
    world *w = *state;
    const uint8_t packed[] = {1, 0, 2};
    tse_blob b = {0};
    tse_strings names = {0};
    bool inserted;

    assert_int_equal(tse_subs_get(w->conn, "s1", &b), TSE_NOT_FOUND);
    assert_int_equal(tse_subs_put_new(w->conn, "s1", packed, 3, &inserted), TSE_OK);
    assert_true(inserted);
    assert_int_equal(tse_subs_put_new(w->conn, "s1", packed, 1, &inserted), TSE_OK);
    assert_false(inserted);
    assert_int_equal(tse_subs_get(w->conn, "s1", &b), TSE_OK);
    assert_int_equal(b.len, 3); /* binary-safe, the first kept */
    assert_memory_equal(b.data, packed, 3);
    assert_int_equal(tse_subs_names(w->conn, &names), TSE_OK);
    assert_int_equal(names.n, 1);
    assert_string_equal(names.v[0], "s1");
    assert_int_equal(tse_subs_delete(w->conn, "s1"), TSE_OK);
    tse_blob_cleanup(&b);
    assert_int_equal(tse_subs_get(w->conn, "s1", &b), TSE_NOT_FOUND);
    tse_strings_cleanup(&names);
}

static void a_lost_connection_is_reported_once_then_fails_at_once(void **state)
{
    world *w = *state;
    long long n = 0;
    int64_t sec;
    int32_t nanos;

    assert_int_equal(tse_redis_time(w->conn, &sec, &nanos), TSE_OK);
    assert_true(sec > 0);
    tse_test_redis_kill(w->redis);
    assert_int_equal(tse_streams_count(w->conn, &n), TSE_UNAVAILABLE);
    assert_int_equal(w->lost, 1);
    assert_non_null(strstr(w->why, "redis"));
    assert_true(tse_conn_lost(w->conn));
    /* Redis back: a lost connection stays lost (the owner opens another). */
    assert_true(tse_test_redis_restart(w->redis));
    assert_int_equal(tse_streams_count(w->conn, &n), TSE_UNAVAILABLE);
    assert_int_equal(tse_redis_time(w->conn, &sec, &nanos), TSE_UNAVAILABLE);
    assert_int_equal(w->lost, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_read_of_several_streams_then_claims_and_acks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(acks_go_ahead_of_a_read_in_its_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_letters_keep_the_original_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(a_subscription_is_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lost_connection_is_reported_once_then_fails_at_once,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
