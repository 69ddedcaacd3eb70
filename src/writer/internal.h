/*
 * internal.h - private to src/writer: the broker and lane structures shared by
 * broker.c (public API, health) and lane.c (the writer threads), and the
 * publish jobs of command.c. Nothing outside src/writer may include this
 * file; the contract is broker.h.
 *
 * Locking. Each lane has one mutex guarding its queue, `connected` and
 * `stop`; everything else in a lane (its connection, the in-flight list,
 * the known-key set) belongs to the lane thread alone, except while the
 * lane waits with its connection lent (`lent`, set and cleared under mu by
 * the lane thread): then it belongs to whoever holds mu, and a publishing
 * thread may write a job itself (tse_lane_write_lent). The broker's health
 * mutex guards the count of connected lanes and serializes health callbacks;
 * its error mutex guards last_error. No thread ever holds two of these
 * mutexes at once, and no callback runs under a lane mutex.
 */
#ifndef TSE_WRITER_INTERNAL_H
#define TSE_WRITER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "common/clock.h"
#include "storage/command_keys.h"
#include "storage/keys.h"
#include "storage/keyset.h"
#include "storage/pipe.h"
#include "storage/rconn.h"
#include "storage/resp.h"
#include "writer/broker.h"

/* Jobs written but not yet answered, per lane: the pipeline depth. */
#define TSE_LANE_MAX_INFLIGHT    1024
/* Bytes taken from the queue for one write; at least one job is always taken. */
#define TSE_LANE_MAX_BATCH_BYTES ((size_t)1024 * 1024)
/* Idle connections are PINGed this often so a dead Redis is noticed. */
#define TSE_LANE_PING_MS         1000
/* Each lane trims the streams it wrote to this often. */
#define TSE_LANE_TRIM_MS         1000
/* Most stream keys a lane remembers as registered (and trims); past it the
 * set starts over, costing one more SADD per stream then in use. */
#define TSE_LANE_MAX_KNOWN       4096

/* ---- generic commands (broker.c): what the typed operations of ops.c run ---- */

/*
 * Called exactly once per accepted command, on the lane thread: status TSE_OK
 * with Redis's reply (which may be an error reply: the caller interprets it),
 * or TSE_UNAVAILABLE with reply NULL and message saying why. The reply is
 * valid only during the call. Must not block; may submit more commands.
 */
typedef void (*tse_command_cb)(void *arg, tse_status status, const struct redisReply *reply,
                               const char *message);

/*
 * Queues any Redis command (argc binary-safe arguments; lens NULL means
 * NUL-terminated strings), pipelined with the lane's other jobs and in order
 * with them. Arguments are copied. Same admission results as
 * tse_broker_publish; at most 64 arguments. Thread-safe.
 */
tse_status tse_broker_command(tse_broker *b, int lane, int argc, const char *const *argv,
                              const size_t *lens, tse_command_cb cb, void *arg);

/* ---- publish jobs (command.c) ---------------------------------------------- */

/* One event of a group job (tse_job_create_group). */
typedef struct tse_job_event {
    tse_publish_cb cb;
    void *arg;
    const char *key; /* its stream key, inside the job's data */
    bool pre_sadd;   /* the lane wrote the SADD of key before the job */
    bool new_stream; /* that SADD added key */
} tse_job_event;

typedef struct tse_job {
    struct tse_job *next;
    tse_publish_cb cb;
    void *arg;
    tse_command_cb command_cb; /* non-NULL: a generic command (no stream key) */
    bool dedup;
    /* Internal replies that precede this job's own, in this order. */
    int pre_scripts;       /* SCRIPT LOADs written before it (both scripts) */
    int pre_sadds;         /* SADDs of the stream set written before it (a group job:
                              one per event whose pre_sadd is set, in event order) */
    tse_status pre_status; /* first failure among those replies */
    bool new_stream;       /* that SADD added the key (a stream new to Redis) */
    char *pre_message;     /* malloc'd detail of that failure */
    size_t key_len;
    const char *key; /* stream key, NUL-terminated, inside data */
    size_t cmd_len;
    const char *cmd; /* preformatted RESP, inside data */
    /* A group job (n_events > 0): one script call storing several events,
     * each completed through its own callback; cb and key are unused. */
    size_t n_events;
    tse_job_event *events; /* inside data */
    int64_t written_us;    /* when the lane wrote it (0: not measured) */
    /* The Redis Cluster slot of its keys (one slot per job: a group is one
     * event type), TSE_SLOT_ANY on a single Redis, where no lane needs it. */
    int slot;
    /* Replication check (lane_cluster_wait.c): the round's WAIT this job
     * waits for (-1: none), and its reply or failure held until then. */
    int wait_group;
    struct redisReply *held_reply;
    tse_status held_status;
    char *held_message; /* malloc'd */
    /* A group job's events come first in data: aligned for them, whatever
     * fields come before (test_broker_command checks it). */
    _Alignas(tse_job_event) char data[];
} tse_job;

typedef struct tse_job_list {
    tse_job *head;
    tse_job *tail;
    size_t count;
    size_t bytes; /* sum of cmd_len */
} tse_job_list;

