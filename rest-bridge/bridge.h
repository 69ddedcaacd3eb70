/*
 * bridge.h - the REST bridge's internals shared by its files: the process
 * state, one HTTP request and its answer, asynchronous steps, the route
 * handlers and the reply helpers.
 *
 * Threading: a tsb_bridge is built at start and read-only afterwards (its
 * counters are atomics). A request runs on the HTTP worker thread that owns
 * its connection. A handler either answers at once (fills resp) or starts
 * an asynchronous step (tsb_request_call, tsb_request_defer): the
 * connection is then suspended, the worker serves other connections, and
 * once the step ends (on the C SDK's call thread) the connection
 * is resumed and the step's continuation runs on the worker again. So a
 * tsb_request and its tsb_response are only ever touched by one thread at
 * a time, and no worker ever waits for the event service.
 */
#ifndef TSB_BRIDGE_BRIDGE_H
#define TSB_BRIDGE_BRIDGE_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "calls.h"
#include "common/clock.h"
#include "config.h"
#include "domain/validate.h"
#include "metrics.h"
#include "tracseq/client.h"

/* The longest X-Correlation-ID header the bridge accepts, in characters. */
#define TSB_CORRELATION_MAX 128

/* The longest Authorization header the bridge forwards; a longer one is
 * not forwarded (the service then sees no credentials). */
#define TSB_AUTHORIZATION_MAX 4096

typedef struct tsb_header_timer tsb_header_timer;
typedef struct tsb_sse_hub tsb_sse_hub;
typedef struct tsb_subcache tsb_subcache;

typedef struct tsb_bridge {
    const tsb_bridge_config *cfg;
    tsb_calls *calls;
    tse_client *client;                /* the SDK's client of the event service */
    tse_client_publisher **publishers; /* one per gRPC channel (publish.c) */
    size_t npublishers;
    atomic_size_t next_publisher; /* round robin over them */
    tsb_sse_hub *sse;
    tsb_subcache *subcache;
    tsb_metrics *metrics;
    tsb_header_timer *header_timer; /* HEADER_TIMEOUT; made by tsb_bridge_start */
    int64_t started_us;             /* monotonic */
    struct MHD_Daemon *daemon;
    struct tsb_https *https; /* TLS_CERT: NULL for plain HTTP (https.h) */
    atomic_int suspended;    /* connections suspended right now */
    /* Requests admitted (routed to a handler) whose connection MHD has not
     * yet told done: every suspension belongs to one of them. Once stopping
     * is set no request is admitted, so when this falls to 0 nothing can
     * suspend a connection any more and MHD may be stopped. */
    atomic_int admitted;
    atomic_bool stopping;
    tse_uuid_seq ids; /* correlation ids */
} tsb_bridge;

/* One request, fully read, as a handler sees it. Lives until the answer
 * is sent, across asynchronous steps. */
typedef struct tsb_request {
    tsb_bridge *bridge;
    struct MHD_Connection *conn; /* for header and query lookups */
    const char *method;          /* HEAD is handled as GET */
    const char *path;
    const char *body; /* NUL-terminated; borrowed */
    size_t body_len;
    char param[256];  /* the path's {name} segment, when the route has one */
    char param2[256]; /* a second {...} segment (dead-letter id, snapshot name) */
    size_t route;     /* its index in the route table */
    char correlation_id[TSB_CORRELATION_MAX + 1];
    bool correlation_given; /* came from X-Correlation-ID (else generated) */
    /* The caller's Authorization header ("" when none), forwarded as the
     * `authorization` metadata of every call made for this request: the
     * bridge has no rights of its own (docs/security.md). */
    char authorization[TSB_AUTHORIZATION_MAX + 1];
    void *ctx;                   /* a handler's state between steps */
    void (*ctx_free)(void *ctx); /* called when the request ends, if set */
} tsb_request;

/* The answer a handler fills; the server sends it. */
typedef struct tsb_response {
    unsigned status;
    char *body; /* malloc'd, owned; NULL: empty */
    size_t len;
    const char *content_type;    /* static */
    const char *code;            /* machine code for logs: "OK" or an error code */
    const char *allow;           /* with 405: the Allow header (static) */
    json_t *headers;             /* more headers (name -> string), owned; NULL: none */
    int retry_after_s;           /* > 0: a Retry-After header (429 with the service's hint) */
    struct MHD_Response *stream; /* a streamed body (SSE) instead of body; owned */
    bool pending;                /* an asynchronous step is running */
} tsb_response;

typedef void (*tsb_handler)(tsb_request *req, tsb_response *resp);

