/*
 * test_codec_pbscan.c - the wire scan every request goes through before
 * protobuf-c unpacks it (src/codec/pbscan.h): nesting counted as JSON counts
 * it and agreeing with the codec at the limit, any depth refused without
 * recursion (a million levels), strings checked for UTF-8 and NUL with the
 * field named, truncated and garbage input never read past its end and
 * never called malformed when protobuf-c would accept it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/pbnest.h"
#include "codec/pbjson.h"
#include "codec/pbscan.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

#define LIMIT TSE_PBJSON_MAX_DEPTH

static const ProtobufCMessageDescriptor *const publish =
    &tracseq__events__v1__publish_request__descriptor;

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(msg);
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(msg, buf);
    return buf;
}

static tse_pbscan_verdict scan(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                               tse_error *err)
{
    tse_error_clear(err);
    return tse_pbscan(d, p, n, LIMIT, err);
}

/* ---- a realistic request to scan whole and cut ------------------------------------------ */

typedef struct sample {
    Tracseq__Events__V1__PublishRequest req;
    Tracseq__Events__V1__Event ev;
    Tracseq__Events__V1__Event__MetadataEntry md[2], *mdp[2];
    Google__Protobuf__Timestamp ts;
    Google__Protobuf__Struct data, inner;
    Google__Protobuf__Struct__FieldsEntry fe[3], *fep[3], ie, *iep[1];
    Google__Protobuf__Value v[3], iv, lv[2], *lvp[2];
    Google__Protobuf__ListValue list;
} sample;

/* PublishRequest{event{id, type, metadata{lane, run}, timestamp, data{
 * "n": 7, "s": "text", "l": [1, {"k": "v"}]}}}. str replaces "text". */
