/*
 * test_cli_eventctl.c - the eventctl binary end to end: a real
 * redis-server, the real tracseq-events (strict validation, so the server
 * names bad payload fields), and eventctl run as a child process
 * ($TSE_EVENTCTL_BIN) whose exit code, stdout and stderr are checked.
 * What eventctl published is read back through the SDK (pull), so a test
 * passes only when the event really reached the service intact.
 *
 * Invariants of this file: every test uses its own event types and
 * subscription names, so tests sharing the one world never see each
 * other's events; every child is reaped (killed after a bound if it hangs,
 * which fails the test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
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
#include "wait.h"

#define OUT_MAX        (256 * 1024)
#define ERR_MAX        (64 * 1024)
#define RUN_TIMEOUT_MS 20000
#define MAX_ARGS       48

/* ---- the world: one Redis, one strict service, one SDK client ---- */

typedef tse_test_sdk_world world;

static int world_up(void **state)
{
    static const char *const args[] = {"--validation-mode=strict", NULL};

    if (getenv("TSE_EVENTCTL_BIN") == NULL)
        fail_msg("TSE_EVENTCTL_BIN is not set (run through ctest)");
    *state = tse_test_sdk_world_start(false, args, "cli-test");
    return 0;
}

static int world_down(void **state)
{
    tse_test_sdk_world_stop(*state);
    return 0;
}

/* ---- running eventctl ---- */

typedef struct proc {
    pid_t pid;
    int out_fd, err_fd; /* -1 once at EOF */
    char *out, *err;    /* NUL-terminated, OUT_MAX / ERR_MAX */
    size_t out_len, err_len;
    int status; /* exit code; 128 + signal when killed; -1 when it hung */
    long long elapsed_ms;
    long long started_ms;
} proc;

/*
 * Starts eventctl with args (NULL-terminated). env_server: the value of
 * TRACSEQ_EVENTS_SERVER in the child (NULL: unset).
 */
static proc *proc_start(const char *env_server, const char *const *args)
{
    proc *p = calloc(1, sizeof(*p));
    char *argv[MAX_ARGS + 2];
    int out[2], err[2];
    size_t n = 0;

    assert_non_null(p);
    p->out = calloc(1, OUT_MAX);
    p->err = calloc(1, ERR_MAX);
    assert_true(p->out != NULL && p->err != NULL);
    argv[n++] = getenv("TSE_EVENTCTL_BIN");
    for (; args[n - 1] != NULL && n <= MAX_ARGS; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    p->started_ms = tse_test_now_ms();
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]), close(out[1]), close(err[0]), close(err[1]);
        unsetenv("TRACSEQ_SOURCE_SERVICE");
        if (env_server != NULL)
            setenv("TRACSEQ_EVENTS_SERVER", env_server, 1);
        else
            unsetenv("TRACSEQ_EVENTS_SERVER");
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    p->out_fd = out[0];
    p->err_fd = err[0];
    return p;
}

/* Reads what fd has; closes it at EOF. */
static void drain(int *fd, char *buf, size_t *len, size_t cap)
{
    char scratch[4096];
    ssize_t n = read(*fd, scratch, sizeof(scratch));
    size_t take;

    if (n <= 0) {
        if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
            close(*fd);
            *fd = -1;
        }
        return;
    }
    take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
    memcpy(buf + *len, scratch, take);
    *len += take;
    buf[*len] = '\0';
}

/* Reads output for up to timeout_ms; returns true once both pipes hit EOF. */
static bool proc_pump(proc *p, int timeout_ms)
{
    long long end = tse_test_now_ms() + timeout_ms;
    struct pollfd fds[2];
    long long left;

    while (p->out_fd >= 0 || p->err_fd >= 0) {
        left = end - tse_test_now_ms();
        if (left <= 0)
            return false;
        fds[0] = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
        if (poll(fds, 2, (int)left) <= 0)
            continue;
        if (p->out_fd >= 0 && (fds[0].revents & (POLLIN | POLLHUP)))
            drain(&p->out_fd, p->out, &p->out_len, OUT_MAX);
        if (p->err_fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP)))
            drain(&p->err_fd, p->err, &p->err_len, ERR_MAX);
    }
    return true;
}

/* Pumps output until stdout holds at least n lines or timeout_ms passes. */
static size_t proc_wait_lines(proc *p, size_t n, int timeout_ms)
{
    long long end = tse_test_now_ms() + timeout_ms;
    size_t lines = 0;
    size_t i;

    for (;;) {
        for (lines = 0, i = 0; i < p->out_len; i++)
            lines += p->out[i] == '\n';
        if (lines >= n || tse_test_now_ms() >= end || p->out_fd < 0)
            return lines;
        proc_pump(p, 50);
    }
}

