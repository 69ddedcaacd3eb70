/*
 * test_broker_resp.c - RESP encoding of commands (src/storage/resp.c): the
 * exact bytes for small cases, the size at every change in the number of
 * length digits, and binary arguments (NUL, CR LF) read back intact by
 * hiredis's own protocol reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "storage/resp.h"

/* Encodes argv with tse_resp_format, checking its length against
 * tse_resp_size. Caller frees. */
static char *encode(int argc, const char *const *argv, const size_t *lens, size_t *len)
{
    char *buf = tse_resp_format(argc, argv, lens, len);

    assert_non_null(buf);
    assert_int_equal(*len, tse_resp_size(argc, lens));
    return buf;
}

/* The bytes as hiredis reads them: one array of argc bulk strings equal to
 * argv, and nothing left over. */
static void assert_reads_back(const char *buf, size_t len, int argc, const char *const *argv,
                              const size_t *lens)
{
    redisReader *r = redisReaderCreate();
    void *out = NULL;
    redisReply *reply;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, buf, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    reply = out;
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, argc);
    for (int i = 0; i < argc; i++) {
        assert_int_equal(reply->element[i]->type, REDIS_REPLY_STRING);
        assert_int_equal(reply->element[i]->len, lens[i]);
        assert_memory_equal(reply->element[i]->str, argv[i], lens[i]);
    }
    freeReplyObject(reply);
    out = NULL;
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    assert_null(out); /* no byte beyond the command */
    redisReaderFree(r);
}

static void one_argument_is_an_array_of_one_bulk_string(void **state)
{
    const char *argv[] = {"PING"};
    size_t lens[] = {4}, len;
    char *buf;

    (void)state;
    buf = encode(1, argv, lens, &len);
    assert_int_equal(len, strlen("*1\r\n$4\r\nPING\r\n"));
    assert_memory_equal(buf, "*1\r\n$4\r\nPING\r\n", len);
    free(buf);
}

static void each_argument_is_a_length_prefixed_bulk_string(void **state)
{
    const char *argv[] = {"XADD", "k", "*", "id", "x"};
    size_t lens[] = {4, 1, 1, 2, 1}, len;
    static const char want[] = "*5\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n*\r\n$2\r\nid\r\n$1\r\nx\r\n";
    char *buf;

    (void)state;
    buf = encode(5, argv, lens, &len);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buf, want, len);
    free(buf);
}

static void empty_argument_is_a_bulk_string_of_length_zero(void **state)
{
    const char *argv[] = {"SET", "k", ""};
    size_t lens[] = {3, 1, 0}, len;
    static const char want[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";
    char *buf;

    (void)state;
    buf = encode(3, argv, lens, &len);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(buf, want, len);
    assert_reads_back(buf, len, 3, argv, lens);
    free(buf);
}

static void no_argument_is_an_empty_array(void **state)
{
    size_t len;
    char *buf;

    (void)state;
    buf = encode(0, NULL, NULL, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "*0\r\n", 4);
    free(buf);
}

/* Lengths where the decimal header grows a digit: 9/10, 99/100, ... */
static void lengths_at_every_digit_boundary_are_sized_and_written_exactly(void **state)
{
    static const size_t sizes[] = {0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 9999, 10000, 100000};
    char *arg = malloc(100000);

    (void)state;
    assert_non_null(arg);
    memset(arg, 'a', 100000);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        const char *argv[] = {"SET", arg};
        size_t lens[] = {3, sizes[i]}, len;
        char header[32];
        int n = snprintf(header, sizeof(header), "$%zu\r\n", sizes[i]);
        char *buf = encode(2, argv, lens, &len);

        /* "*2\r\n$3\r\nSET\r\n" (13 bytes), the header, the bytes, CR LF. */
        assert_int_equal(len, 13 + (size_t)n + sizes[i] + 2);
        assert_memory_equal(buf + 13, header, (size_t)n);
        assert_reads_back(buf, len, 2, argv, lens);
        free(buf);
    }
    free(arg);
}

