/*
 * publish.c - POST /api/v1/events/publish and POST /api/v1/events/batch:
 * JSON (or CloudEvents structured mode) to a tracseq.events.v1.Event,
 * queued on the publisher's shared PublishStream calls (publisher.h; a
 * batch's events go in order on one stream), and the service's answer back
 * as JSON. The request's connection is suspended meanwhile.
 *
 * The payload always travels as the Event's generic `data` Struct: the
 * service converts a fitting Struct to its catalog type's message, so REST
 * and gRPC clients get the same validation (lenient: misfits stored as
 * generic data; strict: 422 naming "payload.<field>"). A payload that is
 * not a JSON object is sent as {"value": <payload>}, the only shape a Struct
 * can carry.
 *
 * Unknown top-level fields are ignored, as the original API did: only the
 * envelope's own fields are copied into the Event.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "codec/pbjson.h"
#include "domain/validate.h"
#include "publisher.h"

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;

static const char *const envelope_keys[] = {
    "id",           "event_type", "source_service", "version",  "correlation_id",
    "causation_id", "subject",    "priority",       "metadata",
};

/* ---- JSON -> Event ---- */

static bool present(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v != NULL && !json_is_null(v);
}

/* Local checks the Event's types cannot express; the service checks the rest. */
static tse_status check_envelope(const json_t *body, tse_error *err)
{
    static const char *const required[] = {"event_type", "source_service", "payload"};
    const json_t *prio = json_object_get(body, "priority");

    if (!json_is_object(body))
        return tse_error_set(err, TSE_INVALID, "body", "the event must be a JSON object");
    for (size_t i = 0; i < 3; i++)
        if (!present(body, required[i]))
            return tse_error_set(err, TSE_INVALID, required[i], "%s is required", required[i]);
    if (json_is_integer(prio) && (json_integer_value(prio) < 1 || json_integer_value(prio) > 5))
        return tse_error_set(err, TSE_INVALID, "priority",
                             "priority must be an integer from 1 (highest) to 5");
    return TSE_OK;
}

/* Sets err->field to head + rest, cut to fit. */
static void set_field(tse_error *err, const char *head, const char *rest)
{
    char tmp[TSE_ERROR_FIELD_MAX * 2];
    size_t n;

    n = (size_t)snprintf(tmp, sizeof(tmp), "%s%s", head, rest);
    if (n >= sizeof(err->field))
        n = sizeof(err->field) - 1;
    memcpy(err->field, tmp, n);
    err->field[n] = '\0';
}

/* The JSON form of the Event: envelope keys copied, payload as `data`. */
static json_t *event_json(const json_t *body)
{
    json_t *env = json_object(), *payload = json_object_get(body, "payload");

    for (size_t i = 0; i < sizeof(envelope_keys) / sizeof(envelope_keys[0]); i++)
        if (present(body, envelope_keys[i]))
            json_object_set(env, envelope_keys[i], json_object_get(body, envelope_keys[i]));
    if (json_is_object(payload))
        json_object_set(env, "data", payload);
    else
        json_object_set_new(env, "data", json_pack("{s:O}", "value", payload));
    return env;
}

static tse_status event_from_json(const json_t *body, Event **out, tse_error *err)
{
    ProtobufCMessage *msg = NULL;
    json_t *env;
    tse_status st;

    if ((st = check_envelope(body, err)) != TSE_OK)
        return st;
    env = event_json(body);
    st = tse_pbjson_to_message(env, &tracseq__events__v1__event__descriptor, 0, &msg, err);
    json_decref(env);
    if (st != TSE_OK) {
        if (err != NULL && strncmp(err->field, "data", 4) == 0) {
            char rest[TSE_ERROR_FIELD_MAX];
            snprintf(rest, sizeof(rest), "%s", err->field + 4);
            set_field(err, "payload", rest);
        }
        return st;
    }
    *out = (Event *)msg;
    return TSE_OK;
}

/* ---- CloudEvents structured mode ---- */

