/*
 * subscriber.c - a Subscribe stream with a callback per delivery, acks,
 * and reconnection with backoff.
 *
 * Threading: the stream is one of the client's asynchronous streams
 * (stream.c): its handlers, on the client's call thread, only queue each
 * delivery in the inbox (a batched message, whose Delivery carries more in
 * its `more`, becomes one inbox entry per delivery, so the callback and the
 * acks never see a batch) or note the end, and wake the subscriber's thread
 * (the caller of run, or the subscriber's own), which runs the callback.
 * A full inbox pauses the stream (the server is held back by HTTP/2 flow
 * control), so a slow callback costs bounded memory even for an auto_ack
 * subscription, which has no credit limit. Acks may come from any thread:
 * they are queued under `mu` and the subscriber's thread sends them after
 * each delivery, or when woken, each run of same-kind ops in one message.
 *
 * Stopping only sets an atomic flag, which the subscriber's thread checks
 * at least every TICK_MS: then it cancels the stream, waits for its end
 * and returns. A cancel makes the server drop stream messages it has not
 * read yet, so acks sent shortly before it may be lost: after the stream
 * ended, the last RECENT_ACKS ack ids sent on it and those still queued are
 * acked once more with the unary Acknowledge (acking twice is harmless), so
 * an event the callback handled before stop does not come back.
 *
 * Invariants: acks queued for a stream that ended are dropped (the server
 * redelivers those events: at-least-once); the subscription exists before
 * the first stream opens (create checks it), so a reconnection joins it by
 * name. The stream's end comes after every delivery (stream.c), so once
 * `ending` is set and the inbox is empty the stream is over.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/internal.h"

#define EXPORT __attribute__((visibility("default")))

#define TICK_MS             100
#define MAX_PER_MSG         512  /* ack ids in one SubscribeRequest */
#define RECENT_ACKS         1024 /* ack ids sent on the stream, acked again at stop */
#define INBOX_HIGH          256  /* deliveries queued: the stream is paused above */
#define INBOX_LOW           64   /* and resumed at or below */
#define PER_MESSAGE_DEFAULT 100  /* max_deliveries_per_message 0 */
#define PER_MESSAGE_MAX     1000 /* the server's TSE_DELIVERIES_PER_MESSAGE_MAX */

typedef enum op_kind { OP_ACK, OP_NACK, OP_EXTEND } op_kind;

/* One queued ack / nack / extend. */
typedef struct pending_op {
    struct pending_op *next;
    op_kind kind;
    uint32_t ms;
    char ack_id[];
} pending_op;

/* One delivery received, not yet handed to the callback. */
typedef struct inbox_msg {
    struct inbox_msg *next;
    size_t len;
    uint8_t bytes[];
} inbox_msg;

struct tse_client_subscriber {
    tse_client *client;
    char *subscription;
    char *consumer_name;
    uint32_t per_message; /* max_deliveries_per_message asked of the server */
    tse_client_ack_mode mode;
    tse_client_delivery_cb cb;
    void *cb_arg;
    atomic_bool stop;
    atomic_uint_fast64_t delivered;
    pthread_t thread;
    bool started, joined, ran;
    tse_client_status final;
    tse_client_error final_err;

    pthread_mutex_t mu;        /* guards the fields below */
    pthread_cond_t wake;       /* a delivery, an op, the end */
    tse_client_stream *stream; /* the open stream, or NULL */
    bool ending, paused;       /* its end came; the inbox is full */
    tse_client_status end;     /* then: why */
    tse_client_error end_err;
    inbox_msg *in_head, *in_tail;
    size_t in_count;
    pending_op *head, *tail;
    char *recent[RECENT_ACKS]; /* ring of the last ack ids sent */
    size_t recent_next;
};

struct tse_client_delivery {
    tse_client_subscriber *sub;
    const char *ack_id;
    bool settled;
};

/* ============================== sending =================================== */

