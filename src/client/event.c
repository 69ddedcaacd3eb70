/*
 * event.c - building events: the envelope options, a JSON payload for any
 * type, and one builder per catalog type that fills its protobuf-c message
 * directly (no JSON on that path).
 *
 * Invariants: a built event is the packed Event without id (unless
 * opts.event_id was given) and without source_service; see internal.h.
 * Builders borrow every argument and keep nothing but the packed bytes.
 */
#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "codec/pbjson.h"
#include "domain/catalog.h"
#include "domain/trace.h"
#include "domain/validate.h"

#define EXPORT __attribute__((visibility("default")))

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__Event__MetadataEntry MetadataEntry;

/* protobuf-c wants char * where we only read. */
#define S(x) ((char *)(x))

/* ============================== envelope ================================== */

static tse_client_status check_opts(const tse_client_publish_opts *o, tse_client_error *err)
{
    tse_error terr;

    if (o->priority != 0 && (o->priority < TSE_PRIORITY_MIN || o->priority > TSE_PRIORITY_MAX))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "priority",
                               "priority must be %d (highest) to %d, or 0 for the default %d",
                               TSE_PRIORITY_MIN, TSE_PRIORITY_MAX, TSE_DEFAULT_PRIORITY);
    if (o->event_id != NULL && o->event_id[0] != '\0' && !tse_uuid_valid(o->event_id))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "event_id",
                               "event_id must be a UUID (8-4-4-4-12 hex digits)");
    if (o->correlation_id != NULL && o->correlation_id[0] != '\0' &&
        !tse_uuid_valid(o->correlation_id))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "correlation_id",
                               "correlation_id must be a UUID (8-4-4-4-12 hex digits)");
    if (tse_trace_context_check(o->traceparent, o->tracestate, "traceparent", "tracestate",
                                &terr) != TSE_OK)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, terr.field, "%s",
                               terr.message);
    if (o->n_metadata > 0 && o->metadata == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "metadata",
                               "metadata is NULL but n_metadata is %zu", o->n_metadata);
    for (size_t i = 0; i < o->n_metadata; i++)
        if (o->metadata[i].key == NULL || o->metadata[i].key[0] == '\0' ||
            o->metadata[i].value == NULL)
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "metadata",
                                   "metadata entry %zu needs a non-empty key and a value", i);
    return TSE_CLIENT_OK;
}

static tse_client_status pack_into(Event *ev, bool has_id, tse_client_event **out,
                                   tse_client_error *err)
{
    tse_client_event *e = calloc(1, sizeof(*e));

    if (e == NULL)
        goto nomem;
    e->len = protobuf_c_message_get_packed_size(&ev->base);
    e->bytes = malloc(e->len ? e->len : 1);
    e->event_type = strdup(ev->event_type);
    if (e->bytes == NULL || e->event_type == NULL)
        goto nomem;
    protobuf_c_message_pack(&ev->base, e->bytes);
    e->has_id = has_id;
    *out = e;
    return TSE_CLIENT_OK;
nomem:
    tse_client_event_destroy(e);
    return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
}

/* Packs an Event (whose payload the caller set) with opts applied into a new
 * tse_client_event. */
static tse_client_status event_pack(Event *ev, const tse_client_publish_opts *opts,
                                    tse_client_event **out, tse_client_error *err)
{
    static const tse_client_publish_opts none = {0};
    MetadataEntry *entries = NULL, **ptrs = NULL;
    tse_client_status st;

    tse_client_error_clear(err);
    if (out == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "out", "out is NULL");
    if (opts == NULL)
        opts = &none;
    if ((st = check_opts(opts, err)) != TSE_CLIENT_OK)
        return st;
    ev->id = S(opts->event_id ? opts->event_id : "");
    ev->subject = S(opts->subject ? opts->subject : "");
    ev->correlation_id = S(opts->correlation_id ? opts->correlation_id : "");
    ev->causation_id = S(opts->causation_id ? opts->causation_id : "");
    ev->traceparent = S(opts->traceparent ? opts->traceparent : "");
    ev->tracestate = S(opts->tracestate ? opts->tracestate : "");
    ev->priority = opts->priority;
    if (opts->n_metadata > 0) {
        entries = calloc(opts->n_metadata, sizeof(*entries));
        ptrs = calloc(opts->n_metadata, sizeof(*ptrs));
        if (entries == NULL || ptrs == NULL) {
            st = tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < opts->n_metadata; i++) {
            tracseq__events__v1__event__metadata_entry__init(&entries[i]);
            entries[i].key = S(opts->metadata[i].key);
            entries[i].value = S(opts->metadata[i].value);
            ptrs[i] = &entries[i];
        }
        ev->n_metadata = opts->n_metadata;
        ev->metadata = ptrs;
    }
    st = pack_into(ev, ev->id[0] != '\0', out, err);
out:
    free(entries);
    free(ptrs);
    return st;
}

