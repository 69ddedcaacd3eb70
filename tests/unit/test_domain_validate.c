/*
 * test_domain_validate.c - tse_event_prepare and the formats it relies on:
 * every envelope rule and default, every catalog type's payload rules in
 * strict and lenient mode, Struct payloads fitted to typed ones, UTF-8.
 *
 * Every event is built from malloc'd pieces, exactly as protobuf-c's unpack
 * would leave it, and freed with protobuf_c_message_free_unpacked on every
 * path, failures included, so ASan checks the ownership rules too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "domain/validate.h"

#define NOW_S  1718704800 /* 2024-06-18T10:00:00Z */
#define NOW_N  250000000
#define UUID_A "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
#define UUID_B "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
#define UUID_C "11111111-2222-4333-8444-555555555555"

#define STRICT  TSE_VALIDATION_STRICT
#define LENIENT TSE_VALIDATION_LENIENT

typedef Tracseq__Events__V1__Event event;

static const tse_validation_mode modes[] = {TSE_VALIDATION_STRICT, TSE_VALIDATION_LENIENT};

/* ---- building messages as unpack would ------------------------------------------ */

static char *dup(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

static const ProtobufCFieldDescriptor *field_named(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);

    if (f == NULL)
        fail_msg("%s has no field %s", msg->descriptor->name, name);
    return f;
}

static void free_string(char *s)
{
    if (s != NULL && s != protobuf_c_empty_string)
        free(s);
}

/* Sets string field name of msg, freeing the old value as free_unpacked would. */
static void set_str(ProtobufCMessage *msg, const char *name, const char *value)
{
    const ProtobufCFieldDescriptor *f = field_named(msg, name);
    char **slot = (char **)((char *)msg + f->offset);

    assert_int_equal(f->type, PROTOBUF_C_TYPE_STRING);
    assert_int_not_equal(f->label, PROTOBUF_C_LABEL_REPEATED);
    free_string(*slot);
    *slot = dup(value);
}

static const char *get_str(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *f = field_named(msg, name);

    return *(char *const *)((const char *)msg + f->offset);
}

static void set_str_list(ProtobufCMessage *msg, const char *name, const char *const *values,
                         size_t n)
{
    const ProtobufCFieldDescriptor *f = field_named(msg, name);
    size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
    char ***arr = (char ***)((char *)msg + f->offset);

    for (size_t i = 0; i < *count; i++)
        free((*arr)[i]);
    free(*arr);
    *arr = malloc(n * sizeof(char *));
    assert_non_null(*arr);
    for (size_t i = 0; i < n; i++)
        (*arr)[i] = dup(values[i]);
    *count = n;
}

static Google__Protobuf__Timestamp *get_stamp(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *f = field_named(msg, name);

    return *(Google__Protobuf__Timestamp *const *)((const char *)msg + f->offset);
}

static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);

    assert_non_null(m);
    protobuf_c_message_init(d, m);
    return m;
}

static Google__Protobuf__Timestamp *new_stamp(int64_t seconds)
{
    Google__Protobuf__Timestamp *ts =
        (Google__Protobuf__Timestamp *)new_message(&google__protobuf__timestamp__descriptor);

    ts->seconds = seconds;
    return ts;
}

/* The value a valid payload carries in a REQUIRED field. */
static void required_value(const char *field, char *buf, size_t len)
{
    snprintf(buf, len, "v-%s", field);
}

/* A typed payload of e that meets every rule, with no stamp set. */
static ProtobufCMessage *valid_payload(const tse_catalog_entry *e)
{
    static const char *const samples[] = {UUID_A, UUID_B, UUID_C};
    ProtobufCMessage *m = new_message(e->descriptor);
    char value[128];

    for (const tse_field_spec *s = e->fields; s->name != NULL; s++) {
        switch (s->rule) {
        case TSE_FIELD_REQUIRED:
            required_value(s->name, value, sizeof(value));
            set_str(m, s->name, value);
            break;
        case TSE_FIELD_UUID: set_str(m, s->name, UUID_A); break;
        case TSE_FIELD_UUID_LIST: set_str_list(m, s->name, samples, 3); break;
        default: break;
        }
    }
    return m;
}

static ProtobufCMessage *payload_of(const event *ev)
{
    const ProtobufCFieldDescriptor *f;

    if (ev->payload_case == TRACSEQ__EVENTS__V1__EVENT__PAYLOAD__NOT_SET)
        return NULL;
    f = protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor,
                                                ev->payload_case);
    return *(ProtobufCMessage *const *)((const char *)ev + f->offset);
}

static void set_payload(event *ev, Tracseq__Events__V1__Event__PayloadCase c, ProtobufCMessage *msg)
{
    ProtobufCMessage *old = payload_of(ev);
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor, c);

    if (old != NULL)
        protobuf_c_message_free_unpacked(old, NULL);
    ev->payload_case = c;
    *(ProtobufCMessage **)((char *)ev + f->offset) = msg;
}

static event *new_event(const char *type)
{
    event *ev = (event *)new_message(&tracseq__events__v1__event__descriptor);

    set_str(&ev->base, "event_type", type);
    set_str(&ev->base, "source_service", "sample-service");
    return ev;
}

static event *typed_event(const char *type)
{
    const tse_catalog_entry *e = tse_catalog_find(type);
    event *ev = new_event(type);

    assert_non_null(e);
    set_payload(ev, e->payload_case, valid_payload(e));
    return ev;
}

static Google__Protobuf__Struct *struct_of(const char *json_text)
{
    Google__Protobuf__Struct *s = NULL;
    json_error_t jerr;
    json_t *j = json_loads(json_text, 0, &jerr);

    if (j == NULL)
        fail_msg("bad test JSON: %s", jerr.text);
    assert_int_equal(tse_pbjson_to_struct(j, &s, NULL), TSE_OK);
    json_decref(j);
    return s;
}

static event *data_event(const char *type, const char *json_text)
{
    event *ev = new_event(type);

    set_payload(ev, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA, &struct_of(json_text)->base);
    return ev;
}

static void add_meta(event *ev, const char *key, const char *value)
{
    Tracseq__Events__V1__Event__MetadataEntry *m;
    void *arr = realloc(ev->metadata, (ev->n_metadata + 1) * sizeof(void *));

    assert_non_null(arr);
    ev->metadata = arr;
    m = (Tracseq__Events__V1__Event__MetadataEntry *)new_message(
        &tracseq__events__v1__event__metadata_entry__descriptor);
    m->key = dup(key);
    m->value = dup(value);
    ev->metadata[ev->n_metadata++] = m;
}

static const char *meta(const event *ev, const char *key)
{
    for (size_t i = 0; i < ev->n_metadata; i++)
        if (strcmp(ev->metadata[i]->key, key) == 0)
            return ev->metadata[i]->value;
    return NULL;
}

static Google__Protobuf__Value *struct_get(const Google__Protobuf__Struct *s, const char *key)
{
    for (size_t i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i]->key, key) == 0)
            return s->fields[i]->value;
    return NULL;
}

