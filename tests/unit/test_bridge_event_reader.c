/*
 * test_bridge_event_reader.c - the REST bridge's fast publish-body reader
 * (rest-bridge/event_reader.c): what clients send is read, and encoded to
 * exactly the bytes protobuf-c packs of the reference's Event
 * (tsb_event_from_json on jansson's tree); everything it cannot read exactly
 * as the reference would is declined (the bridge then answers with the
 * reference, errors included). tests/fuzz/fuzz_bridge_event_reader.c checks
 * the same property on generated bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domain/validate.h"
#include "event_reader.h"

typedef Tracseq__Events__V1__Event Event;

#define BENCH_EVENT                                                                                \
    "{\"event_type\":\"sample.created\",\"source_service\":\"bench-client-service\","              \
    "\"priority\":3,\"payload\":{\"sample_id\":\"123e4567-e89b-42d3-a456-426614174000\","          \
    "\"barcode\":\"SAM-20240618-001\",\"sample_type\":\"DNA\",\"submitter_id\":"                   \
    "\"223e4567-e89b-42d3-a456-426614174001\",\"lab_id\":\"323e4567-e89b-42d3-a456-"               \
    "426614174002\"}}"

#define HEAD "{\"event_type\":\"a.b\",\"source_service\":\"s\","

static const char *const corr = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
static const char *const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/* The reference's bytes for one event (d applied as publish.c does). */
static uint8_t *reference(const json_t *entry, const tsb_event_defaults *d, size_t *len)
{
    Event *ev = NULL;
    tse_error err;
    uint8_t *out;

    assert_int_equal(tsb_event_from_json(entry, &ev, &err), TSE_OK);
    if (d != NULL && d->correlation_id != NULL &&
        (ev->correlation_id == NULL || ev->correlation_id[0] == '\0')) {
        if (ev->correlation_id != protobuf_c_empty_string)
            free(ev->correlation_id);
        ev->correlation_id = strdup(d->correlation_id);
        assert_non_null(ev->correlation_id);
    }
    if (d != NULL && d->traceparent != NULL)
        assert_int_equal(tse_event_adopt_trace(ev, d->traceparent, strlen(d->traceparent),
                                               d->tracestate,
                                               d->tracestate ? strlen(d->tracestate) : 0, &err),
                         TSE_OK);
    *len = protobuf_c_message_get_packed_size(&ev->base);
    out = malloc(*len + 1);
    assert_non_null(out);
    protobuf_c_message_pack(&ev->base, out);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
    return out;
}

static void same_as_reference(const tsb_read_events *evs, size_t i, const json_t *entry,
                              const tsb_event_defaults *d)
{
    size_t len;
    uint8_t *ref = reference(entry, d, &len);
    tsb_bytes fast = {0};

    tsb_read_event_encode(evs, i, d, &fast);
    assert_false(fast.failed);
    assert_int_equal(fast.len, len);
    assert_memory_equal(fast.p, ref, len);
    free(ref);
    tsb_bytes_cleanup(&fast);
}

/* body (len bytes) is read as one event and encodes as the reference's. */
static void read_like_reference_n(const char *body, size_t len, const tsb_event_defaults *d)
{
    tsb_read_events evs = {0};
    json_error_t jerr;
    json_t *json;

    assert_true(tsb_read_event_body(body, len, &evs));
    assert_int_equal(evs.n, 1);
    json = json_loadb(body, len, 0, &jerr);
    assert_non_null(json);
    same_as_reference(&evs, 0, json, d);
    json_decref(json);
    tsb_read_events_cleanup(&evs);
}

static void read_like_reference(const char *body, const tsb_event_defaults *d)
{
    read_like_reference_n(body, strlen(body), d);
}

static void declined_n(const char *body, size_t len)
{
    tsb_read_events evs = {0};

    assert_false(tsb_read_event_body(body, len, &evs));
    assert_int_equal(evs.n, 0);
    assert_null(evs.buf.p);
}

static void declined(const char *body)
{
    declined_n(body, strlen(body));
}

static void the_bench_event_is_read_as_the_reference_packs_it(void **state)
{
    const tsb_event_defaults d = {corr, tp, "rojo=1"};

    (void)state;
    read_like_reference(BENCH_EVENT, NULL);
    read_like_reference(BENCH_EVENT, &d);
}

