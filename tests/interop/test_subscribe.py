#!/usr/bin/python3
"""Interop: a Python subscriber with stubs generated from proto/ at test time.

Against a private tracseq-events + redis-server, end to end from Python:
CreateSubscription echoes its spec (and refuses other settings under the same
name); a Subscribe stream (requests fed through a queue.Queue) gets the
backlog priority 1 first, then live events, each matching event exactly once
with the envelope as published (and as stored in Redis), and no event of a
type its patterns do not match; an unacked delivery comes back with
delivery_attempt 2 after the ack deadline, a nack comes back after its delay
(at once for 0), an extension holds the redelivery off; a subscription is
durable (what is published while nobody listens arrives on the next stream,
what a cancelled stream left unacked goes to the next subscriber);
GetSubscription's statistics equal what the client saw; an event nobody acks
moves to the dead-letter stream after max_delivery_attempts; deleting a
subscription ends its live stream with NOT_FOUND; Pull, its long poll,
Acknowledge and Nack work from Python; bad requests get the documented codes;
SIGTERM with a stream open ends that stream with UNAVAILABLE and the service
exits 0.

Timing: ack deadlines are 1000 ms (300 ms for the dead-letter subscription);
lower bounds on redelivery times are the deadline or delay less slack for the
client's view of time, upper bounds are generous. The whole run takes ~12 s.

Checks build on each other (one subscription, counted from start to end), so
a failed check may fail later ones; each says why. Prints one line per check
and "interop: N passed, M failed"; exits 1 when any check failed.
"""
import queue
import signal
import sys
import threading
import time
import types
import uuid

import grpc

from interop_support import CheckFailed, check, check_equal, main

TIMEOUT = 10.0
MAIN = "interop-main"
MAIN_TYPES = ["interop.*", "sample.created"]
DEADLINE_MS = 1000
DLQ_SUB = "interop-dlq"
DLQ_DEADLINE_MS = 300
PULL_SUB = "interop-pull"
# Slack under a lower time bound: the client sees a delivery a little after
# the server sent it, so the gap it measures between two may be shorter.
SLACK = 0.1


# ---- a Subscribe stream ------------------------------------------------------

class Ended:
    """The end of a Subscribe stream: error is the RpcError, or None for OK."""

    def __init__(self, error):
        self.error = error

    def code(self):
        return grpc.StatusCode.OK if self.error is None else self.error.code()

    def __str__(self):
        if self.error is None:
            return "OK"
        return f"{self.error.code()} {self.error.details()!r}"


class Stream:
    """One Subscribe call. Requests go in through a queue.Queue (None ends
    them: a half-close); a thread puts (receipt time, Delivery) pairs, then
    an Ended, on an output queue. Deliveries are counted in tally."""

    def __init__(self, stack, first, tally=None):
        self.stubs = stack.stubs
        self.tally = tally
        self.requests = queue.Queue()
        self.out = queue.Queue()
        self.ended = None
        self.requests.put(first)
        self.call = stack.event_service().Subscribe(self.request_iter(), timeout=120.0)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def request_iter(self):
        while True:
            request = self.requests.get()
            if request is None:
                return
            yield request

    def read(self):
        try:
            for delivery in self.call:
                self.out.put((time.monotonic(), delivery))
            self.out.put(Ended(None))
        except grpc.RpcError as e:
            self.out.put(Ended(e))

    def send(self, **fields):
        self.requests.put(self.stubs.service_pb2.SubscribeRequest(**fields))

    def ack(self, ack_ids):
        self.send(ack=self.stubs.service_pb2.AckIds(ack_ids=ack_ids))
        if self.tally is not None:
            self.tally.acked += len(ack_ids)

    def nack(self, ack_ids, delay_ms):
        self.send(nack=self.stubs.service_pb2.NackIds(ack_ids=ack_ids, delay_ms=delay_ms))

    def extend(self, ack_ids, deadline_ms):
        self.send(extend=self.stubs.service_pb2.ExtendDeadline(ack_ids=ack_ids,
                                                                deadline_ms=deadline_ms))

    def next(self, timeout, what):
        """(receipt time, Delivery) of the next delivery within timeout."""
        check(self.ended is None, f"{what}: the stream had already ended ({self.ended})")
        try:
            item = self.out.get(timeout=timeout)
        except queue.Empty:
            raise CheckFailed(f"{what}: no delivery within {timeout:.1f}s") from None
        if isinstance(item, Ended):
            self.ended = item
            raise CheckFailed(f"{what}: the stream ended ({item})")
        self.count(item[1])
        return item

    def count(self, delivery):
        if self.tally is not None:
            self.tally.delivered += 1
            self.tally.redelivered += delivery.delivery_attempt > 1

    def take(self, n, timeout, what):
        deadline = time.monotonic() + timeout
        return [self.next(max(0.0, deadline - time.monotonic()), f"{what} ({i + 1} of {n})")
                for i in range(n)]

    def quiet(self, seconds, what):
        """Nothing arrives for seconds (and the stream stays open)."""
        check(self.ended is None, f"{what}: the stream had already ended ({self.ended})")
        try:
            item = self.out.get(timeout=seconds)
        except queue.Empty:
            return
        if isinstance(item, Ended):
            self.ended = item
            raise CheckFailed(f"{what}: the stream ended ({item})")
        d = item[1]
        self.count(d)
        raise CheckFailed(f"{what}: unexpected delivery of {d.event.event_type} {d.event.id} "
                          f"(attempt {d.delivery_attempt})")

    def end(self, timeout, what):
        """The Ended the stream finishes with, skipping deliveries."""
        if self.ended is not None:
            return self.ended
        limit = time.monotonic() + timeout
        while True:
            try:
                item = self.out.get(timeout=max(0.0, limit - time.monotonic()))
            except queue.Empty:
                raise CheckFailed(f"{what}: the stream did not end within {timeout}s") from None
            if isinstance(item, Ended):
                self.ended = item
                return item

    def cancel(self):
        self.call.cancel()
        self.requests.put(None)
        return self.end(5.0, "cancel")

    def close(self):
        if self.ended is None:
            self.call.cancel()
        self.requests.put(None)
        self.reader.join(5.0)


