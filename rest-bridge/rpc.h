/*
 * rpc.h - the bridge's gRPC client of tracseq.events.v1.EventService:
 * asynchronous calls on the gRPC C core over a few shared channels, all
 * completing on one completion queue served by one thread of this module
 * (the "CQ thread").
 *
 * Threading: any thread may start calls and batches (batches of one call
 * must be serialized by its owner, e.g. under the owner's lock); every
 * completion and every tick runs on the CQ thread, which must never block:
 * callbacks hand their results over (and resume an HTTP connection) and
 * return. Calls fail fast (no wait-for-ready): while the service is down a
 * call answers UNAVAILABLE at once, and the channels reconnect by
 * themselves within about a second once it is back.
 *
 * Ownership: requests are borrowed (encoded before the start function
 * returns); responses handed to callbacks belong to the callback, which
 * frees them with protobuf_c_message_free_unpacked(msg, NULL).
 */
#ifndef TSE_BRIDGE_RPC_H
#define TSE_BRIDGE_RPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "tracseq/events/v1/service.pb-c.h"

#define TSE_RPC_DETAILS_MAX 512
#define TSE_RPC_TICK_MS     250 /* how often ticks run */
#define TSE_RPC_SERVICE     "/tracseq.events.v1.EventService/"
#define TSE_RPC_HANGUP      "the HTTP client went away" /* details of such cancels */

typedef struct tse_rpc tse_rpc;

/* The outcome of one call: the gRPC status code and its details text. */
typedef struct tse_rpc_status {
    grpc_status_code code;
    char details[TSE_RPC_DETAILS_MAX];
} tse_rpc_status;

/*
 * A completion: embedded in the object that owns the operation, its address
 * is the batch's tag. fn runs on the CQ thread; ok is the batch's success.
 */
typedef struct tse_rpc_tag {
    void (*fn)(struct tse_rpc_tag *tag, bool ok);
} tse_rpc_tag;

/* A periodic job run on the CQ thread; now_ms is the monotonic clock. */
typedef void (*tse_rpc_tick_fn)(void *arg, int64_t now_ms);

/*
 * Opens `channels` lazily-connecting plaintext channels to addr and starts
 * the CQ thread. grpc_init() must have been called. Release with
 * tse_rpc_destroy.
 */
tse_status tse_rpc_create(const char *addr, int channels, tse_rpc **out, tse_error *err);

/*
 * Cancels the unary calls still running, waits until every call's batches
 * completed (owners of streams must have cancelled them first), joins the
 * CQ thread and closes the channels. NULL is a no-op.
 */
void tse_rpc_destroy(tse_rpc *r);

/* Adds a tick (at most 8); arg must outlive the CQ thread. */
void tse_rpc_add_tick(tse_rpc *r, tse_rpc_tick_fn fn, void *arg);

/* ---- building blocks for streams (publisher.c, sse.c) ---- */

/*
 * A new call of method on the shared queue over the next channel (round
 * robin); timeout_ms <= 0: no deadline. Caller releases with
 * grpc_call_unref once every batch it started has completed.
 */
grpc_call *tse_rpc_call_new(tse_rpc *r, const char *method, int timeout_ms);

/* Starts a batch whose completion runs tag->fn; false (tag never runs) when
 * the core refused it. */
bool tse_rpc_batch(grpc_call *call, const grpc_op *ops, size_t n, tse_rpc_tag *tag);

/* msg packed into a new byte buffer (caller destroys it). */
grpc_byte_buffer *tse_rpc_encode(const ProtobufCMessage *msg);

/* bb unpacked as desc (bb is borrowed); NULL when it does not decode. */
ProtobufCMessage *tse_rpc_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc);

/* Fills st from a code and a details slice. */
void tse_rpc_status_set(tse_rpc_status *st, grpc_status_code code, grpc_slice details);

/* ---- unary calls ---- */

/* The end of a unary call, on the CQ thread: resp (owned by the callee) is
 * a message of the call's response type when st->code is OK, else NULL. */
typedef void (*tse_rpc_done_fn)(void *arg, const tse_rpc_status *st, ProtobufCMessage *resp);

/*
 * Starts one unary call of method (e.g. TSE_RPC_SERVICE "Publish") with
 * deadline timeout_ms; correlation_id (may be NULL or empty) goes into the
 * x-correlation-id metadata. watch_fd >= 0: a socket that must stay open for
 * the call's whole life; when its peer hangs up the call is cancelled
 * (checked every tick). Returns false when the call could not be started:
 * done is then never called.
 */
bool tse_rpc_unary(tse_rpc *r, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, const char *correlation_id,
                   int timeout_ms, int watch_fd, tse_rpc_done_fn done, void *arg);

/* Cancels every unary call in flight (shutdown): each ends CANCELLED. */
void tse_rpc_cancel_all(tse_rpc *r);

#endif