static void ops_clear_locked(tse_client_subscriber *s)
{
    while (s->head != NULL) {
        pending_op *o = s->head;
        s->head = o->next;
        free(o);
    }
    s->tail = NULL;
}

/* Keeps a copy of an ack id sent (or about to be dropped) for the
 * Acknowledge at stop; the oldest is forgotten. */
static void remember_locked(tse_client_subscriber *s, const char *ack_id)
{
    free(s->recent[s->recent_next]);
    s->recent[s->recent_next] = strdup(ack_id); /* NULL ok: the stop's Acknowledge skips it */
    s->recent_next = (s->recent_next + 1) % RECENT_ACKS;
}

/* Packs the queue's first run of same-kind ops into one request (*len
 * bytes, caller frees); NULL when out of memory (the ops are dropped: their
 * deliveries come back). */
static uint8_t *take_request_locked(tse_client_subscriber *s, size_t *len)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    Tracseq__Events__V1__AckIds ack = TRACSEQ__EVENTS__V1__ACK_IDS__INIT;
    Tracseq__Events__V1__NackIds nack = TRACSEQ__EVENTS__V1__NACK_IDS__INIT;
    Tracseq__Events__V1__ExtendDeadline ext = TRACSEQ__EVENTS__V1__EXTEND_DEADLINE__INIT;
    char *ids[MAX_PER_MSG];
    pending_op *taken[MAX_PER_MSG];
    op_kind kind = s->head->kind;
    uint32_t ms = s->head->ms;
    size_t n = 0;
    uint8_t *buf;

    while (s->head != NULL && n < MAX_PER_MSG && s->head->kind == kind && s->head->ms == ms) {
        if (kind == OP_ACK)
            remember_locked(s, s->head->ack_id);
        taken[n] = s->head;
        ids[n++] = s->head->ack_id;
        s->head = s->head->next;
    }
    if (s->head == NULL)
        s->tail = NULL;
    if (kind == OP_ACK) {
        ack.n_ack_ids = n;
        ack.ack_ids = ids;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_ACK;
        req.ack = &ack;
    } else if (kind == OP_NACK) {
        nack.n_ack_ids = n;
        nack.ack_ids = ids;
        nack.delay_ms = ms;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_NACK;
        req.nack = &nack;
    } else {
        ext.n_ack_ids = n;
        ext.ack_ids = ids;
        ext.deadline_ms = ms;
        req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_EXTEND;
        req.extend = &ext;
    }
    *len = protobuf_c_message_get_packed_size(&req.base);
    if ((buf = malloc(*len ? *len : 1)) != NULL)
        protobuf_c_message_pack(&req.base, buf);
    for (size_t i = 0; i < n; i++)
        free(taken[i]);
    return buf;
}

/* Sends what is queued on the open stream, one message per run. */
static void flush_locked(tse_client_subscriber *s)
{
    uint8_t *buf;
    size_t len;

    while (s->head != NULL && s->stream != NULL && !s->ending) {
        if ((buf = take_request_locked(s, &len)) == NULL)
            break;
        tse_client_stream_send(s->stream, buf, len);
        free(buf);
    }
}

