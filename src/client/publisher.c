/*
 * publisher.c - pipelined publishing on one PublishBatchStream call (or
 * PublishStream), with a
 * callback per result in publish order, a bounded window, and reopening
 * after a broken stream.
 *
 * Threading: every publisher of a client has its own channel (its own TCP
 * connection), and all of them share one completion queue and one thread,
 * the client's pump, which runs the callbacks. One thread draining one
 * queue for all streams is what the raw benchmark client does: with a
 * thread and queue per publisher, gRPC's poller hands each completion from
 * thread to thread (a futex wake per event), which cost the SDK ~10 % of
 * the raw figure. The stream is the SDK's generic one (stream.c), opened
 * with the initial metadata alone; it sends one message at a time, hinted
 * when more are queued (measured.md). publish() may run on any thread: it
 * appends to the ring and hands the event to the stream. Every field below
 * `mu` is under `mu`; callbacks run without it (they may publish). Lock
 * order: the pump's `mu`, then a publisher's, then the stream's. The
 * client's asynchronous calls (call.c) complete on the same queue: every
 * tag is a tse_client_tag.
 *
 * Batching (issue 14): events go out as PublishBatchStream messages of up
 * to batch_size events. A full batch is sent at once; a partial one when
 * the stream writes nothing (at once when idle: a lone event waits for
 * nothing) and, with linger_ms, once its oldest event waited that long
 * while earlier messages are unanswered (the pump's timer sends it). So
 * under load a batch carries what gathered while the previous message was
 * written, like Kafka's batch.size / linger.ms. `sizes` remembers how many
 * events each unanswered message carried: a response answers that many
 * events at the ring's head. batch_size 1 keeps to PublishStream, one event
 * per message; a service from before PublishBatchStream answers it
 * UNIMPLEMENTED, and the publisher falls back to batch_size 1 for good.
 *
 * A blocked publisher resumes only once a quarter of the window was
 * answered, so queued messages go out in runs that can be hinted, rather
 * than one write per message.
 *
 * Invariants: the ring holds every event published and not yet answered,
 * in publish order: entries [head, head + sent) were handed to the current
 * stream, the rest wait. Responses come in request order, so a response
 * answers the ring's head. When a stream ends, `sent` drops to 0 and the
 * reopened stream resends from the head; the events carry client ids, so
 * the server stores each once. With fail_on_break the events handed to the
 * broken stream fail instead, and those published while it was closing go
 * out on a new stream at once. The stream handle is let go only after
 * those failures, so no publish meanwhile opens a stream that would resend
 * an event being failed. `unfinished` counts events whose callback has not
 * yet returned; flush waits for it to reach 0.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/internal.h"
#include "codec/pbscan.h"
#include "common/tsan.h"
#include "domain/limits.h"

#define EXPORT __attribute__((visibility("default")))

#define TICK_MS        100
#define MAX_WINDOW     4000 /* the server stops reading at 4096 unanswered */
#define DEFAULT_WINDOW 1024
#define DEFAULT_BATCH  100
#define MAX_LINGER_MS  1000

typedef struct entry {
    grpc_slice req;
    void *user;
    long long queued_ms; /* with answer_timeout_ms or linger_ms only */
} entry;

/* A client's publishers' shared queue and thread. */
typedef struct tse_client_pump {
    grpc_completion_queue *cq;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the list */
    struct tse_client_publisher *list;
} pump;

struct tse_client_publisher {
    tse_client *client;
    tse_client_publish_cb cb;
    void *cb_arg;
    bool server_ids;
    bool fail_on_break;
    int answer_timeout_ms;
    size_t batch;  /* events per message; 1: PublishStream, one per message.
                    * Under mu: drops to 1 for a service without batches. */
    int linger_ms; /* how long a partial batch may wait while others are in flight */
    size_t cap;    /* the window */
    pump *pump;
    grpc_channel *channel;
    struct tse_client_publisher *next; /* in the pump's list */

