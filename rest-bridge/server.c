/*
 * server.c - the HTTP/1.1 side: libmicrohttpd with an internal pool of
 * poll() worker threads, request bodies read under a hard cap, the
 * correlation id, routing, the answer, its log line and its metrics.
 *
 * Threading model: MHD_OPTION_THREAD_POOL_SIZE workers (one per core by
 * default) each own a share of the connections. A handler never waits for
 * the event service: it suspends its connection (MHD_suspend_connection)
 * and starts the call; the completion, on the SDK's call thread (calls.h),
 * stores the outcome and resumes the connection; MHD then calls us again
 * and the step's continuation answers on the worker. So a long-poll or an
 * event stream costs a suspended connection, not a thread, and a slow
 * service cannot stall the other connections of a worker. Ordering: a
 * connection is suspended before its call starts, and resumed exactly once
 * per suspension, after it.
 *
 * Invariants: a body never grows past cfg->max_body_bytes (a bigger one is
 * discarded as it arrives and answered 413, early when Content-Length
 * announces it); headers over cfg->max_header_bytes are answered 431 before
 * any handler runs, and a header phase longer than cfg->header_timeout_ms
 * ends the connection (header_timer.h); every answer carries
 * X-Correlation-ID; every request answered by us is logged once and counted
 * once; MHD is stopped only when no connection is suspended (see
 * tsb_bridge_stop).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bridge.h"
#include "common/alloc.h"
#include "domain/validate.h"
#include "header_timer.h"
#include "https.h"
#include "obs/log.h"
#include "sse.h"

/* How long a stop waits for idle keep-alive connections (see linger). */
#define STOP_LINGER_MS 500

/* The state of one request between MHD's calls of the handler. The request
 * and its answer come first so that tsb_request_* can find the rest. */
typedef struct exchange {
    tsb_request req;
    tsb_response resp;
    int64_t start_us;
    char *body;
    size_t len, cap;
    size_t route;
    bool too_large;
    size_t head_bytes; /* the request line and headers, as counted by head_size */
    bool admitted;     /* counted in b->admitted */
    bool started;      /* the handler ran */
    bool answered;     /* the answer is queued */
    /* An asynchronous step: set before the connection is suspended, read
     * after it is resumed (MHD's resume lock orders the two threads). */
    tsb_then then;
    int flags; /* of tsb_request_call */
    tsb_calls_status st;
    ProtobufCMessage *out;
    bool ready;
} exchange;

static exchange *exchange_of(tsb_request *req)
{
    return (exchange *)(void *)req; /* req is the first member */
}

/* Printable ASCII without spaces, 1..TSB_CORRELATION_MAX characters. */
static bool correlation_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > TSB_CORRELATION_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static const char *log_status(const tsb_response *resp)
{
    if (resp->status == tsb_http_of(TSE_UNAVAILABLE, NULL))
        return "UNAVAILABLE";
    if (resp->status >= 500 && resp->status != tsb_http_of(TSE_UNIMPLEMENTED, NULL))
        return "INTERNAL";
    return resp->code ? resp->code : "OK";
}

/* A handler's own headers (a binary-mode CloudEvent's ce-*). */
static void add_headers(struct MHD_Response *r, const json_t *headers)
{
    const char *name;
    json_t *v;

    json_object_foreach((json_t *)headers, name,
                        v) if (json_is_string(v) && strcasecmp(name, "Content-Type") != 0)
        MHD_add_response_header(r, name, json_string_value(v));
}

