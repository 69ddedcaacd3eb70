/*
 * test_domain_payload_struct.c - the fast Struct-to-catalog-message path
 * (src/domain/payload_struct.c) against the general one through a JSON tree.
 *
 * Each case states whether the fast path takes the payload or declines it,
 * and what tse_event_prepare_payload (strict) answers; every case also
 * checks that the answer (status, field, message, payload bytes) is the one
 * the general path gives for the same Struct.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "domain/catalog.h"
#include "domain/payload_struct.h"
#include "domain/validate.h"
#include "google/protobuf/any.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

typedef Google__Protobuf__Struct Struct;

#define FAST     true
#define DECLINED false
#define UUID1    "123e4567-e89b-42d3-a456-426614174000"
#define UUID2    "223e4567-e89b-42d3-a456-426614174001"
#define SAMPLE_OK                                                                                  \
    "\"sample_id\":\"" UUID1 "\",\"barcode\":\"SAM-1\",\"submitter_id\":\"" UUID2                  \
    "\",\"lab_id\":\"" UUID2 "\",\"sample_type\":\"DNA\""
#define JOB_OK "\"job_id\":\"J-1\",\"job_name\":\"run\",\"job_type\":\"WGS\",\"created_by\":\"me\""

typedef struct outcome {
    tse_status st;
    tse_error err;
    uint8_t *bytes;
    size_t len;
} outcome;

static Struct *struct_of(const char *json_text)
{
    json_error_t jerr;
    json_t *j = json_loads(json_text, 0, &jerr);
    Struct *s = NULL;

    assert_non_null(j);
    assert_int_equal(tse_pbjson_to_struct(j, &s, NULL), TSE_OK);
    json_decref(j);
    return s;
}

static Struct *copy_struct(const Struct *s)
{
    size_t len = protobuf_c_message_get_packed_size(&s->base);
    uint8_t *buf = malloc(len + 1);
    Struct *c;

    assert_non_null(buf);
    protobuf_c_message_pack(&s->base, buf);
    c = google__protobuf__struct__unpack(NULL, len, buf);
    assert_non_null(c);
    free(buf);
    return c;
}

static void pack_into(outcome *o, const ProtobufCMessage *m)
{
    o->len = protobuf_c_message_get_packed_size(m);
    o->bytes = malloc(o->len + 1);
    assert_non_null(o->bytes);
    protobuf_c_message_pack(m, o->bytes);
}

/* What the service answers: tse_event_prepare_payload on a copy of s. */
static void prepared(const tse_catalog_entry *e, const Struct *s, outcome *o)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    const ProtobufCFieldDescriptor *f;
    ProtobufCMessage *payload;
    tse_prepare_result result;
    char type[64];

    snprintf(type, sizeof(type), "%s", e->event_type);
    ts.seconds = 1718704800;
    ev.event_type = type;
    ev.timestamp = &ts;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = copy_struct(s);
    tse_error_clear(&o->err);
    o->st = tse_event_prepare_payload(&ev, TSE_VALIDATION_STRICT, &result, &o->err);
    f = protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor,
                                                (unsigned)ev.payload_case);
    payload = *(ProtobufCMessage **)((char *)&ev + f->offset);
    if (o->st == TSE_OK)
        pack_into(o, payload);
    protobuf_c_message_free_unpacked(payload, NULL);
}

/* What the general path alone answers, with payload.c's wording. */
static void general(const tse_catalog_entry *e, const Struct *s, outcome *o)
{
    ProtobufCMessage *typed = NULL;
    json_t *json = tse_pbjson_from_struct(s);
    char why[TSE_ERROR_MESSAGE_MAX], field[TSE_ERROR_FIELD_MAX];

    assert_non_null(json);
    tse_error_clear(&o->err);
    /* Text JSON cannot carry (NaN, bad UTF-8) is refused before any conversion. */
    o->st = tse_message_check_text(&s->base, "payload", &o->err);
    if (o->st != TSE_OK) {
        json_decref(json);
        return;
    }
    o->st = tse_pbjson_to_message(json, e->descriptor, 0, &typed, &o->err);
    json_decref(json);
    if (o->st != TSE_OK) {
        tse_error_prefix_field(&o->err, "payload");
        memcpy(why, o->err.message, sizeof(why));
        memcpy(field, o->err.field, sizeof(field));
        tse_error_set(&o->err, TSE_INVALID, field, "%s does not fit %s: %s", field, e->event_type,
                      why);
        return;
    }
    o->st = tse_payload_check(e, typed, &o->err);
    if (o->st == TSE_OK)
        o->st = tse_payload_stamp(e, typed, 1718704800, 0, &o->err);
    if (o->st == TSE_OK)
        pack_into(o, typed);
    protobuf_c_message_free_unpacked(typed, NULL);
}