static void every_envelope_field_is_read(void **state)
{
    (void)state;
    read_like_reference(
        "{\"id\":\"5f0c6a2e-1d2b-4c3a-9e8f-7a6b5c4d3e2f\",\"event_type\":\"order.placed\","
        "\"source_service\":\"shop\",\"version\":\"1.2\",\"correlation_id\":\"c\","
        "\"causation_id\":\"d\",\"subject\":\"order-1\",\"priority\":5,"
        "\"metadata\":{\"lane\":\"a\",\"\":\"empty key\",\"e\":\"\"},\"traceparent\":\"t\","
        "\"tracestate\":\"k=v\",\"unknown\":{\"x\":[1,{\"y\":null}]},\"payload\":{}}",
        NULL);
    /* null is "not given"; an empty string is packed as nothing. */
    read_like_reference(HEAD "\"subject\":null,\"priority\":null,\"metadata\":null,"
                             "\"id\":\"\",\"payload\":{\"a\":1}}",
                        NULL);
}

static void the_request_fills_only_what_the_event_lacks(void **state)
{
    const tsb_event_defaults both = {corr, tp, "rojo=1"}, no_state = {corr, tp, NULL};
    tsb_read_events evs = {0};
    const char *own = HEAD "\"correlation_id\":\"mine\",\"tracestate\":\"a=b\",\"payload\":{}}";

    (void)state;
    read_like_reference(HEAD "\"payload\":{}}", &both);
    read_like_reference(HEAD "\"payload\":{}}", &no_state);
    read_like_reference(own, &both);
    read_like_reference(HEAD "\"traceparent\":\"x\",\"payload\":{}}", &both);
    assert_true(tsb_read_event_body(own, strlen(own), &evs));
    assert_string_equal(tsb_read_event_string(&evs, 0, TSB_READ_CORRELATION_ID), "mine");
    assert_string_equal(tsb_read_event_string(&evs, 0, TSB_READ_TRACEPARENT), "");
    assert_string_equal(tsb_read_event_string(&evs, 0, TSB_READ_TRACESTATE), "a=b");
    tsb_read_events_cleanup(&evs);
}

static void a_payload_that_is_no_object_is_wrapped_as_value(void **state)
{
    (void)state;
    read_like_reference(HEAD "\"payload\":\"text\"}", NULL);
    read_like_reference(HEAD "\"payload\":42}", NULL);
    read_like_reference(HEAD "\"payload\":[1,\"a\",null,[],{}]}", NULL);
    read_like_reference(HEAD "\"payload\":false}", NULL);
}

static void escapes_and_surrogate_pairs_decode_to_utf8(void **state)
{
    (void)state;
    read_like_reference(HEAD "\"payload\":{\"e\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\","
                             "\"u\":\"\\u00e9\\u20AC\\ud83d\\ude00\",\"raw\":\"\xc3\xa9\xe2\x82"
                             "\xac\xf0\x9f\x98\x80\",\"k\\u0065y\":\"\"}}",
                        NULL);
    /* An escaped key is the key it decodes to. */
    read_like_reference("{\"event\\u005ftype\":\"a.b\",\"source_service\":\"s\",\"payload\":1}",
                        NULL);
}

static void numbers_are_the_doubles_jansson_makes(void **state)
{
    (void)state;
    read_like_reference(HEAD "\"payload\":{\"a\":-0,\"b\":-0.0,\"c\":999999999999999999,"
                             "\"d\":-999999999999999999,\"e\":1.7976931348623157e308,"
                             "\"f\":1e-400,\"g\":4.9e-324,\"h\":0.1,\"i\":1E+2,\"j\":12.5e-1}}",
                        NULL);
}

static void strings_of_any_length_are_read(void **state)
{
    size_t n = 1 << 20;
    char *body = malloc(n + 64);

    (void)state;
    assert_non_null(body);
    strcpy(body, HEAD "\"payload\":{\"big\":\"");
    size_t at = strlen(body);
    memset(body + at, 'x', n);
    strcpy(body + at + n, "\"}}");
    read_like_reference(body, NULL);
    free(body);
}

