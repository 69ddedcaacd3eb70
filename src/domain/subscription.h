/*
 * subscription.h - the rules of subscriptions: pattern syntax and matching,
 * and the validation and defaults of a subscription's settings.
 *
 * No I/O; reentrant.
 *
 * Patterns: "*" alone matches every event type. Otherwise a pattern is
 * dot-separated segments like an event type, where a segment "*" matches any
 * one segment ("sample.*", "*.completed", "sequencing.*.x") and "." is
 * literal; a segment may not mix "*" with other characters. Exact types are
 * patterns without "*".
 */
#ifndef TSE_DOMAIN_SUBSCRIPTION_H
#define TSE_DOMAIN_SUBSCRIPTION_H

#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"
#include "domain/limits.h"
#include "tracseq/events/v1/service.pb-c.h"

/* True for a well-formed pattern (see above), at most TSE_PATTERN_MAX characters. */
bool tse_pattern_valid(const char *pattern);

/* True when event_type matches pattern (both assumed well-formed). */
bool tse_pattern_match(const char *pattern, const char *event_type);

/*
 * True when every event type pattern matches also matches allowed, now and
 * for any type first seen later (both assumed well-formed): "*" allows all;
 * otherwise both need as many segments, and each literal segment of allowed
 * must be the same literal in pattern. "sample.*" lies within "sample.*" and
 * "*.*", not within "sample.created"; "*" lies only within "*".
 */
bool tse_pattern_within(const char *pattern, const char *allowed);

/* True when event_type matches any of the n patterns. */
bool tse_patterns_match(char *const *patterns, size_t n, const char *event_type);

/* True for a subscription or consumer name: [A-Za-z0-9_.-], 1..max chars. */
bool tse_subscription_name_valid(const char *name, size_t max);

/* Checks the name of a subscription (or of a snapshot: what names which):
 * required, and valid up to TSE_SUBSCRIPTION_NAME_MAX; err names field. */
tse_status tse_subscription_name_check(const char *name, const char *field, const char *what,
                                       tse_error *err);

/*
 * Validates a subscription's settings and fills defaults in place:
 * ack_deadline_ms 0 -> 30000 (else 100..3600000), max_delivery_attempts
 * stays (0 = unlimited, else <= 1000), max_in_flight 0 -> 100 (else
 * <= 10000), start UNSPECIFIED -> LATEST, START_POSITION_TIMESTAMP needs
 * start_time; dead_letter_type empty or a well-formed event type outside
 * the catalog; at least one and at most TSE_SUBSCRIPTION_PATTERNS_MAX patterns
 * (the service's MAX_SUBSCRIPTION_PATTERNS is checked by the transport), each valid; duplicate
 * patterns are removed. Output-only fields (created_at, stats) are ignored.
 * TSE_INVALID naming the field ("subscription.name",
 * "subscription.event_types[2]", "subscription.ack_deadline_ms", ...).
 * An unknown start value fails on "subscription.start"; a start_time outside
 * 0001-01-01..9999-12-31 or with nanos outside 0..999999999 fails on
 * "subscription.start_time". The pattern count is checked as sent, before
 * duplicates are removed, so the work stays bounded. Every check runs before
 * anything is changed: a refused subscription is left as it came. Removed
 * duplicates are freed with free(); nothing is allocated, so the message
 * stays freeable with protobuf_c_message_free_unpacked. sub NULL fails on
 * "subscription"; err may be NULL and is cleared on success.
 */
tse_status tse_subscription_validate(Tracseq__Events__V1__Subscription *sub, tse_error *err);

/*
 * True when two subscriptions have the same settings (name, patterns as
 * sets, start, start_time, deadline, attempts, in-flight, auto_ack,
 * backoff, dead_letter_type); used to
 * answer ALREADY_EXISTS only when a second create differs. Unset settings
 * compare as their defaults (start UNSPECIFIED as LATEST, ack_deadline_ms 0
 * as 30000, max_in_flight 0 as 100); start_time counts only when start is
 * START_POSITION_TIMESTAMP. Two NULLs are the same; NULL and non-NULL not.
 */
bool tse_subscription_same(const Tracseq__Events__V1__Subscription *a,
                           const Tracseq__Events__V1__Subscription *b);

#endif
