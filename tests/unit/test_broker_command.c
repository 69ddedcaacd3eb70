/*
 * test_broker_command.c - publish jobs (src/writer/command.c): the Redis
 * command each kind of job carries (read back with hiredis's protocol
 * reader), and how a Redis reply becomes the publish result: stored, a
 * duplicate (both record formats), an error (transient or not), a reply of
 * the wrong shape. Also the job queue and which Redis errors are transient.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "writer/internal.h"

static const uint8_t envelope[] = {0x0a, 0x00, '\r', '\n', 0xff};

static tse_publish_msg message(bool dedup)
{
    tse_publish_msg m = {
        .event_id = "6f1c1a9e-0d5b-4a51-9d8e-1f2a3b4c5d6e",
        .event_type = "sample.created",
        .priority = 2,
        .source_service = "lims",
        .timestamp_sec = 1718700000,
        .timestamp_nanos = 5000,
        .envelope = envelope,
        .envelope_len = sizeof(envelope),
        .dedup = dedup,
    };
    return m;
}

static tse_broker_options options(void)
{
    tse_broker_options o = {.lanes = 1, .timeout_ms = 1000, .dedup_window_ms = 86400000};

    return o;
}

/* ---- reading a job's command back ---- */

/* The job's RESP command as hiredis reads it. Caller frees. */
static redisReply *command_of(const tse_job *job)
{
    redisReader *r = redisReaderCreate();
    void *out = NULL;

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, job->cmd, job->cmd_len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &out), REDIS_OK);
    assert_non_null(out);
    redisReaderFree(r);
    assert_int_equal(((redisReply *)out)->type, REDIS_REPLY_ARRAY);
    return out;
}

/* The command's arguments equal want (NUL-terminated strings), then the
 * envelope's bytes when with_envelope. */
static void assert_command(const tse_job *job, const char *const *want, size_t n,
                           bool with_envelope)
{
    redisReply *cmd = command_of(job);

    assert_int_equal(cmd->elements, n + (with_envelope ? 1 : 0));
    for (size_t i = 0; i < n; i++) {
        if (cmd->element[i]->len != strlen(want[i]) ||
            memcmp(cmd->element[i]->str, want[i], cmd->element[i]->len) != 0)
            fail_msg("argument %zu is '%.*s', want '%s'", i, (int)cmd->element[i]->len,
                     cmd->element[i]->str, want[i]);
    }
    if (with_envelope) {
        assert_int_equal(cmd->element[n]->len, sizeof(envelope));
        assert_memory_equal(cmd->element[n]->str, envelope, sizeof(envelope));
    }
    freeReplyObject(cmd);
}

static void a_plain_event_is_one_xadd_to_its_stream(void **state)
{
    tse_broker_options o = options();
    tse_publish_msg m = message(false);
    tse_job *job = tse_job_create(&o, "sha", &m);
    const char *want[] = {"XADD",
                          "tracseq:events:{sample.created}:p2",
                          "*",
                          "id",
                          m.event_id,
                          "type",
                          "sample.created",
                          "event"};

    (void)state;
    assert_non_null(job);
    assert_false(job->dedup);
    assert_string_equal(job->key, "tracseq:events:{sample.created}:p2");
    assert_int_equal(job->key_len, strlen(job->key));
    assert_command(job, want, sizeof(want) / sizeof(want[0]), true);
    tse_job_free(job);
}

/* The script gets the stream and the dedup key (both tagged by the event
 * type: one slot), the window and the publish time "<sec>.<nanos, 9
 * digits>", then the event's id, type and envelope (the XADD's field names
 * are in the script). */
static void an_event_with_a_client_id_is_the_dedup_script(void **state)
{
    tse_broker_options o = options();
    tse_publish_msg m = message(true);
    tse_job *job = tse_job_create(&o, "0123456789abcdef0123456789abcdef01234567", &m);
    const char *want[] = {"EVALSHA",
                          "0123456789abcdef0123456789abcdef01234567",
                          "2",
                          "tracseq:events:{sample.created}:p2",
                          "tracseq:dedup:{sample.created}:6f1c1a9e-0d5b-4a51-9d8e-1f2a3b4c5d6e",
                          "86400000",
                          "1718700000.000005000",
                          m.event_id,
                          "sample.created"};

    (void)state;
    assert_non_null(job);
    assert_true(job->dedup);
    assert_string_equal(job->key, "tracseq:events:{sample.created}:p2");
    assert_command(job, want, sizeof(want) / sizeof(want[0]), true);
    tse_job_free(job);
}