/* Waits for the exit (killing the child after timeout_ms) and sets status. */
static void proc_wait(proc *p, int timeout_ms)
{
    int st = 0;
    bool done = proc_pump(p, timeout_ms);

    if (!done)
        kill(p->pid, SIGKILL);
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    p->elapsed_ms = tse_test_now_ms() - p->started_ms;
    p->status = !done ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->err_fd >= 0)
        close(p->err_fd);
    p->out_fd = p->err_fd = -1;
}

static void proc_free(proc *p)
{
    if (p == NULL)
        return;
    free(p->out);
    free(p->err);
    free(p);
}

/* Builds an argument array: "--server", addr (when addr), then the rest. */
static const char **make_args(const char **buf, const char *addr, va_list ap)
{
    const char *a;
    size_t n = 0;

    if (addr != NULL) {
        buf[n++] = "--server";
        buf[n++] = addr;
    }
    while ((a = va_arg(ap, const char *)) != NULL && n < MAX_ARGS)
        buf[n++] = a;
    buf[n] = NULL;
    return buf;
}

/* Runs eventctl against the world's service to completion. Args end with
 * NULL. Caller frees with proc_free. */
static proc *ctl(const world *w, ...)
{
    const char *args[MAX_ARGS + 1];
    va_list ap;
    proc *p;

    va_start(ap, w);
    p = proc_start(NULL, make_args(args, w != NULL ? w->service->addr : NULL, ap));
    va_end(ap);
    proc_wait(p, RUN_TIMEOUT_MS);
    return p;
}

/* The same, in the background. */
static proc *ctl_bg(const world *w, ...)
{
    const char *args[MAX_ARGS + 1];
    va_list ap;
    proc *p;

    va_start(ap, w);
    p = proc_start(NULL, make_args(args, w->service->addr, ap));
    va_end(ap);
    return p;
}

/* Asserts an exit code, printing the child's output when it differs. */
static void expect_exit(const proc *p, int code)
{
    if (p->status != code)
        fail_msg("eventctl exited %d, expected %d\nstdout: %s\nstderr: %s", p->status, code, p->out,
                 p->err);
}

/* ---- SDK helpers ---- */

static void create_subscription(world *w, const char *name, const char *pattern)
{
    tse_client_subscription_spec spec = {.name = name,
                                         .event_types = (const char *const[]){pattern},
                                         .n_event_types = 1,
                                         .start = TSE_CLIENT_START_EARLIEST};
    tse_client_error err;

    if (tse_client_subscription_create(w->client, &spec, NULL, &err) != TSE_CLIENT_OK)
        fail_msg("create %s: %s", name, err.message);
}

/* Pulls exactly one delivery from subscription and acks it. */
static tse_client_batch *pull_one(world *w, const char *subscription)
{
    tse_client_batch *batch = NULL;
    tse_client_error err;
    const char *ack_id;

    if (tse_client_pull(w->client, subscription, 10, 3000, NULL, &batch, &err) != TSE_CLIENT_OK)
        fail_msg("pull %s: %s", subscription, err.message);
    assert_int_equal(tse_client_batch_count(batch), 1);
    ack_id = tse_client_batch_event(batch, 0)->ack_id;
    assert_int_equal(tse_client_acknowledge(w->client, subscription, &ack_id, 1, NULL, NULL),
                     TSE_CLIENT_OK);
    return batch;
}

static const char *metadata_value(const tse_client_event_view *ev, const char *key)
{
    size_t i;

    for (i = 0; i < ev->n_metadata; i++)
        if (strcmp(ev->metadata[i].key, key) == 0)
            return ev->metadata[i].value;
    return NULL;
}

/* The event_id of a `publish --json` answer, copied into buf. */
static const char *published_id(const proc *p, char *buf, size_t len)
{
    json_t *v = json_loads(p->out, 0, NULL);
    const char *id = json_string_value(json_object_get(v, "event_id"));

    if (id == NULL)
        fail_msg("publish --json printed no event_id: %s", p->out);
    snprintf(buf, len, "%s", id);
    json_decref(v);
    return buf;
}

static bool has_temporary_subscription(const world *w)
{
    proc *p = ctl(w, "subscriptions", "list", "--json", NULL);
    bool found;

    expect_exit(p, 0);
    found = strstr(p->out, "eventctl-tail-") != NULL;
    proc_free(p);
    return found;
}

#define SAMPLE_PAYLOAD                                                                             \
    "{\"sample_id\":\"123e4567-e89b-12d3-a456-426614174000\",\"barcode\":\"SAM-CLI-1\","           \
    "\"sample_type\":\"DNA\",\"submitter_id\":\"123e4567-e89b-12d3-a456-426614174001\","           \
    "\"labId\":\"123e4567-e89b-12d3-a456-426614174002\"}"

/* ---- publish ---- */