static Tracseq__Events__V1__PublishRequest *sample_init(sample *s, const char *str)
{
    memset(s, 0, sizeof(*s));
    tracseq__events__v1__publish_request__init(&s->req);
    tracseq__events__v1__event__init(&s->ev);
    google__protobuf__timestamp__init(&s->ts);
    google__protobuf__struct__init(&s->data);
    google__protobuf__struct__init(&s->inner);
    google__protobuf__list_value__init(&s->list);
    for (int i = 0; i < 2; i++) {
        tracseq__events__v1__event__metadata_entry__init(&s->md[i]);
        s->mdp[i] = &s->md[i];
    }
    s->md[0].key = "lane", s->md[0].value = "3";
    s->md[1].key = "run", s->md[1].value = "r-1";
    s->ts.seconds = 1700000000;
    s->ev.id = "0b7e2d3c-9f51-4d7a-8e0e-6c1d2a3b4c5d";
    s->ev.event_type = "sample.thing";
    s->ev.source_service = "unit";
    s->ev.n_metadata = 2;
    s->ev.metadata = s->mdp;
    s->ev.timestamp = &s->ts;
    s->ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    s->ev.data = &s->data;
    for (int i = 0; i < 3; i++) {
        google__protobuf__struct__fields_entry__init(&s->fe[i]);
        google__protobuf__value__init(&s->v[i]);
        s->fe[i].value = &s->v[i];
        s->fep[i] = &s->fe[i];
    }
    s->fe[0].key = "n", s->v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    s->v[0].number_value = 7;
    s->fe[1].key = "s", s->v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    s->v[1].string_value = (char *)str;
    s->fe[2].key = "l", s->v[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
    s->v[2].list_value = &s->list;
    for (int i = 0; i < 2; i++) {
        google__protobuf__value__init(&s->lv[i]);
        s->lvp[i] = &s->lv[i];
    }
    s->lv[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE, s->lv[0].number_value = 1;
    s->lv[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    s->lv[1].struct_value = &s->inner;
    google__protobuf__struct__fields_entry__init(&s->ie);
    google__protobuf__value__init(&s->iv);
    s->ie.key = "k", s->ie.value = &s->iv, s->iep[0] = &s->ie;
    s->iv.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE, s->iv.string_value = "v";
    s->inner.n_fields = 1, s->inner.fields = s->iep;
    s->list.n_values = 2, s->list.values = s->lvp;
    s->data.n_fields = 3, s->data.fields = s->fep;
    s->req.event = &s->ev;
    return &s->req;
}

static void test_ordinary_requests_pass(void **state)
{
    Tracseq__Events__V1__CreateSubscriptionRequest create =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *types[] = {"sample.*", "*.completed", "Ünïcödé.✓"};
    tse_error err;
    sample s;
    size_t len;
    uint8_t *buf;

    (void)state;
    buf = pack(&sample_init(&s, "text ✓")->base, &len);
    assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_OK);
    free(buf);
    sub.name = "orders";
    sub.event_types = types;
    sub.n_event_types = 3;
    create.subscription = &sub;
    buf = pack(&create.base, &len);
    assert_int_equal(
        scan(&tracseq__events__v1__create_subscription_request__descriptor, buf, len, &err),
        TSE_PBSCAN_OK);
    free(buf);
    /* An empty message is a message; err may be NULL. */
    assert_int_equal(tse_pbscan(publish, NULL, 0, LIMIT, NULL), TSE_PBSCAN_OK);
}

/* ---- depth ---------------------------------------------------------------------------- */

/* The codec's verdict on the same bytes: can the event be shown as JSON? */
static bool codec_shows(const uint8_t *buf, size_t len)
{
    Tracseq__Events__V1__PublishRequest *req =
        tracseq__events__v1__publish_request__unpack(NULL, len, buf);
    json_t *j;

    assert_non_null(req);
    j = tse_pbjson_from_message(&req->event->base, 0);
    tracseq__events__v1__publish_request__free_unpacked(req, NULL);
    json_decref(j);
    return j != NULL;
}

static void test_lists_at_the_limit_pass_and_one_more_is_too_deep(void **state)
{
    tse_error err;
    size_t len;
    uint8_t *buf;

    (void)state;
    /* event{} + data{} + 62 arrays = 64 levels, as the codec counts. */
    buf = tse_nest_publish_lists("deep.thing", LIMIT - 2, &len);
    assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_OK);
    assert_true(codec_shows(buf, len));
    free(buf);
    buf = tse_nest_publish_lists("deep.thing", LIMIT - 1, &len);
    assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_TOO_DEEP);
    assert_false(codec_shows(buf, len));
    free(buf);
    assert_int_equal(err.code, TSE_INVALID);
    assert_int_equal(strncmp(err.field, "event.data.x[0][0][0]", 21), 0);
    assert_string_equal(err.message, "nests deeper than 64 levels");
}

static void test_objects_count_one_level_each_not_three_messages(void **state)
{
    tse_error err;
    tse_nest n;
    size_t len;
    uint8_t *buf;

    (void)state;
    for (size_t objects = LIMIT - 3; objects <= LIMIT - 1; objects++) {
        tse_nest_init(&n, objects * 24 + 256);
        tse_nest_structs(&n, objects);
        tse_nest_publish_around(&n, "deep.thing");
        buf = tse_nest_take(&n, &len);
        /* event{} + data{} + {"x": ...}: the Structs inside add one each. */
        if (objects <= LIMIT - 2) {
            assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_OK);
            assert_true(codec_shows(buf, len));
        } else {
            assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_TOO_DEEP);
            assert_false(codec_shows(buf, len));
            assert_int_equal(strncmp(err.field, "event.data.x.a.a.a", 18), 0);
        }
        free(buf);
    }
}

/* The reported crash (4,375 levels, 29.5 KB) and far beyond: refused,
 * without recursion, whatever the depth. */
