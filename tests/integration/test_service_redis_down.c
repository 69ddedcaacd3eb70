/*
 * test_service_redis_down.c - the service without its Redis: started before
 * Redis exists (the normal case under Compose and systemd) and across an
 * outage. A real redis-server and the real tracseq-events binary.
 *
 * What must hold: while Redis is away the service says so in its log (where,
 * and how it retries), reports NOT_SERVING, and costs next to no CPU; once
 * Redis answers it serves (health SERVING, publish and subscribe work)
 * without a restart, and the first publishes after Redis came back are not
 * refused because a reconnect backoff was still waiting.
 *
 * Invariants of this file: each test has its own Redis and service; waits
 * are for conditions with generous deadlines, never fixed sleeps as the
 * assertion (the CPU figure is measured over a fixed 10 s window on purpose,
 * it is the process's own CPU time, which other load does not inflate).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "events.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc_client.h"
#include "harness.h"
#include "subscriptions.h"
#include "tracseq/events/v1/service.pb-c.h"
#include "wait.h"

#define SERVICE          "/tracseq.events.v1.EventService/"
#define M_PUBLISH        SERVICE "Publish"
#define M_SUBSCRIBE      SERVICE "Subscribe"
#define M_CREATE         SERVICE "CreateSubscription"
#define M_HEALTH         "/grpc.health.v1.Health/Check"
#define UNARY_TIMEOUT_MS 10000

typedef Tracseq__Events__V1__Event Event;
typedef Tracseq__Events__V1__PublishRequest PublishRequest;
typedef Tracseq__Events__V1__PublishResponse PublishResponse;
typedef Tracseq__Events__V1__Subscription Subscription;
typedef Tracseq__Events__V1__Delivery Delivery;

static const char *const service_args[] = {"--redis-timeout=500ms", NULL};

/* ---- the process ---- */

/* utime + stime of pid, in seconds. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long utime = 0, stime = 0;
    const char *p;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    /* Fields after the command name (which may hold spaces): state is the
     * 3rd field, utime the 14th and stime the 15th. */
    p = strrchr(buf, ')');
    assert_non_null(p);
    assert_int_equal(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime), 2);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The service's log so far (caller frees). */
static char *read_log(const tse_test_service *s)
{
    FILE *f = fopen(s->log, "r");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Waits up to ms for the log to hold needle; returns the log (caller frees). */
static char *wait_log(const tse_test_service *s, const char *needle, int ms)
{
    tse_test_waiter waiter;
    char *log = read_log(s);

    tse_test_waiter_init(&waiter, ms);
    while (strstr(log, needle) == NULL && tse_test_waiter_poll(&waiter)) {
        free(log);
        log = read_log(s);
    }
    return log;
}

/* ---- calls ---- */

static int health(tse_client *ch)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    tse_test_status st;
    int status;

    if (tse_test_unary(
            ch, M_HEALTH, &req.base, &grpc__health__v1__health_check_response__descriptor,
            (ProtobufCMessage **)&resp, &st, UNARY_TIMEOUT_MS, NULL, NULL) != GRPC_STATUS_OK)
        return -1;
    status = resp->status;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return status;
}

/* Waits up to ms for health to read want; returns the last answer. */
static int wait_health(tse_client *ch, int want, int ms)
{
    tse_test_waiter waiter;
    int got;

    tse_test_waiter_init(&waiter, ms);
    while ((got = health(ch)) != want && tse_test_waiter_poll(&waiter)) {
    }
    return got;
}

static PublishRequest publish_request(tse_test_event *t, const char *type, int seq)
{
    PublishRequest req = TRACSEQ__EVENTS__V1__PUBLISH_REQUEST__INIT;

    req.event = tse_test_event_init(t, "downtest", type, 0, seq, NULL);
    return req;
}

/* One Publish; returns its status code, details into st. */
static grpc_status_code publish(tse_client *ch, const char *type, int seq, tse_test_status *st)
{
    tse_test_event t;
    PublishRequest req = publish_request(&t, type, seq);
    PublishResponse *resp = NULL;
    grpc_status_code code =
        tse_test_unary(ch, M_PUBLISH, &req.base, &tracseq__events__v1__publish_response__descriptor,
                       (ProtobufCMessage **)&resp, st, UNARY_TIMEOUT_MS, NULL, NULL);

    if (resp != NULL)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return code;
}

/* Subscribes to name, publishes one event of type and expects it delivered. */
static void subscribe_and_receive(tse_client *ch, const char *name, const char *type)
{
    Tracseq__Events__V1__SubscribeRequest req = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__INIT;
    tse_test_stream *s = tse_test_stream_open(ch, M_SUBSCRIBE, 60000, NULL, NULL);
    tse_test_status st;
    Delivery *d;

    req.request_case = TRACSEQ__EVENTS__V1__SUBSCRIBE_REQUEST__REQUEST_SUBSCRIPTION_NAME;
    req.subscription_name = (char *)name;
    assert_true(tse_test_stream_send(s, &req.base));
    assert_int_equal(publish(ch, type, 1, &st), GRPC_STATUS_OK);
    d = (Delivery *)tse_test_stream_recv(s, &tracseq__events__v1__delivery__descriptor, 10000,
                                         NULL);
    if (d == NULL)
        fail_msg("no delivery of %s to %s within 10 s after Redis came back", type, name);
    assert_string_equal(d->event->event_type, type);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    tse_test_stream_cancel(s);
}

