/*
 * test_storage_group_ops.c - the decoding of the replies the delivery
 * engine's storage operations get (src/storage/group_ops.c, dlq_ops.c,
 * subs_ops.c), built from RESP bytes by hiredis's reader exactly as a
 * connection hands them over (XREADGROUP's read from the RESP bytes
 * themselves, as the raw read hands them over): the expected shapes, and replies of other
 * shapes (error replies, nil, wrong element types, short arrays), which
 * must give a clear status and never a crash. An operation on no
 * connection answers UNAVAILABLE without I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "../support/resp_reply.h"
#include "storage/dlq_ops.h"
#include "storage/group_ops.h"
#include "storage/subs_ops.h"

static const char *const keys2[] = {"s:a", "s:b"};

/* ---- XREADGROUP ---------------------------------------------------------- */

static void a_read_gives_each_entry_with_its_stream_and_envelope(void **state)
{
    /* s:b gave two entries, s:a one. */
    static const char r[] = ("*2\r\n"
                             "*2\r\n$3\r\ns:b\r\n*2\r\n"
                             "*2\r\n$3\r\n1-1\r\n*4\r\n$4\r\ntype\r\n$1\r\nt\r\n$5\r\nevent\r\n$"
                             "3\r\nabc\r\n"
                             "*2\r\n$3\r\n1-2\r\n*2\r\n$5\r\nevent\r\n$2\r\n\000z\r\n"
                             "*2\r\n$3\r\ns:a\r\n*1\r\n"
                             "*2\r\n$3\r\n2-0\r\n*2\r\n$5\r\nevent\r\n$1\r\nq\r\n");
    tse_group_entries out = {0};
    size_t per[2];

    (void)state;
    assert_int_equal(tse_group_read_parse(r, sizeof(r) - 1, keys2, 2, &out, per), TSE_OK);
    assert_int_equal(out.n, 3);
    assert_int_equal(per[0], 1);
    assert_int_equal(per[1], 2);
    assert_int_equal(out.v[0].stream, 1);
    assert_string_equal(out.v[0].id, "1-1");
    assert_int_equal(out.v[0].envelope_len, 3);
    assert_memory_equal(out.v[0].envelope, "abc", 3);
    assert_int_equal(out.v[0].attempt, 1);
    /* Binary-safe: a NUL in the envelope stays. */
    assert_int_equal(out.v[1].envelope_len, 2);
    assert_memory_equal(out.v[1].envelope, "\0z", 2);
    assert_int_equal(out.v[2].stream, 0);
    assert_string_equal(out.v[2].id, "2-0");
    tse_group_entries_cleanup(&out);
    tse_group_entries_cleanup(&out); /* emptied: a second cleanup is a no-op */
}

static void a_nil_read_is_nothing_new(void **state)
{
    static const char r[] = ("*-1\r\n");
    tse_group_entries out = {0};
    size_t per[2] = {7, 7};

    (void)state;
    assert_int_equal(tse_group_read_parse(r, sizeof(r) - 1, keys2, 2, &out, per), TSE_OK);
    assert_int_equal(out.n, 0);
    assert_int_equal(per[0], 0);
    assert_int_equal(per[1], 0);
}

static void a_read_error_reply_is_internal(void **state)
{
    static const char r[] = ("-NOGROUP No such key\r\n");
    tse_group_entries out = {0};

    (void)state;
    assert_int_equal(tse_group_read_parse(r, sizeof(r) - 1, keys2, 2, &out, NULL), TSE_INTERNAL);
    assert_int_equal(out.n, 0);
}

static void entries_without_an_envelope_or_of_another_shape_are_skipped(void **state)
{
    /* A deleted entry (nil fields), an entry without "event", an integer
     * where an entry should be, a stream not asked for, a stream element
     * of one element, and a non-string event value. */
    static const char r[] = ("*4\r\n"
                             "*2\r\n$3\r\ns:a\r\n*4\r\n"
                             "*2\r\n$3\r\n1-1\r\n*-1\r\n"
                             "*2\r\n$3\r\n1-2\r\n*2\r\n$4\r\ntype\r\n$1\r\nt\r\n"
                             ":5\r\n"
                             "*2\r\n$3\r\n1-3\r\n*2\r\n$5\r\nevent\r\n:1\r\n"
                             "*2\r\n$3\r\ns:x\r\n*1\r\n"
                             "*2\r\n$3\r\n9-9\r\n*2\r\n$5\r\nevent\r\n$1\r\nq\r\n"
                             "*1\r\n$3\r\ns:b\r\n"
                             ":3\r\n");
    tse_group_entries out = {0};
    size_t per[2];

    (void)state;
    assert_int_equal(tse_group_read_parse(r, sizeof(r) - 1, keys2, 2, &out, per), TSE_OK);
    assert_int_equal(out.n, 0);
    assert_int_equal(per[0], 4); /* counted: the stream gave them */
    assert_int_equal(per[1], 0);
}