class Tally:
    """What the client saw of one subscription (compared with its stats)."""

    def __init__(self):
        self.delivered = self.acked = self.redelivered = 0


# ---- publishing and comparing ------------------------------------------------

def sample_created(stubs):
    payload = stubs.sample_pb2.SampleCreated(
        sample_id=str(uuid.uuid4()), barcode="SAM-20240618-042", sample_type="RNA",
        submitter_id=str(uuid.uuid4()), lab_id=str(uuid.uuid4()))
    payload.metadata["volume_ul"].number_value = 12.5
    payload.metadata["tags"].list_value.values.add().string_value = "interop"
    payload.created_at.FromSeconds(1718700000)
    payload.created_at.nanos = 5000000
    return payload


def publish(stack, st, event_type, priority=3, typed=False, data=None):
    """Publishes one event; remembers it under its id; returns the id."""
    stubs = stack.stubs
    event = stubs.event_pb2.Event(event_type=event_type, source_service="interop-subscriber",
                                  correlation_id=str(uuid.uuid4()),
                                  causation_id=str(uuid.uuid4()),
                                  subject=f"subject-{len(st.sent)}", priority=priority)
    event.metadata["published_by"] = "test_subscribe"
    if typed:
        event.sample_created.CopyFrom(sample_created(stubs))
    else:
        event.data.update(data if data is not None else {"seq": len(st.sent), "ok": True,
                                                         "name": "ünïcode ✓",
                                                         "nested": {"l": [1, "two", None]}})
    response = stack.event_service().Publish(stubs.service_pb2.PublishRequest(event=event),
                                             timeout=TIMEOUT)
    check(not response.HasField("error") and response.event_id,
          f"publish {event_type}: {response}")
    st.sent[response.event_id] = (event, response)
    return response.event_id


def expected_event(stubs, sent, response):
    """The envelope the server stores for sent: stamped with id and time."""
    event = stubs.event_pb2.Event()
    event.CopyFrom(sent)
    event.id = response.event_id
    event.timestamp.CopyFrom(response.published_at)
    if not event.version:
        event.version = "1.0"
    return event


def differences(got, want):
    """The Event fields on which got and want differ, each as got/want."""
    def shown(value):
        text = str(value).replace("\n", " ")
        return text if len(text) <= 160 else text[:160] + "..."

    out = [f"{f.name}: got {shown(getattr(got, f.name))}, want {shown(getattr(want, f.name))}"
           for f in want.DESCRIPTOR.fields if getattr(got, f.name) != getattr(want, f.name)]
    if got.WhichOneof("payload") != want.WhichOneof("payload"):
        out.append(f"payload: got {got.WhichOneof('payload')}, want {want.WhichOneof('payload')}")
    return "; ".join(out)


