/*
 * stream.c - asynchronous streaming calls with encoded messages: the first
 * request at the start, more with send, every response to a handler, flow
 * control (pause), cancel, and the end reported once, last; on the
 * client's shared queue (the pump thread of publisher.c).
 *
 * One object per stream owns everything its ops point into. One send and
 * one receive are in flight at a time (the core allows no more), each
 * started again from the previous one's completion: sends from a FIFO of
 * queued messages (then the half-close, once asked for and the FIFO is
 * empty), receives unless paused. Following measured.md, a message that is
 * not the stream's first and has another queued behind it goes with
 * GRPC_WRITE_BUFFER_HINT: the next send, already committed, flushes it, so
 * a run of queued messages is written at once. Handlers run on the pump thread
 * without the stream's lock, so they may send, pause or cancel; `receiving`
 * stays set while on_message runs, so a resume from another thread never
 * starts a second receive. The end runs once the status arrived and no
 * batch is in flight, so it follows every on_message. References: the
 * stream's own, dropped after on_end returned, and the caller's handle.
 * While it runs the stream is on the client's list (under calls_mu) so
 * that destroy can cancel it; it leaves the list before on_end. A unary
 * call (call.c) is one batch of all its ops instead: one completion, its
 * response handed over before the end.
 */
#include <grpc/byte_buffer_reader.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/tsan.h"

#define EXPORT __attribute__((visibility("default")))

typedef struct stag {
    tse_client_tag base; /* first: the batch's tag */
    struct tse_client_stream *s;
} stag;

typedef struct outmsg {
    struct outmsg *next;
    grpc_byte_buffer *bb;
} outmsg;

struct tse_client_stream {
    tse_client *client;
    grpc_call *call;
    atomic_int refs;
    struct tse_client_stream *prev, *next; /* the client's list */
    tse_client_stream_handlers h;
    void (*on_drained)(void *arg);
    void *arg;
    grpc_metadata *md;
    size_t n_md;

    pthread_mutex_t mu; /* the fields below */
    stag t_send, t_recv, t_status;
    int batches; /* in flight */
    bool sending, receiving, paused, got_md, status_done, ended;
    bool closing;     /* no request after the queued ones: half-close then */
    bool cancelled;   /* the caller cancelled (tse_client_stream_cancel) */
    bool closed;      /* the half-close was started */
    long long n_sent; /* messages started */
    outmsg *out_head, *out_tail;
    tse_client_call_io io;
};

/* ============================== setup ===================================== */

static bool metadata_fill(const tse_client *c, const tse_client_call_options *o, grpc_metadata **md,
                          size_t *n_md)
{
    bool own_auth = false;
    grpc_metadata *m = calloc(o->n_metadata + 1, sizeof(*m));
    size_t n = 0;

    if (m == NULL)
        return false;
    for (; n < o->n_metadata; n++) {
        m[n].key = grpc_slice_from_copied_string(o->metadata[n].key);
        m[n].value = grpc_slice_from_copied_string(o->metadata[n].value);
        own_auth |= strcmp(o->metadata[n].key, "authorization") == 0;
    }
    if (!own_auth && c->authorization != NULL) {
        m[n].key = grpc_slice_from_static_string("authorization");
        m[n++].value = grpc_slice_from_copied_string(c->authorization);
    }
    *md = m;
    *n_md = n;
    return true;
}

static void metadata_free(grpc_metadata *md, size_t n_md)
{
    for (size_t i = 0; i < n_md; i++) {
        grpc_slice_unref(md[i].key);
        grpc_slice_unref(md[i].value);
    }
    free(md);
}