static void test_publish_typed_payload_arrives_with_every_envelope_option(void **state)
{
    world *w = *state;
    const tse_client_event_view *ev;
    tse_client_batch *batch;
    char id[64];
    proc *p;

    create_subscription(w, "cli-pub-typed", "sample.created");
    p = ctl(w, "publish", "sample.created", "--payload", SAMPLE_PAYLOAD, "--subject",
            "sample-cli-1", "--priority", "1", "--correlation-id",
            "7d444840-9dc0-11d1-b245-5ffdce74fad2", "--causation-id", "cause-1", "--metadata",
            "lab=north", "--metadata", "shift=night=late", "--json", NULL);
    expect_exit(p, 0);
    published_id(p, id, sizeof(id));
    proc_free(p);

    batch = pull_one(w, "cli-pub-typed");
    ev = tse_client_batch_event(batch, 0);
    assert_string_equal(ev->id, id);
    assert_string_equal(ev->event_type, "sample.created");
    assert_string_equal(ev->source_service, "eventctl");
    assert_string_equal(ev->subject, "sample-cli-1");
    assert_int_equal(ev->priority, 1);
    assert_string_equal(ev->correlation_id, "7d444840-9dc0-11d1-b245-5ffdce74fad2");
    assert_string_equal(ev->causation_id, "cause-1");
    assert_string_equal(metadata_value(ev, "lab"), "north");
    /* Only the first '=' separates key from value. */
    assert_string_equal(metadata_value(ev, "shift"), "night=late");
    /* Typed: the lowerCamel "labId" came back as the proto field lab_id. */
    assert_non_null(
        strstr(ev->payload_json, "\"lab_id\":\"123e4567-e89b-12d3-a456-426614174002\""));
    assert_non_null(strstr(ev->payload_json, "\"barcode\":\"SAM-CLI-1\""));
    tse_client_batch_destroy(batch);
}

static void test_publish_reads_the_payload_from_a_file(void **state)
{
    world *w = *state;
    char path[] = "/tmp/eventctl-payload-XXXXXX";
    char arg[64];
    tse_client_batch *batch;
    int fd = mkstemp(path);
    proc *p;

    assert_true(fd >= 0);
    assert_true(write(fd, "{\"from_file\": \"yes\",\n \"n\": 7}\n", 30) == 30);
    close(fd);
    snprintf(arg, sizeof(arg), "@%s", path);
    create_subscription(w, "cli-pub-file", "cli.file.loaded");
    p = ctl(w, "publish", "cli.file.loaded", "--payload", arg, NULL);
    unlink(path);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "published "));
    proc_free(p);

    batch = pull_one(w, "cli-pub-file");
    assert_non_null(
        strstr(tse_client_batch_event(batch, 0)->payload_json, "\"from_file\":\"yes\""));
    tse_client_batch_destroy(batch);

    p = ctl(w, "publish", "cli.file.loaded", "--payload", "@/nonexistent/payload.json", NULL);
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "/nonexistent/payload.json"));
    proc_free(p);
}

static void test_publish_with_a_repeated_id_is_a_duplicate(void **state)
{
    world *w = *state;
    static const char *id = "0b0c5e7e-6f55-4e7c-9a43-3c2f1d7a9e01";
    proc *p;

    p = ctl(w, "publish", "cli.dup.event", "--payload", "{}", "--id", id, "--json", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "\"duplicate\":false"));
    proc_free(p);
    p = ctl(w, "publish", "cli.dup.event", "--payload", "{}", "--id", id, "--json", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "\"duplicate\":true"));
    assert_non_null(strstr(p->out, id));
    proc_free(p);
}

static void test_publish_bad_payload_exits_1_naming_the_field(void **state)
{
    world *w = *state;
    proc *p;

    /* The server's check (strict mode): not a UUID. */
    p = ctl(w, "publish", "sample.created", "--payload",
            "{\"sample_id\":\"not-a-uuid\",\"barcode\":\"B\",\"sample_type\":\"DNA\"}", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "INVALID_ARGUMENT"));
    assert_non_null(strstr(p->err, "payload.sample_id"));
    assert_string_equal(p->out, "");
    proc_free(p);

    /* The SDK's check: a number where a string belongs... */
    p = ctl(w, "publish", "storage.temperature_alert", "--payload",
            "{\"current_temperature\":\"warm\"}", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "payload.current_temperature"));
    proc_free(p);

    /* ...and text that is no JSON at all. */
    p = ctl(w, "publish", "cli.bad.json", "--payload", "{\"a\":", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "INVALID_ARGUMENT"));
    assert_non_null(strstr(p->err, "payload"));
    proc_free(p);

    p = ctl(w, "publish", "Not-A-Type", "--payload", "{}", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "event_type"));
    proc_free(p);
}

