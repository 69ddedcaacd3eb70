/*
 * test_client_sdk.c - the client SDK without a server: option defaults and
 * checks, error mapping, what every typed builder encodes, envelope
 * options, JSON payload errors naming their field, the wire form of a
 * publish request, and decoding deliveries into event views.
 *
 * Invariant of this file: encoded events are checked by decoding them with
 * protobuf-c, never by comparing bytes the SDK itself produced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <grpc/grpc.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "domain/validate.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

typedef Tracseq__Events__V1__Event Event;

/* Decodes a built event; the caller frees it. */
static Event *unpack(const tse_client_event *ev)
{
    Event *e = tracseq__events__v1__event__unpack(NULL, ev->len, ev->bytes);

    assert_non_null(e);
    return e;
}

/* ============================== options =================================== */

static void test_options_default_to_env_then_localhost(void **state)
{
    tse_client_options o;

    unsetenv("TRACSEQ_EVENTS_SERVER");
    unsetenv("TRACSEQ_SOURCE_SERVICE");
    assert_int_equal(tse_client_options_resolve(NULL, &o, NULL), TSE_CLIENT_OK);
    assert_string_equal(o.target, "localhost:50051");
    assert_string_equal(o.source_service, "tracseq-client");
    assert_int_equal(o.timeout_ms, 10000);
    assert_int_equal(o.reconnect_initial_ms, 100);
    assert_int_equal(o.reconnect_max_ms, 5000);
    setenv("TRACSEQ_EVENTS_SERVER", "events.lab:6000", 1);
    assert_int_equal(tse_client_options_resolve(NULL, &o, NULL), TSE_CLIENT_OK);
    assert_string_equal(o.target, "events.lab:6000");
    unsetenv("TRACSEQ_EVENTS_SERVER");
}

