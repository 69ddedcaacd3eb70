/*
 * admin.c - the unary calls besides Publish: subscriptions (create, get,
 * list, delete), pull / acknowledge / nack, stats, the type catalog and
 * health. Answers meant for printing come back as proto3 JSON text.
 *
 * Invariant: requests are built on the stack from borrowed strings; every
 * decoded answer is freed before returning.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "codec/pbjson.h"
#include "grpc/health/v1/health.pb-c.h"

#define EXPORT __attribute__((visibility("default")))

typedef Tracseq__Events__V1__Subscription Subscription;

/* ============================== subscriptions ============================= */

static tse_client_status check_client(const tse_client *c, tse_client_error *err)
{
    tse_client_error_clear(err);
    if (c == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "client", "client is NULL");
    return TSE_CLIENT_OK;
}

static tse_client_status check_name(const char *name, const char *field, tse_client_error *err)
{
    if (name == NULL || name[0] == '\0')
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, field, "%s is required",
                               field);
    return TSE_CLIENT_OK;
}

static tse_client_status spec_start(const tse_client_subscription_spec *s, Subscription *m,
                                    Google__Protobuf__Timestamp *ts, tse_client_error *err)
{
    switch (s->start) {
    case TSE_CLIENT_START_LATEST:
        m->start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST;
        return TSE_CLIENT_OK;
    case TSE_CLIENT_START_EARLIEST:
        m->start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
        return TSE_CLIENT_OK;
    case TSE_CLIENT_START_TIMESTAMP:
        m->start = TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_TIMESTAMP;
        if (s->start_time == NULL ||
            tse_rfc3339_parse(s->start_time, &ts->seconds, &ts->nanos) != TSE_OK)
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "start_time",
                                   "start_time must be an RFC 3339 time, e.g. "
                                   "2024-06-18T10:00:00Z");
        m->start_time = ts;
        return TSE_CLIENT_OK;
    }
    return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "start",
                           "start must be latest, earliest or timestamp");
}

/* Fills m from s (strings borrowed); name overrides s->name when set. */
static tse_client_status spec_message(const tse_client_subscription_spec *s, const char *name,
                                      Subscription *m, Google__Protobuf__Timestamp *ts,
                                      tse_client_error *err)
{
    tse_client_status st;

    if (s == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "spec", "spec is NULL");
    name = name != NULL ? name : s->name;
    if ((st = check_name(name, "name", err)) != TSE_CLIENT_OK)
        return st;
    if (s->n_event_types == 0 || s->event_types == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "event_types",
                               "event_types needs at least one pattern");
    if (s->ack_deadline_ms < 0 || s->max_in_flight < 0)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1,
                               s->ack_deadline_ms < 0 ? "ack_deadline_ms" : "max_in_flight",
                               "%s must not be negative",
                               s->ack_deadline_ms < 0 ? "ack_deadline_ms" : "max_in_flight");
    if (s->min_backoff_ms < 0 || s->max_backoff_ms < 0)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1,
                               s->min_backoff_ms < 0 ? "min_backoff_ms" : "max_backoff_ms",
                               "%s must not be negative",
                               s->min_backoff_ms < 0 ? "min_backoff_ms" : "max_backoff_ms");
    m->name = (char *)name;
    m->n_event_types = s->n_event_types;
    m->event_types = (char **)s->event_types;
    m->ack_deadline_ms = (uint32_t)s->ack_deadline_ms;
    m->max_delivery_attempts = s->max_delivery_attempts == 0  ? 5
                               : s->max_delivery_attempts < 0 ? 0
                                                              : (uint32_t)s->max_delivery_attempts;
    m->max_in_flight = (uint32_t)s->max_in_flight;
    m->auto_ack = s->auto_ack;
    m->min_backoff_ms = (uint32_t)s->min_backoff_ms;
    m->max_backoff_ms = (uint32_t)s->max_backoff_ms;
    if (s->dead_letter_type != NULL)
        m->dead_letter_type = (char *)s->dead_letter_type;
    return spec_start(s, m, ts, err);
}

