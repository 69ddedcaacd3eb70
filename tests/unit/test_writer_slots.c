/*
 * test_writer_slots.c - every Redis command and script the storage layer
 * and the writer build touches one Redis Cluster slot (issue 13, points 2
 * and 4): for each command (an append, a dedup append, the batch script
 * over a batch mixing types, priorities and ids, the trim, the stream
 * registration, GetStats' SMEMBERS and XLEN) the keys it names are found
 * from the command itself (storage/command_keys.h; an unknown command fails
 * the test, so a new one must be placed there) and must all be in one
 * slot. The dedup scripts are also read for the keys they reach: only
 * through KEYS, so the keys the command names are all they touch.
 *
 * The delivery engine's commands are built inside src/delivery (not
 * reachable from here); what their single-slot reads rely on is checked
 * below: the five priority streams of a type share a slot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "storage/command_keys.h"
#include "storage/keys.h"
#include "storage/ops.h"
#include "writer/internal.h"

/* ---- the keys a command names ---- */

typedef struct args {
    size_t argc;
    const char *argv[1024];
    size_t lens[1024];
} args;

/* Whether every key of command a is in one slot (and it names one at
 * least): storage's own reading of where a command keeps its keys
 * (command_keys.h, which the cluster connection routes by; an unknown
 * command is refused, so a new one must be placed there). */
static bool single_slot(const args *a)
{
    tse_error err;
    int slot;

    if (tse_command_slot((int)a->argc, a->argv, a->lens, &slot, &err) != TSE_OK) {
        print_message("'%.*s': %s\n", (int)a->lens[0], a->argv[0], err.message);
        return false;
    }
    return slot != TSE_SLOT_ANY;
}

static void args_of_cmd(const tse_cmd *c, args *a)
{
    a->argc = (size_t)c->argc;
    for (int i = 0; i < c->argc; i++) {
        a->argv[i] = c->argv[i];
        a->lens[i] = c->lens[i];
    }
}

static void assert_cmd_single_slot(const tse_cmd *c)
{
    args a;

    args_of_cmd(c, &a);
    if (!single_slot(&a))
        fail_msg("'%.*s' names keys of several slots", (int)a.lens[0], a.argv[0]);
}

/* The job's RESP command read back; caller frees. */
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

static void assert_job_single_slot(const tse_job *job)
{
    redisReply *cmd = command_of(job);
    args a = {.argc = cmd->elements};

    assert_true(cmd->elements <= 1024);
    for (size_t i = 0; i < cmd->elements; i++) {
        a.argv[i] = cmd->element[i]->str;
        a.lens[i] = cmd->element[i]->len;
    }
    if (!single_slot(&a))
        fail_msg("job '%.*s' names keys of several slots", (int)a.lens[0], a.argv[0]);
    freeReplyObject(cmd);
}

/* ---- fixtures ---- */

static const char *const types[] = {"sample.created", "storage.moved", "a.b", "x.y_z",
                                    "sequencing.run_completed"};
static const char *const ids[] = {"6f1c1a9e-0d5b-4a51-9d8e-1f2a3b4c5d6e", "id-2", "{x}", "q"};
#define N_TYPES (sizeof(types) / sizeof(types[0]))
#define N_IDS   (sizeof(ids) / sizeof(ids[0]))

static const uint8_t envelope[] = {0x0a, 0x00, '{', '}'};

static tse_broker_options options(void)
{
    tse_broker_options o = {.lanes = 1,
                            .timeout_ms = 1000,
                            .dedup_window_ms = 86400000,
                            .retention_ms = 1000,
                            .max_queue = 10};

    return o;
}

static tse_publish_msg message(const char *type, int prio, const char *id, bool dedup)
{
    tse_publish_msg m = {.event_id = id,
                         .event_type = type,
                         .priority = prio,
                         .source_service = "lims",
                         .timestamp_sec = 1718700000,
                         .envelope = envelope,
                         .envelope_len = sizeof(envelope),
                         .dedup = dedup};

    return m;
}

/* ---- the checker itself ---- */

