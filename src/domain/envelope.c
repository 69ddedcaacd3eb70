/*
 * envelope.c - the stored bytes of a prepared event from the client's own
 * bytes and the root fields tse_event_prepare changed. See envelope.h for
 * why, and for when the client's bytes may not be reused.
 *
 * Three steps: read the client's root fields (without entering any
 * message) and check that they may be reused; plan (and size) the root
 * fields of the event whose values differ from the client's; write them
 * after the client's bytes. The
 * fields are written as protobuf-c packs them, so the result decodes as
 * the packed event would.
 */
#include "domain/envelope.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec/pbscan.h"
#include "codec/pbwire.h"
#include "common/alloc.h"

typedef Tracseq__Events__V1__Event event;

/* The Event's root fields this file knows by number (event.proto). */
enum {
    F_TIMESTAMP = 5,
    F_PRIORITY = 9,
    F_METADATA = 10,
    F_LAST_SCALAR = 12, /* fields 1..12: the envelope; 20 and up: the payload oneof */
    WIRE_VARINT = 0,
    WIRE_DELIMITED = 2,
};

/* The envelope's string fields: their numbers and where ev holds them. */
static const struct {
    uint32_t id;
    size_t offset;
} string_fields[] = {
    {1, offsetof(event, id)},
    {2, offsetof(event, event_type)},
    {3, offsetof(event, source_service)},
    {4, offsetof(event, version)},
    {6, offsetof(event, correlation_id)},
    {7, offsetof(event, causation_id)},
    {8, offsetof(event, subject)},
    {11, offsetof(event, traceparent)},
    {12, offsetof(event, tracestate)},
};
#define N_STRINGS (sizeof(string_fields) / sizeof(string_fields[0]))

/* What the client's bytes hold at the root. */
typedef struct client {
    bool present[F_LAST_SCALAR + 1];
    const uint8_t *str[F_LAST_SCALAR + 1]; /* a string field's bytes */
    size_t str_len[F_LAST_SCALAR + 1];
    uint64_t priority;
    size_t metadata;  /* map entries */
    uint32_t payload; /* the oneof member's field number, 0: none */
    size_t unknown;   /* fields of numbers the Event does not define */
} client;

/* A root field of the client's bytes, recorded; false when it makes them
 * unusable (a repeated singular field, a timestamp, a wrong wire type). */
static bool record(client *c, const tse_pbscan_field *f)
{
    const ProtobufCFieldDescriptor *fd;

    if (f->id == F_METADATA) {
        c->metadata++;
        return f->wire == WIRE_DELIMITED;
    }
    if (f->id > F_LAST_SCALAR) {
        fd =
            protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor, f->id);
        if (fd == NULL) {
            c->unknown++;
            return true;
        }
        if (c->payload != 0 || (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0)
            return false;
        c->payload = f->id;
        return f->wire == WIRE_DELIMITED;
    }
    if (c->present[f->id] || f->id == F_TIMESTAMP)
        return false;
    c->present[f->id] = true;
    if (f->id == F_PRIORITY) {
        c->priority = f->varint;
        return f->wire == WIRE_VARINT;
    }
    c->str[f->id] = f->data;
    c->str_len[f->id] = f->len;
    return f->wire == WIRE_DELIMITED;
}

/* Reads the client's root fields; false when they may not be reused for ev. */
static bool read_client(const uint8_t *wire, size_t len, const event *ev, client *c)
{
    tse_pbscan_field f;
    size_t pos = 0;

    memset(c, 0, sizeof(*c));
    while (tse_pbscan_next(wire, len, &pos, &f))
        if (!record(c, &f))
            return false;
    return pos == len && c->payload == (uint32_t)ev->payload_case &&
           c->metadata == ev->n_metadata && c->unknown == ev->base.n_unknown_fields &&
           ev->timestamp != NULL && ev->timestamp->base.n_unknown_fields == 0;
}

/* ---- writing ---------------------------------------------------------------- */

static const char *string_of(const event *ev, size_t i)
{
    const char *s = *(char *const *)((const char *)ev + string_fields[i].offset);

    return s != NULL ? s : "";
}

