/*
 * sse.c - Subscribe streams relayed as Server-Sent Events; see sse.h.
 *
 * A stream (`sse`) joins two lifetimes, each holding one reference: the
 * HTTP response (until MHD calls the free callback) and the Subscribe call,
 * a stream of the C SDK (tse_client_stream_*; until its on_end). The last
 * one out unlinks it from the hub and frees it.
 *
 * Text flows through one buffer: gRPC deliveries append to it (the SDK's
 * call thread), MHD's content reader takes from it (worker). When the reader
 * finds it empty it parks: suspends the connection and returns 0 (MHD's
 * rule for "no data yet" without busy waiting); whoever appends next
 * resumes it. Parking and waking happen under the stream's lock, so a
 * resume always follows its suspend. While the buffer holds more than
 * HIGH_WATER bytes (a slow client) the stream is paused: no further
 * delivery is received, which pushes back on the service through HTTP/2
 * flow control. Lock order: a stream's lock, then the SDK's.
 *
 * Batched delivery: the Subscribe call asks for up to PER_MESSAGE
 * deliveries per message (a backlog comes in fewer, larger messages); each
 * delivery of a message, the first and those of its `more`, becomes its
 * own SSE event.
 *
 * Auto-ack: each delivery's ack id is queued with the offset where its
 * text ends; once the reader handed the text up to there to MHD, the id
 * goes back to the service in an AckIds message on the same stream.
 */
#include "sse.h"

#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "list.h"

#define SUBSCRIBE   "/tracseq.events.v1.EventService/Subscribe"
#define HIGH_WATER  (1u << 20)
#define BLOCK_SIZE  (16u << 10)
#define RETRY_MS    2000
#define PER_MESSAGE 100 /* max_deliveries_per_message of the Subscribe call */

typedef Tracseq__Events__V1__SubscribeRequest SubscribeRequest;
typedef Tracseq__Events__V1__Delivery Delivery;

typedef struct mark {
    char *ack_id;
    uint64_t end; /* stream offset just past the delivery's text */
} mark;

typedef struct sse {
    pthread_mutex_t lock;
    tsb_sse_hub *hub;
    struct sse *prev, *next; /* hub list, under the hub's lock */
    int refs;
    bool dying;                  /* refs reached 0: only the hub may still see it */
    bool linked;                 /* on the hub's list */
    struct MHD_Connection *conn; /* NULL once MHD is done with the response */
    int fd;
    char name[TSE_ERROR_FIELD_MAX];
    bool auto_ack;
    char *authorization; /* the caller's, forwarded on the Subscribe call; NULL: none */
    /* the Subscribe call */
    tse_client_stream *stream;
    bool call_over;   /* its on_end ran (or it never started) */
    bool recv_paused; /* the buffer is over HIGH_WATER */
    /* the text: buf[off..len) is stream bytes base+off.. */
    char *buf;
    size_t off, len, cap;
    uint64_t base;
    mark *marks;
    size_t mark_head, nmarks, capmarks;
    char **held; /* delivered, unacked (not auto_ack): for tsb_sse_settled */
    size_t nheld, capheld;
    bool parked, ended;
    int64_t last_text_ms;
} sse;

struct tsb_sse_hub {
    tsb_bridge *bridge;
    int keepalive_ms;
    pthread_mutex_t lock;
    sse *streams;
    bool closed;
};

/* ===================== the text buffer (under s->lock) ================== */

static bool reserve(sse *s, size_t more)
{
    if (s->off > 0 && s->off == s->len) {
        s->base += s->off;
        s->off = s->len = 0;
    }
    if (s->len + more <= s->cap)
        return true;
    if (s->off > 0) { /* compact before growing */
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->base += s->off;
        s->len -= s->off;
        s->off = 0;
        if (s->len + more <= s->cap)
            return true;
    }
    return TSE_GROW(realloc, s->buf, s->cap, s->len + more, 4096);
}

static void put(sse *s, const char *text, size_t n)
{
    if (!reserve(s, n))
        return; /* out of memory: the text is dropped, the ack id stays unacked */
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    s->last_text_ms = tse_clock_ms();
}

static void putf(sse *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(sse *s, const char *fmt, ...)
{
    char small[512], *big = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(small)) {
        put(s, small, (size_t)n);
        return;
    }
    va_start(ap, fmt);
    n = vasprintf(&big, fmt, ap);
    va_end(ap);
    if (n < 0)
        return; /* *big is undefined then */
    put(s, big, (size_t)n);
    free(big);
}

/* Resumes the parked reader (lock held). */
static void wake(sse *s)
{
    if (s->parked && s->conn != NULL) {
        s->parked = false;
        tsb_bridge_resume(s->hub->bridge, s->conn);
    }
}

