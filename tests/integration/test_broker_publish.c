/*
 * test_broker_publish.c - the broker against a real redis-server: what is
 * stored (every field, binary envelopes), per-lane order under deep
 * pipelining, the stream registry, retention, dedup, Redis error replies, and
 * failures (killed, restarted, stopped Redis; wrong password; full queue;
 * destroy with jobs in flight); a publish the caller writes to an idle lane
 * (order behind it, Redis dying or hanging before its reply, a job larger
 * than the socket takes).
 *
 * Each test gets its own redis-server (AOF off, ephemeral port) and closes
 * everything it opened. Results are copied out of the callbacks under a
 * mutex; tests wait on a condition variable with a deadline, never sleep-poll
 * for completions.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "wait.h"
#include "writer/broker.h"
#include "writer/internal.h"

/* ---- collecting callbacks ---------------------------------------------------------- */

typedef struct collector collector;

typedef struct outcome {
    collector *c;
    int index;
    int calls;
    tse_status status;
    bool duplicate;
    long long published_sec;
    int published_nanos;
    char stream_id[64];
    char stream_key[256];
    char message[256];
    long long at_ms;
} outcome;

struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    outcome *out;
    int n;
    int completed;
    int next_expected; /* completion order check, for one-lane tests */
    bool in_order;
    /* chain test: each callback publishes the next job */
    tse_broker *chain_broker;
};

static collector *collector_new(int n)
{
    collector *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->out = calloc((size_t)n, sizeof(*c->out));
    assert_non_null(c->out);
    c->n = n;
    c->in_order = true;
    for (int i = 0; i < n; i++) {
        c->out[i].c = c;
        c->out[i].index = i;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    return c;
}

static void collector_free(collector *c)
{
    if (c == NULL)
        return;
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c->out);
    free(c);
}

static void on_published(void *arg, const tse_publish_result *res)
{
    outcome *o = arg;
    collector *c = o->c;

    pthread_mutex_lock(&c->mu);
    o->calls++;
    o->status = res->status;
    o->duplicate = res->duplicate;
    o->published_sec = res->published_sec;
    o->published_nanos = res->published_nanos;
    o->at_ms = tse_test_now_ms();
    snprintf(o->stream_id, sizeof(o->stream_id), "%s", res->stream_id ? res->stream_id : "");
    snprintf(o->stream_key, sizeof(o->stream_key), "%s", res->stream_key ? res->stream_key : "");
    snprintf(o->message, sizeof(o->message), "%s", res->message ? res->message : "");
    if (o->index != c->next_expected)
        c->in_order = false;
    c->next_expected = o->index + 1;
    c->completed++;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* Waits until n callbacks ran in all; false on timeout. */
static bool wait_completed(collector *c, int n, int timeout_ms)
{
    struct timespec until;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->completed < n && pthread_cond_timedwait(&c->cond, &c->mu, &until) == 0)
        ;
    ok = c->completed >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* ---- health reports ---------------------------------------------------------------- */

typedef struct health {
    pthread_mutex_t mu;
    int n;
    bool seen[64];
    long long at_ms[64];
} health;

static void on_health(void *arg, bool up)
{
    health *h = arg;

    pthread_mutex_lock(&h->mu);
    if (h->n < 64) {
        h->seen[h->n] = up;
        h->at_ms[h->n] = tse_test_now_ms();
        h->n++;
    }
    pthread_mutex_unlock(&h->mu);
}

static int health_count(health *h)
{
    int n;

    pthread_mutex_lock(&h->mu);
    n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* Waits until at least n reports arrived; false on timeout. */
static bool wait_health(health *h, int n, int timeout_ms)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, timeout_ms);
    while (health_count(h) < n)
        if (!tse_test_waiter_poll(&waiter))
            return false;
    return true;
}

static bool wait_up(tse_broker *b, bool up, int timeout_ms)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, timeout_ms);
    while (tse_broker_is_up(b) != up)
        if (!tse_test_waiter_poll(&waiter))
            return false;
    return true;
}

/* Whether the broker's last error mentions what (a failed connect says so). */
static bool last_error_says(tse_broker *b, const char *what)
{
    char why[256];

    tse_broker_last_error(b, why, sizeof(why));
    return strstr(why, what) != NULL;
}

/* ---- fixture ------------------------------------------------------------------------ */

typedef struct fixture {
    tse_test_redis *redis;
    tse_broker *broker;
    health health;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    pthread_mutex_init(&f->health.mu, NULL);
    f->redis = tse_test_redis_start(false);
    if (f->redis == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    /* Never leave a stopped server behind: SIGCONT is harmless otherwise. */
    if (f->redis->pid > 0)
        kill(f->redis->pid, SIGCONT);
    tse_broker_destroy(f->broker);
    tse_test_redis_stop(f->redis);
    pthread_mutex_destroy(&f->health.mu);
    free(f);
    return 0;
}

static tse_broker_options options_for(const tse_test_redis *r)
{
    tse_broker_options o = {
        .lanes = 1, .timeout_ms = 1000, .dedup_window_ms = 60000, .max_queue = 20000};

    assert_int_equal(tse_redis_url_parse(r->url, &o.target, NULL), TSE_OK);
    return o;
}

/* Creates f->broker and waits until it is up. */
static void start_broker(fixture *f, const tse_broker_options *o)
{
    tse_error err;

    assert_int_equal(tse_broker_create(o, on_health, &f->health, &f->broker, &err), TSE_OK);
    assert_true(wait_up(f->broker, true, 5000));
}

static tse_publish_msg make_msg(const char *id, const char *type, int prio, const uint8_t *env,
                                size_t len)
{
    tse_publish_msg m = {.event_id = id,
                         .event_type = type,
                         .priority = prio,
                         .source_service = "sample-service",
                         .timestamp_sec = 1718700000LL,
                         .timestamp_nanos = 123456789,
                         .envelope = env,
                         .envelope_len = len};
    return m;
}

static tse_status publish(fixture *f, int lane, const tse_publish_msg *m, outcome *o)
{
    return tse_broker_publish(f->broker, lane, m, on_published, o);
}

/* ---- reading Redis directly --------------------------------------------------------- */

static redisContext *rconnect(const tse_test_redis *r, const char *password)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisSetTimeout(c, tv);
    if (password != NULL)
        freeReplyObject(redisCommand(c, "AUTH %s", password));
    return c;
}

static redisReply *rcmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static long long rint_cmd(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = rcmd(c, fmt, arg);
    long long v;

    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

/* The value of field name in an XRANGE entry ([id, [k, v, ...]]), or NULL. */
static const redisReply *entry_field(const redisReply *entry, const char *name)
{
    const redisReply *kv = entry->element[1];

    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        if (strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1];
    }
    return NULL;
}

static void assert_field(const redisReply *entry, const char *name, const char *want)
{
    const redisReply *v = entry_field(entry, name);

    if (want == NULL) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v->str, want);
}

static bool set_has(redisContext *c, const char *key)
{
    return rint_cmd(c, "SISMEMBER tracseq:streams %s", key) == 1;
}

/* ---- what is stored ---------------------------------------------------------------------- */

static void fill_binary(uint8_t *env, size_t len)
{
    static const char tricky[] = "\0\r\n*3\r\n$5\r\nXADD\r\n\0";

    for (size_t i = 0; i < len; i++)
        env[i] = (uint8_t)(i * 7);
    memcpy(env + 10, tricky, sizeof(tricky));
}