static void test_any_depth_is_refused_without_recursion(void **state)
{
    static const size_t depths[] = {100, 1000, 4375, 10000, 100000, 1000000, 3000000};
    tse_error err;

    (void)state;
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        size_t len;
        uint8_t *buf = tse_nest_publish_lists("deep.thing", depths[i], &len);
        assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_TOO_DEEP);
        assert_true(strlen(err.field) < TSE_ERROR_FIELD_MAX);
        assert_int_equal(strncmp(err.field, "event.data.x[0]", 15), 0);
        free(buf);
    }
}

/* Whatever the count says, the wire nesting that unpacking would follow is
 * capped: a limit above what the frames hold is refused all the same. */
static void test_wire_nesting_is_capped_whatever_the_limit(void **state)
{
    tse_error err;
    size_t len;
    uint8_t *buf = tse_nest_publish_lists("deep.thing", TSE_PBSCAN_MAX_FRAMES, &len);

    (void)state;
    tse_error_clear(&err);
    assert_int_equal(tse_pbscan(publish, buf, len, 1000000, &err), TSE_PBSCAN_TOO_DEEP);
    free(buf);
}

/* ---- text ----------------------------------------------------------------------------- */

static void expect_bad_text(const ProtobufCMessage *msg, const char *field, const char *message)
{
    tse_error err;
    size_t len;
    uint8_t *buf = pack(msg, &len);

    assert_int_equal(scan(msg->descriptor, buf, len, &err), TSE_PBSCAN_BAD_TEXT);
    assert_string_equal(err.field, field);
    assert_string_equal(err.message, message);
    free(buf);
}