static bool list_add(char ***arr, size_t *n, size_t *cap, char *v)
{
    if (!TSE_GROW(realloc, *arr, *cap, *n + 1, 16))
        return false;
    (*arr)[(*n)++] = v;
    return true;
}

static void add_mark(sse *s, const char *ack_id)
{
    char *id;

    if (s->mark_head > 0 && s->mark_head == s->nmarks)
        s->mark_head = s->nmarks = 0;
    if (!TSE_GROW(realloc, s->marks, s->capmarks, s->nmarks + 1, 16))
        return;
    /* Without memory the delivery is not acked as it is written: it comes
     * again after its ack deadline (a NULL id would crash the ack). */
    if ((id = strdup(ack_id)) == NULL)
        return;
    s->marks[s->nmarks].ack_id = id;
    s->marks[s->nmarks++].end = s->base + s->len;
}

static void hold(sse *s, const char *ack_id)
{
    char *copy;

    for (size_t i = 0; i < s->nheld; i++)
        if (strcmp(s->held[i], ack_id) == 0)
            return; /* a redelivery */
    if ((copy = strdup(ack_id)) != NULL && !list_add(&s->held, &s->nheld, &s->capheld, copy))
        free(copy);
}

/* ===================== the Subscribe call (under s->lock) =============== */

static void send_msg(sse *s, const SubscribeRequest *req)
{
    uint8_t small[4096], *buf = small;
    size_t len = protobuf_c_message_get_packed_size(&req->base);

    if (s->call_over || s->stream == NULL || (len > sizeof(small) && (buf = malloc(len)) == NULL))
        return;
    protobuf_c_message_pack(&req->base, buf);
    tse_client_stream_send(s->stream, buf, len);
    if (buf != small)
        free(buf);
}

/* Sends ids as an ack (or a nack with delay_ms) on the stream. */
static void send_ids(sse *s, char **ids, size_t n, bool nack, uint32_t delay_ms)
{
    Tracseq__Events__V1__AckIds ack = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    Tracseq__Events__V1__NackIds nk = TRACSEQ__EVENTS__V1__NACK_IDS__INIT;
    SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;

    if (n == 0)
        return;
    if (nack) {
        nk.n_ack_ids = n;
        nk.ack_ids = ids;
        nk.delay_ms = delay_ms;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK;
        req.nack = &nk;
    } else {
        ack.n_ack_ids = n;
        ack.ack_ids = ids;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
        req.ack = &ack;
    }
    send_msg(s, &req);
}

/* ===================== lifetime ========================================= */

static void sse_free(sse *s)
{
    tse_client_stream_release(s->stream);
    for (size_t i = s->mark_head; i < s->nmarks; i++)
        free(s->marks[i].ack_id);
    for (size_t i = 0; i < s->nheld; i++)
        free(s->held[i]);
    free(s->marks);
    free(s->held);
    free(s->buf);
    free(s->authorization);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Drops one reference; unlocks s, and frees it when it was the last. */
static void unref_unlock(sse *s)
{
    tsb_sse_hub *h = s->hub;
    bool last = --s->refs == 0;

    if (last)
        s->dying = true;
    pthread_mutex_unlock(&s->lock);
    if (!last)
        return;
    pthread_mutex_lock(&h->lock);
    if (s->linked)
        TSB_LIST_UNLINK(h->streams, s);
    pthread_mutex_unlock(&h->lock);
    sse_free(s);
}

/* ===================== the stream's handlers (the SDK's thread) ========= */

static void append_delivery(sse *s, const Delivery *d)
{
    json_t *ev = tsb_event_json(d->event);
    char *data = ev ? json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;

    if (data != NULL) {
        /* Compact JSON has no raw newline, so it is one data: line. */
        putf(s, "id: %s\nevent: %s\n", d->ack_id, d->event->event_type);
        put(s, "data: ", 6);
        put(s, data, strlen(data));
        put(s, "\n\n", 2);
        if (s->auto_ack)
            add_mark(s, d->ack_id);
        else
            hold(s, d->ack_id);
    }
    free(data);
    json_decref(ev);
}

static void on_message(void *arg, const void *msg, size_t len)
{
    sse *s = arg;
    Delivery *d = tracseq__events__v1__delivery__unpack(NULL, len, msg);

    pthread_mutex_lock(&s->lock);
    if (d != NULL && d->event != NULL && s->conn != NULL)
        append_delivery(s, d);
    for (size_t i = 0; d != NULL && i < d->n_more && s->conn != NULL; i++)
        if (d->more[i]->event != NULL)
            append_delivery(s, d->more[i]);
    wake(s);
    if (!s->recv_paused && s->len - s->off > HIGH_WATER) {
        s->recv_paused = true;
        tse_client_stream_pause(s->stream, true);
    }
    pthread_mutex_unlock(&s->lock);
    if (d != NULL)
        tracseq__events__v1__delivery__free_unpacked(d, NULL);
}

/* The final SSE event when the service ended the stream. */
static void put_error(sse *s, const tsb_calls_status *st)
{
    unsigned status;
    json_t *err = tsb_error_json(st->code, st->field, st->message, NULL, &status);
    char *text = err ? json_dumps(err, JSON_COMPACT) : NULL;

    if (text != NULL) {
        put(s, "event: error\ndata: ", 19);
        put(s, text, strlen(text));
        put(s, "\n\n", 2);
    }
    free(text);
    json_decref(err);
}

/* The call is over: the service's status ends the text; drops the call's
 * reference. */
static void on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    sse *s = arg;
    tsb_calls_status st;

    tsb_calls_status_set(&st, status, err);
    pthread_mutex_lock(&s->lock);
    s->call_over = true;
    if (s->conn != NULL && !s->ended) {
        if (st.code == TSE_OK) {
            tsb_calls_status_fail(&st, TSE_UNAVAILABLE, "the event service ended the stream");
        }
        put_error(s, &st);
    }
    s->ended = true;
    wake(s);
    unref_unlock(s);
}