/* One call whose answer goes out as JSON into *json_out (NULL: dropped). */
static tse_client_status json_call(tse_client *c, const char *method, const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *resp_desc, char **json_out,
                                   tse_client_error *err)
{
    ProtobufCMessage *resp = NULL;
    tse_client_status st = tse_client_unary(c, method, req, resp_desc, &resp, err);

    if (st == TSE_CLIENT_OK)
        st = tse_client_message_json(resp, json_out, err);
    protobuf_c_message_free_unpacked(resp, NULL);
    return st;
}

/* Creates the subscription; *answer (may be NULL) receives the server's. */
tse_client_status tse_client_create_subscription(tse_client *c,
                                                 const tse_client_subscription_spec *spec,
                                                 const char *name, char **json_out,
                                                 tse_client_error *err)
{
    Subscription m = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    tse_client_status st = spec_message(spec, name, &m, &ts, err);

    if (st != TSE_CLIENT_OK)
        return st;
    req.subscription = &m;
    return json_call(c, TSE_CLIENT_METHOD("CreateSubscription"), &req.base,
                     &tracseq__events__v1__subscription__descriptor, json_out, err);
}

EXPORT tse_client_status tse_client_subscription_create(tse_client *client,
                                                        const tse_client_subscription_spec *spec,
                                                        char **json_out, tse_client_error *err)
{
    tse_client_status st = check_client(client, err);

    return st != TSE_CLIENT_OK ? st
                               : tse_client_create_subscription(client, spec, NULL, json_out, err);
}

/* Get and Delete take the same request: {name}. */
typedef Tracseq__Events__V1__GetSubscriptionRequest NameRequest;
_Static_assert(sizeof(NameRequest) == sizeof(Tracseq__Events__V1__DeleteSubscriptionRequest),
               "GetSubscriptionRequest and DeleteSubscriptionRequest share one layout");

/* A call whose request (req_desc) is empty or {name}; the latter are the
 * requests with a field, so larger than an empty message. */
static tse_client_status admin_call(tse_client *c, const char *method,
                                    const ProtobufCMessageDescriptor *req_desc, const char *name,
                                    const ProtobufCMessageDescriptor *resp_desc, char **json_out,
                                    tse_client_error *err)
{
    bool named = req_desc->sizeof_message == sizeof(NameRequest);
    NameRequest req;
    tse_client_status st = check_client(c, err);

    if (st == TSE_CLIENT_OK && named)
        st = check_name(name, "name", err);
    if (st != TSE_CLIENT_OK)
        return st;
    protobuf_c_message_init(req_desc, &req);
    if (named)
        req.name = (char *)name;
    return json_call(c, method, &req.base, resp_desc, json_out, err);
}

EXPORT tse_client_status tse_client_subscription_get(tse_client *client, const char *name,
                                                     char **json_out, tse_client_error *err)
{
    return admin_call(client, TSE_CLIENT_METHOD("GetSubscription"),
                      &tracseq__events__v1__get_subscription_request__descriptor, name,
                      &tracseq__events__v1__subscription__descriptor, json_out, err);
}

EXPORT tse_client_status tse_client_subscription_list(tse_client *client, char **json_out,
                                                      tse_client_error *err)
{
    return admin_call(client, TSE_CLIENT_METHOD("ListSubscriptions"),
                      &tracseq__events__v1__list_subscriptions_request__descriptor, NULL,
                      &tracseq__events__v1__list_subscriptions_response__descriptor, json_out, err);
}

EXPORT tse_client_status tse_client_subscription_delete(tse_client *client, const char *name,
                                                        tse_client_error *err)
{
    return admin_call(client, TSE_CLIENT_METHOD("DeleteSubscription"),
                      &tracseq__events__v1__delete_subscription_request__descriptor, name,
                      &tracseq__events__v1__delete_subscription_response__descriptor, NULL, err);
}

