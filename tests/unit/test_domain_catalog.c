/*
 * test_domain_catalog.c - the schema catalog against its two sources of
 * truth: the spec's event-catalog.md (its table rows are copied below
 * verbatim) and the comments of the domain .proto files (read at run
 * time), plus the protobuf-c descriptors the catalog points at, and the
 * ListEventTypes description built from it (tse_catalog_describe).
 *
 * The proto files are found through TSE_SOURCE_DIR (set by ctest) or, when
 * the binary runs on its own, relative to this file's path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/catalog.h"
#include "domain/validate.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

/* ---- the catalog document ------------------------------------------------------ */

typedef struct doc_row {
    const char *type;
    const char *message;
    const char *fields;
} doc_row;

/* The rows of event-catalog.md, in its order, as written there. */
static const doc_row doc[] = {
    {"sample.created", "SampleCreated",
     "sample_id uuid, barcode, sample_type, submitter_id uuid, lab_id uuid, metadata "
     "map<string,Value>?, created_at time"},
    {"sample.validated", "SampleValidated",
     "sample_id uuid, barcode, validator_id, validation_status, validation_notes?, validated_at "
     "time"},
    {"sample.status_changed", "SampleStatusChanged",
     "sample_id uuid, barcode, old_status, new_status, changed_by, reason?, changed_at time"},
    {"sample.stored", "SampleStored",
     "sample_id uuid, barcode, location_id, storage_zone, position?, stored_by, stored_at time"},
    {"sample.assigned_to_sequencing", "SampleAssignedToSequencing",
     "sample_id uuid, barcode, sequencing_job_id, assigned_by, assigned_at time"},
    {"sample.completed", "SampleCompleted",
     "sample_id uuid, barcode, completion_status, results_location?, completed_by, completed_at "
     "time"},
    {"storage.temperature_alert", "TemperatureAlert",
     "location_id, zone_name, current_temperature double, target_temperature double, "
     "threshold_type, sensor_id, alert_at time"},
    {"storage.capacity_warning", "CapacityWarning",
     "location_id, location_name, current_capacity int32, max_capacity int32, "
     "utilization_percent double, warning_at time"},
    {"storage.sensor_data_received", "SensorDataReceived",
     "sensor_id, location_id, sensor_type, measurements map<string,double>, timestamp time, "
     "received_at time"},
    {"auth.user_logged_in", "UserLoggedIn",
     "user_id, username, session_id, ip_address?, login_at time"},
    {"auth.user_logged_out", "UserLoggedOut",
     "user_id, username, session_id, logout_reason, logout_at time"},
    {"auth.login_failed", "LoginFailed", "username, failure_reason, ip_address?, failed_at time"},
    {"document.uploaded", "DocumentUploaded",
     "document_id, filename, file_type, file_size uint64, uploaded_by, uploaded_at time"},
    {"document.processing_completed", "DocumentProcessingCompleted",
     "document_id, filename, processing_status, extracted_data map<string,Value>, "
     "confidence_score double, completed_at time"},
    {"document.information_extracted", "DocumentInformationExtracted",
     "document_id, extraction_type, extracted_fields map<string,Value>, confidence_scores "
     "map<string,double>, extracted_at time"},
    {"sequencing.job_created", "SequencingJobCreated",
     "job_id, job_name, job_type, priority uint32, samples repeated uuid, created_by, created_at "
     "time"},
    {"sequencing.job_status_changed", "SequencingJobStatusChanged",
     "job_id, job_name, old_status, new_status, progress_percent double, updated_at time"},
    {"sequencing.job_completed", "SequencingJobCompleted",
     "job_id, job_name, completion_status, total_samples int32, successful_samples int32, "
     "failed_samples int32, completed_at time"},
};

#define N_DOC      (sizeof(doc) / sizeof(doc[0]))
#define MAX_FIELDS 16

typedef struct doc_field {
    char name[64];
    tse_field_rule rule;
} doc_field;

