/*
 * limits.h - every limit and default of the event rules, in one place.
 *
 * The service checks them (domain, transport), the broker and the delivery
 * engine rely on them, the SDK and the REST bridge check them early for a
 * clearer error: all of them use these names, so a limit is changed here and
 * nowhere else. Length limits count code points unless they say otherwise.
 * Constants only: nothing to create, safe from any thread.
 */
#ifndef TSE_DOMAIN_LIMITS_H
#define TSE_DOMAIN_LIMITS_H

/* ---- the event envelope -------------------------------------------------- */

#define TSE_PRIORITY_MIN         1 /* the highest priority */
#define TSE_PRIORITY_MAX         5 /* the lowest */
#define TSE_DEFAULT_PRIORITY     3 /* what an unset (0) priority becomes */
#define TSE_EVENT_TYPE_MAX       128
#define TSE_SOURCE_SERVICE_MAX   64
#define TSE_SUBJECT_MAX          256
#define TSE_CAUSATION_ID_MAX     128
#define TSE_METADATA_MAX_ENTRIES 64
#define TSE_METADATA_KEY_MAX     128
#define TSE_METADATA_VALUE_MAX   1024
#define TSE_DEFAULT_VERSION      "1.0"

/* W3C Trace Context (domain/trace.h): the traceparent a later version of
 * the spec may lengthen (version 00 is exactly 55 characters), and the
 * tracestate the spec asks every vendor to pass on whole (512 characters,
 * 32 list members). */
#define TSE_TRACEPARENT_MAX        256
#define TSE_TRACESTATE_MAX         512
#define TSE_TRACESTATE_MAX_MEMBERS 32

/* ---- batches ---------------------------------------------------------------- */

/* Events one PublishBatch / PublishBatchStream message (and one REST batch)
 * may carry; more is refused INVALID_ARGUMENT naming "events", before the
 * events are unpacked. */
#define TSE_PUBLISH_BATCH_MAX_EVENTS 1000

/* ---- subscriptions -------------------------------------------------------- */

#define TSE_SUBSCRIPTION_NAME_MAX       64
#define TSE_SUBSCRIPTION_PATTERNS_MAX   1024 /* hard cap; MAX_SUBSCRIPTION_PATTERNS (32) */
#define TSE_CONSUMER_NAME_MAX           128
#define TSE_PATTERN_MAX                 128
#define TSE_DEFAULT_ACK_DEADLINE_MS     30000
#define TSE_MIN_ACK_DEADLINE_MS         100
#define TSE_MAX_ACK_DEADLINE_MS         3600000
#define TSE_DEFAULT_MAX_ATTEMPTS        5
#define TSE_MAX_DELIVERY_ATTEMPTS_LIMIT 1000
#define TSE_DEFAULT_MAX_IN_FLIGHT       100
#define TSE_MAX_IN_FLIGHT_LIMIT         10000
/* Retry backoff between attempts: the most either bound may be. */
#define TSE_MAX_BACKOFF_MS              600000
/* Batched delivery: the most deliveries a subscriber may ask for in one
 * Subscribe message (max_deliveries_per_message; more is refused), and the
 * bytes of deliveries the server packs into one message at most (a single
 * larger delivery still goes alone), well under gRPC's default 4 MiB
 * receive limit. */
#define TSE_DELIVERIES_PER_MESSAGE_MAX  1000
#define TSE_DELIVERY_MESSAGE_BYTES      (1u << 20)

/* ---- Pull ------------------------------------------------------------------ */

#define TSE_PULL_DEFAULT_EVENTS 10    /* what max_events 0 asks for */
#define TSE_PULL_MAX_EVENTS     1000  /* more is refused */
#define TSE_PULL_MAX_WAIT_MS    60000 /* a longer wait_ms is cut to this */

#endif
