/*
 * view.c - decoding deliveries into read-only event views: the envelope's
 * fields, its payload as proto3 JSON text, and the raw envelope bytes
 * found in the Delivery's wire form without re-encoding.
 *
 * Invariant: a view only points into its tse_client_decoded (the unpacked
 * Delivery, the metadata array, the JSON text) and into the bytes it was
 * decoded from; it lives exactly as long as both.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "codec/pbjson.h"
#include "codec/pbscan.h"
#include "common/alloc.h"

#define EXPORT __attribute__((visibility("default")))

typedef Tracseq__Events__V1__Event Event;

/* ============================== wire scanning ============================= */

bool tse_client_wire_each(const uint8_t *data, size_t len, uint32_t number,
                          bool (*fn)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    tse_pbscan_field f;
    size_t pos = 0;

    while (tse_pbscan_next(data, len, &pos, &f))
        if (f.id == number && f.wire == 2 && !fn(arg, f.data, f.len))
            return false;
    return pos == len;
}

bool tse_client_delivery_split(const uint8_t *data, size_t len, uint8_t *first, size_t *first_len,
                               bool (*more)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    tse_pbscan_field f;
    size_t pos = 0;

    *first_len = 0;
    while (pos < len) {
        size_t start = pos;

        if (!tse_pbscan_next(data, len, &pos, &f))
            return false;
        if (f.id == TSE_CLIENT_DELIVERY_MORE && f.wire == 2) {
            if (more != NULL && !more(arg, f.data, f.len))
                return false;
            continue;
        }
        if (first != NULL)
            memcpy(first + *first_len, data + start, pos - start);
        *first_len += pos - start;
    }
    return true;
}

/* ============================== payload JSON ============================== */

char *tse_client_payload_json(const Event *ev)
{
    const ProtobufCFieldDescriptor *f;
    const ProtobufCMessage *msg;
    json_t *j;
    char *text;

    if (ev->payload_case == TRACSEQ__EVENTS__V1__EVENT__PAYLOAD__NOT_SET)
        return strdup("{}");
    f = protobuf_c_message_descriptor_get_field(&tracseq__events__v1__event__descriptor,
                                                (int)ev->payload_case);
    if (f == NULL)
        return NULL;
    msg = *(const ProtobufCMessage *const *)((const char *)ev + f->offset);
    j = tse_pbjson_from_message(msg, 0);
    text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

EXPORT char *tse_client_envelope_json(const void *envelope, size_t len)
{
    Event *ev = tracseq__events__v1__event__unpack(NULL, len, envelope);
    json_t *j;
    char *text;

    if (ev == NULL)
        return NULL;
    j = tse_pbjson_from_message(&ev->base, 0);
    text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    tracseq__events__v1__event__free_unpacked(ev, NULL);
    return text;
}

/* ============================== deliveries ================================ */

typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

static bool keep_span(void *arg, const uint8_t *p, size_t n)
{
    span *s = arg;

    s->p = p;
    s->n = n;
    return true;
}

static const char *str(const char *s)
{
    return s != NULL ? s : "";
}

static tse_client_status view_fill(tse_client_decoded *d, tse_client_error *err)
{
    const Event *ev = d->delivery->event;
    tse_client_event_view *v = &d->view;

    v->ack_id = str(d->delivery->ack_id);
    v->delivery_attempt = d->delivery->delivery_attempt;
    v->subscription = str(d->delivery->subscription);
    v->stream_id = str(d->delivery->stream_id);
    v->id = str(ev->id);
    v->event_type = str(ev->event_type);
    v->source_service = str(ev->source_service);
    v->version = str(ev->version);
    v->subject = str(ev->subject);
    v->correlation_id = str(ev->correlation_id);
    v->causation_id = str(ev->causation_id);
    v->traceparent = str(ev->traceparent);
    v->tracestate = str(ev->tracestate);
    v->priority = ev->priority;
    if (ev->timestamp != NULL) {
        v->timestamp_seconds = ev->timestamp->seconds;
        v->timestamp_nanos = ev->timestamp->nanos;
    }
    if (ev->n_metadata > 0) {
        d->metadata = calloc(ev->n_metadata, sizeof(*d->metadata));
        if (d->metadata == NULL)
            return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
        for (size_t i = 0; i < ev->n_metadata; i++) {
            d->metadata[i].key = str(ev->metadata[i]->key);
            d->metadata[i].value = str(ev->metadata[i]->value);
        }
    }
    v->metadata = d->metadata;
    v->n_metadata = ev->n_metadata;
    d->payload_json = tse_client_payload_json(ev);
    if (d->payload_json == NULL)
        return tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, "payload",
                               "cannot render the payload as JSON");
    v->payload_json = d->payload_json;
    return TSE_CLIENT_OK;
}

