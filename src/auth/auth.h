/*
 * auth.h - who a caller is and what it may do: the tokens file's
 * identities, their permissions and publish rates, reloaded on SIGHUP.
 *
 * The tokens file (AUTH_TOKENS_FILE) lists one identity per line:
 *
 *   # name   attributes
 *   lims     sha256=<64 hex> publish=sample.*,document.* subscribe=* rate=200 burst=400
 *   monitor  sha256=<64 hex> sha256=<64 hex> subscribe=sequencing.*,sample.*
 *   ops      sha256=<64 hex> admin subscribe=*
 *   robot    cn=lab-robot publish=sample.*
 *
 * name: [A-Za-z0-9_.-], 1..64 characters (it is the source_service the
 * identity publishes as). Attributes, in any order:
 *   sha256=<hex>      SHA-256 of one of its bearer tokens (repeatable: a
 *                     second hash while a token is rotated). Only hashes
 *                     are stored: the file is not a list of secrets.
 *   cn=<name>         a client certificate (mTLS) with this subject common
 *                     name proves this identity.
 *   publish=<p>,...   event type patterns it may publish (the subscription
 *                     pattern syntax, domain/subscription.h); repeatable.
 *   subscribe=<p>,... patterns it may read through subscriptions.
 *   admin             other identities' subscriptions, dead letters, stats.
 *   publish_on_behalf source_service may name another service.
 *   rate=<n>          at most n events per second published (token bucket,
 *                     burst=<n> events at once, default: rate); none: no cap.
 *   expires=<date>    YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC): its tokens
 *                     stop working then.
 * '#' starts a comment line; blank lines are ignored. The parser does no
 * I/O (bytes in, table out) and every error names the line.
 *
 * Threading: a tse_auth_table is immutable once parsed apart from its rate
 * buckets (atomics), so any thread reads it freely. tse_auth holds the
 * current table: tse_auth_acquire takes a reference without ever blocking
 * (two atomic adds); tse_auth_reload parses the file again and swaps the
 * table in atomically (a bad file leaves the current one), then frees the
 * old table once the last call holding it releases it. No Redis round trip:
 * a check is a SHA-256 of the token and a binary search.
 */
#ifndef TSE_AUTH_AUTH_H
#define TSE_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define TSE_AUTH_NAME_MAX     64 /* identity names, as source_service */
#define TSE_AUTH_LINE_MAX     8192
#define TSE_AUTH_PATTERNS_MAX 64 /* publish or subscribe patterns per identity */
#define TSE_AUTH_IDENTITY_MAX 10000
#define TSE_AUTH_HASH_LEN     32

typedef struct tse_auth_table tse_auth_table;
typedef struct tse_identity tse_identity;
typedef struct tse_auth tse_auth;

/* ---- the tokens file (no I/O) ---- */

/*
 * Parses a tokens file's text (len bytes, need not be NUL-terminated) into
 * a new table. TSE_INVALID with err->field "line <n>" and a sentence that
 * never quotes a hash or a value past its key; TSE_NOMEM. Caller frees
 * *out with tse_auth_table_destroy.
 */
tse_status tse_auth_table_parse(const char *text, size_t len, tse_auth_table **out, tse_error *err);

/* Frees a table. NULL is a no-op. Only for a table never given to a tse_auth. */
void tse_auth_table_destroy(tse_auth_table *t);

/* How many identities the table holds. */
size_t tse_auth_table_count(const tse_auth_table *t);

/*
 * The identity whose token this is (its SHA-256 is in the file), or NULL:
 * unknown, or expired at now_s (Unix seconds). Borrowed from t.
 */
const tse_identity *tse_auth_table_find_token(const tse_auth_table *t, const char *token,
                                              size_t len, int64_t now_s);

/* The identity with this certificate common name (cn=), or NULL. */
const tse_identity *tse_auth_table_find_cn(const tse_auth_table *t, const char *cn, size_t len,
                                           int64_t now_s);

/* The identity called name, or NULL (the owner of a stored subscription). */
const tse_identity *tse_auth_table_find_name(const tse_auth_table *t, const char *name);

/* SHA-256 of data into out (libcrypto); false when libcrypto fails. */
bool tse_auth_sha256(const void *data, size_t len, uint8_t out[TSE_AUTH_HASH_LEN]);

/* ---- permissions ---- */

const char *tse_identity_name(const tse_identity *id);
bool tse_identity_admin(const tse_identity *id);
bool tse_identity_on_behalf(const tse_identity *id);

/* When its tokens stop working (Unix seconds, expires=); 0: never. */
int64_t tse_identity_expires(const tse_identity *id);

/* Whether id may publish an event of this type. */
bool tse_identity_may_publish(const tse_identity *id, const char *event_type);

/*
 * Whether every event type pattern could match is one id may read: pattern
 * lies within one of its subscribe patterns, for types that exist now and
 * any first seen later ("sample.*" is within "sample.*" and "*", not within
 * "sample.created").
 */
bool tse_identity_may_subscribe(const tse_identity *id, const char *pattern);

/*
 * Takes one event from id's publish rate bucket at now_us (monotonic). True
 * when allowed (or id has no rate); false with *retry_after_ms (may be
 * NULL), at least 1, when the bucket is empty. Thread-safe, lock-free.
 */
bool tse_identity_rate_take(const tse_identity *id, int64_t now_us, int64_t *retry_after_ms);

/*
 * A refusal by the rate was just made at now_us: true when it gets an audit
 * line (the first in each second), with *unlogged (may be NULL) the
 * refusals since the last line that had none. A client far over its rate
 * thus writes one line a second, not one per event. Thread-safe.
 */
bool tse_identity_rate_audit(const tse_identity *id, int64_t now_us, uint64_t *unlogged);

/* ---- the current table, reloaded ---- */

/* Reads and parses path into a new holder. Errors as tse_auth_table_parse,
 * or TSE_UNAVAILABLE when the file cannot be read (its path named). */
tse_status tse_auth_create(const char *path, tse_auth **out, tse_error *err);

/* Reads the file again and swaps the new table in; on any error the
 * current table stays. Call from one thread at a time (the main thread). */
tse_status tse_auth_reload(tse_auth *a, tse_error *err);

/* The current table, referenced: never blocks. Release with tse_auth_release. */
const tse_auth_table *tse_auth_acquire(tse_auth *a);

/*
 * Whether t (taken by tse_auth_acquire) is still the current table: false
 * once a reload swapped in another. One atomic load, never blocks. A held
 * reference keeps t's address from being reused, so the answer is exact.
 */
bool tse_auth_is_current(tse_auth *a, const tse_auth_table *t);

/* Drops a reference taken by tse_auth_acquire. NULL is a no-op. */
void tse_auth_release(const tse_auth_table *t);

/* Frees the holder; every reference must have been released. NULL: no-op. */
void tse_auth_destroy(tse_auth *a);

#endif