/*
 * The continuation of an asynchronous step, run on the request's worker
 * thread: st is the step's outcome, out (borrowed: freed once the
 * continuation returns; may be NULL) its message. It answers by filling
 * resp, or starts another step.
 */
typedef void (*tsb_then)(tsb_request *req, tsb_response *resp, const tsb_calls_status *st,
                         ProtobufCMessage *out);

/* ---- server.c: the HTTP server (libmicrohttpd) ---- */

/* Binds cfg->host:cfg->port and starts the worker threads. */
tse_status tsb_bridge_start(tsb_bridge *b, tse_error *err);
/*
 * Stops accepting connections; answers any new request on an open
 * connection 503 with Connection: close (and closes each connection after
 * its answer); ends streams and long-polls; lets the requests in progress
 * finish (cancelled after 2 x RPC_TIMEOUT); joins the threads. TSE_UNAVAILABLE
 * (logged) when a connection stayed suspended even after every call was
 * cancelled: MHD would abort, so it is left running and the caller must
 * exit without freeing what its threads use.
 */
tse_status tsb_bridge_stop(tsb_bridge *b);

/* Suspends / resumes a connection, keeping b->suspended. Suspend only from
 * the connection's own handler or content reader; resume only after. */
void tsb_bridge_suspend(tsb_bridge *b, struct MHD_Connection *conn);
void tsb_bridge_resume(tsb_bridge *b, struct MHD_Connection *conn);

/* Suspends req until tsb_request_complete; then() runs after. */
void tsb_request_defer(tsb_request *req, tsb_response *resp, tsb_then then);

/* Ends a deferred step from any thread, once per tsb_request_defer: hands
 * over the outcome (out: owned, may be NULL) and resumes the request. */
void tsb_request_complete(tsb_request *req, const tsb_calls_status *st, ProtobufCMessage *out);

/* Options of tsb_request_call. */
enum {
    TSB_CALL_WATCH = 1,    /* cancel the call when the HTTP client hangs up (long-polls) */
    TSB_CALL_FAILURES = 2, /* then() runs after a failure too */
};

/*
 * A deferred unary call of method (tsb_calls_unary) with deadline
 * timeout_ms (0: RPC_TIMEOUT). then() gets its outcome when it succeeded;
 * a failure is answered (tsb_reply_failed) unless flags asks for
 * TSB_CALL_FAILURES.
 */
void tsb_request_call(tsb_request *req, tsb_response *resp, const char *method,
                      const ProtobufCMessage *in, int timeout_ms, int flags, tsb_then then);

/* ---- routes.c: the table and the service-information endpoints ---- */

/*
 * Finds the handler of method + path; sets *route and req->route to its
 * index for metrics (tsb_route_count() when unmatched) and answers 404 /
 * 405 itself when none fits (returns NULL then).
 */
tsb_handler tsb_route_find(tsb_request *req, tsb_response *resp, size_t *route);
size_t tsb_route_count(void);
/* Route i's name, e.g. "GET /api/v1/subscriptions/{name}"; "unmatched" for
 * tsb_route_count(). */
const char *tsb_route_name(size_t i);
/* Route i's EventService method and the request field its second "{...}"
 * segment fills (NULL when none). */
const char *tsb_route_rpc(size_t i);
const char *tsb_route_field(size_t i);

/* ---- operate.c: dead letters, seek and snapshots of a subscription ---- */
/* The route's method with a request made of the JSON body (POST), the
 * path's {name} as its subscription, the route's second segment, and (for
 * ListDeadLetters) ?page_size= and ?page_token=. */
void tsb_handle_operate(tsb_request *req, tsb_response *resp);

/* ---- console.c: the web console's page and files (console.h) ---- */
void tsb_handle_console(tsb_request *req, tsb_response *resp);

/* ---- publish.c ---- */
void tsb_handle_publish(tsb_request *req, tsb_response *resp);
void tsb_handle_batch(tsb_request *req, tsb_response *resp);

/* The publishers of b->client, one per gRPC channel. */
tse_status tsb_publishers_start(tsb_bridge *b, tse_error *err);
/* Shutdown: refuses events, and answers every unanswered one at once (503,
 * "the REST bridge is shutting down"). Not from the SDK's publisher thread. */
void tsb_publishers_cancel(tsb_bridge *b);
/* After cancel; no-op when none were started. */
void tsb_publishers_destroy(tsb_bridge *b);

/* ---- subscriptions.c ---- */
void tsb_handle_subscribe(tsb_request *req, tsb_response *resp);
void tsb_handle_subscription_delete(tsb_request *req, tsb_response *resp);
void tsb_handle_subscription_pull(tsb_request *req, tsb_response *resp);
void tsb_handle_subscription_ack(tsb_request *req, tsb_response *resp);
void tsb_handle_subscription_nack(tsb_request *req, tsb_response *resp);