/* ===================== the HTTP side (worker thread) ==================== */

/* Acks the auto_ack deliveries whose text MHD now has (lock held). */
static void ack_emitted(sse *s)
{
    uint64_t emitted = s->base + s->off;
    char *ids[64];
    size_t n = 0;

    while (s->mark_head < s->nmarks && s->marks[s->mark_head].end <= emitted) {
        ids[n++] = s->marks[s->mark_head++].ack_id;
        if (n == sizeof(ids) / sizeof(ids[0])) {
            send_ids(s, ids, n, false, 0);
            for (size_t i = 0; i < n; i++)
                free(ids[i]);
            n = 0;
        }
    }
    send_ids(s, ids, n, false, 0);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
}

static ssize_t read_text(void *cls, uint64_t pos, char *out, size_t max)
{
    sse *s = cls;
    size_t n;

    pthread_mutex_lock(&s->lock);
    if (s->len > s->off) {
        n = s->len - s->off < max ? s->len - s->off : max;
        memcpy(out, s->buf + s->off, n);
        s->off += n;
        ack_emitted(s);
        if (s->recv_paused && s->len - s->off <= HIGH_WATER / 2) {
            s->recv_paused = false;
            tse_client_stream_pause(s->stream, false);
        }
        pthread_mutex_unlock(&s->lock);
        return (ssize_t)n;
    }
    if (s->ended) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    s->parked = true;
    tsb_bridge_suspend(s->hub->bridge, s->conn);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void http_done(void *cls)
{
    sse *s = cls;

    pthread_mutex_lock(&s->lock);
    s->conn = NULL;
    s->ended = true;
    if (!s->call_over)
        tse_client_stream_cancel(s->stream, TSE_CLIENT_CANCELLED, TSB_CALLS_HANGUP);
    unref_unlock(s);
}

/* ===================== start ============================================ */

/* Starts the Subscribe call with its first message. */
static bool call_start(sse *s, const char *consumer)
{
    static const tse_client_stream_handlers handlers = {on_message, on_end};
    tse_client_metadata md = {"authorization", s->authorization};
    tse_client_call_options no_deadline = {.timeout_ms = -1, .metadata = &md};
    SubscribeRequest first = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    uint8_t buf[1024];
    size_t len;

    first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    first.subscription_name = s->name;
    first.consumer_name = (char *)(consumer ? consumer : "");
    first.max_deliveries_per_message = PER_MESSAGE;
    if ((len = protobuf_c_message_get_packed_size(&first.base)) > sizeof(buf))
        return false;
    protobuf_c_message_pack(&first.base, buf);
    no_deadline.n_metadata = s->authorization != NULL ? 1 : 0;
    return tse_client_stream_start(s->hub->bridge->client, SUBSCRIBE, buf, len, &no_deadline,
                                   &handlers, s, &s->stream, NULL) == TSE_CLIENT_OK;
}

static sse *sse_new(tsb_sse_hub *h, tsb_request *req, const Tracseq__Events__V1__Subscription *sub)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    sse *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->hub = h;
    s->conn = req->conn;
    s->fd = info ? info->connect_fd : -1;
    s->auto_ack = sub->auto_ack;
    if (req->authorization[0] != '\0' && (s->authorization = strdup(req->authorization)) == NULL) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof(s->name), "%s", sub->name);
    putf(s, "retry: %d\n: subscription %s\n\n", RETRY_MS, s->name);
    return s;
}

