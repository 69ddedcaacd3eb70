/*
 * rpc.c - blocking calls to the event service on the gRPC C core; see
 * rpc.h.
 *
 * A call owns everything its ops point into (one `call` struct on the
 * caller's stack) and a pluck completion queue of its own, so no thread ever
 * sees another call's events. A unary call is one batch of all six ops; the
 * RECV_INITIAL_METADATA op is always included because the core withholds
 * the status of a call whose client never asked for initial metadata.
 */
#include "rpc.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tse_rpc {
    atomic_size_t next; /* round-robin cursor over channels */
    size_t nchannels;
    grpc_channel *channels[];
};

/* One call in flight and the storage its ops point into. */
typedef struct call {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata md;
    size_t md_count;
    grpc_metadata_array initial_md, trailing_md;
    grpc_slice details;
    grpc_status_code code;
    int tag_ops, tag_status; /* addresses serve as pluck tags */
} call;

tse_status tse_rpc_create(const char *addr, int channels, tse_rpc **out, tse_error *err)
{
    tse_rpc *r = calloc(1, sizeof(*r) + (size_t)channels * sizeof(grpc_channel *));
    grpc_channel_credentials *creds;

    if (r == NULL)
        return tse_error_set(err, TSE_NOMEM, NULL, "out of memory");
    creds = grpc_insecure_credentials_create();
    for (int i = 0; i < channels; i++) {
        /* A local subchannel pool per channel: otherwise channels to one
         * address share a single HTTP/2 connection and spreading load over
         * several channels would gain nothing. */
        grpc_arg arg = {.type = GRPC_ARG_INTEGER,
                        .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                        .value.integer = 1};
        grpc_channel_args args = {.num_args = 1, .args = &arg};
        r->channels[i] = grpc_channel_create(addr, creds, &args);
        r->nchannels++;
    }
    grpc_channel_credentials_release(creds);
    *out = r;
    return TSE_OK;
}

void tse_rpc_destroy(tse_rpc *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nchannels; i++)
        grpc_channel_destroy(r->channels[i]);
    free(r);
}

/* ---- encoding ---- */

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

    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    return msg;
}

/* ---- one call ---- */

static void call_open(tse_rpc *r, const char *method, const char *correlation_id, int timeout_ms,
                      call *c)
{
    size_t i = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed) % r->nchannels;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice m = grpc_slice_from_static_string(method);

    memset(c, 0, sizeof(*c));
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    c->call = grpc_channel_create_call(r->channels[i], NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m,
                                       NULL, deadline, NULL);
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->details = grpc_empty_slice();
    c->code = GRPC_STATUS_UNKNOWN;
    if (correlation_id != NULL && correlation_id[0] != '\0') {
        c->md.key = grpc_slice_from_static_string("x-correlation-id");
        c->md.value = grpc_slice_from_copied_string(correlation_id);
        c->md_count = 1;
    }
}

