/*
 * cloudevents.h - CloudEvents 1.0 in the REST bridge: the mapping between a
 * CloudEvent (JSON format, or HTTP binary mode's ce-* headers and body) and
 * the REST envelope publish.c turns into a tracseq.events.v1.Event, and
 * back from an Event to a CloudEvent (structured or binary mode).
 *
 * No I/O: bytes and JSON in, JSON out, so the fuzz targets run the parsers
 * directly. Thread-safe (no state). Errors name the CloudEvents attribute
 * (err->field) and are the client's fault: the bridge answers them 400
 * (TSB_INVALID_CLOUDEVENT) and publishes nothing.
 *
 * The mapping (docs: rest-bridge/README.md, "CloudEvents"):
 *
 *   id              Event.id when it is a UUID; any other non-empty string
 *                   becomes the UUID v5 of (source, id) (TSB_CE_ID_NAMESPACE,
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
 *   any other extension (a-z0-9, 1..20 characters): metadata "ce.<name>",
 *                   its string form (CloudEvents' canonical string
 *                   encoding); returned as a string
 */
#ifndef TSB_BRIDGE_CLOUDEVENTS_H
#define TSB_BRIDGE_CLOUDEVENTS_H

#include <jansson.h>
#include <stddef.h>

#include "common/status.h"
#include "tracseq/events/v1/event.pb-c.h"

/* The longest id, extension name, source and attribute value accepted. */
#define TSB_CE_ID_MAX         256
#define TSB_CE_NAME_MAX       20
#define TSB_CE_SOURCE_MAX     64   /* TSE_SOURCE_SERVICE_MAX: source is the source_service */
#define TSB_CE_VALUE_MAX      1024 /* TSE_METADATA_VALUE_MAX: extensions live in metadata */
#define TSB_CE_EXTENSIONS_MAX 32
/* The metadata keys of CloudEvents attributes the envelope has no field for. */
#define TSB_CE_META           "ce."
/* The namespace of the UUID v5 a non-UUID id becomes. */
#define TSB_CE_ID_NAMESPACE   "6f0c7e2a-5b1d-4d8e-9a3c-2e4f6a8b0c1d"

/*
 * A CloudEvent in the JSON format (structured mode, one entry of a batch)
 * -> the REST envelope (event_type, source_service, id, subject, payload,
 * metadata, ...). *out: a new reference, caller releases. TSE_INVALID with
 * err->field the attribute; TSE_NOMEM.
 */
tse_status tsb_ce_to_envelope(const json_t *ce, json_t **out, tse_error *err);

/*
 * Binary mode, one request header: a ce-<name> header (any case) becomes
 * attribute <name> of ce (a JSON object being built), its value
 * percent-decoded; any other header is ignored. TSE_INVALID naming the
 * attribute: a bad name, a bad escape, a repeated header, ce-data*.
 */
tse_status tsb_ce_binary_header(json_t *ce, const char *name, const char *value, tse_error *err);

/*
 * Binary mode, the body and its Content-Type (NULL when none): JSON media
 * types become `data` (the body must parse), UTF-8 text (text/...) a string `data`,
 * anything else `data_base64`; the media type becomes datacontenttype. An
 * empty body is no data.
 */
tse_status tsb_ce_binary_body(json_t *ce, const char *content_type, const char *body, size_t len,
                              tse_error *err);

/* The event as a CloudEvent in the JSON format; NULL when ev is NULL or
 * out of memory. Caller releases. */
json_t *tsb_ce_from_event(const Tracseq__Events__V1__Event *ev);

/*
 * A CloudEvent in the JSON format (as tsb_ce_from_event makes) in binary
 * mode: each attribute but the data's as a "ce-<name>" member of headers
 * (percent-encoded as the HTTP binding asks), the data in *body (malloc'd,
 * caller frees; NULL and 0 when none) and its media type in *content_type
 * (borrowed from ce, or a static default). TSE_NOMEM.
 */
tse_status tsb_ce_to_binary(const json_t *ce, json_t *headers, char **body, size_t *len,
                            const char **content_type);

/* True when media (a Content-Type, parameters allowed) is JSON:
 * application/json or any +json type. */
bool tsb_ce_media_is_json(const char *media);

#endif