/* Keeps the last event_type seen (protobuf: the last occurrence wins). */
static bool keep_type(void *arg, const uint8_t *p, size_t n)
{
    char **type = arg;
    char *copy = strndup((const char *)p, n);

    if (copy == NULL)
        return false;
    free(*type);
    *type = copy;
    return true;
}

/* The bytes are scanned, not unpacked: the server decodes them anyway, and
 * this runs once per event a gateway publishes. */
EXPORT tse_client_status tse_client_event_from_envelope(const void *envelope, size_t len,
                                                        tse_client_event **out,
                                                        tse_client_error *err)
{
    tse_client_event *e;

    tse_client_error_clear(err);
    if (out == NULL || (envelope == NULL && len > 0))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, out ? "envelope" : "out",
                               "%s is NULL", out ? "envelope" : "out");
    if ((e = calloc(1, sizeof(*e))) == NULL || (e->bytes = malloc(len ? len : 1)) == NULL) {
        tse_client_event_destroy(e);
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    }
    memcpy(e->bytes, envelope, len);
    e->len = len;
    e->has_id = e->raw = true;
    if (!tse_client_wire_each(e->bytes, len, 2, keep_type, &e->event_type)) {
        tse_client_event_destroy(e);
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "envelope",
                               "envelope is not an encoded tracseq.events.v1.Event");
    }
    if (e->event_type == NULL && (e->event_type = strdup("")) == NULL) {
        tse_client_event_destroy(e);
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    }
    *out = e;
    return TSE_CLIENT_OK;
}

EXPORT const char *tse_client_event_type(const tse_client_event *ev)
{
    return ev != NULL ? ev->event_type : NULL;
}

EXPORT size_t tse_client_event_size(const tse_client_event *ev)
{
    return ev != NULL ? ev->len : 0;
}

EXPORT void tse_client_event_destroy(tse_client_event *ev)
{
    if (ev == NULL)
        return;
    free(ev->bytes);
    free(ev->event_type);
    free(ev);
}

/* ============================== JSON payloads ============================= */

/* Where Event's oneof member c is. */
static ProtobufCMessage **payload_slot(Event *ev, Tracseq__Events__V1__Event__PayloadCase c)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor, (int)c);

    return (ProtobufCMessage **)((char *)ev + f->offset);
}

/* Points Event's oneof member `payload_case` at msg. */
static void set_payload(Event *ev, Tracseq__Events__V1__Event__PayloadCase c, ProtobufCMessage *msg)
{
    *payload_slot(ev, c) = msg;
    ev->payload_case = c;
}

static tse_client_status parse_object(const char *text, const char *field, json_t **out,
                                      tse_client_error *err)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (j == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, field,
                               "%s is not valid JSON (line %d, column %d: %s)", field, jerr.line,
                               jerr.column, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, field,
                               "%s must be a JSON object", field);
    }
    *out = j;
    return TSE_CLIENT_OK;
}

/* The typed message of a catalog type, or the generic Struct of another. */
static tse_client_status json_payload(const char *type, const json_t *j, Event *ev,
                                      tse_client_error *err)
{
    const tse_catalog_entry *e = tse_catalog_find(type);
    ProtobufCMessage *msg = NULL;
    Google__Protobuf__Struct *s = NULL;
    tse_error terr;

    tse_error_clear(&terr);
    if (e != NULL) {
        if (tse_pbjson_to_message(j, e->descriptor, 0, &msg, &terr) != TSE_OK)
            return tse_client_from_tse_error(&terr, "payload", err);
        set_payload(ev, e->payload_case, msg);
        return TSE_CLIENT_OK;
    }
    if (tse_pbjson_to_struct(j, &s, &terr) != TSE_OK)
        return tse_client_from_tse_error(&terr, "payload", err);
    set_payload(ev, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA, &s->base);
    return TSE_CLIENT_OK;
}

