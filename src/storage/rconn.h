/*
 * rconn.h - one connection to Redis for one thread, whether Redis is a
 * single server (redis://) or a Redis Cluster (redis+cluster://), behind
 * one API (rconn.c): commands and pipelines go in, replies come out in the
 * order the commands went in.
 *
 * In a cluster each command goes to the master serving the slot of its
 * keys (command_keys.h finds them, or the caller names the slot), over one
 * connection per master, opened when first needed with redis_connect.c's
 * handshake (AUTH). A pipeline is split per master and its replies put
 * back in order. Redirections are followed: MOVED refreshes the slot map
 * (CLUSTER SHARDS, else CLUSTER SLOTS, from any node or seed that answers)
 * and retries on the new owner; ASK sends ASKING then the command to the
 * named node, map unchanged; TRYAGAIN, CLUSTERDOWN and LOADING (also on a
 * single Redis) are retried, and when the deadline passes that error reply
 * is the answer (tse_redis_error_status: UNAVAILABLE). A node
 * that cannot be reached is dropped and the map refreshed, and the command
 * retried until the caller's deadline; then it fails TSE_UNAVAILABLE,
 * saying which slot no reachable master served. A command whose keys span
 * slots is refused (TSE_INVALID) and never sent.
 *
 * At most once: a command handed to a connection that then fails (no
 * reply, connection lost) is not sent again, since it may have run; it
 * fails TSE_UNAVAILABLE saying so. Before sending, a connection the server
 * closed while idle (a restart, a killed master) is noticed and replaced,
 * so an idle connection costs no failed command.
 *
 * Single Redis: the same, on one connection to the target, without slots or
 * redirections (a multi-key command is not checked: one server runs it).
 *
 * Blocking, and not thread-safe: a connection belongs to the thread that
 * created it (a writer lane, the delivery engine), never a completion-
 * queue thread. A round of I/O may overrun the deadline by the connection
 * timeout (a node that stops answering mid-reply).
 */
#ifndef TSE_STORAGE_RCONN_H
#define TSE_STORAGE_RCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "storage/command_keys.h"
#include "storage/redis_url.h"

struct redisReply;

typedef struct tse_rconn tse_rconn;

/* The slot argument: find it from the command's keys (command_keys.h). A
 * slot 0..16383 routes there as given; TSE_SLOT_ANY sends to any master. */
#define TSE_RCONN_SLOT_OF_KEYS (-2)

/* What the connection did, for tests and metrics. */
typedef struct tse_rconn_counters {
    uint64_t moved;      /* MOVED redirections followed */
    uint64_t ask;        /* ASK redirections followed */
    uint64_t refreshes;  /* slot maps fetched */
    uint64_t connects;   /* node connections opened */
    uint64_t node_drops; /* node connections dropped after a failure */
    uint64_t rounds;     /* pipeline rounds that sent commands (a pipeline whose
                            commands all got a final answer at once: one) */
} tse_rconn_counters;

/*
 * A connection to t (copied), connecting lazily: the first command (or
 * tse_rconn_connect) connects. timeout_ms bounds each connect and each
 * reply. TSE_NOMEM only. Caller destroys with tse_rconn_destroy.
 */
tse_status tse_rconn_create(const tse_redis_target *t, int timeout_ms, tse_rconn **out,
                            tse_error *err);

/* Closes every connection and frees c, with any reply not yet taken. NULL
 * is a no-op. */
void tse_rconn_destroy(tse_rconn *c);

/* Whether c speaks to a cluster (the target was redis+cluster://). */
bool tse_rconn_is_cluster(const tse_rconn *c);

/*
 * Whether a node connection that was lost (or found closed by the server)
 * may be opened again: true from tse_rconn_create. An owner that reconnects
 * by itself, with its own backoff, and must learn of every loss (storage's
 * tse_conn on a single Redis) says false: then a lost node fails every
 * later command UNAVAILABLE without I/O, and an idle connection is not
 * checked before use (its next command fails, as on a plain socket).
 */
