#!/usr/bin/python3
"""Interop: /metrics, /api/v1/stats, GetStats and eventctl after a scripted run.

Against a private redis-server, tracseq-events and tracseq-rest-bridge: two
subscriptions go through a scripted run over gRPC (publish, Pull with a fixed
consumer name, Acknowledge, Nack, a Nack with reject, a delivery left
unacked, a backlog nobody reads, an event dead-lettered after
max_delivery_attempts), then:

- /metrics parses with the Prometheus project's own parser (Debian's
  python3-prometheus-client, prometheus_client.parser): the three latency
  histograms are histogram families whose buckets are cumulative, monotone,
  with ascending bounds, +Inf equal to _count, and _count equal to what was
  done (14 publishes; 11 first deliveries); the quantile gauges they replace
  are gone; every per-subscription series (backlog, pending, oldest unacked
  age, dead letters, consumers, subscribers, delivered / acked / nacked /
  redelivered and dead-lettered per reason, max_delivery_attempts and
  rejected) carries the run's exact figure;
- /api/v1/stats and GetStats carry the same figures (proto3 JSON, 64-bit
  integers as strings);
- eventctl stats and eventctl subscriptions get show them.

Timing: the only waits are for things to happen (a pull returning what was
published, the engine dead-lettering); nothing is asserted about durations
beyond their order (the oldest unacked age seen by the service is at least
the age the test computed from Redis's own clock just before).
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from interop_support import (CheckFailed, ProcessExited, Process, check, check_equal, env_path,
                             main, on_free_port, wait_until)

TIMEOUT = 10.0
MAIN = "metrics-main"
DLQ = "metrics-dlq"
CONSUMER = "metrics-puller"
HISTOGRAMS = ["tracseq_events_publish_latency_seconds",
              "tracseq_events_redis_round_trip_seconds",
              "tracseq_events_delivery_latency_seconds"]
GONE = ["tracseq_events_publish_latency_p50_seconds",
        "tracseq_events_publish_latency_p99_seconds",
        "tracseq_events_publish_latency_max_seconds"]
REASON = "max_delivery_attempts"
REJECTED = "rejected"


# ---- the bridge ---------------------------------------------------------------

def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as r:
        return r.status, r.read().decode()


def start_bridge(stack, port):
    argv = [env_path("TSE_BRIDGE_BIN"), f"--port={port}", "--host=127.0.0.1",
            f"--event-service-addr={stack.target}", "--log-format=text"]
    proc = Process("tracseq-rest-bridge", argv, os.path.join(stack.scratch, "bridge.log"))
    try:
        wait_until(f"bridge on {port} healthy",
                   lambda: proc.listens_on(port) and http_get(port, "/health")[0] == 200, proc)
    except BaseException:
        proc.stop()
        raise
    return proc, port


# ---- the scripted run ---------------------------------------------------------

class Run:
    """What the run did, to compare the figures with."""

    def __init__(self):
        self.published = 0
        self.pending_entry_ms = None  # entry-id time of the delivery left unacked


def publish(stack, run, event_type, n):
    svc, pb = stack.event_service(), stack.stubs.service_pb2
    for i in range(n):
        event = stack.stubs.event_pb2.Event(event_type=event_type, source_service="interop-metrics")
        event.data.update({"seq": i})
        response = svc.Publish(pb.PublishRequest(event=event), timeout=TIMEOUT)
        check(not response.HasField("error"), f"publish {event_type}: {response}")
        run.published += 1


def pull(stack, name, want, wait_ms=1000, deadline_s=15.0):
    """Pulls until want deliveries came (a pull may bring fewer)."""
    svc, pb = stack.event_service(), stack.stubs.service_pb2
    got = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        answer = svc.Pull(pb.PullRequest(subscription=name, max_events=want - len(got),
                                         wait_ms=wait_ms, consumer_name=CONSUMER),
                          timeout=TIMEOUT)
        got.extend(answer.deliveries)
    check_equal(len(got), want, f"deliveries pulled from {name}")
    return got


def scripted_run(stack, run):
    svc, pb = stack.event_service(), stack.stubs.service_pb2
    for spec in (pb.Subscription(name=MAIN, event_types=["metrics.main"], ack_deadline_ms=60000,
                                 max_delivery_attempts=10),
                 pb.Subscription(name=DLQ, event_types=["metrics.dlq"], ack_deadline_ms=100,
                                 max_delivery_attempts=1)):
        svc.CreateSubscription(pb.CreateSubscriptionRequest(subscription=spec), timeout=TIMEOUT)
    publish(stack, run, "metrics.main", 10)
    first = pull(stack, MAIN, 6)
    check(all(d.delivery_attempt == 1 for d in first), "first deliveries are attempt 1")
    acked = svc.Acknowledge(pb.AcknowledgeRequest(subscription=MAIN,
                                                  ack_ids=[d.ack_id for d in first[:3]]),
                            timeout=TIMEOUT)
    check_equal(acked.acked, 3, "acked")
    nacked = svc.Nack(pb.NackRequest(subscription=MAIN, ack_ids=[d.ack_id for d in first[3:5]],
                                     delay_ms=0), timeout=TIMEOUT)
    check_equal(nacked.nacked, 2, "nacked")
    # first[5] stays unacked: the pending delivery whose age is shown.
    run.pending_entry_ms = int(first[5].stream_id.split("-")[0])
    second = pull(stack, MAIN, 6)  # the 2 nacked again, and the 4 not yet delivered
    check_equal(sorted(d.delivery_attempt for d in second), [1, 1, 1, 1, 2, 2],
                "delivery attempts of the second round")
    acked = svc.Acknowledge(pb.AcknowledgeRequest(subscription=MAIN,
                                                  ack_ids=[d.ack_id for d in second[1:]]),
                            timeout=TIMEOUT)
    check_equal(acked.acked, 5, "acked in the second round")
    # One rejected: dead-lettered at once, reason rejected (not a nack).
    rejected = svc.Nack(pb.NackRequest(subscription=MAIN, ack_ids=[second[0].ack_id],
                                       reject=True), timeout=TIMEOUT)
    check_equal(rejected.nacked, 1, "rejected")
    publish(stack, run, "metrics.main", 3)  # the backlog: nobody pulls these
    publish(stack, run, "metrics.dlq", 1)
    pull(stack, DLQ, 1)  # never acked: dead-lettered after its one attempt
    # A waiting pull keeps the engine scanning the subscription's pending
    # entries, which is when it dead-letters.
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        svc.Pull(pb.PullRequest(subscription=DLQ, max_events=1, wait_ms=300,
                                consumer_name=CONSUMER), timeout=TIMEOUT)
        sub = svc.GetSubscription(pb.GetSubscriptionRequest(name=DLQ), timeout=TIMEOUT)
        if sub.stats.dead_lettered == 1:
            break
    check_equal(sub.stats.dead_lettered, 1, f"{DLQ}: dead letters in the store")


# What each subscription's series must read after the run (seconds for ages
# are checked apart).
WANT = {
    MAIN: {"backlog": 3, "pending": 1, "dead_letters": 1, "consumers": 1,
           "active_subscribers": 0, "streams": 1, "delivered_total": 12, "acked_total": 8,
           "nacked_total": 2, "redelivered_total": 2},
    DLQ: {"backlog": 0, "pending": 0, "dead_letters": 1, "consumers": 1,
          "active_subscribers": 0, "streams": 1, "delivered_total": 1, "acked_total": 0,
          "nacked_total": 0, "redelivered_total": 0},
}
# Dead-lettered per reason: MAIN rejected one, DLQ used up its attempts.
DEAD_LETTERED = {MAIN: {REASON: 0, REJECTED: 1}, DLQ: {REASON: 1, REJECTED: 0}}


def redis_now_ms(stack):
    sec, usec = stack.redis().command("TIME")
    return int(sec) * 1000 + int(usec) // 1000


# ---- checks on /metrics ---------------------------------------------------------

def parse(text):
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family
    return families


def check_histogram(families, name):
    # The parser names a histogram family without its suffixes.
    check(name in families, f"{name}: no such family")
    family = families[name]
    check_equal(family.type, "histogram", f"{name}: type")
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name == name + "_bucket"]
    counts = [s.value for s in family.samples if s.name == name + "_count"]
    sums = [s.value for s in family.samples if s.name == name + "_sum"]
    check(len(buckets) >= 2 and len(counts) == 1 and len(sums) == 1,
          f"{name}: {len(buckets)} buckets, {len(counts)} _count, {len(sums)} _sum")
    check_equal(buckets[-1][0], "+Inf", f"{name}: last bucket")
    bounds = [float(le) for le, _ in buckets]
    check(all(a < b for a, b in zip(bounds, bounds[1:])), f"{name}: bounds not ascending {bounds}")
    values = [v for _, v in buckets]
    check(all(a <= b for a, b in zip(values, values[1:])),
          f"{name}: buckets not cumulative {values}")
    check_equal(values[-1], counts[0], f"{name}: +Inf bucket against _count")
    check(sums[0] >= 0, f"{name}: _sum {sums[0]}")
    return counts[0], sums[0]


def sub_value(families, family, subscription, **labels):
    # The parser names a counter family without its _total.
    if family.endswith("_total"):
        family = family[:-len("_total")]
    check(family in families, f"{family}: no such family")
    for s in families[family].samples:
        if s.labels.get("subscription") == subscription and all(
                s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise CheckFailed(f"{family}: no series for subscription {subscription} {labels}")


def check_metrics(stack, run, port, checks):
    age_floor_ms = redis_now_ms(stack) - run.pending_entry_ms
    status, text = http_get(port, "/metrics")
    check_equal(status, 200, "GET /metrics")
    families = parse(text)

    def histograms():
        publish_count, publish_sum = check_histogram(families, HISTOGRAMS[0])
        check_equal(publish_count, run.published, "publish latency observations")
        check(publish_sum > 0, "publish latency _sum is 0")
        rtt_count, _ = check_histogram(families, HISTOGRAMS[1])
        check(rtt_count >= run.published, f"redis round trips {rtt_count} < {run.published}")
        delivery_count, _ = check_histogram(families, HISTOGRAMS[2])
        check_equal(delivery_count, 11, "first deliveries observed (10 + 1)")

    def quantiles_gone():
        for name in GONE:
            check(name not in families, f"{name} still exposed")

    def per_subscription():
        for sub, want in WANT.items():
            for series, value in want.items():
                check_equal(sub_value(families, "tracseq_subscription_" + series, sub), value,
                            f"tracseq_subscription_{series}{{subscription={sub!r}}}")
            for reason, value in DEAD_LETTERED[sub].items():
                check_equal(sub_value(families, "tracseq_subscription_dead_lettered", sub,
                                      reason=reason), value,
                            f"tracseq_subscription_dead_lettered_total{{{sub}, {reason}}}")
        age = sub_value(families, "tracseq_subscription_oldest_unacked_age_seconds", MAIN)
        check(age * 1000 >= age_floor_ms > 0,
              f"oldest unacked age {age} s, at least {age_floor_ms} ms expected")
        check_equal(sub_value(families, "tracseq_subscription_oldest_unacked_age_seconds", DLQ),
                    0, f"{DLQ}: oldest unacked age")
        check_equal(families["tracseq_events_nacked"].samples[0].value, 2,
                    "tracseq_events_nacked_total")

    checks.run("/metrics: the three latency histograms parse and add up", histograms)
    checks.run("/metrics: the quantile gauges are gone", quantiles_gone)
    checks.run("/metrics: per-subscription series carry the run's figures", per_subscription)


# ---- checks on /api/v1/stats, GetStats and eventctl -------------------------------

def check_stats_json(stack, run, port, checks):
    def rest():
        status, text = http_get(port, "/api/v1/stats")
        check_equal(status, 200, "GET /api/v1/stats")
        stats = json.loads(text)
        subs = {s["name"]: s["stats"] for s in stats["subscription_stats"]}
        main_stats = subs[MAIN]
        for key, want in (("lag", 3), ("pending", 1), ("delivered", 12), ("acked", 8),
                          ("nacked", 2), ("redelivered", 2), ("consumers", 1)):
            check_equal(int(main_stats[key]), want, f"{MAIN} stats.{key}")
        check(int(main_stats["oldest_unacked_age_ms"]) > 0, "oldest_unacked_age_ms is 0")
        check_equal({k: int(v) for k, v in subs[DLQ]["dead_lettered_by_reason"].items()},
                    DEAD_LETTERED[DLQ], f"{DLQ} dead_lettered_by_reason")
        check_equal({k: int(v) for k, v in main_stats["dead_lettered_by_reason"].items()},
                    DEAD_LETTERED[MAIN], f"{MAIN} dead_lettered_by_reason")
        histogram = stats["publish_latency"]
        check_equal(int(histogram["count"]), run.published, "publish_latency.count")
        check_equal(len(histogram["cumulative_counts"]), len(histogram["bounds"]) + 1,
                    "cumulative_counts: one per bound and +Inf")
        check_equal(int(stats["events_nacked"]), 2, "events_nacked")

    def grpc():
        stats = stack.event_service().GetStats(stack.stubs.service_pb2.GetStatsRequest(),
                                               timeout=TIMEOUT)
        subs = {s.name: s.stats for s in stats.subscription_stats}
        check_equal(subs[MAIN].nacked, 2, "GetStats nacked")
        check_equal(dict(subs[DLQ].dead_lettered_by_reason), DEAD_LETTERED[DLQ],
                    "GetStats dead_lettered_by_reason")
        check_equal(dict(stats.dead_lettered_by_reason), {REASON: 1, REJECTED: 1},
                    "GetStats: the instance's dead_lettered_by_reason")
        check_equal(stats.delivery_latency.count, 11, "GetStats delivery_latency.count")
        check_equal(stats.delivery_latency.cumulative_counts[-1], 11,
                    "GetStats delivery_latency +Inf")

    def eventctl():
        base = [env_path("TSE_EVENTCTL_BIN"), "--server", stack.target]
        out = subprocess.run(base + ["subscriptions", "get", MAIN], capture_output=True,
                             text=True, timeout=TIMEOUT)
        check_equal(out.returncode, 0, f"eventctl subscriptions get: {out.stderr}")
        for line in ("nacked", "oldest unacked age ms", "consumers", REASON):
            check(line in out.stdout, f"eventctl subscriptions get: no '{line}' in\n{out.stdout}")
        out = subprocess.run(base + ["stats"], capture_output=True, text=True, timeout=TIMEOUT)
        check_equal(out.returncode, 0, f"eventctl stats: {out.stderr}")
        for line in ("publish latency", "delivery latency", "count 11", "BACKLOG", "CONSUMERS"):
            check(line in out.stdout, f"eventctl stats: no '{line}' in\n{out.stdout}")

    checks.run("/api/v1/stats carries the new fields", rest)
    checks.run("GetStats carries the new fields", grpc)
    checks.run("eventctl shows the new fields", eventctl)


def body(stack, checks):
    run = Run()
    bridge, port = on_free_port(lambda p: start_bridge(stack, p))
    try:
        checks.run("scripted publish / pull / ack / nack / dead-letter run",
                   scripted_run, stack, run)
        check_metrics(stack, run, port, checks)
        check_stats_json(stack, run, port, checks)
    finally:
        rc = bridge.stop()
        checks.record("bridge exits 0 on SIGTERM", rc == 0, f"exit status {rc}")


if __name__ == "__main__":
    sys.exit(main("interop", "metrics", body))
