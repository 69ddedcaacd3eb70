/*
 * server.h - the gRPC server of the event service, on the gRPC C core API.
 *
 * Threading model. `threads` worker threads each own one completion queue
 * and loop on grpc_completion_queue_next; a connection's calls stay on the
 * queue that accepted them. A worker never blocks on Redis: handlers validate
 * and encode on the worker, hand the Redis work to the broker's lane threads
 * (broker.h) and return; the lane thread that gets Redis's reply starts the
 * response batch on the call. Every call object has a mutex so that batches
 * started from a worker and from a lane thread are serialized per call, and a
 * reference count of the batches and broker jobs it has in flight; it is
 * freed when the last one completes. We chose per-thread queues over one
 * shared queue because events of one call then never run on two workers at
 * once and a worker's cache stays warm; the Redis lanes are separate threads
 * because a pipelined blocking connection on its own thread is the simplest
 * way to keep Redis busy without ever stalling gRPC.
 *
 * Lifetime: create (binds the port) -> start (threads) -> shutdown (stop
 * accepting, let in-flight calls finish within a grace period, cancel the
 * rest, drain) -> destroy. The broker, stats and reflection index are
 * borrowed and must outlive the server.
 */
#ifndef TSE_TRANSPORT_SERVER_H
#define TSE_TRANSPORT_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/auth.h"
#include "common/status.h"
#include "config/config.h"
#include "delivery/delivery.h"
#include "obs/stats.h"
#include "reflection/reflection.h"
#include "writer/broker.h"

typedef struct tse_server tse_server;

typedef struct tse_server_deps {
    const tse_config *config;
    tse_broker *broker;
    tse_delivery *delivery;
    tse_stats *stats;
    const tse_reflection *reflection;
    tse_auth *auth; /* NULL: no authentication (every caller may do anything) */
} tse_server_deps;

/* Creates the server and binds cfg->listen. TSE_UNAVAILABLE when the address
 * cannot be bound (in use: reuseport is off). Release with tse_server_destroy. */
tse_status tse_server_create(const tse_server_deps *deps, tse_server **out, tse_error *err);

/*
 * Re-reads what may change without a restart (SIGHUP): the TLS certificate,
 * key and client CA. New connections use the new files; open ones keep
 * theirs. On failure (err names the setting) what was in use stays.
 * Thread-safe against the workers; call from one thread.
 */
tse_status tse_server_reload(tse_server *s, tse_error *err);

/* Starts the worker threads. */
tse_status tse_server_start(tse_server *s, tse_error *err);

/* Health: SERVING while Redis answers. Thread-safe; Watch streams are told. */
void tse_server_set_serving(tse_server *s, bool serving);

/*
 * Stops accepting calls; ends Watch and Subscribe streams with UNAVAILABLE,
 * winds PublishStreams down (what they read is answered, then UNAVAILABLE)
 * and answers waiting pulls; lets in-flight calls finish for up to
 * grace_ms; then cancels the rest and closes every connection still open
 * (an idle one would hold gRPC's shutdown for 20 s), and waits until every
 * call is released and the workers have exited. Returns within grace_ms
 * plus half a second whatever clients do. False when gRPC still had not
 * stopped then: the server must not be destroyed, only the process ended.
 * Call once, from any thread but a worker.
 */
bool tse_server_shutdown(tse_server *s, int64_t grace_ms);

/* Frees a shut-down (or never started) server. NULL is a no-op. */
void tse_server_destroy(tse_server *s);

/* The services the server announces over reflection, NULL-terminated. */
extern const char *const tse_server_services[];

#endif
