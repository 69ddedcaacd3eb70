/*
 * fuzz_pbjson.c - libFuzzer target for the JSON <-> protobuf transcoder
 * (src/codec/pbjson.h), the code every REST body and payload goes through.
 *
 * Each input is parsed as JSON (any value) and fed to tse_pbjson_to_message
 * as a tracseq.events.v1.Event (strict, and ignoring unknown fields) and as
 * a PublishRequest, and to tse_pbjson_to_value. Besides what ASan and UBSan
 * catch, one property is checked: whatever converted converts back
 * (from_message, with and without EMIT_DEFAULTS | CAMEL_CASE), and that
 * JSON converts again to the very same protobuf bytes, i.e. the codec reads
 * everything it writes and loses nothing on the way. A violation aborts
 * with both byte strings described.
 *
 * Invariants of the harness: it keeps no state between inputs and frees
 * everything it allocates (LeakSanitizer runs too).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbjson.h"
#include "tracseq/events/v1/event.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *packed(const ProtobufCMessage *msg, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(msg);
    buf = malloc(*len ? *len : 1);
    if (buf == NULL)
        abort();
    protobuf_c_message_pack(msg, buf);
    return buf;
}

static void fail(const char *what, const ProtobufCMessage *msg, const json_t *back,
                 const tse_error *err)
{
    char *text = json_dumps(back, JSON_ENCODE_ANY | JSON_COMPACT);

    fprintf(stderr, "pbjson round trip of %s: %s\n  JSON written: %s\n  error: %s: %s\n",
            msg->descriptor->name, what, text ? text : "(none)", err ? err->field : "",
            err ? err->message : "");
    free(text);
    abort();
}

/* msg -> JSON -> message again must give msg's bytes. */
static void round_trip(const ProtobufCMessage *msg, unsigned out_flags)
{
    json_t *back = tse_pbjson_from_message(msg, out_flags);
    ProtobufCMessage *again = NULL;
    uint8_t *a, *b;
    size_t alen, blen;
    tse_error err;

    if (back == NULL)
        fail("from_message returned NULL", msg, NULL, NULL);
    tse_error_clear(&err);
    if (tse_pbjson_to_message(back, msg->descriptor, 0, &again, &err) != TSE_OK)
        fail("its own output does not convert back", msg, back, &err);
    a = packed(msg, &alen);
    b = packed(again, &blen);
    if (alen != blen || memcmp(a, b, alen) != 0)
        fail("the bytes differ after the round trip", msg, back, NULL);
    free(a);
    free(b);
    protobuf_c_message_free_unpacked(again, NULL);
    json_decref(back);
}

static void as_message(const json_t *json, const ProtobufCMessageDescriptor *desc,
                       unsigned in_flags)
{
    ProtobufCMessage *msg = NULL;
    tse_error err;

    tse_error_clear(&err);
    if (tse_pbjson_to_message(json, desc, in_flags, &msg, &err) != TSE_OK) {
        /* A failure names a bounded, terminated field path and says why. */
        if (err.code == TSE_OK || strlen(err.message) == 0 ||
            memchr(err.field, '\0', sizeof(err.field)) == NULL)
            abort();
        return;
    }
    round_trip(msg, 0);
    round_trip(msg, TSE_PBJSON_EMIT_DEFAULTS | TSE_PBJSON_CAMEL_CASE);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void as_value(const json_t *json)
{
    Google__Protobuf__Value *v = NULL;
    json_t *back;

    if (tse_pbjson_to_value(json, &v, NULL) != TSE_OK)
        return;
    back = tse_pbjson_from_value(v);
    if (back == NULL)
        abort();
    json_decref(back);
    protobuf_c_message_free_unpacked(&v->base, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *json = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);

    if (json == NULL)
        return 0;
    as_message(json, &tracseq__events__v1__event__descriptor, 0);
    as_message(json, &tracseq__events__v1__event__descriptor, TSE_PBJSON_IGNORE_UNKNOWN);
    as_message(json, &tracseq__events__v1__publish_request__descriptor, 0);
    as_value(json);
    json_decref(json);
    return 0;
}
