/*
 * lane_cluster.c - the I/O of a writer lane on a Redis Cluster: the lane's
 * thread, queue, trims, idle PINGs and health are lane.c's; here a batch
 * taken from the queue goes out through storage's rconn, which sends each
 * command to the master serving its slot (one connection per master),
 * follows MOVED and ASK, and answers in the order the commands went in.
 *
 * Why rounds, not lane.c's streaming: a cluster pipeline is split per node
 * and its replies put back in order, which rconn does for a whole batch;
 * the lane takes up to TSE_LANE_MAX_INFLIGHT jobs, appends them, and
 * completes them from the replies before taking the next batch. A single
 * Redis keeps the streaming path (docs/architecture.md).
 *
 * Invariants, as on a single Redis:
 * - Every job of a batch completes exactly once, in batch order: from its
 *   reply, or failed. A job whose connection failed after it was sent is
 *   failed TSE_UNAVAILABLE ("may have run") and never sent again; only
 *   redirections (the command did not run) are retried, by rconn, for
 *   CLUSTER_RETRY_MS, and for up to the Redis timeout more while the
 *   slot's node answers that the slot is moving (MOVED, ASK, TRYAGAIN: a
 *   resharding, which under load can take longer; tse_rconn_set_moving_ms).
 *   A slot no master serves for CLUSTER_RETRY_MS (a master
 *   killed, its replica not yet promoted) is answered UNAVAILABLE
 *   (CLUSTERDOWN, or no reachable master), the batch's jobs of other
 *   slots completing from their replies: one dead slot neither stalls the
 *   lane for the Redis timeout nor fails the live slots' jobs. The lane
 *   stays up (rconn has dropped the dead node and refreshes its map on the
 *   next round, finding the promoted replica when there is one) unless no
 *   node of the cluster answers at all: then it is down (health, backoff),
 *   as on a single Redis.
 * - A job's internal commands (SCRIPT LOAD, SADD of the stream set) go
 *   before it, in the same batch: the SCRIPT LOADs to its own slot's master
 *   (where its EVALSHA runs), the SADD to the stream set's slot. A stream
 *   is registered once per lane connection, wherever its slot moves (the
 *   stream set has its own slot); after a node connection was dropped (a
 *   failover may lose the last writes of a master) every stream is
 *   registered again.
 * - The scripts are loaded on every master as rconn connects to it
 *   (tse_rconn_add_script), so a slot that moves finds them there.
 * - With the replication check on (REDIS_MIN_REPLICAS), a round ends with
 *   one WAIT per master written to, and its jobs' replies are held until
 *   those are read: a publish is OK once a replica has it
 *   (lane_cluster_wait.c).
 */
#include "writer/internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/clock.h"

/* What a round may spend following redirections and waiting for a slot's
 * master (TRYAGAIN, a master being failed over) before its jobs of that
 * slot fail: the lane serves every slot its types hash to, and the Redis
 * timeout is far too long for the others to wait. */
#define CLUSTER_RETRY_MS 100

/* ---- connecting -------------------------------------------------------------------- */

/* The SHA of script, as SCRIPT LOAD on any master returns it (one try). */
static tse_status script_sha(tse_lane *l, const char *script, char sha[41], tse_error *err)
{
    const char *argv[3] = {"SCRIPT", "LOAD", script};
    struct redisReply *r = NULL;
    tse_status st;

    st = tse_rconn_command(l->rc, 3, argv, NULL, TSE_SLOT_ANY, tse_clock_ms(), &r, err);
    if (st != TSE_OK)
        return st;
    st = tse_reply_sha(r, sha)
             ? TSE_OK
             : tse_error_set(err, TSE_UNAVAILABLE, NULL, "redis: unexpected reply to SCRIPT LOAD");
    tse_reply_free(r);
    return st;
}

/*
 * One attempt, as on a single Redis (every seed and known node asked once
 * for the map): retrying is the lane's backoff, and a request riding a
 * probe waits for this attempt only, not for the timeout.
 */
