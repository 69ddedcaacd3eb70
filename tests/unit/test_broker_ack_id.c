/*
 * test_broker_ack_id.c - parsing the ack ids clients send back
 * (src/storage/ack_id.c): "<stream key>/<entry id>", split at the last
 * slash, and nothing but the shape the engine writes accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "storage/ack_id.h"

static void an_engine_ack_id_splits_into_key_and_entry(void **state)
{
    const char *id = "tracseq:events:{sample.created}:p3/1718700000000-0", *entry = NULL;
    char key[128];

    (void)state;
    assert_true(tse_ack_id_split(id, key, sizeof(key), &entry));
    assert_string_equal(key, "tracseq:events:{sample.created}:p3");
    assert_string_equal(entry, "1718700000000-0");
    assert_ptr_equal(entry, id + strlen("tracseq:events:{sample.created}:p3/"));
}

/* A key may hold slashes; the entry id never does. */
static void the_split_is_at_the_last_slash(void **state)
{
    const char *entry = NULL;
    char key[64];

    (void)state;
    assert_true(tse_ack_id_split("a/b/c/5-7", key, sizeof(key), &entry));
    assert_string_equal(key, "a/b/c");
    assert_string_equal(entry, "5-7");
}

/* Two 64-bit numbers: up to 20 digits each, not 21. */
static void entry_parts_of_up_to_20_digits_are_accepted(void **state)
{
    const char *entry = NULL;
    char key[64];

    (void)state;
    assert_true(
        tse_ack_id_split("k/18446744073709551615-18446744073709551615", key, sizeof(key), &entry));
    assert_string_equal(entry, "18446744073709551615-18446744073709551615");
    assert_int_equal(strlen(entry), TSE_ACK_ENTRY_MAX);
    assert_false(tse_ack_id_split("k/123456789012345678901-0", key, sizeof(key), &entry));
    assert_false(tse_ack_id_split("k/0-123456789012345678901", key, sizeof(key), &entry));
}

static void anything_but_ms_dash_seq_after_the_slash_is_refused(void **state)
{
    static const char *const bad[] = {
        "k/",     "k/1",    "k/1-",     "k/-1",    "k/1--1", "k/1-1-1",  "k/a-1",
        "k/1-a",  "k/1-1 ", "k/ 1-1",   "k/1-1\n", "k/+1-1", "k/1-0x1f", "k/1.5-1",
        "k/1-1/", "k1-1",   "no slash", "",        "k/1-1a", "k/-",      "k/*",
    };
    const char *entry = NULL;
    char key[64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tse_ack_id_split(bad[i], key, sizeof(key), &entry))
            fail_msg("'%s' was accepted", bad[i]);
}

static void an_empty_key_is_refused(void **state)
{
    const char *entry = NULL;
    char key[64];

    (void)state;
    assert_false(tse_ack_id_split("/1-1", key, sizeof(key), &entry));
}

/* The key must fit with its NUL: len - 1 characters at most. */
static void a_key_that_does_not_fit_the_buffer_is_refused(void **state)
{
    const char *entry = NULL;
    char key[8];

    (void)state;
    assert_true(tse_ack_id_split("1234567/1-1", key, sizeof(key), &entry));
    assert_string_equal(key, "1234567");
    assert_false(tse_ack_id_split("12345678/1-1", key, sizeof(key), &entry));
}

static void null_arguments_and_an_empty_buffer_are_refused(void **state)
{
    const char *entry = NULL;
    char key[64];

    (void)state;
    assert_false(tse_ack_id_split(NULL, key, sizeof(key), &entry));
    assert_false(tse_ack_id_split("k/1-1", NULL, sizeof(key), &entry));
    assert_false(tse_ack_id_split("k/1-1", key, 0, &entry));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_engine_ack_id_splits_into_key_and_entry),
        cmocka_unit_test(the_split_is_at_the_last_slash),
        cmocka_unit_test(entry_parts_of_up_to_20_digits_are_accepted),
        cmocka_unit_test(anything_but_ms_dash_seq_after_the_slash_is_refused),
        cmocka_unit_test(an_empty_key_is_refused),
        cmocka_unit_test(a_key_that_does_not_fit_the_buffer_is_refused),
        cmocka_unit_test(null_arguments_and_an_empty_buffer_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