static void published_events_are_stored_with_every_field_intact(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    uint8_t env[300];
    char key[128];
    redisContext *rc;
    redisReply *r;

    fill_binary(env, sizeof(env));
    start_broker(f, &o);
    tse_publish_msg m1 = make_msg("id-1", "sample.received", 2, env, sizeof(env));
    m1.correlation_id = "corr-7";
    tse_publish_msg m2 = make_msg("id-2", "sample.received", 2, (const uint8_t *)"x", 1);
    assert_int_equal(publish(f, 0, &m1, &c->out[0]), TSE_OK);
    assert_int_equal(publish(f, 0, &m2, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));

    tse_broker_stream_key("sample.received", 2, key, sizeof(key));
    assert_string_equal(key, "tracseq:events:{sample.received}:p2");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_OK);
        assert_false(c->out[i].duplicate);
        assert_string_equal(c->out[i].stream_key, key);
    }
    rc = rconnect(f->redis, NULL);
    r = rcmd(rc, "XRANGE %s - +", key);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->element[0]->str, c->out[0].stream_id);
    assert_string_equal(r->element[1]->element[0]->str, c->out[1].stream_id);
    assert_field(r->element[0], "id", "id-1");
    assert_field(r->element[0], "type", "sample.received");
    /* Only id, type and event: the rest lives in the key, the entry id and
     * the envelope. */
    assert_field(r->element[0], "prio", NULL);
    assert_field(r->element[0], "src", NULL);
    assert_field(r->element[0], "corr", NULL);
    assert_int_equal(r->element[0]->element[1]->elements, 6);
    const redisReply *ev = entry_field(r->element[0], "event");
    assert_non_null(ev);
    assert_int_equal(ev->len, sizeof(env));
    assert_memory_equal(ev->str, env, sizeof(env));
    freeReplyObject(r);
    redisFree(rc);
    collector_free(c);
}

static void ten_thousand_pipelined_jobs_keep_order_on_one_lane(void **state)
{
    enum { N = 10000 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N);
    uint8_t env[300];
    char id[32], key[128];
    redisContext *rc;
    redisReply *r;

    o.lanes = 2;
    memset(env, 'e', sizeof(env));
    start_broker(f, &o);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "ev-%05d", i);
        tse_publish_msg m = make_msg(id, "order.test", 3, env, sizeof(env));
        assert_int_equal(publish(f, 1, &m, &c->out[i]), TSE_OK);
    }
    assert_true(wait_completed(c, N, 30000));
    assert_true(c->in_order);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_OK);
    }
    tse_broker_stream_key("order.test", 3, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    r = rcmd(rc, "XRANGE %s - +", key);
    assert_int_equal(r->elements, N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "ev-%05d", i);
        assert_field(r->element[i], "id", id);
        assert_string_equal(r->element[i]->element[0]->str, c->out[i].stream_id);
    }
    freeReplyObject(r);
    redisFree(rc);
    collector_free(c);
}

static void first_write_to_a_stream_registers_its_key(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(6);
    const char *types[] = {"a.one", "b.two", "a.one"};
    char key[128];
    redisContext *rc;

    o.lanes = 2;
    start_broker(f, &o);
    for (int i = 0; i < 6; i++) {
        tse_publish_msg m = make_msg("id", types[i % 3], 1 + i % 2, (const uint8_t *)"e", 1);
        assert_int_equal(publish(f, i % 2, &m, &c->out[i]), TSE_OK);
    }
    assert_true(wait_completed(c, 6, 5000));
    rc = rconnect(f->redis, NULL);
    assert_int_equal(rint_cmd(rc, "SCARD %s", "tracseq:streams"), 4);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(c->out[i].status, TSE_OK);
        tse_broker_stream_key(types[i % 3], 1 + i % 2, key, sizeof(key));
        assert_true(set_has(rc, key));
    }
    redisFree(rc);
    collector_free(c);
}

/* ---- retention ------------------------------------------------------------------------ */

static void publish_many(fixture *f, collector *c, int from, int n, const char *type)
{
    for (int i = from; i < from + n; i++) {
        tse_publish_msg m = make_msg("id", type, 3, (const uint8_t *)"payload", 7);
        assert_int_equal(publish(f, 0, &m, &c->out[i]), TSE_OK);
    }
}

static void retention_maxlen_trims_the_stream(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(3000);
    char key[128];
    redisContext *rc;
    long long len;

    o.retention_maxlen = 100;
    o.retention_ms = 1; /* maxlen wins when both are set */
    start_broker(f, &o);
    publish_many(f, c, 0, 3000, "trim.maxlen");
    assert_true(wait_completed(c, 3000, 20000));
    tse_broker_stream_key("trim.maxlen", 3, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    /* Lanes trim once a second; "~" trims whole macro nodes (100 entries). */
    TSE_TEST_AWAIT((len = rint_cmd(rc, "XLEN %s", key)) < 400, 10000, "%s trimmed", key);
    assert_true(len >= 100);
    assert_true(len < 400);
    redisFree(rc);
    collector_free(c);
}

static void retention_minid_trims_entries_older_than_the_window(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(1001);
    char key[128];
    redisContext *rc;

    o.retention_ms = 300;
    start_broker(f, &o);
    publish_many(f, c, 0, 1000, "trim.minid");
    assert_true(wait_completed(c, 1000, 20000));
    tse_broker_stream_key("trim.minid", 3, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    assert_true(rint_cmd(rc, "XLEN %s", key) >= 1000);
    usleep(500 * 1000); /* under test: the 1000 grow older than the 300 ms window */
    publish_many(f, c, 1000, 1, "trim.minid");
    assert_true(wait_completed(c, 1001, 5000));
    /* The next once-a-second trim drops what is older than the window. */
    TSE_TEST_AWAIT(rint_cmd(rc, "XLEN %s", key) < 200, 10000, "%s trimmed", key);
    redisFree(rc);
    collector_free(c);
}

/* ---- dedup ---------------------------------------------------------------------------- */

static void same_client_id_twice_is_stored_once_and_reports_the_original(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(3);
    char key[128];
    redisContext *rc;
    redisReply *r;

    start_broker(f, &o);
    tse_publish_msg m = make_msg("client-id-1", "dedup.test", 4, (const uint8_t *)"first", 5);
    m.dedup = true;
    /* Two in the same pipeline: the script makes the check and the append atomic. */
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    m.envelope = (const uint8_t *)"second";
    m.envelope_len = 6;
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(publish(f, 0, &m, &c->out[2]), TSE_OK);
    assert_true(wait_completed(c, 3, 5000));

    assert_int_equal(c->out[0].status, TSE_OK);
    assert_false(c->out[0].duplicate);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(c->out[i].status, TSE_OK);
        assert_true(c->out[i].duplicate);
        assert_string_equal(c->out[i].stream_id, c->out[0].stream_id);
    }
    tse_broker_stream_key("dedup.test", 4, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    assert_int_equal(rint_cmd(rc, "XLEN %s", key), 1);
    assert_true(set_has(rc, key));
    /* Where and when it was stored: "<id> <sec>.<nanos> <stream key>". */
    char record[256];
    snprintf(record, sizeof(record), "%s 1718700000.123456789 %s", c->out[0].stream_id, key);
    r = rcmd(rc, "GET tracseq:dedup:{dedup.test}:client-id-1");
    assert_string_equal(r->str, record);
    freeReplyObject(r);
    r = rcmd(rc, "PTTL tracseq:dedup:{dedup.test}:client-id-1");
    assert_true(r->integer > 50000 && r->integer <= 60000);
    freeReplyObject(r);
    r = rcmd(rc, "XRANGE %s - +", key);
    assert_field(r->element[0], "event", "first");
    assert_field(r->element[0], "id", "client-id-1");
    /* The script appends what a plain XADD appends: id, type, event. */
    assert_field(r->element[0], "type", "dedup.test");
    assert_int_equal(r->element[0]->element[1]->elements, 6);
    freeReplyObject(r);
    redisFree(rc);
    collector_free(c);
}

/* A retry claiming another priority is answered with the stored event's
 * stream, id and time, and stores nothing. */
static void duplicate_under_another_priority_answers_the_stored_stream(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    char first_key[128], other_key[128];
    redisContext *rc;

    start_broker(f, &o);
    tse_publish_msg m = make_msg("client-id-x", "dedup.first", 2, (const uint8_t *)"e", 1);
    m.dedup = true;
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 1, 5000));
    m.priority = 5;
    m.timestamp_sec += 7;
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));

    tse_broker_stream_key("dedup.first", 2, first_key, sizeof(first_key));
    tse_broker_stream_key("dedup.first", 5, other_key, sizeof(other_key));
    assert_int_equal(c->out[1].status, TSE_OK);
    assert_true(c->out[1].duplicate);
    assert_string_equal(c->out[1].stream_id, c->out[0].stream_id);
    assert_string_equal(c->out[1].stream_key, first_key);
    assert_int_equal(c->out[1].published_sec, 1718700000);
    assert_int_equal(c->out[1].published_nanos, 123456789);
    rc = rconnect(f->redis, NULL);
    assert_int_equal(rint_cmd(rc, "XLEN %s", first_key), 1);
    assert_int_equal(rint_cmd(rc, "XLEN %s", other_key), 0);
    assert_true(set_has(rc, first_key));
    redisFree(rc);
    collector_free(c);
}

