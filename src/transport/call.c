/*
 * call.c - the life of one call object: references, batches, encoding and
 * the unary finish. See internal.h for the ownership rules.
 */
#include <grpc/support/alloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "obs/log.h"
#include "transport/internal.h"

int64_t tse_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void call_free(tse_call *c)
{
    tse_server *s = c->server;

    if (c->method->release)
        c->method->release(c);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->metadata);
    grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->response)
        grpc_byte_buffer_destroy(c->response);
    grpc_slice_unref(c->status_details);
    pthread_mutex_destroy(&c->lock);
    free(c);

    /* The server waits on this count at shutdown. */
    pthread_mutex_lock(&s->calls_lock);
    if (--s->live_calls == 0)
        pthread_cond_broadcast(&s->calls_cond);
    pthread_mutex_unlock(&s->calls_lock);
}

void tse_call_ref(tse_call *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

void tse_call_unref(tse_call *c)
{
    int left;

    pthread_mutex_lock(&c->lock);
    left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left == 0)
        call_free(c);
}

bool tse_call_start_batch_locked(tse_call *c, const grpc_op *ops, size_t n, tse_tag *tag)
{
    grpc_call_error e;

    c->refs++;
    e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e == GRPC_CALL_OK)
        return true;
    c->refs--;
    tse_logf(TSE_LOG_DEBUG, "%s: batch refused (%d)", c->method->name, (int)e);
    return false;
}

ProtobufCMessage *tse_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader reader;
    ProtobufCMessage *msg;
    grpc_slice all;

    if (bb == NULL)
        return NULL;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return msg;
}

grpc_byte_buffer *tse_encode(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    grpc_byte_buffer *bb;

    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

void tse_call_log_kv(tse_call *c, const char *key, const char *value)
{
    int i = 0;

    while (c->log_kv[2 * i] != NULL && i < TSE_LOG_KV_MAX)
        i++;
    if (i == TSE_LOG_KV_MAX)
        return;
    snprintf(c->log_buf[i], sizeof(c->log_buf[i]), "%s", value ? value : "");
    c->log_kv[2 * i] = key;
    c->log_kv[2 * i + 1] = c->log_buf[i];
}

static void on_finished(tse_tag *tag, bool ok)
{
    tse_call *c = TSE_CONTAINER_OF(tag, tse_call, finished);

    tse_call_unref(c); /* the batch's */
    tse_call_unref(c); /* the handler's */
}

void tse_call_finish_unary(tse_call *c, const ProtobufCMessage *resp, grpc_status_code code,
                           const char *details)
{
    grpc_op ops[4];
    size_t n = 0;

    tse_log_request(c->method->name, tse_grpc_code_name(code), tse_now_us() - c->start_us,
                    c->correlation_id, c->log_kv);
    pthread_mutex_lock(&c->lock);
    c->status = code;
    c->status_details = grpc_slice_from_copied_string(details ? details : "");
    memset(ops, 0, sizeof(ops));
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (resp != NULL && code == GRPC_STATUS_OK)
        c->response = tse_encode(resp);
    /* A handler may also have encoded the response itself into c->response. */
    if (c->response != NULL && code == GRPC_STATUS_OK) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->response;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    if (!c->close_started) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    }
    c->finished.fn = on_finished;
    if (!tse_call_start_batch_locked(c, ops, n, &c->finished)) {
        pthread_mutex_unlock(&c->lock);
        tse_call_unref(c); /* the handler's */
        return;
    }
    pthread_mutex_unlock(&c->lock);
}

void tse_call_fail(tse_call *c, const tse_error *err)
{
    char msg[TSE_ERROR_FIELD_MAX + TSE_ERROR_MESSAGE_MAX + 4];

    tse_error_describe(err, msg, sizeof(msg));
    tse_call_finish_unary(c, NULL, tse_status_to_grpc(err->code), msg);
}