bool tse_lane_cluster_connect(tse_lane *l, char *why, size_t len)
{
    const tse_broker_options *o = &l->broker->opts;
    char sha[41], batch_sha[41];
    tse_error err = {0};

    if (tse_rconn_create(&o->target, o->timeout_ms, &l->rc, &err) != TSE_OK ||
        tse_rconn_add_script(l->rc, tse_dedup_script, &err) != TSE_OK ||
        tse_rconn_add_script(l->rc, tse_dedup_batch_script, &err) != TSE_OK ||
        tse_rconn_connect(l->rc, tse_clock_ms(), &err) != TSE_OK ||
        script_sha(l, tse_dedup_script, sha, &err) != TSE_OK ||
        script_sha(l, tse_dedup_batch_script, batch_sha, &err) != TSE_OK) {
        snprintf(why, len, "%s", err.message);
        tse_rconn_destroy(l->rc);
        l->rc = NULL;
        return false;
    }
    /* A slot in migration answers (MOVED, ASK, TRYAGAIN) and is not dead:
     * its commands get the Redis timeout, not CLUSTER_RETRY_MS. */
    tse_rconn_set_moving_ms(l->rc, o->timeout_ms);
    tse_broker_set_sha(l->broker, sha, batch_sha);
    l->script_lost = false;
    l->n_short = 0; /* connection numbers start again on a new rconn */
    return true;
}

bool tse_lane_cluster_ping(tse_lane *l, char *why, size_t len)
{
    const char *argv[1] = {"PING"};
    struct redisReply *r = NULL;
    tse_error err;

    if (tse_rconn_command(l->rc, 1, argv, NULL, TSE_SLOT_ANY,
                          tse_clock_ms() + l->broker->opts.timeout_ms, &r, &err) != TSE_OK) {
        snprintf(why, len, "%s", err.message);
        return false;
    }
    /* Any reply, even an error such as LOADING, shows a master is alive. */
    tse_reply_free(r);
    l->last_io_ms = tse_clock_ms();
    return true;
}

/* ---- appending a batch --------------------------------------------------------------- */

/* The append of lane.c's SADD, to the stream set's slot. */
static bool append_internal(tse_lane *l, const tse_cmd *c)
{
    tse_error err;

    return tse_rconn_append(l->rc, c->argc, c->argv, c->lens, TSE_RCONN_SLOT_OF_KEYS, &err) ==
           TSE_OK;
}

/* The SCRIPT LOADs a dedup job needs after a NOSCRIPT, to its own slot. */
static bool append_scripts(tse_lane *l, tse_job *job)
{
    const char *scripts[2] = {tse_dedup_script, tse_dedup_batch_script};
    tse_error err;

    for (int i = 0; i < 2; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", scripts[i]};

        if (tse_rconn_append(l->rc, 3, argv, NULL, job->slot, &err) != TSE_OK)
            return false;
        job->pre_scripts++;
    }
    return true;
}

/* Appends job and what it needs before it; false when out of memory. */
static bool append_job(tse_lane *l, tse_job *job)
{
    tse_error err;
    int rc;

    if (job->dedup && l->script_lost && !append_scripts(l, job))
        return false;
    if (job->command_cb == NULL && job->n_events == 0) {
        if ((rc = tse_lane_register_once(l, job->key, append_internal)) < 0)
            return false;
        job->pre_sadds = rc;
    }
    for (size_t i = 0; job->command_cb == NULL && i < job->n_events; i++) {
        if ((rc = tse_lane_register_once(l, job->events[i].key, append_internal)) < 0)
            return false;
        job->events[i].pre_sadd = rc == 1;
        job->pre_sadds += rc;
    }
    /* Borrowed, not copied: the job outlives the round's I/O (its reply is
     * taken, and it freed, only after the whole pipeline ran). */
    return tse_rconn_append_resp_borrowed(l->rc, job->cmd, job->cmd_len, job->slot, &err) == TSE_OK;
}

/* ---- completing it ------------------------------------------------------------------- */

/* Takes the reply of one internal command of job. */
static void take_internal(tse_lane *l, tse_job *job, int64_t deadline_ms, bool sadd)
{
    struct redisReply *r = NULL;
    tse_error err;

    if (tse_rconn_get_reply(l->rc, deadline_ms, &r, &err) != TSE_OK) {
        tse_lane_internal_failure(l, job, err.code, err.message, sadd);
        return;
    }
    tse_lane_internal_reply(l, job, r, sadd);
    tse_reply_free(r);
}