/* An entry keeps its id in place (TSE_GROUP_ID_MAX with the NUL): one
 * whose id is longer than any Redis makes is skipped, counted, and the
 * next entry is read; an id of 47 characters is kept whole. */
static void an_id_longer_than_any_redis_makes_is_skipped(void **state)
{
    char r[512], id47[48], id48[49];
    tse_group_entries out = {0};
    size_t per[2];
    int len;

    (void)state;
    memset(id47, '7', 47);
    id47[47] = '\0';
    memset(id48, '8', 48);
    id48[48] = '\0';
    len = snprintf(r, sizeof(r),
                   "*1\r\n*2\r\n$3\r\ns:a\r\n*2\r\n"
                   "*2\r\n$48\r\n%s\r\n*2\r\n$5\r\nevent\r\n$1\r\nx\r\n"
                   "*2\r\n$47\r\n%s\r\n*2\r\n$5\r\nevent\r\n$1\r\ny\r\n",
                   id48, id47);
    assert_int_equal(tse_group_read_parse(r, (size_t)len, keys2, 2, &out, per), TSE_OK);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.v[0].id, id47);
    assert_memory_equal(out.v[0].envelope, "y", 1);
    assert_int_equal(per[0], 2);
    tse_group_entries_cleanup(&out);
}

/* An entry id that is empty or holds a NUL byte (Redis makes neither)
 * would become an empty or cut ack id: the entry is skipped, counted, and
 * the next one read. Found by fuzz_redis_reply (regressions/redis_reply/
 * entry-id-with-nul). */
static void an_empty_id_or_one_with_a_nul_is_skipped(void **state)
{
    static const char r[] = "*1\r\n*2\r\n$3\r\ns:a\r\n*3\r\n"
                            "*2\r\n$3\r\n\0\0"
                            "1\r\n*2\r\n$5\r\nevent\r\n$1\r\nx\r\n"
                            "*2\r\n$0\r\n\r\n*2\r\n$5\r\nevent\r\n$1\r\ny\r\n"
                            "*2\r\n$3\r\n2-0\r\n*2\r\n$5\r\nevent\r\n$1\r\nz\r\n";
    tse_group_entries out = {0};
    size_t per[2];

    (void)state;
    assert_int_equal(tse_group_read_parse(r, sizeof(r) - 1, keys2, 2, &out, per), TSE_OK);
    assert_int_equal(out.n, 1);
    assert_string_equal(out.v[0].id, "2-0");
    assert_memory_equal(out.v[0].envelope, "z", 1);
    assert_int_equal(per[0], 3);
    tse_group_entries_cleanup(&out);
}

static void a_read_cut_short_or_malformed_is_internal_at_every_length(void **state)
{
    static const char r[] = "*1\r\n*2\r\n$3\r\ns:a\r\n*1\r\n"
                            "*2\r\n$3\r\n1-1\r\n*2\r\n$5\r\nevent\r\n$3\r\nabc\r\n";
    static const char bad[] = "*1\r\n*2\r\n$3\r\ns:a\r\n*1\r\n"
                              "*2\r\n$3\r\n1-1\r\n*2\r\n$5\r\nevent\r\n$9\r\nabc\r\n";
    tse_group_entries out = {0};

    (void)state;
    /* Every proper prefix of a good reply: no entry read past the end. */
    for (size_t len = 0; len < sizeof(r) - 1; len++) {
        assert_int_equal(tse_group_read_parse(r, len, keys2, 2, &out, NULL), TSE_INTERNAL);
        tse_group_entries_cleanup(&out);
    }
    assert_int_equal(tse_group_read_parse(r, sizeof(r) - 1, keys2, 2, &out, NULL), TSE_OK);
    assert_int_equal(out.n, 1);
    tse_group_entries_cleanup(&out);
    /* A length that runs past the bytes. */
    assert_int_equal(tse_group_read_parse(bad, sizeof(bad) - 1, keys2, 2, &out, NULL),
                     TSE_INTERNAL);
    tse_group_entries_cleanup(&out);
}

