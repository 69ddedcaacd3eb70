/*
 * notify.c - the sd_notify(3) datagram; see notify.h.
 */
#include "obs/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

tse_status tse_notify(const char *state, tse_error *err)
{
    const char *name = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len;
    ssize_t sent;
    int fd, saved;

    if (name == NULL || name[0] == '\0')
        return TSE_OK;
    len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof(addr.sun_path))
        return tse_error_set(err, TSE_INVALID, "NOTIFY_SOCKET",
                             "NOTIFY_SOCKET is not a socket path or @abstract name");
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@')
        addr.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tse_error_set(err, TSE_UNAVAILABLE, "NOTIFY_SOCKET", "socket: %s", strerror(errno));
    sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    saved = errno;
    close(fd);
    if (sent < 0)
        return tse_error_set(err, TSE_UNAVAILABLE, "NOTIFY_SOCKET", "notify %s: %s", name,
                             strerror(saved));
    return TSE_OK;
}
