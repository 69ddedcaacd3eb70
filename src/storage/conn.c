/*
 * conn.c - the opaque Redis connection of the storage operations (conn.h):
 * a hiredis context plus the one-way "lost" state. Invariant: ctx is NULL
 * exactly when lost is set, and on_lost has then been called once.
 */
#include <stdio.h>
#include <stdlib.h>

#include "storage/conn_internal.h"
#include "storage/redis_connect.h"

struct tse_conn {
    redisContext *ctx; /* NULL once lost */
    tse_conn_lost_cb on_lost;
    void *arg;
};

tse_conn *tse_conn_open(const tse_redis_target *t, int timeout_ms, tse_conn_lost_cb on_lost,
                        void *arg, char *why, size_t len)
{
    tse_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        tse_redis_say(why, len, "redis: out of memory");
        return NULL;
    }
    c->ctx = tse_redis_connect(t, timeout_ms, why, len);
    if (c->ctx == NULL) {
        free(c);
        return NULL;
    }
    c->on_lost = on_lost;
    c->arg = arg;
    return c;
}

void tse_conn_close(tse_conn *c)
{
    if (c == NULL)
        return;
    if (c->ctx != NULL)
        redisFree(c->ctx);
    free(c);
}

bool tse_conn_lost(const tse_conn *c)
{
    return c == NULL || c->ctx == NULL;
}

/* Marks c lost and tells its owner, once. */
static void lose(tse_conn *c)
{
    char why[256];

    snprintf(why, sizeof(why), "redis: %s", c->ctx->errstr[0] ? c->ctx->errstr : "I/O error");
    redisFree(c->ctx);
    c->ctx = NULL;
    if (c->on_lost)
        c->on_lost(c->arg, why);
}

redisReply *tse_conn_command(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    redisReply *r;

    if (tse_conn_lost(c))
        return NULL;
    r = redisCommandArgv(c->ctx, argc, argv, lens);
    if (r == NULL)
        lose(c);
    return r;
}

bool tse_conn_append(tse_conn *c, int argc, const char **argv, const size_t *lens)
{
    return !tse_conn_lost(c) && redisAppendCommandArgv(c->ctx, argc, argv, lens) == REDIS_OK;
}

redisReply *tse_conn_reply(tse_conn *c)
{
    void *r = NULL;

    if (tse_conn_lost(c))
        return NULL;
    if (redisGetReply(c->ctx, &r) != REDIS_OK || r == NULL) {
        if (r)
            freeReplyObject(r);
        lose(c);
        return NULL;
    }
    return r;
}