static void test_strings_must_be_utf8_and_the_field_is_named(void **state)
{
    Tracseq__Events__V1__CreateSubscriptionRequest create =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Tracseq__Events__V1__Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    char *types[] = {"ok.*", "bad\xff.*"}, *ids[] = {"a/1-1", "b/1-1", "c\xc3\x28/1-1"};
    sample s;

    (void)state;
    sub.name = "caf\xe9"; /* Latin-1, not UTF-8 */
    create.subscription = &sub;
    expect_bad_text(&create.base, "subscription.name", "must be valid UTF-8");
    sub.name = "fine";
    sub.event_types = types;
    sub.n_event_types = 2;
    expect_bad_text(&create.base, "subscription.event_types[1]", "must be valid UTF-8");
    ack.subscription = "fine";
    ack.ack_ids = ids;
    ack.n_ack_ids = 3;
    expect_bad_text(&ack.base, "ack_ids[2]", "must be valid UTF-8");

    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
    static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
                                      "\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_text(&sample_init(&s, bad[i])->base, "event.data.s", "must be valid UTF-8");
    s.ev.event_type = "sample\xff";
    expect_bad_text(&s.req.base, "event.event_type", "must be valid UTF-8");

    /* Map keys and values; Struct keys; strings inside lists. */
    sample_init(&s, "ok");
    s.md[1].key = "r\xffn";
    expect_bad_text(&s.req.base, "event.metadata", "keys must be valid UTF-8");
    sample_init(&s, "ok");
    s.md[0].value = "\xff";
    expect_bad_text(&s.req.base, "event.metadata.lane", "must be valid UTF-8");
    sample_init(&s, "ok");
    s.fe[2].key = "l\xff";
    expect_bad_text(&s.req.base, "event.data", "keys must be valid UTF-8");
    sample_init(&s, "ok");
    s.lv[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    s.lv[0].string_value = "\xfe";
    expect_bad_text(&s.req.base, "event.data.l[0]", "must be valid UTF-8");
    sample_init(&s, "ok");
    s.iv.string_value = "\xfe";
    expect_bad_text(&s.req.base, "event.data.l[1].k", "must be valid UTF-8");
}

/* A C string ends at a NUL: "a\0b" would arrive as "a", silently. */
static void test_strings_with_a_nul_are_refused(void **state)
{
    Tracseq__Events__V1__PullRequest pull = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    uint8_t bytes[] = {0x0A, 3, 'a', 0, 'b'}; /* subscription = "a\0b" */
    tse_error err;

    (void)state;
    (void)pull;
    assert_int_equal(
        scan(&tracseq__events__v1__pull_request__descriptor, bytes, sizeof(bytes), &err),
        TSE_PBSCAN_BAD_TEXT);
    assert_string_equal(err.field, "subscription");
    assert_string_equal(err.message, "must not contain NUL characters");
}

/* Long keys are cut on a character boundary, so the path stays text. */
static void test_paths_are_bounded_and_stay_text(void **state)
{
    char key[400];
    sample s;
    tse_error err;
    size_t len;
    uint8_t *buf;

    (void)state;
    key[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(key, "\xc3\xa9"); /* é */
    sample_init(&s, "ok");
    s.md[0].key = key;
    s.md[0].value = "\xff";
    buf = pack(&s.req.base, &len);
    assert_int_equal(scan(publish, buf, len, &err), TSE_PBSCAN_BAD_TEXT);
    free(buf);
    len = strlen(err.field);
    assert_true(len < TSE_ERROR_FIELD_MAX);
    assert_int_equal(strncmp(err.field, "event.metadata.\xc3\xa9", 17), 0);
    /* Ends on a whole é: "event.metadata." is 15 bytes, then pairs. */
    assert_int_equal((len - 15) % 2, 0);
}

/* ---- malformed input ---------------------------------------------------------------------- */

/* True when protobuf-c cannot unpack what it packs of m (a non-minimal
 * "field 0" tag it kept as an unknown field). */
static bool repack_fails(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    ProtobufCMessage *again;

    assert_non_null(buf);
    protobuf_c_message_pack(m, buf);
    again = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    if (again == NULL)
        return true;
    protobuf_c_message_free_unpacked(again, NULL);
    return false;
}

/* MALFORMED must never refuse what protobuf-c accepts, unless protobuf-c
 * could not read back its own packing of it (then a stored copy would be
 * poison). */
static void assert_agrees_with_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *p,
                                      size_t n, tse_pbscan_verdict v)
{
    ProtobufCMessage *m;

    if (v != TSE_PBSCAN_MALFORMED && v != TSE_PBSCAN_OK)
        return;
    m = protobuf_c_message_unpack(d, NULL, n, p);
    if (v == TSE_PBSCAN_MALFORMED && m != NULL && !repack_fails(m)) {
        for (size_t i = 0; i < n; i++)
            print_message("%02x ", p[i]);
        fail_msg("scan says malformed, protobuf-c unpacked %zu bytes of %s", n, d->name);
    }
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
}

static void test_every_truncation_is_ok_or_malformed_never_read_past_the_end(void **state)
{
    tse_error err;
    sample s;
    size_t len;
    uint8_t *full = pack(&sample_init(&s, "text")->base, &len);

    (void)state;
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly cut bytes, so ASan sees any read beyond. */
        uint8_t *p = malloc(cut ? cut : 1);
        tse_pbscan_verdict v;
        memcpy(p, full, cut);
        v = scan(publish, p, cut, &err);
        if (v != TSE_PBSCAN_OK && v != TSE_PBSCAN_MALFORMED)
            fail_msg("cut at %zu: verdict %d (%s: %s)", cut, v, err.field, err.message);
        assert_agrees_with_unpack(publish, p, cut, v);
        free(p);
    }
    free(full);
}

