/*
 * lane.c - one writer thread and its blocking connection (storage/pipe.h,
 * streaming): connects
 * (AUTH, SELECT, SCRIPT LOAD), pipelines queued jobs, completes them from the
 * replies in order, PINGs when idle, and on any failure drops the connection,
 * fails every job it holds with TSE_UNAVAILABLE and reconnects with backoff.
 * On a Redis Cluster the thread, its queue, trims, PINGs and health are the
 * same, and the I/O is lane_cluster.c's (rounds over storage's rconn).
 *
 * Invariants:
 * - While `connected` is false the queue holds only jobs that wait for a
 *   probe (`probe` is set): the thread makes a connect attempt at once and
 *   then writes them or fails them. Otherwise publish refuses, and the
 *   thread fails whatever was queued when it clears the flag.
 * - Every job taken from the queue is either completed from its reply or
 *   failed, exactly once, in queue order; the in-flight list holds the jobs
 *   written and not yet answered, and the replies arrive in that order.
 * - A job's internal replies (SCRIPT LOAD, SADD) precede its own.
 * - A stream's SADD to the stream set is written before the first append
 *   to it on a connection (plain or dedup), in the same pipeline: a
 *   subscription's discovery never misses a stored event's stream, and the
 *   set is written once per stream and connection, not on every publish.
 * - Every socket read and write is bounded by the timeout (pipe.h), so a
 *   hung Redis fails a read instead of hanging the lane; the reply to a job
 *   a caller wrote is waited for at most the timeout too (lent_late).
 * - A caller writes a job itself (tse_lane_write_lent) only while the lane
 *   waits with nothing queued or in flight, under mu: that job is then the
 *   only one in flight, every job submitted after it queues behind it, so
 *   the connection carries them in submission order; it completes (or
 *   fails) on the lane thread like any other.
 *
 * Waiting: the lane thread sleeps in poll(2) on an eventfd (wake_fd, written
 * by tse_lane_wake_locked where a condition variable was signalled before)
 * and, while its connection is lent, on the connection too, so that a job a
 * caller wrote wakes it once: when the reply is there.
 */
#include "writer/internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"

/* ---- waiting ------------------------------------------------------------------ */

void tse_lane_wake_locked(tse_lane *l)
{
    uint64_t one = 1;
    ssize_t w;

    if (!l->parked || l->kicked)
        return;
    l->kicked = true;
    /* Cannot fail: one write per wait never fills the counter. */
    w = write(l->wake_fd, &one, sizeof(one));
    (void)w;
}

/*
 * With mu held: sleeps until tse_lane_wake_locked, until_ms (monotonic), or,
 * when fd >= 0, until fd has something to read. Returns with mu held:
 * whether fd was readable.
 */
static bool park(tse_lane *l, int fd, int64_t until_ms)
{
    struct pollfd p[2] = {{.fd = l->wake_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int64_t left = until_ms - tse_clock_ms();
    bool readable = false;

    if (left <= 0)
        return false;
    l->parked = true;
    pthread_mutex_unlock(&l->mu);
    if (poll(p, fd >= 0 ? 2 : 1, left > INT_MAX ? INT_MAX : (int)left) > 0)
        readable = fd >= 0 && p[1].revents != 0;
    pthread_mutex_lock(&l->mu);
    l->parked = false;
    if (l->kicked) {
        uint64_t n;
        ssize_t r = read(l->wake_fd, &n, sizeof(n));

        (void)r; /* the counter is back to 0 either way for the next kick */
        l->kicked = false;
    }
    return readable;
}

/* Whether fd has something to read now (no wait). */
static bool readable_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) > 0;
}

/* Sleeps ms unless stop is set or a probe asked for meanwhile; returns stop. */
static bool lane_sleep(tse_lane *l, int64_t ms)
{
    int64_t until = tse_clock_ms() + ms;
    bool stop;

    pthread_mutex_lock(&l->mu);
    while (!l->stop && !l->probe && tse_clock_ms() < until)
        park(l, -1, until);
    stop = l->stop;
    pthread_mutex_unlock(&l->mu);
    return stop;
}