static void test_publish_bad_priority_is_refused(void **state)
{
    world *w = *state;
    proc *p;

    p = ctl(w, "publish", "cli.prio.event", "--payload", "{}", "--priority", "9", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "priority"));
    proc_free(p);

    /* Not a number at all: the command line is wrong, nothing is sent. */
    p = ctl(w, "publish", "cli.prio.event", "--payload", "{}", "--priority", "high", NULL);
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "--priority"));
    proc_free(p);
}

static void test_publish_usage_errors_exit_2(void **state)
{
    world *w = *state;
    proc *p;

    p = ctl(w, "publish", "cli.usage.event", NULL); /* no --payload */
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "--payload"));
    proc_free(p);
    p = ctl(w, "publish", "--payload", "{}", NULL); /* no TYPE */
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(w, "publish", "cli.usage.event", "--payload", "{}", "--metadata", "novalue", NULL);
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "KEY=VALUE"));
    proc_free(p);
    p = ctl(w, "publish", "cli.usage.event", "--payload", "{}", "--bogus", NULL);
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "--bogus"));
    proc_free(p);
}

/* ---- tail ---- */

static void publish_ok(world *w, const char *type, char *id_buf, size_t len)
{
    proc *p = ctl(w, "publish", type, "--payload", "{\"k\":\"v\"}", "--json", NULL);

    expect_exit(p, 0);
    if (id_buf != NULL)
        published_id(p, id_buf, len);
    proc_free(p);
}

static void test_tail_json_receives_exactly_the_matching_events(void **state)
{
    world *w = *state;
    char ids[3][64];
    json_t *v;
    char *line, *save = NULL;
    size_t n = 0;
    proc *t;

    /* Before the tail starts: --from earliest must replay it. */
    publish_ok(w, "cli.tailjs.one", ids[0], sizeof(ids[0]));
    publish_ok(w, "cli.other.one", NULL, 0);
    t = ctl_bg(w, "tail", "cli.tailjs.*", "--json", "--count", "3", "--from", "earliest", NULL);
    /* Non-matching events first: a filter that leaked would fill the count. */
    publish_ok(w, "cli.other.two", NULL, 0);
    publish_ok(w, "cli.tailjsx.one", NULL, 0);
    publish_ok(w, "cli.tailjs.two", ids[1], sizeof(ids[1]));
    publish_ok(w, "cli.tailjs.one", ids[2], sizeof(ids[2]));
    proc_wait(t, RUN_TIMEOUT_MS);
    expect_exit(t, 0);

    for (line = strtok_r(t->out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        const char *id, *type;

        v = json_loads(line, 0, NULL);
        if (v == NULL)
            fail_msg("not one JSON object per line: %s", line);
        id = json_string_value(json_object_get(v, "id"));
        type = json_string_value(json_object_get(v, "event_type"));
        assert_non_null(id);
        assert_non_null(type);
        assert_int_equal(strncmp(type, "cli.tailjs.", 11), 0);
        /* The whole envelope, payload included, proto3 JSON style. */
        assert_string_equal(json_string_value(json_object_get(v, "source_service")), "eventctl");
        assert_non_null(json_object_get(v, "data"));
        assert_true(strcmp(id, ids[0]) == 0 || strcmp(id, ids[1]) == 0 || strcmp(id, ids[2]) == 0);
        json_decref(v);
        n++;
    }
    assert_int_equal(n, 3);
    /* The temporary subscription went away with the tail. */
    assert_false(has_temporary_subscription(w));
    proc_free(t);
}

/* Polls until a temporary subscription exists, i.e. the tail is live. */
static void wait_for_tail(const world *w)
{
    TSE_TEST_AWAIT(has_temporary_subscription(w), 10000, "tail to create its subscription");
}

static void test_tail_prints_pretty_lines_and_exits_0_on_sigterm(void **state)
{
    world *w = *state;
    char id[64];
    proc *p, *t;

    t = ctl_bg(w, "tail", "cli.pretty.event", NULL);
    wait_for_tail(w);
    p = ctl(w, "publish", "cli.pretty.event", "--payload", "{\"zone\":\"freezer\"}", "--subject",
            "freezer-7", "--json", NULL);
    expect_exit(p, 0);
    published_id(p, id, sizeof(id));
    proc_free(p);
    assert_int_equal(proc_wait_lines(t, 1, 10000), 1);
    kill(t->pid, SIGTERM);
    proc_wait(t, 10000);
    expect_exit(t, 0);
    assert_non_null(strstr(t->out, "cli.pretty.event"));
    assert_non_null(strstr(t->out, id));
    assert_non_null(strstr(t->out, "subject=freezer-7"));
    assert_non_null(strstr(t->out, "{\"zone\":\"freezer\"}"));
    assert_false(has_temporary_subscription(w));
    proc_free(t);
}

#define CLI_TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_publish_traceparent_is_shown_by_tail_and_received_by_the_sdk(void **state)
{
    world *w = *state;
    const tse_client_event_view *ev;
    tse_client_batch *batch;
    char id[64];
    proc *p, *t;

    create_subscription(w, "cli-trace", "cli.trace.event");
    t = ctl_bg(w, "tail", "cli.trace.event", NULL);
    wait_for_tail(w);
    p = ctl(w, "publish", "cli.trace.event", "--payload", "{}", "--traceparent", CLI_TP,
            "--tracestate", "congo=t61rcWkgMzE", "--json", NULL);
    expect_exit(p, 0);
    published_id(p, id, sizeof(id));
    proc_free(p);
    assert_int_equal(proc_wait_lines(t, 1, 10000), 1);
    kill(t->pid, SIGTERM);
    proc_wait(t, 10000);
    expect_exit(t, 0);
    assert_non_null(strstr(t->out, id));
    assert_non_null(strstr(t->out, "traceparent=" CLI_TP));
    assert_non_null(strstr(t->out, "tracestate=congo=t61rcWkgMzE"));
    proc_free(t);

    batch = pull_one(w, "cli-trace");
    ev = tse_client_batch_event(batch, 0);
    assert_string_equal(ev->id, id);
    assert_string_equal(ev->traceparent, CLI_TP);
    assert_string_equal(ev->tracestate, "congo=t61rcWkgMzE");
    tse_client_batch_destroy(batch);

    /* A bad one is refused by the SDK before anything is sent, naming it. */
    p = ctl(w, "publish", "cli.trace.event", "--payload", "{}", "--traceparent", "00-abc", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "INVALID_ARGUMENT"));
    assert_non_null(strstr(p->err, "traceparent"));
    proc_free(p);
}