    pthread_mutex_t mu;
    pthread_cond_t room, idle, gone; /* gone: the stream was let go */
    entry *ring;
    size_t head, count, sent;
    size_t *sizes; /* events of each message sent, unanswered: a ring of cap */
    size_t sizes_head, sizes_count;
    size_t unfinished;
    int waiters;
    bool shutdown;
    long long reopen_at; /* ms; 0 = no reopen scheduled */
    int backoff;
    tse_client_status down; /* why the last stream ended; OK while fine */
    tse_client_stream *stream;
    bool cancelled; /* the stream was ended for answering late */
};

/* ============================== results =================================== */

/* Without the lock: the entry's callback, then its request is released. */
static void report(tse_client_publisher *p, entry e, tse_client_status st,
                   const tse_client_publish_result *res, const tse_client_error *err)
{
    tse_client_publish_outcome o = {e.user, st, st == TSE_CLIENT_OK ? res : NULL,
                                    st == TSE_CLIENT_OK ? NULL : err};

    if (p->cb != NULL)
        p->cb(p->cb_arg, &o);
    grpc_slice_unref(e.req);
}

/* With the lock, on return too: one entry is done. */
static void entry_done_locked(tse_client_publisher *p)
{
    if (--p->unfinished == 0)
        pthread_cond_broadcast(&p->idle);
}

static entry pop_locked(tse_client_publisher *p)
{
    entry e = p->ring[p->head];

    p->head = (p->head + 1) % p->cap;
    p->count--;
    if (p->sent > 0)
        p->sent--;
    /* Blocked publishers resume once a quarter of the window is free. */
    if (p->waiters > 0 && p->count <= p->cap - (p->cap + 3) / 4)
        pthread_cond_broadcast(&p->room);
    return e;
}

/* Fails the n oldest unanswered events with *why (e.g. CANCELLED at
 * destroy); the callbacks run without the lock. */
static void fail_locked(tse_client_publisher *p, size_t n, const tse_client_error *why)
{
    for (; n > 0 && p->count > 0; n--) {
        tse_client_error err = *why; /* the callback may scribble on its copy */
        entry e = pop_locked(p);

        pthread_mutex_unlock(&p->mu);
        report(p, e, err.status, NULL, &err);
        pthread_mutex_lock(&p->mu);
        entry_done_locked(p);
    }
}

/* ============================== the stream ================================ */

/* One message of the n oldest unsent events: their PublishRequests
 * concatenated, which is a PublishBatchRequest (both carry the event in
 * field 1). */
static bool send_batch_locked(tse_client_publisher *p, size_t n)
{
    size_t total = 0, at = 0;
    grpc_slice msg;

    for (size_t i = 0; i < n; i++)
        total += GRPC_SLICE_LENGTH(p->ring[(p->head + p->sent + i) % p->cap].req);
    msg = grpc_slice_malloc(total);
    for (size_t i = 0; i < n; i++) {
        grpc_slice one = p->ring[(p->head + p->sent + i) % p->cap].req;
        memcpy(GRPC_SLICE_START_PTR(msg) + at, GRPC_SLICE_START_PTR(one), GRPC_SLICE_LENGTH(one));
        at += GRPC_SLICE_LENGTH(one);
    }
    if (tse_client_stream_send_slice(p->stream, msg) != TSE_CLIENT_OK) {
        grpc_slice_unref(msg);
        return false;
    }
    grpc_slice_unref(msg);
    p->sizes[(p->sizes_head + p->sizes_count++) % p->cap] = n;
    p->sent += n;
    return true;
}

/* Whether a partial batch must wait: something is in flight and its oldest
 * event has waited less than linger_ms (then the pump sends it when due). */
static bool lingers_locked(const tse_client_publisher *p)
{
    return p->linger_ms > 0 && p->sizes_count > 0 &&
           tse_clock_ms() - p->ring[(p->head + p->sent) % p->cap].queued_ms < p->linger_ms;
}

/*
 * Hands the stream the events it has not had yet. Batched, a full batch
 * goes at once; a partial one goes when the stream has nothing being
 * written (at once when idle, so a lone event waits for nothing; else from
 * on_drained, carrying what gathered during the write) and has lingered.
 */
