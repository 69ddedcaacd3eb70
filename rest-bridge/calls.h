/*
 * calls.h - the bridge's unary calls to tracseq.events.v1.EventService (and
 * grpc.health.v1) on the C SDK's asynchronous calls (tse_client_call_*),
 * with the bridge's policy on top: the x-correlation-id of each request, a
 * long poll cancelled when its HTTP client hangs up, and the shutdown
 * levels; plus the tick thread that runs the bridge's periodic jobs.
 *
 * Threading: any thread may start calls; their completions run on the
 * SDK's call thread and ticks on this module's tick thread; neither may
 * block: callbacks hand their results over (and resume an HTTP connection)
 * and return. Calls fail fast (no wait-for-ready): while the service is
 * down a call answers UNAVAILABLE at once, and the SDK's channels reconnect
 * by themselves within about a second once it is back.
 *
 * Ownership: requests are borrowed (encoded before the start function
 * returns); responses handed to callbacks belong to the callback, which
 * frees them with protobuf_c_message_free_unpacked(msg, NULL).
 */
#ifndef TSB_BRIDGE_CALLS_H
#define TSB_BRIDGE_CALLS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "grpc/health/v1/health.pb-c.h"
#include "tracseq/client.h"
#include "tracseq/events/v1/service.pb-c.h"

#define TSB_CALLS_MESSAGE_MAX 512
#define TSB_CALLS_TICK_MS     250 /* how often ticks run */
#define TSB_CALLS_SERVICE     "/tracseq.events.v1.EventService/"
#define TSB_CALLS_HANGUP      "the HTTP client went away" /* details of such cancels */

typedef struct tsb_calls tsb_calls;

/*
 * The outcome of one call: TSE_OK, or the status the call failed with (the
 * one the service's gRPC code stands for), the field the service blamed
 * ("" when none; the SDK reads it from the google.rpc.BadRequest details)
 * and the message, without that field in front of it.
 */
typedef struct tsb_calls_status {
    tse_status code;
    char field[TSE_CLIENT_ERROR_FIELD_MAX];
    char message[TSB_CALLS_MESSAGE_MAX];
} tsb_calls_status;

/* Fills st from an SDK outcome (err NULL when status is OK): the one place
 * an SDK status becomes the tse_status the bridge answers (reply.c). */
void tsb_calls_status_set(tsb_calls_status *st, tse_client_status status,
                          const tse_client_error *err);

/* Fills st with a failure of the bridge's own (no field). */
void tsb_calls_status_fail(tsb_calls_status *st, tse_status code, const char *message);

/* A periodic job run on the tick thread; now_ms is the monotonic clock. */
typedef void (*tsb_calls_tick_fn)(void *arg, int64_t now_ms);

/* Calls through client (borrowed; it must outlive c); starts the tick
 * thread. Release with tsb_calls_destroy. */
tse_status tsb_calls_create(tse_client *client, tsb_calls **out, tse_error *err);

/* Cancels the calls still running, waits for their callbacks, stops the
 * tick thread. NULL is a no-op. */
void tsb_calls_destroy(tsb_calls *c);

/* Adds a tick (at most 8); arg must outlive the tick thread. */
void tsb_calls_add_tick(tsb_calls *c, tsb_calls_tick_fn fn, void *arg);

/* The end of a call, on the SDK's thread: resp (owned by the callee) is a
 * message of the call's response type when st->code is OK, else NULL. */
typedef void (*tsb_calls_done_fn)(void *arg, const tsb_calls_status *st, ProtobufCMessage *resp);

/*
 * Starts one unary call of method (a method name of EventService or of
 * grpc.health.v1.Health, e.g. "Pull"; its response type is the method's)
 * with deadline timeout_ms (<= 0: none); correlation_id (may be NULL or
 * empty) goes into the x-correlation-id metadata, authorization (the
 * caller's Authorization header; NULL or empty: none) into
 * `authorization`. watch_fd >= 0: a socket that must stay open for the
 * call's whole life; when its peer hangs up the
 * call is cancelled (checked every tick), CANCELLED with TSB_CALLS_HANGUP.
 * Returns false when the call could not be started: done is then never
 * called.
 */
bool tsb_calls_unary(tsb_calls *c, const char *method, const ProtobufCMessage *req,
                     const char *correlation_id, const char *authorization, int timeout_ms,
                     int watch_fd, tsb_calls_done_fn done, void *arg);

/*
 * Shutdown, first step: cancels the watched calls (long-polls, which may
 * wait far longer than a deadline) in flight, and every one started from
 * now on, before it waits: each ends UNAVAILABLE at once. Other calls run
 * on, within their deadlines.
 */
void tsb_calls_cancel_waits(tsb_calls *c);

/* Shutdown, last resort: the same for every call. */
void tsb_calls_cancel_all(tsb_calls *c);

#endif
