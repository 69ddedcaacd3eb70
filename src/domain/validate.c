/*
 * validate.c - the envelope half of tse_event_prepare: checks every envelope
 * field, then fills the server-set ones (id, version, priority, timestamp,
 * correlation id) before handing the payload to payload.c. See validate.h.
 *
 * Invariants:
 * - All checks run before any change, so an event refused for its envelope
 *   is left as it came.
 * - Strings put into the event are malloc'd; a replaced string is freed
 *   unless it is protobuf_c_empty_string (the proto3 default, not ours to
 *   free), so protobuf_c_message_free_unpacked(&ev->base, NULL) stays right.
 * - Length limits count code points, and are checked after UTF-8 validity.
 */
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "domain/trace.h"

typedef Tracseq__Events__V1__Event event;

/* ---- helpers ----------------------------------------------------------------- */

static bool is_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* Valid UTF-8 of at most max characters; the error names field. */
static tse_status check_text(const char *field, const char *s, size_t max, tse_error *err)
{
    if (!tse_utf8_valid(s))
        return tse_error_set(err, TSE_INVALID, field, "%s must be valid UTF-8", field);
    if (tse_utf8_length(s) > max)
        return tse_error_set(err, TSE_INVALID, field, "%s must be at most %zu characters", field,
                             max);
    return TSE_OK;
}

/* C0 controls, DEL, and C1 controls (U+0080..U+009F, UTF-8 C2 80..C2 9F). */
static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7F || (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F))
            return true;
    return false;
}

/* ---- envelope checks, each for one field ------------------------------------------ */

typedef tse_status (*check_fn)(const event *ev, const char *fallback_correlation_id,
                               tse_error *err);

static tse_status check_event_type(const event *ev, const char *unused, tse_error *err)
{
    if (is_empty(ev->event_type))
        return tse_error_set(err, TSE_INVALID, "event_type", "event_type is required");
    if (!tse_utf8_valid(ev->event_type))
        return tse_error_set(err, TSE_INVALID, "event_type", "event_type must be valid UTF-8");
    if (!tse_event_type_valid(ev->event_type))
        return tse_error_set(err, TSE_INVALID, "event_type",
                             "event_type must match %s and be at most %d characters",
                             TSE_EVENT_TYPE_PATTERN, TSE_EVENT_TYPE_MAX);
    return TSE_OK;
}

static tse_status check_source_service(const event *ev, const char *unused, tse_error *err)
{
    tse_status st;

    if (is_empty(ev->source_service))
        return tse_error_set(err, TSE_INVALID, "source_service", "source_service is required");
    st = check_text("source_service", ev->source_service, TSE_SOURCE_SERVICE_MAX, err);
    if (st != TSE_OK)
        return st;
    if (has_control(ev->source_service))
        return tse_error_set(err, TSE_INVALID, "source_service",
                             "source_service must not contain control characters");
    return TSE_OK;
}

static tse_status check_id(const event *ev, const char *unused, tse_error *err)
{
    if (!is_empty(ev->id) && !tse_uuid_valid(ev->id))
        return tse_error_set(err, TSE_INVALID, "id",
                             "id must be a UUID (8-4-4-4-12 hex digits) or empty");
    return TSE_OK;
}

/* One number of a version at p: "0" or digits without a leading zero, at
 * most 6; the characters after it, or NULL. */
static const char *version_number(const char *p)
{
    size_t n = strspn(p, "0123456789");

    if (n == 0 || n > 6 || (n > 1 && p[0] == '0'))
        return NULL;
    return p + n;
}

/* MAJOR.MINOR (schema evolution, docs/schemas.md): MAJOR changes when a
 * schema breaks its readers (a new type, "v2", side by side); MINOR when it
 * only adds fields. Empty becomes TSE_DEFAULT_VERSION. */
static tse_status check_version(const event *ev, const char *unused, tse_error *err)
{
    const char *p;

    if (is_empty(ev->version))
        return TSE_OK;
    p = version_number(ev->version);
    p = p != NULL && *p == '.' ? version_number(p + 1) : NULL;
    if (p == NULL || *p != '\0')
        return tse_error_set(err, TSE_INVALID, "version",
                             "version must be MAJOR.MINOR, two numbers without leading zeros "
                             "(e.g. \"1.0\", \"2.3\"), or empty for \"%s\"",
                             TSE_DEFAULT_VERSION);
    return TSE_OK;
}

