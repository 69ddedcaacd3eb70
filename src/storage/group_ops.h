/*
 * group_ops.h - typed operations on the consumer groups of the event
 * streams (group_ops.c), one group per subscription, named as it: reading
 * new entries (one call for any number of streams), the pending entries
 * list, claims, acks, idle times, the group's figures and its position.
 * Each operation sends its commands on a tse_conn and decodes the replies
 * into plain C values; the _parse functions are that decoding alone (no
 * I/O, no state), for tests.
 *
 * Status: TSE_OK; TSE_UNAVAILABLE when the connection is (or got) lost;
 * TSE_INTERNAL for an error reply or a reply of another shape; TSE_NOMEM;
 * TSE_NOT_FOUND where a prototype says so. Decoded values own their memory
 * (release with the _cleanup named), also after a failure; it comes from
 * the C library's allocator, as hiredis's replies do (not tse_malloc:
 * test_broker_delivery fails the engine's own bookkeeping on its thread and
 * needs the reads beneath it to succeed). Keys come from
 * keys.h's builders; everything passed in is borrowed.
 */
#ifndef TSE_STORAGE_GROUP_OPS_H
#define TSE_STORAGE_GROUP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "storage/conn.h"

struct redisReply;

/* ---- entries read or claimed --------------------------------------------- */

/* The longest entry id an entry keeps, with its NUL: Redis's are at most
 * 41 characters ("<ms>-<seq>", two 64-bit numbers); an entry whose id is
 * longer is skipped as one of another shape. */
#define TSE_GROUP_ID_MAX 48

/* One entry handed to a consumer: its id, its envelope (the "event" field)
 * and the attempt this delivery is. The envelope is borrowed from the
 * reply the entries hold (a read's RESP bytes, a claim's reply): valid
 * until tse_group_entries_cleanup, so a caller copies what it keeps,
 * once, where it wants it. */
typedef struct tse_group_entry {
    size_t stream; /* index of its stream among the keys asked */
    char id[TSE_GROUP_ID_MAX];
    const uint8_t *envelope;
    size_t envelope_len;
    uint32_t attempt; /* 1 for a read; a claim: deliveries so far + 1 */
} tse_group_entry;

typedef struct tse_group_entries {
    tse_group_entry *v;
    size_t n, cap;
    struct redisReply **held; /* the replies the envelopes point into */
    size_t n_held, cap_held;
} tse_group_entries;

/* Frees the entries and the replies they hold; NULL is a no-op. */
void tse_group_entries_cleanup(tse_group_entries *e);

/*
 * XREADGROUP GROUP <group> <consumer> COUNT <count> STREAMS <keys> > ...:
 * new entries of k streams, in one call, appended to out (which the caller
 * initialises to zeros). per_stream (room for k, or NULL) receives how many
 * entries each stream gave, entries without an envelope (deleted, foreign)
 * counted though not returned. On a Redis Cluster, where one command may
 * not cross slots, the read is one XREADGROUP per slot of the keys,
 * pipelined, and the answers merged: each stream's entries in order,
 * streams slot by slot (slot_groups.h). An error reply (TSE_INTERNAL) for
 * one slot, or no reply while the connection lives (TSE_UNAVAILABLE: its
 * master out of reach, conn.h), leaves the entries of the others in out.
 */
tse_status tse_group_read(tse_conn *c, const char *group, const char *consumer,
                          const char *const *keys, size_t k, uint32_t count, tse_group_entries *out,
                          size_t *per_stream);

/* Acks sent ahead of a read, in its round trip (tse_group_ack_read): the
 * ids as tse_group_ack_runs takes them (keys[i] NULL: skipped), and what
 * came of them. */
typedef struct tse_group_acks {
    const char *const *keys;
    const char *const *ids;
    size_t n;
    uint32_t acked; /* out: how many Redis acked */
    tse_status st;  /* out: as tse_group_ack_runs answers */
} tse_group_acks;

/*
 * tse_group_read with acks of the same group (acks NULL: none) sent ahead
 * of it in one pipeline: one XACK per run of ids of one stream, then the
 * read, all in one round trip; Redis applies the acks first. The status is
 * the read's; the acks' is acks->st.
 */
tse_status tse_group_ack_read(tse_conn *c, const char *group, tse_group_acks *acks,
                              const char *consumer, const char *const *keys, size_t k,
                              uint32_t count, tse_group_entries *out, size_t *per_stream);

