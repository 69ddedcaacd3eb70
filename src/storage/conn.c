/*
 * conn.c - the opaque Redis connection of the storage operations (conn.h),
 * on the one connection type of storage (rconn.h), single Redis or Redis
 * Cluster: the rconn plus the one-way "lost" state. Invariant: rc is NULL
 * exactly when lost is set, and on_lost has then been called once.
 *
 * Single Redis: the rconn does not reopen a lost connection
 * (tse_rconn_set_reopen) and gets no time to retry (its deadline is now):
 * the first failure is a loss, which the owner handles with its own
 * backoff, as before. Cluster: a redirection (MOVED, ASK), a TRYAGAIN or a
 * node gone (failover) is the rconn's to follow, which needs node
 * connections reopened and a little time (CLUSTER_RETRY_MS, not more: the
 * owner is one thread serving every slot, and a slot without a reachable
 * master must not stall the others). A command that still fails is one
 * slot's trouble, not a loss: it answers no reply (the command may have
 * run), the rconn has dropped the dead node and refreshes its map on the
 * next command, and the owner retries later. Only when no node of the
 * cluster answers at all (the map cannot be fetched from any) is the
 * connection lost, as a single Redis's is.
 */
#include <stdlib.h>

#include "common/clock.h"
#include "storage/conn_internal.h"
#include "storage/rconn.h"
#include "storage/redis_connect.h"

/* What a cluster call may spend following redirections and waiting for a
 * slot's master (TRYAGAIN, a node being failed over) before it fails. */
#define CLUSTER_RETRY_MS 100

struct tse_conn {
    tse_rconn *rc; /* NULL once lost */
    tse_conn_lost_cb on_lost;
    void *arg;
    int retry_ms; /* time a call may retry in: 0 on a single Redis */
};

tse_conn *tse_conn_open(const tse_redis_target *t, int timeout_ms, tse_conn_lost_cb on_lost,
                        void *arg, char *why, size_t len)
{
    tse_conn *c = calloc(1, sizeof(*c));
    tse_error err;

    if (c == NULL) {
        tse_redis_say(why, len, "redis: out of memory");
        return NULL;
    }
    tse_error_clear(&err);
    if (tse_rconn_create(t, timeout_ms, &c->rc, &err) != TSE_OK)
        goto fail;
    if (tse_rconn_is_cluster(c->rc))
        c->retry_ms =
            timeout_ms > 0 && timeout_ms < CLUSTER_RETRY_MS ? timeout_ms : CLUSTER_RETRY_MS;
    else
        tse_rconn_set_reopen(c->rc, false);
    /* The first map may take the whole timeout (a cluster coming up). */
    if (tse_rconn_connect(c->rc, tse_clock_ms() + (c->retry_ms > 0 ? timeout_ms : 0), &err) !=
        TSE_OK)
        goto fail;
    c->on_lost = on_lost;
    c->arg = arg;
    return c;
fail:
    tse_redis_say(why, len, "%s", err.message);
    tse_rconn_destroy(c->rc);
    free(c);
    return NULL;
}

void tse_conn_close(tse_conn *c)
{
    if (c == NULL)
        return;
    tse_rconn_destroy(c->rc);
    free(c);
}

bool tse_conn_lost(const tse_conn *c)
{
    return c == NULL || c->rc == NULL;
}

bool tse_conn_is_cluster(const tse_conn *c)
{
    return !tse_conn_lost(c) && tse_rconn_is_cluster(c->rc);
}

uint64_t tse_conn_rounds(const tse_conn *c)
{
    return tse_conn_lost(c) ? 0 : tse_rconn_get_counters(c->rc).rounds;
}

/* Marks c lost and tells its owner, once. */
static void lose(tse_conn *c, const tse_error *err)
{
    tse_rconn_destroy(c->rc);
    c->rc = NULL;
    if (c->on_lost)
        c->on_lost(c->arg, err->message[0] ? err->message : "redis: I/O error");
}

/* A call failed with st: lost, unless c is a cluster that still answers
 * (one slot's master out of reach, a reply lost with its node). */
static void call_failed(tse_conn *c, tse_status st, const tse_error *err)
{
    tse_error probe;

    if (st == TSE_UNAVAILABLE && tse_rconn_is_cluster(c->rc)) {
        tse_error_clear(&probe);
        if (tse_rconn_connect(c->rc, tse_clock_ms(), &probe) == TSE_OK)
            return;
    }
    lose(c, err);
}

redisReply *tse_conn_command(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = NULL;
    tse_status st;
    tse_error err;

    if (tse_conn_lost(c))
        return NULL;
    tse_error_clear(&err);
    st = tse_rconn_command(c->rc, argc, argv, lens, TSE_RCONN_SLOT_OF_KEYS,
                           tse_clock_ms() + c->retry_ms, &r, &err);
    if (st == TSE_FAILED_PRECONDITION) {
        /* An earlier pipeline's replies left untaken: dropped. */
        tse_rconn_discard(c->rc);
        st = tse_rconn_command(c->rc, argc, argv, lens, TSE_RCONN_SLOT_OF_KEYS,
                               tse_clock_ms() + c->retry_ms, &r, &err);
    }
    if (st != TSE_OK)
        call_failed(c, st, &err);
    return r;
}

bool tse_conn_append(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    tse_status st;

    if (tse_conn_lost(c))
        return false;
    st = tse_rconn_append(c->rc, argc, argv, lens, TSE_RCONN_SLOT_OF_KEYS, NULL);
    if (st == TSE_FAILED_PRECONDITION) {
        /* An earlier pipeline's replies left untaken: dropped. */
        tse_rconn_discard(c->rc);
        st = tse_rconn_append(c->rc, argc, argv, lens, TSE_RCONN_SLOT_OF_KEYS, NULL);
    }
    return st == TSE_OK;
}

bool tse_conn_append_raw(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    if (!tse_conn_append(c, argc, argv, lens))
        return false;
    tse_rconn_raw_reply(c->rc);
    return true;
}

void tse_conn_send(tse_conn *c)
{
    if (!tse_conn_lost(c))
        tse_rconn_send(c->rc);
}

redisReply *tse_conn_reply(tse_conn *c)
{
    redisReply *r = NULL;
    tse_status st;
    tse_error err;

    if (tse_conn_lost(c))
        return NULL;
    tse_error_clear(&err);
    st = tse_rconn_get_reply(c->rc, tse_clock_ms() + c->retry_ms, &r, &err);
    if (st != TSE_OK)
        call_failed(c, st, &err);
    return r;
}
