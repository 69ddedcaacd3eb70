/*
 * server.c - the gRPC server: completion-queue workers, request posting,
 * call arrival, and the shutdown sequence. See server.h for the threading
 * model.
 *
 * Invariants: every registered method keeps `backlog` requests posted on
 * every worker's queue until shutdown starts; a call object is counted in
 * live_calls from its arrival until it is freed; no batch is started on a
 * call after its completion queue has been shut down (shutdown waits for
 * live_calls to reach zero first).
 */
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/tsan.h"
#include "domain/catalog.h"
#include "obs/log.h"
#include "transport/internal.h"

const char *const tse_server_services[] = {
    "tracseq.events.v1.EventService", "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection", NULL};

const tse_method *const tse_methods[] = {
    &tse_method_publish,
    &tse_method_publish_cloudevent,
    &tse_method_publish_stream,
    &tse_method_publish_batch,
    &tse_method_publish_batch_stream,
    &tse_method_subscribe,
    &tse_method_acknowledge,
    &tse_method_nack,
    &tse_method_pull,
    &tse_method_create_subscription,
    &tse_method_get_subscription,
    &tse_method_list_subscriptions,
    &tse_method_delete_subscription,
    &tse_method_list_dead_letters,
    &tse_method_get_dead_letter,
    &tse_method_redrive_dead_letters,
    &tse_method_purge_dead_letters,
    &tse_method_seek,
    &tse_method_create_snapshot,
    &tse_method_list_snapshots,
    &tse_method_delete_snapshot,
    &tse_method_get_stats,
    &tse_method_list_event_types,
    &tse_method_health_check,
    &tse_method_health_watch,
    &tse_method_reflection_v1alpha,
    &tse_method_reflection_v1,
    NULL,
};

/* A request for the next call of a method (or of any unregistered method
 * when handle == NULL), posted on one worker's queue. */
static void post_request(tse_server *s, const tse_method *m, void *handle, int worker);

/* Decodes a unary or server-streaming request into c->request; false (and
 * the call answered INVALID_ARGUMENT) when it does not decode. */
static bool request_decoded(tse_call *c)
{
    tse_error err;

    if (c->method->streaming_in || c->method->request == NULL || c->method->reads_payload)
        return true;
    tse_error_clear(&err);
    c->request = tse_decode_keeping(c->payload, c->method->request, c->method->max_entries,
                                    c->method->keeps_bytes ? &c->request_bytes : NULL, &err);
    if (c->request != NULL)
        return true;
    if (c->method->counts_invalid)
        tse_stats_add(c->server->stats, TSE_STAT_INVALID, 1);
    tse_call_fail(c, &err);
    return false;
}

static void on_arrived(tse_tag *tag, bool ok)
{
    tse_call *c = TSE_CONTAINER_OF(tag, tse_call, arrived);
    tse_server *s = c->server;
    size_t i;

    if (!ok) {
        /* The server is shutting down: the request was never matched. */
        tse_call_unref(c);
        return;
    }
    if (!atomic_load(&s->shutting_down)) {
        void *handle = NULL;
        for (i = 0; tse_methods[i]; i++)
            if (tse_methods[i] == c->method)
                handle = s->method_handles[i];
        post_request(s, c->method, handle, c->worker);
    }
    c->start_us = tse_clock_us();
    for (i = 0; i < c->metadata.count; i++) {
        const grpc_metadata *md = &c->metadata.metadata[i];
        if (grpc_slice_str_cmp(md->key, "x-correlation-id") == 0) {
            size_t len = GRPC_SLICE_LENGTH(md->value);
            if (len >= sizeof(c->correlation_id))
                len = sizeof(c->correlation_id) - 1;
            memcpy(c->correlation_id, GRPC_SLICE_START_PTR(md->value), len);
            c->correlation_id[len] = '\0';
        } else if (grpc_slice_str_cmp(md->key, "traceparent") == 0) {
            c->md_traceparent = (const char *)GRPC_SLICE_START_PTR(md->value);
            c->md_traceparent_len = GRPC_SLICE_LENGTH(md->value);
        } else if (grpc_slice_str_cmp(md->key, "tracestate") == 0) {
            c->md_tracestate = (const char *)GRPC_SLICE_START_PTR(md->value);
            c->md_tracestate_len = GRPC_SLICE_LENGTH(md->value);
        }
    }
    /* No other thread knows the call yet. The arrival's reference spans the
     * handler's start, so a finish from within start never drops the last. */
    c->state = TSE_CALL_ACTIVE;
    c->refs++;
    if (tse_call_authenticate(c) && request_decoded(c))
        c->method->start(c);
    tse_call_unref(c); /* the arrival's */
}