static void nesting_up_to_the_limit_is_read_beyond_it_declined(void **state)
{
    char body[512];
    int n;

    (void)state;
    /* The envelope is level 1, the payload 2: 30 arrays inside reach 32. */
    n = snprintf(body, sizeof(body), HEAD "\"payload\":{\"a\":%.*s%.*s}}", 30,
                 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 30, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    assert_true(n > 0 && (size_t)n < sizeof(body));
    read_like_reference(body, NULL);
    snprintf(body, sizeof(body), HEAD "\"payload\":{\"a\":%.*s%.*s}}", 31,
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 31, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    declined(body);
}

static void malformed_json_is_declined(void **state)
{
    (void)state;
    declined("");
    declined("   ");
    declined("[" BENCH_EVENT "]");
    declined(BENCH_EVENT " x");
    declined(BENCH_EVENT "}");
    declined(HEAD "\"payload\":{\"a\":1,}}");
    declined(HEAD "\"payload\":{\"a\":01}}");
    declined(HEAD "\"payload\":{\"a\":-}}");
    declined(HEAD "\"payload\":{\"a\":1.}}");
    declined(HEAD "\"payload\":{\"a\":1e}}");
    declined(HEAD "\"payload\":{\"a\":.5}}");
    declined(HEAD "\"payload\":{\"a\":tru}}");
    declined(HEAD "\"payload\":{\"a\":nulls}}");
    declined(HEAD "\"payload\":{\"a\":\"\\x\"}}");
    declined(HEAD "\"payload\":{\"a\":\"\\u12\"}}");
    declined(HEAD "\"payload\":{\"a\":\"tab\there\"}}");
    declined(HEAD "\"payload\":{\"a\":\"unterminated}}");
    declined_n(HEAD "\"payload\":{\"a\":1}}\0", sizeof(HEAD "\"payload\":{\"a\":1}}"));
}

static void what_jansson_refuses_in_strings_is_declined(void **state)
{
    (void)state;
    declined(HEAD "\"payload\":{\"a\":\"\xc3\x28\"}}");         /* bad continuation */
    declined(HEAD "\"payload\":{\"a\":\"\xc0\xaf\"}}");         /* overlong */
    declined(HEAD "\"payload\":{\"a\":\"\xed\xa0\x80\"}}");     /* a surrogate in UTF-8 */
    declined(HEAD "\"payload\":{\"a\":\"\xf4\x90\x80\x80\"}}"); /* above U+10FFFF */
    declined(HEAD "\"payload\":{\"a\":\"\xe2\x82\"}}");         /* cut short */
    declined(HEAD "\"payload\":{\"a\":\"\\ud800\"}}");          /* lone high surrogate */
    declined(HEAD "\"payload\":{\"a\":\"\\udc00\"}}");          /* lone low surrogate */
    declined(HEAD "\"payload\":{\"a\":\"\\ud800\\u0041\"}}");   /* high, then no low */
    declined(HEAD "\"payload\":{\"a\":\"\\u0000\"}}");          /* NUL */
}

static void numbers_outside_what_is_read_exactly_are_declined(void **state)
{
    (void)state;
    declined(HEAD "\"payload\":{\"a\":1000000000000000000}}"); /* 19 digits */
    declined(HEAD "\"payload\":{\"a\":9223372036854775808}}"); /* too big for jansson */
    declined(HEAD "\"payload\":{\"a\":1e400}}");               /* real overflow */
    declined(HEAD "\"payload\":{\"a\":-1e400}}");
    /* 0.000...01, 65 characters: longer than the reader's number buffer. */
    declined(HEAD "\"payload\":{\"a\":0.000000000000000000000000000000000000000000000000000000000"
                  "000001}}");
}

static void duplicate_keys_are_declined(void **state)
{
    (void)state;
    declined(HEAD "\"payload\":{\"a\":1,\"a\":2}}");
    declined(HEAD "\"payload\":{\"a\":1,\"\\u0061\":2}}");
    declined(HEAD "\"payload\":{\"o\":{\"a\":1,\"a\":2}}}");
    declined(HEAD "\"metadata\":{\"k\":\"a\",\"k\":\"b\"},\"payload\":{}}");
    declined(HEAD "\"subject\":null,\"subject\":\"s\",\"payload\":{}}");
    declined(HEAD "\"payload\":{},\"payload\":{}}");
    /* The same key in two objects is no duplicate. */
    read_like_reference(HEAD "\"payload\":{\"a\":{\"a\":1},\"b\":{\"a\":2}}}", NULL);
}

static void envelope_values_the_reference_checks_are_declined(void **state)
{
    (void)state;
    declined("{\"source_service\":\"s\",\"payload\":{}}");
    declined("{\"event_type\":\"a.b\",\"payload\":{}}");
    declined(HEAD "\"other\":1}");
    declined(HEAD "\"payload\":null}");
    declined("{\"event_type\":null,\"source_service\":\"s\",\"payload\":{}}");
    declined("{\"event_type\":7,\"source_service\":\"s\",\"payload\":{}}");
    declined(HEAD "\"priority\":0,\"payload\":{}}");
    declined(HEAD "\"priority\":6,\"payload\":{}}");
    declined(HEAD "\"priority\":3.0,\"payload\":{}}");
    declined(HEAD "\"priority\":\"3\",\"payload\":{}}");
    declined(HEAD "\"metadata\":{\"k\":1},\"payload\":{}}");
    declined(HEAD "\"metadata\":{\"k\":null},\"payload\":{}}");
    declined(HEAD "\"metadata\":[],\"payload\":{}}");
    declined(HEAD "\"subject\":[],\"payload\":{}}");
}

static void a_batch_is_read_in_order(void **state)
{
    const char *body = "{\"before\":[1,{\"x\":2}],\"events\":[" BENCH_EVENT "," HEAD
                       "\"payload\":\"v\"}," BENCH_EVENT "],\"after\":null}";
    const tsb_event_defaults d = {corr, NULL, NULL};
    tsb_read_events evs = {0};
    json_error_t jerr;
    json_t *json, *arr;

    (void)state;
    assert_true(tsb_read_batch_body(body, strlen(body), 3, &evs));
    assert_int_equal(evs.n, 3);
    json = json_loadb(body, strlen(body), 0, &jerr);
    assert_non_null(json);
    arr = json_object_get(json, "events");
    for (size_t i = 0; i < 3; i++)
        same_as_reference(&evs, i, json_array_get(arr, i), &d);
    json_decref(json);
    /* More than max, none, one not an object, one bad: the reference's. */
    assert_false(tsb_read_batch_body(body, strlen(body), 2, &evs));
    assert_int_equal(evs.n, 0);
    assert_false(tsb_read_batch_body("{\"events\":[]}", 13, 10, &evs));
    assert_false(tsb_read_batch_body("{\"events\":{}}", 13, 10, &evs));
    assert_false(tsb_read_batch_body("{\"x\":1}", 7, 10, &evs));
    assert_false(tsb_read_batch_body("{\"events\":[1]}", 14, 10, &evs));
    body = "{\"events\":[" BENCH_EVENT ",{\"event_type\":\"a.b\"}]}";
    assert_false(tsb_read_batch_body(body, strlen(body), 10, &evs));
    body = "{\"events\":[" BENCH_EVENT "],\"events\":[" BENCH_EVENT "]}";
    assert_false(tsb_read_batch_body(body, strlen(body), 10, &evs));
    assert_null(evs.ev);
}

/* Strings are scanned 8 bytes at a time: a byte that ends, escapes or
 * spoils a string is seen at every position of the word. */
static void special_bytes_are_seen_anywhere_in_a_string(void **state)
{
    static const char *const good[] = {"\\n", "\\\"", "\\u00e9", "\xc3\xa9", "\xf0\x9f\x98\x80"};
    static const char *const bad[] = {"\x01", "\x1f", "\xc3", "\xff", "\\q", "\\u12"};
    char body[256];

    (void)state;
    for (int at = 0; at < 17; at++) {
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
            snprintf(body, sizeof(body), HEAD "\"payload\":{\"a\":\"%.*s%s%.*s\"}}", at,
                     "abcdefghijklmnopq", good[i], 17 - at, "rstuvwxyz01234567");
            read_like_reference(body, NULL);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            snprintf(body, sizeof(body), HEAD "\"payload\":{\"a\":\"%.*s%s%.*s\"}}", at,
                     "abcdefghijklmnopq", bad[i], 17 - at, "rstuvwxyz01234567");
            declined(body);
        }
        /* A quote ends the string early: what follows is no JSON. */
        snprintf(body, sizeof(body), HEAD "\"payload\":{\"a\":\"%.*s\"%.*s\"}}", at,
                 "abcdefghijklmnopq", 17 - at, "rstuvwxyz01234567");
        declined(body);
    }
}

static void keys_longer_than_127_bytes_are_declined(void **state)
{
    char body[512];

    (void)state;
    snprintf(body, sizeof(body), HEAD "\"payload\":{\"%0127d\":1}}", 0);
    read_like_reference(body, NULL);
    snprintf(body, sizeof(body), HEAD "\"payload\":{\"%0128d\":1}}", 0);
    declined(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_bench_event_is_read_as_the_reference_packs_it),
        cmocka_unit_test(every_envelope_field_is_read),
        cmocka_unit_test(the_request_fills_only_what_the_event_lacks),
        cmocka_unit_test(a_payload_that_is_no_object_is_wrapped_as_value),
        cmocka_unit_test(escapes_and_surrogate_pairs_decode_to_utf8),
        cmocka_unit_test(numbers_are_the_doubles_jansson_makes),
        cmocka_unit_test(strings_of_any_length_are_read),
        cmocka_unit_test(nesting_up_to_the_limit_is_read_beyond_it_declined),
        cmocka_unit_test(malformed_json_is_declined),
        cmocka_unit_test(what_jansson_refuses_in_strings_is_declined),
        cmocka_unit_test(numbers_outside_what_is_read_exactly_are_declined),
        cmocka_unit_test(duplicate_keys_are_declined),
        cmocka_unit_test(envelope_values_the_reference_checks_are_declined),
        cmocka_unit_test(a_batch_is_read_in_order),
        cmocka_unit_test(special_bytes_are_seen_anywhere_in_a_string),
        cmocka_unit_test(keys_longer_than_127_bytes_are_declined),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
