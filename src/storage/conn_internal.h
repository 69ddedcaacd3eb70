/*
 * conn_internal.h - what the storage operations see of a tse_conn (conn.c):
 * one command, or a pipeline of them, on its hiredis context. Private to
 * src/storage: nothing above storage sees a hiredis type.
 */
#ifndef TSE_STORAGE_CONN_INTERNAL_H
#define TSE_STORAGE_CONN_INTERNAL_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "common/status.h"
#include "storage/conn.h"

/* Why an operation got no usable reply: the status a caller answers with. */
#define TSE_CONN_GONE TSE_UNAVAILABLE

/* One command on c; NULL when c is lost (now or before: the loss is then
 * reported, once). Caller frees the reply with freeReplyObject. */
redisReply *tse_conn_command(tse_conn *c, int argc, const char **argv, const size_t *lens);

/* Queues one command of a pipeline; false when c is lost or out of memory. */
bool tse_conn_append(tse_conn *c, int argc, const char **argv, const size_t *lens);

/* The next reply of a pipeline; NULL when c is lost. Caller frees it. */
redisReply *tse_conn_reply(tse_conn *c);

/* Whether c speaks to a Redis Cluster: a command's keys must then share
 * one slot (false once lost). */
bool tse_conn_is_cluster(const tse_conn *c);

/* Reply shapes, checked before any element is used. */
static inline bool is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->str != NULL;
}

static inline bool is_int(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER;
}

static inline bool is_array(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY;
}

/* The status of a reply that is no answer: an error reply or none. */
static inline tse_status failed(const redisReply *r)
{
    return r == NULL ? TSE_CONN_GONE : TSE_INTERNAL;
}

#endif
