/*
 * lane_cluster_wait.c - the replication check of a writer lane on a Redis
 * Cluster (REDIS_MIN_REPLICAS, docs/operations.md "Acknowledged writes and
 * failover"). Redis replicates asynchronously: a master that stored an
 * event and died before its replica had it takes the event with it when
 * the replica is promoted. So a round's publish jobs are answered OK only
 * once a replica has them: after the round's commands, one
 * `WAIT <n> <timeout>` per master written to (routed by the slot of one of
 * its jobs: rconn keeps a node's commands in order on one connection, and
 * WAIT counts the replicas that acknowledged every write of that
 * connection), n capped at the replicas the slot map lists for the master
 * (a master without replicas is not waited on: nothing to wait for).
 *
 * A job whose master's WAIT reported fewer than n replicas is answered
 * UNAVAILABLE: stored on the master but not confirmed (at least once: the
 * client retries with the same client_id). A round whose commands were
 * not all answered at once (MOVED, ASK, TRYAGAIN, an unreachable node:
 * rconn sends those again after the WAITs) WAITs once more (wait_again),
 * grouping every publish by the master that serves its slot after the
 * redirections, whatever its group (or none) when the round began, and a
 * master whose connection was replaced in the round confirms nothing (a
 * WAIT on the new one covers nothing of the old).
 * A master whose WAIT answered fewer than n is remembered short of
 * replicas (per connection): later rounds send it ROLE, not WAIT, and
 * fail its jobs at once until ROLE lists enough replicas, so a missing
 * replica does not hold every round (and the other masters' jobs in it)
 * for the WAIT timeout.
 * Publish jobs only: generic commands and trims complete from their reply.
 */
#include "writer/internal.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

bool tse_lane_wait_on(const tse_lane *l)
{
    return l->broker->opts.min_replicas > 0;
}

/* How long a WAIT waits: half the Redis timeout, so its reply comes well
 * within the connection's timeout for every reply. */
static int wait_ms(const tse_lane *l)
{
    int ms = l->broker->opts.timeout_ms / 2;
    return ms > 0 ? ms : 1;
}

void tse_lane_wait_begin(tse_lane *l, tse_lane_wait *w)
{
    w->count = 0;
    w->before = tse_rconn_get_counters(l->rc);
}

/* ---- masters short of replicas ---- */

static int short_index(const tse_lane *l, uint64_t conn)
{
    for (int i = 0; conn != 0 && i < l->n_short; i++)
        if (l->short_conn[i] == conn)
            return i;
    return -1;
}

/* Remembers whether the master on connection conn was short of replicas
 * (its WAIT answered fewer than asked for). A connection opened later (the
 * master reconnected, or failed over) starts unknown: waited on. */
static void note_short(tse_lane *l, uint64_t conn, bool is_short)
{
    int i = short_index(l, conn);

    if (conn == 0 || (i >= 0) == is_short)
        return;
    if (!is_short) {
        l->short_conn[i] = l->short_conn[--l->n_short];
        return;
    }
    if (l->n_short == TSE_LANE_MAX_SHORT) { /* forget one: it is waited on again */
        memmove(l->short_conn, l->short_conn + 1, sizeof(l->short_conn[0]) * (size_t)--l->n_short);
    }
    l->short_conn[l->n_short++] = conn;
}

/* ---- groups ---- */

/* The group of owner (a master, n replicas to wait for, on connection conn,
 * probe: short last time) in w, added when new; -2 when w has no room. */
static int group_of(tse_lane_wait *w, int owner, int slot, int n, uint64_t conn, bool probe)
{
    for (int i = 0; i < w->count; i++)
        if (w->group[i].owner == owner)
            return i;
    if (w->count == TSE_LANE_MAX_WAITS)
        return -2;
    w->group[w->count].owner = owner;
    w->group[w->count].slot = slot;
    w->group[w->count].replicas = n;
    w->group[w->count].conn = conn;
    w->group[w->count].probe = probe;
    w->group[w->count].confirmed = false;
    return w->count++;
}

/* Called for every job of a round, before anything is read: the map does
 * not change meanwhile, so its owner numbers identify the masters. */
void tse_lane_wait_assign(tse_lane *l, tse_lane_wait *w, tse_job *job)
{
    int owner, replicas, n = l->broker->opts.min_replicas;
    uint64_t conn;

    job->wait_group = -1;
    if (job->command_cb != NULL || job->slot < 0)
        return;
    owner = tse_rconn_slot_owner(l->rc, (unsigned)job->slot, &replicas);
    if (owner < 0) {
        job->wait_group = -2; /* no master known: confirmed by nothing */
        return;
    }
    if (replicas >= 0 && replicas < n)
        n = replicas;
    if (n == 0)
        return;
    conn = tse_rconn_slot_conn(l->rc, (unsigned)job->slot);
    job->wait_group = group_of(w, owner, job->slot, n, conn, short_index(l, conn) >= 0);
}

