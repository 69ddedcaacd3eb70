#!/usr/bin/env bash
# bench/slowloris.sh - /health latency of the REST bridge while CONNS slow
# clients hold connections (docs/benchmarks.md, "REST bridge under slow
# clients").
#
#   ./bench/slowloris.sh [BUILD_DIR]      (default build)
#   CONNS=200 LINE_MS=300 SECONDS_=30 PROBE_MS=50 ./bench/slowloris.sh
#
# Starts its own redis-server (loopback, free port, no persistence), the
# service and the bridge with their default limits, then runs
# bench_slowloris. Prints numbers; asserts nothing.
set -euo pipefail

BUILD=${1:-build}
CONNS=${CONNS:-200}
LINE_MS=${LINE_MS:-300}
SECONDS_=${SECONDS_:-30}
PROBE_MS=${PROBE_MS:-50}
SERVICE=$BUILD/tracseq-events
BRIDGE=$BUILD/rest-bridge/tracseq-rest-bridge
BENCH=$BUILD/bench/bench_slowloris

for bin in "$SERVICE" "$BRIDGE" "$BENCH"; do
    [[ -x $bin ]] || { echo "slowloris.sh: no $bin (build first)" >&2; exit 2; }
done

SCRATCH=$(mktemp -d /tmp/tse-slowloris.XXXXXX)
REDIS_PID=
SERVICE_PID=
BRIDGE_PID=
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
stop_all() {
    [[ -n $BRIDGE_PID ]] && { kill -TERM "$BRIDGE_PID" 2>/dev/null || true; wait "$BRIDGE_PID" 2>/dev/null || true; }
    cleanup
}
trap stop_all EXIT

REDIS_PORT=$(free_port)
GRPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --save '' --appendonly no \
    --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_port "$REDIS_PORT"
TRACSEQ_EVENTS_CONFIG= LOG_LEVEL=warn "$SERVICE" --listen="127.0.0.1:$GRPC_PORT" \
    --redis-url="redis://127.0.0.1:$REDIS_PORT" 2>"$SCRATCH/service.log" &
SERVICE_PID=$!
wait_port "$GRPC_PORT"
TRACSEQ_BRIDGE_CONFIG= LOG_LEVEL=warn "$BRIDGE" --host=127.0.0.1 --port="$HTTP_PORT" \
    --event-service-addr="127.0.0.1:$GRPC_PORT" >"$SCRATCH/bridge.log" 2>&1 &
BRIDGE_PID=$!
wait_port "$HTTP_PORT"

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
echo "command: $BENCH --port=$HTTP_PORT --conns=$CONNS --line-ms=$LINE_MS --seconds=$SECONDS_ --probe-ms=$PROBE_MS"
ulimit -n 4096 2>/dev/null || true
"$BENCH" --port="$HTTP_PORT" --conns="$CONNS" --line-ms="$LINE_MS" --seconds="$SECONDS_" \
    --probe-ms="$PROBE_MS"
echo "bridge RSS: $(rss_kb "$BRIDGE_PID") kB; load after: $(uptime | sed 's/.*load average/load average/')"