EXPORT tse_client_status tse_client_event_from_json(const char *event_type,
                                                    const char *payload_json,
                                                    const tse_client_publish_opts *opts,
                                                    tse_client_event **out, tse_client_error *err)
{
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    json_t *j = NULL;
    tse_client_status st;

    tse_client_error_clear(err);
    if (event_type == NULL || !tse_event_type_valid(event_type))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "event_type",
                               "event_type must be dot-separated lower-case segments, at least "
                               "two, at most 128 characters (e.g. sample.created)");
    if (payload_json == NULL)
        payload_json = "{}";
    if ((st = parse_object(payload_json, "payload", &j, err)) != TSE_CLIENT_OK)
        return st;
    ev.event_type = S(event_type);
    st = json_payload(event_type, j, &ev, err);
    json_decref(j);
    if (st == TSE_CLIENT_OK) {
        /* json_payload set a payload: the event borrows it until packed. */
        ProtobufCMessage *payload = *payload_slot(&ev, ev.payload_case);

        st = event_pack(&ev, opts, out, err);
        protobuf_c_message_free_unpacked(payload, NULL);
    }
    return st;
}

/* ============================== typed builders ============================ */

/* Wraps a filled payload message into an event of its catalog type. */
static tse_client_status typed(Tracseq__Events__V1__Event__PayloadCase c, ProtobufCMessage *msg,
                               const tse_client_publish_opts *opts, tse_client_event **out,
                               tse_client_error *err)
{
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    const tse_catalog_entry *e = tse_catalog_find_case(c);

    ev.event_type = S(e->event_type);
    set_payload(&ev, c, msg);
    return event_pack(&ev, opts, out, err);
}

#define OPT(x) S((x) != NULL ? (x) : "")

/*
 * Sets the singular string fields of msg, in the order its message declares
 * them, to v[0..n) (NULL as ""): every builder takes its string arguments in
 * that order. Fields of other types the builders set by name.
 */
static void set_strings(ProtobufCMessage *msg, const char *const *v, size_t n)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    size_t k = 0;

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED) {
            assert(k < n);
            *(char **)((char *)msg + f->offset) = OPT(v[k]);
            k++;
        }
    }
    assert(k == n);
}

/* A list of strings as set_strings takes it: the array and its length. */
#define STRING_LIST(...)                                                                           \
    (const char *const[]){__VA_ARGS__},                                                            \
        sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)
#define STRINGS(msg, ...) set_strings(msg, STRING_LIST(__VA_ARGS__))

/* An event of a catalog type whose payload has only singular strings. */
static tse_client_status strings_event(Tracseq__Events__V1__Event__PayloadCase c,
                                       const char *const *v, size_t n,
                                       const tse_client_publish_opts *opts, tse_client_event **out,
                                       tse_client_error *err)
{
    const ProtobufCMessageDescriptor *d = tse_catalog_find_case(c)->descriptor;
    union {
        ProtobufCMessage base;
        char bytes[256];
    } m;

    assert(d->sizeof_message <= sizeof(m));
    protobuf_c_message_init(d, &m);
    set_strings(&m.base, v, n);
    return typed(c, &m.base, opts, out, err);
}

/* STRINGS_EVENT(SAMPLE_CREATED, sample_id, ...): that event, from the
 * builder's string arguments, opts, out and err. */
#define STRINGS_EVENT(CASE, ...)                                                                   \
    strings_event(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_##CASE, STRING_LIST(__VA_ARGS__), opts, out, \
                  err)

EXPORT tse_client_status tse_client_event_sample_created(
    tse_client_event **out, const char *sample_id, const char *barcode, const char *sample_type,
    const char *submitter_id, const char *lab_id, const tse_client_publish_opts *opts,
    tse_client_error *err)
{
    return STRINGS_EVENT(SAMPLE_CREATED, sample_id, barcode, sample_type, submitter_id, lab_id);
}

EXPORT tse_client_status tse_client_event_sample_validated(
    tse_client_event **out, const char *sample_id, const char *barcode, const char *validator_id,
    const char *validation_status, const char *validation_notes,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    return STRINGS_EVENT(SAMPLE_VALIDATED, sample_id, barcode, validator_id, validation_status,
                         validation_notes);
}