/* The dedup scope is one event type (the dedup key carries the type's hash
 * tag, so the script touches one Redis Cluster slot): the same id under
 * another type is another event, stored too, and each type's retry is a
 * duplicate of its own. */
static void same_client_id_under_another_type_is_stored_too(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(4);
    char first_key[128], other_key[128];
    redisContext *rc;

    start_broker(f, &o);
    tse_publish_msg m = make_msg("client-id-y", "dedup.first", 2, (const uint8_t *)"e", 1);
    m.dedup = true;
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    m.event_type = "dedup.other";
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(publish(f, 0, &m, &c->out[2]), TSE_OK);
    m.event_type = "dedup.first";
    assert_int_equal(publish(f, 0, &m, &c->out[3]), TSE_OK);
    assert_true(wait_completed(c, 4, 5000));

    tse_broker_stream_key("dedup.first", 2, first_key, sizeof(first_key));
    tse_broker_stream_key("dedup.other", 2, other_key, sizeof(other_key));
    for (int i = 0; i < 4; i++)
        assert_int_equal(c->out[i].status, TSE_OK);
    assert_false(c->out[0].duplicate);
    assert_false(c->out[1].duplicate);
    assert_string_equal(c->out[0].stream_key, first_key);
    assert_string_equal(c->out[1].stream_key, other_key);
    assert_true(c->out[2].duplicate);
    assert_string_equal(c->out[2].stream_id, c->out[1].stream_id);
    assert_string_equal(c->out[2].stream_key, other_key);
    assert_true(c->out[3].duplicate);
    assert_string_equal(c->out[3].stream_id, c->out[0].stream_id);
    assert_string_equal(c->out[3].stream_key, first_key);
    rc = rconnect(f->redis, NULL);
    assert_int_equal(rint_cmd(rc, "XLEN %s", first_key), 1);
    assert_int_equal(rint_cmd(rc, "XLEN %s", other_key), 1);
    assert_int_equal(rint_cmd(rc, "EXISTS %s", "tracseq:dedup:{dedup.first}:client-id-y"), 1);
    assert_int_equal(rint_cmd(rc, "EXISTS %s", "tracseq:dedup:{dedup.other}:client-id-y"), 1);
    redisFree(rc);
    collector_free(c);
}

static void client_id_is_stored_again_after_the_dedup_window(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    char key[128];
    redisContext *rc;

    o.dedup_window_ms = 200;
    start_broker(f, &o);
    tse_publish_msg m = make_msg("client-id-2", "dedup.window", 1, (const uint8_t *)"e", 1);
    m.dedup = true;
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 1, 5000));
    /* The window is over when Redis has expired the id's dedup record. */
    rc = rconnect(f->redis, NULL);
    TSE_TEST_AWAIT(rint_cmd(rc, "EXISTS %s", "tracseq:dedup:{dedup.window}:client-id-2") == 0,
                   10000, "the 200 ms dedup window of client-id-2 to end");
    redisFree(rc);
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    assert_false(c->out[1].duplicate);
    assert_string_not_equal(c->out[1].stream_id, c->out[0].stream_id);
    tse_broker_stream_key("dedup.window", 1, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    assert_int_equal(rint_cmd(rc, "XLEN %s", key), 2);
    redisFree(rc);
    collector_free(c);
}

static void flushed_script_fails_one_dedup_job_then_is_reloaded(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    redisContext *rc;

    start_broker(f, &o);
    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "SCRIPT FLUSH"));
    tse_publish_msg m = make_msg("client-id-3", "dedup.flush", 1, (const uint8_t *)"e", 1);
    m.dedup = true;
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 1, 5000));
    assert_int_equal(c->out[0].status, TSE_UNAVAILABLE);
    assert_non_null(strstr(c->out[0].message, "NOSCRIPT"));
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    assert_false(c->out[1].duplicate);
    assert_true(tse_broker_is_up(f->broker));
    redisFree(rc);
    collector_free(c);
}

/*
 * A batch's script call (tse_dedup_batch_script) stores what single
 * publishes store: entries with exactly the fields id, type and event (the
 * envelope byte for byte), the dedup record "<id> <sec>.<nanos> <stream
 * key>" for the window, a repeated id answered with the first one, an event
 * without a client id appended as is, and an append that fails alone (no
 * record left behind, so its retry can store it).
 */
static void a_batch_script_stores_what_single_publishes_store(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(5);
    uint8_t env[300];
    char key[128], clash[128], record[256];
    redisContext *rc;
    redisReply *r;
    void *args[5];

    fill_binary(env, sizeof(env));
    start_broker(f, &o);
    tse_broker_stream_key("batch.script", 2, key, sizeof(key));
    tse_broker_stream_key("batch.script", 4, clash, sizeof(clash));
    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "SET %s not-a-stream", clash));
    tse_publish_msg batch[] = {
        make_msg("b-1", "batch.script", 2, env, sizeof(env)),
        make_msg("plain-1", "batch.script", 2, (const uint8_t *)"p", 1),
        make_msg("b-2", "batch.script", 4, (const uint8_t *)"x", 1),
        make_msg("b-1", "batch.script", 3, (const uint8_t *)"again", 5),
        make_msg("b-3", "batch.script", 2, (const uint8_t *)"three", 5),
    };
    batch[0].dedup = batch[2].dedup = batch[3].dedup = batch[4].dedup = true;
    for (int i = 0; i < 5; i++)
        args[i] = &c->out[i];
    assert_int_equal(tse_broker_publish_batch(f->broker, 0, batch, 5, on_published, args), TSE_OK);
    assert_true(wait_completed(c, 5, 5000));
    assert_true(c->in_order);

    for (int i = 0; i < 5; i++)
        assert_int_equal(c->out[i].calls, 1);
    assert_int_equal(c->out[0].status, TSE_OK);
    assert_false(c->out[0].duplicate);
    assert_int_equal(c->out[1].status, TSE_OK);
    assert_int_equal(c->out[2].status, TSE_INTERNAL);
    assert_non_null(strstr(c->out[2].message, "WRONGTYPE"));
    assert_int_equal(c->out[3].status, TSE_OK);
    assert_true(c->out[3].duplicate);
    assert_string_equal(c->out[3].stream_id, c->out[0].stream_id);
    assert_string_equal(c->out[3].stream_key, key);
    assert_int_equal(c->out[3].published_sec, 1718700000);
    assert_int_equal(c->out[3].published_nanos, 123456789);
    assert_int_equal(c->out[4].status, TSE_OK);
    assert_false(c->out[4].duplicate);

    r = rcmd(rc, "XRANGE %s - +", key);
    assert_int_equal(r->elements, 3);
    static const char *const ids[] = {"b-1", "plain-1", "b-3"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r->element[i]->element[1]->elements, 6);
        assert_string_equal(r->element[i]->element[1]->element[0]->str, "id");
        assert_field(r->element[i], "id", ids[i]);
        assert_string_equal(r->element[i]->element[1]->element[2]->str, "type");
        assert_field(r->element[i], "type", "batch.script");
        assert_string_equal(r->element[i]->element[1]->element[4]->str, "event");
    }
    const redisReply *ev = entry_field(r->element[0], "event");
    assert_int_equal(ev->len, sizeof(env));
    assert_memory_equal(ev->str, env, sizeof(env));
    assert_field(r->element[2], "event", "three");
    assert_string_equal(r->element[0]->element[0]->str, c->out[0].stream_id);
    freeReplyObject(r);

    snprintf(record, sizeof(record), "%s 1718700000.123456789 %s", c->out[0].stream_id, key);
    r = rcmd(rc, "GET tracseq:dedup:{batch.script}:b-1");
    assert_string_equal(r->str, record);
    freeReplyObject(r);
    r = rcmd(rc, "PTTL tracseq:dedup:{batch.script}:b-1");
    assert_true(r->integer > 50000 && r->integer <= 60000);
    freeReplyObject(r);
    assert_int_equal(rint_cmd(rc, "EXISTS %s", "tracseq:dedup:{batch.script}:b-2"), 0);
    assert_int_equal(rint_cmd(rc, "EXISTS %s", "tracseq:dedup:{batch.script}:plain-1"), 0);
    redisFree(rc);
    collector_free(c);
}

