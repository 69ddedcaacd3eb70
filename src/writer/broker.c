/*
 * broker.c - the public face of the broker (broker.h): options, lanes'
 * lifecycle, publish admission, and health as a whole.
 *
 * publish never blocks on Redis: it validates, formats the job outside any
 * lock, then holds the lane mutex only to append to the queue or, when the
 * lane is idle with its connection lent, to write the job with one
 * non-blocking send (lane.c, tse_lane_write_lent). Health is the
 * count of connected lanes; transitions of "all lanes connected" are
 * reported under the health mutex so reports never cross each other.
 */
#include "writer/internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "domain/limits.h"

#define MAX_LANES     256
#define MAX_FIELD_LEN 1024 /* id, type, source, correlation id: far above the domain's limits */

/* ---- small shared helpers -------------------------------------------------------- */

void tse_broker_stream_key(const char *event_type, int priority, char *buf, size_t len)
{
    tse_key_stream(event_type, priority, buf, len);
}

void tse_broker_note_error(tse_broker *b, const char *message)
{
    pthread_mutex_lock(&b->error_mu);
    snprintf(b->last_error, sizeof(b->last_error), "%s", message);
    pthread_mutex_unlock(&b->error_mu);
}

void tse_broker_last_error(tse_broker *b, char *buf, size_t len)
{
    if (len == 0)
        return;
    if (b == NULL) {
        buf[0] = '\0';
        return;
    }
    pthread_mutex_lock(&b->error_mu);
    snprintf(buf, len, "%s", b->last_error);
    pthread_mutex_unlock(&b->error_mu);
}

void tse_broker_set_sha(tse_broker *b, const char *sha, const char *batch_sha)
{
    if (atomic_load(&b->sha_known))
        return;
    pthread_mutex_lock(&b->sha_mu);
    if (!atomic_load(&b->sha_known)) {
        snprintf(b->sha, sizeof(b->sha), "%s", sha);
        snprintf(b->batch_sha, sizeof(b->batch_sha), "%s", batch_sha);
        atomic_store(&b->sha_known, true);
    }
    pthread_mutex_unlock(&b->sha_mu);
}

void tse_broker_lane_health(tse_broker *b, bool up)
{
    bool all_up;

    pthread_mutex_lock(&b->health_mu);
    b->connected_lanes += up ? 1 : -1;
    all_up = b->connected_lanes == b->opts.lanes;
    if (all_up != atomic_load(&b->up)) {
        atomic_store(&b->up, all_up);
        if (b->health_cb != NULL)
            b->health_cb(b->health_arg, all_up);
    }
    pthread_mutex_unlock(&b->health_mu);
}

void tse_broker_address(const tse_broker *b, char *buf, size_t len)
{
    const tse_redis_target *t = &b->opts.target;

    if (t->db != 0)
        snprintf(buf, len, "%s:%d/%d", t->host, t->port, t->db);
    else
        snprintf(buf, len, "%s:%d", t->host, t->port);
}

bool tse_broker_is_up(const tse_broker *b)
{
    return b != NULL && atomic_load(&b->up);
}

int tse_broker_pick_lane(tse_broker *b)
{
    return (int)(atomic_fetch_add(&b->next_lane, 1) % (unsigned)b->opts.lanes);
}

/* ---- create and destroy ---------------------------------------------------------- */

static tse_status check_options(const tse_broker_options *o, tse_error *err)
{
    if (o->target.host[0] == '\0' || o->target.port < 1 || o->target.port > 65535)
        return tse_error_set(err, TSE_INVALID, "redis_url", "Redis host or port is not set");
    if (o->lanes < 1 || o->lanes > MAX_LANES)
        return tse_error_set(err, TSE_INVALID, "lanes", "lanes must be 1..%d", MAX_LANES);
    if (o->timeout_ms < 1)
        return tse_error_set(err, TSE_INVALID, "timeout_ms", "timeout_ms must be positive");
    if (o->min_replicas < 0 || (o->min_replicas > 0 && !o->target.cluster))
        return tse_error_set(err, TSE_INVALID, "min_replicas",
                             "min_replicas must be 0, or positive on a Redis Cluster");
    if (o->dedup_window_ms < 1)
        return tse_error_set(err, TSE_INVALID, "dedup_window_ms",
                             "dedup_window_ms must be positive");
    if (o->retention_ms < 0 || o->retention_maxlen < 0)
        return tse_error_set(err, TSE_INVALID, "retention", "retention must not be negative");
    if (o->max_queue < 1)
        return tse_error_set(err, TSE_INVALID, "max_queue", "max_queue must be positive");
    return TSE_OK;
}