/* The layout before 1.0 (no tags, the stream set inside the script) is
 * what the checker must refuse; the current one what it must accept. */
static void the_checker_refuses_a_cross_slot_script(void **state)
{
    const char *old[] = {
        "EVALSHA",       "sha", "3", TSE_EVENTS_PREFIX "a.b:p3", TSE_DEDUP_PREFIX "id-1",
        TSE_STREAMS_KEY, "1000"};
    const char *now[] = {
        "EVALSHA", "sha", "2", TSE_EVENTS_PREFIX "{a.b}:p3", TSE_DEDUP_PREFIX "{a.b}:id-1", "1000"};
    const char *read[] = {"XREADGROUP",
                          "GROUP",
                          "g",
                          "c",
                          "STREAMS",
                          TSE_EVENTS_PREFIX "{a.b}:p1",
                          TSE_EVENTS_PREFIX "{c.d}:p1",
                          ">",
                          ">"};
    tse_cmd c;
    args a;

    (void)state;
    assert_true(tse_cmd_from_argv(7, old, NULL, &c));
    args_of_cmd(&c, &a);
    assert_false(single_slot(&a));
    assert_true(tse_cmd_from_argv(6, now, NULL, &c));
    args_of_cmd(&c, &a);
    assert_true(single_slot(&a));
    /* One XREADGROUP over two types is two slots (the reads of a
     * subscription over several types go per slot in a cluster). */
    assert_true(tse_cmd_from_argv(9, read, NULL, &c));
    args_of_cmd(&c, &a);
    assert_false(single_slot(&a));
}

/* ---- storage's commands ---- */

static void appends_touch_one_slot(void **state)
{
    char key[256], dedup[256];

    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        for (int p = 1; p <= 5; p++) {
            for (size_t i = 0; i < N_IDS; i++) {
                tse_append a = {.event_id = ids[i],
                                .event_type = types[t],
                                .envelope = envelope,
                                .envelope_len = sizeof(envelope),
                                .stream_key = key,
                                .script_sha = "sha",
                                .dedup_window_ms = 1000};
                tse_cmd c;

                tse_key_stream(types[t], p, key, sizeof(key));
                tse_append_command(&a, &c);
                assert_cmd_single_slot(&c);
                tse_key_dedup(types[t], ids[i], dedup, sizeof(dedup));
                a.dedup_key = dedup;
                tse_append_command(&a, &c);
                assert_int_equal(c.argc,
                                 10); /* EVALSHA sha 2 stream dedup window when id type event */
                assert_cmd_single_slot(&c);
            }
        }
    }
}

static void trim_registration_and_lengths_touch_one_slot(void **state)
{
    char key[256];
    tse_cmd c;

    (void)state;
    tse_key_stream("sample.created", 3, key, sizeof(key));
    tse_trim_command(key, 0, 1718700000000, &c);
    assert_cmd_single_slot(&c);
    tse_trim_command(key, 1000, 0, &c);
    assert_cmd_single_slot(&c);
    tse_register_stream_command(key, &c);
    assert_cmd_single_slot(&c);
    tse_stream_set_command(&c);
    assert_cmd_single_slot(&c);
    tse_stream_length_command(key, &c);
    assert_cmd_single_slot(&c);
}

/* What a subscription's read of one type and the dedup key rely on. */
static void a_types_streams_and_dedup_keys_share_its_slot(void **state)
{
    char key[256], other[256];

    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        tse_key_stream(types[t], 1, key, sizeof(key));
        for (int p = 2; p <= 9; p++) {
            tse_key_stream(types[t], p, other, sizeof(other));
            assert_int_equal(tse_key_slot(key, strlen(key)), tse_key_slot(other, strlen(other)));
        }
        for (size_t i = 0; i < N_IDS; i++) {
            tse_key_dedup(types[t], ids[i], other, sizeof(other));
            assert_int_equal(tse_key_slot(key, strlen(key)), tse_key_slot(other, strlen(other)));
        }
    }
}

/* The keys a script reaches are its KEYS (or locals set from them): every
 * redis.call / redis.pcall names one as its key. */