/*
 * Splits a row's field list ("sample_id uuid, barcode, metadata map<...>?")
 * and derives each field's rule: uuid -> UUID, repeated uuid -> UUID_LIST,
 * time -> STAMP, a bare name (a string without '?') -> REQUIRED, the rest
 * (numbers, maps, optional strings) -> FREE.
 */
static size_t parse_fields(const char *list, doc_field *out)
{
    size_t n = 0;
    const char *p = list;

    while (*p != '\0') {
        const char *end = strstr(p, ", ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[128];
        const char *type;
        bool optional;

        assert_true(len < sizeof(item) && n < MAX_FIELDS);
        memcpy(item, p, len);
        item[len] = '\0';
        optional = item[len - 1] == '?';
        type = strchr(item, ' ');
        snprintf(out[n].name, sizeof(out[n].name), "%.*s",
                 (int)(type ? (size_t)(type - item) : len - optional), item);
        type = type ? type + 1 : "";
        if (strcmp(type, "uuid") == 0)
            out[n].rule = TSE_FIELD_UUID;
        else if (strcmp(type, "repeated uuid") == 0)
            out[n].rule = TSE_FIELD_UUID_LIST;
        else if (strcmp(type, "time") == 0)
            out[n].rule = TSE_FIELD_STAMP;
        else if (type[0] == '\0' && !optional)
            out[n].rule = TSE_FIELD_REQUIRED;
        else
            out[n].rule = TSE_FIELD_FREE;
        n++;
        p += len;
        if (end)
            p += 2;
    }
    return n;
}

static const tse_catalog_entry *entry_at(size_t i)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    assert_true(i < count);
    return &entries[i];
}

/* ---- the document ---------------------------------------------------------------- */

static void catalog_lists_exactly_the_documented_types_in_order(void **state)
{
    size_t count = 0;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    assert_int_equal(count, N_DOC);
    assert_int_equal(count, 18);
    for (size_t i = 0; i < N_DOC; i++) {
        assert_string_equal(entries[i].event_type, doc[i].type);
        assert_ptr_equal(tse_catalog_find(doc[i].type), &entries[i]);
    }
}

static void catalog_messages_are_the_documented_ones_with_their_fields(void **state)
{
    for (size_t i = 0; i < N_DOC; i++) {
        const tse_catalog_entry *e = entry_at(i);
        doc_field fields[MAX_FIELDS];
        size_t n = parse_fields(doc[i].fields, fields);

        assert_string_equal(e->descriptor->short_name, doc[i].message);
        assert_int_equal(e->descriptor->n_fields, n);
        for (size_t f = 0; f < n; f++) {
            if (protobuf_c_message_descriptor_get_field_by_name(e->descriptor, fields[f].name) ==
                NULL)
                fail_msg("%s has no field %s", doc[i].message, fields[f].name);
        }
    }
}

static void catalog_rules_are_the_documented_ones(void **state)
{
    for (size_t i = 0; i < N_DOC; i++) {
        const tse_catalog_entry *e = entry_at(i);
        doc_field fields[MAX_FIELDS];
        size_t n = parse_fields(doc[i].fields, fields);

        for (size_t f = 0; f < n; f++) {
            tse_field_rule got = tse_catalog_field_rule(e, fields[f].name);
            if (got != fields[f].rule)
                fail_msg("%s.%s: rule %d, doc says %d", e->event_type, fields[f].name, (int)got,
                         (int)fields[f].rule);
        }
    }
}

/* ---- the descriptors -------------------------------------------------------------- */