/* Completes job from its replies (hold: keeps its reply or failure in the
 * job for the replication check). Returns whether it got its own reply (a
 * connection failure otherwise: unreachable, lost, no master). */
static bool take_job(tse_lane *l, tse_job *job, int64_t deadline_ms, int64_t written_us, bool hold)
{
    struct redisReply *r = NULL;
    tse_error err;

    for (; job->pre_scripts > 0; job->pre_scripts--)
        take_internal(l, job, deadline_ms, false);
    for (; job->pre_sadds > 0; job->pre_sadds--)
        take_internal(l, job, deadline_ms, true);
    if (tse_rconn_get_reply(l->rc, deadline_ms, &r, &err) != TSE_OK) {
        tse_broker_note_error(l->broker, err.message);
        if (hold) {
            job->held_status = err.code;
            job->held_message = tse_strdup(err.message); /* NULL ok: "redis error" */
        } else
            tse_job_fail(job, err.code, err.message);
        return false;
    }
    if (written_us > 0)
        tse_histogram_observe(l->broker->opts.round_trip, tse_clock_us() - written_us);
    if (job->dedup && tse_reply_error_is(r, "NOSCRIPT"))
        l->script_lost = true;
    if (hold) {
        job->held_reply = r;
        return true;
    }
    tse_job_finish(job, r);
    tse_reply_free(r);
    return true;
}

bool tse_lane_cluster_round(tse_lane *l, tse_job_list *batch, char *why, size_t len)
{
    const tse_broker_options *o = &l->broker->opts;
    int64_t written_us = o->round_trip ? tse_clock_us() : 0, deadline_ms;
    uint64_t drops = tse_rconn_get_counters(l->rc).node_drops;
    bool script_lost = l->script_lost, all_answered = true, wait = tse_lane_wait_on(l);
    tse_lane_wait w;
    tse_job *job;
    tse_error err;

    if (wait)
        tse_lane_wait_begin(l, &w);
    for (job = batch->head; job != NULL; job = job->next) {
        if (wait)
            tse_lane_wait_assign(l, &w, job);
        if (!append_job(l, job) || (job->next == NULL && wait && !tse_lane_wait_append(l, &w))) {
            /* Nothing was sent: forget the batch's SADDs and SCRIPT LOADs,
             * fail its jobs, and let the lane start over. */
            tse_rconn_discard(l->rc);
            tse_keyset_clear(&l->known);
            l->script_lost = script_lost;
            snprintf(why, len, "broker: out of memory appending to the pipeline");
            tse_job_list_fail(batch, TSE_NOMEM, why);
            return false;
        }
    }
    deadline_ms =
        tse_clock_ms() +
        (o->timeout_ms > 0 && o->timeout_ms < CLUSTER_RETRY_MS ? o->timeout_ms : CLUSTER_RETRY_MS);
    if (!wait) {
        while ((job = tse_job_list_pop(batch)) != NULL)
            all_answered &= take_job(l, job, deadline_ms, written_us, false);
    } else {
        for (job = batch->head; job != NULL; job = job->next)
            all_answered &= take_job(l, job, deadline_ms, written_us, true);
        tse_lane_wait_take(l, &w, batch, deadline_ms);
        while ((job = tse_job_list_pop(batch)) != NULL)
            tse_lane_wait_complete(l, &w, job);
    }
    l->last_io_ms = tse_clock_ms();
    if (tse_rconn_get_counters(l->rc).node_drops != drops) {
        tse_keyset_clear(&l->known);
        tse_lane_discard_sigpipe();
    }
    /* A failure in the round is one slot's (its jobs failed, the others
     * answered) while some node still gives the map; if none does, the
     * lane is down (health, backoff) rather than failing one batch after
     * another. */
    if (all_answered)
        return true;
    tse_error_clear(&err);
    if (tse_rconn_connect(l->rc, tse_clock_ms(), &err) == TSE_OK)
        return true;
    snprintf(why, len, "%s", err.message);
    return false;
}
