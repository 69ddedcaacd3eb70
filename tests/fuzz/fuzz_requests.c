/*
 * fuzz_requests.c - libFuzzer target for every RPC's request as the service
 * reads it: the bytes of a gRPC message go through tse_decode (the
 * transport's one decoding boundary, src/transport/call.c) as the method's
 * request type, then through the domain checks the handler or the delivery
 * engine applies before anything is stored or queued:
 *
 *   Publish, PublishStream   tse_event_prepare, strict and lenient, then
 *                            the envelope packed as it is stored, which must
 *                            decode again as an Event (subscribers read it);
 *                            and the envelope the handler builds from the
 *                            client's bytes instead (domain/envelope.h) when
 *                            it may, which must decode to the packed one
 *   PublishCloudEvent        the CloudEvent mapped as the handler maps it
 *                            (domain/cloudevent.h: protobuf format -> JSON
 *                            format -> envelope -> Event), then Publish's
 *   PublishBatch(Stream)     tse_decode_bounded with the batch limit (the
 *                            count of entries before unpacking must agree
 *                            with what unpacks), and the handler's batch
 *                            reader, one event at a time, which must agree
 *                            with it (verdict, error, every event); then
 *                            each event as Publish's
 *   Subscribe                the first message's subscription (validated as
 *                            CreateSubscription's) or name; later messages'
 *                            ack ids split as the engine does
 *   CreateSubscription       the spec copied as the engine copies it (pack,
 *                            unpack), tse_subscription_validate, then the
 *                            validated spec compared with itself
 *   Get/DeleteSubscription   the name check
 *   Acknowledge, Nack        ack_ids present, the name check, each id split
 *   Pull                     max_events and the name check
 *   dead letters, Seek,      tse_operate_check (domain/operate.h): ids,
 *   snapshots                pages, seek targets, names
 *   List*, GetStats, Health  decoding only
 *   ServerReflection         tse_reflection_answer (v1alpha and v1)
 *
 * Every input also goes through tse_pbscan_timestamp (field 5, an Event's
 * timestamp), as the delivery engine reads stored envelopes.
 *
 * tse_decode runs the wire scan (codec/pbscan.h: nesting depth, UTF-8,
 * field numbers) before protobuf-c unpacks, exactly as the server does.
 *
 * Input: the first byte picks the method (and, in its high bit, whether a
 * x-correlation-id fallback is given to prepare); the rest is the message.
 * Checked besides ASan/UBSan/LSan: a failure is a status with an error that
 * names a field (or says why) in bounded, terminated strings.
 */
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <stdbool.h>

#include "codec/pbjson.h"
#include "codec/pbscan.h"
#include "domain/cloudevent.h"
#include "domain/envelope.h"
#include "domain/limits.h"
#include "domain/operate.h"
#include "domain/subscription.h"
#include "domain/validate.h"
#include "fuzz_support.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "reflection/reflection.h"
#include "storage/ack_id.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "transport/internal.h"

typedef Tracseq__Events__V1__Subscription Subscription;

extern const unsigned char tse_descriptor_set[];
extern const size_t tse_descriptor_set_len;

enum method {
    M_PUBLISH,
    M_SUBSCRIBE,
    M_CREATE,
    M_GET,
    M_DELETE,
    M_ACK,
    M_NACK,
    M_PULL,
    M_LIST,
    M_STATS,
    M_TYPES,
    M_HEALTH,
    M_REFLECTION_V1ALPHA,
    M_REFLECTION_V1,
    M_DL_LIST,
    M_DL_GET,
    M_DL_REDRIVE,
    M_DL_PURGE,
    M_SEEK,
    M_SNAP_CREATE,
    M_SNAP_LIST,
    M_SNAP_DELETE,
    M_PUBLISH_BATCH,
    M_CLOUDEVENT,
    M_COUNT
};

static void check_error(tse_status st, const tse_error *err);

/* The message as a gRPC worker gets it: a byte buffer, decoded by tse_decode
 * (the wire scan, then protobuf-c), which refuses with an error that says why. */