static void test_garbage_never_crashes_and_malformed_agrees_with_protobuf_c(void **state)
{
    static const ProtobufCMessageDescriptor *const descs[] = {
        &tracseq__events__v1__publish_request__descriptor,
        &tracseq__events__v1__subscribe_request__descriptor,
        &tracseq__events__v1__acknowledge_request__descriptor,
        &google__protobuf__value__descriptor,
    };
    uint32_t seed = 12345;
    tse_error err;
    int counts[4] = {0};

    (void)state;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(round % 97);
        uint8_t *p = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly small bytes: tags, lengths and nesting that mean something. */
            p[i] = (uint8_t)((seed >> 16) % (round % 3 ? 64 : 256));
        }
        const ProtobufCMessageDescriptor *d = descs[round % 4];
        tse_pbscan_verdict v = scan(d, p, n, &err);
        counts[v]++;
        assert_agrees_with_unpack(d, p, n, v);
        free(p);
    }
    /* And a real request with a few bytes changed. */
    sample smp;
    size_t len;
    uint8_t *full = pack(&sample_init(&smp, "text")->base, &len);
    for (int round = 0; round < 20000; round++) {
        uint8_t *p = malloc(len);
        memcpy(p, full, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            p[(seed >> 8) % len] = (uint8_t)(seed >> 20);
        }
        tse_pbscan_verdict v = scan(publish, p, len, &err);
        counts[v]++;
        assert_agrees_with_unpack(publish, p, len, v);
        free(p);
    }
    free(full);
    print_message("verdicts: ok %d, malformed %d, too deep %d, bad text %d\n", counts[0], counts[1],
                  counts[2], counts[3]);
    assert_true(counts[TSE_PBSCAN_OK] > 0 && counts[TSE_PBSCAN_MALFORMED] > 0);
}

