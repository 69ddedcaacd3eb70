/*
 * text.c - checks every string of a message, at any depth, for valid UTF-8,
 * walking the protobuf-c descriptors. See tse_message_check_text in
 * validate.h.
 *
 * protobuf-c does not check UTF-8 when it unpacks, and jansson refuses to
 * build JSON strings from invalid UTF-8, so a payload that got past the wire
 * could not be shown as JSON later (REST bridge, lenient `data` fallback).
 * Checking once, up front, names the culprit instead of failing far away.
 *
 * Paths are built in one caller-owned buffer that each level extends and
 * then truncates back to where it was, so the walk allocates nothing.
 */
#include "domain/validate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec/pbjson.h"
#include "google/protobuf/struct.pb-c.h"

#define PATH_MAX_LEN TSE_ERROR_FIELD_MAX

typedef struct walk {
    char path[PATH_MAX_LEN];
    int depth; /* JSON nesting, counted as the codec counts it */
    tse_error *err;
} walk;

static tse_status walk_message(walk *w, const ProtobufCMessage *msg);

/* ---- paths ------------------------------------------------------------------ */

/* Appends ".name" (or "name" at the root); returns the length to restore.
 * Runs for every node of every event: plain copies, no formatting. */
static size_t push_name(walk *w, const char *name)
{
    size_t len = strlen(w->path), room = sizeof(w->path) - 1 - len, n = strlen(name);

    if (len > 0 && room > 0) {
        w->path[len] = '.';
        room--;
        if (n > room)
            n = room;
        memcpy(w->path + len + 1, name, n);
        w->path[len + 1 + n] = '\0';
    } else {
        if (n > room)
            n = room;
        memcpy(w->path + len, name, n);
        w->path[len + n] = '\0';
    }
    if (n < strlen(name))
        tse_utf8_trim(w->path); /* a long key was cut, maybe mid-character */
    return len;
}

static size_t push_index(walk *w, size_t i)
{
    size_t len = strlen(w->path);

    snprintf(w->path + len, sizeof(w->path) - len, "[%zu]", i);
    return len;
}

static void pop(walk *w, size_t len)
{
    w->path[len] = '\0';
}

static tse_status fail(walk *w, const char *problem)
{
    tse_error_set(w->err, TSE_INVALID, w->path, "%s %s", w->path[0] ? w->path : "value", problem);
    if (w->err != NULL)
        tse_utf8_trim(w->err->message);
    return TSE_INVALID;
}

static tse_status check_string(walk *w, const char *s)
{
    return tse_utf8_valid(s) ? TSE_OK : fail(w, "must be valid UTF-8");
}

/*
 * Objects, arrays and maps each add a JSON level. The bound is the codec's,
 * so anything that passes here can be shown as JSON, and the walk's own
 * recursion stays bounded whatever arrived on the wire.
 */
static tse_status enter(walk *w)
{
    if (w->depth >= TSE_PBJSON_MAX_DEPTH)
        return tse_error_set(w->err, TSE_INVALID, w->path, "%s nests deeper than %d levels",
                             w->path[0] ? w->path : "value", TSE_PBJSON_MAX_DEPTH);
    w->depth++;
    return TSE_OK;
}

/* ---- well-known JSON types -------------------------------------------------- */

static tse_status walk_value(walk *w, const Google__Protobuf__Value *v)
{
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        return isfinite(v->number_value) ? TSE_OK : fail(w, "must be a finite number");
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: return check_string(w, v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return v->struct_value ? walk_message(w, &v->struct_value->base) : TSE_OK;
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        return v->list_value ? walk_message(w, &v->list_value->base) : TSE_OK;
    default: return TSE_OK;
    }
}

static tse_status walk_list(walk *w, const Google__Protobuf__ListValue *l)
{
    tse_status st = enter(w);

    if (st != TSE_OK)
        return st;
    for (size_t i = 0; st == TSE_OK && i < l->n_values; i++) {
        size_t mark = push_index(w, i);
        st = l->values[i] ? walk_value(w, l->values[i]) : TSE_OK;
        if (st == TSE_OK)
            pop(w, mark);
    }
    w->depth--;
    return st;
}

/* ---- generic messages ------------------------------------------------------- */

static tse_status walk_element(walk *w, const ProtobufCFieldDescriptor *f, const void *p);

