/*
 * test_storage_command_keys.c - where the keys of a Redis command are
 * (src/storage/command_keys.c) and the one slot they hash to: every command
 * the service sends, the variable shapes (XREADGROUP's STREAMS, scripts'
 * numkeys, XGROUP/XINFO subcommands), keyless commands, and the refusals:
 * unknown commands, malformed key lists, keys across slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "storage/command_keys.h"
#include "storage/keys.h"

#define ARGS(...)                                                                                  \
    (const char *const[])                                                                          \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }
#define ARGC(...) ((int)(sizeof(ARGS(__VA_ARGS__)) / sizeof(const char *)))

/* The key range of a command given as string literals. */
#define EXPECT_KEYS(first_, count_, step_, ...)                                                    \
    do {                                                                                           \
        tse_key_range r_ = {-1, -1, -1};                                                           \
        tse_error e_;                                                                              \
        tse_error_clear(&e_);                                                                      \
        if (tse_command_keys(ARGC(__VA_ARGS__), ARGS(__VA_ARGS__), NULL, &r_, &e_) != TSE_OK)      \
            fail_msg("%s", e_.message);                                                            \
        assert_int_equal(r_.count, (count_));                                                      \
        if ((count_) > 0) {                                                                        \
            assert_int_equal(r_.first, (first_));                                                  \
            assert_int_equal(r_.step, (step_));                                                    \
        }                                                                                          \
    } while (0)

#define EXPECT_REFUSED(...)                                                                        \
    do {                                                                                           \
        tse_key_range r_;                                                                          \
        tse_error e_;                                                                              \
        tse_error_clear(&e_);                                                                      \
        assert_int_equal(tse_command_keys(ARGC(__VA_ARGS__), ARGS(__VA_ARGS__), NULL, &r_, &e_),   \
                         TSE_INVALID);                                                             \
        assert_string_equal(e_.field, "command");                                                  \
    } while (0)

static void one_key_commands_have_it_first(void **state)
{
    (void)state;
    EXPECT_KEYS(1, 1, 1, "XADD", "s", "*", "f", "v");
    EXPECT_KEYS(1, 1, 1, "XACK", "s", "g", "1-0", "2-0");
    EXPECT_KEYS(1, 1, 1, "XCLAIM", "s", "g", "c", "0", "1-0");
    EXPECT_KEYS(1, 1, 1, "XPENDING", "s", "g");
    EXPECT_KEYS(1, 1, 1, "XRANGE", "s", "-", "+");
    EXPECT_KEYS(1, 1, 1, "XDEL", "s", "1-0");
    EXPECT_KEYS(1, 1, 1, "XLEN", "s");
    EXPECT_KEYS(1, 1, 1, "XTRIM", "s", "MAXLEN", "~", "10");
    EXPECT_KEYS(1, 1, 1, "SADD", "set", "m");
    EXPECT_KEYS(1, 1, 1, "SMEMBERS", "set");
    EXPECT_KEYS(1, 1, 1, "HGET", "h", "f");
    EXPECT_KEYS(1, 1, 1, "HSET", "h", "f", "v");
    EXPECT_KEYS(1, 1, 1, "HGETALL", "h");
    EXPECT_KEYS(1, 1, 1, "HDEL", "h", "f", "g");
    /* names are case-insensitive, as Redis's */
    EXPECT_KEYS(1, 1, 1, "xadd", "s", "*", "f", "v");
}

static void multi_key_commands_list_every_key(void **state)
{
    (void)state;
    EXPECT_KEYS(1, 3, 1, "DEL", "a", "b", "c");
    EXPECT_KEYS(1, 2, 1, "EXISTS", "a", "b");
    EXPECT_KEYS(1, 2, 2, "MSET", "a", "1", "b", "2");
}

