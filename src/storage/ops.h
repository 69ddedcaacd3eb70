/*
 * ops.h - typed storage operations: for each query the layers above need
 * (today GetStats' stream lengths), the Redis command that asks it and the
 * decoding of Redis's reply into plain C values (ops.c). Above storage no
 * code sees a Redis reply or spells a command: the writer runs these
 * commands on its lanes and hands the decoded values on.
 *
 * Pure: no I/O, no state; reentrant. Decoded values own their memory.
 */
#ifndef TSE_STORAGE_OPS_H
#define TSE_STORAGE_OPS_H

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

#endif
