#!/usr/bin/env bash
# bench/redis_cost.sh - what one load shape costs Redis per stored event,
# with the counters that say why: Redis's CPU time (its own and its AOF
# rewrite children's, /proc), the service's, Redis's read and write calls,
# input bytes, AOF rewrites and expired keys per event, and INFO
# commandstats per event (calls and microseconds of each command).
#
#   bench/redis_cost.sh BUILD SHAPE [COUNT]        COUNT default 400000
#
# Shapes: batch, batch-ids (bench_publish --mode stream --streams 4
# --window 1024 --batch 100, as run.sh's stream-batch and stream-batch-ids),
# stream-ids (the same without --batch: one event per message, each its own
# dedup script call, as run.sh's stream-ids),
# h2batch (h2load sending PublishBatchStream, 100 messages of 100 events per
# call, 2 calls in flight on one connection, as h2load.sh's batch-stream),
# rb-shaped (redis-benchmark -c 50 -P 32: XADD with the service's fields
# id, type and a 390-byte event), rb-event (XADD of the 390-byte event
# alone), rb-plain (one 300-byte field, the reference of issue 14).
#
# Each run gets a fresh redis-server (AOF on, appendfsync everysec) and
# service. Knobs: REWRITE [1] (0: --auto-aof-rewrite-percentage 0, as
# h2load.sh starts Redis), SERVICE_ARGS [] (e.g. "--dedup-window 1s"),
# BENCH_BUILD [BUILD] (where bench_publish comes from: one generator for
# two builds compared).
set -euo pipefail
BUILD=${1:?usage: redis_cost.sh BUILD SHAPE [COUNT]}
SHAPE=${2:?usage: redis_cost.sh BUILD SHAPE [COUNT]}
COUNT=${3:-400000}
REWRITE=${REWRITE:-1}
SERVICE_ARGS=${SERVICE_ARGS:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BENCH=${BENCH_BUILD:-$BUILD}/bench/bench_publish
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_start
hz=$(getconf CLK_TCK)
PAYLOAD=300

start_redis() {
    REDIS_PORT=$(free_port)
    mkdir -p "$SCRATCH/redis"
    # shellcheck disable=SC2046
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync everysec --dir "$SCRATCH/redis" \
        $([[ $REWRITE == 1 ]] || echo --auto-aof-rewrite-percentage 0) >/dev/null 2>&1 &
    REDIS_PID=$!
    wait_port "$REDIS_PORT"
}

start_service() {
    start_bench_service "$BUILD"
}

# h2load.sh's batch file: 100 PublishBatchRequests of 100 events each.
h2load_batch_file() {
    local pad event text
    pad=$(python3 -c "print('x' * ($PAYLOAD - 44))")
    event="event_type: \"bench.h2load\" source_service: \"h2load\" priority: 3
      data { fields { key: \"note\" value { string_value: \"$pad\" } } }"
    text=$(for _ in $(seq 100); do printf 'events { %s } ' "$event"; done)
    printf '%s' "$text" | protoc -I "$ROOT/proto" -I /usr/include \
        --encode=tracseq.events.v1.PublishBatchRequest "$ROOT/proto/tracseq/events/v1/service.proto" \
        >"$SCRATCH/msg.bin"
    python3 -c "
import struct, sys
b = open('$SCRATCH/msg.bin', 'rb').read()
sys.stdout.buffer.write((b'\0' + struct.pack('>I', len(b)) + b) * 100)" >"$SCRATCH/batch.bin"
}

rb() { # rb ARGS...: redis-benchmark as run.sh runs it, COUNT requests
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n "$COUNT" -c 50 -P 32 --csv "$@" >"$SCRATCH/out"
}

start_redis
[[ $SHAPE == rb-* ]] || start_service
[[ $SHAPE != h2batch ]] || h2load_batch_file
csw() { awk '/ctxt_switches/ {s += $2} END {print s}' "/proc/$REDIS_PID/status"; }
rcli config resetstat >/dev/null
s0=$( [[ -n $SERVICE_PID ]] && cpu_ticks "$SERVICE_PID" || echo 0)
r0=$(cpu_ticks "$REDIS_PID")
c0=$(csw)
t0=$(date +%s.%N)
case $SHAPE in
batch | batch-ids | stream-ids)
    # shellcheck disable=SC2046
    "$BENCH" --target "$TARGET" --mode stream --streams 4 --window 1024 \
        $([[ $SHAPE == stream-ids ]] || echo --batch 100) --count "$COUNT" --duration 600 \
        --payload-bytes "$PAYLOAD" $([[ $SHAPE == *-ids ]] && echo --ids) \
        >"$SCRATCH/out" 2>"$SCRATCH/err" || die_run=1
    ;;
h2batch)
    h2load -H 'content-type: application/grpc' -H 'te: trailers' -H 'grpc-accept-encoding: identity' \
        -n $((COUNT / 10000)) -c 1 -m 2 -d "$SCRATCH/batch.bin" \
        "http://$TARGET/tracseq.events.v1.EventService/PublishBatchStream" >"$SCRATCH/out" 2>&1
    ;;
rb-shaped)
    rb XADD benchstream '*' id 3d553515-8f46-4deb-8f38-a19f6dd4a823 type bench.event \
        event "$(head -c 390 /dev/zero | tr '\0' y)"
    ;;