static const struct {
    const char *ce, *ours;
} ce_names[] = {
    {"id", "id"},
    {"type", "event_type"},
    {"source", "source_service"},
    {"subject", "subject"},
    {"data", "payload"},
    {"correlationid", "correlation_id"},
    {"causationid", "causation_id"},
    {"priority", "priority"},
};

#define NCE (sizeof(ce_names) / sizeof(ce_names[0]))

/* Our field name -> the CloudEvents attribute a client wrote. */
static const char *ce_rename(const char *ours)
{
    for (size_t i = 0; i < NCE; i++)
        if (strcmp(ce_names[i].ours, ours) == 0)
            return ce_names[i].ce;
    return NULL;
}

/* A CloudEvents extension priority may be a string ("2"). */
static json_t *ce_priority(json_t *v)
{
    const char *s = json_string_value(v);
    char *end;
    long p;

    if (s == NULL)
        return json_incref(v);
    p = strtol(s, &end, 10);
    if (end == s || *end != '\0')
        return json_incref(v); /* left for the type check to name */
    return json_integer(p);
}

/* Rewrites a structured-mode CloudEvent into our REST shape. */
static tse_status from_cloudevent(const json_t *ce, json_t **out, tse_error *err)
{
    const json_t *spec = json_object_get(ce, "specversion");
    json_t *rest;

    if (!json_is_object(ce))
        return tse_error_set(err, TSE_INVALID, "body", "a CloudEvent must be a JSON object");
    if (!json_is_string(spec) || strcmp(json_string_value(spec), "1.0") != 0)
        return tse_error_set(err, TSE_INVALID, "specversion", "specversion must be \"1.0\"");
    if (present(ce, "data_base64"))
        return tse_error_set(err, TSE_INVALID, "data_base64",
                             "data_base64 is not supported; send data as JSON");
    rest = json_object();
    for (size_t i = 0; i < NCE; i++) {
        json_t *v = json_object_get(ce, ce_names[i].ce);
        if (v == NULL || json_is_null(v))
            continue;
        json_object_set_new(rest, ce_names[i].ours,
                            strcmp(ce_names[i].ce, "priority") == 0 ? ce_priority(v)
                                                                    : json_incref(v));
    }
    *out = rest;
    return TSE_OK;
}

/* JSON (REST or CloudEvent) -> Event; err names the client's field. */
static tse_status convert(const json_t *body, bool cloud, Event **out, tse_error *err)
{
    json_t *ours = NULL;
    tse_status st;

    if (!cloud)
        return event_from_json(body, out, err);
    if ((st = from_cloudevent(body, &ours, err)) != TSE_OK)
        return st;
    st = event_from_json(ours, out, err);
    json_decref(ours);
    if (st != TSE_OK && err != NULL) {
        char head[TSE_ERROR_FIELD_MAX], rest[TSE_ERROR_FIELD_MAX];
        const char *dot = strchr(err->field, '.');
        const char *name;
        snprintf(head, sizeof(head), "%.*s", dot ? (int)(dot - err->field) : 127, err->field);
        snprintf(rest, sizeof(rest), "%s", dot ? dot : "");
        if ((name = ce_rename(head)) != NULL)
            set_field(err, name, rest);
    }
    return st;
}

/* ---- answers ---- */

static json_t *result_json(const PublishResponse *r)
{
    char ts[48] = "";

    if (r->published_at != NULL)
        tse_rfc3339_format(r->published_at->seconds, r->published_at->nanos, ts, sizeof(ts));
    return json_pack("{s:s, s:s, s:s, s:b, s:b}", "event_id", r->event_id, "stream_id",
                     r->stream_id, "published_at", ts, "duplicate", r->duplicate, "schema_valid",
                     r->schema_valid);
}