static void test_tail_exits_0_on_sigint_before_any_event(void **state)
{
    world *w = *state;
    proc *t = ctl_bg(w, "tail", "cli.quiet.*", NULL);

    wait_for_tail(w);
    kill(t->pid, SIGINT);
    proc_wait(t, 10000);
    expect_exit(t, 0);
    assert_string_equal(t->out, "");
    assert_false(has_temporary_subscription(w));
    proc_free(t);
}

static void test_tail_with_a_durable_subscription_keeps_it_and_acks(void **state)
{
    world *w = *state;
    proc *t, *p;
    json_t *v;

    publish_ok(w, "cli.durable.event", NULL, 0);
    publish_ok(w, "cli.durable.event", NULL, 0);
    t = ctl(w, "tail", "cli.durable.*", "--subscription", "cli-durable", "--from", "earliest",
            "--count", "2", NULL);
    expect_exit(t, 0);
    proc_free(t);

    p = ctl(w, "subscriptions", "get", "cli-durable", "--json", NULL);
    expect_exit(p, 0);
    v = json_loads(p->out, 0, NULL);
    assert_non_null(v);
    /* Both acked: nothing pending, nothing left to read. */
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "stats"), "pending")),
                        "0");
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "stats"), "lag")),
                        "0");
    json_decref(v);
    proc_free(p);

    /* Joining it again by name alone works; a third event is all it gets. */
    publish_ok(w, "cli.durable.event", NULL, 0);
    t = ctl(w, "tail", "--subscription", "cli-durable", "--count", "1", "--json", NULL);
    expect_exit(t, 0);
    assert_non_null(strstr(t->out, "cli.durable.event"));
    proc_free(t);

    t = ctl(w, "tail", "--subscription", "cli-no-such-subscription", "--count", "1", NULL);
    expect_exit(t, 1);
    assert_non_null(strstr(t->err, "NOT_FOUND"));
    proc_free(t);
}

static void test_tail_usage_errors_exit_2(void **state)
{
    world *w = *state;
    proc *p;

    p = ctl(w, "tail", NULL);
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(w, "tail", "a.b", "--from", "last-tuesday", NULL);
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "--from"));
    proc_free(p);
    p = ctl(w, "tail", "a.b", "--count", "0", NULL);
    expect_exit(p, 2);
    proc_free(p);
    assert_false(has_temporary_subscription(w));
}

/* ---- subscriptions ---- */

