#!/usr/bin/env bash
# bench/run_trace.sh - what W3C trace context costs publishing (issue 15.4),
# back to back on one machine: PublishStream and unary Publish
# (bench_publish through the SDK) against the service built before the
# change (BEFORE_DIR), the service after it with events that carry no trace
# context, and the same with a `traceparent` on every call (every event
# stored with it), each with its own fresh redis-server. The three run one
# after the other and the set repeats ROUNDS times, so a machine shared
# with other work weighs on all three alike; the medians are printed.
#
#   bench/run_trace.sh BEFORE_DIR [AFTER_DIR] [SECONDS] [ROUNDS]
#                      defaults: AFTER_DIR build, 5 s, 3 rounds
#
# BEFORE_DIR and AFTER_DIR are build directories holding tracseq-events;
# bench_publish comes from AFTER_DIR (the client is the same for all
# three). Prints `uptime` before each round, the RESULT lines with the
# service's CPU time per event (/proc/<pid>/stat), and per mode the
# medians of both, each against "before".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
before=${1:?usage: bench/run_trace.sh BEFORE_DIR [AFTER_DIR] [SECONDS] [ROUNDS]}
after=${2:-$here/../build}
secs=${3:-5}
rounds=${4:-3}
# shellcheck source=lib.sh
source "$here/lib.sh"
SCRATCH=$(mktemp -d)
SERVICE_PID=
REDIS_PID=
trap cleanup EXIT
TRACEPARENT=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01

# One run: $1 label, $2 the build directory of the service.
run() {
  local label=$1 dir=$2
  REDIS_PORT=$(free_port)
  rm -rf "$SCRATCH/redis-$label"
  mkdir -p "$SCRATCH/redis-$label"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$SCRATCH/redis-$label" >/dev/null 2>&1 &
  REDIS_PID=$!
  wait_port "$REDIS_PORT"
  local port
  port=$(free_port)
  TRACSEQ_EVENTS_CONFIG='' "$dir/tracseq-events" --listen="127.0.0.1:$port" \
    --redis-url="redis://127.0.0.1:$REDIS_PORT" --log-level=warn 2>"$SCRATCH/svc-$label.log" &
  SERVICE_PID=$!
  wait_port "$port"
  local extra=()
  [[ $label == trace ]] && extra=(--traceparent "$TRACEPARENT")
  local t0 line ok ticks hz
  hz=$(getconf CLK_TCK)
  for mode in stream unary; do
    t0=$(cpu_ticks "$SERVICE_PID")
    line=$("$after/bench/bench_publish" --target "127.0.0.1:$port" --mode $mode \
      --duration "$secs" "${extra[@]}" --label "$label")
    ticks=$(($(cpu_ticks "$SERVICE_PID") - t0))
    ok=$(sed -n 's/.* total_ok=\([0-9]*\).*/\1/p' <<<"$line")
    echo "$line" | tee -a "$SCRATCH/results"
    echo "CPU mode=$mode label=$label service_us_per_event=$(
      awk -v t="$ticks" -v n="$ok" -v hz="$hz" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }')" |
      tee -a "$SCRATCH/results"
  done
  # The trace run must have stored its context: its last entry, checked.
  if [[ $label == trace ]]; then
    local key
    key=$(redis-cli -p "$REDIS_PORT" --raw --scan --pattern 'tracseq:events:*:p*' | head -1)
    if ! redis-cli -p "$REDIS_PORT" --raw XREVRANGE "$key" + - COUNT 1 | grep -aq "$TRACEPARENT"; then
      echo "run_trace.sh: the trace run stored no traceparent in $key" >&2
      exit 1
    fi
  fi
  stop_service
  kill -TERM "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

for round in $(seq "$rounds"); do
  echo "round $round, uptime: $(uptime)"
  run before "$before"
  run after "$after"
  run trace "$after"
done

python3 - "$SCRATCH/results" <<'EOF'
import re, statistics, sys
rates, cpu = {}, {}
for line in open(sys.argv[1]):
    m = re.search(r"RESULT mode=(\w+) label=(\w+) .*? errors=(\d+) .*?rate=([\d.]+)", line)
    if m is not None:
        if m.group(3) != "0":
            print(f"warning: errors in {m.group(2)} {m.group(1)}", file=sys.stderr)
        rates.setdefault((m.group(1), m.group(2)), []).append(float(m.group(4)))
    m = re.search(r"CPU mode=(\w+) label=(\w+) service_us_per_event=([\d.]+)", line)
    if m is not None:
        cpu.setdefault((m.group(1), m.group(2)), []).append(float(m.group(3)))
for mode in ("stream", "unary"):
    base = statistics.median(rates.get((mode, "before"), [0])) or 1
    cbase = statistics.median(cpu.get((mode, "before"), [0])) or 1
    parts = []
    for tag in ("before", "after", "trace"):
        r, c = rates.get((mode, tag), []), cpu.get((mode, tag), [])
        if not r:
            continue
        med, cmed = statistics.median(r), statistics.median(c)
        runs = ", ".join(f"{x:,.0f}" for x in r)
        vs = "" if tag == "before" else \
            f", {100 * (med / base - 1):+.1f} % rate, {100 * (cmed / cbase - 1):+.1f} % CPU"
        parts.append(f"{tag} median {med:,.0f}/s ({runs}), {cmed:.2f} us CPU/event{vs}")
    print(f"SUMMARY {mode}: " + "; ".join(parts))
EOF