static tse_client_status enqueue(tse_client_subscriber *s, op_kind kind, const char *ack_id,
                                 uint32_t ms)
{
    size_t len = strlen(ack_id);
    pending_op *o = malloc(sizeof(*o) + len + 1);
    tse_client_status st = TSE_CLIENT_OK;

    if (o == NULL)
        return TSE_CLIENT_NO_MEMORY;
    o->next = NULL;
    o->kind = kind;
    o->ms = ms;
    memcpy(o->ack_id, ack_id, len + 1);
    pthread_mutex_lock(&s->mu);
    if (s->stream == NULL || s->ending) {
        free(o);
        st = TSE_CLIENT_UNAVAILABLE; /* the delivery comes back */
    } else {
        if (s->tail != NULL)
            s->tail->next = o;
        else
            s->head = o;
        s->tail = o;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ============================== one stream ================================ */

/* The inbox entries of one message, before they join the inbox. */
typedef struct unpacked {
    inbox_msg *head, *tail;
    size_t n;
    bool nomem;
} unpacked;

static inbox_msg *inbox_msg_new(const uint8_t *p, size_t len)
{
    inbox_msg *m = malloc(sizeof(*m) + len);

    if (m == NULL)
        return NULL;
    m->next = NULL;
    m->len = len;
    memcpy(m->bytes, p, len);
    return m;
}

static void unpacked_add(unpacked *u, inbox_msg *m)
{
    if (u->tail != NULL)
        u->tail->next = m;
    else
        u->head = m;
    u->tail = m;
    u->n++;
}

/* An element of `more`: one more delivery. */
static bool add_more(void *arg, const uint8_t *p, size_t len)
{
    unpacked *u = arg;
    inbox_msg *m = inbox_msg_new(p, len);

    if (m == NULL)
        u->nomem = true; /* not acked: it comes back */
    else
        unpacked_add(u, m);
    return true;
}

/*
 * One inbox entry per delivery of a message: the message without its
 * `more` (the first delivery), then each element of `more`. A message
 * that does not scan is kept whole: its decode fails and it is not acked,
 * so it comes back (and is dead-lettered after the max attempts).
 */
static unpacked unpack_message(const uint8_t *msg, size_t len)
{
    unpacked u = {NULL, NULL, 0, false};
    size_t first_len = 0;
    inbox_msg *first;

    if (!tse_client_delivery_split(msg, len, NULL, &first_len, NULL, NULL) ||
        (first = malloc(sizeof(*first) + first_len)) == NULL) {
        first = inbox_msg_new(msg, len);
        if (first != NULL)
            unpacked_add(&u, first);
        return u;
    }
    first->next = NULL;
    first->len = 0;
    unpacked_add(&u, first);
    tse_client_delivery_split(msg, len, first->bytes, &first->len, add_more, &u);
    return u;
}

/* The stream's handlers, on the client's call thread. */
static void on_message(void *arg, const void *msg, size_t len)
{
    tse_client_subscriber *s = arg;
    unpacked u = unpack_message(msg, len);

    if (u.head == NULL)
        return; /* out of memory: not acked, it comes back */
    pthread_mutex_lock(&s->mu);
    if (s->in_tail != NULL)
        s->in_tail->next = u.head;
    else
        s->in_head = u.head;
    s->in_tail = u.tail;
    s->in_count += u.n;
    if (s->in_count > INBOX_HIGH && !s->paused) {
        s->paused = true;
        tse_client_stream_pause(s->stream, true);
    }
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

static void on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    tse_client_subscriber *s = arg;

    pthread_mutex_lock(&s->mu);
    s->ending = true; /* no new sends; queued acks are dropped */
    s->end = status;
    if (err != NULL)
        s->end_err = *err;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

/* Opens the stream (under mu: its handlers wait until s->stream is set). */
static tse_client_status open_locked(tse_client_subscriber *s, tse_client_error *err)
{
    static const tse_client_stream_handlers handlers = {on_message, on_end};
    static const tse_client_call_options forever = {.timeout_ms = -1};
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    size_t len;
    uint8_t *buf;
    tse_client_status st;

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = s->subscription;
    req.consumer_name = s->consumer_name != NULL ? s->consumer_name : "";
    req.max_deliveries_per_message = s->per_message;
    len = protobuf_c_message_get_packed_size(&req.base);
    if ((buf = malloc(len ? len : 1)) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    protobuf_c_message_pack(&req.base, buf);
    ops_clear_locked(s);
    s->ending = s->paused = false;
    st = tse_client_stream_start(s->client, TSE_CLIENT_METHOD("Subscribe"), buf, len, &forever,
                                 &handlers, s, &s->stream, err);
    free(buf);
    return st;
}

/* Hands one delivery to the callback, then acks it in ACK_AUTO mode. */
static void deliver(tse_client_subscriber *s, const inbox_msg *m)
{
    tse_client_decoded d;
    tse_client_delivery h = {s, NULL, false};

    /* An undecodable delivery is not acked: it comes back, then goes to the
     * dead-letter stream after the subscription's max attempts. */
    if (tse_client_delivery_decode(m->bytes, m->len, &d, NULL) != TSE_CLIENT_OK)
        return;
    h.ack_id = d.view.ack_id;
    s->cb(s->cb_arg, &d.view, &h);
    atomic_fetch_add(&s->delivered, 1);
    if (s->mode == TSE_CLIENT_ACK_AUTO && !h.settled)
        enqueue(s, OP_ACK, d.view.ack_id, 0);
    tse_client_decoded_cleanup(&d);
}

/* The next inbox entry (lock held), resuming a paused stream once the
 * inbox has room again; NULL when empty. */
static inbox_msg *pop_locked(tse_client_subscriber *s)
{
    inbox_msg *m = s->in_head;

    if (m == NULL)
        return NULL;
    if ((s->in_head = m->next) == NULL)
        s->in_tail = NULL;
    if (--s->in_count <= INBOX_LOW && s->paused) {
        s->paused = false;
        tse_client_stream_pause(s->stream, false);
    }
    return m;
}

static void wait_locked(tse_client_subscriber *s, int ms)
{
    struct timespec until = tse_clock_deadline_ts(ms);

    pthread_cond_timedwait(&s->wake, &s->mu, &until);
}

/* Runs one stream until it ended and its deliveries were handled; returns
 * its status (CANCELLED after stop). */
static tse_client_status stream_run(tse_client_subscriber *s, bool *got_delivery,
                                    tse_client_error *err)
{
    bool cancelled = false;
    tse_client_stream *stream;
    tse_client_status st;
    inbox_msg *m;

    pthread_mutex_lock(&s->mu);
    if ((st = open_locked(s, err)) != TSE_CLIENT_OK) {
        pthread_mutex_unlock(&s->mu);
        return st;
    }
    for (;;) {
        if (atomic_load(&s->stop) && !cancelled) {
            tse_client_stream_cancel(s->stream, TSE_CLIENT_CANCELLED, "the subscriber stopped");
            cancelled = true;
        }
        if ((m = pop_locked(s)) != NULL) {
            pthread_mutex_unlock(&s->mu);
            *got_delivery = true;
            if (!atomic_load(&s->stop))
                deliver(s, m);
            free(m);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        flush_locked(s);
        if (s->ending)
            break;
        wait_locked(s, TICK_MS);
    }
    if (atomic_load(&s->stop))
        for (pending_op *o = s->head; o != NULL; o = o->next)
            if (o->kind == OP_ACK)
                remember_locked(s, o->ack_id);
    ops_clear_locked(s);
    stream = s->stream;
    s->stream = NULL;
    st = s->end;
    if (err != NULL && st != TSE_CLIENT_OK)
        *err = s->end_err;
    pthread_mutex_unlock(&s->mu);
    tse_client_stream_release(stream);
    return st;
}

/* ============================== the loop ================================== */

/* At stop: acks the remembered ids with the unary Acknowledge (best
 * effort: what it cannot ack comes back after the deadline). */
static void ack_recent(tse_client_subscriber *s)
{
    const char *ids[RECENT_ACKS];
    size_t n = 0;

    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < RECENT_ACKS; i++)
        if (s->recent[i] != NULL)
            ids[n++] = s->recent[i];
    pthread_mutex_unlock(&s->mu);
    if (n > 0)
        tse_client_acknowledge(s->client, s->subscription, ids, n, NULL, NULL);
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < RECENT_ACKS; i++) {
        free(s->recent[i]);
        s->recent[i] = NULL;
    }
    pthread_mutex_unlock(&s->mu);
}

static tse_client_status run_loop(tse_client_subscriber *s, tse_client_error *err)
{
    const tse_client_options *o = &s->client->opt;
    int backoff = o->reconnect_initial_ms;

    while (!atomic_load(&s->stop)) {
        bool got = false;
        tse_client_error e;
        tse_client_status st = stream_run(s, &got, &e);

        if (atomic_load(&s->stop)) {
            ack_recent(s);
            break;
        }
        if (tse_client_status_fatal(st)) {
            if (err != NULL)
                *err = e;
            return st;
        }
        if (got)
            backoff = o->reconnect_initial_ms;
        tse_client_sleep_ms(backoff, &s->stop);
        backoff = tse_client_backoff_next(s->client, backoff);
    }
    return TSE_CLIENT_OK;
}

/* ============================== public API ================================ */

static tse_client_status check_subscription(tse_client *c, const tse_client_subscriber_options *o,
                                            tse_client_error *err)
{
    tse_client_subscription_spec spec;

    if (o->create == NULL)
        return tse_client_subscription_get(c, o->subscription, NULL, err);
    spec = *o->create;
    if (o->ack_mode == TSE_CLIENT_ACK_NONE)
        spec.auto_ack = true;
    return tse_client_create_subscription(c, &spec, o->subscription, NULL, err);
}

static tse_client_subscriber *subscriber_alloc(tse_client *c,
                                               const tse_client_subscriber_options *o)
{
    tse_client_subscriber *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;

    if (s == NULL)
        return NULL;
    s->client = c;
    s->mode = o->ack_mode;
    s->per_message = o->max_deliveries_per_message > 0 ? (uint32_t)o->max_deliveries_per_message
                                                       : PER_MESSAGE_DEFAULT;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    s->subscription = strdup(o->subscription);
    s->consumer_name = o->consumer_name != NULL ? strdup(o->consumer_name) : NULL;
    if (s->subscription == NULL || (o->consumer_name != NULL && s->consumer_name == NULL)) {
        tse_client_subscriber_destroy(s);
        return NULL;
    }
    return s;
}

EXPORT tse_client_status tse_client_subscriber_create(tse_client *client,
                                                      const tse_client_subscriber_options *options,
                                                      tse_client_delivery_cb cb, void *cb_arg,
                                                      tse_client_subscriber **out,
                                                      tse_client_error *err)
{
    tse_client_subscriber *s;
    tse_client_status st;

    tse_client_error_clear(err);
    if (client == NULL || options == NULL || cb == NULL || out == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1,
                               client == NULL    ? "client"
                               : options == NULL ? "options"
                               : cb == NULL      ? "cb"
                                                 : "out",
                               "a required argument is NULL");
    if (options->subscription == NULL || options->subscription[0] == '\0')
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "subscription",
                               "subscription is required");
    if (options->ack_mode > TSE_CLIENT_ACK_NONE)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "ack_mode",
                               "ack_mode must be auto, manual or none");
    if (options->max_deliveries_per_message < 0 ||
        options->max_deliveries_per_message > PER_MESSAGE_MAX)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "max_deliveries_per_message",
                               "max_deliveries_per_message must be 0 (default) or 1..%d",
                               PER_MESSAGE_MAX);
    if ((st = check_subscription(client, options, err)) != TSE_CLIENT_OK)
        return st;
    if ((s = subscriber_alloc(client, options)) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    s->cb = cb;
    s->cb_arg = cb_arg;
    *out = s;
    return TSE_CLIENT_OK;
}

/* A subscriber runs once: marks it run, or says why not. */
static tse_client_status claim_run(tse_client_subscriber *sub, tse_client_error *err)
{
    tse_client_error_clear(err);
    if (sub == NULL || sub->ran)
        return tse_client_fail(err, TSE_CLIENT_FAILED_PRECONDITION, -1, NULL,
                               "a subscriber runs once");
    sub->ran = true;
    return TSE_CLIENT_OK;
}

EXPORT tse_client_status tse_client_subscriber_run(tse_client_subscriber *sub,
                                                   tse_client_error *err)
{
    tse_client_status st = claim_run(sub, err);

    return st != TSE_CLIENT_OK ? st : run_loop(sub, err);
}

static void *subscriber_main(void *arg)
{
    tse_client_subscriber *s = arg;

    tse_client_error_clear(&s->final_err);
    s->final = run_loop(s, &s->final_err);
    return NULL;
}

EXPORT tse_client_status tse_client_subscriber_start(tse_client_subscriber *sub,
                                                     tse_client_error *err)
{
    tse_client_status st = claim_run(sub, err);

    if (st != TSE_CLIENT_OK)
        return st;
    if (pthread_create(&sub->thread, NULL, subscriber_main, sub) != 0)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL,
                               "cannot start the subscriber's thread");
    sub->started = true;
    return TSE_CLIENT_OK;
}