static enum MHD_Result send_response(tsb_bridge *b, struct MHD_Connection *conn,
                                     const tsb_request *req, tsb_response *resp)
{
    struct MHD_Response *r = resp->stream;
    enum MHD_Result ret;
    const char *ctype;
    char retry[16];

    if (r == NULL)
        r = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL)
        return MHD_NO;
    if (resp->stream == NULL)
        resp->body = NULL; /* MHD frees it now */
    resp->stream = NULL;
    ctype = json_string_value(json_object_get(resp->headers, "Content-Type"));
    if (ctype == NULL)
        ctype = resp->content_type ? resp->content_type : "application/json";
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "X-Correlation-ID", req->correlation_id);
    /* Every 503 is worth retrying (RETRY_AFTER 0: no header). */
    if (resp->status == tsb_http_of(TSE_UNAVAILABLE, NULL) && b->cfg->retry_after_s > 0) {
        snprintf(retry, sizeof(retry), "%d", b->cfg->retry_after_s);
        MHD_add_response_header(r, "Retry-After", retry);
    }
    if (resp->retry_after_s > 0) {
        snprintf(retry, sizeof(retry), "%d", resp->retry_after_s);
        MHD_add_response_header(r, "Retry-After", retry);
    }
    if (resp->allow != NULL)
        MHD_add_response_header(r, "Allow", resp->allow);
    add_headers(r, resp->headers);
    /* Stopping: no further request on this connection (MHD closes it once
     * the answer is sent). */
    if (atomic_load(&b->stopping))
        MHD_add_response_header(r, "Connection", "close");
    ret = MHD_queue_response(conn, resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Logs and counts the answer of one request, once. */
static void account(tsb_bridge *b, exchange *x)
{
    int64_t latency = tse_clock_us() - x->start_us;
    tsb_response *resp = &x->resp;

    tsb_metrics_record(b->metrics, x->route, resp->status, latency);
    if (resp->status >= 400 || tse_log_enabled(TSE_LOG_INFO)) {
        char status[8];
        snprintf(status, sizeof(status), "%u", resp->status);
        tse_log_request(x->req.method, log_status(resp), latency, x->req.correlation_id,
                        (const char *[]){"path", x->req.path, "http_status", status, NULL});
    }
    x->answered = true;
}

/* Logs, counts and sends one answer. */
static enum MHD_Result answer(tsb_bridge *b, struct MHD_Connection *conn, exchange *x)
{
    account(b, x);
    return send_response(b, conn, &x->req, &x->resp);
}

static void request_init(tsb_bridge *b, struct MHD_Connection *conn, const char *url,
                         const char *method, exchange *x)
{
    const char *corr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Correlation-ID");
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    tsb_request *req = &x->req;

    req->bridge = b;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->body = x->body ? x->body : "";
    req->body_len = x->len;
    x->resp.status = tsb_http_of(TSE_INTERNAL, NULL);
    if (corr != NULL && correlation_valid(corr)) {
        snprintf(req->correlation_id, sizeof(req->correlation_id), "%s", corr);
        req->correlation_given = true;
    } else {
        tse_uuid_seq_next(&b->ids, req->correlation_id);
    }
    req->authorization[0] = '\0';
    if (auth != NULL && strlen(auth) <= TSB_AUTHORIZATION_MAX && strpbrk(auth, "\r\n") == NULL)
        snprintf(req->authorization, sizeof(req->authorization), "%s", auth);
}

/* Answers unless an asynchronous step is running. */
static enum MHD_Result answer_or_wait(tsb_bridge *b, struct MHD_Connection *conn, exchange *x)
{
    if (x->resp.pending)
        return MHD_YES;
    return answer(b, conn, x);
}

/*
 * Counts the request in b->admitted unless the bridge is stopping. The
 * increment comes before the check and tsb_bridge_stop sets stopping
 * before it reads the count (both sequentially consistent), so either this
 * request sees stopping or the stop sees it counted.
 */
static bool admit(tsb_bridge *b, exchange *x)
{
    atomic_fetch_add(&b->admitted, 1);
    if (atomic_load(&b->stopping)) {
        atomic_fetch_sub(&b->admitted, 1);
        return false;
    }
    x->admitted = true;
    return true;
}

/* The last call of a request: route it, run its handler. */
static enum MHD_Result dispatch(tsb_bridge *b, struct MHD_Connection *conn, exchange *x,
                                const char *url, const char *method)
{
    const char *corr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Correlation-ID");
    tsb_handler fn;

    x->started = true;
    tsb_header_timer_request_read(b->header_timer, conn);
    x->route = tsb_route_count();
    request_init(b, conn, url, method, x);
    if (!admit(b, x)) {
        tsb_reply_error(&x->resp, TSB_SHUTTING_DOWN, NULL,
                        "The REST bridge is shutting down; retry on a new connection.");
    } else if (x->head_bytes > (size_t)b->cfg->max_header_bytes)
        tsb_reply_error(&x->resp, TSB_HEADERS_TOO_LARGE, "headers",
                        "The request line and headers take %zu bytes, over the limit of %lld "
                        "bytes (MAX_HEADER_BYTES).",
                        x->head_bytes, (long long)b->cfg->max_header_bytes);
    else if (corr != NULL && !x->req.correlation_given)
        tsb_reply_error(&x->resp, TSB_INVALID_HEADER, "X-Correlation-ID",
                        "X-Correlation-ID must be 1 to %d printable ASCII characters without "
                        "spaces.",
                        TSB_CORRELATION_MAX);
    else if (x->too_large)
        tsb_reply_error(&x->resp, TSB_PAYLOAD_TOO_LARGE, "body",
                        "The body is larger than the limit of %lld bytes (MAX_BODY_BYTES).",
                        (long long)b->cfg->max_body_bytes);
    else if ((fn = tsb_route_find(&x->req, &x->resp, &x->route)) != NULL)
        fn(&x->req, &x->resp);
    return answer_or_wait(b, conn, x);
}

static void reply_closed(tsb_response *resp)
{
    tsb_reply_error(resp, TSB_CLIENT_CLOSED, NULL,
                    "The client closed the connection before the answer.");
}

/* The connection was resumed: run the continuation of the step that ended. */
static enum MHD_Result resumed(tsb_bridge *b, struct MHD_Connection *conn, exchange *x)
{
    tsb_then then = x->then;
    ProtobufCMessage *out = x->out;

    if (!x->ready || then == NULL)
        return MHD_YES;
    x->ready = false;
    x->then = NULL;
    x->out = NULL;
    x->resp.pending = false;
    if (x->st.code == TSE_CANCELLED && strcmp(x->st.message, TSB_CALLS_HANGUP) == 0)
        reply_closed(&x->resp); /* nobody reads it: counted and logged as 499 */
    else if (x->st.code != TSE_OK && !(x->flags & TSB_CALL_FAILURES))
        tsb_reply_failed(&x->resp, &x->req, &x->st, NULL);
    else
        then(&x->req, &x->resp, &x->st, out);
    if (out != NULL)
        protobuf_c_message_free_unpacked(out, NULL);
    return answer_or_wait(b, conn, x);
}

static enum MHD_Result add_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": ", CRLF */
    return MHD_YES;
}

