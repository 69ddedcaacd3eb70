/*
 * test_bridge_slow_service.c - the REST bridge in front of a service that
 * is slow to complete its HTTP/2 handshake (a loaded host, a pause).
 *
 * Why: the bridge's channels set GRPC_ARG_MIN_RECONNECT_BACKOFF_MS to
 * 100 ms for a quick reconnect after a service restart, but gRPC also takes
 * that value as the connect timeout: an attempt whose SETTINGS frame came
 * later than 100 ms failed, and every request in the meantime was answered
 * 503 ("connection attempt timed out before receiving SETTINGS frame").
 * Seen under ctest -j2 on a loaded 2-core machine, where a whole
 * test_bridge_subscriptions run got 503s. The quick reconnect needs only the
 * initial and maximum backoff.
 *
 * Here the service is stopped (SIGSTOP: the kernel still accepts its TCP
 * connections, nothing answers) while the bridge makes its first
 * connection, and continued a second later: the publish sent meanwhile
 * must be answered 200 within the bridge's RPC timeout, not 503.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "http_client.h"

typedef struct request {
    int port;
    tse_test_http_resp resp;
} request;

static void *publish_main(void *arg)
{
    static const char body[] = "{\"event_type\":\"slow.handshake\",\"source_service\":\"test\","
                               "\"payload\":{\"n\":1}}";
    request *rq = arg;
    int fd = tse_test_http_connect(rq->port);

    tse_test_http_send(fd, "POST", "/api/v1/events/publish", "application/json", NULL, body,
                       strlen(body), true);
    if (!tse_test_http_read(fd, &rq->resp))
        rq->resp.status = -1;
    close(fd);
    return NULL;
}

static void test_publish_waits_for_a_service_slow_to_complete_its_handshake(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    tse_test_service *s, *bridge;
    request rq;
    pthread_t thread;
    char *len;

    (void)state;
    assert_non_null(r);
    s = tse_test_service_start(r, NULL);
    assert_non_null(s);
    assert_int_equal(kill(s->pid, SIGSTOP), 0);
    bridge = tse_test_bridge_start(s->addr, (const char *const[]){"--rpc-timeout=5s", NULL});
    assert_non_null(bridge);
    memset(&rq, 0, sizeof(rq));
    rq.port = bridge->port;
    assert_int_equal(pthread_create(&thread, NULL, publish_main, &rq), 0);
    /* Under test: the service stays frozen for 1 s while the bridge's
     * connection waits for its SETTINGS. */
    usleep(1000000);
    assert_int_equal(kill(s->pid, SIGCONT), 0);
    pthread_join(thread, NULL);
    if (rq.resp.status != 200)
        fail_msg("publish while the service was slow to answer: %d %s", rq.resp.status,
                 rq.resp.body ? rq.resp.body : "");
    free(rq.resp.body);
    len = tse_test_redis_cmd(r, "XLEN tracseq:events:{slow.handshake}:p3");
    assert_non_null(len);
    assert_string_equal(len, "1");
    free(len);

    assert_int_equal(tse_test_service_stop(bridge), 0);
    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
}

/*
 * The bridge started before the service (make run starts both at once, so
 * do compose and systemd): its channels failed to connect and each waits
 * out its own reconnect backoff. Once /health says 200 (through a call
 * channel that reconnected), a publish sent at once must be stored, not
 * answered 503 because its publisher's own channel is still waiting: found
 * by make test-fresh's make run smoke test.
 */
static void test_publish_right_after_health_when_the_bridge_started_first(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    int port = tse_test_free_port();
    char addr[64], *len;
    tse_test_service *s, *bridge;
    request rq;

    (void)state;
    assert_non_null(r);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    bridge = tse_test_bridge_start(addr, NULL);
    assert_non_null(bridge);
    /* Under test: nothing listens for a while, so every channel is in
     * backoff, each on its own schedule. */
    usleep(700000);
    s = tse_test_service_start_on(r, port, NULL);
    assert_non_null(s);
    tse_test_http_await_healthy(bridge->port, 20000);
    memset(&rq, 0, sizeof(rq));
    rq.port = bridge->port;
    publish_main(&rq);
    if (rq.resp.status != 200)
        fail_msg("publish right after /health said 200: %d %s", rq.resp.status,
                 rq.resp.body ? rq.resp.body : "");
    free(rq.resp.body);
    len = tse_test_redis_cmd(r, "XLEN tracseq:events:{slow.handshake}:p3");
    assert_non_null(len);
    assert_string_equal(len, "1");
    free(len);

    assert_int_equal(tse_test_service_stop(bridge), 0);
    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_waits_for_a_service_slow_to_complete_its_handshake),
        cmocka_unit_test(test_publish_right_after_health_when_the_bridge_started_first),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
