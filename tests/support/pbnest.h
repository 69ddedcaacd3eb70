/*
 * pbnest.h - protobuf wire bytes nested as deep as a test wants, written by
 * hand: protobuf-c's own pack recurses once per level, so it cannot build a
 * million levels, and neither can anything that unpacks them.
 *
 * Bytes are written back to front into one buffer: the innermost message
 * first, each enclosing field prepended as its tag and length around all
 * that is written so far. Linear in the depth.
 *
 * Header-only (static inline), for unit and integration tests alike. The
 * caller frees what the builders return.
 */
#ifndef TSE_TEST_PBNEST_H
#define TSE_TEST_PBNEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct tse_nest {
    uint8_t *buf;
    size_t cap, pos; /* the bytes written are buf[pos, cap) */
} tse_nest;

static inline void tse_nest_init(tse_nest *n, size_t cap)
{
    n->buf = malloc(cap);
    n->cap = cap;
    n->pos = cap;
    if (n->buf == NULL)
        abort();
}

static inline void tse_nest_prepend(tse_nest *n, const void *p, size_t len)
{
    if (len > n->pos)
        abort();
    n->pos -= len;
    memcpy(n->buf + n->pos, p, len);
}

static inline void tse_nest_varint(tse_nest *n, uint64_t v)
{
    uint8_t tmp[10];
    size_t k = 0;

    do {
        tmp[k++] = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    tse_nest_prepend(n, tmp, k);
}

/* Everything written so far becomes the value of length-delimited field. */
static inline void tse_nest_wrap(tse_nest *n, uint32_t field)
{
    tse_nest_varint(n, n->cap - n->pos);
    tse_nest_varint(n, (uint64_t)field << 3 | 2);
}

/* Prepends a string field. */
static inline void tse_nest_string(tse_nest *n, uint32_t field, const char *s)
{
    tse_nest_prepend(n, s, strlen(s));
    tse_nest_varint(n, strlen(s));
    tse_nest_varint(n, (uint64_t)field << 3 | 2);
}

/* The written bytes, moved to the front of the buffer (caller frees). */
static inline uint8_t *tse_nest_take(tse_nest *n, size_t *len)
{
    *len = n->cap - n->pos;
    memmove(n->buf, n->buf + n->pos, *len);
    return n->buf;
}

/*
 * google.protobuf.Value holding `arrays` nested lists around an empty one:
 * [[[...[]...]]] (arrays >= 1). JSON depth: arrays.
 */
static inline void tse_nest_lists(tse_nest *n, size_t arrays)
{
    for (size_t i = 0; i < arrays; i++) {
        if (i > 0)
            tse_nest_wrap(n, 1); /* ListValue.values */
        tse_nest_wrap(n, 6);     /* Value.list_value */
    }
}

/*
 * google.protobuf.Value holding `objects` nested Structs {"a":{"a":...{}}}
 * (objects >= 1): three messages on the wire per JSON level.
 */
static inline void tse_nest_structs(tse_nest *n, size_t objects)
{
    for (size_t i = 0; i < objects; i++) {
        if (i > 0) {
            tse_nest_wrap(n, 2);        /* FieldsEntry.value */
            tse_nest_string(n, 1, "a"); /* FieldsEntry.key */
            tse_nest_wrap(n, 1);        /* Struct.fields */
        }
        tse_nest_wrap(n, 5); /* Value.struct_value */
    }
}

/* A PublishRequest of a generic event whose data is {"x": <value written
 * so far>}. JSON depth of the request: 2 + the value's. */
static inline void tse_nest_publish_around(tse_nest *n, const char *event_type)
{
    tse_nest_wrap(n, 2);        /* FieldsEntry.value */
    tse_nest_string(n, 1, "x"); /* FieldsEntry.key */
    tse_nest_wrap(n, 1);        /* Struct.fields */
    tse_nest_wrap(n, 20);       /* Event.data */
    tse_nest_string(n, 3, "hostile");
    tse_nest_string(n, 2, event_type);
    tse_nest_wrap(n, 1); /* PublishRequest.event */
}

/* PublishRequest bytes with data {"x": [[...]]}, `arrays` lists deep. */
static inline uint8_t *tse_nest_publish_lists(const char *event_type, size_t arrays, size_t *len)
{
    tse_nest n;

    tse_nest_init(&n, arrays * 12 + 256);
    tse_nest_lists(&n, arrays);
    tse_nest_publish_around(&n, event_type);
    return tse_nest_take(&n, len);
}

#endif
