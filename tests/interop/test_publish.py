#!/usr/bin/python3
"""Interop: a Python publisher with stubs generated from proto/ at test time.

Against a private tracseq-events + redis-server it publishes a typed
sample.created (every field set through the generated SampleCreated) and a
generic event (Struct data), checks each PublishResponse, reads the stored
entry back from Redis and decodes its `event` field with the generated Event
class; streams 1000 events (2 of them invalid) through PublishStream and
checks every answer in order and what Redis holds; checks that an invalid
unary publish is INVALID_ARGUMENT naming the field, that GetStats counts what
was done, and that ListEventTypes describes the catalog the protos define.

Each check is independent: it publishes its own events (on event types of its
own where counts matter) and compares counters as before/after differences.
Prints one line per check and "interop: N passed, M failed"; exits 1 when any
check failed.
"""
import re
import sys
import time
import uuid

import grpc

from interop_support import CheckFailed, check, check_equal, main

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STREAM_ID_RE = re.compile(r"^\d+-\d+$")
TIMEOUT = 10.0
CATALOG = (
    "sample.created", "sample.validated", "sample.status_changed", "sample.stored",
    "sample.assigned_to_sequencing", "sample.completed",
    "storage.temperature_alert", "storage.capacity_warning", "storage.sensor_data_received",
    "auth.user_logged_in", "auth.user_logged_out", "auth.login_failed",
    "document.uploaded", "document.processing_completed", "document.information_extracted",
    "sequencing.job_created", "sequencing.job_status_changed", "sequencing.job_completed",
)
GENERIC_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


def stream_key(event_type, priority):
    return f"tracseq:events:{{{event_type}}}:p{priority}"


def check_response(response, event_type, priority, what):
    """The fields every successful PublishResponse must carry."""
    check(not response.HasField("error"), f"{what}: error {response.error}")
    check(UUID_RE.match(response.event_id) is not None,
          f"{what}: event_id {response.event_id!r} is not a UUID")
    check(STREAM_ID_RE.match(response.stream_id) is not None,
          f"{what}: stream_id {response.stream_id!r} is not a Redis entry id")
    check_equal(response.stream, stream_key(event_type, priority), f"{what}: stream")
    check(response.HasField("published_at"), f"{what}: no published_at")
    age = time.time() - response.published_at.ToNanoseconds() / 1e9
    check(-5 < age < 30, f"{what}: published_at is {age:.1f}s from now")


def read_back(stack, response):
    """The stored entry of a response: its fields, and its decoded Event."""
    entries = stack.redis().xrange(response.stream, response.stream_id, response.stream_id)
    check_equal(len(entries), 1, f"XRANGE {response.stream} {response.stream_id} entries")
    entry_id, fields = entries[0]
    check_equal(entry_id, response.stream_id, "entry id")
    check("event" in fields, f"entry has no event field: {sorted(fields)}")
    event = stack.stubs.event_pb2.Event.FromString(fields["event"])
    return fields, event


def check_entry_fields(fields, event, what):
    """The entry's index fields agree with the envelope they index."""
    check_equal(fields["id"].decode(), event.id, f"{what}: entry field id")
    check_equal(fields["type"].decode(), event.event_type, f"{what}: entry field type")
    check_equal(sorted(fields), ["event", "id", "type"], f"{what}: entry fields")


def sample_created(stubs, with_time=True):
    payload = stubs.sample_pb2.SampleCreated(
        sample_id=str(uuid.uuid4()), barcode="SAM-20240618-001", sample_type="DNA",
        submitter_id=str(uuid.uuid4()), lab_id=str(uuid.uuid4()))
    payload.metadata["volume_ul"].number_value = 250.5
    payload.metadata["tube"].string_value = "A1"
    payload.metadata["frozen"].bool_value = True
    payload.metadata["tags"].list_value.values.add().string_value = "urgent"
    if with_time:
        payload.created_at.FromSeconds(1718700000)
        payload.created_at.nanos = 123000000
    return payload


