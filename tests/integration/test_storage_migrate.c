/*
 * test_storage_migrate.c - stream keys of the layout before 1.0 on a real
 * redis-server (src/storage/migrate.c): found in the stream set, moved to
 * their hash-tagged names with their entries and consumer groups (pending
 * entries included), a key whose new name exists left alone and reported,
 * a registered key that no longer exists only unregistered, a second run
 * finding only what was left; and the service at start moving them and
 * saying so in its log, naming the keys.
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
#include "storage/keys.h"
#include "storage/migrate.h"
#include "storage/redis_url.h"

#define OLD_AB TSE_EVENTS_PREFIX "a.b:p3"
#define NEW_AB TSE_EVENTS_PREFIX "{a.b}:p3"
#define OLD_CD TSE_EVENTS_PREFIX "c.d:p1"
#define NEW_CD TSE_EVENTS_PREFIX "{c.d}:p1"
#define OLD_EF TSE_EVENTS_PREFIX "e.f:p2"
#define NEW_GH TSE_EVENTS_PREFIX "{g.h}:p1"

static int setup(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);

    assert_non_null(r);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    tse_test_redis_stop(*state);
    return 0;
}

/* Runs a command of one key and checks its printable reply. */
static void expect(const tse_test_redis *r, const char *want, const char *fmt, const char *key)
{
    char *out = tse_test_redis_cmd(r, fmt, key);

    assert_non_null(out);
    if (strcmp(out, want) != 0)
        fail_msg("redis: %s (%s) -> '%s', want '%s'", fmt, key, out, want);
    free(out);
}

static void run(const tse_test_redis *r, const char *fmt, const char *key)
{
    free(tse_test_redis_cmd(r, fmt, key));
}

/* Three old-layout keys in the stream set: one to move (3 entries, a group
 * with 2 pending), one whose new name exists, one that is gone; and a
 * current key, which is none of the migration's business. */
static void seed(const tse_test_redis *r)
{
    for (int i = 0; i < 3; i++)
        run(r, "XADD %s * id x", OLD_AB);
    run(r, "XGROUP CREATE %s g 0", OLD_AB);
    run(r, "XREADGROUP GROUP g c1 COUNT 2 STREAMS %s >", OLD_AB);
    run(r, "XADD %s * id old", OLD_CD);
    run(r, "XADD %s * id new", NEW_CD);
    run(r, "SADD " TSE_STREAMS_KEY " %s", OLD_AB);
    run(r, "SADD " TSE_STREAMS_KEY " %s", OLD_CD);
    run(r, "SADD " TSE_STREAMS_KEY " %s", OLD_EF);
    run(r, "SADD " TSE_STREAMS_KEY " %s", NEW_GH);
}

static tse_redis_target target_of(const tse_test_redis *r)
{
    tse_redis_target t;
    tse_error err;

    assert_int_equal(tse_redis_url_parse(r->url, &t, &err), TSE_OK);
    return t;
}

static void old_streams_move_with_their_entries_and_groups(void **state)
{
    tse_test_redis *r = *state;
    tse_redis_target t = target_of(r);
    tse_legacy_report rep;
    char why[256], *pending;

    seed(r);
    /* Looking only: found, nothing moved. */
    assert_int_equal(tse_storage_migrate_legacy(&t, 2000, false, &rep, why, sizeof(why)), TSE_OK);
    assert_int_equal(rep.found, 3);
    assert_int_equal(rep.moved, 0);
    assert_non_null(strstr(rep.found_names, OLD_AB));
    assert_non_null(strstr(rep.found_names, OLD_CD));
    assert_non_null(strstr(rep.found_names, OLD_EF));
    assert_null(strstr(rep.found_names, NEW_GH));
    expect(r, "1", "EXISTS %s", OLD_AB);

    assert_int_equal(tse_storage_migrate_legacy(&t, 2000, true, &rep, why, sizeof(why)), TSE_OK);
    assert_int_equal(rep.found, 3);
    assert_int_equal(rep.moved, 1);
    assert_int_equal(rep.kept, 1);
    assert_int_equal(rep.gone, 1);
    assert_string_equal(rep.kept_names, OLD_CD);
    /* Moved: entries, the group and its pending entries, the registration. */
    expect(r, "0", "EXISTS %s", OLD_AB);
    expect(r, "3", "XLEN %s", NEW_AB);
    pending = tse_test_redis_cmd(r, "XPENDING %s g", NEW_AB);
    assert_non_null(pending);
    if (strncmp(pending, "2\n", 2) != 0)
        fail_msg("XPENDING of the moved group: '%s', want 2 pending", pending);
    free(pending);
    expect(r, "1", "SISMEMBER " TSE_STREAMS_KEY " %s", NEW_AB);
    expect(r, "0", "SISMEMBER " TSE_STREAMS_KEY " %s", OLD_AB);
    /* Kept: both streams as they were. */
    expect(r, "1", "XLEN %s", OLD_CD);
    expect(r, "1", "XLEN %s", NEW_CD);
    expect(r, "1", "SISMEMBER " TSE_STREAMS_KEY " %s", OLD_CD);
    /* Gone: unregistered. */
    expect(r, "0", "SISMEMBER " TSE_STREAMS_KEY " %s", OLD_EF);

    /* Again: only what was kept is found. */
    assert_int_equal(tse_storage_migrate_legacy(&t, 2000, true, &rep, why, sizeof(why)), TSE_OK);
    assert_int_equal(rep.found, 1);
    assert_int_equal(rep.moved, 0);
    assert_int_equal(rep.kept, 1);
}

static void a_cluster_target_is_refused_and_an_unreachable_redis_unavailable(void **state)
{
    tse_test_redis *r = *state;
    tse_redis_target t = target_of(r);
    tse_legacy_report rep;
    char why[256];

    t.cluster = true;
    assert_int_equal(tse_storage_migrate_legacy(&t, 2000, true, &rep, why, sizeof(why)),
                     TSE_INVALID);
    t.cluster = false;
    t.port = tse_test_free_port();
    assert_int_equal(tse_storage_migrate_legacy(&t, 2000, true, &rep, why, sizeof(why)),
                     TSE_UNAVAILABLE);
    assert_int_equal(rep.found, 0);
    assert_non_null(strstr(why, "redis"));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void the_service_moves_old_streams_at_start_and_says_which(void **state)
{
    tse_test_redis *r = *state;
    tse_test_service *s;
    char *log;

    free(tse_test_redis_cmd(r, "FLUSHALL"));
    seed(r);
    s = tse_test_service_start(r, NULL);
    assert_non_null(s);
    log = read_file(s->log);
    if (strstr(log, "layout before 1.0") == NULL || strstr(log, OLD_AB) == NULL ||
        strstr(log, OLD_CD) == NULL)
        fail_msg("the service's log does not name the old keys:\n%s", log);
    free(log);
    assert_int_equal(tse_test_service_stop(s), 0);
    expect(r, "3", "XLEN %s", NEW_AB);
    expect(r, "0", "EXISTS %s", OLD_AB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(old_streams_move_with_their_entries_and_groups, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_cluster_target_is_refused_and_an_unreachable_redis_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(the_service_moves_old_streams_at_start_and_says_which,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
