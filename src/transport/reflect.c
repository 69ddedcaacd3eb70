/*
 * reflect.c - the ServerReflectionInfo streams (grpc.reflection.v1alpha and
 * v1): one response per request, in order, answered from the read-only
 * reflection index (reflection/reflection.h). One message is in flight at a
 * time: receive, answer, send, receive again; after the client half-closes
 * the status is sent.
 */
#include <stdlib.h>
#include <string.h>

#include "obs/log.h"
#include "transport/internal.h"

typedef struct reflect_call {
    tse_call base;
    tse_reflection_version version;
    tse_tag recv_tag, send_tag, close_tag;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    grpc_slice status_details;
    int cancelled;
    bool md_sent;
    unsigned answered;
} reflect_call;

static void reflect_release(tse_call *c)
{
    reflect_call *rc = (reflect_call *)c;

    if (rc->recv_buf)
        grpc_byte_buffer_destroy(rc->recv_buf);
    if (rc->send_buf)
        grpc_byte_buffer_destroy(rc->send_buf);
    grpc_slice_unref(rc->status_details);
}

static void reflect_post_recv(reflect_call *rc)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};

    op.data.recv_message.recv_message = &rc->recv_buf;
    tse_call_start_batch_locked(&rc->base, &op, 1, &rc->recv_tag);
}

/* Sends ops with initial metadata first if not yet sent. */
static void reflect_send(reflect_call *rc, grpc_op *op)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (!rc->md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n++] = *op;
    rc->md_sent = true;
    tse_call_start_batch_locked(&rc->base, ops, n, &rc->send_tag);
}

static void reflect_finish(reflect_call *rc, grpc_status_code code, const char *msg)
{
    grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};

    rc->status_details = grpc_slice_from_copied_string(msg);
    op.data.send_status_from_server.status = code;
    op.data.send_status_from_server.status_details = &rc->status_details;
    reflect_send(rc, &op);
}

static void reflect_on_recv(tse_tag *tag, bool ok)
{
    reflect_call *rc = TSE_CONTAINER_OF(tag, reflect_call, recv_tag);
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    grpc_byte_buffer_reader reader;
    uint8_t *answer = NULL;
    size_t answer_len = 0;
    tse_error err;
    grpc_slice all;

    pthread_mutex_lock(&rc->base.lock);
    if (!ok || rc->recv_buf == NULL) {
        if (ok)
            reflect_finish(rc, GRPC_STATUS_OK, "");
        goto out;
    }
    if (!grpc_byte_buffer_reader_init(&reader, rc->recv_buf)) {
        reflect_finish(rc, GRPC_STATUS_INTERNAL, "cannot read the request");
        goto out;
    }
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    grpc_byte_buffer_destroy(rc->recv_buf);
    rc->recv_buf = NULL;
    if (tse_reflection_answer(rc->base.server->reflection, rc->version, GRPC_SLICE_START_PTR(all),
                              GRPC_SLICE_LENGTH(all), &answer, &answer_len, &err) != TSE_OK) {
        grpc_slice_unref(all);
        reflect_finish(rc, tse_status_to_grpc(err.code), err.message);
        goto out;
    }
    grpc_slice_unref(all);
    grpc_slice slice = grpc_slice_new(answer, answer_len, free);
    rc->send_buf = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    op.data.send_message.send_message = rc->send_buf;
    rc->answered++;
    reflect_send(rc, &op);
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
    char n[32];

    snprintf(n, sizeof(n), "%u", rc->answered);
    tse_log_request(rc->base.method->name, rc->cancelled ? "CANCELLED" : "OK",
                    tse_now_us() - rc->base.start_us, rc->base.correlation_id,
                    (const char *[]){"answered", n, NULL});
    tse_call_unref(&rc->base); /* the close op's */
    tse_call_unref(&rc->base); /* the handler's */
}

static void reflect_start(tse_call *c, tse_reflection_version version)
{
    reflect_call *rc = (reflect_call *)c;
    grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};

    rc->version = version;
    rc->recv_tag.fn = reflect_on_recv;
    rc->send_tag.fn = reflect_on_send;
    rc->close_tag.fn = reflect_on_close;
    rc->status_details = grpc_empty_slice();
    op.data.recv_close_on_server.cancelled = &rc->cancelled;
    pthread_mutex_lock(&c->lock);
    if (!tse_call_start_batch_locked(c, &op, 1, &rc->close_tag)) {
        pthread_mutex_unlock(&c->lock);
        tse_call_unref(c);
        return;
    }
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
    .start = start_v1alpha,
    .release = reflect_release,
};

const tse_method tse_method_reflection_v1 = {
    .path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    .name = "Reflection.v1",
    .streaming_in = true,
    .backlog = 2,
    .call_size = sizeof(reflect_call),
    .start = start_v1,
    .release = reflect_release,
};