def publish_typed(stack):
    stubs, service = stack.stubs, stack.event_service()
    payload = sample_created(stubs)
    event = stubs.event_pb2.Event(
        event_type="sample.created", source_service="interop-python",
        correlation_id=str(uuid.uuid4()), causation_id=str(uuid.uuid4()),
        subject="sample-42", priority=2, sample_created=payload)
    event.metadata["origin"] = "interop"
    response = service.Publish(stubs.service_pb2.PublishRequest(event=event), timeout=TIMEOUT)
    check_response(response, "sample.created", 2, "typed publish")
    check(uuid.UUID(response.event_id).version == 4,
          f"server-made event_id {response.event_id} is not UUID v4")
    check(not response.duplicate, "a first publish answered duplicate")
    check(response.schema_valid, "a well-formed sample.created answered schema_valid=false")

    fields, stored = read_back(stack, response)
    check_entry_fields(fields, stored, "typed")
    check_equal(stored.id, response.event_id, "stored id")
    check_equal(stored.event_type, "sample.created", "stored event_type")
    check_equal(stored.source_service, "interop-python", "stored source_service")
    check_equal(stored.version, "1.0", "stored version (default)")
    check_equal(stored.timestamp, response.published_at, "stored timestamp vs published_at")
    check_equal(stored.correlation_id, event.correlation_id, "stored correlation_id")
    check_equal(stored.causation_id, event.causation_id, "stored causation_id")
    check_equal(stored.subject, "sample-42", "stored subject")
    check_equal(stored.priority, 2, "stored priority")
    check_equal(dict(stored.metadata), {"origin": "interop"}, "stored metadata")
    check_equal(stored.WhichOneof("payload"), "sample_created", "stored payload kind")
    check_equal(stored.sample_created, payload, "stored SampleCreated")


def publish_typed_stamps_time(stack):
    """A typed payload's unset *_at time is stamped with the publish time."""
    stubs, service = stack.stubs, stack.event_service()
    event = stubs.event_pb2.Event(event_type="sample.created", source_service="interop-python",
                                  sample_created=sample_created(stubs, with_time=False))
    response = service.Publish(stubs.service_pb2.PublishRequest(event=event), timeout=TIMEOUT)
    check_response(response, "sample.created", 3, "typed publish without created_at")
    _, stored = read_back(stack, response)
    check_equal(stored.priority, 3, "stored priority (0 means 3)")
    check_equal(stored.sample_created.created_at, response.published_at,
                "stored created_at (unset) vs published_at")


def publish_generic(stack):
    stubs, service = stack.stubs, stack.event_service()
    event = stubs.event_pb2.Event(event_type="interop.generic_checked",
                                  source_service="interop-python")
    event.data.update({"n": 7, "name": "généric ✓", "ok": True, "none": None,
                       "nested": {"list": [1, "two", False, {"k": "v"}]}})
    correlation = str(uuid.uuid4())
    response = service.Publish(stubs.service_pb2.PublishRequest(event=event), timeout=TIMEOUT,
                               metadata=(("x-correlation-id", correlation),))
    check_response(response, "interop.generic_checked", 3, "generic publish")
    check(response.schema_valid, "a generic event answered schema_valid=false")
    fields, stored = read_back(stack, response)
    check_entry_fields(fields, stored, "generic")
    check_equal(stored.WhichOneof("payload"), "data", "stored payload kind")
    check_equal(stored.data, event.data, "stored Struct data")
    check_equal(stored.correlation_id, correlation,
                "stored correlation_id (from x-correlation-id metadata)")
    check_equal(stored.timestamp, response.published_at, "stored timestamp vs published_at")


def publish_client_id_twice(stack):
    """A client-set id publishes once; the repeat answers duplicate."""
    stubs, service = stack.stubs, stack.event_service()
    event_id = str(uuid.uuid4())
    event = stubs.event_pb2.Event(id=event_id, event_type="interop.dedup_checked",
                                  source_service="interop-python", priority=5)
    event.data.update({"attempt": 1})
    request = stubs.service_pb2.PublishRequest(event=event)
    first = service.Publish(request, timeout=TIMEOUT)
    second = service.Publish(request, timeout=TIMEOUT)
    check_response(first, "interop.dedup_checked", 5, "first publish")
    check_equal(first.event_id, event_id, "event_id of a client-set id")
    check(not first.duplicate, "the first publish answered duplicate")
    check(second.duplicate, "the repeat did not answer duplicate")
    check_equal(second.stream_id, first.stream_id, "the repeat's stream_id")
    check_equal(stack.redis().command("XLEN", first.stream), 1, f"XLEN {first.stream}")


