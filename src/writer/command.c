/*
 * command.c - turns a publish message into its Redis command, and the
 * decoded reply into the publish result.
 *
 * A plain event is one XADD:
 *   XADD <stream key> [MINID ~ <now-retention> | MAXLEN ~ <n>]
 *        * id <id> type <type> prio <p> src <source> ts <ms> [corr <corr>] event <bytes>
 * An event with a client-set id is an EVALSHA of tse_dedup_script, which does
 * the same XADD (and registers the stream) only when the dedup key of <id> is
 * absent, atomically, and then records there, for the dedup window, where
 * and when the event was stored: a retry is answered with the stored
 * event's stream, entry id and publish time, whatever type or priority it
 * claims, and creates no stream.
 *
 * A job is one allocation: the struct, the stream key and the RESP command.
 * Replies are decoded by the storage layer (tse_append_decode,
 * storage/ops.h) into a result that lives on the stack for the callback
 * only, so no pointer into a freed reply escapes.
 */
#include "writer/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

#define MAX_ARGS 64

/* Argument vector under construction; numbers are printed into num[]. */
typedef struct args {
    int argc;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char num[6][32];
    int nums;
} args;

static void add(args *a, const char *s, size_t len)
{
    a->argv[a->argc] = s;
    a->lens[a->argc] = len;
    a->argc++;
}

static void add_str(args *a, const char *s)
{
    add(a, s, strlen(s));
}

static void add_i64(args *a, int64_t v)
{
    char *buf = a->num[a->nums++];

    add(a, buf, (size_t)snprintf(buf, sizeof(a->num[0]), "%" PRId64, v));
}

/*
 * The XADD arguments after the key: "*" and the fields. Only what people
 * and tools filter on is spelled out beside the envelope: every plain field
 * costs Redis time on every event (measured: 6 fields 354k/s, these 3
 * 524k/s). Priority is in the key, the time in the entry id, the rest in
 * the envelope. Trimming is not here: the lanes trim each stream once a
 * second (XTRIM), which costs far less than a MINID on every XADD.
 */
static void add_xadd_tail(args *a, const tse_publish_msg *msg)
{
    add_str(a, "*");
    add_str(a, "id");
    add_str(a, msg->event_id);
    add_str(a, "type");
    add_str(a, msg->event_type);
    add_str(a, "event");
    add(a, (const char *)msg->envelope, msg->envelope_len);
}

static tse_job *job_alloc(const char *key, size_t key_len, const args *a)
{
    size_t cmd_len = tse_resp_size(a->argc, a->lens);
    tse_job *job = tse_malloc(sizeof(*job) + key_len + 1 + cmd_len);

    if (job == NULL)
        return NULL;
    memset(job, 0, sizeof(*job));
    memcpy(job->data, key, key_len + 1);
    job->key = job->data;
    job->key_len = key_len;
    job->cmd = job->data + key_len + 1;
    job->cmd_len = cmd_len;
    tse_resp_write(job->data + key_len + 1, a->argc, a->argv, a->lens);
    return job;
}

tse_job *tse_job_create(const tse_broker_options *opts, const char *sha, const tse_publish_msg *msg)
{
    size_t key_len = strlen(msg->event_type) + 32;
    size_t dedup_len = strlen(msg->event_id) + 16;
    char *key = tse_malloc(key_len + dedup_len);
    char *dedup_key;
    args a = {0};
    tse_job *job;

    if (key == NULL)
        return NULL;
    dedup_key = key + key_len;
    tse_broker_stream_key(msg->event_type, msg->priority, key, key_len);
    if (msg->dedup) {
        char *when = a.num[a.nums++];

        tse_key_dedup(msg->event_id, dedup_key, dedup_len);
        add_str(&a, "EVALSHA");
        add_str(&a, sha);
        add_str(&a, "3");
        add_str(&a, key);
        add_str(&a, dedup_key);
        add_str(&a, TSE_STREAMS_KEY);
        add_i64(&a, opts->dedup_window_ms);
        add(&a, when,
            (size_t)snprintf(when, sizeof(a.num[0]), "%" PRId64 ".%09" PRId32, msg->timestamp_sec,
                             msg->timestamp_nanos));
    } else {
        add_str(&a, "XADD");
        add_str(&a, key);
    }
    add_xadd_tail(&a, msg);
    job = job_alloc(key, strlen(key), &a);
    tse_free(key);
    if (job != NULL)
        job->dedup = msg->dedup;
    return job;
}