static tse_client_status check_call(const tse_client *client, const char *method,
                                    const void *request, size_t len,
                                    const tse_client_call_options *o, tse_client_error *err)
{
    if (client == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "client", "client is NULL");
    if (method == NULL || method[0] != '/')
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "method",
                               "method must be a full path, e.g. "
                               "/tracseq.events.v1.EventService/GetStats");
    if (request == NULL && len > 0)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "request", "request is NULL");
    for (size_t i = 0; i < o->n_metadata; i++)
        if (o->metadata == NULL || o->metadata[i].key == NULL || o->metadata[i].key[0] == '\0' ||
            o->metadata[i].value == NULL)
            return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "metadata",
                                   "metadata entry %zu needs a non-empty key and a value", i);
    return TSE_CLIENT_OK;
}

static grpc_call *call_create(tse_client *c, grpc_channel *channel, grpc_completion_queue *cq,
                              const char *method, int timeout_ms)
{
    int timeout = timeout_ms == 0 ? c->opt.timeout_ms : timeout_ms;
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(
        channel != NULL ? channel : tse_client_pick_channel(c), NULL, GRPC_PROPAGATE_DEFAULTS, cq,
        m, NULL, tse_client_deadline(timeout < 0 ? -1 : timeout), NULL);

    grpc_slice_unref(m);
    return call;
}

/* ============================== lifetime ================================== */

static void stream_free(tse_client_stream *s)
{
    outmsg *m;

    while ((m = s->out_head) != NULL) {
        s->out_head = m->next;
        grpc_byte_buffer_destroy(m->bb);
        free(m);
    }
    if (s->call != NULL)
        grpc_call_unref(s->call);
    tse_client_call_io_cleanup(&s->io);
    metadata_free(s->md, s->n_md);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void unref(tse_client_stream *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1)
        stream_free(s);
}

static void list_add(tse_client_stream *s)
{
    tse_client *c = s->client;

    pthread_mutex_lock(&c->calls_mu);
    s->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = s;
    c->streams = s;
    pthread_mutex_unlock(&c->calls_mu);
}

static void list_remove(tse_client_stream *s)
{
    tse_client *c = s->client;

    pthread_mutex_lock(&c->calls_mu);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&c->calls_mu);
}

/* ============================== batches (under mu) ======================== */

static bool batch_locked(tse_client_stream *s, const grpc_op *ops, size_t n, stag *t)
{
    tse_tsan_release(t); /* the pump gets it back: common/tsan.h */
    if (grpc_call_start_batch(s->call, ops, n, t, NULL) != GRPC_CALL_OK) {
        grpc_call_cancel(s->call, NULL);
        return false;
    }
    s->batches++;
    return true;
}

/* The next queued request, or the half-close once none is left. */
static void kick_send_locked(tse_client_stream *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    outmsg *m = s->out_head;

    if (s->sending || s->status_done || s->closed)
        return;
    if (m == NULL) {
        if (s->closing) {
            op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
            s->closed = true;
            s->sending = batch_locked(s, &op, 1, &s->t_send);
        }
        return;
    }
    s->out_head = m->next;
    if (s->out_head == NULL)
        s->out_tail = NULL;
    s->io.send_buf = m->bb;
    free(m);
    /* Another request is queued behind this one and goes out as soon as
     * this completes: it may wait in gRPC's write buffer until then, so a
     * burst of sends shares writes. The last one queued flushes them; a stream's first is never
     * hinted (beside the initial metadata it would never be written). */
    if (s->n_sent > 0 && s->out_head != NULL)
        op.flags = GRPC_WRITE_BUFFER_HINT;
    op.data.send_message.send_message = s->io.send_buf;
    s->sending = batch_locked(s, &op, 1, &s->t_send);
    s->n_sent += s->sending;
}

