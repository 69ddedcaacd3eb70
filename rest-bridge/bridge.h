/*
 * bridge.h - the REST bridge's internals shared by its files: the process
 * state, one HTTP request and its answer, the route handlers and the reply
 * helpers.
 *
 * Threading: a tse_bridge is built at start and read-only afterwards (its
 * metrics are atomics); every request is handled on one HTTP worker thread
 * from start to answer, so a tse_request and its tse_response belong to
 * that thread alone.
 */
#ifndef TSE_BRIDGE_BRIDGE_H
#define TSE_BRIDGE_BRIDGE_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "rpc.h"

#define TSE_CORRELATION_MAX 128

typedef struct tse_bridge {
    const tse_bridge_config *cfg;
    tse_rpc *rpc;
    tse_metrics *metrics;
    int64_t started_us; /* monotonic */
    struct MHD_Daemon *daemon;
} tse_bridge;

/* One request, fully read, as a handler sees it. */
typedef struct tse_request {
    tse_bridge *bridge;
    struct MHD_Connection *conn; /* for header and query lookups */
    const char *method;          /* HEAD is handled as GET */
    const char *path;
    const char *body; /* NUL-terminated; borrowed */
    size_t body_len;
    char param[256]; /* the path's {name} segment, when the route has one */
    char correlation_id[TSE_CORRELATION_MAX + 1];
    bool correlation_given; /* came from X-Correlation-ID (else generated) */
} tse_request;

/* The answer a handler fills; the server sends it. */
typedef struct tse_response {
    unsigned status;
    char *body; /* malloc'd, owned; NULL: empty */
    size_t len;
    const char *content_type; /* static */
    const char *code;         /* machine code for logs: "OK" or an error code */
    int retry_after;          /* > 0: a Retry-After header */
    const char *allow;        /* with 405: the Allow header (static) */
} tse_response;

typedef void (*tse_handler)(tse_request *req, tse_response *resp);

/* ---- server.c: the HTTP server (libmicrohttpd) ---- */

/* Binds cfg->host:cfg->port and starts the worker threads. */
tse_status tse_bridge_start(tse_bridge *b, tse_error *err);
/* Stops accepting, waits for requests in progress, joins the threads. */
void tse_bridge_stop(tse_bridge *b);

/* ---- routes.c: the table and the service-information endpoints ---- */

/*
 * Finds the handler of method + path; sets *route to its index for metrics
 * (tse_route_count() when unmatched) and answers 404 / 405 itself when none
 * fits (returns NULL then).
 */
tse_handler tse_route_find(tse_request *req, tse_response *resp, size_t *route);
size_t tse_route_count(void);
const char *const *tse_route_names(void);

/* ---- publish.c ---- */
void tse_handle_publish(tse_request *req, tse_response *resp);
void tse_handle_batch(tse_request *req, tse_response *resp);

/* ---- subscriptions.c ---- */
void tse_handle_subscribe(tse_request *req, tse_response *resp);
void tse_handle_subscription_list(tse_request *req, tse_response *resp);
void tse_handle_subscription_get(tse_request *req, tse_response *resp);
void tse_handle_subscription_delete(tse_request *req, tse_response *resp);
void tse_handle_subscription_pull(tse_request *req, tse_response *resp);
void tse_handle_subscription_ack(tse_request *req, tse_response *resp);
void tse_handle_subscription_nack(tse_request *req, tse_response *resp);

/* ---- reply.c: answers, and the one gRPC -> HTTP mapping ---- */

/* Answers status with body (takes ownership of body, even on failure). */
void tse_reply_json(tse_response *resp, unsigned status, json_t *body);

/*
 * Answers an error: {"error": sentence, "code": code, "details": [...]}
 * with one detail naming field when field is non-NULL.
 */
void tse_reply_error(tse_response *resp, unsigned status, const char *code, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The HTTP status and machine code for a gRPC status code. */
unsigned tse_http_status_of(grpc_status_code code, const char **machine_code);

/*
 * The error object for a failed call: details "field: message" of
 * INVALID_ARGUMENT become a detail naming the field (its leading "event."
 * dropped). rename (may be NULL) maps a field's first segment to the
 * client's name for it (CloudEvents "event_type" -> "type"). *status gets
 * the HTTP status.
 */
json_t *tse_error_json(grpc_status_code code, const char *field, const char *message,
                       const char *(*rename)(const char *), unsigned *status);

/* Answers a failed call (503s carry Retry-After). */
void tse_reply_rpc_error(tse_response *resp, const tse_request *req, const tse_rpc_status *st,
                         const char *(*rename)(const char *));

/* True when the request's Content-Type is type (parameters ignored). */
bool tse_media_is(const tse_request *req, const char *type);

/* Answers 415 naming the accepted media types. */
void tse_reply_unsupported(const tse_request *req, tse_response *resp, const char *accepted);

/* Parses req->body as JSON; answers 400 with line/column and returns NULL
 * when it is not. */
json_t *tse_parse_body(const tse_request *req, tse_response *resp);

/* A message as JSON (snake_case, defaults emitted, 64-bit integers as
 * numbers). Caller releases with json_decref; NULL on failure. */
json_t *tse_json_from_message(const ProtobufCMessage *msg);

/* Milliseconds of the monotonic clock, in microseconds. */
int64_t tse_now_us(void);

#endif
