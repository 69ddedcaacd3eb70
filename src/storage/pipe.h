/*
 * pipe.h - a streaming pipeline to one Redis server for one thread
 * (pipe.c): commands already in RESP are appended and written while
 * earlier replies are still outstanding, and replies are read as they
 * come, in order. The writer lanes use it on a single Redis, where writes
 * overlapping reads cost less CPU per event than rconn's rounds (rconn.h,
 * which a lane on a Redis Cluster uses instead).
 *
 * Connecting is redis_connect.h's (AUTH, SELECT, timeouts, keepalive);
 * every socket read and write is bounded by the timeout, so a hung Redis
 * fails a read instead of hanging the thread. Any failure leaves the pipe
 * unusable: the owner closes it and connects again.
 *
 * Replies are hiredis's, opaque here: struct redisReply is looked at only
 * through the accessors below and the decoders of ops.h, and freed with
 * tse_reply_free. A failure is described in words a log reader
 * understands, into the caller's why.
 *
 * Blocking, not thread-safe: a pipe belongs to the thread that opened it,
 * or to another thread while the owner lends it under a lock of its own
 * (a writer lane lends its pipe to publishing threads while it waits:
 * writer/lane.c); a borrower writes with tse_pipe_flush_some only, which
 * never blocks.
 */
#ifndef TSE_STORAGE_PIPE_H
#define TSE_STORAGE_PIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"
#include "storage/redis_url.h"

struct redisReply;

typedef struct tse_pipe tse_pipe;

/* Connects to t (copied); NULL with why set on failure. Caller closes with
 * tse_pipe_close. */
tse_pipe *tse_pipe_open(const tse_redis_target *t, int timeout_ms, char *why, size_t len);

/* Closes the connection and frees p. NULL is a no-op. */
void tse_pipe_close(tse_pipe *p);

/* SCRIPT LOAD of script, now (nothing may be outstanding): its SHA, 40 hex
 * digits, into sha. False with why set. */
bool tse_pipe_load_script(tse_pipe *p, const char *script, char sha[41], char *why, size_t len);

/* PING, now (nothing may be outstanding); any reply, even an error such as
 * LOADING, is an answer. False with why set when none came. */
bool tse_pipe_ping(tse_pipe *p, char *why, size_t len);

/* Appends len bytes of RESP (one or more whole commands) to the pipe's
 * send buffer; nothing is written yet, and nothing else (PING, SCRIPT
 * LOAD) may be sent before tse_pipe_flush. False when out of memory. */
bool tse_pipe_append(tse_pipe *p, const char *cmd, size_t len);

/* Writes the whole send buffer. The buffer is kept for the next appends
 * (up to a few MB). False with why set on failure. */
bool tse_pipe_flush(tse_pipe *p, char *why, size_t len);

/* Writes what the socket takes now, without blocking (and without
 * SIGPIPE on a thread that does not block it): for a thread that must not
 * wait on Redis. Returns the bytes left unwritten, 0 when all went; what
 * is left (the socket was full, or failed) waits for tse_pipe_flush, which
 * writes it first and reports a failure. */
size_t tse_pipe_flush_some(tse_pipe *p);

/* Bytes appended and not yet written (0 for NULL). */
size_t tse_pipe_unsent(const tse_pipe *p);

/* The connection's socket, for poll(2) by the pipe's owner only: readable
 * when a reply came or Redis closed the connection. Never read or write
 * it directly. */
int tse_pipe_fd(const tse_pipe *p);

/* The owner says the pipe is idle: the send buffer, as large as the
 * largest pipeline written since, is freed (the next append allocates
 * one again). A no-op while appended commands wait for a flush, and for
 * NULL. */
void tse_pipe_idle(tse_pipe *p);

/* The send buffer's allocated size in bytes: 0 when none is held. */
size_t tse_pipe_buffer_size(const tse_pipe *p);

/*
 * The next reply: wait true blocks (bounded by the timeout) until one comes;
 * wait false takes one only if already read from the socket, else *reply is
 * NULL. True with *reply (caller frees with tse_reply_free) or NULL; false
 * with why set when the connection failed.
 */
bool tse_pipe_read(tse_pipe *p, bool wait, struct redisReply **reply, char *why, size_t len);

/* ---- replies ------------------------------------------------------------------- */

/* Frees a reply. NULL is a no-op. */
void tse_reply_free(struct redisReply *r);

/* Whether r is an error reply; *text (may be NULL) then points into r. */
bool tse_reply_error(const struct redisReply *r, const char **text, size_t *len);

/* Whether r is an error reply starting with prefix (NOSCRIPT, ...). */
bool tse_reply_error_is(const struct redisReply *r, const char *prefix);

/* Whether r is the integer n. */
bool tse_reply_is_integer(const struct redisReply *r, long long n);

/* Whether r is an integer of at least n (WAIT's count of replicas). */
bool tse_reply_integer_at_least(const struct redisReply *r, long long n);

/* The replicas a master's ROLE reply lists (those connected and online);
 * -1 when r is not a master's ROLE reply. */
int tse_reply_role_replicas(const struct redisReply *r);

/* Whether r is a bulk string of 40 bytes (a script's SHA): copied into sha,
 * NUL-terminated. */
bool tse_reply_sha(const struct redisReply *r, char sha[41]);

#endif
