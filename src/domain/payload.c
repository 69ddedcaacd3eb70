/*
 * payload.c - an event's payload against its catalog schema: field rules,
 * stamps, Struct-to-typed conversion, and the lenient fallback to `data`.
 * See validate.h.
 *
 * Invariants:
 * - Every message, string and array this file hangs into an event is
 *   malloc'd, so protobuf_c_message_free_unpacked(&ev->base, NULL) frees the
 *   event whole on every path, success or failure.
 * - The event's payload is replaced only once its replacement is complete,
 *   so a failure part-way leaves the old payload in place.
 * - A payload that does not fit its schema (a "misfit") is reported in a
 *   local tse_error first; the mode decides whether it becomes the caller's
 *   error (strict) or the event's schema_error metadata (lenient).
 */
#include "domain/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "common/alloc.h"
#include "domain/payload_struct.h"

#define PAYLOAD_DATA TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA

/* ---- field access through descriptors --------------------------------------- */

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d,
                                                const char *name, ProtobufCType type)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);

    return f != NULL && f->type == type ? f : NULL;
}

static const char *string_at(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const char *s = *(char *const *)((const char *)msg + f->offset);

    return s != NULL ? s : "";
}

/* A catalog rule naming no field of the right type is a bug in catalog.c. */
static tse_status catalog_bug(const tse_catalog_entry *e, const char *field, tse_error *err)
{
    return tse_error_set(err, TSE_INTERNAL, NULL, "catalog entry %s names no usable field %s",
                         e->event_type, field);
}

/* ---- rule checks ---------------------------------------------------------- */

static tse_status check_uuid(const tse_catalog_entry *e, const char *path, const char *s,
                             tse_error *err)
{
    if (s[0] == '\0')
        return tse_error_set(err, TSE_INVALID, path, "%s is required for %s", path, e->event_type);
    if (!tse_uuid_valid(s))
        return tse_error_set(err, TSE_INVALID, path,
                             "%s must be a UUID (8-4-4-4-12 hex digits) for %s", path,
                             e->event_type);
    return TSE_OK;
}

static tse_status check_uuid_list(const tse_catalog_entry *e, const ProtobufCMessage *msg,
                                  const ProtobufCFieldDescriptor *f, tse_error *err)
{
    const char *base = (const char *)msg;
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    char *const *items = *(char **const *)(base + f->offset);
    char path[TSE_ERROR_FIELD_MAX];

    for (size_t i = 0; i < n; i++) {
        tse_status st;
        snprintf(path, sizeof(path), "payload.%s[%zu]", f->name, i);
        st = check_uuid(e, path, items[i] != NULL ? items[i] : "", err);
        if (st != TSE_OK)
            return st;
    }
    return TSE_OK;
}

static tse_status check_rule(const tse_catalog_entry *e, const ProtobufCMessage *msg,
                             const tse_field_spec *spec, tse_error *err)
{
    const ProtobufCFieldDescriptor *f;
    char path[TSE_ERROR_FIELD_MAX];

    if (spec->rule == TSE_FIELD_FREE || spec->rule == TSE_FIELD_STAMP)
        return TSE_OK;
    f = field_of(e->descriptor, spec->name, PROTOBUF_C_TYPE_STRING);
    if (f == NULL || (f->label == PROTOBUF_C_LABEL_REPEATED) != (spec->rule == TSE_FIELD_UUID_LIST))
        return catalog_bug(e, spec->name, err);
    if (spec->rule == TSE_FIELD_UUID_LIST)
        return check_uuid_list(e, msg, f, err);
    snprintf(path, sizeof(path), "payload.%s", f->name);
    if (spec->rule == TSE_FIELD_UUID)
        return check_uuid(e, path, string_at(msg, f), err);
    if (string_at(msg, f)[0] == '\0')
        return tse_error_set(err, TSE_INVALID, path, "%s is required for %s", path, e->event_type);
    return TSE_OK;
}

