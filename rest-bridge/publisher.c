/*
 * publisher.c - events of many HTTP requests multiplexed onto a few
 * PublishStream calls; see publisher.h.
 *
 * A lane owns its current stream (a `pstream`, one call) under the lane's
 * lock. A stream keeps two FIFOs: `unsent` (queued) and `sent` (written,
 * awaiting their answer, in order). One SEND_MESSAGE and one RECV_MESSAGE
 * are in flight at a time (the core allows no more), each started again
 * from the previous one's completion; a send carries GRPC_WRITE_BUFFER_HINT
 * only when another event is queued behind it, so the last one always
 * flushes. RECV_STATUS_ON_CLIENT runs from the start and ends the stream.
 *
 * Invariants: every queued event gets its callback exactly once (an answer,
 * or the stream's failure once the stream ended and no receive is pending,
 * so an answer already on its way is never reported as a failure); a stream
 * is freed once it ended and none of its batches is in flight; callbacks
 * run without the lane's lock.
 */
#include "publisher.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define METHOD                       TSE_RPC_SERVICE "PublishStream"

typedef Tracseq__Events__V1__PublishResponse PublishResponse;

typedef struct item {
    struct item *next;
    grpc_byte_buffer *msg;
    int64_t queued_ms;
    tse_publish_cb cb;
    void *arg;
    size_t index;
    PublishResponse *resp; /* once answered */
} item;

typedef struct queue {
    item *head, *tail;
} queue;

typedef struct lane lane;

typedef struct pstream {
    lane *lane;
    grpc_call *call;
    tse_rpc_tag send_tag, recv_tag, status_tag;
    int ops; /* batches in flight */
    bool sending, receiving, got_md, ended, dead;
    grpc_byte_buffer *sending_msg, *recv_buf;
    queue unsent, sent;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
} pstream;

struct lane {
    pthread_mutex_t lock;
    tse_publisher *p;
    pstream *cur; /* NULL: the next event opens a stream */
};

struct tse_publisher {
    tse_rpc *rpc;
    int timeout_ms;
    atomic_size_t next;
    atomic_bool closed;
    size_t nlanes;
    lane lanes[];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- FIFOs ---- */

static void push(queue *q, item *it)
{
    it->next = NULL;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
}

static item *pop(queue *q)
{
    item *it = q->head;

    if (it != NULL) {
        q->head = it->next;
        if (q->head == NULL)
            q->tail = NULL;
        it->next = NULL;
    }
    return it;
}

static void append(queue *dst, queue *src)
{
    item *it;

    while ((it = pop(src)) != NULL)
        push(dst, it);
}

/* Runs and frees the callbacks of done items (no lock held). */
static void deliver(queue *done, const tse_rpc_status *failure)
{
    static const tse_rpc_status ok = {.code = GRPC_STATUS_OK};
    item *it;

    while ((it = pop(done)) != NULL) {
        it->cb(it->arg, it->index, it->resp ? &ok : failure, it->resp);
        if (it->msg)
            grpc_byte_buffer_destroy(it->msg);
        free(it);
    }
}

/* ---- one stream (under its lane's lock) ---- */

static void stream_free(pstream *s)
{
    if (s->call)
        grpc_call_unref(s->call);
    if (s->sending_msg)
        grpc_byte_buffer_destroy(s->sending_msg);
    if (s->recv_buf)
        grpc_byte_buffer_destroy(s->recv_buf);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    free(s);
}

/* Stops taking events: the lane's next event opens another stream. */
static void retire(pstream *s)
{
    s->dead = true;
    if (s->lane->cur == s)
        s->lane->cur = NULL;
}

static void kick_send(pstream *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    item *it;

    if (s->sending || s->ended || s->unsent.head == NULL)
        return;
    it = pop(&s->unsent);
    push(&s->sent, it);
    s->sending_msg = it->msg;
    it->msg = NULL;
    op.flags = s->unsent.head ? GRPC_WRITE_BUFFER_HINT : 0;
    op.data.send_message.send_message = s->sending_msg;
    if (tse_rpc_batch(s->call, &op, 1, &s->send_tag)) {
        s->sending = true;
        s->ops++;
    } else {
        grpc_call_cancel(s->call, NULL); /* the status fails what is queued */
        retire(s);
    }
}

static void kick_recv(pstream *s)
{
    grpc_op ops[2];
    size_t n = 0;

    if (s->receiving || s->ended || s->sent.head == NULL)
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
    } else {
        grpc_call_cancel(s->call, NULL);
        retire(s);
    }
}