static void no_connection_is_unavailable_without_io(void **state)
{
    tse_group_entries out = {0};
    tse_pending_list p = {0};
    tse_strings s = {0};
    uint32_t acked = 7;
    long long n = 7;

    (void)state;
    assert_true(tse_conn_lost(NULL));
    assert_int_equal(tse_group_read(NULL, "g", "c", keys2, 2, 10, &out, NULL), TSE_UNAVAILABLE);
    assert_int_equal(tse_group_pending(NULL, "s:a", "g", 100, 10, &p), TSE_UNAVAILABLE);
    assert_int_equal(tse_group_ack_runs(NULL, "g", keys2, keys2, 2, &acked), TSE_UNAVAILABLE);
    assert_int_equal(acked, 0);
    assert_int_equal(tse_streams_list(NULL, &s), TSE_UNAVAILABLE);
    assert_int_equal(tse_dlq_length(NULL, "sub", &n), TSE_UNAVAILABLE);
    assert_int_equal(n, 0);
    tse_conn_close(NULL);
}

/* ---- XCLAIM -------------------------------------------------------------- */

static void a_claim_counts_each_entrys_attempt(void **state)
{
    redisReply *r = read_reply("*2\r\n"
                               "*2\r\n$3\r\n1-2\r\n*2\r\n$5\r\nevent\r\n$1\r\nb\r\n"
                               "*2\r\n$3\r\n1-9\r\n*2\r\n$5\r\nevent\r\n$1\r\nc\r\n");
    const char *ids[] = {"1-1", "1-2"};
    const long long delivered[] = {1, 4};
    tse_group_entries out = {0};

    (void)state;
    assert_int_equal(tse_group_claim_parse(r, ids, delivered, 2, &out), TSE_OK);
    assert_int_equal(out.n, 2);
    assert_string_equal(out.v[0].id, "1-2");
    assert_int_equal(out.v[0].attempt, 5);
    assert_int_equal(out.v[0].stream, 0);
    /* An id not asked for counts as delivered once before. */
    assert_int_equal(out.v[1].attempt, 2);
    tse_group_entries_cleanup(&out);
    freeReplyObject(r);
}

static void a_claim_error_reply_is_internal(void **state)
{
    redisReply *r = read_reply("-ERR wrong\r\n");
    tse_group_entries out = {0};

    (void)state;
    assert_int_equal(tse_group_claim_parse(r, NULL, NULL, 0, &out), TSE_INTERNAL);
    assert_int_equal(out.n, 0);
    freeReplyObject(r);
}

/* ---- XPENDING ------------------------------------------------------------ */

static void pending_entries_give_id_idle_and_deliveries(void **state)
{
    redisReply *r = read_reply("*3\r\n"
                               "*4\r\n$3\r\n1-1\r\n$1\r\nc\r\n:1500\r\n:3\r\n"
                               "*3\r\n$3\r\n1-2\r\n$1\r\nc\r\n:1500\r\n"
                               "*4\r\n$3\r\n1-3\r\n$1\r\nc\r\n$2\r\nno\r\n:1\r\n");
    tse_pending_list p = {0};

    (void)state;
    assert_int_equal(tse_group_pending_parse(r, &p), TSE_OK);
    assert_int_equal(p.n, 1); /* the short one and the one with a string idle are skipped */
    assert_string_equal(p.v[0].id, "1-1");
    assert_int_equal(p.v[0].idle_ms, 1500);
    assert_int_equal(p.v[0].delivered, 3);
    tse_pending_list_cleanup(&p);
    freeReplyObject(r);
}

static void a_pending_error_reply_is_internal_and_empty(void **state)
{
    redisReply *r = read_reply("-NOGROUP x\r\n");
    tse_pending_list p = {0};

    (void)state;
    assert_int_equal(tse_group_pending_parse(r, &p), TSE_INTERNAL);
    assert_int_equal(p.n, 0);
    freeReplyObject(r);
}