static void send_locked(tse_client_publisher *p)
{
    if (p->batch == 1) {
        while (p->stream != NULL && p->sent < p->count &&
               tse_client_stream_send_slice(p->stream, p->ring[(p->head + p->sent) % p->cap].req) ==
                   TSE_CLIENT_OK)
            p->sent++;
        return;
    }
    while (p->stream != NULL && p->sent < p->count) {
        size_t n = p->count - p->sent < p->batch ? p->count - p->sent : p->batch;
        if (n < p->batch && (tse_client_stream_busy(p->stream) || lingers_locked(p)))
            return;
        if (!send_batch_locked(p, n))
            return;
    }
}

static void on_drained(void *arg)
{
    tse_client_publisher *p = arg;

    pthread_mutex_lock(&p->mu);
    send_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/*
 * One response: it answers the ring's head. Decoding and the callback run
 * unlocked, in one stretch: publish() on other threads takes the lock
 * meanwhile. No error text is written unless there is an error (this runs
 * once per event).
 */
static void on_response(void *arg, const void *msg, size_t len)
{
    tse_client_publisher *p = arg;
    tse_client_publish_result res;
    tse_client_error err;
    tse_client_status st;
    entry e;

    pthread_mutex_lock(&p->mu);
    if (p->sent == 0) { /* a response without a request */
        tse_client_stream_cancel(p->stream, TSE_CLIENT_INTERNAL, "a response without a request");
        pthread_mutex_unlock(&p->mu);
        return;
    }
    e = pop_locked(p);
    p->backoff = p->client->opt.reconnect_initial_ms;
    p->down = TSE_CLIENT_OK;
    pthread_mutex_unlock(&p->mu);
    st = tse_client_publish_response(msg, len, &res, &err);
    report(p, e, st, &res, &err);
    pthread_mutex_lock(&p->mu);
    entry_done_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/*
 * A PublishBatchResponse split on the wire: the bytes of each result
 * (field 1) into results (at most max), and whether a whole-batch error
 * (field 2) is there. False when the bytes are not such a message.
 */
static bool split_results(const uint8_t *at, size_t len, const uint8_t **results, size_t *lens,
                          size_t max, size_t *n, bool *whole)
{
    tse_pbscan_field f;
    size_t pos = 0;

    *n = 0;
    *whole = false;
    while (pos < len) {
        if (!tse_pbscan_next(at, len, &pos, &f) || f.wire != 2)
            return false;
        if (f.id == 1) {
            if (*n == max)
                return false;
            results[*n] = f.data;
            lens[(*n)++] = f.len;
        } else if (f.id == 2) {
            *whole = true;
        }
    }
    return true;
}

/* The error of a batch refused whole, into err. */
static tse_client_status whole_error(const void *msg, size_t len, tse_client_error *err)
{
    Tracseq__Events__V1__PublishBatchResponse *r =
        tracseq__events__v1__publish_batch_response__unpack(NULL, len, msg);
    tse_client_status st;

    if (r == NULL || r->error == NULL)
        st = tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL, "undecodable batch error");
    else
        st = tse_client_fail(err, tse_client_status_from_grpc((grpc_status_code)r->error->code),
                             r->error->code, r->error->field, "%s", r->error->message);
    if (r != NULL)
        tracseq__events__v1__publish_batch_response__free_unpacked(r, NULL);
    return st;
}

/*
 * One PublishBatchResponse: it answers the oldest message sent, whose events
 * are at the ring's head, one result each in order. Each result is decoded
 * and reported unlocked, as on_response does.
 */
static void on_batch_response(void *arg, const void *msg, size_t len)
{
    static _Thread_local const uint8_t *results[TSE_PUBLISH_BATCH_MAX_EVENTS];
    static _Thread_local size_t lens[TSE_PUBLISH_BATCH_MAX_EVENTS];
    tse_client_publisher *p = arg;
    tse_client_publish_result res;
    tse_client_error err, whole_err;
    tse_client_status st, whole_st = TSE_CLIENT_OK;
    size_t k, n;
    bool whole;

    pthread_mutex_lock(&p->mu);
    k = p->sizes_count > 0 ? p->sizes[p->sizes_head] : 0;
    if (k == 0 || !split_results(msg, len, results, lens, k, &n, &whole) || (!whole && n != k)) {
        tse_client_stream_cancel(p->stream, TSE_CLIENT_INTERNAL,
                                 "a batch response that does not answer its request");
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->sizes_head = (p->sizes_head + 1) % p->cap;
    p->sizes_count--;
    p->backoff = p->client->opt.reconnect_initial_ms;
    p->down = TSE_CLIENT_OK;
    if (whole)
        whole_st = whole_error(msg, len, &whole_err);
    for (size_t i = 0; i < k; i++) {
        entry e = pop_locked(p);

        pthread_mutex_unlock(&p->mu);
        if (whole) {
            err = whole_err;
            st = whole_st;
        } else {
            st = tse_client_publish_response(results[i], lens[i], &res, &err);
        }
        report(p, e, st, &res, &err);
        pthread_mutex_lock(&p->mu);
        entry_done_locked(p);
    }
    /* Nothing in flight any more: what lingered goes at once. */
    if (p->sizes_count == 0)
        send_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/*
 * The stream ended with st (OK: the server closed it before answering):
 * resend later, with backoff; or fail the events it had: all of them when
 * a new stream would meet st again, those it had with fail_on_break.
 */
static void down_locked(tse_client_publisher *p, tse_client_status st, const tse_client_error *err)
{
    tse_client_error why;
    size_t had = p->sent;

    p->sent = 0;
    p->sizes_count = 0;
    p->down = st == TSE_CLIENT_OK ? TSE_CLIENT_UNAVAILABLE : st;
    if (p->shutdown)
        return;
    if (st == TSE_CLIENT_OK)
        tse_client_fail(&why, TSE_CLIENT_UNAVAILABLE,
                        tse_client_grpc_from_status(TSE_CLIENT_UNAVAILABLE), NULL,
                        "the publish stream ended before answering");
    else
        why = *err;
    if (tse_client_status_fatal(st) || p->fail_on_break) {
        fail_locked(p, tse_client_status_fatal(st) ? p->count : had, &why);
        return;
    }
    p->reopen_at = tse_clock_ms() + p->backoff;
    p->backoff = tse_client_backoff_next(p->client, p->backoff);
}

static void open_locked(tse_client_publisher *p);

/* The stream's end, on the pump thread: it is let go once its events were
 * failed or set to be resent (see the file comment). */
static void on_end(void *arg, tse_client_status st, const tse_client_error *err)
{
    tse_client_publisher *p = arg;

    pthread_mutex_lock(&p->mu);
    if (st == TSE_CLIENT_UNIMPLEMENTED && p->batch > 1) {
        /* A service from before PublishBatchStream: nothing was answered;
         * from now on this publisher sends one event per PublishStream
         * message, and resends at once what it had sent. */
        p->batch = 1;
        p->sent = 0;
        p->sizes_count = 0;
    } else {
        down_locked(p, st, err);
    }
    tse_client_stream_release(p->stream);
    p->stream = NULL;
    pthread_cond_broadcast(&p->gone);
    /* After a failure the next publish opens a stream: these came meanwhile.
     * (While a stream is open no reopen is scheduled: reopen_at is 0.) */
    if (!p->shutdown && p->count > 0 && p->reopen_at == 0)
        open_locked(p);
    pthread_mutex_unlock(&p->mu);
}

/*
 * The channel for a new stream: the publisher's own when it is connected;
 * otherwise one of the client's call channels that is (see
 * tse_client_pick_channel). Channels reconnect each on its own backoff, so
 * after the service (re)started the publisher's own may still be waiting
 * while another is up: a stream on it would fail at once.
 */
static grpc_channel *stream_channel(tse_client_publisher *p)
{
    if (grpc_channel_check_connectivity_state(p->channel, 1) == GRPC_CHANNEL_READY)
        return p->channel;
    return tse_client_pick_channel(p->client);
}

/* Opens a stream (no deadline) and hands it the waiting events. One that
 * cannot start (out of memory) is tried again after the backoff. */
static void open_locked(tse_client_publisher *p)
{
    static const tse_client_stream_handlers single = {on_response, on_end};
    static const tse_client_stream_handlers batched = {on_batch_response, on_end};
    static const tse_client_call_options no_deadline = {.timeout_ms = -1};
    tse_client_stream_how how = {
        .no_first = true, .channel = stream_channel(p), .on_drained = on_drained};
    bool one = p->batch == 1;

    p->sent = 0;
    p->sizes_count = 0;
    p->cancelled = false;
    p->reopen_at = 0;
    if (tse_client_stream_open(p->client,
                               one ? TSE_CLIENT_METHOD("PublishStream")
                                   : TSE_CLIENT_METHOD("PublishBatchStream"),
                               NULL, 0, &no_deadline, one ? &single : &batched, p, &how, &p->stream,
                               NULL) != TSE_CLIENT_OK) {
        p->stream = NULL;
        p->reopen_at = tse_clock_ms() + p->backoff;
        p->backoff = tse_client_backoff_next(p->client, p->backoff);
        return;
    }
    send_locked(p);
}

/* ============================== the pump ================================== */

/* Ends a stream whose oldest event waited past answer_timeout_ms. */
static void check_answer_timeout_locked(tse_client_publisher *p, long long now)
{
    if (p->answer_timeout_ms <= 0 || p->stream == NULL || p->cancelled || p->count == 0 ||
        now - p->ring[p->head].queued_ms <= p->answer_timeout_ms)
        return;
    tse_client_stream_cancel(p->stream, TSE_CLIENT_DEADLINE_EXCEEDED,
                             "the event service did not answer in time");
    p->cancelled = true;
}

/* When the oldest unsent event of p stops lingering (ms), or 0. */
static long long linger_due_locked(const tse_client_publisher *p)
{
    if (p->linger_ms <= 0 || p->stream == NULL || p->sent >= p->count)
        return 0;
    return p->ring[(p->head + p->sent) % p->cap].queued_ms + p->linger_ms;
}

/* Reopens the streams whose backoff ran out; ends those that answer late;
 * sends the batches that lingered long enough. Returns the earliest time
 * (ms) a batch will be due, or 0. */
static long long pump_scan(pump *pu)
{
    long long now = tse_clock_ms(), next = 0;

    pthread_mutex_lock(&pu->mu);
    for (tse_client_publisher *p = pu->list; p != NULL; p = p->next) {
        long long due;
        pthread_mutex_lock(&p->mu);
        if (!p->shutdown && p->stream == NULL && p->count > 0 && p->reopen_at != 0 &&
            now >= p->reopen_at)
            open_locked(p);
        check_answer_timeout_locked(p, now);
        send_locked(p);
        due = linger_due_locked(p);
        if (due != 0 && (next == 0 || due < next))
            next = due;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&pu->mu);
    return next;
}

static void *pump_main(void *arg)
{
    pump *pu = arg;
    long long next_scan = 0, linger_due = 0;
    grpc_event ev;

    for (;;) {
        long long wait = TICK_MS;
        if (linger_due != 0) {
            long long until = linger_due - tse_clock_ms();
            wait = until < 0 ? 0 : until < TICK_MS ? until : TICK_MS;
        }
        ev = grpc_completion_queue_next(pu->cq, tse_client_deadline((int)wait), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            tse_client_tag *t = ev.tag;

            tse_tsan_acquire(t);
            t->done(t, ev.success != 0);
        }
        /* Reopens are due at most every TICK_MS / 4 apart; a lingering
         * batch when it is due. */
        if (tse_clock_ms() >= next_scan || (linger_due != 0 && tse_clock_ms() >= linger_due)) {
            linger_due = pump_scan(pu);
            next_scan = tse_clock_ms() + TICK_MS / 4;
        }
    }
    return NULL;
}

/* The client's pump, started on first use; NULL when it cannot start. */
static pump *pump_get(tse_client *c)
{
    pump *pu;

    pthread_mutex_lock(&c->pump_mu);
    if ((pu = c->pump) == NULL && (pu = calloc(1, sizeof(*pu))) != NULL) {
        pthread_mutex_init(&pu->mu, NULL);
        pu->cq = grpc_completion_queue_create_for_next(NULL);
        if (pthread_create(&pu->thread, NULL, pump_main, pu) != 0) {
            grpc_completion_queue_destroy(pu->cq);
            pthread_mutex_destroy(&pu->mu);
            free(pu);
            pu = NULL;
        }
        c->pump = pu;
    }
    pthread_mutex_unlock(&c->pump_mu);
    return pu;
}

grpc_completion_queue *tse_client_queue(tse_client *c)
{
    pump *pu = pump_get(c);

    return pu != NULL ? pu->cq : NULL;
}

void tse_client_pump_stop(tse_client *c)
{
    pump *pu = c->pump;

    if (pu == NULL)
        return;
    c->pump = NULL;
    grpc_completion_queue_shutdown(pu->cq);
    pthread_join(pu->thread, NULL);
    grpc_completion_queue_destroy(pu->cq);
    pthread_mutex_destroy(&pu->mu);
    free(pu);
}

static void pump_add(pump *pu, tse_client_publisher *p)
{
    pthread_mutex_lock(&pu->mu);
    p->next = pu->list;
    pu->list = p;
    pthread_mutex_unlock(&pu->mu);
}

static void pump_remove(pump *pu, tse_client_publisher *p)
{
    pthread_mutex_lock(&pu->mu);
    for (tse_client_publisher **q = &pu->list; *q != NULL; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&pu->mu);
}

/* ============================== public API ================================ */

static tse_client_publisher *publisher_alloc(tse_client *c, size_t window)
{
    tse_client_publisher *p = calloc(1, sizeof(*p));
    pthread_condattr_t ca;

    if (p == NULL)
        return NULL;
    p->ring = calloc(window, sizeof(*p->ring));
    p->sizes = calloc(window, sizeof(*p->sizes));
    if (p->ring == NULL || p->sizes == NULL) {
        free(p->ring);
        free(p->sizes);
        free(p);
        return NULL;
    }
    p->client = c;
    p->cap = window;
    p->backoff = c->opt.reconnect_initial_ms;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->room, &ca);
    pthread_cond_init(&p->idle, &ca);
    pthread_cond_init(&p->gone, &ca);
    pthread_condattr_destroy(&ca);
    return p;
}

static void publisher_free(tse_client_publisher *p)
{
    if (p->channel != NULL)
        grpc_channel_destroy(p->channel);
    pthread_cond_destroy(&p->gone);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
    free(p->ring);
    free(p->sizes);
    free(p);
}

EXPORT tse_client_status tse_client_publisher_create(tse_client *client,
                                                     const tse_client_publisher_options *options,
                                                     tse_client_publish_cb cb, void *cb_arg,
                                                     tse_client_publisher **out,
                                                     tse_client_error *err)
{
    tse_client_publisher_options o = {0};
    tse_client_publisher *p;

    tse_client_error_clear(err);
    if (client == NULL || out == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, client ? "out" : "client",
                               "%s is NULL", client ? "out" : "client");
    if (options != NULL)
        o = *options;
    if (o.window == 0)
        o.window = DEFAULT_WINDOW;
    if (o.window < 1 || o.window > MAX_WINDOW)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "window",
                               "window must be 1 to %d", MAX_WINDOW);
    if (o.answer_timeout_ms < 0)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "answer_timeout_ms",
                               "answer_timeout_ms must be 0 (none) or positive");
    if (o.batch_size == 0)
        o.batch_size = DEFAULT_BATCH;
    if (o.batch_size < 1 || o.batch_size > TSE_PUBLISH_BATCH_MAX_EVENTS)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "batch_size",
                               "batch_size must be 1 to %d", TSE_PUBLISH_BATCH_MAX_EVENTS);
    if (o.linger_ms < 0 || o.linger_ms > MAX_LINGER_MS)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "linger_ms",
                               "linger_ms must be 0 to %d", MAX_LINGER_MS);
    if ((p = publisher_alloc(client, (size_t)o.window)) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    p->cb = cb;
    p->cb_arg = cb_arg;
    p->server_ids = o.server_assigned_ids;
    p->fail_on_break = o.fail_on_break;
    p->answer_timeout_ms = o.answer_timeout_ms;
    p->batch = (size_t)o.batch_size;
    p->linger_ms = o.linger_ms;
    if ((p->pump = pump_get(client)) == NULL ||
        (p->channel = tse_client_open_channel(client)) == NULL) {
        publisher_free(p);
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL,
                               "cannot start the publisher's thread or channel");
    }
    pump_add(p->pump, p);
    pthread_mutex_lock(&p->mu);
    open_locked(p);
    pthread_mutex_unlock(&p->mu);
    *out = p;
    return TSE_CLIENT_OK;
}