bool tse_lane_wait_append(tse_lane *l, tse_lane_wait *w)
{
    char ms[16];
    tse_error err;

    snprintf(ms, sizeof(ms), "%d", wait_ms(l));
    for (int i = 0; i < w->count; i++) {
        char n[16];
        const char *argv[3] = {"WAIT", n, ms}, *role[1] = {"ROLE"};

        snprintf(n, sizeof(n), "%d", w->group[i].replicas);
        if (w->group[i].probe
                ? tse_rconn_append(l->rc, 1, role, NULL, w->group[i].slot, &err) != TSE_OK
                : tse_rconn_append(l->rc, 3, argv, NULL, w->group[i].slot, &err) != TSE_OK)
            return false;
    }
    return true;
}

/* Reads the replies of n WAITs appended for replicas[0..n): whether each
 * reported as many replicas, into ok[i]. */
static void take_waits(tse_lane *l, int n, const int *replicas, bool *ok, int64_t deadline_ms)
{
    for (int i = 0; i < n; i++) {
        struct redisReply *r = NULL;
        tse_error err;

        ok[i] = tse_rconn_get_reply(l->rc, deadline_ms, &r, &err) == TSE_OK &&
                tse_reply_integer_at_least(r, replicas[i]);
        tse_reply_free(r);
    }
}

/* Adds (or finds) the group of the master serving slot in the current
 * map, n capped at its replicas; -1 when it needs no WAIT (no replicas),
 * -2 when it cannot be confirmed (no open connection to it, one opened
 * after a connection was lost in the round: a WAIT there covers nothing of
 * the old one, or no room). */
static int group_now(tse_lane *l, tse_lane_wait *w, int slot, bool dropped)
{
    int replicas = -1, n = l->broker->opts.min_replicas,
        owner = tse_rconn_slot_owner(l->rc, (unsigned)slot, &replicas);
    uint64_t conn = tse_rconn_slot_conn(l->rc, (unsigned)slot);

    if (replicas >= 0 && replicas < n)
        n = replicas;
    if (n == 0)
        return -1;
    if (conn == 0 || (dropped && conn > w->before.connects) || owner < 0)
        return -2;
    return group_of(w, owner, slot, n, conn, false);
}

/* Whether job is a publish whose held answer the replication check is
 * for: also one that needed no WAIT when the round began (its master had
 * no replicas), since a redirection may have stored it on a master that
 * has some. Not one no master was known for (-2: confirmed by nothing). */
static bool waits(const tse_job *job)
{
    return job->command_cb == NULL && job->slot >= 0 && job->wait_group != -2 &&
           job->held_reply != NULL && !tse_reply_error(job->held_reply, NULL, NULL);
}

/*
 * After a round whose commands were not all answered at once (a MOVED, an
 * ASK, a TRYAGAIN, a master unreachable): a redirected or retried command
 * ran after its master's WAIT, maybe on another master. One more WAIT per
 * master now serving a held job's slot (the map refreshed by the MOVED),
 * on the same connections, covers them; after an ASK (the command went to
 * a master the map does not name for its slot) every master with an open
 * connection is asked too, and a job is confirmed only if all of them
 * are. A master whose connection was opened after one was lost in the
 * round, or has none, confirms nothing.
 */
static void wait_again(tse_lane *l, tse_lane_wait *w, tse_job_list *batch, int64_t deadline_ms)
{
    tse_rconn_counters now = tse_rconn_get_counters(l->rc), before, after;
    bool dropped = now.node_drops != w->before.node_drops, asked = now.ask != w->before.ask;
    int replicas[TSE_LANE_MAX_WAITS] = {0}, k = 0;
    bool ok[TSE_LANE_MAX_WAITS], all = true;
    char ms[16];

    w->count = 0;
    for (tse_job *job = batch->head; job != NULL; job = job->next)
        if (waits(job))
            job->wait_group = group_now(l, w, job->slot, dropped);
    if (asked) {
        int slots[TSE_LANE_MAX_WAITS];
        int n = tse_rconn_master_slots(l->rc, slots, TSE_LANE_MAX_WAITS);

        for (int i = 0; i < n; i++)
            if (tse_rconn_slot_conn(l->rc, (unsigned)slots[i]) != 0 &&
                group_now(l, w, slots[i], dropped) == -2)
                all = false;
    }
    snprintf(ms, sizeof(ms), "%d", wait_ms(l));
    for (; k < w->count; k++) {
        char nr[16];
        const char *argv[3] = {"WAIT", nr, ms};
        tse_error err;

        replicas[k] = w->group[k].replicas;
        snprintf(nr, sizeof(nr), "%d", replicas[k]);
        if (tse_rconn_append(l->rc, 3, argv, NULL, w->group[k].slot, &err) != TSE_OK)
            break;
    }
    if (k < w->count) { /* out of memory: nothing confirmed */
        tse_rconn_discard(l->rc);
        w->count = 0;
        return;
    }
    before = tse_rconn_get_counters(l->rc);
    take_waits(l, k, replicas, ok, deadline_ms);
    after = tse_rconn_get_counters(l->rc);
    for (int i = 0; i < k; i++) {
        w->group[i].confirmed =
            ok[i] && after.rounds - before.rounds == 1 && after.node_drops == before.node_drops;
        all &= w->group[i].confirmed;
    }
    for (int i = 0; asked && !all && i < k; i++)
        w->group[i].confirmed = false;
}