static void xreadgroup_keys_are_half_of_what_follows_streams(void **state)
{
    (void)state;
    EXPECT_KEYS(5, 1, 1, "XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">");
    EXPECT_KEYS(10, 3, 1, "XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "BLOCK", "0", "NOACK",
                "STREAMS", "a", "b", "c", ">", ">", ">");
    /* a group or consumer named STREAMS is not the keyword */
    EXPECT_KEYS(5, 1, 1, "XREADGROUP", "GROUP", "STREAMS", "STREAMS", "streams", "s", ">");
    EXPECT_KEYS(4, 2, 1, "XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0");
    EXPECT_REFUSED("XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">");
    EXPECT_REFUSED("XREADGROUP", "GROUP", "g", "c", "COUNT", "1");
    EXPECT_REFUSED("XREADGROUP", "g", "c", "STREAMS", "s", ">");
    EXPECT_REFUSED("XREADGROUP", "GROUP", "g", "c", "WHATEVER", "STREAMS", "s", ">");
}

static void scripts_say_how_many_keys_follow(void **state)
{
    (void)state;
    EXPECT_KEYS(3, 3, 1, "EVALSHA", "sha", "3", "a", "b", "c", "arg");
    EXPECT_KEYS(3, 0, 1, "EVALSHA", "sha", "0", "arg");
    EXPECT_KEYS(3, 1, 1, "EVAL", "return 1", "1", "k");
    EXPECT_REFUSED("EVALSHA", "sha", "2", "a");
    EXPECT_REFUSED("EVALSHA", "sha", "-1", "a");
    EXPECT_REFUSED("EVALSHA", "sha", "1x", "a");
    EXPECT_REFUSED("EVALSHA", "sha");
}

static void xgroup_and_xinfo_keys_follow_the_subcommand(void **state)
{
    (void)state;
    EXPECT_KEYS(2, 1, 1, "XGROUP", "CREATE", "s", "g", "$", "MKSTREAM");
    EXPECT_KEYS(2, 1, 1, "XGROUP", "DESTROY", "s", "g");
    EXPECT_KEYS(2, 1, 1, "XINFO", "GROUPS", "s");
    EXPECT_KEYS(2, 1, 1, "XINFO", "CONSUMERS", "s", "g");
    EXPECT_KEYS(0, 0, 1, "XINFO", "HELP");
    EXPECT_REFUSED("XGROUP", "CREATE");
}

static void keyless_commands_go_anywhere_and_unknown_ones_are_refused(void **state)
{
    int slot = 0;
    tse_error err;

    (void)state;
    EXPECT_KEYS(0, 0, 1, "PING");
    EXPECT_KEYS(0, 0, 1, "SCRIPT", "LOAD", "return 1");
    assert_int_equal(tse_command_slot(1, ARGS("PING"), NULL, &slot, &err), TSE_OK);
    assert_int_equal(slot, TSE_SLOT_ANY);
    EXPECT_REFUSED("FLUSHALL");
    EXPECT_REFUSED("XADD");
    EXPECT_REFUSED("SUBSCRIBE", "ch");
}

static void the_slot_is_the_keys_one(void **state)
{
    int slot = -5;
    tse_error err;

    (void)state;
    assert_int_equal(tse_command_slot(3, ARGS("XLEN", "foo", "x"), NULL, &slot, &err), TSE_OK);
    assert_int_equal(slot, 12182); /* CLUSTER KEYSLOT foo */
    assert_int_equal(
        tse_command_slot(4,
                         ARGS("DEL", "{user1000}.following", "{user1000}.followers", "{user1000}"),
                         NULL, &slot, &err),
        TSE_OK);
    assert_int_equal(slot, (int)tse_key_slot("user1000", 8));
}

static void keys_across_slots_are_refused_naming_two(void **state)
{
    int slot = 7;
    tse_error err;

    (void)state;
    tse_error_clear(&err);
    assert_int_equal(tse_command_slot(3, ARGS("DEL", "foo", "bar"), NULL, &slot, &err),
                     TSE_INVALID);
    assert_int_equal(slot, TSE_SLOT_ANY);
    assert_string_equal(err.field, "command");
    assert_non_null(strstr(err.message, "DEL: keys in different slots (foo: 12182, bar: 5061)"));
    assert_int_equal(
        tse_command_slot(9, ARGS("EVALSHA", "sha", "3", "{a}1", "{a}2", "{b}", "x", "y", "z"), NULL,
                         &slot, &err),
        TSE_INVALID);
}

static void arguments_with_lengths_need_no_terminator(void **state)
{
    /* "XLENfooX": the name and the key cut out of one buffer. */
    const char buf[] = "XLENfooX";
    const char *argv[] = {buf, buf + 4};
    const size_t lens[] = {4, 3};
    int slot = 0;
    tse_error err;

    (void)state;
    assert_int_equal(tse_command_slot(2, argv, lens, &slot, &err), TSE_OK);
    assert_int_equal(slot, 12182);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_key_commands_have_it_first),
        cmocka_unit_test(multi_key_commands_list_every_key),
        cmocka_unit_test(xreadgroup_keys_are_half_of_what_follows_streams),
        cmocka_unit_test(scripts_say_how_many_keys_follow),
        cmocka_unit_test(xgroup_and_xinfo_keys_follow_the_subcommand),
        cmocka_unit_test(keyless_commands_go_anywhere_and_unknown_ones_are_refused),
        cmocka_unit_test(the_slot_is_the_keys_one),
        cmocka_unit_test(keys_across_slots_are_refused_naming_two),
        cmocka_unit_test(arguments_with_lengths_need_no_terminator),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
