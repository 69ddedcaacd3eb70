/*
 * test_common_notify.c - tse_notify, the hand-written sd_notify: one
 * datagram with the state to a path socket and to an abstract ('@') one, a
 * no-op without NOTIFY_SOCKET, and clear errors for a name that is no
 * socket address and for a socket nobody listens on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "obs/notify.h"

/* Binds a datagram socket at name (path, or "@abstract"). */
static int listen_at(const char *name)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    else
        unlink(name);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                     0);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[128];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void sends_to_a_path_socket(void **state)
{
    char path[64];
    tse_error err;
    int fd;

    snprintf(path, sizeof(path), "/tmp/tse-notify-unit-%d", (int)getpid());
    fd = listen_at(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(tse_notify("READY=1", &err), TSE_OK);
    expect_datagram(fd, "READY=1");
    assert_int_equal(tse_notify("STOPPING=1", NULL), TSE_OK);
    expect_datagram(fd, "STOPPING=1");
    close(fd);
    unlink(path);
    unsetenv("NOTIFY_SOCKET");
}

static void sends_to_an_abstract_socket(void **state)
{
    char name[64];
    int fd;

    snprintf(name, sizeof(name), "@tse-notify-unit-%d", (int)getpid());
    fd = listen_at(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(tse_notify("READY=1", NULL), TSE_OK);
    expect_datagram(fd, "READY=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void without_notify_socket_does_nothing(void **state)
{
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(tse_notify("READY=1", NULL), TSE_OK);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(tse_notify("READY=1", NULL), TSE_OK);
    unsetenv("NOTIFY_SOCKET");
}

static void bad_names_and_absent_sockets_are_errors(void **state)
{
    char longname[200];
    tse_error err;

    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(tse_notify("READY=1", &err), TSE_INVALID);
    assert_string_equal(err.field, "NOTIFY_SOCKET");
    memset(longname, 'x', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    assert_int_equal(tse_notify("READY=1", &err), TSE_INVALID);
    setenv("NOTIFY_SOCKET", "/tmp/tse-notify-nobody-listens-here", 1);
    assert_int_equal(tse_notify("READY=1", &err), TSE_UNAVAILABLE);
    assert_non_null(strstr(err.message, "/tmp/tse-notify-nobody-listens-here"));
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sends_to_a_path_socket),
        cmocka_unit_test(sends_to_an_abstract_socket),
        cmocka_unit_test(without_notify_socket_does_nothing),
        cmocka_unit_test(bad_names_and_absent_sockets_are_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
