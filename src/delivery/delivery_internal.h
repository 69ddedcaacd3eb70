/*
 * delivery_internal.h - private to the delivery engine (delivery.c,
 * delivery_subs.c, delivery_flow.c): its state, which belongs to the engine
 * thread alone, and the request queue, the only thing other threads touch
 * (under mu).
 */
#ifndef TSE_DELIVERY_DELIVERY_INTERNAL_H
#define TSE_DELIVERY_DELIVERY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/clock.h"
#include "delivery/delivery.h"
#include "domain/subscription.h"
#include "storage/backoff.h"
#include "storage/conn.h"
#include "storage/dlq_ops.h"
#include "storage/group_ops.h"
#include "storage/keys.h"
#include "storage/subs_ops.h"

/* dlq_reason of a dead letter that used up its delivery attempts. */
#define TSE_DLQ_REASON_MAX_ATTEMPTS "max_delivery_attempts"
/* dlq_reason of a dead letter a subscriber rejected (a nack with reject). */
#define TSE_DLQ_REASON_REJECTED     "rejected"

/* The reasons an event is dead-lettered, as counted per subscription
 * (tse_sub.dead_lettered); tse_dl_reason_names spells them as dlq_reason
 * and the stats' maps do. */
typedef enum tse_dl_reason {
    TSE_DL_MAX_ATTEMPTS = 0,
    TSE_DL_REJECTED,
    TSE_DL_REASONS
} tse_dl_reason;
extern const char *const tse_dl_reason_names[TSE_DL_REASONS];
/* The consumer that owns deliveries nacked by subscription name (Nack
 * without a live stream): a placeholder, not counted as a consumer. */
#define TSE_DL_NACK_OWNER "nacked"
#define TSE_DISCOVER_MS   1000
#define TSE_CLAIM_BATCH   100
/* The longest a live stream's ack waits for the group's next read to take
 * it to Redis in the read's round trip (a drain reads every millisecond or
 * so); far below the shortest ack deadline (TSE_MIN_ACK_DEADLINE_MS), and
 * the engine's own claim scan sends them first anyway. */
#define TSE_ACK_LINGER_MS 5

typedef struct tse_sub tse_sub;

/* ---- the request queue ----
 *
 * One shape per kind of request: each carries exactly what its kind needs
 * in the union member named for it, owns its copies (ids, names, spec) and
 * has one callback of the one type its kind answers with. A request is
 * answered exactly once (on the engine thread, or by destroy); one that
 * could not be queued is never answered (the tse_delivery_* call said so).
 */
typedef enum tse_req_kind {
    REQ_ATTACH,
    REQ_DETACH,
    REQ_ACK,
    REQ_NACK,
    REQ_EXTEND,
    REQ_CREATE,
    REQ_GET,
    REQ_DELETE,
    REQ_ACKNOWLEDGE,
    REQ_NACK_IDS,
    REQ_PULL,
    REQ_PULL_CANCEL,
    REQ_OPERATE
} tse_req_kind;

/* Ack ids copied from the caller; owned by the request. */
typedef struct tse_id_list {
    char **ids;
    size_t n;
} tse_id_list;

/* A live subscriber joins spec (created when absent) or, when spec is NULL,
 * the existing subscription `name`. */
typedef struct tse_req_attach {
    tse_subscriber *s;
    Tracseq__Events__V1__Subscription *spec; /* NULL: join `name` */
    char *name;                              /* NULL when spec is set */
} tse_req_attach;

/* The subscriber is gone; the engine releases it. */
typedef struct tse_req_detach {
    tse_subscriber *s;
} tse_req_detach;

/* A live subscriber acks deliveries. */
typedef struct tse_req_ack {
    tse_subscriber *s;
    tse_id_list ids;
} tse_req_ack;

/* A live subscriber nacks deliveries: claimable again after delay_ms, or
 * dead-lettered at once when reject. */
typedef struct tse_req_nack {
    tse_subscriber *s;
    tse_id_list ids;
    uint32_t delay_ms;
    bool reject;
} tse_req_nack;

/* A live subscriber pushes the deadline of deliveries to deadline_ms from now. */
typedef struct tse_req_extend {
    tse_subscriber *s;
    tse_id_list ids;
    uint32_t deadline_ms;
} tse_req_extend;

/* CreateSubscription. */
typedef struct tse_req_create {
    Tracseq__Events__V1__Subscription *spec;
    tse_subscription_cb cb;
    void *arg;
} tse_req_create;

/* GetSubscription (name), ListSubscriptions (name NULL). */
typedef struct tse_req_get {
    char *name;
    tse_subscription_cb cb;
    void *arg;
} tse_req_get;

/* DeleteSubscription. */
typedef struct tse_req_delete {
    char *name;
    tse_subscription_cb cb;
    void *arg;
} tse_req_delete;

