/*
 * sse.h - Server-Sent Events: GET /api/v1/subscriptions/{name}/events with
 * Accept: text/event-stream relays one Subscribe stream of the event
 * service to one HTTP client, an event per delivery:
 *
 *     id: <ack id>
 *     event: <event type>
 *     data: <the event as JSON, one line>
 *
 * plus ": keepalive" comments while idle. Deliveries of an auto_ack
 * subscription are acked (on the stream) once their text was handed to the
 * HTTP connection; others wait for POST .../ack or .../nack. The stream
 * ends with an `event: error` when the service ends it (subscription
 * deleted, service down), and the gRPC call is cancelled when the client
 * goes away (seen at the next write, or by the keep-alive tick while idle).
 *
 * Threading: the content reader runs on the connection's HTTP worker, the
 * gRPC completions on the SDK's call thread, the hub's tick on the tick
 * thread (calls.h); each stream has its
 * own lock, the hub's list its lock (taken before a stream's).
 */
#ifndef TSB_BRIDGE_SSE_H
#define TSB_BRIDGE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge.h"

/* The live streams of this bridge; registers a tick on b->calls. Release
 * with tsb_sse_hub_destroy after tse_client_destroy (the streams' last
 * callbacks ran). */
tsb_sse_hub *tsb_sse_hub_create(tsb_bridge *b, int keepalive_ms);
/* Refuses new streams and ends the live ones (shutdown). NULL: no-op. */
void tsb_sse_hub_cancel(tsb_sse_hub *h);
void tsb_sse_hub_destroy(tsb_sse_hub *h); /* NULL is a no-op */

/*
 * Answers req with a stream of subscription sub (as GetSubscription
 * returned it: its auto_ack decides who acks); consumer: the consumer name
 * (NULL or "": one per stream). On failure resp holds the error.
 */
void tsb_sse_start(tsb_request *req, tsb_response *resp,
                   const Tracseq__Events__V1__Subscription *sub, const char *consumer);

/*
 * Deliveries of subscription acked (nack: nacked, with delay_ms) out of
 * band: the streams of this bridge that delivered any of them are told on
 * their own stream, which gives their subscriber its flow-control credit
 * back (the service counts credit per stream).
 */
void tsb_sse_settled(tsb_sse_hub *h, const char *subscription, char *const *ids, size_t n,
                     bool nack, uint32_t delay_ms);

#endif
