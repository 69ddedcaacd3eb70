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

/* Every registered stream's length, per event type in the order first
 * added. A zeroed value is empty. */
typedef struct tse_stream_lengths {
    tse_type_length *types; /* owned */
    size_t n;
    size_t cap; /* room in types */
} tse_stream_lengths;

/*
 * The lengths take single-slot commands (a script over the set would reach
 * keys of other slots, which Redis Cluster refuses): "SMEMBERS <stream
 * set>" (tse_stream_set_command), then "XLEN <key>" per registered stream
 * (tse_stream_length_command), pipelined, each reply added with
 * tse_stream_lengths_add.
 */
struct tse_cmd;
void tse_stream_set_command(struct tse_cmd *out);
void tse_stream_length_command(const char *stream_key, struct tse_cmd *out);

/*
 * The stream keys of a reply to tse_stream_set_command into *keys (*n of
 * them; caller frees each and the array with tse_stream_keys_free, also
 * after a failure). Only stream keys of ours are kept. TSE_OK; TSE_INTERNAL
 * for an error reply or one of another shape; TSE_NOMEM. Nothing is left
 * allocated on failure.
 */
tse_status tse_stream_set_parse(const struct redisReply *reply, char ***keys, size_t *n);
void tse_stream_keys_free(char **keys, size_t n);

/* Empties out and makes room for n streams' types. TSE_OK or TSE_NOMEM
 * (out then empty). Release with tse_stream_lengths_cleanup. */
tse_status tse_stream_lengths_init(tse_stream_lengths *out, size_t n);

/*
 * Adds the reply to "XLEN key" to key's event type's total (priorities
 * summed; types in the order first added). A key that is not a stream key
 * of ours, a reply that is not a length, or a type beyond the n streams
 * out was made for, is skipped.
 */
void tse_stream_lengths_add(tse_stream_lengths *out, const char *key,
                            const struct redisReply *reply);

/* Frees what out holds and empties it. NULL is a no-op. */
void tse_stream_lengths_cleanup(tse_stream_lengths *out);

/* ---- appending events (the writer's XADD and dedup script) --------------- */

/* Most arguments of a command built here. */
#define TSE_CMD_MAX_ARGS 64

/* A command's arguments: borrowed from what the builder was given, or
 * numbers printed into num[] (so a tse_cmd must outlive its use, and not be
 * copied while argv points into it). */
typedef struct tse_cmd {
    int argc;
    const char *argv[TSE_CMD_MAX_ARGS];
    size_t lens[TSE_CMD_MAX_ARGS];
    char num[6][32];
    int nums;
} tse_cmd;

/* One event to append. Everything is borrowed. */
typedef struct tse_append {
    const char *stream_key; /* tse_key_stream */
    const char *dedup_key;  /* tse_key_dedup of a client-set id (same event type as the
                               stream: one slot); NULL: a plain XADD */
    const char *script_sha; /* SHA of tse_dedup_script (dedup only) */
    int64_t dedup_window_ms;
    int64_t timestamp_sec; /* publish time, recorded for duplicates (dedup only) */
    int32_t timestamp_nanos;
    const char *event_id;
    const char *event_type;
    const uint8_t *envelope; /* packed tracseq.events.v1.Event */
    size_t envelope_len;
} tse_append;

/*
 * The command appending a: "XADD <key> * id <id> type <type> event <bytes>",
 * or for a client-set id the same arguments after the key behind
 * "EVALSHA <sha> 2 <key> <dedup key> <window> <sec>.<nanos>".
 * Only what people and tools filter on is spelled out beside the envelope:
 * every plain field costs Redis time on every event (measured: 6 fields
 * 354k/s, these 3 524k/s). Priority is in the key, the time in the entry
 * id, the rest in the envelope. Trimming is not part of it (see
 * tse_trim_command), nor the stream's registration
 * (tse_register_stream_command).
 */
void tse_append_command(const tse_append *a, tse_cmd *out);

/*
 * The XTRIM of a stream by retention: "MAXLEN ~ <maxlen>" when maxlen > 0,
 * else "MINID ~ <min_id_ms>" (negative: 0). Trimming once a second instead
 * of on every XADD costs Redis far less.
 */
void tse_trim_command(const char *stream_key, int64_t maxlen, int64_t min_id_ms, tse_cmd *out);

/* "SADD <stream set> <key>": registers a stream for discovery. The writer
 * sends it before the first append to a stream (so a stored event's stream
 * is always registered), once per stream and connection: never inside a
 * script, since the set is another slot than the stream. */
void tse_register_stream_command(const char *stream_key, tse_cmd *out);

/* A command of argc arguments (lens NULL: NUL-terminated strings), as is;
 * false when argc is outside 1..TSE_CMD_MAX_ARGS. */
bool tse_cmd_from_argv(int argc, const char *const *argv, const size_t *lens, tse_cmd *out);

/*
 * The dedup script (SCRIPT LOAD on every connection, then EVALSHA):
 * KEYS[1] stream, KEYS[2] dedup key (one slot); ARGV[1] window in ms,
 * ARGV[2] publish time "<sec>.<nanos>", ARGV[3..5] the event id, type and
 * packed envelope, appended as a plain XADD appends them (fields id, type,
 * event).
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
    char id[64];       /* a duplicate's entry id (stream_id points here) */
    char message[256]; /* failure detail */
} tse_append_reply;

/*
 * Decodes the reply to an append (dedup: the script's) into out. TSE_OK;
 * for an error reply, tse_redis_error_status of it; TSE_INTERNAL for a
 * reply of another shape. out->status and out->message say the same.
 */
tse_status tse_append_decode(const struct redisReply *reply, bool dedup, tse_append_reply *out);

/*
 * The batch script (SCRIPT LOAD beside tse_dedup_script): tse_dedup_script's
 * work for many events of one event type (one slot), in order, in one call.
 * KEYS: per event its stream and its dedup key; ARGV[1] the window, ARGV[2]
 * the event type, then per event TSE_BATCH_SCRIPT_EVENT_ARGS arguments: "1"
 * when it has a client-set id (else "0"), its publish time "<sec>.<nanos>",
 * its event id and its packed envelope; each is appended as tse_dedup_script
 * appends it (fields id, type, event). A repeated id later in the batch is
 * a duplicate of the earlier one. Replies with a flat array of two elements
 * per event, in order: tse_dedup_script's two (0 and the new entry id, or 1
 * and the stored record), or 2 and the error when that event's XADD failed
 * (the others go on).
 */
extern const char tse_dedup_batch_script[];
#define TSE_BATCH_SCRIPT_EVENT_ARGS 4

/*
 * Decodes event i of the n a batch script's reply answers into out, as
 * tse_append_decode decodes a dedup reply: an error reply fails every
 * event alike; a reply without 2 * n elements, or an event's pair of
 * another shape, is TSE_INTERNAL.
 */
tse_status tse_append_batch_decode(const struct redisReply *reply, size_t n, size_t i,
                                   tse_append_reply *out);

/* Whether a dedup script reply says the event was stored (not a duplicate). */
bool tse_dedup_reply_stored(const struct redisReply *reply);

/* UNAVAILABLE for transient Redis errors (OOM, LOADING, BUSY, ...), else INTERNAL. */
tse_status tse_redis_error_status(const char *msg, size_t len);

#endif
