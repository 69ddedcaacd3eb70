/*
 * redis_connect.h - the one way a thread of the writer lanes or the delivery
 * engine reaches Redis (redis_connect.c): a blocking connect bounded by the
 * timeout, then AUTH and SELECT as the target asks, and failures described
 * in words a log reader understands. When to try again after a failure is
 * backoff.h's (the same schedule and probe rule for every connection).
 *
 * Blocking: each caller is a thread of its own, never a completion-queue
 * thread. A context belongs to the thread that connected it.
 */
#ifndef TSE_STORAGE_REDIS_CONNECT_H
#define TSE_STORAGE_REDIS_CONNECT_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "storage/backoff.h"
#include "storage/redis_url.h"

/*
 * Connects to t, blocking: timeout_ms bounds the connect and every reply
 * after it, keepalive is on, then AUTH and SELECT as t asks. NULL with why
 * set ("redis host:port: ...") on failure. Caller frees with redisFree.
 */
redisContext *tse_redis_connect(const tse_redis_target *t, int timeout_ms, char *why, size_t len);

/* Runs one command of a handshake on c; false with why set on an error
 * reply or none. The reply goes to *out when out is non-NULL (caller frees). */
bool tse_redis_handshake(redisContext *c, const tse_redis_target *t, int timeout_ms, int argc,
                         const char **argv, redisReply **out, char *why, size_t len);

/* Writes len bytes at buf to c's socket, all of them (blocking, bounded by
 * c's timeout), bypassing hiredis's output buffer, which must be empty.
 * False with c->err and c->errstr set as hiredis sets them (a timeout
 * reads "Resource temporarily unavailable"). A SIGPIPE is the process's
 * to ignore, as with hiredis's own writes. */
bool tse_redis_write_all(redisContext *c, const char *buf, size_t len);

/* Why c failed while doing `doing`, in words a log reader understands. */
void tse_redis_describe_failure(const redisContext *c, const tse_redis_target *t, int timeout_ms,
                                const char *doing, char *buf, size_t len);

/* snprintf for messages: cutting a long one (a 255-byte host name) short is
 * fine, so the truncation is deliberate, not a bug for the compiler to flag. */
__attribute__((format(printf, 3, 4))) void tse_redis_say(char *buf, size_t len, const char *fmt,
                                                         ...);

#endif
