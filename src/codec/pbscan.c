/*
 * pbscan.c - the wire scan of pbscan.h: nesting depth and string text of a
 * protobuf message, before anything unpacks it.
 *
 * One loop over the bytes with an explicit stack of frames (one per message
 * being read), so a hostile nesting costs this code a bounded array, never
 * C stack. Every length is checked against the enclosing message's end
 * before it is used, so truncated or garbage input ends in MALFORMED, never
 * in a read past the buffer. The path of the current position is kept in
 * one fixed buffer that each frame extends and truncates back on leaving.
 */
#include "codec/pbscan.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "codec/pbjson.h"
#include "codec/utf8.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

/* How a message shows in JSON, which decides how it counts and names. */
typedef enum kind {
    K_PLAIN,  /* an object: one level */
    K_STRUCT, /* google.protobuf.Struct: an object; its map is itself */
    K_LIST,   /* google.protobuf.ListValue: an array; its values are its elements */
    K_VALUE,  /* google.protobuf.Value: whatever it holds, no level of its own */
    K_ENTRY,  /* a map entry: key and value of the map's object */
    K_SCALAR  /* Timestamp, Duration: JSON strings */
} kind;

typedef struct frame {
    const ProtobufCMessageDescriptor *desc;
    const uint8_t *end; /* where this message's bytes end */
    unsigned depth;     /* JSON levels down to this message */
    kind kind;
    const ProtobufCFieldDescriptor *via; /* the parent's field holding it (NULL: root) */
    size_t via_index;                    /* its element index in that field */
    uint32_t last_field;                 /* the last field read here, for indices */
    size_t index;                        /* its element index */
    const uint8_t *key;                  /* a map entry's key, once read (valid text) */
    size_t key_len;
    uint64_t messages_seen; /* singular message fields read here, by index in desc */
} frame;

/* The path is built only when there is an error to name: frames record how
 * each message was reached. */
typedef struct scan {
    frame frames[TSE_PBSCAN_MAX_FRAMES];
    size_t top;
    const uint8_t *start;
    unsigned max_depth;
    char path[TSE_ERROR_FIELD_MAX];
    size_t path_len;
    tse_error *err;
    tse_pbscan_info info;
} scan;

/* ---- descriptors ---------------------------------------------------------- */

static kind kind_of(const ProtobufCMessageDescriptor *d)
{
    if (d == &google__protobuf__struct__descriptor)
        return K_STRUCT;
    if (d == &google__protobuf__list_value__descriptor)
        return K_LIST;
    if (d == &google__protobuf__value__descriptor)
        return K_VALUE;
    if (d == &google__protobuf__timestamp__descriptor)
        return K_SCALAR;
    return tse_pbjson_is_map_entry(d) ? K_ENTRY : K_PLAIN;
}

/* ---- text ----------------------------------------------------------------- */

typedef enum text { TEXT_OK, TEXT_NUL, TEXT_NOT_UTF8 } text;

/* Whether the n bytes at p are text: valid UTF-8 without NUL (a C string
 * would silently end there). */
static text text_of(const uint8_t *p, size_t n)
{
    size_t span = tse_utf8_text_span(p, n);

    if (span == n)
        return TEXT_OK;
    return p[span] == 0 ? TEXT_NUL : TEXT_NOT_UTF8;
}

/* ---- the path ------------------------------------------------------------- */

/* Appends n bytes of valid text, whole characters only, as far as they fit. */
static void path_append(scan *s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = tse_utf8_sequence(p + i, n - i);
        if (len == 0 || s->path_len + len >= sizeof(s->path))
            break;
        memcpy(s->path + s->path_len, p + i, len);
        s->path_len += len;
        i += len;
    }
    s->path[s->path_len] = '\0';
}

static void path_name(scan *s, const uint8_t *name, size_t n)
{
    if (s->path_len > 0)
        path_append(s, (const uint8_t *)".", 1);
    path_append(s, name, n);
}

static void path_index(scan *s, size_t i)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "[%zu]", i);

    path_append(s, (const uint8_t *)buf, (size_t)n);
}

/*
 * Names the value of field fd, element index, read in frame f, as JSON
 * would: Struct, Value and map entries are transparent but for the key,
 * list elements are indices, other fields their name (and index if
 * repeated and not a map).
 */
