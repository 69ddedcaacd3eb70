/*
 * pbjson_names.c - what the transcoder reads off protobuf-c descriptors in
 * both directions: a field's proto and lowerCamel names, whether a repeated
 * field is a map, and how messages and their arrays are laid out.
 */
#include <string.h>

#include "codec/pbjson_internal.h"
#include "common/alloc.h"

/* ===========================================================================
 * Field names
 * ======================================================================== */

/*
 * Matches text against name with protoc's camel-casing (drop each '_' and
 * upper-case the letter after it; upper_first also upper-cases the first).
 * Returns the rest of text after the match, or NULL when it differs.
 */
static const char *camel_prefix(const char *name, const char *text, int upper_first)
{
    int upper = upper_first;

    for (; *name != '\0'; name++) {
        char c = *name;

        if (c == '_') {
            upper = 1;
            continue;
        }
        if (upper && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        upper = 0;
        if (*text++ != c)
            return NULL;
    }
    return text;
}

const char *tse_pbj_json_name(const char *name, char *buf, size_t len)
{
    size_t n = 0;
    int upper = 0;

    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '_') {
            upper = 1;
            continue;
        }
        if (n + 1 >= len)
            return name;
        buf[n++] = (upper && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
        upper = 0;
    }
    buf[n] = '\0';
    return buf;
}

const ProtobufCFieldDescriptor *tse_pbj_find_field(const ProtobufCMessageDescriptor *desc,
                                                   const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
    const char *rest;

    if (f != NULL)
        return f;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        rest = camel_prefix(desc->fields[i].name, key, 0);
        if (rest != NULL && *rest == '\0')
            return &desc->fields[i];
    }
    return NULL;
}

/*
 * protobuf-c has no map flag: a map is a repeated message whose type is the
 * synthetic entry protoc makes, "<CamelFieldName>Entry" with key = 1 and
 * value = 2. All four must hold, so an ordinary message cannot pass for one.
 */
int tse_pbj_is_map_field(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *e = f->descriptor;
    const char *rest;

    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        !tse_pbjson_is_map_entry(e))
        return 0;
    rest = camel_prefix(f->name, e->short_name, 1);
    return rest != NULL && strcmp(rest, "Entry") == 0;
}

/* ===========================================================================
 * Message layout
 * ======================================================================== */

size_t tse_pbj_element_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return sizeof(uint32_t);
    }
}

ProtobufCMessage *tse_pbj_new_message(const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = tse_malloc(desc->sizeof_message);

    if (m != NULL)
        protobuf_c_message_init(desc, m);
    return m;
}
