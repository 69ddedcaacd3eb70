/*
 * routes.c - the route table, and the endpoints that describe the service:
 * GET /, /health, /api/v1/stats, /api/v1/event-types and /metrics. The
 * web console's files (GET /console...) are console.c's.
 *
 * A route is "METHOD /path", where a "{name}" segment matches one
 * non-empty segment (copied to req->param); a route that is one
 * EventService call names the method, and relay() answers it. A path that
 * matches some route but not its method is a 405 naming the allowed
 * methods; no match at all is a 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge.h"
#include "codec/pbjson.h"
#include "grpc/health/v1/health.pb-c.h"

#define SERVICE_NAME "TracSeq Event Service"

static void handle_root(tsb_request *req, tsb_response *resp);
static void handle_health(tsb_request *req, tsb_response *resp);
static void handle_metrics(tsb_request *req, tsb_response *resp);

typedef struct route {
    const char *name;  /* "METHOD /path", a "{name}" segment matching any one segment */
    const char *allow; /* every method of this path, for 405 */
    tsb_handler fn;    /* NULL: answered by relay() */
    const char *rpc;   /* with relay() or tsb_handle_operate(): the EventService method */
    const char *field; /* tsb_handle_operate(): the request field of a second "{...}" */
} route;

static const route routes[] = {
    {"GET /", "GET, HEAD", handle_root, NULL, NULL},
    {"GET /health", "GET, HEAD", handle_health, NULL, NULL},
    {"GET /metrics", "GET, HEAD", handle_metrics, NULL, NULL},
    {"GET /console", "GET, HEAD", tsb_handle_console, NULL, NULL},
    {"GET /console/", "GET, HEAD", tsb_handle_console, NULL, NULL},
    {"GET /console/{name}", "GET, HEAD", tsb_handle_console, NULL, NULL},
    {"GET /api/v1/stats", "GET, HEAD", NULL, "GetStats", NULL},
    {"GET /api/v1/event-types", "GET, HEAD", NULL, "ListEventTypes", NULL},
    {"POST /api/v1/events/publish", "POST", tsb_handle_publish, NULL, NULL},
    {"POST /api/v1/events/batch", "POST", tsb_handle_batch, NULL, NULL},
    {"POST /api/v1/events/subscribe", "POST", tsb_handle_subscribe, NULL, NULL},
    {"GET /api/v1/subscriptions", "GET, HEAD", NULL, "ListSubscriptions", NULL},
    {"GET /api/v1/subscriptions/{name}", "GET, HEAD, DELETE", NULL, "GetSubscription", NULL},
    {"DELETE /api/v1/subscriptions/{name}", "GET, HEAD, DELETE", tsb_handle_subscription_delete,
     NULL, NULL},
    {"GET /api/v1/subscriptions/{name}/events", "GET, HEAD", tsb_handle_subscription_pull, NULL,
     NULL},
    {"POST /api/v1/subscriptions/{name}/ack", "POST", tsb_handle_subscription_ack, NULL, NULL},
    {"POST /api/v1/subscriptions/{name}/nack", "POST", tsb_handle_subscription_nack, NULL, NULL},
    {"GET /api/v1/subscriptions/{name}/dead-letters", "GET, HEAD", tsb_handle_operate,
     "ListDeadLetters", NULL},
    {"GET /api/v1/subscriptions/{name}/dead-letters/{id}", "GET, HEAD", tsb_handle_operate,
     "GetDeadLetter", "id"},
    {"POST /api/v1/subscriptions/{name}/dead-letters/redrive", "POST", tsb_handle_operate,
     "RedriveDeadLetters", NULL},
    {"POST /api/v1/subscriptions/{name}/dead-letters/purge", "POST", tsb_handle_operate,
     "PurgeDeadLetters", NULL},
    {"POST /api/v1/subscriptions/{name}/seek", "POST", tsb_handle_operate, "Seek", NULL},
    {"GET /api/v1/subscriptions/{name}/snapshots", "GET, HEAD, POST", tsb_handle_operate,
     "ListSnapshots", NULL},
    {"POST /api/v1/subscriptions/{name}/snapshots", "GET, HEAD, POST", tsb_handle_operate,
     "CreateSnapshot", NULL},
    {"DELETE /api/v1/subscriptions/{name}/snapshots/{snapshot}", "DELETE", tsb_handle_operate,
     "DeleteSnapshot", "name"},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

size_t tsb_route_count(void)
{
    return NROUTES;
}

const char *tsb_route_name(size_t i)
{
    return i < NROUTES ? routes[i].name : "unmatched";
}

const char *tsb_route_rpc(size_t i)
{
    return i < NROUTES ? routes[i].rpc : NULL;
}

const char *tsb_route_field(size_t i)
{
    return i < NROUTES ? routes[i].field : NULL;
}

static void then_json(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                      ProtobufCMessage *out)
{
    tsb_reply_ok(resp, tsb_json_from_message(out));
}

/* A route that is one EventService call, its answer as JSON: the
 * method's request, with the path's {name} as its "name" if it has one. */
static void relay(tsb_request *req, tsb_response *resp)
{
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
        &tracseq__events__v1__event_service__descriptor, routes[req->route].rpc);
    const ProtobufCFieldDescriptor *name =
        protobuf_c_message_descriptor_get_field_by_name(m->input, "name");
    ProtobufCMessage *in = malloc(m->input->sizeof_message);

    if (in == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    protobuf_c_message_init(m->input, in);
    if (name != NULL)
        *(const char **)(void *)((char *)in + name->offset) = req->param;
    tsb_request_call(req, resp, m->name, in, 0, 0, then_json);
    free(in);
}

/* True when path fits the pattern; its first "{...}" segment is copied to
 * params[0], a second one to params[1] (each of len bytes). */
static bool path_matches(const char *pattern, const char *path, char (*params)[256])
{
    size_t k = 0;

    while (*pattern != '\0') {
        if (*pattern == '{') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= sizeof(params[0]) || k == 2)
                return false;
            memcpy(params[k], path, n);
            params[k++][n] = '\0';
            path += n;
            pattern = strchr(pattern, '}') + 1;
        } else if (*pattern++ != *path++) {
            return false;
        }
    }
    return *path == '\0';
}