static void kick_recv_locked(tse_client_stream *s)
{
    grpc_op ops[2];
    size_t n = 0;

    if (s->receiving || s->paused || s->status_done)
        return;
    memset(ops, 0, sizeof(ops));
    if (!s->got_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->io.initial_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->io.recv_buf;
    s->receiving = batch_locked(s, ops, n, &s->t_recv);
    s->got_md |= s->receiving;
}

/* Unlocks s; once the status came and nothing is in flight, the end. */
static void settle_unlock(tse_client_stream *s)
{
    tse_client_error err;
    tse_client_status st;

    if (!s->status_done || s->batches > 0 || s->receiving || s->ended) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->ended = true;
    st = tse_client_call_io_status(&s->io, &err);
    pthread_mutex_unlock(&s->mu);
    list_remove(s);
    s->h.on_end(s->arg, st, st == TSE_CLIENT_OK ? NULL : &err);
    unref(s);
}

/* ============================== completions (pump thread) ================= */

static void on_send(tse_client_tag *tag, bool ok)
{
    tse_client_stream *s = ((stag *)tag)->s;
    bool drained;

    pthread_mutex_lock(&s->mu);
    s->batches--;
    s->sending = false;
    if (s->io.send_buf != NULL)
        grpc_byte_buffer_destroy(s->io.send_buf);
    s->io.send_buf = NULL;
    if (ok)
        kick_send_locked(s);
    drained = ok && !s->sending && !s->status_done && !s->closing && s->on_drained != NULL;
    if (drained) {
        /* Only this thread ends the stream (settle_unlock), so it outlives
         * the handler. */
        pthread_mutex_unlock(&s->mu);
        s->on_drained(s->arg);
        pthread_mutex_lock(&s->mu);
    }
    settle_unlock(s);
}

EXPORT bool tse_client_stream_busy(tse_client_stream *s)
{
    bool busy;

    pthread_mutex_lock(&s->mu);
    /* Not the initial metadata alone: a message queued behind it goes
     * out with it. */
    busy = (s->sending && s->n_sent > 0) || s->out_head != NULL;
    pthread_mutex_unlock(&s->mu);
    return busy;
}

/* Hands one message to on_message, unlocked. */
static void deliver_unlocked(tse_client_stream *s, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    grpc_slice all;

    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        grpc_call_cancel_with_status(s->call, tse_client_grpc_from_status(TSE_CLIENT_INTERNAL),
                                     "unreadable message", NULL);
        return;
    }
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    s->h.on_message(s->arg, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
    grpc_slice_unref(all);
}

static void on_recv(tse_client_tag *tag, bool ok)
{
    tse_client_stream *s = ((stag *)tag)->s;
    grpc_byte_buffer *bb;

    pthread_mutex_lock(&s->mu);
    s->batches--;
    bb = s->io.recv_buf;
    s->io.recv_buf = NULL;
    if (ok && bb != NULL) {
        pthread_mutex_unlock(&s->mu);
        deliver_unlocked(s, bb);
        grpc_byte_buffer_destroy(bb);
        pthread_mutex_lock(&s->mu);
    }
    s->receiving = false;
    if (ok && bb != NULL)
        kick_recv_locked(s);
    settle_unlock(s);
}

static void on_status(tse_client_tag *tag, bool ok)
{
    tse_client_stream *s = ((stag *)tag)->s;

    (void)ok;
    pthread_mutex_lock(&s->mu);
    s->batches--;
    s->status_done = true;
    settle_unlock(s);
}

/* The one batch of a unary call ended: its response (if any), then the
 * status, so the end follows the message as for a stream. */
static void on_unary(tse_client_tag *tag, bool ok)
{
    tse_client_stream *s = ((stag *)tag)->s;
    grpc_byte_buffer *bb;

    (void)ok;
    pthread_mutex_lock(&s->mu);
    s->batches--;
    grpc_byte_buffer_destroy(s->io.send_buf);
    s->io.send_buf = NULL;
    bb = s->io.recv_buf;
    s->io.recv_buf = NULL;
    pthread_mutex_unlock(&s->mu);
    if (bb != NULL) {
        deliver_unlocked(s, bb);
        grpc_byte_buffer_destroy(bb);
    }
    pthread_mutex_lock(&s->mu);
    s->status_done = true;
    settle_unlock(s);
}

/* ============================== public API ================================ */

/* A unary call (call.c) in one batch, as gRPC's own unary callers do: one
 * completion per call instead of four. */
static bool open_unary_locked(tse_client_stream *s, grpc_byte_buffer *request)
{
    grpc_op ops[6];

    tse_client_unary_ops(&s->io, s->md, s->n_md, request, ops);
    s->t_status.base.done = on_unary;
    s->closing = s->closed = s->got_md = true;
    return batch_locked(s, ops, 6, &s->t_status); /* on failure s frees request */
}

/* The status, then the metadata with the first message, then receiving.
 * Without a first message the metadata goes alone. */
static bool open_locked(tse_client_stream *s, grpc_byte_buffer *first, bool close)
{
    grpc_op ops[3];

    if (close)
        return open_unary_locked(s, first);
    s->io.send_buf = first; /* freed with s if nothing starts */
    tse_client_status_op(&s->io, &ops[0]);
    if (!batch_locked(s, ops, 1, &s->t_status))
        return false;
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = s->n_md;
    ops[0].data.send_initial_metadata.metadata = s->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = first;
    s->sending = batch_locked(s, ops, first == NULL ? 1 : 2, &s->t_send);
    s->n_sent = first != NULL && s->sending;
    kick_recv_locked(s);
    return true;
}

static tse_client_stream *stream_new(tse_client *client, const tse_client_stream_handlers *h,
                                     void *arg)
{
    tse_client_stream *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->client = client;
    s->h = *h;
    s->arg = arg;
    s->t_send = (stag){{on_send}, s};
    s->t_recv = (stag){{on_recv}, s};
    s->t_status = (stag){{on_status}, s};
    tse_client_call_io_init(&s->io);
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

tse_client_status tse_client_stream_open(tse_client *client, const char *method, const void *first,
                                         size_t len, const tse_client_call_options *options,
                                         const tse_client_stream_handlers *handlers, void *arg,
                                         const tse_client_stream_how *how, tse_client_stream **out,
                                         tse_client_error *err)
{
    static const tse_client_call_options none = {0};
    const tse_client_call_options *o = options != NULL ? options : &none;
    grpc_completion_queue *cq;
    tse_client_stream *s;
    tse_client_status st;
    grpc_byte_buffer *bb = NULL;
    bool ok;

    tse_client_error_clear(err);
    if (handlers == NULL || handlers->on_message == NULL || handlers->on_end == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "handlers",
                               "both handlers are required");
    if ((st = check_call(client, method, first, len, o, err)) != TSE_CLIENT_OK)
        return st;
    if ((cq = tse_client_queue(client)) == NULL || (s = stream_new(client, handlers, arg)) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    if (!metadata_fill(client, o, &s->md, &s->n_md) ||
        (s->call = call_create(client, how->channel, cq, method, o->timeout_ms)) == NULL) {
        stream_free(s);
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    }
    atomic_init(&s->refs, out != NULL ? 2 : 1);
    s->on_drained = how->on_drained;
    if (!how->no_first) {
        grpc_slice bytes = grpc_slice_from_copied_buffer(first, len);

        bb = grpc_raw_byte_buffer_create(&bytes, 1);
        grpc_slice_unref(bytes);
    }
    list_add(s);
    pthread_mutex_lock(&s->mu);
    ok = open_locked(s, bb, how->close);
    pthread_mutex_unlock(&s->mu);
    if (!ok) {
        list_remove(s);
        stream_free(s);
        return tse_client_fail(err, TSE_CLIENT_INTERNAL, -1, NULL, "cannot start the stream");
    }
    if (out != NULL)
        *out = s;
    return TSE_CLIENT_OK;
}

EXPORT tse_client_status tse_client_stream_start(tse_client *client, const char *method,
                                                 const void *first, size_t len,
                                                 const tse_client_call_options *options,
                                                 const tse_client_stream_handlers *handlers,
                                                 void *arg, tse_client_stream **out,
                                                 tse_client_error *err)
{
    static const tse_client_stream_how how = {0};

    return tse_client_stream_open(client, method, first, len, options, handlers, arg, &how, out,
                                  err);
}

EXPORT tse_client_status tse_client_stream_send(tse_client_stream *s, const void *msg, size_t len)
{
    grpc_slice bytes;
    tse_client_status st;

    if (s == NULL || (msg == NULL && len > 0))
        return TSE_CLIENT_INVALID_ARGUMENT;
    bytes = grpc_slice_from_copied_buffer(msg, len);
    st = tse_client_stream_send_slice(s, bytes);
    grpc_slice_unref(bytes);
    return st;
}

/*
 * The answers of send and close_send look at the caller's own acts first
 * (close_send, cancel), then at the status: the status arrives on the pump
 * thread whenever the server or the transport ends the stream, so an answer
 * that looked at it first would depend on timing. A send after close_send
 * was FAILED_PRECONDITION or, once the server's end had come in, CANCELLED
 * (a flake under load, regression); a send after cancel was OK (queued on a
 * cancelled call) until the status came, CANCELLED after.
 */
tse_client_status tse_client_stream_send_slice(tse_client_stream *s, grpc_slice bytes)
{
    outmsg *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return TSE_CLIENT_NO_MEMORY;
    m->bb = grpc_raw_byte_buffer_create(&bytes, 1);
    pthread_mutex_lock(&s->mu);
    if (s->closing || s->cancelled || s->status_done) {
        bool closing = s->closing;

        pthread_mutex_unlock(&s->mu);
        grpc_byte_buffer_destroy(m->bb);
        free(m);
        return closing ? TSE_CLIENT_FAILED_PRECONDITION : TSE_CLIENT_CANCELLED;
    }
    if (s->out_tail != NULL)
        s->out_tail->next = m;
    else
        s->out_head = m;
    s->out_tail = m;
    kick_send_locked(s);
    pthread_mutex_unlock(&s->mu);
    return TSE_CLIENT_OK;
}

EXPORT tse_client_status tse_client_stream_close_send(tse_client_stream *s)
{
    tse_client_status st = TSE_CLIENT_OK;

    if (s == NULL)
        return TSE_CLIENT_INVALID_ARGUMENT;
    pthread_mutex_lock(&s->mu);
    if (s->closing)
        st = TSE_CLIENT_OK; /* asked before: the answer stays, ended since or not */
    else if (s->cancelled || s->status_done)
        st = TSE_CLIENT_CANCELLED;
    else {
        s->closing = true;
        kick_send_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

EXPORT void tse_client_stream_pause(tse_client_stream *s, bool paused)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->paused = paused;
    kick_recv_locked(s);
    pthread_mutex_unlock(&s->mu);
}

EXPORT void tse_client_stream_cancel(tse_client_stream *s, tse_client_status status,
                                     const char *why)
{
    grpc_status_code code =
        tse_client_grpc_from_status(status == TSE_CLIENT_OK ? TSE_CLIENT_CANCELLED : status);

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    if (!s->ended)
        grpc_call_cancel_with_status(s->call, code, why != NULL ? why : "cancelled by the client",
                                     NULL);
    pthread_mutex_unlock(&s->mu);
}

EXPORT void tse_client_stream_release(tse_client_stream *s)
{
    if (s != NULL)
        unref(s);
}

void tse_client_streams_cancel(tse_client *c)
{
    pthread_mutex_lock(&c->calls_mu);
    for (tse_client_stream *s = c->streams; s != NULL; s = s->next)
        grpc_call_cancel_with_status(s->call, tse_client_grpc_from_status(TSE_CLIENT_CANCELLED),
                                     "the client was destroyed before the stream ended", NULL);
    pthread_mutex_unlock(&c->calls_mu);
}
