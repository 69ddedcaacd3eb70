/*
 * subscribe.c - Subscribe (bidi) and the subscription RPCs (Create, Get,
 * List, Delete, Acknowledge, Nack, Pull), on the delivery engine
 * (delivery/delivery.h).
 *
 * A Subscribe stream: the first message attaches a subscriber; later ones
 * ack, nack or extend. The engine's callbacks (on its thread) queue encoded
 * deliveries, sent one message at a time; the engine never hands out more
 * than the subscription's max_in_flight unacked deliveries, so the queue
 * stays bounded. Batched delivery (max_deliveries_per_message > 1 in the
 * first message): each message carries whatever is queued when it is
 * started, up to that many (the first as the Delivery itself, the rest in
 * its `more`) and TSE_DELIVERY_MESSAGE_BYTES; nothing waits for company, so
 * a lone delivery goes out as soon as the stream is free, as without
 * batching. With auto_ack a delivery is acked once its send completed. A
 * client half-close ends no delivery; the stream ends when the client
 * cancels, the subscription is deleted (NOT_FOUND) or the server stops
 * (UNAVAILABLE). The call holds a reference for the engine from attach
 * until the engine's `released`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pbscan.h"
#include "codec/pbwire.h"
#include "codec/utf8.h"
#include "common/alloc.h"
#include "delivery/delivery.h"
#include "domain/limits.h"
#include "domain/subscription.h"
#include "domain/trace.h"
#include "obs/log.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "transport/internal.h"

typedef Tracseq__Events__V1__Subscription Subscription;

/* ===================== Delivery encoding ================================ */

/* Deliveries carry the stored envelope bytes as they are: a submessage and
 * a bytes field share one wire format, so nothing is decoded. */
static uint8_t *put_bytes(uint8_t *p, int field, const void *data, size_t len)
{
    *p++ = (uint8_t)(field << 3 | 2);
    p = tse_pbwire_put_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

static size_t bytes_len(size_t len)
{
    return 1 + tse_pbwire_varint_size(len) + len;
}

static size_t delivery_len(const tse_delivered *d, const char *subscription)
{
    return bytes_len(strlen(d->ack_id)) + 1 + tse_pbwire_varint_size(d->attempt) +
           bytes_len(d->envelope_len) + bytes_len(strlen(subscription)) +
           bytes_len(strlen(d->stream_id));
}

static uint8_t *put_delivery(uint8_t *p, const tse_delivered *d, const char *subscription)
{
    p = put_bytes(p, 1, d->ack_id, strlen(d->ack_id));
    *p++ = 2 << 3;
    p = tse_pbwire_put_varint(p, d->attempt);
    p = put_bytes(p, 3, d->envelope, d->envelope_len);
    p = put_bytes(p, 4, subscription, strlen(subscription));
    return put_bytes(p, 5, d->stream_id, strlen(d->stream_id));
}

static grpc_slice encode_delivery(const tse_delivered *d, const char *subscription)
{
    grpc_slice slice = grpc_slice_malloc(delivery_len(d, subscription));

    put_delivery(GRPC_SLICE_START_PTR(slice), d, subscription);
    return slice;
}

/* ===================== delivery log lines ================================ */

/* A copy of string field `name` of a delivery's envelope ("" if none). */
static void envelope_string(const tse_delivered *d, const char *name, char *out, size_t size)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
        &tracseq__events__v1__event__descriptor, name);
    const uint8_t *v;
    size_t n = 0;

    if (f != NULL && tse_pbscan_bytes(d->envelope, d->envelope_len, f->id, &v, &n)) {
        n = n < size - 1 ? n : size - 1;
        memcpy(out, v, n);
    }
    out[n] = '\0';
}

/*
 * The debug line of one delivery: its event id and trace id (W3C
 * traceparent of the envelope), read from the stored bytes
 * without decoding them, so that a delivery can be joined with its
 * publish (whose request line carries the same trace id). Only when
 * debug lines are on: every delivery would otherwise cost a line.
 */
static void log_delivered(const char *method, const char *subscription, const tse_delivered *d)
{
    char event_id[64], traceparent[TSE_TRACEPARENT_MAX + 1], trace_id[33], attempt[16];

    if (!tse_log_enabled(TSE_LOG_DEBUG))
        return;
    envelope_string(d, "id", event_id, sizeof(event_id));
    envelope_string(d, "traceparent", traceparent, sizeof(traceparent));
    tse_trace_id(traceparent, trace_id);
    snprintf(attempt, sizeof(attempt), "%u", d->attempt);
    tse_log(TSE_LOG_DEBUG, "event delivered",
            (const char *[]){"method", method, "subscription", subscription, "event_id", event_id,
                             "stream_id", d->stream_id, "delivery_attempt", attempt, "trace_id",
                             trace_id, NULL});
}

/* ===================== request limits =================================== */

/* Every check runs before the engine sees the request, so a refused request
 * changes nothing; each error names the field, and the setting when the
 * limit is one. */

/* An empty consumer name lets the service choose one. */
static tse_status check_consumer(const char *consumer, const char *field, tse_error *err)
{
    if (consumer == NULL || consumer[0] == '\0' ||
        tse_subscription_name_valid(consumer, TSE_CONSUMER_NAME_MAX))
        return TSE_OK;
    return tse_error_set(err, TSE_INVALID, field,
                         "a consumer name is 1 to %d characters of A-Z a-z 0-9 _ . -",
                         TSE_CONSUMER_NAME_MAX);
}

/* Batched delivery: 0 or 1 (one per message) up to the cap. */
static tse_status check_per_message(uint32_t n, tse_error *err)
{
    if (n <= TSE_DELIVERIES_PER_MESSAGE_MAX)
        return TSE_OK;
    return tse_error_set(err, TSE_INVALID, "max_deliveries_per_message",
                         "%" PRIu32 " deliveries per message; at most %d", n,
                         TSE_DELIVERIES_PER_MESSAGE_MAX);
}

