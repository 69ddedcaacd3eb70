/*
 * subscriptions.c - the subscription endpoints: POST
 * /api/v1/events/subscribe (the original's body, or any subset of it), and
 * /api/v1/subscriptions/{name}[/events|/ack|/nack], each one or a few
 * asynchronous calls of the matching EventService RPCs (CreateSubscription,
 * DeleteSubscription, Pull, Acknowledge, Nack; Subscribe for Server-Sent
 * Events, see sse.h). GET /api/v1/subscriptions[/{name}] are relayed by the
 * route table (routes.c).
 *
 * A long-poll pull holds a suspended connection, not a thread, for up to
 * wait_ms (at most MAX_WAIT_MS, the service's own limit), and is cancelled
 * when its client hangs up, so deliveries are not handed to nobody.
 *
 * Auto-ack (the REST default, as in the original): the deliveries of a pull
 * on an auto_ack subscription are acked by the bridge (Acknowledge) after
 * the answer is built and before it is sent; a failed ack only means they
 * come again. Whether a subscription is auto_ack is remembered for
 * CACHE_MS (tsb_subcache), since Pull does not say.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "domain/cloudevent.h"
#include "domain/limits.h"
#include "sse.h"

/* The service's own Pull limits (domain/limits.h). */
#define MAX_WAIT_MS   TSE_PULL_MAX_WAIT_MS
#define MAX_PULL      TSE_PULL_MAX_EVENTS
#define DEFAULT_PULL  TSE_PULL_DEFAULT_EVENTS
#define DEFAULT_WAIT  5000
#define CACHE_MS      5000
#define CACHE_ENTRIES 256
#define NAME_MAX_LEN  64

typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__PullResponse PullResponse;

/* ===================== the auto_ack cache ================================ */

typedef struct cache_entry {
    char name[NAME_MAX_LEN + 1];
    bool auto_ack;
    int64_t until_ms; /* 0: free */
} cache_entry;

struct tsb_subcache {
    pthread_mutex_t lock;
    cache_entry e[CACHE_ENTRIES];
};

