/*
 * publish.c - POST /api/v1/events/publish and POST /api/v1/events/batch:
 * JSON (or CloudEvents structured mode) to a tracseq.events.v1.Event, one
 * Publish call (or one PublishStream for a batch), and the service's answer
 * back as JSON.
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
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "codec/pbjson.h"

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

/* Echo the body's correlation id when the client sent no header. */
static void adopt_correlation(tse_request *req, const Event *ev)
{
    if (!req->correlation_given && ev->correlation_id != NULL && ev->correlation_id[0] != '\0')
        snprintf(req->correlation_id, sizeof(req->correlation_id), "%s", ev->correlation_id);
}

void tse_handle_publish(tse_request *req, tse_response *resp)
{
    Tracseq__Events__V1__PublishRequest in = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
    bool cloud = tse_media_is(req, "application/cloudevents+json");
    ProtobufCMessage *out = NULL;
    Event *ev = NULL;
    tse_rpc_status st;
    tse_error err;
    json_t *body;

    if (!cloud && !tse_media_is(req, "application/json")) {
        tse_reply_unsupported(req, resp, "application/json or application/cloudevents+json");
        return;
    }
    if ((body = tse_parse_body(req, resp)) == NULL)
        return;
    tse_error_clear(&err);
    if (convert(body, cloud, &ev, &err) != TSE_OK) {
        reply_invalid(resp, &err);
        goto out;
    }
    adopt_correlation(req, ev);
    in.event = ev;
    if (tse_rpc_unary(req->bridge->rpc, "/tracseq.events.v1.EventService/Publish", &in.base,
                      &tracseq__events__v1__publish_response__descriptor, req->correlation_id,
                      (int)req->bridge->cfg->rpc_timeout_ms, &out, &st) != GRPC_STATUS_OK) {
        tse_reply_rpc_error(resp, req, &st, cloud ? ce_rename : NULL);
        goto out;
    }
    tse_reply_json(resp, 200, result_json((const PublishResponse *)out));
    protobuf_c_message_free_unpacked(out, NULL);
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

typedef struct batch {
    size_t n, nsent;
    Event **events;          /* the entries that converted, in order */
    size_t *index;           /* events[j] is entry index[j] */
    PublishResponse **resps; /* resps[j] answers events[j] */
    json_t *results;         /* one object per entry */
    size_t published, failed;
} batch;

static void batch_free(batch *b)
{
    for (size_t j = 0; j < b->nsent; j++) {
        protobuf_c_message_free_unpacked(&b->events[j]->base, NULL);
        if (b->resps[j] != NULL)
            protobuf_c_message_free_unpacked(&b->resps[j]->base, NULL);
    }
    free(b->events);
    free(b->index);
    free(b->resps);
    json_decref(b->results);
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
static bool batch_convert(batch *b, const json_t *arr, bool cloud)
{
    b->n = json_array_size(arr);
    b->events = calloc(b->n, sizeof(*b->events));
    b->index = calloc(b->n, sizeof(*b->index));
    b->resps = calloc(b->n, sizeof(*b->resps));
    b->results = json_array();
    if (!b->events || !b->index || !b->resps || !b->results)
        return false;
    for (size_t i = 0; i < b->n; i++) {
        tse_error err;
        unsigned status;
        json_array_append_new(b->results, json_null());
        tse_error_clear(&err);
        if (convert(json_array_get(arr, i), cloud, &b->events[b->nsent], &err) != TSE_OK) {
            json_t *res = local_error_json(&err, &status);
            set_result(b, i, res, status);
            continue;
        }
        b->index[b->nsent++] = i;
    }
    return true;
}

/* Fills the results of the entries that went to the service. */
static void batch_collect(batch *b, const tse_rpc_status *st, bool cloud)
{
    for (size_t j = 0; j < b->nsent; j++) {
        const PublishResponse *r = b->resps[j];
        unsigned status = 200;
        json_t *res;

        if (r == NULL) /* the stream ended first: its status says why */
            res = tse_error_json(st->code == GRPC_STATUS_OK ? GRPC_STATUS_INTERNAL : st->code, NULL,
                                 st->details, cloud ? ce_rename : NULL, &status);
        else if (r->error != NULL && r->error->code != 0)
            res = tse_error_json((grpc_status_code)r->error->code, r->error->field,
                                 r->error->message, cloud ? ce_rename : NULL, &status);
        else
            res = result_json(r);
        set_result(b, b->index[j], res, status);
    }
}

static void batch_run(tse_request *req, tse_response *resp, const json_t *arr, bool cloud)
{
    tse_rpc_status st = {.code = GRPC_STATUS_OK};
    batch b;

    memset(&b, 0, sizeof(b));
    if (!batch_convert(&b, arr, cloud)) {
        tse_reply_error(resp, 500, "INTERNAL", NULL, "Out of memory.");
        goto out;
    }
    if (b.nsent > 0)
        tse_rpc_publish_stream(req->bridge->rpc, b.events, b.nsent, req->correlation_id,
                               (int)req->bridge->cfg->rpc_timeout_ms, b.resps, &st);
    batch_collect(&b, &st, cloud);
    /* Nothing published because the service could not be reached: the
     * whole request failed and may be retried as it is. */
    if (b.published == 0 && st.code != GRPC_STATUS_OK) {
        tse_reply_rpc_error(resp, req, &st, NULL);
        goto out;
    }
    tse_reply_json(resp, 200,
                   json_pack("{s:O, s:I, s:I}", "results", b.results, "published",
                             (json_int_t)b.published, "failed", (json_int_t)b.failed));
out:
    batch_free(&b);
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
