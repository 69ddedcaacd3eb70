/*
 * keys.h - the Redis key names of TracSeq Events: the one place that spells
 * them (keys.c builds and parses them), so the key layout changes here and
 * nowhere else. The lint test lint/key_names fails when another source file
 * of src/ or rest-bridge/ spells the prefix; docs/architecture.md ("Redis
 * keys and slots") has the layout and which slot every command touches.
 *
 * Layout:
 *   <prefix>events:{<event_type>}:p<priority>  stream of one type and priority
 *   <prefix>streams                            set of every stream key above
 *   <prefix>dedup:{<event_type>}:<event_id>    where and when a client-id
 *                                              event of that type was stored,
 *                                              for the dedup window
 *   <prefix>subs                             hash: subscription name -> packed
 *                                            Subscription
 *   <prefix>dlq:<subscription>               stream: dead letters of one
 *                                            subscription
 *   <prefix>snapshots:<subscription>         hash: snapshot name -> packed
 *                                            Snapshot (its positions)
 * Consumer groups (one per subscription, named as it) live on the event
 * streams.
 *
 * Redis Cluster computes a key's slot from its hash tag (the bytes between
 * the first '{' and the next '}', when not empty) or else the whole key;
 * tse_key_slot does the same, so tests and the cluster routing agree with
 * Redis on which keys share a slot. The event type is the hash tag of its
 * streams and of its dedup keys: the five priorities of a type and every
 * dedup key of it share one slot, so the dedup scripts touch one slot (and
 * the dedup scope is one event type). Event types never hold '{' or '}'
 * (domain/validate.c). The other keys have no tag: every command naming
 * them names no other key.
 *
 * Before 1.0 stream keys had no tag ("<prefix>events:<type>:p<prio>") and
 * dedup keys no type; tse_key_stream_legacy_parse recognises such a stream
 * key, so the service can find and move them (storage/migrate.h).
 *
 * Pure: no I/O, no state, no allocation; reentrant.
 */
#ifndef TSE_STORAGE_KEYS_H
#define TSE_STORAGE_KEYS_H

#include <stdbool.h>
#include <stddef.h>

/* Every key of ours starts with this. */
#define TSE_KEY_PREFIX       "tracseq:"
/* The set of every stream key. */
#define TSE_STREAMS_KEY      TSE_KEY_PREFIX "streams"
/* The hash of every subscription. */
#define TSE_SUBS_KEY         TSE_KEY_PREFIX "subs"
/* Stream keys start with this (then "{<event_type>}:p<priority>"). */
#define TSE_EVENTS_PREFIX    TSE_KEY_PREFIX "events:"
/* Dedup keys start with this (then "{<event_type>}:<event_id>"). */
#define TSE_DEDUP_PREFIX     TSE_KEY_PREFIX "dedup:"
/* Dead-letter streams start with this (then the subscription's name). */
#define TSE_DLQ_PREFIX       TSE_KEY_PREFIX "dlq:"
/* Snapshot hashes start with this (then the subscription's name). */
#define TSE_SNAPSHOTS_PREFIX TSE_KEY_PREFIX "snapshots:"

/* Number of hash slots of Redis Cluster. */
#define TSE_KEY_SLOTS 16384

/*
 * The stream key of (event type, priority) into buf, always NUL-terminated
 * (cut short when len is too small). Runs once per published event: plain
 * copies for priorities 1..9, snprintf otherwise.
 */
void tse_key_stream(const char *event_type, int priority, char *buf, size_t len);

/*
 * Splits a stream key (key_len bytes, no NUL needed) into its event type
 * (*type points into key, *type_len bytes, without the braces) and priority
 * (1..9). False when key is not a stream key of ours (an old-layout one
 * included).
 */
bool tse_key_stream_parse(const char *key, size_t key_len, const char **type, size_t *type_len,
                          int *priority);

/*
 * The same for a stream key of the layout before 1.0,
 * "<prefix>events:<event_type>:p<priority>" (no hash tag): false for any
 * other key, a current stream key included.
 */
bool tse_key_stream_legacy_parse(const char *key, size_t key_len, const char **type,
                                 size_t *type_len, int *priority);

/*
 * The current name of a stream key of either layout into buf, always
 * NUL-terminated: a pre-1.0 key (tse_key_stream_legacy_parse) becomes its
 * tagged name, any other key is copied as is. For names recorded before
 * 1.0, e.g. a dead letter's original stream.
 */
void tse_key_stream_current(const char *key, char *buf, size_t len);

/* The dedup key of a client-set event id of an event type into buf, always
 * NUL-terminated: the dedup scope is one event type. */
void tse_key_dedup(const char *event_type, const char *event_id, char *buf, size_t len);

/* The dead-letter stream of a subscription into buf, always NUL-terminated. */
void tse_key_dlq(const char *subscription, char *buf, size_t len);

/* The snapshot hash of a subscription into buf, always NUL-terminated. */
void tse_key_snapshots(const char *subscription, char *buf, size_t len);

/* CRC16 of Redis Cluster (XMODEM: polynomial 0x1021, initial value 0) of
 * len bytes. */
unsigned tse_key_crc16(const char *buf, size_t len);

/* The Redis Cluster slot (0..16383) of a key of len bytes: the CRC16 of its
 * hash tag, or of the whole key when it has none. */
unsigned tse_key_slot(const char *key, size_t len);

#endif
