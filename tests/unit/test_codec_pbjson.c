/*
 * test_codec_pbjson.c - the JSON <-> protobuf transcoder: round trips of
 * every catalog payload and the envelope, the proto3 JSON mapping rules
 * (names, Timestamp, Struct/Value, 64-bit integers, enums, bytes, maps,
 * oneofs, null), the error paths it reports, and hostile input.
 *
 * Every test frees what it builds, so a run under ASan doubles as the leak
 * check of both success and failure paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

/* ---- helpers --------------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);

    if (j == NULL)
        fail_msg("test JSON does not parse: %s: %s", jerr.text, text);
    return j;
}

static ProtobufCMessage *decode_ok(const char *text, const ProtobufCMessageDescriptor *desc,
                                   unsigned flags)
{
    json_t *j = parse(text);
    ProtobufCMessage *msg = NULL;
    tse_error err;
    tse_status st = tse_pbjson_to_message(j, desc, flags, &msg, &err);

    json_decref(j);
    if (st != TSE_OK)
        fail_msg("decoding failed: %s: field '%s': %s", text, err.field, err.message);
    assert_non_null(msg);
    assert_ptr_equal(msg->descriptor, desc);
    return msg;
}

/* Decoding text must fail with TSE_INVALID naming field, leaving out alone. */
static void expect_invalid(const char *text, const ProtobufCMessageDescriptor *desc, unsigned flags,
                           const char *field)
{
    ProtobufCMessage sentinel;
    ProtobufCMessage *msg = &sentinel;
    json_t *j = parse(text);
    tse_error err;
    tse_status st = tse_pbjson_to_message(j, desc, flags, &msg, &err);

    json_decref(j);
    if (st != TSE_INVALID)
        fail_msg("expected INVALID for %s, got %s", text, tse_status_name(st));
    assert_int_equal(err.code, TSE_INVALID);
    if (strcmp(err.field, field) != 0)
        fail_msg("for %s expected field '%s', got '%s' (%s)", text, field, err.field, err.message);
    assert_true(strlen(err.message) > 0);
    assert_ptr_equal(msg, &sentinel);
}

/* The message's JSON must equal the JSON text expected. */
static void assert_json(const ProtobufCMessage *msg, unsigned flags, const char *expected)
{
    json_t *want = parse(expected);
    json_t *got = tse_pbjson_from_message(msg, flags);
    char *text;

    assert_non_null(got);
    if (!json_equal(want, got)) {
        text = json_dumps(got, JSON_SORT_KEYS);
        fail_msg("JSON differs:\n  want %s\n  got  %s", expected, text);
    }
    json_decref(want);
    json_decref(got);
}

/* Packs and unpacks msg, so the wire form is checked to carry the same JSON. */
static void assert_wire_round_trip(const ProtobufCMessage *msg, const json_t *want)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);
    ProtobufCMessage *back;
    json_t *got;

    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(msg, buf), len);
    back = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    assert_non_null(back);
    got = tse_pbjson_from_message(back, 0);
    assert_non_null(got);
    assert_true(json_equal(want, got));
    json_decref(got);
    protobuf_c_message_free_unpacked(back, NULL);
    free(buf);
}