static void on_result(void *arg, const tse_publish_result *res);

/* Whether the job's command holds want as one whole argument. */
static bool has_argument(const tse_job *job, const char *want)
{
    redisReply *cmd = command_of(job);
    bool found = false;

    for (size_t i = 0; i < cmd->elements && !found; i++)
        found = cmd->element[i]->len == strlen(want) &&
                memcmp(cmd->element[i]->str, want, cmd->element[i]->len) == 0;
    freeReplyObject(cmd);
    return found;
}

/* Each event of a batch carries its publish time as the single-event
 * script gets it: "<sec>.<nanos, 9 digits>", leading zeros kept. */
static void a_batch_gives_the_script_each_events_publish_time(void **state)
{
    static const struct {
        int64_t sec;
        int32_t nanos;
        const char *want;
    } cases[] = {
        {1718700000, 5000, "1718700000.000005000"},
        {0, 0, "0.000000000"},
        {1718700001, 999999999, "1718700001.999999999"},
        {7, 120000000, "7.120000000"},
        {-1, 5, "-1.000000005"},
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    tse_broker_options o = options();
    tse_publish_msg msgs[N];
    void *args[N] = {0};
    tse_job *job;

    (void)state;
    for (size_t i = 0; i < N; i++) {
        msgs[i] = message(i % 2 == 0);
        msgs[i].timestamp_sec = cases[i].sec;
        msgs[i].timestamp_nanos = cases[i].nanos;
    }
    job = tse_job_create_group(&o, "0123456789abcdef0123456789abcdef01234567", msgs, N, on_result,
                               args);
    assert_non_null(job);
    assert_int_equal(job->n_events, N);
    for (size_t i = 0; i < N; i++)
        if (!has_argument(job, cases[i].want))
            fail_msg("no argument '%s' in the batch's command", cases[i].want);
    tse_job_free(job);
}

/* A group's script call: the stream and dedup key of each event, the
 * window, the event type once, then per event its flag, publish time, id
 * and envelope (ops.h, tse_dedup_batch_script): no XADD words per event. */
static void a_group_job_is_one_script_call_with_four_arguments_per_event(void **state)
{
    tse_broker_options o = options();
    tse_publish_msg msgs[2] = {message(true), message(false)};
    void *args[2] = {0};
    tse_job *job;
    redisReply *cmd;
    static const char *const want[] = {"EVALSHA",
                                       "0123456789abcdef0123456789abcdef01234567",
                                       "4",
                                       "tracseq:events:{sample.created}:p2",
                                       "tracseq:dedup:{sample.created}:6f1c1a9e-0d5b-4a51-9d8e-"
                                       "1f2a3b4c5d6e",
                                       "tracseq:events:{sample.created}:p4",
                                       "tracseq:dedup:{sample.created}:plain-7",
                                       "86400000",
                                       "sample.created",
                                       "1",
                                       "1718700000.000005000",
                                       "6f1c1a9e-0d5b-4a51-9d8e-1f2a3b4c5d6e",
                                       NULL, /* the envelope */
                                       "0",
                                       "1718700000.000005000",
                                       "plain-7",
                                       NULL};

    (void)state;
    msgs[1].event_id = "plain-7";
    msgs[1].priority = 4;
    job = tse_job_create_group(&o, want[1], msgs, 2, on_result, args);
    assert_non_null(job);
    cmd = command_of(job);
    assert_int_equal(cmd->elements, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < cmd->elements; i++) {
        const char *w = want[i] ? want[i] : (const char *)envelope;
        size_t len = want[i] ? strlen(want[i]) : sizeof(envelope);

        if (cmd->element[i]->len != len || memcmp(cmd->element[i]->str, w, len) != 0)
            fail_msg("argument %zu is '%.*s'", i, (int)cmd->element[i]->len, cmd->element[i]->str);
    }
    freeReplyObject(cmd);
    tse_job_free(job);
}

/* A group job's events live at the start of its data: they must be
 * aligned for their type, whatever fields come before data (ASan+UBSan
 * reported a store to a misaligned tse_job_event when an int was added
 * before it; an x86 CPU does not mind, other CPUs and the standard do). */
static void a_group_jobs_events_are_aligned_for_their_type(void **state)
{
    enum { N = 3 };
    tse_broker_options o = options();
    tse_publish_msg msgs[N];
    void *args[N] = {0};
    tse_job *job;

    (void)state;
    for (size_t i = 0; i < N; i++)
        msgs[i] = message(true);
    job = tse_job_create_group(&o, "0123456789abcdef0123456789abcdef01234567", msgs, N, on_result,
                               args);
    assert_non_null(job);
    assert_int_equal((uintptr_t)job->events % _Alignof(tse_job_event), 0);
    tse_job_free(job);
}

static void trimming_by_count_is_an_approximate_maxlen(void **state)
{
    tse_broker_options o = options();
    tse_job *job;
    const char *want[] = {"XTRIM", "tracseq:events:{a.b}:p1", "MAXLEN", "~", "1000"};

    (void)state;
    o.retention_maxlen = 1000;
    o.retention_ms = 5000; /* the count wins when both are set */
    job = tse_job_create_trim(&o, "tracseq:events:{a.b}:p1", 1718700000000);
    assert_non_null(job);
    assert_int_equal(job->key_len, 0);
    assert_command(job, want, 5, false);
    tse_job_free(job);
}

static void trimming_by_age_is_an_approximate_minid_never_below_zero(void **state)
{
    tse_broker_options o = options();
    tse_job *job;
    const char *want[] = {"XTRIM", "k", "MINID", "~", "1718699995000"};
    const char *want_zero[] = {"XTRIM", "k", "MINID", "~", "0"};

    (void)state;
    o.retention_ms = 5000;
    job = tse_job_create_trim(&o, "k", 1718700000000);
    assert_non_null(job);
    assert_command(job, want, 5, false);
    tse_job_free(job);
    job = tse_job_create_trim(&o, "k", 1000); /* a clock before the window */
    assert_non_null(job);
    assert_command(job, want_zero, 5, false);
    tse_job_free(job);
}

static void a_generic_command_takes_lengths_or_measures_strings(void **state)
{
    const char *argv[] = {"XACK", "k", "g", "1-0"};
    const size_t lens[] = {4, 1, 1, 1}; /* "1-0" cut to "1" */
    const char *want_measured[] = {"XACK", "k", "g", "1-0"};
    const char *want_cut[] = {"XACK", "k", "g", "1"};
    tse_job *job;

    (void)state;
    job = tse_job_create_command(4, argv, NULL);
    assert_non_null(job);
    assert_command(job, want_measured, 4, false);
    tse_job_free(job);
    job = tse_job_create_command(4, argv, lens);
    assert_non_null(job);
    assert_command(job, want_cut, 4, false);
    tse_job_free(job);
}

static void a_generic_command_of_no_or_too_many_arguments_is_refused(void **state)
{
    const char *argv[65];

    (void)state;
    for (int i = 0; i < 65; i++)
        argv[i] = "x";
    assert_null(tse_job_create_command(0, argv, NULL));
    assert_null(tse_job_create_command(-1, argv, NULL));
    assert_null(tse_job_create_command(65, argv, NULL));
    tse_job_free(tse_job_create_command(64, argv, NULL)); /* the most it takes */
    tse_job_free(NULL);                                   /* a no-op */
}

/* ---- replies into results ---- */

/* What a job's callback saw; strings copied, since the result is valid
 * only during the call. */
typedef struct seen {
    int calls;
    tse_status status;
    char stream_id[64];
    char stream_key[128];
    char message[300];
    bool duplicate, new_stream;
    int64_t published_sec;
    int32_t published_nanos;
    const redisReply *reply; /* command jobs */
    int *clock;              /* when set: calls counted across jobs, */
    int at;                  /* and this job's place among them */
} seen;

static void copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "(null)");
}