/*
 * Formats msg as one job (XADD, or EVALSHA of the dedup script with sha when
 * msg->dedup). NULL when out of memory. msg must be valid
 * (tse_broker_publish checks). Trimming is not part of it (lanes XTRIM).
 */
tse_job *tse_job_create(const tse_broker_options *opts, const char *sha,
                        const tse_publish_msg *msg);
/*
 * One EVALSHA of tse_dedup_batch_script (sha) storing msgs[0..n) in order:
 * those with dedup set are checked and recorded as tse_dedup_script does,
 * the others appended unconditionally. Each completes through cb with
 * cb_args[i]. NULL when out of memory. Every msg must be valid, and all
 * of msgs[0]'s event type: the script gets the type once (and its keys
 * then share a slot).
 */
tse_job *tse_job_create_group(const tse_broker_options *opts, const char *sha,
                              const tse_publish_msg *msgs, size_t n, tse_publish_cb cb,
                              void *const *cb_args);
/*
 * The jobs of a batch into jobs[] (room for n), in its order: a group job
 * (batch_sha) per run of events of one event type that starts with a
 * client-set id and ends at the run's last one, a plain job (sha) per other
 * event; every script call then touches one slot. Returns how many; 0 when
 * out of memory (the caller frees the jobs[] made, which it zeroed).
 */
size_t tse_jobs_create_batch(const tse_broker_options *opts, const char *sha, const char *batch_sha,
                             const tse_publish_msg *msgs, size_t n, tse_publish_cb cb,
                             void *const *args, tse_job **jobs);
/* XTRIM of key by the retention options; NULL when out of memory. */
tse_job *tse_job_create_trim(const tse_broker_options *opts, const char *key, int64_t now_ms);
/* A generic command job of argc arguments; NULL when out of memory. */
tse_job *tse_job_create_command(int argc, const char *const *argv, const size_t *lens);
/* Completes job from its reply (NULL reply: unexpected) and frees it. */
void tse_job_finish(tse_job *job, const struct redisReply *reply);
/* Completes job with a failure and frees it. */
void tse_job_fail(tse_job *job, tse_status status, const char *message);
void tse_job_free(tse_job *job);

void tse_job_list_push(tse_job_list *l, tse_job *job);
tse_job *tse_job_list_pop(tse_job_list *l);
/* Completes every job of l with status and message, in order; l ends empty. */
void tse_job_list_fail(tse_job_list *l, tse_status status, const char *message);

/* ---- lanes and the broker (lane.c, broker.c) -------------------------------- */

/* Most masters a lane remembers as short of replicas (tse_lane.short_conn). */
#define TSE_LANE_MAX_SHORT 16

typedef struct tse_lane {
    tse_broker *broker;
    int index;
    pthread_t thread;
    bool started;

    pthread_mutex_t mu;
    /* The lane thread waits in poll(2) on this eventfd (and on its
     * connection while it is lent): tse_lane_wake_locked writes it. */
    int wake_fd;
    bool parked;             /* guarded by mu: the lane thread waits (wake_fd) */
    bool kicked;             /* guarded by mu: wake_fd was written for this wait */
    bool lent;               /* guarded by mu: see Locking above */
    tse_job_list queue;      /* guarded by mu */
    atomic_bool connected;   /* written under mu; read without it as a hint */
    bool stop;               /* guarded by mu */
    bool check_now;          /* guarded by mu: another lane failed, PING at once */
    bool probe;              /* guarded by mu: connect now, a request waits for it */
    int64_t last_attempt_ms; /* guarded by mu: the last connect attempt or loss */

    /* Lane thread only. A lane speaks to a single Redis over pipe,
     * streaming (lane.c), or to a Redis Cluster over rc, in rounds
     * (lane_cluster.c); the other is NULL. */
    tse_pipe *pipe;
    tse_rconn *rc;
    tse_job_list inflight;
    tse_keyset known;
    bool script_lost; /* NOSCRIPT seen: SCRIPT LOAD before the next EVALSHA */
    /* A job written by a caller (tse_lane_write_lent): when, and what went
     * wrong (out of memory appending it; no reply within the timeout). */
    int64_t lent_at_ms;
    bool lent_failed, lent_late;
    int64_t last_io_ms;
    int64_t next_trim_ms;
    /* Connections (tse_rconn_slot_conn) to masters whose last WAIT found
     * fewer replicas than asked for: not waited on again until their ROLE
     * lists enough (lane_cluster_wait.c); the oldest dropped when full. */
    uint64_t short_conn[TSE_LANE_MAX_SHORT];
    int n_short;
} tse_lane;

struct tse_broker {
    tse_broker_options opts;
    tse_broker_health_cb health_cb;
    void *health_arg;
    tse_lane *lanes;
    atomic_uint next_lane;

    pthread_mutex_t health_mu;
    int connected_lanes; /* guarded by health_mu */
    atomic_bool up;

    /* SHA1 of tse_dedup_script and tse_dedup_batch_script, as SCRIPT LOAD
     * returned them: written once. */
    pthread_mutex_t sha_mu;
    atomic_bool sha_known;
    char sha[41];
    char batch_sha[41];

