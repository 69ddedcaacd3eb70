/*
 * dlq_ops.h - typed operations on whole stream entries (dlq_ops.c): the
 * dead-letter stream of a subscription (tse_key_dlq: one entry per event
 * given up on, the original entry's fields plus dlq_stream, dlq_id,
 * dlq_attempts and dlq_reason), reading one entry of an event stream, and
 * appending an event to one (the dead-letter target). Status and ownership
 * as in group_ops.h; subscription names are borrowed, keys are built here
 * with keys.h.
 */
#ifndef TSE_STORAGE_DLQ_OPS_H
#define TSE_STORAGE_DLQ_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "storage/conn.h"
#include "storage/ops.h"

struct redisReply;

/* ---- stream entries ------------------------------------------------------ */

/* One field of an entry: name and value bytes, owned, NUL-terminated after
 * len bytes. */
typedef struct tse_entry_field {
    char *name;
    char *value;
    size_t len;
} tse_entry_field;

typedef struct tse_stream_entry {
    char *id; /* owned */
    tse_entry_field *fields;
    size_t n_fields;
} tse_stream_entry;

typedef struct tse_stream_entries {
    tse_stream_entry *v;
    size_t n;
} tse_stream_entries;

void tse_stream_entry_cleanup(tse_stream_entry *e);
void tse_stream_entries_cleanup(tse_stream_entries *e);

/* The value of field `name` of e (its length to *len when len is non-NULL),
 * or NULL. */
const char *tse_stream_entry_field(const tse_stream_entry *e, const char *name, size_t *len);

/* Decodes an XRANGE reply ([[id, [field, value, ...]], ...]) into out
 * (emptied first); entries of another shape are skipped. */
tse_status tse_stream_entries_parse(const struct redisReply *r, tse_stream_entries *out);

/* Entry id of stream key into out, which is written over (not freed: an
 * entry it held is released first with tse_stream_entry_cleanup); empty
 * unless TSE_OK. TSE_NOT_FOUND when the stream has no such entry (trimmed,
 * deleted). */
tse_status tse_stream_entry_get(tse_conn *c, const char *key, const char *id,
                                tse_stream_entry *out);

/* Registers the event's stream for discovery (*new_stream when it was not
 * registered yet), then appends the event (tse_append_command's XADD, no
 * dedup): registered first, so discovery finds every stored event's
 * stream. out as tse_append_decode says (out->stream_id points into out). */
tse_status tse_stream_append(tse_conn *c, const tse_append *a, tse_append_reply *out,
                             bool *new_stream);

/* ---- the dead-letter stream of a subscription ---------------------------- */

/* How many dead letters the subscription holds. */
tse_status tse_dlq_length(tse_conn *c, const char *subscription, long long *n);

/* Up to count dead letters from id `start` on ("-": the first; "(<id>":
 * after id) into out (emptied first). */
tse_status tse_dlq_range(tse_conn *c, const char *subscription, const char *start, uint32_t count,
                         tse_stream_entries *out);

/* Dead letter id into out; TSE_NOT_FOUND when there is none. */
tse_status tse_dlq_get(tse_conn *c, const char *subscription, const char *id,
                       tse_stream_entry *out);

/* Stores entry id of stream key, given up on after `attempts` for reason,
 * with the original's fields (orig; NULL: none) as a dead letter. */
tse_status tse_dlq_add(tse_conn *c, const char *subscription, const char *key, const char *id,
                       long long attempts, const char *reason, const tse_stream_entry *orig);

/* Deletes dead letter id: *deleted false when there was none. */
tse_status tse_dlq_delete(tse_conn *c, const char *subscription, const char *id, bool *deleted);

#endif
