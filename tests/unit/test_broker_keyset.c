/*
 * test_broker_keyset.c - the set of stream keys a lane has registered
 * (src/storage/keyset.c): membership, no double counting, growth past the
 * first table with every key kept, private copies, and clear.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "storage/keyset.h"

#define MANY 5000

static void key_of(char *buf, size_t len, int i)
{
    snprintf(buf, len, "tracseq:events:{type.%d}:p%d", i, i % 5 + 1);
}

static void a_new_set_holds_nothing_and_allocates_nothing(void **state)
{
    tse_keyset set = {0};

    (void)state;
    assert_false(tse_keyset_contains(&set, "tracseq:events:{a.b}:p1"));
    assert_false(tse_keyset_contains(&set, ""));
    assert_int_equal(set.count, 0);
    assert_null(set.slots);
    tse_keyset_clear(&set); /* clearing an empty set is harmless */
    assert_int_equal(set.cap, 0);
}

static void an_added_key_is_contained_and_others_are_not(void **state)
{
    tse_keyset set = {0};

    (void)state;
    assert_true(tse_keyset_add(&set, "tracseq:events:{a.b}:p1"));
    assert_true(tse_keyset_contains(&set, "tracseq:events:{a.b}:p1"));
    assert_false(tse_keyset_contains(&set, "tracseq:events:{a.b}:p2"));
    assert_false(tse_keyset_contains(&set, "tracseq:events:{a.b}:p"));
    assert_false(tse_keyset_contains(&set, "tracseq:events:{a.b}:p10"));
    assert_false(tse_keyset_contains(&set, ""));
    tse_keyset_clear(&set);
}

static void adding_a_key_twice_keeps_one(void **state)
{
    tse_keyset set = {0};

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_true(tse_keyset_add(&set, "tracseq:events:{a.b}:p1"));
    assert_int_equal(set.count, 1);
    assert_true(tse_keyset_add(&set, "tracseq:events:{a.b}:p2"));
    assert_int_equal(set.count, 2);
    tse_keyset_clear(&set);
}

/* The table starts at 16 slots and doubles: every key survives each rehash,
 * and the table stays at most half full. */
static void growing_keeps_every_key_and_the_table_half_empty(void **state)
{
    tse_keyset set = {0};
    char key[64];

    (void)state;
    for (int i = 0; i < MANY; i++) {
        key_of(key, sizeof(key), i);
        assert_true(tse_keyset_add(&set, key));
        assert_int_equal(set.count, (size_t)i + 1);
        assert_true(set.count * 2 <= set.cap);
        assert_int_equal(set.cap & (set.cap - 1), 0); /* a power of two */
    }
    for (int i = 0; i < MANY; i++) {
        key_of(key, sizeof(key), i);
        if (!tse_keyset_contains(&set, key))
            fail_msg("%s lost after growing to %zu slots", key, set.cap);
    }
    for (int i = MANY; i < 2 * MANY; i++) {
        key_of(key, sizeof(key), i);
        assert_false(tse_keyset_contains(&set, key));
    }
    tse_keyset_clear(&set);
}

/* The caller's buffer is reused for the next key: the set keeps a copy. */
static void keys_are_copied_not_borrowed(void **state)
{
    tse_keyset set = {0};
    char key[64] = "tracseq:events:{a.b}:p1";

    (void)state;
    assert_true(tse_keyset_add(&set, key));
    memcpy(key, "tracseq:events:{x.y}:p5", strlen(key) + 1);
    assert_true(tse_keyset_contains(&set, "tracseq:events:{a.b}:p1"));
    assert_false(tse_keyset_contains(&set, key));
    tse_keyset_clear(&set);
}

/* A reconnect clears the set: every key is forgotten, nothing stays
 * allocated, and the set is usable again. */
static void clear_forgets_everything_and_the_set_is_reusable(void **state)
{
    tse_keyset set = {0};
    char key[64];

    (void)state;
    for (int i = 0; i < 100; i++) {
        key_of(key, sizeof(key), i);
        assert_true(tse_keyset_add(&set, key));
    }
    tse_keyset_clear(&set);
    assert_null(set.slots);
    assert_int_equal(set.cap, 0);
    assert_int_equal(set.count, 0);
    key_of(key, sizeof(key), 7);
    assert_false(tse_keyset_contains(&set, key));
    assert_true(tse_keyset_add(&set, key));
    assert_true(tse_keyset_contains(&set, key));
    assert_int_equal(set.count, 1);
    tse_keyset_clear(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_new_set_holds_nothing_and_allocates_nothing),
        cmocka_unit_test(an_added_key_is_contained_and_others_are_not),
        cmocka_unit_test(adding_a_key_twice_keeps_one),
        cmocka_unit_test(growing_keeps_every_key_and_the_table_half_empty),
        cmocka_unit_test(keys_are_copied_not_borrowed),
        cmocka_unit_test(clear_forgets_everything_and_the_set_is_reusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
