/*
 * rpc.h - the bridge's gRPC client of tracseq.events.v1.EventService:
 * blocking calls on the gRPC C core over a few shared channels.
 *
 * Threading: a tse_rpc is shared by every HTTP worker thread; each call
 * creates its own completion queue and blocks the calling thread until the
 * call ends or its deadline passes, so calls from different threads run
 * concurrently over the shared HTTP/2 connections. Calls fail fast (no
 * wait-for-ready): a service that is down answers UNAVAILABLE at once.
 *
 * Ownership: requests are borrowed; responses are new messages the caller
 * frees with protobuf_c_message_free_unpacked(msg, NULL).
 */
#ifndef TSE_BRIDGE_RPC_H
#define TSE_BRIDGE_RPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "common/status.h"
#include "tracseq/events/v1/service.pb-c.h"

#define TSE_RPC_DETAILS_MAX 512

typedef struct tse_rpc tse_rpc;

/* The outcome of one call: the gRPC status code and its details text. */
typedef struct tse_rpc_status {
    grpc_status_code code;
    char details[TSE_RPC_DETAILS_MAX];
} tse_rpc_status;

/*
 * Opens `channels` lazily-connecting plaintext channels to addr. grpc_init()
 * must have been called. Release with tse_rpc_destroy.
 */
tse_status tse_rpc_create(const char *addr, int channels, tse_rpc **out, tse_error *err);
void tse_rpc_destroy(tse_rpc *r); /* NULL is a no-op */

/*
 * One unary call of method (e.g. "/tracseq.events.v1.EventService/Publish")
 * with deadline timeout_ms. correlation_id (may be NULL or empty) goes into
 * the x-correlation-id metadata. On GRPC_STATUS_OK *resp is a message of
 * resp_desc; otherwise *resp is NULL. Returns status->code.
 */
grpc_status_code tse_rpc_unary(tse_rpc *r, const char *method, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const char *correlation_id, int timeout_ms, ProtobufCMessage **resp,
                               tse_rpc_status *status);

/*
 * Publishes n events over one PublishStream: every event is sent, then
 * every response read. resps[i] gets the response to events[i] (a response
 * may carry a per-event error), or NULL when the stream ended before it
 * answered. n must not exceed the service's publish-stream window. Returns
 * the stream's final status.
 */
grpc_status_code tse_rpc_publish_stream(tse_rpc *r, Tracseq__Events__V1__Event *const *events,
                                        size_t n, const char *correlation_id, int timeout_ms,
                                        Tracseq__Events__V1__PublishResponse **resps,
                                        tse_rpc_status *status);

#endif