EXPORT tse_client_status tse_client_event_sample_status_changed(
    tse_client_event **out, const char *sample_id, const char *barcode, const char *old_status,
    const char *new_status, const char *changed_by, const char *reason,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    return STRINGS_EVENT(SAMPLE_STATUS_CHANGED, sample_id, barcode, old_status, new_status,
                         changed_by, reason);
}

EXPORT tse_client_status tse_client_event_sample_stored(
    tse_client_event **out, const char *sample_id, const char *barcode, const char *location_id,
    const char *storage_zone, const char *position, const char *stored_by,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    return STRINGS_EVENT(SAMPLE_STORED, sample_id, barcode, location_id, storage_zone, position,
                         stored_by);
}

EXPORT tse_client_status tse_client_event_sample_assigned_to_sequencing(
    tse_client_event **out, const char *sample_id, const char *barcode,
    const char *sequencing_job_id, const char *assigned_by, const tse_client_publish_opts *opts,
    tse_client_error *err)
{
    return STRINGS_EVENT(SAMPLE_ASSIGNED_TO_SEQUENCING, sample_id, barcode, sequencing_job_id,
                         assigned_by);
}

EXPORT tse_client_status tse_client_event_sample_completed(
    tse_client_event **out, const char *sample_id, const char *barcode,
    const char *completion_status, const char *results_location, const char *completed_by,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    return STRINGS_EVENT(SAMPLE_COMPLETED, sample_id, barcode, completion_status, results_location,
                         completed_by);
}

EXPORT tse_client_status tse_client_event_temperature_alert(
    tse_client_event **out, const char *location_id, const char *zone_name,
    double current_temperature, double target_temperature, const char *threshold_type,
    const char *sensor_id, const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__TemperatureAlert m = TRACSEQ__EVENTS__V1__TEMPERATURE_ALERT__INIT;

    STRINGS(&m.base, location_id, zone_name, threshold_type, sensor_id);
    m.current_temperature = current_temperature;
    m.target_temperature = target_temperature;
    return typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_TEMPERATURE_ALERT, &m.base, opts, out, err);
}

EXPORT tse_client_status tse_client_event_capacity_warning(
    tse_client_event **out, const char *location_id, const char *location_name,
    int32_t current_capacity, int32_t max_capacity, double utilization_percent,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__CapacityWarning m = TRACSEQ__EVENTS__V1__CAPACITY_WARNING__INIT;

    STRINGS(&m.base, location_id, location_name);
    m.current_capacity = current_capacity;
    m.max_capacity = max_capacity;
    m.utilization_percent = utilization_percent;
    return typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_CAPACITY_WARNING, &m.base, opts, out, err);
}

/*
 * map<string,double> fields: protobuf-c wants an array of entry pointers.
 * Each message type has its own entry type, but all of them are
 * {base, key, value} with the same layout, so one helper fills them given
 * the entry descriptor.
 */
typedef struct number_entry {
    ProtobufCMessage base;
    char *key;
    double value;
} number_entry;

static tse_client_status number_entries(const tse_client_number *in, size_t n,
                                        const ProtobufCMessageDescriptor *d, const char *field,
                                        number_entry **entries, number_entry ***ptrs,
                                        tse_client_error *err)
{
    *entries = NULL;
    *ptrs = NULL;
    if (n == 0)
        return TSE_CLIENT_OK;
    if (in == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, field, "%s is NULL", field);
    *entries = calloc(n, sizeof(**entries));
    *ptrs = calloc(n, sizeof(**ptrs));
    if (*entries == NULL || *ptrs == NULL) {
        free(*entries);
        free(*ptrs);
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (in[i].name == NULL) {
            free(*entries);
            free(*ptrs);
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, field,
                                   "%s entry %zu has no name", field, i);
        }
        protobuf_c_message_init(d, &(*entries)[i]);
        (*entries)[i].key = S(in[i].name);
        (*entries)[i].value = in[i].value;
        (*ptrs)[i] = &(*entries)[i];
    }
    return TSE_CLIENT_OK;
}

_Static_assert(sizeof(number_entry) ==
                   sizeof(Tracseq__Events__V1__SensorDataReceived__MeasurementsEntry),
               "map<string,double> entries share one layout");