tse_status tse_payload_check(const tse_catalog_entry *e, const ProtobufCMessage *msg,
                             tse_error *err)
{
    if (e == NULL || msg == NULL || msg->descriptor != e->descriptor)
        return tse_error_set(err, TSE_INVALID, "payload", "payload is not a %s message",
                             e != NULL ? e->descriptor->name : "catalog");
    for (const tse_field_spec *spec = e->fields; spec->name != NULL; spec++) {
        tse_status st = check_rule(e, msg, spec, err);
        if (st != TSE_OK)
            return st;
    }
    return TSE_OK;
}

/* ---- stamps ---------------------------------------------------------------- */

tse_status tse_payload_stamp(const tse_catalog_entry *e, ProtobufCMessage *msg, int64_t seconds,
                             int32_t nanos, tse_error *err)
{
    for (const tse_field_spec *spec = e->fields; spec->name != NULL; spec++) {
        const ProtobufCFieldDescriptor *f;
        Google__Protobuf__Timestamp **slot, *ts;

        if (spec->rule != TSE_FIELD_STAMP)
            continue;
        f = field_of(e->descriptor, spec->name, PROTOBUF_C_TYPE_MESSAGE);
        if (f == NULL || f->descriptor != &google__protobuf__timestamp__descriptor)
            return catalog_bug(e, spec->name, err);
        slot = (Google__Protobuf__Timestamp **)((char *)msg + f->offset);
        if (*slot != NULL)
            continue;
        ts = tse_malloc(sizeof(*ts));
        if (ts == NULL)
            return tse_error_set(err, TSE_NOMEM, NULL, "out of memory stamping %s", f->name);
        google__protobuf__timestamp__init(ts);
        ts->seconds = seconds;
        ts->nanos = nanos;
        *slot = ts;
    }
    return TSE_OK;
}

/* ---- the event's oneof ------------------------------------------------------
 * Every member of the payload oneof is a message pointer at the same offset;
 * going through the descriptor avoids a switch over 19 union members.
 */

static const ProtobufCFieldDescriptor *payload_field(Tracseq__Events__V1__Event__PayloadCase c)
{
    if (c == TRACSEQ__EVENTS__V1__EVENT__PAYLOAD__NOT_SET)
        return NULL;
    return protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor,
                                                   (unsigned)c);
}

static ProtobufCMessage *payload_message(const Tracseq__Events__V1__Event *ev)
{
    const ProtobufCFieldDescriptor *f = payload_field(ev->payload_case);

    return f != NULL ? *(ProtobufCMessage *const *)((const char *)ev + f->offset) : NULL;
}

static const char *payload_name(const Tracseq__Events__V1__Event *ev)
{
    const ProtobufCFieldDescriptor *f = payload_field(ev->payload_case);

    return f != NULL ? f->name : "none";
}

/* Frees the current payload and puts msg, of case c, in its place. */
static void replace_payload(Tracseq__Events__V1__Event *ev,
                            Tracseq__Events__V1__Event__PayloadCase c, ProtobufCMessage *msg)
{
    ProtobufCMessage *old = payload_message(ev);

    if (old != NULL)
        protobuf_c_message_free_unpacked(old, NULL);
    ev->payload_case = c;
    *(ProtobufCMessage **)((char *)ev + payload_field(c)->offset) = msg;
}

/* ---- fitting ------------------------------------------------------------------
 * Each fit_* returns TSE_OK (fits; the event may now hold the typed payload),
 * TSE_INVALID (a misfit, described in *misfit) or another failure (also in
 * *misfit, e.g. TSE_NOMEM), which no mode forgives.
 */

/* Whether tse_payload_stamp would set a field of msg. */
static bool stamps_unset(const tse_catalog_entry *e, const ProtobufCMessage *msg)
{
    for (const tse_field_spec *spec = e->fields; spec->name != NULL; spec++) {
        const ProtobufCFieldDescriptor *f;
        if (spec->rule != TSE_FIELD_STAMP)
            continue;
        f = field_of(e->descriptor, spec->name, PROTOBUF_C_TYPE_MESSAGE);
        if (f == NULL || *(void *const *)((const char *)msg + f->offset) == NULL)
            return true;
    }
    return false;
}

