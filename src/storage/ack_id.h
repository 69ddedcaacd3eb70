/*
 * ack_id.h - the ack ids the delivery engine hands out and reads back from
 * clients: "<stream key>/<entry id>", e.g.
 * "<prefix>events:{sample.created}:p3/1700000000000-0" (storage/keys.h).
 *
 * Pure (no I/O, no allocation), reentrant. An ack id comes from a client's
 * bytes (Acknowledge, Nack, a Subscribe stream's acks, the REST bridge), so
 * parsing bounds everything and accepts only the shape the engine writes.
 */
#ifndef TSE_STORAGE_ACK_ID_H
#define TSE_STORAGE_ACK_ID_H

#include <stdbool.h>
#include <stddef.h>

/* The longest entry id: two 64-bit decimal numbers and the dash. */
#define TSE_ACK_ENTRY_MAX 41

/*
 * Splits ack_id at its last '/' into the stream key (copied into key, of
 * key_len bytes, NUL-terminated) and the entry id (*entry points into
 * ack_id). True only when the key is non-empty and fits, and the entry id is
 * a Redis stream id "<ms>-<seq>" (decimal digits, at most 20 each). On
 * false, key and *entry are unspecified. NULL ack_id is false.
 */
bool tse_ack_id_split(const char *ack_id, char *key, size_t key_len, const char **entry);

#endif