/* Nothing in s needs escaping in a JSON string. */
static bool plain(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

/*
 * The 200 answer of one publish written directly: the hot path of the
 * bridge, where building and dumping a jansson object cost more than the
 * rest of the answer. Falls back to result_json for anything unusual.
 */
static bool reply_published(tse_response *resp, const PublishResponse *r)
{
    char ts[48] = "", *text;
    int n;

    if (r->published_at != NULL)
        tse_rfc3339_format(r->published_at->seconds, r->published_at->nanos, ts, sizeof(ts));
    if (!plain(r->event_id) || !plain(r->stream_id))
        return false;
    n = asprintf(&text,
                 "{\"event_id\":\"%s\",\"stream_id\":\"%s\",\"published_at\":\"%s\","
                 "\"duplicate\":%s,\"schema_valid\":%s}",
                 r->event_id, r->stream_id, ts, r->duplicate ? "true" : "false",
                 r->schema_valid ? "true" : "false");
    if (n < 0)
        return false;
    free(resp->body);
    resp->body = text;
    resp->len = (size_t)n;
    resp->status = 200;
    resp->code = "OK";
    resp->content_type = "application/json";
    return true;
}

static json_t *local_error_json(const tse_error *err, unsigned *status)
{
    json_t *j =
        tse_error_json(GRPC_STATUS_INVALID_ARGUMENT, err->field, err->message, NULL, status);
    return j;
}

static void reply_invalid(tse_response *resp, const tse_error *err)
{
    unsigned status;
    json_t *j = local_error_json(err, &status);

    resp->code = "VALIDATION_FAILED";
    tse_reply_json(resp, status, j);
}

/*
 * The event carries the request's correlation id when it has none of its
 * own (the stream's metadata is shared by many requests, so the service's
 * fallback from x-correlation-id cannot serve). A header that is no UUID
 * cannot be an event's correlation id: 422 naming the header. echo: a
 * single event's own correlation id becomes the request's (echoed back).
 */
static bool adopt_correlation(tse_request *req, Event *ev, bool echo, tse_error *err)
{
    char *copy;

    if (ev->correlation_id != NULL && ev->correlation_id[0] != '\0') {
        if (echo && !req->correlation_given)
            snprintf(req->correlation_id, sizeof(req->correlation_id), "%s", ev->correlation_id);
        return true;
    }
    if (!tse_uuid_valid(req->correlation_id)) {
        tse_error_set(err, TSE_INVALID, "X-Correlation-ID",
                      "X-Correlation-ID must be a UUID (8-4-4-4-12 hex digits) when the event "
                      "has no correlation_id");
        return false;
    }
    if ((copy = strdup(req->correlation_id)) == NULL) {
        tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
        return false;
    }
    if (ev->correlation_id != NULL && ev->correlation_id != protobuf_c_empty_string)
        free(ev->correlation_id);
    ev->correlation_id = copy;
    return true;
}

/* An answer of the publish stream as the HTTP result of one event. */
static json_t *answer_json(const PublishResponse *r, const tse_rpc_status *st, bool cloud,
                           unsigned *status)
{
    if (r == NULL) /* the stream ended first: its status says why */
        return tse_error_json(st->code == GRPC_STATUS_OK ? GRPC_STATUS_INTERNAL : st->code, NULL,
                              st->details, cloud ? ce_rename : NULL, status);
    if (r->error != NULL && r->error->code != 0)
        return tse_error_json((grpc_status_code)r->error->code, r->error->field, r->error->message,
                              cloud ? ce_rename : NULL, status);
    *status = 200;
    return result_json(r);
}

static void published(void *arg, size_t index, const tse_rpc_status *st, PublishResponse *resp)
{
    tse_request_complete(arg, st, resp ? &resp->base : NULL);
}

/* Tells the caller the bridge could not queue the event. */
static const tse_rpc_status *not_queued(void)
{
    static const tse_rpc_status st = {.code = GRPC_STATUS_UNAVAILABLE,
                                      .details = "the bridge could not queue the event"};
    return &st;
}

static void then_publish(tse_request *req, tse_response *resp, const tse_rpc_status *st,
                         ProtobufCMessage *out)
{
    bool cloud = tse_media_is(req, "application/cloudevents+json");
    const PublishResponse *r = (const PublishResponse *)out;
    unsigned status;
    json_t *j;

    if (r == NULL && st->code != GRPC_STATUS_OK) {
        tse_reply_rpc_error(resp, req, st, cloud ? ce_rename : NULL);
        return;
    }
    if (r != NULL && (r->error == NULL || r->error->code == 0) && reply_published(resp, r)) {
        protobuf_c_message_free_unpacked(out, NULL);
        return;
    }
    j = answer_json(r, st, cloud, &status);
    if (status != 200)
        tse_http_status_of(r && r->error ? (grpc_status_code)r->error->code : st->code,
                           &resp->code);
    if (status == 503)
        resp->retry_after =
            req->bridge->cfg->retry_after_s > 0 ? req->bridge->cfg->retry_after_s : 1;
    tse_reply_json(resp, status, j);
    if (out != NULL)
        protobuf_c_message_free_unpacked(out, NULL);
}

void tse_handle_publish(tse_request *req, tse_response *resp)
{
    bool cloud = tse_media_is(req, "application/cloudevents+json");
    Event *ev = NULL;
    tse_error err;
    json_t *body;

    if (!cloud && !tse_media_is(req, "application/json")) {
        tse_reply_unsupported(req, resp, "application/json or application/cloudevents+json");
        return;
    }
    if ((body = tse_parse_body(req, resp)) == NULL)
        return;
    tse_error_clear(&err);
    if (convert(body, cloud, &ev, &err) != TSE_OK || !adopt_correlation(req, ev, true, &err)) {
        reply_invalid(resp, &err);
        goto out;
    }
    /* Suspended before the event is queued: the answer may come at once. */
    tse_request_defer(req, resp, then_publish);
    if (!tse_publisher_submit(req->bridge->publisher, &ev, 1, published, req))
        tse_request_complete(req, not_queued(), NULL);
out:
    if (ev != NULL)
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    json_decref(body);
}

/* ---- batch ---- */

/* The entries of a batch body: {"events": [...]} or a CloudEvents batch. */
static json_t *batch_entries(const json_t *body, bool cloud, tse_error *err)
{
    json_t *arr = cloud ? (json_t *)body : json_object_get(body, "events");

    if (!json_is_array(arr)) {
        tse_error_set(err, TSE_INVALID, cloud ? "body" : "events",
                      cloud ? "a CloudEvents batch must be a JSON array"
                            : "events must be an array of events");
        return NULL;
    }
    if (json_array_size(arr) == 0) {
        tse_error_set(err, TSE_INVALID, cloud ? "body" : "events",
                      "a batch needs at least one event");
        return NULL;
    }
    return arr;
}

/* A batch between its steps (req->ctx). Answers arrive on the CQ thread,
 * one per queued event; the last one resumes the request. */
typedef struct batch {
    size_t n, nsent;
    Event **events;          /* the entries that converted, in order */
    size_t *index;           /* events[j] is entry index[j] */
    PublishResponse **resps; /* resps[j] answers events[j] */
    tse_rpc_status *failure; /* the stream's status, when one ended first */
    json_t *results;         /* one object per entry */
    size_t published, failed;
    atomic_size_t waiting;
    tse_request *req;
} batch;

static void batch_free(void *arg)
{
    batch *b = arg;

    if (b == NULL)
        return;
    for (size_t j = 0; j < b->nsent; j++) {
        if (b->events[j] != NULL)
            protobuf_c_message_free_unpacked(&b->events[j]->base, NULL);
        if (b->resps[j] != NULL)
            protobuf_c_message_free_unpacked(&b->resps[j]->base, NULL);
    }
    free(b->events);
    free(b->index);
    free(b->resps);
    free(b->failure);
    json_decref(b->results);
    free(b);
}

static void set_result(batch *b, size_t i, json_t *r, unsigned status)
{
    json_object_set_new(r, "index", json_integer((json_int_t)i));
    json_object_set_new(r, "status", json_integer(status));
    json_array_set_new(b->results, i, r);
    if (status == 200)
        b->published++;
    else
        b->failed++;
}

/* Converts every entry; the ones that fail get their result at once. */
static bool batch_convert(tse_request *req, batch *b, const json_t *arr, bool cloud)
{
    b->n = json_array_size(arr);
    b->events = calloc(b->n, sizeof(*b->events));
    b->index = calloc(b->n, sizeof(*b->index));
    b->resps = calloc(b->n, sizeof(*b->resps));
    b->failure = calloc(1, sizeof(*b->failure));
    b->results = json_array();
    if (!b->events || !b->index || !b->resps || !b->failure || !b->results)
        return false;
    for (size_t i = 0; i < b->n; i++) {
        tse_error err;
        unsigned status;
        json_array_append_new(b->results, json_null());
        tse_error_clear(&err);
        if (convert(json_array_get(arr, i), cloud, &b->events[b->nsent], &err) != TSE_OK ||
            !adopt_correlation(req, b->events[b->nsent], false, &err)) {
            if (b->events[b->nsent] != NULL)
                protobuf_c_message_free_unpacked(&b->events[b->nsent]->base, NULL);
            b->events[b->nsent] = NULL;
            json_t *res = local_error_json(&err, &status); /* sets status first */
            set_result(b, i, res, status);
            continue;
        }
        b->index[b->nsent++] = i;
    }
    return true;
}

static void batch_answered(void *arg, size_t j, const tse_rpc_status *st, PublishResponse *resp)
{
    batch *b = arg;

    b->resps[j] = resp;
    if (resp == NULL && b->failure->code == GRPC_STATUS_OK)
        *b->failure = *st; /* the first failure: the others share its stream's */
    if (atomic_fetch_sub(&b->waiting, 1) == 1)
        tse_request_complete(b->req, b->failure, NULL);
}

static void then_batch(tse_request *req, tse_response *resp, const tse_rpc_status *st,
                       ProtobufCMessage *out)
{
    bool cloud = tse_media_is(req, "application/cloudevents-batch+json");
    batch *b = req->ctx;

    for (size_t j = 0; j < b->nsent; j++) {
        unsigned status;
        json_t *res = answer_json(b->resps[j], st, cloud, &status);
        set_result(b, b->index[j], res, status);
    }
    /* Nothing published because the service could not be reached: the
     * whole request failed and may be retried as it is. */
    if (b->published == 0 && st->code != GRPC_STATUS_OK) {
        tse_reply_rpc_error(resp, req, st, NULL);
        return;
    }
    tse_reply_json(resp, 200,
                   json_pack("{s:O, s:I, s:I}", "results", b->results, "published",
                             (json_int_t)b->published, "failed", (json_int_t)b->failed));
}

static void batch_run(tse_request *req, tse_response *resp, const json_t *arr, bool cloud)
{
    static const tse_rpc_status ok = {.code = GRPC_STATUS_OK};
    batch *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        tse_reply_error(resp, 500, "INTERNAL", NULL, "Out of memory.");
        return;
    }
    req->ctx = b;
    req->ctx_free = batch_free;
    b->req = req;
    if (!batch_convert(req, b, arr, cloud)) {
        tse_reply_error(resp, 500, "INTERNAL", NULL, "Out of memory.");
        return;
    }
    if (b->nsent == 0) {
        then_batch(req, resp, &ok, NULL);
        return;
    }
    atomic_store(&b->waiting, b->nsent);
    tse_request_defer(req, resp, then_batch);
    if (!tse_publisher_submit(req->bridge->publisher, b->events, b->nsent, batch_answered, b))
        tse_request_complete(req, not_queued(), NULL);
}

void tse_handle_batch(tse_request *req, tse_response *resp)
{
    bool cloud = tse_media_is(req, "application/cloudevents-batch+json");
    json_t *body, *arr;
    tse_error err;

    if (!cloud && !tse_media_is(req, "application/json")) {
        tse_reply_unsupported(req, resp, "application/json or application/cloudevents-batch+json");
        return;
    }
    if ((body = tse_parse_body(req, resp)) == NULL)
        return;
    tse_error_clear(&err);
    if ((arr = batch_entries(body, cloud, &err)) == NULL) {
        reply_invalid(resp, &err);
    } else if (json_array_size(arr) > (size_t)req->bridge->cfg->max_batch) {
        tse_reply_error(resp, 422, "VALIDATION_FAILED", cloud ? "body" : "events",
                        "A batch may carry at most %d events; this one has %zu.",
                        req->bridge->cfg->max_batch, json_array_size(arr));
    } else {
        batch_run(req, resp, arr, cloud);
    }
    json_decref(body);
}