EXPORT void tse_client_subscriber_stop(tse_client_subscriber *sub)
{
    if (sub != NULL)
        atomic_store(&sub->stop, true);
}

EXPORT tse_client_status tse_client_subscriber_wait(tse_client_subscriber *sub,
                                                    tse_client_error *err)
{
    tse_client_error_clear(err);
    if (sub == NULL || !sub->started)
        return tse_client_fail(err, TSE_CLIENT_FAILED_PRECONDITION, -1, NULL,
                               "the subscriber was not started");
    if (!sub->joined) {
        pthread_join(sub->thread, NULL);
        sub->joined = true;
    }
    if (err != NULL && sub->final != TSE_CLIENT_OK)
        *err = sub->final_err;
    return sub->final;
}

EXPORT uint64_t tse_client_subscriber_delivered(const tse_client_subscriber *sub)
{
    return sub != NULL ? atomic_load(&((tse_client_subscriber *)sub)->delivered) : 0;
}

EXPORT void tse_client_subscriber_destroy(tse_client_subscriber *sub)
{
    inbox_msg *m;

    if (sub == NULL)
        return;
    tse_client_subscriber_stop(sub);
    if (sub->started)
        tse_client_subscriber_wait(sub, NULL);
    pthread_mutex_lock(&sub->mu);
    while ((m = pop_locked(sub)) != NULL)
        free(m);
    ops_clear_locked(sub);
    for (size_t i = 0; i < RECENT_ACKS; i++)
        free(sub->recent[i]);
    pthread_mutex_unlock(&sub->mu);
    pthread_cond_destroy(&sub->wake);
    pthread_mutex_destroy(&sub->mu);
    free(sub->subscription);
    free(sub->consumer_name);
    free(sub);
}