/*
 * tse_group_ack_read in two halves, so that Redis works on the read while
 * the caller does something else (the engine hands out the last read's
 * entries): _send appends the acks and the read and sends them
 * (TSE_NOMEM only: nothing sent, *out NULL); _take reads the replies into
 * out, per_stream and acks, and frees op. In between nothing else may use
 * c; acks and keys stay the caller's, valid until _take returns.
 */
typedef struct tse_group_sent_read tse_group_sent_read;
tse_status tse_group_read_send(tse_conn *c, const char *group, tse_group_acks *acks,
                               const char *consumer, const char *const *keys, size_t k,
                               uint32_t count, tse_group_sent_read **out);
tse_status tse_group_read_take(tse_group_sent_read *op, tse_group_entries *out, size_t *per_stream);
/* The decoding of one XREADGROUP reply from its RESP bytes (len at resp;
 * the read takes them raw, without hiredis's reply tree): TSE_INTERNAL for
 * an error reply or bytes of another shape (entries and streams of another
 * shape are skipped), TSE_NOMEM. The envelopes point into resp, which the
 * caller keeps while it uses them. */
tse_status tse_group_read_parse(const char *resp, size_t len, const char *const *keys, size_t k,
                                tse_group_entries *out, size_t *per_stream);

/*
 * XCLAIM <key> <group> <consumer> <min_idle_ms> <ids>: entries of one
 * stream (stream index 0) claimed for consumer, appended to out. delivered[i]
 * is ids[i]'s count of deliveries so far: its entry's attempt is one more.
 * An id gone from the stream is claimed by Redis but not returned.
 */
tse_status tse_group_claim(tse_conn *c, const char *key, const char *group, const char *consumer,
                           uint32_t min_idle_ms, const char *const *ids, const long long *delivered,
                           size_t n, tse_group_entries *out);
/* The decoding of an XCLAIM reply; the envelopes point into r, which the
 * caller keeps while it uses them. */
tse_status tse_group_claim_parse(const struct redisReply *r, const char *const *ids,
                                 const long long *delivered, size_t n, tse_group_entries *out);

/* ---- the pending entries list -------------------------------------------- */

typedef struct tse_pending_entry {
    char id[48];
    long long idle_ms;
    long long delivered;
} tse_pending_entry;

typedef struct tse_pending_list {
    tse_pending_entry *v;
    size_t n;
} tse_pending_list;

void tse_pending_list_cleanup(tse_pending_list *p);

/* XPENDING <key> <group> IDLE <min_idle_ms> - + <count>: up to count
 * pending entries idle at least that long, oldest first, into out (emptied
 * first). Entries of another shape are skipped. */
tse_status tse_group_pending(tse_conn *c, const char *key, const char *group, uint32_t min_idle_ms,
                             uint32_t count, tse_pending_list *out);
tse_status tse_group_pending_parse(const struct redisReply *r, tse_pending_list *out);

/* The deliveries so far of one pending entry into *delivered: 0 when it is
 * not pending. */
tse_status tse_group_pending_count(tse_conn *c, const char *key, const char *group, const char *id,
                                   long long *delivered);

/* The entry-id time (ms) of the group's oldest pending entry (XPENDING's
 * summary form) into *ms: -1 when none. */
tse_status tse_group_oldest_pending(tse_conn *c, const char *key, const char *group, long long *ms);
tse_status tse_group_oldest_pending_parse(const struct redisReply *r, long long *ms);

/* ---- acks, idle times, claims without entries ---------------------------- */

/*
 * Acks n entries, keys[i]/ids[i] (keys[i] NULL: skipped), as one XACK per
 * run of ids of one stream, pipelined: one round trip. *acked: how many
 * Redis acked. TSE_UNAVAILABLE when a reply was missing (the ack may have
 * run); on a cluster the other slots' replies are still counted.
 */
tse_status tse_group_ack_runs(tse_conn *c, const char *group, const char *const *keys,
                              const char *const *ids, size_t n, uint32_t *acked);

/* One XACK per id, pipelined: acked[i] says whether ids[i] was pending and
 * is acked now (keys[i] NULL: skipped, false). unreached (NULL: not wanted)
 * [i] says that ids[i] got no answer (its slot's master out of reach, or
 * the connection lost: TSE_UNAVAILABLE): whether it is pending is unknown,
 * the ack may have run. */