static void test_malformed_bytes_are_named_with_their_offset(void **state)
{
    static const uint8_t group[] = {0x0B, 0x0C}; /* field 1, start group */
    static const uint8_t overlong[] = {0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                       0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    static const uint8_t beyond[] = {0x0A, 0x05, 0x0A, 0x01};     /* event: 5 bytes, 2 given */
    static const uint8_t inner[] = {0x0A, 0x03, 0x12, 0x05, 'a'}; /* event.event_type: 5, 1 given */
    static const uint8_t zero[] = {0x02, 0x01, 0x00};             /* field number 0 */
    /* Field 0 written in two bytes: protobuf-c unpacks it as an unknown
     * field but packs it back as 0x01, which it refuses (fuzz_requests). */
    static const uint8_t zero_long[] = {0x0A, 0x0B, 0x81, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x01};
    tse_error err;

    (void)state;
    assert_int_equal(scan(publish, group, sizeof(group), &err), TSE_PBSCAN_MALFORMED);
    assert_non_null(strstr(err.message, "wire type"));
    assert_int_equal(scan(publish, overlong, sizeof(overlong), &err), TSE_PBSCAN_MALFORMED);
    assert_int_equal(scan(publish, beyond, sizeof(beyond), &err), TSE_PBSCAN_MALFORMED);
    assert_string_equal(err.message, "length beyond the end of the message at byte 0");
    assert_int_equal(scan(publish, inner, sizeof(inner), &err), TSE_PBSCAN_MALFORMED);
    assert_string_equal(err.field, "event");
    assert_string_equal(err.message, "length beyond the end of the message at byte 2");
    assert_int_equal(scan(publish, zero, sizeof(zero), &err), TSE_PBSCAN_MALFORMED);
    assert_int_equal(scan(publish, zero_long, sizeof(zero_long), &err), TSE_PBSCAN_MALFORMED);
    assert_string_equal(err.field, "event");
    assert_non_null(strstr(err.message, "field number 0"));
}

/* Fields the descriptor does not know are kept as bytes by protobuf-c and
 * never unpacked, so whatever they hold passes. */
static void test_unknown_fields_are_skipped_whatever_they_hold(void **state)
{
    tse_error err;
    size_t len;
    uint8_t *deep = tse_nest_publish_lists("deep.thing", 1000, &len);
    uint8_t *buf = malloc(len + 16);

    (void)state;
    /* The deep bytes as field 99 of an AcknowledgeRequest: unknown there. */
    buf[0] = 0x9A; /* 99 << 3 | 2 = 794: varint 0x9A 0x06 */
    buf[1] = 0x06;
    size_t k = 2, v = len;
    do {
        buf[k++] = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    memcpy(buf + k, deep, len);
    assert_int_equal(
        scan(&tracseq__events__v1__acknowledge_request__descriptor, buf, k + len, &err),
        TSE_PBSCAN_OK);
    free(buf);
    free(deep);
}

/* The entries of a repeated field are counted at the root only, whatever
 * they hold, and a malformed tail ends the count. */
static void test_count_reads_only_the_root(void **state)
{
    /* events[0] = {}, an unknown varint field 2, events[1] holding a nested
     * field 1 (not counted), a fixed64 field 3, events[2] = {}. */
    static const uint8_t batch[] = {0x0A, 0x00, 0x10, 0x96, 0x01, 0x0A, 0x02, 0x0A, 0x00, 0x19,
                                    1,    2,    3,    4,    5,    6,    7,    8,    0x0A, 0x00};
    static const uint8_t truncated[] = {0x0A, 0x00, 0x0A, 0x05, 0x00};

    (void)state;
    assert_int_equal(tse_pbscan_count(batch, sizeof(batch), 1), 3);
    assert_int_equal(tse_pbscan_count(batch, sizeof(batch), 2), 1);
    assert_int_equal(tse_pbscan_count(batch, sizeof(batch), 3), 1);
    assert_int_equal(tse_pbscan_count(truncated, sizeof(truncated), 1), 2);
    assert_int_equal(tse_pbscan_count(NULL, 0, 1), 0);
}

/* An Event packed by protobuf-c: its timestamp reads back as set; every
 * truncation of it either reads the same or says no, never past the end. */
static void test_timestamp_of_a_packed_event_and_its_truncations(void **state)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    uint8_t buf[256];
    size_t len;
    int64_t sec;
    int32_t nanos;

    (void)state;
    ev.id = "6f1c8a52-3f8e-4a59-9f57-0d6c2b7f1a10";
    ev.event_type = "sample.created";
    ev.source_service = "test";
    ts.seconds = 1718700000;
    ts.nanos = 123456789;
    ev.timestamp = &ts;
    ev.priority = 3;
    len = tracseq__events__v1__event__pack(&ev, buf);
    assert_true(len < sizeof(buf));
    assert_true(tse_pbscan_timestamp(buf, len, 5, &sec, &nanos));
    assert_int_equal(sec, 1718700000);
    assert_int_equal(nanos, 123456789);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees an overread */
        memcpy(copy, buf, cut);
        if (tse_pbscan_timestamp(copy, cut, 5, &sec, &nanos))
            assert_true(sec == 1718700000 && nanos == 123456789);
        free(copy);
    }
    /* Absent, or nanos out of range (2: 1,000,000,000), or not a message. */
    ev.timestamp = NULL;
    len = tracseq__events__v1__event__pack(&ev, buf);
    assert_false(tse_pbscan_timestamp(buf, len, 5, &sec, &nanos));
    {
        static const uint8_t bad_nanos[] = {0x2A, 0x08, 0x08, 0x01, 0x10,
                                            0x80, 0x94, 0xEB, 0xDC, 0x03};
        static const uint8_t group[] = {0x2B, 0x2C};
        assert_false(tse_pbscan_timestamp(bad_nanos, sizeof(bad_nanos), 5, &sec, &nanos));
        assert_false(tse_pbscan_timestamp(group, sizeof(group), 5, &sec, &nanos));
        assert_false(tse_pbscan_timestamp(NULL, 0, 5, &sec, &nanos));
    }
}

/* Whether a scan of bytes (an Event) notes a singular message field twice. */
static bool repeated_message(const uint8_t *bytes, size_t len)
{
    tse_pbscan_info info = {true};

    assert_int_equal(
        tse_pbscan_with(&tracseq__events__v1__event__descriptor, bytes, len, 64, &info, NULL),
        TSE_PBSCAN_OK);
    return info.message_repeated;
}

