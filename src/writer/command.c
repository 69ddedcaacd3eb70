/*
 * command.c - turns a publish message into its Redis command and a Redis
 * reply into the publish result.
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
 * Replies are decoded here into a result that lives on the stack for the
 * callback only, so no pointer into a freed reply escapes.
 */
#include "writer/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/*
 * KEYS[1] stream, KEYS[2] dedup key, KEYS[3] the stream set; ARGV[1] window
 * in ms, ARGV[2] publish time "<sec>.<nanos>", ARGV[3..] the XADD arguments
 * after the key. Returns {0, new id, 1 when the stream is new to the set} or
 * {1, "<original id> <sec>.<nanos> <original stream key>"} (before this
 * format: the original id alone). GET and XADD+SADD+SET run as one script,
 * so two publishers of the same id cannot both append, and a refused retry
 * registers no stream.
 */
const char tse_dedup_script[] =
    "local prev = redis.call('GET', KEYS[2])\n"
    "if prev then return {1, prev} end\n"
    "local id = redis.call('XADD', KEYS[1], unpack(ARGV, 3))\n"
    "local added = redis.call('SADD', KEYS[3], KEYS[1])\n"
    "redis.call('SET', KEYS[2], id .. ' ' .. ARGV[2] .. ' ' .. KEYS[1], 'PX', ARGV[1])\n"
    "return {0, id, added}\n";

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

tse_status tse_redis_error_status(const char *msg, size_t len)
{
    /* Errors that go away by themselves: retrying later may succeed. */
    static const char *const transient[] = {"OOM",         "LOADING",    "BUSY",
                                            "MASTERDOWN",  "TRYAGAIN",   "READONLY",
                                            "CLUSTERDOWN", "NOREPLICAS", "NOSCRIPT"};

    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        size_t n = strlen(transient[i]);

        if (len >= n && memcmp(msg, transient[i], n) == 0 && (len == n || msg[n] == ' '))
            return TSE_UNAVAILABLE;
    }
    return TSE_INTERNAL;
}

static void finish_error(tse_job *job, const redisReply *reply)
{
    char message[256];

    snprintf(message, sizeof(message), "redis: %.*s", (int)reply->len, reply->str);
    tse_job_fail(job, tse_redis_error_status(reply->str, reply->len), message);
}

bool tse_dedup_reply_stored(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
           reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 0;
}

/*
 * A duplicate's record "<id> <sec>.<nanos> <stream key>" into res (id copied
 * into id_buf, the key pointing into rec). An older record holds the id
 * alone: the key is then the one asked for and the time the entry id's.
 */
static bool parse_dedup_record(const char *rec, char *id_buf, size_t id_len,
                               tse_publish_result *res)
{
    const char *sp = strchr(rec, ' ');
    long long sec = 0, ms = 0;
    long nanos = 0;
    int used = 0;

    if (sp == NULL) {
        snprintf(id_buf, id_len, "%s", rec);
        if (sscanf(rec, "%lld", &ms) == 1) {
            res->published_sec = ms / 1000;
            res->published_nanos = (int32_t)(ms % 1000) * 1000000;
        }
        return true;
    }
    if ((size_t)(sp - rec) >= id_len || sscanf(sp + 1, "%lld.%ld %n", &sec, &nanos, &used) != 2 ||
        used == 0 || sp[1 + used] == '\0')
        return false;
    memcpy(id_buf, rec, (size_t)(sp - rec));
    id_buf[sp - rec] = '\0';
    res->published_sec = sec;
    res->published_nanos = (int32_t)nanos;
    res->stream_key = sp + 1 + used;
    return true;
}

/* The dedup script's reply into res; false when it has another shape. */
static bool dedup_reply(const redisReply *reply, char *id_buf, size_t id_len,
                        tse_publish_result *res)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return false;
    res->duplicate = reply->element[0]->integer == 1;
    if (res->duplicate)
        return parse_dedup_record(reply->element[1]->str, id_buf, id_len, res);
    res->stream_id = reply->element[1]->str;
    res->new_stream = reply->elements >= 3 && reply->element[2]->type == REDIS_REPLY_INTEGER &&
                      reply->element[2]->integer == 1;
    return true;
}

void tse_job_finish(tse_job *job, const redisReply *reply)
{
    tse_publish_result res = {
        .status = TSE_OK, .stream_key = job->key, .new_stream = job->new_stream};
    char dup_id[64];

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
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        finish_error(job, reply);
        return;
    }
    if (reply != NULL && job->dedup && dedup_reply(reply, dup_id, sizeof(dup_id), &res)) {
        if (res.duplicate)
            res.stream_id = dup_id;
        goto done;
    }
    if (reply != NULL && !job->dedup && reply->type == REDIS_REPLY_STRING) {
        res.stream_id = reply->str;
        goto done;
    }
    tse_job_fail(job, TSE_INTERNAL, "redis: unexpected reply to XADD");
    return;
done:
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