static void test_subscriptions_lifecycle_with_exit_codes(void **state)
{
    world *w = *state;
    json_t *v;
    proc *p;

    p = ctl(w, "subscriptions", "create", "cli-life", "--types", "cli.life.*,cli.other.life",
            "--from", "earliest", "--ack-deadline", "5000", "--max-attempts", "0",
            "--max-in-flight", "7", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "cli-life"));
    proc_free(p);

    /* The same settings again: accepted. Other settings: ALREADY_EXISTS. */
    p = ctl(w, "subscriptions", "create", "cli-life", "--types", "cli.life.*", "--types",
            "cli.other.life", "--from", "earliest", "--ack-deadline", "5000", "--max-attempts", "0",
            "--max-in-flight", "7", NULL);
    expect_exit(p, 0);
    proc_free(p);
    p = ctl(w, "subscriptions", "create", "cli-life", "--types", "cli.changed.*", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "ALREADY_EXISTS"));
    proc_free(p);

    p = ctl(w, "subscriptions", "get", "cli-life", "--json", NULL);
    expect_exit(p, 0);
    v = json_loads(p->out, 0, NULL);
    assert_non_null(v);
    assert_string_equal(json_string_value(json_array_get(json_object_get(v, "event_types"), 1)),
                        "cli.other.life");
    assert_int_equal(json_integer_value(json_object_get(v, "ack_deadline_ms")), 5000);
    assert_int_equal(json_integer_value(json_object_get(v, "max_delivery_attempts")), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "max_in_flight")), 7);
    assert_string_equal(json_string_value(json_object_get(v, "start")), "START_POSITION_EARLIEST");
    json_decref(v);
    proc_free(p);

    p = ctl(w, "subscriptions", "get", "cli-life", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "ack deadline ms"));
    assert_non_null(strstr(p->out, "earliest"));
    proc_free(p);

    p = ctl(w, "subscriptions", "list", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "NAME"));
    assert_non_null(strstr(p->out, "cli-life"));
    proc_free(p);

    p = ctl(w, "subscriptions", "delete", "cli-life", NULL);
    expect_exit(p, 0);
    proc_free(p);
    p = ctl(w, "subscriptions", "get", "cli-life", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "NOT_FOUND"));
    proc_free(p);
    p = ctl(w, "subscriptions", "delete", "cli-life", NULL);
    expect_exit(p, 1);
    proc_free(p);
    p = ctl(w, "subscriptions", "list", "--json", NULL);
    expect_exit(p, 0);
    assert_null(strstr(p->out, "\"cli-life\""));
    proc_free(p);
}

static void test_subscriptions_bad_input(void **state)
{
    world *w = *state;
    proc *p;

    p = ctl(w, "subscriptions", "create", "cli-bad", NULL); /* no --types */
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(w, "subscriptions", "create", "cli bad name!", "--types", "a.b", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "name"));
    proc_free(p);
    p = ctl(w, "subscriptions", "get", "cli-bad", "--types", "a.b", NULL);
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(w, "subscriptions", "frobnicate", NULL);
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(w, "subscriptions", NULL);
    expect_exit(p, 2);
    proc_free(p);
}

/* ---- stats, types, health ---- */

static void test_stats_shows_the_counters(void **state)
{
    world *w = *state;
    json_t *v;
    proc *p;

    publish_ok(w, "cli.stats.event", NULL, 0);
    p = ctl(w, "stats", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "events published"));
    assert_non_null(strstr(p->out, "redis connected"));
    assert_non_null(strstr(p->out, "cli.stats.event"));
    proc_free(p);

    p = ctl(w, "stats", "--json", NULL);
    expect_exit(p, 0);
    v = json_loads(p->out, 0, NULL);
    assert_non_null(v);
    assert_true(json_is_true(json_object_get(v, "redis_connected")));
    assert_true(atoll(json_string_value(json_object_get(v, "events_published"))) >= 1);
    assert_non_null(json_object_get(json_object_get(v, "stream_lengths"), "cli.stats.event"));
    json_decref(v);
    proc_free(p);
}

/* A subscription nobody is attached to is still one: stats list it (the
 * service used to report "subscriptions 0" and an empty table). */
static void test_stats_list_subscriptions_without_subscribers(void **state)
{
    world *w = *state;
    json_t *v, *sub;
    size_t i;
    bool found = false;
    proc *p;

    create_subscription(w, "cli-stats-idle", "cli.idle.*");
    p = ctl(w, "stats", NULL);
    expect_exit(p, 0);
    if (strstr(p->out, "no subscriptions") != NULL || strstr(p->out, "cli-stats-idle") == NULL)
        fail_msg("eventctl stats does not list cli-stats-idle:\n%s", p->out);
    proc_free(p);

    p = ctl(w, "stats", "--json", NULL);
    expect_exit(p, 0);
    v = json_loads(p->out, 0, NULL);
    assert_non_null(v);
    assert_true(json_integer_value(json_object_get(v, "subscriptions")) >= 1);
    json_array_foreach(json_object_get(v, "subscription_stats"), i, sub)
    {
        found |= strcmp(json_string_value(json_object_get(sub, "name")), "cli-stats-idle") == 0;
    }
    assert_true(found);
    json_decref(v);
    proc_free(p);
}

/* Map keys are data: an event type prints exactly as it is, underscores
 * and all, however long (stats used to print "storage.temperature alert",
 * and cut keys past 63 characters). */
