/*
 * call.c - asynchronous unary calls: a stream of stream.c closed after its
 * one request (started as one batch of all six ops there), whose one
 * response is kept for the callback; so calls and streams share one
 * machinery (metadata, cancel, the end, the client's list that destroy
 * cancels).
 *
 * References: the stream's end (dropped after the callback), the caller's
 * handle (when asked for), and start's own until the stream handle is
 * stored, so an end that comes at once never frees the call under start.
 */
#include <grpc/slice.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "client/internal.h"

#define EXPORT __attribute__((visibility("default")))

struct tse_client_call {
    tse_client_stream *stream;
    tse_client_call_cb cb;
    void *cb_arg;
    atomic_int refs;
    bool got;        /* the response came */
    grpc_slice resp; /* then: its bytes */
};

static void unref(tse_client_call *cl)
{
    if (atomic_fetch_sub(&cl->refs, 1) != 1)
        return;
    tse_client_stream_release(cl->stream);
    grpc_slice_unref(cl->resp);
    free(cl);
}

static void on_message(void *arg, const void *msg, size_t len)
{
    tse_client_call *cl = arg;

    if (!cl->got) {
        cl->resp = grpc_slice_from_copied_buffer(msg, len);
        cl->got = true;
    }
}

static void on_end(void *arg, tse_client_status status, const tse_client_error *err)
{
    tse_client_call *cl = arg;
    tse_client_error none;

    if (status == TSE_CLIENT_OK && !cl->got) {
        status = tse_client_fail(&none, TSE_CLIENT_INTERNAL, 0, NULL, "the answer had no message");
        err = &none;
    }
    cl->cb(cl->cb_arg, status, status == TSE_CLIENT_OK ? NULL : err, GRPC_SLICE_START_PTR(cl->resp),
           GRPC_SLICE_LENGTH(cl->resp));
    unref(cl);
}

EXPORT tse_client_status tse_client_call_start(tse_client *client, const char *method,
                                               const void *request, size_t len,
                                               const tse_client_call_options *options,
                                               tse_client_call_cb cb, void *cb_arg,
                                               tse_client_call **out, tse_client_error *err)
{
    static const tse_client_stream_handlers handlers = {on_message, on_end};
    static const tse_client_stream_how how = {.close = true};
    tse_client_call *cl;
    tse_client_status st;

    tse_client_error_clear(err);
    if (cb == NULL)
        return tse_client_fail(err, TSE_CLIENT_INVALID_ARGUMENT, -1, "cb", "cb is NULL");
    if ((cl = calloc(1, sizeof(*cl))) == NULL)
        return tse_client_fail(err, TSE_CLIENT_NO_MEMORY, -1, NULL, "out of memory");
    cl->cb = cb;
    cl->cb_arg = cb_arg;
    cl->resp = grpc_empty_slice();
    atomic_init(&cl->refs, out != NULL ? 3 : 2);
    st = tse_client_stream_open(client, method, request, len, options, &handlers, cl, &how,
                                &cl->stream, err);
    if (st != TSE_CLIENT_OK) {
        free(cl);
        return st;
    }
    if (out != NULL)
        *out = cl;
    unref(cl); /* start's */
    return TSE_CLIENT_OK;
}

EXPORT void tse_client_call_cancel(tse_client_call *cl, tse_client_status status, const char *why)
{
    if (cl != NULL)
        tse_client_stream_cancel(cl->stream, status, why);
}

EXPORT void tse_client_call_release(tse_client_call *cl)
{
    if (cl != NULL)
        unref(cl);
}