void tse_rconn_set_reopen(tse_rconn *c, bool reopen);

/*
 * How long past a tse_rconn_get_reply deadline the commands of a slot in
 * migration are still retried: those whose node answered, in the last
 * round, MOVED, ASK or TRYAGAIN (the slot is served; the command runs once
 * it moved far enough). A command without an answering node (unreachable,
 * CLUSTERDOWN, no master in the map) still fails at the deadline. 0 (from
 * tse_rconn_create): none. A cluster writer gives a slot a short deadline
 * so that a dead master's commands fail fast, and this so that a migrating
 * slot's do not.
 */
void tse_rconn_set_moving_ms(tse_rconn *c, int ms);

/*
 * Connects now, retrying until deadline_ms (tse_clock_ms time): a single
 * Redis is connected; a cluster's slot map is fetched. TSE_UNAVAILABLE with
 * err saying why otherwise.
 */
tse_status tse_rconn_connect(tse_rconn *c, int64_t deadline_ms, tse_error *err);

/*
 * A Lua script (copied) that every node connection loads (SCRIPT LOAD) as
 * it connects, so EVALSHA finds it on whichever master a slot moves to.
 * Connections already open load it now; one that fails to is dropped.
 * TSE_NOMEM only.
 */
tse_status tse_rconn_add_script(tse_rconn *c, const char *body, tse_error *err);

/*
 * Appends a command to the pipeline: argv[0..argc) (lens NULL: NUL-
 * terminated strings), copied. slot: TSE_RCONN_SLOT_OF_KEYS, TSE_SLOT_ANY
 * or 0..16383 (see above). TSE_INVALID (field "command") for a command
 * whose slot cannot be found or whose keys span slots, or a bad slot;
 * TSE_FAILED_PRECONDITION while replies of a pipeline that ran are still to
 * be taken; TSE_NOMEM. Nothing is appended on failure.
 */
tse_status tse_rconn_append(tse_rconn *c, int argc, const char *const *argv, const size_t *lens,
                            int slot, tse_error *err);

/*
 * Appends a command already in RESP (cmd, len bytes: one complete command,
 * as tse_resp_write makes it), copied, to go to slot (TSE_SLOT_ANY or
 * 0..16383: its keys are not looked for; a wrong one costs a MOVED, which
 * names the keys' slot, followed like any). For callers that format their
 * commands once, off the connection's thread (the writer's jobs). Results
 * as tse_rconn_append; TSE_INVALID (field "command") for len 0.
 */
tse_status tse_rconn_append_resp(tse_rconn *c, const char *cmd, size_t len, int slot,
                                 tse_error *err);

/*
 * tse_rconn_append_resp without the copy: borrows cmd, which must stay
 * valid and unchanged until the pipeline ran (the first
 * tse_rconn_get_reply after this append returned: every command is sent,
 * and sent again after a redirection, within that call) or
 * tse_rconn_discard or tse_rconn_destroy, whichever comes first. For
 * callers whose commands outlive their replies (the writer's jobs).
 */
tse_status tse_rconn_append_resp_borrowed(tse_rconn *c, const char *cmd, size_t len, int slot,
                                          tse_error *err);

/*
 * The reply to the oldest appended command whose reply is not taken yet.
 * The first call after appends sends them all (per node) and reads every
 * reply, following redirections and retrying as the header says until
 * deadline_ms (tse_clock_ms time). TSE_OK: *reply is Redis's answer, which
 * may be an error reply (WRONGTYPE, NOSCRIPT, a TRYAGAIN or LOADING that
 * lasted past the deadline, ...; never a redirection);
 * caller frees with freeReplyObject. Otherwise *reply is NULL and err says
 * why: TSE_UNAVAILABLE (unreachable, no master for the slot, connection
 * lost: the command may have run), TSE_NOMEM, TSE_FAILED_PRECONDITION
 * (nothing appended).
 */
