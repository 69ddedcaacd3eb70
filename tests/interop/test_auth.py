#!/usr/bin/python3
"""Interop: a Python client with a bearer token (issue 12).

Against a private tracseq-events started with a tokens file (only the
SHA-256 of the token in it) and a private redis-server: a publish without
metadata is UNAUTHENTICATED, with `authorization: Bearer <token>` it is
stored; a type outside the identity's publish patterns, or another
source_service, is PERMISSION_DENIED; a PublishStream with the token works;
a subscription wider than the identity's subscribe patterns is refused and
one within them is created with the identity as its owner; health needs no
token.

Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import hashlib
import os
import secrets
import sys

import grpc

from interop_support import check, check_equal, main, scratch_dir

TIMEOUT = 10.0
TOKEN = "tse_" + secrets.token_urlsafe(32)


def tokens_file():
    """The tokens file: one identity, "pylims", by the hash of TOKEN."""
    folder = scratch_dir("auth_tokens")
    path = os.path.join(folder, "tokens")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with open(path, "w") as f:
        f.write(f"pylims sha256={digest} publish=sample.* subscribe=sample.*\n")
    return path


AUTH = (("authorization", "Bearer " + TOKEN),)


def event(stubs, event_type="sample.created", source="pylims"):
    ev = stubs.event_pb2.Event(event_type=event_type, source_service=source)
    ev.data.update({"barcode": "PY-1"})
    return ev


def expect_code(fn, code, what):
    try:
        fn()
    except grpc.RpcError as e:
        check_equal(e.code(), code, what)
        return e
    check(False, f"{what}: answered OK, want {code}")


def publish_needs_a_token(stack):
    svc, stubs = stack.event_service(), stack.stubs
    req = stubs.service_pb2.PublishRequest(event=event(stubs))
    expect_code(lambda: svc.Publish(req, timeout=TIMEOUT), grpc.StatusCode.UNAUTHENTICATED,
                "publish without a token")
    expect_code(lambda: svc.Publish(req, timeout=TIMEOUT,
                                    metadata=(("authorization", "Bearer tse_nope"),)),
                grpc.StatusCode.UNAUTHENTICATED, "publish with an unknown token")
    resp = svc.Publish(req, timeout=TIMEOUT, metadata=AUTH)
    check(resp.stream_id != "", "stored with the token")


def publish_within_rights(stack):
    svc, stubs = stack.event_service(), stack.stubs
    other_type = stubs.service_pb2.PublishRequest(event=event(stubs, "auth.user_logged_in"))
    e = expect_code(lambda: svc.Publish(other_type, timeout=TIMEOUT, metadata=AUTH),
                    grpc.StatusCode.PERMISSION_DENIED, "a type outside its publish patterns")
    check("may not publish" in e.details(), f"details say why: {e.details()!r}")
    spoofed = stubs.service_pb2.PublishRequest(event=event(stubs, source="someone-else"))
    expect_code(lambda: svc.Publish(spoofed, timeout=TIMEOUT, metadata=AUTH),
                grpc.StatusCode.PERMISSION_DENIED, "another source_service")


def publish_stream_with_token(stack):
    svc, stubs = stack.event_service(), stack.stubs
    reqs = [stubs.service_pb2.PublishRequest(event=event(stubs)) for _ in range(10)]
    answers = list(svc.PublishStream(iter(reqs), timeout=TIMEOUT, metadata=AUTH))
    check_equal(len(answers), 10, "answers")
    check(all(a.stream_id and not a.HasField("error") for a in answers), "all stored")


def subscriptions_within_rights(stack):
    svc, stubs = stack.event_service(), stack.stubs
    wide = stubs.service_pb2.Subscription(name="py-all", event_types=["*"],
                                          max_delivery_attempts=5)
    expect_code(lambda: svc.CreateSubscription(
        stubs.service_pb2.CreateSubscriptionRequest(subscription=wide), timeout=TIMEOUT,
        metadata=AUTH), grpc.StatusCode.PERMISSION_DENIED, "a subscription to *")
    mine = stubs.service_pb2.Subscription(name="py-samples", event_types=["sample.*"],
                                          max_delivery_attempts=5)
    created = svc.CreateSubscription(
        stubs.service_pb2.CreateSubscriptionRequest(subscription=mine), timeout=TIMEOUT,
        metadata=AUTH)
    check_equal(created.owner, "pylims", "owner")


def health_needs_no_token(stack):
    resp = stack.health().Check(stack.stubs.health_pb2.HealthCheckRequest(service=""),
                                timeout=TIMEOUT)
    check_equal(stack.stubs.health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status),
                "SERVING", "health")


def body(stack, checks):
    checks.run("publish needs a known bearer token", publish_needs_a_token, stack)
    checks.run("publish only its types, as itself", publish_within_rights, stack)
    checks.run("PublishStream with the token", publish_stream_with_token, stack)
    checks.run("subscriptions within its subscribe patterns, owned", subscriptions_within_rights,
               stack)
    checks.run("health needs no token", health_needs_no_token, stack)


if __name__ == "__main__":
    sys.exit(main("interop", "auth", body, service_args=("--auth-tokens-file=" + tokens_file(),)))
