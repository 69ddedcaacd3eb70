/*
 * world.c - see world.h.
 */
#include "world.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "http_client.h"

/* How long a new bridge may take to reach the service. */
#define BRIDGE_HEALTHY_MS 30000

tse_test_world *tse_test_world_start(tse_test_redis *redis, const char *const *service_args,
                                     bool bridge, const char *const *bridge_args)
{
    tse_test_world *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    assert_non_null(redis);
    w->redis = redis;
    w->service = tse_test_service_start(redis, service_args);
    assert_non_null(w->service);
    if (bridge) {
        w->bridge = tse_test_bridge_start(w->service->addr, bridge_args);
        assert_non_null(w->bridge);
        tse_test_http_await_healthy(w->bridge->port, BRIDGE_HEALTHY_MS);
    }
    w->ch = tse_test_channel(w->service->addr);
    return w;
}

void tse_test_world_stop(tse_test_world *w)
{
    int rc_bridge = 0, rc_service = 0;

    if (w == NULL)
        return;
    tse_test_channel_destroy(w->ch);
    if (w->bridge != NULL)
        rc_bridge = tse_test_service_stop(w->bridge);
    if (w->service != NULL)
        rc_service = tse_test_service_stop(w->service);
    tse_test_redis_stop(w->redis);
    free(w);
    assert_int_equal(rc_bridge, 0);
    assert_int_equal(rc_service, 0);
}
