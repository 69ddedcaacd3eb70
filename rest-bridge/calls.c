/*
 * calls.c - the bridge's unary calls on the C SDK's asynchronous calls, and
 * the tick thread; see calls.h.
 *
 * A unary call is a small record around its SDK call. Calls in flight sit
 * on a list (under the lock) so that shutdown can cancel them and the tick
 * can watch the HTTP socket of a long-poll: an entry leaves the list before
 * its callback runs, so a cancel never touches a finished call. Lock
 * order: this module's lock, then the SDK's.
 */
#include "calls.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "list.h"

#define MAX_TICKS 8

typedef struct unary unary;

struct tsb_calls {
    tse_client *client;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* the fields below */
    pthread_cond_t wake;  /* stop */
    bool stop;
    unary *calls; /* in flight */
    size_t ncalls;
    int refusing; /* 0; 1: long polls are cancelled at once; 2: every call (shutdown) */
    struct {
        tsb_calls_tick_fn fn;
        void *arg;
    } ticks[MAX_TICKS];
    size_t nticks;
};

/* One unary call in flight. */
struct unary {
    tsb_calls *r;
    tse_client_call *call;
    const ProtobufCMessageDescriptor *desc;
    int watch_fd;
    tsb_calls_done_fn done;
    void *arg;
    unary *prev, *next;
};

/* ---- the tick thread ---- */

/* Cancels the watched calls whose HTTP client hung up. Under r->lock the
 * watched sockets stay open: their connections are suspended until the
 * call's callback, which runs only after the call left the list. */
static void watch_hangups(tsb_calls *r)
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
                tse_client_call_cancel(who[i]->call, TSE_CLIENT_CANCELLED, TSB_CALLS_HANGUP);
    }
    pthread_mutex_unlock(&r->lock);
    free(fds);
    free(who);
}

static void run_ticks(tsb_calls *r, int64_t now)
{
    size_t n;

    watch_hangups(r);
    pthread_mutex_lock(&r->lock);
    n = r->nticks;
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < n; i++)
        r->ticks[i].fn(r->ticks[i].arg, now);
}

static void *tick_main(void *arg)
{
    tsb_calls *r = arg;
    struct timespec until;
    bool stop;

    for (;;) {
        until = tse_clock_deadline_ts(TSB_CALLS_TICK_MS);
        pthread_mutex_lock(&r->lock);
        while (!r->stop && pthread_cond_timedwait(&r->wake, &r->lock, &until) == 0)
            ;
        stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            return NULL;
        run_ticks(r, tse_clock_ms());
    }
}

/* ---- lifetime ---- */

tse_status tsb_calls_create(tse_client *client, tsb_calls **out, tse_error *err)
{
    tsb_calls *r = calloc(1, sizeof(*r));
    pthread_condattr_t ca;

    if (r == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    r->client = client;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&r->thread, NULL, tick_main, r) != 0) {
        tsb_calls_destroy(r);
        return tse_error_set(err, TSE_NOMEM, NULL, "cannot start the tick thread");
    }
    r->started = true;
    *out = r;
    return TSE_OK;
}

