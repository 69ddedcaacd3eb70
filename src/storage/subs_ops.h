/*
 * subs_ops.h - typed operations on the subscriptions hash (TSE_SUBS_KEY:
 * name -> packed Subscription), the stream set of discovery
 * (TSE_STREAMS_KEY), the snapshot hash of each subscription (name ->
 * packed Snapshot) and Redis's clock (subs_ops.c). Values are the packed
 * bytes as stored: decoding them is the caller's. Status and ownership as
 * in group_ops.h.
 */
#ifndef TSE_STORAGE_SUBS_OPS_H
#define TSE_STORAGE_SUBS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "storage/conn.h"

struct redisReply;

/* Owned NUL-terminated strings. */
typedef struct tse_strings {
    char **v;
    size_t n;
} tse_strings;

/* Owned byte strings. */
typedef struct tse_blob {
    uint8_t *data;
    size_t len;
} tse_blob;

typedef struct tse_blobs {
    tse_blob *v;
    size_t n;
} tse_blobs;

void tse_strings_cleanup(tse_strings *s);
void tse_blob_cleanup(tse_blob *b);
void tse_blobs_cleanup(tse_blobs *b);

/* An array reply of strings into out (emptied first); elements that are not
 * strings are skipped. */
tse_status tse_strings_parse(const struct redisReply *r, tse_strings *out);
tse_status tse_blobs_parse(const struct redisReply *r, tse_blobs *out);

/* ---- subscriptions ------------------------------------------------------- */

/* The names of every stored subscription. */
tse_status tse_subs_names(tse_conn *c, tse_strings *out);
/* The packed Subscription stored as name; TSE_NOT_FOUND when none. */
tse_status tse_subs_get(tse_conn *c, const char *name, tse_blob *out);
/* Stores packed as name unless one is stored: *inserted says which. */
tse_status tse_subs_put_new(tse_conn *c, const char *name, const uint8_t *packed, size_t len,
                            bool *inserted);
/* Deletes subscription name with its dead letters and snapshots (its
 * groups are the caller's: tse_group_destroy per stream). */
tse_status tse_subs_delete(tse_conn *c, const char *name);

/* ---- the stream set ------------------------------------------------------ */

/* Every registered stream key. */
tse_status tse_streams_list(tse_conn *c, tse_strings *out);
/* How many streams are registered. */
tse_status tse_streams_count(tse_conn *c, long long *n);

/* ---- snapshots of a subscription ---------------------------------------- */

tse_status tse_snapshot_exists(tse_conn *c, const char *subscription, const char *name,
                               bool *exists);
tse_status tse_snapshot_count(tse_conn *c, const char *subscription, long long *n);
tse_status tse_snapshot_put(tse_conn *c, const char *subscription, const char *name,
                            const uint8_t *packed, size_t len);
/* Every snapshot of subscription, packed, in no particular order. */
tse_status tse_snapshot_all(tse_conn *c, const char *subscription, tse_blobs *out);
/* TSE_NOT_FOUND when there is none. */
tse_status tse_snapshot_get(tse_conn *c, const char *subscription, const char *name, tse_blob *out);
/* *deleted false when there was none. */
tse_status tse_snapshot_delete(tse_conn *c, const char *subscription, const char *name,
                               bool *deleted);

/* ---- the clock ----------------------------------------------------------- */

/* Redis's clock (TIME), so ids made here and entry ids agree. */
tse_status tse_redis_time(tse_conn *c, int64_t *sec, int32_t *nanos);
tse_status tse_redis_time_parse(const struct redisReply *r, int64_t *sec, int32_t *nanos);

#endif