static tse_status fit_typed(Tracseq__Events__V1__Event *ev, const tse_catalog_entry *e,
                            tse_error *misfit, bool *changed)
{
    ProtobufCMessage *msg = payload_message(ev);
    tse_status st = tse_payload_check(e, msg, misfit);

    if (st != TSE_OK)
        return st;
    *changed = stamps_unset(e, msg);
    return tse_payload_stamp(e, msg, ev->timestamp->seconds, ev->timestamp->nanos, misfit);
}

/* Rewords a codec error so it says which schema the payload missed. */
static void codec_misfit(const tse_catalog_entry *e, tse_error *misfit)
{
    char why[TSE_ERROR_MESSAGE_MAX], field[TSE_ERROR_FIELD_MAX];

    /* Copies: tse_error_set must not read what it is writing. */
    tse_error_prefix_field(misfit, "payload");
    memcpy(why, misfit->message, sizeof(why));
    memcpy(field, misfit->field, sizeof(field));
    tse_error_set(misfit, TSE_INVALID, field, "%s does not fit %s: %s", field, e->event_type, why);
}

/* The general conversion, through a JSON tree (see payload_struct.h). */
static tse_status struct_via_json(const Tracseq__Events__V1__Event *ev, const tse_catalog_entry *e,
                                  ProtobufCMessage **typed, tse_error *misfit)
{
    json_t *json = tse_pbjson_from_struct(ev->data);
    tse_status st;

    if (json == NULL)
        return tse_error_set(misfit, TSE_NOMEM, "payload", "out of memory reading the payload");
    st = tse_pbjson_to_message(json, e->descriptor, 0, typed, misfit);
    json_decref(json);
    if (st == TSE_INVALID)
        codec_misfit(e, misfit);
    return st;
}

static tse_status fit_struct(Tracseq__Events__V1__Event *ev, const tse_catalog_entry *e,
                             tse_error *misfit, bool *changed)
{
    ProtobufCMessage *typed = NULL;
    tse_status st = tse_payload_struct_fast(ev->data, e->descriptor, &typed);

    if (st == TSE_NOMEM)
        return tse_error_set(misfit, TSE_NOMEM, "payload", "out of memory reading the payload");
    if (typed == NULL)
        st = struct_via_json(ev, e, &typed, misfit);
    if (st != TSE_OK)
        return st;
    st = tse_payload_check(e, typed, misfit);
    if (st == TSE_OK)
        st = tse_payload_stamp(e, typed, ev->timestamp->seconds, ev->timestamp->nanos, misfit);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(typed, NULL);
        return st;
    }
    replace_payload(ev, e->payload_case, typed);
    *changed = true;
    return TSE_OK;
}

/* *changed: set when the payload is no longer as decoded (stamped, converted). */
static tse_status fit(Tracseq__Events__V1__Event *ev, const tse_catalog_entry *e, tse_error *misfit,
                      bool *changed)
{
    if (e == NULL) {
        if (ev->payload_case == PAYLOAD_DATA)
            return TSE_OK;
        return tse_error_set(misfit, TSE_INVALID, "payload",
                             "event type %s is outside the catalog and takes a data payload, "
                             "not %s",
                             ev->event_type, payload_name(ev));
    }
    if (ev->payload_case == e->payload_case)
        return fit_typed(ev, e, misfit, changed);
    if (ev->payload_case == PAYLOAD_DATA)
        return fit_struct(ev, e, misfit, changed);
    return tse_error_set(misfit, TSE_INVALID, "payload",
                         "payload %s does not fit event type %s, which takes %s", payload_name(ev),
                         e->event_type, e->payload_field);
}

/* ---- the lenient fallback ------------------------------------------------------ */