static void post_request(tse_server *s, const tse_method *m, void *handle, int worker)
{
    tse_call *c = calloc(1, m->call_size);
    grpc_completion_queue *cq = s->cqs[worker];
    grpc_call_error e;

    if (c == NULL) {
        tse_logf(TSE_LOG_ERROR, "out of memory posting a request for %s", m->name);
        return;
    }
    c->server = s;
    c->method = m;
    c->worker = worker;
    c->refs = 1; /* the handler's, from arrival until it finishes */
    c->arrived.fn = on_arrived;
    c->status_details = grpc_empty_slice();
    c->request_bytes = grpc_empty_slice();
    pthread_mutex_init(&c->lock, NULL);
    grpc_metadata_array_init(&c->metadata);
    grpc_call_details_init(&c->details);
    pthread_mutex_lock(&s->calls_lock);
    s->live_calls++;
    pthread_mutex_unlock(&s->calls_lock);
    tse_tsan_release(&c->arrived);
    if (handle != NULL)
        e = grpc_server_request_registered_call(s->grpc, handle, &c->call, &c->deadline,
                                                &c->metadata, m->streaming_in ? NULL : &c->payload,
                                                cq, cq, &c->arrived);
    else
        e = grpc_server_request_call(s->grpc, &c->call, &c->details, &c->metadata, cq, cq,
                                     &c->arrived);
    if (e != GRPC_CALL_OK) {
        tse_logf(TSE_LOG_ERROR, "could not post a request for %s (%d)", m->name, (int)e);
        tse_call_unref(c);
    }
}

/* Unregistered methods would otherwise leave the client waiting for its
 * deadline: answer them UNIMPLEMENTED. */
static void unimplemented_start(tse_call *c)
{
    char *path = grpc_slice_to_c_string(c->details.method);
    tse_error err;

    tse_error_set(&err, TSE_UNIMPLEMENTED, NULL, "method %s is not implemented by this server",
                  path);
    tse_call_log_kv(c, "path", path);
    gpr_free(path);
    tse_call_fail(c, &err);
}

const tse_method tse_method_unimplemented = {
    .path = NULL,
    .name = "Unimplemented",
    .streaming_in = true,
    .open = true,
    .backlog = 2,
    .call_size = sizeof(tse_call),
    .start = unimplemented_start,
};

static void *worker_main(void *arg)
{
    grpc_completion_queue *cq = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            tse_tag *tag = ev.tag;
            tse_tsan_acquire(tag);
            tag->fn(tag, ev.success != 0);
        }
    }
    return NULL;
}

static grpc_channel_args *server_args(const tse_config *cfg, grpc_arg *args)
{
    static grpc_channel_args ca;
    int n = 0;

    /* A busy port must fail loudly instead of silently sharing it. */
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER,
                           GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                           {.integer = (int)cfg->max_message_bytes}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 60000}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 20000}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER,
                           GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                           {.integer = 10000}};
    args[n++] =
        (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}};
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = 1000}};
    /* Nothing reads channelz here, and it reads the clock per message. */
    args[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_CHANNELZ, {.integer = 0}};
    ca.num_args = (size_t)n;
    ca.args = args;
    return &ca;
}

