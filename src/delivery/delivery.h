/*
 * delivery.h - durable subscriptions on Redis consumer groups: the engine
 * that creates and deletes subscriptions, reads events for live subscribers
 * within their flow-control credit (priority 1 first), handles acks, nacks
 * and deadline extensions, redelivers what stays unacked past the ack
 * deadline, and moves poison events to a dead-letter stream.
 *
 * Threading model. The engine runs one thread with its own blocking Redis
 * connection (an opaque tse_conn of storage/conn.h, on which it runs the
 * typed operations of storage/group_ops.h, dlq_ops.h and subs_ops.h; it
 * sees no hiredis type), never a publish lane: a read must not delay a
 * publish. Every
 * other thread talks to it through tse_delivery_* calls, which only queue a
 * request and wake the thread; results come back through callbacks called on
 * the engine thread. Callbacks must not block; they may call tse_delivery_*.
 * All engine state belongs to the engine thread, so it needs no locks beyond
 * the request queue's.
 *
 * Queuing can fail. A call that returns a tse_status queued its request only
 * when it returns TSE_OK; then its callback comes exactly once. Otherwise no
 * callback ever comes and err (optional) says why: TSE_NOMEM (the request's
 * copies could not be allocated) or TSE_UNAVAILABLE (the engine is stopping).
 * The void calls cannot fail.
 *
 * Redis layout (see docs/architecture.md; the storage operations spell it):
 *   TSE_SUBS_KEY                    hash: name -> packed Subscription (settings, created_at)
 *   group <name> on every event stream whose type matches
 *   TSE_DLQ_PREFIX<name>            stream: dead letters of a subscription
 *   TSE_SNAPSHOTS_PREFIX<name>      hash: snapshot name -> packed Snapshot
 * (key names: storage/keys.h)
 * Ack ids are "<stream key>/<entry id>".
 *
 * Delivery guarantees: every event of a subscription goes to one live
 * subscriber at a time; unacked events return after ack_deadline_ms to any
 * live subscriber with delivery_attempt incremented; after
 * max_delivery_attempts deliveries (0: unlimited) an unacked event moves to
 * the dead-letter stream and is acked in the group. Under backlog priority-1
 * streams are read before priority-2 and so on; within one (type, priority)
 * events come in publish order.
 */
#ifndef TSE_DELIVERY_DELIVERY_H
#define TSE_DELIVERY_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "obs/stats.h"
#include "storage/redis_url.h"
#include "tracseq/events/v1/service.pb-c.h"

/* The longest ack id the engine makes ("<stream key>/<entry id>", e.g.
 * "<prefix>events:{sample.created}:p3/1718700000000-0"); a longer one is
 * none of ours and is refused before it reaches Redis. */
#define TSE_ACK_ID_MAX 256

typedef struct tse_delivery tse_delivery;
typedef struct tse_subscriber tse_subscriber;

/* One event handed to a subscriber. Valid only during the callback. */
typedef struct tse_delivered {
    const char *ack_id;
    uint32_t attempt;        /* 1 on first delivery */
    const char *stream_id;   /* Redis entry id */
    const uint8_t *envelope; /* packed tracseq.events.v1.Event */
    size_t envelope_len;
} tse_delivered;

/* Callbacks of a subscriber, called on the engine thread. */
typedef struct tse_subscriber_ops {
    /* Attach finished: TSE_OK (deliveries follow), or the error that ended
     * the subscriber (NOT_FOUND, ALREADY_EXISTS, INVALID, UNAVAILABLE). After
     * an error no other callback comes but `released`. settings: the
     * subscription's (NULL on error), valid only during the call. */
    void (*attached)(void *arg, const tse_error *err,
                     const Tracseq__Events__V1__Subscription *settings);
    /* A batch of deliveries (n >= 1), in delivery order. */
    void (*deliver)(void *arg, const tse_delivered *d, size_t n);
    /* The subscriber must end: its subscription was deleted (NOT_FOUND) or
     * the engine is stopping (UNAVAILABLE). */
    void (*ended)(void *arg, const tse_error *err);
    /* The engine has forgotten the subscriber; comes only after
     * tse_delivery_detach (also after a failed attach or an end: every
     * attached handle must be detached once). arg may be freed now. Always
     * the last call. */
    void (*released)(void *arg);
} tse_subscriber_ops;

typedef struct tse_delivery_options {
    tse_redis_target target;
    int timeout_ms;       /* bound on every Redis reply */
    int poll_ms;          /* how often idle subscribers look for events published elsewhere */
    const char *instance; /* consumer-name prefix of this process, e.g. "host-pid" */
    int64_t reap_idle_ms; /* consumers idle this long with nothing pending are deleted (0: never) */
} tse_delivery_options;

/* Called once per request (create/get/list/delete/ack/nack/pull) on the engine thread. */
typedef void (*tse_subscription_cb)(void *arg, const tse_error *err,
                                    const Tracseq__Events__V1__Subscription *const *subs, size_t n);
typedef void (*tse_ack_cb)(void *arg, const tse_error *err, uint32_t done,
                           const char *const *unknown, size_t n_unknown);
typedef void (*tse_pull_cb)(void *arg, const tse_error *err, const tse_delivered *d, size_t n);

/* Starts the engine thread. Release with tse_delivery_destroy. */
tse_status tse_delivery_create(const tse_delivery_options *opts, tse_stats *stats,
                               tse_delivery **out, tse_error *err);

/* Ends every subscriber (ended with UNAVAILABLE, then released), answers
 * every queued request with UNAVAILABLE, joins the thread. NULL is a no-op. */
void tse_delivery_destroy(tse_delivery *d);

