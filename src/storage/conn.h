/*
 * conn.h - an opaque connection to Redis for the storage operations
 * (conn.c): the delivery engine holds one and hands it to the typed
 * operations of group_ops.h, dlq_ops.h and subs_ops.h; it never sees a
 * hiredis type. Built on storage's one connection type (rconn.h), on a
 * single Redis or a Redis Cluster (the operations split what spans slots,
 * group_ops.h); connecting is redis_connect.h's (AUTH, SELECT, timeouts).
 *
 * Lost: on a single Redis, the first I/O failure (or timeout) of an
 * operation marks the connection lost and closes its socket; every
 * operation on it from then on answers TSE_UNAVAILABLE at once, without
 * I/O, and the owner learns of the loss through the callback given at
 * open, called once, from inside the failing operation (so the callback
 * must not close the connection: close it later, between two steps).
 *
 * On a Redis Cluster a failed node is one slot's trouble, not a loss: the
 * connection follows redirections and waits a little (100 ms) for a slot's
 * master; an operation whose slot has no reachable master (a master
 * killed, its replica not yet promoted) or whose reply was lost with its
 * node answers TSE_UNAVAILABLE (the command may have run), and the
 * connection lives on: the dead node is dropped, the slot map refreshed,
 * and the next operation goes to whichever master serves the slot then.
 * The operations that span slots (group_ops.h) answer what the other
 * slots gave. Only when no node of the cluster answers is the connection
 * lost, as above.
 *
 * Blocking, and owned by one thread at a time (the one that opened it).
 */
#ifndef TSE_STORAGE_CONN_H
#define TSE_STORAGE_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "storage/redis_url.h"

typedef struct tse_conn tse_conn;

/* Called once when c is lost; why says how ("redis: ..."). */
typedef void (*tse_conn_lost_cb)(void *arg, const char *why);

/*
 * Connects to t (redis_connect.h: timeout_ms bounds the connect and every
 * reply). NULL with why set on failure. on_lost may be NULL. Caller closes
 * with tse_conn_close.
 */
tse_conn *tse_conn_open(const tse_redis_target *t, int timeout_ms, tse_conn_lost_cb on_lost,
                        void *arg, char *why, size_t len);

/* Closes c and frees it. NULL is a no-op. */
void tse_conn_close(tse_conn *c);

/* Whether c was lost (NULL counts as lost). */
bool tse_conn_lost(const tse_conn *c);

#endif
