#!/usr/bin/python3
"""Interop: the SDK's publisher against a service from before PublishBatchStream.

The SDK publishes on PublishBatchStream (issue 14) by default. A lab that
upgrades its clients before its event service must not lose publishing: the
older service answers UNIMPLEMENTED, and the publisher falls back to
PublishStream, one event per message, resending what it had sent.

The older service is played by a gRPC server in Python (python3-grpcio) that
serves only what a release before issue 14 served for publishing (Publish and
PublishStream, forwarded one by one to the real tracseq-events as unary
Publish calls): any other method is UNIMPLEMENTED, as gRPC answers for an
unknown method. It records every method asked for. The SDK runs inside the
real REST bridge (its shared publisher), pointed at that server; the checks
publish through the bridge and count the entries in Redis.

Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import concurrent.futures
import json
import os
import sys
import urllib.error
import urllib.request

import grpc

from interop_support import (EVENT_SERVICE, Process, check, check_equal, env_path, free_port,
                             main, tcp_accepts, wait_until)

TIMEOUT = 10.0
EVENT_TYPE = "interop.older_service"
STREAM = f"tracseq:events:{{{EVENT_TYPE}}}:p3"


class OlderService(grpc.GenericRpcHandler):
    """EventService as served before PublishBatchStream, for publishing."""

    def __init__(self, stubs, upstream):
        self.pb = stubs.service_pb2
        self.upstream = upstream
        self.asked = []

    def service(self, handler_call_details):
        method = handler_call_details.method
        self.asked.append(method)
        codec = dict(request_deserializer=self.pb.PublishRequest.FromString,
                     response_serializer=self.pb.PublishResponse.SerializeToString)
        if method == f"/{EVENT_SERVICE}/Publish":
            return grpc.unary_unary_rpc_method_handler(self.publish, **codec)
        if method == f"/{EVENT_SERVICE}/PublishStream":
            return grpc.stream_stream_rpc_method_handler(self.publish_stream, **codec)
        return None  # UNIMPLEMENTED

    def publish(self, request, context):
        return self.upstream.Publish(request, timeout=TIMEOUT)

    def publish_stream(self, requests, context):
        for request in requests:
            yield self.upstream.Publish(request, timeout=TIMEOUT)


def post(port, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def event(n):
    return {"event_type": EVENT_TYPE, "source_service": "interop-older", "priority": 3,
            "payload": {"n": n}}


def body(stack, checks):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    older = OlderService(stack.stubs, stack.event_service())
    server.add_generic_rpc_handlers((older,))
    older_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    bridge = None
    try:
        http_port = free_port()
        bridge = Process("bridge", [
            env_path("TSE_BRIDGE_BIN"), "--host=127.0.0.1", f"--port={http_port}",
            f"--event-service-addr=127.0.0.1:{older_port}"],
            os.path.join(stack.scratch, "bridge.log"))
        wait_until("the bridge accepts connections",
                   lambda: bridge.listens_on(http_port) and tcp_accepts(http_port), bridge)
        redis = stack.redis()

        def single_events_are_published():
            for n in range(3):
                status, answer = post(http_port, "/api/v1/events/publish", event(n))
                check_equal(status, 200, f"publish {n}: {answer}")
            check_equal(int(redis.command("XLEN", STREAM)), 3, "entries in Redis")

        def a_batch_is_published():
            status, answer = post(http_port, "/api/v1/events/batch",
                                  {"events": [event(10 + n) for n in range(5)]})
            check_equal(status, 200, f"batch: {answer}")
            check(all(not r.get("error") for r in answer["results"]), f"batch results: {answer}")
            check_equal(int(redis.command("XLEN", STREAM)), 8, "entries in Redis")

        def the_publisher_asked_for_batches_then_fell_back():
            batch = f"/{EVENT_SERVICE}/PublishBatchStream"
            single = f"/{EVENT_SERVICE}/PublishStream"
            check(batch in older.asked, f"PublishBatchStream never asked: {older.asked}")
            check(single in older.asked, f"PublishStream never asked: {older.asked}")
            check(older.asked.index(batch) < older.asked.index(single),
                  f"order of methods asked: {older.asked}")

        checks.run("single events through the bridge's publisher are stored",
                   single_events_are_published)
        checks.run("a batch through the bridge is stored", a_batch_is_published)
        checks.run("the publisher tried PublishBatchStream, then PublishStream",
                   the_publisher_asked_for_batches_then_fell_back)
    finally:
        if bridge is not None:
            rc = bridge.stop()
            checks.record("bridge exits 0 on SIGTERM", rc == 0,
                          f"exit status {rc}:\n{bridge.log_tail()}")
        server.stop(grace=None)


if __name__ == "__main__":
    sys.exit(main("interop", "older_service", body))
