/*
 * grpc_client.c - blocking test client on the gRPC C core; see
 * grpc_client.h.
 *
 * A stream keeps one pluck queue. A receive that times out leaves its op in
 * flight; the next receive waits for that same op instead of starting
 * another (one op of each type at a time).
 */
#include "grpc_client.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tse_test_stream {
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata md;
    grpc_byte_buffer *recv_buf;
    grpc_status_code code;
    grpc_slice details;
    int tag_status, tag_recv, tag_send, tag_md;
    bool recv_pending, status_started, md_received;
};

grpc_channel *tse_test_channel(const char *addr)
{
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(addr, creds, NULL);

    grpc_channel_credentials_release(creds);
    return ch;
}

static gpr_timespec after_ms(int ms)
{
    if (ms < 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static bool wait_tag(tse_test_stream *s, void *tag, int timeout_ms, bool *timed_out)
{
    grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, after_ms(timeout_ms), NULL);

    if (timed_out)
        *timed_out = ev.type == GRPC_QUEUE_TIMEOUT;
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static grpc_byte_buffer *encode(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(len);
    grpc_byte_buffer *bb;

    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

static ProtobufCMessage *decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader reader;
    ProtobufCMessage *msg;
    grpc_slice all;

    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return msg;
}

tse_test_stream *tse_test_stream_open(grpc_channel *ch, const char *method, int timeout_ms,
                                      const char *md_key, const char *md_value)
{
    tse_test_stream *s = calloc(1, sizeof(*s));
    grpc_slice m = grpc_slice_from_copied_string(method);
    grpc_op ops[2];

    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                       after_ms(timeout_ms), NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (md_key != NULL) {
        s->md.key = grpc_slice_from_copied_string(md_key);
        s->md.value = grpc_slice_from_copied_string(md_value);
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = &s->md;
    }
    grpc_call_start_batch(s->call, ops, 1, &s->tag_send, NULL);
    wait_tag(s, &s->tag_send, -1, NULL);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[0].data.recv_status_on_client.status = &s->code;
    ops[0].data.recv_status_on_client.status_details = &s->details;
    grpc_call_start_batch(s->call, ops, 1, &s->tag_status, NULL);
    s->status_started = true;
    return s;
}

static grpc_byte_buffer *raw(const void *data, size_t len)
{
    grpc_slice slice = grpc_slice_from_copied_buffer(data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);

    grpc_slice_unref(slice);
    return bb;
}

static bool send_buffer(tse_test_stream *s, grpc_byte_buffer *bb)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    bool ok;

    op.data.send_message.send_message = bb;
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(bb);
        return false;
    }
    ok = wait_tag(s, &s->tag_send, -1, NULL);
    grpc_byte_buffer_destroy(bb);
    return ok;
}

bool tse_test_stream_send_raw(tse_test_stream *s, const void *data, size_t len)
{
    return send_buffer(s, raw(data, len));
}

bool tse_test_stream_send(tse_test_stream *s, const ProtobufCMessage *msg)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    bool ok;

    op.data.send_message.send_message = encode(msg);
    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(op.data.send_message.send_message);
        return false;
    }
    ok = wait_tag(s, &s->tag_send, -1, NULL);
    grpc_byte_buffer_destroy(op.data.send_message.send_message);
    return ok;
}

bool tse_test_stream_close_send(tse_test_stream *s)
{
    grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};

    if (grpc_call_start_batch(s->call, &op, 1, &s->tag_send, NULL) != GRPC_CALL_OK)
        return false;
    return wait_tag(s, &s->tag_send, -1, NULL);
}

ProtobufCMessage *tse_test_stream_recv(tse_test_stream *s, const ProtobufCMessageDescriptor *desc,
                                       int timeout_ms, bool *timed_out)
{
    ProtobufCMessage *msg = NULL;
    bool ok;

    if (timed_out)
        *timed_out = false;
    if (!s->recv_pending) {
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof(ops));
        if (!s->md_received) {
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
            s->md_received = true;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &s->recv_buf;
        if (grpc_call_start_batch(s->call, ops, n, &s->tag_recv, NULL) != GRPC_CALL_OK)
            return NULL;
        s->recv_pending = true;
    }
    ok = wait_tag(s, &s->tag_recv, timeout_ms, timed_out);
    if (timed_out && *timed_out)
        return NULL;
    s->recv_pending = false;
    if (ok && s->recv_buf != NULL)
        msg = decode(s->recv_buf, desc);
    if (s->recv_buf) {
        grpc_byte_buffer_destroy(s->recv_buf);
        s->recv_buf = NULL;
    }
    return msg;
}

static void stream_free(tse_test_stream *s)
{
    if (s->recv_pending)
        wait_tag(s, &s->tag_recv, -1, NULL);
    if (s->recv_buf)
        grpc_byte_buffer_destroy(s->recv_buf);
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    while (
        grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    grpc_slice_unref(s->md.key);
    grpc_slice_unref(s->md.value);
    free(s);
}

grpc_status_code tse_test_stream_finish(tse_test_stream *s, tse_test_status *status)
{
    grpc_status_code code;

    /* The status is delivered only once initial metadata was asked for. */
    if (!s->md_received && !s->recv_pending) {
        grpc_op op = {.op = GRPC_OP_RECV_INITIAL_METADATA};
        op.data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
        if (grpc_call_start_batch(s->call, &op, 1, &s->tag_md, NULL) == GRPC_CALL_OK)
            wait_tag(s, &s->tag_md, -1, NULL);
        s->md_received = true;
    }
    wait_tag(s, &s->tag_status, -1, NULL);
    code = s->code;
    if (status) {
        status->code = code;
        snprintf(status->details, sizeof(status->details), "%.*s",
                 (int)GRPC_SLICE_LENGTH(s->details),
                 (const char *)GRPC_SLICE_START_PTR(s->details));
    }
    stream_free(s);
    return code;
}

void tse_test_stream_cancel(tse_test_stream *s)
{
    grpc_call_cancel(s->call, NULL);
    wait_tag(s, &s->tag_status, -1, NULL);
    stream_free(s);
}

grpc_status_code tse_test_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, tse_test_status *status, int timeout_ms,
                                const char *md_key, const char *md_value)
{
    tse_test_stream *s = tse_test_stream_open(ch, method, timeout_ms, md_key, md_value);

    if (resp)
        *resp = NULL;
    if (tse_test_stream_send(s, req) && tse_test_stream_close_send(s) && resp)
        *resp = tse_test_stream_recv(s, resp_desc, -1, NULL);
    return tse_test_stream_finish(s, status);
}

grpc_status_code tse_test_unary_raw(grpc_channel *ch, const char *method, const void *data,
                                    size_t len, const ProtobufCMessageDescriptor *resp_desc,
                                    ProtobufCMessage **resp, tse_test_status *status,
                                    int timeout_ms)
{
    tse_test_stream *s = tse_test_stream_open(ch, method, timeout_ms, NULL, NULL);

    if (resp)
        *resp = NULL;
    if (tse_test_stream_send_raw(s, data, len) && tse_test_stream_close_send(s) && resp)
        *resp = tse_test_stream_recv(s, resp_desc, -1, NULL);
    return tse_test_stream_finish(s, status);
}
