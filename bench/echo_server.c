/*
 * echo_server.c - the cheapest server that keeps PublishStream's wire
 * contract, to measure what gRPC C core itself costs per streamed event on
 * this machine (bench/run_ceiling.sh compares it with the real service).
 *
 * For every PublishRequest it receives it sends one PublishResponse, in
 * order: the same pre-encoded bytes every time (an event id, a stream entry
 * id, a stream key and a timestamp, so the message is as long as a real
 * one). No decoding (unless --decode), no validation, no Redis. It uses the
 * techniques the real transport uses (src/transport/publish.c, server.c),
 * so the gap between the two is what the service adds on top of gRPC:
 *   - one completion queue per worker thread; a call's batches all complete
 *     on the queue it was requested on, so each call is handled by one
 *     thread and needs no lock;
 *   - the next receive is posted from the receive completion, the next send
 *     from the send completion (one op of each type in flight per call);
 *   - GRPC_WRITE_BUFFER_HINT on a response only when another one is already
 *     owed behind it and initial metadata went out: never on the first nor
 *     on the last queued message, which would never be written;
 *   - at most `window` unanswered requests per call (receiving pauses
 *     beyond it), like publish-stream-window (default 4096);
 *   - RECV_CLOSE_ON_SERVER from the start; the status (OK) goes out once the
 *     client half-closed and every response was sent.
 *
 * Invariants: a call object is freed only when none of its batches is
 * pending (the close op stays pending until the call is over, so that is
 * the end of the call). `live` counts call objects, posted requests
 * included; shutdown waits for it to reach zero before destroying the
 * server, because start_batch on a call whose queue is shut down aborts.
 * Unregistered methods are not answered (clients of other methods wait for
 * their deadline): this is a benchmark target, not a service.
 *
 * Threads: main only waits for SIGINT/SIGTERM (blocked before grpc_init,
 * taken with sigwait) and then shuts down; workers drain their queues.
 */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/timestamp.pb-c.h"
#include "tracseq/events/v1/service.pb-c.h"

#define METHOD_STREAM "/tracseq.events.v1.EventService/PublishStream"
#define MAX_THREADS   64
#define BACKLOG       8 /* requested calls per worker, as the service's PublishStream */

/* ============================== settings ================================== */

typedef struct options {
    const char *listen;
    int threads;
    int window;
    bool decode;
} options;

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_echo_server [options]\n"
                 "  --listen HOST:PORT   address to listen on (default 127.0.0.1:0: any free "
                 "port)\n"
                 "  --threads N          worker threads, one completion queue each (default 2)\n"
                 "  --window W           unanswered requests per call before receiving pauses "
                 "(default 4096)\n"
                 "  --decode             also unpack each PublishRequest with protobuf-c (and "
                 "free it)\n"
                 "  --help               this text\n"
                 "Prints \"listening on HOST:PORT\" when ready; SIGINT/SIGTERM shut it down "
                 "(exit 0).\n");
}

static bool parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

static bool parse_options(options *o, int argc, char **argv)
{
    *o = (options){.listen = "127.0.0.1:0", .threads = 2, .window = 4096};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(argv[i], "--decode") == 0) {
            o->decode = true;
            continue;
        } else if (v != NULL && strcmp(argv[i], "--listen") == 0 && strrchr(v, ':') != NULL) {
            o->listen = v;
        } else if (v == NULL ||
                   !((strcmp(argv[i], "--threads") == 0 &&
                      parse_int(v, 1, MAX_THREADS, &o->threads)) ||
                     (strcmp(argv[i], "--window") == 0 && parse_int(v, 1, 1 << 20, &o->window)))) {
            fprintf(stderr, "bench_echo_server: bad option '%s'\n", argv[i]);
            usage(stderr);
            return false;
        }
        i++;
    }
    return true;
}

/* ============================== server state ============================== */

typedef struct server server;

/* Per worker: its queue and its counters (only its thread writes them; main
 * reads them after joining it). */
typedef struct worker {
    server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    bool running;
    long long calls, events, hinted, undecodable;
} worker;

