/*
 * pbjson_internal.h - private to the JSON <-> protobuf transcoder of
 * pbjson.h, which its users include alone. The transcoder's files:
 *
 *   pbjson_names.c          field names (proto and lowerCamel), map fields,
 *                           message layout: what the descriptors say
 *   pbjson_rfc3339.c        RFC 3339 text of Timestamps
 *   pbjson_decode.c         JSON -> message: the decoder's context (path,
 *                           errors, depth), messages, fields, arrays, maps
 *   pbjson_decode_scalar.c  JSON -> numbers, bools, enums, strings, bytes
 *   pbjson_decode_wkt.c     JSON -> Timestamp, Struct, ListValue, Value
 *   pbjson_encode.c         message -> JSON, all of it
 *
 * and codec/utf8.h for text, codec/base64.h for bytes. Everything is driven by protobuf-c
 * descriptors; the only types known by name are the well-known ones with a special JSON form
 * (Timestamp, Struct, Value, ListValue, NullValue).
 *
 * Invariants:
 * - Every message built here is one malloc'ed block set up with
 *   protobuf_c_message_init, and everything it points to (strings, arrays,
 *   bytes, submessages) is malloc'ed on its own. A repeated field's count is
 *   raised only once its element is complete, and a oneof case or has_ flag
 *   only once its value is stored. So protobuf_c_message_free_unpacked(msg,
 *   NULL) frees a message whole at every step, half-built ones included,
 *   which is how every failure path cleans up.
 * - JSON nesting (objects and arrays) never exceeds TSE_PBJSON_MAX_DEPTH in
 *   either direction, so recursion depth is bounded whatever the input.
 * - Decoding errors name the culprit by its path: proto field names (never
 *   the lowerCamel spelling the client may have used) joined by ".", map and
 *   Struct keys appended as ".key", array elements as "[i]".
 */
#ifndef TSE_CODEC_PBJSON_INTERNAL_H
#define TSE_CODEC_PBJSON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "codec/pbjson.h"

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int is_message(const ProtobufCFieldDescriptor *f,
                             const ProtobufCMessageDescriptor *desc)
{
    return f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == desc;
}

/* The member at offset (a field's offset or quantifier_offset) of msg. */
static inline void *member(void *msg, unsigned offset)
{
    return (char *)msg + offset;
}

static inline const void *cmember(const void *msg, unsigned offset)
{
    return (const char *)msg + offset;
}

/* ---- descriptors (pbjson_names.c) ---------------------------------------- */

/* The lowerCamel json_name of name in buf, or name itself if buf is short. */
const char *tse_pbj_json_name(const char *name, char *buf, size_t len);

/* The field of desc that key names by its proto or lowerCamel name, or NULL. */
const ProtobufCFieldDescriptor *tse_pbj_find_field(const ProtobufCMessageDescriptor *desc,
                                                   const char *key);

/* Whether f is a map field (a repeated field of protoc's entry type). */
int tse_pbj_is_map_field(const ProtobufCFieldDescriptor *f);

/* Size of one element of a repeated field, as protobuf-c lays arrays out. */
size_t tse_pbj_element_size(ProtobufCType t);

/* A new, initialized message of type desc, or NULL when out of memory.
 * Caller frees with protobuf_c_message_free_unpacked(msg, NULL). */
ProtobufCMessage *tse_pbj_new_message(const ProtobufCMessageDescriptor *desc);

/* ---- the decoder's context (pbjson_decode.c) ------------------------------ */

/* One decode: its flags, where its error goes, the nesting depth so far and
 * the path of the value being read. */
typedef struct decoder {
    unsigned flags;
    tse_error *err;
    int depth;
    size_t len;     /* strlen(path) */
    char path[256]; /* longer paths are cut; err->field is shorter anyway */
} decoder;

/* Appends ".name" (just "name" at the top), or "[i]"; each returns the length
 * that tse_pbj_path_pop goes back to. */
size_t tse_pbj_path_push(decoder *d, const char *name, size_t n);
size_t tse_pbj_path_push_index(decoder *d, size_t i);
void tse_pbj_path_pop(decoder *d, size_t old);

/* Sets d->err (TSE_INVALID, naming the current path), returns its status. */
tse_status tse_pbj_invalid(decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets d->err to TSE_NOMEM, returns TSE_NOMEM. */
tse_status tse_pbj_nomem(decoder *d);

/* Decodes j into a new message msg (initialized, owned by the caller). */
typedef tse_status (*tse_pbj_fill)(decoder *d, const json_t *j, ProtobufCMessage *msg);

/* A new message of desc from j, the one way every message is read: an object
 * of fields, or a well-known type's own JSON form. On failure *out is
 * untouched and d->err says why. */
tse_status tse_pbj_decode_message(decoder *d, const json_t *j,
                                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

/* ---- scalars (pbjson_decode_scalar.c) ------------------------------------- */

/* The .proto name of type t, for error messages. */
const char *tse_pbj_type_name(ProtobufCType t);

/* Parses -?[0-9]+ as sign and magnitude; 0 when malformed or >= 2^64. */
int tse_pbj_parse_integer_text(const char *s, int *neg, uint64_t *mag);

/* Stores sign+magnitude as integer type t at dst; -1 when out of range. */
int tse_pbj_store_integer(ProtobufCType t, int neg, uint64_t mag, void *dst);

/* A malloc'ed copy of the len bytes at s into *dst; NUL inside is invalid. */
tse_status tse_pbj_copy_string(decoder *d, const char *s, size_t len, char **dst);

/* Decodes a non-message value of field f's type into dst. */
tse_status tse_pbj_decode_scalar(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                 void *dst);

/* ---- well-known types (pbjson_decode_wkt.c) -------------------------------- */

/* Builds a new Timestamp from j into *out; on failure *out is untouched
 * and d->err says why. */
tse_status tse_pbj_decode_timestamp(decoder *d, const json_t *j, ProtobufCMessage **out);

/* How desc reads from JSON when it is Struct, ListValue or Value: its shape
 * (JSON_OBJECT, JSON_ARRAY, or -1: any value, no nesting level) and its
 * fill; nothing is set for any other type. */
void tse_pbj_wkt_form(const ProtobufCMessageDescriptor *desc, int *shape, tse_pbj_fill *fill);

#endif