static void catalog_rules_name_real_fields_of_a_fitting_type(void **state)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++) {
        size_t rules = 0;
        for (const tse_field_spec *s = entries[i].fields; s->name != NULL; s++, rules++) {
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(entries[i].descriptor, s->name);
            if (f == NULL) {
                fail_msg("%s: rule for unknown field %s", entries[i].event_type, s->name);
                return; /* not reached: fail_msg jumps out */
            }
            switch (s->rule) {
            case TSE_FIELD_REQUIRED:
            case TSE_FIELD_UUID:
                assert_int_equal(f->type, PROTOBUF_C_TYPE_STRING);
                assert_int_not_equal(f->label, PROTOBUF_C_LABEL_REPEATED);
                break;
            case TSE_FIELD_UUID_LIST:
                assert_int_equal(f->type, PROTOBUF_C_TYPE_STRING);
                assert_int_equal(f->label, PROTOBUF_C_LABEL_REPEATED);
                break;
            case TSE_FIELD_STAMP:
                assert_ptr_equal(f->descriptor, &google__protobuf__timestamp__descriptor);
                break;
            case TSE_FIELD_FREE: fail_msg("%s lists a FREE rule", entries[i].event_type);
            }
        }
        assert_true(rules > 0);
    }
}

static void catalog_stamps_every_timestamp_field(void **state)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++) {
        const ProtobufCMessageDescriptor *d = entries[i].descriptor;
        for (unsigned f = 0; f < d->n_fields; f++) {
            bool is_ts = d->fields[f].type == PROTOBUF_C_TYPE_MESSAGE &&
                         d->fields[f].descriptor == &google__protobuf__timestamp__descriptor;
            bool stamped =
                tse_catalog_field_rule(&entries[i], d->fields[f].name) == TSE_FIELD_STAMP;
            if (is_ts != stamped)
                fail_msg("%s.%s: timestamp %d, stamped %d", entries[i].event_type,
                         d->fields[f].name, is_ts, stamped);
        }
    }
}

static void catalog_payload_cases_are_the_event_oneof_members(void **state)
{
    const ProtobufCMessageDescriptor *ev = &tracseq__events__v1__event__descriptor;
    size_t count, typed = 0;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(ev, entries[i].payload_field);
        assert_non_null(f);
        assert_true(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
        assert_int_equal(f->id, (unsigned)entries[i].payload_case);
        assert_ptr_equal(f->descriptor, entries[i].descriptor);
        assert_ptr_equal(tse_catalog_find_case(entries[i].payload_case), &entries[i]);
    }
    /* Conversely, every typed member of the oneof belongs to an entry. */
    for (unsigned f = 0; f < ev->n_fields; f++) {
        if (!(ev->fields[f].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
            strcmp(ev->fields[f].name, "data") == 0)
            continue;
        assert_non_null(
            tse_catalog_find_case((Tracseq__Events__V1__Event__PayloadCase)ev->fields[f].id));
        typed++;
    }
    assert_int_equal(typed, count);
}

static void catalog_entries_have_version_and_description(void **state)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++) {
        assert_string_equal(entries[i].version, "1.0");
        assert_non_null(entries[i].description);
        assert_true(strlen(entries[i].description) > 10);
    }
}

/* ---- lookups ---------------------------------------------------------------------- */

static void catalog_find_returns_null_outside_the_catalog(void **state)
{
    assert_null(tse_catalog_find("transaction.started"));
    assert_null(tse_catalog_find("sample.created.extra"));
    assert_null(tse_catalog_find("Sample.created"));
    assert_null(tse_catalog_find("sample"));
    assert_null(tse_catalog_find(""));
    assert_null(tse_catalog_find(NULL));
    assert_null(tse_catalog_find_case(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA));
    assert_null(tse_catalog_find_case(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD__NOT_SET));
}

static void catalog_find_case_maps_a_case_to_its_entry(void **state)
{
    const tse_catalog_entry *e =
        tse_catalog_find_case(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SEQUENCING_JOB_CREATED);

    assert_non_null(e);
    assert_string_equal(e->event_type, "sequencing.job_created");
    assert_string_equal(e->payload_field, "sequencing_job_created");
}

