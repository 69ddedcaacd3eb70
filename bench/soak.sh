#!/usr/bin/env bash
# soak.sh - the soak benchmark of docs/benchmarks.md: a long run of mixed
# publish and subscribe at a fixed offered rate, watching the service's
# memory.
#
#   bench/soak.sh [BUILD_DIR]            (default: build; make soak runs it)
#
# Starts its own redis-server (loopback, free port, scratch dir, AOF on with
# appendfsync everysec) and the event service (--log-level=warn), then runs
# two bench_subscribe latency generators at once for SOAK_SECONDS:
#
#   stream   RATE/2 events/s offered on one PublishStream
#   unary    RATE/2 events/s offered as one unary Publish call each
#
# each with its own subscription and one Subscribe stream acking in batches.
# Each generator checks every delivery (a sequence it published, once, first
# attempt) and that every event it published was delivered by the end; any
# lost, duplicated or redelivered event, or a failed publish, is an error.
#
# Every SAMPLE_SECONDS it prints the service's VmRSS (and Redis's used
# memory, which grows with the streams: nothing is trimmed during a soak
# shorter than RETENTION_AGE). At the end: the RSS samples, published and
# delivered counts and the latency summary of each generator, the CPU used by
# the service and Redis, and the machine's CPU pressure (other people's work
# on these cores shows there). A benchmark prints figures: it asserts no
# time. Exits non-zero when a generator reported errors.
#
# Environment knobs (defaults in brackets): SOAK_SECONDS [600], RATE [5000]
# events/s in all, SAMPLE_SECONDS [10], SERVICE_ARGS [] extra service flags,
# BENCH_SUBSCRIBE [BUILD/bench/bench_subscribe].
set -euo pipefail

