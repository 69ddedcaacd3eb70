/*
 * broker.h - the event store on Redis Streams: appends published events,
 * pipelined, from dedicated threads that own their Redis connections.
 *
 * Threading model. A broker runs `lanes` writer threads, each with its own
 * blocking hiredis connection (hiredis contexts are not thread-safe). Callers
 * (gRPC completion-queue threads) never wait on Redis: tse_broker_publish
 * formats the command into the lane's queue and returns at once; the lane
 * thread writes everything queued as one pipeline, reads the replies in order
 * and calls each job's completion callback on the lane thread. A single
 * publish to a lane that is idle (nothing queued or in flight, a single
 * Redis) is written by the caller instead, with one non-blocking send under
 * the lane's lock while the lane waits (lane.c, tse_lane_write_lent): the
 * lane then wakes once, for the reply, not also for the write. Pipelining is
 * continuous: new jobs are written while earlier replies are outstanding, so
 * throughput approaches Redis's own pipelined figure. On a Redis Cluster
 * (target.cluster) a lane holds a storage rconn instead, a connection per
 * master, and writes each batch to the masters of its jobs' slots, taking
 * the replies in order before the next batch (lane_cluster.c).
 *
 * Ordering: jobs submitted to one lane reach Redis in submission order and
 * complete in that order. A caller that needs order (a PublishStream call)
 * keeps to one lane (tse_broker_pick_lane once, then that lane).
 *
 * Failure: every Redis command is bounded by the configured timeout. When a
 * connection fails, its outstanding jobs complete with TSE_UNAVAILABLE (the
 * event may or may not have been stored; a client-set id makes the retry
 * safe), and the lane reconnects by itself with exponential backoff. A job
 * submitted while it is down waits for a connect attempt made at once (a
 * probe, at most one per TSE_BROKER_PROBE_MS) or, between probes, fails at
 * once with TSE_UNAVAILABLE. Nothing is
 * reported stored that Redis did not acknowledge.
 *
 * Keys (named by storage/keys.h; see docs/architecture.md): the stream of
 * each (event type, priority), the set of every stream key (each stream
 * registered before the first append to it on a lane's connection), and per
 * event type and client-set event id a dedup key holding "<stream id>
 * <sec>.<nanos> <stream key>" (where and when it was stored), expiring after
 * the dedup window: the dedup scope is one event type.
 * Entry fields: id, type, event (the protobuf Event envelope).
 */
#ifndef TSE_WRITER_BROKER_H
#define TSE_WRITER_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "obs/histogram.h"
#include "storage/backoff.h"
#include "storage/ops.h"
#include "storage/redis_url.h"

typedef struct tse_broker tse_broker;

typedef struct tse_broker_options {
    tse_redis_target target;
    int lanes;      /* writer threads/connections, >= 1 */
    int timeout_ms; /* bound on connect and on every reply */
    int64_t dedup_window_ms;
    int64_t retention_ms;     /* > 0: XADD ... MINID ~ now-retention */
    int64_t retention_maxlen; /* > 0: XADD ... MAXLEN ~ n (instead) */
    size_t max_queue;         /* jobs queued per lane before TSE_RESOURCE_EXHAUSTED */
    /* A Redis Cluster only: a publish is answered OK once this many replicas
     * of its master have it (WAIT; capped at the master's replicas; 0: off).
     * Must be 0 on a single Redis. */
    int min_replicas;
    /* Borrowed, may be NULL: each job's Redis round trip (written to its
     * reply read) is observed here, from the lane threads. */
    tse_histogram *round_trip;
} tse_broker_options;

/* What to append. All pointers are borrowed for the duration of the call. */
typedef struct tse_publish_msg {
    const char *event_id;
    const char *event_type;
    int priority; /* 1..5 */
    const char *source_service;
    const char *correlation_id; /* NULL or "" when unset */
    int64_t timestamp_sec;      /* the envelope's publish time, recorded for */
    int32_t timestamp_nanos;    /* duplicates of a client-set id */
    const uint8_t *envelope;    /* packed tracseq.events.v1.Event */
    size_t envelope_len;
    bool dedup; /* client-set id: check and record the dedup key */
} tse_publish_msg;

/* Outcome of one publish, valid only during the callback. */
typedef struct tse_publish_result {
    /* TSE_OK; TSE_UNAVAILABLE: connection lost, timeout, broker stopped, or a
     * transient Redis error (OOM, LOADING, BUSY, READONLY, NOSCRIPT, ...), the
     * event may or may not be stored; TSE_INTERNAL: any other Redis error
     * (e.g. WRONGTYPE). A failed stream registration (SADD) fails the job too. */
    tse_status status;
    const char *stream_id;  /* "1718700000000-0" on TSE_OK */
    const char *stream_key; /* the stream appended to */
    /* Id seen within the window for this event type: nothing was stored;
     * stream_id, stream_key and published_* are the stored event's (which
     * may differ in priority from this one). */
    bool duplicate;
    int64_t published_sec; /* duplicate: the stored event's publish time */
    int32_t published_nanos;
    /* This publish's SADD registered its stream in the stream set: the
     * first event of its (type, priority) anywhere, as far as Redis knows
     * (for a refused duplicate too: the SADD precedes the append). */
    bool new_stream;
    const char *message; /* error detail when status != TSE_OK */
} tse_publish_result;