static void assert_script_uses_only_its_keys(const char *script)
{
    static const char *const calls[] = {"redis.call('", "redis.pcall('"};

    for (size_t k = 0; k < 2; k++) {
        for (const char *at = strstr(script, calls[k]); at; at = strstr(at + 1, calls[k])) {
            const char *arg = strstr(at, "', ");
            assert_non_null(arg);
            arg += 3;
            if (strncmp(arg, "KEYS[", 5) != 0 && strncmp(arg, "stream,", 7) != 0 &&
                strncmp(arg, "dkey", 4) != 0)
                fail_msg("a script call reaches a key not among its KEYS: %.40s", at);
        }
    }
}

static void dedup_scripts_reach_only_their_keys(void **state)
{
    (void)state;
    assert_script_uses_only_its_keys(tse_dedup_script);
    assert_script_uses_only_its_keys(tse_dedup_batch_script);
    /* The batch script binds those locals from KEYS, and only there. */
    assert_non_null(strstr(tse_dedup_batch_script, "local stream, dkey, a = KEYS[2 * i - 1], "
                                                   "KEYS[2 * i]"));
}

/* ---- the writer's jobs ---- */

static void writer_jobs_touch_one_slot(void **state)
{
    tse_broker_options o = options();

    (void)state;
    for (size_t t = 0; t < N_TYPES; t++) {
        for (size_t i = 0; i < N_IDS; i++) {
            tse_publish_msg m = message(types[t], 1 + (int)i % 5, ids[i], false);
            tse_job *job = tse_job_create(&o, "sha", &m);
            assert_non_null(job);
            assert_job_single_slot(job);
            tse_job_free(job);
            m.dedup = true;
            job = tse_job_create(&o, "sha", &m);
            assert_non_null(job);
            assert_job_single_slot(job);
            tse_job_free(job);
        }
    }
    tse_job *trim = tse_job_create_trim(&o, TSE_EVENTS_PREFIX "{a.b}:p1", 1718700000000);
    assert_non_null(trim);
    assert_job_single_slot(trim);
    tse_job_free(trim);
}

static void cb(void *arg, const tse_publish_result *r)
{
    (void)arg, (void)r;
}

/* A batch mixing types, priorities, client-set and server-set ids: one
 * script call per run of one type, each on one slot, every event in one
 * job, in the batch's order. */
static void a_mixed_batch_is_one_job_per_slot(void **state)
{
    tse_broker_options o = options();
    tse_publish_msg msgs[] = {
        message("a.b", 1, "1", true),  message("a.b", 5, "2", false), message("a.b", 3, "3", true),
        message("c.d", 2, "4", false), message("c.d", 2, "5", true),  message("a.b", 2, "1", true),
        message("e.f", 4, "6", true),  message("e.f", 4, "7", false),
    };
    enum { N = sizeof(msgs) / sizeof(msgs[0]) };
    void *args_[N] = {0};
    tse_job *jobs[N] = {0};
    /* a.b [0..2] as one group; c.d 3 plain; c.d 4 group; a.b 5 group; e.f 6
     * group; e.f 7 plain. */
    static const size_t events[] = {3, 0, 1, 1, 1, 0};
    size_t k = tse_jobs_create_batch(&o, "sha", "bsha", msgs, N, cb, args_, jobs);

    (void)state;
    assert_int_equal(k, sizeof(events) / sizeof(events[0]));
    for (size_t i = 0; i < k; i++) {
        assert_int_equal(jobs[i]->n_events, events[i]);
        assert_job_single_slot(jobs[i]);
        tse_job_free(jobs[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_checker_refuses_a_cross_slot_script),
        cmocka_unit_test(appends_touch_one_slot),
        cmocka_unit_test(trim_registration_and_lengths_touch_one_slot),
        cmocka_unit_test(a_types_streams_and_dedup_keys_share_its_slot),
        cmocka_unit_test(dedup_scripts_reach_only_their_keys),
        cmocka_unit_test(writer_jobs_touch_one_slot),
        cmocka_unit_test(a_mixed_batch_is_one_job_per_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