struct server {
    options opt;
    grpc_server *grpc;
    void *method;
    grpc_slice response; /* the pre-encoded PublishResponse, shared by reference */
    worker workers[MAX_THREADS];
    bool started;
    atomic_bool shutting_down;
    pthread_mutex_t live_mu;
    pthread_cond_t live_cond;
    int live; /* call objects alive, posted requests included */
};

typedef struct echo_call echo_call;
typedef void (*tag_fn)(echo_call *c, bool ok);

/* A batch's tag: embedded in the call, names its handler. */
typedef struct tag {
    tag_fn fn;
    echo_call *call;
} tag;

struct echo_call {
    worker *w;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_md;
    tag t_arrived, t_recv, t_send, t_close;
    grpc_byte_buffer *recv_buf, *send_buf;
    grpc_slice status_details;
    int cancelled;
    int batches;    /* started, not yet completed */
    long long owed; /* requests received, response not yet started */
    bool md_sent, recv_pending, send_pending, input_done, status_started, failed;
};

/* ============================== the response ============================== */

/* A response as the service makes it for bench_publish's events. */
static void response_init(server *s)
{
    Tracseq__Events__V1__PublishResponse r = TRACSEQ__EVENTS__V1__PUBLISH_RESPONSE__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

    ts.seconds = 1718700000;
    ts.nanos = 123456789;
    r.event_id = "3d553515-8f46-4deb-8f38-a19f6dd4a823";
    r.stream_id = "1718700000000-0";
    r.stream = "tracseq:events:{bench.event}:p3";
    r.published_at = &ts;
    r.schema_valid = true;
    s->response = grpc_slice_malloc(protobuf_c_message_get_packed_size(&r.base));
    protobuf_c_message_pack(&r.base, GRPC_SLICE_START_PTR(s->response));
}

/* ============================== one call ================================== */

static void live_add(server *s, int d)
{
    pthread_mutex_lock(&s->live_mu);
    s->live += d;
    if (s->live == 0)
        pthread_cond_broadcast(&s->live_cond);
    pthread_mutex_unlock(&s->live_mu);
}

static void call_free(echo_call *c)
{
    server *s = c->w->srv;

    if (c->call != NULL)
        grpc_call_unref(c->call);
    if (c->recv_buf != NULL)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->send_buf != NULL)
        grpc_byte_buffer_destroy(c->send_buf);
    grpc_metadata_array_destroy(&c->request_md);
    grpc_slice_unref(c->status_details);
    free(c);
    live_add(s, -1);
}

/* Starts a batch; on failure the call is beyond saving: cancel it (its
 * close op then completes and ends it). */
static bool call_batch(echo_call *c, const grpc_op *ops, size_t n, tag *t)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);

    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "bench_echo_server: start_batch failed: %d\n", (int)e);
        c->failed = true;
        grpc_call_cancel(c->call, NULL);
        return false;
    }
    c->batches++;
    return true;
}

static void post_recv(echo_call *c)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};

    if (c->recv_pending || c->input_done || c->failed || c->owed >= c->w->srv->opt.window)
        return;
    op.data.recv_message.recv_message = &c->recv_buf;
    c->recv_pending = call_batch(c, &op, 1, &c->t_recv);
}

static void send_status(echo_call *c)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (!c->md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    c->md_sent = true;
    c->status_started = true;
    c->send_pending = call_batch(c, ops, n, &c->t_send);
}

/* Sends the next owed response if no send is in flight; the status once
 * nothing is owed and the client half-closed. */
