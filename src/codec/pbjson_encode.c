/*
 * pbjson_encode.c - protobuf -> JSON: scalars, messages and their fields,
 * maps and arrays, the well-known types, and the tse_pbjson_from_* entry
 * points. Strings from the wire are written as valid UTF-8 whatever they
 * hold (invalid bytes become U+FFFD), since JSON text must be.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/base64.h"
#include "codec/pbjson_internal.h"
#include "codec/utf8.h"
#include "common/alloc.h"

/* Doubles in this range are integers exactly and print as such. */
#define MAX_EXACT_INT 9007199254740992.0

/* ===========================================================================
 * Scalars
 * ======================================================================== */

typedef struct encoder {
    unsigned flags;
    int depth;
} encoder;

static int enc_enter(encoder *e)
{
    if (e->depth >= TSE_PBJSON_MAX_DEPTH)
        return -1;
    e->depth++;
    return 0;
}

/* A JSON string of s, repairing invalid UTF-8 that the wire may carry. */
static json_t *string_json(const char *s)
{
    char *fixed;
    json_t *j;

    if (s == NULL)
        return json_string("");
    if (tse_utf8_valid(s))
        return json_string_nocheck(s);
    fixed = tse_utf8_repair(s);
    j = fixed != NULL ? json_string_nocheck(fixed) : NULL;
    tse_free(fixed);
    return j;
}

/* Sets obj[key] = v (stealing v), repairing invalid UTF-8 in key. */
static int set_key(json_t *obj, const char *key, json_t *v)
{
    char *fixed;
    int rc;

    if (v == NULL)
        return -1;
    if (tse_utf8_valid(key))
        return json_object_set_new_nocheck(obj, key, v);
    fixed = tse_utf8_repair(key);
    if (fixed == NULL) {
        json_decref(v);
        return -1;
    }
    rc = json_object_set_new_nocheck(obj, fixed, v);
    tse_free(fixed);
    return rc;
}

/*
 * A finite number: integral values within 2^53 become JSON integers, so
 * 3 goes out as 3 rather than 3.0 (as JavaScript would print it).
 */
static json_t *finite_json(double v)
{
    if (v == floor(v) && fabs(v) <= MAX_EXACT_INT && !(v == 0 && signbit(v)))
        return json_integer((json_int_t)v);
    return json_real(v);
}

static json_t *double_json(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    return finite_json(v);
}

/* A float as the shortest decimal that reads back as the same float. */
static json_t *float_json(float f)
{
    char buf[32];

    if (!isfinite(f))
        return double_json(f);
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return finite_json(strtod(buf, NULL));
}

static json_t *bytes_json(const ProtobufCBinaryData *b)
{
    char *text = tse_base64_encode(b->data, b->data != NULL ? b->len : 0);
    json_t *j = text != NULL ? json_string_nocheck(text) : NULL;

    tse_free(text);
    return j;
}

static json_t *enum_json(const ProtobufCEnumDescriptor *ed, int v)
{
    const ProtobufCEnumValue *ev;

    if (ed == &google__protobuf__null_value__descriptor)
        return json_null();
    ev = protobuf_c_enum_descriptor_get_value(ed, v);
    return ev != NULL ? json_string(ev->name) : json_integer(v);
}

static json_t *int64_json(const void *p, int is_signed)
{
    char buf[32];

    if (is_signed)
        snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *)p);
    else
        snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *)p);
    return json_string(buf);
}

/* The JSON form of the non-message value of f's type at p. */
static json_t *encode_scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return int64_json(p, 1);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return int64_json(p, 0);
    case PROTOBUF_C_TYPE_FLOAT: return float_json(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return double_json(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: return enum_json(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: return string_json(*(char *const *)p);
    case PROTOBUF_C_TYPE_BYTES: return bytes_json(p);
    case PROTOBUF_C_TYPE_MESSAGE: break;
    }
    return NULL;
}

/* True when the proto3 value of type t at p is its type's default. */
static int is_default(ProtobufCType t, const void *p)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_BOOL: return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;

        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: return *(void *const *)p == NULL;
    default: return *(const uint32_t *)p == 0;
    }
}