def publish_stream(stack):
    """1000 events, 2 invalid: one answer each, in order, errors in place."""
    stubs, service = stack.stubs, stack.event_service()
    count, bad_priority, bad_type = 1000, 137, 862
    ids = [str(uuid.uuid4()) for _ in range(count)]

    def requests():
        for i in range(count):
            event = stubs.event_pb2.Event(id=ids[i], event_type="interop.stream_checked",
                                          source_service="interop-python")
            event.data.update({"n": i})
            if i == bad_priority:
                event.priority = 9
            if i == bad_type:
                event.event_type = "Interop Stream"
            yield stubs.service_pb2.PublishRequest(event=event)

    responses = list(service.PublishStream(requests(), timeout=20.0))
    check_equal(len(responses), count, "PublishStream answers")
    for i, response in enumerate(responses):
        if i in (bad_priority, bad_type):
            want = "event.priority" if i == bad_priority else "event.event_type"
            check(response.HasField("error"), f"answer {i} (invalid) has no error: {response}")
            check_equal(response.error.code, 3, f"answer {i}: error.code")
            check_equal(response.error.field, want, f"answer {i}: error.field")
            check(response.error.message != "", f"answer {i}: error without message")
            check(response.event_id == "" and response.stream_id == "",
                  f"answer {i}: a refused event has event_id/stream_id: {response}")
            continue
        check(not response.HasField("error"), f"answer {i}: unexpected error {response.error}")
        check_equal(response.event_id, ids[i], f"answer {i}: event_id (answers out of order?)")
        check(STREAM_ID_RE.match(response.stream_id) is not None,
              f"answer {i}: stream_id {response.stream_id!r}")

    key = stream_key("interop.stream_checked", 3)
    entries = stack.redis().xrange(key)
    stored = [int(stubs.event_pb2.Event.FromString(f["event"]).data["n"]) for _, f in entries]
    want = [i for i in range(count) if i not in (bad_priority, bad_type)]
    check_equal(len(stored), len(want), f"entries in {key}")
    check(stored == want, f"{key} does not hold events 0..999 less the 2 invalid, in order")
    answered = [r.stream_id for r in responses if not r.HasField("error")]
    check(answered == [entry_id for entry_id, _ in entries],
          "the answered stream_ids are not the stored entry ids, in order")


def publish_misfit_lenient(stack):
    """A lenient server stores a misfit typed payload as flagged generic data."""
    stubs, service = stack.stubs, stack.event_service()
    payload = sample_created(stubs)
    payload.sample_id = "not-a-uuid"
    event = stubs.event_pb2.Event(event_type="sample.created", source_service="interop-python",
                                  priority=4, sample_created=payload)
    before = service.GetStats(stubs.service_pb2.GetStatsRequest(), timeout=TIMEOUT)
    response = service.Publish(stubs.service_pb2.PublishRequest(event=event), timeout=TIMEOUT)
    after = service.GetStats(stubs.service_pb2.GetStatsRequest(), timeout=TIMEOUT)
    check_response(response, "sample.created", 4, "misfit publish")
    check(not response.schema_valid, "a misfit sample.created answered schema_valid=true")
    check_equal(after.events_schema_invalid - before.events_schema_invalid, 1,
                "events_schema_invalid moved by")
    _, stored = read_back(stack, response)
    check_equal(stored.WhichOneof("payload"), "data", "stored payload kind")
    check_equal(stored.metadata["schema_valid"], "false", "stored metadata schema_valid")
    check("sample_id" in stored.metadata.get("schema_error", ""),
          f"stored schema_error does not name sample_id: {dict(stored.metadata)}")
    check_equal(stored.data["sample_id"], "not-a-uuid", "stored data sample_id")
    check_equal(stored.data["barcode"], payload.barcode, "stored data barcode")


def expect_invalid(service, request, field, what):
    try:
        service.Publish(request, timeout=TIMEOUT)
    except grpc.RpcError as e:
        check_equal(e.code(), grpc.StatusCode.INVALID_ARGUMENT, f"{what}: status")
        check((e.details() or "").startswith(field + ":"),
              f"{what}: details {e.details()!r} do not start with {field + ':'!r}")
        return
    raise CheckFailed(f"{what}: was accepted")


def publish_invalid(stack):
    stubs, service = stack.stubs, stack.event_service()
    event = stubs.event_pb2.Event(event_type="interop.invalid_checked",
                                  source_service="interop-python", priority=9)
    event.data.update({"n": 1})
    expect_invalid(service, stubs.service_pb2.PublishRequest(event=event), "event.priority",
                   "priority 9")
    event.priority = 1
    event.source_service = ""
    expect_invalid(service, stubs.service_pb2.PublishRequest(event=event),
                   "event.source_service", "no source_service")
    expect_invalid(service, stubs.service_pb2.PublishRequest(), "event", "no event")
    check_equal(stack.redis().command("EXISTS", stream_key("interop.invalid_checked", 1)), 0,
                "a refused event reached Redis")


