/*
 * world.h - the world most integration tests run in: the real service on a
 * Redis (a server, or a cluster's front), optionally the real REST bridge
 * in front of it, and a gRPC channel to the service.
 *
 * tse_test_world_start fails the test (cmocka) when anything does not
 * start; tse_test_world_stop checks that the service and the bridge end
 * cleanly on SIGTERM (exit 0) after stopping everything, so a failed check
 * leaves no process behind.
 */
#ifndef TSE_TEST_WORLD_H
#define TSE_TEST_WORLD_H

#include <stdbool.h>

#include "grpc_client.h"
#include "harness.h"

typedef struct tse_test_world {
    tse_test_redis *redis;     /* a server, or a cluster's front (redis->whole) */
    tse_test_service *service; /* a test that stops it itself sets it NULL */
    tse_test_service *bridge;  /* NULL: no bridge */
    tse_client *ch;            /* to the service */
} tse_test_world;

/*
 * Starts the service on redis (the world takes it over and stops it; NULL
 * fails the test) with service_args, then, when bridge, the REST bridge in
 * front of it with bridge_args, waited on until its /health answers 200
 * (a bridge still connecting answers 503), then the channel. Either args
 * may be NULL. Release with tse_test_world_stop.
 */
tse_test_world *tse_test_world_start(tse_test_redis *redis, const char *const *service_args,
                                     bool bridge, const char *const *bridge_args);

/* Closes the channel, stops the bridge, the service and Redis, frees w;
 * then asserts the bridge and the service exited 0. NULL: no-op. */
void tse_test_world_stop(tse_test_world *w);

#endif