def check_delivery(stack, st, item, subscription, attempt, what):
    """A delivery of a published event: fields intact, as stored in Redis."""
    stubs, d = stack.stubs, item[1]
    check(d.event.id in st.sent, f"{what}: delivered an event not published here: "
          f"{d.event.event_type} {d.event.id!r}")
    sent, response = st.sent[d.event.id]
    check_equal(d.delivery_attempt, attempt, f"{what}: delivery_attempt of {d.event.event_type}")
    check_equal(d.subscription, subscription, f"{what}: subscription")
    check_equal(d.stream_id, response.stream_id, f"{what}: stream_id")
    check(d.ack_id != "", f"{what}: empty ack_id")
    want = expected_event(stubs, sent, response)
    if d.event != want:
        raise CheckFailed(f"{what}: delivered {sent.event_type} differs: "
                          f"{differences(d.event, want)}")
    entries = stack.redis().xrange(response.stream, response.stream_id, response.stream_id)
    check_equal(len(entries), 1, f"{what}: Redis entries at {response.stream_id}")
    stored = stubs.event_pb2.Event.FromString(entries[0][1]["event"])
    check(stored == d.event, f"{what}: delivered envelope differs from the stored one")


def expect_rpc_error(code, fn, what, details_prefix=None):
    try:
        answer = fn()
    except grpc.RpcError as e:
        check_equal(e.code(), code, f"{what}: status ({e.details()!r})")
        if details_prefix is not None:
            check((e.details() or "").startswith(details_prefix),
                  f"{what}: details {e.details()!r} do not start with {details_prefix!r}")
        return e
    raise CheckFailed(f"{what}: answered {answer!r}, want {code}")


def need(st, *names):
    for name in names:
        check(getattr(st, name, None) is not None, f"skipped: needs {name} from an earlier check")


def get_sub(stack, name):
    request = stack.stubs.service_pb2.GetSubscriptionRequest(name=name)
    return stack.event_service().GetSubscription(request, timeout=TIMEOUT)


def wait_sub(stack, name, ready, timeout=3.0):
    """GetSubscription until ready(sub) (acks on a stream land a little later)."""
    limit = time.monotonic() + timeout
    while True:
        sub = get_sub(stack, name)
        if ready(sub) or time.monotonic() > limit:
            return sub
        time.sleep(0.05)


def matches_main(event_type):
    """MAIN_TYPES, spelled out: "*" stands for exactly one segment."""
    return event_type == "sample.created" or (event_type.startswith("interop.")
                                              and event_type.count(".") == 1)


def main_spec(stubs, ack_deadline_ms=DEADLINE_MS):
    return stubs.service_pb2.Subscription(
        name=MAIN, event_types=MAIN_TYPES, start=stubs.service_pb2.START_POSITION_EARLIEST,
        ack_deadline_ms=ack_deadline_ms, max_delivery_attempts=3)


# ---- checks ------------------------------------------------------------------

def create_subscription(stack, st):
    """Backlog first (interop.before at priority 4, then sample.created at
    priority 1, plus types the patterns do not match), then the
    subscription, starting at the earliest event."""
    stubs, service = stack.stubs, stack.event_service()
    st.backlog = [publish(stack, st, "interop.before", priority=4),
                  publish(stack, st, "sample.created", priority=1, typed=True)]
    st.ignored = [publish(stack, st, "interop.deep.nested"),
                  publish(stack, st, "interopx.before")]
    created = service.CreateSubscription(
        stubs.service_pb2.CreateSubscriptionRequest(subscription=main_spec(stubs)),
        timeout=TIMEOUT)
    check_equal(created.name, MAIN, "name")
    check_equal(list(created.event_types), MAIN_TYPES, "event_types")
    check_equal(created.start, stubs.service_pb2.START_POSITION_EARLIEST, "start")
    check_equal(created.ack_deadline_ms, DEADLINE_MS, "ack_deadline_ms")
    check_equal(created.max_delivery_attempts, 3, "max_delivery_attempts")
    check_equal(created.max_in_flight, 100, "max_in_flight (default)")
    check_equal(created.auto_ack, False, "auto_ack")
    age = time.time() - created.created_at.ToNanoseconds() / 1e9
    check(created.HasField("created_at") and -5 < age < 30, f"created_at is {age:.1f}s from now")
    check_equal(created.stats.lag, 2, "stats.lag (the two matching backlog events)")
    check_equal(created.stats.pending, 0, "stats.pending")
    check_equal(created.stats.streams, 2, "stats.streams (interop.before p4, sample.created p1)")
    check(created.stats.dead_letter_stream != "", "stats.dead_letter_stream is empty")
    st.created = created


def create_idempotent(stack, st):
    stubs, service = stack.stubs, stack.event_service()
    need(st, "created")
    again = service.CreateSubscription(
        stubs.service_pb2.CreateSubscriptionRequest(subscription=main_spec(stubs)),
        timeout=TIMEOUT)
    check_equal(again.created_at, st.created.created_at, "created_at of the repeat")
    other = stubs.service_pb2.CreateSubscriptionRequest(subscription=main_spec(stubs, 2000))
    expect_rpc_error(grpc.StatusCode.ALREADY_EXISTS,
                     lambda: service.CreateSubscription(other, timeout=TIMEOUT),
                     "CreateSubscription with another ack_deadline_ms")
    got = get_sub(stack, MAIN)
    check_equal(got.ack_deadline_ms, DEADLINE_MS, "ack_deadline_ms after the refused create")