/* Waits for room in the window (see the header); OK or why not. */
static tse_client_status wait_room_locked(tse_client_publisher *p, tse_client_error *err)
{
    struct timespec until;
    size_t low = p->cap - (p->cap + 3) / 4;

    if (p->count < p->cap)
        return TSE_CLIENT_OK; /* the common case: no clock read */
    until = tse_clock_deadline_ts(p->client->opt.timeout_ms);
    if (pthread_equal(pthread_self(), p->pump->thread))
        return tse_client_fail(err, TSE_CLIENT_RESOURCE_EXHAUSTED, -1, NULL,
                               "the publisher's window is full");
    p->waiters++;
    while (p->count > low && !p->shutdown) {
        if (pthread_cond_timedwait(&p->room, &p->mu, &until) == ETIMEDOUT && p->count >= p->cap)
            break;
    }
    p->waiters--;
    if (p->shutdown)
        return tse_client_fail(err, TSE_CLIENT_CANCELLED, -1, NULL, "the publisher is closing");
    if (p->count >= p->cap)
        return tse_client_fail(
            err, p->down != TSE_CLIENT_OK ? TSE_CLIENT_UNAVAILABLE : TSE_CLIENT_DEADLINE_EXCEEDED,
            -1, NULL, "the window stayed full for %d ms%s", p->client->opt.timeout_ms,
            p->down != TSE_CLIENT_OK ? " (the stream is down)" : "");
    return TSE_CLIENT_OK;
}

