/*
 * test_service_lifecycle.c - the tracseq-events process itself: settings
 * refused at start with the bad key named, --help, a busy port, and a
 * graceful shutdown that lets an open stream finish.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <grpc/grpc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grpc_client.h"
#include "harness.h"
#include "tracseq/events/v1/service.pb-c.h"

/* Runs the service binary with args (and optional env) to completion;
 * returns its exit status and its output in out. */
static int run_binary(const char *env, const char *args, char *out, size_t len)
{
    char cmd[1024];
    FILE *p;
    size_t n;
    int status;

    snprintf(cmd, sizeof(cmd), "%s timeout 10 '%s' %s 2>&1", env ? env : "",
             getenv("TSE_SERVICE_BIN"), args);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void expect_refused(const char *env, const char *args, const char *key)
{
    char out[4096];

    assert_int_equal(run_binary(env, args, out, sizeof(out)), 2);
    if (strstr(out, key) == NULL)
        fail_msg("'%s %s' did not name %s: %s", env ? env : "", args, key, out);
}

static void test_bad_settings_stop_the_service_naming_the_key(void **state)
{
    expect_refused(NULL, "--dedup-window=5x", "DEDUP_WINDOW");
    expect_refused(NULL, "--threads=0", "GRPC_THREADS");
    expect_refused(NULL, "--validation-mode=sloppy", "VALIDATION_MODE");
    expect_refused(NULL, "--no-such-flag=1", "--no-such-flag");
    expect_refused("LOG_LEVEL=loud", "", "LOG_LEVEL");
    expect_refused("REDIS_URL=rediss://x:6379", "", "REDIS_URL");
    expect_refused(NULL, "--redis-url=redis://host:99999", "REDIS_URL");
}

static void test_help_prints_every_setting(void **state)
{
    char out[8192];

    assert_int_equal(run_binary(NULL, "--help", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "REDIS_URL"));
    assert_non_null(strstr(out, "VALIDATION_MODE"));
    assert_non_null(strstr(out, "RETENTION_AGE"));
}

static void test_busy_port_fails_loudly(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    tse_test_service *s = tse_test_service_start(r, NULL);
    char args[512], out[4096];

    assert_non_null(s);
    snprintf(args, sizeof(args), "--listen=%s --redis-url=%s", s->addr, r->url);
    assert_int_equal(run_binary(NULL, args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "GRPC_LISTEN"));
    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
}

static Tracseq__Events__V1__PublishResponse *recv_response(tse_test_stream *st)
{
    return (Tracseq__Events__V1__PublishResponse *)tse_test_stream_recv(
        st, &tracseq__events__v1__publish_response__descriptor, 10000, NULL);
}

static void send_event(tse_test_stream *st)
{
    Google__Protobuf__Struct data = GOOGLE__PROTOBUF__STRUCT__INIT;
    Tracseq__Events__V1__Event ev = TRACSEQ__EVENTS__V1__EVENT__INIT;
    Tracseq__Events__V1__PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;

    ev.event_type = "test.shutdown";
    ev.source_service = "lifecycle-test";
    ev.payload_case = TRACSEQ__EVENTS__V1__EVENT__PAYLOAD_DATA;
    ev.data = &data;
    req.event = &ev;
    assert_true(tse_test_stream_send(st, &req.base));
}

static void test_sigterm_lets_an_open_stream_finish(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    tse_test_service *s = tse_test_service_start(r, NULL);
    grpc_channel *ch = tse_test_channel(s->addr);
    tse_test_stream *st = tse_test_stream_open(ch, "/tracseq.events.v1.EventService/PublishStream",
                                               30000, NULL, NULL);
    tse_test_status status;
    int code;

    for (int i = 0; i < 10; i++)
        send_event(st);
    for (int i = 0; i < 10; i++) {
        Tracseq__Events__V1__PublishResponse *resp = recv_response(st);
        assert_non_null(resp);
        assert_null(resp->error);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    /* Shutdown starts while the stream is open: it may still finish. */
    kill(s->pid, SIGTERM);
    usleep(200000);
    for (int i = 0; i < 10; i++)
        send_event(st);
    assert_true(tse_test_stream_close_send(st));
    for (int i = 0; i < 10; i++) {
        Tracseq__Events__V1__PublishResponse *resp = recv_response(st);
        assert_non_null(resp);
        assert_null(resp->error);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    assert_int_equal(tse_test_stream_finish(st, &status), GRPC_STATUS_OK);
    grpc_channel_destroy(ch);
    code = tse_test_service_stop(s);
    assert_int_equal(code, 0);
    char *len = tse_test_redis_cmd(r, "XLEN tracseq:events:test.shutdown:p3");
    assert_string_equal(len, "20");
    free(len);
    tse_test_redis_stop(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_settings_stop_the_service_naming_the_key),
        cmocka_unit_test(test_help_prints_every_setting),
        cmocka_unit_test(test_busy_port_fails_loudly),
        cmocka_unit_test(test_sigterm_lets_an_open_stream_finish),
    };
    int failed;

    grpc_init();
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return failed;
}