/* Acknowledge by subscription name (no live stream). */
typedef struct tse_req_acknowledge {
    char *subscription;
    tse_id_list ids;
    tse_ack_cb cb;
    void *arg;
} tse_req_acknowledge;

/* Nack by subscription name (no live stream). */
typedef struct tse_req_nack_ids {
    char *subscription;
    tse_id_list ids;
    uint32_t delay_ms;
    bool reject;
    tse_ack_cb cb;
    void *arg;
} tse_req_nack_ids;

/* A long poll: up to max events, waiting up to wait_ms for the first. */
typedef struct tse_req_pull {
    char *subscription;
    char *consumer; /* "": the engine names it */
    uint32_t max;
    uint32_t wait_ms;
    uint64_t pull_id;
    tse_pull_cb cb;
    void *arg;
} tse_req_pull;

/* The caller of pull pull_id went away. */
typedef struct tse_req_pull_cancel {
    uint64_t pull_id;
} tse_req_pull_cancel;

/* Dead letters, seek, snapshots: a copy of the request (delivery_ops.c). */
typedef struct tse_req_operate {
    ProtobufCMessage *req;
    tse_operate_cb cb;
    void *arg;
} tse_req_operate;

typedef struct tse_req {
    struct tse_req *next;
    tse_req_kind kind;
    union {
        tse_req_attach attach;
        tse_req_detach detach;
        tse_req_ack ack;
        tse_req_nack nack;
        tse_req_extend extend;
        tse_req_create create;
        tse_req_get get;
        tse_req_delete del;
        tse_req_acknowledge acknowledge;
        tse_req_nack_ids nack_ids;
        tse_req_pull pull;
        tse_req_pull_cancel pull_cancel;
        tse_req_operate operate;
    } u;
} tse_req;

/* One stream's group of a subscription whose lag Redis cannot report: the
 * last figure delivery_subs.c computed for it and the point it stands for
 * (the group's last-delivered id, the stream's entries-added and
 * max-deleted-entry-id), so that reading the stats again reads no entry while
 * the stream only grew (or was trimmed behind the group). */
typedef struct tse_lag_memo {
    char last_id[48];     /* "" until a figure is known */
    char max_deleted[48]; /* the stream's max-deleted-entry-id then */
    long long entries_added;
    uint64_t lag;
    int64_t counted_ms; /* when the entries were last counted */
    long long read;     /* how many entries that count read */
} tse_lag_memo;

/* A delivery whose deadline was extended past what an idle time can say:
 * its idle time is reset until `until_ms` comes within one deadline. */
typedef struct tse_ext {
    struct tse_ext *next;
    char *key, *entry, *owner;
    int64_t until_ms;
} tse_ext;

/*
 * An entry read for a subscriber but not yet handed to it: one allocation
 * that starts with its ack id "<stream key>/<entry id>", the struct after
 * it, then the envelope bytes. Handed out, its ack id alone is copied
 * for the in-flight list, which keeps it until the ack, and the rest is
 * freed: two allocations per delivery, where there were four.
 */
typedef struct tse_ready {
    struct tse_ready *next;
    char *ack_id;          /* the allocation's start: tse_dl_ready_free frees it */
    const char *stream_id; /* the entry id, within ack_id */
    size_t ack_len;
    uint32_t attempt;
    const uint8_t *envelope; /* within the allocation */
    size_t envelope_len;
    int64_t published_us; /* the event's timestamp, wall clock; 0 unknown */
} tse_ready;

struct tse_subscriber {
    tse_subscriber *next; /* in its subscription's list */
    tse_sub *sub;         /* NULL until attached */
    const tse_subscriber_ops *ops;
    void *arg;
    char consumer[TSE_CONSUMER_NAME_MAX + 64];
    uint32_t credit; /* deliveries it may still receive unacked */
    /* Ack ids delivered and not acked, in delivery order: slots
     * [inflight_head, inflight_end) of which n_inflight are live, acked ones
     * NULL. Acks mostly come in delivery order, so the search from the head
     * usually stops at once. */
    char **inflight;
    size_t inflight_head, inflight_end, n_inflight, cap_inflight;
    tse_ready *ready, *ready_tail; /* read, not yet delivered */
    uint32_t n_ready;              /* entries in ready */
    bool hungry;
    /* Entries of its last read wait for the next pass, whose first fills
     * are such subscribers' (fill_stream in delivery_flow.c). */
    bool deferred;
    uint64_t fill_pass; /* the engine pass that last filled it (work) */
    bool counted;       /* in the subscribers gauge */
    /* Queued by tse_delivery_detach: allocated with the subscriber, so a
     * detach cannot fail (the engine must learn of every departure). */
    tse_req detach_req;
    bool detach_queued; /* under the queue's mu; read by destroy */