/*
 * With mu held and nothing in flight: waits for queued work or stop, with
 * the connection lent (tse_lane_write_lent): a job a caller writes
 * meanwhile ends the wait when its reply comes (the lane wakes once, for
 * the reply), when its bytes did not all go out, or when it is late
 * (lent_late: no answer within the timeout). Returns true when the
 * connection is to be PINGed instead: idle for the ping interval, another
 * lane failed (check_now), or Redis closed it (readable with nothing in
 * flight).
 */
static bool wait_for_work(tse_lane *l)
{
    int fd = l->pipe != NULL ? tse_pipe_fd(l->pipe) : -1;
    bool readable = false;

    l->lent = l->pipe != NULL;
    while (l->queue.count == 0 && !l->stop && !readable && !l->lent_failed &&
           tse_pipe_unsent(l->pipe) == 0) {
        int64_t now = tse_clock_ms(), until = l->last_io_ms + TSE_LANE_PING_MS;
        int64_t timeout = l->broker->opts.timeout_ms;

        if (l->inflight.count > 0) {
            /* Written by a caller: the lane reads once the reply is there. */
            until = l->lent_at_ms + timeout;
            if (now >= until) {
                /* Late by the clock, unless the reply came while this
                 * thread was kept from running: look once more. */
                readable = readable_now(fd);
                l->lent_late = !readable;
                break;
            }
        } else if (l->check_now || now >= until) {
            break;
        } else if (until > now + timeout) {
            /* A caller's write may come during this sleep: it must end
             * in time to bound the wait for that reply by the timeout. */
            until = now + timeout;
        }
        readable = park(l, fd, until);
    }
    l->lent = false;
    if (l->inflight.count > 0 || l->queue.count > 0 || l->stop)
        return false;
    l->check_now = false;
    return true;
}

static void trim_done(void *arg, tse_status status, const struct redisReply *reply,
                      const char *message)
{
    (void)arg, (void)status, (void)reply, (void)message; /* best effort: retried next second */
}

/*
 * With mu held: queues an XTRIM for every stream this lane wrote to, once a
 * second, so retention costs one command per stream and second instead of
 * a MINID on every XADD.
 */
static void queue_trims(tse_lane *l)
{
    const tse_broker_options *o = &l->broker->opts;
    int64_t now = tse_clock_ms();

    if ((o->retention_maxlen <= 0 && o->retention_ms <= 0) || now < l->next_trim_ms)
        return;
    l->next_trim_ms = now + TSE_LANE_TRIM_MS;
    for (size_t i = 0; i < l->known.cap; i++) {
        tse_job *job;
        if (l->known.slots[i] == NULL)
            continue;
        job = tse_job_create_trim(o, l->known.slots[i], tse_wall_us() / 1000);
        if (job == NULL)
            return;
        job->command_cb = trim_done;
        tse_job_list_push(&l->queue, job);
    }
}

/*
 * Wakes the other lanes. After a failure (reconnected false) they check
 * their connections at once: one lane's failure usually means Redis went
 * away for all of them, and an idle lane would only notice at its next PING
 * or write, meanwhile counting as connected (health SERVING too early after
 * a restart, a publish failing on a dead socket). After a reconnect, Redis is
 * most likely back for the others too: those down try at once instead of
 * sleeping out their backoff (health turns SERVING only when every lane is
 * up).
 */
static void wake_other_lanes(tse_lane *l, bool reconnected)
{
    tse_broker *b = l->broker;

    for (int i = 0; i < b->opts.lanes; i++) {
        tse_lane *other = &b->lanes[i];
        if (other == l)
            continue;
        pthread_mutex_lock(&other->mu);
        if (!reconnected) {
            other->check_now = true;
            tse_lane_wake_locked(other);
        } else if (!atomic_load(&other->connected) && !other->stop) {
            other->probe = true;
            tse_lane_wake_locked(other);
        }
        pthread_mutex_unlock(&other->mu);
    }
}

/* ---- probes: a request while Redis is away ----------------------------------------- */

/*
 * The backoff (up to 2 s) would otherwise keep refusing requests for that
 * long after Redis came back. A request that finds the lane down asks for a
 * connect attempt now and waits for its outcome in the queue; requests
 * arriving while that probe is pending wait for it too. Between probes, at
 * least TSE_BROKER_PROBE_MS apart, requests are refused at once.
 */