static tse_status check_ack_ids(const tse_server *s, char *const *ids, size_t n, const char *field,
                                tse_error *err)
{
    char element[TSE_ERROR_FIELD_MAX];

    if (n > (size_t)s->config->max_ack_ids)
        return tse_error_set(err, TSE_INVALID, field,
                             "%zu ack ids; at most %d per request (MAX_ACK_IDS)", n,
                             s->config->max_ack_ids);
    for (size_t i = 0; i < n; i++) {
        if (strnlen(ids[i], TSE_ACK_ID_MAX + 1) <= TSE_ACK_ID_MAX)
            continue;
        snprintf(element, sizeof(element), "%s[%zu]", field, i);
        return tse_error_set(err, TSE_INVALID, element,
                             "longer than any ack id (at most %d characters)", TSE_ACK_ID_MAX);
    }
    return TSE_OK;
}

/* The creation limit on patterns; the domain checks the rest. */
static tse_status check_spec(const tse_server *s, const Subscription *spec, tse_error *err)
{
    if (spec->n_event_types > (size_t)s->config->max_patterns)
        return tse_error_set(err, TSE_INVALID, "subscription.event_types",
                             "%zu patterns; at most %d per subscription "
                             "(MAX_SUBSCRIPTION_PATTERNS)",
                             spec->n_event_types, s->config->max_patterns);
    return TSE_OK;
}

/* ===================== owners =========================================== */

/* A subscription records the identity that created it (Subscription.owner,
 * stored with its settings in Redis); with authentication on, only that
 * identity or an admin may use it, and only while every pattern lies within
 * the caller's subscribe permissions (checked again at every use, so a
 * narrowed permission takes effect at the next Subscribe or Pull, and a
 * wildcard never reaches a forbidden type first seen later). */

/* Sets spec's owner to the caller ("" with authentication off: the field is
 * output only, a client's value is dropped). False when out of memory. */
static bool set_owner(tse_call *c, Subscription *spec)
{
    const char *who = tse_call_identity(c);
    char *owner = strdup(who ? who : "");

    if (owner == NULL)
        return false;
    if (spec->owner != NULL && spec->owner != protobuf_c_empty_string)
        free(spec->owner);
    spec->owner = owner;
    return true;
}

/* Whether the caller may see sub; when not, c is answered (denied). */
static bool sub_allowed(tse_call *c, const Subscription *sub)
{
    tse_error denied;

    if (tse_access_subscription(c, sub->name, sub->owner, sub->event_types, sub->n_event_types,
                                &denied) == TSE_OK)
        return true;
    tse_call_fail(c, &denied);
    return false;
}

/* The stored subscription answered: the caller may use it, then next. */
static void access_answered(void *arg, const tse_error *err, const Subscription *const *subs,
                            size_t n)
{
    tse_call *c = arg;

    if (err != NULL && err->code != TSE_OK)
        tse_call_fail(c, err);
    else if (n != 1 || subs[0] == NULL)
        tse_call_fail(c, TSE_ERROR(TSE_INTERNAL, "", "no subscription in the answer"));
    else if (sub_allowed(c, subs[0]))
        c->access_next(c);
}

void tse_subscription_access(tse_call *c, const char *name, void (*next)(tse_call *c))
{
    tse_error err;

    if (c->server->auth == NULL) {
        next(c);
        return;
    }
    c->access_next = next;
    if (tse_delivery_get_subscriptions(c->server->delivery, name, access_answered, c, &err) !=
        TSE_OK)
        tse_call_fail(c, &err);
}

/* ===================== Subscribe ======================================== */

/* One encoded delivery waiting for its message. */
typedef struct outgoing {
    struct outgoing *next;
    grpc_slice enc;
    char *ack_id; /* auto_ack: acked once sent */
} outgoing;

typedef struct sub_call {
    tse_call base;
    tse_tag recv_tag, send_tag, close_tag;
    grpc_byte_buffer *recv_buf;
    /* The message being sent and the deliveries it carries (a chain). */
    grpc_byte_buffer *send_buf;
    outgoing *sending;
    size_t n_sending;
    outgoing *head, *tail;
    /* Deliveries one message may carry: max_deliveries_per_message of the
     * first message, 1 when it was 0 or 1 (not batched). */
    uint32_t per_message;
    tse_subscriber *subscriber;
    char name[TSE_ERROR_FIELD_MAX];
    bool auto_ack, attached, input_done, ended, detached, closed;
    tse_error end; /* the status, once ended */
    uint64_t delivered, messages;
    /* With authentication on: the attached subscription's owner and
     * patterns, checked again when the caller's identity is renewed. */
    char *owner;
    char **patterns;
    size_t n_patterns;
    bool revoked; /* ended by tse_access_recheck: nothing more is queued */
    /* The first message while its subscription's owner is looked up. */
    Tracseq__Events__V1__SubscribeRequest *first;
} sub_call;

/* Field 6 of Delivery: `repeated Delivery more`. */
#define DELIVERY_MORE 6

/* One message of the deliveries of chain o: the first is the Delivery
 * itself, each further one an element of its `more` (a submessage is its
 * encoding behind a tag and a length), so the first one's bytes go out as
 * they are and a client that knows no `more` still reads one delivery. */
static grpc_byte_buffer *pack_deliveries(const outgoing *o)
{
    size_t len = GRPC_SLICE_LENGTH(o->enc);
    grpc_slice out;
    uint8_t *p;

    if (o->next == NULL)
        return grpc_raw_byte_buffer_create((grpc_slice *)&o->enc, 1);
    for (const outgoing *m = o->next; m; m = m->next)
        len += bytes_len(GRPC_SLICE_LENGTH(m->enc));
    out = grpc_slice_malloc(len);
    p = GRPC_SLICE_START_PTR(out);
    memcpy(p, GRPC_SLICE_START_PTR(o->enc), GRPC_SLICE_LENGTH(o->enc));
    p += GRPC_SLICE_LENGTH(o->enc);
    for (const outgoing *m = o->next; m; m = m->next)
        p = put_bytes(p, DELIVERY_MORE, GRPC_SLICE_START_PTR(m->enc), GRPC_SLICE_LENGTH(m->enc));
    return tse_byte_buffer_take(out);
}

