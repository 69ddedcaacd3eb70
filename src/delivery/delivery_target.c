/*
 * delivery_target.c - dead-letter targets: a subscription whose
 * dead_letter_type is set hands an event it gives up on to that event type
 * instead of its own dead-letter store. The event is published again, on the
 * engine's connection, as a new generic event of the target type whose data
 * holds the original event (proto3 JSON) and why it was given up on, so any
 * subscription matching the type receives it, like a Pub/Sub dead-letter
 * topic.
 *
 * Invariants: the original entry is acked in its group only after the new
 * event is durably appended (the caller acks when this says "published"); a
 * failure leaves it pending, so the next claim scan tries again. An event
 * that already is of the target type goes to the default store, so a
 * subscription that matches its own target cannot loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/pbjson.h"
#include "delivery/delivery_internal.h"
#include "domain/validate.h"
#include "obs/log.h"

#define SERVICE_SOURCE "tracseq-events"

/* The value of field `name` of a stream entry's [field, value, ...]. */
typedef struct given_up {
    const char *subscription, *stream, *stream_id, *reason;
    long long attempts;
    const Tracseq__Events__V1__Event *event;
} given_up;

/* The new event's data: {"subscription", "stream", "stream_id",
 * "attempts", "reason", "event"}; NULL when out of memory. */
static Google__Protobuf__Struct *data_of(const given_up *g)
{
    Google__Protobuf__Struct *out = NULL;
    json_t *ev = tse_pbjson_from_message(&g->event->base, 0);
    json_t *obj;
    tse_error err;

    if (ev == NULL)
        return NULL;
    obj = json_pack("{s:s, s:s, s:s, s:I, s:s, s:o}", "subscription", g->subscription, "stream",
                    g->stream, "stream_id", g->stream_id, "attempts", (json_int_t)g->attempts,
                    "reason", g->reason, "event", ev);
    if (obj == NULL)
        return NULL;
    if (tse_pbjson_to_struct(obj, &out, &err) != TSE_OK)
        out = NULL;
    json_decref(obj);
    return out;
}

/* The new event's metadata, dead_letter_* copies of data's plain values. */
#define N_META 6
static void metadata_of(const given_up *g, const char *attempts,
                        Tracseq__Events__V1__Event__MetadataEntry meta[N_META],
                        Tracseq__Events__V1__Event__MetadataEntry *ptrs[N_META])
{
    const char *kv[N_META][2] = {{"dead_letter_subscription", g->subscription},
                                 {"dead_letter_stream", g->stream},
                                 {"dead_letter_stream_id", g->stream_id},
                                 {"dead_letter_attempts", attempts},
                                 {"dead_letter_reason", g->reason},
                                 {"dead_letter_event_type", g->event->event_type}};

    for (size_t i = 0; i < N_META; i++) {
        tracseq__events__v1__event__metadata_entry__init(&meta[i]);
        meta[i].key = (char *)kv[i][0];
        meta[i].value = (char *)kv[i][1];
        ptrs[i] = &meta[i];
    }
}

/* The packed new event of type `type` (caller frees *out); false when out
 * of memory. */
static bool pack_target(const given_up *g, const char *type, char id[40], uint8_t **out,
                        size_t *len)
{
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Tracseq__Events__V1__Event__MetadataEntry meta[N_META], *ptrs[N_META];
    char attempts[24];
    struct timespec now;

    snprintf(attempts, sizeof(attempts), "%lld", g->attempts);
    clock_gettime(CLOCK_REALTIME, &now);
    tse_uuid_generate(id);
    ev.id = id;
    ev.event_type = (char *)type;
    ev.source_service = SERVICE_SOURCE;
    ev.version = TSE_DEFAULT_VERSION;
    ts.seconds = now.tv_sec;
    ts.nanos = (int32_t)now.tv_nsec;
    ev.timestamp = &ts;
    ev.correlation_id = g->event->correlation_id;
    ev.causation_id = g->event->id;
    ev.subject = g->event->subject;
    /* The trace of the original goes on (docs/tracing.md). */
    ev.traceparent = g->event->traceparent;
    ev.tracestate = g->event->tracestate;
    ev.priority = g->event->priority ? g->event->priority : TSE_DEFAULT_PRIORITY;
    metadata_of(g, attempts, meta, ptrs);
    ev.n_metadata = N_META;
    ev.metadata = ptrs;
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    if ((ev.data = data_of(g)) == NULL)
        return false;
    *len = tracseq__events__v1__event__get_packed_size(&ev);
    if ((*out = malloc(*len ? *len : 1)) != NULL)
        tracseq__events__v1__event__pack(&ev, *out);
    protobuf_c_message_free_unpacked(&ev.data->base, NULL);
    return *out != NULL;
}

/* Registers the stream, then appends the packed event to it: registered
 * first, so a stored event's stream is always found by discovery (the set
 * is another slot, so the two are separate commands). */
static bool append(tse_delivery *d, const char *type, int priority, const char *id,
                   const uint8_t *env, size_t len)
{
    char key[TSE_EVENT_TYPE_MAX + 48];
    tse_append a = {0};
    tse_append_reply ar;
    bool new_stream;

    tse_key_stream(type, priority, key, sizeof(key));
    a.stream_key = key;
    a.event_id = id;
    a.event_type = type;
    a.envelope = env;
    a.envelope_len = len;
    if (tse_stream_append(d->conn, &a, &ar, &new_stream) != TSE_OK) {
        tse_log(TSE_LOG_WARN, "dead-letter target: append failed",
                (const char *[]){"stream", key, "error", ar.message, NULL});
        return false;
    }
    if (new_stream)
        d->next_discover_ms = 0; /* a new stream: subscribers of the type learn of it now */
    return true;
}

tse_target_result tse_dl_target_publish(tse_delivery *d, tse_sub *sub, const char *key,
                                        const char *id, long long attempts, const char *reason,
                                        const tse_stream_entry *entry)
{
    const char *type = sub->def->dead_letter_type;
    size_t env_len = 0;
    const char *env = tse_stream_entry_field(entry, "event", &env_len);
    Tracseq__Events__V1__Event *orig;
    given_up g = {sub->def->name, key, id, reason, attempts, NULL};
    uint8_t *packed = NULL;
    size_t len = 0;
    char new_id[40];
    bool ok;

    if (type == NULL || type[0] == '\0' || env == NULL)
        return TSE_TARGET_NONE;
    orig = tracseq__events__v1__event__unpack(NULL, env_len, (const uint8_t *)env);
    if (orig == NULL)
        return TSE_TARGET_FAILED; /* stored by us, so out of memory: try again later */
    if (strcmp(orig->event_type, type) == 0) {
        protobuf_c_message_free_unpacked(&orig->base, NULL);
        return TSE_TARGET_NONE; /* its own target: the default store, no loop */
    }
    g.event = orig;
    ok = pack_target(&g, type, new_id, &packed, &len) &&
         append(d, type, orig->priority ? orig->priority : TSE_DEFAULT_PRIORITY, new_id, packed,
                len);
    free(packed);
    protobuf_c_message_free_unpacked(&orig->base, NULL);
    return ok ? TSE_TARGET_PUBLISHED : TSE_TARGET_FAILED;
}