static const char *struct_string(const Google__Protobuf__Struct *s, const char *key)
{
    Google__Protobuf__Value *v = struct_get(s, key);

    if (v == NULL || v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
        return NULL;
    return v->string_value;
}

static void free_event(event *ev)
{
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

/* prefix followed by n copies of unit, malloc'd. */
static char *repeat_text(const char *prefix, const char *unit, size_t n)
{
    size_t plen = strlen(prefix), ulen = strlen(unit);
    char *s = malloc(plen + n * ulen + 1);

    assert_non_null(s);
    memcpy(s, prefix, plen);
    for (size_t i = 0; i < n; i++)
        memcpy(s + plen + i * ulen, unit, ulen);
    s[plen + n * ulen] = '\0';
    return s;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- running prepare -------------------------------------------------------------- */

static tse_status prepare(event *ev, tse_validation_mode mode, const char *fallback,
                          tse_prepare_result *r, tse_error *err)
{
    return tse_event_prepare(ev, mode, NOW_S, NOW_N, fallback, r, err);
}

static void expect_ok(event *ev, tse_validation_mode mode, tse_prepare_result *r)
{
    tse_error err;
    tse_status st = prepare(ev, mode, NULL, r, &err);

    if (st != TSE_OK)
        fail_msg("prepare failed: %s (%s: %s)", tse_status_name(st), err.field, err.message);
}

static void expect_invalid(event *ev, tse_validation_mode mode, const char *field)
{
    tse_error err;
    tse_prepare_result r;

    assert_int_equal(prepare(ev, mode, NULL, &r, &err), TSE_INVALID);
    assert_int_equal(err.code, TSE_INVALID);
    assert_string_equal(err.field, field);
    assert_true(strlen(err.message) > 0);
}

/* A valid sample.created with string field `field` set to value is refused
 * in both modes, naming error_field. */
static void expect_string_refused(const char *field, const char *value, const char *error_field)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = typed_event("sample.created");
        set_str(&ev->base, field, value);
        expect_invalid(ev, modes[m], error_field);
        free_event(ev);
    }
}

static void expect_string_accepted(const char *field, const char *value)
{
    event *ev = typed_event("sample.created");

    set_str(&ev->base, field, value);
    expect_ok(ev, STRICT, NULL);
    assert_string_equal(get_str(&ev->base, field), value);
    free_event(ev);
}

/* ===================================================================================
 * Formats
 * ================================================================================ */

static void event_type_valid_accepts_dotted_lowercase_types(void **state)
{
    static const char *const good[] = {"sample.created",  "a.b",     "transaction.started",
                                       "test.event",      "a1_.b_2", "x.y.z",
                                       "lab9.run_2.done_"};

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!tse_event_type_valid(good[i]))
            fail_msg("refused %s", good[i]);
}