static void path_segment(scan *s, const frame *f, const ProtobufCFieldDescriptor *fd, size_t index,
                         bool child_is_entry)
{
    switch (f->kind) {
    case K_STRUCT:
    case K_VALUE: return;
    case K_LIST: path_index(s, index); return;
    case K_ENTRY:
        if (fd->id != 2)
            return;
        if (f->key != NULL)
            path_name(s, f->key, f->key_len);
        else
            path_name(s, (const uint8_t *)"*", 1);
        return;
    default:
        path_name(s, (const uint8_t *)fd->name, strlen(fd->name));
        if (fd->label == PROTOBUF_C_LABEL_REPEATED && !child_is_entry)
            path_index(s, index);
        return;
    }
}

/* The path down to the innermost frame, then into its field fd (when not
 * NULL; the element being read when repeated). */
static void path_build(scan *s, const ProtobufCFieldDescriptor *fd, bool fd_is_entry)
{
    const frame *top = &s->frames[s->top - 1];

    s->path_len = 0;
    s->path[0] = '\0';
    for (size_t i = 1; i < s->top; i++)
        path_segment(s, &s->frames[i - 1], s->frames[i].via, s->frames[i].via_index,
                     s->frames[i].kind == K_ENTRY);
    if (fd != NULL)
        path_segment(s, top, fd, top->index, fd_is_entry);
}

/* ---- verdicts ------------------------------------------------------------- */

static tse_pbscan_verdict malformed(scan *s, const uint8_t *at, const char *what)
{
    path_build(s, NULL, false);
    tse_error_set(s->err, TSE_INVALID, s->path, "%s at byte %zu", what, (size_t)(at - s->start));
    return TSE_PBSCAN_MALFORMED;
}

static tse_pbscan_verdict too_deep(scan *s, const ProtobufCFieldDescriptor *fd, bool is_entry)
{
    path_build(s, fd, is_entry);
    tse_error_set(s->err, TSE_INVALID, s->path, "nests deeper than %u levels", s->max_depth);
    return TSE_PBSCAN_TOO_DEEP;
}

static tse_pbscan_verdict bad_text(scan *s, const ProtobufCFieldDescriptor *fd, text t)
{
    bool keys = fd == NULL;

    path_build(s, fd, false);
    tse_error_set(s->err, TSE_INVALID, s->path, "%smust %s", keys ? "keys " : "",
                  t == TEXT_NUL ? "not contain NUL characters" : "be valid UTF-8");
    return TSE_PBSCAN_BAD_TEXT;
}

/* ---- the wire ------------------------------------------------------------- */

/* Reads a varint within [*p, end); false when truncated or over 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;

    for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7F) << (shift < 64 ? shift : 0);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Enters the submessage of field fd spanning [p, end). */
static tse_pbscan_verdict enter(scan *s, const ProtobufCFieldDescriptor *fd, const uint8_t *end)
{
    const frame *f = &s->frames[s->top - 1];
    const ProtobufCMessageDescriptor *d = fd->descriptor;
    kind k = kind_of(d);
    bool array = fd->label == PROTOBUF_C_LABEL_REPEATED && f->kind != K_STRUCT && f->kind != K_LIST;
    bool object = k == K_PLAIN || k == K_STRUCT || k == K_LIST;
    frame *child;

    if (f->depth + array + object > s->max_depth || s->top == TSE_PBSCAN_MAX_FRAMES)
        return too_deep(s, fd, k == K_ENTRY);
    child = &s->frames[s->top++];
    memset(child, 0, sizeof(*child));
    child->desc = d;
    child->end = end;
    child->depth = f->depth + array + object;
    child->kind = k;
    child->via = fd;
    child->via_index = f->index;
    return TSE_PBSCAN_OK;
}

/* A singular message field fd read in frame f: a second one is noted. */
static void note_message(scan *s, frame *f, const ProtobufCFieldDescriptor *fd)
{
    size_t index = (size_t)(fd - f->desc->fields);
    uint64_t bit = index < 64 ? (uint64_t)1 << index : 0;

    if (bit == 0 || (f->messages_seen & bit) != 0)
        s->info.message_repeated = true;
    f->messages_seen |= bit;
}

/* A length-delimited field's n bytes at p, in frame f. Enters messages;
 * checks strings. *descend is set when a frame was entered. */