/* What goes after the client's bytes: ev's string fields that differ from
 * the client's (their lengths; SIZE_MAX: the same), the priority if it
 * differs, then the timestamp. */
typedef struct plan {
    size_t string_len[N_STRINGS];
    bool priority;
    size_t size; /* of all that */
} plan;

/* An int32 goes on the wire sign-extended to 64 bits, as protobuf-c packs it. */
static uint64_t int32_wire(int32_t v)
{
    return (uint64_t)(int64_t)v;
}

/* The Timestamp message's bytes: its non-zero fields, as proto3 packs them. */
static size_t timestamp_size(const Google__Protobuf__Timestamp *ts)
{
    return (ts->seconds != 0 ? 1 + tse_pbwire_varint_size((uint64_t)ts->seconds) : 0) +
           (ts->nanos != 0 ? 1 + tse_pbwire_varint_size(int32_wire(ts->nanos)) : 0);
}

static uint8_t *put_timestamp(uint8_t *p, const Google__Protobuf__Timestamp *ts)
{
    p = tse_pbwire_put_varint(p, (uint64_t)F_TIMESTAMP << 3 | WIRE_DELIMITED);
    p = tse_pbwire_put_varint(p, timestamp_size(ts));
    if (ts->seconds != 0) {
        *p++ = 1 << 3 | WIRE_VARINT;
        p = tse_pbwire_put_varint(p, (uint64_t)ts->seconds);
    }
    if (ts->nanos != 0) {
        *p++ = 2 << 3 | WIRE_VARINT;
        p = tse_pbwire_put_varint(p, int32_wire(ts->nanos));
    }
    return p;
}

static void plan_appended(const event *ev, const client *c, plan *pl)
{
    size_t ts = timestamp_size(ev->timestamp);

    pl->size = 0;
    for (size_t i = 0; i < N_STRINGS; i++) {
        uint32_t id = string_fields[i].id;
        const char *s = string_of(ev, i);
        size_t n = strlen(s);
        if (n == c->str_len[id] && (n == 0 || memcmp(s, c->str[id], n) == 0)) {
            pl->string_len[i] = SIZE_MAX;
            continue;
        }
        pl->string_len[i] = n;
        pl->size += tse_pbwire_varint_size((uint64_t)id << 3) + tse_pbwire_varint_size(n) + n;
    }
    pl->priority = (int32_t)c->priority != ev->priority;
    if (pl->priority)
        pl->size += 1 + tse_pbwire_varint_size(int32_wire(ev->priority));
    pl->size += 1 + tse_pbwire_varint_size(ts) + ts;
}

static uint8_t *put_appended(uint8_t *p, const event *ev, const plan *pl)
{
    for (size_t i = 0; i < N_STRINGS; i++) {
        size_t len = pl->string_len[i];
        if (len == SIZE_MAX)
            continue;
        p = tse_pbwire_put_varint(p, (uint64_t)string_fields[i].id << 3 | WIRE_DELIMITED);
        p = tse_pbwire_put_varint(p, len);
        memcpy(p, string_of(ev, i), len);
        p += len;
    }
    if (pl->priority) {
        *p++ = F_PRIORITY << 3 | WIRE_VARINT;
        p = tse_pbwire_put_varint(p, int32_wire(ev->priority));
    }
    return put_timestamp(p, ev->timestamp);
}

/* ---- the whole --------------------------------------------------------------- */

bool tse_event_envelope_reuse(const uint8_t *wire, size_t len, const event *ev,
                              const tse_prepare_result *result, uint8_t **out, size_t *out_len)
{
    client c;
    plan pl;
    uint8_t *buf;

    if (wire == NULL || ev == NULL || result == NULL || result->payload_changed ||
        !read_client(wire, len, ev, &c))
        return false;
    plan_appended(ev, &c, &pl);
    buf = tse_malloc(len + pl.size);
    if (buf == NULL)
        return false;
    memcpy(buf, wire, len);
    if (put_appended(buf + len, ev, &pl) != buf + len + pl.size) {
        tse_free(buf); /* unreachable: the plan and the writing agree */
        return false;
    }
    *out = buf;
    *out_len = len + pl.size;
    return true;
}
