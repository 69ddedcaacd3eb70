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
 * connections reopened and time: each call gets the timeout given at open,
 * and only what fails past it is a loss.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "storage/conn_internal.h"
#include "storage/rconn.h"
#include "storage/redis_connect.h"

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
        c->retry_ms = timeout_ms > 0 ? timeout_ms : 0;
    else
        tse_rconn_set_reopen(c->rc, false);
    if (tse_rconn_connect(c->rc, tse_clock_ms() + c->retry_ms, &err) != TSE_OK)
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

/* Marks c lost and tells its owner, once. */
static void lose(tse_conn *c, const tse_error *err)
{
    tse_rconn_destroy(c->rc);
    c->rc = NULL;
    if (c->on_lost)
        c->on_lost(c->arg, err->message[0] ? err->message : "redis: I/O error");
}

redisReply *tse_conn_command(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r = NULL;
    tse_error err;

    if (tse_conn_lost(c))
        return NULL;
    tse_error_clear(&err);
    if (tse_rconn_command(c->rc, argc, argv, lens, TSE_RCONN_SLOT_OF_KEYS,
                          tse_clock_ms() + c->retry_ms, &r, &err) != TSE_OK)
        lose(c, &err);
    return r;
}

bool tse_conn_append(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    return !tse_conn_lost(c) &&
           tse_rconn_append(c->rc, argc, argv, lens, TSE_RCONN_SLOT_OF_KEYS, NULL) == TSE_OK;
}

redisReply *tse_conn_reply(tse_conn *c)
{
    redisReply *r = NULL;
    tse_error err;

    if (tse_conn_lost(c))
        return NULL;
    tse_error_clear(&err);
    if (tse_rconn_get_reply(c->rc, tse_clock_ms() + c->retry_ms, &r, &err) != TSE_OK)
        lose(c, &err);
    return r;
}