def get_stats(stack):
    """Counters move by exactly what this check did."""
    stubs, service = stack.stubs, stack.event_service()
    empty = stubs.service_pb2.GetStatsRequest()
    before = service.GetStats(empty, timeout=TIMEOUT)
    kind = "interop.stats_checked"
    for priority in (1, 4):
        event = stubs.event_pb2.Event(event_type=kind, source_service="interop-python",
                                      priority=priority)
        event.data.update({"p": priority})
        service.Publish(stubs.service_pb2.PublishRequest(event=event), timeout=TIMEOUT)
    typed = stubs.event_pb2.Event(event_type="sample.created", source_service="interop-python",
                                  sample_created=sample_created(stubs))
    service.Publish(stubs.service_pb2.PublishRequest(event=typed), timeout=TIMEOUT)
    try:
        service.Publish(stubs.service_pb2.PublishRequest(), timeout=TIMEOUT)
    except grpc.RpcError:
        pass
    after = service.GetStats(empty, timeout=TIMEOUT)

    def moved(name):
        return getattr(after, name) - getattr(before, name)

    check_equal(moved("events_published"), 3, "events_published moved by")
    check_equal(moved("events_invalid"), 1, "events_invalid moved by")
    check_equal(moved("events_failed"), 1, "events_failed moved by")
    check_equal(moved("events_unavailable"), 0, "events_unavailable moved by")
    check_equal(moved("events_duplicate"), 0, "events_duplicate moved by")
    check_equal(moved("events_schema_invalid"), 0, "events_schema_invalid moved by")
    check_equal(after.published_by_type.get(kind, 0) - before.published_by_type.get(kind, 0),
                2, f"published_by_type[{kind}] moved by")
    check_equal(after.published_by_type["sample.created"]
                - before.published_by_type.get("sample.created", 0),
                1, "published_by_type[sample.created] moved by")
    check(after.redis_connected, "redis_connected is false")
    check_equal(after.validation_mode, "lenient", "validation_mode")
    check(after.version != "", "version is empty")
    check(after.publish_latency_max_us > 0, "publish_latency_max_us is 0 after publishes")
    check(after.publish_latency_p50_us <= after.publish_latency_p99_us
          <= after.publish_latency_max_us, "latency p50 <= p99 <= max does not hold")

    check_equal(after.events_published, sum(redis_lengths(stack).values()),
                "events_published vs the entries in Redis")


def redis_lengths(stack):
    """Entries per event type in Redis, summed over its priority streams."""
    redis, by_type = stack.redis(), {}
    for key in redis.command("SMEMBERS", "tracseq:streams"):
        event_type = key.decode().split(":")[2].strip("{}")
        by_type[event_type] = by_type.get(event_type, 0) + redis.command("XLEN", key)
    return by_type


def get_stats_stream_lengths(stack):
    """Stats.stream_lengths is read from Redis: it matches XLEN per type."""
    stubs, service = stack.stubs, stack.event_service()
    stats = service.GetStats(stubs.service_pb2.GetStatsRequest(), timeout=TIMEOUT)
    want = redis_lengths(stack)
    check(len(want) > 1, f"too few streams in Redis to compare: {want}")
    check_equal(dict(stats.stream_lengths), want, "stream_lengths vs Redis XLEN")


def list_event_types(stack):
    stubs, service = stack.stubs, stack.event_service()
    response = service.ListEventTypes(stubs.service_pb2.ListEventTypesRequest(), timeout=TIMEOUT)
    names = [t.event_type for t in response.event_types]
    check_equal(len(names), 18, "number of event types")
    check_equal(sorted(names), sorted(CATALOG), "event types")
    check_equal(response.generic_type_pattern, GENERIC_TYPE_PATTERN, "generic_type_pattern")

    created = next(t for t in response.event_types if t.event_type == "sample.created")
    check_equal(created.message, "tracseq.events.v1.SampleCreated", "sample.created message")
    check_equal(created.payload_field, "sample_created", "sample.created payload_field")
    check_equal(created.domain, "sample", "sample.created domain")
    check_equal(created.version, "1.0", "sample.created version")
    check(created.description != "", "sample.created has no description")
    fields = {f.name: f for f in created.fields}
    check_equal(list(fields), ["sample_id", "barcode", "sample_type", "submitter_id", "lab_id",
                               "metadata", "created_at"], "sample.created fields")
    check_equal((fields["sample_id"].type, fields["sample_id"].required,
                 fields["sample_id"].format, fields["sample_id"].json_name),
                ("string", True, "uuid", "sampleId"), "sample_id (type, required, format, json)")
    check_equal((fields["barcode"].required, fields["barcode"].format), (True, ""), "barcode")
    check_equal(fields["metadata"].required, False, "metadata required")
    check_equal(fields["created_at"].type, "timestamp", "created_at type")

    # Every type agrees with the descriptors the Python client compiled.
    envelope = stubs.event_pb2.Event.DESCRIPTOR
    for info in response.event_types:
        oneof_field = envelope.fields_by_name.get(info.payload_field)
        check(oneof_field is not None and oneof_field.containing_oneof.name == "payload",
              f"{info.event_type}: payload_field {info.payload_field!r} not in Event.payload")
        message = oneof_field.message_type
        check_equal(message.full_name, info.message, f"{info.event_type}: message")
        check_equal(info.domain, info.event_type.split(".")[0], f"{info.event_type}: domain")
        got = [(f.name, f.number, f.json_name) for f in info.fields]
        want = [(f.name, f.number, f.json_name) for f in message.fields]
        check_equal(got, want, f"{info.event_type}: fields (name, number, json_name)")


