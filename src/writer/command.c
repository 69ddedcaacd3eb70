/*
 * command.c - turns a publish message into its Redis command, and the
 * decoded reply into the publish result.
 *
 * A plain event is one XADD:
 *   XADD <stream key> [MINID ~ <now-retention> | MAXLEN ~ <n>]
 *        * id <id> type <type> prio <p> src <source> ts <ms> [corr <corr>] event <bytes>
 * An event with a client-set id is an EVALSHA of tse_dedup_script, which does
 * the same XADD only when the dedup key of (<type>, <id>) is absent,
 * atomically, and then records there, for the dedup window, where and when
 * the event was stored: a retry of the same type is answered with the
 * stored event's stream, entry id and publish time, whatever priority it
 * claims. The dedup key carries the event type's hash tag, as the stream
 * does, so the script touches one slot; the same id under another type is
 * another event.
 *
 * Several events of one event type in a batch are one group job: an
 * EVALSHA of tse_dedup_batch_script that stores them all, in order, in one
 * call, each with its own result (one script call per run of one type, not
 * one per event). The lane registers every stream before its first append
 * (lane.c).
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

/* The slot of a job writing key, for a lane on a cluster (lane_cluster.c);
 * a single Redis has no use for it and costs no CRC16 per event. */
static int key_slot(const tse_broker_options *opts, const char *key)
{
    return opts->target.cluster ? (int)tse_key_slot(key, strlen(key)) : TSE_SLOT_ANY;
}

static tse_job *job_alloc(const char *key, size_t key_len, const tse_cmd *c)
{
    size_t cmd_len = tse_resp_size(c->argc, c->lens);
    tse_job *job = tse_malloc(sizeof(*job) + key_len + 1 + cmd_len);

    if (job == NULL)
        return NULL;
    memset(job, 0, sizeof(*job));
    job->slot = TSE_SLOT_ANY;
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
    size_t dedup_len = strlen(msg->event_type) + strlen(msg->event_id) + 32;
    /* Every event passes here: its keys are printed on the stack unless
     * they are unusually long. */
    char stack[512];
    char *key = stack;
    tse_append a;
    tse_cmd c;
    tse_job *job;

    if (key_len + dedup_len > sizeof(stack)) {
        key = tse_malloc(key_len + dedup_len);
        if (key == NULL)
            return NULL;
    }
    tse_key_stream(msg->event_type, msg->priority, key, key_len);
    a = (tse_append){
        .stream_key = key,
        .event_id = msg->event_id,
        .event_type = msg->event_type,
        .envelope = msg->envelope,
        .envelope_len = msg->envelope_len,
    };
    if (msg->dedup) {
        tse_key_dedup(msg->event_type, msg->event_id, key + key_len, dedup_len);
        a.dedup_key = key + key_len;
        a.script_sha = sha;
        a.dedup_window_ms = opts->dedup_window_ms;
        a.timestamp_sec = msg->timestamp_sec;
        a.timestamp_nanos = msg->timestamp_nanos;
    }
    tse_append_command(&a, &c);
    job = job_alloc(key, strlen(key), &c);
    if (key != stack)
        tse_free(key);
    if (job != NULL) {
        job->dedup = msg->dedup;
        job->slot = key_slot(opts, job->key);
    }
    return job;
}

/* Where one event's strings of a group job are built. */
typedef struct group_strs {
    char *key, *dedup_key, *when;
} group_strs;

/* The group's argument vector into argv/lens (EVALSHA sha numkeys, the
 * keys, the window, the event type, each event's arguments: ops.h,
 * tse_dedup_batch_script); strs hold the printed ones. */
static int group_args(const tse_broker_options *opts, const char *sha, const tse_publish_msg *msgs,
                      size_t n, const group_strs *strs, char *window, const char **argv,
                      size_t *lens)
{
    static const char *const flags[2] = {"0", "1"};
    int argc = 0;

#define ARG(s, len) (argv[argc] = (s), lens[argc] = (len), argc++)
#define STR(s)      ARG((s), strlen(s))
    STR("EVALSHA");
    STR(sha);
    snprintf(window + 32, 32, "%zu", 2 * n);
    STR(window + 32);
    for (size_t i = 0; i < n; i++) {
        STR(strs[i].key);
        STR(strs[i].dedup_key);
    }
    snprintf(window, 32, "%" PRId64, opts->dedup_window_ms);
    STR(window);
    /* One event type per group (tse_jobs_create_batch): it comes once. */
    STR(msgs[0].event_type);
    for (size_t i = 0; i < n; i++) {
        STR(flags[msgs[i].dedup ? 1 : 0]);
        STR(strs[i].when);
        STR(msgs[i].event_id);
        ARG((const char *)msgs[i].envelope, msgs[i].envelope_len);
    }
#undef STR
#undef ARG
    return argc;
}