static ProtobufCMessage *decode(const uint8_t *data, size_t size,
                                const ProtobufCMessageDescriptor *desc)
{
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data, size);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    ProtobufCMessage *msg;
    tse_error err;

    tse_error_clear(&err);
    msg = tse_decode(bb, desc, &err);
    if (msg == NULL)
        check_error(TSE_INVALID, &err);
    grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(slice);
    return msg;
}

/* The reflection service scans its request the same way before the index
 * unpacks it (src/transport/reflect.c). */
static bool reflection_scan(const uint8_t *data, size_t size)
{
    tse_error err;

    tse_error_clear(&err);
    if (tse_pbscan(&grpc__reflection__v1alpha__server_reflection_request__descriptor, data, size,
                   TSE_PBJSON_MAX_DEPTH, &err) == TSE_PBSCAN_OK)
        return true;
    check_error(TSE_INVALID, &err);
    return false;
}

static void check_error(tse_status st, const tse_error *err)
{
    FUZZ_CHECK(st != TSE_OK && err->code == st, "status %d, error code %d", st, err->code);
    FUZZ_CHECK(memchr(err->field, '\0', sizeof(err->field)) != NULL, "field not terminated");
    FUZZ_CHECK(memchr(err->message, '\0', sizeof(err->message)) != NULL && err->message[0],
               "message empty or not terminated");
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    uint8_t *buf;

    *len = protobuf_c_message_get_packed_size(msg);
    buf = malloc(*len ? *len : 1);
    if (buf == NULL)
        abort();
    FUZZ_CHECK(protobuf_c_message_pack(msg, buf) == *len, "packed size changed");
    return buf;
}

/* ---- Publish --------------------------------------------------------------- */

/* The envelope built from the event's bytes (wire, NULL when the handler
 * would not have them), when it is, decodes to the packed one (env). */
static void reuse_check(const Tracseq__Events__V1__Event *ev, const tse_prepare_result *res,
                        const uint8_t *wire, size_t wire_len, const uint8_t *env, size_t len)
{
    uint8_t *reused = NULL, *again;
    size_t reused_len, again_len;
    ProtobufCMessage *back;

    if (wire == NULL || !tse_event_envelope_reuse(wire, wire_len, ev, res, &reused, &reused_len))
        return;
    back = protobuf_c_message_unpack(&tracseq__events__v1__event__descriptor, NULL, reused_len,
                                     reused);
    FUZZ_CHECK(back != NULL, "a reused envelope (%zu bytes) does not decode", reused_len);
    again = pack(back, &again_len);
    FUZZ_CHECK(again_len == len && memcmp(again, env, len) == 0,
               "a reused envelope decodes to another event than the packed one");
    free(again);
    protobuf_c_message_free_unpacked(back, NULL);
    free(reused);
}

/* The bytes of the next field 1 (a request's event, a batch's events[i]) at
 * the root of request from *pos, as the handler finds them; NULL when none. */
static const uint8_t *event_wire(const grpc_slice *request, size_t *pos, size_t *len)
{
    tse_pbscan_field f;

    while (tse_pbscan_next(GRPC_SLICE_START_PTR(*request), GRPC_SLICE_LENGTH(*request), pos, &f))
        if (f.id == 1 && f.wire == 2) {
            *len = f.len;
            return f.data;
        }
    return NULL;
}

/* One event prepared as the handler prepares it (wire: its bytes, or NULL). */
static void prepare_check(Tracseq__Events__V1__Event *ev, tse_validation_mode mode,
                          const char *md_corr, const uint8_t *wire, size_t wire_len)
{
    tse_prepare_result res;
    tse_error err;
    tse_status st;

    tse_error_clear(&err);
    st = tse_event_prepare(ev, mode, 1700000000, 123456789, md_corr, &res, &err);
    if (st == TSE_OK) {
        size_t len;
        uint8_t *env = pack(&ev->base, &len);
        ProtobufCMessage *back =
            protobuf_c_message_unpack(&tracseq__events__v1__event__descriptor, NULL, len, env);
        FUZZ_CHECK(back != NULL, "a prepared event (%zu bytes) does not decode again", len);
        FUZZ_CHECK(tse_uuid_valid(ev->id), "prepared id \"%s\"", ev->id);
        FUZZ_CHECK(ev->priority >= 1 && ev->priority <= 5, "priority %d", ev->priority);
        FUZZ_CHECK(mode == TSE_VALIDATION_LENIENT || res.schema_valid, "strict stored a misfit");
        reuse_check(ev, &res, wire, wire_len, env, len);
        protobuf_c_message_free_unpacked(back, NULL);
        free(env);
    } else {
        check_error(st, &err);
    }
}

