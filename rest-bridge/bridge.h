/*
 * bridge.h - the REST bridge's internals shared by its files: the process
 * state, one HTTP request and its answer, asynchronous steps, the route
 * handlers and the reply helpers.
 *
 * Threading: a tse_bridge is built at start and read-only afterwards (its
 * counters are atomics). A request runs on the HTTP worker thread that owns
 * its connection. A handler either answers at once (fills resp) or starts
 * an asynchronous step (tse_request_call, tse_request_defer): the
 * connection is then suspended, the worker serves other connections, and
 * once the step ends (on the gRPC completion-queue thread) the connection
 * is resumed and the step's continuation runs on the worker again. So a
 * tse_request and its tse_response are only ever touched by one thread at
 * a time, and no worker ever waits for the event service.
 */
#ifndef TSE_BRIDGE_BRIDGE_H
#define TSE_BRIDGE_BRIDGE_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "rpc.h"

#define TSE_CORRELATION_MAX 128

typedef struct tse_publisher tse_publisher;
typedef struct tse_sse_hub tse_sse_hub;
typedef struct tse_subcache tse_subcache;

typedef struct tse_bridge {
    const tse_bridge_config *cfg;
    tse_rpc *rpc;
    tse_publisher *publisher;
    tse_sse_hub *sse;
    tse_subcache *subcache;
    tse_metrics *metrics;
    int64_t started_us; /* monotonic */
    struct MHD_Daemon *daemon;
    atomic_int suspended; /* connections suspended right now */
    atomic_bool stopping;
    uint64_t id_seed;              /* random, set at start: correlation ids */
    atomic_uint_least64_t id_next; /* counter of correlation ids made */
} tse_bridge;

/* One request, fully read, as a handler sees it. Lives until the answer
 * is sent, across asynchronous steps. */
typedef struct tse_request {
    tse_bridge *bridge;
    struct MHD_Connection *conn; /* for header and query lookups */
    const char *method;          /* HEAD is handled as GET */
    const char *path;
    const char *body; /* NUL-terminated; borrowed */
    size_t body_len;
    char param[256]; /* the path's {name} segment, when the route has one */
    char correlation_id[TSE_CORRELATION_MAX + 1];
    bool correlation_given;      /* came from X-Correlation-ID (else generated) */
    void *ctx;                   /* a handler's state between steps */
    void (*ctx_free)(void *ctx); /* called when the request ends, if set */
} tse_request;

/* The answer a handler fills; the server sends it. */
typedef struct tse_response {
    unsigned status;
    char *body; /* malloc'd, owned; NULL: empty */
    size_t len;
    const char *content_type;    /* static */
    const char *code;            /* machine code for logs: "OK" or an error code */
    int retry_after;             /* > 0: a Retry-After header */
    const char *allow;           /* with 405: the Allow header (static) */
    struct MHD_Response *stream; /* a streamed body (SSE) instead of body; owned */
    bool pending;                /* an asynchronous step is running */
} tse_response;

typedef void (*tse_handler)(tse_request *req, tse_response *resp);

/*
 * The continuation of an asynchronous step, run on the request's worker
 * thread: st is the step's outcome, out (owned by the continuation, may be
 * NULL) its message. It answers by filling resp, or starts another step.
 */
typedef void (*tse_then)(tse_request *req, tse_response *resp, const tse_rpc_status *st,
                         ProtobufCMessage *out);

/* ---- server.c: the HTTP server (libmicrohttpd) ---- */

/* Binds cfg->host:cfg->port and starts the worker threads. */
tse_status tse_bridge_start(tse_bridge *b, tse_error *err);
/* Stops accepting, ends streams and long-polls, lets short requests
 * finish, joins the threads. */
void tse_bridge_stop(tse_bridge *b);

/* A fresh correlation id (UUID v4 layout) into out (>= 37 bytes). */
void tse_bridge_new_id(tse_bridge *b, char *out);

/* Suspends / resumes a connection, keeping b->suspended. Suspend only from
 * the connection's own handler or content reader; resume only after. */
void tse_bridge_suspend(tse_bridge *b, struct MHD_Connection *conn);
void tse_bridge_resume(tse_bridge *b, struct MHD_Connection *conn);

/* Suspends req until tse_request_complete; then() runs after. */
void tse_request_defer(tse_request *req, tse_response *resp, tse_then then);

/* Ends a deferred step from any thread, once per tse_request_defer: hands
 * over the outcome (out: owned, may be NULL) and resumes the request. */
void tse_request_complete(tse_request *req, const tse_rpc_status *st, ProtobufCMessage *out);

/*
 * A deferred unary call of TSE_RPC_SERVICE method (or a full path starting
 * with '/'); then() gets its outcome. watch: cancel the call when the HTTP
 * client hangs up (long-polls).
 */
void tse_request_call(tse_request *req, tse_response *resp, const char *method,
                      const ProtobufCMessage *in, const ProtobufCMessageDescriptor *out_desc,
                      int timeout_ms, bool watch, tse_then then);

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

/*
 * What the bridge remembers of subscriptions: whether each is auto_ack, for
 * a few seconds (pulls of auto_ack subscriptions are acked by the bridge).
 * Thread-safe. Destroy(NULL) is a no-op.
 */
tse_subcache *tse_subcache_create(void);
void tse_subcache_destroy(tse_subcache *c);

/* The event as clients read it (the payload oneof under "payload"); NULL
 * when ev is NULL. Caller releases with json_decref. */
json_t *tse_event_json(const Tracseq__Events__V1__Event *ev);
/* The same event in CloudEvents 1.0 structured mode (new reference). */
json_t *tse_event_cloudevent(const Tracseq__Events__V1__Event *ev);

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

/* The monotonic clock, in microseconds. */
int64_t tse_now_us(void);

#endif
