/*
 * validate.h - the checks and stamps every event goes through before it is
 * stored: envelope fields, event type format, UUIDs, priority, and the
 * payload against its typed schema.
 *
 * No I/O; reentrant. The functions change the event in place (defaults,
 * server-set id and timestamp, lenient fallback), allocating with malloc so
 * that protobuf_c_message_free_unpacked(&ev->base, NULL) still frees the
 * whole event.
 */
#ifndef TSE_DOMAIN_VALIDATE_H
#define TSE_DOMAIN_VALIDATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/utf8.h" /* tse_utf8_*: the formats of text */
#include "common/status.h"
#include "domain/catalog.h"
#include "domain/limits.h"
#include "tracseq/events/v1/event.pb-c.h"

/* The generic type pattern, for documentation and ListEventTypes. */
#define TSE_EVENT_TYPE_PATTERN "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$"

typedef enum tse_validation_mode {
    TSE_VALIDATION_LENIENT = 0, /* misfit catalog payloads stored as generic data, flagged */
    TSE_VALIDATION_STRICT       /* misfit catalog payloads rejected */
} tse_validation_mode;

/* What tse_event_prepare did, for the response, stats and logs. */
typedef struct tse_prepare_result {
    bool id_generated;      /* the server made the id (so no dedup) */
    bool schema_valid;      /* false: lenient fallback to generic data */
    tse_error schema_error; /* why, when !schema_valid */
    /* The payload or the metadata are no longer as decoded: converted from
     * `data`, stamped, or the lenient fallback. False: only root fields of
     * the envelope were set (domain/envelope.h reuses the client's bytes). */
    bool payload_changed;
} tse_prepare_result;

/* ---- formats (format.c) ----------------------------------------------- */

/* The characters of an event type's segments, and of a pattern's: a
 * segment starts with a-z, then has a-z, 0-9 or '_'. */
static inline bool tse_segment_start(char c)
{
    return c >= 'a' && c <= 'z';
}

static inline bool tse_segment_char(char c)
{
    return tse_segment_start(c) || (c >= '0' && c <= '9') || c == '_';
}

/* True for a well-formed event type (pattern above, <= 128 chars). */
bool tse_event_type_valid(const char *type);

/* True for a UUID in 8-4-4-4-12 hex form (any version, either case). */
bool tse_uuid_valid(const char *s);

/* Writes a new random (v4) UUID, lower case, into buf (>= 37 bytes). */
void tse_uuid_generate(char *buf);

/*
 * A run of distinct v4-shaped UUIDs without a system call per id: random
 * seed bits, taken once, and a counter through a bijective mix, so ids do
 * not repeat within the run and consecutive ones look unrelated. For ids
 * that must be unique, not secret: the SDK's event ids, the REST bridge's
 * correlation ids (a getrandom per id was 5 % of the bridge's CPU under
 * load). tse_uuid_seq_next is thread-safe.
 */
typedef struct tse_uuid_seq {
    uint64_t seed[2];
    atomic_uint_fast64_t next;
} tse_uuid_seq;

void tse_uuid_seq_init(tse_uuid_seq *s);
/* Writes the run's next UUID, lower case, into buf (>= 37 bytes). */
void tse_uuid_seq_next(tse_uuid_seq *s, char *buf);

/* ---- payloads (text.c, payload.c) ------------------------------------- */

/*
 * Checks that every string in msg, at any depth (map keys included), is valid
 * UTF-8, and that every google.protobuf.Value number is finite (JSON has no
 * NaN or infinity). On failure TSE_INVALID with err->field the JSON path of
 * the culprit below prefix, e.g. "payload.metadata.lane" or
 * "payload.samples[2]". Struct, Value and ListValue add no path segments of
 * their own, so the path reads as it would in the JSON form.
 */
tse_status tse_message_check_text(const ProtobufCMessage *msg, const char *prefix, tse_error *err);

/*
 * Checks msg, a message of e->descriptor, against e's field rules: REQUIRED
 * and UUID strings non-empty, UUID strings and each UUID_LIST element UUIDs.
 * STAMP fields are not checked (unset is allowed). On failure TSE_INVALID
 * with err->field "payload.<field>" (e.g. "payload.barcode",
 * "payload.samples[2]") and a message naming e's event type.
 */