static void outgoing_free(outgoing *o)
{
    if (o == NULL)
        return;
    grpc_slice_unref(o->enc);
    free(o->ack_id);
    free(o);
}

/* Frees a chain of deliveries. */
static void outgoing_free_all(outgoing *o)
{
    while (o) {
        outgoing *next = o->next;
        outgoing_free(o);
        o = next;
    }
}

static void sub_release(tse_call *c)
{
    sub_call *sc = (sub_call *)c;

    outgoing_free_all(sc->sending);
    outgoing_free_all(sc->head);
    if (sc->send_buf)
        grpc_byte_buffer_destroy(sc->send_buf);
    if (sc->recv_buf)
        grpc_byte_buffer_destroy(sc->recv_buf);
    if (sc->first)
        protobuf_c_message_free_unpacked(&sc->first->base, NULL);
    for (size_t i = 0; i < sc->n_patterns; i++)
        free(sc->patterns[i]);
    free(sc->patterns);
    free(sc->owner);
}

/* Ends the stream with its status (the request line counts deliveries and
 * the messages that carried them). */
static void sub_finish(sub_call *sc, const tse_error *end)
{
    char n[32], m[32];

    snprintf(n, sizeof(n), "%llu", (unsigned long long)sc->delivered);
    tse_call_log_kv(&sc->base, "delivered", n);
    snprintf(m, sizeof(m), "%llu", (unsigned long long)sc->messages);
    tse_call_log_kv(&sc->base, "messages", m);
    tse_call_finish_locked(&sc->base, NULL, end);
}

/* Moves the deliveries of the next message from the queue to sc->sending:
 * the head, then what follows while the message stays within per_message
 * deliveries and TSE_DELIVERY_MESSAGE_BYTES. Returns how many. */
static size_t sub_take_message(sub_call *sc)
{
    outgoing *last = sc->head;
    size_t n = 1, bytes = GRPC_SLICE_LENGTH(last->enc);

    while (last->next != NULL && n < sc->per_message) {
        size_t more = bytes_len(GRPC_SLICE_LENGTH(last->next->enc));
        if (bytes + more > TSE_DELIVERY_MESSAGE_BYTES)
            break;
        bytes += more;
        last = last->next;
        n++;
    }
    sc->sending = sc->head;
    sc->head = last->next;
    if (sc->head == NULL)
        sc->tail = NULL;
    last->next = NULL;
    return n;
}

/* Sends the queued deliveries (one message), or the status once ended and
 * drained. */
static void sub_try_send(sub_call *sc)
{
    if (sc->sending || sc->closed || !tse_call_active_locked(&sc->base))
        return;
    if (sc->head == NULL) {
        if (sc->ended)
            sub_finish(sc, &sc->end);
        return;
    }
    sc->n_sending = sub_take_message(sc);
    sc->send_buf = pack_deliveries(sc->sending);
    if (!tse_call_send_locked(&sc->base, sc->send_buf, sc->head != NULL, &sc->send_tag)) {
        grpc_byte_buffer_destroy(sc->send_buf);
        sc->send_buf = NULL;
        outgoing_free_all(sc->sending);
        sc->sending = NULL;
        return;
    }
    sc->messages++;
}

/* Ends the stream with end (copied) once every queued delivery went out. */
static void sub_end(sub_call *sc, const tse_error *end)
{
    if (sc->ended)
        return;
    sc->ended = true;
    sc->end = *end;
    sub_try_send(sc);
}

static void sub_post_recv(sub_call *sc)
{
    if (sc->input_done || sc->closed || !tse_call_active_locked(&sc->base))
        return;
    if (!tse_call_recv_locked(&sc->base, &sc->recv_buf, &sc->recv_tag))
        sc->input_done = true;
}

/* ---- revocation of an open stream ---- */

/* Keeps the attached subscription's owner and patterns (authentication
 * on), for sub_still_allowed. False when out of memory. */
static bool sub_keep_access(sub_call *sc, const Subscription *settings)
{
    size_t n = settings->n_event_types;

    sc->owner = strdup(settings->owner ? settings->owner : "");
    sc->patterns = calloc(n ? n : 1, sizeof(*sc->patterns));
    if (sc->owner == NULL || sc->patterns == NULL)
        return false;
    for (size_t i = 0; i < n; i++, sc->n_patterns++)
        if ((sc->patterns[i] = strdup(settings->event_types[i])) == NULL)
            return false;
    return true;
}

/*
 * Before each delivery: the caller's token or certificate still proves an
 * identity (the tokens file may have been reloaded, the identity may have
 * expired) that may still use the subscription. Cheap while nothing changed
 * (tse_access_recheck). With the lock held.
 */
static bool sub_still_allowed(sub_call *sc, tse_error *err)
{
    bool renewed = false;

    if (sc->base.server->auth == NULL)
        return true;
    if (tse_access_recheck(&sc->base, &renewed, err) != TSE_OK)
        return false;
    return !renewed || tse_access_subscription(&sc->base, sc->name, sc->owner, sc->patterns,
                                               sc->n_patterns, err) == TSE_OK;
}

/* Ends a stream whose caller lost its right: what is queued is dropped
 * (never acked, so delivered again after the ack deadline) and the status
 * goes out after the one send in progress. With the lock held. */
static void sub_revoke(sub_call *sc, const tse_error *err)
{
    sc->revoked = true;
    outgoing_free_all(sc->head);
    sc->head = sc->tail = NULL;
    sub_end(sc, err);
}

/* ---- engine callbacks (engine thread) ---- */

static void on_attached(void *arg, const tse_error *err, const Subscription *settings)
{
    sub_call *sc = arg;

    pthread_mutex_lock(&sc->base.lock);
    if (err->code != TSE_OK) {
        sub_end(sc, err);
    } else if (sc->base.server->auth != NULL && !sub_keep_access(sc, settings)) {
        sub_end(sc, TSE_ERROR(TSE_NOMEM, "", "out of memory"));
    } else {
        sc->attached = true;
        sc->auto_ack = settings->auto_ack;
        sub_post_recv(sc);
    }
    pthread_mutex_unlock(&sc->base.lock);
}