/* The PublishBatchStream entry of ev (with an SDK id when it needs one). */
static grpc_slice request_of(tse_client_publisher *pub, const tse_client_event *ev)
{
    char id[37];

    if (!pub->server_ids && !ev->has_id)
        tse_uuid_seq_next(&pub->client->ids, id);
    return tse_client_request_slice(pub->client, ev, pub->server_ids || ev->has_id ? NULL : id);
}

/* Appends req (taken, even on failure) for user_data once the window has
 * room. */
static tse_client_status append_locked(tse_client_publisher *pub, grpc_slice req, void *user_data,
                                       tse_client_error *err)
{
    tse_client_status st = pub->shutdown ? tse_client_fail(err, TSE_CLIENT_CANCELLED, -1, NULL,
                                                           "the publisher is closing")
                                         : wait_room_locked(pub, err);

    if (st != TSE_CLIENT_OK) {
        grpc_slice_unref(req);
        return st;
    }
    pub->ring[(pub->head + pub->count) % pub->cap] = (entry){
        req, user_data, pub->answer_timeout_ms > 0 || pub->linger_ms > 0 ? tse_clock_ms() : 0};
    pub->count++;
    pub->unfinished++;
    return TSE_CLIENT_OK;
}

/* Hands the queued events to the stream. After a failure no reopen is
 * scheduled: the events open one. */
