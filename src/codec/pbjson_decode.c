/*
 * pbjson_decode.c - JSON -> protobuf: the decoder's context (the path of
 * the value being read, errors naming it, the nesting depth), messages and
 * their fields, repeated fields and maps, and the tse_pbjson_to_* entry
 * points. Scalars are read in pbjson_decode_scalar.c, the well-known types
 * in pbjson_decode_wkt.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/pbjson_internal.h"
#include "common/alloc.h"

/* ===========================================================================
 * Context: paths, errors, depth
 * ======================================================================== */

static void path_append(decoder *d, const char *s, size_t n)
{
    size_t room = sizeof(d->path) - 1 - d->len;

    if (n > room)
        n = room;
    memcpy(d->path + d->len, s, n);
    d->len += n;
    d->path[d->len] = '\0';
}

size_t tse_pbj_path_push(decoder *d, const char *name, size_t n)
{
    size_t old = d->len;

    if (old > 0)
        path_append(d, ".", 1);
    path_append(d, name, n);
    return old;
}

size_t tse_pbj_path_push_index(decoder *d, size_t i)
{
    char buf[32];
    size_t old = d->len;
    int n = snprintf(buf, sizeof(buf), "[%zu]", i);

    path_append(d, buf, (size_t)n);
    return old;
}

void tse_pbj_path_pop(decoder *d, size_t old)
{
    d->len = old;
    d->path[old] = '\0';
}

tse_status tse_pbj_invalid(decoder *d, const char *fmt, ...)
{
    char msg[TSE_ERROR_MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return tse_error_set(d->err, TSE_INVALID, d->path, "%s", msg);
}

tse_status tse_pbj_nomem(decoder *d)
{
    return tse_error_set(d->err, TSE_NOMEM, d->path, "out of memory");
}

/* Enters one more JSON level, j, which must be of shape (JSON_OBJECT or
 * JSON_ARRAY), failing beyond TSE_PBJSON_MAX_DEPTH; leave goes back out. */
static tse_status enter(decoder *d, const json_t *j, json_type shape)
{
    if (json_typeof(j) != shape)
        return tse_pbj_invalid(d, shape == JSON_OBJECT ? "must be a JSON object"
                                                       : "must be a JSON array");
    if (d->depth >= TSE_PBJSON_MAX_DEPTH)
        return tse_pbj_invalid(d, "nests deeper than %d levels", TSE_PBJSON_MAX_DEPTH);
    d->depth++;
    return TSE_OK;
}

static void leave(decoder *d)
{
    d->depth--;
}

/* ===========================================================================
 * Messages, fields, repeated fields and maps
 * ======================================================================== */

/* JSON null sets a Value (or NullValue) field instead of leaving it unset. */
static int null_is_value(const ProtobufCFieldDescriptor *f)
{
    return is_message(f, &google__protobuf__value__descriptor) ||
           (f->type == PROTOBUF_C_TYPE_ENUM &&
            f->descriptor == &google__protobuf__null_value__descriptor);
}

/* Records that singular field f of msg now holds a value. */
static void mark_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)member(msg, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)member(msg, f->quantifier_offset) = 1;
}

/* Decodes one element or singular value of f's type into slot. */
static tse_status decode_into(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                              void *slot)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return tse_pbj_decode_message(d, j, f->descriptor, slot);
    return tse_pbj_decode_scalar(d, f, j, slot);
}

static tse_status decode_singular(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                  ProtobufCMessage *msg)
{
    tse_status st = decode_into(d, f, j, member(msg, f->offset));

    if (st == TSE_OK)
        mark_present(msg, f);
    return st;
}

static tse_status fill_array(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                             ProtobufCMessage *msg)
{
    size_t n = json_array_size(j), size = tse_pbj_element_size(f->type), old;
    size_t *count = member(msg, f->quantifier_offset);
    char *arr;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    arr = tse_calloc(n, size);
    if (arr == NULL)
        return tse_pbj_nomem(d);
    *(void **)member(msg, f->offset) = arr;
    for (size_t i = 0; i < n; i++) {
        const json_t *el = json_array_get(j, i);

        old = tse_pbj_path_push_index(d, i);
        if (json_is_null(el) && !null_is_value(f))
            st = tse_pbj_invalid(d, "must not be null");
        else
            st = decode_into(d, f, el, arr + i * size);
        tse_pbj_path_pop(d, old);
        if (st != TSE_OK)
            return st;
        (*count)++;
    }
    return TSE_OK;
}