static void test_a_singular_message_field_twice_is_noted_at_any_depth(void **state)
{
    /* timestamp twice at the root: protobuf-c keeps the second, the spec merges. */
    static const uint8_t root[] = {0x2A, 0x02, 0x08, 0x01, 0x2A, 0x02, 0x10, 0x02};
    /* data { fields { key "x" value { struct_value {} } value { null_value } } }:
     * a map entry's value message twice, two levels down. */
    static const uint8_t nested[] = {0xA2, 0x01, 0x0B, 0x0A, 0x09, 0x0A, 0x01,
                                     'x',  0x12, 0x02, 0x2A, 0x00, 0x12, 0x00};
    /* Strings and repeated fields twice, and one of each message: nothing to note. */
    static const uint8_t fine[] = {0x12, 0x01, 'a',  0x12, 0x01, 'b',  0x52, 0x00,
                                   0x52, 0x00, 0x2A, 0x00, 0xA2, 0x01, 0x00};

    (void)state;
    assert_true(repeated_message(root, sizeof(root)));
    assert_true(repeated_message(nested, sizeof(nested)));
    assert_false(repeated_message(fine, sizeof(fine)));
    assert_false(repeated_message(NULL, 0));
}

static void test_next_walks_the_root_fields_and_stops_at_malformed_bytes(void **state)
{
    /* 1: varint 300; 2: "ab"; 3: fixed32; then a truncated length. */
    static const uint8_t bytes[] = {0x08, 0xAC, 0x02, 0x12, 0x02, 'a',  'b', 0x1D,
                                    1,    2,    3,    4,    0x22, 0x05, 'x'};
    tse_pbscan_field f;
    size_t pos = 0;

    (void)state;
    assert_true(tse_pbscan_next(bytes, sizeof(bytes), &pos, &f));
    assert_int_equal(f.id, 1);
    assert_int_equal(f.wire, 0);
    assert_int_equal(f.varint, 300);
    assert_true(tse_pbscan_next(bytes, sizeof(bytes), &pos, &f));
    assert_int_equal(f.id, 2);
    assert_int_equal(f.wire, 2);
    assert_int_equal(f.len, 2);
    assert_memory_equal(f.data, "ab", 2);
    assert_true(tse_pbscan_next(bytes, sizeof(bytes), &pos, &f));
    assert_int_equal(f.id, 3);
    assert_int_equal(f.wire, 5);
    assert_int_equal(f.len, 4);
    assert_int_equal(pos, 12);
    assert_false(tse_pbscan_next(bytes, sizeof(bytes), &pos, &f));
    assert_int_equal(pos, 12); /* stopped before the malformed field */
    pos = 7;
    assert_true(tse_pbscan_next(bytes, 12, &pos, &f));
    assert_false(tse_pbscan_next(bytes, 12, &pos, &f));
    assert_int_equal(pos, 12); /* the end */
    pos = 0;
    assert_false(tse_pbscan_next(NULL, 0, &pos, &f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinary_requests_pass),
        cmocka_unit_test(test_lists_at_the_limit_pass_and_one_more_is_too_deep),
        cmocka_unit_test(test_objects_count_one_level_each_not_three_messages),
        cmocka_unit_test(test_any_depth_is_refused_without_recursion),
        cmocka_unit_test(test_wire_nesting_is_capped_whatever_the_limit),
        cmocka_unit_test(test_strings_must_be_utf8_and_the_field_is_named),
        cmocka_unit_test(test_strings_with_a_nul_are_refused),
        cmocka_unit_test(test_paths_are_bounded_and_stay_text),
        cmocka_unit_test(test_every_truncation_is_ok_or_malformed_never_read_past_the_end),
        cmocka_unit_test(test_garbage_never_crashes_and_malformed_agrees_with_protobuf_c),
        cmocka_unit_test(test_malformed_bytes_are_named_with_their_offset),
        cmocka_unit_test(test_unknown_fields_are_skipped_whatever_they_hold),
        cmocka_unit_test(test_count_reads_only_the_root),
        cmocka_unit_test(test_timestamp_of_a_packed_event_and_its_truncations),
        cmocka_unit_test(test_a_singular_message_field_twice_is_noted_at_any_depth),
        cmocka_unit_test(test_next_walks_the_root_fields_and_stops_at_malformed_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
