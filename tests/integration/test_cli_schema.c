/*
 * test_cli_schema.c - `eventctl publish` and schema_valid=false, end to
 * end: a real redis-server, the real tracseq-events in its default
 * (lenient) validation mode, and eventctl run as a child process
 * ($TSE_EVENTCTL_BIN) whose exit code, stdout and stderr are checked
 * apart. What was stored is read back through the SDK (pull).
 *
 * Invariants of this file: the world's one subscription takes only
 * sample.created, which only this file publishes; every child is reaped
 * (killed after a bound if it hangs, which fails the test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
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

#define BUF_MAX        (64 * 1024)
#define RUN_TIMEOUT_MS 20000
#define MAX_ARGS       16
#define SUBSCRIPTION   "schema-cli"

/* A sample.created payload that fits its schema, and one that does not
 * (sample_id is no UUID): the SDK encodes both, the server judges. */
#define VALID_PAYLOAD                                                                              \
    "{\"sample_id\":\"123e4567-e89b-12d3-a456-426614174000\",\"barcode\":\"SAM-1\","               \
    "\"sample_type\":\"DNA\",\"submitter_id\":\"123e4567-e89b-12d3-a456-426614174001\","           \
    "\"lab_id\":\"123e4567-e89b-12d3-a456-426614174002\"}"
#define MISFIT_PAYLOAD                                                                             \
    "{\"sample_id\":\"not-a-uuid\",\"barcode\":\"SAM-2\",\"sample_type\":\"DNA\"}"

typedef tse_test_sdk_world world;

static int world_up(void **state)
{
    tse_client_subscription_spec spec = {.name = SUBSCRIPTION,
                                         .event_types = (const char *const[]){"sample.created"},
                                         .n_event_types = 1};
    tse_client_error err;
    world *w;

    if (getenv("TSE_EVENTCTL_BIN") == NULL)
        fail_msg("TSE_EVENTCTL_BIN is not set (run through ctest)");
    w = tse_test_sdk_world_start(false, NULL, "schema-cli-test");
    if (tse_client_subscription_create(w->client, &spec, NULL, &err) != TSE_CLIENT_OK)
        fail_msg("create %s: %s", SUBSCRIPTION, err.message);
    *state = w;
    return 0;
}

static int world_down(void **state)
{
    tse_test_sdk_world_stop(*state);
    return 0;
}

/* ---- running eventctl ---- */

typedef struct run {
    int status; /* exit code; 128 + signal when killed */
    char out[BUF_MAX], err[BUF_MAX];
} run;

/* Reads what is there into buf; returns false at EOF (and closes *fd). */
static bool take(int *fd, char *buf, size_t *len)
{
    ssize_t got = read(*fd, buf + *len, BUF_MAX - 1 - *len);

    if (got > 0) {
        *len += (size_t)got;
        return true;
    }
    if (got < 0 && errno == EINTR)
        return true;
    close(*fd);
    *fd = -1;
    return false;
}

/* Runs eventctl --server <service> publish sample.created --payload
 * payload [extra] to completion; stdout and stderr apart. */
