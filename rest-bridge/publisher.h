/*
 * publisher.h - publishing for every HTTP request over a few long-lived
 * PublishStream calls ("lanes", one per gRPC channel), instead of one unary
 * Publish call per request.
 *
 * Why: a unary call costs the bridge and the service a whole HTTP/2 stream
 * (headers, trailers, a call object, a completion each side); a message on
 * an open stream costs a DATA frame, and concurrent requests share writes.
 * The service answers a stream's requests one for one, in order, each
 * answer carrying its own error (PublishResponse.error), so a stream is a
 * FIFO of unary publishes with the same validation and answers.
 *
 * Failure: when a lane's stream ends (the service restarts, a request
 * waits longer than the timeout), every event queued on it that got no
 * answer fails with the stream's status (UNAVAILABLE, DEADLINE_EXCEEDED),
 * and the next event opens a new stream; the channel reconnects by itself.
 * An event that fails that way may or may not have been stored (as with a
 * unary call that times out): publish with a client-set id to retry safely.
 *
 * Threading: submit from any thread; callbacks run on the CQ thread
 * (rpc.h) and must not block.
 */
#ifndef TSE_BRIDGE_PUBLISHER_H
#define TSE_BRIDGE_PUBLISHER_H

#include <stdbool.h>
#include <stddef.h>

#include "rpc.h"

typedef struct tse_publisher tse_publisher;

/*
 * The end of one event: resp (owned by the callee) is the service's answer,
 * which may carry a per-event error; NULL when the stream ended first, and
 * st says why. index is the event's position in its submit call.
 */
typedef void (*tse_publish_cb)(void *arg, size_t index, const tse_rpc_status *st,
                               Tracseq__Events__V1__PublishResponse *resp);

/* lanes streams over r; an event unanswered after timeout_ms fails its
 * stream. Registers a tick on r. Release with tse_publisher_destroy. */
tse_publisher *tse_publisher_create(tse_rpc *r, int lanes, int timeout_ms);

/*
 * Queues n events (borrowed: encoded before return) in order on one lane;
 * cb runs once per event. Returns false when nothing was queued (out of
 * memory, or stopping): cb is then never called.
 */
bool tse_publisher_submit(tse_publisher *p, Tracseq__Events__V1__Event *const *events, size_t n,
                          tse_publish_cb cb, void *arg);

/* Refuses new events and cancels the open streams (shutdown). */
void tse_publisher_cancel(tse_publisher *p);

/* After tse_rpc_destroy (every stream has ended). NULL is a no-op. */
void tse_publisher_destroy(tse_publisher *p);

#endif