    /* Pull requests only. pull_cb is cleared by the one call that answers
     * (tse_dl_pull_answer); taken holds what the pull gathered so far. */
    bool is_pull;
    tse_pull_cb pull_cb;
    void *pull_arg;
    int64_t pull_deadline_ms;
    uint64_t pull_id;
    tse_ready *taken, *taken_tail;
    size_t n_taken;
};

struct tse_sub {
    tse_sub *next;
    Tracseq__Events__V1__Subscription *def; /* unpacked from Redis; owned */
    char group_start[48];                   /* group id for streams found later */
    char **streams;                         /* matching streams with a group */
    int *prio;
    tse_lag_memo *lag; /* per stream, as streams */
    size_t n_streams, cap_streams;
    tse_subscriber *subscribers;
    unsigned pull_turn; /* which stream of a level a pull reads first */
    int64_t next_claim_ms;
    bool drained;        /* a read this round found nothing */
    bool creating;       /* being created: LATEST groups start at "$" */
    struct tse_ext *ext; /* deadline extensions longer than ack_deadline_ms */
    /* Ack ids of live streams not yet sent to Redis (owned): they go with
     * the group's next read, in its round trip, or once the oldest has
     * waited TSE_ACK_LINGER_MS, and before anything else that touches the
     * group's pending entries (tse_dl_flush_acks). */
    char **owed;
    size_t n_owed, cap_owed;
    int64_t owed_since_ms; /* when the oldest owed ack came */
    /* This instance's counts since it loaded the subscription. */
    uint64_t delivered, acked, redelivered, nacked;
    uint64_t dead_lettered[TSE_DL_REASONS];
};

struct tse_delivery {
    tse_delivery_options opts;
    char instance[96];
    tse_stats *stats;
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    tse_req *head, *tail;   /* guarded by mu */
    bool stop;              /* guarded by mu */
    bool end_pulls;         /* guarded by mu: tse_delivery_end_pulls was called */
    atomic_bool notified;   /* a local publish happened */
    atomic_bool new_stream; /* a local publish registered a new stream */
    /* Some subscriber (stream or pull) is attached: only then is a local
     * publish worth waking the engine for. Written by the engine. */
    atomic_bool listening;
    atomic_uint next_consumer;

    /* Engine thread only. conn is NULL while there is no connection; a
     * connection lost inside an operation waits in `dropped` to be closed
     * between two steps (its operation may still be on the stack). */
    tse_conn *conn;
    tse_conn *dropped;
    bool lost;        /* the connection failed: drop subscriptions at the next step */
    bool pulls_ended; /* stopping: pulls are answered without waiting */
    char lost_why[256];
    int64_t backoff_ms, next_connect_ms, last_attempt_ms;
    tse_sub *subs;
    int64_t next_discover_ms, next_poll_ms, next_reap_ms;
    int64_t next_acks_ms;   /* owed acks fall due (INT64_MAX: none owed) */
    uint64_t pass;          /* work()\'s passes so far */
    long long streams_seen; /* SCARD of the stream set at the last discovery */
    int64_t lag_window_ms;  /* lag_read: entries read by lag counts since then */
    long long lag_read;
};

/* ---- delivery.c ---- */
void tse_dl_release(tse_delivery *d, tse_subscriber *s);

/* ---- delivery_subs.c ---- */
/* The cached or stored subscription of name, loading and preparing its
 * groups; NULL with err NOT_FOUND / UNAVAILABLE. */
tse_sub *tse_dl_load(tse_delivery *d, const char *name, tse_error *err);
/* tse_dl_load, but a cached subscription is first looked up in Redis: one
 * deleted through another instance is forgotten (its subscribers here
 * ended with NOT_FOUND) and answered NOT_FOUND, not until the next
 * discovery. One HGET more; for answers that report the subscription. */
tse_sub *tse_dl_load_current(tse_delivery *d, const char *name, tse_error *err);
tse_sub *tse_dl_create(tse_delivery *d, Tracseq__Events__V1__Subscription *spec, tse_error *err);
void tse_dl_delete(tse_delivery *d, const char *name, tse_error *err);
void tse_dl_discover(tse_delivery *d);
/* One SCARD: discovers at once when the stream set changed since the last
 * discovery (streams are never removed from it). */
void tse_dl_check_streams(tse_delivery *d);
/* Deletes consumers idle past reap_idle_ms that hold no pending entry. */
void tse_dl_reap(tse_delivery *d);
/* A copy of the definition with stats filled in; caller frees with
 * protobuf_c_message_free_unpacked. */
Tracseq__Events__V1__Subscription *tse_dl_describe(tse_delivery *d, tse_sub *sub);
void tse_dl_forget(tse_delivery *d, tse_sub *sub, const tse_error *why);

/* ---- delivery_flow.c ---- */
void tse_dl_fill(tse_delivery *d, tse_subscriber *s);
void tse_dl_claim_scan(tse_delivery *d, tse_sub *sub, tse_subscriber *target);