/* Links s into the hub unless it is closed (shutdown). */
static bool hub_link(tsb_sse_hub *h, sse *s)
{
    bool ok;

    pthread_mutex_lock(&h->lock);
    if ((ok = !h->closed)) {
        s->linked = true;
        TSB_LIST_PUSH(h->streams, s);
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

static void start_failed(sse *s)
{
    tsb_calls_status st;

    tsb_calls_status_fail(&st, TSE_UNAVAILABLE, "the stream could not be started");
    s->call_over = true;
    put_error(s, &st);
    s->ended = true;
}

void tsb_sse_start(tsb_request *req, tsb_response *resp,
                   const Tracseq__Events__V1__Subscription *sub, const char *consumer)
{
    tsb_sse_hub *h = req->bridge->sse;
    struct MHD_Response *r;
    sse *s = sse_new(h, req, sub);

    if (s == NULL) {
        tsb_reply_nomem(resp);
        return;
    }
    if (!hub_link(h, s)) {
        sse_free(s);
        tsb_reply_error(resp, TSE_UNAVAILABLE, NULL, "The bridge is shutting down.");
        return;
    }
    s->refs = 1; /* the response's, dropped by http_done */
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_SIZE, read_text, s, http_done);
    if (r == NULL) {
        pthread_mutex_lock(&s->lock);
        unref_unlock(s);
        tsb_reply_nomem(resp);
        return;
    }
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    pthread_mutex_lock(&s->lock);
    s->refs++; /* the call's, dropped by on_end */
    if (!call_start(s, consumer)) {
        start_failed(s);
        s->refs--;
    }
    pthread_mutex_unlock(&s->lock);
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
    resp->stream = r;
    tsb_reply_status(resp, TSE_OK);
    resp->content_type = "text/event-stream";
}

/* ===================== the hub ========================================== */

/* Idle streams: a keep-alive comment when due; cancel when the client hung
 * up (a suspended connection's socket stays open, so it may be polled). */
static void tick_one(tsb_sse_hub *h, sse *s, int64_t now)
{
    struct pollfd pfd = {.fd = s->fd, .events = POLLRDHUP};

    if (s->dying || !s->parked || s->conn == NULL)
        return;
    if (s->fd >= 0 && poll(&pfd, 1, 0) > 0 &&
        (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
        if (!s->call_over)
            tse_client_stream_cancel(s->stream, TSE_CLIENT_CANCELLED, TSB_CALLS_HANGUP);
        s->ended = true;
        wake(s);
        return;
    }
    if (now - s->last_text_ms >= h->keepalive_ms) {
        put(s, ": keepalive\n\n", 13);
        wake(s);
    }
}

static void hub_tick(void *arg, int64_t now)
{
    tsb_sse_hub *h = arg;

    pthread_mutex_lock(&h->lock);
    for (sse *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        tick_one(h, s, now);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

tsb_sse_hub *tsb_sse_hub_create(tsb_bridge *b, int keepalive_ms)
{
    tsb_sse_hub *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->bridge = b;
    h->keepalive_ms = keepalive_ms;
    pthread_mutex_init(&h->lock, NULL);
    tsb_calls_add_tick(b->calls, hub_tick, h);
    return h;
}

void tsb_sse_hub_cancel(tsb_sse_hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    h->closed = true;
    for (sse *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (!s->call_over)
            tse_client_stream_cancel(s->stream, TSE_CLIENT_UNAVAILABLE,
                                     "the REST bridge is shutting down");
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

void tsb_sse_hub_destroy(tsb_sse_hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* Moves the ids s holds out of ids into mine (lock held). */
static size_t take_held(sse *s, char *const *ids, size_t n, char **mine)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < s->nheld; j++) {
            if (strcmp(s->held[j], ids[i]) == 0) {
                mine[k++] = s->held[j];
                s->held[j] = s->held[--s->nheld];
                break;
            }
        }
    }
    return k;
}

void tsb_sse_settled(tsb_sse_hub *h, const char *subscription, char *const *ids, size_t n,
                     bool nack, uint32_t delay_ms)
{
    char **mine = calloc(n ? n : 1, sizeof(char *));

    if (mine == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    for (sse *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (!s->dying && strcmp(s->name, subscription) == 0) {
            size_t k = take_held(s, ids, n, mine);
            send_ids(s, mine, k, nack, delay_ms);
            for (size_t i = 0; i < k; i++)
                free(mine[i]);
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->lock);
    free(mine);
}