def publish_batch(stack):
    """PublishBatch and PublishBatchStream: results per event, in order."""
    stubs, service = stack.stubs, stack.event_service()
    dup = str(uuid.uuid4())

    def batch(base):
        events = []
        for i in range(10):
            event = stubs.event_pb2.Event(event_type="interop.batch_checked",
                                          source_service="interop-python")
            event.data.update({"n": base + i})
            if i == 4:
                event.source_service = ""
            if i in (6, 8):
                event.id = dup
            events.append(event)
        return stubs.service_pb2.PublishBatchRequest(events=events)

    unary = service.PublishBatch(batch(0), timeout=TIMEOUT)
    streamed = list(service.PublishBatchStream(iter([batch(10), batch(20)]), timeout=TIMEOUT))
    check_equal(len(streamed), 2, "PublishBatchStream answers")
    for k, answer in enumerate([unary] + streamed):
        check(not answer.HasField("error"), f"batch {k}: refused whole: {answer.error}")
        check_equal(len(answer.results), 10, f"batch {k}: results")
        bad = answer.results[4]
        check_equal(bad.error.code, 3, f"batch {k}: the invalid event's code")
        check_equal(bad.error.field, "events[4].source_service", f"batch {k}: its field")
        for i, result in enumerate(answer.results):
            if i != 4:
                check_response(result, "interop.batch_checked", 3, f"batch {k} result {i}")
        check_equal(answer.results[8].duplicate, True, f"batch {k}: the repeated id")
        check_equal(answer.results[8].stream_id, unary.results[6].stream_id,
                    f"batch {k}: the repeated id's stream_id")
    key = stream_key("interop.batch_checked", 3)
    stored = [int(stubs.event_pb2.Event.FromString(f["event"]).data["n"])
              for _, f in stack.redis().xrange(key)]
    want = [b + i for b in (0, 10, 20) for i in range(10)
            if i != 4 and i != 8 and not (b > 0 and i == 6)]
    check_equal(stored, want, f"{key}: stored events in order")
    try:
        service.PublishBatch(stubs.service_pb2.PublishBatchRequest(
            events=[stubs.event_pb2.Event()] * 1001), timeout=TIMEOUT)
        check(False, "a batch of 1001 events was accepted")
    except grpc.RpcError as e:
        check_equal(e.code(), grpc.StatusCode.INVALID_ARGUMENT, "a batch over the limit")
        check(e.details().startswith("events: "), f"details {e.details()!r}")


def body(stack, checks):
    checks.run("publish typed sample.created; stored entry decodes to it", publish_typed, stack)
    checks.run("typed publish stamps an unset created_at", publish_typed_stamps_time, stack)
    checks.run("publish generic Struct data; stored entry decodes to it", publish_generic, stack)
    checks.run("client-set id publishes once, repeat is duplicate", publish_client_id_twice,
               stack)
    checks.run("PublishStream 1000 events, 2 invalid: answers exact and in order",
               publish_stream, stack)
    checks.run("PublishBatch and PublishBatchStream: per-event results in order, dedup",
               publish_batch, stack)
    checks.run("invalid unary publish is INVALID_ARGUMENT naming the field", publish_invalid,
               stack)
    checks.run("lenient: misfit typed payload stored as flagged generic data",
               publish_misfit_lenient, stack)
    checks.run("GetStats counters reflect the publishes", get_stats, stack)
    checks.run("GetStats stream_lengths match Redis", get_stats_stream_lengths, stack)
    checks.run("ListEventTypes lists the 18 catalog types as the protos define them",
               list_event_types, stack)


if __name__ == "__main__":
    sys.exit(main("interop", "publish", body))