static void event_type_valid_rejects_malformed_types(void **state)
{
    static const char *const bad[] = {
        "",
        "sample",
        "Sample.created",
        "sample.",
        ".sample",
        "sample..created",
        "1sample.created",
        "sample.1created",
        "sample.Created",
        "sample.cre-ated",
        "sample._x",
        "sample.created ",
        " sample.created",
        "sample/created",
        "sample.créé",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tse_event_type_valid(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    assert_false(tse_event_type_valid(NULL));
}

static void event_type_valid_limits_length_to_128(void **state)
{
    char type[TSE_EVENT_TYPE_MAX + 2];

    /* "a." followed by 'b's: 128 characters pass, 129 do not. */
    memset(type, 'b', sizeof(type));
    type[0] = 'a';
    type[1] = '.';
    type[TSE_EVENT_TYPE_MAX] = '\0';
    assert_true(tse_event_type_valid(type));
    type[TSE_EVENT_TYPE_MAX] = 'b';
    type[TSE_EVENT_TYPE_MAX + 1] = '\0';
    assert_false(tse_event_type_valid(type));
}

static void uuid_valid_accepts_8_4_4_4_12_hex_in_either_case(void **state)
{
    assert_true(tse_uuid_valid(UUID_A));
    assert_true(tse_uuid_valid("6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B"));
    assert_true(tse_uuid_valid("00000000-0000-0000-0000-000000000000"));
}

static void uuid_valid_rejects_other_shapes(void **state)
{
    static const char *const bad[] = {
        "",
        "6f1c2a3b4d5e4f608a7b9c0d1e2f3a4b",
        "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4",
        "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4bc",
        "6f1c2a3b-4d5e-4f60-8a7b9c0d1e2f3a4b-",
        "6f1c2a3-b4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "6f1c2a3g-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "{6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b}",
        " 6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tse_uuid_valid(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
    assert_false(tse_uuid_valid(NULL));
}

static void uuid_generate_makes_distinct_lowercase_v4_uuids(void **state)
{
    char a[37], b[37];

    tse_uuid_generate(a);
    tse_uuid_generate(b);
    assert_true(tse_uuid_valid(a));
    assert_true(tse_uuid_valid(b));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');           /* version 4 */
    assert_non_null(strchr("89ab", a[19])); /* RFC 4122 variant */
    for (int i = 0; i < 36; i++)
        assert_false(a[i] >= 'A' && a[i] <= 'F');
}

/* One run, used from the SDK and the bridge: no id twice, every one a
 * lowercase v4 UUID, whatever the counter. */
static void uuid_seq_makes_distinct_lowercase_v4_uuids(void **state)
{
    static char ids[1000][37];
    tse_uuid_seq seq;

    tse_uuid_seq_init(&seq);
    for (int i = 0; i < 1000; i++) {
        tse_uuid_seq_next(&seq, ids[i]);
        assert_true(tse_uuid_valid(ids[i]));
        assert_int_equal(ids[i][14], '4');
        assert_non_null(strchr("89ab", ids[i][19]));
        for (int k = 0; k < 36; k++)
            assert_false(ids[i][k] >= 'A' && ids[i][k] <= 'F');
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }
}

static void utf8_valid_accepts_well_formed_text(void **state)
{
    assert_true(tse_utf8_valid(""));
    assert_true(tse_utf8_valid(NULL));
    assert_true(tse_utf8_valid("plain ascii"));
    assert_true(tse_utf8_valid("caf\xc3\xa9"));                  /* é */
    assert_true(tse_utf8_valid("\xe2\x82\xac"));                 /* € */
    assert_true(tse_utf8_valid("\xf0\x9f\x98\x80"));             /* 😀 */
    assert_true(tse_utf8_valid("\xef\xbf\xbf\xf4\x8f\xbf\xbf")); /* U+FFFF, U+10FFFF */
}

static void utf8_valid_rejects_malformed_sequences(void **state)
{
    static const char *const bad[] = {
        "\xff",             /* never valid */
        "\x80",             /* lone continuation */
        "abc\xc3",          /* cut short */
        "\xe2\x82",         /* cut short */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong */
        "\xf0\x80\x80\xaf", /* overlong */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* above U+10FFFF */
        "\xc3\x28",         /* bad continuation */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tse_utf8_valid(bad[i]))
            fail_msg("accepted case %zu", i);
}

static void utf8_scrub_replaces_each_bad_byte_and_keeps_good_text(void **state)
{
    char s[] = "GET /a\xff\xfe/caf\xc3\xa9/\xe2\x82 \xc0\xaf\xf0\x9f\x98\x80\xc3";

    tse_utf8_scrub(s);
    assert_string_equal(s, "GET /a?"
                           "?/caf\xc3\xa9/?"
                           "? ?"
                           "?\xf0\x9f\x98\x80?");
    assert_true(tse_utf8_valid(s));
    tse_utf8_scrub(NULL);
}

static void utf8_length_counts_code_points(void **state)
{
    assert_int_equal(tse_utf8_length(""), 0);
    assert_int_equal(tse_utf8_length("abc"), 3);
    assert_int_equal(tse_utf8_length("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                                     "a"),
                     4);
}

static void utf8_trim_drops_an_unfinished_last_sequence(void **state)
{
    char cut2[] = "ab\xe2\x82";
    char cut1[] = "ab\xf0";
    char whole[] = "ab\xe2\x82\xac";

    tse_utf8_trim(cut2);
    tse_utf8_trim(cut1);
    tse_utf8_trim(whole);
    assert_string_equal(cut2, "ab");
    assert_string_equal(cut1, "ab");
    assert_string_equal(whole, "ab\xe2\x82\xac");
}

/* ===================================================================================
 * Envelope
 * ================================================================================ */

static void prepare_requires_event_type(void **state)
{
    expect_string_refused("event_type", "", "event_type");
}

static void prepare_rejects_a_malformed_event_type(void **state)
{
    expect_string_refused("event_type", "Sample.Created", "event_type");
    expect_string_refused("event_type", "sample", "event_type");
}

static void prepare_requires_source_service(void **state)
{
    expect_string_refused("source_service", "", "source_service");
}

static void prepare_limits_source_service_to_64_characters(void **state)
{
    char *ok = repeat('s', 64), *long_ = repeat('s', 65);
    char *wide = repeat_text("", "\xc3\xa9", 64); /* 64 characters, 128 bytes */

    expect_string_accepted("source_service", ok);
    expect_string_accepted("source_service", wide);
    free(wide);
    expect_string_refused("source_service", long_, "source_service");
    free(ok);
    free(long_);
}

static void prepare_rejects_control_characters_in_source_service(void **state)
{
    expect_string_refused("source_service", "svc\t1", "source_service");
    expect_string_refused("source_service", "svc\n", "source_service");
    expect_string_refused("source_service", "svc\x7f", "source_service");
    expect_string_refused("source_service", "svc\xc2\x85", "source_service"); /* U+0085 */
    expect_string_accepted("source_service", "sample service \xc3\xa9");
}

static void prepare_rejects_an_id_that_is_not_a_uuid(void **state)
{
    expect_string_refused("id", "evt-1", "id");
    expect_string_refused("id", UUID_A "0", "id");
}

static void prepare_keeps_a_client_id(void **state)
{
    event *ev = typed_event("sample.created");
    tse_prepare_result r;

    set_str(&ev->base, "id", UUID_B);
    expect_ok(ev, STRICT, &r);
    assert_string_equal(ev->id, UUID_B);
    assert_false(r.id_generated);
    free_event(ev);
}

static void prepare_generates_a_v4_id_when_empty(void **state)
{
    event *ev = typed_event("sample.created");
    tse_prepare_result r;

    expect_ok(ev, STRICT, &r);
    assert_true(r.id_generated);
    assert_true(tse_uuid_valid(ev->id));
    assert_int_equal(ev->id[14], '4');
    free_event(ev);
}

static void prepare_defaults_version_to_1_0(void **state)
{
    event *ev = typed_event("sample.created");

    expect_ok(ev, STRICT, NULL);
    assert_string_equal(ev->version, "1.0");
    free_event(ev);
}

static void prepare_keeps_a_well_formed_version(void **state)
{
    expect_string_accepted("version", "1.0");
    expect_string_accepted("version", "2.13");
    expect_string_accepted("version", "0.1");
    expect_string_accepted("version", "123456.999999");
}

static void prepare_rejects_versions_other_than_major_minor(void **state)
{
    expect_string_refused("version", "1.0 beta", "version");
    expect_string_refused("version", "1.0/x", "version");
    expect_string_refused("version", "2.1-beta", "version");
    expect_string_refused("version", "1", "version");
    expect_string_refused("version", "1.", "version");
    expect_string_refused("version", ".1", "version");
    expect_string_refused("version", "1.0.0", "version");
    expect_string_refused("version", "01.0", "version");
    expect_string_refused("version", "1.00", "version");
    expect_string_refused("version", "v1.0", "version");
    expect_string_refused("version", "-1.0", "version");
    expect_string_refused("version", "1234567.0", "version");
    expect_string_refused("version", "1.\xc3\xa9", "version");
}

static void prepare_replaces_the_client_timestamp(void **state)
{
    event *ev = typed_event("sample.created");

    ev->timestamp = new_stamp(42);
    ev->timestamp->nanos = 7;
    expect_ok(ev, STRICT, NULL);
    assert_int_equal(ev->timestamp->seconds, NOW_S);
    assert_int_equal(ev->timestamp->nanos, NOW_N);
    free_event(ev);
}

static void prepare_sets_a_timestamp_when_absent(void **state)
{
    event *ev = typed_event("sample.created");

    assert_null(ev->timestamp);
    expect_ok(ev, STRICT, NULL);
    assert_non_null(ev->timestamp);
    assert_int_equal(ev->timestamp->seconds, NOW_S);
    assert_int_equal(ev->timestamp->nanos, NOW_N);
    free_event(ev);
}

static void prepare_takes_correlation_id_from_the_fallback(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    assert_int_equal(prepare(ev, STRICT, UUID_C, NULL, &err), TSE_OK);
    assert_string_equal(ev->correlation_id, UUID_C);
    free_event(ev);
}

static void prepare_keeps_the_event_correlation_id_over_the_fallback(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    set_str(&ev->base, "correlation_id", UUID_B);
    assert_int_equal(prepare(ev, STRICT, UUID_C, NULL, &err), TSE_OK);
    assert_string_equal(ev->correlation_id, UUID_B);
    free_event(ev);
}

static void prepare_rejects_a_correlation_id_that_is_not_a_uuid(void **state)
{
    expect_string_refused("correlation_id", "req-42", "correlation_id");
}

static void prepare_rejects_a_fallback_correlation_id_that_is_not_a_uuid(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = typed_event("sample.created");
        tse_error err;
        assert_int_equal(prepare(ev, modes[m], "req-42", NULL, &err), TSE_INVALID);
        assert_string_equal(err.field, "x-correlation-id");
        free_event(ev);
    }
}

static void prepare_ignores_an_empty_fallback_correlation_id(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    assert_int_equal(prepare(ev, STRICT, "", NULL, &err), TSE_OK);
    assert_string_equal(ev->correlation_id, "");
    free_event(ev);
}

#define TP_A "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TP_B "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

static void prepare_keeps_a_valid_trace_context(void **state)
{
    event *ev = typed_event("sample.created");

    set_str(&ev->base, "traceparent", TP_A);
    set_str(&ev->base, "tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");
    expect_ok(ev, STRICT, NULL);
    assert_string_equal(ev->traceparent, TP_A);
    assert_string_equal(ev->tracestate, "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");
    free_event(ev);
}

static void prepare_rejects_a_bad_traceparent_naming_it(void **state)
{
    expect_string_refused("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "traceparent");
    expect_string_refused("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "traceparent");
    expect_string_refused("traceparent", "hello", "traceparent");
}

static void prepare_rejects_a_tracestate_without_traceparent(void **state)
{
    expect_string_refused("tracestate", "congo=t61rcWkgMzE", "tracestate");
}

static void prepare_rejects_a_bad_tracestate_naming_it(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = typed_event("sample.created");
        set_str(&ev->base, "traceparent", TP_A);
        set_str(&ev->base, "tracestate", "Upper=1");
        expect_invalid(ev, modes[m], "tracestate");
        free_event(ev);
    }
}

static void adopt_trace_fills_an_event_without_one(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    assert_int_equal(tse_event_adopt_trace(ev, TP_A, strlen(TP_A), "a=1", 3, &err), TSE_OK);
    expect_ok(ev, STRICT, NULL);
    assert_string_equal(ev->traceparent, TP_A);
    assert_string_equal(ev->tracestate, "a=1");
    free_event(ev);
}

static void adopt_trace_keeps_the_event_own_context(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    set_str(&ev->base, "traceparent", TP_B);
    assert_int_equal(tse_event_adopt_trace(ev, TP_A, strlen(TP_A), "a=1", 3, &err), TSE_OK);
    assert_string_equal(ev->traceparent, TP_B);
    assert_string_equal(ev->tracestate, "");
    free_event(ev);
    /* An event's own (bad) tracestate is not hidden by the call's pair. */
    ev = typed_event("sample.created");
    set_str(&ev->base, "tracestate", "b=2");
    assert_int_equal(tse_event_adopt_trace(ev, TP_A, strlen(TP_A), NULL, 0, &err), TSE_OK);
    assert_string_equal(ev->traceparent, "");
    expect_invalid(ev, STRICT, "tracestate");
    free_event(ev);
}

static void adopt_trace_without_metadata_changes_nothing(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    assert_int_equal(tse_event_adopt_trace(ev, NULL, 0, NULL, 0, &err), TSE_OK);
    assert_string_equal(ev->traceparent, "");
    expect_ok(ev, STRICT, NULL);
    free_event(ev);
}

static void prepare_limits_causation_id_to_128_characters(void **state)
{
    char *ok = repeat('c', 128), *long_ = repeat('c', 129);

    expect_string_accepted("causation_id", ok);
    expect_string_accepted("causation_id", UUID_A);
    expect_string_refused("causation_id", long_, "causation_id");
    free(ok);
    free(long_);
}

static void prepare_limits_subject_to_256_characters(void **state)
{
    char *ok = repeat('s', 256), *long_ = repeat('s', 257);

    expect_string_accepted("subject", ok);
    expect_string_refused("subject", long_, "subject");
    free(ok);
    free(long_);
}

static void prepare_defaults_priority_to_3(void **state)
{
    event *ev = typed_event("sample.created");

    expect_ok(ev, STRICT, NULL);
    assert_int_equal(ev->priority, 3);
    free_event(ev);
}

static void prepare_accepts_priorities_1_to_5(void **state)
{
    for (int p = 1; p <= 5; p++) {
        event *ev = typed_event("sample.created");
        ev->priority = p;
        expect_ok(ev, STRICT, NULL);
        assert_int_equal(ev->priority, p);
        free_event(ev);
    }
}

static void prepare_rejects_priorities_outside_1_to_5(void **state)
{
    static const int bad[] = {6, -1, 100, INT32_MIN};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t m = 0; m < 2; m++) {
            event *ev = typed_event("sample.created");
            tse_error err;
            ev->priority = bad[i];
            assert_int_equal(prepare(ev, modes[m], NULL, NULL, &err), TSE_INVALID);
            assert_string_equal(err.field, "priority");
            assert_string_equal(err.message, "priority must be between 1 and 5");
            free_event(ev);
        }
    }
}

static void prepare_leaves_a_refused_event_unchanged(void **state)
{
    event *ev = typed_event("sample.created");

    ev->priority = 9;
    expect_invalid(ev, STRICT, "priority");
    assert_string_equal(ev->id, "");
    assert_string_equal(ev->version, "");
    assert_null(ev->timestamp);
    free_event(ev);
}

static void prepare_limits_metadata_to_64_entries(void **state)
{
    char key[16];

    for (size_t m = 0; m < 2; m++) {
        event *ev = typed_event("sample.created");
        for (int i = 0; i < 64; i++) {
            snprintf(key, sizeof(key), "k%d", i);
            add_meta(ev, key, "v");
        }
        expect_ok(ev, modes[m], NULL);
        free_event(ev);

        ev = typed_event("sample.created");
        for (int i = 0; i < 65; i++) {
            snprintf(key, sizeof(key), "k%d", i);
            add_meta(ev, key, "v");
        }
        expect_invalid(ev, modes[m], "metadata");
        free_event(ev);
    }
}

static void prepare_rejects_empty_metadata_keys(void **state)
{
    event *ev = typed_event("sample.created");

    add_meta(ev, "", "v");
    expect_invalid(ev, STRICT, "metadata");
    free_event(ev);
}

static void prepare_limits_metadata_key_and_value_length(void **state)
{
    char *key128 = repeat('k', 128), *key129 = repeat('k', 129);
    char *value1024 = repeat('v', 1024), *value1025 = repeat('v', 1025);
    char field[TSE_ERROR_FIELD_MAX];
    event *ev = typed_event("sample.created");

    add_meta(ev, key128, value1024);
    expect_ok(ev, STRICT, NULL);
    free_event(ev);

    ev = typed_event("sample.created");
    add_meta(ev, key129, "v");
    snprintf(field, sizeof(field), "metadata.%s", key129); /* cut as tse_error cuts it */
    expect_invalid(ev, STRICT, field);
    free_event(ev);

    ev = typed_event("sample.created");
    add_meta(ev, "lane", value1025);
    expect_invalid(ev, STRICT, "metadata.lane");
    free_event(ev);
    free(key128);
    free(key129);
    free(value1024);
    free(value1025);
}

static void prepare_reserves_schema_metadata_keys_for_the_server(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = typed_event("sample.created");
        add_meta(ev, "schema_valid", "true");
        expect_invalid(ev, modes[m], "metadata.schema_valid");
        free_event(ev);
    }
    /* Only the prefix is reserved. */
    {
        event *ev = typed_event("sample.created");
        add_meta(ev, "my_schema_version", "2");
        expect_ok(ev, STRICT, NULL);
        free_event(ev);
    }
}

static void prepare_rejects_invalid_utf8_in_envelope_strings(void **state)
{
    event *ev;

    expect_string_refused("subject", "sample-\xff", "subject");
    expect_string_refused("causation_id", "\xc0\xaf", "causation_id");
    expect_string_refused("source_service", "svc\xed\xa0\x80", "source_service");
    expect_string_refused("event_type", "sample.\xff", "event_type");
    for (size_t m = 0; m < 2; m++) {
        ev = typed_event("sample.created");
        add_meta(ev, "lane", "\xe2\x82");
        expect_invalid(ev, modes[m], "metadata.lane");
        free_event(ev);
        ev = typed_event("sample.created");
        add_meta(ev, "la\xffne", "1");
        expect_invalid(ev, modes[m], "metadata");
        free_event(ev);
    }
}

static void prepare_errors_stay_valid_utf8_when_cut(void **state)
{
    /* "x" and 100 two-byte characters: "metadata." + key is cut at the field
     * bound (127 bytes), which falls in the middle of a character. */
    char *key = repeat_text("x", "\xc3\xa9", 100), *value = repeat('v', 1025);
    event *ev = typed_event("sample.created");
    tse_error err;

    add_meta(ev, key, value);
    assert_int_equal(prepare(ev, STRICT, NULL, NULL, &err), TSE_INVALID);
    assert_true(strncmp(err.field, "metadata.x\xc3\xa9", 12) == 0);
    assert_int_equal(strlen(err.field), 126);
    assert_true(tse_utf8_valid(err.field));
    assert_true(tse_utf8_valid(err.message));
    free_event(ev);
    free(key);
    free(value);
}

static void prepare_accepts_a_null_result_and_error(void **state)
{
    event *ev = typed_event("sample.created");

    assert_int_equal(tse_event_prepare(ev, STRICT, NOW_S, NOW_N, NULL, NULL, NULL), TSE_OK);
    ev->priority = 7;
    assert_int_equal(tse_event_prepare(ev, STRICT, NOW_S, NOW_N, NULL, NULL, NULL), TSE_INVALID);
    free_event(ev);
}

/* ===================================================================================
 * Payloads
 * ================================================================================ */

static void prepare_requires_a_payload_for_catalog_types(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = new_event("sample.created");
        expect_invalid(ev, modes[m], "payload");
        free_event(ev);
    }
}