bool tse_lane_probe_locked(tse_lane *l)
{
    if (l->probe)
        return true;
    if (!tse_backoff_may_probe(tse_clock_ms(), l->last_attempt_ms))
        return false;
    l->probe = true;
    tse_lane_wake_locked(l);
    return true;
}

/* A connect attempt failed: the requests that waited for it fail. */
static void attempt_failed(tse_lane *l, const char *why)
{
    tse_job_list waiting;

    pthread_mutex_lock(&l->mu);
    waiting = l->queue;
    memset(&l->queue, 0, sizeof(l->queue));
    l->probe = false;
    l->last_attempt_ms = tse_clock_ms();
    pthread_mutex_unlock(&l->mu);
    tse_job_list_fail(&waiting, TSE_UNAVAILABLE, why);
}

/* ---- connection failures ---------------------------------------------------------- */

/*
 * A write to a closed socket left SIGPIPE pending on this thread (blocked
 * since the thread started); consume it so pending signals never pile up.
 */
void tse_lane_discard_sigpipe(void)
{
    struct timespec zero = {0, 0};
    sigset_t pipe_set;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
        ;
}

/*
 * Drops the connection and fails everything the lane holds: first the jobs in
 * flight, then those queued behind them, so callbacks keep submission order.
 * why == NULL: a clean close at stop (no health report).
 */
static void lane_drop(tse_lane *l, const char *why)
{
    tse_job_list queued;
    bool was_connected;

    tse_pipe_close(l->pipe);
    l->pipe = NULL;
    tse_rconn_destroy(l->rc);
    l->rc = NULL;
    tse_lane_discard_sigpipe();
    tse_keyset_clear(&l->known);
    pthread_mutex_lock(&l->mu);
    was_connected = atomic_load(&l->connected);
    atomic_store(&l->connected, false);
    l->last_attempt_ms = tse_clock_ms(); /* a loss counts as an attempt */
    queued = l->queue;
    memset(&l->queue, 0, sizeof(l->queue));
    pthread_mutex_unlock(&l->mu);
    if (why != NULL) {
        tse_broker_note_error(l->broker, why);
        wake_other_lanes(l, false);
    }
    /* A clean close at stop is not an outage: the broker is going away. */
    if (was_connected && why != NULL)
        tse_broker_lane_health(l->broker, false);
    tse_job_list_fail(&l->inflight, TSE_UNAVAILABLE, why ? why : "broker stopped");
    tse_job_list_fail(&queued, TSE_UNAVAILABLE, why ? why : "broker stopped");
}

/* ---- connecting --------------------------------------------------------------------- */

static bool load_script(tse_lane *l, char *why, size_t len)
{
    char sha[41], batch_sha[41];

    if (!tse_pipe_load_script(l->pipe, tse_dedup_script, sha, why, len) ||
        !tse_pipe_load_script(l->pipe, tse_dedup_batch_script, batch_sha, why, len))
        return false;
    tse_broker_set_sha(l->broker, sha, batch_sha);
    return true;
}

/* Connects and prepares the connection; false with why set on failure. */
static bool lane_connect(tse_lane *l, char *why, size_t len)
{
    const tse_broker_options *o = &l->broker->opts;

    if (o->target.cluster) {
        if (!tse_lane_cluster_connect(l, why, len))
            goto fail;
    } else {
        l->pipe = tse_pipe_open(&o->target, o->timeout_ms, why, len);
        if (l->pipe == NULL || !load_script(l, why, len))
            goto fail;
    }
    l->script_lost = false;
    l->last_io_ms = tse_clock_ms();
    pthread_mutex_lock(&l->mu);
    atomic_store(&l->connected, true);
    l->probe = false;
    l->last_attempt_ms = tse_clock_ms();
    pthread_mutex_unlock(&l->mu);
    tse_broker_lane_health(l->broker, true);
    wake_other_lanes(l, true);
    return true;
fail:
    tse_pipe_close(l->pipe);
    l->pipe = NULL;
    tse_lane_discard_sigpipe();
    return false;
}

/* ---- pipelining ----------------------------------------------------------------------- */

