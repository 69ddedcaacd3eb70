/*
 * operate.h - the requests that operate on an existing subscription's state
 * (dead letters, seek, snapshots): their checks, and the Redis stream entry
 * ids they carry. No I/O: the transport checks a request here before the
 * delivery engine sees it, so a refused request changes nothing.
 *
 * Thread-safe: pure functions.
 */
#ifndef TSE_DOMAIN_OPERATE_H
#define TSE_DOMAIN_OPERATE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Dead letters listed per page: default and most. */
#define TSE_DEAD_LETTER_PAGE_DEFAULT 100
#define TSE_DEAD_LETTER_PAGE_MAX     1000
/* Dead letters one redrive or purge with `all` handles (the oldest). */
#define TSE_DEAD_LETTERS_ALL_MAX     10000
/* Snapshots one subscription may hold. */
#define TSE_SNAPSHOTS_MAX            100
/* The longest entry id: two 20-digit numbers and a dash. */
#define TSE_ENTRY_ID_MAX             41

/* A Redis stream entry id "<ms>-<seq>" (both decimal, no sign, no more than
 * 20 digits each, within uint64): true and the parts (either may be NULL). */
bool tse_entry_id_parse(const char *id, uint64_t *ms, uint64_t *seq);

/*
 * Whether msg is one of the operation requests (ListDeadLetters,
 * GetDeadLetter, RedriveDeadLetters, PurgeDeadLetters, Seek,
 * CreateSnapshot, ListSnapshots, DeleteSnapshot), and so checked here.
 */
bool tse_operate_is_request(const ProtobufCMessageDescriptor *desc);

/*
 * Checks one operation request: the subscription name, ids that are entry
 * ids (at most max_ids of them, or `all` instead), page size and token,
 * the seek target (exactly one), snapshot names. TSE_INVALID with err
 * naming the field (e.g. "ids[2]", "snapshot"); msg borrowed.
 */
tse_status tse_operate_check(const ProtobufCMessage *msg, size_t max_ids, tse_error *err);

/* The subscription a checked operation request names (borrowed). */
const char *tse_operate_subscription(const ProtobufCMessage *msg);

#endif