/* ---- Redis error replies ------------------------------------------------------------------ */

static void wrong_type_reply_fails_the_job_as_internal(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    char key[128];
    redisContext *rc;

    start_broker(f, &o);
    tse_broker_stream_key("clash.type", 2, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "SET %s not-a-stream", key));
    tse_publish_msg m = make_msg("client-id-4", "clash.type", 2, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    m.dedup = true;
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->out[i].status, TSE_INTERNAL);
        assert_non_null(strstr(c->out[i].message, "WRONGTYPE"));
        assert_string_equal(c->out[i].stream_id, "");
    }
    /* The connection survives an error reply. */
    assert_true(tse_broker_is_up(f->broker));
    redisFree(rc);
    collector_free(c);
}

static void out_of_memory_is_unavailable_and_recovers(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    char key[128];
    redisContext *rc;

    start_broker(f, &o);
    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "CONFIG SET maxmemory-policy noeviction"));
    freeReplyObject(rcmd(rc, "CONFIG SET maxmemory 1"));
    tse_publish_msg m = make_msg("id", "oom.test", 5, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 1, 5000));
    assert_int_equal(c->out[0].status, TSE_UNAVAILABLE);
    assert_non_null(strstr(c->out[0].message, "OOM"));
    freeReplyObject(rcmd(rc, "CONFIG SET maxmemory 0"));
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    /* The failed registration was retried with the next write. */
    tse_broker_stream_key("oom.test", 5, key, sizeof(key));
    assert_true(set_has(rc, key));
    redisFree(rc);
    collector_free(c);
}

/* ---- admission ------------------------------------------------------------------------ */

static void invalid_publishes_are_rejected_without_callback(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(1);
    outcome *out = &c->out[0];

    start_broker(f, &o);
    tse_publish_msg m = make_msg("id", "bad.prio", 0, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, out), TSE_INVALID);
    m.priority = 6;
    assert_int_equal(publish(f, 0, &m, out), TSE_INVALID);
    m.priority = 3;
    assert_int_equal(publish(f, 1, &m, out), TSE_INVALID);
    assert_int_equal(publish(f, -1, &m, out), TSE_INVALID);
    assert_int_equal(tse_broker_publish(f->broker, 0, &m, NULL, NULL), TSE_INVALID);
    m.event_id = "";
    assert_int_equal(publish(f, 0, &m, out), TSE_INVALID);
    m.event_id = "id";
    m.event_type = NULL;
    assert_int_equal(publish(f, 0, &m, out), TSE_INVALID);
    m.event_type = "t.t";
    m.envelope = NULL;
    assert_int_equal(publish(f, 0, &m, out), TSE_INVALID);
    assert_int_equal(tse_broker_publish(f->broker, 0, NULL, on_published, out), TSE_INVALID);
    usleep(50 * 1000); /* under test: no callback comes for a refused publish */
    assert_int_equal(out->calls, 0);
    collector_free(c);
}

static void bad_options_are_rejected(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    tse_broker *b = NULL;
    tse_error err;

    o.lanes = 0;
    assert_int_equal(tse_broker_create(&o, NULL, NULL, &b, &err), TSE_INVALID);
    assert_string_equal(err.field, "lanes");
    assert_null(b);
    o = options_for(f->redis);
    o.timeout_ms = 0;
    assert_int_equal(tse_broker_create(&o, NULL, NULL, &b, &err), TSE_INVALID);
    o = options_for(f->redis);
    o.max_queue = 0;
    assert_int_equal(tse_broker_create(&o, NULL, NULL, &b, &err), TSE_INVALID);
    o = options_for(f->redis);
    o.dedup_window_ms = 0;
    assert_int_equal(tse_broker_create(&o, NULL, NULL, &b, &err), TSE_INVALID);
    assert_null(b);
}

static void full_queue_returns_resource_exhausted(void **state)
{
    enum { N = 4000 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N);
    int accepted = 0;
    tse_status st = TSE_OK;

    o.max_queue = 16;
    o.timeout_ms = 3000;
    start_broker(f, &o);
    /* A stopped server keeps the pipeline full, so the queue fills up. */
    kill(f->redis->pid, SIGSTOP);
    while (accepted < N) {
        tse_publish_msg m = make_msg("id", "queue.full", 3, (const uint8_t *)"e", 1);
        st = publish(f, 0, &m, &c->out[accepted]);
        if (st != TSE_OK)
            break;
        accepted++;
    }
    assert_int_equal(st, TSE_RESOURCE_EXHAUSTED);
    /* In flight (<= 1024) plus queued (16), give or take what the lane took. */
    assert_true(accepted >= 16 && accepted <= 1024 + 16);
    kill(f->redis->pid, SIGCONT);
    assert_true(wait_completed(c, accepted, 10000));
    for (int i = 0; i < accepted; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_OK);
    }
    assert_int_equal(c->out[accepted].calls, 0);
    collector_free(c);
}

static void chain_next(void *arg, const tse_publish_result *res)
{
    outcome *o = arg;
    collector *c = o->c;
    int next = o->index + 1;
    bool more = next < c->n; /* read before the last completion lets the test free c */

    if (more) {
        tse_publish_msg m = make_msg("id", "chain.test", 3, (const uint8_t *)"e", 1);

        /* No cmocka assert off the test thread: a refusal shows as a missing call. */
        tse_broker_publish(c->chain_broker, 0, &m, chain_next, &c->out[next]);
    }
    on_published(arg, res);
}

static void callback_may_publish_on_its_own_lane(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(200);

    start_broker(f, &o);
    c->chain_broker = f->broker;
    tse_publish_msg m = make_msg("id", "chain.test", 3, (const uint8_t *)"e", 1);
    assert_int_equal(tse_broker_publish(f->broker, 0, &m, chain_next, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 200, 10000));
    assert_true(c->in_order);
    assert_int_equal(c->out[199].status, TSE_OK);
    collector_free(c);
}

/* ---- failures ---------------------------------------------------------------------------- */