/* The size of the request line and headers, as sent but for whitespace. */
static size_t head_size(struct MHD_Connection *conn, const char *url, const char *method)
{
    size_t n = strlen(method) + strlen(url) + 12; /* " ", " HTTP/1.1", CRLF */

    MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, add_size, &n);
    return n;
}

/* The first call (headers only): set up, and refuse an announced oversize
 * body or oversize headers at once. */
static enum MHD_Result begin(tsb_bridge *b, struct MHD_Connection *conn, const char *url,
                             const char *method, void **con_cls)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    exchange *x = calloc(1, sizeof(*x));
    long long announced = cl ? strtoll(cl, NULL, 10) : 0;

    if (x == NULL)
        return MHD_NO;
    tsb_header_timer_headers_done(b->header_timer, conn);
    x->start_us = tse_clock_us();
    *con_cls = x;
    /* Stopping or headers over the limit: refused at once, the body
     * unread (MHD then closes). */
    x->head_bytes = head_size(conn, url, method);
    if (atomic_load(&b->stopping) || x->head_bytes > (size_t)b->cfg->max_header_bytes)
        return dispatch(b, conn, x, url, method);
    if (announced > b->cfg->max_body_bytes) {
        x->too_large = true;
        return dispatch(b, conn, x, url, method);
    }
    if (announced > 0) {
        x->body = malloc((size_t)announced + 1);
        x->cap = x->body ? (size_t)announced + 1 : 0;
    }
    return MHD_YES;
}

