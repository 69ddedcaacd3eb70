/*
 * test_storage_ops.c - the typed storage operations (src/storage/ops.c):
 * the command each sends and the decoding of the replies Redis may give
 * (GetStats' stream set and stream lengths; the writer's XADD and dedup
 * script),
 * built from RESP bytes by hiredis's reader exactly as a connection would
 * hand them over: the expected shape, an error reply, and shapes no script
 * of ours returns (foreign keys, wrong element types, an odd count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "storage/keys.h"
#include "storage/ops.h"

/* The reply hiredis reads from resp (one whole reply). Caller frees with
 * freeReplyObject. */
static redisReply *read_reply(const char *resp)
{
    redisReader *r = redisReaderCreate();
    void *out = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, resp, strlen(resp)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    assert_non_null(out);
    redisReaderFree(r);
    return out;
}

static const tse_type_length *find(const tse_stream_lengths *l, const char *type)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->types[i].type, type) == 0)
            return &l->types[i];
    return NULL;
}

#define KEY(type, prio) TSE_EVENTS_PREFIX "{" type "}:p" prio

static void lengths_are_one_smembers_then_one_xlen_per_stream(void **state)
{
    tse_cmd c;

    (void)state;
    tse_stream_set_command(&c);
    assert_int_equal(c.argc, 2);
    assert_string_equal(c.argv[0], "SMEMBERS");
    assert_string_equal(c.argv[1], TSE_STREAMS_KEY);
    tse_stream_length_command(KEY("a.b", "3"), &c);
    assert_int_equal(c.argc, 2);
    assert_string_equal(c.argv[0], "XLEN");
    assert_string_equal(c.argv[1], KEY("a.b", "3"));
}

/* The stream set as SMEMBERS answers it: only our stream keys are kept
 * (not a foreign key, an old-layout one, or an element that is no string). */
static void the_stream_set_keeps_only_stream_keys_of_ours(void **state)
{
    char resp[512];
    char **keys;
    size_t n;
    redisReply *reply;

    (void)state;
    snprintf(resp, sizeof(resp),
             "*5\r\n$5\r\nother\r\n$%zu\r\n%s\r\n:7\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n",
             strlen(KEY("a.b", "1")), KEY("a.b", "1"), strlen(TSE_EVENTS_PREFIX "c.d:p1"),
             TSE_EVENTS_PREFIX "c.d:p1", strlen(KEY("e.f", "3")), KEY("e.f", "3"));
    reply = read_reply(resp);
    assert_int_equal(tse_stream_set_parse(reply, &keys, &n), TSE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(keys[0], KEY("a.b", "1"));
    assert_string_equal(keys[1], KEY("e.f", "3"));
    tse_stream_keys_free(keys, n);
    freeReplyObject(reply);
    reply = read_reply("*0\r\n");
    assert_int_equal(tse_stream_set_parse(reply, &keys, &n), TSE_OK);
    assert_int_equal(n, 0);
    tse_stream_keys_free(keys, n);
    freeReplyObject(reply);
}

static void an_error_or_other_reply_to_smembers_decodes_nothing(void **state)
{
    static const char *const bad[] = {"-WRONGTYPE Operation against a key\r\n", ":42\r\n",
                                      "$2\r\nab\r\n"};
    char **keys;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *reply = read_reply(bad[i]);
        assert_int_equal(tse_stream_set_parse(reply, &keys, &n), TSE_INTERNAL);
        assert_null(keys);
        assert_int_equal(n, 0);
        tse_stream_keys_free(keys, n);
        freeReplyObject(reply);
    }
}

static void lengths_are_summed_per_type_over_priorities(void **state)
{
    tse_stream_lengths l;
    redisReply *three = read_reply(":3\r\n"), *four = read_reply(":4\r\n"),
               *ten = read_reply(":10\r\n");

    (void)state;
    assert_int_equal(tse_stream_lengths_init(&l, 3), TSE_OK);
    tse_stream_lengths_add(&l, KEY("sample.created", "1"), three);
    tse_stream_lengths_add(&l, KEY("storage.moved", "2"), four);
    tse_stream_lengths_add(&l, KEY("sample.created", "5"), ten);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.types[0].type, "sample.created"); /* the order added */
    assert_int_equal(find(&l, "sample.created")->length, 13);
    assert_int_equal(find(&l, "storage.moved")->length, 4);
    tse_stream_lengths_cleanup(&l);
    assert_null(l.types);
    assert_int_equal(l.n, 0);
    tse_stream_lengths_cleanup(NULL);
    freeReplyObject(three);
    freeReplyObject(four);
    freeReplyObject(ten);
}