/* This process's name among the instances on one Redis (the options'
 * instance, the prefix of its consumer names): borrowed, fixed at create,
 * so any thread may read it for the life of d. */
const char *tse_delivery_instance(const tse_delivery *d);

/* Events were just appended to stream_key in this process: wake matching
 * idle subscribers now instead of at the next poll. Thread-safe, cheap. */
void tse_delivery_notify(tse_delivery *d, const char *stream_key);

/* This process just registered a stream new to Redis (the first event of a
 * type and priority): the engine looks for new streams at once, so a
 * subscriber or a pull waiting for a matching type gets it now, not at the
 * next discovery round. Thread-safe; rare (once per new stream). */
void tse_delivery_notify_new_stream(tse_delivery *d);

/*
 * Attaches a live subscriber: to the subscription spec (created when absent,
 * joined when present with the same settings) or, when spec is NULL, to the
 * existing subscription `name`. consumer: the consumer name (NULL or "":
 * generated). On TSE_OK *out is the handle at once and ops->attached reports
 * the outcome; on failure no callback comes and there is nothing to detach.
 * spec and name are copied.
 */
tse_status tse_delivery_attach(tse_delivery *d, const Tracseq__Events__V1__Subscription *spec,
                               const char *name, const char *consumer,
                               const tse_subscriber_ops *ops, void *arg, tse_subscriber **out,
                               tse_error *err);

/* The subscriber is gone (stream ended): its unacked deliveries stay pending
 * and are redelivered to others after the deadline. ops->released follows.
 * Cannot fail: its request was allocated with the subscriber. */
void tse_delivery_detach(tse_delivery *d, tse_subscriber *s);

/* Acks / nacks / extends deliveries of a live subscriber (from its stream).
 * No callback: on failure the ids were not acted on. Ids are copied. */
tse_status tse_delivery_ack(tse_delivery *d, tse_subscriber *s, char *const *ack_ids, size_t n,
                            tse_error *err);
/* tse_delivery_ack without the copies: takes ids (an array of n ids, the
 * array and each id from tse_malloc and friends) over, even on failure. */
tse_status tse_delivery_ack_take(tse_delivery *d, tse_subscriber *s, char **ack_ids, size_t n,
                                 tse_error *err);
/* reject: dead-letter the deliveries at once (reason rejected) instead of
 * redelivering them after delay_ms. */
tse_status tse_delivery_nack(tse_delivery *d, tse_subscriber *s, char *const *ack_ids, size_t n,
                             uint32_t delay_ms, bool reject, tse_error *err);
tse_status tse_delivery_extend(tse_delivery *d, tse_subscriber *s, char *const *ack_ids, size_t n,
                               uint32_t deadline_ms, tse_error *err);

/* ---- requests without a live stream (unary RPCs, the REST bridge) ----
 * Each copies what it is given; cb comes once if and only if TSE_OK. */

tse_status tse_delivery_create_subscription(tse_delivery *d,
                                            const Tracseq__Events__V1__Subscription *spec,
                                            tse_subscription_cb cb, void *arg, tse_error *err);
/* name == NULL: every subscription. Results carry stats. */
tse_status tse_delivery_get_subscriptions(tse_delivery *d, const char *name, tse_subscription_cb cb,
                                          void *arg, tse_error *err);
tse_status tse_delivery_delete_subscription(tse_delivery *d, const char *name,
                                            tse_subscription_cb cb, void *arg, tse_error *err);
tse_status tse_delivery_acknowledge(tse_delivery *d, const char *subscription, char *const *ack_ids,
                                    size_t n, tse_ack_cb cb, void *arg, tse_error *err);
tse_status tse_delivery_nack_ids(tse_delivery *d, const char *subscription, char *const *ack_ids,
                                 size_t n, uint32_t delay_ms, bool reject, tse_ack_cb cb, void *arg,
                                 tse_error *err);
/*
 * Dead letters, seek and snapshots (delivery_ops.c): req is one of the
 * requests of domain/operate.h (ListDeadLetters, GetDeadLetter,
 * RedriveDeadLetters, PurgeDeadLetters, Seek, CreateSnapshot,
 * ListSnapshots, DeleteSnapshot), already checked by tse_operate_check;
 * copied. cb gets the method's response message (valid only during the
 * call), or err: NOT_FOUND (the subscription, a dead letter, a snapshot),
 * ALREADY_EXISTS (a snapshot name), RESOURCE_EXHAUSTED, UNAVAILABLE.
 */
typedef void (*tse_operate_cb)(void *arg, const tse_error *err, const ProtobufCMessage *resp);
tse_status tse_delivery_operate(tse_delivery *d, const ProtobufCMessage *req, tse_operate_cb cb,
                                void *arg, tse_error *err);
/* Long-poll: up to max events, waiting up to wait_ms for the first.
 * pull_id: the caller's unique name for this pull, for tse_delivery_pull_cancel. */
tse_status tse_delivery_pull(tse_delivery *d, const char *subscription, const char *consumer,
                             uint32_t max, uint32_t wait_ms, uint64_t pull_id, tse_pull_cb cb,
                             void *arg, tse_error *err);
/* The caller of pull pull_id went away (cancel, deadline): if that pull is
 * still waiting, it ends now (its callback gets TSE_CANCELLED) and holds
 * nothing more; otherwise nothing happens. Thread-safe. On failure the pull
 * still ends, at its wait_ms. */
tse_status tse_delivery_pull_cancel(tse_delivery *d, uint64_t pull_id, tse_error *err);
/* The server is stopping: every waiting pull is answered now with what it
 * has (usually nothing), and pulls from now on wait for nothing, so no long
 * poll holds the shutdown for its wait_ms. Thread-safe; cannot fail. */
void tse_delivery_end_pulls(tse_delivery *d);

#endif
