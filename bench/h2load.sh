#!/usr/bin/env bash
# h2load.sh - the gRPC publish figures measured by a load generator we did
# not write (issue 14): nghttp2's h2load, next to redis-benchmark's XADD in
# the same run.
#
#   bench/h2load.sh [BUILD_DIR]        (default: build)
#
# Starts its own redis-server (loopback, free port, scratch dir, AOF on with
# appendfsync everysec) and the event service, then:
#
#   redis-benchmark  XADD of the same payload, -P 32 (the ceiling)
#   unary            Publish, one event per call, CONCURRENCY calls in flight
#   latency          Publish at RATE calls/s offered (h2load --rps per client)
#   stream           PublishStream: one HTTP/2 stream carries FRAMES events,
#                    one gRPC message each (a client-streaming call)
#   batch-stream     PublishBatchStream: FRAMES messages of BATCH events each
#
# then, when the build has it, bench/bench_publish in unary and latency mode
# against the same service and Redis (our generator, for comparison).
#
# A gRPC request is a file holding, per message, the 5-byte frame header and
# the serialized message (protoc --encode), sent with `content-type:
# application/grpc` and `te: trailers`. h2load counts HTTP/2 streams; it
# cannot read gRPC statuses (an error is HTTP 200 with grpc-status in the
# trailers), so every run is verified by counting the entries Redis holds:
# the figure printed is entries stored / wall time, and a run whose count
# differs from what was sent fails the script. Events carry no id (the
# service assigns one), so no dedup collapses them.
#
# Each run sends a fixed number of calls (h2load -n), not a duration: a call
# cut off at a deadline may have stored part of its events, and the count in
# Redis would no longer say what succeeded.
#
# Environment knobs: CALLS [100000] unary calls, CONCURRENCY [32], RATE
# [5000] calls/s in the latency run (LATENCY_CALLS [50000]), FRAMES [1000]
# messages per streaming call, STREAMS_N [100] streaming calls, BATCH [100]
# events per batch message (BATCH_FRAMES [100] per call), PAYLOAD [300]
# bytes of event, CLIENTS [4] h2load connections.
set -euo pipefail

BUILD=${1:-build}
CALLS=${CALLS:-100000}
LATENCY_CALLS=${LATENCY_CALLS:-50000}
STREAMS_N=${STREAMS_N:-100}
BATCH_FRAMES=${BATCH_FRAMES:-100}
CONCURRENCY=${CONCURRENCY:-32}
RATE=${RATE:-5000}
FRAMES=${FRAMES:-1000}
BATCH=${BATCH:-100}
PAYLOAD=${PAYLOAD:-300}
CLIENTS=${CLIENTS:-4}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SERVICE=$BUILD/tracseq-events
TYPE=bench.h2load
STREAM=tracseq:events:{$TYPE}:p3
CLK_TCK=$(getconf CLK_TCK)
TIMEFORMAT='%U %S'

die() {
    echo "h2load.sh: $*" >&2
    exit 2
}

for tool in h2load protoc redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install nghttp2-client; make deps)"
done
if [[ ! -x $SERVICE ]]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" --target tracseq-events -j2 >/dev/null
fi

SCRATCH=$(mktemp -d /tmp/tse-h2load.XXXXXX)
REDIS_PID=
SERVICE_PID=
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --appendonly yes \
    --appendfsync everysec --save '' --auto-aof-rewrite-percentage 0 --daemonize no \
    --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_port "$REDIS_PORT" || die "redis-server did not start"
GRPC_PORT=$(free_port)
"$SERVICE" --listen "127.0.0.1:$GRPC_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --log-level warn >"$SCRATCH/service.log" 2>&1 &
SERVICE_PID=$!
wait_port "$GRPC_PORT" || die "the service did not start: $(tail -5 "$SCRATCH/service.log")"
URL=http://127.0.0.1:$GRPC_PORT/tracseq.events.v1.EventService

