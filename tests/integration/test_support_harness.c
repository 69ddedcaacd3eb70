/*
 * test_support_harness.c - the test harness's own guarantees that other
 * tests rely on without checking: claimed ports (support/ports.h) are
 * outside the ephemeral range and never shared between processes while
 * held; tse_test_port_listened_by tells the listening process from any
 * other; tse_test_exit_code never reads a crash as an exit code.
 *
 * Other processes are forked children of the test (each its own owner of
 * record locks), reporting through their exit code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "ports.h"

#define CLAIMS 40

/* Runs fn(arg) in a forked child; its return value is the child's exit
 * code, which is returned. */
static int in_child(int (*fn)(const int *arg), const int *arg)
{
    int status;
    pid_t pid;

    fflush(NULL); /* nothing of ours buffered twice */
    pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int code = fn(arg);

        fflush(NULL);
        _exit(code);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return tse_test_exit_code(status);
}

/* A socket listening on 127.0.0.1:port; -1 when it cannot. */
static int listen_on(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- claims ---- */

static void test_claims_are_distinct_and_outside_the_ephemeral_range(void **state)
{
    int ports[CLAIMS], lo, hi, elo = 0, ehi = -1;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

    (void)state;
    if (f != NULL) {
        if (fscanf(f, "%d %d", &elo, &ehi) != 2)
            ehi = -1;
        fclose(f);
    }
    tse_test_port_range(&lo, &hi);
    /* Only a machine whose ephemeral range leaves no room has it overlap. */
    if (hi - lo + 1 < 65535 - 10000 + 1) {
        assert_true(hi < elo || lo > ehi);
    }
    for (int i = 0; i < CLAIMS; i++) {
        ports[i] = tse_test_port_claim();
        assert_in_range(ports[i], lo, hi);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(ports[i], ports[j]);
    }
    for (int i = 0; i < CLAIMS; i++)
        tse_test_port_release(ports[i]);
}

/* The child: 1 when it could claim port arg[0], 0 when not. */
static int child_try(const int *arg)
{
    return tse_test_port_try_claim(arg[0]) ? 1 : 0;
}

/* The child: claims CLAIMS ports; 1 when one of them is one of arg[0..n). */
static int child_claims_avoid(const int *arg)
{
    for (int i = 0; i < CLAIMS; i++) {
        int port = tse_test_port_claim();

        if (port < 0)
            return 2;
        for (int j = 0; j < CLAIMS; j++)
            if (port == arg[j])
                return 1;
    }
    return 0;
}

static void test_a_port_another_process_holds_is_not_claimed(void **state)
{
    int ports[CLAIMS];

    (void)state;
    for (int i = 0; i < CLAIMS; i++)
        assert_true((ports[i] = tse_test_port_claim()) > 0);
    assert_int_equal(in_child(child_try, &ports[0]), 0);
    assert_int_equal(in_child(child_try, &ports[CLAIMS - 1]), 0);
    /* A child walks the range from its own point; wherever that is, it
     * steps over every port held here. */
    assert_int_equal(in_child(child_claims_avoid, ports), 0);
    for (int i = 0; i < CLAIMS; i++)
        tse_test_port_release(ports[i]);
}

static void test_a_released_port_can_be_claimed_again(void **state)
{
    int port = tse_test_port_claim();

    (void)state;
    assert_true(port > 0);
    assert_false(tse_test_port_try_claim(port)); /* held here already */
    tse_test_port_release(port);
    /* by another process, then (it exited: its lock went) by this one */
    assert_int_equal(in_child(child_try, &port), 1);
    assert_true(tse_test_port_try_claim(port));
    tse_test_port_release(port);
}

static void test_a_port_something_listens_on_is_not_claimed(void **state)
{
    int port = tse_test_port_claim(), fd;

    (void)state;
    assert_true(port > 0);
    tse_test_port_release(port);
    fd = listen_on(port);
    assert_true(fd >= 0);
    assert_false(tse_test_port_try_claim(port));
    close(fd);
    assert_true(tse_test_port_try_claim(port));
    tse_test_port_release(port);
}

/* ---- who listens ---- */

static void test_listened_by_names_the_listening_process_only(void **state)
{
    int port = tse_test_port_claim(), idle = tse_test_port_claim(), fd, status;
    pid_t other;

    (void)state;
    assert_true(port > 0 && idle > 0);
    assert_false(tse_test_port_listened_by(port, getpid()));
    fd = listen_on(port);
    assert_true(fd >= 0);
    /* A process of ours that does not have the socket: the listener closed
     * in it, it waits to be killed. */
    other = fork();
    assert_true(other >= 0);
    if (other == 0) {
        close(fd);
        pause();
        _exit(0);
    }
    assert_true(tse_test_port_listened_by(port, getpid()));
    assert_false(tse_test_port_listened_by(idle, getpid()));
    /* Until the child closed its copy it may still have it; then never. */
    for (int i = 0; i < 500 && tse_test_port_listened_by(port, other); i++)
        usleep(10000);
    assert_false(tse_test_port_listened_by(port, other));
    kill(other, SIGKILL);
    assert_int_equal(waitpid(other, &status, 0), other);
    close(fd);
    assert_false(tse_test_port_listened_by(port, getpid()));
    tse_test_port_release(port);
    tse_test_port_release(idle);
}

/* ---- exit codes ---- */

static void test_exit_code_of_a_command_that_exited(void **state)
{
    (void)state;
    assert_int_equal(tse_test_exit_code(system("exit 3")), 3);
    assert_int_equal(tse_test_exit_code(system("true")), 0);
}

/* In the child: a test that reads the status of a command killed by
 * SIGKILL; it must fail. */
static void reads_a_killed_command(void **state)
{
    (void)state;
    (void)tse_test_exit_code(system("kill -9 $$"));
}

static int child_runs_the_killed_test(const int *arg)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(reads_a_killed_command)};

    /* cmocka's report to the pipe the parent reads. */
    dup2(arg[0], STDOUT_FILENO);
    dup2(arg[0], STDERR_FILENO);
    return cmocka_run_group_tests_name("killed", tests, NULL, NULL) == 1 ? 0 : 1;
}

static void test_exit_code_fails_the_test_when_the_command_was_killed(void **state)
{
    int p[2], arg[1];
    char out[8192];
    ssize_t n;
    size_t used = 0;

    (void)state;
    assert_int_equal(pipe(p), 0);
    arg[0] = p[1];
    assert_int_equal(in_child(child_runs_the_killed_test, arg), 0);
    close(p[1]);
    while (used < sizeof(out) - 1 && (n = read(p[0], out + used, sizeof(out) - 1 - used)) > 0)
        used += (size_t)n;
    out[used] = '\0';
    close(p[0]);
    if (strstr(out, "killed by signal 9") == NULL)
        fail_msg("no \"killed by signal 9\" in the failed test's report:\n%s", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claims_are_distinct_and_outside_the_ephemeral_range),
        cmocka_unit_test(test_a_port_another_process_holds_is_not_claimed),
        cmocka_unit_test(test_a_released_port_can_be_claimed_again),
        cmocka_unit_test(test_a_port_something_listens_on_is_not_claimed),
        cmocka_unit_test(test_listened_by_names_the_listening_process_only),
        cmocka_unit_test(test_exit_code_of_a_command_that_exited),
        cmocka_unit_test(test_exit_code_fails_the_test_when_the_command_was_killed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
