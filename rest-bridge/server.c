/*
 * server.c - the HTTP/1.1 side: libmicrohttpd with an internal pool of
 * epoll worker threads, request bodies read under a hard cap, the
 * correlation id, routing, the answer, its log line and its metrics.
 *
 * Threading model: MHD_OPTION_THREAD_POOL_SIZE workers each own a share of
 * the connections and run a request's handler from its headers to its
 * answer, blocking on the gRPC call in between (rpc.h). A blocked worker
 * delays only the other connections it owns; see README.md for why this
 * was chosen over suspend/resume and what it measured.
 *
 * Invariants: a body never grows past cfg->max_body_bytes (a bigger one is
 * discarded as it arrives and answered 413, early when Content-Length
 * announces it); every answer carries X-Correlation-ID; every request
 * answered by us is logged once and counted once.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bridge.h"
#include "domain/validate.h"
#include "obs/log.h"

/* The state of one request between MHD's calls of the handler. */
typedef struct exchange {
    int64_t start_us;
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered;
} exchange;

static void response_free(tse_response *resp)
{
    free(resp->body);
    resp->body = NULL;
}

/* Printable ASCII without spaces, 1..TSE_CORRELATION_MAX characters. */
static bool correlation_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > TSE_CORRELATION_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static const char *log_status(const tse_response *resp)
{
    if (resp->status == 503)
        return "UNAVAILABLE";
    if (resp->status >= 500 && resp->status != 501)
        return "INTERNAL";
    return resp->code ? resp->code : "OK";
}

static enum MHD_Result send_response(struct MHD_Connection *conn, const tse_request *req,
                                     tse_response *resp)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret;
    char retry[16];

    if (r == NULL)
        return MHD_NO;
    resp->body = NULL; /* MHD frees it now */
    MHD_add_response_header(r, "Content-Type",
                            resp->content_type ? resp->content_type : "application/json");
    MHD_add_response_header(r, "X-Correlation-ID", req->correlation_id);
    if (resp->retry_after > 0) {
        snprintf(retry, sizeof(retry), "%d", resp->retry_after);
        MHD_add_response_header(r, "Retry-After", retry);
    }
    if (resp->allow != NULL)
        MHD_add_response_header(r, "Allow", resp->allow);
    ret = MHD_queue_response(conn, resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Logs, counts and sends one answer. */
static enum MHD_Result answer(tse_bridge *b, struct MHD_Connection *conn, exchange *x,
                              tse_request *req, tse_response *resp, size_t route)
{
    int64_t latency = tse_now_us() - x->start_us;
    char status[8];

    snprintf(status, sizeof(status), "%u", resp->status);
    tse_metrics_record(b->metrics, route, resp->status, latency);
    tse_log_request(req->method, log_status(resp), latency, req->correlation_id,
                    (const char *[]){"path", req->path, "http_status", status, NULL});
    x->answered = true;
    return send_response(conn, req, resp);
}

static void request_init(tse_bridge *b, struct MHD_Connection *conn, const char *url,
                         const char *method, exchange *x, tse_request *req)
{
    const char *corr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Correlation-ID");

    memset(req, 0, sizeof(*req));
    req->bridge = b;
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->body = x->body ? x->body : "";
    req->body_len = x->len;
    if (corr != NULL && correlation_valid(corr)) {
        snprintf(req->correlation_id, sizeof(req->correlation_id), "%s", corr);
        req->correlation_given = true;
    } else {
        tse_uuid_generate(req->correlation_id);
    }
}

/* The last call of a request: route it, run its handler, answer. */
static enum MHD_Result dispatch(tse_bridge *b, struct MHD_Connection *conn, exchange *x,
                                const char *url, const char *method)
{
    const char *corr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Correlation-ID");
    tse_response resp = {.status = 500};
    enum MHD_Result ret;
    tse_request req;
    tse_handler fn;
    size_t route = tse_route_count();

    request_init(b, conn, url, method, x, &req);
    if (corr != NULL && !req.correlation_given)
        tse_reply_error(&resp, 400, "INVALID_HEADER", "X-Correlation-ID",
                        "X-Correlation-ID must be 1 to %d printable ASCII characters without "
                        "spaces.",
                        TSE_CORRELATION_MAX);
    else if (x->too_large)
        tse_reply_error(&resp, 413, "PAYLOAD_TOO_LARGE", "body",
                        "The body is larger than the limit of %lld bytes.",
                        (long long)b->cfg->max_body_bytes);
    else if ((fn = tse_route_find(&req, &resp, &route)) != NULL)
        fn(&req, &resp);
    ret = answer(b, conn, x, &req, &resp, route);
    response_free(&resp);
    return ret;
}

/* The first call (headers only): set up, and refuse an announced oversize body at once. */
static enum MHD_Result begin(tse_bridge *b, struct MHD_Connection *conn, const char *url,
                             const char *method, void **con_cls)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    exchange *x = calloc(1, sizeof(*x));
    long long announced = cl ? strtoll(cl, NULL, 10) : 0;

    if (x == NULL)
        return MHD_NO;
    x->start_us = tse_now_us();
    *con_cls = x;
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
static void absorb(tse_bridge *b, exchange *x, const char *data, size_t n)
{
    if (x->too_large || x->answered)
        return;
    if (x->len + n > (size_t)b->cfg->max_body_bytes) {
        x->too_large = true;
        free(x->body);
        x->body = NULL;
        x->len = x->cap = 0;
        return;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = (x->len + n + 1) * 2;
        char *grown = realloc(x->body, cap);
        if (grown == NULL) {
            x->too_large = true;
            return;
        }
        x->body = grown;
        x->cap = cap;
    }
    memcpy(x->body + x->len, data, n);
    x->len += n;
    x->body[x->len] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    tse_bridge *b = cls;
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
    return dispatch(b, conn, x, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    exchange *x = *con_cls;

    if (x != NULL) {
        free(x->body);
        free(x);
        *con_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    tse_log(TSE_LOG_WARN, "http", (const char *[]){"error", msg, NULL});
}

/* Resolves cfg->host:cfg->port into addr. */
static tse_status resolve(const tse_bridge_config *cfg, struct sockaddr_storage *addr,
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

tse_status tse_bridge_start(tse_bridge *b, tse_error *err)
{
    const tse_bridge_config *cfg = b->cfg;
    struct sockaddr_storage addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    unsigned timeout_s = (unsigned)((cfg->read_timeout_ms + 999) / 1000);

    if (resolve(cfg, &addr, err) != TSE_OK)
        return TSE_INVALID;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    b->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, b, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_TIMEOUT,
        timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, b,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, b, MHD_OPTION_END);
    if (b->daemon == NULL)
        return tse_error_set(err, TSE_UNAVAILABLE, "PORT",
                             "cannot listen on %s:%d (in use, or not allowed)", cfg->host,
                             cfg->port);
    return TSE_OK;
}

void tse_bridge_stop(tse_bridge *b)
{
    if (b->daemon != NULL)
        MHD_stop_daemon(b->daemon);
    b->daemon = NULL;
}