static void catalog_field_rule_is_free_for_unlisted_or_unknown_fields(void **state)
{
    const tse_catalog_entry *e = tse_catalog_find("sample.created");

    assert_int_equal(tse_catalog_field_rule(e, "metadata"), TSE_FIELD_FREE);
    assert_int_equal(tse_catalog_field_rule(e, "no_such_field"), TSE_FIELD_FREE);
    assert_int_equal(tse_catalog_field_rule(e, NULL), TSE_FIELD_FREE);
    assert_int_equal(tse_catalog_field_rule(NULL, "barcode"), TSE_FIELD_FREE);
    assert_int_equal(tse_catalog_field_rule(e, "lab_id"), TSE_FIELD_UUID);
    assert_int_equal(tse_catalog_field_rule(e, "barcode"), TSE_FIELD_REQUIRED);
}

/* ---- the .proto comments ---------------------------------------------------------- */

static void source_dir(char *buf, size_t len)
{
    const char *env = getenv("TSE_SOURCE_DIR");
    const char *file = __FILE__, *cut;

    if (env != NULL && env[0] != '\0') {
        snprintf(buf, len, "%s", env);
        return;
    }
    /* __FILE__ is <root>/tests/unit/test_domain_catalog.c in CMake builds. */
    cut = strstr(file, "tests/unit/");
    assert_non_null(cut);
    if (cut == file)
        snprintf(buf, len, ".");
    else
        snprintf(buf, len, "%.*s", (int)(cut - file - 1), file);
}

static const tse_catalog_entry *entry_of_message(const char *name)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++)
        if (strcmp(entries[i].descriptor->short_name, name) == 0)
            return &entries[i];
    return NULL;
}

/*
 * The rule a field's comment and type call for: "Required, UUID" -> UUID,
 * "Required" -> REQUIRED, a repeated string "each a UUID" -> UUID_LIST, a
 * Timestamp -> STAMP, anything else -> FREE.
 */
static tse_field_rule rule_from_proto(const char *comment, const char *type)
{
    bool uuid = strstr(comment, "UUID") != NULL;

    if (strncmp(type, "repeated ", 9) == 0)
        return uuid ? TSE_FIELD_UUID_LIST : TSE_FIELD_FREE;
    if (strcmp(type, "google.protobuf.Timestamp") == 0)
        return TSE_FIELD_STAMP;
    if (strstr(comment, "Required") != NULL)
        return uuid ? TSE_FIELD_UUID : TSE_FIELD_REQUIRED;
    return TSE_FIELD_FREE;
}

/* Checks every field of every message in one domain .proto; returns how many. */
static size_t check_proto_file(const char *path)
{
    char line[512], comment[1024] = "", type[128], name[128];
    const tse_catalog_entry *e = NULL;
    size_t fields = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        fail_msg("cannot open %s", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        char msg[128];
        const char *p = line + strspn(line, " ");
        if (sscanf(line, "message %127s {", msg) == 1) {
            e = entry_of_message(msg);
            if (e == NULL)
                fail_msg("%s: message %s is in no catalog entry", path, msg);
            comment[0] = '\0';
        } else if (strncmp(p, "//", 2) == 0) {
            strncat(comment, p, sizeof(comment) - strlen(comment) - 1);
        } else if (e != NULL && strchr(p, '=') != NULL && strchr(p, ';') != NULL) {
            /* "<type words> <name> = <n>;": the name is the word before '='. */
            char *eq = strchr(p, '=');
            char *end = eq - 1, *start;
            while (end > p && *end == ' ')
                end--;
            start = end;
            while (start > p && start[-1] != ' ')
                start--;
            snprintf(name, sizeof(name), "%.*s", (int)(end - start + 1), start);
            snprintf(type, sizeof(type), "%.*s", (int)(start - p - 1), p);
            if (tse_catalog_field_rule(e, name) != rule_from_proto(comment, type))
                fail_msg("%s.%s: catalog rule %d, proto comment calls for %d", e->event_type, name,
                         (int)tse_catalog_field_rule(e, name), (int)rule_from_proto(comment, type));
            fields++;
            comment[0] = '\0';
        } else if (strchr(p, '}') != NULL) {
            e = NULL;
        }
    }
    fclose(f);
    return fields;
}

