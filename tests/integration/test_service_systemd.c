/*
 * test_service_systemd.c - what the Debian package's systemd units rely on,
 * with the real binaries: tracseq-events and tracseq-rest-bridge send
 * "READY=1" to $NOTIFY_SOCKET (Type=notify) only once their port accepts
 * connections, "STOPPING=1" on SIGTERM, and exit 0; and the service takes
 * its settings from the settings file alone (the package's
 * /etc/tracseq-events/tracseq-events.conf), with a flag still winning.
 *
 * The test plays systemd: it binds the notify socket, starts each process
 * with NOTIFY_SOCKET pointing at it and, on READY=1, connects once, with no
 * retry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define DEADLINE_MS 60000

typedef struct manager {
    int fd;
    char path[108];
} manager;

/* Binds a datagram socket like systemd's notify socket. */
static void manager_start(manager *m)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};

    snprintf(m->path, sizeof(m->path), "/tmp/tse-notify-%d", (int)getpid());
    unlink(m->path);
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", m->path);
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(m->fd >= 0);
    assert_int_equal(bind(m->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
}

static void manager_stop(manager *m)
{
    close(m->fd);
    unlink(m->path);
}

/* Waits for the next notice (up to DEADLINE_MS); returns false on timeout. */
static bool manager_next(manager *m, char *buf, size_t len)
{
    struct pollfd p = {.fd = m->fd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, DEADLINE_MS) != 1)
        return false;
    n = recv(m->fd, buf, len - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return true;
}

/* Starts argv with NOTIFY_SOCKET=m->path (and extra environment, if any). */
static pid_t spawn(const manager *m, char *const argv[], const char *env_name,
                   const char *env_value)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("NOTIFY_SOCKET", m->path, 1);
        if (env_name != NULL)
            setenv(env_name, env_value, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* One connection attempt, no retry. */
static bool connects_at_once(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

/* READY=1, then the port at once; SIGTERM, STOPPING=1, exit 0. */
static void expect_notify_lifecycle(manager *m, pid_t pid, int port)
{
    char notice[256];
    int status;

    if (!manager_next(m, notice, sizeof(notice))) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("no READY=1 within %d ms", DEADLINE_MS);
    }
    assert_string_equal(notice, "READY=1");
    if (!connects_at_once(port)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("READY=1 came before port %d accepted connections", port);
    }
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_true(manager_next(m, notice, sizeof(notice)));
    assert_string_equal(notice, "STOPPING=1");
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(tse_test_exit_code(status), 0);
}

static void test_service_is_ready_only_once_listening(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    manager m;
    char listen[64], redis[160];
    int port = tse_test_free_port();

    assert_non_null(r);
    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
    snprintf(redis, sizeof(redis), "--redis-url=%s", r->url);
    char *argv[] = {getenv("TSE_SERVICE_BIN"), listen, redis, NULL};
    manager_start(&m);
    expect_notify_lifecycle(&m, spawn(&m, argv, NULL, NULL), port);
    manager_stop(&m);
    tse_test_redis_stop(r);
}

static void test_service_with_redis_away_is_ready_once_listening(void **state)
{
    /* Redis may start later (it retries, answering NOT_SERVING): the unit
     * must not hang in "activating" meanwhile. */
    manager m;
    char listen[64], redis[64];
    int port = tse_test_free_port();

    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
    snprintf(redis, sizeof(redis), "--redis-url=redis://127.0.0.1:%d", tse_test_free_port());
    char *argv[] = {getenv("TSE_SERVICE_BIN"), listen, redis, "--redis-timeout=200ms", NULL};
    manager_start(&m);
    expect_notify_lifecycle(&m, spawn(&m, argv, NULL, NULL), port);
    manager_stop(&m);
}

static void test_bridge_is_ready_only_once_listening(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    tse_test_service *s = tse_test_service_start(r, NULL);
    manager m;
    char bin[512], port_arg[32], service[96];
    int port = tse_test_free_port();

    assert_non_null(s);
    tse_test_bridge_path(bin, sizeof(bin));
    snprintf(port_arg, sizeof(port_arg), "--port=%d", port);
    snprintf(service, sizeof(service), "--event-service-addr=%s", s->addr);
    char *argv[] = {bin, "--host=127.0.0.1", port_arg, service, NULL};
    manager_start(&m);
    expect_notify_lifecycle(&m, spawn(&m, argv, NULL, NULL), port);
    manager_stop(&m);
    assert_int_equal(tse_test_service_stop(s), 0);
    tse_test_redis_stop(r);
}

/* The package's way: every setting from the file, no flag, no variable. */
static void test_service_runs_on_its_settings_file(void **state)
{
    tse_test_redis *r = tse_test_redis_start(false);
    manager m;
    char conf[128], text[512];
    int port = tse_test_free_port(), unused = tse_test_free_port();
    FILE *f;

    assert_non_null(r);
    snprintf(conf, sizeof(conf), "/tmp/tse-systemd-%d.conf", (int)getpid());
    f = fopen(conf, "w");
    assert_non_null(f);
    snprintf(text, sizeof(text),
             "# as in /etc/tracseq-events/tracseq-events.conf\n"
             "REDIS_URL=%s\nGRPC_LISTEN=127.0.0.1:%d\nLOG_FORMAT=text\n",
             r->url, unused);
    fputs(text, f);
    fclose(f);
    /* The file names a port; the flag wins, so the service listens on
     * `port`, and READY=1 then a connection there prove both layers. */
    char listen[64];
    snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
    char *argv[] = {getenv("TSE_SERVICE_BIN"), listen, NULL};
    manager_start(&m);
    expect_notify_lifecycle(&m, spawn(&m, argv, "TRACSEQ_EVENTS_CONFIG", conf), port);
    assert_false(connects_at_once(unused));
    /* And with the file alone. */
    char *plain[] = {getenv("TSE_SERVICE_BIN"), NULL};
    expect_notify_lifecycle(&m, spawn(&m, plain, "TRACSEQ_EVENTS_CONFIG", conf), unused);
    manager_stop(&m);
    unlink(conf);
    tse_test_redis_stop(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_is_ready_only_once_listening),
        cmocka_unit_test(test_service_with_redis_away_is_ready_once_listening),
        cmocka_unit_test(test_bridge_is_ready_only_once_listening),
        cmocka_unit_test(test_service_runs_on_its_settings_file),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