/* Appends an internal command (not a job) to the output buffer. */
static bool append_internal(tse_lane *l, const tse_cmd *c)
{
    size_t len;
    char *cmd;
    bool ok;

    cmd = tse_resp_format(c->argc, c->argv, c->lens, &len);
    if (cmd == NULL)
        return false;
    ok = tse_pipe_append(l->pipe, cmd, len);
    free(cmd);
    return ok;
}

/*
 * tse_lane_register_once (internal.h): 1 when written, 0 when not needed,
 * -1 out of memory. A refused
 * dedup retry under another priority thus registers a stream that may stay
 * empty; registering after the append instead could lose the registration
 * of a stored event when the connection drops in between.
 */
int tse_lane_register_once(tse_lane *l, const char *key, tse_lane_append_fn append)
{
    tse_cmd c;

    if (tse_keyset_contains(&l->known, key))
        return 0;
    tse_register_stream_command(key, &c);
    if (!append(l, &c))
        return -1;
    if (l->known.count >= TSE_LANE_MAX_KNOWN)
        tse_keyset_clear(&l->known);
    tse_keyset_add(&l->known, key); /* out of memory: registered again next time */
    return 1;
}

/* The SADDs a publish job needs before it (none for a generic command). */
static bool register_streams(tse_lane *l, tse_job *job)
{
    int rc;

    if (job->command_cb != NULL)
        return true;
    if (job->n_events == 0) {
        if ((rc = tse_lane_register_once(l, job->key, append_internal)) < 0)
            return false;
        job->pre_sadds = rc;
        return true;
    }
    for (size_t i = 0; i < job->n_events; i++) {
        if ((rc = tse_lane_register_once(l, job->events[i].key, append_internal)) < 0)
            return false;
        job->events[i].pre_sadd = rc == 1;
        job->pre_sadds += rc;
    }
    return true;
}

/*
 * Appends job (and the SCRIPT LOAD or SADD it needs first) to the output
 * buffer and moves it to the in-flight list.
 */
static bool append_job(tse_lane *l, tse_job *job)
{
    if (job->dedup && l->script_lost) {
        const char *argv[] = {"SCRIPT", "LOAD", tse_dedup_script};
        tse_cmd c;
        const char *batch_argv[] = {"SCRIPT", "LOAD", tse_dedup_batch_script};

        if (!tse_cmd_from_argv(3, argv, NULL, &c) || !append_internal(l, &c))
            goto fail;
        job->pre_scripts++;
        if (!tse_cmd_from_argv(3, batch_argv, NULL, &c) || !append_internal(l, &c))
            goto fail;
        job->pre_scripts++;
        l->script_lost = false;
    }
    if (!register_streams(l, job))
        goto fail;
    if (!tse_pipe_append(l->pipe, job->cmd, job->cmd_len))
        goto fail;
    tse_job_list_push(&l->inflight, job);
    return true;
fail:
    /* Out of memory: whatever was appended for it still gets its replies, so
     * keep the job in flight and let the connection be dropped. */
    tse_job_list_push(&l->inflight, job);
    return false;
}

/* Writes batch to Redis; false (connection to drop) on failure. */
static bool lane_write(tse_lane *l, tse_job_list *batch, char *why, size_t len)
{
    tse_job *job;
    int64_t now = l->broker->opts.round_trip ? tse_clock_us() : 0;

    while ((job = tse_job_list_pop(batch)) != NULL) {
        job->written_us = now;
        if (!append_job(l, job)) {
            /* In flight behind the others, so they all fail in order. */
            while ((job = tse_job_list_pop(batch)) != NULL)
                tse_job_list_push(&l->inflight, job);
            snprintf(why, len, "broker: out of memory appending to the pipeline");
            return false;
        }
    }
    if (!tse_pipe_flush(l->pipe, why, len))
        return false;
    l->last_io_ms = tse_clock_ms();
    return true;
}

/* A SADD reply of job: added says the stream is new to the set. A group
 * job's SADD replies come in the order of its events that sent one. */
static void note_registered(tse_job *job, bool added)
{
    size_t i = 0;

    while (i < job->n_events && !job->events[i].pre_sadd)
        i++;
    if (i == job->n_events) {
        job->new_stream |= added;
        return;
    }
    job->events[i].pre_sadd = false;
    job->events[i].new_stream = added;
}