/*
 * What the bridge remembers of subscriptions: whether each is auto_ack, for
 * a few seconds (pulls of auto_ack subscriptions are acked by the bridge).
 * Thread-safe. Destroy(NULL) is a no-op.
 */
tsb_subcache *tsb_subcache_create(void);
void tsb_subcache_destroy(tsb_subcache *c);

/* The event as clients read it (the payload oneof under "payload"); NULL
 * when ev is NULL. Caller releases with json_decref. */
json_t *tsb_event_json(const Tracseq__Events__V1__Event *ev);

/* ---- reply.c: answers; each error's HTTP status from one table ---- */

/*
 * Why the bridge answers as it does: a tse_status (its HTTP status and
 * machine code from tse_status_to_http), or one of HTTP's own answers that
 * no status describes (mostly refusals), numbered after them.
 */
enum {
    TSB_INVALID_JSON = TSE_INTERNAL + 1, /* 400 */
    TSB_INVALID_HEADER,                  /* 400 */
    TSB_INVALID_CLOUDEVENT,     /* 400: against the CloudEvents spec (domain/cloudevent.h) */
    TSB_METHOD_NOT_ALLOWED,     /* 405 */
    TSB_HEADER_TIMEOUT,         /* 408 */
    TSB_BODY_TIMEOUT,           /* 408 */
    TSB_PAYLOAD_TOO_LARGE,      /* 413 */
    TSB_UNSUPPORTED_MEDIA_TYPE, /* 415 */
    TSB_HEADERS_TOO_LARGE,      /* 431 */
    TSB_CLIENT_CLOSED,          /* 499, nginx's: nobody reads the answer */
    TSB_SHUTTING_DOWN,          /* 503 */
    TSB_NO_CONTENT,             /* 204: success with nothing to answer */
};

/* The HTTP status of why (a tse_status or a TSB_ refusal) and, in *code
 * (may be NULL), its machine code: the one place both are decided. */
unsigned tsb_http_of(int why, const char **code);

/* Answers status with body (takes ownership of body, even on failure). */
void tsb_reply_json(tsb_response *resp, unsigned status, json_t *body);

/* Answers success (TSE_OK's status) with body; ownership as tsb_reply_json. */
void tsb_reply_ok(tsb_response *resp, json_t *body);

/* Sets resp's HTTP status and machine code to those of why (a tse_status or
 * a TSB_ one), for a handler that fills the body itself. */
void tsb_reply_status(tsb_response *resp, int why);

/*
 * Answers an error: {"error": sentence, "code": code, "details": [...]}
 * with one detail naming field when field is non-NULL; why (a tse_status
 * or a TSB_ refusal) decides the HTTP status and code. A 503 carries
 * Retry-After (server.c).
 */
void tsb_reply_error(tsb_response *resp, int why, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The error object of one of HTTP's own refusals (why: a TSB_ one), the
 * field as given; *status gets its HTTP status. */
json_t *tsb_refusal_json(int why, const char *field, const char *message, unsigned *status);

/* Answers 500 "Out of memory.". */
void tsb_reply_nomem(tsb_response *resp);

/*
 * The error object of a failure of status code: field (may be NULL or "")
 * becomes a detail, its leading "event." dropped; rename (may be NULL)
 * maps its first segment to the client's name for it (CloudEvents
 * "event_type" -> "type"). *status gets the HTTP status.
 */
json_t *tsb_error_json(tse_status code, const char *field, const char *message,
                       const char *(*rename)(const char *), unsigned *status);

/* Answers a failed call (a 500 is logged). */
void tsb_reply_failed(tsb_response *resp, const tsb_request *req, const tsb_calls_status *st,
                      const char *(*rename)(const char *));

/* True when the request's Content-Type is type (parameters ignored). */
bool tsb_media_is(const tsb_request *req, const char *type);

/* Answers 415 naming the accepted media types. */
void tsb_reply_unsupported(const tsb_request *req, tsb_response *resp, const char *accepted);

/* Parses req->body as JSON; answers 400 with line/column and returns NULL
 * when it is not. */
json_t *tsb_parse_body(const tsb_request *req, tsb_response *resp);

/* An optional JSON object body: {} when there is none; otherwise it must be
 * application/json (415) holding an object (400/422 naming "body"). NULL
 * when refused (resp answered). */
json_t *tsb_object_body(const tsb_request *req, tsb_response *resp);

/* A message as JSON (snake_case, defaults emitted, 64-bit integers as
 * numbers). Caller releases with json_decref; NULL on failure. */
json_t *tsb_json_from_message(const ProtobufCMessage *msg);

#endif