static void expect_struct(const char *type, const Struct *s, bool fast, tse_status st,
                          const char *field)
{
    const tse_catalog_entry *e = tse_catalog_find(type);
    ProtobufCMessage *m;
    outcome got = {0}, ref = {0};

    assert_non_null(e);
    assert_int_equal(tse_payload_struct_fast(s, e->descriptor, &m), TSE_OK);
    assert_int_equal(m != NULL, fast);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    prepared(e, s, &got);
    general(e, s, &ref);
    if (got.st != st || strcmp(got.err.field, field) != 0)
        print_error("got %d %s: %s\n", (int)got.st, got.err.field, got.err.message);
    assert_int_equal(got.st, st);
    assert_string_equal(got.err.field, field);
    assert_int_equal(got.st, ref.st);
    assert_string_equal(got.err.field, ref.err.field);
    assert_string_equal(got.err.message, ref.err.message);
    assert_int_equal(got.len, ref.len);
    if (got.len > 0)
        assert_memory_equal(got.bytes, ref.bytes, got.len);
    free(got.bytes);
    free(ref.bytes);
}

static void expect(const char *type, const char *json_text, bool fast, tse_status st,
                   const char *field)
{
    Struct *s = struct_of(json_text);

    expect_struct(type, s, fast, st, field);
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

/* ---- what the fast path takes ---------------------------------------------- */

static void strings_by_proto_name_take_the_fast_path(void **state)
{
    (void)state;
    expect("sample.created", "{" SAMPLE_OK "}", FAST, TSE_OK, "");
    expect("sample.created",
           "{\"barcode\":\"caf\\u00e9\",\"sample_id\":\"" UUID1 "\",\"submitter_id\":\"" UUID2
           "\",\"lab_id\":\"" UUID2 "\",\"sample_type\":\"RNA\"}",
           FAST, TSE_OK, "");
}

static void schema_rules_still_apply_on_the_fast_path(void **state)
{
    (void)state;
    expect("sample.created", "{\"sample_id\":\"" UUID1 "\"}", FAST, TSE_INVALID, "payload.barcode");
    expect("sample.created", "{\"sample_id\":\"nope\",\"barcode\":\"B\"}", FAST, TSE_INVALID,
           "payload.sample_id");
    expect("sequencing.job_created", "{" JOB_OK ",\"samples\":[\"" UUID1 "\",\"x\"]}", FAST,
           TSE_INVALID, "payload.samples[1]");
}

static void lists_of_strings_take_the_fast_path(void **state)
{
    (void)state;
    expect("sequencing.job_created", "{" JOB_OK ",\"samples\":[\"" UUID1 "\",\"" UUID2 "\"]}", FAST,
           TSE_OK, "");
    expect("sequencing.job_created", "{" JOB_OK ",\"samples\":[]}", FAST, TSE_OK, "");
}

/* ---- what it declines, answered by the general path ------------------------ */

static void numbers_for_integer_fields_are_declined(void **state)
{
    (void)state;
    expect("sequencing.job_created", "{" JOB_OK ",\"priority\":3}", DECLINED, TSE_OK, "");
    expect("sequencing.job_created", "{" JOB_OK ",\"priority\":2.5}", DECLINED, TSE_INVALID,
           "payload.priority");
    expect("sequencing.job_created", "{" JOB_OK ",\"priority\":-1}", DECLINED, TSE_INVALID,
           "payload.priority");
    expect("sequencing.job_created", "{" JOB_OK ",\"priority\":4294967296}", DECLINED, TSE_INVALID,
           "payload.priority");
    expect("sequencing.job_created", "{" JOB_OK ",\"priority\":\"7\"}", DECLINED, TSE_OK, "");
}

/* A Struct can hold NaN and infinity, which JSON cannot: refused as not finite. */
static void nan_and_infinity_are_declined(void **state)
{
    const double odd[] = {NAN, INFINITY, -INFINITY};

    (void)state;
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        Struct *s = struct_of("{" JOB_OK ",\"priority\":0}");

        for (size_t k = 0; k < s->n_fields; k++)
            if (strcmp(s->fields[k]->key, "priority") == 0)
                s->fields[k]->value->number_value = odd[i];
        expect_struct("sequencing.job_created", s, DECLINED, TSE_INVALID, "payload.priority");
        protobuf_c_message_free_unpacked(&s->base, NULL);
    }
}

static void other_value_kinds_for_string_fields_are_declined(void **state)
{
    (void)state;
    expect("sample.created", "{" SAMPLE_OK ",\"metadata\":null}", DECLINED, TSE_OK, "");
    expect("sample.created", "{\"sample_id\":\"" UUID1 "\",\"barcode\":null}", DECLINED,
           TSE_INVALID, "payload.barcode");
    expect("sample.created",
           "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"B\",\"sample_type\":{\"a\":1}}", DECLINED,
           TSE_INVALID, "payload.sample_type");
    expect("sample.created",
           "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"B\",\"sample_type\":[\"DNA\"]}", DECLINED,
           TSE_INVALID, "payload.sample_type");
    expect("sample.created", "{\"sample_id\":\"" UUID1 "\",\"barcode\":\"B\",\"sample_type\":true}",
           DECLINED, TSE_INVALID, "payload.sample_type");
    expect("sequencing.job_created", "{" JOB_OK ",\"samples\":\"" UUID1 "\"}", DECLINED,
           TSE_INVALID, "payload.samples");
    expect("sequencing.job_created", "{" JOB_OK ",\"samples\":[\"" UUID1 "\",null]}", DECLINED,
           TSE_INVALID, "payload.samples[1]");
    expect("sequencing.job_created", "{" JOB_OK ",\"samples\":[[\"" UUID1 "\"]]}", DECLINED,
           TSE_INVALID, "payload.samples[0]");
}