tsb_handler tsb_route_find(tsb_request *req, tsb_response *resp, size_t *route_index)
{
    const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
    size_t n = strlen(method);
    const char *allow = NULL;

    *route_index = req->route = NROUTES;
    for (size_t i = 0; i < NROUTES; i++) {
        const char *pattern = strchr(routes[i].name, ' ') + 1;
        char params[2][256];
        params[0][0] = params[1][0] = '\0';
        if (!path_matches(pattern, req->path, params))
            continue;
        memcpy(req->param, params[0], sizeof(req->param));
        memcpy(req->param2, params[1], sizeof(req->param2));
        if (strncmp(routes[i].name, method, n) == 0 && routes[i].name[n] == ' ') {
            *route_index = req->route = i;
            return routes[i].fn ? routes[i].fn : relay;
        }
        allow = routes[i].allow;
    }
    if (allow != NULL) {
        resp->allow = allow;
        tsb_reply_error(resp, TSB_METHOD_NOT_ALLOWED, NULL,
                        "Method %s is not allowed on %s; allowed: %s.", req->method, req->path,
                        allow);
    } else {
        tsb_reply_error(resp, TSE_NOT_FOUND, NULL, "No endpoint at %s (see GET /).", req->path);
    }
    return NULL;
}

/* ---- GET / ---- */

static void handle_root(tsb_request *req, tsb_response *resp)
{
    json_t *endpoints =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "health", "/health",
                  "publish", "/api/v1/events/publish", "subscribe", "/api/v1/events/subscribe",
                  "stats", "/api/v1/stats", "batch", "/api/v1/events/batch", "event_types",
                  "/api/v1/event-types", "subscriptions", "/api/v1/subscriptions", "pull",
                  "/api/v1/subscriptions/{name}/events", "ack", "/api/v1/subscriptions/{name}/ack",
                  "nack", "/api/v1/subscriptions/{name}/nack", "metrics", "/metrics");
    /* The pull path with Accept: text/event-stream streams (Server-Sent Events). */
    json_object_set_new(endpoints, "stream", json_string("/api/v1/subscriptions/{name}/events"));
    json_object_set_new(endpoints, "console", json_string("/console"));

    tsb_reply_ok(resp,
                 json_pack("{s:s, s:s, s:s, s:o, s:s, s:[s,s]}", "service", SERVICE_NAME, "version",
                           TSE_VERSION, "description",
                           "Laboratory events over Redis Streams: publish, subscribe with "
                           "at-least-once delivery, and inspect the service. This REST bridge "
                           "translates JSON over HTTP to the gRPC EventService.",
                           "endpoints", endpoints, "grpc", req->bridge->cfg->service_addr,
                           "content_types", "application/json", "application/cloudevents+json"));
}

