#!/usr/bin/env bash
# bench/run_tls.sh - TLS against plaintext in the same run: PublishStream
# and unary Publish (bench_publish through the SDK) against one service
# on a plaintext port and one on a TLS port (throwaway openssl CA, EC
# P-256), each with its own fresh redis-server.
#
#   bench/run_tls.sh [BUILD_DIR] [SECONDS]    defaults: build, 5
#
# Prints the RESULT lines of each run and the TLS/plaintext ratio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
secs=${2:-5}
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

# One run: $1 label, then the service's extra flags; bench flags in BENCH.
run() {
  local label=$1
  shift
  REDIS_PORT=$(free_port)
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
  local tls=()
  [[ $label == tls* ]] && tls=(--tls-ca "$SCRATCH/ca.pem")
  for mode in stream unary; do
    "$build/bench/bench_publish" --target "127.0.0.1:$port" --mode $mode --duration "$secs" \
      "${tls[@]}" --label "$label"
  done
  stop_service
  kill -TERM "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}

echo "uptime: $(uptime)"
run plaintext
run tls --tls-cert="$SCRATCH/s.pem" --tls-key="$SCRATCH/s.key"