static void the_pending_summary_gives_the_oldest_entrys_time(void **state)
{
    redisReply *some = read_reply("*4\r\n:2\r\n$6\r\n1500-0\r\n$6\r\n1600-3\r\n*0\r\n");
    redisReply *none = read_reply("*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n");
    redisReply *bad = read_reply("*2\r\n:0\r\n:1\r\n");
    long long ms;

    (void)state;
    assert_int_equal(tse_group_oldest_pending_parse(some, &ms), TSE_OK);
    assert_int_equal(ms, 1500);
    assert_int_equal(tse_group_oldest_pending_parse(none, &ms), TSE_OK);
    assert_int_equal(ms, -1);
    assert_int_equal(tse_group_oldest_pending_parse(bad, &ms), TSE_INTERNAL);
    assert_int_equal(ms, -1);
    freeReplyObject(some);
    freeReplyObject(none);
    freeReplyObject(bad);
}

/* ---- XINFO --------------------------------------------------------------- */

static void group_info_finds_its_group_among_others(void **state)
{
    redisReply *r = read_reply("*2\r\n"
                               "*8\r\n$4\r\nname\r\n$5\r\nother\r\n$7\r\npending\r\n:9\r\n"
                               "$9\r\nconsumers\r\n:9\r\n$3\r\nlag\r\n:9\r\n"
                               "*8\r\n$4\r\nname\r\n$4\r\nmine\r\n$7\r\npending\r\n:2\r\n"
                               "$9\r\nconsumers\r\n:1\r\n$3\r\nlag\r\n$-1\r\n");
    tse_group_info g;

    (void)state;
    assert_int_equal(tse_group_info_parse(r, "mine", &g), TSE_OK);
    assert_true(g.found);
    assert_int_equal(g.pending, 2);
    assert_int_equal(g.consumers, 1);
    assert_false(g.lag_known); /* nil: Redis cannot say */
    assert_int_equal(tse_group_info_parse(r, "absent", &g), TSE_OK);
    assert_false(g.found);
    freeReplyObject(r);
}

static void group_info_of_another_shape_finds_nothing(void **state)
{
    redisReply *err = read_reply("-ERR no such key\r\n");
    redisReply *odd = read_reply("*2\r\n:1\r\n*3\r\n$4\r\nname\r\n$4\r\nmine\r\n$7\r\npending\r\n");
    tse_group_info g;

    (void)state;
    assert_int_equal(tse_group_info_parse(err, "mine", &g), TSE_INTERNAL);
    assert_false(g.found);
    /* An odd field count: the pair without a value is ignored. */
    assert_int_equal(tse_group_info_parse(odd, "mine", &g), TSE_OK);
    assert_true(g.found);
    assert_int_equal(g.pending, 0);
    freeReplyObject(err);
    freeReplyObject(odd);
}

static void consumers_give_name_pending_and_idle(void **state)
{
    redisReply *r = read_reply("*3\r\n"
                               "*6\r\n$4\r\nname\r\n$2\r\nc1\r\n$7\r\npending\r\n:0\r\n"
                               "$4\r\nidle\r\n:7000\r\n"
                               "*4\r\n$7\r\npending\r\n:1\r\n$4\r\nidle\r\n:1\r\n"
                               "*2\r\n$4\r\nname\r\n$2\r\nc2\r\n");
    tse_consumer_list l = {0};

    (void)state;
    assert_int_equal(tse_group_consumers_parse(r, &l), TSE_OK);
    assert_int_equal(l.n, 2); /* the nameless one is skipped */
    assert_string_equal(l.v[0].name, "c1");
    assert_int_equal(l.v[0].pending, 0);
    assert_int_equal(l.v[0].idle_ms, 7000);
    assert_string_equal(l.v[1].name, "c2");
    assert_int_equal(l.v[1].pending, -1); /* not said: never taken for 0 */
    tse_consumer_list_cleanup(&l);
    freeReplyObject(r);
}

/* ---- scripts ------------------------------------------------------------- */