static void on_result(void *arg, const tse_publish_result *res)
{
    seen *s = arg;

    s->calls++;
    s->status = res->status;
    copy(s->stream_id, sizeof(s->stream_id), res->stream_id);
    copy(s->stream_key, sizeof(s->stream_key), res->stream_key);
    copy(s->message, sizeof(s->message), res->message);
    s->duplicate = res->duplicate;
    s->new_stream = res->new_stream;
    s->published_sec = res->published_sec;
    s->published_nanos = res->published_nanos;
}

static void on_command(void *arg, tse_status status, const redisReply *reply, const char *message)
{
    seen *s = arg;

    s->calls++;
    if (s->clock != NULL)
        s->at = ++*s->clock;
    s->status = status;
    s->reply = reply;
    copy(s->message, sizeof(s->message), message);
}

/* Finishes a new publish job of msg with reply; what its callback saw. */
static seen finish(bool dedup, const redisReply *reply)
{
    tse_broker_options o = options();
    tse_publish_msg m = message(dedup);
    tse_job *job = tse_job_create(&o, "sha", &m);
    seen s = {0};

    assert_non_null(job);
    job->cb = on_result;
    job->arg = &s;
    tse_job_finish(job, reply); /* frees the job */
    assert_int_equal(s.calls, 1);
    return s;
}