# One event as protobuf text: a generic payload padded to about PAYLOAD
# bytes serialized (the envelope's own fields take 44).
PAD=$(python3 -c "print('x' * max(1, $PAYLOAD - 44))")
EVENT="event_type: \"$TYPE\" source_service: \"h2load\" priority: 3
  data { fields { key: \"note\" value { string_value: \"$PAD\" } } }"

# Writes one gRPC message (frame header + message) to stdout.
frame() {
    local msg=$1 text=$2
    printf '%s' "$text" | protoc -I "$ROOT/proto" -I /usr/include \
        --encode="tracseq.events.v1.$msg" "$ROOT/proto/tracseq/events/v1/service.proto" \
        >"$SCRATCH/msg.bin"
    python3 -c "
import struct, sys
b = open('$SCRATCH/msg.bin', 'rb').read()
sys.stdout.buffer.write(b'\0' + struct.pack('>I', len(b)) + b)"
}

frame PublishRequest "event { $EVENT }" >"$SCRATCH/unary.bin"
for _ in $(seq "$FRAMES"); do cat "$SCRATCH/unary.bin"; done >"$SCRATCH/stream.bin"
BATCH_TEXT=$(for _ in $(seq "$BATCH"); do printf 'events { %s } ' "$EVENT"; done)
frame PublishBatchRequest "$BATCH_TEXT" >"$SCRATCH/batch1.bin"
for _ in $(seq "$BATCH_FRAMES"); do cat "$SCRATCH/batch1.bin"; done >"$SCRATCH/batch.bin"
EVENT_BYTES=$(($(stat -c %s "$SCRATCH/unary.bin") - 7))

H2=(-H 'content-type: application/grpc' -H 'te: trailers' -H 'grpc-accept-encoding: identity')

# Runs h2load (args), checks that Redis holds $1 more entries per stream
# answered, and prints the line of the summary.
run() {
    local name=$1 per=$2
    shift 2
    rcli DEL "$STREAM" >/dev/null
    local t0 t1 out done_ entries
    t0=$(date +%s.%N)
    rm -f "$SCRATCH/calls.log"
    local s0 r0 s1 r1 rc=0
    s0=$(cpu_ticks "$SERVICE_PID")
    r0=$(cpu_ticks "$REDIS_PID")
    { time h2load "${H2[@]}" --log-file="$SCRATCH/calls.log" "$@" >"$SCRATCH/h2.out" 2>&1 || rc=$?; } \
        2>"$SCRATCH/h2.time"
    t1=$(date +%s.%N)
    s1=$(cpu_ticks "$SERVICE_PID")
    r1=$(cpu_ticks "$REDIS_PID")
    out=$(cat "$SCRATCH/h2.out")
    ((rc == 0)) || die "$name: h2load failed: $out"
    done_=$(awk '/^requests:/ {print $8}' <<<"$out")
    entries=$(rcli XLEN "$STREAM")
    if ((entries != done_ * per)); then
        echo "$out" >&2
        die "$name: $done_ calls succeeded at HTTP level x $per events, but Redis holds $entries"
    fi
    local secs rate
    secs=$(awk '/^finished in/ {print $3}' <<<"$out" | tr -d ',')
    secs=$(python3 -c "
v = '$secs'
print(float(v[:-2]) / 1000 if v.endswith('ms') else float(v[:-1]))")
    rate=$(python3 -c "print(round($entries / $secs))")
    printf '%-14s %9s events/s  (%s events in %.2f s)  CPU of a core: service %s %%, Redis %s %%, h2load %s %%\n' \
        "$name" "$rate" "$entries" "$secs" \
        "$(python3 -c "print(round(100 * ($s1 - $s0) / $CLK_TCK / ($t1 - $t0)))")" \
        "$(python3 -c "print(round(100 * ($r1 - $r0) / $CLK_TCK / ($t1 - $t0)))")" \
        "$(python3 -c "u, s = open('$SCRATCH/h2.time').read().split(); print(round(100 * (float(u) + float(s)) / ($t1 - $t0)))")"
    ((per == 1)) || { LAST_RATE=$rate; return; }
    # Per call, from h2load's log: its start to the end of the response.
    python3 - "$SCRATCH/calls.log" <<'PY'
import sys
d = sorted(int(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
q = lambda p: d[min(len(d) - 1, int(p * len(d)))] / 1000.0
print("               per call: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
      % (q(0.5), q(0.9), q(0.99), d[-1] / 1000.0))
PY
    LAST_RATE=$rate
}

echo "h2load $(h2load --version | awk '{print $2}'), event $EVENT_BYTES bytes, load $(cut -d' ' -f1-3 /proc/loadavg)"

RB=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -P 32 -n 1000000 -q \
    XADD rb:bench '*' e "$(head -c "$EVENT_BYTES" /dev/zero | tr '\0' x)" | tr '\r' '\n' |
    grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
rcli DEL rb:bench >/dev/null
echo "redis-benchmark XADD -P 32: $RB requests/s"

PER=$((CONCURRENCY / CLIENTS))
run unary 1 -n "$CALLS" -c "$CLIENTS" -m "$PER" -d "$SCRATCH/unary.bin" "$URL/Publish"
run latency 1 -n "$LATENCY_CALLS" -c "$CLIENTS" -m "$PER" --rps $((RATE / CLIENTS)) \
    -d "$SCRATCH/unary.bin" "$URL/Publish"
run stream "$FRAMES" -n "$STREAMS_N" -c 1 -m 4 -d "$SCRATCH/stream.bin" "$URL/PublishStream"
STREAM_RATE=$LAST_RATE
run batch-stream $((BATCH_FRAMES * BATCH)) -n "$STREAMS_N" -c 1 -m 2 -d "$SCRATCH/batch.bin" \
    "$URL/PublishBatchStream"
# Our own generator against the same service and Redis, for comparison:
# it counts latency from when each call was due, h2load from when it sent it.
BENCH=$BUILD/bench/bench_publish
if [[ -x $BENCH ]]; then
    for mode in "unary --concurrency $CONCURRENCY" "latency --rate $RATE"; do
        s0=$(cpu_ticks "$SERVICE_PID")
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086
        line=$("$BENCH" --target "127.0.0.1:$GRPC_PORT" --connections "$CLIENTS" \
            --payload-bytes "$PAYLOAD" --duration 5 --mode $mode 2>/dev/null)
        t1=$(date +%s.%N)
        s1=$(cpu_ticks "$SERVICE_PID")
        echo "bench_publish $line service_cpu_pct=$(python3 -c "print(round(100 * ($s1 - $s0) / $CLK_TCK / ($t1 - $t0)))")"
    done
fi
python3 -c "
rb = float('$RB')
print('ratio to redis-benchmark: stream %.2f, batch-stream %.2f' % ($STREAM_RATE / rb, $LAST_RATE / rb))"
