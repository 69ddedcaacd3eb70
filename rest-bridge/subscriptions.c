/*
 * subscriptions.c - the subscription endpoints: POST
 * /api/v1/events/subscribe (the original's body, or any subset of it), and
 * /api/v1/subscriptions[/{name}[/events|/ack|/nack]], each one call of the
 * matching EventService RPC (CreateSubscription, List/Get/Delete
 * Subscription, Pull, Acknowledge, Nack).
 *
 * A pull blocks its HTTP worker thread for up to wait_ms (capped at
 * MAX_WAIT_MS), like every call of this bridge; see README.md.
 */
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

#define MAX_WAIT_MS    30000
#define MAX_PULL       1000
#define DEFAULT_PULL   10
#define SERVICE_PREFIX "/tracseq.events.v1.EventService/"

typedef Tracseq__Events__V1__Subscription Subscription;

/* One unary call; answers the error itself and returns NULL on failure. */
static ProtobufCMessage *call(tse_request *req, tse_response *resp, const char *method,
                              const ProtobufCMessage *in, const ProtobufCMessageDescriptor *desc,
                              int extra_ms)
{
    ProtobufCMessage *out = NULL;
    tse_rpc_status st;
    char path[96];

    snprintf(path, sizeof(path), SERVICE_PREFIX "%s", method);
    if (tse_rpc_unary(req->bridge->rpc, path, in, desc, req->correlation_id,
                      (int)req->bridge->cfg->rpc_timeout_ms + extra_ms, &out,
                      &st) != GRPC_STATUS_OK) {
        tse_reply_rpc_error(resp, req, &st, NULL);
        return NULL;
    }
    return out;
}

/* The body as a JSON object; an empty body counts as {}. */
static json_t *object_body(tse_request *req, tse_response *resp)
{
    json_t *body;

    if (req->body_len == 0)
        return json_object();
    if (!tse_media_is(req, "application/json")) {
        tse_reply_unsupported(req, resp, "application/json");
        return NULL;
    }
    if ((body = tse_parse_body(req, resp)) == NULL)
        return NULL;
    if (!json_is_object(body)) {
        tse_reply_error(resp, 422, "VALIDATION_FAILED", "body", "The body must be a JSON object.");
        json_decref(body);
        return NULL;
    }
    return body;
}

/* ---- POST /api/v1/events/subscribe ---- */

/* Checks the types of the original's eight fields; all are optional. */
static bool check_subscribe(const json_t *b, tse_response *resp)
{
    static const struct {
        const char *key;
        int type;
    } fields[] = {{"name", JSON_STRING},           {"event_types", JSON_ARRAY},
                  {"consumer_group", JSON_STRING}, {"consumer_name", JSON_STRING},
                  {"batch_size", JSON_INTEGER},    {"timeout_ms", JSON_INTEGER},
                  {"auto_ack", JSON_TRUE},         {"read_latest", JSON_TRUE}};

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *v = json_object_get(b, fields[i].key);
        bool ok = v == NULL || json_is_null(v) ||
                  (fields[i].type == JSON_TRUE ? json_is_boolean(v)
                                               : (int)json_typeof(v) == fields[i].type);
        if (!ok) {
            tse_reply_error(resp, 422, "VALIDATION_FAILED", fields[i].key,
                            "Invalid %s: wrong JSON type.", fields[i].key);
            return false;
        }
    }
    return true;
}

static const char *string_or(const json_t *b, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(b, key));
    return s != NULL ? s : def;
}

