/*
 * test_cli_examples.c - the examples/ programs end to end against a real
 * redis-server and tracseq-events (strict validation): sample_service's
 * events arrive typed, correlated and causally linked; temperature_monitor
 * reacts to temperature alerts and to nothing else, and ends cleanly.
 *
 * The binaries are found at $TSE_BINARY_DIR/examples/<name> (built by the
 * examples/ CMakeLists with every `make build`). Invariants: each test uses
 * its own subscription; every child is reaped, killed after a bound if it
 * hangs (which fails the test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sdk_world.h"
#include "tracseq/client.h"

#define OUT_MAX        (64 * 1024)
#define RUN_TIMEOUT_MS 30000
#define SAMPLES        3

typedef tse_test_sdk_world world;

static int world_up(void **state)
{
    static const char *const args[] = {"--validation-mode=strict", NULL};

    if (getenv("TSE_BINARY_DIR") == NULL)
        fail_msg("TSE_BINARY_DIR is not set (run through ctest)");
    *state = tse_test_sdk_world_start(false, args, "examples-test");
    return 0;
}

static int world_down(void **state)
{
    tse_test_sdk_world_stop(*state);
    return 0;
}

/* ---- running an example: stdout captured, stderr to ours ---- */

typedef struct proc {
    pid_t pid;
    int out_fd; /* -1 at EOF */
    char out[OUT_MAX];
    size_t out_len;
    int status; /* exit code; 128 + signal; -1 when it hung */
} proc;

static proc *example_start(const char *name, const char *const *args)
{
    proc *p = calloc(1, sizeof(*p));
    char path[512], *argv[16];
    int fds[2];
    size_t n = 0;

    assert_non_null(p);
    snprintf(path, sizeof(path), "%s/examples/%s", getenv("TSE_BINARY_DIR"), name);
    argv[n++] = path;
    for (; *args != NULL && n < 15; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        unsetenv("TRACSEQ_EVENTS_SERVER");
        execv(path, argv);
        _exit(127);
    }
    close(fds[1]);
    p->out_fd = fds[0];
    return p;
}

/* Reads stdout until it holds `until` (NULL: EOF) or timeout_ms passes. */
static bool example_read(proc *p, const char *until, int timeout_ms)
{
    long long end = tse_test_now_ms() + timeout_ms;
    struct pollfd pfd;
    ssize_t n;

    while (p->out_fd >= 0 && (until == NULL || strstr(p->out, until) == NULL)) {
        long long left = end - tse_test_now_ms();

        if (left <= 0)
            return false;
        pfd = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        n = read(p->out_fd, p->out + p->out_len, OUT_MAX - 1 - p->out_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(p->out_fd);
            p->out_fd = -1;
            break;
        }
        p->out_len += (size_t)n;
        p->out[p->out_len] = '\0';
    }
    return until == NULL || strstr(p->out, until) != NULL;
}