static void prepare_requires_a_payload_for_other_types(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = new_event("transaction.started");
        expect_invalid(ev, modes[m], "payload");
        free_event(ev);
    }
}

static void every_catalog_type_with_a_valid_payload_passes_and_is_stamped(void **state)
{
    size_t count;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++) {
        for (size_t m = 0; m < 2; m++) {
            event *ev = typed_event(entries[i].event_type);
            tse_prepare_result r;
            ProtobufCMessage *p;

            expect_ok(ev, modes[m], &r);
            assert_true(r.schema_valid);
            assert_int_equal(ev->payload_case, entries[i].payload_case);
            assert_int_equal(ev->n_metadata, 0);
            p = payload_of(ev);
            for (const tse_field_spec *s = entries[i].fields; s->name != NULL; s++) {
                if (s->rule != TSE_FIELD_STAMP)
                    continue;
                if (get_stamp(p, s->name) == NULL)
                    fail_msg("%s.%s not stamped", entries[i].event_type, s->name);
                assert_int_equal(get_stamp(p, s->name)->seconds, NOW_S);
                assert_int_equal(get_stamp(p, s->name)->nanos, NOW_N);
            }
            free_event(ev);
        }
    }
}

static void prepare_keeps_payload_timestamps_the_client_set(void **state)
{
    event *ev = typed_event("sample.created");

    ev->sample_created->created_at = new_stamp(1000);
    expect_ok(ev, STRICT, NULL);
    assert_int_equal(ev->sample_created->created_at->seconds, 1000);
    free_event(ev);
}