/*
 * The x-correlation-id call metadata stands in for an empty correlation_id.
 * It is checked only then, and refused rather than dropped when it is no
 * UUID: a caller who sent one expects to find it on the event.
 */
static tse_status check_correlation_id(const event *ev, const char *fallback, tse_error *err)
{
    if (!is_empty(ev->correlation_id)) {
        if (!tse_uuid_valid(ev->correlation_id))
            return tse_error_set(err, TSE_INVALID, "correlation_id",
                                 "correlation_id must be a UUID (8-4-4-4-12 hex digits)");
        return TSE_OK;
    }
    if (!is_empty(fallback) && !tse_uuid_valid(fallback))
        return tse_error_set(err, TSE_INVALID, "x-correlation-id",
                             "x-correlation-id must be a UUID (8-4-4-4-12 hex digits)");
    return TSE_OK;
}

static tse_status check_causation_id(const event *ev, const char *unused, tse_error *err)
{
    return check_text("causation_id", ev->causation_id, TSE_CAUSATION_ID_MAX, err);
}

static tse_status check_subject(const event *ev, const char *unused, tse_error *err)
{
    return check_text("subject", ev->subject, TSE_SUBJECT_MAX, err);
}

static tse_status check_priority(const event *ev, const char *unused, tse_error *err)
{
    /* 0 is unset: it becomes TSE_DEFAULT_PRIORITY. */
    if (ev->priority != 0 && (ev->priority < TSE_PRIORITY_MIN || ev->priority > TSE_PRIORITY_MAX))
        return tse_error_set(err, TSE_INVALID, "priority", "priority must be between %d and %d",
                             TSE_PRIORITY_MIN, TSE_PRIORITY_MAX);
    return TSE_OK;
}

static tse_status check_metadata_entry(const Tracseq__Events__V1__Event__MetadataEntry *m,
                                       tse_error *err)
{
    const char *key = m->key != NULL ? m->key : "";
    char field[TSE_ERROR_FIELD_MAX];

    if (key[0] == '\0')
        return tse_error_set(err, TSE_INVALID, "metadata", "metadata keys must not be empty");
    if (!tse_utf8_valid(key))
        return tse_error_set(err, TSE_INVALID, "metadata", "metadata keys must be valid UTF-8");
    snprintf(field, sizeof(field), "metadata.%s", key);
    tse_utf8_trim(field); /* a long key may have been cut mid-character */
    if (tse_utf8_length(key) > TSE_METADATA_KEY_MAX)
        return tse_error_set(err, TSE_INVALID, field, "metadata keys must be at most %d characters",
                             TSE_METADATA_KEY_MAX);
    /* The server writes schema_valid / schema_error; a client must not forge them. */
    if (strncmp(key, "schema_", 7) == 0)
        return tse_error_set(err, TSE_INVALID, field,
                             "metadata keys starting with \"schema_\" are reserved for the server");
    return check_text(field, m->value, TSE_METADATA_VALUE_MAX, err);
}

static tse_status check_metadata(const event *ev, const char *unused, tse_error *err)
{
    if (ev->n_metadata > TSE_METADATA_MAX_ENTRIES)
        return tse_error_set(err, TSE_INVALID, "metadata", "metadata must have at most %d entries",
                             TSE_METADATA_MAX_ENTRIES);
    for (size_t i = 0; i < ev->n_metadata; i++) {
        tse_status st =
            ev->metadata[i] != NULL ? check_metadata_entry(ev->metadata[i], err) : TSE_OK;
        if (st != TSE_OK)
            return st;
    }
    return TSE_OK;
}

/* W3C Trace Context; the call's metadata was adopted before (see
 * tse_event_adopt_trace), so only the event's own pair is checked. */
static tse_status check_trace(const event *ev, const char *unused, tse_error *err)
{
    return tse_trace_context_check(ev->traceparent, ev->tracestate, "traceparent", "tracestate",
                                   err);
}

static const check_fn envelope_checks[] = {
    check_event_type,   check_source_service, check_id,       check_version,  check_correlation_id,
    check_causation_id, check_subject,        check_priority, check_metadata, check_trace,
};

/* ---- server-set fields -------------------------------------------------------------- */