EXPORT tse_client_status tse_client_event_sensor_data_received(
    tse_client_event **out, const char *sensor_id, const char *location_id, const char *sensor_type,
    const tse_client_number *measurements, size_t n_measurements,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__SensorDataReceived m = TRACSEQ__EVENTS__V1__SENSOR_DATA_RECEIVED__INIT;
    number_entry *entries, **ptrs;
    tse_client_status st =
        number_entries(measurements, n_measurements,
                       &tracseq__events__v1__sensor_data_received__measurements_entry__descriptor,
                       "measurements", &entries, &ptrs, err);

    if (st != TSE_CLIENT_OK)
        return st;
    STRINGS(&m.base, sensor_id, location_id, sensor_type);
    m.n_measurements = n_measurements;
    m.measurements = (Tracseq__Events__V1__SensorDataReceived__MeasurementsEntry **)ptrs;
    st = typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SENSOR_DATA_RECEIVED, &m.base, opts, out, err);
    free(entries);
    free(ptrs);
    return st;
}

EXPORT tse_client_status tse_client_event_user_logged_in(
    tse_client_event **out, const char *user_id, const char *username, const char *session_id,
    const char *ip_address, const tse_client_publish_opts *opts, tse_client_error *err)
{
    return STRINGS_EVENT(USER_LOGGED_IN, user_id, username, session_id, ip_address);
}

EXPORT tse_client_status tse_client_event_user_logged_out(
    tse_client_event **out, const char *user_id, const char *username, const char *session_id,
    const char *logout_reason, const tse_client_publish_opts *opts, tse_client_error *err)
{
    return STRINGS_EVENT(USER_LOGGED_OUT, user_id, username, session_id, logout_reason);
}

EXPORT tse_client_status tse_client_event_login_failed(tse_client_event **out, const char *username,
                                                       const char *failure_reason,
                                                       const char *ip_address,
                                                       const tse_client_publish_opts *opts,
                                                       tse_client_error *err)
{
    return STRINGS_EVENT(LOGIN_FAILED, username, failure_reason, ip_address);
}

EXPORT tse_client_status tse_client_event_document_uploaded(
    tse_client_event **out, const char *document_id, const char *filename, const char *file_type,
    uint64_t file_size, const char *uploaded_by, const tse_client_publish_opts *opts,
    tse_client_error *err)
{
    Tracseq__Events__V1__DocumentUploaded m = TRACSEQ__EVENTS__V1__DOCUMENT_UPLOADED__INIT;

    STRINGS(&m.base, document_id, filename, file_type, uploaded_by);
    m.file_size = file_size;
    return typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DOCUMENT_UPLOADED, &m.base, opts, out, err);
}

/*
 * map<string,Value> fields from a JSON object text: the message gets them
 * through the JSON codec, which decodes the object as that one field.
 * field names the argument for errors.
 */
static tse_client_status value_map(ProtobufCMessage *msg, const char *field, const char *json_text,
                                   ProtobufCMessage **decoded, tse_client_error *err)
{
    json_t *obj = NULL, *wrap;
    tse_error terr;
    tse_client_status st;

    *decoded = NULL;
    if (json_text == NULL)
        return TSE_CLIENT_OK;
    if ((st = parse_object(json_text, field, &obj, err)) != TSE_CLIENT_OK)
        return st;
    wrap = json_pack("{sO}", field, obj);
    json_decref(obj);
    if (wrap == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    tse_error_clear(&terr);
    if (tse_pbjson_to_message(wrap, msg->descriptor, 0, decoded, &terr) != TSE_OK)
        st = tse_client_from_tse_error(&terr, NULL, err);
    json_decref(wrap);
    return st;
}

EXPORT tse_client_status tse_client_event_document_processing_completed(
    tse_client_event **out, const char *document_id, const char *filename,
    const char *processing_status, const char *extracted_data_json, double confidence_score,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__DocumentProcessingCompleted m =
        TRACSEQ__EVENTS__V1__DOCUMENT_PROCESSING_COMPLETED__INIT;
    Tracseq__Events__V1__DocumentProcessingCompleted *d;
    tse_client_status st =
        value_map(&m.base, "extracted_data", extracted_data_json, (ProtobufCMessage **)&d, err);

    if (st != TSE_CLIENT_OK)
        return st;
    STRINGS(&m.base, document_id, filename, processing_status);
    m.confidence_score = confidence_score;
    if (d != NULL) {
        m.n_extracted_data = d->n_extracted_data;
        m.extracted_data = d->extracted_data;
    }
    st = typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DOCUMENT_PROCESSING_COMPLETED, &m.base, opts,
               out, err);
    protobuf_c_message_free_unpacked(d ? &d->base : NULL, NULL);
    return st;
}