static run *publish(const world *w, const char *payload, const char *extra)
{
    run *r = calloc(1, sizeof(*r));
    char *argv[MAX_ARGS];
    size_t n = 0, out_len = 0, err_len = 0;
    int out[2], err[2], st = 0;
    long long end = tse_test_now_ms() + RUN_TIMEOUT_MS;
    pid_t pid;

    assert_non_null(r);
    argv[n++] = getenv("TSE_EVENTCTL_BIN");
    argv[n++] = "--server";
    argv[n++] = (char *)w->service->addr;
    argv[n++] = "publish";
    argv[n++] = "sample.created";
    argv[n++] = "--payload";
    argv[n++] = (char *)payload;
    if (extra != NULL)
        argv[n++] = (char *)extra;
    argv[n] = NULL;
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]), close(out[1]), close(err[0]), close(err[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    while (out[0] >= 0 || err[0] >= 0) {
        struct pollfd p[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
        long long left = end - tse_test_now_ms();

        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(p, 2, (int)left) <= 0)
            continue;
        if (p[0].revents != 0)
            take(&out[0], r->out, &out_len);
        if (p[1].revents != 0)
            take(&err[0], r->err, &err_len);
    }
    if (out[0] >= 0)
        close(out[0]);
    if (err[0] >= 0)
        close(err[0]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

static void expect_exit(const run *r, int code)
{
    if (r->status != code)
        fail_msg("eventctl exited %d, expected %d\nstdout: %s\nstderr: %s", r->status, code, r->out,
                 r->err);
}

/* Pulls the one event published last and acks it; returns its
 * schema_valid metadata (copied into buf, "" when absent). */
static const char *pull_schema_valid(const world *w, char *buf, size_t len)
{
    tse_client_batch *batch = NULL;
    const tse_client_event_view *ev;
    tse_client_error err;
    const char *ack_id;

    if (tse_client_pull(w->client, SUBSCRIPTION, 10, 3000, NULL, &batch, &err) != TSE_CLIENT_OK)
        fail_msg("pull: %s", err.message);
    assert_int_equal(tse_client_batch_count(batch), 1);
    ev = tse_client_batch_event(batch, 0);
    buf[0] = '\0';
    for (size_t i = 0; i < ev->n_metadata; i++)
        if (strcmp(ev->metadata[i].key, "schema_valid") == 0)
            snprintf(buf, len, "%s", ev->metadata[i].value);
    ack_id = ev->ack_id;
    assert_int_equal(tse_client_acknowledge(w->client, SUBSCRIPTION, &ack_id, 1, NULL, NULL),
                     TSE_CLIENT_OK);
    tse_client_batch_destroy(batch);
    return buf;
}

/* ---- tests ---- */

static void test_a_valid_payload_gives_no_warning(void **state)
{
    world *w = *state;
    char md[16];
    run *r = publish(w, VALID_PAYLOAD, "--strict");

    expect_exit(r, 0);
    assert_string_equal(r->err, "");
    assert_non_null(strstr(r->out, "published "));
    assert_string_equal(pull_schema_valid(w, md, sizeof(md)), "");
    free(r);
}

static void test_a_misfit_payload_is_stored_as_generic_with_a_warning(void **state)
{
    world *w = *state;
    char md[16];
    run *r = publish(w, MISFIT_PAYLOAD, NULL);

    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "published "));
    assert_non_null(strstr(r->err, "eventctl publish: warning: "));
    assert_non_null(strstr(r->err, "sample.created payload did not match its catalog schema"));
    assert_non_null(strstr(r->err, "stored event "));
    assert_non_null(strstr(r->err, "as generic data"));
    assert_string_equal(pull_schema_valid(w, md, sizeof(md)), "false");
    free(r);
}

static void test_strict_makes_a_misfit_exit_5_though_it_is_stored(void **state)
{
    world *w = *state;
    char md[16];
    run *r = publish(w, MISFIT_PAYLOAD, "--strict");

    expect_exit(r, 5);
    assert_non_null(strstr(r->err, "eventctl publish: error: "));
    assert_non_null(strstr(r->err, "sample.created payload did not match its catalog schema"));
    assert_non_null(strstr(r->err, "it is stored and delivered all the same"));
    /* The event is in its stream: --strict can only report it. */
    assert_string_equal(pull_schema_valid(w, md, sizeof(md)), "false");
    free(r);
}

static void test_json_output_carries_schema_valid(void **state)
{
    world *w = *state;
    char md[16];
    run *r = publish(w, MISFIT_PAYLOAD, "--json");

    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "\"schema_valid\":false"));
    assert_non_null(strstr(r->err, "warning: "));
    pull_schema_valid(w, md, sizeof(md));
    free(r);
    r = publish(w, VALID_PAYLOAD, "--json");
    expect_exit(r, 0);
    assert_non_null(strstr(r->out, "\"schema_valid\":true"));
    assert_string_equal(r->err, "");
    pull_schema_valid(w, md, sizeof(md));
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_valid_payload_gives_no_warning),
        cmocka_unit_test(test_a_misfit_payload_is_stored_as_generic_with_a_warning),
        cmocka_unit_test(test_strict_makes_a_misfit_exit_5_though_it_is_stored),
        cmocka_unit_test(test_json_output_carries_schema_valid),
    };

    return cmocka_run_group_tests(tests, world_up, world_down);
}