/* As the handlers decode a publish request: its bytes kept (empty when
 * they may not be reused). */
static ProtobufCMessage *decode_keeping(const uint8_t *data, size_t size,
                                        const ProtobufCMessageDescriptor *desc, size_t max,
                                        grpc_slice *bytes)
{
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data, size);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    ProtobufCMessage *msg;
    tse_error err;

    tse_error_clear(&err);
    *bytes = grpc_empty_slice();
    msg = tse_decode_keeping(bb, desc, max, bytes, &err);
    if (msg == NULL)
        check_error(TSE_INVALID, &err);
    grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(slice);
    return msg;
}

static void publish_once(const uint8_t *data, size_t size, tse_validation_mode mode,
                         const char *md_corr)
{
    grpc_slice bytes;
    Tracseq__Events__V1__PublishRequest *req =
        (Tracseq__Events__V1__PublishRequest *)decode_keeping(
            data, size, &tracseq__events__v1__publish_request__descriptor, 0, &bytes);
    size_t pos = 0, len = 0, len2;
    const uint8_t *wire = event_wire(&bytes, &pos, &len);

    if (wire != NULL && event_wire(&bytes, &pos, &len2) != NULL)
        wire = NULL; /* the event twice: merged by unpacking, so packed */
    if (req != NULL && req->event != NULL)
        prepare_check(req->event, mode, md_corr, wire, len);
    if (req != NULL)
        protobuf_c_message_free_unpacked(&req->base, NULL);
    grpc_slice_unref(bytes);
}

static void publish_cloudevent_once(const uint8_t *data, size_t size, tse_validation_mode mode)
{
    Tracseq__Events__V1__PublishCloudEventRequest *req =
        (Tracseq__Events__V1__PublishCloudEventRequest *)decode(
            data, size, &tracseq__events__v1__publish_cloud_event_request__descriptor);
    Tracseq__Events__V1__Event *ev = NULL;
    json_t *ce = NULL, *env = NULL;
    tse_status st;
    tse_error err;

    tse_error_clear(&err);
    if (req != NULL && req->event != NULL) {
        if ((st = tse_ce_from_proto(req->event, &ce, &err)) != TSE_OK ||
            (st = tse_ce_to_envelope(ce, &env, &err)) != TSE_OK ||
            (st = tse_ce_envelope_event(env, &ev, &err)) != TSE_OK)
            check_error(st, &err);
        else
            prepare_check(ev, mode, NULL, NULL, 0);
    }
    if (ev != NULL)
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    json_decref(env);
    json_decref(ce);
    if (req != NULL)
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* The batch reader (transport/internal.h) over the same bytes agrees with
 * decoding the request whole (req, NULL with whole_err when it did not):
 * the same verdict and error, the same events. Each event it reads is
 * prepared as the handler prepares it, from its bytes when reusable. */
static void batch_reader_check(const uint8_t *data, size_t size, size_t max,
                               tse_validation_mode mode,
                               const Tracseq__Events__V1__PublishBatchRequest *req,
                               const tse_error *whole_err)
{
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data, size);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    tse_status st = TSE_OK;
    tse_batch_reader r;
    tse_error err;

    tse_error_clear(&err);
    if (!tse_batch_open(&r, bb, &tracseq__events__v1__publish_batch_request__descriptor, max,
                        &err)) {
        st = err.code;
    } else {
        FUZZ_CHECK(req == NULL || r.n == req->n_events, "reader: %zu events, whole: %zu", r.n,
                   req->n_events);
        for (size_t i = 0; i < r.n && st == TSE_OK; i++) {
            ProtobufCMessage *ev;
            const uint8_t *wire;
            size_t wire_len, a_len, b_len;
            st = tse_batch_next(&r, &ev, &wire, &wire_len, &err);
            if (st != TSE_OK)
                break;
            /* A request that does not decode whole may still hold good
             * events before its bad one: the reader then fails later, and
             * the verdict below must be the whole request's error. */
            if (req != NULL) {
                uint8_t *a = pack(ev, &a_len), *b = pack(&req->events[i]->base, &b_len);
                FUZZ_CHECK(a_len == b_len && memcmp(a, b, a_len) == 0,
                           "events[%zu] read alone differs from the whole request's", i);
                free(a);
                free(b);
            }
            prepare_check((Tracseq__Events__V1__Event *)ev, mode, NULL, r.reusable ? wire : NULL,
                          wire_len);
            protobuf_c_message_free_unpacked(ev, NULL);
        }
        tse_batch_close(&r);
    }
    if (req != NULL) {
        FUZZ_CHECK(st == TSE_OK, "the reader refused (%d: %s) a request that decodes", st,
                   err.message);
    } else {
        FUZZ_CHECK(st == whole_err->code && strcmp(err.field, whole_err->field) == 0 &&
                       strcmp(err.message, whole_err->message) == 0,
                   "the reader's error (%d %s: %s) is not the whole request's (%d %s: %s)", st,
                   err.field, err.message, whole_err->code, whole_err->field, whole_err->message);
        check_error(st, &err);
    }
    grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(slice);
}