static void test_stats_print_event_types_exactly(void **state)
{
    world *w = *state;
    const char *under = "cli.under_score.type_name";
    const char *longer = "cli.a_very_long_event_type_name_that_goes_on.and_on_past_sixty_four_"
                         "characters_of_label";
    char line[256];
    proc *p;

    publish_ok(w, under, NULL, 0);
    publish_ok(w, longer, NULL, 0);
    p = ctl(w, "stats", NULL);
    expect_exit(p, 0);
    if (strstr(p->out, under) == NULL || strstr(p->out, "under score") != NULL ||
        strstr(p->out, longer) == NULL)
        fail_msg("eventctl stats does not print %s and %s as they are:\n%s", under, longer, p->out);
    /* Field names are still labels. */
    assert_non_null(strstr(p->out, "events published"));
    snprintf(line, sizeof(line), "  %s ", under);
    assert_non_null(strstr(p->out, line));
    proc_free(p);
}

/* One line per event, and nothing from an event reaches the terminal as a
 * control character: a subject, metadata or payload holding a newline or an
 * escape sequence used to split the line and colour the terminal. */
static void test_tail_pretty_prints_one_safe_line_whatever_the_event_holds(void **state)
{
    world *w = *state;
    proc *p, *t;
    size_t lines = 0;

    t = ctl_bg(w, "tail", "cli.hostile.event", NULL);
    wait_for_tail(w);
    p = ctl(w, "publish", "cli.hostile.event", "--payload", "{\"s\":\"x\\u0085y\\u007f\"}",
            "--subject", "two\nlines", "--metadata", "note=\x1b[31mred\x1b[0m\rback", NULL);
    expect_exit(p, 0);
    proc_free(p);
    assert_int_equal(proc_wait_lines(t, 1, 10000), 1);
    kill(t->pid, SIGTERM);
    proc_wait(t, 10000);
    expect_exit(t, 0);
    for (const char *c = t->out; *c != '\0'; c++) {
        lines += *c == '\n';
        if (((unsigned char)*c < 0x20 && *c != '\n') || *c == 0x7F)
            fail_msg("a control character (0x%02x) reached the output: %s", *c, t->out);
        if ((unsigned char)c[0] == 0xC2 && (unsigned char)c[1] == 0x85)
            fail_msg("a C1 control reached the output: %s", t->out);
    }
    assert_int_equal(lines, 1);
    assert_non_null(strstr(t->out, "subject=two\\nlines"));
    assert_non_null(strstr(t->out, "note=\\u001B[31mred\\u001B[0m\\rback"));
    proc_free(t);
}

static void test_types_lists_the_catalog(void **state)
{
    world *w = *state;
    json_t *v;
    proc *p;

    p = ctl(w, "types", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "sample.created"));
    assert_non_null(strstr(p->out, "tracseq.events.v1.TemperatureAlert"));
    assert_non_null(strstr(p->out, "sequencing.job_completed"));
    proc_free(p);

    p = ctl(w, "types", "--json", NULL);
    expect_exit(p, 0);
    v = json_loads(p->out, 0, NULL);
    assert_non_null(v);
    assert_true(json_array_size(json_object_get(v, "event_types")) >= 18);
    json_decref(v);
    proc_free(p);

    p = ctl(w, "types", "storage.temperature_alert", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "current_temperature"));
    assert_non_null(strstr(p->out, "double"));
    proc_free(p);

    p = ctl(w, "types", "no.such_type", NULL);
    expect_exit(p, 1);
    assert_non_null(strstr(p->err, "no.such_type"));
    proc_free(p);
}

static void test_health_reports_serving(void **state)
{
    world *w = *state;
    proc *p;

    p = ctl(w, "health", NULL);
    expect_exit(p, 0);
    assert_string_equal(p->out, "SERVING\n");
    proc_free(p);
    p = ctl(w, "health", "--service", "tracseq.events.v1.EventService", "--json", NULL);
    expect_exit(p, 0);
    assert_string_equal(p->out, "{\"status\":\"SERVING\"}\n");
    proc_free(p);
}

/* ---- the command line itself ---- */

static void test_help_exits_0_for_every_command(void **state)
{
    static const char *const commands[] = {"publish", "tail",  "subscriptions",
                                           "stats",   "types", "health"};
    char usage[64];
    size_t i;
    proc *p;

    (void)state;
    p = ctl(NULL, "--help", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "Exit codes"));
    assert_non_null(strstr(p->out, "TRACSEQ_EVENTS_SERVER"));
    proc_free(p);
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        snprintf(usage, sizeof(usage), "Usage: eventctl %s", commands[i]);
        p = ctl(NULL, commands[i], "--help", NULL);
        expect_exit(p, 0);
        assert_non_null(strstr(p->out, usage));
        proc_free(p);
        p = ctl(NULL, "help", commands[i], NULL);
        expect_exit(p, 0);
        assert_non_null(strstr(p->out, usage));
        proc_free(p);
    }
    p = ctl(NULL, "subscriptions", "create", "--help", NULL);
    expect_exit(p, 0);
    assert_non_null(strstr(p->out, "--ack-deadline"));
    proc_free(p);
}

