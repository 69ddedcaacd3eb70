/*
 * pbjson_decode_wkt.c - JSON -> the well-known types with a JSON form of
 * their own: Timestamp (an RFC 3339 string), Struct (any object), ListValue
 * (any array) and Value (any JSON value). Struct and ListValue count as a
 * nesting level each; Value adds none.
 */
#include <math.h>
#include <string.h>

#include "codec/pbjson_internal.h"
#include "common/alloc.h"

tse_status tse_pbj_decode_timestamp(decoder *d, const json_t *j, ProtobufCMessage **out)
{
    Google__Protobuf__Timestamp *ts;
    int64_t seconds;
    int32_t nanos;

    if (!json_is_string(j) || strlen(json_string_value(j)) != json_string_length(j) ||
        tse_rfc3339_parse(json_string_value(j), &seconds, &nanos) != TSE_OK)
        return tse_pbj_invalid(d, "must be an RFC 3339 time between years 0001 and 9999, "
                                  "e.g. \"2024-06-18T10:00:00Z\"");
    ts = (Google__Protobuf__Timestamp *)tse_pbj_new_message(
        &google__protobuf__timestamp__descriptor);
    if (ts == NULL)
        return tse_pbj_nomem(d);
    ts->seconds = seconds;
    ts->nanos = nanos;
    *out = &ts->base;
    return TSE_OK;
}

static tse_status decode_struct_entry(decoder *d, const char *key, size_t key_len, const json_t *j,
                                      Google__Protobuf__Struct__FieldsEntry **out)
{
    Google__Protobuf__Struct__FieldsEntry *e;
    tse_status st;

    e = (void *)tse_pbj_new_message(&google__protobuf__struct__fields_entry__descriptor);
    if (e == NULL)
        return tse_pbj_nomem(d);
    st = tse_pbj_copy_string(d, key, key_len, &e->key);
    if (st == TSE_OK)
        st = tse_pbj_decode_message(d, j, &google__protobuf__value__descriptor,
                                    (ProtobufCMessage **)&e->value);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(&e->base, NULL);
        return st;
    }
    *out = e;
    return TSE_OK;
}

static tse_status fill_struct(decoder *d, const json_t *j, ProtobufCMessage *msg)
{
    Google__Protobuf__Struct *s = (Google__Protobuf__Struct *)msg;
    size_t n = json_object_size(j), key_len, old;
    const char *key;
    json_t *v;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    s->fields = tse_calloc(n, sizeof(*s->fields));
    if (s->fields == NULL)
        return tse_pbj_nomem(d);
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        old = tse_pbj_path_push(d, key, key_len);
        st = decode_struct_entry(d, key, key_len, v, &s->fields[s->n_fields]);
        tse_pbj_path_pop(d, old);
        if (st != TSE_OK)
            return st;
        s->n_fields++;
    }
    return TSE_OK;
}

static tse_status fill_list(decoder *d, const json_t *j, ProtobufCMessage *msg)
{
    Google__Protobuf__ListValue *l = (Google__Protobuf__ListValue *)msg;
    size_t n = json_array_size(j), old;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    l->values = tse_calloc(n, sizeof(*l->values));
    if (l->values == NULL)
        return tse_pbj_nomem(d);
    for (size_t i = 0; i < n; i++) {
        old = tse_pbj_path_push_index(d, i);
        st = tse_pbj_decode_message(d, json_array_get(j, i), &google__protobuf__value__descriptor,
                                    (ProtobufCMessage **)&l->values[i]);
        tse_pbj_path_pop(d, old);
        if (st != TSE_OK)
            return st;
        l->n_values++;
    }
    return TSE_OK;
}

/* The Value kind each JSON type maps to. */
static Google__Protobuf__Value__KindCase value_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_NULL: return GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
    case JSON_TRUE:
    case JSON_FALSE: return GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
    case JSON_INTEGER:
    case JSON_REAL: return GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    case JSON_STRING: return GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    case JSON_OBJECT: return GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    case JSON_ARRAY: return GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
    }
    return GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
}

static tse_status fill_value(decoder *d, const json_t *j, ProtobufCMessage *msg)
{
    Google__Protobuf__Value *v = (Google__Protobuf__Value *)msg;
    tse_status st = TSE_OK;

    switch (json_typeof(j)) {
    case JSON_NULL: v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE; break;
    case JSON_TRUE:
    case JSON_FALSE: v->bool_value = json_is_true(j); break;
    case JSON_INTEGER: v->number_value = (double)json_integer_value(j); break;
    case JSON_REAL:
        v->number_value = json_real_value(j);
        if (!isfinite(v->number_value))
            return tse_pbj_invalid(d, "must be a finite number");
        break;
    case JSON_STRING:
        st = tse_pbj_copy_string(d, json_string_value(j), json_string_length(j), &v->string_value);
        break;
    case JSON_OBJECT:
        st = tse_pbj_decode_message(d, j, &google__protobuf__struct__descriptor,
                                    (ProtobufCMessage **)&v->struct_value);
        break;
    case JSON_ARRAY:
        st = tse_pbj_decode_message(d, j, &google__protobuf__list_value__descriptor,
                                    (ProtobufCMessage **)&v->list_value);
        break;
    }
    /* Set last: free_unpacked follows the case into the union. */
    if (st == TSE_OK)
        v->kind_case = value_kind(j);
    return st;
}

static const struct wkt_form {
    const ProtobufCMessageDescriptor *desc;
    int shape;
    tse_pbj_fill fill;
} wkt_forms[] = {
    {&google__protobuf__struct__descriptor, JSON_OBJECT, fill_struct},
    {&google__protobuf__list_value__descriptor, JSON_ARRAY, fill_list},
    {&google__protobuf__value__descriptor, -1, fill_value},
};

void tse_pbj_wkt_form(const ProtobufCMessageDescriptor *desc, int *shape, tse_pbj_fill *fill)
{
    for (size_t i = 0; i < sizeof(wkt_forms) / sizeof(wkt_forms[0]); i++) {
        if (wkt_forms[i].desc == desc) {
            *shape = wkt_forms[i].shape;
            *fill = wkt_forms[i].fill;
        }
    }
}