void tsb_calls_destroy(tsb_calls *r)
{
    if (r == NULL)
        return;
    tsb_calls_cancel_all(r);
    /* Their callbacks run on the SDK's thread and use r: wait for them. */
    pthread_mutex_lock(&r->lock);
    while (r->ncalls > 0) {
        pthread_mutex_unlock(&r->lock);
        usleep(1000);
        pthread_mutex_lock(&r->lock);
    }
    r->stop = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
    if (r->started)
        pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void tsb_calls_add_tick(tsb_calls *r, tsb_calls_tick_fn fn, void *arg)
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

static void unlist(unary *u)
{
    tsb_calls *r = u->r;

    pthread_mutex_lock(&r->lock);
    TSB_LIST_UNLINK(r->calls, u);
    r->ncalls--;
    pthread_mutex_unlock(&r->lock);
}

/* The SDK's callback, on its thread: the outcome as a status and message. */
static void unary_done(void *arg, tse_client_status status, const tse_client_error *err,
                       const void *resp, size_t len)
{
    unary *u = arg;
    ProtobufCMessage *msg = NULL;
    tsb_calls_status st;

    unlist(u);
    tsb_calls_status_set(&st, status, err);
    if (status == TSE_CLIENT_OK &&
        (msg = protobuf_c_message_unpack(u->desc, NULL, len, resp)) == NULL) {
        tsb_calls_status_fail(&st, TSE_INTERNAL, "the service's answer did not decode");
    }
    u->done(u->arg, &st, msg);
    tse_client_call_release(u->call);
    free(u);
}

/* Starts u's SDK call, listed under r->lock so that its callback (which
 * unlists it) cannot run before it is on the list. */
static bool unary_start(tsb_calls *r, unary *u, const char *method, const uint8_t *req, size_t len,
                        const char *correlation_id, const char *authorization, int timeout_ms)
{
    tse_client_metadata md[2];
    tse_client_call_options o = {.timeout_ms = timeout_ms > 0 ? timeout_ms : -1, .metadata = md};
    bool ok;

    if (correlation_id && correlation_id[0])
        md[o.n_metadata++] = (tse_client_metadata){"x-correlation-id", correlation_id};
    if (authorization && authorization[0])
        md[o.n_metadata++] = (tse_client_metadata){"authorization", authorization};
    pthread_mutex_lock(&r->lock);
    ok = tse_client_call_start(r->client, method, req, len, &o, unary_done, u, &u->call, NULL) ==
         TSE_CLIENT_OK;
    if (ok) {
        /* A call started once shutdown cancelled its kind ends at once,
         * like those in flight did. */
        if (r->refusing >= (u->watch_fd >= 0 ? 1 : 2))
            tse_client_call_cancel(u->call, TSE_CLIENT_UNAVAILABLE,
                                   "the REST bridge is shutting down");
        TSB_LIST_PUSH(r->calls, u);
        r->ncalls++;
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

/* The method called name of a service the bridge calls, and its path. */
static const ProtobufCMethodDescriptor *method_of(const char *name, char *path, size_t len)
{
    static const ProtobufCServiceDescriptor *const services[] = {
        &tracseq__events__v1__event_service__descriptor, &grpc__health__v1__health__descriptor};
    const ProtobufCMethodDescriptor *m;

    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
        if ((m = protobuf_c_service_descriptor_get_method_by_name(services[i], name)) != NULL) {
            snprintf(path, len, "/%s/%s", services[i]->name, m->name);
            return m;
        }
    }
    return NULL;
}

bool tsb_calls_unary(tsb_calls *r, const char *method, const ProtobufCMessage *req,
                     const char *correlation_id, const char *authorization, int timeout_ms,
                     int watch_fd, tsb_calls_done_fn done, void *arg)
{
    char path[128];
    const ProtobufCMethodDescriptor *m = method_of(method, path, sizeof(path));
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t small[1024];
    uint8_t *buf = len > sizeof(small) ? malloc(len) : small;
    unary *u = m != NULL ? calloc(1, sizeof(*u)) : NULL;
    bool ok = false;

    if (u != NULL && buf != NULL) {
        u->r = r;
        u->desc = m->output;
        u->watch_fd = watch_fd;
        u->done = done;
        u->arg = arg;
        protobuf_c_message_pack(req, buf);
        ok = unary_start(r, u, path, buf, len, correlation_id, authorization, timeout_ms);
    }
    if (!ok)
        free(u);
    if (buf != small)
        free(buf);
    return ok;
}

/* Cancels the calls in flight of the kinds refused from now on. */
static void refuse(tsb_calls *r, int level)
{
    pthread_mutex_lock(&r->lock);
    if (r->refusing < level)
        r->refusing = level;
    for (unary *u = r->calls; u; u = u->next)
        if (level >= 2 || u->watch_fd >= 0)
            tse_client_call_cancel(u->call, TSE_CLIENT_UNAVAILABLE,
                                   "the REST bridge is shutting down");
    pthread_mutex_unlock(&r->lock);
}

void tsb_calls_cancel_waits(tsb_calls *r)
{
    refuse(r, 1);
}

void tsb_calls_cancel_all(tsb_calls *r)
{
    refuse(r, 2);
}