/* Appends a piece of body, within the cap; beyond it the body is dropped. */
static void absorb(tsb_bridge *b, exchange *x, const char *data, size_t n)
{
    if (x->too_large || x->started)
        return;
    if (x->len + n > (size_t)b->cfg->max_body_bytes) {
        x->too_large = true;
        free(x->body);
        x->body = NULL;
        x->len = x->cap = 0;
        return;
    }
    if (!TSE_GROW(realloc, x->body, x->cap, x->len + n + 1, 4096)) {
        x->too_large = true;
        return;
    }
    memcpy(x->body + x->len, data, n);
    x->len += n;
    x->body[x->len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    tsb_bridge *b = cls;
    exchange *x = *con_cls;

    if (x == NULL)
        return begin(b, conn, url, method, con_cls);
    if (*upload_size > 0) {
        absorb(b, x, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (x->answered)
        return MHD_YES;
    if (x->started)
        return resumed(b, conn, x);
    return dispatch(b, conn, x, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    tsb_bridge *b = cls;
    exchange *x = *con_cls;

    if (why == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        tsb_header_timer_request_done(b->header_timer, conn);
    if (x == NULL)
        return;
    /* A request whose client hung up before its answer: MHD may end it
     * without calling the handler again (when it reads the end of the
     * stream before it resumes the handler), so it is counted and logged
     * here as the 499 it would have been. */
    if (x->started && !x->answered) {
        reply_closed(&x->resp);
        account(b, x);
    }
    if (x->req.ctx_free != NULL)
        x->req.ctx_free(x->req.ctx);
    if (x->out != NULL)
        protobuf_c_message_free_unpacked(x->out, NULL);
    if (x->resp.stream != NULL)
        MHD_destroy_response(x->resp.stream);
    free(x->resp.body);
    json_decref(x->resp.headers);
    free(x->body);
    if (x->admitted)
        atomic_fetch_sub(&b->admitted, 1);
    free(x);
    *con_cls = NULL;
}

/* ---- asynchronous steps ---- */

void tsb_bridge_suspend(tsb_bridge *b, struct MHD_Connection *conn)
{
    atomic_fetch_add(&b->suspended, 1);
    MHD_suspend_connection(conn);
}

void tsb_bridge_resume(tsb_bridge *b, struct MHD_Connection *conn)
{
    MHD_resume_connection(conn);
    atomic_fetch_sub(&b->suspended, 1);
}

void tsb_request_defer(tsb_request *req, tsb_response *resp, tsb_then then)
{
    exchange *x = exchange_of(req);

    x->then = then;
    x->flags = 0;
    x->ready = false;
    resp->pending = true;
    tsb_bridge_suspend(req->bridge, req->conn);
}

void tsb_request_complete(tsb_request *req, const tsb_calls_status *st, ProtobufCMessage *out)
{
    exchange *x = exchange_of(req);

    x->st = *st;
    x->out = out;
    x->ready = true;
    tsb_bridge_resume(req->bridge, req->conn);
}

static void call_done(void *arg, const tsb_calls_status *st, ProtobufCMessage *out)
{
    tsb_request_complete(arg, st, out);
}

void tsb_request_call(tsb_request *req, tsb_response *resp, const char *method,
                      const ProtobufCMessage *in, int timeout_ms, int flags, tsb_then then)
{
    const union MHD_ConnectionInfo *info =
        flags & TSB_CALL_WATCH
            ? MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD)
            : NULL;

    /* Suspended before the call starts, so its completion always finds the
     * connection suspended. */
    tsb_request_defer(req, resp, then);
    exchange_of(req)->flags = flags;
    if (!tsb_calls_unary(req->bridge->calls, method, in, req->correlation_id, req->authorization,
                         timeout_ms > 0 ? timeout_ms : (int)req->bridge->cfg->rpc_timeout_ms,
                         info ? info->connect_fd : -1, call_done, req)) {
        tsb_calls_status st;
        tsb_calls_status_fail(&st, TSE_RESOURCE_EXHAUSTED, "the bridge could not start the call");
        tsb_request_complete(req, &st, NULL);
    }
}

/* MHD_OPTION_URI_LOG_CALLBACK: a request line arrived. Its result is the
 * request's first *con_cls: none. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    tsb_bridge *b = cls;

    (void)uri;
    tsb_header_timer_request_line(b->header_timer, conn);
    return NULL;
}

static void sweep_tick(void *arg, int64_t now_ms)
{
    (void)now_ms;
    tsb_header_timer_sweep(arg);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    tse_log(TSE_LOG_WARN, "http", (const char *[]){"error", msg, NULL});
}

/* Resolves cfg->host:cfg->port into addr. */
static tse_status resolve(const tsb_bridge_config *cfg, struct sockaddr_storage *addr,
                          tse_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    int rc;

    snprintf(port, sizeof(port), "%d", cfg->port);
    if ((rc = getaddrinfo(cfg->host, port, &hints, &res)) != 0)
        return tse_error_set(err, TSE_INVALID, "HOST", "invalid HOST (--host) '%s': %s", cfg->host,
                             gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return TSE_OK;
}

/*
 * Each connection's memory pool: MHD reads a request's line and headers
 * into half of it, and itself refuses (431, or 414 for a long URI, with a
 * short HTML page) what does not fit. Four times MAX_HEADER_BYTES, so that
 * headers a little over our limit get our JSON 431 naming it; only far
 * larger ones meet MHD's answer.
 */
static int64_t pool_size(const tsb_bridge_config *cfg)
{
    int64_t n = 4 * cfg->max_header_bytes;

    return n < 16384 ? 16384 : n;
}

static unsigned worker_threads(const tsb_bridge_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (cfg->threads > 0)
        return (unsigned)cfg->threads;
    return cpus > 0 ? (unsigned)cpus : 2;
}

tse_status tsb_bridge_start(tsb_bridge *b, tse_error *err)
{
    const tsb_bridge_config *cfg = b->cfg;
    struct sockaddr_storage addr;
    /* poll(), not epoll: libmicrohttpd 0.9.75's MHD_quiesce_daemon takes
     * the listening socket out of each worker's epoll set while the worker
     * may be doing the same, and the loser of that race aborts the process
     * ("Failed to remove listen FD from epoll set"). With poll() a worker
     * simply leaves the socket out of its next set. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_TURBO | MHD_USE_ERROR_LOG;
    unsigned timeout_s = (unsigned)((cfg->read_timeout_ms + 999) / 1000);
    unsigned threads = worker_threads(cfg);

    if (resolve(cfg, &addr, err) != TSE_OK)
        return TSE_INVALID;
    b->header_timer =
        tsb_header_timer_create(cfg->header_timeout_ms, cfg->read_timeout_ms, cfg->body_timeout_ms);
    if (b->header_timer == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    tsb_calls_add_tick(b->calls, sweep_tick, b->header_timer);

    tse_uuid_seq_init(&b->ids);
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The logger first, so that MHD's own checks of the options use it. A
     * pool of one is no pool: MHD then runs its single internal thread. */
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, b},
        {MHD_OPTION_SOCK_ADDR, 0, &addr},
        {MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)pool_size(cfg), NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, b},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)tsb_header_timer_notify, b->header_timer},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_request_line, b},
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };

    if (cfg->tls_cert[0] == '\0') {
        b->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, b,
                                     MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    } else {
        /* HTTPS: GnuTLS asks for the certificate before each handshake, so
         * a SIGHUP reaches new connections without a new listener. */
        if (!MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK))
            return tse_error_set(err, TSE_INVALID, "TLS_CERT",
                                 "this libmicrohttpd has no HTTPS certificate callback");
        if (tsb_https_create(cfg, &b->https, err) != TSE_OK)
            return TSE_INVALID;
        b->daemon = MHD_start_daemon(
            flags | MHD_USE_TLS, (uint16_t)cfg->port, NULL, NULL, on_request, b, MHD_OPTION_ARRAY,
            opts, MHD_OPTION_HTTPS_CERT_CALLBACK, tsb_https_callback(), MHD_OPTION_END);
    }
    if (b->daemon == NULL)
        return tse_error_set(err, TSE_UNAVAILABLE, "PORT",
                             "cannot listen on %s:%d (in use, or not allowed)", cfg->host,
                             cfg->port);
    return TSE_OK;
}