static tse_status to_data(Tracseq__Events__V1__Event *ev, tse_error *err)
{
    Google__Protobuf__Struct *s = NULL;
    json_t *json;
    tse_status st;

    if (ev->payload_case == PAYLOAD_DATA)
        return TSE_OK;
    json = tse_pbjson_from_message(payload_message(ev), 0);
    if (json == NULL)
        return tse_error_set(err, TSE_NOMEM, "payload", "out of memory converting the payload");
    st = tse_pbjson_to_struct(json, &s, err);
    json_decref(json);
    if (st != TSE_OK)
        return st;
    replace_payload(ev, PAYLOAD_DATA, &s->base);
    return TSE_OK;
}

/* Appends key=value to the metadata map; the array grows by malloc + copy. */
static tse_status add_metadata(Tracseq__Events__V1__Event *ev, const char *key, const char *value,
                               tse_error *err)
{
    /* An array of pointers: its elements are pointer-sized, whatever they point to. */
    const size_t slot = sizeof(void *);
    Tracseq__Events__V1__Event__MetadataEntry **arr, *entry;
    char *k = tse_strdup(key);
    char *v = tse_strdup(value);

    arr = tse_malloc((ev->n_metadata + 1) * slot);
    entry = tse_malloc(sizeof(*entry));
    if (k == NULL || v == NULL || arr == NULL || entry == NULL) {
        tse_free(k);
        tse_free(v);
        tse_free(arr);
        tse_free(entry);
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory adding metadata %s", key);
    }
    tracseq__events__v1__event__metadata_entry__init(entry);
    entry->key = k;
    entry->value = v;
    if (ev->n_metadata > 0)
        memcpy(arr, ev->metadata, ev->n_metadata * slot);
    arr[ev->n_metadata] = entry;
    tse_free(ev->metadata);
    ev->metadata = arr;
    ev->n_metadata++;
    return TSE_OK;
}

static tse_status fall_back(Tracseq__Events__V1__Event *ev, const tse_error *misfit,
                            tse_prepare_result *result, tse_error *err)
{
    char reason[TSE_ERROR_FIELD_MAX + TSE_ERROR_MESSAGE_MAX + 2];
    tse_status st;

    result->payload_changed = true; /* even part-way: the caller then discards the event */
    st = to_data(ev, err);
    if (st != TSE_OK)
        return st;
    snprintf(reason, sizeof(reason), "%s: %s", misfit->field, misfit->message);
    st = add_metadata(ev, "schema_valid", "false", err);
    if (st == TSE_OK)
        st = add_metadata(ev, "schema_error", reason, err);
    if (st != TSE_OK)
        return st;
    result->schema_valid = false;
    result->schema_error = *misfit;
    return TSE_OK;
}

/* ---- the payload half of tse_event_prepare --------------------------------------- */

tse_status tse_event_prepare_payload(Tracseq__Events__V1__Event *ev, tse_validation_mode mode,
                                     tse_prepare_result *result, tse_error *err)
{
    const ProtobufCMessage *msg = payload_message(ev);
    tse_error misfit;
    tse_status st;

    result->schema_valid = true;
    result->payload_changed = false;
    tse_error_clear(&result->schema_error);
    if (ev->timestamp == NULL)
        return tse_error_set(err, TSE_INTERNAL, "timestamp", "the event has no timestamp yet");
    if (msg == NULL)
        return tse_error_set(err, TSE_INVALID, "payload", "payload is required");
    /* Text that JSON cannot carry is refused in both modes: the lenient
     * fallback is JSON and could not hold it either. */
    st = tse_message_check_text(msg, "payload", err);
    if (st != TSE_OK)
        return st;
    tse_error_clear(&misfit);
    st = fit(ev, tse_catalog_find(ev->event_type), &misfit, &result->payload_changed);
    if (st == TSE_INVALID && mode == TSE_VALIDATION_LENIENT)
        return fall_back(ev, &misfit, result, err);
    if (st != TSE_OK && err != NULL)
        *err = misfit;
    return st;
}
