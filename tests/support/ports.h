/*
 * ports.h - loopback TCP ports for the servers integration tests start,
 * handed out so that no two test processes, and no outgoing connection,
 * ever get the same one; and a check that the process listening on a port
 * is the one a test spawned.
 *
 * Why: binding port 0, closing and handing the number to a child leaves a
 * window in which anything else may take the port: another test of a
 * parallel ctest doing the same, or any connect(), which takes its local
 * port from the same ephemeral range. A test then talks to somebody else's
 * server and believes it is its own.
 *
 * So a port is claimed:
 *   - outside the kernel's ephemeral range (ip_local_port_range), where
 *     connect() and bind(port 0) never go;
 *   - under an exclusive lock: one byte per port of the lock file
 *     TSE_TEST_PORTS_LOCK_FILE (POSIX record locks, fcntl F_SETLK), held by
 *     the claiming process until it releases the port or exits, crash
 *     included; tests/interop/interop_support.py claims through the same
 *     file, so C and Python tests exclude each other;
 *   - only when nothing listens on it (a server outside this scheme).
 * Each process starts at its own point of the range and walks forward, so
 * a port one process just released is not the next another takes.
 *
 * Thread-safe. A forked child does not inherit its parent's claims (the
 * record locks are the process's); the lock file's descriptor is closed on
 * exec, so servers started by a test hold nothing.
 */
#ifndef TSE_TEST_PORTS_H
#define TSE_TEST_PORTS_H

#include <stdbool.h>
#include <sys/types.h>

#define TSE_TEST_PORTS_LOCK_FILE "/tmp/tse-test-ports.lock"

/* The range ports are claimed from, [*lo, *hi]: the largest stretch of
 * 10000..65535 outside the ephemeral range, or all of it when that stretch
 * is too small (then only the lock and tse_test_port_listened_by protect). */
void tse_test_port_range(int *lo, int *hi);

/* A port of the range, claimed by this process; -1 (reason on stderr) when
 * none can be. */
int tse_test_port_claim(void);

/* Claims this very port; false when another process holds it, something
 * listens on it, or this process already holds it. */
bool tse_test_port_try_claim(int port);

/* Gives up a claim of this process; other ports are a no-op. */
void tse_test_port_release(int port);

/* Whether process pid has a TCP socket listening on port (any local
 * address, IPv4 or IPv6). Reads /proc: pid must be ours to inspect. */
bool tse_test_port_listened_by(int port, pid_t pid);

#endif
