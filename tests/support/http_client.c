/*
 * http_client.c - see http_client.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"
#include "wait.h"

int tse_test_http_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

void tse_test_http_send_raw(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the server may close early (413) */
        data += n;
        len -= (size_t)n;
    }
}

void tse_test_http_send(int fd, const char *method, const char *path, const char *ctype,
                        const char *headers, const char *body, size_t body_len, bool close_conn)
{
    char head[2048];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\n%s%s%s%sContent-Length: %zu\r\n%s\r\n",
                     method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                     ctype ? "\r\n" : "", headers ? headers : "", body_len,
                     close_conn ? "Connection: close\r\n" : "");

    assert_true(n > 0 && (size_t)n < sizeof(head));
    tse_test_http_send_raw(fd, head, (size_t)n);
    if (body_len > 0)
        tse_test_http_send_raw(fd, body, body_len);
}

bool tse_test_http_read(int fd, tse_test_http_resp *r)
{
    size_t have = 0, want;
    char *end = NULL;
    const char *cl;

    memset(r, 0, sizeof(*r));
    while (end == NULL) {
        ssize_t n = recv(fd, r->head + have, sizeof(r->head) - 1 - have, 0);
        if (n <= 0)
            return false;
        have += (size_t)n;
        r->head[have] = '\0';
        end = strstr(r->head, "\r\n\r\n");
    }
    sscanf(r->head, "HTTP/1.1 %d", &r->status);
    cl = strcasestr(r->head, "\r\nContent-Length:");
    want = cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    /* The first read may hold more than the headers: room for all of it. */
    r->body = calloc(1, want + have + 1);
    r->body_len = have - (size_t)(end + 4 - r->head);
    memcpy(r->body, end + 4, r->body_len);
    *end = '\0';
    while (r->body_len < want) {
        ssize_t n = recv(fd, r->body + r->body_len, want - r->body_len, 0);
        if (n <= 0)
            return false;
        r->body_len += (size_t)n;
    }
    return true;
}

json_t *tse_test_http_json(const tse_test_http_resp *r)
{
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);

    if (j == NULL)
        fail_msg("not JSON (%s): %s", e.text, r->body);
    return j;
}

int tse_test_http_status(int port, const char *method, const char *path)
{
    int fd = tse_test_http_connect(port);
    tse_test_http_resp r;
    int status = -1;

    tse_test_http_send(fd, method, path, NULL, NULL, NULL, 0, true);
    if (tse_test_http_read(fd, &r))
        status = r.status;
    free(r.body);
    close(fd);
    return status;
}

void tse_test_http_await_healthy(int port, int timeout_ms)
{
    TSE_TEST_AWAIT(tse_test_http_status(port, "GET", "/health") == 200, timeout_ms,
                   "the bridge on port %d to say healthy", port);
}