/* Runs `check` for every catalog field with a rule among `rules`. */
typedef void (*field_case)(const tse_catalog_entry *e, const tse_field_spec *s);

static size_t for_each_rule(tse_field_rule a, tse_field_rule b, field_case check)
{
    size_t count, n = 0;
    const tse_catalog_entry *entries = tse_catalog_entries(&count);

    for (size_t i = 0; i < count; i++)
        for (const tse_field_spec *s = entries[i].fields; s->name != NULL; s++)
            if (s->rule == a || s->rule == b) {
                check(&entries[i], s);
                n++;
            }
    return n;
}

static event *event_with_field(const tse_catalog_entry *e, const char *field, const char *value)
{
    event *ev = typed_event(e->event_type);

    set_str(payload_of(ev), field, value);
    return ev;
}

static void strict_names_missing_field(const tse_catalog_entry *e, const tse_field_spec *s)
{
    char field[TSE_ERROR_FIELD_MAX];
    event *ev = event_with_field(e, s->name, "");

    snprintf(field, sizeof(field), "payload.%s", s->name);
    expect_invalid(ev, STRICT, field);
    free_event(ev);
}

static void strict_mode_names_each_missing_required_field(void **state)
{
    /* 45 required strings and 8 UUIDs in the catalog as written today. */
    assert_true(for_each_rule(TSE_FIELD_REQUIRED, TSE_FIELD_UUID, strict_names_missing_field) > 40);
}

static void strict_names_bad_uuid(const tse_catalog_entry *e, const tse_field_spec *s)
{
    char field[TSE_ERROR_FIELD_MAX];
    event *ev = event_with_field(e, s->name, "not-a-uuid");

    snprintf(field, sizeof(field), "payload.%s", s->name);
    expect_invalid(ev, STRICT, field);
    free_event(ev);
}

static void strict_mode_names_each_bad_uuid(void **state)
{
    assert_int_equal(for_each_rule(TSE_FIELD_UUID, TSE_FIELD_UUID, strict_names_bad_uuid), 8);
}

static void strict_mode_names_the_bad_element_of_a_uuid_list(void **state)
{
    static const char *const samples[] = {UUID_A, UUID_B, "sample-3"};
    event *ev = typed_event("sequencing.job_created");

    set_str_list(payload_of(ev), "samples", samples, 3);
    expect_invalid(ev, STRICT, "payload.samples[2]");
    free_event(ev);
}

static void strict_mode_says_what_is_required_for_which_type(void **state)
{
    event *ev = typed_event("sample.created");
    tse_error err;

    set_str(payload_of(ev), "barcode", "");
    assert_int_equal(prepare(ev, STRICT, NULL, NULL, &err), TSE_INVALID);
    assert_string_equal(err.message, "payload.barcode is required for sample.created");
    free_event(ev);
}

/* A lenient event that missed its schema: stored as data, flagged. */
static void expect_flagged_data(event *ev, const tse_prepare_result *r, const char *field)
{
    char prefix[TSE_ERROR_FIELD_MAX + 2];

    assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA);
    assert_non_null(ev->data);
    assert_false(r->schema_valid);
    assert_string_equal(r->schema_error.field, field);
    assert_string_equal(meta(ev, "schema_valid"), "false");
    snprintf(prefix, sizeof(prefix), "%s: ", field);
    assert_non_null(meta(ev, "schema_error"));
    assert_true(strncmp(meta(ev, "schema_error"), prefix, strlen(prefix)) == 0);
    assert_string_equal(meta(ev, "schema_error") + strlen(prefix), r->schema_error.message);
}

