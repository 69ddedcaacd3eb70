/*
 * sdk_world.c - see sdk_world.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "sdk_world.h"

tse_client *tse_test_sdk_client(const char *addr, const char *source, int timeout_ms)
{
    tse_client_options o = {.target = addr,
                            .source_service = source,
                            .timeout_ms = timeout_ms,
                            .reconnect_initial_ms = 50,
                            .reconnect_max_ms = 500};
    tse_client *c = NULL;
    tse_client_error err;

    if (tse_client_connect(&o, &c, &err) != TSE_CLIENT_OK)
        fail_msg("connect to %s: %s", addr, err.message);
    return c;
}

tse_test_sdk_world *tse_test_sdk_world_start(bool aof, const char *const *service_args,
                                             const char *source)
{
    tse_test_sdk_world *w = calloc(1, sizeof(*w));

    assert_non_null(w);
    w->redis = tse_test_redis_start(aof);
    assert_non_null(w->redis);
    w->service = tse_test_service_start(w->redis, service_args);
    assert_non_null(w->service);
    w->client = tse_test_sdk_client(w->service->addr, source, 10000);
    return w;
}

void tse_test_sdk_world_stop(tse_test_sdk_world *w)
{
    if (w == NULL)
        return;
    tse_client_destroy(w->client);
    assert_int_equal(tse_test_service_stop(w->service), 0);
    tse_test_redis_stop(w->redis);
    free(w);
}