/* Waits until no admitted request is left or the deadline passed;
 * true when none is left. */
static bool drained(tsb_bridge *b, int64_t deadline_us)
{
    while (atomic_load(&b->admitted) > 0 && tse_clock_us() < deadline_us)
        usleep(5000);
    return atomic_load(&b->admitted) == 0;
}

/*
 * A keep-alive connection idle when the stop began may carry a request
 * already on its way: for up to STOP_LINGER_MS, while connections remain,
 * such requests still get their 503 (and their connections close after it)
 * instead of a reset.
 */
static void linger(tsb_bridge *b)
{
    int64_t until = tse_clock_us() + STOP_LINGER_MS * 1000;

    while (tse_clock_us() < until && tsb_header_timer_connections(b->header_timer) > 0)
        usleep(5000);
}

/* Waits until no connection is suspended or the deadline passed; true
 * when none is. */
static bool unsuspended(tsb_bridge *b, int64_t deadline_us)
{
    while (atomic_load(&b->suspended) > 0 && tse_clock_us() < deadline_us)
        usleep(5000);
    return atomic_load(&b->suspended) == 0;
}

/*
 * Graceful stop. MHD must not be stopped while a connection is suspended
 * (it aborts the process), and a request arriving on an open keep-alive
 * connection would suspend one again: so first no request is admitted any
 * more (503, Connection: close), then every long wait is ended (event
 * streams and long-polls answer at once), then the admitted requests are
 * let finish: publishes and short calls end within RPC_TIMEOUT (a request
 * may chain two calls); those left after that are cancelled. Only when no
 * admitted request is left, and so no connection is suspended, are the
 * workers joined; connections still open then (idle keep-alives) close.
 */
