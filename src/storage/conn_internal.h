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

/* tse_conn_append of a command whose array reply comes raw: one
 * REDIS_REPLY_STRING holding its RESP bytes (rconn.h, tse_rconn_raw_reply). */
bool tse_conn_append_raw(tse_conn *c, int argc, const char **argv, const size_t *lens);

/* Sends the pipeline now (tse_rconn_send): Redis works on it until the
 * first tse_conn_reply reads the replies; nothing else may use c meanwhile. */
void tse_conn_send(tse_conn *c);

/* The next reply of a pipeline; NULL when c is lost. Caller frees it. */
redisReply *tse_conn_reply(tse_conn *c);

/* Whether c speaks to a Redis Cluster: a command's keys must then share
 * one slot (false once lost). */
bool tse_conn_is_cluster(const tse_conn *c);

/* Pipeline rounds c sent so far (rconn.h's counters.rounds; 0 once lost):
 * round trips to Redis, for tests. */
uint64_t tse_conn_rounds(const tse_conn *c);

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

/* ===================== replies (reply.c) ================================ */

/*
 * The end of a command whose reply r was parsed into st: frees r and
 * returns st, or TSE_CONN_GONE when there was no reply. Every parser resets
 * its out first and answers TSE_INTERNAL for NULL, so that
 * `return tse_reply_finish(r, parse(r, out));` also resets out on a lost
 * connection.
 */
tse_status tse_reply_finish(redisReply *r, tse_status st);

/* An integer reply: *n is it (0 for anything else, TSE_INTERNAL). */
tse_status tse_reply_integer(const redisReply *r, long long *n);

/* One command whose reply is an integer, into *n (0 on failure). */
tse_status tse_conn_integer(tse_conn *c, int argc, const char **argv, const size_t *lens,
                            long long *n);

/* One command whose integer reply says yes (1) or no (HEXISTS, HSETNX, a
 * delete of one): *yes when Redis answered 1. */
tse_status tse_conn_flag(tse_conn *c, int argc, const char **argv, const size_t *lens, bool *yes);

/* The value after the first name `name` of a flat [name, value, ...] array
 * (XINFO's maps, a stream entry's fields); NULL when none. Borrows map. */
const redisReply *tse_reply_field(const redisReply *map, const char *name);

/* Fills slot (zeroed) from element e: TSE_OK keeps it, TSE_NOMEM stops the
 * read, anything else skips e (slot must then be left zeroed: it is used
 * for the next element). */
typedef tse_status (*tse_reply_item_fn)(const redisReply *e, void *slot);

/*
 * Reads the elements of array reply r in order into a calloc'd vector of
 * `size`-byte items (room for r->elements, at least one), stored at vec (the
 * address of the caller's T *, which must be NULL), *n of them kept.
 * TSE_OK; TSE_NOMEM (the items kept so far are in the vector: the caller
 * frees them and it); TSE_INTERNAL when r is no array (nothing stored).
 */
tse_status tse_reply_items(const redisReply *r, size_t size, tse_reply_item_fn item, void *vec,
                           size_t *n);

#endif