static void try_send(echo_call *c)
{
    grpc_op ops[2];
    size_t n = 0;

    if (c->send_pending || c->status_started || c->failed)
        return;
    if (c->owed == 0) {
        if (c->input_done)
            send_status(c);
        return;
    }
    memset(ops, 0, sizeof(ops));
    if (!c->md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->send_buf = grpc_raw_byte_buffer_create(&c->w->srv->response, 1);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    /* Buffer this write only when the next response is owed already: its
     * send, started from this one's completion, flushes it. */
    if (c->md_sent && c->owed > 1) {
        ops[n].flags = GRPC_WRITE_BUFFER_HINT;
        c->w->hinted++;
    }
    ops[n++].data.send_message.send_message = c->send_buf;
    c->md_sent = true;
    c->owed--;
    c->w->events++;
    c->send_pending = call_batch(c, ops, n, &c->t_send);
    post_recv(c); /* the window may have reopened */
}

static void decode_request(echo_call *c, grpc_byte_buffer *bb)
{
    Tracseq__Events__V1__PublishRequest *r = NULL;
    grpc_byte_buffer_reader reader;
    grpc_slice all;

    if (grpc_byte_buffer_reader_init(&reader, bb)) {
        all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);
        r = tracseq__events__v1__publish_request__unpack(NULL, GRPC_SLICE_LENGTH(all),
                                                         GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
    }
    if (r == NULL)
        c->w->undecodable++; /* still answered: this server measures, it does not judge */
    else
        tracseq__events__v1__publish_request__free_unpacked(r, NULL);
}

static void on_recv(echo_call *c, bool ok)
{
    grpc_byte_buffer *bb = c->recv_buf;

    c->recv_buf = NULL;
    c->recv_pending = false;
    if (!ok || bb == NULL) {
        c->input_done = true; /* half-close, or the call failed */
    } else {
        if (c->w->srv->opt.decode)
            decode_request(c, bb);
        grpc_byte_buffer_destroy(bb);
        c->owed++;
        post_recv(c);
    }
    try_send(c);
}

static void on_send(echo_call *c, bool ok)
{
    c->send_pending = false;
    if (c->send_buf != NULL) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
    if (!ok)
        c->failed = true;
    try_send(c);
}

static void on_close(echo_call *c, bool ok)
{
    (void)ok;
    if (c->cancelled)
        c->failed = true;
}

static void post_request(worker *w);

/* A call arrived: ask for the next one at once, then start this one. */
static void on_arrived(echo_call *c, bool ok)
{
    grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};

    if (!ok) {
        /* The server is shutting down: the request is returned unused. */
        return;
    }
    if (!atomic_load(&c->w->srv->shutting_down))
        post_request(c->w);
    c->w->calls++;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (call_batch(c, &op, 1, &c->t_close))
        post_recv(c);
}

static echo_call *call_create(worker *w)
{
    echo_call *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->w = w;
    c->t_arrived = (tag){on_arrived, c};
    c->t_recv = (tag){on_recv, c};
    c->t_send = (tag){on_send, c};
    c->t_close = (tag){on_close, c};
    c->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&c->request_md);
    return c;
}

static void post_request(worker *w)
{
    server *s = w->srv;
    echo_call *c = call_create(w);
    grpc_call_error e;

    if (c == NULL) {
        fprintf(stderr, "bench_echo_server: out of memory\n");
        return;
    }
    live_add(s, 1);
    c->batches = 1; /* the request is pending like a batch */
    e = grpc_server_request_registered_call(s->grpc, s->method, &c->call, &c->deadline,
                                            &c->request_md, NULL, w->cq, w->cq, &c->t_arrived);
    if (e != GRPC_CALL_OK) {
        fprintf(stderr, "bench_echo_server: cannot request a call: %d\n", (int)e);
        call_free(c);
    }
}

/* ============================== workers =================================== */

static void *worker_main(void *arg)
{
    worker *w = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        tag *t;

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        t = ev.tag;
        t->call->batches--;
        t->fn(t->call, ev.success != 0);
        /* The close op is pending until the call is over: no batch left
         * means nothing can touch the call any more. */
        if (t->call->batches == 0)
            call_free(t->call);
    }
    return NULL;
}

static grpc_channel_args *server_args(grpc_arg *args)
{
    static grpc_channel_args ca;
    int n = 0;

    /* The service's settings (src/transport/server.c), so the comparison is
     * like for like; a busy port fails loudly. */
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}};
    args[n++] =
        (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = 4 << 20}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 60000}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 20000}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER,
                           GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                           {.integer = 10000}};
    args[n++] =
        (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = 1000}};
    ca.num_args = (size_t)n;
    ca.args = args;
    return &ca;
}

/* Creates the server, its queues and the listening port; the port number,
 * 0 on failure (the caller then runs server_destroy). */
