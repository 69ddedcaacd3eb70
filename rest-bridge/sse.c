/*
 * sse.c - Subscribe streams relayed as Server-Sent Events; see sse.h.
 *
 * A stream (`sse`) joins two lifetimes, each holding one reference: the
 * HTTP response (until MHD calls the free callback) and the gRPC call
 * (until its status arrived and none of its batches is in flight). The
 * last one out unlinks it from the hub and frees it.
 *
 * Text flows through one buffer: gRPC deliveries append to it (CQ
 * thread), MHD's content reader takes from it (worker). When the reader
 * finds it empty it parks: suspends the connection and returns 0 (MHD's
 * rule for "no data yet" without busy waiting); whoever appends next
 * resumes it. Parking and waking happen under the stream's lock, so a
 * resume always follows its suspend. While the buffer holds more than
 * HIGH_WATER bytes (a slow client) no further delivery is received, which
 * pushes back on the service through HTTP/2 flow control.
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
#include <time.h>

#include "obs/log.h"

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define HIGH_WATER                   (1u << 20)
#define BLOCK_SIZE                   (16u << 10)
#define RETRY_MS                     2000

typedef Tracseq__Events__V1__SubscribeRequest SubscribeRequest;
typedef Tracseq__Events__V1__Delivery Delivery;

typedef struct outmsg {
    struct outmsg *next;
    grpc_byte_buffer *bb;
} outmsg;

typedef struct mark {
    char *ack_id;
    uint64_t end; /* stream offset just past the delivery's text */
} mark;

typedef struct sse {
    pthread_mutex_t lock;
    tse_sse_hub *hub;
    struct sse *prev, *next; /* hub list, under the hub's lock */
    int refs;
    bool dying;                  /* refs reached 0: only the hub may still see it */
    bool linked;                 /* on the hub's list */
    struct MHD_Connection *conn; /* NULL once MHD is done with the response */
    int fd;
    char name[TSE_ERROR_FIELD_MAX];
    bool auto_ack;
    /* the Subscribe call */
    grpc_call *call;
    tse_rpc_tag send_tag, recv_tag, status_tag;
    int ops;
    bool call_ref; /* the call's reference is held */
    bool call_over, sending, receiving, recv_paused, got_md;
    outmsg *out_head, *out_tail;
    grpc_byte_buffer *sending_bb, *recv_buf;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    /* the text: buf[off..len) is stream bytes base+off.. */
    char *buf;
    size_t off, len, cap;
    uint64_t base;
    mark *marks;
    size_t mark_head, nmarks, capmarks;
    char **held; /* delivered, unacked (not auto_ack): for tse_sse_settled */
    size_t nheld, capheld;
    bool parked, ended;
    int64_t last_text_ms;
} sse;

struct tse_sse_hub {
    tse_bridge *bridge;
    int keepalive_ms;
    pthread_mutex_t lock;
    sse *streams;
    bool closed;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ===================== the text buffer (under s->lock) ================== */

static bool reserve(sse *s, size_t more)
{
    size_t cap;
    char *grown;

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
    cap = (s->len + more) * 2;
    if ((grown = realloc(s->buf, cap)) == NULL)
        return false;
    s->buf = grown;
    s->cap = cap;
    return true;
}

static void put(sse *s, const char *text, size_t n)
{
    if (!reserve(s, n))
        return; /* out of memory: the text is dropped, the ack id stays unacked */
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    s->last_text_ms = now_ms();
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
        tse_bridge_resume(s->hub->bridge, s->conn);
    }
}

static bool list_add(char ***arr, size_t *n, size_t *cap, char *v)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        char **p = realloc(*arr, c * sizeof(*p));
        if (p == NULL)
            return false;
        *arr = p;
        *cap = c;
    }
    (*arr)[(*n)++] = v;
    return true;
}