/* A key not ours, a length that is a string, a negative length, an error,
 * no reply, and a type past the room asked for are skipped. */
static void foreign_keys_and_other_shapes_are_skipped(void **state)
{
    tse_stream_lengths l;
    redisReply *two = read_reply(":2\r\n"), *str = read_reply("$1\r\n5\r\n"),
               *neg = read_reply(":-1\r\n"), *err = read_reply("-ERR no\r\n");

    (void)state;
    assert_int_equal(tse_stream_lengths_init(&l, 1), TSE_OK);
    tse_stream_lengths_add(&l, "other", two);
    tse_stream_lengths_add(&l, KEY("a.b", "1"), str);
    tse_stream_lengths_add(&l, KEY("c.d", "1"), neg);
    tse_stream_lengths_add(&l, KEY("c.d", "1"), err);
    tse_stream_lengths_add(&l, KEY("c.d", "1"), NULL);
    tse_stream_lengths_add(&l, KEY("e.f", "3"), two);
    tse_stream_lengths_add(&l, KEY("g.h", "3"), two); /* no room left */
    assert_int_equal(l.n, 1);
    assert_string_equal(l.types[0].type, "e.f");
    assert_int_equal(l.types[0].length, 2);
    tse_stream_lengths_cleanup(&l);
    freeReplyObject(two);
    freeReplyObject(str);
    freeReplyObject(neg);
    freeReplyObject(err);
}

/* ---- appends ---- */

static void an_xadd_reply_is_the_new_entry_id(void **state)
{
    tse_append_reply a;
    redisReply *reply = read_reply("$15\r\n1700000000000-0\r\n");

    (void)state;
    assert_int_equal(tse_append_decode(reply, false, &a), TSE_OK);
    assert_string_equal(a.stream_id, "1700000000000-0");
    assert_null(a.stream_key);
    assert_false(a.duplicate);
    freeReplyObject(reply);
}

static void a_transient_error_is_unavailable_another_internal(void **state)
{
    tse_append_reply a;
    redisReply *reply = read_reply("-LOADING Redis is loading the dataset\r\n");

    (void)state;
    assert_int_equal(tse_append_decode(reply, false, &a), TSE_UNAVAILABLE);
    assert_int_equal(a.status, TSE_UNAVAILABLE);
    assert_string_equal(a.message, "redis: LOADING Redis is loading the dataset");
    freeReplyObject(reply);
    reply = read_reply("-WRONGTYPE Operation against a key\r\n");
    assert_int_equal(tse_append_decode(reply, true, &a), TSE_INTERNAL);
    assert_string_equal(a.message, "redis: WRONGTYPE Operation against a key");
    freeReplyObject(reply);
}

static void a_stored_dedup_reply_is_the_new_entry_id(void **state)
{
    tse_append_reply a;
    redisReply *reply = read_reply("*2\r\n:0\r\n$15\r\n1700000000000-1\r\n");

    (void)state;
    assert_true(tse_dedup_reply_stored(reply));
    assert_int_equal(tse_append_decode(reply, true, &a), TSE_OK);
    assert_false(a.duplicate);
    assert_string_equal(a.stream_id, "1700000000000-1");
    assert_null(a.stream_key);
    freeReplyObject(reply);
}

static void a_duplicate_answers_the_stored_event(void **state)
{
    char resp[256];
    const char *rec = "1700000000000-2 1700000000.123456789 " KEY("a.b", "2");
    tse_append_reply a;
    redisReply *reply;

    (void)state;
    snprintf(resp, sizeof(resp), "*2\r\n:1\r\n$%zu\r\n%s\r\n", strlen(rec), rec);
    reply = read_reply(resp);
    assert_false(tse_dedup_reply_stored(reply));
    assert_int_equal(tse_append_decode(reply, true, &a), TSE_OK);
    assert_true(a.duplicate);
    assert_string_equal(a.stream_id, "1700000000000-2");
    assert_string_equal(a.stream_key, KEY("a.b", "2"));
    assert_int_equal(a.published_sec, 1700000000);
    assert_int_equal(a.published_nanos, 123456789);
    freeReplyObject(reply);
}

static void an_old_duplicate_record_holds_the_id_alone(void **state)
{
    tse_append_reply a;
    redisReply *reply = read_reply("*2\r\n:1\r\n$15\r\n1700000000123-0\r\n");

    (void)state;
    assert_int_equal(tse_append_decode(reply, true, &a), TSE_OK);
    assert_true(a.duplicate);
    assert_string_equal(a.stream_id, "1700000000123-0");
    assert_null(a.stream_key);
    assert_int_equal(a.published_sec, 1700000000);
    assert_int_equal(a.published_nanos, 123000000);
    freeReplyObject(reply);
}

