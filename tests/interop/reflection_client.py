#!/usr/bin/python3
"""Checks a running event service's gRPC server reflection from Python.

What a client with no .proto files sees: over grpc.reflection.v1alpha and
grpc.reflection.v1 (each its own bidi stream), the service list, then
tracseq.events.v1.Event and tracseq.events.v1.EventService resolved with
file_containing_symbol, built into a fresh descriptor pool, and checked for
the fields and methods a client relies on. An unknown symbol must be answered
with NOT_FOUND. With --publish, it also publishes one event through a request
class made from the reflected descriptors alone (what `grpcurl -d` does).

Needs Debian's python3-grpcio and python3-protobuf, and stubs of the
reflection protos generated into OUT_DIR (--proto-dir generates them):

  /usr/bin/protoc -I proto -I /usr/include --python_out OUT_DIR \
      --grpc_python_out OUT_DIR \
      --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
      grpc/reflection/v1alpha/reflection.proto grpc/reflection/v1/reflection.proto

usage: reflection_client.py --target HOST:PORT --out-dir OUT_DIR
                            [--proto-dir proto] [--publish] [--timeout S]

Exit status: 0 when every check passed, 1 when one failed (the message says
which), 2 when the stubs or the Python packages are missing.
"""
import argparse
import importlib
import os
import subprocess
import sys

REFLECTION_PROTOS = (
    "grpc/reflection/v1alpha/reflection.proto",
    "grpc/reflection/v1/reflection.proto",
)
EVENT = "tracseq.events.v1.Event"
SERVICE = "tracseq.events.v1.EventService"
EVENT_FIELDS = ("id", "event_type", "source_service", "version", "timestamp",
                "correlation_id", "priority", "metadata")
PAYLOAD_FIELDS = ("data", "sample_created")
NOT_FOUND = 5