static redisReply string(const char *s)
{
    redisReply r = {.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};

    return r;
}

static redisReply integer(long long v)
{
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = v};

    return r;
}

static redisReply error(const char *s)
{
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = (char *)s, .len = strlen(s)};

    return r;
}

static redisReply array(redisReply **elements, size_t n)
{
    redisReply r = {.type = REDIS_REPLY_ARRAY, .element = elements, .elements = n};

    return r;
}

static void an_xadd_reply_is_the_stored_entry_id(void **state)
{
    redisReply id = string("1718700000000-3");
    seen s = finish(false, &id);

    (void)state;
    assert_int_equal(s.status, TSE_OK);
    assert_string_equal(s.stream_id, "1718700000000-3");
    assert_string_equal(s.stream_key, "tracseq:events:{sample.created}:p2");
    assert_false(s.duplicate);
    assert_false(s.new_stream);
}

/* {0, id}: stored. Whether the stream is new is the lane's SADD's answer,
 * not the script's: a third element (scripts before 1.0) is ignored. */
static void a_dedup_reply_of_a_stored_event_is_its_entry_id(void **state)
{
    redisReply zero = integer(0), id = string("1718700000000-0"), one = integer(1);
    redisReply *now[] = {&zero, &id}, *older[] = {&zero, &id, &one};
    redisReply r = array(now, 2);
    seen s = finish(true, &r);

    (void)state;
    assert_int_equal(s.status, TSE_OK);
    assert_string_equal(s.stream_id, "1718700000000-0");
    assert_false(s.duplicate);
    assert_false(s.new_stream);
    assert_true(tse_dedup_reply_stored(&r));
    r = array(older, 3);
    s = finish(true, &r);
    assert_int_equal(s.status, TSE_OK);
    assert_string_equal(s.stream_id, "1718700000000-0");
    assert_false(s.new_stream);
}

/* {1, "<id> <sec>.<nanos> <key>"}: the stored event's id, time and stream,
 * whatever this publish's type and priority. */
static void a_duplicate_answers_the_stored_events_id_time_and_stream(void **state)
{
    redisReply one = integer(1), rec = string("1718600000000-7 1718600000.000123456 "
                                              "tracseq:events:{other.type}:p5");
    redisReply *el[] = {&one, &rec};
    redisReply r = array(el, 2);
    seen s = finish(true, &r);

    (void)state;
    assert_int_equal(s.status, TSE_OK);
    assert_true(s.duplicate);
    assert_false(tse_dedup_reply_stored(&r));
    assert_string_equal(s.stream_id, "1718600000000-7");
    assert_string_equal(s.stream_key, "tracseq:events:{other.type}:p5");
    assert_int_equal(s.published_sec, 1718600000);
    assert_int_equal(s.published_nanos, 123456);
}

