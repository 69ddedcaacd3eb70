/*
 * test_storage_reply.c - the reply shapes every storage operation reads
 * (src/storage/reply.c): an array read item by item into a vector, a flat
 * [name, value, ...] map, an integer, and the end of a parsed command.
 * Replies are built from RESP bytes by hiredis's reader, as a connection
 * hands them over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "../support/resp_reply.h"
#include "storage/conn_internal.h"

/* An item: an integer element kept as it is, "oom" out of memory, any
 * other element skipped. */
static tse_status int_item(const redisReply *e, void *slot)
{
    if (is_str(e) && strcmp(e->str, "oom") == 0)
        return TSE_NOMEM;
    if (!is_int(e))
        return TSE_INTERNAL;
    *(long long *)slot = e->integer;
    return TSE_OK;
}

/* The vector tse_reply_items reads with int_item from the reply of the
 * len RESP bytes at resp: asserts that it returns want with n items (n is
 * set: it starts at 9). Caller frees the vector. */
static long long *items_of(const char *resp, size_t len, tse_status want, size_t n)
{
    redisReply *r = read_reply_n(resp, len);
    long long *v = NULL;
    size_t got = 9;

    assert_int_equal(tse_reply_items(r, sizeof(*v), int_item, &v, &got), want);
    assert_int_equal(got, n);
    freeReplyObject(r);
    return v;
}

/* items_of a string literal of RESP. */
#define ITEMS(lit, want, n) items_of(lit, sizeof(lit) - 1, want, n)

static void items_keep_what_the_item_accepts_in_order(void **state)
{
    long long *v = ITEMS("*5\r\n:4\r\n$1\r\nx\r\n:5\r\n$-1\r\n:6\r\n", TSE_OK, 3);

    (void)state;
    assert_non_null(v);
    assert_int_equal(v[0], 4);
    assert_int_equal(v[1], 5);
    assert_int_equal(v[2], 6);
    free(v);
}

static void items_of_an_empty_array_are_a_vector_of_none(void **state)
{
    long long *v = ITEMS("*0\r\n", TSE_OK, 0);

    (void)state;
    assert_non_null(v);
    free(v);
}

static void items_stop_out_of_memory_keeping_what_was_read(void **state)
{
    long long *v = ITEMS("*3\r\n:1\r\n$3\r\noom\r\n:2\r\n", TSE_NOMEM, 1);

    (void)state;
    assert_non_null(v);
    assert_int_equal(v[0], 1);
    free(v);
}

static void items_of_no_array_are_internal(void **state)
{
    long long *v = ITEMS("-ERR x\r\n", TSE_INTERNAL, 0);
    size_t n = 9;

    (void)state;
    assert_null(v);
    assert_int_equal(tse_reply_items(NULL, sizeof(*v), int_item, &v, &n), TSE_INTERNAL);
    assert_null(v);
}

static void a_field_is_the_value_after_its_first_name(void **state)
{
    redisReply *map = read_reply("*8\r\n:1\r\n$4\r\nname\r\n"
                                 "$4\r\nname\r\n$1\r\na\r\n"
                                 "$7\r\npending\r\n:3\r\n"
                                 "$4\r\nname\r\n$1\r\nb\r\n");
    redisReply *odd = read_reply("*3\r\n$4\r\nname\r\n$1\r\na\r\n$4\r\nlast\r\n");
    redisReply *err = read_reply("-ERR x\r\n");
    const redisReply *v;

    (void)state;
    /* A name that is no string is passed over, with its value. */
    assert_non_null(v = tse_reply_field(map, "name"));
    assert_string_equal(v->str, "a");
    assert_non_null(v = tse_reply_field(map, "pending"));
    assert_int_equal(v->integer, 3);
    assert_null(tse_reply_field(map, "idle"));
    /* A name without a value has none. */
    assert_null(tse_reply_field(odd, "last"));
    assert_null(tse_reply_field(err, "name"));
    assert_null(tse_reply_field(NULL, "name"));
    freeReplyObject(map);
    freeReplyObject(odd);
    freeReplyObject(err);
}

static void an_integer_reply_is_its_value_anything_else_internal(void **state)
{
    redisReply *i = read_reply(":42\r\n");
    redisReply *err = read_reply("-WRONGTYPE x\r\n");
    long long n = 7;

    (void)state;
    assert_int_equal(tse_reply_integer(i, &n), TSE_OK);
    assert_int_equal(n, 42);
    assert_int_equal(tse_reply_integer(err, &n), TSE_INTERNAL);
    assert_int_equal(n, 0);
    n = 7;
    assert_int_equal(tse_reply_integer(NULL, &n), TSE_INTERNAL);
    assert_int_equal(n, 0);
    freeReplyObject(i);
    freeReplyObject(err);
}

static void finishing_gives_the_parse_status_or_unavailable_without_a_reply(void **state)
{
    redisReply *i = read_reply(":1\r\n");
    long long n = 7;
    bool yes = true;

    (void)state;
    /* The reply is freed (a leak would fail the sanitizer and valgrind runs). */
    assert_int_equal(tse_reply_finish(i, TSE_NOT_FOUND), TSE_NOT_FOUND);
    assert_int_equal(tse_reply_finish(NULL, TSE_INTERNAL), TSE_UNAVAILABLE);
    assert_int_equal(tse_conn_integer(NULL, 2, (const char *[]){"XLEN", "k"}, NULL, &n),
                     TSE_UNAVAILABLE);
    assert_int_equal(n, 0);
    assert_int_equal(tse_conn_flag(NULL, 3, (const char *[]){"HDEL", "k", "f"}, NULL, &yes),
                     TSE_UNAVAILABLE);
    assert_false(yes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(items_keep_what_the_item_accepts_in_order),
        cmocka_unit_test(items_of_an_empty_array_are_a_vector_of_none),
        cmocka_unit_test(items_stop_out_of_memory_keeping_what_was_read),
        cmocka_unit_test(items_of_no_array_are_internal),
        cmocka_unit_test(a_field_is_the_value_after_its_first_name),
        cmocka_unit_test(an_integer_reply_is_its_value_anything_else_internal),
        cmocka_unit_test(finishing_gives_the_parse_status_or_unavailable_without_a_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
