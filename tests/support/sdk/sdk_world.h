/*
 * sdk_world.h - the world of the SDK and eventctl integration tests: a
 * private redis-server, the real service (with the test's extra flags) and
 * one SDK client connected to it.
 *
 * Built into tse_test_sdk_support, which only test_client_* and test_cli_*
 * link (it needs the SDK); fails the test (cmocka) when anything does not
 * start.
 */
#ifndef TSE_TEST_SDK_WORLD_H
#define TSE_TEST_SDK_WORLD_H

#include <stdbool.h>

#include "harness.h"
#include "tracseq/client.h"

typedef struct tse_test_sdk_world {
    tse_test_redis *redis;
    tse_test_service *service;
    tse_client *client;
} tse_test_sdk_world;

/*
 * Starts Redis (AOF when aof), the service with service_args (NULL-ended,
 * may be NULL) and a client with source_service source. Caller releases
 * with tse_test_sdk_world_stop.
 */
tse_test_sdk_world *tse_test_sdk_world_start(bool aof, const char *const *service_args,
                                             const char *source);

/* Destroys the client, checks the service exits 0, stops Redis. NULL: no-op. */
void tse_test_sdk_world_stop(tse_test_sdk_world *w);

/* A client of addr with a short reconnect backoff (tests restart things). */
tse_client *tse_test_sdk_client(const char *addr, const char *source, int timeout_ms);

#endif