EXPORT tse_client_status tse_client_call_json(tse_client *client, const char *method,
                                              const char *request_json, char **json_out,
                                              tse_client_error *err)
{
    const ProtobufCMethodDescriptor *m =
        method ? protobuf_c_service_descriptor_get_method_by_name(
                     &tracseq__events__v1__event_service__descriptor, method)
               : NULL;
    char path[128];
    json_error_t jerr;
    json_t *j;
    ProtobufCMessage *req = NULL;
    tse_error terr;
    tse_client_status st = check_client(client, err);

    if (st != TSE_CLIENT_OK)
        return st;
    if (m == NULL || strcmp(m->name, "Subscribe") == 0 || strcmp(m->name, "PublishStream") == 0)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "method",
                               "not a unary method of EventService");
    j = json_loads(request_json && request_json[0] ? request_json : "{}", JSON_REJECT_DUPLICATES,
                   &jerr);
    if (j == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "request",
                               "request is not valid JSON (line %d, column %d: %s)", jerr.line,
                               jerr.column, jerr.text);
    tse_error_clear(&terr);
    if (tse_pbjson_to_message(j, m->input, 0, &req, &terr) != TSE_OK) {
        json_decref(j);
        return tse_client_from_tse_error(&terr, "request", err);
    }
    json_decref(j);
    snprintf(path, sizeof(path), TSE_CLIENT_METHOD("%s"), m->name);
    st = json_call(client, path, req, m->output, json_out, err);
    protobuf_c_message_free_unpacked(req, NULL);
    return st;
}

/* ============================== pull, ack, nack =========================== */

EXPORT tse_client_status tse_client_pull(tse_client *client, const char *subscription,
                                         unsigned max_events, unsigned wait_ms,
                                         const char *consumer_name, tse_client_batch **out,
                                         tse_client_error *err)
{
    Tracseq__Events__V1__PullRequest req = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    grpc_slice in, resp = grpc_empty_slice();
    tse_client_status st = check_client(client, err);

    if (st == TSE_CLIENT_OK)
        st = check_name(subscription, "subscription", err);
    if (st == TSE_CLIENT_OK && out == NULL)
        st = tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "out", "out is NULL");
    if (st != TSE_CLIENT_OK)
        return st;
    req.subscription = (char *)subscription;
    req.max_events = max_events;
    req.wait_ms = wait_ms;
    req.consumer_name = (char *)(consumer_name ? consumer_name : "");
    in = grpc_slice_malloc(protobuf_c_message_get_packed_size(&req.base));
    protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(in));
    /* The long poll may take wait_ms on top of the usual timeout. */
    st = tse_client_unary_raw(client, TSE_CLIENT_METHOD("Pull"), in,
                              tse_client_deadline(client->opt.timeout_ms + (int)wait_ms), &resp,
                              err);
    grpc_slice_unref(in);
    if (st != TSE_CLIENT_OK) {
        grpc_slice_unref(resp);
        return st;
    }
    return tse_client_batch_make(resp, out, err);
}

static tse_client_status check_ack_ids(const char *subscription, const char *const *ids, size_t n,
                                       tse_client_error *err)
{
    tse_client_status st = check_name(subscription, "subscription", err);

    if (st != TSE_CLIENT_OK)
        return st;
    if (n == 0 || ids == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "ack_ids",
                               "ack_ids needs at least one id");
    for (size_t i = 0; i < n; i++)
        if (ids[i] == NULL)
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "ack_ids",
                                   "ack_ids[%zu] is NULL", i);
    return TSE_CLIENT_OK;
}

/* Acknowledge and Nack: Nack's request is Acknowledge's plus delay_ms, and
 * both answers start with the count done. */
_Static_assert(offsetof(Tracseq__Events__V1__AcknowledgeRequest, ack_ids) ==
                       offsetof(Tracseq__Events__V1__NackRequest, ack_ids) &&
                   offsetof(Tracseq__Events__V1__AcknowledgeResponse, acked) ==
                       offsetof(Tracseq__Events__V1__NackResponse, nacked),
               "Acknowledge and Nack share their leading fields");