static int server_create(server *s)
{
    grpc_server_credentials *creds;
    grpc_arg args[8];
    int port;

    s->grpc = grpc_server_create(server_args(args), NULL);
    s->method = grpc_server_register_method(s->grpc, METHOD_STREAM, NULL, GRPC_SRM_PAYLOAD_NONE, 0);
    for (int i = 0; i < s->opt.threads; i++) {
        s->workers[i] = (worker){.srv = s};
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->grpc, s->workers[i].cq, NULL);
    }
    creds = grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(s->grpc, s->opt.listen, creds);
    grpc_server_credentials_release(creds);
    return port;
}

/* Starts the workers, then the server and its requested calls; false when
 * a thread could not start (the server is not started then). */
static bool server_start(server *s)
{
    for (int i = 0; i < s->opt.threads; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0)
            return false;
        s->workers[i].running = true;
    }
    grpc_server_start(s->grpc);
    s->started = true;
    for (int i = 0; i < s->opt.threads; i++)
        for (int k = 0; k < BACKLOG; k++)
            post_request(&s->workers[i]);
    return true;
}

/* Stops the server in the order measured.md (fact 12) found to work; the
 * workers keep draining their queues until these are shut down. */
static void server_stop(server *s)
{
    grpc_completion_queue *scq;

    if (s->started) {
        scq = grpc_completion_queue_create_for_pluck(NULL);
        atomic_store(&s->shutting_down, true);
        grpc_server_shutdown_and_notify(s->grpc, scq, s);
        grpc_server_cancel_all_calls(s->grpc);
        grpc_completion_queue_pluck(scq, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        grpc_completion_queue_shutdown(scq);
        grpc_completion_queue_destroy(scq);
        pthread_mutex_lock(&s->live_mu);
        while (s->live > 0)
            pthread_cond_wait(&s->live_cond, &s->live_mu);
        pthread_mutex_unlock(&s->live_mu);
        grpc_server_destroy(s->grpc);
        s->grpc = NULL;
    }
    for (int i = 0; i < s->opt.threads; i++)
        grpc_completion_queue_shutdown(s->workers[i].cq);
    for (int i = 0; i < s->opt.threads; i++)
        if (s->workers[i].running)
            pthread_join(s->workers[i].thread, NULL);
}

/* Releases what server_create made; for a server that never started, or
 * one server_stop stopped. */
static void server_destroy(server *s)
{
    if (s->grpc != NULL)
        grpc_server_destroy(s->grpc);
    for (int i = 0; i < MAX_THREADS; i++) {
        grpc_completion_queue *cq = s->workers[i].cq;

        if (cq == NULL)
            continue;
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_past(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(cq);
    }
}

static void print_totals(const server *s)
{
    long long calls = 0, events = 0, hinted = 0, bad = 0;

    for (int i = 0; i < s->opt.threads; i++) {
        calls += s->workers[i].calls;
        events += s->workers[i].events;
        hinted += s->workers[i].hinted;
        bad += s->workers[i].undecodable;
    }
    /* The share of hinted responses tells how often responses left in
     * batches rather than one write each. */
    fprintf(stderr,
            "bench_echo_server: %lld calls, %lld responses (%lld hinted), %lld undecodable "
            "requests\n",
            calls, events, hinted, bad);
}

/* ============================== main ====================================== */

int main(int argc, char **argv)
{
    static server s = {.live_mu = PTHREAD_MUTEX_INITIALIZER, .live_cond = PTHREAD_COND_INITIALIZER};
    sigset_t sigs;
    int sig, port, rc = 1;

    if (!parse_options(&s.opt, argc, argv))
        return 2;
    /* grpc_init starts threads: they must inherit the blocked signals. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    grpc_init();
    response_init(&s);
    port = server_create(&s);
    if (port == 0) {
        fprintf(stderr, "bench_echo_server: cannot listen on %s\n", s.opt.listen);
        goto out;
    }
    if (!server_start(&s)) {
        fprintf(stderr, "bench_echo_server: cannot start the worker threads\n");
        server_stop(&s);
        goto out;
    }
    printf("listening on %.*s:%d\n", (int)(strrchr(s.opt.listen, ':') - s.opt.listen), s.opt.listen,
           port);
    fflush(stdout);
    sigwait(&sigs, &sig);
    server_stop(&s);
    print_totals(&s);
    rc = 0;
out:
    server_destroy(&s);
    grpc_slice_unref(s.response);
    grpc_shutdown();
    return rc;
}
