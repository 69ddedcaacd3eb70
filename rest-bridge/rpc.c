/*
 * rpc.c - asynchronous calls to the event service on one shared completion
 * queue and its thread; see rpc.h.
 *
 * A unary call is one heap object owning everything its ops point into and
 * one batch of all six ops; RECV_INITIAL_METADATA is always included
 * because the core withholds the status of a call whose client never asked
 * for initial metadata. Unary calls in flight sit on a list (under the
 * lock) so that shutdown can cancel them and the tick can watch the HTTP
 * socket of a long-poll: an entry leaves the list before its callback runs,
 * so a cancel never touches a finished call.
 *
 * The CQ thread waits at most TSE_RPC_TICK_MS for a completion, so ticks
 * run on time whether the queue is busy or idle.
 */
#include "rpc.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TICKS 8

typedef struct unary unary;

struct tse_rpc {
    grpc_completion_queue *cq;
    pthread_t thread;
    bool started;
    atomic_size_t next; /* round-robin cursor over channels */
    pthread_mutex_t lock;
    unary *calls; /* unary calls in flight */
    size_t ncalls;
    struct {
        tse_rpc_tick_fn fn;
        void *arg;
    } ticks[MAX_TICKS];
    size_t nticks;
    size_t nchannels;
    grpc_channel *channels[];
};

/* One unary call in flight and the storage its ops point into. */
struct unary {
    tse_rpc_tag tag;
    tse_rpc *r;
    grpc_call *call;
    grpc_metadata md;
    size_t md_count;
    grpc_metadata_array initial_md, trailing_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code code;
    grpc_slice details;
    const ProtobufCMessageDescriptor *desc;
    int watch_fd;
    tse_rpc_done_fn done;
    void *arg;
    unary *prev, *next;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- encoding ---- */

grpc_byte_buffer *tse_rpc_encode(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    grpc_byte_buffer *bb;

    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

ProtobufCMessage *tse_rpc_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader reader;
    ProtobufCMessage *msg;
    grpc_slice all;

    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return msg;
}

void tse_rpc_status_set(tse_rpc_status *st, grpc_status_code code, grpc_slice details)
{
    st->code = code;
    snprintf(st->details, sizeof(st->details), "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
}

/* ---- the CQ thread ---- */

/* Cancels the watched calls whose HTTP client hung up. Under r->lock the
 * watched sockets stay open: their connections are suspended until the
 * call's callback, which runs only after the call left the list. */
static void watch_hangups(tse_rpc *r)
{
    struct pollfd *fds;
    unary **who;
    size_t n = 0;

    pthread_mutex_lock(&r->lock);
    fds = r->ncalls ? calloc(r->ncalls, sizeof(*fds)) : NULL;
    who = r->ncalls ? calloc(r->ncalls, sizeof(*who)) : NULL;
    for (unary *u = r->calls; fds && who && u; u = u->next) {
        if (u->watch_fd < 0)
            continue;
        fds[n].fd = u->watch_fd;
        fds[n].events = POLLRDHUP;
        who[n++] = u;
    }
    if (n > 0 && poll(fds, n, 0) > 0) {
        for (size_t i = 0; i < n; i++)
            if (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
                grpc_call_cancel_with_status(who[i]->call, GRPC_STATUS_CANCELLED, TSE_RPC_HANGUP,
                                             NULL);
    }
    pthread_mutex_unlock(&r->lock);
    free(fds);
    free(who);
}

static void run_ticks(tse_rpc *r, int64_t now)
{
    size_t n;

    watch_hangups(r);
    pthread_mutex_lock(&r->lock);
    n = r->nticks;
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < n; i++)
        r->ticks[i].fn(r->ticks[i].arg, now);
}

static void *cq_main(void *arg)
{
    tse_rpc *r = arg;
    int64_t next_tick = now_ms() + TSE_RPC_TICK_MS;

    for (;;) {
        gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                             gpr_time_from_millis(TSE_RPC_TICK_MS, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(r->cq, deadline, NULL);
        int64_t now;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            tse_rpc_tag *tag = ev.tag;
            tag->fn(tag, ev.success != 0);
        }
        if ((now = now_ms()) >= next_tick) {
            run_ticks(r, now);
            next_tick = now + TSE_RPC_TICK_MS;
        }
    }
    return NULL;
}

/* ---- lifetime ---- */

static grpc_channel *channel_new(const char *addr, grpc_channel_credentials *creds)
{
    /* A local subchannel pool per channel: otherwise channels to one address
     * share one HTTP/2 connection and spreading load over several would gain
     * nothing. Short reconnect backoff: after a restart of the service the
     * bridge is back within about a second instead of gRPC's default (up to
     * two minutes). */
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}},
        {GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 1000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = 64 << 20}},
    };
    grpc_channel_args ca = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};

    return grpc_channel_create(addr, creds, &ca);
}