static void an_append_reply_of_another_shape_is_internal(void **state)
{
    static const char *const replies[] = {
        ":1\r\n",                         /* XADD answering an integer */
        "*1\r\n:0\r\n",                   /* script: too short */
        "*2\r\n$1\r\n0\r\n$3\r\nabc\r\n", /* script: a string flag */
        "*2\r\n:1\r\n$6\r\nid x.y\r\n",   /* duplicate record: no key */
    };
    tse_append_reply a;

    (void)state;
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        redisReply *reply = read_reply(replies[i]);

        assert_int_equal(tse_append_decode(reply, i > 0, &a), TSE_INTERNAL);
        assert_string_equal(a.message, "redis: unexpected reply to XADD");
        assert_null(a.stream_id);
        freeReplyObject(reply);
    }
}

/* The batch script answers a flat array, two elements per event: 0 and
 * the new id, 1 and the stored record, or 2 and that event's error. */
static void a_batch_reply_answers_each_event_from_its_pair(void **state)
{
    char resp[512];
    const char *rec = "1700000000000-2 1700000000.123456789 " KEY("a.b", "2");
    tse_append_reply a;
    redisReply *reply;

    (void)state;
    snprintf(resp, sizeof(resp),
             "*6\r\n:0\r\n$15\r\n1700000000000-3\r\n:1\r\n$%zu\r\n%s\r\n"
             ":2\r\n$23\r\nWRONGTYPE Operation bad\r\n",
             strlen(rec), rec);
    reply = read_reply(resp);
    assert_int_equal(tse_append_batch_decode(reply, 3, 0, &a), TSE_OK);
    assert_false(a.duplicate);
    assert_string_equal(a.stream_id, "1700000000000-3");
    assert_null(a.stream_key);
    assert_int_equal(tse_append_batch_decode(reply, 3, 1, &a), TSE_OK);
    assert_true(a.duplicate);
    assert_string_equal(a.stream_id, "1700000000000-2");
    assert_string_equal(a.stream_key, KEY("a.b", "2"));
    assert_int_equal(a.published_nanos, 123456789);
    assert_int_equal(tse_append_batch_decode(reply, 3, 2, &a), TSE_INTERNAL);
    assert_string_equal(a.message, "redis: WRONGTYPE Operation bad");
    /* Asked for another count of events than the reply answers. */
    assert_int_equal(tse_append_batch_decode(reply, 2, 0, &a), TSE_INTERNAL);
    assert_string_equal(a.message, "redis: unexpected reply to the batch script");
    assert_int_equal(tse_append_batch_decode(reply, 6, 0, &a), TSE_INTERNAL);
    freeReplyObject(reply);
    /* An error reply fails every event alike. */
    reply = read_reply("-BUSY Redis is busy running a script\r\n");
    assert_int_equal(tse_append_batch_decode(reply, 3, 1, &a), TSE_UNAVAILABLE);
    assert_string_equal(a.message, "redis: BUSY Redis is busy running a script");
    freeReplyObject(reply);
}

static void a_batch_reply_pair_of_another_shape_is_internal(void **state)
{
    static const char *const replies[] = {
        "*2\r\n:3\r\n$3\r\nabc\r\n",             /* an unknown code */
        "*2\r\n$1\r\n0\r\n$3\r\nabc\r\n",        /* a string code */
        "*2\r\n:0\r\n:5\r\n",                    /* an integer id */
        "*2\r\n:1\r\n$6\r\nid x.y\r\n",          /* duplicate record: no key */
        "*2\r\n*2\r\n:0\r\n$3\r\nabc\r\n:0\r\n", /* the nested form of old */
        "*1\r\n*2\r\n:0\r\n$3\r\nabc\r\n",       /* ditto, one per event */
    };
    tse_append_reply a;

    (void)state;
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        redisReply *reply = read_reply(replies[i]);

        assert_int_equal(tse_append_batch_decode(reply, 1, 0, &a), TSE_INTERNAL);
        assert_string_equal(a.message, "redis: unexpected reply to the batch script");
        assert_null(a.stream_id);
        freeReplyObject(reply);
    }
}

/* ---- command builders ---- */

/* cmd's arguments equal want (NUL-terminated strings, then the envelope). */
static void assert_args(const tse_cmd *c, const char *const *want, int n)
{
    assert_int_equal(c->argc, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(c->lens[i], strlen(want[i]));
        assert_memory_equal(c->argv[i], want[i], c->lens[i]);
    }
}