static void the_lag_answer_is_decoded_or_refused(void **state)
{
    redisReply *ok = read_reply("*6\r\n:12\r\n:1\r\n:40\r\n$3\r\n0-0\r\n$3\r\n5-1\r\n:30\r\n");
    redisReply *gone = read_reply("*1\r\n:-1\r\n");
    redisReply *bad = read_reply("*5\r\n:12\r\n$1\r\n1\r\n:40\r\n$3\r\n0-0\r\n$3\r\n5-1\r\n");
    tse_lag_answer a;

    (void)state;
    assert_int_equal(tse_group_lag_parse(ok, &a), TSE_OK);
    assert_int_equal(a.lag, 12);
    assert_int_equal(a.how, 1);
    assert_int_equal(a.entries_added, 40);
    assert_int_equal(a.read, 30);
    assert_string_equal(a.last_id, "5-1");
    assert_int_equal(tse_group_lag_parse(gone, &a), TSE_NOT_FOUND);
    assert_int_equal(tse_group_lag_parse(bad, &a), TSE_INTERNAL);
    freeReplyObject(ok);
    freeReplyObject(gone);
    freeReplyObject(bad);
}

static void the_acked_position_is_before_the_oldest_pending_entry(void **state)
{
    redisReply *pending = read_reply("*2\r\n$4\r\n9-00\r\n$3\r\n5-0\r\n");
    redisReply *none = read_reply("*2\r\n$3\r\n9-0\r\n$0\r\n\r\n");
    redisReply *nogroup = read_reply("$-1\r\n");
    redisReply *bad = read_reply("*2\r\n:1\r\n:2\r\n");
    char pos[48];

    (void)state;
    assert_int_equal(tse_group_acked_position_parse(pending, pos, sizeof(pos)), TSE_OK);
    assert_string_equal(pos, "4-18446744073709551615");
    assert_int_equal(tse_group_acked_position_parse(none, pos, sizeof(pos)), TSE_OK);
    assert_string_equal(pos, "9-0");
    assert_int_equal(tse_group_acked_position_parse(nogroup, pos, sizeof(pos)), TSE_NOT_FOUND);
    assert_string_equal(pos, "0-0");
    assert_int_equal(tse_group_acked_position_parse(bad, pos, sizeof(pos)), TSE_INTERNAL);
    assert_string_equal(pos, "0-0");
    freeReplyObject(pending);
    freeReplyObject(none);
    freeReplyObject(nogroup);
    freeReplyObject(bad);
}

/* ---- whole entries (dead letters) ---------------------------------------- */

static void stream_entries_keep_every_field_binary_safe(void **state)
{
    redisReply *r = read_reply("*3\r\n"
                               "*2\r\n$3\r\n1-1\r\n*4\r\n$10\r\ndlq_stream\r\n$3\r\ns:a\r\n"
                               "$5\r\nevent\r\n$3\r\na\000b\r\n"
                               "*2\r\n$3\r\n1-2\r\n*3\r\n$1\r\nk\r\n$1\r\nv\r\n$4\r\nlone\r\n"
                               ":4\r\n");
    tse_stream_entries out = {0};
    size_t len = 0;

    (void)state;
    assert_int_equal(tse_stream_entries_parse(r, &out), TSE_OK);
    assert_int_equal(out.n, 2); /* the integer is no entry */
    assert_string_equal(out.v[0].id, "1-1");
    assert_int_equal(out.v[0].n_fields, 2);
    assert_string_equal(tse_stream_entry_field(&out.v[0], "dlq_stream", NULL), "s:a");
    assert_memory_equal(tse_stream_entry_field(&out.v[0], "event", &len), "a\0b", 3);
    assert_int_equal(len, 3);
    assert_null(tse_stream_entry_field(&out.v[0], "dlq_id", NULL));
    assert_int_equal(out.v[1].n_fields, 1); /* the odd field out is dropped */
    tse_stream_entries_cleanup(&out);
    freeReplyObject(r);
}

static void stream_entries_of_an_error_reply_are_internal(void **state)
{
    redisReply *r = read_reply("-WRONGTYPE x\r\n");
    tse_stream_entries out = {0};

    (void)state;
    assert_int_equal(tse_stream_entries_parse(r, &out), TSE_INTERNAL);
    assert_int_equal(out.n, 0);
    freeReplyObject(r);
}

/* ---- strings, blobs, TIME ------------------------------------------------ */

static void string_arrays_skip_what_is_not_a_string(void **state)
{
    redisReply *r = read_reply("*3\r\n$1\r\na\r\n:1\r\n$-1\r\n");
    redisReply *err = read_reply("-ERR x\r\n");
    tse_strings s = {0};
    tse_blobs b = {0};

    (void)state;
    assert_int_equal(tse_strings_parse(r, &s), TSE_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0], "a");
    assert_int_equal(tse_blobs_parse(r, &b), TSE_OK);
    assert_int_equal(b.n, 1);
    assert_int_equal(tse_strings_parse(err, &s), TSE_INTERNAL);
    assert_int_equal(s.n, 0);
    tse_strings_cleanup(&s);
    tse_blobs_cleanup(&b);
    freeReplyObject(r);
    freeReplyObject(err);
}