rb-event) rb XADD benchstream '*' event "$(head -c 390 /dev/zero | tr '\0' y)" ;;
rb-plain) rb XADD benchstream '*' f "$(head -c "$PAYLOAD" /dev/zero | tr '\0' x)" ;;
*) echo "redis_cost.sh: unknown shape $SHAPE" >&2 && exit 2 ;;
esac
t1=$(date +%s.%N)
c1=$(csw)
r1=$(cpu_ticks "$REDIS_PID")
s1=$( [[ -n $SERVICE_PID ]] && cpu_ticks "$SERVICE_PID" || echo 0)
if [[ -n ${die_run:-} ]] || { [[ $SHAPE != rb-* && $SHAPE != h2batch ]] && ! grep -q ' errors=0 ' "$SCRATCH/out"; }; then
    echo "redis_cost.sh: $SHAPE had errors: $(cat "$SCRATCH/out" "$SCRATCH/err" | tail -3)" >&2
    exit 1
fi
# Events stored: every entry of every stream (the service's and benchstream).
n=$(rcli eval "local t = 0
for _, k in ipairs(redis.call('KEYS', '*')) do
  if redis.call('TYPE', k).ok == 'stream' then t = t + redis.call('XLEN', k) end
end
return t" 0)
info=$(rcli info all | tr -d '\r')
get() { awk -F: -v k="$1" '$1 == k {print $2}' <<<"$info"; }
awk -v sh="$SHAPE" -v n="$n" -v r=$((r1 - r0)) -v s=$((s1 - s0)) -v hz="$hz" -v w="$(echo "$t1 - $t0" | bc)" \
    -v rd="$(get total_reads_processed)" -v wr="$(get total_writes_processed)" \
    -v ib="$(get total_net_input_bytes)" -v aof="$(get aof_rewrites)" -v ex="$(get expired_keys)" \
    -v cs=$((c1 - c0)) -v rw="$REWRITE" -v ld="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "COST shape=%s rewrite=%s events=%d rate=%.0f redis_us=%.2f service_us=%.2f reads_per_event=%.4f writes_per_event=%.4f input_bytes_per_event=%.0f aof_rewrites=%d expired_per_event=%.3f ctx_switches_per_event=%.4f load=%s\n",
             sh, rw, n, n / w, r * 1e6 / hz / n, s * 1e6 / hz / n, rd / n, wr / n, ib / n, aof, ex / n, cs / n, ld }'
grep '^cmdstat_' <<<"$info" | grep -v '^cmdstat_\(config\|info\|keys\|type\|xlen\|eval\)[:|]' |
    sed 's/^cmdstat_//; s/,rejected_calls.*//' |
    awk -F'[:=,]' -v n="$n" '{printf "  %-10s calls_per_event=%.5f usec_per_event=%.3f\n", $1, $3 / n, $5 / n}'
