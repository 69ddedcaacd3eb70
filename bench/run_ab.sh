#!/usr/bin/env bash
# bench/run_ab.sh - before/after: two builds of tracseq-events measured back
# to back, the same load generators against each, so that a change's cost
# shows beside the noise of a shared machine. Per round and per build: a
# fresh redis-server (no persistence) and service, then
#
#   stream   bench_publish --mode stream (PublishStream, 4 streams, window
#            1024) for SECONDS, with the service's CPU time per event
#   drain    bench_subscribe --mode drain: a backlog of COUNT events
#            published over PublishStream, then one subscriber (max_in_flight
#            1000) drains it: both rates (every delivery goes through the
#            delivery path's accounting), and the service's CPU time per
#            event over the whole of it and over the drain alone
#
# The two builds alternate within each round (A B, then B A in the next, so
# neither always runs first) and the whole set is repeated ROUNDS times; the
# medians and the change against BEFORE are printed at the end. Exits
# non-zero when any run had errors: a run with errors is not a result.
#
#   bench/run_ab.sh BEFORE_BUILD AFTER_BUILD [SECONDS] [ROUNDS]   defaults 5, 5
#
# Each *_BUILD holds a tracseq-events; the load generators come from
# AFTER_BUILD/bench (BENCH_BUILD overrides), the same binaries for both.
# COUNT [200000] sets the drain backlog; PER_MESSAGE [0] > 0 drains with
# batched delivery (up to that many deliveries per stream message).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
before=${1:?usage: run_ab.sh BEFORE_BUILD AFTER_BUILD [SECONDS] [ROUNDS]}
after=${2:?usage: run_ab.sh BEFORE_BUILD AFTER_BUILD [SECONDS] [ROUNDS]}
secs=${3:-5}
rounds=${4:-5}
count=${COUNT:-200000}
per_message=${PER_MESSAGE:-0}
bench=${BENCH_BUILD:-$after}/bench
# shellcheck source=lib.sh
source "$here/lib.sh"
SCRATCH=$(mktemp -d)
SERVICE_PID=
REDIS_PID=
trap cleanup EXIT
FAILED=0

# One run of both benchmarks: $1 label (before|after), $2 its build.
run() {
  local label=$1 build=$2 port t0 ticks ok line hz
  REDIS_PORT=$(free_port)
  rm -rf "$SCRATCH/redis"
  mkdir -p "$SCRATCH/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$SCRATCH/redis" >/dev/null 2>&1 &
  REDIS_PID=$!
  wait_port "$REDIS_PORT"
  port=$(free_port)
  TRACSEQ_EVENTS_CONFIG='' "$build/tracseq-events" --listen="127.0.0.1:$port" \
    --redis-url="redis://127.0.0.1:$REDIS_PORT" --log-level=warn 2>"$SCRATCH/svc-$label.log" &
  SERVICE_PID=$!
  wait_port "$port"
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "$SERVICE_PID")
  line=$("$bench/bench_publish" --target "127.0.0.1:$port" --mode stream --duration "$secs" \
    --label "$label") || FAILED=1
  ticks=$(($(cpu_ticks "$SERVICE_PID") - t0))
  ok=$(sed -n 's/.* total_ok=\([0-9]*\).*/\1/p' <<<"$line")
  echo "$line" | tee -a "$SCRATCH/results"
  echo "CPU label=$label service_us_per_event=$(
    awk -v t="$ticks" -v n="$ok" -v hz="$hz" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }')" |
    tee -a "$SCRATCH/results"
  t0=$(cpu_ticks "$SERVICE_PID")
  line=$("$bench/bench_subscribe" --target "127.0.0.1:$port" --mode drain --count "$count" \
    --max-in-flight 1000 --per-message "$per_message" --name "ab-$label" --event-type "bench.ab" \
    --label "$label" --pid "$SERVICE_PID" \
    2>"$SCRATCH/drain.err") || FAILED=1
  ticks=$(($(cpu_ticks "$SERVICE_PID") - t0))
  echo "$line" | tee -a "$SCRATCH/results"
  # Per event published and delivered (the backlog's publish included).
  echo "DRAINCPU label=$label service_us_per_event=$(
    awk -v t="$ticks" -v n="$count" -v hz="$hz" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')" |
    tee -a "$SCRATCH/results"
  stop_service
  kill -TERM "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

for round in $(seq "$rounds"); do
  echo "round $round, uptime: $(uptime)"
  if ((round % 2)); then
    run before "$before"
    run after "$after"
  else
    run after "$after"
    run before "$before"
  fi
done

python3 - "$SCRATCH/results" <<'EOF'
import re, statistics, sys
series = {}
def add(key, value):
    series.setdefault(key, []).append(value)
for line in open(sys.argv[1]):
    m = re.search(r"RESULT mode=stream label=(\w+) .*? errors=(\d+) .*?rate=([\d.]+)", line)
    if m:
        add(("stream events/s", m.group(1)), float(m.group(3)))
        if m.group(2) != "0":
            print(f"warning: errors in stream {m.group(1)}", file=sys.stderr)
    m = re.search(r"^CPU label=(\w+) service_us_per_event=([\d.]+)", line)
    if m:
        add(("stream service CPU us/event", m.group(1)), float(m.group(2)))
    m = re.search(r"DRAINCPU label=(\w+) service_us_per_event=([\d.]+)", line)
    if m:
        add(("drain service CPU us/event (publish + delivery)", m.group(1)), float(m.group(2)))
    m = re.search(r"RESULT mode=drain label=(\w+) .*? rate=([\d.]+) .*? publish_rate=([\d.]+)", line)
    if m:
        add(("drain deliveries/s", m.group(1)), float(m.group(2)))
        add(("drain backlog publish events/s", m.group(1)), float(m.group(3)))
    m = re.search(r"RESULT mode=drain label=(\w+) .*? deliver_cpu_us=([\d.]+)", line)
    if m:
        add(("drain service CPU us/event (delivery alone)", m.group(1)), float(m.group(2)))
for what in ("stream events/s", "stream service CPU us/event", "drain backlog publish events/s",
             "drain deliveries/s", "drain service CPU us/event (publish + delivery)",
             "drain service CPU us/event (delivery alone)"):
    b, a = series.get((what, "before"), []), series.get((what, "after"), [])
    if not b or not a:
        continue
    mb, ma = statistics.median(b), statistics.median(a)
    fmt = (lambda x: f"{x:,.0f}") if "/s" in what and "us" not in what else (lambda x: f"{x:.2f}")
    print(f"SUMMARY {what}: before median {fmt(mb)} ({', '.join(fmt(x) for x in b)}); "
          f"after median {fmt(ma)} ({', '.join(fmt(x) for x in a)}); "
          f"change {100 * (ma / mb - 1):+.1f} %")
EOF
exit "$FAILED"