tse_status tse_server_create(const tse_server_deps *deps, tse_server **out, tse_error *err)
{
    const tse_config *cfg = deps->config;
    grpc_server_credentials *creds;
    grpc_arg args[8];
    tse_server *s;
    size_t nmethods = 0;

    while (tse_methods[nmethods])
        nmethods++;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    s->config = cfg;
    s->broker = deps->broker;
    s->delivery = deps->delivery;
    s->stats = deps->stats;
    s->reflection = deps->reflection;
    s->auth = deps->auth;
    s->nworkers = cfg->threads;
    pthread_mutex_init(&s->calls_lock, NULL);
    pthread_cond_init(&s->calls_cond, NULL);
    pthread_mutex_init(&s->watch_lock, NULL);
    s->cqs = calloc((size_t)s->nworkers, sizeof(*s->cqs));
    s->threads = calloc((size_t)s->nworkers, sizeof(*s->threads));
    s->method_handles = calloc(nmethods, sizeof(void *));
    s->catalog_answer = tse_catalog_describe(&s->catalog_answer_len);
    if (!s->cqs || !s->threads || !s->method_handles || !s->catalog_answer)
        goto nomem;
    s->grpc = grpc_server_create(server_args(cfg, args), NULL);
    for (size_t i = 0; i < nmethods; i++)
        s->method_handles[i] = grpc_server_register_method(
            s->grpc, tse_methods[i]->path, NULL,
            tse_methods[i]->streaming_in ? GRPC_SRM_PAYLOAD_NONE
                                         : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    for (int i = 0; i < s->nworkers; i++) {
        s->cqs[i] = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->grpc, s->cqs[i], NULL);
    }
    if (cfg->tls_cert[0] != '\0' && tse_tls_create(cfg, &s->tls, err) != TSE_OK) {
        tse_server_destroy(s);
        return err != NULL ? err->code : TSE_INVALID;
    }
    creds =
        s->tls != NULL ? tse_tls_credentials(s->tls) : grpc_insecure_server_credentials_create();
    if (creds == NULL)
        goto nomem;
    s->port = grpc_server_add_http2_port(s->grpc, cfg->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        tse_server_destroy(s);
        return tse_error_set(err, TSE_UNAVAILABLE, "GRPC_LISTEN",
                             "cannot listen on %s (address in use or invalid)", cfg->listen);
    }
    *out = s;
    return TSE_OK;
nomem:
    tse_server_destroy(s);
    return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
}

tse_status tse_server_reload(tse_server *s, tse_error *err)
{
    if (s->tls == NULL)
        return TSE_OK;
    if (tse_tls_reload(s->tls, err) != TSE_OK)
        return err != NULL ? err->code : TSE_INVALID;
    tse_log(TSE_LOG_INFO, "tls certificate reloaded: new connections use it",
            (const char *[]){"cert", s->config->tls_cert, NULL});
    return TSE_OK;
}

tse_status tse_server_start(tse_server *s, tse_error *err)
{
    grpc_server_start(s->grpc);
    s->started = true;
    for (int w = 0; w < s->nworkers; w++) {
        for (size_t i = 0; tse_methods[i]; i++)
            for (int k = 0; k < tse_methods[i]->backlog; k++)
                post_request(s, tse_methods[i], s->method_handles[i], w);
        for (int k = 0; k < tse_method_unimplemented.backlog; k++)
            post_request(s, &tse_method_unimplemented, NULL, w);
    }
    for (int w = 0; w < s->nworkers; w++) {
        char name[16]; /* the kernel's limit, for top -H and perf */
        if (pthread_create(&s->threads[w], NULL, worker_main, s->cqs[w]) != 0)
            return tse_error_set(err, TSE_INTERNAL, NULL, "cannot start worker thread");
        snprintf(name, sizeof(name), "tse-grpc-%d", w % 1000);
        pthread_setname_np(s->threads[w], name);
    }
    return TSE_OK;
}

void tse_server_set_serving(tse_server *s, bool serving)
{
    bool was = atomic_exchange(&s->serving, serving);

    if (was != serving)
        tse_health_notify(s);
}

/* Waits until no call object is alive, or until deadline_us (0: for ever).
 * Returns true when none is. */
static bool wait_calls(tse_server *s, int64_t deadline_us)
{
    bool none;

    pthread_mutex_lock(&s->calls_lock);
    while (s->live_calls > 0) {
        if (deadline_us > 0 && tse_clock_us() >= deadline_us)
            break;
        /* Winding down, PublishStreams end once their clients go quiet. */
        if (atomic_load(&s->shutting_down)) {
            pthread_mutex_unlock(&s->calls_lock);
            tse_publish_shutdown(s);
            pthread_mutex_lock(&s->calls_lock);
            if (s->live_calls == 0)
                break;
        }
        struct timespec ts = tse_clock_deadline_on(CLOCK_REALTIME, 20);
        pthread_cond_timedwait(&s->calls_cond, &s->calls_lock, &ts);
    }
    none = s->live_calls == 0;
    pthread_mutex_unlock(&s->calls_lock);
    return none;
}