static void on_deliver(void *arg, const tse_delivered *d, size_t n)
{
    sub_call *sc = arg;
    tse_error err;

    pthread_mutex_lock(&sc->base.lock);
    tse_error_clear(&err);
    /* Refused deliveries stay pending: delivered again after the ack
     * deadline, to a subscriber still allowed. */
    if (sc->revoked || (!sc->closed && !sub_still_allowed(sc, &err))) {
        if (!sc->revoked)
            sub_revoke(sc, &err);
        pthread_mutex_unlock(&sc->base.lock);
        return;
    }
    for (size_t i = 0; i < n && !sc->closed; i++) {
        /* Out of memory: the rest stay pending and are redelivered after
         * the ack deadline. */
        outgoing *o = calloc(1, sizeof(*o));
        if (o == NULL)
            break;
        if (sc->auto_ack && (o->ack_id = strdup(d[i].ack_id)) == NULL) {
            free(o);
            break;
        }
        o->enc = encode_delivery(&d[i], sc->name);
        log_delivered("Subscribe", sc->name, &d[i]);
        if (sc->tail)
            sc->tail->next = o;
        else
            sc->head = o;
        sc->tail = o;
        sc->delivered++;
    }
    sub_try_send(sc);
    pthread_mutex_unlock(&sc->base.lock);
}

static void on_ended(void *arg, const tse_error *err)
{
    sub_call *sc = arg;

    pthread_mutex_lock(&sc->base.lock);
    sub_end(sc, err);
    pthread_mutex_unlock(&sc->base.lock);
}

static void on_released(void *arg)
{
    sub_call *sc = arg;

    tse_call_unref(&sc->base); /* the engine's */
}

static const tse_subscriber_ops sub_ops = {
    .attached = on_attached,
    .deliver = on_deliver,
    .ended = on_ended,
    .released = on_released,
};

/* ---- completion-queue events ---- */

/* Attaches the stream to the subscription of its first message. With the lock held. */
static void sub_attach(sub_call *sc, const Tracseq__Events__V1__SubscribeRequest *req)
{
    tse_server *s = sc->base.server;
    const Subscription *spec =
        req->request_case == TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION
            ? req->subscription
            : NULL;
    tse_error err;

    sc->base.refs++; /* the engine's, until released */
    if (tse_delivery_attach(s->delivery, spec, spec ? NULL : req->subscription_name,
                            req->consumer_name, &sub_ops, sc, &sc->subscriber, &err) != TSE_OK) {
        sc->base.refs--;
        sub_end(sc, &err);
    }
}

/*
 * The stored subscription of the first message (or NOT_FOUND): the caller
 * may use it (a spec's new subscription is the caller's), then attach. On
 * the engine thread.
 */
static void sub_owner_answered(void *arg, const tse_error *err, const Subscription *const *subs,
                               size_t n)
{
    sub_call *sc = arg;
    Tracseq__Events__V1__SubscribeRequest *req;
    bool has_spec;
    tse_error denied;

    pthread_mutex_lock(&sc->base.lock);
    req = sc->first;
    sc->first = NULL;
    has_spec = req->request_case == TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION;
    tse_error_clear(&denied);
    if (sc->ended || !tse_call_active_locked(&sc->base)) {
        /* The stream ended while the engine looked. */
    } else if (err != NULL && err->code != TSE_OK && !(has_spec && err->code == TSE_NOT_FOUND)) {
        sub_end(sc, err);
    } else if (n == 1 && subs[0] != NULL &&
               tse_access_subscription(&sc->base, subs[0]->name, subs[0]->owner,
                                       subs[0]->event_types, subs[0]->n_event_types,
                                       &denied) != TSE_OK) {
        sub_end(sc, &denied);
    } else {
        sub_attach(sc, req);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base); /* the lookup's */
}

/* Checks the first message; the caller's access (sub_owner_answered), then attach. */
static void sub_first_message(sub_call *sc, Tracseq__Events__V1__SubscribeRequest *req)
{
    tse_server *s = sc->base.server;
    const Subscription *spec = NULL;
    const char *name = NULL;
    tse_error err;

    if (req->request_case == TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION) {
        spec = req->subscription;
        name = spec->name;
        sc->auto_ack = spec->auto_ack;
    } else if (req->request_case ==
               TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME) {
        name = req->subscription_name;
    } else {
        sub_end(sc, TSE_ERROR(TSE_INVALID, "subscription",
                              "the first message must carry a subscription or a "
                              "subscription_name"));
        return;
    }
    tse_error_clear(&err);
    if ((spec ? check_spec(s, spec, &err)
              : tse_subscription_name_check(name, "subscription_name", "subscription", &err)) !=
            TSE_OK ||
        check_consumer(req->consumer_name, "consumer_name", &err) != TSE_OK ||
        check_per_message(req->max_deliveries_per_message, &err) != TSE_OK) {
        sub_end(sc, &err);
        return;
    }
    sc->per_message = req->max_deliveries_per_message > 1 ? req->max_deliveries_per_message : 1;
    snprintf(sc->name, sizeof(sc->name), "%s", name ? name : "");
    tse_call_log_kv(&sc->base, "subscription", sc->name);
    if (spec != NULL && (tse_access_patterns(&sc->base, name, spec->event_types,
                                             spec->n_event_types, &err) != TSE_OK ||
                         (!set_owner(&sc->base, req->subscription) &&
                          tse_error_set(&err, TSE_NOMEM, NULL, "out of memory") != TSE_OK))) {
        sub_end(sc, &err);
        return;
    }
    if (s->auth == NULL) {
        sub_attach(sc, req);
        return;
    }
    /* Whose is it? Attached once the engine answers (sub_owner_answered). */
    sc->first = req;
    sc->base.refs++; /* the lookup's */
    if (tse_delivery_get_subscriptions(s->delivery, name, sub_owner_answered, sc, &err) != TSE_OK) {
        sc->base.refs--;
        sub_end(sc, &err);
    }
}