static void unreachable_redis_leaves_the_broker_down_and_refuses_publish(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(1);
    char why[256];
    tse_error err;

    o.target.port = tse_test_free_port();
    o.lanes = 2;
    assert_int_equal(tse_broker_create(&o, on_health, &f->health, &f->broker, &err), TSE_OK);
    TSE_TEST_AWAIT(last_error_says(f->broker, "connect"), 10000, "a failed connect to report");
    assert_false(tse_broker_is_up(f->broker));
    tse_publish_msg m = make_msg("id", "down.test", 3, (const uint8_t *)"e", 1);
    /* Accepted to ride on a connect attempt made at once (a probe), which
     * fails: the callback says so, promptly, naming the failure. Within
     * TSE_BROKER_PROBE_MS of the lane's last attempt (its backoff retries
     * at 100, 300, 700 ms...: slow builds land there) it is refused at once
     * instead, UNAVAILABLE; the next probe is then at most that far away.
     * The deadlines are generous: a loaded host (CI runs the suite at load
     * 16 on 2 cores) must not fail what is a wait for a condition. */
    TSE_TEST_AWAIT(publish(f, 0, &m, &c->out[0]) == TSE_OK, 10000,
                   "a publish accepted to ride on a probe");
    assert_true(wait_completed(c, 1, 10000));
    assert_int_equal(c->out[0].status, TSE_UNAVAILABLE);
    assert_non_null(strstr(c->out[0].message, "connect"));
    tse_broker_last_error(f->broker, why, sizeof(why));
    assert_non_null(strstr(why, "connect"));
    assert_int_equal(health_count(&f->health), 0);
    long long t0 = tse_test_now_ms();
    tse_broker_destroy(f->broker);
    f->broker = NULL;
    /* Destroy wakes lanes out of their backoff. */
    assert_true(tse_test_now_ms() - t0 < 1500);
    assert_int_equal(c->out[0].calls, 1);
    collector_free(c);
}

static void killed_redis_fails_jobs_unavailable_and_reports_down(void **state)
{
    enum { N = 3000 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N + 2);
    long long t_kill;
    int ok = 0;

    o.timeout_ms = 500;
    start_broker(f, &o);
    assert_true(wait_health(&f->health, 1, 1000));
    publish_many(f, c, 0, N, "kill.test");
    tse_test_redis_kill(f->redis);
    t_kill = tse_test_now_ms();
    assert_true(wait_completed(c, N, 5000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(c->out[i].calls, 1);
        if (c->out[i].status == TSE_OK)
            ok++;
        else
            assert_int_equal(c->out[i].status, TSE_UNAVAILABLE);
    }
    assert_true(wait_health(&f->health, 2, 3000));
    assert_true(f->health.seen[0]);
    assert_false(f->health.seen[1]);
    assert_true(f->health.at_ms[1] - t_kill < o.timeout_ms + 1000);
    assert_false(tse_broker_is_up(f->broker));
    /* While down, publish is refused at once (within 100 ms of the last
     * connect attempt) or rides on a probe that fails promptly. */
    tse_publish_msg m = make_msg("id", "kill.test", 3, (const uint8_t *)"e", 1);
    long long t_pub = tse_test_now_ms();
    if (publish(f, 0, &m, &c->out[N]) == TSE_OK) {
        assert_true(wait_completed(c, N + 1, 2000));
        assert_int_equal(c->out[N].status, TSE_UNAVAILABLE);
        assert_true(c->out[N].at_ms - t_pub < o.timeout_ms + 500);
    }
    usleep(50 * 1000); /* under test: no second callback comes */
    assert_true(c->out[N].calls <= 1);
    print_message("killed with %d of %d acknowledged\n", ok, N);
    collector_free(c);
}

/*
 * A job half written when Redis dies fails once, UNAVAILABLE, and the
 * process survives the failed write (SIGPIPE keeps its fatal default in
 * this test). Redis is stopped first, so the job, too big for the socket's
 * buffers, stays half written whichever thread writes it (a caller on an
 * idle lane, or the lane); then Redis is killed and that write runs into
 * the reset (ECONNRESET here; a write after the reset was consumed would
 * get EPIPE, which the lanes' blocked SIGPIPE and the callers' MSG_NOSIGNAL
 * keep from killing the process). An idle Redis killed is another case:
 * the lane watches its idle connection, notices the close and refuses the
 * next job before any write (idle_connection_notices_a_killed_redis).
 */
static void a_job_half_written_when_redis_dies_fails_once(void **state)
{
    enum { N = 3, SIZE = 16 * 1024 * 1024 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N);
    uint8_t *env = calloc(1, SIZE);
    int accepted = 1;

    assert_non_null(env);
    o.timeout_ms = 2000;
    start_broker(f, &o);
    tse_publish_msg m = make_msg("id", "pipe.test", 3, env, SIZE);
    kill(f->redis->pid, SIGSTOP); /* nothing read: the socket fills */
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    tse_test_redis_kill(f->redis);
    /* Later ones are accepted (and fail) or refused once the lane noticed. */
    while (accepted < N && publish(f, 0, &m, &c->out[accepted]) == TSE_OK)
        accepted++;
    assert_true(wait_completed(c, accepted, 10000));
    for (int i = 0; i < accepted; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_UNAVAILABLE);
    }
    print_message("killed mid-write: %s\n", c->out[0].message);
    free(env);
    collector_free(c);
}

static void idle_connection_notices_a_killed_redis(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    long long t_kill;

    o.timeout_ms = 500;
    start_broker(f, &o);
    tse_test_redis_kill(f->redis);
    t_kill = tse_test_now_ms();
    /* No traffic: the idle PING (every second) finds out. */
    assert_true(wait_health(&f->health, 2, 5000));
    assert_false(f->health.seen[1]);
    assert_true(f->health.at_ms[1] - t_kill < 1000 + o.timeout_ms + 1000);
}

/*
 * Regression (a leak ASan found): the idle PING and the second's trims come
 * in one round; when the PING found Redis gone, the trims taken for that
 * round were dropped without being failed (never freed).
 */
static void an_idle_ping_that_fails_fails_the_trims_of_its_round(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(1);

    o.timeout_ms = 500;
    o.lanes = 1;
    o.retention_maxlen = 100;
    start_broker(f, &o);
    publish_many(f, c, 0, 1, "trim.idle");
    assert_true(wait_completed(c, 1, 5000));
    assert_int_equal(c->out[0].status, TSE_OK);
    tse_test_redis_kill(f->redis);
    /* The next round (a second idle) pings and trims the stream it wrote. */
    assert_true(wait_health(&f->health, 2, 5000));
    assert_false(f->health.seen[1]);
    collector_free(c);
}

static void restarted_redis_is_reconnected_and_reported_up(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    char key[128];
    redisContext *rc;

    o.timeout_ms = 500;
    o.lanes = 2;
    start_broker(f, &o);
    tse_publish_msg m = make_msg("id", "restart.test", 2, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 1, 5000));
    tse_test_redis_kill(f->redis);
    assert_true(wait_up(f->broker, false, 5000));
    usleep(300 * 1000); /* the outage under test: lanes retry while Redis is down */
    assert_true(tse_test_redis_restart(f->redis));
    /* Backoff is at most 2 s between attempts. */
    assert_true(wait_up(f->broker, true, 5000));
    assert_int_equal(health_count(&f->health), 3);
    assert_true(f->health.seen[0] && !f->health.seen[1] && f->health.seen[2]);
    /* Same lane as before the restart: its set of known keys was cleared. */
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    /* The server lost its data (no AOF): the key was registered again. */
    tse_broker_stream_key("restart.test", 2, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    assert_true(set_has(rc, key));
    redisFree(rc);
    collector_free(c);
}

static void stopped_redis_fails_the_job_within_the_timeout(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    long long t0, elapsed;
    tse_status st;

    o.timeout_ms = 500;
    start_broker(f, &o);
    kill(f->redis->pid, SIGSTOP);
    t0 = tse_test_now_ms();
    tse_publish_msg m = make_msg("id", "stop.test", 3, (const uint8_t *)"e", 1);
    st = publish(f, 0, &m, &c->out[0]);
    if (st == TSE_OK) {
        assert_true(wait_completed(c, 1, 5000));
        assert_int_equal(c->out[0].status, TSE_UNAVAILABLE);
        assert_non_null(strstr(c->out[0].message, "within 500 ms"));
        elapsed = c->out[0].at_ms - t0;
    } else {
        /* An idle PING happened to time out first: refused at once. */
        assert_int_equal(st, TSE_UNAVAILABLE);
        elapsed = tse_test_now_ms() - t0;
    }
    print_message("stopped redis: job failed after %lld ms\n", elapsed);
    assert_true(elapsed < o.timeout_ms + 700);
    assert_true(wait_up(f->broker, false, 3000));
    kill(f->redis->pid, SIGCONT);
    assert_true(wait_up(f->broker, true, 5000));
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    collector_free(c);
}