tse_job *tse_job_create_trim(const tse_broker_options *opts, const char *key, int64_t now_ms)
{
    args a = {0};

    add_str(&a, "XTRIM");
    add_str(&a, key);
    if (opts->retention_maxlen > 0) {
        add_str(&a, "MAXLEN");
        add_str(&a, "~");
        add_i64(&a, opts->retention_maxlen);
    } else {
        int64_t min = now_ms - opts->retention_ms;
        add_str(&a, "MINID");
        add_str(&a, "~");
        add_i64(&a, min > 0 ? min : 0);
    }
    return job_alloc("", 0, &a);
}

tse_job *tse_job_create_command(int argc, const char *const *argv, const size_t *lens)
{
    args a = {0};

    if (argc <= 0 || argc > (int)(sizeof(a.argv) / sizeof(a.argv[0])))
        return NULL;
    for (int i = 0; i < argc; i++)
        add(&a, argv[i], lens ? lens[i] : strlen(argv[i]));
    return job_alloc("", 0, &a);
}

void tse_job_free(tse_job *job)
{
    if (job == NULL)
        return;
    tse_free(job->pre_message);
    tse_free(job);
}

void tse_job_fail(tse_job *job, tse_status status, const char *message)
{
    if (job->command_cb != NULL) {
        job->command_cb(job->arg, status, NULL, message);
        tse_job_free(job);
        return;
    }
    tse_publish_result res = {.status = status, .stream_key = job->key, .message = message};

    job->cb(job->arg, &res);
    tse_job_free(job);
}

void tse_job_finish(tse_job *job, const redisReply *reply)
{
    tse_publish_result res = {
        .status = TSE_OK, .stream_key = job->key, .new_stream = job->new_stream};
    tse_append_reply a;

    if (job->pre_status != TSE_OK) {
        tse_job_fail(job, job->pre_status, job->pre_message ? job->pre_message : "redis error");
        return;
    }
    if (job->command_cb != NULL && reply != NULL) {
        /* Error replies are the caller's to interpret (BUSYGROUP, NOGROUP...). */
        job->command_cb(job->arg, TSE_OK, reply, NULL);
        tse_job_free(job);
        return;
    }
    if (reply == NULL || tse_append_decode(reply, job->dedup, &a) != TSE_OK) {
        if (reply == NULL)
            tse_job_fail(job, TSE_INTERNAL, "redis: unexpected reply to XADD");
        else
            tse_job_fail(job, a.status, a.message);
        return;
    }
    res.stream_id = a.stream_id;
    res.duplicate = a.duplicate;
    res.published_sec = a.published_sec;
    res.published_nanos = a.published_nanos;
    if (a.stream_key != NULL)
        res.stream_key = a.stream_key;
    if (job->dedup)
        res.new_stream = a.new_stream;
    job->cb(job->arg, &res);
    tse_job_free(job);
}

void tse_job_list_push(tse_job_list *l, tse_job *job)
{
    job->next = NULL;
    if (l->tail != NULL)
        l->tail->next = job;
    else
        l->head = job;
    l->tail = job;
    l->count++;
    l->bytes += job->cmd_len;
}

tse_job *tse_job_list_pop(tse_job_list *l)
{
    tse_job *job = l->head;

    if (job == NULL)
        return NULL;
    l->head = job->next;
    if (l->head == NULL)
        l->tail = NULL;
    l->count--;
    l->bytes -= job->cmd_len;
    job->next = NULL;
    return job;
}

void tse_job_list_fail(tse_job_list *l, tse_status status, const char *message)
{
    tse_job *job;

    while ((job = tse_job_list_pop(l)) != NULL)
        tse_job_fail(job, status, message);
}