static tse_status decode_map_key(decoder *d, const ProtobufCFieldDescriptor *kf, const char *key,
                                 size_t key_len, ProtobufCMessage *entry)
{
    void *dst = member(entry, kf->offset);
    uint64_t mag;
    int neg;

    if (kf->type == PROTOBUF_C_TYPE_STRING)
        return tse_pbj_copy_string(d, key, key_len, dst);
    if (strlen(key) != key_len)
        return tse_pbj_invalid(d, "map key must not contain NUL characters");
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
            return tse_pbj_invalid(d, "map key must be \"true\" or \"false\"");
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return TSE_OK;
    }
    if (!tse_pbj_parse_integer_text(key, &neg, &mag) ||
        tse_pbj_store_integer(kf->type, neg, mag, dst) != 0)
        return tse_pbj_invalid(d, "map key must be a %s in decimal", tse_pbj_type_name(kf->type));
    return TSE_OK;
}

static tse_status decode_map_entry(decoder *d, const ProtobufCMessageDescriptor *ed,
                                   const char *key, size_t key_len, const json_t *j,
                                   ProtobufCMessage **out)
{
    const ProtobufCFieldDescriptor *vf = &ed->fields[1];
    ProtobufCMessage *e = tse_pbj_new_message(ed);
    tse_status st;

    if (e == NULL)
        return tse_pbj_nomem(d);
    st = decode_map_key(d, &ed->fields[0], key, key_len, e);
    if (st == TSE_OK && json_is_null(j) && !null_is_value(vf))
        st = tse_pbj_invalid(d, "must not be null");
    else if (st == TSE_OK)
        st = decode_singular(d, vf, j, e);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(e, NULL);
        return st;
    }
    *out = e;
    return TSE_OK;
}

static tse_status fill_map(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                           ProtobufCMessage *msg)
{
    size_t n = json_object_size(j), key_len, old;
    size_t *count = member(msg, f->quantifier_offset);
    ProtobufCMessage **entries;
    const char *key;
    json_t *v;
    tse_status st;

    if (n == 0)
        return TSE_OK;
    entries = tse_calloc(n, sizeof(*entries));
    if (entries == NULL)
        return tse_pbj_nomem(d);
    *(ProtobufCMessage ***)member(msg, f->offset) = entries;
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        old = tse_pbj_path_push(d, key, key_len);
        st = decode_map_entry(d, f->descriptor, key, key_len, v, &entries[*count]);
        tse_pbj_path_pop(d, old);
        if (st != TSE_OK)
            return st;
        (*count)++;
    }
    return TSE_OK;
}

static tse_status decode_repeated(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                                  ProtobufCMessage *msg)
{
    int map = tse_pbj_is_map_field(f);
    tse_status st = enter(d, j, map ? JSON_OBJECT : JSON_ARRAY);

    if (st != TSE_OK)
        return st;
    st = map ? fill_map(d, f, j, msg) : fill_array(d, f, j, msg);
    leave(d);
    return st;
}

/* The name of the oneof member already set in msg, for f's oneof. */
static const char *oneof_member_set(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    uint32_t set = *(const uint32_t *)cmember(msg, f->quantifier_offset);

    for (unsigned i = 0; set != 0 && i < desc->n_fields; i++) {
        if (desc->fields[i].id == set)
            return desc->fields[i].name;
    }
    return NULL;
}