void tse_lane_internal_failure(tse_lane *l, tse_job *job, tse_status status, const char *message,
                               bool sadd)
{
    if (sadd)
        note_registered(job, false);
    /* Forget what may not have been done, so the next job does it again. */
    if (sadd)
        tse_keyset_clear(&l->known);
    else
        l->script_lost = true;
    if (job->pre_status != TSE_OK)
        return;
    job->pre_status = status;
    job->pre_message = tse_strdup(message); /* NULL ok: the job then fails as "redis error" */
}

void tse_lane_internal_reply(tse_lane *l, tse_job *job, const struct redisReply *r, bool sadd)
{
    const char *what = sadd ? "SADD " TSE_STREAMS_KEY : "SCRIPT LOAD", *text;
    char message[256];
    size_t len;

    if (!tse_reply_error(r, &text, &len)) {
        if (sadd)
            note_registered(job, tse_reply_is_integer(r, 1));
        return;
    }
    /* An error reply's text is short; a longer one is cut, deliberately. */
    snprintf(message, sizeof(message), "redis: %s: %.*s", what, (int)(len < 200 ? len : 200), text);
    tse_lane_internal_failure(l, job, tse_redis_error_status(text, len), message, sadd);
}

/* Routes one reply, read at now_us, to the oldest job in flight. */
static void on_reply(tse_lane *l, struct redisReply *r, int64_t now_us)
{
    tse_job *job = l->inflight.head;

    if (job->pre_scripts > 0) {
        tse_lane_internal_reply(l, job, r, false);
        job->pre_scripts--;
    } else if (job->pre_sadds > 0) {
        tse_lane_internal_reply(l, job, r, true);
        job->pre_sadds--;
    } else {
        tse_job_list_pop(&l->inflight);
        if (job->written_us > 0)
            tse_histogram_observe(l->broker->opts.round_trip, now_us - job->written_us);
        if (job->dedup && tse_reply_error_is(r, "NOSCRIPT"))
            l->script_lost = true;
        tse_job_finish(job, r);
    }
    tse_reply_free(r);
}

/*
 * Blocks for at least one reply, then takes every reply already buffered, so
 * the caller can write newly queued jobs before blocking again.
 */
static bool lane_read(tse_lane *l, char *why, size_t len)
{
    struct redisReply *r = NULL;
    int64_t now;

    if (!tse_pipe_read(l->pipe, true, &r, why, len))
        return false;
    /* One clock reading for every reply this read brought. */
    now = l->broker->opts.round_trip ? tse_clock_us() : 0;
    on_reply(l, r, now);
    while (l->inflight.count > 0) {
        if (!tse_pipe_read(l->pipe, false, &r, why, len))
            return false;
        if (r == NULL)
            break;
        on_reply(l, r, now);
    }
    l->last_io_ms = tse_clock_ms();
    return true;
}

static bool lane_ping(tse_lane *l, char *why, size_t len)
{
    /* Any reply, even an error such as LOADING, shows the server is alive. */
    if (!tse_pipe_ping(l->pipe, why, len))
        return false;
    l->last_io_ms = tse_clock_ms();
    return true;
}

/* ---- writes from a caller's thread --------------------------------------------------- */

/*
 * tse_lane_write_lent (internal.h). The caller holds mu and the lane waits
 * in wait_for_work with its connection lent: the lane thread touches none
 * of its own state until it holds mu again, so the caller may do exactly
 * what lane_write would (append_job: the SCRIPT LOAD or SADD the job needs
 * first, the in-flight list), and then writes without blocking
 * (tse_pipe_flush_some): a completion-queue thread never waits on Redis;
 * it copies into the socket what it takes at once, which with nothing in
 * flight is the whole job short of megabytes. The job completes on the
 * lane thread as any other, which wakes once, for its reply: the hand-off
 * to the lane (a wake-up and a wait for a CPU) is no longer on the
 * publish's path. What did not go (the socket full, a failure, out of
 * memory) wakes the lane at once to write the rest (or fail everything in
 * flight, in order).
 */