EXPORT tse_client_status tse_client_event_document_information_extracted(
    tse_client_event **out, const char *document_id, const char *extraction_type,
    const char *extracted_fields_json, const tse_client_number *confidence_scores,
    size_t n_confidence_scores, const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__DocumentInformationExtracted m =
        TRACSEQ__EVENTS__V1__DOCUMENT_INFORMATION_EXTRACTED__INIT;
    Tracseq__Events__V1__DocumentInformationExtracted *d = NULL;
    number_entry *entries = NULL, **ptrs = NULL;
    tse_client_status st =
        value_map(&m.base, "extracted_fields", extracted_fields_json, (ProtobufCMessage **)&d, err);

    if (st == TSE_CLIENT_OK)
        st = number_entries(
            confidence_scores, n_confidence_scores,
            &tracseq__events__v1__document_information_extracted__confidence_scores_entry__descriptor,
            "confidence_scores", &entries, &ptrs, err);
    if (st != TSE_CLIENT_OK)
        goto out;
    STRINGS(&m.base, document_id, extraction_type);
    if (d != NULL) {
        m.n_extracted_fields = d->n_extracted_fields;
        m.extracted_fields = d->extracted_fields;
    }
    m.n_confidence_scores = n_confidence_scores;
    m.confidence_scores =
        (Tracseq__Events__V1__DocumentInformationExtracted__ConfidenceScoresEntry **)ptrs;
    st = typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DOCUMENT_INFORMATION_EXTRACTED, &m.base, opts,
               out, err);
out:
    free(entries);
    free(ptrs);
    protobuf_c_message_free_unpacked(d ? &d->base : NULL, NULL);
    return st;
}

EXPORT tse_client_status tse_client_event_sequencing_job_created(
    tse_client_event **out, const char *job_id, const char *job_name, const char *job_type,
    uint32_t priority, const char *const *samples, size_t n_samples, const char *created_by,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__SequencingJobCreated m = TRACSEQ__EVENTS__V1__SEQUENCING_JOB_CREATED__INIT;

    if (n_samples > 0 && samples == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "samples",
                               "samples is NULL but n_samples is %zu", n_samples);
    for (size_t i = 0; i < n_samples; i++)
        if (samples[i] == NULL)
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "samples",
                                   "samples[%zu] is NULL", i);
    STRINGS(&m.base, job_id, job_name, job_type, created_by);
    m.priority = priority;
    m.n_samples = n_samples;
    m.samples = (char **)samples;
    return typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SEQUENCING_JOB_CREATED, &m.base, opts, out,
                 err);
}

EXPORT tse_client_status tse_client_event_sequencing_job_status_changed(
    tse_client_event **out, const char *job_id, const char *job_name, const char *old_status,
    const char *new_status, double progress_percent, const tse_client_publish_opts *opts,
    tse_client_error *err)
{
    Tracseq__Events__V1__SequencingJobStatusChanged m =
        TRACSEQ__EVENTS__V1__SEQUENCING_JOB_STATUS_CHANGED__INIT;

    STRINGS(&m.base, job_id, job_name, old_status, new_status);
    m.progress_percent = progress_percent;
    return typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SEQUENCING_JOB_STATUS_CHANGED, &m.base, opts,
                 out, err);
}

EXPORT tse_client_status tse_client_event_sequencing_job_completed(
    tse_client_event **out, const char *job_id, const char *job_name, const char *completion_status,
    int32_t total_samples, int32_t successful_samples, int32_t failed_samples,
    const tse_client_publish_opts *opts, tse_client_error *err)
{
    Tracseq__Events__V1__SequencingJobCompleted m =
        TRACSEQ__EVENTS__V1__SEQUENCING_JOB_COMPLETED__INIT;

    STRINGS(&m.base, job_id, job_name, completion_status);
    m.total_samples = total_samples;
    m.successful_samples = successful_samples;
    m.failed_samples = failed_samples;
    return typed(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SEQUENCING_JOB_COMPLETED, &m.base, opts, out,
                 err);
}