/* ---- a publish written by the caller to an idle lane (tse_lane_write_lent) ---------- */

/* What lane i holds, read under its lock (white box: internal.h): whether
 * it waits with its connection lent, and then its jobs queued and in
 * flight (the in-flight list is the lock holder's only while lent). */
typedef struct lane_view {
    bool lent;
    size_t queued, inflight;
} lane_view;

static lane_view view_lane(tse_broker *b, int i)
{
    tse_lane *l = &b->lanes[i];
    lane_view v = {0};

    pthread_mutex_lock(&l->mu);
    v.lent = l->lent;
    v.queued = l->queue.count;
    v.inflight = l->lent ? l->inflight.count : 0;
    pthread_mutex_unlock(&l->mu);
    return v;
}

/* Waits until lane i waits idle with its connection lent. */
static bool wait_lent(tse_broker *b, int i, int timeout_ms)
{
    tse_test_waiter waiter;

    tse_test_waiter_init(&waiter, timeout_ms);
    while (!view_lane(b, i).lent)
        if (!tse_test_waiter_poll(&waiter))
            return false;
    return true;
}

/* One publish answered (so the idle PING is a second away), then waits
 * until lane 0 is idle with its connection lent: what the tests below
 * publish next is written by the caller. */
static void lane_idle_after_a_publish(fixture *f)
{
    collector *warm = collector_new(1);
    tse_publish_msg m = make_msg("warm", "lent.warm", 1, (const uint8_t *)"w", 1);

    assert_int_equal(publish(f, 0, &m, &warm->out[0]), TSE_OK);
    assert_true(wait_completed(warm, 1, 5000));
    assert_int_equal(warm->out[0].status, TSE_OK);
    assert_true(wait_lent(f->broker, 0, 5000));
    collector_free(warm);
}

/*
 * Redis stopped, so no reply can come: the first publish to the idle lane
 * is written by the caller (in flight, the lane still waiting for its
 * reply), the next ones queue behind it without waking the lane; once
 * Redis runs again all are stored and answered in submission order, and
 * the lane, idle again, takes the next publish the same way.
 */
static void a_caller_writes_to_an_idle_lane_and_later_publishes_queue_behind_it(void **state)
{
    enum { N = 5 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N);
    char id[32], key[128];
    lane_view v;
    redisContext *rc;
    redisReply *r;

    o.timeout_ms = 5000;
    start_broker(f, &o);
    lane_idle_after_a_publish(f);
    kill(f->redis->pid, SIGSTOP);
    for (int i = 0; i < N - 1; i++) {
        snprintf(id, sizeof(id), "lent-%d", i);
        tse_publish_msg m = make_msg(id, "lent.order", 3, (const uint8_t *)"e", 1);
        assert_int_equal(publish(f, 0, &m, &c->out[i]), TSE_OK);
        v = view_lane(f->broker, 0);
        assert_true(v.lent); /* the lane still waits: for the first one's reply */
        assert_int_equal(v.inflight, 1);
        assert_int_equal(v.queued, (size_t)i);
    }
    kill(f->redis->pid, SIGCONT);
    assert_true(wait_completed(c, N - 1, 5000));
    assert_true(wait_lent(f->broker, 0, 5000));
    tse_publish_msg m = make_msg("lent-4", "lent.order", 3, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[N - 1]), TSE_OK);
    assert_true(wait_completed(c, N, 5000));
    assert_true(c->in_order);
    tse_broker_stream_key("lent.order", 3, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    assert_true(set_has(rc, key)); /* its SADD went before it, on the caller's write */
    r = rcmd(rc, "XRANGE %s - +", key);
    assert_int_equal(r->elements, N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "lent-%d", i);
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_OK);
        assert_field(r->element[i], "id", id);
        assert_string_equal(r->element[i]->element[0]->str, c->out[i].stream_id);
    }
    freeReplyObject(r);
    redisFree(rc);
    collector_free(c);
}

/* Redis dies after the caller wrote to the idle lane: that job and the one
 * queued behind it fail UNAVAILABLE, once each, in order; the lane reports
 * the loss without waiting for its timeout or the idle PING. */
static void redis_dying_before_a_callers_write_is_answered_fails_it_and_those_behind(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    long long t_kill;

    o.timeout_ms = 5000;
    start_broker(f, &o);
    assert_true(wait_health(&f->health, 1, 1000));
    lane_idle_after_a_publish(f);
    kill(f->redis->pid, SIGSTOP);
    tse_publish_msg m = make_msg("id", "lent.killed", 3, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_int_equal(view_lane(f->broker, 0).inflight, 1);
    tse_test_redis_kill(f->redis);
    t_kill = tse_test_now_ms();
    assert_true(wait_completed(c, 2, 5000));
    assert_true(c->in_order);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_UNAVAILABLE);
    }
    assert_true(c->out[0].at_ms - t_kill < 2000);
    assert_true(wait_health(&f->health, 2, 3000));
    assert_false(f->health.seen[1]);
    usleep(50 * 1000); /* under test: no second callback comes */
    assert_int_equal(c->out[0].calls + c->out[1].calls, 2);
    collector_free(c);
}

/* Redis hangs after the caller wrote: the job fails within the timeout
 * (the lane's wait for its reply is bounded), and the lane recovers. */
static void a_callers_write_left_unanswered_fails_within_the_timeout(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(2);
    long long t0;

    o.timeout_ms = 500;
    start_broker(f, &o);
    lane_idle_after_a_publish(f);
    kill(f->redis->pid, SIGSTOP);
    t0 = tse_test_now_ms();
    tse_publish_msg m = make_msg("id", "lent.stopped", 3, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_int_equal(view_lane(f->broker, 0).inflight, 1);
    assert_true(wait_completed(c, 1, 5000));
    assert_int_equal(c->out[0].status, TSE_UNAVAILABLE);
    assert_non_null(strstr(c->out[0].message, "within 500 ms"));
    print_message("unanswered caller's write failed after %lld ms\n", c->out[0].at_ms - t0);
    assert_true(c->out[0].at_ms - t0 >= o.timeout_ms - 50);
    assert_true(c->out[0].at_ms - t0 < o.timeout_ms + 700);
    kill(f->redis->pid, SIGCONT);
    assert_true(wait_up(f->broker, true, 5000));
    assert_true(wait_lent(f->broker, 0, 5000));
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    collector_free(c);
}

/* A job larger than the socket takes at once: the caller's send writes
 * part of it, the lane (woken for that) writes the rest; stored whole. */
static void a_callers_write_the_socket_cannot_take_whole_is_finished_by_the_lane(void **state)
{
    enum { SIZE = 32 * 1024 * 1024 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(1);
    uint8_t *env = malloc(SIZE);
    char key[128];
    redisContext *rc;
    redisReply *r;

    assert_non_null(env);
    fill_binary(env, SIZE);
    o.timeout_ms = 10000;
    start_broker(f, &o);
    lane_idle_after_a_publish(f);
    kill(f->redis->pid, SIGSTOP); /* nothing read: the socket fills */
    tse_publish_msg m = make_msg("big", "lent.big", 3, env, SIZE);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    kill(f->redis->pid, SIGCONT);
    assert_true(wait_completed(c, 1, 20000));
    assert_int_equal(c->out[0].status, TSE_OK);
    tse_broker_stream_key("lent.big", 3, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    r = rcmd(rc, "XRANGE %s - +", key);
    assert_int_equal(r->elements, 1);
    const redisReply *ev = entry_field(r->element[0], "event");
    assert_non_null(ev);
    assert_int_equal(ev->len, SIZE);
    assert_memory_equal(ev->str, env, SIZE);
    freeReplyObject(r);
    redisFree(rc);
    free(env);
    collector_free(c);
}

/*
 * A write into a connection Redis closed gets EPIPE, which raises SIGPIPE
 * (fatal by default, and not blocked in this test's threads): the lanes
 * block it. Unlike a_job_half_written_when_redis_dies_fails_once (whose
 * write meets the reset: ECONNRESET), the connection is closed cleanly
 * while the lane waits for a reply: the caller's write to the idle lane is
 * held by CLIENT PAUSE, jobs too big for one write() queue behind it, and
 * CLIENT KILL closes the connection; the lane, woken by the close, writes
 * them into it. All fail UNAVAILABLE, once each, in order.
 */
static void a_write_into_a_closed_connection_survives_its_sigpipe(void **state)
{
    enum { N = 3, SIZE = 16 * 1024 * 1024 };
    fixture *f = *state;
    redisContext *rc;
    uint8_t *env = calloc(1, SIZE);
    collector *c = collector_new(N);
    tse_broker_options o = options_for(f->redis);

    assert_non_null(env);
    o.timeout_ms = 5000;
    start_broker(f, &o);
    lane_idle_after_a_publish(f);
    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "CLIENT PAUSE 10000 WRITE"));
    tse_publish_msg small = make_msg("id", "pipe.epipe", 3, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &small, &c->out[0]), TSE_OK);
    assert_int_equal(view_lane(f->broker, 0).inflight, 1); /* written by the caller */
    tse_publish_msg m = make_msg("id", "pipe.epipe", 3, env, SIZE);
    for (int i = 1; i < N; i++)
        assert_int_equal(publish(f, 0, &m, &c->out[i]), TSE_OK);
    freeReplyObject(rcmd(rc, "CLIENT KILL TYPE normal SKIPME yes"));
    assert_true(wait_completed(c, N, 10000));
    assert_true(c->in_order);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_UNAVAILABLE);
    }
    print_message("closed while writing: %s\n", c->out[N - 1].message);
    freeReplyObject(rcmd(rc, "CLIENT UNPAUSE"));
    redisFree(rc);
    free(env);
    collector_free(c);
}