void tse_lane_write_lent(tse_lane *l, tse_job *job)
{
    int64_t now = tse_clock_ms();

    job->written_us = l->broker->opts.round_trip ? tse_clock_us() : 0;
    l->lent_at_ms = now;
    if (!append_job(l, job)) { /* in flight all the same: failed with the others */
        l->lent_failed = true;
        tse_lane_wake_locked(l);
        return;
    }
    if (tse_pipe_flush_some(l->pipe) > 0)
        tse_lane_wake_locked(l);
    else
        l->last_io_ms = now;
}

/* Why the lane drops its connection after a caller's write: out of memory
 * appending it, or no reply within the timeout. Clears the flags. */
static void lent_failure(tse_lane *l, char *why, size_t len)
{
    const tse_broker_options *o = &l->broker->opts;

    if (l->lent_failed)
        snprintf(why, len, "broker: out of memory appending to the pipeline");
    else
        snprintf(why, len, "redis %.128s:%d: no answer to read within %d ms", o->target.host,
                 o->target.port, o->timeout_ms);
    l->lent_failed = l->lent_late = false;
}

/* Moves up to the in-flight room (and the byte budget) from the queue. */
static void take_batch(tse_lane *l, tse_job_list *batch)
{
    while (l->queue.head != NULL && l->inflight.count + batch->count < TSE_LANE_MAX_INFLIGHT &&
           (batch->count == 0 || batch->bytes + l->queue.head->cmd_len <= TSE_LANE_MAX_BATCH_BYTES))
        tse_job_list_push(batch, tse_job_list_pop(&l->queue));
}

/*
 * Serves a connected lane until stop (queue drained, nothing in flight:
 * returns true) or a connection failure (returns false with why set).
 */
static bool lane_serve(tse_lane *l, char *why, size_t len)
{
    for (;;) {
        tse_job_list batch = {0};
        bool ping = false;

        pthread_mutex_lock(&l->mu);
        if (l->inflight.count == 0)
            ping = wait_for_work(l);
        if (l->stop && l->queue.count == 0 && l->inflight.count == 0) {
            pthread_mutex_unlock(&l->mu);
            return true;
        }
        queue_trims(l);
        take_batch(l, &batch);
        pthread_mutex_unlock(&l->mu);

        if (l->lent_failed || l->lent_late) {
            tse_job *job;

            /* Behind the job a caller wrote, so they all fail in order. */
            while ((job = tse_job_list_pop(&batch)) != NULL)
                tse_job_list_push(&l->inflight, job);
            lent_failure(l, why, len);
            return false;
        }

        if (ping && !(l->rc ? tse_lane_cluster_ping(l, why, len) : lane_ping(l, why, len))) {
            /* Trims queued since the wait: nothing was in flight. */
            tse_job_list_fail(&batch, TSE_UNAVAILABLE, why);
            return false;
        }
        if (ping) {
            /* Idle for a ping interval: the send buffer sized for the last
             * burst (up to ~2 MB) goes back, so an idle service does not
             * hold it (the service's malloc_trim returns it). */
            tse_rconn_idle(l->rc);
            tse_pipe_idle(l->pipe);
        }
        if (l->rc != NULL) {
            if (batch.count > 0 && !tse_lane_cluster_round(l, &batch, why, len))
                return false;
            continue;
        }
        /* Bytes of a caller's write the socket did not take go first. */
        if ((batch.count > 0 || tse_pipe_unsent(l->pipe) > 0) && !lane_write(l, &batch, why, len))
            return false;
        if (l->inflight.count > 0 && !lane_read(l, why, len))
            return false;
    }
}

void *tse_lane_main(void *arg)
{
    tse_lane *l = arg;
    int64_t backoff = 0;
    char why[256];

    for (;;) {
        if (lane_connect(l, why, sizeof(why))) {
            backoff = TSE_BROKER_RETRY_MIN_MS;
            if (lane_serve(l, why, sizeof(why))) {
                lane_drop(l, NULL);
                break;
            }
            lane_drop(l, why);
        } else {
            tse_broker_note_error(l->broker, why);
            attempt_failed(l, why);
            backoff = tse_backoff_next(backoff);
        }
        if (lane_sleep(l, backoff))
            break;
    }
    /* Requests that waited for a probe when stop came. */
    attempt_failed(l, "broker stopped");
    return NULL;
}