static void example_wait(proc *p, int timeout_ms)
{
    bool done = example_read(p, NULL, timeout_ms);
    int st = 0;

    if (!done)
        kill(p->pid, SIGKILL);
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    if (p->out_fd >= 0)
        close(p->out_fd);
    p->out_fd = -1;
    p->status = !done ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void expect_exit(const proc *p, int code)
{
    if (p->status != code)
        fail_msg("example exited %d, expected %d; stdout:\n%s", p->status, code, p->out);
}

static size_t count_lines(const char *s, const char *prefix)
{
    size_t n = 0;
    const char *line;

    for (line = s; line != NULL && *line != '\0'; line = strchr(line, '\n') + 1) {
        n += strncmp(line, prefix, strlen(prefix)) == 0;
        if (strchr(line, '\n') == NULL)
            break;
    }
    return n;
}

/* ---- SDK helpers ---- */

static void create_subscription(world *w, const char *name, const char *pattern)
{
    tse_client_subscription_spec spec = {
        .name = name, .event_types = (const char *const[]){pattern}, .n_event_types = 1};
    tse_client_error err;

    if (tse_client_subscription_create(w->client, &spec, NULL, &err) != TSE_CLIENT_OK)
        fail_msg("create %s: %s", name, err.message);
}

/* A payload field as a string ("" when absent). */
static const char *field(json_t *payload, const char *name)
{
    const char *s = json_string_value(json_object_get(payload, name));

    return s != NULL ? s : "";
}

typedef struct seen_event {
    char id[40], type[64], correlation[40], causation[40], subject[96], source[64];
    json_t *payload;
} seen_event;

/* Pulls n deliveries (acking them), copying what the checks need. */
static void pull_n(world *w, const char *subscription, seen_event *out, size_t n)
{
    long long end = tse_test_now_ms() + 10000;
    size_t got = 0, i;

    while (got < n && tse_test_now_ms() < end) {
        tse_client_batch *b = NULL;

        assert_int_equal(tse_client_pull(w->client, subscription, 100, 1000, NULL, &b, NULL),
                         TSE_CLIENT_OK);
        for (i = 0; i < tse_client_batch_count(b); i++) {
            const tse_client_event_view *ev = tse_client_batch_event(b, i);
            seen_event *s = &out[got];

            assert_true(got < n);
            snprintf(s->id, sizeof(s->id), "%s", ev->id);
            snprintf(s->type, sizeof(s->type), "%s", ev->event_type);
            snprintf(s->correlation, sizeof(s->correlation), "%s", ev->correlation_id);
            snprintf(s->causation, sizeof(s->causation), "%s", ev->causation_id);
            snprintf(s->subject, sizeof(s->subject), "%s", ev->subject);
            snprintf(s->source, sizeof(s->source), "%s", ev->source_service);
            s->payload = json_loads(ev->payload_json, 0, NULL);
            assert_non_null(s->payload);
            assert_int_equal(
                tse_client_acknowledge(w->client, subscription, &ev->ack_id, 1, NULL, NULL),
                TSE_CLIENT_OK);
            got++;
        }
        tse_client_batch_destroy(b);
    }
    assert_int_equal(got, n);
}

/* ---- sample_service ---- */

/* Checks one sample's created/changed pair. */
static void check_pair(const seen_event *created, const seen_event *changed)
{
    char subject[96];

    assert_string_equal(created->type, "sample.created");
    assert_string_equal(changed->type, "sample.status_changed");
    assert_string_equal(created->source, "sample-service");
    assert_string_equal(changed->causation, created->id);
    assert_string_equal(created->subject, changed->subject);
    snprintf(subject, sizeof(subject), "sample-%s", field(created->payload, "sample_id"));
    assert_string_equal(created->subject, subject);
    /* Typed payloads, every field of the five-argument form present. */
    assert_int_equal(strlen(field(created->payload, "sample_id")), 36);
    assert_int_equal(strncmp(field(created->payload, "barcode"), "SAM-", 4), 0);
    assert_true(strlen(field(created->payload, "sample_type")) > 0);
    assert_int_equal(strlen(field(created->payload, "submitter_id")), 36);
    assert_int_equal(strlen(field(created->payload, "lab_id")), 36);
    assert_string_equal(field(changed->payload, "sample_id"), field(created->payload, "sample_id"));
    assert_string_equal(field(changed->payload, "barcode"), field(created->payload, "barcode"));
    assert_string_equal(field(changed->payload, "old_status"), "pending");
    assert_string_equal(field(changed->payload, "new_status"), "received");
}

static void test_sample_service_publishes_correlated_sample_events(void **state)
{
    world *w = *state;
    seen_event ev[2 * SAMPLES];
    const seen_event *created, *changed;
    size_t i, j, pairs = 0;
    proc *p;

    create_subscription(w, "ex-samples", "sample.*");
    p = example_start("sample_service",
                      (const char *const[]){"--server", w->service->addr, "--samples", "3", NULL});
    example_wait(p, RUN_TIMEOUT_MS);
    expect_exit(p, 0);
    assert_int_equal(count_lines(p->out, "SAM-"), 2 * SAMPLES);
    free(p);

    pull_n(w, "ex-samples", ev, 2 * SAMPLES);
    /* Every correlation id ties exactly one created to one status change. */
    for (i = 0; i < 2 * SAMPLES; i++) {
        if (strcmp(ev[i].type, "sample.created") != 0)
            continue;
        created = &ev[i];
        changed = NULL;
        assert_int_equal(strlen(created->correlation), 36);
        for (j = 0; j < 2 * SAMPLES; j++) {
            if (j == i || strcmp(ev[j].correlation, created->correlation) != 0)
                continue;
            assert_null(changed);
            changed = &ev[j];
        }
        assert_non_null(changed);
        check_pair(created, changed);
        pairs++;
    }
    assert_int_equal(pairs, SAMPLES);
    for (i = 0; i < 2 * SAMPLES; i++)
        json_decref(ev[i].payload);
}

/* ---- temperature_monitor ---- */

static void publish_alert(world *w, const char *location, double current, double target,
                          char *id_out)
{
    tse_client_publish_result r;
    tse_client_error err;

    if (tse_client_publish_temperature_alert(w->client, location, "zone-a", current, target,
                                             "above_max", "sensor-9", NULL, &r,
                                             &err) != TSE_CLIENT_OK)
        fail_msg("publish alert: %s", err.message);
    strcpy(id_out, r.event_id);
}

static void test_temperature_monitor_reacts_to_alerts_only(void **state)
{
    world *w = *state;
    char hot[40], mild[40];
    proc *p;

    p = example_start("temperature_monitor",
                      (const char *const[]){"--server", w->service->addr, "--subscription",
                                            "ex-monitor", "--count", "2", NULL});
    assert_true(example_read(p, "monitoring storage.temperature_alert", RUN_TIMEOUT_MS));
    /* Other storage events and sample events must not wake it. */
    assert_int_equal(tse_client_publish_capacity_warning(w->client, "freezer-1", "Freezer 1", 95,
                                                         100, 95.0, NULL, NULL, NULL),
                     TSE_CLIENT_OK);
    assert_int_equal(
        tse_client_publish_json(w->client, "storage.temperature_alerts", "{}", NULL, NULL, NULL),
        TSE_CLIENT_OK);
    publish_alert(w, "freezer-3", -62.5, -80.0, hot);
    publish_alert(w, "fridge-1", 6.0, 4.0, mild);
    example_wait(p, RUN_TIMEOUT_MS);
    expect_exit(p, 0);

    assert_int_equal(count_lines(p->out, "ALERT "), 2);
    assert_non_null(strstr(p->out, "ALERT CRITICAL location=freezer-3"));
    assert_non_null(strstr(p->out, "current=-62.5C target=-80.0C"));
    assert_non_null(strstr(p->out, hot));
    assert_non_null(strstr(p->out, "ALERT WARNING location=fridge-1"));
    assert_non_null(strstr(p->out, mild));
    assert_null(strstr(p->out, "freezer-1"));
    free(p);
}

static void test_temperature_monitor_exits_0_on_sigterm(void **state)
{
    world *w = *state;
    proc *p;

    p = example_start("temperature_monitor",
                      (const char *const[]){"--server", w->service->addr, "--subscription",
                                            "ex-monitor-sig", NULL});
    assert_true(example_read(p, "monitoring storage.temperature_alert", RUN_TIMEOUT_MS));
    kill(p->pid, SIGTERM);
    example_wait(p, 10000);
    expect_exit(p, 0);
    free(p);
}

static void test_temperature_monitor_reports_an_unreachable_service(void **state)
{
    char addr[64];
    proc *p;

    (void)state;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tse_test_free_port());
    p = example_start("temperature_monitor", (const char *const[]){"--server", addr, NULL});
    example_wait(p, RUN_TIMEOUT_MS);
    expect_exit(p, 3);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_service_publishes_correlated_sample_events),
        cmocka_unit_test(test_temperature_monitor_reacts_to_alerts_only),
        cmocka_unit_test(test_temperature_monitor_exits_0_on_sigterm),
        cmocka_unit_test(test_temperature_monitor_reports_an_unreachable_service),
    };

    return cmocka_run_group_tests_name("examples", tests, world_up, world_down);
}