/* Records written before the time and key were kept hold the id alone: the
 * key is then the one asked for, the time the entry id's milliseconds. */
static void a_duplicate_of_the_older_record_format_takes_the_time_from_the_id(void **state)
{
    redisReply one = integer(1), rec = string("1718600000123-4");
    redisReply *el[] = {&one, &rec};
    redisReply r = array(el, 2);
    seen s = finish(true, &r);

    (void)state;
    assert_int_equal(s.status, TSE_OK);
    assert_true(s.duplicate);
    assert_string_equal(s.stream_id, "1718600000123-4");
    assert_string_equal(s.stream_key, "tracseq:events:{sample.created}:p2");
    assert_int_equal(s.published_sec, 1718600000);
    assert_int_equal(s.published_nanos, 123000000);
}

static void a_malformed_duplicate_record_is_an_internal_error(void **state)
{
    static const char *const bad[] = {
        "1-1 garbage",       /* no time */
        "1-1 1718600000.5 ", /* no key after the time */
        "1-1 1718600000.5",  /* nor a space */
        "1234567890123456789012345678901234567890123456789012345678901234567890 1.2 k", /* id */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply one = integer(1), rec = string(bad[i]);
        redisReply *el[] = {&one, &rec};
        redisReply r = array(el, 2);
        seen s = finish(true, &r);
        if (s.status != TSE_INTERNAL)
            fail_msg("record '%s': status %d, want INTERNAL", bad[i], s.status);
        assert_string_equal(s.message, "redis: unexpected reply to XADD");
    }
}

static void a_reply_of_the_wrong_shape_is_an_internal_error(void **state)
{
    redisReply num = integer(5), id = string("1-1"), zero = integer(0);
    redisReply *swapped[] = {&id, &zero}, *short_[] = {&zero};
    redisReply arr = array(swapped, 2), arr1 = array(short_, 1);
    seen s;

    (void)state;
    s = finish(false, NULL); /* no reply at all */
    assert_int_equal(s.status, TSE_INTERNAL);
    assert_string_equal(s.message, "redis: unexpected reply to XADD");
    assert_string_equal(s.stream_key, "tracseq:events:{sample.created}:p2");
    s = finish(false, &num);
    assert_int_equal(s.status, TSE_INTERNAL);
    s = finish(false, &arr); /* a script's reply to a plain job */
    assert_int_equal(s.status, TSE_INTERNAL);
    s = finish(true, &id); /* a plain reply to a dedup job */
    assert_int_equal(s.status, TSE_INTERNAL);
    s = finish(true, &arr);
    assert_int_equal(s.status, TSE_INTERNAL);
    s = finish(true, &arr1);
    assert_int_equal(s.status, TSE_INTERNAL);
    assert_false(tse_dedup_reply_stored(&arr1));
    assert_false(tse_dedup_reply_stored(&id));
    assert_false(tse_dedup_reply_stored(NULL));
}

/* The message names Redis's error; the status says whether a retry may help. */
static void an_error_reply_fails_the_job_naming_it(void **state)
{
    redisReply wrong = error("WRONGTYPE Operation against a key holding the wrong kind of value");
    redisReply loading = error("LOADING Redis is loading the dataset in memory");
    seen s;

    (void)state;
    s = finish(false, &wrong);
    assert_int_equal(s.status, TSE_INTERNAL);
    assert_string_equal(s.message,
                        "redis: WRONGTYPE Operation against a key holding the wrong kind of value");
    s = finish(true, &loading);
    assert_int_equal(s.status, TSE_UNAVAILABLE);
    assert_string_equal(s.message, "redis: LOADING Redis is loading the dataset in memory");
}

/* A failed SCRIPT LOAD or SADD written before the job fails it, whatever
 * its own reply says. */
static void a_failure_before_the_job_fails_it_with_that_failure(void **state)
{
    tse_broker_options o = options();
    tse_publish_msg m = message(false);
    tse_job *job = tse_job_create(&o, "sha", &m);
    redisReply id = string("1-1");
    seen s = {0};

    (void)state;
    assert_non_null(job);
    job->cb = on_result;
    job->arg = &s;
    job->pre_status = TSE_UNAVAILABLE;
    job->pre_message = strdup("redis: SADD failed");
    assert_non_null(job->pre_message);
    tse_job_finish(job, &id);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, TSE_UNAVAILABLE);
    assert_string_equal(s.message, "redis: SADD failed");
}