static void add_mark(sse *s, const char *ack_id)
{
    if (s->mark_head > 0 && s->mark_head == s->nmarks)
        s->mark_head = s->nmarks = 0;
    if (s->nmarks == s->capmarks) {
        size_t c = s->capmarks ? s->capmarks * 2 : 16;
        mark *p = realloc(s->marks, c * sizeof(*p));
        if (p == NULL)
            return;
        s->marks = p;
        s->capmarks = c;
    }
    s->marks[s->nmarks].ack_id = strdup(ack_id);
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

static void kick_send(sse *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    outmsg *m = s->out_head;

    if (s->sending || s->call_over || m == NULL)
        return;
    s->out_head = m->next;
    if (s->out_head == NULL)
        s->out_tail = NULL;
    s->sending_bb = m->bb;
    free(m);
    op.data.send_message.send_message = s->sending_bb;
    if (tse_rpc_batch(s->call, &op, 1, &s->send_tag)) {
        s->sending = true;
        s->ops++;
    } else {
        grpc_byte_buffer_destroy(s->sending_bb);
        s->sending_bb = NULL;
    }
}

static void queue_msg(sse *s, const SubscribeRequest *req)
{
    outmsg *m;

    if (s->call_over || (m = calloc(1, sizeof(*m))) == NULL)
        return;
    m->bb = tse_rpc_encode(&req->base);
    if (s->out_tail)
        s->out_tail->next = m;
    else
        s->out_head = m;
    s->out_tail = m;
    kick_send(s);
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
    queue_msg(s, &req);
}

static void kick_recv(sse *s)
{
    grpc_op ops[2];
    size_t n = 0;

    if (s->receiving || s->call_over || s->recv_paused)
        return;
    memset(ops, 0, sizeof(ops));
    if (!s->got_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv_buf;
    if (tse_rpc_batch(s->call, ops, n, &s->recv_tag)) {
        s->receiving = true;
        s->got_md = true;
        s->ops++;
    }
}

/* ===================== lifetime ========================================= */

static void sse_free(sse *s)
{
    outmsg *m;

    while ((m = s->out_head) != NULL) {
        s->out_head = m->next;
        grpc_byte_buffer_destroy(m->bb);
        free(m);
    }
    if (s->call)
        grpc_call_unref(s->call);
    if (s->sending_bb)
        grpc_byte_buffer_destroy(s->sending_bb);
    if (s->recv_buf)
        grpc_byte_buffer_destroy(s->recv_buf);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    for (size_t i = s->mark_head; i < s->nmarks; i++)
        free(s->marks[i].ack_id);
    for (size_t i = 0; i < s->nheld; i++)
        free(s->held[i]);
    free(s->marks);
    free(s->held);
    free(s->buf);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Drops one reference; unlocks s, and frees it when it was the last. */
static void unref_unlock(sse *s)
{
    tse_sse_hub *h = s->hub;
    bool last = --s->refs == 0;

    if (last)
        s->dying = true;
    pthread_mutex_unlock(&s->lock);
    if (!last)
        return;
    pthread_mutex_lock(&h->lock);
    if (s->linked) {
        if (s->prev)
            s->prev->next = s->next;
        else
            h->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
    }
    pthread_mutex_unlock(&h->lock);
    sse_free(s);
}

/* The gRPC side lets go once the status came and no batch is pending. */
static void call_settle_unlock(sse *s)
{
    if (s->call_over && s->ops == 0 && s->call_ref) {
        if (s->call != NULL)
            grpc_call_unref(s->call);
        s->call = NULL;
        s->call_ref = false;
        unref_unlock(s);
        return;
    }
    pthread_mutex_unlock(&s->lock);
}

/* ===================== gRPC completions (CQ thread) ===================== */

static void append_delivery(sse *s, const Delivery *d)
{
    json_t *ev = tse_event_json(d->event);
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

static void on_recv(tse_rpc_tag *tag, bool ok)
{
    sse *s = CONTAINER(tag, sse, recv_tag);
    Delivery *d;

    pthread_mutex_lock(&s->lock);
    s->ops--;
    s->receiving = false;
    if (ok && s->recv_buf != NULL) {
        d = (Delivery *)tse_rpc_decode(s->recv_buf, &tracseq__events__v1__delivery__descriptor);
        grpc_byte_buffer_destroy(s->recv_buf);
        s->recv_buf = NULL;
        if (d != NULL && d->event != NULL && s->conn != NULL)
            append_delivery(s, d);
        if (d != NULL)
            protobuf_c_message_free_unpacked(&d->base, NULL);
        wake(s);
        s->recv_paused = s->len - s->off > HIGH_WATER;
        kick_recv(s);
    }
    call_settle_unlock(s);
}

static void on_send(tse_rpc_tag *tag, bool ok)
{
    sse *s = CONTAINER(tag, sse, send_tag);

    pthread_mutex_lock(&s->lock);
    s->ops--;
    s->sending = false;
    grpc_byte_buffer_destroy(s->sending_bb);
    s->sending_bb = NULL;
    if (ok)
        kick_send(s);
    call_settle_unlock(s);
}

/* The final SSE event when the service ended the stream. */
static void put_error(sse *s, const tse_rpc_status *st)
{
    unsigned status;
    json_t *err = tse_error_json(st->code, NULL, st->details, NULL, &status);
    char *text = err ? json_dumps(err, JSON_COMPACT) : NULL;

    if (text != NULL) {
        put(s, "event: error\ndata: ", 19);
        put(s, text, strlen(text));
        put(s, "\n\n", 2);
    }
    free(text);
    json_decref(err);
}

static void on_status(tse_rpc_tag *tag, bool ok)
{
    sse *s = CONTAINER(tag, sse, status_tag);
    tse_rpc_status st;

    pthread_mutex_lock(&s->lock);
    s->ops--;
    s->call_over = true;
    tse_rpc_status_set(&st, s->code, s->details);
    if (s->conn != NULL && !s->ended) {
        if (st.code == GRPC_STATUS_OK) {
            st.code = GRPC_STATUS_UNAVAILABLE;
            snprintf(st.details, sizeof(st.details), "the event service ended the stream");
        }
        put_error(s, &st);
    }
    s->ended = true;
    wake(s);
    call_settle_unlock(s);
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
            kick_recv(s);
        }
        pthread_mutex_unlock(&s->lock);
        return (ssize_t)n;
    }
    if (s->ended) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    s->parked = true;
    tse_bridge_suspend(s->hub->bridge, s->conn);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void http_done(void *cls)
{
    sse *s = cls;

    pthread_mutex_lock(&s->lock);
    s->conn = NULL;
    s->ended = true;
    if (s->call != NULL && !s->call_over)
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_CANCELLED, TSE_RPC_HANGUP, NULL);
    unref_unlock(s);
}

/* ===================== start ============================================ */

/* Starts the call: status, then the first message, then receiving. */
static bool call_start(sse *s, const char *consumer)
{
    SubscribeRequest first = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    grpc_op ops[2];

    s->call = tse_rpc_call_new(s->hub->bridge->rpc, TSE_RPC_SERVICE "Subscribe", 0);
    if (s->call == NULL)
        return false;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[0].data.recv_status_on_client.status = &s->code;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    if (!tse_rpc_batch(s->call, ops, 1, &s->status_tag))
        return false;
    s->ops++;
    first.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    first.subscription_name = s->name;
    first.consumer_name = (char *)(consumer ? consumer : "");
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->sending_bb = tse_rpc_encode(&first.base);
    if (tse_rpc_batch(s->call, ops, 2, &s->send_tag)) {
        s->sending = true;
        s->ops++;
    } else {
        grpc_call_cancel(s->call, NULL);
    }
    kick_recv(s);
    return true;
}

static sse *sse_new(tse_sse_hub *h, tse_request *req, const Tracseq__Events__V1__Subscription *sub)
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
    snprintf(s->name, sizeof(s->name), "%s", sub->name);
    s->send_tag.fn = on_send;
    s->recv_tag.fn = on_recv;
    s->status_tag.fn = on_status;
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    putf(s, "retry: %d\n: subscription %s\n\n", RETRY_MS, s->name);
    return s;
}

/* Links s into the hub unless it is closed (shutdown). */
static bool hub_link(tse_sse_hub *h, sse *s)
{
    bool ok;

    pthread_mutex_lock(&h->lock);
    if ((ok = !h->closed)) {
        s->linked = true;
        s->next = h->streams;
        if (h->streams)
            h->streams->prev = s;
        h->streams = s;
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

static void start_failed(sse *s)
{
    tse_rpc_status st = {.code = GRPC_STATUS_UNAVAILABLE};

    snprintf(st.details, sizeof(st.details), "the stream could not be started");
    if (s->call != NULL)
        grpc_call_cancel(s->call, NULL);
    s->call_over = true;
    put_error(s, &st);
    s->ended = true;
}

void tse_sse_start(tse_request *req, tse_response *resp,
                   const Tracseq__Events__V1__Subscription *sub, const char *consumer)
{
    tse_sse_hub *h = req->bridge->sse;
    struct MHD_Response *r;
    sse *s = sse_new(h, req, sub);

    if (s == NULL) {
        tse_reply_error(resp, 500, "INTERNAL", NULL, "Out of memory.");
        return;
    }
    if (!hub_link(h, s)) {
        sse_free(s);
        tse_reply_error(resp, 503, "SERVICE_UNAVAILABLE", NULL, "The bridge is shutting down.");
        resp->retry_after = req->bridge->cfg->retry_after_s;
        return;
    }
    s->refs = 1; /* the response's, dropped by http_done */
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_SIZE, read_text, s, http_done);
    if (r == NULL) {
        pthread_mutex_lock(&s->lock);
        unref_unlock(s);
        tse_reply_error(resp, 500, "INTERNAL", NULL, "Out of memory.");
        return;
    }
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    pthread_mutex_lock(&s->lock);
    s->refs++; /* the call's */
    s->call_ref = true;
    if (!call_start(s, consumer))
        start_failed(s);
    call_settle_unlock(s);
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
    resp->stream = r;
    resp->status = 200;
    resp->code = "OK";
    resp->content_type = "text/event-stream";
}

/* ===================== the hub ========================================== */

/* Idle streams: a keep-alive comment when due; cancel when the client hung
 * up (a suspended connection's socket stays open, so it may be polled). */
static void tick_one(tse_sse_hub *h, sse *s, int64_t now)
{
    struct pollfd pfd = {.fd = s->fd, .events = POLLRDHUP};

    if (s->dying || !s->parked || s->conn == NULL)
        return;
    if (s->fd >= 0 && poll(&pfd, 1, 0) > 0 &&
        (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
        if (s->call != NULL && !s->call_over)
            grpc_call_cancel_with_status(s->call, GRPC_STATUS_CANCELLED, TSE_RPC_HANGUP, NULL);
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
    tse_sse_hub *h = arg;

    pthread_mutex_lock(&h->lock);
    for (sse *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        tick_one(h, s, now);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

tse_sse_hub *tse_sse_hub_create(tse_bridge *b, int keepalive_ms)
{
    tse_sse_hub *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->bridge = b;
    h->keepalive_ms = keepalive_ms;
    pthread_mutex_init(&h->lock, NULL);
    tse_rpc_add_tick(b->rpc, hub_tick, h);
    return h;
}

void tse_sse_hub_cancel(tse_sse_hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    h->closed = true;
    for (sse *s = h->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (s->call != NULL && !s->call_over)
            grpc_call_cancel_with_status(s->call, GRPC_STATUS_UNAVAILABLE,
                                         "the REST bridge is shutting down", NULL);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

void tse_sse_hub_destroy(tse_sse_hub *h)
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

void tse_sse_settled(tse_sse_hub *h, const char *subscription, char *const *ids, size_t n,
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
