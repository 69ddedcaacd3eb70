/*
 * test_storage_backoff.c - the reconnect schedule and the probe rule that
 * every Redis connection of the service shares (src/storage/backoff.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "storage/backoff.h"

static void backoff_starts_at_the_minimum_and_doubles_to_the_maximum(void **state)
{
    int64_t b = 0, prev = 0;

    (void)state;
    b = tse_backoff_next(b);
    assert_int_equal(b, TSE_BROKER_RETRY_MIN_MS);
    for (int i = 0; i < 10; i++) {
        prev = b;
        b = tse_backoff_next(b);
        assert_true(b == prev * 2 || b == TSE_BROKER_RETRY_MAX_MS);
        assert_true(b <= TSE_BROKER_RETRY_MAX_MS);
    }
    assert_int_equal(b, TSE_BROKER_RETRY_MAX_MS);
    assert_int_equal(tse_backoff_next(TSE_BROKER_RETRY_MAX_MS), TSE_BROKER_RETRY_MAX_MS);
    assert_int_equal(tse_backoff_next(-5), TSE_BROKER_RETRY_MIN_MS);
}

static void probes_are_at_least_the_probe_interval_apart(void **state)
{
    (void)state;
    assert_false(tse_backoff_may_probe(1000, 1000));
    assert_false(tse_backoff_may_probe(1000 + TSE_BROKER_PROBE_MS - 1, 1000));
    assert_true(tse_backoff_may_probe(1000 + TSE_BROKER_PROBE_MS, 1000));
    assert_true(tse_backoff_may_probe(50000, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_starts_at_the_minimum_and_doubles_to_the_maximum),
        cmocka_unit_test(probes_are_at_least_the_probe_interval_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