static void catalog_rules_match_the_proto_comments(void **state)
{
    static const char *files[] = {"sample", "storage", "auth", "document", "sequencing"};
    char root[512], path[700];
    size_t fields = 0, expected = 0, count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    source_dir(root, sizeof(root));
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/proto/tracseq/events/v1/%s.proto", root, files[i]);
        fields += check_proto_file(path);
    }
    /* Every field of every catalog message was seen, so none escaped the parse. */
    for (size_t i = 0; i < count; i++)
        expected += entries[i].descriptor->n_fields;
    assert_int_equal(fields, expected);
}

/* The description unpacks as a ListEventTypesResponse: every entry in
 * catalog order, every payload field with its rule, the generic pattern. */
static void catalog_describe_lists_every_entry_and_field(void **state)
{
    size_t n, len = 0;
    const tse_catalog_entry *entries = tse_catalog_entries(&n);
    uint8_t *bytes = tse_catalog_describe(&len);
    Tracseq__Events__V1__ListEventTypesResponse *r;

    assert_non_null(bytes);
    r = tracseq__events__v1__list_event_types_response__unpack(NULL, len, bytes);
    assert_non_null(r);
    assert_int_equal(r->n_event_types, n);
    assert_string_equal(r->generic_type_pattern, TSE_EVENT_TYPE_PATTERN);
    for (size_t i = 0; i < n; i++) {
        const Tracseq__Events__V1__EventTypeInfo *info = r->event_types[i];
        const ProtobufCMessageDescriptor *d = entries[i].descriptor;

        assert_string_equal(info->event_type, entries[i].event_type);
        assert_string_equal(info->message, d->name);
        assert_string_equal(info->payload_field, entries[i].payload_field);
        assert_int_equal(strncmp(info->domain, info->event_type, strlen(info->domain)), 0);
        assert_int_equal(info->event_type[strlen(info->domain)], '.');
        assert_int_equal(info->n_fields, d->n_fields);
        for (size_t j = 0; j < info->n_fields; j++) {
            tse_field_rule rule = tse_catalog_field_rule(&entries[i], d->fields[j].name);
            assert_string_equal(info->fields[j]->name, d->fields[j].name);
            assert_int_equal(info->fields[j]->number, (int32_t)d->fields[j].id);
            assert_int_equal(info->fields[j]->required,
                             rule == TSE_FIELD_REQUIRED || rule == TSE_FIELD_UUID);
        }
    }
    /* A name with underscores has its proto3 JSON name. */
    assert_string_equal(r->event_types[0]->fields[0]->name, "sample_id");
    assert_string_equal(r->event_types[0]->fields[0]->json_name, "sampleId");
    assert_string_equal(r->event_types[0]->fields[0]->format, "uuid");
    tracseq__events__v1__list_event_types_response__free_unpacked(r, NULL);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(catalog_lists_exactly_the_documented_types_in_order),
        cmocka_unit_test(catalog_messages_are_the_documented_ones_with_their_fields),
        cmocka_unit_test(catalog_rules_are_the_documented_ones),
        cmocka_unit_test(catalog_rules_name_real_fields_of_a_fitting_type),
        cmocka_unit_test(catalog_stamps_every_timestamp_field),
        cmocka_unit_test(catalog_payload_cases_are_the_event_oneof_members),
        cmocka_unit_test(catalog_entries_have_version_and_description),
        cmocka_unit_test(catalog_find_returns_null_outside_the_catalog),
        cmocka_unit_test(catalog_find_case_maps_a_case_to_its_entry),
        cmocka_unit_test(catalog_field_rule_is_free_for_unlisted_or_unknown_fields),
        cmocka_unit_test(catalog_rules_match_the_proto_comments),
        cmocka_unit_test(catalog_describe_lists_every_entry_and_field),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