static void test_bad_options_are_refused_naming_the_option(void **state)
{
    tse_client_options in = {0}, out;
    tse_client_error err;
    char long_name[80];

    in.source_service = "";
    assert_int_equal(tse_client_options_resolve(&in, &out, &err), TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "source_service");
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    in.source_service = long_name;
    assert_int_equal(tse_client_options_resolve(&in, &out, &err), TSE_CLIENT_INVALID_ARGUMENT);
    in.source_service = "lims";
    in.timeout_ms = -1;
    assert_int_equal(tse_client_options_resolve(&in, &out, &err), TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "timeout_ms");
    in.timeout_ms = 0;
    in.reconnect_initial_ms = 500;
    in.reconnect_max_ms = 100;
    assert_int_equal(tse_client_options_resolve(&in, &out, &err), TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "reconnect_max_ms");
    in.reconnect_initial_ms = in.reconnect_max_ms = 0;
    in.token = "abc\ndef";
    assert_int_equal(tse_client_options_resolve(&in, &out, &err), TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "token");
    in.token = NULL;
    in.target = "";
    assert_int_equal(tse_client_connect(&in, &(tse_client *){NULL}, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "target");
}

/* ============================== errors ==================================== */

static void test_grpc_codes_map_to_sdk_statuses(void **state)
{
    static const struct {
        grpc_status_code code;
        tse_client_status st;
    } map[] = {
        {GRPC_STATUS_OK, TSE_CLIENT_OK},
        {GRPC_STATUS_CANCELLED, TSE_CLIENT_CANCELLED},
        {GRPC_STATUS_UNKNOWN, TSE_CLIENT_INTERNAL},
        {GRPC_STATUS_INVALID_ARGUMENT, TSE_CLIENT_INVALID_ARGUMENT},
        {GRPC_STATUS_DEADLINE_EXCEEDED, TSE_CLIENT_DEADLINE_EXCEEDED},
        {GRPC_STATUS_NOT_FOUND, TSE_CLIENT_NOT_FOUND},
        {GRPC_STATUS_ALREADY_EXISTS, TSE_CLIENT_ALREADY_EXISTS},
        {GRPC_STATUS_PERMISSION_DENIED, TSE_CLIENT_PERMISSION_DENIED},
        {GRPC_STATUS_RESOURCE_EXHAUSTED, TSE_CLIENT_RESOURCE_EXHAUSTED},
        {GRPC_STATUS_FAILED_PRECONDITION, TSE_CLIENT_FAILED_PRECONDITION},
        {GRPC_STATUS_ABORTED, TSE_CLIENT_UNAVAILABLE},
        {GRPC_STATUS_UNIMPLEMENTED, TSE_CLIENT_UNIMPLEMENTED},
        {GRPC_STATUS_INTERNAL, TSE_CLIENT_INTERNAL},
        {GRPC_STATUS_UNAVAILABLE, TSE_CLIENT_UNAVAILABLE},
        {GRPC_STATUS_UNAUTHENTICATED, TSE_CLIENT_UNAUTHENTICATED},
    };

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        assert_int_equal(tse_client_status_from_grpc(map[i].code), map[i].st);
    assert_string_equal(tse_client_status_name(TSE_CLIENT_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(tse_client_status_name(TSE_CLIENT_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    assert_string_equal(tse_client_status_name((tse_client_status)999), "UNKNOWN");
}

/* The codes the SDK chooses itself (a cancel, a publish stream that ended
 * before answering) come from its one table, and read back as the status
 * they stand for; a status without a code of its own is INTERNAL. */
static void test_sdk_statuses_map_back_to_grpc_codes(void **state)
{
    for (int st = TSE_CLIENT_OK; st <= TSE_CLIENT_INTERNAL; st++)
        assert_int_equal(
            tse_client_status_from_grpc(tse_client_grpc_from_status((tse_client_status)st)), st);
    assert_int_equal(tse_client_grpc_from_status(TSE_CLIENT_UNAVAILABLE), GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(tse_client_grpc_from_status(TSE_CLIENT_NO_MEMORY), GRPC_STATUS_INTERNAL);
}

static void test_server_details_keep_the_message_and_lift_the_field(void **state)
{
    static const char details[] = "event.payload.barcode: barcode is required";
    tse_client_error err;

    assert_int_equal(tse_client_from_grpc_status(GRPC_STATUS_INVALID_ARGUMENT, details,
                                                 strlen(details), NULL, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_int_equal(err.grpc_code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_string_equal(err.field, "event.payload.barcode");
    assert_string_equal(err.message, details);
    /* A sentence is not a field. */
    assert_int_equal(tse_client_from_grpc_status(GRPC_STATUS_UNAVAILABLE, "redis is down: retry",
                                                 20, NULL, &err),
                     TSE_CLIENT_UNAVAILABLE);
    assert_string_equal(err.field, "");
    /* Empty details still give a message. */
    tse_client_from_grpc_status(GRPC_STATUS_NOT_FOUND, NULL, 0, NULL, &err);
    assert_string_equal(err.message, "the call failed with NOT_FOUND");
}

/* A packed google.rpc.Status with one BadRequest field violation, built here
 * with protobuf-c as any server would, as a grpc-status-details-bin value. */
static grpc_slice bad_request_status(const char *type_url, const char *field)
{
    Google__Rpc__BadRequest__FieldViolation fv = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation *fvs[] = {&fv};
    Google__Rpc__BadRequest bad = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    Google__Protobuf__Any *anys[] = {&any};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    uint8_t bad_bytes[256];
    grpc_slice out;

    fv.field = (char *)field;
    fv.description = "must be between 1 and 5";
    bad.n_field_violations = 1;
    bad.field_violations = fvs;
    any.type_url = (char *)type_url;
    any.value.len = protobuf_c_message_pack(&bad.base, bad_bytes);
    any.value.data = bad_bytes;
    st.code = GRPC_STATUS_INVALID_ARGUMENT;
    st.message = "a sentence: whose head is no field";
    st.n_details = 1;
    st.details = anys;
    out = grpc_slice_malloc(protobuf_c_message_get_packed_size(&st.base));
    protobuf_c_message_pack(&st.base, GRPC_SLICE_START_PTR(out));
    return out;
}

static void test_field_comes_from_status_details_not_the_text(void **state)
{
    static const char text[] = "a sentence: whose head is no field";
    grpc_metadata md[2];
    grpc_metadata_array trailing = {.count = 2, .capacity = 2, .metadata = md};
    tse_client_error err;

    md[0].key = grpc_slice_from_static_string("x-other");
    md[0].value = grpc_slice_from_static_string("1");
    md[1].key = grpc_slice_from_static_string("grpc-status-details-bin");
    md[1].value = bad_request_status("type.googleapis.com/google.rpc.BadRequest", "event.priority");
    assert_int_equal(tse_client_from_grpc_status(GRPC_STATUS_INVALID_ARGUMENT, text, strlen(text),
                                                 &trailing, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "event.priority");
    assert_string_equal(err.message, text);
    grpc_slice_unref(md[1].value);

    /* Details of another type say nothing of a field: the text decides. */
    md[1].value = bad_request_status("type.googleapis.com/google.rpc.DebugInfo", "event.priority");
    tse_client_from_grpc_status(GRPC_STATUS_INVALID_ARGUMENT, "event.id: must be a UUID", 24,
                                &trailing, &err);
    assert_string_equal(err.field, "event.id");
    grpc_slice_unref(md[1].value);

    /* Bytes that are no Status: the text decides. */
    md[1].value = grpc_slice_from_static_string("\xff\xff\xff");
    tse_client_from_grpc_status(GRPC_STATUS_INVALID_ARGUMENT, text, strlen(text), &trailing, &err);
    assert_string_equal(err.field, "");
}

static void test_problem_is_the_message_without_its_field(void **state)
{
    tse_client_error err = {.status = TSE_CLIENT_INVALID_ARGUMENT};

    snprintf(err.field, sizeof(err.field), "payload.barcode");
    snprintf(err.message, sizeof(err.message), "payload.barcode: barcode is required");
    assert_string_equal(tse_client_error_problem(&err), "barcode is required");
    /* A message that does not open with the field is kept whole. */
    snprintf(err.message, sizeof(err.message), "payload.barcodes: too many");
    assert_string_equal(tse_client_error_problem(&err), "payload.barcodes: too many");
    err.field[0] = '\0';
    snprintf(err.message, sizeof(err.message), "redis is down: retry");
    assert_string_equal(tse_client_error_problem(&err), "redis is down: retry");
    assert_string_equal(tse_client_error_problem(NULL), "");
}

static void test_long_server_details_are_truncated_and_terminated(void **state)
{
    char big[4096];
    tse_client_error err;

    memset(big, 'x', sizeof(big));
    tse_client_from_grpc_status(GRPC_STATUS_INTERNAL, big, sizeof(big), NULL, &err);
    assert_int_equal(strlen(err.message), TSE_CLIENT_ERROR_MESSAGE_MAX - 1);
}

/* ============================== envelope options ========================== */

static void test_opts_fill_the_envelope(void **state)
{
    tse_client_metadata md[] = {{"lane", "3"}, {"run", "R-7"}};
    tse_client_publish_opts o = {.subject = "sample-42",
                                 .priority = 1,
                                 .correlation_id = "6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10",
                                 .causation_id = "cause-1",
                                 .event_id = "0b5e7f8a-91c2-4d3e-8f60-1a2b3c4d5e6f",
                                 .metadata = md,
                                 .n_metadata = 2};
    tse_client_event *ev = NULL;
    Event *e;

    assert_int_equal(tse_client_event_from_json("test.event", "{\"a\":1}", &o, &ev, NULL),
                     TSE_CLIENT_OK);
    assert_true(ev->has_id);
    assert_string_equal(tse_client_event_type(ev), "test.event");
    e = unpack(ev);
    assert_string_equal(e->id, o.event_id);
    assert_string_equal(e->subject, "sample-42");
    assert_int_equal(e->priority, 1);
    assert_string_equal(e->correlation_id, o.correlation_id);
    assert_string_equal(e->causation_id, "cause-1");
    assert_int_equal(e->n_metadata, 2);
    assert_string_equal(e->metadata[0]->key, "lane");
    assert_string_equal(e->metadata[1]->value, "R-7");
    /* The client's source and ids are added per publish, not stored. */
    assert_string_equal(e->source_service, "");
    tracseq__events__v1__event__free_unpacked(e, NULL);
    tse_client_event_destroy(ev);
}

static void test_bad_opts_are_refused_naming_the_field(void **state)
{
    tse_client_publish_opts o = {.priority = 6};
    tse_client_metadata md[] = {{"", "x"}};
    tse_client_event *ev = NULL;
    tse_client_error err;

    assert_int_equal(tse_client_event_from_json("test.event", "{}", &o, &ev, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "priority");
    o = (tse_client_publish_opts){.correlation_id = "not-a-uuid"};
    assert_int_equal(tse_client_event_sample_created(&ev, "a", "b", "c", "d", "e", &o, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "correlation_id");
    o = (tse_client_publish_opts){.event_id = "123"};
    tse_client_event_from_json("test.event", "{}", &o, &ev, &err);
    assert_string_equal(err.field, "event_id");
    o = (tse_client_publish_opts){.metadata = md, .n_metadata = 1};
    tse_client_event_from_json("test.event", "{}", &o, &ev, &err);
    assert_string_equal(err.field, "metadata");
    assert_null(ev);
}

/* ============================== JSON payloads ============================= */

static void test_json_payload_errors_name_the_field(void **state)
{
    tse_client_event *ev = NULL;
    tse_client_error err;

    assert_int_equal(tse_client_event_from_json("Sample Created", "{}", NULL, &ev, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "event_type");
    assert_int_equal(tse_client_event_from_json("test.event", "{\"a\":", NULL, &ev, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "payload");
    assert_non_null(strstr(err.message, "not valid JSON"));
    assert_int_equal(tse_client_event_from_json("test.event", "[1,2]", NULL, &ev, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "payload");
    assert_int_equal(tse_client_event_from_json("storage.temperature_alert",
                                                "{\"current_temperature\":\"warm\"}", NULL, &ev,
                                                &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "payload.current_temperature");
    assert_int_equal(
        tse_client_event_from_json("sample.created", "{\"colour\":\"red\"}", NULL, &ev, &err),
        TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "payload.colour");
    assert_int_equal(tse_client_event_from_json("sample.created", "{\"createdAt\":\"yesterday\"}",
                                                NULL, &ev, &err),
                     TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "payload.created_at");
    assert_null(ev);
}

static void test_json_catalog_payload_is_typed_and_other_types_generic(void **state)
{
    tse_client_event *ev = NULL;
    Event *e;

    assert_int_equal(tse_client_event_from_json("sample.created",
                                                "{\"sampleId\":\"s-1\",\"barcode\":\"BC-9\","
                                                "\"created_at\":\"2024-06-18T10:00:00Z\"}",
                                                NULL, &ev, NULL),
                     TSE_CLIENT_OK);
    e = unpack(ev);
    assert_int_equal(e->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED);
    assert_string_equal(e->sample_created->sample_id, "s-1");
    assert_string_equal(e->sample_created->barcode, "BC-9");
    assert_int_equal(e->sample_created->created_at->seconds, 1718704800);
    assert_false(ev->has_id);
    tracseq__events__v1__event__free_unpacked(e, NULL);
    tse_client_event_destroy(ev);

    assert_int_equal(
        tse_client_event_from_json("transaction.started", "{\"amount\":12.5}", NULL, &ev, NULL),
        TSE_CLIENT_OK);
    e = unpack(ev);
    assert_int_equal(e->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA);
    assert_int_equal(e->data->n_fields, 1);
    assert_string_equal(e->data->fields[0]->key, "amount");
    assert_true(e->data->fields[0]->value->number_value == 12.5);
    tracseq__events__v1__event__free_unpacked(e, NULL);
    tse_client_event_destroy(ev);
}

/* ============================== typed builders ============================ */

/* Builds with builder, checks type and payload case, returns the payload
 * rendered as JSON for field checks. */
static json_t *built_payload(tse_client_status st, tse_client_event **evp, const char *type,
                             Tracseq__Events__V1__Event__PayloadCase c)
{
    tse_client_event *ev = *evp; /* read after the builder ran */
    Event *e;
    char *text;
    json_t *j;

    assert_int_equal(st, TSE_CLIENT_OK);
    assert_string_equal(tse_client_event_type(ev), type);
    e = unpack(ev);
    assert_string_equal(e->event_type, type);
    assert_int_equal(e->payload_case, c);
    text = tse_client_payload_json(e);
    assert_non_null(text);
    j = json_loads(text, 0, NULL);
    assert_non_null(j);
    free(text);
    tracseq__events__v1__event__free_unpacked(e, NULL);
    tse_client_event_destroy(ev);
    *evp = NULL;
    return j;
}

#define P(c) TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_##c

static void expect_str(json_t *j, const char *key, const char *want)
{
    json_t *v = json_object_get(j, key);

    if (v == NULL || !json_is_string(v))
        fail_msg("field %s missing", key);
    assert_string_equal(json_string_value(v), want);
}

static void expect_num(json_t *j, const char *key, double want)
{
    json_t *v = json_object_get(j, key);

    if (v == NULL)
        fail_msg("field %s missing", key);
    /* 64-bit integers are JSON strings in proto3 JSON. */
    if (json_is_string(v))
        assert_true(strtod(json_string_value(v), NULL) == want);
    else
        assert_true(json_number_value(v) == want);
}

static void test_sample_builders_encode_every_argument(void **state)
{
    tse_client_event *ev = NULL;
    json_t *j;

    j = built_payload(
        tse_client_event_sample_created(&ev, "id-1", "BC-1", "blood", "sub-1", "lab-1", NULL, NULL),
        &ev, "sample.created", P(SAMPLE_CREATED));
    expect_str(j, "sample_id", "id-1");
    expect_str(j, "barcode", "BC-1");
    expect_str(j, "sample_type", "blood");
    expect_str(j, "submitter_id", "sub-1");
    expect_str(j, "lab_id", "lab-1");
    json_decref(j);
    j = built_payload(tse_client_event_sample_validated(&ev, "id-2", "BC-2", "val-1", "passed",
                                                        "looks fine", NULL, NULL),
                      &ev, "sample.validated", P(SAMPLE_VALIDATED));
    expect_str(j, "validator_id", "val-1");
    expect_str(j, "validation_status", "passed");
    expect_str(j, "validation_notes", "looks fine");
    json_decref(j);
    j = built_payload(tse_client_event_sample_status_changed(&ev, "id-3", "BC-3", "received",
                                                             "stored", "tech-1", "routine", NULL,
                                                             NULL),
                      &ev, "sample.status_changed", P(SAMPLE_STATUS_CHANGED));
    expect_str(j, "old_status", "received");
    expect_str(j, "new_status", "stored");
    expect_str(j, "changed_by", "tech-1");
    expect_str(j, "reason", "routine");
    json_decref(j);
    j = built_payload(tse_client_event_sample_stored(&ev, "id-4", "BC-4", "freezer-2", "-80C", "A1",
                                                     "tech-2", NULL, NULL),
                      &ev, "sample.stored", P(SAMPLE_STORED));
    expect_str(j, "location_id", "freezer-2");
    expect_str(j, "storage_zone", "-80C");
    expect_str(j, "position", "A1");
    expect_str(j, "stored_by", "tech-2");
    json_decref(j);
    j = built_payload(tse_client_event_sample_assigned_to_sequencing(&ev, "id-5", "BC-5", "job-9",
                                                                     "planner", NULL, NULL),
                      &ev, "sample.assigned_to_sequencing", P(SAMPLE_ASSIGNED_TO_SEQUENCING));
    expect_str(j, "sequencing_job_id", "job-9");
    expect_str(j, "assigned_by", "planner");
    json_decref(j);
    j = built_payload(tse_client_event_sample_completed(&ev, "id-6", "BC-6", "done", "s3://r/6",
                                                        "tech-3", NULL, NULL),
                      &ev, "sample.completed", P(SAMPLE_COMPLETED));
    expect_str(j, "completion_status", "done");
    expect_str(j, "results_location", "s3://r/6");
    expect_str(j, "completed_by", "tech-3");
    json_decref(j);
}

static void test_storage_and_auth_builders_encode_every_argument(void **state)
{
    tse_client_number m[] = {{"temperature", -79.5}, {"humidity", 12}};
    tse_client_event *ev = NULL;
    json_t *j;

    j = built_payload(tse_client_event_temperature_alert(&ev, "freezer-1", "zone-a", -60.5, -80,
                                                         "high", "sensor-7", NULL, NULL),
                      &ev, "storage.temperature_alert", P(TEMPERATURE_ALERT));
    expect_str(j, "location_id", "freezer-1");
    expect_str(j, "zone_name", "zone-a");
    expect_num(j, "current_temperature", -60.5);
    expect_num(j, "target_temperature", -80);
    expect_str(j, "threshold_type", "high");
    expect_str(j, "sensor_id", "sensor-7");
    json_decref(j);
    j = built_payload(
        tse_client_event_capacity_warning(&ev, "rack-1", "Rack one", 95, 100, 95.0, NULL, NULL),
        &ev, "storage.capacity_warning", P(CAPACITY_WARNING));
    expect_str(j, "location_name", "Rack one");
    expect_num(j, "current_capacity", 95);
    expect_num(j, "max_capacity", 100);
    expect_num(j, "utilization_percent", 95.0);
    json_decref(j);
    j = built_payload(tse_client_event_sensor_data_received(&ev, "sensor-1", "room-1", "climate", m,
                                                            2, NULL, NULL),
                      &ev, "storage.sensor_data_received", P(SENSOR_DATA_RECEIVED));
    expect_str(j, "sensor_type", "climate");
    expect_num(json_object_get(j, "measurements"), "temperature", -79.5);
    expect_num(json_object_get(j, "measurements"), "humidity", 12);
    json_decref(j);
    j = built_payload(
        tse_client_event_user_logged_in(&ev, "u-1", "ada", "sess-1", "10.0.0.1", NULL, NULL), &ev,
        "auth.user_logged_in", P(USER_LOGGED_IN));
    expect_str(j, "user_id", "u-1");
    expect_str(j, "username", "ada");
    expect_str(j, "session_id", "sess-1");
    expect_str(j, "ip_address", "10.0.0.1");
    json_decref(j);
    j = built_payload(
        tse_client_event_user_logged_out(&ev, "u-1", "ada", "sess-1", "timeout", NULL, NULL), &ev,
        "auth.user_logged_out", P(USER_LOGGED_OUT));
    expect_str(j, "logout_reason", "timeout");
    json_decref(j);
    j = built_payload(
        tse_client_event_login_failed(&ev, "mallory", "bad password", "10.6.6.6", NULL, NULL), &ev,
        "auth.login_failed", P(LOGIN_FAILED));
    expect_str(j, "username", "mallory");
    expect_str(j, "failure_reason", "bad password");
    expect_str(j, "ip_address", "10.6.6.6");
    json_decref(j);
}

static void test_document_and_sequencing_builders_encode_every_argument(void **state)
{
    tse_client_number scores[] = {{"patient", 0.75}};
    const char *samples[] = {"6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10",
                             "0b5e7f8a-91c2-4d3e-8f60-1a2b3c4d5e6f"};
    tse_client_event *ev = NULL;
    json_t *j;

    j = built_payload(tse_client_event_document_uploaded(&ev, "doc-1", "form.pdf", "pdf",
                                                         5000000000ULL, "ada", NULL, NULL),
                      &ev, "document.uploaded", P(DOCUMENT_UPLOADED));
    expect_str(j, "filename", "form.pdf");
    expect_str(j, "file_type", "pdf");
    expect_num(j, "file_size", 5000000000.0);
    expect_str(j, "uploaded_by", "ada");
    json_decref(j);
    j = built_payload(
        tse_client_event_document_processing_completed(
            &ev, "doc-2", "scan.png", "ok", "{\"pages\":3,\"lang\":\"en\"}", 0.5, NULL, NULL),
        &ev, "document.processing_completed", P(DOCUMENT_PROCESSING_COMPLETED));
    expect_str(j, "processing_status", "ok");
    expect_num(j, "confidence_score", 0.5);
    expect_num(json_object_get(j, "extracted_data"), "pages", 3);
    expect_str(json_object_get(j, "extracted_data"), "lang", "en");
    json_decref(j);
    j = built_payload(tse_client_event_document_information_extracted(
                          &ev, "doc-3", "ocr", "{\"patient\":\"Ada\"}", scores, 1, NULL, NULL),
                      &ev, "document.information_extracted", P(DOCUMENT_INFORMATION_EXTRACTED));
    expect_str(j, "extraction_type", "ocr");
    expect_str(json_object_get(j, "extracted_fields"), "patient", "Ada");
    expect_num(json_object_get(j, "confidence_scores"), "patient", 0.75);
    json_decref(j);
    j = built_payload(tse_client_event_sequencing_job_created(&ev, "job-1", "Run 1", "wgs", 2,
                                                              samples, 2, "planner", NULL, NULL),
                      &ev, "sequencing.job_created", P(SEQUENCING_JOB_CREATED));
    expect_str(j, "job_type", "wgs");
    expect_num(j, "priority", 2);
    assert_int_equal(json_array_size(json_object_get(j, "samples")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "samples"), 1)),
                        samples[1]);
    expect_str(j, "created_by", "planner");
    json_decref(j);
    j = built_payload(tse_client_event_sequencing_job_status_changed(
                          &ev, "job-1", "Run 1", "queued", "running", 12.5, NULL, NULL),
                      &ev, "sequencing.job_status_changed", P(SEQUENCING_JOB_STATUS_CHANGED));
    expect_str(j, "old_status", "queued");
    expect_str(j, "new_status", "running");
    expect_num(j, "progress_percent", 12.5);
    json_decref(j);
    j = built_payload(tse_client_event_sequencing_job_completed(&ev, "job-1", "Run 1", "success",
                                                                10, 9, 1, NULL, NULL),
                      &ev, "sequencing.job_completed", P(SEQUENCING_JOB_COMPLETED));
    expect_str(j, "completion_status", "success");
    expect_num(j, "total_samples", 10);
    expect_num(j, "successful_samples", 9);
    expect_num(j, "failed_samples", 1);
    json_decref(j);
}

static void test_builders_refuse_bad_map_arguments_naming_them(void **state)
{
    tse_client_number nameless[] = {{NULL, 1}};
    tse_client_event *ev = NULL;
    tse_client_error err;

    assert_int_equal(
        tse_client_event_document_processing_completed(&ev, "d", "f", "ok", "[1]", 0, NULL, &err),
        TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "extracted_data");
    assert_int_equal(
        tse_client_event_sensor_data_received(&ev, "s", "l", "t", nameless, 1, NULL, &err),
        TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "measurements");
    assert_int_equal(
        tse_client_event_sequencing_job_created(&ev, "j", "n", "t", 1, NULL, 2, "c", NULL, &err),
        TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "samples");
    assert_null(ev);
}

/* ============================== the wire ================================== */

static void test_request_carries_a_fresh_id_and_the_client_source(void **state)
{
    tse_client_options o = {.target = "127.0.0.1:1", .source_service = "lims-test"};
    tse_client *c = NULL;
    tse_client_event *ev = NULL;
    Tracseq__Events__V1__PublishRequest *r;
    char id1[37], id2[37];
    grpc_slice s;

    assert_int_equal(tse_client_connect(&o, &c, NULL), TSE_CLIENT_OK);
    tse_uuid_seq_next(&c->ids, id1);
    tse_uuid_seq_next(&c->ids, id2);
    assert_true(tse_uuid_valid(id1));
    assert_string_not_equal(id1, id2);
    assert_int_equal(id1[14], '4'); /* version 4 layout */
    assert_int_equal(tse_client_event_sample_created(&ev, "a", "b", "c", "d", "e", NULL, NULL),
                     TSE_CLIENT_OK);
    s = tse_client_request_slice(c, ev, id1);
    r = tracseq__events__v1__publish_request__unpack(NULL, GRPC_SLICE_LENGTH(s),
                                                     GRPC_SLICE_START_PTR(s));
    assert_non_null(r);
    assert_string_equal(r->event->id, id1);
    assert_string_equal(r->event->source_service, "lims-test");
    assert_string_equal(r->event->sample_created->barcode, "b");
    tracseq__events__v1__publish_request__free_unpacked(r, NULL);
    grpc_slice_unref(s);
    tse_client_event_destroy(ev);
    tse_client_destroy(c);
}

static void test_publish_response_error_becomes_the_events_error(void **state)
{
    Tracseq__Events__V1__PublishResponse r = TRACSEQ__EVENTS__V1__PUBLISH_RESPONSE__INIT;
    Tracseq__Events__V1__PublishError pe = TRACSEQ__EVENTS__V1__PUBLISH_ERROR__INIT;
    tse_client_publish_result res;
    tse_client_error err;
    uint8_t buf[256];
    size_t n;

    r.event_id = "e-1";
    r.stream_id = "1718700000000-0";
    r.duplicate = true;
    n = protobuf_c_message_pack(&r.base, buf);
    assert_int_equal(tse_client_publish_response(buf, n, &res, &err), TSE_CLIENT_OK);
    assert_string_equal(res.stream_id, "1718700000000-0");
    assert_true(res.duplicate);
    pe.code = GRPC_STATUS_INVALID_ARGUMENT;
    pe.message = "barcode is required";
    pe.field = "event.payload.barcode";
    r.error = &pe;
    n = protobuf_c_message_pack(&r.base, buf);
    assert_int_equal(tse_client_publish_response(buf, n, &res, &err), TSE_CLIENT_INVALID_ARGUMENT);
    assert_string_equal(err.field, "event.payload.barcode");
    assert_string_equal(err.message, "barcode is required");
    assert_int_equal(tse_client_publish_response((const uint8_t *)"\xff\xff", 2, &res, &err),
                     TSE_CLIENT_INTERNAL);
}

/* ============================== event views =============================== */

static void test_delivery_decodes_into_a_view_with_raw_envelope(void **state)
{
    Tracseq__Events__V1__Delivery d = TRACSEQ__EVENTS__V1__DELIVERY__INIT;
    Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Tracseq__Events__V1__TemperatureAlert t = TRACSEQ__EVENTS__V1__TEMPERATURE_ALERT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Tracseq__Events__V1__Event__MetadataEntry me = TRACSEQ__EVENTS__V1__EVENT__METADATA_ENTRY__INIT;
    Tracseq__Events__V1__Event__MetadataEntry *mep = &me;
    uint8_t env[512], buf[1024];
    size_t env_len, n;
    tse_client_decoded out;
    json_t *j;

    t.location_id = "freezer-1";
    t.current_temperature = -70.25;
    ts.seconds = 1718700000;
    ts.nanos = 5000;
    me.key = "lane";
    me.value = "2";
    ev.id = "ev-1";
    ev.event_type = "storage.temperature_alert";
    ev.source_service = "sensors";
    ev.version = "1.0";
    ev.subject = "freezer-1";
    ev.correlation_id = "corr";
    ev.causation_id = "cause";
    ev.priority = 1;
    ev.timestamp = &ts;
    ev.n_metadata = 1;
    ev.metadata = &mep;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_TEMPERATURE_ALERT;
    ev.temperature_alert = &t;
    env_len = protobuf_c_message_pack(&ev.base, env);
    d.ack_id = "ack-9";
    d.delivery_attempt = 2;
    d.event = &ev;
    d.subscription = "alerts";
    d.stream_id = "1-0";
    n = protobuf_c_message_pack(&d.base, buf);

    assert_int_equal(tse_client_delivery_decode(buf, n, &out, NULL), TSE_CLIENT_OK);
    assert_string_equal(out.view.id, "ev-1");
    assert_string_equal(out.view.event_type, "storage.temperature_alert");
    assert_string_equal(out.view.source_service, "sensors");
    assert_string_equal(out.view.subject, "freezer-1");
    assert_string_equal(out.view.correlation_id, "corr");
    assert_string_equal(out.view.causation_id, "cause");
    assert_int_equal(out.view.priority, 1);
    assert_int_equal(out.view.timestamp_seconds, 1718700000);
    assert_int_equal(out.view.timestamp_nanos, 5000);
    assert_int_equal(out.view.n_metadata, 1);
    assert_string_equal(out.view.metadata[0].key, "lane");
    assert_string_equal(out.view.ack_id, "ack-9");
    assert_int_equal(out.view.delivery_attempt, 2);
    assert_string_equal(out.view.subscription, "alerts");
    assert_string_equal(out.view.stream_id, "1-0");
    assert_int_equal(out.view.envelope_len, env_len);
    assert_memory_equal(out.view.envelope, env, env_len);
    j = json_loads(out.view.payload_json, 0, NULL);
    assert_non_null(j);
    expect_str(j, "location_id", "freezer-1");
    expect_num(j, "current_temperature", -70.25);
    json_decref(j);
    tse_client_decoded_cleanup(&out);
    /* Truncated bytes are refused, not read past. */
    assert_int_equal(tse_client_delivery_decode(buf, n - 3, &out, NULL), TSE_CLIENT_INTERNAL);
}

static void test_envelope_json_renders_the_whole_event(void **state)
{
    tse_client_event *ev = NULL;
    char *text;
    json_t *j;

    assert_int_equal(tse_client_event_login_failed(&ev, "eve", "locked", NULL,
                                                   &(tse_client_publish_opts){.subject = "eve"},
                                                   NULL),
                     TSE_CLIENT_OK);
    text = tse_client_envelope_json(ev->bytes, ev->len);
    assert_non_null(text);
    j = json_loads(text, 0, NULL);
    expect_str(j, "event_type", "auth.login_failed");
    expect_str(j, "subject", "eve");
    expect_str(json_object_get(j, "login_failed"), "failure_reason", "locked");
    json_decref(j);
    tse_client_free(text);
    tse_client_event_destroy(ev);
    assert_null(tse_client_envelope_json("\xff", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_default_to_env_then_localhost),
        cmocka_unit_test(test_bad_options_are_refused_naming_the_option),
        cmocka_unit_test(test_grpc_codes_map_to_sdk_statuses),
        cmocka_unit_test(test_sdk_statuses_map_back_to_grpc_codes),
        cmocka_unit_test(test_server_details_keep_the_message_and_lift_the_field),
        cmocka_unit_test(test_field_comes_from_status_details_not_the_text),
        cmocka_unit_test(test_problem_is_the_message_without_its_field),
        cmocka_unit_test(test_long_server_details_are_truncated_and_terminated),
        cmocka_unit_test(test_opts_fill_the_envelope),
        cmocka_unit_test(test_bad_opts_are_refused_naming_the_field),
        cmocka_unit_test(test_json_payload_errors_name_the_field),
        cmocka_unit_test(test_json_catalog_payload_is_typed_and_other_types_generic),
        cmocka_unit_test(test_sample_builders_encode_every_argument),
        cmocka_unit_test(test_storage_and_auth_builders_encode_every_argument),
        cmocka_unit_test(test_document_and_sequencing_builders_encode_every_argument),
        cmocka_unit_test(test_builders_refuse_bad_map_arguments_naming_them),
        cmocka_unit_test(test_request_carries_a_fresh_id_and_the_client_source),
        cmocka_unit_test(test_publish_response_error_becomes_the_events_error),
        cmocka_unit_test(test_delivery_decodes_into_a_view_with_raw_envelope),
        cmocka_unit_test(test_envelope_json_renders_the_whole_event),
    };

    return cmocka_run_group_tests_name("client sdk", tests, NULL, NULL);
}