/* The first REQUIRED or UUID field of e other than `except`. */
static const char *other_string_field(const tse_catalog_entry *e, const char *except)
{
    for (const tse_field_spec *s = e->fields; s->name != NULL; s++)
        if ((s->rule == TSE_FIELD_REQUIRED || s->rule == TSE_FIELD_UUID) &&
            strcmp(s->name, except) != 0)
            return s->name;
    fail_msg("%s has one string rule only", e->event_type);
    return NULL;
}

static void lenient_flags_field(const tse_catalog_entry *e, const tse_field_spec *s,
                                const char *value)
{
    char field[TSE_ERROR_FIELD_MAX], expected[128];
    const char *other = other_string_field(e, s->name);
    event *ev = event_with_field(e, s->name, value);
    tse_prepare_result r;

    snprintf(field, sizeof(field), "payload.%s", s->name);
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, field);
    /* The rest of the payload survives the move to data. */
    if (tse_catalog_field_rule(e, other) == TSE_FIELD_UUID)
        snprintf(expected, sizeof(expected), "%s", UUID_A);
    else
        required_value(other, expected, sizeof(expected));
    assert_string_equal(struct_string(ev->data, other), expected);
    free_event(ev);
}

static void lenient_flags_missing_field(const tse_catalog_entry *e, const tse_field_spec *s)
{
    lenient_flags_field(e, s, "");
}

static void lenient_mode_stores_a_missing_required_field_as_flagged_data(void **state)
{
    assert_true(for_each_rule(TSE_FIELD_REQUIRED, TSE_FIELD_UUID, lenient_flags_missing_field) >
                40);
}

static void lenient_flags_bad_uuid(const tse_catalog_entry *e, const tse_field_spec *s)
{
    lenient_flags_field(e, s, "not-a-uuid");
}

static void lenient_mode_stores_a_bad_uuid_as_flagged_data(void **state)
{
    assert_int_equal(for_each_rule(TSE_FIELD_UUID, TSE_FIELD_UUID, lenient_flags_bad_uuid), 8);
}

static void lenient_fallback_keeps_the_client_metadata(void **state)
{
    event *ev = typed_event("sample.created");
    tse_prepare_result r;

    add_meta(ev, "lane", "3");
    set_str(payload_of(ev), "barcode", "");
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, "payload.barcode");
    assert_int_equal(ev->n_metadata, 3);
    assert_string_equal(meta(ev, "lane"), "3");
    free_event(ev);
}

static void a_typed_payload_of_another_type_is_a_misfit(void **state)
{
    const tse_catalog_entry *other = tse_catalog_find("sample.validated");
    event *ev = typed_event("sample.created");
    tse_prepare_result r;

    set_payload(ev, other->payload_case, valid_payload(other));
    expect_invalid(ev, STRICT, "payload");
    free_event(ev);

    ev = typed_event("sample.created");
    set_payload(ev, other->payload_case, valid_payload(other));
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, "payload");
    assert_string_equal(struct_string(ev->data, "validator_id"), "v-validator_id");
    free_event(ev);
}

/* ---- Struct payloads for catalog types ---------------------------------------------- */

#define SAMPLE_JSON                                                                                \
    "{\"sample_id\":\"" UUID_A "\",\"barcode\":\"SAM-20240618-001\",\"sample_type\":\"DNA\","      \
    "\"submitter_id\":\"" UUID_B "\",\"lab_id\":\"" UUID_C "\",\"metadata\":{\"lane\":3}"

static void a_struct_payload_that_fits_becomes_typed(void **state)
{
    event *ev = data_event("sample.created", SAMPLE_JSON "}");
    tse_prepare_result r;
    Tracseq__Events__V1__SampleCreated *p;

    expect_ok(ev, STRICT, &r);
    assert_true(r.schema_valid);
    assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED);
    p = ev->sample_created;
    assert_string_equal(p->sample_id, UUID_A);
    assert_string_equal(p->barcode, "SAM-20240618-001");
    assert_string_equal(p->sample_type, "DNA");
    assert_string_equal(p->submitter_id, UUID_B);
    assert_string_equal(p->lab_id, UUID_C);
    assert_int_equal(p->n_metadata, 1);
    assert_string_equal(p->metadata[0]->key, "lane");
    assert_true(p->metadata[0]->value->number_value == 3.0);
    assert_non_null(p->created_at);
    assert_int_equal(p->created_at->seconds, NOW_S);
    assert_int_equal(ev->n_metadata, 0);
    free_event(ev);
}

static void a_struct_payload_may_use_json_names_and_rfc3339_times(void **state)
{
    event *ev = data_event("sample.created",
                           "{\"sampleId\":\"" UUID_A "\",\"barcode\":\"B1\",\"sampleType\":\"RNA\","
                           "\"submitterId\":\"" UUID_B "\",\"labId\":\"" UUID_C "\","
                           "\"createdAt\":\"2024-01-02T03:04:05Z\"}");

    expect_ok(ev, LENIENT, NULL);
    assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED);
    assert_string_equal(ev->sample_created->sample_type, "RNA");
    assert_int_equal(ev->sample_created->created_at->seconds, 1704164645);
    assert_int_equal(ev->n_metadata, 0);
    free_event(ev);
}

static void a_struct_payload_with_a_uuid_list_becomes_typed(void **state)
{
    event *ev = data_event("sequencing.job_created",
                           "{\"job_id\":\"J1\",\"job_name\":\"run 1\",\"job_type\":\"WGS\","
                           "\"priority\":2,\"samples\":[\"" UUID_A "\",\"" UUID_B "\"],"
                           "\"created_by\":\"alice\"}");

    expect_ok(ev, STRICT, NULL);
    assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SEQUENCING_JOB_CREATED);
    assert_int_equal(ev->sequencing_job_created->n_samples, 2);
    assert_string_equal(ev->sequencing_job_created->samples[1], UUID_B);
    assert_int_equal(ev->sequencing_job_created->priority, 2);
    assert_int_equal(ev->sequencing_job_created->created_at->seconds, NOW_S);
    free_event(ev);
}

static void a_struct_payload_with_an_unknown_field_is_a_misfit(void **state)
{
    event *ev = data_event("sample.created", SAMPLE_JSON ",\"colour\":\"red\"}");
    tse_prepare_result r;

    expect_invalid(ev, STRICT, "payload.colour");
    free_event(ev);

    ev = data_event("sample.created", SAMPLE_JSON ",\"colour\":\"red\"}");
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, "payload.colour");
    /* The client's data is kept as sent. */
    assert_string_equal(struct_string(ev->data, "colour"), "red");
    assert_string_equal(struct_string(ev->data, "barcode"), "SAM-20240618-001");
    free_event(ev);
}

