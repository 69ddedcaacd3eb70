/*
 * bridge_harness.h - the REST bridge's request handling without its HTTP
 * daemon, for the fuzz_bridge_* targets: one request (method, target,
 * headers, body) is routed with tsb_route_find and handed to the route's
 * handler exactly as rest-bridge/server.c does, with the few entry points
 * into the daemon, the gRPC client, the publisher and the event streams
 * replaced (bridge_stubs.c): a handler that gets as far as calling the
 * service leaves the request pending, and the message it would send is
 * packed and decoded again on the way (it must be a well-formed message).
 *
 * Checked on every answered request: an HTTP status in 200..599, and a JSON
 * body that parses; an error (>= 400) is an object whose "error" is a string
 * and "code" a string.
 */
#ifndef TSE_FUZZ_BRIDGE_HARNESS_H
#define TSE_FUZZ_BRIDGE_HARNESS_H

#include <stddef.h>

#define FUZZ_BRIDGE_HEADERS_MAX 16

typedef struct fuzz_bridge_request {
    const char *method;
    const char *target; /* path, optionally "?query" (a=b&c=d) */
    const char *headers[FUZZ_BRIDGE_HEADERS_MAX][2];
    size_t n_headers;
    const char *body;
    size_t body_len;
} fuzz_bridge_request;

/* Runs one request through routing and its handler; aborts on a broken property. */
void fuzz_bridge_run(const fuzz_bridge_request *r);

#endif