/*
 * The masters whose ROLE (a probe) listed enough replicas again: one WAIT
 * each now, on the connections the round wrote on, confirms their jobs
 * (one more round trip, only for a master coming back).
 */
static void wait_recovered(tse_lane *l, tse_lane_wait *w, const int *idx, int n,
                           int64_t deadline_ms)
{
    int replicas[TSE_LANE_MAX_WAITS] = {0}, k = 0;
    bool ok[TSE_LANE_MAX_WAITS], same;
    tse_rconn_counters before, after;
    char ms[16];

    snprintf(ms, sizeof(ms), "%d", wait_ms(l));
    for (; k < n; k++) {
        char nr[16];
        const char *argv[3] = {"WAIT", nr, ms};
        tse_error err;

        replicas[k] = w->group[idx[k]].replicas;
        snprintf(nr, sizeof(nr), "%d", replicas[k]);
        if (tse_rconn_append(l->rc, 3, argv, NULL, w->group[idx[k]].slot, &err) != TSE_OK)
            break;
    }
    if (k < n) { /* out of memory: nothing confirmed */
        tse_rconn_discard(l->rc);
        return;
    }
    before = tse_rconn_get_counters(l->rc);
    take_waits(l, n, replicas, ok, deadline_ms);
    after = tse_rconn_get_counters(l->rc);
    same = after.rounds - before.rounds == 1 && after.node_drops == before.node_drops;
    for (int i = 0; i < n; i++) {
        w->group[idx[i]].confirmed = ok[i] && same;
        if (same)
            note_short(l, w->group[idx[i]].conn, !ok[i]);
    }
}

/*
 * A WAIT's master is remembered short of replicas when WAIT answered fewer
 * than asked for; its later rounds send ROLE instead (no wait): their jobs
 * fail UNAVAILABLE at once, so a master with a missing replica costs the
 * WAIT timeout once per lane, not every round, and the other masters' jobs
 * of the round are not held for it. When ROLE lists enough replicas again,
 * a WAIT decides (wait_recovered).
 */
void tse_lane_wait_take(tse_lane *l, tse_lane_wait *w, tse_job_list *batch, int64_t deadline_ms)
{
    int recovered[TSE_LANE_MAX_WAITS], n_recovered = 0;

    for (int i = 0; i < w->count; i++) {
        struct redisReply *r = NULL;
        tse_error err;
        bool answered = tse_rconn_get_reply(l->rc, deadline_ms, &r, &err) == TSE_OK;

        w->group[i].confirmed = false;
        if (w->group[i].probe) {
            if (answered && tse_reply_role_replicas(r) >= w->group[i].replicas)
                recovered[n_recovered++] = i;
        } else {
            w->group[i].confirmed = answered && tse_reply_integer_at_least(r, w->group[i].replicas);
            if (answered && tse_reply_integer_at_least(r, 0))
                note_short(l, w->group[i].conn, !w->group[i].confirmed);
        }
        tse_reply_free(r);
    }
    /* Even when the round began with no WAIT at all (every master written
     * to without replicas): a redirected publish may have landed on one
     * with replicas. */
    if (tse_rconn_get_counters(l->rc).rounds - w->before.rounds > 1)
        wait_again(l, w, batch, deadline_ms);
    else if (n_recovered > 0)
        wait_recovered(l, w, recovered, n_recovered, deadline_ms);
}

void tse_lane_wait_complete(tse_lane *l, const tse_lane_wait *w, tse_job *job)
{
    char message[256];

    if (job->held_reply == NULL) {
        tse_job_fail(job, job->held_status, job->held_message ? job->held_message : "redis error");
        return;
    }
    if (job->wait_group == -1 || tse_reply_error(job->held_reply, NULL, NULL) ||
        (job->wait_group >= 0 && w->group[job->wait_group].confirmed)) {
        struct redisReply *r = job->held_reply;

        job->held_reply = NULL;
        tse_job_finish(job, r);
        tse_reply_free(r);
        return;
    }
    if (job->wait_group >= 0 && w->group[job->wait_group].probe &&
        !w->group[job->wait_group].confirmed)
        snprintf(message, sizeof(message),
                 "redis: stored on the master but not confirmed by a replica (fewer than %d "
                 "connected to it; not waited for) (the event may be stored); retry with the same "
                 "client_id",
                 w->group[job->wait_group].replicas);
    else
        snprintf(message, sizeof(message),
                 "redis: stored on the master but not confirmed by a replica within %d ms (the "
                 "event may be stored); retry with the same client_id",
                 wait_ms(l));
    tse_broker_note_error(l->broker, message);
    tse_reply_free(job->held_reply);
    job->held_reply = NULL;
    tse_job_fail(job, TSE_UNAVAILABLE, message);
}