/* What an operation could not do because Redis did not answer (on a
 * cluster: a slot's master out of reach while the connection lives): how
 * many ids or streams, and the slot of the first. Such an id is never
 * reported unknown; the operation answers UNAVAILABLE (tse_dl_unreached_error). */
typedef struct tse_dl_unreached {
    size_t n;
    unsigned slot; /* of the first */
} tse_dl_unreached;

void tse_dl_unreached_add(tse_dl_unreached *u, const char *key);
/* err UNAVAILABLE naming what of `total` `what` could not be done, when u
 * holds any; else false and err untouched. */
bool tse_dl_unreached_error(const tse_dl_unreached *u, size_t total, const char *what,
                            tse_error *err);

/* ids not pending in sub go to *unknown; ids Redis did not answer for (no
 * master for their slot) go to *un (NULL: not wanted), never to *unknown. */
uint32_t tse_dl_ack_ids(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n, char ***unknown,
                        size_t *n_unknown, tse_dl_unreached *un);
uint32_t tse_dl_nack_ids(tse_delivery *d, tse_sub *sub, const char *consumer, char *const *ids,
                         size_t n, uint32_t delay_ms, bool extend, char ***unknown,
                         size_t *n_unknown, tse_dl_unreached *un);
/* Dead-letters the pending deliveries ids at once (reason rejected); ids
 * not pending in sub go to *unknown (as tse_dl_ack_ids). Ids a failure left
 * pending (Redis refused the dead letter) are counted in *n_stuck when
 * n_stuck is non-NULL, else listed as unknown. */
uint32_t tse_dl_reject_ids(tse_delivery *d, tse_sub *sub, char *const *ids, size_t n,
                           char ***unknown, size_t *n_unknown, size_t *n_stuck,
                           tse_dl_unreached *un);
void tse_dl_forget_inflight(tse_subscriber *s, const char *ack_id);
/* The acks of a live stream: sub takes the ids over (ids->n is 0 after),
 * to be sent with its next read or flush. False when out of memory
 * (nothing taken: ack them now). */
bool tse_dl_owe_acks(tse_sub *sub, tse_id_list *ids);
/* Sends sub's owed acks now (one XACK per stream, one round trip). */
void tse_dl_flush_acks(tse_delivery *d, tse_sub *sub);
/* tse_dl_flush_acks of every subscription. */
void tse_dl_flush_all_acks(tse_delivery *d);
/* tse_dl_flush_acks of the subscriptions whose oldest owed ack has waited
 * TSE_ACK_LINGER_MS at now (tse_clock_ms); returns the next moment one
 * falls due (INT64_MAX: none). */
int64_t tse_dl_flush_due_acks(tse_delivery *d, int64_t now);
/* Frees sub's owed acks without sending them (the subscription or the
 * connection is gone: they are delivered again after the deadline). */
void tse_dl_drop_acks(tse_sub *sub);
/* Logs, at warn, settlements of a live stream that a slot's master did not
 * answer (they stay pending and come again); nothing when un holds none. */
void tse_dl_note_unreached(const tse_sub *sub, const char *what, size_t total, uint32_t done,
                           const tse_dl_unreached *un);
/*
 * Answers a pull: with everything it took when err is NULL (or an OK error),
 * else with err and nothing. Exactly once per pull: the callback is cleared
 * before it runs, and a pull already answered is left alone (a bug: logged
 * at error). Does not unlink or free the pull.
 */
void tse_dl_pull_answer(tse_delivery *d, tse_subscriber *s, const tse_error *err);
void tse_dl_ready_free(tse_ready *r);
/* Keeps extended deliveries from expiring until their time. */
void tse_dl_extensions(tse_delivery *d, tse_sub *sub);
void tse_dl_ext_free(tse_ext *e);

/* ---- delivery_target.c ---- */
typedef enum tse_target_result {
    TSE_TARGET_NONE,      /* no target (or the event is of it): the default store */
    TSE_TARGET_PUBLISHED, /* published as an event of sub's dead_letter_type */
    TSE_TARGET_FAILED     /* not published (Redis, memory): leave it pending */
} tse_target_result;
/* Publishes the entry `id` of stream `key` (its fields: entry) as an event of sub's
 * dead_letter_type, saying it was given up on after `attempts` for `reason`. Does not ack it. */
tse_target_result tse_dl_target_publish(tse_delivery *d, tse_sub *sub, const char *key,
                                        const char *id, long long attempts, const char *reason,
                                        const tse_stream_entry *entry);

/* ---- delivery_ops.c ---- */
/* Does one operation request and answers cb (exactly once). */
void tse_dl_operate(tse_delivery *d, const ProtobufCMessage *req, tse_operate_cb cb, void *arg);

#endif