def subscribe_backlog(stack, st):
    """Joined by name: the two backlog events, priority 1 first."""
    need(st, "created")
    first = stack.stubs.service_pb2.SubscribeRequest(subscription_name=MAIN,
                                                     consumer_name="py-main-1")
    st.stream = Stream(stack, first, st.tally)
    st.streams.append(st.stream)
    items = st.stream.take(2, 5.0, "backlog")
    st.stream.ack([item[1].ack_id for item in items])
    got = [item[1].event.id for item in items]
    check_equal(sorted(got), sorted(st.backlog), "backlog event ids")
    for item in items:
        check_delivery(stack, st, item, MAIN, 1, "backlog")
    st.backlog_order = got


def backlog_priority_order(stack, st):
    need(st, "backlog_order")
    check_equal(st.backlog_order, [st.backlog[1], st.backlog[0]],
                "backlog order (sample.created p1, published second, first)")


def subscribe_live(stack, st):
    """Published while the stream is open: one typed, one generic (kept
    unacked for the redelivery check), two the patterns do not match."""
    need(st, "stream")
    typed = publish(stack, st, "sample.created", priority=2, typed=True)
    st.ignored.append(publish(stack, st, "interop.deep.nested", priority=1))
    generic = publish(stack, st, "interop.after", priority=3,
                      data={"reading": 4.25, "unit": "°C", "flags": [True, False]})
    st.ignored.append(publish(stack, st, "interopx.after"))
    items = st.stream.take(2, 5.0, "live")
    by_id = {item[1].event.id: item for item in items}
    if typed in by_id:
        st.stream.ack([by_id[typed][1].ack_id])
    st.held = by_id.get(generic)
    check_equal(sorted(by_id), sorted([typed, generic]), "live event ids")
    for item in items:
        check_delivery(stack, st, item, MAIN, 1, "live")


def exactly_once(stack, st):
    """Nothing more comes before the deadline: no duplicate, no event of a
    type the patterns do not match."""
    need(st, "held")
    # Up to shortly before the held event's redelivery is due.
    left = st.held[0] + DEADLINE_MS / 1000 - 2 * SLACK - time.monotonic()
    check(left > 0.2, f"too late to look ({left:.3f}s before the redelivery)")
    st.stream.quiet(left, "after every event came once")


def redelivered_after_deadline(stack, st):
    need(st, "held")
    first_at, first = st.held
    item = st.stream.next(3.0, "redelivery of the unacked event")
    st.stream.ack([item[1].ack_id])
    check_equal(item[1].event.id, first.event.id, "redelivered event id")
    check_delivery(stack, st, item, MAIN, 2, "redelivery")
    gap = item[0] - first_at
    check(gap >= DEADLINE_MS / 1000 - SLACK,
          f"redelivered {gap:.3f}s after the first delivery, before the "
          f"{DEADLINE_MS} ms ack deadline")


def nack_delay_zero(stack, st):
    need(st, "stream")
    event_id = publish(stack, st, "interop.nacked_now")
    first = st.stream.next(3.0, "the event to nack")
    check_equal(first[1].event.id, event_id, "delivered event")
    sent_at = time.monotonic()
    st.stream.nack([first[1].ack_id], 0)
    item = st.stream.next(3.0, "redelivery after nack(delay_ms=0)")
    st.stream.ack([item[1].ack_id])
    check_equal(item[1].event.id, event_id, "redelivered event")
    check_delivery(stack, st, item, MAIN, 2, "after nack")
    gap = item[0] - sent_at
    check(gap < DEADLINE_MS / 1000 - 0.2,
          f"nack(delay_ms=0) came back after {gap:.3f}s, not before the ack deadline")


def nack_with_delay(stack, st):
    """delay_ms 1500, longer than the 1000 ms ack deadline."""
    need(st, "stream")
    event_id = publish(stack, st, "interop.nacked_later")
    first = st.stream.next(3.0, "the event to nack")
    check_equal(first[1].event.id, event_id, "delivered event")
    sent_at = time.monotonic()
    st.stream.nack([first[1].ack_id], 1500)
    st.stream.quiet(1.5 - SLACK, "within nack delay_ms=1500")
    item = st.stream.next(2.0, "redelivery after nack(delay_ms=1500)")
    st.stream.ack([item[1].ack_id])
    check_equal(item[1].event.id, event_id, "redelivered event")
    check_delivery(stack, st, item, MAIN, 2, "after nack with delay")
    gap = item[0] - sent_at
    check(gap >= 1.5 - SLACK, f"came back {gap:.3f}s after the nack")


