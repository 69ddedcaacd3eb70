/*
 * header_timer.h - bounds the whole header phase of every HTTP request
 * (HEADER_TIMEOUT), which libmicrohttpd cannot: its connection timeout
 * (READ_TIMEOUT) counts silence, so a client that sends one header line
 * every few seconds (slowloris) would hold its connection forever.
 *
 * The phase of a connection's first request runs from its accept; that of
 * a later request on a keep-alive connection from the end of the previous
 * one, for READ_TIMEOUT (idle, as before) plus HEADER_TIMEOUT, and at most
 * HEADER_TIMEOUT from its request line. It ends when the headers are all
 * in (the request handler's first call). The body that follows, if any,
 * must be in within BODY_TIMEOUT (the same trickle, one byte at a time,
 * would hold a connection as long); no deadline once the request is read
 * whole. A connection past its deadline
 * gets a 408 JSON answer naming the limit, best effort, and is shut down
 * (output at once, input a moment later: a lingering close); MHD then
 * closes it as it would any connection the client dropped. It
 * also counts the open connections, for the stop.
 *
 * Threading: the notify and mark functions run on the connection's HTTP
 * worker, the sweep on any one thread (the gRPC tick); one lock guards the
 * list. A connection's socket is shut down only while MHD has not yet said
 * it closed (under the lock), so a descriptor reused by a later connection
 * is never touched.
 */
#ifndef TSB_BRIDGE_HEADER_TIMER_H
#define TSB_BRIDGE_HEADER_TIMER_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tsb_header_timer tsb_header_timer;

/* header_ms: HEADER_TIMEOUT; idle_ms: READ_TIMEOUT; body_ms: BODY_TIMEOUT.
 * NULL when out of memory. Destroy after MHD stopped and the sweeping
 * thread ended. */
tsb_header_timer *tsb_header_timer_create(int64_t header_ms, int64_t idle_ms, int64_t body_ms);
void tsb_header_timer_destroy(tsb_header_timer *t); /* NULL is a no-op */

/* MHD_OPTION_NOTIFY_CONNECTION's callback; cls is the timer. */
void tsb_header_timer_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code);

/* A request line arrived (MHD_OPTION_URI_LOG_CALLBACK). */
void tsb_header_timer_request_line(tsb_header_timer *t, struct MHD_Connection *conn);
/* The request's headers are all in: its body has BODY_TIMEOUT. */
void tsb_header_timer_headers_done(tsb_header_timer *t, struct MHD_Connection *conn);
/* The request is read whole (its handler runs): no deadline. */
void tsb_header_timer_request_read(tsb_header_timer *t, struct MHD_Connection *conn);
/* The request ended; the connection may carry another one. */
void tsb_header_timer_request_done(tsb_header_timer *t, struct MHD_Connection *conn);

/* The connections open now (MHD's own count is not thread-safe to read). */
size_t tsb_header_timer_connections(tsb_header_timer *t);

/* MHD has stopped: sweeps do nothing from now on (a descriptor of a
 * connection MHD closed without notice could be reused). NULL: no-op. */
void tsb_header_timer_close(tsb_header_timer *t);

/* Shuts the connections past their deadline down; returns how many. */
int tsb_header_timer_sweep(tsb_header_timer *t);

#endif