static void kick_locked(tse_client_publisher *pub)
{
    if (pub->stream == NULL && pub->reopen_at == 0)
        open_locked(pub);
    else
        send_locked(pub);
}

EXPORT tse_client_status tse_client_publisher_publish(tse_client_publisher *pub,
                                                      const tse_client_event *ev, void *user_data,
                                                      tse_client_error *err)
{
    grpc_slice req;
    tse_client_status st;

    if (pub == NULL || ev == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, pub ? "event" : "publisher",
                               "%s is NULL", pub ? "event" : "publisher");
    req = request_of(pub, ev);
    pthread_mutex_lock(&pub->mu);
    if ((st = append_locked(pub, req, user_data, err)) == TSE_CLIENT_OK)
        kick_locked(pub);
    pthread_mutex_unlock(&pub->mu);
    return st;
}

EXPORT tse_client_status tse_client_publisher_publish_many(tse_client_publisher *pub,
                                                           const tse_client_event *const *evs,
                                                           void *const *user_data, size_t n,
                                                           size_t *queued, tse_client_error *err)
{
    tse_client_status st = TSE_CLIENT_OK;
    grpc_slice *reqs;
    size_t done = 0;

    if (queued != NULL)
        *queued = 0;
    if (pub == NULL || (evs == NULL && n > 0))
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, pub ? "events" : "publisher",
                               "%s is NULL", pub ? "events" : "publisher");
    for (size_t i = 0; i < n; i++)
        if (evs[i] == NULL)
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "events",
                                   "events[%zu] is NULL", i);
    if (n == 0)
        return TSE_CLIENT_OK;
    /* The entries are built before the lock is taken, as publish() does. */
    if ((reqs = malloc(n * sizeof(*reqs))) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        reqs[i] = request_of(pub, evs[i]);
    pthread_mutex_lock(&pub->mu);
    for (; done < n; done++) {
        /* The window is full: what this call queued must be on its way
         * before waiting for room, or nothing would ever make any. */
        if (pub->count >= pub->cap && done > 0)
            kick_locked(pub);
        st = append_locked(pub, reqs[done], user_data != NULL ? user_data[done] : NULL, err);
        if (st != TSE_CLIENT_OK)
            break;
    }
    if (done > 0)
        kick_locked(pub);
    pthread_mutex_unlock(&pub->mu);
    /* reqs[done] was taken by the append that failed. */
    for (size_t i = done + 1; i < n; i++)
        grpc_slice_unref(reqs[i]);
    free(reqs);
    if (queued != NULL)
        *queued = done;
    return st;
}