static void nested_structs_and_maps_are_declined(void **state)
{
    (void)state;
    expect("sample.created", "{" SAMPLE_OK ",\"metadata\":{\"a\":{\"b\":[1,null,\"c\"]}}}",
           DECLINED, TSE_OK, "");
    expect("sample.created", "{" SAMPLE_OK ",\"metadata\":[1]}", DECLINED, TSE_INVALID,
           "payload.metadata");
}

static void unknown_and_json_named_keys_are_declined(void **state)
{
    (void)state;
    expect("sample.created", "{" SAMPLE_OK ",\"colour\":\"red\"}", DECLINED, TSE_INVALID,
           "payload.colour");
    expect("sample.created",
           "{\"sampleId\":\"" UUID1 "\",\"barcode\":\"B\",\"submitterId\":\"" UUID2
           "\",\"lab_id\":\"" UUID2 "\",\"sampleType\":\"DNA\"}",
           DECLINED, TSE_OK, "");
    expect("sample.created", "{" SAMPLE_OK ",\"sampleId\":\"" UUID1 "\"}", DECLINED, TSE_INVALID,
           "payload.sample_id");
}

static void timestamp_strings_are_declined(void **state)
{
    (void)state;
    expect("sample.created", "{" SAMPLE_OK ",\"created_at\":\"2024-06-18T10:00:00Z\"}", DECLINED,
           TSE_OK, "");
    expect("sample.created", "{" SAMPLE_OK ",\"created_at\":\"yesterday\"}", DECLINED, TSE_INVALID,
           "payload.created_at");
}

/* A Struct decoded from the wire may hold a key twice; JSON cannot. */
static void a_key_given_twice_is_declined(void **state)
{
    Struct *s = struct_of("{\"sample_id\":\"" UUID1 "\",\"barcode\":\"A\"}");
    Google__Protobuf__Struct__FieldsEntry **fields = realloc(s->fields, 3 * sizeof(*fields));
    Struct *again = struct_of("{\"barcode\":\"\"}");

    (void)state;
    assert_non_null(fields);
    s->fields = fields;
    s->fields[s->n_fields++] = again->fields[0];
    again->n_fields = 0;
    protobuf_c_message_free_unpacked(&again->base, NULL);
    expect_struct("sample.created", s, DECLINED, TSE_INVALID, "payload.barcode");
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

/* No catalog message has enum or bytes fields; the fast path declines them by type. */
static void enum_and_bytes_fields_are_declined(void **state)
{
    Struct *s = struct_of("{\"name\":\"n\",\"start\":\"START_POSITION_LATEST\"}");
    Struct *b = struct_of("{\"value\":\"aGVsbG8=\"}");
    ProtobufCMessage *m;

    (void)state;
    assert_int_equal(tse_payload_struct_fast(s, &tracseq__events__v1__subscription__descriptor, &m),
                     TSE_OK);
    assert_null(m);
    assert_int_equal(tse_payload_struct_fast(b, &google__protobuf__any__descriptor, &m), TSE_OK);
    assert_null(m);
    protobuf_c_message_free_unpacked(&s->base, NULL);
    protobuf_c_message_free_unpacked(&b->base, NULL);
    s = struct_of("{\"name\":\"n\"}");
    assert_int_equal(tse_payload_struct_fast(s, &tracseq__events__v1__subscription__descriptor, &m),
                     TSE_OK);
    assert_non_null(m);
    assert_string_equal(((Tracseq__Events__V1__Subscription *)m)->name, "n");
    protobuf_c_message_free_unpacked(m, NULL);
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strings_by_proto_name_take_the_fast_path),
        cmocka_unit_test(schema_rules_still_apply_on_the_fast_path),
        cmocka_unit_test(lists_of_strings_take_the_fast_path),
        cmocka_unit_test(numbers_for_integer_fields_are_declined),
        cmocka_unit_test(nan_and_infinity_are_declined),
        cmocka_unit_test(other_value_kinds_for_string_fields_are_declined),
        cmocka_unit_test(nested_structs_and_maps_are_declined),
        cmocka_unit_test(unknown_and_json_named_keys_are_declined),
        cmocka_unit_test(timestamp_strings_are_declined),
        cmocka_unit_test(a_key_given_twice_is_declined),
        cmocka_unit_test(enum_and_bytes_fields_are_declined),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
