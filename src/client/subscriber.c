/*
 * subscriber.c - a Subscribe stream with a callback per delivery, acks,
 * and reconnection with backoff.
 *
 * Threading: one thread (the caller of run, or the subscriber's own) drains
 * the subscriber's completion queue and runs the callback. Acks may come
 * from any thread: they are queued under `mu` and sent one message at a
 * time, each send chained from the previous one's completion (one
 * SEND_MESSAGE in flight per call). Every grpc_call_start_batch on the call
 * happens under `mu`, and `batches` (batches started, not yet completed)
 * too, so the draining thread knows when the call may be released.
 *
 * Stopping only sets an atomic flag, which the draining thread checks at
 * least every TICK_MS: then it cancels the call, drains it and returns.
 * A cancel makes the server drop stream messages it has not read yet, so
 * acks sent shortly before it may be lost: after the stream ended, the
 * last RECENT_ACKS ack ids sent on it and those still queued are acked
 * once more with the unary Acknowledge (acking twice is harmless), so an
 * event the callback handled before stop does not come back.
 *
 * Invariants: acks queued for a stream that broke are dropped (the server
 * redelivers those events: at-least-once); the subscription exists before
 * the first stream opens (create checks it), so a reconnection joins it by
 * name.
 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

#define EXPORT __attribute__((visibility("default")))

#define TICK_MS     100
#define MAX_PER_MSG 512  /* ack ids in one SubscribeRequest */
#define RECENT_ACKS 1024 /* ack ids sent on the stream, acked again at stop */

typedef enum op_kind { OP_ACK, OP_NACK, OP_EXTEND } op_kind;

/* One queued ack / nack / extend. */
typedef struct pending_op {
    struct pending_op *next;
    op_kind kind;
    uint32_t ms;
    char ack_id[];
} pending_op;

typedef enum tag_kind { TAG_SEND, TAG_RECV, TAG_STATUS } tag_kind;

typedef struct tag {
    tag_kind kind;
} tag;

struct tse_client_subscriber {
    tse_client *client;
    char *subscription;
    char *consumer_name;
    tse_client_ack_mode mode;
    tse_client_delivery_cb cb;
    void *cb_arg;
    atomic_bool stop;
    atomic_uint_fast64_t delivered;
    pthread_t thread;
    bool started, joined, ran;
    tse_client_status final;
    tse_client_error final_err;
    grpc_completion_queue *cq;

    pthread_mutex_t mu; /* guards the fields below */
    grpc_call *call;    /* the open stream, or NULL */
    int batches;
    bool send_pending, ending;
    grpc_byte_buffer *send_buf;
    pending_op *head, *tail;
    char *recent[RECENT_ACKS]; /* ring of the last ack ids sent */
    size_t recent_next;

    /* What the current call's ops point into (draining thread only). */
    tag t_send, t_recv, t_status;
    grpc_metadata md[1];
    grpc_metadata_array initial_md, trailing_md;
    grpc_byte_buffer *recv_buf;
    grpc_status_code code;
    grpc_slice details;
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
    s->recent[s->recent_next] = strdup(ack_id);
    s->recent_next = (s->recent_next + 1) % RECENT_ACKS;
}

/* Packs the queue's first run of same-kind ops into one request. */
static grpc_byte_buffer *take_request_locked(tse_client_subscriber *s)
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
    grpc_slice slice;
    grpc_byte_buffer *bb;

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
    slice = grpc_slice_malloc(protobuf_c_message_get_packed_size(&req.base));
    protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    for (size_t i = 0; i < n; i++)
        free(taken[i]);
    return bb;
}

static bool batch_locked(tse_client_subscriber *s, const grpc_op *ops, size_t n, tag *t)
{
    if (grpc_call_start_batch(s->call, ops, n, t, NULL) != GRPC_CALL_OK) {
        grpc_call_cancel(s->call, NULL);
        return false;
    }
    s->batches++;
    return true;
}

