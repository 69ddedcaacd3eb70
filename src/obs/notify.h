/*
 * notify.h - readiness and stopping notices to the service manager: the
 * sd_notify(3) protocol, written by hand (one datagram to the AF_UNIX socket
 * named by $NOTIFY_SOCKET; a leading '@' names an abstract socket), so that
 * the systemd units can be Type=notify without linking libsystemd.
 *
 * The processes send "READY=1" once their listening socket accepts
 * connections and "STOPPING=1" when a shutdown begins. Outside systemd
 * (NOTIFY_SOCKET unset) every call is a no-op.
 *
 * Thread-safe (no state; reads the environment, which is not changed after
 * start).
 */
#ifndef TSE_OBS_NOTIFY_H
#define TSE_OBS_NOTIFY_H

#include "common/status.h"

/*
 * Sends state (e.g. "READY=1", "STOPPING=1", "STATUS=...") to $NOTIFY_SOCKET.
 * TSE_OK when sent or when NOTIFY_SOCKET is unset or empty; TSE_INVALID
 * when its name does not fit a socket address; TSE_UNAVAILABLE when the
 * datagram could not be sent (err says why).
 */
tse_status tse_notify(const char *state, tse_error *err);

#endif