static void a_struct_payload_missing_a_required_field_is_a_misfit(void **state)
{
    static const char *json = "{\"sample_id\":\"" UUID_A "\",\"sample_type\":\"DNA\","
                              "\"submitter_id\":\"" UUID_B "\",\"lab_id\":\"" UUID_C "\"}";
    event *ev = data_event("sample.created", json);
    tse_prepare_result r;

    expect_invalid(ev, STRICT, "payload.barcode");
    free_event(ev);

    ev = data_event("sample.created", json);
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, "payload.barcode");
    assert_null(struct_get(ev->data, "created_at")); /* misfits are not stamped */
    free_event(ev);
}

static void a_struct_payload_with_a_bad_uuid_is_a_misfit(void **state)
{
    static const char *json = "{\"sample_id\":\"" UUID_A "\",\"barcode\":\"B\",\"sample_type\":"
                              "\"DNA\",\"submitter_id\":\"" UUID_B "\",\"lab_id\":\"lab-7\"}";
    event *ev = data_event("sample.created", json);
    tse_prepare_result r;

    expect_invalid(ev, STRICT, "payload.lab_id");
    free_event(ev);

    ev = data_event("sample.created", json);
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, "payload.lab_id");
    free_event(ev);
}

static void a_struct_payload_of_the_wrong_json_type_is_a_misfit(void **state)
{
    event *ev = data_event("sample.created", SAMPLE_JSON ",\"created_at\":42}");

    expect_invalid(ev, STRICT, "payload.created_at");
    free_event(ev);
}

/* ---- other types -------------------------------------------------------------------- */

static void a_non_catalog_type_with_data_passes(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = data_event("transaction.started", "{\"amount\":12.5,\"items\":[1,\"two\"]}");
        tse_prepare_result r;
        expect_ok(ev, modes[m], &r);
        assert_true(r.schema_valid);
        assert_int_equal(ev->payload_case, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA);
        assert_int_equal(ev->n_metadata, 0);
        free_event(ev);
    }
}

static void a_non_catalog_type_with_a_typed_payload_is_refused_when_strict(void **state)
{
    const tse_catalog_entry *e = tse_catalog_find("sample.created");
    event *ev = new_event("transaction.started");

    set_payload(ev, e->payload_case, valid_payload(e));
    expect_invalid(ev, STRICT, "payload");
    free_event(ev);
}

static void a_non_catalog_type_with_a_typed_payload_becomes_flagged_data_when_lenient(void **state)
{
    const tse_catalog_entry *e = tse_catalog_find("sample.created");
    event *ev = new_event("transaction.started");
    tse_prepare_result r;

    set_payload(ev, e->payload_case, valid_payload(e));
    expect_ok(ev, LENIENT, &r);
    expect_flagged_data(ev, &r, "payload");
    assert_string_equal(struct_string(ev->data, "barcode"), "v-barcode");
    free_event(ev);
}

/* ---- text in payloads ------------------------------------------------------------------ */

static void invalid_utf8_in_a_typed_payload_is_refused_in_both_modes(void **state)
{
    for (size_t m = 0; m < 2; m++) {
        event *ev = typed_event("sample.created");
        set_str(payload_of(ev), "sample_type", "DN\xff");
        expect_invalid(ev, modes[m], "payload.sample_type");
        free_event(ev);
    }
}

static void invalid_utf8_in_data_is_named_by_its_json_path(void **state)
{
    event *ev = data_event("transaction.started", "{\"a\":{\"b\":\"x\"},\"list\":[1,\"y\"]}");
    Google__Protobuf__Value *b = struct_get(struct_get(ev->data, "a")->struct_value, "b");

    free(b->string_value);
    b->string_value = dup("\xc3");
    expect_invalid(ev, LENIENT, "payload.a.b");
    free_event(ev);

    ev = data_event("transaction.started", "{\"a\":{\"b\":\"x\"},\"list\":[1,\"y\"]}");
    b = struct_get(ev->data, "list")->list_value->values[1];
    free(b->string_value);
    b->string_value = dup("\xc3");
    expect_invalid(ev, STRICT, "payload.list[1]");
    free_event(ev);
}

static void invalid_utf8_in_a_payload_map_key_is_refused(void **state)
{
    event *ev = data_event("sample.created", SAMPLE_JSON "}");

    expect_ok(ev, STRICT, NULL); /* now typed, with metadata {"lane": 3} */
    free(ev->sample_created->metadata[0]->key);
    ev->sample_created->metadata[0]->key = dup("la\xffne");
    expect_invalid(ev, STRICT, "payload.metadata");
    free_event(ev);
}

static void non_finite_numbers_in_data_are_refused(void **state)
{
    event *ev = data_event("transaction.started", "{\"x\":1}");

    struct_get(ev->data, "x")->number_value = NAN;
    expect_invalid(ev, LENIENT, "payload.x");
    free_event(ev);
}

/* A Struct nested n levels deep: {"a":{"a":...{}}}. */
static Google__Protobuf__Struct *nested_struct(int n)
{
    Google__Protobuf__Struct *s =
        (Google__Protobuf__Struct *)new_message(&google__protobuf__struct__descriptor);

    if (n > 1) {
        Google__Protobuf__Struct__FieldsEntry *entry =
            (Google__Protobuf__Struct__FieldsEntry *)new_message(
                &google__protobuf__struct__fields_entry__descriptor);
        Google__Protobuf__Value *v =
            (Google__Protobuf__Value *)new_message(&google__protobuf__value__descriptor);
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = nested_struct(n - 1);
        entry->key = dup("a");
        entry->value = v;
        s->fields = malloc(sizeof(void *));
        assert_non_null(s->fields);
        s->fields[0] = entry;
        s->n_fields = 1;
    }
    return s;
}

static void payloads_nested_deeper_than_json_allows_are_refused(void **state)
{
    event *ev = new_event("transaction.started");
    tse_error err;

    set_payload(ev, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA,
                &nested_struct(TSE_PBJSON_MAX_DEPTH)->base);
    expect_ok(ev, STRICT, NULL);
    free_event(ev);

    ev = new_event("transaction.started");
    set_payload(ev, TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA,
                &nested_struct(TSE_PBJSON_MAX_DEPTH + 1)->base);
    assert_int_equal(prepare(ev, LENIENT, NULL, NULL, &err), TSE_INVALID);
    assert_true(strncmp(err.field, "payload.a.a.a", 13) == 0);
    free_event(ev);
}

/* ---- the payload helpers on their own ------------------------------------------------------ */

static void payload_check_refuses_a_message_of_another_type(void **state)
{
    const tse_catalog_entry *e = tse_catalog_find("sample.created");
    ProtobufCMessage *other = valid_payload(tse_catalog_find("sample.stored"));
    tse_error err;

    assert_int_equal(tse_payload_check(e, other, &err), TSE_INVALID);
    assert_string_equal(err.field, "payload");
    protobuf_c_message_free_unpacked(other, NULL);
}

