/*
 * http_client.h - a minimal HTTP/1.1 client for the REST bridge's
 * integration tests: raw requests on loopback sockets, responses with a
 * Content-Length body (what the bridge sends outside SSE).
 *
 * Fails the test (cmocka) when a connection cannot be made; a request that
 * the server cut short (413) is not an error here: the response tells.
 */
#ifndef TSE_TEST_HTTP_CLIENT_H
#define TSE_TEST_HTTP_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct tse_test_http_resp {
    int status;
    char head[8192]; /* status line and headers */
    char *body;      /* malloc'd, NUL-terminated; the caller frees */
    size_t body_len;
} tse_test_http_resp;

/* A connected socket to 127.0.0.1:port; the caller closes it. */
int tse_test_http_connect(int port);

/* Sends len raw bytes (a hand-made request); stops quietly when the server
 * closed early. */
void tse_test_http_send_raw(int fd, const char *data, size_t len);

/* Sends one request: ctype (may be NULL) as Content-Type, headers (may be
 * NULL) as extra "K: v\r\n" lines, body_len bytes of body. */
void tse_test_http_send(int fd, const char *method, const char *path, const char *ctype,
                        const char *headers, const char *body, size_t body_len, bool close_conn);

/* Reads one response; false when the connection ended first. */
bool tse_test_http_read(int fd, tse_test_http_resp *r);

/* The body as JSON; fails the test when it is not JSON. */
json_t *tse_test_http_json(const tse_test_http_resp *r);

/* The status of "method path" (no body) on a fresh connection; -1 when the
 * connection ended without an answer. */
int tse_test_http_status(int port, const char *method, const char *path);

/*
 * Waits until the bridge on port answers GET /health with 200, i.e. it
 * reaches the service and the service reaches Redis; fails the test after
 * timeout_ms. A bridge just started answers 503 until its first HTTP/2
 * handshake with the service is done, which on a loaded host takes a while.
 */
void tse_test_http_await_healthy(int port, int timeout_ms);

#endif