BUILD=${1:-build}
SOAK_SECONDS=${SOAK_SECONDS:-600}
RATE=${RATE:-5000}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
SERVICE_ARGS=${SERVICE_ARGS:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
SERVICE=$BUILD/tracseq-events
BENCH=${BENCH_SUBSCRIBE:-$BUILD/bench/bench_subscribe}
CLK_TCK=$(getconf CLK_TCK)

die() {
    echo "soak.sh: $*" >&2
    exit 2
}

for tool in redis-server redis-cli python3 bc; do
    command -v "$tool" >/dev/null || die "$tool not found (make deps installs it)"
done
if [[ ! -x $SERVICE || ! -x $BENCH ]]; then
    echo "soak.sh: building tracseq-events and bench_subscribe in $BUILD" >&2
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" --target tracseq-events bench_subscribe -j2 >/dev/null || die "build failed"
fi

SCRATCH=$(mktemp -d /tmp/tse-soak.XXXXXX)
REDIS_PID=
SERVICE_PID=
SAMPLER_PID=
GEN_PIDS=()

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

soak_cleanup() {
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
    for pid in "${GEN_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    cleanup
}
trap soak_cleanup EXIT
trap 'exit 130' INT TERM

field() { # field NAME LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# Microseconds that some task waited for a CPU (PSI), 0 when unavailable.
cpu_stall_us() {
    awk '/^some/ {sub("total=", "", $5); print $5; exit}' /proc/pressure/cpu 2>/dev/null || echo 0
}

redis_used_kb() {
    rcli info memory | tr -d '\r' | awk -F: '/^used_memory:/ {printf "%d", $2 / 1024}'
}

# ---- setup ---------------------------------------------------------------------
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== load before: $(uptime)"
echo "== CPU pressure before: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a)"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ); scratch $SCRATCH; $SOAK_SECONDS s at $RATE events/s"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SCRATCH" --save '' \
    --appendonly yes --appendfsync everysec --logfile "$SCRATCH/redis.log" &
REDIS_PID=$!
wait_port "$REDIS_PORT" || die "redis-server did not start"
echo "== redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$REDIS_PORT (appendonly yes, appendfsync everysec)"

SERVICE_PORT=$(free_port)
# shellcheck disable=SC2086
"$SERVICE" --listen "127.0.0.1:$SERVICE_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --log-level warn $SERVICE_ARGS >>"$SCRATCH/service.log" 2>&1 &
SERVICE_PID=$!
wait_port "$SERVICE_PORT" || die "the service did not start: $(tail -5 "$SCRATCH/service.log")"
sleep 1
echo "== tracseq-events on :$SERVICE_PORT --log-level=warn $SERVICE_ARGS (pid $SERVICE_PID)"

# ---- the run -------------------------------------------------------------------
HALF=$(echo "$RATE / 2" | bc -l)
s0=$(cpu_ticks "$SERVICE_PID")
r0=$(cpu_ticks "$REDIS_PID")
p0=$(cpu_stall_us)
w0=$(date +%s.%N)
for pub in stream unary; do
    "$BENCH" --target "127.0.0.1:$SERVICE_PORT" --name "soak-$pub" --event-type "bench.soak_$pub" \
        --label "soak-$pub" --mode latency --publisher "$pub" --rate "$HALF" \
        --duration "$SOAK_SECONDS" --warmup 1 >"$SCRATCH/$pub.out" 2>"$SCRATCH/$pub.err" &
    GEN_PIDS+=($!)
done

# RSS samples: one line each, also kept for the summary.
(
    t=0
    while :; do
        printf 'rss t=%ds service_kb=%s redis_used_kb=%s\n' "$t" "$(rss_kb "$SERVICE_PID")" \
            "$(redis_used_kb)" | tee -a "$SCRATCH/rss.txt"
        sleep "$SAMPLE_SECONDS"
        t=$((t + SAMPLE_SECONDS))
    done
) &
SAMPLER_PID=$!

FAILED=0
for pid in "${GEN_PIDS[@]}"; do
    wait "$pid" || FAILED=1
done
GEN_PIDS=()
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
w1=$(date +%s.%N)
s1=$(cpu_ticks "$SERVICE_PID")
r1=$(cpu_ticks "$REDIS_PID")
p1=$(cpu_stall_us)
printf 'rss t=end service_kb=%s redis_used_kb=%s\n' "$(rss_kb "$SERVICE_PID")" "$(redis_used_kb)" |
    tee -a "$SCRATCH/rss.txt"
stop_service

# ---- summary -------------------------------------------------------------------
WALL=$(echo "$w1 - $w0" | bc)
echo
echo "== summary (load now: $(uptime | sed 's/.*load average: //'))"
for pub in stream unary; do
    sed 's/^/   /' "$SCRATCH/$pub.err"
    line=$(grep '^RESULT' "$SCRATCH/$pub.out" || echo "RESULT label=soak-$pub errors=1")
    printf '%-12s published %s, delivered %s (unique %s), errors %s; publish -> delivery p50 %s us, p90 %s us, p99 %s us, p99.9 %s us, max %s us\n' \
        "$pub" "$(field published "$line")" "$(field delivered "$line")" "$(field unique "$line")" \
        "$(field errors "$line")" "$(field p50_us "$line")" "$(field p90_us "$line")" \
        "$(field p99_us "$line")" "$(field p999_us "$line")" "$(field max_us "$line")"
    echo "$line"
done
awk '{for (i = 1; i <= NF; i++) if ($i ~ /^service_kb=/) {sub("service_kb=", "", $i); v[n++] = $i}}
     END {if (n) {min = max = v[0]; for (i = 0; i < n; i++) {if (v[i] < min) min = v[i]; if (v[i] > max) max = v[i]}
          printf "service VmRSS over %d samples: first %d kB, last %d kB, min %d kB, max %d kB\n", n, v[0], v[n-1], min, max}}' \
    "$SCRATCH/rss.txt"
printf 'wall %.0f s; CPU: service %.0f%%, Redis %.0f%% of a core; CPU pressure (some task waiting) %.0f%%\n' \
    "$WALL" "$(echo "100 * ($s1 - $s0) / $CLK_TCK / $WALL" | bc -l)" \
    "$(echo "100 * ($r1 - $r0) / $CLK_TCK / $WALL" | bc -l)" "$(echo "($p1 - $p0) / 10000 / $WALL" | bc -l)"
echo "redis: $(grep -c 'fsync is taking too long' "$SCRATCH/redis.log" || true) 'AOF fsync is taking too long' warnings; service log lines at warn or above: $(wc -l <"$SCRATCH/service.log")"
head -20 "$SCRATCH/service.log" | sed 's/^/   service log: /'
if [[ $FAILED -ne 0 ]]; then
    echo "soak.sh: a generator reported errors: its figures are not results" >&2
    exit 1
fi