/* ==== tests ==== */

static void test_redis_absent_at_start_is_reported_costs_no_cpu_and_service_recovers(void **state)
{
    tse_test_redis *redis = tse_test_redis_start(false);
    tse_test_service *svc;
    tse_client *ch;
    char want[64], *log;
    double before, used;
    tse_test_status st;

    (void)state;
    assert_non_null(redis);
    tse_test_redis_kill(redis); /* its port now refuses: nothing listens */
    svc = tse_test_service_start(redis, service_args);
    assert_non_null(svc);
    ch = tse_test_channel(svc->addr);

    /* Said once at start: the address and the retry schedule. */
    log = wait_log(svc, "redis unreachable at start", 5000);
    snprintf(want, sizeof(want), "\"redis\":\"127.0.0.1:%d\"", redis->port);
    if (strstr(log, "redis unreachable at start") == NULL || strstr(log, want) == NULL ||
        strstr(log, "\"retry\":\"every 100 ms") == NULL)
        fail_msg("no start warning naming %s and the retry schedule in the log:\n%s", want, log);
    free(log);
    assert_int_equal(health(ch),
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    assert_int_equal(publish(ch, "down.ev", 0, &st), GRPC_STATUS_UNAVAILABLE);

    /* Waiting for Redis costs next to nothing: at most 5 % of a core. */
    before = cpu_seconds(svc->pid);
    sleep(10); /* under test: the CPU used over 10 s */
    used = cpu_seconds(svc->pid) - before;
    print_message("CPU while Redis is away: %.2f s in 10 s\n", used);
    if (used > 0.5)
        fail_msg("the service used %.2f s of CPU in 10 s while Redis was away (limit 0.5 s)", used);

    /* Redis comes: the service serves without a restart. */
    assert_true(tse_test_redis_restart(redis));
    assert_int_equal(
        wait_health(ch, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, 15000),
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    if (publish(ch, "down.ev", 0, &st) != GRPC_STATUS_OK)
        fail_msg("publish after Redis came back: '%s'", st.details);
    tse_test_create_subscription(ch, "down-sub", "down.*",
                                 TRACSEQ__EVENTS__V1__START_POSITION__START_POSITION_UNSPECIFIED,
                                 false, UNARY_TIMEOUT_MS);
    subscribe_and_receive(ch, "down-sub", "down.later");

    tse_test_channel_destroy(ch);
    assert_int_equal(tse_test_service_stop(svc), 0);
    tse_test_redis_stop(redis);
}

/* Calls fn until it answers OK: the first answer after Redis came back may
 * be a refusal only when a probe was made less than 100 ms before; then the
 * next call, 120 ms after the first, must succeed. Returns the calls made. */
static int first_ok_after_restart(tse_client *ch, const char *what,
                                  grpc_status_code (*fn)(tse_client *, tse_test_status *))
{
    long long t0 = tse_test_now_ms(), elapsed;
    tse_test_status st;

    if (fn(ch, &st) == GRPC_STATUS_OK)
        return 1;
    print_message("%s: first call after Redis came back refused: '%s'\n", what, st.details);
    while (tse_test_now_ms() < t0 + 120)
        usleep(5000); /* under test: OK at the latest 120 ms after the first refusal */
    if (fn(ch, &st) != GRPC_STATUS_OK)
        fail_msg("%s: still refused %lld ms after Redis came back: '%s'", what,
                 tse_test_now_ms() - t0, st.details);
    elapsed = tse_test_now_ms() - t0;
    print_message("%s: second call OK, %lld ms after the first\n", what, elapsed);
    return 2;
}

static grpc_status_code publish_one(tse_client *ch, tse_test_status *st)
{
    return publish(ch, "back.ev", 0, st);
}

static grpc_status_code create_one(tse_client *ch, tse_test_status *st)
{
    Tracseq__Events__V1__CreateSubscriptionRequest req =
        TRACSEQ__EVENTS__V1__CREATE_SUBSCRIPTION_REQUEST__INIT;
    Subscription sub = TRACSEQ__EVENTS__V1__SUBSCRIPTION__INIT;
    char *types[1] = {"back.*"};
    ProtobufCMessage *out = NULL;
    grpc_status_code code;

    sub.name = "back-sub";
    sub.event_types = types;
    sub.n_event_types = 1;
    req.subscription = &sub;
    code = tse_test_unary(ch, M_CREATE, &req.base, &tracseq__events__v1__subscription__descriptor,
                          &out, st, UNARY_TIMEOUT_MS, NULL, NULL);
    if (out != NULL)
        protobuf_c_message_free_unpacked(out, NULL);
    return code;
}

static void test_requests_after_an_outage_do_not_wait_out_the_reconnect_backoff(void **state)
{
    tse_test_redis *redis = tse_test_redis_start(false);
    tse_test_service *svc;
    tse_client *ch;
    tse_test_status st;

    (void)state;
    assert_non_null(redis);
    svc = tse_test_service_start(redis, service_args);
    assert_non_null(svc);
    ch = tse_test_channel(svc->addr);
    assert_int_equal(publish_one(ch, &st), GRPC_STATUS_OK);

    for (int round = 0; round < 2; round++) {
        long long killed;

        tse_test_redis_kill(redis);
        killed = tse_test_now_ms();
        /* Requests make every connection notice the loss now, so their
         * backoffs start together: retries 100 ms, 200 ms, ... 1.6 s, then
         * every 2 s after it (about 3.1 s, 5.1 s, 7.1 s after the loss). */
        assert_int_not_equal(publish_one(ch, &st), GRPC_STATUS_OK);
        assert_int_not_equal(create_one(ch, &st), GRPC_STATUS_OK);
        assert_int_equal(
            wait_health(ch, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
                        10000),
            GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
        /* Redis returns about 6 s after the loss: the next scheduled retry
         * would be about a second away. */
        while (tse_test_now_ms() < killed + 6000)
            usleep(20000); /* the outage under test: 6 s */
        assert_true(tse_test_redis_restart(redis));
        first_ok_after_restart(ch, "Publish", publish_one);
        first_ok_after_restart(ch, "CreateSubscription", create_one);
    }

    tse_test_channel_destroy(ch);
    assert_int_equal(tse_test_service_stop(svc), 0);
    tse_test_redis_stop(redis);
}

/* A "Redis" that accepts connections and closes them at once, counting
 * them: every connect attempt of the service fails fast and is seen. */
typedef struct slammer {
    int fd;
    pthread_t thread;
    atomic_int accepted;
    atomic_bool stop;
} slammer;

static void *slam(void *arg)
{
    slammer *sl = arg;

    while (!atomic_load(&sl->stop)) {
        struct pollfd p = {.fd = sl->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(sl->fd, NULL, NULL);
        if (c >= 0) {
            atomic_fetch_add(&sl->accepted, 1);
            close(c);
        }
    }
    return NULL;
}

static void slammer_start(slammer *sl, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sl->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(sl->fd >= 0);
    setsockopt(sl->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(sl->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(sl->fd, 128), 0);
    atomic_init(&sl->accepted, 0);
    atomic_init(&sl->stop, false);
    assert_int_equal(pthread_create(&sl->thread, NULL, slam, sl), 0);
}

static void slammer_stop(slammer *sl)
{
    atomic_store(&sl->stop, true);
    pthread_join(sl->thread, NULL);
    close(sl->fd);
}

static void test_a_flood_of_requests_during_an_outage_is_no_connect_storm(void **state)
{
    tse_test_redis *redis = tse_test_redis_start(false);
    tse_test_service *svc;
    tse_client *ch;
    tse_test_status st;
    slammer sl;
    int calls = 0, accepted;
    long long start;

    (void)state;
    assert_non_null(redis);
    svc = tse_test_service_start(redis, service_args);
    assert_non_null(svc);
    ch = tse_test_channel(svc->addr);
    assert_int_equal(publish_one(ch, &st), GRPC_STATUS_OK);
    tse_test_redis_kill(redis);
    slammer_start(&sl, redis->port);

    /* 3 s of requests as fast as one client sends them. Probes are at
     * least 100 ms apart per connection (2 lanes and the delivery engine):
     * about 30 a second at most, whatever the request rate. */
    start = tse_test_now_ms();
    while (tse_test_now_ms() < start + 3000) {
        assert_int_not_equal(calls % 2 ? create_one(ch, &st) : publish_one(ch, &st),
                             GRPC_STATUS_OK);
        calls++;
    }
    accepted = atomic_load(&sl.accepted);
    print_message("%d requests in 3 s, %d connect attempts\n", calls, accepted);
    if (accepted > 3 * 3 * 10 + 15)
        fail_msg("%d connect attempts in 3 s for %d requests: a connect storm", accepted, calls);
    assert_true(calls > accepted); /* the flood was one */

    slammer_stop(&sl);
    tse_test_channel_destroy(ch);
    assert_int_equal(tse_test_service_stop(svc), 0);
    tse_test_redis_stop(redis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_absent_at_start_is_reported_costs_no_cpu_and_service_recovers),
        cmocka_unit_test(test_requests_after_an_outage_do_not_wait_out_the_reconnect_backoff),
        cmocka_unit_test(test_a_flood_of_requests_during_an_outage_is_no_connect_storm),
    };

    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc;
}