/* JSON -> message -> JSON gives the input back, directly and via the wire. */
static void assert_round_trip(const char *text, const ProtobufCMessageDescriptor *desc)
{
    json_t *in = parse(text);
    ProtobufCMessage *msg = decode_ok(text, desc, 0);
    json_t *out = tse_pbjson_from_message(msg, 0);
    char *dump;

    assert_non_null(out);
    if (!json_equal(in, out)) {
        dump = json_dumps(out, JSON_SORT_KEYS);
        fail_msg("round trip differs:\n  in  %s\n  out %s", text, dump);
    }
    assert_wire_round_trip(msg, in);
    json_decref(out);
    json_decref(in);
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- round trips of the 18 catalog payloads -------------------------------------- */

typedef struct payload_case {
    const ProtobufCMessageDescriptor *desc;
    const char *json;
} payload_case;

static payload_case payload_cases[] = {
    {&tracseq__events__v1__sample_created__descriptor,
     "{\"sample_id\": \"6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f\", \"barcode\": \"SAM-20240618-001\","
     " \"sample_type\": \"DNA\", \"submitter_id\": \"0b7e6a52-1c3d-4e5f-8a9b-0c1d2e3f4a5b\","
     " \"lab_id\": \"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\","
     " \"metadata\": {\"lane\": 3, \"volume_ul\": 12.5, \"qc\": true, \"note\": null,"
     " \"tags\": [\"a\", 1, false, null, [], {}], \"origin\": {\"site\": \"B\", \"rack\": [1, 2]},"
     " \"label\": \"x\"},"
     " \"created_at\": \"2024-06-18T10:00:00.123Z\"}"},
    {&tracseq__events__v1__sample_validated__descriptor,
     "{\"sample_id\": \"s1\", \"barcode\": \"B1\", \"validator_id\": \"v1\","
     " \"validation_status\": \"passed\", \"validation_notes\": \"looks fine\","
     " \"validated_at\": \"2024-06-18T10:00:01Z\"}"},
    {&tracseq__events__v1__sample_status_changed__descriptor,
     "{\"sample_id\": \"s1\", \"barcode\": \"B1\", \"old_status\": \"pending\","
     " \"new_status\": \"validated\", \"changed_by\": \"u1\", \"reason\": \"qc passed\","
     " \"changed_at\": \"2024-06-18T10:00:02.000001Z\"}"},
    {&tracseq__events__v1__sample_stored__descriptor,
     "{\"sample_id\": \"s1\", \"barcode\": \"B1\", \"location_id\": \"freezer-3\","
     " \"storage_zone\": \"-80C\", \"position\": \"A3\", \"stored_by\": \"u2\","
     " \"stored_at\": \"2024-06-18T10:00:03.000000001Z\"}"},
    {&tracseq__events__v1__sample_assigned_to_sequencing__descriptor,
     "{\"sample_id\": \"s1\", \"barcode\": \"B1\", \"sequencing_job_id\": \"job-7\","
     " \"assigned_by\": \"u3\", \"assigned_at\": \"1999-12-31T23:59:59Z\"}"},
    {&tracseq__events__v1__sample_completed__descriptor,
     "{\"sample_id\": \"s1\", \"barcode\": \"B1\", \"completion_status\": \"success\","
     " \"results_location\": \"s3://results/s1\", \"completed_by\": \"u4\","
     " \"completed_at\": \"2024-02-29T12:00:00Z\"}"},
    {&tracseq__events__v1__temperature_alert__descriptor,
     "{\"location_id\": \"freezer-3\", \"zone_name\": \"zone A\", \"current_temperature\": -71.5,"
     " \"target_temperature\": -80, \"threshold_type\": \"high\", \"sensor_id\": \"t-9\","
     " \"alert_at\": \"2024-06-18T10:05:00Z\"}"},
    {&tracseq__events__v1__capacity_warning__descriptor,
     "{\"location_id\": \"rack-1\", \"location_name\": \"Rack one\", \"current_capacity\": 95,"
     " \"max_capacity\": 100, \"utilization_percent\": 95.25,"
     " \"warning_at\": \"2024-06-18T10:06:00Z\"}"},
    {&tracseq__events__v1__sensor_data_received__descriptor,
     "{\"sensor_id\": \"t-9\", \"location_id\": \"freezer-3\", \"sensor_type\": \"temperature\","
     " \"measurements\": {\"celsius\": -79.75, \"humidity\": 0.5, \"door\": 0},"
     " \"timestamp\": \"2024-06-18T10:07:00Z\", \"received_at\": \"2024-06-18T10:07:00.250Z\"}"},
    {&tracseq__events__v1__user_logged_in__descriptor,
     "{\"user_id\": \"u1\", \"username\": \"ada\", \"session_id\": \"sess-1\","
     " \"ip_address\": \"192.0.2.10\", \"login_at\": \"2024-06-18T08:00:00Z\"}"},
    {&tracseq__events__v1__user_logged_out__descriptor,
     "{\"user_id\": \"u1\", \"username\": \"ada\", \"session_id\": \"sess-1\","
     " \"logout_reason\": \"timeout\", \"logout_at\": \"2024-06-18T18:00:00Z\"}"},
    {&tracseq__events__v1__login_failed__descriptor,
     "{\"username\": \"eve\", \"failure_reason\": \"bad_password\","
     " \"ip_address\": \"2001:db8::1\", \"failed_at\": \"2024-06-18T08:01:00Z\"}"},
    {&tracseq__events__v1__document_uploaded__descriptor,
     "{\"document_id\": \"d1\", \"filename\": \"manifest.xlsx\", \"file_type\": \"xlsx\","
     " \"file_size\": \"18446744073709551615\", \"uploaded_by\": \"u5\","
     " \"uploaded_at\": \"2024-06-18T09:00:00Z\"}"},
    {&tracseq__events__v1__document_processing_completed__descriptor,
     "{\"document_id\": \"d1\", \"filename\": \"manifest.xlsx\", \"processing_status\": "
     "\"partial\","
     " \"extracted_data\": {\"rows\": 96, \"sheet\": \"Plate 1\", \"ok\": false,"
     " \"wells\": [\"A1\", \"A2\"], \"meta\": {\"v\": 2.5}},"
     " \"confidence_score\": 0.875, \"completed_at\": \"2024-06-18T09:01:00Z\"}"},
    {&tracseq__events__v1__document_information_extracted__descriptor,
     "{\"document_id\": \"d1\", \"extraction_type\": \"sample_manifest\","
     " \"extracted_fields\": {\"project\": \"P-12\", \"count\": 96, \"empty\": null},"
     " \"confidence_scores\": {\"project\": 0.99, \"count\": 1},"
     " \"extracted_at\": \"2024-06-18T09:02:00Z\"}"},
    {&tracseq__events__v1__sequencing_job_created__descriptor,
     "{\"job_id\": \"job-7\", \"job_name\": \"Run 7\", \"job_type\": \"WGS\", \"priority\": "
     "4294967295,"
     " \"samples\": [\"s1\", \"s2\", \"s3\"], \"created_by\": \"u6\","
     " \"created_at\": \"2024-06-18T11:00:00Z\"}"},
    {&tracseq__events__v1__sequencing_job_status_changed__descriptor,
     "{\"job_id\": \"job-7\", \"job_name\": \"Run 7\", \"old_status\": \"queued\","
     " \"new_status\": \"running\", \"progress_percent\": 42.5,"
     " \"updated_at\": \"2024-06-18T11:30:00Z\"}"},
    {&tracseq__events__v1__sequencing_job_completed__descriptor,
     "{\"job_id\": \"job-7\", \"job_name\": \"Run 7\", \"completion_status\": \"success\","
     " \"total_samples\": 96, \"successful_samples\": 94, \"failed_samples\": -2,"
     " \"completed_at\": \"2024-06-18T12:00:00Z\"}"},
};

static void test_round_trip_payload(void **state)
{
    const payload_case *c = *state;
    json_t *in = parse(c->json);

    /* Every field of the message is set, so every field is exercised. */
    assert_int_equal(json_object_size(in), c->desc->n_fields);
    json_decref(in);
    assert_round_trip(c->json, c->desc);
}

/* ---- the envelope ------------------------------------------------------------------ */

static const char envelope_json[] =
    "{\"id\": \"1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a\", \"event_type\": \"sample.created\","
    " \"source_service\": \"sample-service\", \"version\": \"1.0\","
    " \"timestamp\": \"2024-06-18T10:00:00.123456Z\", \"correlation_id\": \"c-1\","
    " \"causation_id\": \"e-0\", \"subject\": \"sample-s1\", \"priority\": 2,"
    " \"metadata\": {\"lane\": \"4\", \"schema_valid\": \"true\"},"
    " \"sample_created\": {\"sample_id\": \"s1\", \"barcode\": \"B1\", \"sample_type\": \"RNA\","
    " \"submitter_id\": \"u1\", \"lab_id\": \"l1\", \"metadata\": {\"lane\": 4},"
    " \"created_at\": \"2024-06-18T10:00:00Z\"}}";

static void test_envelope_with_typed_payload_round_trips(void **state)
{
    Tracseq__Events__V1__Event *ev;

    (void)state;
    assert_round_trip(envelope_json, &tracseq__events__v1__event__descriptor);
    ev = (void *)decode_ok(envelope_json, &tracseq__events__v1__event__descriptor, 0);
    assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED);
    assert_string_equal(ev->sample_created->barcode, "B1");
    assert_int_equal(ev->sample_created->n_metadata, 1);
    assert_string_equal(ev->sample_created->metadata[0]->key, "lane");
    assert_int_equal(ev->sample_created->metadata[0]->value->kind_case,
                     GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
    assert_true(ev->sample_created->metadata[0]->value->number_value == 4.0);
    assert_int_equal(ev->priority, 2);
    assert_int_equal(ev->n_metadata, 2);
    assert_int_equal(ev->timestamp->seconds, 1718704800);
    assert_int_equal(ev->timestamp->nanos, 123456000);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

static const char struct_envelope_json[] =
    "{\"event_type\": \"transaction.started\", \"source_service\": \"billing\","
    " \"data\": {\"amount\": 12.75, \"currency\": \"EUR\", \"paid\": false, \"refund\": null,"
    " \"items\": [{\"sku\": \"K-1\", \"qty\": 2}, [1, [2, [3]]], \"x\"],"
    " \"customer\": {\"id\": 7, \"tags\": []}, \"empty\": {}}}";

static void test_envelope_with_struct_data_round_trips(void **state)
{
    Tracseq__Events__V1__Event *ev;
    Google__Protobuf__Struct *data;

    (void)state;
    assert_round_trip(struct_envelope_json, &tracseq__events__v1__event__descriptor);
    ev = (void *)decode_ok(struct_envelope_json, &tracseq__events__v1__event__descriptor, 0);
    assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA);
    data = ev->data;
    assert_int_equal(data->n_fields, 7);
    assert_string_equal(data->fields[4]->key, "items");
    assert_int_equal(data->fields[4]->value->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE);
    assert_int_equal(data->fields[4]->value->list_value->n_values, 3);
    assert_int_equal(data->fields[3]->value->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

static void test_nested_messages_and_repeated_messages_round_trip(void **state)
{
    (void)state;
    assert_round_trip(
        "{\"deliveries\": [{\"ack_id\": \"a1\", \"delivery_attempt\": 2,"
        " \"event\": {\"event_type\": \"a.b\", \"data\": {\"k\": 1}},"
        " \"subscription\": \"s\", \"stream_id\": \"1-0\"},"
        " {\"ack_id\": \"a2\", \"event\": {\"user_logged_out\": {\"username\": \"x\"}}}]}",
        &tracseq__events__v1__pull_response__descriptor);
}

/* ---- names ---------------------------------------------------------------------- */

static void test_lower_camel_names_are_accepted(void **state)
{
    ProtobufCMessage *msg;

    (void)state;
    msg = decode_ok("{\"sampleId\": \"s1\", \"sampleType\": \"DNA\", \"labId\": \"l1\","
                    " \"createdAt\": \"2024-06-18T10:00:00Z\", \"barcode\": \"B\"}",
                    &tracseq__events__v1__sample_created__descriptor, 0);
    assert_json(msg, 0,
                "{\"sample_id\": \"s1\", \"sample_type\": \"DNA\", \"lab_id\": \"l1\","
                " \"created_at\": \"2024-06-18T10:00:00Z\", \"barcode\": \"B\"}");
    protobuf_c_message_free_unpacked(msg, NULL);

    msg = decode_ok("{\"eventType\": \"a.b\", \"sampleCreated\": {\"sampleId\": \"s\"}}",
                    &tracseq__events__v1__event__descriptor, 0);
    assert_json(msg, 0, "{\"event_type\": \"a.b\", \"sample_created\": {\"sample_id\": \"s\"}}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void test_field_given_by_both_names_is_rejected(void **state)
{
    (void)state;
    expect_invalid("{\"sample_id\": \"a\", \"sampleId\": \"b\"}",
                   &tracseq__events__v1__sample_created__descriptor, 0, "sample_id");
}

static void test_camel_case_output_flag(void **state)
{
    ProtobufCMessage *msg;

    (void)state;
    msg = decode_ok(envelope_json, &tracseq__events__v1__event__descriptor, 0);
    assert_json(
        msg, TSE_PBJSON_CAMEL_CASE,
        "{\"id\": \"1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a\", \"eventType\": \"sample.created\","
        " \"sourceService\": \"sample-service\", \"version\": \"1.0\","
        " \"timestamp\": \"2024-06-18T10:00:00.123456Z\", \"correlationId\": \"c-1\","
        " \"causationId\": \"e-0\", \"subject\": \"sample-s1\", \"priority\": 2,"
        " \"metadata\": {\"lane\": \"4\", \"schema_valid\": \"true\"},"
        " \"sampleCreated\": {\"sampleId\": \"s1\", \"barcode\": \"B1\", \"sampleType\": \"RNA\","
        " \"submitterId\": \"u1\", \"labId\": \"l1\", \"metadata\": {\"lane\": 4},"
        " \"createdAt\": \"2024-06-18T10:00:00Z\"}}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- RFC 3339 ------------------------------------------------------------------- */

static void assert_format(int64_t seconds, int32_t nanos, const char *want)
{
    char buf[40];

    tse_rfc3339_format(seconds, nanos, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void test_rfc3339_format_writes_utc_with_0_3_6_or_9_digits(void **state)
{
    (void)state;
    assert_format(0, 0, "1970-01-01T00:00:00Z");
    assert_format(1718704800, 0, "2024-06-18T10:00:00Z");
    assert_format(1718704800, 100000000, "2024-06-18T10:00:00.100Z");
    assert_format(1718704800, 123456000, "2024-06-18T10:00:00.123456Z");
    assert_format(1718704800, 120000, "2024-06-18T10:00:00.000120Z");
    assert_format(1718704800, 1, "2024-06-18T10:00:00.000000001Z");
    assert_format(1718704800, 999999999, "2024-06-18T10:00:00.999999999Z");
    assert_format(-1, 0, "1969-12-31T23:59:59Z");
    assert_format(951782400, 0, "2000-02-29T00:00:00Z");
    assert_format(4107542400, 0, "2100-03-01T00:00:00Z");
    assert_format(-62135596800LL, 0, "0001-01-01T00:00:00Z");
    assert_format(253402300799LL, 0, "9999-12-31T23:59:59Z");
}

static void test_rfc3339_format_clamps_out_of_range_values(void **state)
{
    char small[8];

    (void)state;
    assert_format(-62135596801LL, 0, "0001-01-01T00:00:00Z");
    assert_format(INT64_MAX, 0, "9999-12-31T23:59:59Z");
    assert_format(INT64_MIN, -5, "0001-01-01T00:00:00Z");
    assert_format(0, 1000000000, "1970-01-01T00:00:00.999999999Z");
    tse_rfc3339_format(0, 0, small, sizeof(small));
    assert_string_equal(small, "1970-01");
}

static void assert_parse(const char *text, int64_t seconds, int32_t nanos)
{
    int64_t s = -7;
    int32_t n = -7;

    if (tse_rfc3339_parse(text, &s, &n) != TSE_OK)
        fail_msg("'%s' should parse", text);
    assert_int_equal(s, seconds);
    assert_int_equal(n, nanos);
}

static void test_rfc3339_parse_accepts_offsets_and_fractions(void **state)
{
    (void)state;
    assert_parse("2024-06-18T10:00:00Z", 1718704800, 0);
    assert_parse("2024-06-18t10:00:00z", 1718704800, 0);
    assert_parse("2024-06-18T12:00:00+02:00", 1718704800, 0);
    assert_parse("2024-06-18T04:30:00-05:30", 1718704800, 0);
    assert_parse("2024-06-18T10:00:00+00:00", 1718704800, 0);
    assert_parse("2024-06-18T10:00:00.5Z", 1718704800, 500000000);
    assert_parse("2024-06-18T10:00:00.12Z", 1718704800, 120000000);
    assert_parse("2024-06-18T10:00:00.1234Z", 1718704800, 123400000);
    assert_parse("2024-06-18T10:00:00.123456789Z", 1718704800, 123456789);
    assert_parse("2024-06-18T10:00:00.000000001+01:00", 1718701200, 1);
    assert_parse("2024-02-29T00:00:00Z", 1709164800, 0);
    assert_parse("2000-02-29T00:00:00Z", 951782400, 0);
    assert_parse("1969-12-31T23:59:59Z", -1, 0);
    assert_parse("0001-01-01T00:00:00Z", -62135596800LL, 0);
    assert_parse("9999-12-31T23:59:59.999999999Z", 253402300799LL, 999999999);
    assert_parse("0001-01-01T23:00:00+23:00", -62135596800LL, 0);
}

static void test_rfc3339_parse_rejects_malformed_and_out_of_range(void **state)
{
    static const char *const bad[] = {
        "",
        "2024-06-18",
        "2024-06-18T10:00:00",
        "2024-06-18 10:00:00Z",
        "2024-06-18T10:00Z",
        "24-06-18T10:00:00Z",
        "2024-6-18T10:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-06-00T00:00:00Z",
        "2024-06-31T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-06-18T24:00:00Z",
        "2024-06-18T10:60:00Z",
        "2024-06-18T10:00:60Z",
        "2024-06-18T10:00:00.Z",
        "2024-06-18T10:00:00.1234567890Z",
        "2024-06-18T10:00:00+2:00",
        "2024-06-18T10:00:00+02",
        "2024-06-18T10:00:00+24:00",
        "2024-06-18T10:00:00+02:60",
        "2024-06-18T10:00:00Zjunk",
        "2024-06-18T10:00:00Z ",
        " 2024-06-18T10:00:00Z",
        "0000-12-31T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-00:01",
        "-001-01-01T00:00:00Z",
        "2024-06-18T10:00:00,5Z",
    };
    int64_t s = 42;
    int32_t n = 42;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tse_rfc3339_parse(bad[i], &s, &n) != TSE_INVALID)
            fail_msg("'%s' should be rejected", bad[i]);
    }
    assert_int_equal(tse_rfc3339_parse(NULL, &s, &n), TSE_INVALID);
    assert_int_equal(s, 42);
    assert_int_equal(n, 42);
}

static void test_timestamp_field_takes_any_offset_and_writes_utc(void **state)
{
    ProtobufCMessage *msg;

    (void)state;
    msg = decode_ok("{\"login_at\": \"2024-06-18T12:00:00.5+02:00\"}",
                    &tracseq__events__v1__user_logged_in__descriptor, 0);
    assert_json(msg, 0, "{\"login_at\": \"2024-06-18T10:00:00.500Z\"}");
    protobuf_c_message_free_unpacked(msg, NULL);
    expect_invalid("{\"login_at\": \"yesterday\"}",
                   &tracseq__events__v1__user_logged_in__descriptor, 0, "login_at");
    expect_invalid("{\"login_at\": 1718704800}", &tracseq__events__v1__user_logged_in__descriptor,
                   0, "login_at");
    expect_invalid("{\"login_at\": {\"seconds\": 1}}",
                   &tracseq__events__v1__user_logged_in__descriptor, 0, "login_at");
}

/* ---- numbers, enums, bools, bytes ------------------------------------------------ */

static void test_uint64_accepted_as_string_or_number_and_written_as_string(void **state)
{
    Tracseq__Events__V1__Stats *st;

    (void)state;
    st = (void *)decode_ok(
        "{\"events_published\": \"18446744073709551615\", \"events_consumed\": 42,"
        " \"events_failed\": 7.0, \"published_by_type\": {\"a.b\": \"5\", \"c.d\": 6}}",
        &tracseq__events__v1__stats__descriptor, 0);
    assert_true(st->events_published == UINT64_MAX);
    assert_int_equal(st->events_consumed, 42);
    assert_int_equal(st->events_failed, 7);
    assert_int_equal(st->n_published_by_type, 2);
    assert_json(
        &st->base, 0,
        "{\"events_published\": \"18446744073709551615\", \"events_consumed\": \"42\","
        " \"events_failed\": \"7\", \"published_by_type\": {\"a.b\": \"5\", \"c.d\": \"6\"}}");
    protobuf_c_message_free_unpacked(&st->base, NULL);

    expect_invalid("{\"events_published\": \"18446744073709551616\"}",
                   &tracseq__events__v1__stats__descriptor, 0, "events_published");
    expect_invalid("{\"events_published\": -1}", &tracseq__events__v1__stats__descriptor, 0,
                   "events_published");
    expect_invalid("{\"events_published\": \"-1\"}", &tracseq__events__v1__stats__descriptor, 0,
                   "events_published");
    expect_invalid("{\"events_published\": \"1e3\"}", &tracseq__events__v1__stats__descriptor, 0,
                   "events_published");
    expect_invalid("{\"events_published\": 2.5}", &tracseq__events__v1__stats__descriptor, 0,
                   "events_published");
    expect_invalid("{\"published_by_type\": {\"a.b\": \"x\"}}",
                   &tracseq__events__v1__stats__descriptor, 0, "published_by_type.a.b");
}

static void test_int64_accepted_as_string_or_number(void **state)
{
    Google__Protobuf__UninterpretedOption *opt;

    (void)state;
    /* UninterpretedOption is proto2: has_ flags must follow what was given. */
    opt = (void *)decode_ok("{\"negative_int_value\": \"-9223372036854775808\","
                            " \"positive_int_value\": 12, \"double_value\": 0}",
                            &google__protobuf__uninterpreted_option__descriptor, 0);
    assert_true(opt->has_negative_int_value);
    assert_true(opt->negative_int_value == INT64_MIN);
    assert_true(opt->has_positive_int_value);
    assert_true(opt->has_double_value);
    assert_false(opt->has_string_value);
    assert_json(&opt->base, 0,
                "{\"negative_int_value\": \"-9223372036854775808\", \"positive_int_value\": \"12\","
                " \"double_value\": 0}");
    protobuf_c_message_free_unpacked(&opt->base, NULL);

    opt = (void *)decode_ok("{\"negativeIntValue\": -5}",
                            &google__protobuf__uninterpreted_option__descriptor, 0);
    assert_true(opt->negative_int_value == -5);
    protobuf_c_message_free_unpacked(&opt->base, NULL);

    expect_invalid("{\"negative_int_value\": \"-9223372036854775809\"}",
                   &google__protobuf__uninterpreted_option__descriptor, 0, "negative_int_value");
    expect_invalid("{\"negative_int_value\": \"9223372036854775808\"}",
                   &google__protobuf__uninterpreted_option__descriptor, 0, "negative_int_value");
    expect_invalid("{\"negative_int_value\": \" 5\"}",
                   &google__protobuf__uninterpreted_option__descriptor, 0, "negative_int_value");
    expect_invalid("{\"negative_int_value\": true}",
                   &google__protobuf__uninterpreted_option__descriptor, 0, "negative_int_value");
}

static void test_int32_and_uint32_are_range_checked(void **state)
{
    const ProtobufCMessageDescriptor *done =
        &tracseq__events__v1__sequencing_job_completed__descriptor;
    Tracseq__Events__V1__SequencingJobCompleted *m;

    (void)state;
    m = (void *)decode_ok("{\"total_samples\": \"12\", \"successful_samples\": 1e3,"
                          " \"failed_samples\": -2147483648}",
                          done, 0);
    assert_int_equal(m->total_samples, 12);
    assert_int_equal(m->successful_samples, 1000);
    assert_int_equal(m->failed_samples, INT32_MIN);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_invalid("{\"total_samples\": 1.5}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": 2147483648}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": -2147483649}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": \"12x\"}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": \"\"}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": \"+1\"}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": \"0x10\"}", done, 0, "total_samples");
    expect_invalid("{\"total_samples\": [1]}", done, 0, "total_samples");
    expect_invalid("{\"priority\": -1}", &tracseq__events__v1__sequencing_job_created__descriptor,
                   0, "priority");
    expect_invalid("{\"priority\": 4294967296}",
                   &tracseq__events__v1__sequencing_job_created__descriptor, 0, "priority");
}

static void test_double_accepts_numbers_and_special_strings(void **state)
{
    const ProtobufCMessageDescriptor *alert = &tracseq__events__v1__temperature_alert__descriptor;
    Tracseq__Events__V1__TemperatureAlert *m;

    (void)state;
    m = (void *)decode_ok(
        "{\"current_temperature\": \"NaN\", \"target_temperature\": \"-Infinity\"}", alert, 0);
    assert_true(isnan(m->current_temperature));
    assert_true(isinf(m->target_temperature) && m->target_temperature < 0);
    assert_json(&m->base, 0,
                "{\"current_temperature\": \"NaN\", \"target_temperature\": \"-Infinity\"}");
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = (void *)decode_ok(
        "{\"current_temperature\": \"Infinity\", \"target_temperature\": \"-1.5e1\"}", alert, 0);
    assert_true(isinf(m->current_temperature) && m->current_temperature > 0);
    assert_true(m->target_temperature == -15.0);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_invalid("{\"current_temperature\": \"nan\"}", alert, 0, "current_temperature");
    expect_invalid("{\"current_temperature\": \"inf\"}", alert, 0, "current_temperature");
    expect_invalid("{\"current_temperature\": \"0x1p3\"}", alert, 0, "current_temperature");
    expect_invalid("{\"current_temperature\": \"1e999\"}", alert, 0, "current_temperature");
    expect_invalid("{\"current_temperature\": true}", alert, 0, "current_temperature");
    expect_invalid("{\"current_temperature\": {}}", alert, 0, "current_temperature");
}

static void test_bool_takes_only_json_booleans(void **state)
{
    const ProtobufCMessageDescriptor *sub = &tracseq__events__v1__subscription__descriptor;
    Tracseq__Events__V1__Subscription *m;

    (void)state;
    m = (void *)decode_ok("{\"auto_ack\": true}", sub, 0);
    assert_true(m->auto_ack);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    expect_invalid("{\"auto_ack\": \"true\"}", sub, 0, "auto_ack");
    expect_invalid("{\"auto_ack\": 1}", sub, 0, "auto_ack");
}

static void test_enum_by_name_or_number_written_as_name(void **state)
{
    const ProtobufCMessageDescriptor *sub = &tracseq__events__v1__subscription__descriptor;
    Tracseq__Events__V1__Subscription *m;

    (void)state;
    m = (void *)decode_ok("{\"start\": \"START_POSITION_EARLIEST\"}", sub, 0);
    assert_int_equal(m->start, TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = (void *)decode_ok("{\"start\": 3, \"start_time\": \"2024-06-18T00:00:00Z\"}", sub, 0);
    assert_int_equal(m->start, TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP);
    assert_json(
        &m->base, 0,
        "{\"start\": \"START_POSITION_TIMESTAMP\", \"start_time\": \"2024-06-18T00:00:00Z\"}");
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_invalid("{\"start\": \"START_POSITION_BOGUS\"}", sub, 0, "start");
    expect_invalid("{\"start\": \"start_position_latest\"}", sub, 0, "start");
    expect_invalid("{\"start\": 9}", sub, 0, "start");
    expect_invalid("{\"start\": 1.5}", sub, 0, "start");
    expect_invalid("{\"start\": true}", sub, 0, "start");
}

static void test_bytes_are_base64_in_either_alphabet(void **state)
{
    const ProtobufCMessageDescriptor *fdr =
        &grpc__reflection__v1__file_descriptor_response__descriptor;
    Grpc__Reflection__V1__FileDescriptorResponse *m;

    (void)state;
    m = (void *)decode_ok("{\"file_descriptor_proto\": [\"aGVsbG8=\", \"aGVsbG8\", \"-_8\","
                          " \"+/8=\", \"\", \"YQ==\", \"YQ\"]}",
                          fdr, 0);
    assert_int_equal(m->n_file_descriptor_proto, 7);
    assert_int_equal(m->file_descriptor_proto[0].len, 5);
    assert_memory_equal(m->file_descriptor_proto[0].data, "hello", 5);
    assert_memory_equal(m->file_descriptor_proto[1].data, "hello", 5);
    assert_int_equal(m->file_descriptor_proto[2].len, 2);
    assert_memory_equal(m->file_descriptor_proto[2].data, "\xfb\xff", 2);
    assert_memory_equal(m->file_descriptor_proto[3].data, "\xfb\xff", 2);
    assert_int_equal(m->file_descriptor_proto[4].len, 0);
    assert_int_equal(m->file_descriptor_proto[6].len, 1);
    assert_json(&m->base, 0,
                "{\"file_descriptor_proto\": [\"aGVsbG8=\", \"aGVsbG8=\", \"+/8=\", \"+/8=\","
                " \"\", \"YQ==\", \"YQ==\"]}");
    protobuf_c_message_free_unpacked(&m->base, NULL);

    expect_invalid("{\"file_descriptor_proto\": [\"YQ==\", \"a\"]}", fdr, 0,
                   "file_descriptor_proto[1]");
    expect_invalid("{\"file_descriptor_proto\": [\"aGVsbG8==\"]}", fdr, 0,
                   "file_descriptor_proto[0]");
    expect_invalid("{\"file_descriptor_proto\": [\"ab=c\"]}", fdr, 0, "file_descriptor_proto[0]");
    expect_invalid("{\"file_descriptor_proto\": [\"@@@@\"]}", fdr, 0, "file_descriptor_proto[0]");
    expect_invalid("{\"file_descriptor_proto\": [\"YQ===\"]}", fdr, 0, "file_descriptor_proto[0]");
    expect_invalid("{\"file_descriptor_proto\": [\"Y\\nQ=\"]}", fdr, 0, "file_descriptor_proto[0]");
    expect_invalid("{\"file_descriptor_proto\": [1]}", fdr, 0, "file_descriptor_proto[0]");
    expect_invalid("{\"file_descriptor_proto\": \"YQ==\"}", fdr, 0, "file_descriptor_proto");
}

/* ---- error paths, unknown fields, null, oneof ------------------------------------ */

static void test_type_errors_name_the_json_path(void **state)
{
    const ProtobufCMessageDescriptor *event = &tracseq__events__v1__event__descriptor;

    (void)state;
    expect_invalid("{\"barcode\": 5}", &tracseq__events__v1__sample_created__descriptor, 0,
                   "barcode");
    expect_invalid("{\"metadata\": {\"run\": \"1\", \"lane\": 5}}", event, 0, "metadata.lane");
    expect_invalid("{\"metadata\": {\"lane\": null}}", event, 0, "metadata.lane");
    expect_invalid("{\"metadata\": [\"lane\"]}", event, 0, "metadata");
    expect_invalid("{\"samples\": [\"a\", \"b\", 3]}",
                   &tracseq__events__v1__sequencing_job_created__descriptor, 0, "samples[2]");
    expect_invalid("{\"samples\": [\"a\", null]}",
                   &tracseq__events__v1__sequencing_job_created__descriptor, 0, "samples[1]");
    expect_invalid("{\"samples\": \"a\"}", &tracseq__events__v1__sequencing_job_created__descriptor,
                   0, "samples");
    expect_invalid("{\"created_at\": \"2024-02-30T00:00:00Z\"}",
                   &tracseq__events__v1__sample_created__descriptor, 0, "created_at");
    expect_invalid("{\"sample_created\": {\"barcode\": false}}", event, 0,
                   "sample_created.barcode");
    expect_invalid("{\"sensor_data_received\": {\"measurements\": {\"c\": \"warm\"}}}", event, 0,
                   "sensor_data_received.measurements.c");
    expect_invalid("{\"deliveries\": [{}, {\"event\": {\"sampleCreated\": {\"createdAt\": 5}}}]}",
                   &tracseq__events__v1__pull_response__descriptor, 0,
                   "deliveries[1].event.sample_created.created_at");
    expect_invalid("{\"sample_created\": \"B1\"}", event, 0, "sample_created");
    expect_invalid("{\"data\": [1]}", event, 0, "data");
    expect_invalid("[]", event, 0, "");
    expect_invalid("\"x\"", event, 0, "");
}

static void test_unknown_field_rejected_unless_ignored(void **state)
{
    const ProtobufCMessageDescriptor *event = &tracseq__events__v1__event__descriptor;
    tse_error err;
    json_t *j = parse("{\"event_type\": \"a.b\", \"colour\": \"red\"}");
    ProtobufCMessage *msg = NULL;

    (void)state;
    assert_int_equal(tse_pbjson_to_message(j, event, 0, &msg, &err), TSE_INVALID);
    assert_string_equal(err.field, "colour");
    assert_non_null(strstr(err.message, "unknown field"));
    assert_null(msg);
    json_decref(j);

    expect_invalid("{\"sample_created\": {\"barcode\": \"B\", \"Barcode\": \"C\"}}", event, 0,
                   "sample_created.Barcode");
    expect_invalid("{\"event_type\": \"a.b\", \"event-type\": \"a.b\"}", event, 0, "event-type");

    msg = decode_ok("{\"event_type\": \"a.b\", \"colour\": \"red\","
                    " \"sample_created\": {\"barcode\": \"B\", \"shade\": [1]}}",
                    event, TSE_PBJSON_IGNORE_UNKNOWN);
    assert_json(msg, 0, "{\"event_type\": \"a.b\", \"sample_created\": {\"barcode\": \"B\"}}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void test_null_means_unset_except_for_value(void **state)
{
    Tracseq__Events__V1__SampleCreated *m;

    (void)state;
    m = (void *)decode_ok("{\"barcode\": null, \"created_at\": null, \"metadata\": null}",
                          &tracseq__events__v1__sample_created__descriptor, 0);
    assert_string_equal(m->barcode, "");
    assert_null(m->created_at);
    assert_int_equal(m->n_metadata, 0);
    assert_json(&m->base, 0, "{}");
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = (void *)decode_ok("{\"metadata\": {\"gone\": null}}",
                          &tracseq__events__v1__sample_created__descriptor, 0);
    assert_int_equal(m->n_metadata, 1);
    assert_int_equal(m->metadata[0]->value->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* A null oneof member does not choose it. */
    m = (void *)decode_ok("{\"data\": null, \"user_logged_in\": {}}",
                          &tracseq__events__v1__event__descriptor, 0);
    assert_int_equal(((Tracseq__Events__V1__Event *)m)->payload_case,
                     TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_USER_LOGGED_IN);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_two_members_of_a_oneof_are_rejected(void **state)
{
    tse_error err;
    json_t *j = parse("{\"data\": {\"a\": 1}, \"sample_created\": {\"barcode\": \"B\"}}");
    ProtobufCMessage *msg = NULL;

    (void)state;
    assert_int_equal(
        tse_pbjson_to_message(j, &tracseq__events__v1__event__descriptor, 0, &msg, &err),
        TSE_INVALID);
    assert_string_equal(err.field, "sample_created");
    assert_non_null(strstr(err.message, "data"));
    assert_null(msg);
    json_decref(j);
    expect_invalid("{\"subscription_name\": \"a\", \"ack\": {}}",
                   &tracseq__events__v1__subscribe_request__descriptor, 0, "ack");
}

static void test_oneof_member_is_written_even_when_default(void **state)
{
    ProtobufCMessage *msg;

    (void)state;
    msg = decode_ok("{\"subscription_name\": \"\"}",
                    &tracseq__events__v1__subscribe_request__descriptor, 0);
    assert_json(msg, 0, "{\"subscription_name\": \"\"}");
    protobuf_c_message_free_unpacked(msg, NULL);
    msg = decode_ok("{\"ack\": {}}", &tracseq__events__v1__subscribe_request__descriptor, 0);
    assert_json(msg, 0, "{\"ack\": {}}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- output flags --------------------------------------------------------------- */

static void test_defaults_are_omitted_unless_emit_defaults(void **state)
{
    ProtobufCMessage *msg;

    (void)state;
    msg = decode_ok("{\"name\": \"\", \"event_types\": [], \"start\": 0, \"auto_ack\": false}",
                    &tracseq__events__v1__subscription__descriptor, 0);
    assert_json(msg, 0, "{}");
    assert_json(msg, TSE_PBJSON_EMIT_DEFAULTS,
                "{\"name\": \"\", \"event_types\": [], \"start\": \"START_POSITION_UNSPECIFIED\","
                " \"start_time\": null, \"ack_deadline_ms\": 0, \"max_delivery_attempts\": 0,"
                " \"max_in_flight\": 0, \"auto_ack\": false, \"min_backoff_ms\": 0,"
                " \"max_backoff_ms\": 0, \"dead_letter_type\": \"\", \"created_at\": null,"
                " \"stats\": null, \"owner\": \"\"}");
    assert_json(msg, TSE_PBJSON_EMIT_DEFAULTS | TSE_PBJSON_CAMEL_CASE,
                "{\"name\": \"\", \"eventTypes\": [], \"start\": \"START_POSITION_UNSPECIFIED\","
                " \"startTime\": null, \"ackDeadlineMs\": 0, \"maxDeliveryAttempts\": 0,"
                " \"maxInFlight\": 0, \"autoAck\": false, \"minBackoffMs\": 0,"
                " \"maxBackoffMs\": 0, \"deadLetterType\": \"\", \"createdAt\": null,"
                " \"stats\": null, \"owner\": \"\"}");
    protobuf_c_message_free_unpacked(msg, NULL);

    /* Maps come out as {}, oneof members not chosen stay out. */
    msg = decode_ok("{}", &tracseq__events__v1__event__descriptor, 0);
    assert_json(msg, TSE_PBJSON_EMIT_DEFAULTS,
                "{\"id\": \"\", \"event_type\": \"\", \"source_service\": \"\", \"version\": \"\","
                " \"timestamp\": null, \"correlation_id\": \"\", \"causation_id\": \"\","
                " \"subject\": \"\", \"priority\": 0, \"metadata\": {}, \"traceparent\": \"\","
                " \"tracestate\": \"\"}");
    protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- Struct and Value ------------------------------------------------------------ */

static void assert_value_round_trip(const char *text)
{
    json_t *in = parse(text), *out;
    Google__Protobuf__Value *v = NULL;
    tse_error err;

    assert_int_equal(tse_pbjson_to_value(in, &v, &err), TSE_OK);
    out = tse_pbjson_from_value(v);
    assert_non_null(out);
    if (!json_equal(in, out))
        fail_msg("value round trip differs for %s", text);
    json_decref(in);
    json_decref(out);
    protobuf_c_message_free_unpacked(&v->base, NULL);
}

static void test_value_maps_every_json_kind(void **state)
{
    (void)state;
    assert_value_round_trip("null");
    assert_value_round_trip("true");
    assert_value_round_trip("false");
    assert_value_round_trip("0");
    assert_value_round_trip("-17");
    assert_value_round_trip("2.5e-8");
    assert_value_round_trip("9007199254740993.5");
    assert_value_round_trip("\"caf\\u00e9 \\ud83e\\uddea\"");
    assert_value_round_trip("[]");
    assert_value_round_trip("{}");
    assert_value_round_trip("{\"a\": [1, {\"b\": null}, [[]]], \"c\": {\"d\": \"e\"}}");
}

static void test_struct_requires_an_object_and_names_nested_keys(void **state)
{
    Google__Protobuf__Struct sentinel;
    Google__Protobuf__Struct *s = &sentinel;
    json_t *j = parse("[1]");
    json_t *out;
    tse_error err;

    (void)state;
    assert_int_equal(tse_pbjson_to_struct(j, &s, &err), TSE_INVALID);
    assert_ptr_equal(s, &sentinel);
    json_decref(j);

    j = parse("{\"a\": {\"b\": [true, {\"c\": 1}]}}");
    assert_int_equal(tse_pbjson_to_struct(j, &s, &err), TSE_OK);
    out = tse_pbjson_from_struct(s);
    assert_true(json_equal(j, out));
    json_decref(out);
    json_decref(j);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    /* A NUL in a key cannot live in a C string; the error names the path. */
    j = json_object();
    json_object_set_new(j, "a", json_object());
    json_object_setn_new(json_object_get(j, "a"), "k\0x", 3, json_true());
    s = &sentinel;
    assert_int_equal(tse_pbjson_to_struct(j, &s, &err), TSE_INVALID);
    assert_string_equal(err.field, "a.k");
    assert_ptr_equal(s, &sentinel);
    json_decref(j);
}

/* [[[...]]] with depth levels of arrays around 1. */
static json_t *nested_arrays(int depth)
{
    json_t *j = json_integer(1);

    for (int i = 0; i < depth; i++) {
        json_t *outer = json_array();

        json_array_append_new(outer, j);
        j = outer;
    }
    return j;
}

static void test_nesting_deeper_than_the_limit_is_rejected(void **state)
{
    Google__Protobuf__Value *v = NULL;
    tse_error err;
    json_t *j, *out;

    (void)state;
    j = nested_arrays(TSE_PBJSON_MAX_DEPTH);
    assert_int_equal(tse_pbjson_to_value(j, &v, &err), TSE_OK);
    out = tse_pbjson_from_value(v);
    assert_true(json_equal(j, out));
    json_decref(out);
    json_decref(j);
    protobuf_c_message_free_unpacked(&v->base, NULL);

    v = NULL;
    j = nested_arrays(TSE_PBJSON_MAX_DEPTH + 1);
    assert_int_equal(tse_pbjson_to_value(j, &v, &err), TSE_INVALID);
    assert_non_null(strstr(err.message, "deeper"));
    assert_null(v);
    json_decref(j);

    /* Far beyond the limit: refused without recursing all the way down. */
    j = nested_arrays(5000);
    assert_int_equal(tse_pbjson_to_value(j, &v, &err), TSE_INVALID);
    assert_null(v);
    json_decref(j);
}

static void test_nesting_limit_counts_the_envelope(void **state)
{
    json_t *data = nested_arrays(TSE_PBJSON_MAX_DEPTH - 2);
    json_t *ev = json_object(), *obj = json_object();
    ProtobufCMessage *msg = NULL;
    tse_error err;

    (void)state;
    /* event{} + data{} + 62 arrays = 64 levels: accepted. */
    json_object_set_new(obj, "x", data);
    json_object_set_new(ev, "data", obj);
    assert_int_equal(
        tse_pbjson_to_message(ev, &tracseq__events__v1__event__descriptor, 0, &msg, &err), TSE_OK);
    protobuf_c_message_free_unpacked(msg, NULL);
    msg = NULL;
    json_object_set_new(obj, "x", nested_arrays(TSE_PBJSON_MAX_DEPTH - 1));
    assert_int_equal(
        tse_pbjson_to_message(ev, &tracseq__events__v1__event__descriptor, 0, &msg, &err),
        TSE_INVALID);
    assert_int_equal(strncmp(err.field, "data.x[0][0]", 12), 0);
    assert_null(msg);
    json_decref(ev);
}

/* A Value chain nested deeper than the limit, as a hostile peer could send. */
static Google__Protobuf__Value *deep_value(int depth)
{
    Google__Protobuf__Value *v = malloc(sizeof(*v));

    google__protobuf__value__init(v);
    for (int i = 0; i < depth; i++) {
        Google__Protobuf__ListValue *l = malloc(sizeof(*l));
        Google__Protobuf__Value *outer = malloc(sizeof(*outer));

        google__protobuf__list_value__init(l);
        l->values = malloc(sizeof(*l->values));
        l->values[0] = v;
        l->n_values = 1;
        google__protobuf__value__init(outer);
        outer->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        outer->list_value = l;
        v = outer;
    }
    return v;
}

static void test_output_refuses_nesting_deeper_than_the_limit(void **state)
{
    Google__Protobuf__Value *v;
    json_t *j;

    (void)state;
    v = deep_value(TSE_PBJSON_MAX_DEPTH);
    j = tse_pbjson_from_value(v);
    assert_non_null(j);
    json_decref(j);
    protobuf_c_message_free_unpacked(&v->base, NULL);
    v = deep_value(TSE_PBJSON_MAX_DEPTH + 1);
    assert_null(tse_pbjson_from_value(v));
    protobuf_c_message_free_unpacked(&v->base, NULL);
}

static void test_non_finite_value_numbers_are_written_as_null(void **state)
{
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    json_t *j;

    (void)state;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = NAN;
    j = tse_pbjson_from_value(&v);
    assert_true(json_is_null(j));
    json_decref(j);
    v.number_value = -INFINITY;
    j = tse_pbjson_from_value(&v);
    assert_true(json_is_null(j));
    json_decref(j);
    v.number_value = 0.5;
    j = tse_pbjson_from_value(&v);
    assert_true(json_is_real(j) && json_real_value(j) == 0.5);
    json_decref(j);
}

/* ---- messages from the wire ------------------------------------------------------ */

static void test_invalid_utf8_from_the_wire_is_replaced(void **state)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Tracseq__Events__V1__Event__MetadataEntry entry =
        TRACSEQ__EVENTS__V1__EVENT__METADATA_ENTRY__INIT;
    Tracseq__Events__V1__Event__MetadataEntry *entries[] = {&entry};
    char bad[] = "ok\xff\xc0\x80!";
    char key[] = "k\xed\xa0\x80";

    (void)state;
    ev.event_type = bad;
    entry.key = key;
    entry.value = bad;
    ev.n_metadata = 1;
    ev.metadata = entries;
    assert_json(&ev.base, 0,
                "{\"event_type\": \"ok\\ufffd\\ufffd\\ufffd!\","
                " \"metadata\": {\"k\\ufffd\\ufffd\\ufffd\": \"ok\\ufffd\\ufffd\\ufffd!\"}}");
}

static void test_chosen_but_absent_submessage_is_written_as_default(void **state)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;

    (void)state;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED;
    assert_json(&ev.base, 0, "{\"sample_created\": {}}");
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    assert_json(&ev.base, 0, "{\"data\": {}}");
    assert_null(tse_pbjson_from_message(NULL, 0));
}

/* ---- hostile input ---------------------------------------------------------------- */

/*
 * Replaces every field of the envelope (and of its payload) in turn by each
 * of a set of odd JSON values: decoding must succeed or fail cleanly, never
 * crash or leak, and what it accepts must encode again.
 */
static void try_each_value_in(json_t *root, json_t *obj)
{
    static const char *const odd[] = {
        "null",
        "true",
        "0",
        "-1",
        "1.5",
        "1e300",
        "\"\"",
        "\"x\"",
        "\"NaN\"",
        "[]",
        "{}",
        "[null]",
        "[1, \"a\"]",
        "{\"a\": null}",
        "{\"\": []}",
        "\"2024-06-18T10:00:00Z\"",
        "\"18446744073709551616\"",
    };
    const char *key;
    json_t *val, *saved;
    void *tmp;

    json_object_foreach_safe(obj, tmp, key, val)
    {
        saved = json_incref(val);
        for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
            ProtobufCMessage *msg = NULL;
            tse_error err;
            tse_status st;

            json_object_set_new(obj, key, parse(odd[i]));
            st =
                tse_pbjson_to_message(root, &tracseq__events__v1__event__descriptor, 0, &msg, &err);
            assert_true(st == TSE_OK || st == TSE_INVALID);
            if (st == TSE_OK) {
                json_t *j = tse_pbjson_from_message(msg, 0);

                assert_non_null(j);
                json_decref(j);
                protobuf_c_message_free_unpacked(msg, NULL);
            } else {
                assert_null(msg);
                assert_true(strlen(err.field) > 0);
            }
        }
        json_object_set_new(obj, key, saved);
    }
}

static void test_odd_values_in_every_field_fail_cleanly(void **state)
{
    json_t *root = parse(envelope_json);

    (void)state;
    try_each_value_in(root, root);
    try_each_value_in(root, json_object_get(root, "sample_created"));
    try_each_value_in(root, json_object_get(root, "metadata"));
    json_decref(root);
}

/* ---- main ---------------------------------------------------------------------- */

#define ROUND_TRIP(i, name)                                                                        \
    {                                                                                              \
        "round_trip_" name, test_round_trip_payload, NULL, NULL, &payload_cases[i]                 \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        ROUND_TRIP(0, "sample_created"),
        ROUND_TRIP(1, "sample_validated"),
        ROUND_TRIP(2, "sample_status_changed"),
        ROUND_TRIP(3, "sample_stored"),
        ROUND_TRIP(4, "sample_assigned_to_sequencing"),
        ROUND_TRIP(5, "sample_completed"),
        ROUND_TRIP(6, "temperature_alert"),
        ROUND_TRIP(7, "capacity_warning"),
        ROUND_TRIP(8, "sensor_data_received"),
        ROUND_TRIP(9, "user_logged_in"),
        ROUND_TRIP(10, "user_logged_out"),
        ROUND_TRIP(11, "login_failed"),
        ROUND_TRIP(12, "document_uploaded"),
        ROUND_TRIP(13, "document_processing_completed"),
        ROUND_TRIP(14, "document_information_extracted"),
        ROUND_TRIP(15, "sequencing_job_created"),
        ROUND_TRIP(16, "sequencing_job_status_changed"),
        ROUND_TRIP(17, "sequencing_job_completed"),
        cmocka_unit_test(test_envelope_with_typed_payload_round_trips),
        cmocka_unit_test(test_envelope_with_struct_data_round_trips),
        cmocka_unit_test(test_nested_messages_and_repeated_messages_round_trip),
        cmocka_unit_test(test_lower_camel_names_are_accepted),
        cmocka_unit_test(test_field_given_by_both_names_is_rejected),
        cmocka_unit_test(test_camel_case_output_flag),
        cmocka_unit_test(test_rfc3339_format_writes_utc_with_0_3_6_or_9_digits),
        cmocka_unit_test(test_rfc3339_format_clamps_out_of_range_values),
        cmocka_unit_test(test_rfc3339_parse_accepts_offsets_and_fractions),
        cmocka_unit_test(test_rfc3339_parse_rejects_malformed_and_out_of_range),
        cmocka_unit_test(test_timestamp_field_takes_any_offset_and_writes_utc),
        cmocka_unit_test(test_uint64_accepted_as_string_or_number_and_written_as_string),
        cmocka_unit_test(test_int64_accepted_as_string_or_number),
        cmocka_unit_test(test_int32_and_uint32_are_range_checked),
        cmocka_unit_test(test_double_accepts_numbers_and_special_strings),
        cmocka_unit_test(test_bool_takes_only_json_booleans),
        cmocka_unit_test(test_enum_by_name_or_number_written_as_name),
        cmocka_unit_test(test_bytes_are_base64_in_either_alphabet),
        cmocka_unit_test(test_type_errors_name_the_json_path),
        cmocka_unit_test(test_unknown_field_rejected_unless_ignored),
        cmocka_unit_test(test_null_means_unset_except_for_value),
        cmocka_unit_test(test_two_members_of_a_oneof_are_rejected),
        cmocka_unit_test(test_oneof_member_is_written_even_when_default),
        cmocka_unit_test(test_defaults_are_omitted_unless_emit_defaults),
        cmocka_unit_test(test_value_maps_every_json_kind),
        cmocka_unit_test(test_struct_requires_an_object_and_names_nested_keys),
        cmocka_unit_test(test_nesting_deeper_than_the_limit_is_rejected),
        cmocka_unit_test(test_nesting_limit_counts_the_envelope),
        cmocka_unit_test(test_output_refuses_nesting_deeper_than_the_limit),
        cmocka_unit_test(test_non_finite_value_numbers_are_written_as_null),
        cmocka_unit_test(test_invalid_utf8_from_the_wire_is_replaced),
        cmocka_unit_test(test_chosen_but_absent_submessage_is_written_as_default),
        cmocka_unit_test(test_odd_values_in_every_field_fail_cleanly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