def extend_deadline(stack, st):
    """extend{deadline_ms 2000} holds the 1000 ms redelivery off to 2 s."""
    need(st, "stream")
    event_id = publish(stack, st, "interop.extended")
    first = st.stream.next(3.0, "the event to extend")
    check_equal(first[1].event.id, event_id, "delivered event")
    sent_at = time.monotonic()
    st.stream.extend([first[1].ack_id], 2000)
    st.stream.quiet(2.0 - SLACK, "within the extended deadline")
    item = st.stream.next(2.0, "redelivery after the extended deadline")
    st.stream.ack([item[1].ack_id])
    check_equal(item[1].event.id, event_id, "redelivered event")
    check_equal(item[1].delivery_attempt, 2, "delivery_attempt")
    gap = item[0] - sent_at
    check(gap >= 2.0 - SLACK, f"came back {gap:.3f}s after the extension")


def cancel_stream(stack, st):
    """A client cancel ends the stream; the server drops the subscriber."""
    need(st, "stream")
    st.stream.quiet(0.2, "before cancelling")
    ended = st.stream.cancel()
    check_equal(ended.code(), grpc.StatusCode.CANCELLED, "the cancelled stream's status")
    sub = wait_sub(stack, MAIN, lambda s: s.stats.active_subscribers == 0)
    check_equal(sub.stats.active_subscribers, 0, "active_subscribers after the cancel")
    health = stack.health().Check(stack.stubs.health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    check_equal(health.status, stack.stubs.health_pb2.HealthCheckResponse.SERVING,
                "health after the cancel")


def durable_and_handed_over(stack, st):
    """Published with nobody subscribed: arrives on the next stream; left
    unacked by a cancelled stream: goes to the next subscriber, attempt 2."""
    need(st, "created")
    stubs = stack.stubs
    event_id = publish(stack, st, "interop.while_away")
    second = Stream(stack, stubs.service_pb2.SubscribeRequest(subscription_name=MAIN,
                                                              consumer_name="py-main-2"),
                    st.tally)
    st.streams.append(second)
    first = second.next(5.0, "the event published while nobody listened")
    check_delivery(stack, st, first, MAIN, 1, "second stream")
    check_equal(first[1].event.id, event_id, "delivered event")
    second.quiet(0.1, "second stream")
    check_equal(second.cancel().code(), grpc.StatusCode.CANCELLED, "second stream status")
    st.stream = Stream(stack, stubs.service_pb2.SubscribeRequest(subscription_name=MAIN,
                                                                 consumer_name="py-main-3"),
                       st.tally)
    st.streams.append(st.stream)
    item = st.stream.next(4.0, "the event the cancelled stream left unacked")
    st.stream.ack([item[1].ack_id])
    check_equal(item[1].event.id, event_id, "handed-over event")
    check_delivery(stack, st, item, MAIN, 2, "third stream")
    gap = item[0] - first[0]
    check(gap >= DEADLINE_MS / 1000 - SLACK, f"handed over {gap:.3f}s after the first delivery")


def subscription_stats(stack, st):
    """Once the acks landed: pending 0, lag 0, and the counters are what
    the client saw on its streams."""
    need(st, "created")
    tally = st.tally
    sub = wait_sub(stack, MAIN, lambda s: s.stats.pending == 0 and s.stats.acked == tally.acked)
    stats = sub.stats
    check_equal(stats.pending, 0, "pending")
    check_equal(stats.lag, 0, "lag")
    check_equal((stats.delivered, stats.acked, stats.redelivered),
                (tally.delivered, tally.acked, tally.redelivered),
                "(delivered, acked, redelivered) vs the client's count")
    check_equal(stats.dead_lettered, 0, "dead_lettered")
    check_equal(stats.active_subscribers, 1, "active_subscribers (one stream open)")
    streams = {st.sent[i][1].stream for i in st.sent
               if i not in st.ignored and matches_main(st.sent[i][0].event_type)}
    check_equal(stats.streams, len(streams), f"streams (matching: {sorted(streams)})")
    listed = stack.event_service().ListSubscriptions(
        stack.stubs.service_pb2.ListSubscriptionsRequest(), timeout=TIMEOUT)
    mine = [s for s in listed.subscriptions if s.name == MAIN]
    check_equal(len(mine), 1, f"{MAIN} in ListSubscriptions")
    check_equal(list(mine[0].event_types), MAIN_TYPES, "listed event_types")
    check_equal(mine[0].stats.acked, tally.acked, "listed stats.acked")


def dead_letter(stack, st):
    """Subscribe with an inline spec (300 ms deadline, 3 attempts), never
    ack: attempts 1, 2, 3, then the event moves to the dead-letter stream."""
    stubs = stack.stubs
    event_id = publish(stack, st, "interop_dlq.poison")
    spec = stubs.service_pb2.Subscription(
        name=DLQ_SUB, event_types=["interop_dlq.*"],
        start=stubs.service_pb2.START_POSITION_EARLIEST, ack_deadline_ms=DLQ_DEADLINE_MS,
        max_delivery_attempts=3)
    stream = Stream(stack, stubs.service_pb2.SubscribeRequest(subscription=spec,
                                                              consumer_name="py-dlq"))
    st.streams.append(stream)
    for attempt in (1, 2, 3):
        item = stream.next(3.0, f"attempt {attempt}")
        check_delivery(stack, st, item, DLQ_SUB, attempt, f"attempt {attempt}")
    stream.quiet(3 * DLQ_DEADLINE_MS / 1000, "after the last attempt")
    sub = wait_sub(stack, DLQ_SUB, lambda s: s.stats.dead_lettered == 1)
    stats = sub.stats
    check_equal((stats.dead_lettered, stats.pending, stats.delivered, stats.redelivered,
                 stats.acked), (1, 0, 3, 2, 0),
                "(dead_lettered, pending, delivered, redelivered, acked)")
    entries = stack.redis().xrange(stats.dead_letter_stream)
    check_equal(len(entries), 1, f"entries in {stats.dead_letter_stream}")
    fields = entries[0][1]
    _, response = st.sent[event_id]
    check_equal((fields.get("dlq_stream"), fields.get("dlq_id"), fields.get("dlq_attempts")),
                (response.stream.encode(), response.stream_id.encode(), b"3"),
                "dead letter's (dlq_stream, dlq_id, dlq_attempts)")
    check_equal(stubs.event_pb2.Event.FromString(fields["event"]).id, event_id,
                "dead letter's event id")
    st.dlq_stream = stream


def subscribe_conflicting_spec(stack, st):
    need(st, "dlq_stream")
    stubs = stack.stubs
    spec = stubs.service_pb2.Subscription(name=DLQ_SUB, event_types=["interop_dlq.other"])
    stream = Stream(stack, stubs.service_pb2.SubscribeRequest(subscription=spec))
    st.streams.append(stream)
    ended = stream.end(5.0, "Subscribe with another spec under an existing name")
    check_equal(ended.code(), grpc.StatusCode.ALREADY_EXISTS, f"status ({ended})")


def delete_ends_stream(stack, st):
    need(st, "dlq_stream")
    service, pb = stack.event_service(), stack.stubs.service_pb2
    service.DeleteSubscription(pb.DeleteSubscriptionRequest(name=DLQ_SUB), timeout=TIMEOUT)
    ended = st.dlq_stream.end(5.0, "the live stream of the deleted subscription")
    check_equal(ended.code(), grpc.StatusCode.NOT_FOUND, f"its status ({ended})")
    expect_rpc_error(grpc.StatusCode.NOT_FOUND, lambda: get_sub(stack, DLQ_SUB),
                     "GetSubscription after delete")
    expect_rpc_error(grpc.StatusCode.NOT_FOUND,
                     lambda: service.DeleteSubscription(pb.DeleteSubscriptionRequest(name=DLQ_SUB),
                                                        timeout=TIMEOUT),
                     "DeleteSubscription again")
    listed = service.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=TIMEOUT)
    check(DLQ_SUB not in [s.name for s in listed.subscriptions], "still in ListSubscriptions")