EXPORT tse_client_status tse_client_publisher_flush(tse_client_publisher *pub, int timeout_ms,
                                                    tse_client_error *err)
{
    struct timespec until = tse_clock_deadline_ts(timeout_ms < 0 ? 0 : timeout_ms);
    tse_client_status st = TSE_CLIENT_OK;

    if (pub == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "publisher",
                               "publisher is NULL");
    pthread_mutex_lock(&pub->mu);
    while (pub->unfinished > 0 && st == TSE_CLIENT_OK) {
        if (timeout_ms < 0)
            pthread_cond_wait(&pub->idle, &pub->mu);
        else if (pthread_cond_timedwait(&pub->idle, &pub->mu, &until) == ETIMEDOUT &&
                 pub->unfinished > 0)
            st = tse_client_fail(err, TSE_CLIENT_DEADLINE_EXCEEDED, -1, NULL,
                                 "%zu events still unanswered after %d ms", pub->unfinished,
                                 timeout_ms);
    }
    pthread_mutex_unlock(&pub->mu);
    return st;
}

/* Refuses events, cancels the stream and waits until its end let it go:
 * after that no completion of this publisher is left on the shared queue.
 * Then fails what is left with CANCELLED (why). */
static void stop(tse_client_publisher *pub, const char *why)
{
    tse_client_error err;

    pthread_mutex_lock(&pub->mu);
    pub->shutdown = true;
    pthread_cond_broadcast(&pub->room);
    tse_client_stream_cancel(pub->stream, TSE_CLIENT_CANCELLED, why);
    while (pub->stream != NULL)
        pthread_cond_wait(&pub->gone, &pub->mu);
    tse_client_fail(&err, TSE_CLIENT_CANCELLED, -1, NULL, "%s", why);
    fail_locked(pub, pub->count, &err);
    pthread_mutex_unlock(&pub->mu);
}

EXPORT void tse_client_publisher_cancel(tse_client_publisher *pub)
{
    if (pub != NULL)
        stop(pub, "the publisher was cancelled before an answer");
}

EXPORT void tse_client_publisher_destroy(tse_client_publisher *pub)
{
    if (pub == NULL)
        return;
    stop(pub, "the publisher was destroyed before an answer");
    pump_remove(pub->pump, pub);
    publisher_free(pub);
}