static void a_plain_append_is_one_xadd_with_three_fields(void **state)
{
    static const uint8_t env[] = {0x0a, 0x00, 0x0d};
    tse_append a = {.stream_key = "k",
                    .event_id = "e1",
                    .event_type = "a.b",
                    .envelope = env,
                    .envelope_len = sizeof(env)};
    const char *want[] = {"XADD", "k", "*", "id", "e1", "type", "a.b", "event"};
    tse_cmd c;

    (void)state;
    tse_append_command(&a, &c);
    assert_int_equal(c.argc, 9);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(c.lens[i], strlen(want[i]));
        assert_memory_equal(c.argv[i], want[i], c.lens[i]);
    }
    /* The envelope as is, NUL and all. */
    assert_int_equal(c.lens[8], sizeof(env));
    assert_memory_equal(c.argv[8], env, sizeof(env));
}

static void a_client_id_append_runs_the_dedup_script(void **state)
{
    tse_append a = {.stream_key = "k",
                    .dedup_key = "d",
                    .script_sha = "sha",
                    .event_id = "e1",
                    .event_type = "a.b",
                    .envelope = (const uint8_t *)"x",
                    .envelope_len = 1,
                    .dedup_window_ms = 86400000,
                    .timestamp_sec = 1700000000,
                    .timestamp_nanos = 5};
    const char *want[] = {"EVALSHA", "sha", "2", "k", "d", "86400000", "1700000000.000000005",
                          "e1",      "a.b", "x"};
    tse_cmd c;

    (void)state;
    tse_append_command(&a, &c);
    assert_args(&c, want, 10);
}

static void trim_is_by_length_when_set_else_by_age(void **state)
{
    const char *by_len[] = {"XTRIM", "k", "MAXLEN", "~", "1000"};
    const char *by_age[] = {"XTRIM", "k", "MINID", "~", "1700000000000"};
    const char *at_zero[] = {"XTRIM", "k", "MINID", "~", "0"};
    tse_cmd c;

    (void)state;
    tse_trim_command("k", 1000, 1700000000000, &c);
    assert_args(&c, by_len, 5);
    tse_trim_command("k", 0, 1700000000000, &c);
    assert_args(&c, by_age, 5);
    tse_trim_command("k", 0, -5, &c);
    assert_args(&c, at_zero, 5);
}

static void a_new_stream_is_registered_in_the_stream_set(void **state)
{
    const char *want[] = {"SADD", TSE_STREAMS_KEY, "k"};
    tse_cmd c;

    (void)state;
    tse_register_stream_command("k", &c);
    assert_args(&c, want, 3);
}

static void a_generic_command_keeps_its_arguments_within_bounds(void **state)
{
    const char *argv[TSE_CMD_MAX_ARGS + 1];
    size_t lens[] = {4, 1};
    tse_cmd c;

    (void)state;
    for (int i = 0; i <= TSE_CMD_MAX_ARGS; i++)
        argv[i] = "PING";
    assert_true(tse_cmd_from_argv(2, argv, lens, &c));
    assert_int_equal(c.lens[1], 1);
    assert_true(tse_cmd_from_argv(TSE_CMD_MAX_ARGS, argv, NULL, &c));
    assert_false(tse_cmd_from_argv(TSE_CMD_MAX_ARGS + 1, argv, NULL, &c));
    assert_false(tse_cmd_from_argv(0, argv, NULL, &c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lengths_are_one_smembers_then_one_xlen_per_stream),
        cmocka_unit_test(the_stream_set_keeps_only_stream_keys_of_ours),
        cmocka_unit_test(an_error_or_other_reply_to_smembers_decodes_nothing),
        cmocka_unit_test(lengths_are_summed_per_type_over_priorities),
        cmocka_unit_test(foreign_keys_and_other_shapes_are_skipped),
        cmocka_unit_test(an_xadd_reply_is_the_new_entry_id),
        cmocka_unit_test(a_transient_error_is_unavailable_another_internal),
        cmocka_unit_test(a_stored_dedup_reply_is_the_new_entry_id),
        cmocka_unit_test(a_duplicate_answers_the_stored_event),
        cmocka_unit_test(an_old_duplicate_record_holds_the_id_alone),
        cmocka_unit_test(an_append_reply_of_another_shape_is_internal),
        cmocka_unit_test(a_batch_reply_answers_each_event_from_its_pair),
        cmocka_unit_test(a_batch_reply_pair_of_another_shape_is_internal),
        cmocka_unit_test(a_plain_append_is_one_xadd_with_three_fields),
        cmocka_unit_test(a_client_id_append_runs_the_dedup_script),
        cmocka_unit_test(trim_is_by_length_when_set_else_by_age),
        cmocka_unit_test(a_new_stream_is_registered_in_the_stream_set),
        cmocka_unit_test(a_generic_command_keeps_its_arguments_within_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