tse_status tse_rconn_get_reply(tse_rconn *c, int64_t deadline_ms, struct redisReply **reply,
                               tse_error *err);

/*
 * Sends the appended commands now (the first round: each node its share),
 * without reading a reply: Redis works on them while the caller does
 * something else, and the next tse_rconn_get_reply reads the replies (and
 * follows redirections, as ever). Until then nothing may be appended
 * (TSE_FAILED_PRECONDITION; tse_rconn_discard reads the replies first). A
 * failure to send shows in the replies. No-op when nothing is appended or
 * the pipeline ran or was sent.
 */
void tse_rconn_send(tse_rconn *c);

/*
 * The command appended last answers raw: an array reply comes as one
 * REDIS_REPLY_STRING holding the reply's RESP bytes (str, len), for the
 * caller to read with resp.h's cursor, instead of hiredis's tree of one
 * allocation per element; any other reply (an error, nil) comes as usual.
 * For replies of thousands of elements (XREADGROUP). No-op when nothing
 * is appended.
 */
void tse_rconn_raw_reply(tse_rconn *c);

/* The number of appended commands whose replies are not taken yet. */
size_t tse_rconn_pending(const tse_rconn *c);

/* Forgets the pipeline: commands not sent are dropped, replies not taken
 * freed. */
void tse_rconn_discard(tse_rconn *c);

/* The owner says the connection is idle: the send buffer kept between
 * rounds (as large as the largest round since, up to a few MB) is freed;
 * the next round allocates one again. NULL is a no-op. */
void tse_rconn_idle(tse_rconn *c);

/*
 * One command: tse_rconn_append then tse_rconn_get_reply, with the same
 * arguments and results. TSE_FAILED_PRECONDITION while a pipeline is
 * pending.
 */
tse_status tse_rconn_command(tse_rconn *c, int argc, const char *const *argv, const size_t *lens,
                             int slot, int64_t deadline_ms, struct redisReply **reply,
                             tse_error *err);

/* What c did so far. */
tse_rconn_counters tse_rconn_get_counters(const tse_rconn *c);

/*
 * The master serving slot in c's current map: host into host (len bytes),
 * *port. False when c has no map or no master for the slot (a single
 * Redis: the target).
 */
bool tse_rconn_slot_master(const tse_rconn *c, unsigned slot, char *host, size_t len, int *port);

/*
 * The master serving slot in c's current map, as a number that is the same
 * for every slot it serves (its index in the map) and its replicas count
 * into *replicas (NULL: not wanted; as tse_rconn_slot_replicas); -1 when c
 * has no map or no master for the slot, or is a single Redis. Numbers are
 * comparable only while the map is unchanged: between calls with no
 * tse_rconn_get_reply, tse_rconn_command or tse_rconn_connect in between
 * (each may refresh the map; appends do not). Costs no string copy, for
 * grouping many commands by master (the writer's replication check).
 */
int tse_rconn_slot_owner(const tse_rconn *c, unsigned slot, int *replicas);

/*
 * How many replicas the master serving slot has in c's current map (the
 * nodes CLUSTER SHARDS or CLUSTER SLOTS listed with it, whatever their
 * health); -1 when c has no map or no master for the slot, or is a single
 * Redis (unknown).
 */
int tse_rconn_slot_replicas(const tse_rconn *c, unsigned slot);

/*
 * One slot of each master serving a slot in c's current map (the lowest),
 * into slots (at most max, and at most 64); returns how many. 0 on a single Redis or
 * without a map.
 */
int tse_rconn_master_slots(const tse_rconn *c, int *slots, int max);

/*
 * The open connection to the master serving slot in c's current map, as a
 * number unique to that connection (the count of connects when it was
 * opened: a connection opened after a snapshot of the counters has a
 * larger one); 0 when none is open, no master is known, or c is a single
 * Redis.
 */
uint64_t tse_rconn_slot_conn(tse_rconn *c, unsigned slot);

#endif
