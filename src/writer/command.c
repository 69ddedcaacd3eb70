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

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static tse_job *job_alloc(const char *key, size_t key_len, const tse_cmd *c)
{
    size_t cmd_len = tse_resp_size(c->argc, c->lens);
    tse_job *job = tse_malloc(sizeof(*job) + key_len + 1 + cmd_len);

    if (job == NULL)
        return NULL;
    memset(job, 0, sizeof(*job));
    memcpy(job->data, key, key_len + 1);
    job->key = job->data;
    job->key_len = key_len;
    job->cmd = job->data + key_len + 1;
    job->cmd_len = cmd_len;
    tse_resp_write(job->data + key_len + 1, c->argc, c->argv, c->lens);
    return job;
}

tse_job *tse_job_create(const tse_broker_options *opts, const char *sha, const tse_publish_msg *msg)
{
    size_t key_len = strlen(msg->event_type) + 32;
    size_t dedup_len = strlen(msg->event_id) + 16;
    char *key = tse_malloc(key_len + dedup_len);
    tse_append a;
    tse_cmd c;
    tse_job *job;

    if (key == NULL)
        return NULL;
    tse_key_stream(msg->event_type, msg->priority, key, key_len);
    a = (tse_append){
        .stream_key = key,
        .event_id = msg->event_id,
        .event_type = msg->event_type,
        .envelope = msg->envelope,
        .envelope_len = msg->envelope_len,
    };
    if (msg->dedup) {
        tse_key_dedup(msg->event_id, key + key_len, dedup_len);
        a.dedup_key = key + key_len;
        a.script_sha = sha;
        a.dedup_window_ms = opts->dedup_window_ms;
        a.timestamp_sec = msg->timestamp_sec;
        a.timestamp_nanos = msg->timestamp_nanos;
    }
    tse_append_command(&a, &c);
    job = job_alloc(key, strlen(key), &c);
    tse_free(key);
    if (job != NULL)
        job->dedup = msg->dedup;
    return job;
}

tse_job *tse_job_create_trim(const tse_broker_options *opts, const char *key, int64_t now_ms)
{
    tse_cmd c;

    tse_trim_command(key, opts->retention_maxlen, now_ms - opts->retention_ms, &c);
    return job_alloc("", 0, &c);
}

tse_job *tse_job_create_command(int argc, const char *const *argv, const size_t *lens)
{
    tse_cmd c;

    if (!tse_cmd_from_argv(argc, argv, lens, &c))
        return NULL;
    return job_alloc("", 0, &c);
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