static void time_is_seconds_and_microseconds(void **state)
{
    redisReply *r = read_reply("*2\r\n$10\r\n1700000000\r\n$6\r\n123456\r\n");
    redisReply *bad = read_reply("*1\r\n$10\r\n1700000000\r\n");
    int64_t sec;
    int32_t nanos;

    (void)state;
    assert_int_equal(tse_redis_time_parse(r, &sec, &nanos), TSE_OK);
    assert_int_equal(sec, 1700000000);
    assert_int_equal(nanos, 123456000);
    assert_int_equal(tse_redis_time_parse(bad, &sec, &nanos), TSE_INTERNAL);
    assert_int_equal(sec, 0);
    freeReplyObject(r);
    freeReplyObject(bad);
}

static void a_null_reply_is_internal_everywhere(void **state)
{
    tse_group_entries e = {0};
    tse_pending_list p = {0};
    tse_consumer_list c = {0};
    tse_group_info g;
    tse_lag_answer a;
    tse_stream_entries se = {0};
    tse_strings s = {0};
    long long ms;
    char pos[48];

    (void)state;
    assert_int_equal(tse_group_read_parse(NULL, 0, keys2, 2, &e, NULL), TSE_INTERNAL);
    assert_int_equal(tse_group_claim_parse(NULL, NULL, NULL, 0, &e), TSE_INTERNAL);
    assert_int_equal(tse_group_pending_parse(NULL, &p), TSE_INTERNAL);
    assert_int_equal(tse_group_oldest_pending_parse(NULL, &ms), TSE_INTERNAL);
    assert_int_equal(tse_group_consumers_parse(NULL, &c), TSE_INTERNAL);
    assert_int_equal(tse_group_info_parse(NULL, "g", &g), TSE_INTERNAL);
    assert_int_equal(tse_group_lag_parse(NULL, &a), TSE_INTERNAL);
    assert_int_equal(tse_group_acked_position_parse(NULL, pos, sizeof(pos)), TSE_INTERNAL);
    assert_int_equal(tse_stream_entries_parse(NULL, &se), TSE_INTERNAL);
    assert_int_equal(tse_strings_parse(NULL, &s), TSE_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_read_gives_each_entry_with_its_stream_and_envelope),
        cmocka_unit_test(a_nil_read_is_nothing_new),
        cmocka_unit_test(a_read_error_reply_is_internal),
        cmocka_unit_test(entries_without_an_envelope_or_of_another_shape_are_skipped),
        cmocka_unit_test(an_id_longer_than_any_redis_makes_is_skipped),
        cmocka_unit_test(an_empty_id_or_one_with_a_nul_is_skipped),
        cmocka_unit_test(a_read_cut_short_or_malformed_is_internal_at_every_length),
        cmocka_unit_test(no_connection_is_unavailable_without_io),
        cmocka_unit_test(a_claim_counts_each_entrys_attempt),
        cmocka_unit_test(a_claim_error_reply_is_internal),
        cmocka_unit_test(pending_entries_give_id_idle_and_deliveries),
        cmocka_unit_test(a_pending_error_reply_is_internal_and_empty),
        cmocka_unit_test(the_pending_summary_gives_the_oldest_entrys_time),
        cmocka_unit_test(group_info_finds_its_group_among_others),
        cmocka_unit_test(group_info_of_another_shape_finds_nothing),
        cmocka_unit_test(consumers_give_name_pending_and_idle),
        cmocka_unit_test(the_lag_answer_is_decoded_or_refused),
        cmocka_unit_test(the_acked_position_is_before_the_oldest_pending_entry),
        cmocka_unit_test(stream_entries_keep_every_field_binary_safe),
        cmocka_unit_test(stream_entries_of_an_error_reply_are_internal),
        cmocka_unit_test(string_arrays_skip_what_is_not_a_string),
        cmocka_unit_test(time_is_seconds_and_microseconds),
        cmocka_unit_test(a_null_reply_is_internal_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