/* After the status, once no answer can still arrive: fail the rest. */
static void fail_rest(pstream *s, queue *done, tse_rpc_status *failure)
{
    if (!s->ended || s->receiving)
        return;
    tse_rpc_status_set(failure, s->code, s->details);
    if (failure->code == GRPC_STATUS_OK) {
        failure->code = GRPC_STATUS_UNAVAILABLE;
        snprintf(failure->details, sizeof(failure->details),
                 "the publish stream ended before answering");
    }
    append(done, &s->sent);
    append(done, &s->unsent);
}

/* Ends a completion: frees the stream when it is over, then runs callbacks. */
static void finish(pstream *s, queue *done, const tse_rpc_status *failure)
{
    lane *l = s->lane;
    bool over = s->ended && s->ops == 0;

    pthread_mutex_unlock(&l->lock);
    if (over)
        stream_free(s);
    deliver(done, failure);
}

static void on_send(tse_rpc_tag *tag, bool ok)
{
    pstream *s = CONTAINER(tag, pstream, send_tag);
    tse_rpc_status failure = {.code = GRPC_STATUS_UNAVAILABLE};
    queue done = {0};

    pthread_mutex_lock(&s->lane->lock);
    s->ops--;
    s->sending = false;
    if (s->sending_msg)
        grpc_byte_buffer_destroy(s->sending_msg);
    s->sending_msg = NULL;
    if (ok) {
        kick_send(s);
        kick_recv(s);
    } else {
        retire(s); /* the status will say why */
    }
    finish(s, &done, &failure);
}