tsb_subcache *tsb_subcache_create(void)
{
    tsb_subcache *c = calloc(1, sizeof(*c));

    if (c != NULL)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

void tsb_subcache_destroy(tsb_subcache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* 1: auto_ack, 0: not, -1: unknown. */
static int cache_get(tsb_subcache *c, const char *name)
{
    int64_t now = tse_clock_ms();
    int v = -1;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < CACHE_ENTRIES; i++)
        if (c->e[i].until_ms > now && strcmp(c->e[i].name, name) == 0)
            v = c->e[i].auto_ack;
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* Remembers a subscription (forgets it when forget). */
static void cache_put(tsb_subcache *c, const char *name, bool auto_ack, bool forget)
{
    size_t slot = 0;

    if (strlen(name) > NAME_MAX_LEN)
        return;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < CACHE_ENTRIES; i++) {
        if (strcmp(c->e[i].name, name) == 0) {
            slot = i;
            break;
        }
        if (c->e[i].until_ms < c->e[slot].until_ms)
            slot = i; /* the oldest, when the name is not there */
    }
    snprintf(c->e[slot].name, sizeof(c->e[slot].name), "%s", name);
    c->e[slot].auto_ack = auto_ack;
    c->e[slot].until_ms = forget ? 0 : tse_clock_ms() + CACHE_MS;
    pthread_mutex_unlock(&c->lock);
}

/* ===================== helpers ========================================== */

/* [A-Za-z0-9_.-]{1,64}: the names the service accepts, safe in a URL. */
static bool plain_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* GetSubscription of the path's {name}; then() gets the Subscription. */
static void get_subscription(tsb_request *req, tsb_response *resp, tsb_then then)
{
    Tracseq__Events__V1__GetSubscriptionRequest in =
        TRACSEQ__EVENTS__V1__GET_SUBSCRIPTION_REQUEST__INIT;

    in.name = req->param;
    tsb_request_call(req, resp, "GetSubscription", &in.base, 0, 0, then);
}

json_t *tsb_event_json(const Tracseq__Events__V1__Event *ev)
{
    return tse_event_json_payload(ev ? tsb_json_from_message(&ev->base) : NULL);
}

/* ===================== POST /api/v1/events/subscribe ==================== */

/* Checks the types and ranges of the original's eight fields; all optional. */
static bool check_subscribe(const json_t *b, tsb_response *resp)
{
    static const struct {
        const char *key;
        int type;
        long min, max;
    } fields[] = {{"name", JSON_STRING, 0, 0},
                  {"event_types", JSON_ARRAY, 0, 0},
                  {"consumer_group", JSON_STRING, 0, 0},
                  {"consumer_name", JSON_STRING, 0, 0},
                  {"batch_size", JSON_INTEGER, 1, MAX_PULL},
                  {"timeout_ms", JSON_INTEGER, 0, MAX_WAIT_MS},
                  {"auto_ack", JSON_TRUE, 0, 0},
                  {"read_latest", JSON_TRUE, 0, 0},
                  {"min_backoff_ms", JSON_INTEGER, 0, TSE_MAX_BACKOFF_MS},
                  {"max_backoff_ms", JSON_INTEGER, 0, TSE_MAX_BACKOFF_MS},
                  {"dead_letter_type", JSON_STRING, 0, 0}};

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *v = json_object_get(b, fields[i].key);
        bool ok = v == NULL || json_is_null(v) ||
                  (fields[i].type == JSON_TRUE ? json_is_boolean(v)
                                               : (int)json_typeof(v) == fields[i].type);
        if (!ok) {
            tsb_reply_error(resp, TSE_INVALID, fields[i].key, "Invalid %s: wrong JSON type.",
                            fields[i].key);
            return false;
        }
        if (fields[i].type == JSON_INTEGER && json_is_integer(v) &&
            (json_integer_value(v) < fields[i].min || json_integer_value(v) > fields[i].max)) {
            tsb_reply_error(resp, TSE_INVALID, fields[i].key,
                            "Invalid %s: must be an integer from %ld to %ld.", fields[i].key,
                            fields[i].min, fields[i].max);
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

static long long int_or(const json_t *b, const char *key, long long def)
{
    const json_t *v = json_object_get(b, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

/* What the subscribe answer needs besides the subscription (req->ctx). */
typedef struct subscribe_ctx {
    char consumer[NAME_MAX_LEN + 1];
    long long batch_size, timeout_ms;
} subscribe_ctx;

/* Where to read and settle the events, added to body. */
static void add_urls(json_t *body, const Subscription *sub, const subscribe_ctx *sc)
{
    char base[160], url[320];

    snprintf(base, sizeof(base), "/api/v1/subscriptions/%s", sub->name);
    json_object_set_new(body, "subscription_url", json_string(base));
    snprintf(url, sizeof(url), "%s/events?max=%lld&wait_ms=%lld%s%s", base, sc->batch_size,
             sc->timeout_ms, sc->consumer[0] ? "&consumer=" : "", sc->consumer);
    json_object_set_new(body, "events_url", json_string(url));
    snprintf(url, sizeof(url), "%s/events%s%s", base, sc->consumer[0] ? "?consumer=" : "",
             sc->consumer);
    json_object_set_new(body, "stream_url", json_string(url));
    snprintf(url, sizeof(url), "%s/ack", base);
    json_object_set_new(body, "ack_url", json_string(url));
    snprintf(url, sizeof(url), "%s/nack", base);
    json_object_set_new(body, "nack_url", json_string(url));
}

static void then_subscribe(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                           ProtobufCMessage *out)
{
    const Subscription *sub = (const Subscription *)out;
    const subscribe_ctx *sc = req->ctx;
    json_t *full, *body;

    cache_put(req->bridge->subcache, sub->name, sub->auto_ack, false);
    full = tsb_json_from_message(out);
    body = json_pack(
        "{s:s, s:s, s:O, s:s, s:s, s:b, s:s, s:o}", "status", "subscribed", "subscription_name",
        sub->name, "event_types", json_object_get(full, "event_types"), "consumer_group", sub->name,
        "consumer_name", sc->consumer, "auto_ack", sub->auto_ack, "start",
        sub->start == TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST ? "earliest"
                                                                                   : "latest",
        "subscription", full);
    add_urls(body, sub, sc);
    tsb_reply_ok(resp, body);
}

/* event_types as borrowed strings (caller frees the array); NULL: answered. */
static char **patterns_of(const json_t *body, size_t *n, tsb_response *resp)
{
    static char *star = "*";
    json_t *types = json_object_get(body, "event_types");
    char **patterns;

    *n = json_array_size(types);
    if ((patterns = calloc(*n ? *n : 1, sizeof(char *))) == NULL) {
        tsb_reply_nomem(resp);
        return NULL;
    }
    for (size_t i = 0; i < *n; i++) {
        if ((patterns[i] = (char *)json_string_value(json_array_get(types, i))) == NULL) {
            tsb_reply_error(resp, TSE_INVALID, "event_types",
                            "Invalid event_types: every pattern must be a string.");
            free(patterns);
            return NULL;
        }
    }
    if (*n == 0) { /* absent or empty: everything */
        patterns[0] = star;
        *n = 1;
    }
    return patterns;
}

/* The subscribe body's consumer_name, checked; false when answered. */
static bool consumer_of(const json_t *body, subscribe_ctx *sc, tsb_response *resp)
{
    const char *consumer = string_or(body, "consumer_name", "");

    if (consumer[0] != '\0' && !plain_name(consumer)) {
        tsb_reply_error(resp, TSE_INVALID, "consumer_name",
                        "Invalid consumer_name: 1 to 64 letters, digits, '_', '.' or '-'.");
        return false;
    }
    snprintf(sc->consumer, sizeof(sc->consumer), "%s", consumer);
    sc->batch_size = int_or(body, "batch_size", DEFAULT_PULL);
    sc->timeout_ms = int_or(body, "timeout_ms", DEFAULT_WAIT);
    return true;
}

void tsb_handle_subscribe(tsb_request *req, tsb_response *resp)
{
    Tracseq__Events__V1__CreateSubscriptionRequest in =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    json_t *body = tsb_object_body(req, resp);
    subscribe_ctx *sc = calloc(1, sizeof(*sc));
    char **patterns = NULL;
    size_t n;

    if (sc != NULL) {
        req->ctx = sc;
        req->ctx_free = free;
    }
    if (sc == NULL || body == NULL || !check_subscribe(body, resp) ||
        !consumer_of(body, sc, resp) || (patterns = patterns_of(body, &n, resp)) == NULL)
        goto out;
    /* The subscription is the consumer group: consumer_group is accepted
     * for compatibility and answered as the name (README.md). */
    sub.name = (char *)string_or(body, "name", "default");
    sub.n_event_types = n;
    sub.event_types = patterns;
    sub.auto_ack = bool_or(body, "auto_ack", true);
    /* JSON tells "absent" from 0 where proto3 cannot: absent means the
     * contract's default of 5 attempts; 0 asks for unlimited. */
    sub.max_delivery_attempts = (uint32_t)int_or(body, "max_delivery_attempts", 5);
    sub.ack_deadline_ms = (uint32_t)int_or(body, "ack_deadline_ms", 0);
    sub.max_in_flight = (uint32_t)int_or(body, "max_in_flight", 0);
    sub.min_backoff_ms = (uint32_t)int_or(body, "min_backoff_ms", 0);
    sub.max_backoff_ms = (uint32_t)int_or(body, "max_backoff_ms", 0);
    sub.dead_letter_type = (char *)string_or(body, "dead_letter_type", "");
    sub.start = bool_or(body, "read_latest", true)
                    ? TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_LATEST
                    : TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_EARLIEST;
    in.subscription = &sub;
    tsb_request_call(req, resp, "CreateSubscription", &in.base, 0, 0, then_subscribe);
out:
    if (sc == NULL)
        tsb_reply_nomem(resp);
    free(patterns);
    json_decref(body);
}

/* ===================== list, get, delete ================================ */

static void then_delete(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                        ProtobufCMessage *out)
{
    cache_put(req->bridge->subcache, req->param, false, true); /* whatever the outcome */
    if (st->code != TSE_OK)
        tsb_reply_failed(resp, req, st, NULL);
    else
        tsb_reply_ok(resp,
                     json_pack("{s:s, s:s}", "status", "deleted", "subscription_name", req->param));
}

void tsb_handle_subscription_delete(tsb_request *req, tsb_response *resp)
{
    Tracseq__Events__V1__DeleteSubscriptionRequest in =
        TRACSEQ__EVENTS__V1__DELETE_SUBSCRIPTION_REQUEST__INIT;

    in.name = req->param;
    tsb_request_call(req, resp, "DeleteSubscription", &in.base, 0, TSB_CALL_FAILURES, then_delete);
}

/* ===================== pull (long-poll) and Server-Sent Events ========== */

/* A query parameter as an integer in [min, max]; def when absent. */
static bool query_int(tsb_request *req, tsb_response *resp, const char *key, long def, long min,
                      long max, long *out)
{
    const char *s = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
    char *end;

    *out = def;
    if (s == NULL)
        return true;
    *out = strtol(s, &end, 10);
    if (end == s || *end != '\0' || *out < min || *out > max) {
        tsb_reply_error(resp, TSE_INVALID, key, "Invalid %s: must be an integer from %ld to %ld.",
                        key, min, max);
        return false;
    }
    return true;
}

/* ?consumer=: NULL when absent, "" (answered) when invalid. */
static const char *query_consumer(tsb_request *req, tsb_response *resp)
{
    const char *c = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "consumer");

    if (c != NULL && !plain_name(c)) {
        tsb_reply_error(resp, TSE_INVALID, "consumer",
                        "Invalid consumer: 1 to 64 letters, digits, '_', '.' or '-'.");
        return "";
    }
    return c;
}

/* How a pull answers (the client's choice: Accept or ?format=). */
typedef enum {
    PULL_JSON,        /* {"events": [...]}, each event as REST reads it */
    PULL_CLOUDEVENTS, /* the same, each event a CloudEvent (JSON format) */
    PULL_BINARY,      /* one event, a CloudEvent in HTTP binary mode */
} pull_format;

/* A pull between its steps (req->ctx). */
typedef struct pull_ctx {
    json_t *answer; /* {"events": [...]} once built; holds the ack ids */
    pull_format format;
} pull_ctx;

static void pull_ctx_free(void *arg)
{
    if (arg != NULL)
        json_decref(((pull_ctx *)arg)->answer);
    free(arg);
}

static json_t *deliveries_json(const PullResponse *r, bool cloudevents)
{
    json_t *events = json_array();

    for (size_t i = 0; i < r->n_deliveries; i++) {
        const Tracseq__Events__V1__Delivery *d = r->deliveries[i];
        json_array_append_new(
            events,
            json_pack("{s:s, s:i, s:s, s:o*}", "ack_id", d->ack_id, "delivery_attempt",
                      (int)d->delivery_attempt, "stream_id", d->stream_id, "event",
                      cloudevents ? tse_ce_from_event(d->event) : tsb_event_json(d->event)));
    }
    return json_pack("{s:o}", "events", events);
}

/*
 * Binary mode: the one delivery as a CloudEvent in HTTP binary mode (ce-*
 * headers, the data as the body, its datacontenttype as Content-Type) and
 * the delivery's own fields as X-Ack-Id, X-Delivery-Attempt, X-Stream-Id
 * and X-Auto-Acked; 204 when there was none.
 */
static void reply_binary(tsb_response *resp, pull_ctx *pc, bool acked)
{
    json_t *d = json_array_get(json_object_get(pc->answer, "events"), 0), *h;
    const char *ctype;
    char attempt[16];

    if (d == NULL) {
        free(resp->body);
        resp->body = NULL;
        resp->len = 0;
        tsb_reply_status(resp, TSB_NO_CONTENT);
        return;
    }
    snprintf(attempt, sizeof(attempt), "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(d, "delivery_attempt")));
    h = json_pack("{s:O, s:s, s:O, s:s}", "X-Ack-Id", json_object_get(d, "ack_id"),
                  "X-Delivery-Attempt", attempt, "X-Stream-Id", json_object_get(d, "stream_id"),
                  "X-Auto-Acked", acked ? "true" : "false");
    free(resp->body);
    resp->body = NULL;
    if (h == NULL || tse_ce_to_binary(json_object_get(d, "event"), h, &resp->body, &resp->len,
                                      &ctype) != TSE_OK) {
        json_decref(h);
        tsb_reply_nomem(resp);
        return;
    }
    json_object_set_new(h, "Content-Type", json_string(ctype));
    json_decref(resp->headers);
    resp->headers = h;
    tsb_reply_status(resp, TSE_OK);
}

/* The answer, saying whether the bridge acked its deliveries. */
static void reply_pulled(tsb_response *resp, pull_ctx *pc, bool acked)
{
    if (pc->format == PULL_BINARY) {
        reply_binary(resp, pc, acked);
        return;
    }
    json_object_set_new(pc->answer, "auto_acked", json_boolean(acked));
    tsb_reply_ok(resp, json_incref(pc->answer));
}

static void then_pull_acked(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                            ProtobufCMessage *out)
{
    /* A failed ack is no reason to withhold the events: they come again. */
    reply_pulled(resp, req->ctx, st->code == TSE_OK);
}

/* Acks the answered deliveries of an auto_ack subscription, then answers. */
static void ack_pulled(tsb_request *req, tsb_response *resp, int auto_ack)
{
    Tracseq__Events__V1__AcknowledgeRequest in = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    pull_ctx *pc = req->ctx;
    json_t *events = json_object_get(pc->answer, "events");

    if (!auto_ack) {
        reply_pulled(resp, pc, false);
        return;
    }
    in.n_ack_ids = json_array_size(events);
    if ((in.ack_ids = calloc(in.n_ack_ids, sizeof(char *))) == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    for (size_t i = 0; i < in.n_ack_ids; i++)
        in.ack_ids[i] =
            (char *)json_string_value(json_object_get(json_array_get(events, i), "ack_id"));
    in.subscription = req->param;
    tsb_request_call(req, resp, "Acknowledge", &in.base, 0, TSB_CALL_FAILURES, then_pull_acked);
    free(in.ack_ids);
}

static void then_pull_config(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                             ProtobufCMessage *out)
{
    const Subscription *sub = (const Subscription *)out;

    cache_put(req->bridge->subcache, req->param, sub->auto_ack, false);
    ack_pulled(req, resp, sub->auto_ack);
}

static void then_pull(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                      ProtobufCMessage *out)
{
    pull_ctx *pc = req->ctx;
    int auto_ack;

    pc->answer = deliveries_json((const PullResponse *)out, pc->format != PULL_JSON);
    if (pc->answer == NULL)
        tsb_reply_nomem(resp);
    else if (json_array_size(json_object_get(pc->answer, "events")) == 0 &&
             pc->format == PULL_BINARY)
        reply_binary(resp, pc, false);
    else if (json_array_size(json_object_get(pc->answer, "events")) == 0)
        tsb_reply_ok(resp, json_incref(pc->answer));
    else if ((auto_ack = cache_get(req->bridge->subcache, req->param)) >= 0)
        ack_pulled(req, resp, auto_ack);
    else
        get_subscription(req, resp, then_pull_config);
}

static void then_stream(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                        ProtobufCMessage *out)
{
    tsb_sse_start(req, resp, (const Subscription *)out, req->ctx);
}

/* Accept: text/event-stream: check the subscription, then stream it. */
static void start_stream(tsb_request *req, tsb_response *resp, const char *consumer)
{
    if (consumer != NULL && (req->ctx = strdup(consumer)) == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    req->ctx_free = free;
    get_subscription(req, resp, then_stream);
}

/*
 * The pull's answer format: ?format=json (the default), cloudevents
 * (also Accept: application/cloudevents+json) or cloudevents-binary
 * (HTTP binary mode, one event). -1 when ?format= names none (answered 400).
 */
static int pull_format_of(tsb_request *req, tsb_response *resp, const char *accept)
{
    const char *f = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "format");

    if (f == NULL)
        return accept != NULL && strstr(accept, "application/cloudevents+json") != NULL
                   ? PULL_CLOUDEVENTS
                   : PULL_JSON;
    if (strcmp(f, "json") == 0)
        return PULL_JSON;
    if (strcmp(f, "cloudevents") == 0)
        return PULL_CLOUDEVENTS;
    if (strcmp(f, "cloudevents-binary") == 0)
        return PULL_BINARY;
    tsb_reply_error(resp, TSE_INVALID, "format",
                    "Invalid format: json, cloudevents or cloudevents-binary.");
    return -1;
}

void tsb_handle_subscription_pull(tsb_request *req, tsb_response *resp)
{
    Tracseq__Events__V1__PullRequest in = TRACSEQ__EVENTS__V1__PULL_REQUEST__INIT;
    const char *accept = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Accept");
    const char *consumer = query_consumer(req, resp);
    long max, wait;
    int format;

    if (consumer != NULL && consumer[0] == '\0')
        return;
    if (accept != NULL && strstr(accept, "text/event-stream") != NULL) {
        start_stream(req, resp, consumer);
        return;
    }
    if ((format = pull_format_of(req, resp, accept)) < 0 ||
        !query_int(req, resp, "max", DEFAULT_PULL, 1, MAX_PULL, &max) ||
        !query_int(req, resp, "wait_ms", 0, 0, MAX_WAIT_MS, &wait))
        return;
    if ((req->ctx = calloc(1, sizeof(pull_ctx))) == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    req->ctx_free = pull_ctx_free;
    ((pull_ctx *)req->ctx)->format = (pull_format)format;
    if (format == PULL_BINARY) /* one HTTP message holds one binary-mode event */
        max = 1;
    in.subscription = req->param;
    in.max_events = (uint32_t)max;
    in.wait_ms = (uint32_t)wait;
    in.consumer_name = (char *)(consumer ? consumer : "");
    tsb_request_call(req, resp, "Pull", &in.base, (int)(req->bridge->cfg->rpc_timeout_ms + wait),
                     TSB_CALL_WATCH, then_pull);
}

/* ===================== ack, nack ======================================== */

/* body["ack_ids"] as a borrowed string array (caller frees the array). */
static char **ack_ids(const json_t *body, size_t *n, tsb_response *resp)
{
    json_t *ids = json_object_get(body, "ack_ids");
    char **out;

    *n = json_array_size(ids);
    if (!json_is_array(ids) || *n == 0) {
        tsb_reply_error(resp, TSE_INVALID, "ack_ids",
                        "Invalid ack_ids: a non-empty array of ack ids is required.");
        return NULL;
    }
    out = calloc(*n, sizeof(char *));
    for (size_t i = 0; out != NULL && i < *n; i++) {
        if ((out[i] = (char *)json_string_value(json_array_get(ids, i))) == NULL) {
            tsb_reply_error(resp, TSE_INVALID, "ack_ids",
                            "Invalid ack_ids: every ack id must be a string.");
            free(out);
            return NULL;
        }
    }
    return out;
}

/* An ack or nack between its steps (req->ctx): the ids, for the streams. */
typedef struct settle_ctx {
    json_t *body; /* owns the strings */
    char **ids;
    size_t n;
    uint32_t delay_ms;
    bool nack;
} settle_ctx;

static void settle_ctx_free(void *arg)
{
    settle_ctx *sc = arg;

    if (sc == NULL)
        return;
    json_decref(sc->body);
    free(sc->ids);
    free(sc);
}

static void then_settle(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                        ProtobufCMessage *out)
{
    settle_ctx *sc = req->ctx;

    tsb_sse_settled(req->bridge->sse, req->param, sc->ids, sc->n, sc->nack, sc->delay_ms);
    tsb_reply_ok(resp, tsb_json_from_message(out));
}

/* delay_ms of a nack body; false when answered. */
static bool delay_of(const json_t *body, uint32_t *delay, tsb_response *resp)
{
    json_t *v = json_object_get(body, "delay_ms");

    *delay = 0;
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 86400000) {
        tsb_reply_error(resp, TSE_INVALID, "delay_ms",
                        "Invalid delay_ms: must be an integer from 0 to 86400000.");
        return false;
    }
    *delay = (uint32_t)json_integer_value(v);
    return true;
}

/* reject of a nack body (dead-letter now); false when answered. */
static bool reject_of(const json_t *body, bool *reject, tsb_response *resp)
{
    json_t *v = json_object_get(body, "reject");

    *reject = json_is_true(v);
    if (v == NULL || json_is_null(v) || json_is_boolean(v))
        return true;
    tsb_reply_error(resp, TSE_INVALID, "reject", "Invalid reject: must be true or false.");
    return false;
}

static void settle(tsb_request *req, tsb_response *resp, bool nack)
{
    Tracseq__Events__V1__AcknowledgeRequest ack = TRACSEQ__EVENTS__V1__ACKNOWLEDGE_REQUEST__INIT;
    Tracseq__Events__V1__NackRequest nk = TRACSEQ__EVENTS__V1__NACK_REQUEST__INIT;
    settle_ctx *sc = calloc(1, sizeof(*sc));
    bool reject = false;

    if (sc == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    req->ctx = sc;
    req->ctx_free = settle_ctx_free;
    sc->nack = nack;
    if ((sc->body = tsb_object_body(req, resp)) == NULL ||
        (sc->ids = ack_ids(sc->body, &sc->n, resp)) == NULL ||
        !delay_of(sc->body, &sc->delay_ms, resp) || (nack && !reject_of(sc->body, &reject, resp)))
        return;
    ack.subscription = nk.subscription = req->param;
    ack.n_ack_ids = nk.n_ack_ids = sc->n;
    ack.ack_ids = nk.ack_ids = sc->ids;
    nk.delay_ms = sc->delay_ms;
    nk.reject = reject;
    tsb_request_call(req, resp, nack ? "Nack" : "Acknowledge", nack ? &nk.base : &ack.base, 0, 0,
                     then_settle);
}

void tsb_handle_subscription_ack(tsb_request *req, tsb_response *resp)
{
    settle(req, resp, false);
}

void tsb_handle_subscription_nack(tsb_request *req, tsb_response *resp)
{
    settle(req, resp, true);
}