/* Refuses an ack, nack or extend list over the limits: the stream ends
 * with INVALID_ARGUMENT naming it, and none of its ids is acted on. */
static bool later_message_ok(sub_call *sc, Tracseq__Events__V1__SubscribeRequest *req)
{
    tse_status st = TSE_OK;
    tse_error err;

    tse_error_clear(&err);
    switch (req->request_case) {
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK:
        st = check_ack_ids(sc->base.server, req->ack->ack_ids, req->ack->n_ack_ids, "ack.ack_ids",
                           &err);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK:
        st = check_ack_ids(sc->base.server, req->nack->ack_ids, req->nack->n_ack_ids,
                           "nack.ack_ids", &err);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_EXTEND:
        st = check_ack_ids(sc->base.server, req->extend->ack_ids, req->extend->n_ack_ids,
                           "extend.ack_ids", &err);
        break;
    default: break;
    }
    if (st == TSE_OK)
        return true;
    sub_end(sc, &err);
    return false;
}

static void sub_later_message(sub_call *sc, Tracseq__Events__V1__SubscribeRequest *req)
{
    tse_delivery *d = sc->base.server->delivery;
    tse_status st = TSE_OK;
    tse_error err;

    /* After detach the engine may have freed the subscriber: nothing more
     * may be sent for it (requests before the detach are handled before it). */
    if (sc->detached || !later_message_ok(sc, req))
        return;
    switch (req->request_case) {
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK:
        st = tse_delivery_ack(d, sc->subscriber, req->ack->ack_ids, req->ack->n_ack_ids, &err);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK:
        st = tse_delivery_nack(d, sc->subscriber, req->nack->ack_ids, req->nack->n_ack_ids,
                               req->nack->delay_ms, req->nack->reject, &err);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_EXTEND:
        st = tse_delivery_extend(d, sc->subscriber, req->extend->ack_ids, req->extend->n_ack_ids,
                                 req->extend->deadline_ms, &err);
        break;
    default: break; /* a second subscription message is ignored */
    }
    /* Not queued: the stream ends with the reason, so the client learns its
     * ids were not acted on. */
    if (st != TSE_OK)
        sub_end(sc, &err);
}

/* ---- ack messages read from their bytes ---- */

/* SubscribeRequest.ack (AckIds) and AckIds.ack_ids: both field numbers. */
#define REQUEST_ACK 3
#define ACK_IDS     1

/*
 * The ids of an ack message, SubscribeRequest{ack: AckIds{ack_ids}} and
 * nothing else, each within TSE_ACK_ID_MAX and text (UTF-8 without NUL),
 * at most max of them, into *out (tse_malloc'd, each id too; *n of them).
 * False, with nothing allocated, for bytes of any other shape (or out of
 * memory): the full decode reads those and names what is wrong.
 */
static bool ack_ids_of(const uint8_t *p, size_t len, size_t max, char ***out, size_t *n)
{
    tse_pbscan_field f, id;
    size_t pos = 0, at = 0, count = 0;
    char **ids;

    if (!tse_pbscan_next(p, len, &pos, &f) || pos != len || f.id != REQUEST_ACK || f.wire != 2)
        return false;
    while (tse_pbscan_next(f.data, f.len, &at, &id)) {
        if (id.id != ACK_IDS || id.wire != 2 || id.len > TSE_ACK_ID_MAX ||
            tse_utf8_text_span(id.data, id.len) != id.len || ++count > max)
            return false;
    }
    if (at != f.len || (ids = tse_calloc(count ? count : 1, sizeof(*ids))) == NULL)
        return false;
    at = 0;
    for (size_t i = 0; i < count && tse_pbscan_next(f.data, f.len, &at, &id); i++) {
        if ((ids[i] = tse_malloc(id.len + 1)) == NULL) {
            for (size_t j = 0; j < i; j++)
                tse_free(ids[j]);
            tse_free(ids);
            return false;
        }
        memcpy(ids[i], id.data, id.len);
        ids[i][id.len] = '\0';
    }
    *out = ids;
    *n = count;
    return true;
}

/*
 * A live stream's ack message (most of its later messages) taken straight
 * from its bytes: its ids go to the engine in one request, without
 * unpacking the message and copying every id out of it. True when done
 * (queued, or the stream ended because it could not be); false for any
 * other message, which the full decode then reads. With the lock held.
 */
static bool sub_fast_ack(sub_call *sc, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    grpc_slice all;
    char **ids = NULL;
    size_t n = 0;
    bool taken;
    tse_error err;

    if (sc->subscriber == NULL || sc->detached || !grpc_byte_buffer_reader_init(&reader, bb))
        return false;
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    taken = ack_ids_of(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all),
                       (size_t)sc->base.server->config->max_ack_ids, &ids, &n);
    grpc_slice_unref(all);
    if (taken &&
        tse_delivery_ack_take(sc->base.server->delivery, sc->subscriber, ids, n, &err) != TSE_OK)
        sub_end(sc, &err); /* not queued: the client learns its ids were not acted on */
    return taken;
}

static void sub_on_recv(tse_tag *tag, bool ok)
{
    sub_call *sc = TSE_CONTAINER_OF(tag, sub_call, recv_tag);
    Tracseq__Events__V1__SubscribeRequest *req;
    tse_error err;

    pthread_mutex_lock(&sc->base.lock);
    if (!ok || sc->recv_buf == NULL) {
        /* A half-close ends no delivery: only acks stop coming. */
        sc->input_done = true;
        if (sc->subscriber == NULL)
            sub_end(sc, TSE_ERROR(TSE_INVALID, "subscription", "no subscription was given"));
        goto out;
    }
    if (sub_fast_ack(sc, sc->recv_buf)) {
        grpc_byte_buffer_destroy(sc->recv_buf);
        sc->recv_buf = NULL;
        if (!sc->ended)
            sub_post_recv(sc);
        goto out;
    }
    req = (Tracseq__Events__V1__SubscribeRequest *)tse_decode(
        sc->recv_buf, &tracseq__events__v1__subscribe_request__descriptor, &err);
    grpc_byte_buffer_destroy(sc->recv_buf);
    sc->recv_buf = NULL;
    if (req == NULL) {
        sub_end(sc, &err);
        goto out;
    }
    if (sc->subscriber == NULL) {
        /* The next receive is posted once attached (on_attached). */
        sub_first_message(sc, req);
        if (sc->first == req)
            req = NULL; /* kept until the owner is known */
    } else {
        sub_later_message(sc, req);
        if (!sc->ended)
            sub_post_recv(sc);
    }
    if (req != NULL)
        protobuf_c_message_free_unpacked(&req->base, NULL);
out:
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base);
}

