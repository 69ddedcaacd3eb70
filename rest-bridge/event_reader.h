/*
 * event_reader.h - the body of POST /api/v1/events/publish and
 * /api/v1/events/batch (application/json) to tracseq.events.v1.Event bytes,
 * two ways:
 *
 * - tsb_event_from_json, the reference: a jansson tree (the whole body,
 *   parsed by tsb_parse_body) whose envelope keys are copied into a second
 *   object and converted by the generic transcoder (codec/pbjson.h). It
 *   knows every error and names its field.
 * - tsb_read_event_body / tsb_read_batch_body, the fast reader: the body's
 *   bytes straight to the Event's wire pieces (no tree, no protobuf-c
 *   structs, one buffer), for the bodies clients send. It never answers an
 *   error: anything it is not sure to read exactly as the reference would
 *   (bad JSON, a missing or mistyped field, a priority out of range, a
 *   duplicate key, deep nesting, a long number, an allocation failure) makes
 *   it decline, and the caller runs the reference on the same body. So
 *   acceptance and every error message stay the reference's, by
 *   construction; for what it accepts, tsb_read_event_encode writes the
 *   bytes protobuf_c_message_pack writes of the reference's Event
 *   (tests/fuzz/fuzz_bridge_event_reader.c checks both, differentially).
 *
 * Pure: no I/O, no state, reentrant.
 */
#ifndef TSB_BRIDGE_EVENT_READER_H
#define TSB_BRIDGE_EVENT_READER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "tracseq/events/v1/event.pb-c.h"

/* ---- the reference: a jansson tree to an Event ---- */

/*
 * The Event of one publish body (a JSON object: the envelope's keys, the
 * payload as the Event's `data` Struct, anything not a JSON object as
 * {"value": payload}; unknown keys ignored). TSE_INVALID with err->field
 * naming the field as the client wrote it ("payload.<key>" for the payload)
 * or TSE_NOMEM. Caller frees *out with protobuf_c_message_free_unpacked.
 */
tse_status tsb_event_from_json(const json_t *body, Tracseq__Events__V1__Event **out,
                               tse_error *err);

/* ---- bytes ---- */

/* A growing byte buffer; {0} is empty. `failed` once an allocation failed
 * (what follows is not written). */
typedef struct tsb_bytes {
    uint8_t *p;
    size_t len, cap;
    bool failed;
} tsb_bytes;

void tsb_bytes_add(tsb_bytes *b, const void *s, size_t n);
/* n more bytes at the end of b, for the caller to fill; NULL (b->failed)
 * when out of memory. */
uint8_t *tsb_bytes_extend(tsb_bytes *b, size_t n);
/* Frees b's bytes; b is {0} after. */
void tsb_bytes_cleanup(tsb_bytes *b);

/* ---- the fast reader ---- */

/* The Event's string fields a body may set, in field number order. */
enum {
    TSB_READ_ID,
    TSB_READ_EVENT_TYPE,
    TSB_READ_SOURCE_SERVICE,
    TSB_READ_VERSION,
    TSB_READ_CORRELATION_ID,
    TSB_READ_CAUSATION_ID,
    TSB_READ_SUBJECT,
    TSB_READ_TRACEPARENT,
    TSB_READ_TRACESTATE,
    TSB_READ_STRINGS
};

/* Where one event's pieces are in its tsb_read_events' buffer. */
typedef struct tsb_read_event {
    size_t off[TSB_READ_STRINGS], len[TSB_READ_STRINGS]; /* len 0: none (or empty) */
    int32_t priority;                                    /* 0: none */
    size_t meta_off, meta_len; /* metadata: its map entries, tags included */
    size_t data_off, data_len; /* the data Struct, without tag and length */
} tsb_read_event;

/* The events of one body. {0} is empty; tsb_read_events_cleanup frees. */
typedef struct tsb_read_events {
    tsb_bytes buf; /* decoded strings (NUL-terminated) and wire pieces */
    tsb_read_event *ev;
    size_t n, cap;
} tsb_read_events;

/*
 * Reads a publish body (one event object) or a batch body ({"events":
 * [...]}, 1..max events, other keys ignored) into out (emptied first).
 * False: not read (out emptied); the reference must answer this body.
 */
bool tsb_read_event_body(const char *body, size_t len, tsb_read_events *out);
bool tsb_read_batch_body(const char *body, size_t len, size_t max, tsb_read_events *out);
void tsb_read_events_cleanup(tsb_read_events *evs);

/* Event i's own value of string field `which` (TSB_READ_*), NUL-terminated ("" when
 * it has none). Borrowed from evs. */
const char *tsb_read_event_string(const tsb_read_events *evs, size_t i, int which);

/* What the request gives an event that has no value of its own (publish.c's
 * adopt_correlation and adopt_trace): NULL or "" is nothing. */
typedef struct tsb_event_defaults {
    const char *correlation_id; /* used when the event has none */
    /* Used when the event has neither traceparent nor tracestate and
     * traceparent is given; tracestate only with it. */
    const char *traceparent, *tracestate;
} tsb_event_defaults;

/* Appends event i's Event bytes to out (as protobuf-c packs them). */
void tsb_read_event_encode(const tsb_read_events *evs, size_t i, const tsb_event_defaults *d,
                           tsb_bytes *out);

#endif
