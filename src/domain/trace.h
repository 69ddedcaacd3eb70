/*
 * trace.h - W3C Trace Context (https://www.w3.org/TR/trace-context/): the
 * checks of the `traceparent` and `tracestate` an event carries, so the
 * spans of its publisher and its subscribers can be joined by a tracing
 * system (an OpenTelemetry collector).
 *
 * traceparent, version 00: "00-<trace-id>-<parent-id>-<flags>", exactly 55
 * characters: 32 lowercase hex digits of trace-id (not all zero), 16 of
 * parent-id (not all zero), 2 of flags. A later version (two lowercase hex
 * digits other than "ff") is accepted as the spec says a version-00 parser
 * must: its first 55 characters read as version 00, and whatever follows
 * starts with '-' (at most TSE_TRACEPARENT_MAX characters in all, visible
 * ASCII). tracestate: a comma-separated list of at most
 * TSE_TRACESTATE_MAX_MEMBERS key=value members (empty members and
 * spaces or tabs around them allowed), keys per the spec's simple and
 * multi-tenant forms and unique, values of printable ASCII but ',' and
 * '=' without trailing spaces, at most TSE_TRACESTATE_MAX characters.
 *
 * Pure: strings in, verdict out (no I/O, no allocation, no global state),
 * thread-safe and fuzzable as is (tests/fuzz/fuzz_trace.c).
 */
#ifndef TSE_DOMAIN_TRACE_H
#define TSE_DOMAIN_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "domain/limits.h"

/* A traceparent's parts. */
typedef struct tse_traceparent {
    uint8_t version;
    char trace_id[33];  /* 32 lowercase hex digits */
    char parent_id[17]; /* 16 lowercase hex digits */
    uint8_t flags;      /* bit 0: sampled */
} tse_traceparent;

/*
 * Parses the len bytes at s (need not be NUL-terminated) as a traceparent.
 * TSE_OK and *out filled (out may be NULL) when valid; else TSE_INVALID with
 * err (may be NULL) naming `field` and saying what is wrong.
 */
tse_status tse_traceparent_parse(const char *s, size_t len, tse_traceparent *out, const char *field,
                                 tse_error *err);

/* Checks the len bytes at s as a tracestate; as tse_traceparent_parse. An
 * empty tracestate is valid. */
tse_status tse_tracestate_check(const char *s, size_t len, const char *field, tse_error *err);

/*
 * Checks a pair as an event carries it (NULL or "" is unset): traceparent
 * as above, tracestate as above and only with a traceparent. Fields named
 * traceparent_field and tracestate_field ("traceparent", "tracestate" for
 * an event's own; the metadata keys are the same words).
 */
tse_status tse_trace_context_check(const char *traceparent, const char *tracestate,
                                   const char *traceparent_field, const char *tracestate_field,
                                   tse_error *err);

/* The trace-id of a traceparent that passed the check, into out (33 bytes);
 * false (out "") when traceparent is NULL, empty or too short to hold one. */
bool tse_trace_id(const char *traceparent, char out[33]);

#endif