def pull(stack, st, max_events, wait_ms=0):
    request = stack.stubs.service_pb2.PullRequest(subscription=PULL_SUB, max_events=max_events,
                                                  wait_ms=wait_ms, consumer_name="py-puller")
    return stack.event_service().Pull(request, timeout=TIMEOUT + wait_ms / 1000)


def acknowledge(stack, ack_ids):
    request = stack.stubs.service_pb2.AcknowledgeRequest(subscription=PULL_SUB, ack_ids=ack_ids)
    return stack.event_service().Acknowledge(request, timeout=TIMEOUT)


def pull_and_acknowledge(stack, st):
    stubs = stack.stubs
    ids = [publish(stack, st, "interop_pull.item", data={"n": n}) for n in range(3)]
    spec = stubs.service_pb2.Subscription(name=PULL_SUB, event_types=["interop_pull.*"],
                                          start=stubs.service_pb2.START_POSITION_EARLIEST,
                                          ack_deadline_ms=DEADLINE_MS)
    stack.event_service().CreateSubscription(
        stubs.service_pb2.CreateSubscriptionRequest(subscription=spec), timeout=TIMEOUT)
    first = pull(stack, st, 2).deliveries
    second = pull(stack, st, 10).deliveries
    started = time.monotonic()
    empty = pull(stack, st, 10, wait_ms=300).deliveries
    waited = time.monotonic() - started
    got = list(first) + list(second)
    check_equal([d.event.id for d in first], ids[:2], "first Pull (max_events 2)")
    check_equal([d.event.id for d in second], ids[2:], "second Pull")
    for d in got:
        check_delivery(stack, st, (0, d), PULL_SUB, 1, "pulled")
    check_equal(len(empty), 0, "deliveries of a Pull with nothing left")
    check(waited >= 0.3 - SLACK, f"an empty Pull with wait_ms 300 answered after {waited:.3f}s")
    acked = acknowledge(stack, [d.ack_id for d in got])
    check_equal((acked.acked, list(acked.unknown_ack_ids)), (3, []), "Acknowledge")
    again = acknowledge(stack, [got[0].ack_id])
    check_equal((again.acked, list(again.unknown_ack_ids)), (0, [got[0].ack_id]),
                "Acknowledge of an acked id")
    stats = get_sub(stack, PULL_SUB).stats
    check_equal((stats.pending, stats.delivered, stats.acked, stats.lag), (0, 3, 3, 0),
                "(pending, delivered, acked, lag)")
    st.pull_ready = True