/* The lane's lock and wake-up; its thread starts later (lane_start). */
static bool lane_init(tse_broker *b, int index)
{
    tse_lane *l = &b->lanes[index];

    l->broker = b;
    l->index = index;
    atomic_init(&l->connected, false);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0)
        return false;
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        close(l->wake_fd);
        return false;
    }
    return true;
}

/*
 * Starts the lane's thread. Only once every lane is initialised: a lane
 * that connects wakes the others through their locks (probe_other_lanes),
 * and one started early locked a mutex still being initialised.
 */
static bool lane_start(tse_lane *l)
{
    sigset_t all, old;

    /* Lanes start with every signal blocked: process signals go to the
     * application's threads, and a write to a closed socket gives EPIPE
     * instead of killing the process with SIGPIPE (hiredis uses write()). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    l->started = pthread_create(&l->thread, NULL, tse_lane_main, l) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (l->started) {
        char name[16]; /* the kernel's limit, for top -H and perf */
        snprintf(name, sizeof(name), "tse-redis-%d", l->index % 1000);
        pthread_setname_np(l->thread, name);
    }
    return l->started;
}

/* Stops and joins the started ones of the first n lanes (initialised ones),
 * then frees b. */
static void broker_free(tse_broker *b, int n)
{
    for (int i = 0; i < n; i++) {
        tse_lane *l = &b->lanes[i];

        pthread_mutex_lock(&l->mu);
        l->stop = true;
        tse_lane_wake_locked(l);
        pthread_mutex_unlock(&l->mu);
    }
    for (int i = 0; i < n; i++) {
        tse_lane *l = &b->lanes[i];

        if (l->started)
            pthread_join(l->thread, NULL);
        tse_keyset_clear(&l->known);
        close(l->wake_fd);
        pthread_mutex_destroy(&l->mu);
    }
    pthread_mutex_destroy(&b->error_mu);
    pthread_mutex_destroy(&b->sha_mu);
    pthread_mutex_destroy(&b->health_mu);
    free(b->lanes);
    free(b);
}

tse_status tse_broker_create(const tse_broker_options *opts, tse_broker_health_cb health_cb,
                             void *health_arg, tse_broker **out, tse_error *err)
{
    tse_broker *b;
    tse_status st;

    *out = NULL;
    st = check_options(opts, err);
    if (st != TSE_OK)
        return st;
    b = calloc(1, sizeof(*b));
    if (b == NULL || (b->lanes = calloc((size_t)opts->lanes, sizeof(*b->lanes))) == NULL) {
        free(b);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory creating the broker");
    }
    b->opts = *opts;
    b->health_cb = health_cb;
    b->health_arg = health_arg;
    atomic_init(&b->next_lane, 0);
    atomic_init(&b->up, false);
    atomic_init(&b->sha_known, false);
    pthread_mutex_init(&b->health_mu, NULL);
    pthread_mutex_init(&b->sha_mu, NULL);
    pthread_mutex_init(&b->error_mu, NULL);
    for (int i = 0; i < opts->lanes; i++) {
        if (!lane_init(b, i)) {
            broker_free(b, i);
            return tse_error_set(err, TSE_NOMEM, NULL, "could not start broker lane %d", i);
        }
    }
    for (int i = 0; i < opts->lanes; i++) {
        if (!lane_start(&b->lanes[i])) {
            broker_free(b, opts->lanes);
            return tse_error_set(err, TSE_NOMEM, NULL, "could not start broker lane %d", i);
        }
    }
    *out = b;
    return TSE_OK;
}

void tse_broker_destroy(tse_broker *b)
{
    if (b != NULL)
        broker_free(b, b->opts.lanes);
}

/* ---- publish ----------------------------------------------------------------------- */

static bool field_ok(const char *s, bool required)
{
    if (s == NULL)
        return !required;
    if (required && s[0] == '\0')
        return false;
    return strnlen(s, MAX_FIELD_LEN + 1) <= MAX_FIELD_LEN;
}

static bool msg_valid(const tse_publish_msg *m)
{
    return field_ok(m->event_id, true) && field_ok(m->event_type, true) &&
           field_ok(m->source_service, true) && field_ok(m->correlation_id, false) &&
           m->priority >= TSE_PRIORITY_MIN && m->priority <= TSE_PRIORITY_MAX &&
           (m->envelope != NULL || m->envelope_len == 0);
}

/* With l->mu held: queues a job, waking the lane for the first one unless
 * it will wake anyway, for the reply of a job a caller wrote. */
static void push_locked(tse_lane *l, tse_job *job)
{
    tse_job_list_push(&l->queue, job);
    if (l->queue.count == 1 && !(l->lent && l->inflight.count > 0))
        tse_lane_wake_locked(l);
}