static tse_status set_string(char **slot, const char *value, tse_error *err)
{
    size_t n = strlen(value) + 1;
    char *copy = tse_malloc(n);

    if (copy == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    memcpy(copy, value, n);
    if (*slot != NULL && *slot != protobuf_c_empty_string)
        tse_free(*slot);
    *slot = copy;
    return TSE_OK;
}

static tse_status set_timestamp(event *ev, int64_t seconds, int32_t nanos, tse_error *err)
{
    if (ev->timestamp == NULL) {
        ev->timestamp = tse_malloc(sizeof(*ev->timestamp));
        if (ev->timestamp == NULL)
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        google__protobuf__timestamp__init(ev->timestamp);
    }
    ev->timestamp->seconds = seconds;
    ev->timestamp->nanos = nanos;
    return TSE_OK;
}

static tse_status set_defaults(event *ev, int64_t now_seconds, int32_t now_nanos,
                               const char *fallback_correlation_id, tse_prepare_result *result,
                               tse_error *err)
{
    char id[37];
    tse_status st = TSE_OK;

    if (is_empty(ev->id)) {
        tse_uuid_generate(id);
        st = set_string(&ev->id, id, err);
        result->id_generated = st == TSE_OK;
    }
    if (st == TSE_OK && is_empty(ev->version))
        st = set_string(&ev->version, TSE_DEFAULT_VERSION, err);
    if (st == TSE_OK && is_empty(ev->correlation_id) && !is_empty(fallback_correlation_id))
        st = set_string(&ev->correlation_id, fallback_correlation_id, err);
    if (st == TSE_OK)
        st = set_timestamp(ev, now_seconds, now_nanos, err);
    if (ev->priority == 0)
        ev->priority = TSE_DEFAULT_PRIORITY;
    return st;
}

tse_status tse_event_adopt_trace(Tracseq__Events__V1__Event *ev, const char *traceparent,
                                 size_t traceparent_len, const char *tracestate,
                                 size_t tracestate_len, tse_error *err)
{
    char *tp, *ts = NULL;

    if (ev == NULL || traceparent_len == 0 || !is_empty(ev->traceparent) ||
        !is_empty(ev->tracestate))
        return TSE_OK;
    tp = tse_malloc(traceparent_len + 1);
    if (tp != NULL && tracestate_len > 0)
        ts = tse_malloc(tracestate_len + 1);
    if (tp == NULL || (tracestate_len > 0 && ts == NULL)) {
        tse_free(tp);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    }
    memcpy(tp, traceparent, traceparent_len);
    tp[traceparent_len] = '\0';
    if (ev->traceparent != NULL && ev->traceparent != protobuf_c_empty_string)
        tse_free(ev->traceparent);
    ev->traceparent = tp;
    if (ts != NULL) {
        memcpy(ts, tracestate, tracestate_len);
        ts[tracestate_len] = '\0';
        if (ev->tracestate != NULL && ev->tracestate != protobuf_c_empty_string)
            tse_free(ev->tracestate);
        ev->tracestate = ts;
    }
    return TSE_OK;
}

/* ---- the whole ------------------------------------------------------------------- */

static tse_status prepare(event *ev, tse_validation_mode mode, int64_t now_seconds,
                          int32_t now_nanos, const char *fallback_correlation_id,
                          tse_prepare_result *result, tse_error *err)
{
    tse_status st;

    if (ev == NULL)
        return tse_error_set(err, TSE_INVALID, "event", "event is required");
    for (size_t i = 0; i < sizeof(envelope_checks) / sizeof(envelope_checks[0]); i++) {
        st = envelope_checks[i](ev, fallback_correlation_id, err);
        if (st != TSE_OK)
            return st;
    }
    st = set_defaults(ev, now_seconds, now_nanos, fallback_correlation_id, result, err);
    if (st != TSE_OK)
        return st;
    return tse_event_prepare_payload(ev, mode, result, err);
}

tse_status tse_event_prepare(Tracseq__Events__V1__Event *ev, tse_validation_mode mode,
                             int64_t now_seconds, int32_t now_nanos,
                             const char *fallback_correlation_id, tse_prepare_result *result,
                             tse_error *err)
{
    tse_prepare_result scratch;
    tse_status st;

    if (result == NULL)
        result = &scratch;
    result->id_generated = false;
    result->schema_valid = true;
    result->payload_changed = false;
    tse_error_clear(&result->schema_error);
    tse_error_clear(err);
    st = prepare(ev, mode, now_seconds, now_nanos, fallback_correlation_id, result, err);
    /* Fields and messages quote client text (metadata keys) and are cut at a
     * byte bound; keep them valid UTF-8 for the JSON and gRPC layers. */
    if (st != TSE_OK && err != NULL) {
        tse_utf8_trim(err->field);
        tse_utf8_trim(err->message);
    }
    return st;
}