static void payload_stamp_sets_only_unset_stamps(void **state)
{
    const tse_catalog_entry *e = tse_catalog_find("storage.sensor_data_received");
    Tracseq__Events__V1__SensorDataReceived *p =
        (Tracseq__Events__V1__SensorDataReceived *)valid_payload(e);

    p->timestamp = new_stamp(5);
    assert_int_equal(tse_payload_stamp(e, &p->base, NOW_S, NOW_N, NULL), TSE_OK);
    assert_int_equal(p->timestamp->seconds, 5);
    assert_int_equal(p->received_at->seconds, NOW_S);
    assert_int_equal(p->received_at->nanos, NOW_N);
    protobuf_c_message_free_unpacked(&p->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(event_type_valid_accepts_dotted_lowercase_types),
        cmocka_unit_test(event_type_valid_rejects_malformed_types),
        cmocka_unit_test(event_type_valid_limits_length_to_128),
        cmocka_unit_test(uuid_valid_accepts_8_4_4_4_12_hex_in_either_case),
        cmocka_unit_test(uuid_valid_rejects_other_shapes),
        cmocka_unit_test(uuid_generate_makes_distinct_lowercase_v4_uuids),
        cmocka_unit_test(uuid_seq_makes_distinct_lowercase_v4_uuids),
        cmocka_unit_test(utf8_valid_accepts_well_formed_text),
        cmocka_unit_test(utf8_valid_rejects_malformed_sequences),
        cmocka_unit_test(utf8_scrub_replaces_each_bad_byte_and_keeps_good_text),
        cmocka_unit_test(utf8_length_counts_code_points),
        cmocka_unit_test(utf8_trim_drops_an_unfinished_last_sequence),

        cmocka_unit_test(prepare_requires_event_type),
        cmocka_unit_test(prepare_rejects_a_malformed_event_type),
        cmocka_unit_test(prepare_requires_source_service),
        cmocka_unit_test(prepare_limits_source_service_to_64_characters),
        cmocka_unit_test(prepare_rejects_control_characters_in_source_service),
        cmocka_unit_test(prepare_rejects_an_id_that_is_not_a_uuid),
        cmocka_unit_test(prepare_keeps_a_client_id),
        cmocka_unit_test(prepare_generates_a_v4_id_when_empty),
        cmocka_unit_test(prepare_defaults_version_to_1_0),
        cmocka_unit_test(prepare_keeps_a_well_formed_version),
        cmocka_unit_test(prepare_rejects_versions_other_than_major_minor),
        cmocka_unit_test(prepare_replaces_the_client_timestamp),
        cmocka_unit_test(prepare_sets_a_timestamp_when_absent),
        cmocka_unit_test(prepare_takes_correlation_id_from_the_fallback),
        cmocka_unit_test(prepare_keeps_the_event_correlation_id_over_the_fallback),
        cmocka_unit_test(prepare_rejects_a_correlation_id_that_is_not_a_uuid),
        cmocka_unit_test(prepare_rejects_a_fallback_correlation_id_that_is_not_a_uuid),
        cmocka_unit_test(prepare_ignores_an_empty_fallback_correlation_id),
        cmocka_unit_test(prepare_keeps_a_valid_trace_context),
        cmocka_unit_test(prepare_rejects_a_bad_traceparent_naming_it),
        cmocka_unit_test(prepare_rejects_a_tracestate_without_traceparent),
        cmocka_unit_test(prepare_rejects_a_bad_tracestate_naming_it),
        cmocka_unit_test(adopt_trace_fills_an_event_without_one),
        cmocka_unit_test(adopt_trace_keeps_the_event_own_context),
        cmocka_unit_test(adopt_trace_without_metadata_changes_nothing),
        cmocka_unit_test(prepare_limits_causation_id_to_128_characters),
        cmocka_unit_test(prepare_limits_subject_to_256_characters),
        cmocka_unit_test(prepare_defaults_priority_to_3),
        cmocka_unit_test(prepare_accepts_priorities_1_to_5),
        cmocka_unit_test(prepare_rejects_priorities_outside_1_to_5),
        cmocka_unit_test(prepare_leaves_a_refused_event_unchanged),
        cmocka_unit_test(prepare_limits_metadata_to_64_entries),
        cmocka_unit_test(prepare_rejects_empty_metadata_keys),
        cmocka_unit_test(prepare_limits_metadata_key_and_value_length),
        cmocka_unit_test(prepare_reserves_schema_metadata_keys_for_the_server),
        cmocka_unit_test(prepare_rejects_invalid_utf8_in_envelope_strings),
        cmocka_unit_test(prepare_errors_stay_valid_utf8_when_cut),
        cmocka_unit_test(prepare_accepts_a_null_result_and_error),

        cmocka_unit_test(prepare_requires_a_payload_for_catalog_types),
        cmocka_unit_test(prepare_requires_a_payload_for_other_types),
        cmocka_unit_test(every_catalog_type_with_a_valid_payload_passes_and_is_stamped),
        cmocka_unit_test(prepare_keeps_payload_timestamps_the_client_set),
        cmocka_unit_test(strict_mode_names_each_missing_required_field),
        cmocka_unit_test(strict_mode_names_each_bad_uuid),
        cmocka_unit_test(strict_mode_names_the_bad_element_of_a_uuid_list),
        cmocka_unit_test(strict_mode_says_what_is_required_for_which_type),
        cmocka_unit_test(lenient_mode_stores_a_missing_required_field_as_flagged_data),
        cmocka_unit_test(lenient_mode_stores_a_bad_uuid_as_flagged_data),
        cmocka_unit_test(lenient_fallback_keeps_the_client_metadata),
        cmocka_unit_test(a_typed_payload_of_another_type_is_a_misfit),
        cmocka_unit_test(a_struct_payload_that_fits_becomes_typed),
        cmocka_unit_test(a_struct_payload_may_use_json_names_and_rfc3339_times),
        cmocka_unit_test(a_struct_payload_with_a_uuid_list_becomes_typed),
        cmocka_unit_test(a_struct_payload_with_an_unknown_field_is_a_misfit),
        cmocka_unit_test(a_struct_payload_missing_a_required_field_is_a_misfit),
        cmocka_unit_test(a_struct_payload_with_a_bad_uuid_is_a_misfit),
        cmocka_unit_test(a_struct_payload_of_the_wrong_json_type_is_a_misfit),
        cmocka_unit_test(a_non_catalog_type_with_data_passes),
        cmocka_unit_test(a_non_catalog_type_with_a_typed_payload_is_refused_when_strict),
        cmocka_unit_test(a_non_catalog_type_with_a_typed_payload_becomes_flagged_data_when_lenient),
        cmocka_unit_test(invalid_utf8_in_a_typed_payload_is_refused_in_both_modes),
        cmocka_unit_test(invalid_utf8_in_data_is_named_by_its_json_path),
        cmocka_unit_test(invalid_utf8_in_a_payload_map_key_is_refused),
        cmocka_unit_test(non_finite_numbers_in_data_are_refused),
        cmocka_unit_test(payloads_nested_deeper_than_json_allows_are_refused),
        cmocka_unit_test(payload_check_refuses_a_message_of_another_type),
        cmocka_unit_test(payload_stamp_sets_only_unset_stamps),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
