#!/usr/bin/python3
"""Interop: a refusal's field read from gRPC's richer error model.

The service sends a google.rpc.Status in the `grpc-status-details-bin`
trailing metadata of a call it refuses for a field: the same code and message
as the status, and a google.rpc.BadRequest whose field violation names the
field. A Python client built with nothing but grpcio and stubs generated from
proto/ (google/rpc/status.proto and error_details.proto are there; Debian 12
ships neither the protos nor the grpc_status module) reads the field without
parsing the text. Checks: an invalid unary Publish (priority 9, an empty
source_service, no event), a Subscribe stream refused for its first message,
and that a refusal naming no field (an unknown subscription) carries no
details. The status text stays the human "field: message" it always was.

Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import importlib
import sys

import grpc

from interop_support import CheckFailed, check, check_equal, main

TIMEOUT = 10.0
DETAILS_KEY = "grpc-status-details-bin"
BAD_REQUEST_URL = "type.googleapis.com/google.rpc.BadRequest"


def rpc_protos():
    """google.rpc's generated modules (load_stubs put their folder on sys.path)."""
    return (importlib.import_module("google.rpc.status_pb2"),
            importlib.import_module("google.rpc.error_details_pb2"))


def status_details(error):
    """The packed google.rpc.Status of a failed call, or None."""
    for key, value in error.trailing_metadata() or ():
        if key == DETAILS_KEY:
            return value
    return None


def check_field_violation(error, code, field, what):
    """error is code, and its details name field; the text is unchanged."""
    status_pb2, error_details_pb2 = rpc_protos()
    check_equal(error.code(), code, f"{what}: status")
    text = error.details() or ""
    check(text.startswith(field + ": "), f"{what}: text {text!r} does not start with {field!r}")
    packed = status_details(error)
    check(packed is not None, f"{what}: no {DETAILS_KEY} in the trailing metadata "
          f"{error.trailing_metadata()!r}")
    status = status_pb2.Status.FromString(packed)
    check_equal(status.code, code.value[0], f"{what}: google.rpc.Status code")
    check_equal(status.message, text, f"{what}: google.rpc.Status message")
    check_equal(len(status.details), 1, f"{what}: details")
    check_equal(status.details[0].type_url, BAD_REQUEST_URL, f"{what}: details[0] type")
    bad = error_details_pb2.BadRequest()
    check(status.details[0].Unpack(bad), f"{what}: details[0] does not unpack as BadRequest")
    check_equal(len(bad.field_violations), 1, f"{what}: field violations")
    check_equal(bad.field_violations[0].field, field, f"{what}: field violation field")
    check_equal(bad.field_violations[0].description, text[len(field) + 2:],
                f"{what}: field violation description")


def refused_publish(service, request, what):
    try:
        service.Publish(request, timeout=TIMEOUT)
    except grpc.RpcError as e:
        return e
    raise CheckFailed(f"{what}: was accepted")


def publish_field_violations(stack):
    stubs, service = stack.stubs, stack.event_service()
    event = stubs.event_pb2.Event(event_type="interop.details_checked",
                                  source_service="interop-python", priority=9)
    event.data.update({"n": 1})
    error = refused_publish(service, stubs.service_pb2.PublishRequest(event=event), "priority 9")
    check_field_violation(error, grpc.StatusCode.INVALID_ARGUMENT, "event.priority",
                          "priority 9")
    check_equal(error.details(), "event.priority: priority must be between 1 and 5",
                "priority 9: text")
    event.priority = 1
    event.source_service = ""
    error = refused_publish(service, stubs.service_pb2.PublishRequest(event=event),
                            "no source_service")
    check_field_violation(error, grpc.StatusCode.INVALID_ARGUMENT, "event.source_service",
                          "no source_service")
    error = refused_publish(service, stubs.service_pb2.PublishRequest(), "no event")
    check_field_violation(error, grpc.StatusCode.INVALID_ARGUMENT, "event", "no event")


def subscribe_field_violation(stack):
    stubs, service = stack.stubs, stack.event_service()
    first = stubs.service_pb2.SubscribeRequest(subscription_name="no spaces allowed")
    call = service.Subscribe(iter([first]), timeout=TIMEOUT)
    try:
        for _ in call:
            raise CheckFailed("a refused Subscribe stream delivered something")
    except grpc.RpcError as e:
        check_field_violation(e, grpc.StatusCode.INVALID_ARGUMENT, "subscription_name",
                              "Subscribe with a bad name")
        return
    raise CheckFailed("Subscribe with a bad name: the stream ended OK")


def no_details_without_field(stack):
    stubs, service = stack.stubs, stack.event_service()
    try:
        service.GetSubscription(stubs.service_pb2.GetSubscriptionRequest(name="interop-none"),
                                timeout=TIMEOUT)
    except grpc.RpcError as e:
        check_equal(e.code(), grpc.StatusCode.NOT_FOUND, "unknown subscription: status")
        check(status_details(e) is None,
              f"unknown subscription: {DETAILS_KEY} sent: {e.trailing_metadata()!r}")
        return
    raise CheckFailed("an unknown subscription was found")


def body(stack, checks):
    checks.run("invalid Publish: BadRequest field violation in grpc-status-details-bin",
               publish_field_violations, stack)
    checks.run("refused Subscribe stream: BadRequest field violation in its status",
               subscribe_field_violation, stack)
    checks.run("a refusal naming no field sends no status details", no_details_without_field,
               stack)


if __name__ == "__main__":
    sys.exit(main("interop", "error_details", body))