/* Argument counts where the array header grows a digit. */
static void argument_counts_at_digit_boundaries_are_sized_and_written_exactly(void **state)
{
    static const int counts[] = {9, 10, 99, 100, 1000};
    const char **argv = calloc(1000, sizeof(*argv));
    size_t *lens = calloc(1000, sizeof(*lens));

    (void)state;
    assert_non_null(argv);
    assert_non_null(lens);
    for (int i = 0; i < 1000; i++) {
        argv[i] = "v";
        lens[i] = 1;
    }
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        size_t len;
        char *buf = encode(counts[k], argv, lens, &len);
        char header[16];
        int n = snprintf(header, sizeof(header), "*%d\r\n", counts[k]);

        assert_int_equal(len, (size_t)n + (size_t)counts[k] * strlen("$1\r\nv\r\n"));
        assert_memory_equal(buf, header, (size_t)n);
        assert_reads_back(buf, len, counts[k], argv, lens);
        free(buf);
    }
    free(argv);
    free(lens);
}

/* Envelopes are protobuf bytes: NUL, CR, LF and "$" go in unescaped. */
static void binary_arguments_are_carried_byte_for_byte(void **state)
{
    static const char envelope[] = {'\0', '\r', '\n', '$', '*', '\r', '\n', '\xff', '\0'};
    const char *argv[] = {"XADD", "k", "event", envelope};
    size_t lens[] = {4, 1, 5, sizeof(envelope)}, len;
    char *buf;

    (void)state;
    buf = encode(4, argv, lens, &len);
    assert_memory_equal(buf + len - 2 - sizeof(envelope), envelope, sizeof(envelope));
    assert_reads_back(buf, len, 4, argv, lens);
    free(buf);
}

/* tse_resp_write fills exactly tse_resp_size bytes and says where it ended. */
static void write_returns_the_end_and_touches_nothing_beyond(void **state)
{
    const char *argv[] = {"GET", "key"};
    size_t lens[] = {3, 3};
    size_t size = tse_resp_size(2, lens);
    char buf[64];

    (void)state;
    assert_true(size < sizeof(buf));
    memset(buf, '#', sizeof(buf));
    assert_ptr_equal(tse_resp_write(buf, 2, argv, lens), buf + size);
    for (size_t i = size; i < sizeof(buf); i++)
        assert_int_equal(buf[i], '#');
    assert_reads_back(buf, size, 2, argv, lens);
}

/* ---- reading: where a reply ends, fed a byte at a time ---- */

/* Feeds the len bytes at resp one more at a time (the walk resumes): the
 * step answers 0 until the last byte, then 1 with the whole length. */
static void assert_ends_exactly_at_its_last_byte(const char *resp, size_t len)
{
    tse_resp_skip s = {0};

    for (size_t n = 0; n < len; n++)
        assert_int_equal(tse_resp_skip_step(&s, resp, n), 0);
    assert_int_equal(tse_resp_skip_step(&s, resp, len), 1);
    assert_int_equal(s.at, len);
}

#define ENDS_AT_LAST_BYTE(lit) assert_ends_exactly_at_its_last_byte(lit, sizeof(lit) - 1)

static void a_reply_is_found_whole_however_its_bytes_arrive(void **state)
{
    (void)state;
    ENDS_AT_LAST_BYTE("+OK\r\n");
    ENDS_AT_LAST_BYTE("-ERR no\r\n");
    ENDS_AT_LAST_BYTE(":-12\r\n");
    ENDS_AT_LAST_BYTE("$-1\r\n");
    ENDS_AT_LAST_BYTE("*-1\r\n");
    ENDS_AT_LAST_BYTE("*0\r\n");
    ENDS_AT_LAST_BYTE("$0\r\n\r\n");
    ENDS_AT_LAST_BYTE("$4\r\na\r\nb\r\n"); /* CR LF inside the bytes */
    /* XREADGROUP's shape, a nil entry in it. */
    ENDS_AT_LAST_BYTE("*1\r\n*2\r\n$3\r\ns:a\r\n*2\r\n"
                      "*2\r\n$3\r\n1-1\r\n*2\r\n$5\r\nevent\r\n$3\r\nabc\r\n"
                      "*2\r\n$3\r\n1-2\r\n*-1\r\n");
}