/* What is left to stop after the grace, at most: cancelled calls answer at
 * once and their connections close with them. */
#define TSE_SHUTDOWN_MARGIN_MS 500

/* Waits for the server's shutdown notification until deadline_us. */
static bool wait_notified(grpc_completion_queue *scq, tse_server *s, int64_t deadline_us)
{
    int64_t left_us = deadline_us - tse_clock_us();
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_micros(left_us > 0 ? left_us : 0, GPR_TIMESPAN));

    return grpc_completion_queue_pluck(scq, s, until, NULL).type == GRPC_OP_COMPLETE;
}

/* Once no call is left, connections are idle: they get a moment to answer
 * the GOAWAY, not the whole grace. */
#define TSE_IDLE_CONNECTIONS_MS 100

static int64_t idle_deadline(int64_t deadline_us)
{
    int64_t soon = tse_clock_us() + TSE_IDLE_CONNECTIONS_MS * 1000;

    return soon < deadline_us ? soon : deadline_us;
}

bool tse_server_shutdown(tse_server *s, int64_t grace_ms)
{
    grpc_completion_queue *scq;
    int64_t deadline = tse_clock_us() + grace_ms * 1000;
    bool clean = true;

    if (!s->started)
        return true;
    atomic_store(&s->shutting_down, true);
    scq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(s->grpc, scq, s);
    /* Endless streams (health Watch, Subscribe) would only run out the
     * grace period; PublishStreams answer what they read and end; waiting
     * pulls answer now. */
    tse_health_shutdown(s);
    tse_subscribe_shutdown(s);
    tse_publish_shutdown(s);
    tse_delivery_end_pulls(s->delivery);
    /* Posted requests fail now and are freed by their workers; in-flight
     * calls get the grace period. gRPC's notification also waits for every
     * connection to go (an idle one gets 20 s to answer the GOAWAY ping):
     * once the calls are done, connections still open are closed. */
    if (!wait_calls(s, deadline) || !wait_notified(scq, s, idle_deadline(deadline))) {
        if (!wait_calls(s, tse_clock_us()))
            tse_logf(TSE_LOG_WARN, "shutdown: cancelling calls still open after %lld ms",
                     (long long)grace_ms);
        grpc_server_cancel_all_calls(s->grpc); /* also disconnects every connection */
        deadline = tse_clock_us() + TSE_SHUTDOWN_MARGIN_MS * 1000;
        clean = wait_calls(s, deadline) && wait_notified(scq, s, deadline);
    }
    if (!clean) {
        /* Something in gRPC outlives the grace: the process ends anyway
         * (main), without tearing down what may still be in use. */
        tse_logf(TSE_LOG_ERROR,
                 "shutdown: gRPC did not stop within %d ms of the grace; "
                 "leaving it to the process exit",
                 TSE_SHUTDOWN_MARGIN_MS);
        return false;
    }
    grpc_server_destroy(s->grpc);
    s->grpc = NULL;
    grpc_completion_queue_shutdown(scq);
    grpc_completion_queue_destroy(scq);
    for (int w = 0; w < s->nworkers; w++)
        grpc_completion_queue_shutdown(s->cqs[w]);
    for (int w = 0; w < s->nworkers; w++)
        pthread_join(s->threads[w], NULL);
    s->started = false;
    return true;
}

void tse_server_destroy(tse_server *s)
{
    if (s == NULL)
        return;
    if (s->grpc)
        grpc_server_destroy(s->grpc);
    for (int w = 0; s->cqs && w < s->nworkers; w++) {
        if (s->cqs[w] == NULL)
            continue;
        if (!s->started) {
            /* Never started (or shut down): drain what is left. */
            grpc_completion_queue_shutdown(s->cqs[w]);
            while (grpc_completion_queue_next(s->cqs[w], gpr_inf_past(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
        }
        grpc_completion_queue_destroy(s->cqs[w]);
    }
    free(s->cqs);
    free(s->threads);
    free(s->method_handles);
    free(s->catalog_answer);
    tse_tls_destroy(s->tls); /* after the server: its fetcher is ours */
    pthread_mutex_destroy(&s->calls_lock);
    pthread_cond_destroy(&s->calls_cond);
    pthread_mutex_destroy(&s->watch_lock);
    free(s);
}