tse_status tse_group_ack_each(tse_conn *c, const char *group, const char *const *keys,
                              const char *const *ids, size_t n, bool *acked, bool *unreached);

/* XCLAIM ... JUSTID: sets a pending entry's owner and idle time without
 * counting a delivery; *pending: whether it is still pending. */
tse_status tse_group_set_idle(tse_conn *c, const char *key, const char *group, const char *owner,
                              const char *id, uint32_t idle_ms, bool *pending);

/* Hands entry id back to the group (XCLAIM ... IDLE idle_ms RETRYCOUNT 0
 * FORCE JUSTID), as if delivered once and idle past its deadline: *claimed
 * false when the entry is gone from the stream. */
tse_status tse_group_redrive(tse_conn *c, const char *key, const char *group, const char *consumer,
                             const char *id, uint32_t idle_ms, bool *claimed);

/* ---- the group itself ---------------------------------------------------- */

/* XGROUP CREATE <key> <group> <start> MKSTREAM; an existing group is fine. */
tse_status tse_group_create(tse_conn *c, const char *key, const char *group, const char *start);
tse_status tse_group_destroy(tse_conn *c, const char *key, const char *group);
tse_status tse_group_delete_consumer(tse_conn *c, const char *key, const char *group,
                                     const char *consumer);

/* One consumer of a group (XINFO CONSUMERS). */
typedef struct tse_consumer_info {
    char *name; /* owned */
    long long pending;
    long long idle_ms;
} tse_consumer_info;

typedef struct tse_consumer_list {
    tse_consumer_info *v;
    size_t n;
} tse_consumer_list;

void tse_consumer_list_cleanup(tse_consumer_list *l);
/* The consumers of group on key into out (emptied first); a consumer
 * without a name is skipped, a missing figure is -1. */
tse_status tse_group_consumers(tse_conn *c, const char *key, const char *group,
                               tse_consumer_list *out);
tse_status tse_group_consumers_parse(const struct redisReply *r, tse_consumer_list *out);

/* One group's figures (XINFO GROUPS of its stream). */
typedef struct tse_group_info {
    bool found; /* the stream has the group */
    uint64_t pending, consumers;
    bool lag_known; /* Redis said the lag */
    uint64_t lag;
} tse_group_info;

tse_status tse_group_info_get(tse_conn *c, const char *key, const char *group, tse_group_info *out);
tse_status tse_group_info_parse(const struct redisReply *r, const char *group, tse_group_info *out);

/* What the lag count starts from: the figure kept from an earlier answer
 * (last_id "" when none). */
typedef struct tse_lag_query {
    const char *last_id, *max_deleted;
    long long entries_added;
    uint64_t lag;
    uint32_t max_read; /* entries the count may read; 0: estimate only */
} tse_lag_query;

/* The lag script's answer: how 0 an estimate, 1 counted, 2 the kept figure
 * plus appends, 3 Redis's own figure; the point it stands for. */
typedef struct tse_lag_answer {
    uint64_t lag;
    int how;
    long long entries_added, read;
    char max_deleted[48], last_id[48];
} tse_lag_answer;

/* The group's lag where XINFO GROUPS has none (the script and its bounds
 * are described in group_ops.c); TSE_NOT_FOUND when the group is gone. */
tse_status tse_group_lag(tse_conn *c, const char *key, const char *group, const tse_lag_query *q,
                         tse_lag_answer *out);
tse_status tse_group_lag_parse(const struct redisReply *r, tse_lag_answer *out);

/* The group's acknowledged position on key into out: its last-delivered
 * id, or just before its oldest pending entry ("0-0" on failure);
 * TSE_NOT_FOUND when the group is not there. */
tse_status tse_group_acked_position(tse_conn *c, const char *key, const char *group, char *out,
                                    size_t len);
tse_status tse_group_acked_position_parse(const struct redisReply *r, char *out, size_t len);

/* Acks every pending entry of the group and moves it to id `to`, atomically
 * (one script): *cleared says how many it acked. An error reply's text goes
 * to why. */
tse_status tse_group_seek(tse_conn *c, const char *key, const char *group, const char *to,
                          uint64_t *cleared, char *why, size_t why_len);

#endif