/* The SADD before a plain job added its key: the result says so. */
static void a_plain_job_reports_the_stream_its_sadd_registered(void **state)
{
    tse_broker_options o = options();
    tse_publish_msg m = message(false);
    tse_job *job = tse_job_create(&o, "sha", &m);
    redisReply id = string("1-1");
    seen s = {0};

    (void)state;
    assert_non_null(job);
    job->cb = on_result;
    job->arg = &s;
    job->new_stream = true;
    tse_job_finish(job, &id);
    assert_int_equal(s.status, TSE_OK);
    assert_true(s.new_stream);
}

/* A generic command's reply, error or not, is its caller's to read. */
static void a_command_job_hands_any_reply_to_its_caller(void **state)
{
    const char *argv[] = {"XGROUP", "CREATE", "k", "g", "$"};
    redisReply busy = error("BUSYGROUP Consumer Group name already exists"), ok = string("OK");
    const redisReply *replies[] = {&busy, &ok};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        tse_job *job = tse_job_create_command(5, argv, NULL);
        seen s = {0};
        assert_non_null(job);
        job->command_cb = on_command;
        job->arg = &s;
        tse_job_finish(job, replies[i]);
        assert_int_equal(s.calls, 1);
        assert_int_equal(s.status, TSE_OK);
        assert_ptr_equal(s.reply, replies[i]);
        assert_string_equal(s.message, "(null)");
    }
}

static void a_failed_command_job_tells_its_caller_without_a_reply(void **state)
{
    const char *argv[] = {"PING"};
    tse_job *job = tse_job_create_command(1, argv, NULL);
    seen s = {0};

    (void)state;
    assert_non_null(job);
    job->command_cb = on_command;
    job->arg = &s;
    tse_job_fail(job, TSE_UNAVAILABLE, "redis: connection lost");
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, TSE_UNAVAILABLE);
    assert_null(s.reply);
    assert_string_equal(s.message, "redis: connection lost");
}

/* ---- which Redis errors are transient ---- */

static tse_status status_of(const char *msg)
{
    return tse_redis_error_status(msg, strlen(msg));
}