static tse_pbscan_verdict delimited(scan *s, frame *f, uint32_t id, const uint8_t *p, size_t n,
                                    bool *descend)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(f->desc, id);
    text t;

    *descend = false;
    if (fd == NULL)
        return TSE_PBSCAN_OK; /* unknown: kept as bytes, never unpacked further */
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE && fd->descriptor != NULL) {
        if (fd->label != PROTOBUF_C_LABEL_REPEATED)
            note_message(s, f, fd);
        *descend = true;
        return enter(s, fd, p + n);
    }
    if (fd->type != PROTOBUF_C_TYPE_STRING)
        return TSE_PBSCAN_OK;
    t = text_of(p, n);
    if (f->kind == K_ENTRY && id == 1) {
        if (t != TEXT_OK)
            return bad_text(s, NULL, t); /* names the map: the key is no text */
        f->key = p;
        f->key_len = n;
        return TSE_PBSCAN_OK;
    }
    if (t == TEXT_OK)
        return TSE_PBSCAN_OK;
    return bad_text(s, fd, t);
}

/* One field at *p of the innermost frame. */
static tse_pbscan_verdict field(scan *s, const uint8_t **p)
{
    frame *f = &s->frames[s->top - 1];
    const uint8_t *at = *p;
    uint64_t tag, len, skip;
    uint32_t id;
    bool descend;
    tse_pbscan_verdict v;

    /* Tags are read as protobuf-c reads them (at most 5 bytes, "field 0"
     * refused by the first byte only), so that the field this scan follows
     * is the very field unpacking will follow. */
    if ((*at & 0xF8) == 0)
        return malformed(s, at, "field number 0");
    if (!read_varint(p, f->end, &tag) || *p - at > 5)
        return malformed(s, at, "truncated or overlong tag");
    /* protobuf-c keeps a non-minimal "field 0" tag (0x81 0x00) as an
     * unknown field and packs it back minimally (0x01), which it refuses to
     * unpack: a stored copy of such a message would never decode again. */
    if (tag >> 3 == 0)
        return malformed(s, at, "field number 0");
    id = (uint32_t)(tag >> 3);
    if (id == f->last_field) {
        f->index++;
    } else {
        f->last_field = id;
        f->index = 0;
    }
    switch (tag & 7) {
    case 0:
        if (!read_varint(p, f->end, &skip))
            return malformed(s, at, "truncated varint");
        return TSE_PBSCAN_OK;
    case 1:
    case 5:
        skip = (tag & 7) == 1 ? 8 : 4;
        if ((size_t)(f->end - *p) < skip)
            return malformed(s, at, "truncated fixed-size field");
        *p += skip;
        return TSE_PBSCAN_OK;
    case 2:
        if (!read_varint(p, f->end, &len))
            return malformed(s, at, "truncated length");
        if (len > (uint64_t)(f->end - *p))
            return malformed(s, at, "length beyond the end of the message");
        v = delimited(s, f, id, *p, (size_t)len, &descend);
        if (v == TSE_PBSCAN_OK && !descend)
            *p += len;
        return v;
    default: return malformed(s, at, "unsupported wire type (groups or invalid)");
    }
}

tse_pbscan_verdict tse_pbscan(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, unsigned max_depth, tse_error *err)
{
    return tse_pbscan_with(desc, data, len, max_depth, NULL, err);
}

tse_pbscan_verdict tse_pbscan_with(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                   size_t len, unsigned max_depth, tse_pbscan_info *info,
                                   tse_error *err)
{
    static const uint8_t none[1];
    const uint8_t *p = data ? data : none;
    tse_pbscan_verdict v = TSE_PBSCAN_OK;
    scan storage, *s = &storage;

    s->start = p;
    s->max_depth = max_depth;
    s->path[0] = '\0';
    s->path_len = 0;
    s->err = err;
    s->info.message_repeated = false;
    s->top = 1;
    memset(&s->frames[0], 0, sizeof(s->frames[0]));
    s->frames[0].desc = desc;
    s->frames[0].end = p + len;
    s->frames[0].kind = kind_of(desc);
    while (s->top > 0 && v == TSE_PBSCAN_OK) {
        frame *f = &s->frames[s->top - 1];
        if (p == f->end) {
            s->top--;
            continue;
        }
        v = field(s, &p);
    }
    if (info != NULL)
        *info = s->info;
    return v;
}

/* Steps *p over the value of a field of wire type `wire`; false when it is
 * malformed (or a group, which we never accept). On success *value holds a
 * varint's value, or a length-delimited field's length (its bytes start at
 * *p - *value). */