    pthread_mutex_t error_mu;
    char last_error[256]; /* guarded by error_mu */
};

/* The lane thread's body (lane.c). */
void *tse_lane_main(void *arg);

/* An internal reply (SCRIPT LOAD, or SADD when sadd) that precedes job's
 * own: notes the stream registered or, for an error reply, the job's
 * pre_status and what the lane must do again (lane.c). */
void tse_lane_internal_reply(tse_lane *l, tse_job *job, const struct redisReply *r, bool sadd);
/* The same for an internal command that got no reply (status, message). */
void tse_lane_internal_failure(tse_lane *l, tse_job *job, tse_status status, const char *message,
                               bool sadd);
/* Appends "SADD <stream set> key" unless this connection registered key
 * already: 1 when written, 0 when not needed, -1 when it failed. */
typedef bool (*tse_lane_append_fn)(tse_lane *l, const tse_cmd *c);
int tse_lane_register_once(tse_lane *l, const char *key, tse_lane_append_fn append);
/* Consumes a SIGPIPE a write to a closed socket left pending (lane.c). */
void tse_lane_discard_sigpipe(void);

/* ---- a lane on a Redis Cluster (lane_cluster.c) ---------------------------- */

/* Opens l->rc (slot map, scripts on every master) and learns the scripts'
 * SHAs; false with why set on failure (l->rc NULL then). */
bool tse_lane_cluster_connect(tse_lane *l, char *why, size_t len);
/* PINGs a master; false with why set when none answers. */
bool tse_lane_cluster_ping(tse_lane *l, char *why, size_t len);
/* Writes batch (emptied) to the masters of its jobs' slots and completes
 * every job from its reply, in order. A job whose connection failed, or
 * whose slot had no reachable master for a short while (not the Redis
 * timeout), is failed UNAVAILABLE; the lane stays up (the map heals);
 * false, with why set, when nothing could be sent (the jobs failed) or no
 * node of the cluster answers. */
bool tse_lane_cluster_round(tse_lane *l, tse_job_list *batch, char *why, size_t len);

/* ---- its replication check (lane_cluster_wait.c) ----------------------------- */

/* Most masters one round WAITs on; a job for another master is answered
 * unconfirmed (a cluster of more masters than this, all in one round). */
#define TSE_LANE_MAX_WAITS 64

typedef struct tse_lane_wait {
    int count; /* groups this round */
    struct {
        int owner;     /* its master (tse_rconn_slot_owner) */
        int slot;      /* a slot of one of its jobs: routes the WAIT */
        int replicas;  /* n, capped at the master's replicas */
        uint64_t conn; /* its connection when the round began (0: none yet) */
        bool probe;    /* short of replicas last time: ROLE instead of WAIT */
        bool confirmed;
    } group[TSE_LANE_MAX_WAITS];
    tse_rconn_counters before;
} tse_lane_wait;

/* Whether the lane confirms writes by WAIT (min_replicas > 0). */
bool tse_lane_wait_on(const tse_lane *l);
/* Starts a round: no groups. */
void tse_lane_wait_begin(tse_lane *l, tse_lane_wait *w);
/* Assigns job (appended) its group; false when out of groups is not an
 * error: the job is then unconfirmable (-2). */
void tse_lane_wait_assign(tse_lane *l, tse_lane_wait *w, tse_job *job);
/* Appends one WAIT per group; false when out of memory. */
bool tse_lane_wait_append(tse_lane *l, tse_lane_wait *w);
/* Reads the WAIT replies (after every job's). */
void tse_lane_wait_take(tse_lane *l, tse_lane_wait *w, tse_job_list *batch, int64_t deadline_ms);
/* Completes a job whose reply or failure was held. */
void tse_lane_wait_complete(tse_lane *l, const tse_lane_wait *w, tse_job *job);

/* With l->mu held: wakes the lane thread if it waits (anything it waits
 * for may have changed: queue, stop, probe, check_now). */
void tse_lane_wake_locked(tse_lane *l);

/*
 * With l->mu held, l->lent set and nothing queued or in flight: writes job
 * to the lane's connection from the calling thread, without blocking
 * (send(2) with MSG_DONTWAIT), and puts it in flight; the lane thread
 * reads its reply and completes it as any other (never on the caller's
 * thread). Takes the job over (lane.c says why this is safe).
 */
void tse_lane_write_lent(tse_lane *l, tse_job *job);

/* With l->mu held, l not connected: whether a request may wait for a probe
 * (asking for one when due) rather than fail at once (lane.c). */
bool tse_lane_probe_locked(tse_lane *l);

/* A lane connected (up) or lost its connection; may fire the health callback. */
void tse_broker_lane_health(tse_broker *b, bool up);
/* Records why a connection failed, for tse_broker_last_error. */
void tse_broker_note_error(tse_broker *b, const char *message);
/* Stores the dedup scripts' SHAs the first time a lane loaded them. */
void tse_broker_set_sha(tse_broker *b, const char *sha, const char *batch_sha);

#endif