def pull_long_poll(stack, st):
    """A waiting Pull answers as soon as an event is published."""
    need(st, "pull_ready")
    request = stack.stubs.service_pb2.PullRequest(subscription=PULL_SUB, max_events=10,
                                                  wait_ms=5000)
    future = stack.event_service().Pull.future(request, timeout=TIMEOUT)
    time.sleep(0.3)
    if future.done():  # (the message only now: exception() waits for the answer)
        raise CheckFailed(f"a Pull with wait_ms 5000 answered before any event: "
                          f"{future.exception() or future.result()}")
    published_at = time.monotonic()
    event_id = publish(stack, st, "interop_pull.item", data={"n": 3})
    response = future.result(timeout=TIMEOUT)
    waited = time.monotonic() - published_at
    check_equal([d.event.id for d in response.deliveries], [event_id], "long-poll deliveries")
    check_delivery(stack, st, (0, response.deliveries[0]), PULL_SUB, 1, "long poll")
    check(waited < 2.0, f"the waiting Pull answered {waited:.3f}s after the publish")
    check_equal(acknowledge(stack, [response.deliveries[0].ack_id]).acked, 1, "Acknowledge")


def unary_nack(stack, st):
    need(st, "pull_ready")
    pb = stack.stubs.service_pb2
    event_id = publish(stack, st, "interop_pull.item", data={"n": 4})
    first = pull(stack, st, 10, wait_ms=2000).deliveries
    check_equal([d.event.id for d in first], [event_id], "pulled")
    nacked = stack.event_service().Nack(
        pb.NackRequest(subscription=PULL_SUB, ack_ids=[first[0].ack_id], delay_ms=0),
        timeout=TIMEOUT)
    check_equal(nacked.nacked, 1, "Nack nacked")
    again = pull(stack, st, 10, wait_ms=2000).deliveries
    check_equal([d.event.id for d in again], [event_id], "pulled after the Nack")
    check_delivery(stack, st, (0, again[0]), PULL_SUB, 2, "after Nack")
    check_equal(acknowledge(stack, [again[0].ack_id]).acked, 1, "Acknowledge")
    stats = get_sub(stack, PULL_SUB).stats
    check_equal((stats.pending, stats.redelivered), (0, 1), "(pending, redelivered)")


def bad_requests(stack, st):
    stubs, service = stack.stubs, stack.event_service()
    pb = stubs.service_pb2
    unknown = Stream(stack, pb.SubscribeRequest(subscription_name="interop-no-such"))
    st.streams.append(unknown)
    check_equal(unknown.end(5.0, "Subscribe to an unknown name").code(),
                grpc.StatusCode.NOT_FOUND, "Subscribe to an unknown name")
    ack_first = Stream(stack, pb.SubscribeRequest(ack=pb.AckIds(ack_ids=["x/1-0"])))
    st.streams.append(ack_first)
    check_equal(ack_first.end(5.0, "Subscribe opening with an ack").code(),
                grpc.StatusCode.INVALID_ARGUMENT, "Subscribe opening with an ack")
    expect_rpc_error(grpc.StatusCode.NOT_FOUND, lambda: get_sub(stack, "interop-no-such"),
                     "GetSubscription of an unknown name")
    expect_rpc_error(grpc.StatusCode.NOT_FOUND,
                     lambda: service.Pull(pb.PullRequest(subscription="interop-no-such"),
                                          timeout=TIMEOUT),
                     "Pull of an unknown subscription")
    bad_name = pb.Subscription(name="bad name!", event_types=["interop.*"])
    expect_rpc_error(grpc.StatusCode.INVALID_ARGUMENT,
                     lambda: service.CreateSubscription(
                         pb.CreateSubscriptionRequest(subscription=bad_name), timeout=TIMEOUT),
                     "CreateSubscription named 'bad name!'", "subscription.name")
    bad_pattern = pb.Subscription(name="interop-bad", event_types=["interop.x*"])
    expect_rpc_error(grpc.StatusCode.INVALID_ARGUMENT,
                     lambda: service.CreateSubscription(
                         pb.CreateSubscriptionRequest(subscription=bad_pattern),
                         timeout=TIMEOUT),
                     "CreateSubscription with pattern 'interop.x*'", "subscription.event_types[0]")
    expect_rpc_error(grpc.StatusCode.INVALID_ARGUMENT,
                     lambda: service.Acknowledge(pb.AcknowledgeRequest(subscription=MAIN),
                                                 timeout=TIMEOUT),
                     "Acknowledge without ack_ids")


