#!/usr/bin/env bash
# bench_rest.sh - REST publish throughput: its own redis-server (AOF
# everysec, no automatic rewrite), event service and REST bridge on free loopback ports, then wrk
# POSTing a ~300-byte event to /api/v1/events/publish. Prints the figures.
#
#   bench/bench_rest.sh [build-dir]        (default: build; use a Release build)
#
# Then the same with POST /api/v1/events/batch, BATCH (100) events per body
# at BATCH_CONNS (16) connections (issue 14): events/s is counted both from
# wrk's answered requests and from the entries Redis gained.
#
# Environment: DURATION (10s), CONNS (64), THREADS (2, wrk's), BIG_CONNS
# (1000; 0 skips the many-connections run), HTTP_THREADS / GRPC_CHANNELS
# (the bridge's; empty: its defaults), KEEP=1 keeps the logs in $WORK.
# Everything runs with LOG_LEVEL=warn. The machine's load average is
# printed first: on a shared box the figures move with it. Each run also
# prints the CPU time (/proc) the bridge and the service used per request
# (per stored event for batches), which moves much less than the rates.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BIG_CONNS=${BIG_CONNS:-1000}
SERVICE=$BUILD/tracseq-events
BRIDGE=$BUILD/rest-bridge/tracseq-rest-bridge

for bin in "$SERVICE" "$BRIDGE"; do
    [[ -x $bin ]] || { echo "missing $bin: build the Release tree first" >&2; exit 2; }
done
for tool in wrk redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/tse-bench-rest.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# CPU time (user + system, clock ticks) a process has used so far: the
# bridge's and the service's CPU per request are printed beside each rate,
# steadier than the rate on a shared machine.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# "bridge X us, service Y us" of CPU per unit between two tick readings.
cpu_per() { # bridge0 bridge1 service0 service1 units
    python3 -c "import os; t = 1e6 / os.sysconf('SC_CLK_TCK') / max($5, 1);
print(f'CPU per unit: bridge {($2 - $1) * t:.1f} us, service {($4 - $3) * t:.1f} us')"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port what
    for _ in $(seq 1 300); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    echo "$2 did not start; see $WORK" >&2
    exit 1
}

REDIS_PORT=$(free_port)
GRPC_PORT=$(free_port)
HTTP_PORT=$(free_port)

# No automatic AOF rewrite during the runs: it forks and copies the dataset
# (Redis maintenance that bench/run.sh counts), which would land on these
# two cores in the middle of one run and not another.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save '' \
    --appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0 \
    --logfile "$WORK/redis.log" &
PIDS+=($!)
wait_port "$REDIS_PORT" redis-server

LOG_LEVEL=warn "$SERVICE" --listen="127.0.0.1:$GRPC_PORT" \
    --redis-url="redis://127.0.0.1:$REDIS_PORT" 2>"$WORK/service.log" &
PIDS+=($!)
SERVICE_PID=$!
wait_port "$GRPC_PORT" tracseq-events

bridge_args=(--host=127.0.0.1 --port="$HTTP_PORT" --event-service-addr="127.0.0.1:$GRPC_PORT")
[[ -n ${HTTP_THREADS:-} ]] && bridge_args+=(--http-threads="$HTTP_THREADS")
[[ -n ${GRPC_CHANNELS:-} ]] && bridge_args+=(--grpc-channels="$GRPC_CHANNELS")
LOG_LEVEL=warn "$BRIDGE" "${bridge_args[@]}" >"$WORK/bridge.log" 2>&1 &
PIDS+=($!)
BRIDGE_PID=$!
wait_port "$HTTP_PORT" tracseq-rest-bridge

# A catalog event of about 300 bytes.
BODY='{"event_type":"sample.created","source_service":"bench-client-service","priority":3,"payload":{"sample_id":"123e4567-e89b-42d3-a456-426614174000","barcode":"SAM-20240618-001","sample_type":"DNA","submitter_id":"223e4567-e89b-42d3-a456-426614174001","lab_id":"323e4567-e89b-42d3-a456-426614174002"}}'
printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' \
    "$BODY" >"$WORK/publish.lua"

