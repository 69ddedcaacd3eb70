#!/usr/bin/python3
"""Interop: server reflection, checked by reflection_client.py.

Starts a private tracseq-events + redis-server and runs reflection_client.py
against it twice: once as a client with no .proto files would list and
resolve the services (v1alpha and v1), once more with --publish, which
publishes one event through classes built from the reflected descriptors
alone; that event must then be in Redis, decodable by the Event class
generated from proto/.

Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import os
import subprocess
import sys

from interop_support import check, check_equal, main

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reflection_client.py")
# Where the --publish event goes: its type's stream at the default priority.
PUBLISHED_STREAM = "tracseq:events:{interop.reflection_checked}:p3"
SERVED = sorted(["tracseq.events.v1.EventService", "grpc.health.v1.Health",
                 "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection"])


def run_client(stack, *extra):
    argv = [sys.executable, "-E", "-s", "-B", CLIENT, "--target", stack.target,
            "--out-dir", os.path.join(stack.scratch, "reflection-stubs"),
            "--proto-dir", stack.proto_dir, "--timeout", "10"] + list(extra)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    for line in done.stdout.splitlines():
        print(f"     | {line}")
    check(done.returncode == 0,
          f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.strip()}")


def lists_exactly_what_is_served(stack):
    """Both protocol versions list the four services the port serves."""
    import importlib

    for version in ("v1alpha", "v1"):
        pb2 = importlib.import_module(f"grpc.reflection.{version}.reflection_pb2")
        pb2_grpc = importlib.import_module(f"grpc.reflection.{version}.reflection_pb2_grpc")
        stub = pb2_grpc.ServerReflectionStub(stack.channel)
        request = pb2.ServerReflectionRequest(list_services="*")
        call = stub.ServerReflectionInfo(iter([request]), timeout=10.0)
        try:
            response = next(call)
        finally:
            call.cancel()
        names = sorted(s.name for s in response.list_services_response.service)
        check_equal(names, SERVED, f"{version} list_services")


def lists_and_resolves(stack):
    run_client(stack)
    check_equal(stack.redis().command("EXISTS", PUBLISHED_STREAM), 0,
                "an event was published without --publish")


def publishes_through_reflection(stack):
    run_client(stack, "--publish")
    entries = stack.redis().xrange(PUBLISHED_STREAM)
    check_equal(len(entries), 1, f"entries in {PUBLISHED_STREAM}")
    event = stack.stubs.event_pb2.Event.FromString(entries[0][1]["event"])
    check_equal(event.source_service, "reflection-client", "stored source_service")
    check_equal(event.WhichOneof("payload"), "data", "stored payload kind")
    check_equal(dict(event.data), {"ok": True}, "stored data")


def body(stack, checks):
    checks.run("list_services names exactly the served services (v1alpha, v1)",
               lists_exactly_what_is_served, stack)
    checks.run("reflection client lists and resolves the services (v1alpha, v1)",
               lists_and_resolves, stack)
    checks.run("reflection client publishes through reflected types",
               publishes_through_reflection, stack)


if __name__ == "__main__":
    sys.exit(main("interop", "reflection", body))