/* nack with reject: dead-letter at once instead. */
static tse_client_status settle(tse_client *client, bool nack, bool reject,
                                const char *subscription, const char *const *ack_ids,
                                size_t n_ack_ids, uint32_t delay_ms, unsigned *done,
                                tse_client_error *err)
{
    Tracseq__Events__V1__NackRequest req;
    Tracseq__Events__V1__NackResponse *resp = NULL;
    tse_client_status st = check_client(client, err);

    if (st == TSE_CLIENT_OK)
        st = check_ack_ids(subscription, ack_ids, n_ack_ids, err);
    if (st != TSE_CLIENT_OK)
        return st;
    protobuf_c_message_init(nack ? &tracseq__events__v1__nack_request__descriptor
                                 : &tracseq__events__v1__acknowledge_request__descriptor,
                            &req);
    req.subscription = (char *)subscription;
    req.n_ack_ids = n_ack_ids;
    req.ack_ids = (char **)ack_ids;
    if (nack) {
        req.delay_ms = delay_ms;
        req.reject = reject;
    }
    st = tse_client_unary(
        client, nack ? TSE_CLIENT_METHOD("Nack") : TSE_CLIENT_METHOD("Acknowledge"), &req.base,
        nack ? &tracseq__events__v1__nack_response__descriptor
             : &tracseq__events__v1__acknowledge_response__descriptor,
        (ProtobufCMessage **)&resp, err);
    if (st == TSE_CLIENT_OK && done != NULL)
        *done = resp->nacked;
    protobuf_c_message_free_unpacked(resp ? &resp->base : NULL, NULL);
    return st;
}

EXPORT tse_client_status tse_client_acknowledge(tse_client *client, const char *subscription,
                                                const char *const *ack_ids, size_t n_ack_ids,
                                                unsigned *done, tse_client_error *err)
{
    return settle(client, false, false, subscription, ack_ids, n_ack_ids, 0, done, err);
}

EXPORT tse_client_status tse_client_nack(tse_client *client, const char *subscription,
                                         const char *const *ack_ids, size_t n_ack_ids,
                                         uint32_t delay_ms, unsigned *done, tse_client_error *err)
{
    return settle(client, true, false, subscription, ack_ids, n_ack_ids, delay_ms, done, err);
}

EXPORT tse_client_status tse_client_reject(tse_client *client, const char *subscription,
                                           const char *const *ack_ids, size_t n_ack_ids,
                                           unsigned *done, tse_client_error *err)
{
    return settle(client, true, true, subscription, ack_ids, n_ack_ids, 0, done, err);
}

/* ============================== inspection ================================ */

EXPORT tse_client_status tse_client_stats(tse_client *client, char **json_out,
                                          tse_client_error *err)
{
    return admin_call(client, TSE_CLIENT_METHOD("GetStats"),
                      &tracseq__events__v1__get_stats_request__descriptor, NULL,
                      &tracseq__events__v1__stats__descriptor, json_out, err);
}

EXPORT tse_client_status tse_client_event_types(tse_client *client, char **json_out,
                                                tse_client_error *err)
{
    return admin_call(client, TSE_CLIENT_METHOD("ListEventTypes"),
                      &tracseq__events__v1__list_event_types_request__descriptor, NULL,
                      &tracseq__events__v1__list_event_types_response__descriptor, json_out, err);
}

EXPORT tse_client_status tse_client_health(tse_client *client, const char *service,
                                           tse_client_serving *out, tse_client_error *err)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    tse_client_status st = check_client(client, err);

    if (st != TSE_CLIENT_OK)
        return st;
    req.service = (char *)(service ? service : "");
    st = tse_client_unary(client, "/grpc.health.v1.Health/Check", &req.base,
                          &grpc__health__v1__health_check_response__descriptor,
                          (ProtobufCMessage **)&resp, err);
    if (st == TSE_CLIENT_OK && out != NULL) {
        switch (resp->status) {
        case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
            *out = TSE_CLIENT_SERVING;
            break;
        case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
            *out = TSE_CLIENT_NOT_SERVING;
            break;
        case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
            *out = TSE_CLIENT_SERVICE_UNKNOWN;
            break;
        default: *out = TSE_CLIENT_SERVING_UNKNOWN; break;
        }
    }
    protobuf_c_message_free_unpacked(resp ? &resp->base : NULL, NULL);
    return st;
}