static bool skip_value(const uint8_t **p, const uint8_t *end, unsigned wire, uint64_t *value)
{
    uint64_t n;

    switch (wire) {
    case 0: return read_varint(p, end, value);
    case 1:
    case 5:
        n = wire == 1 ? 8 : 4;
        if ((size_t)(end - *p) < n)
            return false;
        *p += n;
        return true;
    case 2:
        if (!read_varint(p, end, &n) || n > (uint64_t)(end - *p))
            return false;
        *p += n;
        *value = n;
        return true;
    default: return false;
    }
}

/*
 * Only the root's own fields are read: every length-delimited field is
 * skipped whole, so a count costs one pass over the tags and never more
 * than the bytes. Malformed bytes end the count; the full scan refuses them.
 */
size_t tse_pbscan_count(const uint8_t *data, size_t len, uint32_t field_id)
{
    const uint8_t *p = data, *end = data ? data + len : data;
    uint64_t tag, value = 0;
    size_t n = 0;

    while (p != NULL && p < end) {
        if (!read_varint(&p, end, &tag))
            break;
        if (tag >> 3 == field_id)
            n++;
        if (!skip_value(&p, end, (unsigned)(tag & 7), &value))
            break;
    }
    return n;
}

/* The seconds and nanos of a google.protobuf.Timestamp's bytes. */
static bool read_timestamp(const uint8_t *p, const uint8_t *end, int64_t *sec, int32_t *nanos)
{
    uint64_t tag, value = 0;

    *sec = 0;
    *nanos = 0;
    while (p < end) {
        if (!read_varint(&p, end, &tag) || !skip_value(&p, end, (unsigned)(tag & 7), &value))
            return false;
        if (tag == (1 << 3 | 0))
            *sec = (int64_t)value;
        else if (tag == (2 << 3 | 0))
            *nanos = (int32_t)value;
    }
    return *nanos >= 0 && *nanos < 1000000000;
}

/*
 * One pass over the root's tags, as tse_pbscan_count; the last occurrence
 * of the field wins, as protobuf merges it (enough for a message we packed
 * ourselves, where it occurs once).
 */
bool tse_pbscan_timestamp(const uint8_t *data, size_t len, uint32_t field_id, int64_t *sec,
                          int32_t *nanos)
{
    const uint8_t *p = data, *end = data ? data + len : data;
    uint64_t tag, value = 0;
    bool found = false;

    while (p != NULL && p < end) {
        if (!read_varint(&p, end, &tag) || !skip_value(&p, end, (unsigned)(tag & 7), &value))
            return false;
        if (tag == ((uint64_t)field_id << 3 | 2))
            found = read_timestamp(p - value, p, sec, nanos);
    }
    return found;
}

bool tse_pbscan_bytes(const uint8_t *data, size_t len, uint32_t field_id, const uint8_t **value,
                      size_t *value_len)
{
    const uint8_t *p = data, *end = data ? data + len : data;
    uint64_t tag, skip;
    bool found = false;

    while (p != NULL && p < end) {
        if (!read_varint(&p, end, &tag))
            return found;
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &skip))
                return found;
            break;
        case 1:
        case 5:
            skip = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < skip)
                return found;
            p += skip;
            break;
        case 2:
            if (!read_varint(&p, end, &skip) || skip > (uint64_t)(end - p))
                return found;
            if (tag >> 3 == field_id) { /* the last occurrence wins, as in unpacking */
                *value = p;
                *value_len = (size_t)skip;
                found = true;
            }
            p += skip;
            break;
        default: return found;
        }
    }
    return found;
}

bool tse_pbscan_next(const uint8_t *data, size_t len, size_t *pos, tse_pbscan_field *f)
{
    const uint8_t *p, *end, *value;
    uint64_t tag, v = 0;

    if (data == NULL || *pos >= len)
        return false;
    p = data + *pos;
    end = data + len;
    if (!read_varint(&p, end, &tag) || tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
        return false;
    value = p;
    if (!skip_value(&p, end, (unsigned)(tag & 7), &v))
        return false;
    f->id = (uint32_t)(tag >> 3);
    f->wire = (unsigned)(tag & 7);
    f->varint = f->wire == 0 ? v : 0;
    f->data = f->wire == 2 ? p - v : value;
    f->len = (size_t)(p - f->data);
    *pos = (size_t)(p - data);
    return true;
}