static void test_unknown_command_or_option_exits_2(void **state)
{
    proc *p;

    (void)state;
    p = ctl(NULL, "frobnicate", NULL);
    expect_exit(p, 2);
    assert_non_null(strstr(p->err, "frobnicate"));
    proc_free(p);
    p = ctl(NULL, NULL);
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(NULL, "--no-such-option", "stats", NULL);
    expect_exit(p, 2);
    proc_free(p);
    p = ctl(NULL, "stats", "--timeout", "soon", NULL);
    expect_exit(p, 2);
    proc_free(p);
}

static void test_unreachable_server_exits_3_in_bounded_time(void **state)
{
    char addr[64];
    proc *p;
    const char *const *cmd;
    static const char *const commands[][6] = {
        {"health", NULL},
        {"stats", NULL},
        {"subscriptions", "list", NULL},
        {"tail", "a.b", NULL},
        {"publish", "a.b", "--payload", "{}", NULL},
    };
    size_t i;
    (void)state;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tse_test_free_port());
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const char *args[12] = {"--server", addr, "--timeout", "1500"};
        size_t n = 4;

        for (cmd = commands[i]; *cmd != NULL; cmd++)
            args[n++] = *cmd;
        p = proc_start(NULL, args);
        proc_wait(p, RUN_TIMEOUT_MS);
        expect_exit(p, 3);
        assert_non_null(strstr(p->err, "UNAVAILABLE"));
        /* --timeout bounds it, retries included (slack for a loaded box). */
        assert_true(p->elapsed_ms < 8000);
        proc_free(p);
    }
}

static void test_server_defaults_to_the_environment(void **state)
{
    world *w = *state;
    char dead[64];
    proc *p;

    p = proc_start(w->service->addr, (const char *const[]){"health", NULL});
    proc_wait(p, RUN_TIMEOUT_MS);
    expect_exit(p, 0);
    proc_free(p);

    snprintf(dead, sizeof(dead), "127.0.0.1:%d", tse_test_free_port());
    p = proc_start(dead, (const char *const[]){"health", "--timeout", "1500", NULL});
    proc_wait(p, RUN_TIMEOUT_MS);
    expect_exit(p, 3);
    proc_free(p);
    /* --server wins over the environment. */
    p = proc_start(dead, (const char *const[]){"health", "--server", w->service->addr, NULL});
    proc_wait(p, RUN_TIMEOUT_MS);
    expect_exit(p, 0);
    proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_typed_payload_arrives_with_every_envelope_option),
        cmocka_unit_test(test_publish_reads_the_payload_from_a_file),
        cmocka_unit_test(test_publish_with_a_repeated_id_is_a_duplicate),
        cmocka_unit_test(test_publish_bad_payload_exits_1_naming_the_field),
        cmocka_unit_test(test_publish_bad_priority_is_refused),
        cmocka_unit_test(test_publish_usage_errors_exit_2),
        cmocka_unit_test(test_tail_json_receives_exactly_the_matching_events),
        cmocka_unit_test(test_tail_prints_pretty_lines_and_exits_0_on_sigterm),
        cmocka_unit_test(test_publish_traceparent_is_shown_by_tail_and_received_by_the_sdk),
        cmocka_unit_test(test_tail_exits_0_on_sigint_before_any_event),
        cmocka_unit_test(test_tail_with_a_durable_subscription_keeps_it_and_acks),
        cmocka_unit_test(test_tail_usage_errors_exit_2),
        cmocka_unit_test(test_subscriptions_lifecycle_with_exit_codes),
        cmocka_unit_test(test_subscriptions_bad_input),
        cmocka_unit_test(test_stats_shows_the_counters),
        cmocka_unit_test(test_stats_list_subscriptions_without_subscribers),
        cmocka_unit_test(test_stats_print_event_types_exactly),
        cmocka_unit_test(test_tail_pretty_prints_one_safe_line_whatever_the_event_holds),
        cmocka_unit_test(test_types_lists_the_catalog),
        cmocka_unit_test(test_health_reports_serving),
        cmocka_unit_test(test_help_exits_0_for_every_command),
        cmocka_unit_test(test_unknown_command_or_option_exits_2),
        cmocka_unit_test(test_unreachable_server_exits_3_in_bounded_time),
        cmocka_unit_test(test_server_defaults_to_the_environment),
    };

    return cmocka_run_group_tests_name("eventctl", tests, world_up, world_down);
}
