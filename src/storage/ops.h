/*
 * ops.h - typed storage operations: for each query the layers above need
 * (GetStats' stream lengths, the writer's appends), the Redis command that asks it and the
 * decoding of Redis's reply into plain C values (ops.c). Above storage no
 * code sees a Redis reply or spells a command: the writer runs these
 * commands on its lanes and hands the decoded values on.
 *
 * Pure: no I/O, no state; reentrant. Decoded values own their memory.
 */
#ifndef TSE_STORAGE_OPS_H
#define TSE_STORAGE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "domain/limits.h"

struct redisReply;

/* ---- stream lengths (GetStats) ------------------------------------------- */

/* The entries stored for one event type, all its priorities summed. */
typedef struct tse_type_length {
    char type[TSE_EVENT_TYPE_MAX + 1];
    uint64_t length;
} tse_type_length;

/* Every registered stream's length, per event type in the order Redis
 * listed them first. A zeroed value is empty. */
typedef struct tse_stream_lengths {
    tse_type_length *types; /* owned */
    size_t n;
} tse_stream_lengths;

/* Arguments of the command: one script run over the stream set, one round
 * trip. */
#define TSE_STREAM_LENGTHS_ARGC 4
void tse_stream_lengths_command(const char *argv[TSE_STREAM_LENGTHS_ARGC]);

/*
 * Decodes the command's reply into out (emptied first; caller releases with
 * tse_stream_lengths_cleanup, also after a failure). TSE_OK; TSE_INTERNAL
 * for an error reply (nothing decoded); TSE_NOMEM (out stays empty). Keys
 * that are not stream keys of ours and entries of another shape are
 * skipped.
 */
tse_status tse_stream_lengths_parse(const struct redisReply *reply, tse_stream_lengths *out);

/* Frees what out holds and empties it. NULL is a no-op. */
void tse_stream_lengths_cleanup(tse_stream_lengths *out);

/* ---- appending events (the writer's XADD and dedup script) --------------- */

/*
 * The dedup script (SCRIPT LOAD on every connection, then EVALSHA):
 * KEYS[1] stream, KEYS[2] dedup key, KEYS[3] the stream set; ARGV[1] window
 * in ms, ARGV[2] publish time "<sec>.<nanos>", ARGV[3..] the XADD arguments
 * after the key.
 */
extern const char tse_dedup_script[];

/* What Redis answered to one append (an XADD, or the dedup script for a
 * client-set id). Pointers go into the reply or into this struct: valid
 * while both are. */
typedef struct tse_append_reply {
    tse_status status;      /* TSE_OK, or the failure (see tse_append_decode) */
    const char *stream_id;  /* the entry id stored, or the duplicate's */
    const char *stream_key; /* a duplicate's recorded stream key; NULL: the one asked for */
    bool duplicate;         /* the id was seen within the window: nothing stored */
    int64_t published_sec;  /* duplicate: the stored event's publish time */
    int32_t published_nanos;
    bool new_stream;   /* the dedup script registered the stream */
    char id[64];       /* a duplicate's entry id (stream_id points here) */
    char message[256]; /* failure detail */
} tse_append_reply;

/*
 * Decodes the reply to an append (dedup: the script's) into out. TSE_OK;
 * for an error reply, tse_redis_error_status of it; TSE_INTERNAL for a
 * reply of another shape. out->status and out->message say the same.
 */
tse_status tse_append_decode(const struct redisReply *reply, bool dedup, tse_append_reply *out);

/* Whether a dedup script reply says the event was stored (not a duplicate):
 * the script then registered its stream too. */
bool tse_dedup_reply_stored(const struct redisReply *reply);

/* UNAVAILABLE for transient Redis errors (OOM, LOADING, BUSY, ...), else INTERNAL. */
tse_status tse_redis_error_status(const char *msg, size_t len);

#endif
