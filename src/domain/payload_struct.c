/*
 * payload_struct.c - a Struct payload straight into a catalog message when
 * it has the common shape (string fields given by their proto names); see
 * payload_struct.h for what is declined and why declining keeps behaviour.
 *
 * Invariant: a message this file returns is complete and owns every string
 * and array in it (malloc'd), so protobuf_c_message_free_unpacked frees it;
 * a message abandoned part-way is freed the same way before declining.
 */
#include "domain/payload_struct.h"

#include <stdint.h>

#include "codec/utf8.h"
#include "common/alloc.h"

#define KIND_STRING GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE
#define KIND_LIST   GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE

/* The general path repairs invalid UTF-8 rather than refusing it: decline. */
static const char *plain_string(const Google__Protobuf__Value *v)
{
    if (v == NULL || v->kind_case != KIND_STRING || v->string_value == NULL)
        return NULL;
    return tse_utf8_valid(v->string_value) ? v->string_value : NULL;
}

/* A list of strings into repeated string field f: 0 done, -1 declined, -2 out of memory. */
static int fill_strings(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                        const Google__Protobuf__Value *v)
{
    const Google__Protobuf__ListValue *l;
    size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
    char **arr;

    if (v == NULL || v->kind_case != KIND_LIST || v->list_value == NULL)
        return -1;
    l = v->list_value;
    for (size_t i = 0; i < l->n_values; i++) {
        if (plain_string(l->values[i]) == NULL)
            return -1;
    }
    if (l->n_values == 0)
        return 0;
    arr = tse_calloc(l->n_values, sizeof(*arr));
    if (arr == NULL)
        return -2;
    *(char ***)((char *)msg + f->offset) = arr;
    for (size_t i = 0; i < l->n_values; i++) {
        arr[i] = tse_strdup(l->values[i]->string_value);
        if (arr[i] == NULL)
            return -2;
        (*count)++;
    }
    return 0;
}

/* One Struct entry into msg: 0 done, -1 declined, -2 out of memory. */
static int fill_entry(ProtobufCMessage *msg, const Google__Protobuf__Struct__FieldsEntry *fe,
                      uint64_t *seen)
{
    const ProtobufCFieldDescriptor *f;
    const char *s;
    uint64_t bit;

    if (fe == NULL || fe->key == NULL)
        return -1;
    f = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, fe->key);
    if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return -1;
    /* A key given twice: the JSON tree keeps one of them; leave it to it. */
    bit = UINT64_C(1) << (unsigned)(f - msg->descriptor->fields);
    if (*seen & bit)
        return -1;
    *seen |= bit;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return fill_strings(msg, f, fe->value);
    s = plain_string(fe->value);
    if (s == NULL)
        return -1;
    s = tse_strdup(s);
    if (s == NULL)
        return -2;
    *(const char **)((char *)msg + f->offset) = s;
    return 0;
}

tse_status tse_payload_struct_fast(const Google__Protobuf__Struct *s,
                                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    ProtobufCMessage *msg;
    uint64_t seen = 0;
    int rc = 0;

    *out = NULL;
    if (s == NULL || desc->n_fields > 64)
        return TSE_OK;
    msg = tse_malloc(desc->sizeof_message);
    if (msg == NULL)
        return TSE_NOMEM;
    protobuf_c_message_init(desc, msg);
    for (size_t i = 0; rc == 0 && i < s->n_fields; i++)
        rc = fill_entry(msg, s->fields[i], &seen);
    if (rc != 0) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc == -2 ? TSE_NOMEM : TSE_OK;
    }
    *out = msg;
    return TSE_OK;
}