static void only_the_first_reply_is_walked(void **state)
{
    static const char two[] = "*1\r\n:1\r\n+OK\r\n";
    tse_resp_skip s = {0};

    (void)state;
    assert_int_equal(tse_resp_skip_step(&s, two, sizeof(two) - 1), 1);
    assert_int_equal(s.at, 8);
}

static void bytes_that_are_no_resp_are_refused(void **state)
{
    static const char *const bad[] = {
        "?x\r\n",                    /* no type */
        ":\r\n",                     /* no digits */
        ":1x\r\n",                   /* not a number */
        "$-2\r\n",                   /* a length below nil */
        "$1\r\nab\r\n",              /* bytes longer than said */
        ":1\rx",                     /* CR without LF */
        "$99999999999999999999\r\n", /* overflow */
    };
    tse_resp_skip s;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&s, 0, sizeof(s));
        assert_int_equal(tse_resp_skip_step(&s, bad[i], strlen(bad[i])), -1);
    }
}

static void nesting_deeper_than_the_limit_is_refused(void **state)
{
    char deep[4 * (TSE_RESP_SKIP_DEPTH + 1) + 8];
    size_t n = 0;
    tse_resp_skip s = {0};

    (void)state;
    for (int i = 0; i <= TSE_RESP_SKIP_DEPTH; i++) {
        memcpy(deep + n, "*1\r\n", 4);
        n += 4;
    }
    memcpy(deep + n, ":1\r\n", 4);
    n += 4;
    assert_int_equal(tse_resp_skip_step(&s, deep, n), -1);
    /* At the limit itself it is fine. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(tse_resp_skip_step(&s, deep + 4, n - 4), 1);
}

static void the_cursor_reads_arrays_and_bulks_and_skips_the_rest(void **state)
{
    static const char r[] = "*3\r\n$2\r\nab\r\n$-1\r\n*1\r\n:7\r\n";
    tse_resp_cursor c = {r, r + sizeof(r) - 1};
    const char *s;
    size_t len;
    long long n;

    (void)state;
    assert_false(tse_resp_read_bulk(&c, &s, &len)); /* an array: nothing read */
    assert_ptr_equal(c.p, r);
    assert_true(tse_resp_read_array(&c, &n));
    assert_int_equal(n, 3);
    assert_true(tse_resp_read_bulk(&c, &s, &len));
    assert_int_equal(len, 2);
    assert_memory_equal(s, "ab", 2);
    assert_true(tse_resp_read_bulk(&c, &s, &len));
    assert_null(s);
    assert_true(tse_resp_skip_value(&c));
    assert_ptr_equal(c.p, c.end);
    assert_false(tse_resp_skip_value(&c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_argument_is_an_array_of_one_bulk_string),
        cmocka_unit_test(each_argument_is_a_length_prefixed_bulk_string),
        cmocka_unit_test(empty_argument_is_a_bulk_string_of_length_zero),
        cmocka_unit_test(no_argument_is_an_empty_array),
        cmocka_unit_test(lengths_at_every_digit_boundary_are_sized_and_written_exactly),
        cmocka_unit_test(argument_counts_at_digit_boundaries_are_sized_and_written_exactly),
        cmocka_unit_test(binary_arguments_are_carried_byte_for_byte),
        cmocka_unit_test(write_returns_the_end_and_touches_nothing_beyond),
        cmocka_unit_test(a_reply_is_found_whole_however_its_bytes_arrive),
        cmocka_unit_test(only_the_first_reply_is_walked),
        cmocka_unit_test(bytes_that_are_no_resp_are_refused),
        cmocka_unit_test(nesting_deeper_than_the_limit_is_refused),
        cmocka_unit_test(the_cursor_reads_arrays_and_bulks_and_skips_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