/* auto_ack: acks the deliveries of the message just sent, in one request. */
static void sub_auto_ack(sub_call *sc, outgoing *sent)
{
    char **ids = calloc(sc->n_sending ? sc->n_sending : 1, sizeof(*ids));
    size_t n = 0;
    tse_error err;

    if (ids == NULL)
        return; /* out of memory: not acked, so delivered again after the deadline */
    for (outgoing *o = sent; o && n < sc->n_sending; o = o->next)
        if (o->ack_id)
            ids[n++] = o->ack_id;
    if (n > 0 &&
        tse_delivery_ack(sc->base.server->delivery, sc->subscriber, ids, n, &err) != TSE_OK)
        sub_end(sc, &err); /* the ack was not queued */
    free(ids);
}

static void sub_on_send(tse_tag *tag, bool ok)
{
    sub_call *sc = TSE_CONTAINER_OF(tag, sub_call, send_tag);
    outgoing *sent;

    pthread_mutex_lock(&sc->base.lock);
    sent = sc->sending;
    sc->sending = NULL;
    if (sc->send_buf)
        grpc_byte_buffer_destroy(sc->send_buf);
    sc->send_buf = NULL;
    if (sent && ok && sc->subscriber && !sc->detached)
        sub_auto_ack(sc, sent);
    outgoing_free_all(sent);
    sc->n_sending = 0;
    if (ok)
        sub_try_send(sc);
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base);
}

static void sub_on_close(tse_tag *tag, bool ok)
{
    sub_call *sc = TSE_CONTAINER_OF(tag, sub_call, close_tag);

    tse_call_unlist(&sc->base, &sc->base.server->subscribers);
    pthread_mutex_lock(&sc->base.lock);
    sc->closed = true;
    if (sc->subscriber && !sc->detached) {
        sc->detached = true;
        tse_delivery_detach(sc->base.server->delivery, sc->subscriber);
    }
    /* Still ACTIVE: the client cancelled before the status went out. */
    if (tse_call_active_locked(&sc->base))
        sub_finish(sc, TSE_ERROR(TSE_CANCELLED, "", "cancelled by the client"));
    pthread_mutex_unlock(&sc->base.lock);
    tse_call_unref(&sc->base); /* the close op's */
}

static void sub_start(tse_call *c)
{
    sub_call *sc = (sub_call *)c;
    tse_server *s = c->server;

    sc->recv_tag.fn = sub_on_recv;
    sc->send_tag.fn = sub_on_send;
    sc->close_tag.fn = sub_on_close;
    pthread_mutex_lock(&s->watch_lock);
    pthread_mutex_lock(&c->lock);
    if (s->subscribers.n >= s->config->max_subscribers) {
        tse_error err;
        tse_error_set(&err, TSE_RESOURCE_EXHAUSTED, NULL,
                      "subscriber streams: %d open, at most %d (MAX_SUBSCRIBER_STREAMS); retry "
                      "later",
                      s->subscribers.n, s->config->max_subscribers);
        sc->closed = true;
        tse_call_finish_locked(c, NULL, &err);
    } else if (tse_call_open_stream_locked(c, &s->subscribers, &sc->close_tag)) {
        sub_post_recv(sc);
    } else {
        sc->closed = true;
    }
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&s->watch_lock);
}

const tse_method tse_method_subscribe = {
    .path = "/tracseq.events.v1.EventService/Subscribe",
    .name = "Subscribe",
    .streaming_in = true,
    .backlog = 16,
    .call_size = sizeof(sub_call),
    .request = &tracseq__events__v1__subscribe_request__descriptor,
    .start = sub_start,
    .release = sub_release,
};

void tse_subscribe_shutdown(tse_server *s)
{
    tse_call_cancel_all(s, &s->subscribers, "the server is shutting down; reconnect");
}

/* ===================== unary subscription RPCs ========================== */