class CheckFailed(Exception):
    """One reflection answer was not what a client needs."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def generate_stubs(proto_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    cmd = ["/usr/bin/protoc", "-I", proto_dir, "-I", "/usr/include",
           "--python_out", out_dir, "--grpc_python_out", out_dir,
           "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"]
    subprocess.run(cmd + list(REFLECTION_PROTOS), check=True)


def load_stubs(out_dir):
    """Imports the generated modules as grpc.reflection.<version>.*.

    The stubs live under OUT_DIR/grpc/, a name the installed grpc package
    already holds (and the generated code imports them by that name), so
    OUT_DIR/grpc is added to that package's search path.
    """
    import grpc  # noqa: F401  (imported for its __path__)

    extra = os.path.join(os.path.abspath(out_dir), "grpc")
    if not os.path.isdir(os.path.join(extra, "reflection")):
        raise FileNotFoundError(f"no stubs under {extra}/reflection")
    if extra not in grpc.__path__:
        grpc.__path__.append(extra)
    stubs = {}
    for version in ("v1alpha", "v1"):
        pb2 = importlib.import_module(f"grpc.reflection.{version}.reflection_pb2")
        pb2_grpc = importlib.import_module(f"grpc.reflection.{version}.reflection_pb2_grpc")
        stubs[version] = (pb2, pb2_grpc)
    return stubs


def ask(channel, stubs, version, requests, timeout):
    """Sends requests on one stream and returns exactly one response each."""
    pb2, pb2_grpc = stubs[version]
    stub = pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter(requests), timeout=timeout)
    responses = []
    try:
        for _ in requests:
            responses.append(next(call))
    except StopIteration:
        raise CheckFailed(f"{version}: the stream ended after {len(responses)} of "
                          f"{len(requests)} answers")
    finally:
        call.cancel()
    for request, response in zip(requests, responses):
        check(response.original_request == request,
              f"{version}: an answer does not echo its request")
    return responses


def file_protos(version, symbol, response):
    from google.protobuf import descriptor_pb2

    check(response.WhichOneof("message_response") == "file_descriptor_response",
          f"{version}: {symbol} was answered with {response.WhichOneof('message_response')}: "
          f"{response.error_response.error_message}")
    protos = []
    for blob in response.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(blob)
        protos.append(proto)
    names = [p.name for p in protos]
    check(len(names) == len(set(names)), f"{version}: {symbol}: a file came twice: {names}")
    return protos


def add_to_pool(pool, added, protos):
    """Adds files whose imports are in already; fails on an import never sent."""
    pending = [p for p in protos if p.name not in added]
    while pending:
        ready = [p for p in pending if all(d in added for d in p.dependency)]
        if not ready:
            missing = sorted({d for p in pending for d in p.dependency if d not in added})
            raise CheckFailed(f"imports never sent: {missing}")
        for proto in ready:
            pool.Add(proto)
            added.add(proto.name)
        pending = [p for p in pending if p.name not in added]


def check_event(pool):
    event = pool.FindMessageTypeByName(EVENT)
    for name in EVENT_FIELDS:
        check(name in event.fields_by_name, f"{EVENT} lacks field {name}")
    check("payload" in event.oneofs_by_name, f"{EVENT} lacks oneof payload")
    payload = [f.name for f in event.oneofs_by_name["payload"].fields]
    for name in PAYLOAD_FIELDS:
        check(name in payload, f"{EVENT}.payload lacks {name}")
    check(event.fields_by_name["timestamp"].message_type.full_name ==
          "google.protobuf.Timestamp", f"{EVENT}.timestamp is not a Timestamp")


def check_service(pool):
    service = pool.FindServiceByName(SERVICE)
    publish = service.methods_by_name.get("Publish")
    check(publish is not None, f"{SERVICE} lacks method Publish")
    check(publish.input_type.full_name == "tracseq.events.v1.PublishRequest",
          f"Publish takes {publish.input_type.full_name}")
    check(publish.output_type.full_name == "tracseq.events.v1.PublishResponse",
          f"Publish returns {publish.output_type.full_name}")
    for name in ("PublishStream", "Subscribe", "GetStats"):
        check(name in service.methods_by_name, f"{SERVICE} lacks method {name}")


def check_version(channel, stubs, version, timeout):
    """Runs every check over one protocol version; returns the built pool."""
    from google.protobuf import descriptor_pool

    pb2 = stubs[version][0]
    requests = [
        pb2.ServerReflectionRequest(host="", list_services="*"),
        pb2.ServerReflectionRequest(host="", file_containing_symbol=EVENT),
        pb2.ServerReflectionRequest(host="", file_containing_symbol=SERVICE),
        pb2.ServerReflectionRequest(host="", file_containing_symbol="tracseq.events.v1.NoSuch"),
    ]
    listed, event, service, unknown = ask(channel, stubs, version, requests, timeout)

    names = [s.name for s in listed.list_services_response.service]
    check(SERVICE in names, f"{version}: list_services lacks {SERVICE}: {names}")
    print(f"ok {version}: list_services = {names}")

    pool, added = descriptor_pool.DescriptorPool(), set()
    event_files = file_protos(version, EVENT, event)
    check(event_files[0].name == "tracseq/events/v1/event.proto",
          f"{version}: {EVENT} came from {event_files[0].name}")
    add_to_pool(pool, added, event_files)
    check_event(pool)
    print(f"ok {version}: {EVENT} resolved from {len(event_files)} files")

    add_to_pool(pool, added, file_protos(version, SERVICE, service))
    check_service(pool)
    print(f"ok {version}: {SERVICE} has Publish and its peers")

    check(unknown.WhichOneof("message_response") == "error_response" and
          unknown.error_response.error_code == NOT_FOUND,
          f"{version}: an unknown symbol was not answered NOT_FOUND")
    print(f"ok {version}: unknown symbol -> NOT_FOUND ({unknown.error_response.error_message})")
    return pool


def publish_one(channel, pool, timeout):
    """Publishes one event with request and response classes made from the pool."""
    from google.protobuf import json_format, message_factory

    factory = message_factory.MessageFactory(pool)
    request_class = factory.GetPrototype(pool.FindMessageTypeByName(
        "tracseq.events.v1.PublishRequest"))
    response_class = factory.GetPrototype(pool.FindMessageTypeByName(
        "tracseq.events.v1.PublishResponse"))
    request = json_format.Parse(
        '{"event": {"eventType": "interop.reflection_checked",'
        ' "sourceService": "reflection-client", "data": {"ok": true}}}',
        request_class(), descriptor_pool=pool)
    publish = channel.unary_unary(f"/{SERVICE}/Publish",
                                  request_serializer=request_class.SerializeToString,
                                  response_deserializer=response_class.FromString)
    response = publish(request, timeout=timeout)
    check(response.event_id != "", "Publish answered without an event id")
    print(f"ok: published through reflected types: {json_format.MessageToJson(response)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of the service")
    parser.add_argument("--out-dir", required=True, help="folder holding the generated stubs")
    parser.add_argument("--proto-dir", help="generate the stubs from this proto/ folder first")
    parser.add_argument("--publish", action="store_true", help="also publish one event")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    args = parser.parse_args()

    try:
        if args.proto_dir:
            generate_stubs(args.proto_dir, args.out_dir)
        import grpc
        stubs = load_stubs(args.out_dir)
    except (ImportError, OSError, subprocess.CalledProcessError) as e:
        print(f"reflection_client: cannot load the stubs or packages: {e}", file=sys.stderr)
        return 2

    try:
        with grpc.insecure_channel(args.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
            pool = None
            for version in ("v1alpha", "v1"):
                pool = check_version(channel, stubs, version, args.timeout)
            if args.publish:
                publish_one(channel, pool, args.timeout)
    except CheckFailed as e:
        print(f"reflection_client: FAILED: {e}", file=sys.stderr)
        return 1
    except grpc.FutureTimeoutError:
        print(f"reflection_client: FAILED: {args.target} not reachable within "
              f"{args.timeout}s", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"reflection_client: FAILED: call failed: {e.code()} {e.details()}",
              file=sys.stderr)
        return 1
    except KeyError as e:
        print(f"reflection_client: FAILED: not in the reflected descriptors: {e}",
              file=sys.stderr)
        return 1
    print("reflection_client: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