/* A small bound (8) as well as the real one, so the fuzzer reaches both
 * sides of it. */
static void publish_batch_once(const uint8_t *data, size_t size, size_t max,
                               tse_validation_mode mode)
{
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data, size);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    Tracseq__Events__V1__PublishBatchRequest *req;
    size_t counted = tse_pbscan_count(data, size, 1);
    tse_error err;

    tse_error_clear(&err);
    req = (Tracseq__Events__V1__PublishBatchRequest *)tse_decode_bounded(
        bb, &tracseq__events__v1__publish_batch_request__descriptor, max, &err);
    grpc_byte_buffer_destroy(bb);
    grpc_slice_unref(slice);
    if (req == NULL)
        check_error(TSE_INVALID, &err);
    else
        FUZZ_CHECK(req->n_events <= max && req->n_events == counted, "%zu events, %zu counted",
                   req->n_events, counted);
    batch_reader_check(data, size, max, mode, req, &err);
    if (req != NULL)
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- subscriptions ---------------------------------------------------------- */

/* Validates a spec as the engine does: on its own copy (pack, unpack). */
static void subscription_check(const Subscription *spec)
{
    size_t len;
    uint8_t *buf = pack(&spec->base, &len);
    Subscription *copy = tracseq__events__v1__subscription__unpack(NULL, len, buf);
    tse_error err;
    tse_status st;

    free(buf);
    FUZZ_CHECK(copy != NULL, "a decoded subscription does not decode again");
    tse_error_clear(&err);
    st = tse_subscription_validate(copy, &err);
    if (st == TSE_OK) {
        FUZZ_CHECK(tse_subscription_name_valid(copy->name, TSE_SUBSCRIPTION_NAME_MAX), "name");
        FUZZ_CHECK(copy->n_event_types >= 1 && copy->n_event_types <= TSE_SUBSCRIPTION_PATTERNS_MAX,
                   "%zu patterns", copy->n_event_types);
        for (size_t i = 0; i < copy->n_event_types; i++)
            FUZZ_CHECK(tse_pattern_valid(copy->event_types[i]), "pattern %zu", i);
        FUZZ_CHECK(tse_subscription_same(copy, copy), "a subscription differs from itself");
        FUZZ_CHECK(tse_subscription_validate(copy, NULL) == TSE_OK, "valid once, not twice");
    } else {
        check_error(st, &err);
    }
    protobuf_c_message_free_unpacked(&copy->base, NULL);
}

static void ack_ids_check(char *const *ids, size_t n)
{
    char key[256];
    const char *entry;

    for (size_t i = 0; i < n; i++)
        if (tse_ack_id_split(ids[i], key, sizeof(key), &entry))
            FUZZ_CHECK(entry > ids[i] && entry[-1] == '/', "entry of \"%s\"", ids[i]);
}