def shutdown_with_stream_open(stack, st):
    """SIGTERM while a Subscribe stream is open: the stream ends UNAVAILABLE
    and the process exits (its status is checked when the stack closes)."""
    need(st, "stream")
    check(st.stream.ended is None, "skipped: the main stream is not open")
    started = time.monotonic()
    stack.service.proc.send_signal(signal.SIGTERM)
    ended = st.stream.end(10.0, "the open stream on SIGTERM")
    check_equal(ended.code(), grpc.StatusCode.UNAVAILABLE, f"its status ({ended})")
    try:
        stack.service.proc.wait(timeout=10.0)
    except Exception:
        raise CheckFailed("the service still runs 10 s after SIGTERM") from None
    took = time.monotonic() - started
    check(took < 6.0, f"exiting took {took:.1f}s (shutdown grace is 5 s)")


def body(stack, checks):
    st = types.SimpleNamespace(sent={}, streams=[], ignored=[], tally=Tally(), created=None,
                               stream=None,
                               held=None, backlog_order=None, dlq_stream=None, pull_ready=None)
    try:
        run_checks(stack, checks, st)
    finally:
        for stream in st.streams:
            stream.close()


def run_checks(stack, checks, st):
    checks.run("CreateSubscription (interop.*, sample.created; EARLIEST; 1000 ms; 3 attempts) "
               "echoes its spec", create_subscription, stack, st)
    checks.run("CreateSubscription: same settings accepted, other settings ALREADY_EXISTS",
               create_idempotent, stack, st)
    checks.run("Subscribe by name gets the backlog, fields intact, as stored",
               subscribe_backlog, stack, st)
    checks.run("backlog comes priority 1 first", backlog_priority_order, stack, st)
    checks.run("Subscribe gets live typed and generic events, fields intact",
               subscribe_live, stack, st)
    checks.run("each event exactly once; unmatched types never delivered", exactly_once,
               stack, st)
    checks.run("unacked event redelivered with delivery_attempt 2 after the ack deadline",
               redelivered_after_deadline, stack, st)
    checks.run("nack delay_ms 0 comes back at once with delivery_attempt 2", nack_delay_zero,
               stack, st)
    checks.run("nack delay_ms 1500 comes back after 1.5 s", nack_with_delay, stack, st)
    checks.run("extend deadline_ms 2000 holds the redelivery off", extend_deadline, stack, st)
    checks.run("cancelling the stream ends it; the subscriber is dropped", cancel_stream,
               stack, st)
    checks.run("durable: missed event arrives on the next stream; unacked one handed over",
               durable_and_handed_over, stack, st)
    checks.run("GetSubscription stats: pending 0, counters match the client's",
               subscription_stats, stack, st)
    checks.run("after max_delivery_attempts an unacked event is dead-lettered", dead_letter,
               stack, st)
    checks.run("Subscribe with another spec under an existing name is ALREADY_EXISTS",
               subscribe_conflicting_spec, stack, st)
    checks.run("DeleteSubscription ends its live stream with NOT_FOUND", delete_ends_stream,
               stack, st)
    checks.run("Pull in order, max_events, wait_ms; Acknowledge", pull_and_acknowledge,
               stack, st)
    checks.run("a waiting Pull answers when an event is published", pull_long_poll, stack, st)
    checks.run("unary Nack: the event is pulled again with delivery_attempt 2", unary_nack,
               stack, st)
    checks.run("bad subscription requests get NOT_FOUND / INVALID_ARGUMENT", bad_requests,
               stack, st)
    checks.run("SIGTERM ends an open Subscribe stream with UNAVAILABLE", shutdown_with_stream_open,
               stack, st)


if __name__ == "__main__":
    sys.exit(main("interop", "subscribe", body))
