/*
 * test_storage_slot_groups.c - the grouping of a multi-key read's keys by
 * hash slot (src/storage/slot_groups.c): every key in exactly one group,
 * one slot per group, groups in the order of their first key, keys of a
 * group in the order given; and real stream keys of one event type share a
 * group while types of other slots do not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "storage/keys.h"
#include "storage/slot_groups.h"

static void no_keys_make_no_group(void **state)
{
    size_t order[1], start[1] = {99};

    (void)state;
    assert_int_equal(tse_slot_groups(NULL, 0, order, start), 0);
    assert_int_equal(start[0], 0);
}

static void one_slot_is_one_group_in_the_order_given(void **state)
{
    const unsigned slots[] = {7, 7, 7};
    size_t order[3], start[4];

    (void)state;
    assert_int_equal(tse_slot_groups(slots, 3, order, start), 1);
    assert_int_equal(start[0], 0);
    assert_int_equal(start[1], 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(order[i], i);
}

static void interleaved_slots_group_by_first_appearance(void **state)
{
    /* Slots a b a c b a: groups a {0 2 5}, b {1 4}, c {3}. */
    const unsigned slots[] = {100, 5, 100, 16383, 5, 100};
    const size_t want_order[] = {0, 2, 5, 1, 4, 3}, want_start[] = {0, 3, 5, 6};
    size_t order[6], start[7];

    (void)state;
    assert_int_equal(tse_slot_groups(slots, 6, order, start), 3);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(order[i], want_order[i]);
    for (size_t g = 0; g <= 3; g++)
        assert_int_equal(start[g], want_start[g]);
}

static void every_key_once_and_one_slot_per_group(void **state)
{
    unsigned slots[64];
    size_t order[64], start[65], groups, seen[64] = {0};

    (void)state;
    for (size_t i = 0; i < 64; i++)
        slots[i] = (unsigned)((i * 37) % 11); /* 11 slots, scattered */
    groups = tse_slot_groups(slots, 64, order, start);
    assert_int_equal(groups, 11);
    assert_int_equal(start[groups], 64);
    for (size_t g = 0; g < groups; g++) {
        assert_true(start[g] < start[g + 1]);
        for (size_t i = start[g]; i < start[g + 1]; i++) {
            assert_int_equal(slots[order[i]], slots[order[start[g]]]);
            if (i > start[g])
                assert_true(order[i] > order[i - 1]);
            seen[order[i]]++;
        }
        if (g > 0)
            assert_true(order[start[g]] > order[start[g - 1]]);
    }
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(seen[i], 1);
}

static void priorities_of_one_type_share_a_group(void **state)
{
    const char *types[] = {"sample.created", "run.finished", "sample.created", "run.finished"};
    const int prios[] = {1, 1, 5, 9};
    char keys[4][128];
    unsigned slots[4];
    size_t order[4], start[5];

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        tse_key_stream(types[i], prios[i], keys[i], sizeof(keys[i]));
        slots[i] = tse_key_slot(keys[i], strlen(keys[i]));
    }
    /* The two types' tags hash to different slots (checked, not assumed). */
    assert_int_not_equal(slots[0], slots[1]);
    assert_int_equal(tse_slot_groups(slots, 4, order, start), 2);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 1);
    assert_int_equal(order[3], 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_keys_make_no_group),
        cmocka_unit_test(one_slot_is_one_group_in_the_order_given),
        cmocka_unit_test(interleaved_slots_group_by_first_appearance),
        cmocka_unit_test(every_key_once_and_one_slot_per_group),
        cmocka_unit_test(priorities_of_one_type_share_a_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
