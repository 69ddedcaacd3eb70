/*
 * migrate.h - stream keys of the layout before 1.0 (migrate.c): before 1.0
 * a stream was "<prefix>events:<type>:p<prio>", without the hash tag that
 * Redis Cluster needs (storage/keys.h). At start the service looks for such
 * keys in the stream set and, on a single Redis, renames each to its
 * current name: RENAME keeps the stream's entries and consumer groups
 * (positions, pending entries), so subscriptions carry on where they were.
 *
 * One move is one script over the old key, the new key and the stream set
 * (three slots: a single Redis only; a cluster never held the old layout).
 * It is atomic and safe to run again or from several instances at once: a
 * key whose new name exists already is left where it is and reported.
 *
 * Blocking: opens its own connection and closes it; no state.
 */
#ifndef TSE_STORAGE_MIGRATE_H
#define TSE_STORAGE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"
#include "storage/redis_url.h"

/* What one look at the stream set found and did. */
typedef struct tse_legacy_report {
    size_t found; /* old-layout stream keys in the stream set */
    size_t moved; /* renamed to their current names */
    size_t kept;  /* left under the old name: the new name exists already */
    size_t gone;  /* no longer in Redis: only unregistered */
    /* The old keys found, comma-separated, cut short at the buffer's end. */
    char found_names[512];
    /* Those left under the old name, the same way. */
    char kept_names[512];
} tse_legacy_report;

/*
 * Connects to t (timeout_ms bounds the connect and every reply), reads the
 * stream set and, when move, moves every old-layout stream key in it to its
 * current name; out says what it found and did (zeroed first). TSE_OK;
 * TSE_UNAVAILABLE with why set when Redis could not be reached, failed or
 * answered an error (out then says what was done before); TSE_INVALID for
 * a cluster target (never holds the old layout: nothing is done).
 */
tse_status tse_storage_migrate_legacy(const tse_redis_target *t, int timeout_ms, bool move,
                                      tse_legacy_report *out, char *why, size_t len);

#endif
