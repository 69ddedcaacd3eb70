/*
 * test_domain_envelope.c - tse_event_envelope_reuse (domain/envelope.h):
 * the client's bytes with the server-set fields appended decode to exactly
 * what packing the prepared event stores, for every event it accepts; and
 * it refuses the bytes it may not reuse (a field or payload sent twice, a
 * client timestamp, a payload the domain converted, stamped or fell back).
 *
 * The model test generates events at the wire level (so the encodings need
 * not be protobuf-c's: fields in any order, explicit defaults, repeated
 * singular fields, unknown fields, split payloads), prepares each as the
 * service does (call trace context, fallback correlation id, both modes),
 * then compares the packed event with the reused bytes decoded and packed
 * again: byte for byte, so every field and unknown field is compared. The
 * seed is fixed; TSE_ENVELOPE_SEED and TSE_ENVELOPE_ROUNDS override it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "codec/pbscan.h"
#include "domain/envelope.h"
#include "domain/validate.h"

typedef Tracseq__Events__V1__Event event;

#define NOW_S  1718704800
#define UUID_A "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
#define UUID_B "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
#define TP     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

/* ---- a byte buffer ------------------------------------------------------------ */

typedef struct buf {
    uint8_t *data;
    size_t len, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        assert_non_null(b->data);
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_varint(buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;

    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    put(b, tmp, n);
}

static void put_bytes(buf *b, uint32_t id, const void *p, size_t n)
{
    put_varint(b, (uint64_t)id << 3 | 2);
    put_varint(b, n);
    put(b, p, n);
}

static void put_str(buf *b, uint32_t id, const char *s)
{
    put_bytes(b, id, s, strlen(s));
}

static void put_int(buf *b, uint32_t id, int64_t v)
{
    put_varint(b, (uint64_t)id << 3);
    put_varint(b, (uint64_t)v);
}

static void put_message(buf *b, uint32_t id, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *tmp = malloc(n + 1);

    assert_non_null(tmp);
    protobuf_c_message_pack(m, tmp);
    put_bytes(b, id, tmp, n);
    free(tmp);
}

/* ---- the invariant ------------------------------------------------------------- */

typedef struct outcome {
    bool prepared; /* tse_event_prepare accepted the event */
    bool reused;   /* tse_event_envelope_reuse built the bytes */
} outcome;

/* Unpacks wire as the service does, prepares it (mode, trace metadata,
 * fallback correlation id), and checks that reused bytes, when built,
 * decode to the packed event. */
static outcome check_event(const uint8_t *wire, size_t len, tse_validation_mode mode,
                           const char *md_traceparent, const char *fallback)
{
    outcome o = {false, false};
    tse_pbscan_info info;
    tse_prepare_result res;
    event *ev = tracseq__events__v1__event__unpack(NULL, len, wire);
    uint8_t *reused = NULL, *packed, *again;
    size_t reused_len = 0, packed_len, again_len;
    int64_t sec1, sec2;
    int32_t ns1, ns2;
    event *back;

    /* As the service reads a request: scanned, then unpacked. */
    if (tse_pbscan_with(&tracseq__events__v1__event__descriptor, wire, len, TSE_PBJSON_MAX_DEPTH,
                        &info, NULL) != TSE_PBSCAN_OK ||
        ev == NULL) {
        if (ev != NULL)
            protobuf_c_message_free_unpacked(&ev->base, NULL);
        return o;
    }
    if (md_traceparent != NULL)
        assert_int_equal(
            tse_event_adopt_trace(ev, md_traceparent, strlen(md_traceparent), "k=v", 3, NULL),
            TSE_OK);
    if (tse_event_prepare(ev, mode, NOW_S, (int32_t)(rand() % 3 == 0 ? 0 : rand() % 1000000000),
                          fallback, &res, NULL) != TSE_OK) {
        protobuf_c_message_free_unpacked(&ev->base, NULL);
        return o;
    }
    o.prepared = true;
    packed_len = protobuf_c_message_get_packed_size(&ev->base);
    packed = malloc(packed_len + 1);
    assert_non_null(packed);
    protobuf_c_message_pack(&ev->base, packed);
    /* Bytes with a message field twice are never offered (envelope.h). */
    o.reused = !info.message_repeated &&
               tse_event_envelope_reuse(wire, len, ev, &res, &reused, &reused_len);
    if (o.reused) {
        back = tracseq__events__v1__event__unpack(NULL, reused_len, reused);
        assert_non_null(back);
        again_len = protobuf_c_message_get_packed_size(&back->base);
        again = malloc(again_len + 1);
        assert_non_null(again);
        protobuf_c_message_pack(&back->base, again);
        assert_int_equal(again_len, packed_len);
        assert_memory_equal(again, packed, packed_len);
        /* What the engine reads without decoding reads the same too. */
        assert_true(tse_pbscan_timestamp(packed, packed_len, 5, &sec1, &ns1));
        assert_true(tse_pbscan_timestamp(reused, reused_len, 5, &sec2, &ns2));
        assert_int_equal(sec1, sec2);
        assert_int_equal(ns1, ns2);
        assert_int_equal(tse_pbscan(&tracseq__events__v1__event__descriptor, reused, reused_len,
                                    TSE_PBJSON_MAX_DEPTH, NULL),
                         TSE_PBSCAN_OK);
        free(again);
        protobuf_c_message_free_unpacked(&back->base, NULL);
        free(reused);
    }
    free(packed);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
    return o;
}

/* ---- generated events ---------------------------------------------------------- */

static int coin(int n)
{
    return rand() % n == 0;
}

static const char *pick(const char *const *v, size_t n)
{
    return v[(size_t)rand() % n];
}
#define PICK(v) pick(v, sizeof(v) / sizeof((v)[0]))

static void random_uuid(char out[37])
{
    static const char hex[] = "0123456789abcdef";

    for (int i = 0; i < 36; i++)
        out[i] = (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : hex[rand() % 16];
    out[36] = '\0';
}

/* Text of up to 12 characters, some of them multi-byte, rarely a bad one. */
static void random_text(char *out, size_t cap)
{
    static const char *const bits[] = {"a", "Z", "7", " ", "-", "é", "中", "😀", "_", "."};
    size_t n = (size_t)rand() % 12, len = 0;

    for (size_t i = 0; i < n; i++) {
        const char *s = PICK(bits);
        if (len + strlen(s) + 1 > cap)
            break;
        memcpy(out + len, s, strlen(s));
        len += strlen(s);
    }
    out[len] = '\0';
}

/* A JSON value for a Struct: scalars, nested objects and arrays. */
static json_t *random_json(int depth)
{
    char text[64];
    json_t *o;

    switch (rand() % (depth > 2 ? 4 : 6)) {
    case 0: random_text(text, sizeof(text)); return json_string(text);
    case 1: return json_real((double)(rand() % 2000) / 8.0);
    case 2: return json_boolean(coin(2));
    case 3: return json_null();
    case 4:
        o = json_array();
        for (int i = rand() % 3; i > 0; i--)
            json_array_append_new(o, random_json(depth + 1));
        return o;
    default:
        o = json_object();
        for (int i = rand() % 4; i > 0; i--) {
            snprintf(text, sizeof(text), "k%d", rand() % 10);
            json_object_set_new(o, text, random_json(depth + 1));
        }
        return o;
    }
}

/* A payload's JSON for catalog entry e: its rules met, mostly; sometimes a
 * stamp given, a required field left out or a field it does not have. */
static json_t *catalog_json(const tse_catalog_entry *e)
{
    json_t *o = json_object();
    char text[64];

    for (const tse_field_spec *f = e->fields; f->name != NULL; f++) {
        if (coin(20))
            continue; /* a misfit: a required field missing */
        switch (f->rule) {
        case TSE_FIELD_REQUIRED:
            random_text(text, sizeof(text));
            json_object_set_new(o, f->name, json_string(text[0] ? text : "x"));
            break;
        case TSE_FIELD_UUID:
            random_uuid(text);
            json_object_set_new(o, f->name, json_string(text));
            break;
        case TSE_FIELD_UUID_LIST: json_object_set_new(o, f->name, json_pack("[s]", UUID_A)); break;
        case TSE_FIELD_STAMP:
            if (coin(2))
                json_object_set_new(o, f->name, json_string("2024-01-02T03:04:05.5Z"));
            break;
        default: break;
        }
    }
    if (coin(15))
        json_object_set_new(o, "not_a_field", json_string("x"));
    return o;
}

/* The payload: a Struct `data` (any type, or a catalog type's JSON that may
 * or may not fit), or a catalog type's typed message. Returns the event
 * type it goes with. */
static const char *put_payload(buf *b)
{
    static const Tracseq__Events__V1__Event__PayloadCase cases[] = {
        TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SAMPLE_CREATED,
        TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_CAPACITY_WARNING,
        TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_USER_LOGGED_OUT,
        TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_SEQUENCING_JOB_CREATED,
    };
    const tse_catalog_entry *e = tse_catalog_find_case(cases[(size_t)rand() % 4]);
    ProtobufCMessage *typed = NULL;
    Google__Protobuf__Struct *st = NULL;
    json_t *j;

    assert_non_null(e);
    if (coin(2)) { /* generic data */
        j = json_object();
        for (int i = rand() % 5; i > 0; i--) {
            char key[16];
            snprintf(key, sizeof(key), "f%d", rand() % 8);
            json_object_set_new(j, key, random_json(0));
        }
        assert_int_equal(tse_pbjson_to_struct(j, &st, NULL), TSE_OK);
        put_message(b, 20, &st->base);
        protobuf_c_message_free_unpacked(&st->base, NULL);
        json_decref(j);
        return coin(5) ? e->event_type : "bench.event";
    }
    j = catalog_json(e);
    if (coin(3) || tse_pbjson_to_message(j, e->descriptor, 0, &typed, NULL) != TSE_OK) {
        assert_int_equal(tse_pbjson_to_struct(j, &st, NULL), TSE_OK);
        put_message(b, 20, &st->base);
        protobuf_c_message_free_unpacked(&st->base, NULL);
    } else {
        put_message(b, (uint32_t)e->payload_case, typed);
        protobuf_c_message_free_unpacked(typed, NULL);
    }
    json_decref(j);
    return e->event_type;
}

/* One field of the envelope, as the client may send it. */
static void put_envelope_field(buf *b, int which, const char *type)
{
    static const char *const versions[] = {"1.0", "2.3", "", "01.0"};
    static const char *const keys[] = {"lane", "run", "schema_x", "k"};
    char text[64], uuid[37];
    buf entry = {0};

    switch (which) {
    case 0: put_str(b, 1, coin(2) ? "" : (random_uuid(uuid), uuid)); break;
    case 1: put_str(b, 2, type); break;
    case 2: put_str(b, 3, coin(30) ? "" : "svc-a"); break;
    case 3: put_str(b, 4, PICK(versions)); break;
    case 4: put_str(b, 6, coin(2) ? "" : UUID_B); break;
    case 5: random_text(text, sizeof(text)), put_str(b, 7, text); break;
    case 6: random_text(text, sizeof(text)), put_str(b, 8, text); break;
    case 7: put_int(b, 9, coin(20) ? 9 : rand() % 6); break;
    case 8:
        random_text(text, sizeof(text));
        put_str(&entry, 1, PICK(keys));
        put_str(&entry, 2, text);
        put_bytes(b, 10, entry.data, entry.len);
        free(entry.data);
        break;
    case 9: put_str(b, 11, coin(3) ? "" : TP); break;
    case 10: put_str(b, 12, coin(2) ? "" : "a=b"); break;
    case 11: /* a client timestamp: replaced by the server's */
        put_bytes(b, 5, "\x08\x01\x10\x02", coin(2) ? 4 : 0);
        break;
    case 12: /* fields of numbers the Event does not define */
        put_int(b, 15, rand());
        put_str(b, 999, "unknown");
        break;
    default: break;
    }
}

/* One generated event's bytes: the envelope's fields in a random order,
 * each present or not, a few sent twice, and the payload among them. */
static void random_event(buf *b)
{
    buf payload = {0};
    const char *type = put_payload(&payload);
    int order[16], n = 0; /* 13 kinds of field, metadata up to 3 times */

    for (int i = 0; i < 13; i++)
        if (i == 1 || i == 2 || (i >= 11 ? coin(5) : coin(2))) {
            order[n++] = i;
            if (i == 8) /* metadata: up to three entries */
                for (int k = rand() % 3; k > 0; k--)
                    order[n++] = 8;
        }
    for (int i = n - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < n; i++) {
        if (i == n / 2 || (coin(8) && payload.len > 0)) {
            put(b, payload.data, payload.len);
            payload.len = coin(10) ? payload.len : 0; /* rarely: the payload twice */
        }
        put_envelope_field(b, order[i], type);
        if (coin(25)) /* rarely: a singular field sent again */
            put_envelope_field(b, order[i], type);
    }
    put(b, payload.data, payload.len);
    free(payload.data);
}

static void test_generated_events_decode_as_packed(void **state)
{
    const char *s = getenv("TSE_ENVELOPE_SEED"), *r = getenv("TSE_ENVELOPE_ROUNDS");
    unsigned seed = s != NULL ? (unsigned)strtoul(s, NULL, 10) : 20261206u;
    long rounds = r != NULL ? strtol(r, NULL, 10) : 20000;
    long prepared = 0, reused = 0;

    (void)state;
    srand(seed);
    for (long i = 0; i < rounds; i++) {
        buf b = {0};
        outcome o;
        random_event(&b);
        o = check_event(b.data, b.len, coin(2) ? TSE_VALIDATION_STRICT : TSE_VALIDATION_LENIENT,
                        coin(3) ? TP : NULL, coin(3) ? UUID_A : NULL);
        prepared += o.prepared;
        reused += o.reused;
        free(b.data);
    }
    print_message("seed %u: %ld events, %ld prepared, %ld reused\n", seed, rounds, prepared,
                  reused);
    /* The model reaches both sides of every decision. */
    assert_true(prepared > rounds / 10);
    assert_true(reused > prepared / 10);
    assert_true(reused < prepared);
}

/* ---- chosen cases ---------------------------------------------------------------- */

/* A plain event: type, source, a `data` payload with one field. */
static void put_plain(buf *b)
{
    static const uint8_t data[] = {0x0a, 0x0a, 0x0a, 0x01, 'x', 0x12,
                                   0x05, 0x1a, 0x03, 'a',  'b', 'c'};

    put_str(b, 2, "bench.event");
    put_str(b, 3, "svc-a");
    put_bytes(b, 20, data, sizeof(data));
}

static outcome check_buf(buf *b, tse_validation_mode mode)
{
    outcome o = check_event(b->data, b->len, mode, NULL, NULL);

    free(b->data);
    return o;
}

static void test_plain_event_is_reused(void **state)
{
    buf b = {0};
    outcome o;

    (void)state;
    put_plain(&b);
    o = check_buf(&b, TSE_VALIDATION_STRICT);
    assert_true(o.prepared);
    assert_true(o.reused);
}

static void test_explicit_defaults_are_overridden(void **state)
{
    buf b = {0};
    outcome o;

    (void)state;
    put_str(&b, 1, "");
    put_str(&b, 4, "");
    put_int(&b, 9, 0);
    put_plain(&b);
    o = check_buf(&b, TSE_VALIDATION_STRICT);
    assert_true(o.prepared);
    assert_true(o.reused); /* and decodes with the server's id, version and priority */
}

static void test_field_sent_twice_is_packed(void **state)
{
    buf b = {0};
    outcome o;

    (void)state;
    put_str(&b, 8, "first");
    put_plain(&b);
    put_str(&b, 8, "second");
    o = check_buf(&b, TSE_VALIDATION_STRICT);
    assert_true(o.prepared);
    assert_false(o.reused);
}

static void test_client_timestamp_is_packed(void **state)
{
    buf b = {0};
    outcome o;

    (void)state;
    put_bytes(&b, 5, "\x08\x01", 2);
    put_plain(&b);
    o = check_buf(&b, TSE_VALIDATION_STRICT);
    assert_true(o.prepared);
    assert_false(o.reused);
}

static void test_stamped_payload_is_packed(void **state)
{
    const tse_catalog_entry *e =
        tse_catalog_find_case(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_CAPACITY_WARNING);
    json_t *j = json_pack("{ss ss}", "location_id", "l1", "location_name", "n1");
    ProtobufCMessage *typed = NULL;
    buf b = {0};
    outcome o;

    (void)state;
    assert_int_equal(tse_pbjson_to_message(j, e->descriptor, 0, &typed, NULL), TSE_OK);
    put_str(&b, 2, e->event_type);
    put_str(&b, 3, "svc-a");
    put_message(&b, (uint32_t)e->payload_case, typed); /* warning_at unset: stamped */
    o = check_buf(&b, TSE_VALIDATION_STRICT);
    assert_true(o.prepared);
    assert_false(o.reused);
    protobuf_c_message_free_unpacked(typed, NULL);
    json_decref(j);
}

static void test_lenient_fallback_is_packed(void **state)
{
    buf b = {0};
    outcome o;

    (void)state;
    /* A catalog type with a `data` that misfits it. */
    put_str(
        &b, 2,
        tse_catalog_find_case(TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_CAPACITY_WARNING)->event_type);
    put_str(&b, 3, "svc-a");
    put_bytes(&b, 20, "", 0);
    o = check_buf(&b, TSE_VALIDATION_LENIENT);
    assert_true(o.prepared);
    assert_false(o.reused);
}

static void test_unknown_fields_are_kept(void **state)
{
    buf b = {0};
    outcome o;

    (void)state;
    put_int(&b, 15, 7);
    put_plain(&b);
    put_str(&b, 999, "kept");
    o = check_buf(&b, TSE_VALIDATION_STRICT);
    assert_true(o.prepared);
    assert_true(o.reused);
}

static void test_nothing_to_reuse(void **state)
{
    uint8_t *out = NULL;
    size_t len = 0;

    (void)state;
    assert_false(tse_event_envelope_reuse(NULL, 0, NULL, NULL, &out, &len));
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_events_decode_as_packed),
        cmocka_unit_test(test_plain_event_is_reused),
        cmocka_unit_test(test_explicit_defaults_are_overridden),
        cmocka_unit_test(test_field_sent_twice_is_packed),
        cmocka_unit_test(test_client_timestamp_is_packed),
        cmocka_unit_test(test_stamped_payload_is_packed),
        cmocka_unit_test(test_lenient_fallback_is_packed),
        cmocka_unit_test(test_unknown_fields_are_kept),
        cmocka_unit_test(test_nothing_to_reuse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
