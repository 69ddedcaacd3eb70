#!/usr/bin/env bash
# bench/rss_probe.sh - which load leaves memory resident in the idle service:
# run.sh's load shapes one at a time against one service, and after each
# (plus IDLE_WAIT seconds idle, one malloc_trim period of the service) its
# VmRSS and /proc/PID/smaps_rollup split (anonymous against file-backed).
# A narrower, faster probe than run.sh for the "idle RSS < 20 MB" target of
# issue 14; it prints numbers and asserts nothing.
#
#   bench/rss_probe.sh [BUILD_DIR]        (default: build)
#
# Knobs (defaults in brackets): SHAPES [run.sh's sequence: "stream batch
# batch-ids sdk unary latency latency-1conn stream-ids sdk-ids unary-ids"],
# DURATION [5] seconds per shape, IDLE_WAIT [6], FRESH [0] (1: a new service
# for every shape, so each figure is that shape's alone), MAPS [0] (1: also
# the anonymous kB by kind of mapping after each shape, from /proc/PID/smaps),
# PAYLOAD [300], STREAMS [4], WINDOW [1024], CONCURRENCY [32], BATCH [100],
# RATE [5000], CONNECTIONS [4], SERVICE_ARGS [""].
set -euo pipefail

BUILD=${1:-build}
SHAPES=${SHAPES:-stream batch batch-ids sdk unary latency latency-1conn stream-ids sdk-ids unary-ids}
DURATION=${DURATION:-5}
IDLE_WAIT=${IDLE_WAIT:-6}
FRESH=${FRESH:-0}
MAPS=${MAPS:-0}
PAYLOAD=${PAYLOAD:-300}
STREAMS=${STREAMS:-4}
WINDOW=${WINDOW:-1024}
CONCURRENCY=${CONCURRENCY:-32}
BATCH=${BATCH:-100}
RATE=${RATE:-5000}
CONNECTIONS=${CONNECTIONS:-4}
SERVICE_ARGS=${SERVICE_ARGS:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SERVICE=$BUILD/tracseq-events
BENCH=$BUILD/bench/bench_publish
BENCH_SDK=$BUILD/bench/bench_sdk_publish
for f in "$SERVICE" "$BENCH" "$BENCH_SDK"; do
    [[ -x $f ]] || {
        echo "rss_probe.sh: $f not built" >&2
        exit 2
    }
done

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_start

start_service() {
    SERVICE_PORT=$(free_port)
    # shellcheck disable=SC2086 # SERVICE_ARGS: several arguments
    TRACSEQ_EVENTS_CONFIG='' "$SERVICE" --listen "127.0.0.1:$SERVICE_PORT" \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" --log-level warn $SERVICE_ARGS \
        >"$SCRATCH/service.log" 2>&1 &
    SERVICE_PID=$!
    wait_port "$SERVICE_PORT" || {
        echo "rss_probe.sh: the service did not start: $(tail -5 "$SCRATCH/service.log")" >&2
        exit 2
    }
    sleep 1.5 # connected to Redis, settled
}

# One RSS line: the label, VmRSS, and smaps_rollup's anonymous and
# file-backed resident kB (Rss - Anonymous), the thread count.
rss_line() {
    local pid=$SERVICE_PID
    awk -v name="$1" -v threads="$(ls "/proc/$pid/task" | wc -l)" '
        FNR == 1 { file++ }
        file == 1 && $1 == "Rss:" { rss = $2 }
        file == 1 && $1 == "Anonymous:" { anon = $2 }
        file == 2 && $1 == "VmRSS:" { vmrss = $2 }
        file == 2 && $1 == "VmHWM:" { hwm = $2 }
        END { printf "RSS shape=%s vmrss_kb=%d anon_kb=%d file_kb=%d vmhwm_kb=%d threads=%d\n",
                     name, vmrss, anon, rss - anon, hwm, threads }' \
        "/proc/$pid/smaps_rollup" "/proc/$pid/status"
}

# Where the anonymous memory is, by kind of mapping: the main heap (brk),
# the other malloc arenas (64 MB-aligned mappings of glibc's heaps), thread
# stacks (8 MB mappings), the private pages of loaded files (libraries'
# data and relocations), and any other anonymous mapping (large malloc
# blocks, gRPC's own mmaps).
maps() {
    python3 - "/proc/$SERVICE_PID/smaps" <<'EOF'
import re, sys
kb = {}
kind = None
for line in open(sys.argv[1]):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)", line)
    if m:
        lo, hi, path = int(m[1], 16), int(m[2], 16), m[3].strip()
        if path == "[heap]":
            kind = "heap"
        elif path.startswith("/"):
            kind = "files"
        elif path.startswith("[stack"):
            kind = "stacks"
        elif path:
            kind = "other"
        elif hi - lo in (8 << 20, (8 << 20) + 4096):
            kind = "stacks"
        elif lo % (64 << 20) == 0:
            kind = "arenas"
        else:
            kind = "other"
    elif line.startswith("Anonymous:"):
        kb[kind] = kb.get(kind, 0) + int(line.split()[1])
print("   anon_kb " + " ".join(f"{k}={kb.get(k, 0)}" for k in ("heap", "arenas", "stacks", "files", "other")))
EOF
}

shape() {
    local name=$1 args
    case $name in
    stream) args=("$BENCH" --mode stream --streams "$STREAMS" --window "$WINDOW") ;;
    batch) args=("$BENCH" --mode stream --streams "$STREAMS" --window "$WINDOW" --batch "$BATCH") ;;
    batch-ids) args=("$BENCH" --mode stream --streams "$STREAMS" --window "$WINDOW" --batch "$BATCH" --ids) ;;
    stream-ids) args=("$BENCH" --mode stream --streams "$STREAMS" --window "$WINDOW" --ids) ;;
    sdk) args=("$BENCH_SDK" --publishers "$STREAMS" --window "$WINDOW" --server-ids) ;;
    sdk-ids) args=("$BENCH_SDK" --publishers "$STREAMS" --window "$WINDOW") ;;
    unary) args=("$BENCH" --mode unary --concurrency "$CONCURRENCY") ;;
    unary-ids) args=("$BENCH" --mode unary --concurrency "$CONCURRENCY" --ids) ;;
    latency) args=("$BENCH" --mode latency --rate "$RATE") ;;
    latency-1conn) args=("$BENCH" --mode latency --rate "$RATE" --connections 1) ;;
    *)
        echo "rss_probe.sh: unknown shape $name" >&2
        exit 2
        ;;
    esac
    [[ ${args[0]} == "$BENCH" && ! " ${args[*]} " == *" --connections "* ]] &&
        args+=(--connections "$CONNECTIONS")
    "${args[@]}" --target "127.0.0.1:$SERVICE_PORT" --payload-bytes "$PAYLOAD" \
        --duration "$DURATION" >"$SCRATCH/result" 2>"$SCRATCH/bench.err" || {
        echo "rss_probe.sh: $name FAILED: $(tail -3 "$SCRATCH/bench.err")" >&2
        FAILED=1
    }
    echo "   $(cat "$SCRATCH/result")"
}

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), load $(cut -d' ' -f1-3 /proc/loadavg), $SERVICE"
start_redis_aof
start_service
rss_line start
for s in $SHAPES; do
    if [[ $FRESH == 1 ]]; then
        stop_service
        start_service
        rss_line "$s-before"
    fi
    shape "$s"
    sleep "$IDLE_WAIT"
    rss_line "$s"
    if [[ $MAPS == 1 ]]; then maps; fi
done
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$FAILED"
