/*
 * health.c - grpc.health.v1.Health: Check (unary) and Watch (server
 * streaming). The server is SERVING while Redis answers; the status is the
 * same for "" and for tracseq.events.v1.EventService; any other name is
 * unknown (Check: NOT_FOUND; Watch: SERVICE_UNKNOWN, and the stream stays
 * open as the protocol asks).
 *
 * Watch streams live in the server's list (watch_lock) from start until
 * their close op completes. A change of status pushes the newest status to
 * every stream (once any send in flight completes), so a flapping
 * Redis never queues sends without bound.
 */
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "obs/log.h"
#include "transport/internal.h"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

/* The status of a named service right now. */
static serving_status status_of(tse_server *s, const char *service)
{
    if (service[0] != '\0' && strcmp(service, "tracseq.events.v1.EventService") != 0 &&
        strcmp(service, "grpc.health.v1.Health") != 0)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    if (atomic_load(&s->serving) && !atomic_load(&s->shutting_down))
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

/* ---- Check ---- */

static void check_start(tse_call *c)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)c->request;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    resp.status = status_of(c->server, req->service);
    tse_call_log_kv(c, "service", req->service);
    if (resp.status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN)
        tse_call_fail(c, TSE_ERROR(TSE_NOT_FOUND, "", "unknown service"));
    else
        tse_call_finish_unary(c, &resp.base, NULL);
}

const tse_method tse_method_health_check = {
    .path = "/grpc.health.v1.Health/Check",
    .name = "Health.Check",
    .streaming_in = false,
    .open = true, /* probes carry no token */
    .backlog = 4,
    .call_size = sizeof(tse_call),
    .request = &grpc__health__v1__health_check_request__descriptor,
    .start = check_start,
};

/* ---- Watch ---- */

typedef struct health_watch {
    tse_call base;
    tse_tag send_tag, close_tag;
    grpc_byte_buffer *send_buf;
    char service[256];
    int sent_status; /* -1: nothing sent yet */
    bool send_pending, ended;
} health_watch;

/* Sends the current status if it changed and no send is in flight. Called
 * with the call's lock held. */
static void watch_push(health_watch *w)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

    if (w->send_pending || w->ended || !tse_call_active_locked(&w->base))
        return;
    resp.status = status_of(w->base.server, w->service);
    if ((int)resp.status == w->sent_status)
        return;
    w->send_buf = tse_encode(&resp.base);
    w->sent_status = (int)resp.status;
    w->send_pending = tse_call_send_locked(&w->base, w->send_buf, false, &w->send_tag);
}

static void watch_on_send(tse_tag *tag, bool ok)
{
    health_watch *w = TSE_CONTAINER_OF(tag, health_watch, send_tag);

    pthread_mutex_lock(&w->base.lock);
    w->send_pending = false;
    grpc_byte_buffer_destroy(w->send_buf);
    w->send_buf = NULL;
    if (ok)
        watch_push(w);
    pthread_mutex_unlock(&w->base.lock);
    tse_call_unref(&w->base);
}

static void watch_on_close(tse_tag *tag, bool ok)
{
    health_watch *w = TSE_CONTAINER_OF(tag, health_watch, close_tag);

    tse_call_unlist(&w->base, &w->base.server->watches);
    pthread_mutex_lock(&w->base.lock);
    w->ended = true;
    /* A Watch ends only when the client (or the shutdown) cancels it. */
    if (tse_call_active_locked(&w->base))
        tse_call_finish_locked(&w->base, NULL, TSE_ERROR(TSE_CANCELLED, "", "cancelled"));
    pthread_mutex_unlock(&w->base.lock);
    tse_call_unref(&w->base); /* the close op's */
}

static void watch_release(tse_call *c)
{
    health_watch *w = (health_watch *)c;

    if (w->send_buf)
        grpc_byte_buffer_destroy(w->send_buf);
}

static void watch_start(tse_call *c)
{
    health_watch *w = (health_watch *)c;
    tse_server *s = c->server;
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)c->request;

    w->send_tag.fn = watch_on_send;
    w->close_tag.fn = watch_on_close;
    w->sent_status = -1;
    snprintf(w->service, sizeof(w->service), "%s", req->service);
    tse_call_log_kv(c, "service", w->service);
    /* Lock order everywhere: watch_lock, then a call's lock. */
    pthread_mutex_lock(&s->watch_lock);
    pthread_mutex_lock(&c->lock);
    if (tse_call_open_stream_locked(c, &s->watches, &w->close_tag))
        watch_push(w);
    else
        w->ended = true;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&s->watch_lock);
}

const tse_method tse_method_health_watch = {
    .path = "/grpc.health.v1.Health/Watch",
    .name = "Health.Watch",
    .streaming_in = false,
    .open = true,
    .backlog = 2,
    .call_size = sizeof(health_watch),
    .request = &grpc__health__v1__health_check_request__descriptor,
    .start = watch_start,
    .release = watch_release,
};

void tse_health_notify(tse_server *s)
{
    tse_logf(atomic_load(&s->serving) ? TSE_LOG_INFO : TSE_LOG_WARN, "health: %s",
             atomic_load(&s->serving) ? "SERVING" : "NOT_SERVING (Redis unreachable)");
    pthread_mutex_lock(&s->watch_lock);
    for (tse_call *c = s->watches.head; c; c = c->next_live) {
        pthread_mutex_lock(&c->lock);
        watch_push((health_watch *)c);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&s->watch_lock);
}

void tse_health_shutdown(tse_server *s)
{
    tse_call_cancel_all(s, &s->watches, "the server is shutting down");
}
