/*
 * test_storage_pipe.c - what the writer sees of a Redis reply through
 * storage/pipe.h without including hiredis: error replies and their text,
 * a prefix test (NOSCRIPT), integers, a script's SHA; and that nothing
 * else passes for them. The pipe's I/O is the writer's integration tests'
 * (test_broker_publish, test_service_*), against a real redis-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "storage/pipe.h"

static redisReply text_reply(int type, const char *s)
{
    redisReply r = {.type = type, .str = (char *)s, .len = strlen(s)};

    return r;
}

static void an_error_reply_gives_its_text(void **state)
{
    redisReply e = text_reply(REDIS_REPLY_ERROR, "NOSCRIPT No matching script");
    redisReply s = text_reply(REDIS_REPLY_STRING, "NOSCRIPT");
    const char *text = NULL;
    size_t len = 0;

    (void)state;
    assert_true(tse_reply_error(&e, &text, &len));
    assert_int_equal(len, strlen("NOSCRIPT No matching script"));
    assert_memory_equal(text, "NOSCRIPT No", 11);
    assert_true(tse_reply_error(&e, NULL, NULL));
    assert_false(tse_reply_error(&s, &text, &len));
    assert_false(tse_reply_error(NULL, NULL, NULL));
}

static void an_error_prefix_is_matched_on_error_replies_only(void **state)
{
    redisReply e = text_reply(REDIS_REPLY_ERROR, "NOSCRIPT No matching script");
    redisReply short_error = text_reply(REDIS_REPLY_ERROR, "NOS");
    redisReply status = text_reply(REDIS_REPLY_STATUS, "NOSCRIPT");

    (void)state;
    assert_true(tse_reply_error_is(&e, "NOSCRIPT"));
    assert_false(tse_reply_error_is(&e, "WRONGTYPE"));
    assert_false(tse_reply_error_is(&short_error, "NOSCRIPT"));
    assert_false(tse_reply_error_is(&status, "NOSCRIPT"));
    assert_false(tse_reply_error_is(NULL, "NOSCRIPT"));
}

static void an_integer_is_matched_by_value_and_type(void **state)
{
    redisReply one = {.type = REDIS_REPLY_INTEGER, .integer = 1};
    redisReply zero = {.type = REDIS_REPLY_INTEGER, .integer = 0};
    redisReply text = text_reply(REDIS_REPLY_STRING, "1");

    (void)state;
    assert_true(tse_reply_is_integer(&one, 1));
    assert_false(tse_reply_is_integer(&zero, 1));
    assert_true(tse_reply_is_integer(&zero, 0));
    assert_false(tse_reply_is_integer(&text, 1));
    assert_false(tse_reply_is_integer(NULL, 0));
}

static void a_sha_is_forty_bytes_of_bulk_string(void **state)
{
    static const char forty[] = "0123456789abcdef0123456789abcdef01234567";
    redisReply ok = text_reply(REDIS_REPLY_STRING, forty);
    redisReply shorter = text_reply(REDIS_REPLY_STRING, "0123");
    redisReply error = text_reply(REDIS_REPLY_ERROR, forty);
    char sha[41];

    (void)state;
    assert_true(tse_reply_sha(&ok, sha));
    assert_string_equal(sha, forty);
    assert_false(tse_reply_sha(&shorter, sha));
    assert_false(tse_reply_sha(&error, sha));
    assert_false(tse_reply_sha(NULL, sha));
    tse_reply_free(NULL);
    tse_pipe_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_error_reply_gives_its_text),
        cmocka_unit_test(an_error_prefix_is_matched_on_error_replies_only),
        cmocka_unit_test(an_integer_is_matched_by_value_and_type),
        cmocka_unit_test(a_sha_is_forty_bytes_of_bulk_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