static void try_send_locked(tse_client_subscriber *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};

    if (s->call == NULL || s->send_pending || s->ending || s->head == NULL)
        return;
    s->send_buf = take_request_locked(s);
    op.data.send_message.send_message = s->send_buf;
    s->send_pending = batch_locked(s, &op, 1, &s->t_send);
    if (!s->send_pending) {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
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
    if (s->call == NULL || s->ending) {
        free(o);
        st = TSE_CLIENT_UNAVAILABLE; /* the delivery comes back */
    } else {
        if (s->tail != NULL)
            s->tail->next = o;
        else
            s->head = o;
        s->tail = o;
        try_send_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ============================== one stream ================================ */

static grpc_byte_buffer *first_request(const tse_client_subscriber *s)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    grpc_slice slice;
    grpc_byte_buffer *bb;

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = s->subscription;
    req.consumer_name = s->consumer_name != NULL ? s->consumer_name : "";
    slice = grpc_slice_malloc(protobuf_c_message_get_packed_size(&req.base));
    protobuf_c_message_pack(&req.base, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

static void request_recv_locked(tse_client_subscriber *s, bool with_md)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (with_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv_buf;
    batch_locked(s, ops, n, &s->t_recv);
}

/* Starts a call: metadata + the first request, the status, the first
 * receive. */
static void stream_open(tse_client_subscriber *s)
{
    grpc_op ops[2];
    size_t n_md;

    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_OK;
    memset(ops, 0, sizeof(ops));
    tse_client_call_metadata(s->client, s->md, &n_md);
    pthread_mutex_lock(&s->mu);
    ops_clear_locked(s);
    s->ending = false;
    s->call = tse_client_new_call(s->client, s->cq, TSE_CLIENT_METHOD("Subscribe"),
                                  gpr_inf_future(GPR_CLOCK_MONOTONIC));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = s->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    s->send_buf = first_request(s);
    ops[1].data.send_message.send_message = s->send_buf;
    s->send_pending = batch_locked(s, ops, 2, &s->t_send);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[0].data.recv_status_on_client.status = &s->code;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    batch_locked(s, ops, 1, &s->t_status);
    request_recv_locked(s, true);
    pthread_mutex_unlock(&s->mu);
}

/* Hands one delivery to the callback, then acks it in ACK_AUTO mode. */
static void deliver(tse_client_subscriber *s, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    tse_client_decoded d;
    tse_client_delivery h = {s, NULL, false};
    grpc_slice all;

    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return;
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    /* An undecodable delivery is not acked: it comes back, then goes to the
     * dead-letter stream after the subscription's max attempts. */
    if (tse_client_delivery_decode(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), &d, NULL) ==
        TSE_CLIENT_OK) {
        h.ack_id = d.view.ack_id;
        s->cb(s->cb_arg, &d.view, &h);
        atomic_fetch_add(&s->delivered, 1);
        if (s->mode == TSE_CLIENT_ACK_AUTO && !h.settled)
            enqueue(s, OP_ACK, d.view.ack_id, 0);
        tse_client_decoded_cleanup(&d);
    }
    grpc_slice_unref(all);
}

static void on_event(tse_client_subscriber *s, tag *t, bool ok, bool *got_delivery)
{
    grpc_byte_buffer *bb;

    switch (t->kind) {
    case TAG_SEND:
        pthread_mutex_lock(&s->mu);
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
        s->send_pending = false;
        if (ok)
            try_send_locked(s);
        pthread_mutex_unlock(&s->mu);
        break;
    case TAG_RECV:
        bb = s->recv_buf;
        s->recv_buf = NULL;
        if (ok && bb != NULL) {
            *got_delivery = true;
            if (!atomic_load(&s->stop))
                deliver(s, bb);
            grpc_byte_buffer_destroy(bb);
            pthread_mutex_lock(&s->mu);
            request_recv_locked(s, false);
            pthread_mutex_unlock(&s->mu);
        }
        break;
    case TAG_STATUS:
        pthread_mutex_lock(&s->mu);
        s->ending = true; /* no new sends; queued acks are dropped */
        pthread_mutex_unlock(&s->mu);
        break;
    }
}

/* Runs one stream until it ended and every batch completed; returns its
 * status (CANCELLED after stop). */
static tse_client_status stream_run(tse_client_subscriber *s, bool *got_delivery,
                                    tse_client_error *err)
{
    bool cancelled = false;
    tse_client_status st;
    grpc_call *call;

    stream_open(s);
    for (;;) {
        grpc_event ev;
        int left;

        pthread_mutex_lock(&s->mu);
        left = s->batches;
        pthread_mutex_unlock(&s->mu);
        if (left == 0)
            break;
        if (atomic_load(&s->stop) && !cancelled) {
            grpc_call_cancel(s->call, NULL);
            cancelled = true;
        }
        ev = grpc_completion_queue_next(s->cq, tse_client_deadline(TICK_MS), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        on_event(s, ev.tag, ev.success != 0, got_delivery);
        pthread_mutex_lock(&s->mu);
        s->batches--;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    call = s->call;
    s->call = NULL;
    if (atomic_load(&s->stop))
        for (pending_op *o = s->head; o != NULL; o = o->next)
            if (o->kind == OP_ACK)
                remember_locked(s, o->ack_id);
    ops_clear_locked(s);
    pthread_mutex_unlock(&s->mu);
    grpc_call_unref(call);
    st = tse_client_from_grpc_error(s->code, (const char *)GRPC_SLICE_START_PTR(s->details),
                                    GRPC_SLICE_LENGTH(s->details), err);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    return st;
}

/* ============================== the loop ================================== */

/* Errors that no reconnection can fix. */
static bool fatal(tse_client_status st)
{
    switch (st) {
    case TSE_CLIENT_NOT_FOUND:
    case TSE_CLIENT_INVALID_ARGUMENT:
    case TSE_CLIENT_ALREADY_EXISTS:
    case TSE_CLIENT_FAILED_PRECONDITION:
    case TSE_CLIENT_PERMISSION_DENIED:
    case TSE_CLIENT_UNAUTHENTICATED:
    case TSE_CLIENT_UNIMPLEMENTED: return true;
    default: return false;
    }
}

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
        if (fatal(st)) {
            if (err != NULL)
                *err = e;
            return st;
        }
        if (got)
            backoff = o->reconnect_initial_ms;
        tse_client_sleep_ms(backoff, &s->stop);
        backoff = backoff * 2 < o->reconnect_max_ms ? backoff * 2 : o->reconnect_max_ms;
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

    if (s == NULL)
        return NULL;
    s->client = c;
    s->mode = o->ack_mode;
    s->t_send.kind = TAG_SEND;
    s->t_recv.kind = TAG_RECV;
    s->t_status.kind = TAG_STATUS;
    pthread_mutex_init(&s->mu, NULL);
    s->subscription = strdup(o->subscription);
    s->consumer_name = o->consumer_name != NULL ? strdup(o->consumer_name) : NULL;
    s->cq = grpc_completion_queue_create_for_next(NULL);
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
    if ((st = check_subscription(client, options, err)) != TSE_CLIENT_OK)
        return st;
    if ((s = subscriber_alloc(client, options)) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    s->cb = cb;
    s->cb_arg = cb_arg;
    *out = s;
    return TSE_CLIENT_OK;
}

EXPORT tse_client_status tse_client_subscriber_run(tse_client_subscriber *sub,
                                                   tse_client_error *err)
{
    tse_client_error_clear(err);
    if (sub == NULL || sub->ran)
        return tse_client_fail(err, TSE_CLIENT_FAILED_PRECONDITION, -1, NULL,
                               "a subscriber runs once");
    sub->ran = true;
    return run_loop(sub, err);
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
    tse_client_error_clear(err);
    if (sub == NULL || sub->ran)
        return tse_client_fail(err, TSE_CLIENT_FAILED_PRECONDITION, -1, NULL,
                               "a subscriber runs once");
    sub->ran = true;
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
    grpc_event ev;

    if (sub == NULL)
        return;
    tse_client_subscriber_stop(sub);
    if (sub->started)
        tse_client_subscriber_wait(sub, NULL);
    if (sub->cq != NULL) {
        grpc_completion_queue_shutdown(sub->cq);
        do
            ev = grpc_completion_queue_next(sub->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        while (ev.type != GRPC_QUEUE_SHUTDOWN);
        grpc_completion_queue_destroy(sub->cq);
    }
    pthread_mutex_lock(&sub->mu);
    ops_clear_locked(sub);
    for (size_t i = 0; i < RECENT_ACKS; i++)
        free(sub->recent[i]);
    pthread_mutex_unlock(&sub->mu);
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