URL="http://127.0.0.1:$HTTP_PORT/api/v1/events/publish"
code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "$BODY" "$URL" || true)
echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
echo "body: ${#BODY} bytes; first publish: HTTP $code $(cat "$WORK/first.json")"

run() { # connections
    local out b0 s0 n
    b0=$(ticks "$BRIDGE_PID") s0=$(ticks "$SERVICE_PID")
    out=$(ulimit -n 20000 2>/dev/null; wrk -t"$THREADS" -c"$1" -d"$DURATION" --latency \
        -s "$WORK/publish.lua" "$URL")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "-c$1 $(cpu_per "$b0" "$(ticks "$BRIDGE_PID")" "$s0" "$(ticks "$SERVICE_PID")" "$n") per request"
    echo "$out" >"$WORK/wrk-$1.txt"
    local rps p50 p99 non2xx errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    errors=$(awk '/Socket errors/ {print $0}' <<<"$out")
    echo "wrk -t$THREADS -c$1 -d$DURATION: ${rps} req/s, p50 ${p50}, p99 ${p99}," \
        "non-2xx ${non2xx:-0}, socket errors: ${errors:-none}"
}

echo "command: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s publish.lua $URL"
run "$CONNS"
cpu=$(ps -o %cpu= -p "$BRIDGE_PID" | tr -d ' ')
echo "bridge CPU (average since start): ${cpu}%"
if [[ $BIG_CONNS -gt 0 ]]; then
    run "$BIG_CONNS"
fi
STREAM_KEY=tracseq:events:{sample.created}:p3
echo "events in Redis: $(redis-cli -p "$REDIS_PORT" XLEN "$STREAM_KEY")"

BATCH=${BATCH:-100}
BATCH_CONNS=${BATCH_CONNS:-16}
if [[ $BATCH -gt 0 ]]; then
    BATCH_BODY='{"events":['$(for ((i = 0; i < BATCH; i++)); do
        ((i > 0)) && printf ','
        printf '%s' "$BODY"
    done)']}'
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[%s]]\n' \
        "$BATCH_BODY" >"$WORK/batch.lua"
    BURL="http://127.0.0.1:$HTTP_PORT/api/v1/events/batch"
    first=$(curl -s -H 'Content-Type: application/json' --data-binary "$BATCH_BODY" "$BURL" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; print(len(r), "results,", sum(1 for x in r if x.get("error")), "errors")')
    echo "batch body: ${#BATCH_BODY} bytes, $BATCH events; first batch: $first"
    before=$(redis-cli -p "$REDIS_PORT" XLEN "$STREAM_KEY")
    b0=$(ticks "$BRIDGE_PID") s0=$(ticks "$SERVICE_PID")
    t0=$(date +%s.%N)
    out=$(wrk -t"$THREADS" -c"$BATCH_CONNS" -d"$DURATION" --latency -s "$WORK/batch.lua" "$BURL")
    t1=$(date +%s.%N)
    after=$(redis-cli -p "$REDIS_PORT" XLEN "$STREAM_KEY")
    echo "batch $(cpu_per "$b0" "$(ticks "$BRIDGE_PID")" "$s0" "$(ticks "$SERVICE_PID")" \
        "$((after - before))") per stored event"
    echo "$out" >"$WORK/wrk-batch.txt"
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    echo "command: wrk -t$THREADS -c$BATCH_CONNS -d$DURATION --latency -s batch.lua $BURL"
    echo "batch: ${rps} req/s = $(python3 -c "print(round($rps * $BATCH))") events/s answered;" \
        "Redis gained $((after - before)) entries in $(python3 -c "print(round($t1 - $t0, 2))") s" \
        "= $(python3 -c "print(round(($after - $before) / ($t1 - $t0)))") events/s;" \
        "p50 $(awk '$1 == "50%" {print $2}' <<<"$out"), p99 $(awk '$1 == "99%" {print $2}' <<<"$out")," \
        "non-2xx $(awk '/Non-2xx/ {print $NF}' <<<"$out" | grep . || echo 0)"
fi
echo "load after: $(uptime | sed 's/.*load average/load average/')"