tse_status tsb_bridge_stop(tsb_bridge *b)
{
    MHD_socket listen_fd;
    int64_t deadline = tse_clock_us() + (2 * b->cfg->rpc_timeout_ms + 1000) * 1000;

    if (b->daemon == NULL)
        return TSE_OK;
    atomic_store(&b->stopping, true);
    /* Shut now, not at exit: a new connection is refused at once instead
     * of waiting in the backlog for the whole drain. Closed only once MHD
     * stopped: a worker may still be polling it, so its number must not
     * be reused meanwhile. */
    listen_fd = MHD_quiesce_daemon(b->daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        shutdown(listen_fd, SHUT_RDWR);
    tsb_sse_hub_cancel(b->sse);
    tsb_calls_cancel_waits(b->calls);
    if (!drained(b, deadline)) {
        tse_log(TSE_LOG_WARN, "requests still in progress at stop: cancelled", NULL);
        tsb_publishers_cancel(b);
        tsb_calls_cancel_all(b->calls);
        drained(b, tse_clock_us() + 2000 * 1000);
    }
    linger(b);
    /* Cancelled calls complete promptly, so this is a bound, not a wait;
     * should one not, MHD must still never see a suspended connection. */
    if (!unsuspended(b, tse_clock_us() + 5000 * 1000)) {
        tse_log(TSE_LOG_ERROR, "connections still suspended: the HTTP server cannot be stopped",
                NULL);
        return TSE_UNAVAILABLE;
    }
    MHD_stop_daemon(b->daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    tsb_header_timer_close(b->header_timer);
    b->daemon = NULL;
    return TSE_OK;
}