/* ---- GET /health ---- */

static void now_rfc3339(char *buf, size_t len)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    tse_rfc3339_format(ts.tv_sec, (int32_t)(ts.tv_nsec / 1000000 * 1000000), buf, len);
}

/*
 * Asks the service's grpc.health.v1 Check. The service answers SERVING only
 * while Redis answers, so one probe tells both checks apart: no answer means
 * the service is down; NOT_SERVING means Redis is.
 */
static json_t *checks_json(tsb_request *req, const tsb_calls_status *st,
                           const ProtobufCMessage *out, bool *service_up, bool *redis_up)
{
    const int64_t *start = req->ctx;
    double ms = (double)(tse_clock_us() - *start) / 1000.0;
    json_t *service;

    *service_up = st->code == TSE_OK && out != NULL;
    *redis_up = *service_up && ((const Grpc__Health__V1__HealthCheckResponse *)out)->status ==
                                   GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    service = json_pack("{s:s, s:s, s:f}", "status", *service_up ? "up" : "down", "address",
                        req->bridge->cfg->service_addr, "latency_ms", ms);
    if (!*service_up)
        json_object_set_new(service, "error", json_string(st->message));
    return json_pack("{s:o, s:{s:s, s:s}}", "event_service", service, "redis", "status",
                     *redis_up ? "up" : (*service_up ? "down" : "unknown"), "source",
                     "the event service's grpc.health.v1 status");
}

static void then_health(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                        ProtobufCMessage *out)
{
    bool service_up, redis_up;
    json_t *checks = checks_json(req, st, out, &service_up, &redis_up);
    char ts[48];
    json_t *body;

    now_rfc3339(ts, sizeof(ts));
    body = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "service", SERVICE_NAME, "status",
                     redis_up ? "healthy" : "unhealthy", "version", TSE_VERSION, "timestamp", ts,
                     "uptime_seconds",
                     (json_int_t)((tse_clock_us() - req->bridge->started_us) / 1000000), "checks",
                     checks);
    if (!redis_up)
        json_object_set_new(body, "failing", json_string(service_up ? "redis" : "event_service"));
    tsb_reply_json(resp, tsb_http_of(redis_up ? TSE_OK : TSE_UNAVAILABLE, &resp->code), body);
}

/* req->ctx: the start of the probe, for its latency. */
static bool start_clock(tsb_request *req, tsb_response *resp)
{
    int64_t *start = malloc(sizeof(*start));

    if (start == NULL) {
        tsb_reply_nomem(resp);
        return false;
    }
    *start = tse_clock_us();
    req->ctx = start;
    req->ctx_free = free;
    return true;
}

static void handle_health(tsb_request *req, tsb_response *resp)
{
    Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;

    if (!start_clock(req, resp))
        return;
    hreq.service = "tracseq.events.v1.EventService";
    tsb_request_call(req, resp, "Check", &hreq.base, (int)req->bridge->cfg->health_timeout_ms,
                     TSB_CALL_FAILURES, then_health);
}

/* ---- GET /metrics ---- */

static void counter(FILE *out, const char *name, const char *help, uint64_t v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
            (unsigned long long)v);
}

static void gauge(FILE *out, const char *name, const char *help, double v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

/* A label value with \ " and newline escaped, as the text format asks. */
static void put_label(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', out);
        if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
    }
}

static void type_head(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void type_line(FILE *out, const char *name, const char *event_type, uint64_t v)
{
    fprintf(out, "%s{event_type=\"", name);
    put_label(out, event_type);
    fprintf(out, "\"} %llu\n", (unsigned long long)v);
}

/* A histogram family (cumulative buckets, +Inf equal to _count); nothing
 * when the service sent none or a malformed one (a bucket per bound + 1). */
static void histogram(FILE *out, const char *name, const char *help,
                      const Tracseq__Events__V1__Histogram *h)
{
    if (h == NULL || h->n_cumulative_counts != h->n_bounds + 1)
        return;
    type_head(out, name, "histogram", help);
    for (size_t i = 0; i < h->n_bounds; i++)
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                (unsigned long long)h->cumulative_counts[i]);
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name,
            (unsigned long long)h->cumulative_counts[h->n_bounds], name, h->sum_seconds, name,
            (unsigned long long)h->cumulative_counts[h->n_bounds]);
}

/* ---- per subscription ---- */

typedef Tracseq__Events__V1__SubscriptionStats sub_stats;