/* "<sec>.<nanos, 9 digits>" into buf (32 bytes), as "%" PRId64 ".%09" PRId32
 * prints it: by hand for the usual case, because it runs for every event
 * of a batch and snprintf showed in its profile. */
static void print_when(char *buf, int64_t sec, int32_t nanos)
{
    char digits[24];
    size_t n = 0;
    uint64_t v;

    if (sec < 0 || nanos < 0 || nanos > 999999999) {
        snprintf(buf, 32, "%" PRId64 ".%09" PRId32, sec, nanos);
        return;
    }
    v = (uint64_t)sec;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = digits[n - 1 - i];
    buf[n] = '.';
    for (int i = 9; i >= 1; i--, nanos /= 10)
        buf[n + (size_t)i] = (char)('0' + nanos % 10);
    buf[n + 10] = '\0';
}

/* Prints each event's stream key, dedup key and publish time into one
 * buffer (caller frees); NULL when out of memory. */
static char *group_strings(const tse_publish_msg *msgs, size_t n, group_strs *strs)
{
    size_t total = 0, at = 0;
    char *buf;

    for (size_t i = 0; i < n; i++)
        total += 2 * strlen(msgs[i].event_type) + 32 + strlen(msgs[i].event_id) + 32 + 32;
    if ((buf = tse_malloc(total ? total : 1)) == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t key_len = strlen(msgs[i].event_type) + 32,
               id_len = strlen(msgs[i].event_type) + strlen(msgs[i].event_id) + 32;
        strs[i].key = buf + at;
        tse_broker_stream_key(msgs[i].event_type, msgs[i].priority, strs[i].key, key_len);
        strs[i].dedup_key = buf + at + key_len;
        tse_key_dedup(msgs[i].event_type, msgs[i].event_id, strs[i].dedup_key, id_len);
        strs[i].when = buf + at + key_len + id_len;
        print_when(strs[i].when, msgs[i].timestamp_sec, msgs[i].timestamp_nanos);
        at += key_len + id_len + 32;
    }
    return buf;
}

/* The job: its events, their stream keys and the command in one allocation. */
static tse_job *group_alloc(const group_strs *strs, size_t n, int argc, const char **argv,
                            const size_t *lens, tse_publish_cb cb, void *const *cb_args)
{
    size_t keys_len = 0, cmd_len = tse_resp_size(argc, lens),
           events_len = n * sizeof(tse_job_event);
    tse_job *job;
    char *at;

    for (size_t i = 0; i < n; i++)
        keys_len += strlen(strs[i].key) + 1;
    if ((job = tse_malloc(sizeof(*job) + events_len + keys_len + cmd_len)) == NULL)
        return NULL;
    memset(job, 0, sizeof(*job));
    job->events = (tse_job_event *)(void *)job->data;
    job->n_events = n;
    at = job->data + events_len;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(strs[i].key) + 1;
        memcpy(at, strs[i].key, len);
        job->events[i] = (tse_job_event){.cb = cb, .arg = cb_args[i], .key = at};
        at += len;
    }
    job->key = job->events[0].key;
    job->key_len = strlen(job->key);
    job->cmd = at;
    job->cmd_len = cmd_len;
    tse_resp_write(at, argc, argv, lens);
    job->dedup = true;
    return job;
}

tse_job *tse_job_create_group(const tse_broker_options *opts, const char *sha,
                              const tse_publish_msg *msgs, size_t n, tse_publish_cb cb,
                              void *const *cb_args)
{
    size_t max_args = 3 + 2 * n + 2 + TSE_BATCH_SCRIPT_EVENT_ARGS * n;
    group_strs *strs = tse_malloc(n * sizeof(*strs));
    const char **argv = tse_malloc(max_args * sizeof(*argv));
    size_t *lens = tse_malloc(max_args * sizeof(*lens));
    char *buf = NULL, window[64];
    tse_job *job = NULL;

    if (n == 0 || strs == NULL || argv == NULL || lens == NULL ||
        (buf = group_strings(msgs, n, strs)) == NULL)
        goto out;
    job = group_alloc(strs, n, group_args(opts, sha, msgs, n, strs, window, argv, lens), argv, lens,
                      cb, cb_args);
    /* One event type: every key of the script shares the first one's slot. */
    if (job != NULL)
        job->slot = key_slot(opts, job->key);
out:
    tse_free(buf);
    tse_free(lens);
    tse_free(argv);
    tse_free(strs);
    return job;
}