static void subscribe(const Tracseq__Events__V1__SubscribeRequest *req)
{
    switch (req->request_case) {
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION:
        subscription_check(req->subscription);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME:
        (void)tse_subscription_name_valid(req->subscription_name, TSE_SUBSCRIPTION_NAME_MAX);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK:
        ack_ids_check(req->ack->ack_ids, req->ack->n_ack_ids);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK:
        ack_ids_check(req->nack->ack_ids, req->nack->n_ack_ids);
        break;
    case TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_EXTEND:
        ack_ids_check(req->extend->ack_ids, req->extend->n_ack_ids);
        break;
    default: break;
    }
    (void)tse_subscription_name_valid(req->consumer_name, TSE_CONSUMER_NAME_MAX);
}

/* ---- reflection ---------------------------------------------------------------- */

static const char *const services[] = {"tracseq.events.v1.EventService", "grpc.health.v1.Health",
                                       "grpc.reflection.v1alpha.ServerReflection",
                                       "grpc.reflection.v1.ServerReflection", NULL};

static void reflection(const uint8_t *data, size_t size, tse_reflection_version version)
{
    /* Built once, as the service does at start; kept for the process. */
    static tse_reflection *index;
    uint8_t *out = NULL;
    size_t out_len = 0;
    tse_error err;
    tse_status st;

    if (!reflection_scan(data, size))
        return;
    if (index == NULL)
        index = tse_reflection_create(tse_descriptor_set, tse_descriptor_set_len, services, NULL);
    FUZZ_CHECK(index != NULL, "the embedded descriptor set does not index");
    tse_error_clear(&err);
    st = tse_reflection_answer(index, version, data, size, &out, &out_len, &err);
    if (st == TSE_OK)
        FUZZ_CHECK(out != NULL, "no answer");
    else
        check_error(st, &err);
    free(out);
}

/* ---- dispatch --------------------------------------------------------------------- */

static const ProtobufCMessageDescriptor *request_type(enum method m)
{
    switch (m) {
    case M_SUBSCRIBE: return &tracseq__events__v1__subscribe_request__descriptor;
    case M_CREATE: return &tracseq__events__v1__create_subscription_request__descriptor;
    case M_GET: return &tracseq__events__v1__get_subscription_request__descriptor;
    case M_DELETE: return &tracseq__events__v1__delete_subscription_request__descriptor;
    case M_ACK: return &tracseq__events__v1__acknowledge_request__descriptor;
    case M_NACK: return &tracseq__events__v1__nack_request__descriptor;
    case M_PULL: return &tracseq__events__v1__pull_request__descriptor;
    case M_LIST: return &tracseq__events__v1__list_subscriptions_request__descriptor;
    case M_STATS: return &tracseq__events__v1__get_stats_request__descriptor;
    case M_TYPES: return &tracseq__events__v1__list_event_types_request__descriptor;
    case M_HEALTH: return &grpc__health__v1__health_check_request__descriptor;
    case M_DL_LIST: return &tracseq__events__v1__list_dead_letters_request__descriptor;
    case M_DL_GET: return &tracseq__events__v1__get_dead_letter_request__descriptor;
    case M_DL_REDRIVE: return &tracseq__events__v1__redrive_dead_letters_request__descriptor;
    case M_DL_PURGE: return &tracseq__events__v1__purge_dead_letters_request__descriptor;
    case M_SEEK: return &tracseq__events__v1__seek_request__descriptor;
    case M_SNAP_CREATE: return &tracseq__events__v1__create_snapshot_request__descriptor;
    case M_SNAP_LIST: return &tracseq__events__v1__list_snapshots_request__descriptor;
    case M_SNAP_DELETE: return &tracseq__events__v1__delete_snapshot_request__descriptor;
    default: return NULL;
    }
}

