#!/usr/bin/env bash
# bench/run_tls.sh - what security costs, in the same run: PublishStream
# and unary Publish (bench_publish through the SDK) against one service on
# a plaintext port, the same with a client that sends a bearer token the
# service does not check (header: what carrying the token costs gRPC), one
# with a tokens file (every call's token checked: auth), and one on a TLS
# port (throwaway openssl CA, EC P-256), each with its own fresh
# redis-server. The four run back to back and the whole set is repeated
# ROUNDS times, so that a machine shared with other work weighs on all
# four alike; the medians are printed at the end.
#
#   bench/run_tls.sh [BUILD_DIR] [SECONDS] [ROUNDS]    defaults: build, 5, 3
#
# Prints `uptime` before each round, the RESULT lines of each run with the
# service's CPU time per event (/proc/<pid>/stat), and per mode the medians
# of both for each configuration, each as a cost against plaintext. On a
# machine shared with other work the rates swing with the load; the CPU
# per event less.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
secs=${2:-5}
rounds=${3:-3}
# shellcheck source=lib.sh
source "$here/lib.sh"
SCRATCH=$(mktemp -d)
SERVICE_PID=
REDIS_PID=
trap cleanup EXIT

ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
(cd "$SCRATCH" &&
  openssl req -x509 $ec -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.pem &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >s.ext &&
  openssl req $ec -subj /CN=localhost -keyout s.key -out s.csr &&
  openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile s.ext \
    -out s.pem) >/dev/null 2>&1
# The identity bench_publish publishes as, without a rate.
TOKEN="tse_bench-$(openssl rand -hex 16)"
printf 'bench-publish sha256=%s publish=*\n' \
  "$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)" >"$SCRATCH/tokens"

# One run: $1 label, then the service's extra flags. Results go to stdout
# and to $SCRATCH/results.
run() {
  local label=$1
  shift
  REDIS_PORT=$(free_port)
  rm -rf "$SCRATCH/redis-$label"
  mkdir -p "$SCRATCH/redis-$label"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$SCRATCH/redis-$label" >/dev/null 2>&1 &
  REDIS_PID=$!
  wait_port "$REDIS_PORT"
  local port
  port=$(free_port)
  TRACSEQ_EVENTS_CONFIG='' "$build/tracseq-events" --listen="127.0.0.1:$port" \
    --redis-url="redis://127.0.0.1:$REDIS_PORT" --log-level=warn "$@" 2>"$SCRATCH/svc-$label.log" &
  SERVICE_PID=$!
  wait_port "$port"
  local extra=()
  [[ $label == tls ]] && extra=(--tls-ca "$SCRATCH/ca.pem")
  [[ $label == auth || $label == header ]] && extra=(--token "$TOKEN")
  local t0 line ok ticks hz
  hz=$(getconf CLK_TCK)
  for mode in stream unary; do
    t0=$(cpu_ticks "$SERVICE_PID")
    line=$("$build/bench/bench_publish" --target "127.0.0.1:$port" --mode $mode \
      --duration "$secs" "${extra[@]}" --label "$label")
    ticks=$(($(cpu_ticks "$SERVICE_PID") - t0))
    ok=$(sed -n 's/.* total_ok=\([0-9]*\).*/\1/p' <<<"$line")
    echo "$line" | tee -a "$SCRATCH/results"
    # The service's CPU per event (warm-up included on both sides): what a
    # busy shared machine disturbs least.
    echo "CPU mode=$mode label=$label service_us_per_event=$(
      awk -v t="$ticks" -v n="$ok" -v hz="$hz" 'BEGIN { printf "%.2f", n ? t * 1e6 / hz / n : 0 }')" |
      tee -a "$SCRATCH/results"
  done
  stop_service
  kill -TERM "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

for round in $(seq "$rounds"); do
  echo "round $round, uptime: $(uptime)"
  run plaintext
  run header
  run auth --auth-tokens-file="$SCRATCH/tokens"
  run tls --tls-cert="$SCRATCH/s.pem" --tls-key="$SCRATCH/s.key"
done

# Medians per mode and label; cost = 1 - median / plaintext median.
python3 - "$SCRATCH/results" <<'EOF'
import re, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    m = re.search(r"RESULT mode=(\w+) label=(\w+) .*? errors=(\d+) .*?rate=([\d.]+)", line)
    if m is None:
        continue
    if m.group(3) != "0":
        print(f"warning: errors in {m.group(2)} {m.group(1)}", file=sys.stderr)
    rates.setdefault((m.group(1), m.group(2)), []).append(float(m.group(4)))
cpu = {}
for line in open(sys.argv[1]):
    m = re.search(r"CPU mode=(\w+) label=(\w+) service_us_per_event=([\d.]+)", line)
    if m is not None:
        cpu.setdefault((m.group(1), m.group(2)), []).append(float(m.group(3)))
for mode in ("stream", "unary"):
    base = statistics.median(cpu.get((mode, "plaintext"), [0])) or 1
    parts = []
    for tag in ("plaintext", "header", "auth", "tls"):
        r = cpu.get((mode, tag), [])
        if not r:
            continue
        med = statistics.median(r)
        runs = ", ".join(f"{x:.2f}" for x in r)
        more = "" if tag == "plaintext" else f", {100 * (med / base - 1):+.1f} %"
        parts.append(f"{tag} median {med:.2f} us ({runs}{more})")
    print(f"SUMMARY {mode} service CPU per event: " + "; ".join(parts))
for mode in ("stream", "unary"):
    base = statistics.median(rates.get((mode, "plaintext"), [0])) or 1
    parts = []
    for tag in ("plaintext", "header", "auth", "tls"):
        r = rates.get((mode, tag), [])
        if not r:
            continue
        med = statistics.median(r)
        runs = ", ".join(f"{x:,.0f}" for x in r)
        cost = "" if tag == "plaintext" else f", costs {100 * (1 - med / base):+.1f} %"
        parts.append(f"{tag} median {med:,.0f}/s ({runs}{cost})")
    print(f"SUMMARY {mode}: " + "; ".join(parts))
EOF