/*
 * Appends job to the lane's queue; on failure the job is freed, not
 * completed. A lane idle with its connection lent (nothing queued, nothing
 * in flight) gets the job written from this thread instead, without
 * blocking (tse_lane_write_lent): one hand-off less on the publish's path.
 */
static tse_status enqueue(tse_broker *b, tse_lane *l, tse_job *job)
{
    tse_status st = TSE_OK;

    pthread_mutex_lock(&l->mu);
    if (l->stop || (!atomic_load(&l->connected) && !tse_lane_probe_locked(l)))
        st = TSE_UNAVAILABLE;
    else if (l->queue.count >= b->opts.max_queue)
        st = TSE_RESOURCE_EXHAUSTED;
    else if (l->lent && l->queue.count == 0 && l->inflight.count == 0)
        tse_lane_write_lent(l, job);
    else
        push_locked(l, job);
    pthread_mutex_unlock(&l->mu);
    if (st != TSE_OK)
        tse_job_free(job);
    return st;
}

/* Appends jobs[0..n) to the lane's queue together, or none of them (all
 * freed, none completed). */
static tse_status enqueue_all(tse_broker *b, tse_lane *l, tse_job **jobs, size_t n)
{
    tse_status st = TSE_OK;

    pthread_mutex_lock(&l->mu);
    if (l->stop || (!atomic_load(&l->connected) && !tse_lane_probe_locked(l)))
        st = TSE_UNAVAILABLE;
    else if (l->queue.count + n > b->opts.max_queue)
        st = TSE_RESOURCE_EXHAUSTED;
    for (size_t i = 0; st == TSE_OK && i < n; i++)
        push_locked(l, jobs[i]);
    pthread_mutex_unlock(&l->mu);
    for (size_t i = 0; st != TSE_OK && i < n; i++)
        tse_job_free(jobs[i]);
    return st;
}

tse_status tse_broker_command(tse_broker *b, int lane, int argc, const char *const *argv,
                              const size_t *lens, tse_command_cb cb, void *arg)
{
    tse_lane *l;
    tse_job *job;

    if (b == NULL || argv == NULL || cb == NULL || lane < 0 || lane >= b->opts.lanes || argc < 1)
        return TSE_INVALID;
    l = &b->lanes[lane];
    job = tse_job_create_command(argc, argv, lens);
    if (job == NULL)
        return TSE_NOMEM;
    job->command_cb = cb;
    job->arg = arg;
    return enqueue(b, l, job);
}

tse_status tse_broker_publish(tse_broker *b, int lane, const tse_publish_msg *msg,
                              tse_publish_cb cb, void *arg)
{
    tse_lane *l;
    tse_job *job;

    if (b == NULL || msg == NULL || cb == NULL || lane < 0 || lane >= b->opts.lanes ||
        !msg_valid(msg))
        return TSE_INVALID;
    l = &b->lanes[lane];
    /* The dedup script's SHA comes with the first connection; before that a
     * client-set id cannot be published. A lane that is down is enqueue's
     * to judge (it may probe). */
    if (msg->dedup && !atomic_load(&b->sha_known))
        return TSE_UNAVAILABLE;
    job = tse_job_create(&b->opts, b->sha, msg);
    if (job == NULL)
        return TSE_NOMEM;
    job->cb = cb;
    job->arg = arg;
    return enqueue(b, l, job);
}

tse_status tse_broker_publish_batch(tse_broker *b, int lane, const tse_publish_msg *msgs, size_t n,
                                    tse_publish_cb cb, void *const *args)
{
    bool dedup = false;
    tse_job **jobs;
    tse_status st;
    size_t k;

    if (b == NULL || (msgs == NULL && n > 0) || cb == NULL || lane < 0 || lane >= b->opts.lanes ||
        (args == NULL && n > 0))
        return TSE_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (!msg_valid(&msgs[i]))
            return TSE_INVALID;
        dedup |= msgs[i].dedup;
    }
    if (n == 0)
        return TSE_OK;
    if (dedup && !atomic_load(&b->sha_known))
        return TSE_UNAVAILABLE;
    if ((jobs = tse_calloc(n, sizeof(*jobs))) == NULL)
        return TSE_NOMEM;
    k = tse_jobs_create_batch(&b->opts, b->sha, b->batch_sha, msgs, n, cb, args, jobs);
    if (k == 0) {
        for (size_t i = 0; i < n; i++)
            tse_job_free(jobs[i]);
        tse_free(jobs);
        return TSE_NOMEM;
    }
    st = enqueue_all(b, &b->lanes[lane], jobs, k);
    tse_free(jobs);
    return st;
}