static void unary(enum method m, const ProtobufCMessage *msg)
{
    switch (m) {
    case M_SUBSCRIBE: subscribe((const Tracseq__Events__V1__SubscribeRequest *)msg); break;
    case M_CREATE: {
        const Tracseq__Events__V1__CreateSubscriptionRequest *r = (const void *)msg;
        if (r->subscription != NULL)
            subscription_check(r->subscription);
        break;
    }
    case M_GET:
        (void)tse_subscription_name_valid(
            ((const Tracseq__Events__V1__GetSubscriptionRequest *)msg)->name,
            TSE_SUBSCRIPTION_NAME_MAX);
        break;
    case M_DELETE:
        (void)tse_subscription_name_valid(
            ((const Tracseq__Events__V1__DeleteSubscriptionRequest *)msg)->name,
            TSE_SUBSCRIPTION_NAME_MAX);
        break;
    case M_ACK: {
        const Tracseq__Events__V1__AcknowledgeRequest *r = (const void *)msg;
        (void)tse_subscription_name_valid(r->subscription, TSE_SUBSCRIPTION_NAME_MAX);
        ack_ids_check(r->ack_ids, r->n_ack_ids);
        break;
    }
    case M_NACK: {
        const Tracseq__Events__V1__NackRequest *r = (const void *)msg;
        (void)tse_subscription_name_valid(r->subscription, TSE_SUBSCRIPTION_NAME_MAX);
        ack_ids_check(r->ack_ids, r->n_ack_ids);
        break;
    }
    case M_PULL: {
        const Tracseq__Events__V1__PullRequest *r = (const void *)msg;
        (void)tse_subscription_name_valid(r->subscription, TSE_SUBSCRIPTION_NAME_MAX);
        (void)tse_subscription_name_valid(r->consumer_name, TSE_CONSUMER_NAME_MAX);
        break;
    }
    case M_DL_LIST:
    case M_DL_GET:
    case M_DL_REDRIVE:
    case M_DL_PURGE:
    case M_SEEK:
    case M_SNAP_CREATE:
    case M_SNAP_LIST:
    case M_SNAP_DELETE: {
        tse_error err;
        tse_status st;
        tse_error_clear(&err);
        st = tse_operate_check(msg, 1000, &err);
        if (st != TSE_OK)
            check_error(st, &err);
        else
            FUZZ_CHECK(tse_subscription_name_valid(tse_operate_subscription(msg),
                                                   TSE_SUBSCRIPTION_NAME_MAX),
                       "a checked request names a valid subscription");
        break;
    }
    default: break; /* decoding is all these do */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum method m;
    const char *md_corr;
    ProtobufCMessage *msg;

    if (size == 0)
        return 0;
    m = (enum method)((data[0] & 0x7f) % M_COUNT);
    md_corr = data[0] & 0x80 ? "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b" : NULL;
    data++;
    size--;
    /* The envelope's timestamp as the delivery engine reads it (any bytes:
     * it must answer without reading past them). */
    {
        int64_t sec;
        int32_t nanos;
        if (tse_pbscan_timestamp(data, size, 5, &sec, &nanos) && (nanos < 0 || nanos > 999999999))
            __builtin_trap();
    }
    switch (m) {
    case M_PUBLISH:
        publish_once(data, size, TSE_VALIDATION_STRICT, md_corr);
        publish_once(data, size, TSE_VALIDATION_LENIENT, md_corr);
        return 0;
    case M_PUBLISH_BATCH:
        publish_batch_once(data, size, 8, TSE_VALIDATION_STRICT);
        publish_batch_once(data, size, TSE_PUBLISH_BATCH_MAX_EVENTS, TSE_VALIDATION_LENIENT);
        return 0;
    case M_CLOUDEVENT:
        publish_cloudevent_once(data, size, TSE_VALIDATION_STRICT);
        publish_cloudevent_once(data, size, TSE_VALIDATION_LENIENT);
        return 0;
    case M_REFLECTION_V1ALPHA: reflection(data, size, TSE_REFLECTION_V1ALPHA); return 0;
    case M_REFLECTION_V1: reflection(data, size, TSE_REFLECTION_V1); return 0;
    default: break;
    }
    msg = decode(data, size, request_type(m));
    if (msg != NULL) {
        unary(m, msg);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    return 0;
}
