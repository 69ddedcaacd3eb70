/*
 * cloudevent.h - CloudEvents 1.0: the mapping between a CloudEvent (the
 * JSON format, HTTP binary mode's ce-* headers and body, or the protobuf
 * format io.cloudevents.v1.CloudEvent) and the REST envelope (the Event's
 * fields as JSON, the payload under "payload"), and back from an Event to
 * a CloudEvent (JSON format or binary mode). The REST bridge uses it for
 * HTTP, the service for EventService.PublishCloudEvent: one mapping.
 *
 * No I/O: bytes and JSON in, JSON out, so the fuzz targets run the parsers
 * directly. Thread-safe (no state). Errors name the CloudEvents attribute
 * (err->field) and are the client's fault: the bridge answers them 400
 * (INVALID_CLOUDEVENT), the service INVALID_ARGUMENT; nothing is published.
 *
 * The mapping (docs: rest-bridge/README.md, "CloudEvents"):
 *
 *   id              Event.id when it is a UUID; any other non-empty string
 *                   becomes the UUID v5 of (source, id) (TSE_CE_ID_NAMESPACE,
 *                   name = source NUL id), so a given source's id always
 *                   maps to the same event id (publishing it again is a
 *                   duplicate), and the id itself is kept in metadata
 *                   "ce.id" and returned as it was sent
 *   source          Event.source_service (a URI-reference, 1..64 characters)
 *   type            Event.event_type (the service checks its pattern)
 *   subject         Event.subject
 *   time            metadata "ce.time" (RFC 3339, returned as sent; an
 *                   event without it reads back with the service's stamp)
 *   datacontenttype metadata "ce.datacontenttype"
 *   dataschema      metadata "ce.dataschema"
 *   data            the payload: an object as it is; any other JSON value
 *                   as {"value": v} with metadata "ce.data" = "value"; no
 *                   data as {} with "ce.data" = "none"
 *   data_base64     the payload {"value": "<base64>"}, "ce.data" = "base64"
 *   correlationid, causationid, priority, tracseqversion
 *                   Event.correlation_id, causation_id, priority, version
 *   traceparent, tracestate (the distributed-tracing extension)
 *                   Event.traceparent, tracestate (W3C Trace Context, checked
 *                   by the service); out only when set
 *   any other extension (a-z0-9, 1..20 characters): metadata "ce.<name>",
 *                   its string form (CloudEvents' canonical string
 *                   encoding); returned as a string
 */
#ifndef TSE_DOMAIN_CLOUDEVENT_H
#define TSE_DOMAIN_CLOUDEVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cloudevents/v1/cloudevents.pb-c.h"
#include "common/status.h"
#include "tracseq/events/v1/event.pb-c.h"

/* The longest id, extension name, source and attribute value accepted. */
#define TSE_CE_ID_MAX         256
#define TSE_CE_NAME_MAX       20
#define TSE_CE_SOURCE_MAX     64   /* TSE_SOURCE_SERVICE_MAX: source is the source_service */
#define TSE_CE_VALUE_MAX      1024 /* TSE_METADATA_VALUE_MAX: extensions live in metadata */
#define TSE_CE_EXTENSIONS_MAX 32
/* The metadata keys of CloudEvents attributes the envelope has no field for. */
#define TSE_CE_META           "ce."
/* The namespace of the UUID v5 a non-UUID id becomes. */
#define TSE_CE_ID_NAMESPACE   "6f0c7e2a-5b1d-4d8e-9a3c-2e4f6a8b0c1d"

/*
 * A CloudEvent in the JSON format (structured mode, one entry of a batch)
 * -> the REST envelope (event_type, source_service, id, subject, payload,
 * metadata, ...). *out: a new reference, caller releases. TSE_INVALID with
 * err->field the attribute; TSE_NOMEM.
 */
tse_status tse_ce_to_envelope(const json_t *ce, json_t **out, tse_error *err);

/*
 * Binary mode, one request header: a ce-<name> header (any case) becomes
 * attribute <name> of ce (a JSON object being built), its value
 * percent-decoded; any other header is ignored. TSE_INVALID naming the
 * attribute: a bad name, a bad escape, a repeated header, ce-data*.
 */
tse_status tse_ce_binary_header(json_t *ce, const char *name, const char *value, tse_error *err);

/*
 * Binary mode, the body and its Content-Type (NULL when none): JSON media
 * types become `data` (the body must parse), UTF-8 text (text/...) a string `data`,
 * anything else `data_base64`; the media type becomes datacontenttype. An
 * empty body is no data.
 */
tse_status tse_ce_binary_body(json_t *ce, const char *content_type, const char *body, size_t len,
                              tse_error *err);

/* The event as a CloudEvent in the JSON format; NULL when ev is NULL or
 * out of memory. Caller releases. */
json_t *tse_ce_from_event(const Tracseq__Events__V1__Event *ev);

/* An Event's proto3 JSON (j, may be NULL) as the REST API reads it: the
 * payload oneof's member (field numbers >= 20) moved under "payload", the
 * name clients publish it with. Returns j. */
json_t *tse_event_json_payload(json_t *j);

/*
 * A CloudEvent in the JSON format (as tse_ce_from_event makes) in binary
 * mode: each attribute but the data's as a "ce-<name>" member of headers
 * (percent-encoded as the HTTP binding asks), the data in *body (malloc'd,
 * caller frees; NULL and 0 when none) and its media type in *content_type
 * (borrowed from ce, or a static default). TSE_NOMEM.
 */
tse_status tse_ce_to_binary(const json_t *ce, json_t *headers, char **body, size_t *len,
                            const char **content_type);

/*
 * The protobuf format -> the JSON format (*out, a new reference), to go on
 * through tse_ce_to_envelope: the attributes map by name, each value in its
 * JSON form (ce_timestamp RFC 3339, ce_bytes base64); text_data is `data`
 * (parsed when datacontenttype is JSON), binary_data `data_base64`.
 * proto_data is refused (TSE_INVALID naming "proto_data"): send the packed
 * message as binary_data with datacontenttype application/protobuf.
 */
tse_status tse_ce_from_proto(const Io__Cloudevents__V1__CloudEvent *pb, json_t **out,
                             tse_error *err);

/* The envelope (tse_ce_to_envelope's) as an Event, its payload the generic
 * `data` Struct (*out: caller frees with protobuf_c_message_free_unpacked).
 * TSE_INVALID naming the Event's field when it does not fit. */
tse_status tse_ce_envelope_event(const json_t *env, Tracseq__Events__V1__Event **out,
                                 tse_error *err);

#endif