tse_status tse_payload_check(const tse_catalog_entry *e, const ProtobufCMessage *msg,
                             tse_error *err);

/*
 * Sets every unset STAMP field of msg (a message of e->descriptor) to a new
 * Timestamp seconds/nanos, malloc'd so free_unpacked frees it. Set fields
 * are kept. TSE_NOMEM when an allocation fails.
 */
tse_status tse_payload_stamp(const tse_catalog_entry *e, ProtobufCMessage *msg, int64_t seconds,
                             int32_t nanos, tse_error *err);

/*
 * The payload half of tse_event_prepare, for an event whose envelope has
 * been checked and whose timestamp is set (TSE_INTERNAL otherwise): fits,
 * converts, stamps or (in lenient mode) falls back to `data` as
 * tse_event_prepare describes, and fills result->schema_valid and
 * result->schema_error. result must not be NULL.
 */
tse_status tse_event_prepare_payload(Tracseq__Events__V1__Event *ev, tse_validation_mode mode,
                                     tse_prepare_result *result, tse_error *err);

/*
 * Validates ev and makes it ready to store: defaults the version ("1.0") and
 * priority (3), sets a fresh id when empty, sets the timestamp to now
 * (now_seconds/now_nanos, given so tests are repeatable), takes
 * correlation_id from fallback_correlation_id when empty, stamps unset
 * STAMP fields of a typed payload with the timestamp, and checks the payload
 * against its schema.
 *
 * A catalog type's payload may arrive as its typed message, or as `data` (a
 * Struct, e.g. from JSON) that is converted to the typed message when it
 * fits. When it does not fit (wrong type, missing required field, bad UUID,
 * unknown field): in strict mode TSE_INVALID naming the field (e.g.
 * "payload.barcode"); in lenient mode the payload is stored as `data`, with
 * metadata schema_valid=false and schema_error=<reason>, and
 * result->schema_valid=false. Other types need `data`.
 *
 * The lenient schema_error reads "<field>: <message>" of the misfit, which
 * result->schema_error also holds; events that fit carry no schema_ keys.
 *
 * Envelope errors are TSE_INVALID in both modes, naming the field
 * ("event_type", "source_service", "priority", "id", "correlation_id",
 * "traceparent", "tracestate" (W3C Trace Context, domain/trace.h), ...;
 * "x-correlation-id" when the fallback is given but is no UUID; "metadata"
 * or "metadata.<key>", where keys starting "schema_" are the server's). So
 * are strings that are not valid UTF-8 anywhere in the event (e.g.
 * "payload.samples[1]") and payloads that JSON could not hold (non-finite
 * Value numbers, nesting deeper than TSE_PBJSON_MAX_DEPTH): neither can be
 * stored as `data` either. Other failures: TSE_NOMEM.
 *
 * result and err may be NULL. Envelope checks all run before anything is
 * changed, so an event refused for its envelope is as it came; after a
 * payload failure ev may have been partly changed; the caller discards it.
 */
tse_status tse_event_prepare(Tracseq__Events__V1__Event *ev, tse_validation_mode mode,
                             int64_t now_seconds, int32_t now_nanos,
                             const char *fallback_correlation_id, tse_prepare_result *result,
                             tse_error *err);

/*
 * The trace context of the call (gRPC `traceparent` / `tracestate`
 * metadata, already checked with tse_trace_context_check) for an event that
 * carries none of its own: when ev has neither traceparent nor tracestate
 * and traceparent_len > 0, both are copied into ev (tracestate only when
 * tracestate_len > 0); otherwise ev is left as it is, and its own pair is
 * checked by tse_event_prepare (fields "traceparent", "tracestate"). The
 * strings need not be NUL-terminated. TSE_NOMEM (ev unchanged) or TSE_OK.
 */
tse_status tse_event_adopt_trace(Tracseq__Events__V1__Event *ev, const char *traceparent,
                                 size_t traceparent_len, const char *tracestate,
                                 size_t tracestate_len, tse_error *err);

#endif