static void transient_redis_errors_are_unavailable(void **state)
{
    static const char *const transient[] = {
        "OOM command not allowed when used memory > 'maxmemory'.",
        "LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script.",
        "MASTERDOWN Link with MASTER is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "READONLY You can't write against a read only replica.",
        "CLUSTERDOWN The cluster is down",
        "NOREPLICAS Not enough good replicas to write.",
        "NOSCRIPT No matching script. Please use EVAL.",
        "LOADING", /* the code alone */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        if (status_of(transient[i]) != TSE_UNAVAILABLE)
            fail_msg("'%s' is not UNAVAILABLE", transient[i]);
}

static void other_redis_errors_are_internal(void **state)
{
    static const char *const other[] = {
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR unknown command",
        "NOGROUP No such key or consumer group",
        "BUSYGROUP Consumer Group name already exists", /* BUSY is a prefix, not the code */
        "OOMPH",
        "loading lower case",
        " LOADING",
        "",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        if (status_of(other[i]) != TSE_INTERNAL)
            fail_msg("'%s' is not INTERNAL", other[i]);
}

/* The length bounds the message: an error is read only as far as len. */
static void the_error_code_is_read_within_its_length(void **state)
{
    (void)state;
    assert_int_equal(tse_redis_error_status("LOADING now", 7), TSE_UNAVAILABLE);
    assert_int_equal(tse_redis_error_status("LOADING", 4), TSE_INTERNAL);
    assert_int_equal(tse_redis_error_status("OOM", 0), TSE_INTERNAL);
}

/* ---- the job queue ---- */

static void the_job_list_is_first_in_first_out_counting_jobs_and_bytes(void **state)
{
    const char *a[] = {"PING"}, *b[] = {"ECHO", "hello"};
    tse_job_list l = {0};
    tse_job *j1 = tse_job_create_command(1, a, NULL), *j2 = tse_job_create_command(2, b, NULL);

    (void)state;
    assert_non_null(j1);
    assert_non_null(j2);
    assert_null(tse_job_list_pop(&l));
    tse_job_list_push(&l, j1);
    tse_job_list_push(&l, j2);
    assert_int_equal(l.count, 2);
    assert_int_equal(l.bytes, j1->cmd_len + j2->cmd_len);
    assert_ptr_equal(tse_job_list_pop(&l), j1);
    assert_null(j1->next);
    assert_int_equal(l.count, 1);
    assert_int_equal(l.bytes, j2->cmd_len);
    assert_ptr_equal(tse_job_list_pop(&l), j2);
    assert_null(tse_job_list_pop(&l));
    assert_null(l.head);
    assert_null(l.tail);
    assert_int_equal(l.count, 0);
    assert_int_equal(l.bytes, 0);
    tse_job_free(j1);
    tse_job_free(j2);
}

static void failing_the_list_completes_each_job_once_in_order(void **state)
{
    const char *argv[] = {"PING"};
    tse_job_list l = {0};
    seen s[3] = {{0}};
    int clock = 0;

    (void)state;
    for (int i = 0; i < 3; i++) {
        s[i].clock = &clock;
        tse_job *job = tse_job_create_command(1, argv, NULL);
        assert_non_null(job);
        job->command_cb = on_command;
        job->arg = &s[i];
        tse_job_list_push(&l, job);
    }
    tse_job_list_fail(&l, TSE_UNAVAILABLE, "redis: stopping");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].at, i + 1); /* in the order queued */
        assert_int_equal(s[i].status, TSE_UNAVAILABLE);
        assert_string_equal(s[i].message, "redis: stopping");
    }
    assert_null(l.head);
    assert_int_equal(l.count, 0);
    assert_int_equal(l.bytes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_plain_event_is_one_xadd_to_its_stream),
        cmocka_unit_test(an_event_with_a_client_id_is_the_dedup_script),
        cmocka_unit_test(a_batch_gives_the_script_each_events_publish_time),
        cmocka_unit_test(a_group_job_is_one_script_call_with_four_arguments_per_event),
        cmocka_unit_test(a_group_jobs_events_are_aligned_for_their_type),
        cmocka_unit_test(trimming_by_count_is_an_approximate_maxlen),
        cmocka_unit_test(trimming_by_age_is_an_approximate_minid_never_below_zero),
        cmocka_unit_test(a_generic_command_takes_lengths_or_measures_strings),
        cmocka_unit_test(a_generic_command_of_no_or_too_many_arguments_is_refused),
        cmocka_unit_test(an_xadd_reply_is_the_stored_entry_id),
        cmocka_unit_test(a_dedup_reply_of_a_stored_event_is_its_entry_id),
        cmocka_unit_test(a_duplicate_answers_the_stored_events_id_time_and_stream),
        cmocka_unit_test(a_duplicate_of_the_older_record_format_takes_the_time_from_the_id),
        cmocka_unit_test(a_malformed_duplicate_record_is_an_internal_error),
        cmocka_unit_test(a_reply_of_the_wrong_shape_is_an_internal_error),
        cmocka_unit_test(an_error_reply_fails_the_job_naming_it),
        cmocka_unit_test(a_failure_before_the_job_fails_it_with_that_failure),
        cmocka_unit_test(a_plain_job_reports_the_stream_its_sadd_registered),
        cmocka_unit_test(a_command_job_hands_any_reply_to_its_caller),
        cmocka_unit_test(a_failed_command_job_tells_its_caller_without_a_reply),
        cmocka_unit_test(transient_redis_errors_are_unavailable),
        cmocka_unit_test(other_redis_errors_are_internal),
        cmocka_unit_test(the_error_code_is_read_within_its_length),
        cmocka_unit_test(the_job_list_is_first_in_first_out_counting_jobs_and_bytes),
        cmocka_unit_test(failing_the_list_completes_each_job_once_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
