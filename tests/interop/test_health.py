#!/usr/bin/python3
"""Interop: grpc.health.v1.Health from Python stubs generated at test time.

Against a private tracseq-events + redis-server: Check answers SERVING for ""
and for tracseq.events.v1.EventService and NOT_FOUND for a service it does not
serve; Watch sends SERVING first (SERVICE_UNKNOWN for an unknown service, and
keeps that stream open). Then Redis is stopped under the service: Check and an
open Watch must turn NOT_SERVING, and SERVING again once a Redis is back on
the same port (the spec: SERVING only while Redis answers).

Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import queue
import sys
import threading
import time

import grpc

from interop_support import EVENT_SERVICE, CheckFailed, check, check_equal, main

TIMEOUT = 5.0
# How long the service may take to notice Redis went away or came back.
REDIS_CHANGE_TIMEOUT = 10.0


def status_name(stubs, status):
    return stubs.health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def check_status(stack, service, want):
    stubs = stack.stubs
    request = stubs.health_pb2.HealthCheckRequest(service=service)
    got = stack.health().Check(request, timeout=TIMEOUT).status
    check_equal(status_name(stubs, got), want, f"Check({service!r})")


def check_serving(stack):
    check_status(stack, "", "SERVING")
    check_status(stack, EVENT_SERVICE, "SERVING")


def check_unknown(stack):
    request = stack.stubs.health_pb2.HealthCheckRequest(service="tracseq.events.v1.NoSuch")
    try:
        response = stack.health().Check(request, timeout=TIMEOUT)
    except grpc.RpcError as e:
        check_equal(e.code(), grpc.StatusCode.NOT_FOUND, "Check(unknown service) status")
        return
    raise CheckFailed(f"Check(unknown service) answered {response}")


class Watcher:
    """A Watch stream whose updates a thread collects into a queue."""

    def __init__(self, stack, service):
        self.stubs = stack.stubs
        request = stack.stubs.health_pb2.HealthCheckRequest(service=service)
        self.call = stack.health().Watch(request, timeout=60.0)
        self.updates = queue.Queue()
        self.thread = threading.Thread(target=self.collect, daemon=True)
        self.thread.start()

    def collect(self):
        try:
            for response in self.call:
                self.updates.put(status_name(self.stubs, response.status))
            self.updates.put("stream ended")
        except grpc.RpcError as e:
            self.updates.put(f"stream failed: {e.code()}")

    def next(self, timeout):
        try:
            return self.updates.get(timeout=timeout)
        except queue.Empty:
            return f"nothing within {timeout}s"

    def close(self):
        self.call.cancel()
        self.thread.join(timeout=TIMEOUT)


def watch_first(stack, service, want):
    watcher = Watcher(stack, service)
    try:
        check_equal(watcher.next(TIMEOUT), want, f"Watch({service!r}) first update")
        if want == "SERVICE_UNKNOWN":
            # The protocol keeps the stream open for a service that may appear.
            check_equal(watcher.next(0.5), "nothing within 0.5s",
                        f"Watch({service!r}) after SERVICE_UNKNOWN")
    finally:
        watcher.close()


def check_watch(stack):
    watch_first(stack, "", "SERVING")
    watch_first(stack, EVENT_SERVICE, "SERVING")


def check_watch_unknown(stack):
    watch_first(stack, "tracseq.events.v1.NoSuch", "SERVICE_UNKNOWN")


def wait_for_check(stack, want, timeout):
    request = stack.stubs.health_pb2.HealthCheckRequest(service=EVENT_SERVICE)
    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        got = status_name(stack.stubs, stack.health().Check(request, timeout=TIMEOUT).status)
        if got == want:
            return
        time.sleep(0.1)
    raise CheckFailed(f"Check({EVENT_SERVICE!r}) still {got} {timeout}s after the change")


def check_follows_redis(stack):
    watcher = Watcher(stack, EVENT_SERVICE)
    try:
        check_equal(watcher.next(TIMEOUT), "SERVING", "Watch first update")
        stack.stop_redis()
        wait_for_check(stack, "NOT_SERVING", REDIS_CHANGE_TIMEOUT)
        check_equal(watcher.next(TIMEOUT), "NOT_SERVING", "Watch update after Redis stopped")
        stack.restart_redis()
        wait_for_check(stack, "SERVING", REDIS_CHANGE_TIMEOUT)
        check_equal(watcher.next(TIMEOUT), "SERVING", "Watch update after Redis came back")
    finally:
        watcher.close()
    check(stack.redis_proc is not None, "Redis is not running at the end")


def body(stack, checks):
    checks.run("Check '' and EventService: SERVING", check_serving, stack)
    checks.run("Check unknown service: NOT_FOUND", check_unknown, stack)
    checks.run("Watch '' and EventService: SERVING first", check_watch, stack)
    checks.run("Watch unknown service: SERVICE_UNKNOWN, stream stays open",
               check_watch_unknown, stack)
    checks.run("health follows Redis: NOT_SERVING when it stops, SERVING when back",
               check_follows_redis, stack)


if __name__ == "__main__":
    sys.exit(main("interop", "health", body))