tse_status tse_rpc_create(const char *addr, int channels, tse_rpc **out, tse_error *err)
{
    tse_rpc *r = calloc(1, sizeof(*r) + (size_t)channels * sizeof(grpc_channel *));
    grpc_channel_credentials *creds;

    if (r == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    pthread_mutex_init(&r->lock, NULL);
    creds = grpc_insecure_credentials_create();
    for (int i = 0; i < channels; i++)
        r->channels[r->nchannels++] = channel_new(addr, creds);
    grpc_channel_credentials_release(creds);
    r->cq = grpc_completion_queue_create_for_next(NULL);
    if (pthread_create(&r->thread, NULL, cq_main, r) != 0) {
        tse_rpc_destroy(r);
        return tse_error_set(err, TSE_NOMEM, NULL, "cannot start the gRPC thread");
    }
    r->started = true;
    *out = r;
    return TSE_OK;
}

void tse_rpc_destroy(tse_rpc *r)
{
    if (r == NULL)
        return;
    tse_rpc_cancel_all(r);
    grpc_completion_queue_shutdown(r->cq);
    if (r->started)
        pthread_join(r->thread, NULL);
    else
        while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    grpc_completion_queue_destroy(r->cq);
    for (size_t i = 0; i < r->nchannels; i++)
        grpc_channel_destroy(r->channels[i]);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void tse_rpc_add_tick(tse_rpc *r, tse_rpc_tick_fn fn, void *arg)
{
    pthread_mutex_lock(&r->lock);
    if (r->nticks < MAX_TICKS) {
        r->ticks[r->nticks].fn = fn;
        r->ticks[r->nticks].arg = arg;
        r->nticks++;
    }
    pthread_mutex_unlock(&r->lock);
}

/* ---- calls ---- */

/*
 * The next channel round robin, skipping those not connected while another
 * is: after a restart of the service the channels come back one by one
 * (each on its own backoff), and a call on one still down would fail.
 */
static grpc_channel *pick(tse_rpc *r)
{
    size_t start = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);

    for (size_t k = 0; k < r->nchannels; k++) {
        grpc_channel *ch = r->channels[(start + k) % r->nchannels];
        if (grpc_channel_check_connectivity_state(ch, 0) == GRPC_CHANNEL_READY)
            return ch;
    }
    for (size_t k = 1; k < r->nchannels; k++) /* none is: get them all going */
        grpc_channel_check_connectivity_state(r->channels[(start + k) % r->nchannels], 1);
    return r->channels[start % r->nchannels];
}

grpc_call *tse_rpc_call_new(tse_rpc *r, const char *method, int timeout_ms)
{
    gpr_timespec deadline = timeout_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice m = grpc_slice_from_copied_string(method); /* callers may pass a stack buffer */
    grpc_call *call = grpc_channel_create_call(pick(r), NULL, GRPC_PROPAGATE_DEFAULTS, r->cq, m,
                                               NULL, deadline, NULL);

    grpc_slice_unref(m);
    return call;
}

bool tse_rpc_batch(grpc_call *call, const grpc_op *ops, size_t n, tse_rpc_tag *tag)
{
    return grpc_call_start_batch(call, ops, n, tag, NULL) == GRPC_CALL_OK;
}

static void unary_free(unary *u)
{
    if (u->call != NULL)
        grpc_call_unref(u->call);
    if (u->send != NULL)
        grpc_byte_buffer_destroy(u->send);
    if (u->recv != NULL)
        grpc_byte_buffer_destroy(u->recv);
    grpc_metadata_array_destroy(&u->initial_md);
    grpc_metadata_array_destroy(&u->trailing_md);
    grpc_slice_unref(u->details);
    if (u->md_count) {
        grpc_slice_unref(u->md.key);
        grpc_slice_unref(u->md.value);
    }
    free(u);
}

static void unlist(unary *u)
{
    tse_rpc *r = u->r;

    pthread_mutex_lock(&r->lock);
    if (u->prev)
        u->prev->next = u->next;
    else
        r->calls = u->next;
    if (u->next)
        u->next->prev = u->prev;
    r->ncalls--;
    pthread_mutex_unlock(&r->lock);
}

static void unary_done(tse_rpc_tag *tag, bool ok)
{
    unary *u = (unary *)tag; /* the tag is the first member */
    ProtobufCMessage *resp = NULL;
    tse_rpc_status st;

    unlist(u);
    tse_rpc_status_set(&st, u->code, u->details);
    if (!ok) {
        st.code = GRPC_STATUS_INTERNAL;
        snprintf(st.details, sizeof(st.details), "the gRPC batch failed");
    } else if (st.code == GRPC_STATUS_OK && (resp = tse_rpc_decode(u->recv, u->desc)) == NULL) {
        st.code = GRPC_STATUS_INTERNAL;
        snprintf(st.details, sizeof(st.details), "the service's answer did not decode");
    }
    u->done(u->arg, &st, resp);
    unary_free(u);
}

static void unary_ops(unary *u, grpc_op *ops)
{
    memset(ops, 0, 6 * sizeof(*ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = u->md_count;
    ops[0].data.send_initial_metadata.metadata = u->md_count ? &u->md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trailing_md;
    ops[5].data.recv_status_on_client.status = &u->code;
    ops[5].data.recv_status_on_client.status_details = &u->details;
}

bool tse_rpc_unary(tse_rpc *r, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, const char *correlation_id,
                   int timeout_ms, int watch_fd, tse_rpc_done_fn done, void *arg)
{
    unary *u = calloc(1, sizeof(*u));
    grpc_op ops[6];
    bool ok;

    if (u == NULL)
        return false;
    u->tag.fn = unary_done;
    u->r = r;
    u->desc = resp_desc;
    u->watch_fd = watch_fd;
    u->done = done;
    u->arg = arg;
    u->code = GRPC_STATUS_UNKNOWN;
    u->details = grpc_empty_slice();
    grpc_metadata_array_init(&u->initial_md);
    grpc_metadata_array_init(&u->trailing_md);
    if (correlation_id != NULL && correlation_id[0] != '\0') {
        u->md.key = grpc_slice_from_static_string("x-correlation-id");
        u->md.value = grpc_slice_from_copied_string(correlation_id);
        u->md_count = 1;
    }
    u->send = tse_rpc_encode(req);
    u->call = tse_rpc_call_new(r, method, timeout_ms);
    unary_ops(u, ops);
    /* Listed before the batch starts: its completion unlists it. */
    pthread_mutex_lock(&r->lock);
    u->next = r->calls;
    if (r->calls)
        r->calls->prev = u;
    r->calls = u;
    r->ncalls++;
    pthread_mutex_unlock(&r->lock);
    ok = u->call != NULL && tse_rpc_batch(u->call, ops, 6, &u->tag);
    if (!ok) {
        unlist(u);
        unary_free(u);
    }
    return ok;
}

void tse_rpc_cancel_all(tse_rpc *r)
{
    pthread_mutex_lock(&r->lock);
    for (unary *u = r->calls; u; u = u->next)
        grpc_call_cancel_with_status(u->call, GRPC_STATUS_UNAVAILABLE,
                                     "the REST bridge is shutting down", NULL);
    pthread_mutex_unlock(&r->lock);
}