static void destroy_with_jobs_in_flight_completes_each_callback_once(void **state)
{
    enum { N = 5000 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N);
    char key[128];
    redisContext *rc;

    o.lanes = 2;
    start_broker(f, &o);
    for (int i = 0; i < N; i++) {
        tse_publish_msg m = make_msg("id", "destroy.test", 3, (const uint8_t *)"e", 1);
        assert_int_equal(publish(f, i % 2, &m, &c->out[i]), TSE_OK);
    }
    tse_broker_destroy(f->broker);
    f->broker = NULL;
    /* Every callback has run by the time destroy returns; queued jobs were written. */
    assert_int_equal(c->completed, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_OK);
    }
    tse_broker_stream_key("destroy.test", 3, key, sizeof(key));
    rc = rconnect(f->redis, NULL);
    assert_int_equal(rint_cmd(rc, "XLEN %s", key), N);
    redisFree(rc);
    collector_free(c);
}

static void destroy_with_a_dead_redis_fails_queued_jobs_once(void **state)
{
    enum { N = 2000 };
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(N);
    long long t0;

    o.timeout_ms = 300;
    start_broker(f, &o);
    kill(f->redis->pid, SIGSTOP);
    for (int i = 0; i < N; i++) {
        tse_publish_msg m = make_msg("id", "destroy.dead", 3, (const uint8_t *)"e", 1);
        assert_int_equal(publish(f, 0, &m, &c->out[i]), TSE_OK);
    }
    t0 = tse_test_now_ms();
    tse_broker_destroy(f->broker);
    f->broker = NULL;
    assert_true(tse_test_now_ms() - t0 < o.timeout_ms + 1000);
    assert_int_equal(c->completed, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c->out[i].calls, 1);
        assert_int_equal(c->out[i].status, TSE_UNAVAILABLE);
    }
    collector_free(c);
}

/* ---- authentication -------------------------------------------------------------------- */

static void password_in_url_authenticates(void **state)
{
    fixture *f = *state;
    tse_broker_options o;
    collector *c = collector_new(2);
    char url[256];
    redisContext *rc;
    tse_broker *b2 = NULL;
    tse_error err;

    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "ACL SETUSER events on >p@ss ~* &* +@all"));
    freeReplyObject(rcmd(rc, "CONFIG SET requirepass s3cr%%t"));
    snprintf(url, sizeof(url), "redis://:s3cr%%25t@127.0.0.1:%d/1", f->redis->port);
    assert_int_equal(tse_redis_url_parse(url, &o.target, NULL), TSE_OK);
    o = (tse_broker_options){.target = o.target,
                             .lanes = 1,
                             .timeout_ms = 1000,
                             .dedup_window_ms = 1000,
                             .max_queue = 10};
    start_broker(f, &o);
    tse_publish_msg m = make_msg("id", "auth.test", 3, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    assert_true(wait_completed(c, 1, 5000));
    assert_int_equal(c->out[0].status, TSE_OK);

    /* A named ACL user, and db 1 from the URL. */
    snprintf(url, sizeof(url), "redis://events:p%%40ss@127.0.0.1:%d/1", f->redis->port);
    assert_int_equal(tse_redis_url_parse(url, &o.target, NULL), TSE_OK);
    assert_int_equal(tse_broker_create(&o, NULL, NULL, &b2, &err), TSE_OK);
    assert_true(wait_up(b2, true, 5000));
    assert_int_equal(tse_broker_publish(b2, 0, &m, on_published, &c->out[1]), TSE_OK);
    assert_true(wait_completed(c, 2, 5000));
    assert_int_equal(c->out[1].status, TSE_OK);
    tse_broker_destroy(b2);

    redisFree(rc);
    rc = rconnect(f->redis, "s3cr%t");
    freeReplyObject(rcmd(rc, "SELECT 1"));
    assert_int_equal(rint_cmd(rc, "XLEN %s", "tracseq:events:{auth.test}:p3"), 2);
    redisFree(rc);
    collector_free(c);
}

static void wrong_password_leaves_the_broker_down(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(1);
    redisContext *rc;
    char why[256];
    tse_error err;

    rc = rconnect(f->redis, NULL);
    freeReplyObject(rcmd(rc, "CONFIG SET requirepass right"));
    redisFree(rc);
    snprintf(o.target.password, sizeof(o.target.password), "wrong");
    assert_int_equal(tse_broker_create(&o, on_health, &f->health, &f->broker, &err), TSE_OK);
    TSE_TEST_AWAIT(last_error_says(f->broker, "AUTH"), 10000, "the refused AUTH to be reported");
    assert_false(tse_broker_is_up(f->broker));
    tse_publish_msg m = make_msg("id", "auth.bad", 3, (const uint8_t *)"e", 1);
    /* It rides on a probe, which fails AUTH again (refused at once,
     * UNAVAILABLE, within TSE_BROKER_PROBE_MS of the lane's last attempt). */
    TSE_TEST_AWAIT(publish(f, 0, &m, &c->out[0]) == TSE_OK, 10000,
                   "a publish accepted to ride on a probe");
    assert_true(wait_completed(c, 1, 2000));
    assert_int_equal(c->out[0].status, TSE_UNAVAILABLE);
    assert_non_null(strstr(c->out[0].message, "AUTH"));
    tse_broker_last_error(f->broker, why, sizeof(why));
    assert_non_null(strstr(why, "AUTH"));
    assert_null(strstr(why, "wrong"));
    assert_int_equal(health_count(&f->health), 0);
    collector_free(c);
}

/*
 * A lane that connects wakes the others, so each lane's lock must be ready
 * before any lane runs. Lanes were started one by one as they were
 * initialized, and lane 0 (connected at once to a local Redis) locked lane
 * 1's mutex while pthread_mutex_init ran on it: a data race ThreadSanitizer
 * found (in the torture test, and in make test-tsan). With 16 lanes the old
 * order was reported here under ThreadSanitizer; elsewhere this checks that
 * many lanes come up and stop.
 */
