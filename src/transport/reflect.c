/*
 * reflect.c - the ServerReflectionInfo streams (grpc.reflection.v1alpha and
 * v1): one response per request, in order, answered from the read-only
 * reflection index (reflection/reflection.h). One message is in flight at a
 * time: receive, answer, send, receive again; after the client half-closes
 * the status is sent.
 */
#include <stdio.h>
#include <stdlib.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "transport/internal.h"

typedef struct reflect_call {
    tse_call base;
    tse_reflection_version version;
    tse_tag recv_tag, send_tag, close_tag;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    unsigned answered;
} reflect_call;

static void reflect_release(tse_call *c)
{
    reflect_call *rc = (reflect_call *)c;

    if (rc->recv_buf)
        grpc_byte_buffer_destroy(rc->recv_buf);
    if (rc->send_buf)
        grpc_byte_buffer_destroy(rc->send_buf);
}

static void reflect_post_recv(reflect_call *rc)
{
    if (tse_call_active_locked(&rc->base))
        tse_call_recv_locked(&rc->base, &rc->recv_buf, &rc->recv_tag);
}

/* Ends the stream; the request line counts the answers. */
static void reflect_finish(reflect_call *rc, const tse_error *err)
{
    char n[32];

    snprintf(n, sizeof(n), "%u", rc->answered);
    tse_call_log_kv(&rc->base, "answered", n);
    tse_call_finish_locked(&rc->base, NULL, err);
}

static void reflect_on_recv(tse_tag *tag, bool ok)
{
    reflect_call *rc = TSE_CONTAINER_OF(tag, reflect_call, recv_tag);
    grpc_byte_buffer_reader reader;
    uint8_t *answer = NULL;
    size_t answer_len = 0;
    tse_error err;
    grpc_slice all;

    pthread_mutex_lock(&rc->base.lock);
    /* Finished already: the close op (a cancel) or the shutdown came first
     * on another poller thread; the call has had its one answer. */
    if (!tse_call_active_locked(&rc->base))
        goto out;
    if (!ok || rc->recv_buf == NULL) {
        if (ok)
            reflect_finish(rc, NULL);
        goto out;
    }
    if (!grpc_byte_buffer_reader_init(&reader, rc->recv_buf)) {
        reflect_finish(rc, TSE_ERROR(TSE_INTERNAL, "", "cannot read the request"));
        goto out;
    }
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer_destroy(rc->recv_buf);
    rc->recv_buf = NULL;
    /* The reflection index unpacks the request: bound it first, as every
     * request is bounded (tse_decode). */
    if (!tse_scan_request(rc->base.method->request, GRPC_SLICE_START_PTR(all),
                          GRPC_SLICE_LENGTH(all), &err)) {
        grpc_slice_unref(all);
        reflect_finish(rc, &err);
        goto out;
    }
    if (tse_reflection_answer(rc->base.server->reflection, rc->version, GRPC_SLICE_START_PTR(all),
                              GRPC_SLICE_LENGTH(all), &answer, &answer_len, &err) != TSE_OK) {
        grpc_slice_unref(all);
        /* The index's sentences stand alone: no field before them. */
        err.field[0] = '\0';
        reflect_finish(rc, &err);
        goto out;
    }
    grpc_slice_unref(all);
    rc->send_buf = tse_byte_buffer_take(grpc_slice_new(answer, answer_len, free));
    rc->answered++;
    tse_call_send_locked(&rc->base, rc->send_buf, false, &rc->send_tag);
out:
    pthread_mutex_unlock(&rc->base.lock);
    tse_call_unref(&rc->base);
}

static void reflect_on_send(tse_tag *tag, bool ok)
{
    reflect_call *rc = TSE_CONTAINER_OF(tag, reflect_call, send_tag);

    pthread_mutex_lock(&rc->base.lock);
    if (rc->send_buf) {
        grpc_byte_buffer_destroy(rc->send_buf);
        rc->send_buf = NULL;
        if (ok)
            reflect_post_recv(rc);
    }
    pthread_mutex_unlock(&rc->base.lock);
    tse_call_unref(&rc->base);
}

static void reflect_on_close(tse_tag *tag, bool ok)
{
    reflect_call *rc = TSE_CONTAINER_OF(tag, reflect_call, close_tag);

    pthread_mutex_lock(&rc->base.lock);
    /* Still ACTIVE: the client cancelled before the status went out. */
    if (tse_call_active_locked(&rc->base))
        reflect_finish(rc, TSE_ERROR(TSE_CANCELLED, "", "cancelled by the client"));
    pthread_mutex_unlock(&rc->base.lock);
    tse_call_unref(&rc->base); /* the close op's */
}

static void reflect_start(tse_call *c, tse_reflection_version version)
{
    reflect_call *rc = (reflect_call *)c;

    rc->version = version;
    rc->recv_tag.fn = reflect_on_recv;
    rc->send_tag.fn = reflect_on_send;
    rc->close_tag.fn = reflect_on_close;
    pthread_mutex_lock(&c->lock);
    if (tse_call_open_stream_locked(c, NULL, &rc->close_tag))
        reflect_post_recv(rc);
    pthread_mutex_unlock(&c->lock);
}

static void start_v1alpha(tse_call *c)
{
    reflect_start(c, TSE_REFLECTION_V1ALPHA);
}

static void start_v1(tse_call *c)
{
    reflect_start(c, TSE_REFLECTION_V1);
}

const tse_method tse_method_reflection_v1alpha = {
    .path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    .name = "Reflection.v1alpha",
    .streaming_in = true,
    .backlog = 2,
    .call_size = sizeof(reflect_call),
    .request = &grpc__reflection__v1alpha__server_reflection_request__descriptor,
    .start = start_v1alpha,
    .release = reflect_release,
};

const tse_method tse_method_reflection_v1 = {
    .path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    .name = "Reflection.v1",
    .streaming_in = true,
    .backlog = 2,
    .call_size = sizeof(reflect_call),
    .request = &grpc__reflection__v1__server_reflection_request__descriptor,
    .start = start_v1,
    .release = reflect_release,
};