/* ===========================================================================
 * Messages
 * ======================================================================== */

static json_t *encode_message(encoder *e, const ProtobufCMessage *m,
                              const ProtobufCMessageDescriptor *desc);
static json_t *encode_value(encoder *e, const Google__Protobuf__Value *v);

static json_t *encode_struct(encoder *e, const Google__Protobuf__Struct *s)
{
    json_t *obj;

    if (enc_enter(e) != 0)
        return NULL;
    obj = json_object();
    for (size_t i = 0; obj != NULL && s != NULL && i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *fe = s->fields[i];

        if (fe == NULL)
            continue;
        if (set_key(obj, fe->key != NULL ? fe->key : "", encode_value(e, fe->value)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    e->depth--;
    return obj;
}

static json_t *encode_list(encoder *e, const Google__Protobuf__ListValue *l)
{
    json_t *arr;

    if (enc_enter(e) != 0)
        return NULL;
    arr = json_array();
    for (size_t i = 0; arr != NULL && l != NULL && i < l->n_values; i++) {
        if (json_array_append_new(arr, encode_value(e, l->values[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    e->depth--;
    return arr;
}

/* JSON has no NaN or infinity; a Value holding one goes out as null. */
static json_t *encode_value(encoder *e, const Google__Protobuf__Value *v)
{
    if (v == NULL)
        return json_null();
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return isfinite(v->number_value) ? finite_json(v->number_value) : json_null();
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: return string_json(v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE: return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE: return encode_struct(e, v->struct_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: return encode_list(e, v->list_value);
    default: return json_null();
    }
}

static json_t *encode_timestamp(const Google__Protobuf__Timestamp *ts)
{
    char buf[40];

    tse_rfc3339_format(ts->seconds, ts->nanos, buf, sizeof(buf));
    return json_string(buf);
}

/* The value of singular field f of m (or of a map entry's key/value). */
static json_t *encode_singular(encoder *e, const ProtobufCMessage *m,
                               const ProtobufCFieldDescriptor *f)
{
    const void *p = cmember(m, f->offset);

    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return encode_message(e, *(const ProtobufCMessage *const *)p, f->descriptor);
    return encode_scalar(f, p);
}

/* A map key as JSON object key text, in buf unless it is a string. */
static const char *map_key_text(const ProtobufCMessage *entry, char *buf, size_t len)
{
    const ProtobufCFieldDescriptor *kf = &entry->descriptor->fields[0];
    const void *p = cmember(entry, kf->offset);

    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: return *(char *const *)p != NULL ? *(char *const *)p : "";
    case PROTOBUF_C_TYPE_BOOL: return *(const protobuf_c_boolean *)p ? "true" : "false";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: snprintf(buf, len, "%" PRId64, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: snprintf(buf, len, "%" PRIu32, *(const uint32_t *)p); break;
    default: snprintf(buf, len, "%" PRId32, *(const int32_t *)p); break;
    }
    return buf;
}

static json_t *encode_map(encoder *e, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)cmember(m, f->quantifier_offset);
    ProtobufCMessage *const *entries = *(ProtobufCMessage *const *const *)cmember(m, f->offset);
    char buf[32];
    json_t *obj;

    if (enc_enter(e) != 0)
        return NULL;
    obj = json_object();
    for (size_t i = 0; obj != NULL && i < n; i++) {
        const ProtobufCMessage *en = entries[i];

        if (en == NULL)
            continue;
        if (set_key(obj, map_key_text(en, buf, sizeof(buf)),
                    encode_singular(e, en, &en->descriptor->fields[1])) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    e->depth--;
    return obj;
}

static json_t *encode_array(encoder *e, const ProtobufCMessage *m,
                            const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)cmember(m, f->quantifier_offset),
           size = tse_pbj_element_size(f->type);
    const char *arr = *(const char *const *)cmember(m, f->offset);
    json_t *out, *v;

    if (enc_enter(e) != 0)
        return NULL;
    out = json_array();
    for (size_t i = 0; out != NULL && i < n; i++) {
        const void *p = arr + i * size;

        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            v = encode_message(e, *(const ProtobufCMessage *const *)p, f->descriptor);
        else
            v = encode_scalar(f, p);
        if (json_array_append_new(out, v) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    e->depth--;
    return out;
}

/* Whether singular, non-oneof field f of m holds a value worth writing. */
static int is_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = cmember(m, f->offset);

    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED: return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_STRING)
            return *(char *const *)p != NULL && *(char *const *)p != f->default_value;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            return *(void *const *)p != NULL;
        return *(const protobuf_c_boolean *)cmember(m, f->quantifier_offset);
    default: return !is_default(f->type, p);
    }
}

/*
 * The JSON value of field f of m, or NULL with *skip set when f is left
 * out: oneof members not chosen, and defaults unless EMIT_DEFAULTS (which
 * writes an unset submessage as null).
 */
static json_t *encode_field(encoder *e, const ProtobufCMessage *m,
                            const ProtobufCFieldDescriptor *f, int *skip)
{
    int emit_all = (e->flags & TSE_PBJSON_EMIT_DEFAULTS) != 0;

    *skip = 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)cmember(m, f->quantifier_offset) == f->id)
            return encode_singular(e, m, f);
    } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (emit_all || *(const size_t *)cmember(m, f->quantifier_offset) > 0)
            return tse_pbj_is_map_field(f) ? encode_map(e, m, f) : encode_array(e, m, f);
    } else if (is_present(m, f)) {
        return encode_singular(e, m, f);
    } else if (emit_all) {
        return f->type == PROTOBUF_C_TYPE_MESSAGE ? json_null() : encode_singular(e, m, f);
    }
    *skip = 1;
    return NULL;
}

static json_t *encode_object(encoder *e, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    char name[128];
    json_t *obj;

    if (enc_enter(e) != 0)
        return NULL;
    obj = json_object();
    for (unsigned i = 0; obj != NULL && i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        int skip;
        json_t *v = encode_field(e, m, f, &skip);
        const char *key = f->name;

        if (skip)
            continue;
        if (e->flags & TSE_PBJSON_CAMEL_CASE)
            key = tse_pbj_json_name(f->name, name, sizeof(name));
        if (v == NULL || json_object_set_new(obj, key, v) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    e->depth--;
    return obj;
}

/* A submessage that is chosen but absent goes out as its default. */
static json_t *encode_default(encoder *e, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = tse_pbj_new_message(desc);
    json_t *j;

    if (m == NULL)
        return NULL;
    j = encode_message(e, m, desc);
    protobuf_c_message_free_unpacked(m, NULL);
    return j;
}

static json_t *encode_message(encoder *e, const ProtobufCMessage *m,
                              const ProtobufCMessageDescriptor *desc)
{
    if (m == NULL)
        return encode_default(e, desc);
    desc = m->descriptor;
    if (desc == &google__protobuf__timestamp__descriptor)
        return encode_timestamp((const Google__Protobuf__Timestamp *)m);
    if (desc == &google__protobuf__struct__descriptor)
        return encode_struct(e, (const Google__Protobuf__Struct *)m);
    if (desc == &google__protobuf__list_value__descriptor)
        return encode_list(e, (const Google__Protobuf__ListValue *)m);
    if (desc == &google__protobuf__value__descriptor)
        return encode_value(e, (const Google__Protobuf__Value *)m);
    return encode_object(e, m);
}

json_t *tse_pbjson_from_message(const ProtobufCMessage *msg, unsigned flags)
{
    encoder e = {flags, 0};

    if (msg == NULL)
        return NULL;
    return encode_message(&e, msg, msg->descriptor);
}

json_t *tse_pbjson_from_struct(const Google__Protobuf__Struct *s)
{
    encoder e = {0, 0};

    return encode_struct(&e, s);
}

json_t *tse_pbjson_from_value(const Google__Protobuf__Value *v)
{
    encoder e = {0, 0};

    return encode_value(&e, v);
}
