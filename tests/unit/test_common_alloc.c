/*
 * test_common_alloc.c - tse_grow, the one growing array of our code: it
 * starts at min, doubles until need fits, leaves an array with room alone,
 * reallocates with the function it is given, keeps the array and its
 * capacity when the allocation fails, and refuses a size that would
 * overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "common/alloc.h"

static void grows_from_min_then_doubles(void **state)
{
    int *v = NULL;
    size_t cap = 0;

    assert_true(TSE_GROW(tse_realloc, v, cap, 1, 4));
    assert_non_null(v);
    assert_int_equal(cap, 4);
    v[3] = 7;
    assert_true(TSE_GROW(tse_realloc, v, cap, 5, 4));
    assert_int_equal(cap, 8);
    assert_int_equal(v[3], 7);
    assert_true(TSE_GROW(tse_realloc, v, cap, 33, 4));
    assert_int_equal(cap, 64);
    assert_int_equal(v[3], 7);
    free(v);
}

/* A min of 0 starts at one item: doubling 0 would never reach need. */
static void a_min_of_zero_starts_at_one(void **state)
{
    long *v = NULL;
    size_t cap = 0;

    assert_true(TSE_GROW(tse_realloc, v, cap, 3, 0));
    assert_int_equal(cap, 4);
    v[2] = 1;
    free(v);
}

static void room_enough_changes_nothing(void **state)
{
    char *v = NULL, *before;
    size_t cap = 0;

    assert_true(TSE_GROW(tse_realloc, v, cap, 100, 16));
    assert_int_equal(cap, 128);
    before = v;
    assert_true(TSE_GROW(tse_realloc, v, cap, 128, 16));
    assert_ptr_equal(v, before);
    assert_int_equal(cap, 128);
    free(v);
}

static void *failing_realloc(void *ptr, size_t size)
{
    return NULL;
}

static void failed_allocation_keeps_array_and_cap(void **state)
{
    tse_alloc_funcs failing = {malloc, calloc, failing_realloc, free};
    tse_alloc_funcs old;
    int *v = NULL, *before;
    size_t cap = 0;

    assert_true(TSE_GROW(tse_realloc, v, cap, 2, 2));
    before = v;
    old = tse_alloc_set(&failing);
    assert_false(TSE_GROW(tse_realloc, v, cap, 3, 2));
    tse_alloc_set(&old);
    assert_ptr_equal(v, before);
    assert_int_equal(cap, 2);
    free(v);
}

static void overflowing_size_is_refused(void **state)
{
    uint64_t *v = NULL;
    size_t cap = 0;

    assert_false(TSE_GROW(tse_realloc, v, cap, SIZE_MAX / 4, 16));
    assert_null(v);
    assert_int_equal(cap, 0);
    assert_false(TSE_GROW(tse_realloc, v, cap, SIZE_MAX, 16));
    assert_null(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grows_from_min_then_doubles),
        cmocka_unit_test(a_min_of_zero_starts_at_one),
        cmocka_unit_test(room_enough_changes_nothing),
        cmocka_unit_test(failed_allocation_keeps_array_and_cap),
        cmocka_unit_test(overflowing_size_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