/* Each family is one field of SubscriptionStats, named as in the .proto and
 * read through its descriptor, divided by divisor (ms to seconds). */
static const struct sub_family {
    const char *name, *type, *help, *field;
    double divisor;
} sub_families[] = {
    {"tracseq_subscription_backlog", "gauge",
     "Events in the subscription's streams not yet delivered (Redis, shared).", "lag", 1},
    {"tracseq_subscription_pending", "gauge", "Deliveries awaiting an ack (Redis, shared).",
     "pending", 1},
    {"tracseq_subscription_oldest_unacked_age_seconds", "gauge",
     "Age of the oldest delivery awaiting an ack, from its publish (Redis, shared).",
     "oldest_unacked_age_ms", 1e3},
    {"tracseq_subscription_dead_letters", "gauge",
     "Events in the subscription's dead-letter store now (Redis, shared).", "dead_lettered", 1},
    {"tracseq_subscription_consumers", "gauge",
     "Consumers in the subscription's groups, every instance's (Redis, shared).", "consumers", 1},
    {"tracseq_subscription_active_subscribers", "gauge",
     "Live subscriber streams of this service instance.", "active_subscribers", 1},
    {"tracseq_subscription_streams", "gauge", "Streams matching the subscription.", "streams", 1},
    {"tracseq_subscription_delivered_total", "counter",
     "Deliveries sent, redeliveries included (service instance).", "delivered", 1},
    {"tracseq_subscription_acked_total", "counter", "Deliveries acknowledged (service instance).",
     "acked", 1},
    {"tracseq_subscription_nacked_total", "counter",
     "Deliveries nacked, handed back for redelivery (service instance).", "nacked", 1},
    {"tracseq_subscription_redelivered_total", "counter",
     "Deliveries after the first of an event (service instance).", "redelivered", 1},
};

/* The figure of family f in st: its field is a uint32 or a uint64. */
static double sub_figure(const sub_stats *st, const struct sub_family *f)
{
    const ProtobufCFieldDescriptor *d = protobuf_c_message_descriptor_get_field_by_name(
        &tracseq__events__v1__subscription_stats__descriptor, f->field);
    const char *at = (const char *)st + d->offset;

    if (d->type == PROTOBUF_C_TYPE_UINT32)
        return *(const uint32_t *)at / f->divisor;
    return (double)*(const uint64_t *)at / f->divisor;
}

static void sub_label(FILE *out, const char *name, const Tracseq__Events__V1__Subscription *sub)
{
    fprintf(out, "%s{subscription=\"", name);
    put_label(out, sub->name);
    fputc('"', out);
}

static void render_subscriptions(FILE *out, const Tracseq__Events__V1__Stats *s)
{
    const char *dl = "tracseq_subscription_dead_lettered_total";

    for (size_t f = 0; f < sizeof(sub_families) / sizeof(sub_families[0]); f++) {
        type_head(out, sub_families[f].name, sub_families[f].type, sub_families[f].help);
        for (size_t i = 0; i < s->n_subscription_stats; i++) {
            const Tracseq__Events__V1__Subscription *sub = s->subscription_stats[i];
            if (sub->stats == NULL)
                continue;
            sub_label(out, sub_families[f].name, sub);
            fprintf(out, "} %.17g\n", sub_figure(sub->stats, &sub_families[f]));
        }
    }
    type_head(out, dl, "counter",
              "Events moved to the dead-letter store, per reason (service instance).");
    for (size_t i = 0; i < s->n_subscription_stats; i++) {
        const Tracseq__Events__V1__Subscription *sub = s->subscription_stats[i];
        for (size_t r = 0; sub->stats && r < sub->stats->n_dead_lettered_by_reason; r++) {
            sub_label(out, dl, sub);
            fputs(",reason=\"", out);
            put_label(out, sub->stats->dead_lettered_by_reason[r]->key);
            fprintf(out, "\"} %llu\n",
                    (unsigned long long)sub->stats->dead_lettered_by_reason[r]->value);
        }
    }
}