static void on_recv(tse_rpc_tag *tag, bool ok)
{
    pstream *s = CONTAINER(tag, pstream, recv_tag);
    tse_rpc_status failure = {.code = GRPC_STATUS_UNAVAILABLE};
    queue done = {0};
    item *it;

    pthread_mutex_lock(&s->lane->lock);
    s->ops--;
    s->receiving = false;
    if (ok && s->recv_buf != NULL) {
        PublishResponse *resp = (PublishResponse *)tse_rpc_decode(
            s->recv_buf, &tracseq__events__v1__publish_response__descriptor);
        grpc_byte_buffer_destroy(s->recv_buf);
        s->recv_buf = NULL;
        if ((it = pop(&s->sent)) != NULL) {
            it->resp = resp;
            push(&done, it);
        } else if (resp != NULL) {
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        if (resp == NULL) { /* cannot tell answers apart any more */
            failure.code = GRPC_STATUS_INTERNAL;
            snprintf(failure.details, sizeof(failure.details),
                     "an answer of the service did not decode");
            grpc_call_cancel_with_status(s->call, failure.code, failure.details, NULL);
            retire(s);
        }
        kick_recv(s);
    } else {
        retire(s);
    }
    fail_rest(s, &done, &failure);
    finish(s, &done, &failure);
}

static void on_status(tse_rpc_tag *tag, bool ok)
{
    pstream *s = CONTAINER(tag, pstream, status_tag);
    tse_rpc_status failure = {.code = GRPC_STATUS_UNAVAILABLE};
    queue done = {0};

    pthread_mutex_lock(&s->lane->lock);
    s->ops--;
    s->ended = true;
    retire(s);
    fail_rest(s, &done, &failure);
    finish(s, &done, &failure);
}

/* Opens a stream on l (lock held); NULL when the core refused. */
static pstream *stream_open(lane *l)
{
    pstream *s = calloc(1, sizeof(*s));
    grpc_op op;

    if (s == NULL)
        return NULL;
    s->lane = l;
    s->send_tag.fn = on_send;
    s->recv_tag.fn = on_recv;
    s->status_tag.fn = on_status;
    s->details = grpc_empty_slice();
    s->code = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->call = tse_rpc_call_new(l->p->rpc, METHOD, 0);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    op.data.recv_status_on_client.status = &s->code;
    op.data.recv_status_on_client.status_details = &s->details;
    if (s->call == NULL || !tse_rpc_batch(s->call, &op, 1, &s->status_tag)) {
        stream_free(s);
        return NULL;
    }
    s->ops++;
    /* The metadata goes alone: a hinted first message beside it would
     * never be written. The send chain starts from its completion. */
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    if (tse_rpc_batch(s->call, &op, 1, &s->send_tag)) {
        s->sending = true;
        s->ops++;
    } else {
        grpc_call_cancel(s->call, NULL);
        s->dead = true;
    }
    return s;
}

/* ---- the publisher ---- */

/* Fails a lane's stream whose oldest event waited longer than the timeout. */
static void tick(void *arg, int64_t now)
{
    tse_publisher *p = arg;

    for (size_t i = 0; i < p->nlanes; i++) {
        lane *l = &p->lanes[i];
        pthread_mutex_lock(&l->lock);
        pstream *s = l->cur;
        item *oldest = s ? (s->sent.head ? s->sent.head : s->unsent.head) : NULL;
        if (oldest != NULL && now - oldest->queued_ms > p->timeout_ms) {
            grpc_call_cancel_with_status(s->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                         "the event service did not answer in time", NULL);
            retire(s);
        }
        pthread_mutex_unlock(&l->lock);
    }
}

tse_publisher *tse_publisher_create(tse_rpc *r, int lanes, int timeout_ms)
{
    tse_publisher *p = calloc(1, sizeof(*p) + (size_t)lanes * sizeof(lane));

    if (p == NULL)
        return NULL;
    p->rpc = r;
    p->timeout_ms = timeout_ms;
    p->nlanes = (size_t)lanes;
    for (size_t i = 0; i < p->nlanes; i++) {
        pthread_mutex_init(&p->lanes[i].lock, NULL);
        p->lanes[i].p = p;
    }
    tse_rpc_add_tick(r, tick, p);
    return p;
}

/* The events as queued items; false when out of memory. */
static bool make_items(Tracseq__Events__V1__Event *const *events, size_t n, tse_publish_cb cb,
                       void *arg, queue *q)
{
    int64_t now = now_ms();

    for (size_t i = 0; i < n; i++) {
        Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        item *it = calloc(1, sizeof(*it));
        if (it == NULL)
            return false;
        req.event = events[i];
        it->msg = tse_rpc_encode(&req.base);
        it->queued_ms = now;
        it->cb = cb;
        it->arg = arg;
        it->index = i;
        push(q, it);
    }
    return true;
}

static void drop_items(queue *q)
{
    item *it;

    while ((it = pop(q)) != NULL) {
        grpc_byte_buffer_destroy(it->msg);
        free(it);
    }
}

bool tse_publisher_submit(tse_publisher *p, Tracseq__Events__V1__Event *const *events, size_t n,
                          tse_publish_cb cb, void *arg)
{
    lane *l = &p->lanes[atomic_fetch_add(&p->next, 1) % p->nlanes];
    queue q = {0};
    pstream *s;

    if (n == 0 || atomic_load(&p->closed) || !make_items(events, n, cb, arg, &q)) {
        drop_items(&q);
        return false;
    }
    pthread_mutex_lock(&l->lock);
    if ((s = l->cur) == NULL && (s = l->cur = stream_open(l)) == NULL) {
        pthread_mutex_unlock(&l->lock);
        drop_items(&q);
        return false;
    }
    append(&s->unsent, &q);
    kick_send(s);
    pthread_mutex_unlock(&l->lock);
    return true;
}

void tse_publisher_cancel(tse_publisher *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->closed, true);
    for (size_t i = 0; i < p->nlanes; i++) {
        lane *l = &p->lanes[i];
        pthread_mutex_lock(&l->lock);
        if (l->cur != NULL) {
            grpc_call_cancel_with_status(l->cur->call, GRPC_STATUS_UNAVAILABLE,
                                         "the REST bridge is shutting down", NULL);
            retire(l->cur);
        }
        pthread_mutex_unlock(&l->lock);
    }
}

void tse_publisher_destroy(tse_publisher *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nlanes; i++)
        pthread_mutex_destroy(&p->lanes[i].lock);
    free(p);
}
