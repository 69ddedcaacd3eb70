/*
 * test_client_cancelled.c - the SDK's blocking publish when the server
 * cancels the call: retried like UNAVAILABLE, with the same bytes.
 *
 * Why: gRPC core answers CANCELLED (detail "CANCELLED") to a call that
 * reaches a server whose shutdown began before the client read the GOAWAY:
 * no handler ever saw it (grpc/grpc#41785). test_faults sees about one call
 * in 500 end so during a SIGTERM under load, so every rolling restart of
 * the service failed a few SDK publishes with CANCELLED, a status the
 * caller reads as "you cancelled it". The blocking publish never cancels
 * its own call, so a CANCELLED always comes from the server, and each
 * attempt carries the same event id: a retry is stored once.
 *
 * The server here is a gRPC core server in this process, so the test
 * decides what each attempt gets: the first is cancelled by the server
 * (what the client sees of a call gRPC killed at shutdown), the second is
 * answered OK.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk_world.h"
#include "tracseq/client.h"
#include "tracseq/events/v1/service.pb-c.h"

typedef struct fake_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
} fake_server;

static void fake_start(fake_server *f)
{
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();

    f->server = grpc_server_create(NULL, NULL);
    f->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(f->server, f->cq, NULL);
    f->port = grpc_server_add_http2_port(f->server, "127.0.0.1:0", creds);
    grpc_server_credentials_release(creds);
    assert_true(f->port > 0);
    grpc_server_start(f->server);
}

/* Waits for tag on the server's queue (10 s at most). */
static void fake_wait(fake_server *f, void *tag)
{
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(10000, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(f->cq, until, NULL);

    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    assert_ptr_equal(ev.tag, tag);
}

static void fake_stop(fake_server *f)
{
    int tag;

    grpc_server_shutdown_and_notify(f->server, f->cq, &tag);
    grpc_server_cancel_all_calls(f->server);
    fake_wait(f, &tag);
    grpc_server_destroy(f->server);
    grpc_completion_queue_shutdown(f->cq);
    while (grpc_completion_queue_next(f->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(f->cq);
}

/* The next call's method and request bytes (caller frees *request);
 * returns the call. */
static grpc_call *fake_next_call(fake_server *f, char *method, size_t len, char **request,
                                 size_t *request_len)
{
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *bb = NULL;
    grpc_byte_buffer_reader reader;
    grpc_slice all;
    grpc_call *call = NULL;
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    int tag_new, tag_recv;

    grpc_call_details_init(&details);
    grpc_metadata_array_init(&md);
    assert_int_equal(
        grpc_server_request_call(f->server, &call, &details, &md, f->cq, f->cq, &tag_new),
        GRPC_CALL_OK);
    fake_wait(f, &tag_new);
    snprintf(method, len, "%.*s", (int)GRPC_SLICE_LENGTH(details.method),
             (const char *)GRPC_SLICE_START_PTR(details.method));
    op.data.recv_message.recv_message = &bb;
    assert_int_equal(grpc_call_start_batch(call, &op, 1, &tag_recv, NULL), GRPC_CALL_OK);
    fake_wait(f, &tag_recv);
    assert_non_null(bb);
    assert_true(grpc_byte_buffer_reader_init(&reader, bb));
    all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    *request_len = GRPC_SLICE_LENGTH(all);
    *request = malloc(*request_len + 1);
    assert_non_null(*request);
    memcpy(*request, GRPC_SLICE_START_PTR(all), *request_len);
    grpc_slice_unref(all);
    grpc_byte_buffer_destroy(bb);
    grpc_call_details_destroy(&details);
    grpc_metadata_array_destroy(&md);
    return call;
}

/* Answers call with a PublishResponse for event_id, status OK. */
static void fake_answer_ok(fake_server *f, grpc_call *call, const char *event_id)
{
    Tracseq__Events__V1__PublishResponse resp = TRACSEQ__EVENTS__V1__PUBLISH_RESPONSE__INIT;
    size_t len;
    grpc_slice slice;
    grpc_byte_buffer *bb;
    grpc_op ops[4];
    int cancelled = 0, tag;

    resp.event_id = (char *)event_id;
    resp.stream_id = "1-1";
    resp.stream = "tracseq:events:{cancel.test}:p3";
    len = protobuf_c_message_get_packed_size(&resp.base);
    slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(&resp.base, GRPC_SLICE_START_PTR(slice));
    bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &cancelled;
    assert_int_equal(grpc_call_start_batch(call, ops, 4, &tag, NULL), GRPC_CALL_OK);
    fake_wait(f, &tag);
    grpc_byte_buffer_destroy(bb);
    grpc_call_unref(call);
}

/* Cancels call from the server's side and waits until it is closed. */
static void fake_cancel(fake_server *f, grpc_call *call)
{
    grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    int cancelled = 0, tag;

    op.data.recv_close_on_server.cancelled = &cancelled;
    assert_int_equal(grpc_call_start_batch(call, &op, 1, &tag, NULL), GRPC_CALL_OK);
    grpc_call_cancel(call, NULL);
    fake_wait(f, &tag);
    grpc_call_unref(call);
}

typedef struct publishing {
    tse_client *client;
    tse_client_status status;
    tse_client_publish_result result;
    tse_client_error err;
} publishing;

static void *publish_main(void *arg)
{
    publishing *p = arg;

    p->status =
        tse_client_publish_json(p->client, "cancel.test", "{\"n\":1}", NULL, &p->result, &p->err);
    return NULL;
}

/* The event id inside a packed PublishRequest. */
static void request_event_id(const char *bytes, size_t len, char *id, size_t id_len)
{
    Tracseq__Events__V1__PublishRequest *req =
        tracseq__events__v1__publish_request__unpack(NULL, len, (const uint8_t *)bytes);

    assert_non_null(req);
    assert_non_null(req->event);
    snprintf(id, id_len, "%s", req->event->id);
    tracseq__events__v1__publish_request__free_unpacked(req, NULL);
}

static void test_publish_retries_a_call_the_server_cancelled(void **state)
{
    fake_server f;
    publishing p;
    pthread_t thread;
    char addr[64], method[128], id[64], *first, *second;
    size_t first_len, second_len;
    grpc_call *call;

    (void)state;
    memset(&p, 0, sizeof(p));
    fake_start(&f);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", f.port);
    p.client = tse_test_sdk_client(addr, "cancel-test", 10000);
    assert_int_equal(pthread_create(&thread, NULL, publish_main, &p), 0);

    call = fake_next_call(&f, method, sizeof(method), &first, &first_len);
    assert_string_equal(method, "/tracseq.events.v1.EventService/Publish");
    fake_cancel(&f, call);
    /* Before: the publish returned CANCELLED here, and nothing came next. */
    call = fake_next_call(&f, method, sizeof(method), &second, &second_len);
    assert_string_equal(method, "/tracseq.events.v1.EventService/Publish");
    assert_int_equal(second_len, first_len);
    assert_memory_equal(second, first, first_len); /* the same event id */
    request_event_id(second, second_len, id, sizeof(id));
    fake_answer_ok(&f, call, id);
    pthread_join(thread, NULL);
    if (p.status != TSE_CLIENT_OK)
        fail_msg("publish: %s: %s", tse_client_status_name(p.status), p.err.message);
    assert_string_equal(p.result.event_id, id);
    assert_string_equal(p.result.stream_id, "1-1");

    tse_client_destroy(p.client);
    free(first);
    free(second);
    fake_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_retries_a_call_the_server_cancelled),
    };
    int failed;

    grpc_init();
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return failed;
}