tse_client_status tse_client_delivery_decode(const uint8_t *data, size_t len, tse_client_decoded *d,
                                             tse_client_error *err)
{
    span env = {NULL, 0};
    tse_client_status st;

    memset(d, 0, sizeof(*d));
    d->delivery = tracseq__events__v1__delivery__unpack(NULL, len, data);
    if (d->delivery == NULL || d->delivery->event == NULL ||
        !tse_client_wire_each(data, len, 3, keep_span, &env) || env.p == NULL) {
        tse_client_decoded_cleanup(d);
        return tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL,
                               "undecodable Delivery from the server");
    }
    d->view.envelope = env.p;
    d->view.envelope_len = env.n;
    st = view_fill(d, err);
    if (st != TSE_CLIENT_OK)
        tse_client_decoded_cleanup(d);
    return st;
}

void tse_client_decoded_cleanup(tse_client_decoded *d)
{
    if (d == NULL)
        return;
    if (d->delivery != NULL)
        tracseq__events__v1__delivery__free_unpacked(d->delivery, NULL);
    free(d->metadata);
    free(d->payload_json);
    memset(d, 0, sizeof(*d));
}

/* ============================== pulled batches ============================ */

struct tse_client_batch {
    grpc_slice bytes; /* the PullResponse the views point into */
    tse_client_decoded *items;
    size_t n, cap;
    tse_client_status st;
    tse_client_error *err;
};

static bool add_delivery(void *arg, const uint8_t *p, size_t n)
{
    tse_client_batch *b = arg;

    if (!TSE_GROW(realloc, b->items, b->cap, b->n + 1, 16)) {
        b->st = tse_client_fail(b->err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
        return false;
    }
    b->st = tse_client_delivery_decode(p, n, &b->items[b->n], b->err);
    if (b->st != TSE_CLIENT_OK)
        return false;
    b->n++;
    return true;
}

tse_client_status tse_client_batch_make(grpc_slice bytes, tse_client_batch **out,
                                        tse_client_error *err)
{
    tse_client_batch *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        grpc_slice_unref(bytes);
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    }
    b->bytes = bytes;
    b->err = err;
    if (!tse_client_wire_each(GRPC_SLICE_START_PTR(bytes), GRPC_SLICE_LENGTH(bytes), 1,
                              add_delivery, b)) {
        tse_client_status st =
            b->st != TSE_CLIENT_OK
                ? b->st
                : tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL, "undecodable PullResponse");
        tse_client_batch_destroy(b);
        return st;
    }
    b->err = NULL;
    *out = b;
    return TSE_CLIENT_OK;
}

EXPORT size_t tse_client_batch_count(const tse_client_batch *b)
{
    return b != NULL ? b->n : 0;
}

EXPORT const tse_client_event_view *tse_client_batch_event(const tse_client_batch *b, size_t i)
{
    return b != NULL && i < b->n ? &b->items[i].view : NULL;
}

EXPORT void tse_client_batch_destroy(tse_client_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        tse_client_decoded_cleanup(&b->items[i]);
    free(b->items);
    grpc_slice_unref(b->bytes);
    free(b);
}