static void many_lanes_start_with_every_lock_ready(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);

    o.lanes = 16;
    for (int round = 0; round < 5; round++) {
        start_broker(f, &o);
        tse_broker_destroy(f->broker);
        f->broker = NULL;
    }
}

/* ---- one slot per command: a Redis Cluster node ------------------------------------ */

static int setup_cluster_node(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    pthread_mutex_init(&f->health.mu, NULL);
    f->redis = tse_test_redis_start_one_node_cluster();
    if (f->redis == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

typedef struct lengths_seen {
    pthread_mutex_t mu;
    bool done;
    tse_status status;
    uint64_t a, b, c; /* one.a, two.b, three.c */
} lengths_seen;

static void on_lengths(void *arg, tse_status status, const tse_stream_lengths *l)
{
    lengths_seen *seen = arg;

    pthread_mutex_lock(&seen->mu);
    seen->status = status;
    for (size_t i = 0; l != NULL && i < l->n; i++) {
        if (strcmp(l->types[i].type, "one.a") == 0)
            seen->a = l->types[i].length;
        else if (strcmp(l->types[i].type, "two.b") == 0)
            seen->b = l->types[i].length;
        else if (strcmp(l->types[i].type, "three.c") == 0)
            seen->c = l->types[i].length;
    }
    seen->done = true;
    pthread_mutex_unlock(&seen->mu);
}

static bool lengths_done(lengths_seen *seen)
{
    bool done;

    pthread_mutex_lock(&seen->mu);
    done = seen->done;
    pthread_mutex_unlock(&seen->mu);
    return done;
}

/*
 * A cluster node refuses a command or script whose keys are in several
 * slots (the first check shows it does): plain, dedup and batch publishes
 * over several types, priorities and ids, and GetStats' lengths, all pass
 * on one, so none crosses a slot.
 */
static void every_writer_command_runs_on_a_redis_cluster_node(void **state)
{
    fixture *f = *state;
    tse_broker_options o = options_for(f->redis);
    collector *c = collector_new(11);
    lengths_seen seen = {.status = TSE_INTERNAL};
    redisContext *rc = rconnect(f->redis, NULL);
    redisReply *r;
    tse_test_waiter waiter;

    r = rcmd(rc, "EVAL %s 2 %s %s", "return redis.call('GET', KEYS[1])", "a", "b");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "CROSSSLOT"));
    freeReplyObject(r);
    redisFree(rc);

    o.retention_maxlen = 1000;
    start_broker(f, &o);
    tse_publish_msg m = make_msg("p-1", "one.a", 1, (const uint8_t *)"e", 1);
    assert_int_equal(publish(f, 0, &m, &c->out[0]), TSE_OK);
    m = make_msg("id-1", "one.a", 2, (const uint8_t *)"e", 1);
    m.dedup = true;
    assert_int_equal(publish(f, 0, &m, &c->out[1]), TSE_OK);
    m.priority = 5;
    assert_int_equal(publish(f, 0, &m, &c->out[2]), TSE_OK); /* a duplicate */
    m.event_type = "two.b";
    assert_int_equal(publish(f, 0, &m, &c->out[3]), TSE_OK); /* another type: stored */
    assert_true(wait_completed(c, 4, 5000));

    tse_publish_msg batch[] = {
        make_msg("id-2", "one.a", 3, (const uint8_t *)"e", 1),
        make_msg("p-2", "two.b", 1, (const uint8_t *)"e", 1),
        make_msg("p-3", "one.a", 3, (const uint8_t *)"e", 1),
        make_msg("id-3", "two.b", 4, (const uint8_t *)"e", 1),
        make_msg("id-4", "three.c", 2, (const uint8_t *)"e", 1),
        make_msg("p-4", "three.c", 2, (const uint8_t *)"e", 1),
        make_msg("id-4", "three.c", 3, (const uint8_t *)"e", 1),
    };
    void *args[7];
    for (int i = 0; i < 7; i++)
        args[i] = &c->out[4 + i];
    batch[0].dedup = batch[3].dedup = batch[4].dedup = batch[6].dedup = true;
    assert_int_equal(tse_broker_publish_batch(f->broker, 0, batch, 7, on_published, args), TSE_OK);
    assert_true(wait_completed(c, 11, 5000));
    for (int i = 0; i < 11; i++)
        if (c->out[i].status != TSE_OK)
            fail_msg("publish %d: status %d, '%s'", i, c->out[i].status, c->out[i].message);
    assert_true(c->out[2].duplicate);
    assert_false(c->out[3].duplicate);
    assert_true(c->out[10].duplicate);

    pthread_mutex_init(&seen.mu, NULL);
    assert_int_equal(tse_broker_stream_lengths(f->broker, 0, on_lengths, &seen), TSE_OK);
    tse_test_waiter_init(&waiter, 5000);
    while (!lengths_done(&seen))
        assert_true(tse_test_waiter_poll(&waiter));
    assert_int_equal(seen.status, TSE_OK);
    assert_int_equal(seen.a, 4);
    assert_int_equal(seen.b, 3);
    assert_int_equal(seen.c, 2);
    pthread_mutex_destroy(&seen.mu);
    collector_free(c);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(published_events_are_stored_with_every_field_intact),
        T(ten_thousand_pipelined_jobs_keep_order_on_one_lane),
        T(first_write_to_a_stream_registers_its_key),
        T(retention_maxlen_trims_the_stream),
        T(retention_minid_trims_entries_older_than_the_window),
        T(same_client_id_twice_is_stored_once_and_reports_the_original),
        T(client_id_is_stored_again_after_the_dedup_window),
        T(duplicate_under_another_priority_answers_the_stored_stream),
        T(same_client_id_under_another_type_is_stored_too),
        T(flushed_script_fails_one_dedup_job_then_is_reloaded),
        T(a_batch_script_stores_what_single_publishes_store),
        T(wrong_type_reply_fails_the_job_as_internal),
        T(out_of_memory_is_unavailable_and_recovers),
        T(invalid_publishes_are_rejected_without_callback),
        T(bad_options_are_rejected),
        T(many_lanes_start_with_every_lock_ready),
        T(full_queue_returns_resource_exhausted),
        T(callback_may_publish_on_its_own_lane),
        T(unreachable_redis_leaves_the_broker_down_and_refuses_publish),
        T(killed_redis_fails_jobs_unavailable_and_reports_down),
        T(a_job_half_written_when_redis_dies_fails_once),
        T(idle_connection_notices_a_killed_redis),
        T(an_idle_ping_that_fails_fails_the_trims_of_its_round),
        T(restarted_redis_is_reconnected_and_reported_up),
        T(stopped_redis_fails_the_job_within_the_timeout),
        T(a_caller_writes_to_an_idle_lane_and_later_publishes_queue_behind_it),
        T(redis_dying_before_a_callers_write_is_answered_fails_it_and_those_behind),
        T(a_callers_write_left_unanswered_fails_within_the_timeout),
        T(a_callers_write_the_socket_cannot_take_whole_is_finished_by_the_lane),
        T(a_write_into_a_closed_connection_survives_its_sigpipe),
        T(destroy_with_jobs_in_flight_completes_each_callback_once),
        T(destroy_with_a_dead_redis_fails_queued_jobs_once),
        T(password_in_url_authenticates),
        T(wrong_password_leaves_the_broker_down),
        cmocka_unit_test_setup_teardown(every_writer_command_runs_on_a_redis_cluster_node,
                                        setup_cluster_node, teardown),
    };
#undef T

    /* TSE_TEST_FILTER=<glob> runs only the matching tests. */
    if (getenv("TSE_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TSE_TEST_FILTER"));
    /* SIGPIPE keeps its default (fatal) action: the broker must not raise it. */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