static tse_client_status settle(tse_client_delivery *d, op_kind kind, uint32_t ms)
{
    if (d == NULL || d->ack_id == NULL)
        return TSE_CLIENT_INVALID_ARGUMENT;
    if (kind != OP_EXTEND) {
        if (d->settled)
            return TSE_CLIENT_INVALID_ARGUMENT;
        d->settled = true;
    }
    return enqueue(d->sub, kind, d->ack_id, ms);
}

EXPORT tse_client_status tse_client_delivery_ack(tse_client_delivery *d)
{
    return settle(d, OP_ACK, 0);
}

EXPORT tse_client_status tse_client_delivery_nack(tse_client_delivery *d, uint32_t delay_ms)
{
    return settle(d, OP_NACK, delay_ms);
}

EXPORT tse_client_status tse_client_delivery_extend(tse_client_delivery *d, uint32_t deadline_ms)
{
    return settle(d, OP_EXTEND, deadline_ms);
}

EXPORT tse_client_status tse_client_subscriber_ack(tse_client_subscriber *sub, const char *ack_id)
{
    if (sub == NULL || ack_id == NULL || ack_id[0] == '\0')
        return TSE_CLIENT_INVALID_ARGUMENT;
    return enqueue(sub, OP_ACK, ack_id, 0);
}

EXPORT tse_client_status tse_client_subscriber_nack(tse_client_subscriber *sub, const char *ack_id,
                                                    uint32_t delay_ms)
{
    if (sub == NULL || ack_id == NULL || ack_id[0] == '\0')
        return TSE_CLIENT_INVALID_ARGUMENT;
    return enqueue(sub, OP_NACK, ack_id, delay_ms);
}