/* Runs a batch and waits for it; false when it could not start or failed. */
static bool call_run(call *c, grpc_op *ops, size_t n)
{
    grpc_event ev;

    if (grpc_call_start_batch(c->call, ops, n, &c->tag_ops, NULL) != GRPC_CALL_OK)
        return false;
    ev = grpc_completion_queue_pluck(c->cq, &c->tag_ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Copies the final status out and releases everything the call holds. */
static grpc_status_code call_close(call *c, tse_rpc_status *status)
{
    grpc_status_code code = c->code;

    if (status != NULL) {
        status->code = code;
        snprintf(status->details, sizeof(status->details), "%.*s",
                 (int)GRPC_SLICE_LENGTH(c->details),
                 (const char *)GRPC_SLICE_START_PTR(c->details));
    }
    grpc_call_unref(c->call);
    grpc_completion_queue_shutdown(c->cq);
    while (
        grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    if (c->md_count) {
        grpc_slice_unref(c->md.key);
        grpc_slice_unref(c->md.value);
    }
    return code;
}

static void op_send_md(grpc_op *op, call *c)
{
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = c->md_count;
    op->data.send_initial_metadata.metadata = c->md_count ? &c->md : NULL;
}

static void op_recv_status(grpc_op *op, call *c)
{
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    op->data.recv_status_on_client.status = &c->code;
    op->data.recv_status_on_client.status_details = &c->details;
}

grpc_status_code tse_rpc_unary(tse_rpc *r, const char *method, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const char *correlation_id, int timeout_ms, ProtobufCMessage **resp,
                               tse_rpc_status *status)
{
    grpc_byte_buffer *send = encode(req), *recv = NULL;
    grpc_op ops[6];
    call c;

    *resp = NULL;
    call_open(r, method, correlation_id, timeout_ms, &c);
    memset(ops, 0, sizeof(ops));
    op_send_md(&ops[0], &c);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c.initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    op_recv_status(&ops[5], &c);
    if (!call_run(&c, ops, 6)) {
        c.code = GRPC_STATUS_INTERNAL;
        grpc_slice_unref(c.details);
        c.details = grpc_slice_from_static_string("the gRPC call could not be started");
    }
    if (c.code == GRPC_STATUS_OK) {
        *resp = decode(recv, resp_desc);
        if (*resp == NULL) {
            c.code = GRPC_STATUS_INTERNAL;
            grpc_slice_unref(c.details);
            c.details = grpc_slice_from_static_string("the service's answer did not decode");
        }
    }
    grpc_byte_buffer_destroy(send);
    if (recv != NULL)
        grpc_byte_buffer_destroy(recv);
    return call_close(&c, status);
}

/* ---- PublishStream ---- */

static bool stream_send(call *c, const ProtobufCMessage *msg)
{
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    bool ok;

    op.data.send_message.send_message = encode(msg);
    ok = call_run(c, &op, 1);
    grpc_byte_buffer_destroy(op.data.send_message.send_message);
    return ok;
}

/* Receives the next message; the first receive also takes initial metadata. */
static ProtobufCMessage *stream_recv(call *c, bool first, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer *bb = NULL;
    ProtobufCMessage *msg = NULL;
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof(ops));
    if (first) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &bb;
    if (call_run(c, ops, n))
        msg = decode(bb, desc);
    if (bb != NULL)
        grpc_byte_buffer_destroy(bb);
    return msg;
}

grpc_status_code tse_rpc_publish_stream(tse_rpc *r, Tracseq__Events__V1__Event *const *events,
                                        size_t n, const char *correlation_id, int timeout_ms,
                                        Tracseq__Events__V1__PublishResponse **resps,
                                        tse_rpc_status *status)
{
    grpc_op op;
    size_t sent = 0;
    call c;

    call_open(r, "/tracseq.events.v1.EventService/PublishStream", correlation_id, timeout_ms, &c);
    memset(resps, 0, n * sizeof(*resps));
    memset(&op, 0, sizeof(op));
    op_send_md(&op, &c);
    call_run(&c, &op, 1);
    /* The status op runs beside everything else and is collected last. */
    memset(&op, 0, sizeof(op));
    op_recv_status(&op, &c);
    if (grpc_call_start_batch(c.call, &op, 1, &c.tag_status, NULL) != GRPC_CALL_OK)
        goto out;
    for (; sent < n; sent++) {
        Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;
        req.event = events[sent];
        if (!stream_send(&c, &req.base))
            break;
    }
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    call_run(&c, &op, 1);
    for (size_t i = 0; i < sent; i++) {
        resps[i] = (Tracseq__Events__V1__PublishResponse *)stream_recv(
            &c, i == 0, &tracseq__events__v1__publish_response__descriptor);
        if (resps[i] == NULL)
            break;
    }
    if (sent == 0) { /* the status needs initial metadata asked for */
        ProtobufCMessage *m =
            stream_recv(&c, true, &tracseq__events__v1__publish_response__descriptor);
        if (m != NULL)
            protobuf_c_message_free_unpacked(m, NULL);
    }
    grpc_completion_queue_pluck(c.cq, &c.tag_status, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
out:
    return call_close(&c, status);
}