static tse_status walk_map_entry(walk *w, const ProtobufCMessage *entry)
{
    const ProtobufCFieldDescriptor *kf = &entry->descriptor->fields[0];
    const ProtobufCFieldDescriptor *vf = &entry->descriptor->fields[1];
    const char *base = (const char *)entry;
    size_t mark;
    tse_status st;

    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        const char *key = *(char *const *)(base + kf->offset);
        if (!tse_utf8_valid(key))
            return fail(w, "keys must be valid UTF-8");
        mark = push_name(w, key ? key : "");
    } else {
        mark = push_name(w, "value");
    }
    st = walk_element(w, vf, base + vf->offset);
    if (st == TSE_OK)
        pop(w, mark);
    return st;
}

/* One value of field f stored at p (a scalar slot or an array element). */
static tse_status walk_element(walk *w, const ProtobufCFieldDescriptor *f, const void *p)
{
    const ProtobufCMessage *sub;

    if (f->type == PROTOBUF_C_TYPE_STRING)
        return check_string(w, *(char *const *)p);
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
        return TSE_OK;
    sub = *(ProtobufCMessage *const *)p;
    if (sub == NULL)
        return TSE_OK;
    if (tse_pbjson_is_map_entry(sub->descriptor))
        return walk_map_entry(w, sub);
    return walk_message(w, sub);
}

static tse_status walk_repeated(walk *w, const ProtobufCFieldDescriptor *f, const char *base)
{
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    const char *arr = *(char *const *)(base + f->offset);
    size_t size = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE
                      ? sizeof(void *)
                      : 0;

    if (size == 0 || arr == NULL)
        return TSE_OK; /* numbers, bools, enums and bytes have no text to check */
    for (size_t i = 0; i < n; i++) {
        const void *p = arr + i * size;
        bool map = f->type == PROTOBUF_C_TYPE_MESSAGE && *(void *const *)p != NULL &&
                   tse_pbjson_is_map_entry((*(ProtobufCMessage *const *)p)->descriptor);
        /* Map entries name themselves by key; list elements by index. */
        size_t mark = map ? strlen(w->path) : push_index(w, i);
        tse_status st = walk_element(w, f, p);
        if (st != TSE_OK)
            return st;
        pop(w, mark);
    }
    return TSE_OK;
}

static tse_status walk_field(walk *w, const ProtobufCMessage *msg,
                             const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)msg;
    size_t mark;
    tse_status st;

    /* Only the member a oneof holds may be read. */
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(base + f->quantifier_offset) != f->id)
        return TSE_OK;
    /* Struct's one field is its map; JSON shows the map's keys directly. */
    mark = msg->descriptor == &google__protobuf__struct__descriptor ? strlen(w->path)
                                                                    : push_name(w, f->name);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        /* An array or a map; Struct's map is the Struct's own object. */
        bool level = msg->descriptor != &google__protobuf__struct__descriptor;
        if (level && enter(w) != TSE_OK)
            return TSE_INVALID;
        st = walk_repeated(w, f, base);
        w->depth -= level;
    } else {
        st = walk_element(w, f, base + f->offset);
    }
    if (st == TSE_OK)
        pop(w, mark);
    return st;
}

static tse_status walk_message(walk *w, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    tse_status st;

    if (d == &google__protobuf__value__descriptor)
        return walk_value(w, (const Google__Protobuf__Value *)msg);
    if (d == &google__protobuf__list_value__descriptor)
        return walk_list(w, (const Google__Protobuf__ListValue *)msg);
    if (d == &google__protobuf__timestamp__descriptor)
        return TSE_OK; /* numbers only; a string in JSON, no level */
    st = enter(w);
    if (st != TSE_OK)
        return st;
    for (unsigned i = 0; st == TSE_OK && i < d->n_fields; i++)
        st = walk_field(w, msg, &d->fields[i]);
    w->depth--;
    return st;
}

tse_status tse_message_check_text(const ProtobufCMessage *msg, const char *prefix, tse_error *err)
{
    walk w;

    if (msg == NULL)
        return TSE_OK;
    snprintf(w.path, sizeof(w.path), "%s", prefix ? prefix : "");
    w.depth = 0;
    w.err = err;
    return walk_message(&w, msg);
}
