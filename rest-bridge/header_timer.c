/*
 * header_timer.c - see header_timer.h. A list of the open connections,
 * each with the deadline of its header phase (0: not in one), swept a few
 * times a second. Invariant: an entry is in the list from MHD's "started"
 * to its "closed" notice, and its descriptor is open all that while.
 */
#include "header_timer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "bridge.h"
#include "common/clock.h"
#include "list.h"
#include "obs/log.h"

/* How long a connection past its deadline still has its input read after
 * the 408 went out, before it is shut down for good: closing at once would
 * answer the client's next bytes with a reset, which discards the 408 in
 * its receive queue (a lingering close, as Apache's). */
#define LINGER_US (250 * 1000)

typedef struct watch {
    int fd;
    int64_t deadline_us; /* 0: not in a header or body phase */
    bool body;           /* the phase is the body's (BODY_TIMEOUT) */
    bool cut;            /* the 408 went out: deadline_us ends the linger */
    struct watch *prev, *next;
} watch;

struct tsb_header_timer {
    pthread_mutex_t lock;
    int64_t header_us, idle_us, body_us;
    watch *head;
    size_t open;         /* connections between MHD's started and closed notices */
    bool closed;         /* MHD stopped: nothing is swept any more */
    char answer[2][512]; /* the 408s (header, body), built once */
    size_t answer_len[2];
};

/* Builds the 408 answer of one phase into t->answer[i]. */
static void build_answer(tsb_header_timer *t, int i, const char *what, int why, const char *field,
                         int64_t limit_ms)
{
    const char *code;
    unsigned status = tsb_http_of(why, &code);
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":\"The request's %s did not arrive within the limit of %lld "
                     "ms.\",\"code\":\"%s\",\"details\":[{\"field\":\"%s\",\"limit_ms\":%lld}]}",
                     what, (long long)limit_ms, code, field, (long long)limit_ms);

    t->answer_len[i] = (size_t)snprintf(t->answer[i], sizeof(t->answer[i]),
                                        "HTTP/1.1 %u Request Timeout\r\nContent-Type: "
                                        "application/json\r\nConnection: close\r\n"
                                        "Content-Length: %d\r\n\r\n%s",
                                        status, n, body);
}

tsb_header_timer *tsb_header_timer_create(int64_t header_ms, int64_t idle_ms, int64_t body_ms)
{
    tsb_header_timer *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    t->header_us = header_ms * 1000;
    t->idle_us = idle_ms * 1000;
    t->body_us = body_ms * 1000;
    build_answer(t, 0, "headers", TSB_HEADER_TIMEOUT, "headers", header_ms);
    build_answer(t, 1, "body", TSB_BODY_TIMEOUT, "body", body_ms);
    return t;
}

void tsb_header_timer_destroy(tsb_header_timer *t)
{
    if (t == NULL)
        return;
    while (t->head != NULL) {
        watch *w = t->head;
        t->head = w->next;
        free(w);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void tsb_header_timer_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code)
{
    tsb_header_timer *t = cls;
    const union MHD_ConnectionInfo *fd;
    watch *w = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&t->lock);
        t->open++;
        pthread_mutex_unlock(&t->lock);
        fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (fd == NULL || (w = calloc(1, sizeof(*w))) == NULL)
            return; /* unwatched: MHD's own timeout still applies */
        w->fd = fd->connect_fd;
        pthread_mutex_lock(&t->lock);
        w->deadline_us = tse_clock_us() + t->header_us;
        TSB_LIST_PUSH(t->head, w);
        pthread_mutex_unlock(&t->lock);
        *socket_context = w;
        return;
    }
    pthread_mutex_lock(&t->lock);
    t->open--;
    if (w == NULL) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    TSB_LIST_UNLINK(t->head, w);
    pthread_mutex_unlock(&t->lock);
    free(w);
    *socket_context = NULL;
}

static watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return info != NULL ? info->socket_context : NULL;
}

/* Sets w's deadline to at (0: none) for the phase body; tighten: only if
 * earlier. */
static void set_deadline(tsb_header_timer *t, struct MHD_Connection *conn, int64_t at, bool body,
                         bool tighten)
{
    watch *w = watch_of(conn);

    if (w == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    if (w->cut)
        ; /* lingering: it ends as planned */
    else if (!tighten || w->deadline_us == 0 || at < w->deadline_us) {
        w->deadline_us = at;
        w->body = body;
    }
    pthread_mutex_unlock(&t->lock);
}

void tsb_header_timer_request_line(tsb_header_timer *t, struct MHD_Connection *conn)
{
    set_deadline(t, conn, tse_clock_us() + t->header_us, false, true);
}

void tsb_header_timer_headers_done(tsb_header_timer *t, struct MHD_Connection *conn)
{
    set_deadline(t, conn, tse_clock_us() + t->body_us, true, false);
}

void tsb_header_timer_request_read(tsb_header_timer *t, struct MHD_Connection *conn)
{
    set_deadline(t, conn, 0, false, false);
}

void tsb_header_timer_request_done(tsb_header_timer *t, struct MHD_Connection *conn)
{
    set_deadline(t, conn, tse_clock_us() + t->idle_us + t->header_us, false, false);
}

size_t tsb_header_timer_connections(tsb_header_timer *t)
{
    size_t n;

    pthread_mutex_lock(&t->lock);
    n = t->open;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void tsb_header_timer_close(tsb_header_timer *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    t->closed = true;
    pthread_mutex_unlock(&t->lock);
}

int tsb_header_timer_sweep(tsb_header_timer *t)
{
    int64_t now = tse_clock_us();
    int n = 0;

    pthread_mutex_lock(&t->lock);
    for (watch *w = t->closed ? NULL : t->head; w != NULL; w = w->next) {
        if (w->deadline_us == 0 || now < w->deadline_us)
            continue;
        if (w->cut) {
            /* MHD reads the end of input and closes the connection. */
            w->deadline_us = 0;
            shutdown(w->fd, SHUT_RDWR);
            continue;
        }
        /* No answer of ours is being written before the request is read:
         * the 408 cannot interleave with one. Best effort, never blocking. */
        (void)send(w->fd, t->answer[w->body], t->answer_len[w->body], MSG_DONTWAIT | MSG_NOSIGNAL);
        shutdown(w->fd, SHUT_WR);
        w->cut = true;
        w->deadline_us = now + LINGER_US;
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    if (n > 0) {
        char count[16];
        snprintf(count, sizeof(count), "%d", n);
        tse_log(TSE_LOG_WARN,
                "connections closed: request not in within HEADER_TIMEOUT or BODY_TIMEOUT",
                (const char *[]){"connections", count, NULL});
    }
    return n;
}