static bool bool_or(const json_t *b, const char *key, bool def)
{
    const json_t *v = json_object_get(b, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

void tse_handle_subscribe(tse_request *req, tse_response *resp)
{
    Tracseq__Events__V1__CreateSubscriptionRequest in =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    json_t *body = object_body(req, resp), *types;
    char *star = "*", **patterns = NULL;
    ProtobufCMessage *out;
    size_t n;

    if (body == NULL || !check_subscribe(body, resp))
        goto out;
    types = json_object_get(body, "event_types");
    n = json_array_size(types);
    patterns = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if ((patterns[i] = (char *)json_string_value(json_array_get(types, i))) == NULL) {
            tse_reply_error(resp, 422, "VALIDATION_FAILED", "event_types",
                            "Invalid event_types: every pattern must be a string.");
            goto out;
        }
    }
    sub.name = (char *)string_or(body, "name", "default");
    sub.n_event_types = n ? n : 1;
    sub.event_types = n ? patterns : &star;
    sub.auto_ack = bool_or(body, "auto_ack", true);
    sub.start = bool_or(body, "read_latest", true)
                    ? TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST
                    : TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    in.subscription = &sub;
    out = call(req, resp, "CreateSubscription", &in.base,
               &tracseq__events__v1__subscription__descriptor, 0);
    if (out != NULL) {
        json_t *full = tse_json_from_message(out);
        char url[400];
        snprintf(url, sizeof(url), "/api/v1/subscriptions/%s/events", sub.name);
        tse_reply_json(resp, 200,
                       json_pack("{s:s, s:s, s:O, s:s, s:s, s:o}", "status", "subscribed",
                                 "subscription_name", sub.name, "event_types",
                                 json_object_get(full, "event_types"), "consumer_group", sub.name,
                                 "events_url", url, "subscription", full));
        protobuf_c_message_free_unpacked(out, NULL);
    }
out:
    free(patterns);
    json_decref(body);
}

/* ---- list, get, delete ---- */

void tse_handle_subscription_list(tse_request *req, tse_response *resp)
{
    Tracseq__Events__V1__ListSubscriptionsRequest in =
        TRACSEQ__EVENTS__V1__LIST_SUBSCRIPTIONS_REQUEST__INIT;
    ProtobufCMessage *out = call(req, resp, "ListSubscriptions", &in.base,
                                 &tracseq__events__v1__list_subscriptions_response__descriptor, 0);

    if (out != NULL) {
        tse_reply_json(resp, 200, tse_json_from_message(out));
        protobuf_c_message_free_unpacked(out, NULL);
    }
}

void tse_handle_subscription_get(tse_request *req, tse_response *resp)
{
    Tracseq__Events__V1__GetSubscriptionRequest in =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *out;

    in.name = req->param;
    out = call(req, resp, "GetSubscription", &in.base,
               &tracseq__events__v1__subscription__descriptor, 0);
    if (out != NULL) {
        tse_reply_json(resp, 200, tse_json_from_message(out));
        protobuf_c_message_free_unpacked(out, NULL);
    }
}

void tse_handle_subscription_delete(tse_request *req, tse_response *resp)
{
    Tracseq__Events__V1__DeleteSubscriptionRequest in =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;
    ProtobufCMessage *out;

    in.name = req->param;
    out = call(req, resp, "DeleteSubscription", &in.base,
               &tracseq__events__v1__delete_subscription_response__descriptor, 0);
    if (out != NULL) {
        tse_reply_json(
            resp, 200,
            json_pack("{s:s, s:s}", "status", "deleted", "subscription_name", req->param));
        protobuf_c_message_free_unpacked(out, NULL);
    }
}

/* ---- pull ---- */

/* A query parameter as an integer in [min, max]; def when absent. */
static bool query_int(tse_request *req, tse_response *resp, const char *key, long def, long min,
                      long max, long *out)
{
    const char *s = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
    char *end;

    *out = def;
    if (s == NULL)
        return true;
    *out = strtol(s, &end, 10);
    if (end == s || *end != '\0' || *out < min || *out > max) {
        tse_reply_error(resp, 422, "VALIDATION_FAILED", key,
                        "Invalid %s: must be an integer from %ld to %ld.", key, min, max);
        return false;
    }
    return true;
}

/* The event as clients read it: its payload oneof under "payload". */
static json_t *event_view(const ProtobufCMessage *ev)
{
    json_t *j = tse_json_from_message(ev);
    const ProtobufCMessageDescriptor *d = ev->descriptor;

    for (unsigned i = 0; j != NULL && i < d->n_fields; i++) {
        json_t *v;
        if (d->fields[i].id < 20 || (v = json_object_get(j, d->fields[i].name)) == NULL)
            continue;
        json_object_set(j, "payload", v);
        json_object_del(j, d->fields[i].name);
    }
    return j;
}

static json_t *deliveries_json(const Tracseq__Events__V1__PullResponse *r)
{
    json_t *events = json_array();

    for (size_t i = 0; i < r->n_deliveries; i++) {
        const Tracseq__Events__V1__Delivery *d = r->deliveries[i];
        json_array_append_new(events, json_pack("{s:s, s:i, s:s, s:o*}", "ack_id", d->ack_id,
                                                "delivery_attempt", (int)d->delivery_attempt,
                                                "stream_id", d->stream_id, "event",
                                                d->event ? event_view(&d->event->base) : NULL));
    }
    return json_pack("{s:o}", "events", events);
}

void tse_handle_subscription_pull(tse_request *req, tse_response *resp)
{
    Tracseq__Events__V1__PullRequest in = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    const char *accept = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Accept");
    ProtobufCMessage *out;
    long max, wait;

    if (accept != NULL && strstr(accept, "text/event-stream") != NULL) {
        tse_reply_error(resp, 501, "NOT_IMPLEMENTED", "Accept",
                        "Server-Sent Events are not implemented by this bridge yet; "
                        "long-poll with Accept: application/json.");
        return;
    }
    if (!query_int(req, resp, "max", DEFAULT_PULL, 1, MAX_PULL, &max) ||
        !query_int(req, resp, "wait_ms", 0, 0, MAX_WAIT_MS, &wait))
        return;
    in.subscription = req->param;
    in.max_events = (uint32_t)max;
    in.wait_ms = (uint32_t)wait;
    out = call(req, resp, "Pull", &in.base, &tracseq__events__v1__pull_response__descriptor,
               (int)wait);
    if (out != NULL) {
        tse_reply_json(resp, 200, deliveries_json((const Tracseq__Events__V1__PullResponse *)out));
        protobuf_c_message_free_unpacked(out, NULL);
    }
}

/* ---- ack, nack ---- */

/* body["ack_ids"] as a borrowed string array (caller frees the array). */
static char **ack_ids(const json_t *body, size_t *n, tse_response *resp)
{
    json_t *ids = json_object_get(body, "ack_ids");
    char **out;

    *n = json_array_size(ids);
    if (!json_is_array(ids) || *n == 0) {
        tse_reply_error(resp, 422, "VALIDATION_FAILED", "ack_ids",
                        "Invalid ack_ids: a non-empty array of ack ids is required.");
        return NULL;
    }
    out = calloc(*n, sizeof(char *));
    for (size_t i = 0; out != NULL && i < *n; i++) {
        if ((out[i] = (char *)json_string_value(json_array_get(ids, i))) == NULL) {
            tse_reply_error(resp, 422, "VALIDATION_FAILED", "ack_ids",
                            "Invalid ack_ids: every ack id must be a string.");
            free(out);
            return NULL;
        }
    }
    return out;
}

static void ack_or_nack(tse_request *req, tse_response *resp, bool nack)
{
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__NackRequest nk = TRACSEQ__EVENTS__V1__NACK_REQUEST__INIT;
    json_t *body = object_body(req, resp), *delay;
    ProtobufCMessage *out;
    char **ids = NULL;
    size_t n = 0;

    if (body == NULL || (ids = ack_ids(body, &n, resp)) == NULL)
        goto out;
    delay = json_object_get(body, "delay_ms");
    if (delay != NULL && (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
                          json_integer_value(delay) > 86400000)) {
        tse_reply_error(resp, 422, "VALIDATION_FAILED", "delay_ms",
                        "Invalid delay_ms: must be an integer from 0 to 86400000.");
        goto out;
    }
    ack.subscription = nk.subscription = req->param;
    ack.n_ack_ids = nk.n_ack_ids = n;
    ack.ack_ids = nk.ack_ids = ids;
    nk.delay_ms = (uint32_t)json_integer_value(delay);
    out =
        nack ? call(req, resp, "Nack", &nk.base, &tracseq__events__v1__nack_response__descriptor, 0)
             : call(req, resp, "Acknowledge", &ack.base,
                    &tracseq__events__v1__acknowledge_response__descriptor, 0);
    if (out != NULL) {
        tse_reply_json(resp, 200, tse_json_from_message(out));
        protobuf_c_message_free_unpacked(out, NULL);
    }
out:
    free(ids);
    json_decref(body);
}

void tse_handle_subscription_ack(tse_request *req, tse_response *resp)
{
    ack_or_nack(req, resp, false);
}

void tse_handle_subscription_nack(tse_request *req, tse_response *resp)
{
    ack_or_nack(req, resp, true);
}