static void render_service_stats(FILE *out, const Tracseq__Events__V1__Stats *s)
{
    counter(out, "tracseq_events_published_total", "Events stored (service instance).",
            s->events_published);
    counter(out, "tracseq_events_consumed_total", "Deliveries sent.", s->events_consumed);
    counter(out, "tracseq_events_failed_total", "Publishes refused or failed.", s->events_failed);
    counter(out, "tracseq_events_acked_total", "Deliveries acknowledged.", s->events_acked);
    counter(out, "tracseq_events_redelivered_total", "Redeliveries.", s->events_redelivered);
    counter(out, "tracseq_events_dead_lettered_total", "Events dead-lettered.",
            s->events_dead_lettered);
    type_head(out, "tracseq_dead_letters_total", "counter",
              "Events dead-lettered, per reason (service instance).");
    for (size_t i = 0; i < s->n_dead_lettered_by_reason; i++) {
        fputs("tracseq_dead_letters_total{reason=\"", out);
        put_label(out, s->dead_lettered_by_reason[i]->key);
        fprintf(out, "\"} %llu\n", (unsigned long long)s->dead_lettered_by_reason[i]->value);
    }
    counter(out, "tracseq_dead_letters_redriven_total",
            "Dead letters handed back to their subscription.", s->dead_letters_redriven);
    counter(out, "tracseq_dead_letters_purged_total", "Dead letters deleted.",
            s->dead_letters_purged);
    counter(out, "tracseq_events_duplicate_total", "Publishes answered as duplicates.",
            s->events_duplicate);
    counter(out, "tracseq_events_schema_invalid_total",
            "Catalog events stored as generic data (lenient).", s->events_schema_invalid);
    counter(out, "tracseq_events_invalid_total", "Publishes refused as invalid.",
            s->events_invalid);
    counter(out, "tracseq_events_unavailable_total", "Publishes failed: Redis unreachable.",
            s->events_unavailable);
    gauge(out, "tracseq_events_active_subscribers", "Live subscribers.", s->active_subscribers);
    gauge(out, "tracseq_events_subscriptions", "Subscriptions.", s->subscriptions);
    gauge(out, "tracseq_events_redis_connected", "1 while the service reaches Redis.",
          s->redis_connected);
    counter(out, "tracseq_events_nacked_total", "Deliveries nacked (handed back).",
            s->events_nacked);
    histogram(out, "tracseq_events_publish_latency_seconds",
              "Publish latency: request received to Redis acknowledged (service instance).",
              s->publish_latency);
    histogram(out, "tracseq_events_redis_round_trip_seconds",
              "Writer lanes' Redis commands: written to reply read (service instance).",
              s->redis_round_trip);
    histogram(out, "tracseq_events_delivery_latency_seconds",
              "Event publish time to its first delivery to a subscriber (service instance).",
              s->delivery_latency);
    gauge(out, "tracseq_events_uptime_seconds", "Service uptime.", (double)s->uptime_seconds);
    type_head(out, "tracseq_events_published_by_type_total", "counter",
              "Events stored by this service instance, by event type.");
    for (size_t i = 0; i < s->n_published_by_type; i++)
        type_line(out, "tracseq_events_published_by_type_total", s->published_by_type[i]->key,
                  s->published_by_type[i]->value);
    type_head(out, "tracseq_events_stream_length", "gauge",
              "Stream entries in Redis, by event type (shared by every instance).");
    for (size_t i = 0; i < s->n_stream_lengths; i++)
        type_line(out, "tracseq_events_stream_length", s->stream_lengths[i]->key,
                  s->stream_lengths[i]->value);
    render_subscriptions(out, s);
}

static void then_metrics(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                         ProtobufCMessage *stats)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    if (out == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    tsb_metrics_render(req->bridge->metrics, out);
    gauge(out, "tracseq_bridge_uptime_seconds", "Seconds since this bridge started.",
          (double)(tse_clock_us() - req->bridge->started_us) / 1e6);
    gauge(out, "tracseq_bridge_event_service_up",
          "1 when the event service answered GetStats for this scrape.", stats != NULL);
    gauge(out, "tracseq_bridge_suspended_connections",
          "HTTP connections waiting for the event service (long-polls, idle event streams).",
          (double)atomic_load(&req->bridge->suspended));
    if (stats != NULL)
        render_service_stats(out, (const Tracseq__Events__V1__Stats *)stats);
    fclose(out);
    free(resp->body);
    resp->body = text;
    resp->len = len;
    tsb_reply_status(resp, TSE_OK);
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void handle_metrics(tsb_request *req, tsb_response *resp)
{
    Tracseq__Events__V1__GetStatsRequest in = TRACSEQ__EVENTS__V1__GET_STATS_REQUEST__INIT;

    tsb_request_call(req, resp, "GetStats", &in.base, (int)req->bridge->cfg->health_timeout_ms,
                     TSB_CALL_FAILURES, then_metrics);
}