/* The end of the group job starting at dedup event i: the last event with
 * a client-set id in the run of events of msgs[i]'s type from i (one type
 * per script call: its keys then share a slot). */
static size_t group_end(const tse_publish_msg *msgs, size_t n, size_t i)
{
    size_t last = i;

    for (size_t j = i + 1; j < n && strcmp(msgs[j].event_type, msgs[i].event_type) == 0; j++)
        if (msgs[j].dedup)
            last = j;
    return last;
}

size_t tse_jobs_create_batch(const tse_broker_options *opts, const char *sha, const char *batch_sha,
                             const tse_publish_msg *msgs, size_t n, tse_publish_cb cb,
                             void *const *args, tse_job **jobs)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        tse_job *job;
        if (msgs[i].dedup) {
            size_t last = group_end(msgs, n, i);
            job = tse_job_create_group(opts, batch_sha, msgs + i, last - i + 1, cb, args + i);
            if (job == NULL)
                return 0;
            jobs[k++] = job;
            i = last;
            continue;
        }
        if ((job = tse_job_create(opts, sha, &msgs[i])) == NULL)
            return 0;
        job->cb = cb;
        job->arg = args[i];
        jobs[k++] = job;
    }
    return k;
}

tse_job *tse_job_create_trim(const tse_broker_options *opts, const char *key, int64_t now_ms)
{
    tse_cmd c;

    tse_job *job;

    tse_trim_command(key, opts->retention_maxlen, now_ms - opts->retention_ms, &c);
    job = job_alloc("", 0, &c);
    if (job != NULL)
        job->slot = key_slot(opts, key);
    return job;
}

tse_job *tse_job_create_command(int argc, const char *const *argv, const size_t *lens)
{
    tse_cmd c;

    tse_job *job;
    tse_error err;
    int slot;

    if (!tse_cmd_from_argv(argc, argv, lens, &c))
        return NULL;
    job = job_alloc("", 0, &c);
    /* A command the key table does not know, or one spanning slots, goes to
     * any master: a cluster node then answers it with its own error. */
    if (job != NULL && tse_command_slot(argc, argv, lens, &slot, &err) == TSE_OK)
        job->slot = slot;
    return job;
}

void tse_job_free(tse_job *job)
{
    if (job == NULL)
        return;
    tse_free(job->pre_message);
    tse_free(job->held_message);
    tse_reply_free(job->held_reply);
    tse_free(job);
}

void tse_job_fail(tse_job *job, tse_status status, const char *message)
{
    for (size_t i = 0; i < job->n_events; i++) {
        tse_publish_result res = {
            .status = status, .stream_key = job->events[i].key, .message = message};
        job->events[i].cb(job->events[i].arg, &res);
    }
    if (job->n_events > 0) {
        tse_job_free(job);
        return;
    }
    if (job->command_cb != NULL) {
        job->command_cb(job->arg, status, NULL, message);
        tse_job_free(job);
        return;
    }
    tse_publish_result res = {.status = status, .stream_key = job->key, .message = message};

    job->cb(job->arg, &res);
    tse_job_free(job);
}

/* A group job's reply: one result per event, each through its callback. */
static void finish_group(tse_job *job, const struct redisReply *reply)
{
    for (size_t i = 0; i < job->n_events; i++) {
        tse_publish_result res = {.status = TSE_OK, .stream_key = job->events[i].key};
        tse_append_reply a;

        if (tse_append_batch_decode(reply, job->n_events, i, &a) != TSE_OK) {
            res.status = a.status;
            res.message = a.message;
        } else {
            res.stream_id = a.stream_id;
            res.duplicate = a.duplicate;
            res.published_sec = a.published_sec;
            res.published_nanos = a.published_nanos;
            res.new_stream = job->events[i].new_stream;
            if (a.stream_key != NULL)
                res.stream_key = a.stream_key;
        }
        job->events[i].cb(job->events[i].arg, &res);
    }
    tse_job_free(job);
}

void tse_job_finish(tse_job *job, const struct redisReply *reply)
{
    tse_publish_result res = {
        .status = TSE_OK, .stream_key = job->key, .new_stream = job->new_stream};
    tse_append_reply a;

    if (job->pre_status != TSE_OK) {
        tse_job_fail(job, job->pre_status, job->pre_message ? job->pre_message : "redis error");
        return;
    }
    if (job->n_events > 0 && reply != NULL) {
        finish_group(job, reply);
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
