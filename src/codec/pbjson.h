/*
 * pbjson.h - one generic JSON <-> protobuf transcoder for every message of
 * our schema, walking protobuf-c descriptors (no per-type code).
 *
 * It follows the proto3 JSON mapping: field names are accepted as written in
 * the .proto (snake_case) or as lowerCamelCase json_name; Timestamp is an
 * RFC 3339 string; Struct / Value / ListValue are plain JSON; enums are
 * accepted by name or number; 64-bit integers as strings or numbers; bytes as
 * base64; maps as JSON objects; repeated fields as arrays; null means "unset".
 * Output uses the original (snake_case) names unless TSE_PBJSON_CAMEL_CASE
 * is given, omits default-valued scalars unless TSE_PBJSON_EMIT_DEFAULTS, and
 * writes 64-bit integers as strings.
 *
 * The codec does no I/O and keeps no state: all functions are reentrant.
 * Messages it builds are allocated so that
 * protobuf_c_message_free_unpacked(msg, NULL) frees them whole.
 */
#ifndef TSE_CODEC_PBJSON_H
#define TSE_CODEC_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <string.h>

#include "common/status.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

enum {
    TSE_PBJSON_CAMEL_CASE = 1u << 0,     /* output: lowerCamel json names */
    TSE_PBJSON_EMIT_DEFAULTS = 1u << 1,  /* output: write zero/empty fields */
    TSE_PBJSON_IGNORE_UNKNOWN = 1u << 2, /* input: skip unknown fields */
};

/*
 * The deepest JSON nesting (objects and arrays, counting the outermost one)
 * either direction accepts, so hostile input cannot exhaust the stack.
 */
#define TSE_PBJSON_MAX_DEPTH 64

/*
 * Converts msg to a new JSON object (a JSON string for a Timestamp, any JSON
 * value for a Value). Returns NULL when msg is NULL, on allocation failure,
 * or when msg nests deeper than TSE_PBJSON_MAX_DEPTH.
 * Caller releases with json_decref.
 */
json_t *tse_pbjson_from_message(const ProtobufCMessage *msg, unsigned flags);

/*
 * Builds a new message of type desc from the JSON object json. On failure
 * returns TSE_INVALID (TSE_NOMEM when out of memory) with err->field naming
 * the offending field by its JSON path and *out untouched. The path joins
 * proto field names (even when the input used the lowerCamel name) with
 * ".", appends map and Struct keys as ".key" and array elements as "[i]",
 * e.g. "barcode", "metadata.lane", "samples[2]",
 * "deliveries[1].event.sample_created.created_at"; it is "" when json itself
 * is not an object. Unknown fields are an error unless
 * TSE_PBJSON_IGNORE_UNKNOWN; a field given twice (by both of its names) and
 * two members of one oneof are errors.
 * Caller frees *out with protobuf_c_message_free_unpacked(*out, NULL).
 */
tse_status tse_pbjson_to_message(const json_t *json, const ProtobufCMessageDescriptor *desc,
                                 unsigned flags, ProtobufCMessage **out, tse_error *err);

/* Struct <-> JSON object; the same rules as above. */
json_t *tse_pbjson_from_struct(const Google__Protobuf__Struct *s);
tse_status tse_pbjson_to_struct(const json_t *obj, Google__Protobuf__Struct **out, tse_error *err);

/* Value <-> any JSON value. */
json_t *tse_pbjson_from_value(const Google__Protobuf__Value *v);
tse_status tse_pbjson_to_value(const json_t *json, Google__Protobuf__Value **out, tse_error *err);

/*
 * RFC 3339 for Timestamps: format writes "2024-06-18T10:00:00.123456Z"
 * (UTC, 0, 3, 6 or 9 fractional digits as needed) into buf (>= 40 bytes);
 * parse accepts any offset and 0-9 fractional digits.
 */
void tse_rfc3339_format(int64_t seconds, int32_t nanos, char *buf, size_t len);
tse_status tse_rfc3339_parse(const char *text, int64_t *seconds, int32_t *nanos);

/*
 * Whether d is the entry type protoc makes for a map field (protobuf-c has
 * no map flag): two fields, key (1) and value (2), a type named
 * "<Field>Entry". The one rule of the tree (the codec, the wire scan, the
 * domain's text walk, the bridge); inline because the wire scan asks it of
 * every message of every request, so a Struct's entries are known without
 * comparing names and names are read only for two-field messages.
 */
static inline bool tse_pbjson_is_map_entry(const ProtobufCMessageDescriptor *d)
{
    size_t len;

    if (d == &google__protobuf__struct__fields_entry__descriptor)
        return true;
    if (d->n_fields != 2 || d->fields[0].id != 1 || d->fields[1].id != 2)
        return false;
    len = strlen(d->name);
    return strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0 &&
           len > 5 && strcmp(d->name + len - 5, "Entry") == 0;
}

#endif
