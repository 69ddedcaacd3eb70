/*
 * publisher.c - pipelined publishing on one PublishStream call, with a
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
#include "common/tsan.h"

#define EXPORT __attribute__((visibility("default")))

#define TICK_MS        100
#define MAX_WINDOW     4000 /* the server stops reading at 4096 unanswered */
#define DEFAULT_WINDOW 1024

typedef struct entry {
    grpc_slice req;
    void *user;
    long long queued_ms; /* with answer_timeout_ms only */
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
    size_t cap; /* the window */
    pump *pump;
    grpc_channel *channel;
    struct tse_client_publisher *next; /* in the pump's list */

    pthread_mutex_t mu;
    pthread_cond_t room, idle, gone; /* gone: the stream was let go */
    entry *ring;
    size_t head, count, sent;
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

/* Hands the stream every event it has not had yet. */
static void send_locked(tse_client_publisher *p)
{
    while (p->stream != NULL && p->sent < p->count &&
           tse_client_stream_send_slice(p->stream, p->ring[(p->head + p->sent) % p->cap].req) ==
               TSE_CLIENT_OK)
        p->sent++;
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
 * The stream ended with st (OK: the server closed it before answering):
 * resend later, with backoff; or fail the events it had: all of them when
 * a new stream would meet st again, those it had with fail_on_break.
 */
static void down_locked(tse_client_publisher *p, tse_client_status st, const tse_client_error *err)
{
    tse_client_error why;
    size_t had = p->sent;

    p->sent = 0;
    p->down = st == TSE_CLIENT_OK ? TSE_CLIENT_UNAVAILABLE : st;
    if (p->shutdown)
        return;
    if (st == TSE_CLIENT_OK)
        tse_client_fail(&why, TSE_CLIENT_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE, NULL,
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
    down_locked(p, st, err);
    tse_client_stream_release(p->stream);
    p->stream = NULL;
    pthread_cond_broadcast(&p->gone);
    /* After a failure the next publish opens a stream: these came meanwhile. */
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
    static const tse_client_stream_handlers handlers = {on_response, on_end};
    static const tse_client_call_options no_deadline = {.timeout_ms = -1};
    tse_client_stream_how how = {.no_first = true, .channel = stream_channel(p)};

    p->sent = 0;
    p->cancelled = false;
    p->reopen_at = 0;
    if (tse_client_stream_open(p->client, TSE_CLIENT_METHOD("PublishStream"), NULL, 0, &no_deadline,
                               &handlers, p, &how, &p->stream, NULL) != TSE_CLIENT_OK) {
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

/* Reopens the streams whose backoff ran out; ends those that answer late. */
static void pump_scan(pump *pu)
{
    long long now = tse_clock_ms();

    pthread_mutex_lock(&pu->mu);
    for (tse_client_publisher *p = pu->list; p != NULL; p = p->next) {
        pthread_mutex_lock(&p->mu);
        if (!p->shutdown && p->stream == NULL && p->count > 0 && p->reopen_at != 0 &&
            now >= p->reopen_at)
            open_locked(p);
        check_answer_timeout_locked(p, now);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&pu->mu);
}

static void *pump_main(void *arg)
{
    pump *pu = arg;
    long long next_scan = 0;
    grpc_event ev;

    for (;;) {
        ev = grpc_completion_queue_next(pu->cq, tse_client_deadline(TICK_MS), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            tse_client_tag *t = ev.tag;

            tse_tsan_acquire(t);
            t->done(t, ev.success != 0);
        }
        /* Reopens are due at most every TICK_MS / 4 apart. */
        if (tse_clock_ms() >= next_scan) {
            pump_scan(pu);
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
    if (p->ring == NULL) {
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
    if ((p = publisher_alloc(client, (size_t)o.window)) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    p->cb = cb;
    p->cb_arg = cb_arg;
    p->server_ids = o.server_assigned_ids;
    p->fail_on_break = o.fail_on_break;
    p->answer_timeout_ms = o.answer_timeout_ms;
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

EXPORT tse_client_status tse_client_publisher_publish(tse_client_publisher *pub,
                                                      const tse_client_event *ev, void *user_data,
                                                      tse_client_error *err)
{
    char id[37];
    grpc_slice req;
    tse_client_status st;

    if (pub == NULL || ev == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, pub ? "event" : "publisher",
                               "%s is NULL", pub ? "event" : "publisher");
    if (!pub->server_ids && !ev->has_id)
        tse_client_next_id(pub->client, id);
    req = tse_client_request_slice(pub->client, ev, pub->server_ids || ev->has_id ? NULL : id);
    pthread_mutex_lock(&pub->mu);
    st = pub->shutdown
             ? tse_client_fail(err, TSE_CLIENT_CANCELLED, -1, NULL, "the publisher is closing")
             : wait_room_locked(pub, err);
    if (st != TSE_CLIENT_OK) {
        pthread_mutex_unlock(&pub->mu);
        grpc_slice_unref(req);
        return st;
    }
    pub->ring[(pub->head + pub->count) % pub->cap] =
        (entry){req, user_data, pub->answer_timeout_ms > 0 ? tse_clock_ms() : 0};
    pub->count++;
    pub->unfinished++;
    /* After a failure no reopen is scheduled: this event opens one. */
    if (pub->stream == NULL && pub->reopen_at == 0)
        open_locked(pub);
    else
        send_locked(pub);
    pthread_mutex_unlock(&pub->mu);
    return TSE_CLIENT_OK;
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