/* Decodes the value j of field f; the path already names f. */
static tse_status decode_field(decoder *d, const ProtobufCFieldDescriptor *f, const json_t *j,
                               ProtobufCMessage *msg)
{
    const char *other;

    if (json_is_null(j) && (f->label == PROTOBUF_C_LABEL_REPEATED || !null_is_value(f)))
        return TSE_OK; /* null means unset */
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return decode_repeated(d, f, j, msg);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        other = oneof_member_set(msg, f);
        if (other != NULL)
            return tse_pbj_invalid(d, "cannot be set together with \"%s\" (one of them only)",
                                   other);
    }
    return decode_singular(d, f, j, msg);
}

/* Decodes one key of a message object; seen[i] marks fields already given. */
static tse_status decode_member(decoder *d, const char *key, size_t key_len, const json_t *j,
                                ProtobufCMessage *msg, unsigned char *seen)
{
    const ProtobufCFieldDescriptor *f = NULL;
    size_t old;
    tse_status st;

    if (strlen(key) == key_len)
        f = tse_pbj_find_field(msg->descriptor, key);
    if (f == NULL && (d->flags & TSE_PBJSON_IGNORE_UNKNOWN))
        return TSE_OK;
    old =
        tse_pbj_path_push(d, f != NULL ? f->name : key, f != NULL ? strlen(f->name) : strlen(key));
    if (f == NULL)
        st = tse_pbj_invalid(d, "unknown field \"%.64s\" in %s", key, msg->descriptor->name);
    else if (seen[f - msg->descriptor->fields]++)
        st = tse_pbj_invalid(d, "is given twice (by its proto and its JSON name)");
    else
        st = decode_field(d, f, j, msg);
    tse_pbj_path_pop(d, old);
    return st;
}

static tse_status fill_message(decoder *d, const json_t *j, ProtobufCMessage *msg)
{
    unsigned char *seen = tse_calloc(msg->descriptor->n_fields + 1u, 1);
    size_t key_len;
    const char *key;
    json_t *v;
    tse_status st = TSE_OK;

    if (seen == NULL)
        return tse_pbj_nomem(d);
    json_object_keylen_foreach((json_t *)j, key, key_len, v)
    {
        st = decode_member(d, key, key_len, v, msg, seen);
        if (st != TSE_OK)
            break;
    }
    tse_free(seen);
    return st;
}

tse_status tse_pbj_decode_message(decoder *d, const json_t *j,
                                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    int shape = JSON_OBJECT;
    tse_pbj_fill fill = fill_message;
    ProtobufCMessage *msg;
    tse_status st;

    if (desc == &google__protobuf__timestamp__descriptor)
        return tse_pbj_decode_timestamp(d, j, out);
    tse_pbj_wkt_form(desc, &shape, &fill);
    if (shape >= 0 && (st = enter(d, j, (json_type)shape)) != TSE_OK)
        return st;
    msg = tse_pbj_new_message(desc);
    st = msg == NULL ? tse_pbj_nomem(d) : fill(d, j, msg);
    if (shape >= 0)
        leave(d);
    if (st != TSE_OK) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return st;
    }
    *out = msg;
    return TSE_OK;
}

static void decoder_init(decoder *d, unsigned flags, tse_error *err)
{
    d->flags = flags;
    d->err = err;
    d->depth = 0;
    d->len = 0;
    d->path[0] = '\0';
    tse_error_clear(err);
}

tse_status tse_pbjson_to_message(const json_t *json, const ProtobufCMessageDescriptor *desc,
                                 unsigned flags, ProtobufCMessage **out, tse_error *err)
{
    decoder d;

    decoder_init(&d, flags, err);
    if (json == NULL || desc == NULL || out == NULL)
        return tse_error_set(err, TSE_INVALID, NULL, "no JSON or no message type given");
    return tse_pbj_decode_message(&d, json, desc, out);
}

tse_status tse_pbjson_to_struct(const json_t *obj, Google__Protobuf__Struct **out, tse_error *err)
{
    return tse_pbjson_to_message(obj, &google__protobuf__struct__descriptor, 0,
                                 (ProtobufCMessage **)out, err);
}

tse_status tse_pbjson_to_value(const json_t *json, Google__Protobuf__Value **out, tse_error *err)
{
    return tse_pbjson_to_message(json, &google__protobuf__value__descriptor, 0,
                                 (ProtobufCMessage **)out, err);
}