/* ListSubscriptions: the caller's own, or all of them for an admin. */
static void answer_list(tse_call *c, const Subscription *const *subs, size_t n)
{
    Tracseq__Events__V1__ListSubscriptionsResponse out =
        TRACSEQ__EVENTS__V1__LIST_SUBSCRIPTIONS_RESPONSE__INIT;
    Subscription **mine = NULL;
    size_t k = 0;

    if (c->server->auth == NULL || tse_access_admin_used(c, "subscriptions")) {
        out.n_subscriptions = n;
        out.subscriptions = (Subscription **)subs;
        tse_call_finish_unary(c, &out.base, NULL);
        return;
    }
    mine = calloc(n ? n : 1, sizeof(*mine));
    if (mine == NULL) {
        tse_call_fail(c, TSE_ERROR(TSE_NOMEM, "", "out of memory"));
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (subs[i] != NULL && tse_access_owns(c, subs[i]->owner))
            mine[k++] = (Subscription *)subs[i];
    out.n_subscriptions = k;
    out.subscriptions = mine;
    tse_call_finish_unary(c, &out.base, NULL);
    free(mine);
}

static void answer_subscriptions(void *arg, const tse_error *err, const Subscription *const *subs,
                                 size_t n)
{
    tse_call *c = arg;

    if (err != NULL && err->code != TSE_OK) {
        tse_call_fail(c, err);
        return;
    }
    if (c->method == &tse_method_list_subscriptions) {
        answer_list(c, subs, n);
    } else if (n == 1 && subs[0] != NULL && c->method != &tse_method_delete_subscription &&
               !sub_allowed(c, subs[0])) {
        /* Get, or a create that met another identity's subscription: denied. */
    } else if (c->method == &tse_method_delete_subscription) {
        Tracseq__Events__V1__DeleteSubscriptionResponse out =
            TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_RESPONSE__INIT;
        tse_call_finish_unary(c, &out.base, NULL);
    } else if (n == 1 && subs[0] != NULL) {
        tse_call_finish_unary(c, &subs[0]->base, NULL);
    } else {
        tse_call_fail(c, TSE_ERROR(TSE_INTERNAL, "", "no subscription in the answer"));
    }
}

static void create_start(tse_call *c)
{
    const Tracseq__Events__V1__CreateSubscriptionRequest *req =
        (const Tracseq__Events__V1__CreateSubscriptionRequest *)c->request;

    tse_error err;

    tse_error_clear(&err);
    if (req->subscription == NULL) {
        tse_call_fail(c, TSE_ERROR(TSE_INVALID, "subscription", "is required"));
    } else if (check_spec(c->server, req->subscription, &err) != TSE_OK ||
               tse_access_patterns(c, req->subscription->name, req->subscription->event_types,
                                   req->subscription->n_event_types, &err) != TSE_OK) {
        tse_call_fail(c, &err);
    } else if (!set_owner(c, req->subscription)) {
        tse_call_fail(c, TSE_ERROR(TSE_NOMEM, "", "out of memory"));
    } else {
        tse_call_log_kv(c, "subscription", req->subscription->name);
        if (tse_delivery_create_subscription(c->server->delivery, req->subscription,
                                             answer_subscriptions, c, &err) != TSE_OK)
            tse_call_fail(c, &err);
    }
}

/* DeleteSubscription, once the caller may (its owner, or an admin). */
static void delete_next(tse_call *c)
{
    const char *name = ((const Tracseq__Events__V1__DeleteSubscriptionRequest *)c->request)->name;
    tse_error err;

    if (tse_delivery_delete_subscription(c->server->delivery, name, answer_subscriptions, c,
                                         &err) != TSE_OK)
        tse_call_fail(c, &err);
}

/* GetSubscription and DeleteSubscription: a name, and the engine's answer. */
static void by_name_start(tse_call *c)
{
    bool is_delete = c->method == &tse_method_delete_subscription;
    const char *name =
        is_delete ? ((const Tracseq__Events__V1__DeleteSubscriptionRequest *)c->request)->name
                  : ((const Tracseq__Events__V1__GetSubscriptionRequest *)c->request)->name;
    tse_status st;
    tse_error err;

    if (tse_subscription_name_check(name, "name", "subscription", &err) != TSE_OK) {
        tse_call_fail(c, &err);
        return;
    }
    tse_call_log_kv(c, "subscription", name);
    if (is_delete) {
        tse_subscription_access(c, name, delete_next);
        return;
    }
    st = tse_delivery_get_subscriptions(c->server->delivery, name, answer_subscriptions, c, &err);
    if (st != TSE_OK)
        tse_call_fail(c, &err);
}

static void list_start(tse_call *c)
{
    tse_error err;

    if (tse_delivery_get_subscriptions(c->server->delivery, NULL, answer_subscriptions, c, &err) !=
        TSE_OK)
        tse_call_fail(c, &err);
}

static void answer_acks(void *arg, const tse_error *err, uint32_t done, const char *const *unknown,
                        size_t n_unknown)
{
    tse_call *c = arg;

    if (err != NULL && err->code != TSE_OK) {
        tse_call_fail(c, err);
        return;
    }
    if (c->method == &tse_method_acknowledge) {
        Tracseq__Events__V1__AcknowledgeResponse out =
            TRACSEQ__EVENTS__V1__ACKNOWLEDGE_RESPONSE__INIT;
        out.acked = done;
        out.n_unknown_ack_ids = n_unknown;
        out.unknown_ack_ids = (char **)unknown;
        tse_call_finish_unary(c, &out.base, NULL);
    } else {
        Tracseq__Events__V1__NackResponse out = TRACSEQ__EVENTS__V1__NACK_RESPONSE__INIT;
        out.nacked = done;
        out.n_unknown_ack_ids = n_unknown;
        out.unknown_ack_ids = (char **)unknown;
        tse_call_finish_unary(c, &out.base, NULL);
    }
}

/* The subscription, ids and (Nack) delay of an Acknowledge or Nack request. */
typedef struct ack_request {
    const char *name;
    char **ids;
    size_t n;
    uint32_t delay_ms;
    bool reject;
} ack_request;

static ack_request ack_request_of(const tse_call *c)
{
    const Tracseq__Events__V1__AcknowledgeRequest *ack =
        (const Tracseq__Events__V1__AcknowledgeRequest *)c->request;
    const Tracseq__Events__V1__NackRequest *nack =
        (const Tracseq__Events__V1__NackRequest *)c->request;

    if (c->method == &tse_method_nack)
        return (ack_request){nack->subscription, nack->ack_ids, nack->n_ack_ids, nack->delay_ms,
                             nack->reject};
    return (ack_request){ack->subscription, ack->ack_ids, ack->n_ack_ids, 0, false};
}

/* Acknowledge and Nack, once the caller may use the subscription. */
static void ack_next(tse_call *c)
{
    ack_request r = ack_request_of(c);
    tse_delivery *d = c->server->delivery;
    tse_status st;
    tse_error err;

    st = c->method == &tse_method_nack
             ? tse_delivery_nack_ids(d, r.name, r.ids, r.n, r.delay_ms, r.reject, answer_acks, c,
                                     &err)
             : tse_delivery_acknowledge(d, r.name, r.ids, r.n, answer_acks, c, &err);
    if (st != TSE_OK)
        tse_call_fail(c, &err);
}

/* Acknowledge and Nack: a subscription, its ack ids, and for Nack a delay. */
static void ack_start(tse_call *c)
{
    ack_request r = ack_request_of(c);
    const char *name = r.name;
    char **ids = r.ids;
    size_t n = r.n;
    tse_error err;

    if (tse_subscription_name_check(name, "subscription", "subscription", &err) != TSE_OK ||
        check_ack_ids(c->server, ids, n, "ack_ids", &err) != TSE_OK) {
        tse_call_fail(c, &err);
        return;
    }
    if (n == 0) {
        tse_call_fail(c, TSE_ERROR(TSE_INVALID, "ack_ids", "at least one is required"));
        return;
    }
    tse_call_log_kv(c, "subscription", name);
    tse_subscription_access(c, name, ack_next);
}

typedef struct pull_call {
    tse_call base;
    tse_tag close_tag;
    uint64_t pull_id;
    uint32_t max, wait;
    char name[TSE_ERROR_FIELD_MAX];
} pull_call;

/* The call ended: when the client cancelled it (or its deadline passed)
 * while the pull waits, the engine lets go of the pull at once instead of
 * reading events for nobody until wait_ms runs out. */
static void pull_on_close(tse_tag *tag, bool ok)
{
    pull_call *pc = TSE_CONTAINER_OF(tag, pull_call, close_tag);

    /* Not queued (out of memory): the pull still ends at its wait_ms. */
    if (pc->base.cancelled)
        (void)tse_delivery_pull_cancel(pc->base.server->delivery, pc->pull_id, NULL);
    tse_call_unref(&pc->base);
}

/* Starts RECV_CLOSE_ON_SERVER now, so a cancel is seen while the pull waits. */
static void pull_watch_close(pull_call *pc)
{
    pc->close_tag.fn = pull_on_close;
    pthread_mutex_lock(&pc->base.lock);
    tse_call_watch_close_locked(&pc->base, &pc->close_tag);
    pthread_mutex_unlock(&pc->base.lock);
}

static void answer_pull(void *arg, const tse_error *err, const tse_delivered *d, size_t n)
{
    pull_call *pc = arg;
    grpc_slice slice;
    size_t len = 0;
    uint8_t *p;

    if (err != NULL && err->code != TSE_OK) {
        tse_call_fail(&pc->base, err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        len += bytes_len(delivery_len(&d[i], pc->name));
    slice = grpc_slice_malloc(len);
    p = GRPC_SLICE_START_PTR(slice);
    for (size_t i = 0; i < n; i++) {
        *p++ = 1 << 3 | 2;
        p = tse_pbwire_put_varint(p, delivery_len(&d[i], pc->name));
        p = put_delivery(p, &d[i], pc->name);
        log_delivered("Pull", pc->name, &d[i]);
    }
    /* Already encoded: finish with the raw bytes. */
    tse_call_finish(&pc->base, tse_byte_buffer_take(slice), NULL);
}

/* Pull, once the caller may use the subscription. */
static void pull_next(tse_call *c)
{
    pull_call *pc = (pull_call *)c;
    const Tracseq__Events__V1__PullRequest *req =
        (const Tracseq__Events__V1__PullRequest *)c->request;
    tse_error err;

    pc->pull_id = atomic_fetch_add(&c->server->next_pull_id, 1);
    pull_watch_close(pc);
    if (tse_delivery_pull(c->server->delivery, req->subscription, req->consumer_name, pc->max,
                          pc->wait, pc->pull_id, answer_pull, pc, &err) != TSE_OK)
        tse_call_fail(c, &err);
}

static void pull_start(tse_call *c)
{
    pull_call *pc = (pull_call *)c;
    const Tracseq__Events__V1__PullRequest *req =
        (const Tracseq__Events__V1__PullRequest *)c->request;
    uint32_t max, wait;
    tse_error err;

    max = req->max_events == 0 ? TSE_PULL_DEFAULT_EVENTS : req->max_events;
    wait = req->wait_ms > TSE_PULL_MAX_WAIT_MS ? TSE_PULL_MAX_WAIT_MS : req->wait_ms;
    if (tse_subscription_name_check(req->subscription, "subscription", "subscription", &err) !=
            TSE_OK ||
        check_consumer(req->consumer_name, "consumer_name", &err) != TSE_OK) {
        tse_call_fail(c, &err);
    } else if (max > TSE_PULL_MAX_EVENTS) {
        tse_error_set(&err, TSE_INVALID, "max_events", "at most %d per pull", TSE_PULL_MAX_EVENTS);
        tse_call_fail(c, &err);
    } else {
        snprintf(pc->name, sizeof(pc->name), "%s", req->subscription);
        tse_call_log_kv(c, "subscription", req->subscription);
        pc->max = max;
        pc->wait = wait;
        tse_subscription_access(c, req->subscription, pull_next);
    }
}

#define UNARY(var, method, fn, size, req)                                                          \
    const tse_method var = {                                                                       \
        .path = "/tracseq.events.v1.EventService/" method,                                         \
        .name = method,                                                                            \
        .streaming_in = false,                                                                     \
        .backlog = 4,                                                                              \
        .call_size = size,                                                                         \
        .request = &tracseq__events__v1__##req##__descriptor,                                      \
        .start = fn,                                                                               \
    }

UNARY(tse_method_create_subscription, "CreateSubscription", create_start, sizeof(tse_call),
      create_subscription_request);
UNARY(tse_method_get_subscription, "GetSubscription", by_name_start, sizeof(tse_call),
      get_subscription_request);
UNARY(tse_method_list_subscriptions, "ListSubscriptions", list_start, sizeof(tse_call),
      list_subscriptions_request);
UNARY(tse_method_delete_subscription, "DeleteSubscription", by_name_start, sizeof(tse_call),
      delete_subscription_request);
UNARY(tse_method_acknowledge, "Acknowledge", ack_start, sizeof(tse_call), acknowledge_request);
UNARY(tse_method_nack, "Nack", ack_start, sizeof(tse_call), nack_request);
UNARY(tse_method_pull, "Pull", pull_start, sizeof(pull_call), pull_request);