/*
 * Called exactly once per accepted job, on a lane thread, in submission order
 * per lane. Must not block; may call tse_broker_publish.
 */
typedef void (*tse_publish_cb)(void *arg, const tse_publish_result *result);

/* Health transitions: called on a lane thread when Redis becomes reachable
 * (up=true: every lane connected) or unreachable (up=false: a lane lost its
 * connection) for the broker as a whole. The broker starts down without a
 * report, so the first call is up=true. Calls are serialized (never two at
 * once, never two equal values in a row); must not block and must not call
 * tse_broker_destroy. A clean close at destroy is not reported. */
typedef void (*tse_broker_health_cb)(void *arg, bool up);

/*
 * Creates the broker and starts its lane threads; they connect in the
 * background (tse_broker_is_up tells when). Fails only on bad options
 * (TSE_INVALID: empty host, lanes outside 1..256, timeout_ms, dedup_window_ms
 * or max_queue not positive, negative retention) or resource exhaustion.
 * When both retention options are set, retention_maxlen wins. Release with
 * tse_broker_destroy.
 */
tse_status tse_broker_create(const tse_broker_options *opts, tse_broker_health_cb health_cb,
                             void *health_arg, tse_broker **out, tse_error *err);

/*
 * Stops the lanes: jobs already written complete normally (or with
 * TSE_UNAVAILABLE after the timeout), queued ones are written first. Joins
 * the threads and frees everything. NULL is a no-op. Callbacks run (on the
 * lane threads) until it returns; a publish from one of them gets
 * TSE_UNAVAILABLE. No other thread may publish once destroy has begun.
 */
void tse_broker_destroy(tse_broker *b);

/* A lane for a new caller, round-robin. Thread-safe. */
int tse_broker_pick_lane(tse_broker *b);

/*
 * Queues msg on the lane. On TSE_OK, cb will be called exactly once. While
 * the lane is not connected the job is accepted only to ride on a probe (see
 * TSE_BROKER_PROBE_MS): it is written if that connect attempt succeeds and
 * fails with TSE_UNAVAILABLE otherwise. On failure (TSE_UNAVAILABLE: the
 * lane is not connected and probed less than TSE_BROKER_PROBE_MS ago, or
 * the broker is stopping; TSE_RESOURCE_EXHAUSTED: max_queue jobs already queued on the
 * lane; TSE_INVALID: a caller bug such as lane out of range, NULL cb,
 * priority outside 1..5, empty id/type/source; TSE_NOMEM) cb is never called.
 * Thread-safe; never blocks on Redis. msg and what it points to are copied.
 */
tse_status tse_broker_publish(tse_broker *b, int lane, const tse_publish_msg *msg,
                              tse_publish_cb cb, void *arg);

/*
 * Queues the n messages of one batch on the lane, together and in order
 * (one pipeline write, as far as the lane's byte budget allows): each
 * without a client id is an XADD; those with one, and any without one
 * between them, are one call of a script that stores them in order with
 * tse_dedup_script's semantics, a repeated id within the batch answered as
 * a duplicate of the earlier one: one script call per batch, not one per
 * event. cb is called exactly once per message, with args[i], in order, on
 * the lane thread; a failure of the script call as a whole fails each of
 * its events alike. Admission (and its failures) as tse_broker_publish,
 * for all the messages or none: on failure no cb is called. n == 0 is OK
 * and calls nothing. Thread-safe; msgs and what they point to are copied.
 */
tse_status tse_broker_publish_batch(tse_broker *b, int lane, const tse_publish_msg *msgs, size_t n,
                                    tse_publish_cb cb, void *const *args);

/*
 * Typed storage operations (storage/ops.h), queued like publishes: pipelined
 * with the lane's other jobs, in order with them, same admission results as
 * tse_broker_publish. The callback comes exactly once per accepted
 * operation, on the lane thread, and must not block.
 */

/* GetStats' stream lengths: status TSE_OK with lengths (valid during the
 * call only); TSE_UNAVAILABLE (Redis unreachable, timeout), TSE_INTERNAL (an
 * error reply) or TSE_NOMEM with lengths NULL. */
typedef void (*tse_stream_lengths_cb)(void *arg, tse_status status,
                                      const tse_stream_lengths *lengths);
tse_status tse_broker_stream_lengths(tse_broker *b, int lane, tse_stream_lengths_cb cb, void *arg);

/* "host:port" (plus "/db" when not 0) of the broker's Redis into buf, never
 * the credentials: for logs. */
void tse_broker_address(const tse_broker *b, char *buf, size_t len);

/* True while every lane is connected and answered its last command. */
bool tse_broker_is_up(const tse_broker *b);

/*
 * The most recent connection failure (connect, AUTH, SELECT, SCRIPT LOAD,
 * read or write error, timeout) as one sentence into buf, "" if none yet;
 * for logs and readiness reports. Thread-safe.
 */
void tse_broker_last_error(tse_broker *b, char *buf, size_t len);

/* The stream key of (event type, priority) into buf (tse_key_stream). */
void tse_broker_stream_key(const char *event_type, int priority, char *buf, size_t len);

#endif
